"""Turning one live HTTP exchange into a cassette :class:`Interaction`.

Sans-mitmproxy: whoever carries the bytes (the record addon, the replay
addon's record-on-miss mode, a test) drives a :class:`Recording`::

    recording = recorder.start(method, url, headers, body)   # request is on its way
    if recording.response_started(status, headers):          # a stream: tee it
        for chunk in chunks: recording.feed(chunk)            # or use recording.tee
        interaction = recording.finish()
    else:
        interaction = recording.finish(body)                  # a whole body
    # or, on a transport failure / disconnect at any point:
    interaction = recording.fail("connection refused")

Streamed bodies are decoded as they pass (content-encoding first, then the
wire form) and every decoded item is stamped with ``t``: milliseconds since the
request was sent. Nothing is buffered on the client's path; only the decoded
items are kept. The finished interaction carries the derived ``match`` key and
the provider's ``summary`` and has been through the :class:`Redactor`, so it is
ready to be written.

What the upstream sends never makes the recorder raise: the tee hands every
chunk on unchanged, and a stream that stops decoding (garbage EventStream, a
damaged gzip member, a decoded body past
:data:`~llmock_proxy.wire.content_encoding.DEFAULT_MAX_DECODED_SIZE`) is
recorded as far as it was read, with ``incomplete: stream could not be
decoded: ...`` saying why; a plain body whose content-encoding does not
decode is kept as it came, still encoded. SSE and NDJSON garbage decodes as
text. A request body that does not decode (or nests too deep to keep as JSON)
is kept as it came, as text or base64. What a provider makes of garbage (a
``model`` that is an object, say) never makes the interaction unloadable: a
summary or match key the cassette schema would refuse is left out.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from llmock_proxy import wire
from llmock_proxy.cassette.model import (
    EventStreamFrame,
    Interaction,
    NDJSONLine,
    Payload,
    Request,
    Response,
    SSEEvent,
    WebSocketSession,
    WSClose,
    WSMessage,
)
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.schema import cassette_problems
from llmock_proxy.match.key import derive_match
from llmock_proxy.providers.base import Provider
from llmock_proxy.providers.catalog import GENERIC, identify
from llmock_proxy.wire.content_encoding import Decompressor, encodings

log = logging.getLogger(__name__)


# Headers that describe one hop or the body's transfer, not the exchange:
# the stored body is decoded and a replay recomputes framing, so keeping them
# would lie (a recorded ``connection: close`` would close the replay client).
# ``host`` repeats the URL; ``proxy-authorization`` is the client's credential
# for the proxy itself.
UNSTORED_HEADERS = frozenset(
    {
        "content-encoding",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "host",
    }
)


HeaderSource = Mapping[str, str] | Iterable[tuple[str, str]]


def header_pairs(headers: HeaderSource) -> list[tuple[str, str]]:
    """(name, value) pairs from a mapping or a list of pairs, names lower-cased."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name).lower(), str(value)) for name, value in items]


def stored_headers(headers: HeaderSource) -> dict[str, str]:
    """The headers a cassette keeps: lower-case names, repeated fields joined
    with ``", "`` (RFC 9110 field combination), transfer headers left out."""
    out: dict[str, str] = {}
    for name, value in header_pairs(headers):
        if name in UNSTORED_HEADERS or name.startswith(":"):
            continue
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def _first(headers: HeaderSource, name: str) -> str | None:
    for key, value in header_pairs(headers):
        if key == name:
            return value
    return None


def decoded_body(
    raw: bytes,
    content_encoding: str | None,
    whose: Callable[[], str] = lambda: "body",
    warn_level: int = logging.WARNING,
) -> tuple[bytes, str | None]:
    """The body with its content-encoding undone, and the encoding still on it
    (None when decoding worked; the original value when it did not, so the
    stored bytes stay truthful about what they are). ``whose()`` names the
    body in the warning ("POST https://...: request"); called only to warn."""
    if not content_encoding:
        return raw, None
    try:
        return wire.content_encoding.decompress(raw, content_encoding), None
    except ValueError as exc:
        log.log(warn_level, "%s: keeping the body encoded: %s", whose(), exc)
        return raw, content_encoding


