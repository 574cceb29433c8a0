"""The two JSON spellings: the same text json.dumps writes with the same
settings (digests and stored bodies must not change with the encoder)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmock_proxy.json_spelling import canonical_json, compact_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_the_spellings_are_json_dumps_with_their_settings(value: Any) -> None:
    assert canonical_json(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    assert compact_json(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_canonical_json_writes_what_is_not_json_as_its_str() -> None:
    assert canonical_json({"b": {1, 2} - {1, 2}, "a": 1}) == '{"a":1,"b":"set()"}'


def test_compact_json_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError):
        compact_json({"a": object()})
