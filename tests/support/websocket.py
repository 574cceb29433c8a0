"""WebSocket clients and conversations shared by the WebSocket tests and the benchmark.

How the real SDKs are pointed at a proxy or a replay server:

* openai-python's ``client.realtime.connect()`` and ``client.responses.connect()``
  open their socket with the ``websockets`` library and pass
  ``websocket_connection_options`` to its ``connect()``: ``proxy`` (an HTTP
  proxy URL; by default websockets reads ``HTTPS_PROXY`` from the
  environment) and ``ssl`` (a context trusting mitmproxy's CA). With a plain
  ``http://`` base URL (reverse proxy, ``llmock-proxy serve``) the SDK dials
  ``ws://``; ``proxy: None`` keeps a developer's environment out of it.
* google-genai's ``client.aio.live.connect()`` always dials ``wss://`` and hands
  ``HttpOptions.async_client_args`` entries that ``websockets.connect()``
  accepts to it: ``{"ssl": ctx, "proxy": proxy_url}``.

Each conversation returns the server messages the client saw, in order, as
parsed JSON, so a recording run and a replay run can be compared.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from typing import Any

import openai
from google import genai
from google.genai import types as genai_types

from tests.harness import clients as sdk

WEATHER_TOOL_REALTIME = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_TOOL_RESPONSES = {**WEATHER_TOOL_REALTIME, "strict": False}
WEATHER_DECLARATION = genai_types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=genai_types.Schema(type="OBJECT", properties={"city": genai_types.Schema(type="STRING")}),
)
QUESTION = "What is the weather in Paris?"
TOOL_OUTPUT = {"temperature_c": 21, "sky": "clear"}


@dataclass(frozen=True)
class Target:
    """Where a client connects: through a proxy (regular mode, real provider
    URLs, the proxy's CA) or straight to a base URL (reverse proxy, serve)."""

    proxy_url: str | None = None
    ca_cert: str | None = None
    base_url: str | None = None  # e.g. http://127.0.0.1:PORT (no /v1)

    @classmethod
    def through(cls, proxy: Any) -> Target:
        return cls(proxy_url=proxy.url, ca_cert=str(proxy.ca_cert_path))

    @classmethod
    def at(cls, base_url: str) -> Target:
        return cls(base_url=base_url.rstrip("/"))

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_cert) if self.ca_cert else None

    def websocket_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"proxy": self.proxy_url}
        context = self.ssl_context()
        if context is not None:
            options["ssl"] = context
        return options

    def openai(self, **kwargs: Any) -> openai.AsyncOpenAI:
        base = f"{self.base_url}/v1" if self.base_url else sdk.OPENAI_URL
        return openai.AsyncOpenAI(api_key=sdk.TEST_OPENAI_KEY, base_url=base, max_retries=0, **kwargs)

    def genai(self) -> genai.Client:
        assert self.proxy_url is not None, "google-genai's Live client always dials wss://: use a proxy"
        options = genai_types.HttpOptions(
            base_url=sdk.GEMINI_URL,
            async_client_args={"ssl": self.ssl_context(), "proxy": self.proxy_url},
        )
        return genai.Client(api_key=sdk.TEST_GEMINI_KEY, http_options=options)


async def _read_until(conn: Any, seen: list[Any], last: str) -> dict[str, Any]:
    """Read server events (raw, parsed) until one of type ``last``; return it."""
    while True:
        event = json.loads(await conn.recv_bytes())
        seen.append(event)
        if event.get("type") == last or event.get("type") == "error":
            return event


async def realtime_tool_conversation(target: Target, *, model: str = "gpt-realtime", question: str = QUESTION,
                                     headers: dict[str, str] | None = None) -> list[Any]:
    """Realtime: configure, ask, run the tool the model calls, get the answer
    (or stop at an ``error`` event)."""
    seen: list[Any] = []
    client = target.openai()
    async with client.realtime.connect(model=model, extra_headers=headers or {},
                                       websocket_connection_options=target.websocket_options()) as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "instructions": "Answer briefly.", "tools": [WEATHER_TOOL_REALTIME]})
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": question}]})
        await conn.response.create()
        done = await _read_until(conn, seen, "response.done")
        if done["type"] == "error":
            await client.close()
            return seen
        calls = [i for i in done.get("response", {}).get("output", []) if i.get("type") == "function_call"]
        assert calls, done
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": calls[0]["call_id"],
                                                  "output": json.dumps(TOOL_OUTPUT)})
        await conn.response.create()
        await _read_until(conn, seen, "response.done")
    await client.close()
    return seen


