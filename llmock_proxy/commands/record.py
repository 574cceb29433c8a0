"""``llmock-proxy record``: the record addon in mitmdump, with the set-up printed.

Regular proxy mode on 127.0.0.1:8080 by default (clients keep their real
URLs and trust mitmproxy's CA), or ``--base-url URL``: mitmproxy's reverse mode
for one provider (the SDK's base URL pointed at the proxy, plain HTTP, no CA).
On Ctrl-C mitmdump stops (its worker writes what it holds) and the command
lists what the run wrote: the files and the interactions per API family, by
reading the cassettes that changed.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmock_proxy.commands.helptext import help_text
from llmock_proxy.commands.mitmdump_run import (
    MitmdumpChild,
    add_proxy_arguments,
    ca_file,
    mitmdump_command,
    option_conflicts,
    proxy_lines,
)
from llmock_proxy.pytest_plugin.environment import BASE_URL_VARIABLES

# The addon script the package ships (the repository's addons/record.py is not installed).
RECORD_SCRIPT = Path(__file__).with_name("record_addon.py")
PROG = "llmock-proxy record"

# The public base URL of each vendor whose SDK reads a base-URL variable
# (as llmock_proxy.record.forward has them; not imported: aiohttp).
VENDOR_ORIGINS = {
    "https://api.openai.com": "openai",
    "https://api.anthropic.com": "anthropic",
    "https://generativelanguage.googleapis.com": "gemini",
    "http://localhost:11434": "ollama",
    "http://127.0.0.1:11434": "ollama",
    "https://api.cohere.com": "cohere",
    "https://api.cohere.ai": "cohere",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record LLM API traffic into cassettes (mitmdump with the record addon)",
        **help_text(
            "Start mitmdump with the record addon and print how to point SDKs at it. Regular proxy mode "
            "(HTTPS_PROXY and mitmproxy's CA) by default; --base-url records one provider through its "
            "SDK's base URL instead (mitmproxy's reverse mode, plain HTTP).\n\n"
            "Every exchange is redacted and appended to a cassette in --cassette-dir (a new "
            "rec-<time>-<pid>-<random>.yaml per run, or --cassette NAME). Ctrl-C stops the proxy and lists "
            "the files written and their interactions per API family. Other record addon options, and "
            "mitmproxy's own, pass through with --set (llmock_redact, llmock_hosts, ...: docs/record.md); "
            "for upstream mode or several providers at once, run mitmdump -s addons/record.py yourself.",
            "llmock-proxy record --cassette-dir cassettes --cassette suite.yaml",
            "llmock-proxy record --base-url https://api.openai.com --listen-port 8081",
        ),
    )
    parser.add_argument(
        "--cassette-dir", default="cassettes", metavar="DIR",
        help="where cassettes are written (default: cassettes; created when missing)",
    )
    parser.add_argument(
        "--cassette", default="", metavar="NAME",
        help="cassette file name inside --cassette-dir, appended to (default: a new file per run)",
    )
    parser.add_argument(
        "--base-url", metavar="URL",
        help="record one provider in reverse mode: its origin, e.g. https://api.openai.com; clients set "
        "their base URL to the proxy (printed at start)",
    )
    add_proxy_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    conflict = option_conflicts(args.options, {
        "llmock_cassette_dir": "--cassette-dir", "llmock_cassette": "--cassette", "confdir": "--confdir",
    })
    if conflict:
        print(f"{PROG}: {conflict}", file=sys.stderr)
        return 2
    mode = None
    if args.base_url:
        origin = _origin(args.base_url)
        if origin is None:
            print(f"{PROG}: --base-url {args.base_url}: expected an origin such as https://api.openai.com "
                  "(scheme and host, no path: the client keeps its path)", file=sys.stderr)
            return 2
        mode = f"reverse:{origin}"
    cassette_dir = Path(args.cassette_dir)
    before = Snapshot.take(cassette_dir, args.cassette)
    options = {"llmock_cassette_dir": str(cassette_dir)}
    if args.cassette:
        options["llmock_cassette"] = args.cassette
    child = MitmdumpChild(mitmdump_command(args, RECORD_SCRIPT, options, mode), PROG)

    def listening(port: int) -> None:
        print(banner(args, port), flush=True)

    code = child.run(listening, lambda port: None)
    if child.port is not None:
        print(summary(before, Snapshot.take(cassette_dir, args.cassette)), flush=True)
    return code


def _origin(url: str) -> str | None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def client_host(listen_host: str) -> str:
    """The address clients use for a listen address (every interface: this machine's loopback)."""
    if listen_host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{listen_host}]" if ":" in listen_host else listen_host


