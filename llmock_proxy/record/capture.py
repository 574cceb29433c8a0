"""One exchange as a proxy sees it pass, before anything is decoded.

Recording costs CPU: decoding the content-encoding and the stream's items,
the match key, the summary, redaction, the YAML dump and its scan (several
milliseconds for a 20-event stream). Done on a proxy's event loop, under
load, it delays every other stream the proxy carries, and the ``t`` stamped
on an item is when the recorder got to it rather than when it arrived. So
the proxy's side of a recording only notes what passes, with its arrival
time, as a series of messages (:class:`Opened`, :class:`HeadArrived`, one
:class:`BodyChunk` per teed chunk, then :class:`Ended`, :class:`Failed` or
the WebSocket ones), and a :class:`CaptureBuilder` elsewhere (the recording
worker process, see :mod:`llmock_proxy.record.worker`) turns them into the
:class:`~llmock_proxy.cassette.model.Interaction` the
:class:`~llmock_proxy.record.recorder.Recorder` would have made: the same
recorder, fed the same bytes, with a clock reading each message's arrival
time.

:class:`StreamedCapture` is the proxy's side: cheap calls that hand each
message to a sender (the worker's pipe). :class:`LocalCapture` keeps the
recorder in the proxy's own process, for a caller that needs the interaction
the moment the exchange ends (the replay addon's auto mode answers the next
request from it).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmock_proxy import wire
from llmock_proxy.cassette.model import Interaction
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.record.recorder import (
    HeaderSource,
    Recorder,
    Recording,
    WebSocketTranscript,
    header_pairs,
    stored_headers,
    utc_now,
)
from llmock_proxy.wire.content_encoding import DEFAULT_MAX_DECODED_SIZE

log = logging.getLogger(__name__)


# -- the messages -----------------------------------------------------------------------------------


@dataclass
class Opened:
    """A request is on its way upstream (``started``: ``time.monotonic()``)."""

    capture: int
    target: str  # the cassette file
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    started: float
    recorded_at: str


@dataclass
class SentUpstream:
    """The request left for the upstream at ``at``, later than it was opened
    (the proxy had to connect first): ``t`` counts from here."""

    capture: int
    at: float


@dataclass
class HeadArrived:
    """The response head; ``streamed``: its body is teed chunk by chunk."""

    capture: int
    status: int
    headers: list[tuple[str, str]]
    streamed: bool


@dataclass
class BodyChunk:
    """A teed chunk as it came off the wire (still content-encoded), at ``at``."""

    capture: int
    at: float
    data: bytes


@dataclass
class Ended:
    """The body ended at ``at``; ``body``: the whole raw body when not teed."""

    capture: int
    at: float
    body: bytes | None


@dataclass
class Failed:
    """The exchange broke off (no response, or in the middle of the body)."""

    capture: int
    at: float
    reason: str


@dataclass
class WebSocketStarted:
    capture: int
    started: float  # wall-clock seconds when the upgrade request was sent


@dataclass
class WebSocketFrame:
    capture: int
    from_client: bool
    is_text: bool
    content: bytes
    at: float  # wall-clock seconds


@dataclass
class WebSocketEnded:
    capture: int
    code: int | None
    reason: str | None
    by: Literal["client", "server"] | None
    at: float | None
    subprotocol: str | None
    status: int
    response_headers: list[tuple[str, str]]


Message = (
    Opened | SentUpstream | HeadArrived | BodyChunk | Ended | Failed | WebSocketStarted | WebSocketFrame
    | WebSocketEnded
)
MESSAGE_TYPES = (
    Opened, SentUpstream, HeadArrived, BodyChunk, Ended, Failed, WebSocketStarted, WebSocketFrame, WebSocketEnded
)


# -- the proxy's side -------------------------------------------------------------------------------


def is_streamed(headers: HeaderSource, forced: bool | None = None) -> bool:
    """Whether a response body should be teed rather than taken whole: an
    item stream (SSE, NDJSON, EventStream), a chunked or an unsized body
    (the rule of :meth:`Recording.response_started`)."""
    if forced is not None:
        return forced
    content_type = transfer = length = None
    for name, value in header_pairs(headers):
        if name == "content-type" and content_type is None:
            content_type = value
        elif name == "transfer-encoding" and transfer is None:
            transfer = value
        elif name == "content-length" and length is None:
            length = value
    return wire.stream_form(content_type) is not None or "chunked" in (transfer or "").lower() or length is None


class StreamedCapture:
    """The proxy's side of one exchange: each call hands a message to ``send``
    at once (a teed chunk before it goes on to the client), so whoever
    receives them holds everything the client was given."""

    def __init__(
        self,
        capture: int,
        target: Path,
        send: Callable[[Message], None],
        send_chunk: Callable[[int, float, bytes], None],
        handed_over: Callable[[], concurrent.futures.Future[None] | None],
        method: str,
        url: str,
        headers: HeaderSource,
        body: bytes | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capture = capture
        self.status: int | None = None
        self._send = send
        self._send_chunk = send_chunk
        self._handed_over = handed_over
        self._clock = clock
        self._teed = 0  # bytes handed on; past the decoded-size cap the rest is not
        send(Opened(capture, str(target), method, url, [(str(k), str(v)) for k, v in _items(headers)],
                    body or b"", clock(), utc_now()))

    def sent_upstream(self) -> None:
        self._send(SentUpstream(self.capture, self._clock()))

    def head(self, status: int, headers: HeaderSource, *, streamed: bool | None = None) -> bool:
        pairs = [(str(k), str(v)) for k, v in _items(headers)]
        self.status = int(status)
        teed = is_streamed(pairs, streamed)
        self._send(HeadArrived(self.capture, self.status, pairs, teed))
        return teed

    def tee(self, chunk: bytes) -> bytes:
        """The body's stream callable: hands ``chunk`` over, returns it unchanged."""
        if chunk and self._teed <= DEFAULT_MAX_DECODED_SIZE:
            # The chunk that crosses the cap still goes: the recorder sees
            # the body is too large and says so in the interaction.
            self._teed += len(chunk)
            self._send_chunk(self.capture, self._clock(), chunk)
        return chunk

    def end(self, body: bytes | None = None) -> None:
        self._send(Ended(self.capture, self._clock(), body))

    def fail(self, reason: str) -> None:
        self._send(Failed(self.capture, self._clock(), reason))

    def handed_over(self) -> concurrent.futures.Future[None] | None:
        """None when everything sent so far is in the receiver's hands, else
        a future done when it is."""
        return self._handed_over()

    def websocket_started(self, started: float) -> None:
        self._send(WebSocketStarted(self.capture, started))

    def websocket_message(self, from_client: bool, content: bytes | str, *, is_text: bool, at: float) -> None:
        raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        self._send(WebSocketFrame(self.capture, from_client, is_text, raw, at))

    def websocket_ended(self, ended: WebSocketEnded) -> None:
        ended.capture = self.capture
        self._send(ended)


