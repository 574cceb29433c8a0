"""Incremental Content-Encoding decoding: identity, gzip, deflate, br, zstd.

The recorder tees a response as it streams, so bodies are decoded chunk by
chunk rather than at the end. ``Content-Encoding: gzip, br`` means gzip was
applied first, so the decoders run in the reverse order.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Protocol

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the same module, backported (a declared dependency before 3.14)
    from backports import zstd


class _Stage(Protocol):
    name: str

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    name = "identity"

    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Gzip:
    """gzip; a body of several concatenated gzip members decodes as their concatenation."""

    name = "gzip"

    def __init__(self) -> None:
        self._stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False  # bytes of the current member have arrived

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            self._started = True
            out.append(self._stream.decompress(data))
            if not self._stream.eof:
                break
            data = self._stream.unused_data
            self._stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
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

    def __init__(self) -> None:
        self._head = b""
        self._stream: zlib._Decompress | None = None

    def feed(self, data: bytes) -> bytes:
        if self._stream is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            zlib_wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._stream = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        return self._stream.decompress(data)

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

    def __init__(self) -> None:
        self._stream = brotli.Decompressor()
        self._started = False

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._started = True
        return self._stream.process(data)

    def flush(self) -> bytes:
        if self._started and not self._stream.is_finished():
            raise brotli.error("stream ended before the end of the brotli data")
        return b""


class _Zstd:
    """zstd; several concatenated frames decode as their concatenation."""

    name = "zstd"

    def __init__(self) -> None:
        self._stream = zstd.ZstdDecompressor()
        self._started = False

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        while data:
            self._started = True
            out.append(self._stream.decompress(data))
            if not self._stream.eof:
                break
            data = self._stream.unused_data
            self._stream = zstd.ZstdDecompressor()
            self._started = False
        return b"".join(out)

    def flush(self) -> bytes:
        if self._started and not self._stream.eof:
            raise zstd.ZstdError("stream ended before the end of the zstd frame")
        return b""


_STAGES: dict[str, type[_Stage]] = {
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

    Raises :class:`ValueError` for an unknown coding (naming it) and for data
    that is not valid for its coding or ends early.
    """

    def __init__(self, content_encoding: str | None) -> None:
        self.content_encoding = content_encoding
        stages: list[_Stage] = []
        for coding in encodings(content_encoding):
            stage_type = _STAGES.get(coding)
            if stage_type is None:
                raise ValueError(f"unknown Content-Encoding {coding!r} in {content_encoding!r}")
            stages.append(stage_type())
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
            raise ValueError(f"cannot decode Content-Encoding {stage.name}: {exc}") from None


def decompress(data: bytes, content_encoding: str | None) -> bytes:
    """A whole body at once."""
    decoder = Decompressor(content_encoding)
    return decoder.feed(data) + decoder.flush()
