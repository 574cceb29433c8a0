"""The active canary: re-send recorded requests to the live APIs and grade the answers.

For each selected recording (all successful ones, or one per API family and
wire form with ``sample``) the canary

1. finds the credential for its family in the environment — a family without
   one is *skipped*, not failed;
2. rebuilds the request: the recorded URL (or the family's ``--upstream``
   base), the recorded headers minus every redacted value and old credential,
   the fresh credential added (never a ``<redacted>`` placeholder on the wire);
3. captures the live answer through the record path (:mod:`.capture`);
4. grades it against the recorded shape (:class:`.contracts.Contracts`).

Credentials only ever live in the outgoing request: captured interactions
start from the recorded (redacted) request, and every text that leaves the
canary can be passed through :meth:`Secrets.scrub`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from llmock_proxy.cassette import model as cassette_model
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.model import Interaction, Request
from llmock_proxy.cassette.redact import PLACEHOLDER, URL_PLACEHOLDER, Redactor
from llmock_proxy.drift.capture import LiveRequest, capture_http, capture_websocket
from llmock_proxy.drift.contracts import Contracts, Recorded, error_message, is_shape_sample
from llmock_proxy.drift.findings import Finding
from llmock_proxy.drift.report import CheckResult, DriftReport, Outcome
from llmock_proxy.drift.shape import is_error_status
from llmock_proxy.providers.base import CredentialScheme, SigV4
from llmock_proxy.providers.catalog import FAMILIES, grammar_of
from llmock_proxy.providers.generic import is_credential_param
from llmock_proxy.record.recorder import UNSTORED_HEADERS, Recorder

# Headers that carry a credential in any HTTP API; each family's provider
# names its own besides (``Credential.replaces``). Never replayed.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# Parts of an AWS SigV4 signature, recomputed for every request.
SIGV4_HEADERS = frozenset({"x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "authorization"})

# Statuses that mean the credential was refused, not that the API changed.
AUTH_FAILURES = frozenset({401, 403})

DEFAULT_TIMEOUT = 60.0


def is_redacted(value: str) -> bool:
    """Whether the redactor replaced (part of) this header or query value:
    ``Bearer <redacted>``, a SigV4 ``Credential=<redacted>/...``, ``key=REDACTED``."""
    return PLACEHOLDER in value or value == URL_PLACEHOLDER


class Skip(Exception):
    """A recording the canary cannot send; the message says why. ``needs``
    names the environment variable(s) that would let it be sent, when that
    is the reason (``GEMINI_API_KEY/GOOGLE_API_KEY``: either; ``A+B``: both)."""

    def __init__(self, message: str, *, needs: str = "") -> None:
        super().__init__(message)
        self.needs = needs


def _needs(schemes: Iterable[CredentialScheme]) -> str:
    """The variables a family's credential can come from, as the reports name
    them: alternatives joined by ``/``, variables needed together by ``+``."""
    return "/".join(("+" if s.sigv4 is not None else "/").join(s.env) for s in schemes)


class UsageError(ValueError):
    """Bad canary configuration (an --upstream that names no family, ...)."""


# -- credentials ---------------------------------------------------------------

Signer = Callable[[str, str, list[tuple[str, str]], bytes], list[tuple[str, str]]]


@dataclass(frozen=True)
class Credential:
    """What one family's live request needs: headers to add, or a signer."""

    headers: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()
    signer: Signer | None = None
    # Headers the family's credentials travel in: a recorded one is never replayed.
    replaces: frozenset[str] = frozenset()


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def credential_for(family: str, request: Request, env: Mapping[str, str]) -> Credential:
    """The credential for one recorded request, from the environment: the
    family's provider says which variables hold it and how it is sent.

    Raises :class:`Skip` naming the variable(s) to set when there is none.
    """
    schemes = grammar_of(family).credential_schemes(request)
    replaces = frozenset(scheme.header for scheme in schemes if scheme.sigv4 is None)
    for scheme in schemes:
        if scheme.sigv4 is not None:
            if all(_env(env, name) for name in scheme.env):
                return _sigv4_credential(family, request, scheme, scheme.sigv4, env, replaces)
            continue
        key = _env(env, *scheme.env)
        if key is not None:
            return Credential(headers=((scheme.header, scheme.prefix + key),), secrets=(key,), replaces=replaces)
    if any(scheme.optional for scheme in schemes):
        return Credential(replaces=replaces)
    signed = [" and ".join(scheme.env) for scheme in schemes if scheme.sigv4 is not None]
    if signed:
        others = [name for scheme in schemes if scheme.sigv4 is None for name in scheme.env]
        alternative = f" (or {' or '.join(others)})" if others else ""
        raise Skip(f"{family} requests are SigV4-signed: set {signed[0]}{alternative}", needs=_needs(schemes))
    if schemes:
        names = [name for scheme in schemes for name in scheme.env]
        raise Skip(f"no {' or '.join(names)} in the environment", needs=_needs(schemes))
    redacted = sorted(
        [name for name, value in request.headers.items() if is_redacted(value)]
        + [name for name, value in parse_qsl(urlsplit(request.url).query) if is_redacted(value)]
    )
    if redacted:
        raise Skip(f"the {family} family has no known credential variable and the recording's "
                   f"{', '.join(redacted)} was redacted")
    return Credential()


