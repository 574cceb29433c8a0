"""Fake Anthropic Messages API (api.anthropic.com ``POST /v1/messages``).

Wire facts followed (docs.anthropic.com, "Messages" and "Streaming Messages"):
- auth by ``x-api-key`` (or ``Authorization: Bearer`` for OAuth tokens); the
  ``anthropic-version`` header is required;
- stream events are named and the payload ``type`` equals the name:
  ``message_start``, then per content block ``content_block_start`` /
  ``content_block_delta`` (``text_delta`` or ``input_json_delta`` with
  ``partial_json``) / ``content_block_stop``, ``ping`` events in between,
  ``message_delta`` (stop_reason, output usage) and ``message_stop``;
- errors: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

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
    random_id,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def content_blocks(script: Script) -> list[JSONDict]:
    """The assistant content the script describes, as Messages API blocks."""
    blocks: list[JSONDict] = []
    if script.text:
        blocks.append({"type": "text", "text": script.text})
    for call in script.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id or random_id("toolu_01", 22), "name": call.name, "input": call.arguments}
        )
    return blocks


def message_events(script: Script, model: str, input_tokens: int) -> tuple[list[StreamEvent], JSONDict]:
    """The streamed events for the script's reply, and the whole message they add up to."""
    blocks = content_blocks(script)
    stop_reason = "tool_use" if script.tool_calls else "end_turn"
    output_tokens = count_tokens(script.text) + count_tokens([compact(c.arguments) for c in script.tool_calls])
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    message = {
        "id": random_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    events: list[StreamEvent] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(StreamEvent(kind, {"type": kind, **fields}))

    emit(
        "message_start",
        message={**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}},
    )
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
            if index == 0:
                emit("ping")
            for piece in script.text_chunks():
                emit("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        else:
            emit("content_block_start", index=index, content_block={**block, "input": {}})
            if index == 0:
                emit("ping")
            for piece in chunk_string(compact(block["input"])):
                emit("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": piece})
        emit("content_block_stop", index=index)
    emit("message_delta", delta={"stop_reason": stop_reason, "stop_sequence": None}, usage={"output_tokens": output_tokens})
    emit("message_stop")
    return events, message


class AnthropicFake(FakeProvider):
    name = "anthropic"
    hosts = ("api.anthropic.com",)

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/v1/messages", self.messages)]

    def is_authorized(self, request: RecordedRequest) -> bool:
        return bool(request.header("x-api-key") or bearer_token(request))

    def unauthorized_message(self) -> str:
        return "x-api-key header is required"

    def check_request(self, request: RecordedRequest) -> web.Response | None:
        if not request.header("anthropic-version"):
            return self.error_response(400, "anthropic-version: header is required")
        return None

    def error_body(self, status: int, message: str) -> JSONDict:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": random_id("req_011", 21)}

    def error_headers(self, status: int) -> dict[str, str]:
        return {"request-id": random_id("req_011", 21)}

    async def messages(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        body = recorded.json or {}
        model = body.get("model", "claude-sonnet-4-5")
        input_tokens = count_tokens(body.get("messages", [])) + count_tokens(body.get("system") or "")
        events, message = message_events(script, model, input_tokens)
        headers = {"request-id": random_id("req_011", 21)}
        if not body.get("stream"):
            return self.json_reply(script, message, headers=headers)
        return await self.sse_reply(request, script, events, headers=headers)