def _body_payload(raw: bytes | None, content_type: str | None) -> Payload | None:
    if not raw:
        return None
    return Payload.from_bytes(raw, content_type)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Recorder:
    """Starts recordings; holds what every recording shares (redaction, clock)."""

    redactor: Redactor = field(default_factory=Redactor.default)
    # Monotonic seconds; a test can pass a fake clock to pin ``t``.
    clock: Callable[[], float] = time.monotonic
    # The level of the recordings' warnings (a body that does not decode, a
    # request its family does not understand...): DEBUG for a second
    # recorder of the same exchanges, whose warnings the first one gives.
    warn_level: int = logging.WARNING

    def start(
        self,
        method: str,
        url: str,
        headers: HeaderSource,
        body: bytes | None = None,
        *,
        started: float | None = None,
    ) -> Recording:
        """Begin recording a request that is being sent now (or at ``started``,
        a value of :attr:`clock`)."""
        pairs = header_pairs(headers)
        raw, still_encoded = decoded_body(
            body or b"", _first(pairs, "content-encoding"),
            lambda: f"{method.upper()} {self.redactor.redact_url(url)}: request", self.warn_level,
        )
        request_headers = stored_headers(pairs)
        if still_encoded:
            request_headers["content-encoding"] = still_encoded
        request = Request(
            method=method.upper(),
            url=url,
            headers=request_headers,
            body=_body_payload(raw, _first(pairs, "content-type")),
        )
        try:
            provider = identify(request.method, url, dict(pairs))
        except Exception:  # a catalog bug must not lose the recording
            log.exception("cannot identify the API family of %s %s", request.method, self.redactor.redact_url(url))
            provider = GENERIC
        return Recording(
            request=request,
            provider=provider,
            redactor=self.redactor,
            clock=self.clock,
            started=self.clock() if started is None else started,
            recorded_at=utc_now(),
            warn_level=self.warn_level,
        )


