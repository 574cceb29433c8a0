"""Drift reports: text for a terminal, JSON, JUnit XML and Markdown for CI.

A report is a list of :class:`CheckResult` — one per live exchange that was
compared (or skipped, or failed) — and the ``fail_on`` threshold. Every
format starts with the same headline (``0 families checked, 3 skipped (no
key: ...)``, :meth:`DriftReport.headline`) and says the same things: the
path that changed, recorded vs live, the severity, and the recording
(cassette and interaction) it came from. JUnit has one test case per API
family and wire form, so a CI's test view shows which contracts hold.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from llmock_proxy.cassette.yamlio import atomic_write_text
from llmock_proxy.drift.findings import SEVERITIES, Finding, severity_rank

Outcome = Literal["checked", "skipped", "error"]

TOOL = "llmock-proxy drift"


def counted(n: int, noun: str, plural: str = "") -> str:
    """``1 family``, ``0 families``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


@dataclass
class CheckResult:
    """What happened to one live exchange."""

    family: str
    form: str
    source: str  # the recording re-sent ("cassette.yaml#3") or the live exchange ("POST https://...")
    outcome: Outcome
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""  # why skipped / what failed
    url: str = ""  # the recorded request's URL
    # Where the live request went, when not to the recorded URL (--upstream).
    live_url: str = ""
    live_status: int | None = None
    # What a live error answer said (status, error type and message).
    live_error: str = ""
    # The recordings the live answer's shape was compared with.
    compared_with: list[str] = field(default_factory=list)
    # Skipped for lack of a credential: the variable(s) to set
    # ("GEMINI_API_KEY/GOOGLE_API_KEY": either; "A+B": both).
    needs: str = ""

    @property
    def key(self) -> str:
        return f"{self.family}.{self.form}"

    @property
    def noteworthy(self) -> bool:
        """Whether the reports list this result (and so its notes): it has
        findings, failed, or the live service answered with an error, whatever
        the policy made of it."""
        return bool(self.findings) or self.outcome == "error" or bool(self.live_error)

    def notes(self) -> list[str]:
        """What every format says about the live exchange besides its findings:
        where it went when that was not the recorded URL, and a live error."""
        out = []
        if self.live_url and self.live_url != self.url:
            out.append(f"sent to {self.live_url} (recorded {self.url})")
        if self.live_error:
            out.append(f"live answer: {self.live_error}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "form": self.form,
            "source": self.source,
            "url": self.url,
            "live_url": self.live_url or self.url,
            "outcome": self.outcome,
            "reason": self.reason,
            "live_status": self.live_status,
            "live_error": self.live_error,
            "compared_with": list(self.compared_with),
            "missing_key": self.needs,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class DriftReport:
    results: list[CheckResult] = field(default_factory=list)
    fail_on: str = "critical"
    # --require-keys: a request skipped for lack of its credential fails the run.
    require_keys: bool = False
    generated_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )

    def add(self, result: CheckResult) -> None:
        self.results.append(result)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def counts(self) -> dict[str, int]:
        out = {outcome: 0 for outcome in ("checked", "skipped", "error")}
        out.update({severity: 0 for severity in SEVERITIES})
        for result in self.results:
            out[result.outcome] += 1
            for finding in result.findings:
                out[finding.severity] += 1
        return out

    def failing(self, findings: Iterable[Finding] | None = None) -> list[Finding]:
        """Findings at or above the ``fail_on`` severity."""
        threshold = severity_rank(self.fail_on)
        return [f for f in (self.findings if findings is None else findings) if severity_rank(f.severity) >= threshold]

    @property
    def drifted(self) -> bool:
        return bool(self.failing())

    @property
    def errors(self) -> list[CheckResult]:
        return [r for r in self.results if r.outcome == "error"]

    def groups(self) -> dict[str, list[CheckResult]]:
        """Results by ``family.form``, sorted."""
        out: dict[str, list[CheckResult]] = {}
        for result in sorted(self.results, key=lambda r: r.key):
            out.setdefault(result.key, []).append(result)
        return out

    def family_outcomes(self) -> dict[str, Outcome]:
        """Each API family's outcome, sorted by family: checked when any of its
        requests was, else an error when one failed, else skipped."""
        seen: dict[str, set[str]] = {}
        for result in sorted(self.results, key=lambda r: r.family):
            seen.setdefault(result.family, set()).add(result.outcome)
        return {
            family: "checked" if "checked" in outcomes else "error" if "error" in outcomes else "skipped"
            for family, outcomes in seen.items()
        }

    def missing_keys(self) -> list[str]:
        """The credential variables whose absence kept requests from being
        sent, once each, in the order of their families."""
        out: list[str] = []
        for result in sorted(self.results, key=lambda r: r.key):
            if result.outcome == "skipped" and result.needs and result.needs not in out:
                out.append(result.needs)
        return out

    @property
    def keys_missing(self) -> bool:
        """Whether ``require_keys`` fails this run."""
        return self.require_keys and bool(self.missing_keys())

    def headline(self) -> str:
        """The first line of every report: how many API families were checked,
        skipped (and for want of which keys) or failed."""
        outcomes = list(self.family_outcomes().values())
        checked, skipped, failed = (outcomes.count(o) for o in ("checked", "skipped", "error"))
        text = f"{counted(checked, 'family', 'families')} checked, {skipped} skipped"
        missing = self.missing_keys()
        if missing:
            text += f" (no key: {', '.join(missing)})"
        if failed:
            text += f", {failed} failed"
        return text

    def verdict(self) -> str:
        if self.drifted:
            return f"drift at or above {self.fail_on}"
        if self.errors:
            return "could not check everything"
        if self.keys_missing:
            return "keys missing (--require-keys)"
        return "no drift" if self.counts()["checked"] else "nothing checked"


