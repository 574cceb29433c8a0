"""``llmock-proxy serve``: the real console script, as a subprocess."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmock_proxy.cassette import store as cassette_store
from tests.fakes import FakeServer, OpenAIFake, Script
from tests.harness import clients as sdk
from tests.harness.http import httpx
from tests.support.replay import (
    EXPECTED,
    SUITE,
    SUITE_FIXTURES,
    SuiteClients,
    run_suite,
)

LLMOCK_PROXY = Path(sys.executable).parent / "llmock-proxy"
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class Serve:
    """A running ``llmock-proxy serve``; ``url`` and ``banner`` once it listens.

    A thread drains its output all along, so the pipe never fills."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.process = subprocess.Popen(
            [str(LLMOCK_PROXY), "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._banner_done = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._banner_done.wait(30) or not hasattr(self, "url"):
            self.stop()
            raise AssertionError("serve did not start:\n" + "".join(self.lines))
        self.banner = "".join(self.lines)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # ends when the process exits
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
            found = _LISTENING.search(line)
            if found:
                self.url = found.group(1)
            if line.startswith("Control:"):  # the banner's last line
                self._banner_done.set()
        self._banner_done.set()

    def wait_for_line(self, text: str, timeout: float = 30, *, count: int = 1) -> str:
        """The ``count``-th output line containing ``text``, once it was printed."""
        with self._new_line:
            found = self._new_line.wait_for(lambda: len([x for x in self.lines if text in x]) >= count, timeout)
            lines = [line for line in self.lines if text in line]
        assert found, f"not {count} line(s) with {text!r} in:\n" + "".join(self.lines)
        return lines[count - 1]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


@pytest.fixture
def serve() -> Iterator[type[Serve]]:
    started: list[Serve] = []

    def start(*args: str, **kwargs: object) -> Serve:
        instance = Serve(*args, **kwargs)  # type: ignore[arg-type]
        started.append(instance)
        return instance

    yield start  # type: ignore[misc]
    for instance in started:
        instance.stop()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LLMOCK_PROXY), "serve", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_answers_the_sdks_from_fixtures_and_says_how_to_point_them(serve, tmp_path: Path, loop: str) -> None:  # type: ignore[no-untyped-def]
    fixtures = tmp_path / "suite.json"
    fixtures.write_text(json.dumps(SUITE_FIXTURES))
    server = serve("--fixtures", str(fixtures), "--timing", "instant", "--event-loop", loop)
    assert f"export OPENAI_BASE_URL={server.url}/v1" in server.banner
    assert f"export ANTHROPIC_BASE_URL={server.url}" in server.banner
    clients = SuiteClients(
        openai=sdk.openai_client(base_url=f"{server.url}/v1"),
        anthropic=sdk.anthropic_client(base_url=server.url),
        genai=sdk.genai_client(base_url=server.url),
    )
    assert run_suite(clients) == EXPECTED
    health = httpx.get(f"{server.url}/__llmock/health").json()
    assert health["misses"] == 0 and health["hits"] >= len(SUITE)
    assert server.stop() == 0


def _curl(command: str) -> httpx.Response:
    """Send what a printed ``curl [-X M] [-H 'k: v'] URL [-d BODY]`` sends."""
    words = shlex.split(command)
    assert words[0] == "curl", command
    method, url, data = "GET", None, None
    headers: dict[str, str] = {}
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, value = next(rest).split(":", 1)
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(rest)
            method = "POST" if method == "GET" else method
        else:
            url = word
    assert url is not None, command
    return httpx.request(method, url, headers=headers, content=data)


