"""Sans-IO wire codecs for the streamed response forms.

Each decoder takes bytes as they arrive (split anywhere) and returns the
cassette model items completed so far; each encoder turns one item back into
bytes. They know nothing of sockets, mitmproxy or YAML.

    form = stream_form(response_headers.get("content-type"))
    decoder = new_decoder(form)
    for chunk in body: items += decoder.feed(chunk)
    items += decoder.close()
    wire = b"".join(encode(form, item) for item in items)

Errors: every codec raises :class:`~llmock_proxy.errors.WireError` (a
``ValueError``) and nothing else for bad input. The SSE and NDJSON decoders
never raise (what is not JSON, or nests deeper than
:data:`~llmock_proxy.nesting.MAX_PAYLOAD_DEPTH`, stays text); the EventStream
decoder raises :class:`EventStreamError`; the encoders raise
:class:`~llmock_proxy.errors.WireEncodeError` for an item that cannot be
written; :mod:`~llmock_proxy.wire.content_encoding` raises
:class:`~llmock_proxy.wire.content_encoding.ContentEncodingError` and
:class:`~llmock_proxy.errors.BodyTooLarge`. :func:`encode` given an item of
another form raises ``TypeError`` (a caller's bug, not bad input).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from llmock_proxy.cassette.model import EventStreamFrame, NDJSONLine, SSEEvent
from llmock_proxy.errors import BodyTooLarge, WireEncodeError, WireError
from llmock_proxy.wire.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    encode_frame,
)
from llmock_proxy.wire.ndjson import NDJSONDecoder, encode_line
from llmock_proxy.wire.sse import SSEDecoder, encode_event

StreamForm = Literal["sse", "ndjson", "eventstream"]
StreamItem = SSEEvent | NDJSONLine | EventStreamFrame

_FORMS_BY_MEDIA_TYPE: dict[str, StreamForm] = {
    "text/event-stream": "sse",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/vnd.amazon.eventstream": "eventstream",
}

# The Content-Type a replayed stream of each form is sent with.
MEDIA_TYPES: dict[str, str] = {  # keyed by StreamForm; any wire form may be looked up
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
    "eventstream": "application/vnd.amazon.eventstream",
}


class StreamDecoder(Protocol):
    def feed(self, data: bytes) -> list[Any]: ...

    def close(self) -> list[Any]: ...


def stream_form(content_type: str | None) -> StreamForm | None:
    """The stream form a Content-Type announces, None for an ordinary body."""
    if not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    return _FORMS_BY_MEDIA_TYPE.get(media_type)


def new_decoder(form: StreamForm) -> StreamDecoder:
    if form == "sse":
        return SSEDecoder()
    if form == "ndjson":
        return NDJSONDecoder()
    if form == "eventstream":
        return EventStreamDecoder()
    raise ValueError(f"unknown stream form {form!r}")


def encode(form: StreamForm, item: Any) -> bytes:
    """One decoded item back on the wire, in the given form."""
    if form == "sse":
        if not isinstance(item, SSEEvent):
            raise TypeError(f"an SSE stream holds SSEEvent items, got {type(item).__name__}")
        return encode_event(item)
    if form == "ndjson":
        if not isinstance(item, NDJSONLine):
            raise TypeError(f"an NDJSON stream holds NDJSONLine items, got {type(item).__name__}")
        return encode_line(item)
    if form == "eventstream":
        if not isinstance(item, EventStreamFrame):
            raise TypeError(
                f"an EventStream holds EventStreamFrame items, got {type(item).__name__}"
            )
        return encode_frame(item)
    raise ValueError(f"unknown stream form {form!r}")


__all__ = [
    "MEDIA_TYPES",
    "BodyTooLarge",
    "EventStreamDecoder",
    "EventStreamError",
    "NDJSONDecoder",
    "SSEDecoder",
    "StreamDecoder",
    "StreamForm",
    "StreamItem",
    "WireEncodeError",
    "WireError",
    "encode",
    "encode_event",
    "encode_frame",
    "encode_line",
    "new_decoder",
    "stream_form",
]
