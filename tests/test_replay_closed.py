"""Replay is closed to the network: the replay addon connects nowhere but its
engine (not even for a tunnel of another protocol), the addons listen on
loopback unless told otherwise, and parked plans cannot be guessed."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.replay.plan import Plan
from llmock_proxy.replay.server import ReplayEngine
from llmock_proxy.replay.session import ReplaySession
from tests.harness.mitmdump import MitmdumpProcess
from tests.test_replay_addon import start_replay, stopping  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]


class Listener:
    """A TCP listener on 127.0.0.1 counting who connects (standing in for any destination)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    target = Listener()
    yield target
    target.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_a_tunnel_of_another_protocol_is_never_connected(
    tmp_path: Path, listener: Listener, stopping: list[Any]  # noqa: F811
) -> None:
    proxy, _, _ = start_replay(tmp_path, {})
    stopping.append(proxy)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        client.sendall(f"CONNECT 127.0.0.1:{listener.port} HTTP/1.1\r\nHost: 127.0.0.1:{listener.port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        client.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")  # neither HTTP nor TLS: relayed as raw TCP by default
        read_all(client)  # the proxy closes the tunnel
    assert listener.accepted == 0
    assert any("replay mode never connects out" in line for line in proxy.log_lines())


def test_the_replay_addon_listens_on_loopback_unless_told(tmp_path: Path) -> None:
    class Unbound(MitmdumpProcess):
        def command(self) -> list[str]:
            args = super().command()
            at = args.index("--listen-host")
            return args[:at] + args[at + 2:]  # as a user runs it: no --listen-host

    proxy = Unbound(confdir=tmp_path / "mitm", scripts=[ROOT / "addons" / "replay.py"], use_router=False)
    proxy.start()
    try:
        # mitmproxy 12 brings servers up before it loads scripts: they are brought up again on loopback.
        deadline = time.monotonic() + 30
        while re.findall(r"listening at (\S+):(\d+)\.", proxy.output)[-1][0] != "127.0.0.1":
            assert time.monotonic() < deadline, proxy.output
            time.sleep(0.05)
        listening = re.findall(r"listening at (\S+):(\d+)\.", proxy.output)
        assert listening[-1] == ("127.0.0.1", str(proxy.port))  # the same port, on loopback only
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5):
            pass
    finally:
        proxy.stop()


def test_parked_plans_have_unguessable_tokens() -> None:
    engine = ReplayEngine(ReplaySession())
    tokens = {engine.park(Plan(200, [])) for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(token) >= 20 for token in tokens)  # >= 128 bits, not a counter
    assert not any(token.isdigit() or token[1:].isdigit() for token in tokens)
