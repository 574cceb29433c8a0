"""Fixtures synthesized in every family's wire form, checked as clients read them.

One llmock fixture file answers text, tool calls, errors and embeddings; each
family asks for it streaming and not, over HTTP from the replay engine. Where
a real SDK exists (openai chat and Responses, anthropic, google-genai) the SDK
reads the answer; Ollama, Cohere and Bedrock answers are read by hand from
their documented wire formats (Bedrock's EventStream by botocore's parser).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from botocore.eventstream import EventStreamBuffer
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from llmock_proxy.replay.llmock_format import parse_fixture_entries
from llmock_proxy.replay.session import ReplaySession
from llmock_proxy.wire import NDJSONDecoder, SSEDecoder
from tests.harness.clients import anthropic_client, genai_client, openai_client
from tests.harness.http import httpx
from tests.support.replay import EngineThread

TEXT = "Synthesized answers read like recorded ones."
VECTOR = [0.25, -0.5, 0.125, 1.0]
FIXTURES = {
    "fixtures": [
        {"match": {"userMessage": "weather"},
         "response": {"toolCalls": [{"name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "id": "call_9"}]}},
        {"match": {"userMessage": "fail"},
         "response": {"error": {"message": "Slow down", "type": "rate_limit_error"}, "status": 429}},
        {"match": {"userMessage": "talk"}, "response": {"content": TEXT}, "chunkSize": 7},
        {"match": {"inputText": "kitten"}, "response": {"embedding": VECTOR}},
    ]
}
TOOL = ("get_weather", {"city": "Paris"})


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    session = ReplaySession(parse_fixture_entries(FIXTURES, "synthesis.json"))
    with EngineThread(session, timing="instant") as running:
        yield running


STREAMS = [False, True]


# -- openai -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_openai_chat(engine: EngineThread, stream: bool) -> None:
    client = openai_client(base_url=f"{engine.url}/v1")

    def ask(text: str) -> tuple[str, list[tuple[str, Any]]]:
        kwargs = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        if not stream:
            message = client.chat.completions.create(**kwargs).choices[0].message
            calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
            return message.content or "", calls
        content, args, names = "", {}, {}
        for chunk in client.chat.completions.create(stream=True, **kwargs):
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            content += delta.content or ""
            for call in delta.tool_calls or []:
                names[call.index] = names.get(call.index, "") + (call.function.name or "")
                args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
        return content, [(names[i], json.loads(args[i])) for i in sorted(names)]

    assert ask("talk to me") == (TEXT, [])
    assert ask("weather?") == ("", [TOOL])
    with pytest.raises(openai.RateLimitError, match="Slow down"):
        ask("fail now")


@pytest.mark.parametrize("stream", STREAMS)
def test_openai_responses(engine: EngineThread, stream: bool) -> None:
    client = openai_client(base_url=f"{engine.url}/v1")

    def ask(text: str) -> Any:
        if stream:
            with client.responses.stream(model="gpt-4o-mini", input=text) as events:
                return events.get_final_response()
        return client.responses.create(model="gpt-4o-mini", input=text)

    assert ask("talk to me").output_text == TEXT
    calls = [(item.name, json.loads(item.arguments)) for item in ask("weather?").output if item.type == "function_call"]
    assert calls == [TOOL]
    with pytest.raises(openai.RateLimitError, match="Slow down"):
        ask("fail now")


@pytest.mark.parametrize("encoding", ["float", "base64", None])
def test_openai_embeddings(engine: EngineThread, encoding: str | None) -> None:
    client = openai_client(base_url=f"{engine.url}/v1")
    # Without encoding_format the SDK asks for base64 and decodes it itself;
    # asked for explicitly, base64 comes back as the packed float32 string.
    extra = {"encoding_format": encoding} if encoding else {}
    answer = client.embeddings.create(model="text-embedding-3-small", input=["a kitten", "another kitten"], **extra)
    vectors = [item.embedding for item in answer.data]
    if encoding == "base64":
        vectors = [list(struct.unpack(f"<{len(VECTOR)}f", base64.b64decode(v))) for v in vectors]  # type: ignore[arg-type]
    assert vectors == [VECTOR, VECTOR]


# -- anthropic -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_anthropic(engine: EngineThread, stream: bool) -> None:
    client = anthropic_client(base_url=engine.url)

    def ask(text: str) -> Any:
        kwargs = dict(model="claude-3-5-haiku-latest", max_tokens=100, messages=[{"role": "user", "content": text}])
        if stream:
            with client.messages.stream(**kwargs) as events:
                return events.get_final_message()
        return client.messages.create(**kwargs)

    assert "".join(b.text for b in ask("talk to me").content if b.type == "text") == TEXT
    uses = [(b.name, b.input) for b in ask("weather?").content if b.type == "tool_use"]
    assert uses == [TOOL]
    with pytest.raises(anthropic.RateLimitError, match="Slow down"):
        ask("fail now")


# -- gemini --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_gemini(engine: EngineThread, stream: bool) -> None:
    client = genai_client(base_url=engine.url)

    def ask(text: str) -> tuple[str, list[tuple[str, Any]]]:
        if stream:
            chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents=text))
        else:
            chunks = [client.models.generate_content(model="gemini-2.0-flash", contents=text)]
        text_out = "".join(c.text or "" for c in chunks if c.candidates and c.candidates[0].content.parts
                           and any(p.text for p in c.candidates[0].content.parts))
        calls = [(f.name, dict(f.args)) for c in chunks for f in (c.function_calls or [])]
        return text_out, calls

    assert ask("talk to me") == (TEXT, [])
    assert ask("weather?") == ("", [TOOL])
    with pytest.raises(genai_errors.ClientError) as caught:
        ask("fail now")
    assert caught.value.code == 429 and "Slow down" in str(caught.value)


def test_gemini_embeddings(engine: EngineThread) -> None:
    client = genai_client(base_url=engine.url)
    answer = client.models.embed_content(model="text-embedding-004", contents="a kitten")
    assert answer.embeddings[0].values == VECTOR
    many = client.models.embed_content(
        model="text-embedding-004",
        contents=[genai_types.Content(parts=[genai_types.Part(text="kitten one")]),
                  genai_types.Content(parts=[genai_types.Part(text="kitten two")])],
    )
    assert [e.values for e in many.embeddings] == [VECTOR, VECTOR]


# -- ollama, cohere, bedrock: read by hand from their wire formats ------------------------------------


def post(engine: EngineThread, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{engine.url}{path}", json=body, timeout=10)


@pytest.mark.parametrize("stream", STREAMS)
def test_ollama_chat(engine: EngineThread, stream: bool) -> None:
    def ask(text: str) -> tuple[int, list[dict[str, Any]]]:
        r = post(engine, "/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": text}],
                                       "stream": stream})
        if r.status_code != 200 or not stream:
            return r.status_code, [r.json()]
        assert r.headers["content-type"] == "application/x-ndjson"
        decoder = NDJSONDecoder()
        return 200, [line.data for line in decoder.feed(r.content) + decoder.close()]

    status, lines = ask("talk to me")
    assert status == 200 and lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines) == TEXT
    if stream:
        assert len(lines) > 2  # chunkSize 7 cut the text
    _, lines = ask("weather?")
    calls = [(c["function"]["name"], c["function"]["arguments"]) for line in lines
             for c in line["message"].get("tool_calls", [])]
    assert calls == [TOOL]
    status, lines = ask("fail now")
    assert status == 429 and lines == [{"error": "Slow down"}]


def test_ollama_embed(engine: EngineThread) -> None:
    r = post(engine, "/api/embed", {"model": "all-minilm", "input": ["kitten a", "kitten b"]})
    assert r.status_code == 200 and r.json()["embeddings"] == [VECTOR, VECTOR]


@pytest.mark.parametrize("stream", STREAMS)
def test_cohere_chat(engine: EngineThread, stream: bool) -> None:
    def ask(text: str) -> httpx.Response:
        return post(engine, "/v2/chat", {"model": "command-r", "messages": [{"role": "user", "content": text}],
                                         "stream": stream})

    def events(r: httpx.Response) -> list[dict[str, Any]]:
        assert r.headers["content-type"].startswith("text/event-stream")
        decoder = SSEDecoder()
        return [e.data for e in decoder.feed(r.content) + decoder.close()]

    r = ask("talk to me")
    if stream:
        deltas = [e["delta"]["message"]["content"]["text"] for e in events(r) if e["type"] == "content-delta"]
        assert "".join(deltas) == TEXT
    else:
        assert r.json()["message"]["content"][0]["text"] == TEXT
    r = ask("weather?")
    if stream:
        received = events(r)
        start = next(e for e in received if e["type"] == "tool-call-start")
        arguments = start["delta"]["message"]["tool_calls"]["function"]["arguments"] + "".join(
            e["delta"]["message"]["tool_calls"]["function"]["arguments"]
            for e in received if e["type"] == "tool-call-delta"
        )
        calls = [(start["delta"]["message"]["tool_calls"]["function"]["name"], json.loads(arguments))]
    else:
        calls = [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                 for c in r.json()["message"]["tool_calls"]]
    assert calls == [TOOL]
    r = ask("fail now")
    assert r.status_code == 429 and r.json() == {"message": "Slow down"}


@pytest.mark.parametrize("stream", STREAMS)
def test_bedrock_converse(engine: EngineThread, stream: bool) -> None:
    path = "/model/anthropic.claude-3-haiku/" + ("converse-stream" if stream else "converse")

    def ask(text: str) -> httpx.Response:
        return post(engine, path, {"messages": [{"role": "user", "content": [{"text": text}]}]})

    def frames(r: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
        assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
        parser = EventStreamBuffer()
        parser.add_data(r.content)
        return [(m.headers[":event-type"], json.loads(m.payload)) for m in parser]

    r = ask("talk to me")
    if stream:
        received = frames(r)
        assert received[0][0] == "messageStart"
        assert "".join(p["delta"]["text"] for name, p in received if name == "contentBlockDelta") == TEXT
    else:
        assert r.json()["output"]["message"]["content"][0]["text"] == TEXT
    r = ask("weather?")
    if stream:
        received = frames(r)
        start = next(p for name, p in received if name == "contentBlockStart")["start"]["toolUse"]
        arguments = "".join(p["delta"]["toolUse"]["input"] for name, p in received if name == "contentBlockDelta")
        calls = [(start["name"], json.loads(arguments))]
    else:
        calls = [(c["toolUse"]["name"], c["toolUse"]["input"]) for c in r.json()["output"]["message"]["content"]]
    assert calls == [TOOL]
    r = ask("fail now")
    assert r.status_code == 429
    assert r.json() == {"message": "Slow down"}
    assert r.headers["x-amzn-errortype"].startswith("ThrottlingException")


# -- aimock's answer vocabulary, from the fixture file to the SDK ---------------------------------------

AIMOCK_FIXTURES = {
    "fixtures": [
        # content and toolCalls together, arguments as an object, overrides
        {"match": {"userMessage": "both"},
         "response": {"content": "Checking.", "toolCalls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
                      "id": "pinned-7", "created": 1712000000, "model": "gpt-pinned", "systemFingerprint": "fp_pin",
                      "usage": {"prompt_tokens": 5, "completion_tokens": 3}}},
        # blocks: a tool call before the text
        {"match": {"userMessage": "blocks"},
         "response": {"blocks": [{"type": "toolCall", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                                 {"type": "text", "text": "Looked it up."}]}},
        {"match": {"userMessage": "reason"}, "response": {"content": "42.", "reasoning": "Six times seven."}},
        {"match": {"userMessage": "search"},
         "response": {"content": "Sunny.", "webSearches": ["weather Paris"], "finishReason": "length"}},
    ]
}


@pytest.fixture(scope="module")
def aimock_engine() -> Iterator[EngineThread]:
    session = ReplaySession(parse_fixture_entries(AIMOCK_FIXTURES, "aimock-answers.json"))
    with EngineThread(session, timing="instant") as running:
        yield running


def test_aimock_answers_reach_openai_chat(aimock_engine: EngineThread) -> None:
    client = openai_client(base_url=f"{aimock_engine.url}/v1")
    both = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "both please"}])
    message = both.choices[0].message
    assert message.content == "Checking." and json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    envelope = (both.id, both.created, both.model, both.system_fingerprint)
    assert envelope == ("pinned-7", 1712000000, "gpt-pinned", "fp_pin")
    assert (both.usage.prompt_tokens, both.usage.completion_tokens, both.usage.total_tokens) == (5, 3, 8)
    order = []
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "blocks please"}], stream=True
    ):
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is not None and delta.tool_calls and delta.tool_calls[0].id:
            order.append("call")
        if delta is not None and delta.content and order[-1:] != ["text"]:
            order.append("text")
    assert order == ["call", "text"]
    reason = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "reason"}])
    assert (reason.choices[0].message.model_extra or {}).get("reasoning_content") == "Six times seven."


def test_aimock_answers_reach_openai_responses(aimock_engine: EngineThread) -> None:
    client = openai_client(base_url=f"{aimock_engine.url}/v1")
    searched = client.responses.create(model="gpt-4o-mini", input="search the web")
    assert [item.type for item in searched.output] == ["web_search_call", "message"]
    assert searched.output[0].action.query == "weather Paris" and searched.output_text == "Sunny."
    assert searched.status == "incomplete" and searched.incomplete_details.reason == "max_output_tokens"
    with client.responses.stream(model="gpt-4o-mini", input="reason it out") as events:
        final = events.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "Six times seven."
    blocks = client.responses.create(model="gpt-4o-mini", input="blocks please")
    assert [item.type for item in blocks.output] == ["function_call", "message"]


def test_aimock_answers_reach_anthropic(aimock_engine: EngineThread) -> None:
    client = anthropic_client(base_url=aimock_engine.url)
    kwargs: dict[str, Any] = dict(model="claude-3-5-haiku-latest", max_tokens=100)
    with client.messages.stream(messages=[{"role": "user", "content": "blocks please"}], **kwargs) as events:
        blocks = events.get_final_message()
    assert [(b.type, getattr(b, "text", None) or getattr(b, "input", None)) for b in blocks.content] == [
        ("tool_use", {"city": "Paris"}), ("text", "Looked it up.")
    ]
    thought = client.messages.create(messages=[{"role": "user", "content": "reason"}], **kwargs)
    assert thought.content[0].type == "thinking" and thought.content[0].thinking == "Six times seven."
    assert thought.content[0].signature
    cut = client.messages.create(messages=[{"role": "user", "content": "search"}], **kwargs)
    assert cut.stop_reason == "max_tokens"


def test_aimock_answers_reach_gemini(aimock_engine: EngineThread) -> None:
    client = genai_client(base_url=aimock_engine.url)
    both = client.models.generate_content(model="gemini-2.0-flash", contents="both please")
    parts = both.candidates[0].content.parts
    assert parts[0].text == "Checking." and parts[1].function_call.name == "get_weather"
    assert both.usage_metadata.total_token_count == 8
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="blocks please"))
    kinds = ["call" if p.function_call else "text" for c in chunks for p in c.candidates[0].content.parts]
    assert kinds == ["call", "text"]
    assert chunks[-1].candidates[0].finish_reason == "STOP"
    thought = client.models.generate_content(model="gemini-2.0-flash", contents="reason")
    assert [p.thought for p in thought.candidates[0].content.parts] == [True, None]
