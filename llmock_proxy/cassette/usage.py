"""Which recorded interactions a whole test suite used, and pruning the rest.

VCR.py's ``drop_unused`` rewrites one cassette after one test. Our cassettes
are shared between tests, processes and xdist workers, so the decision is
made on the whole run instead: each worker notes, per cassette file, how many
interactions it had, a digest of its bytes as they were used, and the indices
that answered a request; the reports are merged; what no test used can then
be listed (``--llmock-report-unused``) and dropped (``llmock-proxy cassette
prune``).

The report on disk is JSON, written atomically::

    {
      "version": 1,
      "root": "/path/the/paths/are/relative/to",
      "cassettes": {
        "cassettes/test_app/test_weather.yaml": {"digest": "sha256:9f2c...", "interactions": 3, "used": [0, 2]},
        "cassettes/shared.yaml": {"digest": "sha256:41ab...", "interactions": 2, "used": []}
      }
    }

``root`` is informational (prune takes its root from the caller); the
paths are relative to it, in ``/`` form, so a report still applies in another
checkout. ``digest`` is null when two different versions of the file were
used during the run: such a file is never pruned.

Pruning goes through the project's own cassette load and save
(:mod:`llmock_proxy.cassette.store`): the interactions kept, the ``meta``
block and every field survive; the file is written in the one canonical
YAML form (hand formatting and comments do not survive, and the result says
when a file is reformatted), atomically, through the redaction scan.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.redact import SecretFound
from llmock_proxy.errors import CassetteError

REPORT_VERSION = 1

DIGEST_PREFIX = "sha256:"


class UsageReportError(ValueError):
    """A report file that cannot be read or used; the message names the file."""


def digest_bytes(data: bytes) -> str:
    """The content digest a report keeps for a cassette file."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class CassetteSnapshot:
    """A cassette file as it was read: its interaction count and digest.

    Taken when a test loads the file, so a report describes the version
    that answered, not whatever is on disk later."""

    interactions: int
    digest: str

    @classmethod
    def of_bytes(cls, data: bytes, path: str | Path | None = None) -> CassetteSnapshot:
        cassette = cassette_store.parse(data, path)  # CassetteError names the file
        return cls(len(cassette.interactions), digest_bytes(data))

    @classmethod
    def of_file(cls, path: str | Path) -> CassetteSnapshot:
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise CassetteError(f"{p}: cannot read: {exc.strerror}", path=str(p)) from None
        return cls.of_bytes(data, p)


@dataclass
class CassetteUsage:
    """One cassette file in a report."""

    interactions: int
    digest: str | None  # None: different versions were used during the run
    used: set[int] = field(default_factory=set)

    def unused(self) -> list[int]:
        return [i for i in range(self.interactions) if i not in self.used]

    def merged(self, other: CassetteUsage) -> CassetteUsage:
        if self.digest is not None and self.digest == other.digest:
            return CassetteUsage(self.interactions, self.digest, self.used | other.used)
        # The file changed between two uses: indices of one version say
        # nothing about the other, so the file is left out of pruning.
        return CassetteUsage(max(self.interactions, other.interactions), None, self.used | other.used)

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "interactions": self.interactions, "used": sorted(self.used)}


@dataclass(frozen=True)
class Unused:
    """What a report says nobody used in one cassette file."""

    path: str
    indices: list[int]
    interactions: int

    @property
    def whole_file(self) -> bool:
        return bool(self.indices) and len(self.indices) == self.interactions

    def describe(self) -> str:
        if self.whole_file:
            return f"{self.path}: no interaction used (all {_count(self.interactions, 'interaction')} unused)"
        listed = ", ".join(str(i) for i in self.indices)
        return (
            f"{self.path}: {len(self.indices)} of {_count(self.interactions, 'interaction')} unused "
            f"(interactions[{listed}])"
        )


