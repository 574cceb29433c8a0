"""The record addon under load and when things go wrong, in an in-process mitmproxy.

Fifty parallel streams, upstream error statuses, an upstream that refuses
connections or dies mid-stream, a client that hangs up mid-stream, the host
allow-list, session file names and option errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette, EventStreamFrame, Payload
from llmock_proxy.mitm.record import Record, host_allowed, session_cassette_name
from llmock_proxy.wire.eventstream import encode_frame
from tests.fakes import Script
from tests.harness import clients as sdk
from tests.harness.http import httpx

CHAT_URL = f"{sdk.OPENAI_URL}/chat/completions"
OPENAI_HEADERS = {"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"}


def recording_proxy(
    proxy: Any, tmp_path: Path, fakes: list[Any], mode: str = "regular", router: bool = True, **options: Any
) -> tuple[Any, Record]:
    record = Record()
    mitm = proxy(
        mode,
        addons=[record],
        fakes=fakes,
        router=router,
        options={"llmock_cassette_dir": str(tmp_path / "cassettes"), "llmock_cassette": "c.yaml", **options},
    )
    return mitm, record


def recorded(record: Record, tmp_path: Path) -> Cassette:
    assert record.flush(60), "recordings did not finish"
    path = tmp_path / "cassettes" / "c.yaml"
    assert "sk-test-" not in path.read_text(encoding="utf-8")
    return cassette_store.load(path)


def chat_body(text: str, stream: bool = True) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]}


# -- many at once ----------------------------------------------------------------------------------


async def test_fifty_parallel_streams_make_fifty_complete_interactions(proxy, fake_openai, tmp_path) -> None:
    fake_openai.script = Script(text="one two three four five six", first_event_delay=0.02, event_delay=0.01)
    mitm, record = recording_proxy(proxy, tmp_path, [fake_openai])

    async with sdk.async_openai_client(mitm) as client:

        async def ask(i: int) -> str:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": f"request {i}"}]
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        answers = await asyncio.gather(*(ask(i) for i in range(50)))
    assert answers == [fake_openai.script.text] * 50

    interactions = (await asyncio.to_thread(recorded, record, tmp_path)).interactions
    assert len(interactions) == 50
    assert sorted(i.match["userMessage"] for i in interactions) == sorted(f"request {i}" for i in range(50))
    for interaction in interactions:
        assert interaction.incomplete is None and interaction.error is None
        assert interaction.response.status == 200
        assert interaction.summary["text"] == fake_openai.script.text
        assert interaction.response.events[-1].data == "[DONE]"
    assert not mitm.errors()


# -- upstream failures ------------------------------------------------------------------------------


def test_upstream_error_statuses_are_recorded_as_they_were(proxy, fake_openai, fake_anthropic, tmp_path, sdk_clients) -> None:
    mitm, record = recording_proxy(proxy, tmp_path, [fake_openai, fake_anthropic])
    fake_openai.queue(Script(error_status=429, error_message="Rate limit reached"))
    with pytest.raises(openai.RateLimitError):
        sdk_clients.openai(mitm).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    fake_anthropic.queue(Script(error_status=500, error_message="Internal server error"))
    with pytest.raises(anthropic.InternalServerError):
        sdk_clients.anthropic(mitm).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True
        )

    limited, failed = recorded(record, tmp_path).interactions
    assert limited.response.status == 429
    assert limited.response.json["error"]["message"] == "Rate limit reached"
    assert limited.summary["error"]["status"] == 429
    assert limited.match["family"] == "openai.chat"
    assert failed.response.status == 500
    assert failed.response.json["error"]["type"] == "api_error"
    assert failed.summary["error"]["message"] == "Internal server error"
    assert failed.match["stream"] is True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_recorded_as_an_error(proxy, tmp_path, sdk_clients) -> None:
    port = _closed_port()
    mitm, record = recording_proxy(proxy, tmp_path, [], mode=f"reverse:http://127.0.0.1:{port}", router=False)
    reply = sdk_clients.raw().post(f"{mitm.url}/v1/chat/completions", json=chat_body("hi", stream=False), headers=OPENAI_HEADERS)
    assert reply.status_code == 502

    (interaction,) = recorded(record, tmp_path).interactions
    assert interaction.response is None
    assert "refused" in interaction.error.lower() or "connect call failed" in interaction.error.lower()
    assert interaction.request.url == f"http://127.0.0.1:{port}/v1/chat/completions"
    assert interaction.match["family"] == "openai.chat"


def test_upstream_dying_mid_stream_is_incomplete(proxy, fake_openai, tmp_path, sdk_clients) -> None:
    mitm, record = recording_proxy(proxy, tmp_path, [fake_openai])
    fake_openai.queue(Script(text="a b c d e f g h", disconnect_after_events=3))
    with pytest.raises(httpx.TransportError):  # the proxy cuts the client off too
        with sdk_clients.raw(mitm).stream("POST", CHAT_URL, json=chat_body("hi"), headers=OPENAI_HEADERS) as response:
            response.read()

    (interaction,) = recorded(record, tmp_path).interactions
    assert interaction.incomplete
    assert len(interaction.response.events) == 3
    assert "finish_reason" not in interaction.summary


# -- client hang-ups ------------------------------------------------------------------------------------


def test_client_hanging_up_mid_stream_is_incomplete_and_the_proxy_serves_on(proxy, fake_openai, tmp_path, sdk_clients) -> None:
    mitm, record = recording_proxy(proxy, tmp_path, [fake_openai])
    fake_openai.queue(Script(text=" ".join(f"w{i}" for i in range(40)), event_delay=0.03))
    with sdk_clients.raw(mitm).stream("POST", CHAT_URL, json=chat_body("first"), headers=OPENAI_HEADERS) as response:
        seen = b""
        for chunk in response.iter_raw():
            seen += chunk
            # Leave once the event with "w1" is whole (a read may end inside
            # an event, which is then rightly not recorded); closing the
            # stream drops the connection.
            if b"\n\n" in seen.partition(b"w1")[2]:
                break
    answer = sdk_clients.openai(mitm).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "second"}])
    assert answer.choices[0].message.content == fake_openai.script.text

    interactions = recorded(record, tmp_path).interactions
    by_message = {i.match["userMessage"]: i for i in interactions}
    left = by_message["first"]
    assert left.incomplete == "Client disconnected."
    assert 2 <= len(left.response.events) < 40
    assert left.summary["text"].startswith("w0 w1")
    assert by_message["second"].incomplete is None
    assert not mitm.errors()


# -- what is recorded where --------------------------------------------------------------------------


def test_host_allow_list(proxy, fake_openai, fake_anthropic, tmp_path, sdk_clients) -> None:
    mitm, record = recording_proxy(proxy, tmp_path, [fake_openai, fake_anthropic], llmock_hosts=["*.anthropic.com"])
    sdk_clients.openai(mitm).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    sdk_clients.anthropic(mitm).messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    (interaction,) = recorded(record, tmp_path).interactions
    assert interaction.match["family"] == "anthropic.messages"

    assert host_allowed([], "anything.example", 443)
    assert host_allowed(["api.openai.com"], "API.OpenAI.com", 443)
    assert host_allowed(["127.0.0.1:8443"], "127.0.0.1", 8443)
    assert not host_allowed(["127.0.0.1:8443"], "127.0.0.1", 9000)


def test_default_cassette_is_one_new_file_per_session(proxy, fake_openai, tmp_path, sdk_clients, caplog) -> None:
    record = Record()
    mitm = proxy(addons=[record], fakes=[fake_openai], options={"llmock_cassette_dir": str(tmp_path / "out")})
    with caplog.at_level(logging.INFO, logger="llmock_proxy"):
        sdk_clients.openai(mitm).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert record.flush(30)
    (path,) = (tmp_path / "out").glob("*.yaml")
    assert path == record.cassette_path
    assert path.name.startswith("rec-")
    assert len(cassette_store.load(path).interactions) == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("llmock: recorded")]
    assert lines == [f"llmock: recorded openai.chat gpt-4o-mini 200 body -> {path}"]


def test_session_names_never_collide() -> None:
    names = {session_cassette_name() for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith("rec-") and name.endswith(".yaml") for name in names)


def test_options_and_a_bad_rules_file(tmp_path) -> None:
    record = Record()
    with taddons.context(record) as tctx:
        tctx.configure(record, llmock_cassette_dir=str(tmp_path), llmock_cassette="mine.yaml")
        assert record.cassette_path == tmp_path / "mine.yaml"
        missing = tmp_path / "no-such-rules.yaml"
        with pytest.raises(exceptions.OptionsError) as failure:
            tctx.configure(record, llmock_redact=str(missing))
        assert "llmock_redact" in str(failure.value) and "no-such-rules.yaml" in str(failure.value)
        rules = tmp_path / "rules.yaml"
        rules.write_text("headers: [x-internal]\n")
        tctx.configure(record, llmock_redact=str(rules))
        record.done()


# -- content-encoding on the wire ----------------------------------------------------------------------


async def test_a_gzip_encoded_stream_is_recorded_decoded_and_passed_on_untouched(proxy, tmp_path) -> None:
    """An upstream that gzips its SSE stream (flushing after every event): the
    client gets the compressed bytes as they come, the cassette the events."""
    import zlib

    from aiohttp import web

    chunks = [{"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
              for word in ("Hello", " from", " gzip")]
    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
    sent: list[bytes] = []

    async def upstream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "content-encoding": "gzip"})
        await response.prepare(request)
        compressor = zlib.compressobj(wbits=31)  # gzip framing
        for event in events:
            piece = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
            sent.append(piece)
            await response.write(piece)
            await asyncio.sleep(0.01)
        tail = compressor.flush()
        sent.append(tail)
        await response.write(tail)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        mitm, record = recording_proxy(proxy, tmp_path, [], mode=f"reverse:http://127.0.0.1:{port}", router=False)
        async with sdk.async_raw_client() as client:
            async with client.stream("POST", f"{mitm.url}/v1/chat/completions", json=chat_body("zip"),
                                     headers={**OPENAI_HEADERS, "accept-encoding": "gzip"}) as response:
                assert response.headers["content-encoding"] == "gzip"
                received = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await runner.cleanup()
    assert received == b"".join(sent)  # passed on as it came, still compressed
    (interaction,) = (await asyncio.to_thread(recorded, record, tmp_path)).interactions
    assert [e.data for e in interaction.response.events] == [*chunks, "[DONE]"]
    assert "content-encoding" not in interaction.response.headers
    assert interaction.summary["text"] == "Hello from gzip"
    assert interaction.incomplete is None


STREAM_KINDS = {
    # content type, the first item, the rest
    "sse": ("text/event-stream", b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\ndata: [DONE]\n\n'),
    "ndjson": ("application/x-ndjson", b'{"n": 1}\n', b'{"n": 2, "done": true}\n'),
    "eventstream": ("application/vnd.amazon.eventstream",
                    encode_frame(EventStreamFrame({":event-type": "chunk", ":message-type": "event"}, Payload.json({"n": 1}))),
                    encode_frame(EventStreamFrame({":event-type": "chunk", ":message-type": "event"}, Payload.json({"n": 2})))),
}


@pytest.mark.parametrize("kind", list(STREAM_KINDS))
async def test_streams_are_never_buffered(proxy, tmp_path, kind: str) -> None:
    """The upstream sends its first item and waits until the client has it:
    a proxy that buffered the body would never let the first item through."""
    from aiohttp import web

    content_type, first, rest = STREAM_KINDS[kind]
    client_has_first = asyncio.Event()

    async def upstream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": content_type})
        await response.prepare(request)
        await response.write(first)
        await asyncio.wait_for(client_has_first.wait(), 10)
        await response.write(rest)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", upstream)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        mitm, record = recording_proxy(proxy, tmp_path, [], mode=f"reverse:http://127.0.0.1:{port}", router=False)
        async with sdk.async_raw_client() as client:
            async with client.stream("POST", f"{mitm.url}/api/stream", json={"q": 1}) as response:
                received = b""
                async for chunk in response.aiter_raw():
                    received += chunk
                    if received.startswith(first):
                        client_has_first.set()
    finally:
        await runner.cleanup()
    assert received == first + rest
    (interaction,) = (await asyncio.to_thread(recorded, record, tmp_path)).interactions
    items = interaction.response.events or interaction.response.lines or interaction.response.frames
    assert len(items) == (3 if kind == "sse" else 2)
    assert interaction.response.wire_form == kind
