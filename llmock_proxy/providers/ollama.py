"""Ollama's native API: /api/chat, /api/generate, /api/embed (and the legacy
/api/embeddings).

Ollama streams by default: a request is a stream unless its body says
``"stream": false``. A stream is newline-delimited JSON: one object per
delta, then a last object with ``done: true``, the ``done_reason`` and the
token counts and durations. Tool-call arguments travel as JSON objects, not
strings; ``format`` asks for JSON (``"json"``) or for a JSON schema. An error
is ``{"error": "..."}``, with an HTTP status before a stream starts or as a
line of its own once it has.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
    ToolCall,
    ToolResult,
    canonical_json,
)
from llmock_proxy.cassette.model import NDJSONLine, Payload, Request, Response
from llmock_proxy.providers.base import (
    COMMON_CATEGORICAL_FIELDS,
    CredentialScheme,
    Provider,
    RenderOptions,
    answer_parts,
    asked_dimensions,
    chunk_text,
    function_tool_calls,
    function_tools,
    json_digest,
    request_json,
    split_url,
    text_of,
    token_counts,
)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
DEFAULT_CHUNK_SIZE = 4  # characters per streamed delta, about one token

# The done_reason values Ollama itself sends; anything else is translated.
DONE_REASONS = ("stop", "length", "load", "unload")
_LENGTH_REASONS = {"length", "max_tokens", "MAX_TOKENS", "model_context_window_exceeded"}

# Token counts and durations of the final object, in the order Ollama writes them.
_METRIC_FIELDS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


# -- request side ---------------------------------------------------------------


def response_format(value: Any) -> Any:
    """``format``: "json" asks for any JSON object, a mapping is a JSON schema."""
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "schema": value}
    return None


def conversation(body: dict[str, Any]) -> tuple[str | None, list[Message], list[Any]]:
    """(system prompt, messages, image digests) of a /api/chat body.

    System messages are gathered into the system prompt; a ``tool`` message
    is the result of a call, named by ``tool_name`` (older clients: ``name``).
    Images are kept as digests so two pictures never look the same.
    """
    system: list[str] = []
    messages: list[Message] = []
    images: list[Any] = []
    for index, raw in enumerate(body.get("messages") or []):
        if not isinstance(raw, dict):
            continue
        role = str(raw.get("role") or "user")
        text = text_of(raw.get("content"))
        if raw.get("images"):
            images.append([index, json_digest(raw["images"])])
        if role == "system":
            system.append(text)
        elif role == "tool":
            result = ToolResult(
                content=raw.get("content"),
                tool_call_id=raw.get("tool_call_id"),
                name=raw.get("tool_name") or raw.get("name"),
            )
            messages.append(Message(role="tool", tool_results=[result]))
        else:
            # Tool calls carry ids only in newer releases.
            calls = function_tool_calls(raw.get("tool_calls"))
            messages.append(Message(role=role, text=text, tool_calls=calls))
    return ("\n".join(system) if system else None), messages, images


def wants_stream(body: dict[str, Any]) -> bool:
    """Ollama streams unless told not to."""
    return body.get("stream") is not False


# -- response side ----------------------------------------------------------------


def created_at() -> str:
    """The RFC 3339 UTC timestamp Ollama puts on every object."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def usage_of(data: dict[str, Any]) -> dict[str, Any] | None:
    usage = {}
    if isinstance(data.get("prompt_eval_count"), int):
        usage["input_tokens"] = data["prompt_eval_count"]
    if isinstance(data.get("eval_count"), int):
        usage["output_tokens"] = data["eval_count"]
    return usage or None


def metrics(usage: dict[str, Any] | None) -> dict[str, int]:
    """The final object's counts; durations are not recorded, so they are zero."""
    input_tokens, output_tokens = token_counts(usage)
    counts = {"prompt_eval_count": input_tokens, "eval_count": output_tokens}
    return {key: counts.get(key, 0) for key in _METRIC_FIELDS}


def done_reason(summary: Summary) -> str:
    if summary.finish_reason in DONE_REASONS:
        return summary.finish_reason
    if summary.finish_reason in _LENGTH_REASONS:
        return "length"
    return "stop"