def _items(headers: HeaderSource) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, dict) else headers  # type: ignore[return-value]


# -- building interactions --------------------------------------------------------------------------


class ArrivalClock:
    """The recorder's clock while a message is replayed into it: the time
    that message was stamped with, so ``t`` is when bytes reached the proxy."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Finished:
    """What became of a capture: its interaction for ``target``, or None and
    ``note`` saying why nothing is recorded."""

    capture: int
    target: Path
    interaction: Interaction | None
    note: str = ""
    method: str = ""
    url: str = ""


@dataclass
class _InFlight:
    target: Path
    recording: Recording
    transcript: WebSocketTranscript | None = None


class CaptureBuilder:
    """Turns the messages of many interleaved captures into interactions."""

    def __init__(self, redactor: Redactor) -> None:
        self.clock = ArrivalClock()
        self.recorder = Recorder(redactor=redactor, clock=self.clock)
        self._open: dict[int, _InFlight] = {}

    def __len__(self) -> int:
        return len(self._open)

    def handle(self, message: Message) -> Finished | None:
        """Take one message; the capture's outcome when it was its last."""
        if isinstance(message, Opened):
            recording = self.recorder.start(
                message.method, message.url, message.headers, message.body, started=message.started
            )
            recording.recorded_at = message.recorded_at
            self._open[message.capture] = _InFlight(Path(message.target), recording)
            return None
        flight = self._open.get(message.capture)
        if flight is None:
            return None  # its Opened never came (a worker restarted mid-exchange)
        try:
            return self._step(flight, message)
        except Exception as exc:  # a recorder bug must cost this capture only
            log.exception("cannot record %s %s", flight.recording.request.method, flight.recording.request.url)
            del self._open[message.capture]
            return self._dropped(message.capture, flight, f"recording failed: {type(exc).__name__}: {exc}")

    def _step(self, flight: _InFlight, message: Message) -> Finished | None:
        recording = flight.recording
        if isinstance(message, BodyChunk):
            self.clock.now = message.at
            recording.feed(message.data)
            return None
        if isinstance(message, HeadArrived):
            recording.response_started(message.status, message.headers, streamed=message.streamed)
            return None
        if isinstance(message, SentUpstream):
            recording.started = message.at
            return None
        if isinstance(message, WebSocketStarted):
            flight.transcript = WebSocketTranscript(started=message.started)
            return None
        if isinstance(message, WebSocketFrame):
            if flight.transcript is not None:
                flight.transcript.add(message.from_client, message.content, is_text=message.is_text, at=message.at)
            return None
        del self._open[message.capture]
        if isinstance(message, Ended):
            self.clock.now = message.at
            return self._finished(message.capture, flight, recording.finish(message.body))
        if isinstance(message, Failed):
            self.clock.now = message.at
            return self._finished(message.capture, flight, recording.fail(message.reason))
        if isinstance(message, WebSocketEnded):
            transcript = flight.transcript or WebSocketTranscript(started=message.at or 0.0)
            session = transcript.finish(
                code=message.code, reason=message.reason, by=message.by, at=message.at,
                subprotocol=message.subprotocol,
            )
            return self._finished(message.capture, flight, recording.finish_websocket(
                session, status=message.status, response_headers=stored_headers(message.response_headers),
            ))
        raise TypeError(f"not a capture message: {type(message).__name__}")

    def close(self, reason: str) -> list[Finished]:
        """The sender is gone (the proxy stopped, or was killed): what is
        kept of the captures still open. A stream whose answer was complete
        (the model's last word passed, as when a client hangs up at
        ``[DONE]``) is recorded; a WebSocket session is recorded as far as it
        went, marked incomplete; anything else is dropped."""
        out = []
        for capture, flight in list(self._open.items()):
            del self._open[capture]
            recording = flight.recording
            try:
                if flight.transcript is not None and flight.transcript.messages:
                    session = flight.transcript.finish(code=None)
                    out.append(self._finished(capture, flight, recording.finish_websocket(
                        session, incomplete=reason)))
                    continue
                if recording.status is not None and flight.transcript is None:
                    interaction = recording.fail(reason)
                    if interaction.incomplete is None:
                        out.append(self._finished(capture, flight, interaction))
                        continue
            except Exception as exc:
                log.exception("cannot record %s %s", recording.request.method, recording.request.url)
                reason = f"recording failed: {type(exc).__name__}: {exc}"
            out.append(self._dropped(capture, flight, reason))
        return out

    @staticmethod
    def _finished(capture: int, flight: _InFlight, interaction: Interaction) -> Finished:
        request = flight.recording.request
        return Finished(capture, flight.target, interaction, method=request.method, url=request.url)

    @staticmethod
    def _dropped(capture: int, flight: _InFlight, note: str) -> Finished:
        request = flight.recording.request
        return Finished(capture, flight.target, None, note, method=request.method, url=request.url)


