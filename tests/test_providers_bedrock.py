"""The Bedrock Runtime providers: Converse(Stream) and InvokeModel(WithResponseStream).

Requests are built and SigV4-signed by botocore's own ``bedrock-runtime``
client; its ``before-send`` hook hands each prepared request to the provider
under test and gives botocore back the rendered answer as bytes (frames
encoded by :mod:`llmock_proxy.wire.eventstream`). What is checked is what
botocore's response parsing and EventStream parser make of it.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from anthropic.types import RawMessageStreamEvent
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError
from pydantic import TypeAdapter

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.model import EventStreamFrame, Payload, Request, Response
from llmock_proxy.providers.anthropic_messages import AnthropicMessages
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.bedrock.converse import BedrockConverse
from llmock_proxy.providers.bedrock.invoke import BedrockInvoke
from llmock_proxy.providers.catalog import identify
from tests.support.providers import decode_stream, wire_bytes

CONVERSE, INVOKE = BedrockConverse(), BedrockInvoke()
CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0"
HOST = "https://bedrock-runtime.us-east-1.amazonaws.com"
# One session for the module: it caches the service model, so clients are cheap.
SESSION = botocore.session.Session()

WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
}


# -- plumbing: botocore on one side, cassette models on the other -----------------


class RawBody(io.BytesIO):
    """The body botocore reads: ``stream()`` like urllib3, in small pieces so
    frames arrive split as they would off a socket."""

    def stream(self, amt: int = 7, **_: Any) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk


def to_cassette_request(prepared: AWSPreparedRequest) -> Request:
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = body.read()
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()}
    return Request(
        method=prepared.method,
        url=prepared.url,
        headers=headers,
        body=Payload.from_bytes(body, headers.get("content-type")) if body else None,
    )


def decoded(response: Response) -> Response:
    """The response as the recorder would store it: frames re-read from bytes."""
    if response.frames is None:
        return response
    frames = decode_stream("eventstream", wire_bytes(response), 11)
    return Response(status=response.status, headers=response.headers, frames=frames)


class Bedrock:
    """A real botocore ``bedrock-runtime`` client whose sends are answered by
    ``answer`` (by default: the catalog's provider rendering ``summary``)."""

    def __init__(self, summary: Summary | None = None, answer: Callable[[Request], Response] | None = None) -> None:
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.summary = summary or Summary(text="ok")
        self.answer = answer or self.render
        self.client = SESSION.create_client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="test",
            config=Config(retries={"total_max_attempts": 1}),
        )
        self.client.meta.events.register("before-send", self._send)

    def render(self, request: Request) -> Response:
        provider = identify(request.method, request.url, request.headers)
        canonical = provider.canonical(request)
        return provider.render(self.summary, canonical, stream=canonical.stream, options=RenderOptions(chunk_size=5))

    def _send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        captured = to_cassette_request(request)
        self.requests.append(captured)
        response = self.answer(captured)
        self.responses.append(response)
        return AWSResponse(request.url, response.status, dict(response.headers), RawBody(wire_bytes(response)))

    @property
    def last(self) -> Request:
        return self.requests[-1]


def converse_messages(tool_use_id: str = "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q") -> list[dict]:
    """A tool round trip in Converse form, as the Bedrock user guide shows it."""
    return [
        {"role": "user", "content": [{"text": "What is the weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": tool_use_id, "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": tool_use_id, "content": [{"json": {"celsius": 21}}], "status": "success"}}],
        },
    ]


def converse_kwargs(tool_use_id: str = "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q") -> dict:
    return {
        "modelId": PROFILE_ARN,
        "system": [{"text": "You are a weather bot."}],
        "messages": converse_messages(tool_use_id),
        "toolConfig": {"tools": [WEATHER_SPEC]},
        "inferenceConfig": {"maxTokens": 256},
    }


