"""OpenAI's WebSocket APIs: Realtime and the Responses API over WebSocket.

* Realtime: ``GET .../v1/realtime?model=...`` upgraded to a WebSocket
  (Azure: ``/openai/realtime?api-version=...&deployment=...``). The session
  is a transcript of JSON events (``session.update``,
  ``conversation.item.create``, ``response.create`` from the client;
  ``session.created``, ``response.output_text.delta``, ``response.done``...
  from the server).
* Responses over WebSocket: ``GET .../v1/responses`` upgraded (what
  ``client.responses.connect()`` opens); the client sends
  ``response.create`` messages and receives the Responses stream events as
  messages.

The catalog only offers upgrade requests to these providers, so ``detect``
looks at the path alone. What is here: detection and the canonical request
(family, model from the query, always a stream). Reading a recorded
transcript into a summary and rendering one back into messages are not
written yet: :meth:`summarize` and :meth:`render` say so.
"""

from __future__ import annotations

from ..canonical import CanonicalRequest, Summary
from ..cassette import Request, Response
from . import _openai_common as common
from .base import Provider, RenderOptions, split_url


class _OpenAIWebSocket(Provider):
    """Shared by both WebSocket families: detection by path suffix, model from the query."""

    stream_form = "websocket"
    path_suffix: str = ""

    def detect(self, method: str, host: str, path: str) -> bool:
        return method == "GET" and path.rstrip("/").endswith(self.path_suffix)

    def canonical(self, request: Request) -> CanonicalRequest:
        _, _, query = split_url(request.url)
        return CanonicalRequest(
            family=self.family,
            model=query.get("model") or query.get("deployment"),
            stream=True,
        )

    def is_stream_request(self, request: Request) -> bool:
        return True

    def summarize(self, request: Request, response: Response) -> Summary:
        raise NotImplementedError(
            f"{self.family}: summarizing a WebSocket transcript is not implemented yet; "
            "recorded sessions replay verbatim"
        )

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool = True,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        raise NotImplementedError(
            f"{self.family}: rendering a summary as WebSocket messages is not implemented yet; "
            "recorded sessions replay verbatim"
        )

    def error(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
    ) -> Response:
        # Refused before the upgrade: a plain HTTP answer in OpenAI's envelope.
        return common.error_response(status, message, type=type, code=code)


class OpenAIRealtime(_OpenAIWebSocket):
    family = "openai.realtime"
    path_suffix = "/realtime"


class OpenAIResponsesWebSocket(_OpenAIWebSocket):
    family = "openai.responses_ws"
    path_suffix = "/responses"
