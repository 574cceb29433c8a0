"""The test infrastructure itself, end to end and without llmock-proxy's addons.

Real SDKs talk through a real mitmproxy (in-process and mitmdump) in regular
mode (TLS with the proxy's CA, real provider hostnames routed to the fakes),
reverse mode and upstream mode, and get the fakes' answers; nothing leaves
127.0.0.1. The fakes' own wire behaviour (auth, envelopes, drift knobs) is
checked against the SDKs and independent parsers (botocore's EventStream).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anthropic
import openai
import pytest
from botocore.eventstream import EventStreamBuffer

from tests.fakes import Script, StreamEvent, ToolCall
from tests.fakes.base import bearer_token, derived_embedding, float32_round
from tests.harness import (
    InProcessProxy,
    ProxyStartError,
    UpstreamRouter,
    is_loopback,
    routes_for,
)
from tests.harness import clients as sdk
from tests.harness.http import httpx

USER = [{"role": "user", "content": "Say hello"}]


def only_loopback(router: UpstreamRouter) -> None:
    assert router.attempts, "the proxy opened no server connection"
    for attempt in router.attempts:
        assert attempt.routed_to is not None, attempt
        assert is_loopback(attempt.routed_to[0]), attempt


class SeenURLs:
    """Addon recording what a recorder would see: the flow's request URL."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def response(self, flow: Any) -> None:
        self.urls.append(flow.request.pretty_url)


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((name, "\n".join(data)))
    return events


def eventstream_frames(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    return [(message.headers, message.payload) for message in buffer]


# -- OpenAI -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["eager", "lazy"])
def test_openai_chat_through_regular_mode(fake_openai, proxy, sdk_clients, strategy) -> None:
    seen = SeenURLs()
    mitm = proxy(fakes=[fake_openai], addons=[seen], options={"connection_strategy": strategy})
    client = sdk_clients.openai(mitm)

    reply = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert reply.choices[0].message.content == fake_openai.script.text
    assert reply.choices[0].finish_reason == "stop"

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake_openai.script.text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0

    received = fake_openai.requests[-1]
    assert received.path == "/v1/chat/completions"
    assert received.header("host") == "api.openai.com"
    assert received.header("authorization") == f"Bearer {sdk.TEST_OPENAI_KEY}"
    assert received.json["stream"] is True
    assert received.peer == "127.0.0.1"
    # The router changed only the connection: the flow still names the real URL.
    assert seen.urls == ["https://api.openai.com/v1/chat/completions"] * 2
    only_loopback(mitm.router)
    assert not mitm.errors()


def test_openai_tool_call_stream_reassembles_in_the_sdk(fake_openai, proxy, sdk_clients) -> None:
    fake_openai.script = Script(text="", tool_calls=[ToolCall("get_weather", {"city": "Paris", "unit": "celsius"})])
    client = sdk_clients.openai(proxy(fakes=[fake_openai]))
    with client.chat.completions.stream(model="gpt-4o-mini", messages=USER) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert call.id.startswith("call_")
    assert final.choices[0].finish_reason == "tool_calls"


async def test_async_openai_through_reverse_mode(fake_openai, proxy) -> None:
    seen = SeenURLs()
    mitm = proxy(f"reverse:{sdk.OPENAI_URL.removesuffix('/v1')}", fakes=[fake_openai], addons=[seen])
    async with sdk.async_openai_client(base_url=f"{mitm.url}/v1") as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        responses = await client.responses.create(model="gpt-4o-mini", input="Say hello")
        again = await client.responses.create(model="gpt-4o-mini", input="Say hello")  # kept-alive connection
    assert text == fake_openai.script.text
    assert responses.output_text == again.output_text == fake_openai.script.text
    assert [r.header("host") for r in fake_openai.requests] == ["api.openai.com"] * 3
    # In reverse mode mitmproxy derives the request host from the server address:
    # the router restores it after connecting, so the flow never shows 127.0.0.1.
    assert seen.urls == [
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/responses",
        "https://api.openai.com/v1/responses",
    ]
    only_loopback(mitm.router)
    assert not mitm.errors()


def test_openai_responses_stream_event_sequence(fake_openai, sdk_clients) -> None:
    fake_openai.script = Script(text="Two words", tool_calls=[ToolCall("lookup", {"q": "x"})])
    client = sdk_clients.openai(base_url=f"{fake_openai.url}/v1")
    kinds = []
    with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    assert final.output_text == "Two words"
    assert json.loads(final.output[1].arguments) == {"q": "x"}


def test_openai_embeddings_float_and_base64(fake_openai, sdk_clients) -> None:
    client = sdk_clients.openai(base_url=f"{fake_openai.url}/v1")
    # The SDK asks for base64 by default and decodes the float32 bytes itself.
    decoded = client.embeddings.create(model="text-embedding-3-small", input="hello").data[0].embedding
    assert fake_openai.requests[-1].json["encoding_format"] == "base64"
    assert decoded == float32_round(derived_embedding("hello"))
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [derived_embedding("a"), derived_embedding("b")]


# -- Anthropic --------------------------------------------------------------------------------------


def test_anthropic_stream_through_regular_mode(fake_anthropic, proxy, sdk_clients) -> None:
    fake_anthropic.script = Script(text="Let me check.", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})])
    mitm = proxy(fakes=[fake_anthropic])
    client = sdk_clients.anthropic(mitm)
    kinds = []
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=USER) as stream:
        for event in stream:
            kinds.append(event.type)
        message = stream.get_final_message()
    assert message.content[0].text == "Let me check."
    assert message.content[1].type == "tool_use"
    assert message.content[1].input == {"city": "Oslo"}
    assert message.stop_reason == "tool_use"
    assert kinds[0] == "message_start" and "message_stop" in kinds
    received = fake_anthropic.requests[-1]
    # anthropic 2.x sends the key as a bearer token; 0.x as x-api-key.
    assert sdk.TEST_ANTHROPIC_KEY in (received.header("x-api-key"), bearer_token(received))
    assert received.header("anthropic-version")
    assert received.header("host") == "api.anthropic.com"
    only_loopback(mitm.router)


