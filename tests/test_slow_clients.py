"""Slow and idle clients do not hold the engine's connections, nor those of
the replay and record addons: a request that does not arrive whole in time
is answered 408 and cut (slowloris, a Content-Length that lies), an idle
keep-alive connection is closed, answers (paced streams) are never cut, and
other clients are answered meanwhile."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.genai import types as genai_types
from mitmproxy import exceptions

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.mitm.record import Record
from llmock_proxy.mitm.replay import Replay
from llmock_proxy.replay.llmock_format import parse_fixture_entries
from llmock_proxy.replay.session import ReplaySession
from tests.fakes import FakeServer, OpenAIFake, Script
from tests.harness import InProcessProxy, UpstreamRouter
from tests.harness.clients import openai_client
from tests.support.replay import EngineThread
from tests.support.websocket import Target
from tests.test_ws_fixture_live import FIXTURES as LIVE_FIXTURES
from tests.test_ws_fixture_live import MODEL as LIVE_MODEL

ROOT = Path(__file__).resolve().parents[1]

FIXTURES = [{"match": {"userMessage": "ping"}, "response": {"content": "pong"}}]


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    session = ReplaySession(parse_fixture_entries({"fixtures": FIXTURES}, "slow.json"))
    with EngineThread(session, request_timeout=0.5, idle_timeout=0.8) as running:
        yield running


def connect(engine: EngineThread) -> socket.socket:
    return socket.create_connection(("127.0.0.1", engine.engine.port or 0), timeout=10)


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def ask(engine: EngineThread) -> str:
    client = openai_client(base_url=engine.url + "/v1")
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
    return answer.choices[0].message.content or ""


def test_a_head_that_never_ends_is_answered_408_and_cut(engine: EngineThread) -> None:
    with connect(engine) as slow:
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Dribble: a")
        answer = read_to_close(slow)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert "did not arrive whole" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"]


def test_a_body_shorter_than_its_content_length_is_answered_408_and_cut(engine: EngineThread) -> None:
    with connect(engine) as liar:
        liar.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":")
        assert read_to_close(liar).startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_is_closed(engine: EngineThread) -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "ping"}]}).encode()
    with connect(engine) as idle:
        idle.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer = read_to_close(idle)  # the answer, then the close once the connection sat idle
    assert answer.startswith(b"HTTP/1.1 200 ") and b"pong" in answer


def test_other_clients_are_answered_while_slow_ones_hang_on(engine: EngineThread) -> None:
    slow = [connect(engine) for _ in range(50)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        assert [ask(engine) for _ in range(5)] == ["pong"] * 5
        for sock in slow:
            assert read_to_close(sock).startswith(b"HTTP/1.1 408 ")
        assert ask(engine) == "pong"
    finally:
        for sock in slow:
            sock.close()


# -- the replay and record addons (mitmproxy) ---------------------------------------------------------

ADDON_TIMEOUTS = {"llmock_request_timeout": 1, "llmock_idle_timeout": 1}  # seconds, the options' unit
SLOW_WORDS = "one two three four five six seven eight"
ADDON_FIXTURES = FIXTURES + [
    # Paced well past the deadlines: a chunk every 250 ms, ~3 s in all.
    {"match": {"userMessage": "slowly"}, "response": {"content": SLOW_WORDS}, "chunkSize": 4,
     "streamingProfile": {"ttft": 100, "tps": 4}},
]
ABSOLUTE = b"http://api.openai.com/v1/chat/completions"
PING = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}).encode()


@dataclass
class AddonUnderTest:
    proxy: InProcessProxy
    fake: FakeServer | None  # the upstream the record addon forwards to

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)

    def ask(self) -> str:
        client = openai_client(proxy=self.proxy)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
        return answer.choices[0].message.content or ""


@pytest.fixture(params=["replay", "record"])
def addon(request: pytest.FixtureRequest, tmp_path: Path, proxy: Any, fake_server: Any) -> AddonUnderTest:
    """The replay addon answering from fixtures, or the record addon forwarding to the fake OpenAI
    (answering "pong"), in regular mode with one-second deadlines."""
    if request.param == "replay":
        fixtures = tmp_path / "fixtures.json"
        fixtures.write_text(json.dumps({"fixtures": ADDON_FIXTURES}))
        options = {"llmock_cassette_dir": "", "llmock_fixtures": [str(fixtures)], **ADDON_TIMEOUTS}
        return AddonUnderTest(proxy(addons=[Replay()], options=options), None)
    fake = fake_server(OpenAIFake(Script(text="pong")))
    options = {"llmock_cassette_dir": str(tmp_path / "cassettes"), "llmock_cassette": "slow.yaml", **ADDON_TIMEOUTS}
    return AddonUnderTest(proxy(addons=[Record()], options=options, fakes=[fake]), fake)


def read_to_close_or_reset(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_addon_a_head_that_never_ends_is_answered_408_and_cut(addon: AddonUnderTest) -> None:
    with addon.connect() as slow:
        slow.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nX-Dribble: a")
        answer = read_to_close_or_reset(slow)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert "did not arrive whole" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"]
    assert addon.fake is None or addon.fake.requests == []


def test_addon_a_body_shorter_than_its_content_length_is_answered_408_and_cut(addon: AddonUnderTest) -> None:
    with addon.connect() as liar:
        liar.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"model\":")
        assert read_to_close_or_reset(liar).startswith(b"HTTP/1.1 408 ")
    assert addon.fake is None or addon.fake.requests == []


def test_addon_a_tunnel_that_never_sends_its_request_is_closed(addon: AddonUnderTest) -> None:
    """After CONNECT the client owes a TLS handshake: no 408 is written into it, the connection is closed."""
    with addon.connect() as slow:
        slow.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        answer = read_to_close_or_reset(slow)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"408" not in answer


def test_addon_an_idle_keep_alive_connection_is_closed(addon: AddonUnderTest) -> None:
    with addon.connect() as idle:
        idle.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer sk-test-slow\r\nContent-Length: %d\r\n\r\n" % len(PING) + PING)
        answer = read_to_close_or_reset(idle)  # the answer, then the close once the connection sat idle
    assert answer.startswith(b"HTTP/1.1 200 ") and b"pong" in answer and b"408" not in answer


def test_addon_a_slowloris_after_an_answer_is_cut(addon: AddonUnderTest) -> None:
    with addon.connect() as slow:
        slow.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer sk-test-slow\r\nContent-Length: %d\r\n\r\n" % len(PING) + PING)
        slow.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nX-Dribble: a")
        answer = read_to_close_or_reset(slow)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1


def test_addon_other_clients_are_answered_while_slow_ones_hang_on(addon: AddonUnderTest) -> None:
    slow = [addon.connect() for _ in range(50)]
    try:
        for index, sock in enumerate(slow):
            if index % 2:  # half never finish the head, half lie about the body's length
                sock.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nX-Dribble: a")
            else:
                sock.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 10\r\n\r\n{")
        assert [addon.ask() for _ in range(5)] == ["pong"] * 5
        for sock in slow:
            assert read_to_close_or_reset(sock).startswith(b"HTTP/1.1 408 ")
        assert addon.ask() == "pong"
    finally:
        for sock in slow:
            sock.close()


def test_addon_a_paced_replayed_stream_longer_than_the_deadlines_is_not_cut(tmp_path: Path, proxy: Any) -> None:
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(json.dumps({"fixtures": ADDON_FIXTURES}))
    options = {"llmock_cassette_dir": "", "llmock_fixtures": [str(fixtures)], **ADDON_TIMEOUTS}
    running = proxy(addons=[Replay()], options=options)
    client = openai_client(proxy=running)
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "slowly"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    lasted = time.monotonic() - started
    assert text == SLOW_WORDS
    # The premise, not a timing target: the stream outlived both deadlines.
    assert lasted > 2 * max(ADDON_TIMEOUTS.values()), lasted


def test_addon_a_long_upstream_stream_is_recorded_whole(
    tmp_path: Path, proxy: Any, fake_server: Any
) -> None:
    fake = fake_server(OpenAIFake(Script(text=SLOW_WORDS, first_event_delay=0.3, event_delay=0.3)))
    record = Record()
    options = {"llmock_cassette_dir": str(tmp_path), "llmock_cassette": "long.yaml", **ADDON_TIMEOUTS}
    running = proxy(addons=[record], options=options, fakes=[fake])
    client = openai_client(proxy=running)
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "slowly"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    lasted = time.monotonic() - started
    assert text == SLOW_WORDS
    assert lasted > 2 * max(ADDON_TIMEOUTS.values()), lasted  # the premise: it outlived the deadlines
    assert record.flush(30)
    (interaction,) = cassette_store.load(tmp_path / "long.yaml").interactions
    assert (interaction.summary or {}).get("text") == SLOW_WORDS


def test_a_negative_deadline_is_refused(tmp_path: Path, proxy: Any) -> None:
    running = proxy(addons=[Replay()], options={"llmock_cassette_dir": ""})
    with pytest.raises(exceptions.OptionsError, match="llmock_request_timeout"):
        running.set_options(llmock_request_timeout=-1)


def test_both_addons_loaded_cut_once(tmp_path: Path, proxy: Any) -> None:
    """Both scripts loaded together: no clash of names or options, one of them does the cutting."""
    running = proxy(addons=[Record(), Replay()], options={"llmock_cassette_dir": "", **ADDON_TIMEOUTS})
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as liar:
        liar.sendall(b"POST " + ABSOLUTE + b" HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 10\r\n\r\n{")
        answer = read_to_close_or_reset(liar)
    assert answer.startswith(b"HTTP/1.1 408 ") and answer.count(b"HTTP/1.1 ") == 1
    assert sum("answered 408" in line for line in running.log_lines()) == 1


# -- the open-file limit ---------------------------------------------------------------------------------

RAISE_LIMIT = """
import resource, sys
sys.path.insert(0, sys.argv[1])
from llmock_proxy.fdlimit import raise_open_file_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
raise_open_file_limit()
print(*resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    out = subprocess.run([sys.executable, "-c", RAISE_LIMIT, str(ROOT)], capture_output=True, text=True, check=True)
    soft, hard = (int(n) for n in out.stdout.split())
    assert soft == hard or (hard == resource.RLIM_INFINITY and soft > 256)


def test_addon_a_websocket_session_idle_past_the_deadlines_is_not_cut(tmp_path: Path, proxy: Any) -> None:
    """A Gemini Live session replayed through the addon sits idle longer than both deadlines between turns."""
    fixtures = tmp_path / "live.json"
    fixtures.write_text(json.dumps(LIVE_FIXTURES))
    options = {"llmock_cassette_dir": "", "llmock_fixtures": [str(fixtures)], "llmock_timing": "instant",
               **ADDON_TIMEOUTS}
    target = Target.through(proxy(addons=[Replay()], options=options, router=UpstreamRouter()))

    async def two_turns() -> list[str]:
        answers = []
        config = genai_types.LiveConnectConfig(response_modalities=[genai_types.Modality.TEXT])
        async with target.genai().aio.live.connect(model=LIVE_MODEL, config=config) as session:
            for pause in (0.0, 2.5 * max(ADDON_TIMEOUTS.values())):
                await asyncio.sleep(pause)  # the premise: nothing moves on the connection past both deadlines
                await session.send_client_content(
                    turns=genai_types.Content(role="user", parts=[genai_types.Part(text="hello")]), turn_complete=True
                )
                text = ""
                async for message in session.receive():  # ends after turnComplete
                    turn = message.server_content.model_turn if message.server_content else None
                    text += "".join(part.text or "" for part in (turn.parts or [])) if turn else ""
                answers.append(text)
        return answers

    assert asyncio.run(asyncio.wait_for(two_turns(), 30)) == ["Hi from a Live fixture!"] * 2