def anthropic_body(tool_use_id: str = "toolu_01A09q90qw90lq917835lq9") -> dict:
    """The Anthropic Messages body Bedrock's InvokeModel takes for Claude."""
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "system": "You are a weather bot.",
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            }
        ],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": tool_use_id, "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "21 degrees"}]},
        ],
    }


TEXT = Summary(text="It is 21 degrees and sunny in Paris.", finish_reason="end_turn", usage={"input_tokens": 30, "output_tokens": 12})
TOOLS = Summary(
    text="Let me check.",
    tool_calls=[
        ToolCall(name="get_weather", arguments={"city": "Paris"}, id="tooluse_aaaaaaaaaaaaaaaaaaaaaa"),
        ToolCall(name="get_weather", arguments={"city": "Lyon"}, id="tooluse_bbbbbbbbbbbbbbbbbbbbbb"),
    ],
    finish_reason="tool_use",
    usage={"input_tokens": 400, "output_tokens": 80},
)
REASONING = Summary(text="21 degrees.", reasoning="The user wants the weather.", finish_reason="end_turn", usage={"input_tokens": 5, "output_tokens": 9})


# -- detection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "family"),
    [
        (f"{HOST}/model/{CLAUDE}/converse", "bedrock.converse"),
        (f"{HOST}/model/{CLAUDE}/converse-stream", "bedrock.converse"),
        (f"{HOST}/model/{CLAUDE}/invoke", "bedrock.invoke"),
        (f"{HOST}/model/{CLAUDE}/invoke-with-response-stream", "bedrock.invoke"),
        ("http://127.0.0.1:8080/bedrock/model/amazon.nova-lite-v1%3A0/converse", "bedrock.converse"),
        (f"{HOST}/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0/invoke", "bedrock.invoke"),
        (f"{HOST}/model/{CLAUDE}/count-tokens", "generic"),
    ],
)
def test_catalog_routes_bedrock_paths(url: str, family: str) -> None:
    assert identify("POST", url).family == family


# -- Converse: canonical requests from botocore ------------------------------------------


def test_converse_canonical_request_from_a_signed_botocore_request() -> None:
    bedrock = Bedrock()
    bedrock.client.converse(**converse_kwargs())
    request = bedrock.last
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert "%3A" in request.url  # the ARN travels URL-encoded
    canonical = CONVERSE.canonical(request)
    assert canonical.family == "bedrock.converse"
    assert canonical.model == PROFILE_ARN
    assert canonical.stream is False
    assert canonical.system == "You are a weather bot."
    assert [m.role for m in canonical.messages] == ["user", "assistant", "tool"]
    assert canonical.last_user_message == "What is the weather in Paris?"
    assert canonical.messages[1].text == "Let me check."
    assert canonical.messages[1].tool_calls == [ToolCall(name="get_weather", arguments={"city": "Paris"}, id="tooluse_kZJMlvQmRJ6eAyJE5GIl7Q")]
    result = canonical.last_tool_result
    assert result is not None
    assert (result.content, result.tool_call_id, result.name, result.is_error) == (
        {"celsius": 21},
        "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
        "get_weather",
        False,
    )
    assert canonical.tool_names == ["get_weather"]
    assert canonical.tools[0].parameters["required"] == ["city"]


def test_converse_stream_is_the_stream_path() -> None:
    bedrock = Bedrock()
    bedrock.client.converse(**converse_kwargs())
    plain = CONVERSE.canonical(bedrock.last)
    response = bedrock.client.converse_stream(**converse_kwargs())
    list(response["stream"])
    streamed = CONVERSE.canonical(bedrock.last)
    assert (plain.stream, streamed.stream) == (False, True)
    assert CONVERSE.is_stream_request(bedrock.last) is True
    assert plain.content_fingerprint == streamed.content_fingerprint
    assert plain.fingerprint != streamed.fingerprint


