"""Passive drift checks: grade live exchanges as they pass through a proxy.

The watching addon (:mod:`llmock_proxy.mitm.drift`) builds each exchange's
interaction the way the record addon does (the recorder's tee, the
WebSocket transcript) and hands it here. Nothing here knows mitmproxy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from llmock_proxy.cassette.model import Interaction
from llmock_proxy.drift.contracts import Contracts, error_message, expected_form
from llmock_proxy.drift.findings import Finding
from llmock_proxy.drift.report import CheckResult, DriftReport, finding_line
from llmock_proxy.drift.shape import is_error_status

log = logging.getLogger(__name__)


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
        if is_error_status(response.status):
            # Live traffic has rate limits and bad requests of its own: an
            # error envelope says nothing about the success shape recorded.
            if self.contracts.document(family, form) is None:
                return None
            result = CheckResult(
                family=family,
                form=form,
                source=where,
                outcome="skipped",
                reason="an error answer, not compared with the recorded answers",
                url=interaction.request.url,
                live_status=response.status,
                live_error=error_message(family, interaction.request, response),
                compared_with=self.contracts.recorded_sources(family, form),
            )
            self.report.add(result)
            log.info("llmock drift: %s %s: %s (not compared)", family, where, result.live_error)
            return result
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
