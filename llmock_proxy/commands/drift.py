"""``llmock-proxy drift``: catch provider API changes before the mocks lie.

Two forms::

    llmock-proxy drift CASSETTES... [--sample] [--upstream FAMILY=URL ...]
        [--concurrency N] [--max-requests N] [--timeout SECONDS] [--update]
        [--schemas DIR] [--policy FILE] [--fail-on info|warning|critical]
        [--require-keys] [--json F] [--junit F] [--markdown F]
    llmock-proxy drift schema CASSETTES... --out DIR

The first re-sends recorded requests to the live APIs (credentials from the
environment) and compares the shapes of the answers with the recorded ones
(or with committed ``--schemas``). The second writes the recorded shapes as
reviewable JSON Schema files, one per API family and wire form.

Exit codes: 0 no finding at or above ``--fail-on`` and every request could be
checked or was skipped; 1 drift found, or a live request failed; 2 usage or
configuration error; 3 (``--require-keys``) a request was skipped because
its credential variable is not set (and nothing above happened).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmock_proxy.commands.helptext import help_text
from llmock_proxy.drift.canary import (
    CanaryOptions,
    Progress,
    Upstream,
    UsageError,
    apply_updates,
    run_canary,
    select,
)
from llmock_proxy.drift.contracts import (
    Contracts,
    infer_documents,
    load_documents,
    load_recordings,
    write_documents,
)
from llmock_proxy.drift.findings import SEVERITIES, Policy
from llmock_proxy.drift.report import render_text, write_report
from llmock_proxy.drift.schema import validate_recording
from llmock_proxy.errors import CassetteError

# --require-keys: a family went unchecked for want of its credential.
EXIT_KEYS_MISSING = 3

USAGE = (
    "llmock-proxy drift CASSETTES... [options]\n"
    "       llmock-proxy drift schema CASSETTES... --out DIR"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "drift",
        help="re-send recorded requests live and report API shape drift; `drift schema` exports the shapes",
        usage=USAGE,
        add_help=False,
        **help_text(
            "Re-send recorded requests to the live APIs (credentials from the environment) and report how "
            "the shape of their answers drifted from the recordings; `drift schema` writes the recorded shapes "
            "as JSON Schema files (`llmock-proxy drift schema --help`). Exit 0: no finding at or above "
            "--fail-on; 1: drift found or a request failed; 2: usage or configuration error; 3: with "
            "--require-keys, a family's key was not in the environment.",
            "OPENAI_API_KEY=... llmock-proxy drift cassettes/ --sample --require-keys --markdown drift.md",
        ),
    )
    parser.add_argument(
        "-h", "--help", action=_Help, nargs=0,
        help="show this help message and exit (after `schema`: the help of `drift schema`)",
    )
    parser.add_argument("paths", nargs="+", metavar="CASSETTES", help="cassette files or directories (recursive)")
    live = parser.add_argument_group("live canary")
    live.add_argument("--sample", action="store_true", help="send one recording per API family and wire form")
    live.add_argument(
        "--upstream", action="append", default=[], metavar="FAMILY=URL",
        help="send a family's requests to this base URL instead (family, prefix such as 'openai', or glob); "
        "repeatable",
    )
    live.add_argument("--concurrency", type=_positive_int, default=4, metavar="N", help="parallel requests (default 4)")
    live.add_argument("--max-requests", type=_positive_int, default=None, metavar="N", help="send at most N requests")
    live.add_argument(
        "--timeout", type=_positive_float, default=60.0, metavar="SECONDS",
        help="per-request time limit, streams included (default 60)",
    )
    live.add_argument("--update", action="store_true", help="write the live answers back into the cassettes")
    live.add_argument(
        "--schemas", metavar="DIR", help="compare with these committed *.schema.json files instead of inferring"
    )
    live.add_argument("--policy", metavar="FILE", help="ignore/re-grade rules per API family (YAML or JSON)")
    live.add_argument(
        "--fail-on", choices=SEVERITIES, default="critical",
        help="exit 1 when a finding reaches this severity (default critical)",
    )
    live.add_argument(
        "--require-keys", action="store_true",
        help=f"exit {EXIT_KEYS_MISSING} when a request was skipped because its credential variable is not set "
        "(default: skipped, exit 0); for scheduled jobs that must check every family",
    )
    live.add_argument("--json", metavar="FILE", help="write the report as JSON")
    live.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per API family and form)")
    live.add_argument("--markdown", metavar="FILE", help="write Markdown (e.g. for $GITHUB_STEP_SUMMARY)")
    export = parser.add_argument_group("drift schema")
    export.add_argument("--out", metavar="DIR", help="directory for the <family>.<form>.schema.json files")
    parser.set_defaults(handler=run)


def schema_parser() -> argparse.ArgumentParser:
    """The help of ``drift schema``. One parser reads both forms (``schema``
    is the first of the paths), so this one only describes the second."""
    parser = argparse.ArgumentParser(
        prog="llmock-proxy drift schema",
        usage="llmock-proxy drift schema CASSETTES... --out DIR",
        **help_text(
            "Write the shapes of the recorded answers as JSON Schema files, one per API family and wire "
            "form (<family>.<form>.schema.json), for review in version control; `llmock-proxy drift "
            "--schemas DIR` compares live answers with them instead of inferring shapes from the "
            "recordings. Exit 0 when written, 1 when a schema rejects its own recordings, 2 on usage errors "
            "and cassettes that cannot be read.",
            "llmock-proxy drift schema cassettes/ --out contracts/",
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="CASSETTES", help="cassette files or directories (recursive)")
    parser.add_argument("--out", metavar="DIR", required=True, help="directory for the schema files")
    return parser


class _Help(argparse.Action):
    """``-h``: the help of the form the command line names (``drift schema --help``: the schema form's)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        paths = getattr(namespace, "paths", None) or []
        (schema_parser() if paths[:1] == ["schema"] else parser).print_help()
        parser.exit()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value:g}")
    return value


