"""OpenAI Chat Completions: ``POST .../chat/completions``.

The most copied API of all: OpenAI itself, Azure OpenAI
(``/openai/deployments/{deployment}/chat/completions?api-version=...``),
OpenRouter (``/api/v1/chat/completions``), Gemini's and Ollama's OpenAI
endpoints and many more all speak it, so any path ending in
``/chat/completions`` belongs here.

Request: ``model``, ``messages`` (system/developer/user/assistant/tool, plus
the legacy ``function`` role), ``tools`` (or legacy ``functions``),
``response_format``, ``stream``.

Response: one ``chat.completion`` JSON object, or with ``stream: true`` SSE
``chat.completion.chunk`` events — a role delta first, content deltas,
tool-call deltas keyed by ``index`` (id and name in the first, argument
fragments after), a chunk with the ``finish_reason``, a usage chunk with
empty ``choices`` when usage is known and the client asked for it, and ``data: [DONE]``.
"""

from __future__ import annotations

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
from llmock_proxy.cassette.model import Request, Response, SSEEvent
from llmock_proxy.providers import _openai_common as common
from llmock_proxy.providers.base import (
    RenderOptions,
    answer_parts,
    arguments_json,
    parse_arguments,
    request_json,
    token_counts,
    token_total,
)

FAMILY = "openai.chat"


class OpenAIChat(common.OpenAIProvider):
    family = FAMILY
    stream_form = "sse"
    path_endings = ("/chat/completions",)

    def stream_item_type(self, payload: Any, name: str | None = None, *, fallback: str = "message") -> str:
        """Chunks say what they are in ``object`` (``chat.completion.chunk``);
        the stream ends with ``[DONE]``. A field the API adds later, even one
        called ``type``, is a new field of the chunk, not a new kind of chunk."""
        if name:
            return name
        if isinstance(payload, dict):
            kind = payload.get("object")
            return kind if isinstance(kind, str) else fallback
        return "[DONE]" if payload == "[DONE]" else fallback

    def render_options(self, request: Request, options: RenderOptions = RenderOptions()) -> RenderOptions:
        """A streamed answer ends with a usage chunk only when the client asked
        (``stream_options.include_usage``): client code that reads
        ``chunk.choices[0]`` breaks on one it did not ask for."""
        body = request_json(request)
        asked = body.get("stream_options")
        include = isinstance(asked, dict) and asked.get("include_usage") is True
        if options.include_usage == include or not body.get("stream"):  # only a stream reads it
            return options
        return options.replaced(include_usage=include)

    # -- canonical request -----------------------------------------------------

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        system_parts: list[str] = []
        messages: list[Message] = []
        for raw in body.get("messages") or []:
            if not isinstance(raw, dict):
                continue
            role = str(raw.get("role") or "user")
            if role in ("system", "developer"):
                system_parts.append(common.content_text(raw.get("content")))
            elif role == "assistant":
                messages.append(_assistant_message(raw))
            elif role in ("tool", "function"):
                messages.append(_tool_message(raw))
            else:
                messages.append(Message(role=role, text=common.content_text(raw.get("content"))))
        return CanonicalRequest(
            family=self.family,
            model=common.request_model(request, body),
            system=common.join_system(system_parts),
            messages=messages,
            tools=_tools(body),
            response_format=common.normalize_response_format(body.get("response_format")),
            stream=bool(body.get("stream")),
        )

    # -- summarize a recorded response -------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        if response.events is not None:
            return _summarize_stream(response)
        return common.summarize_object(response, _summarize_completion)

    # -- render a summary as the real API would send it ----------------------------

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        if summary.error:
            return common.render_summary_error(summary.error)
        ids = common.DerivedIds.for_render(request, summary, options)
        header = _ChunkHeader(
            id=summary.response_id or "chatcmpl-" + ids.alnum("completion", 29),
            created=summary.created if summary.created is not None else ids.timestamp(),
            model=summary.model or request.model or "gpt-4o-mini",
            system_fingerprint=summary.system_fingerprint or "fp_" + ids.hex("system_fingerprint", 10),
        )
        calls = [
            {
                "id": call.id or "call_" + ids.alnum(f"call{i}", 24),
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_json(call.arguments)},
            }
            for i, call in enumerate(summary.tool_calls)
        ]
        finish_reason = common.chat_finish_reason(summary)
        if stream:
            events = _stream_events(header, summary, calls, finish_reason, options)
            return common.sse_response(events, request_id=ids.request_id())
        message: dict[str, Any] = {
            "role": "assistant",
            "content": summary.text if summary.text or not calls else None,
            "refusal": None,
            "annotations": [],
        }
        if summary.reasoning:
            # Not OpenAI's own field: the OpenAI-compatible servers that reason
            # (DeepSeek, vLLM) send it next to the content, as llmock does.
            message["reasoning_content"] = summary.reasoning
        if calls:
            message["tool_calls"] = calls
        body = {
            **header.fields("chat.completion"),
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": _chat_usage(summary.usage),
        }
        return common.json_response(body, request_id=ids.request_id())


