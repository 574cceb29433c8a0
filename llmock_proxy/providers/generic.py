"""Any other HTTP API: matched on method, path, query and body.

The generic family knows nothing of the API behind it, so its canonical
request is the request itself, minus what changes between runs without
changing the answer: credentials in the query string (``key``, ``api_key``,
``access_token``, ``token``, ``signature``, ``sig``, ``X-Amz-*``) and the
spelling of a JSON body (key order, whitespace). A ``model`` and a boolean
``stream`` in a JSON body are still read, so the readable match says what
the request was about.

There is no meaning to synthesize an answer from: replay serves generic
interactions verbatim, and :meth:`Generic.render` refuses.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from llmock_proxy import nesting
from llmock_proxy.canonical import CanonicalRequest, Summary, canonical_json
from llmock_proxy.cassette.model import Payload, Request, Response
from llmock_proxy.providers.base import Provider, RenderOptions, request_json

# Query parameters that carry credentials or signatures (compared lower-case).
CREDENTIAL_PARAMS = frozenset({"key", "api_key", "access_token", "token", "signature", "sig"})
CREDENTIAL_PREFIXES = ("x-amz-",)

_JSON_HEADERS = {"content-type": "application/json"}


def is_credential_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in CREDENTIAL_PARAMS or lowered.startswith(CREDENTIAL_PREFIXES)


def query_without_credentials(query: str) -> dict[str, Any]:
    """The query string as a mapping (repeated names keep every value, in a
    list), without credential parameters."""
    out: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if is_credential_param(name):
            continue
        if name in out:
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


def body_digest(body: Payload | None) -> str | None:
    """Digest of a request body: of its canonical JSON when it is JSON (so key
    order and whitespace do not matter), of its raw bytes otherwise."""
    if body is None:
        return None
    if body.kind == "json":
        data = canonical_json(body.value).encode()
    else:
        raw = body.to_bytes()
        if not raw:
            return None
        try:
            data = canonical_json(nesting.loads(raw)).encode()
        except ValueError:  # not JSON, or too deep to read (TooDeep): the bytes themselves
            data = raw
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]


class Generic(Provider):
    family = "generic"
    stream_form = "sse"

    def detect(self, method: str, host: str, path: str) -> bool:
        return True  # the catch-all: asked last, takes anything

    def canonical(self, request: Request) -> CanonicalRequest:
        parts = urlsplit(request.url)
        body = request_json(request)
        model = body.get("model")
        stream = body.get("stream")
        extra: dict[str, Any] = {
            "method": request.method.upper(),
            "path": parts.path or "/",
            "query": query_without_credentials(parts.query),
        }
        digest = body_digest(request.body)
        if digest is not None:
            extra["body"] = digest
        return CanonicalRequest(
            family=self.family,
            model=model if isinstance(model, str) else None,
            stream=stream if isinstance(stream, bool) else False,
            extra=extra,
        )

    def summarize(self, request: Request, response: Response) -> Summary:
        """Best effort: a text body is the text, a JSON body may name its
        model, an error status becomes the summary's error."""
        summary = Summary()
        body = response.json
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            summary.model = body["model"]
        elif response.body is not None and response.body.kind == "text" and response.status < 400:
            summary.text = str(response.body.value)
        if response.status >= 400:
            summary.error = {"status": response.status, **_error_fields(response)}
        return summary

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        raise NotImplementedError(
            "generic family: there is no API format to synthesize a response in; "
            "replay serves recorded generic interactions verbatim"
        )

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        body: dict[str, Any] = {"error": {"message": message, "type": type}}
        if code is not None:
            body["error"]["code"] = code
        return Response(status=status, headers=dict(_JSON_HEADERS), body=Payload.json(body))


def _error_fields(response: Response) -> dict[str, Any]:
    """type and message of an error body in the common shapes:
    ``{"error": {"type", "message"}}``, ``{"error": "..."}``, ``{"message": "..."}``, text."""
    body = response.json
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            kind = err.get("type", err.get("status", err.get("code")))
            return {"type": str(kind) if kind is not None else "error", "message": str(err.get("message", ""))}
        if isinstance(err, str):
            return {"type": "error", "message": err}
        if isinstance(body.get("message"), str):
            return {"type": str(body.get("type", "error")), "message": body["message"]}
    text = response.body.to_bytes().decode("utf-8", "replace") if response.body is not None else ""
    return {"type": "error", "message": text}


__all__ = ["CREDENTIAL_PARAMS", "Generic", "body_digest", "is_credential_param", "query_without_credentials"]
