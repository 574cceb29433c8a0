"""Amazon Bedrock Runtime: the Converse API and InvokeModel.

Requests go to ``bedrock-runtime.<region>.amazonaws.com`` and are SigV4
signed; they are recognised by path alone so a base URL in front works too:

* ``POST /model/{modelId}/converse`` and ``/converse-stream``: one body shape
  for every model (``messages`` of content blocks ``text`` / ``toolUse`` /
  ``toolResult``, ``system`` blocks, ``toolConfig.tools[].toolSpec``).
* ``POST /model/{modelId}/invoke`` and ``/invoke-with-response-stream``: the
  body is the model vendor's own format. Anthropic models take the Messages
  API body (plus ``anthropic_version``), Amazon Nova takes Converse-style
  messages, other vendors are matched on a digest of the whole body.

The model id sits in the path, URL-encoded when it is an ARN or an inference
profile. Streaming is opt-in by path and arrives as AWS EventStream frames
(``:message-type`` event, ``:event-type``, ``:content-type`` application/json).
Converse streams send messageStart, per block contentBlockStart (tool use
only) / contentBlockDelta / contentBlockStop, messageStop and metadata; invoke
streams send ``chunk`` frames whose payload ``{"bytes": base64}`` wraps one
event of the vendor's own stream. Errors are ``{"message": ...}`` with the
exception name in ``x-amzn-errortype``; an error inside a stream is a frame
with ``:message-type`` exception and ``:exception-type``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from typing import Any
from urllib.parse import unquote

from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
    Tool,
    ToolCall,
    ToolResult,
    canonical_json,
)
from llmock_proxy.cassette.model import (
    EventStreamFrame,
    Payload,
    Request,
    Response,
    SSEEvent,
    compact_json,
)
from llmock_proxy.providers.anthropic_messages import AnthropicMessages
from llmock_proxy.providers.base import (
    COMMON_CATEGORICAL_FIELDS,
    CredentialScheme,
    Provider,
    RenderOptions,
    StreamedToolCalls,
    arguments_json,
    chunk_text,
    json_digest,
    json_uuid,
    object_at,
    parse_arguments,
    request_json,
    split_url,
    token_counts,
    turn_messages,
)

JSON_CONTENT_TYPE = "application/json"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
DEFAULT_CHUNK_SIZE = 8

_ROUTE = re.compile(
    r"/model/(?P<model>.+)/(?P<operation>converse-stream|converse|invoke-with-response-stream|invoke)/?$"
)

STOP_REASONS = (
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "guardrail_intervened",
    "content_filtered",
    "malformed_model_output",
    "malformed_tool_use",
    "model_context_window_exceeded",
)
_FOREIGN_STOP_REASONS = {
    "stop": "end_turn",
    "STOP": "end_turn",
    "COMPLETE": "end_turn",
    "length": "max_tokens",
    "MAX_TOKENS": "max_tokens",
    "STOP_SEQUENCE": "stop_sequence",
    "tool_calls": "tool_use",
    "TOOL_CALL": "tool_use",
    "content_filter": "content_filtered",
    "SAFETY": "content_filtered",
}

# The service's exceptions and the HTTP status each is sent with.
EXCEPTION_STATUS = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_EXCEPTION_BY_STATUS = {
    400: "ValidationException",
    401: "AccessDeniedException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
ERROR_TYPE_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"


def route(path: str) -> tuple[str, str] | None:
    """(model id, operation) of a Bedrock Runtime path; the id URL-decoded."""
    found = _ROUTE.search(path)
    if found is None:
        return None
    return unquote(found["model"]), found["operation"]


def request_id(*parts: Any) -> str:
    """An ``x-amzn-requestid``: the same for the same answer, so replays are identical."""
    return json_uuid(*parts)


# -- EventStream frames -------------------------------------------------------------


def event_frame(event_type: str, payload: dict[str, Any]) -> EventStreamFrame:
    return EventStreamFrame(
        headers={
            ":event-type": event_type,
            ":content-type": JSON_CONTENT_TYPE,
            ":message-type": "event",
        },
        payload=Payload.json(payload),
    )


def exception_frame(exception_type: str, message: str) -> EventStreamFrame:
    """An error inside a stream: the exception's member name (lowerCamelCase)."""
    return EventStreamFrame(
        headers={
            ":exception-type": exception_type[:1].lower() + exception_type[1:],
            ":content-type": JSON_CONTENT_TYPE,
            ":message-type": "exception",
        },
        payload=Payload.json({"message": message}),
    )


