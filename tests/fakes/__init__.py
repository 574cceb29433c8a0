"""Fake upstream LLM providers, written from the providers' published wire formats.

Independent of ``llmock_proxy.providers`` on purpose: the proxy is tested
against these. See docs/testing.md.
"""

from .anthropic import AnthropicFake
from .base import FakeProvider, RecordedRequest, Script, StreamEvent, ToolCall
from .bedrock import BedrockFake
from .cohere import CohereFake
from .gemini import GeminiFake
from .ollama import OllamaFake
from .openai import OpenAIFake
from .server import FakeServer
from .tls import TestPKI

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
