"""Slow and idle clients do not hold the engine's connections: a request
that does not arrive whole in time is answered 408 and cut (slowloris, a
Content-Length that lies), an idle keep-alive connection is closed, and
other clients are answered meanwhile."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from llmock_proxy.replay.llmock_format import parse_fixture_entries
from llmock_proxy.replay.session import ReplaySession
from tests.harness.clients import openai_client
from tests.support.replay import EngineThread

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
