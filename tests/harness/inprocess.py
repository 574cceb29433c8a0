"""A real mitmproxy 11 running in this process, in a background thread with its own loop.

Only one mitmproxy Master may exist per process (``mitmproxy.ctx`` is global),
so :class:`InProcessProxy` holds a process-wide lock while it runs and a
second one fails at once with a clear message instead of corrupting the first.

The master is a plain :class:`mitmproxy.master.Master` with mitmproxy's
default addons (what mitmdump runs, minus the terminal output), then the
caller's addons, then the optional :class:`UpstreamRouter` (last, so it sees
the address other addons chose), then a readiness probe: its ``running``
hook fires after the listeners are bound and every earlier addon's
``running`` hook finished, and the actual port comes from
``proxyserver.listen_addrs()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mitmproxy import options as mitm_options
from mitmproxy.addons import default_addons
from mitmproxy.master import Master

from tests.harness.router import UpstreamRouter

T = TypeVar("T")

# mitmproxy.ctx is process-global: one running master at a time.
_ONE_MASTER = threading.Lock()
_START_TIMEOUT = 20.0
_CAPTURED_LOGGERS = ("mitmproxy", "llmock_proxy", "tests")

CA_CERT_FILE = "mitmproxy-ca-cert.pem"


class ProxyStartError(RuntimeError):
    pass


class _ThreadLogCollector(logging.Handler):
    """Keeps the log records emitted on the proxy's thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.thread_id: int | None = None
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            self.records.append(record)


class _ReadyProbe:
    """Last addon: its ``running`` hook means the proxy is listening and set up."""

    def __init__(self, on_running: Callable[[], None]) -> None:
        self._on_running = on_running

    def running(self) -> None:
        self._on_running()


class InProcessProxy:
    """mitmproxy listening on 127.0.0.1 (port 0), for tests.

    ``mode``: ``regular``, ``reverse:<url>``, ``upstream:<url>`` (or a list).
    ``addons``: addon instances added after mitmproxy's defaults.
    ``options``: option overrides applied after all addons are loaded (so the
    addons' own options can be set), e.g. ``connection_strategy="lazy"``.
    ``router``: sends provider hostnames to fakes; ``upstream_trusted_ca``: the
    CA mitmproxy trusts for upstream TLS (the fakes' test CA).
    """

    def __init__(
        self,
        *,
        confdir: Path,
        mode: str | Sequence[str] = "regular",
        addons: Iterable[Any] = (),
        options: dict[str, Any] | None = None,
        router: UpstreamRouter | None = None,
        upstream_trusted_ca: Path | None = None,
    ) -> None:
        self.confdir = Path(confdir)
        self.modes = [mode] if isinstance(mode, str) else list(mode)
        self.addons = list(addons)
        self.options = dict(options or {})
        self.router = router
        self.upstream_trusted_ca = upstream_trusted_ca
        self.master: Master | None = None
        self.listen_addrs: list[tuple[str, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._logs = _ThreadLogCollector()
        self._saved_levels: dict[str, int] = {}
        self._holds_lock = False

    # -- what tests use ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self.listen_addrs:
            raise RuntimeError("proxy is not running")
        return self.listen_addrs[0][1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the proxy URL (regular mode) or base URL (reverse mode)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert_path(self) -> Path:
        """mitmproxy's CA certificate (PEM), generated in ``confdir`` at start."""
        return self.confdir / CA_CERT_FILE

    @property
    def log_records(self) -> list[logging.LogRecord]:
        return list(self._logs.records)

    def log_lines(self, level: int = logging.DEBUG) -> list[str]:
        return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self._logs.records if r.levelno >= level]

    def errors(self) -> list[str]:
        """Error log lines (an addon crash is logged, not raised, by mitmproxy)."""
        return self.log_lines(logging.ERROR)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the proxy's loop thread (e.g. to change options while running)."""
        if self._loop is None:
            raise RuntimeError("proxy is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def set_options(self, **values: Any) -> None:
        assert self.master is not None
        master = self.master
        self.call(lambda: master.options.update(**values))

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> InProcessProxy:
        if not _ONE_MASTER.acquire(blocking=False):
            raise ProxyStartError(
                "another in-process mitmproxy is running: mitmproxy allows one Master per process; "
                "stop it first (use the `proxy` fixture sequentially) or use the mitmdump runner"
            )
        self._holds_lock = True
        self.confdir.mkdir(parents=True, exist_ok=True)
        for name in _CAPTURED_LOGGERS:
            logger = logging.getLogger(name)
            self._saved_levels[name] = logger.level
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
        logging.getLogger().addHandler(self._logs)
        self._thread = threading.Thread(target=self._serve, name="inprocess-mitmproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._failure is not None or not self.listen_addrs:
            failure = self._failure
            self.stop()
            detail = "\n".join(self.log_lines(logging.WARNING)) or "(no warnings logged)"
            raise ProxyStartError(f"mitmproxy did not start ({failure or 'no listener'}):\n{detail}") from failure
        return self

    def stop(self) -> None:
        try:
            if self._thread is not None:
                if self.master is not None and self._loop is not None and not self._loop.is_closed():
                    self.master.shutdown()
                self._thread.join(_START_TIMEOUT)
                if self._thread.is_alive():
                    raise RuntimeError("in-process mitmproxy did not stop")
                self._thread = None
        finally:
            logging.getLogger().removeHandler(self._logs)
            for name, level in self._saved_levels.items():
                logging.getLogger(name).setLevel(level)
            self._saved_levels.clear()
            if self._holds_lock:
                self._holds_lock = False
                _ONE_MASTER.release()

    def __enter__(self) -> InProcessProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the proxy thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        self._logs.thread_id = threading.get_ident()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._failure = exc
        finally:
            self._ready.set()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        # confdir must be known before TlsConfig configures its cert store.
        opts = mitm_options.Options(
            confdir=str(self.confdir), listen_host="127.0.0.1", listen_port=0, mode=self.modes
        )
        master = Master(opts)
        try:
            master.addons.add(*default_addons())
            master.addons.add(*self.addons)
            if self.router is not None:
                master.addons.add(self.router)
            overrides = dict(self.options)
            if self.upstream_trusted_ca is not None:
                overrides.setdefault("ssl_verify_upstream_trusted_ca", str(self.upstream_trusted_ca))
            if overrides:
                opts.update(**overrides)
            master.addons.add(_ReadyProbe(lambda: self._on_running(master)))
        except BaseException:
            # done() also removes the log handler Master() installed on the root logger.
            await master.done()
            raise
        self.master = master
        try:
            await master.run()
        finally:
            proxyserver = master.addons.get("proxyserver")
            if proxyserver is not None:
                await proxyserver.servers.update([])  # close the listening sockets

    def _on_running(self, master: Master) -> None:
        proxyserver = master.addons.get("proxyserver")
        self.listen_addrs = [(a[0], a[1]) for a in proxyserver.listen_addrs()]
        self._ready.set()
