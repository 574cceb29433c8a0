"""``llmock-proxy cassette validate PATH...``: check cassettes and fixture files.

Files or directories (searched recursively, hidden entries skipped):
``*.yaml``/``*.yml`` are cassettes, ``*.json`` are llmock fixture files.
A file passes when replay would load it: the JSON Schema, then what replay
checks beyond it (match keys and regexes, fixture options, request bodies
the provider must read, recorded answers it must be able to send: stream
items, headers, WebSocket frames), and it holds nothing key-shaped (the
recorder's refuse-to-write scan, for files edited by hand). Every problem is printed
with its file, interaction (or fixture) index and field, then one summary
line. Exit codes: 0 all valid, 1 problems found, 2 usage errors (no paths,
a path that does not exist or is neither kind). ``--lenient-fixtures`` checks
fixture files as ``serve --lenient-fixtures`` loads them: a bad match key is
printed as a warning, not counted as a problem.

``llmock-proxy cassette prune REPORT``: drop the interactions a usage report
(``pytest --llmock-report-unused``) says no test used; see
:mod:`llmock_proxy.cassette.usage`.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from llmock_proxy import nesting
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.store import CASSETTE_SUFFIXES, FIXTURE_SUFFIXES, is_other_document
from llmock_proxy.cassette.usage import PruneResult, UsageReport, UsageReportError, prune
from llmock_proxy.commands.helptext import help_text
from llmock_proxy.errors import CassetteError, MatchSpecError
from llmock_proxy.match.matcher import Matcher
from llmock_proxy.replay.encodable import unencodable
from llmock_proxy.replay.fixture import Fixture, fixture_from_interaction
from llmock_proxy.replay.llmock_format import read_fixture_file


class UsageError(Exception):
    """A path the command cannot work with; exit code 2."""


@dataclass(frozen=True)
class FileReport:
    path: Path
    kind: str  # "cassette" or "fixtures"
    problems: list[str]
    items: int  # interactions or fixtures, when the file could be read
    warnings: list[str] = field(default_factory=list)  # printed, not failing


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "cassette",
        help="work with cassette and fixture files",
        **help_text(
            "Work with cassette (YAML) and llmock fixture (JSON) files: validate checks them, prune drops "
            "the interactions a test run did not use. `llmock-proxy cassette SUBCOMMAND --help` for each.",
            "llmock-proxy cassette validate cassettes/",
        ),
    )
    sub = parser.add_subparsers(dest="cassette_command", metavar="SUBCOMMAND")
    validate = sub.add_parser(
        "validate",
        help="check cassettes and fixture files against their schemas",
        **help_text(
            "Check cassettes (*.yaml, *.yml) and llmock fixture files (*.json): their JSON "
            "Schemas, what replay checks when it loads them (match keys, regexes, fixture "
            "options, recorded answers it could not send), and that they hold nothing "
            "key-shaped (API keys, tokens). Directories are searched recursively. Exit 0 when "
            "all are valid, 1 when any has problems, 2 on usage errors.",
            "llmock-proxy cassette validate cassettes/ fixtures/suite.json",
        ),
    )
    validate.add_argument("paths", nargs="*", metavar="PATH", help="files or directories")
    validate.add_argument(
        "-v", "--verbose", action="store_true", help="also list the files that are valid"
    )
    validate.add_argument(
        "--lenient-fixtures",
        action="store_true",
        help="an unknown or malformed match key in an llmock fixture file is a warning instead of a load "
        "error (for migrating suites)",
    )
    validate.set_defaults(handler=run_validate)
    _register_prune(sub)
    parser.set_defaults(handler=lambda args: _missing_subcommand(parser))


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: a sub-command is required (validate, prune)", file=sys.stderr)
    return 2


# -- prune -----------------------------------------------------------------------------------


def _register_prune(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    prune = sub.add_parser(
        "prune",
        help="drop the interactions a test run did not use (from a --llmock-report-unused report)",
        description=textwrap.fill(
            "Drop from each cassette the interactions that no test used, as recorded in a usage report "
            "written by `pytest --llmock-report-unused=REPORT` (merged across xdist workers). Files are "
            "rewritten atomically through the cassette save (and its redaction scan); a file changed since "
            "the report (its digest differs) is skipped and named. A file whose interactions were all "
            "unused is kept unless --delete-empty is given. Exit 0 when done, 1 when a file was skipped, "
            "2 on usage errors (a missing or unreadable report).",
            78,
        ),
        epilog=(
            "example:\n"
            "  pytest --llmock-report-unused=llmock-usage.json\n"
            "  llmock-proxy cassette prune llmock-usage.json --dry-run\n"
            "  llmock-proxy cassette prune llmock-usage.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("report", metavar="REPORT", help="the usage report (JSON)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be dropped; change nothing")
    prune.add_argument(
        "--delete-empty", action="store_true", help="delete a cassette none of whose interactions was used"
    )
    prune.add_argument(
        "--root",
        metavar="DIR",
        help="the directory the report's paths are relative to (default: the root the report names, "
        "else the current directory)",
    )
    prune.set_defaults(handler=run_prune)


def run_prune(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    name = "llmock-proxy cassette prune"
    try:
        report = UsageReport.read(args.report)
    except UsageReportError as exc:
        print(f"{name}: error: {exc}", file=err)
        return 2
    root = Path(args.root or report.root or ".")
    if not root.is_dir():
        where = "--root" if args.root else f"{args.report}: root"
        print(f"{name}: error: {where}: {root}: no such directory (give --root DIR)", file=err)
        return 2
    result = prune(report, root, dry_run=args.dry_run, delete_empty=args.delete_empty)
    for outcome in result.outcomes:
        print(outcome.message, file=out)
    print(_prune_summary(result, len(report.cassettes)), file=out)
    return 1 if result.skipped else 0


def _prune_summary(result: PruneResult, considered: int) -> str:
    if not result.outcomes:
        return f"nothing to prune: every interaction of the {_count(considered, 'cassette')} in the report was used"
    verb = "would drop" if result.dry_run else "dropped"
    text = f"{verb} {_count(result.interactions_dropped, 'interaction')} from {_count(result.files_changed, 'file')}"
    kept_empty = sum(1 for o in result.outcomes if o.action == "kept-empty")
    if kept_empty:
        text += f"; {_count(kept_empty, 'file')} with no interaction used kept (--delete-empty removes them)"
    if result.skipped:
        text += f"; {_count(len(result.skipped), 'file')} skipped"
    return text


def run_validate(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not args.paths:
        print("llmock-proxy cassette validate: error: give at least one file or directory", file=err)
        return 2
    try:
        files = collect(args.paths)
    except UsageError as exc:
        print(f"llmock-proxy cassette validate: error: {exc}", file=err)
        return 2
    if not files:
        print("no cassette (*.yaml, *.yml) or fixture (*.json) files found", file=err)
    named = {Path(raw) for raw in args.paths}
    skipped = [path for path in files if path not in named and _other_json_document(path)]
    reports = [validate_file(path, lenient_fixtures=args.lenient_fixtures) for path in files if path not in skipped]
    if args.verbose:
        for path in skipped:
            print(f"{path}: skipped (JSON that is not a fixture file, as replay skips it in a directory)", file=out)
    for report in reports:
        for problem in report.problems:
            print(problem, file=out)
        for warning in report.warnings:
            print(f"warning: {warning}", file=out)
        if args.verbose and not report.problems:
            unit = "interaction" if report.kind == "cassette" else "fixture"
            print(f"{report.path}: ok ({report.items} {unit}{'s' if report.items != 1 else ''})", file=out)
    print(summary(reports), file=out)
    return 1 if any(r.problems for r in reports) else 0


def collect(paths: Iterable[str | Path]) -> list[Path]:
    """The files to check: named files (of a known kind) and the cassette and
    fixture files under named directories, in a stable order."""
    suffixes = CASSETTE_SUFFIXES + FIXTURE_SUFFIXES
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    f
                    for f in path.rglob("*")
                    if f.is_file()
                    and f.suffix.lower() in suffixes
                    and not any(part.startswith(".") for part in f.relative_to(path).parts)
                )
            )
        elif path.is_file():
            if path.suffix.lower() not in suffixes:
                raise UsageError(
                    f"{path}: not a cassette (*.yaml, *.yml) or fixture file (*.json)"
                )
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    unique: dict[Path, None] = dict.fromkeys(files)
    return list(unique)


def _other_json_document(path: Path) -> bool:
    """A JSON file found in a directory that is no fixture file (an aimock
    config, a schema, a package manifest): replay skips it there too."""
    return path.suffix.lower() in FIXTURE_SUFFIXES and is_other_document(path, "fixtures")


def validate_file(path: Path, *, lenient_fixtures: bool = False) -> FileReport:
    if path.suffix.lower() in CASSETTE_SUFFIXES:
        return _validate_cassette(path)
    return _validate_fixture_file(path, lenient=lenient_fixtures)


def _validate_cassette(path: Path) -> FileReport:
    try:
        loaded = cassette_store.load(path)
    except CassetteError as exc:
        return FileReport(path, "cassette", list(exc.problems), 0)
    problems = _replay_problems(
        (f"{path}: interactions[{i}]", interaction)
        for i, interaction in enumerate(loaded.interactions)
        if interaction.response is not None  # replay skips recorded transport errors
    )
    for i, interaction in enumerate(loaded.interactions):  # answers replay could not send, as loading finds them
        if interaction.response is not None:
            problems += unencodable(interaction.response, f"{path}: interactions[{i}].response")
    problems += _secrets(loaded, path)
    return FileReport(path, "cassette", problems, len(loaded.interactions))


def _validate_fixture_file(path: Path, *, lenient: bool = False) -> FileReport:
    try:
        data = nesting.loads(path.read_bytes(), nesting.MAX_DOCUMENT_DEPTH)
    except OSError as exc:
        return FileReport(path, "fixtures", [f"{path}: cannot read: {exc.strerror}"], 0)
    except ValueError as exc:  # JSON syntax (also bad UTF-8, and TooDeep)
        return FileReport(path, "fixtures", [f"{path}: not valid JSON: {exc}"], 0)
    try:
        # What serve and the replay addon load, read the same way.
        read = read_fixture_file(path, lenient=lenient)
    except CassetteError as exc:
        return FileReport(path, "fixtures", list(exc.problems), 0)
    problems = [*read.problems, *_replay_problems((f.source, f) for f in read.fixtures)]
    problems += _secrets(data, path)
    return FileReport(path, "fixtures", problems, read.entries, read.warnings)


def _replay_problems(items: Iterable[tuple[str, Any]]) -> list[str]:
    """What loading the items into a replay session would refuse, one
    message per item (the schema cannot say: a regex that does not compile,
    an unknown match key in a cassette, a body its provider cannot read)."""
    matcher = Matcher()
    problems: list[str] = []
    for source, item in items:
        try:
            fixture = item if isinstance(item, Fixture) else fixture_from_interaction(item, source)
            matcher.add(fixture)
        except (CassetteError, MatchSpecError) as exc:
            problems.append(str(exc))
    return problems


def _secrets(data: Cassette | dict[str, Any], path: Path) -> list[str]:
    """Key-shaped values (the recorder's refuse-to-write scan): a hand edit
    or a copied fixture must not bring a credential into the repository."""
    by_field: dict[str, list[str]] = {}
    for finding in Redactor.default().scan(data):
        by_field.setdefault(finding.where, []).append(f"{finding.rule} {finding.masked!r}")
    return [
        f"{path}: {where}: holds a key-shaped value ({', '.join(dict.fromkeys(kinds))}); replace it with <redacted>"
        for where, kinds in by_field.items()
    ]


def summary(reports: list[FileReport]) -> str:
    bad = [r for r in reports if r.problems]
    problems = sum(len(r.problems) for r in bad)
    cassettes = sum(1 for r in reports if r.kind == "cassette")
    fixtures = len(reports) - cassettes
    checked = f"checked {_count(cassettes, 'cassette')} and {_count(fixtures, 'fixture file')}"
    if not bad:
        return f"{checked}: all valid"
    return f"{checked}: {_count(problems, 'problem')} in {_count(len(bad), 'file')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
