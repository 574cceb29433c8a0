"""A content-addressed cache of parsed cassette YAML, kept as JSON.

Parsing YAML is what loading a large cassette set costs: libyaml through
PyYAML reads about 10 MB/s here, while ``json.loads`` reads the same data
more than ten times faster. So once a file has been parsed, its data is kept
as JSON under a key derived from the file's *bytes* (sha256, plus the cache
format and the PyYAML version); the next load of identical bytes, from any
path, reads the JSON instead. A changed byte is a different key.

Only the YAML step is skipped: :func:`llmock_proxy.cassette.store.parse` validates
and builds the model from cached data exactly as from freshly parsed data.

An entry is the parsed data written out as JSON, so aliases come out
expanded: it is only ever made from data :func:`llmock_proxy.cassette.yamlio.loads`
accepted, which bounds alias expansion (``ALIAS_RATIO``) and nesting while it
reads. An entry is therefore at most about ten times the YAML it stands for,
and a 1 KB alias bomb never gets this far.

The cache never decides whether a load succeeds:

* an entry that cannot be read, is truncated, or fails its checksum is a
  miss (and the fresh parse replaces it);
* a directory that cannot be created or written just means no entry;
* data that JSON cannot carry exactly (a mapping key that is not text,
  ``.inf``/``.nan``) is not cached at all.

Where: ``$LLMOCK_PROXY_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/llmock-proxy``, else ``~/.cache/llmock-proxy``.
``LLMOCK_PROXY_CACHE=0`` turns it off. The directory is kept near
``LLMOCK_PROXY_CACHE_MAX_MB`` megabytes (default 1000): when entries are
written, at most once a minute, the least recently used ones beyond that go.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CACHE_DIR_ENV = "LLMOCK_PROXY_CACHE_DIR"
CACHE_SWITCH_ENV = "LLMOCK_PROXY_CACHE"
CACHE_MAX_MB_ENV = "LLMOCK_PROXY_CACHE_MAX_MB"
DEFAULT_MAX_BYTES = 1000 * 1000 * 1000
# Below this a YAML parse takes about 0.1 ms: not worth a file of its own.
# (A one-interaction file of ~5 KB already loads 4x faster from its entry.)
DEFAULT_MIN_BYTES = 2 * 1024

# Bump when the YAML reader may turn the same bytes into different data: old
# entries then stop matching (and age out under the size limit).
# 2: nesting past 256 levels and alias bombs are refused (an entry made by an
# older reader could hold what this one refuses).
CACHE_FORMAT = 2
_MAGIC = b"llmock-proxy-parse-cache"
_SUFFIX = ".json"
_TEMP_PREFIX = ".tmp-"
# A temp file this old belongs to a writer that died; pruning removes it.
_STALE_TEMP_SECONDS = 3600.0
# Pruning lists the whole directory (about 5 µs per entry): writers do it at
# most this often, remembered by the modification time of a marker file.
PRUNE_INTERVAL_SECONDS = 60.0
_PRUNE_MARKER = ".last-prune"
_OFF_VALUES = frozenset({"0", "false", "no", "off"})
# Exactly the classes json.loads gives back; anything else would come back changed.
_JSON_LEAVES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class ParseCache:
    """Parsed-data entries in ``directory``, one file per distinct input."""

    directory: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    min_bytes: int = DEFAULT_MIN_BYTES

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ParseCache | None:
        """The cache the environment asks for, or None when it is turned off
        (or no home directory can be found to hold it)."""
        env = os.environ if environ is None else environ
        if env.get(CACHE_SWITCH_ENV, "").strip().lower() in _OFF_VALUES:
            return None
        max_bytes = DEFAULT_MAX_BYTES
        try:
            max_bytes = int(float(env[CACHE_MAX_MB_ENV]) * 1000 * 1000)
        except (KeyError, ValueError):
            pass
        explicit = env.get(CACHE_DIR_ENV)
        if explicit:
            return cls(Path(explicit), max_bytes=max_bytes)
        xdg = env.get("XDG_CACHE_HOME")
        if xdg and os.path.isabs(xdg):  # the XDG spec says: ignore relative paths
            base = Path(xdg)
        else:
            try:
                base = Path.home() / ".cache"
            except (RuntimeError, KeyError):  # no HOME and no passwd entry
                return None
        return cls(base / "llmock-proxy", max_bytes=max_bytes)

    # -- keys ----------------------------------------------------------------------

    @staticmethod
    def key(raw: bytes) -> str:
        digest = hashlib.sha256(b"%s %d %s\n" % (_MAGIC, CACHE_FORMAT, yaml.__version__.encode()))
        digest.update(raw)
        return digest.hexdigest()

    def entry_path(self, raw: bytes) -> Path:
        return self.directory / f"{self.key(raw)}{_SUFFIX}"

    def wants(self, raw: bytes) -> bool:
        return len(raw) >= self.min_bytes

    # -- reading -------------------------------------------------------------------

    def get(self, raw: bytes) -> Any | None:
        """The data cached for exactly these bytes, or None on any miss."""
        if not self.wants(raw):
            return None
        path = self.entry_path(raw)
        try:
            with open(path, "rb") as fh:
                stored = fh.read()
        except OSError:
            return None
        data = _decode_entry(stored)
        if data is None:
            return None
        try:
            os.utime(path)  # recently used: the last to be pruned
        except OSError:
            pass
        return data[0]

    # -- writing -------------------------------------------------------------------

    def put(self, raw: bytes, data: Any) -> bool:
        """Remember ``data`` as what ``raw`` parses to. False (and nothing
        written) when the data is not exactly JSON or the write fails."""
        if not self.wants(raw):
            return False
        body = json_exact(data)
        if body is None:
            return False
        entry = b"%s %d %s\n%s" % (_MAGIC, CACHE_FORMAT, hashlib.sha256(body).hexdigest().encode(), body)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_atomically(self.entry_path(raw), entry)
        except OSError:
            return False
        if self._prune_due():
            self.prune()
        return True

    def _prune_due(self) -> bool:
        marker = self.directory / _PRUNE_MARKER
        try:
            if time.time() - marker.stat().st_mtime < PRUNE_INTERVAL_SECONDS:
                return False
        except OSError:
            pass  # never pruned here yet
        try:
            marker.touch()
        except OSError:
            pass
        return True

    def prune(self) -> None:
        """Remove least recently used entries (and temp files left by dead
        writers) until the directory holds at most ``max_bytes``."""
        entries: list[tuple[float, int, str]] = []
        now = time.time()
        try:
            with os.scandir(self.directory) as listing:
                for item in listing:
                    try:
                        st = item.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if item.name.startswith(_TEMP_PREFIX):
                        if now - st.st_mtime > _STALE_TEMP_SECONDS:
                            _remove(item.path)
                    elif item.name.endswith(_SUFFIX) and item.is_file(follow_symlinks=False):
                        entries.append((st.st_mtime, st.st_size, item.path))
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            _remove(path)
            total -= size


def json_exact(data: Any) -> bytes | None:
    """``data`` as JSON bytes, or None when ``json.loads`` would not give back
    an equal value of the same types: non-text mapping keys (JSON would turn
    ``1``/``true``/``null`` keys into text), non-finite floats, other types."""
    try:
        # ASCII escapes keep lone surrogates (legal in a Python str) lossless.
        text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):  # other types, inf/nan, cycles
        return None
    # json.dumps succeeded, so there is no cycle to walk into.
    stack = [data]
    while stack:
        value = stack.pop()
        kind = value.__class__
        if kind is dict:
            for key, item in value.items():
                if key.__class__ is not str:
                    return None
                stack.append(item)
        elif kind is list:
            stack.extend(value)
        elif kind not in _JSON_LEAVES:  # subclasses (IntEnum, ...) come back as the base
            return None
    return text.encode("ascii")


def _decode_entry(stored: bytes) -> tuple[Any] | None:
    header, newline, body = stored.partition(b"\n")
    parts = header.split(b" ")
    if (
        not newline
        or len(parts) != 3
        or parts[0] != _MAGIC
        or parts[1] != b"%d" % CACHE_FORMAT
        or parts[2] != hashlib.sha256(body).hexdigest().encode()
    ):
        return None
    try:
        return (json.loads(body),)
    except (ValueError, RecursionError):
        return None


def _write_atomically(target: Path, content: bytes) -> None:
    # Temp file + rename: a reader sees the whole entry or none. No fsync: a
    # torn entry after a crash fails its checksum and is simply a miss.
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