def test_converse_fingerprint_is_stable_and_ignores_tool_use_ids() -> None:
    bedrock = Bedrock()
    for tool_use_id in ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "tooluse_other"):
        bedrock.client.converse(**converse_kwargs(tool_use_id))
    prints = {CONVERSE.canonical(r).fingerprint for r in bedrock.requests}
    assert len(prints) == 1
    changed = converse_kwargs()
    changed["messages"][0]["content"][0]["text"] = "And in Rome?"
    bedrock.client.converse(**changed)
    assert CONVERSE.canonical(bedrock.last).fingerprint not in prints


def test_converse_structured_output_and_error_results() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"text": "Weather?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "city missing"}], "status": "error"}}]},
        ],
        "outputConfig": {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": '{"type":"object"}', "name": "weather"}}}},
    }
    request = Request(method="POST", url=f"{HOST}/model/amazon.nova-pro-v1%3A0/converse", body=Payload.json(body))
    canonical = CONVERSE.canonical(request)
    assert canonical.model == "amazon.nova-pro-v1:0"
    assert canonical.response_format == {"type": "json_schema", "schema": {"type": "object"}, "name": "weather"}
    result = canonical.last_tool_result
    assert result is not None and result.is_error and result.content == "city missing"


# -- Converse: rendered answers, parsed by botocore -----------------------------------------


@pytest.mark.parametrize("summary", [TEXT, TOOLS, REASONING], ids=["text", "tools", "reasoning"])
def test_converse_json_answer_parses_in_botocore(summary: Summary) -> None:
    bedrock = Bedrock(summary)
    result = bedrock.client.converse(**converse_kwargs())
    content = result["output"]["message"]["content"]
    assert "".join(block.get("text", "") for block in content) == summary.text
    uses = [block["toolUse"] for block in content if "toolUse" in block]
    assert [(u["name"], u["input"], u["toolUseId"]) for u in uses] == [(c.name, c.arguments, c.id) for c in summary.tool_calls]
    assert result["stopReason"] == summary.finish_reason
    assert result["usage"]["inputTokens"] == summary.usage["input_tokens"]
    assert result["usage"]["totalTokens"] == summary.usage["input_tokens"] + summary.usage["output_tokens"]
    assert CONVERSE.summarize(bedrock.last, bedrock.responses[-1]) == summary


@pytest.mark.parametrize("summary", [TEXT, TOOLS, REASONING], ids=["text", "tools", "reasoning"])
def test_converse_stream_frames_parse_in_botocore(summary: Summary) -> None:
    bedrock = Bedrock(summary)
    result = bedrock.client.converse_stream(**converse_kwargs())
    text, reasoning, uses, stop, usage = "", "", {}, None, None
    for event in result["stream"]:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            uses[start["contentBlockIndex"]] = {**start["start"]["toolUse"], "input": ""}
        elif "contentBlockDelta" in event:
            delta = event["contentBlockDelta"]["delta"]
            text += delta.get("text", "")
            reasoning += delta.get("reasoningContent", {}).get("text", "")
            if "toolUse" in delta:
                uses[event["contentBlockDelta"]["contentBlockIndex"]]["input"] += delta["toolUse"]["input"]
        elif "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            usage = event["metadata"]["usage"]
    assert text == summary.text and (reasoning or None) == summary.reasoning
    assert [(u["name"], json.loads(u["input"]), u["toolUseId"]) for _, u in sorted(uses.items())] == [
        (c.name, c.arguments, c.id) for c in summary.tool_calls
    ]
    assert stop == summary.finish_reason
    assert usage["outputTokens"] == summary.usage["output_tokens"]
    # Recorded as the recorder stores it (frames re-read from the bytes), it summarizes back.
    response = bedrock.responses[-1]
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert CONVERSE.summarize(bedrock.last, decoded(response)) == summary


