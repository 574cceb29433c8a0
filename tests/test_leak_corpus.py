"""Zero secrets on disk: a corpus of credentials, placed where applications and
providers put them, recorded through the record addon in a real mitmproxy.

Every placement has its own fake-looking value in a real key shape (or an
opaque one). The clients (the real SDKs where they can say it, raw HTTP where
an application would) send them in headers, query strings, JSON and form
bodies, WebSocket subprotocols and messages; the fake providers answer with
them in response headers, JSON bodies, and split across the events of SSE,
NDJSON, AWS EventStream and WebSocket streams. Afterwards every byte of the
cassette directory is searched for every value and its base64 and
percent-encoded spellings, and the parsed cassette for every value inside
any base64 string; the proxy's log too. Nothing may be silently lost: every
interaction sent is in the cassette except the one built to be refused, which
is logged as not recorded with the reason; streamed answers still read as the
client saw them, with ``<redacted>`` where a secret was.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import websockets

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import Interaction
from llmock_proxy.mitm.record import Record
from tests.fakes import (
    AnthropicFake,
    BedrockFake,
    CohereFake,
    FakeServer,
    GeminiFake,
    OllamaFake,
    OpenAIFake,
    Script,
)
from tests.fakes.openai_realtime_ws import OpenAIRealtimeFake
from tests.harness import clients as sdk
from tests.support.websocket import Target
from tests.test_serve import Serve

pytestmark = pytest.mark.timeout(240)

PLACEHOLDER = "<redacted>"
CASSETTE = "corpus.yaml"
TRANSPORTS = ("http-json", "sse", "ndjson", "eventstream", "websocket")
# Placements each test makes at least (together: the corpus, at least 80).
MINIMUM_PLACEMENTS = {"http": 83, "websocket": 14, "serve": 2}


# -- the corpus ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """One secret in one place. ``value`` is what is sent or answered;
    ``secret`` is the part that must never reach disk (the base64 body of a
    PEM block, the path of a webhook URL; usually the value itself)."""

    transport: str
    where: str
    value: str
    secret: str


@dataclass
class Corpus:
    placements: list[Placement] = field(default_factory=list)

    def _next(self) -> int:
        return len(self.placements) + 1

    def put(self, transport: str, where: str, value: str, secret: str | None = None) -> str:
        assert transport in (*TRANSPORTS, "serve"), transport
        assert all(p.where != where for p in self.placements), f"two placements named {where!r}"
        self.placements.append(Placement(transport, where, value, secret or value))
        return value

    def echo(self, transport: str, where: str, value: str) -> str:
        """The same value again somewhere else (a provider echoing it)."""
        return self.put(transport, where, value)

    def opaque(self, transport: str, where: str) -> str:
        """A credential with no shape: only its name, or that it was sent, gives it away."""
        n = self._next()
        return self.put(transport, where, f"opaque-test-{n:04d}-FAKEcredential")

    def shaped(self, transport: str, where: str, kind: str) -> str:
        n = self._next()
        value, secret = _shape(kind, n)
        return self.put(transport, where, value, secret)


def _shape(kind: str, n: int) -> tuple[str, str]:
    """A fake-looking value in the shape of ``kind``, unique by ``n``; and the part that is secret."""
    tag = f"{n:04d}"
    if kind == "pem":
        body = f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{tag}testFAKE"
        return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----", body
    if kind == "slack-webhook":
        path = f"T0TESTFAKE/B0TEST{tag}/testFAKE{tag}abcdefghijkl"
        return f"https://hooks.slack.com/services/{path}", path
    if kind == "aws-secret":
        secret = f"testFAKE{tag}/secretKEY+abcdefghijklmnopqrstuvwxyz"[:40]
        return secret, secret
    value = {
        "sk-test": f"sk-test-corpus-{tag}-FAKE",
        "sk-proj": f"sk-proj-testFAKE{tag}abcdefghij",
        "sk-ant": f"sk-ant-api03-testFAKE{tag}abcdefghij",
        "gsk": f"gsk_testFAKE{tag}abcdefghijklmnopqrstuvwx",
        "xai": f"xai-testFAKE{tag}abcdefghijklmnopqrstuvwx",
        "hf": f"hf_testFAKE{tag}abcdefghijklmnopqr",
        "r8": f"r8_testFAKE{tag}abcdefghijklmnopqr",
        "github-pat": f"github_pat_11TESTFAKE{tag}_abcdefghijklmnopqrstuv",
        "ghp": f"ghp_testFAKE{tag}abcdefghijklmnopqrstuvwx",
        "glpat": f"glpat-testFAKE{tag}abcdefghij",
        "xoxb": f"xoxb-{tag}123456-testFAKEabcdef",
        "xoxp": f"xoxp-{tag}123456-testFAKEabcdef",
        "xoxa": f"xoxa-{tag}123456-testFAKEabcdef",
        "sk-live": f"sk_live_testFAKE{tag}abcdefgh",
        "rk-live": f"rk_live_testFAKE{tag}abcdefgh",
        "ya29": f"ya29.testFAKE{tag}abcdefghijkl",
        "aiza": f"AIzaSyTESTFAKE{tag}abcdefghijklmnop",
        "akia": f"AKIATESTFAKE{tag}ABCD",
        "jwt": "eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(
            json.dumps({"sub": f"test-fake-{tag}"}).encode()).decode().rstrip("=") + f".testFAKEsig{tag}abcdefgh",
        "pplx": f"pplx-testFAKE{tag}abcdefghijklmnop",
        "npm": f"npm_testFAKE{tag}abcdefghijklmnopqrstuvwx",
        "ek": f"ek_testFAKE{tag}abcdefghijklmnop",
        "gocspx": f"GOCSPX-testFAKE{tag}abcdefghijkl",
        "lsv2": f"lsv2_pt_testFAKE{tag}abcdefghijkl_01",
        "absk": "ABSK" + base64.b64encode(f"BedrockAPIKey-testFAKE-{tag}-abcdefghij".encode()).decode(),
    }[kind]
    return value, value


# -- looking for them ------------------------------------------------------------------------------


def _forms(secret: str) -> set[str]:
    """The secret and the spellings it could hide in on disk: percent-encoded,
    and base64 (both alphabets) at each byte alignment inside a longer text."""
    raw = secret.encode()
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms.add(encode(raw).decode().rstrip("="))
        for shift in (1, 2):
            shifted = encode(b"\0" * shift + raw).decode()
            forms.add(shifted[4 : 4 * ((shift + len(raw)) // 3)])
    return {f for f in forms if len(f) >= 8}


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _decoded(text: str) -> Iterator[str]:
    """``text`` and, when it is base64, what it decodes to (and a JSON base64 inside that)."""
    yield text
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return
    inner = raw.decode("latin-1")
    yield inner
    try:
        nested = json.loads(raw)
    except ValueError:
        return
    for string in _strings(nested):
        yield from _decoded(string)


def leaks(corpus: Corpus, directory: Path, log_lines: list[str]) -> list[str]:
    """Every placement whose secret is in any file under ``directory`` (any
    spelling), in any parsed string of its cassettes, or in a log line."""
    files = {path: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}
    parsed: list[str] = []
    for path, raw in files.items():
        if path.suffix == ".yaml":
            parsed.extend(text for string in _strings(yamlio.loads(raw.decode())) for text in _decoded(string))
    found = []
    for placement in corpus.placements:
        forms = _forms(placement.secret)
        for path, raw in files.items():
            if any(form.encode() in raw for form in forms):
                found.append(f"{placement.where}: in {path.name}")
        if any(placement.secret in text for text in parsed):
            found.append(f"{placement.where}: in a decoded string")
        if any(placement.secret in line for line in log_lines):
            found.append(f"{placement.where}: in the log")
    return found


def reassembled(interaction: Interaction, text_of: Callable[[Any], str | None]) -> str:
    """A streamed answer's text as a client puts it together, from the cassette."""
    response = interaction.response
    assert response is not None
    if response.events is not None:
        docs: list[Any] = [e.data for e in response.events]
    elif response.lines is not None:
        docs = [x.data for x in response.lines]
    elif response.frames is not None:
        docs = []
        for frame in response.frames:
            value = frame.payload.value
            if isinstance(value, dict) and isinstance(value.get("bytes"), str):
                value = json.loads(base64.b64decode(value["bytes"]))
            docs.append(value)
    else:
        assert response.websocket is not None
        docs = [m.payload.value for m in response.websocket.messages if not m.from_client]
    return "".join(piece for doc in docs if isinstance(doc, dict) for piece in [text_of(doc)] if piece)


