"""The Converse API (``/converse``, ``/converse-stream``): one body shape for every
model, also spoken by Amazon Nova through InvokeModel."""

from __future__ import annotations

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
)
from llmock_proxy.providers.base import (
    OPENAI_FINISH_REASONS,
    RenderOptions,
    StreamedToolCalls,
    answer_parts,
    arguments_json,
    chunk_text,
    json_digest,
    object_at,
    parse_arguments,
    request_json,
    token_counts,
    token_total,
    turn_messages,
)
from llmock_proxy.providers.bedrock.common import (
    DEFAULT_CHUNK_SIZE,
    FOREIGN_STOP_REASONS,
    JSON_CONTENT_TYPE,
    STOP_REASONS,
    BedrockProvider,
    event_frame,
    eventstream_response,
    frame_error,
    frame_json,
    http_error,
    render_error,
    request_id,
)

# -- the Converse vocabulary (also spoken by Nova through InvokeModel) --------------


def tool_result_content(blocks: Any) -> Any:
    """``[{text}|{json}...]``: one text is a string, one json is its value."""
    if not isinstance(blocks, list):
        return blocks
    if len(blocks) == 1 and isinstance(blocks[0], dict):
        only = blocks[0]
        if set(only) == {"text"}:
            return only["text"]
        if set(only) == {"json"}:
            return only["json"]
    if all(isinstance(b, dict) and set(b) == {"text"} for b in blocks):
        return "".join(b["text"] for b in blocks)
    return [b.get("json", b.get("text", {"digest": json_digest(b)})) for b in blocks if isinstance(b, dict)]


def converse_conversation(body: dict[str, Any]) -> tuple[str | None, list[Message], list[Any]]:
    """(system prompt, messages, attachment digests) of Converse-style messages.

    A user turn holding tool results becomes a ``tool`` message (text beside
    the results follows as the user's), as the other families do.
    """
    raw_system = body.get("system")
    system_blocks = raw_system if isinstance(raw_system, list) else []
    system = "\n".join(
        b["text"] for b in system_blocks if isinstance(b, dict) and isinstance(b.get("text"), str)
    )
    messages: list[Message] = []
    attachments: list[Any] = []
    names: dict[str, str] = {}
    for index, raw in enumerate(body.get("messages") or []):
        if not isinstance(raw, dict):
            continue
        role = str(raw.get("role") or "user")
        content = raw.get("content")
        if isinstance(content, str):  # lenient: some callers send a bare string
            content = [{"text": content}]
        text: list[str] = []
        calls: list[ToolCall] = []
        results: list[ToolResult] = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                text.append(block["text"])
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                call = tool_call(use)
                names[str(call.id)] = call.name
                calls.append(call)
            elif isinstance(block.get("toolResult"), dict):
                result = block["toolResult"]
                use_id = result.get("toolUseId")
                results.append(
                    ToolResult(
                        content=tool_result_content(result.get("content")),
                        tool_call_id=use_id,
                        name=names.get(str(use_id)),
                        is_error=result.get("status") == "error",
                    )
                )
            elif any(key in block for key in ("image", "document", "video", "audio")):
                attachments.append([index, json_digest(block)])
            # reasoningContent, cachePoint, guardContent: not what decides the answer.
        messages += turn_messages(role, "".join(text), calls, results)
    return (system or None), messages, attachments


def tool_call(use: dict[str, Any]) -> ToolCall:
    """A ``toolUse`` block: ``{toolUseId, name, input}``."""
    return ToolCall(name=str(use.get("name") or ""), arguments=use.get("input"), id=use.get("toolUseId"))


def converse_tools(body: dict[str, Any]) -> list[Tool]:
    config = object_at(body, "toolConfig")
    tools = []
    for entry in config.get("tools") or []:
        spec = entry.get("toolSpec") if isinstance(entry, dict) else None
        if isinstance(spec, dict) and spec.get("name"):
            schema = object_at(spec, "inputSchema")
            name, description = str(spec["name"]), spec.get("description")
            tools.append(Tool(name=name, description=description, parameters=schema.get("json")))
    return tools


