"""Incremental Content-Encoding decoding: identity, gzip, deflate, br, zstd.

The recorder tees a response as it streams, so bodies are decoded chunk by
chunk rather than at the end. ``Content-Encoding: gzip, br`` means gzip was
applied first, so the decoders run in the reverse order.

A few kilobytes of gzip, brotli or zstd can decode to gigabytes, so every
stage stops at ``max_size`` decoded bytes (default
:data:`DEFAULT_MAX_DECODED_SIZE`); each decompressor is asked for at most a
bounded piece of output at a time, so memory stays near the cap.

Error contract: :class:`Decompressor` and :func:`decompress` raise
:class:`ContentEncodingError` (a :class:`~llmock_proxy.errors.WireError`) for
an unknown coding, data that is not valid for its coding and data that ends
early, and :class:`~llmock_proxy.errors.BodyTooLarge` (also a ``WireError``)
once the decoded body passes the cap: a server answers that with 413, the
recorder keeps the body as it came.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Protocol

import brotli

from llmock_proxy.errors import BodyTooLarge, WireError

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the same module, backported (a declared dependency before 3.14)
    from backports import zstd

# The decoded size a body may reach; serve (--max-body-size) caps the body
# as sent at the same size.
DEFAULT_MAX_DECODED_SIZE = 64 * 1024 * 1024
# The most output asked of a decompressor in one call.
_PIECE = 1024 * 1024
# Brotli releases before 1.2 cannot bound one call's output: the input goes in
# this many bytes at a time, which holds at most a meta-block or two (16 MiB
# of output each) between two checks of the cap.
_BROTLI_SLICE = 16


class ContentEncodingError(WireError):
    """A body that cannot be decoded: an unknown coding, data that is not
    valid for its coding, or data that ends early. Names the coding."""


class _Stage(Protocol):
    name: str

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Budget:
    """Counts one stage's output against the cap."""

    def __init__(self, coding: str, max_size: int) -> None:
        self.coding = coding
        self.max_size = max_size
        self.produced = 0

    def take(self, out: bytes) -> bytes:
        self.produced += len(out)
        if self.produced > self.max_size:
            raise BodyTooLarge(self.max_size, f"the body decoded from {self.coding}")
        return out

    @property
    def left(self) -> int:
        """How much to ask for next: one more byte than the cap allows, so
        going over it is seen, never more than a piece."""
        return max(1, min(_PIECE, self.max_size - self.produced + 1))


class _Identity:
    name = "identity"

    def __init__(self, max_size: int) -> None:
        self._budget = _Budget(self.name, max_size)

    def feed(self, data: bytes) -> bytes:
        return self._budget.take(data)

    def flush(self) -> bytes:
        return b""


class _Zlib:
    """One zlib stream (gzip, zlib-wrapped or raw deflate), read in bounded pieces."""

    def __init__(self, wbits: int, budget: _Budget) -> None:
        self._stream = zlib.decompressobj(wbits)
        self._budget = budget

    @property
    def eof(self) -> bool:
        return self._stream.eof

    @property
    def unused_data(self) -> bytes:
        return self._stream.unused_data

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        stream, budget = self._stream, self._budget
        while True:
            ask = budget.left
            piece = stream.decompress(data, ask)
            out.append(budget.take(piece))
            left = len(data)
            data = stream.unconsumed_tail
            # A full piece may leave output inside zlib even with no input left.
            if stream.eof or (not data and len(piece) < ask) or (not piece and len(data) == left):
                return out

    def flush(self) -> bytes:
        return self._budget.take(self._stream.flush(self._budget.left))


class _Gzip:
    """gzip; a body of several concatenated gzip members decodes as their concatenation."""

    name = "gzip"

    def __init__(self, max_size: int) -> None:
        self._budget = _Budget(self.name, max_size)
        self._stream = _Zlib(16 + zlib.MAX_WBITS, self._budget)
        self._started = False  # bytes of the current member have arrived

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            self._started = True
            out += self._stream.feed(data)
            if not self._stream.eof:
                break
            data = self._stream.unused_data
            self._stream = _Zlib(16 + zlib.MAX_WBITS, self._budget)
            self._started = False
        return b"".join(out)

    def flush(self) -> bytes:
        tail = self._stream.flush()
        if self._started and not self._stream.eof:
            raise zlib.error("stream ended before the end of the gzip member")
        return tail


class _Deflate:
    """HTTP "deflate" is meant to be zlib-wrapped; some servers send raw deflate.
    The first two bytes tell which: a zlib header is a multiple of 31."""

    name = "deflate"

    def __init__(self, max_size: int) -> None:
        self._budget = _Budget(self.name, max_size)
        self._head = b""
        self._stream: _Zlib | None = None

    def feed(self, data: bytes) -> bytes:
        if self._stream is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            zlib_wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._stream = _Zlib(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS, self._budget)
        return b"".join(self._stream.feed(data))

    def flush(self) -> bytes:
        if self._stream is None:
            if self._head:
                raise zlib.error("stream ended inside the deflate header")
            return b""
        tail = self._stream.flush()
        if not self._stream.eof:
            raise zlib.error("stream ended before the end of the deflate data")
        return tail


