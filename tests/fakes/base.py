"""What every fake upstream shares: the script, request log, auth gate and stream writers.

A fake is an aiohttp application written from a provider's published wire
format. It never imports ``llmock_proxy.providers``: the fakes are the
independent reference the proxy is tested against. SSE and NDJSON are
formatted by hand here because they are the protocol text under test.

Each reply is driven by a :class:`Script` (text or tool calls, pacing, error
status, and shape knobs for drift tests). Ids and timestamps change on every
call, as they do upstream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import string
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A tool call the fake model makes; ``id`` is generated per reply when None."""

    name: str
    arguments: JSONDict = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class StreamEvent:
    """One stream event before it is written: SSE ``event:`` name (or None) and payload."""

    name: str | None
    data: Any

    @property
    def kind(self) -> str | None:
        """The event's type for drop/rename knobs: its name, else the payload's ``type``."""
        if self.name is not None:
            return self.name
        if isinstance(self.data, dict) and isinstance(self.data.get("type"), str):
            return self.data["type"]
        return None


@dataclass
class Script:
    """How the fake upstream answers one request.

    Content: ``text`` and/or ``tool_calls``; ``embedding`` for embedding calls
    (a vector derived from the input when None).
    Pacing: ``first_event_delay`` before the first stream event and
    ``event_delay`` before each later one, in seconds (the upstream being slow).
    Failure: ``error_status`` answers in the provider's error envelope;
    ``disconnect_after_events`` drops the connection mid-stream.
    Drift knobs (applied to successful replies): ``mutate`` gets every JSON
    body / event payload / NDJSON line and returns the one to send;
    ``rename_events``, ``drop_events`` and ``reorder_events`` act on event
    types (SSE names, EventStream ``:event-type``); ``status``,
    ``content_type`` and ``extra_headers`` change the response envelope.
    Streaming granularity: ``chunk_size`` streams the text in pieces of that
    many characters instead of word by word (a value the model spells out
    arrives split across events, as tokens split it).
    """

    text: str = "Hello from the fake upstream."
    tool_calls: list[ToolCall] = field(default_factory=list)
    embedding: list[float] | None = None
    first_event_delay: float = 0.0
    event_delay: float = 0.0
    error_status: int | None = None
    error_message: str = "The fake upstream was scripted to fail."
    disconnect_after_events: int | None = None
    mutate: Callable[[Any], Any] | None = None
    rename_events: dict[str, str] = field(default_factory=dict)
    drop_events: frozenset[str] | set[str] = frozenset()
    reorder_events: Callable[[list[StreamEvent]], list[StreamEvent]] | None = None
    status: int = 200
    content_type: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    chunk_size: int | None = None

    # -- helpers the provider modules use ----------------------------------

    def text_chunks(self) -> list[str]:
        """The reply text in token-like pieces (each word with its leading
        space), or in ``chunk_size`` characters."""
        if self.chunk_size:
            return chunk_string(self.text, self.chunk_size) if self.text else []
        return re.findall(r"\s*\S+", self.text) or ([self.text] if self.text else [])

    def apply_mutate(self, payload: Any) -> Any:
        return self.mutate(payload) if self.mutate is not None else payload

    def shape_events(self, events: list[StreamEvent]) -> list[StreamEvent]:
        """Apply the drift knobs: mutate payloads, drop, rename, reorder."""
        shaped: list[StreamEvent] = []
        for event in events:
            kind = event.kind
            if kind is not None and kind in self.drop_events:
                continue
            data = self.apply_mutate(event.data) if isinstance(event.data, dict) else event.data
            name = event.name
            if kind is not None and kind in self.rename_events:
                new = self.rename_events[kind]
                if name is not None:
                    name = new
                if isinstance(data, dict) and data.get("type") == kind:
                    data = {**data, "type": new}
            shaped.append(StreamEvent(name, data))
        if self.reorder_events is not None:
            shaped = list(self.reorder_events(shaped))
        return shaped


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake upstream received it."""

    method: str
    path: str  # decoded
    raw_path: str  # as sent, with the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any
    peer: str | None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


# -- ids, timestamps, usage ------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits


def random_id(prefix: str = "", length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def unix_now() -> int:
    return int(time.time())


def iso_now() -> str:
    """RFC 3339 with nanoseconds, as Ollama writes ``created_at``."""
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def count_tokens(value: Any) -> int:
    """A rough, deterministic token count: words in every string inside ``value``."""
    if isinstance(value, str):
        return max(1, len(value.split()))
    if isinstance(value, dict):
        return sum(count_tokens(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_tokens(v) for v in value)
    return 0


def derived_embedding(text: str, dimensions: int = 8) -> list[float]:
    """A stable vector for ``text`` (same input, same vector), exactly representable in float32."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((byte - 128) / 128, 4) for byte in digest[:dimensions]]


def float32_round(values: Iterable[float]) -> list[float]:
    """``values`` as they survive a float32 round trip (what base64 embeddings carry)."""
    items = list(values)
    return list(struct.unpack(f"<{len(items)}f", struct.pack(f"<{len(items)}f", *items)))


