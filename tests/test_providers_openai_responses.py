"""OpenAI Responses API provider, checked against the real openai SDK."""

from __future__ import annotations

import json

import openai
import pytest

from llmock_proxy.canonical import CanonicalRequest, Summary, ToolCall
from llmock_proxy.cassette.model import Payload, Request, Response, SSEEvent
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.openai_responses import OpenAIResponses
from tests.test_providers_openai_harness import capture, client_answering

RESPONSES = OpenAIResponses()

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def send(**kwargs: object) -> Request:
    kwargs.setdefault("model", "gpt-4.1-mini")
    return capture(lambda c: c.responses.create(**kwargs))


def tool_round_trip_input(call_id: str = "call_w1", user_text: str = "Weather in Paris?") -> list:
    return [
        {"role": "developer", "content": "Use tools when unsure."},
        {"role": "user", "content": [{"type": "input_text", "text": user_text}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
        },
        {"type": "function_call", "name": "get_weather", "arguments": '{"city":"Paris"}', "call_id": call_id},
        {"type": "function_call_output", "call_id": call_id, "output": '{"temp_c": 21}'},
    ]


# -- detect ------------------------------------------------------------------------------


def test_detects_responses_posts_only() -> None:
    assert RESPONSES.detect("POST", "api.openai.com", "/v1/responses")
    assert RESPONSES.detect("POST", "example.openai.azure.com", "/openai/v1/responses")
    assert not RESPONSES.detect("GET", "api.openai.com", "/v1/responses/resp_123")
    assert not RESPONSES.detect("POST", "api.openai.com", "/v1/responses/resp_123/cancel")
    assert not RESPONSES.detect("POST", "api.openai.com", "/v1/chat/completions")


# -- canonical request -----------------------------------------------------------------------


def test_canonical_string_input_with_instructions() -> None:
    request = send(instructions="Talk like a pirate.", input="Are semicolons optional in JavaScript?")
    assert request.url.endswith("/v1/responses")
    canonical = RESPONSES.canonical(request)
    assert canonical.family == "openai.responses"
    assert canonical.model == "gpt-4.1-mini"
    assert canonical.system == "Talk like a pirate."
    assert [(m.role, m.text) for m in canonical.messages] == [("user", "Are semicolons optional in JavaScript?")]
    assert canonical.stream is False


def test_canonical_list_input_with_function_call_round_trip() -> None:
    canonical = RESPONSES.canonical(
        send(instructions="You are a weather bot.", input=tool_round_trip_input(), tools=[WEATHER_TOOL])
    )
    assert canonical.system == "You are a weather bot.\n\nUse tools when unsure."
    assert [m.role for m in canonical.messages] == ["user", "assistant", "tool"]
    user, assistant, tool = canonical.messages
    assert user.text == "Weather in Paris?"
    assert assistant.text == "Let me look."
    assert [(c.name, c.arguments, c.id) for c in assistant.tool_calls] == [("get_weather", {"city": "Paris"}, "call_w1")]
    assert [(r.tool_call_id, r.content) for r in tool.tool_results] == [("call_w1", '{"temp_c": 21}')]
    assert [(t.name, t.description, t.parameters) for t in canonical.tools] == [
        ("get_weather", "Current weather for a city", WEATHER_TOOL["parameters"])
    ]
    match = derive_match(canonical)
    assert match["toolCallId"] == "call_w1" and match["toolNames"] == ["get_weather"]


def test_canonical_ignores_images_and_reasoning_items() -> None:
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in "},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                {"type": "input_text", "text": "this image?"},
            ],
        },
        {"type": "reasoning", "id": "rs_abc", "summary": [], "encrypted_content": "gAAAA"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat.", "annotations": []}]},
        {"role": "user", "content": "Sure?"},
    ]
    canonical = RESPONSES.canonical(send(input=items))
    assert [(m.role, m.text) for m in canonical.messages] == [
        ("user", "What is in this image?"),
        ("assistant", "A cat."),
        ("user", "Sure?"),
    ]


