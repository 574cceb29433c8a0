"""NDJSON codec: an Ollama stream split every way, line rules, round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmock_proxy.cassette.model import NDJSONLine
from llmock_proxy.wire.ndjson import NDJSONDecoder, encode_line

# Ollama /api/chat with "stream": true: one JSON object per line, the last with
# "done": true and the timing counters.
OLLAMA_CHAT_LINES = [
    {
        "model": "llama3.2",
        "created_at": "2024-10-01T12:00:00.123456Z",
        "message": {"role": "assistant", "content": "Grüß"},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2024-10-01T12:00:00.223456Z",
        "message": {"role": "assistant", "content": " dich 🦙"},
        "done": False,
    },
    {
        "model": "llama3.2",
        "created_at": "2024-10-01T12:00:00.323456Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342546000,
        "eval_count": 282,
        "eval_duration": 4535599000,
    },
]
OLLAMA_CHAT = b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in OLLAMA_CHAT_LINES)

# /api/generate streams "response" fragments; /api/pull streams status lines.
OLLAMA_GENERATE = (
    b'{"model":"llama3.2","created_at":"2024-10-01T12:00:00Z","response":"The","done":false}\n'
    b'{"model":"llama3.2","created_at":"2024-10-01T12:00:01Z","response":" sky","done":false}\n'
    b'{"model":"llama3.2","created_at":"2024-10-01T12:00:02Z","response":"","done":true,'
    b'"done_reason":"stop","context":[1,2,3],"eval_count":2}\n'
)
OLLAMA_PULL = (
    b'{"status":"pulling manifest"}\n'
    b'{"status":"pulling 6a0746a1ec1a","digest":"sha256:6a0746a1ec1a","total":4661211424,"completed":241970}\n'
    b'{"status":"success"}\n'
)

STREAMS = {"ollama_chat": OLLAMA_CHAT, "ollama_generate": OLLAMA_GENERATE, "ollama_pull": OLLAMA_PULL}


def decode(*chunks: bytes) -> list[NDJSONLine]:
    decoder = NDJSONDecoder()
    lines: list[NDJSONLine] = []
    for chunk in chunks:
        lines += decoder.feed(chunk)
    return lines + decoder.close()


def encode_all(lines: list[NDJSONLine]) -> bytes:
    return b"".join(encode_line(line) for line in lines)


def _chunked(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    edges = [0, *points, len(raw)]
    return [raw[a:b] for a, b in zip(edges, edges[1:])]


def test_ollama_chat_stream():
    lines = decode(OLLAMA_CHAT)
    assert [line.data for line in lines] == OLLAMA_CHAT_LINES
    assert "".join(line.data["message"]["content"] for line in lines) == "Grüß dich 🦙"
    assert all(line.t == 0 for line in lines)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_two_chunk_split_gives_the_same_lines(name):
    raw = STREAMS[name]
    whole = decode(raw)
    assert [line.data for line in whole] == [json.loads(x) for x in raw.splitlines()]
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == whole, f"split at byte {cut}"


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(STREAMS)), cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_random_chunkings_give_the_same_lines(name, cuts):
    raw = STREAMS[name]
    assert decode(*_chunked(raw, cuts)) == decode(raw)


def test_lines_are_returned_as_soon_as_their_newline_arrives():
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":') == []
    assert decoder.feed(b"1}") == []
    assert decoder.feed(b'\n{"b"') == [NDJSONLine({"a": 1})]
    assert decoder.feed(b":2}\n") == [NDJSONLine({"b": 2})]
    assert decoder.close() == []


def test_crlf_is_tolerated_even_when_split():
    raw = OLLAMA_PULL.replace(b"\n", b"\r\n")
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == decode(OLLAMA_PULL)


def test_blank_lines_are_skipped():
    assert decode(b'\n\n{"a":1}\n   \n\r\n\t\n{"b":2}\n\n') == [NDJSONLine({"a": 1}), NDJSONLine({"b": 2})]


def test_close_takes_a_last_line_without_newline():
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"done":true}') == []
    assert decoder.close() == [NDJSONLine({"done": True})]
    assert decode(b"") == []


def test_any_json_value_and_unparsable_text():
    raw = b'[1,2]\n3.5\ntrue\nnull\n"a string"\nnot json\n{"broken":\n'
    assert [line.data for line in decode(raw)] == [
        [1, 2],
        3.5,
        True,
        None,
        '"a string"',  # a JSON string stays its own text, so it re-encodes verbatim
        "not json",
        '{"broken":',
    ]
    assert encode_all(decode(raw)) == raw


def test_utf8_split_inside_a_character_and_invalid_utf8():
    raw = '{"t":"日本 🐿"}\n'.encode()
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == [NDJSONLine({"t": "日本 🐿"})]
    assert decode(b"a\xffb\n") == [NDJSONLine("a\ufffdb")]


def test_lone_surrogate_escape_stays_text():
    raw = b'{"t":"\\ud800"}\n'
    assert decode(raw) == [NDJSONLine('{"t":"\\ud800"}')]
    assert encode_all(decode(raw)) == raw


def test_encoding():
    assert encode_line(NDJSONLine({"a": "ü", "b": [1, None]})) == '{"a":"ü","b":[1,null]}\n'.encode()
    assert encode_line(NDJSONLine("plain text")) == b"plain text\n"
    assert encode_line(NDJSONLine(7)) == b"7\n"
    assert encode_line(NDJSONLine(None)) == b"null\n"
    with pytest.raises(ValueError, match="newline"):
        encode_line(NDJSONLine("two\nlines"))


def test_text_line_ending_in_cr_survives_the_round_trip():
    lines = decode(b"a\r\r\n")
    assert lines == [NDJSONLine("a\r")]
    assert decode(encode_all(lines)) == lines


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_real_streams_round_trip(name):
    lines = decode(STREAMS[name])
    assert decode(encode_all(lines)) == lines


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_text_line = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1).filter(
    lambda s: s.strip() != "" and not s.endswith("\r\r")
)


def _as_decoded(data: object) -> NDJSONLine:
    # What the decoder would store for this value: strings are the line's text.
    if isinstance(data, str):
        return decode(data.encode() + b"\n")[0]
    return NDJSONLine(data)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(_json_values.filter(lambda v: not isinstance(v, str)) | _text_line, max_size=8),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_generated_lines_round_trip_through_any_chunking(values, cuts):
    lines = [_as_decoded(v) for v in values]
    wire = encode_all(lines)
    assert decode(*_chunked(wire, cuts)) == lines


def test_stream_form_dispatch_for_ndjson():
    from llmock_proxy import wire

    for content_type in (
        "application/x-ndjson",
        "application/ndjson; charset=utf-8",
        "application/jsonl",
        "application/x-jsonlines",
    ):
        assert wire.stream_form(content_type) == "ndjson"
    decoder = wire.new_decoder("ndjson")
    lines = decoder.feed(OLLAMA_CHAT) + decoder.close()
    assert lines == decode(OLLAMA_CHAT)
    assert b"".join(wire.encode("ndjson", line) for line in lines) == encode_all(lines)
    with pytest.raises(TypeError, match="NDJSONLine"):
        wire.encode("ndjson", {"a": 1})
