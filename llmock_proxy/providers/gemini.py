"""Google Gemini over HTTP: generateContent and the embedding methods.

The same REST surface is served by two hosts:

* AI Studio (``generativelanguage.googleapis.com``):
  ``POST /v1beta/models/{model}:generateContent``,
  ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (also under
  ``/v1/`` and ``/v1alpha/``, and ``tunedModels/{m}``);
* Vertex AI (``{location}-aiplatform.googleapis.com``):
  ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
  and the ``/v1beta1/`` variant the google-genai SDK uses; express mode
  (API key, no project) drops the ``projects/{p}/locations/{l}/`` prefix.

The story of one generateContent exchange:

1. The model is in the path; the body holds ``contents`` (role ``user`` /
   ``model``; parts ``text``, ``functionCall {name, args, id?}``,
   ``functionResponse {name, response, id?}``, inline data...),
   ``systemInstruction``, ``tools[].functionDeclarations`` and
   ``generationConfig`` (``responseMimeType``, ``responseSchema``,
   ``responseJsonSchema``...). Streaming is the ``:streamGenerateContent``
   method, not a body flag.
2. The answer is a ``GenerateContentResponse``: ``candidates[].content.parts``,
   ``finishReason``, ``usageMetadata``, ``modelVersion``, ``responseId``.
3. Streamed, every SSE event is ``data: <GenerateContentResponse>`` (no event
   names, no ``[DONE]``); the text is the concatenation of the chunks, the
   last one carries ``finishReason`` and the final ``usageMetadata``. Without
   ``alt=sse`` the same chunks arrive as one JSON array.
4. Errors are ``{"error": {"code", "message", "status"}}`` with Google's
   canonical status names.

Embeddings: ``:embedContent`` (``{content}`` -> ``{embedding: {values}}``),
``:batchEmbedContents`` (``{requests: [...]}`` -> ``{embeddings: [...]}``), and
on Vertex ``:predict`` for embedding models (``{instances: [{content}]}`` ->
``{predictions: [{embeddings: {values}}]}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
    Tool,
    ToolCall,
    ToolResult,
)
from llmock_proxy.cassette.model import Payload, Request, Response, SSEEvent
from llmock_proxy.providers.base import (
    COMMON_CATEGORICAL_FIELDS,
    CredentialScheme,
    Provider,
    RenderOptions,
    answer_parts,
    asked_dimensions,
    chunk_text,
    json_digest,
    object_at,
    parse_arguments,
    request_json,
    split_url,
    token_counts,
    token_total,
    turn_messages,
)

DEFAULT_CHUNK_SIZE = 20

# {version}/[projects/{p}/locations/{l}/][publishers/google/]{models|tunedModels|endpoints}/{id}:{method}
_PATH = re.compile(
    r"/(?P<version>v\d+(?:alpha|beta)?\d*)/"
    r"(?:projects/[^/]+/locations/[^/]+/)?"
    r"(?:publishers/google/)?"
    r"(?P<resource>models|tunedModels|endpoints)/(?P<id>[^/:]+)"
    r":(?P<method>[A-Za-z]+)$"
)

GENERATE_METHODS = frozenset({"generateContent", "streamGenerateContent"})
EMBED_METHODS = frozenset({"embedContent", "batchEmbedContents"})

FINISH_REASONS = frozenset(
    {"STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "LANGUAGE", "OTHER", "BLOCKLIST",
     "PROHIBITED_CONTENT", "SPII", "MALFORMED_FUNCTION_CALL", "IMAGE_SAFETY",
     "UNEXPECTED_TOOL_CALL", "FINISH_REASON_UNSPECIFIED"}
)
# Other families' finish reasons (compared lower-case), for rendering a
# summary recorded elsewhere.
_FOREIGN_FINISH_REASONS = {
    "stop": "STOP",
    "end_turn": "STOP",
    "complete": "STOP",
    "stop_sequence": "STOP",
    "tool_calls": "STOP",
    "tool_call": "STOP",
    "tool_use": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "max_tokens": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "content_filtered": "SAFETY",
    "guardrail_intervened": "SAFETY",
    "refusal": "SAFETY",
}

# Google's canonical error codes, by the HTTP status they travel with.
STATUS_NAMES_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
STATUS_NAMES = frozenset(
    {*STATUS_NAMES_BY_HTTP.values(), "FAILED_PRECONDITION", "OUT_OF_RANGE", "ALREADY_EXISTS",
     "DATA_LOSS", "UNKNOWN"}
)

_SSE_HEADERS = {"content-type": "text/event-stream"}
_JSON_HEADERS = {"content-type": "application/json; charset=UTF-8"}


@dataclass(frozen=True)
class GeminiPath:
    """What a Gemini REST path says: API version, model and method."""

    version: str
    model: str
    method: str

    @classmethod
    def parse(cls, path: str) -> GeminiPath | None:
        found = _PATH.search(unquote(path))
        if found is None:
            return None
        resource, ident = found["resource"], found["id"]
        model = ident if resource == "models" else f"{resource}/{ident}"
        return cls(version=found["version"], model=model, method=found["method"])


# Vector length of a made-up embedding when the request asks for no
# outputDimensionality: text-embedding-004's (and aimock's).
DEFAULT_EMBEDDING_DIMENSIONS = 768


def google_error(status: int, message: str, type: str = "") -> Response:
    """An error in Google's envelope. ``type`` is used when it is one of
    Google's status names; otherwise the name follows the HTTP status."""
    if type in STATUS_NAMES:
        name = type
    else:
        name = STATUS_NAMES_BY_HTTP.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    body = {"error": {"code": status, "message": message, "status": name}}
    return Response(status=status, headers=dict(_JSON_HEADERS), body=Payload.json(body))


