"""How long cassettes take to load and to write, as the set grows.

Generates cassette sets of realistic interactions (OpenAI chat completions as
JSON and as SSE streams, Anthropic message streams, a few embeddings; system
prompts, tools, usage, headers; about 5 KB of YAML each) into a temp dir,
split into files of ``--per-file`` interactions, then prints for each set:

* load, three ways, each through the real ``cassette.load`` of every file:
  - no cache: YAML parse + schema validation + model build (``LLMOCK_PROXY_CACHE=0``);
  - cold: the parse cache is empty, so the same plus writing each file's entry;
  - warm: every file's entry is there: read + checksum + ``json.loads``
    replace the YAML parse; validation and the model build still run;
  with the steps timed apart;
* write: ``Cassette.dumps`` (YAML only) and ``cassette.save`` (the real write
  path: redaction, dump, the refuse-to-write scan, atomic write);
* the time per interaction, so linear growth is visible.

Target: 10k interactions loaded in under 1 s on the 2-core dev machine.

    .venv/bin/python benchmarks/cassette_load.py                  # 1k and 10k (about a minute)
    .venv/bin/python benchmarks/cassette_load.py --sizes 1000 10000 100000   # 100k adds ~10 minutes
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import (
    Cassette,
    Interaction,
    Payload,
    Request,
    Response,
    SSEEvent,
)
from llmock_proxy.cassette.parse_cache import ParseCache
from llmock_proxy.cassette.schema import validate_cassette

WORDS = (
    "the a model answer weather city today tomorrow rain sun cloud wind temperature degrees "
    "please tell me about how why when where which function call result error retry stream "
    "token usage prompt completion system user assistant tool json schema format example"
).split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def fingerprint(value: Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]
    return f"sha256:{digest}"


def chat_request(rng: random.Random, i: int, stream: bool) -> tuple[Request, str]:
    user = f"Question {i}: {sentence(rng, rng.randint(6, 30))}"
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant.\nAnswer briefly."},
            {"role": "user", "content": user},
        ],
        "temperature": 0.2,
    }
    if rng.random() < 0.3:
        body["tools"] = [{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }]
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {
        "content-type": "application/json",
        "authorization": "Bearer <redacted>",
        "user-agent": "OpenAI/Python 2.54.0",
        "x-stainless-lang": "python",
    }
    return Request("POST", "https://api.openai.com/v1/chat/completions", headers, Payload.json(body)), user


def openai_json(rng: random.Random, i: int) -> Interaction:
    request, user = chat_request(rng, i, stream=False)
    answer = "\n".join(sentence(rng, rng.randint(5, 15)) for _ in range(rng.randint(1, 3)))
    body = {
        "id": f"chatcmpl-{i:08d}",
        "object": "chat.completion",
        "created": 1_735_689_600 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 25, "total_tokens": 65},
        "system_fingerprint": "fp_0123456789",
    }
    response = Response(200, {"content-type": "application/json", "openai-processing-ms": str(rng.randint(200, 900)),
                              "x-request-id": f"req_{i:016x}"}, body=Payload.json(body))
    return _interaction(request, response, user, False, answer, "openai.chat")


def openai_sse(rng: random.Random, i: int) -> Interaction:
    request, user = chat_request(rng, i, stream=True)
    words = sentence(rng, rng.randint(8, 30)).split(" ")
    t = float(rng.randint(150, 600))
    events = []
    base = {"id": f"chatcmpl-{i:08d}", "object": "chat.completion.chunk", "created": 1_735_689_600 + i,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0123456789"}
    events.append(SSEEvent(data={**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                       "logprobs": None, "finish_reason": None}]}, t=round(t, 1)))
    for word in words:
        t += rng.uniform(5, 40)
        events.append(SSEEvent(data={**base, "choices": [{"index": 0, "delta": {"content": word + " "},
                                                           "logprobs": None, "finish_reason": None}]}, t=round(t, 1)))
    t += 10
    events.append(SSEEvent(data={**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                       "finish_reason": "stop"}]}, t=round(t, 1)))
    events.append(SSEEvent(data={**base, "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": len(words),
                                                                  "total_tokens": 40 + len(words)}}, t=round(t + 1, 1)))
    events.append(SSEEvent(data="[DONE]", t=round(t + 1.5, 1)))
    response = Response(200, {"content-type": "text/event-stream; charset=utf-8", "x-request-id": f"req_{i:016x}"},
                        events=events)
    return _interaction(request, response, user, True, " ".join(words), "openai.chat")


def anthropic_sse(rng: random.Random, i: int) -> Interaction:
    user = f"Question {i}: {sentence(rng, rng.randint(6, 30))}"
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True,
            "system": "You are a helpful assistant.", "messages": [{"role": "user", "content": user}]}
    request = Request("POST", "https://api.anthropic.com/v1/messages",
                      {"content-type": "application/json", "x-api-key": "<redacted>", "anthropic-version": "2023-06-01"},
                      Payload.json(body))
    words = sentence(rng, rng.randint(8, 30)).split(" ")
    t = float(rng.randint(300, 900))
    events = [
        SSEEvent(event="message_start", data={"type": "message_start", "message": {
            "id": f"msg_{i:024d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 30, "output_tokens": 1}}}, t=round(t, 1)),
        SSEEvent(event="content_block_start", data={"type": "content_block_start", "index": 0,
                                                    "content_block": {"type": "text", "text": ""}}, t=round(t + 1, 1)),
        SSEEvent(event="ping", data={"type": "ping"}, t=round(t + 2, 1)),
    ]
    for word in words:
        t += rng.uniform(5, 40)
        events.append(SSEEvent(event="content_block_delta", data={
            "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word + " "}}, t=round(t, 1)))
    events += [
        SSEEvent(event="content_block_stop", data={"type": "content_block_stop", "index": 0}, t=round(t + 1, 1)),
        SSEEvent(event="message_delta", data={"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                              "usage": {"output_tokens": len(words)}}, t=round(t + 2, 1)),
        SSEEvent(event="message_stop", data={"type": "message_stop"}, t=round(t + 3, 1)),
    ]
    response = Response(200, {"content-type": "text/event-stream", "request-id": f"req_{i:024d}"}, events=events)
    return _interaction(request, response, user, True, " ".join(words), "anthropic.messages")


def embeddings(rng: random.Random, i: int) -> Interaction:
    text = sentence(rng, 12)
    request = Request("POST", "https://api.openai.com/v1/embeddings",
                      {"content-type": "application/json", "authorization": "Bearer <redacted>"},
                      Payload.json({"model": "text-embedding-3-small", "input": text, "encoding_format": "base64"}))
    vector = bytes(rng.getrandbits(8) for _ in range(256))
    body = {"object": "list", "data": [{"object": "embedding", "index": 0,
                                        "embedding": base64.b64encode(vector).decode()}],
            "model": "text-embedding-3-small", "usage": {"prompt_tokens": 12, "total_tokens": 12}}
    response = Response(200, {"content-type": "application/json"}, body=Payload.json(body))
    interaction = _interaction(request, response, None, False, "", "openai.embeddings")
    interaction.match["inputText"] = text
    return interaction


def _interaction(request: Request, response: Response, user: str | None, stream: bool, text: str,
                 family: str) -> Interaction:
    match: dict[str, Any] = {"family": family, "model": request.json.get("model"), "stream": stream,
                             "fingerprint": fingerprint(request.json)}
    if user:
        match["userMessage"] = user
    summary: dict[str, Any] = {"finish_reason": "stop", "usage": {"input_tokens": 30, "output_tokens": 20}}
    if text:
        summary = {"text": text, **summary}
    return Interaction(request=request, response=response, match=match, summary=summary,
                       recorded_at="2025-01-01T00:00:00.000Z")


MAKERS: list[tuple[float, Callable[[random.Random, int], Interaction]]] = [
    (0.35, openai_json), (0.35, openai_sse), (0.2, anthropic_sse), (0.1, embeddings),
]


def interactions(rng: random.Random, start: int, count: int) -> Iterator[Interaction]:
    weights = [w for w, _ in MAKERS]
    makers = [m for _, m in MAKERS]
    for i in range(start, start + count):
        yield rng.choices(makers, weights)[0](rng, i)


# -- measuring --------------------------------------------------------------------------

TARGET_SIZE = 10_000
TARGET_SECONDS = 1.0


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # this process's CPU time: what an idle machine's wall time would be, near enough
    # The kernel's share of ``cpu``: mostly handing the process fresh memory
    # (page faults), which grows with how much the loaded set holds.
    sys: float


@dataclass
class LoadFigures:
    total: Timing  # cassette.load of every file, as a directory load does it
    steps: dict[str, float]  # the same work timed step by step (wall)


@dataclass
class Figures:
    size: int
    files: int
    megabytes: float
    cache_megabytes: float
    dump: float
    save: float
    no_cache: LoadFigures
    cold: LoadFigures
    warm: LoadFigures


def _timed(work: Callable[[], Any]) -> tuple[Timing, Any]:
    t0, c0, s0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    result = work()
    s1 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    return Timing(time.perf_counter() - t0, time.process_time() - c0, s1 - s0), result


def _load_all(paths: list[Path], cache: ParseCache | None, size: int) -> Timing:
    """``cassette.load`` of every file with the collector paused around the
    whole set, as :meth:`ReplaySession.load` reads a cassette directory."""
    gc.collect()  # start each run from the same collector state
    with yamlio.gc_paused():
        seconds, loaded = _timed(lambda: [cassette_store.load(p, cache=cache) for p in paths])
    assert sum(len(c.interactions) for c in loaded) == size
    return seconds


def _best(repeat: int, run: Callable[[], Timing]) -> Timing:
    # The machine is shared: the fastest of a few runs is the least disturbed one.
    return min((run() for _ in range(repeat)), key=lambda timing: timing.wall)


def _steps(paths: list[Path], cache: ParseCache | None, write: bool) -> dict[str, float]:
    """What ``cassette.parse`` does, one step at a time: read, then the cache
    entry (warm) or the YAML parse, validation, model build, and for a cold
    load writing the entry."""
    warm = cache is not None and not write
    steps = dict.fromkeys(("read", "cache read" if warm else "parse", "validate", "build", "cache write"), 0.0)
    gc.collect()
    kept = []
    with yamlio.gc_paused():
        for p in paths:
            t0 = time.perf_counter()
            raw = p.read_bytes()
            t1 = time.perf_counter()
            data = cache.get(raw) if warm else None
            if data is None:
                data = yamlio.loads(raw)
            t2 = time.perf_counter()
            validate_cassette(data, str(p))
            t3 = time.perf_counter()
            kept.append(Cassette.from_dict(data, p))
            t4 = time.perf_counter()
            if write and cache is not None:
                cache.put(raw, data)
            t5 = time.perf_counter()
            for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                steps[name] += seconds
    return steps


def measure(size: int, per_file: int, directory: Path, seed: int, repeat: int) -> Figures:
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    dump = save = 0.0
    paths = []
    for start in range(0, size, per_file):
        cassette = Cassette(list(interactions(rng, start, min(per_file, size - start))))
        t0 = time.perf_counter()
        cassette_store.dumps(cassette)
        dump += time.perf_counter() - t0
        path = directory / f"cassette-{start // per_file:05d}.yaml"
        t0 = time.perf_counter()
        cassette_store.save(cassette, path)
        save += time.perf_counter() - t0
        paths.append(path)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    # Large enough for any set here: pruning would only blur the figures.
    cache = ParseCache(directory.with_name(f"{directory.name}-cache"), max_bytes=10**13)

    def cold_run() -> Timing:
        shutil.rmtree(cache.directory, ignore_errors=True)
        return _load_all(paths, cache, size)

    no_cache = LoadFigures(_best(repeat, lambda: _load_all(paths, None, size)), _steps(paths, None, write=False))
    cold = LoadFigures(_best(repeat, cold_run), {})
    cache_megabytes = sum(p.stat().st_size for p in cache.directory.glob("*.json")) / 1e6
    shutil.rmtree(cache.directory)
    cold.steps = _steps(paths, cache, write=True)  # fills the cache again
    warm = LoadFigures(_best(repeat, lambda: _load_all(paths, cache, size)), _steps(paths, cache, write=False))
    return Figures(size, len(paths), megabytes, cache_megabytes, dump, save, no_cache, cold, warm)


def _row(label: str, size: int, load: LoadFigures) -> str:
    per = 1e6 / size
    steps = " ".join(f"{name} {seconds:.2f}" for name, seconds in load.steps.items() if seconds >= 0.005)
    wall, cpu, sys_ = load.total.wall, load.total.cpu, load.total.sys
    return (f"  {label:<9} {wall:>7.2f} s {wall * per:>6.0f} µs/i  cpu {cpu:>6.2f} s {cpu * per:>6.0f} µs/i "
            f"(sys {sys_:>5.2f})  ({steps})")


def report(f: Figures) -> None:
    per = 1e6 / f.size
    print(f"{f.size:,} interactions in {f.files} files: {f.megabytes:.1f} MB of YAML, "
          f"cache entries {f.cache_megabytes:.1f} MB")
    print(_row("no cache", f.size, f.no_cache))
    print(_row("cold", f.size, f.cold))
    print(_row("warm", f.size, f.warm))
    print(f"  {'dumps':<9} {f.dump:>7.2f} s {f.dump * per:>6.0f} µs/i")
    print(f"  {'save':<9} {f.save:>7.2f} s {f.save * per:>6.0f} µs/i", flush=True)


def verdict(figures: list[Figures]) -> None:
    budget = TARGET_SECONDS / TARGET_SIZE * 1e6
    print(f"target: {TARGET_SIZE:,} interactions loaded in under {TARGET_SECONDS:.0f} s "
          f"({budget:.0f} µs per interaction)")
    for f in figures:
        if f.size != TARGET_SIZE:
            continue
        for label, load in (("no cache", f.no_cache), ("cold", f.cold), ("warm", f.warm)):
            wall, cpu = load.total.wall, load.total.cpu
            if wall < TARGET_SECONDS:
                said = "meets the target"
            elif cpu < TARGET_SECONDS:
                said = "meets it in CPU time; the wall time was stretched by other work on the machine"
            else:
                said = "does NOT meet the target"
            print(f"  {label + ':':<10} {wall:.2f} s wall, {cpu:.2f} s CPU for {f.size:,}: {said}")
    if not any(f.size == TARGET_SIZE for f in figures):
        print(f"  (no {TARGET_SIZE:,} set measured: add it to --sizes)")
    if len(figures) > 1:
        print("per interaction (µs wall / CPU), linear growth keeps these level:")
        for label in ("no cache", "cold", "warm"):
            loads = [(f.size, getattr(f, label.replace(" ", "_")).total) for f in figures]
            shown = ", ".join(f"{size:,}: {t.wall / size * 1e6:.0f} / {t.cpu / size * 1e6:.0f}" for size, t in loads)
            print(f"  {label + ':':<10} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000],
                        help="set sizes in interactions (default: 1000 10000; 100000 takes ~10 minutes)")
    parser.add_argument("--per-file", type=int, default=100, help="interactions per cassette file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="load each set this many times, keep the fastest")
    args = parser.parse_args()

    print(f"per file: {args.per_file} interactions; wall-clock seconds and µs per interaction (µs/i); "
          f"loads: best of {args.repeat}, steps: one run; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    figures = []
    with tempfile.TemporaryDirectory(prefix="llmock-bench-") as tmp:
        for size in args.sizes:
            figures.append(measure(size, args.per_file, Path(tmp) / f"set-{size}", args.seed, args.repeat))
            report(figures[-1])
            shutil.rmtree(Path(tmp) / f"set-{size}")
            shutil.rmtree(Path(tmp) / f"set-{size}-cache")
    verdict(figures)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine inflates wall times)")


if __name__ == "__main__":
    main()
