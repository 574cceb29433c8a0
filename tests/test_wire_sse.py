"""SSE codec: real provider streams split every way, WHATWG parsing rules, round trips.

The streams below follow the providers' published wire formats. openai-python's
own SSE parser serves as an independent second reader.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder as OpenAISSEDecoder

from llmock_proxy.cassette.model import SSEEvent
from llmock_proxy.wire.sse import SSEDecoder, encode_event, parse_data

# -- real-world streams ---------------------------------------------------------


def _openai_chunk(delta: dict, finish_reason: str | None = None, **extra: object) -> dict:
    return {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        **extra,
    }


OPENAI_CHAT = (
    "".join(
        f"data: {json.dumps(chunk)}\n\n"
        for chunk in [
            _openai_chunk({"role": "assistant", "content": "", "refusal": None}),
            _openai_chunk({"content": "Hello"}),
            _openai_chunk({"content": " wörld 👋"}),
            _openai_chunk({}, "stop"),
        ]
    )
    + "data: [DONE]\n\n"
).encode()

ANTHROPIC_MESSAGES = (
    "event: message_start\n"
    'data: {"type":"message_start","message":{"id":"msg_01XyZ","type":"message","role":"assistant",'
    '"content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,'
    '"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    "event: content_block_start\n"
    'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    "event: ping\n"
    'data: {"type": "ping"}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bonjour"}}\n\n'
    "event: content_block_delta\n"
    'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" à tous — 日本"}}\n\n'
    "event: content_block_stop\n"
    'data: {"type":"content_block_stop","index":0}\n\n'
    "event: message_delta\n"
    'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    '"usage":{"output_tokens":15}}\n\n'
    "event: message_stop\n"
    'data: {"type":"message_stop"}\n\n'
).encode()

# generativelanguage.googleapis.com ...:streamGenerateContent?alt=sse ends lines in CRLF.
GEMINI_ALT_SSE = (
    'data: {"candidates": [{"content": {"parts": [{"text": "Ein"}],"role": "model"},"index": 0}],'
    '"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-2.0-flash"}\r\n\r\n'
    'data: {"candidates": [{"content": {"parts": [{"text": "hörnchen 🐿"}],"role": "model"},'
    '"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 8,'
    '"candidatesTokenCount": 4,"totalTokenCount": 12},"modelVersion": "gemini-2.0-flash"}\r\n\r\n'
).encode()

OPENROUTER_KEEPALIVE = (
    b": OPENROUTER PROCESSING\n\n"
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"id":"gen-1718-abc","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk",'
    b'"created":1718000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},'
    b'"finish_reason":null}]}\n\n'
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"id":"gen-1718-abc","provider":"OpenAI","model":"openai/gpt-4o","object":"chat.completion.chunk",'
    b'"created":1718000000,"choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}\n\n'
    b"data: [DONE]\n\n"
)

# The OpenAI Responses API names every event.
OPENAI_RESPONSES = (
    b"event: response.created\n"
    b'data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress"}}\n\n'
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"delta":"Hi"}\n\n'
    b"event: response.completed\n"
    b'data: {"type":"response.completed","sequence_number":2,"response":{"id":"resp_1","status":"completed"}}\n\n'
)

STREAMS = {
    "openai_chat": OPENAI_CHAT,
    "anthropic_messages": ANTHROPIC_MESSAGES,
    "gemini_alt_sse": GEMINI_ALT_SSE,
    "openrouter_keepalive": OPENROUTER_KEEPALIVE,
    "openai_responses": OPENAI_RESPONSES,
}


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def encode_all(events: list[SSEEvent]) -> bytes:
    return b"".join(encode_event(e) for e in events)


def openai_reading(raw: bytes) -> list[tuple]:
    """What openai-python's parser sees: (event, data parsed when JSON, id, retry)."""
    out = []
    for sse in OpenAISSEDecoder().iter_bytes(iter([raw])):
        out.append((sse.event, parse_data(sse.data), sse.id, sse.retry))
    return out


