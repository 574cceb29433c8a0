"""The record addon: ``mitmdump -s addons/record.py``.

Maps mitmproxy's flow hooks onto captures (:mod:`llmock_proxy.record.capture`)
whose messages go, as they happen, to the recording worker process
(:mod:`llmock_proxy.record.worker`), which decodes, redacts and writes. The
hooks only note what passes and when, so recording adds next to nothing to
mitmproxy's event loop and every ``t`` is the time bytes reached the proxy:

* ``running``          switch to lazy upstream connections (see there).
* ``request``          the request is complete and about to go upstream: open
                       a capture (its ``t`` clock starts here...).
* ``server_connected`` ...or here, when the proxy had to connect upstream
                       first: ``t`` is the upstream's time, not the connect's.
* ``responseheaders``  a stream (SSE, NDJSON, EventStream, chunked or unsized
                       body) gets the capture's ``tee`` as
                       ``flow.response.stream``: every chunk is handed to the
                       worker and passes on to the client unchanged, at once.
* ``response``         the body ended: the capture ends. The hook returns
                       once the capture is in the worker's hands, so a whole
                       body (and a stream's end) reaches the client only then;
                       that is immediate unless the worker is a pipe-full
                       behind.
* ``error``            no response (connection refused...) or a broken stream
                       (client gone...): record what happened.
* ``websocket_*``      an upgraded session: every message with its direction,
                       payload and time, then the close (code, reason, side).

The worker logs a line per interaction ("llmock: recorded ..." or "llmock:
NOT recorded ...") through this process's log; mitmdump's own dump of the
flow is left out (:mod:`llmock_proxy.mitm.flowlog`). Where no worker process can
run (a frozen mitmdump), and for a caller that needs each interaction the
moment its exchange ends (``on_recorded``: the replay addon's auto mode
answers the next request from it), captures are recorded in this process
(:class:`~llmock_proxy.record.capture.LocalCapture`) and written by a
background thread.

Options (``--set name=value``) are declared in :meth:`Record.load`; those of
slow and idle clients (``llmock_request_timeout``, ``llmock_idle_timeout``) in
its sub-addon :class:`~llmock_proxy.mitm.deadlines.Deadlines`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Literal

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import server_hooks

from llmock_proxy.cassette.model import Interaction
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.writer import BackgroundWriter, CassetteWriter
from llmock_proxy.mitm.deadlines import Deadlines
from llmock_proxy.mitm.flowlog import mark_logged, quiet_dumper_by_default
from llmock_proxy.mitm.listen import bind_loopback_by_default, rebind_to_loopback
from llmock_proxy.mitm.options import OptionCheck, refusing
from llmock_proxy.mitm.shutdown import CancelledConnectionsAtExit
from llmock_proxy.record.capture import Capture, LocalCapture, StreamedCapture, WebSocketEnded
from llmock_proxy.record.recorder import Recorder, describe
from llmock_proxy.record.worker import RecordingWorker

log = logging.getLogger(__name__)

# How long shutdown waits for queued interactions to reach disk.
SHUTDOWN_FLUSH_SECONDS = 30.0


def session_cassette_name() -> str:
    """A file name no other recording session picks: time, pid and randomness."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    return f"rec-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.yaml"


def host_allowed(patterns: Sequence[str], host: str, port: int) -> bool:
    """Empty allow-list: every host. Otherwise a shell-style pattern matching
    ``host`` or ``host:port`` (``*.openai.com``, ``127.0.0.1:8443``)."""
    if not patterns:
        return True
    host = host.lower()
    candidates = (host, f"{host}:{port}")
    return any(fnmatch.fnmatchcase(c, p.lower()) for p in patterns for c in candidates)


