"""docs/drift.md and the ready-to-copy workflow say what the code does.

The workflow (docs/examples/drift-canary.yml) is checked for the keys GitHub
Actions reads, and its canary and job-summary steps are run as the runner
would run them: the step's shell script under ``bash -e``, with the
workflow's environment and every secret unset (GitHub passes an empty
string), in a checkout holding the bundled cassettes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmock_proxy.cassette.model import Request
from llmock_proxy.cli import build_parser
from llmock_proxy.drift.canary import credential_for
from llmock_proxy.mitm.drift import Drift

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "examples" / "drift-canary.yml"
DRIFT_DOC = ROOT / "docs" / "drift.md"
BIN = Path(sys.executable).parent  # the venv running the tests, where the install step puts the command

# The variable(s) each family's credential comes from, and a recorded request of it.
CREDENTIALS = {
    "OPENAI_API_KEY": ("openai.chat", "https://api.openai.com/v1/chat/completions"),
    "AZURE_OPENAI_API_KEY": ("openai.chat", "https://acme.openai.azure.com/openai/deployments/d/chat/completions"),
    "ANTHROPIC_API_KEY": ("anthropic.messages", "https://api.anthropic.com/v1/messages"),
    "GEMINI_API_KEY": ("gemini.generate",
                       "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"),
    "COHERE_API_KEY": ("cohere.chat", "https://api.cohere.com/v2/chat"),
    "AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY": (
        "bedrock.converse", "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-lite-v1/converse"),
}


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step.get("name") or step["uses"].split("@")[0]: step for step in workflow["jobs"]["canary"]["steps"]}


def test_the_workflow_has_the_keys_github_actions_reads(workflow: dict[str, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    (schedule,) = triggers["schedule"]
    assert len(schedule["cron"].split()) == 5
    fail_on = triggers["workflow_dispatch"]["inputs"]["fail_on"]
    assert fail_on["type"] == "choice" and fail_on["options"] == ["critical", "warning", "info"]
    assert workflow["permissions"] == {"contents": "read"}
    by_name = steps(workflow)
    assert by_name["actions/checkout"]["uses"] == "actions/checkout@v4"
    assert by_name["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert '"$LLMOCK_PROXY"' in by_name["Install llmock-proxy"]["run"]
    for name in ("Job summary", "Upload the reports"):
        assert by_name[name]["if"] == "always()"  # reports even when the canary step failed
    assert '>> "$GITHUB_STEP_SUMMARY"' in by_name["Job summary"]["run"]
    upload = by_name["Upload the reports"]
    assert upload["uses"] == "actions/upload-artifact@v4"
    assert upload["with"]["path"] == "${{ env.REPORTS }}/"


def test_the_workflow_passes_every_credential_the_canary_reads(workflow: dict[str, Any]) -> None:
    env = steps(workflow)["Run the drift canary"]["env"]
    for variables, (family, url) in CREDENTIALS.items():
        names = variables.split()
        for name in names:
            assert env[name] == f"${{{{ secrets.{name} }}}}", name
        headers = {"api-key": "<redacted>"} if "azure" in url else {}
        credential = credential_for(family, Request("POST", url, headers=headers),
                                    {name: f"sk-test-{i}-secret-value" for i, name in enumerate(names)})
        assert credential.headers or credential.signer, variables


def run_step(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A ``run:`` step as the runner runs it: ``bash -e`` on the script."""
    assert "${{" not in script, "expressions belong in env:, not in the script"
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_without_any_secret_the_canary_step_fails_naming_them_and_the_summary_is_written(workflow: dict[str, Any], tmp_path: Path) -> None:
    checkout = tmp_path / "repo"
    (checkout / "cassettes").mkdir(parents=True)
    for cassette in (ROOT / "cassettes" / "examples").glob("*.yaml"):
        (checkout / "cassettes" / cassette.name).write_bytes(cassette.read_bytes())
    summary = tmp_path / "step-summary.md"
    summary.write_text("")
    by_name = steps(workflow)
    canary = by_name["Run the drift canary"]
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # where "Install llmock-proxy" puts the command
        "HOME": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(summary),
        **{k: str(v) for k, v in workflow["env"].items()},
        # A secret that is not set reaches the step as an empty string.
        **{k: "" for k, v in canary["env"].items() if "secrets." in v},
        "AWS_REGION": "us-east-1",
        "FAIL_ON": "critical",
    }
    ran = run_step(canary["run"], env, checkout)
    # --require-keys: a job whose secrets are missing fails, naming them, instead of checking nothing.
    missing = "ANTHROPIC_API_KEY, GEMINI_API_KEY/GOOGLE_API_KEY, OPENAI_API_KEY"
    assert ran.returncode == 3, ran.stderr
    assert ran.stderr.splitlines()[-1].endswith(f"skipped for lack of a key: set {missing}")
    assert ran.stdout.splitlines()[0] == f"drift: 0 families checked, 3 skipped (no key: {missing})"
    reports = checkout / workflow["env"]["REPORTS"]
    report = json.loads((reports / "report.json").read_text())
    assert report["families_checked"] == 0 and report["totals"]["skipped"] >= 4
    assert all(r["reason"].startswith("no ") for r in report["results"])
    assert (reports / "junit.xml").read_text().startswith("<?xml")

    ran = run_step(by_name["Job summary"]["run"], env, checkout)
    assert ran.returncode == 0, ran.stderr
    assert summary.read_text() == (reports / "summary.md").read_text()
    assert summary.read_text().startswith(f"## API drift canary\n\n**0 families checked, 3 skipped (no key: {missing})**")


def test_the_options_drift_md_lists_exist() -> None:
    text = DRIFT_DOC.read_text()
    parser = build_parser()
    drift = next(a for a in parser._subparsers._group_actions if "drift" in a.choices).choices["drift"]
    known = {flag for action in drift._actions for flag in action.option_strings}
    documented = set(re.findall(r"^\| `(--[a-z-]+)", text, re.MULTILINE))
    documented |= set(re.findall(r"`(--[a-z-]+) ", text)) - {"--set"}
    assert len(documented) >= 12 and documented <= known, documented - known

    class Options:
        names: list[str] = []

        def add_option(self, name: str, *args: Any) -> None:
            self.names.append(name)

    loader = Options()
    Drift().load(loader)
    assert set(re.findall(r"`(llmock_drift_[a-z_]+)`", text)) == set(loader.names)
