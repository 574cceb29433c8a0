"""OpenAI's WebSocket families: detection and canonical request (rendering comes later)."""

from __future__ import annotations

import pytest

from llmock_proxy.canonical import Summary
from llmock_proxy.cassette import Request, Response
from llmock_proxy.providers import identify
from llmock_proxy.providers.openai_realtime import OpenAIRealtime, OpenAIResponsesWebSocket

REALTIME = OpenAIRealtime()
RESPONSES_WS = OpenAIResponsesWebSocket()
UPGRADE = {"upgrade": "websocket", "connection": "Upgrade"}


def test_realtime_upgrade_detected_with_model_from_query() -> None:
    url = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert identify("GET", url, UPGRADE).family == "openai.realtime"
    canonical = REALTIME.canonical(Request("GET", url, UPGRADE))
    assert (canonical.family, canonical.model, canonical.stream) == ("openai.realtime", "gpt-realtime", True)
    assert REALTIME.is_stream_request(Request("GET", url, UPGRADE))


def test_azure_realtime_names_the_deployment() -> None:
    url = "wss://example.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=rt-prod"
    assert identify("GET", url, UPGRADE).family == "openai.realtime"
    assert REALTIME.canonical(Request("GET", url, UPGRADE)).model == "rt-prod"


def test_responses_upgrade_is_not_the_http_api() -> None:
    url = "wss://api.openai.com/v1/responses"
    assert identify("GET", url, UPGRADE).family == "openai.responses_ws"
    assert identify("POST", "https://api.openai.com/v1/responses").family == "openai.responses"
    canonical = RESPONSES_WS.canonical(Request("GET", url + "?model=gpt-4.1", UPGRADE))
    assert (canonical.family, canonical.model, canonical.stream) == ("openai.responses_ws", "gpt-4.1", True)


def test_different_models_differ() -> None:
    first = REALTIME.canonical(Request("GET", "wss://api.openai.com/v1/realtime?model=gpt-realtime", UPGRADE))
    second = REALTIME.canonical(Request("GET", "wss://api.openai.com/v1/realtime?model=gpt-realtime-mini", UPGRADE))
    assert first.fingerprint != second.fingerprint


@pytest.mark.parametrize("provider", [REALTIME, RESPONSES_WS])
def test_transcript_rendering_is_not_written_yet(provider: OpenAIRealtime) -> None:
    request = Request("GET", "wss://api.openai.com/v1/realtime?model=gpt-realtime", UPGRADE)
    with pytest.raises(NotImplementedError, match=provider.family):
        provider.render(Summary(text="hi"), provider.canonical(request), stream=True)
    with pytest.raises(NotImplementedError, match="not implemented yet"):
        provider.summarize(request, Response(101))
    refused = provider.error(404, "no recorded session")
    assert refused.status == 404 and refused.json["error"]["message"] == "no recorded session"
