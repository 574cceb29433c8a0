"""The replay engine: an aiohttp application that serves matched interactions.

One engine serves one :class:`~llmock_proxy.session.ReplaySession`. It runs
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
engine sleeps until each deadline on the loop clock rather than adding
per-chunk sleeps, so lateness never accumulates.

Timing modes: ``recorded`` (offsets as recorded, or as a fixture's
``latency`` / ``streamingProfile`` say), ``instant`` (no delays) and
``scale:X`` (every offset times X). ``disconnectAfterMs`` is a behaviour,
not a pace, and is never scaled.

WebSocket upgrades are answered by :mod:`llmock_proxy.ws_engine`: recorded
sessions turn by turn, or fixture-driven conversations.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import wire
from .cassette import Payload, Request, Response
from .fixtures import Chaos, FixtureOptions
from .providers import identify
from .providers.base import split_url
from .session import MISS_HEADERS, Hit, Miss, ReplaySession
from .ws_engine import serve_websocket
from .ws_replay import can_answer, is_websocket_upgrade

log = logging.getLogger("llmock_proxy.replay")

# The header carrying a parked plan's token from the replay addon to the engine.
PLAN_HEADER = "x-llmock-plan"
CONTROL_PREFIX = "/__llmock/"

# Framing and hop-by-hop headers: the server computes its own.
_RECOMPUTED_HEADERS = frozenset(
    {
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)


class TimingError(ValueError):
    pass


@dataclass(frozen=True)
class Timing:
    """How recorded offsets are replayed: ``factor`` 1 (recorded), 0 (instant), X (scale)."""

    factor: float = 1.0
    name: str = "recorded"

    @classmethod
    def parse(cls, text: str) -> Timing:
        value = (text or "recorded").strip().lower()
        if value == "recorded":
            return cls(1.0, "recorded")
        if value == "instant":
            return cls(0.0, "instant")
        if value.startswith("scale:"):
            try:
                factor = float(value[len("scale:") :])
            except ValueError:
                factor = -1.0
            if factor >= 0 and factor != float("inf"):
                return cls(factor, value)
        raise TimingError(f"timing must be recorded, instant or scale:X (X >= 0), got {text!r}")


@dataclass(frozen=True)
class Chunk:
    at_ms: float  # offset after the request arrived
    data: bytes


@dataclass
class Plan:
    """Everything needed to put one answer on the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | None = None
    chunks: list[Chunk] | None = None
    # Before the head of a body answer (a fixture's latency).
    delay_ms: float = 0.0
    truncate_after_chunks: int | None = None
    disconnect_after_ms: float | None = None
    # Loop time (seconds) the request arrived at: offsets count from here.
    arrival: float = 0.0
    hit: Hit | None = None
    # A WebSocket upgrade (the request as the client sent it): the session is
    # answered turn by turn by :mod:`llmock_proxy.ws_engine`.
    websocket_request: Request | None = None
    # The chaos action this answer acts out ("drop", "malformed", "disconnect").
    chaos: str | None = None

    @property
    def streaming(self) -> bool:
        """Needs the engine: chunks, or a connection drop to act out."""
        return self.chunks is not None or self.disconnect_after_ms is not None

    @property
    def is_websocket(self) -> bool:
        if self.websocket_request is not None:
            return True
        return self.hit is not None and self.hit.response.wire_form == "websocket"


def response_headers(response: Response) -> list[tuple[str, str]]:
    """The recorded headers a replay sends (length and encoding recomputed)."""
    return [(k, v) for k, v in response.headers.items() if k not in _RECOMPUTED_HEADERS]


def _encoded_chunks(response: Response) -> list[tuple[float, bytes]]:
    form = response.wire_form
    if form == "sse":
        items: list[Any] = response.events or []
    elif form == "ndjson":
        items = response.lines or []
    elif form == "eventstream":
        items = response.frames or []
    else:
        return []
    return [(float(item.t), wire.encode(form, item)) for item in items]


def _stream_headers(response: Response) -> list[tuple[str, str]]:
    headers = response_headers(response)
    if not any(k == "content-type" for k, _ in headers):
        media = wire.MEDIA_TYPES.get(response.wire_form)  # type: ignore[call-overload]
        if media:
            headers.append(("content-type", media))
    return headers


def _body_bytes(payload: Payload | None) -> bytes:
    return payload.to_bytes() if payload is not None else b""


