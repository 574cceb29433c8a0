"""The recorder and the cassette writer on their own, without mitmproxy.

The recorder is fed bytes the way a proxy tees them (split anywhere,
content-encoded) with a fake clock; the writer is driven from threads and
from separate processes, and killed with SIGKILL while writing.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import brotli
import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import (
    EventStreamFrame,
    Interaction,
    Payload,
    Request,
    Response,
)
from llmock_proxy.cassette.redact import Redactor, SecretFound
from llmock_proxy.cassette.writer import BackgroundWriter, CassetteWriter, lock_path_for
from llmock_proxy.errors import CassetteError
from llmock_proxy.record.recorder import Recorder, describe, stored_headers
from llmock_proxy.wire.eventstream import encode_frame

try:
    from compression import zstd
except ImportError:
    from backports import zstd

REPO = Path(__file__).resolve().parent.parent
TEST_KEY = "sk-test-recorder-key-0123456789"
CHAT_URL = "https://api.openai.com/v1/chat/completions"
CHAT_BODY = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Say hello"}]}
REQUEST_HEADERS = [
    ("Authorization", f"Bearer {TEST_KEY}"),
    ("Content-Type", "application/json"),
    ("Content-Length", "99"),
    ("Connection", "keep-alive"),
    ("Host", "api.openai.com"),
]


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


CHUNKS = [chat_chunk({"role": "assistant", "content": ""}), chat_chunk({"content": "Hel"}),
          chat_chunk({"content": "lo!"}), chat_chunk({}, "stop")]
SSE_BODY = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in CHUNKS) + b"data: [DONE]\r\n\r\n"


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


ENCODINGS = {
    None: lambda data: data,
    "gzip": gzip.compress,
    "deflate": _deflate,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def start_chat(recorder: Recorder) -> Any:
    return recorder.start("POST", CHAT_URL, REQUEST_HEADERS, json.dumps(CHAT_BODY).encode())


# -- the recorder ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_sse_tee_decodes_at_every_split_and_stamps_each_event(encoding) -> None:
    wire = ENCODINGS[encoding](SSE_BODY)
    expected_data = [*CHUNKS, "[DONE]"]
    for split in range(1, len(wire)):
        clock = FakeClock()
        recording = start_chat(Recorder(clock=clock))
        headers = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
        if encoding:
            headers.append(("Content-Encoding", encoding))
        assert recording.response_started(200, headers) is True
        head, tail = wire[:split], wire[split:]
        clock.now += 0.010
        assert recording.tee(head) is head  # passed on unchanged, at once
        clock.now += 0.020
        assert recording.tee(tail) is tail
        clock.now += 0.005
        assert recording.tee(b"") == b""
        interaction = recording.finish()
        events = interaction.response.events
        assert [e.data for e in events] == expected_data, (encoding, split)
        assert all(t in (10.0, 30.0, 35.0) for t in (e.t for e in events))
        assert [e.t for e in events] == sorted(e.t for e in events)
        assert interaction.incomplete is None


def test_events_are_stamped_when_they_complete() -> None:
    clock = FakeClock()
    recording = start_chat(Recorder(clock=clock))
    recording.response_started(200, {"content-type": "text/event-stream"})
    frames = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in CHUNKS]
    for index, frame in enumerate(frames):
        clock.now = 100.0 + 0.05 * (index + 1)
        half = len(frame) // 2
        recording.feed(frame[:half])
        clock.now += 0.001  # the event completes with its second half
        recording.feed(frame[half:])
    recording.feed(b"")
    interaction = recording.finish()
    assert [e.t for e in interaction.response.events] == [51.0, 101.0, 151.0, 201.0]
    assert interaction.summary["text"] == "Hello!"
    assert interaction.summary["finish_reason"] == "stop"
    assert describe(interaction) == "openai.chat gpt-4o-mini 200 4 events"


def test_request_is_stored_decoded_redacted_and_without_transfer_headers() -> None:
    body = json.dumps({**CHAT_BODY, "user": TEST_KEY}).encode()
    headers = [*REQUEST_HEADERS, ("Content-Encoding", "gzip"), ("X-Trace", "a"), ("x-trace", "b")]
    recording = Recorder().start("post", CHAT_URL, headers, gzip.compress(body))
    recording.response_started(200, [("Content-Type", "application/json"), ("Content-Length", "2")])
    interaction = recording.finish(b"{}")
    request = interaction.request
    assert request.method == "POST"
    assert request.json["messages"] == CHAT_BODY["messages"]
    assert request.json["user"] != TEST_KEY  # key-shaped values in bodies are redacted too
    assert request.headers["authorization"].startswith("Bearer ") and TEST_KEY not in request.headers["authorization"]
    assert request.headers["x-trace"] == "a, b"
    assert not {"content-length", "connection", "host", "content-encoding"} & set(request.headers)
    assert interaction.match["family"] == "openai.chat"
    assert interaction.match["userMessage"] == "Say hello"
    assert interaction.match["fingerprint"].startswith("sha256:")


def test_stored_headers_drop_hop_by_hop_and_length_headers() -> None:
    stored = stored_headers(
        [("Content-Encoding", "br"), ("Content-Length", "5"), ("Transfer-Encoding", "chunked"),
         ("Connection", "close"), ("Keep-Alive", "timeout=5"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
         ("X-Request-Id", "req_1")]
    )
    assert stored == {"set-cookie": "a=1, b=2", "x-request-id": "req_1"}


def test_whole_body_is_decoded_and_its_encoding_dropped() -> None:
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]}
    recording = Recorder().start("POST", CHAT_URL, REQUEST_HEADERS, json.dumps({**CHAT_BODY, "stream": False}).encode())
    teed = recording.response_started(
        200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("Content-Length", "10")]
    )
    assert teed is False  # sized, not a stream: the proxy buffers it and hands it over whole
    interaction = recording.finish(gzip.compress(json.dumps(answer).encode()))
    assert interaction.response.json == answer
    assert interaction.response.headers == {"content-type": "application/json"}
    assert interaction.summary["text"] == "Hi"


def test_chunked_plain_body_is_teed_and_stored_whole() -> None:
    answer = json.dumps({"object": "chat.completion", "choices": [{"index": 0, "message": {"content": "Hi"}}]}).encode()
    wire = gzip.compress(answer)
    recording = start_chat(Recorder())
    assert recording.response_started(200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")])
    for i in range(0, len(wire), 5):
        recording.feed(wire[i : i + 5])
    recording.feed(b"")
    interaction = recording.finish()
    assert interaction.response.json == json.loads(answer)
    assert interaction.response.wire_form == "body"


def test_unknown_content_encoding_keeps_the_bytes_and_says_so() -> None:
    recording = start_chat(Recorder())
    recording.response_started(200, [("Content-Type", "application/octet-stream"), ("Content-Encoding", "x-custom")])
    recording.feed(b"\x00\x01\xfe\xff")
    recording.feed(b"")
    interaction = recording.finish()
    assert interaction.response.body.kind == "base64"
    assert interaction.response.body.to_bytes() == b"\x00\x01\xfe\xff"
    assert interaction.response.headers["content-encoding"] == "x-custom"


def test_failure_before_any_response_is_an_error_interaction() -> None:
    recording = start_chat(Recorder())
    interaction = recording.fail("Connection refused")
    assert interaction.response is None
    assert interaction.error == "Connection refused"
    assert interaction.match["family"] == "openai.chat"
    assert interaction.summary is None


def test_break_mid_stream_is_incomplete_but_after_the_last_word_is_not() -> None:
    frames = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in CHUNKS]
    broken = start_chat(Recorder())
    broken.response_started(200, {"content-type": "text/event-stream"})
    broken.feed(frames[0] + frames[1] + frames[2][:10])
    interaction = broken.fail("Client disconnected.")
    assert interaction.incomplete == "Client disconnected."
    assert [e.data for e in interaction.response.events] == CHUNKS[:2]  # the half event is not invented

    finished = start_chat(Recorder())
    finished.response_started(200, {"content-type": "text/event-stream"})
    finished.feed(b"".join(frames))  # finish_reason arrived; [DONE] and the end did not
    interaction = finished.fail("Client disconnected.")
    assert interaction.incomplete is None
    assert interaction.summary["finish_reason"] == "stop"


def test_undecodable_eventstream_keeps_the_good_frames_and_marks_the_rest() -> None:
    good = [EventStreamFrame({":event-type": "chunk", ":message-type": "event"}, Payload.json({"n": i})) for i in range(3)]
    wire = [encode_frame(f) for f in good]
    corrupt = bytearray(wire[2])
    corrupt[-1] ^= 0xFF  # message CRC
    recording = Recorder().start("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke-with-response-stream", {}, b"{}")
    recording.response_started(200, {"content-type": "application/vnd.amazon.eventstream"})
    for chunk in (wire[0], wire[1], bytes(corrupt), wire[0]):
        assert recording.tee(chunk) == chunk  # the client still gets every byte
    recording.feed(b"")
    interaction = recording.finish()
    assert [f.payload.value for f in interaction.response.frames] == [{"n": 0}, {"n": 1}]
    assert interaction.incomplete.startswith("stream could not be decoded")


def test_ndjson_lines_with_timing() -> None:
    clock = FakeClock()
    recording = Recorder(clock=clock).start("POST", "http://localhost:11434/api/chat", {}, b'{"model":"llama3.2","messages":[]}')
    recording.response_started(200, {"content-type": "application/x-ndjson"})
    lines = [{"message": {"content": "Hi"}, "done": False}, {"message": {"content": ""}, "done": True, "done_reason": "stop"}]
    for line in lines:
        clock.now += 0.1
        recording.feed(json.dumps(line).encode() + b"\n")
    recording.feed(b"")
    interaction = recording.finish()
    assert [(x.data, x.t) for x in interaction.response.lines] == [(lines[0], 100.0), (lines[1], 200.0)]
    assert interaction.match["family"] == "ollama.chat"
    assert interaction.summary["text"] == "Hi"


# -- the cassette writer ---------------------------------------------------------------------------


def make_interaction(n: int, text: str = "") -> Interaction:
    return Interaction(
        request=Request("POST", "https://api.example.com/v1/things", {"content-type": "application/json"},
                        Payload.json({"n": n, "text": text})),
        response=Response(200, {"content-type": "application/json"}, Payload.json({"ok": n})),
        match={"family": "generic", "method": "POST"},
    )


def numbers(path: Path) -> list[int]:
    return [i.request.json["n"] for i in cassette_store.load(path).interactions]


def test_appends_keep_earlier_text_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    writer = CassetteWriter()
    writer.append(path, [make_interaction(0)])
    first = path.read_bytes()
    writer.append(path, [make_interaction(1), make_interaction(2)])
    second = path.read_bytes()
    assert second.startswith(first)  # nothing already written was serialized again
    assert numbers(path) == [0, 1, 2]
    assert lock_path_for(path).exists()


def test_a_file_changed_by_someone_else_is_reread_not_clobbered(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    writer = CassetteWriter()
    writer.append(path, [make_interaction(0)])
    edited = cassette_store.load(path)
    edited.interactions[0].match = {"family": "generic", "method": "POST", "note": "edited by hand"}
    edited.interactions.append(make_interaction(7))
    cassette_store.save(edited, path)
    writer.append(path, [make_interaction(1)])
    loaded = cassette_store.load(path)
    assert [i.request.json["n"] for i in loaded.interactions] == [0, 7, 1]
    assert loaded.interactions[0].match["note"] == "edited by hand"


def test_an_invalid_cassette_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\ninteractions:\n- request: {method: GET}\n")
    with pytest.raises(CassetteError) as failure:
        CassetteWriter().append(path, [make_interaction(0)])
    assert "broken.yaml" in str(failure.value)
    assert path.read_text() == "version: 1\ninteractions:\n- request: {method: GET}\n"


def test_a_secret_refuses_the_write(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    writer = CassetteWriter()
    writer.append(path, [make_interaction(0)])
    before = path.read_bytes()
    leaking = make_interaction(1)
    leaking.response = Response(200, {}, Payload.json({TEST_KEY: "a key used as a mapping key"}))
    with pytest.raises(SecretFound):
        writer.append(path, [leaking])
    assert path.read_bytes() == before


def test_threads_appending_to_one_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    writer = CassetteWriter()

    def work(base: int) -> None:
        for k in range(15):
            writer.append(path, [make_interaction(base + k)])

    threads = [threading.Thread(target=work, args=(100 * t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbers(path)) == sorted(100 * t + k for t in range(6) for k in range(15))


def _append_from_process(path: str, base: int, count: int) -> None:
    writer = CassetteWriter()
    for k in range(count):
        writer.append(path, [make_interaction(base + k)])


def test_processes_appending_to_one_file_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_append_from_process, args=(str(path), 1000 * p, 12)) for p in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert sorted(numbers(path)) == sorted(1000 * p + k for p in range(3) for k in range(12))


KILL_LOOP = """
import sys
from llmock_proxy.cassette.model import Interaction, Payload, Request, Response
from llmock_proxy.cassette.writer import CassetteWriter
writer = CassetteWriter()
n = 0
print("ready", flush=True)
while True:
    # Large-ish interactions so a kill lands inside a write now and then.
    body = Payload.json({"n": n, "text": "x" * 20000})
    writer.append(sys.argv[1], [Interaction(Request("POST", "https://api.example.com/x", {}, body),
                                            Response(200, {}, Payload.json({"ok": n})))])
    n += 1