@dataclass
class Recording:
    """One exchange in flight. Not thread-safe: one driver feeds it."""

    request: Request
    provider: Provider
    redactor: Redactor
    clock: Callable[[], float]
    started: float
    recorded_at: str
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    # Set once the response turned out to be a stream of items ("sse", ...).
    form: str | None = None
    items: list[SSEEvent | NDJSONLine | EventStreamFrame] = field(default_factory=list)
    # Teed bytes of a chunked response that is not an item stream (decoded).
    _body_parts: list[bytes] = field(default_factory=list)
    _decompressor: Decompressor | None = None
    _decoder: wire.StreamDecoder | None = None
    _content_type: str | None = None
    _content_encoding: str | None = None
    _still_encoded: str | None = None
    # Why the teed bytes could not be decoded, once they could not.
    _decode_error: str | None = None
    # The raw chunks of a teed plain body with a content-encoding, kept in
    # case it does not decode (damaged, or a bomb past the decoded-size cap).
    _raw_parts: list[bytes] | None = None
    _teeing: bool = False
    _ended: bool = False
    # The level of this recording's warnings (see Recorder.warn_level).
    warn_level: int = logging.WARNING

    def _warn(self, message: str, *args: object) -> None:
        log.log(self.warn_level, message, *args)

    @property
    def _where(self) -> str:
        """The exchange, for a warning (its URL without credentials)."""
        return f"{self.request.method} {self.redactor.redact_url(self.request.url)}"

    # -- response ------------------------------------------------------------

    def response_started(
        self, status: int, headers: HeaderSource, *, streamed: bool | None = None
    ) -> bool:
        """The response head arrived. Returns whether its body should be teed
        through :meth:`feed` (every item stream, and any chunked or unsized
        body) rather than handed whole to :meth:`finish`. ``streamed`` forces
        the answer when the carrier already decided."""
        pairs = header_pairs(headers)
        self.status = int(status)
        self.response_headers = stored_headers(pairs)
        self._content_type = _first(pairs, "content-type")
        self._content_encoding = _first(pairs, "content-encoding")
        form = wire.stream_form(self._content_type)
        if streamed is None:
            chunked = "chunked" in (_first(pairs, "transfer-encoding") or "").lower()
            unsized = _first(pairs, "content-length") is None
            streamed = form is not None or chunked or unsized
        if not streamed:
            return False
        self._teeing = True
        self.form = form
        try:
            self._decompressor = Decompressor(self._content_encoding)
        except ValueError as exc:  # unknown coding: keep the bytes as they came
            self._warn("%s: response: keeping the body encoded: %s", self._where, exc)
            self._still_encoded = self._content_encoding
            self.form = None
        if self.form is not None:
            self._decoder = wire.new_decoder(self.form)  # type: ignore[arg-type]
        elif self._decompressor is not None and encodings(self._content_encoding):
            self._raw_parts = []
        return True

    def feed(self, chunk: bytes) -> None:
        """One teed chunk of the response body as it came off the wire; ``b""``
        ends the body. Never raises: a stream the recorder cannot decode is
        still passed on untouched and recorded as far as it could be read."""
        if self._ended:
            return
        if not chunk:
            self._end()
            return
        if self._raw_parts is not None:
            self._raw_parts.append(chunk)
            if self._still_encoded is not None:
                return  # it did not decode: kept as it came
        if self._decode_error is not None:
            return
        try:
            self._take(self._decompress(chunk))
        except Exception as exc:
            self._broken(exc)

    def tee(self, chunk: bytes) -> bytes:
        """:meth:`feed`, returning the chunk unchanged: the callable a proxy
        puts in the body's path (mitmproxy's ``flow.response.stream``)."""
        self.feed(chunk)
        return chunk

    def _decompress(self, chunk: bytes) -> bytes:
        if self._decompressor is None:
            return chunk
        return self._decompressor.feed(chunk)

    def _take(self, data: bytes) -> None:
        if not data or self._decode_error is not None:
            return  # what came before the damage is kept; the rest is unreadable
        if self._decoder is None:
            self._body_parts.append(data)
            return
        items = self._decoder.feed(data)
        if items:
            t = self._elapsed_ms()
            for item in items:
                item.t = t
            self.items.extend(items)

    def _end(self) -> None:
        self._ended = True
        try:
            if self._decode_error is not None:
                return
            if self._decompressor is not None:
                self._take(self._decompressor.flush())
            if self._decoder is not None and self._decode_error is None:
                items = self._decoder.close()
                t = self._elapsed_ms()
                for item in items:
                    item.t = t
                self.items.extend(items)
        except Exception as exc:
            self._broken(exc)

    def _broken(self, exc: Exception) -> None:
        if self._raw_parts is not None:  # a plain body: keep it as it came, still encoded
            if self._still_encoded is None:
                self._still_encoded = self._content_encoding
                self._body_parts = []
                self._warn("%s: response: keeping the body encoded: %s", self._where, exc)
            return
        if self._decode_error is None:
            self._decode_error = f"{type(exc).__name__}: {exc}"
            self._warn("%s: cannot decode the stream: %s", self._where, exc)

    def _elapsed_ms(self) -> float:
        return round((self.clock() - self.started) * 1000.0, 1)

    # -- completion ----------------------------------------------------------

    def finish(self, body: bytes | None = None) -> Interaction:
        """The response ended normally. ``body`` is the raw (still
        content-encoded) body of a response that was not teed."""
        if self.status is None:
            raise RuntimeError("finish() before response_started()")
        if self._teeing:
            if not self._ended:
                self._end()
            incomplete = (
                f"stream could not be decoded: {self._decode_error}" if self._decode_error else None
            )
            return self._build(self._teed_response(), incomplete=incomplete)
        return self._build(self._whole_response(body or b""))

    def fail(self, reason: str) -> Interaction:
        """The exchange broke off: before a response (the interaction records
        the ``error``, e.g. connection refused) or while the body was flowing
        (the interaction keeps what arrived and is marked ``incomplete``)."""
        if self.status is None:
            return self._build(None, error=reason)
        response = self._teed_response() if self._teeing else self._whole_response(b"")
        interaction = self._build(response, incomplete=reason)
        if self._answer_was_complete(interaction):
            # The client hung up after the model's last word (openai-python
            # closes at ``[DONE]`` before the body's end arrives): nothing is
            # missing from the answer.
            interaction.incomplete = None
        return interaction

    @staticmethod
    def _answer_was_complete(interaction: Interaction) -> bool:
        return bool(
            interaction.response is not None
            and interaction.response.is_stream
            and interaction.summary
            and interaction.summary.get("finish_reason")
        )

    def _teed_response(self) -> Response:
        response = Response(status=self.status or 0, headers=dict(self.response_headers))
        if self.form == "sse":
            response.events = [i for i in self.items if isinstance(i, SSEEvent)]
        elif self.form == "ndjson":
            response.lines = [i for i in self.items if isinstance(i, NDJSONLine)]
        elif self.form == "eventstream":
            response.frames = [i for i in self.items if isinstance(i, EventStreamFrame)]
        else:  # a chunked or unsized plain body
            parts = self._raw_parts if self._raw_parts is not None and self._still_encoded else self._body_parts
            response.body = _body_payload(b"".join(parts), self._content_type)
            if self._still_encoded:
                response.headers["content-encoding"] = self._still_encoded
        return response

    def _whole_response(self, raw: bytes) -> Response:
        data, still_encoded = decoded_body(
            raw, self._content_encoding, lambda: f"{self._where}: response", self.warn_level
        )
        headers = dict(self.response_headers)
        if still_encoded:
            headers["content-encoding"] = still_encoded
        return Response(
            status=self.status or 0,
            headers=headers,
            body=_body_payload(data, self._content_type),
        )

    def _build(
        self, response: Response | None, *, error: str | None = None, incomplete: str | None = None
    ) -> Interaction:
        interaction = Interaction(
            request=self.request,
            response=response,
            recorded_at=self.recorded_at,
            error=error,
            incomplete=incomplete,
        )
        interaction.match = self._match()
        if response is not None:
            interaction.summary = self._summary(response)
        self._loadable(interaction)
        return self.redactor.redact_interaction(interaction)

    def _loadable(self, interaction: Interaction) -> None:
        """Leave out what the cassette schema would refuse (a provider's
        summary or match key made from garbage, a ``model`` that is an
        object): one such field must not make the whole cassette unloadable."""
        problems = _schema_problems(interaction)
        if problems and interaction.summary is not None and any(".summary" in p for p in problems):
            self._warn("%s: summary left out: %s", self._where, "; ".join(problems))
            interaction.summary = None
            problems = _schema_problems(interaction)
        if problems and any(".match" in p for p in problems):
            self._warn("%s: matching it as generic: %s", self._where, "; ".join(problems))
            interaction.match = copy.deepcopy(derive_match(GENERIC.canonical(self.request)))

    def _match(self) -> dict[str, Any]:
        try:
            # Copies: shared objects would come out as YAML anchors.
            return copy.deepcopy(derive_match(self.provider.canonical(self.request)))
        except Exception as exc:
            # A body the family does not understand is still worth keeping:
            # fall back to the generic key (method, url, body).
            self._warn("%s: %s request not understood (%s); matching it as generic", self._where, self.provider.family, exc)
        return copy.deepcopy(derive_match(GENERIC.canonical(self.request)))

    def _summary(self, response: Response) -> dict[str, Any] | None:
        try:
            summary = self.provider.summarize(self.request, response).to_dict()
        except Exception as exc:
            self._warn("%s: cannot summarize the %s response: %s", self._where, self.provider.family, exc)
            return None
        return copy.deepcopy(summary) or None

    def finish_websocket(
        self,
        session: WebSocketSession,
        *,
        status: int = 101,
        response_headers: dict[str, str] | None = None,
        incomplete: str | None = None,
    ) -> Interaction:
        """The finished interaction for a recorded WebSocket session: this
        recording's upgrade request, and the 101 (or ``status``) answer with
        ``session`` as its transcript."""
        request = self.request
        provider = self.provider
        redactor = self.redactor
        headers = response_headers if response_headers is not None else dict(self.response_headers)
        stored_request = Request(
            method=request.method,
            url=request.url,
            headers={k: v for k, v in request.headers.items() if k not in REQUEST_HANDSHAKE_HEADERS},
            body=request.body,
        )
        response = Response(
            status=status,
            headers={k: v for k, v in headers.items() if k not in RESPONSE_HANDSHAKE_HEADERS},
            websocket=session,
        )
        interaction = Interaction(
            request=stored_request,
            response=response,
            recorded_at=self.recorded_at,
            incomplete=incomplete,
        )
        try:
            canonical = provider.canonical(stored_request)
        except Exception as exc:
            self._warn("%s: %s upgrade not understood (%s); matching it as generic", self._where, provider.family, exc)
            canonical = GENERIC.canonical(stored_request)
        interaction.match = copy.deepcopy(derive_match(canonical))
        try:
            summary = provider.summarize(stored_request, response).to_dict()
        except Exception as exc:
            self._warn("%s: cannot summarize the %s session: %s", self._where, provider.family, exc)
            summary = {}
        interaction.summary = copy.deepcopy(summary) or None
        self._loadable(interaction)
        return redactor.redact_interaction(interaction)


