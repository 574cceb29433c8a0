"""Fake OpenAI WebSocket APIs: Realtime (GA protocol) and Responses over WebSocket.

Wire facts followed (platform.openai.com, Realtime API reference and
"Responses API WebSocket mode"):
- Realtime: ``GET /v1/realtime?model=...`` upgraded, ``Authorization: Bearer``.
  Every message is a JSON text frame with a ``type`` and a server
  ``event_id``. ``session.created`` is sent on connect; ``session.update``
  is answered with ``session.updated``; ``conversation.item.create`` with
  ``conversation.item.added`` + ``conversation.item.done`` (a
  ``function_call_output`` must name the ``call_id`` of a function call in
  the conversation, else an ``error`` event);
  ``input_audio_buffer.commit`` with ``input_audio_buffer.committed`` and the
  user audio item; ``response.create`` with ``response.created``,
  per output item ``response.output_item.added`` / ``conversation.item.added``,
  text as ``response.content_part.added`` / ``response.output_text.delta`` ... /
  ``response.output_text.done`` / ``response.content_part.done``, audio as
  ``response.output_audio_transcript.delta`` + ``response.output_audio.delta``
  (base64 PCM16), function calls as ``response.function_call_arguments.delta``
  / ``.done``, then ``response.output_item.done`` / ``conversation.item.done``,
  ``response.done`` (with usage) and ``rate_limits.updated``. Unknown or
  malformed events get an ``error`` event; the session stays open.
- Responses over WebSocket: ``GET /v1/responses`` upgraded; each
  ``response.create`` message (a Responses request body plus ``type``) is
  answered with the Responses streaming events as JSON text frames, numbered
  by ``sequence_number``; ``previous_response_id`` must name a response of
  this connection.
Ids differ on every run, as upstream. Each model answer takes the next
:class:`~tests.fakes.base.Script` (text, tool calls, pacing, error status);
``close_after_responses`` / ``close_code`` / ``close_reason`` make the
server close the session after that many answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import (
    RECORDED,
    FakeProvider,
    JSONDict,
    RecordedRequest,
    Script,
    bearer_token,
    chunk_string,
    compact,
    count_tokens,
    random_id,
    unix_now,
)

# 20 ms of 16-bit 24 kHz mono audio: a short tone-free chunk.
AUDIO_CHUNK = base64.b64encode(bytes(range(256)) * 3 + bytes(192)).decode("ascii")


class OpenAIRealtimeFake(FakeProvider):
    name = "openai-ws"
    hosts = ("api.openai.com",)

    def __init__(
        self,
        script: Script | None = None,
        *,
        close_after_responses: int | None = None,
        close_code: int = 1000,
        close_reason: str = "",
    ) -> None:
        super().__init__(script)
        self.close_after_responses = close_after_responses
        self.close_code = close_code
        self.close_reason = close_reason
        # Every client message received, parsed, per connection (tests assert on them).
        self.sessions: list[list[Any]] = []

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/v1/realtime", self.realtime), ("GET", "/v1/responses", self.responses_ws)]

    def app(self) -> web.Application:
        # Model answers take scripts per turn, not per HTTP request: the base
        # class's per-request script wrapper is bypassed.
        app = web.Application(middlewares=[self._middleware])
        for method, path, handler in self.routes():
            app.router.add_route(method, path, self._gate(handler))
        return app

    def _gate(self, handler: Any) -> Any:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            recorded: RecordedRequest = request[RECORDED]
            if not self.is_authorized(recorded):
                return self.error_response(401, "Missing bearer or basic authentication in header")
            return await handler(request, recorded)

        return endpoint

    def is_authorized(self, request: RecordedRequest) -> bool:
        return bool(bearer_token(request) or request.header("api-key"))

    def error_body(self, status: int, message: str) -> JSONDict:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}

    # -- Realtime -----------------------------------------------------------------------

    async def realtime(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        seen: list[Any] = []
        self.sessions.append(seen)
        model = recorded.query.get("model", "gpt-realtime")
        session: JSONDict = {
            "type": "realtime",
            "object": "realtime.session",
            "id": random_id("sess_", 20),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "You are a helpful assistant.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "prompt": None,
            "expires_at": unix_now() + 3600,
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                          "noise_reduction": None, "turn_detection": {"type": "server_vad"}},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
            },
            "include": None,
        }
        items: list[JSONDict] = []
        answered = 0

        async def send(kind: str, **fields: Any) -> None:
            await ws.send_str(compact({"type": kind, "event_id": random_id("event_", 20), **fields}))

        async def add_item(item: JSONDict) -> None:
            previous = items[-1]["id"] if items else None
            items.append(item)
            await send("conversation.item.added", previous_item_id=previous, item=item)
            await send("conversation.item.done", previous_item_id=previous, item=item)

        await send("session.created", session=session)
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                await send("error", error={"type": "invalid_request_error", "code": "invalid_message",
                                           "message": "Binary messages are not supported.", "param": None,
                                           "event_id": None})
                continue
            try:
                event = json.loads(message.data)
            except ValueError:
                event = None
            seen.append(event)
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                await send("error", error={"type": "invalid_request_error", "code": "invalid_json",
                                           "message": "Invalid JSON.", "param": None, "event_id": None})
                continue
            kind = event["type"]
            if kind == "session.update":
                update = event.get("session") or {}
                session.update({k: v for k, v in update.items() if k not in ("id", "object")})
                await send("session.updated", session=session)
            elif kind == "conversation.item.create":
                item = dict(event.get("item") or {})
                calls = {i.get("call_id") for i in items if i.get("type") == "function_call"}
                if item.get("type") == "function_call_output" and item.get("call_id") not in calls:
                    await send("error", error={
                        "type": "invalid_request_error", "code": "invalid_value", "param": "item.call_id",
                        "message": f"Tool call ID '{item.get('call_id')}' not found in conversation.",
                        "event_id": event.get("event_id")})
                    continue
                item.setdefault("id", random_id("item_", 20))
                item.update(object="realtime.item", status="completed")
                await add_item(item)
            elif kind == "input_audio_buffer.append":
                pass
            elif kind == "input_audio_buffer.commit":
                item = {"id": random_id("item_", 20), "object": "realtime.item", "type": "message",
                        "status": "completed", "role": "user",
                        "content": [{"type": "input_audio", "transcript": None}]}
                await send("input_audio_buffer.committed", previous_item_id=items[-1]["id"] if items else None,
                           item_id=item["id"])
                await add_item(item)
            elif kind == "response.create":
                params = event.get("response") or {}
                modalities = params.get("output_modalities") or session["output_modalities"]
                await self._respond(ws, send, add_item, self.next_script(), model, modalities, items)
                answered += 1
                if self.close_after_responses is not None and answered >= self.close_after_responses:
                    await ws.close(code=self.close_code, message=self.close_reason.encode())
                    break
            else:
                await send("error", error={
                    "type": "invalid_request_error", "code": "invalid_value",
                    "message": f"Invalid value: '{kind}'.", "param": "type", "event_id": event.get("event_id")})
        return ws

    async def _respond(
        self, ws: web.WebSocketResponse, send: Any, add_item: Any, script: Script, model: str,
        modalities: list[str], items: list[JSONDict],
    ) -> None:
        response_id = random_id("resp_", 20)
        audio = "audio" in modalities
        base = {"object": "realtime.response", "id": response_id, "conversation_id": random_id("conv_", 20),
                "output_modalities": modalities, "max_output_tokens": "inf",
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
                "metadata": None}

        async def paced(kind: str, first: bool = False, **fields: Any) -> None:
            delay = script.first_event_delay if first else script.event_delay
            if delay:
                await asyncio.sleep(delay)
            await send(kind, **fields)

        await paced("response.created", True, response={**base, "status": "in_progress", "status_details": None,
                                                          "output": [], "usage": None})
        if script.error_status is not None:
            await send("response.done", response={
                **base, "status": "failed", "output": [], "usage": None,
                "status_details": {"type": "failed", "error": {"type": "server_error", "code": None,
                                                               "message": script.error_message}}})
            return
        output: list[JSONDict] = []
        if script.text:
            item_id = random_id("item_", 20)
            item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []}
            where = {"response_id": response_id, "item_id": item_id, "output_index": len(output),
                     "content_index": 0}
            await paced("response.output_item.added", response_id=response_id, output_index=len(output), item=item)
            await paced("conversation.item.added", previous_item_id=items[-1]["id"] if items else None, item=item)
            if audio:
                await paced("response.content_part.added", **where, part={"type": "audio", "transcript": ""})
                for piece in script.text_chunks():
                    await paced("response.output_audio_transcript.delta", **where, delta=piece)
                    await paced("response.output_audio.delta", **where, delta=AUDIO_CHUNK)
                await paced("response.output_audio.done", **where)
                await paced("response.output_audio_transcript.done", **where, transcript=script.text)
                part = {"type": "audio", "transcript": script.text}
                content = {"type": "output_audio", "transcript": script.text}
            else:
                await paced("response.content_part.added", **where, part={"type": "text", "text": ""})
                for piece in script.text_chunks():
                    await paced("response.output_text.delta", **where, delta=piece)
                await paced("response.output_text.done", **where, text=script.text)
                part = {"type": "text", "text": script.text}
                content = {"type": "output_text", "text": script.text}
            await paced("response.content_part.done", **where, part=part)
            done = {**item, "status": "completed", "content": [content]}
            await paced("response.output_item.done", response_id=response_id, output_index=len(output), item=done)
            await add_item_done(send, items, done)
            output.append(done)
        for call in script.tool_calls:
            item_id = random_id("item_", 20)
            call_id = call.id or random_id("call_", 16)
            arguments = compact(call.arguments)
            item = {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
                    "name": call.name, "call_id": call_id, "arguments": ""}
            where = {"response_id": response_id, "item_id": item_id, "output_index": len(output), "call_id": call_id}
            await paced("response.output_item.added", response_id=response_id, output_index=len(output), item=item)
            await paced("conversation.item.added", previous_item_id=items[-1]["id"] if items else None, item=item)
            for piece in chunk_string(arguments, 8):
                await paced("response.function_call_arguments.delta", **where, delta=piece)
            await paced("response.function_call_arguments.done", **where, name=call.name, arguments=arguments)
            done = {**item, "status": "completed", "arguments": arguments}
            await paced("response.output_item.done", response_id=response_id, output_index=len(output), item=done)
            await add_item_done(send, items, done)
            output.append(done)
        output_tokens = count_tokens(script.text) + len(script.tool_calls)
        usage = {"total_tokens": 10 + output_tokens, "input_tokens": 10, "output_tokens": output_tokens,
                 "input_token_details": {"text_tokens": 10, "audio_tokens": 0, "cached_tokens": 0},
                 "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0}}
        await paced("response.done", response={**base, "status": "completed", "status_details": None,
                                               "output": output, "usage": usage})
        await send("rate_limits.updated", rate_limits=[
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5}])

    # -- Responses over WebSocket ----------------------------------------------------------------

    async def responses_ws(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        seen: list[Any] = []
        self.sessions.append(seen)
        known: set[str] = set()
        answered = 0
        async for message in ws:
            try:
                event = json.loads(message.data) if message.type == WSMsgType.TEXT else None
            except ValueError:
                event = None
            seen.append(event)
            if not isinstance(event, dict) or event.get("type") != "response.create":
                await ws.send_str(compact({"type": "error", "status": 400, "error": {
                    "type": "invalid_request_error", "code": "invalid_value",
                    "message": "Expected a response.create event.", "param": "type"}}))
                continue
            previous = event.get("previous_response_id")
            if previous is not None and previous not in known:
                await ws.send_str(compact({"type": "error", "status": 400, "error": {
                    "type": "invalid_request_error", "code": "previous_response_not_found",
                    "message": f"Previous response with id '{previous}' not found.",
                    "param": "previous_response_id"}}))
                continue
            script = self.next_script()
            for payload in _responses_events(event, script):
                if script.event_delay:
                    await asyncio.sleep(script.event_delay)
                await ws.send_str(compact(payload))
                if payload["type"] == "response.created":
                    known.add(payload["response"]["id"])
            answered += 1
            if self.close_after_responses is not None and answered >= self.close_after_responses:
                await ws.close(code=self.close_code, message=self.close_reason.encode())
                break
        return ws


async def add_item_done(send: Any, items: list[JSONDict], item: JSONDict) -> None:
    previous = items[-1]["id"] if items else None
    items.append(item)
    await send("conversation.item.done", previous_item_id=previous, item=item)


def _responses_events(body: JSONDict, script: Script) -> list[JSONDict]:
    """The Responses streaming events answering one ``response.create``."""
    model = body.get("model", "gpt-4.1")
    if script.error_status is not None:
        return [{"type": "error", "code": "server_error", "message": script.error_message, "param": None,
                 "sequence_number": 0}]
    output: list[JSONDict] = []
    if script.text:
        output.append({"id": random_id("msg_", 48).lower(), "type": "message", "status": "completed",
                       "role": "assistant",
                       "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": script.text}]})
    for call in script.tool_calls:
        output.append({"id": random_id("fc_", 48).lower(), "type": "function_call", "status": "completed",
                       "arguments": compact(call.arguments), "call_id": call.id or random_id("call_", 24),
                       "name": call.name})
    output_tokens = count_tokens(script.text) + len(script.tool_calls)
    final = {
        "id": random_id("resp_", 48).lower(), "object": "response", "created_at": unix_now(),
        "status": "completed", "background": False, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": None, "model": model, "output": output,
        "parallel_tool_calls": True, "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default", "store": body.get("store", True),
        "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto",
        "tools": body.get("tools", []), "top_p": 1.0, "truncation": "disabled",
        "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output_tokens,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12 + output_tokens},
        "user": None, "metadata": {},
    }
    events: list[JSONDict] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    in_progress = {**final, "status": "in_progress", "output": [], "usage": None}
    emit("response.created", response=in_progress)
    emit("response.in_progress", response=in_progress)
    for index, item in enumerate(output):
        if item["type"] == "message":
            emit("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
            empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            emit("response.content_part.added", **where, part=empty)
            for piece in script.text_chunks():
                emit("response.output_text.delta", **where, delta=piece, logprobs=[])
            emit("response.output_text.done", **where, text=script.text, logprobs=[])
            emit("response.content_part.done", **where, part={**empty, "text": script.text})
        else:
            emit("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "arguments": ""})
            for piece in chunk_string(item["arguments"]):
                emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
            emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                 arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=final)
    return events
