"""AWS EventStream (``application/vnd.amazon.eventstream``, Bedrock streaming).

A message is::

    total length u32 | headers length u32 | prelude CRC32 u32
    headers: name length u8, name, value type u8, value
    payload
    message CRC32 u32 (over every byte before it)

all big-endian. Header values in the model: string headers are plain ``str``;
every other type is ``{"type": <name>, "value": <v>}`` with ``bool`` (true /
false), ``byte``, ``short``, ``int``, ``long`` and ``timestamp`` (ms) as ints,
``bytes`` as base64 text and ``uuid`` as its canonical string. Header order and
the payload bytes are kept, so ``encode_frame`` of a decoded frame gives back
the exact bytes that were received.

Error contract: :class:`EventStreamDecoder` raises :class:`EventStreamError`
(a :class:`~llmock_proxy.errors.WireError`) for anything that is not valid
EventStream, naming the check, the frame and its byte offset; a payload that
is not JSON, or is JSON nested deeper than
:data:`~llmock_proxy.nesting.MAX_PAYLOAD_DEPTH`, is kept as text or base64,
never an error. :func:`encode_frame` raises
:class:`~llmock_proxy.errors.WireEncodeError` for a frame that cannot be put
on the wire (a header name that is not 1 to 255 bytes of UTF-8, a value of
the wrong type or out of range, a payload that cannot be encoded), naming the
header.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
import zlib
from typing import Any

from llmock_proxy.cassette.model import EventStreamFrame, Payload
from llmock_proxy.errors import WireEncodeError, WireError

PRELUDE_LENGTH = 12  # total length, headers length, prelude CRC
CRC_LENGTH = 4
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + CRC_LENGTH
# The limits AWS documents (and botocore enforces) for one message.
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024

_U32 = struct.Struct(">I")
_PRELUDE = struct.Struct(">III")

# Wire type code <-> model type name, for the non-string header types.
_TYPE_CODES: dict[str, int] = {
    "byte": 2,
    "short": 3,
    "int": 4,
    "long": 5,
    "bytes": 6,
    "timestamp": 8,
    "uuid": 9,
}
_BOOL_TRUE, _BOOL_FALSE, _STRING = 0, 1, 7
_INTEGER_FORMATS: dict[int, struct.Struct] = {
    2: struct.Struct(">b"),
    3: struct.Struct(">h"),
    4: struct.Struct(">i"),
    5: struct.Struct(">q"),
    8: struct.Struct(">q"),
}
_TYPE_NAMES = {code: name for name, code in _TYPE_CODES.items()}


class EventStreamError(WireError):
    """A stream that is not valid EventStream; says which check failed, the
    index of the frame and the byte offset in the stream where it starts."""

    def __init__(self, check: str, frame_index: int, offset: int, detail: str):
        super().__init__(
            f"EventStream {check} check failed at frame {frame_index} "
            f"(byte offset {offset}): {detail}"
        )
        self.check = check
        self.frame_index = frame_index
        self.offset = offset


def _crc32(data: bytes | memoryview, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def _is_json_content_type(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def payload_from_bytes(raw: bytes, headers: dict[str, Any]) -> Payload:
    """The stored form of a frame payload: readable, and byte-exact on re-encode."""
    is_json = _is_json_content_type(headers.get(":content-type"))
    content_type = "application/json" if is_json else None
    try:
        return Payload.from_bytes(raw, content_type, exact=True)
    except UnicodeEncodeError:
        # JSON escaping a lone surrogate parses to a str that cannot be
        # re-encoded; the text itself is still exact.
        return Payload("text", raw.decode("utf-8"))


class EventStreamDecoder:
    """Feed bytes as they arrive; get back the frames completed so far.

    Every frame is checked (lengths, prelude CRC, message CRC, headers); the
    first failure raises :class:`EventStreamError` and the decoder stays failed.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0  # stream offset of the first byte in the buffer
        self._frame_index = 0
        # Length of the frame being collected, once its prelude has checked out.
        self._total_length: int | None = None
        self._failure: EventStreamError | None = None

    def feed(self, data: bytes) -> list[EventStreamFrame]:
        if self._failure is not None:
            raise self._failure
        self._buffer += data
        out: list[EventStreamFrame] = []
        # Frames are read from a moving start and the buffer trimmed once, so a
        # chunk holding many frames costs one copy, not one per frame.
        start = 0
        try:
            while True:
                frame, start = self._next_frame(start)
                if frame is None:
                    return out
                out.append(frame)
        except EventStreamError as exc:
            self._failure = exc
            raise
        finally:
            del self._buffer[:start]

    def close(self) -> list[EventStreamFrame]:
        """End of stream: every frame has arrived whole, or this raises."""
        out = self.feed(b"")
        if self._buffer:
            total = self._total_length
            detail = (
                f"stream ended after {len(self._buffer)} of {total} bytes of the frame"
                if total is not None
                else f"stream ended inside the prelude "
                f"({len(self._buffer)} of {PRELUDE_LENGTH} bytes)"
            )
            self._failure = EventStreamError("length", self._frame_index, self._offset, detail)
            raise self._failure
        return out

    def _fail(self, check: str, detail: str) -> EventStreamError:
        return EventStreamError(check, self._frame_index, self._offset, detail)

    def _next_frame(self, start: int) -> tuple[EventStreamFrame | None, int]:
        """The frame at ``start`` in the buffer if it is all there, and where the next begins."""
        buf = self._buffer
        available = len(buf) - start
        if self._total_length is None:
            if available < PRELUDE_LENGTH:
                return None, start
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(buf, start)
            computed = _crc32(bytes(buf[start : start + 8]))
            if computed != prelude_crc:
                raise self._fail(
                    "prelude CRC", f"expected 0x{prelude_crc:08x}, computed 0x{computed:08x}"
                )
            if total < MIN_MESSAGE_LENGTH or headers_length > total - MIN_MESSAGE_LENGTH:
                raise self._fail(
                    "length", f"total length {total} cannot hold {headers_length} bytes of headers"
                )
            if headers_length > MAX_HEADERS_LENGTH:
                raise self._fail(
                    "length", f"headers length {headers_length} exceeds {MAX_HEADERS_LENGTH}"
                )
            payload_length = total - MIN_MESSAGE_LENGTH - headers_length
            if payload_length > MAX_PAYLOAD_LENGTH:
                raise self._fail(
                    "length", f"payload length {payload_length} exceeds {MAX_PAYLOAD_LENGTH}"
                )
            self._total_length = total
        total = self._total_length
        if available < total:
            return None, start
        message = bytes(buf[start : start + total])
        (message_crc,) = _U32.unpack_from(message, total - CRC_LENGTH)
        computed = _crc32(message[: total - CRC_LENGTH])
        if computed != message_crc:
            raise self._fail(
                "message CRC", f"expected 0x{message_crc:08x}, computed 0x{computed:08x}"
            )
        (headers_length,) = _U32.unpack_from(message, 4)
        headers_end = PRELUDE_LENGTH + headers_length
        headers = self._parse_headers(message[PRELUDE_LENGTH:headers_end])
        payload = payload_from_bytes(message[headers_end : total - CRC_LENGTH], headers)
        self._offset += total
        self._frame_index += 1
        self._total_length = None
        return EventStreamFrame(headers=headers, payload=payload), start + total

    def _parse_headers(self, data: bytes) -> dict[str, Any]:
        headers: dict[str, Any] = {}
        pos = 0
        try:
            while pos < len(data):
                name_length = data[pos]
                pos += 1
                if not name_length:  # what no encoder writes (and ours refuses to)
                    raise ValueError("empty header name")
                name = _take(data, pos, name_length).decode("utf-8")
                pos += name_length
                if name in headers:
                    raise ValueError(f"duplicate header {name!r}")
                headers[name], pos = _parse_value(name, data, pos)
        except (ValueError, IndexError, struct.error) as exc:
            truncated = isinstance(exc, (IndexError, struct.error))
            detail = "headers end inside a header" if truncated else str(exc)
            raise self._fail("header", detail) from None
        return headers


