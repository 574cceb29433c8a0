"""Recording under load and under crashes: figures for issue #13's parts 6 and 7.

The upstream is the fake OpenAI of tests/fakes/ in a process of its own,
answering every chat completion with a text made from its prompt, streamed
word by word with ``first_event_delay`` and ``event_delay`` of ``--gap-ms``
(Script pacing). Every server under test runs as a process of its own;
the clients are a lean asyncio HTTP/1.1 reader in this process, one new
connection per request as parallel clients open them.

1. **Record under load**: ``--streams`` parallel paced streams, in
   ``--rounds`` interleaved rounds, direct to the upstream, through a plain
   streaming ``mitmdump`` (no addon: mitmproxy's own cost) and through
   ``mitmdump -s addons/record.py``. Printed: client time to first event
   (TTFT) and to the end of the stream p50/p95 per setup, answers correct,
   interactions recorded vs sent, and the recorded ``t`` of first events and
   of the gaps between events against the upstream's real pacing.
2. **Replay under load**: the recorded cassette answered to the same
   parallel streams by the replay addon and by ``llmock-proxy serve``
   (``recorded`` timing): answers correct, TTFT p50/p95.
3. **Durability lag**: sequential requests through the record addon (a
   plain body, a stream read to its end, a stream the client drops at
   ``[DONE]`` as openai-python does); for each, when the cassette file
   holds the interaction relative to when the client had its answer
   (negative: before).
4. **SIGKILL**: ``--kills`` times, a recording mitmdump appending to an
   existing cassette of about ``--seed-mb`` MB is killed at a random moment
   while ``--kill-clients`` clients keep asking (plain bodies, streams read to
   the end, streams dropped at ``[DONE]``); then the cassette must load and
   hold every interaction a client had its answer for.

Goal: 0 lost, 0 unloadable, recording TTFT within a few ms of direct.

    .venv/bin/python benchmarks/soak.py [--streams 100] [--rounds 3] [--kills 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._servers import Server, cpu_seconds, free_port, percentile  # noqa: E402
from llmock_proxy.cassette import store as cassette_store  # noqa: E402
from llmock_proxy.cassette.model import Cassette, Interaction  # noqa: E402
from llmock_proxy.errors import CassetteError  # noqa: E402
from tests.harness.mitmdump import MitmdumpProcess  # noqa: E402

BIN = Path(sys.executable).parent
PATH = "/v1/chat/completions"
KEY = "sk-test-soak"

# The fake upstream, run as ``python -c UPSTREAM repo first_delay gap words``:
# prints its port, serves until its stdin closes.
UPSTREAM = """
import dataclasses, logging, sys
sys.path.insert(0, sys.argv[1])
import random, string
import tests.fakes.openai as fake_openai
from tests.fakes import FakeServer, OpenAIFake, Script

WORDS = int(sys.argv[4])
_ALNUM = string.ascii_letters + string.digits


def cheap_random_id(prefix="", length=24):
    # The fake's ids come from secrets, a system call per character: here the
    # fake is the load generator's upstream, not what is measured.
    return prefix + "".join(random.choices(_ALNUM, k=length))


fake_openai.random_id = cheap_random_id
# Clients killed with the proxy leave streams the fake cannot finish: expected here.
logging.getLogger("aiohttp").setLevel(logging.CRITICAL)


class PromptedOpenAI(OpenAIFake):
    async def chat_completions(self, request, script, recorded):
        prompt = (recorded.json or {}).get("messages", [{}])[-1].get("content", "")
        text = f"answer to {prompt}:" + "".join(f" w{i}" for i in range(WORDS))
        return await super().chat_completions(request, dataclasses.replace(script, text=text), recorded)


pacing = Script(first_event_delay=float(sys.argv[2]), event_delay=float(sys.argv[3]))
server = FakeServer(PromptedOpenAI(pacing)).start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


def expected_answer(prompt: str, words: int) -> str:
    return f"answer to {prompt}:" + "".join(f" w{i}" for i in range(words))


