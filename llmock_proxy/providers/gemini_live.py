"""Gemini Live: the bidirectional WebSocket ``BidiGenerateContent`` API.

The google-genai SDK always opens ``wss://`` on one of these paths:

* AI Studio: ``/ws/google.ai.generativelanguage.{v1,v1alpha,v1beta}.GenerativeService.BidiGenerateContent``
  (``...BidiGenerateContentConstrained`` with an ephemeral token); google-genai
  3.x uses ``v1`` by default, 2.x ``v1beta``;
* Vertex AI: ``/ws/google.cloud.aiplatform.{v1,v1beta1}.LlmBidiService/BidiGenerateContent``.

The upgrade request carries no body: the model arrives later, in the first
client message. The session, message by message:

* client ``{"setup": {"model", "generationConfig", "systemInstruction", "tools"}}``;
  server ``{"setupComplete": {}}``;
* client ``{"clientContent": {"turns": [Content...], "turnComplete": true}}``
  (or ``{"realtimeInput": {"text": ...}}``); the server streams the model
  turn as ``{"serverContent": {"modelTurn": {"parts": [...]}}}`` messages,
  then ``generationComplete`` and ``turnComplete`` (with ``usageMetadata``);
* a function call is ``{"toolCall": {"functionCalls": [{id, name, args}]}}``;
  the client answers ``{"toolResponse": {"functionResponses": [{id, name, response}]}}``
  and the model's turn continues.

Client messages are protobuf JSON, so a field may be spelled in lowerCamelCase
or snake_case (google-genai sends ``client_content``, ``realtime_input``,
``tool_response``, with camelCase fields inside); both are read. Server
messages are JSON in binary frames. The service refuses a message it
cannot accept by closing the connection: 1007 for a malformed message, 1008
(policy violation) for one it will not serve, 1011 for its own failures and
exhausted quota, with the reason in the close frame; it sends no error
message. A model turn ends with ``generationComplete`` and then a message of
its own, ``{"serverContent": {"turnComplete": true}, "usageMetadata": ...}``;
a turn that pauses on a ``toolCall`` has no ``turnComplete`` (it continues
after the ``toolResponse``). Turns are compared without the function
call ids (server-made, echoed by the client) and resumption handles.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llmock_proxy.canonical import CanonicalRequest, Message, Summary, Tool, ToolCall
from llmock_proxy.cassette.model import Request, Response, WSClose, WSMessage
from llmock_proxy.providers._ws_common import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY_VIOLATION,
    TurnAnswer,
    TurnStep,
    WebSocketProvider,
    close_reason,
    event_ids,
    json_server_message,
    json_values,
    message_json,
)
from llmock_proxy.providers.base import CredentialScheme, chunk_text
from llmock_proxy.providers.gemini import (
    DEFAULT_CHUNK_SIZE,
    GEMINI_CREDENTIALS,
    GEMINI_USAGE_OBJECTS,
    google_error,
    google_error_summary,
    usage_metadata_for,
)
from llmock_proxy.providers.gemini import _messages as gemini_messages
from llmock_proxy.providers.gemini import _system_text as gemini_system_text
from llmock_proxy.providers.gemini import _tools as gemini_tools

_LIVE_PATH = re.compile(
    r"/ws/(?:"
    r"google\.ai\.generativelanguage\.v1(?:alpha|beta)?\.GenerativeService\.BidiGenerateContent(?:Constrained)?"
    r"|google\.cloud\.aiplatform\.v1(?:beta1)?\.LlmBidiService/BidiGenerateContent"
    r")$"
)

# The kinds of message either side sends (protobuf oneof members).
_MESSAGE_KINDS = frozenset({
    "setup", "clientContent", "realtimeInput", "toolResponse",
    "setupComplete", "serverContent", "toolCall", "toolCallCancellation", "goAway",
    "sessionResumptionUpdate", "voiceActivityDetectionSignal", "voiceActivity",
})

# Function call ids are made by the server and echoed by the client;
# resumption handles change on every run.
_VOLATILE = frozenset({"id", "handle"})
# 100 ms of 16-bit 24 kHz mono silence: the audio a fixture's spoken answer carries.
_SILENCE = base64.b64encode(bytes(4800)).decode("ascii")
_AUDIO_MIME = "audio/pcm;rate=24000"


def camel(name: str) -> str:
    """``client_content`` -> ``clientContent`` (protobuf JSON accepts both)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def proto_field(body: Any, name: str) -> Any:
    """``body[name]`` under its lowerCamelCase or snake_case spelling."""
    if not isinstance(body, dict):
        return None
    if name in body:
        return body[name]
    return body.get(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name))


def live_model(name: Any) -> str | None:
    """``models/gemini-x`` or ``projects/.../models/gemini-x`` -> ``gemini-x``."""
    if not isinstance(name, str) or not name:
        return None
    return name.rsplit("models/", 1)[-1]


