"""The replay engine over real HTTP: bodies, SSE, NDJSON, EventStream, timing, fixture options."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Any

import anthropic
import openai
import pytest
from botocore.eventstream import EventStreamBuffer

from llmock_proxy.canonical import Summary
from llmock_proxy.cassette.model import (
    EventStreamFrame,
    NDJSONLine,
    Payload,
    Response,
    SSEEvent,
)
from llmock_proxy.replay.llmock_format import parse_fixture_entries
from llmock_proxy.replay.plan import Planner, Timing, TimingError
from llmock_proxy.replay.session import Hit, ReplaySession
from llmock_proxy.wire import EventStreamDecoder, NDJSONDecoder, SSEDecoder
from tests.harness.clients import anthropic_client, openai_client
from tests.harness.http import httpx
from tests.support.replay import EngineThread, json_request, recorded, rendered

CONTROL = {"x-llmock-control": "1"}

CHAT = "https://api.openai.com/v1/chat/completions"
ANTHROPIC = "https://api.anthropic.com/v1/messages"
OLLAMA = "https://ollama.com/api/chat"
BEDROCK = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku/converse-stream"


def chat_body(text: str, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return body


def sse_recording(gaps_ms: list[float]) -> Response:
    """An OpenAI chat stream with the given gaps between its events."""
    words = [f"w{i} " for i in range(len(gaps_ms))]
    events, t = [], 0.0
    for i, (gap, word) in enumerate(zip(gaps_ms, words)):
        t += gap
        delta: dict[str, Any] = {"content": word}
        if i == 0:
            delta["role"] = "assistant"
        events.append(
            SSEEvent(
                data={"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                      "model": "gpt-4o-mini",
                      "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                t=t,
            )
        )
    events.append(
        SSEEvent(data={"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                       "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                 t=t)
    )
    events.append(SSEEvent(data="[DONE]", t=t))
    return Response(
        200,
        {"content-type": "text/event-stream; charset=utf-8", "x-request-id": "req_1",
         "content-length": "999", "content-encoding": "gzip"},
        events=events,
    )


def timed_read(url: str, body: dict[str, Any]) -> tuple[httpx.Response, list[tuple[float, bytes]]]:
    """POST and return (response, [(seconds since send, chunk)])."""
    chunks: list[tuple[float, bytes]] = []
    with httpx.Client(trust_env=False, timeout=10) as client:
        start = time.perf_counter()
        with client.stream("POST", url, json=body) as response:
            for chunk in response.iter_raw():
                chunks.append((time.perf_counter() - start, chunk))
    return response, chunks


def sse_arrivals(chunks: list[tuple[float, bytes]]) -> list[tuple[float, SSEEvent]]:
    decoder = SSEDecoder()
    out = []
    for at, chunk in chunks:
        out.extend((at, event) for event in decoder.feed(chunk))
    return out + [(chunks[-1][0], e) for e in decoder.close()]


# -- verbatim streams ------------------------------------------------------------------------


def test_sse_events_replay_verbatim_with_recorded_headers() -> None:
    request = json_request(CHAT, chat_body("count", stream=True))
    recording = sse_recording([0, 10, 10])
    session = ReplaySession([recorded(request, recording)])
    with EngineThread(session) as engine:
        response, chunks = timed_read(f"{engine.url}/v1/chat/completions", chat_body("count", stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-request-id"] == "req_1"
    assert "content-encoding" not in response.headers  # recorded bodies are stored decoded
    assert "content-length" not in response.headers  # a stream: chunked
    replayed = [event for _, event in sse_arrivals(chunks)]
    expected = recording.events
    assert [(e.event, e.data) for e in replayed] == [(e.event, e.data) for e in expected]  # type: ignore[union-attr]


def test_recorded_timing_keeps_the_gaps() -> None:
    gaps = [60.0, 90.0, 40.0, 120.0]
    request = json_request(CHAT, chat_body("slow", stream=True))
    session = ReplaySession([recorded(request, sse_recording(gaps))])
    with EngineThread(session, timing="recorded") as engine:
        _, chunks = timed_read(f"{engine.url}/v1/chat/completions", chat_body("slow", stream=True))
    arrivals = [at * 1000 for at, event in sse_arrivals(chunks)][: len(gaps)]
    offsets = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    # Never early (deadlines count from the request's arrival, after the
    # client started its clock), and late by a generous margin at most; the
    # real accuracy figures come from benchmarks/replay_throughput.py.
    for got, want in zip(arrivals, offsets):
        assert want - 1 <= got <= want + 100, (arrivals, offsets)
    gap_errors = sorted(abs((b - a) - (wb - wa)) for a, b, wa, wb in zip(arrivals, arrivals[1:], offsets, offsets[1:]))
    assert gap_errors[len(gap_errors) // 2] <= 15, gap_errors


def test_instant_and_scaled_timing() -> None:
    gaps = [0.0, 200.0, 200.0]  # the recording takes 400 ms
    request = json_request(CHAT, chat_body("slow", stream=True))
    fixture = recorded(request, sse_recording(gaps))
    with EngineThread(ReplaySession([fixture]), timing="instant") as engine:
        _, chunks = timed_read(f"{engine.url}/v1/chat/completions", chat_body("slow", stream=True))
    assert chunks[-1][0] < 0.200
    with EngineThread(ReplaySession([fixture]), timing="scale:0.5") as engine:
        _, chunks = timed_read(f"{engine.url}/v1/chat/completions", chat_body("slow", stream=True))
    assert 0.199 <= chunks[-1][0] < 0.380


def test_timing_parse() -> None:
    assert Timing.parse("recorded").factor == 1.0
    assert Timing.parse("instant").factor == 0.0
    assert Timing.parse("scale:2.5").factor == 2.5
    for bad in ("fast", "scale:", "scale:-1", "scale:x"):
        with pytest.raises(TimingError, match="recorded, instant or scale:X"):
            Timing.parse(bad)


def test_ndjson_lines_replay_verbatim() -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}  # Ollama streams by default
    lines = [
        NDJSONLine({"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": "Hel"}, "done": False}, t=1),
        NDJSONLine({"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": "lo"}, "done": False}, t=2),
        NDJSONLine({"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}, t=3),
    ]
    recording = Response(200, {"content-type": "application/x-ndjson"}, lines=lines)
    session = ReplaySession([recorded(json_request(OLLAMA, body), recording)])
    with EngineThread(session) as engine:
        response, chunks = timed_read(f"{engine.url}/api/chat", body)
    assert response.headers["content-type"] == "application/x-ndjson"
    decoder = NDJSONDecoder()
    got = [line.data for _, c in chunks for line in decoder.feed(c)] + [x.data for x in decoder.close()]
    assert got == [line.data for line in lines]


def test_eventstream_frames_replay_verbatim() -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    frames = [
        EventStreamFrame({":event-type": "messageStart", ":content-type": "application/json",
                          ":message-type": "event"}, Payload.json({"role": "assistant"}), t=1),
        EventStreamFrame({":event-type": "contentBlockDelta", ":content-type": "application/json",
                          ":message-type": "event"},
                         Payload.json({"contentBlockIndex": 0, "delta": {"text": "Hello"}}), t=2),
        EventStreamFrame({":event-type": "messageStop", ":content-type": "application/json",
                          ":message-type": "event"}, Payload.json({"stopReason": "end_turn"}), t=3),
    ]
    recording = Response(200, {"content-type": "application/vnd.amazon.eventstream"}, frames=frames)
    session = ReplaySession([recorded(json_request(BEDROCK, body), recording)])
    with EngineThread(session) as engine:
        response, chunks = timed_read(
            f"{engine.url}/model/anthropic.claude-3-haiku/converse-stream", body
        )
    raw = b"".join(c for _, c in chunks)
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    # An independent parser (botocore's) accepts the frames, CRCs and all.
    parser = EventStreamBuffer()
    parser.add_data(raw)
    parsed = [(m.headers[":event-type"], json.loads(m.payload)) for m in parser]
    assert parsed == [(f.headers[":event-type"], f.payload.value) for f in frames]
    ours = EventStreamDecoder().feed(raw)
    assert [f.payload.value for f in ours] == [f.payload.value for f in frames]


# -- through the real SDKs -----------------------------------------------------------------------


def test_openai_sdk_gets_the_recorded_answer_and_the_synthesized_other_form() -> None:
    request = json_request(CHAT, chat_body("hello"))
    recording = rendered(request, Summary(text="Hi there, recorded.", finish_reason="stop"))
    session = ReplaySession([recorded(request, recording)])
    with EngineThread(session) as engine:
        client = openai_client(base_url=f"{engine.url}/v1")
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        assert answer.choices[0].message.content == "Hi there, recorded."
        assert answer.id == recording.json["id"]  # verbatim, not re-rendered
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "Hi there, recorded."


def test_miss_is_a_provider_shaped_421_the_sdk_does_not_retry() -> None:
    request = json_request(CHAT, chat_body("hello"))
    session = ReplaySession([recorded(request, rendered(request, Summary(text="Hi")))])
    with EngineThread(session) as engine:
        client = openai_client(base_url=f"{engine.url}/v1", max_retries=3)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "helo"}])
        assert caught.value.status_code == 421
        assert caught.value.response.headers["x-llmock-miss"] == "1"
        message = caught.value.body["message"]  # type: ignore[index]
        assert "no recording or fixture matches POST /v1/chat/completions" in message
        assert "userMessage: expected 'hello', got 'helo'" in message
        assert session.misses == 1  # one request: no retries
        aclient = anthropic_client(base_url=engine.url, max_retries=3)
        with pytest.raises(anthropic.APIStatusError) as caught_a:
            aclient.messages.create(model="claude-3-5-haiku-latest", max_tokens=10,
                                    messages=[{"role": "user", "content": "hello"}])
        assert caught_a.value.status_code == 421
        assert caught_a.value.body["type"] == "error"  # type: ignore[index]
        assert "family anthropic.messages" in caught_a.value.body["error"]["message"]  # type: ignore[index]
        assert session.misses == 2


def test_control_endpoints_reset_the_sequence() -> None:
    request = json_request(CHAT, chat_body("roll"))
    session = ReplaySession(
        [recorded(request, rendered(request, Summary(text=t)), f"t.yaml: interactions[{i}]")
         for i, t in enumerate(["one", "two"])]
    )
    with EngineThread(session) as engine, httpx.Client(trust_env=False) as http:
        def roll() -> str:
            r = http.post(f"{engine.url}/v1/chat/completions", json=chat_body("roll"))
            return r.json()["choices"][0]["message"]["content"]

        assert [roll(), roll(), roll()] == ["one", "two", "two"]
        health = http.get(f"{engine.url}/__llmock/health").json()
        assert health["status"] == "ok" and health["fixtures"] == 2 and health["hits"] == 3
        assert http.post(f"{engine.url}/__llmock/reset", headers=CONTROL).json()["reset"] is True
        assert roll() == "one"
        assert http.get(f"{engine.url}/__llmock/nope").status_code == 404


# -- fixture options ------------------------------------------------------------------------------


def fixture_session(**options: Any) -> ReplaySession:
    entry = {"match": {"userMessage": "tell"}, "response": {"content": "abcdefghijklmnopqrstuvwxyz"}, **options}
    return ReplaySession(parse_fixture_entries({"fixtures": [entry]}, "opts.json"))


def stream_text(engine: EngineThread) -> tuple[list[str], list[float], Exception | None]:
    deltas: list[str] = []
    times: list[float] = []
    error: Exception | None = None
    client = openai_client(base_url=f"{engine.url}/v1")
    start = time.perf_counter()
    try:
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
                times.append(time.perf_counter() - start)
    except (httpx.HTTPError, openai.APIError) as exc:
        error = exc
    return deltas, times, error


def test_chunk_size_cuts_the_synthesized_deltas() -> None:
    with EngineThread(fixture_session(chunkSize=5)) as engine:
        deltas, _, error = stream_text(engine)
    assert error is None
    assert deltas == ["abcde", "fghij", "klmno", "pqrst", "uvwxy", "z"]


def test_truncate_after_chunks_drops_the_connection() -> None:
    with EngineThread(fixture_session(chunkSize=5, truncateAfterChunks=3)) as engine:
        deltas, _, error = stream_text(engine)
    assert error is not None  # the stream broke off without its end
    assert "".join(deltas) in ("abcde", "abcdefghij")  # the first event carries the role only


def test_disconnect_after_ms_drops_the_connection() -> None:
    with EngineThread(fixture_session(chunkSize=5, latency=40, disconnectAfterMs=100), timing="recorded") as engine:
        deltas, _, error = stream_text(engine)
    assert error is not None
    assert 0 < len(deltas) < 6


def test_streaming_profile_paces_the_chunks() -> None:
    profile = {"ttft": 120, "tps": 50}  # first after 120 ms, then one per 20 ms
    with EngineThread(fixture_session(chunkSize=5, streamingProfile=profile), timing="recorded") as engine:
        deltas, times, error = stream_text(engine)
    assert error is None and "".join(deltas) == "abcdefghijklmnopqrstuvwxyz"
    # Event 0 (the role) after ttft, then one event per 20 ms: the k-th text
    # delta is event k. Deadlines are absolute, so these bounds never flake.
    for k, at in enumerate(times, start=1):
        assert at >= (120 + 20 * k) / 1000 - 0.001, times


def test_streaming_profile_jitter_varies_each_gap_within_its_bound() -> None:
    profile = {"ttft": 100, "tps": 10, "jitter": 0.5}  # gaps of 100 ms, each varied by up to 50%
    session = fixture_session(chunkSize=2, streamingProfile=profile)
    hit = session.resolve(json_request(CHAT, chat_body("tell me", stream=True)))
    assert isinstance(hit, Hit)
    offsets = [c.at_ms for c in Planner(Timing(), rng=random.Random(7)).plan(hit, 0.0).chunks]
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert len(gaps) >= 10
    assert all(50 <= gap <= 150 for gap in gaps), gaps
    assert len({round(gap, 3) for gap in gaps}) > len(gaps) // 2  # varied, not one fixed pace
    again = [c.at_ms for c in Planner(Timing(), rng=random.Random(7)).plan(hit, 0.0).chunks]
    assert again == offsets  # a seeded generator makes the jitter reproducible
    steady = fixture_session(chunkSize=2, streamingProfile={"ttft": 100, "tps": 10})
    steady_hit = steady.resolve(json_request(CHAT, chat_body("tell me", stream=True)))
    steady_offsets = [c.at_ms for c in Planner(Timing()).plan(steady_hit, 0.0).chunks]  # type: ignore[arg-type]
    assert {round(b - a, 6) for a, b in zip(steady_offsets, steady_offsets[1:])} == {100.0}


def test_latency_delays_a_body_answer() -> None:
    with EngineThread(fixture_session(latency=120), timing="recorded") as engine:
        client = openai_client(base_url=f"{engine.url}/v1")
        start = time.perf_counter()
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "tell"}])
        assert time.perf_counter() - start >= 0.115
        assert answer.choices[0].message.content == "abcdefghijklmnopqrstuvwxyz"


def test_two_engines_in_one_process_keep_separate_sequence_state() -> None:
    request = json_request(CHAT, chat_body("roll"))
    loaded = [recorded(request, rendered(request, Summary(text=t)), f"t.yaml: interactions[{i}]")
              for i, t in enumerate(["one", "two"])]
    with EngineThread(ReplaySession(loaded)) as first, EngineThread(ReplaySession(loaded)) as second, \
            httpx.Client(trust_env=False) as http:
        def roll(engine: EngineThread) -> str:
            answer = http.post(f"{engine.url}/v1/chat/completions", json=chat_body("roll")).json()
            return answer["choices"][0]["message"]["content"]

        assert [roll(first), roll(first), roll(second), roll(first), roll(second)] == ["one", "two", "one", "two", "two"]
        http.post(f"{first.url}/__llmock/reset", headers=CONTROL)
        assert [roll(first), roll(second)] == ["one", "two"]


# -- what must never take the engine down -----------------------------------------------------------


class _Signal(logging.Handler):
    """Sets an event when a log message containing ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_a_client_leaving_mid_stream_is_one_log_line_and_the_engine_serves_on(caplog: pytest.LogCaptureFixture) -> None:
    request = json_request(CHAT, chat_body("long", stream=True))
    session = ReplaySession([recorded(request, sse_recording([0.0] + [30.0] * 20))])
    left = _Signal("client left")
    logging.getLogger("llmock_proxy.replay").addHandler(left)
    try:
        with caplog.at_level(logging.INFO), EngineThread(session, timing="recorded") as engine:
            with httpx.Client(trust_env=False, timeout=10) as client:
                with client.stream("POST", f"{engine.url}/v1/chat/completions", json=chat_body("long", stream=True)) as response:
                    next(response.iter_raw())  # the first event, then hang up
            assert left.seen.wait(10), "the engine did not notice the client leaving"
            again = httpx.post(f"{engine.url}/v1/chat/completions", json=chat_body("long", stream=True), timeout=10)
            assert again.status_code == 200 and again.text.endswith("data: [DONE]\n\n")
    finally:
        logging.getLogger("llmock_proxy.replay").removeHandler(left)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