def _usage(message: str) -> int:
    print(f"llmock-proxy drift: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.paths[0] == "schema":
        return export_schemas(args.paths[1:], args)
    if args.out is not None:
        return _usage("--out belongs to `llmock-proxy drift schema CASSETTES... --out DIR`")
    return run_live(args)


# -- drift schema ----------------------------------------------------------------


def export_schemas(paths: list[str], args: argparse.Namespace) -> int:
    if not paths:
        return _usage("drift schema: name the cassette files or directories to read")
    if not args.out:
        return _usage("drift schema: --out DIR is required")
    try:
        recordings = load_recordings(paths)
    except CassetteError as exc:
        return _usage(str(exc))
    documents = infer_documents(recordings)
    if not documents:
        return _usage(f"no successful recordings in {', '.join(paths)}: nothing to export")
    # The exported contract must accept every recording it was made from.
    by_source = {r.source: r for r in recordings}
    problems = [
        f"{source}: {error}"
        for doc in documents.values()
        for source in doc["x-llmock"]["sources"]
        for error in validate_recording(doc, by_source[source].interaction.response)  # type: ignore[arg-type]
    ]
    for path in write_documents(documents, args.out):
        print(path)
    if problems:
        print("llmock-proxy drift schema: exported schemas reject their own recordings:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


# -- the live canary -----------------------------------------------------------------


def run_live(args: argparse.Namespace) -> int:
    try:
        upstreams = [Upstream.parse(spec) for spec in args.upstream]
        recordings = load_recordings(args.paths)
        policy = Policy.load(args.policy) if args.policy else Policy()
        documents = load_documents([args.schemas]) if args.schemas else infer_documents(recordings)
    except (CassetteError, UsageError) as exc:
        return _usage(str(exc))
    selected = select(recordings, sample=args.sample)
    if not selected:
        return _usage(f"no successful recordings to re-send in {', '.join(args.paths)}")
    options = CanaryOptions(
        upstreams=upstreams, concurrency=args.concurrency, max_requests=args.max_requests, timeout=args.timeout
    )
    progress = Progress(total=len(selected))
    report, canary = run_canary(Contracts(documents, policy), selected, options, progress=progress)
    report.fail_on = args.fail_on
    report.require_keys = args.require_keys

    if args.update:
        try:
            outcome = apply_updates(canary.answers, redactor=canary.secrets.redactor(canary.redactor))
        except (OSError, ValueError) as exc:  # unwritable file, or the redaction scan refused it
            print(f"llmock-proxy drift: --update: {canary.secrets.scrub(str(exc))}", file=sys.stderr)
            return 2
        for path in outcome.written:
            print(f"drift: updated {path}", file=sys.stderr)
        for note in outcome.kept:
            print(f"drift: kept {note}", file=sys.stderr)

    scrub = canary.secrets.scrub
    sys.stdout.write(scrub(render_text(report)))
    try:
        for fmt, path in (("json", args.json), ("junit", args.junit), ("markdown", args.markdown)):
            if path:
                write_report(report, path, fmt, scrub=scrub)
    except OSError as exc:
        return _usage(f"cannot write report: {exc}")
    if report.drifted or report.errors:
        return 1
    if report.keys_missing:
        families = sorted({r.family for r in report.results if r.outcome == "skipped" and r.needs})
        print(
            f"llmock-proxy drift: --require-keys: requests of {', '.join(families)} skipped for lack of a key: "
            f"set {', '.join(report.missing_keys())}",
            file=sys.stderr,
        )
        return EXIT_KEYS_MISSING
    return 0

