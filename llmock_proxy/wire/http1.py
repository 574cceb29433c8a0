"""A sans-IO HTTP/1.1 server side: request bytes in, requests out; answer heads out.

Made for the replay engine's own server (:mod:`llmock_proxy.replay.http_server`),
where aiohttp's web layer cost more than the rest of an answer. It reads what
SDKs send: a request line, headers, a ``Content-Length`` body (or none),
keep-alive and pipelined requests, HTTP/1.0, split anywhere across reads.
What it does not read itself (a chunked request body, ``Expect:
100-continue``, a request line in absolute form, bare-LF line ends) it
reports as :class:`Handover`, for a complete HTTP server to take the
connection from the start of that request (:meth:`RequestParser.pending`).
A request it must refuse is a :class:`Refusal` (status and reason): the
server answers it and closes, since what follows cannot be trusted to start
a request.

Like h11, it knows nothing of sockets: ``feed`` bytes, ``next_request``
until it says it needs more.
"""

from __future__ import annotations

import email.utils
import http
import re
from dataclasses import dataclass
from typing import Any

# Limits (bytes): a request line, one header line, all of a head; how many
# header lines; a body (a parser's default: the replay engine passes its own cap).
MAX_REQUEST_LINE = 16 * 1024
MAX_HEADER_LINE = 16 * 1024
MAX_HEAD = 64 * 1024
MAX_HEADERS = 256
MAX_BODY = 256 * 1024 * 1024

# Headers whose repetition with different values makes a request ambiguous
# (how long its body is, where it goes): refused rather than guessed.
_SINGLE = frozenset({"content-length", "host", "transfer-encoding"})


@dataclass(slots=True)
class HTTPRequest:
    """One complete request. ``headers``: lower-case names (the last of a
    repeated header wins); ``keep_alive``: whether the connection may carry
    another request after this one's answer."""

    method: str
    target: str
    version: str  # "1.1" or "1.0"
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class Handover:
    """A request this parser does not read (``reason`` says why): the
    connection goes, from :meth:`RequestParser.pending` on, to a server that does."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request that cannot be served: answer ``status`` with ``reason`` and close."""

    status: int
    reason: str


