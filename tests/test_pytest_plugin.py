"""The llmock pytest plugin, end to end: a throwaway project in tmp_path whose code calls
openai (chat, stream, a tool loop, a child process) and anthropic, its own pytest runs in
subprocesses (the plugin comes from the installed package's entry point, as users get it),
recorded against the fake providers and replayed with the providers gone.

Each child run costs a second or two, so each runs many checks at once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.usage import UsageReport
from tests.fakes import AnthropicFake, FakeServer, OpenAIFake, Script, ToolCall

FakeServerFactory = Callable[..., FakeServer]

RECORD_KEY = "sk-test-plugin-record-key"

# What could point the child's SDKs anywhere or hand them a key: cleared, then set per run.
_CLEARED = re.compile(
    r"^(OPENAI_|ANTHROPIC_|GOOGLE_|GEMINI_|CO_|OLLAMA_|LLMOCK_(?!PROXY_CACHE_DIR)|PYTEST_|SSL_CERT_|"
    r"REQUESTS_CA_BUNDLE|NODE_EXTRA_CA_CERTS)|^(https?|all|no)_proxy$",
    re.IGNORECASE,
)

APP = '''
"""A throwaway app: openai chat, stream and a tool loop, anthropic messages."""
import json
import sys

import openai

MODEL = "gpt-4o-mini"
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]


def client():
    return openai.OpenAI(max_retries=0)


def ask(question):
    answer = client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
    return answer.choices[0].message.content


def ask_stream(question):
    stream = client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}], stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def weather(city):
    messages = [{"role": "user", "content": f"What is the weather in {city}?"}]
    first = client().chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": json.dumps({"city": arguments["city"], "celsius": 21})})
    second = client().chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    return second.choices[0].message.content


def claude(question):
    import anthropic  # here: the child process run by a test needs openai only

    answer = anthropic.Anthropic(max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": question}]
    )
    return answer.content[0].text


if __name__ == "__main__":
    print(ask(sys.argv[1]))
'''

TESTS_PLAIN = '''
import os
import sys
import threading


def test_a_test_without_llmock_gets_nothing():
    """Runs first in its process: no engine, no session URL, no dummy key, no socket patch."""
    assert "__llmock" not in os.environ.get("OPENAI_BASE_URL", "")
    assert os.environ.get("OPENAI_API_KEY") != "sk-test-llmock"
    assert not [t for t in threading.enumerate() if t.name.startswith("llmock")]
    assert not [m for m in sys.modules if m.startswith(("llmock_proxy.replay", "llmock_proxy.mitm", "mitmproxy"))]
    import socket
    assert "connect" not in vars(socket.socket)  # --block-network patches it on llmock tests only
'''

TESTS_APP = '''
import os
import subprocess
import sys
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).resolve().parents[1]


def outcomes(llmock):
    return [entry.outcome for entry in llmock.requests]


@pytest.mark.llmock
def test_chat():
    assert app.ask("What is the capital of France?") == "Paris is the capital."


@pytest.mark.llmock
def test_stream():
    assert app.ask_stream("Count to three.") == "one two three"


def test_tool_loop(llmock):
    assert app.weather("Paris") == "It is 21 degrees in Paris."
    assert outcomes(llmock) == (["hit", "hit"] if llmock.mode == "replay" else ["recorded", "recorded"])
    if llmock.mode == "replay":
        assert [entry.origin.index for entry in llmock.requests] == [0, 1]
        llmock.assert_all_used()


def test_claude(llmock):
    assert app.claude("Say bonjour.") == "Bonjour from Claude."


def test_same_question_a(llmock):
    assert app.ask("Same question?") == "answer A"


def test_same_question_b(llmock):
    assert app.ask("Same question?") == "answer B"


def test_child_process(llmock):
    done = subprocess.run([sys.executable, "app.py", "Hello from a child?"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child answer"
    assert outcomes(llmock) == (["hit"] if llmock.mode == "replay" else ["recorded"])


def test_fixture_object(llmock):
    assert llmock.cassette == ROOT / "cassettes" / "tests" / "test_app" / "test_fixture_object.yaml"
    assert llmock.base_url.endswith("/__llmock/session/" + llmock.session_id)
    assert os.environ["OPENAI_BASE_URL"] == llmock.base_url + "/v1" == llmock.env["OPENAI_BASE_URL"]
    assert os.environ["ANTHROPIC_BASE_URL"] == llmock.base_url
    if llmock.mode == "replay":
        assert os.environ["OPENAI_API_KEY"] == "sk-test-llmock"
    else:
        assert os.environ["OPENAI_API_KEY"] == os.environ["EXPECTED_KEY"]
    assert llmock.requests == []


@pytest.mark.parametrize("city", ["Paris", "New York/NY"])
def test_parametrized(llmock, city):
    assert llmock.cassette.name == f"test_parametrized[{city.replace('/', '-').replace(' ', '-')}].yaml"
'''

# The changed test: same cassette as test_chat, another question.
TESTS_CHANGED = '''
import openai
import pytest

import app

CASSETTE = "cassettes/tests/test_app/test_chat.yaml"


@pytest.mark.llmock(cassette=CASSETTE)
def test_changed_prompt_raises():
    assert app.ask("What is the capital of Italy?") == "Paris is the capital."


@pytest.mark.llmock(cassette=CASSETTE)
def test_changed_prompt_swallowed():
    try:
        app.ask("What is the capital of Spain?")
    except openai.APIStatusError:
        pass  # the code under test hides the failure; the test must fail anyway
'''


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def project(root: Path, ini: str = "", **tests: str) -> Path:
    """A throwaway project: app.py, pytest.ini (plus ``ini``) and tests/<name>.py for each of ``tests``."""
    files = {
        "app.py": APP,
        "pytest.ini": "[pytest]\naddopts = -p no:cacheprovider\nasyncio_default_fixture_loop_scope = function\n" + ini,
        **{f"tests/{name}.py": text for name, text in tests.items()},
    }
    return write_project(root, files)


def fixture_file(*pairs: tuple[str, str]) -> str:
    """An llmock fixture file answering each question with its answer."""
    fixtures = [{"match": {"userMessage": q}, "response": {"content": a}} for q, a in pairs]
    return json.dumps({"fixtures": fixtures})


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _CLEARED.match(k)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_pytest(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:randomly", *args],
        cwd=root, env=env if env is not None else child_env(), capture_output=True, text=True, timeout=300,
    )


def output_of(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


def assert_outcome(done: subprocess.CompletedProcess[str], **counts: int) -> None:
    """The child's summary line says exactly these counts (passed=3, failed=1 ...)."""
    output = output_of(done)
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    found = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (passed|failed|error|errors|skipped|deselected)", summary))
    found = {("error" if k == "errors" else k): v for k, v in found.items()}
    assert found == counts, output


