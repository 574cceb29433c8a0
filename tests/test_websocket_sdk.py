"""WebSocket record and replay with the real clients, through a real mitmproxy.

openai-python's Realtime and Responses WebSocket clients and google-genai's
Live client talk to fake upstreams written from the published protocols
(tests/fakes/openai_realtime_ws.py, tests/fakes/gemini_live_ws.py) through
the record addon in regular mode (wss with mitmproxy's CA); the upstreams
are stopped; the replay addon and ``llmock-proxy serve`` answer the same
sessions, and the clients must see the same messages in the same order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import WSMsgType, web
from google.genai import errors as genai_errors

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.mitm.record import Record
from llmock_proxy.mitm.replay import Replay
from tests.fakes import FakeServer, Script, TestPKI, ToolCall
from tests.fakes.base import FakeProvider, JSONDict, RecordedRequest
from tests.fakes.gemini_live_ws import GeminiLiveFake
from tests.fakes.openai_realtime_ws import OpenAIRealtimeFake
from tests.harness import InProcessProxy, UpstreamRouter, routes_for
from tests.harness import clients as sdk
from tests.support.websocket import (
    Target,
    live_text,
    live_text_turn,
    live_tool_conversation,
    realtime_text,
    realtime_text_turn,
    realtime_tool_conversation,
    responses_text_turn,
    responses_tool_conversation,
)
from tests.test_serve import Serve

pytestmark = pytest.mark.timeout(120)

LIVE_URL = ("wss://generativelanguage.googleapis.com/ws/"
            "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent")
CALL = ToolCall("get_weather", {"city": "Paris"})
ANSWER = "It is 21 degrees and clear in Paris."


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- recording once, for the module ------------------------------------------------------------


class Recorded:
    """The cassette the record addon wrote, and what each client saw while recording."""

    def __init__(self, path: Path, seen: dict[str, list[Any]]) -> None:
        self.path = path
        self.seen = seen


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI) -> Recorded:
    cassette_dir = tmp_path_factory.mktemp("ws-cassettes")
    openai_fake = OpenAIRealtimeFake()
    openai_fake.queue(Script(text="", tool_calls=[CALL]), Script(text=ANSWER),  # realtime
                      Script(text="", tool_calls=[CALL]), Script(text=ANSWER))  # responses
    live_fake = GeminiLiveFake()
    live_fake.queue(Script(text="", tool_calls=[CALL]), Script(text="Paris: 21 degrees, clear sky."))
    fakes = [FakeServer(openai_fake, pki=test_pki).start(), FakeServer(live_fake, pki=test_pki).start()]
    record = Record()
    proxy = InProcessProxy(
        confdir=tmp_path_factory.mktemp("mitm-record"),
        addons=[record],
        options={"llmock_cassette_dir": str(cassette_dir), "llmock_cassette": "ws.yaml"},
        router=UpstreamRouter(routes_for(*fakes)),
        upstream_trusted_ca=test_pki.ca_cert_path,
    )
    try:
        with proxy:
            target = Target.through(proxy)
            seen = {
                "realtime": run(realtime_tool_conversation(target)),
                "responses": run(responses_tool_conversation(target)),
                "live": run(live_tool_conversation(target)),
            }
            assert record.flush(30)
            assert not proxy.errors(), proxy.errors()
    finally:
        for fake in fakes:
            fake.stop()  # replay must not need them
    return Recorded(cassette_dir / "ws.yaml", seen)


@pytest.fixture
def replaying(tmp_path: Path) -> Iterator[Any]:
    """``replaying(options, mode=...)``: a replay proxy with nothing upstream."""
    started: list[InProcessProxy] = []

    def start(options: dict[str, Any], *, mode: str = "regular") -> tuple[InProcessProxy, Replay, UpstreamRouter]:
        replay = Replay()
        router = UpstreamRouter()
        proxy = InProcessProxy(confdir=tmp_path / f"mitm-{len(started)}", mode=mode, addons=[replay],
                               options={"llmock_cassette_dir": "", **options}, router=router)
        started.append(proxy.start())
        return proxy, replay, router

    yield start
    for proxy in started:
        proxy.stop()


# -- what was recorded -------------------------------------------------------------------------------


def test_the_cassette_holds_each_session_turn_by_turn_without_credentials(recorded: Recorded) -> None:
    text = recorded.path.read_text()
    assert "sk-test" not in text
    interactions = cassette_store.load(recorded.path).interactions
    assert [i.match["family"] for i in interactions] == ["openai.realtime", "openai.responses_ws", "gemini.live"]
    realtime, responses, live = interactions
    assert realtime.request.url == "https://api.openai.com/v1/realtime?model=gpt-realtime"
    assert realtime.match["model"] == "gpt-realtime"
    for interaction in interactions:
        response = interaction.response
        assert response is not None and response.status == 101 and response.websocket is not None
        messages = response.websocket.messages
        assert [m.t for m in messages] == sorted(m.t for m in messages)
        assert response.websocket.close is not None and response.websocket.close.by == "client"
        assert response.websocket.close.code == 1000
    client_types = [m.payload.value["type"] for m in realtime.response.websocket.messages if m.from_client]
    assert client_types == ["session.update", "conversation.item.create", "response.create",
                            "conversation.item.create", "response.create"]
    assert realtime.summary["tool_calls"][0]["name"] == "get_weather" and realtime.summary["text"] == ANSWER
    assert responses.summary["text"] == ANSWER
    live_server = [m for m in live.response.websocket.messages if not m.from_client]
    assert all(m.binary for m in live_server)  # Live answers in binary frames, kept exactly
    assert live_server[0].content == b'{\n  "setupComplete": {}\n}\n'
    assert live.summary["model"] == "gemini-live-2.5-flash-preview"


# -- replay through the addon ------------------------------------------------------------------------


CONVERSATIONS = {
    "realtime": realtime_tool_conversation,
    "responses": responses_tool_conversation,
    "live": live_tool_conversation,
}


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_the_addon_replays_each_session_as_recorded(recorded: Recorded, replaying: Any, name: str) -> None:
    proxy, replay, router = replaying({"llmock_cassettes": [str(recorded.path)], "llmock_timing": "instant"})
    seen = run(CONVERSATIONS[name](Target.through(proxy)))
    assert seen == recorded.seen[name]
    assert router.attempts and all(a.requested[0] == "127.0.0.1" for a in router.attempts)
    assert not [line for line in proxy.log_lines() if "websocket replay" in line]
    assert not proxy.errors(), proxy.errors()


def test_a_tool_call_round_trip_replays_turn_by_turn(recorded: Recorded, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_cassettes": [str(recorded.path)], "llmock_timing": "instant"})
    seen = run(realtime_tool_conversation(Target.through(proxy)))
    dones = [e for e in seen if e["type"] == "response.done"]
    assert [item["type"] for item in dones[0]["response"]["output"]] == ["function_call"]
    assert realtime_text(seen) == ANSWER
    # The answer only came after the tool output was sent: it follows the first response.done.
    assert seen.index(dones[0]) < seen.index(dones[1])


def test_a_mismatched_realtime_turn_gets_an_error_event_not_a_hang(recorded: Recorded, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_cassettes": [str(recorded.path)], "llmock_timing": "instant"})
    seen = run(realtime_tool_conversation(Target.through(proxy), question="Something never recorded"))
    error = seen[-1]
    assert error["type"] == "error"
    message = error["error"]["message"]
    assert "client message 2" in message and "fits no recorded session" in message
    assert "Something never recorded" in message and "What is the weather in Paris?" in message
    assert f"{recorded.path}: interactions[0]" in message
    # One log line for the message that did not fit (the response.create after it does not fit either).
    problems = [line for line in proxy.log_lines() if "websocket replay" in line]
    assert len(problems) == 2 and "Something never recorded" in problems[0]


def test_a_mismatched_responses_turn_gets_an_error_event(recorded: Recorded, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_cassettes": [str(recorded.path)], "llmock_timing": "instant"})
    seen = run(responses_text_turn(Target.through(proxy), "Something never recorded"))
    error = seen[-1]
    assert error["type"] == "error" and error["status"] == 400 and error["error"]["code"] == "llmock_unexpected_event"
    assert "Something never recorded" in error["error"]["message"] and "What is the weather" in error["error"]["message"]


def test_a_mismatched_live_turn_closes_with_1008_and_the_sdk_raises(recorded: Recorded, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_cassettes": [str(recorded.path)], "llmock_timing": "instant"})
    with pytest.raises(genai_errors.APIError) as caught:
        run(live_text_turn(Target.through(proxy), "Something never recorded"))
    assert caught.value.code == 1008
    assert "fits no recorded session" in str(caught.value)


def test_recorded_timing_spreads_the_turns_as_recorded(test_pki: TestPKI, tmp_path: Path, replaying: Any) -> None:
    fake = FakeServer(OpenAIRealtimeFake(Script(text="one two three four", event_delay=0.03)), pki=test_pki).start()
    record = Record()
    proxy = InProcessProxy(confdir=tmp_path / "rec", addons=[record],
                           options={"llmock_cassette_dir": str(tmp_path), "llmock_cassette": "slow.yaml"},
                           router=UpstreamRouter(routes_for(fake)), upstream_trusted_ca=test_pki.ca_cert_path)
    try:
        with proxy:
            run(realtime_text_turn(Target.through(proxy), "hello"))
            assert record.flush(30)
    finally:
        fake.stop()
    messages = cassette_store.load(tmp_path / "slow.yaml").interactions[0].response.websocket.messages
    create = next(m for m in messages if m.from_client and m.payload.value["type"] == "response.create")
    done = next(m for m in messages if not m.from_client and m.payload.value["type"] == "response.done")
    recorded_ms = done.t - create.t
    assert recorded_ms >= 300
    proxy, _, _ = replaying({"llmock_cassettes": [str(tmp_path / "slow.yaml")]})
    started = time.perf_counter()
    run(realtime_text_turn(Target.through(proxy), "hello"))
    took_ms = (time.perf_counter() - started) * 1000
    assert took_ms >= recorded_ms * 0.8  # paced, not instant (accuracy figures: benchmarks/ws_replay.py)


# -- close codes, binary frames, pings --------------------------------------------------------------


def test_a_server_close_code_is_recorded_and_reproduced(test_pki: TestPKI, tmp_path: Path, replaying: Any) -> None:
    fake = FakeServer(OpenAIRealtimeFake(Script(text="Bye now."), close_after_responses=1, close_code=4001,
                                         close_reason="session limit reached"), pki=test_pki).start()
    record = Record()
    proxy = InProcessProxy(confdir=tmp_path / "rec", addons=[record],
                           options={"llmock_cassette_dir": str(tmp_path), "llmock_cassette": "closed.yaml"},
                           router=UpstreamRouter(routes_for(fake)), upstream_trusted_ca=test_pki.ca_cert_path)

    async def talk(target: Target) -> tuple[list[Any], int, str]:
        client = target.openai()
        seen: list[Any] = []
        async with client.realtime.connect(model="gpt-realtime",
                                           websocket_connection_options=target.websocket_options()) as conn:
            await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                      "content": [{"type": "input_text", "text": "bye"}]})
            await conn.response.create()
            try:
                while True:
                    seen.append(json.loads(await conn.recv_bytes()))
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None
                return seen, closed.rcvd.code, closed.rcvd.reason

    try:
        with proxy:
            live = run(talk(Target.through(proxy)))
            assert record.flush(30)
    finally:
        fake.stop()
    close = cassette_store.load(tmp_path / "closed.yaml").interactions[0].response.websocket.close
    assert (close.code, close.reason, close.by) == (4001, "session limit reached", "server")
    proxy, _, _ = replaying({"llmock_cassettes": [str(tmp_path / "closed.yaml")], "llmock_timing": "instant"})
    replayed = run(talk(Target.through(proxy)))
    assert replayed == live and live[1:] == (4001, "session limit reached")


class BinaryAudioFake(FakeProvider):
    """A WebSocket API of no known family: binary audio frames, a subprotocol,
    a close code of its own."""

    name = "audio-ws"
    hosts = ("audio.example.test",)

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/v1/stream", self.stream)]

    def is_authorized(self, request: RecordedRequest) -> bool:
        return True

    def error_body(self, status: int, message: str) -> JSONDict:
        return {"error": message}

    async def stream(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("audio.v1",))
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await ws.send_bytes(bytes(reversed(message.data)) + bytes(range(256)))
            elif message.type == WSMsgType.TEXT and message.data == "end":
                await ws.close(code=4100, message=b"stream finished")
        return ws


BINARY_URL = "wss://audio.example.test/v1/stream"
CHUNKS = [bytes(range(256)), b"\x00\xff\xfe" * 100, "héllo".encode()]


async def raw_binary_session(target: Target) -> tuple[str | None, list[bytes], int, str]:
    async with websockets.connect(BINARY_URL, subprotocols=["audio.v1"], **target.websocket_options()) as ws:
        received = []
        for chunk in CHUNKS:
            await ws.send(chunk)
            received.append(await ws.recv())
        pong = await ws.ping()
        await asyncio.wait_for(pong, 10)  # ping/pong work through the replay
        await ws.send("end")
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None
            return ws.subprotocol, received, closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("the server did not close")


def test_binary_frames_round_trip_byte_exact_with_subprotocol_and_close(
    test_pki: TestPKI, tmp_path: Path, replaying: Any
) -> None:
    fake = FakeServer(BinaryAudioFake(), pki=test_pki).start()
    record = Record()
    proxy = InProcessProxy(confdir=tmp_path / "rec", addons=[record],
                           options={"llmock_cassette_dir": str(tmp_path), "llmock_cassette": "audio.yaml"},
                           router=UpstreamRouter(routes_for(fake)), upstream_trusted_ca=test_pki.ca_cert_path)
    try:
        with proxy:
            live = run(raw_binary_session(Target.through(proxy)))
            assert record.flush(30)
    finally:
        fake.stop()
    assert live[0] == "audio.v1" and live[2:] == (4100, "stream finished")
    session = cassette_store.load(tmp_path / "audio.yaml").interactions[0].response.websocket
    assert session.subprotocol == "audio.v1"
    assert [m.payload.kind for m in session.messages if not m.from_client] == ["base64", "base64", "base64"]
    proxy, _, _ = replaying({"llmock_cassettes": [str(tmp_path / "audio.yaml")], "llmock_timing": "instant"})
    assert run(raw_binary_session(Target.through(proxy))) == live


def test_live_binary_frames_replay_byte_for_byte(recorded: Recorded, replaying: Any) -> None:
    live = cassette_store.load(recorded.path).interactions[2]
    recorded_frames = [m.content for m in live.response.websocket.messages if not m.from_client]
    setup = next(m for m in live.response.websocket.messages if m.from_client)
    proxy, _, _ = replaying({"llmock_cassettes": [str(recorded.path)], "llmock_timing": "instant"})

    async def first_frame() -> bytes | str:
        target = Target.through(proxy)
        async with websockets.connect(LIVE_URL, additional_headers={"x-goog-api-key": sdk.TEST_GEMINI_KEY},
                                      **target.websocket_options()) as ws:
            await ws.send(setup.content)
            return await ws.recv()

    assert run(first_frame()) == recorded_frames[0] == b'{\n  "setupComplete": {}\n}\n'


# -- llmock-proxy serve --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["realtime", "responses"])
def test_serve_accepts_the_upgrade_and_replays_the_session(recorded: Recorded, name: str) -> None:
    server = Serve("--cassettes", str(recorded.path), "--timing", "instant")
    try:
        seen = run(CONVERSATIONS[name](Target.at(server.url)))
    finally:
        server.stop()
    assert seen == recorded.seen[name]


# -- fixtures over WebSocket ----------------------------------------------------------------------------


FIXTURES = {"fixtures": [
    {"match": {"toolCallId": "call_fixture_1"}, "response": {"content": "Sunny, 24 degrees."}},
    {"match": {"userMessage": "weather"},
     "response": {"toolCalls": [{"id": "call_fixture_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}]}},
    {"match": {"userMessage": "hello"}, "response": {"content": "Hi! This answer comes from a fixture."},
     "chunkSize": 7},
    {"match": {"userMessage": "hang up"}, "response": {"content": "This is cut short."},
     "disconnectAfterMs": 0, "closeCode": 4000, "closeReason": "fixture drop"},
]}


@pytest.fixture
def fixture_file(tmp_path: Path) -> Path:
    path = tmp_path / "ws-fixtures.json"
    path.write_text(json.dumps(FIXTURES))
    return path


def test_fixtures_answer_realtime_ga_sessions_with_a_tool_round_trip(fixture_file: Path, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_fixtures": [str(fixture_file)]})
    seen = run(realtime_tool_conversation(Target.through(proxy)))
    assert seen[0]["type"] == "session.created"
    assert realtime_text(seen) == "Sunny, 24 degrees."
    types = [e["type"] for e in seen]
    assert "response.function_call_arguments.done" in types and "response.output_text.delta" in types
    deltas = [e["delta"] for e in seen if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "Sunny, 24 degrees."


def test_fixtures_answer_realtime_beta_clients_with_beta_event_names(fixture_file: Path, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_fixtures": [str(fixture_file)]})
    seen = run(realtime_text_turn(Target.through(proxy), "hello", headers={"OpenAI-Beta": "realtime=v1"}))
    types = [e["type"] for e in seen]
    assert "conversation.item.created" in types and "response.text.delta" in types
    assert "response.output_text.delta" not in types
    assert [e["delta"] for e in seen if e["type"] == "response.text.delta"] == [
        "Hi! Thi", "s answe", "r comes", " from a", " fixtur", "e."]


def test_fixtures_answer_responses_websocket_sessions(fixture_file: Path, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_fixtures": [str(fixture_file)]})
    seen = run(responses_tool_conversation(Target.through(proxy)))
    completed = [e for e in seen if e["type"] == "response.completed"]
    assert completed[0]["response"]["output"][0]["type"] == "function_call"
    assert completed[1]["response"]["output"][0]["content"][0]["text"] == "Sunny, 24 degrees."


def test_fixtures_answer_gemini_live_sessions(fixture_file: Path, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_fixtures": [str(fixture_file)]})
    seen = run(live_tool_conversation(Target.through(proxy)))
    calls = [m["tool_call"]["function_calls"][0] for m in seen if "tool_call" in m]
    assert calls[0]["name"] == "get_weather" and calls[0]["args"] == {"city": "Paris"}
    assert live_text(seen) == "Sunny, 24 degrees."
    assert live_text(run(live_text_turn(Target.through(proxy), "hello"))) == "Hi! This answer comes from a fixture."


def test_fixture_drop_closes_with_the_fixtures_code(fixture_file: Path, replaying: Any) -> None:
    proxy, _, _ = replaying({"llmock_fixtures": [str(fixture_file)]})
    with pytest.raises(websockets.ConnectionClosed) as caught:
        run(realtime_text_turn(Target.through(proxy), "please hang up"))
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4000, "fixture drop")


def test_a_turn_no_fixture_matches_gets_the_error_event(fixture_file: Path, replaying: Any) -> None:
    proxy, replay, _ = replaying({"llmock_fixtures": [str(fixture_file)]})
    seen = run(responses_text_turn(Target.through(proxy), "unmatched question"))
    error = seen[-1]
    assert error["type"] == "error" and error["status"] == 421 and error["error"]["code"] == "no_fixture_match"
    assert "unmatched question" in error["error"]["message"] and "userMessage" in error["error"]["message"]
    assert replay.session.misses == 1


def test_serve_answers_fixture_sessions(fixture_file: Path) -> None:
    server = Serve("--fixtures", str(fixture_file))
    try:
        assert "Hi! This answer" in realtime_text(run(realtime_text_turn(Target.at(server.url), "hello")))
        seen = run(responses_text_turn(Target.at(server.url), "hello"))
    finally:
        server.stop()
    assert seen[-1]["response"]["output"][0]["content"][0]["text"] == "Hi! This answer comes from a fixture."


# -- reverse mode ---------------------------------------------------------------------------------------


def test_reverse_mode_records_and_replays(test_pki: TestPKI, tmp_path: Path, replaying: Any) -> None:
    fake_provider = OpenAIRealtimeFake()
    fake_provider.queue(Script(text="", tool_calls=[CALL]), Script(text=ANSWER))
    fake = FakeServer(fake_provider, pki=test_pki).start()
    record = Record()
    proxy = InProcessProxy(confdir=tmp_path / "rec", mode="reverse:https://api.openai.com", addons=[record],
                           options={"llmock_cassette_dir": str(tmp_path), "llmock_cassette": "reverse.yaml"},
                           router=UpstreamRouter(routes_for(fake)), upstream_trusted_ca=test_pki.ca_cert_path)
    try:
        with proxy:
            live = run(realtime_tool_conversation(Target.at(proxy.url)))
            assert record.flush(30)
    finally:
        fake.stop()
    interaction = cassette_store.load(tmp_path / "reverse.yaml").interactions[0]
    assert interaction.match["family"] == "openai.realtime"
    proxy, _, _ = replaying({"llmock_cassettes": [str(tmp_path / "reverse.yaml")], "llmock_timing": "instant"},
                            mode="reverse:https://api.openai.com")
    assert run(realtime_tool_conversation(Target.at(proxy.url))) == live


# -- auto mode ------------------------------------------------------------------------------------------


def test_auto_mode_records_an_unknown_session_and_replays_it_next_time(
    test_pki: TestPKI, tmp_path: Path, replaying: Any
) -> None:
    fake_provider = OpenAIRealtimeFake(Script(text="Straight from upstream."))
    fake = FakeServer(fake_provider, pki=test_pki).start()
    try:
        replay = Replay()
        proxy = InProcessProxy(
            confdir=tmp_path / "mitm-auto", addons=[replay],
            options={"llmock_mode": "auto", "llmock_cassette_dir": str(tmp_path), "llmock_cassette": "auto.yaml"},
            router=UpstreamRouter(routes_for(fake)), upstream_trusted_ca=test_pki.ca_cert_path,
        ).start()
        try:
            first = run(realtime_text_turn(Target.through(proxy), "hello"))
            assert replay._record.flush(30)
            second = run(realtime_text_turn(Target.through(proxy), "hello"))
        finally:
            proxy.stop()
    finally:
        fake.stop()
    assert len(fake_provider.sessions) == 1  # the second session never reached the upstream
    assert second == first and realtime_text(second) == "Straight from upstream."
    interaction = cassette_store.load(tmp_path / "auto.yaml").interactions[0]
    assert interaction.match["family"] == "openai.realtime" and interaction.response.websocket is not None


# -- clients that vanish -----------------------------------------------------------------------------------


SLOW_FIXTURES = {"fixtures": [
    {"match": {"userMessage": "hello"}, "response": {"content": "A paced answer, three characters at a time."},
     "chunkSize": 3, "latency": 15},
]}


async def vanish_mid_answer(target: Target) -> int:
    """Ask for a paced answer, read two of its messages, then drop the TCP
    connection without a close frame. Returns how many messages it saw."""
    url = f"{target.base_url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime" if target.base_url else \
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    ws = await websockets.connect(url, additional_headers={"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"},
                                  **target.websocket_options())
    seen = [json.loads(await ws.recv())]  # session.created
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}}))
    await ws.send(json.dumps({"type": "response.create"}))
    while not any(e["type"].endswith(".delta") for e in seen):  # audio by default: transcript deltas
        seen.append(json.loads(await ws.recv()))
    ws.transport.abort()
    return len(seen)


async def vanishing_clients_and_a_whole_session(target: Target) -> list[Any]:
    """Five clients vanish mid-answer while one holds a whole session."""
    whole = asyncio.create_task(realtime_text_turn(target, "hello"))
    await asyncio.gather(*(vanish_mid_answer(target) for _ in range(5)))
    seen = await whole
    # And a session opened after they vanished works too.
    return seen + await realtime_text_turn(target, "hello")


def test_clients_that_vanish_mid_session_do_not_disturb_the_others(tmp_path: Path, replaying: Any) -> None:
    fixtures = tmp_path / "slow.json"
    fixtures.write_text(json.dumps(SLOW_FIXTURES))
    proxy, _, _ = replaying({"llmock_fixtures": [str(fixtures)]})
    seen = run(vanishing_clients_and_a_whole_session(Target.through(proxy)))
    assert [realtime_text(seen[: i + 1]) for i, e in enumerate(seen) if e["type"] == "response.done"] == [
        "A paced answer, three characters at a time."] * 2
    assert not proxy.errors(), proxy.errors()
    assert not [line for line in proxy.log_lines() if "Traceback" in line or "Error handling" in line]

    server = Serve("--fixtures", str(fixtures))
    try:
        seen = run(vanishing_clients_and_a_whole_session(Target.at(server.url)))
        assert server.process.poll() is None
    finally:
        server.stop()
    assert [e["type"] for e in seen].count("response.done") == 2
    assert not [line for line in server.lines if "Traceback" in line or "ERROR" in line or "Error" in line], \
        server.lines


# -- the environment alone (docs/websocket.md) ---------------------------------------------------------


ENV_ONLY_CLIENT = '''
import asyncio, openai
from google import genai
from google.genai import types

async def main():
    client = openai.AsyncOpenAI(api_key="sk-test-env-openai-0001")  # no base URL, no connection options
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "hello"}]})
        await conn.response.create()
        async for event in conn:
            if event.type == "response.done":
                print("realtime:", event.response.output[0].content[0].text)
                break
    gemini = genai.Client(api_key="sk-test-env-gemini-0002")  # no http options
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    async with gemini.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hello")]), turn_complete=True)
        text = ""
        async for message in session.receive():
            text += message.text or ""
        print("live:", text)

asyncio.run(main())
'''


def test_the_sdks_reach_the_proxy_with_the_environment_alone(fixture_file: Path, replaying: Any,
                                                              tmp_path: Path) -> None:
    """HTTPS_PROXY and SSL_CERT_FILE are all openai-python's Realtime client and
    google-genai's Live client need in regular mode, as docs/websocket.md says."""
    import os
    import subprocess
    import sys

    proxy, _, router = replaying({"llmock_fixtures": [str(fixture_file)]})
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and "API_KEY" not in k}
    env.update(HTTPS_PROXY=proxy.url, SSL_CERT_FILE=str(proxy.ca_cert_path))
    ran = subprocess.run([sys.executable, "-c", ENV_ONLY_CLIENT], env=env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    answer = "Hi! This answer comes from a fixture."
    assert ran.stdout.splitlines() == [f"realtime: {answer}", f"live: {answer}"]
    assert all(a.requested[0] == "127.0.0.1" for a in router.attempts)


# -- a bug in replay ----------------------------------------------------------------------------------------


class BrokenFollower:
    """Stands in for a provider conversation that fails on a client message
    (no real input is known to make one fail: this checks what the engine
    does if one ever does)."""

    def opening(self) -> Any:
        from llmock_proxy.replay.ws_session import Reply

        return Reply()

    def receive(self, message: Any) -> Any:
        raise KeyError("a bug in a provider conversation")


async def test_an_internal_error_closes_that_session_with_1011_and_others_go_on(caplog) -> None:
    from llmock_proxy.cassette.model import Request
    from llmock_proxy.replay.ws_server import run_session
    from llmock_proxy.replay.ws_session import WSReplay, websocket_provider

    upgrade = Request("GET", "wss://api.openai.com/v1/realtime?model=gpt-realtime", {"upgrade": "websocket"})

    async def handler(request: web.Request) -> web.StreamResponse:
        return await run_session(request, WSReplay(websocket_provider(upgrade), upgrade, BrokenFollower()))

    app = web.Application()
    app.router.add_get("/v1/realtime", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"ws://127.0.0.1:{runner.addresses[0][1]}/v1/realtime?model=gpt-realtime"
    try:
        for _ in range(2):  # the server lives on for the next client
            async with websockets.connect(url, proxy=None) as ws:
                await ws.send(json.dumps({"type": "response.create"}))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            assert closed.value.rcvd.reason == "llmock-proxy internal error: KeyError: 'a bug in a provider conversation'"
    finally:
        await runner.cleanup()
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "internal error" in r.getMessage()]
    assert len(errors) == 2 and errors[0].exc_info is not None
    assert "/v1/realtime (openai.realtime)" in errors[0].getMessage()
