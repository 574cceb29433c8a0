"""InvokeModel (``/invoke``, ``/invoke-with-response-stream``): the body is the model
vendor's own format (Anthropic Messages, Converse-style for Nova, or any other)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any

from llmock_proxy import nesting
from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
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
    RenderOptions,
    chunk_text,
    json_digest,
    request_json,
)
from llmock_proxy.providers.bedrock.common import (
    DEFAULT_CHUNK_SIZE,
    JSON_CONTENT_TYPE,
    BedrockProvider,
    event_frame,
    eventstream_response,
    frame_error,
    frame_json,
    http_error,
    render_error,
    request_id,
)
from llmock_proxy.providers.bedrock.converse import (
    ConverseCollector,
    converse_body,
    converse_events,
    converse_request,
    summarize_converse,
    wire_usage,
)

# -- InvokeModel -----------------------------------------------------------------------

# Which body format an InvokeModel request speaks, kept in ``extra["dialect"]``.
ANTHROPIC, CONVERSE_STYLE, GENERIC = "anthropic", "converse", "generic"

# Where vendors put the generated text (and their stop reason) in a body or a chunk.
_TEXT_FIELDS = ("generation", "outputText", "completion", "text")
_LIST_FIELDS = ("outputs", "results", "generations", "choices")
_REASON_FIELDS = ("stop_reason", "completionReason", "finish_reason")
# Finish reasons in OpenAI's vocabulary (a hand-written answer's) in the
# vendors' own; Mistral and Meta speak OpenAI's already.
_TITAN_REASONS = {"stop": "FINISH", "length": "LENGTH", "content_filter": "CONTENT_FILTERED"}
_LEGACY_ANTHROPIC_REASONS = {"stop": "stop_sequence", "length": "max_tokens"}


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
        return nesting.loads(base64.b64decode(data["bytes"], validate=True))
    except (ValueError, binascii.Error):
        return None


class BedrockInvoke(BedrockProvider):
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
            reason = _LEGACY_ANTHROPIC_REASONS.get(reason, reason) if summary.finish_reason else "stop_sequence"
            return {"type": "completion", "completion": summary.text, "stop_reason": reason, "stop": None}
        if vendor.startswith("amazon.titan"):
            result = {
                "tokenCount": counts["outputTokens"],
                "outputText": summary.text,
                "completionReason": _TITAN_REASONS.get(reason, reason) if summary.finish_reason else "FINISH",
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