# -- in the proxy's own process ---------------------------------------------------------------------


class LocalCapture:
    """The same calls as :class:`StreamedCapture`, recorded right here: the
    interaction goes to ``save`` the moment the exchange ends."""

    def __init__(
        self,
        recorder: Recorder,
        save: Callable[[Interaction], None],
        method: str,
        url: str,
        headers: HeaderSource,
        body: bytes | None,
    ) -> None:
        self.recording = recorder.start(method, url, headers, body)
        self._save = save
        self._transcript: WebSocketTranscript | None = None

    @property
    def status(self) -> int | None:
        return self.recording.status

    def sent_upstream(self) -> None:
        self.recording.started = self.recording.clock()

    def head(self, status: int, headers: HeaderSource, *, streamed: bool | None = None) -> bool:
        return self.recording.response_started(status, headers, streamed=streamed)

    def tee(self, chunk: bytes) -> bytes:
        return self.recording.tee(chunk)

    def end(self, body: bytes | None = None) -> None:
        self._save(self.recording.finish(body))

    def handed_over(self) -> concurrent.futures.Future[None] | None:
        return None  # saved the moment it ended

    def fail(self, reason: str) -> None:
        self._save(self.recording.fail(reason))

    def websocket_started(self, started: float) -> None:
        self._transcript = WebSocketTranscript(started=started)

    def websocket_message(self, from_client: bool, content: bytes | str, *, is_text: bool, at: float) -> None:
        if self._transcript is not None:
            self._transcript.add(from_client, content, is_text=is_text, at=at)

    def websocket_ended(self, ended: WebSocketEnded) -> None:
        transcript = self._transcript or WebSocketTranscript(started=ended.at or 0.0)
        session = transcript.finish(
            code=ended.code, reason=ended.reason, by=ended.by, at=ended.at, subprotocol=ended.subprotocol
        )
        self._save(self.recording.finish_websocket(
            session, status=ended.status, response_headers=stored_headers(ended.response_headers)
        ))


Capture = StreamedCapture | LocalCapture