async def realtime_text_turn(target: Target, text: str = "hello", *, model: str = "gpt-realtime",
                             headers: dict[str, str] | None = None, modalities: list[str] | None = None,
                             done: str = "response.done") -> list[Any]:
    seen: list[Any] = []
    client = target.openai()
    session: dict[str, Any] = {"type": "realtime", "output_modalities": modalities or ["text"]}
    if headers and "realtime=v1" in headers.get("OpenAI-Beta", ""):
        session = {"modalities": modalities or ["text"]}
    async with client.realtime.connect(model=model, extra_headers=headers or {},
                                       websocket_connection_options=target.websocket_options()) as conn:
        await conn.send({"type": "session.update", "session": session})  # type: ignore[arg-type]
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": text}]})
        await conn.response.create()
        await _read_until(conn, seen, done)
    await client.close()
    return seen


async def responses_tool_conversation(target: Target, *, model: str = "gpt-4.1") -> list[Any]:
    """Responses over WebSocket: ask, send the tool output with previous_response_id, get the answer."""
    seen: list[Any] = []
    client = target.openai()
    async with client.responses.connect(websocket_connection_options=target.websocket_options()) as conn:
        await conn.response.create(model=model, input=QUESTION, tools=[WEATHER_TOOL_RESPONSES])  # type: ignore[list-item]
        first = await _read_until(conn, seen, "response.completed")
        response = first["response"]
        call = next(i for i in response["output"] if i["type"] == "function_call")
        await conn.response.create(
            model=model,
            previous_response_id=response["id"],
            input=[{"type": "function_call_output", "call_id": call["call_id"], "output": json.dumps(TOOL_OUTPUT)}],
            tools=[WEATHER_TOOL_RESPONSES],  # type: ignore[list-item]
        )
        await _read_until(conn, seen, "response.completed")
    await client.close()
    return seen


async def responses_text_turn(target: Target, text: str = "hello", *, model: str = "gpt-4.1") -> list[Any]:
    seen: list[Any] = []
    client = target.openai()
    async with client.responses.connect(websocket_connection_options=target.websocket_options()) as conn:
        await conn.response.create(model=model, input=text)
        await _read_until(conn, seen, "response.completed")
    await client.close()
    return seen


def _dump(message: genai_types.LiveServerMessage) -> dict[str, Any]:
    return message.model_dump(mode="json", exclude_none=True)


async def live_tool_conversation(target: Target, *, model: str = "gemini-live-2.5-flash-preview") -> list[Any]:
    """Gemini Live: ask, answer the tool call, read the model's turn."""
    seen: list[Any] = []
    config = genai_types.LiveConnectConfig(
        response_modalities=[genai_types.Modality.TEXT],
        tools=[genai_types.Tool(function_declarations=[WEATHER_DECLARATION])],
        system_instruction="Answer briefly.",
    )
    async with target.genai().aio.live.connect(model=model, config=config) as session:
        await session.send_client_content(
            turns=genai_types.Content(role="user", parts=[genai_types.Part(text=QUESTION)]), turn_complete=True)
        call = None
        async for message in session.receive():
            seen.append(_dump(message))
            if message.tool_call is not None:
                call = message.tool_call.function_calls[0]  # type: ignore[index]
                break
        assert call is not None, seen
        await session.send_tool_response(function_responses=[
            genai_types.FunctionResponse(id=call.id, name=call.name, response=TOOL_OUTPUT)])
        async for message in session.receive():  # ends after turnComplete
            seen.append(_dump(message))
    return seen


async def live_text_turn(target: Target, text: str = "hello", *, model: str = "gemini-live-2.5-flash-preview") -> list[Any]:
    seen: list[Any] = []
    config = genai_types.LiveConnectConfig(response_modalities=[genai_types.Modality.TEXT])
    async with target.genai().aio.live.connect(model=model, config=config) as session:
        await session.send_client_content(
            turns=genai_types.Content(role="user", parts=[genai_types.Part(text=text)]), turn_complete=True)
        async for message in session.receive():
            seen.append(_dump(message))
    return seen


def realtime_text(events: list[Any]) -> str:
    """The text of the last response in a list of Realtime events."""
    done = [e for e in events if e.get("type") == "response.done"][-1]
    return "".join(part.get("text") or part.get("transcript") or ""
                   for item in done["response"]["output"] if item.get("type") == "message"
                   for part in item.get("content", []))


def live_text(messages: list[Any]) -> str:
    return "".join(part.get("text", "")
                   for m in messages for part in m.get("server_content", {}).get("model_turn", {}).get("parts", []))
