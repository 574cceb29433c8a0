"""``serve``'s forwarder: a miss sent on to the real upstream (auto/passthrough
modes), its answer streamed back and recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from llmock_proxy.cassette.model import Interaction, Request
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.writer import CassetteWriter
from llmock_proxy.errors import CassetteError, MatchSpecError
from llmock_proxy.record.recorder import Recorder, describe
from llmock_proxy.replay.session import Miss, ReplaySession

log = logging.getLogger("llmock_proxy.replay")


# Hop-by-hop headers are the proxy's own business; host belongs to the upstream.
_NOT_FORWARDED = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "content-length"}
)


_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "content-length"}
)


# -- misses in passthrough / auto mode ----------------------------------------------


@dataclass
class Forwarder:
    """Sends misses to ``upstream`` and streams the answer back; with
    ``record_to``, records the exchange through the recorder and makes it
    answerable by the session."""

    session: ReplaySession
    upstream: str
    record_to: Path | None = None
    redactor: Redactor = field(default_factory=Redactor.default)
    _client: ClientSession | None = field(default=None, init=False)
    _recorder: Any = field(default=None, init=False)
    _writer: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        if self.record_to is not None:

            self._recorder = Recorder(redactor=self.redactor)
            self._writer = CassetteWriter(redactor=self.redactor)

    async def handle(
        self, request: web.Request, recorded: Request, miss: Miss, arrival: float
    ) -> web.StreamResponse:
        if self._client is None:
            # Bodies pass through still content-encoded; the recorder decodes its copy.
            self._client = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=None))
        url = self.upstream + request.path_qs
        body = await request.read()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        recording = self._recorder.start(request.method, url, headers, body) if self._recorder else None
        try:
            upstream = await self._client.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except Exception as exc:
            if recording is not None:
                await self._save(recording.fail(f"{type(exc).__name__}: {exc}"))
            return web.json_response({"error": f"llmock-proxy: upstream {url} failed: {exc}"}, status=502)
        async with upstream:
            head = list(upstream.raw_headers)
            pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head]
            response = web.StreamResponse(status=upstream.status)
            for k, v in pairs:
                if k.lower() not in _NOT_RETURNED:
                    response.headers.add(k, v)
            teeing = recording.response_started(upstream.status, pairs) if recording else False
            whole: list[bytes] = []
            client_gone = not await _sent(response.prepare(request))
            try:
                async for chunk in upstream.content.iter_any():
                    if client_gone:
                        break
                    if recording is not None:
                        recording.feed(chunk) if teeing else whole.append(chunk)
                    client_gone = not await _sent(response.write(chunk))
            except Exception as exc:  # the upstream broke off mid-body
                log.warning("upstream %s broke off: %s: %s", url, type(exc).__name__, exc)
                if recording is not None:
                    await self._save(recording.fail(f"{type(exc).__name__}: {exc}"))
                if request.transport is not None:
                    request.transport.close()  # the client sees the body end early, as it did
                return response
            client_gone = client_gone or not await _sent(response.write_eof())
        if client_gone:
            # What arrived before the client hung up is recorded as incomplete.
            log.info("client left %s %s while it was forwarded", request.method, request.path)
            if recording is not None:
                await self._save(recording.fail("Client disconnected."))
            return response
        if recording is not None:
            await self._save(recording.finish() if teeing else recording.finish(b"".join(whole)))
        return response

    async def _save(self, interaction: Interaction) -> None:
        assert self._writer is not None and self.record_to is not None
        target = self.record_to
        try:
            # Off the loop: the writer locks and fsyncs.
            await asyncio.to_thread(self._writer.append, target, [interaction])
        except Exception as exc:
            log.error("llmock: NOT recorded %s: cannot write %s: %s", interaction.request.url, target, exc)
            return
        log.info("llmock: recorded %s -> %s", describe(interaction), target)
        if interaction.response is not None:
            try:
                self.session.add_interaction(interaction, f"{target}: recorded on miss")
            except (CassetteError, MatchSpecError) as exc:
                log.warning("llmock: recorded %s but cannot replay it: %s", interaction.request.url, exc)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


async def _sent(writing: Awaitable[Any]) -> bool:
    """Whether a write to the client went out (False: the client is gone)."""
    try:
        await writing
    except ConnectionResetError:
        return False
    return True
