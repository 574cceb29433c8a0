"""What goes on the wire for one answer: a :class:`Plan` (status, headers, one body
or timed chunks), made by the :class:`Planner` from a hit with the session's timing
and the fixture's options (latency, chunking, chaos)."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from llmock_proxy.cassette.model import Request
from llmock_proxy.replay.fixture import Chaos, FixtureOptions, RecordedTimings
from llmock_proxy.replay.session import Hit, ReplaySession
from llmock_proxy.replay.wire_form import body_bytes, response_headers, stream_headers, stream_items

log = logging.getLogger("llmock_proxy.replay")


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


@dataclass(slots=True)  # not frozen: a stream's are made for every answer, and a frozen one costs 4x to make
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
    # answered turn by turn by :mod:`llmock_proxy.replay.ws_server`.
    websocket_request: Request | None = None
    # The replay session a parked WebSocket upgrade belongs to (None: the engine's default).
    websocket_session: ReplaySession | None = None
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
        return self.hit is not None and self.hit.wire_form == "websocket"


class Planner:
    """Turns a session's answer into a :class:`Plan` under a timing mode."""

    def __init__(self, timing: Timing = Timing(), *, rng: random.Random | None = None) -> None:
        self.timing = timing
        # Jitter only; a seeded generator makes it reproducible.
        self.rng = rng or random.Random()

    def plan(self, hit: Hit, arrival: float, headers: Mapping[str, str] | None = None) -> Plan:
        """The answer to ``hit``; ``headers`` (lower-case names) may ask for chaos."""
        chaos = hit.options.chaos
        if chaos is None and (not headers or _ALL_CHAOS_HEADERS.isdisjoint(headers)):
            return self._plan(hit, arrival)  # the common case, decided without a draw
        action, latency = self._chaos(chaos, headers)
        if action is not None:
            return replace(_chaos_plan(action, hit, arrival), delay_ms=latency)
        if latency:
            return _delayed(self._plan(hit, arrival), latency)
        return self._plan(hit, arrival)

    def _plan(self, hit: Hit, arrival: float) -> Plan:
        # The response model itself is not read here: a templated answer
        # (see Hit.answer) has its wire form ready and no model made.
        status = hit.status
        options = hit.options
        factor = self.timing.factor
        if options.empty and hit.wire_cache is not None:
            cached = hit.wire_cache.get("body")
            if cached is not None:  # the hot path: a body served before
                return Plan(status, list(cached[0]), body=cached[1], arrival=arrival, hit=hit)
            together = hit.wire_cache.get("together")
            if together is not None:  # a templated stream whose items all go at once
                headers, at, data = together
                return Plan(status, list(headers), chunks=[Chunk(at * factor, data)], arrival=arrival, hit=hit)
        wire_form = hit.wire_form
        if wire_form == "websocket":
            return Plan(status, [], truncate_after_chunks=options.truncate_after_chunks,
                        disconnect_after_ms=options.disconnect_after_ms, arrival=arrival, hit=hit)
        if wire_form == "body":
            answer_headers, body = self._encoded(hit, "body")
            return Plan(status, list(answer_headers), body=body, delay_ms=(options.latency or 0.0) * factor,
                        truncate_after_chunks=options.truncate_after_chunks,
                        disconnect_after_ms=options.disconnect_after_ms, arrival=arrival, hit=hit)
        answer_headers, chunks = self._encoded(hit, ("chunks", factor))
        if _jittered(options):  # the cached chunks are at their recorded offsets
            offsets = self._offsets(options, [c.at_ms for c in chunks])
            chunks = [Chunk(at * factor, c.data) for at, c in zip(offsets, chunks)]
        return Plan(status, list(answer_headers), chunks=chunks,
                    truncate_after_chunks=options.truncate_after_chunks,
                    disconnect_after_ms=options.disconnect_after_ms, arrival=arrival, hit=hit)

    def _encoded(self, hit: Hit, kind: Any) -> tuple[Any, Any]:
        """(headers, body bytes) for ``"body"``, or (headers, [Chunk]) for
        ``("chunks", timing factor)``, of the hit's response, made once when
        the hit has a wire cache (a recording, or an answer the session keeps).
        A stream's items may be in the cache already, at their recorded
        offsets (``"items"``: a templated answer's)."""
        cache = hit.wire_cache
        if cache is not None:
            cached = cache.get(kind)
            if cached is not None:
                return cached  # type: ignore[no-any-return]
        if kind == "body":
            response = hit.response
            encoded: tuple[Any, Any] = (response_headers(response), body_bytes(response.body))
        else:
            made = cache.get("items") if cache is not None else None
            if made is None:
                response = hit.response
                made = (stream_headers(response), stream_items(response))
            headers, items = made
            # At the fixture's pace (the recorded offsets unless it sets one)
            # under this timing, the same for every use; with jitter, at the
            # recorded offsets, for the plan to pace.
            offsets = [t for t, _ in items]
            if not _jittered(hit.options):
                offsets = [at * kind[1] for at in self._offsets(hit.options, offsets)]
            encoded = (headers, [Chunk(at, data) for at, (_, data) in zip(offsets, items)])
        if cache is not None:
            cache[kind] = encoded
        return encoded

    def _chaos(self, chaos: Chaos | None, headers: Mapping[str, str] | None) -> tuple[str | None, float]:
        """llmock's chaos: the fixture's rates, each overridden by its
        ``x-llmock-chaos-*`` (or aimock's ``x-aimock-chaos-*``) request
        header; drop, malformed, rate limit and disconnect are tried in that
        order, each with its own draw. Returns the action and the latency
        (ms) to add before the answer."""
        rates = (
            [chaos.drop_rate, chaos.malformed_rate, chaos.rate_limit_rate, chaos.disconnect_rate]
            if chaos else [0.0, 0.0, 0.0, 0.0]
        )
        latency = chaos.latency_ms if chaos else 0.0
        if headers:
            for i, action in enumerate(CHAOS_ACTIONS):
                name, value = _chaos_header(headers, action)
                if value is not None:
                    rates[i] = _rate(name, value, rates[i])
            name, value = _chaos_header(headers, "latency")
            if value is not None:
                latency = _latency(name, value, latency)
        for action, rate in zip(CHAOS_ACTIONS, rates):
            if rate > 0 and self.rng.random() < rate:
                return action, latency
        return None, latency

    def _offsets(self, options: FixtureOptions, recorded: list[float]) -> list[float]:
        """Chunk offsets: llmock's streaming physics when the fixture asks for
        them (first chunk after ``ttft``, then one every ``1000/tps`` ms, each
        gap varied by ``jitter``; otherwise ``latency`` before every chunk),
        the recorded ``t`` values otherwise."""
        profile = options.streaming_profile
        timings = options.recorded_timings
        if timings is not None and profile is None:
            return _recorded_offsets(timings, options.replay_speed, len(recorded))
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