# -- request pieces --------------------------------------------------------------


def _assistant_message(raw: dict[str, Any]) -> Message:
    calls = []
    for call in raw.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        function = call.get("function") or call.get("custom") or {}
        arguments = function.get("arguments", function.get("input"))
        calls.append(
            ToolCall(name=function.get("name", ""), arguments=parse_arguments(arguments), id=call.get("id"))
        )
    legacy = raw.get("function_call")
    if isinstance(legacy, dict):
        calls.append(ToolCall(name=legacy.get("name", ""), arguments=parse_arguments(legacy.get("arguments"))))
    return Message(role="assistant", text=common.content_text(raw.get("content")), tool_calls=calls)


def _tool_message(raw: dict[str, Any]) -> Message:
    content = raw.get("content")
    result = ToolResult(
        content=content if isinstance(content, str) else common.content_text(content),
        tool_call_id=raw.get("tool_call_id"),
        name=raw.get("name"),
    )
    return Message(role="tool", tool_results=[result])


def _tools(body: dict[str, Any]) -> list[Tool]:
    tools = []
    for raw in body.get("tools") or []:
        if not isinstance(raw, dict):
            continue
        kind = raw.get("type", "function")
        inner = raw.get(kind)
        spec = inner if isinstance(inner, dict) else raw
        tools.append(
            Tool(
                name=str(spec.get("name") or kind),
                description=spec.get("description"),
                parameters=spec.get("parameters", spec.get("format")),
            )
        )
    for raw in body.get("functions") or []:  # the pre-tools spelling
        if isinstance(raw, dict):
            tools.append(
                Tool(name=str(raw.get("name", "")), description=raw.get("description"), parameters=raw.get("parameters"))
            )
    return tools


def _reasoning_of(message: dict[str, Any]) -> str | None:
    # Not OpenAI's own field: OpenAI-compatible servers (DeepSeek, vLLM,
    # OpenRouter) return the reasoning text next to the content.
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


# -- summarize a recorded completion ----------------------------------------------


def _summarize_completion(body: dict[str, Any]) -> Summary:
    """A ``chat.completion`` object: choice 0's message."""
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    tool_calls = [
        ToolCall(
            name=(call.get("function") or {}).get("name", ""),
            arguments=parse_arguments((call.get("function") or {}).get("arguments")),
            id=call.get("id"),
        )
        for call in message.get("tool_calls") or []
        if isinstance(call, dict)
    ]
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        tool_calls.append(ToolCall(name=legacy.get("name", ""), arguments=parse_arguments(legacy.get("arguments"))))
    return Summary(
        text=common.content_text(message.get("content")),
        reasoning=_reasoning_of(message),
        tool_calls=tool_calls,
        finish_reason=choice.get("finish_reason"),
        usage=body.get("usage"),
        model=body.get("model"),
    )


# -- response pieces -------------------------------------------------------------


@dataclass(frozen=True)
class _ChunkHeader:
    """The fields every completion object and chunk of one answer repeat."""

    id: str
    created: int
    model: str
    system_fingerprint: str

    def fields(self, object_name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": object_name,
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": self.system_fingerprint,
        }

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> SSEEvent:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return SSEEvent(data={**self.fields("chat.completion.chunk"), "choices": [choice]})