def test_the_banners_control_commands_work_as_printed(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fixtures = tmp_path / "suite.json"
    fixtures.write_text(json.dumps(SUITE_FIXTURES))
    server = serve("--fixtures", str(fixtures), "--timing", "instant")
    control = server.wait_for_line("Control: ").strip()
    for command in control.removeprefix("Control: ").split(" ; "):
        assert _curl(command).status_code == 200, command
    sessions = server.wait_for_line("Per-test sessions: ").strip()
    opened = _curl(sessions.removeprefix("Per-test sessions: ").split(", then", 1)[0])
    assert opened.status_code in (200, 201), opened.text
    assert httpx.get(f"{server.url}/__llmock/sessions/t1/requests").status_code == 200


def test_usage_errors_exit_2_and_bad_files_exit_1(tmp_path: Path) -> None:
    bad_timing = run("--timing", "fast")
    assert bad_timing.returncode == 2 and "recorded, instant or scale:X" in bad_timing.stderr
    no_upstream = run("--mode", "auto")
    assert no_upstream.returncode == 2 and "--upstream" in no_upstream.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"fixtures": [{"match": {"userMesage": "x"}, "response": {"content": "x"}}]}))
    bad_file = run("--fixtures", str(broken))
    assert bad_file.returncode == 1
    assert "broken.json: fixtures[0].match.userMesage: unknown match key; did you mean 'userMessage'?" in bad_file.stderr


@pytest.mark.parametrize("mode", ["passthrough", "auto"])
def test_misses_go_upstream_in_passthrough_and_auto(serve, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    fake = FakeServer(OpenAIFake(Script(text="Straight from upstream."))).start()
    try:
        server = serve("--mode", mode, "--upstream", fake.url, "--cassette-dir", str(tmp_path), "--cassette", "new.yaml")
        client = sdk.openai_client(base_url=f"{server.url}/v1")

        def ask() -> str:
            return client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "new question"}]
            ).choices[0].message.content

        assert ask() == "Straight from upstream."
        assert ask() == "Straight from upstream."
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "new question"}], stream=True
            )
            if c.choices
        )
        assert streamed == "Straight from upstream."
    finally:
        fake.stop()
    if mode == "passthrough":
        assert len(fake.requests) == 3
        assert not (tmp_path / "new.yaml").exists()
    else:
        # Recorded on the first miss; the repeat and the stream (synthesized
        # from the recording) never reached the upstream.
        assert len(fake.requests) == 1
        recorded = cassette_store.load(tmp_path / "new.yaml")
        assert len(recorded.interactions) == 1
        assert recorded.interactions[0].request.headers["authorization"] != f"Bearer {sdk.TEST_OPENAI_KEY}"


