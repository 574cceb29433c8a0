"""The one choke point for secrets: everything written to a cassette passes here.

:meth:`Redactor.checked_dump` is what every cassette write calls
(:func:`llmock_proxy.cassette.store.save`, the recorder's cassette writer): it
redacts every interaction, dumps the YAML, then scans the final *text* and
refuses (:class:`SecretFound`) when anything key-shaped is left, naming the
interaction and field (or the line) and showing only a masked prefix.

What is redacted (see docs/redaction.md for the rules file that adds more):

* request headers ``authorization`` / ``proxy-authorization`` (the scheme is
  kept: ``Bearer <redacted>``; AWS SigV4 keeps its scope, loses the key id and
  signature), ``x-api-key``, ``api-key``, ``x-goog-api-key``, ``cookie``,
  ``x-amz-security-token``, ``openai-organization``, ``openai-project``;
* response headers ``set-cookie``, ``openai-organization``, ``openai-project``,
  ``anthropic-organization-id``;
* URL query parameters ``key``, ``api_key``, ``apikey``, ``access_token``,
  ``token``, ``X-Amz-Signature``, ``X-Amz-Credential``,
  ``X-Amz-Security-Token``, ``sig``, ``signature`` (value becomes ``REDACTED``);
* key-shaped values anywhere — bodies, SSE events, NDJSON lines, EventStream
  frames, WebSocket messages (also inside base64), URLs, headers, the match
  and summary sections: ``sk-`` keys (``sk-proj-``, ``sk-ant-``, and
  ``sk-test-`` too: test keys never reach a cassette either), Google ``AIza``
  keys and ``ya29.`` tokens, AWS ``AKIA``/``ASIA`` key ids, ``Bearer``
  tokens, GitHub and Slack tokens, JWTs.

The placeholder keeps the presence of a value visible: ``<redacted>``, or
``REDACTED`` inside URLs where ``<>`` would need escaping.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import (
    Cassette,
    EventStreamFrame,
    Interaction,
    NDJSONLine,
    Payload,
    Request,
    Response,
    SSEEvent,
    WebSocketSession,
    compact_json,
)
from llmock_proxy.errors import format_path

PLACEHOLDER = "<redacted>"
URL_PLACEHOLDER = "REDACTED"

DEFAULT_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "x-amz-security-token",
        "openai-organization",
        "openai-project",
    }
)
DEFAULT_RESPONSE_HEADERS = frozenset(
    {"set-cookie", "openai-organization", "openai-project", "anthropic-organization-id"}
)
DEFAULT_QUERY_PARAMS = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "access_token",
        "token",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "sig",
        "signature",
    }
)
# Headers whose value is "<scheme> <credentials>": the scheme is worth keeping.
_SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization"})


class RulesError(ValueError):
    """A redaction rules file that cannot be used; the message names file and entry."""


@dataclass(frozen=True)
class SecretPattern:
    """A key-shaped value. ``group`` is the part replaced (0: the whole match),
    so ``Bearer <token>`` keeps its ``Bearer``.

    ``literals`` (built-in patterns only): every match contains one of these
    strings (compared case-insensitively when ``fold_case``). A text holding
    none of them cannot match, which settles most texts with a few substring
    tests instead of a regex search.
    """

    name: str
    regex: re.Pattern[str]
    group: int = 0
    literals: tuple[str, ...] = ()
    fold_case: bool = False

    @property
    def builtin(self) -> bool:
        return bool(self.literals)


def _pattern(
    name: str, regex: str, literals: tuple[str, ...], *, group: int = 0, fold_case: bool = False
) -> SecretPattern:
    return SecretPattern(name, re.compile(regex), group, literals, fold_case)


# A secret starts where no other token character precedes it. The check is a
# lookbehind placed *after* the pattern's literal start (``sk-(?<!...sk-)``,
# same meaning as ``(?<!...)sk-``): a pattern that begins with a literal lets
# the regex engine jump from one occurrence of it to the next, ten to twenty
# times faster over a long text (a base64 image in a request) than testing a
# lookbehind at every position.
_TOKEN = r"[A-Za-z0-9_\-]"


def _starts(literal: str, before: str = _TOKEN) -> str:
    """``literal`` (regex syntax) not preceded by a ``before`` character."""
    return f"{literal}(?<!{before}{literal})"


BUILTIN_PATTERNS: tuple[SecretPattern, ...] = (
    _pattern(
        "sk- API key",
        _starts("sk-") + r"(?:test-[A-Za-z0-9_\-]+|(?:proj|ant|svcacct|admin|live)-[A-Za-z0-9_\-]{8,}"
        r"|[A-Za-z0-9][A-Za-z0-9_\-]{19,})",
        ("sk-",),
    ),
    _pattern("Google API key", _starts("AIza") + r"[0-9A-Za-z_\-]{20,}", ("AIza",)),
    _pattern("Google OAuth token", _starts(r"ya29\.") + r"[0-9A-Za-z_\-]{20,}", ("ya29.",)),
    _pattern(
        "AWS access key id",
        _starts("A[KS]IA", "[A-Za-z0-9]") + r"[A-Z0-9]{16}(?![A-Za-z0-9])",
        ("AKIA", "ASIA"),
    ),
    _pattern(
        "GitHub token",
        r"g(?:h[pousr]_(?<![A-Za-z0-9_]gh[pousr]_)[A-Za-z0-9]{30,}"
        r"|ithub_pat_(?<![A-Za-z0-9_]github_pat_)[A-Za-z0-9_]{30,})",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _pattern("Slack token", _starts("xox", "[A-Za-z0-9]") + r"[abposr]-[A-Za-z0-9\-]{10,}", ("xox",)),
    _pattern("OpenAI ephemeral key", _starts("ek_", "[A-Za-z0-9_]") + r"[A-Za-z0-9]{24,}", ("ek_",)),
    _pattern("JWT", _starts("eyJ") + r"[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", ("eyJ",)),
    # A bearer token: 16+ token characters with at least one digit, so prose
    # ("Bearer authentication") is left alone.
    _pattern(
        "Bearer token",
        r"(?<![A-Za-z0-9])(?i:bearer)\s+((?=[A-Za-z0-9._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{16,}=*)",
        ("bearer",),
        group=1,
        fold_case=True,
    ),
)


# -- JSON paths ------------------------------------------------------------------

_ANY = object()  # wildcard step: every key of a mapping / every item of a list
_STEP = re.compile(r"\[(\*|\d+)\]|([^.\[\]]+)")


@dataclass(frozen=True)
class JsonPath:
    """A dotted path with ``[*]`` / ``[n]`` list steps and ``*`` key wildcards:
    ``client_secret.value``, ``data[*].embedding``, ``[*].token``, ``*.password``."""

    text: str
    steps: tuple[Any, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        steps: list[Any] = []
        for segment in text.split("."):
            if not segment:
                raise ValueError(f"empty step in JSON path {text!r}")
            pos = 0
            while pos < len(segment):
                m = _STEP.match(segment, pos)
                if m is None:
                    raise ValueError(f"cannot read JSON path {text!r} at {segment[pos:]!r}")
                index, key = m.groups()
                if index is not None:
                    steps.append(_ANY if index == "*" else int(index))
                else:
                    steps.append(_ANY if key == "*" else key)
                pos = m.end()
        return cls(text, tuple(steps))

    def redact(self, value: Any) -> Any:
        """``value`` with what the path names replaced; a copy where it changed."""
        return _redact_at(value, self.steps)


def _redact_at(value: Any, steps: tuple[Any, ...]) -> Any:
    if not steps:
        return PLACEHOLDER
    step, rest = steps[0], steps[1:]
    if isinstance(value, dict):
        if step is _ANY:
            keys = list(value)
        elif isinstance(step, str) and step in value:
            keys = [step]
        else:
            return value
        out = dict(value)
        for key in keys:
            out[key] = _redact_at(value[key], rest)
        return out
    if isinstance(value, list):
        if step is _ANY:
            return [_redact_at(item, rest) for item in value]
        if isinstance(step, int) and step < len(value):
            out_list = list(value)
            out_list[step] = _redact_at(value[step], rest)
            return out_list
    return value


# -- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedactionRules:
    request_headers: frozenset[str] = DEFAULT_REQUEST_HEADERS
    response_headers: frozenset[str] = DEFAULT_RESPONSE_HEADERS
    query_params: frozenset[str] = DEFAULT_QUERY_PARAMS
    json_paths: tuple[JsonPath, ...] = ()
    patterns: tuple[SecretPattern, ...] = BUILTIN_PATTERNS

    @cached_property
    def own_patterns(self) -> tuple[SecretPattern, ...]:
        """Patterns from a rules file: no literals known, always searched."""
        return tuple(p for p in self.patterns if not p.builtin)

    @cached_property
    def _literals(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        exact = tuple(lit for p in self.patterns if not p.fold_case for lit in p.literals)
        folded = tuple(lit.lower() for p in self.patterns if p.fold_case for lit in p.literals)
        return exact, folded

    def may_match(self, text: str) -> bool:
        """False only when no pattern can match ``text`` (or any string whose
        characters appear verbatim in it, such as the JSON spelling of a value)."""
        if self.own_patterns:
            return True
        exact, folded = self._literals
        if any(lit in text for lit in exact):
            return True
        if folded:
            lowered = text.lower()
            return any(lit in lowered for lit in folded)
        return False

    def extended(self, other: Mapping[str, Any], where: str) -> RedactionRules:
        """These rules plus the ones of a parsed rules file (see docs/redaction.md)."""
        allowed = {"headers", "request_headers", "response_headers", "query_params", "json_paths", "patterns"}
        unknown = sorted(str(k) for k in other if k not in allowed)
        if unknown:
            raise RulesError(f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(allowed))}")
        headers = _names(other, "headers", where)
        json_paths = []
        for i, text in enumerate(_strings(other, "json_paths", where)):
            try:
                json_paths.append(JsonPath.parse(text))
            except ValueError as exc:
                raise RulesError(f"{where}: json_paths[{i}]: {exc}") from None
        patterns = []
        for i, text in enumerate(_strings(other, "patterns", where)):
            try:
                regex = re.compile(text)
            except re.error as exc:
                raise RulesError(f"{where}: patterns[{i}]: not a valid regular expression: {exc}") from None
            if regex.search(""):
                raise RulesError(f"{where}: patterns[{i}]: {text!r} matches the empty string")
            patterns.append(SecretPattern(f"rule patterns[{i}]", regex, 1 if regex.groups else 0))
        return RedactionRules(
            request_headers=self.request_headers | headers | _names(other, "request_headers", where),
            response_headers=self.response_headers | headers | _names(other, "response_headers", where),
            query_params=self.query_params | _names(other, "query_params", where),
            json_paths=self.json_paths + tuple(json_paths),
            patterns=self.patterns + tuple(patterns),
        )


def _strings(data: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RulesError(f"{where}: {key}: expected a list of non-empty strings")
    return value


def _names(data: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    return frozenset(name.lower() for name in _strings(data, key, where))


# -- findings ------------------------------------------------------------------------------


def mask(secret: str) -> str:
    """What a message may show of a secret: its first five characters."""
    return secret[:5] + "…"


@dataclass(frozen=True)
class Finding:
    """A key-shaped value where none may be: ``where`` is a field path
    (``interactions[3].request.headers.x-key``) or a line (``line 42``)."""

    where: str
    rule: str
    masked: str

    def __str__(self) -> str:
        return f"{self.where}: {self.rule} {self.masked!r}"


class SecretFound(ValueError):
    """A cassette write refused because something key-shaped is left in it."""

    def __init__(self, where: str, findings: list[Finding]):
        self.where = where
        self.findings = findings
        lines = "\n".join(f"  {f}" for f in findings)
        super().__init__(
            f"{where}: refusing to write: {len(findings)} key-shaped value(s) left after "
            f"redaction (add a redaction rule or remove them):\n{lines}"
        )


# -- the redactor --------------------------------------------------------------------------


@dataclass(frozen=True)
class Redactor:
    """Redacts copies of requests, responses and interactions; never mutates its input."""

    rules: RedactionRules = field(default_factory=RedactionRules)

    @classmethod
    def default(cls) -> Redactor:
        return cls()

    @classmethod
    def from_file(cls, path: str | Path) -> Redactor:
        """The default rules plus those of a YAML or JSON rules file."""
        p = Path(path)
        kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
        try:
            raw = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"{p}: cannot read redaction rules: {exc.strerror}") from None
        try:
            data = json.loads(raw) if kind == "JSON" else yamlio.loads(raw)
        except Exception as exc:  # json/yaml syntax errors
            raise RulesError(f"{p}: not valid {kind}: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RulesError(f"{p}: expected a mapping of rule lists (headers, query_params, ...)")
        return cls(RedactionRules().extended(data, str(p)))

    # -- redaction -------------------------------------------------------------------

    def redact_text(self, text: str, placeholder: str = PLACEHOLDER) -> str:
        """``text`` with every key-shaped value replaced by ``placeholder``."""
        return _Pass(self.rules, strings=True).text(text, placeholder)

    def redact_url(self, url: str) -> str:
        return _Pass(self.rules, strings=True).url(url)

    def redact_request(self, request: Request) -> Request:
        return self._pass_for({"request": request.to_dict()}).request(request)

    def redact_response(self, response: Response) -> Response:
        return self._pass_for({"response": response.to_dict()}).response(response)

    def redact_interaction(self, interaction: Interaction) -> Interaction:
        return self._pass_for(interaction.to_dict()).interaction(interaction)

    def redact_cassette(self, cassette: Cassette) -> Cassette:
        return Cassette(
            interactions=[self.redact_interaction(i) for i in cassette.interactions],
            path=cassette.path,
            meta=_Pass(self.rules, strings=True).value(dict(cassette.meta)),
        )

    def _pass_for(self, data: dict[str, Any]) -> _Pass:
        """A pass that skips the per-string pattern search when the JSON
        spelling of the whole item shows no pattern can match anywhere in it
        (printable ASCII, which every pattern literal is, survives JSON
        encoding verbatim). Header, query and JSON-path rules always apply.

        Sensitive headers are left out of the test: they are replaced whole
        anyway, and an ``authorization: Bearer ...`` in every request would
        otherwise send every interaction down the slow path."""
        for section, sensitive in (
            ("request", self.rules.request_headers),
            ("response", self.rules.response_headers),
        ):
            headers = (data.get(section) or {}).get("headers")
            if headers:
                data[section]["headers"] = {k: v for k, v in headers.items() if k.lower() not in sensitive}
        try:
            spelled = json.dumps(data, ensure_ascii=False, check_circular=False)
        except (TypeError, ValueError):
            return _Pass(self.rules, strings=True)
        return _Pass(self.rules, strings=self.rules.may_match(spelled))

    # -- the final check -----------------------------------------------------------------

    def checked_dump(self, cassette: Cassette, where: str) -> str:
        """Redact ``cassette`` (a copy), dump it as YAML, scan the text.

        Returns the YAML to write; raises :class:`SecretFound` (naming the
        interaction and field, or the line) when the text still holds
        something key-shaped — a secret used as a mapping key, say, which
        redaction does not rewrite.
        """
        with yamlio.gc_paused():
            data = self.redact_cassette(cassette).to_dict()
            text = yamlio.dumps(data)
        in_text = self.scan(text)
        if in_text:
            raise SecretFound(where, self.scan(data) or in_text)
        return text

    def scan(self, target: str | Cassette | Interaction | Mapping[str, Any] | list[Any]) -> list[Finding]:
        """Key-shaped values in ``target``: by line for text, by field path
        for a cassette, an interaction or plain data. In data, base64 values
        are looked into, and a sensitive header whose value is not a
        placeholder counts too."""
        if isinstance(target, str):
            return self._scan_text(target)
        if isinstance(target, (Cassette, Interaction)):
            return list(self._scan_data(target.to_dict(), ()))
        return list(self._scan_data(target, ()))

    def _scan_text(self, text: str) -> list[Finding]:
        if not self.rules.may_match(text):
            return []
        found: list[tuple[int, Finding]] = []
        for pattern in self.rules.patterns:
            if pattern.literals and not _holds_literal(pattern, text):
                continue
            for m in pattern.regex.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append((m.start(), Finding(f"line {line}", pattern.name, mask(m.group(pattern.group)))))
        return [f for _, f in sorted(found, key=lambda item: item[0])]

    def _secrets_in(self, text: str) -> Iterator[tuple[str, str]]:
        for pattern in self.rules.patterns:
            for m in pattern.regex.finditer(text):
                yield pattern.name, m.group(pattern.group)

    def _scan_data(self, value: Any, path: tuple[Any, ...]) -> Iterator[Finding]:

        for leaf_path, leaf, is_key in _leaves(value, path):
            # A path may pass through a key-shaped mapping key: never print it.
            shown = tuple(
                mask(part) if isinstance(part, str) and any(self._secrets_in(part)) else part
                for part in leaf_path
            )
            where = format_path(shown) + (" (a mapping key)" if is_key else "")
            texts = [leaf]
            if leaf_path and leaf_path[-1] == "base64" and not is_key:
                try:
                    texts.append(base64.b64decode(leaf, validate=True).decode("latin-1"))
                except (binascii.Error, ValueError):
                    pass
            for text in texts:
                for rule, secret in self._secrets_in(text):
                    yield Finding(where, rule, mask(secret))
            if not is_key and len(leaf_path) >= 2 and leaf_path[-2] == "headers":
                yield from self._header_finding(leaf_path, leaf, where)

    def _header_finding(self, path: tuple[Any, ...], value: str, where: str) -> Iterator[Finding]:
        section = str(path[-3]) if len(path) >= 3 else ""
        sensitive = {"request": self.rules.request_headers, "response": self.rules.response_headers}.get(
            section, frozenset()
        )
        name = str(path[-1]).lower()
        if name in sensitive and _header_placeholder(name, value) != value:
            yield Finding(where, "sensitive header", mask(value))


@dataclass(frozen=True)
class _Pass:
    """One redaction walk over the models. With ``strings`` off, the pattern
    search is skipped (the caller proved nothing can match); the header,
    query parameter and JSON path rules apply either way."""

    rules: RedactionRules
    strings: bool

    # -- strings and values ------------------------------------------------------------

    def text(self, text: str, placeholder: str = PLACEHOLDER) -> str:
        if not self.strings or not self.rules.may_match(text):
            return text
        for pattern in self.rules.patterns:
            if pattern.literals and not _holds_literal(pattern, text):
                continue  # cannot match: skip a search over the whole text
            if pattern.regex.search(text) is not None:
                text = _substitute(pattern, text, placeholder)
        return text

    def value(self, value: Any) -> Any:
        """Patterns applied to every string inside a JSON-like value (a copy)."""
        if not self.strings:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def json(self, value: Any) -> Any:
        for path in self.rules.json_paths:
            value = path.redact(value)
        return self.value(value)

    def json_text(self, text: str) -> str:
        """Text that may be a JSON document: JSON paths apply to it too."""
        if self.rules.json_paths and text.lstrip()[:1] in ("{", "["):
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                redacted = self.json(parsed)
                if redacted != parsed:
                    return compact_json(redacted)
        return self.text(text)

    def payload(self, payload: Payload) -> Payload:
        if payload.kind == "json":
            return Payload("json", self.json(payload.value))
        if payload.kind == "text":
            return Payload("text", self.json_text(str(payload.value)))
        return Payload("base64", self.base64(str(payload.value)))

    def base64(self, value: str) -> str:
        # Binary (an EventStream payload, a binary WebSocket frame) is searched
        # as Latin-1, which maps every byte to one character and back. Not
        # covered by the caller's JSON-spelling test, so always searched.
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
        text = raw.decode("latin-1")
        redacted = _Pass(self.rules, strings=True).text(text)
        if redacted == text:
            return value
        return base64.b64encode(redacted.encode("latin-1")).decode("ascii")

    # -- URLs and headers --------------------------------------------------------

    def url(self, url: str) -> str:
        head, hash_mark, fragment = url.partition("#")
        base, question, query = head.partition("?")
        if question:
            query = "&".join(self._query_pair(pair) for pair in query.split("&"))
        return self.text(base + question + query + hash_mark + fragment, URL_PLACEHOLDER)

    def _query_pair(self, pair: str) -> str:
        name, equals, value = pair.partition("=")
        if equals and value and unquote_plus(name).lower() in self.rules.query_params:
            return f"{name}={URL_PLACEHOLDER}"
        return pair

    def headers(self, headers: Mapping[str, str], sensitive: frozenset[str]) -> dict[str, str]:
        out = {}
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in sensitive:
                out[name] = _header_placeholder(lowered, str(value))
            else:
                out[name] = self.text(str(value))
        return out

    # -- models ----------------------------------------------------------------------

    def request(self, request: Request) -> Request:
        return replace(
            request,
            url=self.url(request.url),
            headers=self.headers(request.headers, self.rules.request_headers),
            body=None if request.body is None else self.payload(request.body),
        )

    def response(self, response: Response) -> Response:
        return replace(
            response,
            headers=self.headers(response.headers, self.rules.response_headers),
            body=None if response.body is None else self.payload(response.body),
            events=None if response.events is None else [self.event(e) for e in response.events],
            lines=None if response.lines is None else [self.line(x) for x in response.lines],
            frames=None if response.frames is None else [self.frame(f) for f in response.frames],
            websocket=None if response.websocket is None else self.websocket(response.websocket),
        )

    def interaction(self, interaction: Interaction) -> Interaction:
        return replace(
            interaction,
            request=self.request(interaction.request),
            response=None if interaction.response is None else self.response(interaction.response),
            match=self.value(dict(interaction.match)),
            summary=None if interaction.summary is None else self.value(interaction.summary),
            error=None if interaction.error is None else self.text(interaction.error),
            incomplete=None if interaction.incomplete is None else self.text(interaction.incomplete),
        )

    def event(self, event: SSEEvent) -> SSEEvent:
        data = event.data
        if isinstance(data, (dict, list)):
            data = self.json(data)
        elif isinstance(data, str):
            data = self.json_text(data)
        return replace(
            event,
            data=data,
            event=None if event.event is None else self.text(event.event),
            id=None if event.id is None else self.text(event.id),
            comment=None if event.comment is None else self.text(event.comment),
        )

    def line(self, line: NDJSONLine) -> NDJSONLine:
        return replace(line, data=self.json(line.data))

    def frame(self, frame: EventStreamFrame) -> EventStreamFrame:
        headers = {
            name: self.text(value) if isinstance(value, str) else value
            for name, value in frame.headers.items()
        }
        return replace(frame, headers=headers, payload=self.payload(frame.payload))

    def websocket(self, session: WebSocketSession) -> WebSocketSession:
        close = session.close
        if close is not None:
            close = replace(close, reason=self.text(close.reason))
        return WebSocketSession(
            messages=[replace(m, payload=self.payload(m.payload)) for m in session.messages],
            subprotocol=session.subprotocol,
            close=close,
        )


def _holds_literal(pattern: SecretPattern, text: str) -> bool:
    haystack = text.lower() if pattern.fold_case else text
    return any(lit in haystack for lit in pattern.literals)


def _substitute(pattern: SecretPattern, text: str, placeholder: str) -> str:
    group = pattern.group

    def replacement(m: re.Match[str]) -> str:
        if group == 0 or m.group(group) is None:
            return placeholder
        whole = m.group(0)
        start, end = m.start(group) - m.start(0), m.end(group) - m.start(0)
        return whole[:start] + placeholder + whole[end:]

    return pattern.regex.sub(replacement, text)


_SIGV4_CREDENTIAL = re.compile(r"(Credential=)[^/,\s]+")
_SIGV4_SIGNATURE = re.compile(r"(Signature=)[^,\s]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9._~+\-]*)\s+\S")


def _header_placeholder(name: str, value: str) -> str:
    """The stored form of a sensitive header: the scheme of an authorization
    header survives (``Bearer <redacted>``); an AWS SigV4 authorization keeps
    its algorithm, scope and signed header list."""
    if name in _SCHEME_HEADERS:
        if value.startswith("AWS4-"):
            value = _SIGV4_CREDENTIAL.sub(lambda m: m.group(1) + PLACEHOLDER, value)
            return _SIGV4_SIGNATURE.sub(lambda m: m.group(1) + PLACEHOLDER, value)
        m = _SCHEME.match(value)
        if m:
            return f"{m.group(1)} {PLACEHOLDER}"
    return PLACEHOLDER


def _leaves(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str, bool]]:
    """Every string in a JSON-like value with its path; mapping keys included."""
    stack: list[tuple[tuple[Any, ...], Any]] = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, str):
            yield here, item, False
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                stack.append((here + (key,), child))
            for key in item:
                if isinstance(key, str):
                    yield here + (key,), key, True
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append((here + (index,), item[index]))


__all__ = [
    "BUILTIN_PATTERNS",
    "PLACEHOLDER",
    "URL_PLACEHOLDER",
    "Finding",
    "JsonPath",
    "RedactionRules",
    "Redactor",
    "RulesError",
    "SecretFound",
    "SecretPattern",
    "mask",
]