# -- what the real streams decode to -----------------------------------------------


def test_openai_chat_stream_decodes_to_chunks_and_done():
    events = decode(OPENAI_CHAT)
    assert [e.data["object"] for e in events[:-1]] == ["chat.completion.chunk"] * 4
    assert "".join(e.data["choices"][0]["delta"].get("content", "") for e in events[:-1]) == (
        "Hello wörld 👋"
    )
    assert events[3].data["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == SSEEvent(data="[DONE]")
    assert all(e.event is None and e.id is None and e.t == 0 for e in events)


def test_anthropic_stream_keeps_event_names_including_ping():
    events = decode(ANTHROPIC_MESSAGES)
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e.event == e.data["type"] for e in events)
    assert events[4].data["delta"]["text"] == " à tous — 日本"


def test_gemini_crlf_stream():
    events = decode(GEMINI_ALT_SSE)
    assert len(events) == 2
    texts = [e.data["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert texts == ["Ein", "hörnchen 🐿"]
    assert events[1].data["candidates"][0]["finishReason"] == "STOP"


def test_keepalive_comments_are_recorded_as_their_own_events():
    events = decode(OPENROUTER_KEEPALIVE)
    assert [(e.comment, type(e.data).__name__) for e in events] == [
        ("OPENROUTER PROCESSING", "NoneType"),
        ("OPENROUTER PROCESSING", "NoneType"),
        (None, "dict"),
        ("OPENROUTER PROCESSING", "NoneType"),
        (None, "dict"),
        (None, "str"),
    ]


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_agrees_with_openai_python_parser(name):
    raw = STREAMS[name]
    ours = [(e.event, e.data, e.id, e.retry) for e in decode(raw) if e.comment is None]
    assert ours == openai_reading(raw)


# -- chunking never changes the result --------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_two_chunk_split_gives_the_same_events(name):
    raw = STREAMS[name]
    whole = decode(raw)
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == whole, f"split at byte {cut}"


def test_one_byte_chunks():
    for raw in STREAMS.values():
        assert decode(*[raw[i : i + 1] for i in range(len(raw))]) == decode(raw)


def _chunked(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    edges = [0, *points, len(raw)]
    return [raw[a:b] for a, b in zip(edges, edges[1:])]


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(STREAMS)), cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_random_chunkings_give_the_same_events(name, cuts):
    raw = STREAMS[name]
    assert decode(*_chunked(raw, cuts)) == decode(raw)


# -- line ends ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("line_end", [b"\r", b"\r\n", b"\n"])
def test_cr_lf_and_crlf_line_ends_are_equivalent(name, line_end):
    raw = STREAMS[name].replace(b"\r\n", b"\n")
    variant = raw.replace(b"\n", line_end)
    assert decode(variant) == decode(raw)
    for cut in range(len(variant) + 1):
        assert decode(variant[:cut], variant[cut:]) == decode(raw), f"split at byte {cut}"


def test_mixed_line_ends_in_one_stream():
    raw = b"data: a\rdata: b\r\n\ndata: c\n\r"
    assert decode(raw) == [SSEEvent(data="a\nb"), SSEEvent(data="c")]


def test_cr_ending_a_chunk_and_lf_starting_the_next_are_one_line_end():
    # Read as two line ends, the LF would be a blank line and split the event.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [SSEEvent(data="a\nb")]
    assert decode(b"data: a\r", b"", b"\n", b"data: b\r\n\r\n") == [SSEEvent(data="a\nb")]


def test_cr_ending_a_chunk_then_another_cr_is_a_blank_line():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SSEEvent(data="a")]
    assert decoder.feed(b"\ndata: b\r\r") == [SSEEvent(data="b")]
    assert decoder.close() == []


def test_events_are_returned_as_soon_as_their_blank_line_arrives():
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\ndata: {}\n") == []
    assert decoder.feed(b"\n") == [SSEEvent(data={}, event="ping")]
    assert decoder.feed(b"data: [DONE]\n\n") == [SSEEvent(data="[DONE]")]


# -- field rules ----------------------------------------------------------------


def test_multi_line_data_is_joined_with_newlines():
    assert decode(b"data: first\ndata:second\ndata:  third\n\n") == [
        SSEEvent(data="first\nsecond\n third")
    ]


def test_multi_line_json_data_is_parsed():
    raw = b'data: {"a":\ndata: [1, 2]}\n\n'
    assert decode(raw) == [SSEEvent(data={"a": [1, 2]})]


def test_only_one_leading_space_is_stripped_and_field_without_colon_is_empty():
    assert decode(b"data:  x \n\n") == [SSEEvent(data=" x ")]
    assert decode(b"data\n\n") == [SSEEvent(data="")]
    assert decode(b"event\ndata: 1\n\n") == [SSEEvent(data="1", event="")]


def test_id_and_retry_belong_to_the_event_that_sent_them():
    raw = b"id: 41\nretry: 3000\ndata: x\n\ndata: y\n\nid: 42\n\n"
    assert decode(raw) == [
        SSEEvent(data="x", id="41", retry=3000),
        SSEEvent(data="y"),
        SSEEvent(id="42"),
    ]


def test_retry_must_be_all_digits_and_id_with_nul_is_ignored():
    raw = "retry: 12a\nretry: -5\nretry: ３\nid: a\0b\ndata: x\n\n".encode()
    assert decode(raw) == [SSEEvent(data="x")]


def test_unknown_fields_and_empty_blocks_are_not_events():
    assert decode(b"\n\n\nfoo: bar\n\nevent: e\n\n\n\n") == [SSEEvent(event="e")]


def test_comments_keep_their_text_and_do_not_disturb_the_event_around_them():
    raw = b":\n:  two spaces\ndata: a\n: inside\ndata: b\n\n"
    assert decode(raw) == [
        SSEEvent(comment=""),
        SSEEvent(comment=" two spaces"),
        SSEEvent(comment="inside"),
        SSEEvent(data="a\nb"),
    ]


def test_non_json_and_scalar_json_data_stay_text():
    raw = b'data: [DONE]\n\ndata: 42\n\ndata: "quoted"\n\ndata: {not json\n\ndata: [1,2]\n\n'
    assert [e.data for e in decode(raw)] == ["[DONE]", "42", '"quoted"', "{not json", [1, 2]]


def test_json_with_a_lone_surrogate_escape_stays_text_so_it_can_be_written_back():
    raw = b'data: {"t":"\\ud83d"}\n\ndata: {"t":"\\ud83d\\ude00"}\n\n'
    events = decode(raw)
    assert events == [SSEEvent(data='{"t":"\\ud83d"}'), SSEEvent(data={"t": "😀"})]
    assert decode(encode_all(events)) == events


# -- bytes and text ---------------------------------------------------------------


def test_bom_is_dropped_at_the_start_only():
    bom = b"\xef\xbb\xbf"
    raw = bom + b"data: a\n\n"
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == [SSEEvent(data="a")]
    # A BOM later in the stream is part of the field name, which is then unknown.
    assert decode(b"data: a\n\n" + bom + b"data: b\n\n") == [SSEEvent(data="a")]
    # Only one BOM is dropped.
    assert decode(bom + bom + b"data: a\n\n") == []


def test_utf8_split_inside_a_character():
    raw = "data: 日本語 🐿 ö\n\n".encode()
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == [SSEEvent(data="日本語 🐿 ö")]


def test_invalid_utf8_becomes_replacement_characters():
    assert decode(b"data: a\xffb\n\ndata: c\xe6\x97") == [SSEEvent(data="a\ufffdb"), SSEEvent(data="c\ufffd")]


# -- end of stream --------------------------------------------------------------


def test_close_dispatches_an_event_without_its_blank_line():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]\n") == []
    assert decoder.close() == [SSEEvent(data="[DONE]")]


