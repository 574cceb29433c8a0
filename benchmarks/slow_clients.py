"""Slow clients hold no connection for long: figures for issue #13 (part 6).

``--slow`` (1,000) slowloris connections are opened against each server,
half of them never finishing their request head, half sending a body shorter
than their Content-Length, each dribbling one more byte every ``--dribble``
seconds (so no inactivity timeout ever fires). Meanwhile ``--others``
ordinary clients ask (``--parallel`` at a time, a new connection each); then
the slow connections are watched until the server closes them.

Servers: ``llmock-proxy serve`` (its request deadline is 60 s), the replay
addon and the record addon (``mitmdump -s addons/...`` in reverse mode,
``--set llmock_request_timeout=--deadline``; the record addon forwards to the
fake OpenAI of tests/fakes/). Each is started with a soft open-file limit of
``--soft-limit`` (1,024, a common default) which it raises itself at start.

Printed per server: the soft open-file limit it runs with, other clients
answered N/N and their latency p50/p95, slow connections closed after the
deadline X/N (answered 408 among them) and when, and the server's open file
descriptors before, while the slow clients hang on, and after they are cut.

    .venv/bin/python benchmarks/slow_clients.py [--slow 1000] [--deadline 15] [--only replay]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._servers import free_port, percentile  # noqa: E402
from benchmarks.soak import BIN, Upstream, ask, expected_answer  # noqa: E402
from llmock_proxy.fdlimit import raise_open_file_limit  # noqa: E402
from tests.harness.mitmdump import MitmdumpProcess  # noqa: E402

SERVE_DEADLINE = 60.0  # llmock_proxy.replay.http_server.REQUEST_TIMEOUT
PROMPT = "ping"
FIXTURES = {"fixtures": [{"match": {"userMessage": PROMPT}, "response": {"content": "pong"}}]}
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@dataclass
class SlowConnection:
    opened: float = 0.0
    closed: float | None = None  # seconds after it opened
    answer: bytes = b""
    error: str | None = None


@dataclass
class Figures:
    soft_limit: int | None = None
    fds: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    asked: int = 0
    latencies: list[float] = field(default_factory=list)
    slow: list[SlowConnection] = field(default_factory=list)


# -- the slow clients -----------------------------------------------------------------------------------


async def slowloris(port: int, index: int, dribble: float, stop: asyncio.Event, conn: SlowConnection) -> None:
    """Half never finish the head, half never finish the body; one byte more every ``dribble`` s."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        conn.error = f"{type(exc).__name__}: {exc}"
        return
    conn.opened = time.monotonic()
    lying = index % 2 == 0
    writer.write(HEAD + (b"Content-Length: 100000\r\n\r\n{" if lying else b"X-Dribble: a"))

    async def dribble_bytes() -> None:
        while not stop.is_set():
            await asyncio.sleep(dribble)
            try:
                writer.write(b" " if lying else b"a")
                await writer.drain()
            except (OSError, RuntimeError):
                return

    dribbling = asyncio.create_task(dribble_bytes())
    try:
        while not stop.is_set():
            read = asyncio.ensure_future(reader.read(65536))
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                return
            stopped.cancel()
            data = read.result()
            if not data:
                conn.closed = time.monotonic() - conn.opened
                return
            conn.answer += data
    except OSError:  # reset by the server: closed too
        conn.closed = time.monotonic() - conn.opened
    finally:
        dribbling.cancel()
        writer.transport.abort()


async def open_slow(port: int, count: int, dribble: float, stop: asyncio.Event) -> tuple[list[SlowConnection], list[asyncio.Task[None]]]:
    """``count`` slow connections, opened 50 at a time (a listen backlog is ~100)."""
    conns = [SlowConnection() for _ in range(count)]
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, count, 50):
        batch = [asyncio.create_task(slowloris(port, i, dribble, stop, conns[i])) for i in range(start, min(count, start + 50))]
        tasks.extend(batch)
        await asyncio.sleep(0.05)
    return conns, tasks


async def others(port: int, count: int, parallel: int, expected: str, timeout: float) -> tuple[int, list[float]]:
    semaphore = asyncio.Semaphore(parallel)

    async def one() -> tuple[bool, float]:
        async with semaphore:
            answer = await ask(port, PROMPT, "body", timeout=timeout)
            return answer.error is None and answer.status == 200 and answer.text == expected, answer.ms or 0.0

    results = await asyncio.gather(*(one() for _ in range(count)))
    return sum(ok for ok, _ in results), [ms for ok, ms in results if ok]


async def run_against(port: int, pid: int, args: argparse.Namespace, deadline: float, expected: str) -> Figures:
    figures = Figures(soft_limit=soft_limit_of(pid))
    figures.fds["before"] = open_fds(pid)
    stop = asyncio.Event()
    conns, tasks = await open_slow(port, args.slow, args.dribble, stop)
    await asyncio.sleep(1.0)
    figures.fds["held"] = open_fds(pid)
    figures.answered, figures.latencies = await others(port, args.others, args.parallel, expected, args.ask_timeout)
    figures.asked = args.others
    # Watch until the deadline, a sweep and a margin have passed for the last one opened.
    wait_until = max((c.opened for c in conns if c.opened), default=time.monotonic()) + deadline * 1.25 + 5
    while time.monotonic() < wait_until and any(c.closed is None and c.error is None for c in conns):
        await asyncio.sleep(0.5)
    figures.fds["after"] = open_fds(pid)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    figures.slow = conns
    return figures