def chunk_string(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- wire text, by hand --------------------------------------------------------------


def sse_frame(data: Any, event: str | None = None, *, separator: str = "\n") -> bytes:
    """One SSE event: optional ``event:`` line, ``data:`` line(s), blank line."""
    payload = data if isinstance(data, str) else compact(data)
    lines = [f"event: {event}"] if event is not None else []
    lines += [f"data: {line}" for line in payload.split("\n")]
    return (separator.join(lines) + separator + separator).encode()


def ndjson_line(value: Any) -> bytes:
    return (compact(value) + "\n").encode()


# -- the provider base ----------------------------------------------------------------

RECORDED = web.RequestKey("recorded", RecordedRequest)

Handler = Callable[[web.Request, "Script", "RecordedRequest"], Awaitable[web.StreamResponse]]


class FakeProvider:
    """Base for one provider's fake: routes, auth gate, error envelope, script queue.

    Subclasses set ``name`` and ``hosts`` (the real hostnames it stands in for,
    used by the harness router and the TLS certificate) and implement
    :meth:`routes`, :meth:`is_authorized` and :meth:`error_body`.
    """

    name: ClassVar[str] = "fake"
    hosts: ClassVar[tuple[str, ...]] = ()
    unauthorized_status: ClassVar[int] = 401

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self._queued: deque[Script] = deque()
        self.requests: list[RecordedRequest] = []

    # -- scripting -----------------------------------------------------------

    def queue(self, *scripts: Script) -> None:
        """Answer the next requests with these scripts in order, then fall back to ``script``."""
        self._queued.extend(scripts)

    def next_script(self) -> Script:
        try:
            return self._queued.popleft()
        except IndexError:
            return self.script

    # -- what subclasses provide -----------------------------------------------

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, aiohttp path pattern, handler) triples."""
        raise NotImplementedError

    def is_authorized(self, request: RecordedRequest) -> bool:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> JSONDict:
        raise NotImplementedError

    def error_headers(self, status: int) -> dict[str, str]:
        return {}

    def unauthorized_message(self) -> str:
        return "Missing or invalid credentials."

    def check_request(self, request: RecordedRequest) -> web.Response | None:
        """A provider-specific rejection other than auth (e.g. a missing version header)."""
        return None

    # -- responses ------------------------------------------------------------------

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response(
            self.error_body(status, message), status=status, headers=self.error_headers(status)
        )

    def json_reply(
        self, script: Script, body: JSONDict, *, headers: dict[str, str] | None = None
    ) -> web.Response:
        """A successful JSON body with the script's drift knobs applied."""
        content_type = script.content_type or "application/json"
        return web.Response(
            body=compact(script.apply_mutate(body)).encode(),
            status=script.status,
            headers={"Content-Type": content_type, **(headers or {}), **script.extra_headers},
        )

    async def stream_reply(
        self,
        request: web.Request,
        script: Script,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """Write already-encoded stream chunks with the script's pacing."""
        response = web.StreamResponse(
            status=script.status,
            headers={
                "Content-Type": script.content_type or content_type,
                "Cache-Control": "no-cache",
                **(headers or {}),
                **script.extra_headers,
            },
        )
        await response.prepare(request)
        for index, chunk in enumerate(chunks):
            if script.disconnect_after_events is not None and index >= script.disconnect_after_events:
                # Drop the connection without a proper end of body, as a crashed upstream would.
                if request.transport is not None:
                    request.transport.abort()
                return response
            delay = script.first_event_delay if index == 0 else script.event_delay
            if delay:
                await asyncio.sleep(delay)
            await response.write(chunk)
        await response.write_eof()
        return response

    async def sse_reply(
        self,
        request: web.Request,
        script: Script,
        events: list[StreamEvent],
        *,
        trailer: bytes = b"",
        separator: str = "\n",
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        shaped = script.shape_events(events)
        chunks = [sse_frame(e.data, e.name, separator=separator) for e in shaped]
        if trailer:
            chunks.append(trailer)
        return await self.stream_reply(
            request, script, chunks, content_type="text/event-stream; charset=utf-8", headers=headers
        )

    async def ndjson_reply(
        self, request: web.Request, script: Script, lines: list[JSONDict]
    ) -> web.StreamResponse:
        chunks = [ndjson_line(script.apply_mutate(line)) for line in lines]
        return await self.stream_reply(request, script, chunks, content_type="application/x-ndjson")

    # -- the aiohttp application ---------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        for method, path, handler in self.routes():
            app.router.add_route(method, path, self._wrap(handler))
        return app

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            recorded: RecordedRequest = request[RECORDED]
            if not self.is_authorized(recorded):
                return self.error_response(self.unauthorized_status, self.unauthorized_message())
            rejection = self.check_request(recorded)
            if rejection is not None:
                return rejection
            script = self.next_script()
            if script.error_status is not None:
                return self.error_response(script.error_status, script.error_message)
            return await handler(request, script, recorded)

        return endpoint

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
            peer=peer[0] if peer else None,
        )
        self.requests.append(recorded)
        request[RECORDED] = recorded
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self.error_response(404, f"Unknown path {request.method} {request.path}")
        except web.HTTPMethodNotAllowed:
            return self.error_response(405, f"Method {request.method} not allowed on {request.path}")


def bearer_token(request: RecordedRequest) -> str | None:
    value = request.header("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
