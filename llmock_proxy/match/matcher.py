"""One matcher for recorded interactions and hand-written fixtures.

Two halves:

* :func:`derive_match` writes the ``match`` section of a recorded interaction.
* :class:`Matcher` finds the fixture for a canonical request.

Every key present in a fixture's ``match`` must hold; deleting a key loosens
the match. Keys (``*`` = llmock fixture vocabulary):

============== ===================================================================
family         the API family (``openai-chat``, ``anthropic-messages`` ...)
model *        exact, or ``/regex/flags``
stream         the client asked for a stream
fingerprint    digest of the whole canonical conversation (recordings)
method, path   the HTTP method and URL path (the generic family)
userMessage *  last user message: substring for fixtures, exact for recordings,
               ``/regex/flags`` for either
inputText *    embedding input, same rules as userMessage
toolCallId *   id of the last tool result sent back
toolName *     one of the tools offered has this name
toolNames      the tools offered, exactly (recordings)
responseFormat * the response format type (``json_object``, ``json_schema`` ...)
sequenceIndex * only the n-th (0-based) time these criteria match
============== ===================================================================

Fixtures are tried in order and the first that matches wins, as in llmock.
Several recordings with the same ``match`` form one candidate that answers
with them in recorded order, the last one repeating. Which one comes next is
sequence state, and that belongs to the caller (a replay session): the
matcher reads counts, it never keeps them.

A stream request that only matches a non-stream recording of the same
conversation (or the reverse) is found through the content fingerprint, so
the session can re-render the recording in the requested form.
"""

from __future__ import annotations

import difflib
import heapq
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from llmock_proxy.canonical import CanonicalRequest, canonical_json

if TYPE_CHECKING:
    from llmock_proxy.replay.fixture import Fixture
from llmock_proxy.errors import MatchSpecError

log = logging.getLogger(__name__)


# -- the request side -----------------------------------------------------------


class RequestView:
    """The values the criteria look at, each computed at most once per request."""

    def __init__(self, canonical: CanonicalRequest, method: str = "POST", path: str = "/") -> None:
        self.canonical = canonical
        self.method = method.upper()
        self.path = path

    @property
    def family(self) -> str:
        return self.canonical.family

    @property
    def model(self) -> str | None:
        return self.canonical.model

    @property
    def stream(self) -> bool:
        return self.canonical.stream

    @cached_property
    def fingerprint(self) -> str:
        return self.canonical.fingerprint

    @cached_property
    def content_fingerprint(self) -> str:
        return self.canonical.content_fingerprint

    @cached_property
    def user_message(self) -> str | None:
        return self.canonical.last_user_message

    @cached_property
    def input_text(self) -> str | None:
        inputs = self.canonical.embedding_input
        return "\n".join(inputs) if inputs else None

    @cached_property
    def tool_call_id(self) -> str | None:
        """The id of the last tool result in the conversation (llmock: the last
        ``tool`` message's ``tool_call_id``)."""
        for message in reversed(self.canonical.messages):
            if message.tool_results:
                return message.tool_results[-1].tool_call_id
        return None

    @cached_property
    def tool_names(self) -> list[str]:
        return self.canonical.tool_names

    @cached_property
    def response_format(self) -> str | None:
        fmt = self.canonical.response_format
        if isinstance(fmt, dict) and isinstance(fmt.get("type"), str):
            return fmt["type"]
        return fmt if isinstance(fmt, str) else None

    @property
    def generic_method(self) -> str:
        return str(self.canonical.extra.get("method", self.method)).upper()

    @property
    def generic_path(self) -> str:
        return str(self.canonical.extra.get("path", self.path))

    def describe(self) -> str:
        """One line naming the request, for logs and miss reports."""
        parts = [f"family {self.family}"]
        if self.model:
            parts.append(f"model {self.model}")
        parts.append("stream" if self.stream else "no stream")
        if self.user_message:
            parts.append(f"userMessage {_short(self.user_message)!r}")
        if self.input_text:
            parts.append(f"inputText {_short(self.input_text)!r}")
        if self.tool_call_id:
            parts.append(f"toolCallId {self.tool_call_id!r}")
        return ", ".join(parts)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- criteria --------------------------------------------------------------------

