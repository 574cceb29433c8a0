"""The real SDKs get their answers from replay, with every upstream stopped.

The conversations (tests/support/replay.py ``SUITE``: openai chat and
Responses, anthropic messages, google-genai; streaming and not; tool-call
round trips) are recorded once through the record addon against the fake
upstreams. Then the fakes are stopped and the same conversations are
answered by (a) those cassettes and (b) an llmock-format fixture file, through
the replay addon in regular mode (client trusts mitmproxy's CA) and in
reverse mode, through the engine as a base-URL server and through the real
`llmock-proxy serve` process. A test router
refuses every connection that is not to 127.0.0.1 and keeps a list, so a
network attempt would both fail and show.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmock_proxy.mitm.record import Record
from llmock_proxy.mitm.replay import Replay
from llmock_proxy.replay.session import ReplaySession
from tests.fakes import AnthropicFake, FakeServer, GeminiFake, OpenAIFake, TestPKI
from tests.harness import InProcessProxy, UpstreamRouter, routes_for
from tests.harness import clients as sdk
from tests.harness.http import httpx
from tests.support.replay import (
    EXPECTED,
    SUITE,
    SUITE_FIXTURES,
    EngineThread,
    SuiteClients,
    run_suite,
)
from tests.test_serve import Serve


@pytest.fixture(scope="module")
def recorded_dir(tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI) -> Path:
    """Cassettes of the whole suite, recorded through the record addon; the fakes are gone after."""
    cassette_dir = tmp_path_factory.mktemp("recorded")
    fakes = {
        "openai": FakeServer(OpenAIFake(), pki=test_pki).start(),
        "anthropic": FakeServer(AnthropicFake(), pki=test_pki).start(),
        "gemini": FakeServer(GeminiFake(), pki=test_pki).start(),
    }
    record = Record()
    proxy = InProcessProxy(
        confdir=tmp_path_factory.mktemp("mitm-record"),
        addons=[record],
        options={"llmock_cassette_dir": str(cassette_dir), "llmock_cassette": "suite.yaml"},
        router=UpstreamRouter(routes_for(*fakes.values())),
        upstream_trusted_ca=test_pki.ca_cert_path,
    )
    try:
        with proxy:
            clients = SuiteClients(
                openai=sdk.openai_client(proxy),
                anthropic=sdk.anthropic_client(proxy),
                genai=sdk.genai_client(proxy),
                expect=lambda name, *scripts: fakes[name].queue(*scripts),
            )
            results = run_suite(clients)
            assert record.flush(30)
    finally:
        for fake in fakes.values():
            fake.stop()
    assert results == EXPECTED  # the fakes answered as scripted while recording
    return cassette_dir


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fixtures") / "suite.json"
    path.write_text(json.dumps(SUITE_FIXTURES, indent=2))
    return path


def replay_proxy(tmp_path: Path, mode: str, options: dict[str, Any]) -> tuple[InProcessProxy, UpstreamRouter]:
    router = UpstreamRouter()  # no routes: every non-loopback connection is refused and listed
    proxy = InProcessProxy(
        confdir=tmp_path / "mitm-replay",
        mode=mode,
        addons=[Replay()],
        options={"llmock_cassette_dir": "", **options},
        router=router,
    )
    return proxy, router


def assert_offline(router: UpstreamRouter, proxy: InProcessProxy) -> None:
    outbound = [a for a in router.attempts if a.requested[0] != "127.0.0.1"]
    assert outbound == [], f"replay tried to reach the network: {outbound}"
    assert not proxy.errors(), proxy.errors()


SOURCES = ["cassettes", "fixtures"]


@pytest.fixture
def source_options(request: pytest.FixtureRequest, recorded_dir: Path, fixture_file: Path) -> Iterator[dict[str, Any]]:
    if request.param == "cassettes":
        yield {"llmock_cassettes": [str(recorded_dir)]}
    else:
        yield {"llmock_fixtures": [str(fixture_file)]}


@pytest.mark.parametrize("source_options", SOURCES, indirect=True)
def test_regular_mode_with_the_mitmproxy_ca(tmp_path: Path, source_options: dict[str, Any]) -> None:
    proxy, router = replay_proxy(tmp_path, "regular", source_options)
    with proxy:
        clients = SuiteClients(
            openai=sdk.openai_client(proxy), anthropic=sdk.anthropic_client(proxy), genai=sdk.genai_client(proxy)
        )
        assert run_suite(clients) == EXPECTED
        assert_offline(router, proxy)


REVERSE_TARGETS = {
    "openai": ("https://api.openai.com", "/v1"),
    "anthropic": ("https://api.anthropic.com", ""),
    "gemini": ("https://generativelanguage.googleapis.com", ""),
}


@pytest.mark.parametrize("source_options", SOURCES, indirect=True)
def test_reverse_mode(tmp_path: Path, source_options: dict[str, Any]) -> None:
    for provider, (target, suffix) in REVERSE_TARGETS.items():
        proxy, router = replay_proxy(tmp_path / provider, f"reverse:{target}", source_options)
        with proxy:
            base = proxy.url + suffix
            clients = SuiteClients(
                openai=sdk.openai_client(base_url=base),
                anthropic=sdk.anthropic_client(base_url=base),
                genai=sdk.genai_client(base_url=base),
            )
            steps = [name for name in SUITE if name.startswith(provider)]
            assert run_suite(clients, steps) == {name: EXPECTED[name] for name in steps}
            assert_offline(router, proxy)


@pytest.mark.parametrize("source", SOURCES)
def test_base_url_server(source: str, recorded_dir: Path, fixture_file: Path) -> None:
    """The engine ``llmock-proxy serve`` runs, with no mitmproxy in the path."""
    session = (
        ReplaySession.load(cassettes=[recorded_dir]) if source == "cassettes" else ReplaySession.load(fixtures=[fixture_file])
    )
    with EngineThread(session, timing="recorded") as engine:
        clients = SuiteClients(
            openai=sdk.openai_client(base_url=f"{engine.url}/v1"),
            anthropic=sdk.anthropic_client(base_url=engine.url),
            genai=sdk.genai_client(base_url=engine.url),
        )
        assert run_suite(clients) == EXPECTED
    assert session.misses == 0


def test_the_serve_command_answers_from_the_recorded_cassettes(recorded_dir: Path) -> None:
    """The real ``llmock-proxy serve`` process, streams at their recorded pace."""
    server = Serve("--cassettes", str(recorded_dir))
    try:
        clients = SuiteClients(
            openai=sdk.openai_client(base_url=f"{server.url}/v1"),
            anthropic=sdk.anthropic_client(base_url=server.url),
            genai=sdk.genai_client(base_url=server.url),
        )
        assert run_suite(clients) == EXPECTED
        health = httpx.get(f"{server.url}/__llmock/health", timeout=10).json()
        assert health["misses"] == 0 and health["hits"] >= len(SUITE)
    finally:
        assert server.stop() == 0
