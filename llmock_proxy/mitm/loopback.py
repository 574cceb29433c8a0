"""The park-and-retarget protocol between the replay addon and the replay server.

An addon-made response is sent in one piece, so a stream cannot be answered
from a hook with its timing. Instead the addon parks the answer's
:class:`~llmock_proxy.replay.plan.Plan` in the replay server under a token,
points the flow at the server on 127.0.0.1 with the token in
:data:`~llmock_proxy.replay.server.PLAN_HEADER`, and mitmproxy streams the
server's answer to the client. Once the response (or an error) is in, the
flow gets its original URL back, so logs and saved flows show what the
client asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import http

from llmock_proxy.replay.plan import Plan
from llmock_proxy.replay.server import PLAN_HEADER, ReplayEngine


@dataclass(frozen=True)
class Retarget:
    """Where a flow was going before it was sent to the replay server."""

    scheme: str
    host: str
    port: int
    host_header: str | None
    token: str


class Loopback:
    """The flows currently re-targeted to one replay server, by flow id."""

    def __init__(self, engine: ReplayEngine) -> None:
        self._engine = engine
        self._retargeted: dict[str, Retarget] = {}

    def __contains__(self, flow: http.HTTPFlow) -> bool:
        return flow.id in self._retargeted

    def retarget(self, flow: http.HTTPFlow, plan: Plan) -> None:
        """Park ``plan`` and send ``flow`` to the replay server to be answered with it."""
        if self._engine.port is None:
            raise RuntimeError("the replay server is not listening")
        req = flow.request
        token = self._engine.park(plan)
        self._retargeted[flow.id] = Retarget(req.scheme, req.host, req.port, req.headers.get("host"), token)
        req.headers[PLAN_HEADER] = token
        req.scheme = "http"
        req.host = "127.0.0.1"
        req.port = self._engine.port

    def restore(self, flow: http.HTTPFlow) -> None:
        """Put the original URL back (and drop the plan if it was never served)."""
        target = self._retargeted.pop(flow.id, None)
        if target is None:
            return
        self._engine.unpark(target.token)  # still parked when the flow failed early
        req = flow.request
        req.scheme = target.scheme
        req.host = target.host
        req.port = target.port
        if target.host_header is not None:
            req.headers["host"] = target.host_header
        req.headers.pop(PLAN_HEADER, None)
