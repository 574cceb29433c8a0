"""The Gemini providers (generateContent, embeddings, Live upgrade), driven by
the real google-genai SDK.

HTTP requests are built by ``genai.Client`` (AI Studio with an API key, Vertex
AI with project/location and a ready token) and captured at its httpx
transport; rendered responses go back to the SDK through that transport (SSE
bytes encoded by :mod:`llmock_proxy.wire.sse`). The Live test lets the SDK open
its WebSocket against a local TLS server, since it always dials ``wss://``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.model import Payload, Request, Response
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.gemini import (
    GeminiEmbed,
    GeminiGenerate,
    GeminiPath,
    finish_reason_for,
    usage_metadata_for,
)
from llmock_proxy.providers.gemini_live import GeminiLive
from tests.harness.http import httpx
from tests.support.providers import (
    as_cassette_request,
    as_httpx_response,
    decode_stream,
)

MODEL = "gemini-2.5-flash"
GENERATE = GeminiGenerate()
EMBED = GeminiEmbed()
LIVE = GeminiLive()

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)


# -- plumbing: the SDK on one side, cassette models on the other ----------------


def provider_for(request: Request) -> GeminiGenerate | GeminiEmbed:
    path = httpx.URL(request.url).path
    for provider in (GENERATE, EMBED):
        if provider.detect(request.method, "", path):
            return provider
    raise AssertionError(f"no Gemini provider detects {request.method} {path}")


def render_for(request: Request, summary: Summary, chunk_size: int = 0) -> Response:
    provider = provider_for(request)
    canonical = provider.canonical(request)
    return provider.render(summary, canonical, stream=canonical.stream, options=RenderOptions(chunk_size=chunk_size))


class Upstream:
    """A fake Gemini endpoint at the SDK's transport: it keeps every request
    and answers with what ``answer`` renders for it."""

    def __init__(self, answer: Callable[[Request], Response] | None = None) -> None:
        self.requests: list[Request] = []
        self.answer = answer or (lambda req: render_for(req, Summary(text="ok", embeddings=[[0.5]])))

    def handle(self, request: httpx.Request) -> httpx.Response:
        captured = as_cassette_request(request)
        self.requests.append(captured)
        return as_httpx_response(self.answer(captured))

    def _options(self) -> types.HttpOptions:
        return types.HttpOptions(
            base_url="http://127.0.0.1:9",
            httpx_client=httpx.Client(transport=httpx.MockTransport(self.handle)),
            retry_options=types.HttpRetryOptions(attempts=1),
        )

    def studio(self) -> genai.Client:
        return genai.Client(api_key="sk-test-gemini", http_options=self._options())

    def vertex(self) -> genai.Client:
        # A token that is already there: the SDK never refreshes it (no network).
        credentials = google.oauth2.credentials.Credentials(token="test-token")
        return genai.Client(
            vertexai=True, project="test-project", location="us-central1",
            credentials=credentials, http_options=self._options(),
        )

    @property
    def last(self) -> Request:
        return self.requests[-1]


def canonical_of(call: Callable[[genai.Client], Any], *, vertex: bool = False) -> Any:
    upstream = Upstream()
    call(upstream.vertex() if vertex else upstream.studio())
    return provider_for(upstream.last).canonical(upstream.last)


def generate(client: genai.Client, contents: Any, **config: Any) -> Any:
    return client.models.generate_content(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(**config) if config else None
    )


def generate_stream(client: genai.Client, contents: Any, **config: Any) -> list[Any]:
    return list(client.models.generate_content_stream(
        model=MODEL, contents=contents, config=types.GenerateContentConfig(**config) if config else None
    ))


# -- paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "model", "method"),
    [
        ("/v1beta/models/gemini-2.5-flash:generateContent", "gemini-2.5-flash", "generateContent"),
        ("/v1/models/gemini-2.0-flash-001:streamGenerateContent", "gemini-2.0-flash-001", "streamGenerateContent"),
        ("/v1beta/tunedModels/my-tune:generateContent", "tunedModels/my-tune", "generateContent"),
        ("/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent",
         "gemini-2.5-pro", "generateContent"),
        ("/v1beta1/projects/p/locations/global/publishers/google/models/gemini-2.5-pro:streamGenerateContent",
         "gemini-2.5-pro", "streamGenerateContent"),
        ("/v1beta1/publishers/google/models/gemini-2.5-pro%3AgenerateContent", "gemini-2.5-pro", "generateContent"),
    ],
)
def test_paths_name_model_and_method(path: str, model: str, method: str):
    parsed = GeminiPath.parse(path)
    assert (parsed.model, parsed.method) == (model, method)
    assert GENERATE.detect("POST", "generativelanguage.googleapis.com", path)
    assert not EMBED.detect("POST", "generativelanguage.googleapis.com", path)


def test_detect_refuses_other_paths_and_methods():
    for method, path in [
        ("GET", "/v1beta/models/gemini-2.5-flash:generateContent"),
        ("POST", "/v1beta/models/gemini-2.5-flash:countTokens"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/projects/p/locations/l/publishers/anthropic/models/claude:rawPredict"),
    ]:
        assert not GENERATE.detect(method, "x", path)
        assert not EMBED.detect(method, "x", path)
    assert EMBED.detect("POST", "x", "/v1beta/models/text-embedding-004:embedContent")
    assert EMBED.detect("POST", "x", "/v1beta/models/gemini-embedding-001:batchEmbedContents")
    assert EMBED.detect("POST", "x", "/v1/projects/p/locations/l/publishers/google/models/text-embedding-005:predict")
    assert not EMBED.detect("POST", "x", "/v1/projects/p/locations/l/publishers/google/models/imagen-4.0:predict")


# -- canonical requests from the SDK ---------------------------------------------


def test_generate_with_system_instruction_and_response_schema():
    schema = types.Schema(type=types.Type.OBJECT, properties={"answer": types.Schema(type=types.Type.STRING)})
    req = canonical_of(lambda c: generate(
        c, "What is 2+2?", system_instruction="Answer in JSON.",
        response_mime_type="application/json", response_schema=schema,
    ))
    assert req.family == "gemini.generate"
    assert req.model == MODEL
    assert req.stream is False
    assert req.system == "Answer in JSON."
    assert [(m.role, m.text) for m in req.messages] == [("user", "What is 2+2?")]
    assert req.response_format == {
        "type": "json_schema",
        "schema": {"type": "OBJECT", "properties": {"answer": {"type": "STRING"}}},
    }
    json_mode = canonical_of(lambda c: generate(c, "x", response_mime_type="application/json"))
    assert json_mode.response_format == {"type": "json_object"}
    json_schema = canonical_of(lambda c: generate(
        c, "x", response_mime_type="application/json", response_json_schema={"type": "object"}))
    assert json_schema.response_format == {"type": "json_schema", "schema": {"type": "object"}}


def test_stream_is_the_method_not_a_flag():
    streamed = canonical_of(lambda c: generate_stream(c, "hi"))
    plain = canonical_of(lambda c: generate(c, "hi"))
    assert streamed.stream is True and plain.stream is False
    assert streamed.fingerprint != plain.fingerprint
    assert streamed.content_fingerprint == plain.content_fingerprint


def test_multi_turn_roles():
    req = canonical_of(lambda c: generate(c, [
        types.Content(role="user", parts=[types.Part(text="Hi")]),
        types.Content(role="model", parts=[types.Part(text="Hello!"), types.Part(text="What now?")]),
        types.Content(role="user", parts=[types.Part(text="Tell a joke")]),
    ]))
    assert [(m.role, m.text) for m in req.messages] == [
        ("user", "Hi"), ("assistant", "Hello!What now?"), ("user", "Tell a joke"),
    ]
    assert req.last_user_message == "Tell a joke"


def test_tools_are_function_declarations_and_builtins():
    req = canonical_of(lambda c: generate(
        c, "weather?", tools=[types.Tool(function_declarations=[WEATHER]), types.Tool(google_search=types.GoogleSearch())],
    ))
    # The SDK sends built-in tools first; the canonical request keeps wire order.
    assert sorted(req.tool_names) == ["get_weather", "googleSearch"]
    [weather] = [t for t in req.tools if t.name == "get_weather"]
    assert weather.description == "Current weather for a city"
    assert weather.parameters == {
        "type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"],
    }


def function_round_trip(call_id: str | None, *, result: dict[str, Any] | None = None,
                        vertex: bool = False) -> tuple[Any, Any]:
    """First turn: the model calls a function (rendered by us, parsed by the
    SDK). Second turn: the SDK's own content goes back with the response."""
    first_summary = Summary(
        tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}, id=call_id)],
        finish_reason="STOP",
        usage={"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
    )
    upstream = Upstream(lambda req: render_for(req, first_summary))
    client = upstream.vertex() if vertex else upstream.studio()
    question = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
    tools = [types.Tool(function_declarations=[WEATHER])]
    reply = generate(client, [question], tools=tools)
    first = GENERATE.canonical(upstream.last)

    [call] = reply.function_calls
    assert (call.name, call.args, call.id) == ("get_weather", {"city": "Paris"}, call_id)
    response = types.Part.from_function_response(name=call.name, response=result or {"result": "18C, sunny"})
    response.function_response.id = call.id
    generate(client, [question, reply.candidates[0].content, types.Content(role="user", parts=[response])],
             tools=tools)
    return first, GENERATE.canonical(upstream.last)


