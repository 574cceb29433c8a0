"""The replay engine, counting each named session's requests in flight.

A session that records writes a request's interaction after the answer has
gone out to the client; the plugin closes a test's session (and moves or
reads its cassette) only once the session's requests are done. Imported
only when a test first uses the base-URL transport (the engine's import is
most of a second).
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from llmock_proxy.replay.server import ReplayEngine
from llmock_proxy.replay.sessions import SESSION_HEADER, SESSION_PREFIX


class InFlight(Protocol):
    def request_started(self, session_id: str) -> None: ...

    def request_done(self, session_id: str) -> None: ...


class CountingEngine(ReplayEngine):
    """:class:`ReplayEngine` telling ``inflight`` when a session's request starts and ends."""

    inflight: InFlight | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        session_id = session_of(request.headers.get(SESSION_HEADER), request.path)
        if session_id is None or self.inflight is None:
            return await super().handle(request)
        inflight = self.inflight
        inflight.request_started(session_id)
        try:
            return await super().handle(request)
        finally:
            inflight.request_done(session_id)


def session_of(header: str | None, path: str) -> str | None:
    """The named session a request selects (as the registry reads it), None for the default one."""
    if path.startswith(SESSION_PREFIX):
        return path[len(SESSION_PREFIX):].split("/", 1)[0] or None
    return header or None
