"""Shared fixtures: fake upstream providers, an in-process mitmproxy, mitmdump, SDK clients.

All function-scoped except the test CA (stateless after creation). Every
listener binds 127.0.0.1 on port 0. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import (
    PROVIDER_FAKES,
    AnthropicFake,
    BedrockFake,
    CohereFake,
    FakeProvider,
    FakeServer,
    GeminiFake,
    OllamaFake,
    OpenAIFake,
    TestPKI,
)
from tests.harness import InProcessProxy, MitmdumpProcess, UpstreamRouter, routes_for
from tests.harness import clients as sdk
from tests.harness.http import httpx

# -- parse cache --------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def parse_cache_for_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Cassette loads keep parsed YAML in a cache (llmock_proxy/cassette/parse_cache.py). Module-scoped
    fixtures (recording proxies) load cassettes before any test-level fixture runs, so the
    whole session points the cache at a temp dir; the environment also reaches subprocesses."""
    directory = tmp_path_factory.mktemp("parse-cache-session")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMOCK_PROXY_CACHE_DIR", str(directory))
        yield directory


@pytest.fixture(autouse=True)
def parse_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own cache dir: no test sees another test's entries."""
    directory = tmp_path_factory.mktemp("parse-cache")
    monkeypatch.setenv("LLMOCK_PROXY_CACHE_DIR", str(directory))
    return directory


# -- fakes --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The CA behind every fake's HTTPS listener (mitmproxy is told to trust it)."""
    return TestPKI(tmp_path_factory.mktemp("test-pki"))


FakeServerFactory = Callable[..., FakeServer]


@pytest.fixture
def fake_server(test_pki: TestPKI) -> Iterator[FakeServerFactory]:
    """``fake_server("openai")`` or ``fake_server(OpenAIFake(script))``: a started fake, stopped after the test."""
    started: list[FakeServer] = []

    def start(provider: FakeProvider | str, **provider_kwargs: Any) -> FakeServer:
        if isinstance(provider, str):
            if provider not in PROVIDER_FAKES:
                raise ValueError(f"unknown fake provider {provider!r}; known: {sorted(PROVIDER_FAKES)}")
            cls = PROVIDER_FAKES[provider]
            if cls is BedrockFake:
                provider_kwargs.setdefault("credentials", sdk.TEST_AWS_CREDENTIALS)
            provider = cls(**provider_kwargs)
        server = FakeServer(provider, pki=test_pki).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fake_openai(fake_server: FakeServerFactory) -> FakeServer:
    return fake_server(OpenAIFake())


@pytest.fixture
def fake_anthropic(fake_server: FakeServerFactory) -> FakeServer:
    return fake_server(AnthropicFake())


@pytest.fixture
def fake_gemini(fake_server: FakeServerFactory) -> FakeServer:
    return fake_server(GeminiFake())


@pytest.fixture
def fake_ollama(fake_server: FakeServerFactory) -> FakeServer:
    return fake_server(OllamaFake())


@pytest.fixture
def fake_cohere(fake_server: FakeServerFactory) -> FakeServer:
    return fake_server(CohereFake())


@pytest.fixture
def fake_bedrock(fake_server: FakeServerFactory) -> FakeServer:
    """Checks SigV4 signatures made with ``clients.TEST_AWS_*`` (see ``clients.sigv4_headers``)."""
    return fake_server(BedrockFake(credentials=sdk.TEST_AWS_CREDENTIALS))


# -- mitmproxy --------------------------------------------------------------------------------------

ProxyFactory = Callable[..., InProcessProxy]