def _sigv4_credential(
    family: str,
    request: Request,
    scheme: CredentialScheme,
    sigv4: SigV4,
    env: Mapping[str, str],
    replaces: frozenset[str],
) -> Credential:
    access, secret = _env(env, scheme.env[0]), _env(env, scheme.env[1])
    assert access is not None and secret is not None
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        raise Skip(f"{family} requests are SigV4-signed and botocore is not installed") from None
    region = sigv4.region or _env(env, *sigv4.region_env)
    if region is None:
        raise Skip(f"cannot tell the AWS region of the {family} endpoint: set {sigv4.region_env[0]}",
                   needs="/".join(sigv4.region_env))
    session_token = _env(env, *sigv4.session_env)
    aws_credentials = Credentials(access, secret, session_token)

    def sign(method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
        unsigned = [(k, v) for k, v in headers if k.lower() not in SIGV4_HEADERS]
        aws_request = AWSRequest(method=method, url=url, data=body, headers=dict(unsigned))
        SigV4Auth(aws_credentials, sigv4.service, region).add_auth(aws_request)
        return [(k, v) for k, v in aws_request.headers.items() if k.lower() != "host"]

    return Credential(
        secrets=tuple(s for s in (access, secret, session_token) if s), signer=sign, replaces=replaces | SIGV4_HEADERS
    )


@dataclass
class Secrets:
    """Every credential value the canary used: scrubbed from whatever it writes."""

    values: set[str] = field(default_factory=set)

    def add(self, credential: Credential) -> None:
        self.values.update(v for v in credential.secrets if len(v) >= 4)

    def scrub(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, PLACEHOLDER)
        return text

    def redactor(self, base: Redactor) -> Redactor:
        """``base`` plus these exact values, wherever they appear: a live
        answer may echo a credential that has no well-known shape."""
        if not self.values:
            return base
        literals = [re.escape(v) for v in sorted(self.values, key=len, reverse=True)]
        return Redactor(base.rules.extended({"patterns": literals}, "the canary's credentials"))


# -- where requests go -----------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """``--upstream FAMILY=URL``: send a family's requests to another base URL."""

    pattern: str  # a family ("openai.chat"), its prefix ("openai") or a glob ("gemini.*")
    base: str

    @classmethod
    def parse(cls, spec: str) -> Upstream:
        pattern, sep, url = spec.partition("=")
        pattern, url = pattern.strip(), url.strip()
        if not sep or not pattern or not url:
            raise UsageError(f"--upstream {spec!r}: expected FAMILY=URL, e.g. openai=http://127.0.0.1:8000")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise UsageError(f"--upstream {spec!r}: {url!r} is not an http(s):// or ws(s):// URL")
        upstream = cls(pattern, url)
        if not any(upstream.score(f) for f in FAMILIES):
            raise UsageError(
                f"--upstream {spec!r}: {pattern!r} names no API family (known: {', '.join(sorted(FAMILIES))})"
            )
        return upstream

    def score(self, family: str) -> int:
        """How specifically this redirect names ``family`` (0: not at all)."""
        if family == self.pattern:
            return 3
        if family.startswith(self.pattern + "."):
            return 2
        return 1 if fnmatch.fnmatchcase(family, self.pattern) else 0

    def rewrite(self, url: str) -> str:
        """``url`` with its scheme and host replaced by the base (whose path is prepended)."""
        base, recorded = urlsplit(self.base), urlsplit(url)
        path = base.path.rstrip("/") + (recorded.path or "/")
        return urlunsplit((base.scheme, base.netloc, path, recorded.query, ""))


def upstream_for(family: str, upstreams: Iterable[Upstream]) -> Upstream | None:
    best = max(upstreams, key=lambda u: u.score(family), default=None)
    return best if best is not None and best.score(family) else None


def live_request(
    recorded: Request, family: str, credential: Credential, upstreams: Iterable[Upstream] = ()
) -> LiveRequest:
    """The request that actually goes out for ``recorded``."""
    parts = urlsplit(recorded.url)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not is_redacted(value)
        and not ((credential.headers or credential.signer) and is_credential_param(name))
    ]
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    upstream = upstream_for(family, upstreams)
    if upstream is not None:
        url = upstream.rewrite(url)
    headers = [
        (name, value)
        for name, value in recorded.headers.items()
        if name not in UNSTORED_HEADERS
        and name not in CREDENTIAL_HEADERS
        and name not in credential.replaces
        and not is_redacted(value)
    ]
    headers += list(credential.headers)
    body = recorded.body.to_bytes() if recorded.body is not None else None
    if credential.signer is not None:
        headers = credential.signer(recorded.method, url, headers, body or b"")
    return LiveRequest(url=url, headers=headers, body=body)


