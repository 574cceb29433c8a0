"""``llmock-proxy cassette prune REPORT``: what it prints, what it changes, its exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmock_proxy import cli
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette
from llmock_proxy.cassette.usage import UsageReport
from tests.test_cassette_usage import questions_in, recorded
from tests.test_example_pytest_project import EXAMPLE, run_example


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = cli.main(["cassette", "prune", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with three cassettes and the report of a run that used some of them."""
    root = tmp_path / "project"
    weather = recorded(root / "cassettes" / "test_app" / "test_weather.yaml", "w0", "w1", "w2")
    shared = recorded(root / "cassettes" / "shared.yaml", "s0", "s1")
    whole = recorded(root / "cassettes" / "test_app" / "test_greeting.yaml", "g0")
    report = UsageReport(root=str(root))
    report.note(weather, [0, 2])
    report.note(shared, [])
    report.note(whole, [0])
    report.write(root / "llmock-usage.json")
    return root


def test_prune_prints_per_file_what_it_drops_and_exits_0(capsys: pytest.CaptureFixture[str], project: Path) -> None:
    code, out, err = run(capsys, str(project / "llmock-usage.json"))
    assert code == 0, (out, err)
    weather = project / "cassettes" / "test_app" / "test_weather.yaml"
    shared = project / "cassettes" / "shared.yaml"
    assert out == [
        f"{shared}: no interaction used; kept (--delete-empty removes it)",
        f"{weather}: dropped 1 interaction (interactions[1]), kept 2",
        "dropped 1 interaction from 1 file; 1 file with no interaction used kept (--delete-empty removes them)",
    ]
    assert err == ""
    assert questions_in(weather) == ["w0", "w2"]
    assert questions_in(shared) == ["s0", "s1"]


def test_delete_empty_removes_a_cassette_nobody_used(capsys: pytest.CaptureFixture[str], project: Path) -> None:
    code, out, _ = run(capsys, "--delete-empty", str(project / "llmock-usage.json"))
    assert code == 0
    assert not (project / "cassettes" / "shared.yaml").exists()
    assert out[-1] == "dropped 3 interactions from 2 files"


def test_dry_run_changes_nothing(capsys: pytest.CaptureFixture[str], project: Path) -> None:
    files = sorted(project.rglob("*.yaml"))
    before = [p.read_bytes() for p in files]
    code, out, _ = run(capsys, "--dry-run", "--delete-empty", str(project / "llmock-usage.json"))
    assert code == 0
    assert [p.read_bytes() for p in files] == before
    assert any("would drop 1 interaction (interactions[1])" in line for line in out)
    assert any("would delete it" in line for line in out)
    assert out[-1] == "would drop 3 interactions from 2 files"


def test_a_file_changed_since_the_report_is_named_and_exits_1(capsys: pytest.CaptureFixture[str], project: Path) -> None:
    weather = project / "cassettes" / "test_app" / "test_weather.yaml"
    recorded(weather, "w3")
    code, out, _ = run(capsys, "--delete-empty", str(project / "llmock-usage.json"))
    assert code == 1
    assert f"{weather}: skipped: changed since the report was written (its digest differs); run the suite again" in out
    assert questions_in(weather) == ["w0", "w1", "w2", "w3"]
    assert out[-1] == "dropped 2 interactions from 1 file; 1 file skipped"


