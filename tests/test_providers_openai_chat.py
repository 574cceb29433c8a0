"""OpenAI Chat Completions provider, checked against the real openai SDK.

Requests are what the SDK really sends; rendered answers are fed back to the
SDK through its transport and must parse into the expected completion.
"""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.model import Payload, Request, Response, SSEEvent
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.openai_chat import OpenAIChat
from tests.test_providers_openai_harness import SDKTransport, capture, client_answering

CHAT = OpenAIChat()

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def weather_conversation(call_id: str = "call_abc123", user_text: str = "What's the weather in Paris?") -> list:
    return [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "developer", "content": "Answer in one sentence."},
        {"role": "user", "content": user_text},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 21}'},
    ]


def send(messages: list, **kwargs: object) -> Request:
    kwargs.setdefault("model", "gpt-4o-mini")
    return capture(lambda c: c.chat.completions.create(messages=messages, **kwargs))


# -- detect ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/api/v1/chat/completions",  # OpenRouter
        "/v1beta/openai/chat/completions",  # Gemini's OpenAI endpoint
        "/openai/deployments/prod-gpt4o/chat/completions",  # Azure
    ],
)
def test_detects_chat_completions_paths(path: str) -> None:
    assert CHAT.detect("POST", "api.example.com", path)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/api/chat"), ("POST", "/v1/responses")],
)
def test_ignores_other_endpoints(method: str, path: str) -> None:
    assert not CHAT.detect(method, "api.openai.com", path)


# -- canonical request -----------------------------------------------------------


def test_canonical_tool_round_trip_conversation() -> None:
    request = send(
        [*weather_conversation(), {"role": "user", "content": "And tomorrow?"}],
        tools=[WEATHER_TOOL],
    )
    assert CHAT.detect(request.method, "127.0.0.1", "/v1/chat/completions")
    canonical = CHAT.canonical(request)

    assert canonical.family == "openai.chat"
    assert canonical.model == "gpt-4o-mini"
    assert canonical.system == "You are a weather bot.\n\nAnswer in one sentence."
    assert [m.role for m in canonical.messages] == ["user", "assistant", "tool", "user"]
    user, assistant, tool, follow_up = canonical.messages
    assert user.text == "What's the weather in Paris?"
    assert assistant.text == ""
    assert [(c.name, c.arguments, c.id) for c in assistant.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "call_abc123")
    ]
    assert [(r.tool_call_id, r.content) for r in tool.tool_results] == [("call_abc123", '{"temp_c": 21}')]
    assert follow_up.text == "And tomorrow?"
    assert [(t.name, t.description, t.parameters) for t in canonical.tools] == [
        ("get_weather", "Current weather for a city", WEATHER_TOOL["function"]["parameters"])
    ]
    assert canonical.stream is False
    assert canonical.response_format is None


def test_canonical_ends_on_tool_result_for_the_matcher() -> None:
    canonical = CHAT.canonical(send(weather_conversation(), tools=[WEATHER_TOOL]))
    match = derive_match(canonical)
    assert match["toolCallId"] == "call_abc123"
    assert match["userMessage"] == "What's the weather in Paris?"
    assert match["toolNames"] == ["get_weather"]


def test_multimodal_parts_are_ignored_for_matching() -> None:
    parts = [
        {"type": "text", "text": "Describe "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "text", "text": "this picture"},
    ]
    canonical = CHAT.canonical(send([{"role": "user", "content": parts}]))
    assert canonical.messages[0].text == "Describe this picture"


def test_stream_flag_changes_fingerprint_but_not_content() -> None:
    messages = [{"role": "user", "content": "Hello"}]
    plain = CHAT.canonical(send(messages))
    streamed = CHAT.canonical(send(messages, stream=True, stream_options={"include_usage": True}))
    assert streamed.stream is True and plain.stream is False
    assert streamed.fingerprint != plain.fingerprint
    assert streamed.content_fingerprint == plain.content_fingerprint


