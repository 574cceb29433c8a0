"""What every provider module offers, and the types they exchange.

A provider module tells one API family's story top to bottom:

* ``detect``     – is this (method, host, path) one of mine?
* ``canonical``  – the wire request -> :class:`CanonicalRequest`
* ``summarize``  – the recorded response (any wire form) -> :class:`Summary`
* ``render``     – a :class:`Summary` -> a :class:`Response` in this family's
                   wire form, streaming or not (replay synthesis)
* ``error``      – an error :class:`Response` in this family's own envelope

Providers know no mitmproxy, no sockets and no YAML: they work on the
cassette models (:mod:`llmock_proxy.cassette`), whose stream elements are
already decoded by :mod:`llmock_proxy.wire`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..canonical import CanonicalRequest, Summary
from ..cassette import Request, Response


@dataclass(frozen=True)
class RenderOptions:
    """How a synthesized stream is cut up. Timing is the engine's business."""

    chunk_size: int = 0  # characters of text per delta; 0 = family default
    # Embedding encoding the client asked for ("float" or "base64").
    encoding_format: str = "float"


class Provider:
    """Base class; subclasses set ``family`` and override what their API needs."""

    family: str = "generic"
    # Wire form of this family's streaming responses: "sse", "ndjson",
    # "eventstream" or "websocket".
    stream_form: str = "sse"

    def detect(self, method: str, host: str, path: str) -> bool:
        raise NotImplementedError

    def canonical(self, request: Request) -> CanonicalRequest:
        raise NotImplementedError

    def summarize(self, request: Request, response: Response) -> Summary:
        raise NotImplementedError

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        raise NotImplementedError

    def error(self, status: int, message: str, *, type: str = "invalid_request_error") -> Response:
        raise NotImplementedError

    def is_stream_request(self, request: Request) -> bool:
        """Whether the client asked for a stream (body flag, path or query)."""
        return self.canonical(request).stream


# -- helpers shared by provider modules ----------------------------------------


def split_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(host, path, query) of an absolute URL or a bare path."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.path or "/", dict(parse_qsl(parts.query))


def request_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, {} when it has none or is not JSON."""
    if request.body is None:
        return {}
    if request.body.kind == "json":
        return request.body.value if isinstance(request.body.value, dict) else {}
    if request.body.kind == "text":
        try:
            value = json.loads(request.body.value)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def parse_arguments(value: Any) -> Any:
    """Tool-call arguments as data: providers send JSON strings or objects."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError:
            return value
    return value


def text_of(content: Any) -> str:
    """Concatenated text of a content value: a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(part) for part in content)
    if isinstance(content, dict):
        for key in ("text", "input_text", "output_text", "content"):
            if key in content and isinstance(content[key], (str, list)):
                return text_of(content[key])
    return ""