# -- the servers ----------------------------------------------------------------------------------------


@contextmanager
def soft_open_file_limit(limit: int):  # type: ignore[no-untyped-def]
    """Processes started inside inherit a soft limit of ``limit``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def soft_limit_of(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_serve(workdir: Path, fixtures: Path) -> tuple[int, int, Callable[[], Any]]:
    """serve, its log in a file: a thousand 408 lines fill a pipe nobody reads, and
    a process writing to a full pipe stops (benchmarks._servers.Server pipes stderr)."""
    port = free_port()
    command = [str(BIN / "llmock-proxy"), "serve", "--quiet", "--port", str(port), "--fixtures", str(fixtures)]
    with open(workdir / "serve.log", "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {(workdir / 'serve.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not listen on {port}") from None
            time.sleep(0.05)

    def stop() -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    return port, process.pid, stop


def start_addon(workdir: Path, script: str, mode: str, options: dict[str, Any]) -> tuple[int, int, Callable[[], Any]]:
    dump = MitmdumpProcess(
        confdir=workdir / f"confdir-{script}", mode=mode, scripts=[ROOT / "addons" / f"{script}.py"],
        options=options, use_router=False, cwd=workdir,
    ).start()
    assert dump.port is not None
    return dump.port, dump.pid, dump.stop


# -- main -----------------------------------------------------------------------------------------------


def report(name: str, deadline: float, figures: Figures, slow: int) -> None:
    closed = [c for c in figures.slow if c.closed is not None]
    after = [c for c in closed if c.closed is not None and c.closed >= deadline]
    answered_408 = sum(1 for c in closed if c.answer.startswith(b"HTTP/1.1 408 "))
    refused = sum(1 for c in figures.slow if c.error is not None)
    lat = figures.latencies
    latency = f"{statistics.median(lat):6.1f}/{percentile(lat, 0.95):6.1f} ms" if lat else "     -/-     "
    when = sorted(c.closed for c in closed if c.closed is not None)
    closed_at = f"{statistics.median(when):5.1f}/{when[-1]:5.1f} s" if when else "    -/-    "
    fds = figures.fds
    print(f"{name:<14} {deadline:>5.0f} s  {figures.soft_limit!s:>6}  {figures.answered:>4}/{figures.asked:<4} {latency}  "
          f"{len(after):>5}/{slow:<5} ({answered_408:>4} 408, {refused} refused)  {closed_at}  "
          f"{fds.get('before', 0):>5} {fds.get('held', 0):>5} {fds.get('after', 0):>5}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--slow", type=int, default=1000, help="slowloris connections held open (default 1000)")
    parser.add_argument("--deadline", type=int, default=15,
                        help="the addons' llmock_request_timeout in seconds (default 15; serve's is 60)")
    parser.add_argument("--dribble", type=float, default=5.0, help="seconds between a slow client's bytes (default 5)")
    parser.add_argument("--others", type=int, default=100, help="ordinary requests meanwhile (default 100)")
    parser.add_argument("--parallel", type=int, default=5, help="ordinary requests at a time (default 5)")
    parser.add_argument("--ask-timeout", type=float, default=10.0,
                        help="seconds an ordinary request may take before it counts as unanswered (default 10)")
    parser.add_argument("--soft-limit", type=int, default=1024, help="soft open-file limit the servers start with")
    parser.add_argument("--only", choices=("serve", "replay", "record"), action="append",
                        help="run only these servers (repeatable; default all three)")
    args = parser.parse_args(argv)
    raise_open_file_limit()  # this process holds every slow connection
    only = args.only or ["serve", "replay", "record"]
    print(f"{args.slow} slowloris connections (a byte every {args.dribble:g} s), {args.others} other requests, "
          f"{args.parallel} at a time; servers start with a soft open-file limit of {args.soft_limit}")
    print(f"{'server':<14} {'deadline':>7}  {'nofile':>6}  {'others':^9} {'p50/p95 latency':^15}  "
          f"{'closed after the deadline':^32}  {'closed p50/max':^14}  {'fds: before held after':>22}")
    with tempfile.TemporaryDirectory(prefix="llmock-slow-") as tmp:
        workdir = Path(tmp)
        fixtures = workdir / "fixtures.json"
        fixtures.write_text(json.dumps(FIXTURES))
        upstream = Upstream(0.0, 0.0, 3) if "record" in only else None
        addon_options = {"llmock_request_timeout": args.deadline, "llmock_idle_timeout": args.deadline}
        try:
            for name in only:
                with soft_open_file_limit(args.soft_limit):
                    if name == "serve":
                        port, pid, stop = start_serve(workdir, fixtures)
                    elif name == "replay":
                        port, pid, stop = start_addon(workdir, "replay", "reverse:http://127.0.0.1:9", {
                            "llmock_fixtures": str(fixtures), "llmock_cassette_dir": "", **addon_options})
                    else:
                        assert upstream is not None
                        port, pid, stop = start_addon(workdir, "record", f"reverse:{upstream.url}", {
                            "llmock_cassette_dir": str(workdir / "cassettes"), **addon_options})
                deadline = SERVE_DEADLINE if name == "serve" else float(args.deadline)
                expected = "pong" if name != "record" else expected_answer(PROMPT, 3)
                try:
                    figures = asyncio.run(run_against(port, pid, args, deadline, expected))
                finally:
                    stop()
                label = {"serve": "serve", "replay": "replay addon", "record": "record addon"}[name]
                report(label, deadline, figures, args.slow)
        finally:
            if upstream is not None:
                upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