def test_summarize_recorded_converse_stream_with_padding() -> None:
    def frame(kind: str, payload: dict) -> EventStreamFrame:
        headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
        return EventStreamFrame(headers=headers, payload=Payload.json(payload))

    frames = [
        frame("messageStart", {"p": "abcdefghijklmn", "role": "assistant"}),
        frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hallo"}, "p": "abcd"}),
        frame("contentBlockStop", {"contentBlockIndex": 0, "p": "abcdefghijk"}),
        frame("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_x", "name": "get_weather"}}, "p": "ab"}),
        frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}, "p": "abc"}),
        frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}, "p": "abc"}),
        frame("contentBlockStop", {"contentBlockIndex": 1, "p": "abcdefghijk"}),
        frame("messageStop", {"p": "abcdefghijklmnop", "stopReason": "tool_use"}),
        frame("metadata", {"metrics": {"latencyMs": 612}, "p": "abcdefghij", "usage": {"inputTokens": 12, "outputTokens": 6, "totalTokens": 18}}),
    ]
    request = Request(method="POST", url=f"{HOST}/model/{CLAUDE}/converse-stream", body=Payload.json({"messages": []}))
    summary = CONVERSE.summarize(request, Response(status=200, frames=frames))
    assert summary == Summary(
        text="Hallo",
        tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"}, id="tooluse_x")],
        finish_reason="tool_use",
        usage={"input_tokens": 12, "output_tokens": 6},
    )


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, "invalid_request_error", "ValidationException"),
        (429, "rate_limit_error", "ThrottlingException"),
        (404, "invalid_request_error", "ResourceNotFoundException"),
        (424, "ModelErrorException", "ModelErrorException"),
    ],
)
def test_errors_raise_the_named_exception_in_botocore(status: int, kind: str, code: str) -> None:
    message = "The provided model identifier is invalid."
    bedrock = Bedrock(answer=lambda request: CONVERSE.error(status, message, type=kind))
    with pytest.raises(ClientError) as raised:
        bedrock.client.converse(**converse_kwargs())
    error = raised.value.response
    assert error["Error"]["Code"] == code and error["Error"]["Message"] == message
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert bedrock.responses[-1].headers["x-amzn-errortype"] == f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    summary = CONVERSE.summarize(bedrock.last, bedrock.responses[-1])
    assert summary.error == {"status": status, "type": code, "message": message}
    # An error summary renders back into the same error, stream or not.
    for stream in (False, True):
        again = CONVERSE.render(summary, CONVERSE.canonical(bedrock.last), stream=stream)
        assert CONVERSE.summarize(bedrock.last, again) == summary


def test_an_exception_inside_a_stream_reaches_the_client_after_the_text() -> None:
    summary = Summary(text="Partial answer", error={"status": 200, "type": "modelStreamErrorException", "message": "Model stream failed"})
    bedrock = Bedrock(summary)
    result = bedrock.client.converse_stream(**converse_kwargs())
    seen = ""
    with pytest.raises(EventStreamError) as raised:
        for event in result["stream"]:
            seen += event.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
    assert seen == "Partial answer"
    assert raised.value.response["Error"] == {"Code": "modelStreamErrorException", "Message": "Model stream failed"}
    frames = bedrock.responses[-1].frames
    assert frames[-1].headers[":message-type"] == "exception"
    assert CONVERSE.summarize(bedrock.last, decoded(bedrock.responses[-1])) == summary


# -- InvokeModel: Anthropic on Bedrock -------------------------------------------------------


def invoke(bedrock: Bedrock, body: dict, model: str = CLAUDE, stream: bool = False) -> Any:
    kwargs = {"modelId": model, "body": json.dumps(body), "contentType": "application/json", "accept": "application/json"}
    if stream:
        return bedrock.client.invoke_model_with_response_stream(**kwargs)
    return bedrock.client.invoke_model(**kwargs)