class _FailingSession(ReplaySession):
    """A session whose lookup fails, standing in for any bug or unforeseen input."""

    def resolve_raw(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Any:
        raise RuntimeError("the lookup broke")


def test_a_failing_lookup_is_a_provider_shaped_500_the_sdk_does_not_retry(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), EngineThread(_FailingSession()) as engine:
        client = openai_client(base_url=f"{engine.url}/v1", max_retries=3)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        assert caught.value.response.headers["x-llmock-error"] == "1"
        assert "RuntimeError: the lookup broke" in caught.value.body["message"]  # type: ignore[index]
        health = httpx.get(f"{engine.url}/__llmock/health").json()
        assert health["status"] == "ok"
    failures = [r for r in caplog.records if "failed to replay POST" in r.getMessage()]
    assert len(failures) == 1  # one request: x-should-retry kept the SDK from retrying


# -- chaos -------------------------------------------------------------------------------------------------


def test_chaos_drop_malformed_and_disconnect() -> None:
    def post(engine: EngineThread, **headers: str) -> httpx.Response:
        return httpx.post(f"{engine.url}/v1/chat/completions", json=chat_body("tell me"), headers=headers, timeout=10)

    with EngineThread(fixture_session(chaos={"dropRate": 1})) as engine:
        client = openai_client(base_url=f"{engine.url}/v1")
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me"}])
        assert caught.value.body["message"] == "Chaos: request dropped"  # type: ignore[index]
        assert post(engine, **{"x-llmock-chaos-drop": "0"}).json()["choices"][0]["message"]["content"]
    with EngineThread(fixture_session(chaos={"malformedRate": 1})) as engine:
        malformed = post(engine)
        assert malformed.status_code == 200 and malformed.text == "{malformed json: <<<chaos>>>"
    with EngineThread(fixture_session(chaos={"disconnectRate": 1})) as engine:
        with pytest.raises(httpx.RemoteProtocolError):
            post(engine)
    # No chaos in the fixture: a request header asks for it (llmock's x-llmock-chaos-*).
    with EngineThread(fixture_session()) as engine:
        assert post(engine, **{"x-llmock-chaos-malformed": "1"}).text == "{malformed json: <<<chaos>>>"
        assert post(engine, **{"x-llmock-chaos-drop": "often"}).status_code == 200  # not a number: ignored


def test_chaos_rates_are_probabilities() -> None:
    session = fixture_session(chaos={"dropRate": 0.3})
    hit = session.resolve(json_request(CHAT, chat_body("tell me")))
    assert isinstance(hit, Hit)
    planner = Planner(Timing(), rng=random.Random(3))
    dropped = sum(planner.plan(hit, 0.0).chaos == "drop" for _ in range(1000))
    assert 230 <= dropped <= 370, dropped


def test_a_body_that_is_not_a_json_object_is_a_400_naming_it() -> None:
    # Read as an empty conversation, it would be a 421 miss listing every candidate.
    request = json_request(CHAT, chat_body("hello"))
    session = ReplaySession([recorded(request, rendered(request, Summary(text="Hi")))])
    with EngineThread(session) as engine:
        for body, shown in ((b"{not json", "'{not json'"), (b"[1, 2]", "[1, 2]")):
            answer = httpx.post(f"{engine.url}/v1/chat/completions", content=body,
                                headers={"content-type": "application/json"}, timeout=10)
            assert answer.status_code == 400, answer.text
            assert answer.headers["x-llmock-miss"] == "1"
            assert answer.json()["error"]["message"] == (
                f"llmock-proxy could not read POST /v1/chat/completions: the body is not a JSON object: {shown}"
            )


def test_serve_in_auto_mode_refuses_an_unrecorded_websocket_upgrade_saying_why() -> None:
    import asyncio

    import websockets

    async def miss_handler(*_: Any) -> Any:  # would forward an HTTP miss; never a WebSocket one
        raise AssertionError("a WebSocket upgrade must not reach the miss handler")

    with EngineThread(ReplaySession([]), mode="auto", miss_handler=miss_handler) as engine:
        url = engine.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"

        async def connect() -> Any:
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url, open_timeout=10):
                    pass
            return refused.value.response

        response = asyncio.run(connect())
    assert response.status_code == 421
    assert response.headers["x-llmock-miss"] == "1"
    message = json.loads(response.body)["error"]["message"]
    assert "does not forward WebSocket sessions" in message and "llmock_mode=auto" in message
