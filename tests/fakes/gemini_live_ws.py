"""Fake Gemini Live: the ``BidiGenerateContent`` WebSocket, as AI Studio speaks it.

Wire facts followed (ai.google.dev, Live API reference):
- ``GET /ws/google.ai.generativelanguage.{v1,v1alpha,v1beta}.GenerativeService.BidiGenerateContent``
  upgraded; the API key comes as ``x-goog-api-key`` (or ``?key=``).
- The first client message must be ``{"setup": {...}}``; the server answers
  ``{"setupComplete": {}}``. Then ``clientContent`` (``turns``,
  ``turnComplete``), ``realtimeInput`` (``text``, or ``audio`` blobs) and
  ``toolResponse`` (``functionResponses``) from the client; ``serverContent``
  (``modelTurn.parts``, ``generationComplete``, ``turnComplete``, with
  ``usageMetadata``), ``toolCall`` (``functionCalls`` with server-made ids)
  from the server.
- Client messages are protobuf JSON: field names in lowerCamelCase or
  snake_case (google-genai sends ``client_content``, ``realtime_input``,
  ``tool_response`` with camelCase fields inside); both are accepted.
- Server messages are JSON in *binary* frames, pretty-printed (two-space
  indent, newline-terminated), so a replay has to reproduce bytes, not just
  meaning. With ``responseModalities: ["AUDIO"]`` the model turn carries
  ``inlineData`` PCM audio and ``outputTranscription`` text.
- Problems close the connection: 1007 for an invalid message, 1011 when the
  model fails, with the reason in the close frame.
Each model turn takes the next :class:`~tests.fakes.base.Script`;
``close_after_turns`` / ``close_code`` / ``close_reason`` end the session
from the server side after that many turns.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import RECORDED, FakeProvider, JSONDict, RecordedRequest, Script, count_tokens, random_id

LIVE_PATHS = tuple(
    f"/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
    for version in ("v1", "v1alpha", "v1beta")
)
# 10 ms of 16-bit 24 kHz mono PCM with every byte value in it.
AUDIO_CHUNK = base64.b64encode(bytes(range(256)) + bytes(224)).decode("ascii")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def field(body: Any, name: str) -> Any:
    """``body[name]`` under its lowerCamelCase or snake_case spelling."""
    if not isinstance(body, dict):
        return None
    if name in body:
        return body[name]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in name)
    return body.get(snake)


def live_frame(value: JSONDict) -> bytes:
    """A server message as the Live service frames it: pretty JSON, binary."""
    return (json.dumps(value, indent=2) + "\n").encode("utf-8")


class GeminiLiveFake(FakeProvider):
    name = "gemini-live"
    hosts = ("generativelanguage.googleapis.com",)

    def __init__(
        self,
        script: Script | None = None,
        *,
        close_after_turns: int | None = None,
        close_code: int = 1000,
        close_reason: str = "",
    ) -> None:
        super().__init__(script)
        self.close_after_turns = close_after_turns
        self.close_code = close_code
        self.close_reason = close_reason
        self.sessions: list[list[Any]] = []

    def routes(self) -> list[tuple[str, str, Any]]:
        # google-genai joins its base URL (ending in "/") and "/ws/...": the
        # real service takes the doubled slash, so the fake does too.
        return [("GET", prefix + path, self.live) for path in LIVE_PATHS for prefix in ("", "/")]

    def app(self) -> web.Application:
        # Scripts are taken per model turn, not per HTTP request.
        app = web.Application(middlewares=[self._middleware])
        for method, path, handler in self.routes():
            app.router.add_route(method, path, self._gate(handler))
        return app

    def _gate(self, handler: Any) -> Any:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            recorded: RecordedRequest = request[RECORDED]
            if not self.is_authorized(recorded):
                return self.error_response(403, "Method doesn't allow unregistered callers.")
            return await handler(request, recorded)

        return endpoint

    def is_authorized(self, request: RecordedRequest) -> bool:
        return bool(request.header("x-goog-api-key") or request.query.get("key"))

    def error_body(self, status: int, message: str) -> JSONDict:
        return {"error": {"code": status, "message": message, "status": "PERMISSION_DENIED"}}

    async def live(self, request: web.Request, recorded: RecordedRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        seen: list[Any] = []
        self.sessions.append(seen)
        setup: JSONDict | None = None
        turns = 0
        async for message in ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                value = json.loads(message.data)
            except ValueError:
                value = None
            seen.append(value)
            if not isinstance(value, dict) or len(value) != 1:
                await ws.close(code=1007, message=b"Invalid JSON payload received.")
                break
            kind, body = next(iter(value.items()))
            kind = camel(kind)
            if setup is None:
                if kind != "setup":
                    await ws.close(code=1007, message=b"Invalid JSON payload received. setup must be first.")
                    break
                setup = body if isinstance(body, dict) else {}
                await ws.send_bytes(live_frame({"setupComplete": {}}))
                continue
            wants_answer = (
                (kind == "clientContent" and field(body, "turnComplete"))
                or (kind == "realtimeInput" and isinstance(field(body, "text"), str))
                or kind == "toolResponse"
            )
            if kind not in ("clientContent", "realtimeInput", "toolResponse"):
                await ws.close(code=1007, message=f'Invalid JSON payload received. Unknown name "{kind}".'.encode())
                break
            if not wants_answer:
                continue
            script = self.next_script()
            if script.error_status is not None:
                await ws.close(code=1011, message=script.error_message.encode()[:120])
                break
            await self._turn(ws, script, setup)
            turns += 1
            if self.close_after_turns is not None and turns >= self.close_after_turns:
                await ws.close(code=self.close_code, message=self.close_reason.encode())
                break
        return ws

    async def _turn(self, ws: web.WebSocketResponse, script: Script, setup: JSONDict) -> None:
        config = field(setup, "generationConfig") or {}
        audio = "AUDIO" in [str(m).upper() for m in field(config, "responseModalities") or []]
        first = True

        async def send(value: JSONDict) -> None:
            nonlocal first
            delay = script.first_event_delay if first else script.event_delay
            first = False
            if delay:
                await asyncio.sleep(delay)
            await ws.send_bytes(live_frame(value))

        for piece in script.text_chunks() if script.text else []:
            if audio:
                await send({"serverContent": {"modelTurn": {"parts": [
                    {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": AUDIO_CHUNK}}]},
                    "outputTranscription": {"text": piece}}})
            else:
                await send({"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}})
        if script.tool_calls:
            calls = [{"id": call.id or random_id("function-call-", 18), "name": call.name, "args": call.arguments}
                     for call in script.tool_calls]
            await send({"toolCall": {"functionCalls": calls}})
            return
        await send({"serverContent": {"generationComplete": True}})
        output = count_tokens(script.text)
        await send({"serverContent": {"turnComplete": True},
                    "usageMetadata": {"promptTokenCount": 9, "responseTokenCount": output,
                                      "totalTokenCount": 9 + output}})
