"""Several replay sessions on one server, one per test.

A server (``serve``, the replay addon's engine, the pytest plugin's engine)
holds a default session and any number of named ones. A request picks its
session with the ``x-llmock-session`` header, or, for clients that cannot
set headers (an SDK configured only by its base-URL variable, a child
process), with the path prefix ``/__llmock/session/<id>/``, which is
stripped before matching. Through the proxy, the user name of the proxy
credentials does the same (see :mod:`llmock_proxy.mitm.replay`).

Each session has its own sequence state, journal and use: two tests sending
the identical request at once never see each other's counters.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llmock_proxy.replay.answers import MODES
from llmock_proxy.replay.session import ReplaySession

SESSION_HEADER = "x-llmock-session"
SESSION_PREFIX = "/__llmock/session/"
SESSION_ID = re.compile(r"^[A-Za-z0-9._:@=+-]{1,128}$")
# What a session does with a request: the engine's modes, plus "record"
# (every request goes upstream and is recorded, even one a recording answers).
SESSION_MODES = (*MODES, "record")


class UnknownSession(LookupError):
    """A request named a session the server does not have."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return (
            f"llmock-proxy: no replay session {self.session_id!r} (open it with POST /__llmock/sessions, "
            "or drop the x-llmock-session header / /__llmock/session/ prefix for the default session)"
        )


@dataclass
class SessionSettings:
    """How one session treats what its recordings do not answer.

    ``mode``: replay (a miss is an error), auto (a miss is forwarded and
    recorded), passthrough (forwarded only) or record (everything is
    forwarded and recorded). ``record_to``: the cassette recordings append
    to. ``upstreams``: vendor (an API family's prefix: ``openai``,
    ``anthropic``, ``gemini``, ...; ``*`` for any) -> the base URL to forward
    to, as the vendor's SDK takes it (``OPENAI_BASE_URL`` with its ``/v1``);
    a vendor not named goes to its public API.
    """

    mode: str = "replay"
    record_to: Path | None = None
    upstreams: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in SESSION_MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(SESSION_MODES)}")
        if self.mode in ("auto", "record") and self.record_to is None:
            raise ValueError(f"mode {self.mode!r} needs a cassette to record to (record_to)")


@dataclass
class Selected:
    """The session a request is for, and the path it asked for inside it."""

    session: ReplaySession
    settings: SessionSettings
    path: str
    session_id: str | None  # None: the default session


class SessionRegistry:
    """The default session and the named ones a server answers for."""

    def __init__(self, default: ReplaySession, settings: SessionSettings | None = None) -> None:
        self.default = default
        self.default_settings = settings or SessionSettings()
        self._named: dict[str, tuple[ReplaySession, SessionSettings]] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._named)

    def ids(self) -> list[str]:
        return list(self._named)

    def new_id(self) -> str:
        while True:
            candidate = f"s{next(self._ids)}"
            if candidate not in self._named:
                return candidate

    def open(
        self, session_id: str, session: ReplaySession | None = None, settings: SessionSettings | None = None
    ) -> ReplaySession:
        """Add session ``session_id``: ``session`` (its own cassettes and
        fixtures), or a fork of the default one (the same recordings, state
        of its own). Raises ValueError for a bad or taken id."""
        if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
            raise ValueError(
                f"session id {session_id!r}: 1-128 characters of letters, digits and . _ : @ = + -"
            )
        if session_id in self._named:
            raise ValueError(f"session {session_id!r} is already open")
        opened = session if session is not None else self.default.fork(session_id)
        self._named[session_id] = (opened, settings or SessionSettings())
        return opened

    def get(self, session_id: str) -> ReplaySession | None:
        found = self._named.get(session_id)
        return found[0] if found else None

    def settings_of(self, session_id: str) -> SessionSettings | None:
        found = self._named.get(session_id)
        return found[1] if found else None

    def close(self, session_id: str) -> ReplaySession | None:
        """Forget session ``session_id``; the session object (and its journal) stays readable."""
        found = self._named.pop(session_id, None)
        return found[0] if found else None

    def select(self, headers: Mapping[str, str], path: str) -> Selected:
        """The session of a request (lower-case header names), with the path
        it asked for inside it. Raises :class:`UnknownSession`."""
        session_id = headers.get(SESSION_HEADER)
        if path.startswith(SESSION_PREFIX):
            rest = path[len(SESSION_PREFIX):]
            end = len(rest)
            for stop in ("/", "?"):
                found_at = rest.find(stop)
                if 0 <= found_at < end:
                    end = found_at
            session_id, inner = rest[:end], rest[end:]
            path = inner if inner.startswith("/") else "/" + inner
        if not session_id:
            return Selected(self.default, self.default_settings, path, None)
        found = self._named.get(session_id)
        if found is None:
            raise UnknownSession(session_id)
        return Selected(found[0], found[1], path, session_id)
