"""The replay addon: ``mitmdump -s addons/replay.py``.

Answers requests from cassettes and llmock fixture files without touching the
network. The protocol work lives elsewhere (matching in
:mod:`llmock_proxy.replay.session`, wire bytes and timing in
:mod:`llmock_proxy.replay.server`); this module maps mitmproxy's hooks onto it:

* ``configure``        force ``connection_strategy=lazy`` (so mitmproxy never
                       connects upstream before a request is answered).
* ``running``          start the replay engine on ``127.0.0.1:0`` in
                       mitmproxy's own loop; requests that came earlier wait.
* ``request``          resolve the request. A body answer is set right here
                       (``flow.response``). A stream is planned, parked in the
                       engine and the flow re-targeted to it, because an
                       addon-made response is always sent in one piece. A
                       miss is answered with the provider's error envelope
                       (``replay``), forwarded (``passthrough``) or forwarded
                       and recorded through the record addon's code (``auto``).
* ``responseheaders``  stream the engine's answer through (``stream = True``).
* ``response``         put the original URL back, so logs and saved flows show
                       what the client asked for, and log the exchange's one
                       line ("llmock: replayed ..."; mitmdump's own dump of
                       the flow is left out: :mod:`llmock_proxy.mitm.flowlog`).

Options are declared in :meth:`Replay.load` (a typo or a bad value stops
mitmdump with one line: :mod:`llmock_proxy.mitm.options`); the record addon's options
(``llmock_cassette_dir``, ``llmock_cassette``, ``llmock_redact``,
``llmock_hosts``) are shared, since ``auto`` records through it. Slow and idle
clients are cut by the sub-addon :class:`~llmock_proxy.mitm.deadlines.Deadlines`
(``llmock_request_timeout``, ``llmock_idle_timeout``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import time
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from llmock_proxy import wire
from llmock_proxy.cassette.model import Interaction, Payload, Request
from llmock_proxy.errors import BodyTooLarge, CassetteError, MatchSpecError
from llmock_proxy.hosts import is_loopback
from llmock_proxy.mitm.deadlines import Deadlines
from llmock_proxy.mitm.flowlog import mark_logged, quiet_dumper_by_default
from llmock_proxy.mitm.listen import bind_loopback_by_default, rebind_to_loopback
from llmock_proxy.mitm.loopback import Loopback
from llmock_proxy.mitm.options import OptionCheck, bad_choice, refusing
from llmock_proxy.mitm.record import Record
from llmock_proxy.mitm.shutdown import CancelledConnectionsAtExit
from llmock_proxy.record.recorder import stream_shape
from llmock_proxy.replay.answers import (
    MODES,
    internal_error_plan,
    json_plan,
    log_internal_error,
    log_miss,
    miss_plan,
)
from llmock_proxy.replay.control import CONTROL_HOST, control_plan
from llmock_proxy.replay.plan import Plan, Timing, TimingError
from llmock_proxy.replay.server import ReplayEngine, request_body, too_large_plan
from llmock_proxy.replay.session import DEFAULT_MISS_STATUS, Hit, Miss, ReplaySession, check_miss_status
from llmock_proxy.replay.sessions import SESSION_HEADER, UnknownSession
from llmock_proxy.replay.ws_session import can_answer, is_websocket_upgrade

log = logging.getLogger(__name__)


class Replay:
    """Serves matched requests from a replay session; see the module docstring."""

    def __init__(self) -> None:
        self.session = ReplaySession(name="mitmproxy")
        self.engine = ReplayEngine(self.session)
        self.mode = "replay"
        # auto mode records misses through the record addon, which reports each
        # saved interaction so the session answers it from then on.
        self._record = Record(on_recorded=self._recorded)
        self._record_ready = False
        self._loopback = Loopback(self.engine)
        self._engine_started = asyncio.Event()
        self._misses: set[str] = set()
        # auto mode: misses being forwarded and recorded, by what they ask
        # (see _shared_key), and the flow of each; an identical miss waits
        # for the recording instead of going upstream a second time.
        self._recording: dict[tuple[str, ...], asyncio.Event] = {}
        self._recording_flows: dict[str, tuple[str, ...]] = {}
        # Misses sent upstream, by flow id: their journal lines are settled
        # (recorded or forwarded, with the upstream's status) when they end.
        self._forwarded: dict[str, Miss] = {}
        # The line each exchange gets when it ends (what, family, model,
        # detail), by flow id; see _note.
        self._lines: dict[str, tuple[str, str, str, str]] = {}
        # Client connection id -> the replay session its proxy credentials named.
        self._proxy_sessions: dict[str, str] = {}
        # Sub-addons mitmproxy runs with this one: slow and idle clients are cut,
        # and a typo or a bad value of --set llmock_* stops mitmdump with one line.
        self.addons = [Deadlines(), OptionCheck(), CancelledConnectionsAtExit()]

    # -- options ---------------------------------------------------------------

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        # Same declarations as the record addon: both scripts may be loaded.
        self._record.load(loader)
        loader.add_option(
            "llmock_cassettes",
            Sequence[str],
            [],
            "Cassette files or directories (searched recursively for *.yaml/*.yml) to "
            "replay, in addition to llmock_cassette_dir. Repeat for several.",
        )
        loader.add_option(
            "llmock_fixtures",
            Sequence[str],
            [],
            "llmock-format JSON fixture files or directories (searched recursively for "
            "*.json) to answer from, after the cassettes. Repeat for several.",
        )
        loader.add_option(
            "llmock_mode",
            str,
            "replay",
            "What a request no cassette or fixture matches gets: replay = the provider's "
            "error envelope with status 421 (see llmock_miss_status) and a near-miss report, "
            "never forwarded; auto = "
            "forwarded, recorded into llmock_cassette_dir and replayed from then on; "
            "passthrough = forwarded, not recorded.",
            choices=MODES,
        )
        loader.add_option(
            "llmock_timing",
            str,
            "recorded",
            "Stream pacing: recorded (events at their recorded offsets), instant (no "
            "delays), or scale:X (offsets times X, e.g. scale:0.5 is twice as fast).",
        )
        loader.add_option(
            "llmock_miss_status",
            int,
            DEFAULT_MISS_STATUS,
            "Status of the error a miss gets in replay mode, requests to unknown APIs "
            f"included: any 4xx (default {DEFAULT_MISS_STATUS}, which no provider uses and "
            "SDKs do not retry; 404 as llmock and aimock answer).",
        )
        loader.add_option(
            "llmock_embedding_fallback",
            bool,
            False,
            "Answer an embedding request no cassette or fixture matches with deterministic "
            "vectors made from its input text (its dimensions, else the family's usual "
            "length) instead of a miss, as aimock does.",
        )
        loader.add_option(
            "llmock_lenient_fixtures",
            bool,
            False,
            "An unknown or malformed match key in an llmock fixture file is a warning "
            "instead of a load error (for migrating suites).",
        )

    @refusing
    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        # Without lazy connections mitmproxy connects upstream before the
        # request hook runs: a replayed request would fail on DNS / 502. Set
        # here, before the proxy listens, not only once it is running.
        if opts.connection_strategy != "lazy":
            opts.update(connection_strategy="lazy")
        bind_loopback_by_default(updated)
        quiet_dumper_by_default(updated)
        # Every bad value is reported, not only the first (refusing logs a line each).
        problems: list[str] = []
        if "llmock_timing" in updated:
            try:
                self.engine.set_timing(Timing.parse(opts.llmock_timing))
            except TimingError as exc:
                problems.append(f"llmock_timing: {exc}")
        if "llmock_mode" in updated:
            if opts.llmock_mode in MODES:  # mitmproxy does not enforce choices
                self.mode = opts.llmock_mode
                self.engine.mode = self.mode
            else:
                problems.append(str(bad_choice("llmock_mode", opts.llmock_mode, MODES)))
        if "llmock_miss_status" in updated:
            try:
                self.session.miss_status = check_miss_status(opts.llmock_miss_status)
            except ValueError as exc:
                problems.append(f"llmock_miss_status: {exc}")
        if "llmock_embedding_fallback" in updated:
            self.session.embedding_fallback = opts.llmock_embedding_fallback
        if self.mode == "auto":
            # The record addon builds its writer on first configure.
            try:
                self._record.configure(updated if self._record_ready else set(opts.keys()))
            except exceptions.OptionsError as exc:
                problems.append(str(exc))
            self._record_ready = True
        if {"llmock_cassette_dir", "llmock_cassettes", "llmock_fixtures", "llmock_lenient_fixtures"} & updated:
            try:
                self._load_session(
                    opts.llmock_cassette_dir, opts.llmock_cassettes, opts.llmock_fixtures, opts.llmock_lenient_fixtures
                )
            except exceptions.OptionsError as exc:
                problems.append(str(exc))
        if problems:
            raise exceptions.OptionsError("\n".join(problems))

    def _load_session(
        self, cassette_dir: str, cassettes: Sequence[str], fixtures: Sequence[str], lenient_fixtures: bool = False
    ) -> None:
        sources = list(cassettes)
        if cassette_dir:
            if Path(cassette_dir).is_dir():
                sources.insert(0, cassette_dir)
            else:
                log.info("llmock: cassette directory %s does not exist (yet)", cassette_dir)
        try:
            session = ReplaySession.load(
                dict.fromkeys(sources),
                fixtures,
                name="mitmproxy",
                lenient_fixtures=lenient_fixtures,
                # Settings stay as the options made them.
                miss_status=self.session.miss_status,
                embedding_fallback=self.session.embedding_fallback,
            )
        except (CassetteError, MatchSpecError) as exc:
            raise exceptions.OptionsError(f"llmock replay: {exc}") from None
        self.session = session
        self.engine.session = session
        if not len(session) and self.mode == "replay" and (cassette_dir or cassettes or fixtures):
            # Every request would be a miss: say so once, loudly, naming what was given.
            given = [f"llmock_cassette_dir={cassette_dir}"] if cassette_dir else []
            given += [f"llmock_cassettes={c}" for c in cassettes] + [f"llmock_fixtures={f}" for f in fixtures]
            log.warning("llmock: WARNING: nothing to replay: %s hold no recording or fixture, so every request "
                        "will be a miss", ", ".join(given))
        log.info(
            "llmock: replaying %d interactions/fixtures (%d candidates), mode %s, timing %s",
            len(session),
            len(session.matcher),
            self.mode,
            self.engine.timing.name,
        )

    @property
    def records_exchanges(self) -> bool:
        """auto mode records what it forwards (see Record.records_exchanges)."""
        return self.mode == "auto"

    # -- lifecycle -------------------------------------------------------------

    async def running(self) -> None:
        await rebind_to_loopback()
        if self.engine.port is None:
            await self.engine.start("127.0.0.1", 0)
            log.info("llmock: replay engine on http://127.0.0.1:%d", self.engine.port)
        self._engine_started.set()

    async def done(self) -> None:
        if self._record_ready:
            self._record.done()
        await self.engine.stop()

    # -- HTTP hooks ------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """A client tunnelling through the proxy names its replay session with
        its proxy credentials (``HTTPS_PROXY=http://<session>:x@host:port``)."""
        session_id = session_from_credentials(flow.request.headers.get("proxy-authorization"))
        if session_id is not None:
            self._proxy_sessions[flow.client_conn.id] = session_id

    def server_connect(self, data) -> None:  # type: ignore[no-untyped-def]
        """Replay never connects anywhere but its engine: not for a request it
        did not answer, nor for a tunnel of another protocol (raw TCP, UDP)
        that mitmproxy would relay as it is."""
        if self.mode != "replay":
            return
        address = data.server.address
        if address is not None and tuple(address[:2]) == ("127.0.0.1", self.engine.port):
            return
        where = f"{address[0]}:{address[1]}" if address else "an unknown address"
        data.server.error = f"llmock replay: not connecting to {where} (replay never connects out)"
        log.warning("llmock: refused a connection to %s: replay mode never connects out", where)

    def client_disconnected(self, client) -> None:  # type: ignore[no-untyped-def]
        self._proxy_sessions.pop(client.id, None)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return  # answered by another addon
        # mitmproxy 12 accepts connections before the running hooks are done:
        # a request that early waits for the replay engine instead of failing.
        await self._engine_started.wait()
        try:
            await self._answer(flow)
        except Exception as exc:
            # mitmproxy would log the addon error and send the request on
            # upstream: a replay must fail closed, with an answer saying why.
            req = flow.request
            self._loopback.restore(flow)
            self._misses.discard(flow.id)
            log_internal_error(req.method, req.url, exc)
            headers = _header_dict(req.headers)
            flow.response = _mitm_response(internal_error_plan(req.method, req.url, headers, exc))

    async def _answer(self, flow: http.HTTPFlow) -> None:
        loop = asyncio.get_running_loop()
        arrival = loop.time()
        req = flow.request
        headers = _header_dict(req.headers)
        by_credentials = self._proxy_sessions.get(flow.client_conn.id) or session_from_credentials(
            headers.pop("proxy-authorization", None)  # a plain-HTTP request through the proxy carries them
        )
        if by_credentials is not None and SESSION_HEADER not in headers:
            headers[SESSION_HEADER] = by_credentials
        try:
            content = request_body(req.raw_content or b"", headers.get("content-encoding"))
        except BodyTooLarge as exc:
            log.warning("llmock: %s %s refused: %s", req.method, req.url, exc)
            mark_logged(flow)
            flow.response = _mitm_response(too_large_plan(req.method, req.url, headers, exc))
            return
        try:
            selected = self.engine.sessions.select(headers, req.path)
        except UnknownSession as exc:
            flow.response = _mitm_response(json_plan(404, {"error": {"message": str(exc), "type": "unknown_session"}}))
            return
        session = selected.session
        # Named sessions replay only: the addon forwards through mitmproxy, for its own mode.
        mode = self.mode if selected.session_id is None else "replay"
        if req.pretty_host == CONTROL_HOST or is_loopback(req.pretty_host):
            control = control_plan(self.engine.sessions, session, req.method, selected.path.split("?", 1)[0],
                                   content, self.engine.timing, mode, headers, forwarding=False)
            if control is not None:
                flow.response = _mitm_response(control)
                return
        url = req.url if selected.path == req.path else _with_path(req.url, req.path, selected.path)
        if is_websocket_upgrade(headers):
            asked = _cassette_request(req.method, url, headers, content)
            if mode == "replay" or can_answer(session, asked):
                # The engine answers the session turn by turn (ws_engine).
                self._loopback.retarget(
                    flow, Plan(101, [], arrival=arrival, websocket_request=asked, websocket_session=session)
                )
                return
        outcome = session.resolve_raw(req.method, url, headers, content)
        if mode == "auto" and not isinstance(outcome, Hit):
            outcome = await self._after_identical(outcome, session, url, headers, content)
        if isinstance(outcome, Hit):
            plan = self.engine.planner.plan(outcome, arrival, headers)
            detail = f"{stream_shape(outcome.wire_form, outcome.item_count)} <- {outcome.fixture.source}"
            self._note(flow, "replayed", outcome, detail if plan.chaos is None else f"{detail} (chaos: {plan.chaos})")
            if plan.is_websocket:
                plan.websocket_session = session
            if plan.streaming or plan.is_websocket:
                self._loopback.retarget(flow, plan)
                return
            if plan.delay_ms:
                await asyncio.sleep(max(0.0, arrival + plan.delay_ms / 1000.0 - loop.time()))
            flow.response = _body_response(outcome, plan)
            return
        log_miss(outcome, mode)
        if mode == "replay":
            mark_logged(flow)  # the miss's warning is its line
            flow.response = _mitm_response(miss_plan(outcome, arrival))
            return
        if self.mode == "passthrough":
            self._note(flow, "forwarded", outcome, "(passthrough: not recorded)")
        self._misses.add(flow.id)
        self._forwarded[flow.id] = outcome
        if self.mode == "auto":
            key = _shared_key(outcome, headers)
            if key is not None:
                self._recording[key] = asyncio.Event()
                self._recording_flows[flow.id] = key
            self._record.request(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow in self._loopback:
            flow.response.stream = True  # type: ignore[union-attr]
        elif flow.id in self._misses:
            if self.mode == "auto":
                self._record.responseheaders(flow)
            if flow.response is not None and not flow.response.stream:
                # Forwarded streams pass through as they come, not buffered.
                if wire.stream_form(flow.response.headers.get("content-type")) is not None:
                    flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        if flow in self._loopback and flow.websocket is not None:
            # A replayed session runs between the client and the engine;
            # relaying it as raw bytes instead of parsing every frame is ~6x
            # faster, and close codes, pings and extensions stay end to end.
            flow.websocket = None
        self._loopback.restore(flow)
        if flow.id in self._misses:
            self._misses.discard(flow.id)
            if self.mode == "auto":
                self._record.response(flow)
        self._recorded_flow(flow)
        self._log_line(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._loopback.restore(flow)
        if flow.id in self._misses:
            self._misses.discard(flow.id)
            if self.mode == "auto":
                self._record.error(flow)
        self._recorded_flow(flow)
        self._log_line(flow)

    # -- the exchange's log line ------------------------------------------------

    def _note(self, flow: http.HTTPFlow, what: str, outcome: Hit | Miss, detail: str) -> None:
        """``flow`` gets one line when it ends ("llmock: replayed openai.chat
        gpt-4o-mini 200 8 events <- <cassette>: interactions[1]"), instead of
        mitmdump's dump of it."""
        model = outcome.view.model if outcome.view is not None else None
        self._lines[flow.id] = (what, outcome.provider.family, model or "-", detail)
        mark_logged(flow)

    def _log_line(self, flow: http.HTTPFlow) -> None:
        noted = self._lines.pop(flow.id, None)
        if noted is None:
            return
        what, family, model, detail = noted
        status = flow.response.status_code if flow.response is not None else "-"
        if flow.error is not None:
            log.info("llmock: %s %s %s %s %s, ended early: %s", what, family, model, status, detail, flow.error.msg)
        else:
            log.info("llmock: %s %s %s %s %s", what, family, model, status, detail)

    # -- WebSocket hooks (auto mode records forwarded sessions) --------------------

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if self.mode == "auto":
            self._record.websocket_start(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if self.mode == "auto":
            self._record.websocket_message(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        if self.mode == "auto":
            self._record.websocket_end(flow)

    # -- auto mode ---------------------------------------------------------------

    async def _after_identical(
        self, miss: Miss, session: ReplaySession, url: str, headers: dict[str, str], content: bytes
    ) -> Hit | Miss:
        """A miss identical to one being forwarded and recorded waits for that
        exchange to end (a stream: its last event) and is answered from its
        recording; when nothing replayable was recorded, it is forwarded itself."""
        key = _shared_key(miss, headers)
        while key is not None and key in self._recording:
            log.info("llmock: %s %s waits for the identical request being forwarded, to answer from its recording",
                     miss.request.method, url)
            await self._recording[key].wait()
            session.withdraw(miss)  # asked again below: one journal line per request
            outcome = session.resolve_raw(miss.request.method, url, headers, content)
            if isinstance(outcome, Hit):
                return outcome
            miss = outcome
        return miss

    def _recorded_flow(self, flow: http.HTTPFlow) -> None:
        """A forwarded miss's exchange ended (and is recorded in auto mode):
        its journal line says so, and identical misses go on."""
        miss = self._forwarded.pop(flow.id, None)
        if miss is not None:
            status = flow.response.status_code if flow.response is not None and flow.error is None else 502
            self.session.settle(miss, status, recorded=self.mode == "auto")
        key = self._recording_flows.pop(flow.id, None)
        if key is not None:
            self._recording.pop(key).set()

    def _recorded(self, interaction: Interaction, path: Path) -> None:
        if interaction.response is None:
            return
        index = len(self.session)
        try:
            self.session.add_interaction(interaction, f"{path}: recorded on miss #{index}")
        except (CassetteError, MatchSpecError) as exc:
            log.warning("llmock: recorded %s but cannot replay it: %s", interaction.request.url, exc)


def _shared_key(miss: Miss, headers: dict[str, str]) -> tuple[str, ...] | None:
    """What makes two misses the same request in auto mode (None: never
    shared: unreadable, or a WebSocket upgrade, recorded only when it ends)."""
    if miss.view is None or "upgrade" in headers:
        return None
    return miss.request.method, miss.view.path, miss.view.fingerprint


def _cassette_request(method: str, url: str, headers: dict[str, str], content: bytes) -> Request:
    return Request(
        method=method,
        url=url,
        headers=headers,
        body=Payload.from_bytes(content, headers.get("content-type")) if content else None,
    )


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def session_from_credentials(authorization: str | None) -> str | None:
    """The user name of ``Proxy-Authorization: Basic ...``: the replay session."""
    if not authorization or not authorization[:6].lower() == "basic ":
        return None
    try:
        user = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8").split(":", 1)[0]
    except (ValueError, UnicodeDecodeError):
        return None
    return user or None


def _with_path(url: str, path: str, inner: str) -> str:
    """``url`` with its ``path`` (query included) replaced by ``inner``."""
    return url[: len(url) - len(path)] + inner if url.endswith(path) else url


def _header_dict(headers: http.Headers) -> dict[str, str]:
    """Lower-case names to values, from the raw fields in one pass
    (``Headers.items()`` looks every name up again)."""
    out: dict[str, str] = {}
    for name, value in headers.fields:
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "surrogateescape")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def _body_response(hit: Hit, plan: Plan) -> http.Response:
    """The answer for a body plan. A recording served verbatim always gets
    the same bytes, so its mitmproxy response is built once and copied."""
    if hit.synthesized or plan.chaos is not None:
        return _mitm_response(plan)
    template = hit.fixture.wire_cache.get("mitmproxy")
    if template is None:
        template = hit.fixture.wire_cache["mitmproxy"] = _mitm_response(plan)
    return _copy_response(template)


def _copy_response(template: http.Response) -> http.Response:
    """A new response equal to ``template``, with its own headers and times.

    ``Response(...)`` type-checks every field on each construction, which is
    most of an addon-made answer's cost; the template was checked once.
    """
    data = copy.copy(template.data)
    data.headers = http.Headers(template.data.headers.fields)
    data.timestamp_start = data.timestamp_end = time.time()
    response = object.__new__(http.Response)
    response.data = data
    return response


def _mitm_response(plan: Plan) -> http.Response:
    """An addon-made response (built directly: ``Response.make`` costs a third more)."""
    body = plan.body or b""
    fields = [(k.encode(), v.encode()) for k, v in plan.headers]
    fields.append((b"content-length", str(len(body)).encode()))
    now = time.time()
    reason = _REASONS.get(plan.status, b"")
    return http.Response(b"HTTP/1.1", plan.status, reason, http.Headers(fields), body, None, now, now)

