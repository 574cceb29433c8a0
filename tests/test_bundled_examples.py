"""Every bundled example in cassettes/examples/ played to the end with the real
SDKs, through ``serve``'s engine loaded the way ``make run`` loads them (the
directory as cassettes and as llmock fixtures)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from llmock_proxy.replay.session import ReplaySession
from tests.harness import clients as sdk
from tests.support.replay import EngineThread

EXAMPLES = Path(__file__).resolve().parent.parent / "cassettes" / "examples"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[EngineThread]:
    session = ReplaySession.load([EXAMPLES], [EXAMPLES], name="examples")
    with EngineThread(session) as engine:
        yield engine


@pytest.fixture
def client(server: EngineThread) -> openai.OpenAI:
    # Each test starts from the first recording / sequence entry again.
    server.engine.session.reset()
    return sdk.openai_client(base_url=f"{server.url}/v1")


def _streamed_turn(stream: Any) -> tuple[str, list[dict[str, Any]]]:
    """Text and tool calls of a streamed chat answer, as the SDK delivered them."""
    text, calls = "", {}  # type: ignore[var-annotated]
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            if call.function is not None:
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
    return text, [calls[i] for i in sorted(calls)]


def test_openai_chat_cassette_paris_tool_loop_to_the_end(client: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a concise weather assistant."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    text, calls = _streamed_turn(
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], stream=True)
    )
    assert [c["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    messages.append({
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": c["id"], "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls],
    })
    messages.append({"role": "tool", "tool_call_id": calls[0]["id"],
                     "content": '{"temperature_c": 18, "sky": "sunny"}'})
    final, more_calls = _streamed_turn(
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], stream=True)
    )
    assert more_calls == []
    assert "Paris" in final and "18" in final


def test_openai_chat_cassette_hello(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"


def test_anthropic_cassette_haiku(server: EngineThread) -> None:
    client = sdk.anthropic_client(base_url=server.url)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=200, system="Answer in haiku.",
        messages=[{"role": "user", "content": "Write a haiku about the sea."}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split(" / ")) == 3  # three lines of a haiku
    assert final.stop_reason == "end_turn"


def test_gemini_cassette_primary_colors(server: EngineThread) -> None:
    client = sdk.genai_client(base_url=server.url)
    text = "".join(
        chunk.text or ""
        for chunk in client.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Name the three primary colors."
        )
    )
    assert all(color in text.lower() for color in ("red", "blue"))


def test_fixture_file_tokyo_tool_loop_ends(client: openai.OpenAI) -> None:
    """The tool round trip ends: the call's id is the one the follow-up
    fixture waits for, and the first fixture does not answer the follow-up."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What's the weather in Tokyo?"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (  # type: ignore[union-attr]
        "call_tokyo_weather", "get_weather", {"city": "Tokyo"}
    )
    assert first.choices[0].finish_reason == "tool_calls"
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 22}'})
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "It is 22 °C and clear in Tokyo."
    assert not second.choices[0].message.tool_calls


def test_fixture_file_tokyo_tool_loop_with_anthropic(server: EngineThread) -> None:
    server.engine.session.reset()
    client = sdk.anthropic_client(base_url=server.url)
    tool = {"name": "get_weather", "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"]}  # type: ignore[index]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What's the weather in Tokyo?"}]
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=messages, tools=[tool])
    use = next(block for block in first.content if block.type == "tool_use")
    assert (use.id, use.name, use.input) == ("call_tokyo_weather", "get_weather", {"city": "Tokyo"})
    assert first.stop_reason == "tool_use"
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "22"}]})
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=messages, tools=[tool])
    assert [b.text for b in second.content if b.type == "text"] == ["It is 22 °C and clear in Tokyo."]


def test_fixture_file_jokes_in_sequence(client: openai.OpenAI) -> None:
    def joke() -> str | None:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me a joke"}]
        ).choices[0].message.content

    assert joke() == "Why did the model cross the road? It was in its training data."
    assert joke() == "I only know one joke, and you have heard it."


def test_fixture_file_rate_limit(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "simulate a rate limit"}])
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "rate_limit_error"


def test_fixture_file_rate_limit_with_anthropic(server: EngineThread) -> None:
    client = sdk.anthropic_client(base_url=server.url)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10,
                               messages=[{"role": "user", "content": "simulate a rate limit"}])


def test_fixture_file_embedding(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model="text-embedding-3-small", input="hello world")
    # The SDK asks for base64 (float32) by default.
    assert answer.data[0].embedding == pytest.approx([0.0123, -0.0456, 0.0789, 0.1011], rel=1e-6)


def test_replay_demo_streams_its_answer(client: openai.OpenAI) -> None:
    text, calls = _streamed_turn(
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}],
                                       stream=True)
    )
    assert text == "Hello! This answer was replayed by llmock-proxy, not generated."
    assert calls == []


def test_every_bundled_file_is_played_here() -> None:
    """A new example file needs a test in this module."""
    played = {"openai-chat.yaml", "anthropic-messages.yaml", "gemini.yaml", "llmock-fixtures.json", "replay-demo.json"}
    assert {p.name for p in EXAMPLES.iterdir() if p.is_file()} == played
