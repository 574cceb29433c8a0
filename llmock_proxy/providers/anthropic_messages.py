"""Anthropic Messages API: ``POST /v1/messages``.

The story of one exchange:

1. The client posts ``{model, system?, messages, tools?, stream?, ...}``.
   ``system`` is a string or a list of text blocks; each message's
   ``content`` is a string or a list of blocks (``text``, ``tool_use``,
   ``tool_result``, ``image``, ``document``, ``thinking``...).
2. Without ``stream`` the answer is one JSON ``message`` whose ``content``
   lists ``text`` / ``tool_use`` / ``thinking`` blocks, with ``stop_reason``
   and ``usage``.
3. With ``stream`` the answer is SSE, and the SDK dispatches on the
   ``event:`` names: ``message_start`` first, ``ping`` now and then, then per
   content block ``content_block_start``, ``content_block_delta``
   (``text_delta``, ``input_json_delta``, ``thinking_delta``...),
   ``content_block_stop``; then ``message_delta`` (``stop_reason``, cumulative
   ``usage``) and ``message_stop``. A failure mid-stream is an ``error`` event.
4. Errors are ``{"type": "error", "error": {"type", "message"}}``.

``/v1/messages/count_tokens`` is a different API and is not handled here.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
    Tool,
    ToolCall,
    ToolResult,
)
from llmock_proxy.cassette.model import (
    Payload,
    Request,
    Response,
    SSEEvent,
    compact_json,
)
from llmock_proxy.providers.base import (
    COMMON_CATEGORICAL_FIELDS,
    OPENAI_FINISH_REASONS,
    CredentialScheme,
    Provider,
    RenderOptions,
    answer_parts,
    chunk_text,
    json_digest,
    object_at,
    parse_arguments,
    request_json,
    token_counts,
    turn_messages,
)

DEFAULT_CHUNK_SIZE = 20

STOP_REASONS = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
     "model_context_window_exceeded"}
)

# Other families' finish reasons (compared lower-case), for rendering a
# summary recorded elsewhere.
_FOREIGN_STOP_REASONS = {
    "stop": "end_turn",
    "complete": "end_turn",
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "tool_calls": "tool_use",
    "tool_call": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "content_filtered": "refusal",
    "guardrail_intervened": "refusal",
    "safety": "refusal",
    "recitation": "refusal",
    "prohibited_content": "refusal",
    "blocklist": "refusal",
    "spii": "refusal",
}

ERROR_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STATUS_BY_ERROR_TYPE = {v: k for k, v in ERROR_TYPES_BY_STATUS.items()}

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_JSON_HEADERS = {"content-type": "application/json"}


class AnthropicMessages(Provider):
    family = "anthropic.messages"
    stream_form = "sse"
    # Stream events are typed by their SSE event names (message_start ...).
    categorical_fields = COMMON_CATEGORICAL_FIELDS | {"stop_reason"}

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        return (CredentialScheme(("ANTHROPIC_API_KEY",), header="x-api-key", prefix=""),)

    # -- 1. which requests are ours: POST .../v1/messages ---------------------

    path_endings = ("/v1/messages",)

    # -- 2. the request, canonical --------------------------------------------

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        model = body.get("model")
        return CanonicalRequest(
            family=self.family,
            model=model if isinstance(model, str) else None,
            system=_system_text(body.get("system")),
            messages=_messages(body.get("messages")),
            tools=[_tool(t) for t in body.get("tools") or [] if isinstance(t, dict)],
            response_format=_response_format(body),
            stream=body.get("stream") is True,
        )

    # -- 3. the response, collapsed -------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        if response.events is not None:
            return _summarize_events(response.events, response.status)
        body = response.json
        if isinstance(body, dict) and (body.get("type") == "error" or response.status >= 400):
            return Summary(error=_error_of(body, response.status))
        if isinstance(body, dict):
            return _summarize_message(body)
        if response.status >= 400:  # a gateway's HTML or text error page
            text = response.body.to_bytes().decode("utf-8", "replace") if response.body else ""
            return Summary(error=_error_of({"error": {"message": text}}, response.status))
        return Summary()

    # -- 4. a summary, rendered -----------------------------------------------

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        if summary.error:
            return self.error(
                int(summary.error.get("status") or 500),
                str(summary.error.get("message") or ""),
                type=str(summary.error.get("type") or "invalid_request_error"),
            )
        message = _message_envelope(summary, request)
        blocks = _content_blocks(summary)
        if not stream:
            message["content"] = blocks
            return Response(status=200, headers=dict(_JSON_HEADERS), body=Payload.json(message))
        events = _stream_events(message, blocks, options.chunk_size)
        return Response(status=200, headers=dict(_SSE_HEADERS), events=events)

    # -- 5. errors, in Anthropic's envelope -----------------------------------

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        # The base default says nothing about the status; Anthropic's error
        # type follows the status, so derive it unless a caller chose one.
        # Anthropic's envelope has no code field.
        error_type = type
        if type == "invalid_request_error" and status != 400:
            error_type = ERROR_TYPES_BY_STATUS.get(status, "api_error" if status >= 500 else type)
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        return Response(status=status, headers=dict(_JSON_HEADERS), body=Payload.json(body))


# -- request helpers -------------------------------------------------------------


def _block_texts(blocks: Any) -> str:
    """Text of a content value: a string, or the ``text`` blocks of a list."""
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        return ""
    return "".join(
        b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"
    )


def _system_text(system: Any) -> str | None:
    if system is None:
        return None
    return _block_texts(system)


def _tool_result_content(content: Any) -> Any:
    """A string stays a string; a block list becomes its text, so the two
    spellings of the same result compare equal. Images are left out."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return _block_texts(content)


