"""OpenAI Realtime and Responses over WebSocket answered from llmock fixtures,
as real clients rely on them: ``llmock-proxy serve``'s engine on 127.0.0.1:0
and openai-python's own clients (``client.realtime.connect()``,
``client.beta.realtime.connect()``, ``client.responses.connect()``).

Every server event is validated against the SDK's published types (pydantic,
strictly: a missing or mistyped field fails), GA and beta alike, so the
event names, content part types and error shapes are the wire format the
SDK was generated from, not a look-alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent as GAServerEvent

from llmock_proxy.replay.session import ReplaySession
from tests.support.replay import EngineThread
from tests.support.websocket import Target

try:  # openai 3.x types the socket's own error event; 2.x only the HTTP stream's flat one
    from openai.types.responses.responses_server_event import ResponseWsError
except ImportError:
    ResponseWsError = None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.timeout(60)

GA = pydantic.TypeAdapter(GAServerEvent)
BETA = pydantic.TypeAdapter(BetaServerEvent)
LONG = "one two three four five six seven eight nine ten eleven twelve"
FIXTURES = {"fixtures": [
    {"match": {"userMessage": "hello", "context": "suite-b"}, "response": {"content": "Hi, suite B!"}},
    {"match": {"userMessage": "hello"}, "response": {"content": "Hi from a fixture!"}, "chunkSize": 6},
    {"match": {"userMessage": "long story"}, "response": {"content": LONG}, "chunkSize": 4, "latency": 60},
    {"match": {"userMessage": "rate me"},
     "response": {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"},
                  "status": 429}},
]}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def fixture_file(tmp_path: Path) -> Path:
    path = tmp_path / "ws-fixtures.json"
    path.write_text(json.dumps(FIXTURES))
    return path


@pytest.fixture
def engine(fixture_file: Path) -> Iterator[EngineThread]:
    """serve's engine, with recorded timing (so a fixture's latency paces its answer)."""
    with EngineThread(ReplaySession.load(fixtures=[fixture_file]), timing="recorded") as running:
        yield running


@pytest.fixture
def instant(fixture_file: Path) -> Iterator[EngineThread]:
    with EngineThread(ReplaySession.load(fixtures=[fixture_file]), timing="instant") as running:
        yield running


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def read_until(conn: Any, adapter: pydantic.TypeAdapter[Any], *last: str) -> list[Any]:
    """Server events, each validated against the SDK's types, up to one of type ``last``."""
    events = []
    while True:
        event = adapter.validate_json(await conn.recv_bytes())
        events.append(event)
        if event.type in last:
            return events


def kinds(events: list[Any]) -> list[str]:
    return [e.type for e in events]


# -- output modalities -----------------------------------------------------------------------------


