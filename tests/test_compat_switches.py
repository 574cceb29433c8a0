"""Switches for suites written against llmock/aimock, through ``llmock-proxy serve``
with the real SDKs: the miss status, the embedding fallback, CORS, lenient
fixture files; and what fixture error answers and chat streams carry."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from llmock_proxy.hosts import is_loopback
from tests.harness import clients as sdk
from tests.harness.http import httpx
from tests.test_serve import LLMOCK_PROXY, Serve

USER = [{"role": "user", "content": "hello"}]
ORIGIN = "http://localhost:5173"

FIXTURES = {
    "fixtures": [
        {"match": {"userMessage": "hello"}, "response": {"content": "Hi there!"}},
        {"match": {"userMessage": "slow down"},
         "response": {"error": {"message": "Rate limited", "type": "rate_limit_error", "code": "rate_limit_exceeded"},
                      "status": 429}},
        {"match": {"userMessage": "wait longer"},
         "response": {"error": {"message": "Busy", "type": "rate_limit_error", "code": "rate_limit_exceeded"},
                      "status": 429, "retryAfter": 3}},
        {"match": {"userMessage": "bad key"},
         "response": {"error": {"message": "Incorrect API key", "type": "invalid_request_error",
                                "code": "invalid_api_key"}, "status": 401}},
        {"match": {"inputText": "kitten"}, "response": {"embedding": [0.5, -0.25, 0.75]}},
    ]
}


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compat") / "compat.json"
    path.write_text(json.dumps(FIXTURES))
    return path


@pytest.fixture(scope="module")
def llmock_like(fixture_file: Path) -> Iterator[Serve]:
    """serve as a suite written for llmock wants it (CORS is on: loopback)."""
    server = Serve("--fixtures", str(fixture_file), "--timing", "instant", "--miss-status", "404",
                   "--embedding-fallback")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain(fixture_file: Path) -> Iterator[Serve]:
    """serve with its own defaults, CORS switched off."""
    server = Serve("--fixtures", str(fixture_file), "--timing", "instant", "--no-cors")
    yield server
    server.stop()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LLMOCK_PROXY), *args], capture_output=True, text=True, timeout=30)


# -- the miss status --------------------------------------------------------------------------


def test_a_miss_answers_404_when_asked_in_every_sdk_and_on_unknown_paths(llmock_like: Serve) -> None:
    with pytest.raises(openai.NotFoundError) as chat:
        sdk.openai_client(base_url=f"{llmock_like.url}/v1").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "nothing matches this"}])
    assert chat.value.response.headers["x-llmock-miss"] == "1"
    assert chat.value.code == "no_fixture_match"  # aimock's code for a miss
    assert "no recording or fixture matches POST /v1/chat/completions" in chat.value.message
    with pytest.raises(anthropic.NotFoundError):
        sdk.anthropic_client(base_url=llmock_like.url).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=50, messages=[{"role": "user", "content": "nothing"}])
    gemini_client = sdk.genai_client(base_url=llmock_like.url)
    with pytest.raises(genai_errors.ClientError) as gemini:
        gemini_client.models.generate_content(model="gemini-2.0-flash", contents="nothing")
    assert gemini.value.code == 404
    with httpx.Client() as raw:
        for method, path in [("POST", "/v1/no/such/api"), ("GET", "/nothing/here"), ("DELETE", "/v1/files/x")]:
            answer = raw.request(method, llmock_like.url + path, json={"a": 1} if method == "POST" else None)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.headers["x-llmock-miss"] == "1"


def test_the_default_miss_status_stays_421_unknown_paths_included(plain: Serve) -> None:
    with pytest.raises(openai.APIStatusError) as chat:
        sdk.openai_client(base_url=f"{plain.url}/v1").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "nothing matches this"}])
    assert chat.value.status_code == 421
    with httpx.Client() as raw:
        assert raw.post(plain.url + "/v1/no/such/api", json={}).status_code == 421


@pytest.mark.parametrize("value", ["500", "200", "abc", "4O4"])
def test_the_miss_status_must_be_a_4xx(value: str) -> None:
    refused = run("serve", "--port", "0", "--miss-status", value)
    assert refused.returncode == 2
    assert "--miss-status" in refused.stderr and repr(value) in refused.stderr


# -- the embedding fallback -------------------------------------------------------------------


def test_unmatched_embeddings_get_deterministic_vectors_in_each_familys_form(llmock_like: Serve) -> None:
    client = sdk.openai_client(base_url=f"{llmock_like.url}/v1")
    texts = ["alpha", "beta", "alpha"]
    as_base64 = client.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=8).data
    as_floats = client.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=8,
                                         encoding_format="float").data
    vectors = [row.embedding for row in as_base64]
    assert [row.embedding for row in as_floats] == vectors  # the same numbers, either encoding
    assert [len(v) for v in vectors] == [8, 8, 8]
    assert vectors[0] == vectors[2] != vectors[1]
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-5
    assert len(client.embeddings.create(model="text-embedding-3-small", input="alpha").data[0].embedding) == 1536
    # A fixture still answers first.
    kitten = client.embeddings.create(model="text-embedding-3-small", input="kitten", encoding_format="float")
    assert kitten.data[0].embedding == [0.5, -0.25, 0.75]

    gemini = sdk.genai_client(base_url=llmock_like.url)
    batch = gemini.models.embed_content(model="text-embedding-004", contents=["alpha", "beta"],
                                        config=genai_types.EmbedContentConfig(output_dimensionality=8))
    assert [e.values for e in batch.embeddings or []] == vectors[:2]  # the same text, the same vector
    default = gemini.models.embed_content(model="text-embedding-004", contents="alpha")
    assert len((default.embeddings or [])[0].values or []) == 768

    with httpx.Client() as raw:
        ollama = raw.post(f"{llmock_like.url}/api/embed",
                          json={"model": "nomic-embed-text", "input": ["alpha", "beta"], "dimensions": 8}).json()
        assert ollama["embeddings"] == vectors[:2]
        legacy = raw.post(f"{llmock_like.url}/api/embeddings", json={"model": "nomic-embed-text", "prompt": "alpha"})
        assert len(legacy.json()["embedding"]) == 1536


@pytest.mark.parametrize("dimensions", [0, 100_001])
def test_a_fallback_for_a_length_no_answer_has_is_a_400(llmock_like: Serve, dimensions: int) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.openai_client(base_url=f"{llmock_like.url}/v1").embeddings.create(
            model="text-embedding-3-small", input="alpha", dimensions=dimensions)
    assert "dimensions" in caught.value.message


def test_without_the_fallback_an_unmatched_embedding_is_a_miss(plain: Serve) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.openai_client(base_url=f"{plain.url}/v1").embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.status_code == 421


# -- CORS ---------------------------------------------------------------------------------------


def test_cors_preflight_and_headers_on_loopback_by_default(llmock_like: Serve) -> None:
    asked_headers = "authorization, content-type, x-stainless-os"
    with httpx.Client() as raw:
        preflight = raw.options(f"{llmock_like.url}/v1/chat/completions", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": asked_headers,
        })
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert preflight.headers["access-control-allow-headers"] == asked_headers
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert int(preflight.headers["access-control-max-age"]) > 0
        assert "Origin" in preflight.headers["vary"]
        anywhere = raw.options(f"{llmock_like.url}/v1/messages", headers={"Access-Control-Request-Method": "POST"})
        assert anywhere.status_code == 204 and anywhere.headers["access-control-allow-origin"] == "*"
        assert anywhere.headers["access-control-allow-headers"] == "*"

        body = {"model": "gpt-4o-mini", "messages": USER}
        answer = raw.post(f"{llmock_like.url}/v1/chat/completions", json=body, headers={"Origin": ORIGIN})
        assert answer.json()["choices"][0]["message"]["content"] == "Hi there!"
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        exposed = [h.strip() for h in answer.headers["access-control-expose-headers"].split(",")]
        assert {"x-llmock-miss", "x-request-id", "retry-after"} <= set(exposed)
        with raw.stream("POST", f"{llmock_like.url}/v1/chat/completions", json={**body, "stream": True},
                        headers={"Origin": ORIGIN}) as streamed:
            assert streamed.headers["access-control-allow-origin"] == ORIGIN
            streamed.read()
        missed = raw.post(f"{llmock_like.url}/v1/chat/completions", headers={"Origin": ORIGIN},
                          json={"model": "m", "messages": [{"role": "user", "content": "nothing"}]})
        assert missed.status_code == 404 and missed.headers["access-control-allow-origin"] == ORIGIN
        health = raw.get(f"{llmock_like.url}/__llmock/health")
        assert health.headers["access-control-allow-origin"] == "*"
        # The control endpoints that change state are not for web pages: no preflight, no simple POST.
        control_preflight = raw.options(f"{llmock_like.url}/__llmock/reset", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-llmock-control"})
        assert control_preflight.status_code == 403
        assert "access-control-allow-origin" not in control_preflight.headers
        simple = raw.post(f"{llmock_like.url}/__llmock/reset", content=b"x",
                          headers={"Origin": ORIGIN, "Content-Type": "text/plain"})
        assert simple.status_code == 403 and "access-control-allow-origin" not in simple.headers
    # The SDK sees nothing of it.
    reply = sdk.openai_client(base_url=f"{llmock_like.url}/v1").chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "Hi there!"


def test_no_cors_leaves_options_to_matching_and_answers_without_cors_headers(plain: Serve) -> None:
    with httpx.Client() as raw:
        preflight = raw.options(f"{plain.url}/v1/chat/completions",
                                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 421 and "access-control-allow-origin" not in preflight.headers
        answer = raw.post(f"{plain.url}/v1/chat/completions", json={"model": "m", "messages": USER},
                          headers={"Origin": ORIGIN})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_cors_is_on_by_default_only_for_loopback_hosts() -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"))


# -- fixture error answers ----------------------------------------------------------------------


def test_fixture_errors_keep_their_code_and_a_429_says_retry_after(llmock_like: Serve) -> None:
    client = sdk.openai_client(base_url=f"{llmock_like.url}/v1", max_retries=0)

    def ask(text: str) -> openai.APIStatusError:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        return caught.value

    limited = ask("slow down")
    assert isinstance(limited, openai.RateLimitError)
    assert (limited.code, limited.type) == ("rate_limit_exceeded", "rate_limit_error")
    assert limited.response.headers["retry-after"] == "1"  # aimock's default
    assert ask("wait longer").response.headers["retry-after"] == "3"
    refused = ask("bad key")
    assert isinstance(refused, openai.AuthenticationError) and refused.code == "invalid_api_key"
    assert "retry-after" not in refused.response.headers
    # Anthropic's envelope has no code; the type and Retry-After still arrive.
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk.anthropic_client(base_url=llmock_like.url, max_retries=0).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=50, messages=[{"role": "user", "content": "slow down"}])
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert caught.value.response.headers["retry-after"] == "1"


# -- usage in synthesized chat streams ----------------------------------------------------------


def test_a_fixture_stream_ends_with_usage_when_the_client_asks(llmock_like: Serve) -> None:
    client = sdk.openai_client(base_url=f"{llmock_like.url}/v1")
    asked = list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                                stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in asked if c.choices) == "Hi there!"
    last = asked[-1]
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in asked[:-1])
    unasked = list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert all(c.choices and c.usage is None for c in unasked)


# -- lenient fixture files ----------------------------------------------------------------------


def test_a_misspelled_match_key_stops_serve_and_validate_unless_lenient(tmp_path: Path) -> None:
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"fixtures": [{"match": {"userMesage": "hello"}, "response": {"content": "Hi!"}}]}))
    refused = run("serve", "--port", "0", "--fixtures", str(typo))
    assert refused.returncode == 1
    assert "typo.json" in refused.stderr and "fixtures[0].match.userMesage" in refused.stderr
    assert "userMessage" in refused.stderr  # the did-you-mean
    strict = run("cassette", "validate", str(typo))
    assert strict.returncode == 1 and "fixtures[0].match.userMesage" in strict.stdout

    lenient = run("cassette", "validate", "--lenient-fixtures", str(typo))
    assert lenient.returncode == 0, lenient.stdout
    assert any(line.startswith("warning:") and "userMesage" in line for line in lenient.stdout.splitlines())
    server = Serve("--fixtures", str(typo), "--timing", "instant", "--lenient-fixtures")
    try:
        assert "userMesage" in server.banner  # the warning, before the banner
        # The unknown key is ignored, as aimock ignores it.
        reply = sdk.openai_client(base_url=f"{server.url}/v1").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "anything"}])
        assert reply.choices[0].message.content == "Hi!"
    finally:
        assert server.stop() == 0
