"""The Cohere v2 Chat provider (POST /v2/chat).

Request bodies follow Cohere's v2 API reference; recorded responses are
written as Cohere sends them (named SSE events whose JSON repeats the name in
``type``). Rendered streams go through the project's SSE codec.
"""

from __future__ import annotations

import json

import pytest

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.model import NDJSONLine, Payload, Request, Response, SSEEvent
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.catalog import identify
from llmock_proxy.providers.cohere import CohereChat
from tests.support.providers import decode_stream, wire_bytes

URL = "https://api.cohere.com/v2/chat"
CHAT = CohereChat()

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "gets the weather of a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "the location to get weather"}},
            "required": ["location"],
        },
    },
}


def post(body: dict, url: str = URL) -> Request:
    return Request(
        method="POST",
        url=url,
        headers={"content-type": "application/json", "authorization": "Bearer sk-test-cohere"},
        body=Payload.json(body),
    )


def tool_conversation(call_id: str = "get_weather_1byjy32y4hvq") -> dict:
    """The docs' tool-use round trip: the model asked for a call, the client answers it."""
    return {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "What's the weather in Toronto?"},
            {
                "role": "assistant",
                "tool_plan": "I will look up the weather in Toronto.",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Toronto"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": [{"type": "document", "document": {"data": '{"temperature": "20C"}'}}],
            },
        ],
        "tools": [WEATHER_TOOL],
    }


def sse_bytes(response: Response) -> bytes:
    assert response.events is not None
    return wire_bytes(response)


def decode_events(raw: bytes, piece: int = 7) -> list[SSEEvent]:
    return decode_stream("sse", raw, piece)


# -- detection and canonical requests -----------------------------------------------


def test_catalog_routes_v2_chat() -> None:
    assert identify("POST", URL).family == "cohere.chat"
    assert identify("POST", "http://127.0.0.1:8080/cohere/v2/chat").family == "cohere.chat"
    assert identify("POST", "https://api.cohere.com/v2/embed").family == "generic"


def test_stream_is_opt_in() -> None:
    body = {"model": "command-a-03-2025", "messages": [{"role": "user", "content": "hello"}]}
    assert CHAT.canonical(post(body)).stream is False
    assert CHAT.canonical(post({**body, "stream": True})).stream is True


def test_canonical_request_with_tools_and_results() -> None:
    canonical = CHAT.canonical(post(tool_conversation()))
    assert canonical.family == "cohere.chat" and canonical.model == "command-a-03-2025"
    assert canonical.system == "You are a weather bot."
    assert [m.role for m in canonical.messages] == ["user", "assistant", "tool"]
    assert canonical.last_user_message == "What's the weather in Toronto?"
    call = canonical.messages[1].tool_calls[0]
    assert (call.name, call.arguments, call.id) == ("get_weather", {"location": "Toronto"}, "get_weather_1byjy32y4hvq")
    result = canonical.last_tool_result
    assert result is not None and result.tool_call_id == "get_weather_1byjy32y4hvq"
    assert result.content == [{"type": "document", "document": {"data": '{"temperature": "20C"}'}}]
    assert canonical.tool_names == ["get_weather"]


def test_content_parts_and_strings_read_the_same() -> None:
    as_string = {"model": "command-a-03-2025", "messages": [{"role": "user", "content": "Hi there"}]}
    as_parts = {"model": "command-a-03-2025", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]}
    assert CHAT.canonical(post(as_string)).fingerprint == CHAT.canonical(post(as_parts)).fingerprint


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    body = {"model": "command-a-03-2025", "messages": [{"role": "user", "content": "A book title as JSON"}]}
    fmt = {"type": "json_object", "json_schema": schema}
    assert CHAT.canonical(post({**body, "response_format": fmt})).response_format == fmt
    assert CHAT.canonical(post({**body, "response_format": {"type": "text"}})).response_format is None


