"""``llmock-proxy serve``: the replay engine as a plain base-URL server.

No mitmproxy in the path: clients are pointed at it with their base-URL
settings (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, ...), and load tests
get the engine's full speed. Same cassettes, fixtures, matcher and timing as
the replay addon.

Misses: ``--mode replay`` (default) answers them with the provider's error
envelope (status 421, near-miss report); ``passthrough`` forwards them to
``--upstream``; ``auto`` forwards them and records the exchange through the
recorder into ``--cassette-dir``, and replays it from then on.
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
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Awaitable
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from ..cassette import CassetteError, Interaction, Request
from ..engine import ReplayEngine, Timing, TimingError, log
from ..matcher import MatchSpecError
from ..recorder import describe
from ..redact import Redactor
from ..session import Miss, ReplaySession

DEFAULT_PORT = 4010
MODES = ("replay", "auto", "passthrough")

# Hop-by-hop headers are the proxy's own business; host belongs to the upstream.
_NOT_FORWARDED = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "content-length"}
)
_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "content-length"}
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
        description=__doc__.split("\n\n")[0] if __doc__ else None,
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
        help="what a miss gets: replay = provider-shaped 421 error (default), "
        "passthrough = forwarded to --upstream, auto = forwarded and recorded",
    )
    parser.add_argument(
        "--upstream", metavar="URL",
        help="base URL misses are forwarded to in passthrough/auto mode (e.g. https://api.openai.com)",
    )
    parser.add_argument(
        "--cassette-dir", default="cassettes", metavar="DIR",
        help="where auto mode writes new recordings (default: cassettes)",
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
    parser.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    parser.set_defaults(handler=run)


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
        session = ReplaySession.load(args.cassettes, args.fixtures, name="serve")
    except (CassetteError, MatchSpecError) as exc:
        print(f"llmock-proxy serve: {exc}", file=sys.stderr)
        return 1
    # Everything loaded so far lives as long as the server: keep it out of
    # the cyclic garbage collector's full passes (fewer latency spikes).
    gc.freeze()
    try:
        asyncio.run(_serve(args, session, timing, redactor))
    except OSError as exc:
        print(f"llmock-proxy serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(args: argparse.Namespace, session: ReplaySession, timing: Timing, redactor: Redactor) -> None:
    forwarder = None
    if args.mode != "replay":
        forwarder = Forwarder(
            session,
            upstream=args.upstream,
            record_to=_record_target(args) if args.mode == "auto" else None,
            redactor=redactor,
        )
    engine = ReplayEngine(
        session, timing=timing, mode=args.mode, miss_handler=forwarder.handle if forwarder else None
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


async def _sent(writing: Awaitable[Any]) -> bool:
    """Whether a write to the client went out (False: the client is gone)."""
    try:
        await writing
    except ConnectionResetError:
        return False
    return True


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
    lines.append(f"Control: curl {base}/__llmock/health ; curl -X POST {base}/__llmock/reset")
    return "\n".join(lines)


# -- misses in passthrough / auto mode ----------------------------------------------


@dataclass
class Forwarder:
    """Sends misses to ``upstream`` and streams the answer back; with
    ``record_to``, records the exchange through the recorder and makes it
    answerable by the session."""

    session: ReplaySession
    upstream: str
    record_to: Path | None = None
    redactor: Redactor = field(default_factory=Redactor.default)
    _client: ClientSession | None = field(default=None, init=False)
    _recorder: Any = field(default=None, init=False)
    _writer: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        if self.record_to is not None:
            from ..cassette_writer import CassetteWriter
            from ..recorder import Recorder

            self._recorder = Recorder(redactor=self.redactor)
            self._writer = CassetteWriter(redactor=self.redactor)

    async def handle(
        self, request: web.Request, recorded: Request, miss: Miss, arrival: float
    ) -> web.StreamResponse:
        if self._client is None:
            # Bodies pass through still content-encoded; the recorder decodes its copy.
            self._client = ClientSession(auto_decompress=False, timeout=ClientTimeout(total=None))
        url = self.upstream + request.path_qs
        body = await request.read()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        recording = self._recorder.start(request.method, url, headers, body) if self._recorder else None
        try:
            upstream = await self._client.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except Exception as exc:
            if recording is not None:
                await self._save(recording.fail(f"{type(exc).__name__}: {exc}"))
            return web.json_response({"error": f"llmock-proxy: upstream {url} failed: {exc}"}, status=502)
        async with upstream:
            head = list(upstream.raw_headers)
            pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head]
            response = web.StreamResponse(status=upstream.status)
            for k, v in pairs:
                if k.lower() not in _NOT_RETURNED:
                    response.headers.add(k, v)
            teeing = recording.response_started(upstream.status, pairs) if recording else False
            whole: list[bytes] = []
            client_gone = not await _sent(response.prepare(request))
            try:
                async for chunk in upstream.content.iter_any():
                    if client_gone:
                        break
                    if recording is not None:
                        recording.feed(chunk) if teeing else whole.append(chunk)
                    client_gone = not await _sent(response.write(chunk))
            except Exception as exc:  # the upstream broke off mid-body
                log.warning("upstream %s broke off: %s: %s", url, type(exc).__name__, exc)
                if recording is not None:
                    await self._save(recording.fail(f"{type(exc).__name__}: {exc}"))
                if request.transport is not None:
                    request.transport.close()  # the client sees the body end early, as it did
                return response
            client_gone = client_gone or not await _sent(response.write_eof())
        if client_gone:
            # What arrived before the client hung up is recorded as incomplete.
            log.info("client left %s %s while it was forwarded", request.method, request.path)
            if recording is not None:
                await self._save(recording.fail("Client disconnected."))
            return response
        if recording is not None:
            await self._save(recording.finish() if teeing else recording.finish(b"".join(whole)))
        return response

    async def _save(self, interaction: Interaction) -> None:
        assert self._writer is not None and self.record_to is not None
        target = self.record_to
        try:
            # Off the loop: the writer locks and fsyncs.
            await asyncio.to_thread(self._writer.append, target, [interaction])
        except Exception as exc:
            log.error("llmock: NOT recorded %s: cannot write %s: %s", interaction.request.url, target, exc)
            return
        log.info("llmock: recorded %s -> %s", describe(interaction), target)
        if interaction.response is not None:
            try:
                self.session.add_interaction(interaction, f"{target}: recorded on miss")
            except (CassetteError, MatchSpecError) as exc:
                log.warning("llmock: recorded %s but cannot replay it: %s", interaction.request.url, exc)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
