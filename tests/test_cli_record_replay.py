"""``llmock-proxy record`` and ``llmock-proxy replay`` as a user runs them.

The real console script as a subprocess (it runs mitmdump as its own child),
on port 0; the SDKs in another process configured with nothing but the
``export`` lines the command printed; Ctrl-C (SIGINT to the command) and the
summary it prints, checked against the cassettes on disk. Recording goes to
the fake providers through the test router script (loaded with ``-s``, as a
user adds ``addons/drift.py``); replay runs with the fakes stopped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmock_proxy.cassette import store as cassette_store
from tests.fakes import Script
from tests.harness.mitmdump import REPO_ROOT, ROUTER_SCRIPT
from tests.harness.router import ROUTES_OPTION, routes_for

LLMOCK_PROXY = Path(sys.executable).parent / "llmock-proxy"
_EXPORT = re.compile(r"^\s*export (\w+)=(\S+)", re.MULTILINE)
BANNER_END = "Ctrl-C stops"


class CliProxy:
    """A running ``llmock-proxy record|replay``; ``banner`` and ``exports`` once it listens."""

    def __init__(self, *args: str, cwd: Path, port_flag: str = "--listen-port") -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(
            [str(LLMOCK_PROXY), *args, port_flag, "0", "--confdir", str(cwd / "mitmproxy")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=env, cwd=cwd,
        )
        self.lines: list[str] = []
        self._banner = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._banner.wait(60) or self.process.poll() is not None:
            self.process.kill()
            raise AssertionError("the command did not start:\n" + self.output)
        self.banner = self.output
        self.exports = dict(_EXPORT.findall(self.banner))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if BANNER_END in line:
                self._banner.set()
        self._banner.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the command alone (mitmdump runs in its own process group)."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(60)
        self._reader.join(10)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def cli_proxy(tmp_path: Path) -> Iterator[type[CliProxy]]:
    started: list[CliProxy] = []

    def start(*args: str) -> CliProxy:
        instance = CliProxy(*args, cwd=tmp_path)
        started.append(instance)
        return instance

    yield start  # type: ignore[misc]
    for instance in started:
        instance.stop()


def router_args(test_pki, *fakes) -> list[str]:  # type: ignore[no-untyped-def]
    """The test router as a user's extra script: provider hosts go to the fakes, nothing else leaves."""
    args = ["-s", str(ROUTER_SCRIPT), "--set", f"ssl_verify_upstream_trusted_ca={test_pki.ca_cert_path}"]
    for route in routes_for(*fakes):
        args += ["--set", f"{ROUTES_OPTION}={route.to_spec()}"]
    return args


# The application: nothing but the printed environment points it at the proxy.
APPLICATION = """
import sys
import anthropic, openai
questions = sys.argv[1:]
client = openai.OpenAI(api_key="sk-test-cli-key", max_retries=0)
for question in questions:
    try:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
        print(answer.choices[0].message.content)
    except openai.APIStatusError as exc:
        print(f"status {exc.status_code}")
print(anthropic.Anthropic(api_key="sk-test-cli-key", max_retries=0).messages.create(
    model="claude-sonnet-4-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]).content[0].text)
"""


