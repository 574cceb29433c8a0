"""The cassette and fixture-file schemas: every rule, with messages that name
the file, the interaction (or fixture) and the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmock_proxy.cassette import model as cassette_model
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.schema import (
    CASSETTE_SCHEMA,
    FIXTURES_SCHEMA,
    _checker,
    _Compiler,
    schema,
    validate_cassette,
    validate_fixture_file,
)
from llmock_proxy.errors import CassetteError, format_path
from tests.test_cassette_model import cassettes, json_values

FP = "sha256:" + "0123456789abcdef" * 2


def valid_cassette() -> dict[str, Any]:
    """One interaction of every wire form, as Cassette.to_dict() writes it."""
    return {
        "version": 1,
        "meta": {"recorded_with": "llmock-proxy 0.1.0"},
        "interactions": [
            {  # 0: SSE
                "recorded_at": "2025-01-01T00:00:00Z",
                "request": {
                    "method": "POST",
                    "url": "https://api.openai.com/v1/chat/completions",
                    "headers": {"content-type": "application/json"},
                    "json": {"model": "gpt-4o-mini", "stream": True},
                },
                "match": {"family": "openai.chat", "model": "gpt-4o-mini", "stream": True,
                          "fingerprint": FP, "userMessage": "hi", "toolNames": ["get_weather"],
                          "sequenceIndex": 1},
                "response": {
                    "status": 200,
                    "headers": {"content-type": "text/event-stream"},
                    "events": [
                        {"data": {"choices": []}, "t": 10.5},
                        {"event": "ping", "id": "7", "retry": 3000, "comment": "", "t": 11},
                        {"data": "[DONE]", "t": 12.0},
                    ],
                },
                "summary": {"text": "Hello", "tool_calls": [{"name": "f", "arguments": {"a": 1}, "id": "c1"}],
                            "finish_reason": "stop", "usage": {"total_tokens": 3}, "model": "gpt-4o-mini",
                            "error": {"status": 429, "type": None, "message": "slow down"}},
            },
            {  # 1: NDJSON
                "request": {"method": "POST", "url": "http://127.0.0.1:11434/api/chat", "text": "{}"},
                "response": {"status": 200, "lines": [{"data": {"done": True}, "t": 1.0}, {"data": None, "t": 2}]},
            },
            {  # 2: EventStream
                "request": {"method": "POST", "url": "https://bedrock.test/model/m/converse-stream",
                            "base64": "AAEC"},
                "response": {"status": 200, "frames": [
                    {"headers": {":event-type": "messageStart",
                                 ":flag": {"type": "bool", "value": True},
                                 ":n": {"type": "long", "value": 5},
                                 ":raw": {"type": "bytes", "value": "AA=="},
                                 ":id": {"type": "uuid", "value": "6f0c5b7e-0000-4000-8000-000000000000"}},
                     "json": {"role": "assistant"}, "t": 3.0},
                ]},
            },
            {  # 3: WebSocket
                "request": {"method": "GET", "url": "wss://api.openai.com/v1/realtime?model=m"},
                "response": {"status": 101, "websocket": {
                    "subprotocol": "realtime",
                    "messages": [
                        {"from": "client", "json": {"type": "session.update"}, "t": 1.0},
                        {"from": "server", "binary": True, "base64": "AAE=", "t": 2.0},
                        {"from": "server", "text": "plain", "t": 2.5},
                    ],
                    "close": {"code": 1000, "reason": "bye", "by": "client", "t": 3.0},
                }},
            },
            {  # 4: plain JSON body, embeddings summary
                "request": {"method": "POST", "url": "https://api.openai.com/v1/embeddings", "json": {"input": "x"}},
                "match": {"family": "generic", "stream": False, "fingerprint": FP, "method": "POST", "path": "/v1"},
                "response": {"status": 200, "json": {"data": []}},
                "summary": {"embeddings": [[0.1, 2]]},
                "incomplete": "client disconnected",
            },
            {  # 5: transport failure
                "request": {"method": "GET", "url": "https://down.test/"},
                "error": "connection refused",
            },
            {  # 6: empty body, websocket without close
                "request": {"method": "HEAD", "url": "https://x.test/"},
                "response": {"status": 204, "headers": {}},
            },
        ],
    }


def problems_of(data: Any) -> list[str]:
    try:
        validate_cassette(data, "x.yaml")
    except CassetteError as exc:
        assert str(exc) == "\n".join(exc.problems)
        assert exc.path == "x.yaml"
        return exc.problems
    return []


def test_the_valid_cassette_is_valid_and_loads() -> None:
    data = valid_cassette()
    assert problems_of(data) == []
    loaded = cassette_model.Cassette.from_dict(data)
    assert loaded.interactions[3].response.websocket.close.code == 1000


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = _steps(path)
        target = doc
        for step in parents:
            target = target[step]
        target[last] = value

    return mutate


def _del(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = _steps(path)
        target = doc
        for step in parents:
            target = target[step]
        del target[last]

    return mutate


def _steps(path: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in path.split("/")]


I = "interactions"  # noqa: E741  (short names keep the rule table readable, like F below)
CASSETTE_RULES: list[tuple[Mutation, str]] = [
    # the file
    (_set("version", 2), "x.yaml: version: must be 1, got 2"),
    (_del("version"), "x.yaml: missing required field 'version'"),
    (_del(I), "x.yaml: missing required field 'interactions'"),
    (_set("interaction", []), "x.yaml: interaction: unknown field (allowed here: interactions, meta, version)"),
    (_set(I, {}), "x.yaml: interactions: a mapping is not of type 'array'"),
    (_set("meta", "x"), "x.yaml: meta: 'x' is not of type 'object'"),
    # the interaction
    (_set(f"{I}/0/recorded", 1), "x.yaml: interactions[0].recorded: unknown field (allowed here: error, incomplete, match, recorded_at, request, response, summary)"),
    (_del(f"{I}/1/request"), "x.yaml: interactions[1]: missing required field 'request'"),
    (_set(f"{I}/0/recorded_at", 5), "x.yaml: interactions[0].recorded_at: 5 is not of type 'string'"),
    (_set(f"{I}/5/error", None), "x.yaml: interactions[5].error: null is not of type 'string'"),
    (_set(f"{I}/4/incomplete", True), "x.yaml: interactions[4].incomplete: true is not of type 'string'"),
    (_set(f"{I}/4", []), "x.yaml: interactions[4]: a list is not of type 'object'"),
    # the request
    (_del(f"{I}/0/request/method"), "x.yaml: interactions[0].request: missing required field 'method'"),
    (_del(f"{I}/0/request/url"), "x.yaml: interactions[0].request: missing required field 'url'"),
    (_set(f"{I}/0/request/method", ""), "x.yaml: interactions[0].request.method: must not be empty"),
    (_set(f"{I}/0/request/url", 7), "x.yaml: interactions[0].request.url: 7 is not of type 'string'"),
    (_set(f"{I}/0/request/headers", ["a"]), "x.yaml: interactions[0].request.headers: a list is not of type 'object'"),
    (_set(f"{I}/0/request/headers/x-count", 5), "x.yaml: interactions[0].request.headers.x-count: 5 is not of type 'string'"),
    (_set(f"{I}/0/request/text", "{}"), "x.yaml: interactions[0].request: has json and text; give at most one of json, text, base64"),
    (_set(f"{I}/2/request/base64", "not base64!"), "x.yaml: interactions[2].request.base64: 'not base64!' is not valid base64 (A-Z a-z 0-9 + / with = padding, no line breaks)"),
    (_set(f"{I}/2/request/base64", "AAE"), "x.yaml: interactions[2].request.base64: 'AAE' is not valid base64 (A-Z a-z 0-9 + / with = padding, no line breaks)"),
    (_set(f"{I}/1/request/text", 3), "x.yaml: interactions[1].request.text: 3 is not of type 'string'"),
    (_set(f"{I}/0/request/body", "x"), "x.yaml: interactions[0].request.body: unknown field (allowed here: base64, headers, json, method, text, url)"),
    # the match
    (_set(f"{I}/0/match/family", ""), "x.yaml: interactions[0].match.family: must not be empty"),
    (_set(f"{I}/0/match/stream", "maybe"), "x.yaml: interactions[0].match.stream: 'maybe' is not of type 'boolean'"),
    (_set(f"{I}/0/match/fingerprint", "md5:abc"), "x.yaml: interactions[0].match.fingerprint: 'md5:abc' is not a fingerprint (sha256:<hex digits>)"),
    (_set(f"{I}/0/match/model", 4), "x.yaml: interactions[0].match.model: 4 is not of type 'string'"),
    (_set(f"{I}/0/match/toolNames", "get_weather"), "x.yaml: interactions[0].match.toolNames: 'get_weather' is not of type 'array'"),
    (_set(f"{I}/0/match/toolNames", ["a", 1]), "x.yaml: interactions[0].match.toolNames[1]: 1 is not of type 'string'"),
    (_set(f"{I}/0/match/userMessage", ["hi"]), "x.yaml: interactions[0].match.userMessage: a list is not of type 'string'"),
    (_set(f"{I}/4/match/path", 1), "x.yaml: interactions[4].match.path: 1 is not of type 'string'"),
    (_set(f"{I}/0/match", "strict"), "x.yaml: interactions[0].match: 'strict' is not of type 'object'"),
    # the response
    (_del(f"{I}/0/response/status"), "x.yaml: interactions[0].response: missing required field 'status'"),
    (_set(f"{I}/0/response/status", "200"), "x.yaml: interactions[0].response.status: '200' is not of type 'integer'"),
    (_set(f"{I}/0/response/status", 42), "x.yaml: interactions[0].response.status: 42 is less than the minimum of 100"),
    (_set(f"{I}/0/response/status", 2000), "x.yaml: interactions[0].response.status: 2000 is more than the maximum of 599"),
    (_set(f"{I}/0/response/headers/x-n", 1), "x.yaml: interactions[0].response.headers.x-n: 1 is not of type 'string'"),
    (_set(f"{I}/0/response/json", {}), "x.yaml: interactions[0].response: has json and events; give at most one of json, text, base64, events, lines, frames, websocket"),
    (_set(f"{I}/1/response/frames", []), "x.yaml: interactions[1].response: has lines and frames; give at most one of json, text, base64, events, lines, frames, websocket"),
    (_set(f"{I}/4/response/text", ""), "x.yaml: interactions[4].response: has json and text; give at most one of json, text, base64, events, lines, frames, websocket"),
    (_set(f"{I}/4/response/body", {}), "x.yaml: interactions[4].response.body: unknown field (allowed here: base64, events, frames, headers, json, lines, status, text, websocket)"),
    (_set(f"{I}/4/response", "ok"), "x.yaml: interactions[4].response: 'ok' is not of type 'object'"),
    # SSE events
    (_set(f"{I}/0/response/events", {}), "x.yaml: interactions[0].response.events: a mapping is not of type 'array'"),
    (_set(f"{I}/0/response/events/2/t", "abc"), "x.yaml: interactions[0].response.events[2].t: 'abc' is not of type 'number'"),
    (_set(f"{I}/0/response/events/2/t", -1), "x.yaml: interactions[0].response.events[2].t: -1 is less than the minimum of 0"),
    (_del(f"{I}/0/response/events/0/t"), "x.yaml: interactions[0].response.events[0]: missing required field 't'"),
    (_set(f"{I}/0/response/events/1/event", 3), "x.yaml: interactions[0].response.events[1].event: 3 is not of type 'string'"),
    (_set(f"{I}/0/response/events/1/id", 7), "x.yaml: interactions[0].response.events[1].id: 7 is not of type 'string'"),
    (_set(f"{I}/0/response/events/1/retry", -5), "x.yaml: interactions[0].response.events[1].retry: -5 is less than the minimum of 0"),
    (_set(f"{I}/0/response/events/1/retry", 1.5), "x.yaml: interactions[0].response.events[1].retry: 1.5 is not of type 'integer'"),
    (_set(f"{I}/0/response/events/1/comment", None), "x.yaml: interactions[0].response.events[1].comment: null is not of type 'string'"),
    (_set(f"{I}/0/response/events/0/name", "x"), "x.yaml: interactions[0].response.events[0].name: unknown field (allowed here: comment, data, event, id, retry, t)"),
    # NDJSON lines
    (_del(f"{I}/1/response/lines/0/data"), "x.yaml: interactions[1].response.lines[0]: missing required field 'data'"),
    (_set(f"{I}/1/response/lines/1/t", "late"), "x.yaml: interactions[1].response.lines[1].t: 'late' is not of type 'number'"),
    (_set(f"{I}/1/response/lines/1/json", {}), "x.yaml: interactions[1].response.lines[1].json: unknown field (allowed here: data, t)"),
    # EventStream frames
    (_del(f"{I}/2/response/frames/0/headers"), "x.yaml: interactions[2].response.frames[0]: missing required field 'headers'"),
    (_del(f"{I}/2/response/frames/0/json"), "x.yaml: interactions[2].response.frames[0]: needs one of json, text, base64"),
    (_set(f"{I}/2/response/frames/0/text", "x"), "x.yaml: interactions[2].response.frames[0]: has json and text; give exactly one of json, text, base64"),
    (_set(f"{I}/2/response/frames/0/headers/:n", 5), "x.yaml: interactions[2].response.frames[0].headers.:n: 5 is not of type 'string' or 'object'"),
    (_set(f"{I}/2/response/frames/0/headers/:n", {"type": "float", "value": 1.5}), "x.yaml: interactions[2].response.frames[0].headers.:n.type: 'float' is not one of 'bool', 'byte', 'short', 'int', 'long', 'bytes', 'timestamp', 'uuid', 'string'"),
    (_set(f"{I}/2/response/frames/0/headers/:n", {"type": "long", "value": "5"}), "x.yaml: interactions[2].response.frames[0].headers.:n.value: '5' is not of type 'integer'"),
    (_set(f"{I}/2/response/frames/0/headers/:n", {"type": "long"}), "x.yaml: interactions[2].response.frames[0].headers.:n: missing required field 'value'"),
    (_set(f"{I}/2/response/frames/0/headers/:flag", {"type": "bool", "value": 1}), "x.yaml: interactions[2].response.frames[0].headers.:flag.value: 1 is not of type 'boolean'"),
    (_set(f"{I}/2/response/frames/0/headers/:raw", {"type": "bytes", "value": "@@"}), "x.yaml: interactions[2].response.frames[0].headers.:raw.value: '@@' is not valid base64 (A-Z a-z 0-9 + / with = padding, no line breaks)"),
    (_set(f"{I}/2/response/frames/0/headers/:id", {"type": "uuid", "value": 7}), "x.yaml: interactions[2].response.frames[0].headers.:id.value: 7 is not of type 'string'"),
    (_set(f"{I}/2/response/frames/0/t", None), "x.yaml: interactions[2].response.frames[0].t: null is not of type 'number'"),
    # WebSocket
    (_del(f"{I}/3/response/websocket/messages"), "x.yaml: interactions[3].response.websocket: missing required field 'messages'"),
    (_set(f"{I}/3/response/websocket/subprotocol", 1), "x.yaml: interactions[3].response.websocket.subprotocol: 1 is not of type 'string'"),
    (_set(f"{I}/3/response/websocket/messages/0/from", "browser"), "x.yaml: interactions[3].response.websocket.messages[0].from: 'browser' is not one of 'client', 'server'"),
    (_del(f"{I}/3/response/websocket/messages/0/from"), "x.yaml: interactions[3].response.websocket.messages[0]: missing required field 'from'"),
    (_set(f"{I}/3/response/websocket/messages/1/text", "x"), "x.yaml: interactions[3].response.websocket.messages[1]: has text and base64; give exactly one of json, text, base64"),
    (_del(f"{I}/3/response/websocket/messages/2/text"), "x.yaml: interactions[3].response.websocket.messages[2]: needs one of json, text, base64"),
    (_set(f"{I}/3/response/websocket/messages/1/binary", "yes"), "x.yaml: interactions[3].response.websocket.messages[1].binary: 'yes' is not of type 'boolean'"),
    (_del(f"{I}/3/response/websocket/messages/1/t"), "x.yaml: interactions[3].response.websocket.messages[1]: missing required field 't'"),
    (_del(f"{I}/3/response/websocket/close/code"), "x.yaml: interactions[3].response.websocket.close: missing required field 'code'"),
    (_set(f"{I}/3/response/websocket/close/code", "1000"), "x.yaml: interactions[3].response.websocket.close.code: '1000' is not of type 'integer' or 'null'"),
    (_set(f"{I}/3/response/websocket/close/by", "proxy"), "x.yaml: interactions[3].response.websocket.close.by: 'proxy' is not one of 'client', 'server'"),
    (_set(f"{I}/3/response/websocket/close/reason", None), "x.yaml: interactions[3].response.websocket.close.reason: null is not of type 'string'"),
    # summary
    (_set(f"{I}/0/summary/answer", "x"), "x.yaml: interactions[0].summary.answer: unknown field (allowed here: created, embeddings, error, finish_reason, model, reasoning, response_id, segments, system_fingerprint, text, tool_calls, usage, web_searches)"),
    (_set(f"{I}/0/summary/text", ["a"]), "x.yaml: interactions[0].summary.text: a list is not of type 'string'"),
    (_del(f"{I}/0/summary/tool_calls/0/name"), "x.yaml: interactions[0].summary.tool_calls[0]: missing required field 'name'"),
    (_set(f"{I}/0/summary/tool_calls/0/id", 1), "x.yaml: interactions[0].summary.tool_calls[0].id: 1 is not of type 'string'"),
    (_set(f"{I}/0/summary/usage", 3), "x.yaml: interactions[0].summary.usage: 3 is not of type 'object'"),
    (_set(f"{I}/4/summary/embeddings", [[0.1, "x"]]), "x.yaml: interactions[4].summary.embeddings[0][1]: 'x' is not of type 'number'"),
    (_set(f"{I}/0/summary/error/status", "429"), "x.yaml: interactions[0].summary.error.status: '429' is not of type 'integer' or 'null'"),
]


@pytest.mark.parametrize("mutate, expected", CASSETTE_RULES, ids=[e.split(": ", 1)[1][:60] for _, e in CASSETTE_RULES])
def test_each_cassette_rule_names_file_interaction_and_field(mutate: Mutation, expected: str) -> None:
    data = valid_cassette()
    mutate(data)
    assert problems_of(data) == [expected]


def test_extra_match_keys_and_empty_bodies_are_allowed() -> None:
    data = valid_cassette()
    data[I][0]["match"]["toolName"] = "get_weather"
    data[I][0]["match"]["anything"] = {"nested": True}
    assert problems_of(data) == []


def test_every_problem_is_listed_in_document_order() -> None:
    data = valid_cassette()
    data[I][3]["response"]["websocket"]["messages"][0]["from"] = "browser"
    data[I][0]["response"]["events"][2]["t"] = "abc"
    data[I][10 - 10]["request"]["url"] = 1
    data["version"] = 3
    problems = problems_of(data)
    assert problems == [
        "x.yaml: interactions[0].request.url: 1 is not of type 'string'",
        "x.yaml: interactions[0].response.events[2].t: 'abc' is not of type 'number'",
        "x.yaml: interactions[3].response.websocket.messages[0].from: 'browser' is not one of 'client', 'server'",
        "x.yaml: version: must be 1, got 3",
    ]


def test_indexes_sort_numerically() -> None:
    data = valid_cassette()
    data[I] = [copy.deepcopy(data[I][5]) for _ in range(12)]
    data[I][10]["error"] = 1
    data[I][2]["error"] = 1
    assert [p.split(":")[1] for p in problems_of(data)] == [" interactions[2].error", " interactions[10].error"]


@pytest.mark.parametrize(
    "data, expected",
    [
        (None, "x.yaml: the file is empty; expected a mapping with version and interactions"),
        ([1], "x.yaml: the file holds a list; expected a mapping with version and interactions"),
        ("text", "x.yaml: the file holds 'text'; expected a mapping with version and interactions"),
    ],
)
def test_a_file_that_is_no_mapping(data: Any, expected: str) -> None:
    assert problems_of(data) == [expected]


def test_long_bad_values_are_shortened() -> None:
    data = valid_cassette()
    data[I][0]["recorded_at"] = 10**200
    (problem,) = problems_of(data)
    assert problem.endswith("… is not of type 'string'") and len(problem) < 140


def test_parse_reports_the_file_name_given(tmp_path: Path) -> None:
    path = tmp_path / "chat.yaml"
    data = valid_cassette()
    data[I][0]["response"]["events"][1]["t"] = "abc"
    path.write_text(yamlio.dumps(data))
    with pytest.raises(CassetteError) as info:
        cassette_store.load(path)
    assert info.value.problems == [f"{path}: interactions[0].response.events[1].t: 'abc' is not of type 'number'"]


# -- the fast predicate agrees with jsonschema -------------------------------------------------


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _nodes(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _nodes(v, path + (i,))
    return out


replacements = st.one_of(
    json_values,
    st.sampled_from([-1, 0, 1.5, "", "AAE", "abc", "client", "sha256:ab", True, None, {}, [], {"t": 1}]),
)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> Any:
    # Mutate a copy: to_dict() shares JSON bodies with the drawn cassette, and
    # editing hypothesis's own examples in place makes its generation flaky.
    doc = copy.deepcopy(draw(documents))
    for _ in range(draw(st.integers(1, 3))):
        nodes = _nodes(doc)
        path = draw(st.sampled_from(nodes))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not path:
            doc = copy.deepcopy(draw(replacements)) if action == "replace" else doc
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = copy.deepcopy(draw(replacements))
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["json", "text", "base64", "events", "t", "extra", "status"]))] = copy.deepcopy(draw(replacements))
    return doc


AGREEMENT = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(mutated(st.one_of(st.just(0).map(lambda _: valid_cassette()), cassettes.map(lambda c: c.to_dict()))))
def test_fast_cassette_check_agrees_with_jsonschema(doc: Any) -> None:
    checker = _checker(CASSETTE_SCHEMA)
    assert checker.is_valid(doc) == checker.reference.is_valid(doc)


def valid_fixture_file() -> dict[str, Any]:
    return {
        "_warning": "recorded by llmock",
        "fixtures": [
            {"match": {"userMessage": "hello", "model": "gpt-4o", "sequenceIndex": 0},
             "response": {"content": "Hi!", "role": "assistant", "finishReason": "stop"},
             "latency": 10, "chunkSize": 5, "truncateAfterChunks": 2, "disconnectAfterMs": 0,
             "streamingProfile": {"ttft": 5, "tps": 40, "jitter": 0.2},
             "chaos": {"dropRate": 0, "malformedRate": 0.5, "disconnectRate": 1}},
            {"match": {"toolName": "get_weather"},
             "response": {"toolCalls": [{"name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "id": "call_1"}],
                          "finishReason": "tool_calls"}},
            {"match": {"inputText": "embed me"}, "response": {"embedding": [0.1, -2, 3e-5]}},
            {"match": {"responseFormat": "json_object", "toolCallId": "call_1"},
             "response": {"error": {"message": "Rate limited", "type": "rate_limit_error", "code": "429"}, "status": 429}},
            {"match": {}, "response": {"content": ""}, "comment": "llmock ignores unknown keys"},
        ],
    }


@AGREEMENT
@given(mutated(st.just(0).map(lambda _: valid_fixture_file())))
def test_fast_fixture_check_agrees_with_jsonschema(doc: Any) -> None:
    checker = _checker(FIXTURES_SCHEMA)
    assert checker.is_valid(doc) == checker.reference.is_valid(doc)


def test_the_fast_compiler_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="does not implement"):
        _Compiler({"type": "string", "format": "email"}).compile_root()
    with pytest.raises(ValueError, match="only local"):
        _Compiler({"$ref": "https://example.test/s.json"}).compile_root()


def test_both_schemas_are_valid_draft_2020_12() -> None:
    import jsonschema

    for name in (CASSETTE_SCHEMA, FIXTURES_SCHEMA):
        document = schema(name)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(document)


# -- llmock fixture files ------------------------------------------------------------------------


def fixture_problems(data: Any) -> list[str]:
    try:
        validate_fixture_file(data, "f.json")
    except CassetteError as exc:
        assert str(exc) == "\n".join(exc.problems)
        return exc.problems
    return []


def test_a_full_fixture_file_validates() -> None:
    assert fixture_problems(valid_fixture_file()) == []


F = "fixtures"
FIXTURE_RULES: list[tuple[Mutation, str]] = [
    (_del(F), "f.json: missing required field 'fixtures'"),
    (_set(F, {}), "f.json: fixtures: a mapping is not of type 'array'"),
    (_set(f"{F}/0", "x"), "f.json: fixtures[0]: 'x' is not of type 'object'"),
    (_del(f"{F}/0/match"), "f.json: fixtures[0]: missing required field 'match'"),
    (_del(f"{F}/0/response"), "f.json: fixtures[0]: missing required field 'response'"),
    (_set(f"{F}/0/match", "hello"), "f.json: fixtures[0].match: 'hello' is not of type 'object'"),
    (_set(f"{F}/0/response", {"text": "hi"}), "f.json: fixtures[0].response: a mapping is none of the allowed forms: text {content: string or JSON}; tool calls {toolCalls: [{name, arguments}]}; ordered blocks {blocks: [{type: text|toolCall, ...}]}; error {error: {message}, status}; embedding {embedding: [numbers]}; raw JSON {json, status}; image {image}; images {images}; audio {audio}; transcription {transcription}; video {video}; live session {live}"),
    (_set(f"{F}/0/response", "hi"), "f.json: fixtures[0].response: 'hi' is not of type 'object'"),
    (_set(f"{F}/0/response/content", 5), "f.json: fixtures[0].response.content: 5 is not of type 'string' or 'object' or 'array'"),
    (_set(f"{F}/0/response/finishReason", 1), "f.json: fixtures[0].response.finishReason: 1 is not of type 'string'"),
    (_set(f"{F}/1/response/toolCalls", {}), "f.json: fixtures[1].response.toolCalls: a mapping is not of type 'array'"),
    (_set(f"{F}/1/response/toolCalls/0/name", ""), "f.json: fixtures[1].response.toolCalls[0].name: must not be empty"),
    (_set(f"{F}/3/response/error", {}), "f.json: fixtures[3].response.error: missing required field 'message'"),
    (_set(f"{F}/3/response/error/message", ""), "f.json: fixtures[3].response.error.message: must not be empty"),
    (_set(f"{F}/3/response/error/code", {}), "f.json: fixtures[3].response.error.code: a mapping is not of type 'string' or 'integer' or 'null'"),
    (_set(f"{F}/3/response/status", 99), "f.json: fixtures[3].response.status: 99 is less than the minimum of 200"),
    (_set(f"{F}/3/response/status", 600), "f.json: fixtures[3].response.status: 600 is more than the maximum of 599"),
    (_set(f"{F}/2/response/embedding", []), "f.json: fixtures[2].response.embedding: must not be empty"),
    (_set(f"{F}/2/response/embedding", [0.1, "x"]), "f.json: fixtures[2].response.embedding[1]: 'x' is not of type 'number'"),
    (_set(f"{F}/0/latency", -1), "f.json: fixtures[0].latency: -1 is less than the minimum of 0"),
    (_set(f"{F}/0/chunkSize", 0), "f.json: fixtures[0].chunkSize: 0 is less than the minimum of 1"),
    (_set(f"{F}/0/truncateAfterChunks", 0), "f.json: fixtures[0].truncateAfterChunks: 0 is less than the minimum of 1"),
    (_set(f"{F}/0/disconnectAfterMs", -5), "f.json: fixtures[0].disconnectAfterMs: -5 is less than the minimum of 0"),
    (_set(f"{F}/0/streamingProfile/ttft", -1), "f.json: fixtures[0].streamingProfile.ttft: -1 is less than the minimum of 0"),
    (_set(f"{F}/0/streamingProfile/tps", 0), "f.json: fixtures[0].streamingProfile.tps: 0 must be greater than 0"),
    (_set(f"{F}/0/streamingProfile/jitter", 1.5), "f.json: fixtures[0].streamingProfile.jitter: 1.5 is more than the maximum of 1"),
    (_set(f"{F}/0/chaos/dropRate", -0.1), "f.json: fixtures[0].chaos.dropRate: -0.1 is less than the minimum of 0"),
    (_set(f"{F}/0/chaos/malformedRate", 2), "f.json: fixtures[0].chaos.malformedRate: 2 is more than the maximum of 1"),
    (_set(f"{F}/0/chaos/disconnectRate", "often"), "f.json: fixtures[0].chaos.disconnectRate: 'often' is not of type 'number'"),
]


@pytest.mark.parametrize("mutate, expected", FIXTURE_RULES, ids=[e.split(": ", 1)[1][:60] for _, e in FIXTURE_RULES])
def test_each_fixture_rule_names_file_fixture_and_field(mutate: Mutation, expected: str) -> None:
    data = valid_fixture_file()
    mutate(data)
    assert fixture_problems(data) == [expected]


def test_unknown_keys_are_ignored_like_llmocks_loader_does() -> None:
    data = valid_fixture_file()
    data["version"] = 7
    data[F][0]["note"] = "why"
    data[F][0]["response"]["extra"] = True
    data[F][0]["streamingProfile"]["burst"] = 3
    assert fixture_problems(data) == []


def test_a_response_of_several_forms_is_accepted_like_llmock_does() -> None:
    data = valid_fixture_file()
    data[F][0]["response"]["toolCalls"] = [{"name": "f", "arguments": "{}"}]
    assert fixture_problems(data) == []


def test_every_fixture_problem_is_listed() -> None:
    data = valid_fixture_file()
    data[F][4]["latency"] = -1
    data[F][1]["response"]["toolCalls"][0]["name"] = ""
    data[F][0]["chaos"]["dropRate"] = 2
    assert [p.split(": ")[1] for p in fixture_problems(data)] == [
        "fixtures[0].chaos.dropRate",
        "fixtures[1].response.toolCalls[0].name",
        "fixtures[4].latency",
    ]


@pytest.mark.parametrize(
    "data, expected",
    [
        (None, "f.json: the file holds null; expected an object with a fixtures list"),
        ([], "f.json: the file holds a list; expected an object with a fixtures list"),
    ],
)
def test_a_fixture_file_that_is_no_object(data: Any, expected: str) -> None:
    assert fixture_problems(data) == [expected]


def test_format_path() -> None:
    assert format_path(["interactions", 3, "response", "events", 7, "t"]) == "interactions[3].response.events[7].t"
    assert format_path(["headers", "content-type"]) == "headers.content-type"
    assert format_path(["json", "a.b", "c d"]) == "json['a.b']['c d']"
    assert format_path([]) == ""


# -- the documentation's examples stay true -------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _code_blocks(path: Path, language: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith(language + "\n")]


def test_the_annotated_example_in_docs_is_a_valid_cassette() -> None:
    (example,) = _code_blocks(DOCS / "cassettes.md", "yaml")
    loaded = cassette_store.parse(example, "docs/cassettes.md")
    assert loaded.interactions[0].response.events[1].data == "[DONE]"


def test_the_fixture_example_in_docs_is_a_valid_fixture_file() -> None:
    (example,) = _code_blocks(DOCS / "cassettes.md", "json")
    assert fixture_problems(json.loads(example)) == []
