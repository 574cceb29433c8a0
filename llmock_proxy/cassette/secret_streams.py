"""Secrets split across the items of a stream.

A model streams text a few characters at a time; a provider that echoes a key
streams it the same way (``"sk-te"``, ``"st-4f"``, ``"9a..."``), and no single
event holds anything a search can find. So the strings of a stream's items are
put back together the way a client does: every string leaf is filed under its
*channel* (the item's direction, for WebSocket, and the leaf's path inside the
item's JSON: ``choices[0].delta.content``, ``delta.text``, ``message.content``),
the pieces of each channel are joined in order, the joined text is searched,
and each match is cut out of the pieces it came from: the piece where it starts
gets the placeholder, the others lose their part of it. The reassembled text
then reads as if the whole value had been redacted in one piece, and every
item keeps its place and timing.

One pass over the items and one search per channel: linear in the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

Path = tuple[Any, ...]
Finder = Callable[[str], Iterable[tuple[int, int]]]


def string_leaves(value: Any) -> list[tuple[Path, str]]:
    """Every non-empty string in a JSON-like value with its path, in document order."""
    out: list[tuple[Path, str]] = []
    _collect(value, (), out)
    return out


def _collect(value: Any, path: Path, out: list[tuple[Path, str]]) -> None:
    kind = type(value)
    if kind is str:
        if value:
            out.append((path, value))
    elif kind is dict:
        for key, child in value.items():
            _collect(child, path + (key,), out)
    elif kind is list:
        for index, child in enumerate(value):
            _collect(child, path + (index,), out)


def with_leaves(value: Any, changes: dict[Path, str]) -> Any:
    """A copy of ``value`` with the strings at ``changes``' paths replaced
    (containers on the way copied, the rest shared)."""
    if () in changes:
        return changes[()]
    heads: dict[Any, dict[Path, str]] = {}
    for path, text in changes.items():
        heads.setdefault(path[0], {})[path[1:]] = text
    if isinstance(value, dict):
        out_dict = dict(value)
        for key, rest in heads.items():
            out_dict[key] = with_leaves(value[key], rest)
        return out_dict
    out_list = list(value)
    for index, rest in heads.items():
        out_list[index] = with_leaves(value[index], rest)
    return out_list


def merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def cut(pieces: Sequence[str], spans: Sequence[tuple[int, int]], placeholder: str) -> list[str]:
    """``pieces`` with the (sorted, disjoint) ``spans`` of their concatenation
    removed; each span leaves ``placeholder`` in the piece where it starts."""
    out: list[str] = []
    at = 0  # offset of the current piece in the concatenation
    next_span = 0
    for piece in pieces:
        end_of_piece = at + len(piece)
        while next_span < len(spans) and spans[next_span][1] <= at:
            next_span += 1
        parts: list[str] = []
        pos = at
        index = next_span
        while index < len(spans) and spans[index][0] < end_of_piece:
            start, end = spans[index]
            if start > pos:
                parts.append(piece[pos - at : start - at])
            if start >= at:
                parts.append(placeholder)
            pos = max(pos, min(end, end_of_piece))
            if end > end_of_piece:
                break
            index += 1
        parts.append(piece[pos - at :])
        out.append("".join(parts))
        at = end_of_piece
    return out


def redact_across(
    docs: Sequence[Any],
    channels: Sequence[Hashable],
    find: Finder,
    placeholder: str,
    leaves: Sequence[list[tuple[Path, str]]] | None = None,
    may_find: Callable[[str], bool] | None = None,
) -> tuple[list[Any], bool]:
    """``docs`` (one JSON-like value per stream item, None to leave an item
    out) with every match of ``find`` in a channel's joined text removed, and
    whether any channel's text passed ``may_find`` (a cheap test that
    ``find`` could match: then single strings deserve a search too).
    ``channels[i]`` separates items that are not one text (WebSocket
    directions); ``leaves[i]``, when given, are ``string_leaves(docs[i])``
    already known. Unchanged documents are returned as they were."""
    pieces_of: dict[tuple[Hashable, Path], list[tuple[int, Path, str]]] = {}
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        channel = channels[index]
        for path, text in string_leaves(doc) if leaves is None else leaves[index]:
            pieces_of.setdefault((channel, path), []).append((index, path, text))
    changes: dict[int, dict[Path, str]] = {}
    hit = False
    for pieces in pieces_of.values():
        texts = [text for _, _, text in pieces]
        joined = texts[0] if len(texts) == 1 else "".join(texts)
        if may_find is not None and not may_find(joined):
            continue
        hit = True
        if len(pieces) < 2:
            continue  # a lone string is searched where it is
        spans = merged(find(joined))
        if not spans:
            continue
        for (index, path, old), new in zip(pieces, cut(texts, spans, placeholder), strict=True):
            if new != old:
                changes.setdefault(index, {})[path] = new
    out = list(docs)
    for index, leaf_changes in changes.items():
        out[index] = with_leaves(docs[index], leaf_changes)
    return out, hit


__all__ = ["cut", "merged", "redact_across", "string_leaves", "with_leaves"]
