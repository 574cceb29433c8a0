"""Hand-written answers filled in from templates are the bytes a full render sends.

A session renders a fixture's answer in full the first time, makes a
template the second time the same fixture answers with the same model and
usage, and fills it in from then on (llmock_proxy/replay/answer_templates.py).
Every family that answers hand-written fixtures is asked three questions of
the same length, streamed and not; each answer is compared byte for byte
(status, headers, body or every stream item) with what a fresh session, which
renders it in full, sends for the same request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmock_proxy.replay.answer_templates import Templated
from llmock_proxy.replay.plan import Planner, Timing
from llmock_proxy.replay.schedule import steps
from llmock_proxy.replay.session import Hit, ReplaySession
from llmock_proxy.replay.wire_form import body_bytes, response_headers, stream_headers, stream_items

TOOL_ANSWER = {"content": "Checking the weather.", "toolCalls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}
TEXT_ANSWER = {"content": "A long answer that streams in several deltas, so that every chunk has ids in it. " * 2}
# An answer with the marker characters templates use: it can only be rendered in full.
ODD_ANSWER = {"content": "private use \ue000 0 \ue001 characters"}

FIXTURES = {"fixtures": [
    {"match": {"userMessage": "weather"}, "response": TOOL_ANSWER},
    {"match": {"userMessage": "story"}, "response": TEXT_ANSWER},
    {"match": {"userMessage": "odd"}, "response": ODD_ANSWER},
    # A fixture with delivery options: its stream is planned item by item.
    {"match": {"userMessage": "paced"}, "response": TEXT_ANSWER, "chunkSize": 25},
]}

OPENAI = {"content-type": "application/json", "authorization": "Bearer sk-test-templates"}
ANTHROPIC = {"content-type": "application/json", "x-api-key": "sk-test-templates", "anthropic-version": "2023-06-01"}
JSON = {"content-type": "application/json"}


def _chat(ask: str, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ask}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return "/v1/chat/completions", OPENAI, body


def _responses(ask: str, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    return "/v1/responses", OPENAI, {"model": "gpt-4o-mini", "input": ask, "stream": stream}


def _anthropic(ask: str, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    return "/v1/messages", ANTHROPIC, {
        "model": "claude-sonnet-4-5", "max_tokens": 256, "stream": stream,
        "messages": [{"role": "user", "content": ask}],
    }


def _gemini(ask: str, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/gemini-2.0-flash:{method}", {**JSON, "x-goog-api-key": "test-key"}, {
        "contents": [{"role": "user", "parts": [{"text": ask}]}],
    }


def _cohere(ask: str, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    return "/v2/chat", {**JSON, "authorization": "Bearer test-key"}, {
        "model": "command-r-plus", "stream": stream, "messages": [{"role": "user", "content": ask}],
    }


def _ollama(ask: str, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    return "/api/chat", JSON, {"model": "llama3.2", "stream": stream, "messages": [{"role": "user", "content": ask}]}


def _converse(ask: str, stream: bool) -> tuple[str, dict[str, str], dict[str, Any]]:
    path = "/model/anthropic.claude-3-haiku-20240307-v1:0/" + ("converse-stream" if stream else "converse")
    return path, {**JSON, "authorization": "AWS4-HMAC-SHA256 Credential=test"}, {
        "messages": [{"role": "user", "content": [{"text": ask}]}],
    }


FAMILIES = {
    "openai chat": _chat,
    "openai responses": _responses,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "cohere": _cohere,
    "ollama": _ollama,
    "bedrock converse": _converse,
}
# Families whose answers depend on the request only through model, usage and
# derived ids: these are templated. Responses echoes the request (and Ollama
# stamps the time): always rendered in full, which the comparison covers too.
TEMPLATED = {"openai chat", "anthropic", "gemini", "cohere", "bedrock converse"}


# Ollama stamps each answer with the time it is sent.
_CLOCK = re.compile(rb'"created_at":"[^"]*"')


def _unclocked(wire: tuple[int, list[tuple[str, str]], Any]) -> tuple[int, list[tuple[str, str]], Any]:
    status, headers, body = wire
    if isinstance(body, bytes):
        return status, headers, _CLOCK.sub(b'"created_at":-', body)
    return status, headers, [(at, _CLOCK.sub(b'"created_at":-', data)) for at, data in body]


@pytest.fixture
def fixture_file(tmp_path: Path) -> Path:
    path = tmp_path / "fixtures.json"
    path.write_text(json.dumps(FIXTURES))
    return path


def _ask(session: ReplaySession, family: str, question: str, stream: bool) -> Hit:
    path, headers, body = FAMILIES[family](question, stream)
    hit = session.resolve_raw("POST", f"http://127.0.0.1:4010{path}", headers, json.dumps(body).encode())
    assert isinstance(hit, Hit), hit
    return hit


def _wire(hit: Hit) -> tuple[int, list[tuple[str, str]], Any]:
    """What the planner sends for ``hit``: from the templated wire form when
    the hit has one, else encoded from its response."""
    cache = hit.wire_cache or {}
    if "body" in cache:
        headers, body = cache["body"]
        return hit.status, list(headers), body
    if "items" in cache:
        headers, items = cache["items"]
        return hit.status, list(headers), list(items)
    if "together" in cache:
        headers, at, data = cache["together"]
        return hit.status, list(headers), [(at, data)]
    response = hit.response
    if response.is_stream:
        return response.status, stream_headers(response), stream_items(response)
    return response.status, response_headers(response), body_bytes(response.body)


def _together(wire: tuple[int, list[tuple[str, str]], Any]) -> tuple[int, list[tuple[str, str]], Any]:
    """A stream's items joined, when they all go at one offset (as a planner sends them)."""
    status, headers, body = wire
    if isinstance(body, list) and len({at for at, _ in body}) == 1:
        return status, headers, [(body[0][0], b"".join(data for _, data in body))]
    return wire


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("topic", ["weather", "story", "paced"])
def test_a_templated_answer_is_the_full_render(fixture_file: Path, family: str, stream: bool, topic: str) -> None:
    session = ReplaySession.load(fixtures=[fixture_file])
    questions = [f"{topic} question {n}" for n in range(1, 5)]  # one length: one usage estimate
    served = [(_ask(session, family, q, stream)) for q in questions]
    templated = [isinstance(hit.answer, Templated) for hit in served]
    if family in TEMPLATED:
        assert templated == [False, True, True, True]  # full render, then the template
    else:
        assert not any(templated)
    for question, hit in zip(questions, served):
        reference = _ask(ReplaySession.load(fixtures=[fixture_file]), family, question, stream)
        assert not isinstance(reference.answer, Templated)
        wire, full = _wire(hit), _wire(reference)
        if stream and family in TEMPLATED and isinstance(hit.answer, Templated):
            # Fixture options (chunkSize) keep a stream item by item; without, it goes all at once.
            assert ("together" in (hit.wire_cache or {})) == (topic != "paced"), question
        assert _unclocked(_together(wire)) == _unclocked(_together(full)), question
    if family in TEMPLATED:
        # The response model of a templated answer (made when asked for) says what was sent.
        last = served[-1]
        wire = _wire(last)
        assert isinstance(last.answer, Templated)
        assert last.response.status == wire[0]
        assert _together(_wire(Hit(last.provider, last.view, last.fixture, last.response, True, 0))) == _together(wire)