def test_fingerprint_is_stable_and_ignores_tool_call_ids() -> None:
    first = CHAT.canonical(post(tool_conversation()))
    assert first.fingerprint == CHAT.canonical(post(tool_conversation())).fingerprint
    assert first.fingerprint == CHAT.canonical(post(tool_conversation("get_weather_zzzzzzzzzzzz"))).fingerprint
    changed = tool_conversation()
    changed["messages"][1]["content"] = "What's the weather in Ottawa?"
    assert CHAT.canonical(post(changed)).fingerprint != first.fingerprint


# -- summaries of recorded responses -------------------------------------------------

RECORDED_TOOL_STREAM = [
    {"id": "d5b1a4c5-7f0b-4bfb-9b7e-8a8c1e4e4c11", "type": "message-start", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}},
    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will"}}},
    {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": " check."}}},
    {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {"id": "get_weather_nsz5zm3w56q3", "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}},
    {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": '{\n    "'}}}}},
    {"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": 'location": "Toronto"\n}'}}}}},
    {"type": "tool-call-end", "index": 0},
    {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": {"billed_units": {"input_tokens": 37, "output_tokens": 28}, "tokens": {"input_tokens": 913, "output_tokens": 81}}}},
]


def test_summarize_recorded_tool_stream() -> None:
    response = Response(status=200, events=[SSEEvent(event=e["type"], data=e) for e in RECORDED_TOOL_STREAM])
    summary = CHAT.summarize(post({**tool_conversation(), "stream": True}), response)
    assert summary.reasoning == "I will check."
    assert summary.tool_calls == [ToolCall(name="get_weather", arguments={"location": "Toronto"}, id="get_weather_nsz5zm3w56q3")]
    assert summary.finish_reason == "TOOL_CALL"
    assert summary.usage == {"input_tokens": 913, "output_tokens": 81}


def test_summarize_recorded_json_answer() -> None:
    body = {
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "LLMs are like a library."}]},
        "finish_reason": "COMPLETE",
        "usage": {"billed_units": {"input_tokens": 17, "output_tokens": 6}, "tokens": {"input_tokens": 215, "output_tokens": 6}},
    }
    summary = CHAT.summarize(post({"model": "command-a-03-2025", "messages": []}), Response(status=200, body=Payload.json(body)))
    assert summary == Summary(text="LLMs are like a library.", finish_reason="COMPLETE", usage={"input_tokens": 215, "output_tokens": 6})


def test_summarize_error() -> None:
    response = Response(status=400, body=Payload.json({"id": "b1e0", "message": "invalid request: message must not be empty in a turn"}))
    summary = CHAT.summarize(post({"model": "command-a-03-2025", "messages": []}), response)
    assert summary.error == {"status": 400, "message": "invalid request: message must not be empty in a turn"}


# -- rendering -----------------------------------------------------------------------

SUMMARIES = {
    "text": Summary(text="Toronto is 20C and sunny.", finish_reason="COMPLETE", usage={"input_tokens": 215, "output_tokens": 9}),
    "tools": Summary(
        reasoning="I will check the weather.",
        tool_calls=[
            ToolCall(name="get_weather", arguments={"location": "Toronto"}, id="get_weather_a1"),
            ToolCall(name="get_weather", arguments={"location": "Ottawa"}, id="get_weather_b2"),
        ],
        finish_reason="TOOL_CALL",
        usage={"input_tokens": 913, "output_tokens": 81},
    ),
    "thinking": Summary(text="42", reasoning="Six times seven.", finish_reason="MAX_TOKENS", usage={"input_tokens": 5, "output_tokens": 50}),
}


@pytest.mark.parametrize("name", sorted(SUMMARIES))
@pytest.mark.parametrize("stream", [False, True])
def test_render_then_summarize_gives_the_summary_back(name: str, stream: bool) -> None:
    summary = SUMMARIES[name]
    request = post({**tool_conversation(), "stream": stream})
    response = CHAT.render(summary, CHAT.canonical(request), stream=stream, options=RenderOptions(chunk_size=4))
    if stream:
        response = Response(status=response.status, headers=response.headers, events=decode_events(sse_bytes(response)))
    assert CHAT.summarize(request, response) == summary