def frame_json(frame: EventStreamFrame) -> Any:
    if frame.payload.kind == "json":
        return frame.payload.value
    try:
        return json.loads(frame.payload.to_bytes())
    except (ValueError, binascii.Error):
        return None


def frame_error(frame: EventStreamFrame, status: int) -> dict[str, Any] | None:
    """The error a frame carries, or None for an ordinary event."""
    kind = frame.headers.get(":message-type")
    if kind == "exception":
        data = frame_json(frame)
        message = data.get("message") if isinstance(data, dict) else None
        return {
            "status": status,
            "type": str(frame.headers.get(":exception-type") or "exception"),
            "message": str(message if message is not None else ""),
        }
    if kind == "error":
        return {
            "status": status,
            "type": str(frame.headers.get(":error-code") or "error"),
            "message": str(frame.headers.get(":error-message") or ""),
        }
    return None


def eventstream_response(
    frames: list[EventStreamFrame], extra_headers: dict[str, str] | None = None
) -> Response:
    headers = {
        "content-type": EVENTSTREAM_CONTENT_TYPE,
        "x-amzn-requestid": request_id([f.to_dict() for f in frames]),
        **(extra_headers or {}),
    }
    return Response(status=200, headers=headers, frames=frames)


# -- errors ----------------------------------------------------------------------------


def exception_name(status: int, type: str | None = None) -> str:
    """The Bedrock exception for an error: ``type`` when it already names one."""
    if type and type.endswith("Exception"):
        return type[:1].upper() + type[1:]
    if status in _EXCEPTION_BY_STATUS:
        return _EXCEPTION_BY_STATUS[status]
    return "InternalServerException" if status >= 500 else "ValidationException"


def error_response(status: int, message: str, type: str | None = None) -> Response:
    name = exception_name(status, type)
    return Response(
        status=status,
        headers={
            "content-type": JSON_CONTENT_TYPE,
            "x-amzn-requestid": request_id(status, name, message),
            "x-amzn-errortype": f"{name}:{ERROR_TYPE_NAMESPACE}",
        },
        body=Payload.json({"message": message}),
    )


def http_error(response: Response) -> dict[str, Any] | None:
    """The error of a non-stream response: status >= 400 and the errortype header."""
    if response.status < 400:
        return None
    data = response.body.value if response.body is not None else None
    message = data.get("message", data.get("Message")) if isinstance(data, dict) else data
    header = response.headers.get("x-amzn-errortype", "")
    return {
        "status": response.status,
        "type": header.split(":", 1)[0] or exception_name(response.status),
        "message": message if isinstance(message, str) else canonical_json(message),
    }


def render_error(summary: Summary, stream: bool, frames_before: list[EventStreamFrame]) -> Response:
    """An error summary: an HTTP error, or (recorded inside a stream) the
    stream's content followed by an exception frame."""
    error = summary.error or {}
    status = int(error.get("status") or 500)
    message = str(error.get("message") or "")
    if status < 400 and stream:
        name = exception_name(424, str(error.get("type") or "modelStreamErrorException"))
        return eventstream_response([*frames_before, exception_frame(name, message)])
    if status < 400:
        name = exception_name(500, error.get("type"))
        status = EXCEPTION_STATUS.get(name, 500)
    return error_response(status, message, error.get("type"))


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
    counts["totalTokens"] = sum(counts.values())
    return counts


def stop_reason(summary: Summary) -> str:
    if summary.finish_reason in STOP_REASONS:
        return summary.finish_reason
    if summary.tool_calls:
        return "tool_use"
    return _FOREIGN_STOP_REASONS.get(summary.finish_reason or "", "end_turn")


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