def test_function_call_and_function_response_round_trip():
    _, second = function_round_trip("call-1")
    assert [m.role for m in second.messages] == ["user", "assistant", "tool"]
    assert [(c.name, c.arguments, c.id) for c in second.messages[1].tool_calls] == [
        ("get_weather", {"city": "Paris"}, "call-1")
    ]
    result = second.last_tool_result
    assert (result.content, result.name, result.tool_call_id) == ({"result": "18C, sunny"}, "get_weather", "call-1")


def test_vertex_paths_and_the_same_canonical_as_ai_studio():
    upstream = Upstream()
    generate(upstream.vertex(), "hello", system_instruction="be brief")
    assert "/v1beta1/projects/test-project/locations/us-central1/publishers/google/models/" in upstream.last.url
    assert upstream.last.headers["authorization"] == "Bearer test-token"
    vertex = GENERATE.canonical(upstream.last)
    studio = canonical_of(lambda c: generate(c, "hello", system_instruction="be brief"))
    assert vertex.model == MODEL
    assert vertex.fingerprint == studio.fingerprint
    _, vertex_tools = function_round_trip(None, vertex=True)
    _, studio_tools = function_round_trip(None)
    assert vertex_tools.fingerprint == studio_tools.fingerprint


# -- fingerprints ------------------------------------------------------------------


