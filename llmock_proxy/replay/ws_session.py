"""WebSocket replay, sans-IO: what the server says next, and when.

A WebSocket session is replayed turn by turn. :func:`open_replay` looks at
the upgrade request and decides how its session is answered:

* **Recorded sessions** (cassette interactions whose response is a
  WebSocket transcript, matched on the upgrade like any request: family,
  model, fingerprint). Each transcript is cut into turns: the server messages
  before the first client message (sent on connect), then each client
  message with the server messages that followed it. A client message is
  compared with the next recorded one by the family's message key (type and
  content without event ids and server-made ids); when it fits, that turn's
  server messages go out at their recorded offsets after it (times the
  timing factor). Several recordings can fit the same upgrade: which one is
  followed is decided by the client's messages so far; among equals, the
  n-th connection prefers the n-th recording (then the last repeats), as
  with recorded HTTP answers. A message that fits no candidate is answered
  with the family's protocol error, naming what was expected; the recorded
  close (code, reason, side) is reproduced.
* **Fixtures**, when nothing was recorded for the upgrade and the family can
  hold a conversation (Realtime, Responses over WebSocket, Gemini Live): the
  family's conversation keeps the session state and, when the client asks
  for an answer, the one matcher picks the fixture; its ``latency``,
  ``streamingProfile``, ``truncateAfterChunks``, ``disconnectAfterMs`` and
  ``closeCode`` / ``closeReason`` options shape the delivery.
* Otherwise the upgrade is refused with the family's error envelope, as an
  HTTP miss.

Nothing here touches a socket: :class:`WSReplay` turns client messages into
:class:`Outgoing` actions (a message or a close, at an offset after the
message that caused it); :mod:`llmock_proxy.replay.ws_server` puts them on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmock_proxy.canonical import CanonicalRequest
from llmock_proxy.cassette.model import (
    Request,
    Response,
    WebSocketSession,
    WSClose,
    WSMessage,
)
from llmock_proxy.match.matcher import RequestView
from llmock_proxy.providers._ws_common import (
    ErrorAnswer,
    MessageKey,
    TurnAnswer,
    TurnStep,
    WebSocketProvider,
    WSConversation,
)
from llmock_proxy.providers.base import split_url
from llmock_proxy.providers.catalog import GENERIC, identify
from llmock_proxy.replay.fixture import Fixture, FixtureOptions
from llmock_proxy.replay.session import Miss, ReplaySession, request_context

# Close codes that never travel in a close frame (RFC 6455 7.4.1): the
# recording saw the connection end without one; replay drops it the same way.
_NO_FRAME_CODES = frozenset({1005, 1006, 1015})
_WIRE_CACHE_KEY = "websocket_turns"


@dataclass(frozen=True)
class Outgoing:
    """One thing the server does: send ``message``, or close (``close.code``
    None: drop the connection without a close frame), ``at_ms`` after the
    client message (or the connect) that caused it."""

    at_ms: float
    message: WSMessage | None = None
    close: WSClose | None = None
    # What goes in the frame (str: text, bytes: binary), when already encoded.
    encoded: bytes | str | None = None
    # Part of a fixture answer, which a later client message may interrupt
    # (a Realtime response.cancel): the rest of it is then not sent.
    answer: bool = False

    @property
    def frame(self) -> bytes | str:
        if self.encoded is not None:
            return self.encoded
        assert self.message is not None
        return self.message.content


@dataclass
class Reply:
    """The server's answer to a connect or a client message, and the one
    log line it deserves (a protocol error or a fixture miss).

    ``interrupt`` (a Realtime ``response.cancel``): when an answer is still
    going out, the connection drops the rest of it and carries out these
    actions instead of ``actions`` (``problem`` then does not apply).
    """

    actions: list[Outgoing] = field(default_factory=list)
    problem: str | None = None
    interrupt: list[Outgoing] | None = None


class GenericWebSocket(WebSocketProvider):
    """Any other WebSocket API: recorded sessions only; a client message
    that fits no recording closes the session with 1008 (policy violation)."""

    family = "generic"

    def canonical(self, request: Request) -> CanonicalRequest:
        return GENERIC.canonical(request)

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        return GENERIC.error(status, message, type=type, code=code)


_GENERIC_WS = GenericWebSocket()


def websocket_provider(request: Request) -> WebSocketProvider:
    """The family that speaks this upgrade's protocol (generic when unknown)."""
    provider = identify(request.method, request.url, request.headers)
    return provider if isinstance(provider, WebSocketProvider) else _GENERIC_WS


