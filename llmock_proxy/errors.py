"""The errors every layer raises about user input: a cassette or fixture file that
cannot be used, a match section that cannot be compiled. Imports nothing of ours,
so any module can raise them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


class CassetteError(ValueError):
    """A cassette or fixture file that cannot be used; the message names file, item and field."""

    def __init__(self, message: str, *, path: str | None = None, problems: list[str] | None = None):
        super().__init__(message)
        self.path = path
        self.problems = problems or [message]


class MatchSpecError(ValueError):
    """A ``match`` section the matcher cannot use; the message names the fixture and key."""


def format_path(path: Sequence[Any]) -> str:
    """``("interactions", 3, "response", "events", 7, "t")`` -> ``interactions[3].response.events[7].t``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and part and not re.search(r"[\s.\[\]'\"]", part):
            out += f".{part}" if out else part
        else:
            out += f"[{str(part)!r}]"
    return out
