"""The Anthropic Messages provider, driven by the real anthropic SDK.

Requests are built by ``anthropic.Anthropic`` and captured at its httpx
transport; rendered responses are handed back to the SDK through the same
transport (SSE bytes encoded by :mod:`llmock_proxy.wire.sse`), so the checks
are what the SDK itself makes of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.model import Payload, Request, Response
from llmock_proxy.providers.anthropic_messages import (
    AnthropicMessages,
    stop_reason_for,
    usage_for,
)
from llmock_proxy.providers.base import RenderOptions
from tests.harness.http import httpx
from tests.support.providers import (
    as_cassette_request,
    as_httpx_response,
    decode_stream,
)

MODEL = "claude-sonnet-4-5"
PROVIDER = AnthropicMessages()

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


# -- plumbing: the SDK on one side, cassette models on the other ----------------


class Upstream:
    """A fake Anthropic endpoint at the SDK's transport: it keeps every
    request it saw and answers with what ``answer`` renders for it."""

    def __init__(self, answer: Callable[[Request], Response] | None = None) -> None:
        self.requests: list[Request] = []
        self.answer = answer or (lambda req: render_for(req, Summary(text="ok", usage={"input_tokens": 1, "output_tokens": 1})))

    def handle(self, request: httpx.Request) -> httpx.Response:
        captured = as_cassette_request(request)
        self.requests.append(captured)
        return as_httpx_response(self.answer(captured))

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key="sk-test-anthropic",
            base_url="http://127.0.0.1:9",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(self.handle)),
        )

    @property
    def last(self) -> Request:
        return self.requests[-1]


def render_for(request: Request, summary: Summary, chunk_size: int = 0) -> Response:
    canonical = PROVIDER.canonical(request)
    return PROVIDER.render(
        summary, canonical, stream=canonical.stream, options=RenderOptions(chunk_size=chunk_size)
    )


def canonical_of(call: Callable[[anthropic.Anthropic], Any]) -> Any:
    upstream = Upstream()
    call(upstream.client())
    return PROVIDER.canonical(upstream.last)


def ask(client: anthropic.Anthropic, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=256, messages=messages, **kwargs)


# -- detect ---------------------------------------------------------------------


def test_detect_messages_but_not_count_tokens():
    assert PROVIDER.detect("POST", "api.anthropic.com", "/v1/messages")
    assert PROVIDER.detect("POST", "gateway.local", "/anthropic/v1/messages")
    assert not PROVIDER.detect("POST", "api.anthropic.com", "/v1/messages/count_tokens")
    assert not PROVIDER.detect("GET", "api.anthropic.com", "/v1/messages")
    assert not PROVIDER.detect("POST", "api.openai.com", "/v1/chat/completions")


def test_detects_the_path_the_sdk_posts_to():
    upstream = Upstream()
    ask(upstream.client(), [{"role": "user", "content": "hi"}])
    assert upstream.last.url.endswith("/v1/messages")
    assert PROVIDER.detect(upstream.last.method, "127.0.0.1", "/v1/messages")


# -- canonical requests from the SDK ---------------------------------------------


def test_system_string_and_text_blocks_give_the_same_system():
    plain = canonical_of(lambda c: ask(c, [{"role": "user", "content": "hi"}], system="Be terse."))
    blocks = canonical_of(
        lambda c: ask(
            c,
            [{"role": "user", "content": "hi"}],
            system=[
                {"type": "text", "text": "Be ", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "terse."},
            ],
        )
    )
    assert plain.system == "Be terse."
    assert blocks.system == "Be terse."
    assert plain.fingerprint == blocks.fingerprint


def test_multi_turn_conversation():
    req = canonical_of(
        lambda c: ask(
            c,
            [
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
                {"role": "user", "content": [{"type": "text", "text": "And "}, {"type": "text", "text": "3+3?"}]},
            ],
        )
    )
    assert req.family == "anthropic.messages"
    assert req.model == MODEL
    assert [(m.role, m.text) for m in req.messages] == [
        ("user", "What is 2+2?"),
        ("assistant", "4"),
        ("user", "And 3+3?"),
    ]
    assert req.last_user_message == "And 3+3?"
    assert req.stream is False


def test_tools_and_structured_output():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    req = canonical_of(
        lambda c: ask(
            c,
            [{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL],
            output_config={"format": {"type": "json_schema", "schema": schema}},
        )
    )
    assert req.tool_names == ["get_weather"]
    assert req.tools[0].description == "Current weather for a city"
    assert req.tools[0].parameters == WEATHER_TOOL["input_schema"]
    assert req.response_format == {"type": "json_schema", "schema": schema}


def test_stream_flag_from_create_and_from_the_stream_helper():
    created = canonical_of(lambda c: list(ask(c, [{"role": "user", "content": "hi"}], stream=True)))

    def helper(client: anthropic.Anthropic) -> None:
        with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
            s.get_final_message()

    streamed = canonical_of(helper)
    plain = canonical_of(lambda c: ask(c, [{"role": "user", "content": "hi"}]))
    assert created.stream is True and streamed.stream is True and plain.stream is False
    assert created.fingerprint == streamed.fingerprint
    assert created.fingerprint != plain.fingerprint
    assert created.content_fingerprint == plain.content_fingerprint


def test_images_and_documents_are_ignored_without_crashing():
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    with_media = canonical_of(
        lambda c: ask(
            c,
            [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                {"type": "text", "text": "Describe this."},
            ]}],
        )
    )
    text_only = canonical_of(lambda c: ask(c, [{"role": "user", "content": "Describe this."}]))
    assert with_media.messages[0].text == "Describe this."
    assert with_media.fingerprint == text_only.fingerprint


# -- the tool round trip, both halves through the SDK -----------------------------


def tool_round_trip(tool_id: str, *, result: str = "18C and sunny") -> tuple[Any, Any]:
    """First turn: the model asks for the tool (rendered by us, parsed by the
    SDK). Second turn: the SDK's own content goes back with the tool result."""
    first_summary = Summary(
        text="Let me check.",
        tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}, id=tool_id)],
        finish_reason="tool_use",
        usage={"input_tokens": 20, "output_tokens": 9},
    )
    upstream = Upstream(lambda req: render_for(req, first_summary))
    client = upstream.client()
    question = {"role": "user", "content": "Weather in Paris?"}
    reply = ask(client, [question], tools=[WEATHER_TOOL])
    first = PROVIDER.canonical(upstream.last)

    assert reply.stop_reason == "tool_use"
    tool_use = next(b for b in reply.content if b.type == "tool_use")
    assert (tool_use.id, tool_use.name, tool_use.input) == (tool_id, "get_weather", {"city": "Paris"})

    ask(
        client,
        [
            question,
            {"role": "assistant", "content": reply.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool_use.id, "content": result},
            ]},
        ],
        tools=[WEATHER_TOOL],
    )
    return first, PROVIDER.canonical(upstream.last)


