"""Real SDK clients wired for tests: through the proxy (regular mode) or at a base URL.

Regular mode: the client keeps the real provider URL and sends everything
through ``proxy.url``, trusting the proxy's CA (``proxy.ca_cert_path``;
anything with those two attributes works: :class:`InProcessProxy`,
:class:`MitmdumpProcess`). Each SDK is configured the way its users do it,
with its own classes, so the same code drives the httpx-era releases and the
httpx2 majors: openai and anthropic get their ``DefaultHttpxClient`` /
``DefaultAsyncHttpxClient`` as ``http_client``; google-genai gets
``HttpOptions.client_args`` (its sync client) and ``async_client_args`` (its
async client: aiohttp when installed, as it is here).

Base-URL mode (reverse proxy, replay server, or a fake directly): pass
``base_url`` instead of ``proxy``. Either way ``trust_env`` is off, so a
developer's HTTPS_PROXY can never route test traffic elsewhere, and SDK
retries default to 0 so error tests stay fast (override with ``max_retries``).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import anthropic
import openai
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from google import genai
from google.genai import types as genai_types

from tests.harness.http import httpx

TEST_OPENAI_KEY = "sk-test-openai-key"
TEST_ANTHROPIC_KEY = "sk-test-anthropic-key"
TEST_GEMINI_KEY = "sk-test-gemini-key"
TEST_COHERE_KEY = "sk-test-cohere-key"
TEST_AWS_ACCESS_KEY = "test-access-key"
TEST_AWS_SECRET = "sk-test-aws-secret"
TEST_AWS_CREDENTIALS = {TEST_AWS_ACCESS_KEY: TEST_AWS_SECRET}

OPENAI_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com"
GEMINI_URL = "https://generativelanguage.googleapis.com"
COHERE_URL = "https://api.cohere.com"
OLLAMA_URL = "https://ollama.com"


def bedrock_url(region: str = "us-east-1") -> str:
    return f"https://bedrock-runtime.{region}.amazonaws.com"


DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class ProxyEndpoint(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def ca_cert_path(self) -> Path: ...


def _ssl_context(ca_cert_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_cert_path))


def _httpx_kwargs(proxy: ProxyEndpoint | None, timeout: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_env": False, "timeout": timeout}
    if proxy is not None:
        kwargs["proxy"] = proxy.url
        kwargs["verify"] = _ssl_context(proxy.ca_cert_path)
    return kwargs


def raw_client(proxy: ProxyEndpoint | None = None, *, timeout: Any = DEFAULT_TIMEOUT, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` through ``proxy`` (trusting its CA), or direct when None."""
    return httpx.Client(**_httpx_kwargs(proxy, timeout), **kwargs)


def async_raw_client(
    proxy: ProxyEndpoint | None = None, *, timeout: Any = DEFAULT_TIMEOUT, **kwargs: Any
) -> httpx.AsyncClient:
    return httpx.AsyncClient(**_httpx_kwargs(proxy, timeout), **kwargs)


def _base_url(proxy: ProxyEndpoint | None, base_url: str | None, real_url: str) -> str:
    if proxy is None and base_url is None:
        raise ValueError("give proxy= (regular mode, real provider URL) or base_url= (reverse/base-URL mode)")
    return base_url or real_url


# -- OpenAI ---------------------------------------------------------------------------------


def openai_client(
    proxy: ProxyEndpoint | None = None,
    *,
    base_url: str | None = None,
    api_key: str = TEST_OPENAI_KEY,
    max_retries: int = 0,
    **kwargs: Any,
) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=api_key,
        base_url=_base_url(proxy, base_url, OPENAI_URL),
        max_retries=max_retries,
        http_client=openai.DefaultHttpxClient(**_httpx_kwargs(proxy, DEFAULT_TIMEOUT)),
        **kwargs,
    )