def test_auto_mode_applies_a_redaction_rules_file(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rules = tmp_path / "rules.yaml"
    rules.write_text("request_headers: [x-tenant-secret]\n")
    fake = FakeServer(OpenAIFake(Script(text="The tenant's private answer."))).start()
    try:
        server = serve("--mode", "auto", "--upstream", fake.url, "--redact", str(rules),
                       "--cassette-dir", str(tmp_path), "--cassette", "new.yaml")
        client = sdk.openai_client(base_url=f"{server.url}/v1", default_headers={"x-tenant-secret": "tenant-1234"})
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "The tenant's private answer."  # the client sees the real answer
        # One line per recorded interaction, once it is on disk.
        server.wait_for_line("llmock: recorded openai.chat gpt-4o-mini 200 body -> ")
    finally:
        fake.stop()
    text = (tmp_path / "new.yaml").read_text()
    assert "tenant-1234" not in text
    (recorded,) = cassette_store.load(tmp_path / "new.yaml").interactions
    assert recorded.request.headers["x-tenant-secret"] == "<redacted>"


def test_redact_errors(tmp_path: Path) -> None:
    not_auto = run("--redact", str(tmp_path / "rules.yaml"))
    assert not_auto.returncode == 2 and "--mode auto" in not_auto.stderr
    rules = tmp_path / "rules.yaml"
    rules.write_text("headerz: [x]\n")
    bad = run("--mode", "auto", "--upstream", "http://127.0.0.1:9", "--redact", str(rules))
    assert bad.returncode == 1 and "rules.yaml" in bad.stderr and "headerz" in bad.stderr


def test_auto_mode_records_hang_ups_and_broken_upstreams_as_incomplete(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = FakeServer(OpenAIFake()).start()
    try:
        server = serve("--mode", "auto", "--upstream", fake.url, "--cassette-dir", str(tmp_path), "--cassette", "c.yaml")
        url = f"{server.url}/v1/chat/completions"
        headers = {"authorization": f"Bearer {sdk.TEST_OPENAI_KEY}"}

        def body(text: str) -> dict[str, object]:
            return {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": text}]}

        fake.script = Script(text=" ".join(f"w{i}" for i in range(40)), event_delay=0.03)
        with httpx.Client(trust_env=False, timeout=10) as client:
            with client.stream("POST", url, json=body("hang up"), headers=headers) as response:
                next(response.iter_raw())  # the first event, then leave
        server.wait_for_line("client left POST /v1/chat/completions")
        server.wait_for_line("llmock: recorded openai.chat gpt-4o-mini 200")

        fake.script = Script(text="a b c d e f g h", disconnect_after_events=3)
        with pytest.raises(httpx.HTTPError), httpx.Client(trust_env=False, timeout=10) as client:
            with client.stream("POST", url, json=body("upstream dies"), headers=headers) as response:
                response.read()
        server.wait_for_line("broke off")
        server.wait_for_line("llmock: recorded openai.chat gpt-4o-mini 200", count=2)
    finally:
        fake.stop()
    output = "".join(server.lines)
    assert "Traceback" not in output and "Error handling request" not in output, output
    by_message = {i.match["userMessage"]: i for i in cassette_store.load(tmp_path / "c.yaml").interactions}
    assert by_message["hang up"].incomplete == "Client disconnected."
    assert 1 <= len(by_message["hang up"].response.events) < 40
    assert by_message["upstream dies"].incomplete


# -- nothing to serve ---------------------------------------------------------------------------


def test_nothing_given_is_refused_with_exit_2_and_one_loud_line(tmp_path: Path) -> None:
    result = run("--port", "0")
    assert result.returncode == 2, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "nothing to serve" in x]
    assert "WARNING" in line and "no --cassettes or --fixtures given" in line and "--allow-empty" in line


def test_paths_holding_nothing_are_refused_with_exit_1_naming_them(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no cassette here")
    no_interactions = tmp_path / "none.yaml"
    no_interactions.write_text("version: 1\ninteractions: []\n")
    result = run("--port", "0", "--cassettes", str(empty), str(no_interactions), "--fixtures", str(empty))
    assert result.returncode == 1, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "nothing to serve" in x]
    assert f"--cassettes {empty} {no_interactions}" in line and f"--fixtures {empty}" in line
    assert "--allow-empty" in line


def test_allow_empty_starts_warning_and_sessions_bring_fixtures_later(serve, sdk_clients, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import openai

    empty = tmp_path / "empty"
    empty.mkdir()
    server = serve("--cassettes", str(empty), "--allow-empty", "--timing", "instant")
    assert len([x for x in server.banner.splitlines() if "nothing to serve" in x]) == 1
    client = sdk_clients.openai(base_url=f"{server.url}/v1", max_retries=0)
    with pytest.raises(openai.APIStatusError) as missed:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}])
    assert missed.value.status_code == 421

    fixtures = tmp_path / "later.json"
    fixtures.write_text(json.dumps(SUITE_FIXTURES))
    opened = httpx.post(f"{server.url}/__llmock/sessions", headers={"x-llmock-control": "1"},
                        json={"id": "t1", "fixtures": [str(fixtures)]})
    assert opened.status_code == 201, opened.text
    session = sdk_clients.openai(base_url=f"{server.url}/__llmock/session/t1/v1", max_retries=0)
    answer = session.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}])
    assert answer.choices[0].message.content == EXPECTED["openai.chat"]
    assert server.stop() == 0


@pytest.mark.parametrize("mode", ["auto", "passthrough"])
def test_auto_and_passthrough_start_empty_without_allow_empty(serve, sdk_clients, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    fake = FakeServer(OpenAIFake(Script(text="From upstream."))).start()
    try:
        server = serve("--mode", mode, "--upstream", fake.url, "--cassette-dir", str(tmp_path / "new"))
        assert "nothing to serve" not in server.banner
        client = sdk_clients.openai(base_url=f"{server.url}/v1", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "From upstream."
    finally:
        fake.stop()