def cassette_texts(root: Path) -> dict[str, str]:
    directory = root / "cassettes"
    return {str(p.relative_to(directory)): p.read_text(encoding="utf-8") for p in sorted(directory.rglob("*.yaml"))}


def openai_answers() -> list[Script]:
    """What the fake OpenAI says, in the order the record run asks."""
    return [
        Script(text="Paris is the capital."),
        Script(text="one two three"),
        Script(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Script(text="It is 21 degrees in Paris."),
        Script(text="answer A"),
        Script(text="answer B"),
        Script(text="child answer"),
    ]


def record(root: Path, fake_server: FakeServerFactory, *args: str) -> tuple[FakeServer, FakeServer]:
    """Record the project's tests against the fakes (left running for the caller to stop)."""
    openai_fake = fake_server(OpenAIFake())
    openai_fake.queue(*openai_answers())
    anthropic_fake = fake_server(AnthropicFake(Script(text="Bonjour from Claude.")))
    env = child_env(
        OPENAI_BASE_URL=openai_fake.url + "/v1", ANTHROPIC_BASE_URL=anthropic_fake.url,
        OPENAI_API_KEY=RECORD_KEY, ANTHROPIC_API_KEY=RECORD_KEY, EXPECTED_KEY=RECORD_KEY,
    )
    done = run_pytest(root, "--llmock-mode=record", *args, env=env)
    assert done.returncode == 0, output_of(done)
    return openai_fake, anthropic_fake


def test_record_then_replay_with_the_providers_gone(tmp_path: Path, fake_server: FakeServerFactory) -> None:
    root = project(tmp_path, test_a_plain=TESTS_PLAIN, test_app=TESTS_APP)
    openai_fake, anthropic_fake = record(root, fake_server)
    # Every SDK call reached the fakes once, through each test's session.
    assert len(openai_fake.requests) == len(openai_answers())
    assert len(anthropic_fake.requests) == 1
    cassettes = cassette_texts(root)
    assert set(cassettes) == {
        f"tests/test_app/{name}.yaml"
        for name in ("test_chat", "test_stream", "test_tool_loop", "test_claude", "test_same_question_a",
                     "test_same_question_b", "test_child_process")
    }
    assert not any(RECORD_KEY in text for text in cassettes.values())  # redacted on the way in
    counts = {name: len(cassette_store.load(root / "cassettes" / name).interactions) for name in cassettes}
    assert counts == {name: 2 if "tool_loop" in name else 1 for name in cassettes}
    assert not list(root.rglob(".*.llmock-recording"))
    openai_fake.stop()
    anthropic_fake.stop()

    # Replay: providers gone, no base URL, no key in the environment; the test
    # without llmock runs first and sees nothing of it.
    done = run_pytest(root, "-v")
    assert_outcome(done, passed=11)
    assert cassette_texts(root) == cassettes  # replay writes nothing
    # Under xdist each worker has its own engine; identical requests still get their own cassette's answer.
    done = run_pytest(root, "-n", "2", "-k", "not without_llmock", "-v")
    assert_outcome(done, passed=10)  # (xdist's summary leaves the deselected test out)
    assert re.search(r"\[gw0\].*PASSED", output_of(done)) and re.search(r"\[gw1\].*PASSED", output_of(done))

    # A changed prompt fails, with the near-miss report in the failure text,
    # whether the SDK's exception reached pytest or the code swallowed it.
    write_project(root, {"tests/test_changed.py": TESTS_CHANGED})
    done = run_pytest(root, "tests/test_changed.py", "-n", "2")
    assert_outcome(done, failed=2)
    output = output_of(done)
    for question in ("What is the capital of Italy?", "What is the capital of Spain?"):
        assert question in output
    # The report names the recording that came closest, by file and index, once per test.
    assert output.count("test_chat.yaml: interactions[0]") >= 2, output
    for name in ("test_changed_prompt_raises", "test_changed_prompt_swallowed"):
        assert f"(mode replay, cassette cassettes/tests/test_app/test_chat.yaml, session {name}-" in output
    assert "FAILED tests/test_changed.py::test_changed_prompt_swallowed - " in output


TESTS_ONCE_AND_REWRITE = '''
import os

import pytest

import app


def test_recorded_before(llmock):
    assert app.ask("What is the capital of France?") == "Paris is the capital."
    if os.environ.get("AND_GERMANY"):
        assert app.ask("And of Germany?") == "Berlin."


@pytest.mark.llmock(mode="once")
def test_new():
    assert app.ask("A new question?") == "a new answer"


def test_rewritten(llmock):
    assert app.ask("Rewrite me?") == os.environ["REWRITE_ANSWER"]


def test_interrupted(llmock):
    app.ask("Interrupt me?")
    if os.environ.get("INTERRUPT"):
        raise KeyboardInterrupt
'''


def test_once_records_only_missing_cassettes_and_rewrite_replaces_only_when_the_test_ends(
    tmp_path: Path, fake_server: FakeServerFactory
) -> None:
    root = project(tmp_path, test_flow=TESTS_ONCE_AND_REWRITE)
    directory = root / "cassettes" / "tests" / "test_flow"
    fake = fake_server(OpenAIFake())
    env = {"OPENAI_BASE_URL": fake.url + "/v1", "OPENAI_API_KEY": RECORD_KEY}

    # First: record test_recorded_before, test_rewritten and test_interrupted.
    fake.queue(Script(text="Paris is the capital."), Script(text="first rewrite"), Script(text="first interrupt"))
    done = run_pytest(root, "--llmock-mode=once", "-k", "not test_new",
                      env=child_env(**env, REWRITE_ANSWER="first rewrite"))
    assert_outcome(done, passed=3, deselected=1)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert set(before) >= {"test_recorded_before.yaml", "test_rewritten.yaml", "test_interrupted.yaml"}

    # once (here from the marker, over --record-mode=none): only the test without a cassette
    # goes upstream; the other replays.
    fake.requests.clear()
    fake.queue(Script(text="a new answer"))
    done = run_pytest(root, "--record-mode=none", "-k", "test_recorded_before or test_new", env=child_env(**env))
    assert_outcome(done, passed=2, deselected=2)
    assert [r.json["messages"][0]["content"] for r in fake.requests] == ["A new question?"]
    assert (directory / "test_recorded_before.yaml").read_bytes() == before["test_recorded_before.yaml"]
    assert "a new answer" in (directory / "test_new.yaml").read_text(encoding="utf-8")

    # auto (new_episodes): what the cassette has is replayed, what it lacks is recorded into it.
    fake.requests.clear()
    fake.queue(Script(text="Berlin."))
    done = run_pytest(root, "--llmock-mode=new_episodes", "-k", "test_recorded_before",
                      env=child_env(**env, AND_GERMANY="1"))
    assert_outcome(done, passed=1, deselected=3)
    assert [r.json["messages"][0]["content"] for r in fake.requests] == ["And of Germany?"]
    assert len(cassette_store.load(directory / "test_recorded_before.yaml").interactions) == 2

    # rewrite: a test that runs to its end replaces its cassette; one interrupted keeps the old one.
    fake.queue(Script(text="second rewrite"))
    done = run_pytest(root, "--record-mode=rewrite", "-k", "test_rewritten",
                      env=child_env(**env, REWRITE_ANSWER="second rewrite"))
    assert_outcome(done, passed=1, deselected=3)
    rewritten = (directory / "test_rewritten.yaml").read_text(encoding="utf-8")
    assert "second rewrite" in rewritten and "first rewrite" not in rewritten
    fake.queue(Script(text="second interrupt"))
    done = run_pytest(root, "--llmock-mode=rewrite", "-k", "test_interrupted", env=child_env(**env, INTERRUPT="1"))
    assert done.returncode == 2, output_of(done)  # pytest's "interrupted"
    assert (directory / "test_interrupted.yaml").read_bytes() == before["test_interrupted.yaml"]
    assert [p.name for p in directory.iterdir() if p.name.startswith(".") and "recording" in p.name] == []
    # The cassettes replay (the interrupted one still has its first answer).
    fake.stop()
    done = run_pytest(root, env=child_env(REWRITE_ANSWER="second rewrite", AND_GERMANY="1"))
    assert_outcome(done, passed=4)


TESTS_MISC = '''
import os
import socket

import openai
import pytest

import app


def test_two_questions(llmock):
    assert app.ask("First question?") == "first"
    if not os.environ.get("ONLY_FIRST"):
        assert app.ask("Second question?") == "second"
    else:
        with pytest.raises(AssertionError, match=r"recorded/tests/test_misc/test_two_questions.yaml: interactions\\[1\\]"):
            llmock.assert_all_used()


def test_reaches_out_and_swallows_it(llmock):
    try:
        socket.create_connection(("192.0.2.1", 9), timeout=0.5).close()
    except OSError:
        pass
    try:
        openai.OpenAI(base_url="http://192.0.2.1:9/v1", max_retries=0, timeout=1).models.list()
    except openai.APIConnectionError:
        pass


@pytest.mark.llmock(fixtures=["fixtures/marker.json"])
def test_marker_and_ini_fixtures(llmock):
    assert app.ask("Hand-written?") == "from the marker's fixture file"
    assert app.ask("Shared?") == "from the ini's fixture file"
    assert [entry.origin.section for entry in llmock.requests] == ["fixtures", "fixtures"]
    llmock.assert_all_used()  # the marker's file is the test's own; the ini's is shared


def test_loopback_is_fine(llmock):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    socket.create_connection(server.getsockname(), timeout=5).close()
    server.close()
'''


def test_block_network_report_unused_and_the_proxy_transport(tmp_path: Path, fake_server: FakeServerFactory) -> None:
    ini = "llmock_fixtures = fixtures/shared.json\nllmock_cassette_dir = recorded\n"
    root = project(tmp_path, ini=ini, test_misc=TESTS_MISC)
    write_project(root, {
        "fixtures/marker.json": fixture_file(("Hand-written?", "from the marker's fixture file")),
        "fixtures/shared.json": fixture_file(("Shared?", "from the ini's fixture file"), ("Never asked?", "no")),
    })
    fake = fake_server(OpenAIFake())
    fake.queue(Script(text="first"), Script(text="second"))
    done = run_pytest(root, "--llmock-mode=record", "-k", "two_questions",
                      env=child_env(OPENAI_BASE_URL=fake.url + "/v1", OPENAI_API_KEY=RECORD_KEY))
    assert_outcome(done, passed=1, deselected=3)
    fake.stop()
    recorded = root / "recorded/tests/test_misc/test_two_questions.yaml"
    assert recorded.is_file() and not (root / "cassettes").exists()
    write_project(root, {"recorded/shared/unused.yaml": recorded.read_text()})

    # --block-network: the refused connections fail the test that swallowed them, naming host:port;
    # loopback stays open. --llmock-report-unused: the second question no test asked, and the
    # shared cassette nobody loaded, across the run (here two xdist workers).
    done = run_pytest(root, "--block-network", "-n", "2", "--llmock-report-unused=usage.json", "-rf",
                      env=child_env(ONLY_FIRST="1"))
    assert_outcome(done, passed=3, failed=1)
    output = output_of(done)
    assert "FAILED tests/test_misc.py::test_reaches_out_and_swallows_it" in output
    assert "192.0.2.1:9" in output and "--block-network" in output
    assert "recorded/tests/test_misc/test_two_questions.yaml: 1 of 2 interactions unused (interactions[1])" in output
    assert "recorded/shared/unused.yaml: no interaction used" in output
    report = UsageReport.read(root / "usage.json")
    assert report.cassettes["recorded/tests/test_misc/test_two_questions.yaml"].used == {0}
    assert report.cassettes["recorded/shared/unused.yaml"].used == set()

    # The proxy transport: the SDK keeps api.openai.com and goes through mitmdump (HTTPS_PROXY
    # naming the session, SSL_CERT_FILE its CA); the same cassette answers.
    done = run_pytest(root, "--llmock-transport=proxy", "-k", "two_questions or fixtures", "-v")
    assert_outcome(done, passed=2, deselected=2)


def test_proxy_transport_refuses_to_record(tmp_path: Path) -> None:
    root = project(tmp_path, test_misc=TESTS_MISC)
    done = run_pytest(root, "--llmock-transport=proxy", "--llmock-mode=record")
    assert done.returncode == 4, output_of(done)  # a usage error, before any test runs
    assert "--llmock-transport=base-url" in output_of(done)


@pytest.mark.parametrize("value", ["tests", "tests/test_misc.py"])
def test_report_unused_does_not_swallow_test_paths(tmp_path: Path, value: str) -> None:
    root = project(tmp_path, test_misc=TESTS_MISC)
    done = run_pytest(root, "--llmock-report-unused", value)
    assert done.returncode == 4, output_of(done)
    assert "--llmock-report-unused=" in output_of(done)
