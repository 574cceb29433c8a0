"""Server-sent events (``text/event-stream``): incremental decoder and encoder.

Parsing follows the WHATWG event-stream rules: UTF-8 with one optional BOM,
lines ended by CRLF, LF or CR, ``field: value`` with one leading space
stripped, ``data`` lines joined with ``"\\n"``, ``retry`` only when all digits.
Where the browser algorithm throws information away, the recorder keeps it:

- comment lines become their own :class:`SSEEvent` with ``comment`` set, so
  keep-alives are recorded and replayed;
- an event is emitted when it set *any* field (``event``, ``id``, ``retry`` or
  ``data``), not only when it carried data, and the ``id`` belongs to the event
  that sent it (no carried-over "last event id");
- :meth:`SSEDecoder.close` dispatches an event the stream ended inside.

``decode(encode_event(e)) == [e]`` for every event the decoder produces.

Error contract: the decoder never raises; any bytes decode (invalid UTF-8 is
replaced, ``data`` that is not JSON, or is JSON nested deeper than
:data:`~llmock_proxy.nesting.MAX_PAYLOAD_DEPTH`, stays text).
:func:`encode_event` raises :class:`~llmock_proxy.errors.WireEncodeError` for
an event that cannot be written (a line break in ``event`` or ``id``, a
negative or non-integer ``retry``, a field of the wrong type, ``data`` that is
not JSON-encodable).
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from llmock_proxy import nesting
from llmock_proxy.cassette.model import SSEEvent, compact_json
from llmock_proxy.errors import WireEncodeError

# Any of the three line ends; CRLF is tried first so it counts as one.
_LINE_END = re.compile(r"\r\n|\r|\n")
# A JSON escape of a UTF-16 surrogate: the parsed value may hold a lone
# surrogate, which cannot be written back as UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_data(text: str) -> Any:
    """The stored form of an event's data: parsed JSON for an object or array,
    the text itself otherwise (``[DONE]``, plain tokens, malformed JSON, JSON
    nested too deep to keep as data)."""
    head = text.lstrip()[:1]
    if head != "{" and head != "[":
        return text
    try:
        value = nesting.loads(text)
    except ValueError:  # not JSON, or too deep (TooDeep)
        return text
    if not isinstance(value, (dict, list)):
        return text
    if _SURROGATE_ESCAPE.search(text) and not _utf8_encodable(value):
        return text
    return value


def _utf8_encodable(value: Any) -> bool:
    try:
        compact_json(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SSEDecoder:
    """Feed bytes as they arrive; get back the events completed so far.

    Chunks may split anywhere: inside a CRLF, inside a UTF-8 character, inside
    the BOM. ``t`` of every event is 0; the caller stamps timing.
    """

    def __init__(self) -> None:
        # utf-8-sig drops one leading BOM, even when it arrives split.
        self._text_decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._partial_line: list[str] = []
        # The previous chunk ended with CR: an LF opening the next one belongs to it.
        self._skip_lf = False
        self._reset_event()

    def _reset_event(self) -> None:
        self._data_lines: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._has_fields = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        return self._feed_text(self._text_decoder.decode(data))

    def close(self) -> list[SSEEvent]:
        """End of stream: the last line and event count even without their line end."""
        out = self._feed_text(self._text_decoder.decode(b"", final=True))
        if self._partial_line:
            line = "".join(self._partial_line)
            self._partial_line = []
            self._line(line, out)
        self._dispatch(out)
        return out

    def _feed_text(self, text: str) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if not text:
            return out
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return out
        start = 0
        for match in _LINE_END.finditer(text):
            line = text[start : match.start()]
            if self._partial_line:
                self._partial_line.append(line)
                line = "".join(self._partial_line)
                self._partial_line = []
            self._line(line, out)
            start = match.end()
        if start < len(text):
            self._partial_line.append(text[start:])
        elif text[-1] == "\r":
            self._skip_lf = True
        return out

    def _line(self, line: str, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            out.append(SSEEvent(comment=_strip_one_space(line[1:])))
            return
        name, colon, value = line.partition(":")
        if colon:
            value = _strip_one_space(value)
        if name == "data":
            self._data_lines.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" in value:  # WHATWG: an id with NUL is ignored
                return
            self._id = value
        elif name == "retry":
            if not (value.isascii() and value.isdigit()):
                return
            try:
                self._retry = int(value)
            except ValueError:  # more digits than Python converts: no reconnection time anyone honours
                return
        else:  # unknown fields are ignored
            return
        self._has_fields = True

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if not self._has_fields:
            return
        data = parse_data("\n".join(self._data_lines)) if self._data_lines else None
        out.append(SSEEvent(data=data, event=self._event, id=self._id, retry=self._retry))
        self._reset_event()


def _strip_one_space(value: str) -> str:
    return value[1:] if value[:1] == " " else value


def encode_event(event: SSEEvent) -> bytes:
    """One event on the wire: comment, event, id, retry, data lines, blank line.

    Lines end in LF and values follow ``": "`` (google-genai expects exactly
    ``data: ``). An event with a comment and fields becomes a comment line
    followed by the event, which decodes as two events. Raises
    :class:`~llmock_proxy.errors.WireEncodeError` for an event that cannot be
    written so that it reads back the same.
    """
    parts: list[str] = []
    if event.comment is not None:
        # A line end would end the comment and start a field: one line each.
        parts.extend(f": {line}\n" for line in _LINE_END.split(_text("comment", event.comment)))
    if event.event is not None:
        parts.append(f"event: {_single_line('event', event.event)}\n")
    if event.id is not None:
        if "\0" in _text("id", event.id):
            raise WireEncodeError("SSE event field 'id' cannot hold NUL (a reader ignores such an id)")
        parts.append(f"id: {_single_line('id', event.id)}\n")
    if event.retry is not None:
        retry = event.retry
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise WireEncodeError(f"SSE event field 'retry' must be an integer >= 0, got {retry!r}")
        parts.append(f"retry: {retry}\n")
    try:
        text = event.data_text
    except (TypeError, ValueError, RecursionError) as exc:  # not JSON-encodable, or too deep
        raise WireEncodeError(f"SSE event data cannot be written as JSON: {_reason(exc)}") from None
    if text is not None:
        for line in _LINE_END.split(text):
            parts.append(f"data: {line}\n")
    parts.append("\n")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WireEncodeError(f"SSE event holds text that is not UTF-8 (a lone surrogate?): {exc}") from None


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise WireEncodeError(f"SSE event field {name!r} must be text, got {type(value).__name__}")
    return value


def _single_line(name: str, value: object) -> str:
    if _LINE_END.search(_text(name, value)):
        raise WireEncodeError(f"SSE event field {name!r} cannot hold a line break: {value!r}")
    return str(value)


def _reason(exc: BaseException) -> str:
    return "nested too deep" if isinstance(exc, RecursionError) else str(exc)
