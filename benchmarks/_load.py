"""A lean HTTP/1.1 load generator for the benchmarks: keep-alive connections on raw asyncio.

A benchmark measures the server; on a machine with two cores the client
shares the CPU with it, and an aiohttp client at concurrency 32 used up its
core before either server did, capping both at the same requests/s. This
client does what wrk does and little else: each connection sends a request,
reads the answer (Content-Length or chunked), records the latency and sends
the next one, all from ``data_received``: no task, no future, no response
object per request. Answers are only framed while timing; :func:`fetch`
reads one whole (status, headers, body) to check it first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def encode_request(method: str, path: str, headers: dict[str, str], body: bytes, host: str = "127.0.0.1") -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode() + body


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.answer: Answer | None = None  # head read, body pending
        self.length = 0  # body length; -1: chunked
        self.body_start = 0
        self.chunks: list[bytes] = []
        self.chunk_pos = 0
        self.waiter: asyncio.Future[Answer] | None = None
        # The timed loop (see run).
        self.make: Callable[[], bytes] | None = None
        self.until = 0.0
        self.latencies: list[float] = []
        self.started = 0.0
        self.finished: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"the server closed the connection ({exc})")
        for future in (self.waiter, self.finished):
            if future is not None and not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        while True:
            answer = self._parse()
            if answer is None:
                return
            if self.make is not None:
                now = time.perf_counter()
                self.latencies.append(now - self.started)
                if now < self.until:
                    self.started = now
                    self.transport.write(self.make())  # type: ignore[union-attr]
                else:
                    self.make = None
                    self.finished.set_result(None)  # type: ignore[union-attr]
            elif self.waiter is not None:
                waiter, self.waiter = self.waiter, None
                waiter.set_result(answer)

    def _parse(self) -> Answer | None:
        buffer = self.buffer
        if self.answer is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            lines = buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.answer = Answer(int(lines[0].split(" ", 2)[1]), headers, b"")
            self.body_start = self.chunk_pos = end + 4
            if "chunked" in headers.get("transfer-encoding", ""):
                self.length = -1
                self.chunks = []
            else:
                self.length = int(headers.get("content-length", "0"))
        if self.length >= 0:
            stop = self.body_start + self.length
            if len(buffer) < stop:
                return None
            body = buffer[self.body_start : stop]
        else:
            pos = self.chunk_pos
            while True:
                line_end = buffer.find(b"\r\n", pos)
                if line_end < 0:
                    self.chunk_pos = pos
                    return None
                size = int(buffer[pos:line_end].split(b";", 1)[0], 16)
                if len(buffer) < line_end + 2 + size + 2:
                    self.chunk_pos = pos
                    return None
                if size == 0:
                    stop = line_end + 4  # no trailers
                    break
                self.chunks.append(buffer[line_end + 2 : line_end + 2 + size])
                pos = line_end + 2 + size + 2
            body = b"".join(self.chunks)
        answer, self.answer = self.answer, None
        answer.body = body
        self.buffer = buffer[stop:]
        return answer

    async def request(self, data: bytes) -> Answer:
        """Send one request and read its whole answer."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)  # type: ignore[union-attr]
        return await self.waiter

    def run(self, make: Callable[[], bytes], until: float) -> asyncio.Future[None]:
        """Send ``make()`` again and again until ``until`` (perf_counter), each
        as soon as the answer before it is in; latencies go to ``self.latencies``."""
        self.finished = asyncio.get_running_loop().create_future()
        self.make, self.until = make, until
        self.started = time.perf_counter()
        self.transport.write(make())  # type: ignore[union-attr]
        return self.finished

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int) -> ClientConnection:
    _, protocol = await asyncio.get_running_loop().create_connection(ClientConnection, host, port)
    return protocol


async def fetch(host: str, port: int, data: bytes) -> Answer:
    """One request on a connection of its own."""
    connection = await connect(host, port)
    try:
        return await connection.request(data)
    finally:
        connection.close()