CHAOS_ACTIONS = ("drop", "malformed", "rate_limit", "disconnect")


# The request headers that override a fixture's chaos, by action: ours, then aimock's.
CHAOS_HEADERS = {
    "drop": ("x-llmock-chaos-drop", "x-aimock-chaos-drop"),
    "malformed": ("x-llmock-chaos-malformed", "x-aimock-chaos-malformed"),
    "rate_limit": ("x-llmock-chaos-rate-limit", "x-aimock-chaos-ratelimit"),
    "disconnect": ("x-llmock-chaos-disconnect", "x-aimock-chaos-disconnect"),
    "latency": ("x-llmock-chaos-latency", "x-aimock-chaos-latency"),
}

_ALL_CHAOS_HEADERS = frozenset(name for names in CHAOS_HEADERS.values() for name in names)

# aimock's bound on a chaos latency (ms).
MAX_CHAOS_LATENCY_MS = 30000.0


def _chaos_header(headers: Mapping[str, str], action: str) -> tuple[str, str | None]:
    for name in CHAOS_HEADERS[action]:
        value = headers.get(name)
        if value is not None:
            return name, value
    return CHAOS_HEADERS[action][0], None


def _latency(name: str, value: str, default: float) -> float:
    try:
        latency = float(value)
    except ValueError:
        latency = -1.0
    if not 0 <= latency <= MAX_CHAOS_LATENCY_MS:
        log.warning("%s: %r is not a latency from 0 to %g ms; ignored", name, value, MAX_CHAOS_LATENCY_MS)
        return default
    return latency


def _jittered(options: FixtureOptions) -> bool:
    """Whether the fixture's stream pace differs from one use to the next."""
    profile = options.streaming_profile
    return profile is not None and bool(profile.jitter)


def _delayed(plan: Plan, latency: float) -> Plan:
    """A plan whose answer starts ``latency`` ms later (chaos latency)."""
    if plan.chunks is not None:
        return replace(plan, chunks=[Chunk(c.at_ms + latency, c.data) for c in plan.chunks])
    return replace(plan, delay_ms=plan.delay_ms + latency)


def _recorded_offsets(timings: RecordedTimings, speed: float | None, count: int) -> list[float]:
    """aimock's recordedTimings: the first chunk at ``ttft``, then each recorded
    gap in turn (the last repeating when there are more chunks than gaps),
    all divided by ``replaySpeed``."""
    divisor = speed or 1.0
    offsets: list[float] = []
    now = timings.ttft_ms
    for index in range(count):
        if index:
            gaps = timings.gaps_ms
            now += gaps[min(index - 1, len(gaps) - 1)] if gaps else 0.0
        offsets.append(now / divisor)
    return offsets


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
        return Plan(500, response_headers(response), body=body_bytes(response.body), arrival=arrival, chaos=action)
    if action == "malformed":
        return Plan(200, [("content-type", "application/json")], body=MALFORMED_BODY, arrival=arrival, chaos=action)
    if action == "rate_limit":
        response = hit.provider.error(429, "Chaos: rate limit exceeded", type="rate_limit_error")
        headers = [*response_headers(response), ("retry-after", "1")]
        return Plan(429, headers, body=body_bytes(response.body), arrival=arrival, chaos=action)
    return Plan(200, [], disconnect_after_ms=0.0, arrival=arrival, chaos=action)
