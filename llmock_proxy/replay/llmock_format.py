"""llmock fixture files (JSON, ``{"fixtures": [...]}``): their vocabulary read into
:class:`~llmock_proxy.replay.fixture.Fixture`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmock_proxy.canonical import Summary, ToolCall
from llmock_proxy.cassette.schema import validate_fixture_file
from llmock_proxy.errors import CassetteError
from llmock_proxy.providers.base import parse_arguments
from llmock_proxy.replay.fixture import (
    Chaos,
    Fixture,
    FixtureError,
    FixtureOptions,
    StreamingProfile,
)

# -- llmock fixture files ------------------------------------------------------


def load_fixture_file(path: str | Path, *, lenient: bool = False) -> list[Fixture]:
    """The entries of one llmock fixture file, in file order (first match wins)."""

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
