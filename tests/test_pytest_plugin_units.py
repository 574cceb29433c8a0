"""The llmock pytest plugin's parts, in this process: modes and plans, cassette paths and
session ids, the environment patch, the network blocker, the cheap import, and the
base-URL transport's engine thread serving real SDKs through the variables it sets
(google-genai through GOOGLE_GEMINI_BASE_URL, on both lanes' majors)."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from google import genai

from llmock_proxy.pytest_plugin.engine_thread import EngineThread
from llmock_proxy.pytest_plugin.environment import (
    DUMMY_KEY,
    EnvironmentPatch,
    base_url_environment,
    dummy_keys,
    normalize_ollama_host,
    upstreams_from,
)
from llmock_proxy.pytest_plugin.mitmdump import MitmdumpProxy
from llmock_proxy.pytest_plugin.network import NetworkBlocked, NetworkBlocker, is_local
from llmock_proxy.pytest_plugin.options import (
    MODES,
    RECORD_MODE_ALIASES,
    normalize_mode,
    plan_for,
    temp_cassette_for,
)
from llmock_proxy.pytest_plugin.paths import sanitize, session_id
from llmock_proxy.pytest_plugin.transport import SessionSpec, entry_from_dict
from llmock_proxy.replay.sessions import SESSION_ID

# -- modes and plans ------------------------------------------------------------------------------


def test_record_mode_names_map_onto_llmock_modes() -> None:
    assert {alias: normalize_mode(alias) for alias in RECORD_MODE_ALIASES} == {
        "none": "replay", "once": "once", "new_episodes": "auto", "all": "record", "rewrite": "rewrite",
    }
    assert [normalize_mode(m.upper()) for m in MODES] == list(MODES)
    assert normalize_mode("new-episodes") == "auto"
    with pytest.raises(ValueError, match="'sometimes'.*replay, once, auto, record, rewrite, passthrough"):
        normalize_mode("sometimes")


def test_a_plan_follows_the_mode_and_whether_the_cassette_exists(tmp_path: Path) -> None:
    missing, present = tmp_path / "missing.yaml", tmp_path / "present.yaml"
    present.write_text("version: 1\ninteractions: []\n")

    def summary(mode: str, cassette: Path) -> tuple[str, Path | None, Path | None, bool]:
        plan = plan_for(mode, cassette)
        return plan.session_mode, plan.record_to, plan.replaces, plan.load_cassette

    assert summary("replay", present) == ("replay", None, None, True)
    assert summary("replay", missing) == ("replay", None, None, False)
    assert summary("once", present) == ("replay", None, None, True)
    assert summary("once", missing) == ("record", temp_cassette_for(missing), missing, False)
    assert summary("auto", present) == ("auto", present, None, True)
    assert summary("record", present) == ("record", present, None, False)  # appends to it
    assert summary("rewrite", present) == ("record", temp_cassette_for(present), present, False)
    assert summary("passthrough", missing) == ("passthrough", None, None, False)
    # The replacing recording sits next to the cassette, hidden and never read as a cassette.
    temp = temp_cassette_for(present)
    assert temp.parent == present.parent and temp.name.startswith(".") and temp.suffix not in (".yaml", ".yml")


# -- paths and ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("test_chat", "test_chat"),
        ("test_city[New York/NY]", "test_city[New-York-NY]"),
        ("test_q[what: 'is' \"this\"?]", "test_q[what-is-this-]"),
        ("TestX.test_y[gpt-4o-0.5]", "TestX.test_y[gpt-4o-0.5]"),
    ],
)
def test_cassette_names_keep_the_test_id_readable_and_safe(name: str, expected: str) -> None:
    assert sanitize(name) == expected


def test_a_long_name_is_cut_and_stays_unique() -> None:
    a, b = sanitize("test_x[" + "a" * 300 + "]"), sanitize("test_x[" + "a" * 299 + "b]")
    assert a != b and len(a) <= 150 and len(b) <= 150


def test_session_ids_are_valid_unique_and_name_the_test() -> None:
    ids = {
        session_id(nodeid, attempt)
        for nodeid in ("tests/test_a.py::test_x", "tests/test_b.py::test_x", "t.py::T::test_y[a/b c]", "t.py::" + "z" * 300)
        for attempt in (0, 1)
    }
    assert len(ids) == 8
    assert all(SESSION_ID.match(i) for i in ids)
    assert session_id("tests/test_a.py::test_x").startswith("test_x-")


# -- the environment -----------------------------------------------------------------------------


def test_the_environment_is_put_back_exactly() -> None:
    environ = {"OPENAI_BASE_URL": "https://gateway.example/v1", "KEEP": "1"}
    patch = EnvironmentPatch({"OPENAI_BASE_URL": "http://127.0.0.1:1/x/v1", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1/x"},
                             environ).apply()
    assert environ["OPENAI_BASE_URL"] == "http://127.0.0.1:1/x/v1"
    environ["ANTHROPIC_BASE_URL"] = "changed by the test"
    environ["OPENAI_BASE_URL"] = "changed too"
    patch.restore()
    assert environ == {"OPENAI_BASE_URL": "https://gateway.example/v1", "KEEP": "1"}
    patch.restore()  # twice is harmless
    assert environ == {"OPENAI_BASE_URL": "https://gateway.example/v1", "KEEP": "1"}


def test_base_url_variables_point_every_sdk_at_the_session() -> None:
    env = base_url_environment("http://127.0.0.1:5/__llmock/session/s1")
    assert env == {
        "OPENAI_BASE_URL": "http://127.0.0.1:5/__llmock/session/s1/v1",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:5/__llmock/session/s1",
        "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:5/__llmock/session/s1",
        "OLLAMA_HOST": "http://127.0.0.1:5/__llmock/session/s1",
        "CO_API_URL": "http://127.0.0.1:5/__llmock/session/s1",
    }


def test_dummy_keys_fill_only_what_is_missing() -> None:
    assert dummy_keys({}) == {
        "OPENAI_API_KEY": DUMMY_KEY, "ANTHROPIC_API_KEY": DUMMY_KEY, "GEMINI_API_KEY": DUMMY_KEY, "CO_API_KEY": DUMMY_KEY,
    }
    # google-genai reads either key (and warns when both are set): one present is enough.
    assert dummy_keys({"OPENAI_API_KEY": "sk-test-real", "GOOGLE_API_KEY": "x", "ANTHROPIC_API_KEY": ""}) == {
        "ANTHROPIC_API_KEY": DUMMY_KEY, "CO_API_KEY": DUMMY_KEY,
    }


def test_recording_forwards_to_the_base_urls_pytest_started_with() -> None:
    environ = {
        "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1/",
        "ANTHROPIC_BASE_URL": "",
        "OLLAMA_HOST": "0.0.0.0",
        "CO_API_URL": "https://gateway.example/cohere",
    }
    assert upstreams_from(environ) == {
        "openai": "http://127.0.0.1:8000/v1",
        "ollama": "http://127.0.0.1:11434",
        "cohere": "https://gateway.example/cohere",
    }
    assert normalize_ollama_host("example.com:5000/path/") == "http://example.com:5000/path"
    assert normalize_ollama_host("https://example.com") == "https://example.com:443"


# -- the network blocker ---------------------------------------------------------------------------


@pytest.fixture
def blocker() -> Iterator[NetworkBlocker]:
    installed = NetworkBlocker().install()
    try:
        yield installed
    finally:
        installed.uninstall()


def test_a_connection_outside_the_machine_is_refused_and_remembered(blocker: NetworkBlocker) -> None:
    with pytest.raises(NetworkBlocked, match=r"192\.0\.2\.1:9"):
        socket.create_connection(("192.0.2.1", 9), timeout=0.5)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("2001:db8::1", 443)) == errno.ECONNREFUSED
    assert [a.address for a in blocker.attempts] == ["192.0.2.1:9", "[2001:db8::1]:443"]
    assert blocker.attempts[0].thread == threading.current_thread().name


def test_loopback_and_allowed_threads_pass(blocker: NetworkBlocker) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        socket.create_connection(server.getsockname(), timeout=5).close()
    assert blocker.attempts == []
    allowed = NetworkBlocker(allowed_threads=frozenset({threading.get_ident()}))
    with socket.socket() as sock:
        assert allowed.refuse(sock, ("192.0.2.1", 9)) is None
        assert NetworkBlocker().refuse(sock, ("api.openai.com", 443)) is not None  # a name is not resolved
    assert all(is_local(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "localhost", "::ffff:127.0.0.1"))
    assert not any(is_local(h) for h in ("10.0.0.1", "192.0.2.1", "2001:db8::1", "example.com"))


def test_uninstall_puts_the_socket_methods_back() -> None:
    before = (socket.socket.connect, socket.socket.connect_ex)
    NetworkBlocker().install().uninstall()
    assert (socket.socket.connect, socket.socket.connect_ex) == before
    assert "connect" not in vars(socket.socket)


# -- a cheap import -----------------------------------------------------------------------------------


def test_importing_the_plugin_loads_no_engine() -> None:
    """Every pytest run of every project in the environment imports the plugin."""
    code = (
        "import sys, llmock_proxy.pytest_plugin.plugin\n"
        "heavy = ('aiohttp', 'mitmproxy', 'yaml', 'jsonschema', 'llmock_proxy.replay', 'llmock_proxy.cassette', "
        "'llmock_proxy.mitm', 'llmock_proxy.record', 'http.client')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the base-URL transport with real SDKs -------------------------------------------------------------


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    started = EngineThread("instant").start()
    try:
        yield started
    finally:
        started.stop()


def write_fixtures(path: Path, *pairs: tuple[str, str]) -> Path:
    fixtures = [{"match": {"userMessage": question}, "response": {"content": answer}} for question, answer in pairs]
    path.write_text(json.dumps({"fixtures": fixtures}), encoding="utf-8")
    return path


def test_two_sessions_answer_the_same_request_from_their_own_files(engine: EngineThread, tmp_path: Path) -> None:
    a = engine.open(SessionSpec("test_a-1", fixtures=(write_fixtures(tmp_path / "a.json", ("Same?", "from a")),)))
    b = engine.open(SessionSpec("test_b-2", fixtures=(write_fixtures(tmp_path / "b.json", ("Same?", "from b")),)))
    answers = []
    for session in (a, b, a):
        client = openai.OpenAI(base_url=session.env["OPENAI_BASE_URL"], api_key=DUMMY_KEY, max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Same?"}])
        answers.append(answer.choices[0].message.content)
        client.close()
    assert answers == ["from a", "from b", "from a"]
    assert [e.outcome for e in a.journal()] == ["hit", "hit"]
    closed = b.close()
    assert [e.origin.file if e.origin else None for e in closed.journal] == [str(tmp_path / "b.json")]
    assert b.journal() == closed.journal  # still readable after closing
    a.close()


def test_google_genai_follows_google_gemini_base_url(engine: EngineThread, tmp_path: Path) -> None:
    """google-genai 2.x (3.11 lane) and 3.x (3.13 lane) read GOOGLE_GEMINI_BASE_URL when a
    client is made, and keep its path: the session prefix selects the session."""
    fixtures = write_fixtures(tmp_path / "gemini.json", ("Hello Gemini?", "Hello from the session."))
    session = engine.open(SessionSpec("gemini-test", fixtures=(fixtures,)))
    patch = EnvironmentPatch({**session.env, "GEMINI_API_KEY": DUMMY_KEY}).apply()
    try:
        client = genai.Client()
        answer = client.models.generate_content(model="gemini-2.5-flash", contents="Hello Gemini?")
        assert answer.text == "Hello from the session."
    finally:
        patch.restore()
    assert [(e.outcome, e.family.split(".")[0]) for e in session.close().journal] == [("hit", "gemini")]


def test_a_journal_entry_survives_the_control_endpoints_json() -> None:
    data = {
        "method": "POST", "path": "/v1/chat/completions", "family": "openai.chat", "model": "gpt-4o-mini",
        "outcome": "hit", "status": 200, "origin": {"file": "c.yaml", "section": "interactions", "index": 2},
        "source": "c.yaml: interactions[2]", "message": None, "nearMisses": [],
    }
    assert entry_from_dict(data).to_dict() == data


# -- the proxy transport with real SDKs ----------------------------------------------------------------


def test_every_sdk_goes_through_the_proxy_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """openai, anthropic and google-genai (sync on httpx/httpx2, async on httpx and aiohttp) keep
    their real host names and reach the test's session through HTTPS_PROXY, trusting SSL_CERT_FILE."""
    fixtures = write_fixtures(tmp_path / "proxy.json", ("Through the proxy?", "answered by the session"))
    proxy = MitmdumpProxy("instant").start()
    try:
        session = proxy.open(SessionSpec("proxy-test", fixtures=(fixtures,)))
        for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY", "NO_PROXY",
                     "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        patch = EnvironmentPatch({**session.env, **dummy_keys({})}).apply()
        try:
            question = [{"role": "user", "content": "Through the proxy?"}]
            answers = [
                openai.OpenAI(max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=question)
                .choices[0].message.content,
                anthropic.Anthropic(max_retries=0).messages.create(
                    model="claude-sonnet-4-5", max_tokens=32, messages=question
                ).content[0].text,
            ]
            gemini = genai.Client()
            answers.append(gemini.models.generate_content(model="gemini-2.5-flash", contents="Through the proxy?").text)

            async def asynchronous() -> list[str | None]:
                async_openai = openai.AsyncOpenAI(max_retries=0)
                chat = await async_openai.chat.completions.create(model="gpt-4o-mini", messages=question)
                await async_openai.close()
                made = await gemini.aio.models.generate_content(
                    model="gemini-2.5-flash", contents="Through the proxy?"
                )
                return [chat.choices[0].message.content, made.text]

            answers += asyncio.run(asynchronous())
        finally:
            patch.restore()
        assert answers == ["answered by the session"] * 5
        journal = session.close().journal
        assert [e.family.split(".")[0] for e in journal] == ["openai", "anthropic", "gemini", "openai", "gemini"]
    finally:
        proxy.stop()
