"""llmock-proxy serve against aimock: requests/s on the same fixture file.

aimock (npm ``@copilotkit/aimock``, the version tests/aimock pins, installed
there with ``npm ci`` when missing) and ``llmock-proxy serve`` run as their
own processes on 127.0.0.1 and serve the same llmock fixture file. A lean
client (benchmarks/_load.py: raw asyncio, one keep-alive connection per
worker, next request sent from the callback that reads the answer, as wrk
does) sends the same request to each, at concurrency 1 and 32, for:

* ``chat``             non-streaming OpenAI chat, a fixture's text;
* ``chat, new each``   the same with a different question every time (the
                       fixture matches a part of it), so serve renders every
                       answer afresh instead of serving one it made before;
* ``chat stream``      the same as SSE (a longer text, chunked by both servers
                       into the same 20-character deltas);
* ``stream, new each`` the stream with a different question every time;
* ``anthropic``        non-streaming Anthropic messages;
* ``anthropic, new``   the same with a different question every time;
* ``recorded``         serve answers from a recorded cassette
                       (cassettes/examples/openai-chat.yaml: a streamed tool
                       call), aimock from a fixture giving the same tool call.

Every answer is checked before timing. ``--client wrk`` times with wrk
instead (when it is on PATH): one wrk thread, a new question each time from
a Lua counter where the endpoint asks one; the lean client still checks the
first answers. Servers are measured in interleaved rounds and each server's fastest round counts (the machine is shared, and
other work on it only ever slows a round down); the server's
own CPU time per request is printed as the figure other load on the machine
distorts least. The client costs about 25 us of CPU a request; on two cores
it still shares the machine with the server it measures, and at concurrency
1 every request waits a round trip through both, so the requests/s ratio
there is below the CPU ratio.

Targets: serve >= 1.5x aimock's requests/s where one request is sent again
and again (as wrk sends it: chat, chat stream, anthropic, recorded), and
never below aimock (>= 1.0x) with a new question each time, where serve
parses, matches and renders every request in Python and aimock does what it
always does. The exit status is 1 when a row misses its target.

    .venv/bin/python benchmarks/vs_aimock.py [--duration 2] [--rounds 3] [--client lean|wrk]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._load import connect, encode_request  # noqa: E402
from benchmarks._servers import Server, cpu_seconds, free_port, percentile  # noqa: E402
from tests.support.aimock import install, pinned_version  # noqa: E402

BIN = Path(sys.executable).parent
CASSETTE = ROOT / "cassettes" / "examples" / "openai-chat.yaml"
TARGET_RATIO = 1.5  # the same request again and again
NEW_QUESTION_TARGET = 1.0  # a new question each time
STREAMED = ("A replay proxy answers recorded requests, so the tests that use it never touch the network, "
            "never wait for a model, and never pay for tokens; every answer arrives the same way each time.")


def recorded_request() -> dict[str, Any]:
    """The first request of the example cassette, as recorded (serve matches it exactly)."""
    cassette = yaml.safe_load(CASSETTE.read_text())
    return dict(cassette["interactions"][0]["request"]["json"])


def fixture_file(recorded: dict[str, Any]) -> dict[str, Any]:
    question = next(m["content"] for m in reversed(recorded["messages"]) if m["role"] == "user")
    return {"fixtures": [
        {"match": {"userMessage": "Say hello"}, "response": {"content": "Hello there, friend! Nice to meet you."}},
        {"match": {"userMessage": "Stream a greeting"}, "response": {"content": STREAMED}},
        # aimock's answer to the recorded request (serve answers it from the cassette, tried first).
        {"match": {"userMessage": question, "toolName": "get_weather"},
         "response": {"toolCalls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}},
    ]}


@dataclass
class Endpoint:
    name: str
    path: str
    body: bytes
    headers: dict[str, str]
    check: Callable[[str, bytes], None]  # (server name, body) -> raises when the answer is wrong
    vary: bytes | None = None  # a new question each time: b"Say hello" becomes b"Say hello <n>"
    # Which question is next, over all rounds: a question asked in an earlier
    # round would be one serve has seen.
    asked: Iterator[int] = field(default_factory=itertools.count)

    def request(self, n: int | None) -> bytes:
        """The request's bytes; ``n``: which new question (None: as written)."""
        body = self.body.replace(self.vary, self.vary + b" %d" % n) if self.vary and n is not None else self.body
        return encode_request("POST", self.path, self.headers, body)


def _json_check(expected: str) -> Callable[[str, bytes], None]:
    def check(server: str, body: bytes) -> None:
        if expected not in json.dumps(json.loads(body)):
            raise RuntimeError(f"{server}: {expected!r} not in {body[:300]!r}")
    return check