async def test_async_anthropic_through_reverse_mode(fake_anthropic, proxy) -> None:
    mitm = proxy(f"reverse:{sdk.ANTHROPIC_URL}", fakes=[fake_anthropic])
    async with sdk.async_anthropic_client(base_url=mitm.url) as client:
        message = await client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)
    assert message.content[0].text == fake_anthropic.script.text
    assert message.id.startswith("msg_01")
    only_loopback(mitm.router)


def test_anthropic_fake_requires_key_and_version(fake_anthropic, sdk_clients) -> None:
    raw = sdk_clients.raw()
    body = {"model": "claude", "max_tokens": 5, "messages": USER}
    no_key = raw.post(f"{fake_anthropic.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    no_version = raw.post(f"{fake_anthropic.url}/v1/messages", json=body, headers={"x-api-key": sdk.TEST_ANTHROPIC_KEY})
    assert no_version.status_code == 400
    assert "anthropic-version" in no_version.json()["error"]["message"]


def test_scripted_error_reaches_the_sdk_in_the_provider_envelope(fake_anthropic, fake_openai, sdk_clients) -> None:
    fake_anthropic.queue(Script(error_status=529, error_message="Overloaded"))
    client = sdk_clients.anthropic(base_url=fake_anthropic.url)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude", max_tokens=5, messages=USER)
    assert raised.value.status_code == 529
    assert raised.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    # The queued script was used once; the default answers again.
    assert client.messages.create(model="claude", max_tokens=5, messages=USER).content[0].text

    fake_openai.queue(Script(error_status=429, error_message="Slow down"))
    with pytest.raises(openai.RateLimitError, match="Slow down"):
        sdk_clients.openai(base_url=f"{fake_openai.url}/v1").chat.completions.create(model="m", messages=USER)


# -- Gemini --------------------------------------------------------------------------------------------


def test_genai_stream_through_regular_mode(fake_gemini, proxy, sdk_clients) -> None:
    mitm = proxy(fakes=[fake_gemini])
    client = sdk_clients.genai(mitm)
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="Say hello"))
    assert "".join(c.text or "" for c in chunks) == fake_gemini.script.text
    assert chunks[-1].candidates[0].finish_reason.value == "STOP"
    received = fake_gemini.requests[-1]
    # google-genai 3.x defaults to the v1 API, 2.x to v1beta.
    assert received.path in ("/v1/models/gemini-2.0-flash:streamGenerateContent",
                             "/v1beta/models/gemini-2.0-flash:streamGenerateContent")
    assert received.query["alt"] == "sse"
    assert received.header("x-goog-api-key") == sdk.TEST_GEMINI_KEY
    assert received.header("host") == "generativelanguage.googleapis.com"
    only_loopback(mitm.router)