def close_code_for_status(status: int) -> int:
    """The close code the Live service uses for an error of this HTTP status:
    1008 (policy violation) for a key or model it refuses (401, 403, 404:
    "models/x is not found for API version v1beta, or is not supported for
    bidiGenerateContent"), 1011 for quota and its own failures (429
    RESOURCE_EXHAUSTED, 5xx), 1007 for any other malformed request."""
    if status in (401, 403, 404):
        return CLOSE_POLICY_VIOLATION
    if status == 429 or status >= 500:
        return CLOSE_INTERNAL_ERROR
    return CLOSE_INVALID_PAYLOAD


class GeminiLive(WebSocketProvider):
    family = "gemini.live"
    volatile_keys = _VOLATILE

    def detect(self, method: str, host: str, path: str) -> bool:
        return method == "GET" and _LIVE_PATH.search(path) is not None

    def canonical(self, request: Request) -> CanonicalRequest:
        # The model is only named in the setup message, after the upgrade.
        return CanonicalRequest(family=self.family, model=None, stream=True)

    usage_objects = GEMINI_USAGE_OBJECTS

    def message_type(self, value: Any) -> str:
        """The message's kind: its one top-level field (``setup``,
        ``serverContent`` ...). ``usageMetadata`` rides along with the others,
        and so may fields the service adds later: a known kind wins."""
        if isinstance(value, dict):
            keys = [camel(str(k)) for k in value]
            for key in keys:
                if key in _MESSAGE_KINDS:
                    return key
            named = [k for k in keys if k != "usageMetadata"] or keys
            if named:
                return named[0]
        return "json"

    def turn_done(self, value: Any) -> bool:
        """A model turn ends with ``turnComplete``, or pauses on a tool call."""
        if not isinstance(value, dict):
            return False
        kind = self.message_type(value)
        if kind == "toolCall":
            return True
        content = value.get("serverContent") or value.get("server_content")
        return kind == "serverContent" and isinstance(content, dict) and bool(
            content.get("turnComplete") or content.get("turn_complete")
        )

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        return GEMINI_CREDENTIALS

    def conversation(self, request: Request) -> LiveConversation:
        return LiveConversation(self.canonical(request))

    def render_conversation(self, request: CanonicalRequest) -> LiveConversation:
        """A session already set up, so one model turn renders as Live server messages."""
        return LiveConversation(request, setup={"model": request.model or ""})

    def summarize_messages(self, server: list[WSMessage], client: list[WSMessage]) -> Summary:
        summary = _summarize_live(json_values(server))
        for value in json_values(client):
            if isinstance(value, dict) and isinstance(value.get("setup"), dict):
                summary.model = live_model(proto_field(value["setup"], "model")) or summary.model
        return summary

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        # A refused upgrade is an ordinary HTTP response in Google's envelope.
        return google_error(status, message, type)

    def error_detail(self, request: Request, response: Response) -> dict[str, Any] | None:
        if response.websocket is not None:
            return super().error_detail(request, response)
        return google_error_summary(response.json, response.status)