def google_error_summary(body: Any, status: int) -> dict[str, Any] | None:
    """Summary.error for a Google error envelope, or None when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    err = body["error"]
    code = err.get("code") if isinstance(err.get("code"), int) else status
    if code < 400:
        code = 500
    name = err.get("status") or STATUS_NAMES_BY_HTTP.get(code, "INTERNAL")
    return {"status": code, "type": str(name), "message": str(err.get("message", ""))}


# AI Studio keys; Vertex AI uses OAuth tokens, which the canary cannot mint.
GEMINI_CREDENTIALS = (CredentialScheme(("GEMINI_API_KEY", "GOOGLE_API_KEY"), header="x-goog-api-key", prefix=""),)
GEMINI_USAGE_OBJECTS = frozenset({"usageMetadata", "usage_metadata"})


class _GeminiREST(Provider):
    """What the REST methods share: the model and method in the path, and
    errors in Google's envelope."""

    stream_form = "sse"
    categorical_fields = COMMON_CATEGORICAL_FIELDS | {"finishReason", "finish_reason"}
    usage_objects = GEMINI_USAGE_OBJECTS

    def stream_item_type(self, payload: Any, name: str | None = None, *, fallback: str = "message") -> str:
        # Every chunk of a stream is one GenerateContentResponse, whichever
        # fields it carries (candidates, usageMetadata, modelVersion, ...).
        return "GenerateContentResponse" if isinstance(payload, dict) else name or fallback

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        return GEMINI_CREDENTIALS

    def detect(self, method: str, host: str, path: str) -> bool:
        parsed = GeminiPath.parse(path)
        return method == "POST" and parsed is not None and self._serves(parsed)

    def _serves(self, parsed: GeminiPath) -> bool:
        raise NotImplementedError

    @staticmethod
    def _path(request: Request) -> GeminiPath | None:
        return GeminiPath.parse(split_url(request.url)[1])

    def _render_error(self, error: dict[str, Any]) -> Response:
        """The error a summary recorded, in Google's envelope."""
        return self.error(
            int(error.get("status") or 500),
            str(error.get("message") or ""),
            type=str(error.get("type") or ""),
        )

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        return google_error(status, message, type)  # Google's code field is the HTTP status


