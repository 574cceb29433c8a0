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


class RequestShapeError(ValueError):
    """A request body its API family cannot read: JSON of the wrong shape
    where the API has objects and lists (``"messages": 5``). Raised by every
    provider's ``canonical()``; the message names the family and what was
    wrong. Replay answers such a request as a miss, the recorder matches it
    as the generic family."""


class WireError(ValueError):
    """Bytes a wire codec cannot decode, or an item it cannot encode.

    The one error every codec in :mod:`llmock_proxy.wire` raises (each
    module's docstring says when); the message names the form, the item or
    header, and what is wrong. A ``ValueError``, so older ``except
    ValueError`` callers keep working."""


class WireEncodeError(WireError):
    """An item that cannot be put on the wire in its form (a header name
    EventStream cannot hold, an SSE ``id`` with a line break, a value of the
    wrong type); raised by the encoders, never by the decoders."""


class BodyTooLarge(WireError):
    """A decoded body larger than the cap: a few kilobytes of gzip can
    decode to gigabytes. A server answers 413; the recorder keeps the body
    as it came (still encoded)."""

    def __init__(self, limit: int, what: str = "the decoded body"):
        super().__init__(f"{what} is larger than {limit} bytes")
        self.limit = limit


class TooDeep(ValueError):
    """JSON or YAML nested deeper than we keep as data (see
    :mod:`llmock_proxy.nesting`): such a payload stays text, such a file is
    refused with a :class:`CassetteError` naming it. Deep nesting would
    otherwise surface as ``RecursionError`` wherever the value is walked."""

    def __init__(self, limit: int):
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


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
