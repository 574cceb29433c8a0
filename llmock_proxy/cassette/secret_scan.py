"""Searching every string of a large tree for key shapes in a few long passes.

The refuse-to-write scan of loaded data (``Redactor.scan`` of a cassette, what
``cassette validate`` runs) reports findings by field path, so it used to walk
every string with its path and try every pattern on it: a dozen microseconds
per string, 0.4 MB/s on a cassette. Almost every string holds nothing, so the
work is split:

1. :func:`collect` walks the tree once, with no paths, and keeps each
   *distinct* string once (a cassette repeats its keys, roles, model names,
   header values and streamed words thousands of times), the values stored
   under ``base64`` (searched decoded too), and hands each string that sits
   in a request's or response's headers to a test of its own;
2. :func:`matching` searches those strings in long runs: short ones joined
   with NUL (which no built-in key shape can match or look across, so a run
   holds exactly the matches of its strings), long ones one by one, where
   testing a few characters first rules out most shapes (a base64 image
   holds no ``_``, ``-``, ``.`` or space);
3. only when something matched does the caller walk the tree again with
   paths, to name the fields (and the order of findings stays the walk's).

Linear in the size of the tree, and the cost per MB is that of a handful of
``str`` searches over the distinct text.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

# Joins short strings into one run. Built-in key shapes never match it (their
# character classes hold no NUL) and their look-arounds treat it like the end
# of a string, so a run's matches are exactly those of its strings.
SEPARATOR = "\0"
# Strings at least this long are searched on their own (their characters
# rule out most shapes); shorter ones are joined into runs of about RUN.
LONG = 16 * 1024
RUN = 256 * 1024

# Characters that may match an ASCII letter case-insensitively in Python's
# ``re`` besides its own two cases, as ``str.lower`` spells them:
# ``(?i:s)`` matches LATIN SMALL LETTER LONG S, ``(?i:i)`` DOTTED CAPITAL I
# (lower-cased to "i" + COMBINING DOT ABOVE) and DOTLESS SMALL I; KELVIN SIGN
# lower-cases to "k" itself.
_OTHER_FOLDS = {"s": ("\u017f",), "i": ("i\u0307", "\u0131")}


def fold_spellings(literal: str) -> tuple[str, ...]:
    """Every spelling, after ``str.lower``, of what ``(?i:literal)`` matches:
    a text holds a case-insensitive match iff its ``lower()`` holds one of
    these (``secret`` -> ``secret``, ``ſecret``)."""
    spellings = [""]
    for char in literal.lower():
        options = (char, *_OTHER_FOLDS.get(char, ()))
        spellings = [s + o for s in spellings for o in options]
    return tuple(dict.fromkeys(spellings))


@dataclass
class Strings:
    """What :func:`collect` found in a tree."""

    # Every distinct string (values and mapping keys), in no particular order.
    texts: set[str] = field(default_factory=set)
    # The distinct string values stored under a ``base64`` key.
    base64: set[str] = field(default_factory=set)
    # Whether a header value passed the caller's test.
    header_hit: bool = False


HeaderTest = Callable[[str, str, str], bool]  # (section, header name, value) -> finding


def collect(value: Any, header_test: HeaderTest | None = None) -> Strings:
    """The strings of a JSON-like tree (dicts, lists, strings: the values
    ``_leaves`` walks). ``header_test`` is asked about every string at
    ``<request|response>.headers.<name>``, the only place a string's
    meaning depends on where it is."""
    out = Strings()
    texts = out.texts
    add = texts.add
    # (container, its key in its parent: None at the top and in lists)
    stack: list[tuple[Any, Any]] = [(value, None)]
    while stack:
        item, own_key = stack.pop()
        if isinstance(item, dict):
            texts.update(item)  # the keys (others than strings are dropped below)
            for key, child in item.items():
                kind = type(child)
                if kind is str:
                    add(child)
                elif kind is dict or kind is list:
                    stack.append((child, key))
                elif isinstance(child, str):
                    add(child)
                elif isinstance(child, (dict, list)):
                    stack.append((child, key))
            encoded = item.get("base64")
            if isinstance(encoded, str):
                out.base64.add(encoded)
            if header_test is not None and not out.header_hit and own_key is not None:
                section = str(own_key)
                headers = item.get("headers")
                if section in ("request", "response") and isinstance(headers, (dict, list)):
                    out.header_hit = _header_hit(section, headers, header_test)
        elif isinstance(item, list):
            for child in item:
                kind = type(child)
                if kind is str:
                    add(child)
                elif kind is dict or kind is list:
                    stack.append((child, None))
                elif isinstance(child, str):
                    add(child)
                elif isinstance(child, (dict, list)):
                    stack.append((child, None))
        elif isinstance(item, str):
            add(item)
    out.texts = {text for text in texts if isinstance(text, str)}
    return out


def _header_hit(section: str, headers: dict[Any, Any] | list[Any], test: HeaderTest) -> bool:
    pairs = headers.items() if isinstance(headers, dict) else enumerate(headers)
    return any(isinstance(value, str) and test(section, str(name).lower(), value) for name, value in pairs)


Finder = Callable[[str], Iterable[int]]  # where matches start in a text


def runs(texts: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """``texts`` as searchable runs: (text to search, the strings it is made
    of). A long string is a run of its own; short ones are joined."""
    pending: list[str] = []
    size = 0
    for text in texts:
        if len(text) >= LONG:
            yield text, [text]
            continue
        pending.append(text)
        size += len(text) + 1
        if size >= RUN:
            yield SEPARATOR.join(pending), pending
            pending, size = [], 0
    if pending:
        yield SEPARATOR.join(pending), pending


def matching(texts: Iterable[str], find: Finder) -> set[str]:
    """The strings of ``texts`` in which ``find`` finds a match (``find``
    must not match across a SEPARATOR, as the built-in key shapes cannot)."""
    found: set[str] = set()
    for joined, members in runs(texts):
        starts = list(find(joined))
        if not starts:
            continue
        if len(members) == 1:
            found.add(members[0])
            continue
        ends = list(accumulate(len(text) + 1 for text in members))
        for start in starts:
            found.add(members[bisect_right(ends, start)])
    return found


def any_match(texts: Iterable[str], test: Callable[[str], bool]) -> bool:
    """Whether ``test`` holds for any run of ``texts`` (a gate: ``test`` may
    say yes too often, never too rarely, for a run holding a match)."""
    return any(test(joined) for joined, _ in runs(texts))


__all__ = ["LONG", "RUN", "SEPARATOR", "Strings", "any_match", "collect", "fold_spellings", "matching", "runs"]