def test_each_question_gets_its_own_ids(fixture_file: Path) -> None:
    session = ReplaySession.load(fixtures=[fixture_file])
    bodies = [json.loads(_wire(_ask(session, "openai chat", f"weather question {n}", False))[2]) for n in range(5)]
    ids = [body["id"] for body in bodies]
    calls = [body["choices"][0]["message"]["tool_calls"][0]["id"] for body in bodies]
    assert len(set(ids)) == len(ids) and len(set(calls)) == len(calls)
    assert all(i.startswith("chatcmpl-") and len(i) == len("chatcmpl-") + 29 for i in ids)
    assert all(isinstance(body["created"], int) for body in bodies)
    assert [b["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] for b in bodies] == [
        json.dumps({"city": "Paris"}, separators=(",", ":"))
    ] * 5


def test_a_new_model_or_prompt_length_gets_its_own_template(fixture_file: Path) -> None:
    session = ReplaySession.load(fixtures=[fixture_file])
    for model in ("gpt-4o-mini", "gpt-4.1", "gpt-4o-mini"):
        for question in ("weather a", "weather b", "weather c", "weather in a much longer question"):
            path, headers, body = _chat(question, False)
            body["model"] = model
            hit = session.resolve_raw("POST", f"http://127.0.0.1{path}", headers, json.dumps(body).encode())
            assert isinstance(hit, Hit)
            sent = json.loads(_wire(hit)[2])
            assert sent["model"] == model
            assert sent["usage"]["prompt_tokens"] == -(-len(question) // 4)


def test_an_answer_with_the_marker_characters_is_rendered_in_full(fixture_file: Path) -> None:
    session = ReplaySession.load(fixtures=[fixture_file])
    for n in range(4):
        hit = _ask(session, "openai chat", f"odd question {n}", False)
        assert not isinstance(hit.answer, Templated)
        assert json.loads(_wire(hit)[2])["choices"][0]["message"]["content"] == ODD_ANSWER["content"]


@pytest.mark.parametrize("timing", ["recorded", "instant", "scale:2"])
@pytest.mark.parametrize("topic", ["story", "paced"])
def test_a_templated_stream_is_paced_like_a_rendered_one(fixture_file: Path, topic: str, timing: str) -> None:
    planner = Planner(Timing.parse(timing))
    session = ReplaySession.load(fixtures=[fixture_file])
    hits = [_ask(session, "anthropic", f"{topic} question {n}", True) for n in range(3)]
    assert isinstance(hits[-1].answer, Templated)
    reference = _ask(ReplaySession.load(fixtures=[fixture_file]), "anthropic", f"{topic} question 2", True)
    templated, rendered = planner.plan(hits[-1], 0.0), planner.plan(reference, 0.0)
    assert rendered.chunks is not None and len(rendered.chunks) > 3
    assert (templated.status, templated.headers) == (rendered.status, rendered.headers)
    # What the writers put on the wire, and when.
    assert [(s.at, s.data, s.end) for s in steps(templated)] == [(s.at, s.data, s.end) for s in steps(rendered)]
    if topic == "paced":  # a fixture with delivery options keeps its items (what a cut would count)
        assert templated.chunks == rendered.chunks


def test_an_answer_that_echoes_the_request_is_rendered_for_each(fixture_file: Path) -> None:
    # The Responses API echoes the request's instructions and tools in its answer.
    session = ReplaySession.load(fixtures=[fixture_file])
    for n in range(4):
        tool = {"type": "function", "name": f"tool_{n}", "parameters": {"type": "object", "properties": {}}}
        body = {"model": "gpt-4o-mini", "input": "weather question", "instructions": f"Be brief {n}.", "tools": [tool]}
        hit = session.resolve_raw("POST", "http://127.0.0.1/v1/responses", OPENAI, json.dumps(body).encode())
        assert isinstance(hit, Hit)
        sent = json.loads(_wire(hit)[2])
        assert sent["instructions"] == f"Be brief {n}."
        assert [t["name"] for t in sent["tools"]] == [f"tool_{n}"]


_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)  # quotes, backslashes, control and private-use characters
_ARGUMENTS = st.dictionaries(_TEXT, st.one_of(_TEXT, st.integers(), st.booleans(), st.none()), max_size=3)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_TEXT, arguments=_ARGUMENTS, family=st.sampled_from(["openai chat", "anthropic", "gemini"]),
       stream=st.booleans())
def test_any_answer_text_and_arguments_fill_in_as_rendered(
    tmp_path: Path, content: str, arguments: dict[str, Any], family: str, stream: bool
) -> None:
    answer: dict[str, Any] = {"content": content, "toolCalls": [{"name": "lookup", "arguments": arguments}]}
    path = tmp_path / "property.json"
    path.write_text(json.dumps({"fixtures": [{"match": {"userMessage": "weather"}, "response": answer}]}))
    session = ReplaySession.load(fixtures=[path])
    for n in range(3):
        question = f"weather question {n}"
        hit = _ask(session, family, question, stream)
        reference = _ask(ReplaySession.load(fixtures=[path]), family, question, stream)
        assert _together(_wire(hit)) == _together(_wire(reference))
