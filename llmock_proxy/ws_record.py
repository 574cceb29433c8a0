"""Recording a WebSocket session: the transcript and the finished interaction.

Sans-mitmproxy: the carrier (the record addon's ``websocket_*`` hooks, a
test) reports each message and the close::

    transcript = WebSocketTranscript(started=upgrade_request_time)
    transcript.add(from_client, content, is_text=..., at=timestamp)   # every message
    session = transcript.finish(code=1000, reason="", by="client", at=..., subprotocol=...)
    interaction = websocket_interaction(recording, session)

Times are wall-clock seconds (what mitmproxy stamps messages with); ``t`` is
milliseconds since the upgrade request was sent. Text frames holding JSON
are stored as parsed JSON (readable, and matched by meaning); other text as
text; binary frames keep their exact bytes (JSON only when it re-encodes to
the same bytes, otherwise text or base64). The interaction starts from the
recording of the upgrade request (already stripped of hop-by-hop headers)
and goes through the same derived ``match``, provider summary and redaction
as every recorded interaction.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Literal

from .cassette import Interaction, Payload, Request, Response, WebSocketSession, WSClose, WSMessage
from .matcher import derive_match
from .providers import GENERIC

log = logging.getLogger(__name__)

# Handshake headers that are a per-connection nonce or the server's framing,
# not part of what was asked or answered. The request keeps ``upgrade``: it is
# what tells a WebSocket family from the HTTP API on the same path.
REQUEST_HANDSHAKE_HEADERS = frozenset({"sec-websocket-key"})
RESPONSE_HANDSHAKE_HEADERS = frozenset({"sec-websocket-accept", "upgrade"})


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000.0, 1)


@dataclass
class WebSocketTranscript:
    """One session's messages as they pass, and how it ended."""

    started: float  # wall-clock seconds when the upgrade request was sent
    messages: list[WSMessage] = field(default_factory=list)

    def add(self, from_client: bool, content: bytes | str, *, is_text: bool, at: float) -> WSMessage:
        raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        payload = Payload.from_bytes(raw) if is_text else Payload.from_bytes(raw, exact=True)
        if not is_text and payload.kind == "text" and not _printable(raw):
            payload = Payload.from_bytes(raw, "application/octet-stream", exact=True)
        message = WSMessage(from_client=from_client, payload=payload, binary=not is_text, t=_ms(at - self.started))
        self.messages.append(message)
        return message

    def finish(
        self,
        *,
        code: int | None,
        reason: str | None = None,
        by: Literal["client", "server"] | None = None,
        at: float | None = None,
        subprotocol: str | None = None,
    ) -> WebSocketSession:
        close = WSClose(
            code=int(code) if code is not None else None,
            reason=reason or "",
            by=by,
            t=_ms(at - self.started) if at is not None else None,
        )
        return WebSocketSession(messages=list(self.messages), subprotocol=subprotocol or None, close=close)


def _printable(raw: bytes) -> bool:
    """Text that reads as text in a cassette: no control bytes but whitespace."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= " " or c in "\t\n\r" for c in text)


def websocket_interaction(
    recording: object,
    session: WebSocketSession,
    *,
    status: int = 101,
    response_headers: dict[str, str] | None = None,
    incomplete: str | None = None,
) -> Interaction:
    """The finished interaction for a recorded session.

    ``recording`` is the :class:`~llmock_proxy.recorder.Recording` of the
    upgrade request (its request, provider, redactor and start stamp are
    used); the response is the 101 with ``session`` as its transcript.
    """
    request: Request = getattr(recording, "request")
    provider = getattr(recording, "provider")
    redactor = getattr(recording, "redactor")
    headers = response_headers if response_headers is not None else dict(getattr(recording, "response_headers", {}))
    stored_request = Request(
        method=request.method,
        url=request.url,
        headers={k: v for k, v in request.headers.items() if k not in REQUEST_HANDSHAKE_HEADERS},
        body=request.body,
    )
    response = Response(
        status=status,
        headers={k: v for k, v in headers.items() if k not in RESPONSE_HANDSHAKE_HEADERS},
        websocket=session,
    )
    interaction = Interaction(
        request=stored_request,
        response=response,
        recorded_at=getattr(recording, "recorded_at", None),
        incomplete=incomplete,
    )
    try:
        canonical = provider.canonical(stored_request)
    except Exception as exc:
        log.warning("%s: %s upgrade not understood (%s); matching it as generic", request.url, provider.family, exc)
        canonical = GENERIC.canonical(stored_request)
    interaction.match = copy.deepcopy(derive_match(canonical))
    try:
        summary = provider.summarize(stored_request, response).to_dict()
    except Exception as exc:
        log.warning("%s: cannot summarize the %s session: %s", request.url, provider.family, exc)
        summary = {}
    interaction.summary = copy.deepcopy(summary) or None
    return redactor.redact_interaction(interaction)


__all__ = ["REQUEST_HANDSHAKE_HEADERS", "RESPONSE_HANDSHAKE_HEADERS", "WebSocketTranscript", "websocket_interaction"]
