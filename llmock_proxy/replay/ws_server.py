"""WebSocket replay on the wire: aiohttp around :mod:`llmock_proxy.replay.ws_session`.

:func:`serve_websocket` accepts an upgrade (behind the replay addon, which
re-targets it here, or directly under ``llmock-proxy serve``), lets the
:class:`~llmock_proxy.replay.ws_session.WSReplay` decide every server action and
carries the actions out in order: one sender task sleeps until each action's
deadline on the loop clock (deadlines count from the client message that
caused them, so lateness never accumulates) while the connection keeps
reading. aiohttp answers pings, negotiates the subprotocol and
permessage-deflate; binary frames go out as the recorded bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from llmock_proxy.cassette.model import Payload, Request, WSClose, WSMessage
from llmock_proxy.providers._ws_common import CLOSE_INTERNAL_ERROR, close_reason
from llmock_proxy.providers.base import split_url
from llmock_proxy.replay.session import Miss, ReplaySession
from llmock_proxy.replay.ws_session import Outgoing, Reply, WSReplay, open_replay

log = logging.getLogger("llmock_proxy.replay")

# How long a close handshake waits for the client's close frame.
_CLOSE_TIMEOUT = 5.0
_MAX_MESSAGE = 64 * 1024 * 1024


class _Sender:
    """Carries out actions in order, each at its deadline (loop seconds).

    Actions that belong to a fixture answer (``Outgoing.answer``) can be
    interrupted: :meth:`interrupt` drops those still unsent, waking the
    sender if it is waiting for one of them."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.loop = asyncio.get_running_loop()
        # One entry per reply: (its number, the moment its client message arrived, its actions).
        self.queue: asyncio.Queue[tuple[int, float, list[Outgoing]]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())
        self.closed = False
        self._pushed = 0
        self._unsent_answer = 0  # answer actions pushed and neither sent nor dropped
        self._dropped_before = 0  # answer actions of replies numbered below this are dropped
        self._woken = asyncio.Event()

    def push(self, trigger: float, actions: list[Outgoing]) -> None:
        if actions:
            self._unsent_answer += sum(1 for a in actions if a.answer)
            self.queue.put_nowait((self._pushed, trigger, actions))
            self._pushed += 1

    def interrupt(self) -> bool:
        """Drop what the answers pushed so far have still to send; whether
        anything was left (an answer was still going out)."""
        if self._unsent_answer <= 0:
            return False
        self._dropped_before = self._pushed
        self._woken.set()
        return True

    async def _wait(self, delay: float, interruptible: bool) -> None:
        if not interruptible:
            await asyncio.sleep(delay)
            return
        self._woken.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._woken.wait(), delay)

    async def _run(self) -> None:
        ws = self.ws
        loop = self.loop
        while True:
            number, trigger, actions = await self.queue.get()
            for action in actions:
                if action.answer:
                    if number >= self._dropped_before:
                        delay = trigger + action.at_ms / 1000.0 - loop.time()
                        if delay > 0:
                            await self._wait(delay, interruptible=True)
                    self._unsent_answer -= 1
                    if number < self._dropped_before:
                        continue
                else:
                    delay = trigger + action.at_ms / 1000.0 - loop.time()
                    if delay > 0:
                        await self._wait(delay, interruptible=False)
                if ws.closed:
                    return
                if action.message is not None:
                    frame = action.frame
                    try:
                        if isinstance(frame, bytes):
                            await ws.send_bytes(frame)
                        else:
                            await ws.send_str(frame)
                    except ConnectionError:
                        return
                    continue
                await self._close(action)
                return

    async def _close(self, action: Outgoing) -> None:
        close = action.close
        assert close is not None
        self.closed = True
        if close.code is None:
            transport = self.request.transport
            if transport is not None:
                transport.abort()
        else:
            await self.ws.close(code=close.code, message=close.reason.encode("utf-8"))

    async def stop(self) -> None:
        """Cancel what is still waiting, but let a close handshake in
        progress finish (the handler must not return before it)."""
        if self.closed and not self.task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self.task), _CLOSE_TIMEOUT + 1.0)
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def _client_message(message: object) -> WSMessage | None:
    msg_type = getattr(message, "type", None)
    data = getattr(message, "data", None)
    if msg_type == WSMsgType.TEXT:
        return WSMessage(True, Payload.from_bytes(str(data).encode("utf-8")), binary=False)
    if msg_type == WSMsgType.BINARY and isinstance(data, (bytes, bytearray)):
        return WSMessage(True, Payload.from_bytes(bytes(data), exact=True), binary=True)
    return None


def miss_response(miss: Miss) -> web.Response:
    response = miss.response()
    return web.Response(
        status=response.status,
        headers={k: v for k, v in response.headers.items() if k not in ("content-length", "content-encoding")},
        body=response.body.to_bytes() if response.body is not None else b"",
    )


async def serve_websocket(
    request: web.Request, upgrade: Request, session: ReplaySession, factor: float = 1.0
) -> web.StreamResponse:
    """Replay the WebSocket session ``upgrade`` asks for (``factor`` scales
    recorded offsets: 1 recorded, 0 instant)."""
    replay = open_replay(session, upgrade, factor)
    if isinstance(replay, Miss):
        log.warning("replay miss (not forwarded): %s", replay.message)
        return miss_response(replay)
    return await run_session(request, replay)


async def run_session(request: web.Request, replay: WSReplay) -> web.WebSocketResponse:
    loop = asyncio.get_running_loop()
    ws = web.WebSocketResponse(
        protocols=(replay.subprotocol,) if replay.subprotocol else (),
        autoping=True,
        timeout=_CLOSE_TIMEOUT,
        max_msg_size=_MAX_MESSAGE,
    )
    for name, value in replay.headers:  # the recorded 101's own headers (request ids...)
        ws.headers[name] = value
    await ws.prepare(request)
    where = f"{upgrade_path(replay.request)} ({replay.provider.family})"
    sender = _Sender(ws, request)
    failed = False
    try:
        opening = replay.opening()
    except Exception as exc:
        opening = _internal_error(where, exc)
        failed = True
    _log_problem(where, opening.problem)
    sender.push(loop.time(), opening.actions)
    try:
        async for message in ws:
            client = _client_message(message)
            if client is None or failed:
                continue  # after an internal error, only the close handshake is left
            arrival = loop.time()
            try:
                reply = replay.receive(client)
            except Exception as exc:
                reply = _internal_error(where, exc)
                failed = True
            if reply.interrupt is not None and sender.interrupt():
                sender.push(arrival, reply.interrupt)
                continue
            _log_problem(where, reply.problem)
            sender.push(arrival, reply.actions)
    finally:
        await sender.stop()
    return ws


def _internal_error(where: str, exc: Exception) -> Reply:
    """A bug in replay ends this session alone, with 1011 and a reason the
    client can read (the log has the traceback), instead of a dropped socket."""
    log.error("websocket replay %s: internal error", where, exc_info=exc)
    reason = close_reason(f"llmock-proxy internal error: {type(exc).__name__}: {exc}")
    return Reply([Outgoing(0.0, close=WSClose(CLOSE_INTERNAL_ERROR, reason, "server"))])


def upgrade_path(request: Request) -> str:
    return split_url(request.url)[1]


def _log_problem(where: str, problem: str | None) -> None:
    if problem:
        log.warning("websocket replay %s: %s", where, problem)


__all__ = ["miss_response", "run_session", "serve_websocket"]
