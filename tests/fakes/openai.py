"""Fake OpenAI: Chat Completions, Responses and Embeddings, as api.openai.com speaks them.

Wire facts followed (platform.openai.com API reference):
- Chat Completions stream: unnamed SSE events, each a ``chat.completion.chunk``;
  the first delta carries the role, tool calls arrive as ``tool_calls`` deltas
  keyed by ``index`` (id, type and name first, then argument fragments); with
  ``stream_options.include_usage`` every chunk has ``usage: null`` and a last
  chunk with empty ``choices`` carries the usage; ``data: [DONE]`` ends it.
- Responses stream: named SSE events (``event:`` equals the payload ``type``)
  with a ``sequence_number``, from ``response.created`` to ``response.completed``,
  no ``[DONE]``.
- Embeddings: ``encoding_format`` ``float`` (list) or ``base64`` (little-endian
  float32 bytes).
- Errors: ``{"error": {"message", "type", "param", "code"}}``.
Azure OpenAI deployment paths and its ``api-key`` header are accepted too.
"""

from __future__ import annotations

import base64
import secrets
import struct
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    FakeProvider,
    JSONDict,
    RecordedRequest,
    Script,
    StreamEvent,
    bearer_token,
    chunk_string,
    compact,
    count_tokens,
    derived_embedding,
    random_id,
    unix_now,
)

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def _obfuscation() -> str:
    # Stream chunks carry random padding of varying length (stream_options.include_obfuscation).
    return random_id("", length=4 + secrets.randbelow(12))