def test_canonical_text_format_and_stream_flag() -> None:
    fmt = {
        "type": "json_schema",
        "name": "city",
        "strict": True,
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False},
    }
    canonical = RESPONSES.canonical(send(input="A city?", text={"format": fmt}, stream=True))
    assert canonical.response_format == fmt
    assert canonical.stream is True
    assert derive_match(canonical)["responseFormat"] == "json_schema"
    # The default format says nothing.
    assert RESPONSES.canonical(send(input="A city?", text={"format": {"type": "text"}})).response_format is None


def test_built_in_tools_count_as_tools() -> None:
    canonical = RESPONSES.canonical(send(input="News?", tools=[{"type": "web_search"}, WEATHER_TOOL]))
    assert canonical.tool_names == ["web_search", "get_weather"]


# -- fingerprints ----------------------------------------------------------------------------


def test_fingerprints() -> None:
    def fingerprint(**changes: object) -> str:
        kwargs = {"instructions": "Weather bot.", "input": tool_round_trip_input(), "tools": [WEATHER_TOOL], **changes}
        return RESPONSES.canonical(send(**kwargs)).fingerprint

    base = fingerprint()
    assert fingerprint() == base
    assert fingerprint(input=tool_round_trip_input(call_id="call_other")) == base
    assert fingerprint(input=tool_round_trip_input(user_text="Weather in Rome?")) != base
    assert fingerprint(model="gpt-4.1") != base
    assert fingerprint(tools=[]) != base
    assert fingerprint(instructions="Other bot.") != base
    # Continuing a stored conversation is a different question, whatever its id.
    assert fingerprint(previous_response_id="resp_1") != base
    assert fingerprint(previous_response_id="resp_1") == fingerprint(previous_response_id="resp_2")


# -- render, read back by the SDK ---------------------------------------------------------------


def canonical_for(**kwargs: object) -> CanonicalRequest:
    kwargs.setdefault("input", "Hello")
    return RESPONSES.canonical(send(**kwargs))


def test_rendered_response_parses_in_sdk() -> None:
    summary = Summary(text="Ahoy! Semicolons be optional.", usage={"input_tokens": 12, "output_tokens": 8})
    response = RESPONSES.render(summary, canonical_for(instructions="Talk like a pirate."), stream=False)
    result = client_answering(response).responses.create(model="gpt-4.1-mini", input="Hello")
    assert result.object == "response"
    assert result.id.startswith("resp_")
    assert result.status == "completed"
    assert result.output_text == "Ahoy! Semicolons be optional."
    assert result.instructions == "Talk like a pirate."
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.total_tokens) == (12, 8, 20)


