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

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cassette as cassette_model
from . import yamlio
from .canonical import Summary, ToolCall
from .cassette import CassetteError, Interaction
from .matcher import derive_match
from .providers.base import parse_arguments

log = logging.getLogger(__name__)

CASSETTE_SUFFIXES = (".yaml", ".yml")
FIXTURE_SUFFIXES = (".json",)


@dataclass(frozen=True)
class StreamingProfile:
    """llmock's streaming physics: first chunk after ``ttft`` ms, then
    ``tps`` chunks per second, each gap varied by up to ``jitter`` (0..1)."""

    ttft: float | None = None
    tps: float | None = None
    jitter: float = 0.0


@dataclass(frozen=True)
class Chaos:
    """llmock's failure injection: each request is dropped (a 500 error),
    answered with malformed JSON, or disconnected with these probabilities
    (0..1), tried in that order."""

    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    disconnect_rate: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.drop_rate or self.malformed_rate or self.disconnect_rate)


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
    chaos: Chaos | None = None  # chaos: {dropRate, malformedRate, disconnectRate}
    # WebSocket sessions: the close a truncateAfterChunks / disconnectAfterMs
    # drop sends (closeCode, closeReason); without a code the connection is cut.
    close_code: int | None = None
    close_reason: str | None = None

    @property
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
    options: FixtureOptions = _NO_OPTIONS
    # Recorded fixtures only: the API family and the content fingerprint
    # (conversation without the stream flag) of the recorded request, so a
    # stream can be answered from a non-stream recording and the reverse.
    family: str | None = None
    content_fingerprint: str | None = None
    # Filled by the front ends the first time they serve this fixture
    # verbatim (encoded body, stream chunks, a mitmproxy response to copy);
    # a cache of what goes on the wire, not sequence state.
    wire_cache: dict[str, Any] = field(default_factory=dict, repr=False)

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
    from .providers import identify  # local: the catalog imports every provider

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
    return Fixture(
        match=match,
        source=source,
        recorded=True,
        interaction=interaction,
        summary=summary,
        family=canonical.family,
        content_fingerprint=canonical.content_fingerprint,
    )


def load_cassette(path: str | Path) -> list[Fixture]:
    """Every replayable interaction of one cassette file, in recorded order.

    Interactions that never got a response (a transport failure was recorded
    instead) are skipped with a log line: there is nothing to replay.
    """
    loaded = cassette_model.load(path)
    fixtures: list[Fixture] = []
    for index, interaction in enumerate(loaded.interactions):
        source = f"{path}: interactions[{index}]"
        if interaction.response is None:
            log.info("%s: skipped, it has no response (%s)", source, interaction.error or "none recorded")
            continue
        fixtures.append(fixture_from_interaction(interaction, source))
    return fixtures


# -- llmock fixture files ------------------------------------------------------


def load_fixture_file(path: str | Path) -> list[Fixture]:
    """The entries of one llmock fixture file, in file order (first match wins)."""
    from .schemas import validate_fixture_file  # local: schemas import the cassette module

    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except OSError as exc:
        raise CassetteError(f"{p}: cannot read: {exc.strerror}", path=str(p)) from None
    except ValueError as exc:
        raise CassetteError(f"{p}: not valid JSON: {exc}", path=str(p)) from None
    validate_fixture_file(data, str(p))
    return parse_fixture_entries(data, str(p))


def parse_fixture_entries(data: dict[str, Any], where: str) -> list[Fixture]:
    """``{"fixtures": [...]}`` (already schema-checked) -> fixtures."""
    entries = data.get("fixtures")
    if not isinstance(entries, list):
        raise CassetteError(f"{where}: fixtures: expected a list of fixtures", path=where)
    return [fixture_from_entry(entry, f"{where}: fixtures[{i}]") for i, entry in enumerate(entries)]


def fixture_from_entry(entry: dict[str, Any], source: str) -> Fixture:
    """One entry of an llmock fixture file (``source`` names it in errors)."""
    if not isinstance(entry, dict):
        raise CassetteError(f"{source}: expected an object with match and response")
    match = entry.get("match") or {}
    if not isinstance(match, dict):
        raise CassetteError(f"{source}.match: expected an object")
    response = entry.get("response")
    if not isinstance(response, dict):
        raise CassetteError(f"{source}.response: expected an object")
    summary, error = _response_meaning(response, f"{source}.response")
    return Fixture(
        match=dict(match),
        source=source,
        recorded=False,
        summary=summary,
        error=error,
        options=_options(entry, source),
    )


def _response_meaning(response: dict[str, Any], where: str) -> tuple[Summary | None, FixtureError | None]:
    """llmock's four response kinds: ``error``, ``toolCalls``, ``content``, ``embedding``."""
    if "error" in response:
        error = response["error"]
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            raise CassetteError(f"{where}.error.message: expected a string")
        status = response.get("status", 500)
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise CassetteError(f"{where}.status: {status!r} is not an HTTP status code")
        return None, FixtureError(
            status=status,
            message=error["message"],
            type=error.get("type"),
            code=error.get("code"),
        )
    if "toolCalls" in response:
        calls = response["toolCalls"]
        if not isinstance(calls, list):
            raise CassetteError(f"{where}.toolCalls: expected a list")
        tool_calls = []
        for i, call in enumerate(calls):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
                raise CassetteError(f"{where}.toolCalls[{i}].name: expected a non-empty string")
            tool_calls.append(
                ToolCall(
                    name=call["name"],
                    arguments=parse_arguments(call.get("arguments", "{}")),
                    id=call.get("id"),
                )
            )
        return Summary(tool_calls=tool_calls, finish_reason=response.get("finishReason")), None
    if "content" in response:
        content = response["content"]
        if not isinstance(content, str):
            raise CassetteError(f"{where}.content: expected a string")
        return Summary(text=content, finish_reason=response.get("finishReason")), None
    if "embedding" in response:
        vector = response["embedding"]
        if not isinstance(vector, list) or not all(isinstance(x, (int, float)) for x in vector):
            raise CassetteError(f"{where}.embedding: expected a list of numbers")
        return Summary(embeddings=[[float(x) for x in vector]]), None
    raise CassetteError(f"{where}: needs one of content, toolCalls, error or embedding")


