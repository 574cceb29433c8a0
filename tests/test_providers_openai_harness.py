"""The real openai SDK on a transport we hold both ends of.

``httpx.MockTransport`` is the SDK's own transport hook: the SDK builds and
sends its real request, we keep it (as a cassette :class:`Request`) and answer
with real bytes — a rendered JSON body, or SSE events encoded by
:mod:`llmock_proxy.wire.sse` — which the SDK then parses as it would the
network's. Nothing of the code under test is replaced.

Helpers only; the tests live in the ``test_providers_openai_*`` modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai

from llmock_proxy.cassette.model import Request, Response
from tests.harness.http import httpx
from tests.support.providers import as_cassette_request, as_httpx_response

API_KEY = "sk-test-openai-provider"
BASE_URL = "http://127.0.0.1:9/v1"


class SDKTransport:
    """Keeps every request the SDK sends and answers each with ``answer``."""

    def __init__(self, answer: Response | None = None) -> None:
        self.requests: list[Request] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(as_cassette_request(request))
        if self.answer is None:
            return httpx.Response(200, json={})
        return as_httpx_response(self.answer)

    def http_client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def openai(self, base_url: str = BASE_URL) -> openai.OpenAI:
        return openai.OpenAI(api_key=API_KEY, base_url=base_url, http_client=self.http_client(), max_retries=0)

    def azure(self, deployment: str | None = "prod-gpt4o") -> openai.AzureOpenAI:
        return openai.AzureOpenAI(
            api_key=API_KEY,
            api_version="2024-10-21",
            azure_endpoint="http://127.0.0.1:9",
            azure_deployment=deployment,
            http_client=self.http_client(),
            max_retries=0,
        )


def capture(
    call: Callable[[openai.OpenAI], Any], *, base_url: str = BASE_URL, answer: Response | None = None
) -> Request:
    """The request the SDK really sends for ``call`` (answered with ``answer``, or ``{}``)."""
    transport = SDKTransport(answer)
    call(transport.openai(base_url))
    assert len(transport.requests) == 1, transport.requests
    return transport.requests[0]


def client_answering(response: Response) -> openai.OpenAI:
    """An SDK client that receives ``response`` for every call."""
    return SDKTransport(response).openai()