def converse_content(summary: Summary) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if summary.reasoning:
        blocks.append({"reasoningContent": {"reasoningText": {"text": summary.reasoning}}})
    if summary.text:
        blocks.append({"text": summary.text})
    for index, call in enumerate(summary.tool_calls):
        arguments = call.arguments if call.arguments is not None else {}
        use = {"toolUseId": _tool_use_id(call, index), "name": call.name, "input": arguments}
        blocks.append({"toolUse": use})
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
    if summary.text:
        events += [
            ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})
            for piece in chunk_text(summary.text, chunk_size, DEFAULT_CHUNK_SIZE)
        ]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for call_number, call in enumerate(summary.tool_calls):
        start = {"toolUse": {"toolUseId": _tool_use_id(call, call_number), "name": call.name}}
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


# -- Converse ------------------------------------------------------------------------


class _BedrockProvider(Provider):
    stream_form = "eventstream"
    operations: tuple[str, ...] = ()
    categorical_fields = COMMON_CATEGORICAL_FIELDS | {"stopReason", "stop_reason"}

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        # An API key for Bedrock, else SigV4 with the AWS credentials.
        return (
            CredentialScheme(("AWS_BEARER_TOKEN_BEDROCK",)),
            CredentialScheme(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), sigv4=True),
        )

    def detect(self, method: str, host: str, path: str) -> bool:
        found = route(path)
        return method == "POST" and found is not None and found[1] in self.operations

    @staticmethod
    def _route(request: Request) -> tuple[str | None, str]:
        found = route(split_url(request.url)[1])
        return (found[0], found[1]) if found else (None, "")

    def error(self, status: int, message: str, *, type: str = "invalid_request_error") -> Response:
        return error_response(status, message, type)


class BedrockConverse(_BedrockProvider):
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


# -- InvokeModel -----------------------------------------------------------------------

# Which body format an InvokeModel request speaks, kept in ``extra["dialect"]``.
ANTHROPIC, CONVERSE_STYLE, GENERIC = "anthropic", "converse", "generic"

# Where vendors put the generated text (and their stop reason) in a body or a chunk.
_TEXT_FIELDS = ("generation", "outputText", "completion", "text")
_LIST_FIELDS = ("outputs", "results", "generations", "choices")
_REASON_FIELDS = ("stop_reason", "completionReason", "finish_reason")


