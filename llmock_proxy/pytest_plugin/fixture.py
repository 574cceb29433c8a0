"""The ``llmock`` fixture's object: a test's replay session, seen from the test.

::

    def test_weather(llmock):
        answer = app.ask("What's the weather in Paris?")   # the SDK reads OPENAI_BASE_URL
        assert [r.outcome for r in llmock.requests] == ["hit", "hit"]
        llmock.assert_all_used()

``requests`` is read afresh on every access (the session's journal, plus a
line per connection ``--block-network`` refused); ``assert_all_used`` names
every interaction or fixture of the test's own files that answered nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmock_proxy.pytest_plugin.options import TestPlan
from llmock_proxy.pytest_plugin.paths import shown

if TYPE_CHECKING:
    from llmock_proxy.pytest_plugin.environment import EnvironmentPatch
    from llmock_proxy.pytest_plugin.network import BlockedConnection, NetworkBlocker
    from llmock_proxy.pytest_plugin.transport import ClosedSession, OpenedSession
    from llmock_proxy.replay.journal import JournalEntry, Origin

BLOCKED = "blocked"  # the outcome of a journal line for a connection --block-network refused
MISS = "miss"


@dataclass(eq=False)
class Llmock:
    """A test's llmock session; see the module docstring."""

    session_id: str
    cassette: Path  # the test's cassette (it may not exist yet)
    plan: TestPlan
    own_files: tuple[Path, ...]  # the files this test named itself (its cassette, the marker's files)
    rootdir: Path
    _opened: OpenedSession
    _env: EnvironmentPatch
    _blocker: NetworkBlocker | None = None
    _used: set[Origin] = field(default_factory=set)
    reported_misses: int = 0
    reported_blocked: int = 0
    closed: ClosedSession | None = None

    # -- what tests read ----------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """This test's mode (replay, once, auto, record, rewrite or passthrough)."""
        return self.plan.mode

    @property
    def base_url(self) -> str:
        """The session's base URL (``http://127.0.0.1:PORT/__llmock/session/<id>``;
        with the proxy transport ``http://llmock.invalid/__llmock/session/<id>``,
        reachable through the proxy). Add ``/v1`` for OpenAI clients."""
        return self._opened.base_url

    @property
    def proxy_url(self) -> str | None:
        """With the proxy transport, the proxy URL naming this session; else None."""
        return self._opened.proxy_url

    @property
    def env(self) -> dict[str, str]:
        """The environment variables set for this test (base URLs or proxy and CA, dummy keys)."""
        return dict(self._env.values)

    @property
    def requests(self) -> list[JournalEntry]:
        """The session's journal, read now: one entry per request, in arrival order
        (``outcome`` hit, miss, forwarded or recorded; ``origin`` of a hit;
        ``message`` of a miss), then one per connection ``--block-network`` refused."""
        entries = self.closed.journal if self.closed is not None else self._opened.journal()
        return [*entries, *self._blocked_entries()]

    @property
    def blocked(self) -> list[BlockedConnection]:
        return list(self._blocker.attempts) if self._blocker is not None else []

    def unused(self) -> list[Origin]:
        """Interactions and fixtures of the files this test named itself (its
        cassette, the marker's ``cassettes``/``fixtures``) that answered nothing."""
        origins = self.closed.unused if self.closed is not None else self._opened.unused()
        own = {str(p) for p in self.own_files}
        return [o for o in origins if o.file in own or any(o.file.startswith(d + "/") for d in own)]

    def assert_all_used(self) -> None:
        """Fail (AssertionError) naming each interaction or fixture of this
        test's own files that answered no request."""
        unused = self.unused()
        if unused:
            lines = [f"  {shown(Path(o.file), self.rootdir)}: {o.section}[{o.index}]" for o in unused]
            raise AssertionError(
                f"llmock: {len(unused)} recorded answer(s) of this test were never used:\n" + "\n".join(lines)
            )

    def reset(self) -> None:
        """Start the session over: sequence state, journal, refused connections."""
        self._collect_used(self._opened.journal())
        self._opened.reset()
        if self._blocker is not None:
            self._blocker.attempts.clear()
        self.reported_misses = self.reported_blocked = 0

    # -- for the plugin ----------------------------------------------------------------------

    def misses(self) -> list[JournalEntry]:
        return [e for e in self.requests if e.outcome == MISS]

    def used_origins(self) -> set[Origin]:
        """Everything that answered during the test, resets included."""
        self._collect_used(self.requests)
        return set(self._used)

    def _collect_used(self, entries: list[JournalEntry]) -> None:
        self._used.update(e.origin for e in entries if e.origin is not None)

    def _blocked_entries(self) -> list[JournalEntry]:
        if self._blocker is None or not self._blocker.attempts:
            return []
        from llmock_proxy.replay.journal import JournalEntry

        return [
            JournalEntry(
                "CONNECT", attempt.address, "network", None, BLOCKED, 0,
                message=f"--block-network refused a connection to {attempt.describe()}",
            )
            for attempt in self._blocker.attempts
        ]

    def __repr__(self) -> str:
        return f"<llmock session {self.session_id} mode={self.mode} cassette={shown(self.cassette, self.rootdir)}>"
