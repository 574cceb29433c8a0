"""How fast the refuse-to-write key scan is, and that it stays linear.

Every cassette write ends in :meth:`Redactor.checked_dump` (redact, dump, scan
the text) and ``llmock-proxy cassette validate`` runs the same scan over a
loaded cassette (:meth:`Redactor.scan`, field by field). Builds realistic
cassettes of about 2, 21 and 210 MB in a temp dir (OpenAI and Anthropic chat
answers as JSON and SSE streams, embeddings, a few big base64 images in
requests and binary audio answers, long texts, and a few hundred KB of NUL
bytes, spaces and repeated characters), then prints for each:

* ``Redactor.scan`` of the loaded cassette (what validate runs) and of the
  YAML text (what ``checked_dump`` runs), in MB of YAML per second;
* ``checked_dump`` of the whole cassette (redaction + YAML dump + text scan);
* ``llmock-proxy cassette validate <file>`` as a subprocess: wall time and
  peak RSS, and the same work in this process timed step by step (YAML
  parse, schema, model build, replay checks, key scan);

then redaction of pathological long strings (64 MiB of NUL, ``a``, spaces,
``-``, random base64): ``Redactor.redact_text`` and ``redact_interaction``
(the string as a request's text body) in MB/s.

Figures only, no asserts: a flat per-MB cost from 2 to 210 MB means linear.
The parse cache is off (every load parses the YAML).

    .venv/bin/python benchmarks/key_scan.py                     # 2, 21, 210 MB (a few minutes)
    .venv/bin/python benchmarks/key_scan.py --sizes 2 21 --pathological-mib 16
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cassette_load import interactions, sentence  # noqa: E402
from llmock_proxy.cassette import store as cassette_store  # noqa: E402
from llmock_proxy.cassette import yamlio  # noqa: E402
from llmock_proxy.cassette.model import Cassette, Interaction, Payload, Request, Response  # noqa: E402
from llmock_proxy.cassette.parse_cache import CACHE_SWITCH_ENV  # noqa: E402
from llmock_proxy.cassette.redact import Redactor  # noqa: E402
from llmock_proxy.cassette.schema import validate_cassette  # noqa: E402
from llmock_proxy.commands.cassette import validate_file  # noqa: E402

HEADERS = {"content-type": "application/json", "authorization": "Bearer <redacted>", "user-agent": "OpenAI/Python 2.54.0"}


def image_request(rng: random.Random, i: int, size: int) -> Interaction:
    image = base64.b64encode(rng.randbytes(size * 3 // 4)).decode()
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": f"Image {i}: what is in it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}]}
    answer = {"id": f"chatcmpl-img{i:06d}", "object": "chat.completion", "model": "gpt-4o",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": sentence(rng, 40)},
                           "finish_reason": "stop"}]}
    return Interaction(Request("POST", "https://api.openai.com/v1/chat/completions", dict(HEADERS), Payload.json(body)),
                       Response(200, {"content-type": "application/json"}, Payload.json(answer)),
                       match={"family": "openai.chat", "model": "gpt-4o"})


def speech(rng: random.Random, i: int, size: int) -> Interaction:
    """A binary answer (text to speech): stored as base64, which the scan decodes and searches."""
    body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": sentence(rng, 20)}
    return Interaction(Request("POST", "https://api.openai.com/v1/audio/speech", dict(HEADERS), Payload.json(body)),
                       Response(200, {"content-type": "audio/mpeg"}, Payload("base64", base64.b64encode(
                           rng.randbytes(size)).decode())), match={"family": "openai.speech"})


def long_text(rng: random.Random, i: int, size: int) -> Interaction:
    text = "\n\n".join(" ".join(sentence(rng, 25) for _ in range(6)) for _ in range(size // 1000 + 1))[:size]
    answer = {"id": f"chatcmpl-long{i:06d}", "object": "chat.completion", "model": "gpt-4o",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Write a long essay about the weather."}]}
    return Interaction(Request("POST", "https://api.openai.com/v1/chat/completions", dict(HEADERS), Payload.json(body)),
                       Response(200, {"content-type": "application/json"}, Payload.json(answer)),
                       match={"family": "openai.chat", "model": "gpt-4o"}, summary={"text": text[:200]})


def odd_strings(i: int, size: int) -> Interaction:
    """NUL bytes, whitespace and runs of one character: what a broken upstream or a padded answer sends."""
    quarter = size // 4
    body = {"padding": " " * quarter, "rule": "-" * quarter, "aaa": "a" * quarter}
    return Interaction(Request("POST", "https://api.example.test/v1/odd", dict(HEADERS), Payload.json(body)),
                       Response(200, {"content-type": "text/plain"}, Payload("text", "\0" * quarter)),
                       match={"family": "unknown"})


def build(megabytes: float, seed: int) -> Cassette:
    """About ``megabytes`` of YAML: 75% small chat interactions, 15% base64
    (images in requests, binary answers), 8% long texts, the rest odd strings."""
    rng = random.Random(seed)
    target = megabytes * 1e6
    big: list[Interaction] = []
    images = max(1, round(megabytes / 7))
    for k in range(images):
        big.append(image_request(rng, k, int(target * 0.11 / images)))
        big.append(speech(rng, k, int(target * 0.03 / images)))
    texts = max(1, round(megabytes))
    big += [long_text(rng, k, int(target * 0.08 / texts)) for k in range(texts)]
    odd_total = min(int(target * 0.02), 600_000)
    pieces = max(1, round(megabytes / 10))
    big += [odd_strings(k, odd_total // pieces) for k in range(pieces)]
    small = int(target * 0.75 / 4700)  # cassette_load's interactions are ~4.7 KB of YAML each
    every = max(1, small // (len(big) + 1))
    out: list[Interaction] = []
    for n, interaction in enumerate(interactions(rng, 0, small)):
        out.append(interaction)
        if n % every == every - 1 and big:
            out.append(big.pop())
    return Cassette(out + big)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def run_validate(path: Path) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MB), exit code and last line of ``cassette validate``."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "llmock_proxy.cli", "cassette", "validate", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    lines = output.strip().splitlines()
    return wall, usage.ru_maxrss / 1024, process.returncode, lines[-1] if lines else ""


def validate_steps(path: Path, redactor: Redactor) -> dict[str, float]:
    """What ``cassette validate`` does to one cassette, one step at a time
    (the replay checks are the rest of ``validate_file``'s time)."""
    steps: dict[str, float] = {}
    with yamlio.gc_paused():
        steps["read"], raw = timed(path.read_bytes)
        steps["YAML parse"], data = timed(lambda: yamlio.loads(raw))
        steps["schema"], _ = timed(lambda: validate_cassette(data, str(path)))
        steps["model build"], cassette = timed(lambda: Cassette.from_dict(data, path))
        steps["to_dict"], tree = timed(cassette.to_dict)
        steps["key scan"], found = timed(lambda: redactor.scan(tree))
    assert not found, found[:3]
    return steps


def scan_figures(path: Path, text: str, size: float, redactor: Redactor) -> None:
    scan_text, found = timed(lambda: redactor.scan(text))
    assert not found, found[:3]
    print(f"  scan of the YAML text        {scan_text:7.2f} s  {size / scan_text:7.1f} MB/s   <- checked_dump's scan")
    with yamlio.gc_paused():
        tree = cassette_store.load(path, cache=None).to_dict()
        scan_data, found = timed(lambda: redactor.scan(tree))
    assert not found, found[:3]
    print(f"  scan of the loaded data      {scan_data:7.2f} s  {size / scan_data:7.1f} MB/s   <- Redactor.scan, validate")


def measure(megabytes: float, directory: Path, seed: int, subprocess_validate: bool) -> None:
    redactor = Redactor.default()
    seconds, cassette = timed(lambda: build(megabytes, seed))
    path = directory / f"bench-{megabytes:g}mb.yaml"
    with yamlio.gc_paused():
        dump_seconds, text = timed(lambda: yamlio.dumps(cassette.to_dict()))
    path.write_text(text, encoding="utf-8")
    size = path.stat().st_size / 1e6
    print(f"\n== {size:.1f} MB, {len(cassette.interactions)} interactions (built in {seconds:.1f} s, "
          f"YAML dump {dump_seconds:.1f} s)")
    scan_figures(path, text, size, redactor)
    text = ""
    gc.collect()
    dump, _ = timed(lambda: redactor.checked_dump(cassette, where=str(path)))
    print(f"  checked_dump                 {dump:7.2f} s  {size / dump:7.1f} MB/s   (redact + YAML dump + scan)")
    cassette = Cassette()
    gc.collect()
    if subprocess_validate:
        wall, rss, code, last = run_validate(path)
        print(f"  cassette validate            {wall:7.2f} s  {size / wall:7.1f} MB/s   peak RSS {rss:,.0f} MB"
              f"   exit {code}: {last}")
    steps = validate_steps(path, redactor)
    gc.collect()
    whole, report = timed(lambda: validate_file(path))
    assert not report.problems, report.problems[:3]
    steps["replay checks"] = max(0.0, whole - sum(steps.values()))
    split = ", ".join(f"{name} {value:.2f} s ({100 * value / whole:.0f}%)" for name, value in steps.items())
    print(f"  validate_file in process     {whole:7.2f} s: {split}")


def pathological(mib: int) -> Iterator[tuple[str, str]]:
    n = mib * 1024 * 1024
    yield "NUL", "\0" * n
    yield "'a'", "a" * n
    yield "spaces", " " * n
    yield "'-'", "-" * n
    yield "base64", base64.b64encode(random.Random(7).randbytes(n * 3 // 4)).decode()


def measure_pathological(mib: int) -> None:
    redactor = Redactor.default()
    print(f"\n== redaction of {mib} MiB strings (MB/s)")
    for name, text in pathological(mib):
        mb = len(text) / 1e6
        seconds, _ = timed(lambda: redactor.redact_text(text))  # noqa: B023
        interaction = Interaction(Request("POST", "https://api.example.test/v1/x", {"content-type": "text/plain"},
                                          Payload("text", text)))
        whole, _ = timed(lambda: redactor.redact_interaction(interaction))  # noqa: B023
        as_json = Interaction(Request("POST", "https://api.example.test/v1/x", dict(HEADERS),
                                      Payload.json({"input": text})))
        json_seconds, _ = timed(lambda: redactor.redact_interaction(as_json))  # noqa: B023
        print(f"  {name:8} redact_text {mb / seconds:7.1f}   redact_interaction: text body {mb / whole:7.1f},"
              f" JSON body {mb / json_seconds:7.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[2, 21, 210], help="cassette sizes in MB")
    parser.add_argument("--pathological-mib", type=int, default=64)
    parser.add_argument("--no-subprocess", action="store_true", help="skip timing `cassette validate` as a process")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    # Every load parses: a parse-cache hit would skip the YAML parse (and a
    # miss would add writing a cache entry the size of the cassette).
    os.environ[CACHE_SWITCH_ENV] = "0"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; MB = 10^6 bytes of YAML")
    with tempfile.TemporaryDirectory(prefix="llmock-keyscan-") as tmp:
        for megabytes in args.sizes:
            measure(megabytes, Path(tmp), args.seed, not args.no_subprocess)
    if args.pathological_mib:
        measure_pathological(args.pathological_mib)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