def _take(data: bytes, pos: int, length: int) -> bytes:
    if pos + length > len(data):
        raise IndexError("header runs past the headers section")
    return data[pos : pos + length]


def _parse_value(name: str, data: bytes, pos: int) -> tuple[Any, int]:
    type_code = data[pos]
    pos += 1
    if type_code == _STRING:
        (length,) = struct.unpack_from(">H", data, pos)
        raw = _take(data, pos + 2, length)
        try:
            return raw.decode("utf-8"), pos + 2 + length
        except UnicodeDecodeError:
            raise ValueError(f"string header {name!r} is not UTF-8") from None
    if type_code in (_BOOL_TRUE, _BOOL_FALSE):
        return {"type": "bool", "value": type_code == _BOOL_TRUE}, pos
    if type_code in _INTEGER_FORMATS:
        fmt = _INTEGER_FORMATS[type_code]
        (value,) = fmt.unpack_from(data, pos)
        return {"type": _TYPE_NAMES[type_code], "value": value}, pos + fmt.size
    if type_code == _TYPE_CODES["bytes"]:
        (length,) = struct.unpack_from(">H", data, pos)
        raw = _take(data, pos + 2, length)
        return {"type": "bytes", "value": base64.b64encode(raw).decode("ascii")}, pos + 2 + length
    if type_code == _TYPE_CODES["uuid"]:
        raw = _take(data, pos, 16)
        return {"type": "uuid", "value": str(uuid.UUID(bytes=raw))}, pos + 16
    raise ValueError(f"header {name!r} has unknown value type {type_code}")


# -- encoding -----------------------------------------------------------------


