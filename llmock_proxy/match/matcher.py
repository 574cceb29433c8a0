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
systemMessage * the system prompt: substring, a list of substrings (all present),
               or ``/regex/flags``
toolCallId *   the request ends on a tool result for this call id
toolResultContains * the request ends on a tool result whose text holds this
toolName *     one of the tools offered has this name
toolNames      the tools offered, exactly (recordings)
responseFormat * the response format type (``json_object``, ``json_schema`` ...)
hasToolResult * the current turn (after the last user message) holds a tool result
endpoint *     the kind of API: ``chat``, ``embedding``, ``realtime`` (others are
               aimock's image/audio/video APIs, which are not replayed)
context *      the request's ``x-llmock-context`` (or ``x-aimock-context``) header
sequenceIndex * only the n-th (0-based) time these criteria match
turnIndex *    prefer this fixture when the conversation has this many assistant
               turns (a tie-breaker among matching fixtures, as in aimock)
============== ===================================================================

A fixture's ``model`` also matches a dated version of the model
(``gpt-4o`` matches ``gpt-4o-2024-08-06``), as in aimock; a recording's model
is matched exactly.

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

    def __init__(
        self, canonical: CanonicalRequest, method: str = "POST", path: str = "/", context: str | None = None
    ) -> None:
        self.canonical = canonical
        self.method = method.upper()
        self.path = path
        self.context = context

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
        # Both digests in one pass: a hand-written answer is rendered with ids
        # derived from the content one.
        fingerprint, self.content_fingerprint = self.canonical.fingerprints()
        return fingerprint

    @cached_property
    def content_fingerprint(self) -> str:
        return self.canonical.content_fingerprint

    @cached_property
    def outline(self) -> tuple[Any, ...]:
        return self.canonical.outline

    @cached_property
    def user_message(self) -> str | None:
        return self.canonical.last_user_message

    @cached_property
    def input_text(self) -> str | None:
        inputs = self.canonical.embedding_input
        return "\n".join(inputs) if inputs else None

    @cached_property
    def tool_call_id(self) -> str | None:
        """The call id of the tool result the request ends on (llmock: the last
        message is a ``tool`` message with this ``tool_call_id``)."""
        result = self.canonical.last_tool_result
        return result.tool_call_id if result is not None else None

    @cached_property
    def tool_result_text(self) -> str | None:
        """The text of the tool result the request ends on."""
        result = self.canonical.last_tool_result
        return None if result is None else _result_text(result.content)

    @cached_property
    def system_text(self) -> str | None:
        return self.canonical.system or None

    @cached_property
    def current_turn_has_tool_result(self) -> bool:
        """aimock's ``hasToolResult``: a tool result after the last user message
        (the whole conversation when there is no user message)."""
        messages = self.canonical.messages
        start = 0
        for index in range(len(messages) - 1, -1, -1):
            if messages[index].role == "user":
                start = index + 1
                break
        return any(m.tool_results for m in messages[start:])

    @cached_property
    def assistant_turns(self) -> int:
        return sum(1 for m in self.canonical.messages if m.role == "assistant")

    @property
    def endpoint(self) -> str:
        return ENDPOINT_OF_FAMILY.get(self.family, CHAT_ENDPOINT)

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


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if texts:
            return "".join(texts)  # type: ignore[arg-type]
    return "" if content is None else canonical_json(content)


# aimock's ``endpoint`` values for the families we replay; aimock's other
# endpoints (images, speech, transcription, video, ...) are not replayed.
ENDPOINT_OF_FAMILY: dict[str, str] = {
    "openai.embeddings": "embedding",
    "gemini.embed": "embedding",
    "ollama.embed": "embedding",
    "openai.realtime": "realtime",
    "generic": "other",
}
CHAT_ENDPOINT = "chat"  # every other family
AIMOCK_ENDPOINTS = (
    "chat", "image", "speech", "transcription", "translation", "video", "embedding", "audio-gen",
    "elevenlabs-tts", "elevenlabs-voice-design", "elevenlabs-voice", "elevenlabs-voice-get",
    "elevenlabs-voice-delete", "fal-audio", "fal", "realtime", "realtime-transcription",
    "realtime-translation", "openai-live",
)
REPLAYED_ENDPOINTS = ("chat", "embedding", "realtime")


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


# Keys that only say something about sequence state or preference, not about
# the request: the candidate handles them.
_STATE_KEYS = ("sequenceIndex", "turnIndex")
FIXTURE_MATCH_KEYS = (
    "userMessage", "systemMessage", "inputText", "toolCallId", "toolResultContains", "toolName", "model",
    "responseFormat", "sequenceIndex", "turnIndex", "hasToolResult", "endpoint", "context",
)
RECORDED_MATCH_KEYS = ("family", "stream", "fingerprint", "method", "path", "toolNames")
MATCH_KEYS = tuple(sorted({*FIXTURE_MATCH_KEYS, *RECORDED_MATCH_KEYS}))


def match_problems(match: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """What is wrong with a ``match`` section: (key, message) pairs, each
    message naming ``where`` and the key; an unknown key gets a did-you-mean.
    Empty when every key is known and well formed."""
    problems: list[tuple[str, str]] = []
    for key, value in match.items():
        try:
            if key not in MATCH_KEYS:
                raise MatchSpecError(f"{where}.{key}: unknown match key{_did_you_mean(key, MATCH_KEYS)}")
            _criterion(key, value, recorded=False, where=where)
        except MatchSpecError as exc:
            problems.append((key, str(exc)))
    return problems


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.lower() == key.lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known: {', '.join(known)})"


def _compile(match: Mapping[str, Any], *, recorded: bool, where: str) -> list[Criterion]:
    out: list[Criterion] = []
    for key, value in match.items():
        if key not in MATCH_KEYS:
            # An unknown key is a typo that would silently loosen the match.
            raise MatchSpecError(f"{where}.{key}: unknown match key{_did_you_mean(key, MATCH_KEYS)}")
        criterion = _criterion(key, value, recorded=recorded, where=where)
        if criterion is not None:
            out.append(criterion)
    # Cheap, selective tests first: a miss is decided as early as possible.
    out.sort(key=lambda c: _ORDER.get(c.key, 50))
    return out


def _criterion(key: str, value: Any, *, recorded: bool, where: str) -> Criterion | None:
    """The test for one ``match`` key (None for the state keys); raises
    :class:`MatchSpecError` naming ``where.key`` for a malformed value."""
    if key in _STATE_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MatchSpecError(f"{where}.{key}: expected an integer >= 0, got {value!r}")
        return None
    if key in ("userMessage", "inputText"):
        getter = _get_user_message if key == "userMessage" else _get_input_text
        return _text_criterion(key, value, getter, substring=not recorded, where=where)
    if key == "systemMessage":
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise MatchSpecError(f"{where}.{key}: expected a string or a list of strings")
            needles = list(value)
            return Criterion(key, value, lambda view: _holds_all(view.system_text, needles), _get_system)
        return _text_criterion(key, value, _get_system, substring=not recorded, where=where)
    if key == "toolResultContains":
        if not isinstance(value, str):
            raise MatchSpecError(f"{where}.{key}: expected a string, got {type(value).__name__}")
        return Criterion(key, value, lambda view: _holds_all(view.tool_result_text, [value]), _get_tool_result)
    if key == "hasToolResult":
        if not isinstance(value, bool):
            raise MatchSpecError(f"{where}.{key}: expected true or false, got {value!r}")
        return _equal_criterion(key, value, _get_has_tool_result)
    if key == "endpoint":
        if value not in AIMOCK_ENDPOINTS:
            raise MatchSpecError(f"{where}.{key}: expected one of {', '.join(AIMOCK_ENDPOINTS)}, got {value!r}")
        return _equal_criterion(key, value, _get_endpoint)
    if key == "context":
        if not isinstance(value, str):
            raise MatchSpecError(f"{where}.{key}: expected a string, got {type(value).__name__}")
        return _equal_criterion(key, value, _get_context)
    if key == "model":
        if not isinstance(value, str):
            raise MatchSpecError(f"{where}.{key}: expected a string, got {type(value).__name__}")
        if parse_pattern(value, f"{where}.model") is not None:
            return _text_criterion(key, value, _get_model, substring=False, where=where)
        if recorded:
            return _equal_criterion(key, value, _get_model)
        return Criterion(key, value, _model_or_dated(value), _get_model)
    if key == "toolName":
        if not isinstance(value, str):
            raise MatchSpecError(f"{where}.{key}: expected a string, got {type(value).__name__}")
        return Criterion(key, value, _has_tool(value), _get_tool_names)
    if key in ("toolCallId", "responseFormat", "method", "path", "fingerprint", "family"):
        if not isinstance(value, str):
            raise MatchSpecError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    elif key == "stream" and not isinstance(value, bool):
        raise MatchSpecError(f"{where}.{key}: expected true or false, got {value!r}")
    elif key == "toolNames" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise MatchSpecError(f"{where}.{key}: expected a list of strings")
    return _equal_criterion(key, value, _EQUALITY_GETTERS[key])


def _answer_kind(embedding: bool) -> Criterion:
    if embedding:
        return Criterion("endpoint", "embedding", lambda view: view.endpoint == "embedding", _get_endpoint)
    return Criterion("endpoint", CHAT_ENDPOINT, lambda view: view.endpoint != "embedding", _get_endpoint)


def _holds_all(text: str | None, needles: list[str]) -> bool:
    return bool(text) and all(n in text for n in needles)  # type: ignore[operator]


_DATED_SUFFIX = re.compile(r"-\d")


def _model_or_dated(expected: str) -> Callable[[RequestView], bool]:
    """aimock's model rule: the name itself, or a version of it (``gpt-4o``
    matches ``gpt-4o-2024-08-06``; ``gpt-4`` does not match ``gpt-4o``)."""

    def test(view: RequestView) -> bool:
        model = view.model
        if model == expected:
            return True
        return model is not None and model.startswith(expected) and bool(_DATED_SUFFIX.match(model, len(expected)))

    return test


def _get_system(view: RequestView) -> str | None:
    return view.system_text


def _get_tool_result(view: RequestView) -> str | None:
    return view.tool_result_text


def _get_has_tool_result(view: RequestView) -> bool:
    return view.current_turn_has_tool_result


def _get_endpoint(view: RequestView) -> str:
    return view.endpoint


def _get_context(view: RequestView) -> str | None:
    return view.context


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
    turn_index: int | None = None
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


# What a miss report calls the part of the request a ``match`` key looks at:
# the one-line summary a person reads before any detail.
ASPECT_OF_KEY: dict[str, str] = {
    "family": "API family",
    "endpoint": "kind of API",
    "model": "model",
    "userMessage": "last user message",
    "inputText": "input text",
    "systemMessage": "system prompt",
    "toolName": "tools",
    "toolNames": "tools",
    "toolCallId": "tool result",
    "toolResultContains": "tool result",
    "hasToolResult": "tool result",
    "responseFormat": "response format",
    "stream": "stream",
    "context": "context header",
    "method": "method",
    "path": "path",
    "fingerprint": "conversation",
}
# The order aspects are named in: what a person changes most often first.
ASPECT_ORDER = (
    "API family", "kind of API", "model", "last user message", "system prompt", "tools", "tool result",
    "assistant turns", "earlier messages", "input text", "response format", "parameters", "stream",
    "context header", "method", "path", "conversation",
)


def _ordered(aspects: Iterable[str]) -> tuple[str, ...]:
    unique = set(aspects)
    return tuple(a for a in ASPECT_ORDER if a in unique)


@dataclass(frozen=True)
class NearMiss:
    """A candidate that almost matched, and what differed.

    ``aspects`` name the parts of the request that differed (``model``,
    ``last user message``, ``tools`` ...), said first; ``differences`` are
    the details, key by key. ``note`` replaces both when the only thing in
    the way is sequence state (a ``sequenceIndex`` used up)."""

    source: str
    match: dict[str, Any]
    differences: tuple[Difference, ...]
    aspects: tuple[str, ...] = ()
    note: str | None = None

    @property
    def summary(self) -> str:
        """One line: what differed, without the details."""
        if self.note is not None:
            return self.note
        return "differs in: " + ", ".join(self.aspects or ("conversation",))

    def details(self) -> list[str]:
        """The differing keys with what was expected and what came (a
        fingerprint only when nothing more telling differs)."""
        if self.note is not None:
            return []
        shown = [d for d in self.differences if d.key not in ("fingerprint", "sequenceIndex")]
        if not shown:
            shown = [d for d in self.differences if d.key == "fingerprint"]
        return [d.describe() for d in shown]

    def describe(self) -> str:
        if self.note is not None:
            return f"{self.source}: {self.note}"
        details = self.details()
        text = f"{self.source} {self.summary}"
        return f"{text} — " + "; ".join(details) if details else text

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "source": self.source,
            "summary": self.summary,
            "differsIn": list(self.aspects),
            "details": self.details(),
            "differences": [
                {"key": d.key, "expected": _bounded(d.expected), "actual": _bounded(d.actual), "text": d.describe()}
                for d in self.differences
            ],
        }
        if self.note is not None:
            data["note"] = self.note
        return data


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
        # The outlines of the recordings indexed by fingerprint; a request
        # with none of them is not fingerprinted (taking it is most of the
        # cost of matching a request never seen), unless some indexed
        # fingerprint has no outline (written by hand), which forces it.
        self._outlines: set[tuple[Any, ...]] = set()
        self._fingerprint_always = False
        # Whether any candidate's answer depends on how often it matched.
        self.has_sequence_indices = False
        # Whether matching needs more than the request body: a turnIndex
        # weighs matching fixtures against each other, a context reads a header.
        self.has_turn_indices = False
        self.has_context = False
        # The sequenceIndex values of each sequence (by candidate key): what
        # a miss report says of a sequence used up.
        self._sequences: dict[str, list[int]] = {}
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
        if fixture.summary is not None and not fixture.recorded and "endpoint" not in fixture.match:
            # A hand-written answer is an embedding or a reply, and only
            # answers requests of its kind (aimock's handlers do the same).
            criteria.append(_answer_kind(bool(fixture.summary.embeddings)))
        sequence_index = fixture.match.get("sequenceIndex")
        turn_index = fixture.match.get("turnIndex")
        if fixture.recorded:
            key = group_key
        elif sequence_index is not None:
            rest = {k: v for k, v in fixture.match.items() if k not in _STATE_KEYS}
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
            turn_index=turn_index,
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            content_fingerprint=fixture.content_fingerprint,
            form_criteria=[c for c in criteria if c.key not in _FORM_KEYS],
            needs_synthesis=not fixture.recorded and fixture.error is None,
        )
        self.candidates.append(candidate)
        self.has_sequence_indices |= sequence_index is not None
        if sequence_index is not None:
            self._sequences.setdefault(key, []).append(sequence_index)
        self.has_turn_indices |= turn_index is not None
        self.has_context |= "context" in fixture.match
        index = candidate.order
        if candidate.fingerprint is not None:
            if fixture.outline is None:
                self._fingerprint_always = True
            else:
                self._outlines.add(fixture.outline)
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
        admitted: list[Candidate] = []
        fingerprinted = bool(self._by_fingerprint) and (self._fingerprint_always or view.outline in self._outlines)
        for index in self._in_order(self._by_fingerprint.get(view.fingerprint, []) if fingerprinted else []):
            candidate = self.candidates[index]
            if not can_synthesize and candidate.needs_synthesis:
                continue
            if candidate.admits(view, counts):
                if not self.has_turn_indices or candidate.fixtures[0].recorded:
                    return Found(candidate, candidate.pick(counts.get(candidate.key, 0)))
                admitted.append(candidate)
        if admitted:
            chosen = _by_turn_index(admitted, view.assistant_turns)
            return Found(chosen, chosen.pick(counts.get(chosen.key, 0)))
        for index in self._by_content.get(view.content_fingerprint, ()) if fingerprinted else ():
            candidate = self.candidates[index]
            if candidate.admits_other_form(view, counts):
                return Found(candidate, candidate.pick(counts.get(candidate.key, 0)), other_form=True)
        return None

    def near_misses(
        self,
        view: RequestView,
        counts: Mapping[str, int],
        limit: int = 3,
        *,
        can_synthesize: bool = True,
        recorded_request: Callable[[Fixture], CanonicalRequest | None] | None = None,
    ) -> list[NearMiss]:
        """The ``limit`` candidates closest to the request, each with what
        differed. Only called on a miss.

        Closest means (see :func:`_closeness`): the request's API family;
        then a conversation like the request's (a typo in the question);
        then candidates that name the request's family and model (the
        recordings of the same API and model before hand-written fixtures
        that would answer anything with some other question); then how much
        differs. ``recorded_request`` gives a recording's request, so the
        summary can say what part of the conversation differed when the
        match's readable keys all hold (a system prompt, an earlier turn).

        Every candidate is scored roughly (texts compared by their common
        beginning and end, which is cheap at any length); only a short list
        of the best is scored with difflib. So a miss against 10k recordings
        or with a megabyte prompt stays a matter of milliseconds on the
        proxy's event loop."""
        rough: list[tuple[tuple[Any, ...], int, Candidate, list[Difference]]] = []
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
            key = _closeness(differences, _rough_similarity, candidate.match)
            rough.append((key, candidate.order, candidate, differences))
        shortlist = heapq.nsmallest(limit * _SHORTLIST_FACTOR, rough, key=lambda item: (item[0], item[1]))
        scored = sorted(
            ((_closeness(differences, _similarity, candidate.match), order, candidate, differences)
             for _, order, candidate, differences in shortlist),
            key=lambda item: (item[0], item[1]),
        )
        out: list[NearMiss] = []
        reported: set[str] = set()
        for _, _, candidate, differences in scored:
            if candidate.sequence_index is not None:
                if candidate.key in reported:
                    continue  # one line per sequence
                reported.add(candidate.key)
            out.append(self._near_miss(candidate, differences, view, counts, recorded_request))
            if len(out) == limit:
                break
        return out

    def _near_miss(
        self,
        candidate: Candidate,
        differences: list[Difference],
        view: RequestView,
        counts: Mapping[str, int],
        recorded_request: Callable[[Fixture], CanonicalRequest | None] | None,
    ) -> NearMiss:
        fixture = candidate.fixtures[0]
        source = fixture.source
        if all(d.key == "sequenceIndex" for d in differences):
            note = self._sequence_note(candidate, counts.get(candidate.key, 0))
            return NearMiss(source, candidate.match, tuple(differences), ("sequence",), note)
        # The sequence is not what is in the way while anything else differs.
        shown = [d for d in differences if d.key != "sequenceIndex"]
        aspects = [ASPECT_OF_KEY.get(d.key, d.key) for d in shown]
        if recorded_request is not None and fixture.recorded and any(d.key == "fingerprint" for d in shown):
            recorded = recorded_request(fixture)
            found = conversation_aspects(recorded, view.canonical) if recorded is not None else []
            if found:
                aspects = [a for a in aspects if a != "conversation"] + found
        return NearMiss(source, candidate.match, tuple(shown), _ordered(aspects))

    def _sequence_note(self, candidate: Candidate, used: int) -> str:
        """What a sequence says when a request comes once too often (or
        between its entries): ``sequence exhausted: 2 fixtures, this is use 3``."""
        indices = sorted(set(self._sequences.get(candidate.key, [candidate.sequence_index or 0])))
        kind = "recording" if candidate.fixtures[0].recorded else "fixture"
        if used > indices[-1]:
            count = len(indices)
            return f"sequence exhausted: {count} {kind}{'s' if count != 1 else ''}, this is use {used + 1}"
        given = ", ".join(str(i) for i in indices)
        return f"no {kind} of this sequence for use {used + 1} (sequenceIndex {given} given)"