_REGEX = re.compile(r"^/(.+)/([a-z]*)$", re.S)


# JavaScript flags that change matching; g, y, u and d do not for a single test.
_REGEX_FLAGS = {"i": re.I, "m": re.M, "s": re.S, "x": re.X}


def parse_pattern(value: str, where: str) -> re.Pattern[str] | None:
    """``/.../flags`` as a compiled regex; None for a plain string."""
    found = _REGEX.match(value)
    if not found:
        return None
    body, flags = found.groups()
    bits = 0
    for flag in flags:
        if flag in _REGEX_FLAGS:
            bits |= _REGEX_FLAGS[flag]
        elif flag not in "guyd":
            raise MatchSpecError(f"{where}: unknown regex flag {flag!r} in {value!r}")
    try:
        return re.compile(body, bits)
    except re.error as exc:
        raise MatchSpecError(f"{where}: bad regex {value!r}: {exc}") from None


@dataclass(frozen=True)
class Criterion:
    """One ``match`` key: a test on the request view, plus how to show what it saw."""

    key: str
    expected: Any
    test: Callable[[RequestView], bool]
    actual: Callable[[RequestView], Any]


def _text_criterion(
    key: str, value: Any, getter: Callable[[RequestView], str | None], *, substring: bool, where: str
) -> Criterion:
    if not isinstance(value, str):
        raise MatchSpecError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    pattern = parse_pattern(value, f"{where}.{key}")
    if pattern is not None:

        def test(view: RequestView) -> bool:
            text = getter(view)
            return text is not None and pattern.search(text) is not None

    elif substring:

        def test(view: RequestView) -> bool:
            text = getter(view)
            return bool(text) and value in text  # type: ignore[operator]

    else:

        def test(view: RequestView) -> bool:
            return getter(view) == value

    return Criterion(key, value, test, getter)


def _equal_criterion(key: str, value: Any, getter: Callable[[RequestView], Any]) -> Criterion:
    return Criterion(key, value, lambda view: getter(view) == value, getter)


def _compile(match: Mapping[str, Any], *, recorded: bool, where: str) -> list[Criterion]:
    out: list[Criterion] = []
    for key, value in match.items():
        if key == "sequenceIndex":
            continue  # sequence state, handled by the candidate
        if key in ("userMessage", "inputText"):
            getter = _get_user_message if key == "userMessage" else _get_input_text
            out.append(_text_criterion(key, value, getter, substring=not recorded, where=where))
        elif key == "model":
            if isinstance(value, str) and parse_pattern(value, f"{where}.model") is not None:
                out.append(_text_criterion(key, value, _get_model, substring=False, where=where))
            else:
                out.append(_equal_criterion(key, value, _get_model))
        elif key == "toolName":
            out.append(Criterion(key, value, _has_tool(value), _get_tool_names))
        elif key in _EQUALITY_GETTERS:
            out.append(_equal_criterion(key, value, _EQUALITY_GETTERS[key]))
        else:
            known = ", ".join(sorted((*_EQUALITY_GETTERS, "userMessage", "inputText", "model",
                                      "toolName", "sequenceIndex")))
            if recorded:
                # A cassette's match is ours: an unknown key is a typo that
                # would silently loosen the match.
                raise MatchSpecError(f"{where}.{key}: unknown match key (known: {known})")
            # llmock ignores match keys it does not know; so do we, loudly.
            log.warning("%s.%s: unknown match key ignored (known: %s)", where, key, known)
    # Cheap, selective tests first: a miss is decided as early as possible.
    out.sort(key=lambda c: _ORDER.get(c.key, 50))
    return out


def _get_user_message(view: RequestView) -> str | None:
    return view.user_message


def _get_input_text(view: RequestView) -> str | None:
    return view.input_text


def _get_model(view: RequestView) -> str | None:
    return view.model


def _has_tool(name: Any) -> Callable[[RequestView], bool]:
    def test(view: RequestView) -> bool:
        return name in view.tool_names

    return test


def _get_tool_names(view: RequestView) -> list[str]:
    return view.tool_names