def encode_headers(headers: dict[str, Any]) -> bytes:
    """The headers section of a message; raises
    :class:`~llmock_proxy.errors.WireEncodeError` naming the header that
    cannot be encoded."""
    if not isinstance(headers, dict):
        raise WireEncodeError(f"EventStream headers must be a mapping, got {type(headers).__name__}")
    out = bytearray()
    for name, value in headers.items():
        if not isinstance(name, str):
            raise WireEncodeError(f"EventStream header name {name!r} must be text, got {type(name).__name__}")
        try:
            raw_name = name.encode("utf-8")
        except UnicodeEncodeError:
            raise WireEncodeError(f"EventStream header name {name!r} is not UTF-8 text") from None
        if not 0 < len(raw_name) < 256:
            raise WireEncodeError(f"EventStream header name {name[:300]!r} must be 1 to 255 bytes, not {len(raw_name)}")
        out.append(len(raw_name))
        out += raw_name
        out += _encode_value(name, value)
    if len(out) > MAX_HEADERS_LENGTH:
        raise WireEncodeError(f"EventStream headers of {len(out)} bytes exceed {MAX_HEADERS_LENGTH}")
    return bytes(out)


def _encode_value(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        return bytes([_STRING]) + _with_u16_length(name, _utf8(name, value))
    if not (isinstance(value, dict) and "type" in value and "value" in value):
        raise WireEncodeError(
            f"EventStream header {name!r}: expected a string or {{type, value}}, got {value!r}"[:500]
        )
    kind, inner = value["type"], value["value"]
    try:
        if kind == "bool":
            if not isinstance(inner, bool):
                raise ValueError(f"expected true or false, got {inner!r}")
            return bytes([_BOOL_TRUE if inner else _BOOL_FALSE])
        if kind == "string":
            if not isinstance(inner, str):
                raise ValueError(f"expected text, got {type(inner).__name__}")
            return bytes([_STRING]) + _with_u16_length(name, _utf8(name, inner))
        code = _TYPE_CODES.get(kind) if isinstance(kind, str) else None
        if code is None:
            raise ValueError(f"unknown type {kind!r}")
        if code in _INTEGER_FORMATS:
            if isinstance(inner, bool) or not isinstance(inner, int):
                raise ValueError(f"expected an integer, got {inner!r}")
            return bytes([code]) + _INTEGER_FORMATS[code].pack(inner)
        if code == _TYPE_CODES["bytes"]:
            if not isinstance(inner, str):
                raise ValueError(f"expected base64 text, got {type(inner).__name__}")
            return bytes([code]) + _with_u16_length(name, base64.b64decode(inner, validate=True))
        if not isinstance(inner, str):
            raise ValueError(f"expected a UUID as text, got {type(inner).__name__}")
        return bytes([code]) + uuid.UUID(inner).bytes
    except WireEncodeError:
        raise
    except (struct.error, binascii.Error, ValueError, TypeError) as exc:
        raise WireEncodeError(f"EventStream header {name!r} ({kind}): {exc}"[:500]) from None


def _utf8(name: str, text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise WireEncodeError(f"EventStream header {name!r}: value is not UTF-8 text (a lone surrogate?)") from None


def _with_u16_length(name: str, raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise WireEncodeError(f"EventStream header {name!r}: value of {len(raw)} bytes exceeds 65535")
    return struct.pack(">H", len(raw)) + raw


def encode_frame(frame: EventStreamFrame) -> bytes:
    """One message on the wire, both CRCs computed. Raises
    :class:`~llmock_proxy.errors.WireEncodeError` for a frame that cannot be
    encoded (see the module docstring)."""
    headers = encode_headers(frame.headers)
    payload = _payload_bytes(frame.payload)
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise WireEncodeError(f"EventStream payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    total = MIN_MESSAGE_LENGTH + len(headers) + len(payload)
    prelude = struct.pack(">II", total, len(headers))
    prelude += _U32.pack(_crc32(prelude))
    message = prelude + headers + payload
    return message + _U32.pack(_crc32(message))


def _payload_bytes(payload: Any) -> bytes:
    if not isinstance(payload, Payload):
        raise WireEncodeError(f"EventStream payload must be a Payload, got {type(payload).__name__}")
    kind, value = payload.kind, payload.value
    try:
        if kind == "json":
            return payload.to_bytes()
        if kind == "text" and isinstance(value, str):
            return value.encode("utf-8")
        if kind == "base64" and isinstance(value, str):
            return base64.b64decode(value, validate=True)
    except RecursionError:
        raise WireEncodeError("EventStream payload is nested too deep to write as JSON") from None
    except (TypeError, ValueError) as exc:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise WireEncodeError(f"EventStream payload ({kind}) cannot be encoded: {exc}"[:500]) from None
    raise WireEncodeError(f"EventStream payload: kind {kind!r} with a {type(value).__name__} value cannot be encoded")
