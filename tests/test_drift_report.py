"""Drift reports: text, JSON, JUnit XML and Markdown say the same things."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from llmock_proxy.cassette.model import Request
from llmock_proxy.drift.contracts import error_message
from llmock_proxy.drift.findings import Finding
from llmock_proxy.drift.report import (
    CheckResult,
    DriftReport,
    format_for,
    render_json,
    render_junit,
    render_markdown,
    render_text,
    write_report,
)
from llmock_proxy.providers.catalog import CATALOG, by_family

REMOVED = Finding("critical", "anthropic.messages", "sse", "event-removed", "events.ping",
                  "event type 'ping' disappeared", "ping", None, "cassettes/a.yaml#2")
ADDED = Finding("warning", "openai.chat", "body", "field-added", "choices[].message.audio",
                "new field 'choices[].message.audio'", None, "object", "cassettes/b.yaml#0")
ENUM = Finding("warning", "openai.chat", "body", "enum-added", "choices[].finish_reason",
               "new value 'refusal' at choices[].finish_reason (recorded: 'stop')", ["stop"], "refusal",
               "cassettes/b.yaml#0")


def sample_report(fail_on: str = "critical") -> DriftReport:
    return DriftReport(
        fail_on=fail_on,
        results=[
            CheckResult("anthropic.messages", "sse", "cassettes/a.yaml#2", "checked", [REMOVED],
                        url="https://api.anthropic.com/v1/messages", live_status=200),
            CheckResult("openai.chat", "body", "cassettes/b.yaml#0", "checked", [ADDED, ENUM], live_status=200),
            CheckResult("openai.chat", "body", "cassettes/b.yaml#1", "checked", [], live_status=200),
            CheckResult("cohere.chat", "sse", "cassettes/c.yaml#0", "skipped",
                        reason="no COHERE_API_KEY in the environment", needs="COHERE_API_KEY"),
            CheckResult("ollama.chat", "ndjson", "cassettes/d.yaml#0", "error", reason="timed out after 5 s"),
        ],
    )


def test_text_names_path_values_severity_and_recording():
    text = render_text(sample_report())
    line = next(ln for ln in text.splitlines() if "events.ping" in ln)
    assert line.startswith("CRITICAL")
    assert "anthropic.messages sse" in line and "recorded: ping; live: -" in line and "[cassettes/a.yaml#2]" in line
    enum = next(ln for ln in text.splitlines() if "finish_reason" in ln)
    assert 'recorded: ["stop"]; live: refusal' in enum
    assert "SKIPPED  cohere.chat.sse [cassettes/c.yaml#0]: no COHERE_API_KEY" in text
    assert "ERROR    ollama.chat.ndjson" in text
    assert text.splitlines()[0] == "drift: 2 families checked, 1 skipped (no key: COHERE_API_KEY), 1 failed"
    assert text.splitlines()[-1] == (
        "drift: 3 requests checked, 1 skipped, 1 errors; 1 critical, 2 warning, 0 info: drift at or above critical"
    )


def test_json_report_round_trips_every_result_and_finding():
    data = json.loads(json.dumps(render_json(sample_report())))
    assert data["failed"] is True
    assert data["totals"] == {"checked": 3, "skipped": 1, "error": 1, "info": 0, "warning": 2, "critical": 1}
    assert [r["outcome"] for r in data["results"]] == ["checked", "checked", "checked", "skipped", "error"]
    first = data["results"][0]["findings"][0]
    assert first == REMOVED.to_dict()


def test_junit_has_one_case_per_family_and_form():
    root = ET.fromstring(render_junit(sample_report()))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert sorted(cases) == ["anthropic.messages.sse", "cohere.chat.sse", "ollama.chat.ndjson", "openai.chat.body"]
    assert cases["anthropic.messages.sse"].get("classname") == "drift.anthropic.messages"
    failure = cases["anthropic.messages.sse"].find("failure")
    assert failure is not None and "events.ping" in failure.text
    # Warnings are below the threshold: the case passes and lists them in its output.
    assert cases["openai.chat.body"].find("failure") is None
    assert "finish_reason" in cases["openai.chat.body"].find("system-out").text
    assert cases["cohere.chat.sse"].find("skipped").get("message") == "no COHERE_API_KEY in the environment"
    assert cases["ollama.chat.ndjson"].find("error").get("message") == "timed out after 5 s"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("4", "1", "1", "1")


def test_junit_failure_threshold_follows_fail_on():
    root = ET.fromstring(render_junit(sample_report(fail_on="warning")))
    failed = sorted(c.get("name") for c in root.iter("testcase") if c.find("failure") is not None)
    assert failed == ["anthropic.messages.sse", "openai.chat.body"]


def test_markdown_summary_table_and_findings():
    md = render_markdown(sample_report())
    lines = md.splitlines()
    assert lines[0] == "## API drift canary"
    assert "| anthropic.messages | sse | 1 | 0 | 0 | 1 | 0 | 0 |" in lines
    assert "| openai.chat | body | 2 | 0 | 0 | 0 | 2 | 0 |" in lines
    row = next(ln for ln in lines if "`events.ping`" in ln)
    assert row.startswith("| critical |") and "cassettes/a.yaml#2" in row
    assert "- **skipped** cohere.chat.sse `cassettes/c.yaml#0`: no COHERE_API_KEY in the environment" in lines


def test_markdown_escapes_table_breaking_values():
    odd = Finding("warning", "generic", "body", "enum-added", "status", "x", ["a|b"], "c|d", "f.yaml#0")
    md = render_markdown(DriftReport(results=[CheckResult("generic", "body", "f.yaml#0", "checked", [odd])]))
    row = next(ln for ln in md.splitlines() if ln.startswith("| warning"))
    assert "c\\|d" in row and row.count(" | ") == 6


def test_write_report_picks_format_by_extension_and_scrubs(tmp_path):
    report = sample_report()
    for name in ("r.json", "r.xml", "r.md", "r.txt"):
        write_report(report, tmp_path / "out" / name, scrub=lambda t: t.replace("cassettes/", "C/"))
    assert json.loads((tmp_path / "out/r.json").read_text())["results"][0]["source"] == "C/a.yaml#2"
    ET.parse(tmp_path / "out/r.xml")
    assert (tmp_path / "out/r.md").read_text().startswith("## API drift canary")
    assert "cassettes/" not in (tmp_path / "out/r.txt").read_text()
    with pytest.raises(ValueError, match=r"r\.html: cannot tell the report format"):
        format_for(tmp_path / "r.html")


def test_verdicts():
    assert DriftReport().verdict() == "nothing checked"
    ok = DriftReport(results=[CheckResult("openai.chat", "body", "x#0", "checked")])
    assert ok.verdict() == "no drift" and not ok.drifted
    failed = DriftReport(results=[CheckResult("openai.chat", "body", "x#0", "error", reason="boom")])
    assert failed.verdict() == "could not check everything"
    keyless = [CheckResult("cohere.chat", "sse", "c#0", "skipped", reason="no COHERE_API_KEY in the environment",
                           needs="COHERE_API_KEY")]
    assert DriftReport(results=keyless).verdict() == "nothing checked"
    assert DriftReport(results=keyless, require_keys=True).verdict() == "keys missing (--require-keys)"


def test_the_headline_counts_families_and_names_each_missing_key_once():
    def skipped(family: str, source: str, needs: str) -> CheckResult:
        return CheckResult(family, "sse", source, "skipped", reason=f"no {needs} in the environment", needs=needs)

    report = DriftReport(results=[
        CheckResult("openai.chat", "body", "o#0", "checked"),
        CheckResult("openai.chat", "sse", "o#1", "skipped", reason="not sent: --max-requests 1 reached"),
        skipped("gemini.generate", "g#0", "GEMINI_API_KEY/GOOGLE_API_KEY"),
        skipped("gemini.generate", "g#1", "GEMINI_API_KEY/GOOGLE_API_KEY"),
        skipped("anthropic.messages", "a#0", "ANTHROPIC_API_KEY"),
    ])
    assert report.headline() == (
        "1 family checked, 2 skipped (no key: ANTHROPIC_API_KEY, GEMINI_API_KEY/GOOGLE_API_KEY)"
    )
    assert DriftReport().headline() == "0 families checked, 0 skipped"
    two = DriftReport(results=[CheckResult("openai.chat", "body", "o#0", "checked"),
                               CheckResult("cohere.chat", "sse", "c#0", "checked")])
    assert two.headline() == "2 families checked, 0 skipped"


def test_every_format_starts_with_the_headline():
    report = sample_report()
    headline = "2 families checked, 1 skipped (no key: COHERE_API_KEY), 1 failed"
    assert render_text(report).startswith(f"drift: {headline}\n")
    assert render_markdown(report).startswith(f"## API drift canary\n\n**{headline}**\n")
    data = render_json(report)
    assert list(data)[:5] == ["families_checked", "families_skipped", "families_failed", "missing_keys", "summary"]
    assert data["families_checked"] == 2 and data["families_failed"] == ["ollama.chat"]
    assert data["families_skipped"] == [
        {"family": "cohere.chat", "reason": "no COHERE_API_KEY in the environment", "missing_keys": ["COHERE_API_KEY"]}
    ]
    assert data["missing_keys"] == ["COHERE_API_KEY"] and data["require_keys"] is False
    assert data["summary"] == headline
    suite = ET.fromstring(render_junit(report)).find("testsuite")
    assert suite[0].tag == "properties"
    assert {p.get("name"): p.get("value") for p in suite[0]} == {"summary": headline, "missing_keys": "COHERE_API_KEY"}


def test_require_keys_turns_a_keyless_family_into_a_junit_failure():
    keyless = CheckResult("cohere.chat", "sse", "c#0", "skipped", reason="no COHERE_API_KEY in the environment",
                          needs="COHERE_API_KEY")
    capped = CheckResult("openai.chat", "body", "o#0", "skipped", reason="not sent: --max-requests 1 reached")
    for require_keys, failures in ((False, []), (True, ["cohere.chat.sse"])):
        suite = ET.fromstring(render_junit(DriftReport(results=[keyless, capped], require_keys=require_keys)))
        cases = suite.find("testsuite").findall("testcase")
        assert [c.get("name") for c in cases if c.find("failure") is not None] == failures
        assert [c.get("name") for c in cases if c.find("skipped") is not None] == (
            ["openai.chat.body"] if require_keys else ["cohere.chat.sse", "openai.chat.body"]
        )
    failure = ET.fromstring(render_junit(DriftReport(results=[keyless], require_keys=True))).find(".//failure")
    assert failure.get("message") == "no key: COHERE_API_KEY (--require-keys)"


def test_a_live_error_answer_shows_in_every_format_even_when_it_was_not_graded():
    # The watching addon lists a live 429 as skipped (not graded against the
    # recorded answers); every format still says what the provider answered.
    report = DriftReport(results=[
        CheckResult("openai.chat", "body", "POST https://api.openai.com/v1/chat/completions", "skipped",
                    reason="an error answer, not compared with the recorded answers",
                    url="https://api.openai.com/v1/chat/completions", live_status=429,
                    live_error="HTTP 429 requests: Rate limit reached for gpt-4o-mini"),
    ])
    rendered = {
        "text": render_text(report),
        "json": json.dumps(render_json(report)),
        "junit": render_junit(report),
        "markdown": render_markdown(report),
    }
    for name, text in rendered.items():
        assert "HTTP 429" in text and "Rate limit reached for gpt-4o-mini" in text, name


def test_a_live_url_other_than_the_recorded_one_is_shown_next_to_it():
    report = DriftReport(results=[
        CheckResult("openai.chat", "body", "cassettes/b.yaml#0", "checked", [ADDED],
                    url="https://api.openai.com/v1/chat/completions",
                    live_url="http://127.0.0.1:4010/v1/chat/completions", live_status=200),
    ])
    for text in (render_text(report), render_junit(report), render_markdown(report)):
        assert ("sent to http://127.0.0.1:4010/v1/chat/completions "
                "(recorded https://api.openai.com/v1/chat/completions)") in text
    (result,) = render_json(report)["results"]
    assert result["live_url"] == "http://127.0.0.1:4010/v1/chat/completions"
    assert result["url"] == "https://api.openai.com/v1/chat/completions"


@pytest.mark.parametrize("family", [p.family for p in CATALOG])
def test_every_family_reads_its_own_error_envelope(family):
    # A refused WebSocket upgrade is an HTTP answer in the family's envelope too.
    provider = by_family(family)
    answer = provider.error(429, "Slow down for a minute")
    said = error_message(family, Request("POST", "https://api.example/v1/x"), answer)
    assert said.startswith("HTTP 429 ") and said.endswith("Slow down for a minute")
    assert "{" not in said  # read from the envelope, not its raw JSON
