"""Where a test's cassette lives, and the session id its traffic is tagged with.

The convention is pytest-recording's: ``<cassette dir>/<test module path
without .py>/<test name>.yaml``, the module path taken relative to the rootdir
(``tests/api/test_chat.py::TestX::test_y[gpt-4o]`` ->
``cassettes/tests/api/test_chat/TestX.test_y[gpt-4o].yaml``), so a cassette
is found by reading the test id, and two modules with the same name in
different packages never share one.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

CASSETTE_SUFFIX = ".yaml"

# A file name keeps letters, digits and . _ - = + [ ]; anything else (a slash
# or a space in a parametrize id, a colon, quotes) becomes "-".
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+\[\]-]+")
# Names longer than this are cut and given a digest of the whole, so they stay
# unique and fit every file system's 255-byte limit with room for the suffix.
_MAX_NAME = 150

# Session ids: 1-128 of [A-Za-z0-9._:@=+-] (the engine's rule).
_SESSION_UNSAFE = re.compile(r"[^A-Za-z0-9._:@=+-]+")
_SESSION_SLUG = 80


def sanitize(name: str) -> str:
    """``name`` as a safe, readable file name (parametrize ids included)."""
    safe = _UNSAFE.sub("-", name).strip("-.") or "test"
    if len(safe) <= _MAX_NAME:
        return safe
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"{safe[: _MAX_NAME - 13]}-{digest}"


def name_of_test(item: pytest.Item) -> str:
    """The test's name as its cassette is named: ``Class.test[id]`` inside a class."""
    parent = getattr(item, "parent", None)
    if isinstance(parent, pytest.Class):
        return f"{parent.name}.{item.name}"
    return item.name


def module_part(item: pytest.Item, rootdir: Path) -> Path:
    """The test module's path relative to the rootdir, without its suffix."""
    path = Path(item.path)
    try:
        relative = path.resolve().relative_to(rootdir.resolve())
    except ValueError:  # a test file outside the rootdir: its own name only
        relative = Path(path.name)
    return relative.with_suffix("")


def default_cassette(item: pytest.Item, rootdir: Path, cassette_dir: Path) -> Path:
    return cassette_dir / module_part(item, rootdir) / (sanitize(name_of_test(item)) + CASSETTE_SUFFIX)


def session_id(nodeid: str, attempt: int = 0) -> str:
    """A session id for a test: readable start (the test's name), unique end
    (a digest of the whole node id). ``attempt`` > 0 for a test run again in
    the same process (reruns), whose previous session may still be closing."""
    tail = nodeid.rsplit("::", 1)[-1]
    slug = _SESSION_UNSAFE.sub("-", tail).strip("-")[:_SESSION_SLUG] or "test"
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:16]
    suffix = f"-{attempt}" if attempt else ""
    return f"{slug}-{digest}{suffix}"


def shown(path: Path, rootdir: Path) -> str:
    """``path`` as messages show it: relative to the rootdir when under it."""
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)
