"""The control endpoints under ``/__llmock/``, shared by ``serve`` and the replay addon.

=========================================  ===================================================
``GET /__llmock/health``                   status, loaded fixtures, counts, open sessions
``POST /__llmock/reset``                   forget the selected session's state and journal
``POST /__llmock/sessions``                open a session (JSON body, all keys optional:
                                           ``id``, ``cassettes``, ``fixtures``, ``mode``,
                                           ``record_to``, ``upstreams``)
``GET /__llmock/sessions``                 the open sessions' ids
``GET /__llmock/sessions/<id>/requests``   the session's journal
``GET /__llmock/sessions/<id>/unused``     its recordings and fixtures never used
``POST /__llmock/sessions/<id>/reset``     forget its state and journal
``DELETE /__llmock/sessions/<id>``         close it; answers its journal and unused list
=========================================  ===================================================

Control requests that change state (every method but GET and HEAD) must
carry the header ``x-llmock-control`` (any value): a web page cannot send
it cross-origin without a CORS preflight, and the preflight of a control
path is refused, as is reading a control answer from a page (no CORS
headers, but for the health check's). Through the replay addon, the control endpoints answer on the
control host ``llmock.invalid`` (or a loopback host, as in reverse mode)
only: ``POST https://api.openai.com/__llmock/reset`` is an ordinary request.

"The selected session" is the one the request names (``x-llmock-session``
header or ``/__llmock/session/<id>/`` prefix), else the default one. Files
named in ``POST /__llmock/sessions`` are read relative to the server's
working directory; a session opened without any shares the server's loaded
recordings, with state of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmock_proxy.errors import CassetteError, MatchSpecError
from llmock_proxy.replay.answers import json_plan
from llmock_proxy.replay.plan import Plan, Timing
from llmock_proxy.replay.session import ReplaySession
from llmock_proxy.replay.sessions import SESSION_PREFIX, SessionRegistry, SessionSettings

CONTROL_PREFIX = "/__llmock/"
CONTROL_HEADER = "x-llmock-control"
HEALTH_PATH = "/__llmock/health"
# The host the replay addon answers control requests on (.invalid never resolves).
CONTROL_HOST = "llmock.invalid"

ENDPOINTS = (
    "GET /__llmock/health",
    "POST /__llmock/reset",
    "POST /__llmock/sessions",
    "GET /__llmock/sessions",
    "GET /__llmock/sessions/<id>/requests",
    "GET /__llmock/sessions/<id>/unused",
    "POST /__llmock/sessions/<id>/reset",
    "DELETE /__llmock/sessions/<id>",
)


def is_control(path: str) -> bool:
    """Whether ``path`` (inside its session) is a control endpoint."""
    return path.startswith(CONTROL_PREFIX) and not path.startswith(SESSION_PREFIX)


def control_plan(
    registry: SessionRegistry,
    session: ReplaySession,
    method: str,
    path: str,
    body: bytes,
    timing: Timing,
    mode: str,
    headers: Mapping[str, str],
    *,
    forwarding: bool = True,
) -> Plan | None:
    """The answer of a control endpoint; None when ``path`` is none.
    ``session``: the session the request selected; ``path`` without query;
    ``forwarding``: whether the server can send a named session's requests
    upstream (sessions in another mode than replay); ``headers``: lower-case names."""
    if not is_control(path):
        return None
    if method not in ("GET", "HEAD") and CONTROL_HEADER not in headers:
        return json_plan(403, {"error": {
            "message": f"llmock-proxy: {method} {path} changes state: send the header {CONTROL_HEADER}: 1 "
            "(a web page cannot send it cross-origin)",
            "type": "control_header_required",
        }})
    parts = path[len(CONTROL_PREFIX):].strip("/").split("/")
    name = parts[0]
    if name == "health" and len(parts) == 1 and method in ("GET", "HEAD"):
        return json_plan(200, _health(registry, session, timing, mode))
    if name == "reset" and len(parts) == 1 and method == "POST":
        session.reset()
        return json_plan(200, {"reset": True, "session": session.name})
    if name == "sessions":
        return _sessions(registry, method, parts[1:], body, forwarding)
    return _unknown(method, path)


def _health(registry: SessionRegistry, session: ReplaySession, timing: Timing, mode: str) -> dict[str, Any]:
    fixtures = session.fixtures()
    recorded = sum(1 for f in fixtures if f.recorded)
    return {
        "status": "ok",
        "session": session.name,
        "fixtures": len(fixtures),
        "recordings": recorded,
        "handWritten": len(fixtures) - recorded,
        "candidates": len(session.matcher),
        "hits": session.hits,
        "misses": session.misses,
        "sessions": len(registry),
        "mode": mode,
        "timing": timing.name,
    }


def _sessions(registry: SessionRegistry, method: str, rest: list[str], body: bytes, forwarding: bool) -> Plan:
    if not rest:
        if method == "POST":
            return _open(registry, body, forwarding)
        if method == "GET":
            return json_plan(200, {"sessions": registry.ids()})
        return _unknown(method, "/__llmock/sessions")
    session_id, action = rest[0], "/".join(rest[1:])
    session = registry.get(session_id)
    if session is None:
        return json_plan(404, {"error": {"message": f"llmock-proxy: no replay session {session_id!r}",
                                         "type": "unknown_session"}})
    if method == "GET" and action == "requests":
        return json_plan(200, {"id": session_id, "requests": [e.to_dict() for e in session.journal]})
    if method == "GET" and action == "unused":
        return json_plan(200, {"id": session_id, "unused": [o.to_dict() for o in session.unused()]})
    if method == "POST" and action == "reset":
        session.reset()
        return json_plan(200, {"reset": True, "session": session_id})
    if method == "DELETE" and not action:
        registry.close(session_id)
        return json_plan(200, {
            "id": session_id,
            "requests": [e.to_dict() for e in session.journal],
            "unused": [o.to_dict() for o in session.unused()],
        })
    return _unknown(method, f"/__llmock/sessions/{session_id}/{action}")


def _open(registry: SessionRegistry, body: bytes, forwarding: bool) -> Plan:
    """``POST /__llmock/sessions``: 201 with the id and path prefix; 400
    naming the field for bad input, 409 for an id already open."""
    try:
        spec = json.loads(body or b"{}")
    except ValueError as exc:
        return _bad(f"the body is not JSON: {exc}")
    if not isinstance(spec, dict):
        return _bad("the body must be a JSON object")
    unknown = sorted(set(spec) - {"id", "cassettes", "fixtures", "mode", "record_to", "upstreams"})
    if unknown:
        return _bad(f"unknown field(s) {', '.join(unknown)}")
    session_id = spec.get("id") or registry.new_id()
    if registry.get(session_id) is not None:
        return json_plan(409, {"error": {"message": f"session {session_id!r} is already open",
                                         "type": "session_exists"}})
    cassettes, fixtures = spec.get("cassettes") or [], spec.get("fixtures") or []
    for field_name, value in (("cassettes", cassettes), ("fixtures", fixtures)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return _bad(f"{field_name}: expected a list of paths")
    upstreams = spec.get("upstreams") or {}
    if not isinstance(upstreams, dict) or not all(isinstance(v, str) for v in upstreams.values()):
        return _bad("upstreams: expected an object of vendor -> base URL")
    record_to = spec.get("record_to")
    if record_to is not None and not isinstance(record_to, str):
        return _bad("record_to: expected a path")
    try:
        settings = SessionSettings(
            mode=spec.get("mode") or "replay",
            record_to=Path(record_to) if record_to else None,
            upstreams=dict(upstreams),
        )
    except ValueError as exc:
        return _bad(str(exc))
    if settings.mode != "replay" and not forwarding:
        return _bad(f"mode {settings.mode!r}: this server replays sessions only; record per session "
                    "through llmock-proxy serve or the pytest plugin's base-URL transport")
    session = None
    if cassettes or fixtures:
        default = registry.default
        try:
            session = ReplaySession.load(
                cassettes, fixtures, name=session_id,
                miss_status=default.miss_status, embedding_fallback=default.embedding_fallback,
            )
        except (CassetteError, MatchSpecError, OSError) as exc:
            return _bad(str(exc))
    try:
        registry.open(session_id, session, settings)
    except ValueError as exc:
        return _bad(str(exc))
    return json_plan(201, {"id": session_id, "prefix": SESSION_PREFIX + session_id, "mode": settings.mode})


def _bad(message: str) -> Plan:
    return json_plan(400, {"error": {"message": f"llmock-proxy: POST /__llmock/sessions: {message}",
                                     "type": "invalid_request_error"}})


def _unknown(method: str, path: str) -> Plan:
    return json_plan(404, {"error": f"unknown control endpoint {method} {path}", "endpoints": list(ENDPOINTS)})