def dialect(model: str | None, body: dict[str, Any]) -> str:
    """Anthropic's Messages body, Converse-style messages (Nova), or anything else."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return GENERIC
    if "anthropic_version" in body or "anthropic." in (model or ""):
        return ANTHROPIC
    if messages and all(
        isinstance(m, dict)
        and isinstance(m.get("content"), list)
        and all(isinstance(b, dict) and "type" not in b for b in m["content"])
        for m in messages
    ):
        return CONVERSE_STYLE
    return GENERIC


def default_dialect(model: str | None) -> str:
    """The dialect a model speaks when no request body says so."""
    vendor = _vendor_model(model)
    if vendor.startswith("anthropic."):
        return ANTHROPIC
    if vendor.startswith("amazon.nova"):
        return CONVERSE_STYLE
    return GENERIC


_PROFILE_GEOGRAPHIES = ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca")


def _vendor_model(model: str | None) -> str:
    """The ``vendor.model`` part of an id, an inference profile or an ARN."""
    name = (model or "").rsplit("/", 1)[-1]
    geography, _, rest = name.partition(".")
    # Inference profiles prefix a geography: us.anthropic..., global.amazon...
    return rest if geography in _PROFILE_GEOGRAPHIES and "." in rest else name


def _generic_piece(data: dict[str, Any]) -> tuple[str, Any]:
    """(text, stop reason) of a vendor body or stream chunk not otherwise known."""
    for key in _TEXT_FIELDS:
        if isinstance(data.get(key), str):
            return data[key], _first_reason(data)
    for key in _LIST_FIELDS:
        items = data.get(key)
        if isinstance(items, list) and items and isinstance(items[0], dict):
            first = items[0]
            text = first.get("text", first.get("outputText"))
            if not isinstance(text, str) and isinstance(first.get("message"), dict):
                text = first["message"].get("content")
            return (text if isinstance(text, str) else ""), _first_reason(first)
    return "", None


def _first_reason(data: dict[str, Any]) -> Any:
    return next((data[r] for r in _REASON_FIELDS if data.get(r) is not None), None)


def _generic_usage(data: dict[str, Any]) -> dict[str, Any] | None:
    """Token counts from a vendor body or chunk: Bedrock's invocation metrics
    (last stream chunk), Meta's and Titan's own counters."""
    metrics = data.get("amazon-bedrock-invocationMetrics")
    if isinstance(metrics, dict):
        return _counts(metrics.get("inputTokenCount"), metrics.get("outputTokenCount"))
    if isinstance(data.get("prompt_token_count"), int) or isinstance(data.get("generation_token_count"), int):
        return _counts(data.get("prompt_token_count"), data.get("generation_token_count"))
    results = data.get("results")
    if isinstance(data.get("inputTextTokenCount"), int) and isinstance(results, list) and results:
        output = results[0].get("tokenCount") if isinstance(results[0], dict) else None
        return _counts(data["inputTextTokenCount"], output)
    return None


def _counts(input_tokens: Any, output_tokens: Any) -> dict[str, int]:
    return {
        "input_tokens": input_tokens if isinstance(input_tokens, int) else 0,
        "output_tokens": output_tokens if isinstance(output_tokens, int) else 0,
    }


def _header_usage(headers: dict[str, str]) -> dict[str, Any] | None:
    """InvokeModel reports token counts in headers for every vendor."""
    try:
        return {
            "input_tokens": int(headers["x-amzn-bedrock-input-token-count"]),
            "output_tokens": int(headers["x-amzn-bedrock-output-token-count"]),
        }
    except (KeyError, ValueError):
        return None


def _generic_embeddings(data: dict[str, Any]) -> list[list[float]] | None:
    if isinstance(data.get("embedding"), list):
        return [data["embedding"]]
    embeddings = data.get("embeddings")
    if isinstance(embeddings, dict):  # Cohere on Bedrock with embedding_types
        embeddings = embeddings.get("float")
    return embeddings if isinstance(embeddings, list) else None


def _invocation_metrics(usage: dict[str, Any] | None) -> dict[str, int]:
    counts = wire_usage(usage)
    return {
        "inputTokenCount": counts["inputTokens"],
        "outputTokenCount": counts["outputTokens"],
        "invocationLatency": 0,
        "firstByteLatency": 0,
    }


def chunk_frame(event: dict[str, Any]) -> EventStreamFrame:
    """One ``chunk`` of InvokeModelWithResponseStream: the vendor event, base64."""
    raw = compact_json(event).encode()
    return event_frame("chunk", {"bytes": base64.b64encode(raw).decode("ascii")})


def chunk_json(frame: EventStreamFrame) -> Any:
    data = frame_json(frame)
    if not isinstance(data, dict) or not isinstance(data.get("bytes"), str):
        return None
    try:
        return json.loads(base64.b64decode(data["bytes"], validate=True))
    except (ValueError, binascii.Error):
        return None


class BedrockInvoke(_BedrockProvider):
    family = "bedrock.invoke"
    operations = ("invoke", "invoke-with-response-stream")

    def __init__(self) -> None:
        # Anthropic-on-Bedrock speaks the Messages API: reuse its translation.
        self._anthropic = AnthropicMessages()

    # -- request -------------------------------------------------------------------

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        model, operation = self._route(request)
        stream = operation == "invoke-with-response-stream"
        kind = dialect(model, body)
        if kind == ANTHROPIC:
            translated = self._anthropic.canonical(request)
            return dataclasses.replace(
                translated, family=self.family, model=model, stream=stream, extra={"dialect": ANTHROPIC}
            )
        if kind == CONVERSE_STYLE:
            return converse_request(self.family, model, body, stream=stream, extra={"dialect": CONVERSE_STYLE})
        return self._generic_canonical(request, body, model, stream)

    def _generic_canonical(
        self, request: Request, body: dict[str, Any], model: str | None, stream: bool
    ) -> CanonicalRequest:
        """Other vendors: the whole body decides (as a digest); a prompt or
        an input text is lifted out so fixtures can match on it."""
        raw = body if body else (request.body.to_bytes().decode("utf-8", "replace") if request.body else "")
        extra = {"dialect": GENERIC, "body": json_digest(raw)}
        embedding_input: list[str] | None = None
        messages: list[Message] = []
        if isinstance(body.get("texts"), list):
            embedding_input = [str(t) for t in body["texts"]]
        elif isinstance(body.get("inputText"), str) and "embed" in (model or ""):
            embedding_input = [body["inputText"]]
        else:
            prompts = [body[k] for k in ("prompt", "inputText", "message") if isinstance(body.get(k), str)]
            if prompts:
                messages.append(Message(role="user", text=prompts[0]))
        return CanonicalRequest(
            family=self.family,
            model=model,
            messages=messages,
            embedding_input=embedding_input,
            stream=stream,
            extra=extra,
        )

    # -- collapse ----------------------------------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        model, _ = self._route(request)
        kind = dialect(model, request_json(request))
        if response.frames is not None:
            return self._summarize_frames(request, response, kind)
        failed = http_error(response)
        if failed is not None:
            return Summary(error=failed)
        data = response.json
        if not isinstance(data, dict):
            return Summary()
        if kind == ANTHROPIC or data.get("type") == "message":
            as_messages = Response(status=response.status, body=Payload.json(data))
            return self._anthropic.summarize(request, as_messages)
        if kind == CONVERSE_STYLE or "output" in data:
            return summarize_converse(data)
        text, reason = _generic_piece(data)
        return Summary(
            text=text,
            finish_reason=reason,
            usage=_generic_usage(data) or _header_usage(response.headers),
            embeddings=_generic_embeddings(data),
        )

    def _summarize_frames(self, request: Request, response: Response, kind: str) -> Summary:
        error: dict[str, Any] | None = None
        events: list[dict[str, Any]] = []
        for frame in response.frames or []:
            failed = frame_error(frame, response.status)
            if failed is not None:
                error = failed
                continue
            data = chunk_json(frame)
            if isinstance(data, dict):
                events.append(data)
        summary = self._summarize_events(request, response.status, events, kind)
        if error is not None:
            summary.error = error
        return summary

    def _summarize_events(
        self, request: Request, status: int, events: list[dict[str, Any]], kind: str
    ) -> Summary:
        if kind == ANTHROPIC:
            sse = [SSEEvent(event=str(e.get("type")), data=e) for e in events]
            summary = self._anthropic.summarize(request, Response(status=status, events=sse))
            for event in events:
                if event.get("type") == "message_stop" and summary.usage is None:
                    summary.usage = _generic_usage(event)
            return summary
        if kind == CONVERSE_STYLE:
            collector = ConverseCollector()
            for event in events:
                for event_type, payload in event.items():
                    collector.take(event_type, payload)
            return collector.result()
        summary = Summary()
        for event in events:
            text, reason = _generic_piece(event)
            summary.text += text
            if reason is not None:
                summary.finish_reason = reason
            summary.usage = _generic_usage(event) or summary.usage
        return summary

    # -- synthesis -----------------------------------------------------------------------

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        kind = request.extra.get("dialect") or default_dialect(request.model)
        # What was said before an in-stream error is rendered as a normal stream.
        content = dataclasses.replace(summary, error=None)
        events = self._stream_events(content, request, kind, options) if stream else []
        if summary.error:
            before = [chunk_frame(e) for e in events if not _closes_stream(e)]
            return render_error(summary, stream, before)
        if stream:
            return eventstream_response(
                [chunk_frame(e) for e in events], {"x-amzn-bedrock-content-type": JSON_CONTENT_TYPE}
            )
        body = self._body(summary, request, kind)
        counts = wire_usage(summary.usage)
        return Response(
            status=200,
            headers={
                "content-type": JSON_CONTENT_TYPE,
                "x-amzn-requestid": request_id(body),
                "x-amzn-bedrock-invocation-latency": "0",
                "x-amzn-bedrock-input-token-count": str(counts["inputTokens"]),
                "x-amzn-bedrock-output-token-count": str(counts["outputTokens"]),
            },
            body=Payload.json(body),
        )

    def _body(self, summary: Summary, request: CanonicalRequest, kind: str) -> dict[str, Any]:
        if kind == CONVERSE_STYLE:
            return converse_body(summary)
        vendor = _vendor_model(request.model)
        if kind == GENERIC and summary.embeddings is not None:
            if vendor.startswith("cohere."):
                return {
                    "embeddings": summary.embeddings,
                    "id": request_id(summary.embeddings),
                    "response_type": "embeddings_floats",
                    "texts": request.embedding_input or [],
                }
            return {
                "embedding": summary.embeddings[0] if summary.embeddings else [],
                "inputTextTokenCount": wire_usage(summary.usage)["inputTokens"],
            }
        if kind == GENERIC:
            return self._generic_body(summary, vendor)
        return self._anthropic.render(summary, request, stream=False).json

    @staticmethod
    def _generic_body(summary: Summary, vendor: str) -> dict[str, Any]:
        """The vendor's answer shape; unknown vendors get Meta Llama's flat one."""
        counts = wire_usage(summary.usage)
        reason = summary.finish_reason or "stop"
        if vendor.startswith("mistral."):
            return {"outputs": [{"text": summary.text, "stop_reason": reason}]}
        if vendor.startswith("anthropic."):  # the legacy Text Completions body
            reason = summary.finish_reason or "stop_sequence"
            return {"type": "completion", "completion": summary.text, "stop_reason": reason, "stop": None}
        if vendor.startswith("amazon.titan"):
            result = {
                "tokenCount": counts["outputTokens"],
                "outputText": summary.text,
                "completionReason": summary.finish_reason or "FINISH",
            }
            return {"inputTextTokenCount": counts["inputTokens"], "results": [result]}
        return {
            "generation": summary.text,
            "prompt_token_count": counts["inputTokens"],
            "generation_token_count": counts["outputTokens"],
            "stop_reason": reason,
        }

    def _stream_events(
        self, summary: Summary, request: CanonicalRequest, kind: str, options: RenderOptions
    ) -> list[dict[str, Any]]:
        """The vendor's own stream events, each to be wrapped in a chunk frame."""
        events: list[dict[str, Any]]
        if kind == CONVERSE_STYLE:
            events = [{name: payload} for name, payload in converse_events(summary, options.chunk_size)]
            events[-1]["amazon-bedrock-invocationMetrics"] = _invocation_metrics(summary.usage)
            return events
        vendor = _vendor_model(request.model)
        if kind == GENERIC:
            pieces = chunk_text(summary.text, options.chunk_size, DEFAULT_CHUNK_SIZE) or [""]
            body = self._generic_body(summary, vendor)
            events = [self._generic_chunk(vendor, piece, None) for piece in pieces]
            events[-1] = self._generic_chunk(vendor, pieces[-1], body)
            events[-1]["amazon-bedrock-invocationMetrics"] = _invocation_metrics(summary.usage)
            return events
        # Anthropic: the Messages API stream, without the pings Bedrock does not send.
        rendered = self._anthropic.render(summary, request, stream=True, options=options)
        events = [
            data for e in rendered.events or [] if isinstance(data := e.data, dict) and data.get("type") != "ping"
        ]
        if events and events[-1].get("type") == "message_stop":
            metrics = _invocation_metrics(summary.usage)
            events[-1] = {**events[-1], "amazon-bedrock-invocationMetrics": metrics}
        return events

    @staticmethod
    def _generic_chunk(vendor: str, piece: str, final: dict[str, Any] | None) -> dict[str, Any]:
        """One chunk of a generic vendor stream; the last carries the stop reason."""
        if vendor.startswith("mistral."):
            reason = final["outputs"][0]["stop_reason"] if final else None
            return {"outputs": [{"text": piece, "stop_reason": reason}]}
        if vendor.startswith("anthropic."):
            reason = final["stop_reason"] if final else None
            return {"type": "completion", "completion": piece, "stop_reason": reason, "stop": None}
        if vendor.startswith("amazon.titan"):
            reason = final["results"][0]["completionReason"] if final else None
            return {"outputText": piece, "index": 0, "completionReason": reason}
        return {
            "generation": piece,
            "prompt_token_count": final["prompt_token_count"] if final else None,
            "generation_token_count": final["generation_token_count"] if final else None,
            "stop_reason": final["stop_reason"] if final else None,
        }


def _closes_stream(event: dict[str, Any]) -> bool:
    """Events that end a stream normally; an exception frame replaces them."""
    if event.get("type") in ("message_delta", "message_stop"):
        return True
    return "messageStop" in event or "metadata" in event