def is_websocket_upgrade(headers: dict[str, str] | Any) -> bool:
    """Whether request headers ask for a WebSocket upgrade."""
    return str(headers.get("upgrade", "")).lower() == "websocket"


# -- recorded transcripts, cut into turns ---------------------------------------------


@dataclass(frozen=True)
class RecordedTurn:
    """A client message (None for the opening) and the server messages that
    followed it, with offsets relative to it."""

    client: WSMessage | None
    key: MessageKey | None
    server: tuple[tuple[float, WSMessage], ...]
    # The server messages as they go on the wire, encoded once per recording.
    frames: tuple[bytes | str, ...] = ()


@dataclass(frozen=True)
class RecordedSession:
    fixture: Fixture
    turns: tuple[RecordedTurn, ...]  # turns[0] is the opening
    close: WSClose | None  # a close by the server, with t relative to the last turn
    close_turn: int  # the turn the server's close belongs to
    subprotocol: str | None
    headers: tuple[tuple[str, str], ...]

    @property
    def source(self) -> str:
        return self.fixture.source

    @property
    def client_turns(self) -> int:
        return len(self.turns) - 1

    @classmethod
    def of(cls, fixture: Fixture, provider: WebSocketProvider) -> RecordedSession:
        """The fixture's transcript in turns (computed once per fixture and family)."""
        cache_key = f"{_WIRE_CACHE_KEY}:{provider.family}"
        cached = fixture.wire_cache.get(cache_key)
        if cached is None:
            cached = fixture.wire_cache[cache_key] = cls._build(fixture, provider)
        return cached

    @classmethod
    def _build(cls, fixture: Fixture, provider: WebSocketProvider) -> RecordedSession:
        assert fixture.interaction is not None and fixture.interaction.response is not None
        response = fixture.interaction.response
        transcript = response.websocket or WebSocketSession()
        opening: list[tuple[float, WSMessage]] = []
        turns: list[tuple[WSMessage, list[tuple[float, WSMessage]]]] = []
        hoisting = True  # messages the service sends on connect, whatever the client does
        for message in transcript.messages:
            if message.from_client:
                turns.append((message, []))
                continue
            if hoisting and provider.sent_on_connect(message):
                opening.append((message.t, message))
                continue
            hoisting = False
            if turns:
                client = turns[-1][0]
                turns[-1][1].append((message.t - client.t, message))
            else:
                opening.append((message.t, message))
        close = transcript.close
        close_turn = len(turns)
        if close is not None and close.by == "server":
            # The close belongs to the turn of the last client message before it.
            if close.t is not None:
                close_turn = sum(1 for client, _ in turns if client.t <= close.t)
            start = turns[close_turn - 1][0].t if close_turn > 0 else 0.0
            close = WSClose(close.code, close.reason, "server", max(0.0, (close.t or start) - start))
        else:
            close = None
        headers = tuple(
            (k, v) for k, v in response.headers.items()
            if k not in _UNSENT_101_HEADERS
        )
        return cls(
            fixture=fixture,
            turns=(
                RecordedTurn(None, None, tuple(opening), _frames(opening)),
                *(RecordedTurn(c, provider.message_key(c), tuple(s), _frames(s)) for c, s in turns),
            ),
            close=close,
            close_turn=close_turn,
            subprotocol=transcript.subprotocol,
            headers=headers,
        )


