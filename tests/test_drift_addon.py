"""The watching addon in a real in-process mitmproxy: live traffic from the real
SDKs is graded against the recorded shapes, findings are logged as they
happen, and the report is written when mitmproxy stops."""

from __future__ import annotations

import asyncio
import json
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from mitmproxy import exceptions

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.drift.contracts import (
    infer_documents,
    load_recordings,
    write_documents,
)
from llmock_proxy.mitm.drift import Drift
from llmock_proxy.mitm.record import Record
from tests.fakes import FakeServer, Script, StreamEvent, TestPKI
from tests.harness import clients as sdk
from tests.support.drift import (
    DriftWorld,
    RealtimeFake,
    realtime_session,
    record_baseline,
    record_realtime_baseline,
)

QUESTION = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def world(test_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftWorld]:
    world = record_baseline(test_pki, tmp_path_factory.mktemp("drift-addon"))
    yield world
    world.stop()


@pytest.fixture
def fresh(world: DriftWorld) -> DriftWorld:
    world.reset()
    return world


def drift_lines(proxy) -> list[str]:
    return [line for line in proxy.log_lines() if "llmock drift: " in line]


def test_findings_are_logged_live_and_reported_at_shutdown_next_to_the_recorder(fresh, proxy, tmp_path):
    reports = [tmp_path / "drift" / name for name in ("watch.json", "watch.md", "watch.xml")]
    record = Record()
    fresh.fakes["anthropic"].script = Script(
        drop_events={"ping"},
        mutate=lambda d: {**d, "message": {**d["message"], "container": None}} if d.get("type") == "message_start" else d,
    )
    running = proxy(
        addons=[record, Drift()],
        options={
            "llmock_cassette_dir": str(tmp_path / "recorded"),
            "llmock_cassette": "session.yaml",
            "llmock_drift_cassettes": [str(fresh.cassette_dir)],
            "llmock_drift_report": [str(p) for p in reports],
        },
        fakes=fresh.fakes.values(),
    )
    with sdk.anthropic_client(running) as client:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=QUESTION) as stream:
            text = "".join(stream.text_stream)
    assert text == "Hello from the fake upstream."
    # Logged as it happened, before mitmproxy stops.
    lines = drift_lines(running)
    assert any("CRITICAL anthropic.messages sse events.ping: event type 'ping' disappeared" in ln for ln in lines), lines
    assert any("WARNING  anthropic.messages sse events.message_start.message.container" in ln for ln in lines), lines

    with sdk.openai_client(running) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert reply.choices[0].message.content == "Hello from the fake upstream."
    with sdk.raw_client(running) as http:
        lines_ = http.post(f"{sdk.OLLAMA_URL}/api/chat", json={"model": "llama3.2", "messages": QUESTION}).text
    assert lines_.count("\n") >= 2
    assert record.flush(10)
    running.stop()

    data = json.loads(reports[0].read_text())
    by_key = {f"{r['family']}.{r['form']}": r for r in data["results"]}
    assert sorted(by_key) == ["anthropic.messages.sse", "ollama.chat.ndjson", "openai.chat.body"]
    assert all(r["outcome"] == "checked" for r in data["results"])
    assert sorted((f["severity"], f["path"]) for f in by_key["anthropic.messages.sse"]["findings"]) == [
        ("critical", "events.ping"),
        ("warning", "events.message_start.message.container"),
    ]
    assert by_key["anthropic.messages.sse"]["source"] == "POST https://api.anthropic.com/v1/messages"
    assert by_key["anthropic.messages.sse"]["compared_with"] == [f"{fresh.cassettes['anthropic.messages.sse']}#0"]
    assert by_key["openai.chat.body"]["findings"] == [] and by_key["ollama.chat.ndjson"]["findings"] == []
    # Every format starts with how many families the live traffic covered, as the canary's do.
    assert (data["families_checked"], data["summary"]) == (3, "3 families checked, 0 skipped")
    assert reports[1].read_text().startswith("## API drift canary\n\n**3 families checked, 0 skipped**\n")
    assert any(ln.endswith("llmock drift: 3 families checked, 0 skipped") for ln in drift_lines(running))
    failed = [c.get("name") for c in ET.parse(reports[2]).getroot().iter("testcase") if c.find("failure") is not None]
    assert failed == ["anthropic.messages.sse"]

    # The recorder still saw every byte of the stream the addon teed after it.
    recorded = cassette_store.load(tmp_path / "recorded" / "session.yaml").interactions
    stream = next(i for i in recorded if i.match["family"] == "anthropic.messages")
    assert [e.event for e in stream.response.events][-1] == "message_stop"
    assert stream.summary["text"] == "Hello from the fake upstream."
    for path in [*reports, tmp_path / "recorded" / "session.yaml"]:
        assert "sk-test" not in path.read_text()


