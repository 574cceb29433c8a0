"""Send one recorded request to a live endpoint and capture the answer as a cassette response.

HTTP answers go through the recorder (:mod:`llmock_proxy.record.recorder`), the
same tee the record addon uses: content-encoding is undone and SSE, NDJSON
and EventStream bodies are decoded by the same codecs, item by item with
their ``t``. The result is an :class:`Interaction` shaped exactly like a
recorded one (match, summary, redaction), so it can be compared with the
recorded shape and, with ``--update``, written back.

WebSocket sessions replay the recorded client turns: after connecting, and
after each client message, server messages are collected until the turn is
over: as many turn-ending messages as the recorded turn had, as the family's
provider tells them (``turn_done``: Realtime's ``response.done``, Gemini
Live's ``turnComplete`` or ``toolCall``); for a turn without one, until the
message that ended the recorded turn arrives again (its type, or the keys
only it had), or as many messages as the recording had; in any case no
longer than the turn's time limit. Ids the server made up and
the client echoes (a tool result's ``call_id``, ``previous_response_id``, a
Live function call's ``id``) are swapped for the ones the live server made
up, so a tool round trip is not refused for naming the recording's ids.

The request goes out with the caller's headers (credentials filled in by the
canary); the interaction built from it starts from the *recorded* request,
so a credential never enters a captured interaction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from llmock_proxy.cassette.model import (
    Interaction,
    Payload,
    Request,
    WebSocketSession,
    WSClose,
    WSMessage,
    compact_json,
)
from llmock_proxy.providers._ws_common import WebSocketProvider, message_json
from llmock_proxy.providers.base import Provider
from llmock_proxy.providers.catalog import GENERIC, grammar_of
from llmock_proxy.record.recorder import (
    Recorder,
    WebSocketTranscript,
    stored_headers,
)

# Headers the WebSocket client library writes itself for the handshake.
WEBSOCKET_HANDSHAKE_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)


@dataclass(frozen=True)
class LiveRequest:
    """What actually goes on the wire for one recorded request."""

    url: str  # the live URL (after any --upstream redirect)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None


def websocket_url(url: str) -> str:
    """ws(s):// for a URL recorded as http(s):// (or already ws(s)://)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def _header_pairs(raw: object) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]  # type: ignore[attr-defined]


async def capture_http(
    session: aiohttp.ClientSession,
    recorded: Request,
    live: LiveRequest,
    *,
    recorder: Recorder,
    timeout: float,
) -> Interaction:
    """Send ``live`` and build the interaction of its answer.

    ``session`` must not decompress (``auto_decompress=False``): the recorder
    undoes the content-encoding itself, as it does when recording. A timeout
    or transport failure comes back as the interaction's ``error`` (nothing
    arrived) or ``incomplete`` (the body broke off).
    """
    recording = recorder.start(recorded.method, recorded.url, recorded.headers, live.body)
    try:
        async with asyncio.timeout(timeout):
            async with session.request(
                recorded.method, live.url, headers=live.headers, data=live.body, allow_redirects=False
            ) as resp:
                if recording.response_started(resp.status, _header_pairs(resp.raw_headers)):
                    async for chunk in resp.content.iter_any():
                        recording.feed(chunk)
                    recording.feed(b"")
                    return recording.finish()
                return recording.finish(await resp.read())
    except TimeoutError:
        return recording.fail(f"timed out after {timeout:g} s")
    except aiohttp.ClientError as exc:
        return recording.fail(f"{type(exc).__name__}: {exc}")


Mark = tuple[str, frozenset[str]]


def message_mark(message: WSMessage, provider: Provider) -> Mark:
    """What tells one server message from another in a turn: its type and,
    for a message wrapping one object under its type (Gemini Live's
    ``{"serverContent": {"turnComplete": true}}``), that object's keys."""
    kind = message_type(message, provider)
    payload = message_json(message)
    inner = payload.get(kind) if isinstance(payload, dict) else None
    return kind, frozenset(inner) if isinstance(inner, dict) else frozenset()


@dataclass(frozen=True)
class Turn:
    """The server messages the recording had after one client message (or
    after connecting, when ``client`` is None)."""

    client: WSMessage | None
    replies: tuple[WSMessage, ...] = ()

    def types(self, provider: Provider) -> list[str]:
        return [message_type(m, provider) for m in self.replies]

    def terminator(self, provider: Provider) -> Mark | None:
        """What marks the turn's last reply out from the others: its type
        when no other reply has it (``response.done``), else the keys only it
        had (Live's ``serverContent`` with ``turnComplete``) — the message that
        ends the turn however many deltas came before. None when nothing
        does."""
        if not self.replies:
            return None
        kind, keys = message_mark(self.replies[-1], provider)
        others = [message_mark(m, provider)[1] for m in self.replies[:-1] if message_type(m, provider) == kind]
        if not others:
            return kind, frozenset()
        distinct = keys - frozenset().union(*others)
        return (kind, distinct) if distinct else None


