"""One per pytest process: the transport, started on first use, and what each test gets.

:meth:`LlmockRuntime.begin` decides a test's cassette and mode, opens its
session, points the environment at it and, with ``--block-network``, patches
the socket layer; :meth:`LlmockRuntime.end` undoes all of that in reverse,
moves a replacing recording into place when the test ran to its end, and
notes what the test used for ``--llmock-report-unused``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llmock_proxy.pytest_plugin.environment import EnvironmentPatch, dummy_keys, upstreams_from
from llmock_proxy.pytest_plugin.fixture import Llmock
from llmock_proxy.pytest_plugin.options import MarkerSpec, Settings, TestPlan, plan_for
from llmock_proxy.pytest_plugin.paths import default_cassette, session_id, shown
from llmock_proxy.pytest_plugin.transport import SessionSpec, Transport

if TYPE_CHECKING:
    from llmock_proxy.cassette.usage import CassetteSnapshot
    from llmock_proxy.pytest_plugin.unused import UsageCollector


class LlmockRuntime:
    """See the module docstring. Cheap to make: nothing starts before :meth:`begin`."""

    def __init__(self, settings: Settings, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        # Where recording forwards to: the base URLs the environment had when pytest started.
        self.upstreams = upstreams_from(os.environ if environ is None else environ)
        self._transport: Transport | None = None
        self._usage: UsageCollector | None = None
        self._opened: dict[str, int] = {}  # node id -> sessions opened for it (reruns)
        self._snapshots: dict[int, dict[Path, CassetteSnapshot]] = {}

    # -- the transport -------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            if self.settings.transport == "proxy":
                from llmock_proxy.pytest_plugin.mitmdump import MitmdumpProxy

                self._transport = MitmdumpProxy(self.settings.timing)
            else:
                from llmock_proxy.pytest_plugin.engine_thread import EngineThread

                self._transport = EngineThread(self.settings.timing)
        return self._transport

    @property
    def usage(self) -> UsageCollector | None:
        if self._usage is None and self.settings.report_unused:
            from llmock_proxy.pytest_plugin.unused import UsageCollector

            self._usage = UsageCollector(self.settings.rootdir)
        return self._usage

    def shutdown(self) -> None:
        if self._transport is not None:
            self._transport.stop()
            self._transport = None

    # -- a test ----------------------------------------------------------------------------------

    def cassette_of(self, item: pytest.Item, marker: MarkerSpec) -> Path:
        s = self.settings
        return marker.cassette or default_cassette(item, s.rootdir, s.cassette_dir)

    def begin(self, item: pytest.Item) -> Llmock:
        s = self.settings
        marker = MarkerSpec.of(item, s.rootdir)
        cassette = self.cassette_of(item, marker)
        plan = plan_for(marker.mode or s.mode, cassette)
        if plan.replaces is not None and plan.record_to is not None:
            _remove_recording(plan.record_to)  # left by a run that was killed
        spec = self._spec(item, cassette, marker, plan)
        snapshots = self.usage.snapshots((*spec.cassettes, *spec.shared_cassettes)) if self.usage else {}
        opened = self.transport.open(spec)
        values = dict(opened.env)
        if plan.replays:
            values.update(dummy_keys(os.environ))  # recording passes the real keys through, never dummies
        env = EnvironmentPatch(values)
        blocker = None
        try:
            env.apply()
            if s.block_network:
                from llmock_proxy.pytest_plugin.network import NetworkBlocker

                blocker = NetworkBlocker(allowed_threads=self.transport.allowed_threads()).install()
        except BaseException:
            env.restore()
            opened.close()
            raise
        own = (cassette, *marker.cassettes, *marker.fixtures)
        llmock = Llmock(spec.session_id, cassette, plan, own, s.rootdir, opened, env, blocker)
        self._snapshots[id(llmock)] = snapshots
        return llmock

    def _spec(self, item: pytest.Item, cassette: Path, marker: MarkerSpec, plan: TestPlan) -> SessionSpec:
        s = self.settings
        runs = self._opened.get(item.nodeid, 0)
        self._opened[item.nodeid] = runs + 1
        shared = plan.load_shared
        return SessionSpec(
            session_id=session_id(item.nodeid, runs),
            cassettes=(*((cassette,) if plan.load_cassette else ()), *(marker.cassettes if shared else ())),
            fixtures=marker.fixtures if shared else (),
            shared_cassettes=s.cassettes if shared else (),
            shared_fixtures=s.fixtures if shared else (),
            mode=plan.session_mode,
            record_to=plan.record_to,
            upstreams=dict(self.upstreams) if plan.session_mode != "replay" else {},
        )

    def end(self, llmock: Llmock, completed: bool) -> list[str]:
        """Undo :meth:`begin`; ``completed``: the test's call ran to its end (passed
        or failed), so a replacing recording is kept. Returns notes for the
        test's report (where a recording went)."""
        notes: list[str] = []
        try:
            if llmock._blocker is not None:
                llmock._blocker.uninstall()
        finally:
            llmock._env.restore()
        llmock.closed = llmock._opened.close()
        used = llmock.used_origins()
        snapshots = self._snapshots.pop(id(llmock), {})
        if self.usage is not None and snapshots:
            self.usage.note(snapshots, used)
        plan = llmock.plan
        if plan.replaces is not None and plan.record_to is not None:
            notes.append(self._settle_recording(plan.record_to, plan.replaces, completed))
        elif plan.record_to is not None and plan.record_to.is_file():
            notes.append(f"llmock: recorded into {shown(plan.record_to, self.settings.rootdir)}")
        return [n for n in notes if n]

    def _settle_recording(self, recording: Path, cassette: Path, completed: bool) -> str:
        where = shown(cassette, self.settings.rootdir)
        if not recording.is_file():
            _remove_recording(recording)
            return f"llmock: nothing was recorded; {where} left as it was"
        if not completed:
            _remove_recording(recording)
            return f"llmock: the test did not run to its end; its recording was dropped and {where} left as it was"
        os.replace(recording, cassette)
        _remove_recording(recording)  # its lock file
        return f"llmock: recorded {where}"


def _remove_recording(recording: Path) -> None:
    from llmock_proxy.cassette.writer import lock_path_for

    for path in (recording, lock_path_for(recording)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
