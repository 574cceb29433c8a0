"""What the WebSocket families share: message keys, turn steps, answers.

A WebSocket session is a transcript of messages in both directions. Replay
needs three things from a family, all sans-IO:

* a **message key** for client messages (:class:`MessageKey`): the message's
  type and its content without the fields that differ on every run (event
  ids, ids the server made up and the client echoes), so a replayed client
  turn can be compared with the recorded one;
* its **protocol error** (:meth:`WebSocketProvider.protocol_error`): how the
  real service says "this message makes no sense here" (an ``error`` event,
  or a close with a policy code);
* a **conversation** (:class:`WSConversation`) that answers client messages
  from fixtures: it keeps the session state (instructions, tools, items),
  asks for an answer when the client requests a response (``ask``: a
  canonical request for the one matcher) and renders that answer in the
  family's own server messages.

Nothing here opens a socket or knows the matcher.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmock_proxy import nesting
from llmock_proxy.canonical import CanonicalRequest, Summary, canonical_json
from llmock_proxy.cassette.model import (
    Payload,
    Request,
    Response,
    WebSocketSession,
    WSClose,
    WSMessage,
    compact_json,
)
from llmock_proxy.providers.base import Provider, RenderOptions

# RFC 6455 close codes the families use.
CLOSE_NORMAL = 1000
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
# A close frame's reason must fit in 123 bytes of UTF-8.
MAX_CLOSE_REASON_BYTES = 123
_PREVIEW_CHARS = 100


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame can carry, on a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return text
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


def message_json(message: WSMessage) -> Any:
    """The message as parsed JSON, whatever its stored form (a JSON payload,
    text that parses, a binary frame holding UTF-8 JSON); None otherwise."""
    payload = message.payload
    if payload.kind == "json":
        return payload.value
    raw = payload.to_bytes()
    if raw.strip()[:1] not in (b"{", b"["):
        return None
    try:
        return nesting.loads(raw)
    except ValueError:  # not JSON, or too deep to read (TooDeep)
        return None


def without_keys(value: Any, keys: frozenset[str]) -> Any:
    """``value`` with every mapping entry named in ``keys`` removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without_keys(v, keys) for v in value]
    return value


def preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class MessageKey:
    """A client message as replay compares it: type and canonical content."""

    type: str
    content: str  # canonical JSON of the stable fields, or a digest of raw bytes
    preview: str  # a short readable rendering, for error messages and logs

    def describe(self) -> str:
        return f"{self.type} {self.preview}"


def json_server_message(value: Any, *, binary: bool = False) -> WSMessage:
    """A server message carrying ``value`` as compact JSON."""
    return WSMessage(from_client=False, payload=Payload.json(value), binary=binary)


# -- turns ---------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorAnswer:
    """A hand-written error answer (status, message, type, code, param)."""

    status: int
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


@dataclass(frozen=True)
class TurnAnswer:
    """What the matcher found for a turn: a summary to render, an error to
    report, or a miss (``miss`` says what was looked for and what was close)."""

    summary: Summary | None = None
    error: ErrorAnswer | None = None
    miss: str | None = None
    chunk_size: int = 0
    # The HTTP status a miss answers with (where the protocol's error event carries one).
    miss_status: int = 421


@dataclass
class TurnStep:
    """What the server does in answer to one client message.

    ``send`` goes out at once (acknowledgements such as ``session.updated``).
    ``ask`` is set when the message asks for a model answer: the caller runs
    the matcher on it and hands the result to :meth:`WSConversation.respond`.
    ``close`` ends the session after ``send``; ``problem`` is the protocol
    error this step reports, for the log.

    ``interrupt`` is set by a message that stops an answer in progress (a
    Realtime ``response.cancel``): when an earlier answer of the session is
    still going out, the rest of it is dropped and ``interrupt`` is sent
    instead of ``send`` (and ``problem`` does not apply); when it is all
    out, ``send`` goes (the service's "nothing to cancel" error). Only the
    connection knows which, so both are rendered.
    """

    send: list[WSMessage] = field(default_factory=list)
    ask: CanonicalRequest | None = None
    close: WSClose | None = None
    problem: str | None = None
    interrupt: list[WSMessage] | None = None


