"""Plumbing the provider tests share: a real SDK's request as the cassette
:class:`Request` the recorder would store, a rendered :class:`Response` as
the bytes a replay sends, and wire bytes read back into stream items.

Helpers only; the tests live in the ``test_providers_*`` modules.
"""

from __future__ import annotations

from typing import Any

from llmock_proxy import wire
from llmock_proxy.cassette.model import Payload, Request, Response
from tests.harness.http import httpx


def as_cassette_request(request: httpx.Request) -> Request:
    """What the recorder would store for this request an SDK really sent."""
    content = request.read()
    body = Payload.from_bytes(content, request.headers.get("content-type")) if content else None
    return Request(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )


def wire_bytes(response: Response) -> bytes:
    """The bytes a replay sends for ``response``: its stream encoded, or its body."""
    form = response.wire_form
    if form == "sse":
        return b"".join(wire.encode(form, event) for event in response.events or [])
    if form == "ndjson":
        return b"".join(wire.encode(form, line) for line in response.lines or [])
    if form == "eventstream":
        return b"".join(wire.encode(form, frame) for frame in response.frames or [])
    return response.body.to_bytes() if response.body is not None else b""


def as_httpx_response(response: Response) -> httpx.Response:
    """``response`` as the SDK's transport hands it over: status, headers, wire bytes."""
    return httpx.Response(response.status, headers=response.headers, content=wire_bytes(response))


def decode_stream(form: wire.StreamForm, raw: bytes, piece: int | None = None) -> list[Any]:
    """The stream items in ``raw``, fed to the decoder whole or ``piece`` bytes at a time."""
    decoder = wire.new_decoder(form)
    size = piece or max(len(raw), 1)
    items: list[Any] = []
    for start in range(0, len(raw), size):
        items += decoder.feed(raw[start : start + size])
    return items + decoder.close()
