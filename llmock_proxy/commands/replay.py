"""``llmock-proxy replay``: the replay addon in mitmdump (proxy mode), with the set-up printed.

Clients keep their real URLs and trust mitmproxy's CA; nothing reaches the
network in replay mode. On Ctrl-C the command reads the addon's health
counts (hits and misses) before mitmdump stops, and prints them. Clients that
take a base URL are better served by ``llmock-proxy serve``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmock_proxy.commands.helptext import help_text
from llmock_proxy.commands.mitmdump_run import (
    MitmdumpChild,
    add_proxy_arguments,
    ca_file,
    control_get,
    mitmdump_command,
    option_conflicts,
    proxy_lines,
)
from llmock_proxy.commands.record import client_host
from llmock_proxy.pytest_plugin.mitmdump import ADDON_SCRIPT as REPLAY_SCRIPT

PROG = "llmock-proxy replay"
MODES = ("replay", "auto", "passthrough")  # as llmock_proxy.replay.answers has them (its import is heavy)
HEALTH_PATH = "/__llmock/health"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="answer LLM API requests from cassettes through an HTTPS proxy (mitmdump with the replay addon)",
        **help_text(
            "Start mitmdump with the replay addon in regular proxy mode and print how to point SDKs at it "
            "(HTTPS_PROXY and mitmproxy's CA): clients keep the providers' real URLs and are answered from "
            "the cassettes in --cassette-dir and the --cassettes/--fixtures files, never from the network. "
            "A miss is an error in the provider's format (status 421) naming the closest recordings.\n\n"
            "Ctrl-C stops the proxy and prints how many requests were answered and missed. Other replay "
            "addon options pass through with --set (llmock_miss_status, llmock_cassette, ...: "
            "docs/replay.md). Clients that take a base URL: llmock-proxy serve.",
            "llmock-proxy replay --cassette-dir cassettes --timing instant",
        ),
    )
    parser.add_argument(
        "--cassette-dir", default="cassettes", metavar="DIR",
        help="cassettes to replay (searched recursively), and where --mode auto records (default: cassettes)",
    )
    parser.add_argument(
        "--cassettes", nargs="+", action="extend", default=[], metavar="PATH",
        help="more cassette files or directories; repeatable",
    )
    parser.add_argument(
        "--fixtures", nargs="+", action="extend", default=[], metavar="PATH",
        help="llmock JSON fixture files or directories (recursive *.json); repeatable",
    )
    parser.add_argument(
        "--timing", default="recorded", help="stream pacing: recorded (default), instant, or scale:X"
    )
    parser.add_argument(
        "--mode", choices=MODES, default="replay",
        help="what a miss gets: replay = the provider's error, never forwarded (default); auto = forwarded "
        "and recorded into --cassette-dir; passthrough = forwarded",
    )
    add_proxy_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    conflict = option_conflicts(args.options, {
        "llmock_cassette_dir": "--cassette-dir", "llmock_cassettes": "--cassettes", "llmock_fixtures": "--fixtures",
        "llmock_timing": "--timing", "llmock_mode": "--mode", "confdir": "--confdir",
    })
    if conflict:
        print(f"{PROG}: {conflict}", file=sys.stderr)
        return 2
    options = {"llmock_cassette_dir": args.cassette_dir, "llmock_timing": args.timing, "llmock_mode": args.mode}
    command = mitmdump_command(args, REPLAY_SCRIPT, options)
    for name, paths in (("llmock_cassettes", args.cassettes), ("llmock_fixtures", args.fixtures)):
        for path in paths:
            command += ["--set", f"{name}={path}"]
    child = MitmdumpChild(command, PROG)
    host = client_host(args.listen_host)
    counts: dict[str, Any] = {}

    def listening(port: int) -> None:
        proxy = f"http://{host}:{port}"
        lines = [
            f"{PROG}: answering from {_sources(args)} through the proxy {proxy} (mode {args.mode}, "
            f"timing {args.timing})",
            "Point your application at it (in its shell, then run it; API keys may be any value):",
            *proxy_lines(proxy, ca_file(args.confdir)),
            f"Health: curl --proxy {proxy} http://llmock.invalid{HEALTH_PATH}",
            "Ctrl-C stops it and prints the hits and misses.",
        ]
        print("\n".join(lines), flush=True)

    def before_stop(port: int) -> None:
        counts.update(control_get(host.strip("[]"), port, HEALTH_PATH) or {})

    code = child.run(listening, before_stop)
    if code == 0 and child.port is not None:  # stopped on request, not mitmdump failing
        print(summary(counts), flush=True)
    return code


def _sources(args: argparse.Namespace) -> str:
    named = [f"{args.cassette_dir.rstrip('/')}/", *args.cassettes, *args.fixtures]
    return ", ".join(named)


def summary(health: dict[str, Any]) -> str:
    if "hits" not in health:
        return f"{PROG}: stopped (the health endpoint did not answer, so no counts)"
    hits, misses = int(health["hits"]), int(health["misses"])
    return (f"{PROG}: {hits} request{'s' if hits != 1 else ''} answered from recordings/fixtures, "
            f"{misses} miss{'es' if misses != 1 else ''} ({health.get('fixtures', '?')} loaded)")
