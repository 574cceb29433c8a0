"""Helpers shared by the replay tests: a replay engine on its own thread, and
recorded interactions built with the cassette model and the provider modules."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from llmock_proxy.canonical import Summary
from llmock_proxy.cassette import Interaction, Payload, Request, Response
from llmock_proxy.engine import ReplayEngine, Timing
from llmock_proxy.fixtures import Fixture, fixture_from_interaction
from llmock_proxy.matcher import derive_match
from llmock_proxy.providers import identify
from llmock_proxy.session import ReplaySession


class EngineThread:
    """A :class:`ReplayEngine` on 127.0.0.1:0 in a thread with its own loop, so
    synchronous SDK clients can call it from the test thread."""

    def __init__(self, session: ReplaySession, *, timing: str = "instant", **engine_args: Any) -> None:
        self.engine = ReplayEngine(session, timing=Timing.parse(timing), **engine_args)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replay-engine", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.engine.port}"

    def start(self) -> EngineThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.engine.start("127.0.0.1", 0), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.engine.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> EngineThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def json_request(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Request:
    return Request("POST", url, {"content-type": "application/json", **(headers or {})}, Payload.json(body))


def recorded(request: Request, response: Response, source: str = "test.yaml: interactions[0]") -> Fixture:
    """A recorded interaction as the recorder writes it: derived match and summary."""
    provider = identify(request.method, request.url, request.headers)
    canonical = provider.canonical(request)
    summary = provider.summarize(request, response)
    interaction = Interaction(request, response, match=derive_match(canonical), summary=summary.to_dict())
    return fixture_from_interaction(interaction, source)


def rendered(request: Request, summary: Summary, *, stream: bool | None = None) -> Response:
    """The provider's own rendering of ``summary`` for ``request`` (a realistic recorded answer)."""
    provider = identify(request.method, request.url, request.headers)
    canonical = provider.canonical(request)
    return provider.render(summary, canonical, stream=canonical.stream if stream is None else stream)
