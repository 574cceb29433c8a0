"""OpenAI Embeddings provider, checked against the real openai SDK (which asks for base64)."""

from __future__ import annotations

import base64
import struct

import openai
import pytest

from llmock_proxy.canonical import Summary
from llmock_proxy.cassette.model import Payload, Request, Response
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.base import RenderOptions
from llmock_proxy.providers.openai_embeddings import OpenAIEmbeddings
from tests.test_providers_openai_harness import SDKTransport, capture, client_answering

EMBEDDINGS = OpenAIEmbeddings()


# The SDK refuses an answer without vectors, so requests are answered with one.
ANY_ANSWER = Response(200, {"content-type": "application/json"}, Payload.json({
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.0]}],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 1, "total_tokens": 1},
}))


def send(**kwargs: object) -> Request:
    kwargs.setdefault("model", "text-embedding-3-small")
    return capture(lambda c: c.embeddings.create(**kwargs), answer=ANY_ANSWER)


def float32(values: list[float]) -> list[float]:
    """``values`` as float32 would hold them: what base64 transport keeps."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def test_detects_embeddings_but_not_ollamas_own_endpoint() -> None:
    assert EMBEDDINGS.detect("POST", "api.openai.com", "/v1/embeddings")
    assert EMBEDDINGS.detect("POST", "openrouter.ai", "/api/v1/embeddings")
    assert EMBEDDINGS.detect("POST", "x.openai.azure.com", "/openai/deployments/embed-small/embeddings")
    assert not EMBEDDINGS.detect("POST", "localhost", "/api/embeddings")
    assert not EMBEDDINGS.detect("GET", "api.openai.com", "/v1/embeddings")


def test_canonical_single_input_sdk_defaults_to_base64() -> None:
    request = send(input="The food was delicious")
    assert request.json["encoding_format"] == "base64"  # the SDK's own choice
    canonical = EMBEDDINGS.canonical(request)
    assert canonical.family == "openai.embeddings"
    assert canonical.model == "text-embedding-3-small"
    assert canonical.embedding_input == ["The food was delicious"]
    assert derive_match(canonical)["inputText"] == "The food was delicious"
    assert EMBEDDINGS.render_options(request).encoding_format == "base64"
    assert EMBEDDINGS.render_options(send(input="x", encoding_format="float")).encoding_format == "float"


def test_canonical_list_and_token_inputs() -> None:
    assert EMBEDDINGS.canonical(send(input=["first", "second"])).embedding_input == ["first", "second"]
    assert EMBEDDINGS.canonical(send(input=[1, 2, 3])).embedding_input == ["[1,2,3]"]
    assert EMBEDDINGS.canonical(send(input=[[1, 2], [3]])).embedding_input == ["[1,2]", "[3]"]


def test_fingerprints() -> None:
    base = EMBEDDINGS.canonical(send(input=["a", "b"])).fingerprint
    assert EMBEDDINGS.canonical(send(input=["a", "b"])).fingerprint == base
    # The wire encoding is not the question asked.
    assert EMBEDDINGS.canonical(send(input=["a", "b"], encoding_format="float")).fingerprint == base
    assert EMBEDDINGS.canonical(send(input=["a", "c"])).fingerprint != base
    assert EMBEDDINGS.canonical(send(input=["a", "b"], model="text-embedding-3-large")).fingerprint != base
    assert EMBEDDINGS.canonical(send(input=["a", "b"], dimensions=256)).fingerprint != base


def test_azure_deployment_names_the_model_when_body_does_not() -> None:
    transport = SDKTransport(ANY_ANSWER)
    transport.azure("embed-small").embeddings.create(model="text-embedding-3-small", input="hi")
    request = transport.requests[0]
    assert "/openai/deployments/embed-small/embeddings" in request.url
    body = {k: v for k, v in request.json.items() if k != "model"}
    assert EMBEDDINGS.canonical(Request("POST", request.url, {}, Payload.json(body))).model == "embed-small"


@pytest.mark.parametrize("encoding_format", ["base64", "float"])
def test_rendered_embeddings_parse_in_sdk(encoding_format: str) -> None:
    vectors = [[0.25, -0.5, 0.125, 1.0], [0.1, 0.2, 0.3, 0.4]]
    kwargs = {} if encoding_format == "base64" else {"encoding_format": "float"}
    request = send(input=["first", "second"], **kwargs)
    response = EMBEDDINGS.render(
        Summary(embeddings=vectors, usage={"prompt_tokens": 2, "total_tokens": 2}),
        EMBEDDINGS.canonical(request),
        stream=False,
        options=EMBEDDINGS.render_options(request),
    )
    sent = response.json["data"][0]["embedding"]
    assert isinstance(sent, str if encoding_format == "base64" else list)

    result = client_answering(response).embeddings.create(model="text-embedding-3-small", input=["first", "second"], **kwargs)
    assert result.object == "list"
    assert [row.index for row in result.data] == [0, 1]
    expected = [float32(v) for v in vectors] if encoding_format == "base64" else vectors
    assert [row.embedding for row in result.data] == expected
    assert result.usage.prompt_tokens == 2 and result.model == "text-embedding-3-small"


def test_summarize_recorded_base64_and_float_bodies() -> None:
    vector = [0.0023064255, -0.009327292, -0.0028842222]
    encoded = base64.b64encode(struct.pack("<3f", *vector)).decode()
    request = send(input="hi")

    def recorded(embedding: object) -> Response:
        return Response(200, {"content-type": "application/json"}, Payload.json({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }))

    from_base64 = EMBEDDINGS.summarize(request, recorded(encoded))
    assert from_base64.embeddings == [float32(vector)]
    assert from_base64.model == "text-embedding-3-small" and from_base64.usage["prompt_tokens"] == 1
    assert EMBEDDINGS.summarize(request, recorded(vector)).embeddings == [vector]


@pytest.mark.parametrize("encoding_format", ["base64", "float"])
def test_summarize_of_render_reproduces_summary(encoding_format: str) -> None:
    summary = Summary(embeddings=[float32([0.5, -0.25, 0.75])], usage={"prompt_tokens": 3, "total_tokens": 3}, model="text-embedding-3-small")
    request = send(input="x")
    rendered = EMBEDDINGS.render(summary, EMBEDDINGS.canonical(request), stream=False, options=RenderOptions(encoding_format=encoding_format))
    again = EMBEDDINGS.summarize(request, rendered)
    assert (again.embeddings, again.usage, again.model) == (summary.embeddings, summary.usage, summary.model)


def test_fixture_without_vectors_gets_deterministic_ones() -> None:
    request = send(input=["alpha", "beta", "alpha"], dimensions=8)
    canonical = EMBEDDINGS.canonical(request)
    response = EMBEDDINGS.render(Summary(), canonical, stream=False, options=EMBEDDINGS.render_options(request))
    rows = client_answering(response).embeddings.create(model="text-embedding-3-small", input=["alpha", "beta", "alpha"], dimensions=8).data
    assert [len(row.embedding) for row in rows] == [8, 8, 8]
    assert rows[0].embedding == rows[2].embedding != rows[1].embedding
    assert abs(sum(v * v for v in rows[0].embedding) - 1.0) < 1e-5
    assert EMBEDDINGS.render(Summary(), canonical, stream=False) == EMBEDDINGS.render(Summary(), canonical, stream=False)


def test_errors() -> None:
    response = EMBEDDINGS.error(400, "This model's maximum context length is 8192 tokens")
    with pytest.raises(openai.BadRequestError) as caught:
        client_answering(response).embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.body["type"] == "invalid_request_error"
    assert EMBEDDINGS.summarize(send(input="x"), response).error == {
        "status": 400,
        "type": "invalid_request_error",
        "message": "This model's maximum context length is 8192 tokens",
    }
