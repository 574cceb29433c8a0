"""The Ollama providers: /api/chat, /api/generate, /api/embed(dings).

Request bodies follow the Ollama API reference (docs/api.md); recorded
responses are written as Ollama sends them. Rendered streams go through the
project's NDJSON codec, so what is checked is what a client would read.
"""

from __future__ import annotations

import json

import pytest

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.model import NDJSONLine, Payload, Request, Response
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.catalog import identify
from llmock_proxy.providers.ollama import OllamaChat, OllamaEmbed, OllamaGenerate
from tests.support.providers import decode_stream, wire_bytes

BASE = "http://localhost:11434"
CHAT, GENERATE, EMBED = OllamaChat(), OllamaGenerate(), OllamaEmbed()

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The location, e.g. San Francisco, CA"},
                "format": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "format"],
        },
    },
}


def post(path: str, body: dict) -> Request:
    return Request(
        method="POST",
        url=BASE + path,
        headers={"content-type": "application/json"},
        body=Payload.json(body),
    )


def tool_conversation(call_id: str | None = None) -> dict:
    """A chat that ran a tool and sends the result back (docs: "Chat request (with tools)")."""
    call: dict = {"function": {"name": "get_current_weather", "arguments": {"location": "Paris, FR", "format": "celsius"}}}
    if call_id:
        call["id"] = call_id
    return {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather today in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "22 degrees and sunny", "tool_name": "get_current_weather"},
        ],
        "tools": [WEATHER_TOOL],
        "stream": False,
    }


def wire_lines(response: Response) -> bytes:
    assert response.lines is not None
    return wire_bytes(response)


def decode_lines(raw: bytes, piece: int = 5) -> list[NDJSONLine]:
    return decode_stream("ndjson", raw, piece)


# -- detection and stream default -------------------------------------------------


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/api/chat", "ollama.chat"),
        ("/api/generate", "ollama.generate"),
        ("/api/embed", "ollama.embed"),
        ("/api/embeddings", "ollama.embed"),
        ("/ollama/api/chat", "ollama.chat"),  # behind a path prefix
    ],
)
def test_catalog_routes_ollama_paths(path: str, family: str) -> None:
    assert identify("POST", BASE + path).family == family


def test_other_ollama_endpoints_are_not_claimed() -> None:
    for path in ("/api/tags", "/api/pull", "/api/show"):
        assert identify("POST", BASE + path).family == "generic"
    assert identify("GET", BASE + "/api/chat").family == "generic"


