"""``auto`` mode (record on miss), the way a user runs it: ``llmock-proxy
serve --mode auto`` and the replay addon with ``llmock_mode=auto``.

What it records it replays, after a restart too (the cassette directory it
writes to is loaded), and identical misses arriving together go upstream,
and into the cassette, once: the later ones wait for the first exchange and
are answered with its answer. The health check counts recordings and
hand-written fixtures apart.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.mitm.replay import Replay
from tests.conftest import FakeServerFactory, ProxyFactory
from tests.fakes import OpenAIFake, Script
from tests.harness import UpstreamRouter, routes_for
from tests.harness import clients as sdk
from tests.harness.http import httpx
from tests.test_serve import Serve

EXAMPLES = Path(__file__).resolve().parent.parent / "cassettes" / "examples"
QUESTION = "What did the upstream say?"
WAITS = "waits for the identical request being forwarded"


@pytest.fixture
def serve() -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        started.append(Serve(*args))
        return started[-1]

    yield start
    for instance in started:
        instance.stop()


def ask(client: Any, *, stream: bool = False, question: str = QUESTION) -> str:
    messages = [{"role": "user", "content": question}]
    if stream:
        chunks = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices[0].message.content


def recorded_interactions(cassette_dir: Path) -> list[Any]:
    """Every interaction of every cassette in the directory."""
    return [i for path in sorted(cassette_dir.rglob("*.yaml")) for i in cassette_store.load(path).interactions]


def held_script(text: str, reached: threading.Event, gate: threading.Event) -> Script:
    """The fake's answer waits for ``gate`` (set by the test once the second
    client is seen waiting), after saying with ``reached`` that the first
    request got there. A second request reaching the fake would wait too,
    and the test would fail on the count."""

    def hold(payload: Any) -> Any:
        reached.set()
        assert gate.wait(60), "the test never let the upstream answer"
        return payload

    return Script(text=text, mutate=hold)


def both_ask(first: Callable[[], str], second: Callable[[], str], second_waits: Callable[[], None],
             reached: threading.Event, gate: threading.Event) -> list[str]:
    """``first`` in a thread until the upstream holds it, then ``second`` in
    another until the proxy says it waits; then the upstream answers."""
    answers: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(name: str, call: Callable[[], str]) -> None:
        try:
            answers[name] = call()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
            gate.set()

    threads = [threading.Thread(target=run, args=("first", first)), threading.Thread(target=run, args=("second", second))]
    threads[0].start()
    assert reached.wait(30), "the first request never reached the upstream"
    threads[1].start()
    try:
        second_waits()
    finally:
        gate.set()
        for thread in threads:
            thread.join(60)
    if errors:
        raise errors[0]
    return [answers["first"], answers["second"]]


# -- serve --mode auto ---------------------------------------------------------------------------


def test_serve_auto_replays_what_it_recorded_after_a_restart(
    serve: Callable[..., Serve], fake_server: FakeServerFactory, tmp_path: Path
) -> None:
    fake = fake_server(OpenAIFake(Script(text="Recorded once.")))
    cassette_dir = tmp_path / "cassettes"
    args = ("--mode", "auto", "--upstream", fake.url, "--cassette-dir", str(cassette_dir))
    first = serve(*args)
    assert ask(sdk.openai_client(base_url=f"{first.url}/v1")) == "Recorded once."
    assert first.stop() == 0
    fake.stop()  # the upstream is gone: only the recording can answer now

    again = serve(*args)  # a new cassette file per run: the earlier one must be loaded
    client = sdk.openai_client(base_url=f"{again.url}/v1", max_retries=0)
    assert ask(client) == "Recorded once."
    assert ask(client, stream=True) == "Recorded once."  # re-rendered from the recording
    health = httpx.get(f"{again.url}/__llmock/health").json()
    assert (health["hits"], health["misses"]) == (2, 0)
    assert (health["recordings"], health["handWritten"]) == (1, 0)
    assert again.stop() == 0
    assert len(fake.requests) == 1
    assert [i.match["userMessage"] for i in recorded_interactions(cassette_dir)] == [QUESTION]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_serve_auto_sends_identical_concurrent_misses_upstream_once(
    serve: Callable[..., Serve], fake_server: FakeServerFactory, tmp_path: Path, stream: bool
) -> None:
    reached, gate = threading.Event(), threading.Event()
    fake = fake_server(OpenAIFake(held_script("Only once upstream.", reached, gate)))
    cassette_dir = tmp_path / "cassettes"
    server = serve("--mode", "auto", "--upstream", fake.url, "--cassette-dir", str(cassette_dir))

    def client_asks() -> str:
        return ask(sdk.openai_client(base_url=f"{server.url}/v1", max_retries=0), stream=stream)

    answers = both_ask(client_asks, client_asks, lambda: server.wait_for_line(WAITS) and None, reached, gate)
    assert answers == ["Only once upstream.", "Only once upstream."]
    assert len(fake.requests) == 1
    assert len(recorded_interactions(cassette_dir)) == 1
    journal = httpx.get(f"{server.url}/__llmock/health").json()
    assert journal["misses"] == 1 and journal["hits"] == 1  # the second was answered from the recording
    assert ask(sdk.openai_client(base_url=f"{server.url}/v1", max_retries=0)) == "Only once upstream."
    assert len(fake.requests) == 1


def test_serve_health_counts_recordings_and_hand_written_fixtures_apart(serve: Callable[..., Serve]) -> None:
    yaml_files = sorted(EXAMPLES.glob("*.yaml"))
    json_files = sorted(EXAMPLES.glob("*.json"))
    recordings = sum(len(cassette_store.load(p).interactions) for p in yaml_files)
    hand_written = sum(len(json.loads(p.read_text(encoding="utf-8"))["fixtures"]) for p in json_files)
    server = serve("--cassettes", *map(str, yaml_files), "--fixtures", *map(str, json_files))
    health = httpx.get(f"{server.url}/__llmock/health").json()
    assert (health["recordings"], health["handWritten"]) == (recordings, hand_written)
    assert health["fixtures"] == recordings + hand_written


# -- the replay addon, llmock_mode=auto -----------------------------------------------------------


class LogSeen(logging.Handler):
    """Sets ``seen`` when the addon logs a line holding ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def addon_log() -> Iterator[Callable[[str], LogSeen]]:
    logger = logging.getLogger("llmock_proxy.mitm.replay")
    handlers: list[LogSeen] = []
    level = logger.level

    def watch(text: str) -> LogSeen:
        handlers.append(LogSeen(text))
        logger.addHandler(handlers[-1])
        logger.setLevel(logging.INFO)
        return handlers[-1]

    yield watch
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(level)


