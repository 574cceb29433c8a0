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
import re
from itertools import accumulate
from typing import Any

from llmock_proxy.errors import TooDeep

MAX_PAYLOAD_DEPTH = 200
MAX_DOCUMENT_DEPTH = 256

# A JSON string literal (escapes included): brackets inside one do not nest.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def exceeds(text: str | bytes, limit: int) -> bool:
    """Whether the JSON ``text`` opens more than ``limit`` arrays/objects
    inside each other. Cheap for the usual document (fewer brackets than
    ``limit`` settles it); otherwise one pass in C over the brackets outside
    strings. Malformed text is measured as far as it goes."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= limit:
        return False
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(skeleton) <= limit:
        return False
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0) > limit


def loads(text: str | bytes, limit: int = MAX_PAYLOAD_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``limit`` with
    :class:`~llmock_proxy.errors.TooDeep` (a ``ValueError``, like every other
    reason JSON does not parse), never ``RecursionError``."""
    if exceeds(text, limit):
        raise TooDeep(limit)
    try:
        return json.loads(text)
    except RecursionError:  # a deep stack at the call site: the text was within the limit
        raise TooDeep(limit) from None


def depth(value: Any) -> int:
    """How deep a parsed value nests (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in item if isinstance(child, (dict, list)))
    return deepest
