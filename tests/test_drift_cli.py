"""``llmock-proxy drift`` and ``drift schema`` from the command line: schema
export, committed schemas, reports, progress and exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cli import main
from llmock_proxy.drift.schema import validate_recording
from tests.fakes import Script, TestPKI
from tests.support.drift import DriftWorld, record_baseline, set_canary_env


@pytest.fixture(scope="module")
def world(test_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftWorld]:
    world = record_baseline(test_pki, tmp_path_factory.mktemp("drift-cli"))
    yield world
    world.stop()


@pytest.fixture
def fresh(world: DriftWorld, monkeypatch: pytest.MonkeyPatch) -> DriftWorld:
    world.reset()
    set_canary_env(monkeypatch)
    return world


# -- drift schema ------------------------------------------------------------------------


def test_schema_export_validates_every_recording_it_came_from(fresh: DriftWorld, tmp_path: Path, capsys):
    out = tmp_path / "schemas"
    assert main(["drift", "schema", str(fresh.cassette_dir), "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{key}.schema.json" for key in fresh.cassettes)
    assert capsys.readouterr().out.split() == [str(out / name) for name in files]
    for key, cassette_path in fresh.cassettes.items():
        doc = json.loads((out / f"{key}.schema.json").read_text())
        Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        meta = doc["x-llmock"]
        assert (f"{meta['family']}.{meta['form']}") == key
        recorded = cassette_store.load(cassette_path)
        assert meta["sources"] == [f"{cassette_path}#{i}" for i in range(len(recorded.interactions))]
        for interaction in recorded.interactions:
            assert validate_recording(doc, interaction.response) == []


def test_canary_checks_against_committed_schemas(fresh: DriftWorld, tmp_path: Path):
    schemas = tmp_path / "schemas"
    assert main(["drift", "schema", str(fresh.cassettes["anthropic.messages.sse"]), "--out", str(schemas)]) == 0
    # A reviewed contract: the team accepts a new stop reason by editing the schema.
    path = schemas / "anthropic.messages.sse.schema.json"
    doc = json.loads(path.read_text())
    doc["$defs"]["events"]["message_delta"]["properties"]["delta"]["properties"]["stop_reason"]["enum"].append(
        "pause_turn"
    )
    path.write_text(json.dumps(doc, indent=2))
    fresh.fakes["anthropic"].script = Script(
        drop_events={"ping"},
        mutate=lambda d: {**d, "delta": {**d["delta"], "stop_reason": "pause_turn"}}
        if d.get("type") == "message_delta" else d,
    )
    report = tmp_path / "r.json"
    code = main(["drift", str(fresh.cassettes["anthropic.messages.sse"]), *fresh.upstream_args(),
                 "--schemas", str(schemas), "--json", str(report)])
    findings = [(f["severity"], f["path"]) for r in json.loads(report.read_text())["results"] for f in r["findings"]]
    assert findings == [("critical", "events.ping")]
    assert code == 1


def test_shapes_without_a_committed_schema_are_skipped(fresh: DriftWorld, tmp_path: Path):
    schemas = tmp_path / "schemas"
    assert main(["drift", "schema", str(fresh.cassettes["openai.chat.sse"]), "--out", str(schemas)]) == 0
    report = tmp_path / "r.json"
    code = main(["drift", str(fresh.cassettes["openai.chat.body"]), *fresh.upstream_args(),
                 "--schemas", str(schemas), "--json", str(report)])
    (result,) = json.loads(report.read_text())["results"]
    assert (result["outcome"], result["reason"]) == ("skipped", "no recorded shape for openai.chat.body to compare with")
    assert code == 0


# -- reports, progress and output ------------------------------------------------------------


def test_reports_from_a_run_with_drift(fresh: DriftWorld, tmp_path: Path, capsys):
    fresh.fakes["anthropic"].script = Script(drop_events={"ping"})
    fresh.fakes["openai"].script = Script(mutate=lambda d: {**d, "moderation": None} if "choices" in d else d)
    junit, markdown, report = tmp_path / "j.xml", tmp_path / "s.md", tmp_path / "r.json"
    code = main(["drift", str(fresh.cassette_dir), *fresh.upstream_args(),
                 "--junit", str(junit), "--markdown", str(markdown), "--json", str(report)])
    assert code == 1
    out, err = capsys.readouterr()

    anthropic_sse = str(fresh.cassettes["anthropic.messages.sse"])
    line = next(ln for ln in out.splitlines() if "events.ping" in ln)
    assert line.startswith("CRITICAL anthropic.messages sse events.ping: event type 'ping' disappeared")
    assert line.endswith(f"(recorded: ping; live: -) [{anthropic_sse}#0]")
    assert out.splitlines()[-1].startswith(f"drift: {len(fresh.cassettes)} checked, 0 skipped, 0 errors; 1 critical")
    progress = [ln for ln in err.splitlines() if ln.startswith("drift: ")]
    assert len(progress) == len(fresh.cassettes)
    assert progress[-1].startswith(f"drift: {len(fresh.cassettes)}/{len(fresh.cassettes)} done")

    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert sorted(cases) == sorted(fresh.cassettes)
    failed = sorted(name for name, c in cases.items() if c.find("failure") is not None)
    assert failed == ["anthropic.messages.sse"]
    assert "moderation" in cases["openai.chat.sse"].find("system-out").text  # a warning, listed not failed
    assert suite.get("failures") == "1" and suite.get("tests") == str(len(fresh.cassettes))

    md = markdown.read_text()
    assert md.startswith("## API drift canary\n\n**drift at or above critical**")
    assert "| anthropic.messages | sse | 1 | 0 | 0 | 1 | 0 | 0 |" in md
    assert "| critical | anthropic.messages sse | `events.ping` | event-removed | `ping` | - |" in md

    data = json.loads(report.read_text())
    assert data["failed"] is True and data["totals"]["critical"] == 1


# -- usage errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["drift", "{missing}"], "no such file or directory"),
        (["drift", "{cassettes}", "--upstream", "nonsense"], "expected FAMILY=URL"),
        (["drift", "{cassettes}", "--upstream", "martian=http://127.0.0.1:1"], "names no API family"),
        (["drift", "{cassettes}", "--upstream", "openai=ftp://x"], "is not an http(s):// or ws(s):// URL"),
        (["drift", "{cassettes}", "--policy", "{missing}"], "cannot read drift policy"),
        (["drift", "{cassettes}", "--schemas", "{missing}"], "no such file or directory"),
        (["drift", "{cassettes}", "--out", "x"], "--out belongs to"),
        (["drift", "schema", "{cassettes}"], "--out DIR is required"),
        (["drift", "{cassettes}", "--fail-on", "fatal"], "invalid choice"),
        (["drift", "{cassettes}", "--concurrency", "0"], "must be at least 1"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(fresh: DriftWorld, tmp_path: Path, capsys, argv, message):
    values = {"missing": str(tmp_path / "missing.yaml"), "cassettes": str(fresh.cassette_dir)}
    assert exit_code([a.format(**values) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert all(not server.requests for server in fresh.fakes.values())


def exit_code(argv: list[str]) -> int:
    """``main``'s exit code, also when argparse exits on its own."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_a_broken_cassette_is_named(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ninteractions:\n- request: {method: POST}\n")
    assert main(["drift", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_nothing_to_resend_is_a_usage_error(tmp_path: Path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("version: 1\ninteractions: []\n")
    assert main(["drift", str(empty)]) == 2
    assert "no successful recordings" in capsys.readouterr().err
