"""The replay engine's own HTTP/1.1 server: plans on the wire without a web framework.

aiohttp's web layer (request objects, a task per request, response
objects) cost a fixture answer more than matching and rendering it did.
Here an :class:`asyncio.Protocol` reads requests with the sans-IO
:class:`~llmock_proxy.wire.http1.RequestParser`, asks the engine what
answers each (:meth:`ReplayEngine.dispatch
<llmock_proxy.replay.server.ReplayEngine.dispatch>`) and writes the
:class:`~llmock_proxy.replay.plan.Plan` itself:

* an answer due at once (no latency, no stream pacing) is written from
  ``data_received``, head and body in one write: no task, no timer;
* anything timed walks :func:`~llmock_proxy.replay.schedule.steps` (the
  same schedule aiohttp's writer uses) on loop timers: each step at its
  deadline, the connection cut where the plan says so, the next step held
  while the client is not reading (``pause_writing``/``resume_writing``);
* what this server does not answer itself, it hands over with the
  connection, from the start of that request: a request the parser does
  not read (a chunked body, ``Expect``), and whatever ``dispatch`` answers
  with a handoff instead of a plan (WebSocket sessions, misses forwarded
  upstream). The engine gives the connection to aiohttp (``hand_over``).

Requests on one connection are answered in order: a pipelined request
waits in the parser until the answer before it is out.

Slow and idle clients do not hold connections forever: a request that is
not whole ``request_timeout`` seconds after the connection's last answer
(or its start) is answered 408 and the connection closed (slowloris, a
Content-Length that lies); a connection with nothing to read or write for
``idle_timeout`` seconds is closed. One sweep on a loop timer checks them,
so the hot path only notes the time an answer ended. Streams go out
chunked (close-delimited to an HTTP/1.0 client), bodies with
Content-Length; a HEAD answer has the head alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from llmock_proxy.replay.answers import internal_error_plan, log_internal_error
from llmock_proxy.replay.plan import Plan
from llmock_proxy.replay.schedule import DROP, END, Step, steps
from llmock_proxy.wire.http1 import (
    LAST_CHUNK,
    MAX_BODY,
    DateHeader,
    Handover,
    HTTPRequest,
    Refusal,
    RequestParser,
    ResponseHeads,
    chunk,
    response_head,
)

log = logging.getLogger("llmock_proxy.replay")

# (method, target, lower-case headers, body, arrival) -> a Plan, or anything
# else for the connection to be handed over with (see hand_over).
Dispatch = Callable[[str, str, dict[str, str], bytes, float], Any]
# (transport, the bytes from the start of the request on, what dispatch said
# or None): another server takes the connection.
HandOver = Callable[[asyncio.Transport, bytes, Any], None]

# Statuses whose answers have no body (and say no length).
_NO_BODY = frozenset({204, 304})

# Seconds a request may take to arrive whole, and a connection may sit idle.
REQUEST_TIMEOUT = 60.0
IDLE_TIMEOUT = 75.0


class HTTPServer:
    """Listens, and keeps the connections it serves (to close them on :meth:`close`)."""

    def __init__(
        self,
        dispatch: Dispatch,
        hand_over: HandOver,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_body_size: int = MAX_BODY,
    ) -> None:
        self.dispatch = dispatch
        self.hand_over = hand_over
        self.date = DateHeader()
        self.heads = ResponseHeads()
        self.connections: set[HTTPConnection] = set()
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        # A Content-Length past it is answered 413 before any of the body is read.
        self.max_body_size = max_body_size
        self._server: asyncio.Server | None = None
        self._sweep: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: HTTPConnection(self, loop), host, port)
        address = self._server.sockets[0].getsockname()
        self._arm_sweep(loop)
        return str(address[0]), int(address[1])

    def _arm_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = max(0.01, min(self.request_timeout, self.idle_timeout) / 4)
        self._sweep = loop.call_later(interval, self.sweep, loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections that took too long to send a request, or sat idle too long."""
        now = loop.time()
        for connection in list(self.connections):
            connection.check_timeouts(now)
        self._arm_sweep(loop)

    def close(self) -> None:
        """Stop listening and close the connections still served here
        (not those handed over: their new server closes them)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


class HTTPConnection(asyncio.Protocol):
    """One client connection, served until it closes or is handed over."""

    def __init__(self, server: HTTPServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.parser = RequestParser(max_body=server.max_body_size)
        self.transport: asyncio.Transport | None = None
        self.answer: TimedAnswer | None = None  # an answer going out over time
        self.paused = False  # the client is not reading: the transport's buffer is full
        self.reading_paused = False
        self.serving = False  # inside serve_requests
        self.since = loop.time()  # when the connection started or its last answer ended

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.connections.discard(self)
        answer = self.answer
        if answer is not None:
            self.answer = None
            answer.client_left()

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if self.answer is None:
            self.serve_requests()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.answer is not None:
            self.answer.resume()
        else:
            self.serve_requests()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def check_timeouts(self, now: float) -> None:
        """From the server's sweep: a request too slow to arrive gets 408, an idle connection is closed."""
        if self.transport is None or self.answer is not None:
            return  # an answer is going out: its own schedule governs the connection
        waited = now - self.since
        if self.parser.buffered and waited > self.server.request_timeout:
            self.refuse(Refusal(408, f"the request did not arrive whole within {self.server.request_timeout:g} s"))
        elif not self.parser.buffered and waited > self.server.idle_timeout:
            log.debug("closing a connection idle for %.0f s", waited)
            self.transport.close()

    # -- requests --------------------------------------------------------------------------

    def serve_requests(self) -> None:
        """Answer the requests read so far, in order, until one takes time."""
        if self.serving:
            return  # an answer finished inside the loop below: it goes on by itself
        self.serving = True
        try:
            while self.answer is None and self.transport is not None:
                if self.paused:  # answers pile up unread: read no more until they drain
                    if not self.reading_paused:
                        self.reading_paused = True
                        self.transport.pause_reading()
                    return
                event = self.parser.next_request()
                if event is None:
                    return
                if type(event) is HTTPRequest:
                    self.serve(event)
                elif isinstance(event, Refusal):
                    self.refuse(event)
                    return
                else:
                    assert isinstance(event, Handover)
                    log.debug("handing a connection to aiohttp: %s", event.reason)
                    self.give_away(None)
                    return
        finally:
            self.serving = False

    def serve(self, request: HTTPRequest) -> None:
        arrival = self.loop.time()
        try:
            answer = self.server.dispatch(request.method, request.target, request.headers, request.body, arrival)
        except Exception as exc:  # a bug: answered, as aiohttp would, and not the connection's end
            url = f"http://{request.headers.get('host', '')}{request.target}"
            log_internal_error(request.method, url, exc)
            answer = internal_error_plan(request.method, url, request.headers, exc)
        if type(answer) is not Plan:
            self.give_away(answer)
            return
        plan: Plan = answer
        schedule = steps(plan)
        first = next(schedule)
        if first.end == END and first.at <= self.loop.time():
            self.write_whole(request, plan, first.data)  # the common case: all of it due now, in one write
            return
        self.answer = TimedAnswer(self, request, plan, schedule, first)
        self.answer.start()

    def write_whole(self, request: HTTPRequest, plan: Plan, data: bytes) -> None:
        """An answer all due now: head and body in one write."""
        status = plan.status
        if plan.chunks is not None and request.version == "1.1":
            framing = "Transfer-Encoding: chunked\r\n"
            data = chunk(data) + LAST_CHUNK
        elif plan.chunks is not None:  # HTTP/1.0: the body ends with the connection
            framing = ""
            request.keep_alive = False
        elif status in _NO_BODY or status < 200:
            framing = ""
            data = b""
        else:
            framing = f"Content-Length: {len(data)}\r\n"
        head = self.head(request, plan, framing)
        transport = self.transport
        if head is None or transport is None:
            return
        transport.write(head if request.method == "HEAD" or not data else head + data)
        self.since = self.loop.time()
        if not request.keep_alive:
            transport.close()

    def head(self, request: HTTPRequest, plan: Plan, framing: str) -> bytes | None:
        """The answer's head (None: it could not be made, a 500 went out instead)."""
        if not request.keep_alive:
            framing += "Connection: close\r\n"
        elif request.version == "1.0":
            framing += "Connection: keep-alive\r\n"
        date = self.server.date.value(time.time())
        try:
            return self.server.heads.head(plan.status, plan.headers, framing, date=date, version=request.version)
        except ValueError as exc:
            url = f"http://{request.headers.get('host', '')}{request.target}"
            log_internal_error(request.method, url, exc)
            error = internal_error_plan(request.method, url, request.headers, exc)
            body = error.body or b""
            head = response_head(error.status, error.headers, f"Content-Length: {len(body)}\r\nConnection: close\r\n",
                                 date=date, version=request.version)
            if self.transport is not None:
                self.transport.write(head + body)
                self.transport.close()
            return None

    def answered(self, request: HTTPRequest) -> None:
        """A timed answer is out: close, or go on with the next request."""
        self.answer = None
        self.since = self.loop.time()
        if self.transport is None:
            return
        if not request.keep_alive:
            self.transport.close()
            return
        self.serve_requests()

    def refuse(self, refusal: Refusal) -> None:
        log.warning("refused a request (%d): %s", refusal.status, refusal.reason)
        body = json.dumps({"error": {"message": f"llmock-proxy: {refusal.reason}", "type": "invalid_request_error"}})
        data = body.encode()
        head = response_head(refusal.status, [("Content-Type", "application/json")],
                             f"Content-Length: {len(data)}\r\nConnection: close\r\n",
                             date=self.server.date.value(time.time()))
        assert self.transport is not None
        self.transport.write(head + data)
        self.transport.close()

    def give_away(self, handoff: Any) -> None:
        """Hand the connection over, from the start of the current request."""
        transport = self.transport
        assert transport is not None
        self.transport = None
        self.server.connections.discard(self)
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        self.server.hand_over(transport, self.parser.pending(), handoff)


