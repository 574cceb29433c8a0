"""A decompression bomb against ``llmock-proxy serve``: memory, time, and the next client.

A request body of about 2 MB that gzip-decodes to 2 GB (zeros) is sent to
``serve`` twice per run: with a ``Content-Length`` (the engine's own HTTP/1.1
server reads it) and chunked (handed to aiohttp). Printed per way: the
status and the seconds to the answer, the server's peak resident memory
(``VmHWM``) once answered, and whether a normal request right after is
answered. Figures, not asserts; issue #13's part 6 ("decoded bodies are
size-capped ... with a clear 413").

``--source DIR`` runs the ``llmock_proxy`` package found in DIR instead of
this checkout's (e.g. an older commit unpacked with ``git archive``), so the
same lines can be printed before and after a change::

    git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python benchmarks/body_bomb.py --source /tmp/before
    .venv/bin/python benchmarks/body_bomb.py
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._servers import Server, free_port  # noqa: E402

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}
FIXTURES = {"fixtures": [{"match": {"userMessage": "ping"}, "response": {"content": "pong"}}]}
_PIECE = 1024 * 1024


def gzip_bomb(decoded: int) -> bytes:
    """gzip of ``decoded`` zero bytes, made a piece at a time (never held whole)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(_PIECE)
    out = [packer.compress(zeros) for _ in range(decoded // _PIECE)]
    return b"".join([*out, packer.compress(bytes(decoded % _PIECE)), packer.flush()])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 64 * 1024):
        piece = data[start : start + 64 * 1024]
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def post(port: int, body: bytes, *, chunked: bool, encoding: str | None, timeout: float) -> tuple[int, float]:
    """(status, seconds to the answer's head); status 0: the connection ended without one."""
    head = [b"POST /v1/chat/completions HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json",
            b"Connection: close"]
    if encoding:
        head.append(b"Content-Encoding: " + encoding.encode())
    head.append(b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body))
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
        try:
            for piece in (_chunks(body) if chunked else [body]):
                sock.sendall(piece)
        except OSError:
            pass  # the server may answer and close before the body is all sent
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    elapsed = time.perf_counter() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decoded-mb", type=int, default=2048, help="what the bomb decodes to (default 2048)")
    parser.add_argument("--source", type=Path, default=REPO, help="the directory holding the llmock_proxy to run")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    made = time.perf_counter()
    bomb = gzip_bomb(args.decoded_mb * 1024 * 1024)
    print(f"bomb: {len(bomb) / 1e6:.1f} MB of gzip decoding to {args.decoded_mb} MiB "
          f"(made in {time.perf_counter() - made:.1f} s); serve from {args.source}")
    normal = json.dumps(CHAT).encode()
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = Path(tmp) / "ping.json"
        fixtures.write_text(json.dumps(FIXTURES))
        env_path = os.pathsep.join([str(args.source), os.environ.get("PYTHONPATH", "")])
        os.environ["PYTHONPATH"] = env_path
        for chunked in (False, True):
            port = free_port()
            command = [sys.executable, "-c", "import sys; from llmock_proxy.cli import main; sys.exit(main())",
                       "serve", "--port", str(port), "--fixtures", str(fixtures), "--timing", "instant", "--quiet"]
            server = Server("serve", command, port, Path(tmp))
            try:
                before = peak_rss_mb(server.process.pid)
                status, seconds = post(port, bomb, chunked=chunked, encoding="gzip", timeout=args.timeout)
                peak = peak_rss_mb(server.process.pid) if server.process.poll() is None else float("nan")
                alive = server.process.poll() is None
                after = post(port, normal, chunked=False, encoding=None, timeout=30)[0] if alive else 0
            finally:
                server.stop()
            way = "chunked (aiohttp)" if chunked else "Content-Length  "
            print(f"  {way}: status {status} in {seconds:6.2f} s; serve's peak RSS {peak:7.1f} MB "
                  f"(idle {before:.1f} MB); next request: {after or 'no answer'}")


if __name__ == "__main__":
    main()