async def test_async_genai_through_reverse_mode(fake_gemini, proxy) -> None:
    fake_gemini.script = Script(text="", tool_calls=[ToolCall("get_time", {"tz": "UTC"})])
    mitm = proxy(f"reverse:{sdk.GEMINI_URL}", fakes=[fake_gemini])
    async with sdk.async_genai_client(base_url=mitm.url) as aio:
        reply = await aio.models.generate_content(model="gemini-2.0-flash", contents="What time is it?")
        embedded = await aio.models.embed_content(model="text-embedding-004", contents=["one", "two"])
    assert reply.function_calls[0].name == "get_time"
    assert reply.function_calls[0].args == {"tz": "UTC"}
    assert [e.values for e in embedded.embeddings] == [derived_embedding("one"), derived_embedding("two")]
    only_loopback(mitm.router)


# -- Bedrock, Ollama, Cohere (raw HTTP) ------------------------------------------------------------------------


def test_bedrock_converse_stream_eventstream_through_regular_mode(fake_bedrock, proxy, sdk_clients) -> None:
    fake_bedrock.script = Script(text="Hi there", tool_calls=[ToolCall("search", {"q": "llm"})])
    mitm = proxy(fakes=[fake_bedrock])
    url = f"{sdk.bedrock_url()}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    headers = sdk.sigv4_headers("POST", url, body, headers={"content-type": "application/json"})
    response = sdk_clients.raw(mitm).post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"

    frames = eventstream_frames(response.content)
    kinds = [h[":event-type"] for h, _ in frames]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    payloads = [json.loads(p) for _, p in frames]
    text = "".join(p["delta"].get("text", "") for p in payloads if "delta" in p)
    args = "".join(p["delta"].get("toolUse", {}).get("input", "") for p in payloads if "delta" in p)
    assert text == "Hi there"
    assert json.loads(args) == {"q": "llm"}
    assert fake_bedrock.requests[-1].header("host") == "bedrock-runtime.us-east-1.amazonaws.com"
    only_loopback(mitm.router)


def test_bedrock_fake_checks_the_sigv4_signature(fake_bedrock, sdk_clients) -> None:
    url = f"{sdk.bedrock_url()}/model/amazon.titan-text-express-v1/invoke-with-response-stream"
    body = json.dumps({"prompt": "hi"}).encode()
    headers = sdk.sigv4_headers("POST", url, body)
    raw = sdk_clients.raw()
    direct = f"{fake_bedrock.url}/model/amazon.titan-text-express-v1/invoke-with-response-stream"
    # Same Host as signed: accepted; the chunk frames carry base64 model events.
    ok = raw.post(direct, content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    chunks = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in eventstream_frames(ok.content)]
    assert "".join(c["generation"] for c in chunks) == fake_bedrock.script.text
    # A changed body breaks the signature, as on AWS.
    tampered = raw.post(direct, content=body + b" ", headers=headers)
    assert tampered.status_code == 403
    assert tampered.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    unsigned = raw.post(direct, content=body)
    assert unsigned.status_code == 403 and unsigned.json() == {"message": "Missing Authentication Token"}


