"""Fake Ollama API (``/api/chat``, ``/api/generate``, ``/api/embed``).

Wire facts followed (github.com/ollama/ollama docs/api.md):
- streaming is the default (``"stream": false`` turns it off) and is NDJSON
  (``application/x-ndjson``), one object per line with ``model``,
  ``created_at`` (RFC 3339, nanoseconds) and ``done``; the last line has
  ``done: true``, ``done_reason`` and the timing/count fields;
- chat lines carry ``message {role, content}``; tool calls come whole in one
  line as ``message.tool_calls[].function {name, arguments}`` with arguments
  as an object;
- generate lines carry ``response``; the last one adds ``context``;
- ``/api/embed`` -> ``{"model", "embeddings": [[...]], ...}``;
- errors: ``{"error": "..."}``.
A local Ollama needs no key; ``require_auth=True`` checks a Bearer token as
ollama.com does.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    FakeProvider,
    JSONDict,
    RecordedRequest,
    Script,
    bearer_token,
    count_tokens,
    derived_embedding,
    iso_now,
)


def _durations(prompt_tokens: int, output_tokens: int) -> JSONDict:
    # Nanosecond timings differ on every call, as on a real server.
    eval_ns = 1_000_000 * output_tokens + secrets.randbelow(1_000_000)
    prompt_ns = 500_000 * prompt_tokens + secrets.randbelow(1_000_000)
    load_ns = 1_000_000 + secrets.randbelow(1_000_000)
    return {
        "total_duration": eval_ns + prompt_ns + load_ns,
        "load_duration": load_ns,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prompt_ns,
        "eval_count": output_tokens,
        "eval_duration": eval_ns,
    }


class OllamaFake(FakeProvider):
    name = "ollama"
    hosts = ("ollama.com",)

    def __init__(self, script: Script | None = None, *, require_auth: bool = False) -> None:
        super().__init__(script)
        self.require_auth = require_auth

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/api/chat", self.chat),
            ("POST", "/api/generate", self.generate),
            ("POST", "/api/embed", self.embed),
        ]

    def is_authorized(self, request: RecordedRequest) -> bool:
        return not self.require_auth or bearer_token(request) is not None

    def unauthorized_message(self) -> str:
        return "unauthorized"

    def error_body(self, status: int, message: str) -> JSONDict:
        return {"error": message}

    async def chat(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        body = recorded.json or {}
        model = body.get("model", "llama3.2")
        prompt_tokens = count_tokens(body.get("messages", []))
        output_tokens = count_tokens(script.text) + count_tokens([c.arguments for c in script.tool_calls])
        done_reason = "stop"
        final: JSONDict = {
            "model": model,
            "created_at": iso_now(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": done_reason,
            "done": True,
            **_durations(prompt_tokens, output_tokens),
        }
        tool_calls = [{"function": {"name": c.name, "arguments": c.arguments}} for c in script.tool_calls]
        if body.get("stream", True) is False:
            message: JSONDict = {"role": "assistant", "content": script.text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            return self.json_reply(script, {**final, "message": message})
        lines: list[JSONDict] = [
            {"model": model, "created_at": iso_now(), "message": {"role": "assistant", "content": piece}, "done": False}
            for piece in script.text_chunks()
        ]
        if tool_calls:
            lines.append(
                {
                    "model": model,
                    "created_at": iso_now(),
                    "message": {"role": "assistant", "content": "", "tool_calls": tool_calls},
                    "done": False,
                }
            )
        lines.append(final)
        return await self.ndjson_reply(request, script, lines)

    async def generate(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        body = recorded.json or {}
        model = body.get("model", "llama3.2")
        prompt_tokens = count_tokens(body.get("prompt", ""))
        final: JSONDict = {
            "model": model,
            "created_at": iso_now(),
            "response": "",
            "done": True,
            "done_reason": "stop",
            "context": [secrets.randbelow(128_000) for _ in range(4)],
            **_durations(prompt_tokens, count_tokens(script.text)),
        }
        if body.get("stream", True) is False:
            return self.json_reply(script, {**final, "response": script.text})
        lines: list[JSONDict] = [
            {"model": model, "created_at": iso_now(), "response": piece, "done": False}
            for piece in script.text_chunks()
        ]
        lines.append(final)
        return await self.ndjson_reply(request, script, lines)

    async def embed(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        body = recorded.json or {}
        raw = body.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        vectors = [list(script.embedding) if script.embedding is not None else derived_embedding(str(i)) for i in inputs]
        return self.json_reply(
            script,
            {
                "model": body.get("model", "all-minilm"),
                "embeddings": vectors,
                **{k: v for k, v in _durations(count_tokens(inputs), 0).items() if k in ("total_duration", "load_duration", "prompt_eval_count")},
            },
        )
