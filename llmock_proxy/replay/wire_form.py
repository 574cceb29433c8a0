"""A :class:`~llmock_proxy.cassette.model.Response` as the replay puts it on
the wire: its headers (framing recomputed by the server) and its body bytes,
or each stream item's encoding with its recorded offset. The planner and the
answer templates both spell answers through these, so the two agree byte for
byte."""

from __future__ import annotations

from typing import Any

from llmock_proxy import wire
from llmock_proxy.cassette.model import Payload, Response
from llmock_proxy.json_spelling import compact_json

# Framing and hop-by-hop headers: the server computes its own.
RECOMPUTED_HEADERS = frozenset(
    {
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)


def response_headers(response: Response) -> list[tuple[str, str]]:
    """The recorded headers a replay sends (length and encoding recomputed)."""
    return [(k, v) for k, v in response.headers.items() if k not in RECOMPUTED_HEADERS]


def stream_items(response: Response) -> list[tuple[float, bytes]]:
    """A stream's items as (recorded offset in ms, their bytes on the wire)."""
    form = response.wire_form
    if form == "sse":
        items: list[Any] = response.events or []
    elif form == "ndjson":
        items = response.lines or []
    elif form == "eventstream":
        items = response.frames or []
    else:
        return []
    return [(float(item.t), wire.encode(form, item)) for item in items]


def stream_headers(response: Response) -> list[tuple[str, str]]:
    """A stream's headers, with the media type of its wire form when it has none."""
    headers = response_headers(response)
    if not any(k == "content-type" for k, _ in headers):
        media = wire.MEDIA_TYPES.get(response.wire_form)
        if media:
            headers.append(("content-type", media))
    return headers


def body_bytes(payload: Payload | None) -> bytes:
    if payload is not None and payload.kind == "json":
        return compact_json(payload.value).encode()
    return payload.to_bytes() if payload is not None else b""
