"""Drift findings, their severities, and the policy file that mutes or re-grades them."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llmock_proxy.cassette import yamlio
from llmock_proxy.errors import CassetteError

SEVERITIES = ("info", "warning", "critical")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Finding:
    """One difference between the recorded shape and a live answer."""

    severity: str  # info | warning | critical
    family: str
    form: str
    kind: str  # field-removed, field-added, type-changed, enum-added, event-removed, ...
    path: str  # where: "choices[].delta.content", "events.message_start.message.id", "status"
    message: str
    recorded: Any = None
    live: Any = None
    source: str = ""  # "cassette.yaml#3": the recording the live answer was compared with

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Policy:
    """Per-family overrides: paths to ignore and paths to re-grade.

    File format (YAML or JSON)::

        openai.chat:              # an API family, or "*" for every family
          ignore: [system_fingerprint, "choices[].logprobs*"]
          severity:
            "usage.*": info       # glob on the finding's path -> new severity
    """

    rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        try:
            data = yamlio.load_file(path)
        except OSError as exc:
            raise CassetteError(f"{path}: cannot read drift policy: {exc.strerror}") from None
        except Exception as exc:  # YAML errors
            raise CassetteError(f"{path}: not valid YAML/JSON: {exc}") from None
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise CassetteError(f"{path}: a drift policy is a mapping of API family -> rules")
        for family, rules in data.items():
            if not isinstance(rules, dict):
                raise CassetteError(f"{path}: {family}: rules must be a mapping")
            unknown = set(rules) - {"ignore", "severity"}
            if unknown:
                raise CassetteError(f"{path}: {family}: unknown keys {sorted(unknown)} (use ignore, severity)")
            for level in (rules.get("severity") or {}).values():
                if level not in SEVERITIES:
                    raise CassetteError(
                        f"{path}: {family}.severity: {level!r} is not one of {', '.join(SEVERITIES)}"
                    )
        return cls(rules=data)

    def _rules_for(self, family: str) -> list[dict[str, Any]]:
        return [r for key, r in self.rules.items() if key == "*" or fnmatch.fnmatchcase(family, key)]

    def apply(self, finding: Finding) -> Finding | None:
        """The finding as the team wants it: None when muted, re-graded when asked."""
        for rules in self._rules_for(finding.family):
            for pattern in rules.get("ignore") or []:
                if fnmatch.fnmatchcase(finding.path, pattern):
                    return None
            for pattern, level in (rules.get("severity") or {}).items():
                if fnmatch.fnmatchcase(finding.path, pattern):
                    finding = replace(finding, severity=level)
        return finding

    def filter(self, findings: list[Finding]) -> list[Finding]:
        kept = (self.apply(f) for f in findings)
        return [f for f in kept if f is not None]