# -- selection -------------------------------------------------------------------


def select(recordings: Iterable[Recorded], *, sample: bool = False) -> list[Recorded]:
    """The recordings worth re-sending: complete, successful ones; with
    ``sample`` only the first of each API family and wire form."""
    chosen: list[Recorded] = []
    seen: set[tuple[str, str]] = set()
    for recorded in recordings:
        if not is_shape_sample(recorded.interaction):
            continue
        key = (recorded.family, recorded.form)
        if sample and key in seen:
            continue
        seen.add(key)
        chosen.append(recorded)
    return chosen


# -- progress --------------------------------------------------------------------


@dataclass
class Progress:
    """One progress line on stderr: rewritten in place on a terminal, one line per
    finished request otherwise (CI logs)."""

    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"checked": 0, "skipped": 0, "error": 0})
    drifted: int = 0

    def update(self, result: CheckResult) -> None:
        self.done += 1
        self.counts[result.outcome] += 1
        self.drifted += bool(result.findings)
        head = (
            f"drift: {self.done}/{self.total} done ({self.counts['checked']} checked, "
            f"{self.counts['skipped']} skipped, {self.counts['error']} errors, {self.drifted} with findings)"
        )
        if self.stream.isatty():
            self.stream.write("\r" + head + ("\n" if self.done == self.total else ""))
        else:
            self.stream.write(f"{head}: {result.key} {result.source} {result.outcome}\n")
        self.stream.flush()


# -- the run ---------------------------------------------------------------------


@dataclass
class CanaryOptions:
    upstreams: list[Upstream] = field(default_factory=list)
    concurrency: int = 4
    max_requests: int | None = None
    timeout: float = DEFAULT_TIMEOUT
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class LiveAnswer:
    """A recording and the live interaction captured for it (for ``--update``)."""

    recorded: Recorded
    live: Interaction