def test_tool_use_and_tool_result_round_trip():
    first, second = tool_round_trip("toolu_01A")
    assert first.last_tool_result is None
    assistant, tool = second.messages[1], second.messages[2]
    assert assistant.role == "assistant"
    assert assistant.text == "Let me check."
    assert [(c.name, c.arguments, c.id) for c in assistant.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "toolu_01A")
    ]
    assert tool.role == "tool"
    result = second.last_tool_result
    assert (result.content, result.tool_call_id, result.name, result.is_error) == (
        "18C and sunny", "toolu_01A", "get_weather", False,
    )


def test_tool_result_blocks_and_error_flag():
    req = canonical_of(
        lambda c: ask(
            c,
            [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "run", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "is_error": True,
                     "content": [{"type": "text", "text": "boom"}]},
                    {"type": "text", "text": "Try again."},
                ]},
            ],
        )
    )
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    result = req.messages[2].tool_results[0]
    assert (result.content, result.is_error, result.name) == ("boom", True, "run")
    assert req.last_user_message == "Try again."


# -- fingerprints ------------------------------------------------------------------


def test_same_conversation_twice_has_the_same_fingerprint():
    a = canonical_of(lambda c: ask(c, [{"role": "user", "content": "hi"}], system="s", tools=[WEATHER_TOOL]))
    b = canonical_of(lambda c: ask(c, [{"role": "user", "content": "hi"}], system="s", tools=[WEATHER_TOOL]))
    assert a.fingerprint == b.fingerprint


def test_tool_ids_do_not_change_the_fingerprint():
    _, one = tool_round_trip("toolu_first_run")
    _, two = tool_round_trip("toolu_second_run")
    assert one.last_tool_result.tool_call_id != two.last_tool_result.tool_call_id
    assert one.fingerprint == two.fingerprint


def test_different_text_tool_result_or_model_changes_the_fingerprint():
    base = canonical_of(lambda c: ask(c, [{"role": "user", "content": "hi"}]))
    other_text = canonical_of(lambda c: ask(c, [{"role": "user", "content": "hello"}]))
    other_model = canonical_of(
        lambda c: c.messages.create(model="claude-haiku-4-5", max_tokens=256, messages=[{"role": "user", "content": "hi"}])
    )
    assert len({base.fingerprint, other_text.fingerprint, other_model.fingerprint}) == 3
    _, sunny = tool_round_trip("toolu_x", result="sunny")
    _, rainy = tool_round_trip("toolu_x", result="rainy")
    assert sunny.fingerprint != rainy.fingerprint