_EQUALITY_GETTERS: dict[str, Callable[[RequestView], Any]] = {
    "family": lambda view: view.family,
    "stream": lambda view: view.stream,
    "fingerprint": lambda view: view.fingerprint,
    "method": lambda view: view.generic_method,
    "path": lambda view: view.generic_path,
    "toolCallId": lambda view: view.tool_call_id,
    "toolNames": lambda view: view.tool_names,
    "responseFormat": lambda view: view.response_format,
}


_ORDER = {"family": 0, "stream": 1, "model": 2, "method": 3, "path": 4, "fingerprint": 5}


# Keys a cross-form lookup ignores: the content fingerprint stands in for them.
_FORM_KEYS = frozenset({"stream", "fingerprint"})


# -- candidates --------------------------------------------------------------------


@dataclass(eq=False)
class Candidate:
    """A ``match`` section and the fixture(s) that answer it.

    Recordings with identical ``match`` sections share one candidate and
    answer in recorded order; a hand-written fixture is a candidate of its own.
    """

    order: int
    match: dict[str, Any]
    criteria: list[Criterion]
    fixtures: list[Fixture]
    # Sequence-state key: recordings with the same match, or llmock fixtures
    # with the same criteria and a sequenceIndex, count together.
    key: str
    sequence_index: int | None = None
    fingerprint: str | None = None
    content_fingerprint: str | None = None
    form_criteria: list[Criterion] = field(default_factory=list)
    # A hand-written answer (text, tool calls, embedding) that is rendered in
    # the requested API's wire format; recordings and errors are not.
    needs_synthesis: bool = False

    @property
    def source(self) -> str:
        return self.fixtures[0].source

    def pick(self, count: int) -> Fixture:
        """The fixture answering the ``count``-th (0-based) use of this candidate."""
        return self.fixtures[min(count, len(self.fixtures) - 1)]

    def admits(self, view: RequestView, counts: Mapping[str, int]) -> bool:
        if self.sequence_index is not None and counts.get(self.key, 0) != self.sequence_index:
            return False
        return all(c.test(view) for c in self.criteria)

    def admits_other_form(self, view: RequestView, counts: Mapping[str, int]) -> bool:
        if self.sequence_index is not None and counts.get(self.key, 0) != self.sequence_index:
            return False
        return all(c.test(view) for c in self.form_criteria)


@dataclass(frozen=True)
class Found:
    """The matcher's answer: the fixture to serve and the candidate it came from."""

    candidate: Candidate
    fixture: Fixture
    # The request's stream flag differs from the recording's: render it anew.
    other_form: bool = False


@dataclass(frozen=True)
class Difference:
    key: str
    expected: Any
    actual: Any

    def describe(self) -> str:
        if self.key == "fingerprint":
            return "fingerprint differs (the conversation is not the recorded one)"
        if self.key == "sequenceIndex":
            return f"sequenceIndex {self.expected} (this is use {self.actual})"
        return f"{self.key}: expected {_show(self.expected)}, got {_show(self.actual)}"


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else repr(_short(value))
    return text


@dataclass(frozen=True)
class NearMiss:
    """A candidate that almost matched, and what differed."""

    source: str
    match: dict[str, Any]
    differences: tuple[Difference, ...]

    def describe(self) -> str:
        return f"{self.source}: " + "; ".join(d.describe() for d in self.differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "differences": [
                {"key": d.key, "expected": _bounded(d.expected), "actual": _bounded(d.actual), "text": d.describe()}
                for d in self.differences
            ],
        }


# How much of a differing text a near-miss report repeats: a miss answer must
# stay small whatever the request carried (a 30 MB prompt, a base64 image).
REPORTED_CHARS = 500


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > REPORTED_CHARS:
        return f"{value[:REPORTED_CHARS]}… ({len(value)} characters)"
    return value


