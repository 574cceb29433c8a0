"""Fake Amazon Bedrock Runtime (bedrock-runtime.<region>.amazonaws.com).

Wire facts followed (docs.aws.amazon.com/bedrock/latest/APIReference):
- ``POST /model/{modelId}/converse`` -> ``{output: {message: {role, content:
  [{text} | {toolUse {toolUseId, name, input}}]}}, stopReason, usage, metrics}``;
- ``/converse-stream`` answers ``application/vnd.amazon.eventstream``: one
  binary frame per event with string headers ``:event-type``,
  ``:content-type`` and ``:message-type`` = ``event``; events
  ``messageStart``, ``contentBlockStart`` (tool use), ``contentBlockDelta``
  (``delta.text`` or ``delta.toolUse.input`` fragments), ``contentBlockStop``,
  ``messageStop``, ``metadata``; payloads carry a random ``p`` padding field;
- ``/invoke`` answers the model's own JSON; ``/invoke-with-response-stream``
  sends ``chunk`` frames whose payload is ``{"bytes": base64(model event)}``
  (Anthropic models: the Messages stream events, the last with
  ``amazon-bedrock-invocationMetrics``);
- requests are SigV4-signed (``Authorization: AWS4-HMAC-SHA256 ...``) or use
  a Bedrock API key (``Bearer``); errors are ``{"message"}`` with an
  ``x-amzn-ErrorType`` header.
When ``credentials`` names the access key, the fake checks the signature with
botocore's signer (an independent implementation), so a proxy that changes a
signed header or the body is caught the way AWS would catch it.
"""

from __future__ import annotations

import base64
import secrets
import string
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from llmock_proxy.cassette.model import EventStreamFrame, Payload
from llmock_proxy.wire.eventstream import encode_frame
from tests.fakes.anthropic import content_blocks, message_events
from tests.fakes.base import (
    FakeProvider,
    JSONDict,
    RecordedRequest,
    Script,
    StreamEvent,
    bearer_token,
    chunk_string,
    compact,
    count_tokens,
    random_id,
)

EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def _padding() -> str:
    # Bedrock pads every stream payload with a random-length "p" to hide token lengths.
    return string.ascii_letters[: 1 + secrets.randbelow(len(string.ascii_letters))]


def _frame(event_type: str, payload: Any) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(EventStreamFrame(headers=headers, payload=Payload.json(payload)))


