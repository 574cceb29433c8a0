"""aimock as the oracle: the same fixture file served by aimock (the pinned npm
release, tests/aimock/) and by llmock-proxy's replay engine, the same requests
sent to both with the real SDKs, and what the SDK sees compared.

The fixture file, tests/data/aimock_cases.json, holds what aimock's own
examples lack: a tool loop gated by ``hasToolResult`` with ``arguments`` as an
object, one continued by ``toolCallId``, ``toolResultContains``, text and tool
calls together, reasoning, errors with a code, a usage override,
``sequenceIndex``, ``turnIndex``, ``systemMessage``, model prefixes and
``responseFormat``. aimock's shipped example files are compared in
tests/test_aimock_examples.py.

What the views compare, and what they leave out on purpose, is in
tests/support/aimock.py and docs/llmock-compatibility.md ("Compared with aimock").
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.replay.session import ReplaySession
from tests.harness.http import httpx
from tests.support.aimock import (
    APIS,
    Aimock,
    Ask,
    Clients,
    agree,
    answer,
    call,
    embed,
    live_session,
    live_view,
    realtime_view,
    responses_ws_tool_loop,
    send,
    serving,
    tool,
    user,
)
from tests.support.aimock import assistant as said
from tests.support.replay import EngineThread
from tests.support.websocket import (
    Target,
    realtime_text_turn,
    realtime_tool_conversation,
    responses_text_turn,
)

CASES = Path(__file__).parent / "data" / "aimock_cases.json"
# Tool call ids the fixtures give: compared exactly (generated ones by their prefix).
FIXED_IDS = ("call_paris_1", "call_tokyo_1", "call_refund_1")
THEIRS, OURS = "aimock", "llmock-proxy"


# aimock ends a Gemini function call with finishReason FUNCTION_CALL, which
# Gemini does not have (google-genai warns); llmock-proxy says STOP, as Gemini does.
pytestmark = pytest.mark.filterwarnings("ignore:FUNCTION_CALL is not a valid FinishReason:UserWarning")

@pytest.fixture(scope="module")
def aimock() -> Iterator[Aimock]:
    yield from serving([CASES])


@pytest.fixture(scope="module")
def ours() -> Iterator[EngineThread]:
    with EngineThread(ReplaySession.load(fixtures=[CASES]), timing="instant") as engine:
        yield engine


@pytest.fixture(scope="module")
def both(aimock: Aimock, ours: EngineThread) -> Iterator[dict[str, Clients]]:
    """SDK clients for each server."""
    clients = {THEIRS: Clients(aimock.url), OURS: Clients(ours.url)}
    yield clients
    for each in clients.values():
        each.close()


@pytest.fixture
def fresh(aimock: Aimock, ours: EngineThread) -> Iterator[dict[str, Clients]]:
    """SDK clients with fresh sequence counts: aimock keeps them per
    ``X-Test-Id``, llmock-proxy per session (reset here)."""
    with httpx.Client(trust_env=False) as client:
        client.post(f"{ours.url}/__llmock/reset", headers={"x-llmock-control": "1"}).raise_for_status()
    headers = {"x-test-id": uuid.uuid4().hex}
    clients = {THEIRS: Clients(aimock.url, headers), OURS: Clients(ours.url, headers)}
    yield clients
    for each in clients.values():
        each.close()


def same(both: dict[str, Clients], run: Callable[[Clients], Any]) -> Any:
    """``run`` against both servers; what the SDK saw must be the same. Returns aimock's."""
    return agree({name: run(clients) for name, clients in both.items()})


def ask(api: str, *turns: Any, **options: Any) -> Callable[[Clients], Any]:
    return lambda clients: send(clients, api, Ask(tuple(turns), **options), FIXED_IDS)


def first_call(view: dict[str, Any]) -> tuple[str | None, str, dict[str, Any]]:
    """(id, name, arguments) of the first tool call in any API's view."""
    if "tool_calls" in view:
        c = view["tool_calls"][0]
        return c["id"], c["name"], c["arguments"]
    final = view.get("final", view)
    for item in final.get("output", []):
        if item["type"] == "function_call":
            return item["call_id"], item["name"], item["arguments"]
    for block in final.get("content", []):
        if block["type"] == "tool_use":
            return block["id"], block["name"], block["input"]
    for part in view.get("function_calls", []) or view.get("parts", []):
        if "function_call" in part:
            return part.get("id"), part["function_call"], part["args"]
    raise AssertionError(f"no tool call in {view}")