class Planner:
    """Turns a session's answer into a :class:`Plan` under a timing mode."""

    def __init__(self, timing: Timing = Timing(), *, rng: random.Random | None = None) -> None:
        self.timing = timing
        # Jitter only; a seeded generator makes it reproducible.
        self.rng = rng or random.Random()

    def plan(self, hit: Hit, arrival: float, headers: Mapping[str, str] | None = None) -> Plan:
        """The answer to ``hit``; ``headers`` (lower-case names) may ask for chaos."""
        action = self._chaos(hit.options.chaos, headers)
        if action is not None:
            return _chaos_plan(action, hit, arrival)
        response = hit.response
        options = hit.options
        factor = self.timing.factor
        if options.empty and not hit.synthesized:
            cached = hit.fixture.wire_cache.get("body")
            if cached is not None:  # the hot path: a recorded body, served again
                return Plan(response.status, list(cached[0]), body=cached[1], arrival=arrival, hit=hit)
        common = dict(
            truncate_after_chunks=options.truncate_after_chunks,
            disconnect_after_ms=options.disconnect_after_ms,
            arrival=arrival,
            hit=hit,
        )
        if not response.is_stream:
            delay = (options.latency or 0.0) * factor
            if not hit.synthesized:
                cached = hit.fixture.wire_cache.get("body")
                if cached is None:
                    cached = (response_headers(response), _body_bytes(response.body))
                    hit.fixture.wire_cache["body"] = cached
                headers, body = cached
            else:
                headers, body = response_headers(response), _body_bytes(response.body)
            return Plan(response.status, list(headers), body=body, delay_ms=delay, **common)
        if response.wire_form == "websocket":
            return Plan(response.status, [], **common)
        if not hit.synthesized:
            encoded = hit.fixture.wire_cache.get("chunks")
            if encoded is None:
                encoded = (_stream_headers(response), _encoded_chunks(response))
                hit.fixture.wire_cache["chunks"] = encoded
            headers, items = encoded
        else:
            headers, items = _stream_headers(response), _encoded_chunks(response)
        offsets = self._offsets(options, [t for t, _ in items])
        chunks = [Chunk(at * factor, data) for at, (_, data) in zip(offsets, items)]
        return Plan(response.status, list(headers), chunks=chunks, **common)

    def _chaos(self, chaos: Chaos | None, headers: Mapping[str, str] | None) -> str | None:
        """llmock's chaos: the fixture's rates, each overridden by its
        ``x-llmock-chaos-*`` request header; drop, malformed and disconnect
        are tried in that order, each with its own draw."""
        rates = [chaos.drop_rate, chaos.malformed_rate, chaos.disconnect_rate] if chaos else [0.0, 0.0, 0.0]
        if headers:
            for i, name in enumerate(CHAOS_HEADERS):
                value = headers.get(name)
                if value is not None:
                    rates[i] = _rate(name, value, rates[i])
        for action, rate in zip(CHAOS_ACTIONS, rates):
            if rate > 0 and self.rng.random() < rate:
                return action
        return None

    def _offsets(self, options: FixtureOptions, recorded: list[float]) -> list[float]:
        """Chunk offsets: llmock's streaming physics when the fixture asks for
        them (first chunk after ``ttft``, then one every ``1000/tps`` ms, each
        gap varied by ``jitter``; otherwise ``latency`` before every chunk),
        the recorded ``t`` values otherwise."""
        profile = options.streaming_profile
        if profile is None and not options.latency:
            return recorded
        offsets: list[float] = []
        now = 0.0
        for index in range(len(recorded)):
            gap = options.latency or 0.0
            if profile is not None:
                if index == 0 and profile.ttft is not None:
                    gap = profile.ttft
                elif profile.tps:
                    gap = 1000.0 / profile.tps
                if profile.jitter:
                    gap *= 1.0 + self.rng.uniform(-1.0, 1.0) * profile.jitter
            now += max(0.0, gap)
            offsets.append(now)
        return offsets


CHAOS_ACTIONS = ("drop", "malformed", "disconnect")
CHAOS_HEADERS = ("x-llmock-chaos-drop", "x-llmock-chaos-malformed", "x-llmock-chaos-disconnect")
# What llmock answers a "malformed" roll with.
MALFORMED_BODY = b"{malformed json: <<<chaos>>>"


def _rate(name: str, value: str, default: float) -> float:
    try:
        rate = float(value)
    except ValueError:
        log.warning("%s: %r is not a number; ignored", name, value)
        return default
    if rate != rate:  # NaN
        log.warning("%s: %r is not a number; ignored", name, value)
        return default
    return min(1.0, max(0.0, rate))