class WSConversation(Protocol):
    """A fixture-driven session of one family (see the module docstring)."""

    def opening(self) -> list[WSMessage]:
        """Server messages sent as soon as the connection is up."""
        ...

    def receive(self, message: WSMessage) -> TurnStep:
        """One client message."""
        ...

    def respond(self, answer: TurnAnswer) -> TurnStep:
        """The answer to the last ``ask``, rendered as server messages."""
        ...


# -- the provider side ---------------------------------------------------------------


class WebSocketProvider(Provider):
    """Base of the WebSocket families: keys, protocol errors, conversations."""

    stream_form = "websocket"
    # Fields that change on every run without changing the meaning.
    volatile_keys: frozenset[str] = frozenset()

    def is_stream_request(self, request: Request) -> bool:
        return True

    # -- client messages -------------------------------------------------------

    def message_type(self, value: Any) -> str:
        """The type of a parsed JSON message."""
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            return value["type"]
        return "json"

    def stream_item_type(self, payload: Any, name: str | None = None, *, fallback: str = "message") -> str:
        """A server message is typed as replay types client messages
        (:meth:`message_type`); one that is not a JSON object by its frame
        (``fallback``: text or binary)."""
        return self.message_type(payload) if isinstance(payload, dict) else fallback

    def message_key(self, message: WSMessage) -> MessageKey:
        value = message_json(message)
        if value is not None:
            stable = without_keys(value, self.volatile_keys)
            text = canonical_json(stable)
            return MessageKey(self.message_type(value), text, preview(text))
        raw = message.payload.to_bytes()
        if message.binary:
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
            return MessageKey("binary", digest, f"({len(raw)} bytes)")
        text = raw.decode("utf-8", "replace")
        return MessageKey("text", text, preview(repr(text)))

    def turn_done(self, value: Any) -> bool:
        """Whether this parsed server message ends the model's turn (the client
        may speak again). False when the family does not say: callers then
        learn the end of a turn from a recording."""
        return False

    def sent_on_connect(self, message: WSMessage) -> bool:
        """Whether the service sends this server message on connect,
        whatever the client does (so replay sends it before any client turn)."""
        return False

    # -- errors --------------------------------------------------------------------

    def protocol_error(self, text: str, *, client_message: WSMessage | None = None) -> TurnStep:
        """The service's own way of refusing a client message. By default: a
        close with the policy-violation code and ``text`` as the reason."""
        return TurnStep(close=WSClose(CLOSE_POLICY_VIOLATION, close_reason(text), "server"), problem=text)

    # -- fixtures ----------------------------------------------------------------------

    def conversation(self, request: Request) -> WSConversation | None:
        """A fixture-driven session for the upgrade ``request``; None when the
        family cannot answer from fixtures."""
        return None

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool = True,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        """One answer as the server messages of one turn: a 101 whose
        transcript holds them (and the close, when the answer ends the session)."""
        step = self.render_conversation(request).respond(
            TurnAnswer(summary=summary, chunk_size=options.chunk_size)
        )
        return Response(status=101, websocket=WebSocketSession(messages=step.send, close=step.close))

    def render_conversation(self, request: CanonicalRequest) -> WSConversation:
        """A session whose next :meth:`~WSConversation.respond` answers
        ``request``'s turn (what :meth:`render` renders with)."""
        raise NotImplementedError

    def summarize(self, request: Request, response: Response) -> Summary:
        if response.websocket is None:
            return Summary()
        return self.summarize_messages(
            [m for m in response.websocket.messages if not m.from_client],
            [m for m in response.websocket.messages if m.from_client],
        )

    def summarize_messages(self, server: list[WSMessage], client: list[WSMessage]) -> Summary:
        return Summary()


def json_values(messages: Iterable[WSMessage]) -> list[Any]:
    """Parsed JSON of each message that holds JSON, in order."""
    out = []
    for message in messages:
        value = message_json(message)
        if value is not None:
            out.append(value)
    return out


def event_ids(prefix: str, seed: str) -> Iterator[str]:
    """Endless ids ``prefix`` + 20 hex digits, derived from ``seed``: stable across replays."""
    counter = 0
    while True:
        yield prefix + hashlib.sha256(f"{prefix}|{seed}|{counter}".encode()).hexdigest()[:20]
        counter += 1


__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "ErrorAnswer",
    "MessageKey",
    "TurnAnswer",
    "TurnStep",
    "WSConversation",
    "WebSocketProvider",
    "close_reason",
    "compact_json",
    "json_server_message",
    "json_values",
    "message_json",
    "without_keys",
]