class GeminiGenerate(_GeminiREST):
    family = "gemini.generate"

    # -- 1. which requests are ours -------------------------------------------

    def _serves(self, parsed: GeminiPath) -> bool:
        return parsed.method in GENERATE_METHODS

    # -- 2. the request, canonical --------------------------------------------

    def canonical(self, request: Request) -> CanonicalRequest:
        parsed = self._path(request)
        body = request_json(request)
        config = body.get("generationConfig")
        return CanonicalRequest(
            family=self.family,
            model=parsed.model if parsed else None,
            system=_system_text(body.get("systemInstruction")),
            messages=_messages(body.get("contents")),
            tools=_tools(body.get("tools")),
            response_format=_response_format(config if isinstance(config, dict) else {}),
            stream=parsed is not None and parsed.method == "streamGenerateContent",
        )

    # -- 3. the response, collapsed -------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        if response.events is not None:
            chunks = [e.data for e in response.events]
        elif isinstance(response.json, list):  # streamGenerateContent without alt=sse
            chunks = list(response.json)
        elif response.json is not None:
            chunks = [response.json]
        else:
            chunks = []
        collector = _ChunkCollector()
        for chunk in chunks:
            error = google_error_summary(chunk, response.status)
            if error is not None:
                collector.summary.error = error
            elif isinstance(chunk, dict):
                collector.feed(chunk)
        if response.status >= 400 and collector.summary.error is None:
            text = response.body.to_bytes().decode("utf-8", "replace") if response.body else ""
            collector.summary.error = {
                "status": response.status,
                "type": STATUS_NAMES_BY_HTTP.get(response.status, "UNKNOWN"),
                "message": text,
            }
        return collector.finish()

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
            return self._render_error(summary.error)
        # A responseId that is the same on every replay of the same summary.
        response_id = summary.response_id or json_digest(summary.to_dict(), 22)
        base = {"modelVersion": summary.model or request.model or "", "responseId": response_id}
        if not stream:
            body = _response_chunk(_parts(summary), summary, last=True, base=base)
            return Response(status=200, headers=dict(_JSON_HEADERS), body=Payload.json(body))
        groups = _streamed_parts(summary, options.chunk_size)
        events = [
            SSEEvent(data=_response_chunk(parts, summary, last=i == len(groups) - 1, base=base))
            for i, parts in enumerate(groups)
        ]
        return Response(status=200, headers=dict(_SSE_HEADERS), events=events)


class GeminiEmbed(_GeminiREST):
    """The embedding methods; they never stream."""

    family = "gemini.embed"

    def _serves(self, parsed: GeminiPath) -> bool:
        return _is_embed(parsed)

    def canonical(self, request: Request) -> CanonicalRequest:
        parsed = self._path(request)
        body = request_json(request)
        method = parsed.method if parsed else "embedContent"
        if method == "batchEmbedContents":
            items = [r for r in body.get("requests") or [] if isinstance(r, dict)]
            inputs = [_content_text(r.get("content")) for r in items]
            options = _embed_options(items[0] if items else {})
        elif method == "predict":
            instances = [i for i in body.get("instances") or [] if isinstance(i, dict)]
            inputs = [_content_text(i.get("content")) for i in instances]
            parameters = body.get("parameters")
            options = _embed_options({
                **(instances[0] if instances else {}),
                **(parameters if isinstance(parameters, dict) else {}),
            })
        else:
            inputs = [_content_text(body.get("content"))]
            options = _embed_options(body)
        extra: dict[str, Any] = {"method": method}
        if options:
            extra["options"] = options
        return CanonicalRequest(
            family=self.family,
            model=parsed.model if parsed else None,
            embedding_input=inputs,
            extra=extra,
        )

    def embedding_dimensions(self, request: CanonicalRequest) -> int | None:
        options = request.extra.get("options")
        asked = options.get("outputDimensionality") if isinstance(options, dict) else None
        return asked_dimensions(asked, DEFAULT_EMBEDDING_DIMENSIONS)

    def summarize(self, request: Request, response: Response) -> Summary:
        body = response.json
        error = google_error_summary(body, response.status)
        if error is not None:
            return Summary(error=error)
        if not isinstance(body, dict):
            return Summary()
        if isinstance(body.get("embedding"), dict):
            vectors = [body["embedding"].get("values") or []]
        elif isinstance(body.get("embeddings"), list):
            vectors = [e.get("values") or [] for e in body["embeddings"] if isinstance(e, dict)]
        elif isinstance(body.get("predictions"), list):
            vectors = [
                (p.get("embeddings") or {}).get("values") or []
                for p in body["predictions"]
                if isinstance(p, dict)
            ]
        else:
            return Summary()
        usage = body.get("usageMetadata")
        return Summary(embeddings=vectors, usage=usage if isinstance(usage, dict) else None)

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        if summary.error:
            return self._render_error(summary.error)
        vectors = summary.embeddings or []
        method = request.extra.get("method", "embedContent")
        body: dict[str, Any]
        if method == "batchEmbedContents":
            body = {"embeddings": [{"values": v} for v in vectors]}
        elif method == "predict":
            body = {"predictions": [{"embeddings": {"values": v}} for v in vectors]}
        else:
            body = {"embedding": {"values": vectors[0] if vectors else []}}
            if summary.usage:
                body["usageMetadata"] = summary.usage
        return Response(status=200, headers=dict(_JSON_HEADERS), body=Payload.json(body))


