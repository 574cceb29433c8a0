"""Cohere's v2 Chat API: POST /v2/chat.

A request carries ``messages`` (system, user, assistant, tool; content a
string or a list of ``{type: text, text}`` parts; assistant ``tool_calls``
with JSON-string arguments; tool messages echo a ``tool_call_id``), ``tools``
in the function form and an optional ``response_format``. Streaming is
opt-in (``"stream": true``) and arrives as server-sent events whose ``event:``
name repeats the JSON ``type``: message-start, content-start/-delta/-end,
tool-plan-delta, tool-call-start/-delta/-end, citation events, message-end
with the finish reason and usage (a client that accepts only
application/json gets the same events as NDJSON lines; those are read too,
and synthesis answers in SSE, which the SDKs parse). Errors are
``{"message": "..."}``.
"""

from __future__ import annotations

from typing import Any

from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
    ToolCall,
    ToolResult,
    canonical_json,
)
from llmock_proxy.cassette.model import Payload, Request, Response, SSEEvent
from llmock_proxy.providers.base import (
    COMMON_CATEGORICAL_FIELDS,
    CredentialScheme,
    Provider,
    RenderOptions,
    StreamedToolCalls,
    answer_parts,
    arguments_json,
    chunk_text,
    function_tool_calls,
    function_tools,
    json_uuid,
    object_at,
    request_json,
    text_of,
    token_counts,
)

JSON_CONTENT_TYPE = "application/json"
SSE_CONTENT_TYPE = "text/event-stream"
DEFAULT_CHUNK_SIZE = 4

FINISH_REASONS = ("COMPLETE", "STOP_SEQUENCE", "MAX_TOKENS", "TOOL_CALL", "ERROR", "TIMEOUT")
# Other families' finish reasons, for summaries that were not recorded here.
_FOREIGN_FINISH_REASONS = {
    "stop": "COMPLETE",
    "end_turn": "COMPLETE",
    "length": "MAX_TOKENS",
    "max_tokens": "MAX_TOKENS",
    "stop_sequence": "STOP_SEQUENCE",
    "tool_calls": "TOOL_CALL",
    "tool_use": "TOOL_CALL",
}


# -- request side ---------------------------------------------------------------


def _is_text(part: dict[str, Any]) -> bool:
    return part.get("type", "text") == "text"


def content_text(content: Any) -> str:
    """Text of a content value; only ``text`` parts count (documents and
    images are digested separately)."""
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict) and _is_text(part)]
        return "".join(texts)
    return text_of(content)


def tool_result_content(content: Any) -> Any:
    """A tool message's content: a string, or a list of text/document parts."""
    if isinstance(content, list) and all(isinstance(part, dict) and _is_text(part) for part in content):
        return "".join(part.get("text", "") for part in content)
    return content


def conversation(body: dict[str, Any]) -> tuple[str | None, list[Message]]:
    system: list[str] = []
    messages: list[Message] = []
    for raw in body.get("messages") or []:
        if not isinstance(raw, dict):
            continue
        role = str(raw.get("role") or "user")
        if role == "system":
            system.append(content_text(raw.get("content")))
        elif role == "tool":
            content = tool_result_content(raw.get("content"))
            result = ToolResult(content=content, tool_call_id=raw.get("tool_call_id"))
            messages.append(Message(role="tool", tool_results=[result]))
        else:
            messages.append(
                Message(
                    role=role,
                    text=content_text(raw.get("content")),
                    tool_calls=function_tool_calls(raw.get("tool_calls")),
                )
            )
    return ("\n".join(system) if system else None), messages


def response_format(value: Any) -> Any:
    """``{type: "json_object", json_schema?}``; plain text is no format at all."""
    if not isinstance(value, dict) or value.get("type") in (None, "text"):
        return None
    return value


# -- response side ----------------------------------------------------------------


def usage_of(usage: Any) -> dict[str, Any] | None:
    """Token counts, preferring ``tokens`` (what the model saw) to ``billed_units``."""
    if not isinstance(usage, dict):
        return None
    counts = usage.get("tokens") or usage.get("billed_units")
    if not isinstance(counts, dict):
        return None
    out = {
        key: int(counts[key])
        for key in ("input_tokens", "output_tokens")
        if isinstance(counts.get(key), (int, float))
    }
    return out or None


