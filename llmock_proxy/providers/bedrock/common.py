"""What both Bedrock APIs share: routing by path, EventStream frames, errors,
and the provider base."""

from __future__ import annotations

import binascii
import re
from typing import Any
from urllib.parse import unquote

from llmock_proxy import nesting
from llmock_proxy.canonical import (
    Summary,
    canonical_json,
)
from llmock_proxy.cassette.model import (
    EventStreamFrame,
    Payload,
    Request,
    Response,
)
from llmock_proxy.providers.base import (
    COMMON_CATEGORICAL_FIELDS,
    CredentialScheme,
    Provider,
    SigV4,
    json_uuid,
    split_url,
)

JSON_CONTENT_TYPE = "application/json"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
DEFAULT_CHUNK_SIZE = 8

_ROUTE = re.compile(
    r"/model/(?P<model>.+)/(?P<operation>converse-stream|converse|invoke-with-response-stream|invoke)/?$"
)
# bedrock-runtime[-fips].<region>.amazonaws.com
_RUNTIME_HOST = re.compile(r"^bedrock-runtime(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")

STOP_REASONS = (
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "guardrail_intervened",
    "content_filtered",
    "malformed_model_output",
    "malformed_tool_use",
    "model_context_window_exceeded",
)
FOREIGN_STOP_REASONS = {
    "stop": "end_turn",
    "STOP": "end_turn",
    "COMPLETE": "end_turn",
    "length": "max_tokens",
    "MAX_TOKENS": "max_tokens",
    "STOP_SEQUENCE": "stop_sequence",
    "tool_calls": "tool_use",
    "TOOL_CALL": "tool_use",
    "content_filter": "content_filtered",
    "SAFETY": "content_filtered",
}

# The service's exceptions and the HTTP status each is sent with.
EXCEPTION_STATUS = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_EXCEPTION_BY_STATUS = {
    400: "ValidationException",
    401: "AccessDeniedException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
ERROR_TYPE_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"


def route(path: str) -> tuple[str, str] | None:
    """(model id, operation) of a Bedrock Runtime path; the id URL-decoded."""
    found = _ROUTE.search(path)
    if found is None:
        return None
    return unquote(found["model"]), found["operation"]


def host_region(url: str) -> str | None:
    """The AWS region a Bedrock Runtime URL names in its host; None for any
    other host (a gateway, a VPC endpoint, a local fake)."""
    found = _RUNTIME_HOST.match(split_url(url)[0])
    return found["region"] if found else None


def request_id(*parts: Any) -> str:
    """An ``x-amzn-requestid``: the same for the same answer, so replays are identical."""
    return json_uuid(*parts)


# -- EventStream frames -------------------------------------------------------------


def event_frame(event_type: str, payload: dict[str, Any]) -> EventStreamFrame:
    return EventStreamFrame(
        headers={
            ":event-type": event_type,
            ":content-type": JSON_CONTENT_TYPE,
            ":message-type": "event",
        },
        payload=Payload.json(payload),
    )


def exception_frame(exception_type: str, message: str) -> EventStreamFrame:
    """An error inside a stream: the exception's member name (lowerCamelCase)."""
    return EventStreamFrame(
        headers={
            ":exception-type": exception_type[:1].lower() + exception_type[1:],
            ":content-type": JSON_CONTENT_TYPE,
            ":message-type": "exception",
        },
        payload=Payload.json({"message": message}),
    )


def frame_json(frame: EventStreamFrame) -> Any:
    if frame.payload.kind == "json":
        return frame.payload.value
    try:
        return nesting.loads(frame.payload.to_bytes())
    except (ValueError, binascii.Error):
        return None


def frame_error(frame: EventStreamFrame, status: int) -> dict[str, Any] | None:
    """The error a frame carries, or None for an ordinary event."""
    kind = frame.headers.get(":message-type")
    if kind == "exception":
        data = frame_json(frame)
        message = data.get("message") if isinstance(data, dict) else None
        return {
            "status": status,
            "type": str(frame.headers.get(":exception-type") or "exception"),
            "message": str(message if message is not None else ""),
        }
    if kind == "error":
        return {
            "status": status,
            "type": str(frame.headers.get(":error-code") or "error"),
            "message": str(frame.headers.get(":error-message") or ""),
        }
    return None


def eventstream_response(
    frames: list[EventStreamFrame], extra_headers: dict[str, str] | None = None
) -> Response:
    headers = {
        "content-type": EVENTSTREAM_CONTENT_TYPE,
        "x-amzn-requestid": request_id([f.to_dict() for f in frames]),
        **(extra_headers or {}),
    }
    return Response(status=200, headers=headers, frames=frames)


# -- errors ----------------------------------------------------------------------------


def exception_name(status: int, type: str | None = None) -> str:
    """The Bedrock exception for an error: ``type`` when it already names one."""
    if type and type.endswith("Exception"):
        return type[:1].upper() + type[1:]
    if status in _EXCEPTION_BY_STATUS:
        return _EXCEPTION_BY_STATUS[status]
    return "InternalServerException" if status >= 500 else "ValidationException"


def error_response(status: int, message: str, type: str | None = None) -> Response:
    name = exception_name(status, type)
    return Response(
        status=status,
        headers={
            "content-type": JSON_CONTENT_TYPE,
            "x-amzn-requestid": request_id(status, name, message),
            "x-amzn-errortype": f"{name}:{ERROR_TYPE_NAMESPACE}",
        },
        body=Payload.json({"message": message}),
    )


def http_error(response: Response) -> dict[str, Any] | None:
    """The error of a non-stream response: status >= 400 and the errortype header."""
    if response.status < 400:
        return None
    data = response.body.value if response.body is not None else None
    message = data.get("message", data.get("Message")) if isinstance(data, dict) else data
    header = response.headers.get("x-amzn-errortype", "")
    return {
        "status": response.status,
        "type": header.split(":", 1)[0] or exception_name(response.status),
        "message": message if isinstance(message, str) else canonical_json(message),
    }


def render_error(summary: Summary, stream: bool, frames_before: list[EventStreamFrame]) -> Response:
    """An error summary: an HTTP error, or (recorded inside a stream) the
    stream's content followed by an exception frame."""
    error = summary.error or {}
    status = int(error.get("status") or 500)
    message = str(error.get("message") or "")
    if status < 400 and stream:
        name = exception_name(424, str(error.get("type") or "modelStreamErrorException"))
        return eventstream_response([*frames_before, exception_frame(name, message)])
    if status < 400:
        name = exception_name(500, error.get("type"))
        status = EXCEPTION_STATUS.get(name, 500)
    return error_response(status, message, error.get("type"))


class BedrockProvider(Provider):
    """Base of the two Bedrock families: recognised by path, errors in AWS's envelope."""

    stream_form = "eventstream"
    operations: tuple[str, ...] = ()
    categorical_fields = COMMON_CATEGORICAL_FIELDS | {"stopReason", "stop_reason"}

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        # An API key for Bedrock, else SigV4 with the AWS credentials.
        return (
            CredentialScheme(("AWS_BEARER_TOKEN_BEDROCK",)),
            CredentialScheme(
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                sigv4=SigV4("bedrock", region=host_region(request.url)),
            ),
        )

    def detect(self, method: str, host: str, path: str) -> bool:
        found = route(path)
        return method == "POST" and found is not None and found[1] in self.operations

    @staticmethod
    def _route(request: Request) -> tuple[str | None, str]:
        found = route(split_url(request.url)[1])
        return (found[0], found[1]) if found else (None, "")

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        return error_response(status, message, type)  # the exception name is the only code


