"""Every codec and loader under arbitrary input, on a small hypothesis budget
(the long run, over 200k cases, is ``benchmarks/fuzz.py``).

The property is the same everywhere: a failure is the target's documented
error (``WireError`` and its kinds, ``CassetteError``/``MatchSpecError``,
``RequestShapeError``, ``yaml.YAMLError`` for the raw YAML reader) and never
``RecursionError``, ``TypeError`` or a bare ``ValueError``; what a decoder
produces goes back on the wire as it came.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import brotli
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmock_proxy import nesting
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import EventStreamFrame, Payload, Request
from llmock_proxy.errors import CassetteError, MatchSpecError, RequestShapeError, WireEncodeError, WireError
from llmock_proxy.match.matcher import Matcher
from llmock_proxy.providers.catalog import CATALOG, GENERIC
from llmock_proxy.replay.llmock_format import load_fixture_file
from llmock_proxy.wire import content_encoding, http1
from llmock_proxy.wire.eventstream import EventStreamDecoder, EventStreamError, encode_frame
from llmock_proxy.wire.ndjson import NDJSONDecoder, encode_line
from llmock_proxy.wire.sse import SSEDecoder, encode_event

BUDGET = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(min(c, len(data)) for c in cuts)
    out, start = [], 0
    for point in [*points, len(data)]:
        out.append(data[start:point])
        start = point
    return out


def feed_all(decoder: Any, chunks: list[bytes]) -> list[Any]:
    items: list[Any] = []
    for chunk in chunks:
        items += decoder.feed(chunk)
    return items + decoder.close()


def same(a: list[Any], b: list[Any]) -> bool:
    return [repr(x.to_dict()) for x in a] == [repr(x.to_dict()) for x in b]


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
json_texts = json_values.map(lambda v: json.dumps(v).encode())
# Bytes that look like what the decoders read, mixed with deep and broken JSON.
SSE_TOKENS = [b"data: ", b"data:", b"event: x", b"id: 1", b"id: \x00", b"retry: 10", b"retry: " + b"9" * 5000, b": c",
              b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\xff", b"{", b"[", b'"', b"[DONE]", deep(300), deep(20_000)]
stream_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.sampled_from(SSE_TOKENS), json_texts), max_size=20).map(b"".join),
)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=6)


@BUDGET
@given(stream_bytes, cuts)
def test_sse_decodes_any_bytes_and_what_it_decodes_goes_back_the_same(data: bytes, where: list[int]) -> None:
    for event in feed_all(SSEDecoder(), pieces(data, where)):
        assert same(feed_all(SSEDecoder(), [encode_event(event)]), [event])


@BUDGET
@given(stream_bytes, cuts)
def test_ndjson_decodes_any_bytes_and_what_it_decodes_goes_back_the_same(data: bytes, where: list[int]) -> None:
    for line in feed_all(NDJSONDecoder(), pieces(data, where)):
        assert same(feed_all(NDJSONDecoder(), [encode_line(line)]), [line])


header_names = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from([":event-type", ":content-type", "", "x" * 256]))
header_values = st.one_of(
    st.text(max_size=20),
    st.fixed_dictionaries({"type": st.sampled_from(["bool", "byte", "short", "int", "long", "timestamp", "bytes", "uuid",
                                                    "string", "colour"]),
                           "value": st.one_of(st.booleans(), st.integers(), st.text(max_size=8), st.none())}),
    st.integers(),
    st.none(),
)
payloads = st.one_of(
    json_values.map(lambda v: Payload("json", v)),
    st.text(max_size=30).map(lambda t: Payload("text", t)),
    st.binary(max_size=30).map(lambda b: Payload.from_bytes(b, exact=True)),
    st.sampled_from([Payload("text", deep(5_000).decode()), Payload("base64", "!!"), Payload("json", {1})]),
)
frames = st.builds(EventStreamFrame, st.dictionaries(header_names, header_values, max_size=4), payloads)


@BUDGET
@given(frames)
def test_eventstream_encodes_or_refuses_with_wire_encode_error_and_decodes_what_it_wrote(frame: EventStreamFrame) -> None:
    try:
        wire = encode_frame(frame)
    except WireEncodeError:
        return
    decoder = EventStreamDecoder()
    (again,) = decoder.feed(wire) + decoder.close()
    assert encode_frame(again) == wire


@BUDGET
@given(st.lists(frames, max_size=3), st.binary(max_size=8), st.integers(min_value=0, max_value=2000), cuts)
def test_eventstream_decodes_any_bytes_or_says_eventstream_error(
    items: list[EventStreamFrame], noise: bytes, at: int, where: list[int]
) -> None:
    wire = b""
    for frame in items:
        try:
            wire += encode_frame(frame)
        except WireEncodeError:
            pass
    damaged = wire[:at] + noise + wire[at:] if noise else wire
    decoded: list[EventStreamFrame] = []
    decoder = EventStreamDecoder()
    try:
        for chunk in pieces(damaged, where):
            decoded += decoder.feed(chunk)
        decoded += decoder.close()
    except EventStreamError:
        pass
    assert damaged.startswith(b"".join(encode_frame(f) for f in decoded))


CODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda data: brotli.compress(data, quality=1),
    "zstd": content_encoding.zstd.compress,
    "identity": lambda data: data,
}


@BUDGET
@given(st.binary(max_size=2000), st.lists(st.sampled_from(sorted(CODERS)), max_size=3), st.binary(max_size=6),
       st.integers(min_value=0, max_value=3000), cuts)
def test_content_encoding_decodes_exactly_or_says_wire_error(
    plain: bytes, codings: list[str], noise: bytes, at: int, where: list[int]
) -> None:
    data = plain
    for coding in codings:
        data = CODERS[coding](data)
    header = ", ".join(codings)
    damaged = data[:at] + noise + data[at:]
    for body, exact in ((data, True), (damaged, not noise)):
        try:
            decoder = content_encoding.Decompressor(header, max_size=1500)
            out = b"".join(decoder.feed(chunk) for chunk in pieces(body, where)) + decoder.flush()
        except WireError:
            continue
        if exact:
            assert out == plain


@BUDGET
@given(json_values)
def test_nesting_loads_reads_what_json_reads_within_the_limit(value: Any) -> None:
    text = json.dumps(value)
    assert nesting.loads(text) == json.loads(text)


@BUDGET
@given(st.integers(min_value=1, max_value=3_000), st.sampled_from(["[", '{"k":']), st.booleans())
def test_nesting_loads_refuses_only_what_is_too_deep(depth: int, opener: str, closed: bool) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * depth + ("0" if opener != "[" else "") + (closer * depth if closed else "")
    try:
        nesting.loads(text, 100)
    except ValueError as exc:  # TooDeep, or not JSON (unclosed)
        assert depth > 100 or not closed, exc
    else:
        assert depth <= 100 and closed


YAML_TOKENS = ["version: 1\n", "interactions:\n", "- ", "  ", "request: ", "{method: GET, url: 'https://x.test/'}",
               "response: {status: 200}\n", "&a ", "*a", "<<: *a\n", "!!python/object:os.system ", "!!binary aGk=",
               "? [a]: b\n", "[", "]", "{", "}", ": ", "\n", "'", '"\\ud800"', "0x" + "f" * 5000, "9" * 5000, "---\n", "%YAML 1.1\n",
               "\t", "#", "|\n", "1:30", ".nan", "2025-01-01", "\xff"]
yaml_texts = st.one_of(st.text(max_size=200), st.lists(st.sampled_from(YAML_TOKENS), max_size=30).map("".join))


@BUDGET
@given(yaml_texts)
def test_yaml_loads_any_text_or_says_yaml_error(text: str) -> None:
    try:
        yamlio.loads(text)
    except yaml.YAMLError:
        pass


@BUDGET
@given(yaml_texts)
def test_a_cassette_parses_or_says_cassette_error(text: str) -> None:
    try:
        cassette_store.parse(text, "fuzz.yaml", cache=None)
    except CassetteError as exc:
        assert str(exc).startswith("fuzz.yaml")


@BUDGET
@given(st.binary(max_size=300) | json_texts | st.sampled_from([deep(201), deep(100_000), b'{"a":"\\ud800"}', b"9" * 5000]),
       st.sampled_from([None, "application/json", "text/plain", "application/octet-stream"]), st.booleans())
def test_payload_from_bytes_never_raises_and_exact_gives_back_its_bytes(data: bytes, content_type: str | None, exact: bool) -> None:
    payload = Payload.from_bytes(data, content_type, exact=exact)
    if exact or payload.kind != "json":
        assert payload.to_bytes() == data


@BUDGET
@given(st.sampled_from([*CATALOG, GENERIC]), st.dictionaries(
    st.sampled_from(["model", "messages", "input", "contents", "system", "tools", "prompt", "stream", "toolConfig"]),
    json_values, max_size=5))
def test_canonical_reads_a_json_object_or_says_request_shape_error(provider: Any, body: dict[str, Any]) -> None:
    request = Request("POST", "https://api.example.test/v1/x", {"content-type": "application/json"}, Payload("json", body))
    try:
        provider.canonical(request)
    except RequestShapeError as exc:
        assert str(exc).startswith(provider.family)


http_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"POST / HTTP/1.1\r\n", b"GET /x HTTP/1.0\r\n", b"Host: x\r\n", b"Content-Length: 3\r\n",
                              b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n", b"\r\n", b"\n", b"abc",
                              b"Bad Header\r\n", b"X: \xff\r\n"]), max_size=12).map(b"".join),
)


@BUDGET
@given(http_bytes, cuts)
def test_http1_parser_never_raises(data: bytes, where: list[int]) -> None:
    parser = http1.RequestParser()
    for chunk in pieces(data, where):
        parser.feed(chunk)
        while isinstance(parser.next_request(), http1.HTTPRequest):
            pass


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-fixtures")


fixture_entries = st.fixed_dictionaries(
    {"match": st.dictionaries(st.sampled_from(["userMessage", "model", "toolName", "sequenceIndex", "userMesage"]),
                              json_values, max_size=3),
     "response": st.one_of(json_values, st.fixed_dictionaries({"content": json_values}))},
)


@BUDGET
@given(st.one_of(st.lists(fixture_entries, max_size=3).map(lambda f: {"fixtures": f}), json_values).map(json.dumps)
       | st.sampled_from(['{"fixtures": [' + deep(5_000).decode() + "]}", "{", "\xff"]))
def test_a_fixture_file_loads_or_says_cassette_error(scratch: Path, text: str) -> None:
    path = scratch / "fixtures.json"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        matcher = Matcher()
        for fixture in load_fixture_file(path):
            matcher.add(fixture)
    except (CassetteError, MatchSpecError) as exc:
        assert str(path) in str(exc) or "fixtures" in str(exc)
