"""A test fails when its session missed or ``--block-network`` refused a connection.

The SDK under test usually turns a miss (a 421 in the provider's error
envelope) into its own exception, and may retry or be caught by the code
under test; a refused connection is wrapped and retried too. So the verdict
is read from the session after the test, not from whatever reached pytest:
a test that passed is turned into a failure whose text is the near-miss
report (which names the closest recordings and what differed); a test that
already failed gets the report added to its failure text, so it shows in
the output next to the SDK's own exception.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.pytest_plugin.fixture import Llmock
from llmock_proxy.pytest_plugin.paths import shown

SECTION_TITLE = "llmock"
# How Miss.message lists the closest candidates.
CLOSEST = "; closest: "
NEAR_MISS_SEPARATOR = " | "


def findings(llmock: Llmock) -> str | None:
    """What newly went wrong in the test's session (None: nothing), as failure text.
    Marks it reported, so a later phase does not repeat it."""
    misses = llmock.misses()[llmock.reported_misses:]
    blocked = llmock.blocked[llmock.reported_blocked:]
    llmock.reported_misses += len(misses)
    llmock.reported_blocked += len(blocked)
    parts: list[str] = []
    if misses:
        cassette = shown(llmock.cassette, llmock.rootdir)
        where = f"cassette {cassette}"
        if not llmock.cassette.is_file():
            where += " (does not exist: record it with --llmock-mode=once)"
        head = (
            f"llmock: {_count(len(misses), 'request')} no recording answered "
            f"(mode {llmock.mode}, {where}, session {llmock.session_id}):"
        )
        parts.append(head)
        for entry in misses:
            model = f", {entry.model}" if entry.model else ""
            parts.append(f"--- {entry.method} {entry.path} ({entry.family}{model})")
            parts += readable(entry.message or "(no report)", llmock.rootdir, entry.near_misses)
    if blocked:
        parts.append(
            f"llmock --block-network: the test tried to reach {_count(len(blocked), 'address', 'addresses')} "
            "outside this machine (refused before connecting):"
        )
        parts += [f"  {attempt.describe()}" for attempt in blocked]
    return "\n".join(parts) if parts else None


def readable(message: str, rootdir: Path, near_misses: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """A miss report as lines: the request, then each closest candidate on
    a line of its own with what differed in one line (``differs in: last
    user message``), its details indented below; paths relative to the
    rootdir. ``near_misses``: the report as data (the journal's
    ``nearMisses``); without it, ``Miss.message`` (one line) is split."""
    text = _relative(message.rstrip(), rootdir)
    head, found, closest = text.partition(CLOSEST)
    if near_misses and all("summary" in n for n in near_misses):
        lines = [head]
        for near in near_misses:
            source = _relative(str(near.get("source", "")), rootdir)
            note = near.get("note")
            lines.append(f"  closest: {source}: {note}" if note else f"  closest: {source} {near['summary']}")
            lines += [f"      {detail}" for detail in near.get("details") or ()]
        return lines
    if not found:
        return [text]
    return [head, *(f"  closest: {candidate}" for candidate in closest.split(NEAR_MISS_SEPARATOR))]


def _relative(text: str, rootdir: Path) -> str:
    return text.replace(f"{rootdir}{os.sep}", "")


def fail_report(item: pytest.Item, report: pytest.TestReport, text: str) -> None:
    """Turn ``report`` into a failure saying ``text``, or add ``text`` to the failure it is."""
    if report.failed:
        longrepr = report.longrepr
        addsection = getattr(longrepr, "addsection", None)  # an exception's repr: a titled section after it
        if callable(addsection):
            addsection(SECTION_TITLE, text)
        else:
            report.longrepr = f"{longrepr}\n\n{text}" if longrepr else text
        return
    report.outcome = "failed"
    report.longrepr = _failure_repr(item, text)


def _failure_repr(item: pytest.Item, text: str) -> Any:
    """``text`` as pytest shows ``pytest.fail(text, pytrace=False)``: no
    traceback, and its first line in the short test summary."""
    try:
        raise pytest.fail.Exception(text, pytrace=False)
    except pytest.fail.Exception:
        excinfo = pytest.ExceptionInfo.from_current()
    try:
        return item.repr_failure(excinfo)
    except Exception:  # an item type with its own idea of failures
        return text


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"