def _messages(raw: Any) -> list[Message]:
    messages: list[Message] = []
    tool_names: dict[str, str] = {}  # tool_use id -> name, to name the results
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        role = "assistant" if item.get("role") == "assistant" else "user"
        content = item.get("content")
        if not isinstance(content, list):
            messages.append(Message(role=role, text=content if isinstance(content, str) else ""))
            continue
        calls: list[ToolCall] = []
        results: list[ToolResult] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_use":
                call_id = block.get("id")
                name = str(block.get("name", ""))
                if isinstance(call_id, str):
                    tool_names[call_id] = name
                calls.append(ToolCall(name=name, arguments=block.get("input"), id=call_id))
            elif kind == "tool_result":
                use_id = block.get("tool_use_id")
                results.append(
                    ToolResult(
                        content=_tool_result_content(block.get("content")),
                        tool_call_id=use_id,
                        name=tool_names.get(use_id) if isinstance(use_id, str) else None,
                        is_error=block.get("is_error") is True,
                    )
                )
            # image, document, thinking, redacted_thinking, server tool blocks:
            # they do not decide which recording answers, and carry volatile
            # signatures or large payloads.
        messages += turn_messages(role, _block_texts(content), calls, results)
    return messages


def _tool(raw: dict[str, Any]) -> Tool:
    description = raw.get("description")
    if "input_schema" in raw:
        parameters = raw.get("input_schema")
    else:
        # Server tools (web search, code execution...) are told apart by type.
        parameters = {k: v for k, v in raw.items() if k not in ("name", "description", "cache_control")}
    return Tool(
        name=str(raw.get("name", raw.get("type", ""))),
        description=description if isinstance(description, str) else None,
        parameters=parameters,
    )


def _response_format(body: dict[str, Any]) -> Any:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        fmt = body.get("output_format")  # the structured-outputs beta spelling
    return fmt if isinstance(fmt, dict) else None


# -- response helpers ------------------------------------------------------------


def _error_of(body: dict[str, Any], status: int) -> dict[str, Any]:
    err = object_at(body, "error")
    err_type = str(err.get("type") or ERROR_TYPES_BY_STATUS.get(status, "api_error"))
    if status < 400:  # an error event inside a 200 stream
        status = _STATUS_BY_ERROR_TYPE.get(err_type, 500)
    return {"status": status, "type": err_type, "message": str(err.get("message", ""))}


