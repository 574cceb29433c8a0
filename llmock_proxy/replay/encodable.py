"""Whether a recorded answer can be put back on the wire, checked before any request needs it.

A cassette edited by hand can hold an answer the schema lets through and
replay cannot send: an EventStream header name of 300 bytes, an SSE
``event`` with a line break, a response header with a CR, an NDJSON text
line holding a newline, base64 that is not UTF-8 in a WebSocket text frame.
Replay would find out only when a request matched it, and answer 500.
:func:`unencodable` runs the encoders replay runs (those of
:mod:`llmock_proxy.wire`, the HTTP/1.1 head writer, a payload's
:meth:`~llmock_proxy.cassette.model.Payload.to_bytes`) and reports every
item that fails, naming it (``...response.frames[3].headers[':event-type']``),
so ``cassette validate`` lists it and loading the cassette refuses it. The
encoders' rules are not repeated here: an item is narrowed down by encoding
its parts alone only once the whole failed.

It runs on every cassette load, so it does not encode what cannot fail:
JSON and text values. The loader gives JSON types only and refuses
surrogate escapes, recursive aliases and nesting deeper than
:data:`~llmock_proxy.nesting.MAX_DOCUMENT_DEPTH`
(:mod:`llmock_proxy.cassette.yamlio`), so such a value always encodes; what
the schema lets through and the wire cannot carry is in the rest. An SSE
event's fields other than ``data`` are encoded (without the data) once per
distinct set in a response, since a stream repeats its event names, and an
EventStream frame whole (its lengths are limited). Encoding every event
whole made loading 10k interactions take twice as long.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmock_proxy import wire
from llmock_proxy.cassette.model import EventStreamFrame, Payload, Response, SSEEvent, WebSocketSession
from llmock_proxy.errors import WireEncodeError
from llmock_proxy.wire.eventstream import encode_headers
from llmock_proxy.wire.http1 import response_head

# What encoding a value can raise besides our own error: bytes that are not
# UTF-8 (UnicodeDecodeError is a ValueError), a value JSON cannot hold.
_ENCODE_ERRORS = (ValueError, TypeError, RecursionError)

# The SSE fields besides data, in the order an event is written.
_SSE_FIELDS = ("event", "id", "retry", "comment")
_NO_SSE_FIELDS = (None, None, None, None)

# Close codes a close frame may carry (RFC 6455 7.4); those that never travel
# in one (1005, 1006, 1015) are replayed as a dropped connection instead.
_SENDABLE_CLOSE_CODES = range(1000, 5000)
_NO_FRAME_CLOSE_CODES = frozenset({1005, 1006, 1015})
# A close frame's payload is at most 125 bytes, two of them the code.
_MAX_CLOSE_REASON = 123


def unencodable(response: Response, where: str) -> list[str]:
    """One line per part of a loaded ``response`` that replay could not send
    (``where``: the response's place, e.g. ``"a.yaml: interactions[3].response"``)."""
    problems = _headers(response, where)
    form = response.wire_form
    if form == "body":
        if response.body is not None and response.body.kind == "base64":
            problems += _payload(response.body, f"{where}.base64")
    elif form == "sse":
        problems += _sse(response.events or [], f"{where}.events")
    elif form == "ndjson":
        for index, line in enumerate(response.lines or []):
            if isinstance(line.data, str):  # a text line (JSON always encodes)
                problems += _fails(wire.encode_line, line, f"{where}.lines[{index}].data")
    elif form == "eventstream":
        for index, frame in enumerate(response.frames or []):
            try:
                wire.encode_frame(frame)
            except WireEncodeError as exc:
                problems += _frame_parts(frame, f"{where}.frames[{index}]", exc)
    else:
        assert response.websocket is not None
        problems += _websocket(response.websocket, f"{where}.websocket")
    return problems


def _headers(response: Response, where: str) -> list[str]:
    headers = list(response.headers.items())
    try:
        response_head(200, headers, "", date="")  # all at once: the common case
        return []
    except ValueError:
        pass
    problems = []
    for name, value in headers:
        try:
            response_head(200, [(name, value)], "", date="")
        except ValueError as exc:
            problems.append(f"{where}.headers[{name!r}]: cannot be sent: {exc}")
    return problems


def _payload(payload: Payload, where: str) -> list[str]:
    try:
        payload.to_bytes()  # what replay sends
    except _ENCODE_ERRORS as exc:
        return [f"{where}: cannot be sent: {type(exc).__name__}: {str(exc)[:200]}"]
    return []


def _sse(events: list[SSEEvent], where: str) -> list[str]:
    problems: list[str] = []
    checked: dict[tuple[Any, ...], list[str]] = {}
    for index, event in enumerate(events):
        fields = (event.event, event.id, event.retry, event.comment)
        if fields == _NO_SSE_FIELDS:
            continue
        try:
            found = checked[fields]
        except KeyError:
            found = checked[fields] = _sse_fields(fields)
        except TypeError:  # a value no key can hold (a hand edit's list)
            found = _sse_fields(fields)
        problems += [f"{where}[{index}].{problem}" for problem in found]
    return problems


def _sse_fields(fields: tuple[Any, ...]) -> list[str]:
    """The fields of an event (without data) that do not encode, each alone."""
    try:
        wire.encode_event(SSEEvent(None, *fields))
        return []
    except WireEncodeError:
        pass
    found: list[str] = []
    for name, value in zip(_SSE_FIELDS, fields):
        if value is not None:
            found += _fails(wire.encode_event, SSEEvent(**{name: value}), name)
    return found


def _frame_parts(frame: EventStreamFrame, where: str, exc: WireEncodeError) -> list[str]:
    """The headers and payload of a frame that do not encode alone, each
    named; the frame as a whole when none does."""
    found: list[str] = []
    headers = frame.headers if isinstance(frame.headers, dict) else {}
    for name, value in headers.items():
        found += _fails(encode_headers, {name: value}, f"{where}.headers[{_shown(name)}]")
    if not found:
        found += _fails(encode_headers, frame.headers, f"{where}.headers")
    found += _fails(wire.encode_frame, EventStreamFrame({}, frame.payload),
                    f"{where}.{getattr(frame.payload, 'kind', 'payload')}")
    return found or [f"{where}: {exc}"]


def _shown(name: Any) -> str:
    """A header name in a problem's place: whole unless long (the message says it again)."""
    text = repr(name)
    return text if len(text) <= 64 else text[:60] + "...'"


def _fails(encode: Callable[[Any], bytes], part: Any, where: str) -> list[str]:
    try:
        encode(part)
    except WireEncodeError as exc:
        return [f"{where}: {exc}"]
    return []


def _websocket(session: WebSocketSession, where: str) -> list[str]:
    problems = []
    for index, message in enumerate(session.messages):
        if message.payload.kind == "json" or message.binary == (message.payload.kind == "base64"):
            continue  # JSON, text in a text frame, base64 in a binary frame: always sent
        try:
            # Text in a binary frame is sent as its UTF-8; base64 in a text frame must decode to UTF-8.
            message.payload.to_bytes() if message.from_client else message.content
        except _ENCODE_ERRORS as exc:
            frame = "binary" if message.binary else "text"
            who = "client" if message.from_client else "server"
            problems.append(f"{where}.messages[{index}].{message.payload.kind}: cannot be a {frame} frame from "
                            f"the {who}: {type(exc).__name__}: {str(exc)[:200]}")
    close = session.close
    if close is not None and close.code is not None and close.code not in _NO_FRAME_CLOSE_CODES:
        if not isinstance(close.code, int) or close.code not in _SENDABLE_CLOSE_CODES:
            problems.append(f"{where}.close.code: {close.code!r} cannot be sent in a close frame (1000 to 4999)")
        reason = len(str(close.reason).encode("utf-8"))
        if reason > _MAX_CLOSE_REASON:
            problems.append(f"{where}.close.reason: {reason} bytes, a close frame holds at most {_MAX_CLOSE_REASON}")
    return problems