@dataclass
class UsageReport:
    """Per cassette file (path relative to ``root``, ``/``-separated) what was used."""

    cassettes: dict[str, CassetteUsage] = field(default_factory=dict)
    root: str | None = None

    # -- building --------------------------------------------------------------------------

    def key_for(self, path: str | Path) -> str:
        """The report's name for ``path``: relative to the root when one is
        set (``..`` for files outside it), in ``/`` form."""
        p = Path(path)
        if self.root is not None:
            p = Path(os.path.relpath(p.absolute(), Path(self.root).absolute()))
        return PurePosixPath(*p.parts).as_posix() if p.parts else "."

    def note(
        self, path: str | Path, used: Iterable[int], snapshot: CassetteSnapshot | None = None
    ) -> CassetteUsage:
        """Record that ``used`` indices of the cassette at ``path`` answered.

        ``snapshot`` is the file as the test loaded it; without one the file
        is read now. Noting the same file again adds to its used set."""
        snap = snapshot or CassetteSnapshot.of_file(path)
        entry = CassetteUsage(snap.interactions, snap.digest, set(used))
        out_of_range = sorted(i for i in entry.used if not 0 <= i < entry.interactions)
        if out_of_range:
            raise ValueError(f"{path}: has {_count(entry.interactions, 'interaction')}, used {out_of_range}")
        key = self.key_for(path)
        previous = self.cassettes.get(key)
        self.cassettes[key] = entry if previous is None else previous.merged(entry)
        return self.cassettes[key]

    def merge(self, other: UsageReport) -> UsageReport:
        """Both reports in one (xdist: each worker writes one, the controller merges)."""
        if self.root is not None and other.root is not None and self.root != other.root:
            raise ValueError(f"reports with different roots cannot be merged: {self.root} and {other.root}")
        out = UsageReport(dict(self.cassettes), self.root if self.root is not None else other.root)
        for key, entry in other.cassettes.items():
            mine = out.cassettes.get(key)
            out.cassettes[key] = entry if mine is None else mine.merged(entry)
        return out

    @classmethod
    def merged(cls, reports: Iterable[UsageReport]) -> UsageReport:
        out = cls()
        for report in reports:
            out = out.merge(report)
        return out

    # -- reading the result ----------------------------------------------------------------

    def unused(self) -> list[Unused]:
        """Per file with something unused, the unused indices, in path order.
        Files whose digest is unknown (changed during the run) are left out:
        see :meth:`changed_during_run`."""
        out = []
        for key in sorted(self.cassettes):
            entry = self.cassettes[key]
            if entry.digest is None:
                continue
            indices = entry.unused()
            if indices:
                out.append(Unused(key, indices, entry.interactions))
        return out

    def changed_during_run(self) -> list[str]:
        return sorted(key for key, entry in self.cassettes.items() if entry.digest is None)

    def describe_unused(self) -> list[str]:
        """One line per file with unused interactions, and one per file that
        changed during the run (for a terminal summary)."""
        lines = [u.describe() for u in self.unused()]
        lines += [
            f"{key}: changed while the suite ran (two versions were used); not counted"
            for key in self.changed_during_run()
        ]
        return lines

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": REPORT_VERSION}
        if self.root is not None:
            out["root"] = self.root
        out["cassettes"] = {key: self.cassettes[key].to_dict() for key in sorted(self.cassettes)}
        return out

    def dumps(self) -> str:
        """The JSON text: one line per cassette, in path order, so a report
        reads (and diffs) file by file."""
        data = self.to_dict()
        head = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in data.items() if k != "cassettes"]
        entries = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in data["cassettes"].items()]
        body = "{}" if not entries else "{\n" + ",\n".join(entries) + "\n  }"
        return "{\n" + "\n".join(head) + f'\n  "cassettes": {body}\n}}\n'

    def write(self, path: str | Path) -> Path:
        """Write the report atomically (a reader sees the old or the new file)."""
        target = Path(path)
        yamlio.atomic_write_text(target, self.dumps())
        return target

    @classmethod
    def from_dict(cls, data: Any, where: str = "<report>") -> UsageReport:
        if not isinstance(data, Mapping):
            raise UsageReportError(f"{where}: not a usage report (expected a JSON object)")
        if data.get("version") != REPORT_VERSION:
            raise UsageReportError(
                f"{where}: version: expected {REPORT_VERSION}, got {data.get('version')!r}"
            )
        root = data.get("root")
        if root is not None and not isinstance(root, str):
            raise UsageReportError(f"{where}: root: expected a string")
        cassettes = data.get("cassettes")
        if not isinstance(cassettes, Mapping):
            raise UsageReportError(f"{where}: cassettes: expected an object of file -> usage")
        out = cls(root=root)
        for key, raw in cassettes.items():
            out.cassettes[str(key)] = _usage_from_dict(raw, f"{where}: cassettes[{key!r}]")
        return out

    @classmethod
    def read(cls, path: str | Path) -> UsageReport:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageReportError(f"{p}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageReportError(f"{p}: not a usage report (not UTF-8 text)") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageReportError(f"{p}: not valid JSON: {exc}") from None
        return cls.from_dict(data, str(p))


def _usage_from_dict(raw: Any, where: str) -> CassetteUsage:
    if not isinstance(raw, Mapping):
        raise UsageReportError(f"{where}: expected an object with digest, interactions, used")
    count = raw.get("interactions")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise UsageReportError(f"{where}.interactions: expected a count (0 or more)")
    digest = raw.get("digest")
    if digest is not None and not (isinstance(digest, str) and digest.startswith(DIGEST_PREFIX)):
        raise UsageReportError(f"{where}.digest: expected null or {DIGEST_PREFIX}<hex>")
    used = raw.get("used")
    if not isinstance(used, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in used):
        raise UsageReportError(f"{where}.used: expected a list of interaction indices")
    bad = [i for i in used if not 0 <= i < count]
    if bad:
        raise UsageReportError(f"{where}.used: {bad} out of range for {_count(count, 'interaction')}")
    return CassetteUsage(count, digest, set(used))


# -- pruning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneOutcome:
    """What prune did (or, in a dry run, would do) to one file.

    ``action``: ``pruned`` (interactions dropped, file rewritten), ``deleted``
    (nothing used, ``delete_empty``), ``kept-empty`` (nothing used, file left
    as it is), ``skipped`` (changed since the report, missing, unreadable,
    or refused by the redaction scan; the file is untouched)."""

    path: str
    action: str
    dropped: list[int]
    kept: int
    message: str
    reformatted: bool = False  # the rewrite changes more than the dropped interactions' text


@dataclass
class PruneResult:
    outcomes: list[PruneOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def skipped(self) -> list[PruneOutcome]:
        return [o for o in self.outcomes if o.action == "skipped"]

    @property
    def interactions_dropped(self) -> int:
        return sum(len(o.dropped) for o in self.outcomes if o.action in ("pruned", "deleted"))

    @property
    def files_changed(self) -> int:
        return sum(1 for o in self.outcomes if o.action in ("pruned", "deleted"))


def prune(
    report: UsageReport, root: str | Path, *, dry_run: bool = False, delete_empty: bool = False
) -> PruneResult:
    """Drop every interaction ``report`` says no test used from the cassettes
    under ``root``. A file whose bytes differ from the report's digest is
    skipped (its indices may mean other interactions now); a file with no
    used interaction is deleted only with ``delete_empty``."""
    base = Path(root)
    result = PruneResult(dry_run=dry_run)
    for key in report.changed_during_run():
        result.outcomes.append(
            PruneOutcome(key, "skipped", [], 0, f"{key}: skipped: it changed while the suite ran; run the suite again")
        )
    for unused in report.unused():
        result.outcomes.append(_prune_file(base, unused, report.cassettes[unused.path], dry_run, delete_empty))
    result.outcomes.sort(key=lambda o: o.path)
    return result


def _prune_file(base: Path, unused: Unused, usage: CassetteUsage, dry_run: bool, delete_empty: bool) -> PruneOutcome:
    path = base / unused.path
    where = str(path)

    def skipped(why: str) -> PruneOutcome:
        return PruneOutcome(unused.path, "skipped", [], 0, f"{where}: skipped: {why}")

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return skipped("no such file (moved or deleted since the report)")
    except OSError as exc:
        return skipped(f"cannot read: {exc.strerror}")
    if digest_bytes(data) != usage.digest:
        return skipped("changed since the report was written (its digest differs); run the suite again")
    try:
        cassette = cassette_store.parse(data, path)
    except CassetteError as exc:  # the same bytes loaded during the run; a schema change could refuse them now
        return skipped(str(exc))
    if len(cassette.interactions) != usage.interactions:
        return skipped(f"has {len(cassette.interactions)} interactions, the report says {usage.interactions}")
    dropped = unused.indices
    if unused.whole_file:
        if not delete_empty:
            return PruneOutcome(
                unused.path, "kept-empty", [], usage.interactions,
                f"{where}: no interaction used; kept (--delete-empty removes it)",
            )
        if not dry_run:
            path.unlink()
        verb = "would delete it" if dry_run else "deleted"
        return PruneOutcome(
            unused.path, "deleted", dropped, 0,
            f"{where}: no interaction used; {verb} ({_count(len(dropped), 'interaction')})",
        )
    reformatted = cassette_store.dumps(cassette) != data.decode("utf-8", "replace")
    drop = set(dropped)
    cassette.interactions = [item for i, item in enumerate(cassette.interactions) if i not in drop]
    if not dry_run:
        try:
            cassette_store.save(cassette, path)
        except SecretFound as exc:  # a key-shaped value edited in by hand: nothing is written
            return PruneOutcome(unused.path, "skipped", [], 0, f"{exc}\n(skipped; the file is unchanged)")
        except OSError as exc:
            return skipped(f"cannot write: {exc.strerror or exc}")
    listed = ", ".join(str(i) for i in dropped)
    note = ""
    if reformatted:
        note = "; rewritten in the canonical form (comments and hand formatting are not kept)"
    verb = "would drop" if dry_run else "dropped"
    return PruneOutcome(
        unused.path, "pruned", dropped, len(cassette.interactions),
        f"{where}: {verb} {_count(len(dropped), 'interaction')} (interactions[{listed}]), "
        f"kept {len(cassette.interactions)}{note}",
        reformatted,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
