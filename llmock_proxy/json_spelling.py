"""The two ways the project spells a JSON value, each with one encoder made once.

* :func:`canonical_json`: keys sorted, no whitespace, non-ASCII kept, and
  anything that is not JSON written as its ``str``: the one spelling digests
  (fingerprints, derived ids) are taken of.
* :func:`compact_json`: keys in their order, no whitespace, non-ASCII kept:
  how a stored value goes back on the wire.

``json.dumps`` and ``JSONEncoder.encode`` build a new C encoder for every
call, which is about a third of the cost of a small document; a replay
spells several per request. The encoders here are built once, without the
circular-reference bookkeeping: every value they are given is a tree (JSON
from the wire, or YAML, whose loader refuses recursive aliases), and a
cycle would still end in Python's own recursion limit, never a hang.
Where the C encoder is missing (other Python implementations) the standard
encoder does the same job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

try:
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - CPython has both
    c_encode_basestring = c_make_encoder = None


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(*, sort_keys: bool, default: Callable[[Any], Any]) -> Callable[[Any], str]:
    if c_make_encoder is None or c_encode_basestring is None:  # pragma: no cover
        return json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False, default=default).encode
    # (markers, default, encoder, indent, key separator, item separator, sort_keys, skipkeys, allow_nan)
    chunks = c_make_encoder(None, default, c_encode_basestring, None, ":", ",", sort_keys, False, True)

    def encode(value: Any) -> str:
        if isinstance(value, str):  # what JSONEncoder.encode does for a lone string
            return c_encode_basestring(value)  # type: ignore[no-any-return]
        return "".join(chunks(value, 0))

    return encode


canonical_json: Callable[[Any], str] = _encoder(sort_keys=True, default=str)
canonical_json.__doc__ = "JSON with sorted keys and no whitespace: the one spelling digests are taken of."

compact_json: Callable[[Any], str] = _encoder(sort_keys=False, default=_not_json)
compact_json.__doc__ = "The JSON spelling used on the wire when a stored value is re-encoded."
