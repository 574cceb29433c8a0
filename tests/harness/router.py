"""A test-only mitmproxy addon that sends provider hostnames to the local fakes.

Clients keep using the real URLs (https://api.openai.com/v1 ...) and the
flow keeps naming them, so a recorder sees the real host. Only the socket
goes elsewhere:

- ``server_connect``: set ``data.server.address`` to 127.0.0.1 and the fake's
  port; mitmproxy 11.0.2 opens the socket from that address right after the
  hook (``proxy/server.py: open_connection``).
- ``server_connected``: put the original address back. In reverse mode
  mitmproxy derives ``flow.request.host`` and the ``Host`` header from
  ``server.address`` on every request (``HTTPMode.transparent``), so leaving
  127.0.0.1 there would leak into what a recorder sees, and connection reuse
  (which compares addresses) would miss. mitmproxy forbids assigning the
  address of an open connection, so the restore bypasses that guard; the
  socket's real peer stays visible as ``server.peername``.

TLS to the fake still happens (mitmproxy's TLS layer is already on the stack)
with SNI = the real hostname, so the fakes serve a test-CA certificate naming
those hosts and mitmproxy trusts that CA through
``ssl_verify_upstream_trusted_ca`` (``ssl_insecure`` would work as well).
With the default connection strategy (eager) a CONNECT opens the server
connection before TLS is known, so the TLS port is chosen for requested port
443 or a connection already marked TLS; the plain port otherwise.

Every other non-loopback destination is refused (``data.server.error``), so
no test can reach the network, and every attempt is kept in ``attempts`` for
assertions.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mitmproxy import ctx
from mitmproxy.proxy import server_hooks

logger = logging.getLogger(__name__)

ROUTES_OPTION = "test_upstream_routes"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Route:
    """Host pattern (exact name or ``*.suffix``) -> local plain and TLS ports."""

    pattern: str
    plain_port: int | None
    tls_port: int | None

    def matches(self, host: str) -> bool:
        return fnmatch.fnmatchcase(host.lower().rstrip("."), self.pattern.lower())

    def port_for(self, tls: bool) -> int | None:
        return self.tls_port if tls else self.plain_port

    def to_spec(self) -> str:
        """The ``--set test_upstream_routes=`` spelling: ``host=PLAIN/TLS`` (``-`` for none)."""
        plain = "-" if self.plain_port is None else str(self.plain_port)
        tls = "-" if self.tls_port is None else str(self.tls_port)
        return f"{self.pattern}={plain}/{tls}"

    @classmethod
    def parse(cls, spec: str) -> Route:
        try:
            pattern, ports = spec.split("=", 1)
            plain, tls = ports.split("/", 1)
            return cls(
                pattern.strip(),
                None if plain.strip() == "-" else int(plain),
                None if tls.strip() == "-" else int(tls),
            )
        except ValueError:
            raise ValueError(
                f"{ROUTES_OPTION}: bad route {spec!r}, expected host=PLAIN_PORT/TLS_PORT (- for none)"
            ) from None


def routes_for(*fakes: object) -> list[Route]:
    """Routes for started fake servers (anything with ``hosts``, ``port``, ``tls_port``)."""
    return [
        Route(host, fake.port, fake.tls_port)
        for fake in fakes
        for host in fake.hosts
    ]


@dataclass(frozen=True)
class ConnectAttempt:
    """One server connection mitmproxy tried to open."""

    requested: tuple[str, int]
    routed_to: tuple[str, int] | None  # None: refused
    tls: bool


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UpstreamRouter:
    """mitmproxy addon: re-point server connections for known hosts to 127.0.0.1."""

    def __init__(self, routes: Iterable[Route] = (), *, block_unrouted: bool = True) -> None:
        self._routes: tuple[Route, ...] = tuple(routes)
        self._option_routes: tuple[Route, ...] = ()
        self.block_unrouted = block_unrouted
        self.attempts: list[ConnectAttempt] = []
        self._original_addresses: dict[str, tuple[str, int]] = {}

    def add_routes(self, routes: Iterable[Route]) -> None:
        self._routes = self._routes + tuple(routes)  # one atomic swap, safe while running

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes + self._option_routes

    # -- mitmproxy hooks -------------------------------------------------------------------

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            ROUTES_OPTION,
            Sequence[str],
            [],
            "Test routes host=PLAIN_PORT/TLS_PORT: server connections for host go to 127.0.0.1.",
        )

    def configure(self, updated: set[str]) -> None:
        if ROUTES_OPTION in updated:
            self._option_routes = tuple(Route.parse(spec) for spec in getattr(ctx.options, ROUTES_OPTION))

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is None or data.server.error:
            return
        host, port = data.server.address[0], data.server.address[1]
        tls = bool(data.server.tls) or port == 443
        route = next((r for r in self.routes if r.matches(host)), None)
        if route is not None:
            local_port = route.port_for(tls)
            if local_port is None:
                self._refuse(data, host, port, tls, f"the fake for {host} has no {'TLS' if tls else 'plain'} port")
                return
            self._original_addresses[data.server.id] = (host, port)
            data.server.address = (LOOPBACK, local_port)
            self.attempts.append(ConnectAttempt((host, port), (LOOPBACK, local_port), tls))
        elif is_loopback(host):
            self.attempts.append(ConnectAttempt((host, port), (host, port), tls))
        elif self.block_unrouted:
            self._refuse(data, host, port, tls, f"no fake upstream routed for {host}; tests never leave 127.0.0.1")
        else:
            self.attempts.append(ConnectAttempt((host, port), (host, port), tls))

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        original = self._original_addresses.pop(data.server.id, None)
        if original is not None:
            # Server.__setattr__ refuses address changes on open connections; see the module docstring.
            object.__setattr__(data.server, "address", original)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._original_addresses.pop(data.server.id, None)

    def _refuse(
        self, data: server_hooks.ServerConnectionHookData, host: str, port: int, tls: bool, reason: str
    ) -> None:
        data.server.error = f"test router refused {host}:{port}: {reason}"
        logger.warning(data.server.error)
        self.attempts.append(ConnectAttempt((host, port), None, tls))