def test_same_conversation_twice_has_the_same_fingerprint():
    a = canonical_of(lambda c: generate(c, "hi", system_instruction="s"))
    b = canonical_of(lambda c: generate(c, "hi", system_instruction="s"))
    assert a.fingerprint == b.fingerprint


def test_function_call_ids_do_not_change_the_fingerprint():
    _, one = function_round_trip("call-first-run")
    _, two = function_round_trip("call-second-run")
    assert one.fingerprint == two.fingerprint


def test_different_text_result_or_model_changes_the_fingerprint():
    base = canonical_of(lambda c: generate(c, "hi"))
    other_text = canonical_of(lambda c: generate(c, "hello"))
    other_model = canonical_of(lambda c: c.models.generate_content(model="gemini-2.5-pro", contents="hi"))
    assert len({base.fingerprint, other_text.fingerprint, other_model.fingerprint}) == 3
    _, sunny = function_round_trip("c", result={"result": "sunny"})
    _, rainy = function_round_trip("c", result={"result": "rainy"})
    assert sunny.fingerprint != rainy.fingerprint


# -- rendered responses, read by the SDK --------------------------------------------

USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 14, "totalTokenCount": 23}
TEXT = Summary(text="The sky is blue because of Rayleigh scattering.", finish_reason="STOP",
               usage=USAGE, model=MODEL)
