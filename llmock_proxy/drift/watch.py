"""Passive drift checks: grade live exchanges as they pass through a proxy.

The watching addon (:mod:`llmock_proxy.mitm.drift`) builds each exchange's
interaction with the recorder's tee and hands it here. Nothing here knows
mitmproxy: a WebSocket session arrives as plain message tuples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..cassette import Interaction, Payload, WebSocketSession, WSClose, WSMessage
from .contracts import Contracts, expected_form
from .findings import Finding
from .report import CheckResult, DriftReport, finding_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeenMessage:
    """One WebSocket message as a proxy saw it."""

    from_client: bool
    is_text: bool
    content: bytes
    timestamp: float  # seconds, same clock as ``started``


def websocket_transcript(
    messages: Iterable[SeenMessage],
    *,
    started: float,
    subprotocol: str | None = None,
    close_code: int | None = None,
    closed_by_client: bool | None = None,
) -> WebSocketSession:
    """The cassette transcript of a WebSocket session seen by a proxy."""
    out = []
    for message in messages:
        payload = Payload.from_bytes(message.content, None, exact=not message.is_text)
        out.append(
            WSMessage(
                from_client=message.from_client,
                payload=payload,
                binary=not message.is_text,
                t=round((message.timestamp - started) * 1000.0, 1),
            )
        )
    close = None
    if close_code is not None or closed_by_client is not None:
        by = None if closed_by_client is None else ("client" if closed_by_client else "server")
        close = WSClose(code=None if close_code is None else int(close_code), by=by)
    return WebSocketSession(messages=out, subprotocol=subprotocol, close=close)


@dataclass
class Watcher:
    """Grades every complete live exchange against the recorded shape of its family."""

    contracts: Contracts
    report: DriftReport = field(default_factory=DriftReport)
    # family.form keys seen live without a recorded shape (told once each).
    unwatched: set[str] = field(default_factory=set)

    def observe(self, interaction: Interaction) -> CheckResult | None:
        """Compare one live exchange; None when there is nothing to compare
        (a failed or cut-off exchange, or a family nobody recorded)."""
        response = interaction.response
        if response is None or interaction.error or interaction.incomplete:
            return None
        family = str(interaction.match.get("family") or "generic")
        form = expected_form(interaction)
        where = f"{interaction.request.method} {interaction.request.url}"
        findings = self.contracts.check(family, form, response, source=where)
        if findings is None:
            key = f"{family}.{form}"
            if key not in self.unwatched:
                self.unwatched.add(key)
                log.info("llmock drift: no recorded shape for %s (%s); not compared", key, where)
            return None
        result = CheckResult(
            family=family,
            form=form,
            source=where,
            outcome="checked",
            findings=findings,
            url=interaction.request.url,
            live_status=response.status,
            compared_with=self.contracts.recorded_sources(family, form),
        )
        self.report.add(result)
        for finding in findings:
            self._log(finding)
        return result

    @staticmethod
    def _log(finding: Finding) -> None:
        level = logging.INFO if finding.severity == "info" else logging.WARNING
        log.log(level, "llmock drift: %s", finding_line(finding))
