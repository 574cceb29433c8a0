"""OpenAI's WebSocket APIs: Realtime and the Responses API over WebSocket.

Realtime
    ``GET .../v1/realtime?model=...`` upgraded to a WebSocket (Azure:
    ``/openai/realtime?api-version=...&deployment=...``). Every message is a
    JSON event with a ``type``. The server opens with ``session.created``;
    the client configures the session (``session.update``), adds items to
    the conversation (``conversation.item.create``: user messages,
    ``function_call_output`` items) and asks for an answer
    (``response.create``); the server streams the answer as
    ``response.created``, ``response.output_item.added``,
    ``response.content_part.added``, ``response.output_text.delta`` ...
    ``response.done``. Clients that send ``OpenAI-Beta: realtime=v1`` speak
    the beta protocol, whose events are named ``response.text.delta``,
    ``response.audio_transcript.delta``, ``conversation.item.created`` ...
    Errors are ``error`` events; the session stays open.

Responses over WebSocket
    ``GET .../v1/responses`` upgraded (``client.responses.connect()``). The
    client sends ``response.create`` messages (a Responses API request body
    with ``type``); the server answers each with the Responses streaming
    events (``response.created`` ... ``response.completed``) as messages.
    ``previous_response_id`` continues an earlier response of the session.

The catalog only offers upgrade requests to these providers, so ``detect``
looks at the path alone; the canonical request of an upgrade is its family
and model (the query's ``model``). Turns are compared without ``event_id``
and the ids the server made up (item, response and call ids the client
echoes back).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
    Tool,
    ToolCall,
    ToolResult,
)
from llmock_proxy.cassette.model import Payload, Request, Response, SSEEvent, WSMessage
from llmock_proxy.providers import _openai_common as common
from llmock_proxy.providers._ws_common import (
    ErrorAnswer,
    TurnAnswer,
    TurnStep,
    WebSocketProvider,
    event_ids,
    json_server_message,
    json_values,
    message_json,
)
from llmock_proxy.providers.base import (
    RenderOptions,
    arguments_json,
    object_at,
    parse_arguments,
    split_url,
    token_counts,
)
from llmock_proxy.providers.openai_responses import OpenAIResponses

# Ids that change on every run: the client echoes the server's, or makes its own.
# The events that end a turn of Responses over WebSocket (an error event too).
_RESPONSE_ENDS = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})

_VOLATILE = frozenset({"event_id", "id", "item_id", "call_id", "previous_item_id", "response_id",
                       "previous_response_id"})

_BETA_HEADER = "realtime=v1"
# Where a session or response names its output modalities: GA, beta.
_MODALITY_KEYS = ("output_modalities", "modalities")
# 100 ms of 16-bit 24 kHz mono silence: the audio a fixture's spoken answer carries.
_SILENCE = base64.b64encode(bytes(4800)).decode("ascii")


class _OpenAIWebSocket(common.OpenAIProvider, WebSocketProvider):
    """Shared by both WebSocket families: an upgrade (GET) recognised by the
    end of its path, the model from the query; a refused upgrade is a plain
    HTTP answer in OpenAI's envelope."""

    http_method = "GET"
    volatile_keys = _VOLATILE

    def error_detail(self, request: Request, response: Response) -> dict[str, Any] | None:
        # A refused upgrade is an HTTP answer in OpenAI's envelope.
        if response.websocket is None:
            return common.response_error(response)
        return super().error_detail(request, response)

    def canonical(self, request: Request) -> CanonicalRequest:
        _, _, query = split_url(request.url)
        return CanonicalRequest(
            family=self.family,
            model=query.get("model") or query.get("deployment"),
            stream=True,
        )


# -- Realtime ------------------------------------------------------------------------