def test_close_takes_a_last_line_without_line_end():
    assert decode(b"event: done\ndata: [DONE]") == [SSEEvent(data="[DONE]", event="done")]
    assert decode(b": bye") == [SSEEvent(comment="bye")]
    assert decode(b"") == []


def test_close_after_trailing_cr_does_not_invent_an_event():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [SSEEvent(data="a")]
    assert decoder.close() == []


# -- encoding -------------------------------------------------------------------


def test_encoding_layout():
    event = SSEEvent(data={"a": "ü", "b": [1]}, event="delta", id="7", retry=1500, comment="c")
    assert encode_event(event) == (
        b": c\nevent: delta\nid: 7\nretry: 1500\n" + 'data: {"a":"ü","b":[1]}\n\n'.encode()
    )
    assert encode_event(SSEEvent(data="line1\nline2")) == b"data: line1\ndata: line2\n\n"
    assert encode_event(SSEEvent(data="")) == b"data: \n\n"
    assert encode_event(SSEEvent(comment="keep-alive")) == b": keep-alive\n\n"
    assert encode_event(SSEEvent(event="ping")) == b"event: ping\n\n"


def test_google_genai_needs_exactly_data_colon_space():
    for event in decode(GEMINI_ALT_SSE):
        wire = encode_event(event)
        assert wire.startswith(b"data: {") and wire.endswith(b"}\n\n")


