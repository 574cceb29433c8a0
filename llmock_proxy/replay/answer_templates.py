"""Answers to hand-written fixtures, rendered once and filled in per request.

A fixture's answer depends on the request it answers through a few values
only: the model asked for, the usage estimated from the prompt, the render
options the request sets (a stream's usage chunk, an embedding encoding),
and the ids derived from the request's content (OpenAI's ``chatcmpl-…``,
``call_…``, ``req_…``). Rendering and encoding the whole answer again for
every new question costs more than matching it. So the second time a
fixture answers with the same of those values, its answer is rendered with
a marker wherever an id goes, put in its wire form as the planner would
(:mod:`llmock_proxy.replay.wire_form`), and kept as a template: literal
bytes and the slots between them. Each later answer derives its own ids and
joins the pieces. A stream whose items all go at one offset (a fixture that
sets no pace) is also kept as one piece, filled in once: the writers would
send its items in one write anyway, and a fixture with delivery options
(pace, cuts, chaos) still gets its items one by one.

A template is kept only where it gives the very bytes a full render would:

* the render read nothing of the request but its model, family and stream
  flag (a family whose answer echoes the conversation or the tools, as the
  Responses API does, is rendered in full every time);
* two renders with different markers agree everywhere but in the markers
  (nothing else depends on an id or on the clock);
* every marker came out whole, where a slot can take its value: inside a
  string, or standing alone as a JSON string where a number goes (the
  ``created`` time).

Ids are :class:`~llmock_proxy.providers._openai_common.DerivedIds` values:
letters, digits, ``_`` and whole numbers, which need no escaping in JSON or
in a header. A family without derived ids has no slots: its template is the
answer itself, for as long as model and usage stay the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from llmock_proxy.canonical import CanonicalRequest, Summary
from llmock_proxy.cassette.model import Response
from llmock_proxy.providers._openai_common import DerivedIds
from llmock_proxy.providers.base import Provider, RenderOptions
from llmock_proxy.replay.wire_form import body_bytes, response_headers, stream_headers, stream_items

# Private-use code points: an answer that has one in it anyway is not
# templated (its markers could not be told from its text).
_OPEN, _CLOSE = "\ue000", "\ue001"
# A slot in a string; or, quotes and all, a JSON string standing where a number goes.
_SLOT_TEXT = re.compile(f'"{_OPEN}(\\d+)n{_CLOSE}"|{_OPEN}(\\d+){_CLOSE}')
_SLOT_BYTES = re.compile(_SLOT_TEXT.pattern.encode())
# The second render's markers count from here, so the two can be told apart.
_SECOND = 1_000_000
# What of the request a templated render may read (all part of the template's key).
_KEYED_READS = frozenset({"model", "family", "stream"})
# Templates a session keeps (each a few times its answer's size) before starting over.
TEMPLATE_LIMIT = 1024


class _MarkedIds:
    """Stands in for :class:`DerivedIds` in a template's render: every id asked
    for is a marker, and the call is noted as the slot it fills."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _marker(self, call: str, args: tuple[Any, ...], number: bool = False) -> str:
        self.calls.append((call, args))
        return f"{_OPEN}{self.first + len(self.calls) - 1}{'n' if number else ''}{_CLOSE}"

    def hex(self, label: str, length: int) -> str:
        return self._marker("hex", (label, length))

    def alnum(self, label: str, length: int) -> str:
        return self._marker("alnum", (label, length))

    def timestamp(self) -> str:  # an int from DerivedIds: see _SLOT_TEXT
        return self._marker("timestamp", (), number=True)

    def request_id(self) -> str:
        return self._marker("request_id", ())


class _ReadsNoted:
    """A canonical request that notes which of its attributes a render reads."""

    def __init__(self, request: CanonicalRequest) -> None:
        self._request = request
        self.noted: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.noted.add(name)
        return getattr(self._request, name)


@dataclass(frozen=True)
class _Pieces:
    """Literal pieces with a slot between each two: ``literals[0] slot literals[1] … literals[-1]``."""

    literals: tuple[Any, ...]  # bytes, or str for a header value
    slots: tuple[int, ...]

    def fill(self, values: list[Any]) -> Any:
        literals = self.literals
        if not self.slots:
            return literals[0]
        out = [literals[0]]
        for slot, literal in zip(self.slots, literals[1:]):
            out.append(values[slot])
            out.append(literal)
        return literals[0][:0].join(out)