def test_invoke_anthropic_canonical_reuses_the_messages_translation() -> None:
    bedrock = Bedrock()
    invoke(bedrock, anthropic_body())
    canonical = INVOKE.canonical(bedrock.last)
    direct = AnthropicMessages().canonical(
        Request(method="POST", url="https://api.anthropic.com/v1/messages", body=Payload.json({**anthropic_body(), "model": CLAUDE}))
    )
    assert canonical.family == "bedrock.invoke" and canonical.model == CLAUDE and canonical.stream is False
    assert (canonical.system, canonical.messages, canonical.tools) == (direct.system, direct.messages, direct.tools)
    assert canonical.last_user_message == "What is the weather in Paris?"
    assert canonical.last_tool_result is not None and canonical.last_tool_result.content == "21 degrees"

    invoke(bedrock, anthropic_body("toolu_another_id"), stream=True)
    streamed = INVOKE.canonical(bedrock.last)
    assert streamed.stream is True and streamed.content_fingerprint == canonical.content_fingerprint


@pytest.mark.parametrize("summary", [TEXT, TOOLS, REASONING], ids=["text", "tools", "reasoning"])
def test_invoke_anthropic_json_answer(summary: Summary) -> None:
    # The Messages answer names its model; the summary read back has it.
    summary = dataclasses.replace(summary, model="claude-3-5-sonnet-20240620")
    bedrock = Bedrock(summary)
    result = invoke(bedrock, anthropic_body())
    body = json.loads(result["body"].read())
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["stop_reason"] == summary.finish_reason
    assert int(result["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-output-token-count"]) == summary.usage["output_tokens"]
    assert INVOKE.summarize(bedrock.last, bedrock.responses[-1]) == summary


@pytest.mark.parametrize("summary", [TEXT, TOOLS, REASONING], ids=["text", "tools", "reasoning"])
def test_invoke_anthropic_stream_chunks_are_anthropic_events(summary: Summary) -> None:
    summary = dataclasses.replace(summary, model="claude-3-5-sonnet-20240620")
    bedrock = Bedrock(summary)
    result = invoke(bedrock, anthropic_body(), stream=True)
    adapter = TypeAdapter(RawMessageStreamEvent)
    events = [json.loads(part["chunk"]["bytes"]) for part in result["body"]]
    for event in events:
        adapter.validate_python(event)
    names = [e["type"] for e in events]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" not in names
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == summary.usage["output_tokens"]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == summary.text
    assert INVOKE.summarize(bedrock.last, decoded(bedrock.responses[-1])) == summary


