"""AWS EventStream codec, checked against botocore's independent parser and the
published AWS EventStream test vectors; Bedrock streams split every way;
corruption reported with the failing check, frame index and byte offset."""

from __future__ import annotations

import base64
import json
import struct
import uuid
import zlib

import botocore.session
import pytest
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError as BotocoreEventStreamError
from botocore.parsers import EventStreamJSONParser
from hypothesis import given, settings
from hypothesis import strategies as st

from llmock_proxy.cassette.model import EventStreamFrame, Payload
from llmock_proxy.wire.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    encode_frame,
)

# -- Bedrock streams ------------------------------------------------------------


def _event(event_type: str, payload: dict) -> EventStreamFrame:
    return EventStreamFrame(
        headers={
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload=Payload.json(payload),
    )


# bedrock-runtime ConverseStream: every payload carries the "p" padding field.
CONVERSE_STREAM = [
    _event("messageStart", {"p": "abcdefghijklmn", "role": "assistant"}),
    _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hallo"}, "p": "abcd"}),
    _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " Welt 🌍"}, "p": "abcdefgh"}),
    _event("contentBlockStop", {"contentBlockIndex": 0, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"}),
    _event("messageStop", {"p": "abcdefghijklmnop", "stopReason": "end_turn"}),
    _event(
        "metadata",
        {
            "metrics": {"latencyMs": 612},
            "p": "abcdefghij",
            "usage": {"inputTokens": 12, "outputTokens": 6, "totalTokens": 18},
        },
    ),
]


def _anthropic_chunk(event: dict) -> EventStreamFrame:
    raw = json.dumps(event, separators=(",", ":")).encode()
    return _event("chunk", {"bytes": base64.b64encode(raw).decode(), "p": "abcdefgh"})


# bedrock-runtime InvokeModelWithResponseStream for an Anthropic model: each
# chunk wraps one Anthropic stream event, base64-encoded.
INVOKE_STREAM = [
    _anthropic_chunk({"type": "message_start", "message": {"id": "msg_bdrk_01", "role": "assistant"}}),
    _anthropic_chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
    _anthropic_chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 9}}),
]

THROTTLED = EventStreamFrame(
    headers={
        ":exception-type": "throttlingException",
        ":content-type": "application/json",
        ":message-type": "exception",
    },
    payload=Payload.json({"message": "Too many tokens, please wait before trying again."}),
)


def wire(frames: list[EventStreamFrame]) -> bytes:
    return b"".join(encode_frame(f) for f in frames)


def decode(*chunks: bytes) -> list[EventStreamFrame]:
    decoder = EventStreamDecoder()
    frames: list[EventStreamFrame] = []
    for chunk in chunks:
        frames += decoder.feed(chunk)
    return frames + decoder.close()


