"""The replay engine's forwarder: a request sent on to the real upstream (a
miss in auto/passthrough mode, every request of a session in record mode),
its answer streamed back and, when asked, recorded.

Where a request goes: ``upstreams`` maps a vendor (the API family's prefix:
``openai``, ``anthropic``, ``gemini``, ``ollama``, ``cohere``) to the base URL
its SDK would have used (``OPENAI_BASE_URL``, with its ``/v1``), so a team
records against its gateway or a local model server; ``*`` is a server root
the request path is appended to as it is (``serve --upstream``). A vendor
named nowhere goes to its public API (:data:`VENDOR_BASE_URLS`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from llmock_proxy.cassette.model import Interaction
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.writer import CassetteWriter
from llmock_proxy.errors import CassetteError, MatchSpecError
from llmock_proxy.providers.catalog import identify
from llmock_proxy.record.recorder import Recorder, describe
from llmock_proxy.replay.session import Miss, ReplaySession
from llmock_proxy.replay.sessions import SessionSettings

log = logging.getLogger("llmock_proxy.replay")


# Hop-by-hop headers are the proxy's own business; host belongs to the upstream.
_NOT_FORWARDED = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "content-length"}
)


_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "content-length"}
)


# Each vendor's public base URL as its SDK has it, and the part of that base
# URL the SDK's request paths repeat (the OpenAI SDK's base ends in /v1 and it
# asks for /chat/completions; a server pointed at as ``<root>/v1`` sees
# /v1/chat/completions).
VENDOR_BASE_URLS: dict[str, tuple[str, str]] = {
    "openai": ("https://api.openai.com/v1", "/v1"),
    "anthropic": ("https://api.anthropic.com", ""),
    "gemini": ("https://generativelanguage.googleapis.com", ""),
    "ollama": ("http://localhost:11434", ""),
    "cohere": ("https://api.cohere.com", ""),
}


class NoUpstream(LookupError):
    """Nowhere to forward a request to."""


def upstream_url(upstreams: dict[str, str], vendor: str, path_qs: str) -> str:
    """The URL to forward ``path_qs`` (as the engine received it) to."""
    base = upstreams.get(vendor)
    if base is not None:
        suffix = VENDOR_BASE_URLS.get(vendor, ("", ""))[1]
        relative = path_qs[len(suffix):] if suffix and path_qs.startswith(suffix + "/") else path_qs
        return base.rstrip("/") + relative
    root = upstreams.get("*")
    if root is not None:
        return root.rstrip("/") + path_qs
    if vendor in VENDOR_BASE_URLS:
        public, suffix = VENDOR_BASE_URLS[vendor]
        return upstream_url({vendor: public}, vendor, path_qs)
    raise NoUpstream(f"no upstream for {vendor} requests: name one (a base URL for {vendor!r}, or '*')")


# -- forwarding ---------------------------------------------------------------------


@dataclass
class Forwarder:
    """Sends requests upstream (see :func:`upstream_url`) and streams the
    answer back; with ``record_to``, records the exchange through the
    recorder and makes it answerable by the session. Each forwarded request
    is written in the session's journal."""

    session: ReplaySession
    upstreams: dict[str, str] = field(default_factory=dict)
    record_to: Path | None = None
    redactor: Redactor = field(default_factory=Redactor.default)
    _client: ClientSession | None = field(default=None, init=False)
    _recorder: Any = field(default=None, init=False)
    _writer: Any = field(default=None, init=False)
    # Misses being forwarded and recorded, by what they ask (see _shared_key):
    # an identical miss arriving meanwhile waits for the exchange instead of
    # going upstream (and into the cassette) a second time.
    _in_flight: dict[tuple[str, ...], _Exchange] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.record_to is not None:
            self._recorder = Recorder(redactor=self.redactor)
            self._writer = CassetteWriter(redactor=self.redactor)

    async def handle(
        self, request: web.Request, path_qs: str, miss: Miss | None, arrival: float
    ) -> web.StreamResponse:
        """Forward ``request`` (``path_qs``: its path inside its session) and
        answer with what the upstream says; ``miss``: what replay made of it
        (None: a record-mode request, forwarded without asking).

        While recording (auto mode), a miss identical to one still being
        forwarded waits for that exchange to end and is answered with the
        same answer, now recorded (once); when that exchange fails, it is
        forwarded in turn."""
        key = self._shared_key(request.method, path_qs, miss)
        if key is None:
            return await self._forward(request, path_qs, miss)
        earlier = self._in_flight.get(key)
        while earlier is not None:  # a failed exchange's first waiter forwards in its turn
            assert miss is not None
            log.info("llmock: %s %s waits for the identical request being forwarded, to answer from its recording",
                     request.method, path_qs)
            await earlier.done.wait()
            if earlier.complete:
                self.session.settle_replayed(miss, earlier.status, earlier.source)
                answer = web.Response(status=earlier.status, body=b"".join(earlier.chunks))
                for name, value in earlier.headers:
                    answer.headers.add(name, value)
                return answer
            earlier = self._in_flight.get(key)
        exchange = self._in_flight[key] = _Exchange()
        try:
            return await self._forward(request, path_qs, miss, exchange)
        finally:
            del self._in_flight[key]
            exchange.done.set()

    def _shared_key(self, method: str, path_qs: str, miss: Miss | None) -> tuple[str, ...] | None:
        """What makes two misses the same request (None: never shared): only
        while recording, and for a request replay could read."""
        if self.record_to is None or miss is None or miss.view is None:
            return None
        return method, path_qs, miss.view.fingerprint

    async def _forward(
        self, request: web.Request, path_qs: str, miss: Miss | None, exchange: _Exchange | None = None
    ) -> web.StreamResponse:
        if self._client is None:
            # Bodies pass through still content-encoded; the recorder decodes its copy.
            self._client = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=None))
        headers_in = {k.lower(): v for k, v in request.headers.items()}
        vendor = identify(request.method, "http://127.0.0.1" + path_qs, headers_in).family.split(".", 1)[0]
        body = await request.read()
        try:
            url = upstream_url(self.upstreams, vendor, path_qs)
        except NoUpstream as exc:
            self._journal(request, path_qs, miss, 502, recorded=False)
            return web.json_response({"error": {"message": f"llmock-proxy: {exc}", "type": "no_upstream"}},
                                     status=502)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        recording = self._recorder.start(request.method, url, headers, body) if self._recorder else None
        try:
            upstream = await self._client.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except Exception as exc:
            self._journal(request, path_qs, miss, 502, recorded=False)
            if recording is not None:
                await self._save(recording.fail(f"{type(exc).__name__}: {exc}"))
            shown = self.redactor.redact_url(url)  # no credentials of the upstream's URL in answers or logs
            return web.json_response({"error": f"llmock-proxy: upstream {shown} failed: {exc}"}, status=502)
        self._journal(request, path_qs, miss, upstream.status, recorded=recording is not None)
        async with upstream:
            head = list(upstream.raw_headers)
            pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head]
            response = web.StreamResponse(status=upstream.status)
            for k, v in pairs:
                if k.lower() not in _NOT_RETURNED:
                    response.headers.add(k, v)
            teeing = recording.response_started(upstream.status, pairs) if recording else False
            whole: list[bytes] = []
            if exchange is not None:
                exchange.status = upstream.status
                exchange.headers = [(k, v) for k, v in pairs if k.lower() not in _NOT_RETURNED]
            client_gone = not await _sent(response.prepare(request))
            try:
                async for chunk in upstream.content.iter_any():
                    if client_gone:
                        break
                    if recording is not None:
                        recording.feed(chunk) if teeing else whole.append(chunk)
                    if exchange is not None:
                        exchange.chunks.append(chunk)
                    client_gone = not await _sent(response.write(chunk))
            except Exception as exc:  # the upstream broke off mid-body
                log.warning("upstream %s broke off: %s: %s", self.redactor.redact_url(url), type(exc).__name__, exc)
                if recording is not None:
                    await self._save(recording.fail(f"{type(exc).__name__}: {exc}"))
                if request.transport is not None:
                    request.transport.close()  # the client sees the body end early, as it did
                return response
            if recording is not None and not client_gone:
                # On disk before the client sees the body end: no crash can
                # lose an answer the client has.
                saved = await self._save(recording.finish() if teeing else recording.finish(b"".join(whole)))
                recording = None
                if exchange is not None and saved is not None:
                    exchange.source = saved  # the whole answer, recorded: identical misses get it
                    exchange.complete = True
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

    def _journal(self, request: web.Request, path_qs: str, miss: Miss | None, status: int, *, recorded: bool) -> None:
        if miss is not None:
            self.session.settle(miss, status, recorded=recorded)
        else:
            self.session.note_forwarded(request.method, "http://127.0.0.1" + path_qs, dict(request.headers),
                                        status, recorded=recorded)

    async def _save(self, interaction: Interaction) -> str | None:
        """Write ``interaction`` and make it answerable; its source as the
        session names it (None: not written, or not replayable)."""
        assert self._writer is not None and self.record_to is not None
        target = self.record_to
        try:
            # Off the loop: the writer locks and fsyncs.
            await asyncio.to_thread(self._writer.append, target, [interaction])
        except Exception as exc:
            log.error("llmock: NOT recorded %s: cannot write %s: %s", interaction.request.url, target, exc)
            return None
        log.info("llmock: recorded %s -> %s", describe(interaction), target)
        if interaction.response is None:
            return None
        source = f"{target}: recorded"
        try:
            self.session.add_interaction(interaction, source)
        except (CassetteError, MatchSpecError) as exc:
            log.warning("llmock: recorded %s but cannot replay it: %s", interaction.request.url, exc)
            return None
        return source

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


@dataclass(eq=False)
class _Exchange:
    """A miss being forwarded and recorded, as identical misses waiting for
    it see it: its answer (head and every chunk) once ``complete``."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False
    source: str = ""


class ForwarderFactory:
    """Makes the forwarder of each session a replay engine opens with a mode
    other than replay (``ReplayEngine(forward=ForwarderFactory(...))``), from
    its settings: where to forward, and the cassette auto/record mode write to."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor.default()

    def __call__(self, session: ReplaySession, settings: SessionSettings) -> Forwarder:
        records = settings.mode in ("auto", "record")
        return Forwarder(session, upstreams=dict(settings.upstreams),
                         record_to=settings.record_to if records else None, redactor=self.redactor)


async def _sent(writing: Awaitable[Any]) -> bool:
    """Whether a write to the client went out (False: the client is gone)."""
    try:
        await writing
    except ConnectionResetError:
        return False
    return True
