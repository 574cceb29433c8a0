"""Incremental Content-Encoding decoding, fed in small pieces, checked against
the compressors themselves and mitmproxy's own (whole-body) decoder."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.net import encoding as mitmproxy_encoding

from llmock_proxy.wire.content_encoding import Decompressor, decompress, encodings

try:
    from compression import zstd
except ImportError:
    from backports import zstd

BODY = b"".join(
    f'data: {{"id":"chatcmpl-1","choices":[{{"index":0,"delta":{{"content":"tok{i} \u00e9\u00e8"}}}}]}}\n\n'.encode()
    for i in range(300)
) + b"data: [DONE]\n\n"


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _zstd_streamed(data: bytes) -> bytes:
    # A streaming compressor writes frames without a content size, as servers do.
    compressor = zstd.ZstdCompressor()
    return compressor.compress(data) + compressor.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def feed_in_pieces(content_encoding: str | None, data: bytes, size: int) -> bytes:
    decoder = Decompressor(content_encoding)
    out = [decoder.feed(data[i : i + size]) for i in range(0, len(data), size)]
    out.append(decoder.flush())
    return b"".join(out)


@pytest.mark.parametrize("name", sorted(ENCODERS))
@pytest.mark.parametrize("size", [1, 3, 64, 100_000])
def test_each_encoding_fed_in_small_pieces(name, size):
    compressed = ENCODERS[name](BODY)
    assert feed_in_pieces(name, compressed, size) == BODY
    assert mitmproxy_encoding.decode(compressed, name) == BODY


class _FlushingEncoder:
    """A streaming server's compressor: every event is flushed out on its own."""

    def __init__(self, name: str):
        self.name = name
        if name == "gzip":
            self._z = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._z = zlib.compressobj()
        elif name == "br":
            self._br = brotli.Compressor()
        else:
            self._zstd = zstd.ZstdCompressor()

    def event(self, data: bytes) -> bytes:
        if self.name in ("gzip", "deflate"):
            return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        if self.name == "br":
            return self._br.process(data) + self._br.flush()
        return self._zstd.compress(data, mode=zstd.ZstdCompressor.FLUSH_BLOCK)

    def end(self) -> bytes:
        if self.name in ("gzip", "deflate"):
            return self._z.flush()
        if self.name == "br":
            return self._br.finish()
        return self._zstd.flush()


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_each_flushed_event_comes_out_when_its_bytes_arrive(name):
    # The recorder tees a live stream: an event must not wait for the end of the body.
    encoder = _FlushingEncoder(name)
    decoder = Decompressor(name)
    events = [f"data: {{\"n\":{i}}}\n\n".encode() for i in range(20)]
    for event in events:
        assert decoder.feed(encoder.event(event)) == event
    assert decoder.feed(encoder.end()) + decoder.flush() == b""


def test_raw_deflate_is_accepted_too():
    compressed = _raw_deflate(BODY)
    assert feed_in_pieces("deflate", compressed, 1) == BODY
    assert mitmproxy_encoding.decode(compressed, "deflate") == BODY


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=2000), level=st.integers(0, 9), size=st.integers(1, 50), wrapped=st.booleans())
def test_deflate_header_detection_never_confuses_the_two_forms(body, level, size, wrapped):
    compressed = zlib.compress(body, level) if wrapped else _raw_deflate(body)
    assert feed_in_pieces("deflate", compressed, size) == body


def test_streamed_zstd_without_content_size():
    assert feed_in_pieces("zstd", _zstd_streamed(BODY), 5) == BODY


def test_concatenated_gzip_members_and_zstd_frames():
    halves = BODY[:1000], BODY[1000:]
    assert feed_in_pieces("gzip", b"".join(gzip.compress(h) for h in halves), 7) == BODY
    assert feed_in_pieces("zstd", b"".join(zstd.compress(h) for h in halves), 7) == BODY


def test_encoding_lists_are_undone_in_reverse_order():
    # "gzip, br": gzip applied first, then br.
    compressed = brotli.compress(gzip.compress(BODY))
    assert feed_in_pieces("gzip, br", compressed, 11) == BODY
    compressed = zstd.compress(zlib.compress(brotli.compress(BODY)))
    assert feed_in_pieces("br,deflate , zstd", compressed, 2) == BODY
    assert decompress(gzip.compress(BODY), "identity, gzip") == BODY


def test_identity_and_no_encoding_pass_through():
    for value in (None, "", "identity", " Identity "):
        assert feed_in_pieces(value, BODY, 10) == BODY


def test_names_are_case_insensitive_and_x_gzip_is_gzip():
    assert decompress(gzip.compress(BODY), "GZip") == BODY
    assert decompress(gzip.compress(BODY), "x-gzip") == BODY
    assert encodings(" GZIP , br ,") == ["gzip", "br"]


def test_unknown_encoding_is_named():
    with pytest.raises(ValueError, match="unknown Content-Encoding 'compress'"):
        Decompressor("gzip, compress")


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_empty_body_decodes_to_nothing(name):
    assert feed_in_pieces(name, b"", 1) == b""


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_truncated_body_raises_at_flush(name):
    compressed = ENCODERS[name](BODY)
    decoder = Decompressor(name)
    partial = decoder.feed(compressed[: len(compressed) // 2])
    assert BODY.startswith(partial)
    with pytest.raises(ValueError, match=f"Content-Encoding {name}"):
        decoder.flush()


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_corrupt_body_raises_naming_the_encoding(name):
    with pytest.raises(ValueError, match=f"Content-Encoding {name}"):
        decompress(b"this is plainly not compressed data" * 4, name)


def test_deflate_ending_inside_its_header():
    decoder = Decompressor("deflate")
    assert decoder.feed(b"\x78") == b""
    with pytest.raises(ValueError, match="deflate"):
        decoder.flush()