def _split(text: Any, pattern: re.Pattern[Any], first: int) -> _Pieces | None:
    """``text`` cut at its markers (numbered from ``first``); None when a
    marker is cut short, out of range, or an answer's own text has the marker
    characters."""
    literals = []
    slots = []
    start = 0
    for match in pattern.finditer(text):
        literals.append(text[start : match.start()])
        slots.append(int(match.group(1) or match.group(2)) - first)
        start = match.end()
    literals.append(text[start:])
    opener = _OPEN if isinstance(text, str) else _OPEN.encode()
    closer = _CLOSE if isinstance(text, str) else _CLOSE.encode()
    if any(opener in piece or closer in piece for piece in literals) or any(s < 0 or s >= _SECOND for s in slots):
        return None
    return _Pieces(tuple(literals), tuple(slots))


def _agreed(one: Any, two: Any, pattern: re.Pattern[Any]) -> _Pieces | None:
    """The pieces of the first render's ``one``, when the second render's
    ``two`` is the same but for its markers (None otherwise)."""
    pieces = _split(one, pattern, 0)
    return pieces if pieces is not None and pieces == _split(two, pattern, _SECOND) else None


def _agreed_all(one: list[tuple[Any, Any]], two: list[tuple[Any, Any]],
                pattern: re.Pattern[Any]) -> tuple[tuple[Any, _Pieces], ...] | None:
    """``(key, pieces)`` for each ``(key, text)`` of the first render (header
    names, stream item offsets), when the second render has the same keys and
    every text agrees but for its markers (None otherwise)."""
    if [key for key, _ in one] != [key for key, _ in two]:
        return None
    agreed = []
    for (key, text_one), (_, text_two) in zip(one, two):
        pieces = _agreed(text_one, text_two, pattern)
        if pieces is None:
            return None
        agreed.append((key, pieces))
    return tuple(agreed)


def _joined(pieces: list[_Pieces]) -> _Pieces:
    """One piece for several in a row: what filling each and joining them gives."""
    literals = list(pieces[0].literals)
    slots = list(pieces[0].slots)
    for piece in pieces[1:]:
        literals[-1] += piece.literals[0]
        literals.extend(piece.literals[1:])
        slots.extend(piece.slots)
    return _Pieces(tuple(literals), tuple(slots))


@dataclass(frozen=True)
class AnswerTemplate:
    """One answer in its wire form, with slots where its ids go."""

    status: int
    wire_form: str
    calls: tuple[tuple[str, tuple[Any, ...]], ...]  # DerivedIds method and arguments, per slot
    headers: tuple[tuple[str, _Pieces], ...]
    body: _Pieces | None  # a whole body
    items: tuple[tuple[float, _Pieces], ...] | None  # a stream: each item's offset and bytes
    # A stream whose items all have one offset: all of them as one piece.
    together: _Pieces | None = None

    def wire_cache(self, ids: DerivedIds | None, *, together: bool = False) -> dict[Any, Any]:
        """The answer for ``ids`` as the planner keeps a wire form: ``"body"``
        (headers, bytes) or ``"items"`` (headers, [(offset, bytes)]); with
        ``together``, a stream whose items all go at one offset is
        ``"together"`` (headers, offset, all its bytes) instead, filled in
        once rather than item by item."""
        text = [str(getattr(ids, call)(*args)) for call, args in self.calls] if ids is not None else []
        data = [value.encode() for value in text]
        headers = [(name, value.fill(text)) for name, value in self.headers]
        if self.items is not None:
            if together and self.together is not None:
                return {"together": (headers, self.items[0][0], self.together.fill(data))}
            return {"items": (headers, [(at, piece.fill(data)) for at, piece in self.items])}
        assert self.body is not None
        return {"body": (headers, self.body.fill(data))}


