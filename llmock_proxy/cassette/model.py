"""The cassette model: what one recorded exchange looks like, in memory and in YAML.

A cassette file is ``{version: 1, interactions: [...]}``. Each interaction has
a ``request``, the derived ``match`` key, a ``response`` and a ``summary``.
Payloads (request bodies, response bodies, EventStream payloads, WebSocket
messages) are stored as exactly one of ``json`` (parsed, so YAML shows it as
data), ``text`` or ``base64``. Streams keep every event with ``t``: milliseconds
since the request was sent.

``from_dict(to_dict(x)) == x`` for every model here. These are plain
dataclasses: reading and writing files (:mod:`llmock_proxy.cassette.store`),
YAML (:mod:`llmock_proxy.cassette.yamlio`) and schema validation
(:mod:`llmock_proxy.cassette.schema`) sit around them.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmock_proxy import nesting
from llmock_proxy.errors import CassetteError
from llmock_proxy.json_spelling import compact_json

FORMAT_VERSION = 1


PayloadKind = Literal["json", "text", "base64"]


PAYLOAD_KINDS: tuple[PayloadKind, ...] = ("json", "text", "base64")


# -- payloads -----------------------------------------------------------------


def _is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == "application/json" or ct.endswith("+json") or ct.endswith("/json")


def _is_text_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct.startswith("text/") or ct in {
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/javascript",
    }


@dataclass
class Payload:
    """A body or message: parsed JSON, text, or binary kept as base64."""

    kind: PayloadKind
    value: Any

    @classmethod
    def from_bytes(
        cls, data: bytes, content_type: str | None = None, *, exact: bool = False
    ) -> Payload:
        """Choose the most readable faithful form.

        JSON is parsed when the content type says JSON or the bytes look like a
        JSON document. With ``exact`` (binary WebSocket frames, EventStream
        payloads) JSON is only kept when re-encoding gives the same bytes.
        JSON nested deeper than :data:`~llmock_proxy.nesting.MAX_PAYLOAD_DEPTH`
        stays text. Never raises.
        """
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return cls("base64", base64.b64encode(data).decode("ascii"))
        stripped = text.strip()
        if stripped[:1] in ("{", "[") or _is_json_type(content_type):
            try:
                parsed = nesting.loads(text)
                # A lone surrogate escape ("\ud800") parses but cannot be
                # re-encoded as UTF-8: keep such documents as text. Only an
                # escape can make one (UTF-8 text has none), so a document
                # without any is not spelled again just to find out.
                respelled = compact_json(parsed).encode() if exact or "\\u" in text else b""
            except (ValueError, UnicodeEncodeError, RecursionError):  # TooDeep is a ValueError
                parsed = None
            else:
                if isinstance(parsed, (dict, list)) and (not exact or respelled == data):
                    return cls("json", parsed)
        if exact and content_type == "application/octet-stream":
            return cls("base64", base64.b64encode(data).decode("ascii"))
        return cls("text", text)

    @classmethod
    def json(cls, value: Any) -> Payload:
        return cls("json", value)

    def to_bytes(self) -> bytes:
        if self.kind == "json":
            return compact_json(self.value).encode()
        if self.kind == "text":
            return str(self.value).encode()
        return base64.b64decode(self.value)

    def to_fields(self) -> dict[str, Any]:
        return {self.kind: self.value}

    @classmethod
    def from_fields(cls, data: dict[str, Any], where: str) -> Payload | None:
        present = [k for k in PAYLOAD_KINDS if k in data]
        if not present:
            return None
        if len(present) > 1:
            raise CassetteError(f"{where}: only one of json/text/base64 may be given, got {present}")
        kind = present[0]
        value = data[kind]
        if kind == "base64":
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError) as exc:
                raise CassetteError(f"{where}.base64: not valid base64 ({exc})") from None
        return cls(kind, value)


def _t(value: float | int | None) -> float:
    return round(float(value or 0.0), 1)


# -- request ------------------------------------------------------------------


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Payload | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.body is not None:
            out.update(self.body.to_fields())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "request") -> Request:
        return cls(
            method=str(data["method"]).upper(),
            url=str(data["url"]),
            headers={str(k).lower(): str(v) for k, v in (data.get("headers") or {}).items()},
            body=Payload.from_fields(data, where),
        )

    @property
    def json(self) -> Any:
        return self.body.value if self.body is not None and self.body.kind == "json" else None


# -- stream elements ----------------------------------------------------------


@dataclass
class SSEEvent:
    """One server-sent event. ``data`` is parsed JSON when the data was a JSON
    object or array, the raw text otherwise (``[DONE]``), None when absent."""

    data: Any = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None
    t: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("event", "id", "retry", "comment"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.data is not None:
            out["data"] = self.data
        out["t"] = _t(self.t)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SSEEvent:
        # Positional and inlined: streams hold most of a cassette's objects.
        get = data.get
        return cls(
            get("data"), get("event"), get("id"), get("retry"), get("comment"),
            round(float(get("t") or 0.0), 1),
        )

    @property
    def data_text(self) -> str | None:
        """The data field as it goes on the wire."""
        if self.data is None:
            return None
        if isinstance(self.data, (dict, list)):
            return compact_json(self.data)
        return str(self.data)


@dataclass
class NDJSONLine:
    data: Any
    t: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "t": _t(self.t)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NDJSONLine:
        return cls(data.get("data"), round(float(data.get("t") or 0.0), 1))


@dataclass
class EventStreamFrame:
    """One AWS EventStream message. Header values are plain strings for string
    headers, ``{type: <name>, value: <v>}`` for the other header types."""

    headers: dict[str, Any]
    payload: Payload
    t: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"headers": dict(self.headers)}
        out.update(self.payload.to_fields())
        out["t"] = _t(self.t)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "frame") -> EventStreamFrame:
        payload = Payload.from_fields(data, where) or Payload("base64", "")
        return cls(headers=dict(data.get("headers") or {}), payload=payload, t=_t(data.get("t")))

    @property
    def event_type(self) -> str | None:
        value = self.headers.get(":event-type") or self.headers.get(":exception-type")
        return value if isinstance(value, str) else None


# -- WebSocket ----------------------------------------------------------------


@dataclass
class WSMessage:
    from_client: bool
    payload: Payload
    binary: bool = False
    t: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": "client" if self.from_client else "server"}
        if self.binary:
            out["binary"] = True
        out.update(self.payload.to_fields())
        out["t"] = _t(self.t)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "message") -> WSMessage:
        payload = Payload.from_fields(data, where) or Payload("text", "")
        return cls(
            from_client=data.get("from") == "client",
            payload=payload,
            binary=bool(data.get("binary", False)),
            t=_t(data.get("t")),
        )

    @property
    def content(self) -> bytes | str:
        """What goes into the frame: bytes for binary frames, str for text frames."""
        raw = self.payload.to_bytes()
        return raw if self.binary else raw.decode("utf-8")


@dataclass
class WSClose:
    code: int | None = None
    reason: str = ""
    by: Literal["client", "server"] | None = None
    t: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code}
        if self.reason:
            out["reason"] = self.reason
        if self.by is not None:
            out["by"] = self.by
        if self.t is not None:
            out["t"] = _t(self.t)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WSClose:
        t = data.get("t")
        return cls(
            code=data.get("code"),
            reason=data.get("reason", ""),
            by=data.get("by"),
            t=None if t is None else _t(t),
        )


@dataclass
class WebSocketSession:
    messages: list[WSMessage] = field(default_factory=list)
    subprotocol: str | None = None
    close: WSClose | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.subprotocol:
            out["subprotocol"] = self.subprotocol
        out["messages"] = [m.to_dict() for m in self.messages]
        if self.close is not None:
            out["close"] = self.close.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "websocket") -> WebSocketSession:
        close = data.get("close")
        return cls(
            messages=[
                WSMessage.from_dict(m, f"{where}.messages[{i}]")
                for i, m in enumerate(data.get("messages") or [])
            ],
            subprotocol=data.get("subprotocol"),
            close=WSClose.from_dict(close) if close is not None else None,
        )


# -- response -----------------------------------------------------------------

WireForm = Literal["body", "sse", "ndjson", "eventstream", "websocket"]


@dataclass
class Response:
    """Status, headers and exactly one wire form: a body, SSE ``events``,
    NDJSON ``lines``, EventStream ``frames`` or a ``websocket`` transcript."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Payload | None = None
    events: list[SSEEvent] | None = None
    lines: list[NDJSONLine] | None = None
    frames: list[EventStreamFrame] | None = None
    websocket: WebSocketSession | None = None

    @property
    def wire_form(self) -> WireForm:
        if self.events is not None:
            return "sse"
        if self.lines is not None:
            return "ndjson"
        if self.frames is not None:
            return "eventstream"
        if self.websocket is not None:
            return "websocket"
        return "body"

    @property
    def is_stream(self) -> bool:
        return self.wire_form != "body"

    @property
    def item_count(self) -> int | None:
        """How many items a stream has (events, lines, frames, messages); None: a body."""
        if self.events is not None:
            return len(self.events)
        if self.lines is not None:
            return len(self.lines)
        if self.frames is not None:
            return len(self.frames)
        if self.websocket is not None:
            return len(self.websocket.messages)
        return None

    @property
    def json(self) -> Any:
        return self.body.value if self.body is not None and self.body.kind == "json" else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.body is not None:
            out.update(self.body.to_fields())
        if self.events is not None:
            out["events"] = [e.to_dict() for e in self.events]
        if self.lines is not None:
            out["lines"] = [line.to_dict() for line in self.lines]
        if self.frames is not None:
            out["frames"] = [f.to_dict() for f in self.frames]
        if self.websocket is not None:
            out["websocket"] = self.websocket.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "response") -> Response:
        forms = [k for k in ("events", "lines", "frames", "websocket") if k in data]
        body = Payload.from_fields(data, where)
        if len(forms) + (body is not None) > 1:
            raise CassetteError(
                f"{where}: give exactly one of json/text/base64/events/lines/frames/websocket"
            )
        events = data.get("events")
        lines = data.get("lines")
        frames = data.get("frames")
        ws = data.get("websocket")
        return cls(
            status=int(data["status"]),
            headers={str(k).lower(): str(v) for k, v in (data.get("headers") or {}).items()},
            body=body,
            events=[SSEEvent.from_dict(e) for e in events] if events is not None else None,
            lines=[NDJSONLine.from_dict(x) for x in lines] if lines is not None else None,
            frames=(
                [EventStreamFrame.from_dict(f, f"{where}.frames[{i}]") for i, f in enumerate(frames)]
                if frames is not None
                else None
            ),
            websocket=(
                WebSocketSession.from_dict(ws, f"{where}.websocket") if ws is not None else None
            ),
        )