def redacted(text: str, *values: str) -> str:
    for value in values:
        text = text.replace(value, PLACEHOLDER)
    return text


def _dig(*path: Any) -> Callable[[Any], str | None]:
    def get(doc: Any) -> str | None:
        for step in path:
            try:
                doc = doc[step]
            except (KeyError, IndexError, TypeError):
                return None
        return doc if isinstance(doc, str) else None

    return get


# -- HTTP: JSON, SSE, NDJSON, EventStream ------------------------------------------------------------

OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"
BEDROCK = sdk.bedrock_url()
USER = [{"role": "user", "content": "Say something."}]


@dataclass
class Expected:
    """A streamed answer to check after recording: which interaction, how to read its text, what it must read."""

    index: int
    text_of: Callable[[Any], str | None]
    text: str


def test_http_corpus_reaches_disk_without_a_single_secret(
    proxy: Any, fake_server: Any, tmp_path: Path, sdk_clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = Corpus()
    aws_key_id = corpus.shaped("eventstream", "SigV4 Credential access key id (Bedrock invoke stream)", "akia")
    aws_secret, _ = _shape("aws-secret", 0)  # signs, never sent
    fakes = {
        "openai": OpenAIFake(), "anthropic": AnthropicFake(), "gemini": GeminiFake(),
        "ollama": OllamaFake(require_auth=True), "cohere": CohereFake(),
        "bedrock": BedrockFake(credentials={aws_key_id: aws_secret}),
    }
    servers = [fake_server(fake) for fake in fakes.values()]
    record = Record()
    cassettes = tmp_path / "cassettes"
    p = proxy("regular", addons=[record], fakes=servers,
              options={"llmock_cassette_dir": str(cassettes), "llmock_cassette": CASSETTE})
    http = sdk_clients.raw(p)
    sent = 0
    expected: list[Expected] = []

    # 1. A chat request carrying credentials everywhere an application or a
    #    gateway puts them; the answer carries more.
    bearer = corpus.shaped("http-json", "request header Authorization: Bearer (OpenAI key)", "sk-proj")
    headers = {
        "Authorization": f"Bearer {bearer}",
        "x-portkey-api-key": corpus.opaque("http-json", "request header x-portkey-api-key"),
        "x-api-token": corpus.opaque("http-json", "request header x-api-token"),
        "X-Auth-Token": corpus.opaque("http-json", "request header X-Auth-Token"),
        "Helicone-Auth": "Bearer " + corpus.opaque("http-json", "request header Helicone-Auth: Bearer"),
        "Cookie": "theme=dark; session=" + corpus.opaque("http-json", "request header Cookie session"),
        "x-custom-secret": corpus.opaque("http-json", "request header x-custom-secret"),
        "x-openrouter-password": corpus.opaque("http-json", "request header x-openrouter-password"),
    }
    query = (
        f"?auth={corpus.opaque('http-json', 'query auth')}"
        f"&client_secret={corpus.opaque('http-json', 'query client_secret')}"
        f"&x-goog-api-key={corpus.shaped('http-json', 'query x-goog-api-key', 'aiza')}"
        f"&alt=json;key={corpus.opaque('http-json', 'query key after a ; separator')}"
        f"&access_token={corpus.shaped('http-json', 'query access_token (Google OAuth)', 'ya29')}"
        f"&apiKey={urllib.parse.quote(corpus.opaque('http-json', 'query apiKey (percent-encoded)') + '/+x')}"
    )
    portkey = headers["x-portkey-api-key"]
    body_key = corpus.opaque("http-json", "request JSON api_key")
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 64,
        "api_key": body_key,
        "credentials": {"username": "svc", "password": corpus.opaque("http-json", "request JSON credentials.password")},
        "aws_secret_access_key": corpus.shaped("http-json", "request JSON aws_secret_access_key", "aws-secret"),
        "metadata": {"client_secret": corpus.opaque("http-json", "request JSON metadata.client_secret")},
        "tools": [{"type": "mcp", "server_url": "https://mcp.example.test",
                   "authorization": corpus.opaque("http-json", "request JSON tools[0].authorization (MCP)"),
                   "headers": {"Authorization": "Bearer " + corpus.opaque("http-json", "request JSON tools[0].headers")}}],
        "messages": [{"role": "user", "content": (
            f"Keys: {corpus.shaped('http-json', 'user message: Groq key', 'gsk')} "
            f"{corpus.shaped('http-json', 'user message: xAI key', 'xai')} "
            f"{corpus.shaped('http-json', 'user message: Hugging Face token', 'hf')} "
            f"{corpus.shaped('http-json', 'user message: Replicate token', 'r8')} "
            f"{corpus.shaped('http-json', 'user message: Google OAuth client secret', 'gocspx')}")}],
    }
    answer_text = " ".join([
        corpus.shaped("http-json", "answer text: GitHub fine-grained token", "github-pat"),
        corpus.shaped("http-json", "answer text: GitHub classic token", "ghp"),
        corpus.shaped("http-json", "answer text: GitLab token", "glpat"),
        corpus.shaped("http-json", "answer text: Slack bot token", "xoxb"),
        corpus.shaped("http-json", "answer text: Stripe secret key", "sk-live"),
        corpus.shaped("http-json", "answer text: Stripe restricted key", "rk-live"),
        corpus.shaped("http-json", "answer text: JWT", "jwt"),
        corpus.shaped("http-json", "answer text: Perplexity key", "pplx"),
        corpus.shaped("http-json", "answer text: npm token", "npm"),
        corpus.shaped("http-json", "answer text: PEM private key", "pem"),
        corpus.shaped("http-json", "answer text: Slack webhook URL", "slack-webhook"),
        corpus.shaped("http-json", "answer text: LangSmith key", "lsv2"),
        "and your gateway key " + corpus.echo("http-json", "answer text: echo of x-portkey-api-key", portkey),
    ])
    debug = {"note": "key used: " + corpus.echo("http-json", "answer JSON debug.note: echo of Authorization", bearer),
             "session_token": corpus.opaque("http-json", "answer JSON debug.session_token")}
    fakes["openai"].queue(Script(
        text=answer_text,
        extra_headers={
            "x-session-token": corpus.opaque("http-json", "response header x-session-token"),
            "x-upstream-api-key": corpus.opaque("http-json", "response header x-upstream-api-key"),
            "Set-Cookie": "sid=" + corpus.opaque("http-json", "response header Set-Cookie") + "; Path=/; HttpOnly",
            "x-debug-echo": corpus.echo("http-json", "response header x-debug-echo: echo of api_key", body_key),
        },
        mutate=lambda reply: {**reply, "debug": debug},
    ))
    reply = http.post(OPENAI_CHAT + query, headers=headers, json=body)
    assert reply.status_code == 200, reply.text
    sent += 1

    # 2. An OAuth token request in a form body.
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": "test-app",
        "client_secret": corpus.opaque("http-json", "form body client_secret"),
        "refresh_token": corpus.opaque("http-json", "form body refresh_token"),
        "password": corpus.opaque("http-json", "form body password"),
    })
    http.post("https://api.openai.com/v1/oauth/token", content=form,
              headers={"content-type": "application/x-www-form-urlencoded"})
    sent += 1

    # 3. A gateway's opaque key, quoted back in the provider's error message.
    gateway_key = corpus.opaque("http-json", "request header Authorization: Bearer (opaque gateway key)")
    fakes["openai"].queue(Script(error_status=401, error_message=(
        "Incorrect API key provided: " + corpus.echo("http-json", "error JSON message: echo of the key", gateway_key))))
    assert http.post(OPENAI_CHAT, headers={"Authorization": f"Bearer {gateway_key}"},
                     json={"model": "gpt-4o-mini", "messages": USER}).status_code == 401
    sent += 1

    # 4. OpenAI chat, streamed by the SDK: the keys come back a few characters per event.
    chat_key = corpus.opaque("sse", "OpenAI SDK api_key (Authorization: Bearer)")
    chat_gateway = corpus.opaque("sse", "OpenAI SDK default header x-gateway-api-key")
    ghp = corpus.shaped("sse", "OpenAI stream: GitHub token never sent, split", "ghp")
    text = (f"Your key {corpus.echo('sse', 'OpenAI stream: echo of api_key split over deltas', chat_key)}, "
            f"gateway {corpus.echo('sse', 'OpenAI stream: echo of x-gateway-api-key split', chat_gateway)}, "
            f"and {ghp}.")
    fakes["openai"].queue(Script(text=text, chunk_size=3))
    client = sdk_clients.openai(p, api_key=chat_key, default_headers={"x-gateway-api-key": chat_gateway})
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    expected.append(Expected(sent, _dig("choices", 0, "delta", "content"), redacted(text, chat_key, chat_gateway, ghp)))
    sent += 1

    # 5. OpenAI Responses, streamed: an sk-proj key echoed, an xAI key not sent.
    proj = corpus.shaped("sse", "OpenAI Responses SDK api_key", "sk-proj")
    xai = corpus.shaped("sse", "Responses stream: xAI key never sent, split", "xai")
    text = f"Using {corpus.echo('sse', 'Responses stream: echo of sk-proj key split', proj)} and {xai} now."
    fakes["openai"].queue(Script(text=text, chunk_size=4))
    client = sdk_clients.openai(p, api_key=proj)
    events = list(client.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    expected.append(Expected(sent, lambda d: d.get("delta") if d.get("type") == "response.output_text.delta" else None,
                             redacted(text, proj, xai)))
    sent += 1

    # 6. Anthropic messages, streamed: the x-api-key echoed, a Groq key not sent.
    ant = corpus.shaped("sse", "Anthropic SDK x-api-key", "sk-ant")
    gsk = corpus.shaped("sse", "Anthropic stream: Groq key never sent, split", "gsk")
    text = f"Key {corpus.echo('sse', 'Anthropic stream: echo of x-api-key split', ant)} / {gsk}."
    fakes["anthropic"].queue(Script(text=text, chunk_size=5))
    with sdk_clients.anthropic(p, api_key=ant).messages.stream(
            model="claude-3-5-haiku-latest", max_tokens=64, messages=USER) as stream:
        assert stream.get_final_text() == text
    expected.append(Expected(sent, _dig("delta", "text"), redacted(text, ant, gsk)))
    sent += 1

    # 7. Gemini, streamed by the SDK (x-goog-api-key) with the key echoed.
    gemini_key = corpus.shaped("sse", "google-genai x-goog-api-key", "aiza")
    text = f"Key: {corpus.echo('sse', 'Gemini stream: echo of x-goog-api-key split', gemini_key)}."
    fakes["gemini"].queue(Script(text=text, chunk_size=6))
    parts = list(sdk_clients.genai(p, api_key=gemini_key).models.generate_content_stream(
        model="gemini-2.0-flash", contents="hi"))
    assert "".join(part.text or "" for part in parts) == text
    expected.append(Expected(sent, _dig("candidates", 0, "content", "parts", 0, "text"), redacted(text, gemini_key)))
    sent += 1

    # 8. Gemini over raw HTTP with ?key= (what curl examples do), echoed.
    query_key = corpus.opaque("sse", "Gemini ?key= query parameter")
    text = f"You sent {corpus.echo('sse', 'Gemini stream: echo of ?key= split', query_key)} in the URL."
    fakes["gemini"].queue(Script(text=text, chunk_size=2))
    url = ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent"
           f"?alt=sse&key={query_key}")
    assert http.post(url, json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).status_code == 200
    expected.append(Expected(sent, _dig("candidates", 0, "content", "parts", 0, "text"), redacted(text, query_key)))
    sent += 1

    # 9. Cohere v2 chat, streamed, the bearer key echoed.
    cohere_key = corpus.opaque("sse", "Cohere Authorization: Bearer")
    text = f"Cohere key {corpus.echo('sse', 'Cohere stream: echo of bearer key split', cohere_key)}."
    fakes["cohere"].queue(Script(text=text, chunk_size=4))
    assert http.post("https://api.cohere.com/v2/chat", headers={"Authorization": f"Bearer {cohere_key}"},
                     json={"model": "command-r", "messages": USER, "stream": True}).status_code == 200
    expected.append(Expected(sent, _dig("delta", "message", "content", "text"), redacted(text, cohere_key)))
    sent += 1

    # 10. Ollama chat (NDJSON), the key echoed line by line, a Hugging Face token not sent.
    ollama_key = corpus.opaque("ndjson", "Ollama Authorization: Bearer")
    hf = corpus.shaped("ndjson", "Ollama stream: Hugging Face token never sent, split", "hf")
    text = f"Key {corpus.echo('ndjson', 'Ollama stream: echo of bearer key split over lines', ollama_key)} + {hf}."
    fakes["ollama"].queue(Script(text=text, chunk_size=4))
    assert http.post("https://ollama.com/api/chat", headers={"Authorization": f"Bearer {ollama_key}"},
                     json={"model": "llama3.2", "messages": USER}).status_code == 200
    expected.append(Expected(sent, _dig("message", "content"), redacted(text, ollama_key, hf)))
    sent += 1

    # 11. Ollama generate (NDJSON), an x-api-key header echoed whole in one line.
    ollama_header = corpus.opaque("ndjson", "Ollama x-api-key header")
    xoxp = corpus.shaped("ndjson", "Ollama generate: Slack user token, one line", "xoxp")
    text = f"{corpus.echo('ndjson', 'Ollama generate: echo of x-api-key whole', ollama_header)} {xoxp}"
    fakes["ollama"].queue(Script(text=text, chunk_size=400))
    assert http.post("https://ollama.com/api/generate",
                     headers={"Authorization": "Bearer " + corpus.opaque("ndjson", "Ollama generate Authorization"),
                              "x-api-key": ollama_header},
                     json={"model": "llama3.2", "prompt": "hi"}).status_code == 200
    expected.append(Expected(sent, _dig("response"), redacted(text, ollama_header, xoxp)))
    sent += 1

    # 12. Bedrock ConverseStream (EventStream, JSON payloads) with a Bedrock API key, echoed.
    absk = corpus.shaped("eventstream", "Bedrock API key (Authorization: Bearer ABSK...)", "absk")
    r8 = corpus.shaped("eventstream", "Converse stream: Replicate token never sent, split", "r8")
    text = f"Key {corpus.echo('eventstream', 'Converse stream: echo of Bedrock API key split', absk)} and {r8}."
    fakes["bedrock"].queue(Script(text=text, chunk_size=5))
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    assert http.post(f"{BEDROCK}/model/{model}/converse-stream", headers={"Authorization": f"Bearer {absk}"},
                     json={"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).status_code == 200
    expected.append(Expected(sent, _dig("delta", "text"), redacted(text, absk, r8)))
    sent += 1

    # 13. Bedrock InvokeModelWithResponseStream, SigV4-signed: the chunks are
    #     base64 JSON inside the frames; an AWS secret key and a GitLab token inside.
    aws_text = corpus.shaped("eventstream", "invoke stream: aws_secret_access_key in text, split", "aws-secret")
    glpat = corpus.shaped("eventstream", "invoke stream: GitLab token in base64 chunks, split", "glpat")
    text = f"Config: aws_secret_access_key={aws_text} token {glpat} end"
    fakes["bedrock"].queue(Script(text=text, chunk_size=7))
    url = f"{BEDROCK}/model/{model}/invoke-with-response-stream"
    raw = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": USER}).encode()
    signed = sdk.sigv4_headers("POST", url, raw, access_key=aws_key_id, secret_key=aws_secret,
                               headers={"content-type": "application/json"})
    assert http.post(url, content=raw, headers=signed).status_code == 200
    expected.append(Expected(sent, _dig("delta", "text"), redacted(text, aws_text, glpat)))
    sent += 1

    # 14. Bedrock invoke stream of a Llama model: the bearer key echoed in "generation".
    absk2 = corpus.shaped("eventstream", "Bedrock API key for a Llama invoke stream", "absk")
    text = f"Your key is {corpus.echo('eventstream', 'Llama invoke stream: echo of Bedrock API key split', absk2)}!"
    fakes["bedrock"].queue(Script(text=text, chunk_size=3))
    assert http.post(f"{BEDROCK}/model/meta.llama3-8b-instruct-v1:0/invoke-with-response-stream",
                     headers={"Authorization": f"Bearer {absk2}"}, json={"prompt": "hi"}).status_code == 200
    expected.append(Expected(sent, _dig("generation"), redacted(text, absk2)))
    sent += 1

    # 15. Built to be refused: a key-shaped *mapping key* in the answer is
    #     not rewritten, so the write is refused; the others are still written.
    refused_key = corpus.shaped("http-json", "answer JSON mapping key (refused, logged)", "sk-test")
    fakes["openai"].queue(Script(text="fine", mutate=lambda reply: {**reply, "logit_index": {refused_key: 1}}))
    with caplog.at_level(logging.INFO, logger="llmock_proxy"):
        assert http.post(OPENAI_CHAT, headers={"Authorization": "Bearer " + corpus.opaque(
            "http-json", "Authorization of the refused request")},
            json={"model": "gpt-4o-mini", "messages": USER}).status_code == 200
        sent += 1
        assert record.flush(60), "cassette writes did not finish"

    not_recorded = [r.getMessage() for r in caplog.records if "NOT recorded" in r.getMessage()]
    assert len(not_recorded) == 1, not_recorded
    assert "refusing to write" in not_recorded[0] and "(a mapping key)" in not_recorded[0]
    assert "POST https://api.openai.com/v1/chat/completions" in not_recorded[0]
    interactions = cassette_store.load(cassettes / CASSETTE).interactions  # a valid cassette
    assert len(interactions) == sent - 1, "an interaction went missing without a NOT recorded line"
    assert all(i.response is not None for i in interactions)
    log_lines = [*p.log_lines(), *(r.getMessage() for r in caplog.records)]
    assert leaks(corpus, cassettes, log_lines) == []
    for check in expected:
        assert reassembled(interactions[check.index], check.text_of) == check.text, check.index
    assert {p.transport for p in corpus.placements} == {"http-json", "sse", "ndjson", "eventstream"}
    assert len(corpus.placements) >= MINIMUM_PLACEMENTS["http"]


# -- WebSocket --------------------------------------------------------------------------------------

REALTIME_URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"


async def _realtime_raw(proxy: Any, headers: dict[str, str], subprotocols: list[str], session: dict[str, Any]) -> str:
    """A browser-style Realtime session (key in a subprotocol) with plain websockets; the answer's text."""
    context = ssl.create_default_context(cafile=str(proxy.ca_cert_path))
    text = ""
    async with websockets.connect(REALTIME_URL, additional_headers=headers, subprotocols=subprotocols,  # type: ignore[arg-type]
                                  proxy=proxy.url, ssl=context) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        async for raw in ws:
            event = json.loads(raw)
            if event["type"] == "response.output_text.delta":
                text += event["delta"]
            if event["type"] in ("response.done", "error"):
                break
    return text


async def _realtime_sdk(proxy: Any, api_key: str, headers: dict[str, str], session: dict[str, Any]) -> str:
    client = openai.AsyncOpenAI(api_key=api_key, base_url=sdk.OPENAI_URL, max_retries=0)
    text = ""
    async with client.realtime.connect(model="gpt-realtime", extra_headers=headers,
                                       websocket_connection_options=Target.through(proxy).websocket_options()) as conn:
        await conn.session.update(session=session)  # type: ignore[arg-type]
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "hi"}]})
        await conn.response.create()
        async for event in conn:
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type in ("response.done", "error"):
                break
    await client.close()
    return text