def build_template(render: Callable[[Any], tuple[Response, set[str]]]) -> AnswerTemplate | None:
    """The template of what ``render(ids)`` answers (it returns the response
    and the request attributes it read); None when a template would not give
    what a full render does."""
    first, second = _MarkedIds(0), _MarkedIds(_SECOND)
    try:
        one, read_one = render(first)
        two, read_two = render(second)
    except Exception:  # e.g. arithmetic on a marker: this answer is rendered in full
        return None
    if not (read_one | read_two) <= _KEYED_READS or first.calls != second.calls or one.status != two.status:
        return None
    form = one.wire_form
    if form == "websocket" or two.wire_form != form:
        return None
    streamed = form != "body"
    spell_headers = stream_headers if streamed else response_headers
    headers = _agreed_all(spell_headers(one), spell_headers(two), _SLOT_TEXT)
    if headers is None:
        return None
    calls = tuple(first.calls)
    if not streamed:
        body = _agreed(body_bytes(one.body), body_bytes(two.body), _SLOT_BYTES)
        return AnswerTemplate(one.status, form, calls, headers, body, None) if body is not None else None
    items = _agreed_all(stream_items(one), stream_items(two), _SLOT_BYTES)
    if items is None:
        return None
    together = _joined([piece for _, piece in items]) if len({at for at, _ in items}) == 1 else None
    return AnswerTemplate(one.status, form, calls, headers, None, items, together)


@dataclass
class Templated:
    """A templated answer: its status and wire form, the wire cache the
    planner serves it from, and what renders its response model if asked."""

    status: int
    wire_form: str
    wire_cache: dict[Any, Any]
    render: Callable[[], Response]
    item_count: int | None  # how many items a stream answer has (None: a body)


class AnswerTemplates:
    """One replay session's answer templates."""

    def __init__(self, limit: int = TEMPLATE_LIMIT) -> None:
        self.limit = limit
        self._templates: dict[tuple[Any, ...], AnswerTemplate] = {}
        # Keys met once: a template is made the second time (most new
        # questions of a suite share model and prompt length with others).
        self._seen_once: set[tuple[Any, ...]] = set()
        # (fixture, family, stream) whose answers cannot be templated.
        self._refused: set[tuple[Any, ...]] = set()

    def clear(self) -> None:
        self._templates.clear()
        self._seen_once.clear()
        self._refused.clear()

    def answer(
        self,
        provider: Provider,
        fixture_id: int,
        summary: Summary,
        canonical: CanonicalRequest,
        stream: bool,
        options: RenderOptions,
        content_fingerprint: Callable[[], str],
        estimated_usage: tuple[tuple[str, int], ...] | None,
        *,
        together: bool = False,
    ) -> Templated | None:
        """The answer of fixture ``fixture_id`` (its ``summary`` with the usage
        estimated for this request) from its template, or None: render it in
        full. ``options``: the render options without the request's content
        fingerprint, which ``content_fingerprint`` gives when ids need it.
        ``together``: the fixture sets no pace, cut or chaos, so a stream whose
        items share one offset goes out as one piece (see :meth:`AnswerTemplate.wire_cache`)."""
        which = (fixture_id, provider.family, stream)
        if which in self._refused:
            return None
        key = (*which, options, canonical.model, estimated_usage)
        template = self._templates.get(key)
        if template is None:
            if key not in self._seen_once:
                if len(self._seen_once) >= self.limit:
                    self._seen_once.clear()
                self._seen_once.add(key)
                return None

            def render_marked(ids: Any) -> tuple[Response, set[str]]:
                noted = _ReadsNoted(canonical)
                response = provider.render(summary, noted, stream=stream, options=replace(options, ids=ids))  # type: ignore[arg-type]
                return response, noted.noted

            template = build_template(render_marked)
            if template is None:
                self._refused.add(which)
                return None
            if len(self._templates) >= self.limit:
                self._templates.clear()
            self._templates[key] = template

        def render_full() -> Response:
            full = options.with_content_fingerprint(content_fingerprint())
            return provider.render(summary, canonical, stream=stream, options=full)

        ids = None
        if template.calls:
            ids = DerivedIds.for_render(canonical, summary, options, content_fingerprint=content_fingerprint())
        count = len(template.items) if template.items is not None else None
        return Templated(template.status, template.wire_form, template.wire_cache(ids, together=together),
                         render_full, count)
