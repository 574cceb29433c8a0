"""Recorded interactions and llmock fixture files, as one :class:`Fixture` type.

A replay session answers from two kinds of source:

* **cassettes** (YAML, :mod:`llmock_proxy.cassette`): every interaction is a
  fixture whose ``match`` section was derived at record time and is strict
  by default; its response is served verbatim when the client asks for the
  recorded wire form and re-rendered from its summary otherwise.
* **llmock fixture files** (JSON, ``{"fixtures": [...]}``): hand-written
  entries in llmock's vocabulary (``match.userMessage`` ..., ``response``
  ``content`` / ``toolCalls`` / ``error`` / ``embedding``, and the options
  ``latency``, ``chunkSize``, ``truncateAfterChunks``, ``disconnectAfterMs``,
  (WebSocket drops: ``closeCode``, ``closeReason``),
  ``streamingProfile``, ``chaos``). Existing llmock files load unchanged.

Everything a request-time lookup needs (the recorded request's content
fingerprint, its summary, its family) is computed here, once, at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from llmock_proxy.canonical import Summary, canonical_json
from llmock_proxy.cassette.model import Interaction
from llmock_proxy.errors import CassetteError
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.catalog import identify
from llmock_proxy.replay.journal import Origin


@dataclass(frozen=True)
class StreamingProfile:
    """llmock's streaming physics: first chunk after ``ttft`` ms, then
    ``tps`` chunks per second, each gap varied by up to ``jitter`` (0..1)."""

    ttft: float | None = None
    tps: float | None = None
    jitter: float = 0.0


@dataclass(frozen=True)
class RecordedTimings:
    """aimock's captured stream timing: the first chunk after ``ttft_ms``, then
    each gap in turn (the last one repeating); ``replaySpeed`` divides them."""

    ttft_ms: float = 0.0
    gaps_ms: tuple[float, ...] = ()


@dataclass(frozen=True)
class Chaos:
    """llmock's failure injection: each request is dropped (a 500 error),
    answered with malformed JSON, refused with a 429 (aimock's rateLimitRate)
    or disconnected with these probabilities (0..1), tried in that order;
    ``latency_ms`` delays every answer (aimock's latencyMs)."""

    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    disconnect_rate: float = 0.0
    rate_limit_rate: float = 0.0
    latency_ms: float = 0.0

    @property
    def active(self) -> bool:
        return bool(
            self.drop_rate or self.malformed_rate or self.disconnect_rate or self.rate_limit_rate or self.latency_ms
        )


@dataclass(frozen=True)
class FixtureOptions:
    """Per-fixture delivery options (llmock names in the docstrings).

    All times are milliseconds.
    """

    latency: float | None = None  # latency: delay before each chunk / before a body
    chunk_size: int | None = None  # chunkSize: characters per synthesized delta
    truncate_after_chunks: int | None = None  # truncateAfterChunks: drop the connection after N
    disconnect_after_ms: float | None = None  # disconnectAfterMs: drop it after N ms
    streaming_profile: StreamingProfile | None = None  # streamingProfile
    recorded_timings: RecordedTimings | None = None  # recordedTimings (aimock)
    replay_speed: float | None = None  # replaySpeed (aimock): recorded timings divided by it
    chaos: Chaos | None = None  # chaos: {dropRate, malformedRate, disconnectRate}
    # WebSocket sessions: the close a truncateAfterChunks / disconnectAfterMs
    # drop sends (closeCode, closeReason); without a code the connection is cut.
    close_code: int | None = None
    close_reason: str | None = None

    @cached_property  # asked for every answer: compared with the defaults once
    def empty(self) -> bool:
        return self is _NO_OPTIONS or self == _NO_OPTIONS


_NO_OPTIONS = FixtureOptions()


@dataclass(frozen=True)
class FixtureError:
    """A hand-written error answer, rendered in the requested provider's envelope."""

    status: int
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    # Seconds for the Retry-After header of a 429 (aimock's retryAfter; 1 when unset).
    retry_after: float | None = None


@dataclass(frozen=True)
class RawAnswer:
    """A hand-written answer sent as it is written (aimock's ``{json, status}``)."""

    status: int
    body: Any


@dataclass(eq=False)
class Fixture:
    """One answer the matcher can choose.

    ``recorded`` fixtures come from a cassette interaction (``interaction``
    holds the verbatim response); hand-written ones carry a ``summary`` or an
    ``error`` to be rendered in whatever wire form the request asks for.
    """

    match: dict[str, Any]
    source: str  # "<file>: interactions[3]" or "<file>: fixtures[0]"
    recorded: bool
    interaction: Interaction | None = None
    summary: Summary | None = None
    error: FixtureError | None = None
    raw: RawAnswer | None = None
    options: FixtureOptions = _NO_OPTIONS
    # Recorded fixtures only: the API family and the content fingerprint
    # (conversation without the stream flag) of the recorded request, so a
    # stream can be answered from a non-stream recording and the reverse.
    family: str | None = None
    content_fingerprint: str | None = None
    # The recorded request's outline (CanonicalRequest.outline) when the
    # match's fingerprint is that request's own: the matcher takes a
    # request's fingerprint only when some recording shares its outline.
    outline: tuple[Any, ...] | None = None
    # Filled by the front ends the first time they serve this fixture
    # verbatim (encoded body, stream chunks, a mitmproxy response to copy);
    # a cache of what goes on the wire, not sequence state.
    wire_cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def origin(self) -> Origin | None:
        """The cassette interaction or fixture-file entry this fixture is (None: made up on the spot)."""
        return Origin.from_source(self.source)

    @cached_property
    def answer_key(self) -> str:
        """The answer spelled once: its part of the seed of the ids a render
        derives (with the request's content fingerprint)."""
        return canonical_json(self.summary.to_dict()) if self.summary is not None else "{}"

    @cached_property
    def render_options(self) -> RenderOptions:
        """The render options this fixture's answers start from (the request
        adds its own: a stream's usage chunk, an embedding encoding)."""
        return RenderOptions(chunk_size=self.options.chunk_size or 0, answer_key=self.answer_key)

    @property
    def recorded_stream(self) -> bool:
        """Whether the recorded response is a stream (SSE, NDJSON, EventStream)."""
        response = self.interaction.response if self.interaction else None
        return bool(response is not None and response.is_stream)


# -- recorded interactions ---------------------------------------------------


def fixture_from_interaction(interaction: Interaction, source: str) -> Fixture:
    """A recorded interaction as a fixture, with its lookup keys computed now.

    An interaction without a ``match`` section (written by hand) gets the one
    the recorder would have derived; one without a ``summary`` gets it from
    the provider, so it can still be re-rendered in another wire form.
    """

    request = interaction.request
    provider = identify(request.method, request.url, request.headers)
    try:
        canonical = provider.canonical(request)
    except Exception as exc:  # a provider cannot read the recorded body
        raise CassetteError(f"{source}.request: cannot be read as {provider.family}: {exc}") from None
    match = dict(interaction.match) if interaction.match else derive_match(canonical)
    summary: Summary | None = None
    if interaction.summary is not None:
        summary = Summary.from_dict(interaction.summary)
    elif interaction.response is not None and interaction.response.wire_form != "websocket":
        try:
            summary = provider.summarize(request, interaction.response)
        except Exception:  # generic bodies have no summary; they replay verbatim only
            summary = None
    fingerprint, content_fingerprint = canonical.fingerprints()
    return Fixture(
        match=match,
        source=source,
        recorded=True,
        interaction=interaction,
        summary=summary,
        family=canonical.family,
        content_fingerprint=content_fingerprint,
        outline=canonical.outline if match.get("fingerprint") == fingerprint else None,
    )