def text_of(view: dict[str, Any]) -> str | None:
    """The answer's text in any API's view."""
    if "miss" in view or "error" in view:
        return None
    final = view.get("final") or view
    if "output_text" in final:
        return final["output_text"] or None
    if isinstance(final.get("content"), list):
        return "".join(b.get("text", "") for b in final["content"] if b["type"] == "text") or None
    return final.get("content") or final.get("text")


# -- HTTP APIs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_plain_text(both: dict[str, Clients], api: str) -> None:
    question = "Stream a greeting" if api.endswith("stream") else "Say hello"
    seen = same(both, ask(api, user(question), tools=()))
    assert text_of(seen) in ("Hello there, friend! Nice to meet you.",
                             "Streaming words arrive one by one, in order, through the mock.")


@pytest.mark.parametrize("api", APIS)
def test_a_tool_loop_gated_by_has_tool_result_with_object_arguments(both: dict[str, Clients], api: str) -> None:
    def loop(clients: Clients) -> list[Any]:
        question = user("What is the weather in Paris?")
        first = send(clients, api, Ask((question,), tools=("get_weather",)), FIXED_IDS)
        id, name, args = first_call(first)
        result = tool(id, name, '{"sky": "clear", "celsius": 24}')
        final = send(clients, api, Ask((question, call(id, name, args), result), tools=("get_weather",)), FIXED_IDS)
        return [first, final]

    first, final = same(both, loop)
    assert first_call(first)[1:] == ("get_weather", {"city": "Paris", "unit": "celsius"})
    assert text_of(final) == "It is sunny in Paris, 24 degrees."


@pytest.mark.parametrize("api", APIS)
def test_a_tool_loop_continued_by_tool_call_id(both: dict[str, Clients], api: str) -> None:
    def loop(clients: Clients) -> list[Any]:
        question = user("What is the weather in Tokyo?")
        first = send(clients, api, Ask((question,), tools=("get_weather",)), FIXED_IDS)
        id, name, args = first_call(first)
        result = tool(id, name, "rain")
        final = send(clients, api, Ask((question, call(id, name, args), result), tools=("get_weather",)), FIXED_IDS)
        return [first, final]

    same(both, loop)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("result", ['{"approved": true}', '{"approved": false}'])
def test_tool_result_contains_picks_the_answer(both: dict[str, Clients], api: str, result: str) -> None:
    question = user("Please approve the refund")
    turns = (question, call("call_refund_1", "confirm_refund", {"amount": 42}),
             tool("call_refund_1", "confirm_refund", result))
    seen = same(both, ask(api, *turns, tools=("confirm_refund",)))
    if api.startswith(("chat", "responses", "anthropic")):
        assert text_of(seen) == ("The refund was approved." if "true" in result else "The refund was cancelled.")


@pytest.mark.parametrize("api", APIS)
def test_text_and_tool_calls_together(both: dict[str, Clients], api: str) -> None:
    seen = same(both, ask(api, user("check then answer"), tools=("lookup",)))
    assert first_call(seen)[1:] == ("lookup", {"topic": "tides"})


@pytest.mark.parametrize("api", APIS)
def test_reasoning(both: dict[str, Clients], api: str) -> None:
    seen = same(both, ask(api, user("think first")))
    assert text_of(seen) == "The answer is 42."


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("question", ["too long please", "server trouble"])
def test_error_fixtures_keep_status_type_and_code(both: dict[str, Clients], api: str, question: str) -> None:
    seen = same(both, ask(api, user(question)))
    assert seen["status"] in (400, 503)


def _usage(clients: Clients, api: str) -> Any:
    question = "count my tokens"
    if api == "chat":
        u = clients.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]).usage
        return (u.prompt_tokens, u.completion_tokens, u.total_tokens)
    if api == "chat.stream":
        chunks = clients.openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}], stream=True,
            stream_options={"include_usage": True})
        u = [c.usage for c in chunks if c.usage][-1]
        return (u.prompt_tokens, u.completion_tokens, u.total_tokens)
    if api == "responses":
        r = clients.openai.responses.create(model="gpt-4.1", input=question).usage
        return (r.input_tokens, r.output_tokens, r.total_tokens)
    if api == "anthropic":
        m = clients.anthropic.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                              messages=[{"role": "user", "content": question}]).usage
        return (m.input_tokens, m.output_tokens)
    g = clients.genai.models.generate_content(model="gemini-2.0-flash", contents=question).usage_metadata
    return (g.prompt_token_count, g.candidates_token_count, g.total_token_count)


