"""The base-URL transport: one replay engine per pytest process, in a thread of its own.

The engine (:class:`llmock_proxy.replay.server.ReplayEngine`) listens on
``127.0.0.1:0`` with its own event loop in a daemon thread, so synchronous
test code, pytest-asyncio's loops and child processes all reach it over
HTTP. Each test opens a named session in the engine's registry; the registry
is not thread-safe, so every call into it is made on the engine's loop
(``run_coroutine_threadsafe``) and waited for.

When a test records (auto/record/rewrite/once), the recording of a request
is written after its answer has gone out; the session is closed with
``ReplayEngine.close_session``, which waits until what it forwarded is
recorded, so the cassette is whole when the test's teardown moves or reads it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from llmock_proxy.pytest_plugin.environment import base_url_environment
from llmock_proxy.pytest_plugin.transport import ClosedSession, SessionSpec

if TYPE_CHECKING:
    from llmock_proxy.replay.fixture import Fixture
    from llmock_proxy.replay.journal import JournalEntry, Origin
    from llmock_proxy.replay.server import ReplayEngine
    from llmock_proxy.replay.session import ReplaySession

T = TypeVar("T")

START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0
# How long closing a session waits for its last forwarded request to be recorded.
DRAIN_TIMEOUT = 30.0
THREAD_NAME = "llmock-replay-engine"
ENGINE_LOGGER = "llmock_proxy.replay"
# The engine's one line per miss (answers.log_miss): the plugin fails the test
# with the whole report itself, so pytest's captured log need not repeat it.
MISS_LOG_PREFIX = "replay miss"


class MissLogFilter(logging.Filter):
    """Drops the engine thread's miss lines (see :data:`MISS_LOG_PREFIX`)."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName == self.thread_name and str(record.msg).startswith(MISS_LOG_PREFIX))


class EngineThread:
    """The replay engine running in a daemon thread; see the module docstring."""

    name = "base-url"

    def __init__(self, timing: str = "instant") -> None:
        self.timing = timing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.engine: ReplayEngine | None = None
        self.port: int | None = None
        self._shared: dict[tuple[tuple[Path, ...], tuple[Path, ...]], list[Fixture]] = {}
        self._log_filter = MissLogFilter(THREAD_NAME)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the llmock replay engine is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EngineThread:
        if self._thread is not None:
            return self
        logging.getLogger(ENGINE_LOGGER).addFilter(self._log_filter)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"the llmock replay engine did not start within {START_TIMEOUT:.0f}s")
        if self._error is not None:
            raise RuntimeError(f"the llmock replay engine failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._start_engine())
        except BaseException as exc:  # told to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self.engine is not None:
                loop.run_until_complete(self.engine.stop())
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_engine(self) -> None:
        from llmock_proxy.record.forward import ForwarderFactory
        from llmock_proxy.replay.plan import Timing
        from llmock_proxy.replay.server import ReplayEngine
        from llmock_proxy.replay.session import ReplaySession

        self.engine = ReplayEngine(
            ReplaySession(name="pytest"), timing=Timing.parse(self.timing), forward=ForwarderFactory()
        )
        _, self.port = await self.engine.start("127.0.0.1", 0)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=START_TIMEOUT)
        self._thread = None
        self._loop = None
        logging.getLogger(ENGINE_LOGGER).removeFilter(self._log_filter)

    def allowed_threads(self) -> frozenset[int]:
        ident = self._thread.ident if self._thread is not None else None
        return frozenset({ident}) if ident is not None else frozenset()

    # -- calls into the loop -----------------------------------------------------------------

    def call(self, fn: Callable[[], T], timeout: float = CALL_TIMEOUT) -> T:
        """``fn()`` run on the engine's loop; its result or exception here."""

        async def run() -> T:
            return fn()

        return self.run(run(), timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the llmock replay engine is not running")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    # -- sessions --------------------------------------------------------------------------

    def open(self, spec: SessionSpec) -> EngineSession:
        from llmock_proxy.cassette.yamlio import gc_paused
        from llmock_proxy.replay.session import ReplaySession
        from llmock_proxy.replay.sessions import SESSION_PREFIX, SessionSettings
        from llmock_proxy.replay.sources import load_sources

        self.start()
        # Loading happens here, in the test's thread: the engine keeps answering other work meanwhile.
        with gc_paused():
            fixtures = [
                *load_sources(spec.cassettes, ()),
                *self._shared_fixtures(spec.shared_cassettes, ()),
                *load_sources((), spec.fixtures),
                *self._shared_fixtures((), spec.shared_fixtures),
            ]
        session = ReplaySession(fixtures, name=spec.session_id)
        settings = SessionSettings(mode=spec.mode, record_to=spec.record_to, upstreams=dict(spec.upstreams))
        engine = self.engine
        assert engine is not None
        self.call(lambda: engine.sessions.open(spec.session_id, session, settings))
        url = f"{self.url}{SESSION_PREFIX}{spec.session_id}"
        return EngineSession(self, spec.session_id, session, url, base_url_environment(url))

    def _shared_fixtures(self, cassettes: tuple[Path, ...], fixtures: tuple[Path, ...]) -> list[Fixture]:
        """The run's shared files, read once per process: fixtures are
        immutable once loaded and sessions keep their state apart."""
        if not cassettes and not fixtures:
            return []
        key = (cassettes, fixtures)
        loaded = self._shared.get(key)
        if loaded is None:
            from llmock_proxy.replay.sources import load_sources

            loaded = self._shared[key] = load_sources(cassettes, fixtures)
        return loaded


@dataclass
class EngineSession:
    """A test's session on the in-process engine."""

    transport: EngineThread
    session_id: str
    session: ReplaySession
    base_url: str
    env: dict[str, str]
    proxy_url: str | None = None
    closed: ClosedSession | None = field(default=None, init=False)

    def journal(self) -> list[JournalEntry]:
        if self.closed is not None:
            return list(self.closed.journal)
        return self.transport.call(lambda: list(self.session.journal))

    def unused(self) -> list[Origin]:
        if self.closed is not None:
            return list(self.closed.unused)
        return self.transport.call(self.session.unused)

    def reset(self) -> None:
        self.transport.call(self.session.reset)

    def close(self) -> ClosedSession:
        if self.closed is not None:
            return self.closed
        transport, session_id, session = self.transport, self.session_id, self.session
        engine = transport.engine
        assert engine is not None

        async def close() -> ClosedSession:
            await engine.close_session(session_id, DRAIN_TIMEOUT)  # once what it forwarded is recorded
            return ClosedSession(list(session.journal), session.unused())

        self.closed = transport.run(close(), DRAIN_TIMEOUT + CALL_TIMEOUT)
        return self.closed
