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
from urllib.parse import quote, quote_plus, unquote, unquote_plus

# Shortest value redacted everywhere (shorter ones: only where found).
MIN_LENGTH = 8
# Longest value searched for (longer ones: only where found); and how many.
MAX_LENGTH = 4096
MAX_VALUES = 256
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

    def add(self, value: str) -> None:
        if len(self.values) < MAX_VALUES and worth_searching(value):
            self.values[value.strip()] = None

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
    """One regular expression for every spelling of every value, longest first
    (so a value's base64 is replaced whole, not its shorter cores)."""

    regex: re.Pattern[str]

    @classmethod
    def of(cls, values: Iterable[str]) -> ValueMatcher | None:
        every: set[str] = set()
        for value in values:
            every |= spellings(value)
        if not every:
            return None
        ordered = sorted(every, key=lambda s: (-len(s), s))
        return cls(re.compile("|".join(re.escape(s) for s in ordered)))

    def search(self, text: str) -> bool:
        return self.regex.search(text) is not None

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.regex.finditer(text):
            yield m.span()

    def sub(self, text: str, placeholder: str) -> str:
        if self.regex.search(text) is None:
            return text
        return self.regex.sub(placeholder, text)


__all__ = ["MIN_LENGTH", "SentValues", "ValueMatcher", "credential_parts", "spellings", "worth_searching"]
