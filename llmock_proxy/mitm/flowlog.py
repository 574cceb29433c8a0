"""One log line per exchange: the addons' own, instead of mitmdump's flow dump.

mitmdump prints every flow (its ``dumper`` addon): the request line, then
``<< 200 OK 605b``, or ``<< 200 OK (content missing)`` for a streamed
response, whose body mitmproxy never holds. Next to the addons' own line
for the same exchange ("llmock: recorded openai.chat gpt-4o-mini 200
8 events -> cassettes/rec-....yaml", "llmock: replayed ..."), that is noise,
and "(content missing)" reads like an error.

So the record and replay addons mark every flow they give a line of their
own (:func:`mark_logged`), and leave those out of mitmdump's dump with a
``dumper_filter`` (:data:`QUIET_FILTER`): set only when the user gave no
filter and kept the default ``flow_detail`` (1). Flows the addons do not
log (another host than ``llmock_hosts``, a control endpoint) are dumped as
mitmproxy does. Asking for more (``-v``, ``--set flow_detail=2``) or for a
filter of one's own (``mitmdump ... '~d openai.com'``) gets mitmproxy's
dump of every flow again, ours included.
"""

from __future__ import annotations

from mitmproxy import ctx, http

# The flow.metadata key of a flow an addon logs a line of its own for.
LOGGED = "llmock_logged"

QUIET_FILTER = f"!~meta {LOGGED}"

_DEFAULT_FLOW_DETAIL = 1


def mark_logged(flow: http.HTTPFlow) -> None:
    """``flow`` gets a line of its own from an addon: mitmdump's dump leaves it out."""
    flow.metadata[LOGGED] = True


def quiet_dumper_by_default(updated: set[str]) -> None:
    """From an addon's ``configure``: leave marked flows out of mitmdump's
    dump, unless the user asked for a filter or another level of detail."""
    opts = ctx.options
    if "dumper_filter" not in opts or "flow_detail" not in opts:
        return  # no dump (mitmweb, an embedding without the dumper addon)
    if not {"dumper_filter", "flow_detail"} & updated:
        return
    if opts.dumper_filter is None and opts.flow_detail == _DEFAULT_FLOW_DETAIL:
        opts.update(dumper_filter=QUIET_FILTER)
    elif opts.dumper_filter == QUIET_FILTER and opts.flow_detail != _DEFAULT_FLOW_DETAIL:
        opts.update(dumper_filter=None)  # more detail asked for later: every flow again
