"""Every sub-command's ``--help``, as a user runs it: its own usage line and
options, one example to copy, and no reST markup from a docstring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LLMOCK_PROXY = Path(sys.executable).parent / "llmock-proxy"

# command words -> an option only that command's help lists
COMMANDS: dict[tuple[str, ...], str] = {
    ("record",): "--base-url",
    ("replay",): "--cassette-dir",
    ("serve",): "--allow-empty",
    ("cassette",): "prune",
    ("cassette", "validate"): "--lenient-fixtures",
    ("cassette", "prune"): "--delete-empty",
    ("drift",): "--fail-on",
    ("drift", "schema"): "--out",
}


@pytest.mark.parametrize("words", list(COMMANDS), ids=" ".join)
def test_help_shows_its_own_usage_options_and_an_example(words: tuple[str, ...]) -> None:
    result = subprocess.run([str(LLMOCK_PROXY), *words, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    usage = text.splitlines()[0]
    assert usage.startswith(f"usage: llmock-proxy {' '.join(words)} ") or usage == f"usage: llmock-proxy {' '.join(words)}"
    assert COMMANDS[words] in text
    examples = [line for line in text.splitlines() if line.startswith("example")]
    assert examples, text
    # the example lines follow, indented, each a command of this sub-command
    after = text.split(examples[0], 1)[1].splitlines()
    assert any(line.strip().split("llmock-proxy ", 1)[-1].startswith(" ".join(words)) for line in after), text
    assert "``" not in text and ":mod:" not in text


def test_drift_schema_help_is_not_the_live_forms() -> None:
    schema = subprocess.run([str(LLMOCK_PROXY), "drift", "schema", "--help"], capture_output=True, text=True, timeout=30)
    live = subprocess.run([str(LLMOCK_PROXY), "drift", "--help"], capture_output=True, text=True, timeout=30)
    assert schema.stdout != live.stdout
    assert "--sample" in live.stdout and "--sample" not in schema.stdout
