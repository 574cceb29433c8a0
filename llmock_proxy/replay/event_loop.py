"""Which event loop ``serve`` runs on.

uvloop (libuv, in C) is the default where it is installed (Linux and macOS,
where the package depends on it): it halves what the socket layer costs
per request, which is most of a replay's cost once the answer is known.
asyncio's own loop is the fallback, and the choice for debugging
(``--event-loop asyncio``). The mitmproxy addons run on mitmproxy's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EVENT_LOOPS = ("auto", "uvloop", "asyncio")


class EventLoopUnavailable(RuntimeError):
    """``--event-loop uvloop`` where uvloop cannot be imported."""


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (None: asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise EventLoopUnavailable("uvloop is not installed (it has no Windows build)") from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run(main: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop] | None) -> T:
    """``asyncio.run(main)`` on a loop from ``factory`` (see :func:`loop_factory`)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
