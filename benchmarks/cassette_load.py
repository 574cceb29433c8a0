"""How long cassettes take to load and to write, as the set grows.

Generates cassette sets of 1k, 10k and 100k realistic interactions (OpenAI
chat completions as JSON and as SSE streams, Anthropic message streams, a few
embeddings; system prompts, tools, usage, headers) into a temp dir, split into
files of ``--per-file`` interactions, then prints for each set:

* load: ``cassette.load`` of every file (YAML parse + schema validation +
  model build), and the same three steps timed apart;
* dump: ``Cassette.dumps`` (YAML only) and ``cassette.save`` (the real write
  path: redaction, dump, the refuse-to-write scan, atomic write);
* the time per interaction, so linear growth is visible.

Target: 10k interactions loaded in under 1 s on the 2-core dev machine.

    .venv/bin/python benchmarks/cassette_load.py [--sizes 1000 10000 100000] [--per-file 100]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llmock_proxy import cassette as cassette_module  # noqa: E402
from llmock_proxy import yamlio  # noqa: E402
from llmock_proxy.cassette import (  # noqa: E402
    Cassette,
    Interaction,
    Payload,
    Request,
    Response,
    SSEEvent,
)
from llmock_proxy.schemas import validate_cassette  # noqa: E402

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


@dataclass
class Figures:
    size: int
    files: int
    megabytes: float
    dump: float
    save: float
    load: float
    parse: float
    validate: float
    build: float


def measure(size: int, per_file: int, directory: Path, seed: int) -> Figures:
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    dump = save = 0.0
    paths = []
    for start in range(0, size, per_file):
        cassette = Cassette(list(interactions(rng, start, min(per_file, size - start))))
        t0 = time.perf_counter()
        cassette.dumps()
        dump += time.perf_counter() - t0
        path = directory / f"cassette-{start // per_file:05d}.yaml"
        t0 = time.perf_counter()
        cassette.save(path)
        save += time.perf_counter() - t0
        paths.append(path)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6

    # The real API, as the replay loads a cassette directory.
    t0 = time.perf_counter()
    loaded = [cassette_module.load(p) for p in paths]
    load = time.perf_counter() - t0
    assert sum(len(c.interactions) for c in loaded) == size
    del loaded

    # The same three steps timed apart (what cassette.parse does).
    parse = validate = build = 0.0
    kept = []
    for p in paths:
        raw = p.read_bytes()
        with yamlio.gc_paused():
            t0 = time.perf_counter()
            data = yamlio.loads(raw)
            t1 = time.perf_counter()
            validate_cassette(data, str(p))
            t2 = time.perf_counter()
            kept.append(Cassette.from_dict(data, p))
            t3 = time.perf_counter()
        parse += t1 - t0
        validate += t2 - t1
        build += t3 - t2
    return Figures(size, len(paths), megabytes, dump, save, load, parse, validate, build)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--per-file", type=int, default=100, help="interactions per cassette file")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    print(f"per file: {args.per_file} interactions; times in seconds, per-interaction in microseconds")
    header = (f"{'interactions':>12} {'files':>6} {'MB':>7} | {'load':>7} {'us/i':>6} "
              f"({'parse':>6} {'valid':>6} {'build':>6}) | {'dump':>7} {'us/i':>6} | {'save':>7} {'us/i':>6}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="llmock-bench-") as tmp:
        for size in args.sizes:
            f = measure(size, args.per_file, Path(tmp) / f"set-{size}", args.seed)
            per = 1e6 / f.size
            print(f"{f.size:>12,} {f.files:>6} {f.megabytes:>7.1f} | {f.load:>7.2f} {f.load * per:>6.0f} "
                  f"({f.parse:>6.2f} {f.validate:>6.2f} {f.build:>6.2f}) | {f.dump:>7.2f} {f.dump * per:>6.0f} "
                  f"| {f.save:>7.2f} {f.save * per:>6.0f}", flush=True)
    print("target: 10,000 interactions loaded in under 1 s")


if __name__ == "__main__":
    main()
