"""OpenAI Responses API: ``POST .../v1/responses`` over HTTP.

(The WebSocket upgrade of the same path is :mod:`.openai_realtime`'s.)

Request: ``model``; ``instructions`` (the system prompt); ``input`` as a
string or a list of items — messages (``role`` user/assistant/system/
developer, ``content`` a string or ``input_text``/``output_text`` parts),
``function_call`` items (``name``, ``arguments`` JSON string, ``call_id``) and
``function_call_output`` items (``call_id``, ``output``); flat function
``tools`` (``{type: function, name, description, parameters}``) and built-in
tools (``{type: web_search}``...); ``text.format`` (the response format);
``stream``.

Response: one ``response`` object whose ``output`` lists ``reasoning``,
``web_search_call`` (a search the model ran: ``action {type: search, query}``),
``message`` (``output_text`` parts) and ``function_call`` items, or with
``stream: true`` named SSE events, each carrying a ``sequence_number``:
``response.created``, ``response.in_progress``, per output item
``response.output_item.added`` / (``response.content_part.added``,
``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``) or (``response.function_call_arguments.delta``...,
``response.function_call_arguments.done``) or (``response.reasoning_summary_*``)
or (``response.web_search_call.in_progress``, ``.searching``, ``.completed``)
/ ``response.output_item.done``,
and finally ``response.completed`` (``response.incomplete``,
``response.failed``) with the whole response. There is no ``[DONE]``.
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
    object_at,
    parse_arguments,
    request_json,
    token_counts,
    token_total,
)

FAMILY = "openai.responses"

_TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")

# Tools the API runs itself; the request names them by ``type`` alone.
_BUILT_IN_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "image_generation",
        "local_shell",
        "shell",
        "mcp",
        "apply_patch",
    }
)

# Why a response stopped short, in Chat Completions' finish-reason vocabulary.
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}


class OpenAIResponses(common.OpenAIProvider):
    family = FAMILY
    stream_form = "sse"
    path_endings = ("/responses",)

    # -- canonical request -----------------------------------------------------

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        system_parts: list[str] = []
        instructions = body.get("instructions")
        if isinstance(instructions, str):
            system_parts.append(instructions)
        messages = _input_messages(body.get("input"), system_parts)
        text_options = object_at(body, "text")
        extra: dict[str, Any] = {}
        # The id differs on every recording run; that the request continues a
        # stored conversation does not, and it changes the answer.
        if body.get("previous_response_id"):
            extra["continues_previous_response"] = True
        return CanonicalRequest(
            family=self.family,
            model=body.get("model"),
            system=common.join_system(system_parts),
            messages=messages,
            tools=_tools(body.get("tools")),
            response_format=common.normalize_response_format(text_options.get("format")),
            stream=bool(body.get("stream")),
            extra=extra,
        )

    # -- summarize a recorded response -------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        if response.events is not None:
            return _summarize_stream(response)
        return common.summarize_object(response, lambda body: _summarize_response_object(body, response.status))

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
        plan = _ResponsePlan.build(summary, request, ids)
        if not stream:
            return common.json_response(plan.response_object(final=True), request_id=ids.request_id())
        return common.sse_response(_StreamWriter(plan, options).events(), request_id=ids.request_id())


# -- request pieces --------------------------------------------------------------


def _input_messages(value: Any, system_parts: list[str]) -> list[Message]:
    """The conversation of an ``input``; system/developer text goes to ``system_parts``."""
    if isinstance(value, str):
        return [Message(role="user", text=value)]
    messages: list[Message] = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = str(item.get("role") or "user")
            text = common.content_text(item.get("content"))
            if role in ("system", "developer"):
                system_parts.append(text)
            else:
                messages.append(Message(role=role, text=text))
        elif kind in ("function_call", "custom_tool_call"):
            arguments = item.get("arguments") if kind == "function_call" else item.get("input")
            call = ToolCall(name=str(item.get("name", "")), arguments=parse_arguments(arguments), id=item.get("call_id"))
            # A call right after the assistant's text belongs to that same turn.
            if messages and messages[-1].role == "assistant":
                messages[-1].tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", tool_calls=[call]))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            content = output if isinstance(output, str) else common.content_text(output)
            messages.append(
                Message(role="tool", tool_results=[ToolResult(content=content, tool_call_id=item.get("call_id"))])
            )
        # Reasoning items and item references carry server-made ids and no
        # prompt text; images, files and built-in tool calls do not decide a match.
    return messages


def _tools(value: Any) -> list[Tool]:
    tools = []
    for raw in value if isinstance(value, list) else []:
        if not isinstance(raw, dict):
            continue
        kind = str(raw.get("type", "function"))
        if kind in ("function", "custom"):
            tools.append(
                Tool(
                    name=str(raw.get("name", "")),
                    description=raw.get("description"),
                    parameters=raw.get("parameters", raw.get("format")),
                )
            )
        else:
            # Built-in tools (web_search, file_search, ...) are told apart by type.
            tools.append(Tool(name=kind))
    return tools


# -- summarize -------------------------------------------------------------------


def _finish_reason(response: dict[str, Any], has_calls: bool) -> str | None:
    status = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE_REASONS.get(str(reason), "length")
    if status == "completed":
        return "tool_calls" if has_calls else "stop"
    return None


def _summarize_response_object(response: dict[str, Any], status: int) -> Summary:
    if response.get("status") == "failed" or isinstance(response.get("error"), dict):
        error = response.get("error") or {}
        return Summary(
            model=response.get("model"),
            error={
                "status": status,
                "type": error.get("code") or "server_error",
                "message": str(error.get("message") or "response failed"),
            },
        )
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            texts.append(common.content_text(item.get("content")))
        elif kind == "function_call":
            calls.append(
                ToolCall(name=item.get("name", ""), arguments=parse_arguments(item.get("arguments")), id=item.get("call_id"))
            )
        elif kind == "reasoning":
            reasoning.extend(
                part.get("text", "") for part in item.get("summary") or [] if isinstance(part, dict)
            )
    return Summary(
        text="".join(texts),
        reasoning="\n\n".join(r for r in reasoning if r) or None,
        tool_calls=calls,
        finish_reason=_finish_reason(response, bool(calls)),
        usage=response.get("usage"),
        model=response.get("model"),
    )


@dataclass
class _StreamAccumulator:
    """Folds Responses stream events into an answer when no terminal event came."""

    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    model: str | None = None

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        index = event.get("output_index")
        if isinstance(event.get("response"), dict):
            self.model = event["response"].get("model") or self.model
        if kind in ("response.output_item.added", "response.output_item.done") and isinstance(index, int):
            item = dict(event.get("item") or {})
            previous = self.items.get(index, {})
            if kind == "response.output_item.added":
                item.setdefault("_text", "")
                item.setdefault("_arguments", "")
                item.setdefault("_reasoning", "")
            else:
                item.update({k: v for k, v in previous.items() if k.startswith("_")})
                item["_done"] = True
            self.items[index] = item
        elif kind == "response.output_text.delta":
            self._slot(index)["_text"] += str(event.get("delta", ""))
        elif kind == "response.function_call_arguments.delta":
            self._slot(index)["_arguments"] += str(event.get("delta", ""))
        elif kind == "response.reasoning_summary_text.delta":
            self._slot(index)["_reasoning"] += str(event.get("delta", ""))

    def _slot(self, index: Any) -> dict[str, Any]:
        key = index if isinstance(index, int) else len(self.items)
        return self.items.setdefault(key, {"_text": "", "_arguments": "", "_reasoning": ""})

    def summary(self) -> Summary:
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[ToolCall] = []
        for _, item in sorted(self.items.items()):
            kind = item.get("type")
            if kind == "function_call":
                done = item.get("_done") and item.get("arguments")
                arguments = item["arguments"] if done else item.get("_arguments", "")
                calls.append(ToolCall(name=item.get("name", ""), arguments=parse_arguments(arguments), id=item.get("call_id")))
            elif kind == "reasoning":
                reasoning.append(item.get("_reasoning", ""))
            else:
                done_text = common.content_text(item.get("content")) if item.get("_done") else ""
                texts.append(done_text or item.get("_text", ""))
        # No terminal event: the stream was cut short, so no finish reason is known.
        return Summary(
            text="".join(texts),
            reasoning="\n\n".join(r for r in reasoning if r) or None,
            tool_calls=calls,
            model=self.model,
        )


def _summarize_stream(response: Response) -> Summary:
    accumulator = _StreamAccumulator()
    for event in response.events or []:
        data = event.data
        if not isinstance(data, dict):
            continue
        kind = data.get("type") or event.event
        if kind == "error":
            error = object_at(data, "error") or data
            return Summary(
                model=accumulator.model,
                error={
                    "status": response.status if response.status >= 400 else 500,
                    "type": error.get("code") or error.get("type") or "server_error",
                    "message": str(error.get("message") or "stream error"),
                },
            )
        if kind in _TERMINAL_EVENTS and isinstance(data.get("response"), dict):
            return _summarize_response_object(data["response"], response.status)
        accumulator.feed(data)
    if response.status >= 400:
        return Summary(error=common.summary_error(response.status, None))
    return accumulator.summary()


# -- render ----------------------------------------------------------------------


@dataclass
class _OutputItem:
    """One output item of a rendered response: reasoning, message or function call."""

    kind: str  # "reasoning" | "web_search_call" | "message" | "function_call"
    id: str
    text: str = ""  # the summary, the query, the text or the arguments
    name: str = ""
    call_id: str = ""

    def as_dict(self, *, done: bool) -> dict[str, Any]:
        status = "completed" if done else "in_progress"
        if self.kind == "reasoning":
            summary = [{"type": "summary_text", "text": self.text}] if done else []
            return {"id": self.id, "type": "reasoning", "summary": summary}
        if self.kind == "web_search_call":
            return {"id": self.id, "type": "web_search_call", "status": status,
                    "action": {"type": "search", "query": self.text}}
        if self.kind == "message":
            content = [_text_part(self.text)] if done else []
            return {"id": self.id, "type": "message", "status": status, "content": content, "role": "assistant"}
        return {
            "id": self.id,
            "type": "function_call",
            "status": status,
            "arguments": self.text if done else "",
            "call_id": self.call_id,
            "name": self.name,
        }


def _tool_echo(tool: Tool) -> dict[str, Any]:
    """A request tool as the response object echoes it."""
    if tool.name in _BUILT_IN_TOOLS and tool.description is None and tool.parameters is None:
        return {"type": tool.name}
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": True,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


@dataclass
class _ResponsePlan:
    """Everything a rendered response says, in the order the API says it."""

    id: str
    created_at: int
    model: str
    request: CanonicalRequest
    items: list[_OutputItem]
    status: str
    incomplete_reason: str | None
    usage: dict[str, Any]

    @classmethod
    def build(cls, summary: Summary, request: CanonicalRequest, ids: common.DerivedIds) -> _ResponsePlan:
        """The items in the API's order: the reasoning, the web searches the
        model ran, then messages and function calls as the answer orders them."""
        items: list[_OutputItem] = []
        if summary.reasoning:
            items.append(_OutputItem("reasoning", "rs_" + ids.hex("reasoning", 48), text=summary.reasoning))
        for i, query in enumerate(summary.web_searches or []):
            items.append(_OutputItem("web_search_call", "ws_" + ids.hex(f"search{i}", 48), text=query))
        parts = answer_parts(summary)
        if not parts:
            parts = [""]  # an empty answer is still one (empty) message
        messages = 0
        for part in parts:
            if isinstance(part, str):
                label = "message" if messages == 0 else f"message{messages}"
                items.append(_OutputItem("message", "msg_" + ids.hex(label, 48), text=part))
                messages += 1
            else:
                call = summary.tool_calls[part]
                items.append(
                    _OutputItem(
                        "function_call",
                        "fc_" + ids.hex(f"item{part}", 48),
                        text=arguments_json(call.arguments),
                        name=call.name,
                        call_id=call.id or "call_" + ids.alnum(f"call{part}", 24),
                    )
                )
        finish = common.chat_finish_reason(summary)
        incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish)
        input_tokens, output_tokens = token_counts(summary.usage)
        return cls(
            id=summary.response_id or "resp_" + ids.hex("response", 48),
            created_at=summary.created if summary.created is not None else ids.timestamp(),
            model=summary.model or request.model or "gpt-4o-mini",
            request=request,
            items=items,
            status="incomplete" if incomplete else "completed",
            incomplete_reason=incomplete,
            usage={
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": token_total(summary.usage),
            },
        )

    def response_object(self, *, final: bool) -> dict[str, Any]:
        text_format = self.request.response_format or {"type": "text"}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status if final else "in_progress",
            "background": False,
            "error": None,
            "incomplete_details": {"reason": self.incomplete_reason} if final and self.incomplete_reason else None,
            "instructions": self.request.system,
            "max_output_tokens": None,
            "max_tool_calls": None,
            "model": self.model,
            "output": [item.as_dict(done=True) for item in self.items] if final else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": 1.0,
            "text": {"format": text_format, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [_tool_echo(tool) for tool in self.request.tools],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage if final else None,
            "user": None,
            "metadata": {},
        }


@dataclass
class _StreamWriter:
    """The named event sequence of a streamed response, numbered as it goes."""

    plan: _ResponsePlan
    options: RenderOptions
    _events: list[SSEEvent] = field(default_factory=list)

    def emit(self, kind: str, **fields: Any) -> None:
        data = {"type": kind, "sequence_number": len(self._events), **fields}
        self._events.append(SSEEvent(event=kind, data=data))

    def events(self) -> list[SSEEvent]:
        self.emit("response.created", response=self.plan.response_object(final=False))
        self.emit("response.in_progress", response=self.plan.response_object(final=False))
        for index, item in enumerate(self.plan.items):
            self.emit("response.output_item.added", output_index=index, item=item.as_dict(done=False))
            if item.kind == "reasoning":
                self._reasoning(index, item)
            elif item.kind == "web_search_call":
                self._web_search(index, item)
            elif item.kind == "message":
                self._message(index, item)
            else:
                self._function_call(index, item)
            self.emit("response.output_item.done", output_index=index, item=item.as_dict(done=True))
        terminal = "response.incomplete" if self.plan.status == "incomplete" else "response.completed"
        self.emit(terminal, response=self.plan.response_object(final=True))
        return self._events

    def _message(self, index: int, item: _OutputItem) -> None:
        where = {"item_id": item.id, "output_index": index, "content_index": 0}
        self.emit("response.content_part.added", **where, part=_text_part(""))
        for piece in common.chunks(item.text, self.options.chunk_size):
            self.emit("response.output_text.delta", **where, delta=piece, logprobs=[])
        self.emit("response.output_text.done", **where, text=item.text, logprobs=[])
        self.emit("response.content_part.done", **where, part=_text_part(item.text))

    def _function_call(self, index: int, item: _OutputItem) -> None:
        where = {"item_id": item.id, "output_index": index}
        for piece in common.chunks(item.text, self.options.chunk_size):
            self.emit("response.function_call_arguments.delta", **where, delta=piece)
        self.emit("response.function_call_arguments.done", **where, name=item.name, arguments=item.text)

    def _reasoning(self, index: int, item: _OutputItem) -> None:
        where = {"item_id": item.id, "output_index": index, "summary_index": 0}
        part = {"type": "summary_text", "text": ""}
        self.emit("response.reasoning_summary_part.added", **where, part=part)
        for piece in common.chunks(item.text, self.options.chunk_size):
            self.emit("response.reasoning_summary_text.delta", **where, delta=piece)
        self.emit("response.reasoning_summary_text.done", **where, text=item.text)
        self.emit("response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": item.text})

    def _web_search(self, index: int, item: _OutputItem) -> None:
        where = {"item_id": item.id, "output_index": index}
        for stage in ("in_progress", "searching", "completed"):
            self.emit(f"response.web_search_call.{stage}", **where)
