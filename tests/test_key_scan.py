"""The fast key scan finds exactly what a string-by-string search with every
pattern finds: same findings, same order, same field paths and lines.

The oracle here is the scan as it was before it searched in joined runs:
walk every string with its path, try every pattern on it (and on what a
``base64`` value decodes to), check sensitive headers. Trees are generated
from pieces that test the edges: keys split by the NUL that joins runs,
key-shaped mapping keys, case-insensitive literals in their other spellings
(``ſecret``), headers and base64 values where they count and where they do not.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmock_proxy.cassette import secret_scan
from llmock_proxy.cassette.redact import Finding, Redactor, _leaves, mask
from llmock_proxy.cassette.secret_scan import fold_spellings
from llmock_proxy.errors import format_path

BUDGET = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
redactor = Redactor.default()

# Split so repository key scans stay quiet.
SHAPES = [
    "sk-" + "test-abc",
    "sk-" + "proj-" + "A1b2C3d4" * 3,
    "AKIA" + "IOSFODNN7EXAMPLE",
    "gh" + "p_" + "a1B2" * 9,
    "xo" + "xb-" + "1234567890-abc",
    "Bearer " + "abcDEF0123456789ghi",
    "BEARER\t" + "abcDEF0123456789ghi",
    "aws_\u017fecret_access_key" + '= "' + "A" * 39 + "b",
    "secret_access_key: " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "-----BEGIN " + "PRIVATE KEY-----\nMIIB\\nAbc=",
    "hooks.slack.com/services/" + "T0000000/B0000000/" + "X" * 24,
]
PIECES = [*SHAPES, "\0", "-", "_", " ", "\n", "task", "x", "9", "Bearer <redacted>", "<redacted>", "ya29.", "eyJ",
          "PRIVATE KEY-----", "sk-", "\u0130", "\u212a"]
KEYS = ["headers", "request", "response", "base64", "authorization", "x-api-key", "set-cookie", "content-type",
        "json", "text", "interactions", "meta"]

texts = st.lists(st.sampled_from(PIECES), max_size=5).map("".join)
encoded = st.sampled_from(SHAPES).map(lambda s: base64.b64encode(s.encode()).decode())
scalars = st.one_of(texts, encoded, st.integers(), st.none(), st.booleans())
keys = st.one_of(st.sampled_from(KEYS), texts, st.integers(0, 3))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(keys, inner, max_size=4)), max_leaves=30)


def reference(value: Any) -> list[Finding]:
    """The string-by-string scan: every pattern on every string."""

    def secrets(text: str) -> Iterator[tuple[str, str]]:
        for pattern in redactor.rules.patterns:
            for m in pattern.regex.finditer(text):
                yield pattern.name, m.group(pattern.group)

    out = []
    for path, leaf, is_key in _leaves(value, ()):
        shown = tuple(mask(p) if isinstance(p, str) and any(secrets(p)) else p for p in path)
        where = format_path(shown) + (" (a mapping key)" if is_key else "")
        searched = [leaf]
        if path and path[-1] == "base64" and not is_key:
            try:
                searched.append(base64.b64decode(leaf, validate=True).decode("latin-1"))
            except (binascii.Error, ValueError):
                pass
        out += [Finding(where, rule, mask(secret)) for text in searched for rule, secret in secrets(text)]
        if not is_key and len(path) >= 2 and path[-2] == "headers":
            section = str(path[-3]) if len(path) >= 3 else ""
            if redactor._header_hit(section, str(path[-1]).lower(), leaf):
                out.append(Finding(where, "sensitive header", mask(leaf)))
    return out


@BUDGET
@given(trees)
def test_the_scan_of_data_finds_what_every_pattern_on_every_string_finds(tree: Any) -> None:
    assert redactor.scan({"interactions": [tree]} if not isinstance(tree, (dict, list)) else tree) == reference(
        {"interactions": [tree]} if not isinstance(tree, (dict, list)) else tree
    )


@BUDGET
@given(st.lists(texts, max_size=20))
def test_the_scan_of_text_finds_what_every_pattern_finds_with_its_line(lines: list[str]) -> None:
    text = "\n".join(lines) * 3
    found = []
    for pattern in redactor.rules.patterns:
        for m in pattern.regex.finditer(text):
            found.append((m.start(), Finding(f"line {text.count(chr(10), 0, m.start()) + 1}", pattern.name,
                                             mask(m.group(pattern.group)))))
    assert redactor.scan(text) == [f for _, f in sorted(found, key=lambda item: item[0])]


def test_long_strings_and_long_runs_are_searched_whole() -> None:
    key = SHAPES[1]
    filler = "a" * secret_scan.LONG
    tree = {"a": [f"{filler} {key}", *(f"word {i}" for i in range(40_000)), f"x {key}"], "b": {key: 1}}
    assert redactor.scan(tree) == reference(tree)
    assert [f.where for f in redactor.scan(tree)] == ["a[0]", "a[40001]", "b.sk-pr… (a mapping key)"]


def test_case_insensitive_literals_are_looked_for_in_every_spelling_re_matches() -> None:
    assert fold_spellings("secret") == ("secret", "\u017fecret")
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    for letter in "abcdefghijklmnopqrstuvwxyz":
        matched = re.findall(f"(?i:{letter})", everything)
        assert {char.lower() for char in matched} <= set(fold_spellings(letter)), letter
    text = "aws_\u017fECRET_access_key=" + "A" * 40
    assert redactor.redact_text(text) == "aws_\u017fECRET_access_key=<redacted>"