class Matcher:
    """Fixtures compiled for lookup. Stateless at request time: sequence
    counts come from the caller, keyed by :attr:`Candidate.key`."""

    def __init__(self, fixtures: Sequence[Fixture] = ()) -> None:
        self.candidates: list[Candidate] = []
        self._recorded_groups: dict[str, Candidate] = {}
        # Candidates with a fingerprint key are only worth trying for a request
        # with that fingerprint; the rest are tried for every request.
        self._by_fingerprint: dict[str, list[int]] = {}
        self._by_content: dict[str, list[int]] = {}
        self._unindexed: list[int] = []
        # Whether any candidate's answer depends on how often it matched.
        self.has_sequence_indices = False
        for fixture in fixtures:
            self.add(fixture)

    def __len__(self) -> int:
        return len(self.candidates)

    def add(self, fixture: Fixture) -> Candidate:
        """Append a fixture (a recording joins the candidate with the same match)."""
        group_key = "recorded:" + canonical_json(fixture.match) if fixture.recorded else ""
        if fixture.recorded:
            existing = self._recorded_groups.get(group_key)
            if existing is not None:
                existing.fixtures.append(fixture)
                return existing
        # Problems name the field as it sits in the file: "...: fixtures[2].match.userMessage".
        where = f"{fixture.source}.match"
        criteria = _compile(fixture.match, recorded=fixture.recorded, where=where)
        sequence_index = fixture.match.get("sequenceIndex")
        if sequence_index is not None and (
            isinstance(sequence_index, bool) or not isinstance(sequence_index, int) or sequence_index < 0
        ):
            raise MatchSpecError(f"{where}.sequenceIndex: expected an integer >= 0")
        if fixture.recorded:
            key = group_key
        elif sequence_index is not None:
            rest = {k: v for k, v in fixture.match.items() if k != "sequenceIndex"}
            key = "sequence:" + canonical_json(rest)
        else:
            key = "fixture:" + fixture.source
        fingerprint = fixture.match.get("fingerprint")
        candidate = Candidate(
            order=len(self.candidates),
            match=dict(fixture.match),
            criteria=criteria,
            fixtures=[fixture],
            key=key,
            sequence_index=sequence_index,
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            content_fingerprint=fixture.content_fingerprint,
            form_criteria=[c for c in criteria if c.key not in _FORM_KEYS],
            needs_synthesis=not fixture.recorded and fixture.error is None,
        )
        self.candidates.append(candidate)
        self.has_sequence_indices |= sequence_index is not None
        index = candidate.order
        if candidate.fingerprint is not None:
            self._by_fingerprint.setdefault(candidate.fingerprint, []).append(index)
            if candidate.content_fingerprint is not None:
                self._by_content.setdefault(candidate.content_fingerprint, []).append(index)
        else:
            self._unindexed.append(index)
        if fixture.recorded:
            self._recorded_groups[key] = candidate
        return candidate

    def _in_order(self, indexed: list[int]) -> Iterable[int]:
        """Candidate indices to try, in fixture order (both lists are sorted)."""
        if not indexed:
            return self._unindexed
        if not self._unindexed:
            return indexed
        return heapq.merge(indexed, self._unindexed)

    def find(self, view: RequestView, counts: Mapping[str, int], *, can_synthesize: bool = True) -> Found | None:
        """The first candidate whose every criterion holds; failing that, a
        recording of the same conversation in the other wire form. With
        ``can_synthesize`` false (the request's family has no wire format to
        render an answer in), hand-written text, tool-call and embedding
        fixtures are passed over: they could only fail."""
        for index in self._in_order(self._by_fingerprint.get(view.fingerprint, [])):
            candidate = self.candidates[index]
            if not can_synthesize and candidate.needs_synthesis:
                continue
            if candidate.admits(view, counts):
                return Found(candidate, candidate.pick(counts.get(candidate.key, 0)))
        for index in self._by_content.get(view.content_fingerprint, ()):
            candidate = self.candidates[index]
            if candidate.admits_other_form(view, counts):
                return Found(candidate, candidate.pick(counts.get(candidate.key, 0)), other_form=True)
        return None

    def near_misses(
        self, view: RequestView, counts: Mapping[str, int], limit: int = 3, *, can_synthesize: bool = True
    ) -> list[NearMiss]:
        """The ``limit`` candidates with the fewest differing keys (same family
        first), each with what differed. Only called on a miss.

        Every candidate is scored roughly (texts compared by their common
        beginning and end, which is cheap at any length); only a short list
        of the best is scored with difflib. So a miss against 10k recordings
        or with a megabyte prompt stays a matter of milliseconds on the
        proxy's event loop."""
        rough: list[tuple[tuple[int, float, int], int, Candidate, list[Difference]]] = []
        for candidate in self.candidates:
            differences = [
                Difference(c.key, c.expected, c.actual(view)) for c in candidate.criteria if not c.test(view)
            ]
            if candidate.sequence_index is not None:
                used = counts.get(candidate.key, 0)
                if used != candidate.sequence_index:
                    differences.append(Difference("sequenceIndex", candidate.sequence_index, used))
            if not can_synthesize and candidate.needs_synthesis:
                differences.append(Difference("family", SYNTHESIZED_FAMILIES, view.family))
            if not differences:
                continue
            rough.append((_closeness(differences, _rough_similarity), candidate.order, candidate, differences))
        shortlist = heapq.nsmallest(limit * _SHORTLIST_FACTOR, rough, key=lambda item: (item[0], item[1]))
        scored = [
            (*_closeness(differences, _similarity), order, NearMiss(candidate.source, candidate.match, tuple(differences)))
            for _, order, candidate, differences in shortlist
        ]
        scored.sort(key=lambda item: item[:4])
        return [item[4] for item in scored[:limit]]


