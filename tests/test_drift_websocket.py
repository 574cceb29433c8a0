"""The canary on WebSocket sessions the real SDKs recorded: tool-call round
trips of OpenAI Realtime, Responses over WebSocket and Gemini Live.

The sessions are recorded once through the record addon (regular mode, the
SDKs' own WebSocket clients) from the fake upstreams; the canary then
re-sends them to fresh fakes whose answers only differ in values (other
ids, a longer text in more deltas). A tool round trip echoes ids the server
made up (``call_id``, ``previous_response_id``, a Live function call's
``id``): the fakes refuse unknown ones as the services do, so the canary
must echo the live ids, and collect each turn to its end however many
deltas come first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cli import main
from llmock_proxy.mitm.record import Record
from llmock_proxy.mitm.replay import Replay
from tests.fakes import FakeServer, Script, TestPKI, ToolCall
from tests.fakes.gemini_live_ws import GeminiLiveFake
from tests.fakes.openai_realtime_ws import OpenAIRealtimeFake
from tests.harness import InProcessProxy, UpstreamRouter, routes_for
from tests.support.drift import CANARY_ENV, set_canary_env
from tests.support.websocket import (
    Target,
    live_text,
    live_tool_conversation,
    realtime_text,
    realtime_tool_conversation,
    responses_tool_conversation,
)

pytestmark = pytest.mark.timeout(120)

CALL = ToolCall("get_weather", {"city": "Paris"})
LONGER = "A much longer answer this time, in many more pieces than the recording had, with other ids."


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture(scope="module")
def recorded(test_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Realtime, Responses-WS and Live tool round trips, recorded by the record addon."""
    workdir = tmp_path_factory.mktemp("drift-ws")
    openai_fake = OpenAIRealtimeFake()
    openai_fake.queue(Script(text="", tool_calls=[CALL]), Script(text="It is 21 degrees."),
                      Script(text="", tool_calls=[CALL]), Script(text="It is 21 degrees."))
    live_fake = GeminiLiveFake()
    live_fake.queue(Script(text="", tool_calls=[CALL]), Script(text="Paris: 21 degrees."))
    fakes = [FakeServer(openai_fake, pki=test_pki).start(), FakeServer(live_fake, pki=test_pki).start()]
    record = Record()
    try:
        with InProcessProxy(confdir=workdir / "mitm", addons=[record],
                            options={"llmock_cassette_dir": str(workdir), "llmock_cassette": "ws.yaml"},
                            router=UpstreamRouter(routes_for(*fakes)),
                            upstream_trusted_ca=test_pki.ca_cert_path) as proxy:
            target = Target.through(proxy)
            run(realtime_tool_conversation(target))
            run(responses_tool_conversation(target))
            run(live_tool_conversation(target))
            assert record.flush(30)
    finally:
        for fake in fakes:
            fake.stop()
    families = [i.match["family"] for i in cassette_store.load(workdir / "ws.yaml").interactions]
    assert families == ["openai.realtime", "openai.responses_ws", "gemini.live"]
    return workdir / "ws.yaml"


@dataclass
class LiveFakes:
    realtime: OpenAIRealtimeFake
    responses: OpenAIRealtimeFake
    live: GeminiLiveFake
    servers: list[FakeServer]

    def upstream_args(self) -> list[str]:
        realtime, responses, live = self.servers
        return ["--upstream", f"openai.realtime={realtime.url}", "--upstream", f"openai.responses_ws={responses.url}",
                "--upstream", f"gemini.live={live.url}"]


@pytest.fixture
def live(test_pki: TestPKI, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveFakes]:
    """Fresh upstreams answering the same questions in other words (one per
    family, so parallel sessions cannot take each other's scripts)."""
    realtime, responses, gemini = OpenAIRealtimeFake(), OpenAIRealtimeFake(), GeminiLiveFake()
    for fake in (realtime, responses, gemini):
        fake.queue(Script(text="", tool_calls=[CALL]), Script(text=LONGER))
    servers = [FakeServer(f, pki=test_pki).start() for f in (realtime, responses, gemini)]
    set_canary_env(monkeypatch)
    try:
        yield LiveFakes(realtime, responses, gemini, servers)
    finally:
        for server in servers:
            server.stop()


def drift(args: list[str], report: Path) -> tuple[int, dict[str, Any]]:
    code = main(["drift", *args, "--timeout", "10", "--json", str(report)])
    return code, json.loads(report.read_text())