def _schema_problems(interaction: Interaction) -> list[str]:
    return cassette_problems({"version": 1, "interactions": [interaction.to_dict()]}, "the recording")


def describe(interaction: Interaction) -> str:
    """One log line's worth: family, model, status, what the body was."""
    match = interaction.match or {}
    family = match.get("family", "?")
    model = match.get("model") or (interaction.summary or {}).get("model") or "-"
    response = interaction.response
    if response is None:
        outcome = f"error ({interaction.error})"
    else:
        outcome = f"{response.status} {response_shape(response)}"
    if interaction.incomplete:
        outcome += f", incomplete ({interaction.incomplete})"
    return f"{family} {model} {outcome}"


def response_shape(response: Response) -> str:
    """What a response's body is, for a log line: "8 events" (an SSE stream;
    lines, frames, messages for the other forms) or "body"."""
    return stream_shape(response.wire_form, response.item_count)


_UNITS = {"sse": "events", "ndjson": "lines", "eventstream": "frames", "websocket": "messages"}


def stream_shape(form: str, count: int | None) -> str:
    """:func:`response_shape` from a wire form and its number of items (None: a body)."""
    return f"{count} {_UNITS[form]}" if count is not None and form in _UNITS else "body"


# Handshake headers that are a per-connection nonce or the server's framing,
# not part of what was asked or answered. The request keeps ``upgrade``: it is
# what tells a WebSocket family from the HTTP API on the same path.
REQUEST_HANDSHAKE_HEADERS = frozenset({"sec-websocket-key"})


