"""Fake Gemini API (generativelanguage.googleapis.com, AI Studio paths; Vertex paths too).

Wire facts followed (ai.google.dev API reference):
- ``POST /{v1beta|v1}/models/{model}:generateContent`` answers a
  ``GenerateContentResponse``: ``candidates[].content.parts[]`` (``text`` or
  ``functionCall {name, args}``), ``finishReason``, ``usageMetadata``,
  ``modelVersion``, ``responseId``;
- ``:streamGenerateContent?alt=sse`` sends one ``GenerateContentResponse`` per
  SSE ``data: `` line (CRLF separated, no event names, no ``[DONE]``); the last
  one carries ``finishReason`` and the full ``usageMetadata``;
- ``:embedContent`` -> ``{"embedding": {"values"}}``, ``:batchEmbedContents``
  -> ``{"embeddings": [{"values"}]}``;
- auth by ``x-goog-api-key`` header or ``?key=`` (Bearer for Vertex);
- errors: ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    FakeProvider,
    JSONDict,
    RecordedRequest,
    Script,
    StreamEvent,
    bearer_token,
    count_tokens,
    derived_embedding,
    random_id,
)

_PATH = re.compile(
    r"^/(?P<version>v1beta1|v1beta|v1alpha|v1)/"
    r"(?:projects/[^/]+/locations/[^/]+/publishers/google/)?"
    r"models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GeminiFake(FakeProvider):
    name = "gemini"
    hosts = (
        "generativelanguage.googleapis.com",
        "aiplatform.googleapis.com",
        "us-central1-aiplatform.googleapis.com",
    )

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/{path:.+}", self.dispatch)]

    def is_authorized(self, request: RecordedRequest) -> bool:
        return bool(request.header("x-goog-api-key") or request.query.get("key") or bearer_token(request))

    def unauthorized_message(self) -> str:
        return "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."

    def error_body(self, status: int, message: str) -> JSONDict:
        name = _STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": name}}

    async def dispatch(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        match = _PATH.match(recorded.path)
        if match is None:
            return self.error_response(404, f"The requested URL {recorded.path} was not found on this server.")
        model, method = match["model"], match["method"]
        body = recorded.json or {}
        if method == "generateContent":
            return self.json_reply(script, self._final_response(script, model, body))
        if method == "streamGenerateContent":
            if recorded.query.get("alt") != "sse":
                # Without alt=sse the API streams one JSON array; the SDKs always ask for SSE.
                return self.json_reply(script, [self._final_response(script, model, body)])  # type: ignore[arg-type]
            return await self._stream(request, script, model, body)
        if method == "embedContent":
            text = _content_text(body.get("content", {}))
            return self.json_reply(script, {"embedding": {"values": self._vector(script, text)}})
        if method == "batchEmbedContents":
            vectors = [
                {"values": self._vector(script, _content_text(item.get("content", {})))}
                for item in body.get("requests", [])
            ]
            return self.json_reply(script, {"embeddings": vectors})
        return self.error_response(404, f"Method {method} is not supported by the fake for {model}.")

    @staticmethod
    def _vector(script: Script, text: str) -> list[float]:
        return list(script.embedding) if script.embedding is not None else derived_embedding(text)

    @staticmethod
    def _parts(script: Script) -> list[JSONDict]:
        parts: list[JSONDict] = [{"text": script.text}] if script.text else []
        parts += [{"functionCall": {"name": c.name, "args": c.arguments}} for c in script.tool_calls]
        return parts

    @staticmethod
    def _usage(script: Script, body: JSONDict) -> JSONDict:
        prompt = count_tokens(body.get("contents", [])) + count_tokens(body.get("systemInstruction") or {})
        output = count_tokens(script.text) + count_tokens([c.arguments for c in script.tool_calls])
        return {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }

    def _final_response(self, script: Script, model: str, body: JSONDict) -> JSONDict:
        return {
            "candidates": [
                {
                    "content": {"parts": self._parts(script), "role": "model"},
                    "finishReason": "STOP",
                    "avgLogprobs": -0.12,
                    "index": 0,
                }
            ],
            "usageMetadata": self._usage(script, body),
            "modelVersion": model,
            "responseId": random_id("", 22),
        }

    async def _stream(self, request: web.Request, script: Script, model: str, body: JSONDict) -> web.StreamResponse:
        response_id = random_id("", 22)
        usage = self._usage(script, body)
        words = script.text_chunks()
        # Gemini streams a few tokens per event: group the words in threes.
        pieces = ["".join(words[i : i + 3]) for i in range(0, len(words), 3)]
        parts_per_event: list[list[JSONDict]] = [[{"text": p}] for p in pieces]
        calls = [{"functionCall": {"name": c.name, "args": c.arguments}} for c in script.tool_calls]
        if calls:
            parts_per_event.append(calls)
        if not parts_per_event:
            parts_per_event = [[{"text": ""}]]
        events = []
        for index, parts in enumerate(parts_per_event):
            last = index == len(parts_per_event) - 1
            candidate: JSONDict = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = "STOP"
            events.append(
                StreamEvent(
                    None,
                    {
                        "candidates": [candidate],
                        "usageMetadata": usage
                        if last
                        else {"promptTokenCount": usage["promptTokenCount"], "totalTokenCount": usage["promptTokenCount"]},
                        "modelVersion": model,
                        "responseId": response_id,
                    },
                )
            )
        return await self.sse_reply(request, script, events, separator="\r\n")


def _content_text(content: JSONDict) -> str:
    return " ".join(str(p.get("text", "")) for p in content.get("parts", []) if isinstance(p, dict))