def converse_request(
    family: str,
    model: str | None,
    body: dict[str, Any],
    *,
    stream: bool,
    response_format: Any = None,
    extra: dict[str, Any] | None = None,
) -> CanonicalRequest:
    """A Converse-style body (Converse itself, Nova through InvokeModel) as a
    canonical request; attachments are kept as digests in ``extra``."""
    system, messages, attachments = converse_conversation(body)
    extra = dict(extra or {})
    if attachments:
        extra["attachments"] = attachments
    return CanonicalRequest(
        family=family,
        model=model,
        system=system,
        messages=messages,
        tools=converse_tools(body),
        response_format=response_format,
        stream=stream,
        extra=extra,
    )


def converse_response_format(body: dict[str, Any]) -> Any:
    """``outputConfig.textFormat``: a JSON schema, sent as a string."""
    config = object_at(body, "outputConfig")
    fmt = config.get("textFormat") if isinstance(config.get("textFormat"), dict) else None
    if fmt is None:
        return None
    structure = object_at(fmt, "structure")
    definition = object_at(structure, "jsonSchema")
    out: dict[str, Any] = {"type": str(fmt.get("type") or "json_schema")}
    if "schema" in definition:
        out["schema"] = parse_arguments(definition["schema"])
    if definition.get("name"):
        out["name"] = definition["name"]
    return out


_CACHE_COUNTS = (
    ("cache_read_input_tokens", "cacheReadInputTokens"),
    ("cache_write_input_tokens", "cacheWriteInputTokens"),
)


def converse_usage(usage: Any) -> dict[str, Any] | None:
    """Token counts in the summary's vocabulary (``totalTokens`` is derived)."""
    if not isinstance(usage, dict):
        return None
    names = (("input_tokens", "inputTokens"), ("output_tokens", "outputTokens"), *_CACHE_COUNTS)
    out = {ours: usage[theirs] for ours, theirs in names if isinstance(usage.get(theirs), int)}
    return out or None


def wire_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    input_tokens, output_tokens = token_counts(usage)
    counts = {"inputTokens": input_tokens, "outputTokens": output_tokens}
    usage = usage or {}
    for ours, theirs in _CACHE_COUNTS:
        if isinstance(usage.get(ours), int):
            counts[theirs] = usage[ours]
    # A total the answer states wins; else the counts' sum (cache counts included).
    stated = any(key in usage for key in ("total_tokens", "totalTokens", "totalTokenCount"))
    counts["totalTokens"] = token_total(usage) if stated else sum(counts.values())
    return counts


def stop_reason(summary: Summary) -> str:
    """Converse's ``stopReason``: the recorded one, one given in OpenAI's
    vocabulary translated, else what the answer holds says."""
    if summary.finish_reason in STOP_REASONS:
        return summary.finish_reason
    if summary.finish_reason in OPENAI_FINISH_REASONS:
        return FOREIGN_STOP_REASONS[summary.finish_reason]
    if summary.tool_calls:
        return "tool_use"
    return FOREIGN_STOP_REASONS.get(summary.finish_reason or "", "end_turn")


def summarize_converse(data: dict[str, Any]) -> Summary:
    """A Converse (or Nova InvokeModel) response body."""
    output = object_at(data, "output")
    message = object_at(output, "message")
    summary = Summary(finish_reason=data.get("stopReason"), usage=converse_usage(data.get("usage")))
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            summary.text += block["text"]
        elif isinstance(block.get("toolUse"), dict):
            summary.tool_calls.append(tool_call(block["toolUse"]))
        elif isinstance(block.get("reasoningContent"), dict):
            reasoning = block["reasoningContent"].get("reasoningText")
            if isinstance(reasoning, dict) and reasoning.get("text"):
                summary.reasoning = (summary.reasoning or "") + reasoning["text"]
    return summary


def _tool_use_id(call: ToolCall, index: int) -> str:
    """The call's own id, or one derived from it: the same on every replay."""
    return call.id or "tooluse_" + json_digest([index, call.name, call.arguments], 22)


def _tool_use(summary: Summary, index: int) -> dict[str, Any]:
    call = summary.tool_calls[index]
    arguments = call.arguments if call.arguments is not None else {}
    return {"toolUseId": _tool_use_id(call, index), "name": call.name, "input": arguments}


def converse_content(summary: Summary) -> list[dict[str, Any]]:
    """The reasoning first, then text and tool use as the answer orders them."""
    blocks: list[dict[str, Any]] = []
    if summary.reasoning:
        blocks.append({"reasoningContent": {"reasoningText": {"text": summary.reasoning}}})
    for part in answer_parts(summary):
        blocks.append({"text": part} if isinstance(part, str) else {"toolUse": _tool_use(summary, part)})
    return blocks