RESPONSE_HANDSHAKE_HEADERS = frozenset({"sec-websocket-accept", "upgrade"})


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000.0, 1)


@dataclass
class WebSocketTranscript:
    """One session's messages as they pass, and how it ended."""

    started: float  # wall-clock seconds when the upgrade request was sent
    messages: list[WSMessage] = field(default_factory=list)

    def add(self, from_client: bool, content: bytes | str, *, is_text: bool, at: float) -> WSMessage:
        raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        payload = Payload.from_bytes(raw) if is_text else Payload.from_bytes(raw, exact=True)
        if not is_text and payload.kind == "text" and not _printable(raw):
            payload = Payload.from_bytes(raw, "application/octet-stream", exact=True)
        message = WSMessage(from_client=from_client, payload=payload, binary=not is_text, t=_ms(at - self.started))
        self.messages.append(message)
        return message

    def finish(
        self,
        *,
        code: int | None,
        reason: str | None = None,
        by: Literal["client", "server"] | None = None,
        at: float | None = None,
        subprotocol: str | None = None,
    ) -> WebSocketSession:
        close = WSClose(
            code=int(code) if code is not None else None,
            reason=reason or "",
            by=by,
            t=_ms(at - self.started) if at is not None else None,
        )
        return WebSocketSession(messages=list(self.messages), subprotocol=subprotocol or None, close=close)


def _printable(raw: bytes) -> bool:
    """Text that reads as text in a cassette: no control bytes but whitespace."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= " " or c in "\t\n\r" for c in text)
