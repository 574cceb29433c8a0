"""The replay engine: a server that answers requests with matched interactions.

One engine serves one :class:`~llmock_proxy.replay.session.ReplaySession`. It runs
in two places:

* inside mitmproxy's event loop, on ``127.0.0.1:0``, behind the replay addon
  (:mod:`llmock_proxy.mitm.replay`): the addon resolves the request, *parks*
  the resulting :class:`Plan` here and re-targets the flow to the engine with
  the plan's token in :data:`PLAN_HEADER`, so streams leave with real timing;
* on its own port as a plain base-URL server (``llmock-proxy serve``).

What goes on the wire is a :class:`Plan`: status, headers (the recorded ones,
with length and encoding left for the server to recompute) and either one
body or a list of timed chunks (encoded SSE events, NDJSON lines, EventStream
frames). Chunk offsets are milliseconds after the request arrived; the
engine waits for each deadline on the loop clock rather than adding
per-chunk sleeps, so lateness never accumulates
(:mod:`llmock_proxy.replay.schedule`).

On the wire: :meth:`ReplayEngine.dispatch` decides every answer without
I/O; the engine's own HTTP/1.1 server (:mod:`llmock_proxy.replay.http_server`)
writes the plans, and hands aiohttp (this module's application) the
connections only aiohttp can serve: WebSocket sessions, misses forwarded
upstream, request bodies in transfer-coding. A subclass that wraps
:meth:`ReplayEngine.handle` gets aiohttp for every request.

Timing modes: ``recorded`` (offsets as recorded, or as a fixture's
``latency`` / ``streamingProfile`` say), ``instant`` (no delays) and
``scale:X`` (every offset times X). ``disconnectAfterMs`` is a behaviour,
not a pace, and is never scaled.

WebSocket upgrades are answered by :mod:`llmock_proxy.replay.ws_server`: recorded
sessions turn by turn, or fixture-driven conversations.

Request bodies: :meth:`ReplayEngine.dispatch` undoes a request's
Content-Encoding (:func:`request_body`, the one decode the replay addon
uses too), whichever server read it; aiohttp is told not to decompress, so
the cap is ours. A body may be ``max_body_size`` bytes as sent and as
decoded: past it the answer is 413 in the provider's error envelope
(:func:`too_large_plan`), since a few KB of gzip can decode to gigabytes.

CORS (``cors``, set before :meth:`ReplayEngine.start`): every answer says
any origin may read it, and an ``OPTIONS`` request is a preflight answered
204 here, never matched or forwarded; ``serve`` turns it on when it listens
on loopback, so a test in a browser can call it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from llmock_proxy.cassette.model import Payload, Request
from llmock_proxy.errors import BodyTooLarge, WireError
from llmock_proxy.providers.base import split_url
from llmock_proxy.providers.catalog import identify
from llmock_proxy.replay.answers import (
    internal_error_plan,
    json_plan,
    log_internal_error,
    log_miss,
    miss_plan,
    websocket_not_forwarded_plan,
)
from llmock_proxy.replay.control import HEALTH_PATH, control_plan, is_control
from llmock_proxy.replay.http_server import IDLE_TIMEOUT, REQUEST_TIMEOUT, HTTPServer
from llmock_proxy.replay.plan import Plan, Planner, Timing
from llmock_proxy.replay.schedule import DROP, END, steps
from llmock_proxy.replay.session import Hit, Miss, ReplaySession
from llmock_proxy.replay.sessions import Selected, SessionRegistry, SessionSettings, UnknownSession
from llmock_proxy.replay.wire_form import body_bytes, response_headers
from llmock_proxy.replay.ws_server import serve_websocket
from llmock_proxy.replay.ws_session import can_answer, is_websocket_upgrade
from llmock_proxy.wire.content_encoding import DEFAULT_MAX_DECODED_SIZE, decompress

log = logging.getLogger("llmock_proxy.replay")


# The header carrying a parked plan's token from the replay addon to the engine.
PLAN_HEADER = "x-llmock-plan"


# What the engine does with a miss when it does not answer it itself
# (``llmock-proxy serve --mode passthrough|auto`` forwards it upstream).
# It gets the request, its path inside its session, the miss (None: a
# record-mode request, forwarded without asking) and the arrival time.
MissHandler = Callable[[web.Request, str, Miss | None, float], Awaitable[web.StreamResponse]]


class Forwarding(Protocol):
    """What sends a session's requests upstream (llmock_proxy.record.forward.Forwarder)."""

    async def handle(
        self, request: web.Request, path_qs: str, miss: Miss | None, arrival: float
    ) -> web.StreamResponse: ...

    async def close(self) -> None: ...


