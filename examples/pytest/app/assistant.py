"""A weather assistant on two providers: an OpenAI chat tool loop, streamed
answers, and an Anthropic tool-use round trip.

The clients are made per call with no arguments, so they read
``OPENAI_BASE_URL``/``OPENAI_API_KEY`` and ``ANTHROPIC_BASE_URL``/
``ANTHROPIC_API_KEY`` from the environment as production code usually does;
that is all the llmock pytest plugin needs to answer them from a cassette.

Every message the assistant sends back to a model is written out by hand
(never ``model_dump()`` of an SDK object), so the request bodies do not depend
on the SDK version that sent them and one recording replays under all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"
MAX_TURNS = 4

SYSTEM = "You are a concise weather assistant. Use the get_weather tool for current conditions."

# The "weather service" the tool calls: local data, so only the model is remote.
_CONDITIONS = {
    "paris": {"temperature_c": 18, "sky": "sunny"},
    "oslo": {"temperature_c": 4, "sky": "light snow"},
    "tokyo": {"temperature_c": 22, "sky": "cloudy"},
}


def get_weather(city: str) -> dict[str, Any]:
    """Current conditions for ``city`` (unknown cities say so instead of failing)."""
    found = _CONDITIONS.get(city.strip().lower())
    if found is None:
        return {"city": city, "error": "no data for this city"}
    return {"city": city, **found}


TOOLS: dict[str, Callable[..., dict[str, Any]]] = {"get_weather": get_weather}

_WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
    "required": ["city"],
}
# Plain data as the APIs document it (typed Any: the SDKs' TypedDicts differ between versions).
OPENAI_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather conditions in a city.",
            "parameters": _WEATHER_PARAMETERS,
        },
    }
]
ANTHROPIC_TOOLS: list[Any] = [
    {"name": "get_weather", "description": "Current weather conditions in a city.", "input_schema": _WEATHER_PARAMETERS}
]


@dataclass
class Answer:
    """What the assistant said, which tools it ran on the way, in how many model turns."""

    text: str
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    turns: int = 0


def _run_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    tool = TOOLS.get(name)
    if tool is None:
        return {"error": f"unknown tool {name}"}
    return tool(**arguments)


# -- OpenAI ------------------------------------------------------------------------------------


def weather_answer(question: str) -> Answer:
    """Answer ``question`` with OpenAI chat completions, running tool calls until the model answers."""
    client = openai.OpenAI()
    messages: list[Any] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    calls: list[tuple[str, dict[str, Any]]] = []
    for turn in range(1, MAX_TURNS + 1):
        completion = client.chat.completions.create(model=OPENAI_MODEL, messages=messages, tools=OPENAI_TOOLS)
        message = completion.choices[0].message
        requested = [
            (call.id, call.function.name, call.function.arguments)
            for call in message.tool_calls or ()
            if call.type == "function"
        ]
        if not requested:
            return Answer(message.content or "", calls, turn)
        messages.append(
            {
                "role": "assistant",
                "content": message.content,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                    for call_id, name, arguments in requested
                ],
            }
        )
        for call_id, name, arguments in requested:
            parsed = json.loads(arguments or "{}")
            calls.append((name, parsed))
            messages.append({"role": "tool", "tool_call_id": call_id, "content": json.dumps(_run_tool(name, parsed))})
    raise RuntimeError(f"no answer after {MAX_TURNS} model turns")


def stream_answer(question: str) -> Iterator[str]:
    """The answer to ``question`` as OpenAI streams it, piece by piece."""
    client = openai.OpenAI()
    stream = client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        stream=True,
    )
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                yield choice.delta.content


# -- Anthropic ---------------------------------------------------------------------------------


def _block_as_sent(block: Any) -> dict[str, Any]:
    """An assistant content block as it goes back to the API in the next turn."""
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)}
    if block.type == "text":
        return {"type": "text", "text": block.text}
    raise ValueError(f"unexpected content block {block.type!r}")


def claude_weather_answer(question: str) -> Answer:
    """Answer ``question`` with Anthropic messages, returning each tool_use as a tool_result."""
    client = anthropic.Anthropic()
    messages: list[Any] = [{"role": "user", "content": question}]
    calls: list[tuple[str, dict[str, Any]]] = []
    for turn in range(1, MAX_TURNS + 1):
        reply = client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=512, system=SYSTEM, tools=ANTHROPIC_TOOLS, messages=messages
        )
        uses = [block for block in reply.content if block.type == "tool_use"]
        if not uses:
            return Answer("".join(block.text for block in reply.content if block.type == "text"), calls, turn)
        messages.append({"role": "assistant", "content": [_block_as_sent(block) for block in reply.content]})
        results = []
        for use in uses:
            arguments = dict(use.input)
            calls.append((use.name, arguments))
            results.append(
                {"type": "tool_result", "tool_use_id": use.id, "content": json.dumps(_run_tool(use.name, arguments))}
            )
        messages.append({"role": "user", "content": results})
    raise RuntimeError(f"no answer after {MAX_TURNS} model turns")


def claude_stream_answer(question: str) -> Iterator[str]:
    """The answer to ``question`` as Anthropic streams it, piece by piece."""
    client = anthropic.Anthropic()
    with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=512, system=SYSTEM, messages=[{"role": "user", "content": question}]
    ) as stream:
        yield from stream.text_stream