def test_websocket_corpus_reaches_disk_without_a_single_secret(
    proxy: Any, fake_server: Any, tmp_path: Path
) -> None:
    corpus = Corpus()
    fake = OpenAIRealtimeFake()
    server = fake_server(fake)
    record = Record()
    cassettes = tmp_path / "cassettes"
    p = proxy("regular", addons=[record], fakes=[server],
              options={"llmock_cassette_dir": str(cassettes), "llmock_cassette": CASSETTE})
    expected: list[str] = []

    # A browser-style session: the key travels as a subprotocol name.
    ws_key = corpus.shaped("websocket", "Sec-WebSocket-Protocol openai-insecure-api-key.<key>", "sk-proj")
    stripe = corpus.shaped("websocket", "Realtime answer: Stripe key never sent, split", "sk-live")
    text = f"Key {corpus.echo('websocket', 'Realtime answer: echo of the subprotocol key split', ws_key)} {stripe}"
    fake.queue(Script(text=text, chunk_size=4))
    session = {"type": "realtime", "output_modalities": ["text"], "tools": [{
        "type": "mcp", "server_label": "crm", "server_url": "https://mcp.example.test/sse",
        "authorization": corpus.opaque("websocket", "session.update tools[0].authorization (echoed in session.updated)"),
        "headers": {"Authorization": "Bearer " + corpus.opaque("websocket", "session.update tools[0].headers")}}],
        "client_secret": {"value": corpus.shaped("websocket", "session.update client_secret.value", "ek")}}
    answer = asyncio.run(_realtime_raw(
        p, {"Authorization": "Bearer " + corpus.opaque("websocket", "upgrade request Authorization: Bearer")},
        ["realtime", f"openai-insecure-api-key.{ws_key}",
         "openai-organization." + corpus.opaque("websocket", "Sec-WebSocket-Protocol openai-organization.<id>")],
        session))
    assert answer == text
    expected.append(redacted(text, ws_key, stripe))

    # The SDK's session: api key in the header, an opaque key in session.update, echoed in the answer.
    sdk_key = corpus.opaque("websocket", "openai SDK realtime api_key (Authorization)")
    mcp_token = corpus.opaque("websocket", "SDK session.update tools[0].authorization")
    xoxa = corpus.shaped("websocket", "Realtime answer: Slack token never sent, split", "xoxa")
    text = (f"{corpus.echo('websocket', 'Realtime answer: echo of api key split', sdk_key)} and "
            f"{corpus.echo('websocket', 'Realtime answer: echo of the MCP token split', mcp_token)} {xoxa}")
    fake.queue(Script(text=text, chunk_size=3))
    answer = asyncio.run(_realtime_sdk(
        p, sdk_key, {"x-api-token": corpus.opaque("websocket", "SDK upgrade header x-api-token")},
        {"type": "realtime", "output_modalities": ["text"],
         "tools": [{"type": "mcp", "server_label": "crm", "server_url": "https://mcp.example.test/sse",
                    "authorization": mcp_token}]}))
    assert answer == text
    expected.append(redacted(text, sdk_key, mcp_token, xoxa))

    assert record.flush(60), "cassette writes did not finish"
    interactions = cassette_store.load(cassettes / CASSETTE).interactions
    assert [i.match["family"] for i in interactions] == ["openai.realtime", "openai.realtime"]
    assert leaks(corpus, cassettes, p.log_lines()) == []
    delta = lambda d: d.get("delta") if d.get("type") == "response.output_text.delta" else None  # noqa: E731
    assert [reassembled(i, delta) for i in interactions] == expected
    assert len(corpus.placements) >= MINIMUM_PLACEMENTS["websocket"]


