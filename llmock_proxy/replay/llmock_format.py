"""llmock / aimock fixture files (JSON, ``{"fixtures": [...]}``): their vocabulary
read into :class:`~llmock_proxy.replay.fixture.Fixture`.

What a file can get wrong is sorted by what it would cost:

* a **match** problem (an unknown key such as ``userMesage``, a value of the
  wrong type, a bad regex) loosens or breaks what a fixture answers, silently:
  it is a load error for the whole file, naming the fixture and key with a
  did-you-mean; ``lenient`` (``--lenient-fixtures``) makes it a warning, the
  unknown key ignored as aimock does, a malformed fixture left out;
* a **response or option** problem concerns one answer: that fixture still
  loads, and when it matches it answers with an error in the provider's
  envelope naming the file, fixture and field, while the rest of the file is
  served (``cassette validate`` still fails on it);
* what only looks odd (tool-call arguments that are not JSON, served as
  ``{}`` as aimock does; fields of aimock's non-LLM APIs) is a warning.

aimock config files (``{"llm": {"fixtures": "path", "chaos": ..., ...}}``)
name fixture files; :func:`config_fixture_paths` follows them.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmock_proxy import nesting
from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.schema import fixture_file_findings
from llmock_proxy.cassette.store import FIXTURE_SUFFIXES, expand
from llmock_proxy.errors import CassetteError
from llmock_proxy.match.matcher import MATCH_KEYS, REPLAYED_ENDPOINTS, match_problems
from llmock_proxy.replay.fixture import (
    Chaos,
    Fixture,
    FixtureError,
    FixtureOptions,
    RawAnswer,
    RecordedTimings,
    StreamingProfile,
)

log = logging.getLogger(__name__)

# The status a broken fixture answers with: the mock is at fault, not the client.
BROKEN_FIXTURE_STATUS = 500

# Response forms of aimock's non-LLM APIs (images, speech, transcription,
# video, its own live-session protocol): read, never replayed.
UNREPLAYED_FORMS = ("image", "images", "audio", "transcription", "video", "live")

# Fields of a fixture entry and of a response that aimock reads; anything else
# is reported with a did-you-mean (a warning: it cannot loosen a match).
ENTRY_FIELDS = (
    "match", "response", "latency", "chunkSize", "truncateAfterChunks", "disconnectAfterMs",
    "streamingProfile", "recordedTimings", "replaySpeed", "chaos", "openRouterProcessing", "metadata",
    "closeCode", "closeReason",
)
RESPONSE_FIELDS = (
    "content", "toolCalls", "blocks", "error", "status", "retryAfter", "fallthrough", "embedding", "json",
    "billableUnits", *UNREPLAYED_FORMS, "format", "id", "created", "model", "usage", "systemFingerprint",
    "finishReason", "role", "provider", "nativeFinishReason", "reasoning", "reasoningSignature",
    "redactedThinking", "webSearches",
)


@dataclass
class FixtureFileReport:
    """What reading one fixture file found."""

    path: str
    fixtures: list[Fixture] = field(default_factory=list)
    # Problems that stop the file from loading (a match that would answer wrong).
    errors: list[str] = field(default_factory=list)
    # Fixtures that load but answer with an error naming what is wrong.
    broken: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Fixtures of aimock APIs that are not replayed (their index and form).
    unreplayed: list[str] = field(default_factory=list)
    entries: int = 0

    @property
    def problems(self) -> list[str]:
        """Everything ``cassette validate`` fails on."""
        return [*self.errors, *self.broken]


# -- files -----------------------------------------------------------------------


def load_fixture_file(path: str | Path, *, lenient: bool = False) -> list[Fixture]:
    """The fixtures of one llmock fixture file (or aimock config file), in file
    order (first match wins). Raises :class:`CassetteError` listing every
    match problem; logs broken fixtures and warnings."""
    return _accepted(read_fixture_file(path, lenient=lenient))


def parse_fixture_entries(data: Any, where: str, *, lenient: bool = False) -> list[Fixture]:
    """:func:`load_fixture_file` for a parsed ``{"fixtures": [...]}`` document."""
    return _accepted(read_fixture_data(data, where, lenient=lenient))


def _accepted(report: FixtureFileReport) -> list[Fixture]:
    for line in (*report.broken, *report.warnings):
        log.warning("%s", line)
    for line in report.unreplayed:
        log.info("%s", line)
    if report.errors:
        raise CassetteError("\n".join(report.errors), path=report.path, problems=report.errors)
    return report.fixtures


def read_fixture_file(path: str | Path, *, lenient: bool = False) -> FixtureFileReport:
    """Read one fixture file and sort what is wrong with it (see the module doc).
    Raises :class:`CassetteError` only when the file itself cannot be used."""
    p = Path(path)
    data = _read_json(p)
    where = str(p)
    if isinstance(data, dict) and "fixtures" not in data and isinstance(data.get("llm"), dict):
        return _read_config(p, data, lenient=lenient)
    return read_fixture_data(data, where, lenient=lenient)


def read_fixture_data(
    data: Any, where: str, *, lenient: bool = False, defaults: dict[str, Any] | None = None
) -> FixtureFileReport:
    """:func:`read_fixture_file` for an already parsed document. ``defaults``
    are entry options (an aimock config's ``llm.chaos``, ``latency`` ...) that
    each fixture's own values override."""
    if not isinstance(data, dict) or not isinstance(data.get("fixtures"), list):
        raise CassetteError(
            f"{where}: not a fixture file: expected an object with a fixtures list, or an aimock config "
            f"whose llm.fixtures names fixture files",
            path=where,
        )
    report = FixtureFileReport(where, entries=len(data["fixtures"]))
    by_fixture: dict[int, list[tuple[tuple[Any, ...], str]]] = {}
    for problem_path, text in fixture_file_findings(data):
        if len(problem_path) >= 2 and problem_path[0] == "fixtures" and isinstance(problem_path[1], int):
            by_fixture.setdefault(problem_path[1], []).append((problem_path, text))
        else:
            report.errors.append(f"{where}: {text}")
    for index, entry in enumerate(data["fixtures"]):
        source = f"{where}: fixtures[{index}]"
        fixture = _read_entry(entry, source, by_fixture.get(index, []), report, lenient=lenient, defaults=defaults)
        if fixture is not None:
            report.fixtures.append(fixture)
    return report


def _read_json(p: Path) -> Any:
    try:
        return nesting.loads(p.read_bytes(), nesting.MAX_DOCUMENT_DEPTH)  # TooDeep: a ValueError
    except OSError as exc:
        raise CassetteError(f"{p}: cannot read: {exc.strerror}", path=str(p)) from None
    except ValueError as exc:
        raise CassetteError(f"{p}: not valid JSON: {exc}", path=str(p)) from None


# -- aimock config files -------------------------------------------------------------

# Options of a config's ``llm`` section that apply to each of its fixtures.
_CONFIG_DEFAULTS = {"latency": "latency", "chunkSize": "chunkSize", "chaos": "chaos", "replaySpeed": "replaySpeed"}


def is_config_document(data: Any) -> bool:
    """An aimock config file: ``llm`` (and other services) instead of ``fixtures``."""
    return isinstance(data, dict) and "fixtures" not in data and isinstance(data.get("llm"), dict)


def config_fixture_paths(config_path: Path, data: dict[str, Any]) -> list[Path]:
    """The fixture file or directory an aimock config's ``llm.fixtures`` names.
    aimock resolves it against the working directory; when nothing is there,
    against the config file's directory or the nearest parent holding it
    (a project's config under ``config/`` naming ``fixtures/x.json``)."""
    named = data["llm"].get("fixtures")
    where = f"{config_path}: llm.fixtures"
    if named is None:
        raise CassetteError(
            f"{where}: missing; this aimock config names no LLM fixtures (its other services are not replayed)",
            path=str(config_path),
        )
    if not isinstance(named, str) or not named:
        raise CassetteError(f"{where}: expected a path to a fixture file or directory", path=str(config_path))
    for base in (Path.cwd(), *config_path.resolve().parents):
        candidate = base / named
        if candidate.exists():
            return [candidate]
    raise CassetteError(
        f"{where}: {named!r} exists neither in the working directory nor beside the config file or above it",
        path=str(config_path),
    )


def _read_config(p: Path, data: dict[str, Any], *, lenient: bool) -> FixtureFileReport:
    llm = data["llm"]
    defaults = {key: llm[name] for name, key in _CONFIG_DEFAULTS.items() if name in llm}
    report = FixtureFileReport(str(p))
    for target in config_fixture_paths(p, data):
        files = expand([target], FIXTURE_SUFFIXES) if target.is_dir() else [target]
        for file in files:
            inner_data = _read_json(Path(file))
            if is_config_document(inner_data) or not isinstance(inner_data, dict) or "fixtures" not in inner_data:
                continue  # aimock's directory loader skips what is not a fixture file
            inner = read_fixture_data(inner_data, str(file), lenient=lenient, defaults=defaults)
            report.fixtures += inner.fixtures
            report.errors += inner.errors
            report.broken += inner.broken
            report.warnings += inner.warnings
            report.unreplayed += inner.unreplayed
            report.entries += inner.entries
    return report


# -- one entry ------------------------------------------------------------------------


def fixture_from_entry(entry: dict[str, Any], source: str) -> Fixture:
    """One entry of an llmock fixture file, checked on its own (``source``
    names it in errors). Raises :class:`CassetteError` for any problem."""
    report = read_fixture_data({"fixtures": [entry]}, "entry")
    problems = [p.replace("entry: fixtures[0]", source, 1) for p in report.problems]
    if problems:
        raise CassetteError("\n".join(problems), problems=problems)
    return replace(report.fixtures[0], source=source)


def _read_entry(
    entry: Any,
    source: str,
    schema_problems: list[tuple[tuple[Any, ...], str]],
    report: FixtureFileReport,
    *,
    lenient: bool,
    defaults: dict[str, Any] | None,
) -> Fixture | None:
    if not isinstance(entry, dict):
        report.errors.append(f"{source}: expected an object with match and response")
        return None
    match = entry.get("match")
    if match is None:
        match = {}
    if not isinstance(match, dict):
        report.errors.append(f"{source}.match: expected an object")
        return None
    match = dict(match)
    problems = match_problems(match, f"{source}.match")
    if problems:
        if not lenient:
            report.errors += [text for _, text in problems]
            return None
        for key, text in problems:
            if key not in MATCH_KEYS:
                report.warnings.append(f"{text}; ignored (--lenient-fixtures)")
                del match[key]
            else:
                report.warnings.append(f"{text}; this fixture is left out (--lenient-fixtures)")
                return None
    report.warnings += _typos(entry, ENTRY_FIELDS, source)
    endpoint = match.get("endpoint")
    response = entry.get("response")
    form = next((f for f in UNREPLAYED_FORMS if isinstance(response, dict) and f in response), None)
    if (endpoint is not None and endpoint not in REPLAYED_ENDPOINTS) or form is not None:
        what = f"endpoint {endpoint!r}" if endpoint not in (None, *REPLAYED_ENDPOINTS) else f"a {form!r} response"
        report.unreplayed.append(f"{source}: not replayed ({what} belongs to an aimock API llmock-proxy does not serve)")
        return None
    # Schema problems outside match concern this fixture's answer or options.
    field_problems = [f"{source.rsplit(': ', 1)[0]}: {text}" for path, text in schema_problems
                      if len(path) < 3 or path[2] != "match"]
    merged = {**(defaults or {}), **entry}
    if not field_problems and not isinstance(response, dict):
        field_problems = [f"{source}.response: expected an object"]
    if not field_problems:
        assert isinstance(response, dict)
        try:
            summary, error, raw, notes = _response_meaning(response, f"{source}.response")
            options = _options(merged, source)
        except CassetteError as exc:
            field_problems = [str(exc)]
        except (TypeError, ValueError, AttributeError, LookupError) as exc:  # a shape the schema lets through
            field_problems = [f"{source}.response: cannot be read ({type(exc).__name__}: {exc})"]
        else:
            report.warnings += notes
            return Fixture(
                match=match, source=source, recorded=False, summary=summary, error=error, raw=raw, options=options
            )
    report.broken += field_problems
    return Fixture(
        match=match,
        source=source,
        recorded=False,
        error=FixtureError(
            status=BROKEN_FIXTURE_STATUS,
            message="llmock-proxy: this fixture cannot answer: " + "; ".join(field_problems),
            type="llmock_fixture_error",
            code="fixture_invalid",
        ),
    )


def _typos(mapping: dict[str, Any], known: tuple[str, ...], where: str) -> list[str]:
    """Warnings for unknown fields that look like a known one misspelt; other
    unknown fields (notes, comments) are ignored silently, as aimock does."""
    out = []
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            if close:
                out.append(f"{where}.{key}: unknown field, ignored; did you mean {close[0]!r}?")
    return out


# -- responses ------------------------------------------------------------------------


def _response_meaning(
    response: dict[str, Any], where: str
) -> tuple[Summary | None, FixtureError | None, RawAnswer | None, list[str]]:
    """aimock's LLM response forms: ``error``, ``json``, ``embedding``, and
    text / tool calls (``content``, ``toolCalls``, both, or ordered ``blocks``)
    with reasoning, web searches and envelope overrides. The schema has
    checked the types; this reads the meaning. Returns warnings as well."""
    notes = _typos(response, RESPONSE_FIELDS, where)
    if "error" in response:
        error = response["error"]
        code = error.get("code")
        retry_after = response.get("retryAfter")
        return None, FixtureError(
            status=response.get("status", 500),
            message=error["message"],
            type=error.get("type"),
            code=str(code) if code is not None else None,
            param=error.get("param"),
            retry_after=float(retry_after) if retry_after is not None else None,
        ), None, notes
    if "json" in response:
        return None, None, RawAnswer(status=response.get("status", 200), body=response["json"]), notes
    if "embedding" in response:
        return Summary(embeddings=[[float(x) for x in response["embedding"]]]), None, None, notes
    if not any(key in response for key in ("content", "toolCalls", "blocks")):
        raise CassetteError(f"{where}: needs one of content, toolCalls, blocks, error, embedding or json")
    calls: list[ToolCall] = []
    segments: list[str | int] | None = None
    texts: list[str] = []
    if "blocks" in response:
        segments = []
        for i, block in enumerate(response["blocks"]):
            if block["type"] == "text":
                segments.append(block["text"])
                texts.append(block["text"])
            else:
                segments.append(len(calls))
                calls.append(_tool_call(block, f"{where}.blocks[{i}]", notes))
    else:
        content = response.get("content")
        if content is not None:
            texts.append(content if isinstance(content, str) else _json_text(content))
        calls = [_tool_call(c, f"{where}.toolCalls[{i}]", notes) for i, c in enumerate(response.get("toolCalls", []))]
    usage = response.get("usage")
    created = response.get("created")
    summary = Summary(
        text="".join(texts),
        tool_calls=calls,
        finish_reason=response.get("finishReason"),
        usage=dict(usage) if isinstance(usage, dict) else None,
        model=response.get("model"),
        reasoning=response.get("reasoning") or None,
        segments=segments,
        response_id=response.get("id"),
        created=int(created) if created is not None else None,
        system_fingerprint=response.get("systemFingerprint"),
        web_searches=list(response["webSearches"]) if response.get("webSearches") else None,
    )
    return summary, None, None, notes


def _json_text(value: Any) -> str:
    """A JSON value as aimock's loader writes it (``JSON.stringify``: compact)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _tool_call(call: dict[str, Any], where: str, notes: list[str]) -> ToolCall:
    """``arguments`` as a JSON text, object or array; a text that is not JSON
    (or is empty) is sent as ``{}``, as aimock does, with a warning."""
    arguments = call.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            parsed = nesting.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:  # not JSON, or too deep (TooDeep)
            notes.append(f"{where}.arguments: {arguments[:60]!r} is not JSON ({exc}); sent as {{}}")
            parsed = {}
    else:
        parsed = arguments
    return ToolCall(name=call["name"], arguments=parsed, id=call.get("id"))


# -- options --------------------------------------------------------------------------


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
        where = f"{source}.streamingProfile"
        tps = _number(profile, "tps", where, minimum=0)
        streaming_profile = StreamingProfile(
            ttft=_number(profile, "ttft", where, minimum=0), tps=tps, jitter=_number(profile, "jitter", where, minimum=0) or 0.0
        )
    timings = entry.get("recordedTimings")
    recorded_timings = None
    if isinstance(timings, dict):
        gaps = timings.get("interChunkDelaysMs") or []
        recorded_timings = RecordedTimings(
            ttft_ms=float(timings.get("ttftMs") or 0.0), gaps_ms=tuple(float(g) for g in gaps)
        )
    close_code = entry.get("closeCode")
    if close_code in (1005, 1006, 1015):
        raise CassetteError(f"{source}.closeCode: {close_code} may not be sent in a close frame")
    close_reason = entry.get("closeReason")
    if close_reason is not None and len(close_reason.encode()) > 123:
        raise CassetteError(f"{source}.closeReason: expected at most 123 bytes")
    return FixtureOptions(
        latency=_number(entry, "latency", source, minimum=0),
        chunk_size=int(chunk_size) if chunk_size is not None else None,
        truncate_after_chunks=int(truncate) if truncate is not None else None,
        disconnect_after_ms=_number(entry, "disconnectAfterMs", source, minimum=0),
        streaming_profile=streaming_profile,
        recorded_timings=recorded_timings,
        replay_speed=_number(entry, "replaySpeed", source, minimum=0) or None,
        chaos=_chaos(entry.get("chaos"), f"{source}.chaos"),
        close_code=close_code,
        close_reason=close_reason,
    )


def _chaos(value: Any, where: str) -> Chaos | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CassetteError(f"{where}: expected an object with dropRate, malformedRate, rateLimitRate, disconnectRate")
    return Chaos(
        drop_rate=float(value.get("dropRate") or 0.0),
        malformed_rate=float(value.get("malformedRate") or 0.0),
        disconnect_rate=float(value.get("disconnectRate") or 0.0),
        rate_limit_rate=float(value.get("rateLimitRate") or 0.0),
        latency_ms=float(value.get("latencyMs") or 0.0),
    )


__all__ = [
    "BROKEN_FIXTURE_STATUS",
    "FixtureFileReport",
    "config_fixture_paths",
    "fixture_from_entry",
    "is_config_document",
    "load_fixture_file",
    "parse_fixture_entries",
    "read_fixture_data",
    "read_fixture_file",
]