def ends_turn(message: WSMessage, terminator: Mark, provider: Provider) -> bool:
    """Whether a live message is the turn's terminator (its type, with the
    keys that marked the recorded one out)."""
    kind, keys = message_mark(message, provider)
    return kind == terminator[0] and keys >= terminator[1]


def message_type(message: WSMessage, provider: Provider) -> str:
    """The message's type as the family's provider reads it (JSON in binary frames too)."""
    return provider.stream_item_type(message_json(message), fallback="binary" if message.binary else "text")


def turns(session: WebSocketSession) -> list[Turn]:
    """The recorded transcript cut at each client message."""
    out = [Turn(None)]
    for message in session.messages:
        if message.from_client:
            out.append(Turn(message))
        else:
            last = out[-1]
            out[-1] = Turn(last.client, (*last.replies, message))
    return out


@dataclass
class EchoedIds:
    """The ids the live server made up in place of the recorded ones.

    A recorded client turn may echo an id the server made up earlier in the
    session: a tool result's ``call_id``, ``previous_response_id``, a Live
    function call's ``id``. Sent as recorded, the live service would refuse
    it (``previous_response_not_found``) and the canary would report drift
    that is not there. Recorded and live server messages of the same type
    are paired in order and walked side by side; a string under one of the
    family's volatile keys that differs is an id to swap in client turns.
    """

    keys: frozenset[str]
    recorded: dict[str, list[object]] = field(default_factory=dict)  # type -> payloads, in order
    live_count: dict[str, int] = field(default_factory=dict)
    live_for: dict[str, str] = field(default_factory=dict)  # recorded id -> live id
    provider: Provider = GENERIC  # reads the messages' types

    @classmethod
    def of(cls, family: str, session: WebSocketSession) -> EchoedIds:
        provider = grammar_of(family)
        keys = provider.volatile_keys if isinstance(provider, WebSocketProvider) else frozenset()
        ids = cls(keys=frozenset(keys) - {"event_id"}, provider=provider)
        for message in session.messages:
            if not message.from_client:
                ids.recorded.setdefault(message_type(message, provider), []).append(message_json(message))
        return ids

    def learn(self, message: WSMessage) -> None:
        """Pair a live server message with the recorded one of its type."""
        if not self.keys:
            return
        kind = message_type(message, self.provider)
        index = self.live_count.get(kind, 0)
        self.live_count[kind] = index + 1
        recorded = self.recorded.get(kind, [])
        if index < len(recorded):
            self._pair(recorded[index], message_json(message))

    def _pair(self, recorded: object, live: object) -> None:
        if isinstance(recorded, dict) and isinstance(live, dict):
            for key, value in recorded.items():
                if key not in live:
                    continue
                other = live[key]
                if key in self.keys and isinstance(value, str) and isinstance(other, str):
                    if value != other:
                        self.live_for.setdefault(value, other)
                else:
                    self._pair(value, other)
        elif isinstance(recorded, list) and isinstance(live, list):
            for a, b in zip(recorded, live):
                self._pair(a, b)

    def _swap(self, value: object) -> object:
        if isinstance(value, dict):
            return {
                k: self.live_for.get(v, v) if k in self.keys and isinstance(v, str) else self._swap(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._swap(v) for v in value]
        return value

    def apply(self, message: WSMessage) -> WSMessage:
        """The client message with the recorded ids swapped for the live ones."""
        if not self.live_for:
            return message
        value = message_json(message)
        if value is None:
            return message
        swapped = self._swap(value)
        if swapped == value:
            return message
        if message.payload.kind == "json":
            payload = Payload.json(swapped)
        else:  # JSON kept as text or exact bytes: re-encoded compactly
            payload = Payload.from_bytes(compact_json(swapped).encode("utf-8"), exact=message.binary)
        return WSMessage(message.from_client, payload, binary=message.binary, t=message.t)


@dataclass
class _Session:
    """A live session being transcribed, and how it ended."""

    transcript: WebSocketTranscript
    close: WSClose | None = None

    ids: EchoedIds = field(default_factory=lambda: EchoedIds(frozenset()))

    def add(self, data: str | bytes, *, from_client: bool) -> WSMessage:
        message = self.transcript.add(from_client, data, is_text=isinstance(data, str), at=time.time())
        if not from_client:
            self.ids.learn(message)
        return message

    def closed(self, code: int | None, reason: str, by: Literal["client", "server"]) -> None:
        self.close = WSClose(code=code, reason=reason, by=by, t=time.time())


async def capture_websocket(
    session: aiohttp.ClientSession,
    recorded: Interaction,
    live: LiveRequest,
    *,
    recorder: Recorder,
    timeout: float,
    turn_timeout: float | None = None,
) -> Interaction:
    """Replay the recorded client turns of a WebSocket session against ``live.url``
    and return the interaction holding the live transcript (built, like a
    recorded session, by :meth:`llmock_proxy.record.recorder.Recording.finish_websocket`)."""
    assert recorded.response is not None and recorded.response.websocket is not None
    script = recorded.response.websocket
    per_turn = min(timeout, turn_timeout if turn_timeout is not None else timeout)
    headers = [(k, v) for k, v in live.headers if k.lower() not in WEBSOCKET_HANDSHAKE_HEADERS]
    protocols = (script.subprotocol,) if script.subprotocol else ()
    recording = recorder.start(recorded.request.method, recorded.request.url, recorded.request.headers)
    family = str(recorded.match.get("family") or "generic")
    live_session = _Session(WebSocketTranscript(started=time.time()), ids=EchoedIds.of(family, script))
    deadline = time.monotonic() + timeout
    status, response_headers, subprotocol = 101, {}, None
    incomplete: str | None = None
    try:
        # Turns are bounded by ``deadline``; the outer bound covers connect and close.
        async with asyncio.timeout(timeout + 5.0), session.ws_connect(
            websocket_url(live.url),
            headers=headers,
            protocols=protocols,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=min(timeout, 5.0)),
            autoping=True,
        ) as ws:
            handshake = getattr(ws, "_response", None)
            if handshake is not None:
                status = handshake.status
                response_headers = stored_headers(_header_pairs(handshake.raw_headers))
            subprotocol = ws.protocol
            open_ = True
            for turn in turns(script):
                if not open_:
                    break
                if turn.client is not None:
                    client = live_session.ids.apply(turn.client)
                    if client.binary:
                        await ws.send_bytes(client.payload.to_bytes())
                    else:
                        await ws.send_str(client.payload.to_bytes().decode("utf-8"))
                    live_session.add(client.content, from_client=True)
                open_ = await _collect(ws, live_session, turn, deadline, per_turn)
            if open_ and script.close is not None and script.close.by == "server":
                # The server ended the recorded session: wait for it to do so again.
                open_ = await _collect(ws, live_session, None, deadline, per_turn)
            if open_:
                await ws.close()
                live_session.closed(ws.close_code, "", "client")
    except aiohttp.WSServerHandshakeError as exc:
        # Refused before the upgrade: an ordinary HTTP answer (401, 404, ...).
        recording.response_started(exc.status, list((exc.headers or {}).items()), streamed=False)
        return recording.finish(b"")
    except TimeoutError:
        if live_session.transcript.messages:
            incomplete = f"timed out after {timeout:g} s"
        else:
            return recording.fail(f"timed out after {timeout:g} s")
    except aiohttp.ClientError as exc:
        if live_session.transcript.messages:
            incomplete = f"{type(exc).__name__}: {exc}"
        else:
            return recording.fail(f"{type(exc).__name__}: {exc}")
    close = live_session.close or WSClose()
    transcript = live_session.transcript.finish(
        code=close.code, reason=close.reason, by=close.by, at=close.t, subprotocol=subprotocol
    )
    return recording.finish_websocket(
        transcript, status=status, response_headers=response_headers, incomplete=incomplete
    )


