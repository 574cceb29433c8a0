"""Where the recorded shapes come from, and the one place a live answer is graded.

The contract for an API family in one wire form is a JSON Schema document
(:func:`~llmock_proxy.drift.schema.shape_schema`): inferred from cassettes on
the spot, or read from the ``<family>.<form>.schema.json`` files a team
committed (``llmock-proxy drift schema``). :class:`Contracts` holds them and
grades a live response against the one for its family and expected form,
through the team's :class:`~llmock_proxy.drift.findings.Policy`.

Only successful recordings (status below 400) make a shape: an error
envelope is not the API's answer, and merging it in would make every field of
the real answer optional.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette, Interaction, Request, Response
from llmock_proxy.cassette.store import CASSETTE_SUFFIXES, expand
from llmock_proxy.cassette.yamlio import atomic_write_text
from llmock_proxy.drift.findings import Finding, Policy
from llmock_proxy.drift.schema import check_response, shape_schema
from llmock_proxy.drift.shape import infer_shapes, is_error_status
from llmock_proxy.errors import CassetteError
from llmock_proxy.providers.catalog import by_family, grammar_of

SCHEMA_SUFFIX = ".schema.json"


@dataclass
class Recorded:
    """One recorded interaction and the cassette it sits in."""

    cassette: Cassette
    index: int

    @property
    def interaction(self) -> Interaction:
        return self.cassette.interactions[self.index]

    @property
    def source(self) -> str:
        """``file#index``: how reports name the recording."""
        return f"{self.cassette.path}#{self.index}"

    @property
    def family(self) -> str:
        return str(self.interaction.match.get("family") or "generic")

    @property
    def form(self) -> str:
        response = self.interaction.response
        return response.wire_form if response is not None else "body"


def load_recordings(paths: Iterable[str | Path]) -> list[Recorded]:
    """Every interaction of the cassette files and directories given.

    Raises :class:`CassetteError` naming the file for a missing path or a
    cassette that does not validate.
    """
    out: list[Recorded] = []
    for path in expand(paths, CASSETTE_SUFFIXES):
        cassette = cassette_store.load(path)
        out.extend(Recorded(cassette, i) for i in range(len(cassette.interactions)))
    return out


def is_shape_sample(interaction: Interaction) -> bool:
    """Whether an interaction shows what the API answers: a complete, successful exchange."""
    response = interaction.response
    return (
        response is not None
        and not is_error_status(response.status)
        and not interaction.incomplete
        and not interaction.error
    )


def infer_documents(recordings: Iterable[Recorded]) -> dict[str, dict[str, Any]]:
    """Schema documents keyed by ``family.form`` from the successful recordings."""
    pairs = ((r.interaction, r.source) for r in recordings if is_shape_sample(r.interaction))
    return {key: shape_schema(shape) for key, shape in sorted(infer_shapes(pairs).items())}


def schema_file_name(key: str) -> str:
    return f"{key}{SCHEMA_SUFFIX}"


def write_documents(documents: dict[str, dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """One reviewable ``<family>.<form>.schema.json`` per document, written atomically."""
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for key, doc in sorted(documents.items()):
        path = target / schema_file_name(key)
        atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def load_documents(paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """Committed schema documents from ``*.schema.json`` files or directories holding them."""
    documents: dict[str, dict[str, Any]] = {}
    for path in _schema_files(paths):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CassetteError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from None
        except ValueError as exc:
            raise CassetteError(f"{path}: not valid JSON: {exc}", path=str(path)) from None
        meta = doc.get("x-llmock") if isinstance(doc, dict) else None
        if not isinstance(meta, dict) or not {"family", "form"} <= set(meta):
            raise CassetteError(
                f"{path}: not a drift shape schema (no x-llmock annotation with family and form)",
                path=str(path),
            )
        try:
            Draft202012Validator.check_schema(doc)
        except SchemaError as exc:
            raise CassetteError(f"{path}: not a valid JSON Schema: {exc.message}", path=str(path)) from None
        meta.setdefault("statuses", [])
        meta.setdefault("contentTypes", [])
        documents[f"{meta['family']}.{meta['form']}"] = doc
    return documents


def _schema_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(SCHEMA_SUFFIX))
        elif p.is_file():
            yield p
        else:
            raise CassetteError(f"{p}: no such file or directory", path=str(p))


def expected_form(interaction: Interaction) -> str:
    """The wire form the family answers this request in: its stream form when
    the client asked for a stream (WebSocket families always), a body otherwise."""
    family = str(interaction.match.get("family") or "generic")
    try:
        provider = by_family(family)
    except KeyError:
        provider = None
    if provider is not None and provider.stream_form == "websocket":
        return "websocket"
    if interaction.match.get("stream") and provider is not None and family != "generic":
        return provider.stream_form
    response = interaction.response
    return response.wire_form if response is not None else "body"


@dataclass
class Contracts:
    """Shape documents by ``family.form``, and the policy that grades against them."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)

    def document(self, family: str, form: str) -> dict[str, Any] | None:
        return self.documents.get(f"{family}.{form}")

    def recorded_sources(self, family: str, form: str) -> list[str]:
        doc = self.document(family, form)
        return list(doc["x-llmock"].get("sources") or []) if doc is not None else []

    def check(self, family: str, form: str, live: Response, *, source: str = "") -> list[Finding] | None:
        """Findings for ``live`` against the ``family.form`` contract, after the
        policy; None when there is no recorded shape to compare with."""
        doc = self.document(family, form)
        if doc is None:
            return None
        return self.policy.filter(check_response(doc, live, source=source))


def error_message(family: str, request: Request, response: Response) -> str:
    """What a live error answer says, as its family's provider reads the
    envelope: ``HTTP 503 overloaded_error: Overloaded``; the body's start when
    the provider cannot read it."""
    text = ""
    try:
        error = grammar_of(family).error_detail(request, response) or {}
        kind, message = str(error.get("type") or ""), str(error.get("message") or "")
        text = f"{kind}: {message}" if kind and message else kind or message
    except Exception:  # an envelope the provider does not know is still worth showing
        pass
    if not text and response.body is not None:
        raw = response.body.to_bytes().decode("utf-8", "replace").strip()
        text = raw if len(raw) <= 200 else raw[:199] + "…"
    return f"HTTP {response.status}" + (f" {text}" if text else "")
