"""The open-file limit, raised at start to what the system lets this process have.

Every client connection holds a file descriptor (two through a proxy: the
client's and the upstream's). Many systems start a process with a soft limit
of 1,024, far below the hard limit an unprivileged process may raise it to:
a thousand slow clients holding connections would leave the next client
(and the cassette writer) with "Too many open files". ``serve`` and the
addons raise the soft limit to the hard one when they start.
"""

from __future__ import annotations

import logging

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no rlimits
    resource = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# Where the hard limit is "unlimited" (macOS), the kernel still refuses a
# soft limit above its own per-process cap: these are tried in turn.
_UNLIMITED_TRIES = (1 << 20, 65536, 10240)


def raise_open_file_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit it
    ends at, or None where there is no such limit."""
    if resource is None:  # pragma: no cover
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = (hard,) if hard != resource.RLIM_INFINITY else _UNLIMITED_TRIES
    for limit in wanted:
        if soft != resource.RLIM_INFINITY and limit <= soft:
            return soft
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        except (ValueError, OSError):
            continue
        log.debug("llmock: open-file limit raised from %d to %d", soft, limit)
        return limit
    return soft
