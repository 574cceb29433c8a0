"""The recording worker: a process of its own that turns captures into
cassette writes, so recording costs the proxy almost nothing and survives it.

The proxy (:class:`RecordingWorker`, in the record addon) writes each
message of a capture (:mod:`llmock_proxy.record.capture`) into the worker's
stdin as it happens: the request when it leaves, every teed chunk before it
goes on to the client, the end. Decoding, the match key, the summary,
redaction, the YAML dump, the scan and the fsync all happen in the worker
(``python -m llmock_proxy.record.worker``), on another core and under
another GIL, and never delay the proxy's event loop. The worker answers on
its stdout with an acknowledgement per capture (the "recorded" or "NOT
recorded" line the proxy logs) and with its own log records.

What a crash can cost:

* The pipe belongs to the kernel. A message written into it is the
  worker's to read even when the proxy dies the next instant (``kill -9``,
  a crash, the OOM killer): at the end of its input the worker finishes what
  it holds, writes it and exits. A stream whose answer was complete (its
  last event passed, even if the body's end did not) is recorded; one cut
  off mid-answer, and a request without an answer yet, are not.
* The worker runs in a session of its own and ignores SIGINT, SIGTERM and
  SIGHUP: Ctrl-C and a closing terminal stop the proxy, which closes the
  pipe; the worker finishes and exits after it. It runs at a lower priority
  (nice +10): on a busy machine the proxy's clients come first, the pipe
  holds the worker's share meanwhile.
* Only when the worker dies too (a power cut, ``kill -9`` of both) are the
  interactions it had not yet written lost: its lag behind the proxy, which
  ``benchmarks/soak.py`` measures.

Writes to the pipe never block the proxy: the write end is non-blocking and
what does not fit waits in a backlog a sender thread drains;
:meth:`RecordingWorker.handed_over` tells when everything sent so far is in
the kernel's hands (the record addon makes an answer wait for that, which
is immediate unless the worker has fallen a pipe-full behind).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import llmock_proxy
from llmock_proxy.cassette.model import Interaction
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.writer import BackgroundWriter, CassetteWriter
from llmock_proxy.record.capture import MESSAGE_TYPES, BodyChunk, CaptureBuilder, Finished, Message, Opened
from llmock_proxy.record.recorder import describe

log = logging.getLogger(__name__)

# A frame: kind, capture id, payload length, then the payload.
_HEADER = struct.Struct("!BIQ")
# A chunk's payload starts with its arrival time.
_AT = struct.Struct("!d")
# A chunk frame's header and arrival time, packed at once.
_CHUNK_HEAD = struct.Struct("!BIQd")
_CHUNK, _MESSAGE, _ACK, _LOG = 1, 2, 3, 4
# The pipe the worker reads: a megabyte absorbs a burst of finished streams.
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
# At most this many pieces per writev (IOV_MAX is 1024 on Linux).
_MAX_PIECES = 512


@dataclass(frozen=True)
class Ack:
    """What became of a capture: ``line`` is the log line ("llmock:
    recorded ..." when ``ok``, "llmock: NOT recorded ..." otherwise)."""

    capture: int
    ok: bool
    line: str


def _read_frame(stream: IO[bytes]) -> tuple[int, int, bytes] | None:
    """The next frame, or None at the end (a frame cut short by a dying
    writer is dropped: it was never whole in the pipe)."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    kind, capture, length = _HEADER.unpack(head)
    payload = stream.read(length) if length else b""
    if len(payload) < length:
        return None
    return kind, capture, payload


def _frame(kind: int, capture: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, capture, len(payload)) + payload


# -- the proxy's end --------------------------------------------------------------------------------


class RecordingWorker:
    """Starts the worker process and talks to it. Thread-safe; :meth:`send`
    and :meth:`send_chunk` never block and never raise."""

    def __init__(self, *, redact_file: str | None = None) -> None:
        self.redact_file = redact_file or None
        self._process: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._cond = threading.Condition()
        self._backlog: deque[bytes | memoryview] = deque()
        self._queued = 0  # bytes sent so far
        self._written = 0  # of which in the pipe
        self._waiters: list[tuple[int, concurrent.futures.Future[None]]] = []
        self._unacked: dict[int, str] = {}  # capture -> "METHOD url" for a last word
        self._next = 0
        self._broken = False  # the pipe refused a write: the worker is gone
        self._dead = False  # the worker exited
        self._closing = False
        self._reader: threading.Thread | None = None
        self._sender: threading.Thread | None = None

    @staticmethod
    def supported() -> bool:
        """Whether a worker process can run here (a frozen mitmdump cannot
        start a Python with our package)."""
        return os.name == "posix" and bool(sys.executable) and not getattr(sys, "frozen", False)

    def start(self) -> RecordingWorker:
        """Start the process; raises OSError when it cannot be."""
        root = str(Path(llmock_proxy.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", "llmock_proxy.record.worker"]
        if self.redact_file:
            command += ["--redact", self.redact_file]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0,
            start_new_session=True,  # the terminal's signals are the proxy's to handle
        )
        assert self._process.stdin is not None
        self._fd = self._process.stdin.fileno()
        os.set_blocking(self._fd, False)
        try:
            import fcntl

            fcntl.fcntl(self._fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        except (ImportError, OSError):
            pass  # the default 64 KiB: more backlog, same guarantees
        self._reader = threading.Thread(target=self._read_acks, name="llmock-worker-acks", daemon=True)
        self._sender = threading.Thread(target=self._drain, name="llmock-worker-pipe", daemon=True)
        self._reader.start()
        self._sender.start()
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        """Started and still reading: a pipe whose reader is gone reports an
        error at once, before the reader thread has seen the worker exit."""
        with self._cond:
            if self._process is None or self._fd is None or self._dead or self._broken:
                return False
            poller = select.poll()
            poller.register(self._fd, select.POLLOUT)
            if any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, events in poller.poll(0)):
                self._pipe_broke()
                return False
            return True

    def next_capture(self) -> int:
        with self._cond:
            self._next = (self._next + 1) & 0xFFFFFFFF
            return self._next

    # -- sending ---------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if isinstance(message, Opened):
            with self._cond:
                self._unacked[message.capture] = f"{message.method} {safe_url(message.url)}"
        self._send([_frame(_MESSAGE, message.capture, pickle.dumps(message, pickle.HIGHEST_PROTOCOL))])

    def send_chunk(self, capture: int, at: float, data: bytes) -> None:
        """A teed chunk: no pickling, one ``writev`` of header and bytes."""
        self._send([_CHUNK_HEAD.pack(_CHUNK, capture, _AT.size + len(data), at), data])

    def _send(self, parts: list[bytes]) -> None:
        with self._cond:
            if self._fd is None or self._broken or self._dead:
                return
            total = sum(len(p) for p in parts)
            self._queued += total
            if self._backlog:
                self._backlog.extend(parts)
                return
            try:
                done = os.writev(self._fd, parts)
            except BlockingIOError:
                done = 0
            except OSError:
                self._pipe_broke()
                return
            self._written += done
            if done == total:
                return
            for part in parts:
                if done >= len(part):
                    done -= len(part)
                    continue
                self._backlog.append(memoryview(part)[done:] if done else part)
                done = 0
            self._cond.notify_all()

    def handed_over(self) -> concurrent.futures.Future[None] | None:
        """None when everything sent so far is in the pipe (the usual case);
        else a future done when it is (or the worker is gone)."""
        with self._cond:
            if self._written >= self._queued or self._broken or self._dead:
                return None
            waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._waiters.append((self._queued, waiter))
            return waiter

    def _drain(self) -> None:
        """The sender thread: writes the backlog as the pipe has room."""
        assert self._fd is not None
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._backlog or self._broken or self._dead or self._closing)
                if self._broken or self._dead or not self._backlog:
                    return  # gone, or closing with nothing left to write
            poller.poll(100)
            with self._cond:
                if not self._backlog or self._broken or self._dead:
                    continue
                pieces = [self._backlog[i] for i in range(min(len(self._backlog), _MAX_PIECES))]
                try:
                    done = os.writev(self._fd, pieces)
                except BlockingIOError:
                    continue
                except OSError:
                    self._pipe_broke()
                    return
                self._written += done
                while done:
                    first = self._backlog[0]
                    if done >= len(first):
                        self._backlog.popleft()
                        done -= len(first)
                    else:
                        self._backlog[0] = memoryview(first)[done:]
                        done = 0
                self._release_waiters()
                self._cond.notify_all()

    def _release_waiters(self) -> None:
        everything = self._broken or self._dead
        kept = []
        for position, waiter in self._waiters:
            if everything or position <= self._written:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                kept.append((position, waiter))
        self._waiters = kept

    def _pipe_broke(self) -> None:
        # Under the lock. The reader thread sees the worker's end and says why.
        self._broken = True
        self._backlog.clear()
        self._release_waiters()
        self._cond.notify_all()

    # -- acknowledgements ------------------------------------------------------------------------

    def _read_acks(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        while (frame := _read_frame(stream)) is not None:
            kind, _, payload = frame
            try:
                item = pickle.loads(payload)
                if kind == _LOG:
                    level, name, text = item
                    logging.getLogger(name).log(level, "%s", text)
                elif kind == _ACK:
                    self._acked(Ack(*item))
            except Exception:
                # Reading on matters more: a worker whose replies are not
                # read stops when the pipe fills.
                log.exception("llmock: unreadable message from the recording worker")
        code = self._process.wait()
        with self._cond:
            self._dead = True
            lost = list(self._unacked.values())
            self._unacked.clear()
            self._backlog.clear()
            self._release_waiters()
            self._cond.notify_all()
            closing = self._closing
        if not closing or lost:
            log.error("llmock: the recording worker (pid %d) exited with %s", self._process.pid, code)
        for what in lost:
            log.error("llmock: NOT recorded %s: the recording worker exited", what)

    def _acked(self, ack: Ack) -> None:
        try:
            if ack.line:
                (log.info if ack.ok else log.error)("%s", ack.line)
        finally:
            with self._cond:
                self._unacked.pop(ack.capture, None)
                self._cond.notify_all()

    # -- waiting ---------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every capture sent so far has been acknowledged. False
        when ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._unacked or self._dead, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """End the worker's input and wait for it to write what it holds and
        exit. False when ``timeout`` ran out first (it finishes on its own)."""
        if self._process is None:
            return True
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._backlog or self._broken or self._dead, timeout)
        if self._sender is not None:
            self._sender.join(timeout)
        with self._cond:
            self._fd = None
        assert self._process.stdin is not None
        try:
            self._process.stdin.close()
        except OSError:
            pass
        if self._reader is not None:
            self._reader.join(timeout)
            return not self._reader.is_alive()
        return True


def safe_url(url: str) -> str:
    """A URL for a log line: without userinfo and query (either may hold a key)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# -- the worker's end -------------------------------------------------------------------------------


class _Replies:
    """Frames back to the proxy, from any thread. When the proxy is gone
    the lines go to stderr instead, so they are not lost."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._gone = False

    def ack(self, ack: Ack) -> None:
        # Plain data: this module runs as __main__ here, its classes would
        # not unpickle as the same classes in the proxy.
        self._reply(_ACK, ack.capture, (ack.capture, ack.ok, ack.line), ack.line)

    def log(self, level: int, name: str, text: str) -> None:
        self._reply(_LOG, 0, (level, name, text), text if level >= logging.WARNING else "")

    def _reply(self, kind: int, capture: int, item: Any, fallback: str) -> None:
        data = _frame(kind, capture, pickle.dumps(item, pickle.HIGHEST_PROTOCOL))
        with self._lock:
            if not self._gone:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(self._fd, view) :]
                    return
                except OSError:
                    self._gone = True
            if fallback:
                print(fallback, file=sys.stderr, flush=True)


class _ForwardLogs(logging.Handler):
    def __init__(self, replies: _Replies) -> None:
        super().__init__(logging.INFO)
        self._replies = replies

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self._replies.log(record.levelno, record.name, text)
        except Exception:
            self.handleError(record)


def _dispatch(done: Finished, writer: BackgroundWriter, replies: _Replies) -> None:
    interaction = done.interaction
    if interaction is None:
        line = f"llmock: NOT recorded {done.method} {safe_url(done.url)}: {done.note}"
        replies.ack(Ack(done.capture, False, line))
        return
    try:
        future = writer.submit(done.target, interaction)
    except RuntimeError as exc:
        replies.ack(Ack(done.capture, False, _not_written(interaction, done.target, exc)))
        return

    def written(future: concurrent.futures.Future[Path]) -> None:
        error = future.exception()
        if error is None:
            replies.ack(Ack(done.capture, True, f"llmock: recorded {describe(interaction)} -> {future.result()}"))
        else:
            replies.ack(Ack(done.capture, False, _not_written(interaction, done.target, error)))

    future.add_done_callback(written)


def _not_written(interaction: Interaction, target: Path, error: BaseException) -> str:
    request = interaction.request
    return f"llmock: NOT recorded {request.method} {request.url}: cannot write {target}: {error}"


def _message(kind: int, capture: int, payload: bytes) -> Message:
    if kind == _CHUNK:
        (at,) = _AT.unpack_from(payload)
        return BodyChunk(capture, at, payload[_AT.size :])
    message = pickle.loads(payload)
    if not isinstance(message, MESSAGE_TYPES):
        raise TypeError(f"not a capture message: {type(message).__name__}")
    return message


# After a read that emptied the pipe the worker waits this long before the
# next one, so it takes what arrived meanwhile in one read instead of being
# woken for every chunk (each wake-up costs the proxy's write a little).
# Nothing waits on it: what is in the pipe is already safe from the proxy.
COALESCE_SECONDS = 0.005
_READ_SIZE = 1 << 20


def frames(fd: int, coalesce: float = COALESCE_SECONDS) -> Iterator[tuple[int, int, bytes]]:
    """The frames read from ``fd`` until its end (a frame cut short there is
    dropped: its writer died before it was whole)."""
    buffer = bytearray()
    while data := os.read(fd, _READ_SIZE):
        buffer += data
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            kind, capture, length = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + length
            if end > len(buffer):
                break
            yield kind, capture, bytes(buffer[offset + _HEADER.size : end])
            offset = end
        del buffer[:offset]
        if len(data) < _READ_SIZE and coalesce:
            time.sleep(coalesce)


def serve(fd: int, replies: _Replies, redactor: Redactor) -> int:
    """Read capture messages until the end of ``fd``; write the
    interactions; at the end keep what can be kept of the open captures."""
    builder = CaptureBuilder(redactor)
    writer = BackgroundWriter(CassetteWriter(redactor=redactor))
    for frame in frames(fd):
        try:
            message = _message(*frame)
            done = builder.handle(message)
        except Exception:
            log.exception("llmock: the recording worker could not handle a message")
            continue
        if done is not None:
            _dispatch(done, writer, replies)
    for done in builder.close("the proxy stopped before the exchange ended"):
        _dispatch(done, writer, replies)
    writer.close(None)
    return 0


# The worker yields the CPU to the proxy: what it does can wait a little
# (the pipe holds it meanwhile); the proxy's clients cannot.
_NICENESS = 10


def main(argv: list[str] | None = None) -> int:
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        os.nice(_NICENESS)
    except OSError:
        pass
    parser = argparse.ArgumentParser(prog="python -m llmock_proxy.record.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redact", default=None, help="extra redaction rules file")
    args = parser.parse_args(argv)
    # Replies get a descriptor of their own; anything printed by accident goes to stderr.
    replies = _Replies(os.dup(1))
    os.dup2(2, 1)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(replies)]
    root.setLevel(logging.INFO)
    try:
        redactor = Redactor.from_file(args.redact) if args.redact else Redactor.default()
    except Exception as exc:
        log.error("llmock: the recording worker cannot read %s: %s", args.redact, exc)
        return 2
    return serve(sys.stdin.fileno(), replies, redactor)


if __name__ == "__main__":
    from llmock_proxy.record.worker import main as worker_main  # this module under its own name

    sys.exit(worker_main())
