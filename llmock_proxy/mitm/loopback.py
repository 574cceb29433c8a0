"""The park-and-retarget protocol between the replay addon and the replay
server: the addon parks a plan under a token and points the flow at the server on
127.0.0.1, which serves the plan with real timing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Retarget:
    """Where a flow was going before it was sent to the engine."""

    scheme: str
    host: str
    port: int
    host_header: str | None
    token: str
