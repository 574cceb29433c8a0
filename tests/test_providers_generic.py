"""The generic family: any HTTP API, matched on method, path, query and body.

Requests are sent by a real httpx client and captured at its transport, so
URLs, query encoding and bodies are spelled the way a client spells them.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmock_proxy.canonical import Summary
from llmock_proxy.cassette.model import Payload, Request, Response, SSEEvent
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.generic import (
    Generic,
    body_digest,
    query_without_credentials,
)
from tests.harness.http import httpx

PROVIDER = Generic()


def sent(method: str, url: str, **kwargs: Any) -> Request:
    """What an httpx client puts on the wire, as a cassette request."""
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.request(method, url, **kwargs)
    request = captured[0]
    return Request(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=Payload.from_bytes(request.content, request.headers.get("content-type")) if request.content else None,
    )


def test_detect_takes_anything():
    assert PROVIDER.detect("GET", "api.example.com", "/")
    assert PROVIDER.detect("DELETE", "", "/v2/things/1")


def test_canonical_keeps_method_path_and_query_without_credentials():
    req = PROVIDER.canonical(sent(
        "GET", "https://api.example.com/v2/search",
        params=[("q", "llm"), ("page", "2"), ("tag", "a"), ("tag", "b"), ("key", "sk-test-1"),
                ("API_KEY", "sk-test-2"), ("access_token", "t"), ("token", "t"), ("signature", "s"), ("sig", "s"),
                ("X-Amz-Signature", "abc"), ("x-amz-credential", "AK/2024"), ("X-Amz-Date", "20240101T000000Z")],
    ))
    assert req.family == "generic"
    assert req.extra == {
        "method": "GET",
        "path": "/v2/search",
        "query": {"q": "llm", "page": "2", "tag": ["a", "b"]},
    }
    assert (req.model, req.stream) == (None, False)


def test_credentials_in_the_query_do_not_change_the_fingerprint():
    one = PROVIDER.canonical(sent("GET", "https://api.example.com/items?limit=5&key=sk-test-aaa"))
    two = PROVIDER.canonical(sent("GET", "https://api.example.com/items?key=sk-test-bbb&limit=5"))
    other = PROVIDER.canonical(sent("GET", "https://api.example.com/items?limit=6&key=sk-test-aaa"))
    assert one.fingerprint == two.fingerprint
    assert one.fingerprint != other.fingerprint


def test_json_bodies_compare_by_content_not_spelling():
    compact = sent("POST", "https://api.example.com/v1/run", content=b'{"a":1,"b":[1,2],"model":"m-1"}',
                   headers={"content-type": "application/json"})
    spaced = sent("POST", "https://api.example.com/v1/run", content=b'{ "model": "m-1",\n "b": [1, 2], "a": 1 }',
                  headers={"content-type": "application/json"})
    as_text = sent("POST", "https://api.example.com/v1/run", content=b'{"b":[1,2],"a":1,"model":"m-1"}',
                   headers={"content-type": "text/plain"})
    changed = sent("POST", "https://api.example.com/v1/run", json={"a": 2, "b": [1, 2], "model": "m-1"})
    digests = {PROVIDER.canonical(r).extra["body"] for r in (compact, spaced, as_text)}
    assert len(digests) == 1 and digests.pop().startswith("sha256:")
    assert PROVIDER.canonical(compact).fingerprint == PROVIDER.canonical(spaced).fingerprint
    assert PROVIDER.canonical(changed).fingerprint != PROVIDER.canonical(compact).fingerprint


def test_raw_bodies_are_digested_as_bytes():
    png = sent("PUT", "https://uploads.example.com/v1/blob", content=b"\x89PNG\r\n\x1a\n\x00\xff",
               headers={"content-type": "application/octet-stream"})
    form = sent("POST", "https://api.example.com/login", data={"user": "a", "next": "/"})
    assert png.body.kind == "base64"
    assert PROVIDER.canonical(png).extra["body"] == body_digest(Payload.from_bytes(b"\x89PNG\r\n\x1a\n\x00\xff"))
    assert PROVIDER.canonical(form).extra["body"] != PROVIDER.canonical(
        sent("POST", "https://api.example.com/login", data={"user": "b", "next": "/"})).extra["body"]
    assert "body" not in PROVIDER.canonical(sent("GET", "https://api.example.com/")).extra


def test_model_and_stream_are_read_from_a_json_body():
    req = PROVIDER.canonical(sent("POST", "https://llm.example.com/api/complete",
                                  json={"model": "acme-7b", "stream": True, "prompt": "hi"}))
    assert (req.model, req.stream) == ("acme-7b", True)
    loose = PROVIDER.canonical(sent("POST", "https://llm.example.com/api/complete",
                                    json={"model": 7, "stream": "yes"}))
    assert (loose.model, loose.stream) == (None, False)


def test_the_derived_match_names_method_and_path():
    req = PROVIDER.canonical(sent("POST", "https://llm.example.com/api/complete?key=sk-test-x", json={"model": "a"}))
    match = derive_match(req)
    assert match["family"] == "generic"
    assert (match["method"], match["path"]) == ("POST", "/api/complete")
    assert match["fingerprint"] == req.fingerprint


def test_query_helper_keeps_blank_values():
    assert query_without_credentials("a=&b=1&Sig=x&X-AMZ-Security-Token=y") == {"a": "", "b": "1"}


def test_summarize_is_best_effort():
    request = sent("GET", "https://api.example.com/")
    assert PROVIDER.summarize(request, Response(200, body=Payload("text", "plain answer"))).text == "plain answer"
    assert PROVIDER.summarize(request, Response(200, body=Payload.json({"model": "m", "x": 1}))).model == "m"
    assert PROVIDER.summarize(request, Response(200, body=Payload.json([1, 2]))) == Summary()
    assert PROVIDER.summarize(request, Response(204)) == Summary()
    assert PROVIDER.summarize(request, Response(200, events=[SSEEvent(data={"x": 1})])) == Summary()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (Payload.json({"error": {"message": "nope", "type": "invalid"}}), {"type": "invalid", "message": "nope"}),
        (Payload.json({"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}}),
         {"type": "NOT_FOUND", "message": "gone"}),
        (Payload.json({"error": "bad key"}), {"type": "error", "message": "bad key"}),
        (Payload.json({"message": "slow down"}), {"type": "error", "message": "slow down"}),
        (Payload("text", "Bad Gateway"), {"type": "error", "message": "Bad Gateway"}),
    ],
)
def test_summarize_error_bodies(body: Payload, error: dict[str, str]):
    summary = PROVIDER.summarize(sent("GET", "https://api.example.com/"), Response(418, body=body))
    assert summary.error == {"status": 418, **error}
    assert summary.text == ""


def test_render_refuses_with_a_clear_message():
    req = PROVIDER.canonical(sent("GET", "https://api.example.com/"))
    with pytest.raises(NotImplementedError, match="generic.*verbatim"):
        PROVIDER.render(Summary(text="x"), req, stream=False)


def test_error_envelope():
    response = PROVIDER.error(404, "no recording matched GET /v2/things", type="not_found")
    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json == {"error": {"message": "no recording matched GET /v2/things", "type": "not_found"}}
    assert PROVIDER.summarize(sent("GET", "https://api.example.com/"), response).error == {
        "status": 404, "type": "not_found", "message": "no recording matched GET /v2/things"}