# -- text ---------------------------------------------------------------------


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def finding_line(finding: Finding) -> str:
    return (
        f"{finding.severity.upper():8} {finding.family} {finding.form} {finding.path}: {finding.message} "
        f"(recorded: {_show(finding.recorded)}; live: {_show(finding.live)}) [{finding.source}]"
    )


def render_text(report: DriftReport) -> str:
    lines: list[str] = [f"drift: {report.headline()}"]
    for key, results in report.groups().items():
        for result in results:
            if result.outcome == "skipped":
                lines.append(f"SKIPPED  {key} [{result.source}]: {result.reason}")
            elif result.outcome == "error":
                lines.append(f"ERROR    {key} [{result.source}]: {result.reason}")
            if result.noteworthy:
                lines.extend(f"         {key} [{result.source}]: {note}" for note in result.notes())
            for finding in sorted(result.findings, key=lambda f: (-severity_rank(f.severity), f.path)):
                lines.append(finding_line(finding))
    c = report.counts()
    lines.append(
        f"drift: {counted(c['checked'], 'request')} checked, {c['skipped']} skipped, {c['error']} errors; "
        f"{c['critical']} critical, {c['warning']} warning, {c['info']} info: {report.verdict()}"
    )
    return "\n".join(lines) + "\n"


# -- JSON ---------------------------------------------------------------------


def render_json(report: DriftReport) -> dict[str, Any]:
    outcomes = report.family_outcomes()
    skipped = []
    for family, outcome in outcomes.items():
        if outcome == "skipped":
            results = [r for r in report.results if r.family == family]
            skipped.append({
                "family": family,
                "reason": results[0].reason,
                "missing_keys": list(dict.fromkeys(r.needs for r in results if r.needs)),
            })
    return {
        "families_checked": sum(o == "checked" for o in outcomes.values()),
        "families_skipped": skipped,
        "families_failed": [family for family, outcome in outcomes.items() if outcome == "error"],
        "missing_keys": report.missing_keys(),
        "summary": report.headline(),
        "require_keys": report.require_keys,
        "tool": TOOL,
        "generated_at": report.generated_at,
        "fail_on": report.fail_on,
        "failed": report.drifted,
        "verdict": report.verdict(),
        "totals": report.counts(),
        "results": [r.to_dict() for r in report.results],
    }


# -- JUnit XML ----------------------------------------------------------------