CALLS = Summary(
    tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}),
                ToolCall(name="get_weather", arguments={"city": "Rome"})],
    finish_reason="STOP", usage=USAGE, model=MODEL,
)


@pytest.mark.parametrize("vertex", [False, True])
def test_rendered_json_parses_in_the_sdk(vertex: bool):
    upstream = Upstream(lambda req: render_for(req, TEXT))
    client = upstream.vertex() if vertex else upstream.studio()
    reply = generate(client, "why is the sky blue?")
    assert reply.text == TEXT.text
    assert reply.candidates[0].finish_reason == types.FinishReason.STOP
    assert reply.usage_metadata.prompt_token_count == 9
    assert reply.usage_metadata.candidates_token_count == 14
    assert reply.model_version == MODEL
    calls = generate(Upstream(lambda req: render_for(req, CALLS)).studio(), "weather?")
    assert [(c.name, c.args) for c in calls.function_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"}),
    ]


@pytest.mark.parametrize("vertex", [False, True])
def test_rendered_stream_parses_in_the_sdk(vertex: bool):
    upstream = Upstream(lambda req: render_for(req, TEXT, chunk_size=6))
    client = upstream.vertex() if vertex else upstream.studio()
    chunks = generate_stream(client, "why is the sky blue?")
    assert "alt=sse" in upstream.last.url
    assert len(chunks) == -(-len(TEXT.text) // 6)
    assert "".join(c.text for c in chunks) == TEXT.text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count == 23
    assert all(c.candidates[0].finish_reason is None for c in chunks[:-1])

    mixed = Summary(text="Checking both.", tool_calls=CALLS.tool_calls, reasoning="Two cities.", usage=USAGE)
    chunks = generate_stream(Upstream(lambda req: render_for(req, mixed, chunk_size=5)).studio(), "weather?")
    assert "".join(c.text or "" for c in chunks) == "Checking both."
    calls = [c for chunk in chunks for c in chunk.function_calls or []]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    thoughts = "".join(p.text for c in chunks for p in c.candidates[0].content.parts if p.thought)
    assert thoughts == "Two cities."


def test_render_translates_summaries_recorded_in_other_families():
    foreign = Summary(text="cut", finish_reason="length", usage={"input_tokens": 3, "output_tokens": 1})
    reply = generate(Upstream(lambda req: render_for(req, foreign)).studio(), "x")
    assert reply.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert (reply.usage_metadata.prompt_token_count, reply.usage_metadata.total_token_count) == (3, 4)


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("STOP", "STOP"), ("SAFETY", "SAFETY"), ("end_turn", "STOP"), ("tool_calls", "STOP"),
     ("max_tokens", "MAX_TOKENS"), ("length", "MAX_TOKENS"), ("COMPLETE", "STOP"), ("refusal", "SAFETY"),
     (None, "STOP")],
)
def test_finish_reason_from_any_family(finish_reason: str | None, expected: str):
    assert finish_reason_for(Summary(finish_reason=finish_reason)) == expected


def test_usage_metadata_from_any_family():
    assert usage_metadata_for(USAGE) == USAGE
    expected = {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}
    assert usage_metadata_for({"input_tokens": 5, "output_tokens": 2}) == expected
    assert usage_metadata_for({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}) == expected
    assert usage_metadata_for({"prompt_eval_count": 5, "eval_count": 2}) == expected
    assert usage_metadata_for(None) == {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0}