class TimedAnswer:
    """A plan whose parts are due later: each step of its schedule on a loop
    timer, held while the client is not reading."""

    def __init__(
        self, connection: HTTPConnection, request: HTTPRequest, plan: Plan, schedule: Iterator[Step], first: Step
    ) -> None:
        self.connection = connection
        self.request = request
        self.plan = plan
        self.steps = schedule
        self.step: Step | None = first  # the next step, waiting for its time or for the client to read
        self.timer: asyncio.TimerHandle | None = None
        self.stream = plan.chunks is not None
        # An HTTP/1.0 client reads a stream to the connection's end.
        self.chunked = self.stream and request.version == "1.1"
        self.sent = 0

    def start(self) -> None:
        if self.stream:  # the head goes at once, the chunks at their offsets
            request = self.request
            if self.chunked:
                framing = "Transfer-Encoding: chunked\r\n"
            else:
                request.keep_alive = False
                framing = ""
            head = self.connection.head(request, self.plan, framing)
            transport = self.connection.transport
            if head is None or transport is None:
                self.connection.answer = None
                return
            transport.write(head)
            if request.method == "HEAD":
                self.connection.answered(request)
                return
        self.advance()

    def advance(self) -> None:
        """Write every step that is due; then wait for the next one."""
        self.timer = None
        connection = self.connection
        loop = connection.loop
        while True:
            step = self.step
            if step is None:
                step = self.step = next(self.steps)
            if step.at > loop.time():
                self.timer = loop.call_at(step.at, self.advance)
                return
            transport = connection.transport
            if transport is None:
                return
            if connection.paused:
                return  # resume() goes on
            self.step = None
            self.write(transport, step)
            if step.end == DROP:
                connection.answer = None  # cut on purpose: not a client leaving
                transport.close()
                return
            if step.end == END:
                connection.answered(self.request)
                return

    def write(self, transport: asyncio.Transport, step: Step) -> None:
        self.sent = step.sent
        if not self.stream:
            if step.end == END:
                status = self.plan.status
                framing = "" if status in _NO_BODY or status < 200 else f"Content-Length: {len(step.data)}\r\n"
                head = self.connection.head(self.request, self.plan, framing)
                if head is not None:
                    transport.write(head if self.request.method == "HEAD" or not framing else head + step.data)
            return
        if not self.chunked:
            if step.data:
                transport.write(step.data)
            return  # an END closes the connection: answered() sees keep_alive off
        data = chunk(step.data)
        if step.end == END:
            data += LAST_CHUNK
        if data:
            transport.write(data)

    def resume(self) -> None:
        if self.timer is None and self.step is not None:
            self.advance()

    def client_left(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.stream:
            # An SDK closing at [DONE], a cancelled test: its business, not an error of the replay.
            log.info("client left %s %s after %d of %d chunks", self.request.method,
                     self.request.target.split("?", 1)[0], self.sent, len(self.plan.chunks or ()))