def test_tool_round_trips_are_resent_with_the_ids_the_live_server_made_up(
    recorded: Path, live: LiveFakes, tmp_path: Path
) -> None:
    code, report = drift([str(recorded), *live.upstream_args()], tmp_path / "report.json")
    assert [(r["family"], r["outcome"]) for r in report["results"]] == [
        ("gemini.live", "checked"), ("openai.realtime", "checked"), ("openai.responses_ws", "checked")]
    assert [f for r in report["results"] for f in r["findings"]] == []
    assert code == 0

    # Realtime: the tool output named the call the live server made (the fake refuses others).
    (session,) = live.realtime.sessions
    outputs = [e["item"] for e in session if e["type"] == "conversation.item.create"
               and e["item"]["type"] == "function_call_output"]
    assert len(outputs) == 1 and outputs[0]["call_id"].startswith("call_")
    # Responses: previous_response_id named the live response (the fake refuses others).
    (session,) = live.responses.sessions
    previous = [e.get("previous_response_id") for e in session]
    assert previous[0] is None and previous[1].startswith("resp_")
    # Live: the function response carries the id of the live function call.
    (session,) = live.live.sessions
    response = next(m for m in session if "tool_response" in m or "toolResponse" in m)
    (answer,) = (response.get("tool_response") or response["toolResponse"])["functionResponses"]
    recorded_live = cassette_store.load(recorded).interactions[2].response.websocket
    recorded_ids = {
        call["id"]
        for m in recorded_live.messages if not m.from_client and b"toolCall" in m.payload.to_bytes()
        for call in json.loads(m.payload.to_bytes())["toolCall"]["functionCalls"]
    }
    assert answer["id"].startswith("function-call-") and answer["id"] not in recorded_ids


def test_update_writes_whole_sessions_that_replay_to_the_sdks(
    recorded: Path, live: LiveFakes, tmp_path: Path
) -> None:
    copy = tmp_path / "ws.yaml"
    copy.write_bytes(recorded.read_bytes())
    code, report = drift([str(copy), *live.upstream_args(), "--update"], tmp_path / "report.json")
    assert code == 0, report
    text = copy.read_text()
    assert "sk-test" not in text and CANARY_ENV["OPENAI_API_KEY"] not in text
    assert "sk-test" not in (tmp_path / "report.json").read_text()

    # Every turn was collected to its end (Live's turnComplete after many
    # deltas), with ids that agree: the SDKs replay the refreshed sessions.
    live_session = cassette_store.load(copy).interactions[2].response.websocket
    assert b'"turnComplete": true' in live_session.messages[-1].payload.to_bytes()
    with InProcessProxy(confdir=tmp_path / "mitm", addons=[Replay()],
                        options={"llmock_cassette_dir": "", "llmock_cassettes": [str(copy)],
                                 "llmock_timing": "instant"},
                        router=UpstreamRouter()) as proxy:
        target = Target.through(proxy)
        assert realtime_text(run(realtime_tool_conversation(target))) == LONGER
        completed = [e for e in run(responses_tool_conversation(target)) if e["type"] == "response.completed"]
        assert completed[-1]["response"]["output"][0]["content"][0]["text"] == LONGER
        assert live_text(run(live_tool_conversation(target))) == LONGER
        assert not [line for line in proxy.log_lines() if "websocket replay" in line]


def test_a_turn_ends_on_what_marks_its_last_message_out() -> None:
    from llmock_proxy.cassette.model import Payload, WSMessage
    from llmock_proxy.drift.capture import Turn, ends_turn
    from llmock_proxy.providers.catalog import by_family

    live, openai_realtime = by_family("gemini.live"), by_family("openai.realtime")

    def live_frame(value: Any) -> WSMessage:  # Live: pretty JSON in binary frames, kept exactly
        return WSMessage(False, Payload.from_bytes((json.dumps(value, indent=2) + "\n").encode(), exact=True),
                         binary=True)

    def realtime(kind: str) -> WSMessage:
        return WSMessage(False, Payload.json({"type": kind, "event_id": "event_1"}))

    text = live_frame({"serverContent": {"modelTurn": {"parts": [{"text": "Hi"}]}}})
    # The last chunk of a Live turn may carry text and turnComplete together.
    last = live_frame({"serverContent": {"modelTurn": {"parts": [{"text": "!"}]}, "turnComplete": True},
                       "usageMetadata": {"totalTokenCount": 3}})
    terminator = Turn(None, (text, text, last)).terminator(live)
    assert terminator == ("serverContent", frozenset({"turnComplete"}))
    assert not ends_turn(text, terminator, live)
    assert ends_turn(live_frame({"serverContent": {"turnComplete": True}}), terminator, live)
    assert Turn(None, (text, text)).terminator(live) is None  # nothing marks the end: count instead
    done = Turn(None, (realtime("response.output_text.delta"), realtime("response.output_text.delta"),
                       realtime("response.done"))).terminator(openai_realtime)
    assert done == ("response.done", frozenset()) and ends_turn(realtime("response.done"), done, openai_realtime)


def test_the_providers_say_where_a_websocket_turn_ends() -> None:
    from llmock_proxy.providers.catalog import by_family

    live = by_family("gemini.live")
    assert live.turn_done({"serverContent": {"turnComplete": True}, "usageMetadata": {}})
    assert live.turn_done({"toolCall": {"functionCalls": [{"id": "f1", "name": "get_weather", "args": {}}]}})
    assert not live.turn_done({"serverContent": {"modelTurn": {"parts": [{"text": "Hi"}]}}})
    assert not live.turn_done({"setupComplete": {}})
    realtime, responses = by_family("openai.realtime"), by_family("openai.responses_ws")
    assert realtime.turn_done({"type": "response.done"}) and not realtime.turn_done({"type": "response.text.delta"})
    assert responses.turn_done({"type": "response.completed"}) and responses.turn_done({"type": "error"})
    assert not responses.turn_done({"type": "response.output_text.delta"})