def test_invoke_stream_chunk_frames_carry_base64_bytes() -> None:
    bedrock = Bedrock(TEXT)
    list(invoke(bedrock, anthropic_body(), stream=True)["body"])
    frame = decoded(bedrock.responses[-1]).frames[0]
    assert frame.headers == {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    assert json.loads(base64.b64decode(frame.payload.value["bytes"]))["type"] == "message_start"


def test_invoke_stream_exception() -> None:
    summary = Summary(
        text="Partial",
        model="claude-3-5-sonnet-20240620",
        usage={"input_tokens": 30, "output_tokens": 0},
        error={"status": 200, "type": "throttlingException", "message": "Too many requests, please wait."},
    )
    bedrock = Bedrock(summary)
    result = invoke(bedrock, anthropic_body(), stream=True)
    with pytest.raises(EventStreamError) as raised:
        list(result["body"])
    assert raised.value.response["Error"]["Code"] == "throttlingException"
    assert INVOKE.summarize(bedrock.last, decoded(bedrock.responses[-1])) == summary


# -- InvokeModel: other vendors ---------------------------------------------------------------


NOVA = "us.amazon.nova-lite-v1:0"
LLAMA = "meta.llama3-8b-instruct-v1:0"


def test_invoke_nova_speaks_converse_messages() -> None:
    body = {
        "schemaVersion": "messages-v1",
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Name a colour."}]}],
        "inferenceConfig": {"maxTokens": 20},
    }
    bedrock = Bedrock(TEXT)
    result = invoke(bedrock, body, model=NOVA)
    canonical = INVOKE.canonical(bedrock.last)
    assert canonical.extra["dialect"] == "converse" and canonical.model == NOVA
    assert (canonical.system, canonical.last_user_message) == ("Be brief.", "Name a colour.")
    answer = json.loads(result["body"].read())
    assert answer["output"]["message"]["content"] == [{"text": TEXT.text}] and answer["stopReason"] == "end_turn"
    assert INVOKE.summarize(bedrock.last, bedrock.responses[-1]) == TEXT

    chunks = [json.loads(part["chunk"]["bytes"]) for part in invoke(bedrock, body, model=NOVA, stream=True)["body"]]
    assert list(chunks[0]) == ["messageStart"] and "metadata" in chunks[-1]
    assert INVOKE.summarize(bedrock.last, decoded(bedrock.responses[-1])) == TEXT


def test_invoke_generic_vendor_is_matched_on_the_whole_body() -> None:
    body = {"prompt": "<|begin_of_text|>Name a colour.", "max_gen_len": 20, "temperature": 0.5}
    bedrock = Bedrock(Summary(text="Deep blue.", finish_reason="stop", usage={"input_tokens": 7, "output_tokens": 2}))
    result = invoke(bedrock, body, model=LLAMA)
    canonical = INVOKE.canonical(bedrock.last)
    assert canonical.extra["dialect"] == "generic"
    assert canonical.last_user_message == "<|begin_of_text|>Name a colour."
    invoke(bedrock, {**body, "temperature": 0.9}, model=LLAMA)
    assert INVOKE.canonical(bedrock.last).fingerprint != canonical.fingerprint
    assert json.loads(result["body"].read()) == {
        "generation": "Deep blue.",
        "prompt_token_count": 7,
        "generation_token_count": 2,
        "stop_reason": "stop",
    }
    assert INVOKE.summarize(bedrock.requests[0], bedrock.responses[0]) == bedrock.summary

    chunks = [json.loads(part["chunk"]["bytes"]) for part in invoke(bedrock, body, model=LLAMA, stream=True)["body"]]
    assert len(chunks) == 2 and "".join(c["generation"] for c in chunks) == "Deep blue."
    assert chunks[-1]["stop_reason"] == "stop" and chunks[0]["stop_reason"] is None
    assert INVOKE.summarize(bedrock.last, decoded(bedrock.responses[-1])) == bedrock.summary


def test_invoke_titan_embeddings() -> None:
    summary = Summary(embeddings=[[0.25, -0.5, 0.125]], usage={"input_tokens": 3, "output_tokens": 0})
    bedrock = Bedrock(summary)
    result = invoke(bedrock, {"inputText": "Hello world"}, model="amazon.titan-embed-text-v2:0")
    assert INVOKE.canonical(bedrock.last).embedding_input == ["Hello world"]
    assert json.loads(result["body"].read()) == {"embedding": [0.25, -0.5, 0.125], "inputTextTokenCount": 3}
    assert INVOKE.summarize(bedrock.last, bedrock.responses[-1]) == summary


def test_invoke_errors_use_the_bedrock_envelope() -> None:
    bedrock = Bedrock(answer=lambda request: INVOKE.error(403, "You don't have access to the model with the specified model ID."))
    with pytest.raises(ClientError) as raised:
        invoke(bedrock, anthropic_body())
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert bedrock.responses[-1].json == {"message": "You don't have access to the model with the specified model ID."}


def test_rendering_is_deterministic() -> None:
    """Request ids and tool-use ids derive from the answer: replays are byte-identical."""
    summary = Summary(text="Let me check.", tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris"})])
    request = Request(method="POST", url=f"{HOST}/model/{CLAUDE}/converse", body=Payload.json({"messages": converse_messages()}))
    canonical = CONVERSE.canonical(request)
    for stream in (False, True):
        first = CONVERSE.render(summary, canonical, stream=stream)
        assert wire_bytes(first) == wire_bytes(CONVERSE.render(summary, canonical, stream=stream))
        assert first.headers == CONVERSE.render(summary, canonical, stream=stream).headers
