"""What both transports offer the plugin: open a test's session, read its journal, close it.

The base-URL transport (:mod:`.engine_thread`) runs the replay engine in this
process; the proxy transport (:mod:`.mitmdump`) drives a ``mitmdump``
subprocess through its control endpoints. Either way a test gets an
:class:`OpenedSession`: its URLs, the environment that points clients at it,
and its journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the engine's types; importing them costs the engine's import time
    from llmock_proxy.replay.journal import JournalEntry, Origin


@dataclass(frozen=True)
class SessionSpec:
    """What a test's session is made of and how it treats a miss."""

    session_id: str
    cassettes: tuple[Path, ...] = ()  # the test's own files first
    fixtures: tuple[Path, ...] = ()
    shared_cassettes: tuple[Path, ...] = ()  # the run's shared files (read once per process where possible)
    shared_fixtures: tuple[Path, ...] = ()
    mode: str = "replay"  # the engine's session mode: replay | auto | record | passthrough
    record_to: Path | None = None
    upstreams: dict[str, str] = field(default_factory=dict)


@dataclass
class ClosedSession:
    """A session's last state, read when it was closed."""

    journal: list[JournalEntry]
    unused: list[Origin]


class OpenedSession(Protocol):
    session_id: str
    base_url: str  # the session prefix URL
    proxy_url: str | None  # proxy transport: the proxy URL carrying the session id
    env: dict[str, str]  # the variables pointing clients at this session

    def journal(self) -> list[JournalEntry]: ...

    def unused(self) -> list[Origin]: ...

    def reset(self) -> None: ...

    def close(self) -> ClosedSession: ...


class Transport(Protocol):
    name: str

    def open(self, spec: SessionSpec) -> OpenedSession: ...

    def allowed_threads(self) -> frozenset[int]:
        """Threads of this process that may connect anywhere (``--block-network``)."""
        ...

    def stop(self) -> None: ...


def entry_from_dict(data: dict[str, Any]) -> JournalEntry:
    """A journal entry as the control endpoints send it (``JournalEntry.to_dict``)."""
    from llmock_proxy.replay.journal import JournalEntry

    return JournalEntry(
        method=str(data.get("method", "")),
        path=str(data.get("path", "")),
        family=str(data.get("family", "")),
        model=data.get("model"),
        outcome=str(data.get("outcome", "")),
        status=int(data.get("status") or 0),
        origin=origin_from_dict(data["origin"]) if data.get("origin") else None,
        source=data.get("source"),
        message=data.get("message"),
        near_misses=tuple(data.get("nearMisses") or ()),
    )


def origin_from_dict(data: dict[str, Any]) -> Origin:
    from llmock_proxy.replay.journal import Origin

    return Origin(str(data["file"]), str(data["section"]), int(data["index"]))
