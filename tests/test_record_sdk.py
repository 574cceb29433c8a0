"""The record addon in a real mitmproxy, driven by the real SDKs against the fakes.

Every API family of the catalog, streaming and not, in regular mode (TLS with
the proxy's CA, real provider URLs) and reverse mode (base URL): the cassette
loads against the schema, holds every event the client received in the order
it received them with a plausible ``t``, carries the derived ``match`` and the
provider's ``summary``, and no test key anywhere.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from google.genai import types as genai_types

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette, Interaction
from llmock_proxy.mitm.record import Record
from tests.fakes import Script, ToolCall
from tests.harness import clients as sdk

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_CALL = ToolCall("get_weather", {"city": "Paris"})
CASSETTE = "recorded.yaml"
MODES = ["regular", "reverse"]


# -- helpers -----------------------------------------------------------------------------------------


class Recording:
    """A proxy with the record addon, in one mode, writing ``recorded.yaml``."""

    def __init__(self, proxy_factory: Any, tmp_path: Path, fake: Any, mode: str, real_url: str) -> None:
        self.record = Record()
        self.cassette_path = tmp_path / "cassettes" / CASSETTE
        self.mode = mode
        proxy_mode = "regular" if mode == "regular" else f"reverse:{real_url}"
        self.proxy = proxy_factory(
            proxy_mode,
            addons=[self.record],
            fakes=[fake],
            options={"llmock_cassette_dir": str(tmp_path / "cassettes"), "llmock_cassette": CASSETTE},
        )
        self.real_url = real_url

    def client_kwargs(self, path: str = "") -> dict[str, Any]:
        """SDK factory arguments: through the proxy, or at it as a base URL."""
        if self.mode == "regular":
            return {"proxy": self.proxy}
        return {"base_url": self.proxy.url + path}

    def cassette(self) -> Cassette:
        assert self.record.flush(30), "cassette writes did not finish"
        text = self.cassette_path.read_text(encoding="utf-8")
        assert "sk-test-" not in text
        loaded = cassette_store.load(self.cassette_path)  # schema-validated
        assert not self.proxy.errors(), self.proxy.errors()
        for interaction in loaded.interactions:
            assert interaction.request.url.startswith(self.real_url), interaction.request.url
            check_timing(interaction)
        return loaded


def check_timing(interaction: Interaction) -> None:
    response = interaction.response
    assert response is not None
    items = response.events or response.lines or response.frames or []
    times = [item.t for item in items]
    assert times == sorted(times), f"t goes backwards: {times}"
    assert all(t > 0 for t in times), times


def event_data(interaction: Interaction) -> list[Any]:
    assert interaction.response is not None and interaction.response.events is not None
    return [event.data for event in interaction.response.events]


def stored_header_names(interaction: Interaction) -> set[str]:
    assert interaction.response is not None
    return set(interaction.response.headers) | set(interaction.request.headers)


UNSTORED = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


# -- OpenAI ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_openai_chat_streamed_and_not_with_tool_calls(mode, proxy, fake_openai, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_openai, mode, "https://api.openai.com")
    client = sdk_clients.openai(**rec.client_kwargs("/v1"))

    fake_openai.queue(Script(text="", tool_calls=[WEATHER_CALL]))
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL])
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"

    fake_openai.queue(Script(text="It is sunny in Paris today.", first_event_delay=0.01, event_delay=0.005))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )

    plain, streamed = rec.cassette().interactions
    assert plain.match["family"] == "openai.chat" and plain.match["stream"] is False
    assert plain.match["model"] == "gpt-4o-mini"
    assert plain.match["userMessage"] == USER[0]["content"]
    assert plain.match["toolNames"] == ["get_weather"]
    assert plain.response.status == 200 and plain.response.json["object"] == "chat.completion"
    assert plain.summary["tool_calls"][0]["name"] == "get_weather"
    assert plain.summary["tool_calls"][0]["arguments"] == {"city": "Paris"}
    assert plain.summary["finish_reason"] == "tool_calls"
    assert plain.request.headers["authorization"] != f"Bearer {sdk.TEST_OPENAI_KEY}"
    assert not UNSTORED & stored_header_names(plain)

    assert streamed.match["stream"] is True
    data = event_data(streamed)
    # Every chunk the SDK yielded, in order, then the [DONE] it stopped at.
    assert data[-1] == "[DONE]"
    assert [d["id"] for d in data[:-1]] == [c.id for c in chunks]
    assert [d["choices"][0]["delta"].get("content") for d in data[:-1] if d["choices"]] == [
        c.choices[0].delta.content for c in chunks if c.choices
    ]
    assert streamed.summary["text"] == "It is sunny in Paris today."
    assert streamed.summary["finish_reason"] == "stop"
    assert streamed.summary["usage"]
    assert streamed.incomplete is None
    assert streamed.response.headers["content-type"].startswith("text/event-stream")
    times = [e.t for e in streamed.response.events]
    # Paced 5 ms apart after the first: the offsets spread at least that far.
    assert times[-2] - times[0] >= 0.9 * 5 * (len(times) - 3)


@pytest.mark.parametrize("mode", MODES)
def test_openai_responses_streamed_and_not(mode, proxy, fake_openai, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_openai, mode, "https://api.openai.com")
    client = sdk_clients.openai(**rec.client_kwargs("/v1"))
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}

    fake_openai.queue(Script(text="Sunny."))
    plain_reply = client.responses.create(model="gpt-4.1-mini", input="Weather in Paris?", instructions="Be brief")
    fake_openai.queue(Script(text="", tool_calls=[WEATHER_CALL]))
    events = list(client.responses.create(model="gpt-4.1-mini", input="Weather in Paris?", tools=[tool], stream=True))

    plain, streamed = rec.cassette().interactions
    assert plain.match["family"] == "openai.responses" and plain.match["stream"] is False
    assert plain.summary["text"] == plain_reply.output_text == "Sunny."
    assert streamed.match["family"] == "openai.responses" and streamed.match["stream"] is True
    # Event names kept verbatim, one per event the SDK parsed, in order.
    assert [e.event for e in streamed.response.events] == [e.type for e in events]
    assert [e.data["sequence_number"] for e in streamed.response.events] == [e.sequence_number for e in events]
    assert streamed.summary["tool_calls"][0]["name"] == "get_weather"
    assert streamed.summary["tool_calls"][0]["arguments"] == {"city": "Paris"}


def test_openai_embeddings(proxy, fake_openai, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_openai, "regular", "https://api.openai.com")
    client = sdk_clients.openai(**rec.client_kwargs())
    result = client.embeddings.create(model="text-embedding-3-small", input="hello world")
    (interaction,) = rec.cassette().interactions
    assert interaction.match["family"] == "openai.embeddings"
    assert interaction.match["inputText"] == "hello world"
    assert interaction.summary["embeddings"][0] == pytest.approx(result.data[0].embedding)


# -- Anthropic ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_messages_streamed_and_not_with_tool_use(mode, proxy, fake_anthropic, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_anthropic, mode, "https://api.anthropic.com")
    client = sdk_clients.anthropic(**rec.client_kwargs())
    tool = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}

    fake_anthropic.queue(Script(text="Let me look.", tool_calls=[WEATHER_CALL]))
    message = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=256, system="Be brief", messages=USER, tools=[tool]
    )
    assert message.stop_reason == "tool_use"

    fake_anthropic.queue(Script(text="Sunny and mild.", event_delay=0.005))
    received = []
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, messages=USER) as stream:
        for event in stream:
            received.append(event.type)
        final = stream.get_final_message()

    plain, streamed = rec.cassette().interactions
    assert plain.match["family"] == "anthropic.messages" and plain.match["stream"] is False
    assert plain.match["toolNames"] == ["get_weather"]
    assert plain.summary["text"] == "Let me look."
    assert plain.summary["tool_calls"][0] == {"name": "get_weather", "arguments": {"city": "Paris"}, "id": message.content[1].id}
    assert plain.summary["finish_reason"] == "tool_use"
    assert "x-api-key" not in plain.request.headers or "sk-test" not in plain.request.headers["x-api-key"]
    assert plain.request.headers["anthropic-version"]

    names = [e.event for e in streamed.response.events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    # The SDK's raw events, in order (it adds derived "text" events of its own).
    raw_types = [t for t in received if t in set(names)]
    assert raw_types == [n for n in names if n != "ping"]
    assert streamed.summary["text"] == final.content[0].text == "Sunny and mild."
    assert streamed.summary["finish_reason"] == "end_turn"


# -- Gemini ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_gemini_generate_content_streamed_and_not_with_function_call(mode, proxy, fake_gemini, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_gemini, mode, "https://generativelanguage.googleapis.com")
    client = sdk_clients.genai(**rec.client_kwargs())
    declaration = genai_types.FunctionDeclaration(
        name="get_weather",
        description="Weather for a city",
        parameters=genai_types.Schema(type="OBJECT", properties={"city": genai_types.Schema(type="STRING")}),
    )
    config = genai_types.GenerateContentConfig(tools=[genai_types.Tool(function_declarations=[declaration])])

    fake_gemini.queue(Script(text="", tool_calls=[WEATHER_CALL]))
    reply = client.models.generate_content(model="gemini-2.0-flash", contents="Weather in Paris?", config=config)
    assert reply.function_calls[0].name == "get_weather"

    fake_gemini.queue(Script(text="Sunny in Paris, about twenty degrees.", event_delay=0.005))
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="Weather in Paris?"))

    plain, streamed = rec.cassette().interactions
    assert plain.match["family"] == "gemini.generate" and plain.match["stream"] is False
    assert plain.match["model"] == "gemini-2.0-flash"
    assert plain.match["userMessage"] == "Weather in Paris?"
    assert plain.summary["tool_calls"][0]["name"] == "get_weather"
    assert plain.summary["tool_calls"][0]["arguments"] == {"city": "Paris"}
    assert "key=" not in plain.request.url or sdk.TEST_GEMINI_KEY not in plain.request.url

    assert streamed.match["stream"] is True
    assert "alt=sse" in streamed.request.url
    data = event_data(streamed)
    assert [d["candidates"][0]["content"]["parts"][0].get("text") for d in data] == [c.text for c in chunks]
    assert streamed.summary["text"] == "".join(c.text for c in chunks) == "Sunny in Paris, about twenty degrees."


def test_gemini_embed_content(proxy, fake_gemini, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_gemini, "regular", "https://generativelanguage.googleapis.com")
    client = sdk_clients.genai(**rec.client_kwargs())
    result = client.models.embed_content(model="text-embedding-004", contents="hello world")
    (interaction,) = rec.cassette().interactions
    assert interaction.match["family"] == "gemini.embed"
    assert interaction.summary["embeddings"][0] == pytest.approx(result.embeddings[0].values)


# -- Ollama, Cohere, Bedrock: raw HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_ollama_ndjson_stream_and_body(mode, proxy, fake_ollama, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_ollama, mode, "https://ollama.com")
    base = sdk.OLLAMA_URL if mode == "regular" else rec.proxy.url
    raw = sdk_clients.raw(rec.proxy if mode == "regular" else None)

    fake_ollama.queue(Script(text="Sunny and warm in Paris.", event_delay=0.005))
    with raw.stream("POST", f"{base}/api/chat", json={"model": "llama3.2", "messages": USER}) as response:
        received = [json.loads(line) for line in response.iter_lines() if line]
    fake_ollama.queue(Script(text="", tool_calls=[WEATHER_CALL]))
    whole = raw.post(
        f"{base}/api/chat",
        json={"model": "llama3.2", "messages": USER, "stream": False, "tools": [WEATHER_TOOL]},
    ).json()
    generated = raw.post(f"{base}/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False}).json()
    raw.post(f"{base}/api/embed", json={"model": "all-minilm", "input": "hello"}).raise_for_status()

    streamed, plain, generate, embed = rec.cassette().interactions
    assert streamed.match["family"] == "ollama.chat" and streamed.match["stream"] is True
    assert [line.data for line in streamed.response.lines] == received
    assert streamed.summary["text"] == "Sunny and warm in Paris."
    assert plain.match["stream"] is False and plain.response.json == whole
    assert plain.summary["tool_calls"][0]["arguments"] == {"city": "Paris"}
    assert generate.match["family"] == "ollama.generate" and generate.summary["text"] == generated["response"]
    assert embed.match["family"] == "ollama.embed" and embed.summary["embeddings"]


def test_cohere_chat_stream_and_body(proxy, fake_cohere, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_cohere, "regular", "https://api.cohere.com")
    raw = sdk_clients.raw(rec.proxy)
    headers = {"authorization": f"Bearer {sdk.TEST_COHERE_KEY}"}
    body = {"model": "command-r-plus", "messages": USER}
    plain = raw.post(f"{sdk.COHERE_URL}/v2/chat", json=body, headers=headers).json()
    with raw.stream("POST", f"{sdk.COHERE_URL}/v2/chat", json={**body, "stream": True}, headers=headers) as response:
        response.read()

    whole, streamed = rec.cassette().interactions
    assert whole.match["family"] == "cohere.chat" and whole.response.json == plain
    assert whole.summary["text"] == fake_cohere.script.text
    assert streamed.match["stream"] is True and streamed.response.events
    assert streamed.summary["text"] == fake_cohere.script.text


def _bedrock_post(raw: Any, url: str, body: dict[str, Any]) -> Any:
    content = json.dumps(body).encode()
    headers = sdk.sigv4_headers("POST", url, content, headers={"content-type": "application/json"})
    return raw.post(url, content=content, headers=headers)


def _eventstream_payloads(raw_bytes: bytes) -> list[tuple[str, Any]]:
    from botocore.eventstream import EventStreamBuffer  # an independent parser

    buffer = EventStreamBuffer()
    buffer.add_data(raw_bytes)
    return [(m.headers[":event-type"], json.loads(m.payload)) for m in buffer]


def test_bedrock_eventstream_streams_and_bodies(proxy, fake_bedrock, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_bedrock, "regular", sdk.bedrock_url())
    raw = sdk_clients.raw(rec.proxy)
    model = "anthropic.claude-3-haiku-20240307-v1%3A0"
    converse = {"messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]}

    fake_bedrock.queue(Script(text="Checking.", tool_calls=[WEATHER_CALL], event_delay=0.005))
    streamed_reply = _bedrock_post(raw, f"{sdk.bedrock_url()}/model/{model}/converse-stream", converse)
    assert streamed_reply.status_code == 200, streamed_reply.text  # the signature survived the proxy
    plain_reply = _bedrock_post(raw, f"{sdk.bedrock_url()}/model/{model}/converse", converse)
    assert plain_reply.status_code == 200, plain_reply.text
    invoke_body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": USER}
    invoke_reply = _bedrock_post(raw, f"{sdk.bedrock_url()}/model/{model}/invoke-with-response-stream", invoke_body)
    assert invoke_reply.status_code == 200, invoke_reply.text
    whole_reply = _bedrock_post(raw, f"{sdk.bedrock_url()}/model/{model}/invoke", invoke_body)
    assert whole_reply.status_code == 200, whole_reply.text

    streamed, plain, invoked, whole = rec.cassette().interactions
    assert streamed.match["family"] == "bedrock.converse" and streamed.match["stream"] is True
    frames = streamed.response.frames
    assert [(f.event_type, f.payload.value) for f in frames] == _eventstream_payloads(streamed_reply.content)
    assert streamed.summary["text"] == "Checking."
    assert streamed.summary["tool_calls"][0]["arguments"] == {"city": "Paris"}
    assert streamed.request.headers["authorization"] != streamed_reply.request.headers["authorization"]
    assert plain.match["family"] == "bedrock.converse" and plain.match["stream"] is False
    assert plain.response.json == plain_reply.json()
    assert invoked.match["family"] == "bedrock.invoke" and invoked.response.frames
    decoded = [json.loads(base64.b64decode(f.payload.value["bytes"])) for f in invoked.response.frames]
    assert decoded[0]["type"] == "message_start"
    assert invoked.summary["text"] == fake_bedrock.script.text
    assert whole.match["family"] == "bedrock.invoke" and whole.match["stream"] is False
    assert whole.response.json == whole_reply.json()
    assert whole.summary["text"] == fake_bedrock.script.text


def test_any_other_api_is_recorded_as_generic(proxy, fake_openai, tmp_path, sdk_clients) -> None:
    rec = Recording(proxy, tmp_path, fake_openai, "regular", "https://api.openai.com")
    raw = sdk_clients.raw(rec.proxy)
    reply = raw.post("https://api.openai.com/v1/files/unknown", json={"purpose": "x"})
    (interaction,) = rec.cassette().interactions
    assert interaction.match["family"] == "generic"
    assert interaction.match["method"] == "POST"
    assert interaction.response.status == reply.status_code == 404
