"""How deep JSON may nest before we stop treating it as data.

Every tree we keep is walked by recursive code somewhere (``copy.deepcopy``,
``json.dumps`` on Python 3.11, the providers' readers, the matcher): nesting a
few hundred levels deep turns into ``RecursionError`` far from where the bytes
came in, and ``json.loads`` itself raises it past about a thousand levels
(Python 3.11) or a hundred thousand (3.13). So the bound is put where bytes
become data:

* a JSON *payload* (a body, an SSE ``data`` field, an NDJSON line, an
  EventStream payload, a WebSocket message) nested deeper than
  :data:`MAX_PAYLOAD_DEPTH` is kept as text: it is still recorded and replayed
  byte for byte, it just is not parsed;
* a cassette or fixture *file* nested deeper than :data:`MAX_DOCUMENT_DEPTH`
  is refused (:class:`~llmock_proxy.errors.CassetteError` naming it). The gap
  between the two leaves room for the levels a cassette wraps a payload in
  (``interactions[3].response.websocket.messages[7].json``), so anything the
  recorder keeps as data loads again.

Both bounds leave recursive walkers room: at two frames a level (deepcopy)
256 levels is about half of Python's default recursion limit.
"""

from __future__ import annotations

import json
from typing import Any

from llmock_proxy.errors import TooDeep

MAX_PAYLOAD_DEPTH = 200
MAX_DOCUMENT_DEPTH = 256

_CONTAINERS = (dict, list)


def loads(text: str | bytes, limit: int = MAX_PAYLOAD_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``limit`` with
    :class:`~llmock_proxy.errors.TooDeep` (a ``ValueError``, like every other
    reason JSON does not parse), never ``RecursionError``.

    The C parser goes first (it fails fast on the very deep, and is the
    cheapest way through the rest); the result is measured only when the text
    has more brackets than ``limit``, which settles the usual document."""
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than the parser goes (or a deep stack at the call site)
        raise TooDeep(limit) from None
    if _brackets(text) > limit and deeper_than(value, limit):
        raise TooDeep(limit)
    return value


def _brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def deeper_than(value: Any, limit: int) -> bool:
    """Whether a parsed value nests more than ``limit`` lists/objects inside
    each other; level by level, without recursion, stopping at ``limit``."""
    level = [value] if value.__class__ in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            for child in item.values() if item.__class__ is dict else item:
                if child.__class__ in _CONTAINERS:
                    below.append(child)
        level = below
    return False