def error_summary(status: int, data: Any) -> Summary | None:
    """A Summary holding the error, when ``data`` is Ollama's error object."""
    if isinstance(data, dict) and "error" in data:
        message = data["error"] if isinstance(data["error"], str) else canonical_json(data["error"])
        return Summary(error={"status": status, "message": message})
    if status >= 400:  # not Ollama's envelope: a proxy's page, say
        message = data if isinstance(data, str) else "" if data is None else canonical_json(data)
        return Summary(error={"status": status, "message": message})
    return None


def response_data(response: Response) -> Any:
    if response.body is None:
        return None
    return response.body.value


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(status=status, headers={"content-type": JSON_CONTENT_TYPE}, body=Payload.json(body))


def ndjson_response(objects: list[dict[str, Any]], status: int = 200) -> Response:
    lines = [NDJSONLine(data=data) for data in objects]
    return Response(status=status, headers={"content-type": NDJSON_CONTENT_TYPE}, lines=lines)


def stamped(model: str, fields: dict[str, Any]) -> dict[str, Any]:
    """An object as Ollama writes every one: the model and the time first."""
    return {"model": model, "created_at": created_at(), **fields}


class _OllamaProvider(Provider):
    """What the three Ollama endpoints share: errors, how a recorded answer
    is read, and (chat and generate) how one is written: deltas, then a last
    object with ``done: true``, the reason and the counts."""

    stream_form = "ndjson"
    categorical_fields = COMMON_CATEGORICAL_FIELDS | {"done_reason"}
    # Ollama's counters sit at the top level of the last object, and it drops
    # prompt_eval_count for a cached prompt.
    usage_objects = frozenset()
    usage_fields = frozenset(
        {"prompt_eval_count", "eval_count", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration"}
    )

    def stream_item_type(self, payload: Any, name: str | None = None, *, fallback: str = "message") -> str:
        # Every line is a chunk; the last one says done: true.
        if isinstance(payload, dict) and "done" in payload:
            return "done" if payload["done"] is True else "chunk"
        return super().stream_item_type(payload, name, fallback=fallback)

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        # A local Ollama needs none; a hosted one takes a bearer token.
        return (CredentialScheme(("OLLAMA_API_KEY",), optional=True),)

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        return json_response({"error": message}, status)  # Ollama's envelope is the message alone

    def _error_response(self, summary: Summary, stream: bool, deltas: list[dict[str, Any]]) -> Response:
        """An error before the stream (HTTP status) or inside it (a last line)."""
        error = summary.error or {}
        status = int(error.get("status") or 500)
        message = str(error.get("message") or "")
        if status < 400 and stream:
            return ndjson_response([*deltas, {"error": message}], status)
        return self.error(status if status >= 400 else 500, message)

    # -- collapse ------------------------------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        """Chat and generate: one JSON object, or lines folded in order."""
        if response.lines is not None:
            return self._summarize_lines(response.lines, Summary(), response.status)
        data = response_data(response)
        failed = error_summary(response.status, data)
        if failed is not None:
            return failed
        summary = Summary()
        if isinstance(data, dict):
            self._take_delta(data, summary)
            summary.finish_reason = data.get("done_reason")
            summary.usage = usage_of(data)
        return summary

    def _summarize_lines(self, lines: list[NDJSONLine], summary: Summary, status: int) -> Summary:
        for line in lines:
            data = line.data
            if not isinstance(data, dict):
                continue
            if "error" in data:
                found = error_summary(status, data)
                summary.error = found.error if found else None
                continue
            self._take_delta(data, summary)
            if data.get("done"):
                summary.finish_reason = data.get("done_reason")
                summary.usage = usage_of(data)
        return summary

    def _take_delta(self, data: dict[str, Any], summary: Summary) -> None:
        if summary.model is None and data.get("model"):
            summary.model = data["model"]
        self._take_content(data, summary)

    def _take_content(self, data: dict[str, Any], summary: Summary) -> None:
        raise NotImplementedError

    # -- synthesis -----------------------------------------------------------------

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        model = summary.model or request.model or ""
        deltas = []
        if stream:
            deltas = [
                stamped(model, {**fields, "done": False})
                for fields in self._delta_fields(summary, options.chunk_size)
            ]
        if summary.error:
            return self._error_response(summary, stream, deltas)
        if not stream:
            return json_response({**stamped(model, self._answer_fields(summary)), **self._final_fields(summary)})
        final = {**stamped(model, self._closing_fields()), **self._final_fields(summary)}
        return ndjson_response([*deltas, final])

    def _delta_fields(self, summary: Summary, chunk_size: int) -> list[dict[str, Any]]:
        """What each streamed delta says, in order."""
        raise NotImplementedError

    def _answer_fields(self, summary: Summary) -> dict[str, Any]:
        """What the one object of a non-stream answer says."""
        raise NotImplementedError

    def _closing_fields(self) -> dict[str, Any]:
        """The (empty) content of a stream's last object."""
        raise NotImplementedError

    def _final_fields(self, summary: Summary) -> dict[str, Any]:
        return {"done_reason": done_reason(summary), "done": True, **metrics(summary.usage)}


# -- /api/chat ---------------------------------------------------------------------


class OllamaChat(_OllamaProvider):
    family = "ollama.chat"
    path_endings = ("/api/chat",)

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        system, messages, images = conversation(body)
        extra: dict[str, Any] = {}
        if images:
            extra["images"] = images
        if body.get("think") is not None:
            extra["think"] = body["think"]
        return CanonicalRequest(
            family=self.family,
            model=body.get("model"),
            system=system,
            messages=messages,
            tools=function_tools(body.get("tools")),
            response_format=response_format(body.get("format")),
            stream=wants_stream(body),
            extra=extra,
        )

    def _take_content(self, data: dict[str, Any], summary: Summary) -> None:
        message = data.get("message")
        if not isinstance(message, dict):
            return
        summary.text += message.get("content") or ""
        if message.get("thinking"):
            summary.reasoning = (summary.reasoning or "") + message["thinking"]
        summary.tool_calls.extend(function_tool_calls(message.get("tool_calls")))

    def _delta_fields(self, summary: Summary, chunk_size: int) -> list[dict[str, Any]]:
        """Thinking first, then text and tool calls as the answer orders them,
        the calls said one after the other in one object, as Ollama does."""
        thinking = chunk_text(summary.reasoning or "", chunk_size, DEFAULT_CHUNK_SIZE)
        messages = [self._message("", piece, []) for piece in thinking]
        calls: list[int] = []
        for part in answer_parts(summary):
            if isinstance(part, int):
                calls.append(part)
                continue
            if calls:
                messages.append(self._message("", None, summary.tool_calls, calls))
                calls = []
            messages += [self._message(piece, None, []) for piece in chunk_text(part, chunk_size, DEFAULT_CHUNK_SIZE)]
        if calls:
            messages.append(self._message("", None, summary.tool_calls, calls))
        return [{"message": m} for m in messages]

    def _answer_fields(self, summary: Summary) -> dict[str, Any]:
        return {"message": self._message(summary.text, summary.reasoning, summary.tool_calls)}

    def _closing_fields(self) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": ""}}

    @staticmethod
    def _message(
        text: str, thinking: str | None, calls: list[ToolCall], which: list[int] | None = None
    ) -> dict[str, Any]:
        """An assistant message; ``which`` picks the calls it carries (all by default)."""
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        indices = range(len(calls)) if which is None else which
        if indices:
            message["tool_calls"] = [
                {
                    **({"id": calls[index].id} if calls[index].id else {}),
                    "function": {"index": index, "name": calls[index].name, "arguments": calls[index].arguments},
                }
                for index in indices
            ]
        return message


# -- /api/generate -----------------------------------------------------------------


class OllamaGenerate(_OllamaProvider):
    family = "ollama.generate"
    path_endings = ("/api/generate",)

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        prompt = body.get("prompt")
        extra: dict[str, Any] = {}
        for key in ("suffix", "think", "raw", "template"):
            if body.get(key) is not None:
                extra[key] = body[key]
        if body.get("images"):
            extra["images"] = json_digest(body["images"])
        if body.get("context"):
            # The token state of an earlier exchange: it decides the answer.
            extra["context"] = json_digest(body["context"])
        return CanonicalRequest(
            family=self.family,
            model=body.get("model"),
            system=body.get("system"),
            messages=[Message(role="user", text=prompt)] if isinstance(prompt, str) else [],
            response_format=response_format(body.get("format")),
            stream=wants_stream(body),
            extra=extra,
        )

    def _take_content(self, data: dict[str, Any], summary: Summary) -> None:
        summary.text += data.get("response") or ""
        if data.get("thinking"):
            summary.reasoning = (summary.reasoning or "") + data["thinking"]

    def _delta_fields(self, summary: Summary, chunk_size: int) -> list[dict[str, Any]]:
        thinking = chunk_text(summary.reasoning or "", chunk_size, DEFAULT_CHUNK_SIZE)
        fields: list[dict[str, Any]] = [{"response": "", "thinking": piece} for piece in thinking]
        fields += [{"response": piece} for piece in chunk_text(summary.text, chunk_size, DEFAULT_CHUNK_SIZE)]
        return fields

    def _answer_fields(self, summary: Summary) -> dict[str, Any]:
        fields: dict[str, Any] = {"response": summary.text}
        if summary.reasoning:
            fields["thinking"] = summary.reasoning
        return fields

    def _closing_fields(self) -> dict[str, Any]:
        return {"response": ""}


# -- /api/embed and /api/embeddings -------------------------------------------------


class OllamaEmbed(_OllamaProvider):
    """``/api/embed`` takes ``input`` (a string or a list) and answers
    ``embeddings``; the legacy ``/api/embeddings`` takes one ``prompt`` and
    answers one ``embedding``. Neither streams."""

    family = "ollama.embed"
    path_endings = ("/api/embed", "/api/embeddings")
    LEGACY_PATH = "/api/embeddings"
    # Vector length of a made-up embedding when the request asks for no
    # ``dimensions`` (aimock's).
    DEFAULT_DIMENSIONS = 1536

    def embedding_dimensions(self, request: CanonicalRequest) -> int | None:
        return asked_dimensions(request.extra.get("dimensions"), self.DEFAULT_DIMENSIONS)

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        _, path, _ = split_url(request.url)
        extra: dict[str, Any] = {}
        if path.rstrip("/").endswith(self.LEGACY_PATH):
            # The legacy endpoint answers in another shape: remember which was asked.
            extra["endpoint"] = self.LEGACY_PATH
            raw_input: Any = body.get("prompt")
        else:
            raw_input = body.get("input")
        if isinstance(raw_input, str):
            inputs = [raw_input]
        elif isinstance(raw_input, list):
            inputs = [item if isinstance(item, str) else canonical_json(item) for item in raw_input]
        else:
            inputs = []
        if body.get("dimensions") is not None:
            extra["dimensions"] = body["dimensions"]
        return CanonicalRequest(
            family=self.family,
            model=body.get("model"),
            embedding_input=inputs,
            stream=False,
            extra=extra,
        )

    def summarize(self, request: Request, response: Response) -> Summary:
        data = response_data(response)
        failed = error_summary(response.status, data)
        if failed is not None:
            return failed
        summary = Summary()
        if isinstance(data, dict):
            summary.model = data.get("model")
            if isinstance(data.get("embeddings"), list):
                summary.embeddings = data["embeddings"]
            elif isinstance(data.get("embedding"), list):
                summary.embeddings = [data["embedding"]]
            summary.usage = usage_of(data)
        return summary

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        if summary.error:
            return self._error_response(summary, False, [])
        vectors = summary.embeddings or []
        if request.extra.get("endpoint") == self.LEGACY_PATH:
            body: dict[str, Any] = {"embedding": vectors[0] if vectors else []}
        else:
            body = {"model": summary.model or request.model or "", "embeddings": vectors}
            counts = metrics(summary.usage)
            body.update(
                {
                    "total_duration": 0,
                    "load_duration": 0,
                    "prompt_eval_count": counts["prompt_eval_count"],
                }
            )
        return json_response(body)
