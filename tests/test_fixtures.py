"""Loading llmock fixture files and cassettes into one Fixture type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import Cassette, Interaction
from llmock_proxy.cassette.store import expand
from llmock_proxy.errors import CassetteError
from llmock_proxy.replay.fixture import (
    Chaos,
    FixtureError,
    FixtureOptions,
    StreamingProfile,
)
from llmock_proxy.replay.llmock_format import load_fixture_file
from llmock_proxy.replay.session import Hit, ReplaySession
from llmock_proxy.replay.sources import load_cassette, load_sources
from tests.support.replay import json_request, rendered

CHAT = "https://api.openai.com/v1/chat/completions"

# Files in llmock's own format, as its users write them: every match key,
# every response kind, every option, and keys llmock itself ignores.
LLMOCK_FILE: dict[str, Any] = {
    "fixtures": [
        {"match": {"userMessage": "hello"}, "response": {"content": "Hello! How can I help?"}},
        {"match": {"userMessage": "goodbye", "model": "gpt-4o"},
         "response": {"content": "Bye!", "role": "assistant", "finishReason": "stop"}},
        {"match": {"toolName": "get_weather"},
         "response": {"toolCalls": [{"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}]}},
        {"match": {"toolCallId": "call_1"}, "response": {"content": "Done."}},
        {"match": {"inputText": "kitten"}, "response": {"embedding": [0.5, -0.25, 1]}},
        {"match": {"userMessage": "fail"},
         "response": {"error": {"message": "Rate limited", "type": "rate_limit_error", "code": "rl"},
                      "status": 429}},
        {"match": {"responseFormat": "json_object", "sequenceIndex": 1}, "response": {"content": "{}"},
         "latency": 10, "chunkSize": 3, "truncateAfterChunks": 2, "disconnectAfterMs": 500,
         "streamingProfile": {"ttft": 100, "tps": 20, "jitter": 0.1},
         "chaos": {"dropRate": 0, "malformedRate": 0, "disconnectRate": 0}},
        {"match": {}, "response": {"content": "catch-all"}},
    ]
}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_llmock_file_loads_unchanged(tmp_path: Path) -> None:
    loaded = load_fixture_file(write_json(tmp_path / "llmock.json", LLMOCK_FILE))
    assert [f.source for f in loaded] == [f"{tmp_path / 'llmock.json'}: fixtures[{i}]" for i in range(8)]
    assert all(not f.recorded for f in loaded)
    assert loaded[0].summary == Summary(text="Hello! How can I help?")
    assert loaded[1].summary == Summary(text="Bye!", finish_reason="stop")
    assert loaded[2].summary == Summary(tool_calls=[ToolCall("get_weather", {"city": "Paris"})])
    assert loaded[4].summary == Summary(embeddings=[[0.5, -0.25, 1.0]])
    assert loaded[5].error == FixtureError(429, "Rate limited", "rate_limit_error", "rl")
    assert loaded[6].options == FixtureOptions(
        latency=10, chunk_size=3, truncate_after_chunks=2, disconnect_after_ms=500,
        streaming_profile=StreamingProfile(ttft=100, tps=20, jitter=0.1),
        chaos=Chaos(0.0, 0.0, 0.0),
    )
    assert loaded[7].match == {} and loaded[7].options.empty


def test_the_catch_all_answers_what_nothing_else_does(tmp_path: Path) -> None:
    session = ReplaySession.load(fixtures=[write_json(tmp_path / "llmock.json", LLMOCK_FILE)])
    hit = session.resolve(json_request(CHAT, {"model": "m", "messages": [{"role": "user", "content": "zzz"}]}))
    assert isinstance(hit, Hit) and hit.response.json["choices"][0]["message"]["content"] == "catch-all"


def test_error_fixture_is_rendered_in_the_requested_providers_envelope(tmp_path: Path) -> None:
    session = ReplaySession.load(fixtures=[write_json(tmp_path / "llmock.json", LLMOCK_FILE)])
    openai_hit = session.resolve(json_request(CHAT, {"model": "m", "messages": [{"role": "user", "content": "fail"}]}))
    assert isinstance(openai_hit, Hit)
    assert openai_hit.response.status == 429
    assert openai_hit.response.json["error"]["message"] == "Rate limited"
    anthropic_hit = session.resolve(
        json_request("https://api.anthropic.com/v1/messages",
                     {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "fail"}]})
    )
    assert isinstance(anthropic_hit, Hit)
    assert anthropic_hit.response.status == 429
    assert anthropic_hit.response.json == {
        "type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}
    }


def test_a_bad_match_fails_the_file_naming_file_fixture_and_key(tmp_path: Path) -> None:
    entry = {"match": {"sequenceIndex": -1}, "response": {"content": "x"}}
    path = write_json(tmp_path / "bad.json", {"fixtures": [{"match": {}, "response": {"content": "ok"}}, entry]})
    with pytest.raises(CassetteError) as caught:
        load_fixture_file(path)
    assert caught.value.problems == [f"{path}: fixtures[1].match.sequenceIndex: expected an integer >= 0, got -1"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"match": {}, "response": {"content": "x"}, "chunkSize": 0}, "fixtures[1].chunkSize"),
        ({"match": {}, "response": {"toolCalls": [{"name": ""}]}}, "fixtures[1].response.toolCalls[0].name"),
        ({"match": {}, "response": {"content": "x"}, "chaos": {"dropRate": 1.5}}, "fixtures[1].chaos.dropRate"),
        ({"match": {}, "response": {"nothing": True}}, "fixtures[1].response"),
    ],
)
def test_a_bad_answer_breaks_only_its_fixture(
    tmp_path: Path, entry: dict[str, Any], field: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"match": {"userMessage": "hello"}, "response": {"content": "Hi!"}}
    path = write_json(tmp_path / "bad.json", {"fixtures": [good, entry]})
    loaded = load_fixture_file(path)
    assert [f.source for f in loaded] == [f"{path}: fixtures[0]", f"{path}: fixtures[1]"]
    assert loaded[0].summary is not None and loaded[0].summary.text == "Hi!"
    broken = loaded[1].error
    assert broken is not None and broken.status == 500
    assert f"{path}: {field}" in broken.message
    assert f"{path}: {field}" in caplog.text  # said at load time too


def test_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{fixtures: ")
    with pytest.raises(CassetteError, match=r"broken\.json: not valid JSON"):
        load_fixture_file(path)


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="no such file or directory"):
        load_sources(fixtures=[tmp_path / "nope.json"])


def test_directories_are_searched_recursively_in_order(tmp_path: Path) -> None:
    write_json(tmp_path / "b.json", {"fixtures": []})
    write_json(tmp_path / "a" / "z.json", {"fixtures": []})
    write_json(tmp_path / ".hidden" / "x.json", {"fixtures": []})
    (tmp_path / "notes.txt").write_text("not a fixture")
    (tmp_path / "c.yaml").write_text("version: 1\ninteractions: []\n")
    assert expand([tmp_path], (".json",)) == [tmp_path / "a" / "z.json", tmp_path / "b.json"]
    assert expand([tmp_path], (".yaml", ".yml")) == [tmp_path / "c.yaml"]


# -- cassettes ------------------------------------------------------------------------------------


def write_cassette(path: Path, interactions: list[Interaction]) -> Path:
    path.write_text(yamlio.dumps(Cassette(interactions).to_dict()))
    return path


def test_cassette_interactions_become_recorded_fixtures(tmp_path: Path) -> None:
    request = json_request(CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    response = rendered(request, Summary(text="Hello!", finish_reason="stop"))
    # Written by hand: no match, no summary. Both are derived on load.
    bare = Interaction(request, response)
    failed = Interaction(request, None, error="connection refused")
    path = write_cassette(tmp_path / "c.yaml", [bare, failed])
    loaded = load_cassette(path)
    assert len(loaded) == 1  # nothing to replay for a transport failure
    fixture = loaded[0]
    assert fixture.recorded and fixture.source == f"{path}: interactions[0]"
    assert fixture.family == "openai.chat"
    assert fixture.match["userMessage"] == "hi" and fixture.match["fingerprint"].startswith("sha256:")
    assert fixture.summary is not None and fixture.summary.text == "Hello!"
    assert fixture.content_fingerprint is not None


def test_sources_load_cassettes_before_fixture_files(tmp_path: Path) -> None:
    request = json_request(CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
    write_cassette(tmp_path / "c.yaml", [Interaction(request, rendered(request, Summary(text="recorded")))])
    write_json(tmp_path / "f.json", {"fixtures": [{"match": {"userMessage": "hello"}, "response": {"content": "fixture"}}]})
    session = ReplaySession.load(cassettes=[tmp_path], fixtures=[tmp_path])
    hit = session.resolve(request)
    assert isinstance(hit, Hit) and hit.response.json["choices"][0]["message"]["content"] == "recorded"


def test_bad_cassette_names_file_interaction_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\ninteractions:\n- request: {method: POST, url: 'https://x/y'}\n  response: {status: oops}\n")
    with pytest.raises(CassetteError) as caught:
        load_cassette(path)
    assert "bad.yaml" in str(caught.value) and "interactions[0].response.status" in str(caught.value)


def test_other_documents_in_a_directory_are_skipped_but_broken_ones_are_not(tmp_path: Path) -> None:
    write_json(tmp_path / "fixtures.json", {"fixtures": [{"match": {}, "response": {"content": "x"}}]})
    write_json(tmp_path / "schemas" / "openai.chat.json", {"$schema": "https://json-schema.org/draft/2020-12/schema"})
    (tmp_path / "canary.yaml").write_text("schedule: daily\n")
    assert len(load_sources(cassettes=[tmp_path], fixtures=[tmp_path])) == 1
    with pytest.raises(CassetteError):  # named directly: must be what it is named as
        load_sources(fixtures=[tmp_path / "schemas" / "openai.chat.json"])
    (tmp_path / "broken.yaml").write_text("interactions: [\n")
    with pytest.raises(CassetteError, match="broken.yaml"):
        load_sources(cassettes=[tmp_path])
