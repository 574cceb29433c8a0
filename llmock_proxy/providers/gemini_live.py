"""Gemini Live: the bidirectional WebSocket ``BidiGenerateContent`` API.

The google-genai SDK always opens ``wss://`` on one of these paths:

* AI Studio: ``/ws/google.ai.generativelanguage.{v1alpha,v1beta}.GenerativeService.BidiGenerateContent``
  (``...BidiGenerateContentConstrained`` with an ephemeral token);
* Vertex AI: ``/ws/google.cloud.aiplatform.{v1,v1beta1}.LlmBidiService/BidiGenerateContent``.

The upgrade request carries no body: the model arrives later, in the first
client message (``{"setup": {"model": ...}}``). So the canonical request of an
upgrade knows only its family and that it streams; the session's messages are
read from the WebSocket transcript, which this module does not interpret yet.
"""

from __future__ import annotations

import re

from ..canonical import CanonicalRequest, Summary
from ..cassette import Request, Response
from .base import Provider, RenderOptions
from .gemini import google_error

_LIVE_PATH = re.compile(
    r"/ws/(?:"
    r"google\.ai\.generativelanguage\.v1(?:alpha|beta)\.GenerativeService\.BidiGenerateContent(?:Constrained)?"
    r"|google\.cloud\.aiplatform\.v1(?:beta1)?\.LlmBidiService/BidiGenerateContent"
    r")$"
)


class GeminiLive(Provider):
    family = "gemini.live"
    stream_form = "websocket"

    def detect(self, method: str, host: str, path: str) -> bool:
        return method == "GET" and _LIVE_PATH.search(path) is not None

    def canonical(self, request: Request) -> CanonicalRequest:
        # The model is only named in the setup message, after the upgrade.
        return CanonicalRequest(family=self.family, model=None, stream=True)

    def summarize(self, request: Request, response: Response) -> Summary:
        raise NotImplementedError(
            "gemini.live: summarizing a Live WebSocket transcript is not supported yet; "
            "replay serves recorded Live sessions verbatim"
        )

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        raise NotImplementedError(
            "gemini.live: synthesizing Live WebSocket messages from a summary is not supported yet; "
            "replay serves recorded Live sessions verbatim"
        )

    def error(self, status: int, message: str, *, type: str = "invalid_request_error") -> Response:
        # A refused upgrade is an ordinary HTTP response in Google's envelope.
        return google_error(status, message, type)


__all__ = ["GeminiLive"]
