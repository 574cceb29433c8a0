"""``llmock-proxy serve``: the replay engine as a plain base-URL server.

No mitmproxy in the path: clients are pointed at it with their base-URL
settings (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, ...), and load tests
get the engine's full speed. Same cassettes, fixtures, matcher and timing as
the replay addon.

Misses: ``--mode replay`` (default) answers them with the provider's error
envelope (status 421, or ``--miss-status``, near-miss report); ``passthrough``
forwards them to ``--upstream``; ``auto`` forwards them and records the
exchange through the recorder into ``--cassette-dir``, and replays it from
then on (after a restart too: auto mode loads ``--cassette-dir``).

Nothing to serve: in replay mode a server with no recording and no fixture
would answer every request with a miss, so it refuses to start (exit 2 when
no --cassettes/--fixtures were given, 1 when the paths given hold none)
unless ``--allow-empty`` says that is meant (sessions opened through the
control endpoints bring their own files). ``auto`` and ``passthrough`` start
empty without it: their misses go upstream.

Compatibility with suites written for llmock/aimock: ``--miss-status 404``,
``--embedding-fallback`` (made-up vectors for unmatched embedding requests),
``--lenient-fixtures``; CORS answers for browsers (``--cors``, on by default
on loopback).

Hostile input: a request body may be ``--max-body-size`` bytes as sent and
once its Content-Encoding is undone (64 MiB by default, the replay addon's
cap); past it the answer is 413 and the server goes on answering others.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.commands.helptext import help_text
from llmock_proxy.errors import CassetteError, MatchSpecError
from llmock_proxy.fdlimit import raise_open_file_limit
from llmock_proxy.hosts import is_loopback
from llmock_proxy.record.forward import Forwarder, ForwarderFactory
from llmock_proxy.replay import event_loop
from llmock_proxy.replay.answers import MODES
from llmock_proxy.replay.control import CONTROL_HEADER
from llmock_proxy.replay.event_loop import EVENT_LOOPS, EventLoopUnavailable
from llmock_proxy.replay.plan import Timing, TimingError
from llmock_proxy.replay.server import ReplayEngine
from llmock_proxy.replay.session import DEFAULT_MISS_STATUS, ReplaySession, check_miss_status
from llmock_proxy.wire.content_encoding import DEFAULT_MAX_DECODED_SIZE

DEFAULT_PORT = 4010

LENIENT_FIXTURES_HELP = (
    "an unknown or malformed match key in an llmock fixture file is a warning instead of a load error "
    "(for migrating suites)"
)


# Environment variables the SDKs read their base URL from, and the path each
# expects after the server's address.
SDK_BASE_URLS: tuple[tuple[str, str], ...] = (
    ("OPENAI_BASE_URL", "/v1"),
    ("ANTHROPIC_BASE_URL", ""),
    ("GOOGLE_GEMINI_BASE_URL", ""),
    ("OLLAMA_HOST", ""),
    ("CO_API_URL", ""),
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="answer LLM API requests from cassettes and fixtures on a base URL",
        **help_text(
            "The replay engine as a plain base-URL server, no mitmproxy in the path: point clients at it "
            "with their base-URL settings (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, ...; printed at start). "
            "Same cassettes, fixtures, matcher and timing as the replay addon.\n\n"
            "A miss gets the provider's error envelope (status 421, or --miss-status) naming the closest "
            "recordings; --mode passthrough forwards misses to --upstream, --mode auto forwards and "
            "records them into --cassette-dir. In replay mode, paths that hold nothing stop it (exit 1; "
            "none given: exit 2) unless --allow-empty.",
            "llmock-proxy serve --cassettes cassettes --fixtures fixtures --port 4010",
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to listen on, 0 = any free port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--cassettes", nargs="+", action="extend", default=[], metavar="PATH",
        help="cassette files or directories (recursive *.yaml/*.yml); repeatable",
    )
    parser.add_argument(
        "--fixtures", nargs="+", action="extend", default=[], metavar="PATH",
        help="llmock JSON fixture files or directories (recursive *.json); repeatable",
    )
    parser.add_argument(
        "--timing", default="recorded",
        help="stream pacing: recorded (default), instant, or scale:X",
    )
    parser.add_argument(
        "--mode", choices=MODES, default="replay",
        help="what a miss gets: replay = provider-shaped 421 error (default; see --miss-status), "
        "passthrough = forwarded to --upstream, auto = forwarded and recorded",
    )
    parser.add_argument(
        "--miss-status", type=_miss_status, default=DEFAULT_MISS_STATUS, metavar="4XX",
        help=f"status of the error a miss gets in replay mode, unknown paths included: any 4xx "
        f"(default {DEFAULT_MISS_STATUS}, which no provider uses and SDKs do not retry; "
        "404 as llmock and aimock answer)",
    )
    parser.add_argument(
        "--embedding-fallback", action="store_true",
        help="answer an embedding request no fixture matches with deterministic vectors made from its "
        "input text (its dimensions, else the family's usual length) instead of a miss, as aimock does",
    )
    parser.add_argument(
        "--allow-empty", action="store_true",
        help="in replay mode, start even when --cassettes/--fixtures hold nothing to answer with (fixtures "
        "come later, through sessions opened on the control endpoints); --mode auto and passthrough start "
        "empty without it",
    )
    parser.add_argument("--lenient-fixtures", action="store_true", help=LENIENT_FIXTURES_HELP)
    parser.add_argument(
        "--cors", action=argparse.BooleanOptionalAction, default=None,
        help="CORS headers on every answer and OPTIONS preflights answered 204, so a page in a browser "
        "may call the server (default: on when --host is a loopback address)",
    )
    parser.add_argument(
        "--upstream", metavar="URL",
        help="base URL misses are forwarded to in passthrough/auto mode (e.g. https://api.openai.com)",
    )
    parser.add_argument(
        "--cassette-dir", default="cassettes", metavar="DIR",
        help="where auto mode writes new recordings, and what it recorded there before is replayed "
        "(default: cassettes)",
    )
    parser.add_argument(
        "--cassette", default="", metavar="NAME",
        help="cassette file name inside --cassette-dir for auto mode (default: a new file per run)",
    )
    parser.add_argument(
        "--redact", metavar="FILE",
        help="auto mode: extra redaction rules (YAML or JSON) on top of the default ones, as the record "
        "addon's llmock_redact",
    )
    parser.add_argument(
        "--max-body-size", type=_size, default=DEFAULT_MAX_DECODED_SIZE, metavar="BYTES",
        help="the largest request body accepted, as sent and once its Content-Encoding (gzip, deflate, br, "
        "zstd) is undone; larger ones get 413 (a few KB of gzip can decode to gigabytes). A number of "
        f"bytes, or with K, M or G (KiB, MiB, GiB) (default {DEFAULT_MAX_DECODED_SIZE // (1024 * 1024)}M, "
        "as the replay addon)",
    )
    parser.add_argument(
        "--event-loop", choices=EVENT_LOOPS, default="auto",
        help="the event loop to serve on: uvloop (C, about twice as fast at the socket layer; installed with "
        "the package except on Windows) or asyncio's own; auto takes uvloop when it is installed (default auto)",
    )
    parser.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    parser.set_defaults(handler=run)


def _miss_status(value: str) -> int:
    try:
        return check_miss_status(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _size(value: str) -> int:
    """A size in bytes: ``1048576``, ``512K``, ``64M``, ``1G`` (powers of 1024; ``KiB``/``MB`` spellings too)."""
    text = value.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = (text[:-1], text[-1]) if text[-1:] in ("k", "m", "g") else (text, "")
    if not (number.isascii() and number.isdigit()) or int(number) * _SIZE_UNITS[unit] < 1:
        raise argparse.ArgumentTypeError(f"expected a size such as 1048576, 512K or 64M, got {value!r}")
    return int(number) * _SIZE_UNITS[unit]


def run(args: argparse.Namespace) -> int:
    try:
        timing = Timing.parse(args.timing)
    except TimingError as exc:
        print(f"llmock-proxy serve: --timing: {exc}", file=sys.stderr)
        return 2
    if args.mode != "replay" and not args.upstream:
        print(f"llmock-proxy serve: --mode {args.mode} needs --upstream URL", file=sys.stderr)
        return 2
    if args.redact and args.mode != "auto":
        print("llmock-proxy serve: --redact applies to what --mode auto records", file=sys.stderr)
        return 2
    redactor = Redactor.default()
    if args.redact:
        try:
            redactor = Redactor.from_file(args.redact)
        except Exception as exc:  # the message names the file and the entry
            print(f"llmock-proxy serve: --redact: {exc}", file=sys.stderr)
            return 1
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        session = ReplaySession.load(
            _replayed_cassettes(args),
            args.fixtures,
            name="serve",
            lenient_fixtures=args.lenient_fixtures,
            miss_status=args.miss_status,
            embedding_fallback=args.embedding_fallback,
        )
    except (CassetteError, MatchSpecError) as exc:
        print(f"llmock-proxy serve: {exc}", file=sys.stderr)
        return 1
    if args.mode == "replay" and len(session) == 0:
        refused = nothing_to_serve(args)
        if refused:
            return refused
    # Everything loaded so far lives as long as the server: keep it out of
    # the cyclic garbage collector's full passes (fewer latency spikes).
    gc.freeze()
    raise_open_file_limit()  # a thousand slow clients must not lock the next one out
    try:
        factory = event_loop.loop_factory(args.event_loop)
    except EventLoopUnavailable as exc:
        print(f"llmock-proxy serve: --event-loop: {exc}", file=sys.stderr)
        return 2
    try:
        event_loop.run(_serve(args, session, timing, redactor), factory)
    except OSError as exc:
        print(f"llmock-proxy serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(args: argparse.Namespace, session: ReplaySession, timing: Timing, redactor: Redactor) -> None:
    forwarder = None
    if args.mode != "replay":
        forwarder = Forwarder(
            session,
            upstreams={"*": args.upstream} if args.upstream else {},
            record_to=_record_target(args) if args.mode == "auto" else None,
            redactor=redactor,
        )
    engine = ReplayEngine(
        session,
        timing=timing,
        mode=args.mode,
        miss_handler=forwarder.handle if forwarder else None,
        forward=ForwarderFactory(redactor),
        cors=is_loopback(args.host) if args.cors is None else args.cors,
        max_body_size=args.max_body_size,
    )
    host, port = await engine.start(args.host, args.port)
    print(banner(host, port, session, timing, args.mode), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not POSIX
            pass
    try:
        await stop.wait()
    finally:
        await engine.stop()
        if forwarder is not None:
            await forwarder.close()


def nothing_to_serve(args: argparse.Namespace) -> int:
    """A replay-mode server that loaded nothing would answer 421 to every
    request, which looks like a matching problem rather than a missing path:
    one loud line naming what was given, and the exit code (2: nothing
    given, 1: the paths given hold nothing), or 0 to start with --allow-empty."""
    given = [f"--{name} {' '.join(paths)}" for name, paths in (("cassettes", args.cassettes),
                                                               ("fixtures", args.fixtures)) if paths]
    what = (" and ".join(given) + " hold no recording or fixture") if given else "no --cassettes or --fixtures given"
    if args.allow_empty:
        print(f"llmock-proxy serve: WARNING: nothing to serve ({what}); starting anyway (--allow-empty): "
              "every request is a miss until a session brings fixtures", file=sys.stderr)
        return 0
    print(f"llmock-proxy serve: WARNING: nothing to serve: {what}, so every request would be a miss "
          f"({args.miss_status}). "
          "Name cassette or fixture files/directories, or pass --allow-empty to start anyway "
          "(--mode auto/passthrough start empty without it)", file=sys.stderr)
    return 1 if given else 2


def _replayed_cassettes(args: argparse.Namespace) -> list[str]:
    """The cassettes to replay: ``--cassettes``, and in auto mode what it
    recorded before into ``--cassette-dir`` (a restart replays it instead of
    recording it again)."""
    cassettes = list(args.cassettes)
    if args.mode == "auto" and Path(args.cassette_dir).is_dir():
        given = {Path(c).resolve() for c in cassettes}
        if Path(args.cassette_dir).resolve() not in given:
            cassettes.append(args.cassette_dir)
    return cassettes


def _record_target(args: argparse.Namespace) -> Path:
    name = args.cassette or f"serve-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.yaml"
    return Path(args.cassette_dir) / name


def banner(host: str, port: int, session: ReplaySession, timing: Timing, mode: str) -> str:
    """Where the server listens and how to point SDKs at it."""
    base = f"http://{host}:{port}"
    lines = [
        f"llmock-proxy serve: listening on {base} "
        f"({len(session)} interactions/fixtures, mode {mode}, timing {timing.name})",
        "Point your SDKs at it:",
    ]
    for name, suffix in SDK_BASE_URLS:
        lines.append(f"  export {name}={base}{suffix}")
    lines.append(f"  (google-genai: http_options={{'base_url': '{base}'}})")
    # Control requests that change state need the header (a web page cannot send it cross-origin).
    lines.append(f"Control: curl {base}/__llmock/health ; curl -X POST -H '{CONTROL_HEADER}: 1' {base}/__llmock/reset")
    lines.append(f"Per-test sessions: curl -X POST -H '{CONTROL_HEADER}: 1' {base}/__llmock/sessions -d '{{\"id\": \"t1\"}}', then "
                 f"the header x-llmock-session: t1 or the base URL {base}/__llmock/session/t1 (docs/replay.md)")
    return "\n".join(lines)
