"""``--block-network``: a test's connections to anything but this machine fail, and fail the test.

``socket.socket.connect`` and ``connect_ex`` are patched for the duration of
the test (what ``socket.create_connection``, httpx/httpcore, requests/urllib3,
aiohttp and asyncio's ``sock_connect`` all end in), as pytest-recording does.
A connection to a non-loopback address is refused before any packet leaves,
and the attempt is remembered: SDKs wrap connection errors and retry, and
code under test may swallow them, so the test is failed afterwards from what
was remembered, naming host:port, not from an exception that may never
reach pytest.

Loopback (127.0.0.0/8, ::1, ``localhost``) and non-IP sockets (Unix domain)
are allowed; a host name is refused without being resolved (no DNS query
leaves either). Threads named in ``allowed_threads`` are exempt: the replay
engine's own thread forwards to the real upstream when a test records.
Child processes are not covered (they do not share this patch).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

PATCHED = ("connect", "connect_ex")


class NetworkBlocked(ConnectionRefusedError):
    """Raised instead of connecting; an OSError, as SDKs expect from a failed connect."""


@dataclass(frozen=True)
class BlockedConnection:
    host: str
    port: int | None
    thread: str

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host

    def describe(self) -> str:
        return f"{self.address} (thread {self.thread})"


def is_local(host: str) -> bool:
    if host in ("localhost", "localhost.", ""):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a scoped IPv6 address
    except ValueError:
        return host.endswith(".localhost")  # a host name is not resolved here
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _split(address: Any) -> tuple[str, int | None] | None:
    """(host, port) of an INET/INET6 address; None for other families."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        port = address[1] if len(address) > 1 and isinstance(address[1], int) else None
        return address[0], port
    return None


@dataclass
class NetworkBlocker:
    """Installs the socket patch; :attr:`attempts` are the connections refused."""

    allowed_threads: frozenset[int] = frozenset()
    attempts: list[BlockedConnection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    # The class's own attributes before the patch (None: inherited from _socket.socket).
    _saved: dict[str, Any] | None = field(default=None, init=False)

    def refuse(self, sock: socket.socket, address: Any) -> BlockedConnection | None:
        """The refused attempt, recorded; None when the connection may go ahead."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        split = _split(address)
        if split is None or is_local(split[0]):
            return None
        if threading.get_ident() in self.allowed_threads:
            return None
        attempt = BlockedConnection(split[0], split[1], threading.current_thread().name)
        with self._lock:
            self.attempts.append(attempt)
        return attempt

    def install(self) -> NetworkBlocker:
        if self._saved is not None:
            return self
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        blocker = self

        def connect(sock: socket.socket, address: Any) -> None:
            attempt = blocker.refuse(sock, address)
            if attempt is not None:
                raise NetworkBlocked(
                    errno.ECONNREFUSED,
                    f"llmock --block-network: connection to {attempt.address} refused "
                    "(not loopback; record it into the test's cassette instead)",
                )
            return original_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if blocker.refuse(sock, address) is not None:
                return errno.ECONNREFUSED
            return original_connect_ex(sock, address)

        self._saved = {name: vars(socket.socket).get(name) for name in PATCHED}
        socket.socket.connect = connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
        return self

    def uninstall(self) -> None:
        if self._saved is None:
            return
        for name, own in self._saved.items():
            if own is None:
                delattr(socket.socket, name)  # inherited again, as before
            else:
                setattr(socket.socket, name, own)
        self._saved = None