@pytest.mark.parametrize("stream", [False, True])
def test_summarize_of_render_gives_the_summary_back(stream: bool):
    request = Request("POST", f"https://generativelanguage.googleapis.com/v1beta/models/{MODEL}:"
                      + ("streamGenerateContent?alt=sse" if stream else "generateContent"),
                      body=Payload.json({"contents": [{"role": "user", "parts": [{"text": "x"}]}]}))
    canonical = GENERATE.canonical(request)
    for summary in (
        TEXT,
        CALLS,
        Summary(text="a", reasoning="thinking it over", finish_reason="MAX_TOKENS", usage=USAGE, model=MODEL),
        Summary(tool_calls=[ToolCall(name="f", arguments={"n": [1, 2]}, id="fc-1")], finish_reason="STOP",
                usage=USAGE, model=MODEL),
    ):
        rendered = GENERATE.render(summary, canonical, stream=stream, options=RenderOptions(chunk_size=3))
        assert rendered.is_stream is stream
        assert GENERATE.summarize(request, rendered) == summary


# -- embeddings -----------------------------------------------------------------------


def test_embed_content_on_ai_studio_is_a_batch():
    vectors = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
    upstream = Upstream(lambda req: render_for(req, Summary(embeddings=vectors)))
    reply = upstream.studio().models.embed_content(
        model="gemini-embedding-001", contents=["first", "second"],
        config=types.EmbedContentConfig(output_dimensionality=3),
    )
    assert [e.values for e in reply.embeddings] == vectors
    req = EMBED.canonical(upstream.last)
    assert req.family == "gemini.embed"
    assert req.model == "gemini-embedding-001"
    assert req.embedding_input == ["first", "second"]
    assert req.extra == {"method": "batchEmbedContents", "options": {"outputDimensionality": 3}}
    assert EMBED.summarize(upstream.last, render_for(upstream.last, Summary(embeddings=vectors))).embeddings == vectors


def test_embed_on_vertex_predict_and_embed_content():
    vectors = [[1.0, 0.0], [0.0, 1.0]]
    upstream = Upstream(lambda req: render_for(req, Summary(embeddings=vectors)))
    reply = upstream.vertex().models.embed_content(model="text-embedding-005", contents=["a", "b"])
    assert upstream.last.url.endswith("/publishers/google/models/text-embedding-005:predict")
    assert [e.values for e in reply.embeddings] == vectors
    assert EMBED.canonical(upstream.last).embedding_input == ["a", "b"]

    single = Upstream(lambda req: render_for(req, Summary(embeddings=[[0.25, 0.75]])))
    reply = single.vertex().models.embed_content(model="gemini-embedding-2-preview", contents="only one")
    assert single.last.url.endswith(":embedContent")
    assert [e.values for e in reply.embeddings] == [[0.25, 0.75]]
    req = EMBED.canonical(single.last)
    assert (req.embedding_input, req.extra["method"]) == (["only one"], "embedContent")


def test_embed_fingerprints():
    def embed(text: str, model: str = "gemini-embedding-001") -> Any:
        return canonical_of(lambda c: c.models.embed_content(model=model, contents=[text]))
    assert embed("a").fingerprint == embed("a").fingerprint
    assert len({embed("a").fingerprint, embed("b").fingerprint, embed("a", "text-embedding-004").fingerprint}) == 3


def test_summarize_recorded_embedding_bodies():
    req = Request("POST", "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:embedContent",
                  body=Payload.json({"content": {"parts": [{"text": "hello"}]}}))
    assert EMBED.canonical(req).embedding_input == ["hello"]
    single = Response(200, body=Payload.json({"embedding": {"values": [0.013, -0.008]}}))
    assert EMBED.summarize(req, single).embeddings == [[0.013, -0.008]]
    predict = Response(200, body=Payload.json({"predictions": [
        {"embeddings": {"values": [0.5], "statistics": {"truncated": False, "token_count": 1}}}]}))
    assert EMBED.summarize(req, predict).embeddings == [[0.5]]
    error = Response(400, body=Payload.json({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}))
    assert EMBED.summarize(req, error).error == {"status": 400, "type": "INVALID_ARGUMENT", "message": "bad"}


# -- recorded responses in the published formats ----------------------------------------