async def _collect(
    ws: aiohttp.ClientWebSocketResponse,
    live: _Session,
    turn: Turn | None,
    deadline: float,
    per_turn: float,
) -> bool:
    """Receive the server's replies to one turn: until the turn's terminator
    arrived (or, without one, as many messages as recorded), the turn's time
    is up, or the session ends; ``turn`` None waits for the server to close.
    Returns whether the session is still open."""
    provider = live.ids.provider
    # The family says which messages end a model turn: the live turn is over
    # after as many as the recorded one had (a client message may start more
    # than one response). For a family that does not say, the recorded turn
    # does: the type, or the keys, only its last reply had.
    ends = provider.turn_done if isinstance(provider, WebSocketProvider) else None
    turn_ends = sum(1 for m in turn.replies if ends(message_json(m))) if ends and turn is not None else 0
    live_ends = 0
    terminator = turn.terminator(provider) if turn is not None and not turn_ends else None
    expected = len(turn.replies) if turn is not None else None
    received = 0
    turn_deadline = min(deadline, time.monotonic() + per_turn)
    while expected is None or (terminator is not None or turn_ends or received < expected):
        remaining = turn_deadline - time.monotonic()
        if remaining <= 0:
            return True
        try:
            msg = await asyncio.wait_for(ws.receive(), remaining)
        except TimeoutError:
            return True
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            message = live.add(msg.data, from_client=False)
            received += 1
            if turn_ends and ends is not None and ends(message_json(message)):
                live_ends += 1
                if live_ends == turn_ends:
                    return True
            if terminator is not None and ends_turn(message, terminator, provider):
                return True
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = ws.close_code if ws.close_code is not None else (msg.data if isinstance(msg.data, int) else None)
            live.closed(code, str(msg.extra or ""), "server")
            return False
        elif msg.type == aiohttp.WSMsgType.ERROR:
            raise aiohttp.ClientError(f"WebSocket error: {ws.exception() or msg.data}")
    return True