def _chaos_plan(action: str, hit: Hit, arrival: float) -> Plan:
    log.info("chaos %s: %s", action, hit.fixture.source)
    if action == "drop":
        response = hit.provider.error(500, "Chaos: request dropped", type="server_error")
        return Plan(500, response_headers(response), body=_body_bytes(response.body), arrival=arrival, chaos=action)
    if action == "malformed":
        return Plan(200, [("content-type", "application/json")], body=MALFORMED_BODY, arrival=arrival, chaos=action)
    return Plan(200, [], disconnect_after_ms=0.0, arrival=arrival, chaos=action)


def miss_plan(miss: Miss, arrival: float = 0.0) -> Plan:
    response = miss.response()
    return Plan(response.status, response_headers(response), body=_body_bytes(response.body), arrival=arrival)


def json_plan(status: int, data: Any) -> Plan:
    return Plan(status, [("content-type", "application/json")], body=json.dumps(data).encode())


def websocket_not_forwarded_plan(method: str, path: str, mode: str) -> Plan:
    """The base-URL server replays WebSocket sessions but never forwards them:
    say so, rather than let a client in passthrough/auto mode read the refusal
    as a recording that does not fit."""
    message = (
        f"llmock-proxy serve: nothing recorded for the WebSocket upgrade {method} {path}, and "
        f"--mode {mode} does not forward WebSocket sessions; record them through the proxy: "
        "mitmdump -s addons/replay.py --set llmock_mode=auto (or addons/record.py)"
    )
    log.warning("%s", message)
    plan = json_plan(421, {"error": {"message": message, "type": "websocket_not_forwarded"}})
    plan.headers.extend(MISS_HEADERS.items())
    return plan


# An answer llmock-proxy failed to build (a bug, or input nothing foresaw):
# marked, and not retried by the SDKs (openai and anthropic read x-should-retry).
INTERNAL_ERROR_STATUS = 500
INTERNAL_ERROR_HEADERS = (("x-llmock-error", "1"), ("x-should-retry", "false"))


def internal_error_plan(method: str, url: str, headers: dict[str, str], exc: BaseException) -> Plan:
    """The answer to a request whose replay failed with ``exc``: status 500
    in the provider's error envelope when the provider can say it, never a
    forwarded request."""
    message = f"llmock-proxy failed to replay {method} {split_url(url)[1]}: {type(exc).__name__}: {exc}"
    try:
        response = identify(method, url, headers).error(INTERNAL_ERROR_STATUS, message, type="api_error")
        plan = Plan(response.status, response_headers(response), body=_body_bytes(response.body))
    except Exception:  # the provider itself is what failed
        plan = json_plan(INTERNAL_ERROR_STATUS, {"error": {"message": message, "type": "api_error"}})
    plan.headers.extend(INTERNAL_ERROR_HEADERS)
    return plan


def log_internal_error(method: str, url: str, exc: BaseException) -> None:
    log.error("llmock-proxy failed to replay %s %s (answered 500)", method, url, exc_info=exc)


def log_miss(miss: Miss, mode: str) -> None:
    """The one line a miss gets."""
    if mode == "replay":
        log.warning("replay miss (not forwarded): %s", miss.message)
    else:
        log.info("replay miss (%s): %s", mode, miss.message)


def control_plan(session: ReplaySession, method: str, path: str, timing: Timing, mode: str) -> Plan | None:
    """The control endpoints, shared by the engine and the addon:
    ``GET /__llmock/health`` and ``POST /__llmock/reset``."""
    if not path.startswith(CONTROL_PREFIX):
        return None
    name = path[len(CONTROL_PREFIX) :].split("?", 1)[0].rstrip("/")
    if name == "health" and method in ("GET", "HEAD"):
        return json_plan(
            200,
            {
                "status": "ok",
                "session": session.name,
                "fixtures": len(session),
                "candidates": len(session.matcher),
                "hits": session.hits,
                "misses": session.misses,
                "mode": mode,
                "timing": timing.name,
            },
        )
    if name == "reset" and method == "POST":
        session.reset()
        return json_plan(200, {"reset": True, "session": session.name})
    return json_plan(404, {"error": f"unknown control endpoint {method} {path}",
                           "endpoints": ["GET /__llmock/health", "POST /__llmock/reset"]})


# What the engine does with a miss when it does not answer it itself
# (``llmock-proxy serve --mode passthrough|auto`` forwards it upstream).
MissHandler = Callable[[web.Request, Request, Miss, float], Awaitable[web.StreamResponse]]