@pytest.mark.parametrize("api", ["chat", "chat.stream", "responses", "anthropic", "gemini"])
def test_a_usage_override_reaches_the_sdk(both: dict[str, Clients], api: str) -> None:
    seen = same(both, lambda clients: answer(lambda: _usage(clients, api)))
    assert seen[:2] == (11, 7)


@pytest.mark.parametrize("api", APIS)
def test_sequence_index_answers_in_turn_then_misses(fresh: dict[str, Clients], api: str) -> None:
    def three(clients: Clients) -> list[Any]:
        return [send(clients, api, Ask((user("next step"),))) for _ in range(3)]

    seen = same(fresh, three)
    assert [text_of(v) for v in seen[:2]] == ["Step one.", "Step two."]


@pytest.mark.parametrize("api", APIS)
def test_turn_index_counts_the_assistant_turns(both: dict[str, Clients], api: str) -> None:
    def two(clients: Clients) -> list[Any]:
        return [
            send(clients, api, Ask((user("how far along are we?"),))),
            send(clients, api, Ask((user("hi"), said("Hello!"), user("how far along are we?")))),
        ]

    seen = same(both, two)
    assert [text_of(v) for v in seen] == ["We are just starting.", "One answer in."]


@pytest.mark.parametrize("api", APIS)
def test_system_message(both: dict[str, Clients], api: str) -> None:
    def two(clients: Clients) -> list[Any]:
        return [
            send(clients, api, Ask((user("who are you?"),), system="You are a pirate. Speak like one.")),
            send(clients, api, Ask((user("who are you?"),), system="You are terse.")),
        ]

    seen = same(both, two)
    assert [text_of(v) for v in seen] == ["Arr, a pirate assistant.", "A plain assistant."]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"])
def test_a_model_matches_its_dated_snapshots(both: dict[str, Clients], api: str, model: str) -> None:
    seen = same(both, ask(api, user("which model is this?"), model=model))
    snapshot = model in ("gpt-4o", "gpt-4o-2024-08-06")
    assert text_of(seen) == ("A gpt-4o snapshot answered." if snapshot else "Some other model answered.")


# Only Chat Completions: aimock reads no responseFormat from a Responses
# request's text.format (llmock-proxy does; see the compatibility doc).
@pytest.mark.parametrize("api", ["chat", "chat.stream"])
@pytest.mark.parametrize("response_format", ["json_object", None])
def test_response_format_and_object_content(both: dict[str, Clients], api: str, response_format: str | None) -> None:
    seen = same(both, ask(api, user("give me json"), response_format=response_format))
    if response_format:
        assert text_of(seen) == '{"answer":42,"unit":"none"}'


@pytest.mark.parametrize("api", APIS)
def test_a_miss_is_an_error_in_both(both: dict[str, Clients], api: str) -> None:
    assert same(both, ask(api, user("nothing matches this at all"))) == {"miss": True}


@pytest.mark.parametrize("api", APIS)
def test_context_from_the_request_header(aimock: Aimock, ours: EngineThread, api: str) -> None:
    seen = {}
    for header in ("checkout", None):
        headers = {"x-aimock-context": header} if header else {}
        with Clients(aimock.url, headers) as theirs, Clients(ours.url, headers) as mine:
            seen[header] = agree({THEIRS: send(theirs, api, Ask((user("where am I?"),))),
                                  OURS: send(mine, api, Ask((user("where am I?"),)))})
    assert [text_of(v) for v in seen.values()] == ["You are at the checkout.", "Somewhere without a context."]


@pytest.fixture
def miss_status_404(ours: EngineThread) -> Iterator[None]:
    """llmock-proxy answering a miss with 404, as ``--miss-status 404`` makes it."""
    session = ours.engine.session
    before, session.miss_status = session.miss_status, 404
    yield
    session.miss_status = before


