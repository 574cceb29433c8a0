"""Everything a hand-written answer (an llmock fixture's response) can say,
rendered by every HTTP family and read the way clients read it.

Each answer is a :class:`Summary` as the fixture loader builds it: text and
tool calls together, text and calls in a given order (llmock's ``blocks``),
reasoning, pinned id/created/system_fingerprint/model with usage and a finish
reason in OpenAI's vocabulary, and web searches. The replay engine serves
them; the real SDKs (openai chat and Responses, anthropic, google-genai) read
them streaming and not, and the families without an SDK here (Bedrock,
Cohere, Ollama) are read from their documented wire formats.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer

from llmock_proxy.canonical import CanonicalRequest, Summary, ToolCall
from llmock_proxy.providers.anthropic_messages import AnthropicMessages
from llmock_proxy.providers.base import RenderOptions, answer_parts
from llmock_proxy.providers.bedrock.converse import BedrockConverse
from llmock_proxy.providers.bedrock.invoke import BedrockInvoke
from llmock_proxy.providers.cohere import CohereChat
from llmock_proxy.providers.gemini import GeminiGenerate
from llmock_proxy.providers.ollama import OllamaChat
from llmock_proxy.providers.openai_chat import OpenAIChat
from llmock_proxy.providers.openai_responses import OpenAIResponses
from llmock_proxy.replay.fixture import Fixture
from llmock_proxy.replay.session import ReplaySession
from llmock_proxy.wire import NDJSONDecoder, SSEDecoder
from tests.harness.clients import anthropic_client, genai_client, openai_client
from tests.harness.http import httpx
from tests.support.replay import EngineThread

PARIS = ToolCall("get_weather", {"city": "Paris"}, id="call_paris")
ROME = ToolCall("get_weather", {"city": "Rome"}, id="call_rome")
MIXED_TEXT = "Let me check both cities."
REASONING = "Six times seven is forty-two."
QUERIES = ["weather Paris", "weather Paris tomorrow"]
PINNED_ID = "answer-pinned-1"
PINNED_CREATED = 1_712_345_678
PINNED_MODEL = "pinned-model-2"

ANSWERS: dict[str, Summary] = {
    # aimock's {content, toolCalls}: the text first, then the calls.
    "mixed answer": Summary(text=MIXED_TEXT, tool_calls=[PARIS, ROME]),
    # aimock's blocks: a call first, then text, a call, text.
    "ordered answer": Summary(
        text="Paris is sunny. Rome is rainy.",
        tool_calls=[PARIS, ROME],
        segments=[0, "Paris is sunny. ", 1, "Rome is rainy."],
    ),
    "thinking answer": Summary(text="42.", reasoning=REASONING),
    # The overrides, usage in OpenAI's names without a total, a finish reason in OpenAI's vocabulary.
    "pinned answer": Summary(
        text="Cut short",
        response_id=PINNED_ID,
        created=PINNED_CREATED,
        system_fingerprint="fp_pinned42",
        model=PINNED_MODEL,
        usage={"prompt_tokens": 11, "completion_tokens": 7},
        finish_reason="length",
    ),
    "searched answer": Summary(text="Sunny in Paris.", web_searches=QUERIES),
}

# What each answer says, in order: ("text", text) or ("call", name, arguments).
MIXED_SAID = [
    ("text", MIXED_TEXT),
    ("call", "get_weather", {"city": "Paris"}),
    ("call", "get_weather", {"city": "Rome"}),
]
ORDERED_SAID = [
    ("call", "get_weather", {"city": "Paris"}),
    ("text", "Paris is sunny. "),
    ("call", "get_weather", {"city": "Rome"}),
    ("text", "Rome is rainy."),
]

STREAMS = [False, True]


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineThread]:
    fixtures = [
        Fixture(match={"userMessage": ask}, source=f"answers: {ask}", recorded=False, summary=summary)
        for ask, summary in ANSWERS.items()
    ]
    with EngineThread(ReplaySession(fixtures), timing="instant") as running:
        yield running


def said(pieces: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Pieces of an answer with consecutive text joined (a stream cuts text
    up) and empty text left out."""
    out: list[tuple[Any, ...]] = []
    for piece in pieces:
        if piece[0] != "text":
            out.append(piece)
        elif out and out[-1][0] == "text":
            out[-1] = ("text", out[-1][1] + piece[1])
        elif piece[1]:
            out.append(piece)
    return out