async def ga_turn(target: Target, text: str, *, session: dict[str, Any] | None = None,
                  response: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> list[Any]:
    client = target.openai()
    async with client.realtime.connect(model="gpt-realtime", extra_headers=headers or {},
                                       websocket_connection_options=target.websocket_options()) as conn:
        events = await read_until(conn, GA, "session.created")
        if session is not None:
            await conn.send({"type": "session.update", "session": session})  # type: ignore[arg-type,typeddict-item]
            events += await read_until(conn, GA, "session.updated")
        await conn.conversation.item.create(item=user_text(text))  # type: ignore[arg-type]
        if response is None:
            await conn.response.create()
        else:
            await conn.send({"type": "response.create", "response": response})  # type: ignore[arg-type,typeddict-item]
        events += await read_until(conn, GA, "response.done", "error")
    await client.close()
    return events


def assert_text_parts(events: list[Any], text: str, *, beta: bool = False) -> None:
    delta = "response.text.delta" if beta else "response.output_text.delta"
    names = kinds(events)
    assert not [n for n in names if "audio" in n], names
    assert "".join(e.delta for e in events if e.type == delta) == text
    (added,) = [e for e in events if e.type == "response.content_part.added"]
    assert added.part.type == "text"
    done = events[-1]
    assert done.type == "response.done" and done.response.status == "completed"
    (content,) = done.response.output[0].content
    assert (content.type, content.text) == ("text" if beta else "output_text", text)


def test_a_ga_text_only_session_gets_text_content_parts(instant: EngineThread) -> None:
    events = run(ga_turn(Target.at(instant.url), "hello", session={"type": "realtime", "output_modalities": ["text"]}))
    assert_text_parts(events, "Hi from a fixture!")
    assert events[1].session.output_modalities == ["text"]  # session.updated says what was asked


def test_a_ga_response_asking_for_text_gets_text_in_an_audio_session(instant: EngineThread) -> None:
    events = run(ga_turn(Target.at(instant.url), "hello", response={"output_modalities": ["text"]}))
    assert events[0].session.output_modalities == ["audio"]  # the GA default
    assert_text_parts(events, "Hi from a fixture!")
    assert events[-1].response.output_modalities == ["text"]


def test_a_ga_audio_session_gets_a_transcript_and_audio(instant: EngineThread) -> None:
    events = run(ga_turn(Target.at(instant.url), "hello"))
    names = kinds(events)
    assert "response.output_text.delta" not in names
    assert "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta") == "Hi from a fixture!"
    assert "response.output_audio.delta" in names and "response.output_audio.done" in names
    (content,) = events[-1].response.output[0].content
    assert (content.type, content.transcript) == ("output_audio", "Hi from a fixture!")


def test_a_ga_client_naming_betas_modalities_key_gets_text(instant: EngineThread) -> None:
    # Clients written against llmock send ``modalities`` without the beta header.
    events = run(ga_turn(Target.at(instant.url), "hello", session={"type": "realtime", "modalities": ["text"]}))
    assert_text_parts(events, "Hi from a fixture!")


async def beta_turn(target: Target, text: str, *, session: dict[str, Any] | None = None,
                    response: dict[str, Any] | None = None) -> list[Any]:
    # The beta client dials wss:// whatever the base URL says, unless told where the socket is.
    client = target.openai(websocket_base_url=f"{target.base_url}/v1".replace("http://", "ws://", 1))
    async with client.beta.realtime.connect(model="gpt-4o-realtime-preview",
                                            websocket_connection_options=target.websocket_options()) as conn:
        events = await read_until(conn, BETA, "session.created")
        if session is not None:
            await conn.session.update(session=session)  # type: ignore[arg-type]
            events += await read_until(conn, BETA, "session.updated")
        await conn.conversation.item.create(item=user_text(text))  # type: ignore[arg-type]
        events += await read_until(conn, BETA, "conversation.item.created")
        if response is None:
            await conn.response.create()
        else:
            await conn.response.create(response=response)  # type: ignore[arg-type]
        events += await read_until(conn, BETA, "response.done", "error")
    await client.close()
    return events


def test_beta_clients_get_beta_event_names_and_text_parts(instant: EngineThread) -> None:
    # client.beta.realtime.connect() sends ``OpenAI-Beta: realtime=v1``.
    events = run(beta_turn(Target.at(instant.url), "hello", session={"modalities": ["text"]}))
    names = kinds(events)
    assert "conversation.item.created" in names and "response.text.done" in names
    assert not [n for n in names if n.startswith("response.output_") and "item" not in n], names
    assert "conversation.item.added" not in names and "conversation.item.done" not in names
    assert_text_parts(events, "Hi from a fixture!", beta=True)


def test_a_beta_response_asking_for_text_gets_text(instant: EngineThread) -> None:
    events = run(beta_turn(Target.at(instant.url), "hello", response={"modalities": ["text"]}))
    assert events[0].session.modalities == ["text", "audio"]  # the beta default
    assert_text_parts(events, "Hi from a fixture!", beta=True)