def _number(entry: dict[str, Any], key: str, source: str, *, minimum: float) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise CassetteError(f"{source}.{key}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def _options(entry: dict[str, Any], source: str) -> FixtureOptions:
    chunk_size = _number(entry, "chunkSize", source, minimum=1)
    truncate = _number(entry, "truncateAfterChunks", source, minimum=1)
    profile = entry.get("streamingProfile")
    streaming_profile = None
    if profile is not None:
        if not isinstance(profile, dict):
            raise CassetteError(f"{source}.streamingProfile: expected an object")
        where = f"{source}.streamingProfile"
        tps = _number(profile, "tps", where, minimum=0)
        if tps is not None and tps <= 0:
            raise CassetteError(f"{where}.tps: must be > 0")
        jitter = _number(profile, "jitter", where, minimum=0) or 0.0
        if jitter > 1:
            raise CassetteError(f"{where}.jitter: must be between 0 and 1")
        streaming_profile = StreamingProfile(
            ttft=_number(profile, "ttft", where, minimum=0), tps=tps, jitter=jitter
        )
    chaos = _chaos(entry.get("chaos"), f"{source}.chaos")
    close_code = entry.get("closeCode")
    if close_code is not None and (
        isinstance(close_code, bool) or not isinstance(close_code, int) or not 1000 <= close_code <= 4999
        or close_code in (1005, 1006, 1015)
    ):
        raise CassetteError(f"{source}.closeCode: expected a WebSocket close code 1000-4999 that may be sent "
                            f"(not 1005, 1006, 1015), got {close_code!r}")
    close_reason = entry.get("closeReason")
    if close_reason is not None and (not isinstance(close_reason, str) or len(close_reason.encode()) > 123):
        raise CassetteError(f"{source}.closeReason: expected a string of at most 123 bytes")
    return FixtureOptions(
        latency=_number(entry, "latency", source, minimum=0),
        chunk_size=int(chunk_size) if chunk_size is not None else None,
        truncate_after_chunks=int(truncate) if truncate is not None else None,
        disconnect_after_ms=_number(entry, "disconnectAfterMs", source, minimum=0),
        streaming_profile=streaming_profile,
        chaos=chaos,
        close_code=close_code,
        close_reason=close_reason,
    )


def _chaos(value: Any, where: str) -> Chaos | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CassetteError(f"{where}: expected an object with dropRate, malformedRate, disconnectRate")
    rates = {}
    for key in ("dropRate", "malformedRate", "disconnectRate"):
        rate = _number(value, key, where, minimum=0)
        if rate is not None and rate > 1:
            raise CassetteError(f"{where}.{key}: must be between 0 and 1, got {rate:g}")
        rates[key] = rate or 0.0
    return Chaos(rates["dropRate"], rates["malformedRate"], rates["disconnectRate"])


# -- sources -------------------------------------------------------------------


def expand(paths: Iterable[str | Path], suffixes: Sequence[str]) -> list[Path]:
    """Files named directly, plus every file with one of ``suffixes`` under the
    directories named (recursively, sorted, hidden files skipped)."""
    return [path for path, _ in _expand(paths, suffixes)]


def _expand(paths: Iterable[str | Path], suffixes: Sequence[str]) -> list[tuple[Path, bool]]:
    """(file, named directly) pairs, see :func:`expand`."""
    out: list[tuple[Path, bool]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                (f, False)
                for f in sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and f.suffix.lower() in suffixes
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
        elif p.is_file():
            out.append((p, True))
        else:
            raise CassetteError(f"{p}: no such file or directory", path=str(p))
    return out


def _is_other_document(path: Path, key: str) -> bool:
    """A readable YAML/JSON mapping without ``key``: some other kind of file
    (a schema, a config) that merely shares the directory. Unreadable files
    are not "other": a broken cassette must be reported, not skipped."""
    try:
        data = yamlio.load_file(path)  # JSON is YAML
    except Exception:
        return False
    return not isinstance(data, dict) or key not in data


def _load_all(
    paths: Iterable[str | Path], suffixes: Sequence[str], key: str, loader: Any, kind: str
) -> list[Fixture]:
    out: list[Fixture] = []
    for path, named in _expand(paths, suffixes):
        try:
            out.extend(loader(path))
        except CassetteError:
            if named or not _is_other_document(path, key):
                raise
            log.info("%s: skipped, not %s (no top-level %r)", path, kind, key)
    return out


def load_sources(
    cassettes: Iterable[str | Path] = (), fixtures: Iterable[str | Path] = ()
) -> list[Fixture]:
    """All fixtures of the given cassette and fixture files/directories.

    Cassettes come first (recorded interactions are exact), then the
    hand-written fixture files; within each, files in the order given
    (directory contents sorted by path) and entries in file order. Inside a
    directory, YAML/JSON files of another kind (no ``interactions`` /
    ``fixtures`` at the top) are skipped; a file named directly must load.
    """
    return [
        *_load_all(cassettes, CASSETTE_SUFFIXES, "interactions", load_cassette, "a cassette"),
        *_load_all(fixtures, FIXTURE_SUFFIXES, "fixtures", load_fixture_file, "an llmock fixture file"),
    ]
