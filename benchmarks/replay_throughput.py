"""Replay throughput and stream timing accuracy.

Non-streaming replay of one OpenAI chat exchange, requests/s and p50/p99
latency at concurrency 1 and 32, for:

* ``bare aiohttp``      a handler returning the same bytes: the ceiling;
* ``llmock-proxy serve`` the replay engine as a base-URL server;
* ``replay addon``       ``mitmdump -s addons/replay.py`` (reverse mode);
* ``--server-replay``    mitmdump's own server replay of the same exchange;
* ``--server-replay + -s`` the same with an empty ``-s`` script loaded, for
  context: what mitmproxy charges any script addon per request.

Every server runs as its own process; the load generator is the minimal
keep-alive HTTP/1.1 client of benchmarks/_load.py (prebuilt request bytes,
the next request sent from the callback that reads the answer, as wrk does)
so the client costs as little as possible on a small machine.
Every answer is checked against the expected body before timing starts. The
targets are measured in interleaved rounds and the median round is reported,
so a busy shared machine weighs on all of them alike; the server's own CPU
time per request is printed too, as the load-independent figure.

Then SSE timing accuracy: a recorded stream with uneven gaps (5-40 ms) is
replayed with ``--timing recorded`` by serve and by the addon, and
|replayed gap - recorded gap| is reported (p50/p95/max).

Targets: serve >= 60% of bare aiohttp; addon >= --server-replay; timing
p95 < 5 ms.

    .venv/bin/python benchmarks/replay_throughput.py [--duration 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._load import connect  # noqa: E402
from benchmarks._servers import Server, cpu_seconds, free_port, percentile  # noqa: E402
from llmock_proxy.canonical import Summary  # noqa: E402
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import (
    Cassette,
    Interaction,
    Payload,
    Request,
    Response,
    SSEEvent,
)
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.catalog import identify
from llmock_proxy.wire import SSEDecoder  # noqa: E402

BIN = Path(sys.executable).parent
TARGET = "https://api.openai.com"
PATH = "/v1/chat/completions"
STREAM_GAPS_MS = [5, 10, 20, 40, 7, 15, 30, 12] * 5  # 40 events, uneven on purpose

BARE_SERVER = """
import sys
from aiohttp import web
port, body_file, content_type = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = open(body_file, "rb").read()
async def handle(request):
    await request.read()
    return web.Response(body=body, headers={"content-type": content_type})
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
"""


# -- the exchange -----------------------------------------------------------------------------------


@dataclass
class Exchange:
    request_body: bytes
    response_body: bytes
    content_type: str
    cassette: Path
    stream_cassette: Path
    flows: Path


def build_exchange(workdir: Path) -> Exchange:
    body = {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Give me one sentence about replay proxies."},
    ]}
    request = Request("POST", TARGET + PATH, {"content-type": "application/json"}, Payload.json(body))
    provider = identify(request.method, request.url, request.headers)
    canonical = provider.canonical(request)
    summary = Summary(text="A replay proxy answers recorded requests so tests never touch the network.",
                      finish_reason="stop", usage={"prompt_tokens": 20, "completion_tokens": 15, "total_tokens": 35})
    response = provider.render(summary, canonical, stream=False)
    interaction = Interaction(request, response, match=derive_match(canonical), summary=summary.to_dict())
    cassette = workdir / "bench.yaml"
    cassette.write_text(yamlio.dumps(Cassette([interaction]).to_dict()))

    stream_body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Stream it."}]}
    stream_request = Request("POST", TARGET + PATH, {"content-type": "application/json"}, Payload.json(stream_body))
    events, t = [], 0.0
    for i, gap in enumerate(STREAM_GAPS_MS):
        t += gap
        events.append(SSEEvent(data={"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1,
                                     "model": "gpt-4o-mini",
                                     "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]},
                               t=t))
    events.append(SSEEvent(data="[DONE]", t=t))
    stream_response = Response(200, {"content-type": "text/event-stream"}, events=events)
    stream_canonical = provider.canonical(stream_request)
    stream_interaction = Interaction(stream_request, stream_response, match=derive_match(stream_canonical))
    stream_cassette = workdir / "stream.yaml"
    stream_cassette.write_text(yamlio.dumps(Cassette([stream_interaction]).to_dict()))

    flows = workdir / "bench.flows"
    write_flow_file(flows, request, response)
    return Exchange(
        request_body=request.body.to_bytes(),  # type: ignore[union-attr]
        response_body=response.body.to_bytes(),  # type: ignore[union-attr]
        content_type=response.headers.get("content-type", "application/json"),
        cassette=cassette,
        stream_cassette=stream_cassette,
        flows=flows,
    )


def write_flow_file(path: Path, request: Request, response: Response) -> None:
    """The same exchange as a mitmproxy flow file, for ``--server-replay``."""
    from mitmproxy import connection, http, io

    now = time.time()
    flow = http.HTTPFlow(
        connection.Client(peername=("127.0.0.1", 50000), sockname=("127.0.0.1", 8080), timestamp_start=now),
        connection.Server(address=("api.openai.com", 443)),
    )
    flow.request = http.Request.make("POST", request.url, request.body.to_bytes(), request.headers)  # type: ignore[union-attr]
    flow.response = http.Response.make(response.status, response.body.to_bytes(), response.headers)  # type: ignore[union-attr]
    with open(path, "wb") as fh:
        io.FlowWriter(fh).add(flow)


# -- servers ------------------------------------------------------------------------------------------


def mitmdump(port: int, confdir: Path, *args: str) -> list[str]:
    return [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
            "--mode", f"reverse:{TARGET}", "--set", f"confdir={confdir}", *args]


def write_empty_script(workdir: Path) -> Path:
    """A do-nothing ``-s`` script: what mitmproxy charges any script addon
    per request (its hooks are looked up through the script wrapper)."""
    path = workdir / "empty_addon.py"
    path.write_text("class Nothing:\n    def request(self, flow):\n        pass\n\naddons = [Nothing()]\n")
    return path


def start_server(name: str, ex: Exchange, workdir: Path) -> Server:
    port = free_port()
    if name == "bare aiohttp":
        body_file = workdir / "body.bin"
        body_file.write_bytes(ex.response_body)
        command = [sys.executable, "-c", BARE_SERVER, str(port), str(body_file), ex.content_type]
    elif name == "llmock-proxy serve":
        command = [str(BIN / "llmock-proxy"), "serve", "--quiet", "--port", str(port),
                   "--cassettes", str(ex.cassette), str(ex.stream_cassette), "--timing", "recorded"]
    elif name == "replay addon":
        command = mitmdump(port, workdir / "confdir", "-s", str(ROOT / "addons" / "replay.py"),
                           "--set", f"llmock_cassettes={ex.cassette}",
                           "--set", f"llmock_cassettes={ex.stream_cassette}",
                           "--set", "llmock_cassette_dir=", "--set", "llmock_timing=recorded")
    elif name in ("--server-replay", "--server-replay + -s"):
        script = [] if name == "--server-replay" else ["-s", str(write_empty_script(workdir))]
        command = mitmdump(port, workdir / "confdir", *script, "--server-replay", str(ex.flows),
                           "--set", "server_replay_reuse=true", "--set", "connection_strategy=lazy",
                           "--set", "server_replay_extra=kill")
    else:
        raise ValueError(name)
    return Server(name, command, port, ROOT)


# -- load ---------------------------------------------------------------------------------------------


def raw_request(body: bytes) -> bytes:
    head = (f"POST {PATH} HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer sk-test-bench\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def load(port: int, request: bytes, expected: bytes, concurrency: int, duration: float) -> list[float]:
    """Latencies over ``concurrency`` keep-alive connections (benchmarks/_load.py),
    each connection's first answer checked against ``expected``."""
    connections = [await connect("127.0.0.1", port) for _ in range(concurrency)]
    try:
        for connection in connections:
            answer = await connection.request(request)
            if answer.status != 200 or json.loads(answer.body) != json.loads(expected):
                raise RuntimeError(f"port {port}: unexpected answer {answer.status}: {answer.body[:200]!r}")
        until = time.perf_counter() + duration
        await asyncio.gather(*(connection.run(lambda: request, until) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    return [latency for connection in connections for latency in connection.latencies]


@dataclass
class Result:
    name: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time per request




def measure(server: Server, ex: Exchange, concurrency: int, duration: float) -> Result:
    request = raw_request(ex.request_body)
    asyncio.run(load(server.port, request, ex.response_body, concurrency, 0.3))  # warm-up
    cpu_before = cpu_seconds(server.process.pid)
    latencies = asyncio.run(load(server.port, request, ex.response_body, concurrency, duration))
    cpu = cpu_seconds(server.process.pid) - cpu_before
    return Result(server.name, concurrency, len(latencies) / duration,
                  percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000,
                  cpu / len(latencies) * 1e6)


def median_result(results: list[Result]) -> Result:
    """The round with the median throughput: the machine is shared, and
    interleaved rounds let every target see the same background load."""
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


# -- stream timing -----------------------------------------------------------------------------------


def stream_gap_errors(port: int, runs: int) -> tuple[list[float], list[float]]:
    """|replayed gap - recorded gap| in ms for every gap of ``runs`` replays,
    and how late the first event came relative to its recorded offset."""
    from tests.harness.http import httpx  # httpx or httpx2, whichever the SDKs use

    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Stream it."}]}
    errors: list[float] = []
    first_late: list[float] = []
    with httpx.Client(trust_env=False, timeout=30) as client:
        for _ in range(runs):
            decoder = SSEDecoder()
            arrivals: list[float] = []
            start = time.perf_counter()
            with client.stream("POST", f"http://127.0.0.1:{port}{PATH}", json=body,
                               headers={"authorization": "Bearer sk-test-bench"}) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"stream replay answered {response.status_code}")
                for chunk in response.iter_raw():
                    now = time.perf_counter()
                    arrivals.extend(now for e in decoder.feed(chunk) if e.data != "[DONE]")
            first_late.append((arrivals[0] - start) * 1000 - STREAM_GAPS_MS[0])
            for i in range(1, len(arrivals)):
                errors.append(abs((arrivals[i] - arrivals[i - 1]) * 1000 - STREAM_GAPS_MS[i]))
    return errors, first_late


# -- main ---------------------------------------------------------------------------------------------

# The last one is context, not a target: --server-replay plus an empty -s
# script shows the per-request cost of being a script addon at all.
NAMES = ["bare aiohttp", "llmock-proxy serve", "replay addon", "--server-replay", "--server-replay + -s"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target; the median counts (default 3)")
    parser.add_argument("--stream-runs", type=int, default=8, help="stream replays per target (default 8)")
    args = parser.parse_args(argv)
    print(f"replay throughput: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{args.rounds} x {args.duration:g} s per target and concurrency, Python {sys.version.split()[0]}")
    results: dict[tuple[str, int], Result] = {}
    timing: dict[str, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="llmock-bench-") as tmp:
        workdir = Path(tmp)
        ex = build_exchange(workdir)
        servers = [start_server(name, ex, workdir) for name in NAMES]
        try:
            for concurrency in (1, 32):
                rounds: dict[str, list[Result]] = {name: [] for name in NAMES}
                for _ in range(args.rounds):
                    for server in servers:
                        rounds[server.name].append(measure(server, ex, concurrency, args.duration))
                for name in NAMES:
                    results[(name, concurrency)] = median_result(rounds[name])
            for server in servers:
                if server.name in ("llmock-proxy serve", "replay addon"):
                    timing[server.name] = stream_gap_errors(server.port, args.stream_runs)
        finally:
            for server in servers:
                server.stop()

    print(f"\n{'target':<22}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'server CPU us/req':>19}")
    for (name, concurrency), r in sorted(results.items(), key=lambda item: (item[0][1], NAMES.index(item[0][0]))):
        print(f"{name:<22}{concurrency:>5}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.cpu_us:>19.0f}")

    print(f"\nSSE timing, |replayed gap - recorded gap| over {len(STREAM_GAPS_MS) - 1} gaps x {args.stream_runs} runs")
    print(f"{'target':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'1st late ms':>13}")
    for name, (errors, first_late) in timing.items():
        print(f"{name:<22}{percentile(errors, 0.5):>9.2f}{percentile(errors, 0.95):>9.2f}{max(errors):>9.2f}"
              f"{statistics.median(first_late):>13.2f}")

    print("\ntargets")
    ok = True
    for concurrency in (1, 32):
        serve, bare = results[("llmock-proxy serve", concurrency)], results[("bare aiohttp", concurrency)]
        ratio = serve.rps / bare.rps
        passed = ratio >= 0.6
        ok &= passed
        print(f"  serve >= 60% of bare aiohttp at c={concurrency}: {ratio:.0%} {'ok' if passed else 'MISSED'}")
        addon, server_replay = results[("replay addon", concurrency)], results[("--server-replay", concurrency)]
        passed = addon.rps >= server_replay.rps
        ok &= passed
        print(f"  addon >= --server-replay at c={concurrency}: {addon.rps:.0f} vs {server_replay.rps:.0f} req/s "
              f"{'ok' if passed else 'MISSED'}")
    for name, (errors, _) in timing.items():
        p95 = percentile(errors, 0.95)
        passed = p95 < 5.0
        ok &= passed
        print(f"  {name} SSE gap error p95 < 5 ms: {p95:.2f} ms {'ok' if passed else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