def test_a_beta_audio_session_gets_beta_audio_events(instant: EngineThread) -> None:
    events = run(beta_turn(Target.at(instant.url), "hello"))
    names = kinds(events)
    assert "".join(e.delta for e in events if e.type == "response.audio_transcript.delta") == "Hi from a fixture!"
    assert "response.audio.delta" in names and "response.audio.done" in names
    assert "response.output_audio.delta" not in names
    (content,) = events[-1].response.output[0].content
    assert (content.type, content.transcript) == ("audio", "Hi from a fixture!")


def test_the_upgrades_context_header_picks_the_fixtures_of_its_context(instant: EngineThread) -> None:
    text_only = {"type": "realtime", "output_modalities": ["text"]}
    events = run(ga_turn(Target.at(instant.url), "hello", session=text_only, headers={"X-AIMock-Context": "suite-b"}))
    assert_text_parts(events, "Hi, suite B!")


# -- response.cancel --------------------------------------------------------------------------------


async def cancel_mid_answer(target: Target) -> tuple[list[Any], list[Any]]:
    client = target.openai()
    async with client.realtime.connect(model="gpt-realtime",
                                       websocket_connection_options=target.websocket_options()) as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(item=user_text("tell me a long story"))  # type: ignore[arg-type]
        await conn.response.create()
        before = await read_until(conn, GA, "response.output_text.delta")
        await conn.response.cancel(event_id="evt_cancel_1")
        after = await read_until(conn, GA, "response.done")
        # Nothing of the cancelled answer is left to come: the next event answers the next message.
        await conn.response.cancel(event_id="evt_cancel_2")
        after += await read_until(conn, GA, "error", "response.done")
    await client.close()
    return before, after


def test_response_cancel_ends_the_answer_in_progress_as_a_cancelled_response(engine: EngineThread) -> None:
    before, after = run(cancel_mid_answer(Target.at(engine.url)))
    created = next(e for e in before if e.type == "response.created")
    done = next(e for e in after if e.type == "response.done")
    assert done.response.id == created.response.id and done.response.status == "cancelled"
    assert done.response.status_details.type == "cancelled"
    assert done.response.status_details.reason == "client_cancelled"
    assert done.response.output[0].status == "incomplete"
    deltas = [e for e in before + after if e.type == "response.output_text.delta"]
    assert 1 <= len(deltas) < len(range(0, len(LONG), 4))  # cut short
    assert "response.output_text.done" not in kinds(after)
    error = after[-1]
    assert error.type == "error" and error.error.code == "response_cancel_not_active"
    assert error.error.event_id == "evt_cancel_2"


def test_response_cancel_with_no_answer_in_progress_is_an_error_event(instant: EngineThread) -> None:
    async def cancel_when_idle(target: Target) -> list[Any]:
        client = target.openai()
        async with client.realtime.connect(model="gpt-realtime",
                                           websocket_connection_options=target.websocket_options()) as conn:
            events = await read_until(conn, GA, "session.created")
            await conn.conversation.item.create(item=user_text("hello"))  # type: ignore[arg-type]
            await conn.response.create()
            events += await read_until(conn, GA, "response.done")  # sent whole: nothing left to cancel
            await conn.response.cancel(event_id="evt_late")
            events += await read_until(conn, GA, "error", "response.done")
        await client.close()
        return events

    error = run(cancel_when_idle(Target.at(instant.url)))[-1]
    assert error.type == "error"
    assert (error.error.type, error.error.code, error.error.event_id) == (
        "invalid_request_error", "response_cancel_not_active", "evt_late")
    assert error.error.message


# -- error events -------------------------------------------------------------------------------------