@pytest.fixture
def proxy(tmp_path: Path, test_pki: TestPKI) -> Iterator[ProxyFactory]:
    """Start an in-process mitmproxy: ``proxy(mode=..., addons=[...], options={...}, fakes=[...])``.

    ``fakes``: started FakeServers whose real hostnames the test router sends
    to them (``router=False`` to run without the router). One proxy per test
    at a time (mitmproxy allows one Master per process); it is stopped after
    the test, or earlier with ``.stop()``.
    """
    started: list[InProcessProxy] = []

    def start(
        mode: str | Sequence[str] = "regular",
        *,
        addons: Iterable[Any] = (),
        options: dict[str, Any] | None = None,
        fakes: Iterable[FakeServer] = (),
        router: bool | UpstreamRouter = True,
        confdir: Path | None = None,
    ) -> InProcessProxy:
        if router is True:
            router = UpstreamRouter(routes_for(*fakes))
        elif isinstance(router, UpstreamRouter):
            router.add_routes(routes_for(*fakes))
        instance = InProcessProxy(
            confdir=confdir or tmp_path / "mitmproxy",
            mode=mode,
            addons=addons,
            options=options,
            router=router or None,
            upstream_trusted_ca=test_pki.ca_cert_path,
        )
        started.append(instance)
        return instance.start()

    yield start
    for instance in reversed(started):
        instance.stop()


MitmdumpFactory = Callable[..., MitmdumpProcess]


@pytest.fixture
def mitmdump(tmp_path: Path, test_pki: TestPKI) -> Iterator[MitmdumpFactory]:
    """Start a ``mitmdump`` subprocess: ``mitmdump(mode=..., scripts=[...], options={...}, fakes=[...])``.

    Stopped (SIGTERM, then SIGKILL if needed) after the test; ``.kill()`` for kill -9.
    """
    started: list[MitmdumpProcess] = []

    def start(
        mode: str = "regular",
        *,
        scripts: Iterable[Path | str] = (),
        options: dict[str, Any] | None = None,
        fakes: Iterable[FakeServer] = (),
        confdir: Path | None = None,
        **kwargs: Any,
    ) -> MitmdumpProcess:
        process = MitmdumpProcess(
            confdir=confdir or tmp_path / f"mitmdump-{len(started)}",
            mode=mode,
            scripts=scripts,
            options=options,
            routes=routes_for(*fakes),
            upstream_trusted_ca=test_pki.ca_cert_path,
            **kwargs,
        )
        started.append(process)
        return process.start()

    yield start
    for process in reversed(started):
        process.stop()


# -- SDK clients -------------------------------------------------------------------------------


class SdkClients:
    """The ``tests.harness.clients`` factories, closing the sync clients after the test.

    Each takes ``proxy`` (regular mode: real provider URL through the proxy,
    trusting its CA) or ``base_url=`` (reverse mode / a server directly).
    Async clients are the test's to close (``async with`` / ``await x.close()``).
    """

    def __init__(self) -> None:
        self._closers: list[Callable[[], None]] = []

    def openai(self, proxy: Any = None, **kwargs: Any) -> Any:
        client = sdk.openai_client(proxy, **kwargs)
        self._closers.append(client.close)
        return client

    def anthropic(self, proxy: Any = None, **kwargs: Any) -> Any:
        client = sdk.anthropic_client(proxy, **kwargs)
        self._closers.append(client.close)
        return client

    def genai(self, proxy: Any = None, **kwargs: Any) -> Any:
        """Sync google-genai client (for ``.aio`` use ``clients.async_genai_client``)."""
        client = sdk.genai_client(proxy, **kwargs)
        self._closers.append(client.close)
        return client

    def raw(self, proxy: Any = None, **kwargs: Any) -> httpx.Client:
        client = sdk.raw_client(proxy, **kwargs)
        self._closers.append(client.close)
        return client

    async_openai = staticmethod(sdk.async_openai_client)
    async_anthropic = staticmethod(sdk.async_anthropic_client)
    async_genai = staticmethod(sdk.async_genai_client)
    async_raw = staticmethod(sdk.async_raw_client)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


@pytest.fixture
def sdk_clients() -> Iterator[SdkClients]:
    factory = SdkClients()
    yield factory
    factory.close()
