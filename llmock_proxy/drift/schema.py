"""Shapes as JSON Schema (draft 2020-12), and live answers checked against them.

The exported document is the reviewable contract a team commits. A body
shape is a plain JSON Schema of the body. A stream shape is the schema of the
stream's typed event list ``[{"event": <type>, "data": <payload>}, ...]``:
each event type's payload schema sits in ``$defs.events``, the event types
every recording had are ``contains`` clauses, and what JSON Schema cannot say
(statuses, content types, the order event types first appear in) sits in the
``x-llmock`` annotation, which validators ignore and :func:`check_response`
reads.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from llmock_proxy.cassette.model import Response
from llmock_proxy.drift.findings import Finding
from llmock_proxy.drift.shape import (
    Node,
    Shape,
    first_occurrences,
    is_error_status,
    is_usage_path,
    json_type,
    media_type,
    typed_events,
)
from llmock_proxy.providers.catalog import grammar_of

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def node_schema(node: Node) -> dict[str, Any]:
    types = set(node.types)
    if {"integer", "number"} <= types:
        types.discard("integer")  # an int is a valid JSON Schema number
    schema: dict[str, Any] = {}
    ordered = sorted(types)
    if ordered:
        schema["type"] = ordered[0] if len(ordered) == 1 else ordered
    if node.free_form:
        return schema
    if "object" in types:
        schema["properties"] = {name: node_schema(child) for name, child in sorted(node.properties.items())}
        required = node.required
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
    if "array" in types and node.items is not None:
        schema["items"] = node_schema(node.items)
    if node.values and types <= {"string", "null"}:
        enum: list[Any] = sorted(node.values)
        if "null" in types:
            enum.append(None)
        schema["enum"] = enum
    return schema


def shape_schema(shape: Shape) -> dict[str, Any]:
    """The JSON Schema document for one shape."""
    meta: dict[str, Any] = {
        "family": shape.family,
        "form": shape.form,
        "statuses": sorted(shape.statuses),
        "contentTypes": sorted(shape.content_types),
        "sources": list(shape.sources),
    }
    doc: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"urn:llmock-proxy:shape:{shape.key}",
        "title": f"{shape.family} {shape.form} response shape",
    }
    if shape.form == "body":
        meta["samples"] = len(shape.sources)
        if shape.body is not None:
            doc.update(node_schema(shape.body))
        doc["x-llmock"] = meta
        return doc
    stream = shape.stream
    assert stream is not None
    meta["samples"] = stream.samples
    meta["eventTypes"] = sorted(stream.ever)
    meta["requiredEventTypes"] = sorted(stream.always or ())
    meta["order"] = [list(pair) for pair in sorted(stream.order)]
    defs = {name: node_schema(node) for name, node in sorted(stream.payloads.items())}
    doc["type"] = "array"
    doc["items"] = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"event": {"const": name}, "data": {"$ref": f"#/$defs/events/{_pointer(name)}"}},
                "required": ["event"],
            }
            for name in sorted(defs)
        ]
    }
    required_types = sorted(stream.always or ())
    if required_types:
        doc["allOf"] = [{"contains": {"properties": {"event": {"const": name}}}} for name in required_types]
    doc["$defs"] = {"events": defs}
    doc["x-llmock"] = meta
    return doc


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def event_list(response: Response, family: str) -> list[dict[str, Any]]:
    """A streamed response as the instance its stream schema validates."""
    return [{"event": name, "data": payload} for name, payload in typed_events(response, grammar_of(family))]


def validate_recording(doc: dict[str, Any], response: Response) -> list[str]:
    """jsonschema's own verdict on one response: the messages of every error."""
    instance: Any
    if doc["x-llmock"]["form"] == "body":
        instance = response.json
    else:
        instance = event_list(response, doc["x-llmock"]["family"])
    validator = Draft202012Validator(doc)
    return [f"{_path(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


# -- live answers against a contract ------------------------------------------------


def check_response(doc: dict[str, Any], response: Response, *, source: str = "") -> list[Finding]:
    """Findings for one live response against one shape document."""
    meta = doc["x-llmock"]
    family, form = meta["family"], meta["form"]
    findings: list[Finding] = []

    def add(severity: str, kind: str, path: str, message: str, recorded: Any = None, live: Any = None) -> None:
        findings.append(Finding(severity, family, form, kind, path, message, recorded, live, source))

    if is_error_status(response.status) and response.status in meta["statuses"]:
        return findings  # an error the recordings had too: the provider's envelope, not drift
    if meta["statuses"] and response.status not in meta["statuses"]:
        add("critical", "status-changed", "status",
            f"status changed: recorded {meta['statuses']}, live {response.status}",
            meta["statuses"], response.status)
    ctype = media_type(response.headers.get("content-type"))
    if meta["contentTypes"] and ctype not in meta["contentTypes"]:
        add("critical", "content-type-changed", "content-type",
            f"content type changed: recorded {meta['contentTypes']}, live {ctype}",
            meta["contentTypes"], ctype)
    if is_error_status(response.status):
        # An error envelope is not the answer's shape: the status (and the
        # content type) say what changed; the reports show what the error said.
        return findings
    if response.wire_form != form:
        add("critical", "form-changed", "form",
            f"wire form changed: recorded {form}, live {response.wire_form}", form, response.wire_form)
        return findings

    if form == "body":
        if response.json is not None:
            findings.extend(_schema_findings(doc, response.json, "", family, form, source))
        return _dedupe(findings)

    events = list(typed_events(response, grammar_of(family)))
    defs: dict[str, Any] = doc.get("$defs", {}).get("events", {})
    reported_new: set[str] = set()
    for name, payload in events:
        if name not in defs:
            if name not in reported_new:
                reported_new.add(name)
                add("warning", "event-added", f"events.{name}", f"new event type {name!r}", None, name)
            continue
        findings.extend(_schema_findings(defs[name], payload, f"events.{name}", family, form, source))
    live_types = first_occurrences(name for name, _ in events)
    for name in meta.get("requiredEventTypes", []):
        if name not in live_types:
            add("critical", "event-removed", f"events.{name}",
                f"event type {name!r} disappeared", name, None)
    position = {name: i for i, name in enumerate(live_types)}
    for a, b in meta.get("order", []):
        if a in position and b in position and position[b] < position[a]:
            add("critical", "order-changed", f"events.{a}",
                f"event order changed: {a!r} used to come before {b!r}", [a, b], [b, a])
    return _dedupe(findings)


def _schema_findings(
    schema: dict[str, Any], instance: Any, prefix: str, family: str, form: str, source: str
) -> list[Finding]:
    out: list[Finding] = []
    validator = Draft202012Validator(schema)
    for error in validator.iter_errors(instance):
        out.extend(_error_findings(error, prefix, family, form, source))
    return out


def _error_findings(
    error: jsonschema.ValidationError, prefix: str, family: str, form: str, source: str
) -> list[Finding]:
    where = _join(prefix, _path(error.absolute_path))
    kind = error.validator
    # The keyword's value in the schema, the failing instance and its schema
    # (jsonschema's stubs type them as possibly unset).
    rule: Any = error.validator_value
    instance: Any = error.instance
    subschema: Any = error.schema
    if kind == "required":
        missing = [name for name in rule if name not in (instance or {})]
        return [
            Finding(_grade(family, "critical", _join(where, name)), family, form, "field-removed", _join(where, name),
                    f"field {_join(where, name)!r} disappeared", name, None, source)
            for name in missing
        ]
    if kind == "additionalProperties":
        known = set(subschema.get("properties") or {})
        added = [name for name in instance if name not in known]
        return [
            Finding(_grade(family, "warning", _join(where, name)), family, form, "field-added", _join(where, name),
                    f"new field {_join(where, name)!r}", None, json_type(instance[name]), source)
            for name in added
        ]
    if kind == "type":
        recorded, live = rule, json_type(instance)
        if live == "null" or recorded == "null":
            # A nullable field showed only one of its two types in the
            # recordings (stop_sequence null until a stop sequence hits).
            return [Finding("warning", family, form, "null-changed", where or "$",
                            f"{'null' if live == 'null' else 'a value'} at {where or '$'}: recorded {recorded}, "
                            f"live {live}", recorded, live, source)]
        return [Finding("critical", family, form, "type-changed", where or "$",
                        f"type changed at {where or '$'}: recorded {recorded}, live {live}",
                        recorded, live, source)]
    if kind == "enum":
        return [Finding("warning", family, form, "enum-added", where or "$",
                        f"new value {instance!r} at {where or '$'} "
                        f"(recorded: {', '.join(map(repr, rule))})",
                        rule, instance, source)]
    return [Finding("warning", family, form, f"schema-{kind}", where or "$",
                    f"{where or '$'}: {error.message}", None, None, source)]


def _grade(family: str, severity: str, path: str) -> str:
    """A token counter coming or going is a value, not a change of shape."""
    return "info" if is_usage_path(family, path) else severity


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out = f"{out}[]" if isinstance(part, int) else _join(out, str(part))
    return out


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    if not name:
        return prefix
    return f"{prefix}.{name}"


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per (kind, path): a field missing from 40 delta events is one change."""
    seen: set[tuple[str, str]] = set()
    out: list[Finding] = []
    for finding in findings:
        key = (finding.kind, finding.path)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out