def test_ollama_ndjson_through_regular_mode_and_direct(fake_ollama, proxy, sdk_clients) -> None:
    mitm = proxy(fakes=[fake_ollama])
    body = {"model": "llama3.2", "messages": USER}  # streaming is Ollama's default
    for client, base in ((sdk_clients.raw(mitm), sdk.OLLAMA_URL), (sdk_clients.raw(), fake_ollama.url)):
        with client.stream("POST", f"{base}/api/chat", json=body) as response:
            assert response.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in response.iter_lines() if line]
        assert "".join(line["message"]["content"] for line in lines) == fake_ollama.script.text
        assert [line["done"] for line in lines].count(True) == 1 and lines[-1]["done_reason"] == "stop"
    only_loopback(mitm.router)


def test_cohere_sse_event_names(fake_cohere, sdk_clients) -> None:
    fake_cohere.script = Script(text="Hi", tool_calls=[ToolCall("calc", {"x": 1})])
    response = sdk_clients.raw().post(
        f"{fake_cohere.url}/v2/chat",
        json={"model": "command-a-03-2025", "messages": USER, "stream": True},
        headers={"Authorization": f"Bearer {sdk.TEST_COHERE_KEY}"},
    )
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "message-start" and names[-1] == "message-end"
    assert {"content-delta", "tool-call-start", "tool-call-delta", "tool-call-end"} <= set(names)
    assert all(json.loads(data)["type"] == name for name, data in events)
    args = "".join(
        json.loads(d)["delta"]["message"]["tool_calls"]["function"]["arguments"]
        for n, d in events
        if n == "tool-call-delta"
    )
    assert json.loads(args) == {"x": 1}


# -- drift knobs and volatility ----------------------------------------------------------------------------


def test_ids_and_timestamps_vary_per_call(fake_openai, sdk_clients) -> None:
    client = sdk_clients.openai(base_url=f"{fake_openai.url}/v1")
    first = client.chat.completions.create(model="m", messages=USER)
    second = client.chat.completions.create(model="m", messages=USER)
    assert first.id != second.id and first.system_fingerprint != second.system_fingerprint
    assert first.choices[0].message.content == second.choices[0].message.content


