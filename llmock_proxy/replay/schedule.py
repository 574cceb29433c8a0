"""When each part of a :class:`~llmock_proxy.replay.plan.Plan` goes on the wire.

The engine has two writers, its own HTTP/1.1 server
(:mod:`llmock_proxy.replay.http_server`) and aiohttp (for a request handed
to it); both walk the same :func:`steps`, so a fixture's latency, a
stream's chunk offsets, ``truncateAfterChunks`` and ``disconnectAfterMs``
mean the same whichever wrote the answer. Nothing here does I/O or
sleeps: a step says what is due at which loop time, the writer waits for
it and writes.

Deadlines count from the request's arrival (``plan.arrival``, loop
seconds), never from the previous write, so lateness never accumulates.
A stream's head goes out at once (the writer sends it before the first
step); a body answer's head goes with its body.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from llmock_proxy.replay.plan import Plan

# What a step ends with.
MORE = 0  # more steps follow
END = 1  # the body ends with this step's data
DROP = 2  # the connection is cut after this step's data (the body never ends)


@dataclass(slots=True)  # not frozen: made for every answer, and a frozen one costs 4x to make
class Step:
    """``data`` is due at loop time ``at``; then ``end`` (MORE, END, DROP).
    ``sent``: how many of the plan's chunks are out after this step."""

    at: float
    data: bytes
    end: int
    sent: int = 0


def steps(plan: Plan) -> Iterator[Step]:
    """The writes that put ``plan``'s body on the wire, in order.

    A body answer is one step (its body at ``delay_ms``), or a DROP with no
    data when ``disconnect_after_ms`` comes first. A stream is a step per
    group of chunks due at the same offset (all of them, timed instant),
    the last one with the end of the body; ``truncate_after_chunks`` cuts
    the connection after that many chunks, ``disconnect_after_ms`` at that
    moment, whichever comes first."""
    arrival = plan.arrival
    disconnect_at = arrival + plan.disconnect_after_ms / 1000.0 if plan.disconnect_after_ms is not None else None
    chunks = plan.chunks
    if chunks is None:
        ready_at = arrival + plan.delay_ms / 1000.0
        if disconnect_at is not None and disconnect_at <= ready_at:
            yield Step(disconnect_at, b"", DROP)
        else:
            yield Step(ready_at, plan.body or b"", END)
        return
    truncate = plan.truncate_after_chunks
    last = len(chunks) if truncate is None else min(len(chunks), truncate)
    complete = truncate is None or truncate > len(chunks)  # the body ends, it is not cut
    sent = 0
    at = arrival
    while sent < last:
        at_ms = chunks[sent].at_ms
        at = arrival + at_ms / 1000.0
        if disconnect_at is not None and disconnect_at <= at:
            yield Step(disconnect_at, b"", DROP, sent)
            return
        end = sent + 1
        while end < last and chunks[end].at_ms == at_ms:
            end += 1
        data = chunks[sent].data if end == sent + 1 else b"".join(c.data for c in chunks[sent:end])
        sent = end
        if sent == len(chunks) and complete:
            yield Step(at, data, END, sent)
            return
        yield Step(at, data, MORE, sent)
    yield Step(at, b"", DROP if truncate is not None and sent >= truncate else END, sent)
