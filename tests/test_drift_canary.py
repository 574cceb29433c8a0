"""The active canary against fake providers: the mutation matrix, values-only
changes, WebSocket sessions, skipped families, --update, and credentials.

The baseline is recorded once per module through the record addon from the
unmutated fakes (see tests/support/drift.py); each test then scripts the
fakes to change one thing and runs ``llmock-proxy drift`` against them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cli import main
from tests.fakes import FakeServer, Script, StreamEvent, TestPKI
from tests.support.drift import (
    CANARY_ENV,
    DriftWorld,
    RealtimeFake,
    record_baseline,
    record_realtime_baseline,
    set_canary_env,
)


@pytest.fixture(scope="module")
def world(test_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftWorld]:
    world = record_baseline(test_pki, tmp_path_factory.mktemp("drift-baseline"))
    yield world
    world.stop()


@pytest.fixture
def fresh(world: DriftWorld, monkeypatch: pytest.MonkeyPatch) -> DriftWorld:
    world.reset()
    set_canary_env(monkeypatch)
    return world


def run_drift(args: list[str], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """Run the command; returns its exit code and the JSON report."""
    report = tmp_path / "report.json"
    code = main(["drift", *args, "--json", str(report)])
    return code, json.loads(report.read_text())


def graded(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (f["severity"], f["kind"], f["path"]) for r in report["results"] for f in r["findings"]
    )


def outcomes(report: dict[str, Any]) -> list[str]:
    return [r["outcome"] for r in report["results"]]


def test_baseline_has_every_shape(world: DriftWorld):
    assert sorted(world.cassettes) == [
        "anthropic.messages.body",
        "anthropic.messages.sse",
        "bedrock.converse.eventstream",
        "cohere.chat.sse",
        "gemini.generate.body",
        "gemini.generate.sse",
        "ollama.chat.ndjson",
        "openai.chat.body",
        "openai.chat.sse",
        "openai.responses.sse",
    ]


# -- the mutation matrix ------------------------------------------------------------


def on_type(kind: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    """A mutate knob changing only payloads of one ``type``."""

    def mutate(payload: Any) -> Any:
        if isinstance(payload, dict) and payload.get("type") == kind:
            payload = json.loads(json.dumps(payload))
            change(payload)
        return payload

    return mutate


def whole_body(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def mutate(payload: Any) -> Any:
        payload = json.loads(json.dumps(payload))
        change(payload)
        return payload

    return mutate


def swap_kinds(a: str, b: str) -> Callable[[list[StreamEvent]], list[StreamEvent]]:
    """Every ``a`` event moves to just after the first ``b`` event."""

    def reorder(events: list[StreamEvent]) -> list[StreamEvent]:
        moved = [e for e in events if e.kind == a]
        rest = [e for e in events if e.kind != a]
        at = next(i for i, e in enumerate(rest) if e.kind == b) + 1
        return rest[:at] + moved + rest[at:]

    return reorder


MATRIX = [
    pytest.param("anthropic.messages.sse",
                 Script(mutate=on_type("message_start", lambda d: d["message"].update(container=None))),
                 [("warning", "field-added", "events.message_start.message.container")], id="sse-add-field"),
    pytest.param("anthropic.messages.sse",
                 Script(mutate=on_type("message_start", lambda d: d["message"].pop("model"))),
                 [("critical", "field-removed", "events.message_start.message.model")], id="sse-remove-field"),
    pytest.param("anthropic.messages.sse",
                 Script(mutate=on_type("content_block_stop", lambda d: d.update(index=str(d["index"])))),
                 [("critical", "type-changed", "events.content_block_stop.index")], id="sse-change-type"),
    pytest.param("anthropic.messages.sse",
                 Script(mutate=on_type("message_delta", lambda d: d["delta"].update(stop_reason="pause_turn"))),
                 [("warning", "enum-added", "events.message_delta.delta.stop_reason")], id="sse-add-enum-value"),
    pytest.param("anthropic.messages.sse", Script(rename_events={"message_stop": "message_end"}),
                 [("critical", "event-removed", "events.message_stop"),
                  ("warning", "event-added", "events.message_end")], id="sse-rename-event"),
    pytest.param("anthropic.messages.sse", Script(drop_events={"ping"}),
                 [("critical", "event-removed", "events.ping")], id="sse-drop-event"),
    pytest.param("anthropic.messages.sse",
                 Script(reorder_events=swap_kinds("content_block_stop", "message_delta")),
                 [("critical", "order-changed", "events.content_block_stop")], id="sse-reorder-events"),
    pytest.param("anthropic.messages.sse", Script(content_type="application/json"),
                 [("critical", "content-type-changed", "content-type"), ("critical", "form-changed", "form")],
                 id="sse-change-content-type"),
    pytest.param("anthropic.messages.sse", Script(status=202),
                 [("critical", "status-changed", "status")], id="sse-change-status"),
    pytest.param("openai.chat.body", Script(mutate=whole_body(lambda d: d.update(moderation={"flagged": False}))),
                 [("warning", "field-added", "moderation")], id="body-add-field"),
    pytest.param("openai.chat.body", Script(mutate=whole_body(lambda d: d.pop("system_fingerprint"))),
                 [("critical", "field-removed", "system_fingerprint")], id="body-remove-field"),
    pytest.param("openai.chat.body", Script(mutate=whole_body(lambda d: d.update(created=str(d["created"])))),
                 [("critical", "type-changed", "created")], id="body-change-type"),
    pytest.param("openai.chat.body",
                 Script(mutate=whole_body(lambda d: d["choices"][0].update(finish_reason="content_filter"))),
                 [("warning", "enum-added", "choices[].finish_reason")], id="body-add-enum-value"),
    pytest.param("openai.chat.body", Script(content_type="text/plain"),
                 [("critical", "content-type-changed", "content-type")], id="body-change-content-type"),
    pytest.param("openai.chat.body", Script(status=203),
                 [("critical", "status-changed", "status")], id="body-change-status"),
    pytest.param("ollama.chat.ndjson",
                 Script(mutate=lambda line: {k: v for k, v in line.items() if k != "done_reason"}),
                 [("critical", "field-removed", "events.done.done_reason")], id="ndjson-remove-field"),
    pytest.param("bedrock.converse.eventstream", Script(drop_events={"metadata"}),
                 [("critical", "event-removed", "events.metadata")], id="eventstream-drop-event"),
    pytest.param("bedrock.converse.eventstream", Script(rename_events={"messageStop": "messageEnd"}),
                 [("critical", "event-removed", "events.messageStop"),
                  ("warning", "event-added", "events.messageEnd")], id="eventstream-rename-event"),
]


@pytest.mark.parametrize("shape, script, expected", MATRIX)
def test_mutation_is_detected_at_its_severity(fresh: DriftWorld, tmp_path: Path, shape, script, expected):
    fresh.fake(shape).script = script
    code, report = run_drift([str(fresh.cassettes[shape]), *fresh.upstream_args()], tmp_path)
    assert outcomes(report) == ["checked"]
    assert graded(report) == sorted(expected)
    critical = any(severity == "critical" for severity, _, _ in expected)
    assert code == (1 if critical else 0)
    # The fake really answered the canary, with the canary's credential.
    assert len(fresh.fake(shape).requests) == 1


def test_values_only_changes_are_not_drift(fresh: DriftWorld, tmp_path: Path):
    other = Script(text="A different and considerably longer answer, streamed in many more pieces than before, "
                        "with other ids, timestamps and token counts.")
    for server in fresh.fakes.values():
        server.script = other
    code, report = run_drift([str(fresh.cassette_dir), *fresh.upstream_args()], tmp_path)
    assert outcomes(report) == ["checked"] * len(fresh.cassettes)
    assert [f for f in graded(report) if f[0] != "info"] == []
    assert code == 0


def test_warning_threshold_fails_on_a_new_field(fresh: DriftWorld, tmp_path: Path):
    fresh.fakes["openai"].script = Script(mutate=whole_body(lambda d: d.update(moderation=None)))
    args = [str(fresh.cassettes["openai.chat.body"]), *fresh.upstream_args()]
    assert run_drift(args, tmp_path)[0] == 0
    assert run_drift([*args, "--fail-on", "warning"], tmp_path)[0] == 1


def test_policy_mutes_and_regrades(fresh: DriftWorld, tmp_path: Path):
    fresh.fakes["anthropic"].script = Script(drop_events={"ping"})
    policy = tmp_path / "policy.yaml"
    policy.write_text("anthropic.messages:\n  severity:\n    events.ping: info\n")
    code, report = run_drift(
        [str(fresh.cassettes["anthropic.messages.sse"]), *fresh.upstream_args(), "--policy", str(policy)], tmp_path
    )
    assert graded(report) == [("info", "event-removed", "events.ping")]
    assert code == 0


# -- WebSocket sessions ----------------------------------------------------------------


@pytest.fixture(scope="module")
def realtime(test_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeServer, Path]]:
    with FakeServer(RealtimeFake(), pki=test_pki) as fake:
        path = record_realtime_baseline(fake, test_pki, tmp_path_factory.mktemp("realtime"))
        yield fake, path


def insert_before_last(kind: str) -> Callable[[list[StreamEvent]], list[StreamEvent]]:
    def insert(events: list[StreamEvent]) -> list[StreamEvent]:
        extra = StreamEvent(None, {"type": kind, "event_id": "event_x", "rate_limits": []})
        return [*events[:-1], extra, events[-1]]

    return insert


@pytest.mark.parametrize(
    "script, expected",
    [
        pytest.param(Script(text="Another, much longer reply in many more delta messages than recorded."), [],
                     id="values-only"),
        pytest.param(Script(reorder_events=insert_before_last("rate_limits.updated")),
                     [("warning", "event-added", "events.rate_limits.updated")], id="add-message-type"),
        pytest.param(Script(drop_events={"response.output_item.done"}),
                     [("critical", "event-removed", "events.response.output_item.done")], id="drop-message-type"),
        pytest.param(Script(mutate=on_type("response.done", lambda d: d["response"].update(status="incomplete"))),
                     [("warning", "enum-added", "events.response.done.response.status")], id="add-enum-value"),
    ],
)
def test_websocket_session_is_replayed_turn_by_turn(realtime, monkeypatch, tmp_path, script, expected):
    fake, path = realtime
    fake.script = script
    fake.requests.clear()
    set_canary_env(monkeypatch)
    code, report = run_drift(
        [str(path), "--upstream", f"openai.realtime={fake.url}", "--timeout", "10"], tmp_path
    )
    assert outcomes(report) == ["checked"], report
    assert graded(report) == expected
    assert code == (1 if any(s == "critical" for s, _, _ in expected) else 0)
    (handshake,) = fake.requests
    assert handshake.header("authorization") == f"Bearer {CANARY_ENV['OPENAI_API_KEY']}"


def test_websocket_update_keeps_the_client_turns(realtime, monkeypatch, tmp_path):
    fake, recorded = realtime
    fake.script = Script(text="Fresh words.")
    set_canary_env(monkeypatch)
    copy = tmp_path / "realtime.yaml"
    copy.write_bytes(recorded.read_bytes())
    code, _ = run_drift([str(copy), "--upstream", f"openai={fake.url}", "--update"], tmp_path)
    assert code == 0
    session = cassette_store.load(copy).interactions[0].response.websocket
    client = [m.payload.value for m in session.messages if m.from_client]
    assert [m["type"] for m in client] == ["session.update", "conversation.item.create", "response.create"]
    server_text = [m.payload.value.get("delta") for m in session.messages if not m.from_client]
    assert "".join(t for t in server_text if t) == "Fresh words."


# -- credentials ---------------------------------------------------------------------------


def test_families_without_keys_are_skipped_not_failed(fresh: DriftWorld, tmp_path: Path, monkeypatch):
    set_canary_env(
        monkeypatch, OPENAI_API_KEY=None, ANTHROPIC_API_KEY=None, GEMINI_API_KEY=None, COHERE_API_KEY=None,
        AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
    )
    monkeypatch.setenv("GOOGLE_API_KEY", "")  # empty is missing too
    code, report = run_drift([str(fresh.cassette_dir), *fresh.upstream_args()], tmp_path)
    assert code == 0
    by_family = {r["family"]: r for r in report["results"]}
    assert by_family["ollama.chat"]["outcome"] == "checked"  # Ollama needs no key
    skipped = {r["family"]: r["reason"] for r in report["results"] if r["outcome"] == "skipped"}
    assert skipped["openai.chat"] == "no OPENAI_API_KEY in the environment"
    assert skipped["anthropic.messages"] == "no ANTHROPIC_API_KEY in the environment"
    assert skipped["gemini.generate"] == "no GEMINI_API_KEY or GOOGLE_API_KEY in the environment"
    assert skipped["cohere.chat"] == "no COHERE_API_KEY in the environment"
    assert "SigV4" in skipped["bedrock.converse"]
    assert all(not fresh.fakes[name].requests for name in ("openai", "anthropic", "gemini", "cohere", "bedrock"))
    # The headline names, once each, what to set: "/" between alternatives, "+" for variables needed together.
    assert report["missing_keys"] == [
        "ANTHROPIC_API_KEY", "AWS_BEARER_TOKEN_BEDROCK/AWS_ACCESS_KEY_ID+AWS_SECRET_ACCESS_KEY", "COHERE_API_KEY",
        "GEMINI_API_KEY/GOOGLE_API_KEY", "OPENAI_API_KEY",
    ]
    assert report["summary"] == f"1 family checked, 6 skipped (no key: {', '.join(report['missing_keys'])})"


def test_credentials_come_from_the_environment_and_never_leave_in_output(
    fresh: DriftWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    for path in fresh.cassettes.values():
        (cassettes / path.name).write_bytes(path.read_bytes())
    reports = [tmp_path / "out" / name for name in ("r.json", "r.xml", "r.md")]
    code = main(["drift", str(cassettes), *fresh.upstream_args(), "--update",
                 "--json", str(reports[0]), "--junit", str(reports[1]), "--markdown", str(reports[2])])
    assert code == 0
    captured = capsys.readouterr()

    sent = {name: server.requests for name, server in fresh.fakes.items()}
    assert sent["openai"][0].header("authorization") == f"Bearer {CANARY_ENV['OPENAI_API_KEY']}"
    assert sent["anthropic"][0].header("x-api-key") == CANARY_ENV["ANTHROPIC_API_KEY"]
    assert sent["anthropic"][0].header("anthropic-version")  # the recorded header is kept
    assert sent["gemini"][0].header("x-goog-api-key") == CANARY_ENV["GEMINI_API_KEY"]
    assert sent["cohere"][0].header("authorization") == f"Bearer {CANARY_ENV['COHERE_API_KEY']}"
    assert sent["bedrock"][0].header("authorization").startswith("AWS4-HMAC-SHA256 Credential=test-access-key/")
    for request in (r for requests in sent.values() for r in requests):
        assert not any("redacted" in value.lower() for value in request.headers.values()), request.headers
        assert "redacted" not in request.raw_path

    written = [p.read_text() for p in reports] + [p.read_text() for p in cassettes.iterdir()]
    for text in [*written, captured.out, captured.err]:
        assert "sk-test" not in text



def test_update_never_writes_a_credential_the_live_answer_echoes(fresh: DriftWorld, tmp_path: Path, capsys):
    """A key with no well-known shape (an Ollama server's bearer token) that
    the live answer carries back is still kept out of the refreshed cassette
    and the reports: the canary redacts the values it sent, not just the
    key-shaped ones. (Not an ``sk-test-`` key on purpose: those are caught
    by shape.)"""
    token = "llmock-canary-ollama-token-0008"
    fresh.fakes["ollama"].script = Script(mutate=lambda line: {**line, "served_for": f"Bearer-less {token}"})
    copy = tmp_path / "ollama.yaml"
    copy.write_bytes(fresh.cassettes["ollama.chat.ndjson"].read_bytes())
    code = main(["drift", str(copy), *fresh.upstream_args(), "--update",
                 "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")])
    assert code == 0
    sent = fresh.fakes["ollama"].requests
    assert sent[0].header("authorization") == f"Bearer {CANARY_ENV['OLLAMA_API_KEY']}"
    refreshed = cassette_store.load(copy).interactions[0].response
    assert "served_for" in refreshed.lines[0].data  # the live answer was written back
    for text in (copy.read_text(), (tmp_path / "r.json").read_text(), (tmp_path / "r.md").read_text(),
                 *capsys.readouterr()):
        assert token not in text

def test_update_refreshes_the_response_and_keeps_request_and_match(fresh: DriftWorld, tmp_path: Path):
    shape = "openai.chat.body"
    copy = tmp_path / "chat.yaml"
    copy.write_bytes(fresh.cassettes[shape].read_bytes())
    before = cassette_store.load(copy).interactions[0]
    fresh.fakes["openai"].script = Script(
        text="Refreshed answer.", mutate=whole_body(lambda d: d.update(moderation={"flagged": False}))
    )
    code, report = run_drift([str(copy), *fresh.upstream_args(), "--update"], tmp_path)
    assert code == 0 and graded(report) == [("warning", "field-added", "moderation")]
    after = cassette_store.load(copy).interactions[0]
    assert after.request == before.request and after.match == before.match
    assert after.response.json["moderation"] == {"flagged": False}
    assert after.summary["text"] == "Refreshed answer."
    assert after.recorded_at != before.recorded_at
    # The refreshed cassette is the new contract: the same answer is no longer drift.
    assert graded(run_drift([str(copy), *fresh.upstream_args()], tmp_path)[1]) == []


def test_update_never_writes_an_error_answer_over_a_recording(fresh: DriftWorld, tmp_path: Path, capsys):
    copy = tmp_path / "chat.yaml"
    copy.write_bytes(fresh.cassettes["openai.chat.body"].read_bytes())
    original = copy.read_bytes()
    fresh.fakes["openai"].script = Script(error_status=500)
    code, report = run_drift([str(copy), *fresh.upstream_args(), "--update"], tmp_path)
    assert code == 1 and ("critical", "status-changed", "status") in graded(report)
    assert copy.read_bytes() == original
    assert "live answer was HTTP 500" in capsys.readouterr().err


def test_refused_credentials_are_an_error_not_drift(fresh: DriftWorld, tmp_path: Path):
    fresh.fakes["openai"].script = Script(error_status=401)
    code, report = run_drift([str(fresh.cassettes["openai.chat.body"]), *fresh.upstream_args()], tmp_path)
    assert code == 1
    (result,) = report["results"]
    assert result["outcome"] == "error" and result["findings"] == []
    assert result["reason"].startswith("credentials refused: HTTP 401")


def test_sample_max_requests_and_concurrency(fresh: DriftWorld, tmp_path: Path):
    code, report = run_drift(
        [str(fresh.cassette_dir), *fresh.upstream_args(), "--sample", "--max-requests", "3", "--concurrency", "2"],
        tmp_path,
    )
    assert code == 0
    assert outcomes(report).count("checked") == 3
    capped = [r for r in report["results"] if r["outcome"] == "skipped"]
    assert len(capped) == len(fresh.cassettes) - 3
    assert {r["reason"] for r in capped} == {"not sent: --max-requests 3 reached"}
    assert sum(len(s.requests) for s in fresh.fakes.values()) == 3


def test_a_stalled_upstream_times_out_as_an_error(fresh: DriftWorld, tmp_path: Path):
    fresh.fakes["ollama"].script = Script(first_event_delay=5)
    code, report = run_drift(
        [str(fresh.cassettes["ollama.chat.ndjson"]), *fresh.upstream_args(), "--timeout", "0.3"], tmp_path
    )
    assert code == 1
    (result,) = report["results"]
    assert result["outcome"] == "error" and "timed out after 0.3 s" in result["reason"]


# -- how a recorded request goes out again (no network) --------------------------------------


def test_redacted_values_are_replaced_never_sent():
    from llmock_proxy.cassette.model import Request
    from llmock_proxy.drift.canary import Upstream, credential_for, live_request

    recorded = Request(
        "POST",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        "?alt=sse&key=REDACTED",
        headers={"x-goog-api-key": "<redacted>", "content-type": "application/json", "cookie": "<redacted>",
                 "x-goog-api-client": "genai-py/2.34"},
    )
    credential = credential_for("gemini.generate", recorded, {"GOOGLE_API_KEY": "sk-test-google-0005"})
    live = live_request(recorded, "gemini.generate", credential,
                        [Upstream.parse("gemini=http://127.0.0.1:9/base/"), Upstream.parse("*=http://127.0.0.1:8")])
    assert live.url == ("http://127.0.0.1:9/base/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert dict(live.headers) == {"content-type": "application/json", "x-goog-api-client": "genai-py/2.34",
                                  "x-goog-api-key": "sk-test-google-0005"}


def test_azure_openai_uses_its_own_key_and_header():
    from llmock_proxy.cassette.model import Request
    from llmock_proxy.drift.canary import Skip, credential_for, live_request

    recorded = Request("POST", "https://acme.openai.azure.com/openai/deployments/gpt4o/chat/completions"
                               "?api-version=2024-10-21", headers={"api-key": "<redacted>"})
    with pytest.raises(Skip, match="no AZURE_OPENAI_API_KEY"):
        credential_for("openai.chat", recorded, {"OPENAI_API_KEY": "sk-test-openai-0006"})
    credential = credential_for("openai.chat", recorded, {"AZURE_OPENAI_API_KEY": "sk-test-azure-0007"})
    live = live_request(recorded, "openai.chat", credential)
    assert live.headers == [("api-key", "sk-test-azure-0007")]
    assert live.url.endswith("?api-version=2024-10-21")


def test_the_most_specific_upstream_wins():
    from llmock_proxy.drift.canary import Upstream, upstream_for

    upstreams = [Upstream.parse("openai.*=http://127.0.0.1:1"), Upstream.parse("openai=http://127.0.0.1:2"),
                 Upstream.parse("openai.chat=http://127.0.0.1:3")]
    assert upstream_for("openai.chat", upstreams).base.endswith(":3")
    assert upstream_for("openai.responses", upstreams).base.endswith(":2")
    assert upstream_for("anthropic.messages", upstreams) is None


def test_generic_family_is_sent_as_recorded_unless_something_was_redacted():
    from llmock_proxy.cassette.model import Request
    from llmock_proxy.drift.canary import Skip, credential_for

    open_api = Request("GET", "https://api.example.com/v1/things?page=2", headers={"accept": "application/json"})
    assert credential_for("generic", open_api, {}).headers == ()
    secret_api = Request("GET", "https://api.example.com/v1/things", headers={"authorization": "Bearer <redacted>"})
    with pytest.raises(Skip, match="authorization was redacted"):
        credential_for("generic", secret_api, {})


def test_each_family_says_which_variables_hold_its_credential_and_how_it_is_sent():
    from llmock_proxy.cassette.model import Request
    from llmock_proxy.drift.canary import Skip, credential_for

    def request(url: str) -> Request:
        return Request("POST", url, headers={"content-type": "application/json"})

    anthropic = credential_for("anthropic.messages", request("https://api.anthropic.com/v1/messages"),
                               {"ANTHROPIC_API_KEY": "sk-test-anthropic-0010"})
    assert anthropic.headers == (("x-api-key", "sk-test-anthropic-0010"),)
    cohere = credential_for("cohere.chat", request("https://api.cohere.com/v2/chat"),
                            {"COHERE_API_KEY": "sk-test-cohere-0011"})
    assert cohere.headers == (("authorization", "Bearer sk-test-cohere-0011"),)
    # A local Ollama needs no key; a hosted one gets the bearer token.
    ollama_url = "http://127.0.0.1:11434/api/chat"
    assert credential_for("ollama.chat", request(ollama_url), {}).headers == ()
    assert credential_for("ollama.chat", request(ollama_url), {"OLLAMA_API_KEY": "sk-test-ollama-0012"}).headers \
        == (("authorization", "Bearer sk-test-ollama-0012"),)
    bedrock_url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
    with pytest.raises(Skip, match="SigV4-signed: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                   r"\(or AWS_BEARER_TOKEN_BEDROCK\)"):
        credential_for("bedrock.converse", request(bedrock_url), {})
    assert credential_for("bedrock.converse", request(bedrock_url),
                          {"AWS_BEARER_TOKEN_BEDROCK": "sk-test-bedrock-0013"}).headers \
        == (("authorization", "Bearer sk-test-bedrock-0013"),)
    signed = credential_for("bedrock.converse", request(bedrock_url),
                            {"AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "sk-test-aws-0014"})
    assert signed.signer is not None and signed.headers == ()
    with pytest.raises(Skip, match="no GEMINI_API_KEY or GOOGLE_API_KEY"):
        credential_for("gemini.live", request("https://generativelanguage.googleapis.com/ws/x"), {})


def test_a_live_error_answer_shows_its_status_and_message_and_where_it_went_in_every_format(
    fresh: DriftWorld, tmp_path: Path, capsys
):
    fresh.fakes["openai"].script = Script(error_status=503, error_message="The engine is overloaded right now")
    files = {"json": tmp_path / "r.json", "junit": tmp_path / "r.xml", "markdown": tmp_path / "r.md"}
    code = main(["drift", str(fresh.cassettes["openai.chat.body"]), *fresh.upstream_args(),
                 "--json", str(files["json"]), "--junit", str(files["junit"]), "--markdown", str(files["markdown"])])
    assert code == 1
    texts = {name: path.read_text() for name, path in files.items()}
    texts["text"] = capsys.readouterr().out
    live_url = fresh.fakes["openai"].url
    for name, text in texts.items():
        assert "HTTP 503" in text, name
        assert "The engine is overloaded right now" in text, name
        assert live_url in text and "https://api.openai.com/v1/chat/completions" in text, name
    (result,) = json.loads(texts["json"])["results"]
    assert result["live_status"] == 503 and result["live_url"].startswith(live_url)
    assert result["url"] == "https://api.openai.com/v1/chat/completions"
    assert ("critical", "status-changed", "status") in graded(json.loads(texts["json"]))


def test_a_live_error_stays_in_every_report_when_the_policy_mutes_the_status(fresh: DriftWorld, tmp_path: Path,
                                                                              capsys):
    fresh.fakes["openai"].script = Script(error_status=429, error_message="Rate limit reached, try again later")
    policy = tmp_path / "policy.yaml"
    policy.write_text("openai.chat:\n  ignore: [status]\n")
    markdown = tmp_path / "r.md"
    code, report = run_drift([str(fresh.cassettes["openai.chat.body"]), *fresh.upstream_args(),
                              "--policy", str(policy), "--markdown", str(markdown)], tmp_path)
    assert code == 0 and graded(report) == []
    (result,) = report["results"]
    assert result["live_status"] == 429 and "Rate limit reached, try again later" in result["live_error"]
    for text in (capsys.readouterr().out, markdown.read_text()):
        assert "HTTP 429" in text and "Rate limit reached, try again later" in text


def test_sigv4_signs_for_the_service_and_region_the_provider_names():
    from llmock_proxy.cassette.model import Request
    from llmock_proxy.drift.canary import Skip, credential_for, live_request

    keys = {"AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "sk-test-aws-0015"}

    def scope(url: str, env: dict[str, str]) -> str:
        recorded = Request("POST", url, headers={"content-type": "application/json",
                                                 "x-amz-security-token": "stale-session-token"})
        live = live_request(recorded, "bedrock.converse", credential_for("bedrock.converse", recorded, env))
        headers = {name.lower(): value for name, value in live.headers}
        assert headers.get("x-amz-security-token") != "stale-session-token"
        # The SigV4 credential scope: <key id>/<date>/<region>/<service>/aws4_request.
        return headers["authorization"].split("Credential=", 1)[1].split(",", 1)[0]

    # The region is the one the endpoint's host names, whatever AWS_REGION says.
    assert scope("https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/converse",
                 {**keys, "AWS_REGION": "us-east-1"}).endswith("/eu-west-1/bedrock/aws4_request")
    # A host that names none (a gateway, a fake): the environment's region.
    gateway = "http://127.0.0.1:9/model/m/converse"
    assert scope(gateway, {**keys, "AWS_REGION": "ap-south-1"}).endswith("/ap-south-1/bedrock/aws4_request")
    with pytest.raises(Skip, match="set AWS_REGION"):
        scope(gateway, keys)


def test_a_recorded_credential_header_of_the_family_is_never_replayed():
    from llmock_proxy.cassette.model import Request
    from llmock_proxy.drift.canary import credential_for, live_request

    # A hand-edited cassette whose key survived: the family's header is
    # replaced by the canary's credential, not sent twice.
    recorded = Request("POST", "https://api.anthropic.com/v1/messages",
                       headers={"x-api-key": "old-key-left-in-a-cassette", "anthropic-version": "2023-06-01"})
    credential = credential_for("anthropic.messages", recorded, {"ANTHROPIC_API_KEY": "sk-test-anthropic-0016"})
    assert live_request(recorded, "anthropic.messages", credential).headers == [
        ("anthropic-version", "2023-06-01"), ("x-api-key", "sk-test-anthropic-0016")
    ]