def botocore_messages(raw: bytes) -> list[tuple[dict, bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(m.headers, m.payload) for m in buffer]


class _RawStream:
    def __init__(self, chunks: list[bytes]):
        self._chunks = chunks

    def stream(self):
        return iter(self._chunks)


def bedrock_client_events(operation: str, member: str, raw: bytes) -> list[dict]:
    """What boto3's bedrock-runtime client yields for these bytes."""
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model(operation).output_shape.members[member]
    chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    return list(EventStream(_RawStream(chunks), shape, EventStreamJSONParser(), operation))


# -- the published AWS EventStream test vectors ----------------------------------

EMPTY_MESSAGE = b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2\x48\xeb\x7d\x98\xc8\xff"
ONE_STRING_HEADER = (
    b"\x00\x00\x00\x3d\x00\x00\x00\x20\x07\xfd\x83\x96"
    b"\x0ccontent-type\x07\x00\x10application/json"
    b"{'foo':'bar'}"
    b"\x8d\x9c\x08\xb1"
)
ALL_HEADER_TYPES = (
    b"\x00\x00\x00\x62\x00\x00\x00\x52\x03\xb5\xcb\x9c"
    b"\x010\x00"
    b"\x011\x01"
    b"\x012\x02\x02"
    b"\x013\x03\x00\x03"
    b"\x014\x04\x00\x00\x00\x04"
    b"\x015\x05\x00\x00\x00\x00\x00\x00\x00\x05"
    b"\x016\x06\x00\x05bytes"
    b"\x017\x07\x00\x04utf8"
    b"\x018\x08\x00\x00\x00\x00\x00\x00\x00\x08"
    b"\x019\x090123456789abcdef"
    b"\x63\x35\x36\x71"
)


def test_published_vectors_decode_and_re_encode_byte_for_byte():
    assert decode(EMPTY_MESSAGE) == [EventStreamFrame(headers={}, payload=Payload("text", ""))]
    (one,) = decode(ONE_STRING_HEADER)
    # The payload is not JSON (single quotes), so it stays exact text.
    assert one == EventStreamFrame({"content-type": "application/json"}, Payload("text", "{'foo':'bar'}"))
    (every,) = decode(ALL_HEADER_TYPES)
    assert every.headers == {
        "0": {"type": "bool", "value": True},
        "1": {"type": "bool", "value": False},
        "2": {"type": "byte", "value": 2},
        "3": {"type": "short", "value": 3},
        "4": {"type": "int", "value": 4},
        "5": {"type": "long", "value": 5},
        "6": {"type": "bytes", "value": base64.b64encode(b"bytes").decode()},
        "7": "utf8",
        "8": {"type": "timestamp", "value": 8},
        "9": {"type": "uuid", "value": "30313233-3435-3637-3839-616263646566"},
    }
    for vector in (EMPTY_MESSAGE, ONE_STRING_HEADER, ALL_HEADER_TYPES):
        assert wire(decode(vector)) == vector


# -- botocore reads what we write -------------------------------------------------


def test_botocore_reads_converse_stream_frames_as_written():
    raw = wire(CONVERSE_STREAM)
    messages = botocore_messages(raw)
    assert [headers for headers, _ in messages] == [f.headers for f in CONVERSE_STREAM]
    assert [json.loads(payload) for _, payload in messages] == [f.payload.value for f in CONVERSE_STREAM]


def test_bedrock_client_parses_a_converse_stream():
    events = bedrock_client_events("ConverseStream", "stream", wire(CONVERSE_STREAM))
    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "Hallo Welt 🌍"
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 18


def test_bedrock_client_parses_invoke_with_response_stream_chunks():
    events = bedrock_client_events("InvokeModelWithResponseStream", "body", wire(INVOKE_STREAM))
    inner = [json.loads(e["chunk"]["bytes"]) for e in events]
    assert [x["type"] for x in inner] == ["message_start", "content_block_delta", "message_stop"]


def test_bedrock_client_raises_the_recorded_exception():
    raw = wire(CONVERSE_STREAM[:2] + [THROTTLED])
    with pytest.raises(BotocoreEventStreamError, match="throttlingException"):
        bedrock_client_events("ConverseStream", "stream", raw)


@st.composite
def header_values(draw):
    kind = draw(st.sampled_from(["string", "bool", "byte", "short", "int", "long", "bytes", "timestamp", "uuid"]))
    if kind == "string":
        return draw(st.text(max_size=40))
    if kind == "bool":
        return {"type": "bool", "value": draw(st.booleans())}
    bits = {"byte": 8, "short": 16, "int": 32, "long": 64, "timestamp": 64}
    if kind in bits:
        n = bits[kind]
        return {"type": kind, "value": draw(st.integers(-(2 ** (n - 1)), 2 ** (n - 1) - 1))}
    if kind == "bytes":
        return {"type": "bytes", "value": base64.b64encode(draw(st.binary(max_size=40))).decode()}
    return {"type": "uuid", "value": str(draw(st.uuids()))}


def _botocore_value(value):
    """Our header model, in the form botocore's parser returns."""
    if isinstance(value, str):
        return value
    if value["type"] == "bytes":
        return base64.b64decode(value["value"])
    if value["type"] == "uuid":
        return uuid.UUID(value["value"]).bytes
    return value["value"]


_frames = st.builds(
    EventStreamFrame,
    headers=st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) < 256), header_values(), max_size=6
    ),
    payload=st.binary(max_size=200).map(lambda raw: Payload.from_bytes(raw, None, exact=True)),
)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(_frames, max_size=5), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_generated_frames_agree_with_botocore_and_round_trip(frames, cuts):
    raw = wire(frames)
    assert botocore_messages(raw) == [
        ({k: _botocore_value(v) for k, v in f.headers.items()}, f.payload.to_bytes()) for f in frames
    ]
    decoded = decode(*_chunked(raw, cuts))
    assert [(f.headers, f.payload.to_bytes()) for f in decoded] == [
        (f.headers, f.payload.to_bytes()) for f in frames
    ]
    assert wire(decoded) == raw


# -- chunking -------------------------------------------------------------------