def test_ollama_streams_unless_the_body_says_false() -> None:
    base = {"model": "llama3.2", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
    assert CHAT.canonical(post("/api/chat", base)).stream is True
    assert CHAT.canonical(post("/api/chat", {**base, "stream": True})).stream is True
    assert CHAT.canonical(post("/api/chat", {**base, "stream": False})).stream is False
    assert CHAT.is_stream_request(post("/api/chat", base)) is True
    assert GENERATE.canonical(post("/api/generate", {"model": "llama3.2", "prompt": "hi"})).stream is True
    assert GENERATE.canonical(post("/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False})).stream is False
    assert EMBED.canonical(post("/api/embed", {"model": "all-minilm", "input": "hi"})).stream is False


# -- canonical requests -------------------------------------------------------------


def test_chat_canonical_request_with_tools_and_results() -> None:
    canonical = CHAT.canonical(post("/api/chat", tool_conversation()))
    assert canonical.family == "ollama.chat"
    assert canonical.model == "llama3.2"
    assert canonical.system == "You are terse."
    assert [m.role for m in canonical.messages] == ["user", "assistant", "tool"]
    assert canonical.last_user_message == "What is the weather today in Paris?"
    call = canonical.messages[1].tool_calls[0]
    assert (call.name, call.arguments) == ("get_current_weather", {"location": "Paris, FR", "format": "celsius"})
    result = canonical.last_tool_result
    assert result is not None and result.content == "22 degrees and sunny" and result.name == "get_current_weather"
    assert canonical.tool_names == ["get_current_weather"]
    assert canonical.tools[0].parameters["required"] == ["location", "format"]


def test_format_becomes_the_response_format() -> None:
    base = {"model": "llama3.2", "messages": [{"role": "user", "content": "Tell me about Canada."}]}
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    assert CHAT.canonical(post("/api/chat", {**base, "format": "json"})).response_format == {"type": "json_object"}
    assert CHAT.canonical(post("/api/chat", {**base, "format": schema})).response_format == {
        "type": "json_schema",
        "schema": schema,
    }
    assert CHAT.canonical(post("/api/chat", base)).response_format is None


def test_generate_canonical_request() -> None:
    body = {
        "model": "codellama:code",
        "prompt": "def compute_gcd(a, b):",
        "suffix": "    return result",
        "system": "Complete the code.",
        "options": {"temperature": 0},
        "stream": False,
    }
    canonical = GENERATE.canonical(post("/api/generate", body))
    assert canonical.family == "ollama.generate"
    assert canonical.system == "Complete the code."
    assert canonical.last_user_message == "def compute_gcd(a, b):"
    assert canonical.extra["suffix"] == "    return result"
    without_suffix = GENERATE.canonical(post("/api/generate", {k: v for k, v in body.items() if k != "suffix"}))
    assert without_suffix.fingerprint != canonical.fingerprint


def test_embed_canonical_request_string_list_and_legacy() -> None:
    one = EMBED.canonical(post("/api/embed", {"model": "all-minilm", "input": "Why is the sky blue?"}))
    many = EMBED.canonical(post("/api/embed", {"model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"]}))
    legacy = EMBED.canonical(post("/api/embeddings", {"model": "all-minilm", "prompt": "Why is the sky blue?"}))
    assert one.embedding_input == ["Why is the sky blue?"]
    assert many.embedding_input == ["Why is the sky blue?", "Why is the grass green?"]
    assert legacy.embedding_input == ["Why is the sky blue?"]
    # The legacy endpoint answers in another shape, so it is another request.
    assert legacy.fingerprint != one.fingerprint


# -- fingerprints -------------------------------------------------------------------


def test_fingerprint_is_stable_and_ignores_tool_call_ids() -> None:
    first = CHAT.canonical(post("/api/chat", tool_conversation("call_aaa")))
    again = CHAT.canonical(post("/api/chat", tool_conversation("call_aaa")))
    other_id = CHAT.canonical(post("/api/chat", tool_conversation("call_bbb")))
    assert first.fingerprint == again.fingerprint == other_id.fingerprint
    changed = tool_conversation()
    changed["messages"][-1]["content"] = "30 degrees"
    assert CHAT.canonical(post("/api/chat", changed)).fingerprint != first.fingerprint


def test_images_are_part_of_the_fingerprint() -> None:
    def body(image: str) -> dict:
        return {"model": "llava", "messages": [{"role": "user", "content": "What is in this picture?", "images": [image]}]}

    assert CHAT.canonical(post("/api/chat", body("aGVsbG8="))).fingerprint != CHAT.canonical(
        post("/api/chat", body("d29ybGQ="))
    ).fingerprint


# -- summaries of recorded responses ------------------------------------------------

RECORDED_CHAT_STREAM = [
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00", "message": {"role": "assistant", "content": "The"}, "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.485406455-07:00", "message": {"role": "assistant", "content": " sky"}, "done": False},
    {
        "model": "llama3.2",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342546000,
        "eval_count": 282,
        "eval_duration": 4535599000,
    },
]


def test_summarize_recorded_chat_stream() -> None:
    request = post("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "why is the sky blue?"}]})
    response = Response(status=200, lines=[NDJSONLine(data=d) for d in RECORDED_CHAT_STREAM])
    summary = CHAT.summarize(request, response)
    assert summary.text == "The sky"
    assert summary.finish_reason == "stop"
    assert summary.usage == {"input_tokens": 26, "output_tokens": 282}
    assert summary.model == "llama3.2"


def test_summarize_recorded_tool_call_json() -> None:
    body = {
        "model": "llama3.2",
        "created_at": "2024-07-22T20:33:28.123648Z",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}}}],
        },
        "done_reason": "stop",
        "done": True,
        "total_duration": 885095291,
        "load_duration": 3753500,
        "prompt_eval_count": 122,
        "prompt_eval_duration": 328493000,
        "eval_count": 33,
        "eval_duration": 552222000,
    }
    summary = CHAT.summarize(post("/api/chat", tool_conversation()), Response(status=200, body=Payload.json(body)))
    assert summary.tool_calls == [ToolCall(name="get_current_weather", arguments={"format": "celsius", "location": "Paris, FR"})]
    assert summary.usage == {"input_tokens": 122, "output_tokens": 33}


