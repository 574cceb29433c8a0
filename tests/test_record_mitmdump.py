"""``mitmdump -s addons/record.py`` as users run it: a separate process.

kill -9 in the middle of a stream, two proxies appending to one cassette,
clean shutdown, the log line, and upstream mode (chained to another proxy).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.mitm.record import Record
from tests.fakes import Script
from tests.harness import clients as sdk

REPO = Path(__file__).resolve().parent.parent
RECORD_SCRIPT = REPO / "addons" / "record.py"
CHAT_URL = f"{sdk.OPENAI_URL}/chat/completions"
HEADERS = {"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"}
RECORDED_LINE = re.compile(r"llmock: recorded (\S+) (\S+) (\d+) (.+) -> (\S+)")


def chat_body(text: str, stream: bool = True) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": text}]}


def wait_for_lines(process: Any, count: int, timeout: float = 30.0) -> list[re.Match[str]]:
    """The first ``count`` 'recorded' log lines; each is printed after its write."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(RECORDED_LINE.finditer(process.output))
        if len(found) >= count:
            return found
        assert process.process.poll() is None, f"mitmdump exited:\n{process.output}"
        assert time.monotonic() < deadline, f"only {len(found)} of {count} recorded:\n{process.output}"
        time.sleep(0.02)  # another process's log: nothing to await but its output


def start_recorder(mitmdump: Any, cassette_dir: Path, fakes: list[Any], **options: Any) -> Any:
    return mitmdump(
        scripts=[RECORD_SCRIPT],
        fakes=fakes,
        options={"llmock_cassette_dir": str(cassette_dir), "llmock_cassette": "shared.yaml", **options},
    )


def test_sigkill_mid_stream_leaves_a_cassette_that_loads(mitmdump, fake_openai, tmp_path, sdk_clients) -> None:
    process = start_recorder(mitmdump, tmp_path, [fake_openai])
    raw = sdk_clients.raw(process)
    assert raw.post(CHAT_URL, json=chat_body("before", stream=False), headers=HEADERS).status_code == 200
    (line,) = wait_for_lines(process, 1)
    assert line.group(1, 2, 3, 4) == ("openai.chat", "gpt-4o-mini", "200", "body")
    assert Path(line.group(5)) == tmp_path / "shared.yaml"

    fake_openai.queue(Script(text=" ".join(f"w{i}" for i in range(60)), event_delay=0.05))
    with raw.stream("POST", CHAT_URL, json=chat_body("during"), headers=HEADERS) as response:
        seen = b""
        for chunk in response.iter_raw():
            seen += chunk
            if seen.count(b"\n\n") >= 3:
                assert process.kill() == -9  # mid-stream, no hook runs
                break

    loaded = cassette_store.load(tmp_path / "shared.yaml")
    assert [i.match["userMessage"] for i in loaded.interactions] == ["before"]
    assert "sk-test-" not in (tmp_path / "shared.yaml").read_text()


def test_two_proxies_share_one_cassette_and_flush_on_shutdown(mitmdump, fake_openai, tmp_path, sdk_clients) -> None:
    fake_openai.script = Script(text="a b c d", event_delay=0.01)
    first = start_recorder(mitmdump, tmp_path, [fake_openai])
    second = start_recorder(mitmdump, tmp_path, [fake_openai])
    errors: list[BaseException] = []

    def ask(process: Any, name: str) -> None:
        try:
            with sdk.raw_client(process) as raw:
                with raw.stream("POST", CHAT_URL, json=chat_body(name), headers=HEADERS) as response:
                    assert response.status_code == 200
                    response.read()
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=ask, args=(process, f"{label}-{i}"))
        for label, process in (("one", first), ("two", second))
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    # SIGTERM: mitmdump's done hook waits for queued writes.
    assert first.terminate() == 0 and second.terminate() == 0

    loaded = cassette_store.load(tmp_path / "shared.yaml")
    names = sorted(i.match["userMessage"] for i in loaded.interactions)
    assert names == sorted(f"{label}-{i}" for label in ("one", "two") for i in range(6))
    for interaction in loaded.interactions:
        assert interaction.incomplete is None
        assert interaction.summary["text"] == "a b c d"
    recorded_lines = RECORDED_LINE.findall(first.output) + RECORDED_LINE.findall(second.output)
    assert len(recorded_lines) == 12
    # The role chunk, four words, the finish chunk and [DONE].
    assert all(line[3] == "7 events" for line in recorded_lines)


def test_upstream_mode_records_the_real_url(proxy, mitmdump, fake_anthropic, tmp_path, sdk_clients) -> None:
    downstream = mitmdump(fakes=[fake_anthropic])  # the "corporate" proxy, in front of the fake
    record = Record()
    mitm = proxy(
        f"upstream:{downstream.url}",
        addons=[record],
        router=False,
        options={
            "ssl_verify_upstream_trusted_ca": str(downstream.ca_cert_path),
            "llmock_cassette_dir": str(tmp_path),
            "llmock_cassette": "up.yaml",
        },
    )
    client = sdk_clients.anthropic(mitm)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = stream.get_final_text()
    assert record.flush(30)
    (interaction,) = cassette_store.load(tmp_path / "up.yaml").interactions
    assert interaction.request.url == "https://api.anthropic.com/v1/messages"
    assert interaction.summary["text"] == text == fake_anthropic.script.text
    assert interaction.response.events[0].event == "message_start"
    assert interaction.response.events[-1].event == "message_stop"


DOCUMENTED_CLIENT = """
import anthropic, openai
from google import genai
# Nothing but the environment points these at the proxy (docs/record.md, regular mode).
print(openai.OpenAI(api_key="sk-test-docs-key", max_retries=0).chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content)
print(anthropic.Anthropic(api_key="sk-test-docs-key", max_retries=0).messages.create(
    model="claude-sonnet-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]).content[0].text)
gemini = genai.Client(api_key="sk-test-docs-key")  # kept: the client closes its connections when collected
print(gemini.models.generate_content(model="gemini-2.0-flash", contents="hi").text)
"""


def test_documented_environment_settings_work_unchanged(mitmdump, fake_openai, fake_anthropic, fake_gemini, tmp_path) -> None:
    process = start_recorder(mitmdump, tmp_path, [fake_openai, fake_anthropic, fake_gemini])
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HTTPS_PROXY": process.url,
        "SSL_CERT_FILE": str(process.ca_cert_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", DOCUMENTED_CLIENT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        fake_openai.script.text, fake_anthropic.script.text, fake_gemini.script.text
    ]
    wait_for_lines(process, 3)
    families = [i.match["family"] for i in cassette_store.load(tmp_path / "shared.yaml").interactions]
    assert families == ["openai.chat", "anthropic.messages", "gemini.generate"]
