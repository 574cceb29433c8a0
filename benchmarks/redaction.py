"""What redaction costs per recorded interaction, and that it grows linearly.

The recorder redacts every interaction before it is written
(``Redactor.redact_interaction``): by name, then every value it removed
searched for everywhere else (one combined expression), and a stream's
strings joined per channel. Timed here on synthetic interactions:

* a streamed chat answer of N chunk events with an ``Authorization`` header
  (the common case: nothing to find), for growing N;
* the same with the sent key streamed back split over the events (the
  worst case: a channel to cut);
* a request carrying a base64 image of growing size (one long string).

Prints the median of ``--runs`` timings and the cost per event or per MB;
a linear pass shows a flat per-unit cost.

    .venv/bin/python benchmarks/redaction.py [--runs 7]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from llmock_proxy.cassette.model import Interaction, Payload, Request, Response, SSEEvent  # noqa: E402
from llmock_proxy.cassette.redact import Redactor  # noqa: E402

KEY = "opaque-benchmark-credential-0042"
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json", "x-request-id": "req_1"}


def chat_stream(events: int, echo: bool) -> Interaction:
    text = ("The answer, token by token. " * (events // 5 + 1))[: events * 3]
    if echo:
        middle = len(text) // 2
        text = text[:middle] + f" your key is {KEY} " + text[middle:]
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)][:events]
    chunks = [
        SSEEvent(data={"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "gpt-bench",
                       "system_fingerprint": "fp_bench",
                       "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}, t=i)
        for i, piece in enumerate(pieces)
    ]
    request = Request("POST", "https://api.openai.com/v1/chat/completions", dict(HEADERS),
                      Payload.json({"model": "gpt-bench", "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]}))
    return Interaction(request, Response(200, {"content-type": "text/event-stream"}, events=chunks),
                       match={"family": "openai.chat"}, summary={"text": text})


def image_request(megabytes: int) -> Interaction:
    image = base64.b64encode(os.urandom(megabytes * 1024 * 1024 * 3 // 4)).decode()
    body = {"model": "gpt-bench", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}]}
    return Interaction(Request("POST", "https://api.openai.com/v1/chat/completions", dict(HEADERS),
                               Payload.json(body)), Response(200, body=Payload.json({"ok": True})))


def median_ms(work: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    redactor = Redactor.default()

    print(f"redact_interaction, median of {args.runs} runs")
    print(f"{'interaction':<44}{'ms':>10}{'per unit':>16}")
    for echo in (False, True):
        label = "stream, key echoed split" if echo else "stream, nothing to find"
        for events in (100, 1000, 10000):
            interaction = chat_stream(events, echo)
            out = redactor.redact_interaction(interaction)
            if echo:
                assert KEY not in str(out.to_dict())
            ms = median_ms(lambda i=interaction: redactor.redact_interaction(i), args.runs)
            print(f"{label + f' ({events} events)':<44}{ms:>10.2f}{ms * 1000 / events:>12.1f} us/event")
    for megabytes in (1, 5, 20):
        interaction = image_request(megabytes)
        ms = median_ms(lambda i=interaction: redactor.redact_interaction(i), max(3, args.runs // 2))
        print(f"{f'request with a {megabytes} MB base64 image':<44}{ms:>10.1f}{ms / megabytes:>13.1f} ms/MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