def run_application(exports: dict[str, str], home: Path, *questions: str) -> list[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **exports}
    result = subprocess.run([sys.executable, "-c", APPLICATION, *questions], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_record_then_replay_through_the_printed_settings(  # type: ignore[no-untyped-def]
    cli_proxy, fake_openai, fake_anthropic, test_pki, tmp_path: Path
) -> None:
    fake_openai.queue(Script(text="First recorded answer."), Script(text="Second recorded answer."))
    record = cli_proxy("record", "--cassette-dir", "recorded", *router_args(test_pki, fake_openai, fake_anthropic))
    ca = tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem"
    assert record.exports["HTTPS_PROXY"].startswith("http://127.0.0.1:")
    assert record.exports["SSL_CERT_FILE"] == record.exports["REQUESTS_CA_BUNDLE"] == str(ca)
    assert record.exports["NODE_EXTRA_CA_CERTS"] == str(ca)

    live = run_application(record.exports, tmp_path, "one", "two")
    assert live == ["First recorded answer.", "Second recorded answer.", fake_anthropic.script.text]
    assert record.interrupt() == 0

    (cassette,) = (tmp_path / "recorded").glob("rec-*.yaml")
    families = Counter(i.match["family"] for i in cassette_store.load(cassette).interactions)
    assert families == {"openai.chat": 2, "anthropic.messages": 1}
    summary = record.output.split(BANNER_END, 1)[1]
    assert "wrote 3 interactions to 1 file" in summary
    assert f"recorded/{cassette.name}: 3 (anthropic.messages 1, openai.chat 2)" in summary

    fake_openai.stop()
    fake_anthropic.stop()
    replay = cli_proxy("replay", "--cassette-dir", "recorded", "--timing", "instant")
    assert replay.exports["SSL_CERT_FILE"] == str(ca)
    replayed = run_application(replay.exports, tmp_path, "two", "one", "never recorded")
    assert replayed == ["Second recorded answer.", "First recorded answer.", "status 421", live[2]]
    assert replay.interrupt() == 0
    summary = replay.output.split(BANNER_END, 1)[1]
    assert "3 requests answered from recordings/fixtures, 1 miss " in summary, summary


def test_record_reverse_mode_counts_only_this_runs_appends(  # type: ignore[no-untyped-def]
    cli_proxy, sdk_clients, fake_openai, test_pki, tmp_path: Path
) -> None:
    counts = []
    for run in range(2):
        record = cli_proxy("record", "--base-url", "https://api.openai.com", "--cassette", "suite.yaml",
                           *router_args(test_pki, fake_openai))
        (base_url,) = [v for k, v in record.exports.items() if k == "OPENAI_BASE_URL"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
        assert "HTTPS_PROXY" not in record.exports  # plain HTTP: no proxy, no CA
        client = sdk_clients.openai(base_url=base_url)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"run {run}"}])
        assert answer.choices[0].message.content == fake_openai.script.text
        client.close()
        assert record.interrupt() == 0
        counts.append(record.output.split(BANNER_END, 1)[1])
    loaded = cassette_store.load(tmp_path / "cassettes" / "suite.yaml")
    assert [i.match["userMessage"] for i in loaded.interactions] == ["run 0", "run 1"]
    assert loaded.interactions[0].request.url == "https://api.openai.com/v1/chat/completions"
    for summary in counts:
        assert "wrote 1 interaction to 1 file" in summary and "suite.yaml: 1 (openai.chat 1)" in summary


def test_record_with_nothing_sent_says_so_and_usage_errors_exit_2(cli_proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    record = cli_proxy("record")
    assert record.interrupt() == 0
    assert "nothing was recorded" in record.output.split(BANNER_END, 1)[1]
    assert not (tmp_path / "cassettes").exists() or not list((tmp_path / "cassettes").glob("*.yaml"))
    for args, said in (
        (["record", "--base-url", "https://api.openai.com/v1"], "expected an origin"),
        (["record", "--set", "llmock_cassette_dir=x"], "use --cassette-dir"),
        (["replay", "--set", "llmock_timing=instant"], "use --timing"),
    ):
        result = subprocess.run([str(LLMOCK_PROXY), *args], capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert result.returncode == 2 and said in result.stderr, (args, result.stderr)


def test_replay_stops_with_mitmdumps_own_error_when_an_option_is_bad(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(LLMOCK_PROXY), "replay", "--listen-port", "0", "--confdir", str(tmp_path / "conf"), "--timing", "fast"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "llmock_timing" in result.stdout and "mitmdump exited" in result.stderr
    assert "requests answered" not in result.stdout


def test_record_and_replay_take_serves_host_and_port_flags_too(tmp_path: Path) -> None:
    for command in ("record", "replay"):
        proxy = CliProxy(command, "--host", "127.0.0.1", cwd=tmp_path, port_flag="--port")
        try:
            url = proxy.exports["HTTPS_PROXY"]
            assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0, proxy.banner
            assert proxy.interrupt() == 0
        finally:
            proxy.stop()


def test_replay_of_an_empty_cassette_dir_warns_once_naming_it(cli_proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    replay = cli_proxy("replay", "--cassette-dir", "empty")
    assert replay.interrupt() == 0
    (warning,) = [line for line in replay.lines if "nothing to replay" in line]
    assert "WARNING" in warning and "llmock_cassette_dir=empty" in warning
    assert "0 requests answered from recordings/fixtures, 0 misses" in replay.output