"""


def test_sigkill_while_writing_always_leaves_a_valid_cassette(tmp_path: Path) -> None:
    path = tmp_path / "crash.yaml"
    counts = []
    for round_ in range(6):
        process = subprocess.Popen(
            [sys.executable, "-c", KILL_LOOP, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        assert process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while not path.exists() or len(numbers(path)) <= (counts[-1] if counts else 0):
            assert time.monotonic() < deadline, "the writer made no progress"
        time.sleep(0.003 * round_)  # land the kill at different points of a write
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        counts.append(len(numbers(path)))  # loads and validates, or raises
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_background_writer_batches_and_reports(tmp_path: Path) -> None:
    written: list[int] = []
    failed: list[str] = []
    background = BackgroundWriter(
        CassetteWriter(),
        on_written=lambda path, items: written.extend(i.request.json["n"] for i in items),
        on_failed=lambda path, items, exc: failed.append(type(exc).__name__),
    )
    path = tmp_path / "bg.yaml"
    for n in range(40):
        background.submit(path, make_interaction(n))
    leaking = make_interaction(99)
    leaking.response = Response(200, {}, Payload.json({TEST_KEY: 1}))
    background.submit(tmp_path / "other.yaml", leaking)
    assert background.close(30)
    assert numbers(path) == list(range(40))
    assert written == list(range(40))
    assert failed == ["SecretFound"]
    assert not (tmp_path / "other.yaml").exists()
    with pytest.raises(RuntimeError):
        background.submit(path, make_interaction(41))


def test_redaction_rules_file_is_applied(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("headers: [x-internal-token]\n")
    recorder = Recorder(redactor=Redactor.from_file(rules))
    recording = recorder.start("GET", "https://api.example.com/v1/x", {"X-Internal-Token": "abc123"})
    recording.response_started(200, {"content-type": "text/plain", "content-length": "2"})
    interaction = recording.finish(b"ok")
    assert interaction.request.headers["x-internal-token"] != "abc123"
    assert interaction.response.body.value == "ok"


def test_one_leaking_interaction_does_not_cost_the_others_queued_with_it(tmp_path: Path) -> None:
    written: list[int] = []
    failed: list[int] = []
    background = BackgroundWriter(
        CassetteWriter(),
        on_written=lambda path, items: written.extend(i.request.json["n"] for i in items),
        on_failed=lambda path, items, exc: failed.extend(i.request.json["n"] for i in items),
    )
    path = tmp_path / "shared.yaml"
    leaking = make_interaction(20)
    leaking.response = Response(200, {}, Payload.json({TEST_KEY: "a key used as a mapping key"}))
    # Hold the cassette's lock so everything below queues up as one batch.
    with open(lock_path_for(path), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for n in range(40):
            background.submit(path, leaking if n == 20 else make_interaction(n))
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert background.close(30)
    assert failed == [20]
    assert sorted(written) == [n for n in range(40) if n != 20]
    assert numbers(path) == [n for n in range(40) if n != 20]


def test_the_recorders_warnings_name_the_exchange_without_its_credentials(caplog: pytest.LogCaptureFixture) -> None:
    url = f"{CHAT_URL}?key={TEST_KEY}"
    with caplog.at_level("WARNING"):
        # A request its family cannot read, and an answer labelled gzip that is not.
        body = json.dumps({"model": "gpt-4o-mini", "messages": 5}).encode()
        recording = Recorder().start("POST", url, REQUEST_HEADERS, body)
        recording.response_started(
            200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip"), ("Content-Length", "15")]
        )
        recording.finish(b"not gzip either")
    warned = [r.getMessage() for r in caplog.records]
    assert any("keeping the body encoded" in w for w in warned), warned
    assert any("not understood" in w for w in warned), warned
    assert all(TEST_KEY not in w and "POST https://api.openai.com/v1/chat/completions?key=" in w
                          for w in warned), warned
