"""Helpers shared by the replay tests: a replay engine on its own thread,
recorded interactions built with the cassette model and the provider modules,
and the SDK suite: the same conversations (openai, anthropic, google-genai;
streaming and not; tool-call round trips) run against the fake upstreams
while recording, and against every replay front-end afterwards."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.genai import types as genai_types

from llmock_proxy.canonical import Summary
from llmock_proxy.cassette.model import Interaction, Payload, Request, Response
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.catalog import identify
from llmock_proxy.replay.fixture import Fixture, fixture_from_interaction
from llmock_proxy.replay.plan import Timing
from llmock_proxy.replay.server import ReplayEngine
from llmock_proxy.replay.session import ReplaySession
from tests.fakes import Script, ToolCall


class EngineThread:
    """A :class:`ReplayEngine` on 127.0.0.1:0 in a thread with its own loop, so
    synchronous SDK clients can call it from the test thread."""

    def __init__(self, session: ReplaySession, *, timing: str = "instant", **engine_args: Any) -> None:
        self.engine = ReplayEngine(session, timing=Timing.parse(timing), **engine_args)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replay-engine", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.engine.port}"

    def start(self) -> EngineThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.engine.start("127.0.0.1", 0), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.engine.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> EngineThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def json_request(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Request:
    return Request("POST", url, {"content-type": "application/json", **(headers or {})}, Payload.json(body))


def recorded(request: Request, response: Response, source: str = "test.yaml: interactions[0]") -> Fixture:
    """A recorded interaction as the recorder writes it: derived match and summary."""
    provider = identify(request.method, request.url, request.headers)
    canonical = provider.canonical(request)
    summary = provider.summarize(request, response)
    interaction = Interaction(request, response, match=derive_match(canonical), summary=summary.to_dict())
    return fixture_from_interaction(interaction, source)


def rendered(request: Request, summary: Summary, *, stream: bool | None = None) -> Response:
    """The provider's own rendering of ``summary`` for ``request`` (a realistic recorded answer)."""
    provider = identify(request.method, request.url, request.headers)
    canonical = provider.canonical(request)
    return provider.render(summary, canonical, stream=canonical.stream if stream is None else stream)


# -- the SDK suite: the same conversations recorded, replayed and answered from fixtures ------------

HELLO = "Hello there, friend! Nice to meet you."
STREAMED = "Streaming words arrive one by one, in order."
SUNNY = "It is sunny in Paris, 24 degrees."
WEATHER_ARGS = {"city": "Paris"}
CALL_ID = "call_weather_1"
TOOL_RESULT = "sunny, 24C"

ASK_HELLO = "Say hello"
ASK_STREAM = "Stream a greeting"
ASK_WEATHER = "What is the weather in Paris?"

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"
GEMINI_MODEL = "gemini-2.0-flash"

# The same answers as an llmock fixture file: the tool result first (first match wins).
SUITE_FIXTURES: dict[str, Any] = {
    "fixtures": [
        {"match": {"toolCallId": CALL_ID}, "response": {"content": SUNNY}},
        {
            "match": {"userMessage": "weather in Paris"},
            "response": {"toolCalls": [{"name": "get_weather", "arguments": '{"city":"Paris"}', "id": CALL_ID}]},
        },
        {"match": {"userMessage": ASK_HELLO}, "response": {"content": HELLO}},
        {"match": {"userMessage": "/^stream a/i"}, "response": {"content": STREAMED}},
    ]
}

_TEXT = Script(text=HELLO)
_STREAM = Script(text=STREAMED)
_CALL = Script(text="", tool_calls=[ToolCall("get_weather", WEATHER_ARGS, id=CALL_ID)])
_SUNNY = Script(text=SUNNY)

# What every step returns, whoever answers.
TOOL_ROUND_TRIP = {"tool": ["get_weather", WEATHER_ARGS, CALL_ID], "text": SUNNY}
EXPECTED: dict[str, Any] = {
    "openai.chat": HELLO,
    "openai.chat.stream": STREAMED,
    "openai.chat.tools": TOOL_ROUND_TRIP,
    "openai.chat.tools.stream": TOOL_ROUND_TRIP,
    "openai.responses": HELLO,
    "openai.responses.stream": STREAMED,
    "anthropic": HELLO,
    "anthropic.stream": STREAMED,
    "anthropic.tools": TOOL_ROUND_TRIP,
    "anthropic.tools.stream": TOOL_ROUND_TRIP,
    "gemini": HELLO,
    "gemini.stream": STREAMED,
    "gemini.tools": {"tool": ["get_weather", WEATHER_ARGS], "text": SUNNY},
}


@dataclass
class SuiteClients:
    openai: Any
    anthropic: Any
    genai: Any
    # Queues the fake upstream's answers while recording; a no-op in replay.
    expect: Callable[..., None] = lambda provider, *scripts: None


OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def _openai_chat(c: SuiteClients) -> str:
    c.expect("openai", _TEXT)
    answer = c.openai.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": ASK_HELLO}])
    return answer.choices[0].message.content


