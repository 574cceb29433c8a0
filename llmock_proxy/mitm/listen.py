"""Where the addons listen: loopback unless the user says otherwise.

mitmproxy listens on every interface by default (``listen_host`` empty). A
record or replay proxy holds credentials in flight and answers from
recordings: another machine on the network has no business reaching it.
So the addons set ``listen_host`` to 127.0.0.1 when it is left empty; a user
who wants all interfaces says ``--listen-host 0.0.0.0`` (or ``::``).

The option is set in ``configure``; but mitmproxy brings its servers up
before it loads ``-s`` scripts, so servers already listening on every
interface are brought up again on loopback (same port) in ``running``.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx

LOOPBACK = "127.0.0.1"
_WILDCARDS = ("", "0.0.0.0", "::")

log = logging.getLogger(__name__)


def bind_loopback_by_default(updated: set[str]) -> None:
    """From an addon's ``configure``: listen on loopback when no host was given."""
    if "listen_host" in updated and not ctx.options.listen_host:
        ctx.options.update(listen_host=LOOPBACK)


async def rebind_to_loopback() -> None:
    """From an addon's ``running``: servers still on every interface although
    ``listen_host`` says loopback are started again there."""
    if ctx.options.listen_host != LOOPBACK:
        return
    proxyserver: Any = ctx.master.addons.get("proxyserver")
    if proxyserver is None:
        return
    addresses = proxyserver.listen_addrs()
    if not any(str(address[0]) in _WILDCARDS for address in addresses):
        return
    ports = {int(address[1]) for address in addresses}
    if len(ports) == 1 and not ctx.options.listen_port:
        ctx.options.update(listen_port=ports.pop())  # a port 0 asked for stays the one it got
    await proxyserver.servers.update([])
    await proxyserver.setup_servers()
    log.info("llmock: listening on %s only (--listen-host 0.0.0.0 listens on every interface)", LOOPBACK)
