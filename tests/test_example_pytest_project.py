"""The example project (examples/pytest/) in replay mode, as CI runs it: its own
pytest run in a subprocess, the fake providers not running, no API key, the
network blocked; and its cassettes pass ``llmock-proxy cassette validate``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "examples" / "pytest"
EXAMPLE_TESTS = EXAMPLE / "tests" / "test_assistant.py"
CASSETTES = EXAMPLE / "cassettes"

# What could point the example's SDKs anywhere, or hand them a real key.
_CLEARED = re.compile(
    r"^(OPENAI_|ANTHROPIC_|GOOGLE_|GEMINI_|CO_|OLLAMA_|LLMOCK_(?!PROXY_CACHE_DIR)|PYTEST_)|^(https?|all|no)_proxy$",
    re.IGNORECASE,
)


def clean_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _CLEARED.match(k)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the example
    return env


def run_example(*args: str, cwd: Path = REPOSITORY, project: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(project), "-p", "no:cacheprovider", "--block-network", *args],
        cwd=cwd,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def files_under(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_example_passes_in_replay_mode_and_writes_nothing() -> None:
    before = files_under(CASSETTES)
    done = run_example("-q")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    tests = len(re.findall(r"^def test_", EXAMPLE_TESTS.read_text(encoding="utf-8"), re.MULTILINE))
    summary = done.stdout.strip().splitlines()[-1]  # pytest's last line (warnings go to stderr)
    assert re.search(rf"\b{tests} passed\b", summary), output
    assert not re.search(r"failed|error|skipped|xfail", summary), output
    assert files_under(CASSETTES) == before


def test_every_example_test_has_a_recorded_cassette_that_validates() -> None:
    names = re.findall(r"^def (test_\w+)", EXAMPLE_TESTS.read_text(encoding="utf-8"), re.MULTILINE)
    cassettes = sorted(p.stem for p in (CASSETTES / "tests" / "test_assistant").glob("*.yaml"))
    assert cassettes == sorted(names)
    script = Path(sys.executable).parent / "llmock-proxy"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "llmock_proxy.cli"]
    done = subprocess.run([*command, "cassette", "validate", str(CASSETTES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("all valid")


def test_a_changed_prompt_fails_the_example_with_the_near_miss_report(tmp_path: Path) -> None:
    """The example really replays its cassettes: ask something else and the
    test fails, saying which recording came closest and what differed."""
    project = tmp_path / "example"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    tests = project / "tests" / "test_assistant.py"
    text = tests.read_text(encoding="utf-8")
    changed = text.replace("Describe a sunny afternoon in Tokyo", "Describe a rainy afternoon in Tokyo")
    assert changed != text
    tests.write_text(changed, encoding="utf-8")

    done = run_example("-q", "-k", "test_openai_streamed_answer", cwd=project, project=project)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "test_openai_streamed_answer" in output
    # The near-miss report: the closest recording and what it expected (the
    # recorded question is nowhere in the changed project but its cassette).
    assert "cassettes/tests/test_assistant/test_openai_streamed_answer.yaml: interactions[0]" in output
    assert "Describe a sunny afternoon in Tokyo" in output
    assert files_under(project / "cassettes") == files_under(CASSETTES)