RECORDED_SSE = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"}}],'
    b'"usageMetadata": {"promptTokenCount": 7,"totalTokenCount": 7},"modelVersion": "gemini-2.5-flash",'
    b'"responseId": "kWbcaKe4MpS1nvgP3dO9-A0"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " sky is blue because of Rayleigh scattering."}],'
    b'"role": "model"}}],"usageMetadata": {"promptTokenCount": 7,"totalTokenCount": 7},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "kWbcaKe4MpS1nvgP3dO9-A0"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP"}],'
    b'"usageMetadata": {"promptTokenCount": 7,"candidatesTokenCount": 10,"totalTokenCount": 41,'
    b'"promptTokensDetails": [{"modality": "TEXT","tokenCount": 7}],"thoughtsTokenCount": 24},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "kWbcaKe4MpS1nvgP3dO9-A0"}\r\n\r\n'
)


def recorded_request(method: str = "generateContent") -> Request:
    return Request("POST", f"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:{method}",
                   body=Payload.json({"contents": [{"role": "user", "parts": [{"text": "Why is the sky blue?"}]}]}))


def test_summarize_a_recorded_stream():
    summary = GENERATE.summarize(recorded_request("streamGenerateContent"), Response(200, events=decode_stream("sse", RECORDED_SSE)))
    assert summary.text == "The sky is blue because of Rayleigh scattering."
    assert summary.finish_reason == "STOP"
    assert summary.usage["candidatesTokenCount"] == 10 and summary.usage["totalTokenCount"] == 41
    assert summary.model == "gemini-2.5-flash"


def test_summarize_a_json_array_stream_and_a_function_call_body():
    chunks = [event.data for event in decode_stream("sse", RECORDED_SSE)]
    as_array = GENERATE.summarize(recorded_request("streamGenerateContent"), Response(200, body=Payload.json(chunks)))
    assert as_array.text == "The sky is blue because of Rayleigh scattering."
    body = {
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "I should look this up.", "thought": True},
                {"functionCall": {"name": "find_theaters", "args": {"location": "Mountain View, CA", "movie": "Barbie"}},
                 "thoughtSignature": "CiQB0e2Kb1yX"},
            ]},
            "finishReason": "STOP", "index": 0, "safetyRatings": [],
        }],
        "usageMetadata": {"promptTokenCount": 74, "candidatesTokenCount": 22, "totalTokenCount": 96},
        "modelVersion": "gemini-2.5-flash",
    }
    summary = GENERATE.summarize(recorded_request(), Response(200, body=Payload.json(body)))
    assert summary.text == ""
    assert summary.reasoning == "I should look this up."
    assert summary.tool_calls == [ToolCall(name="find_theaters", arguments={"location": "Mountain View, CA",
                                                                            "movie": "Barbie"})]


def test_summarize_recorded_errors():
    body = {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                      "status": "RESOURCE_EXHAUSTED"}}
    summary = GENERATE.summarize(recorded_request(), Response(429, body=Payload.json(body)))
    assert summary.error == {"status": 429, "type": "RESOURCE_EXHAUSTED",
                             "message": "Resource has been exhausted (e.g. check quota)."}
    in_stream = decode_stream("sse", RECORDED_SSE[:200].rsplit(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + b'data: {"error": '
                           + json.dumps(body["error"]).encode() + b"}\r\n\r\n")
    summary = GENERATE.summarize(recorded_request("streamGenerateContent"), Response(200, events=in_stream))
    assert summary.error["type"] == "RESOURCE_EXHAUSTED"


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "exception"),
    [
        (400, "INVALID_ARGUMENT", genai_errors.ClientError),
        (403, "PERMISSION_DENIED", genai_errors.ClientError),
        (404, "NOT_FOUND", genai_errors.ClientError),
        (429, "RESOURCE_EXHAUSTED", genai_errors.ClientError),
        (503, "UNAVAILABLE", genai_errors.ServerError),
    ],
)
def test_error_envelope_is_what_the_sdk_expects(status: int, name: str, exception: type):
    response = GENERATE.error(status, "no fixture matched")
    assert response.json == {"error": {"code": status, "message": "no fixture matched", "status": name}}
    with pytest.raises(exception) as caught:
        generate(Upstream(lambda req: response).studio(), "hi")
    assert (caught.value.code, caught.value.status, caught.value.message) == (status, name, "no fixture matched")
    assert EMBED.error(status, "m").json == GENERATE.error(status, "m").json


