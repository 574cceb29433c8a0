"""Recordings that survive a crash, and appends that never read a cassette whole.

* A ``mitmdump -s addons/record.py`` killed with SIGKILL right after its
  clients had N answers leaves a cassette that loads with all N: the
  recording worker holds every capture the proxy handed it and finishes
  them when the proxy is gone (a stream the client dropped at ``[DONE]``
  included).
* The worker keeps what a dead proxy handed over: a complete answer whose
  body never ended is recorded, an answer cut off mid-stream is not.
* Appends read no cassette whole: a stale or missing lock identity, or a
  file someone else wrote, costs a look at the file's layout (the writer's
  counters and its log line say which way an append went), and the
  interactions already there are kept byte for byte.
* The worker stamps ``t`` with the time bytes reached the proxy, not the
  time it got to them.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette, Interaction, Payload, Request, Response
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.writer import CassetteWriter, layout_of, lock_path_for
from llmock_proxy.errors import CassetteError
from llmock_proxy.mitm.record import Record
from llmock_proxy.record.capture import BodyChunk, CaptureBuilder, Ended, HeadArrived, Opened
from tests.fakes import Script
from tests.harness import clients as sdk

REPO = Path(__file__).resolve().parent.parent
RECORD_SCRIPT = REPO / "addons" / "record.py"
CHAT_URL = f"{sdk.OPENAI_URL}/chat/completions"
WORKER_LINE = re.compile(r"recording worker pid (\d+)")
REWRITTEN = "is rewritten whole"


def wait_for_exit(pid: int, timeout: float = 60.0) -> bool:
    """Whether process ``pid`` (not our child) ended within ``timeout``: its
    pidfd becomes readable when it does."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([handle], [], [], timeout)[0])
    finally:
        os.close(handle)


def start_recorder(mitmdump: Any, directory: Path, fakes: list[Any], name: str = "crash.yaml") -> Any:
    return mitmdump(
        scripts=[RECORD_SCRIPT], fakes=fakes,
        options={"llmock_cassette_dir": str(directory), "llmock_cassette": name},
    )


def user_messages(path: Path) -> list[str]:
    return [i.match["userMessage"] for i in cassette_store.load(path).interactions]


def chat(text: str, n: int = 0) -> Interaction:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return Interaction(
        request=Request("POST", CHAT_URL, {"content-type": "application/json"}, Payload.json(body)),
        response=Response(200, {"content-type": "application/json"}, Payload.json({"n": n, "text": "x" * 300})),
        match={"family": "openai.chat", "userMessage": text},
    )


# -- SIGKILL ----------------------------------------------------------------------------------------


def test_a_sigkilled_mitmdump_leaves_every_answered_interaction(mitmdump, fake_openai, tmp_path, sdk_clients) -> None:
    fake_openai.script = Script(text="one two three four", event_delay=0.005)
    process = start_recorder(mitmdump, tmp_path, [fake_openai])
    client = sdk_clients.openai(process)
    raw = sdk_clients.raw(process)
    answered = []
    for i in range(4):
        # A whole body, a stream the SDK drops at [DONE], a stream read to its end.
        prompt = f"body {i}"
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        assert reply.choices[0].message.content == "one two three four"
        answered.append(prompt)

        prompt = f"sdk stream {i}"
        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": prompt}]
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two three four"
        answered.append(prompt)

        prompt = f"raw stream {i}"
        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": prompt}]}
        with raw.stream("POST", CHAT_URL, json=body, headers={"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"}) as r:
            assert b"data: [DONE]" in r.read()
        answered.append(prompt)

    assert process.kill() == -9  # the moment the last answer is in: no hook runs
    worker = WORKER_LINE.search(process.output)
    assert worker is not None, process.output
    assert wait_for_exit(int(worker.group(1)))

    cassette = tmp_path / "crash.yaml"
    assert sorted(user_messages(cassette)) == sorted(answered)  # loads, and all of them
    assert all(i.incomplete is None for i in cassette_store.load(cassette).interactions)
    assert "sk-test-" not in cassette.read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".crash.yaml.*.tmp"))


