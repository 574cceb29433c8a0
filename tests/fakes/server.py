"""Run a fake provider's aiohttp app on 127.0.0.1 in a background thread.

The server has its own event loop in its own thread, so a test can call a
synchronous SDK in the test thread (or an async one in pytest's loop) while
the fake answers. It always listens on plain HTTP and, given a
:class:`~tests.fakes.tls.TestPKI`, also on HTTPS with a certificate naming the
provider's real hostnames (what mitmproxy connects to in regular mode).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider, RecordedRequest, Script
from tests.fakes.tls import TestPKI

_START_TIMEOUT = 10.0
# In-flight handlers (e.g. a deliberately slow stream) get this long at stop.
_SHUTDOWN_TIMEOUT = 0.5


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class FakeServer:
    """A started fake upstream: ``url`` (http), ``tls_url`` (https, when a PKI is given)."""

    def __init__(
        self,
        provider: FakeProvider,
        *,
        pki: TestPKI | None = None,
        extra_hostnames: tuple[str, ...] = (),
    ) -> None:
        self.provider = provider
        self._pki = pki
        self._hostnames = tuple(h for h in (*provider.hosts, *extra_hostnames) if "*" not in h[1:])
        self._wildcards = tuple(h for h in (*provider.hosts, *extra_hostnames) if h.startswith("*."))
        self._plain_sock: socket.socket | None = None
        self._tls_sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.Server] = []

    # -- what tests use -----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def hosts(self) -> tuple[str, ...]:
        return self.provider.hosts

    @property
    def port(self) -> int:
        assert self._plain_sock is not None, "FakeServer is not started"
        return self._plain_sock.getsockname()[1]

    @property
    def tls_port(self) -> int | None:
        return self._tls_sock.getsockname()[1] if self._tls_sock is not None else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str | None:
        return f"https://127.0.0.1:{self.tls_port}" if self.tls_port is not None else None

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.provider.requests

    @property
    def script(self) -> Script:
        return self.provider.script

    @script.setter
    def script(self, value: Script) -> None:
        self.provider.script = value

    def queue(self, *scripts: Script) -> None:
        self.provider.queue(*scripts)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeServer:
        if self._thread is not None:
            raise RuntimeError(f"fake {self.name} server already started")
        self._plain_sock = _listening_socket()
        ssl_context = None
        if self._pki is not None:
            names = self._hostnames + self._wildcards
            ssl_context = self._pki.issue(names).server_context()
            self._tls_sock = _listening_socket()
        self._thread = threading.Thread(
            target=self._serve, args=(ssl_context,), name=f"fake-{self.name}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"fake {self.name} server did not start within {_START_TIMEOUT}s")
        if self._startup_error is not None:
            raise RuntimeError(f"fake {self.name} server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_START_TIMEOUT)
        self._thread = None
        for sock in (self._plain_sock, self._tls_sock):
            if sock is not None:
                sock.close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.url}" if self._plain_sock is not None else "not started"
        return f"<FakeServer {self.name} {state}>"

    # -- the server thread ------------------------------------------------------------------------

    def _serve(self, ssl_context: Any) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._start_sites(ssl_context))
        except BaseException as exc:  # reported to the starting thread
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for server in self._servers:
                server.close()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            for server in self._servers:
                # A TLS connection's close waits for the peer's close_notify;
                # one still waiting would be collected unclosed after the loop
                # is gone (Python 3.13 then prints an ignored TypeError).
                abort = getattr(server, "abort_clients", None)  # Python 3.13+
                if abort is not None:
                    abort()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_sites(self, ssl_context: Any) -> None:
        runner = web.AppRunner(self.provider.app(), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        self._runner = runner
        assert self._plain_sock is not None and runner.server is not None
        # Servers of our own rather than aiohttp sites: stopping must reach their connections.
        loop = asyncio.get_running_loop()
        self._servers.append(await loop.create_server(runner.server, sock=self._plain_sock))
        if self._tls_sock is not None:
            self._servers.append(await loop.create_server(runner.server, sock=self._tls_sock, ssl=ssl_context))
