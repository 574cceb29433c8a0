"""The provider catalog: which API family a request belongs to.

:func:`identify` asks each provider in :data:`CATALOG` whether it knows the
request's method, host and path; the first that does wins, and the
``generic`` family (match on method, url and body) catches everything else,
so record and replay work for any HTTP API.
"""

from __future__ import annotations

from llmock_proxy.providers.anthropic_messages import AnthropicMessages
from llmock_proxy.providers.base import Provider, RenderOptions, split_url
from llmock_proxy.providers.bedrock.converse import BedrockConverse
from llmock_proxy.providers.bedrock.invoke import BedrockInvoke
from llmock_proxy.providers.cohere import CohereChat
from llmock_proxy.providers.gemini import GeminiEmbed, GeminiGenerate
from llmock_proxy.providers.gemini_live import GeminiLive
from llmock_proxy.providers.generic import Generic
from llmock_proxy.providers.ollama import OllamaChat, OllamaEmbed, OllamaGenerate
from llmock_proxy.providers.openai_chat import OpenAIChat
from llmock_proxy.providers.openai_embeddings import OpenAIEmbeddings
from llmock_proxy.providers.openai_realtime import (
    OpenAIRealtime,
    OpenAIResponsesWebSocket,
)
from llmock_proxy.providers.openai_responses import OpenAIResponses

# Stateless instances; the order matters only where paths overlap (the
# WebSocket upgrade of /v1/responses is tried before the HTTP Responses API).
CATALOG: tuple[Provider, ...] = (
    OpenAIChat(),
    OpenAIResponsesWebSocket(),
    OpenAIResponses(),
    OpenAIEmbeddings(),
    OpenAIRealtime(),
    AnthropicMessages(),
    GeminiGenerate(),
    GeminiEmbed(),
    GeminiLive(),
    OllamaChat(),
    OllamaGenerate(),
    OllamaEmbed(),
    CohereChat(),
    BedrockConverse(),
    BedrockInvoke(),
)


GENERIC: Provider = Generic()


_BY_FAMILY = {p.family: p for p in (*CATALOG, GENERIC)}


def identify(method: str, url: str, headers: dict[str, str] | None = None) -> Provider:
    """The provider for a request. ``headers`` tells a WebSocket upgrade
    (``upgrade: websocket``) from a plain HTTP request on the same path."""
    host, path, _ = split_url(url)
    upgrade = (headers or {}).get("upgrade", "").lower() == "websocket"
    for provider in CATALOG:
        if provider.stream_form == "websocket" and not upgrade:
            continue
        if provider.stream_form != "websocket" and upgrade:
            continue
        if provider.detect(method.upper(), host, path):
            return provider
    return GENERIC


def by_family(family: str) -> Provider:
    """The provider for a family name as stored in a cassette's ``match``."""
    try:
        return _BY_FAMILY[family]
    except KeyError:
        raise KeyError(f"unknown API family {family!r}; known: {', '.join(sorted(_BY_FAMILY))}") from None


def grammar_of(family: str) -> Provider:
    """The provider that knows a family's grammar; the generic one for a family
    this version does not know (a cassette may name one it made up)."""
    return _BY_FAMILY.get(family, GENERIC)


FAMILIES: tuple[str, ...] = tuple(_BY_FAMILY)


__all__ = ["CATALOG", "FAMILIES", "GENERIC", "Provider", "RenderOptions", "by_family", "grammar_of", "identify"]