def test_drift_knobs_change_the_wire_shape(fake_anthropic, sdk_clients) -> None:
    def drop_usage(payload: Any) -> Any:
        payload.pop("usage", None)
        return payload

    fake_anthropic.script = Script(
        mutate=drop_usage,
        rename_events={"content_block_delta": "content_block_delta_v2"},
        drop_events={"ping"},
        reorder_events=lambda events: [events[0], events[-1], *events[1:-1]],
        status=202,
        content_type="text/event-stream; charset=utf-8; version=2",
        extra_headers={"x-drift": "yes"},
    )
    response = sdk_clients.raw().post(
        f"{fake_anthropic.url}/v1/messages",
        json={"model": "claude", "max_tokens": 5, "messages": USER, "stream": True},
        headers={"x-api-key": sdk.TEST_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 202
    assert response.headers["content-type"].endswith("version=2")
    assert response.headers["x-drift"] == "yes"
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "message_stop"]
    assert "ping" not in names and "content_block_delta" not in names
    renamed = [json.loads(d) for n, d in events if n == "content_block_delta_v2"]
    assert renamed and all(p["type"] == "content_block_delta_v2" for p in renamed)
    delta = next(json.loads(d) for n, d in events if n == "message_delta")
    assert "usage" not in delta


def test_paced_stream_and_disconnect(fake_ollama, sdk_clients) -> None:
    fake_ollama.queue(Script(text="a b c d", first_event_delay=0.01, event_delay=0.01))
    raw = sdk_clients.raw()
    with raw.stream("POST", f"{fake_ollama.url}/api/generate", json={"model": "m", "prompt": "x"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert "".join(line["response"] for line in lines) == "a b c d"

    fake_ollama.queue(Script(text="a b c d", disconnect_after_events=2))
    with pytest.raises(httpx.RemoteProtocolError):
        with raw.stream("POST", f"{fake_ollama.url}/api/generate", json={"model": "m", "prompt": "x"}) as response:
            for _ in response.iter_lines():
                pass


def test_fakes_answer_401_in_their_envelopes(fake_openai, fake_gemini, fake_cohere, sdk_clients) -> None:
    raw = sdk_clients.raw()
    assert raw.post(f"{fake_openai.url}/v1/chat/completions", json={}).json()["error"]["code"] == "invalid_api_key"
    gemini = raw.post(f"{fake_gemini.url}/v1beta/models/gemini-2.0-flash:generateContent", json={})
    assert gemini.status_code == 401 and gemini.json()["error"]["status"] == "UNAUTHENTICATED"
    keyed = raw.post(f"{fake_gemini.url}/v1beta/models/gemini-2.0-flash:generateContent?key={sdk.TEST_GEMINI_KEY}", json={})
    assert keyed.status_code == 200
    cohere = raw.post(f"{fake_cohere.url}/v2/chat", json={})
    assert cohere.status_code == 401 and set(cohere.json()) == {"id", "message"}


# -- the harness's guarantees ------------------------------------------------------------------------------


def test_unrouted_hosts_are_refused_not_resolved(fake_openai, proxy, sdk_clients) -> None:
    mitm = proxy(fakes=[fake_openai])
    # Eager strategy: mitmproxy connects on CONNECT, so the refusal is the CONNECT's 502.
    with pytest.raises(httpx.ProxyError, match="502"):
        sdk_clients.raw(mitm).get("https://example.com/")
    refused = [a for a in mitm.router.attempts if a.routed_to is None]
    assert [a.requested for a in refused] == [("example.com", 443)]


def test_upstream_tls_is_really_verified(fake_openai, tmp_path, sdk_clients) -> None:
    # Without the fakes' CA in ssl_verify_upstream_trusted_ca, mitmproxy rejects the fake's certificate.
    router = UpstreamRouter(routes_for(fake_openai))
    with InProcessProxy(confdir=tmp_path / "untrusting", router=router) as mitm:
        with pytest.raises(openai.APIStatusError) as raised:
            sdk_clients.openai(mitm).chat.completions.create(model="m", messages=USER)
    assert raised.value.status_code == 502
    assert not fake_openai.requests


def test_only_one_in_process_proxy_at_a_time(proxy, tmp_path) -> None:
    proxy()
    with pytest.raises(ProxyStartError, match="one Master per process"):
        InProcessProxy(confdir=tmp_path / "second").start()


def test_bad_option_fails_start_with_its_name(proxy) -> None:
    with pytest.raises(ProxyStartError, match="no_such_option"):
        proxy(options={"no_such_option": 1})
    proxy()  # the failed start released the one-master lock


def test_mitmdump_subprocess_regular_mode_and_stop(fake_openai, mitmdump, sdk_clients) -> None:
    process = mitmdump(fakes=[fake_openai])
    reply = sdk_clients.openai(process).chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert reply.choices[0].message.content == fake_openai.script.text
    assert fake_openai.requests[-1].header("host") == "api.openai.com"
    assert process.terminate() == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(process.url, timeout=2)


def test_mitmdump_refuses_unrouted_hosts_and_dies_on_kill_9(mitmdump, sdk_clients) -> None:
    process = mitmdump()
    with pytest.raises(httpx.ProxyError, match="502"):
        sdk_clients.raw(process).get("https://example.com/")
    assert "test router refused example.com:443" in process.output
    assert process.kill() == -9


def test_upstream_mode_chains_to_mitmdump(fake_cohere, proxy, mitmdump, sdk_clients) -> None:
    downstream = mitmdump(fakes=[fake_cohere])
    mitm = proxy(
        f"upstream:{downstream.url}",
        options={"ssl_verify_upstream_trusted_ca": str(downstream.ca_cert_path)},
    )
    response = sdk_clients.raw(mitm).post(
        f"{sdk.COHERE_URL}/v2/chat",
        json={"model": "command-a-03-2025", "messages": USER},
        headers={"Authorization": f"Bearer {sdk.TEST_COHERE_KEY}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"][0]["text"] == fake_cohere.script.text
    assert fake_cohere.requests[-1].header("host") == "api.cohere.com"
    only_loopback(mitm.router)


def test_shape_events_unit() -> None:
    script = Script(rename_events={"a": "b"}, drop_events={"x"})
    shaped = script.shape_events([StreamEvent("a", {"type": "a"}), StreamEvent(None, {"type": "x"}), StreamEvent(None, "[DONE]")])
    assert shaped == [StreamEvent("b", {"type": "b"}), StreamEvent(None, "[DONE]")]


ENDPOINTS = [
    ("openai", "/v1/chat/completions", {"model": "m", "messages": USER}, "choices"),
    ("openai", "/openai/deployments/gpt4/chat/completions?api-version=2024-10-21", {"messages": USER}, "choices"),
    ("openai", "/v1/responses", {"model": "m", "input": "hi"}, "output"),
    ("anthropic", "/v1/messages", {"model": "c", "max_tokens": 5, "messages": USER}, "content"),
    ("gemini", "/v1beta/models/g:generateContent", {"contents": [{"parts": [{"text": "hi"}]}]}, "candidates"),
    ("gemini", "/v1beta/models/e:embedContent", {"content": {"parts": [{"text": "hi"}]}}, "embedding"),
    (
        "gemini",
        "/v1beta1/projects/p/locations/us-central1/publishers/google/models/g:generateContent",
        {"contents": []},
        "candidates",
    ),
    ("ollama", "/api/chat", {"model": "l", "messages": USER, "stream": False}, "message"),
    ("ollama", "/api/generate", {"model": "l", "prompt": "hi", "stream": False}, "response"),
    ("ollama", "/api/embed", {"model": "l", "input": ["a", "b"]}, "embeddings"),
    ("cohere", "/v2/chat", {"model": "c", "messages": USER}, "message"),
    ("bedrock", "/model/amazon.nova-lite-v1:0/converse", {"messages": []}, "output"),
    ("bedrock", "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", {"messages": USER}, "content"),
    ("bedrock", "/model/meta.llama3-8b-instruct-v1:0/invoke", {"prompt": "hi"}, "generation"),
]

AUTH_HEADERS = {
    "openai": {"Authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"},
    "anthropic": {"x-api-key": sdk.TEST_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": sdk.TEST_GEMINI_KEY},
    "ollama": {},
    "cohere": {"Authorization": f"Bearer {sdk.TEST_COHERE_KEY}"},
    "bedrock": {"Authorization": "Bearer sk-test-bedrock-api-key"},
}


@pytest.mark.parametrize(("name", "path", "body", "field"), ENDPOINTS, ids=[f"{e[0]}:{e[1]}" for e in ENDPOINTS])
def test_every_fake_endpoint_answers_json(fake_server, sdk_clients, name, path, body, field) -> None:
    fake = fake_server(name)
    fake.script = Script(mutate=lambda payload: {**payload, "drifted": True})
    response = sdk_clients.raw().post(f"{fake.url}{path}", json=body, headers=AUTH_HEADERS[name])
    assert response.status_code == 200, response.text
    assert field in response.json() and response.json()["drifted"] is True
    assert fake.requests[-1].json == body


def test_bedrock_invoke_stream_carries_anthropic_events(fake_bedrock, sdk_clients) -> None:
    path = "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke-with-response-stream"
    response = sdk_clients.raw().post(
        f"{fake_bedrock.url}{path}",
        json={"messages": USER, "max_tokens": 5, "anthropic_version": "bedrock-2023-05-31"},
        headers=AUTH_HEADERS["bedrock"],
    )
    frames = eventstream_frames(response.content)
    assert {h[":event-type"] for h, _ in frames} == {"chunk"}
    inner = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in frames]
    assert inner[0]["type"] == "message_start" and inner[-1]["type"] == "message_stop"
    assert "amazon-bedrock-invocationMetrics" in inner[-1]
    text = "".join(e["delta"]["text"] for e in inner if e["type"] == "content_block_delta")
    assert text == fake_bedrock.script.text