def _frames(messages: list[tuple[float, WSMessage]]) -> tuple[bytes | str, ...]:
    return tuple(message.content for _, message in messages)


# Handshake and framing headers the server computes itself.
_UNSENT_101_HEADERS = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions",
     "content-length", "transfer-encoding", "date", "server"}
)


def _close_action(close: WSClose, at_ms: float) -> Outgoing:
    code = None if close.code is None or close.code in _NO_FRAME_CODES else close.code
    return Outgoing(at_ms, close=WSClose(code, close.reason, "server"))


class _RecordedFollower:
    """Follows the recorded sessions that still fit the client's messages."""

    def __init__(self, provider: WebSocketProvider, sessions: list[RecordedSession], factor: float) -> None:
        self.provider = provider
        self.alive = sessions
        self.followed = sessions[0]
        self.factor = factor
        self.position = 0  # client messages accepted so far

    def opening(self) -> Reply:
        return Reply(self._turn_actions(0))

    def _turn_actions(self, index: int) -> list[Outgoing]:
        session = self.followed
        turn = session.turns[index]
        factor = self.factor
        actions = [Outgoing(at * factor, message=m, encoded=frame)
                   for (at, m), frame in zip(turn.server, turn.frames)]
        if session.close is not None and session.close_turn == index:
            actions.append(_close_action(session.close, (session.close.t or 0.0) * self.factor))
        return actions

    def receive(self, message: WSMessage) -> Reply:
        key = self.provider.message_key(message)
        nxt = self.position + 1
        fitting = [s for s in self.alive if nxt < len(s.turns) and s.turns[nxt].key == key]
        if not fitting:
            text = self._mismatch(key)
            step = self.provider.protocol_error(text, client_message=message)
            return Reply(_step_actions(step), problem=text)
        if self.followed not in fitting:
            self.followed = fitting[0]
        self.alive = fitting
        self.position = nxt
        return Reply(self._turn_actions(nxt))

    def _mismatch(self, key: MessageKey) -> str:
        nxt = self.position + 1
        got = key.describe()
        expected: list[str] = []
        for session in [self.followed, *[s for s in self.alive if s is not self.followed]][:3]:
            if nxt < len(session.turns):
                turn_key = session.turns[nxt].key
                assert turn_key is not None
                want = turn_key.describe()
                if turn_key.type == key.type:
                    want, got = _where_they_differ(turn_key, key)
                expected.append(f"{want} ({session.source}, client message {nxt} of {session.client_turns})")
            else:
                expected.append(f"no further client message ({session.source} ends after "
                                f"{session.client_turns})")
        return (f"llmock-proxy: client message {nxt} ({got}) fits no recorded session; "
                f"expected {' or '.join(expected)}")


def _where_they_differ(expected: MessageKey, actual: MessageKey, context: int = 24, width: int = 90) -> tuple[str, str]:
    """Both messages shown from a little before their first difference."""
    a, b = expected.content, actual.content
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, first - context)

    def excerpt(text: str) -> str:
        piece = text[start : start + width]
        return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")

    return f"{expected.type} {excerpt(a)}", f"{actual.type} {excerpt(b)}"