def test_rendered_function_calls_parse_in_sdk() -> None:
    summary = Summary(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, "call_p1"), ToolCall("get_weather", {"city": "Oslo"})])
    response = RESPONSES.render(summary, canonical_for(tools=[WEATHER_TOOL]), stream=False)
    result = client_answering(response).responses.create(model="gpt-4.1-mini", input="Hello", tools=[WEATHER_TOOL])
    calls = [item for item in result.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    assert calls[0].call_id == "call_p1" and calls[1].call_id.startswith("call_")
    assert all(c.id.startswith("fc_") for c in calls)
    assert result.tools[0].name == "get_weather"


def test_rendered_stream_events_in_sdk() -> None:
    text = "Streaming is fun to watch."
    summary = Summary(text=text, usage={"input_tokens": 5, "output_tokens": 6})
    response = RESPONSES.render(summary, canonical_for(stream=True), stream=True, options=RenderOptions(chunk_size=6))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(event.event == event.data["type"] for event in response.events)

    events = list(client_answering(response).responses.create(model="gpt-4.1-mini", input="Hello", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == [text[i : i + 6] for i in range(0, len(text), 6)]
    assert [e.text for e in events if e.type == "response.output_text.done"] == [text]
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    final = events[-1].response
    assert final.output_text == text and final.usage.total_tokens == 11
    assert final.id == events[0].response.id


def test_rendered_stream_through_sdk_stream_helper() -> None:
    summary = Summary(
        text="Checking.",
        reasoning="The user wants weather; call the tool.",
        tool_calls=[ToolCall("get_weather", {"city": "Paris"}, "call_p1")],
    )
    response = RESPONSES.render(summary, canonical_for(tools=[WEATHER_TOOL], stream=True), stream=True, options=RenderOptions(chunk_size=4))
    client = client_answering(response)
    with client.responses.stream(model="gpt-4.1-mini", input="Hello", tools=[WEATHER_TOOL]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.reasoning_summary_text.delta" in kinds
    assert final.output_text == "Checking."
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    call = final.output[2]
    assert (call.name, call.call_id, json.loads(call.arguments)) == ("get_weather", "call_p1", {"city": "Paris"})
    assert final.output[0].summary[0].text == "The user wants weather; call the tool."


def test_length_limit_renders_incomplete_response() -> None:
    summary = Summary(text="This answer was cut", finish_reason="max_tokens")
    plain = client_answering(RESPONSES.render(summary, canonical_for(), stream=False)).responses.create(
        model="gpt-4.1-mini", input="Hello"
    )
    assert plain.status == "incomplete" and plain.incomplete_details.reason == "max_output_tokens"
    streamed = RESPONSES.render(summary, canonical_for(stream=True), stream=True)
    events = list(client_answering(streamed).responses.create(model="gpt-4.1-mini", input="Hello", stream=True))
    assert events[-1].type == "response.incomplete"
    assert RESPONSES.summarize(send(input="Hello"), streamed).finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_summarize_of_render_reproduces_summary(stream: bool) -> None:
    summary = Summary(
        text="It is sunny.",
        reasoning="Need the weather.",
        tool_calls=[ToolCall("get_weather", {"city": "Paris"}, "call_p1")],
        finish_reason="tool_calls",
        usage={"input_tokens": 20, "output_tokens": 9},
        model="gpt-4.1-mini-2025-04-14",
    )
    canonical = canonical_for(stream=stream)
    rendered = RESPONSES.render(summary, canonical, stream=stream, options=RenderOptions(chunk_size=3))
    again = RESPONSES.summarize(send(input="Hello", stream=stream), rendered)
    assert (again.text, again.reasoning, again.tool_calls, again.finish_reason, again.model) == (
        summary.text,
        summary.reasoning,
        summary.tool_calls,
        summary.finish_reason,
        summary.model,
    )
    assert (again.usage["input_tokens"], again.usage["output_tokens"]) == (20, 9)


def test_error_envelope_raises_in_sdk() -> None:
    response = RESPONSES.error(404, "No recorded response matches", type="invalid_request_error")
    with pytest.raises(openai.NotFoundError) as caught:
        client_answering(response).responses.create(model="gpt-4.1-mini", input="Hello")
    assert caught.value.body["message"] == "No recorded response matches"


# -- summarize recordings in the published formats ------------------------------------------------


def _ev(kind: str, **fields: object) -> SSEEvent:
    return SSEEvent(event=kind, data={"type": kind, **fields})


def _recorded_stream() -> list[SSEEvent]:
    created = {"id": "resp_67c9fdcecf488190bdd9a0a5", "object": "response", "created_at": 1741290958, "status": "in_progress",
               "model": "gpt-4.1-2025-04-14", "output": [], "usage": None, "tools": [], "parallel_tool_calls": True, "tool_choice": "auto"}
    message = {"id": "msg_67c9fdcf37fc8190ba82116e", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    call = {"id": "fc_12345xyz", "type": "function_call", "status": "in_progress", "arguments": "", "call_id": "call_12345xyz", "name": "get_weather"}
    return [
        _ev("response.created", sequence_number=0, response=created),
        _ev("response.in_progress", sequence_number=1, response=created),
        _ev("response.output_item.added", sequence_number=2, output_index=0, item=message),
        _ev("response.content_part.added", sequence_number=3, item_id=message["id"], output_index=0, content_index=0,
            part={"type": "output_text", "text": "", "annotations": []}),
        _ev("response.output_text.delta", sequence_number=4, item_id=message["id"], output_index=0, content_index=0, delta="Hi", logprobs=[]),
        _ev("response.output_text.delta", sequence_number=5, item_id=message["id"], output_index=0, content_index=0, delta=" there", logprobs=[]),
        _ev("response.output_text.done", sequence_number=6, item_id=message["id"], output_index=0, content_index=0, text="Hi there", logprobs=[]),
        _ev("response.output_item.done", sequence_number=7, output_index=0,
            item={**message, "status": "completed", "content": [{"type": "output_text", "text": "Hi there", "annotations": []}]}),
        _ev("response.output_item.added", sequence_number=8, output_index=1, item=call),
        _ev("response.function_call_arguments.delta", sequence_number=9, item_id="fc_12345xyz", output_index=1, delta='{"city":'),
        _ev("response.function_call_arguments.delta", sequence_number=10, item_id="fc_12345xyz", output_index=1, delta='"Paris"}'),
        _ev("response.function_call_arguments.done", sequence_number=11, item_id="fc_12345xyz", output_index=1, arguments='{"city":"Paris"}'),
        _ev("response.output_item.done", sequence_number=12, output_index=1, item={**call, "status": "completed", "arguments": '{"city":"Paris"}'}),
        _ev("response.completed", sequence_number=13, response={
            **created, "status": "completed",
            "output": [
                {**message, "status": "completed", "content": [{"type": "output_text", "text": "Hi there", "annotations": []}]},
                {**call, "status": "completed", "arguments": '{"city":"Paris"}'},
            ],
            "usage": {"input_tokens": 37, "output_tokens": 11, "total_tokens": 48},
        }),
    ]


def test_summarize_recorded_stream() -> None:
    summary = RESPONSES.summarize(send(input="Hello", stream=True), Response(200, {}, events=_recorded_stream()))
    assert summary.text == "Hi there"
    assert summary.tool_calls == [ToolCall("get_weather", {"city": "Paris"}, "call_12345xyz")]
    assert summary.finish_reason == "tool_calls"
    assert summary.usage["total_tokens"] == 48
    assert summary.model == "gpt-4.1-2025-04-14"


def test_summarize_stream_cut_before_completion() -> None:
    cut = _recorded_stream()[:10]  # stops inside the function-call arguments
    summary = RESPONSES.summarize(send(input="Hello", stream=True), Response(200, {}, events=cut))
    assert summary.text == "Hi there"
    assert summary.tool_calls == [ToolCall("get_weather", '{"city":', "call_12345xyz")]
    assert summary.finish_reason is None
    assert summary.model == "gpt-4.1-2025-04-14"


def test_summarize_recorded_failures() -> None:
    request = send(input="Hello")
    bad = Response(400, {"content-type": "application/json"}, Payload.json(
        {"error": {"message": "Invalid type for 'input'", "type": "invalid_request_error", "param": "input", "code": "invalid_type"}}
    ))
    assert RESPONSES.summarize(request, bad).error == {
        "status": 400, "type": "invalid_request_error", "message": "Invalid type for 'input'", "code": "invalid_type", "param": "input",
    }
    failed = _recorded_stream()[:2] + [_ev("response.failed", sequence_number=2, response={
        "id": "resp_1", "object": "response", "status": "failed", "model": "gpt-4.1", "output": [],
        "error": {"code": "server_error", "message": "The model failed to generate a response."},
    })]
    assert RESPONSES.summarize(request, Response(200, {}, events=failed)).error == {
        "status": 200, "type": "server_error", "message": "The model failed to generate a response.",
    }
    error_event = [_ev("error", sequence_number=0, code="rate_limit_exceeded", message="Slow down", param=None)]
    assert RESPONSES.summarize(request, Response(200, {}, events=error_event)).error["type"] == "rate_limit_exceeded"