# -- OpenAI Chat Completions -------------------------------------------------------------------


def _counts(usage: Any) -> tuple[int, int, int]:
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


def _chat(engine: EngineThread, ask: str, stream: bool) -> dict[str, Any]:
    """What the openai SDK reads: the pieces in order, the reasoning, and the envelope."""
    client = openai_client(base_url=f"{engine.url}/v1")
    kwargs: dict[str, Any] = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": ask}])
    if not stream:
        completion = client.chat.completions.create(**kwargs)
        choice = completion.choices[0]
        pieces: list[tuple[Any, ...]] = [("text", choice.message.content or "")]
        pieces += [("call", c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []]
        extra = choice.message.model_extra or {}
        return {
            "said": said(pieces),
            "ids": [c.id for c in choice.message.tool_calls or []],
            "reasoning": extra.get("reasoning_content"),
            "envelope": (completion.id, completion.created, completion.system_fingerprint, completion.model),
            "usage": _counts(completion.usage),
            "finish": choice.finish_reason,
        }
    pieces, ids, reasoning, usage, finish, envelope = [], [], "", None, None, set()
    arguments: dict[int, str] = {}
    names: dict[int, str] = {}
    order: list[tuple[str, Any]] = []
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs):
        envelope.add((chunk.id, chunk.created, chunk.system_fingerprint, chunk.model))
        if chunk.usage is not None:
            usage = _counts(chunk.usage)
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        finish = chunk.choices[0].finish_reason or finish
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        if delta.content:
            order.append(("text", delta.content))
        for call in delta.tool_calls or []:
            if call.id:
                ids.append(call.id)
                names[call.index] = call.function.name
                order.append(("call", call.index))
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    for entry in order:
        if entry[0] == "text":
            pieces.append(entry)
        else:
            pieces.append(("call", names[entry[1]], json.loads(arguments[entry[1]])))
    assert len(envelope) == 1, "every chunk repeats one id, created, fingerprint and model"
    return {
        "said": said(pieces),
        "ids": ids,
        "reasoning": reasoning or None,
        "envelope": envelope.pop(),
        "usage": usage,
        "finish": finish,
    }


@pytest.mark.parametrize("stream", STREAMS)
def test_openai_chat(engine: EngineThread, stream: bool) -> None:
    mixed = _chat(engine, "mixed answer", stream)
    assert mixed["said"] == MIXED_SAID and mixed["ids"] == ["call_paris", "call_rome"]
    assert mixed["finish"] == "tool_calls"
    assert _chat(engine, "ordered answer", stream)["said"] == (ORDERED_SAID if stream else [
        ("text", "Paris is sunny. Rome is rainy."), *(p for p in ORDERED_SAID if p[0] == "call")
    ])
    thinking = _chat(engine, "thinking answer", stream)
    assert thinking["said"] == [("text", "42.")] and thinking["reasoning"] == REASONING
    pinned = _chat(engine, "pinned answer", stream)
    assert pinned["envelope"] == (PINNED_ID, PINNED_CREATED, "fp_pinned42", PINNED_MODEL)
    assert pinned["usage"] == (11, 7, 18)
    assert pinned["finish"] == "length"


# -- OpenAI Responses ---------------------------------------------------------------------------


