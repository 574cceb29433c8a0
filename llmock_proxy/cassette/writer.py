"""Appending recorded interactions to cassette files, safely.

Several flows of one proxy, and several proxies (processes) sharing a file,
may append at once. The rules:

* The file on disk is always a whole, valid cassette: every write is a
  temp file + fsync + rename (:func:`yamlio.atomic_write_text`), so a
  ``kill -9`` at any moment leaves the previous or the next version.
* Writers take an exclusive ``flock`` on a sidecar lock file
  (``.<name>.lock`` next to the cassette) and re-read the cassette under it,
  so no process overwrites another's interactions.
* Nothing already written is serialized again in the common case. The lock
  file remembers the identity (inode, size, mtime) of the version the last
  cooperating writer produced; while the cassette still has that identity it
  ends with our own ``interactions:`` list, and the new interactions' YAML is
  appended to its text. Only a file changed by someone else (a person editing
  it, a tool) is parsed, validated and dumped again.
* New text goes through the redaction scan (:meth:`Redactor.checked_dump`)
  before it is written: a key-shaped value refuses the write.

:class:`BackgroundWriter` runs the appends on one worker thread, batching
whatever queued up meanwhile, so a proxy's event loop never waits for a disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llmock_proxy.cassette import model as cassette_model
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import Cassette, Interaction
from llmock_proxy.cassette.redact import Redactor, SecretFound

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process per cassette then
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# What a dump of Cassette(interactions=[...]) starts with; the rest is the list.
_LIST_HEAD = f"version: {cassette_model.FORMAT_VERSION}\ninteractions:\n"
# A YAML anchor the dumper emits for an object met twice. Anchor names restart
# in every dump, so appended texts holding anchors could collide: such a batch
# takes the full-rewrite path instead. (A false positive only costs time.)
_ANCHOR = re.compile(r"(?:^|\s)&id\d+(?:\s|$)", re.MULTILINE)


def lock_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@dataclass(frozen=True)
class _Identity:
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _Identity | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class CassetteWriter:
    """Appends interactions to cassette files; thread- and process-safe."""

    redactor: Redactor = field(default_factory=Redactor.default)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _path_locks: dict[Path, threading.Lock] = field(default_factory=dict, repr=False)

    def append(self, path: str | os.PathLike[str], interactions: Sequence[Interaction]) -> Path:
        """Add ``interactions`` at the end of the cassette at ``path`` (created
        when missing). Raises :class:`~llmock_proxy.cassette.CassetteError`
        when the existing file is not a valid cassette (it is left alone) and
        :class:`~llmock_proxy.cassette.redact.SecretFound` when the new text holds a
        secret (nothing is written)."""
        target = Path(path).absolute()
        if not interactions:
            return target
        with self._thread_lock(target), _file_lock(lock_path_for(target)) as lock_file:
            known = _read_identity(lock_file)
            current = _Identity.of(target)
            addition = self._list_text(interactions, target)
            if current is not None and current == known and addition is not None:
                text = target.read_text(encoding="utf-8") + addition
            else:
                text = self._full_text(target, current is not None, interactions)
            yamlio.atomic_write_text(target, text)
            _write_identity(lock_file, _Identity.of(target))
        return target

    def _thread_lock(self, target: Path) -> threading.Lock:
        with self._guard:
            return self._path_locks.setdefault(target, threading.Lock())

    def _list_text(self, interactions: Sequence[Interaction], target: Path) -> str | None:
        """The YAML list items for ``interactions``, scanned; None when they
        cannot simply be appended."""
        text = self.redactor.checked_dump(Cassette(list(interactions)), where=str(target))
        if not text.startswith(_LIST_HEAD) or _ANCHOR.search(text):
            return None
        return text[len(_LIST_HEAD) :]

    def _full_text(self, target: Path, exists: bool, interactions: Sequence[Interaction]) -> str:
        if exists:
            existing = cassette_store.load(target)  # validates; names file and field
            if existing.interactions or existing.meta:
                log.debug("%s changed outside the recorder; rewriting it whole", target)
        else:
            existing = Cassette(path=target)
        existing.interactions.extend(interactions)
        return self.redactor.checked_dump(existing, where=str(target))


# -- the cross-process lock --------------------------------------------------


@contextmanager
def _file_lock(path: Path) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        # Closing the descriptor releases the flock, also when the process dies.
        os.close(fd)


def _read_identity(fd: int) -> _Identity | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        data = json.loads(raw)
        return _Identity(int(data["inode"]), int(data["size"]), int(data["mtime_ns"]))
    except (ValueError, KeyError, TypeError):
        return None


def _write_identity(fd: int, identity: _Identity | None) -> None:
    # Not fsynced: a stale or torn record only sends the next writer down the
    # (correct, slower) full-rewrite path.
    raw = b"" if identity is None else json.dumps(identity.__dict__).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, raw, 0)


# -- off the event loop -------------------------------------------------------

WrittenCallback = Callable[[Path, list[Interaction]], None]
FailedCallback = Callable[[Path, list[Interaction], Exception], None]


class BackgroundWriter:
    """Queues appends for one worker thread; the caller never waits for disk.

    Interactions queued for the same file while a write is under way go out
    together in the next write. :meth:`flush` waits until everything queued
    so far is on disk; :meth:`close` flushes and stops the thread.
    """

    def __init__(
        self,
        writer: CassetteWriter,
        *,
        on_written: WrittenCallback | None = None,
        on_failed: FailedCallback | None = None,
    ) -> None:
        self.writer = writer
        self._on_written = on_written
        self._on_failed = on_failed
        self._pending: dict[Path, list[Interaction]] = {}
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, path: str | os.PathLike[str], interaction: Interaction) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the cassette writer is closed")
            self._pending.setdefault(Path(path), []).append(interaction)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="llmock-cassette-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted interaction is written (or failed).
        Returns False when ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float | None = None) -> bool:
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return done

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return  # closed and drained
                batch, self._pending = self._pending, {}
                self._busy = True
            try:
                for path, interactions in batch.items():
                    self._write(path, interactions)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, path: Path, interactions: list[Interaction]) -> None:
        try:
            written = self.writer.append(path, interactions)
        except SecretFound as exc:
            if len(interactions) > 1:
                # One leaking interaction must not cost the others that
                # happened to queue up with it: write them one by one.
                for interaction in interactions:
                    self._write(path, [interaction])
                return
            self._failed(path, interactions, exc)
            return
        except Exception as exc:
            self._failed(path, interactions, exc)
            return
        if self._on_written is not None:
            self._on_written(written, interactions)

    def _failed(self, path: Path, interactions: list[Interaction], exc: Exception) -> None:
        if self._on_failed is not None:
            self._on_failed(path, interactions, exc)
        else:
            log.error("cannot write %d interaction(s) to %s: %s", len(interactions), path, exc)
