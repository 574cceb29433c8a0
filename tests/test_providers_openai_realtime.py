"""OpenAI's WebSocket families: detection, canonical request, one-turn render and summary."""

from __future__ import annotations

import pytest

from llmock_proxy.canonical import Summary
from llmock_proxy.cassette.model import Request
from llmock_proxy.providers.catalog import identify
from llmock_proxy.providers.openai_realtime import (
    OpenAIRealtime,
    OpenAIResponsesWebSocket,
)

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
def test_render_is_one_turn_of_server_messages_and_summarize_reads_it_back(provider: OpenAIRealtime) -> None:
    request = Request("GET", "wss://api.openai.com/v1/realtime?model=gpt-realtime", UPGRADE)
    rendered = provider.render(Summary(text="hi there"), provider.canonical(request), stream=True)
    assert rendered.status == 101 and rendered.websocket is not None
    assert all(not m.from_client for m in rendered.websocket.messages)
    assert provider.summarize(request, rendered).text == "hi there"
    refused = provider.error(404, "no recorded session")
    assert refused.status == 404 and refused.json["error"]["message"] == "no recorded session"