# -- rendered responses, read by the SDK --------------------------------------------

FULL = Summary(
    text="Paris is sunny today, around eighteen degrees.",
    reasoning="The user wants weather; call the tool.",
    tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris", "units": "metric"}, id="toolu_abc")],
    finish_reason="tool_use",
    usage={"input_tokens": 31, "output_tokens": 17},
    model=MODEL,
)


def test_rendered_json_message_parses_in_the_sdk():
    upstream = Upstream(lambda req: render_for(req, FULL))
    message = ask(upstream.client(), [{"role": "user", "content": "weather?"}])
    assert message.type == "message" and message.role == "assistant"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == FULL.reasoning
    assert message.content[1].text == FULL.text
    assert message.content[2].input == {"city": "Paris", "units": "metric"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (31, 17)
    assert message.model == MODEL


def test_rendered_stream_events_in_the_sdk():
    upstream = Upstream(lambda req: render_for(req, FULL, chunk_size=7))
    events = list(ask(upstream.client(), [{"role": "user", "content": "weather?"}], stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds[-2] == "message_delta"
    text_pieces = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert "".join(text_pieces) == FULL.text
    assert max(len(p) for p in text_pieces) == 7
    json_pieces = [e.delta.partial_json for e in events
                   if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert json.loads("".join(json_pieces)) == {"city": "Paris", "units": "metric"}
    delta = events[-2]
    assert delta.delta.stop_reason == "tool_use"
    assert delta.usage.output_tokens == 17


def test_rendered_stream_in_the_stream_helper():
    upstream = Upstream(lambda req: render_for(req, FULL, chunk_size=5))
    client = upstream.client()
    with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "weather?"}]) as s:
        texts = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(texts) == FULL.text
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == FULL.reasoning
    tool = final.content[2]
    assert (tool.id, tool.name, tool.input) == ("toolu_abc", "get_weather", {"city": "Paris", "units": "metric"})
    assert (final.usage.input_tokens, final.usage.output_tokens) == (31, 17)


def test_render_translates_summaries_recorded_in_other_families():
    foreign = Summary(text="hi", finish_reason="length", usage={"prompt_tokens": 4, "completion_tokens": 2})
    upstream = Upstream(lambda req: render_for(req, foreign))
    with upstream.client().messages.stream(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 2)
    # A tool call without an id gets a stable one, the same on every render.
    bare = Summary(tool_calls=[ToolCall(name="f", arguments={"a": 1})], finish_reason="tool_calls")
    canonical = PROVIDER.canonical(upstream.last)
    one = PROVIDER.render(bare, canonical, stream=False)
    two = PROVIDER.render(bare, canonical, stream=False)
    assert one.to_dict() == two.to_dict()
    block = one.body.value["content"][0]
    assert block["id"].startswith("toolu_") and one.body.value["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish_reason", "tool_calls", "expected"),
    [("end_turn", False, "end_turn"), ("stop_sequence", False, "stop_sequence"), ("stop", False, "end_turn"),
     ("STOP", True, "tool_use"), ("COMPLETE", False, "end_turn"), ("MAX_TOKENS", False, "max_tokens"),
     ("content_filter", False, "refusal"), (None, False, "end_turn"), (None, True, "tool_use")],
)
def test_stop_reason_from_any_family(finish_reason: str | None, tool_calls: bool, expected: str):
    calls = [ToolCall(name="f", arguments={})] if tool_calls else []
    assert stop_reason_for(Summary(finish_reason=finish_reason, tool_calls=calls)) == expected