def _summarize_message(body: dict[str, Any]) -> Summary:
    summary = Summary(
        finish_reason=body.get("stop_reason"),
        usage=body.get("usage") if isinstance(body.get("usage"), dict) else None,
        model=body.get("model"),
    )
    reasoning: list[str] = []
    for block in body.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            summary.text += str(block.get("text", ""))
        elif kind == "tool_use":
            summary.tool_calls.append(
                ToolCall(name=str(block.get("name", "")), arguments=block.get("input"), id=block.get("id"))
            )
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
    summary.reasoning = "".join(reasoning) or None
    return summary


class _StreamCollector:
    """Folds the SSE events of one streamed message into a :class:`Summary`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.summary = Summary()
        self.usage: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}  # index -> {type, text, json, call}
        self.reasoning: list[str] = []

    def feed(self, name: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return  # comments, keep-alives, malformed data: nothing to learn
        kind = name or data.get("type")
        if kind == "message_start":
            message = object_at(data, "message")
            self.summary.model = message.get("model")
            self._merge_usage(message.get("usage"))
        elif kind == "content_block_start":
            self._start(data.get("index"), data.get("content_block"))
        elif kind == "content_block_delta":
            self._delta(data.get("index"), data.get("delta"))
        elif kind == "content_block_stop":
            self._stop(data.get("index"))
        elif kind == "message_delta":
            delta = object_at(data, "delta")
            if delta.get("stop_reason") is not None:
                self.summary.finish_reason = delta["stop_reason"]
            self._merge_usage(data.get("usage"))
        elif kind == "error":
            self.summary.error = _error_of(data, self.status)
        # ping, message_stop and unknown events carry no content.

    def _merge_usage(self, usage: Any) -> None:
        # message_delta usage is cumulative: later values overwrite.
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if v is not None})

    def _start(self, index: Any, block: Any) -> None:
        if not isinstance(block, dict):
            return
        state: dict[str, Any] = {"type": block.get("type"), "json": ""}
        if block.get("type") == "text":
            state["text"] = str(block.get("text", ""))
        elif block.get("type") == "thinking":
            state["text"] = str(block.get("thinking", ""))
        elif block.get("type") == "tool_use":
            state["call"] = ToolCall(
                name=str(block.get("name", "")), arguments=block.get("input"), id=block.get("id")
            )
            self.summary.tool_calls.append(state["call"])
        self.blocks[_index(index)] = state

    def _delta(self, index: Any, delta: Any) -> None:
        state = self.blocks.get(_index(index))
        if state is None or not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            state["text"] = state.get("text", "") + str(delta.get("text", ""))
        elif kind == "thinking_delta":
            state["text"] = state.get("text", "") + str(delta.get("thinking", ""))
        elif kind == "input_json_delta":
            state["json"] += str(delta.get("partial_json", ""))

    def _stop(self, index: Any) -> None:
        state = self.blocks.pop(_index(index), None)
        if state is not None:
            self._close(state)

    def _close(self, state: dict[str, Any]) -> None:
        if state["type"] == "text":
            self.summary.text += state.get("text", "")
        elif state["type"] == "thinking":
            self.reasoning.append(state.get("text", ""))
        elif state["type"] == "tool_use" and state["json"]:
            state["call"].arguments = parse_arguments(state["json"])

    def finish(self) -> Summary:
        # A stream cut off before content_block_stop still tells what it said.
        for index in sorted(self.blocks):
            self._close(self.blocks[index])
        self.blocks.clear()
        self.summary.usage = self.usage or None
        self.summary.reasoning = "".join(self.reasoning) or None
        return self.summary


def _index(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _summarize_events(events: list[SSEEvent], status: int) -> Summary:
    collector = _StreamCollector(status)
    for event in events:
        collector.feed(event.event, event.data)
    return collector.finish()


# -- rendering helpers -----------------------------------------------------------


def stop_reason_for(summary: Summary) -> str:
    """The Anthropic ``stop_reason`` for a summary recorded in any family, or
    given in OpenAI's vocabulary by a hand-written answer."""
    reason = summary.finish_reason
    if reason in STOP_REASONS:
        return reason
    if reason in OPENAI_FINISH_REASONS:
        return _FOREIGN_STOP_REASONS[reason]
    if summary.tool_calls:
        return "tool_use"
    return _FOREIGN_STOP_REASONS.get((reason or "").lower(), "end_turn")


