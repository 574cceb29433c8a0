"""aimock's fixture vocabulary: the match keys and response forms its files use,
read by our loader and answered through ``serve``'s engine and the replay addon
to the real SDKs (the differential suite compares the answers with aimock's)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from llmock_proxy.cassette.model import Request
from llmock_proxy.errors import CassetteError
from llmock_proxy.mitm.replay import Replay
from llmock_proxy.replay.fixture import RecordedTimings
from llmock_proxy.replay.llmock_format import load_fixture_file, parse_fixture_entries, read_fixture_file
from llmock_proxy.replay.plan import Planner, Timing
from llmock_proxy.replay.session import Hit, Miss, ReplaySession
from tests.harness import InProcessProxy
from tests.harness import clients as sdk
from tests.support.replay import EngineThread, json_request

CHAT_URL = "https://api.openai.com/v1/chat/completions"
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def session_of(*entries: dict[str, Any]) -> ReplaySession:
    return ReplaySession(parse_fixture_entries({"fixtures": list(entries)}, "vocab.json"))


def chat(messages: list[dict[str, Any]], *, model: str = "gpt-4o-mini", headers: dict[str, str] | None = None,
         **extra: Any) -> Request:
    return json_request(CHAT_URL, {"model": model, "messages": messages, **extra}, headers)


def text_of(result: Hit | Miss) -> str | None:
    assert isinstance(result, Hit), result.message if isinstance(result, Miss) else result
    message = result.response.json["choices"][0]["message"]  # type: ignore[index]
    return message.get("content")


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def tool_turn(call_id: str, result: str) -> list[dict[str, Any]]:
    return [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


# -- match keys ------------------------------------------------------------------------------


def test_system_message_substring_list_and_regex() -> None:
    session = session_of(
        {"match": {"systemMessage": ["pirate", "brief"]}, "response": {"content": "Arr."}},
        {"match": {"systemMessage": "/^you are a (cat|dog)/i"}, "response": {"content": "Woof."}},
        {"match": {"systemMessage": "teacher"}, "response": {"content": "Class."}},
    )
    system = {"role": "system", "content": "You are a pirate. Be brief."}
    assert text_of(session.resolve(chat([system, user("hi")]))) == "Arr."
    assert text_of(session.resolve(chat([{"role": "system", "content": "You are a dog"}, user("hi")]))) == "Woof."
    assert text_of(session.resolve(chat([{"role": "system", "content": "A teacher"}, user("hi")]))) == "Class."
    only_pirate = {"role": "system", "content": "You are a pirate."}
    assert isinstance(session.resolve(chat([only_pirate, user("hi")])), Miss)  # every substring must be there


def test_tool_result_contains_tells_approve_from_cancel() -> None:
    session = session_of(
        {"match": {"toolCallId": "call_1", "toolResultContains": "\"approved\": true"}, "response": {"content": "Done."}},
        {"match": {"toolCallId": "call_1", "toolResultContains": "\"approved\": false"},
         "response": {"content": "Cancelled."}},
    )
    asked = [user("deploy")]
    assert text_of(session.resolve(chat(asked + tool_turn("call_1", '{"approved": true}')))) == "Done."
    assert text_of(session.resolve(chat(asked + tool_turn("call_1", '{"approved": false}')))) == "Cancelled."
    # toolCallId holds only when the request ends on that tool result.
    assert isinstance(session.resolve(chat(asked + tool_turn("call_1", '{"approved": true}') + [user("and?")])), Miss)


def test_has_tool_result_looks_at_the_current_turn_only() -> None:
    session = session_of(
        {"match": {"userMessage": "weather", "hasToolResult": False},
         "response": {"toolCalls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}},
        {"match": {"userMessage": "weather", "hasToolResult": True}, "response": {"content": "Cold."}},
    )
    first_turn = [user("weather in Oslo?")]
    hit = session.resolve(chat(first_turn, tools=[WEATHER_TOOL]))
    assert isinstance(hit, Hit) and hit.response.json["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[index]
    second_leg = first_turn + tool_turn("call_a", "-5")
    assert text_of(session.resolve(chat(second_leg, tools=[WEATHER_TOOL]))) == "Cold."
    # A later user turn starts a new turn: its first leg asks for the tool again,
    # although the conversation still holds the earlier tool result.
    next_turn = second_leg + [{"role": "assistant", "content": "Cold."}, user("and the weather tomorrow?")]
    hit = session.resolve(chat(next_turn, tools=[WEATHER_TOOL]))
    assert isinstance(hit, Hit) and hit.response.json["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[index]


def test_turn_index_prefers_the_fixture_scripted_for_this_turn() -> None:
    session = session_of(
        {"match": {"userMessage": "next", "turnIndex": 0}, "response": {"content": "first"}},
        {"match": {"userMessage": "next", "turnIndex": 1}, "response": {"content": "second"}},
        {"match": {"userMessage": "next", "turnIndex": 3}, "response": {"content": "fourth"}},
    )

    def after(assistant_turns: int) -> str | None:
        messages: list[dict[str, Any]] = []
        for i in range(assistant_turns):
            messages += [user(f"q{i}"), {"role": "assistant", "content": f"a{i}"}]
        return text_of(session.resolve(chat([*messages, user("next")])))

    assert [after(0), after(1), after(2), after(3), after(5)] == ["first", "second", "second", "fourth", "fourth"]


def test_turn_index_ahead_of_the_conversation_gives_way_to_a_plain_fixture() -> None:
    session = session_of(
        {"match": {"userMessage": "go", "turnIndex": 2}, "response": {"content": "scripted"}},
        {"match": {"userMessage": "go"}, "response": {"content": "plain"}},
    )
    assert text_of(session.resolve(chat([user("go")]))) == "plain"


def test_model_matches_its_dated_versions_but_not_other_models() -> None:
    session = session_of({"match": {"model": "gpt-4o"}, "response": {"content": "4o"}})
    assert text_of(session.resolve(chat([user("x")], model="gpt-4o"))) == "4o"
    assert text_of(session.resolve(chat([user("x")], model="gpt-4o-2024-08-06"))) == "4o"
    assert isinstance(session.resolve(chat([user("x")], model="gpt-4o-mini")), Miss)


def test_context_header_selects_among_fixtures_and_is_part_of_the_request() -> None:
    session = session_of(
        {"match": {"userMessage": "hi", "context": "tenant-a"}, "response": {"content": "A"}},
        {"match": {"userMessage": "hi", "context": "tenant-b"}, "response": {"content": "B"}},
    )
    body = {"model": "m", "messages": [user("hi")]}
    for header, expected in (("x-llmock-context", "A"), ("x-aimock-context", "B"), ("x-llmock-context", "A")):
        value = "tenant-a" if expected == "A" else "tenant-b"
        headers = {"content-type": "application/json", header: value}
        result = session.resolve_raw("POST", CHAT_URL, headers, json.dumps(body).encode())
        assert text_of(result) == expected


def test_endpoint_keeps_embeddings_and_replies_apart() -> None:
    session = session_of(
        {"match": {"model": "shared"}, "response": {"embedding": [0.5, 0.25]}},
        {"match": {"model": "shared"}, "response": {"content": "a reply"}},
        {"match": {"endpoint": "chat", "userMessage": "only chat"}, "response": {"content": "chat!"}},
    )
    assert text_of(session.resolve(chat([user("hi")], model="shared"))) == "a reply"
    embedded = session.resolve(json_request("https://api.openai.com/v1/embeddings", {"model": "shared", "input": "x"}))
    assert isinstance(embedded, Hit) and embedded.response.json["data"][0]["embedding"] == [0.5, 0.25]  # type: ignore[index]


def test_fixtures_of_apis_we_do_not_replay_load_and_are_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps({"fixtures": [
        {"match": {"userMessage": "draw"}, "response": {"image": {"url": "https://example.test/cat.png"}}},
        {"match": {"endpoint": "speech"}, "response": {"audio": "AAAA"}},
        {"match": {"userMessage": "draw"}, "response": {"content": "I cannot draw."}},
    ]}))
    with caplog.at_level("INFO"):
        fixtures = load_fixture_file(path)
    assert [f.source for f in fixtures] == [f"{path}: fixtures[2]"]
    assert f"{path}: fixtures[0]: not replayed" in caplog.text and f"{path}: fixtures[1]: not replayed" in caplog.text


# -- response forms ---------------------------------------------------------------------------


def test_structured_content_and_object_arguments_are_sent_as_json_text() -> None:
    session = session_of(
        {"match": {"userMessage": "structured"}, "response": {"content": {"city": "Oslo", "temp": [1, 2]}}},
        {"match": {"userMessage": "call"}, "response": {"toolCalls": [
            {"name": "get_weather", "arguments": {"city": "Oslo"}},
            {"name": "get_weather", "arguments": ""},
        ]}},
    )
    assert json.loads(text_of(session.resolve(chat([user("structured")]))) or "") == {"city": "Oslo", "temp": [1, 2]}
    hit = session.resolve(chat([user("call")], tools=[WEATHER_TOOL]))
    assert isinstance(hit, Hit)
    calls = hit.response.json["choices"][0]["message"]["tool_calls"]  # type: ignore[index]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Oslo"}, {}]


def test_arguments_that_are_not_json_are_sent_as_an_empty_object_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"fixtures": [
        {"match": {}, "response": {"toolCalls": [{"name": "f", "arguments": "{city: Oslo}"}]}}]}))
    report = read_fixture_file(path)
    assert report.problems == []
    assert report.warnings and report.warnings[0].startswith(f"{path}: fixtures[0].response.toolCalls[0].arguments:")
    assert report.fixtures[0].summary.tool_calls[0].arguments == {}  # type: ignore[union-attr]


def test_raw_json_answer_is_sent_as_written() -> None:
    session = session_of({"match": {"userMessage": "raw"}, "response": {"json": {"anything": [1, 2]}, "status": 202}})
    hit = session.resolve(chat([user("raw")]))
    assert isinstance(hit, Hit) and hit.response.status == 202 and hit.response.json == {"anything": [1, 2]}


def test_a_typo_in_a_response_or_entry_field_is_a_warning_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"fixtures": [
        {"match": {}, "response": {"content": "x", "finishReasn": "stop"}, "latncy": 5, "note": "free text"}]}))
    report = read_fixture_file(path)
    assert report.problems == []
    assert sorted(report.warnings) == [
        f"{path}: fixtures[0].latncy: unknown field, ignored; did you mean 'latency'?",
        f"{path}: fixtures[0].response.finishReasn: unknown field, ignored; did you mean 'finishReason'?",
    ]


# -- aimock config files ------------------------------------------------------------------------


def test_an_aimock_config_file_brings_its_fixtures_and_llm_defaults(tmp_path: Path) -> None:
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "greeting.json").write_text(json.dumps(
        {"fixtures": [{"match": {"userMessage": "hello"}, "response": {"content": "Hi!"}}]}))
    config = tmp_path / "config" / "aimock.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"port": 4010, "llm": {"fixtures": "fixtures/greeting.json", "latency": 7,
                                                        "chaos": {"dropRate": 0.5}}, "mcp": {"tools": []}}))
    fixtures = load_fixture_file(config)
    assert [f.summary.text for f in fixtures] == ["Hi!"]  # type: ignore[union-attr]
    assert fixtures[0].options.latency == 7 and fixtures[0].options.chaos.drop_rate == 0.5  # type: ignore[union-attr]


def test_a_config_without_llm_fixtures_is_refused_when_named_and_skipped_in_a_directory(tmp_path: Path) -> None:
    config = tmp_path / "record.json"
    config.write_text(json.dumps({"llm": {"record": {"providers": {"openai": "https://api.openai.com/v1"}}}}))
    with pytest.raises(CassetteError, match=r"record\.json: llm\.fixtures: missing"):
        load_fixture_file(config)
    (tmp_path / "real.json").write_text(json.dumps({"fixtures": [{"match": {}, "response": {"content": "ok"}}]}))
    session = ReplaySession.load((), [tmp_path])
    assert len(session) == 1


# -- chaos and timing ------------------------------------------------------------------------------


def test_chaos_rate_limit_answers_429_with_retry_after_in_the_providers_envelope() -> None:
    session = session_of({"match": {}, "response": {"content": "fine"}, "chaos": {"rateLimitRate": 1}})
    with EngineThread(session) as engine:
        client = sdk.anthropic_client(base_url=engine.url)
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="claude", max_tokens=5, messages=[user("hi")])
        assert caught.value.response.headers["retry-after"] == "1"
        plain = sdk.openai_client(base_url=f"{engine.url}/v1")
        reply = plain.chat.completions.create(model="m", messages=[user("hi")],
                                              extra_headers={"x-aimock-chaos-ratelimit": "0"})
        assert reply.choices[0].message.content == "fine"


def test_recorded_timings_pace_a_fixture_stream_divided_by_replay_speed() -> None:
    session = session_of({"match": {}, "response": {"content": "abcdefgh"}, "chunkSize": 2,
                          "recordedTimings": {"ttftMs": 100, "interChunkDelaysMs": [10, 30]}, "replaySpeed": 2})
    hit = session.resolve(chat([user("x")], stream=True))
    assert isinstance(hit, Hit)
    plan = Planner(Timing.parse("recorded"), rng=random.Random(1)).plan(hit, 0.0)
    offsets = [c.at_ms for c in plan.chunks or []]
    assert offsets[:4] == [50.0, 55.0, 70.0, 85.0]  # 100, +10, +30, then the last gap repeats; halved
    assert RecordedTimings(100.0, (10.0, 30.0)) == hit.options.recorded_timings


# -- the headline: a tool loop from a fixture file, through serve and through the addon ----------------

TOOL_LOOP = {"fixtures": [
    {"match": {"userMessage": "weather in Oslo", "hasToolResult": False},
     "response": {"toolCalls": [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}]}},
    {"match": {"userMessage": "weather in Oslo", "hasToolResult": True},
     "response": {"content": "It is -3 °C in Oslo."}},
]}


def run_tool_loop(client: openai.OpenAI) -> list[Any]:
    messages: list[dict[str, Any]] = [user("What is the weather in Oslo?")]
    first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls or []
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "-3"} for c in calls]
    second = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
    return [
        [(c.function.name, json.loads(c.function.arguments)) for c in calls],  # type: ignore[union-attr]
        first.choices[0].finish_reason,
        second.choices[0].message.content,
        second.choices[0].finish_reason,
    ]


EXPECTED_LOOP = [[("get_weather", {"city": "Oslo", "unit": "celsius"})], "tool_calls", "It is -3 °C in Oslo.", "stop"]


def test_tool_loop_from_a_fixture_file_through_serve(tmp_path: Path) -> None:
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(TOOL_LOOP))
    with EngineThread(ReplaySession.load((), [path])) as engine:
        assert run_tool_loop(sdk.openai_client(base_url=f"{engine.url}/v1")) == EXPECTED_LOOP


@pytest.fixture
def addon_proxy(tmp_path: Path) -> Iterator[InProcessProxy]:
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(TOOL_LOOP))
    proxy = InProcessProxy(
        confdir=tmp_path / "mitm",
        addons=[Replay()],
        options={"llmock_cassette_dir": "", "llmock_fixtures": [str(path)]},
    )
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_tool_loop_from_a_fixture_file_through_the_replay_addon(addon_proxy: InProcessProxy) -> None:
    assert run_tool_loop(sdk.openai_client(addon_proxy)) == EXPECTED_LOOP


# -- a broken fixture answers for itself ------------------------------------------------------------


def test_a_broken_fixture_answers_with_an_error_naming_it_and_the_rest_are_served(tmp_path: Path) -> None:
    path = tmp_path / "half.json"
    path.write_text(json.dumps({"fixtures": [
        {"match": {"userMessage": "good"}, "response": {"content": "Fine."}},
        {"match": {"userMessage": "bad"}, "response": {"toolCalls": [{"name": ""}]}},
    ]}))
    with EngineThread(ReplaySession.load((), [path])) as engine:
        client = sdk.openai_client(base_url=f"{engine.url}/v1")
        assert client.chat.completions.create(model="m", messages=[user("good")]).choices[0].message.content == "Fine."
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=[user("bad")])
        assert f"{path}: fixtures[1].response.toolCalls[0].name" in caught.value.message
        assert caught.value.code == "fixture_invalid"


def test_an_answer_without_usage_reports_estimated_tokens_as_aimock_does() -> None:
    session = session_of(
        {"match": {"userMessage": "count"}, "response": {"content": "twelve chars"}},
        {"match": {"userMessage": "stated"}, "response": {"content": "x", "usage": {"prompt_tokens": 7, "completion_tokens": 2}}},
    )
    with EngineThread(session) as engine:
        openai_usage = sdk.openai_client(base_url=f"{engine.url}/v1").chat.completions.create(
            model="m", messages=[user("count to twelve, please")]).usage
        assert openai_usage is not None
        # ceil(23 / 4) and ceil(12 / 4): about four characters a token.
        assert (openai_usage.prompt_tokens, openai_usage.completion_tokens, openai_usage.total_tokens) == (6, 3, 9)
        claude_usage = sdk.anthropic_client(base_url=engine.url).messages.create(
            model="claude", max_tokens=5, messages=[user("count to twelve, please")]).usage
        assert (claude_usage.input_tokens, claude_usage.output_tokens) == (6, 3)
        stated = sdk.openai_client(base_url=f"{engine.url}/v1").chat.completions.create(
            model="m", messages=[user("stated")]).usage
        assert stated is not None and (stated.prompt_tokens, stated.completion_tokens, stated.total_tokens) == (7, 2, 9)