class RequestParser:
    """Requests from the bytes of one connection, in order.

    :meth:`next_request` returns a :class:`HTTPRequest`, a
    :class:`Handover`, a :class:`Refusal`, or None when more bytes are
    needed. After a Handover or a Refusal the parser is done."""

    def __init__(
        self,
        *,
        max_request_line: int = MAX_REQUEST_LINE,
        max_header_line: int = MAX_HEADER_LINE,
        max_head: int = MAX_HEAD,
        max_headers: int = MAX_HEADERS,
        max_body: int = MAX_BODY,
    ) -> None:
        self.max_request_line = max_request_line
        self.max_header_line = max_header_line
        self.max_head = max_head
        self.max_headers = max_headers
        self.max_body = max_body
        self._buffer = b""
        self._pos = 0  # where the next request starts in _buffer
        self._start = 0  # where the last request returned (or handed over) started
        self._scanned = 0  # the head's end is not before this (less 3) in _buffer
        # A head read whose body has not all arrived: (request, body start, body length),
        # and the reads since, joined once the body is all in (a big body comes in
        # many reads: adding each to the buffer would copy it over and over).
        self._waiting: tuple[HTTPRequest, int, int] | None = None
        self._pieces: list[bytes] = []
        self._piece_bytes = 0
        # The last head read, as sent and as read: SDKs send the same head
        # again and again (only a body's length changes it).
        self._last_head: tuple[bytes, str, str, str, dict[str, str], bool] | None = None
        self.done = False

    def feed(self, data: bytes) -> None:
        if self._waiting is not None:
            self._pieces.append(data)
            self._piece_bytes += len(data)
            return
        if self._start:  # what came before the last request is read: drop it
            self._buffer = self._buffer[self._start :]
            self._pos -= self._start
            self._scanned = max(0, self._scanned - self._start)
            self._start = 0
        self._buffer = self._buffer + data if self._buffer else data

    def pending(self) -> bytes:
        """The bytes from the start of the last request returned (or handed
        over) on: what a server taking the connection over reads first."""
        return self._buffer[self._start :] + b"".join(self._pieces)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet part of a request returned."""
        return len(self._buffer) + self._piece_bytes - self._pos

    def next_request(self) -> HTTPRequest | Handover | Refusal | None:
        if self.done:
            return None
        buffer = self._buffer
        waiting = self._waiting
        if waiting is not None:
            request, body_start, length = waiting
            if len(buffer) + self._piece_bytes - body_start < length:
                return None
            if self._pieces:
                buffer = self._buffer = b"".join([buffer, *self._pieces])
                self._pieces.clear()
                self._piece_bytes = 0
            self._waiting = None
            request.body = buffer[body_start : body_start + length]
            self._start, self._pos = self._pos, body_start + length
            return request
        pos = self._pos
        if pos >= len(buffer):
            return None
        while buffer.startswith(b"\r\n", pos):  # empty lines before a request line are ignored
            pos += 2
        self._pos = pos
        searched_from = max(pos, self._scanned - 3)  # a head coming in many reads is searched once
        end = buffer.find(b"\r\n\r\n", searched_from)
        if end < 0:
            self._scanned = len(buffer)
            return self._incomplete_head(buffer, pos, searched_from)
        if end - pos > self.max_head:
            return self._refuse(431, f"the request head is longer than {self.max_head} bytes")
        raw = buffer[pos:end]
        last = self._last_head
        if last is not None and raw == last[0]:  # a client sending the same head again: read once
            _, method, target, version, known, keep_alive = last
            headers = known.copy()
        else:
            head = self._read_head(raw, pos)
            if not isinstance(head, tuple):
                return head
            method, target, version, headers, keep_alive = head
            self._last_head = (raw, method, target, version, headers.copy(), keep_alive)
        request = HTTPRequest(method, target, version, headers, b"", keep_alive)
        body_start = end + 4
        length_text = headers.get("content-length")
        if length_text is None or length_text == "0":
            self._start, self._pos = pos, body_start
            return request
        if not (length_text.isascii() and length_text.isdigit()):
            return self._refuse(400, f"Content-Length {length_text[:40]!r} is not a length")
        length = int(length_text)
        if length > self.max_body:
            return self._refuse(413, f"the request body ({length} bytes) is larger than {self.max_body} bytes")
        if len(buffer) - body_start < length:
            self._waiting = (request, body_start, length)
            self._start = pos
            return None
        request.body = buffer[body_start : body_start + length]
        self._start, self._pos = pos, body_start + length
        return request

    def _read_head(self, raw: bytes, pos: int) -> tuple[str, str, str, dict[str, str], bool] | Handover | Refusal:
        """A request head (without its blank line) read: (method, target,
        version, headers, keep-alive), or why it cannot be served here."""
        head = raw.decode("latin-1")
        newlines = head.count("\n")
        if newlines != head.count("\r") or newlines != head.count("\r\n"):
            return self._hand_over(pos, "a line of the head ends in a bare CR or LF")
        line_end = head.find("\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        if len(request_line) > self.max_request_line:
            return self._refuse(414, f"the request line is longer than {self.max_request_line} bytes")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            return self._refuse(400, f"not an HTTP request line: {request_line[:100]!r}")
        method, target, protocol = parts
        if protocol == "HTTP/1.1":
            version = "1.1"
        elif protocol == "HTTP/1.0":
            version = "1.0"
        elif protocol.startswith("HTTP/") and protocol[5:6].isdigit():
            return self._refuse(505, f"HTTP version {protocol[5:]!r} is not supported")
        else:
            return self._refuse(400, f"not an HTTP request line: {request_line[:100]!r}")
        if not method.isascii() or not method.isalpha():
            return self._refuse(400, f"not an HTTP method: {method[:40]!r}")
        if newlines > self.max_headers:
            return self._refuse(431, f"the request has more than {self.max_headers} header lines")
        # Every header line at once: "\r\n" name ":" value, the name a token.
        fields = _HEADER_LINE.findall(head, line_end) if line_end >= 0 else []
        if len(fields) != newlines:
            return self._refuse(*_bad_header_line(head[line_end + 2 :].split("\r\n"), self.max_header_line))
        headers: dict[str, str] = {}
        for name, value in fields:
            name = name.lower()
            if name in headers and name in _SINGLE and headers[name] != value:
                return self._refuse(400, f"the request has two different {name} headers")
            headers[name] = value
        if len(head) > self.max_header_line:  # one of the lines may be too long
            refusal = _long_header_line(fields, self.max_header_line)
            if refusal is not None:
                return self._refuse(*refusal)
        if target[0] != "/" and not (target == "*" and method == "OPTIONS"):
            return self._hand_over(pos, f"the request target {target[:40]!r} is not a path")
        connection = headers.get("connection")
        if connection is None:
            keep_alive = version == "1.1"
        else:
            tokens = connection.lower()
            if version == "1.1":
                keep_alive = "close" not in tokens
            else:
                keep_alive = "keep-alive" in tokens
        if "transfer-encoding" in headers:
            return self._hand_over(pos, "a request body in transfer-coding")
        if "expect" in headers:
            return self._hand_over(pos, "Expect: " + headers["expect"])
        return method, target, version, headers, keep_alive

    def _incomplete_head(self, buffer: bytes, pos: int, searched_from: int) -> Handover | Refusal | None:
        """No blank line yet: wait, unless the head can no longer be one."""
        size = len(buffer) - pos
        line_end = buffer.find(b"\r\n", pos, pos + self.max_request_line + 2)
        if line_end < 0 and size > self.max_request_line:
            return self._refuse(414, f"the request line is longer than {self.max_request_line} bytes")
        if size > self.max_head:
            return self._refuse(431, f"the request head is longer than {self.max_head} bytes")
        if buffer.find(b"\n\n", searched_from) >= 0:
            return self._hand_over(pos, "the head's lines end in a bare LF")
        return None

    def _hand_over(self, pos: int, reason: str) -> Handover:
        self.done = True
        self._start = pos
        return Handover(reason)

    def _refuse(self, status: int, reason: str) -> Refusal:
        self.done = True
        return Refusal(status, reason)


# A header line after the one before it: CRLF, a token, a colon, the value
# without the blanks around it. A value's inner blanks stay.
_HEADER_LINE = re.compile(r"\r\n([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\r\n]*[^\r\n \t])?)[ \t]*(?=\r\n|\Z)")


def _bad_header_line(lines: list[str], max_line: int) -> tuple[int, str]:
    """Why a head's header lines do not all read (the first that does not)."""
    for line in lines:
        if _HEADER_LINE.fullmatch("\r\n" + line) is None:
            if len(line) > max_line:
                return 431, f"a header line is longer than {max_line} bytes"
            return 400, f"not a header line: {line[:100]!r}"
    return 400, "the head does not read as header lines"