def test_root_points_the_report_at_another_checkout(capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    for path in project.rglob("*.yaml"):
        target = copy / path.relative_to(project)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    code, _, _ = run(capsys, "--root", str(copy), str(project / "llmock-usage.json"))
    assert code == 0
    assert questions_in(copy / "cassettes" / "test_app" / "test_weather.yaml") == ["w0", "w2"]
    assert questions_in(project / "cassettes" / "test_app" / "test_weather.yaml") == ["w0", "w1", "w2"]


def test_nothing_unused_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = recorded(tmp_path / "a.yaml", "q0")
    report = UsageReport(root=str(tmp_path))
    report.note(a, [0])
    report.write(tmp_path / "r.json")
    code, out, _ = run(capsys, str(tmp_path / "r.json"))
    assert (code, out) == (0, ["nothing to prune: every interaction of the 1 cassette in the report was used"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read"), ("{broken", "not valid JSON"), ('{"version": 9, "cassettes": {}}', "version")],
)
def test_a_missing_or_corrupt_report_is_named_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, expected: str
) -> None:
    report = tmp_path / "usage.json"
    if content is not None:
        report.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, str(report))
    assert code == 2 and out == []
    assert f"{report}:" in err and expected in err


def test_a_root_that_does_not_exist_exits_2(capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "--root", str(tmp_path / "elsewhere"), str(project / "llmock-usage.json"))
    assert code == 2 and "elsewhere" in err


def test_the_console_script(project: Path) -> None:
    """As a user runs it: the venv's llmock-proxy, from the project directory, with --help."""
    script = Path(sys.executable).parent / "llmock-proxy"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "llmock_proxy.cli"]
    usage = subprocess.run([*command, "cassette", "prune"], capture_output=True, text=True, cwd=project)
    assert usage.returncode == 2 and "REPORT" in usage.stderr
    helped = subprocess.run([*command, "cassette", "prune", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--delete-empty" in helped.stdout and "example:" in helped.stdout
    done = subprocess.run(
        [*command, "cassette", "prune", "llmock-usage.json"], capture_output=True, text=True, cwd=project
    )
    assert done.returncode == 0, done.stderr
    assert "interactions[1]" in done.stdout
    assert questions_in(project / "cassettes" / "test_app" / "test_weather.yaml") == ["w0", "w2"]


def test_a_report_without_a_root_is_read_relative_to_the_current_directory(project: Path) -> None:
    report = UsageReport.read(project / "llmock-usage.json")
    report.root = None
    report.write(project / "rootless.json")
    script = Path(sys.executable).parent / "llmock-proxy"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "llmock_proxy.cli"]
    done = subprocess.run([*command, "cassette", "prune", "rootless.json"], capture_output=True, text=True, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "cassettes/test_app/test_weather.yaml: dropped 1 interaction" in done.stdout
    assert questions_in(project / "cassettes" / "test_app" / "test_weather.yaml") == ["w0", "w2"]


def test_a_suite_report_then_prune_end_to_end(tmp_path: Path) -> None:
    """The whole loop on the example project: a run with --llmock-report-unused
    writes the report, prune drops what it names, and the next run uses every
    interaction that is left."""
    project = tmp_path / "example"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    own = project / "cassettes" / "tests" / "test_assistant"
    # A shared file: an interaction a test's own cassette answers first (so never
    # used here), then the only recording of the OpenAI streamed answer.
    shared = project / "shared" / "llm.yaml"
    cassette_store.save(
        Cassette(
            [
                *cassette_store.load(own / "test_anthropic_streamed_answer.yaml", cache=None).interactions,
                *cassette_store.load(own / "test_openai_streamed_answer.yaml", cache=None).interactions,
            ]
        ),
        shared,
    )
    (own / "test_openai_streamed_answer.yaml").unlink()
    # A cassette whose test is gone.
    shutil.copy(own / "test_openai_tool_loop.yaml", own / "test_removed.yaml")

    def suite(*args: str) -> subprocess.CompletedProcess[str]:
        done = run_example("--llmock-cassettes=shared/llm.yaml", *args, cwd=project, project=project)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    first = suite("--llmock-report-unused=usage.json")
    assert "shared/llm.yaml: 1 of 2 interactions unused (interactions[0])" in first.stdout
    assert "cassettes/tests/test_assistant/test_removed.yaml: no interaction used" in first.stdout
    report = UsageReport.read(project / "usage.json")
    assert report.cassettes["shared/llm.yaml"].used == {1}

    script = Path(sys.executable).parent / "llmock-proxy"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "llmock_proxy.cli"]
    pruned = subprocess.run(
        [*command, "cassette", "prune", "--delete-empty", "usage.json"], cwd=project, capture_output=True, text=True
    )
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert pruned.stdout.splitlines()[-1] == "dropped 3 interactions from 2 files"
    assert not (own / "test_removed.yaml").exists()
    assert [i.request.json["stream"] for i in cassette_store.load(shared, cache=None).interactions] == [True]

    again = suite("--llmock-report-unused")
    assert "every interaction of the 5 cassette(s) was used" in again.stdout