class Record:
    """Records every (allowed) HTTP exchange into a cassette file."""

    def __init__(self, on_recorded: Callable[[Interaction, Path], None] | None = None) -> None:
        # Told of every interaction as its exchange ends, with its cassette
        # (the replay addon's auto mode answers it from then on). Setting it
        # records in this process (see the module docstring).
        self.on_recorded = on_recorded
        # Captures in flight, by flow id. Kept here rather than in
        # flow.metadata, which mitmproxy serializes when flows are saved.
        self._captures: dict[str, Capture] = {}
        # Guards _captures for flush(), which runs on other threads.
        self._in_flight = threading.Condition()
        # Captures whose request waits for an upstream connection, by client
        # connection id: their ``t`` counts from when it is made.
        self._connecting: dict[str, list[Capture]] = {}
        self._session_file = session_cassette_name()
        self._redact_file = ""
        self._recorder: Recorder | None = None
        self._writer: BackgroundWriter | None = None
        self._worker: RecordingWorker | None = None
        # Every worker started, so flush() and done() also wait for one
        # that is being replaced.
        self._workers: list[RecordingWorker] = []
        self._worker_refused = False
        self._hosts: tuple[str, ...] = ()
        self._target: Path | None = None
        # Sub-addons mitmproxy runs with this one: slow and idle clients are cut,
        # and a typo or a bad value of --set llmock_* stops mitmdump with one line.
        self.addons = [Deadlines(), OptionCheck(), CancelledConnectionsAtExit()]

    # -- options ---------------------------------------------------------------

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "llmock_cassette_dir",
            str,
            "cassettes",
            "Directory the recorded cassettes are written to (created when missing).",
        )
        loader.add_option(
            "llmock_cassette",
            str,
            "",
            "Cassette file name inside llmock_cassette_dir. Default: a new file per "
            "recording session (rec-<time>-<pid>-<random>.yaml). Several proxies may "
            "share one file.",
        )
        loader.add_option(
            "llmock_redact",
            str,
            "",
            "Extra redaction rules file (YAML), applied on top of the default rules.",
        )
        loader.add_option(
            "llmock_hosts",
            Sequence[str],
            [],
            "Record only these hosts (shell patterns against host or host:port, e.g. "
            "'*.openai.com'); repeat the option for several. Default: every host.",
        )

    @refusing
    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        bind_loopback_by_default(updated)
        quiet_dumper_by_default(updated)
        if "llmock_redact" in updated or self._recorder is None:
            redactor = self._load_redactor(opts.llmock_redact)
            if self._writer is not None:
                self._writer.close(SHUTDOWN_FLUSH_SECONDS)
            self._redact_file = opts.llmock_redact
            self._recorder = Recorder(redactor=redactor)
            self._writer = BackgroundWriter(
                CassetteWriter(redactor=redactor),
                on_written=self._written,
                on_failed=self._failed,
            )
            # A worker reads the rules when it starts: the next capture starts
            # a new one; the old one finishes what it has.
            if self._worker is not None:
                self._worker.close(SHUTDOWN_FLUSH_SECONDS)
                self._worker = None
        if "llmock_hosts" in updated:
            self._hosts = tuple(opts.llmock_hosts)
        if {"llmock_cassette_dir", "llmock_cassette"} & updated or self._target is None:
            name = opts.llmock_cassette or self._session_file
            self._target = Path(opts.llmock_cassette_dir) / name

    @staticmethod
    def _load_redactor(rules_file: str) -> Redactor:
        if not rules_file:
            return Redactor.default()
        try:
            return Redactor.from_file(rules_file)
        except Exception as exc:
            raise exceptions.OptionsError(f"llmock_redact: {exc}") from exc

    @property
    def records_exchanges(self) -> bool:
        """This addon records what passes (the drift addon leaves warnings about it to this one)."""
        return True

    @property
    def cassette_path(self) -> Path | None:
        """The file this session writes to."""
        return self._target

    @property
    def worker_pid(self) -> int | None:
        """The recording worker process, once one was started."""
        return self._worker.pid if self._worker is not None else None

    # -- HTTP hooks ------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if self._recorder is None or flow.response is not None:
            return  # another addon answered: nothing went upstream
        req = flow.request
        if not host_allowed(self._hosts, req.host, req.port):
            return
        capture = self._open(req.method, req.url, req.headers.items(multi=True), req.raw_content)
        mark_logged(flow)  # its line is "llmock: recorded ...", once written
        with self._in_flight:
            self._captures[flow.id] = capture
        self._connecting.setdefault(flow.client_conn.id, []).append(capture)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        # The request goes out now (lazy connections: after connecting).
        for capture in self._connecting.pop(data.client.id, ()):
            capture.sent_upstream()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        capture = self._captures.get(flow.id)
        if capture is None or flow.response is None:
            return
        self._connected(flow, capture)
        resp = flow.response
        # stream_large_bodies may already have switched this body to streaming.
        forced = True if resp.stream else None
        if capture.head(resp.status_code, resp.headers.items(multi=True), streamed=forced):
            resp.stream = capture.tee

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Ends the capture; the returned awaitable (mitmproxy waits for it
        before the client gets the body, or the stream's end) is done when
        the worker holds the whole exchange."""
        capture = self._captures.get(flow.id)
        if capture is None or flow.response is None:
            return None
        if flow.websocket is not None:
            # The session continues as WebSocket messages; the capture
            # stays in flight until websocket_end.
            return None
        self._take(flow)
        resp = flow.response
        if capture.status is None:  # the head was not seen (answered by an addon)
            capture.head(resp.status_code, resp.headers.items(multi=True), streamed=False)
        capture.end(None if callable(resp.stream) else resp.raw_content)
        return self._handed_over(capture)

    def error(self, flow: http.HTTPFlow) -> None:
        capture = self._take(flow)
        if capture is None:
            return
        capture.fail(flow.error.msg if flow.error is not None else "unknown error")

    # -- WebSocket hooks -------------------------------------------------------

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        capture = self._captures.get(flow.id)
        if capture is not None:
            capture.websocket_started(flow.request.timestamp_start)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        capture = self._captures.get(flow.id)
        if capture is None or flow.websocket is None:
            return
        message = flow.websocket.messages[-1]
        capture.websocket_message(message.from_client, message.content, is_text=message.is_text, at=message.timestamp)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        capture = self._take(flow)
        if capture is None or flow.websocket is None or flow.response is None:
            return
        ws = flow.websocket
        by: Literal["client", "server"] | None = (
            None if ws.closed_by_client is None else "client" if ws.closed_by_client else "server"
        )
        response = flow.response
        capture.websocket_ended(WebSocketEnded(
            0, code=ws.close_code, reason=ws.close_reason, by=by, at=ws.timestamp_end,
            subprotocol=response.headers.get("sec-websocket-protocol"), status=response.status_code,
            response_headers=list(response.headers.items(multi=True)),
        ))

    # -- lifecycle -------------------------------------------------------------

    async def running(self) -> None:
        await rebind_to_loopback()
        # With eager connections mitmproxy dials upstream before it has read
        # a request, and a refused connection never becomes a flow: nothing
        # to record. Lazy: the request comes first, a failure is its error.
        if ctx.options.connection_strategy != "lazy":
            ctx.options.update(connection_strategy="lazy")
            log.info("llmock: connection_strategy=lazy, so failed upstream connections are recorded")

    def _take(self, flow: http.HTTPFlow) -> Capture | None:
        with self._in_flight:
            capture = self._captures.pop(flow.id, None)
            self._in_flight.notify_all()
        if capture is not None:
            self._connected(flow, capture)
        return capture

    def _connected(self, flow: http.HTTPFlow, capture: Capture) -> None:
        """No connection to wait for any more (it was open already, or failed)."""
        waiting = self._connecting.get(flow.client_conn.id)
        if waiting is not None and capture in waiting:
            waiting.remove(capture)
            if not waiting:
                del self._connecting[flow.client_conn.id]

    def flush(self, timeout: float | None = None) -> bool:
        """From another thread: wait until every exchange seen so far has
        ended and its interaction is on disk. False when ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        with self._in_flight:
            if not self._in_flight.wait_for(lambda: not self._captures, timeout):
                return False
        for worker in list(self._workers):
            if not worker.flush(left()):
                return False
        return self._writer is None or self._writer.flush(left())

    def done(self) -> None:
        for worker in self._workers:
            if not worker.close(SHUTDOWN_FLUSH_SECONDS):
                log.error("llmock: gave up waiting for the recording worker (pid %s)", worker.pid)
        if self._writer is not None and not self._writer.close(SHUTDOWN_FLUSH_SECONDS):
            log.error("llmock: gave up waiting for cassette writes to %s", self._target)

    # -- captures --------------------------------------------------------------

    def _open(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None) -> Capture:
        assert self._recorder is not None and self._target is not None
        worker = self._live_worker() if self.on_recorded is None else None
        if worker is None:
            return LocalCapture(self._recorder, self._save, method, url, headers, body)
        return StreamedCapture(
            worker.next_capture(), self._target.absolute(), worker.send, worker.send_chunk, worker.handed_over,
            method, url, headers, body,
        )

    def _live_worker(self) -> RecordingWorker | None:
        if self._worker is not None and self._worker.alive:
            return self._worker
        if self._worker_refused or not RecordingWorker.supported():
            return None
        try:
            worker = RecordingWorker(redact_file=self._redact_file).start()
        except OSError as exc:
            log.warning("llmock: cannot start the recording worker (%s): recording in this process", exc)
            self._worker_refused = True
            return None
        self._worker = worker
        self._workers.append(worker)
        log.info("llmock: recording worker pid %d writes %s", worker.pid, self._target)
        return worker

    @staticmethod
    def _handed_over(capture: Capture) -> Awaitable[None] | None:
        waiter = capture.handed_over()
        return None if waiter is None else asyncio.wrap_future(waiter)

    # -- writing in this process -------------------------------------------------

    def _save(self, interaction: Interaction) -> None:
        assert self._writer is not None and self._target is not None
        self._writer.submit(self._target, interaction)
        if self.on_recorded is not None:
            self.on_recorded(interaction, self._target)

    @staticmethod
    def _written(path: Path, interactions: list[Interaction]) -> None:
        for interaction in interactions:
            log.info("llmock: recorded %s -> %s", describe(interaction), path)

    @staticmethod
    def _failed(path: Path, interactions: list[Interaction], exc: Exception) -> None:
        for interaction in interactions:
            log.error(
                "llmock: NOT recorded %s %s: cannot write %s: %s",
                interaction.request.method,
                interaction.request.url,
                path,
                exc,
            )