def auto_options(cassette_dir: Path, **more: Any) -> dict[str, Any]:
    return {"llmock_mode": "auto", "llmock_cassette_dir": str(cassette_dir), **more}


def test_addon_auto_replays_what_it_recorded_after_a_restart(
    proxy: ProxyFactory, fake_server: FakeServerFactory, tmp_path: Path
) -> None:
    fake = fake_server(OpenAIFake(Script(text="Recorded by the addon.")))
    cassette_dir = tmp_path / "cassettes"
    to_the_fake = UpstreamRouter(routes_for(fake))  # still its address once it is stopped: refused
    first = proxy(addons=[Replay()], options=auto_options(cassette_dir), router=to_the_fake)
    assert ask(sdk.openai_client(first)) == "Recorded by the addon."
    first.stop()  # the recording is written before the proxy stops
    fake.stop()

    again = proxy(addons=[Replay()], options=auto_options(cassette_dir), router=to_the_fake)
    client = sdk.openai_client(again, max_retries=0)
    assert ask(client) == "Recorded by the addon."
    assert ask(client, stream=True) == "Recorded by the addon."
    with sdk.raw_client(again) as raw:
        health = raw.get("http://llmock.invalid/__llmock/health").json()
    assert (health["hits"], health["misses"]) == (2, 0)
    assert (health["recordings"], health["handWritten"]) == (1, 0)
    again.stop()
    assert len(fake.requests) == 1
    assert [i.match["userMessage"] for i in recorded_interactions(cassette_dir)] == [QUESTION]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_addon_auto_sends_identical_concurrent_misses_upstream_once(
    proxy: ProxyFactory, fake_server: FakeServerFactory, addon_log: Callable[[str], LogSeen], tmp_path: Path,
    stream: bool,
) -> None:
    reached, gate = threading.Event(), threading.Event()
    fake = fake_server(OpenAIFake(held_script("Only once upstream.", reached, gate)))
    cassette_dir = tmp_path / "cassettes"
    replay = Replay()
    running = proxy(addons=[replay], options=auto_options(cassette_dir, llmock_timing="instant"), fakes=[fake])
    waiting = addon_log(WAITS)

    def client_asks() -> str:
        return ask(sdk.openai_client(running, max_retries=0), stream=stream)

    def second_waits() -> None:
        assert waiting.seen.wait(30), "the second request did not wait for the first"

    answers = both_ask(client_asks, client_asks, second_waits, reached, gate)
    assert answers == ["Only once upstream.", "Only once upstream."]
    assert len(fake.requests) == 1
    assert (replay.session.misses, replay.session.hits) == (1, 1)
    assert [e.outcome for e in replay.session.journal] == ["recorded", "hit"]
    assert replay._record.flush(30)
    assert len(recorded_interactions(cassette_dir)) == 1


def test_addon_health_counts_recordings_and_hand_written_fixtures_apart(proxy: ProxyFactory) -> None:
    yaml_files = sorted(EXAMPLES.glob("*.yaml"))
    json_files = sorted(EXAMPLES.glob("*.json"))
    recordings = sum(len(cassette_store.load(p).interactions) for p in yaml_files)
    hand_written = sum(len(json.loads(p.read_text(encoding="utf-8"))["fixtures"]) for p in json_files)
    running = proxy(addons=[Replay()], options={
        "llmock_cassette_dir": "", "llmock_cassettes": [str(p) for p in yaml_files],
        "llmock_fixtures": [str(p) for p in json_files],
    })
    with sdk.raw_client(running) as raw:
        health = raw.get("http://llmock.invalid/__llmock/health").json()
    assert (health["recordings"], health["handWritten"]) == (recordings, hand_written)