class Upstream:
    def __init__(self, first_delay: float, gap: float, words: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM, str(ROOT), str(first_delay), str(gap), str(words)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the client ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    prompt: str
    kind: str  # "body", "stream" (read to its end), "stream@done" (dropped at [DONE])
    status: int = 0
    text: str = ""
    first: float | None = None  # ms to the first event (a body: to the answer)
    acked: float | None = None  # perf_counter when the client had its whole answer
    ms: float | None = None  # ms to the answer
    error: str | None = None


def _request(prompt: str, stream: bool) -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "stream": stream,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def ask(port: int, prompt: str, kind: str = "stream", timeout: float = 60.0) -> Answer:
    answer = Answer(prompt, kind)
    try:
        await asyncio.wait_for(_ask(port, answer), timeout)
    except Exception as exc:  # noqa: BLE001 - a failed request is a figure, not a crash
        answer.error = f"{type(exc).__name__}: {exc}"
    return answer


async def _ask(port: int, answer: Answer) -> None:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request(answer.prompt, answer.kind != "body"))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        answer.status = int(head[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if answer.kind == "body":
            body = await _whole_body(reader, headers)
            answer.acked = time.perf_counter()
            message = json.loads(body)["choices"][0]["message"]
            answer.text = message.get("content") or ""
            answer.first = answer.ms = (answer.acked - started) * 1000
            return
        events = SSEText()
        async for data in _body_chunks(reader, headers):
            for payload in events.feed(data):
                if answer.first is None:
                    answer.first = (time.perf_counter() - started) * 1000
                if payload == "[DONE]":
                    if answer.kind == "stream@done":
                        answer.acked = time.perf_counter()
                        answer.ms = (answer.acked - started) * 1000
                        answer.text = events.text
                        return  # hang up before the end of the body, as openai-python does
                    continue
                events.take(payload)
        answer.acked = time.perf_counter()
        answer.ms = (answer.acked - started) * 1000
        answer.text = events.text
    finally:
        writer.transport.abort()


async def _whole_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    return b"".join([chunk async for chunk in _body_chunks(reader, headers)])


async def _body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            yield (await reader.readexactly(size + 2))[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


@dataclass
class SSEText:
    buffer: bytes = b""
    text: str = ""

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        payloads = []
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            lines = [line[5:].strip() for line in event.decode().split("\n") if line.startswith("data:")]
            payloads.append("\n".join(lines))
        return payloads

    def take(self, payload: str) -> None:
        for choice in json.loads(payload).get("choices", []):
            self.text += (choice.get("delta") or {}).get("content") or ""


async def burst(port: int, prompts: Sequence[str], stagger: float) -> list[Answer]:
    """All ``prompts`` as parallel streams, the i-th starting ``i * stagger``
    seconds in (a paced stream lasts longer than the whole ramp, so they all
    run at once; a ramp keeps the upstream's own start-up cost per request
    out of the figures)."""

    async def one(index: int, prompt: str) -> Answer:
        await asyncio.sleep(index * stagger)
        return await ask(port, prompt)

    return list(await asyncio.gather(*(one(i, prompt) for i, prompt in enumerate(prompts))))


# -- figures ------------------------------------------------------------------------------------------


@dataclass
class Figures:
    answers: list[Answer] = field(default_factory=list)

    def correct(self, words: int) -> int:
        return sum(1 for a in self.answers if a.error is None and a.text == expected_answer(a.prompt, words))

    def ttft(self) -> list[float]:
        return [a.first for a in self.answers if a.first is not None]

    def total(self) -> list[float]:
        return [a.ms for a in self.answers if a.ms is not None]


def p50_p95(values: Sequence[float]) -> str:
    if not values:
        return "       -/-      "
    return f"{statistics.median(values):7.1f}/{percentile(values, 0.95):7.1f}"


def user_messages(path: Path) -> list[str]:
    return [i.match.get("userMessage") for i in cassette_store.load(path).interactions if i.match]


def recorded_pacing(interactions: Iterable[Interaction]) -> tuple[list[float], list[float]]:
    """The ``t`` of each recorded stream's first event, and every gap between events."""
    firsts: list[float] = []
    gaps: list[float] = []
    for interaction in interactions:
        events = interaction.response.events if interaction.response is not None else None
        if not events:
            continue
        times = [e.t for e in events if e.t is not None]
        if times:
            firsts.append(times[0])
            # The last event ([DONE]) comes with the one before it.
            gaps.extend(b - a for a, b in zip(times[:-2], times[1:-1], strict=True))
    return firsts, gaps


# -- processes ----------------------------------------------------------------------------------------


def record_dump(
    upstream: Upstream, workdir: Path, cassette: Path, *, addon: bool = True, lazy: bool = False
) -> MitmdumpProcess:
    """A recording mitmdump (reverse mode to the upstream), or with
    ``addon=False`` a plain one streaming every body (mitmproxy's own cost;
    ``lazy``: connecting upstream after the request, as the record addon does)."""
    workdir.mkdir(exist_ok=True)
    scripts = [ROOT / "addons" / "record.py"] if addon else []
    options: dict[str, object] = {"llmock_cassette_dir": str(cassette.parent), "llmock_cassette": cassette.name}
    if not addon:
        options = {"stream_large_bodies": "1", "connection_strategy": "lazy" if lazy else "eager"}
    return MitmdumpProcess(
        confdir=workdir / "confdir", mode=f"reverse:{upstream.url}", scripts=scripts, options=options,
        use_router=False, cwd=workdir,
    ).start()


def replay_addon(cassette: Path, workdir: Path, upstream: Upstream) -> MitmdumpProcess:
    return MitmdumpProcess(
        confdir=workdir / "confdir", mode=f"reverse:{upstream.url}", scripts=[ROOT / "addons" / "replay.py"],
        options={"llmock_cassettes": str(cassette), "llmock_cassette_dir": "", "llmock_timing": "recorded"},
        use_router=False, cwd=workdir,
    ).start()


def serve(cassette: Path, workdir: Path) -> Server:
    port = free_port()
    command = [str(BIN / "llmock-proxy"), "serve", "--quiet", "--port", str(port),
               "--cassettes", str(cassette), "--timing", "recorded"]
    return Server("serve", command, port, workdir)


# -- 1 and 2: load ------------------------------------------------------------------------------------


RECORD = "mitmdump + record addon"


def load_phase(args: argparse.Namespace, upstream: Upstream, workdir: Path) -> bool:
    cassette = workdir / "record" / "soak.yaml"
    dumps = {
        "mitmdump, no addon": record_dump(upstream, workdir / "plain", cassette, addon=False),
        "mitmdump, no addon, lazy": record_dump(upstream, workdir / "lazy", cassette, addon=False, lazy=True),
        RECORD: record_dump(upstream, workdir / "record", cassette),
    }
    ports = {"direct": upstream.port, **{name: dump.port or 0 for name, dump in dumps.items()}}
    figures = {name: Figures() for name in ports}
    cpu = {name: 0.0 for name in ports}
    worker_cpu = 0.0
    sent: list[str] = []
    try:
        for name, port in ports.items():  # warm-up: imports, first connections, the worker
            prompts = [f"warm-{name}-{i}" for i in range(4)]
            asyncio.run(burst(port, prompts, args.stagger_ms / 1000))
            if name == RECORD:
                sent += prompts
        worker = _WORKER.search(dumps[RECORD].output)
        for round_ in range(args.rounds):
            for name, port in ports.items():
                prompts = [f"r{round_}-{name}-{i}" for i in range(args.streams)]
                pid = dumps[name].pid if name in dumps else None
                before = cpu_seconds(pid) if pid else 0.0
                worker_before = cpu_seconds(int(worker.group(1))) if worker and name == RECORD else 0.0
                figures[name].answers += asyncio.run(burst(port, prompts, args.stagger_ms / 1000))
                if name == RECORD:
                    sent += prompts
                    time.sleep(0.5)  # the worker's share of this round
                    worker_cpu += cpu_seconds(int(worker.group(1))) - worker_before if worker else 0.0
                cpu[name] += cpu_seconds(pid) - before if pid else 0.0
    finally:
        for name, dump in dumps.items():
            code = dump.terminate() if name == RECORD else dump.stop()
            if code not in (0, None):
                print(f"{name} exited with {code}:\n{dump.output[-2000:]}")

    streams = args.streams * args.rounds
    print(f"\n1. {args.streams} parallel paced streams ({args.words + 3} events, first after "
          f"{args.first_ms:g} ms, then {args.gap_ms:g} ms apart, started {args.stagger_ms:g} ms apart), "
          f"{args.rounds} rounds")
    print(f"{'setup':<28}{'TTFT ms p50/p95':>18}{'end ms p50/p95':>20}{'correct':>12}{'proxy CPU ms/stream':>22}")
    for name, figs in figures.items():
        share = f"{1000 * cpu[name] / streams:.2f}" if name in dumps else "-"
        print(f"{name:<28}{p50_p95(figs.ttft()):>18}{p50_p95(figs.total()):>20}"
              f"{figs.correct(args.words):>6}/{len(figs.answers):<5}{share:>17}")
    print(f"{'  (the recording worker)':<28}{'':>18}{'':>20}{'':>12}{1000 * worker_cpu / streams:>17.2f}")
    ttft = {name: figs.ttft() for name, figs in figures.items()}
    for base in ("direct", "mitmdump, no addon, lazy"):
        print(f"record addon TTFT vs {base}: p50 {statistics.median(ttft[RECORD]) - statistics.median(ttft[base]):+.1f}"
              f" ms, p95 {percentile(ttft[RECORD], 0.95) - percentile(ttft[base], 0.95):+.1f} ms")

    recorded = user_messages(cassette)
    acked = {a.prompt for a in figures[RECORD].answers if a.acked is not None}
    print(f"interactions recorded vs sent: {len(recorded)} of {len(sent)} "
          f"(answered but missing: {len(acked - set(recorded))})")
    firsts, gaps = recorded_pacing(cassette_store.load(cassette).interactions)
    print(f"recorded first-event t ms p50/p95: {p50_p95(firsts)}   (upstream: {args.first_ms:g} ms after the request;"
          f" client TTFT through plain lazy mitmdump p50 {statistics.median(ttft['mitmdump, no addon, lazy']):.1f})")
    print(f"recorded gaps between events ms p50/p95: {p50_p95(gaps)}   (upstream: {args.gap_ms:g} ms)")

    ok = len(recorded) == len(sent)
    ok &= replay_phase(args, cassette, workdir, upstream)
    return ok


def replay_phase(args: argparse.Namespace, cassette: Path, workdir: Path, upstream: Upstream) -> bool:
    (workdir / "replay").mkdir()
    prompts = [f"r0-{RECORD}-{i}" for i in range(args.streams)]
    print(f"\n2. the recorded cassette replayed to {args.streams} parallel streams (recorded timing)")
    print(f"{'server':<32}{'TTFT ms p50/p95':>18}{'end ms p50/p95':>20}{'correct':>12}")
    ok = True
    addon = replay_addon(cassette, workdir / "replay", upstream)
    try:
        figs = Figures(asyncio.run(burst(addon.port or 0, prompts, args.stagger_ms / 1000)))
    finally:
        addon.stop()
    print(f"{'replay addon':<32}{p50_p95(figs.ttft()):>18}{p50_p95(figs.total()):>20}"
          f"{figs.correct(args.words):>6}/{len(figs.answers)}")
    ok &= figs.correct(args.words) == len(prompts)
    server = serve(cassette, workdir / "replay")
    try:
        figs = Figures(asyncio.run(burst(server.port, prompts, args.stagger_ms / 1000)))
    finally:
        server.stop()
    print(f"{'llmock-proxy serve':<32}{p50_p95(figs.ttft()):>18}{p50_p95(figs.total()):>20}"
          f"{figs.correct(args.words):>6}/{len(figs.answers)}")
    ok &= figs.correct(args.words) == len(prompts)
    return ok


# -- 3: when an answer is on disk ---------------------------------------------------------------------


def _holds(path: Path, prompt: str) -> bool:
    try:
        return f"content: {prompt}".encode() in path.read_bytes()
    except FileNotFoundError:
        return False


async def _lag(port: int, cassette: Path, prompt: str, kind: str) -> float | None:
    """ms from the client having its answer to the cassette file holding it
    (negative: it held it before)."""
    written_at: list[float] = []

    async def watch() -> None:
        while not _holds(cassette, prompt):
            await asyncio.sleep(0.0005)
        written_at.append(time.perf_counter())

    watcher = asyncio.create_task(watch())
    answer = await ask(port, prompt, kind)
    try:
        await asyncio.wait_for(watcher, 10)
    except TimeoutError:
        return None
    if answer.acked is None:
        return None
    return (written_at[0] - answer.acked) * 1000


def lag_phase(args: argparse.Namespace, upstream: Upstream, workdir: Path) -> None:
    (workdir / "lag").mkdir()
    cassette = workdir / "lag" / "lag.yaml"
    recorder = record_dump(upstream, workdir / "lag", cassette)
    print("\n3. sequential requests through the record addon: cassette written, ms after the client had its answer")
    print(f"{'answer':<36}{'p50':>8}{'p95':>8}{'max':>8}{'  on disk first':>16}")
    try:
        asyncio.run(ask(recorder.port or 0, "lag-warm-up"))  # starts the worker
        for kind in ("body", "stream", "stream@done"):
            lags: list[float] = []
            for i in range(args.lag_requests):
                lag = asyncio.run(_lag(recorder.port or 0, cassette, f"lag-{kind}-{i}", kind))
                if lag is not None:
                    lags.append(lag)
            label = {"body": "plain body", "stream": "stream read to its end",
                     "stream@done": "stream dropped at [DONE]"}[kind]
            before = sum(1 for lag in lags if lag <= 0)
            print(f"{label:<36}{statistics.median(lags):8.2f}{percentile(lags, 0.95):8.2f}{max(lags):8.2f}"
                  f"{before:>10}/{len(lags)}")
    finally:
        recorder.stop()


# -- 4: SIGKILL ---------------------------------------------------------------------------------------


def seed_cassette(path: Path, megabytes: float, words: int) -> int:
    """An existing cassette of about ``megabytes`` MB, recorded through the
    recorder from synthetic streams (what a long-lived cassette looks like)."""
    from llmock_proxy.record.recorder import Recorder

    recorder = Recorder()
    interactions: list[Interaction] = []
    size = 0
    while size < megabytes * 1_000_000:
        n = len(interactions)
        body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                           "messages": [{"role": "user", "content": f"seed-{n}"}]}).encode()
        recording = recorder.start("POST", f"https://api.openai.com{PATH}",
                                   {"content-type": "application/json", "authorization": f"Bearer {KEY}"}, body)
        recording.response_started(200, {"content-type": "text/event-stream"})
        for piece in [f"answer to seed-{n}:", *(f" w{i}" for i in range(words))]:
            chunk = {"id": "chatcmpl-seed", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            recording.feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        recording.feed(b"data: [DONE]\n\n")
        interactions.append(recording.finish())
        if n % 50 == 0:
            size = len(cassette_store.dumps(Cassette(interactions[:50]))) * len(interactions) / 50
    cassette_store.save(Cassette(interactions), path)
    return len(interactions)


async def _keep_asking(port: int, stop: asyncio.Event, client: int, tag: str, answers: list[Answer]) -> None:
    kinds = ("body", "stream", "stream@done")
    n = 0
    while not stop.is_set():
        kind = kinds[(client + n) % 3]
        answer = await ask(port, f"{tag}-c{client}-{n}", kind, timeout=20)
        answers.append(answer)
        n += 1
        if answer.error is not None:
            await asyncio.sleep(0.01)  # the proxy is gone; stop() comes soon


_WORKER = re.compile(r"recording worker pid (\d+)")


def wait_for_exit(pid: int, timeout: float = 60.0) -> bool:
    """Whether process ``pid`` (not our child) ended within ``timeout``."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([handle], [], [], timeout)[0])
    finally:
        os.close(handle)


async def _kill_round(
    port: int, dump: MitmdumpProcess, clients: int, delay: float, tag: str
) -> tuple[list[Answer], float | None]:
    """Clients ask until mitmdump is killed; then the worker (if one ran)
    finishes: the answers, and how long the worker took after the kill."""
    stop = asyncio.Event()
    answers: list[Answer] = []
    tasks = [asyncio.create_task(_keep_asking(port, stop, c, tag, answers)) for c in range(clients)]
    await asyncio.sleep(delay)
    worker = _WORKER.search(dump.output)
    killed = time.perf_counter()
    dump.send_signal(signal.SIGKILL)
    await asyncio.to_thread(dump.wait)
    stop.set()
    await asyncio.gather(*tasks)
    drained = None
    if worker is not None:
        await asyncio.to_thread(wait_for_exit, int(worker.group(1)))
        drained = (time.perf_counter() - killed) * 1000
    return answers, drained


def kill_phase(args: argparse.Namespace, upstream: Upstream, workdir: Path) -> bool:
    (workdir / "kill").mkdir()
    cassette = workdir / "kill" / "existing.yaml"
    seeded = seed_cassette(cassette, args.seed_mb, args.words)
    rng = random.Random(args.seed)
    print(f"\n4. SIGKILL of a recording mitmdump at a random moment, {args.kills} times, "
          f"{args.kill_clients} clients asking; existing cassette of {seeded} interactions "
          f"({cassette.stat().st_size / 1e6:.1f} MB)")
    print(f"{'kill':<6}{'after s':>8}{'answered':>10}{'recorded':>10}{'lost':>6}"
          f"{'  lost body/stream/@done':>26}{'  loads':>8}{'  worker done ms':>17}")
    lost_total = unloadable = 0
    before = set(user_messages(cassette))
    for round_ in range(args.kills):
        delay = rng.uniform(0.05, args.kill_max_s)
        dump = record_dump(upstream, workdir / "kill", cassette)
        answers, drained = asyncio.run(_kill_round(dump.port or 0, dump, args.kill_clients, delay, f"k{round_}"))
        acked = {a.prompt: a.kind for a in answers if a.acked is not None and a.error is None}
        try:
            now = set(user_messages(cassette))
            loads = True
        except CassetteError as exc:
            loads = False
            unloadable += 1
            now = before
            print(f"   unloadable: {exc}")
        lost = [p for p in acked if p not in now]
        by_kind = [sum(1 for p in lost if acked[p] == k) for k in ("body", "stream", "stream@done")]
        lost_total += len(lost)
        print(f"{round_ + 1:<6}{delay:8.2f}{len(acked):>10}{len(now - before):>10}{len(lost):>6}"
              f"{'/'.join(map(str, by_kind)):>26}{'yes' if loads else 'NO':>8}"
              f"{'-' if drained is None else f'{drained:.0f}':>17}")
        before = now
    leftovers = [p.name for p in cassette.parent.iterdir() if p.name.endswith(".tmp")]
    print(f"acknowledged but lost: {lost_total}; unloadable cassettes: {unloadable}; "
          f"temp files left beside it: {len(leftovers)}")
    return lost_total == 0 and unloadable == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--first-ms", type=float, default=20.0)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--stagger-ms", type=float, default=2.0, help="between the starts of the parallel streams")
    parser.add_argument("--lag-requests", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--kill-clients", type=int, default=12)
    parser.add_argument("--kill-max-s", type=float, default=3.0)
    parser.add_argument("--seed-mb", type=float, default=3.4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--only", choices=("load", "lag", "kill"), default=None)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="llmock-soak-"))
    # Latencies move with whatever else the machine runs; CPU per stream does not.
    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}")
    upstream = Upstream(args.first_ms / 1000, args.gap_ms / 1000, args.words)
    ok = True
    try:
        if args.only in (None, "load"):
            ok &= load_phase(args, upstream, workdir)
        if args.only in (None, "lag"):
            lag_phase(args, upstream, workdir)
        if args.only in (None, "kill"):
            ok &= kill_phase(args, upstream, workdir)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; {'goal met' if ok else 'GOAL MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
