"""The replay engine's own HTTP/1.1 server on the wire: connections spoken by hand
(raw bytes out, h11 reading the answers strictly), and what it hands to aiohttp."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import h11
import pytest

from llmock_proxy.cassette.model import Interaction, Payload, Request, Response, WebSocketSession, WSClose, WSMessage
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.catalog import identify
from llmock_proxy.replay.fixture import fixture_from_interaction
from llmock_proxy.replay.llmock_format import parse_fixture_entries
from llmock_proxy.replay.plan import Timing
from llmock_proxy.replay.server import ReplayEngine
from llmock_proxy.replay.session import ReplaySession

HELLO = "Hello there, friend!"
BIG = "big answer " * 60_000  # 660 kB: more than a transport buffers before it pauses the writer
REALTIME_URL = "ws://127.0.0.1/v1/realtime?model=gpt-realtime"

FIXTURES: dict[str, Any] = {
    "fixtures": [
        {"match": {"userMessage": "hello"}, "response": {"content": HELLO}},
        {"match": {"userMessage": "goodbye"}, "response": {"content": "Goodbye!"}},
        {"match": {"userMessage": "big"}, "response": {"content": BIG}},
        # One chunk every 25 ms after the first (at 25 ms).
        {"match": {"userMessage": "paced"}, "response": {"content": "abcdefghij"}, "chunkSize": 2,
         "streamingProfile": {"ttft": 25, "tps": 40}},
        {"match": {"userMessage": "slow"}, "response": {"content": "abcdefghij" * 10}, "chunkSize": 2,
         "streamingProfile": {"ttft": 10, "tps": 20}},
        {"match": {"userMessage": "truncated"}, "response": {"content": "abcdefghij"}, "chunkSize": 2,
         "truncateAfterChunks": 3},
        {"match": {"userMessage": "disconnected"}, "response": {"content": "abcdefghij"}, "chunkSize": 2,
         "latency": 20, "disconnectAfterMs": 50},
    ]
}


def websocket_recording() -> Interaction:
    request = Request("GET", REALTIME_URL, {"upgrade": "websocket", "connection": "Upgrade"})
    provider = identify("GET", REALTIME_URL, request.headers)
    session = WebSocketSession(
        [WSMessage(False, Payload.json({"type": "session.created", "session": {"id": "sess_1"}}), t=0.0)],
        close=WSClose(1000, "done", "server", 5.0),
    )
    return Interaction(request, Response(101, websocket=session), match=derive_match(provider.canonical(request)))


@pytest.fixture
async def engine() -> AsyncIterator[ReplayEngine]:
    fixtures = parse_fixture_entries(FIXTURES, "http.json")
    fixtures.append(fixture_from_interaction(websocket_recording(), "ws.yaml: interactions[0]"))
    server = ReplayEngine(ReplaySession(fixtures), timing=Timing.parse("recorded"))
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


def chat(question: str, *, stream: bool = False) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": question}]}
                      ).encode()


def post(body: bytes, *, version: str = "1.1", extra: str = "", target: str = "/v1/chat/completions") -> bytes:
    return (
        f"POST {target} HTTP/{version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-test-wire\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    # Each piece of body as h11 read it: (which read off the socket brought it,
    # bytes, whether a chunk ended with it).
    pieces: list[tuple[int, bytes, bool]] = field(default_factory=list)
    error: h11.RemoteProtocolError | None = None  # the body broke off

    @property
    def text(self) -> str:
        return self.body.decode()


class Wire:
    """One client connection: raw request bytes out, h11 reading the answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.reads = 0  # reads off the socket so far

    @classmethod
    async def open(cls, engine: ReplayEngine) -> Wire:
        return cls(*await asyncio.open_connection("127.0.0.1", engine.port))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.reader.read(65536))
            self.reads += 1

    async def answer(self, method: str = "POST") -> Answer:
        """The next answer (h11 is told of the request it answers; the bytes went out already)."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        self.h11.send(h11.Request(method=method, target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
        self.h11.send(h11.EndOfMessage())
        head = await self.event()
        while isinstance(head, h11.InformationalResponse):
            head = await self.event()
        assert isinstance(head, h11.Response), head
        answer = Answer(head.status_code, {k.decode(): v.decode() for k, v in head.headers})
        try:
            while not isinstance(event := await self.event(), h11.EndOfMessage):
                answer.pieces.append((self.reads, event.data, event.chunk_end))
        except h11.RemoteProtocolError as exc:
            answer.error = exc
        answer.body = b"".join(piece for _, piece, _ in answer.pieces)
        return answer

    async def closed(self) -> bool:
        """Whether the server ends the connection (rather than sending more)."""
        return await self.reader.read(65536) == b""

    def close(self) -> None:
        self.writer.close()


def sse_texts(body: bytes) -> list[str]:
    out = []
    for block in body.decode().split("\n\n"):
        if block.startswith("data: {"):
            choice = json.loads(block[len("data: "):])["choices"]
            if choice and choice[0]["delta"].get("content"):
                out.append(choice[0]["delta"]["content"])
    return out


# -- connections ----------------------------------------------------------------------------------------


async def test_a_keep_alive_connection_carries_request_after_request(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    for question, expected in [("hello", HELLO), ("goodbye", "Goodbye!"), ("hello", HELLO)]:
        wire.send(post(chat(question)))
        answer = await wire.answer()
        assert answer.status == 200 and expected in answer.text
        assert int(answer.headers["content-length"]) == len(answer.body)
    wire.close()


async def test_pipelined_requests_are_answered_in_order(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(post(chat("goodbye")) + post(chat("paced", stream=True)) + post(chat("hello")))
    first, second, third = [await wire.answer() for _ in range(3)]
    assert "Goodbye!" in first.text
    assert "".join(sse_texts(second.body)) == "abcdefghij"  # a timed stream holds the next answer back
    assert HELLO in third.text
    wire.close()


async def test_a_pipelined_flood_the_client_does_not_read_waits_and_then_arrives_whole(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(post(chat("big")) * 12)  # about 8 MB of answers before the client reads any
    for _ in range(12):
        answer = await wire.answer()
        assert answer.status == 200 and json.loads(answer.body)["choices"][0]["message"]["content"] == BIG
    wire.send(post(chat("hello")))
    assert HELLO in (await wire.answer()).text
    wire.close()


async def test_connection_close_and_http_1_0_end_the_connection_after_the_answer(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(post(chat("hello"), extra="Connection: close\r\n"))
    answer = await wire.answer()
    assert HELLO in answer.text and answer.headers["connection"] == "close"
    assert await wire.closed()

    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    writer.write(post(chat("hello"), version="1.0"))
    raw = await reader.read()  # to the end of the connection
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ") and HELLO.encode() in body
    assert f"Content-Length: {len(body)}".encode() in head
    writer.close()


async def test_a_stream_to_an_http_1_0_client_ends_with_the_connection(engine: ReplayEngine) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port)
    writer.write(post(chat("paced", stream=True), version="1.0", extra="Connection: keep-alive\r\n"))
    raw = await reader.read()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ") and b"chunked" not in head.lower()
    assert "".join(sse_texts(body)) == "abcdefghij" and body.endswith(b"data: [DONE]\n\n")
    writer.close()


async def test_head_gets_the_head_alone_and_the_connection_goes_on(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(b"HEAD /__llmock/health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await wire.answer("HEAD")
    assert answer.status == 200 and int(answer.headers["content-length"]) > 0 and answer.body == b""
    wire.send(post(chat("hello")))  # no stray body bytes in between
    assert HELLO in (await wire.answer()).text
    wire.close()


# -- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 300000000\r\n\r\n", 413),
    ],
)
async def test_a_request_that_cannot_be_served_is_answered_and_the_connection_closed(
    engine: ReplayEngine, data: bytes, status: int
) -> None:
    wire = await Wire.open(engine)
    wire.send(data)
    answer = await wire.answer()
    assert answer.status == status and answer.headers["connection"] == "close"
    assert "llmock-proxy" in json.loads(answer.body)["error"]["message"]
    assert await wire.closed()


# -- handed to aiohttp ----------------------------------------------------------------------------------


async def test_a_chunked_request_body_is_read_by_aiohttp_on_the_same_connection(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(post(chat("goodbye")))
    assert "Goodbye!" in (await wire.answer()).text
    body = chat("hello")
    wire.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (10, body[:10])
              + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - 10, body[10:]))
    answer = await wire.answer()
    assert answer.status == 200 and HELLO in answer.text
    wire.send(post(chat("goodbye")))  # aiohttp keeps the connection
    assert "Goodbye!" in (await wire.answer()).text
    wire.close()


async def test_expect_100_continue_is_answered_before_the_body_is_sent(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    body = chat("hello")
    wire.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    wire.h11.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    wire.h11.send(h11.EndOfMessage())
    informational = await wire.event()
    assert isinstance(informational, h11.InformationalResponse) and informational.status_code == 100
    wire.send(body)
    response = await wire.event()
    assert isinstance(response, h11.Response) and response.status_code == 200
    data = await wire.event()
    assert HELLO in data.data.decode()
    wire.close()


async def test_a_websocket_upgrade_is_replayed_by_aiohttp(engine: ReplayEngine) -> None:
    async with aiohttp.ClientSession() as client, client.ws_connect(
        f"http://127.0.0.1:{engine.port}/v1/realtime?model=gpt-realtime", headers={"Authorization": "Bearer sk-test-ws"}
    ) as ws:
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.TEXT and json.loads(message.data)["type"] == "session.created"
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1000


# -- timed answers --------------------------------------------------------------------------------------


async def test_a_paced_stream_arrives_chunk_by_chunk_in_order(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(post(chat("paced", stream=True)))
    answer = await wire.answer()
    assert answer.status == 200 and answer.headers["transfer-encoding"] == "chunked"
    assert answer.error is None and answer.body.endswith(b"data: [DONE]\n\n")
    # Each event due at its own moment is its own chunk, and came off the socket
    # in a read of its own: it was sent when it was due, not with the others.
    events = [piece for _, piece, _ in answer.pieces]
    assert all(end for _, _, end in answer.pieces)
    assert [sse_texts(piece) for piece in events[1:6]] == [["ab"], ["cd"], ["ef"], ["gh"], ["ij"]]
    reads = [read for read, _, _ in answer.pieces[1:6]]
    assert len(set(reads)) == len(reads), reads
    wire.close()


async def test_truncate_after_chunks_cuts_the_connection_after_that_many(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(post(chat("truncated", stream=True)))
    answer = await wire.answer()
    assert answer.status == 200 and answer.error is not None  # the body never ends
    assert b"[DONE]" not in answer.body and answer.body.count(b"data: ") == 3
    wire.close()


async def test_disconnect_after_ms_cuts_the_connection_mid_stream(engine: ReplayEngine) -> None:
    wire = await Wire.open(engine)
    wire.send(post(chat("disconnected", stream=True)))
    answer = await wire.answer()  # a chunk every 20 ms, cut at 50 ms
    assert answer.status == 200 and answer.error is not None
    assert b"[DONE]" not in answer.body and 0 < answer.body.count(b"data: ") < 7
    wire.close()


class _Seen(logging.Handler):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_client_hanging_up_mid_stream_is_logged_and_the_next_client_is_served(
    engine: ReplayEngine, caplog: pytest.LogCaptureFixture
) -> None:
    left = _Seen("client left POST /v1/chat/completions")
    logger = logging.getLogger("llmock_proxy.replay")
    logger.addHandler(left)
    try:
        with caplog.at_level(logging.INFO, logger="llmock_proxy.replay"):
            wire = await Wire.open(engine)
            wire.send(post(chat("slow", stream=True)))
            wire.h11.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
            wire.h11.send(h11.EndOfMessage())
            assert isinstance(await wire.event(), h11.Response)
            assert isinstance(await wire.event(), h11.Data)  # the first chunk is in: hang up
            wire.close()
            await asyncio.wait_for(left.event.wait(), 10)
            again = await Wire.open(engine)
            again.send(post(chat("slow", stream=True)))
            answer = await again.answer()
            assert answer.error is None and "".join(sse_texts(answer.body)) == "abcdefghij" * 10
            again.close()
    finally:
        logger.removeHandler(left)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


class _BrokenEngine(ReplayEngine):
    """An engine whose dispatch fails, standing in for any bug behind the transport."""

    def dispatch(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("dispatch broke")


async def test_a_failing_dispatch_is_a_500_saying_so_and_the_connection_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = _BrokenEngine(ReplaySession([]))
    await engine.start("127.0.0.1", 0)
    try:
        wire = await Wire.open(engine)
        for _ in range(2):
            wire.send(post(chat("hello")))
            with caplog.at_level(logging.ERROR, logger="llmock_proxy.replay"):
                answer = await wire.answer()
            assert answer.status == 500 and answer.headers["x-llmock-error"] == "1"
            assert "RuntimeError: dispatch broke" in answer.text
        wire.close()
    finally:
        await engine.stop()
    assert any("failed to replay" in r.getMessage() for r in caplog.records)