# Makes the forwarder of a session, from its settings (mode, upstreams, cassette).
ForwardFactory = Callable[[ReplaySession, SessionSettings], Forwarding]

# What :meth:`ReplayEngine.dispatch` returns for a request only aiohttp can
# answer (a WebSocket session, a miss forwarded upstream): the rest of the
# answer, given aiohttp's request. The outcome is decided once (a miss is
# counted once), whichever server read the request.
Handoff = Callable[[web.Request], Awaitable[web.StreamResponse]]


# CORS: what a browser is told. Exposed are our own headers and those the
# SDKs read (request ids, retry advice); a preflight is remembered 10 minutes.
CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_EXPOSE_HEADERS = (
    "x-llmock-miss, x-llmock-error, x-request-id, request-id, retry-after, retry-after-ms, x-should-retry"
)
CORS_MAX_AGE = "600"


def cors_headers(request_headers: Mapping[str, str], *, preflight: bool = False) -> dict[str, str]:
    """The CORS headers of an answer to a request with ``request_headers``
    (lower-case names, or aiohttp's case-insensitive ones):
    the request's Origin is echoed (``*`` without one); a preflight also
    allows the methods, the headers it asks for and, when asked, a private
    network (Chrome's preflight to a loopback address from a public page)."""
    origin = request_headers.get("origin")
    headers = {"Access-Control-Allow-Origin": origin or "*"}
    if origin:  # the answer depends on it: caches must not share it across origins
        headers["Vary"] = "Origin, Access-Control-Request-Headers" if preflight else "Origin"
    if not preflight:
        headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        return headers
    headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
    headers["Access-Control-Allow-Headers"] = request_headers.get("access-control-request-headers") or "*"
    headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    if request_headers.get("access-control-request-private-network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return headers


@dataclass
class ReplayEngine:
    """The aiohttp side of replay: resolves, plans and serves."""

    session: ReplaySession
    timing: Timing = field(default_factory=Timing)
    mode: str = "replay"
    miss_handler: MissHandler | None = None
    rng: random.Random | None = None
    cors: bool = False
    # Forwarders of sessions opened with a mode other than replay (named
    # sessions; the default session forwards through miss_handler).
    forward: ForwardFactory | None = None
    # Seconds a request may take to arrive whole (then 408), and a connection may sit idle.
    request_timeout: float = REQUEST_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    # Bytes a request body may have, as sent and once its Content-Encoding is undone (then 413).
    max_body_size: int = DEFAULT_MAX_DECODED_SIZE

    def __post_init__(self) -> None:
        self.sessions = SessionRegistry(self.session)
        self._closing: set[asyncio.Future[None]] = set()
        # Forwarded requests in flight per session (None: the default one), and who waits for none.
        self._forwarding: dict[str | None, int] = {}
        self._drain_waiters: dict[str | None, list[asyncio.Future[None]]] = {}
        self._forwarders: dict[str, tuple[ReplaySession, Forwarding]] = {}
        self.planner = Planner(self.timing, rng=self.rng)
        self.timing = self.planner.timing
        self._parked: dict[str, Plan] = {}
        # Connections handed to aiohttp with their first request decided.
        self._handoffs: dict[object, Handoff] = {}
        self._runner: web.AppRunner | None = None
        self._http: HTTPServer | None = None
        self.host: str | None = None
        self.port: int | None = None

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if name == "session" and "sessions" in self.__dict__:
            self.sessions.default = value  # type: ignore[assignment]  # the default session is the engine's

    def set_timing(self, timing: Timing) -> None:
        self.timing = self.planner.timing = timing

    # -- the application ---------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_size)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        if self.cors:
            app.on_response_prepare.append(_add_cors_headers)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0 = any free port) in the running loop:
        the engine's own HTTP/1.1 server answers, and hands aiohttp the
        connections only it can answer (see :meth:`hand_over`)."""
        # auto_decompress off: dispatch decodes a body once, under our cap (aiohttp's own
        # decoding stopped only at client_max_size, and a forwarded body must stay as sent).
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0,
                               auto_decompress=False)
        await runner.setup()
        self._runner = runner
        if type(self).handle is not ReplayEngine.handle:
            # A subclass wraps aiohttp's handler: every request must reach it.
            site = web.TCPSite(runner, host, port)
            await site.start()
            address = runner.addresses[0]  # (host, port) of the bound socket
            self.host, self.port = str(address[0]), int(address[1])
            return self.host, self.port
        self._http = HTTPServer(self.dispatch, self.hand_over, request_timeout=self.request_timeout,
                                idle_timeout=self.idle_timeout, max_body_size=self.max_body_size)
        try:
            self.host, self.port = await self._http.start(host, port)
        except BaseException:
            self._http = None
            self._runner = None
            await runner.cleanup()
            raise
        return self.host, self.port

    def hand_over(self, transport: asyncio.Transport, data: bytes, handoff: Handoff | None) -> None:
        """aiohttp takes a connection over from the engine's own server, from
        the start of a request (``data``): one the engine's parser does not
        read (``handoff`` None: aiohttp's handler dispatches it), or one
        whose answer only aiohttp can give (``handoff``: its rest)."""
        runner = self._runner
        if runner is None or runner.server is None:
            transport.close()
            return
        if handoff is not None:
            for gone in [t for t in self._handoffs if t.is_closing()]:  # type: ignore[attr-defined]
                del self._handoffs[gone]  # closed before aiohttp read their request
            self._handoffs[transport] = handoff
        protocol = runner.server()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)

    async def stop(self) -> None:
        http = self._http
        if http is not None:
            http.close()  # no new connections; those still served here are closed
        if self._runner is not None:
            await self._runner.cleanup()  # and those handed over to aiohttp
            self._runner = None
        if http is not None:
            await http.wait_closed()
            self._http = None
        forwarders = [forwarder for _, forwarder in self._forwarders.values()]
        self._forwarders.clear()
        await asyncio.gather(*self._closing, *(f.close() for f in forwarders))

    # -- parked plans (the addon's streams) -------------------------------------

    def park(self, plan: Plan) -> str:
        # Unguessable: the engine's port is open to every local process.
        token = secrets.token_urlsafe(18)
        self._parked[token] = plan
        return token

    def unpark(self, token: str) -> Plan | None:
        return self._parked.pop(token, None)

    # -- requests ------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp's handler: a request the engine's own HTTP/1.1 server
        handed over (its answer already decided, see :data:`Handoff`), or
        one aiohttp read itself."""
        answer: Plan | Handoff | None = self._handoffs.pop(request.transport, None) if self._handoffs else None
        if answer is None:
            arrival = asyncio.get_running_loop().time()
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:  # a chunked body past the cap, as sent
                url = f"http://{request.host}{request.path_qs}"
                exc = BodyTooLarge(self.max_body_size, "the request body")
                log.warning("llmock: %s %s refused: %s", request.method, url, exc)
                answer = self._with_cors(too_large_plan(request.method, url, headers, exc), headers)
            else:
                answer = self.dispatch(request.method, request.path_qs, headers, body, arrival, host=request.host)
        if isinstance(answer, Plan):
            return await self.serve(request, answer)
        return await answer(request)

    def dispatch(
        self,
        method: str,
        path_qs: str,
        headers: dict[str, str],
        body: bytes,
        arrival: float,
        *,
        host: str | None = None,
    ) -> Plan | Handoff:
        """What answers one request, decided without any I/O: a :class:`Plan`
        for the transport to put on the wire, or a :data:`Handoff` when only
        aiohttp can answer it (a WebSocket session, a miss forwarded
        upstream). ``headers``: lower-case names; ``arrival``: loop time the
        request arrived at (stream offsets count from it); ``host``: the
        authority when the request has no Host header."""
        token = headers.get(PLAN_HEADER)
        if token is not None:
            parked = self.unpark(token)
            if parked is None:
                return json_plan(410, {"error": f"no parked replay plan {token!r}"})
            if parked.is_websocket:
                return self._websocket_handoff(parked.websocket_request, parked.websocket_session)
            return self._with_cors(parked, headers)
        try:
            selected = self.sessions.select(headers, path_qs)
        except UnknownSession as exc:
            unknown = json_plan(404, {"error": {"message": str(exc), "type": "unknown_session"}})
            return self._with_cors(unknown, headers)
        session, path_qs = selected.session, selected.path
        mode = self.mode if selected.session_id is None else selected.settings.mode
        path = path_qs.split("?", 1)[0]
        if self.cors and method == "OPTIONS":
            if is_control(path):  # a web page may not drive the control endpoints
                return json_plan(403, {"error": "llmock-proxy: no cross-origin access to the control endpoints"})
            return Plan(204, list(cors_headers(headers, preflight=True).items()))
        coding = headers.get("content-encoding")
        if coding is not None:  # the only cost to a request without one: that lookup
            try:
                body = request_body(body, coding, max_size=self.max_body_size)
            except BodyTooLarge as exc:
                url = f"http://{headers.get('host') or host or f'{self.host}:{self.port}'}{path_qs}"
                log.warning("llmock: %s %s refused: %s", method, url, exc)
                return self._with_cors(too_large_plan(method, url, headers, exc), headers)
        control = control_plan(self.sessions, session, method, path, body, self.timing, mode, headers,
                               forwarding=self.forward is not None)
        if control is not None:
            # A web page may read the health check, nothing else of the control endpoints.
            return self._with_cors(control, headers) if path == HEALTH_PATH else control
        url = f"http://{headers.get('host') or host or f'{self.host}:{self.port}'}{path_qs}"
        if is_websocket_upgrade(headers):
            upgrade = Request(method, url, headers, _payload(body, headers))
            if mode != "replay" and not can_answer(session, upgrade):
                refusal = websocket_not_forwarded_plan(method, path, mode, session.miss_status)
                return self._with_cors(refusal, headers)
            return self._websocket_handoff(upgrade, session)
        forward = self._forwarder(selected) if mode != "replay" else None
        if mode == "record" and forward is not None:
            return self._forward_handoff(forward, path_qs, None, arrival, selected.session_id)
        try:
            outcome = session.resolve_raw(method, url, headers, body)
            plan = self.planner.plan(outcome, arrival, headers) if isinstance(outcome, Hit) else None
        except Exception as exc:
            log_internal_error(method, url, exc)
            return self._with_cors(internal_error_plan(method, url, headers, exc), headers)
        if plan is not None:
            if plan.is_websocket:
                return self._websocket_handoff(None, session)
            return self._with_cors(plan, headers)
        assert isinstance(outcome, Miss)
        if forward is not None:
            log_miss(outcome, mode)
            return self._forward_handoff(forward, path_qs, outcome, arrival, selected.session_id)
        log_miss(outcome, "replay")
        return self._with_cors(miss_plan(outcome, arrival), headers)

    def _forwarder(self, selected: Selected) -> MissHandler | None:
        """What forwards the selected session's requests upstream (None: nothing does)."""
        if selected.session_id is None:
            return self.miss_handler
        known = self._forwarders.get(selected.session_id)
        if known is not None and known[0] is selected.session:
            return known[1].handle
        if self.forward is None:
            return None
        for session_id, (session, forwarder) in list(self._forwarders.items()):
            if self.sessions.get(session_id) is not session:  # closed (or opened anew) since
                del self._forwarders[session_id]
                closing = asyncio.ensure_future(forwarder.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        forwarder = self.forward(selected.session, selected.settings)
        self._forwarders[selected.session_id] = (selected.session, forwarder)
        return forwarder.handle

    def _forward_handoff(
        self, forward: MissHandler, path_qs: str, miss: Miss | None, arrival: float, session_id: str | None
    ) -> Handoff:
        async def run(request: web.Request) -> web.StreamResponse:
            # Counted until the recording is written (after the client has its answer).
            self._forwarding[session_id] = self._forwarding.get(session_id, 0) + 1
            try:
                return await forward(request, path_qs, miss, arrival)
            finally:
                left = self._forwarding.pop(session_id) - 1
                if left:
                    self._forwarding[session_id] = left
                else:
                    for waiter in self._drain_waiters.pop(session_id, []):
                        if not waiter.done():
                            waiter.set_result(None)

        return run

    async def close_session(self, session_id: str, timeout: float = 30.0) -> ReplaySession | None:
        """Close a named session once the requests it forwarded are recorded
        (a recording is written after the client has its answer); waits at
        most ``timeout`` seconds, then closes it anyway."""
        if self._forwarding.get(session_id):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drain_waiters.setdefault(session_id, []).append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                log.warning("llmock: closing session %r with requests still being forwarded", session_id)
        return self.sessions.close(session_id)

    def _with_cors(self, plan: Plan, request_headers: Mapping[str, str]) -> Plan:
        if self.cors:
            plan.headers.extend(cors_headers(request_headers).items())
        return plan

    def _websocket_handoff(self, upgrade: Request | None, session: ReplaySession | None = None) -> Handoff:
        """A WebSocket session, turn by turn (see :mod:`llmock_proxy.replay.ws_server`);
        ``upgrade``: the request as matched (None: read it from aiohttp's)."""
        replaying = session or self.session

        async def run(request: web.Request) -> web.StreamResponse:
            asked = upgrade or await request_from_aiohttp(request)
            return await serve_websocket(request, asked, replaying, self.timing.factor)

        return run

    async def serve(self, request: web.Request, plan: Plan) -> web.StreamResponse:
        """Put ``plan`` on the wire through aiohttp, on time (the steps of
        :func:`~llmock_proxy.replay.schedule.steps`, as the engine's own server does)."""
        if plan.is_websocket:
            return await self.serve_websocket(request, plan)
        loop = asyncio.get_running_loop()
        if plan.chunks is None:
            step = next(steps(plan))
            await _sleep_until(loop, step.at)
            return _drop(request) if step.end == DROP else _aiohttp_response(plan)
        response = web.StreamResponse(status=plan.status, headers=plan.headers)
        sent = 0
        try:
            await response.prepare(request)
            for step in steps(plan):
                await _sleep_until(loop, step.at)
                if step.data and step.end != END:
                    await response.write(step.data)
                sent = step.sent
                if step.end == DROP:
                    return _drop(request, response)
                if step.end == END:
                    await response.write_eof(step.data)
                    return response
        except ConnectionResetError:
            # The client hung up mid-stream (an SDK closing at [DONE], a
            # cancelled test): its business, not an error of the replay.
            log.info("client left %s %s after %d of %d chunks", request.method, request.path, sent, len(plan.chunks))
        return response

    async def serve_websocket(self, request: web.Request, plan: Plan) -> web.StreamResponse:
        """A WebSocket session, turn by turn (see :mod:`llmock_proxy.replay.ws_server`)."""
        return await self._websocket_handoff(plan.websocket_request)(request)


# -- request bodies -----------------------------------------------------------------


def request_body(raw: bytes, content_encoding: str | None, *, max_size: int = DEFAULT_MAX_DECODED_SIZE) -> bytes:
    """The request body with its Content-Encoding undone: what the engine and
    the replay addon match (only an encoded body costs a decode). Capped: a
    few KB of gzip can be gigabytes, so past ``max_size`` decoded bytes this
    raises :class:`~llmock_proxy.errors.BodyTooLarge`, answered 413
    (:func:`too_large_plan`). A body that does not decode as its coding says
    (or names an unknown coding) is kept as sent, as mitmproxy's lenient
    decoding did: it is then matched, and missed, as it is."""
    if not content_encoding:
        return raw
    try:
        return decompress(raw, content_encoding, max_size=max_size)
    except BodyTooLarge:
        raise
    except WireError:
        return raw


# The status and error type of a request whose body is past the cap.
TOO_LARGE_STATUS = 413
TOO_LARGE_TYPE = "request_too_large"


def too_large_plan(method: str, url: str, headers: dict[str, str], exc: BodyTooLarge) -> Plan:
    """413 for a request body past the cap, in the provider's error envelope
    when the provider can say it (a miss is answered the same way), marked
    as not worth retrying: the same body would be refused again."""
    message = f"llmock-proxy refused {method} {split_url(url)[1]}: {exc}"
    try:
        response = identify(method, url, headers).error(TOO_LARGE_STATUS, message, type=TOO_LARGE_TYPE)
        plan = Plan(response.status, response_headers(response), body=body_bytes(response.body))
    except Exception:  # the provider itself is what failed
        plan = json_plan(TOO_LARGE_STATUS, {"error": {"message": message, "type": TOO_LARGE_TYPE}})
    plan.headers.append(("x-should-retry", "false"))
    return plan


# -- aiohttp helpers --------------------------------------------------------------


async def request_from_aiohttp(request: web.Request) -> Request:
    """The incoming request in the cassette model (what the session matches)."""
    body = await request.read()
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Request(
        method=request.method,
        url=f"{request.scheme}://{request.host}{request.path_qs}",
        headers=headers,
        body=_payload(body, headers),
    )


def _payload(body: bytes, headers: dict[str, str]) -> Payload | None:
    return Payload.from_bytes(body, headers.get("content-type")) if body else None


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer (a preflight has its own already)."""
    if "Access-Control-Allow-Origin" in response.headers:
        return
    for name, value in cors_headers(request.headers).items():
        if name == "Vary":
            response.headers.add(name, value)  # next to the answer's own Vary
        else:
            response.headers[name] = value


def _aiohttp_response(plan: Plan) -> web.Response:
    # aiohttp copies the (name, value) pairs into its own CIMultiDict.
    return web.Response(status=plan.status, headers=plan.headers, body=plan.body or b"")


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


def _drop(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Cut the connection mid-answer (truncateAfterChunks, disconnectAfterMs):
    what was written is flushed, the end of the body never comes."""
    transport = request.transport
    if transport is not None:
        transport.close()
    return response if response is not None else web.Response(status=200)