def test_response_format_json_schema() -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "strict": True,
            "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
    }
    canonical = CHAT.canonical(send([{"role": "user", "content": "A city?"}], response_format=schema))
    assert canonical.response_format == schema
    assert derive_match(canonical)["responseFormat"] == "json_schema"


def test_response_format_from_sdk_parse_helper() -> None:
    class City(BaseModel):
        name: str

    answer = Response(200, {"content-type": "application/json"}, Payload.json(_completion('{"name": "Oslo"}')))
    transport = SDKTransport(answer)
    parsed = transport.openai().chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "A city?"}], response_format=City
    )
    assert parsed.choices[0].message.parsed == City(name="Oslo")
    canonical = CHAT.canonical(transport.requests[0])
    assert canonical.response_format["type"] == "json_schema"
    assert canonical.response_format["json_schema"]["name"] == "City"


def test_azure_deployment_url() -> None:
    transport = SDKTransport()
    transport.azure("prod-gpt4o").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
    )
    request = transport.requests[0]
    assert "/openai/deployments/prod-gpt4o/chat/completions" in request.url
    assert "api-version=2024-10-21" in request.url
    assert CHAT.detect("POST", "127.0.0.1", "/openai/deployments/prod-gpt4o/chat/completions")
    assert CHAT.canonical(request).model == "gpt-4o"

    # Azure deployments need no model in the body: the deployment names it.
    body = dict(request.json)
    del body["model"]
    bare = Request(request.method, request.url, request.headers, Payload.json(body))
    assert CHAT.canonical(bare).model == "prod-gpt4o"


def test_openrouter_prefix() -> None:
    request = capture(
        lambda c: c.chat.completions.create(model="anthropic/claude-sonnet-4", messages=[{"role": "user", "content": "Hi"}]),
        base_url="http://127.0.0.1:9/api/v1",
    )
    assert request.url.endswith("/api/v1/chat/completions")
    assert CHAT.canonical(request).model == "anthropic/claude-sonnet-4"


# -- fingerprints ------------------------------------------------------------------


def test_same_conversation_same_fingerprint() -> None:
    first = CHAT.canonical(send(weather_conversation(), tools=[WEATHER_TOOL]))
    second = CHAT.canonical(send(weather_conversation(), tools=[WEATHER_TOOL]))
    assert first.fingerprint == second.fingerprint


def test_tool_call_ids_do_not_change_fingerprint() -> None:
    first = CHAT.canonical(send(weather_conversation("call_abc123"), tools=[WEATHER_TOOL]))
    second = CHAT.canonical(send(weather_conversation("call_zzz999"), tools=[WEATHER_TOOL]))
    assert first.fingerprint == second.fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"messages": weather_conversation(user_text="What's the weather in Rome?")},
        {"model": "gpt-4o"},
        {"tools": []},
        {"tools": [{**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "name": "get_forecast"}}]},
    ],
    ids=["user-text", "model", "no-tools", "tool-name"],
)
def test_different_request_different_fingerprint(change: dict) -> None:
    base = {"messages": weather_conversation(), "tools": [WEATHER_TOOL], "model": "gpt-4o-mini"}
    changed = {**base, **change}
    if not changed["tools"]:
        del changed["tools"]
    first = CHAT.canonical(send(**base))
    second = CHAT.canonical(send(**changed))
    assert first.fingerprint != second.fingerprint


# -- render, read back by the SDK ----------------------------------------------------


def _completion(content: str) -> dict:
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }


def _canonical_hello(stream: bool = False) -> object:
    return CHAT.canonical(send([{"role": "user", "content": "Hello"}], stream=stream))


def test_rendered_text_completion_parses_in_sdk() -> None:
    summary = Summary(text="Hi! How can I help?", finish_reason="stop", usage={"prompt_tokens": 8, "completion_tokens": 6})
    response = CHAT.render(summary, _canonical_hello(), stream=False)
    assert response.headers["content-type"] == "application/json"

    completion = client_answering(response).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "Hi! How can I help?"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (8, 6, 14)