PROXY_THAT_DIES = """
import json, os, signal, sys, time
from llmock_proxy.record.capture import StreamedCapture
from llmock_proxy.record.worker import RecordingWorker

target, url = sys.argv[1], sys.argv[2]
worker = RecordingWorker().start()
print(worker.pid, flush=True)

def chunk(text, finish=None):
    event = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}
    return b"data: " + json.dumps(event).encode() + b"\\n\\n"

def capture(prompt):
    body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    c = StreamedCapture(worker.next_capture(), target, worker.send, worker.send_chunk, worker.handed_over,
                        "POST", url, [("content-type", "application/json"),
                                      ("authorization", "Bearer sk-test-dies")], body)
    c.head(200, [("content-type", "text/event-stream")])
    return c

# The answer is complete (the finish chunk and [DONE] went to the client),
# the body's end never came: what a client stopping at [DONE] sees.
done = capture("complete but unended")
for piece in (chunk("all"), chunk(" of it"), chunk(None, "stop"), b"data: [DONE]\\n\\n"):
    done.tee(piece)
# Cut off in the middle of the answer: nothing the client could use.
cut = capture("cut off")
cut.tee(chunk("half"))
assert worker.handed_over() is None  # everything is in the pipe
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_worker_keeps_what_a_dead_proxy_handed_over(tmp_path) -> None:
    cassette = tmp_path / "handed.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", PROXY_THAT_DIES, str(cassette), CHAT_URL],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == -9, result.stderr
    assert wait_for_exit(int(result.stdout.split()[0]))
    (interaction,) = cassette_store.load(cassette).interactions
    assert interaction.match["userMessage"] == "complete but unended"
    assert interaction.summary["text"] == "all of it"
    assert interaction.incomplete is None
    assert "sk-test-dies" not in cassette.read_text(encoding="utf-8")


def test_the_worker_stamps_the_time_bytes_arrived() -> None:
    builder = CaptureBuilder(Redactor.default())
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    started = 1000.0
    builder.handle(Opened(1, "x.yaml", "POST", CHAT_URL, [("content-type", "application/json")], body.encode(),
                          started, "2026-01-01T00:00:00.000Z"))
    builder.handle(HeadArrived(1, 200, [("content-type", "text/event-stream")], True))
    for k in range(3):
        event = {"choices": [{"index": 0, "delta": {"content": f"w{k}"}, "finish_reason": None}]}
        builder.handle(BodyChunk(1, started + 0.020 * (k + 1), b"data: " + json.dumps(event).encode() + b"\n\n"))
    builder.handle(BodyChunk(1, started + 0.5, b"data: [DONE]\n\n"))
    finished = builder.handle(Ended(1, started + 0.6, None))
    assert finished is not None and finished.interaction is not None
    assert [e.t for e in finished.interaction.response.events] == [20.0, 40.0, 60.0, 500.0]
    assert finished.interaction.recorded_at == "2026-01-01T00:00:00.000Z"
    assert finished.interaction.match["family"] == "openai.chat"
    assert finished.interaction.summary["text"] == "w0w1w2"


# -- appends read no cassette whole -----------------------------------------------------------------


def big_cassette(path: Path, count: int = 300) -> None:
    cassette_store.save(Cassette([chat(f"old {n}", n) for n in range(count)]), path)


def test_a_stale_or_missing_lock_identity_costs_a_layout_look_not_a_parse(tmp_path, caplog) -> None:
    path = tmp_path / "big.yaml"
    big_cassette(path)  # written by another tool: no lock file yet
    writer = CassetteWriter()
    with caplog.at_level("INFO", logger="llmock_proxy"):
        writer.append(path, [chat("first")])
        assert (writer.stats.scanned, writer.stats.appended, writer.stats.rewritten) == (1, 0, 0)
        writer.append(path, [chat("second")])  # the identity is known now
        assert (writer.stats.scanned, writer.stats.appended) == (1, 1)

        # A crash of an earlier version between its rename and its record left
        # the lock file naming the version before.
        before = lock_path_for(path).read_bytes()
        writer.append(path, [chat("third")])
        lock_path_for(path).write_bytes(before)
        CassetteWriter().append(path, [chat("fourth")])
        # A record that names nothing (torn) or no lock file (a fresh checkout).
        lock_path_for(path).write_text("{")
        CassetteWriter().append(path, [chat("fifth")])
        lock_path_for(path).unlink()
        later = CassetteWriter()
        later.append(path, [chat("sixth")])
        assert later.stats.rewritten == 0 and later.stats.scanned == 1
    assert not [r for r in caplog.records if REWRITTEN in r.getMessage()]
    messages = user_messages(path)
    assert messages[:300] == [f"old {n}" for n in range(300)]
    assert messages[300:] == ["first", "second", "third", "fourth", "fifth", "sixth"]


def test_only_a_file_laid_out_otherwise_is_read_whole_and_the_log_says_so(tmp_path, caplog) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text('version: 1\ninteractions: [{"request": {"method": "GET", "url": "https://a.example/x"}}]\n')
    writer = CassetteWriter()
    with caplog.at_level("INFO", logger="llmock_proxy"):
        writer.append(path, [chat("new")])
    assert writer.stats.rewritten == 1
    (line,) = [r.getMessage() for r in caplog.records if REWRITTEN in r.getMessage()]
    assert "flow.yaml" in line
    loaded = cassette_store.load(path).interactions
    assert [i.request.url for i in loaded] == ["https://a.example/x", CHAT_URL]


def test_appends_keep_an_existing_cassette_byte_for_byte(tmp_path) -> None:
    path = tmp_path / "kept.yaml"
    original = Cassette([chat("old 0"), chat("old 1")], meta={"note": "made by hand"})
    cassette_store.save(original, path)
    # A comment a person added at the end stays too.
    path.write_text(path.read_text() + "# more to come\n")
    before = path.read_bytes()
    CassetteWriter().append(path, [chat("new 0")])
    CassetteWriter().append(path, [chat("new 1"), chat("new 2")])
    assert path.read_bytes().startswith(before)
    loaded = cassette_store.load(path)
    assert loaded.meta == {"note": "made by hand"}
    assert [i.match["userMessage"] for i in loaded.interactions] == ["old 0", "old 1", "new 0", "new 1", "new 2"]


def test_an_empty_list_becomes_a_block_list(tmp_path) -> None:
    path = tmp_path / "empty.yaml"
    cassette_store.save(Cassette([]), path)
    assert path.read_text().endswith("interactions: []\n")
    writer = CassetteWriter()
    writer.append(path, [chat("only")])
    assert writer.stats.rewritten == 0
    assert user_messages(path) == ["only"]


def test_a_file_cut_short_is_refused_and_left_alone(tmp_path) -> None:
    path = tmp_path / "cut.yaml"
    big_cassette(path, 3)
    text = path.read_text()
    cut = text[: text.rindex("    url:")] + "    url: https://api.openai.co\n  respo\n"
    path.write_text(cut)
    with pytest.raises(CassetteError) as failure:
        CassetteWriter().append(path, [chat("new")])
    assert "cut.yaml" in str(failure.value) and "last interaction" in str(failure.value)
    assert path.read_text() == cut


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("version: 1\ninteractions:\n- a: 1\n- b: 2\n", "append"),
        ("version: 1\nmeta:\n  x: 1\n# note\ninteractions:\n\n- a: 1\n  b:\n  - 2\n# end\n", "append"),
        ("version: 1\ninteractions:\n", "append"),
        ("version: 1\ninteractions: []\n", "empty"),
        ("version: 1\ninteractions:\n  - a: 1\n", "other"),  # indented list
        ("version: 1\ninteractions:\n- a: 1\nmeta: {}\n", "other"),  # a key after the list
        ("version: 1\ninteractions:\n- a: 1\n---\n- b: 1\n", "other"),  # a second document
        ("version: 2\ninteractions:\n- a: 1\n", "other"),
        ("interactions:\n- a: 1\n", "other"),
        ("version: 1\ninteractions:\n- a: 1", "other"),  # no final line break
        ("version: 1\ninteractions:\n- a: 1\n<<<<<<< HEAD\n", "other"),  # a merge conflict
        ('version: 1\nmeta: "two\nlines"\ninteractions:\n- a: 1\n', "other"),
    ],
)
def test_the_layout_read_from_column_zero(text: str, kind: str) -> None:
    assert layout_of(text.encode()).kind == kind


# -- the same through mitmdump ---------------------------------------------------------------------


def test_a_new_session_appends_to_a_big_cassette_without_reading_it_whole(
    mitmdump, fake_openai, tmp_path, sdk_clients
) -> None:
    path = tmp_path / "existing.yaml"
    big_cassette(path, 400)
    shutil.copy(path, tmp_path / "copy.yaml")
    lock_path_for(path).write_text('{"identities": [[1, 2, 3]]}')  # names some other version
    for session in range(2):
        process = start_recorder(mitmdump, tmp_path, [fake_openai], name="existing.yaml")
        client = sdk_clients.openai(process)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"s{session}"}])
        assert process.terminate() == 0
        assert "llmock: recorded openai.chat" in process.output
        assert REWRITTEN not in process.output
    assert path.read_bytes().startswith((tmp_path / "copy.yaml").read_bytes())
    assert user_messages(path)[-2:] == ["s0", "s1"]
    assert len(user_messages(path)) == 402


def test_mitmdump_logs_a_cassette_it_has_to_read_whole(mitmdump, fake_openai, tmp_path, sdk_clients) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        interactions: [{"request": {"method": "GET", "url": "https://a.example/x"}}]
    """))
    process = start_recorder(mitmdump, tmp_path, [fake_openai], name="flow.yaml")
    sdk_clients.openai(process).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert process.terminate() == 0
    assert f"{path} {REWRITTEN}" in process.output
    assert len(cassette_store.load(path).interactions) == 2


