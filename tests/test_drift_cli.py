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
    families = len({key.rsplit(".", 1)[0] for key in fresh.cassettes})
    assert out.splitlines()[0] == f"drift: {families} families checked, 0 skipped"
    assert out.splitlines()[-1].startswith(
        f"drift: {len(fresh.cassettes)} requests checked, 0 skipped, 0 errors; 1 critical")
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
    assert md.startswith(
        f"## API drift canary\n\n**{families} families checked, 0 skipped**\n\n**drift at or above critical**")
    assert "| anthropic.messages | sse | 1 | 0 | 0 | 1 | 0 | 0 |" in md
    assert "| critical | anthropic.messages sse | `events.ping` | event-removed | `ping` | - |" in md

    data = json.loads(report.read_text())
    assert data["failed"] is True and data["totals"]["critical"] == 1


# -- families without their key: the headline and --require-keys ----------------------------

KEYED = ("openai.chat.sse", "anthropic.messages.sse", "gemini.generate.sse")
NO_KEYS = "(no key: ANTHROPIC_API_KEY, GEMINI_API_KEY/GOOGLE_API_KEY, OPENAI_API_KEY)"


def report_args(tmp_path: Path) -> tuple[list[str], dict[str, Path]]:
    paths = {"json": tmp_path / "r.json", "junit": tmp_path / "r.xml", "markdown": tmp_path / "r.md"}
    return [arg for fmt, path in paths.items() for arg in (f"--{fmt}", str(path))], paths


def assert_headline_tops_every_report(paths: dict[str, Path], headline: str) -> None:
    data = json.loads(paths["json"].read_text())
    assert next(iter(data)) == "families_checked"
    assert data["summary"] == headline
    assert paths["markdown"].read_text().startswith(f"## API drift canary\n\n**{headline}**\n")
    properties = ET.parse(paths["junit"]).getroot().find("testsuite/properties")
    assert properties.find("property[@name='summary']").get("value") == headline


def test_without_keys_nothing_is_sent_and_every_report_says_so_first(fresh: DriftWorld, tmp_path: Path, capsys,
                                                                   monkeypatch):
    set_canary_env(monkeypatch, OPENAI_API_KEY=None, ANTHROPIC_API_KEY=None, GEMINI_API_KEY=None)
    cassettes = [str(fresh.cassettes[key]) for key in KEYED]
    args, paths = report_args(tmp_path)
    assert main(["drift", *cassettes, *fresh.upstream_args(), *args]) == 0
    out, err = capsys.readouterr()
    headline = f"0 families checked, 3 skipped {NO_KEYS}"
    assert out.splitlines()[0] == f"drift: {headline}"
    assert out.splitlines()[-1].endswith(": nothing checked")
    assert "--require-keys" not in err
    assert_headline_tops_every_report(paths, headline)
    data = json.loads(paths["json"].read_text())
    assert data["families_checked"] == 0 and data["require_keys"] is False
    assert [(f["family"], f["missing_keys"]) for f in data["families_skipped"]] == [
        ("anthropic.messages", ["ANTHROPIC_API_KEY"]),
        ("gemini.generate", ["GEMINI_API_KEY/GOOGLE_API_KEY"]),
        ("openai.chat", ["OPENAI_API_KEY"]),
    ]
    assert all(not server.requests for server in fresh.fakes.values())


def test_require_keys_fails_with_exit_3_naming_the_missing_variables(fresh: DriftWorld, tmp_path: Path, capsys,
                                                                   monkeypatch):
    set_canary_env(monkeypatch, OPENAI_API_KEY=None, ANTHROPIC_API_KEY=None, GEMINI_API_KEY=None)
    cassettes = [str(fresh.cassettes[key]) for key in KEYED]
    args, paths = report_args(tmp_path)
    assert main(["drift", *cassettes, *fresh.upstream_args(), "--require-keys", *args]) == 3
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"drift: 0 families checked, 3 skipped {NO_KEYS}"
    assert out.splitlines()[-1].endswith(": keys missing (--require-keys)")
    assert err.splitlines()[-1] == (
        "llmock-proxy drift: --require-keys: requests of anthropic.messages, gemini.generate, openai.chat skipped "
        "for lack of a key: set ANTHROPIC_API_KEY, GEMINI_API_KEY/GOOGLE_API_KEY, OPENAI_API_KEY"
    )
    # The reports are written all the same, for the job summary and the artifact.
    assert_headline_tops_every_report(paths, f"0 families checked, 3 skipped {NO_KEYS}")
    assert json.loads(paths["json"].read_text())["require_keys"] is True
    failures = [c.get("name") for c in ET.parse(paths["junit"]).getroot().iter("testcase")
                if c.find("failure") is not None]
    assert failures == sorted(KEYED)


def test_one_family_with_its_key_is_checked_and_the_other_named(fresh: DriftWorld, tmp_path: Path, capsys,
                                                               monkeypatch):
    set_canary_env(monkeypatch, ANTHROPIC_API_KEY=None)
    openai_only = [str(fresh.cassettes["openai.chat.sse"])]
    args, paths = report_args(tmp_path)
    assert main(["drift", *openai_only, *fresh.upstream_args(), "--require-keys", *args]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "drift: 1 family checked, 0 skipped"
    assert "--require-keys" not in err
    assert_headline_tops_every_report(paths, "1 family checked, 0 skipped")
    assert len(fresh.fakes["openai"].requests) == 1

    both = [*openai_only, str(fresh.cassettes["anthropic.messages.sse"])]
    assert main(["drift", *both, *fresh.upstream_args(), "--require-keys", *args]) == 3
    out, err = capsys.readouterr()
    headline = "1 family checked, 1 skipped (no key: ANTHROPIC_API_KEY)"
    assert out.splitlines()[0] == f"drift: {headline}"
    assert err.splitlines()[-1].endswith("requests of anthropic.messages skipped for lack of a key: "
                                         "set ANTHROPIC_API_KEY")
    assert_headline_tops_every_report(paths, headline)
    assert not fresh.fakes["anthropic"].requests


def test_drift_outranks_a_missing_key(fresh: DriftWorld, tmp_path: Path, capsys, monkeypatch):
    set_canary_env(monkeypatch, ANTHROPIC_API_KEY=None)
    fresh.fakes["openai"].script = Script(mutate=lambda d: {k: v for k, v in d.items() if k != "choices"})
    cassettes = [str(fresh.cassettes["openai.chat.sse"]), str(fresh.cassettes["anthropic.messages.sse"])]
    assert main(["drift", *cassettes, *fresh.upstream_args(), "--require-keys"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "drift: 1 family checked, 1 skipped (no key: ANTHROPIC_API_KEY)"
    assert out.splitlines()[-1].endswith(": drift at or above critical")


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