@dataclass
class LiveConversation:
    """A fixture-driven Live session: the setup, the turns so far, and each
    model turn rendered as ``serverContent`` / ``toolCall`` messages."""

    upgrade: CanonicalRequest
    setup: dict[str, Any] | None = None
    messages: list[Message] = field(default_factory=list)
    _pending: CanonicalRequest | None = None
    _ids: Iterator[str] | None = None

    def __post_init__(self) -> None:
        self._ids = event_ids("function-call-", self.upgrade.fingerprint)

    # -- the protocol ---------------------------------------------------------------

    def opening(self) -> list[WSMessage]:
        return []

    def _refuse(self, code: int, text: str) -> TurnStep:
        return TurnStep(close=WSClose(code, close_reason(text), "server"), problem=text)

    def receive(self, message: WSMessage) -> TurnStep:
        value = message_json(message)
        if not isinstance(value, dict) or len(value) != 1:
            return self._refuse(CLOSE_INVALID_PAYLOAD, "Invalid JSON payload received: expected one of setup, "
                                "clientContent, realtimeInput, toolResponse.")
        kind, body = next(iter(value.items()))
        kind = camel(kind)
        if kind == "setup":
            if self.setup is not None:
                return self._refuse(CLOSE_INVALID_PAYLOAD, "setup may only be sent once, as the first message.")
            self.setup = body if isinstance(body, dict) else {}
            return TurnStep(send=[_server({"setupComplete": {}})])
        if self.setup is None:
            return self._refuse(CLOSE_INVALID_PAYLOAD, f"The first message must be setup, got {kind}.")
        if not isinstance(body, dict):
            body = {}
        if kind == "clientContent":
            self.messages.extend(gemini_messages(proto_field(body, "turns")))
            return self._ask() if proto_field(body, "turnComplete") else TurnStep()
        if kind == "realtimeInput":
            text = proto_field(body, "text")
            if isinstance(text, str) and text:
                self.messages.append(Message(role="user", text=text))
                return self._ask()
            return TurnStep()  # audio, video and activity signals carry no text to match
        if kind == "toolResponse":
            responses = proto_field(body, "functionResponses")
            parts = [{"functionResponse": r} for r in responses if isinstance(r, dict)] if isinstance(
                responses, list) else []
            self.messages.extend(gemini_messages([{"role": "user", "parts": parts}]))
            return self._ask()
        return self._refuse(CLOSE_INVALID_PAYLOAD, f"Invalid JSON payload received. Unknown name \"{kind}\".")

    def _ask(self) -> TurnStep:
        setup = self.setup or {}
        self._pending = CanonicalRequest(
            family=self.upgrade.family,
            model=live_model(proto_field(setup, "model")),
            system=gemini_system_text(proto_field(setup, "systemInstruction")),
            messages=list(self.messages),
            tools=_tools(proto_field(setup, "tools")),
            stream=True,
        )
        return TurnStep(ask=self._pending)

    @property
    def _audio(self) -> bool:
        modalities = proto_field(proto_field(self.setup, "generationConfig"), "responseModalities")
        return isinstance(modalities, list) and "AUDIO" in [str(m).upper() for m in modalities]

    # -- answers ------------------------------------------------------------------------

    def respond(self, answer: TurnAnswer) -> TurnStep:
        self._pending = None
        if answer.miss is not None:
            return self._refuse(CLOSE_POLICY_VIOLATION, answer.miss)
        if answer.error is not None:
            return self._refuse(close_code_for_status(answer.error.status), answer.error.message)
        summary = answer.summary or Summary()
        out: list[WSMessage] = []
        text = summary.text
        for piece in chunk_text(text, answer.chunk_size, DEFAULT_CHUNK_SIZE):
            if self._audio:
                content = {"modelTurn": {"parts": [{"inlineData": {"mimeType": _AUDIO_MIME, "data": _SILENCE}}]},
                           "outputTranscription": {"text": piece}}
            else:
                content = {"modelTurn": {"parts": [{"text": piece}]}}
            out.append(_server({"serverContent": content}))
        calls = [ToolCall(name=c.name, arguments=c.arguments if c.arguments is not None else {},
                          id=c.id or next(self._ids)) for c in summary.tool_calls]  # type: ignore[arg-type]
        self.messages.append(Message(role="assistant", text=text, tool_calls=calls))
        if calls:
            function_calls = [{"id": c.id, "name": c.name, "args": c.arguments} for c in calls]
            out.append(_server({"toolCall": {"functionCalls": function_calls}}))
            return TurnStep(send=out)
        out.append(_server({"serverContent": {"generationComplete": True}}))
        out.append(_server({"serverContent": {"turnComplete": True},
                            "usageMetadata": usage_metadata_for(summary.usage)}))
        return TurnStep(send=out)


def _server(value: dict[str, Any]) -> WSMessage:
    return json_server_message(value, binary=True)


def _tools(raw: Any) -> list[Tool]:
    entries = [
        {camel(k): v for k, v in entry.items()} if isinstance(entry, dict) else entry
        for entry in (raw if isinstance(raw, list) else [])
    ]
    return gemini_tools(entries)


def _summarize_live(messages: list[Any]) -> Summary:
    """The session's model output: every model turn's text (one line per
    turn), every function call, and the last turn's usage."""
    summary = Summary()
    turns: list[str] = []
    current: list[str] = []
    for value in messages:
        if not isinstance(value, dict):
            continue
        content = value.get("serverContent")
        if isinstance(content, dict):
            turn = content.get("modelTurn")
            parts = turn.get("parts") if isinstance(turn, dict) else None
            for part in parts if isinstance(parts, list) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
                    current.append(part["text"])
            transcription = content.get("outputTranscription")
            if isinstance(transcription, dict) and isinstance(transcription.get("text"), str):
                current.append(transcription["text"])
            if content.get("turnComplete"):
                if current:
                    turns.append("".join(current))
                current = []
                summary.finish_reason = "STOP"
        call = value.get("toolCall")
        if isinstance(call, dict):
            for fc in call.get("functionCalls") or []:
                if isinstance(fc, dict):
                    summary.tool_calls.append(ToolCall(name=str(fc.get("name", "")), arguments=fc.get("args"),
                                                       id=fc.get("id")))
            summary.finish_reason = "tool_calls"
        if isinstance(value.get("usageMetadata"), dict):
            summary.usage = value["usageMetadata"]
    if current:
        turns.append("".join(current))
    summary.text = "\n".join(turns)
    return summary


__all__ = ["GeminiLive", "LiveConversation", "camel", "close_code_for_status", "live_model", "proto_field"]