def async_openai_client(
    proxy: ProxyEndpoint | None = None,
    *,
    base_url: str | None = None,
    api_key: str = TEST_OPENAI_KEY,
    max_retries: int = 0,
    **kwargs: Any,
) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=_base_url(proxy, base_url, OPENAI_URL),
        max_retries=max_retries,
        http_client=openai.DefaultAsyncHttpxClient(**_httpx_kwargs(proxy, DEFAULT_TIMEOUT)),
        **kwargs,
    )


# -- Anthropic ------------------------------------------------------------------------------


def anthropic_client(
    proxy: ProxyEndpoint | None = None,
    *,
    base_url: str | None = None,
    api_key: str = TEST_ANTHROPIC_KEY,
    max_retries: int = 0,
    **kwargs: Any,
) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=api_key,
        base_url=_base_url(proxy, base_url, ANTHROPIC_URL),
        max_retries=max_retries,
        http_client=anthropic.DefaultHttpxClient(**_httpx_kwargs(proxy, DEFAULT_TIMEOUT)),
        **kwargs,
    )


def async_anthropic_client(
    proxy: ProxyEndpoint | None = None,
    *,
    base_url: str | None = None,
    api_key: str = TEST_ANTHROPIC_KEY,
    max_retries: int = 0,
    **kwargs: Any,
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key=api_key,
        base_url=_base_url(proxy, base_url, ANTHROPIC_URL),
        max_retries=max_retries,
        http_client=anthropic.DefaultAsyncHttpxClient(**_httpx_kwargs(proxy, DEFAULT_TIMEOUT)),
        **kwargs,
    )


# -- Google GenAI ---------------------------------------------------------------------------------


def genai_client(
    proxy: ProxyEndpoint | None = None,
    *,
    base_url: str | None = None,
    api_key: str = TEST_GEMINI_KEY,
    api_version: str | None = None,
    **kwargs: Any,
) -> genai.Client:
    """A google-genai client (AI Studio), owning its http clients: ``client.close()``
    closes the sync one, ``await client.aio.aclose()`` the async one."""
    sync_args = _httpx_kwargs(proxy, DEFAULT_TIMEOUT)
    # The async side is aiohttp (installed here, as in most users' environments):
    # genai passes these to aiohttp's request(), so ``ssl``, not ``verify``.
    async_args: dict[str, Any] = {}
    if proxy is not None:
        async_args = {"proxy": proxy.url, "ssl": _ssl_context(proxy.ca_cert_path)}
    options = genai_types.HttpOptions(
        base_url=_base_url(proxy, base_url, GEMINI_URL),
        api_version=api_version,
        client_args=sync_args,
        async_client_args=async_args,
    )
    return genai.Client(api_key=api_key, http_options=options, **kwargs)


@contextlib.asynccontextmanager
async def async_genai_client(
    proxy: ProxyEndpoint | None = None, *, base_url: str | None = None, **kwargs: Any
) -> AsyncIterator[Any]:
    """``async with async_genai_client(...) as aio:`` -> ``genai.Client(...).aio``, closed after."""
    client = genai_client(proxy, base_url=base_url, **kwargs)
    try:
        yield client.aio
    finally:
        await client.aio.aclose()
        client.close()


# -- Bedrock request signing ---------------------------------------------------------------------


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    *,
    region: str = "us-east-1",
    headers: dict[str, str] | None = None,
    access_key: str = TEST_AWS_ACCESS_KEY,
    secret_key: str = TEST_AWS_SECRET,
) -> dict[str, str]:
    """Headers (Host, Authorization, X-Amz-Date, ...) signing a Bedrock request as the AWS SDKs do.

    Host is included so a request sent straight to a fake's 127.0.0.1 URL can
    still present the signed host.
    """
    request = AWSRequest(
        method=method, url=url, data=body, headers={"host": httpx.URL(url).netloc.decode(), **(headers or {})}
    )
    SigV4Auth(Credentials(access_key, secret_key), "bedrock", region).add_auth(request)
    return dict(request.headers.items())