def _raised(run: Callable[[], Any]) -> tuple[str, int | None]:
    import anthropic
    import openai
    from google.genai import errors as genai_errors

    try:
        run()
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        return type(exc).__name__, exc.status_code
    except genai_errors.APIError as exc:
        return type(exc).__name__, exc.code
    raise AssertionError("no error")


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic", "gemini"])
def test_with_miss_status_404_a_miss_raises_what_it_raises_with_aimock(
    both: dict[str, Clients], miss_status_404: None, api: str
) -> None:
    question = "nothing matches this at all"

    def run(clients: Clients) -> Any:
        if api == "chat":
            return _raised(lambda: clients.openai.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}]))
        if api == "responses":
            return _raised(lambda: clients.openai.responses.create(model="gpt-4.1", input=question))
        if api == "anthropic":
            return _raised(lambda: clients.anthropic.messages.create(
                model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": question}]))
        return _raised(lambda: clients.genai.models.generate_content(model="gemini-2.0-flash", contents=question))

    assert same(both, run)[1] == 404


@pytest.fixture
def embedding_fallback(ours: EngineThread) -> Iterator[None]:
    """llmock-proxy making up embeddings for unmatched input, as ``--embedding-fallback`` makes it."""
    session = ours.engine.session
    before, session.embedding_fallback = session.embedding_fallback, True
    yield
    session.embedding_fallback = before


def test_with_embedding_fallback_unmatched_input_gets_a_vector_of_the_same_size(
    both: dict[str, Clients], embedding_fallback: None
) -> None:
    def shape(clients: Clients) -> Any:
        first, again = (embed(clients, ["no fixture has this", "nor this"]) for _ in range(2))
        assert first == again  # deterministic
        return [(kind, index, len(vector)) for kind, index, vector in first["data"]]

    assert same(both, shape) == [("embedding", 0, 1536), ("embedding", 1, 1536)]


@pytest.mark.parametrize("inputs", ["tides and moons", ["tides and moons", "more tides and moons"]])
def test_embeddings(both: dict[str, Clients], inputs: Any) -> None:
    seen = same(both, lambda clients: embed(clients, inputs))
    assert seen["data"][0][2] == [0.25, -0.5, 0.125, 1.0]


# -- WebSocket APIs -----------------------------------------------------------------------------------


def _each(both: dict[str, Clients], run: Callable[[str], Any]) -> Any:
    return agree({name: run(clients.base) for name, clients in both.items()})


def test_realtime_text(both: dict[str, Clients]) -> None:
    seen = _each(both, lambda base: realtime_view(asyncio.run(realtime_text_turn(Target.at(base), "Say hello"))))
    assert seen["responses"][-1]["output"] == [{"message": "Hello there, friend! Nice to meet you."}]


def test_realtime_tool_loop(both: dict[str, Clients]) -> None:
    seen = _each(both, lambda base: realtime_view(asyncio.run(realtime_tool_conversation(Target.at(base))),
                                                   FIXED_IDS))
    assert seen["responses"][-1]["output"] == [{"message": "It is sunny in Paris, 24 degrees."}]


def test_responses_over_websocket_text(both: dict[str, Clients]) -> None:
    seen = _each(both, lambda base: realtime_view(asyncio.run(responses_text_turn(Target.at(base), "Say hello"))))
    assert seen["responses"][-1]["output"] == [{"message": "Hello there, friend! Nice to meet you."}]


def test_responses_over_websocket_tool_loop(both: dict[str, Clients]) -> None:
    seen = _each(both, lambda base: realtime_view(asyncio.run(responses_ws_tool_loop(base)), FIXED_IDS))
    assert seen["responses"][-1]["output"] == [{"message": "It is sunny in Paris, 24 degrees."}]


def test_gemini_live_text(both: dict[str, Clients]) -> None:
    seen = _each(both, lambda base: live_view(asyncio.run(live_session(base, "Say hello"))))
    assert seen["text"] == "Hello there, friend! Nice to meet you."


def test_gemini_live_tool_loop(both: dict[str, Clients]) -> None:
    seen = _each(both, lambda base: live_view(asyncio.run(live_session(
        base, "What is the weather in Paris?", tools=("get_weather",), tool_result={"sky": "clear"}))))
    assert seen["function_calls"] == [{"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}}]
    assert seen["text"] == "It is sunny in Paris, 24 degrees."