# -- a worker that dies -----------------------------------------------------------------------------


def test_a_dead_worker_is_reported_and_replaced(proxy, fake_openai, tmp_path, sdk_clients, caplog) -> None:
    record = Record()
    mitm = proxy(addons=[record], fakes=[fake_openai],
                 options={"llmock_cassette_dir": str(tmp_path), "llmock_cassette": "w.yaml"})
    client = sdk_clients.openai(mitm)
    with caplog.at_level("INFO", logger="llmock_proxy"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "before"}])
        assert record.flush(30)
        first = record.worker_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_for_exit(first)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "after"}])
        assert record.flush(30)
    assert record.worker_pid not in (None, first)
    assert any(f"recording worker (pid {first}) exited" in r.getMessage() for r in caplog.records)
    assert user_messages(tmp_path / "w.yaml") == ["before", "after"]


# -- serve's auto mode ------------------------------------------------------------------------------

SERVE_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def test_serve_auto_mode_killed_after_its_answers_keeps_them(fake_openai, tmp_path) -> None:
    """serve writes a forwarded exchange before the client sees its body end:
    an answer read to its end is on disk, however long the write takes (an
    existing cassette another tool wrote: its layout is read first). (A
    client that stops reading at ``[DONE]`` has its answer a few
    milliseconds before that.)"""
    fake_openai.script = Script(text="from upstream", event_delay=0.005)
    big_cassette(tmp_path / "auto.yaml", 1000)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "llmock-proxy"), "serve", "--port", "0", "--mode", "auto",
         "--upstream", fake_openai.url, "--cassette-dir", str(tmp_path), "--cassette", "auto.yaml"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:  # the banner, up to the listening line
            found = SERVE_LISTENING.search(line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "serve did not start"
        client = sdk.openai_client(base_url=f"{url}/v1")
        raw = sdk.raw_client()
        asked = []
        for i in range(3):
            asked.append(f"plain {i}")
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": asked[-1]}])
            assert reply.choices[0].message.content == "from upstream"
            if i == 2:
                # Someone else rewrites the cassette (an edit, a checkout): the
                # last append has to look at it before it writes.
                cassette_store.save(cassette_store.load(tmp_path / "auto.yaml"), tmp_path / "auto.yaml")
            asked.append(f"streamed {i}")
            body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": asked[-1]}]}
            headers = {"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"}
            with raw.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
                assert b"data: [DONE]" in response.read()
        raw.close()
        process.kill()  # the moment the last answer is in
    finally:
        process.kill()
        process.wait(10)
    assert sorted(user_messages(tmp_path / "auto.yaml")[1000:]) == sorted(asked)
