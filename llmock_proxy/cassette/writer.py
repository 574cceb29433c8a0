"""Appending recorded interactions to cassette files, safely and in time
proportional to what is added.

Several flows of one proxy, and several proxies (processes) sharing a file,
may append at once. The rules:

* The file on disk is always a whole, valid cassette: every write makes a
  temp file in the same directory, fsyncs it, renames it over the cassette
  and fsyncs the directory, so a ``kill -9`` (or a power cut) at any moment
  leaves the previous or the next version, never a torn one.
* Writers take an exclusive ``flock`` on a sidecar lock file
  (``.<name>.lock`` next to the cassette) and start from the file as it is
  under that lock, so no process overwrites another's interactions.
* An append never parses the existing file. The new interactions' YAML is
  dumped and scanned on its own; the existing bytes are copied as they are
  (``copy_file_range``: in the kernel, no Python string of the file) and the
  new list items follow them. What the writer must know is that the file
  ends with the block list of ``interactions:``:

  - the lock file remembers the identity (inode, size, mtime) of the
    versions the cooperating writers produced. The identity of a new
    version is known before its rename (a rename keeps inode, size and
    mtime) and is written first, so no crash can leave a stale record;
  - a file with another identity (a person edited it, a tool rewrote it, a
    checkout replaced it) is read as bytes and its *layout* checked: the
    column-0 lines must be ``version: N``, top-level keys, and the list
    items of ``interactions:`` last, and its last interaction must load
    (that item alone is parsed, so a file cut short or mangled at its end
    is refused instead of appended to). ``interactions: []`` becomes the
    block list.
  - only a file laid out otherwise (a flow-style or indented list, keys
    after the list, several documents) is parsed, validated and dumped
    whole, and the log says so (:attr:`WriteStats.rewritten` counts it).
* New text goes through the redaction scan (:meth:`Redactor.checked_dump`)
  before it is written: a key-shaped value refuses the write.

:class:`BackgroundWriter` runs the appends on one worker thread, batching
whatever queued up meanwhile, so a caller never waits for a disk.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llmock_proxy.cassette import model as cassette_model
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Cassette, Interaction
from llmock_proxy.cassette.redact import Redactor, SecretFound
from llmock_proxy.errors import CassetteError

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
# A new cassette's mode (mkstemp makes files the owner alone may read; a
# cassette is meant to be shared); a rewritten one keeps the mode it had.
NEW_FILE_MODE = 0o644
# How many identities the lock file keeps: the current version, and the one
# before it while a rename is under way.
_KEPT_IDENTITIES = 2


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

    @classmethod
    def of_fd(cls, fd: int) -> _Identity:
        st = os.fstat(fd)
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)

    def as_list(self) -> list[int]:
        return [self.inode, self.size, self.mtime_ns]


@dataclass
class WriteStats:
    """How the appends of one :class:`CassetteWriter` went; what tells an
    append that copied bytes from one that had to read the file."""

    # Files created with their first interactions.
    created: int = 0
    # Appends to a file whose identity was one a cooperating writer produced.
    appended: int = 0
    # Appends to a file someone else wrote last: its layout was read (as
    # bytes, and its last interaction parsed), not the whole file.
    scanned: int = 0
    # Files parsed, validated and dumped whole (not laid out for appending).
    rewritten: int = 0


# -- the layout of an existing file -------------------------------------------------------------

# A line starting in column 0 that is not blank and not a comment.
_TOP_LINE = re.compile(rb"^[^ \t\r\n#].*", re.MULTILINE)
_ITEM = re.compile(rb"-(?:[ \t].*)?\r?")
_KEY = re.compile(rb"[A-Za-z_][A-Za-z0-9_-]*:(?:[ \t].*)?\r?")
_VERSION = re.compile(rb"version:[ \t]*(\d+)[ \t]*(?:#.*)?\r?")
_INTERACTIONS = re.compile(rb"interactions:[ \t]*(?:#.*)?\r?")
_EMPTY_LIST = re.compile(rb"interactions:[ \t]*\[[ \t]*\][ \t]*(?:#.*)?\r?")
# The first line after ``interactions:`` that is neither blank nor a comment.
_NEXT_CONTENT = re.compile(rb"^[ \t]*[^ \t\r\n#]", re.MULTILINE)


@dataclass(frozen=True)
class Layout:
    """Whether new list items can follow a file's bytes: ``append`` (they
    can), ``empty`` (``interactions: []`` at ``offset`` must become a block
    list) or ``other`` (``why`` not: the file is read whole)."""

    kind: Literal["append", "empty", "other"]
    offset: int = 0
    why: str = ""
    # Where the last list item starts (``append`` with items only).
    last_item: int | None = None


def layout_of(raw: bytes) -> Layout:
    """The layout of cassette bytes, from their column-0 lines alone (an
    interaction contributes one such line, its ``- request:``)."""
    if raw and not raw.endswith(b"\n"):
        return Layout("other", why="it does not end with a line break")
    first = True
    interactions: re.Match[bytes] | None = None
    last_item: int | None = None
    for line in _TOP_LINE.finditer(raw):
        text = line.group()
        if first:
            first = False
            version = _VERSION.fullmatch(text)
            if version is None:
                return Layout("other", why="its first line is not 'version: N'")
            if int(version.group(1)) != cassette_model.FORMAT_VERSION:
                return Layout("other", why=f"it is format version {int(version.group(1))}")
            continue
        if _ITEM.fullmatch(text):
            if interactions is None:
                return Layout("other", why="a list item outside 'interactions'")
            last_item = line.start()
            continue
        if interactions is not None:
            return Layout("other", why="something follows the interactions list")
        if _INTERACTIONS.fullmatch(text) or _EMPTY_LIST.fullmatch(text):
            interactions = line
        elif not _KEY.fullmatch(text):
            number = raw.count(b"\n", 0, line.start()) + 1
            return Layout("other", why=f"line {number} is not a top-level key")
    if interactions is None:
        return Layout("other", why="it has no 'interactions' list" if not first else "it is empty")
    if _EMPTY_LIST.fullmatch(interactions.group()):
        return Layout("empty", offset=interactions.start())
    after = _NEXT_CONTENT.search(raw, interactions.end() + 1)
    if after is not None and not raw.startswith(b"- ", after.start()) and raw[after.start():after.end()] != b"-":
        return Layout("other", why="its interactions are not a list in column 0")
    return Layout("append", offset=len(raw), last_item=last_item)


def _check_last_item(raw: bytes, layout: Layout, target: Path) -> None:
    """Parse and validate the file's last interaction on its own: a file cut
    short or mangled at its end is refused, not appended to."""
    if layout.last_item is None:
        return
    tail = _LIST_HEAD.encode() + raw[layout.last_item :]
    try:
        cassette_store.parse(tail, target, cache=None)
    except CassetteError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise CassetteError(
            f"{target}: not appended to: its last interaction does not load: {detail}", path=str(target)
        ) from None


# -- the writer -----------------------------------------------------------------------------------


@dataclass
class CassetteWriter:
    """Appends interactions to cassette files; thread- and process-safe."""

    redactor: Redactor = field(default_factory=Redactor.default)
    stats: WriteStats = field(default_factory=WriteStats)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _path_locks: dict[Path, threading.Lock] = field(default_factory=dict, repr=False)

    def append(self, path: str | os.PathLike[str], interactions: Sequence[Interaction]) -> Path:
        """Add ``interactions`` at the end of the cassette at ``path`` (created
        when missing). Raises :class:`~llmock_proxy.errors.CassetteError`
        when the existing file is not a cassette that can be added to (it is
        left alone) and :class:`~llmock_proxy.cassette.redact.SecretFound`
        when the new text holds a secret (nothing is written)."""
        target = Path(path).absolute()
        if not interactions:
            return target
        # Dumped and scanned before the lock: the lock only covers file work.
        addition = self._list_text(interactions, target)
        with self._thread_lock(target), _file_lock(lock_path_for(target)) as lock_file:
            known = _read_identities(lock_file)
            try:
                current = os.open(target, os.O_RDONLY)
            except FileNotFoundError:
                current = None
            try:
                self._write(target, current, known, addition, interactions, lock_file)
            finally:
                if current is not None:
                    os.close(current)
        return target

    def _write(
        self,
        target: Path,
        current: int | None,
        known: list[_Identity],
        addition: str | None,
        interactions: Sequence[Interaction],
        lock_file: int,
    ) -> None:
        if current is None:
            self.stats.created += 1
            text = _LIST_HEAD + addition if addition is not None else self._full_text(target, None, interactions)
            _replace(target, lock_file, [], None, 0, text.encode("utf-8"))
            return
        identity = _Identity.of_fd(current)
        if addition is not None and identity in known:
            self.stats.appended += 1
            _replace(target, lock_file, [identity], current, identity.size, addition.encode("utf-8"))
            return
        raw = _read_all(current)
        layout = layout_of(raw)
        if addition is not None and layout.kind != "other":
            _check_last_item(raw, layout, target)
            self.stats.scanned += 1
            if layout.kind == "append":
                _replace(target, lock_file, [identity], current, len(raw), addition.encode("utf-8"))
            else:
                head = raw[: layout.offset] + b"interactions:\n"
                _replace(target, lock_file, [identity], None, 0, head + addition.encode("utf-8"))
            return
        why = layout.why if layout.kind == "other" else "the new interactions hold YAML anchors"
        log.info("%s is rewritten whole (parsed, validated, dumped): %s", target, why)
        self.stats.rewritten += 1
        text = self._full_text(target, raw, interactions)
        _replace(target, lock_file, [], None, 0, text.encode("utf-8"))

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

    def _full_text(self, target: Path, raw: bytes | None, interactions: Sequence[Interaction]) -> str:
        if raw is not None:
            existing = cassette_store.parse(raw, target)  # validates; names file and field
        else:
            existing = Cassette(path=target)
        existing.interactions.extend(interactions)
        return self.redactor.checked_dump(existing, where=str(target))


# -- files ----------------------------------------------------------------------------------------


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    parts: list[bytes] = []
    offset = 0
    while True:
        data = os.pread(fd, max(size - offset, 1 << 16), offset)
        if not data:
            return b"".join(parts)
        parts.append(data)
        offset += len(data)


def _copy(source: int, dest: int, length: int) -> None:
    """The first ``length`` bytes of ``source`` to ``dest``: in the kernel
    where it can (a reflink on filesystems that share extents)."""
    offset = 0
    if hasattr(os, "copy_file_range"):
        try:
            while offset < length:
                copied = os.copy_file_range(source, dest, length - offset, offset)
                if copied == 0:
                    break
                offset += copied
        except OSError:
            pass  # not on this filesystem: plain reads and writes below
    while offset < length:
        data = os.pread(source, min(length - offset, 1 << 20), offset)
        if not data:
            raise OSError(f"the cassette shrank while it was copied ({offset} of {length} bytes)")
        os.lseek(dest, offset, os.SEEK_SET)
        _write_all(dest, data)
        offset += len(data)
    os.lseek(dest, offset, os.SEEK_SET)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace(
    target: Path, lock_file: int, still_ours: list[_Identity], source: int | None, keep: int, addition: bytes
) -> None:
    """Make ``target`` the first ``keep`` bytes of ``source`` followed by
    ``addition``, atomically: temp file, fsync, the new identity recorded in
    the lock file, rename, directory fsync."""
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = os.fstat(source).st_mode & 0o7777 if source is not None else _mode_of(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            os.fchmod(fd, mode)
            if source is not None and keep:
                _copy(source, fd, keep)
            _write_all(fd, addition)
            os.fsync(fd)
            new = _Identity.of_fd(fd)
        finally:
            os.close(fd)
        # A rename keeps inode, size and mtime: the new version is known now.
        # Recorded before the rename, so a crash between the two cannot leave
        # the lock file naming an older version than the cassette's.
        _write_identities(lock_file, [*still_ours, new])
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(target.parent)
    _write_identities(lock_file, [new])


def _mode_of(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return NEW_FILE_MODE


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (the new name in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse to fsync a directory; the rename stands
    finally:
        os.close(fd)


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


def _read_identities(fd: int) -> list[_Identity]:
    raw = os.pread(fd, 4096, 0)
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and "identities" in data:
            return [_Identity(int(i), int(s), int(m)) for i, s, m in data["identities"]]
        if isinstance(data, dict):  # the record of an earlier version: one identity
            return [_Identity(int(data["inode"]), int(data["size"]), int(data["mtime_ns"]))]
    except (ValueError, KeyError, TypeError):
        pass
    return []


def _write_identities(fd: int, identities: list[_Identity]) -> None:
    # Not fsynced: after a power cut a stale record only makes the next
    # writer read the file's layout (bytes, no parse).
    kept = identities[-_KEPT_IDENTITIES:]
    raw = json.dumps({"identities": [i.as_list() for i in kept]}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, raw, 0)


# -- off the caller's thread ------------------------------------------------------

WrittenCallback = Callable[[Path, list[Interaction]], None]
FailedCallback = Callable[[Path, list[Interaction], Exception], None]


@dataclass
class _Queued:
    interaction: Interaction
    done: concurrent.futures.Future[Path]


class BackgroundWriter:
    """Queues appends for one worker thread; the caller never waits for disk.

    Interactions queued for the same file while a write is under way go out
    together in the next write. :meth:`submit` returns a future that is done
    when the interaction is on disk (or failed); :meth:`flush` waits until
    everything queued so far is; :meth:`close` flushes and stops the thread.
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
        self._pending: dict[Path, list[_Queued]] = {}
        self._busy = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, path: str | os.PathLike[str], interaction: Interaction) -> concurrent.futures.Future[Path]:
        done: concurrent.futures.Future[Path] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the cassette writer is closed")
            self._pending.setdefault(Path(path), []).append(_Queued(interaction, done))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="llmock-cassette-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return done

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
                for path, queued in batch.items():
                    self._write(path, queued)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, path: Path, queued: list[_Queued]) -> None:
        interactions = [q.interaction for q in queued]
        try:
            written = self.writer.append(path, interactions)
        except SecretFound as exc:
            if len(queued) > 1:
                # One leaking interaction must not cost the others that
                # happened to queue up with it: write them one by one.
                for one in queued:
                    self._write(path, [one])
                return
            self._failed(path, queued, exc)
            return
        except Exception as exc:
            self._failed(path, queued, exc)
            return
        if self._on_written is not None:
            try:
                self._on_written(written, interactions)
            except Exception:
                log.exception("reporting what was written to %s failed", written)
        for q in queued:
            q.done.set_result(written)

    def _failed(self, path: Path, queued: list[_Queued], exc: Exception) -> None:
        interactions = [q.interaction for q in queued]
        if self._on_failed is not None:
            try:
                self._on_failed(path, interactions, exc)
            except Exception:
                log.exception("reporting what could not be written to %s failed", path)
        else:
            log.error("cannot write %d interaction(s) to %s: %s", len(interactions), path, exc)
        for q in queued:
            q.done.set_exception(exc)
