"""The WebSocket families' sans-IO pieces: message keys, transcript summaries, recording."""

from __future__ import annotations

import base64
import json
from typing import Any

from llmock_proxy.cassette.model import (
    Payload,
    Request,
    Response,
    WebSocketSession,
    WSMessage,
)
from llmock_proxy.providers.catalog import identify
from llmock_proxy.providers.gemini_live import GeminiLive
from llmock_proxy.providers.openai_realtime import (
    OpenAIRealtime,
    OpenAIResponsesWebSocket,
)
from llmock_proxy.record.recorder import (
    Recorder,
    WebSocketTranscript,
)

REALTIME = OpenAIRealtime()
RESPONSES_WS = OpenAIResponsesWebSocket()
LIVE = GeminiLive()
UPGRADE = {"upgrade": "websocket", "connection": "Upgrade"}


def server(value: Any) -> WSMessage:
    return WSMessage(False, Payload.json(value))


def client(value: Any) -> WSMessage:
    return WSMessage(True, Payload.json(value))


def transcript(*messages: WSMessage) -> Response:
    return Response(101, websocket=WebSocketSession(list(messages)))


def test_realtime_keys_ignore_event_ids_and_echoed_server_ids() -> None:
    one = client({"type": "conversation.item.create", "event_id": "evt_1", "item": {
        "id": "item_a", "type": "function_call_output", "call_id": "call_a", "output": "{\"ok\":true}"}})
    two = client({"type": "conversation.item.create", "event_id": "evt_2", "item": {
        "id": "item_b", "type": "function_call_output", "call_id": "call_b", "output": "{\"ok\":true}"}})
    other = client({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_a", "output": "{\"ok\":false}"}})
    assert REALTIME.message_key(one) == REALTIME.message_key(two)
    assert REALTIME.message_key(one) != REALTIME.message_key(other)
    assert REALTIME.message_key(one).type == "conversation.item.create"


def test_text_that_is_json_keys_like_json_and_binary_keys_by_its_bytes() -> None:
    spaced = WSMessage(True, Payload("text", '{"type": "response.create", "event_id": "x"}'))
    compact = client({"type": "response.create"})
    assert REALTIME.message_key(spaced) == REALTIME.message_key(compact)
    frame = WSMessage(True, Payload("base64", base64.b64encode(b"\x00\x01").decode()), binary=True)
    assert REALTIME.message_key(frame).type == "binary"
    assert REALTIME.message_key(frame).preview == "(2 bytes)"


