"""What recording costs a streaming client: time to first event and total time.

A local upstream sends a paced SSE stream (``--events`` chat-completion
chunks, ``--gap-ms`` apart). The same request is timed

* direct to the upstream,
* through a plain ``mitmdump`` (reverse mode, no addon): mitmproxy's own cost,
* through ``mitmdump -s addons/record.py`` (reverse mode): what users run,

interleaved run by run so background load hits all three alike, and the
medians are printed. Each setup keeps one warm connection, as an SDK client
does. Target: the recording proxy adds under 10 ms to the median time to
first event.

    .venv/bin/python benchmarks/record_overhead.py [--runs 15] [--events 20] [--gap-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llmock_proxy.cassette import store as cassette_store
from tests.harness.http import httpx  # noqa: E402  (httpx or httpx2, whichever the SDKs use)

MITMDUMP = Path(sys.executable).with_name("mitmdump")
_LISTENING = re.compile(r"listening at (?:\S+):(\d+)")


# -- the paced upstream --------------------------------------------------------


def _chunk(index: int) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-bench",
        "choices": [{"index": 0, "delta": {"content": f"token{index} "}, "finish_reason": None}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def make_upstream(events: int, gap: float) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for index in range(events):
            if index:
                await asyncio.sleep(gap)
            await response.write(_chunk(index))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@contextmanager
def running_upstream(events: int, gap: float) -> Iterator[int]:
    """Serve the upstream on its own thread and loop; yields its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(make_upstream(events, gap))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield int(state["port"])  # type: ignore[arg-type]
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)  # type: ignore[union-attr]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# -- mitmdump ------------------------------------------------------------------


@dataclass
class Mitmdump:
    process: subprocess.Popen[str]
    port: int
    workdir: Path
    output: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_mitmdump(upstream_port: int, workdir: Path, record: bool) -> Mitmdump:
    args = [
        str(MITMDUMP),
        "--listen-host", "127.0.0.1",
        "--listen-port", "0",
        "--mode", f"reverse:http://127.0.0.1:{upstream_port}",
        "--set", f"confdir={workdir / 'confdir'}",
    ]
    if record:
        args += [
            "-s", str(REPO / "addons" / "record.py"),
            "--set", f"llmock_cassette_dir={workdir / 'cassettes'}",
            "--set", "llmock_cassette=bench.yaml",
        ]
    process = subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("mitmdump exited early:\n" + "".join(seen))
        seen.append(line)
        found = _LISTENING.search(line)
        if found:
            dump = Mitmdump(process, int(found.group(1)), workdir, seen)
            # Keep draining its output so it never blocks on a full pipe.
            threading.Thread(target=lambda: [seen.append(x) for x in process.stdout], daemon=True).start()  # type: ignore[union-attr]
            return dump
    process.kill()
    raise RuntimeError("mitmdump did not report a listening port:\n" + "".join(seen))


# -- the client ----------------------------------------------------------------


@dataclass
class Timing:
    first: float  # ms to the first complete event
    last: float  # ms to the last event ([DONE])
    total: float  # ms to the end of the response


def time_stream(client: httpx.Client, base_url: str) -> Timing:
    body = {"model": "gpt-bench", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    first: float | None = None
    last: float | None = None
    buffered = b""
    with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            buffered += chunk
            if first is None and b"\n\n" in buffered:
                first = time.perf_counter()
            if last is None and b"[DONE]\n\n" in buffered:
                last = time.perf_counter()
    end = time.perf_counter()
    assert first is not None and last is not None, "the stream did not arrive whole"
    return Timing((first - started) * 1000, (last - started) * 1000, (end - started) * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--gap-ms", type=float, default=50.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llmock-bench-"))
    setups = ["direct", "mitmdump", "mitmdump + record"]
    results: dict[str, list[Timing]] = {name: [] for name in setups}
    dumps: list[Mitmdump] = []
    try:
        with running_upstream(args.events, args.gap_ms / 1000) as upstream_port:
            (workdir / "plain").mkdir()
            (workdir / "record").mkdir()
            plain = start_mitmdump(upstream_port, workdir / "plain", record=False)
            dumps.append(plain)
            recording = start_mitmdump(upstream_port, workdir / "record", record=True)
            dumps.append(recording)
            urls = {
                "direct": f"http://127.0.0.1:{upstream_port}",
                "mitmdump": f"http://127.0.0.1:{plain.port}",
                "mitmdump + record": f"http://127.0.0.1:{recording.port}",
            }
            clients = {name: httpx.Client(timeout=30) for name in setups}
            for name in setups:  # warm-up: connections, certificates, imports
                time_stream(clients[name], urls[name])
            for _ in range(args.runs):
                for name in setups:
                    results[name].append(time_stream(clients[name], urls[name]))
            for client in clients.values():
                client.close()
    finally:
        for dump in dumps:
            dump.stop()

    cassette = workdir / "record" / "cassettes" / "bench.yaml"
    recorded = 0
    if cassette.exists():

        recorded = len(cassette_store.load(cassette).interactions)
    shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"paced SSE stream: {args.events} events {args.gap_ms:g} ms apart, "
        f"{args.runs} runs per setup, medians (min-max)"
    )
    columns = ("first", "last", "total")
    print(f"{'setup':<20}" + "".join(f"{name + ' event ms' if name != 'total' else 'end of body ms':>26}" for name in columns))
    medians: dict[str, dict[str, float]] = {}
    for name in setups:
        row = f"{name:<20}"
        medians[name] = {}
        for column in columns:
            values = [getattr(t, column) for t in results[name]]
            medians[name][column] = statistics.median(values)
            row += f"{medians[name][column]:>10.1f} ({min(values):6.1f}-{max(values):6.1f})"
        print(row)
    direct, recorded_ = medians["direct"], medians["mitmdump + record"]
    print(
        "recording proxy overhead vs direct (medians): "
        f"first event {recorded_['first'] - direct['first']:+.1f} ms (target < 10 ms), "
        f"last event {recorded_['last'] - direct['last']:+.1f} ms, "
        f"end of body {recorded_['total'] - direct['total']:+.1f} ms"
    )
    print(f"interactions recorded: {recorded} of {args.runs + 1}")
    return 0 if recorded == args.runs + 1 else 1


if __name__ == "__main__":
    sys.exit(main())
