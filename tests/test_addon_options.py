"""A typo or a bad value in ``mitmdump -s addons/<addon>.py --set llmock_...=...``.

mitmproxy on its own starts anyway for a misspelt option (it waits for a
script to declare it and forgets it when none does), prints a traceback for
a value an addon refuses, and starts without the addon for a value that does
not convert. Each addon must instead stop mitmdump (status != 0) with one
line naming the option and what is valid, and no traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness.mitmdump import REPO_ROOT, MitmdumpProcess

ADDONS = REPO_ROOT / "addons"

CASES = [
    # (script, option, value, what the one line says besides the option)
    ("record.py", "llmock_cassete_dir", "x", "unknown option llmock_cassete_dir; did you mean llmock_cassette_dir?"),
    ("replay.py", "llmock_cassete_dir", "x", "unknown option llmock_cassete_dir; did you mean llmock_cassette_dir?"),
    ("drift.py", "llmock_drift_reprot", "r.json", "unknown option llmock_drift_reprot; did you mean llmock_drift_report?"),
    ("replay.py", "llmock_timing", "fast", "recorded, instant or scale:X"),
    ("replay.py", "llmock_mode", "autoo", "'autoo' is not one of replay, auto, passthrough"),
    ("replay.py", "llmock_miss_status", "abc", "'abc' is not a whole number"),
    ("replay.py", "llmock_embedding_fallback", "maybe", "'maybe' is not true or false"),
    ("record.py", "llmock_idle_timeout", "-5", "-5 is negative (0 turns it off)"),
    ("record.py", "llmock_request_timeout", "soon", "'soon' is not a whole number"),
    ("drift.py", "llmock_drift_report", "watch.html", ".json"),
]


def run_mitmdump(tmp_path: Path, scripts: list[str], options: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """mitmdump as a user starts it, left to end by itself."""
    command = MitmdumpProcess(
        confdir=tmp_path / "mitmproxy", scripts=[ADDONS / s for s in scripts], options=options, use_router=False
    ).command()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("script", "option", "value", "says"), CASES, ids=[f"{c[0]}-{c[1]}={c[2]}" for c in CASES])
def test_a_misspelt_option_or_a_bad_value_stops_mitmdump_with_one_line(
    tmp_path: Path, script: str, option: str, value: str, says: str
) -> None:
    options = {option: value}
    if script == "drift.py":
        options["llmock_drift_cassettes"] = str(tmp_path)  # the addon watches (and checks its options)
    done = run_mitmdump(tmp_path, [script], options)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if option in line]
    assert len(lines) == 1, output
    assert "llmock: " in lines[0] and says in lines[0], output


def test_the_options_of_a_script_loaded_after_are_not_typos(tmp_path: Path) -> None:
    """record.py loads before drift.py: drift's options wait for it, only the typo is reported."""
    done = run_mitmdump(tmp_path, ["record.py", "drift.py"], {
        "llmock_drift_cassettes": str(tmp_path), "llmock_drift_report": "r.json", "llmock_cassete_dir": "x",
    })
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    assert [line for line in output.splitlines() if "unknown option" in line] == [
        line for line in output.splitlines()
        if line.endswith("llmock: unknown option llmock_cassete_dir; did you mean llmock_cassette_dir?")
    ], output
    assert "llmock_cassete_dir; did you mean" in output


def test_an_option_of_an_addon_not_loaded_is_unknown_with_the_known_ones_listed(tmp_path: Path) -> None:
    done = run_mitmdump(tmp_path, ["record.py"], {"llmock_drift_report": "r.json"})
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "llmock_drift_report" in line]
    assert "llmock: unknown option llmock_drift_report; the loaded llmock addons' options: " in line
    assert "llmock_cassette_dir" in line and "llmock_request_timeout" in line


SEVERAL = [
    # (script, {option: bad value}, what each option's line says)
    ("replay.py", {"llmock_timing": "fast", "llmock_mode": "autoo", "llmock_miss_status": "99"},
     {"llmock_timing": "recorded, instant or scale:X", "llmock_mode": "'autoo' is not one of",
      "llmock_miss_status": "99"}),
    ("record.py", {"llmock_idle_timeout": "-5", "llmock_request_timeout": "-1"},
     {"llmock_idle_timeout": "-5 is negative", "llmock_request_timeout": "-1 is negative"}),
    ("drift.py", {"llmock_drift_report": ["watch.html", "watch.pdf"]},
     {"watch.html": "llmock_drift_report", "watch.pdf": "llmock_drift_report"}),
]


@pytest.mark.parametrize(("script", "options", "says"), SEVERAL, ids=[c[0] for c in SEVERAL])
def test_several_bad_values_at_once_are_each_reported(
    tmp_path: Path, script: str, options: dict[str, str | list[str]], says: dict[str, str]
) -> None:
    """Fixing one bad value only to be told of the next wastes a start each: all are said at once."""
    given = dict(options)
    if script == "drift.py":
        given["llmock_drift_cassettes"] = str(tmp_path)
    done = run_mitmdump(tmp_path, [script], given)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output
    for key, text in says.items():
        lines = [line for line in output.splitlines() if key in line and "llmock: " in line]
        assert len(lines) == 1, output
        assert text in lines[0], output