class _FixtureFollower:
    """Answers a family's conversation from fixtures through the one matcher."""

    def __init__(
        self,
        provider: WebSocketProvider,
        conversation: WSConversation,
        session: ReplaySession,
        path: str,
        factor: float,
        upgrade_note: str | None = None,
        context: str | None = None,
    ) -> None:
        self.provider = provider
        self.conversation = conversation
        self.session = session
        self.path = path
        self.factor = factor
        self.upgrade_note = upgrade_note
        self.context = context  # the upgrade's context header: every turn's match.context

    def opening(self) -> Reply:
        return Reply([Outgoing(0.0, message=m) for m in self.conversation.opening()])

    def receive(self, message: WSMessage) -> Reply:
        step = self.conversation.receive(message)
        actions = _step_actions(step)
        problem = step.problem
        if step.ask is not None and step.close is None:
            answer, options = self._answer(step.ask)
            answered = self.conversation.respond(answer)
            actions += self._timed(answered, options)
            problem = problem or answered.problem
        interrupt = None if step.interrupt is None else [Outgoing(0.0, message=m) for m in step.interrupt]
        return Reply(actions, problem=problem, interrupt=interrupt)

    def _answer(self, canonical: CanonicalRequest) -> tuple[TurnAnswer, FixtureOptions]:
        session = self.session
        view = RequestView(canonical, "GET", self.path, self.context)
        found = session.matcher.find(view, session.counts)
        if found is None:
            session.misses += 1
            near = session.matcher.near_misses(view, session.counts)
            text = f"llmock-proxy: no fixture matches this turn ({view.describe()})"
            if near:
                text += "; closest: " + " | ".join(n.describe() for n in near)
            elif self.upgrade_note:
                text += f"; {self.upgrade_note}"
            else:
                text += "; nothing is loaded for it"
            return TurnAnswer(miss=text, miss_status=session.miss_status), FixtureOptions()
        key = found.candidate.key
        session.counts[key] = session.counts.get(key, 0) + 1
        session.hits += 1
        fixture = found.fixture
        chunk_size = fixture.options.chunk_size or 0
        if fixture.error is not None:
            error = fixture.error
            return TurnAnswer(error=ErrorAnswer(error.status, error.message, error.type, error.code, error.param),
                              chunk_size=chunk_size), fixture.options
        return TurnAnswer(summary=fixture.summary, chunk_size=chunk_size), fixture.options

    def _timed(self, step: TurnStep, options: FixtureOptions) -> list[Outgoing]:
        """The answer's messages paced by the fixture's options."""
        offsets = _fixture_offsets(options, len(step.send))
        actions: list[Outgoing] = []
        drop_at = options.disconnect_after_ms  # a behaviour, never scaled
        drop = WSClose(options.close_code, options.close_reason or "", "server")
        for sent, (at, message) in enumerate(zip(offsets, step.send)):
            at *= self.factor
            if drop_at is not None and drop_at <= at:
                actions.append(Outgoing(drop_at, close=drop, answer=True))
                return actions
            actions.append(Outgoing(at, message=message, answer=True))
            if options.truncate_after_chunks is not None and sent + 1 >= options.truncate_after_chunks:
                actions.append(Outgoing(at, close=drop, answer=True))
                return actions
        if drop_at is not None:
            actions.append(Outgoing(drop_at, close=drop, answer=True))
        elif step.close is not None:
            actions.append(Outgoing(actions[-1].at_ms if actions else 0.0, close=step.close, answer=True))
        return actions


def _step_actions(step: TurnStep) -> list[Outgoing]:
    actions = [Outgoing(0.0, message=m) for m in step.send]
    if step.close is not None and step.ask is None:
        actions.append(_close_action(step.close, 0.0))
    return actions


def _fixture_offsets(options: FixtureOptions, count: int) -> list[float]:
    """llmock's streaming physics for ``count`` messages: ``latency`` before
    each, or ``streamingProfile`` (first after ``ttft``, then ``1000/tps``
    apart); no delays when the fixture names neither. Jitter is not applied:
    a WebSocket turn has few messages and tests want them reproducible."""
    profile = options.streaming_profile
    offsets = []
    now = 0.0
    for index in range(count):
        gap = options.latency or 0.0
        if profile is not None:
            if index == 0 and profile.ttft is not None:
                gap = profile.ttft
            elif profile.tps:
                gap = 1000.0 / profile.tps
        now += max(0.0, gap)
        offsets.append(now)
    return offsets


# -- the session -----------------------------------------------------------------------


@dataclass
class WSReplay:
    """One replayed WebSocket connection (see the module docstring)."""

    provider: WebSocketProvider
    request: Request
    follower: _RecordedFollower | _FixtureFollower
    subprotocol: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def source(self) -> str:
        if isinstance(self.follower, _RecordedFollower):
            return self.follower.followed.source
        return "fixtures"

    def opening(self) -> Reply:
        return self.follower.opening()

    def receive(self, message: WSMessage) -> Reply:
        return self.follower.receive(message)