def _openai_chat_stream(c: SuiteClients) -> str:
    c.expect("openai", _STREAM)
    stream = c.openai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": ASK_STREAM}], stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def _openai_tools(c: SuiteClients, *, stream: bool) -> dict[str, Any]:
    c.expect("openai", _CALL, _SUNNY)
    messages: list[dict[str, Any]] = [{"role": "user", "content": ASK_WEATHER}]
    if stream:
        calls: dict[int, dict[str, str]] = {}
        for chunk in c.openai.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS, stream=True
        ):
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += delta.id or ""
                entry["name"] += (delta.function.name or "") if delta.function else ""
                entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
        call = calls[0]
    else:
        first = c.openai.chat.completions.create(model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS)
        tool_call = first.choices[0].message.tool_calls[0]
        call = {"id": tool_call.id, "name": tool_call.function.name, "arguments": tool_call.function.arguments}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
        ]},
        {"role": "tool", "tool_call_id": call["id"], "content": TOOL_RESULT},
    ]
    if stream:
        final = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in c.openai.chat.completions.create(
                model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS, stream=True
            )
            if chunk.choices
        )
    else:
        final = c.openai.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS
        ).choices[0].message.content
    return {"tool": [call["name"], json.loads(call["arguments"]), call["id"]], "text": final}


def _openai_responses(c: SuiteClients) -> str:
    c.expect("openai", _TEXT)
    return c.openai.responses.create(model=OPENAI_MODEL, input=ASK_HELLO).output_text


def _openai_responses_stream(c: SuiteClients) -> str:
    c.expect("openai", _STREAM)
    events = c.openai.responses.create(model=OPENAI_MODEL, input=ASK_STREAM, stream=True)
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def _anthropic(c: SuiteClients) -> str:
    c.expect("anthropic", _TEXT)
    message = c.anthropic.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=256, messages=[{"role": "user", "content": ASK_HELLO}]
    )
    return "".join(block.text for block in message.content if block.type == "text")


def _anthropic_stream(c: SuiteClients) -> str:
    c.expect("anthropic", _STREAM)
    with c.anthropic.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=256, messages=[{"role": "user", "content": ASK_STREAM}]
    ) as stream:
        return "".join(stream.text_stream)


def _anthropic_tools(c: SuiteClients, *, stream: bool) -> dict[str, Any]:
    c.expect("anthropic", _CALL, _SUNNY)
    messages: list[dict[str, Any]] = [{"role": "user", "content": ASK_WEATHER}]

    def ask() -> Any:
        kwargs = dict(model=ANTHROPIC_MODEL, max_tokens=256, messages=messages, tools=ANTHROPIC_TOOLS)
        if stream:
            with c.anthropic.messages.stream(**kwargs) as s:
                return s.get_final_message()
        return c.anthropic.messages.create(**kwargs)

    first = ask()
    use = next(block for block in first.content if block.type == "tool_use")
    messages += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]},
    ]
    final = ask()
    text = "".join(block.text for block in final.content if block.type == "text")
    return {"tool": [use.name, use.input, use.id], "text": text}


def _gemini(c: SuiteClients) -> str:
    c.expect("gemini", _TEXT)
    return c.genai.models.generate_content(model=GEMINI_MODEL, contents=ASK_HELLO).text


def _gemini_stream(c: SuiteClients) -> str:
    c.expect("gemini", _STREAM)
    return "".join(chunk.text or "" for chunk in c.genai.models.generate_content_stream(model=GEMINI_MODEL, contents=ASK_STREAM))


def _gemini_tools(c: SuiteClients) -> dict[str, Any]:
    c.expect("gemini", _CALL, _SUNNY)
    config = genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(function_declarations=[genai_types.FunctionDeclaration(
            name="get_weather",
            description="Current weather for a city",
            parameters=genai_types.Schema(type="OBJECT", properties={"city": genai_types.Schema(type="STRING")}),
        )])],
    )
    question = genai_types.Content(role="user", parts=[genai_types.Part(text=ASK_WEATHER)])
    first = c.genai.models.generate_content(model=GEMINI_MODEL, contents=[question], config=config)
    call = first.function_calls[0]
    reply = genai_types.Content(role="user", parts=[genai_types.Part(function_response=genai_types.FunctionResponse(
        id=call.id, name=call.name, response={"result": TOOL_RESULT}
    ))])
    final = c.genai.models.generate_content(
        model=GEMINI_MODEL, contents=[question, first.candidates[0].content, reply], config=config
    )
    return {"tool": [call.name, dict(call.args)], "text": final.text}


SUITE: dict[str, Callable[[SuiteClients], Any]] = {
    "openai.chat": _openai_chat,
    "openai.chat.stream": _openai_chat_stream,
    "openai.chat.tools": lambda c: _openai_tools(c, stream=False),
    "openai.chat.tools.stream": lambda c: _openai_tools(c, stream=True),
    "openai.responses": _openai_responses,
    "openai.responses.stream": _openai_responses_stream,
    "anthropic": _anthropic,
    "anthropic.stream": _anthropic_stream,
    "anthropic.tools": lambda c: _anthropic_tools(c, stream=False),
    "anthropic.tools.stream": lambda c: _anthropic_tools(c, stream=True),
    "gemini": _gemini,
    "gemini.stream": _gemini_stream,
    "gemini.tools": _gemini_tools,
}


def run_suite(clients: SuiteClients, steps: Sequence[str] | None = None) -> dict[str, Any]:
    return {name: SUITE[name](clients) for name in (steps or SUITE)}
