"""``--llmock-report-unused``: the cassettes and interactions no test of the run used.

Each pytest process (each xdist worker) notes, for every cassette file a test
session loaded, the file as it was loaded (interaction count, digest) and
which of its interactions answered, in a
:class:`llmock_proxy.cassette.usage.UsageReport`. Workers hand theirs to the
controller through xdist's ``workeroutput``; the controller merges them, adds
the cassette files nobody loaded (every file under the cassette directory and
the shared cassettes), prints what was never used and, given a path
(``--llmock-report-unused=usage.json``), writes the report that
``llmock-proxy cassette prune`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmock_proxy.cassette.usage import CassetteSnapshot, UsageReport
    from llmock_proxy.replay.journal import Origin

WORKER_OUTPUT_KEY = "llmock_usage"
INTERACTIONS = "interactions"


def cassette_files(paths: Iterable[Path]) -> list[Path]:
    """The cassette files of files and directories (those that exist)."""
    from llmock_proxy.cassette.store import CASSETTE_SUFFIXES, expand

    return expand([p for p in paths if p.exists()], CASSETTE_SUFFIXES)


class UsageCollector:
    """One pytest process's notes: what each loaded cassette file was and what of it answered."""

    def __init__(self, rootdir: Path) -> None:
        from llmock_proxy.cassette.usage import UsageReport

        self.report = UsageReport(root=str(rootdir))
        # The file's (mtime, size) when it was last read -> its snapshot, so a
        # shared cassette loaded by every test is read once.
        self._snapshots: dict[Path, tuple[tuple[int, int], CassetteSnapshot]] = {}

    def snapshots(self, paths: Iterable[Path]) -> dict[Path, CassetteSnapshot]:
        """The cassette files under ``paths`` as they are now (what the session is about to load).
        A file that cannot be read is left out: the session's load reports it."""
        from llmock_proxy.cassette.usage import CassetteSnapshot
        from llmock_proxy.errors import CassetteError

        out: dict[Path, CassetteSnapshot] = {}
        for path in cassette_files(paths):
            try:
                stat = path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
                known = self._snapshots.get(path)
                if known is None or known[0] != stamp:
                    known = self._snapshots[path] = (stamp, CassetteSnapshot.of_file(path))
            except (OSError, CassetteError):
                continue
            out[path] = known[1]
        return out

    def note(self, snapshots: dict[Path, CassetteSnapshot], used: Iterable[Origin]) -> None:
        by_file: dict[str, set[int]] = {}
        for origin in used:
            if origin.section == INTERACTIONS:
                by_file.setdefault(origin.file, set()).add(origin.index)
        for path, snapshot in snapshots.items():
            indices = {i for i in by_file.get(str(path), ()) if 0 <= i < snapshot.interactions}
            self.report.note(path, indices, snapshot)

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()


def merged(local: UsageReport | None, workers: Iterable[dict[str, Any]], root: Path) -> UsageReport:
    """The run's report: this process's and every worker's."""
    from llmock_proxy.cassette.usage import UsageReport

    reports = [UsageReport(root=str(root))]
    if local is not None:
        reports.append(local)
    reports += [UsageReport.from_dict(data, "xdist worker usage") for data in workers]
    return UsageReport.merged(reports)


def add_unloaded(report: UsageReport, paths: Iterable[Path]) -> list[str]:
    """Note every cassette file under ``paths`` no test loaded, as wholly
    unused; returns a line for each file that could not be read."""
    from llmock_proxy.errors import CassetteError

    problems: list[str] = []
    for path in cassette_files(paths):
        if report.key_for(path) in report.cassettes:
            continue
        try:
            report.note(path, ())
        except (CassetteError, ValueError) as exc:
            problems.append(f"{report.key_for(path)}: not counted: {exc}")
    return problems
