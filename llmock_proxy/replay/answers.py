"""Answers that are not recordings: a miss, an internal error, a WebSocket
upgrade that is not forwarded (the control endpoints: :mod:`llmock_proxy.replay.control`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from llmock_proxy.providers.base import split_url
from llmock_proxy.providers.catalog import identify
from llmock_proxy.replay.plan import Plan
from llmock_proxy.replay.session import DEFAULT_MISS_STATUS, MISS_HEADERS, Miss
from llmock_proxy.replay.wire_form import body_bytes, response_headers

log = logging.getLogger("llmock_proxy.replay")


# What a request no recording or fixture matches gets: an error (replay), or
# forwarded upstream and recorded (auto) or not (passthrough).
MODES = ("replay", "auto", "passthrough")


def miss_plan(miss: Miss, arrival: float = 0.0) -> Plan:
    response = miss.response()
    return Plan(response.status, response_headers(response), body=body_bytes(response.body), arrival=arrival)


def json_plan(status: int, data: Any) -> Plan:
    return Plan(status, [("content-type", "application/json")], body=json.dumps(data).encode())


def websocket_not_forwarded_plan(method: str, path: str, mode: str, status: int = DEFAULT_MISS_STATUS) -> Plan:
    """The base-URL server replays WebSocket sessions but never forwards them:
    say so (with the session's miss ``status``), rather than let a client in
    passthrough/auto mode read the refusal as a recording that does not fit."""
    message = (
        f"llmock-proxy serve: nothing recorded for the WebSocket upgrade {method} {path}, and "
        f"--mode {mode} does not forward WebSocket sessions; record them through the proxy: "
        "mitmdump -s addons/replay.py --set llmock_mode=auto (or addons/record.py)"
    )
    log.warning("%s", message)
    plan = json_plan(status, {"error": {"message": message, "type": "websocket_not_forwarded"}})
    plan.headers.extend(MISS_HEADERS.items())
    return plan


# An answer llmock-proxy failed to build (a bug, or input nothing foresaw):
# marked, and not retried by the SDKs (openai and anthropic read x-should-retry).
INTERNAL_ERROR_STATUS = 500


INTERNAL_ERROR_HEADERS = (("x-llmock-error", "1"), ("x-should-retry", "false"))


def internal_error_plan(method: str, url: str, headers: dict[str, str], exc: BaseException) -> Plan:
    """The answer to a request whose replay failed with ``exc``: status 500
    in the provider's error envelope when the provider can say it, never a
    forwarded request."""
    message = f"llmock-proxy failed to replay {method} {split_url(url)[1]}: {type(exc).__name__}: {exc}"
    try:
        response = identify(method, url, headers).error(INTERNAL_ERROR_STATUS, message, type="api_error")
        plan = Plan(response.status, response_headers(response), body=body_bytes(response.body))
    except Exception:  # the provider itself is what failed
        plan = json_plan(INTERNAL_ERROR_STATUS, {"error": {"message": message, "type": "api_error"}})
    plan.headers.extend(INTERNAL_ERROR_HEADERS)
    return plan


def log_internal_error(method: str, url: str, exc: BaseException) -> None:
    log.error("llmock-proxy failed to replay %s %s (answered 500)", method, url, exc_info=exc)


def log_miss(miss: Miss, mode: str) -> None:
    """The one line a miss gets."""
    if mode == "replay":
        log.warning("replay miss (not forwarded): %s", miss.message)
    else:
        log.info("replay miss (%s): %s", mode, miss.message)