class OpenAIRealtime(_OpenAIWebSocket):
    family = "openai.realtime"
    path_endings = ("/realtime",)

    def turn_done(self, value: Any) -> bool:
        return isinstance(value, dict) and value.get("type") == "response.done"

    def sent_on_connect(self, message: WSMessage) -> bool:
        value = message_json(message)
        return isinstance(value, dict) and value.get("type") in ("session.created", "conversation.created")

    def protocol_error(self, text: str, *, client_message: WSMessage | None = None) -> TurnStep:
        """An ``error`` event naming the client event it refuses; the session stays open."""
        client_event_id = None
        value = message_json(client_message) if client_message is not None else None
        if isinstance(value, dict):
            client_event_id = value.get("event_id")
        event = realtime_error_event(text, code="llmock_unexpected_event", client_event_id=client_event_id)
        return TurnStep(send=[json_server_message(event)], problem=text)

    def conversation(self, request: Request) -> RealtimeConversation:
        beta = _BETA_HEADER in request.headers.get("openai-beta", "").replace(" ", "")
        return RealtimeConversation(self.canonical(request), beta=beta)

    def render_conversation(self, request: CanonicalRequest) -> RealtimeConversation:
        conversation = RealtimeConversation(request)
        conversation.receive(WSMessage(True, Payload.json({"type": "response.create"})))
        return conversation

    def summarize_messages(self, server: list[WSMessage], client: list[WSMessage]) -> Summary:
        return _summarize_realtime(json_values(server))


def realtime_error_event(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    client_event_id: str | None = None,
    event_id: str = "event_llmock_error",
) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": event_id,
        "error": {"type": type, "code": code, "message": message, "param": None, "event_id": client_event_id},
    }


@dataclass
class _Names:
    """Event and content names: the GA protocol, or the beta one (``realtime=v1``)."""

    beta: bool

    def event(self, ga_name: str) -> str:
        if not self.beta:
            return ga_name
        return {
            "response.output_text.delta": "response.text.delta",
            "response.output_text.done": "response.text.done",
            "response.output_audio.delta": "response.audio.delta",
            "response.output_audio.done": "response.audio.done",
            "response.output_audio_transcript.delta": "response.audio_transcript.delta",
            "response.output_audio_transcript.done": "response.audio_transcript.done",
        }.get(ga_name, ga_name)

    def content_type(self, audio: bool) -> str:
        if self.beta:
            return "audio" if audio else "text"
        return "output_audio" if audio else "output_text"

    @property
    def modalities_key(self) -> str:
        return "modalities" if self.beta else "output_modalities"

    def modalities(self, *sources: dict[str, Any]) -> list[str] | None:
        """The output modalities the first of ``sources`` that names them asks
        for. The protocol's own key is read, and the other protocol's too
        (a GA client sending beta's ``modalities``, as clients written
        against llmock do, means the same)."""
        for source in sources:
            for key in _MODALITY_KEYS:
                value = source.get(key)
                if isinstance(value, list) and value:
                    return [str(m) for m in value]
        return None


