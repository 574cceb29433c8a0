"""The watching drift addon: ``mitmdump -s addons/drift.py``.

Compares every live exchange passing through the proxy (while recording, or
in plain passthrough use) with the recorded shape of its API family, logs
each finding as it happens and writes the report when mitmproxy stops. The
grading lives in :mod:`llmock_proxy.drift`; this module maps hooks onto it:

* ``request``          start a recording (the recorder's tee, as the record
                       addon uses it).
* ``responseheaders``  tee a streamed body through the recording, chunk by
                       chunk, never buffering it; when another addon (the
                       record addon) already tees the body, chain after it.
* ``response``         finish the recording and grade it.
* ``websocket_*``     transcribe a session as the record addon does; grade it
                       when it ends.
* ``done``             write the report file(s).

Load it after ``addons/record.py`` when both run
(``-s addons/record.py -s addons/drift.py``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import traverse

from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.drift.contracts import (
    Contracts,
    infer_documents,
    load_documents,
    load_recordings,
)
from llmock_proxy.drift.findings import Policy
from llmock_proxy.drift.report import DriftReport, format_for, render_text, write_report
from llmock_proxy.drift.watch import Watcher
from llmock_proxy.errors import CassetteError
from llmock_proxy.mitm.listen import bind_loopback_by_default
from llmock_proxy.mitm.options import OptionCheck, refusing
from llmock_proxy.mitm.shutdown import CancelledConnectionsAtExit
from llmock_proxy.mitm.transcripts import TranscriptHooks
from llmock_proxy.record.recorder import (
    Recorder,
    Recording,
    WebSocketTranscript,
    stored_headers,
)

log = logging.getLogger(__name__)

StreamFn = Callable[[bytes], Any]


def chain_stream(previous: StreamFn, recording: Recording) -> StreamFn:
    """A ``flow.response.stream`` callable that runs ``previous`` and feeds
    what it passes on to ``recording``."""

    def stream(chunk: bytes) -> Any:
        out = previous(chunk)
        parts: Iterable[bytes] = [bytes(out)] if isinstance(out, (bytes, bytearray)) else list(out)
        for part in parts:
            if part:
                recording.feed(bytes(part))
        if not chunk:
            recording.feed(b"")
        return out if isinstance(out, (bytes, bytearray)) else parts

    return stream


class Drift(TranscriptHooks):
    """Grades live traffic against recorded shapes."""

    OPTIONS = ("llmock_drift_cassettes", "llmock_drift_policy", "llmock_drift_report")

    def __init__(self) -> None:
        self._watcher: Watcher | None = None
        self._recorder = Recorder(redactor=Redactor.default())
        self._recordings: dict[str, Recording] = {}
        # The stream callable installed per flow, to notice another addon replacing it.
        self._tees: dict[str, StreamFn] = {}
        # WebSocket sessions in flight (their upgrade's recording waits above).
        self._transcripts: dict[str, WebSocketTranscript] = {}
        self._reports: tuple[str, ...] = ()
        self._warned_replaced = False
        # Sub-addon: typos and bad values of --set llmock_* stop mitmdump with one line.
        self.addons = [OptionCheck(), CancelledConnectionsAtExit()]

    @property
    def report(self) -> DriftReport | None:
        return self._watcher.report if self._watcher is not None else None

    # -- options ---------------------------------------------------------------

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "llmock_drift_cassettes",
            Sequence[str],
            [],
            "Cassette files or directories (recursive *.yaml/*.yml) the recorded shapes are inferred from, "
            "and/or *.schema.json files or directories of them (from `llmock-proxy drift schema`). "
            "Repeat for several. Empty: the addon does nothing.",
        )
        loader.add_option(
            "llmock_drift_policy",
            str,
            "",
            "Drift policy file (YAML/JSON): paths to ignore or re-grade per API family.",
        )
        loader.add_option(
            "llmock_drift_report",
            Sequence[str],
            [],
            "Report file(s) written when mitmproxy stops; the format follows the extension: "
            ".json, .xml (JUnit), .md (Markdown), .txt. Repeat for several.",
        )

    @refusing
    def configure(self, updated: set[str]) -> None:
        bind_loopback_by_default(updated)
        if not set(self.OPTIONS) & updated:
            return
        opts = ctx.options
        reports = tuple(opts.llmock_drift_report)
        problems = []
        for path in reports:
            try:
                format_for(path)
            except ValueError as exc:
                problems.append(f"llmock_drift_report: {exc}")
        if problems:  # every bad report path, a line each
            raise exceptions.OptionsError("\n".join(problems))
        self._reports = reports
        sources = list(opts.llmock_drift_cassettes)
        if not sources:
            self._watcher = None
            return
        try:
            contracts = self._contracts(sources, opts.llmock_drift_policy)
        except CassetteError as exc:
            raise exceptions.OptionsError(f"llmock drift: {exc}") from None
        previous = self._watcher.report if self._watcher is not None else DriftReport()
        self._watcher = Watcher(contracts, report=previous)
        log.info(
            "llmock drift: watching %d recorded shape(s): %s",
            len(contracts.documents),
            ", ".join(sorted(contracts.documents)) or "none",
        )

    @staticmethod
    def _contracts(sources: list[str], policy_file: str) -> Contracts:
        schema_sources = [s for s in sources if s.endswith(".schema.json") or _holds_schemas(s)]
        cassette_sources = [s for s in sources if s not in schema_sources]
        documents = infer_documents(load_recordings(cassette_sources)) if cassette_sources else {}
        documents.update(load_documents(schema_sources))
        policy = Policy.load(policy_file) if policy_file else Policy()
        return Contracts(documents, policy)

    # -- HTTP hooks ------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if self._watcher is None or flow.response is not None:
            return  # not watching, or another addon answered: nothing live
        req = flow.request
        self._recordings[flow.id] = self._recorder.start(
            req.method, req.url, req.headers.items(multi=True), req.raw_content
        )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        recording = self._recordings.get(flow.id)
        if recording is None or flow.response is None:
            return
        resp = flow.response
        previous = resp.stream if callable(resp.stream) else None
        forced = True if resp.stream else None
        if recording.response_started(resp.status_code, resp.headers.items(multi=True), streamed=forced):
            tee: StreamFn = recording.tee if previous is None else chain_stream(previous, recording)
            resp.stream = tee
            self._tees[flow.id] = tee

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None:
            return  # graded at websocket_end
        recording = self._recordings.pop(flow.id, None)
        tee = self._tees.pop(flow.id, None)
        if recording is None or flow.response is None or self._watcher is None:
            return
        resp = flow.response
        if tee is not None and resp.stream is not tee:
            if not self._warned_replaced:
                self._warned_replaced = True
                log.warning(
                    "llmock drift: another addon replaced the stream tee of %s; load addons/drift.py after "
                    "addons/record.py so both see the stream",
                    flow.request.pretty_url,
                )
            return
        if recording.status is None:
            recording.response_started(resp.status_code, resp.headers.items(multi=True), streamed=False)
        self._watcher.observe(recording.finish(None if callable(resp.stream) else resp.raw_content))

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None:
            return  # a session's error is followed by websocket_end
        self._recordings.pop(flow.id, None)
        self._tees.pop(flow.id, None)

    # -- WebSocket hooks -------------------------------------------------------

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        recording = self._recordings.pop(flow.id, None)
        transcript = self._transcripts.pop(flow.id, None)
        if recording is None or transcript is None or flow.websocket is None or flow.response is None:
            return
        if self._watcher is None:
            return
        ws = flow.websocket
        session = transcript.finish(
            code=ws.close_code,
            reason=ws.close_reason,
            by=None if ws.closed_by_client is None else ("client" if ws.closed_by_client else "server"),
            at=ws.timestamp_end,
            subprotocol=flow.response.headers.get("sec-websocket-protocol"),
        )
        self._watcher.observe(
            recording.finish_websocket(
                session,
                status=flow.response.status_code,
                response_headers=stored_headers(flow.response.headers.items(multi=True)),
            )
        )

    # -- lifecycle -------------------------------------------------------------

    def running(self) -> None:
        # An addon recording the same exchanges (record, replay in auto mode)
        # warns about them already (a body that does not decode...): once is enough.
        if any(getattr(addon, "records_exchanges", False) for addon in traverse(ctx.master.addons.chain)):
            self._recorder = dataclasses.replace(self._recorder, warn_level=logging.DEBUG)

    def done(self) -> None:
        if self._watcher is None:
            return
        report = self._watcher.report
        log.info("llmock drift: %s", report.headline())
        log.info("llmock %s", render_text(report).strip().splitlines()[-1])
        for path in self._reports:
            try:
                write_report(report, path)
            except OSError as exc:
                log.error("llmock drift: cannot write report %s: %s", path, exc)
            else:
                log.info("llmock drift: report written to %s", path)


def _holds_schemas(source: str) -> bool:
    p = Path(source)
    return p.is_dir() and any(p.glob("*.schema.json"))