def _sse_check(expected: str, recorded_id: str | None = None) -> Callable[[str, bytes], None]:
    def check(server: str, body: bytes) -> None:
        text = body.decode()
        if "data: [DONE]" not in text or expected not in text.replace('\\"', '"'):
            raise RuntimeError(f"{server}: not the expected stream: {body[:300]!r}")
        if server == "llmock-proxy serve" and recorded_id and recorded_id not in text:
            raise RuntimeError(f"{server}: answered the recorded request from elsewhere than the cassette")
    return check


def endpoints() -> list[Endpoint]:
    openai = {"content-type": "application/json", "authorization": "Bearer sk-test-bench"}
    anthropic = {"content-type": "application/json", "x-api-key": "sk-test-bench", "anthropic-version": "2023-06-01"}
    recorded = recorded_request()
    recorded_id = yaml.safe_load(CASSETTE.read_text())["interactions"][0]["response"]["events"][0]["data"]["id"]
    return [
        Endpoint("chat", "/v1/chat/completions", json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}).encode(),
            openai, _json_check("Nice to meet you.")),
        Endpoint("chat, new each", "/v1/chat/completions", json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}).encode(),
            openai, _json_check("Nice to meet you."), vary=b"Say hello"),
        Endpoint("chat stream", "/v1/chat/completions", json.dumps(
            {"model": "gpt-4o-mini", "stream": True,
             "messages": [{"role": "user", "content": "Stream a greeting"}]}).encode(),
            openai, _sse_check("chat.completion.chunk")),
        Endpoint("stream, new each", "/v1/chat/completions", json.dumps(
            {"model": "gpt-4o-mini", "stream": True,
             "messages": [{"role": "user", "content": "Stream a greeting"}]}).encode(),
            openai, _sse_check("chat.completion.chunk"), vary=b"Stream a greeting"),
        Endpoint("anthropic", "/v1/messages", json.dumps(
            {"model": "claude-sonnet-4-5", "max_tokens": 256,
             "messages": [{"role": "user", "content": "Say hello"}]}).encode(),
            anthropic, _json_check("Nice to meet you.")),
        Endpoint("anthropic, new", "/v1/messages", json.dumps(
            {"model": "claude-sonnet-4-5", "max_tokens": 256,
             "messages": [{"role": "user", "content": "Say hello"}]}).encode(),
            anthropic, _json_check("Nice to meet you."), vary=b"Say hello"),
        Endpoint("recorded", "/v1/chat/completions", json.dumps(recorded).encode(), openai,
                 _sse_check('"name":"get_weather"', recorded_id)),
    ]


# -- servers ------------------------------------------------------------------------------------------


def start_servers(workdir: Path, fixtures: Path) -> list[Server]:
    package = install()
    aimock_port, serve_port = free_port(), free_port()
    aimock = Server("aimock", ["node", str(package / "dist" / "cli.js"), "--host", "127.0.0.1",
                               "--port", str(aimock_port), "--fixtures", str(fixtures), "--log-level", "warn"],
                    aimock_port, workdir)
    serve = Server("llmock-proxy serve", [str(BIN / "llmock-proxy"), "serve", "--quiet", "--port", str(serve_port),
                                          "--timing", "instant", "--cassettes", str(CASSETTE),
                                          "--fixtures", str(fixtures)],
                   serve_port, workdir)
    return [aimock, serve]


# -- load ---------------------------------------------------------------------------------------------