def test_rendered_tool_calls_parse_in_sdk() -> None:
    summary = Summary(
        tool_calls=[
            ToolCall("get_weather", {"city": "Paris"}, "call_p1"),
            ToolCall("get_weather", {"city": "Oslo"}),
        ]
    )
    canonical = CHAT.canonical(send([{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]))
    response = CHAT.render(summary, canonical, stream=False)
    message = client_answering(response).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    ).choices[0]
    assert message.finish_reason == "tool_calls"
    assert message.message.content is None
    calls = message.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert calls[0].id == "call_p1"
    assert calls[1].id.startswith("call_") and len(calls[1].id) == 29


def test_rendered_stream_iterates_in_sdk() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    summary = Summary(text=text, finish_reason="stop", usage={"prompt_tokens": 9, "completion_tokens": 11})
    response = CHAT.render(summary, _canonical_hello(stream=True), stream=True, options=RenderOptions(chunk_size=7))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.events[-1].data == "[DONE]"

    chunks = list(
        client_answering(response).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in with_choices if c.choices[0].delta.content]
    assert contents == [text[i : i + 7] for i in range(0, len(text), 7)]
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 20


def test_rendered_tool_call_stream_through_sdk_stream_helper() -> None:
    summary = Summary(
        text="Let me check.",
        tool_calls=[
            ToolCall("get_weather", {"city": "Paris"}, "call_p1"),
            ToolCall("get_weather", {"city": "Oslo"}, "call_o2"),
        ],
    )
    canonical = CHAT.canonical(send([{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL], stream=True))
    response = CHAT.render(summary, canonical, stream=True, options=RenderOptions(chunk_size=4))
    client = client_answering(response)
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds and "content.delta" in kinds
    message = final.choices[0].message
    assert message.content == "Let me check."
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("call_p1", "get_weather", {"city": "Paris"}),
        ("call_o2", "get_weather", {"city": "Oslo"}),
    ]


def test_tool_only_stream_announces_first_call_with_the_role() -> None:
    summary = Summary(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, "call_p1")])
    response = CHAT.render(summary, _canonical_hello(stream=True), stream=True)
    first = response.events[0].data["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert first["tool_calls"][0]["id"] == "call_p1"


def test_render_is_deterministic() -> None:
    summary = Summary(text="Same every time")
    first = CHAT.render(summary, _canonical_hello(stream=True), stream=True)
    second = CHAT.render(summary, _canonical_hello(stream=True), stream=True)
    assert first == second
    other = CHAT.render(Summary(text="Another answer"), _canonical_hello(stream=True), stream=True)
    assert other.events[0].data["id"] != first.events[0].data["id"]


def test_foreign_finish_reasons_are_translated() -> None:
    canonical = _canonical_hello()
    reasons = {
        "end_turn": "stop",
        "max_tokens": "length",
        "tool_use": "tool_calls",
        "SAFETY": "content_filter",
    }
    for foreign, expected in reasons.items():
        response = CHAT.render(Summary(text="x", finish_reason=foreign), canonical, stream=False)
        assert response.json["choices"][0]["finish_reason"] == expected


@pytest.mark.parametrize("stream", [False, True])
def test_summarize_of_render_reproduces_summary(stream: bool) -> None:
    summary = Summary(
        text="Checking the weather for you.",
        tool_calls=[ToolCall("get_weather", {"city": "Paris", "unit": "c"}, "call_p1")],
        finish_reason="tool_calls",
        usage={"prompt_tokens": 30, "completion_tokens": 12},
        model="gpt-4o-mini-2024-07-18",
    )
    canonical = _canonical_hello(stream=stream)
    request = send([{"role": "user", "content": "Hello"}], stream=stream)
    again = CHAT.summarize(request, CHAT.render(summary, canonical, stream=stream, options=RenderOptions(chunk_size=5)))
    assert (again.text, again.tool_calls, again.finish_reason, again.model) == (
        summary.text,
        summary.tool_calls,
        summary.finish_reason,
        summary.model,
    )
    assert (again.usage["prompt_tokens"], again.usage["completion_tokens"]) == (30, 12)


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "exception"),
    [
        (400, "invalid_request_error", openai.BadRequestError),
        (404, "invalid_request_error", openai.NotFoundError),
        (429, "requests", openai.RateLimitError),
        (500, "server_error", openai.InternalServerError),
    ],
)
def test_error_envelope_raises_in_sdk(status: int, kind: str, exception: type) -> None:
    response = CHAT.error(status, "no fixture matched", type=kind)
    assert set(response.json["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(exception) as caught:
        client_answering(response).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
    assert caught.value.status_code == status
    assert caught.value.body["message"] == "no fixture matched"
    assert caught.value.body["type"] == kind


def test_summary_error_renders_as_error_response() -> None:
    summary = Summary(error={"status": 429, "type": "requests", "message": "Rate limit reached", "code": "rate_limit_exceeded"})
    response = CHAT.render(summary, _canonical_hello(), stream=True)
    assert response.status == 429
    with pytest.raises(openai.RateLimitError) as caught:
        client_answering(response).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
    assert caught.value.code == "rate_limit_exceeded"
    assert CHAT.summarize(send([{"role": "user", "content": "Hello"}]), response).error == summary.error


# -- summarize recordings in the published formats -----------------------------------------


def _chunk(delta: dict, finish_reason: str | None = None, choices: bool = True, **extra: object) -> SSEEvent:
    data: dict = {
        "id": "chatcmpl-AzX1",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_f9f4fb6dbf",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}] if choices else [],
        **extra,
    }
    return SSEEvent(data=data, t=12.5)


def test_summarize_recorded_parallel_tool_call_stream() -> None:
    events = [
        _chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ], "refusal": None}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}]}),
        _chunk({}, "tool_calls"),
        _chunk({}, choices=False, usage={"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120}),
        SSEEvent(data="[DONE]"),
    ]
    recorded = Response(200, {"content-type": "text/event-stream; charset=utf-8"}, events=events)
    summary = CHAT.summarize(send([{"role": "user", "content": "Hello"}], stream=True), recorded)
    assert [(c.name, c.arguments, c.id) for c in summary.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "call_A"),
        ("get_time", {"tz": "CET"}, "call_B"),
    ]
    assert summary.text == ""
    assert summary.finish_reason == "tool_calls"
    assert summary.usage["total_tokens"] == 120
    assert summary.model == "gpt-4o-2024-08-06"


