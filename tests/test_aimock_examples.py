"""Every LLM fixture file aimock ships as an example loads in llmock-proxy, and
each of its fixtures answers what aimock answers.

The files are read from the pinned aimock package installed under
tests/aimock/node_modules (never copied into this repository). For each file
and each API, both servers are given that file alone; then, in file order,
a request built from each fixture's match goes to both through the real SDK,
and what the SDK saw is compared (tests/support/aimock.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmock_proxy.replay.llmock_format import load_fixture_file
from llmock_proxy.replay.session import ReplaySession
from tests.support.aimock import (
    APIS,
    FIXTURES,
    Aimock,
    Ask,
    Clients,
    agree,
    assistant,
    call,
    embed,
    example_fixture_files,
    send,
    serving,
    tool,
    user,
)
from tests.support.replay import EngineThread

# The LLM fixture files of aimock 1.43.0's fixtures/ folder (tests/aimock pins
# the version; test_the_list_is_what_the_package_ships checks the list) and
# what their fixtures answer: "chat" (any chat API), "embeddings", or "live"
# (GPT-Live sessions, which llmock-proxy does not replay: loaded, not served).
FIXTURE_FILES = {
    "example-greeting.json": {"chat"},
    "example-multi-turn.json": {"chat"},
    "example-tool-call.json": {"chat"},
    "examples/adk/gemini-agent.json": {"chat"},
    "examples/crewai/multi-agent-crew.json": {"chat"},
    "examples/langchain/agent-loop.json": {"chat"},
    "examples/llamaindex/rag-pipeline.json": {"chat", "embeddings"},
    "examples/llm/blocks-tool-first.json": {"chat"},
    "examples/llm/embeddings.json": {"embeddings"},
    "examples/llm/error-injection.json": {"chat"},
    "examples/llm/sequential-responses.json": {"chat"},
    "examples/llm/streaming-physics.json": {"chat"},
    "examples/mastra/agent-workflow.json": {"chat"},
    "examples/pydanticai/structured-output.json": {"chat"},
    "openai-live-client.json": {"live"},
    "openai-live-managed.json": {"live"},
}
# aimock config files whose llm section names a fixture file (resolved as
# aimock does: against the working directory, which for its examples is the
# package's root): they load as that file with the config's options.
CONFIG_FILES = {
    "examples/chaos/chaos-config.json": "example-greeting.json",
    "examples/full-suite.json": "example-greeting.json",
    "examples/llamaindex/aimock-config.json": "examples/llamaindex/rag-pipeline.json",
}
CASES = [(name, api) for name, kinds in FIXTURE_FILES.items() if "chat" in kinds for api in APIS] + [
    (name, "embeddings") for name, kinds in FIXTURE_FILES.items() if "embeddings" in kinds
]


def _entries(name: str) -> list[dict[str, Any]]:
    return list(json.loads((FIXTURES / name).read_text())["fixtures"])


def _kind(entry: dict[str, Any]) -> str:
    match, response = entry.get("match", {}), entry.get("response", {})
    if match.get("endpoint") == "openai-live":
        return "live"
    if match.get("endpoint") == "embedding" or "inputText" in match or "embedding" in response:
        return "embeddings"
    return "chat"


# aimock ends a Gemini function call with finishReason FUNCTION_CALL, which
# Gemini does not have (google-genai warns); llmock-proxy says STOP, as Gemini does.
pytestmark = pytest.mark.filterwarnings("ignore:FUNCTION_CALL is not a valid FinishReason:UserWarning")

@pytest.fixture(scope="module")
def aimock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aimock]:
    empty = tmp_path_factory.mktemp("aimock") / "empty.json"
    empty.write_text('{"fixtures": []}')
    yield from serving([empty])


@pytest.fixture(scope="module")
def ours() -> Iterator[EngineThread]:
    with EngineThread(ReplaySession(), timing="instant") as engine:
        yield engine


@pytest.fixture(scope="module")
def clients(aimock: Aimock, ours: EngineThread) -> Iterator[dict[str, Clients]]:
    made = {"aimock": Clients(aimock.url), "llmock-proxy": Clients(ours.url)}
    yield made
    for each in made.values():
        each.close()


def test_the_list_is_what_the_package_ships(aimock: Aimock) -> None:
    shipped = {str(p.relative_to(FIXTURES)) for p in example_fixture_files()}
    assert shipped == set(FIXTURE_FILES) | set(CONFIG_FILES)
    for name, kinds in FIXTURE_FILES.items():
        assert {_kind(e) for e in _entries(name)} == kinds, name


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_every_fixture_file_loads(aimock: Aimock, name: str) -> None:
    path = FIXTURES / name
    served = [e for e in _entries(name) if _kind(e) != "live"]
    assert len(load_fixture_file(path)) == len(served)
    assert len(ReplaySession.load(fixtures=[path])) == len(served)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_file_loads_the_fixtures_it_names(
    aimock: Aimock, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES.parent)  # where aimock's examples expect to be run
    named = ReplaySession.load(fixtures=[FIXTURES / CONFIG_FILES[name]])
    config = ReplaySession.load(fixtures=[FIXTURES / name])
    assert [f.match for c in config.matcher.candidates for f in c.fixtures] == [
        f.match for c in named.matcher.candidates for f in c.fixtures
    ]


def request_for(match: dict[str, Any]) -> Ask:
    """A request the fixture's match asks for, in no API's form."""
    turns: list[Any] = []
    for _ in range(match.get("turnIndex") or 0):
        turns += [user("Earlier question"), assistant("Earlier answer.")]
    turns.append(user(match.get("userMessage") or "Hello"))
    if "toolCallId" in match or match.get("hasToolResult") or "toolResultContains" in match:
        id, name = match.get("toolCallId", "call_example_1"), match.get("toolName", "example_tool")
        turns += [call(id, name, {}), tool(id, name, match.get("toolResultContains", "done"))]
    system = match.get("systemMessage")
    return Ask(
        tuple(turns),
        system=" ".join(system) if isinstance(system, list) else system,
        tools=(match["toolName"],) if "toolName" in match else (),
        model=match.get("model") if isinstance(match.get("model"), str) else None,
        response_format=match.get("responseFormat"),
    )


@pytest.mark.parametrize(("name", "api"), CASES)
def test_each_fixture_answers_as_in_aimock(
    aimock: Aimock, ours: EngineThread, clients: dict[str, Clients], name: str, api: str
) -> None:
    entries = _entries(name)
    assert aimock.serve({"fixtures": entries}) == len(entries)  # and fresh sequence counts
    ours.engine.session = ReplaySession.load(fixtures=[FIXTURES / name])
    wanted = "embeddings" if api == "embeddings" else "chat"
    seen: dict[str, list[Any]] = {}
    for server, each in clients.items():
        seen[server] = []
        for entry in entries:  # in file order: sequenceIndex counts as it goes
            match = entry.get("match", {})
            if _kind(entry) != wanted:
                continue
            if wanted == "embeddings":
                seen[server].append(embed(each, match.get("inputText", "Hello")))
            else:
                seen[server].append(send(each, api, request_for(match)))
    theirs = agree(seen)
    assert any("miss" not in v for v in theirs), f"aimock answered none of {name}'s fixtures: {theirs}"