async def load(port: int, endpoint: Endpoint, server: str, concurrency: int, duration: float) -> list[float]:
    """Latencies of the requests answered in ``duration`` seconds over
    ``concurrency`` keep-alive connections, each connection's first answer checked."""
    connections = [await connect("127.0.0.1", port) for _ in range(concurrency)]
    try:
        for connection in connections:
            answer = await connection.request(endpoint.request(None))
            if answer.status != 200:
                raise RuntimeError(f"{server} {endpoint.name}: {answer.status} {answer.body[:300]!r}")
            endpoint.check(server, answer.body)
        same = endpoint.request(None)
        make = (lambda: endpoint.request(next(endpoint.asked))) if endpoint.vary else (lambda: same)
        until = time.perf_counter() + duration
        await asyncio.gather(*(connection.run(make, until) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    return [latency for connection in connections for latency in connection.latencies]


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time per request




def measure(server: Server, endpoint: Endpoint, concurrency: int, duration: float, wrk: Path | None) -> Result:
    asyncio.run(load(server.port, endpoint, server.name, concurrency, 0.3))  # warm-up, first answers checked
    before = cpu_seconds(server.process.pid)
    if wrk is not None:
        count, p50, p99 = wrk_load(wrk, server.port, endpoint, concurrency, duration)
    else:
        latencies = asyncio.run(load(server.port, endpoint, server.name, concurrency, duration))
        count, p50, p99 = len(latencies), percentile(latencies, 0.5), percentile(latencies, 0.99)
    cpu = cpu_seconds(server.process.pid) - before
    return Result(count / duration, p50 * 1000, p99 * 1000, cpu / max(1, count) * 1e6)


def wrk_script(endpoint: Endpoint) -> str:
    """wrk's Lua for ``endpoint``: its request as written, or a new question each time."""
    headers = "".join(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n" for name, value in endpoint.headers.items())
    if endpoint.vary is None:
        return f'wrk.method = "POST"\nwrk.body = {json.dumps(endpoint.body.decode())}\n{headers}'
    before, after = endpoint.body.decode().split(endpoint.vary.decode(), 1)
    # Numbers from the client's own counter, above any the lean client asked.
    first = next(endpoint.asked) + 10_000_000
    return (f'wrk.method = "POST"\n{headers}local n = {first}\n'
            f'request = function()\n  n = n + 1\n  return wrk.format(nil, {json.dumps(endpoint.path)}, nil, '
            f'{json.dumps(before + endpoint.vary.decode() + " ")} .. n .. {json.dumps(after)})\nend\n')


def wrk_load(wrk: Path, port: int, endpoint: Endpoint, concurrency: int, duration: float) -> tuple[int, float, float]:
    """(answers, p50 s, p99 s) of a wrk run; fails on any answer but 200."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(endpoint))
    try:
        out = subprocess.run([str(wrk), "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--latency", "-s", script.name,
                              f"http://127.0.0.1:{port}{endpoint.path}"], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed answers from port {port} ({endpoint.name}):\n{out}")
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return count, _wrk_seconds(out, "50%"), _wrk_seconds(out, "99%")


def _wrk_seconds(out: str, percent: str) -> float:
    value, unit = re.search(rf"^\s+{percent}\s+([\d.]+)(us|ms|s)$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def fastest(results: list[Result]) -> Result:
    return max(results, key=lambda r: r.rps)


# -- main ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each server's fastest counts (default 3)")
    parser.add_argument("--endpoint", action="append", help="only these endpoints (repeatable)")
    parser.add_argument("--client", choices=("lean", "wrk"), default="lean",
                        help="what sends the timed requests: the lean asyncio client (default) or wrk from PATH")
    args = parser.parse_args(argv)
    wrk = None
    if args.client == "wrk":
        found = shutil.which("wrk")
        if found is None:
            parser.error("--client wrk: wrk is not on PATH (e.g. apt install wrk)")
        wrk = Path(found)
    chosen = [e for e in endpoints() if not args.endpoint or e.name in args.endpoint]
    print(f"serve vs aimock {pinned_version()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{args.rounds} x {args.duration:g} s per server, endpoint and concurrency, Python {sys.version.split()[0]}, "
          f"client {args.client}")
    results: dict[tuple[str, str, int], Result] = {}
    with tempfile.TemporaryDirectory(prefix="llmock-vs-aimock-") as tmp:
        workdir = Path(tmp)
        fixtures = workdir / "fixtures.json"
        fixtures.write_text(json.dumps(fixture_file(recorded_request())))
        servers = start_servers(workdir, fixtures)
        try:
            for endpoint in chosen:
                for concurrency in (1, 32):
                    rounds: dict[str, list[Result]] = {s.name: [] for s in servers}
                    for _ in range(args.rounds):
                        for server in servers:
                            rounds[server.name].append(measure(server, endpoint, concurrency, args.duration, wrk))
                    for server in servers:
                        results[(endpoint.name, server.name, concurrency)] = fastest(rounds[server.name])
        finally:
            for server in servers:
                server.stop()

    print(f"\n{'endpoint':<17}{'conc':>5}{'aimock req/s':>14}{'serve req/s':>13}{'ratio':>7}"
          f"{'p50 ms a/s':>14}{'CPU us/req a/s':>17}{'CPU ratio':>11}")
    missed = []
    for endpoint in chosen:
        target = NEW_QUESTION_TARGET if endpoint.vary is not None else TARGET_RATIO
        for concurrency in (1, 32):
            theirs = results[(endpoint.name, "aimock", concurrency)]
            ours = results[(endpoint.name, "llmock-proxy serve", concurrency)]
            ratio = ours.rps / theirs.rps
            if ratio < target:
                missed.append(f"{endpoint.name} c={concurrency} {ratio:.2f}x (target {target:g}x)")
            print(f"{endpoint.name:<17}{concurrency:>5}{theirs.rps:>14.0f}{ours.rps:>13.0f}{ratio:>6.2f}x"
                  f"{theirs.p50_ms:>7.2f}/{ours.p50_ms:<6.2f}{theirs.cpu_us:>9.0f}/{ours.cpu_us:<7.0f}"
                  f"{theirs.cpu_us / ours.cpu_us:>10.2f}x")
    rows = 2 * len(chosen)
    print(f"\ntargets: serve >= {TARGET_RATIO:g}x aimock's requests/s for a request sent again, "
          f">= {NEW_QUESTION_TARGET:g}x for a new question each time: met on {rows - len(missed)} of {rows} rows"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