# -- request helpers -------------------------------------------------------------


def _is_embed(parsed: GeminiPath) -> bool:
    # Vertex serves its older embedding models through the generic :predict
    # method, which image and video models share: tell them apart by name.
    return parsed.method in EMBED_METHODS or (parsed.method == "predict" and "embedding" in parsed.model)


def _part_texts(parts: Any) -> str:
    """The text of a list of parts, without the model's thought parts."""
    if not isinstance(parts, list):
        return ""
    return "".join(
        str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p and not p.get("thought")
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return _part_texts(content.get("parts"))
    if isinstance(content, list):  # a bare list of parts
        return _part_texts(content)
    return ""


def _system_text(instruction: Any) -> str | None:
    if instruction is None:
        return None
    return _content_text(instruction)


def _messages(contents: Any) -> list[Message]:
    messages: list[Message] = []
    for content in contents if isinstance(contents, list) else []:
        if not isinstance(content, dict):
            continue
        parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
        role = "assistant" if content.get("role") == "model" else "user"
        calls = [
            ToolCall(name=str(fc.get("name", "")), arguments=fc.get("args"), id=fc.get("id"))
            for fc in (p["functionCall"] for p in parts if isinstance(p.get("functionCall"), dict))
        ]
        results = [
            ToolResult(content=fr.get("response"), tool_call_id=fr.get("id"), name=fr.get("name"))
            for fr in (p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict))
        ]
        # inlineData, fileData, executableCode...: not part of the match.
        messages += turn_messages(role, _part_texts(parts), calls, results)
    return messages


def _tools(raw: Any) -> list[Tool]:
    tools: list[Tool] = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if key == "functionDeclarations" and isinstance(value, list):
                for decl in value:
                    if not isinstance(decl, dict):
                        continue
                    description = decl.get("description")
                    tools.append(
                        Tool(
                            name=str(decl.get("name", "")),
                            description=description if isinstance(description, str) else None,
                            parameters=decl.get("parameters", decl.get("parametersJsonSchema")),
                        )
                    )
            else:
                # Built-in tools (googleSearch, codeExecution, urlContext...).
                tools.append(Tool(name=key, parameters=value or None))
    return tools


def _response_format(config: dict[str, Any]) -> Any:
    schema = config.get("responseJsonSchema", config.get("responseSchema"))
    mime = config.get("responseMimeType")
    if schema is not None:
        return {"type": "json_schema", "schema": schema}
    if mime == "application/json":
        return {"type": "json_object"}
    if isinstance(mime, str) and mime != "text/plain":
        return {"type": mime}
    return None


def _embed_options(source: dict[str, Any]) -> dict[str, Any]:
    """Embedding settings that change the vectors (dimension, task)."""
    keys = {"taskType": "taskType", "task_type": "taskType",
            "outputDimensionality": "outputDimensionality", "title": "title"}
    return {name: source[key] for key, name in keys.items() if source.get(key) is not None}


# -- response helpers ------------------------------------------------------------