def usage_for(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic ``usage`` from a usage mapping in any family's vocabulary."""
    usage = usage or {}
    # Anthropic's own usage passes through whole (cache counts and all); the
    # Responses API shares the key names but also counts a total.
    if "input_tokens" in usage and "output_tokens" in usage and "total_tokens" not in usage:
        return dict(usage)

    input_tokens, output_tokens = token_counts(usage)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens}


def _stable_id(prefix: str, *parts: Any) -> str:
    """Ids that are the same on every replay of the same summary."""
    return prefix + json_digest(list(parts), 24)


def _message_envelope(summary: Summary, request: CanonicalRequest) -> dict[str, Any]:
    return {
        "id": summary.response_id or _stable_id("msg_", summary.to_dict()),
        "type": "message",
        "role": "assistant",
        "model": summary.model or request.model or "",
        "content": [],
        "stop_reason": stop_reason_for(summary),
        "stop_sequence": None,
        "usage": usage_for(summary.usage),
    }


def thinking_signature(reasoning: str) -> str:
    """A stand-in for the signature the API puts on a thinking block: opaque
    base64 like the real one, never empty (a client sends the block back with
    it on the next turn of a tool loop), the same on every replay."""
    return base64.b64encode(hashlib.sha256(reasoning.encode()).digest()).decode("ascii")


def _content_blocks(summary: Summary) -> list[dict[str, Any]]:
    """The thinking first, then text and tool use as the answer orders them."""
    blocks: list[dict[str, Any]] = []
    if summary.reasoning:
        signature = thinking_signature(summary.reasoning)
        blocks.append({"type": "thinking", "thinking": summary.reasoning, "signature": signature})
    for part in answer_parts(summary):
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
            continue
        call = summary.tool_calls[part]
        arguments = call.arguments if call.arguments is not None else {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id or _stable_id("toolu_", part, call.name, arguments),
                "name": call.name,
                "input": arguments,
            }
        )
    return blocks


def _pieces(text: str, size: int) -> list[str]:
    """At least one piece: a block's delta is sent even for empty text."""
    return chunk_text(text, size, DEFAULT_CHUNK_SIZE) or [""]


def _event(name: str, data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(event=name, data={"type": name, **data})


def _block_events(index: int, block: dict[str, Any], chunk_size: int) -> list[SSEEvent]:
    """``content_block_start``, the block's deltas and ``content_block_stop``."""
    kind = block["type"]
    if kind == "text":
        opening: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], chunk_size)]
    elif kind == "thinking":
        # The signature arrives last, in a delta of its own.
        opening = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"], chunk_size)]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:  # tool_use: like the API, an empty first piece, then the input JSON in pieces
        opening = {**block, "input": {}}
        pieces = ["", *_pieces(compact_json(block["input"]), chunk_size)]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    return [
        _event("content_block_start", {"index": index, "content_block": opening}),
        *(_event("content_block_delta", {"index": index, "delta": d}) for d in deltas),
        _event("content_block_stop", {"index": index}),
    ]


def _stream_events(message: dict[str, Any], blocks: list[dict[str, Any]], chunk_size: int) -> list[SSEEvent]:
    usage = dict(message["usage"])
    # message_start: the envelope with no content and no stop reason yet.
    start_message = {**message, "stop_reason": None, "usage": {**usage, "output_tokens": 0}}
    events = [_event("message_start", {"message": start_message}), _event("ping", {})]
    for index, block in enumerate(blocks):
        events += _block_events(index, block, chunk_size)
    # message_delta carries the cumulative usage, as the API's does.
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(_event("message_delta", {"delta": delta, "usage": usage}))
    events.append(_event("message_stop", {}))
    return events


__all__ = ["AnthropicMessages", "stop_reason_for", "usage_for"]
