"""Fake Cohere v2 Chat API (api.cohere.com ``POST /v2/chat``).

Wire facts followed (docs.cohere.com, "Chat API (v2)" and "Streaming"):
- auth ``Authorization: Bearer``;
- JSON reply: ``id``, ``message {role, content: [{type: text, text}],
  tool_plan, tool_calls: [{id, type: function, function {name, arguments (a
  JSON string)}}]}``, ``finish_reason`` (``COMPLETE`` / ``TOOL_CALL``), ``usage
  {billed_units, tokens}``;
- stream: named SSE events whose payload ``type`` equals the name:
  ``message-start``, ``content-start`` / ``content-delta`` / ``content-end``,
  ``tool-plan-delta``, ``tool-call-start`` / ``tool-call-delta`` /
  ``tool-call-end``, ``message-end`` (finish_reason, usage);
- errors: ``{"id", "message"}``.
"""

from __future__ import annotations

import uuid
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


class CohereFake(FakeProvider):
    name = "cohere"
    hosts = ("api.cohere.com", "api.cohere.ai")

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/v2/chat", self.chat)]

    def is_authorized(self, request: RecordedRequest) -> bool:
        return bearer_token(request) is not None

    def unauthorized_message(self) -> str:
        return "no api key supplied"

    def error_body(self, status: int, message: str) -> JSONDict:
        return {"id": str(uuid.uuid4()), "message": message}

    async def chat(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        body = recorded.json or {}
        input_tokens = count_tokens(body.get("messages", []))
        tool_calls = [
            {
                "id": call.id or f"{call.name}_{random_id('', 12).lower()}",
                "type": "function",
                "function": {"name": call.name, "arguments": compact(call.arguments)},
            }
            for call in script.tool_calls
        ]
        output_tokens = count_tokens(script.text) + count_tokens([c["function"]["arguments"] for c in tool_calls])
        usage = {
            "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            "tokens": {"input_tokens": input_tokens + 200, "output_tokens": output_tokens},
        }
        finish_reason = "TOOL_CALL" if tool_calls else "COMPLETE"
        tool_plan = "I will call the requested tool." if tool_calls else None
        reply_id = str(uuid.uuid4())
        if not body.get("stream"):
            message: JSONDict = {"role": "assistant"}
            if tool_calls:
                message["tool_plan"] = tool_plan
                message["tool_calls"] = tool_calls
            if script.text:
                message["content"] = [{"type": "text", "text": script.text}]
            return self.json_reply(
                script, {"id": reply_id, "message": message, "finish_reason": finish_reason, "usage": usage}
            )

        events: list[StreamEvent] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append(StreamEvent(kind, {"type": kind, **fields}))

        emit(
            "message-start",
            id=reply_id,
            delta={"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}},
        )
        if script.text:
            emit("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}})
            for piece in script.text_chunks():
                emit("content-delta", index=0, delta={"message": {"content": {"text": piece}}})
            emit("content-end", index=0)
        if tool_calls:
            for piece in (tool_plan or "").split(" "):
                emit("tool-plan-delta", delta={"message": {"tool_plan": piece + " "}})
            for index, call in enumerate(tool_calls):
                start = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                emit("tool-call-start", index=index, delta={"message": {"tool_calls": start}})
                for piece in chunk_string(call["function"]["arguments"]):
                    emit(
                        "tool-call-delta",
                        index=index,
                        delta={"message": {"tool_calls": {"function": {"arguments": piece}}}},
                    )
                emit("tool-call-end", index=index)
        emit("message-end", delta={"finish_reason": finish_reason, "usage": usage})
        return await self.sse_reply(request, script, events)