def banner(args: argparse.Namespace, port: int) -> str:
    proxy = f"http://{client_host(args.listen_host)}:{port}"
    target = f"{args.cassette_dir}/{args.cassette}" if args.cassette else f"a new cassette in {args.cassette_dir}/"
    lines = []
    if args.base_url:
        origin = _origin(args.base_url) or args.base_url
        lines.append(f"{PROG}: recording {origin} (reverse mode) on {proxy} into {target}")
        lines.append("Point your SDK's base URL at it (plain HTTP, no certificate to trust):")
        lines += [f"  {line}" for line in base_url_lines(origin, proxy)]
    else:
        lines.append(f"{PROG}: recording through the proxy {proxy} into {target}")
        lines.append("Point your application at it (in its shell, then run it):")
        lines += proxy_lines(proxy, ca_file(args.confdir))
    lines.append("Ctrl-C stops recording and lists what was written.")
    return "\n".join(lines)


def base_url_lines(origin: str, proxy: str) -> list[str]:
    vendor = VENDOR_ORIGINS.get(origin)
    for name_vendor, variable, suffix in BASE_URL_VARIABLES:
        if name_vendor == vendor:
            return [f"export {variable}={proxy}{suffix}"]
    return [f"the client's base URL: {proxy} in place of {origin} (same path after it)"]


@dataclass(frozen=True)
class Snapshot:
    """The cassette files under a directory (size and change time), and the
    interactions per family of the one the run may append to (the others it
    cannot touch: a run without --cassette writes a file of its own)."""

    files: dict[Path, tuple[int, int]]
    appended: Counter[str]

    @classmethod
    def take(cls, directory: Path, cassette: str) -> Snapshot:
        files: dict[Path, tuple[int, int]] = {}
        if directory.is_dir():
            for path in sorted(directory.rglob("*")):
                if path.suffix in (".yaml", ".yml") and not path.name.startswith(".") and path.is_file():
                    stat = path.stat()
                    files[path] = (stat.st_size, stat.st_mtime_ns)
        named = directory / cassette if cassette else None
        appended = family_counts(named) if named is not None and named in files else Counter()
        return cls(files, appended)


def family_counts(path: Path) -> Counter[str]:
    from llmock_proxy.cassette import store  # the YAML and schema stack, only when something was written

    cassette = store.load(path)
    return Counter(str(i.match.get("family", "?")) for i in cassette.interactions)


def summary(before: Snapshot, after: Snapshot) -> str:
    """What the run wrote: each new or changed file, its new interactions per family."""
    written: list[tuple[Path, Counter[str]]] = []
    problems: list[str] = []
    for path, stat in after.files.items():
        if before.files.get(path) == stat:
            continue
        try:
            counts = family_counts(path)
        except Exception as exc:  # the message names the file
            problems.append(f"  {path}: cannot read it back: {exc}")
            continue
        if path in before.files:
            counts.subtract(before.appended)
            counts = +counts
        written.append((path, counts))
    total = sum(sum(c.values()) for _, c in written)
    if not written and not problems:
        return f"{PROG}: nothing was recorded (no request came through the proxy)"
    lines = [f"{PROG}: wrote {total} interaction{'s' if total != 1 else ''} to {len(written)} "
             f"file{'s' if len(written) != 1 else ''}:"]
    for path, counts in written:
        families = ", ".join(f"{family} {n}" for family, n in sorted(counts.items()))
        lines.append(f"  {path}: {sum(counts.values())} ({families})")
    return "\n".join(lines + problems)
