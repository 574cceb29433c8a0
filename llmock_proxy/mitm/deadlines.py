"""Deadlines for slow and idle clients of the replay and record addons.

mitmproxy keeps a client connection open as long as anything moves on it:
its only timeout (``tcp_timeout``, 600 s; a fixed 600 s in mitmproxy 11)
starts again with every byte. A client that sends its request a byte at a
time (slowloris), or a body shorter than its Content-Length, holds its
connection, and a file descriptor, for ever; a thousand of them lock every
other client out. :class:`Deadlines` gives the addons' client connections
the deadlines ``llmock-proxy serve`` has (nginx's defaults):

* ``llmock_request_timeout`` (60 s): a request must arrive whole, head and
  body, within this many seconds: the first one on a connection counted
  from when the connection opened (a CONNECT tunnel and its TLS handshake
  included), a later one from when its head arrived. Otherwise the
  connection is cut; a client speaking plain HTTP is answered 408 first. A
  TLS client's connection is only closed: mitmproxy offers no way to answer
  inside its TLS session from outside the HTTP layer.
* ``llmock_idle_timeout`` (75 s): a keep-alive connection that sends no
  request head for this long after its last answer is closed. Until a head
  is whole mitmproxy has no flow for it, so bytes of a head and silence
  look alike here: a slowloris on a kept-alive connection is cut by this
  deadline.
* The answer is never timed. From the moment a request is whole until its
  answer ends (a replayed stream paced by its recorded timing, a long
  upstream stream while recording) and for the rest of a connection that
  became something else than HTTP (a WebSocket session, a raw TCP tunnel,
  a passed-through host), the connection is left to mitmproxy, whose
  ``tcp_timeout`` still closes one where nothing at all moves.

Lowering ``tcp_timeout`` instead would not do: it also times the wait for an
answer (a reasoning model may think for minutes before its first byte) and
mitmproxy 11 has no such option.

Hooks only note times; one sweep on a loop timer (every quarter of the
shorter deadline) checks the connections, as ``serve``'s server does. Both
addons load one :class:`Deadlines` each (as a sub-addon); when both scripts
are loaded, the first one registered does the work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import traverse
from mitmproxy.connection import Client
from mitmproxy.proxy import layer, layers

from llmock_proxy.fdlimit import raise_open_file_limit
from llmock_proxy.mitm.options import refusing

log = logging.getLogger(__name__)

# Seconds, as serve's HTTP server has them (llmock_proxy.replay.http_server).
REQUEST_TIMEOUT = 60
IDLE_TIMEOUT = 75


@dataclass
class Cut:
    """A connection to close: why, and whether to answer 408 first."""

    reason: str
    answer_408: bool


@dataclass
class Connection:
    """What the deadlines need to know of one client connection."""

    client: Client
    since: float  # loop time it opened, or its last exchange ended
    answered: bool = False  # an exchange ended on it: kept alive from then on
    heads: int = 0  # request heads seen
    # Requests whose head arrived and whose body has not: flow, clock start.
    receiving: dict[str, tuple[http.HTTPFlow, float]] = field(default_factory=dict)
    # Requests that arrived whole and whose answer has not ended.
    answering: set[str] = field(default_factory=set)
    tunnel: bool = False  # a CONNECT was answered and no plain HTTP seen in it since
    untimed: bool = False  # no longer HTTP (WebSocket, raw TCP): not ours to time

    def check(self, now: float, request_timeout: float, idle_timeout: float) -> Cut | None:
        """From the sweep: the connection to cut, if one of its deadlines passed."""
        if self.untimed:
            return None
        for flow_id, (flow, start) in list(self.receiving.items()):
            if flow.request.timestamp_end is not None:  # whole: mitmproxy stamps it before any hook
                del self.receiving[flow_id]
                self.answering.add(flow_id)
            elif request_timeout and now - start > request_timeout:
                return self._cut(f"the request did not arrive whole within {request_timeout:g} s")
        if self.receiving or self.answering:
            return None
        waited = now - self.since
        if self.answered:
            if idle_timeout and waited > idle_timeout:
                return Cut(f"idle for {idle_timeout:g} s after its last answer", answer_408=False)
        elif request_timeout and waited > request_timeout:
            return self._cut(f"the request did not arrive whole within {request_timeout:g} s")
        return None

    def _cut(self, reason: str) -> Cut:
        return Cut(reason, answer_408=not self.client.tls and not self.tunnel)


class Deadlines:
    """Cuts client connections whose request is too slow to arrive or which
    sit idle too long; see the module docstring."""

    def __init__(self) -> None:
        # mitmproxy refuses two addons of one name: both addons carry one.
        self.name = f"llmock_deadlines_{id(self):x}"
        self.request_timeout = float(REQUEST_TIMEOUT)
        self.idle_timeout = float(IDLE_TIMEOUT)
        self.connections: dict[str, Connection] = {}
        self._active: bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None

    # -- options -------------------------------------------------------------------------------

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "llmock_request_timeout",
            int,
            REQUEST_TIMEOUT,
            "Seconds a client has to send a whole request (head and body), counted from when its "
            "connection opened (the first request) or from its head (a later one); a slower client's "
            "connection is cut, a plain-HTTP client answered 408 first. 0: no limit. Answers are "
            "never timed.",
        )
        loader.add_option(
            "llmock_idle_timeout",
            int,
            IDLE_TIMEOUT,
            "Seconds a keep-alive client connection may wait for its next request after an answer "
            "before it is closed. 0: no limit (mitmproxy's tcp_timeout still applies).",
        )
        raise_open_file_limit()

    @refusing
    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        negative = [f"{name}: {getattr(opts, name)} is negative (0 turns it off)"
                    for name in ("llmock_request_timeout", "llmock_idle_timeout")
                    if name in updated and getattr(opts, name) < 0]
        if negative:
            raise exceptions.OptionsError("\n".join(negative))
        if {"llmock_request_timeout", "llmock_idle_timeout"} & updated:
            self.request_timeout = float(opts.llmock_request_timeout)
            self.idle_timeout = float(opts.llmock_idle_timeout)
            if self._loop is not None:
                self._arm()

    def _is_active(self) -> bool:
        """The first Deadlines in mitmproxy's addon chain does the work."""
        if self._active is None:
            first = next((a for a in traverse(ctx.master.addons.chain) if isinstance(a, Deadlines)), self)
            self._active = first is self
        return self._active

    # -- lifecycle -----------------------------------------------------------------------------

    def running(self) -> None:
        if self._is_active():
            self._loop = asyncio.get_running_loop()
            self._arm()

    def done(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._loop = None
        self.connections.clear()

    def _arm(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        deadlines = [t for t in (self.request_timeout, self.idle_timeout) if t > 0]
        if deadlines and self._loop is not None:
            self._sweep = self._loop.call_later(max(0.01, min(deadlines) / 4), self.sweep)

    def sweep(self) -> None:
        """Cut the connections whose deadline passed."""
        assert self._loop is not None
        now = self._loop.time()
        for connection in list(self.connections.values()):
            cut = connection.check(now, self.request_timeout, self.idle_timeout)
            if cut is None:
                continue
            self.connections.pop(connection.client.id, None)
            peer = _peer(connection.client)
            if cut.answer_408:
                log.warning("llmock: answered 408 to %s and closed its connection: %s", peer, cut.reason)
            elif cut.reason.startswith("idle"):
                log.debug("llmock: closed the connection of %s: %s", peer, cut.reason)
            else:
                log.warning("llmock: closed the connection of %s: %s", peer, cut.reason)
            close_client(connection.client, _answer_408(cut.reason) if cut.answer_408 else None)
        self._arm()

    # -- connection and flow hooks ---------------------------------------------------------------

    def client_connected(self, client: Client) -> None:
        if client.transport_protocol == "tcp" and self._is_active():
            self.connections[client.id] = Connection(client, asyncio.get_running_loop().time())

    def client_disconnected(self, client: Client) -> None:
        self.connections.pop(client.id, None)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """A connection relayed as raw TCP (passthrough, a non-HTTP tunnel) is not HTTP any more."""
        if isinstance(nextlayer.layer, (layers.TCPLayer, layers.UDPLayer)):
            self._untimed(nextlayer.context.client)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        connection = self.connections.get(flow.client_conn.id)
        if connection is not None:
            connection.tunnel = True

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        connection = self.connections.get(flow.client_conn.id)
        if connection is None:
            return
        first = connection.heads == 0 and not connection.answered
        connection.heads += 1
        if not flow.client_conn.tls:
            connection.tunnel = False  # plain HTTP inside: a 408 can be read
        start = connection.since if first else asyncio.get_running_loop().time()
        connection.receiving[flow.id] = (flow, start)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.status_code == 101:
            self._untimed(flow.client_conn)  # a WebSocket session (or a tunnel) follows
        self._ended(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._untimed(flow.client_conn)

    def tcp_start(self, flow: Any) -> None:
        self._untimed(flow.client_conn)

    def _untimed(self, client: Client) -> None:
        connection = self.connections.get(client.id)
        if connection is not None:
            connection.untimed = True

    def _ended(self, flow: http.HTTPFlow) -> None:
        """An exchange ended: when none is left, the connection waits for its next request."""
        connection = self.connections.get(flow.client_conn.id)
        if connection is None:
            return
        connection.receiving.pop(flow.id, None)
        connection.answering.discard(flow.id)
        if not connection.receiving and not connection.answering:
            connection.answered = True
            connection.since = asyncio.get_running_loop().time()


def close_client(client: Client, answer: bytes | None = None) -> bool:
    """Close a live client connection of this mitmproxy, writing ``answer``
    to it first as it is; False when mitmproxy no longer holds it.

    mitmproxy has no public call for this. Its ``proxyserver`` addon keeps
    each live connection's handler (``connections``, by client id); a
    handler closes a connection by cancelling the task that reads it, which
    is what its own inactivity timeout does (``ConnectionHandler.on_timeout``).
    ``transports`` is that handler's internal table of connections; this is
    the one place that reaches into it (the same in mitmproxy 11 and 12;
    tests/test_slow_clients.py checks it on both).
    """
    proxyserver: Any = ctx.master.addons.get("proxyserver")
    handler = proxyserver.connections.get(client.id) if proxyserver is not None else None
    io = handler.transports.get(handler.client) if handler is not None else None
    if io is None or io.handler is None:
        return False
    if answer and io.writer is not None and not io.writer.is_closing():
        io.writer.write(answer)
        io.writer.close()  # flushes the answer; mitmproxy writes nothing after it
    io.handler.cancel("llmock: deadline passed")
    return True


def _answer_408(reason: str) -> bytes:
    """The 408 serve sends (llmock_proxy.replay.http_server), with the connection closed."""
    body = json.dumps({"error": {"message": f"llmock-proxy: {reason}", "type": "invalid_request_error"}}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _peer(client: Client) -> str:
    if client.peername:
        return f"{client.peername[0]}:{client.peername[1]}"
    return "a client"