def recorded_candidates(session: ReplaySession, view: RequestView, *, count: bool = True) -> list[Fixture]:
    """The recorded WebSocket sessions whose upgrade matches, the preferred
    one first (the n-th use of a candidate prefers its n-th recording).
    Counts the use, like any match (unless ``count`` is false)."""
    preferred: list[Fixture] = []
    others: list[Fixture] = []
    for candidate in session.matcher.candidates:
        fixtures = [
            f for f in candidate.fixtures
            if f.recorded and f.interaction is not None and f.interaction.response is not None
            and f.interaction.response.websocket is not None
        ]
        if not fixtures or not all(c.test(view) for c in candidate.criteria):
            continue
        use = session.counts.get(candidate.key, 0)
        if count:
            session.counts[candidate.key] = use + 1
        first = candidate.pick(use)
        if first in fixtures:
            preferred.append(first)
        others.extend(f for f in fixtures if f is not first)
    return preferred + others


def open_replay(session: ReplaySession, request: Request, factor: float = 1.0) -> WSReplay | Miss:
    """How this upgrade's session is answered; a :class:`Miss` refuses it."""
    provider = websocket_provider(request)
    path = split_url(request.url)[1]
    try:
        canonical = provider.canonical(request)
    except Exception as exc:
        session.misses += 1
        return Miss(provider, request, None, problem=f"{type(exc).__name__}: {exc}")
    context = request_context(request.headers)
    view = RequestView(canonical, request.method, path, context)
    recorded = recorded_candidates(session, view)
    if recorded:
        session.hits += 1
        sessions = [RecordedSession.of(f, provider) for f in recorded]
        follower: _RecordedFollower | _FixtureFollower = _RecordedFollower(provider, sessions, factor)
        first = sessions[0]
        return WSReplay(provider, request, follower, subprotocol=first.subprotocol, headers=first.headers)
    conversation = provider.conversation(request)
    if conversation is None:
        session.misses += 1
        return Miss(provider, request, view, session.matcher.near_misses(view, session.counts),
                    status=session.miss_status)
    near = session.matcher.near_misses(view, session.counts)
    note = None
    if any(n.match.get("family") == canonical.family for n in near):
        note = "recorded sessions of this family differ on the upgrade: " + " | ".join(
            n.describe() for n in near if n.match.get("family") == canonical.family)
    follower = _FixtureFollower(provider, conversation, session, path, factor, upgrade_note=note, context=context)
    return WSReplay(provider, request, follower, subprotocol=_offered_subprotocol(request))


def can_answer(session: ReplaySession, request: Request) -> bool:
    """Whether replay has something for this upgrade: a recorded session, or
    hand-written fixtures and a family that can hold a conversation. (Used
    where a miss may be forwarded instead of refused.)"""
    provider = websocket_provider(request)
    try:
        canonical = provider.canonical(request)
    except Exception:
        return False
    view = RequestView(canonical, request.method, split_url(request.url)[1], request_context(request.headers))
    if recorded_candidates(session, view, count=False):
        return True
    has_fixtures = any(not f.recorded for c in session.matcher.candidates for f in c.fixtures)
    return has_fixtures and provider.conversation(request) is not None


def _offered_subprotocol(request: Request) -> str | None:
    """For a fixture-driven session: the client's first offered subprotocol,
    unless it carries a credential (browsers pass API keys as subprotocols)."""
    offered = [p.strip() for p in request.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    for protocol in offered:
        if "key" not in protocol.lower() and "token" not in protocol.lower():
            return protocol
    return None


__all__ = [
    "GenericWebSocket",
    "Outgoing",
    "RecordedSession",
    "Reply",
    "WSReplay",
    "can_answer",
    "is_websocket_upgrade",
    "open_replay",
    "recorded_candidates",
    "websocket_provider",
]