def test_encoding_refuses_line_breaks_in_single_line_fields():
    with pytest.raises(ValueError, match="'event'"):
        encode_event(SSEEvent(event="a\nb", data="x"))
    with pytest.raises(ValueError, match="'id'"):
        encode_event(SSEEvent(id="1\r2", data="x"))


def test_multi_line_comment_becomes_one_comment_line_each():
    assert decode(encode_event(SSEEvent(comment="a\nb"))) == [
        SSEEvent(comment="a"),
        SSEEvent(comment="b"),
    ]


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_real_streams_round_trip(name):
    events = decode(STREAMS[name])
    wire = encode_all(events)
    assert decode(wire) == events
    # A second reader agrees that nothing changed.
    assert openai_reading(wire) == openai_reading(STREAMS[name])


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
_line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"))
_data = st.one_of(
    st.none(),
    st.lists(_json_values, max_size=3),
    st.dictionaries(st.text(), _json_values, max_size=3),
    # Text data may span lines; what parses as JSON is stored parsed, as the decoder would.
    st.lists(_line_text, min_size=1, max_size=3).map(lambda lines: parse_data("\n".join(lines))),
)
_field_event = st.builds(
    SSEEvent,
    data=_data,
    event=st.none() | _line_text,
    id=st.none() | _line_text,
    retry=st.none() | st.integers(min_value=0, max_value=2**40),
).filter(lambda e: any(v is not None for v in (e.data, e.event, e.id, e.retry)))
_comment_event = st.builds(SSEEvent, comment=_line_text)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_field_event | _comment_event, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_generated_events_round_trip_through_any_chunking(events, cuts):
    wire = encode_all(events)
    assert decode(*_chunked(wire, cuts)) == events


# -- the wire package front door -------------------------------------------------


def test_stream_form_dispatch_for_sse():
    from llmock_proxy import wire

    assert wire.stream_form("text/event-stream; charset=utf-8") == "sse"
    assert wire.stream_form("Text/Event-Stream") == "sse"
    for ordinary in (None, "", "application/json", "text/plain", "text/event-streams"):
        assert wire.stream_form(ordinary) is None
    decoder = wire.new_decoder("sse")
    events = decoder.feed(ANTHROPIC_MESSAGES) + decoder.close()
    assert events == decode(ANTHROPIC_MESSAGES)
    assert b"".join(wire.encode("sse", e) for e in events) == encode_all(events)
    assert wire.new_decoder("sse") is not decoder
    with pytest.raises(TypeError, match="SSEEvent"):
        wire.encode("sse", {"data": "x"})
    with pytest.raises(ValueError, match="'websocket'"):
        wire.new_decoder("websocket")  # type: ignore[arg-type]