def render_junit(report: DriftReport) -> str:
    """One ``testcase`` per API family and wire form: a failure when a finding
    reaches ``fail_on``, an error when a live request failed, skipped when
    every request of the group was skipped (a failure with ``require_keys``
    when one was skipped for lack of its credential)."""
    groups = report.groups()
    suite = ET.Element("testsuite", name=TOOL, timestamp=report.generated_at)
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="summary", value=report.headline())
    if report.missing_keys():
        ET.SubElement(properties, "property", name="missing_keys", value=", ".join(report.missing_keys()))
    tests = failures = errors = skipped = 0
    for key, results in groups.items():
        family, form = results[0].family, results[0].form
        case = ET.SubElement(suite, "testcase", classname=f"drift.{family}", name=f"{key}")
        tests += 1
        findings = [f for r in results for f in r.findings]
        failing = report.failing(findings)
        failed_requests = [r for r in results if r.outcome == "error"]
        if failing:
            failures += 1
            node = ET.SubElement(
                case,
                "failure",
                message=f"{len(failing)} finding(s) at or above {report.fail_on} in {family} {form}",
                type="drift",
            )
            notes = [f"{r.source}: {note}" for r in results if r.findings for note in r.notes()]
            node.text = "\n".join([finding_line(f) for f in failing] + notes)
        elif failed_requests:
            errors += 1
            node = ET.SubElement(case, "error", message=failed_requests[0].reason, type="request-failed")
            node.text = "\n".join(
                line for r in failed_requests for line in [f"{r.source}: {r.reason}"] + [
                    f"{r.source}: {note}" for note in r.notes()]
            )
        elif report.require_keys and (needs := list(dict.fromkeys(
                r.needs for r in results if r.outcome == "skipped" and r.needs))):
            failures += 1
            node = ET.SubElement(case, "failure", message=f"no key: {', '.join(needs)} (--require-keys)",
                                 type="missing-key")
            node.text = "\n".join(f"{r.source}: {r.reason}" for r in results if r.needs)
        elif all(r.outcome == "skipped" for r in results):
            skipped += 1
            ET.SubElement(case, "skipped", message=results[0].reason)
        out_lines = [
            f"{r.outcome} {r.source}" + (f": {r.reason}" if r.reason else "") + "".join(f"; {n}" for n in r.notes())
            for r in results
        ]
        out_lines += [finding_line(f) for f in findings if f not in failing]
        ET.SubElement(case, "system-out").text = "\n".join(out_lines)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    root = ET.Element(
        "testsuites", name=TOOL, tests=str(tests), failures=str(failures), errors=str(errors), skipped=str(skipped)
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- Markdown -----------------------------------------------------------------


def _cell(value: Any) -> str:
    text = _show(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."


def _code(value: Any) -> str:
    text = _cell(value)
    return f"`{text}`" if text and text != "-" and "`" not in text else text


def render_markdown(report: DriftReport) -> str:
    c = report.counts()
    lines = [
        "## API drift canary",
        "",
        f"**{report.headline()}**",
        "",
        f"**{report.verdict()}** — {counted(c['checked'], 'request')} checked, {c['skipped']} skipped, "
        f"{c['error']} errors; "
        f"{c['critical']} critical, {c['warning']} warning, {c['info']} info (fails on {report.fail_on}).",
        "",
        "| API family | form | checked | skipped | errors | critical | warning | info |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for _key, results in report.groups().items():
        by_severity = {s: 0 for s in SEVERITIES}
        for result in results:
            for finding in result.findings:
                by_severity[finding.severity] += 1
        outcomes = [r.outcome for r in results]
        lines.append(
            f"| {_cell(results[0].family)} | {_cell(results[0].form)} | {outcomes.count('checked')} | "
            f"{outcomes.count('skipped')} | {outcomes.count('error')} | {by_severity['critical']} | "
            f"{by_severity['warning']} | {by_severity['info']} |"
        )
    findings = sorted(report.findings, key=lambda f: (-severity_rank(f.severity), f.family, f.form, f.path))
    if findings:
        lines += [
            "",
            "### Findings",
            "",
            "| severity | API | path | change | recorded | live | recording |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for f in findings:
            lines.append(
                f"| {f.severity} | {_cell(f.family)} {_cell(f.form)} | {_code(f.path)} | {_cell(f.kind)} | "
                f"{_code(f.recorded)} | {_code(f.live)} | {_cell(f.source)} |"
            )
    noted = [r for r in report.results if r.noteworthy and r.notes()]
    if noted:
        lines += ["", "### Live answers", ""]
        for r in noted:
            lines.append(f"- {_cell(r.key)} `{_cell(r.source)}`: " + "; ".join(_cell(n) for n in r.notes()))
    unusual = [r for r in report.results if r.outcome != "checked"]
    if unusual:
        lines += ["", "### Skipped and failed requests", ""]
        for r in unusual:
            lines.append(f"- **{r.outcome}** {_cell(r.key)} `{_cell(r.source)}`: {_cell(r.reason)}")
    return "\n".join(lines) + "\n"


# -- files --------------------------------------------------------------------

RENDERERS = {
    "json": lambda report: json.dumps(render_json(report), indent=2, ensure_ascii=False, default=str) + "\n",
    "junit": render_junit,
    "markdown": render_markdown,
    "text": render_text,
}

FORMATS_BY_SUFFIX = {".json": "json", ".xml": "junit", ".md": "markdown", ".markdown": "markdown", ".txt": "text"}


def format_for(path: str | Path) -> str:
    """The report format a file name asks for, by its extension."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS_BY_SUFFIX[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise ValueError(f"{path}: cannot tell the report format from {suffix or 'no extension'!r} (use {known})") from None


def write_report(
    report: DriftReport,
    path: str | Path,
    fmt: str | None = None,
    *,
    scrub: Callable[[str], str] | None = None,
) -> Path:
    """Write one report file atomically (parent directories created). ``fmt``
    defaults to the one the extension names; ``scrub`` is the last pass over
    the text (the canary removes the credentials it used)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = RENDERERS[fmt or format_for(target)](report)
    atomic_write_text(target, scrub(text) if scrub is not None else text)
    return target
