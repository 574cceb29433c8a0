"""Per-test replay sessions on one server: selection by header, path prefix and
proxy credentials, state of their own, the journal, unused recordings, and a
session that records through its own forwarder. Driven with the real openai
SDK against the engine (as ``serve`` and the pytest plugin run it) and the
replay addon in an in-process mitmproxy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.record.forward import ForwarderFactory
from llmock_proxy.replay.session import ReplaySession
from tests.fakes import FakeServer, OpenAIFake, Script
from tests.harness import clients as sdk
from tests.harness.http import httpx
from tests.support.replay import EngineThread
from tests.test_replay_addon import start_replay, stopping  # noqa: F401  (a fixture)

QUESTION = [{"role": "user", "content": "Which answer comes next?"}]
CONTROL = {"x-llmock-control": "1"}


def ask(base_url: str, messages: list[dict[str, Any]] = QUESTION, **headers: str) -> str:
    client = sdk.openai_client(base_url=base_url, default_headers=headers or None)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    return answer.choices[0].message.content or ""


def control(engine: EngineThread, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
    with httpx.Client(trust_env=False) as client:
        return client.request(method, engine.url + path, json=body, headers={**CONTROL, **headers})


@pytest.fixture
def two_answers(tmp_path: Path) -> Path:
    """A cassette recorded through a record-mode session: the same question
    asked twice upstream, answered differently each time."""
    cassette = tmp_path / "cassettes" / "two-answers.yaml"
    fake = FakeServer(OpenAIFake()).start()
    try:
        fake.queue(Script(text="The first answer."), Script(text="The second answer."))
        with EngineThread(ReplaySession(), forward=ForwarderFactory()) as engine:
            opened = control(engine, "POST", "/__llmock/sessions", {
                "id": "rec", "mode": "record", "record_to": str(cassette), "upstreams": {"openai": fake.url + "/v1"},
            })
            assert opened.status_code == 201, opened.text
            base = engine.url + opened.json()["prefix"] + "/v1"
            assert [ask(base), ask(base)] == ["The first answer.", "The second answer."]
            closed = control(engine, "DELETE", "/__llmock/sessions/rec").json()
        assert [r["outcome"] for r in closed["requests"]] == ["recorded", "recorded"]
        assert [r["status"] for r in closed["requests"]] == [200, 200]
        assert len(fake.requests) == 2
    finally:
        fake.stop()
    text = cassette.read_text()
    assert "sk-test" not in text  # the key the SDK sent was redacted on the way in
    assert len(cassette_store.load(cassette).interactions) == 2
    return cassette


def test_sessions_keep_their_own_sequence_and_journal(two_answers: Path) -> None:
    with EngineThread(ReplaySession.load([two_answers])) as engine:
        for session_id in ("t1", "t2"):
            assert control(engine, "POST", "/__llmock/sessions", {"id": session_id}).status_code == 201
        by_prefix = engine.url + "/__llmock/session/t1/v1"
        # Interleaved: each session starts at the first recording, whatever the other did.
        assert ask(by_prefix) == "The first answer."
        assert ask(engine.url + "/v1", **{"x-llmock-session": "t2"}) == "The first answer."
        assert ask(by_prefix) == "The second answer."
        assert ask(engine.url + "/v1") == "The first answer."  # the default session is untouched too

        journal = control(engine, "GET", "/__llmock/sessions/t1/requests").json()["requests"]
        assert [(e["outcome"], e["path"], e["origin"]["index"]) for e in journal] == [
            ("hit", "/v1/chat/completions", 0), ("hit", "/v1/chat/completions", 1)]
        assert journal[0]["origin"]["file"] == str(two_answers) and journal[0]["model"] == "gpt-4o-mini"
        unused = control(engine, "GET", "/__llmock/sessions/t2/unused").json()["unused"]
        assert unused == [{"file": str(two_answers), "section": "interactions", "index": 1}]

        reset = control(engine, "POST", "/__llmock/sessions/t1/reset")
        assert reset.status_code == 200
        assert control(engine, "GET", "/__llmock/sessions/t1/requests").json()["requests"] == []
        assert ask(by_prefix) == "The first answer."


def test_a_session_miss_is_in_its_journal_with_the_near_miss_report(two_answers: Path) -> None:
    with EngineThread(ReplaySession.load([two_answers])) as engine:
        control(engine, "POST", "/__llmock/sessions", {"id": "m"})
        with pytest.raises(openai.APIStatusError) as caught:
            ask(engine.url + "/__llmock/session/m/v1", [{"role": "user", "content": "Something else entirely?"}])
        assert caught.value.status_code == 421
        (entry,) = control(engine, "DELETE", "/__llmock/sessions/m").json()["requests"]
        assert entry["outcome"] == "miss" and entry["origin"] is None
        assert "Something else entirely?" in entry["message"] and str(two_answers) in entry["message"]
        assert entry["nearMisses"] and entry["nearMisses"][0]["source"].startswith(str(two_answers))
        assert control(engine, "GET", "/__llmock/sessions").json() == {"sessions": []}


def test_a_session_with_files_of_its_own_and_bad_requests_to_open_one(two_answers: Path, tmp_path: Path) -> None:
    with EngineThread(ReplaySession()) as engine:
        opened = control(engine, "POST", "/__llmock/sessions", {"cassettes": [str(two_answers)]})
        assert opened.status_code == 201
        session_id = opened.json()["id"]
        assert ask(engine.url + opened.json()["prefix"] + "/v1") == "The first answer."
        with pytest.raises(openai.APIStatusError):  # the default session has nothing loaded
            ask(engine.url + "/v1")

        duplicate = control(engine, "POST", "/__llmock/sessions", {"id": session_id})
        assert duplicate.status_code == 409
        missing = control(engine, "POST", "/__llmock/sessions", {"cassettes": [str(tmp_path / "nope.yaml")]})
        assert missing.status_code == 400 and "nope.yaml" in missing.json()["error"]["message"]
        typo = control(engine, "POST", "/__llmock/sessions", {"cassete": []})
        assert typo.status_code == 400 and "cassete" in typo.json()["error"]["message"]
        no_target = control(engine, "POST", "/__llmock/sessions", {"mode": "record"})
        assert no_target.status_code == 400 and "record_to" in no_target.json()["error"]["message"]
        # Without a forwarder, a session cannot be opened to record.
        refused = control(engine, "POST", "/__llmock/sessions", {"mode": "auto", "record_to": str(tmp_path / "x.yaml")})
        assert refused.status_code == 400

        with pytest.raises(openai.NotFoundError) as caught:
            ask(engine.url + "/v1", **{"x-llmock-session": "never-opened"})
        assert "never-opened" in str(caught.value.body)
        unknown = control(engine, "GET", "/__llmock/session/never-opened/__llmock/health")
        assert unknown.status_code == 404


def test_an_auto_session_replays_what_it_recorded_and_forwards_only_misses(tmp_path: Path) -> None:
    cassette = tmp_path / "auto.yaml"
    fake = FakeServer(OpenAIFake(Script(text="Recorded on a miss."))).start()
    try:
        with EngineThread(ReplaySession(), forward=ForwarderFactory()) as engine:
            control(engine, "POST", "/__llmock/sessions", {
                "id": "a", "mode": "auto", "record_to": str(cassette), "upstreams": {"openai": fake.url + "/v1"}})
            base = engine.url + "/__llmock/session/a/v1"
            assert ask(base) == "Recorded on a miss."
            fake.script = Script(text="Never asked for.")
            assert ask(base) == "Recorded on a miss."
            journal = control(engine, "GET", "/__llmock/sessions/a/requests").json()["requests"]
        assert [e["outcome"] for e in journal] == ["recorded", "hit"]
        assert len(fake.requests) == 1
    finally:
        fake.stop()
    assert len(cassette_store.load(cassette).interactions) == 1


@dataclass
class CredentialedProxy:
    """The in-process proxy, reached with a replay session's proxy credentials."""

    url: str
    ca_cert_path: Path