def test_realtime_summary_reads_every_response_done() -> None:
    summary = REALTIME.summarize(Request("GET", "/v1/realtime", UPGRADE), transcript(
        server({"type": "session.created", "session": {"model": "gpt-realtime"}}),
        client({"type": "response.create"}),
        server({"type": "response.done", "response": {"status": "completed", "output": [
            {"type": "function_call", "name": "get_weather", "call_id": "call_1", "arguments": "{\"city\":\"Oslo\"}"}],
            "usage": {"input_tokens": 5, "output_tokens": 3}}}),
        server({"type": "response.done", "response": {"status": "completed", "output": [
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_audio", "transcript": "Cold in Oslo."}]}]}}),
    ))
    assert summary.model == "gpt-realtime"
    assert summary.text == "Cold in Oslo."
    assert [(c.name, c.arguments, c.id) for c in summary.tool_calls] == [("get_weather", {"city": "Oslo"}, "call_1")]
    assert summary.finish_reason == "stop" and summary.usage == {"input_tokens": 5, "output_tokens": 3}


def test_responses_websocket_summary_joins_the_responses() -> None:
    def completed(text: str) -> dict[str, Any]:
        return {"type": "response.completed", "response": {
            "id": "resp_1", "status": "completed", "model": "gpt-4.1",
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": text}]}]}}

    summary = RESPONSES_WS.summarize(Request("GET", "/v1/responses", UPGRADE), transcript(
        server({"type": "response.created", "response": {"id": "resp_1"}}), server(completed("One.")),
        server({"type": "response.created", "response": {"id": "resp_2"}}), server(completed("Two.")),
    ))
    assert summary.text == "One.\nTwo." and summary.model == "gpt-4.1"


def test_gemini_live_summary_reads_model_turns_and_tool_calls() -> None:
    summary = LIVE.summarize(Request("GET", "/ws/x", UPGRADE), transcript(
        client({"setup": {"model": "models/gemini-live-2.5-flash"}}),
        server({"setupComplete": {}}),
        server({"toolCall": {"functionCalls": [{"id": "fc1", "name": "lookup", "args": {"q": "x"}}]}}),
        server({"serverContent": {"modelTurn": {"parts": [{"text": "Found "}]}}}),
        server({"serverContent": {"modelTurn": {"parts": [{"text": "it."}]}}}),
        server({"serverContent": {"turnComplete": True}, "usageMetadata": {"totalTokenCount": 7}}),
    ))
    assert summary.model == "gemini-live-2.5-flash"
    assert summary.text == "Found it." and summary.tool_calls[0].arguments == {"q": "x"}
    assert summary.usage == {"totalTokenCount": 7}
    assert LIVE.message_type({"serverContent": {}, "usageMetadata": {}}) == "serverContent"
    assert LIVE.message_type({"client_content": {}}) == "clientContent"


def test_a_recorded_transcript_keeps_json_readable_and_binary_exact() -> None:
    recording = WebSocketTranscript(started=100.0)
    recording.add(True, b'{"type": "session.update", "session": {}}', is_text=True, at=100.010)
    pretty = b'{\n  "setupComplete": {}\n}\n'
    recording.add(False, pretty, is_text=False, at=100.020)
    recording.add(False, bytes(range(256)), is_text=False, at=100.0301)
    recording.add(False, b"\x00\x01plain", is_text=False, at=100.04)
    session = recording.finish(code=1000, reason="bye", by="client", at=100.5, subprotocol="realtime")
    first, second, third, fourth = session.messages
    assert first.payload == Payload.json({"type": "session.update", "session": {}}) and first.t == 10.0
    assert second.binary and second.payload.kind == "text" and second.content == pretty
    assert third.payload.kind == "base64" and third.content == bytes(range(256)) and third.t == 30.1
    assert fourth.payload.kind == "base64"
    assert (session.close.code, session.close.reason, session.close.by, session.close.t) == (1000, "bye", "client", 500.0)
    assert session.subprotocol == "realtime"


def test_the_recorded_interaction_has_match_summary_and_no_credentials() -> None:
    url = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    recorder = Recorder()
    recording = recorder.start("GET", url, [("authorization", "Bearer sk-test-realtime-key-123456"),
                                            ("upgrade", "websocket"), ("sec-websocket-key", "abc=="),
                                            ("openai-beta", "realtime=v1")])
    recording.response_started(101, [("upgrade", "websocket"), ("sec-websocket-accept", "xyz="),
                                     ("x-request-id", "req_1")], streamed=False)
    words = WebSocketTranscript(started=0.0)
    words.add(False, json.dumps({"type": "session.created", "session": {"model": "gpt-realtime"}}), is_text=True, at=0.01)
    interaction = recording.finish_websocket(words.finish(code=1000, by="client", at=0.5))
    assert interaction.match["family"] == "openai.realtime" and interaction.match["model"] == "gpt-realtime"
    assert interaction.summary == {"model": "gpt-realtime"}
    assert "sec-websocket-key" not in interaction.request.headers
    assert interaction.response is not None and interaction.response.status == 101
    assert interaction.response.headers == {"x-request-id": "req_1"}
    assert "sk-test-realtime-key" not in json.dumps(interaction.to_dict())
    assert identify("GET", url, interaction.request.headers).family == "openai.realtime"


def test_drift_shapes_see_the_message_type_sequence_of_exact_binary_frames() -> None:
    from llmock_proxy.cassette.model import Interaction
    from llmock_proxy.drift.shape import infer_shapes, typed_events

    def frame(value: Any) -> WSMessage:  # Live's pretty-printed JSON in a binary frame, stored exactly
        raw = (json.dumps(value, indent=2) + "\n").encode()
        return WSMessage(False, Payload.from_bytes(raw, exact=True), binary=True)

    response = transcript(
        client({"setup": {"model": "models/gemini-live"}}),
        frame({"setupComplete": {}}),
        frame({"serverContent": {"modelTurn": {"parts": [{"text": "Hi"}]}}}),
        frame({"serverContent": {"turnComplete": True}, "usageMetadata": {"totalTokenCount": 3}}),
    )
    assert response.websocket is not None and response.websocket.messages[1].payload.kind == "text"
    assert [name for name, _ in typed_events(response, LIVE)] == ["setupComplete", "serverContent", "serverContent"]
    interaction = Interaction(Request("GET", "/ws/x", UPGRADE), response, match={"family": "gemini.live"})
    shape = infer_shapes([(interaction, "mem#0")])["gemini.live.websocket"]
    assert shape.stream is not None and shape.stream.order == {("setupComplete", "serverContent")}
    assert "usageMetadata" in shape.stream.payloads["serverContent"].properties


def test_drift_types_server_messages_as_replay_types_them() -> None:
    messages = [
        {"type": "response.done", "response": {"status": "completed"}},
        {"serverContent": {"turnComplete": True}, "usageMetadata": {"totalTokenCount": 5}},
        {"usageMetadata": {"totalTokenCount": 5}, "toolCall": {"functionCalls": []}},
    ]
    for provider in (REALTIME, RESPONSES_WS, LIVE):
        for value in messages:
            assert provider.stream_item_type(value, fallback="text") == provider.message_type(value)
        # A message that is no JSON object is typed by its frame.
        assert provider.stream_item_type(None, fallback="binary") == "binary"
    # Live: the message's kind, whatever rides along (usageMetadata, fields added later).
    assert LIVE.stream_item_type({"usageMetadata": {}, "toolCall": {}, "newField": 1}) == "toolCall"
    assert REALTIME.stream_item_type({"type": "response.done"}) == "response.done"