def conversation_aspects(recorded: CanonicalRequest, actual: CanonicalRequest) -> list[str]:
    """The parts of two requests that differ, as a miss report names them
    (``model``, ``system prompt``, ``tools``, ``tool result``, ``last user
    message``, ``earlier messages`` ...): what made a recording's
    fingerprint differ. Compares the fields the fingerprint digests."""
    out: list[str] = []
    if recorded.family != actual.family:
        out.append("API family")
    if recorded.model != actual.model:
        out.append("model")
    if (recorded.system or None) != (actual.system or None):
        out.append("system prompt")
    if [(t.name, t.description, t.parameters) for t in recorded.tools] != [
        (t.name, t.description, t.parameters) for t in actual.tools
    ]:
        out.append("tools")
    if recorded.response_format != actual.response_format:
        out.append("response format")
    if recorded.embedding_input != actual.embedding_input:
        out.append("input text")
    if recorded.extra != actual.extra:
        out.append("parameters")
    if recorded.stream != actual.stream:
        out.append("stream")
    if recorded.last_user_message != actual.last_user_message:
        out.append("last user message")
    was, now = _split_turn(recorded), _split_turn(actual)
    if was[0] != now[0]:
        out.append("earlier messages")
    if was[1] != now[1]:
        out.append("tool result")
    if was[2] != now[2]:
        out.append("assistant turns")
    return out