@dataclass
class ReplayEngine:
    """The aiohttp side of replay: resolves, plans and serves."""

    session: ReplaySession
    timing: Timing = field(default_factory=Timing)
    mode: str = "replay"
    miss_handler: MissHandler | None = None
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self.planner = Planner(self.timing, rng=self.rng)
        self.timing = self.planner.timing
        self._parked: dict[str, Plan] = {}
        self._tokens = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.host: str | None = None
        self.port: int | None = None

    def set_timing(self, timing: Timing) -> None:
        self.timing = self.planner.timing = timing

    # -- the application ---------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0 = any free port) in the running loop."""
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]  # (host, port) of the bound socket
        self.host, self.port = str(address[0]), int(address[1])
        return self.host, self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- parked plans (the addon's streams) -------------------------------------

    def park(self, plan: Plan) -> str:
        token = f"p{next(self._tokens)}"
        self._parked[token] = plan
        return token

    def unpark(self, token: str) -> Plan | None:
        return self._parked.pop(token, None)

    # -- requests ------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        token = request.headers.get(PLAN_HEADER)
        if token is not None:
            plan = self.unpark(token)
            if plan is None:
                return _aiohttp_response(json_plan(410, {"error": f"no parked replay plan {token!r}"}))
            return await self.serve(request, plan)
        arrival = loop.time()
        control = control_plan(self.session, request.method, request.path, self.timing, self.mode)
        if control is not None:
            return _aiohttp_response(control)
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        url = f"{request.scheme}://{request.host}{request.path_qs}"
        if is_websocket_upgrade(headers):
            upgrade = Request(request.method, url, headers, _payload(body, headers))
            if self.mode != "replay" and not can_answer(self.session, upgrade):
                return _aiohttp_response(websocket_not_forwarded_plan(request.method, request.path, self.mode))
            return await serve_websocket(request, upgrade, self.session, self.timing.factor)
        try:
            outcome = self.session.resolve_raw(request.method, url, headers, body)
            plan = self.planner.plan(outcome, arrival, headers) if isinstance(outcome, Hit) else None
        except Exception as exc:
            log_internal_error(request.method, url, exc)
            return _aiohttp_response(internal_error_plan(request.method, url, headers, exc))
        if plan is not None:
            return await self.serve(request, plan)
        assert isinstance(outcome, Miss)
        if self.miss_handler is not None and self.mode != "replay":
            log_miss(outcome, self.mode)
            return await self.miss_handler(request, outcome.request, outcome, arrival)
        log_miss(outcome, "replay")
        return _aiohttp_response(miss_plan(outcome, arrival))

    async def serve(self, request: web.Request, plan: Plan) -> web.StreamResponse:
        """Put ``plan`` on the wire, on time."""
        if plan.is_websocket:
            return await self.serve_websocket(request, plan)
        loop = asyncio.get_running_loop()
        disconnect_at = (
            plan.arrival + plan.disconnect_after_ms / 1000.0 if plan.disconnect_after_ms is not None else None
        )
        if plan.chunks is None:
            ready_at = plan.arrival + plan.delay_ms / 1000.0
            if disconnect_at is not None and disconnect_at <= ready_at:
                await _sleep_until(loop, disconnect_at)
                return _drop(request)
            await _sleep_until(loop, ready_at)
            return _aiohttp_response(plan)
        response = web.StreamResponse(status=plan.status, headers=plan.headers)
        sent = 0
        try:
            await response.prepare(request)
            for chunk in plan.chunks:
                deadline = plan.arrival + chunk.at_ms / 1000.0
                if disconnect_at is not None and disconnect_at <= deadline:
                    await _sleep_until(loop, disconnect_at)
                    return _drop(request, response)
                await _sleep_until(loop, deadline)
                await response.write(chunk.data)
                sent += 1
                if plan.truncate_after_chunks is not None and sent >= plan.truncate_after_chunks:
                    return _drop(request, response)
            await response.write_eof()
        except ConnectionResetError:
            # The client hung up mid-stream (an SDK closing at [DONE], a
            # cancelled test): its business, not an error of the replay.
            log.info("client left %s %s after %d of %d chunks", request.method, request.path, sent, len(plan.chunks))
        return response

    async def serve_websocket(self, request: web.Request, plan: Plan) -> web.StreamResponse:
        """A WebSocket session, turn by turn (see :mod:`llmock_proxy.ws_engine`)."""
        upgrade = plan.websocket_request or await request_from_aiohttp(request)
        return await serve_websocket(request, upgrade, self.session, self.timing.factor)


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