def test_usage_from_any_family():
    own = {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 4}
    assert usage_for(own) == own
    expected = {"input_tokens": 5, "output_tokens": 2}
    assert usage_for({"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}) == expected  # Responses API
    assert usage_for({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}) == expected  # Chat
    assert usage_for({"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}) == expected
    assert usage_for({"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}) == expected  # Bedrock
    assert usage_for(None) == {"input_tokens": 0, "output_tokens": 0}


def test_default_chunk_size_cuts_long_text():
    long_text = "word " * 40
    response = PROVIDER.render(Summary(text=long_text), PROVIDER.canonical(Request("POST", "/v1/messages")),
                               stream=True)
    deltas = [e.data["delta"]["text"] for e in response.events if e.event == "content_block_delta"]
    assert len(deltas) > 1 and "".join(deltas) == long_text


@pytest.mark.parametrize("stream", [False, True])
def test_summarize_of_render_gives_the_summary_back(stream: bool):
    for summary in (
        FULL,
        Summary(text="just text", finish_reason="end_turn", usage={"input_tokens": 3, "output_tokens": 2,
                                                                    "cache_read_input_tokens": 0}, model=MODEL),
        Summary(tool_calls=[ToolCall(name="a", arguments={}, id="toolu_1"),
                            ToolCall(name="b", arguments={"x": [1, 2]}, id="toolu_2")],
                finish_reason="tool_use", usage={"input_tokens": 1, "output_tokens": 1}, model=MODEL),
    ):
        request = Request("POST", "https://api.anthropic.com/v1/messages", body=Payload.json(
            {"model": MODEL, "max_tokens": 10, "messages": [], "stream": stream}))
        rendered = PROVIDER.render(summary, PROVIDER.canonical(request), stream=stream,
                                   options=RenderOptions(chunk_size=4))
        assert rendered.is_stream is stream
        assert PROVIDER.summarize(request, rendered) == summary


# -- recorded responses in the published formats -----------------------------------

RECORDED_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" in SF."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" the weather for San Francisco, CA:"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \\"San Francisco, CA\\", \\"unit\\": \\"fahrenheit\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""


def recorded_request(stream: bool) -> Request:
    return Request("POST", "https://api.anthropic.com/v1/messages", body=Payload.json(
        {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
         "messages": [{"role": "user", "content": "Weather in SF?"}]}))


def test_summarize_a_recorded_stream():
    summary = PROVIDER.summarize(recorded_request(True), Response(200, events=decode_stream("sse", RECORDED_STREAM)))
    assert summary.text == "Okay, let's check the weather for San Francisco, CA:"
    assert summary.reasoning == "The user wants the weather in SF."
    assert summary.tool_calls == [ToolCall(
        name="get_weather", arguments={"location": "San Francisco, CA", "unit": "fahrenheit"},
        id="toolu_01T1x1fJ34qAmk2tNTrN7Up6")]
    assert summary.finish_reason == "tool_use"
    assert summary.usage == {"input_tokens": 472, "output_tokens": 89}
    assert summary.model == "claude-sonnet-4-5-20250929"
    assert summary.error is None


def test_summarize_a_stream_cut_off_mid_block():
    cut = RECORDED_STREAM[: RECORDED_STREAM.index(b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}")]
    summary = PROVIDER.summarize(recorded_request(True), Response(200, events=decode_stream("sse", cut)))
    assert summary.text == "Okay, let's check the weather for San Francisco, CA:"
    assert summary.finish_reason is None


def test_summarize_an_error_event_inside_a_stream():
    raw = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,'
        b'"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    )
    summary = PROVIDER.summarize(recorded_request(True), Response(200, events=decode_stream("sse", raw)))
    assert summary.error == {"status": 529, "type": "overloaded_error", "message": "Overloaded"}


def test_summarize_a_recorded_json_message():
    body = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": ", world", "citations": None},
            {"type": "tool_use", "id": "toolu_01A", "name": "lookup", "input": {"q": "x"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "service_tier": "standard"},
    }
    summary = PROVIDER.summarize(recorded_request(False), Response(200, body=Payload.json(body)))
    assert summary.text == "Hello, world"
    assert summary.tool_calls == [ToolCall(name="lookup", arguments={"q": "x"}, id="toolu_01A")]
    assert summary.finish_reason == "tool_use"
    assert summary.usage == body["usage"]


def test_summarize_a_recorded_error_body():
    body = {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-nope"},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    summary = PROVIDER.summarize(recorded_request(False), Response(404, body=Payload.json(body)))
    assert summary.error == {"status": 404, "type": "not_found_error", "message": "model: claude-nope"}
    assert PROVIDER.summarize(recorded_request(False), Response(502, body=Payload("text", "Bad gateway"))).error == {
        "status": 502, "type": "api_error", "message": "Bad gateway"}


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "exception"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (404, "not_found_error", anthropic.NotFoundError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (529, "overloaded_error", anthropic.OverloadedError),
    ],
)
def test_error_envelope_is_what_the_sdk_expects(status: int, error_type: str, exception: type):
    response = PROVIDER.error(status, "no fixture matched")
    assert response.status == status
    assert response.json == {"type": "error", "error": {"type": error_type, "message": "no fixture matched"}}
    upstream = Upstream(lambda req: response)
    with pytest.raises(exception) as caught:
        ask(upstream.client(), [{"role": "user", "content": "hi"}])
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == error_type
    assert caught.value.body["error"]["message"] == "no fixture matched"


def test_an_explicit_error_type_is_kept_and_error_summaries_render_as_errors():
    assert PROVIDER.error(400, "m", type="permission_error").json["error"]["type"] == "permission_error"
    summary = Summary(error={"status": 529, "type": "overloaded_error", "message": "Overloaded"})
    rendered = PROVIDER.render(summary, PROVIDER.canonical(recorded_request(True)), stream=True)
    assert rendered.status == 529 and rendered.wire_form == "body"
    assert PROVIDER.summarize(recorded_request(True), rendered).error == summary.error