def _split_turn(request: CanonicalRequest) -> tuple[list[Any], list[Any], list[Any]]:
    """(messages before the last user message, the tool results after it,
    the other messages after it), each as the fingerprint sees them."""
    messages = request.messages
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), -1)
    earlier = [_identity(m) for m in messages[: max(last_user, 0)]]
    results = [[r.content, r.is_error] for m in messages[last_user + 1 :] for r in m.tool_results]
    others = [(m.role, m.text, [[c.name, c.arguments] for c in m.tool_calls])
              for m in messages[last_user + 1 :] if not m.tool_results]
    return earlier, results, others


def _identity(message: Any) -> tuple[Any, ...]:
    return (
        message.role, message.text, [[c.name, c.arguments] for c in message.tool_calls],
        [[r.content, r.is_error] for r in message.tool_results],
    )


def _by_turn_index(admitted: list[Candidate], turns: int) -> Candidate:
    """aimock's choice among fixtures that all match, ``turns`` being the
    conversation's assistant turns: the fixture scripted for the latest turn
    not after this one; at exactly this turn an earlier fixture without a
    turnIndex still wins (file order); when every scripted turn lies ahead, a
    fixture without one, else the earliest scripted turn. Ties go to file order."""
    fallback = next((c for c in admitted if c.turn_index is None), None)
    best: Candidate | None = None
    for candidate in admitted:
        t = candidate.turn_index
        if t is not None and t <= turns and (best is None or t > best.turn_index):  # type: ignore[operator]
            best = candidate
    if best is not None:
        if best.turn_index == turns and fallback is not None and fallback.order < best.order:
            return fallback
        return best
    if fallback is not None:
        return fallback
    return min(admitted, key=lambda c: (c.turn_index, c.order))


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
    differences: list[Difference],
    similarity: Callable[[str, str], float] = _similarity,
    match: Mapping[str, Any] | None = None,
) -> tuple[int, int, int, float, int]:
    """Sort key, smaller is closer:

    1. another API family (or kind of API) last;
    2. then whether the conversation is like the request's: every differing
       text is at least :data:`_CLOSE_TEXT` alike (a typo, a word changed),
       or none differs (only the model, the tools, the stream flag ...);
    3. then how many of family and model the candidate names and the
       request has (a recording of the same API and model before a
       hand-written fixture for some other question);
    4. then how much differs, each differing text counting by how unlike it
       is and any other value as 1 (the fingerprint only counts, as 0.5,
       when nothing else differs, since any other difference changes it
       too; a used-up sequenceIndex as almost nothing: the request is what
       the fixture was written for);
    5. then the number of differing keys."""
    keys = {d.key for d in differences}
    other_family = int(bool(keys & _FAMILY_KEYS))
    affinity = 0
    if match is not None:
        affinity = sum(1 for k in ("family", "model") if k in match and k not in keys)
    named = [d for d in differences if d.key != "fingerprint"]
    if not named:
        return other_family, 0, -affinity, 0.5, 1
    unlike = 0.0
    far = 0
    for d in named:
        if d.key == "sequenceIndex":
            # Every content criterion matched; only the use count is past it.
            unlike += 0.1
        elif isinstance(d.expected, str) and isinstance(d.actual, str):
            distance = 1.0 - similarity(d.expected, d.actual)
            unlike += distance
            if d.key in _CONVERSATION_KEYS and distance > 1.0 - _CLOSE_TEXT:
                far = 1
        else:
            unlike += 1.0
            if d.key in _CONVERSATION_KEYS:
                far = 1  # the request has no such text at all
    return other_family, far, -affinity, unlike, len(named)


# Keys that say the candidate is for another API, not another question.
_FAMILY_KEYS = frozenset({"family", "endpoint"})
# Keys whose text is the conversation, and how alike two such texts must be
# (difflib's ratio) to count as the same question, typo'd or reworded.
_CONVERSATION_KEYS = frozenset(
    {"userMessage", "inputText", "systemMessage", "toolResultContains", "toolCallId", "hasToolResult"}
)
_CLOSE_TEXT = 0.6