class _ChunkCollector:
    """Folds GenerateContentResponse chunks (one, or a stream) into a Summary."""

    def __init__(self) -> None:
        self.summary = Summary()
        self.reasoning: list[str] = []

    def feed(self, chunk: dict[str, Any]) -> None:
        if isinstance(chunk.get("modelVersion"), str):
            self.summary.model = chunk["modelVersion"]
        if isinstance(chunk.get("usageMetadata"), dict):
            self.summary.usage = chunk["usageMetadata"]
        candidates = chunk.get("candidates")
        if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
            return
        candidate = candidates[0]  # the SDK's .text and .function_calls read the first
        if candidate.get("finishReason"):
            self.summary.finish_reason = candidate["finishReason"]
        content = object_at(candidate, "content")
        for part in content.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if "text" in part:
                if part.get("thought"):
                    self.reasoning.append(str(part["text"]))
                else:
                    self.summary.text += str(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                call = part["functionCall"]
                self.summary.tool_calls.append(
                    ToolCall(
                        name=str(call.get("name", "")),
                        arguments=parse_arguments(call.get("args")),
                        id=call.get("id"),
                    )
                )

    def finish(self) -> Summary:
        self.summary.reasoning = "".join(self.reasoning) or None
        return self.summary


def finish_reason_for(summary: Summary) -> str:
    """Gemini's ``finishReason`` for a summary recorded in any family."""
    reason = summary.finish_reason
    if reason in FINISH_REASONS:
        return reason
    return _FOREIGN_FINISH_REASONS.get((reason or "").lower(), "STOP")


def usage_metadata_for(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Gemini ``usageMetadata`` from a usage mapping in any family's vocabulary."""
    usage = usage or {}
    if "promptTokenCount" in usage or "totalTokenCount" in usage:
        # Gemini's own counts pass through whole; a hand-written answer may
        # leave the total out.
        return {**usage, "totalTokenCount": token_total(usage)}

    prompt, output = token_counts(usage)
    return {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": token_total(usage)}


def _call_part(call: ToolCall) -> dict[str, Any]:
    function_call: dict[str, Any] = {"name": call.name, "args": call.arguments if call.arguments is not None else {}}
    if call.id:
        function_call["id"] = call.id
    return {"functionCall": function_call}


def _parts(summary: Summary) -> list[dict[str, Any]]:
    """The thought first, then text and function calls as the answer orders them."""
    parts: list[dict[str, Any]] = []
    if summary.reasoning:
        parts.append({"text": summary.reasoning, "thought": True})
    for part in answer_parts(summary):
        parts.append({"text": part} if isinstance(part, str) else _call_part(summary.tool_calls[part]))
    return parts or [{"text": ""}]


def _streamed_parts(summary: Summary, chunk_size: int) -> list[list[dict[str, Any]]]:
    """The parts of each streamed chunk: thoughts and text in pieces, function
    calls whole (Gemini never splits a call), the calls said one after the
    other in one chunk, all in the answer's order."""
    thoughts = chunk_text(summary.reasoning or "", chunk_size, DEFAULT_CHUNK_SIZE)
    groups: list[list[dict[str, Any]]] = [[{"text": piece, "thought": True}] for piece in thoughts]
    calls: list[dict[str, Any]] = []
    for part in answer_parts(summary):
        if isinstance(part, int):
            calls.append(_call_part(summary.tool_calls[part]))
            continue
        if calls:
            groups.append(calls)
            calls = []
        groups += [[{"text": piece}] for piece in chunk_text(part, chunk_size, DEFAULT_CHUNK_SIZE)]
    if calls:
        groups.append(calls)
    return groups or [[{"text": ""}]]


def _response_chunk(
    parts: list[dict[str, Any]], summary: Summary, *, last: bool, base: dict[str, Any]
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    chunk: dict[str, Any] = {"candidates": [candidate]}
    if last:
        candidate["finishReason"] = finish_reason_for(summary)
        chunk["usageMetadata"] = usage_metadata_for(summary.usage)
    chunk.update(base)
    return chunk


__all__ = [
    "GeminiEmbed",
    "GeminiGenerate",
    "GeminiPath",
    "finish_reason_for",
    "google_error",
    "usage_metadata_for",
]