def wire_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    input_tokens, output_tokens = token_counts(usage)
    counts = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return {"billed_units": dict(counts), "tokens": dict(counts)}


def _answer_id(summary: Summary) -> str:
    """The id the answer pins, else a UUID that is the same on every replay."""
    return summary.response_id or json_uuid(summary.to_dict())


def finish_reason(summary: Summary) -> str:
    if summary.finish_reason in FINISH_REASONS:
        return summary.finish_reason
    if summary.finish_reason in _FOREIGN_FINISH_REASONS:
        return _FOREIGN_FINISH_REASONS[summary.finish_reason]
    return "TOOL_CALL" if summary.tool_calls else "COMPLETE"


def _append(current: str | None, piece: Any) -> str | None:
    if not isinstance(piece, str) or not piece:
        return current
    return (current or "") + piece


class _StreamCollector:
    """Folds v2 stream events into a Summary; tool-call arguments arrive as
    string pieces keyed by the event ``index``."""

    def __init__(self, status: int) -> None:
        self.summary = Summary()
        self.status = status
        self._calls = StreamedToolCalls()

    def take(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        delta = object_at(data, "delta")
        message = object_at(delta, "message")
        index = data.get("index", 0)
        if kind in ("content-start", "content-delta"):
            content = object_at(message, "content")
            self.summary.text += content.get("text") or ""
            self.summary.reasoning = _append(self.summary.reasoning, content.get("thinking"))
        elif kind == "tool-plan-delta":
            self.summary.reasoning = _append(self.summary.reasoning, message.get("tool_plan"))
        elif kind == "tool-call-start":
            call = object_at(message, "tool_calls")
            function = object_at(call, "function")
            started = ToolCall(name=str(function.get("name") or ""), id=call.get("id"))
            self._calls.start(index, started, function.get("arguments") or "")
        elif kind == "tool-call-delta":
            call = object_at(message, "tool_calls")
            function = object_at(call, "function")
            self._calls.add(index, function.get("arguments") or "")
        elif kind == "message-end":
            self.summary.finish_reason = delta.get("finish_reason")
            self.summary.usage = usage_of(delta.get("usage"))
            if delta.get("error"):
                self.summary.error = {"status": self.status, "message": str(delta["error"])}

    def result(self) -> Summary:
        self.summary.tool_calls.extend(self._calls.finish())
        return self.summary


class CohereChat(Provider):
    family = "cohere.chat"
    stream_form = "sse"
    path_endings = ("/v2/chat",)
    categorical_fields = COMMON_CATEGORICAL_FIELDS | {"finish_reason"}

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        return (CredentialScheme(("COHERE_API_KEY",)),)

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        system, messages = conversation(body)
        extra: dict[str, Any] = {}
        if body.get("documents"):
            extra["documents"] = canonical_json(body["documents"])
        return CanonicalRequest(
            family=self.family,
            model=body.get("model"),
            system=system,
            messages=messages,
            tools=function_tools(body.get("tools")),
            response_format=response_format(body.get("response_format")),
            stream=body.get("stream") is True,
            extra=extra,
        )

    # -- collapse ------------------------------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        # The SDKs get SSE; a client that asks for application/json gets the
        # same events as NDJSON lines.
        stream = response.events if response.events is not None else response.lines
        if stream is not None:
            collector = _StreamCollector(response.status)
            for item in stream:
                if isinstance(item.data, dict):
                    collector.take(item.data)
            return collector.result()
        data = response.body.value if response.body is not None else None
        if response.status >= 400 or not isinstance(data, dict) or "message" not in data:
            message = data.get("message") if isinstance(data, dict) else data
            text = message if isinstance(message, str) else canonical_json(message)
            return Summary(error={"status": response.status, "message": text})
        message = data["message"] if isinstance(data["message"], dict) else {}
        summary = Summary(
            text=content_text([p for p in message.get("content") or [] if isinstance(p, dict)]),
            tool_calls=function_tool_calls(message.get("tool_calls")),
            finish_reason=data.get("finish_reason"),
            usage=usage_of(data.get("usage")),
        )
        for part in message.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "thinking":
                summary.reasoning = _append(summary.reasoning, part.get("thinking"))
        summary.reasoning = _append(summary.reasoning, message.get("tool_plan"))
        return summary

    # -- synthesis -----------------------------------------------------------------

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        if summary.error:
            error = summary.error
            status = int(error.get("status") or 500)
            return self.error(status if status >= 400 else 500, str(error.get("message") or ""))
        if stream:
            return self._render_stream(summary, options.chunk_size)
        return Response(
            status=200,
            headers={"content-type": JSON_CONTENT_TYPE},
            body=Payload.json(
                {
                    "id": _answer_id(summary),
                    "message": self._message(summary),
                    "finish_reason": finish_reason(summary),
                    "usage": wire_usage(summary.usage),
                }
            ),
        )

    def _message(self, summary: Summary) -> dict[str, Any]:
        """The assistant message; reasoning is a tool plan before tool calls and
        a thinking part before text otherwise."""
        message: dict[str, Any] = {"role": "assistant"}
        content: list[dict[str, Any]] = []
        if summary.reasoning and not summary.tool_calls:
            content.append({"type": "thinking", "thinking": summary.reasoning})
        if summary.text:
            content.append({"type": "text", "text": summary.text})
        if content:
            message["content"] = content
        if summary.tool_calls:
            if summary.reasoning:
                message["tool_plan"] = summary.reasoning
            message["tool_calls"] = [self._wire_call(call, i) for i, call in enumerate(summary.tool_calls)]
        return message

    @staticmethod
    def _wire_call(call: ToolCall, index: int) -> dict[str, Any]:
        """Cohere's call ids look like ``get_weather_1byjy32y4hvq``."""
        return {
            "id": call.id or f"{call.name}_{json_uuid(index, call.name, call.arguments)[-12:]}",
            "type": "function",
            "function": {"name": call.name, "arguments": arguments_json(call.arguments, spaced=True)},
        }

    def _render_stream(self, summary: Summary, chunk_size: int) -> Response:
        """message-start; the thinking (without tool calls); text blocks and
        tool calls as the answer orders them, the tool plan (the reasoning,
        with tool calls) just before the first call; message-end."""
        empty = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        events: list[dict[str, Any]] = [
            {"id": _answer_id(summary), "type": "message-start", "delta": {"message": empty}}
        ]
        index = 0
        if summary.reasoning and not summary.tool_calls:
            events += self._content_block(index, "thinking", summary.reasoning, chunk_size)
            index += 1
        planned = not summary.reasoning
        for part in answer_parts(summary):
            if isinstance(part, str):
                events += self._content_block(index, "text", part, chunk_size)
                index += 1
                continue
            if not planned:
                events += [
                    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}}
                    for piece in chunk_text(summary.reasoning or "", chunk_size, DEFAULT_CHUNK_SIZE)
                ]
                planned = True
            events += self._call_events(part, self._wire_call(summary.tool_calls[part], part), chunk_size)
        events.append(
            {
                "type": "message-end",
                "delta": {"finish_reason": finish_reason(summary), "usage": wire_usage(summary.usage)},
            }
        )
        return Response(
            status=200,
            headers={"content-type": SSE_CONTENT_TYPE, "cache-control": "no-cache"},
            events=[SSEEvent(event=e["type"], data=e) for e in events],
        )

    @staticmethod
    def _call_events(index: int, wire: dict[str, Any], chunk_size: int) -> list[dict[str, Any]]:
        """tool-call-start (id and name), the arguments in pieces, tool-call-end."""
        name = wire["function"]["name"]
        opening = {"id": wire["id"], "type": "function", "function": {"name": name, "arguments": ""}}
        return [
            {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": opening}}},
            *(
                {"type": "tool-call-delta", "index": index,
                 "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}}
                for piece in chunk_text(wire["function"]["arguments"], chunk_size, DEFAULT_CHUNK_SIZE)
            ),
            {"type": "tool-call-end", "index": index},
        ]

    @staticmethod
    def _content_block(index: int, kind: str, text: str, chunk_size: int) -> list[dict[str, Any]]:
        opening = {"content": {"type": kind, kind: ""}}
        return [
            {"type": "content-start", "index": index, "delta": {"message": opening}},
            *(
                {"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: piece}}}}
                for piece in chunk_text(text, chunk_size, DEFAULT_CHUNK_SIZE)
            ),
            {"type": "content-end", "index": index},
        ]

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        # Cohere's envelope is the message alone: no type, no code.
        return Response(
            status=status,
            headers={"content-type": JSON_CONTENT_TYPE},
            body=Payload.json({"message": message}),
        )