def _long_header_line(fields: list[tuple[str, str]], max_line: int) -> tuple[int, str] | None:
    for name, value in fields:
        if len(name) + len(value) + 2 > max_line:
            return 431, f"the header {name[:40]!r} is longer than {max_line} bytes"
    return None


# -- answers ------------------------------------------------------------------------------------------

_REASONS = {status.value: status.phrase for status in http.HTTPStatus}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


class DateHeader:
    """The ``Date`` header value, made once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def value(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True)
        return self._value


def response_head(
    status: int,
    headers: list[tuple[str, str]],
    framing: str,
    *,
    date: str,
    version: str = "1.1",
) -> bytes:
    """The status line and headers of an answer, ending in the blank line.

    ``headers``: the answer's own, without framing headers; ``framing`` is
    what the server adds for the body and connection (e.g.
    ``"Content-Length: 12\\r\\n"``, ``"Transfer-Encoding: chunked\\r\\n"``,
    ``"Connection: close\\r\\n"``); ``date`` goes in a Date header unless
    ``headers`` have one. Raises ValueError when a header would
    break the head (a name or value with a line break)."""
    return _with_framing(_head_lines(status, headers, version), framing, date)


def _head_lines(status: int, headers: list[tuple[str, str]], version: str) -> tuple[str, bool]:
    """The status line and ``headers``' lines, and whether a Date is among them."""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
        bad = next((n for n, v in headers if "\r" in n + v or "\n" in n + v), "?")
        raise ValueError(f"the header {bad!r} has a line break in its name or value")
    dated = "\ndate:" in "\n" + lines.lower()  # a recorded Date stays, as aiohttp kept it
    return f"HTTP/{version} {status} {reason_phrase(status)}\r\n{lines}", dated


def _with_framing(lines: tuple[str, bool], framing: str, date: str) -> bytes:
    head, dated = lines
    if dated:
        return f"{head}{framing}\r\n".encode()
    return f"{head}Date: {date}\r\n{framing}\r\n".encode()


class ResponseHeads:
    """:func:`response_head` for one server, with the lines of the heads it
    made last kept: an answer served again has the same status and headers,
    and only its Date and framing change."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._lines: dict[tuple[Any, ...], tuple[str, bool]] = {}

    def head(self, status: int, headers: list[tuple[str, str]], framing: str, *, date: str,
             version: str = "1.1") -> bytes:
        key = (status, version, *headers)
        lines = self._lines.get(key)
        if lines is None:
            lines = _head_lines(status, headers, version)
            if len(self._lines) >= self.limit:  # new ids in every answer: start over
                self._lines.clear()
            self._lines[key] = lines
        return _with_framing(lines, framing, date)


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (nothing for no data: an
    empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"
