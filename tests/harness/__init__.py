"""Test harness: an in-process mitmproxy, a mitmdump subprocess runner, a router
that sends real provider hostnames to the local fakes, and real SDK clients.
See docs/testing.md.
"""

from tests.harness.inprocess import InProcessProxy, ProxyStartError
from tests.harness.mitmdump import MitmdumpProcess
from tests.harness.router import ConnectAttempt, Route, UpstreamRouter, is_loopback, routes_for

__all__ = [
    "ConnectAttempt",
    "InProcessProxy",
    "MitmdumpProcess",
    "ProxyStartError",
    "Route",
    "UpstreamRouter",
    "is_loopback",
    "routes_for",
]