def test_the_replay_addon_selects_sessions_by_proxy_credentials(
    two_answers: Path, tmp_path: Path, stopping: list[Any]  # noqa: F811
) -> None:
    proxy, _, router = start_replay(tmp_path, {"llmock_cassettes": [str(two_answers)]})
    stopping.append(proxy)
    with sdk.raw_client(proxy) as raw:
        for session_id in ("p1", "p2"):
            opened = raw.post("http://llmock.invalid/__llmock/sessions", json={"id": session_id}, headers=CONTROL)
            assert opened.status_code == 201, opened.text
        refused = raw.post("http://llmock.invalid/__llmock/sessions", json={"mode": "passthrough"}, headers=CONTROL)
        assert refused.status_code == 400

    def through(session_id: str) -> str:
        endpoint = CredentialedProxy(proxy.url.replace("http://", f"http://{session_id}:llmock@"), proxy.ca_cert_path)
        client = sdk.openai_client(endpoint)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)  # type: ignore[arg-type]
        return answer.choices[0].message.content or ""

    assert through("p1") == "The first answer."
    assert through("p2") == "The first answer."
    assert through("p1") == "The second answer."
    with pytest.raises(openai.NotFoundError):
        through("p3")
    with sdk.raw_client(proxy) as raw:
        journal = raw.get("http://llmock.invalid/__llmock/sessions/p1/requests").json()["requests"]
        health = raw.get("http://llmock.invalid/__llmock/health").json()
    assert [e["origin"]["index"] for e in journal] == [0, 1]
    assert health["hits"] == 0 and health["sessions"] == 2  # the default session answered nothing
    assert router.attempts == []


def test_what_a_forked_session_adds_stays_its_own(two_answers: Path) -> None:
    from llmock_proxy.replay.llmock_format import parse_fixture_entries

    default = ReplaySession.load([two_answers])
    forked = default.fork("t1")
    (extra,) = parse_fixture_entries({"fixtures": [{"match": {"userMessage": "only here"}, "response": {"content": "x"}}]},
                                     "extra.json")
    forked.add(extra)
    assert len(forked) == 3 and len(default) == 2
    other = default.fork("t2")
    default.add(extra)
    assert len(default) == 3 and len(other) == 2 and len(forked) == 3