def test_summarize_errors_before_and_inside_a_stream() -> None:
    request = post("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    missing = CHAT.summarize(request, Response(status=404, body=Payload.json({"error": "model 'nope' not found"})))
    assert missing.error == {"status": 404, "message": "model 'nope' not found"}
    cut = Response(
        status=200,
        lines=[NDJSONLine(data=RECORDED_CHAT_STREAM[0]), NDJSONLine(data={"error": "an error was encountered while running the model"})],
    )
    summary = CHAT.summarize(request, cut)
    assert summary.text == "The"
    assert summary.error == {"status": 200, "message": "an error was encountered while running the model"}


# -- rendering ---------------------------------------------------------------------


def chat_request(stream: bool) -> Request:
    return post("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "why is the sky blue?"}], "stream": stream})


SUMMARIES = {
    "text": Summary(text="Because of Rayleigh scattering.", finish_reason="stop", usage={"input_tokens": 26, "output_tokens": 7}, model="llama3.2"),
    "tools": Summary(
        tool_calls=[ToolCall(name="get_current_weather", arguments={"location": "Paris, FR", "format": "celsius"})],
        finish_reason="stop",
        usage={"input_tokens": 122, "output_tokens": 33},
        model="llama3.2",
    ),
    "thinking": Summary(
        text="42.", reasoning="Let me think about it.", finish_reason="length", usage={"input_tokens": 3, "output_tokens": 9}, model="qwen3"
    ),
}


@pytest.mark.parametrize("name", sorted(SUMMARIES))
@pytest.mark.parametrize("stream", [False, True])
def test_chat_render_then_summarize_gives_the_summary_back(name: str, stream: bool) -> None:
    summary = SUMMARIES[name]
    request = chat_request(stream)
    response = CHAT.render(summary, CHAT.canonical(request), stream=stream, options=RenderOptions(chunk_size=3))
    if stream:
        # Through the codec, as a client would receive it.
        response = Response(status=response.status, headers=response.headers, lines=decode_lines(wire_lines(response)))
    assert CHAT.summarize(request, response) == summary


def test_chat_stream_lines_look_like_ollama() -> None:
    summary = SUMMARIES["text"]
    response = CHAT.render(summary, CHAT.canonical(chat_request(True)), stream=True, options=RenderOptions(chunk_size=8))
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in wire_lines(response).splitlines()]
    assert all(line["model"] == "llama3.2" and line["created_at"].endswith("Z") for line in lines)
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == summary.text
    final = lines[-1]
    assert final["done_reason"] == "stop"
    assert list(final)[-6:] == ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"]
    assert (final["prompt_eval_count"], final["eval_count"]) == (26, 7)


def test_chat_json_answer_with_tool_calls() -> None:
    summary = Summary(tool_calls=[ToolCall(name="get_current_weather", arguments={"location": "Paris, FR"}, id="call_1")])
    response = CHAT.render(summary, CHAT.canonical(chat_request(False)), stream=False)
    body = json.loads(response.body.to_bytes())
    assert body["done"] is True and body["message"]["role"] == "assistant"
    assert body["message"]["tool_calls"] == [
        {"id": "call_1", "function": {"index": 0, "name": "get_current_weather", "arguments": {"location": "Paris, FR"}}}
    ]
    assert body["model"] == "llama3.2"  # from the request when the summary has none


def test_foreign_finish_reasons_are_translated() -> None:
    request = CHAT.canonical(chat_request(False))
    for reason, expected in (("max_tokens", "length"), ("tool_calls", "stop"), (None, "stop")):
        body = CHAT.render(Summary(text="x", finish_reason=reason), request, stream=False).json
        assert body["done_reason"] == expected


@pytest.mark.parametrize("stream", [False, True])
def test_generate_render_then_summarize(stream: bool) -> None:
    request = post("/api/generate", {"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": stream})
    for summary in (SUMMARIES["text"], SUMMARIES["thinking"]):
        response = GENERATE.render(summary, GENERATE.canonical(request), stream=stream, options=RenderOptions(chunk_size=5))
        if stream:
            lines = [json.loads(line) for line in wire_lines(response).splitlines()]
            assert "".join(line["response"] for line in lines) == summary.text
            assert lines[-1]["done"] is True and lines[-1]["done_reason"] == summary.finish_reason
        else:
            assert set(response.json) >= {"model", "created_at", "response", "done", "done_reason", "eval_count"}
        assert GENERATE.summarize(request, response) == summary


def test_embed_render_then_summarize_both_endpoints() -> None:
    summary = Summary(embeddings=[[0.010071029, -0.0017594862, 0.05007221]], usage={"input_tokens": 8}, model="all-minilm")
    modern = post("/api/embed", {"model": "all-minilm", "input": "Why is the sky blue?"})
    response = EMBED.render(summary, EMBED.canonical(modern), stream=False)
    assert response.json["embeddings"] == summary.embeddings and response.json["prompt_eval_count"] == 8
    assert EMBED.summarize(modern, response) == summary

    legacy = post("/api/embeddings", {"model": "all-minilm", "prompt": "Why is the sky blue?"})
    response = EMBED.render(summary, EMBED.canonical(legacy), stream=False)
    assert response.json == {"embedding": [0.010071029, -0.0017594862, 0.05007221]}
    assert EMBED.summarize(legacy, response).embeddings == summary.embeddings


def test_errors_render_in_ollama_envelope() -> None:
    response = CHAT.error(404, "model 'llama9' not found, try pulling it first")
    assert response.status == 404 and response.json == {"error": "model 'llama9' not found, try pulling it first"}
    summary = Summary(error={"status": 404, "message": "model 'llama9' not found"})
    for stream in (False, True):
        rendered = CHAT.render(summary, CHAT.canonical(chat_request(stream)), stream=stream)
        assert rendered.status == 404 and CHAT.summarize(chat_request(stream), rendered) == summary


def test_error_inside_a_stream_renders_as_a_last_line() -> None:
    summary = Summary(text="The sky", model="llama3.2", error={"status": 200, "message": "model runner crashed"})
    request = chat_request(True)
    response = CHAT.render(summary, CHAT.canonical(request), stream=True)
    lines = [json.loads(line) for line in wire_lines(response).splitlines()]
    assert lines[-1] == {"error": "model runner crashed"}
    assert CHAT.summarize(request, response) == summary