def _chat_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    prompt_tokens, completion_tokens = token_counts(usage)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": token_total(usage),
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _stream_events(
    header: _ChunkHeader,
    summary: Summary,
    calls: list[dict[str, Any]],
    finish_reason: str,
    options: RenderOptions,
) -> list[SSEEvent]:
    first: dict[str, Any] = {"role": "assistant", "content": "" if summary.text or not calls else None, "refusal": None}
    # What follows the role chunk, in the order the answer says it: the
    # reasoning (as the OpenAI-compatible servers that reason send it), then
    # text and tool calls as the answer orders them.
    deltas: list[dict[str, Any]] = [
        {"reasoning_content": piece} for piece in common.chunks(summary.reasoning or "", options.chunk_size)
    ]
    for part in answer_parts(summary):
        if isinstance(part, str):
            deltas += [{"content": piece} for piece in common.chunks(part, options.chunk_size)]
        else:
            deltas.append({"tool_calls": [_call_header(part, calls[part])]})
            deltas += [
                {"tool_calls": [{"index": part, "function": {"arguments": piece}}]}
                for piece in common.chunks(calls[part]["function"]["arguments"], options.chunk_size)
            ]
    if deltas and "tool_calls" in deltas[0]:
        # A call said first is announced in the role chunk, as the real API does.
        first.update(deltas.pop(0))
    events = [header.chunk(first), *(header.chunk(delta) for delta in deltas)]
    events.append(header.chunk({}, finish_reason))
    # Asked for, the usage chunk comes whether or not the answer says its
    # counts (a hand-written one does not): zeros then, as in a non-stream answer.
    if options.include_usage:
        events.append(
            SSEEvent(
                data={
                    **header.fields("chat.completion.chunk"),
                    "choices": [],
                    "usage": _chat_usage(summary.usage),
                }
            )
        )
    events.append(SSEEvent(data="[DONE]"))
    return events


def _call_header(index: int, call: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": index,
        "id": call["id"],
        "type": "function",
        "function": {"name": call["function"]["name"], "arguments": ""},
    }


# -- summarize a recorded stream -------------------------------------------------


@dataclass
class _CallAccumulator:
    id: str | None = None
    name: str = ""
    arguments: str = ""


@dataclass
class _StreamAccumulator:
    """Folds ``chat.completion.chunk`` events into one answer (choice 0)."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, _CallAccumulator] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str | None = None
    error: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any], status: int) -> None:
        if isinstance(chunk.get("error"), (dict, str)):
            self.error = common.summary_error(status, chunk)
            return
        self.model = chunk.get("model") or self.model
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
            reasoning = _reasoning_of(delta)
            if reasoning:
                self.reasoning.append(reasoning)
            for call in delta.get("tool_calls") or []:
                self._feed_call(call)
            legacy = delta.get("function_call")
            if isinstance(legacy, dict):
                self._feed_call({"index": 0, "function": legacy})
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _feed_call(self, call: dict[str, Any]) -> None:
        slot = self.calls.setdefault(int(call.get("index", len(self.calls))), _CallAccumulator())
        slot.id = call.get("id") or slot.id
        function = call.get("function") or {}
        if function.get("name"):
            slot.name = function["name"]
        if isinstance(function.get("arguments"), str):
            slot.arguments += function["arguments"]

    def summary(self) -> Summary:
        if self.error is not None:
            return Summary(error=self.error, model=self.model)
        return Summary(
            text="".join(self.text),
            reasoning="".join(self.reasoning) or None,
            tool_calls=[
                ToolCall(name=c.name, arguments=parse_arguments(c.arguments), id=c.id)
                for _, c in sorted(self.calls.items())
            ],
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
        )


def _summarize_stream(response: Response) -> Summary:
    accumulator = _StreamAccumulator()
    for event in response.events or []:
        if isinstance(event.data, dict):
            accumulator.feed(event.data, response.status)
    if response.status >= 400 and accumulator.error is None:
        return Summary(error=common.summary_error(response.status, None))
    return accumulator.summary()
