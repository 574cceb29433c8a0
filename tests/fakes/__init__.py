"""Fake upstream LLM providers, written from the providers' published wire formats.

Independent of ``llmock_proxy.providers`` on purpose: the proxy is tested
against these. See docs/testing.md.
"""

from tests.fakes.anthropic import AnthropicFake
from tests.fakes.base import FakeProvider, RecordedRequest, Script, StreamEvent, ToolCall
from tests.fakes.bedrock import BedrockFake
from tests.fakes.cohere import CohereFake
from tests.fakes.gemini import GeminiFake
from tests.fakes.ollama import OllamaFake
from tests.fakes.openai import OpenAIFake
from tests.fakes.server import FakeServer
from tests.fakes.tls import TestPKI

PROVIDER_FAKES: dict[str, type[FakeProvider]] = {
    fake.name: fake
    for fake in (OpenAIFake, AnthropicFake, GeminiFake, OllamaFake, CohereFake, BedrockFake)
}

__all__ = [
    "PROVIDER_FAKES",
    "AnthropicFake",
    "BedrockFake",
    "CohereFake",
    "FakeProvider",
    "FakeServer",
    "GeminiFake",
    "OllamaFake",
    "OpenAIFake",
    "RecordedRequest",
    "Script",
    "StreamEvent",
    "TestPKI",
    "ToolCall",
]