@dataclass
class RealtimeConversation:
    """A fixture-driven Realtime session: session state, conversation items,
    and the answer to each ``response.create`` rendered as Realtime events."""

    upgrade: CanonicalRequest
    beta: bool = False
    session: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    _pending: dict[str, Any] | None = None
    # The last answer rendered, for a response.cancel that arrives while it is still going out.
    _last: _Answered | None = None
    _audio_bytes: int = 0
    _ids: dict[str, Iterator[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = _Names(self.beta)
        model = self.upgrade.model or "gpt-realtime"
        seed = self.upgrade.fingerprint
        self._ids = {
            prefix: event_ids(prefix, seed)
            for prefix in ("event_", "item_", "resp_", "call_", "sess_", "conv_")
        }
        if self.beta:
            self.session = {
                "id": self._id("sess_"),
                "object": "realtime.session",
                "model": model,
                "modalities": ["text", "audio"],
                "instructions": "",
                "voice": "alloy",
                "input_audio_format": "pcm16",
                "output_audio_format": "pcm16",
                "input_audio_transcription": None,
                "turn_detection": None,
                "tools": [],
                "tool_choice": "auto",
                "temperature": 0.8,
                "max_response_output_tokens": "inf",
            }
        else:
            self.session = {
                "type": "realtime",
                "object": "realtime.session",
                "id": self._id("sess_"),
                "model": model,
                "output_modalities": ["audio"],
                "instructions": "",
                "tools": [],
                "tool_choice": "auto",
                "max_output_tokens": "inf",
                "tracing": None,
                "prompt": None,
                "expires_at": 0,
                "audio": {
                    "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                              "noise_reduction": None, "turn_detection": None},
                    "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0},
                },
                "include": None,
            }
        self.conversation_id = self._id("conv_")

    def _id(self, prefix: str) -> str:
        return next(self._ids[prefix])

    def _event(self, kind: str, **fields: Any) -> WSMessage:
        return json_server_message({"type": self.names.event(kind), "event_id": self._id("event_"), **fields})

    def _error(self, message: str, *, code: str, client_event_id: Any = None) -> TurnStep:
        event = realtime_error_event(
            message, code=code, client_event_id=client_event_id, event_id=self._id("event_")
        )
        return TurnStep(send=[json_server_message(event)], problem=message)

    # -- the protocol ---------------------------------------------------------------

    def opening(self) -> list[WSMessage]:
        return [self._event("session.created", session=dict(self.session))]

    def receive(self, message: WSMessage) -> TurnStep:
        event = message_json(message)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return self._error("The client event could not be parsed as a JSON object with a type.",
                               code="invalid_json")
        kind = event["type"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            return self._error(
                f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(_HANDLERS))}.",
                code="invalid_value",
                client_event_id=event.get("event_id"),
            )
        return handler(self, event)

    def _session_update(self, event: dict[str, Any]) -> TurnStep:
        update = event.get("session")
        if not isinstance(update, dict):
            return self._error("Missing required parameter: 'session'.", code="missing_required_parameter",
                               client_event_id=event.get("event_id"))
        for key, value in update.items():
            if key in ("id", "object"):
                continue
            if key in _MODALITY_KEYS:
                key = self.names.modalities_key  # the session speaks its own protocol's name
            self.session[key] = value
        return TurnStep(send=[self._event("session.updated", session=dict(self.session))])

    def _item_create(self, event: dict[str, Any]) -> TurnStep:
        item = event.get("item")
        if not isinstance(item, dict):
            return self._error("Missing required parameter: 'item'.", code="missing_required_parameter",
                               client_event_id=event.get("event_id"))
        item = {"id": item.get("id") or self._id("item_"), "object": "realtime.item", "status": "completed",
                **{k: v for k, v in item.items() if k != "id"}}
        previous = self._insert(item, event.get("previous_item_id"))
        return TurnStep(send=self._item_added(item, previous))

    def _insert(self, item: dict[str, Any], after: Any) -> str | None:
        index = len(self.items)
        if after == "root":
            index = 0
        elif isinstance(after, str):
            for i, existing in enumerate(self.items):
                if existing.get("id") == after:
                    index = i + 1
        self.items.insert(index, item)
        return self.items[index - 1]["id"] if index > 0 else None

    def _item_added(self, item: dict[str, Any], previous: str | None) -> list[WSMessage]:
        if self.beta:
            return [self._event("conversation.item.created", previous_item_id=previous, item=item)]
        return [
            self._event("conversation.item.added", previous_item_id=previous, item=item),
            self._event("conversation.item.done", previous_item_id=previous, item=item),
        ]

    def _item_delete(self, event: dict[str, Any]) -> TurnStep:
        item_id = event.get("item_id")
        before = len(self.items)
        self.items = [i for i in self.items if i.get("id") != item_id]
        if len(self.items) == before:
            return self._error(f"Item with item_id not found: {item_id}", code="item_not_found",
                               client_event_id=event.get("event_id"))
        return TurnStep(send=[self._event("conversation.item.deleted", item_id=item_id)])

    def _item_retrieve(self, event: dict[str, Any]) -> TurnStep:
        item_id = event.get("item_id")
        for item in self.items:
            if item.get("id") == item_id:
                return TurnStep(send=[self._event("conversation.item.retrieved", item=item)])
        return self._error(f"Item with item_id not found: {item_id}", code="item_not_found",
                           client_event_id=event.get("event_id"))

    def _item_truncate(self, event: dict[str, Any]) -> TurnStep:
        return TurnStep(send=[self._event(
            "conversation.item.truncated",
            item_id=event.get("item_id"),
            content_index=event.get("content_index", 0),
            audio_end_ms=event.get("audio_end_ms", 0),
        )])

    def _audio_append(self, event: dict[str, Any]) -> TurnStep:
        audio = event.get("audio")
        if isinstance(audio, str):
            self._audio_bytes += len(audio) * 3 // 4
        return TurnStep()

    def _audio_commit(self, event: dict[str, Any]) -> TurnStep:
        item = {"id": self._id("item_"), "object": "realtime.item", "type": "message", "status": "completed",
                "role": "user", "content": [{"type": "input_audio", "transcript": None}]}
        previous = self._insert(item, None)
        self._audio_bytes = 0
        committed = self._event("input_audio_buffer.committed", previous_item_id=previous, item_id=item["id"])
        return TurnStep(send=[committed, *self._item_added(item, previous)])

    def _audio_clear(self, event: dict[str, Any]) -> TurnStep:
        self._audio_bytes = 0
        return TurnStep(send=[self._event("input_audio_buffer.cleared")])

    def _response_cancel(self, event: dict[str, Any]) -> TurnStep:
        """The last answer ends as a cancelled ``response.done`` if it is still
        going out (the connection decides: see ``TurnStep.interrupt``);
        otherwise, or when ``response_id`` names another response, the
        service's "no active response" error."""
        step = self._error("Cancellation failed: no active response found", code="response_cancel_not_active",
                           client_event_id=event.get("event_id"))
        last = self._last
        wanted = event.get("response_id")
        if last is None or (isinstance(wanted, str) and wanted and wanted != last.response_id):
            return step
        output = [{**item, "status": "incomplete"} for item in last.items]
        step.interrupt = [self._event("response.done", response=self._response_object(
            last.response_id, last.modalities, status="cancelled", output=output, usage=last.usage,
            status_details={"type": "cancelled", "reason": "client_cancelled"}))]
        return step

    def _ignore(self, event: dict[str, Any]) -> TurnStep:
        return TurnStep()

    def _response_create(self, event: dict[str, Any]) -> TurnStep:
        params = object_at(event, "response")
        self._pending = params
        instructions = params.get("instructions", self.session.get("instructions"))
        tools = params.get("tools", self.session.get("tools"))
        items = self._response_input(params)
        canonical = CanonicalRequest(
            family=self.upgrade.family,
            model=str(self.session.get("model") or self.upgrade.model or "") or None,
            system=instructions or None,
            messages=realtime_messages(items),
            tools=_tools(tools),
            stream=True,
        )
        return TurnStep(ask=canonical)

    def _response_input(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The items a response answers: the conversation, or ``response.input``."""
        given = params.get("input")
        if not isinstance(given, list):
            return self.items
        by_id = {item.get("id"): item for item in self.items}
        out = []
        for item in given:
            if isinstance(item, dict) and item.get("type") == "item_reference":
                referenced = by_id.get(item.get("id"))
                if referenced is not None:
                    out.append(referenced)
            elif isinstance(item, dict):
                out.append(item)
        return out

    # -- answers ------------------------------------------------------------------------

    def respond(self, answer: TurnAnswer) -> TurnStep:
        params = self._pending or {}
        self._pending = None
        if answer.miss is not None:
            return self._error(answer.miss, code="no_fixture_match")
        response_id = self._id("resp_")
        modalities = self.names.modalities(params, self.session) or ["text"]
        audio = "audio" in modalities
        if answer.error is not None:
            return TurnStep(send=self._failed(response_id, modalities, answer.error), problem=answer.error.message)
        summary = answer.summary or Summary()
        writer = _RealtimeWriter(self, response_id, modalities, audio, answer.chunk_size)
        messages = writer.write(summary)
        if params.get("conversation") != "none":
            for item in writer.items:
                self._insert(item, None)
        self._last = _Answered(response_id, modalities, list(writer.items), _usage(summary))
        return TurnStep(send=messages)

    def _response_object(
        self, response_id: str, modalities: list[str], *, status: str, output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None, status_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        base: dict[str, Any] = {
            "object": "realtime.response",
            "id": response_id,
            "status": status,
            "status_details": status_details,
            "output": output,
            "conversation_id": self.conversation_id,
        }
        if self.beta:
            base.update(modalities=modalities, voice="alloy", output_audio_format="pcm16", temperature=0.8,
                        max_output_tokens="inf")
        else:
            base.update(
                output_modalities=modalities,
                max_output_tokens="inf",
                audio={"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}},
            )
        base.update(usage=usage, metadata=None)
        return base

    def _failed(self, response_id: str, modalities: list[str], error: ErrorAnswer) -> list[WSMessage]:
        details = {"type": "failed", "error": {"type": error.type or common_error_type(error.status),
                                              "code": error.code, "message": error.message}}
        return [
            self._event("response.created",
                        response=self._response_object(response_id, modalities, status="in_progress", output=[])),
            self._event("response.done",
                        response=self._response_object(response_id, modalities, status="failed", output=[],
                                                       status_details=details)),
        ]


def common_error_type(status: int) -> str:
    return "server_error" if status >= 500 else "invalid_request_error"


@dataclass(frozen=True)
class _Answered:
    """An answer as a cancelled ``response.done`` repeats it."""

    response_id: str
    modalities: list[str]
    items: list[dict[str, Any]]
    usage: dict[str, Any]


_HANDLERS = {
    "session.update": RealtimeConversation._session_update,
    "conversation.item.create": RealtimeConversation._item_create,
    "conversation.item.delete": RealtimeConversation._item_delete,
    "conversation.item.retrieve": RealtimeConversation._item_retrieve,
    "conversation.item.truncate": RealtimeConversation._item_truncate,
    "input_audio_buffer.append": RealtimeConversation._audio_append,
    "input_audio_buffer.commit": RealtimeConversation._audio_commit,
    "input_audio_buffer.clear": RealtimeConversation._audio_clear,
    "output_audio_buffer.clear": RealtimeConversation._ignore,
    "transcription_session.update": RealtimeConversation._ignore,
    "response.create": RealtimeConversation._response_create,
    "response.cancel": RealtimeConversation._response_cancel,
}


@dataclass
class _RealtimeWriter:
    """The event sequence of one answer, as the Realtime server streams it."""

    conversation: RealtimeConversation
    response_id: str
    modalities: list[str]
    audio: bool
    chunk_size: int
    items: list[dict[str, Any]] = field(default_factory=list)
    _out: list[WSMessage] = field(default_factory=list)

    def emit(self, kind: str, **fields: Any) -> None:
        self._out.append(self.conversation._event(kind, **fields))

    def write(self, summary: Summary) -> list[WSMessage]:
        conv = self.conversation
        self.emit("response.created", response=conv._response_object(
            self.response_id, self.modalities, status="in_progress", output=[]))
        if summary.text or not summary.tool_calls:
            self._message(summary.text)
        for call in summary.tool_calls:
            self._function_call(call)
        finish = common.chat_finish_reason(summary)
        status, details = "completed", None
        if finish == "length":
            status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        self.emit("response.done", response=conv._response_object(
            self.response_id, self.modalities, status=status, output=self.items,
            usage=_usage(summary), status_details=details))
        return self._out

    def _previous_item_id(self) -> str | None:
        if self.items:
            return self.items[-1]["id"]
        items = self.conversation.items
        return items[-1]["id"] if items else None

    def _added(self, index: int, item: dict[str, Any]) -> None:
        conv = self.conversation
        self.emit("response.output_item.added", response_id=self.response_id, output_index=index, item=item)
        previous = self._previous_item_id()
        if conv.beta:
            self.emit("conversation.item.created", previous_item_id=previous, item=item)
        else:
            self.emit("conversation.item.added", previous_item_id=previous, item=item)

    def _done(self, index: int, item: dict[str, Any]) -> None:
        self.emit("response.output_item.done", response_id=self.response_id, output_index=index, item=item)
        if not self.conversation.beta:
            previous = self._previous_item_id()
            self.emit("conversation.item.done", previous_item_id=previous, item=item)
        self.items.append(item)

    def _message(self, text: str) -> None:
        names = self.conversation.names
        index = len(self.items)
        item_id = self.conversation._id("item_")
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
                "role": "assistant", "content": []}
        self._added(index, item)
        where = {"response_id": self.response_id, "item_id": item_id, "output_index": index, "content_index": 0}
        if self.audio:
            self.emit("response.content_part.added", **where, part={"type": "audio", "transcript": ""})
            for piece in common.chunks(text, self.chunk_size):
                self.emit("response.output_audio_transcript.delta", **where, delta=piece)
            self.emit("response.output_audio.delta", **where, delta=_SILENCE)
            self.emit("response.output_audio.done", **where)
            self.emit("response.output_audio_transcript.done", **where, transcript=text)
            part = {"type": "audio", "transcript": text}
            content = {"type": names.content_type(audio=True), "transcript": text}
        else:
            self.emit("response.content_part.added", **where, part={"type": "text", "text": ""})
            for piece in common.chunks(text, self.chunk_size):
                self.emit("response.output_text.delta", **where, delta=piece)
            self.emit("response.output_text.done", **where, text=text)
            part = {"type": "text", "text": text}
            content = {"type": names.content_type(audio=False), "text": text}
        self.emit("response.content_part.done", **where, part=part)
        self._done(index, {**item, "status": "completed", "content": [content]})

    def _function_call(self, call: ToolCall) -> None:
        conv = self.conversation
        index = len(self.items)
        item_id = conv._id("item_")
        call_id = call.id or conv._id("call_")
        arguments = arguments_json(call.arguments)
        item = {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
                "name": call.name, "call_id": call_id, "arguments": ""}
        self._added(index, item)
        where = {"response_id": self.response_id, "item_id": item_id, "output_index": index, "call_id": call_id}
        for piece in common.chunks(arguments, self.chunk_size):
            self.emit("response.function_call_arguments.delta", **where, delta=piece)
        self.emit("response.function_call_arguments.done", **where, name=call.name, arguments=arguments)
        self._done(index, {**item, "status": "completed", "arguments": arguments})


def _usage(summary: Summary) -> dict[str, Any]:
    input_tokens, output_tokens = token_counts(summary.usage)
    if not output_tokens:
        output_tokens = len(summary.text.split()) + len(summary.tool_calls)
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "image_tokens": 0,
                                "cached_tokens": 0,
                                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
        "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0},
    }


# -- reading items and transcripts ------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Text of Realtime content parts: text, input_text, output_text, transcripts."""
    out = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        for key in ("text", "transcript"):
            if isinstance(part.get(key), str):
                out.append(part[key])
                break
    return "".join(out)


def realtime_messages(items: list[dict[str, Any]]) -> list[Message]:
    """Conversation items as canonical messages (a call follows its turn's text)."""
    messages: list[Message] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = str(item.get("role") or "user")
            messages.append(Message(role=role, text=_content_text(item.get("content"))))
        elif kind == "function_call":
            call = ToolCall(name=str(item.get("name", "")), arguments=parse_arguments(item.get("arguments")),
                            id=item.get("call_id"))
            if messages and messages[-1].role == "assistant":
                messages[-1].tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(Message(role="tool", tool_results=[
                ToolResult(content=output if isinstance(output, str) else json.dumps(output),
                           tool_call_id=item.get("call_id"))]))
    return messages


def _tools(value: Any) -> list[Tool]:
    tools = []
    for raw in value if isinstance(value, list) else []:
        if isinstance(raw, dict):
            kind = str(raw.get("type", "function"))
            if kind == "function":
                tools.append(Tool(name=str(raw.get("name", "")), description=raw.get("description"),
                                  parameters=raw.get("parameters")))
            else:
                tools.append(Tool(name=kind))
    return tools


def _summarize_realtime(events: list[Any]) -> Summary:
    """The session's model output: the text of every response, every tool
    call, and the finish reason, usage and model of the last one."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    summary = Summary()
    for event in events:
        if not isinstance(event, dict):
            continue
        kind = event.get("type")
        if kind in ("session.created", "session.updated") and isinstance(event.get("session"), dict):
            model = event["session"].get("model")
            summary.model = model if isinstance(model, str) else summary.model
        elif kind == "response.done" and isinstance(event.get("response"), dict):
            response = event["response"]
            turn_calls = []
            for item in response.get("output") or []:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "message":
                    text = _content_text(item.get("content"))
                    if text:
                        texts.append(text)
                elif item.get("type") == "function_call":
                    turn_calls.append(ToolCall(name=str(item.get("name", "")),
                                               arguments=parse_arguments(item.get("arguments")),
                                               id=item.get("call_id")))
            calls.extend(turn_calls)
            status = response.get("status")
            if status == "failed":
                details = response.get("status_details") or {}
                error = details.get("error") if isinstance(details, dict) else None
                error = error if isinstance(error, dict) else {}
                summary.error = {"status": 500, "type": str(error.get("type") or "server_error"),
                                 "message": str(error.get("message") or "response failed")}
            summary.finish_reason = {"incomplete": "length", "cancelled": "cancelled",
                                     "failed": "error"}.get(str(status), "tool_calls" if turn_calls else "stop")
            if isinstance(response.get("usage"), dict):
                summary.usage = response["usage"]
        elif kind == "error" and isinstance(event.get("error"), dict) and not texts and not calls:
            error = event["error"]
            summary.error = {"status": 400, "type": str(error.get("type") or "invalid_request_error"),
                             "message": str(error.get("message") or "")}
    summary.text = "\n".join(texts)
    summary.tool_calls = calls
    return summary


# -- Responses over WebSocket ---------------------------------------------------------------

_RESPONSES_HTTP = OpenAIResponses()


class OpenAIResponsesWebSocket(_OpenAIWebSocket):
    family = "openai.responses_ws"
    path_endings = ("/responses",)

    def turn_done(self, value: Any) -> bool:
        return isinstance(value, dict) and value.get("type") in _RESPONSE_ENDS

    def protocol_error(self, text: str, *, client_message: WSMessage | None = None) -> TurnStep:
        return TurnStep(send=[json_server_message(responses_error_event(text, code="llmock_unexpected_event"))],
                        problem=text)

    def conversation(self, request: Request) -> ResponsesWSConversation:
        return ResponsesWSConversation(self.canonical(request), url=request.url)

    def render_conversation(self, request: CanonicalRequest) -> ResponsesWSConversation:
        conversation = ResponsesWSConversation(request)
        conversation._pending = request
        return conversation

    def summarize_messages(self, server: list[WSMessage], client: list[WSMessage]) -> Summary:
        """Every response of the session summarized as the HTTP Responses API
        would be, joined: all texts and tool calls, the last finish reason."""
        responses: list[list[SSEEvent]] = []
        for value in json_values(server):
            if not isinstance(value, dict) or not isinstance(value.get("type"), str):
                continue
            if value["type"] == "response.created" or not responses:
                responses.append([])
            responses[-1].append(SSEEvent(event=value["type"], data=value))
        summary = Summary()
        texts = []
        for events in responses:
            part = _RESPONSES_HTTP.summarize(Request("POST", "/v1/responses"), Response(200, events=events))
            if part.text:
                texts.append(part.text)
            summary.tool_calls.extend(part.tool_calls)
            for key in ("finish_reason", "usage", "model", "error", "reasoning"):
                if getattr(part, key) is not None:
                    setattr(summary, key, getattr(part, key))
        summary.text = "\n".join(texts)
        _error_status(summary, server)
        return summary


def _error_status(summary: Summary, server: list[WSMessage]) -> None:
    """An error event's own ``status`` is the error's status (the upgrade's is 101)."""
    if summary.error is None:
        return
    for value in json_values(server):
        if isinstance(value, dict) and value.get("type") == "error" and isinstance(value.get("status"), int):
            summary.error["status"] = value["status"]


def responses_error_event(
    message: str,
    *,
    code: str | None = None,
    type: str = "invalid_request_error",
    status: int = 400,
    param: str | None = None,
) -> dict[str, Any]:
    """An ``error`` event of Responses over WebSocket: the details under
    ``error`` and the HTTP status the same error would have had (the SDK's
    ``ResponseWsError``; the HTTP stream's flat ``code``/``message`` form is
    not what the socket sends)."""
    return {"type": "error", "status": status,
            "error": {"type": type, "code": code, "message": message, "param": param}}


@dataclass
class ResponsesWSConversation:
    """A fixture-driven Responses WebSocket: each ``response.create`` is
    answered with the Responses streaming events; ``previous_response_id``
    continues a response given earlier on this connection."""

    upgrade: CanonicalRequest
    url: str = "wss://api.openai.com/v1/responses"
    # response id -> the conversation that response ended (for previous_response_id)
    history: dict[str, list[Message]] = field(default_factory=dict)
    _pending: CanonicalRequest | None = None

    def opening(self) -> list[WSMessage]:
        return []

    def receive(self, message: WSMessage) -> TurnStep:
        event = message_json(message)
        if not isinstance(event, dict) or event.get("type") != "response.create":
            kind = event.get("type") if isinstance(event, dict) else None
            text = (f"Invalid value: {kind!r}. Supported values are: 'response.create'." if kind
                    else "The client message could not be parsed as a JSON object with a type.")
            error = responses_error_event(text, code="invalid_value" if kind else "invalid_json", param="type")
            return TurnStep(send=[json_server_message(error)], problem=text)
        body = {k: v for k, v in event.items() if k != "type"}
        http_request = Request("POST", _http_url(self.url), body=Payload.json(body))
        canonical = dataclasses.replace(_RESPONSES_HTTP.canonical(http_request), family=self.upgrade.family,
                                        stream=True)
        if canonical.model is None:
            canonical.model = self.upgrade.model
        previous = event.get("previous_response_id")
        if isinstance(previous, str):
            if previous not in self.history:
                text = f"Previous response with id '{previous}' not found."
                error = responses_error_event(text, code="previous_response_not_found",
                                              param="previous_response_id")
                return TurnStep(send=[json_server_message(error)], problem=text)
            canonical.messages = [*self.history[previous], *canonical.messages]
        self._pending = canonical
        return TurnStep(ask=canonical)

    def respond(self, answer: TurnAnswer) -> TurnStep:
        canonical = self._pending or self.upgrade
        self._pending = None
        if answer.miss is not None:
            error = responses_error_event(answer.miss, code="no_fixture_match", status=answer.miss_status)
            return TurnStep(send=[json_server_message(error)], problem=answer.miss)
        if answer.error is not None:
            given = answer.error
            error = responses_error_event(given.message, code=given.code, status=given.status,
                                          type=given.type or common_error_type(given.status), param=given.param)
            return TurnStep(send=[json_server_message(error)], problem=given.message)
        summary = answer.summary or Summary()
        rendered = _RESPONSES_HTTP.render(summary, canonical, stream=True,
                                          options=RenderOptions(chunk_size=answer.chunk_size))
        messages = [json_server_message(e.data) for e in rendered.events or [] if isinstance(e.data, dict)]
        created = next((e.data for e in rendered.events or [] if e.event == "response.created"), None)
        if isinstance(created, dict) and isinstance(created.get("response"), dict):
            reply = Message(role="assistant", text=summary.text, tool_calls=list(summary.tool_calls))
            response_id = created["response"].get("id")
            if isinstance(response_id, str):
                self.history[response_id] = [*canonical.messages, reply]
        return TurnStep(send=messages)


def _http_url(url: str) -> str:
    for ws, http in (("wss://", "https://"), ("ws://", "http://")):
        if url.startswith(ws):
            return http + url[len(ws):]
    return url


__all__ = [
    "OpenAIRealtime",
    "OpenAIResponsesWebSocket",
    "RealtimeConversation",
    "ResponsesWSConversation",
    "realtime_error_event",
    "realtime_messages",
    "responses_error_event",
]