def _response(engine: EngineThread, ask: str, stream: bool) -> tuple[Any, list[str]]:
    """The final response object as the SDK assembles it, and the stream's event types."""
    client = openai_client(base_url=f"{engine.url}/v1")
    if not stream:
        return client.responses.create(model="gpt-4o-mini", input=ask), []
    kinds, final = [], None
    # The SDK's stream helper follows every event; its get_final_response()
    # waits for response.completed, so the terminal event is read instead
    # (an answer cut short ends with response.incomplete).
    with client.responses.stream(model="gpt-4o-mini", input=ask) as events:
        for event in events:
            kinds.append(event.type)
            if event.type in ("response.completed", "response.incomplete"):
                final = event.response
    return final, kinds


def _output_said(response: Any) -> list[tuple[Any, ...]]:
    pieces: list[tuple[Any, ...]] = []
    for item in response.output:
        if item.type == "message":
            pieces.append(("text", "".join(part.text for part in item.content)))
        elif item.type == "function_call":
            pieces.append(("call", item.name, json.loads(item.arguments)))
    return said(pieces)


@pytest.mark.parametrize("stream", STREAMS)
def test_openai_responses(engine: EngineThread, stream: bool) -> None:
    mixed, _ = _response(engine, "mixed answer", stream)
    assert [item.type for item in mixed.output] == ["message", "function_call", "function_call"]
    assert _output_said(mixed) == MIXED_SAID
    assert [item.call_id for item in mixed.output[1:]] == ["call_paris", "call_rome"]

    ordered, _ = _response(engine, "ordered answer", stream)
    assert [item.type for item in ordered.output] == ["function_call", "message", "function_call", "message"]
    assert _output_said(ordered) == ORDERED_SAID
    assert ordered.output_text == "Paris is sunny. Rome is rainy."

    thinking, kinds = _response(engine, "thinking answer", stream)
    assert [item.type for item in thinking.output] == ["reasoning", "message"]
    assert thinking.output[0].summary[0].text == REASONING and thinking.output_text == "42."
    if stream:
        assert "response.reasoning_summary_text.delta" in kinds

    pinned, _ = _response(engine, "pinned answer", stream)
    assert (pinned.id, pinned.created_at, pinned.model) == (PINNED_ID, PINNED_CREATED, PINNED_MODEL)
    assert (pinned.usage.input_tokens, pinned.usage.output_tokens, pinned.usage.total_tokens) == (11, 7, 18)
    assert pinned.status == "incomplete" and pinned.incomplete_details.reason == "max_output_tokens"

    searched, kinds = _response(engine, "searched answer", stream)
    assert [item.type for item in searched.output] == ["web_search_call", "web_search_call", "message"]
    assert [item.action.query for item in searched.output[:2]] == QUERIES
    assert all(item.status == "completed" for item in searched.output[:2])
    assert searched.output_text == "Sunny in Paris."
    if stream:
        first = [kind for kind in kinds if kind.startswith("response.web_search_call.")][:3]
        assert first == [
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
        ]
        # The searches come before the message's first text delta.
        assert kinds.index("response.web_search_call.completed") < kinds.index("response.output_text.delta")


# -- Anthropic Messages ------------------------------------------------------------------------


def _message(engine: EngineThread, ask: str, stream: bool) -> Any:
    client = anthropic_client(base_url=engine.url)
    kwargs: dict[str, Any] = dict(
        model="claude-3-5-haiku-latest", max_tokens=100, messages=[{"role": "user", "content": ask}]
    )
    if stream:
        with client.messages.stream(**kwargs) as events:
            return events.get_final_message()
    return client.messages.create(**kwargs)


def _blocks_said(message: Any) -> list[tuple[Any, ...]]:
    pieces: list[tuple[Any, ...]] = []
    for block in message.content:
        if block.type == "text":
            pieces.append(("text", block.text))
        elif block.type == "tool_use":
            pieces.append(("call", block.name, block.input))
    return said(pieces)