def test_realtime_errors_are_error_events_with_type_code_message_and_the_client_event_id(
        instant: EngineThread) -> None:
    async def errors(target: Target) -> list[Any]:
        client = target.openai()
        async with client.realtime.connect(model="gpt-realtime",
                                           websocket_connection_options=target.websocket_options()) as conn:
            await read_until(conn, GA, "session.created")
            await conn.send({"type": "no.such.event", "event_id": "evt_unknown"})  # type: ignore[arg-type,typeddict-item]
            unknown = await read_until(conn, GA, "error")
            await conn.conversation.item.create(item=user_text("a question no fixture answers"))  # type: ignore[arg-type]
            await conn.response.create()
            miss = await read_until(conn, GA, "error", "response.done")
            # The SDK's own parsing sees the same: RealtimeErrorEvent with an error object.
            parsed = conn.parse_event(json.dumps({"type": "error", "event_id": "x", "error": {
                "type": "invalid_request_error", "code": None, "message": "m", "param": None, "event_id": None}}))
            assert parsed.type == "error" and parsed.error.message == "m"
        await client.close()
        return [unknown[-1], miss[-1]]

    unknown, miss = run(errors(Target.at(instant.url)))
    assert (unknown.error.type, unknown.error.code, unknown.error.event_id) == (
        "invalid_request_error", "invalid_value", "evt_unknown")
    assert "no.such.event" in unknown.error.message and unknown.error.param is None
    assert miss.type == "error" and (miss.error.type, miss.error.code) == ("invalid_request_error", "no_fixture_match")
    assert "a question no fixture answers" in miss.error.message


def test_a_realtime_error_fixture_is_a_failed_response(instant: EngineThread) -> None:
    events = run(ga_turn(Target.at(instant.url), "rate me", session={"type": "realtime", "output_modalities": ["text"]}))
    done = events[-1]
    assert done.type == "response.done" and done.response.status == "failed"
    error = done.response.status_details.error
    assert (error.type, error.code) == ("rate_limit_error", "rate_limit_exceeded")


# -- Responses over WebSocket ----------------------------------------------------------------------


async def responses_events(target: Target, *creates: dict[str, Any]) -> list[dict[str, Any]]:
    """One raw event list per response.create (each read to its last event)."""
    out = []
    client = target.openai()
    async with client.responses.connect(websocket_connection_options=target.websocket_options()) as conn:
        for create in creates:
            await conn.response.create(**create)
            while True:
                raw = await conn.recv_bytes()
                event = json.loads(raw)
                parsed = conn.parse_event(raw)  # the SDK reads it without complaint
                assert parsed.type == event["type"]
                out.append(event)
                if event["type"] in ("response.completed", "response.failed", "error"):
                    break
    await client.close()
    return out


def assert_ws_error(event: dict[str, Any], *, status: int, type: str, code: str, param: str | None = None) -> None:
    assert set(event) == {"type", "status", "error"}  # not the HTTP stream's flat code/message
    assert event["type"] == "error" and event["status"] == status
    assert {k: v for k, v in event["error"].items() if k != "message"} == {"type": type, "code": code, "param": param}
    assert event["error"]["message"]
    if ResponseWsError is not None:
        typed = ResponseWsError.model_validate(event)
        assert (typed.status, typed.error.type, typed.error.code) == (status, type, code)


def test_responses_websocket_errors_have_the_sdks_error_shape(instant: EngineThread) -> None:
    events = run(responses_events(
        Target.at(instant.url),
        {"model": "gpt-4.1", "input": "a question no fixture answers"},
        {"model": "gpt-4.1", "input": "hello", "previous_response_id": "resp_never_given"},
        {"model": "gpt-4.1", "input": "rate me"},
        {"model": "gpt-4.1", "input": "hello"},
    ))
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 3
    assert_ws_error(errors[0], status=421, type="invalid_request_error", code="no_fixture_match")
    assert "a question no fixture answers" in errors[0]["error"]["message"]
    assert_ws_error(errors[1], status=400, type="invalid_request_error", code="previous_response_not_found",
                    param="previous_response_id")
    assert_ws_error(errors[2], status=429, type="rate_limit_error", code="rate_limit_exceeded")
    assert errors[2]["error"]["message"] == "Rate limit reached"
    assert events[-1]["type"] == "response.completed"  # the session goes on after errors