def test_an_explicit_google_status_is_kept_and_error_summaries_render_as_errors():
    assert GENERATE.error(400, "m", type="FAILED_PRECONDITION").json["error"]["status"] == "FAILED_PRECONDITION"
    summary = Summary(error={"status": 404, "type": "NOT_FOUND", "message": "models/x is not found"})
    rendered = GENERATE.render(summary, GENERATE.canonical(recorded_request()), stream=True)
    assert rendered.status == 404 and rendered.wire_form == "body"
    assert GENERATE.summarize(recorded_request(), rendered).error == summary.error


# -- Live: the WebSocket upgrade ------------------------------------------------------------


def test_live_paths_are_detected():
    for path in (
        # google-genai 3.x opens v1 by default, 2.x v1beta.
        "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent",
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained",
        "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent",
        "/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent",
    ):
        assert LIVE.detect("GET", "generativelanguage.googleapis.com", path), path
    assert not LIVE.detect("GET", "x", "/v1beta/models/gemini-2.5-flash:generateContent")
    assert not LIVE.detect("GET", "x", "/v1/realtime")
    assert not LIVE.detect("GET", "x", "/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent")


def test_live_canonical_render_and_summary():
    req = LIVE.canonical(Request("GET", "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage"
                                        ".v1beta.GenerativeService.BidiGenerateContent"))
    assert (req.family, req.model, req.stream) == ("gemini.live", None, True)
    assert LIVE.stream_form == "websocket"
    # Rendering and summarizing WebSocket transcripts: see tests/test_providers_websocket.py.
    rendered = LIVE.render(Summary(text="x"), req, stream=True)
    assert rendered.status == 101 and rendered.websocket is not None
    assert LIVE.summarize(Request("GET", "/ws/x"), rendered).text == "x"
    assert LIVE.error(403, "denied").json["error"]["status"] == "PERMISSION_DENIED"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


@pytest.mark.parametrize("vertex", [False, True])
async def test_the_sdk_live_upgrade_is_detected(tmp_path: Path, vertex: bool):
    """The SDK dials wss:// itself; a local TLS server it trusts sees the upgrade."""
    from websockets.asyncio.server import ServerConnection, serve

    cert_file, key_file = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    seen: dict[str, Any] = {}

    async def session(ws: ServerConnection) -> None:
        seen["path"] = ws.request.path
        seen["setup"] = json.loads(await ws.recv())
        await ws.send(json.dumps({"setupComplete": {}}))
        await ws.wait_closed()

    async with serve(session, "127.0.0.1", 0, ssl=server_ctx) as server:
        port = server.sockets[0].getsockname()[1]
        options = types.HttpOptions(
            base_url=f"https://127.0.0.1:{port}",
            async_client_args={"ssl": ssl.create_default_context(cafile=str(cert_file))},
        )
        if vertex:
            client = genai.Client(vertexai=True, project="test-project", location="us-central1",
                                  credentials=google.oauth2.credentials.Credentials(token="test-token"),
                                  http_options=options)
        else:
            client = genai.Client(api_key="sk-test-gemini", http_options=options)
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview") as live:
            assert live is not None

    path = seen["path"]
    assert LIVE.detect("GET", "127.0.0.1", path.split("?", 1)[0]), path
    assert not GENERATE.detect("GET", "127.0.0.1", path.split("?", 1)[0])
    assert "gemini-live-2.5-flash-preview" in seen["setup"]["setup"]["model"]
    req = LIVE.canonical(Request("GET", f"https://127.0.0.1:{port}{path}"))
    assert (req.family, req.model, req.stream) == ("gemini.live", None, True)