@pytest.mark.parametrize("stream", STREAMS)
def test_anthropic(engine: EngineThread, stream: bool) -> None:
    mixed = _message(engine, "mixed answer", stream)
    assert [block.type for block in mixed.content] == ["text", "tool_use", "tool_use"]
    assert _blocks_said(mixed) == MIXED_SAID and mixed.stop_reason == "tool_use"
    assert [block.id for block in mixed.content[1:]] == ["call_paris", "call_rome"]

    ordered = _message(engine, "ordered answer", stream)
    assert [block.type for block in ordered.content] == ["tool_use", "text", "tool_use", "text"]
    assert _blocks_said(ordered) == ORDERED_SAID

    thinking = _message(engine, "thinking answer", stream)
    assert [block.type for block in thinking.content] == ["thinking", "text"]
    assert thinking.content[0].thinking == REASONING
    # A client sends the block back with its signature; it must not be empty.
    assert thinking.content[0].signature

    pinned = _message(engine, "pinned answer", stream)
    assert (pinned.id, pinned.model, pinned.stop_reason) == (PINNED_ID, PINNED_MODEL, "max_tokens")
    assert (pinned.usage.input_tokens, pinned.usage.output_tokens) == (11, 7)


# -- Gemini -----------------------------------------------------------------------------------------


def _generate(engine: EngineThread, ask: str, stream: bool) -> list[Any]:
    client = genai_client(base_url=engine.url)
    if stream:
        return list(client.models.generate_content_stream(model="gemini-2.0-flash", contents=ask))
    return [client.models.generate_content(model="gemini-2.0-flash", contents=ask)]


def _parts_said(chunks: list[Any]) -> tuple[list[tuple[Any, ...]], str]:
    """(what the parts say in order, the thought text)."""
    pieces: list[tuple[Any, ...]] = []
    thought = ""
    for chunk in chunks:
        for part in chunk.candidates[0].content.parts or []:
            if part.thought:
                thought += part.text or ""
            elif part.function_call is not None:
                pieces.append(("call", part.function_call.name, dict(part.function_call.args)))
            elif part.text is not None:
                pieces.append(("text", part.text))
    return said(pieces), thought


@pytest.mark.parametrize("stream", STREAMS)
def test_gemini(engine: EngineThread, stream: bool) -> None:
    assert _parts_said(_generate(engine, "mixed answer", stream)) == (MIXED_SAID, "")
    assert _parts_said(_generate(engine, "ordered answer", stream)) == (ORDERED_SAID, "")
    assert _parts_said(_generate(engine, "thinking answer", stream)) == ([("text", "42.")], REASONING)

    last = _generate(engine, "pinned answer", stream)[-1]
    assert last.candidates[0].finish_reason == "MAX_TOKENS"
    usage = last.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (11, 7, 18)
    assert (last.response_id, last.model_version) == (PINNED_ID, PINNED_MODEL)


# -- Bedrock, Cohere, Ollama: read from their wire formats ------------------------------------------------