class OpenAIFake(FakeProvider):
    name = "openai"
    hosts = ("api.openai.com", "*.openai.azure.com")

    def routes(self) -> list[tuple[str, str, Any]]:
        routes = []
        for prefix in ("/v1", "/openai/deployments/{deployment}", "/openai/v1"):
            routes += [
                ("POST", f"{prefix}/chat/completions", self.chat_completions),
                ("POST", f"{prefix}/responses", self.responses),
                ("POST", f"{prefix}/embeddings", self.embeddings),
            ]
        return routes

    def is_authorized(self, request: RecordedRequest) -> bool:
        return bool(bearer_token(request) or request.header("api-key"))

    def unauthorized_message(self) -> str:
        return (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )

    def error_body(self, status: int, message: str) -> JSONDict:
        kind, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def error_headers(self, status: int) -> dict[str, str]:
        return {"x-request-id": random_id("req_", 32)}

    # -- chat completions -------------------------------------------------------------

    async def chat_completions(
        self, request: web.Request, script: Script, recorded: RecordedRequest
    ) -> web.StreamResponse:
        body = recorded.json or {}
        model = body.get("model", "gpt-4o-mini")
        completion_id = random_id("chatcmpl-", 29)
        created = unix_now()
        fingerprint = random_id("fp_", 10).lower()
        tool_calls = [
            {
                "id": call.id or random_id("call_", 24),
                "type": "function",
                "function": {"name": call.name, "arguments": compact(call.arguments)},
            }
            for call in script.tool_calls
        ]
        finish_reason = "tool_calls" if tool_calls else "stop"
        prompt_tokens = count_tokens(body.get("messages", []))
        completion_tokens = count_tokens(script.text) + count_tokens([c["function"]["arguments"] for c in tool_calls])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        headers = {"x-request-id": random_id("req_", 32), "openai-processing-ms": "42"}

        if not body.get("stream"):
            message: JSONDict = {
                "role": "assistant",
                "content": script.text or None,
                "refusal": None,
                "annotations": [],
            }
            if tool_calls:
                message["tool_calls"] = tool_calls
            return self.json_reply(
                script,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
                    ],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": fingerprint,
                },
                headers=headers,
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: JSONDict, finish: str | None = None, *, choices: list | None = None) -> JSONDict:
            out: JSONDict = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": fingerprint,
                "choices": choices
                if choices is not None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                out["usage"] = None
            out["obfuscation"] = _obfuscation()
            return out

        events = [StreamEvent(None, chunk({"role": "assistant", "content": "", "refusal": None}))]
        for piece in script.text_chunks():
            events.append(StreamEvent(None, chunk({"content": piece})))
        for index, call in enumerate(tool_calls):
            first = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            events.append(StreamEvent(None, chunk({"tool_calls": [first]})))
            for piece in chunk_string(call["function"]["arguments"]):
                events.append(
                    StreamEvent(None, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
                )
        events.append(StreamEvent(None, chunk({}, finish_reason)))
        if include_usage:
            last = chunk({}, choices=[])
            last["usage"] = usage
            events.append(StreamEvent(None, last))
        return await self.sse_reply(request, script, events, trailer=b"data: [DONE]\n\n", headers=headers)

    # -- responses ---------------------------------------------------------------------

    async def responses(
        self, request: web.Request, script: Script, recorded: RecordedRequest
    ) -> web.StreamResponse:
        body = recorded.json or {}
        model = body.get("model", "gpt-4o-mini")
        input_tokens = count_tokens(body.get("input", "")) + count_tokens(body.get("instructions") or "")
        output_items: list[JSONDict] = []
        if script.text:
            output_items.append(
                {
                    "id": random_id("msg_", 48).lower(),
                    "type": "message",
                    "status": "completed",
                    "content": [
                        {"type": "output_text", "annotations": [], "logprobs": [], "text": script.text}
                    ],
                    "role": "assistant",
                }
            )
        for call in script.tool_calls:
            output_items.append(
                {
                    "id": random_id("fc_", 48).lower(),
                    "type": "function_call",
                    "status": "completed",
                    "arguments": compact(call.arguments),
                    "call_id": call.id or random_id("call_", 24),
                    "name": call.name,
                }
            )
        output_tokens = count_tokens(script.text) + count_tokens([compact(c.arguments) for c in script.tool_calls])
        final = {
            "id": random_id("resp_", 48).lower(),
            "object": "response",
            "created_at": unix_now(),
            "status": "completed",
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": output_items,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
            "user": None,
            "metadata": body.get("metadata", {}),
        }
        headers = {"x-request-id": random_id("req_", 32)}
        if not body.get("stream"):
            return self.json_reply(script, final, headers=headers)

        events: list[StreamEvent] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append(StreamEvent(kind, {"type": kind, "sequence_number": len(events), **fields}))

        in_progress = {**final, "status": "in_progress", "output": [], "usage": None}
        emit("response.created", response=in_progress)
        emit("response.in_progress", response=in_progress)
        for index, item in enumerate(output_items):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "content": []},
                )
                empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                emit("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=empty_part)
                for piece in script.text_chunks():
                    emit(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                        obfuscation=_obfuscation(),
                    )
                emit(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
                emit(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part={**empty_part, "text": text},
                )
            else:
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
                for piece in chunk_string(item["arguments"]):
                    emit(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                        obfuscation=_obfuscation(),
                    )
                emit(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            emit("response.output_item.done", output_index=index, item=item)
        emit("response.completed", response=final)
        return await self.sse_reply(request, script, events, headers=headers)

    # -- embeddings --------------------------------------------------------------------

    async def embeddings(
        self, request: web.Request, script: Script, recorded: RecordedRequest
    ) -> web.StreamResponse:
        body = recorded.json or {}
        raw_input = body.get("input", "")
        inputs = raw_input if isinstance(raw_input, list) else [raw_input]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = script.embedding if script.embedding is not None else derived_embedding(str(item))
            if body.get("dimensions"):
                vector = vector[: int(body["dimensions"])]
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                if as_base64
                else list(vector)
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = count_tokens(inputs)
        return self.json_reply(
            script,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "text-embedding-3-small"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers={"x-request-id": random_id("req_", 32)},
        )
