"""What the OpenAI API families share: the error envelope, content parts,
the finish-reason vocabulary, stream chunking and deterministic ids for
synthesis.

Rendered responses carry ids and timestamps derived from the request's
fingerprint and the summary, so replaying one fixture twice sends the same
bytes and a person diffing two replays sees no noise.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from llmock_proxy.canonical import CanonicalRequest, Summary, canonical_json
from llmock_proxy.cassette.model import Payload, Request, Response, SSEEvent
from llmock_proxy.providers.base import (
    COMMON_CATEGORICAL_FIELDS,
    CredentialScheme,
    Provider,
    RenderOptions,
    chunk_text,
    split_url,
)

JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}

# Characters of text (and of tool-call arguments) per streamed delta when the
# fixture does not say: about what the real API sends for a few tokens.
DEFAULT_CHUNK_SIZE = 20

# Text-bearing content part types across Chat Completions and the Responses API.
TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})

# The error "type" OpenAI uses for each status when the caller names none.
_TYPE_FOR_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
    500: "server_error",
    502: "server_error",
    503: "server_error",
}


class OpenAIProvider(Provider):
    """Base of the OpenAI families: recognised by the end of the path
    (``path_endings``: OpenAI, Azure's deployment paths and the compatible
    servers' prefixes alike), errors in OpenAI's envelope."""

    categorical_fields = COMMON_CATEGORICAL_FIELDS | {"finish_reason"}

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        if is_azure(request):
            return (CredentialScheme(("AZURE_OPENAI_API_KEY",), header="api-key", prefix=""),)
        return (CredentialScheme(("OPENAI_API_KEY",)),)

    def error(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
    ) -> Response:
        return error_response(status, message, type=type, code=code)


def is_azure(request: Request) -> bool:
    """An Azure OpenAI request: an Azure host, or the api-key header Azure takes."""
    host = urlsplit(request.url).hostname or ""
    return host.endswith((".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")) or (
        "api-key" in request.headers
    )


# -- errors --------------------------------------------------------------------


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> Response:
    """An error in OpenAI's envelope: ``{"error": {message, type, param, code}}``."""
    error_type = type or _TYPE_FOR_STATUS.get(status, "invalid_request_error")
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return Response(status=status, headers=dict(JSON_HEADERS), body=Payload.json(body))


def render_summary_error(summary_error: dict[str, Any]) -> Response:
    """The error response a summary's ``error`` stands for."""
    status = int(summary_error.get("status") or 500)
    if status < 400:
        # An error recorded inside a 200 stream, re-rendered as a plain answer.
        status = 500
    return error_response(
        status,
        str(summary_error.get("message") or "error"),
        type=summary_error.get("type"),
        code=summary_error.get("code"),
        param=summary_error.get("param"),
    )


def summary_error(status: int, body: Any) -> dict[str, Any]:
    """``Summary.error`` from an error body in OpenAI's envelope (or anything else)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        out: dict[str, Any] = {
            "status": status,
            "type": error.get("type") or error.get("code") or "error",
            "message": str(error.get("message") or ""),
        }
        for key in ("code", "param"):
            if error.get(key) is not None:
                out[key] = error[key]
        return out
    if isinstance(error, str):
        return {"status": status, "type": "error", "message": error}
    text = body if isinstance(body, str) else canonical_json(body) if body is not None else ""
    return {"status": status, "type": "error", "message": text}


def response_error(response: Response) -> dict[str, Any] | None:
    """``Summary.error`` when a non-stream response is an error, else None."""
    body = response_body(response)
    if response.status >= 400:
        return summary_error(response.status, body)
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and "choices" not in body:
        return summary_error(response.status, body)
    return None


def summarize_object(response: Response, read: Callable[[dict[str, Any]], Summary]) -> Summary:
    """A non-stream answer: its error when it is one, an empty summary when
    the body is no JSON object, else what ``read`` makes of the object."""
    error = response_error(response)
    if error is not None:
        return Summary(error=error)
    body = response_body(response)
    return read(body) if isinstance(body, dict) else Summary()


def response_body(response: Response) -> Any:
    """The response body as data: parsed JSON, text, or None."""
    if response.body is None:
        return None
    if response.body.kind == "json":
        return response.body.value
    if response.body.kind == "text":
        return Payload.from_bytes(str(response.body.value).encode(), "application/json").value
    return None


def json_response(body: dict[str, Any], *, request_id: str | None = None) -> Response:
    headers = dict(JSON_HEADERS)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(status=200, headers=headers, body=Payload.json(body))


def sse_response(events: list[SSEEvent], *, request_id: str | None = None) -> Response:
    headers = dict(SSE_HEADERS)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(status=200, headers=headers, events=events)


# -- request content -----------------------------------------------------------


def content_text(content: Any) -> str:
    """The text of a message content: a string or a list of parts.

    Only text parts count; images, audio and files are ignored for matching.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES:
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
        return "".join(texts)
    return ""


def request_model(request: Request, body: dict[str, Any]) -> str | None:
    """The model a request names: the body's, or on Azure the deployment in the path."""
    return body.get("model") or azure_deployment(split_url(request.url)[1])


def azure_deployment(path: str) -> str | None:
    """The deployment id of an Azure OpenAI path
    (``/openai/deployments/{deployment}/...``), which names the model there."""
    marker = "/openai/deployments/"
    if marker not in path:
        return None
    return path.split(marker, 1)[1].split("/", 1)[0] or None


def normalize_response_format(value: Any) -> Any:
    """``{"type": "text"}`` is the default; treat it as no format at all."""
    if isinstance(value, dict) and value.get("type") == "text" and len(value) == 1:
        return None
    return value


def join_system(parts: list[str]) -> str | None:
    texts = [p for p in parts if p]
    return "\n\n".join(texts) if texts else None


# -- response vocabulary -------------------------------------------------------

# Finish reasons of every family mapped onto Chat Completions' vocabulary.
_FINISH_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "complete": "stop",
    "completed": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "tool_calls": "tool_calls",
    "tool_use": "tool_calls",
    "tool_call": "tool_calls",
    "function_call": "function_call",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "refusal": "content_filter",
}