# -- serve --mode auto: the upstream URL's userinfo ------------------------------------------------


def test_serve_auto_mode_keeps_the_upstream_password_out_of_the_cassette(tmp_path: Path) -> None:
    corpus = Corpus()
    password = corpus.opaque("serve", "--upstream http://user:<password>@host")
    fake = FakeServer(OpenAIFake(Script(text="hello"))).start()
    cassettes = tmp_path / "cassettes"
    upstream = f"http://127.0.0.1:{fake.port}"
    server = Serve("--mode", "auto", "--upstream", f"http://corp-user:{password}@127.0.0.1:{fake.port}",
                   "--cassette-dir", str(cassettes), "--cassette", "serve.yaml")
    try:
        # No client credential: the forwarder's request authenticates with the URL's userinfo.
        sdk.raw_client().post(f"{server.url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER})
        server.wait_for_line("llmock: recorded")
        # A client credential too: the forward fails (two credentials), and is recorded as an error.
        key = corpus.opaque("serve", "client Authorization: Bearer through serve")
        sdk.raw_client().post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                              json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Again."}]})
        server.wait_for_line("llmock: recorded", count=2)
    finally:
        server.stop()
        fake.stop()
    interactions = cassette_store.load(cassettes / "serve.yaml").interactions
    assert len(interactions) == 2
    assert [i.request.url for i in interactions] == [f"{upstream}/v1/chat/completions"] * 2
    assert interactions[0].response is not None and interactions[0].response.status == 401
    assert interactions[1].error is not None  # aiohttp will not send two credentials
    assert leaks(corpus, cassettes, []) == []
    assert len(corpus.placements) >= MINIMUM_PLACEMENTS["serve"]