def test_committed_schemas_as_the_contract_without_the_recorder(fresh, proxy, tmp_path):
    schemas = tmp_path / "schemas"
    write_documents(infer_documents(load_recordings([fresh.cassettes["gemini.generate.sse"]])), schemas)
    report = tmp_path / "watch.json"
    fresh.fakes["gemini"].script = Script(
        mutate=lambda d: {k: v for k, v in d.items() if k != "responseId"},
        text="Quite another answer with more words in it than the recording had.",
    )
    running = proxy(
        addons=[Drift()],
        options={"llmock_drift_cassettes": [str(schemas)], "llmock_drift_report": [str(report)]},
        fakes=fresh.fakes.values(),
    )
    client = sdk.genai_client(running)
    text = "".join(chunk.text for chunk in client.models.generate_content_stream(model="gemini-2.5-flash",
                                                                                  contents="Say hello"))
    assert text.startswith("Quite another answer")
    # A family with no recorded shape passes through, uncompared.
    client.models.generate_content(model="gemini-2.5-flash", contents="Say hello")
    running.stop()
    data = json.loads(report.read_text())
    assert [(r["family"], r["form"]) for r in data["results"]] == [("gemini.generate", "sse")]
    assert [(f["severity"], f["kind"], f["path"]) for f in data["results"][0]["findings"]] == [
        ("critical", "field-removed", "events.GenerateContentResponse.responseId")
    ]
    assert any("no recorded shape for gemini.generate.body" in ln for ln in running.log_lines())


def test_a_report_name_without_a_known_extension_is_refused(fresh, proxy, tmp_path):
    running = proxy(addons=[Drift()], fakes=fresh.fakes.values())
    with pytest.raises(exceptions.OptionsError, match=r"watch\.html: cannot tell the report format"):
        running.set_options(llmock_drift_report=[str(tmp_path / "watch.html")])
    with pytest.raises(exceptions.OptionsError, match="no such file or directory"):
        running.set_options(llmock_drift_cassettes=[str(tmp_path / "missing")])


def test_websocket_sessions_are_graded_when_they_end(test_pki: TestPKI, proxy, tmp_path):
    with FakeServer(RealtimeFake(), pki=test_pki) as fake:
        baseline = record_realtime_baseline(fake, test_pki, tmp_path / "baseline")
        fake.script = Script(reorder_events=lambda events: [
            *events[:-1], StreamEvent(None, {"type": "rate_limits.updated", "event_id": "e", "rate_limits": []}),
            events[-1],
        ])
        report = tmp_path / "watch.json"
        running = proxy(
            addons=[Drift()],
            options={"llmock_drift_cassettes": [str(baseline)], "llmock_drift_report": [str(report)]},
            fakes=[fake],
        )
        context = ssl.create_default_context(cafile=str(running.ca_cert_path))
        seen = asyncio.run(realtime_session("wss://api.openai.com/v1/realtime?model=gpt-realtime",
                                            proxy=running.url, ssl=context))
        assert "rate_limits.updated" in seen
        running.stop()
    data = json.loads(report.read_text())
    (result,) = data["results"]
    assert (result["family"], result["form"]) == ("openai.realtime", "websocket")
    assert [(f["severity"], f["path"]) for f in result["findings"]] == [("warning", "events.rate_limits.updated")]