def chat_finish_reason(summary: Summary) -> str:
    """The Chat Completions finish reason for a summary from any family."""
    if summary.finish_reason:
        mapped = _FINISH_REASONS.get(summary.finish_reason.lower())
        if mapped:
            return mapped
    return "tool_calls" if summary.tool_calls else "stop"


def chunks(text: str, size: int) -> list[str]:
    """``text`` cut into pieces of ``size`` characters (the family default when 0)."""
    return chunk_text(text, size, DEFAULT_CHUNK_SIZE)


# -- deterministic ids -----------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits
# Each digest byte as one base-62 character (bytes.translate does it in C).
_ALNUM_BYTES = bytes(ord(_ALNUM[n % len(_ALNUM)]) for n in range(256))


@dataclass(frozen=True)
class DerivedIds:
    """Ids and timestamps derived from one seed: stable across replays."""

    seed: str

    @classmethod
    def for_render(
        cls, request: CanonicalRequest, summary: Summary, options: RenderOptions, content_fingerprint: str | None = None
    ) -> DerivedIds:
        """Ids for ``summary`` rendered for ``request``; the request's content
        fingerprint and the answer's key are taken from the arguments or the
        options when the caller has them."""
        if options.ids is not None:
            return options.ids  # type: ignore[no-any-return]
        # The answer is part of the seed so two answers to one request
        # (a sequence of fixtures) do not share ids.
        answer = options.answer_key if options.answer_key is not None else canonical_json(summary.to_dict())
        return cls((content_fingerprint or options.content_fingerprint or request.content_fingerprint) + answer)

    @cached_property
    def _seeded(self) -> Any:
        """The hash state after ``seed|``: every label's digest continues from
        it (a render takes four or more, and the seed is the long part)."""
        return hashlib.sha256(f"{self.seed}|".encode())

    def _digest(self, label: str) -> bytes:
        state = self._seeded.copy()
        state.update(label.encode())
        return state.digest()

    def hex(self, label: str, length: int) -> str:
        if length <= 64:  # one digest: the common case
            return self._digest(f"{label}#0").hex()[:length]
        digest = b""
        counter = 0
        while len(digest) * 2 < length:
            digest += self._digest(f"{label}#{counter}")
            counter += 1
        return digest.hex()[:length]

    def alnum(self, label: str, length: int) -> str:
        """``length`` base-62 characters, one per digest byte (each of the 62
        is about equally likely: what an id needs, at a tenth of the cost of
        converting the digest's number to base 62)."""
        digest = self._digest(f"{label}#0")
        counter = 1
        while len(digest) < length:
            digest += self._digest(f"{label}#{counter}")
            counter += 1
        return digest[:length].translate(_ALNUM_BYTES).decode("ascii")

    def timestamp(self) -> int:
        """A plausible Unix time (2023-11 .. 2027-01), fixed for this seed."""
        return 1_700_000_000 + int(self.hex("created", 12), 16) % 100_000_000

    def request_id(self) -> str:
        return "req_" + self.hex("request", 32)
