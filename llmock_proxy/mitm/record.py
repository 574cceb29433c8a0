"""The record addon: ``mitmdump -s addons/record.py``.

Maps mitmproxy's flow hooks onto :class:`~llmock_proxy.record.recorder.Recorder`
and hands finished interactions to a
:class:`~llmock_proxy.cassette.writer.BackgroundWriter`:

* ``running``          switch to lazy upstream connections (see there).
* ``request``          the request is complete and about to go upstream: start
                       the recording (its ``t`` clock starts here).
* ``responseheaders``  a stream (SSE, NDJSON, EventStream, chunked or unsized
                       body) gets the recording's ``tee`` as
                       ``flow.response.stream``: every chunk passes through
                       unchanged and at once, and is decoded on the side.
* ``response``         the body ended: finish and queue the interaction.
* ``error``            no response (connection refused...) or a broken stream
                       (client gone...): record what happened.
* ``websocket_*``      an upgraded session: every message with its direction,
                       payload and ``t``, then the close (code, reason, side);
                       the interaction is queued when the session ends.

Options (``--set name=value``) are declared in :meth:`Record.load`.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from mitmproxy import ctx, exceptions, http

from llmock_proxy.cassette.model import Interaction
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.writer import BackgroundWriter, CassetteWriter
from llmock_proxy.mitm.listen import bind_loopback_by_default, rebind_to_loopback
from llmock_proxy.mitm.transcripts import TranscriptHooks
from llmock_proxy.record.recorder import (
    Recorder,
    Recording,
    WebSocketTranscript,
    describe,
    stored_headers,
)

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


class Record(TranscriptHooks):
    """Records every (allowed) HTTP exchange into a cassette file."""

    def __init__(self, on_recorded: Callable[[Interaction, Path], None] | None = None) -> None:
        # Told of every interaction handed to the writer, with its cassette
        # (the replay addon's auto mode answers it from then on).
        self.on_recorded = on_recorded
        # Recordings in flight, by flow id. Kept here rather than in
        # flow.metadata, which mitmproxy serializes when flows are saved.
        self._recordings: dict[str, Recording] = {}
        # Guards _recordings for flush(), which runs on other threads.
        self._in_flight = threading.Condition()
        # WebSocket sessions in flight (their upgrade's recording waits above).
        self._transcripts: dict[str, WebSocketTranscript] = {}
        self._session_file = session_cassette_name()
        self._recorder: Recorder | None = None
        self._writer: BackgroundWriter | None = None
        self._redact_file: str | None = None
        self._hosts: tuple[str, ...] = ()
        self._target: Path | None = None

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

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        bind_loopback_by_default(updated)
        if "llmock_redact" in updated or self._recorder is None:
            redactor = self._load_redactor(opts.llmock_redact)
            if self._writer is not None:
                self._writer.close(SHUTDOWN_FLUSH_SECONDS)
            self._recorder = Recorder(redactor=redactor)
            self._writer = BackgroundWriter(
                CassetteWriter(redactor=redactor),
                on_written=self._written,
                on_failed=self._failed,
            )
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
    def cassette_path(self) -> Path | None:
        """The file this session writes to."""
        return self._target

    # -- HTTP hooks ------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if self._recorder is None or flow.response is not None:
            return  # another addon answered: nothing went upstream
        req = flow.request
        if not host_allowed(self._hosts, req.host, req.port):
            return
        recording = self._recorder.start(req.method, req.url, req.headers.items(multi=True), req.raw_content)
        with self._in_flight:
            self._recordings[flow.id] = recording

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        recording = self._recordings.get(flow.id)
        if recording is None or flow.response is None:
            return
        resp = flow.response
        # stream_large_bodies may already have switched this body to streaming.
        forced = True if resp.stream else None
        if recording.response_started(resp.status_code, resp.headers.items(multi=True), streamed=forced):
            resp.stream = recording.tee

    def response(self, flow: http.HTTPFlow) -> None:
        recording = self._recordings.get(flow.id)
        if recording is None or flow.response is None:
            return
        if flow.websocket is not None:
            # The session continues as WebSocket messages; the recording
            # stays in flight until websocket_end.
            return
        self._take(flow)
        resp = flow.response
        if recording.status is None:  # the head was not seen (answered by an addon)
            recording.response_started(resp.status_code, resp.headers.items(multi=True), streamed=False)
        self._save(recording.finish(None if callable(resp.stream) else resp.raw_content))

    def error(self, flow: http.HTTPFlow) -> None:
        recording = self._take(flow)
        if recording is None:
            return
        reason = flow.error.msg if flow.error is not None else "unknown error"
        self._save(recording.fail(reason))

    # -- WebSocket hooks -------------------------------------------------------

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        recording = self._take(flow)
        transcript = self._transcripts.pop(flow.id, None)
        if recording is None or transcript is None or flow.websocket is None or flow.response is None:
            return
        ws = flow.websocket
        by: Literal["client", "server"] | None = (
            None if ws.closed_by_client is None else "client" if ws.closed_by_client else "server"
        )
        session = transcript.finish(
            code=ws.close_code,
            reason=ws.close_reason,
            by=by,
            at=ws.timestamp_end,
            subprotocol=flow.response.headers.get("sec-websocket-protocol"),
        )
        response = flow.response
        self._save(recording.finish_websocket(
            session, status=response.status_code,
            response_headers=stored_headers(response.headers.items(multi=True)),
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

    def _take(self, flow: http.HTTPFlow) -> Recording | None:
        with self._in_flight:
            recording = self._recordings.pop(flow.id, None)
            self._in_flight.notify_all()
        return recording

    def flush(self, timeout: float | None = None) -> bool:
        """From another thread: wait until every exchange seen so far has
        ended and its interaction is on disk. False when ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._in_flight:
            if not self._in_flight.wait_for(lambda: not self._recordings, timeout):
                return False
        if self._writer is None:
            return True
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._writer.flush(left)

    def done(self) -> None:
        if self._writer is not None and not self._writer.close(SHUTDOWN_FLUSH_SECONDS):
            log.error("llmock: gave up waiting for cassette writes to %s", self._target)

    # -- writing ---------------------------------------------------------------

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
