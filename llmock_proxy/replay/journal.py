"""What a replay session was asked and what answered: its request journal.

Every request a session resolves leaves one :class:`JournalEntry`: the
recording or fixture that answered it (its :class:`Origin`), or the miss
with its near-miss report. A test reads the journal of its own session
(``llmock.requests``, ``GET /__llmock/sessions/<id>/requests``) to check
what its code asked, and which recordings it never used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# How a fixture names where it came from (see Fixture.source).
_SOURCE = re.compile(r"^(?P<file>.*): (?P<section>interactions|fixtures)\[(?P<index>\d+)\]$")

# Outcomes a journal entry can have.
HIT = "hit"
MISS = "miss"
FORWARDED = "forwarded"  # passthrough: sent upstream, not recorded
RECORDED = "recorded"  # auto / record: sent upstream and written to a cassette


@dataclass(frozen=True, order=True)
class Origin:
    """Where a fixture came from: a cassette's interaction or a fixture file's entry."""

    file: str
    section: str  # "interactions" (a cassette) or "fixtures" (an llmock fixture file)
    index: int

    @classmethod
    def from_source(cls, source: str) -> Origin | None:
        """The origin a fixture's ``source`` names; None for answers made up
        on the spot (the embedding fallback) or a source of another form."""
        found = _SOURCE.match(source)
        if found is None:
            return None
        return cls(found["file"], found["section"], int(found["index"]))

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "section": self.section, "index": self.index}

    def __str__(self) -> str:
        return f"{self.file}: {self.section}[{self.index}]"


@dataclass(slots=True)
class JournalEntry:
    """One request a session resolved. A miss that is then forwarded upstream
    (auto, passthrough) is settled in place: its outcome becomes FORWARDED or
    RECORDED and its status the upstream's."""

    method: str
    path: str
    family: str
    model: str | None
    outcome: str  # HIT, MISS, FORWARDED or RECORDED
    status: int  # the status answered (a forwarded request: the upstream's)
    origin: Origin | None = None  # what answered a hit
    source: str | None = None  # the answering fixture's source as it names itself
    message: str | None = None  # a miss: the whole report, closest candidates included
    near_misses: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "family": self.family,
            "model": self.model,
            "outcome": self.outcome,
            "status": self.status,
            "origin": self.origin.to_dict() if self.origin else None,
            "source": self.source,
            "message": self.message,
            "nearMisses": list(self.near_misses),
        }