@dataclass
class Canary:
    contracts: Contracts
    options: CanaryOptions = field(default_factory=CanaryOptions)
    redactor: Redactor = field(default_factory=Redactor.default)
    secrets: Secrets = field(default_factory=Secrets)
    answers: list[LiveAnswer] = field(default_factory=list)

    async def run(self, selected: list[Recorded], *, progress: Progress | None = None) -> DriftReport:
        report = DriftReport()
        planned: list[tuple[Recorded, LiveRequest]] = []
        for recorded in selected:
            try:
                credential = credential_for(recorded.family, recorded.interaction.request, self.options.env)
            except Skip as skip:
                result = self._result(recorded, "skipped", reason=str(skip))
                result.needs = skip.needs
                self._finish(report, progress, result)
                continue
            self.secrets.add(credential)
            live = live_request(recorded.interaction.request, recorded.family, credential, self.options.upstreams)
            if self.options.max_requests is not None and len(planned) >= self.options.max_requests:
                reason = f"not sent: --max-requests {self.options.max_requests} reached"
                self._finish(report, progress, self._result(recorded, "skipped", reason=reason))
                continue
            planned.append((recorded, live))

        limit = asyncio.Semaphore(max(1, self.options.concurrency))
        connector = aiohttp.TCPConnector(limit=max(1, self.options.concurrency))
        async with aiohttp.ClientSession(auto_decompress=False, connector=connector) as session:

            async def one(recorded: Recorded, live: LiveRequest) -> None:
                async with limit:
                    result = await self._check(session, recorded, live)
                self._finish(report, progress, result)

            await asyncio.gather(*(one(r, live) for r, live in planned))
        report.results.sort(key=lambda r: (r.key, r.source))
        return report

    def _finish(self, report: DriftReport, progress: Progress | None, result: CheckResult) -> None:
        report.add(result)
        if progress is not None:
            progress.update(result)

    def _result(
        self,
        recorded: Recorded,
        outcome: Outcome,
        *,
        reason: str = "",
        live: LiveRequest | None = None,
        answer: Interaction | None = None,
        findings: list[Finding] | None = None,
    ) -> CheckResult:
        response = answer.response if answer is not None else None
        return CheckResult(
            family=recorded.family,
            form=recorded.form,
            source=recorded.source,
            outcome=outcome,
            reason=reason,
            url=recorded.interaction.request.url,
            live_url=live.url if live is not None else "",
            live_status=response.status if response is not None else None,
            live_error=self.secrets.scrub(error_message(recorded.family, recorded.interaction.request, response))
            if response is not None and is_error_status(response.status) else "",
            findings=findings or [],
            compared_with=self.contracts.recorded_sources(recorded.family, recorded.form),
        )

    async def _check(self, session: aiohttp.ClientSession, recorded: Recorded, live: LiveRequest) -> CheckResult:
        try:
            if recorded.form == "websocket":
                interaction = await capture_websocket(
                    session,
                    recorded.interaction,
                    live,
                    recorder=Recorder(redactor=self.redactor),
                    timeout=self.options.timeout,
                )
            else:
                interaction = await capture_http(
                    session,
                    recorded.interaction.request,
                    live,
                    recorder=Recorder(redactor=self.redactor),
                    timeout=self.options.timeout,
                )
        except Exception as exc:  # one broken request must not end the run
            return self._result(recorded, "error", live=live,
                                reason=self.secrets.scrub(f"{type(exc).__name__}: {exc}"))
        response = interaction.response
        if interaction.error or response is None:
            return self._result(recorded, "error", live=live,
                                reason=self.secrets.scrub(f"no answer: {interaction.error}"))
        recorded_status = recorded.interaction.response.status if recorded.interaction.response else None
        if response.status in AUTH_FAILURES and recorded_status not in AUTH_FAILURES:
            return self._result(
                recorded, "error", live=live, answer=interaction,
                reason=f"credentials refused: HTTP {response.status} (check the key for {recorded.family})",
            )
        if interaction.incomplete:
            return self._result(
                recorded, "error", live=live, answer=interaction,
                reason=self.secrets.scrub(f"the live answer broke off: {interaction.incomplete}"),
            )
        findings = self.contracts.check(recorded.family, recorded.form, response, source=recorded.source)
        if findings is None:
            return self._result(
                recorded, "skipped", live=live, answer=interaction,
                reason=f"no recorded shape for {recorded.family}.{recorded.form} to compare with",
            )
        self.answers.append(LiveAnswer(recorded, interaction))
        return self._result(recorded, "checked", live=live, answer=interaction, findings=findings)


def run_canary(
    contracts: Contracts,
    selected: list[Recorded],
    options: CanaryOptions,
    *,
    progress: Progress | None = None,
    redactor: Redactor | None = None,
) -> tuple[DriftReport, Canary]:
    canary = Canary(contracts, options, redactor or Redactor.default())
    report = asyncio.run(canary.run(selected, progress=progress))
    return report, canary


# -- --update --------------------------------------------------------------------


@dataclass
class UpdateOutcome:
    written: list[Path] = field(default_factory=list)
    refreshed: int = 0
    kept: list[str] = field(default_factory=list)  # "source: why the recording was kept"


def apply_updates(answers: Iterable[LiveAnswer], *, redactor: Redactor | None = None) -> UpdateOutcome:
    """Write the live answers back into their cassettes: new response, summary
    and time, same request and match. A live error answer to a recording that
    was a success is not written (a refreshed cassette holds the API's answer,
    not an outage). Each cassette is saved once, atomically, through the
    redaction scan."""
    outcome = UpdateOutcome()
    touched: dict[int, tuple[cassette_model.Cassette, Path]] = {}
    for answer in answers:
        response = answer.live.response
        if response is None:
            continue
        if response.status >= 400:
            outcome.kept.append(f"{answer.recorded.source}: live answer was HTTP {response.status}")
            continue
        target = answer.recorded.interaction
        target.response = response
        target.summary = answer.live.summary
        target.recorded_at = answer.live.recorded_at
        target.incomplete = None
        target.error = None
        cassette = answer.recorded.cassette
        assert cassette.path is not None
        touched[id(cassette)] = (cassette, cassette.path)
        outcome.refreshed += 1
    for cassette, path in touched.values():
        outcome.written.append(cassette_store.save(cassette, path, redactor=redactor))
    return outcome
