"""Python 3.11 reports every client connection still open when mitmproxy stops as an error.

At shutdown the event loop cancels mitmproxy's connection handlers; on
Python 3.11 the callback asyncio's ``StreamReaderProtocol`` attaches to each
asks the cancelled task for its exception, which raises ``CancelledError``
inside the callback, and the loop's default handler logs "Exception in
callback StreamReaderProtocol.connection_made.<locals>.callback" with a
traceback (Python 3.12 checks for cancellation first). A user stopping
mitmdump while an SDK client holds a keep-alive connection sees that
traceback after a clean run.

mitmproxy's own loop exception handler is gone by then (it puts back the
one it found when it stops), so the report is dropped where it is written:
a filter on the ``asyncio`` logger that drops exactly that record, on
Python 3.11 only, and lets every other one through.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

# How the loop's report starts: the callback StreamReaderProtocol.connection_made makes.
_REPORT = "Exception in callback StreamReaderProtocol.connection_made.<locals>.callback"


class _CancelledConnectionReports(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, asyncio.CancelledError) and record.getMessage().startswith(_REPORT))


def drop_cancelled_connection_reports() -> None:
    """Add the filter to the ``asyncio`` logger (once)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _CancelledConnectionReports) for f in logger.filters):
        logger.addFilter(_CancelledConnectionReports())


class CancelledConnectionsAtExit:
    """Sub-addon of each llmock addon: on Python 3.11, no traceback per open client connection at shutdown."""

    def __init__(self) -> None:
        # mitmproxy refuses two addons of one name: each addon carries one.
        self.name = f"llmock_cancelled_at_exit_{id(self):x}"

    def load(self, loader: Any) -> None:
        if sys.version_info < (3, 12):
            drop_cancelled_connection_reports()
