"""WebSocket replay without sockets: turns, session choice, protocol errors, fixture turns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmock_proxy.cassette.model import (
    Interaction,
    Payload,
    Request,
    Response,
    WebSocketSession,
    WSClose,
    WSMessage,
)
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.catalog import identify
from llmock_proxy.replay.fixture import fixture_from_interaction
from llmock_proxy.replay.llmock_format import parse_fixture_entries
from llmock_proxy.replay.session import Miss, ReplaySession
from llmock_proxy.replay.ws_session import Outgoing, WSReplay, open_replay

UPGRADE = {"upgrade": "websocket", "connection": "Upgrade"}
REALTIME_URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
RESPONSES_URL = "wss://api.openai.com/v1/responses"
LIVE_URL = ("wss://generativelanguage.googleapis.com//ws/"
            "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent")


def client(value: Any, t: float) -> WSMessage:
    return WSMessage(True, Payload.json(value), t=t)


def server(value: Any, t: float, *, binary: bool = False) -> WSMessage:
    return WSMessage(False, Payload.json(value), binary=binary, t=t)


def upgrade(url: str = REALTIME_URL, **headers: str) -> Request:
    return Request("GET", url, {**UPGRADE, **headers})


def recorded(messages: list[WSMessage], *, url: str = REALTIME_URL, close: WSClose | None = None,
             index: int = 0, subprotocol: str | None = None) -> Interaction:
    request = upgrade(url)
    provider = identify("GET", url, request.headers)
    return Interaction(
        request=request,
        response=Response(101, websocket=WebSocketSession(messages, subprotocol=subprotocol, close=close)),
        match=derive_match(provider.canonical(request)),
    )


def session_of(*interactions: Interaction, fixtures: list[dict[str, Any]] = ()) -> ReplaySession:
    loaded = [fixture_from_interaction(i, f"mem.yaml: interactions[{n}]") for n, i in enumerate(interactions)]
    loaded += parse_fixture_entries({"fixtures": list(fixtures)}, "mem.json") if fixtures else []
    return ReplaySession(loaded)


def opened(session: ReplaySession, request: Request, factor: float = 1.0) -> WSReplay:
    replay = open_replay(session, request, factor)
    assert isinstance(replay, WSReplay), replay.message if isinstance(replay, Miss) else replay
    return replay


def sent(actions: list[Outgoing]) -> list[Any]:
    return [json.loads(a.message.payload.to_bytes()) for a in actions if a.message is not None]


def types(actions: list[Outgoing]) -> list[str]:
    return [m.get("type") or next(iter(m)) for m in sent(actions)]


def say(text: str) -> WSMessage:
    return WSMessage(True, Payload.json({"type": "conversation.item.create", "event_id": "evt_client",
                                         "item": {"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": text}]}}))


CREATE = WSMessage(True, Payload.json({"type": "response.create", "event_id": "evt_other"}))


def realtime_transcript(answer: str, question: str = "hi") -> list[WSMessage]:
    return [
        server({"type": "session.created", "event_id": "e1", "session": {"model": "gpt-realtime"}}, 40.0),
        client({"type": "conversation.item.create", "event_id": "c1", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}}, 50.0),
        server({"type": "conversation.item.added", "event_id": "e2"}, 60.0),
        client({"type": "response.create", "event_id": "c2"}, 61.0),
        server({"type": "response.created", "event_id": "e3"}, 100.0),
        server({"type": "response.output_text.delta", "event_id": "e4", "delta": answer}, 130.0),
        server({"type": "response.done", "event_id": "e5", "response": {"status": "completed", "output": [
            {"type": "message", "content": [{"type": "output_text", "text": answer}]}]}}, 161.0),
    ]


# -- recorded sessions ------------------------------------------------------------------------


def test_turns_replay_in_order_with_offsets_after_each_client_message() -> None:
    replay = opened(session_of(recorded(realtime_transcript("Hello!"))), upgrade())
    opening = replay.opening()
    assert types(opening.actions) == ["session.created"]
    assert opening.actions[0].at_ms == 40.0
    first = replay.receive(say("hi"))
    assert types(first.actions) == ["conversation.item.added"] and first.actions[0].at_ms == 10.0
    second = replay.receive(CREATE)  # another event_id than recorded: not part of the key
    assert types(second.actions) == ["response.created", "response.output_text.delta", "response.done"]
    assert [a.at_ms for a in second.actions] == [39.0, 69.0, 100.0]
    assert sent(second.actions)[1]["delta"] == "Hello!"


def test_instant_timing_scales_every_offset_to_zero() -> None:
    replay = opened(session_of(recorded(realtime_transcript("Hello!"))), upgrade(), factor=0.0)
    assert {a.at_ms for a in replay.opening().actions + replay.receive(say("hi")).actions} == {0.0}


def test_a_different_client_message_gets_the_realtime_error_event_naming_the_expected_one() -> None:
    replay = opened(session_of(recorded(realtime_transcript("Hello!"))), upgrade())
    replay.opening()
    reply = replay.receive(say("something else"))
    assert reply.problem is not None
    (error,) = sent(reply.actions)
    assert error["type"] == "error" and error["error"]["event_id"] == "evt_client"
    message = error["error"]["message"]
    assert "client message 1" in message and "something else" in message
    assert '"text":"hi"' in message and "mem.yaml: interactions[0]" in message
    # The session stays where it was: the recorded message still fits.
    assert types(replay.receive(say("hi")).actions) == ["conversation.item.added"]


def test_a_message_past_the_end_of_the_recording_is_an_error_too() -> None:
    replay = opened(session_of(recorded(realtime_transcript("Hello!"))), upgrade())
    replay.receive(say("hi"))
    replay.receive(CREATE)
    reply = replay.receive(CREATE)
    assert "no further client message" in (reply.problem or "")
    assert types(reply.actions) == ["error"]


def test_session_created_recorded_after_the_first_client_message_is_still_sent_on_connect() -> None:
    messages = [
        client({"type": "session.update", "session": {"instructions": "x"}}, 2.0),
        server({"type": "session.created", "event_id": "e1"}, 90.0),
        server({"type": "session.updated", "event_id": "e2"}, 95.0),
    ]
    replay = opened(session_of(recorded(messages)), upgrade())
    assert types(replay.opening().actions) == ["session.created"]
    assert types(replay.receive(client({"type": "session.update", "session": {"instructions": "x"}}, 0)).actions) \
        == ["session.updated"]


def test_the_client_messages_choose_among_recordings_of_the_same_upgrade() -> None:
    weather = recorded(realtime_transcript("Sunny.", question="weather?"))
    greeting = recorded(realtime_transcript("Hello!", question="hi"))
    replay = opened(session_of(weather, greeting), upgrade())
    replay.opening()
    replay.receive(say("hi"))
    assert sent(replay.receive(CREATE).actions)[1]["delta"] == "Hello!"
    assert replay.source == "mem.yaml: interactions[1]"


def test_identical_recordings_answer_successive_connections_in_order_then_the_last_repeats() -> None:
    session = session_of(recorded(realtime_transcript("first")), recorded(realtime_transcript("second")))

    def answer() -> str:
        replay = opened(session, upgrade(), factor=0.0)
        replay.receive(say("hi"))
        return sent(replay.receive(CREATE).actions)[1]["delta"]

    assert [answer(), answer(), answer()] == ["first", "second", "second"]
    session.reset()
    assert answer() == "first"


def test_the_recorded_server_close_is_reproduced_after_its_turn() -> None:
    messages = realtime_transcript("bye")
    close = WSClose(4001, "session expired", "server", t=200.0)
    replay = opened(session_of(recorded(messages, close=close)), upgrade())
    replay.receive(say("hi"))
    actions = replay.receive(CREATE).actions
    assert actions[-1].close == WSClose(4001, "session expired", "server")
    assert actions[-1].at_ms == 139.0  # 200 ms after connect, the turn began at 61 ms


def test_a_close_without_a_close_frame_is_replayed_as_a_dropped_connection() -> None:
    close = WSClose(1006, "", "server", t=65.0)
    replay = opened(session_of(recorded(realtime_transcript("x")[:4], close=close)), upgrade())
    replay.receive(say("hi"))
    (drop,) = replay.receive(CREATE).actions
    assert drop.close is not None and drop.close.code is None


def test_a_client_close_is_not_acted_out_by_the_server() -> None:
    close = WSClose(1000, "", "client", t=300.0)
    replay = opened(session_of(recorded(realtime_transcript("x"), close=close)), upgrade())
    replay.receive(say("hi"))
    assert all(a.close is None for a in replay.receive(CREATE).actions)


def test_gemini_live_turns_ignore_function_call_ids_and_protobuf_field_spelling_is_the_clients() -> None:
    call = {"toolCall": {"functionCalls": [{"id": "function-call-1", "name": "weather", "args": {}}]}}
    messages = [
        client({"setup": {"model": "models/gemini-live"}}, 1.0),
        server({"setupComplete": {}}, 30.0, binary=True),
        client({"client_content": {"turns": [{"role": "user", "parts": [{"text": "weather?"}]}],
                                   "turnComplete": True}}, 31.0),
        server(call, 80.0, binary=True),
        client({"tool_response": {"functionResponses": [{"id": "function-call-1", "name": "weather",
                                                          "response": {"result": "sunny"}}]}}, 90.0),
        server({"serverContent": {"turnComplete": True}}, 120.0, binary=True),
    ]
    replay = opened(session_of(recorded(messages, url=LIVE_URL)), upgrade(LIVE_URL))
    assert replay.opening().actions == []
    replay.receive(client({"setup": {"model": "models/gemini-live"}}, 0))
    replay.receive(client({"client_content": {"turns": [{"role": "user", "parts": [{"text": "weather?"}]}],
                                              "turnComplete": True}}, 0))
    again = client({"tool_response": {"functionResponses": [{"id": "function-call-OTHER", "name": "weather",
                                                              "response": {"result": "sunny"}}]}}, 0)
    (done,) = replay.receive(again).actions
    assert done.message is not None and done.message.binary


def test_gemini_live_mismatch_closes_with_policy_violation_and_a_reason_that_fits_a_close_frame() -> None:
    messages = [client({"setup": {"model": "models/gemini-live"}}, 1.0), server({"setupComplete": {}}, 30.0)]
    replay = opened(session_of(recorded(messages, url=LIVE_URL)), upgrade(LIVE_URL))
    reply = replay.receive(client({"setup": {"model": "models/another-model-" + "x" * 200}}, 0))
    (close,) = reply.actions
    assert close.close is not None and close.close.code == 1008
    assert len(close.close.reason.encode()) <= 123
    assert "another-model" in (reply.problem or "") and len(reply.problem or "") > 123


def test_a_generic_websocket_without_recordings_is_refused_before_the_upgrade() -> None:
    miss = open_replay(session_of(), upgrade("wss://example.test/socket"))
    assert isinstance(miss, Miss)
    response = miss.response()
    assert response.status == 421 and "no recording or fixture matches GET /socket" in miss.message


def test_a_generic_websocket_replays_binary_frames_byte_exact() -> None:
    url = "wss://example.test/audio"
    raw = bytes(range(256))
    messages = [
        WSMessage(True, Payload.from_bytes(b"start", exact=True), binary=True, t=1.0),
        WSMessage(False, Payload.from_bytes(raw, exact=True), binary=True, t=5.0),
    ]
    replay = opened(session_of(recorded(messages, url=url, subprotocol="audio.v1")), upgrade(url))
    assert replay.subprotocol == "audio.v1"
    (frame,) = replay.receive(WSMessage(True, Payload.from_bytes(b"start", exact=True), binary=True)).actions
    assert frame.message is not None and frame.message.content == raw
    wrong = replay.receive(WSMessage(True, Payload.from_bytes(b"stop", exact=True), binary=True))
    assert wrong.actions[0].close is not None and wrong.actions[0].close.code == 1008


# -- fixture-driven turns ---------------------------------------------------------------------------


HELLO = {"match": {"userMessage": "hello"}, "response": {"content": "Hi from a fixture!"}}
WEATHER = {"match": {"userMessage": "weather"},
           "response": {"toolCalls": [{"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}]}}
AFTER_TOOL = {"match": {"toolCallId": "call_1"}, "response": {"content": "It is sunny in Paris."}}


def test_realtime_fixture_turn_renders_the_ga_event_sequence() -> None:
    replay = opened(session_of(fixtures=[HELLO]), upgrade())
    assert types(replay.opening().actions) == ["session.created"]
    update = client({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}, 0)
    assert types(replay.receive(update).actions) == ["session.updated"]
    assert types(replay.receive(say("hello there")).actions) == ["conversation.item.added", "conversation.item.done"]
    answer = replay.receive(CREATE).actions
    assert types(answer) == [
        "response.created", "response.output_item.added", "conversation.item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "conversation.item.done", "response.done",
    ]
    done = sent(answer)[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "Hi from a fixture!"


def test_realtime_beta_clients_get_beta_event_names() -> None:
    replay = opened(session_of(fixtures=[HELLO]), upgrade(**{"openai-beta": "realtime=v1"}))
    replay.opening()
    replay.receive(client({"type": "session.update", "session": {"modalities": ["text"]}}, 0))
    assert types(replay.receive(say("hello")).actions) == ["conversation.item.created"]
    names = types(replay.receive(CREATE).actions)
    assert "response.text.delta" in names and "response.text.done" in names
    assert "response.output_text.delta" not in names


def test_realtime_audio_sessions_get_a_transcript_and_audio() -> None:
    replay = opened(session_of(fixtures=[HELLO]), upgrade())
    replay.receive(say("hello"))
    names = types(replay.receive(CREATE).actions)  # GA sessions answer in audio by default
    assert "response.output_audio_transcript.delta" in names and "response.output_audio.delta" in names


def test_realtime_tool_call_round_trip_through_fixtures() -> None:
    # As in llmock, the fixture for the turn after the tool result comes first.
    replay = opened(session_of(fixtures=[AFTER_TOOL, WEATHER]), upgrade())
    replay.receive(client({"type": "session.update", "session": {"output_modalities": ["text"]}}, 0))
    replay.receive(say("what is the weather?"))
    call = [e for e in sent(replay.receive(CREATE).actions) if e["type"] == "response.function_call_arguments.done"]
    assert call[0]["name"] == "get_weather" and json.loads(call[0]["arguments"]) == {"city": "Paris"}
    output = client({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_1", "output": "{\"temp\": 21}"}}, 0)
    replay.receive(output)
    done = sent(replay.receive(CREATE).actions)[-1]
    assert done["response"]["output"][0]["content"][0]["text"] == "It is sunny in Paris."


def test_a_turn_no_fixture_answers_gets_an_error_event_with_the_near_misses() -> None:
    replay = opened(session_of(fixtures=[HELLO]), upgrade())
    replay.receive(say("goodbye"))
    reply = replay.receive(CREATE)
    (error,) = sent(reply.actions)
    assert error["type"] == "error" and error["error"]["code"] == "no_fixture_match"
    assert "userMessage" in error["error"]["message"] and "goodbye" in error["error"]["message"]
    assert reply.problem == error["error"]["message"]


def test_fixture_latency_paces_the_answer_and_disconnect_after_ms_drops_it() -> None:
    slow = {**HELLO, "latency": 10, "disconnectAfterMs": 35}
    replay = opened(session_of(fixtures=[slow]), upgrade(), factor=1.0)
    replay.receive(client({"type": "session.update", "session": {"output_modalities": ["text"]}}, 0))
    replay.receive(say("hello"))
    actions = replay.receive(CREATE).actions
    assert [a.at_ms for a in actions[:-1]] == [10.0, 20.0, 30.0]
    assert actions[-1].at_ms == 35.0 and actions[-1].close is not None and actions[-1].close.code is None


def test_responses_websocket_fixture_turns_continue_previous_responses() -> None:
    follow_up = {"match": {"userMessage": "and tomorrow?"}, "response": {"content": "Rain."}}
    replay = opened(session_of(fixtures=[HELLO, follow_up]), upgrade(RESPONSES_URL))
    assert replay.opening().actions == []
    first = sent(replay.receive(client({"type": "response.create", "model": "gpt-4.1", "input": "hello"}, 0)).actions)
    assert first[0]["type"] == "response.created" and first[-1]["type"] == "response.completed"
    response_id = first[0]["response"]["id"]
    second = sent(replay.receive(client({"type": "response.create", "model": "gpt-4.1", "input": "and tomorrow?",
                                         "previous_response_id": response_id}, 0)).actions)
    assert second[-1]["response"]["output"][0]["content"][0]["text"] == "Rain."
    unknown = sent(replay.receive(client({"type": "response.create", "input": "x",
                                          "previous_response_id": "resp_unknown"}, 0)).actions)
    assert unknown == [{"type": "error", "status": 400, "error": {
        "type": "invalid_request_error", "code": "previous_response_not_found",
        "message": "Previous response with id 'resp_unknown' not found.", "param": "previous_response_id"}}]


def test_gemini_live_fixture_turns_and_a_miss_closes_with_1008() -> None:
    replay = opened(session_of(fixtures=[HELLO]), upgrade(LIVE_URL))
    setup = sent(replay.receive(client({"setup": {"model": "models/gemini-live"}}, 0)).actions)
    assert setup == [{"setupComplete": {}}]
    turn = replay.receive(client({"client_content": {"turns": [{"role": "user", "parts": [{"text": "hello"}]}],
                                                     "turnComplete": True}}, 0)).actions
    messages = sent(turn)
    assert all(a.message is not None and a.message.binary for a in turn)
    assert "".join(p["text"] for m in messages if "serverContent" in m
                   for p in m["serverContent"].get("modelTurn", {}).get("parts", [])) == "Hi from a fixture!"
    assert messages[-1]["serverContent"] == {"turnComplete": True}
    miss = replay.receive(client({"realtime_input": {"text": "unknown question"}}, 0))
    assert miss.actions[-1].close is not None and miss.actions[-1].close.code == 1008
    assert "unknown question" in (miss.problem or "")


@pytest.mark.parametrize(("status", "code"), [(400, 1007), (401, 1008), (404, 1008), (429, 1011), (503, 1011)])
def test_fixture_errors_close_gemini_live_with_the_code_for_their_status(status: int, code: int) -> None:
    # As the service does: 1008 for a refused key or model, 1011 for exhausted quota and its own failures.
    failing = {"match": {"userMessage": "hello"}, "response": {"error": {"message": "quota"}, "status": status}}
    replay = opened(session_of(fixtures=[failing]), upgrade(LIVE_URL))
    replay.receive(client({"setup": {"model": "models/gemini-live"}}, 0))
    reply = replay.receive(client({"realtimeInput": {"text": "hello"}}, 0))
    assert [a.message for a in reply.actions if a.message is not None] == []  # no error message, only the close
    assert reply.actions[-1].close == WSClose(code, "quota", "server")


@pytest.mark.parametrize("header", ["x-llmock-context", "x-aimock-context"])
def test_the_upgrades_context_header_is_every_turns_match_context(header: str) -> None:
    fixtures = [{"match": {"userMessage": "hello", "context": "suite-b"}, "response": {"content": "From suite B."}},
                {"match": {"userMessage": "hello"}, "response": {"content": "From anywhere."}}]
    ask = client({"type": "response.create", "input": "hello"}, 0)
    for headers, answer in (({header: "suite-b"}, "From suite B."), ({}, "From anywhere.")):
        replay = opened(session_of(fixtures=fixtures), upgrade(RESPONSES_URL, **headers))
        done = sent(replay.receive(ask).actions)[-1]
        assert done["response"]["output"][0]["content"][0]["text"] == answer


@pytest.mark.parametrize("url", [REALTIME_URL, RESPONSES_URL, LIVE_URL])
def test_recorded_sessions_take_precedence_over_fixtures(url: str) -> None:
    messages = [client({"type": "ping"}, 1.0), server({"type": "pong"}, 2.0)]
    replay = opened(session_of(recorded(messages, url=url), fixtures=[HELLO]), upgrade(url))
    assert replay.source == "mem.yaml: interactions[0]"


def test_truncate_after_chunks_drops_the_session_with_the_fixtures_close_code() -> None:
    cut = {**HELLO, "truncateAfterChunks": 2, "closeCode": 4002, "closeReason": "cut"}
    replay = opened(session_of(fixtures=[cut]), upgrade(RESPONSES_URL), factor=0.0)
    actions = replay.receive(client({"type": "response.create", "input": "hello"}, 0)).actions
    assert types(actions) == ["response.created", "response.in_progress"]
    assert actions[-1].close == WSClose(4002, "cut", "server")


@pytest.mark.parametrize("bad", [1006, 999, 5000, "4000", True])
def test_a_close_code_that_cannot_be_sent_breaks_only_its_fixture_which_answers_naming_it(bad: Any) -> None:
    other = {"match": {"userMessage": "other"}, "response": {"content": "fine"}}
    session = session_of(fixtures=[{**HELLO, "closeCode": bad}, other])
    responses = opened(session, upgrade(RESPONSES_URL), factor=0.0)
    (error,) = sent(responses.receive(client({"type": "response.create", "input": "hello"}, 0)).actions)
    assert error["type"] == "error" and error["status"] == 500
    assert "mem.json: fixtures[0].closeCode" in error["error"]["message"]
    assert types(responses.receive(client({"type": "response.create", "input": "other"}, 0)).actions)[-1] == (
        "response.completed")
    live = opened(session, upgrade(LIVE_URL))
    live.receive(client({"setup": {"model": "models/gemini-live"}}, 0))
    close = live.receive(client({"realtimeInput": {"text": "hello"}}, 0)).actions[-1].close
    assert close is not None and close.code == 1011 and "fixtures[0].closeCode" in close.reason


# -- Realtime: modalities, response.cancel ------------------------------------------------------------------


def test_either_modalities_key_asks_for_text_in_either_protocol() -> None:
    for headers, key in (({}, "modalities"), ({"openai-beta": "realtime=v1"}, "output_modalities")):
        replay = opened(session_of(fixtures=[HELLO]), upgrade(**headers))
        updated = sent(replay.receive(client({"type": "session.update", "session": {key: ["text"]}}, 0)).actions)
        own = "modalities" if headers else "output_modalities"
        assert updated[0]["session"][own] == ["text"]  # the session speaks its protocol's name
        replay.receive(say("hello"))
        assert not [t for t in types(replay.receive(CREATE).actions) if "audio" in t]


def test_response_cancel_offers_a_cancelled_response_for_an_answer_still_going_out() -> None:
    replay = opened(session_of(fixtures=[{**HELLO, "latency": 10}]), upgrade())
    replay.receive(say("hello"))
    answer = replay.receive(CREATE).actions
    assert all(a.answer for a in answer)  # a fixture answer: a later message may interrupt it
    created = sent(answer)[0]["response"]
    cancel = replay.receive(client({"type": "response.cancel", "event_id": "evt_c"}, 0))
    # All sent already: the service's error.
    (error,) = sent(cancel.actions)
    assert error["error"]["code"] == "response_cancel_not_active" and error["error"]["event_id"] == "evt_c"
    assert cancel.problem == error["error"]["message"]
    # Still going out: the rest is dropped and the response ends cancelled.
    assert cancel.interrupt is not None and not any(a.answer for a in cancel.interrupt)
    (done,) = sent(cancel.interrupt)
    assert done["type"] == "response.done" and done["response"]["id"] == created["id"]
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert [item["status"] for item in done["response"]["output"]] == ["incomplete"]


def test_response_cancel_of_another_or_no_response_is_only_the_error() -> None:
    replay = opened(session_of(fixtures=[HELLO]), upgrade())
    assert replay.receive(client({"type": "response.cancel"}, 0)).interrupt is None  # nothing answered yet
    replay.receive(say("hello"))
    replay.receive(CREATE)
    other = replay.receive(client({"type": "response.cancel", "response_id": "resp_someone_else"}, 0))
    assert other.interrupt is None and sent(other.actions)[0]["error"]["code"] == "response_cancel_not_active"
