"""OpenAI Embeddings: ``POST .../embeddings``.

Also Azure (``/openai/deployments/{deployment}/embeddings``), OpenRouter,
Mistral, Voyage and the other OpenAI-compatible servers. Ollama's own
``/api/embeddings`` is not this API and is left to the Ollama provider.

Request: ``model``, ``input`` (a string, a list of strings, a token array
or a list of token arrays), ``dimensions``, ``encoding_format``. The openai
SDK asks for ``base64`` unless the caller says ``float``, and decodes it
itself: the vectors then travel as base64 of little-endian float32.

Response: ``{"object": "list", "data": [{"object": "embedding", "index",
"embedding"}], "model", "usage": {prompt_tokens, total_tokens}}``. Never
streamed.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from llmock_proxy.canonical import CanonicalRequest, Summary
from llmock_proxy.cassette.model import Request, Response, compact_json
from llmock_proxy.providers import _openai_common as common
from llmock_proxy.providers.base import (
    MAX_EMBEDDING_DIMENSIONS,
    RenderOptions,
    asked_dimensions,
    deterministic_embedding,
    request_json,
    token_counts,
)

FAMILY = "openai.embeddings"

# Vector length of a made-up embedding when the request asks for no
# ``dimensions``: text-embedding-3-small's (and aimock's).
DEFAULT_DIMENSIONS = 1536


class OpenAIEmbeddings(common.OpenAIProvider):
    family = FAMILY
    stream_form = "sse"  # never used: embeddings are not streamed
    path_endings = ("/embeddings",)

    # -- detect ------------------------------------------------------------------

    def detect(self, method: str, host: str, path: str) -> bool:
        # Ollama's own /api/embeddings is another API.
        return super().detect(method, host, path) and path.rstrip("/") != "/api/embeddings"

    # -- canonical request -----------------------------------------------------

    def canonical(self, request: Request) -> CanonicalRequest:
        body = request_json(request)
        extra: dict[str, Any] = {}
        if body.get("dimensions") is not None:
            extra["dimensions"] = body["dimensions"]
        return CanonicalRequest(
            family=self.family,
            model=common.request_model(request, body),
            embedding_input=_inputs(body.get("input")),
            extra=extra,
        )

    def render_options(self, request: Request, options: RenderOptions = RenderOptions()) -> RenderOptions:
        """``options`` with the encoding the client asked for (the SDK default is base64).

        The encoding changes the bytes, not the meaning, so it is not part of
        the canonical request; the replay engine asks here before rendering.
        """
        requested = request_json(request).get("encoding_format")
        return options.replaced(encoding_format="base64" if requested == "base64" else "float")

    def embedding_dimensions(self, request: CanonicalRequest) -> int | None:
        return asked_dimensions(request.extra.get("dimensions"), DEFAULT_DIMENSIONS)

    # -- summarize a recorded response -------------------------------------------

    def summarize(self, request: Request, response: Response) -> Summary:
        return common.summarize_object(response, _summarize_list)

    # -- render a summary as the real API would send it ----------------------------

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool = False,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        if summary.error:
            return common.render_summary_error(summary.error)
        inputs = request.embedding_input or []
        vectors = summary.embeddings
        if vectors is None:
            # A fixture that only says "answer this input" still gets vectors:
            # deterministic ones, so equal inputs embed equally.
            dimensions = self.embedding_dimensions(request) or 0
            if not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
                dimensions = DEFAULT_DIMENSIONS
            vectors = [deterministic_embedding(text, dimensions) for text in inputs]
        encode = encode_base64 if options.encoding_format == "base64" else list
        prompt_tokens, _ = token_counts(summary.usage)
        if summary.usage is None:
            prompt_tokens = sum(len(text.split()) for text in inputs)
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(vector)}
                for i, vector in enumerate(vectors)
            ],
            "model": summary.model or request.model or "text-embedding-3-small",
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        ids = common.DerivedIds.for_render(request, summary, options)
        return common.json_response(body, request_id=ids.request_id())


# -- request pieces --------------------------------------------------------------


def _inputs(value: Any) -> list[str] | None:
    """``input`` as a list of strings; a token array is spelled as its JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [compact_json(value)]  # one token array
        return [v if isinstance(v, str) else compact_json(v) for v in value]
    return [compact_json(value)]


# -- summarize ---------------------------------------------------------------------


def _summarize_list(body: dict[str, Any]) -> Summary:
    """A ``list`` of ``embedding`` rows, in index order."""
    rows = [row for row in body.get("data") or [] if isinstance(row, dict)]
    rows.sort(key=lambda row: row.get("index", 0))
    return Summary(
        embeddings=[decode_vector(row.get("embedding")) for row in rows],
        usage=body.get("usage"),
        model=body.get("model"),
    )


# -- vectors -----------------------------------------------------------------------


def encode_base64(vector: list[float]) -> str:
    """A vector as the API's base64: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_vector(value: Any) -> list[float]:
    """A recorded embedding (a float list or base64 float32) as floats."""
    if isinstance(value, str):
        raw = base64.b64decode(value)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
    if isinstance(value, list):
        return [float(v) for v in value]
    return []