def post(engine: EngineThread, path: str, body: dict[str, Any]) -> httpx.Response:
    answer = httpx.post(f"{engine.url}{path}", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def eventstream(answer: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    parser = EventStreamBuffer()
    parser.add_data(answer.content)
    return [(message.headers[":event-type"], json.loads(message.payload)) for message in parser]


def sse(answer: httpx.Response) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    return [event.data for event in decoder.feed(answer.content) + decoder.close()]


def _converse_said(engine: EngineThread, ask: str, stream: bool) -> tuple[list[tuple[Any, ...]], str, dict[str, Any]]:
    """(what the content blocks say, stopReason, usage) of a Converse answer."""
    path = "/model/anthropic.claude-3-haiku/" + ("converse-stream" if stream else "converse")
    answer = post(engine, path, {"messages": [{"role": "user", "content": [{"text": ask}]}]})
    if not stream:
        body = answer.json()
        pieces: list[tuple[Any, ...]] = []
        for block in body["output"]["message"]["content"]:
            if "text" in block:
                pieces.append(("text", block["text"]))
            elif "toolUse" in block:
                pieces.append(("call", block["toolUse"]["name"], block["toolUse"]["input"]))
        return said(pieces), body["stopReason"], body["usage"]
    blocks: dict[int, list[Any]] = {}
    stop, usage = "", {}
    for name, payload in eventstream(answer):
        index = payload.get("contentBlockIndex")
        if name == "contentBlockStart":
            blocks[index] = ["call", payload["start"]["toolUse"]["name"], ""]
        elif name == "contentBlockDelta" and "text" in payload["delta"]:
            blocks.setdefault(index, ["text", ""])[1] += payload["delta"]["text"]
        elif name == "contentBlockDelta" and "toolUse" in payload["delta"]:
            blocks[index][2] += payload["delta"]["toolUse"]["input"]
        elif name == "messageStop":
            stop = payload["stopReason"]
        elif name == "metadata":
            usage = payload["usage"]
    pieces = [
        ("text", b[1]) if b[0] == "text" else ("call", b[1], json.loads(b[2]))
        for _, b in sorted(blocks.items())
    ]
    return said(pieces), stop, usage


@pytest.mark.parametrize("stream", STREAMS)
def test_bedrock_converse(engine: EngineThread, stream: bool) -> None:
    assert _converse_said(engine, "mixed answer", stream)[:2] == (MIXED_SAID, "tool_use")
    assert _converse_said(engine, "ordered answer", stream)[0] == ORDERED_SAID
    _, stop, usage = _converse_said(engine, "pinned answer", stream)
    assert stop == "max_tokens"
    assert (usage["inputTokens"], usage["outputTokens"], usage["totalTokens"]) == (11, 7, 18)


@pytest.mark.parametrize("stream", STREAMS)
def test_bedrock_invoke_anthropic(engine: EngineThread, stream: bool) -> None:
    """Anthropic on InvokeModel speaks the Messages API: blocks in order, thinking signed."""
    path = "/model/anthropic.claude-3-haiku/" + ("invoke-with-response-stream" if stream else "invoke")

    def ask(text: str) -> list[dict[str, Any]]:
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
                "messages": [{"role": "user", "content": text}]}
        answer = post(engine, path, body)
        if not stream:
            return answer.json()["content"]
        events = [json.loads(base64.b64decode(p["bytes"])) for name, p in eventstream(answer) if name == "chunk"]
        blocks: list[dict[str, Any]] = []
        for event in events:
            if event["type"] == "content_block_start":
                blocks.append(dict(event["content_block"], _json=""))
            elif event["type"] == "content_block_delta":
                delta, block = event["delta"], blocks[event["index"]]
                if delta["type"] == "text_delta":
                    block["text"] += delta["text"]
                elif delta["type"] == "input_json_delta":
                    block["_json"] += delta["partial_json"]
                elif delta["type"] == "thinking_delta":
                    block["thinking"] += delta["thinking"]
                elif delta["type"] == "signature_delta":
                    block["signature"] += delta["signature"]
        for block in blocks:
            if block["type"] == "tool_use":
                block["input"] = json.loads(block["_json"])
        return blocks

    ordered = ask("ordered answer")
    assert [(b["type"], b.get("text") or b.get("input")) for b in ordered] == [
        ("tool_use", {"city": "Paris"}),
        ("text", "Paris is sunny. "),
        ("tool_use", {"city": "Rome"}),
        ("text", "Rome is rainy."),
    ]
    thinking = ask("thinking answer")
    assert thinking[0]["type"] == "thinking" and thinking[0]["thinking"] == REASONING and thinking[0]["signature"]


@pytest.mark.parametrize("stream", STREAMS)
def test_cohere(engine: EngineThread, stream: bool) -> None:
    def ask(text: str) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
        """(what the answer says, in stream order when streamed; the envelope)"""
        answer = post(engine, "/v2/chat", {"model": "command-r", "stream": stream,
                                           "messages": [{"role": "user", "content": text}]})
        if not stream:
            body = answer.json()
            message = body["message"]
            pieces: list[tuple[Any, ...]] = [("text", c["text"]) for c in message.get("content", [])]
            pieces += [("call", c["function"]["name"], json.loads(c["function"]["arguments"]))
                       for c in message.get("tool_calls", [])]
            return said(pieces), {"id": body["id"], "finish": body["finish_reason"], "usage": body["usage"]}
        events = sse(answer)
        pieces, calls = [], {}
        for event in events:
            if event["type"] == "content-delta":
                pieces.append(("text", event["delta"]["message"]["content"]["text"]))
            elif event["type"] == "tool-call-start":
                calls[event["index"]] = event["delta"]["message"]["tool_calls"]["function"]
                pieces.append(("call", event["index"]))
            elif event["type"] == "tool-call-delta":
                calls[event["index"]]["arguments"] += event["delta"]["message"]["tool_calls"]["function"]["arguments"]
        pieces = [
            ("call", calls[p[1]]["name"], json.loads(calls[p[1]]["arguments"])) if p[0] == "call" else p
            for p in pieces
        ]
        end = events[-1]["delta"]
        return said(pieces), {"id": events[0]["id"], "finish": end["finish_reason"], "usage": end["usage"]}

    mixed, envelope = ask("mixed answer")
    assert mixed == MIXED_SAID and envelope["finish"] == "TOOL_CALL"
    ordered, _ = ask("ordered answer")
    assert ordered == (ORDERED_SAID if stream else [
        ("text", "Paris is sunny. Rome is rainy."), *(p for p in ORDERED_SAID if p[0] == "call")
    ])
    _, pinned = ask("pinned answer")
    assert pinned["id"] == PINNED_ID and pinned["finish"] == "MAX_TOKENS"
    assert pinned["usage"]["tokens"] == {"input_tokens": 11, "output_tokens": 7}


@pytest.mark.parametrize("stream", STREAMS)
def test_ollama_chat(engine: EngineThread, stream: bool) -> None:
    def ask(text: str) -> list[dict[str, Any]]:
        answer = post(engine, "/api/chat", {"model": "llama3.2", "stream": stream,
                                            "messages": [{"role": "user", "content": text}]})
        if not stream:
            return [answer.json()]
        decoder = NDJSONDecoder()
        return [line.data for line in decoder.feed(answer.content) + decoder.close()]

    def said_by(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        pieces: list[tuple[Any, ...]] = []
        for line in lines:
            pieces.append(("text", line["message"]["content"]))
            pieces += [("call", c["function"]["name"], c["function"]["arguments"])
                       for c in line["message"].get("tool_calls", [])]
        return said(pieces)

    assert said_by(ask("mixed answer")) == MIXED_SAID
    assert said_by(ask("ordered answer")) == (ORDERED_SAID if stream else [
        ("text", "Paris is sunny. Rome is rainy."), *(p for p in ORDERED_SAID if p[0] == "call")
    ])
    thinking = ask("thinking answer")
    assert "".join(line["message"].get("thinking", "") for line in thinking) == REASONING
    last = ask("pinned answer")[-1]
    assert (last["model"], last["done_reason"], last["prompt_eval_count"], last["eval_count"]) == (
        PINNED_MODEL, "length", 11, 7
    )


# -- finish reasons and usage, straight from the renderers ---------------------------------------------------


def _finish(provider: Any, summary: Summary, stream: bool = False) -> Any:
    request = CanonicalRequest(family=provider.family, model="m")
    if isinstance(provider, BedrockInvoke):
        request.extra["dialect"] = "anthropic"
    answer = provider.render(summary, request, stream=stream)
    body = answer.json if answer.body is not None else None
    if isinstance(provider, OpenAIChat):
        return body["choices"][0]["finish_reason"]
    if isinstance(provider, OpenAIResponses):
        return body["status"], (body["incomplete_details"] or {}).get("reason")
    if isinstance(provider, (AnthropicMessages, BedrockInvoke)):
        return body["stop_reason"]
    if isinstance(provider, GeminiGenerate):
        return body["candidates"][0]["finishReason"]
    if isinstance(provider, BedrockConverse):
        return body["stopReason"]
    if isinstance(provider, CohereChat):
        return body["finish_reason"]
    return body["done_reason"]


PROVIDERS = [OpenAIChat(), OpenAIResponses(), AnthropicMessages(), GeminiGenerate(), BedrockConverse(),
             BedrockInvoke(), CohereChat(), OllamaChat()]
# Each family's word for OpenAI's stop, tool_calls, length and content_filter.
TRANSLATED = {
    "openai.chat": ["stop", "tool_calls", "length", "content_filter"],
    "openai.responses": [("completed", None), ("completed", None), ("incomplete", "max_output_tokens"),
                         ("incomplete", "content_filter")],
    "anthropic.messages": ["end_turn", "tool_use", "max_tokens", "refusal"],
    "gemini.generate": ["STOP", "STOP", "MAX_TOKENS", "SAFETY"],
    "bedrock.converse": ["end_turn", "tool_use", "max_tokens", "content_filtered"],
    "bedrock.invoke": ["end_turn", "tool_use", "max_tokens", "refusal"],
    "cohere.chat": ["COMPLETE", "TOOL_CALL", "MAX_TOKENS", "TOOL_CALL"],
    "ollama.chat": ["stop", "stop", "length", "stop"],
}


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.family)
def test_finish_reasons_in_openai_vocabulary_are_translated(provider: Any) -> None:
    """A hand-written finish reason wins over what the answer holds: "stop"
    with a tool call is the family's plain stop, "length" its cut-off."""
    got = [_finish(provider, Summary(text="x", tool_calls=[PARIS], finish_reason=reason))
           for reason in ("stop", "tool_calls", "length", "content_filter")]
    assert got == TRANSLATED[provider.family]


@pytest.mark.parametrize(
    ("provider", "reason"),
    [(AnthropicMessages(), "pause_turn"), (GeminiGenerate(), "RECITATION"), (BedrockConverse(), "guardrail_intervened"),
     (CohereChat(), "STOP_SEQUENCE"), (OllamaChat(), "load")],
    ids=lambda value: value if isinstance(value, str) else value.family,
)
def test_a_family_own_finish_reason_passes_through(provider: Any, reason: str) -> None:
    assert _finish(provider, Summary(text="x", finish_reason=reason)) == reason


def test_usage_totals_are_derived_unless_given() -> None:
    request = CanonicalRequest(family="gemini.generate", model="gemini-2.0-flash")
    gemini = GeminiGenerate()
    derived = gemini.render(Summary(text="x", usage={"promptTokenCount": 3, "candidatesTokenCount": 4}), request,
                            stream=False).json["usageMetadata"]
    assert derived == {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}
    given = gemini.render(Summary(text="x", usage={"promptTokenCount": 3, "candidatesTokenCount": 4,
                                                   "totalTokenCount": 9}), request, stream=False).json
    assert given["usageMetadata"]["totalTokenCount"] == 9
    chat = OpenAIChat().render(Summary(text="x", usage={"input_tokens": 3, "output_tokens": 4, "total_tokens": 10}),
                               CanonicalRequest(family="openai.chat"), stream=False).json
    assert [chat["usage"][key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")] == [3, 4, 10]


def test_answer_parts_keeps_every_call() -> None:
    """Segments give the order; a call they leave out still follows, and junk is skipped."""
    summary = Summary(text="ab", tool_calls=[PARIS, ROME], segments=["a", 1, "", 7, "b", 1])
    assert answer_parts(summary) == ["a", 1, "b", 0]
    assert answer_parts(Summary(text="hi", tool_calls=[PARIS])) == ["hi", 0]
    assert answer_parts(Summary()) == []


def test_render_options_replaced_is_dataclasses_replace_and_refuses_an_unknown_field() -> None:
    import dataclasses

    options = RenderOptions(chunk_size=7, answer_key="k")
    changed = options.replaced(include_usage=False, encoding_format="base64")
    assert changed == dataclasses.replace(options, include_usage=False, encoding_format="base64")
    assert options.include_usage is True  # the original is untouched
    with pytest.raises(TypeError, match="include_usages"):
        options.replaced(include_usages=False)
