"""The ``match`` key a recording gets at record time, derived from its canonical request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmock_proxy.canonical import CanonicalRequest

if TYPE_CHECKING:
    pass


def derive_match(request: CanonicalRequest) -> dict[str, Any]:
    """The ``match`` section written for a recorded interaction.

    ``family``, ``model``, ``stream`` and ``fingerprint`` make it strict; the
    readable criteria below them (llmock fixture vocabulary) say what the
    request was about, so a person can loosen the match by deleting the
    fingerprint line and keep matching on, say, the last user message.
    """
    match: dict[str, Any] = {"family": request.family}
    if request.model is not None:
        match["model"] = request.model
    match["stream"] = request.stream
    match["fingerprint"] = request.fingerprint
    if request.family == "generic":
        for key in ("method", "path"):
            if key in request.extra:
                match[key] = request.extra[key]
    user = request.last_user_message
    if user:
        match["userMessage"] = user
    if request.embedding_input:
        match["inputText"] = "\n".join(request.embedding_input)
    result = request.last_tool_result
    if result is not None and result.tool_call_id:
        match["toolCallId"] = result.tool_call_id
    if request.tool_names:
        match["toolNames"] = request.tool_names
    fmt = request.response_format
    if isinstance(fmt, dict) and isinstance(fmt.get("type"), str):
        match["responseFormat"] = fmt["type"]
    return match