def test_stream_events_are_named_like_their_type() -> None:
    summary = SUMMARIES["tools"]
    response = CHAT.render(summary, CHAT.canonical(post({**tool_conversation(), "stream": True})), stream=True)
    assert response.headers["content-type"] == "text/event-stream"
    events = decode_events(sse_bytes(response))
    assert all(e.event == e.data["type"] for e in events)
    names = [e.event for e in events]
    assert names[0] == "message-start" and names[-1] == "message-end"
    assert names.count("tool-call-start") == names.count("tool-call-end") == 2
    assert "tool-plan-delta" in names and "content-delta" not in names
    start = next(e.data for e in events if e.event == "tool-call-start")
    assert start["delta"]["message"]["tool_calls"]["function"] == {"name": "get_weather", "arguments": ""}
    end = events[-1].data["delta"]
    assert end["finish_reason"] == "TOOL_CALL"
    assert end["usage"]["tokens"] == {"input_tokens": 913, "output_tokens": 81}


def test_json_answer_shape() -> None:
    summary = Summary(tool_calls=[ToolCall(name="get_weather", arguments={"location": "Toronto"})])
    body = CHAT.render(summary, CHAT.canonical(post(tool_conversation())), stream=False).json
    assert list(body) == ["id", "message", "finish_reason", "usage"]
    assert body["finish_reason"] == "TOOL_CALL"
    call = body["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("get_weather_")
    assert json.loads(call["function"]["arguments"]) == {"location": "Toronto"}
    assert isinstance(call["function"]["arguments"], str)


def test_foreign_finish_reasons_are_translated() -> None:
    request = CHAT.canonical(post(tool_conversation()))
    for reason, expected in (("stop", "COMPLETE"), ("length", "MAX_TOKENS"), ("tool_use", "TOOL_CALL"), (None, "COMPLETE")):
        assert CHAT.render(Summary(text="x", finish_reason=reason), request, stream=False).json["finish_reason"] == expected


def test_errors_render_in_cohere_envelope() -> None:
    response = CHAT.error(429, "You are using a Trial key, which is limited to 20 API calls / minute.")
    assert response.status == 429
    assert response.json == {"message": "You are using a Trial key, which is limited to 20 API calls / minute."}
    summary = Summary(error={"status": 401, "message": "invalid api token"})
    for stream in (False, True):
        request = post({**tool_conversation(), "stream": stream})
        rendered = CHAT.render(summary, CHAT.canonical(request), stream=stream)
        assert rendered.status == 401 and CHAT.summarize(request, rendered) == summary


def test_rendering_is_deterministic() -> None:
    """Ids derive from the answer: two replays of one summary are byte-identical."""
    summary = Summary(tool_calls=[ToolCall(name="get_weather", arguments={"location": "Toronto"})])
    request = CHAT.canonical(post({**tool_conversation(), "stream": True}))
    for stream in (False, True):
        first = CHAT.render(summary, request, stream=stream)
        assert first == CHAT.render(summary, request, stream=stream)
    ids = {CHAT.render(summary, request, stream=False).json["id"], CHAT.render(SUMMARIES["text"], request, stream=False).json["id"]}
    assert len(ids) == 2


def test_summarize_a_stream_recorded_as_ndjson_lines() -> None:
    """With ``accept: application/json`` Cohere streams the same events as JSON lines."""
    response = Response(status=200, lines=[NDJSONLine(data=e) for e in RECORDED_TOOL_STREAM])
    summary = CHAT.summarize(post({**tool_conversation(), "stream": True}), response)
    assert summary.tool_calls[0].arguments == {"location": "Toronto"}
    assert summary.finish_reason == "TOOL_CALL"
