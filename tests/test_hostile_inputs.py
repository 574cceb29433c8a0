"""Hostile input on the parsing side: each case ends in our own documented
error (or is kept as text), never ``RecursionError`` or a raw ``ValueError``,
and no server stops answering because of it.

Deep nesting in SSE/NDJSON data, EventStream payloads, fixture JSON and
cassette YAML; YAML alias bombs; decompression bombs; EventStream headers
that cannot be encoded; an upstream sending garbage while the record addon
tees it; and, after each, the replay addon and the engine answering the next
client as usual.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import brotli
import pytest
import yaml

from llmock_proxy import cli, nesting
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import EventStreamFrame, Payload
from llmock_proxy.cassette.parse_cache import ParseCache
from llmock_proxy.errors import BodyTooLarge, CassetteError, TooDeep, WireEncodeError, WireError
from llmock_proxy.replay.llmock_format import load_fixture_file
from llmock_proxy.replay.session import ReplaySession
from llmock_proxy.wire import content_encoding
from llmock_proxy.wire.eventstream import EventStreamDecoder, encode_frame
from llmock_proxy.wire.ndjson import NDJSONDecoder, encode_line
from llmock_proxy.wire.sse import SSEDecoder, encode_event
from tests.harness import clients as sdk
from tests.harness.http import httpx
from tests.support.replay import EngineThread
from tests.test_record_failures import recorded, recording_proxy
from tests.test_replay_addon import start_replay


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


FIXTURES = {"fixtures": [{"match": {"userMessage": "hello"}, "response": {"content": "Hi there."}}]}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def alias_bomb(levels: int = 9, fanout: int = 10, padding: int = 0) -> str:
    """``levels`` aliases deep, each repeating the one before ``fanout`` times:
    fanout**levels leaves (10**9 by default) in under a kilobyte."""
    lines = ["version: 1", "meta:", "  a0: &a0 [lol]"]
    for level in range(1, levels + 1):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * fanout) + "]")
    if padding:
        lines.append("  note: " + "x" * padding)
    lines.append("interactions: []")
    return "\n".join(lines) + "\n"


# -- deep nesting in streams and payloads ----------------------------------------------------------


@pytest.mark.parametrize("depth", [nesting.MAX_PAYLOAD_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize("deep", [deep_array, deep_object])
def test_deep_json_in_a_stream_is_kept_as_text_and_goes_back_as_it_came(depth: int, deep: Any) -> None:
    text = deep(depth)
    (event,) = SSEDecoder().feed(b"data: " + text.encode() + b"\n\n")
    assert event.data == text
    assert encode_event(event) == b"data: " + text.encode() + b"\n\n"

    (line,) = NDJSONDecoder().feed(text.encode() + b"\n")
    assert line.data == text
    assert encode_line(line) == text.encode() + b"\n"

    wire = encode_frame(EventStreamFrame({":content-type": "application/json"}, Payload("text", text)))
    decoder = EventStreamDecoder()
    (frame,) = decoder.feed(wire) + decoder.close()
    assert frame.payload == Payload("text", text)
    assert encode_frame(frame) == wire

    assert Payload.from_bytes(text.encode(), "application/json") == Payload("text", text)


def test_nesting_up_to_the_limit_is_still_data() -> None:
    at_limit = deep_array(nesting.MAX_PAYLOAD_DEPTH)
    (event,) = SSEDecoder().feed(f"data: {at_limit}\n\n".encode())
    assert isinstance(event.data, list)
    assert Payload.from_bytes(at_limit.encode()).kind == "json"
    with pytest.raises(TooDeep, match=f"nested deeper than {nesting.MAX_PAYLOAD_DEPTH} levels"):
        nesting.loads(deep_array(nesting.MAX_PAYLOAD_DEPTH + 1))


def test_a_fixture_file_nested_too_deep_is_our_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"fixtures": [{"match": {"userMessage": "x"}, "response": {"json": ' + deep_object(100_000) + "}}]}")
    with pytest.raises(CassetteError, match=r"deep\.json: not valid JSON: nested deeper than 256 levels"):
        load_fixture_file(path)
    assert cli.main(["cassette", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: not valid JSON: nested deeper than 256 levels" in out


# -- YAML alias bombs ------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 3_000], ids=["1KB", "4KB"])
def test_an_alias_bomb_is_refused_while_reading_naming_the_file(tmp_path: Path, padding: int, capsys: pytest.CaptureFixture[str]) -> None:
    text = alias_bomb(padding=padding)
    assert len(text) < 4_096
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    cache = ParseCache(tmp_path / "cache", min_bytes=0)

    with pytest.raises(CassetteError, match=r"bomb\.yaml: not valid YAML: aliases expand to more than"):
        cassette_store.load(path, cache=cache)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing cached
    with pytest.raises(yaml.YAMLError, match="alias bomb"):
        yamlio.loads(text)

    assert cli.main(["cassette", "validate", str(path)]) == 1
    assert "bomb.yaml: not valid YAML: aliases expand to more than" in capsys.readouterr().out
    with pytest.raises(CassetteError, match=r"bomb\.yaml"):
        ReplaySession.load(cassettes=[path])


def test_aliases_within_the_budget_still_load() -> None:
    # A block reused by many interactions, as hand-written files do.
    reused = "\n".join(
        f"- request: {{<<: *req, url: 'https://x.test/{i}'}}\n  response: *ok" for i in range(2_000)
    )
    text = (
        "version: 1\nmeta:\n  request: &req {method: POST, url: 'https://x.test/', headers: {content-type: application/json},"
        " json: {model: m, messages: [{role: user, content: hi}]}}\n  response: &ok {status: 200, json: {ok: true}}\n"
        f"interactions:\n{reused}\n"
    )
    loaded = cassette_store.parse(text, "anchors.yaml", cache=None)
    assert len(loaded.interactions) == 2_000
    assert loaded.interactions[1999].request.url == "https://x.test/1999"
    # Past the budget: the same shape, repeated far more often than it is spelled out.
    nodes = yamlio.ALIAS_MIN_NODES
    many = "l: [" + ", ".join(["*big"] * (nodes // 100 + 10)) + "]"
    big = "big: &big [" + ", ".join(["x"] * 100) + "]\n"
    with pytest.raises(yaml.YAMLError, match="alias bomb"):
        yamlio.loads(big + many)


# -- decompression bombs and bad codings -----------------------------------------------------------


def _raw_deflate(data: bytes) -> bytes:
    stream = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return stream.compress(data) + stream.flush()


@pytest.fixture(scope="module")
def zeros() -> bytes:
    return b"\0" * (content_encoding.DEFAULT_MAX_DECODED_SIZE + 1024)


@pytest.mark.parametrize(
    "coding, compress",
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate),
     ("br", lambda data: brotli.compress(data, quality=1)), ("zstd", content_encoding.zstd.compress)],
)
def test_a_decompression_bomb_stops_at_the_cap(zeros: bytes, coding: str, compress: Any) -> None:
    bomb = compress(zeros)
    assert len(bomb) < len(zeros) // 100
    with pytest.raises(BodyTooLarge, match=f"larger than {content_encoding.DEFAULT_MAX_DECODED_SIZE} bytes"):
        content_encoding.decompress(bomb, coding)
    decoder = content_encoding.Decompressor(coding, max_size=1_000)
    with pytest.raises(BodyTooLarge):
        for start in range(0, len(bomb), 997):
            decoder.feed(bomb[start : start + 997])
        decoder.flush()
    # Under the cap the same data decodes exactly, in pieces too.
    small = compress(b"\0" * 5_000 + b"end")
    decoder = content_encoding.Decompressor(coding, max_size=5_003)
    assert b"".join(decoder.feed(small[i : i + 7]) for i in range(0, len(small), 7)) + decoder.flush() == b"\0" * 5_000 + b"end"


@pytest.mark.parametrize("coding, data", [("gzip", b"\x1f\x8b not gzip"), ("br", b"\xff" * 40), ("zstd", b"(\xb5/\xfd junk"),
                                          ("compress", b"x"), ("gzip", gzip.compress(b"cut short", mtime=0)[:-6])])
def test_garbage_for_its_coding_is_our_error(coding: str, data: bytes) -> None:
    with pytest.raises(content_encoding.ContentEncodingError, match=coding) as info:
        content_encoding.decompress(data, coding)
    assert isinstance(info.value, WireError)


# -- EventStream headers that cannot be encoded ----------------------------------------------------


@pytest.mark.parametrize("name", ["", "x" * 256, "é" * 128, "\ud800", 5, None])
def test_eventstream_encode_refuses_a_bad_header_name_with_our_error(name: Any) -> None:
    frame = EventStreamFrame({":event-type": "chunk", name: "v"}, Payload("json", {"a": 1}))
    with pytest.raises(WireEncodeError, match="EventStream header name"):
        encode_frame(frame)


@pytest.mark.parametrize(
    "value, problem",
    [("x" * 70_000, "exceeds 65535"), ({"type": "byte", "value": 300}, "byte"), ({"type": "bytes", "value": "!!"}, "bytes"),
     ({"type": "uuid", "value": 5}, "uuid"), ({"type": "colour", "value": 1}, "unknown type"), ([1], "expected a string"),
     ("\ud800", "not UTF-8")],
)
def test_eventstream_encode_refuses_other_unencodable_headers(value: Any, problem: str) -> None:
    with pytest.raises(WireEncodeError, match=f"'n'.*{problem}"):
        encode_frame(EventStreamFrame({"n": value}, Payload("text", "")))


def test_eventstream_encode_refuses_an_unencodable_payload() -> None:
    for payload in (Payload("json", {1, 2}), Payload("base64", "!!"), Payload("text", "\ud800"), Payload("json", json)):
        with pytest.raises(WireEncodeError, match="payload"):
            encode_frame(EventStreamFrame({}, payload))


# -- the record addon and an upstream sending garbage ----------------------------------------------


GARBAGE: dict[str, tuple[str, str | None, list[bytes]]] = {
    # path: (content-type, content-encoding, chunks as sent)
    "/v1/chat/completions": ("text/event-stream", None, [b"data: {{{{\n", b"\xff\xfe\x00garbage\r", b"\n\ndata: [1,\n\n"]),
    "/model/m/converse-stream": ("application/vnd.amazon.eventstream", None, [b"\x00\x00\x00\x20not an event stream", b"!" * 40]),
    "/api/chat": ("application/x-ndjson", None, [b'{"model": {"deep": ' + deep_array(5_000).encode() + b"}}\n", b"\xc3(\n"]),
    "/v1/embeddings": ("application/json", "gzip", [b"\x1f\x8b\x08\x00garbage", b" that is not gzip"]),
}


class _GarbageUpstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        content_type, encoding, chunks = GARBAGE.get(self.path, ("application/json", None, [b'{"ok": true}']))
        self.send_response(200)
        self.send_header("content-type", content_type)
        if encoding:
            self.send_header("content-encoding", encoding)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def garbage_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GarbageUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_record_addon_passes_garbage_on_unchanged_and_records_it_as_undecodable(
    proxy: Any, garbage_upstream: str, tmp_path: Path
) -> None:
    mitm, record = recording_proxy(proxy, tmp_path, [], mode=f"reverse:{garbage_upstream}", router=False)
    deep_body = deep_object(1_000).encode()
    with httpx.Client(timeout=30) as client:
        for path, (_, _, chunks) in GARBAGE.items():
            with client.stream("POST", f"{mitm.url}{path}", json=CHAT) as response:
                assert response.status_code == 200
                assert b"".join(response.iter_raw()) == b"".join(chunks), path  # byte for byte to the client
        # A request body a thousand levels deep: forwarded, answered, recorded.
        answer = client.post(f"{mitm.url}/v1/messages", content=deep_body, headers={"content-type": "application/json"})
        assert answer.json() == {"ok": True}

    interactions = {i.request.url.split("/", 3)[3]: i for i in recorded(record, tmp_path).interactions}
    assert len(interactions) == len(GARBAGE) + 1
    eventstream = interactions["model/m/converse-stream"]
    assert eventstream.incomplete and eventstream.incomplete.startswith("stream could not be decoded: EventStreamError")
    assert eventstream.response.frames == []
    sse = interactions["v1/chat/completions"]
    assert [e.data for e in sse.response.events] == ["{{{{", "[1,"]  # kept as text; a line of no field is ignored
    ndjson = interactions["api/chat"]
    assert isinstance(ndjson.response.lines[0].data, str) and ndjson.response.lines[0].data.startswith('{"model"')
    gzipped = interactions["v1/embeddings"]
    assert gzipped.response.headers["content-encoding"] == "gzip"  # kept as it came, still encoded
    assert gzipped.response.body.to_bytes() == b"".join(GARBAGE["/v1/embeddings"][2])
    deep = interactions["v1/messages"]
    assert deep.request.body == Payload("text", deep_body.decode())
    assert deep.response.json == {"ok": True}
    assert not mitm.errors(), mitm.errors()


# -- the servers answer the next client ------------------------------------------------------------


def _hostile_requests(base: str) -> list[tuple[str, dict[str, str], bytes]]:
    chat = f"{base}/v1/chat/completions"
    json_type = {"content-type": "application/json"}
    return [
        (chat, json_type, deep_array(100_000).encode()),
        (chat, json_type, json.dumps({**CHAT, "messages": [{"role": "user", "content": deep_object(1_000)}]}).encode()),
        (chat, json_type, b'{"model": 5, "messages": {"role": true}, "tools": true}'),
        (chat, json_type, b"\xff\xfe garbage \x00"),
        (chat, {**json_type, "content-encoding": "gzip"}, b"\x1f\x8b not gzip"),
        (chat, {**json_type, "content-encoding": "br"}, brotli.compress(b"[" * 300_000, quality=1)),
    ]


def test_the_engine_answers_the_next_client_after_hostile_requests(tmp_path: Path) -> None:
    fixtures = tmp_path / "hello.json"
    fixtures.write_text(json.dumps(FIXTURES))
    with EngineThread(ReplaySession.load(fixtures=[fixtures]), timing="instant") as engine, httpx.Client(timeout=30) as client:
        for url, headers, body in _hostile_requests(engine.url):
            reply = client.post(url, content=body, headers=headers)
            assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:200])
            normal = client.post(f"{engine.url}/v1/chat/completions", json=CHAT)
            assert normal.status_code == 200 and normal.json()["choices"][0]["message"]["content"] == "Hi there."


def test_the_replay_addon_refuses_a_decompression_bomb_with_413_and_answers_the_next_client(
    tmp_path: Path, zeros: bytes
) -> None:
    fixtures = tmp_path / "hello.json"
    fixtures.write_text(json.dumps(FIXTURES))
    proxy, _, _ = start_replay(tmp_path, {"llmock_fixtures": [str(fixtures)], "llmock_timing": "instant"})
    try:
        with sdk.raw_client(proxy) as client:
            bomb = client.post(
                "https://api.openai.com/v1/chat/completions",
                content=gzip.compress(zeros),
                headers={"content-type": "application/json", "content-encoding": "gzip"},
            )
            assert bomb.status_code == 413
            assert f"larger than {content_encoding.DEFAULT_MAX_DECODED_SIZE} bytes" in bomb.json()["error"]["message"]
            for url, headers, body in _hostile_requests("https://api.openai.com"):
                reply = client.post(url, content=body, headers=headers)
                assert 400 <= reply.status_code < 500, (reply.status_code, reply.text[:200])
                normal = client.post("https://api.openai.com/v1/chat/completions", json=CHAT)
                assert normal.status_code == 200
                assert normal.json()["choices"][0]["message"]["content"] == "Hi there."
        assert not proxy.errors(), proxy.errors()
    finally:
        proxy.stop()
