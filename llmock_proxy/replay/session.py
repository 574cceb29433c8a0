"""A replay session: one loaded set of cassettes and fixtures, and its sequence state.

The session turns an incoming request into either a :class:`Hit` (the
:class:`~llmock_proxy.cassette.Response` to serve, recorded or synthesized)
or a :class:`Miss` (with the closest candidates). Which of several identical
recordings comes next, and how often a sequenced fixture has matched, is
counted here, per session: two sessions in one process never share counts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmock_proxy.canonical import CanonicalRequest, Summary, canonical_json
from llmock_proxy.cassette.model import Interaction, Payload, Request, Response
from llmock_proxy.cassette.yamlio import gc_paused
from llmock_proxy.match.matcher import Candidate, Matcher, NearMiss, RequestView
from llmock_proxy.providers.base import (
    MAX_EMBEDDING_DIMENSIONS,
    Provider,
    deterministic_embedding,
    split_url,
)
from llmock_proxy.providers.catalog import GENERIC, identify
from llmock_proxy.replay.answer_templates import AnswerTemplates, Templated
from llmock_proxy.replay.fixture import (
    Fixture,
    FixtureError,
    FixtureOptions,
    fixture_from_interaction,
)
from llmock_proxy.replay.journal import FORWARDED, HIT, MISS, RECORDED, JournalEntry, Origin
from llmock_proxy.replay.sources import load_sources

log = logging.getLogger("llmock_proxy.replay")

# A miss must not look like a provider answer, and SDKs must not retry it:
# openai/anthropic retry 408, 409, 429 and 5xx; 421 is none of those. A
# session may answer misses with another 4xx (suites written against llmock
# and aimock expect 404): see check_miss_status.
DEFAULT_MISS_STATUS = 421
MISS_HEADERS = {"x-llmock-miss": "1", "x-should-retry": "false"}
MISS_CODE = "no_fixture_match"
# Retry-After of a hand-written 429 that names none (aimock's default).
DEFAULT_RETRY_AFTER = 1
UNREADABLE_STATUS = 400
# How many distinct requests resolve_raw remembers before starting over, and
# how many body bytes at most (each entry also holds the parsed request, a
# few times its body's size): a long run of big prompts must not grow memory.
KNOWN_REQUESTS = 4096
KNOWN_BODY_BYTES = 8 * 1024 * 1024
# The journal keeps the latest requests only: a long-running server's memory
# must not grow with its traffic (a test's session sees far fewer).
JOURNAL_LIMIT = 10_000


@dataclass(slots=True)
class Hit:
    """A matched request and the response that answers it."""

    provider: Provider
    view: RequestView
    fixture: Fixture
    # The response; or, for an answer filled in from a template, its wire
    # form is in wire_cache and the response model is made when asked for.
    answer: Response | Templated
    # Rendered from a summary (hand-written fixture, or a recording asked for
    # in another wire form) rather than served as recorded.
    synthesized: bool
    # Which use of its candidate this was (0-based): picks among recordings.
    use: int
    # Where the response's wire form is kept once made (a recording's
    # fixture.wire_cache, or the session's entry for an answer it rendered
    # for a request seen before); None: made for this request only.
    wire_cache: dict[Any, Any] | None = None

    @property
    def response(self) -> Response:
        answer = self.answer
        if isinstance(answer, Templated):
            answer = self.answer = answer.render()
        return answer

    @property
    def status(self) -> int:
        return self.answer.status

    @property
    def wire_form(self) -> str:
        return self.answer.wire_form

    @property
    def item_count(self) -> int | None:
        """How many items a stream answer has (None: a body), without rendering a templated one."""
        return self.answer.item_count

    @property
    def options(self) -> FixtureOptions:
        return self.fixture.options


@dataclass(frozen=True)
class Miss:
    """No fixture matched (or the request could not be read)."""

    provider: Provider
    request: Request
    view: RequestView | None
    near_misses: list[NearMiss] = field(default_factory=list)
    problem: str | None = None  # why the request could not be read at all
    status: int = DEFAULT_MISS_STATUS  # the session's miss status (an unreadable request gets 400)
    # The miss's line in the session's journal (settled there when forwarded).
    entry: JournalEntry | None = field(default=None, compare=False, repr=False)

    @property
    def message(self) -> str:
        where = f"{self.request.method} {split_url(self.request.url)[1]}"
        if self.problem is not None:
            return f"llmock-proxy could not read {where}: {self.problem}"
        text = f"llmock-proxy: no recording or fixture matches {where} ({self.view.describe()})"  # type: ignore[union-attr]
        if self.near_misses:
            text += "; closest: " + " | ".join(n.describe() for n in self.near_misses)
        else:
            text += "; nothing is loaded for it"
        return text

    def response(self) -> Response:
        """The miss in the provider's own error envelope, marked as a miss.

        A JSON envelope also carries the near-miss report as data under
        ``llmock``, next to the provider's own fields, which SDKs ignore.
        """
        if self.problem is not None:
            response = self.provider.error(UNREADABLE_STATUS, self.message)
        else:  # the code where the envelope has one (OpenAI's), as aimock says it
            response = self.provider.error(self.status, self.message, code=MISS_CODE)
        headers = {**response.headers, **MISS_HEADERS}
        body = response.body
        if body is not None and body.kind == "json" and isinstance(body.value, dict):
            report: dict[str, Any] = {"miss": True, "request": self.view.describe() if self.view else None}
            report["nearMisses"] = [n.to_dict() for n in self.near_misses]
            body = dataclasses.replace(body, value={**body.value, "llmock": report})
        return dataclasses.replace(response, headers=headers, body=body)


def check_miss_status(value: object) -> int:
    """A miss status as a user gives it (``--miss-status``, the addon's
    ``llmock_miss_status``): any 4xx, since a miss is the request not fitting.
    Raises ValueError saying what is wrong."""
    try:
        status = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an HTTP status code") from None
    if isinstance(value, bool) or not 400 <= status <= 499:
        raise ValueError(f"{value!r} is not a 4xx status (a miss is the client's request not matching)")
    return status


class ReplaySession:
    """Fixtures loaded once, matched many times; counts kept per session.

    ``miss_status``: the status a miss is answered with (any 4xx, default
    421). ``embedding_fallback``: an embedding request no fixture matches is
    answered with deterministic vectors made from its input text instead of
    a miss (aimock answers so always; here it is asked for)."""

    def __init__(
        self,
        fixtures: Sequence[Fixture] = (),
        *,
        name: str = "replay",
        miss_status: int = DEFAULT_MISS_STATUS,
        embedding_fallback: bool = False,
    ) -> None:
        self.name = name
        self.miss_status = check_miss_status(miss_status)
        self.embedding_fallback = embedding_fallback
        self.matcher = Matcher(fixtures)
        self.counts: dict[str, int] = {}
        # Requests seen before -> what they matched (see resolve_raw).
        self._known: dict[tuple[Any, ...], tuple[Provider, RequestView, Request, Candidate, bool]] = {}
        self._known_bytes = 0
        # (seen request, fixture) -> the answer synthesized for it: rendering
        # is deterministic (ids and times derive from request and answer), so
        # a request seen before is not rendered again. Kept with _known.
        self._rendered: dict[tuple[tuple[Any, ...], int], tuple[Response | Templated, dict[Any, Any]]] = {}
        # Hashes of the requests seen once: a request joins _known when it
        # comes again, so a run of requests that never repeat (a test suite's
        # usual traffic) keeps nothing alive for the collector to walk.
        self._seen_once: set[int] = set()
        # Hand-written answers rendered once and filled in per request.
        self.templates = AnswerTemplates()
        self.hits = 0
        self.misses = 0
        self.journal: deque[JournalEntry] = deque(maxlen=JOURNAL_LIMIT)
        self._used: set[int] = set()  # id() of every fixture that answered (fixtures live as long as the session)
        self._matcher_shared = False  # with forks: copied before this session adds to it

    @classmethod
    def load(
        cls,
        cassettes: Iterable[str | Path] = (),
        fixtures: Iterable[str | Path] = (),
        *,
        name: str = "replay",
        lenient_fixtures: bool = False,
        miss_status: int = DEFAULT_MISS_STATUS,
        embedding_fallback: bool = False,
    ) -> ReplaySession:
        """A session over cassette and llmock fixture files or directories
        (``lenient_fixtures``: see :func:`~llmock_proxy.replay.sources.load_sources`;
        the other settings as for the constructor)."""
        # Loading builds large trees of fresh objects with no cycles to free.
        with gc_paused():
            loaded = load_sources(cassettes, fixtures, lenient_fixtures=lenient_fixtures)
        return cls(loaded, name=name, miss_status=miss_status, embedding_fallback=embedding_fallback)

    def __len__(self) -> int:
        return sum(len(c.fixtures) for c in self.matcher.candidates)

    # -- state -------------------------------------------------------------------

    def reset(self) -> None:
        """Forget sequence state (the next request gets the first recording
        again), the journal and what was used."""
        self.counts.clear()
        self.hits = 0
        self.misses = 0
        self.journal.clear()
        self._used.clear()

    def fork(self, name: str) -> ReplaySession:
        """A new session over the same loaded fixtures, with state of its own
        (counts, journal, use): one per test, on one server."""
        forked = ReplaySession(name=name, miss_status=self.miss_status, embedding_fallback=self.embedding_fallback)
        forked.matcher = self.matcher
        forked._matcher_shared = self._matcher_shared = True
        return forked

    # -- journal and use -----------------------------------------------------------

    def fixtures(self) -> list[Fixture]:
        """Every loaded fixture, in the order the matcher tries candidates."""
        return [fixture for candidate in self.matcher.candidates for fixture in candidate.fixtures]

    def used_origins(self) -> set[Origin]:
        """Where the fixtures that answered at least once came from."""
        return {f.origin for f in self.fixtures() if id(f) in self._used and f.origin is not None}

    def unused(self) -> list[Origin]:
        """Loaded recordings and fixtures this session never answered with."""
        return sorted({f.origin for f in self.fixtures() if id(f) not in self._used and f.origin is not None})

    def journal_misses(self) -> list[JournalEntry]:
        """The journal's misses still standing (not forwarded upstream)."""
        return [entry for entry in self.journal if entry.outcome == MISS]

    def note_forwarded(self, method: str, url: str, headers: dict[str, str], status: int, *, recorded: bool) -> None:
        """A request sent upstream without asking the recordings (record mode): its journal line."""
        provider = identify(method, url, headers)
        self.journal.append(JournalEntry(method, split_url(url)[1], provider.family, None,
                                         RECORDED if recorded else FORWARDED, status))

    def settle(self, miss: Miss, status: int, *, recorded: bool) -> None:
        """A miss was forwarded upstream (and ``recorded`` or not): its journal line says so."""
        if miss.entry is not None:
            miss.entry.outcome = RECORDED if recorded else FORWARDED
            miss.entry.status = status

    def settle_replayed(self, miss: Miss, status: int, source: str) -> None:
        """A miss was answered from a recording made meanwhile (auto mode: an
        identical request was being recorded when it came): a hit after all,
        and its journal line says where the answer came from."""
        self.misses -= 1
        self.hits += 1
        if miss.entry is not None:
            miss.entry.outcome = HIT
            miss.entry.status = status
            miss.entry.source = source
            miss.entry.message = None
            miss.entry.near_misses = ()

    def withdraw(self, miss: Miss) -> None:
        """Take back a miss that is about to be asked again (auto mode: it
        waited for an identical request's recording): it is not counted, and
        its journal line goes."""
        self.misses -= 1
        if miss.entry is not None:
            try:
                self.journal.remove(miss.entry)
            except ValueError:  # pushed out of the journal meanwhile
                pass

    def add(self, fixture: Fixture) -> None:
        if self._matcher_shared:  # what this session records is its own, not its forks'
            self.matcher = Matcher(self.fixtures())
            self._matcher_shared = False
        self.matcher.add(fixture)
        self._forget_known()  # a new candidate can change what matches first

    def add_interaction(self, interaction: Interaction, source: str) -> Fixture:
        """Make a freshly recorded interaction (``auto`` mode) answerable."""
        fixture = fixture_from_interaction(interaction, source)
        self.add(fixture)
        return fixture

    def _forget_known(self) -> None:
        self._known.clear()
        self._known_bytes = 0
        self._rendered.clear()
        self._seen_once.clear()
        self.templates.clear()

    # -- lookup ------------------------------------------------------------------

    def resolve(self, request: Request) -> Hit | Miss:
        """The answer to ``request``, counting it in this session's sequence state."""
        return self._resolve(request, None)

    def resolve_raw(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Hit | Miss:
        """:meth:`resolve` for a request as it came off the wire (lower-case
        header names). Hot path: while no fixture uses ``sequenceIndex`` the
        choice of candidate depends on the request alone, so a request seen
        before skips parsing, canonical translation and matching (the
        candidate's recorded order is still counted per use)."""
        content_type = headers.get("content-type")
        key = None
        if not self.matcher.has_sequence_indices and "upgrade" not in headers:
            key = (method, url, content_type, body, request_context(headers) if self.matcher.has_context else None)
            known = self._known.get(key)
            if known is not None:
                return self._use(*known, key=key)
            seen = hash(key)
            if seen not in self._seen_once:
                if len(self._seen_once) >= KNOWN_REQUESTS:
                    self._seen_once.clear()
                self._seen_once.add(seen)
                key = None
        payload = Payload.from_bytes(body, content_type) if body else None
        return self._resolve(Request(method, url, headers, payload), key)

    def _resolve(self, request: Request, key: tuple[Any, ...] | None) -> Hit | Miss:
        provider = identify(request.method, request.url, request.headers)
        body = request.body
        if body is not None and provider.family != GENERIC.family and not (
            body.kind == "json" and isinstance(body.value, dict)
        ):
            # Every LLM API takes a JSON object; anything else would be read
            # as an empty conversation and reported as a mere miss.
            return self._miss(provider, request, None, problem=f"the body is not a JSON object: {_glimpse(body)}")
        try:
            canonical = provider.canonical(request)
        except Exception as exc:  # a body the provider cannot read
            return self._miss(provider, request, None, problem=f"{type(exc).__name__}: {exc}")
        view = RequestView(canonical, request.method, split_url(request.url)[1], request_context(request.headers))
        # The generic family has no wire format to render a hand-written answer in.
        can_synthesize = provider.family != GENERIC.family
        found = self.matcher.find(view, self.counts, can_synthesize=can_synthesize)
        if found is None:
            if self.embedding_fallback:
                made_up = self._made_up_embedding(provider, view, request)
                if made_up is not None:
                    return made_up
            near = self.matcher.near_misses(
                view, self.counts, can_synthesize=can_synthesize, recorded_request=recorded_request
            )
            return self._miss(provider, request, view, near)
        known = (provider, view, request, found.candidate, found.other_form)
        size = len(key[3]) if key is not None else 0
        if key is not None and size <= KNOWN_BODY_BYTES // 16:  # one huge body is not worth keeping
            if len(self._known) >= KNOWN_REQUESTS or self._known_bytes + size > KNOWN_BODY_BYTES:
                self._forget_known()
            self._known[key] = known
            self._known_bytes += size
            return self._use(*known, key=key)
        return self._use(*known)

    def _use(
        self,
        provider: Provider,
        view: RequestView,
        request: Request,
        candidate: Candidate,
        other_form: bool,
        key: tuple[Any, ...] | None = None,
    ) -> Hit:
        """Count the use and answer; ``key``: the request is one of ``_known``,
        and its synthesized answer is rendered once."""
        use = self.counts.get(candidate.key, 0)
        self.counts[candidate.key] = use + 1
        self.hits += 1
        fixture = candidate.pick(use)
        rendered = self._rendered.get((key, id(fixture))) if key is not None else None  # fixtures live as long as the session
        if rendered is not None:
            hit = Hit(provider, view, fixture, rendered[0], True, use, rendered[1])
        else:
            hit = self._answer(provider, view, request, fixture, other_form, use)
            if key is not None and hit.synthesized:
                if hit.wire_cache is None:  # (a templated answer's is made already)
                    hit.wire_cache = {}
                self._rendered[(key, id(fixture))] = (hit.answer, hit.wire_cache)
        self._note_hit(hit, request)
        return hit

    def _note_hit(self, hit: Hit, request: Request) -> None:
        fixture = hit.fixture
        self._used.add(id(fixture))
        self.journal.append(JournalEntry(
            request.method, hit.view.path, hit.view.family, hit.view.model, HIT,  # the view has the URL's path
            hit.status, fixture.origin, fixture.source,
        ))

    def _miss(self, provider: Provider, request: Request, view: RequestView | None,
              near: list[NearMiss] | None = None, problem: str | None = None) -> Miss:
        """A miss, counted and written in the journal."""
        self.misses += 1
        miss = Miss(provider, request, view, near or [], problem=problem, status=self.miss_status)
        status = UNREADABLE_STATUS if problem is not None else self.miss_status
        entry = JournalEntry(
            request.method, split_url(request.url)[1], view.family if view else provider.family,
            view.model if view else None, MISS, status, message=miss.message,
            near_misses=tuple(n.to_dict() for n in miss.near_misses),
        )
        self.journal.append(entry)
        return dataclasses.replace(miss, entry=entry)

    def _answer(
        self, provider: Provider, view: RequestView, request: Request, fixture: Fixture, other_form: bool, use: int
    ) -> Hit:
        interaction = fixture.interaction
        if interaction is not None and interaction.response is not None:
            verbatim = (
                fixture.family == view.family
                and fixture.recorded_stream == view.stream
                and not other_form
            )
            if verbatim or fixture.summary is None:
                return Hit(provider, view, fixture, interaction.response, False, use, fixture.wire_cache)
        if fixture.error is not None:
            return Hit(provider, view, fixture, error_answer(provider, fixture.error), True, use)
        if fixture.raw is not None:
            raw = Response(fixture.raw.status, {"content-type": "application/json"}, Payload.json(fixture.raw.body))
            return Hit(provider, view, fixture, raw, True, use)
        summary = _fit_embeddings(fixture.summary or Summary(), view.canonical)
        estimated = None
        if not fixture.recorded and summary.usage is None and not summary.embeddings:
            estimated = estimated_usage(view.canonical, summary)
            summary = summary.with_usage(estimated)
        options = provider.render_options(request, fixture.render_options)
        if not summary.embeddings:  # an embedding answer has a vector per input: rendered each time
            templated = self.templates.answer(
                provider, id(fixture), summary, view.canonical, view.stream, options,
                lambda: view.content_fingerprint, tuple(estimated.items()) if estimated is not None else None,
                together=fixture.options.empty,
            )
            if templated is not None:
                return Hit(provider, view, fixture, templated, True, use, templated.wire_cache)
        options = options.with_content_fingerprint(view.content_fingerprint)
        response = provider.render(summary, view.canonical, stream=view.stream, options=options)
        return Hit(provider, view, fixture, response, True, use)

    def _made_up_embedding(self, provider: Provider, view: RequestView, request: Request) -> Hit | None:
        """The embedding fallback: vectors made from each input's text, in the
        family's own answer; None when the request is not for embeddings."""
        canonical = view.canonical
        dimensions = provider.embedding_dimensions(canonical)
        if dimensions is None or canonical.embedding_input is None:
            return None
        self.hits += 1
        fixture = Fixture(match={}, source=EMBEDDING_FALLBACK_SOURCE, recorded=False)
        if not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
            message = f"dimensions must be a whole number from 1 to {MAX_EMBEDDING_DIMENSIONS}"
            hit = Hit(provider, view, fixture, provider.error(400, message), True, 0)
        else:
            log.info("no fixture matches %s (%s): answered with made-up embeddings",
                     split_url(request.url)[1], view.describe())
            inputs = canonical.embedding_input
            summary = Summary(embeddings=[deterministic_embedding(text, dimensions) for text in inputs])
            response = provider.render(summary, canonical, stream=False, options=provider.render_options(request))
            hit = Hit(provider, view, fixture, response, True, 0)
        self._note_hit(hit, request)
        return hit


def recorded_request(fixture: Fixture) -> CanonicalRequest | None:
    """A recording's request as the matcher sees it (None: not a recording,
    or unreadable): a miss report says which part of the conversation
    differed from it. Read again on a miss only, for the few closest."""
    interaction = fixture.interaction
    if interaction is None:
        return None
    request = interaction.request
    try:
        return identify(request.method, request.url, request.headers).canonical(request)
    except Exception:  # loading read it; a report does without
        return None


# Where an embedding fallback answer came from, as a fixture's source says it.
EMBEDDING_FALLBACK_SOURCE = "embedding fallback (no fixture matched)"


def error_answer(provider: Provider, error: FixtureError) -> Response:
    """A hand-written error in the provider's envelope, with its code where the
    envelope has one, and Retry-After on a 429 (or wherever the fixture gives one)."""
    typed = {"type": error.type} if error.type else {}  # else the envelope's own type for the status
    response = provider.error(error.status, error.message, code=error.code, **typed)
    retry_after = error.retry_after
    if retry_after is None and error.status == 429:
        retry_after = DEFAULT_RETRY_AFTER
    if retry_after is None:
        return response
    seconds = int(retry_after) if float(retry_after).is_integer() else retry_after
    return dataclasses.replace(response, headers={**response.headers, "retry-after": str(seconds)})


# The header a fixture's ``match.context`` is compared with (aimock's name too).
CONTEXT_HEADERS = ("x-llmock-context", "x-aimock-context")


def request_context(headers: dict[str, str]) -> str | None:
    """The request's context tag (lower-case header names), for ``match.context``."""
    for name in CONTEXT_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _glimpse(body: Payload) -> str:
    """The start of a body, for an error message."""
    text = repr(body.value) if body.kind != "base64" else f"{len(body.to_bytes())} bytes of binary data"
    return text if len(text) <= 80 else text[:79] + "…"


def estimated_usage(canonical: CanonicalRequest, summary: Summary) -> dict[str, int]:
    """Token counts for a hand-written answer that states none: about four
    characters a token, at least one, as aimock estimates them, so a suite
    checking that usage is reported sees what the real APIs always send."""
    messages = canonical.messages
    # The length of the system prompt and the messages' texts joined by newlines, without joining them.
    prompt = len(canonical.system or "") + len(messages) + sum([len(m.text) for m in messages])
    completion = len(summary.text) + sum([len(canonical_json(c.arguments)) for c in summary.tool_calls])
    return {"prompt_tokens": _estimated_tokens(prompt), "completion_tokens": _estimated_tokens(completion)}


def _estimated_tokens(characters: int) -> int:
    return max(1, -(-characters // 4))


def _fit_embeddings(summary: Summary, canonical: CanonicalRequest) -> Summary:
    """A fixture's one embedding answers every input of a batch request."""
    inputs = canonical.embedding_input or []
    if summary.embeddings and len(summary.embeddings) == 1 and len(inputs) > 1:
        return dataclasses.replace(summary, embeddings=summary.embeddings * len(inputs))
    return summary
