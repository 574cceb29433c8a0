"""Redaction by value: the credentials an interaction carried, removed wherever they reappear.

A provider may echo the key it was sent (an error message quoting it, a debug
header, a gateway that streams it back token by token). Its shape may be
unknown (an opaque 40-character key) and its name is gone once it sits in a
sentence, so the recorder removes the *values* it saw under credential names
from the whole interaction. :class:`SentValues` collects them;
:class:`ValueMatcher` is one combined regular expression of every value and
its spellings, built once per interaction, so a stream is searched in one
linear pass however many values there are.

The spellings of a value ``v`` searched for:

* ``v`` itself, percent-encoded (``quote``, ``quote_plus``) and JSON-escaped;
* base64 (standard and URL-safe alphabets) of ``v`` at each of the three byte
  alignments it can have inside a longer base64 text (``user:<v>`` in a
  ``Basic`` header, a secret inside an EventStream ``bytes`` payload): the
  characters that depend on ``v``'s bytes alone.

Values shorter than :data:`MIN_LENGTH` are only redacted where they were
found: removing ``"ollama"`` or ``"test"`` from every answer would destroy
the recording for no safety.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

# Shortest value redacted everywhere (shorter ones: only where found).
MIN_LENGTH = 8
# Longest value searched for, how many, and their total length: past these
# (a hostile answer with thousands of "password" fields) a value is only
# redacted where it was found, and building the search stays cheap.
MAX_LENGTH = 4096
MAX_VALUES = 64
MAX_TOTAL_LENGTH = 16384
# Shortest base64 spelling searched for: 72 bits, no accidental hit in a
# base64 image of any size.
_MIN_BASE64 = 12
# Values that are already placeholders (the redactor's own output).
_PLACEHOLDERS = ("<redacted>", "REDACTED")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9._~+\-]*)\s+(\S.*)", re.DOTALL)
_SIGV4_PART = re.compile(r"(?:Credential=([^/,\s]+)|Signature=([^,\s]+))")


def worth_searching(value: str) -> bool:
    """Whether ``value`` is long and specific enough to be removed everywhere."""
    value = value.strip()
    if not MIN_LENGTH <= len(value) <= MAX_LENGTH:
        return False
    return not any(p in value for p in _PLACEHOLDERS)


def credential_parts(value: str) -> list[str]:
    """The secret parts of a credential header's value: the token after an
    auth scheme, the password of ``Basic`` credentials, the key id and
    signature of AWS SigV4, or the whole value."""
    value = value.strip()
    if value.startswith("AWS4-"):
        return [part for m in _SIGV4_PART.finditer(value) for part in m.groups() if part]
    m = _SCHEME.fullmatch(value)
    if m is None:
        return [value]
    scheme, token = m.group(1), m.group(2).strip()
    parts = [token]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return parts
        user, colon, password = decoded.partition(":")
        parts += [password] if colon else [user]
    return parts


@dataclass
class SentValues:
    """The credential values seen in one interaction, in the order found."""

    values: dict[str, None] = field(default_factory=dict)
    _total: int = 0

    def add(self, value: str) -> None:
        if len(self.values) >= MAX_VALUES or not worth_searching(value):
            return
        value = value.strip()
        if value not in self.values and self._total + len(value) <= MAX_TOTAL_LENGTH:
            self.values[value] = None
            self._total += len(value)

    def add_query_value(self, raw: str) -> None:
        """A query or form value, as sent and decoded."""
        for value in {raw, unquote(raw), unquote_plus(raw)}:
            self.add(value)

    def matcher(self) -> ValueMatcher | None:
        return ValueMatcher.of(self.values)


def spellings(value: str) -> set[str]:
    """``value`` and the encodings it may reappear in (see the module docstring)."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    textual = {value, quote(value, safe=""), quote(value), quote_plus(value, safe=""),
               escaped, escaped.replace("/", "\\/")}
    encoded: set[str] = set()
    raw = value.encode("utf-8")
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        encoded.update({whole, whole.rstrip("="), whole[: 4 * (len(raw) // 3)]})
        for shift in (1, 2):
            # Inside a longer base64 text: the characters of the 3-byte
            # groups made of this value's bytes only.
            text = encode(b"\0" * shift + raw).decode("ascii")
            encoded.add(text[4 : 4 * ((shift + len(raw)) // 3)])
    return {s for s in textual if len(s) >= MIN_LENGTH} | {s for s in encoded if len(s) >= _MIN_BASE64}


@dataclass(frozen=True)
class ValueMatcher:
    """One regular expression for every spelling of every value: a trie of
    them (``sk-(?:test-a|proj-b)``), so each position of a text costs a look
    at one branch per level instead of a try of every spelling, and the
    longest spelling starting at a position wins (a value's base64 is
    replaced whole, not its shorter cores)."""

    regex: re.Pattern[str]

    @classmethod
    def of(cls, values: Iterable[str]) -> ValueMatcher | None:
        every: set[str] = set()
        for value in values:
            every |= spellings(value)
        if not every:
            return None
        return cls(re.compile(trie_pattern(every)))

    def search(self, text: str) -> bool:
        return self.regex.search(text) is not None

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.regex.finditer(text):
            yield m.span()

    def sub(self, text: str, placeholder: str) -> str:
        if self.regex.search(text) is None:
            return text
        return self.regex.sub(placeholder, text)


# Deeper than this many nested groups, a trie is spelled as a flat
# alternation instead (slower to search, but the regex compiler recurses per
# group).
_MAX_NESTING = 100
_END = ""  # marks the end of a word in a trie node (no character is "")


def trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, longest first at each position."""
    ordered = sorted(set(words))
    root: dict[str, Any] = {}
    for word in ordered:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[_END] = {}
    pattern, nesting = _emit(root)
    if nesting > _MAX_NESTING:
        return "|".join(re.escape(w) for w in sorted(ordered, key=lambda w: (-len(w), w)))
    return pattern


def _emit(root: dict[str, Any]) -> tuple[str, int]:
    """The pattern of a trie and how deeply its groups nest. Without
    recursion (a 4 KB value is a 4,000-node chain), and with chains of
    single children spelled as one literal, so the work is linear in the
    size of the pattern."""
    done: dict[int, tuple[str, int]] = {}
    stack: list[tuple[dict[str, Any], bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        edges = [_chain(char, child) for char, child in sorted(node.items()) if char != _END]
        if not expanded:
            stack.append((node, True))
            stack.extend((target, False) for _, target in edges if id(target) not in done)
            continue
        branches = []
        nesting = 0
        for label, target in edges:
            text, depth = done[id(target)]
            branches.append(re.escape(label) + text)
            nesting = max(nesting, depth)
        if not branches:
            done[id(node)] = ("", 0)
            continue
        if len(branches) == 1:
            body = branches[0]
        else:
            body = "(?:" + "|".join(branches) + ")"
            nesting += 1
        if _END in node:
            body = "(?:" + body + ")?"
            nesting += 1
        done[id(node)] = (body, nesting)
    return done[id(root)]


def _chain(char: str, node: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """From an edge, follow single children to the next branch or word end:
    the characters on the way and the node reached."""
    chars = [char]
    while len(node) == 1 and _END not in node:
        (char, node), = node.items()
        chars.append(char)
    return "".join(chars), node


__all__ = ["MIN_LENGTH", "SentValues", "ValueMatcher", "credential_parts", "spellings", "trie_pattern", "worth_searching"]