def test_summarize_recorded_text_stream_and_json_body() -> None:
    events = [
        _chunk({"role": "assistant", "content": "", "refusal": None}),
        _chunk({"content": "Hello"}),
        _chunk({"content": " world"}),
        _chunk({}, "length"),
        SSEEvent(data="[DONE]"),
    ]
    request = send([{"role": "user", "content": "Hello"}])
    streamed = CHAT.summarize(request, Response(200, {}, events=events))
    assert (streamed.text, streamed.finish_reason, streamed.usage) == ("Hello world", "length", None)

    body = Response(200, {"content-type": "application/json"}, Payload.json(_completion("Hello world")))
    plain = CHAT.summarize(request, body)
    assert (plain.text, plain.finish_reason, plain.usage["total_tokens"]) == ("Hello world", "stop", 29)
    assert plain.model == "gpt-4o-mini-2024-07-18"


def test_summarize_recorded_errors() -> None:
    request = send([{"role": "user", "content": "Hello"}])
    rate_limited = Response(
        429,
        {"content-type": "application/json"},
        Payload.json({"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}),
    )
    assert CHAT.summarize(request, rate_limited).error == {
        "status": 429,
        "type": "requests",
        "message": "Rate limit reached for gpt-4o",
        "code": "rate_limit_exceeded",
    }
    mid_stream = Response(
        200,
        {},
        events=[
            _chunk({"role": "assistant", "content": ""}),
            SSEEvent(data={"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}}),
        ],
    )
    assert CHAT.summarize(request, mid_stream).error == {"status": 200, "type": "server_error", "message": "The server had an error"}
    gateway = Response(502, {"content-type": "text/html"}, Payload("text", "<html>Bad gateway</html>"))
    assert CHAT.summarize(request, gateway).error == {"status": 502, "type": "error", "message": "<html>Bad gateway</html>"}