def test_the_documented_mitmdump_command_watches_and_reports(fresh, mitmdump, tmp_path):
    """``mitmdump -s addons/record.py -s addons/drift.py --set ...`` as docs/drift.md
    shows it: repeated ``--set llmock_drift_report=`` for several reports,
    written when mitmdump stops (SIGTERM)."""
    root = Path(__file__).resolve().parent.parent
    fresh.fakes["openai"].script = Script(mutate=lambda d: {k: v for k, v in d.items() if k != "system_fingerprint"})
    reports = [tmp_path / "drift" / "watch.json", tmp_path / "drift" / "watch.md"]
    process = mitmdump(
        scripts=[root / "addons" / "record.py", root / "addons" / "drift.py"],
        options={
            "llmock_cassette_dir": str(tmp_path / "recorded"),
            "llmock_drift_cassettes": [str(fresh.cassette_dir)],
            "llmock_drift_report": [str(p) for p in reports],
        },
        fakes=fresh.fakes.values(),
    )
    with sdk.openai_client(process) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert reply.choices[0].message.content == "Hello from the fake upstream."
    assert process.terminate() == 0
    assert "llmock drift: CRITICAL openai.chat body system_fingerprint" in process.output
    data = json.loads(reports[0].read_text())
    (result,) = data["results"]
    assert [(f["severity"], f["path"]) for f in result["findings"]] == [("critical", "system_fingerprint")]
    assert "| critical | openai.chat body | `system_fingerprint` |" in reports[1].read_text()
    recorded = list((tmp_path / "recorded").glob("*.yaml"))
    assert len(recorded) == 1 and "sk-test" not in recorded[0].read_text()


def test_a_live_error_answer_is_not_graded_against_the_success_shape(fresh, proxy, tmp_path):
    # Live traffic has its own rate limits: a 429 says nothing about the
    # recorded shape of answers, so it is reported (with what it said) but not
    # graded as drift; the success answer after it still is.
    report = tmp_path / "watch.json"
    running = proxy(
        addons=[Drift()],
        options={"llmock_drift_cassettes": [str(fresh.cassettes["openai.chat.body"])],
                 "llmock_drift_report": [str(report)]},
        fakes=fresh.fakes.values(),
    )
    client = sdk.openai_client(running)
    fresh.fakes["openai"].script = Script(error_status=429, error_message="Rate limit reached for gpt-4o-mini")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    fresh.fakes["openai"].script = Script(mutate=lambda d: {k: v for k, v in d.items() if k != "usage"})
    client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    running.stop()
    data = json.loads(report.read_text())
    error, success = data["results"]
    assert error["outcome"] == "skipped" and error["findings"] == [] and error["live_status"] == 429
    assert "HTTP 429" in error["live_error"] and "Rate limit reached for gpt-4o-mini" in error["live_error"]
    assert success["outcome"] == "checked"
    assert ("critical", "field-removed", "usage") in [(f["severity"], f["kind"], f["path"]) for f in success["findings"]]


def test_a_recorded_error_answer_is_neither_part_of_the_shape_nor_graded_as_drift(tmp_path):
    # A cassette recorded through a busy afternoon holds a 429 next to the
    # answers: its envelope must not make the answer's fields optional, and a
    # live 429 is reported with what it said, not graded against the answers.
    from llmock_proxy.cassette.model import Cassette, Interaction, Payload, Request, Response
    from llmock_proxy.drift.contracts import Contracts
    from llmock_proxy.drift.watch import Watcher

    url = "https://api.openai.com/v1/chat/completions"
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}]}
    limited = {"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "code": None}}

    def exchange(status: int, body: dict) -> Interaction:
        return Interaction(request=Request("POST", url), match={"family": "openai.chat"},
                           response=Response(status, {"content-type": "application/json"}, body=Payload.json(body)))

    path = tmp_path / "busy.yaml"
    cassette_store.save(Cassette([exchange(429, limited), exchange(200, answer)]), path)
    documents = infer_documents(load_recordings([path]))
    doc = documents["openai.chat.body"]
    assert doc["x-llmock"]["statuses"] == [200] and "error" not in doc["properties"]
    assert {"choices", "id", "object", "model"} <= set(doc["required"])

    watcher = Watcher(Contracts(documents))
    error = watcher.observe(exchange(429, limited))
    assert error is not None and error.outcome == "skipped" and error.findings == []
    assert error.live_status == 429 and "Rate limit reached for gpt-4o-mini" in error.live_error
    without_choices = {k: v for k, v in answer.items() if k != "choices"}
    checked = watcher.observe(exchange(200, without_choices))
    assert checked is not None and checked.outcome == "checked"
    assert [(f.severity, f.kind, f.path) for f in checked.findings] == [("critical", "field-removed", "choices")]