class _Brotli:
    name = "br"

    def __init__(self, max_size: int) -> None:
        self._budget = _Budget(self.name, max_size)
        self._stream = brotli.Decompressor()
        # brotli >= 1.2 bounds one call's output itself.
        self._bounded = hasattr(self._stream, "can_accept_more_data")
        self._started = False

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._started = True
        if self._bounded:
            return self._feed_bounded(data)
        out: list[bytes] = []
        take, process = self._budget.take, self._stream.process
        for start in range(0, len(data), _BROTLI_SLICE):
            out.append(take(process(data[start : start + _BROTLI_SLICE])))
        return b"".join(out)

    def _feed_bounded(self, data: bytes) -> bytes:
        out: list[bytes] = []
        stream, budget = self._stream, self._budget
        out.append(budget.take(stream.process(data, output_buffer_limit=budget.left)))
        while not stream.can_accept_more_data():
            out.append(budget.take(stream.process(b"", output_buffer_limit=budget.left)))
        return b"".join(out)

    def flush(self) -> bytes:
        if self._started and not self._stream.is_finished():
            raise brotli.error("stream ended before the end of the brotli data")
        return b""


class _Zstd:
    """zstd; several concatenated frames decode as their concatenation."""

    name = "zstd"

    def __init__(self, max_size: int) -> None:
        self._budget = _Budget(self.name, max_size)
        self._stream = zstd.ZstdDecompressor()
        self._started = False

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        budget = self._budget
        while data:
            self._started = True
            stream = self._stream
            out.append(budget.take(stream.decompress(data, budget.left)))
            # Output held back by the bound comes with more calls on no input.
            while not stream.eof and not stream.needs_input:
                out.append(budget.take(stream.decompress(b"", budget.left)))
            if not stream.eof:
                break
            data = stream.unused_data
            self._stream = zstd.ZstdDecompressor()
            self._started = False
        return b"".join(out)

    def flush(self) -> bytes:
        if self._started and not self._stream.eof:
            raise zstd.ZstdError("stream ended before the end of the zstd frame")
        return b""


_STAGES: dict[str, Callable[[int], _Stage]] = {
    "identity": _Identity,
    "gzip": _Gzip,
    "x-gzip": _Gzip,  # RFC 9110: to be treated as gzip
    "deflate": _Deflate,
    "br": _Brotli,
    "zstd": _Zstd,
}

_DECODE_ERRORS: tuple[type[Exception], ...] = (zlib.error, brotli.error, zstd.ZstdError)


def encodings(content_encoding: str | None) -> list[str]:
    """The codings named by a Content-Encoding value, in the order they were applied."""
    if not content_encoding:
        return []
    return [part.strip().lower() for part in content_encoding.split(",") if part.strip()]


class Decompressor:
    """Decode a body that arrives in pieces: ``feed`` each piece, then ``flush``.

    Raises :class:`ContentEncodingError` for an unknown coding (naming it) and
    for data that is not valid for its coding or ends early, and
    :class:`~llmock_proxy.errors.BodyTooLarge` once a stage has put out more
    than ``max_size`` bytes. After an error the decompressor is not used again.
    """

    def __init__(self, content_encoding: str | None, *, max_size: int = DEFAULT_MAX_DECODED_SIZE) -> None:
        self.content_encoding = content_encoding
        self.max_size = max_size
        stages: list[_Stage] = []
        for coding in encodings(content_encoding):
            make = _STAGES.get(coding)
            if make is None:
                raise ContentEncodingError(f"unknown Content-Encoding {coding!r} in {content_encoding!r}")
            stages.append(make(max_size))
        # The last coding applied is the first one to undo.
        self._stages = stages[::-1]

    def feed(self, data: bytes) -> bytes:
        for stage in self._stages:
            data = self._run(stage, stage.feed, data)
        return data

    def flush(self) -> bytes:
        data = b""
        for stage in self._stages:
            data = self._run(stage, stage.feed, data) + self._run(stage, stage.flush)
        return data

    @staticmethod
    def _run(stage: _Stage, step: Callable[..., bytes], *args: bytes) -> bytes:
        try:
            return step(*args)
        except _DECODE_ERRORS as exc:
            raise ContentEncodingError(f"cannot decode Content-Encoding {stage.name}: {exc}") from None


def decompress(data: bytes, content_encoding: str | None, *, max_size: int = DEFAULT_MAX_DECODED_SIZE) -> bytes:
    """A whole body at once (see :class:`Decompressor` for the errors)."""
    decoder = Decompressor(content_encoding, max_size=max_size)
    return decoder.feed(data) + decoder.flush()