def _chunked(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    edges = [0, *points, len(raw)]
    return [raw[a:b] for a, b in zip(edges, edges[1:])]


STREAMS = {
    "converse_stream": CONVERSE_STREAM,
    "invoke_with_response_stream": INVOKE_STREAM,
    "converse_then_exception": CONVERSE_STREAM[:2] + [THROTTLED],
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_two_chunk_split_gives_the_same_frames(name):
    frames = STREAMS[name]
    raw = wire(frames)
    assert decode(raw) == frames
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == frames, f"split at byte {cut}"


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(STREAMS)), cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_random_chunkings_give_the_same_frames(name, cuts):
    raw = wire(STREAMS[name])
    assert decode(*_chunked(raw, cuts)) == STREAMS[name]


def test_frames_are_returned_as_soon_as_they_are_complete():
    first, second = (encode_frame(f) for f in CONVERSE_STREAM[:2])
    decoder = EventStreamDecoder()
    assert decoder.feed(first[:5]) == []  # inside the prelude
    assert decoder.feed(first[5:-1]) == []
    assert decoder.feed(first[-1:] + second[:20]) == [CONVERSE_STREAM[0]]
    assert decoder.feed(second[20:]) == [CONVERSE_STREAM[1]]
    assert decoder.close() == []


# -- payloads -------------------------------------------------------------------


def test_json_payloads_are_readable_and_byte_exact():
    spaced = EventStreamFrame({":content-type": "application/json"}, Payload("text", '{"a": 1}'))
    (decoded,) = decode(encode_frame(spaced))
    # Re-encoding parsed JSON would drop the space, so the exact text is kept.
    assert decoded.payload == Payload("text", '{"a": 1}')
    (compact,) = decode(encode_frame(CONVERSE_STREAM[1]))
    assert compact.payload.kind == "json"


def test_binary_payloads_are_kept_exactly():
    for raw in (b"\x00\x01\xff\xfe", b"\x89PNG\r\n\x1a\n", "日本".encode() + b"\xff", b"\x00ascii\x07"):
        frame = EventStreamFrame({":content-type": "application/octet-stream"}, Payload.from_bytes(raw, exact=True))
        (decoded,) = decode(encode_frame(frame))
        assert decoded.payload.to_bytes() == raw
    (invalid_utf8,) = decode(encode_frame(EventStreamFrame({}, Payload("base64", "//4="))))
    assert invalid_utf8.payload == Payload("base64", "//4=")


def test_json_payload_with_a_lone_surrogate_escape_stays_exact_text():
    text = '{"t":"\\ud800"}'
    frame = EventStreamFrame({":content-type": "application/json"}, Payload("text", text))
    (decoded,) = decode(encode_frame(frame))
    assert decoded.payload == Payload("text", text)


# -- errors ---------------------------------------------------------------------


def _three_frames() -> tuple[bytes, list[int]]:
    parts = [encode_frame(f) for f in CONVERSE_STREAM[:3]]
    offsets = [0, len(parts[0]), len(parts[0]) + len(parts[1])]
    return b"".join(parts), offsets


def test_prelude_crc_corruption_names_frame_and_offset():
    raw, offsets = _three_frames()
    corrupt = bytearray(raw)
    corrupt[offsets[1] + 9] ^= 0x01  # inside frame 1's prelude CRC
    with pytest.raises(EventStreamError) as info:
        decode(bytes(corrupt))
    err = info.value
    assert (err.check, err.frame_index, err.offset) == ("prelude CRC", 1, offsets[1])
    assert "prelude CRC" in str(err) and "frame 1" in str(err) and f"byte offset {offsets[1]}" in str(err)


def test_length_field_corruption_is_caught_by_the_prelude_crc():
    raw, offsets = _three_frames()
    corrupt = bytearray(raw)
    corrupt[offsets[2] + 2] ^= 0x40  # frame 2's total length
    with pytest.raises(EventStreamError, match=rf"prelude CRC check failed at frame 2 \(byte offset {offsets[2]}\)"):
        decode(bytes(corrupt))


def test_message_crc_corruption_names_frame_and_offset():
    raw, offsets = _three_frames()
    for position in (offsets[2] + 20, offsets[2] + 60, len(raw) - 1):  # header, payload, CRC itself
        corrupt = bytearray(raw)
        corrupt[position] ^= 0x10
        decoder = EventStreamDecoder()
        with pytest.raises(EventStreamError) as info:
            decoder.feed(bytes(corrupt))
        assert (info.value.check, info.value.frame_index, info.value.offset) == ("message CRC", 2, offsets[2])
        # The decoder stays failed; it does not resynchronise on garbage.
        with pytest.raises(EventStreamError):
            decoder.feed(b"")


def test_good_frames_before_the_corruption_are_delivered_first():
    raw, offsets = _three_frames()
    corrupt = bytearray(raw)
    corrupt[-1] ^= 0xFF
    decoder = EventStreamDecoder()
    assert decoder.feed(bytes(corrupt[: offsets[2]])) == CONVERSE_STREAM[:2]
    with pytest.raises(EventStreamError, match="message CRC"):
        decoder.feed(bytes(corrupt[offsets[2] :]))


def _frame_with_prelude(total: int, headers_length: int, rest: bytes = b"") -> bytes:
    prelude = struct.pack(">II", total, headers_length)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + rest
    return body + struct.pack(">I", zlib.crc32(body))


def test_impossible_lengths_are_reported():
    with pytest.raises(EventStreamError, match="length check failed at frame 0 .*total length 12"):
        decode(_frame_with_prelude(12, 0))
    with pytest.raises(EventStreamError, match="length check failed .*cannot hold 10 bytes of headers"):
        decode(_frame_with_prelude(20, 10, b"\x00" * 4))
    with pytest.raises(EventStreamError, match="payload length .* exceeds"):
        decode(_frame_with_prelude(16 + 25 * 1024 * 1024, 0))


def test_malformed_headers_are_reported():
    bad_type = b"\x01x\x0b"  # header "x" with value type 11
    raw = _frame_with_prelude(16 + len(bad_type), len(bad_type), bad_type)
    with pytest.raises(EventStreamError, match="header check failed at frame 0 .*unknown value type 11"):
        decode(raw)
    truncated = b"\x01x\x07\x00\x09abc"  # string header claims 9 bytes, has 3
    raw = _frame_with_prelude(16 + len(truncated), len(truncated), truncated)
    with pytest.raises(EventStreamError, match="header check failed"):
        decode(raw)
    duplicate = b"\x01a\x00\x01a\x01"
    raw = _frame_with_prelude(16 + len(duplicate), len(duplicate), duplicate)
    with pytest.raises(EventStreamError, match="duplicate header 'a'"):
        decode(raw)


def test_truncated_stream_raises_at_close():
    raw, offsets = _three_frames()
    decoder = EventStreamDecoder()
    assert decoder.feed(raw[:-3]) == CONVERSE_STREAM[:2]
    with pytest.raises(EventStreamError) as info:
        decoder.close()
    assert (info.value.check, info.value.frame_index, info.value.offset) == ("length", 2, offsets[2])
    assert f"{len(raw) - offsets[2] - 3} of {len(raw) - offsets[2]} bytes" in str(info.value)

    decoder = EventStreamDecoder()
    decoder.feed(raw[: offsets[1] + 5])
    with pytest.raises(EventStreamError, match=r"frame 1 .*inside the prelude \(5 of 12 bytes\)"):
        decoder.close()


def test_error_is_a_value_error():
    assert issubclass(EventStreamError, ValueError)


# -- encoding -------------------------------------------------------------------


def test_encoding_rejects_bad_headers_naming_them():
    def frame(headers):
        return EventStreamFrame(headers, Payload("text", ""))

    with pytest.raises(ValueError, match="'n'.*expected a string or"):
        encode_frame(frame({"n": 5}))
    with pytest.raises(ValueError, match="'n' \\(byte\\)"):
        encode_frame(frame({"n": {"type": "byte", "value": 300}}))
    with pytest.raises(ValueError, match="'n' \\(colour\\).*unknown type"):
        encode_frame(frame({"n": {"type": "colour", "value": 1}}))
    with pytest.raises(ValueError, match="'n' \\(bool\\)"):
        encode_frame(frame({"n": {"type": "bool", "value": "yes"}}))
    with pytest.raises(ValueError, match="'n' \\(uuid\\)"):
        encode_frame(frame({"n": {"type": "uuid", "value": "not-a-uuid"}}))
    with pytest.raises(ValueError, match="'n' \\(bytes\\)"):
        encode_frame(frame({"n": {"type": "bytes", "value": "***"}}))
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        encode_frame(frame({"x" * 256: "v"}))


def test_frames_survive_the_cassette_model_round_trip():
    raw = wire(CONVERSE_STREAM + [THROTTLED]) + ALL_HEADER_TYPES + ONE_STRING_HEADER
    frames = decode(raw)
    restored = [EventStreamFrame.from_dict(f.to_dict()) for f in frames]
    assert wire(restored) == raw


def test_stream_form_dispatch_for_eventstream():
    from llmock_proxy import wire

    assert wire.stream_form("application/vnd.amazon.eventstream") == "eventstream"
    decoder = wire.new_decoder("eventstream")
    raw = wire.encode("eventstream", CONVERSE_STREAM[0]) + encode_frame(CONVERSE_STREAM[1])
    assert decoder.feed(raw) + decoder.close() == CONVERSE_STREAM[:2]
    with pytest.raises(TypeError, match="EventStreamFrame"):
        wire.encode("eventstream", b"raw bytes")
    assert wire.EventStreamError is EventStreamError