# What a hand-written text / tool-call / embedding fixture needs: an API
# family whose wire format an answer can be synthesized in (not ``generic``).
SYNTHESIZED_FAMILIES = "any LLM API family"


# How many roughly-closest candidates get the exact (difflib) score.
_SHORTLIST_FACTOR = 16


# difflib is quadratic at worst and linear in the longer text at best, so
# long texts are compared by their beginning and end only.
_COMPARED_CHARS = 256


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= 2 * chars else text[:chars] + text[-chars:]


def _similarity(a: str, b: str) -> float:
    """0..1, how alike two texts are (difflib's ratio on at most
    ``2 * _COMPARED_CHARS`` characters of each)."""
    a, b = _clip(a, _COMPARED_CHARS), _clip(b, _COMPARED_CHARS)
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _rough_similarity(a: str, b: str) -> float:
    """0..1, cheap at any length: the share of the longer text covered by the
    beginning and end both texts have in common (a typo scores high, another
    text low)."""
    a, b = _clip(a, 4096), _clip(b, 4096)
    longest = max(len(a), len(b))
    if not longest:
        return 1.0
    shortest = min(len(a), len(b))
    head = _common_length(a, b, shortest, from_end=False)
    tail = _common_length(a, b, shortest - head, from_end=True)
    return (head + tail) / longest


def _common_length(a: str, b: str, most: int, *, from_end: bool) -> int:
    """How many characters ``a`` and ``b`` share at their start (or end), up
    to ``most``: a binary search over slice comparisons, which run in C."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        same = a[len(a) - mid :] == b[len(b) - mid :] if from_end else a[:mid] == b[:mid]
        if same:
            low = mid
        else:
            high = mid - 1
    return low


def _closeness(
    differences: list[Difference], similarity: Callable[[str, str], float] = _similarity
) -> tuple[int, float, int]:
    """Sort key, smaller is closer: another family last; then how much
    differs, each differing text counting by how unlike it is (a typo is
    close) and any other value as 1; then the number of differing keys. The
    fingerprint only counts (as 0.5) when nothing else differs, since any
    other difference changes it too. A sequenceIndex that is used up counts
    as almost nothing: the request is what the fixture was written for."""
    other_family = int(any(d.key == "family" for d in differences))
    named = [d for d in differences if d.key != "fingerprint"]
    if not named:
        return other_family, 0.5, 1
    unlike = 0.0
    for d in named:
        if d.key == "sequenceIndex":
            # Every content criterion matched; only the use count is past it.
            unlike += 0.1
        elif isinstance(d.expected, str) and isinstance(d.actual, str):
            unlike += 1.0 - similarity(d.expected, d.actual)
        else:
            unlike += 1.0
    return other_family, unlike, len(named)