# -- interaction and cassette -------------------------------------------------


@dataclass
class Interaction:
    request: Request
    response: Response | None = None
    # The matcher's key, derived at record time and editable by a person:
    # family, model, fingerprint, stream, plus readable criteria.
    match: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    recorded_at: str | None = None
    # Why the exchange did not complete ("client disconnected", ...), if it did not.
    incomplete: str | None = None
    # A transport failure instead of a response ("connection refused", ...).
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.recorded_at is not None:
            out["recorded_at"] = self.recorded_at
        out["request"] = self.request.to_dict()
        if self.match:
            out["match"] = dict(self.match)
        if self.response is not None:
            out["response"] = self.response.to_dict()
        if self.error is not None:
            out["error"] = self.error
        if self.summary is not None:
            out["summary"] = self.summary
        if self.incomplete is not None:
            out["incomplete"] = self.incomplete
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "interaction") -> Interaction:
        response = data.get("response")
        return cls(
            request=Request.from_dict(data["request"], f"{where}.request"),
            response=Response.from_dict(response, f"{where}.response") if response else None,
            match=dict(data.get("match") or {}),
            summary=data.get("summary"),
            recorded_at=data.get("recorded_at"),
            incomplete=data.get("incomplete"),
            error=data.get("error"),
        )


@dataclass
class Cassette:
    interactions: list[Interaction] = field(default_factory=list)
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": FORMAT_VERSION}
        if self.meta:
            out["meta"] = dict(self.meta)
        out["interactions"] = [i.to_dict() for i in self.interactions]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> Cassette:
        where = str(path) if path else "cassette"
        return cls(
            interactions=[
                Interaction.from_dict(item, f"{where}: interactions[{i}]")
                for i, item in enumerate(data.get("interactions") or [])
            ],
            path=path,
            meta=dict(data.get("meta") or {}),
        )
