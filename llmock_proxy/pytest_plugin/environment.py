"""The environment variables SDKs and child processes read, set for one test and put back after.

Base-URL transport: each SDK's base-URL variable points at the test's session
prefix on the in-process engine (``http://127.0.0.1:PORT/__llmock/session/<id>``).
Who reads what (checked against the installed SDKs):

* ``OPENAI_BASE_URL`` (with ``/v1``): openai-python when a client is made
  (2.x and 3.x), and most OpenAI-compatible tools.
* ``ANTHROPIC_BASE_URL``: anthropic-python when a client is made (0.x, 2.x).
* ``GOOGLE_GEMINI_BASE_URL``: google-genai when a ``genai.Client()`` for the
  Gemini API is made (2.x and 3.x, ``_base_url.get_base_url``); Vertex AI
  clients read ``GOOGLE_VERTEX_BASE_URL`` instead (not set here).
* ``OLLAMA_HOST``: ollama-python when a client is made (a path is kept).
* ``CO_API_URL``: cohere-python 5.x reads it once, when ``cohere`` is
  imported (a default argument), so only a client given
  ``base_url=os.environ["CO_API_URL"]`` follows it per test.

Proxy transport: ``HTTPS_PROXY``/``HTTP_PROXY`` (both spellings: urllib and
httpx prefer the lower-case one when both are set) carry the session id as the
proxy user name, and ``SSL_CERT_FILE`` (httpx, httpx2, aiohttp through
``ssl.create_default_context`` and OpenSSL), ``REQUESTS_CA_BUNDLE``
(requests) and ``NODE_EXTRA_CA_CERTS`` (Node) name the proxy's CA.

In replay, missing API keys get dummies so SDK constructors work in CI
without secrets; when recording, the real keys pass through untouched (the
recorder's redaction keeps them out of the cassette).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# (vendor, variable, path after the server's address the SDK expects)
BASE_URL_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("openai", "OPENAI_BASE_URL", "/v1"),
    ("anthropic", "ANTHROPIC_BASE_URL", ""),
    ("gemini", "GOOGLE_GEMINI_BASE_URL", ""),
    ("ollama", "OLLAMA_HOST", ""),
    ("cohere", "CO_API_URL", ""),
)

DUMMY_KEY = "sk-test-llmock"

# Keys set to DUMMY_KEY in replay when missing. google-genai reads
# GOOGLE_API_KEY, else GEMINI_API_KEY (and warns when both are set): one is
# set only when neither is.
DUMMY_KEYS: tuple[tuple[str, ...], ...] = (
    ("OPENAI_API_KEY",),
    ("ANTHROPIC_API_KEY",),
    ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    ("CO_API_KEY",),
)

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")

OLLAMA_DEFAULT_PORT = 11434


def base_url_environment(session_url: str) -> dict[str, str]:
    """The base-URL variables for a session prefix URL."""
    return {name: session_url + suffix for _, name, suffix in BASE_URL_VARIABLES}


def proxy_environment(proxy_url: str, ca_file: str) -> dict[str, str]:
    env = dict.fromkeys(PROXY_VARIABLES, proxy_url)
    env.update(dict.fromkeys(CA_VARIABLES, ca_file))
    return env


def dummy_keys(environ: Mapping[str, str]) -> dict[str, str]:
    """Dummy API keys for those of :data:`DUMMY_KEYS` ``environ`` lacks."""
    out: dict[str, str] = {}
    for names in DUMMY_KEYS:
        if not any(environ.get(n) for n in names):
            out[names[0]] = DUMMY_KEY
    return out


def upstreams_from(environ: Mapping[str, str]) -> dict[str, str]:
    """The base URLs the environment held when pytest started, by vendor:
    what recording forwards to (a gateway, a local model server), in the
    form the session's forwarder takes (the variable's value as the SDK
    reads it, ``OPENAI_BASE_URL`` with its ``/v1``). Vendors without one
    are left out: the forwarder uses the provider's public URL."""
    out: dict[str, str] = {}
    for vendor, name, _ in BASE_URL_VARIABLES:
        value = (environ.get(name) or "").strip()
        if value:
            out[vendor] = normalize_ollama_host(value) if vendor == "ollama" else value.rstrip("/")
    return out


def normalize_ollama_host(value: str) -> str:
    """``OLLAMA_HOST`` as ollama-python reads it (``host[:port][/path]``,
    scheme and port optional) -> a URL."""
    text = value if "://" in value else f"http://{value}"
    parts = urlsplit(text)
    host = parts.hostname or "127.0.0.1"
    if host == "0.0.0.0":  # a server's listen-everywhere address; clients mean this machine
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (OLLAMA_DEFAULT_PORT if "://" not in value else {"https": 443}.get(parts.scheme, 80))
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


@dataclass
class EnvironmentPatch:
    """Sets variables in ``environ`` and puts every one back exactly as it
    was (value or absence), whatever the test did to them meanwhile."""

    values: dict[str, str]
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)
    _saved: dict[str, str | None] = field(default_factory=dict, init=False)
    _applied: bool = field(default=False, init=False)

    def apply(self) -> EnvironmentPatch:
        if self._applied:
            raise RuntimeError("environment patch applied twice")
        for name, value in self.values.items():
            self._saved[name] = self.environ.get(name)
            self.environ[name] = value
        self._applied = True
        return self

    def restore(self) -> None:
        if not self._applied:
            return
        for name, old in self._saved.items():
            if old is None:
                self.environ.pop(name, None)
            else:
                self.environ[name] = old
        self._saved.clear()
        self._applied = False