class BedrockFake(FakeProvider):
    name = "bedrock"
    hosts = (
        "bedrock-runtime.us-east-1.amazonaws.com",
        "bedrock-runtime.us-west-2.amazonaws.com",
        "bedrock-runtime.eu-central-1.amazonaws.com",
    )
    unauthorized_status = 403

    def __init__(self, script: Script | None = None, *, credentials: dict[str, str] | None = None) -> None:
        super().__init__(script)
        self.credentials = dict(credentials or {})
        self._auth_problem = "Missing Authentication Token"

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/model/{model_id:.+}/converse", self.converse),
            ("POST", "/model/{model_id:.+}/converse-stream", self.converse_stream),
            ("POST", "/model/{model_id:.+}/invoke", self.invoke),
            ("POST", "/model/{model_id:.+}/invoke-with-response-stream", self.invoke_stream),
        ]

    # -- auth -----------------------------------------------------------------------------

    def is_authorized(self, request: RecordedRequest) -> bool:
        if bearer_token(request):
            return True
        authorization = request.header("authorization") or ""
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            self._auth_problem = "Missing Authentication Token"
            return False
        problem = self._signature_problem(request, authorization)
        if problem:
            self._auth_problem = problem
            return False
        return True

    def _signature_problem(self, request: RecordedRequest, authorization: str) -> str | None:
        fields = dict(
            part.strip().split("=", 1) for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(",") if "=" in part
        )
        try:
            access_key, date, region, service, _ = fields["Credential"].split("/")
            signed_headers = fields["SignedHeaders"].split(";")
            signature = fields["Signature"]
        except (KeyError, ValueError):
            return "Authorization header requires Credential, SignedHeaders and Signature."
        secret = self.credentials.get(access_key)
        if secret is None:
            # Unknown key: accepted, as the fake cannot know its secret.
            return None
        missing = [h for h in signed_headers if h not in request.headers]
        if missing:
            return f"The request signature we calculated does not match: signed headers {missing} are missing."
        url = f"https://{request.headers['host']}{request.raw_path}"
        aws_request = AWSRequest(
            method=request.method,
            url=url,
            data=request.body,
            headers={h: request.headers[h] for h in signed_headers},
        )
        aws_request.context["timestamp"] = request.headers.get("x-amz-date", "")
        signer = SigV4Auth(Credentials(access_key, secret, request.headers.get("x-amz-security-token")), service, region)
        expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
        if expected != signature:
            return (
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        return None

    def unauthorized_message(self) -> str:
        return self._auth_problem

    def error_body(self, status: int, message: str) -> JSONDict:
        return {"message": message}

    def error_headers(self, status: int) -> dict[str, str]:
        kind = _ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")
        if status == 403 and "signature" in self._auth_problem.lower():
            kind = "InvalidSignatureException"
        elif status == 403:
            kind = "MissingAuthenticationTokenException"
        return {
            "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": random_id("", 32).lower(),
        }

    def _request_headers(self) -> dict[str, str]:
        return {"x-amzn-RequestId": random_id("", 32).lower()}

    # -- converse ------------------------------------------------------------------------

    def _converse_parts(self, script: Script, body: JSONDict) -> tuple[list[JSONDict], str, JSONDict]:
        content: list[JSONDict] = [{"text": script.text}] if script.text else []
        content += [
            {"toolUse": {"toolUseId": c.id or random_id("tooluse_", 22), "name": c.name, "input": c.arguments}}
            for c in script.tool_calls
        ]
        stop_reason = "tool_use" if script.tool_calls else "end_turn"
        input_tokens = count_tokens(body.get("messages", [])) + count_tokens(body.get("system") or [])
        output_tokens = count_tokens(script.text) + count_tokens([c.arguments for c in script.tool_calls])
        usage = {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}
        return content, stop_reason, usage

    async def converse(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        content, stop_reason, usage = self._converse_parts(script, recorded.json or {})
        return self.json_reply(
            script,
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop_reason,
                "usage": usage,
                "metrics": {"latencyMs": 100 + secrets.randbelow(900)},
            },
            headers=self._request_headers(),
        )

    async def converse_stream(
        self, request: web.Request, script: Script, recorded: RecordedRequest
    ) -> web.StreamResponse:
        content, stop_reason, usage = self._converse_parts(script, recorded.json or {})
        events: list[StreamEvent] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append(StreamEvent(kind, {**fields, "p": _padding()}))

        emit("messageStart", role="assistant")
        for index, block in enumerate(content):
            if "text" in block:
                for piece in script.text_chunks():
                    emit("contentBlockDelta", contentBlockIndex=index, delta={"text": piece})
            else:
                tool = block["toolUse"]
                emit(
                    "contentBlockStart",
                    contentBlockIndex=index,
                    start={"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}},
                )
                for piece in chunk_string(compact(tool["input"])):
                    emit("contentBlockDelta", contentBlockIndex=index, delta={"toolUse": {"input": piece}})
            emit("contentBlockStop", contentBlockIndex=index)
        emit("messageStop", stopReason=stop_reason)
        emit("metadata", usage=usage, metrics={"latencyMs": 100 + secrets.randbelow(900)})
        frames = [_frame(e.name or "", e.data) for e in script.shape_events(events)]
        return await self.stream_reply(
            request, script, frames, content_type=EVENTSTREAM_CONTENT_TYPE, headers=self._request_headers()
        )

    # -- invoke (model-native bodies) ---------------------------------------------------------

    @staticmethod
    def _is_anthropic(model_id: str) -> bool:
        return "anthropic." in model_id

    async def invoke(self, request: web.Request, script: Script, recorded: RecordedRequest) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        body = recorded.json or {}
        if self._is_anthropic(model_id):
            _, message = message_events(script, model_id, count_tokens(body.get("messages", [])))
            return self.json_reply(script, message, headers=self._request_headers())
        return self.json_reply(
            script,
            {
                "generation": script.text,
                "prompt_token_count": count_tokens(body.get("prompt", "")),
                "generation_token_count": count_tokens(script.text),
                "stop_reason": "stop",
            },
            headers=self._request_headers(),
        )

    async def invoke_stream(
        self, request: web.Request, script: Script, recorded: RecordedRequest
    ) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        body = recorded.json or {}
        if self._is_anthropic(model_id):
            input_tokens = count_tokens(body.get("messages", []))
            inner, _ = message_events(script, model_id, input_tokens)
            inner = [e for e in inner if e.name != "ping"]  # Bedrock does not relay pings
            output_tokens = count_tokens(script.text) + count_tokens([b.get("input", {}) for b in content_blocks(script)])
            last = inner[-1]
            inner[-1] = StreamEvent(
                last.name,
                {
                    **last.data,
                    "amazon-bedrock-invocationMetrics": {
                        "inputTokenCount": input_tokens,
                        "outputTokenCount": output_tokens,
                        "invocationLatency": 100 + secrets.randbelow(900),
                        "firstByteLatency": 50 + secrets.randbelow(100),
                    },
                },
            )
            # The model events travel inside the frames: no SSE names on the wire.
            inner = [StreamEvent(None, e.data) for e in inner]
        else:
            pieces = script.text_chunks()
            inner = [
                StreamEvent(
                    None,
                    {
                        "generation": piece,
                        "prompt_token_count": count_tokens(body.get("prompt", "")) if i == 0 else None,
                        "generation_token_count": i + 1,
                        "stop_reason": "stop" if i == len(pieces) - 1 else None,
                    },
                )
                for i, piece in enumerate(pieces)
            ]
        frames = [
            _frame("chunk", {"bytes": base64.b64encode(compact(e.data).encode()).decode(), "p": _padding()})
            for e in script.shape_events(inner)
        ]
        return await self.stream_reply(
            request, script, frames, content_type=EVENTSTREAM_CONTENT_TYPE, headers=self._request_headers()
        )