def converse_body(summary: Summary) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": converse_content(summary)}},
        "stopReason": stop_reason(summary),
        "usage": wire_usage(summary.usage),
    }


def converse_events(summary: Summary, chunk_size: int) -> list[tuple[str, dict[str, Any]]]:
    """The (event type, payload) sequence of a ConverseStream answer.

    Text and reasoning blocks open with their first delta; a tool-use block
    opens with contentBlockStart (id and name) and streams its input as JSON
    text. messageStop and metadata close the stream.
    """
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    index = 0
    if summary.reasoning:
        events += [
            ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": text}}})
            for text in chunk_text(summary.reasoning, chunk_size, DEFAULT_CHUNK_SIZE)
        ]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for part in answer_parts(summary):
        if isinstance(part, str):
            events += [
                ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})
                for piece in chunk_text(part, chunk_size, DEFAULT_CHUNK_SIZE)
            ]
        else:
            call = summary.tool_calls[part]
            start = {"toolUse": {"toolUseId": _tool_use_id(call, part), "name": call.name}}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            text = arguments_json(call.arguments, spaced=True)
            events += [
                ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}})
                for piece in chunk_text(text, chunk_size, DEFAULT_CHUNK_SIZE)
            ]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    events.append(("messageStop", {"stopReason": stop_reason(summary)}))
    events.append(("metadata", {"usage": wire_usage(summary.usage), "metrics": {"latencyMs": 0}}))
    return events


class ConverseCollector:
    """Folds ConverseStream events into a Summary."""

    def __init__(self) -> None:
        self.summary = Summary()
        self._calls = StreamedToolCalls()

    def take(self, event_type: str | None, data: Any) -> None:
        if not isinstance(data, dict):
            return
        index = data.get("contentBlockIndex", 0)
        if event_type == "contentBlockStart":
            start = object_at(data, "start")
            use = start.get("toolUse")
            if isinstance(use, dict):
                self._calls.start(index, ToolCall(name=str(use.get("name") or ""), id=use.get("toolUseId")))
        elif event_type == "contentBlockDelta":
            delta = object_at(data, "delta")
            if isinstance(delta.get("text"), str):
                self.summary.text += delta["text"]
            elif isinstance(delta.get("toolUse"), dict):
                self._calls.add(index, str(delta["toolUse"].get("input") or ""))
            elif isinstance(delta.get("reasoningContent"), dict):
                piece = delta["reasoningContent"].get("text")
                if isinstance(piece, str) and piece:
                    self.summary.reasoning = (self.summary.reasoning or "") + piece
        elif event_type == "messageStop":
            self.summary.finish_reason = data.get("stopReason")
        elif event_type == "metadata":
            self.summary.usage = converse_usage(data.get("usage"))

    def result(self) -> Summary:
        self.summary.tool_calls.extend(self._calls.finish())
        return self.summary


# -- the provider ------------------------------------------------------------------


class BedrockConverse(BedrockProvider):
    family = "bedrock.converse"
    operations = ("converse", "converse-stream")

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        model, operation = self._route(request)
        return converse_request(
            self.family,
            model,
            body,
            stream=operation == "converse-stream",
            response_format=converse_response_format(body),
        )

    def summarize(self, request: Request, response: Response) -> Summary:
        if response.frames is not None:
            collector = ConverseCollector()
            for frame in response.frames:
                failed = frame_error(frame, response.status)
                if failed is not None:
                    collector.summary.error = failed
                    continue
                collector.take(frame.event_type, frame_json(frame))
            return collector.result()
        failed = http_error(response)
        if failed is not None:
            return Summary(error=failed)
        data = response.json
        return summarize_converse(data) if isinstance(data, dict) else Summary()

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        if summary.error:
            # A stream cut by an exception keeps what came before it, not the stop events.
            before = [
                event_frame(kind, payload)
                for kind, payload in converse_events(summary, options.chunk_size)
                if kind not in ("messageStop", "metadata")
            ]
            return render_error(summary, stream, before if stream else [])
        if stream:
            events = converse_events(summary, options.chunk_size)
            return eventstream_response([event_frame(kind, payload) for kind, payload in events])
        body = {**converse_body(summary), "metrics": {"latencyMs": 0}}
        return Response(
            status=200,
            headers={"content-type": JSON_CONTENT_TYPE, "x-amzn-requestid": request_id(body)},
            body=Payload.json(body),
        )


