"""The one choke point for secrets: everything written to a cassette passes here.

:meth:`Redactor.checked_dump` is what every cassette write calls
(:func:`llmock_proxy.cassette.store.save`, the recorder's cassette writer): it
redacts every interaction, dumps the YAML, then scans the final *text* and
refuses (:class:`SecretFound`) when anything key-shaped is left, naming the
interaction and field (or the line) and showing only a masked prefix.

An interaction is redacted in two stages (docs/redaction.md has the tables):

1. **By name** (:class:`_Names`): request and response headers, URL query
   parameters (``&`` and ``;`` separated, and the fragment), URL userinfo
   (dropped), ``Sec-WebSocket-Protocol`` keys, JSON fields (bodies, SSE
   events, NDJSON lines, EventStream payloads including the base64 ``bytes``
   Bedrock wraps its chunks in, WebSocket messages) and form fields whose
   *name* says credential: the built-in lists, the generic name globs of
   :mod:`llmock_proxy.cassette.secret_names` (``*token*``, ``*secret*``,
   ``*api_key*``... minus an allow-list for token counts and the like), and
   a rules file's additions. Every value removed is remembered, with the
   key-shaped values of the request's URL and headers.
2. **By value and by shape** (:class:`_Pass`): every remembered value
   (:mod:`llmock_proxy.cassette.secret_values`: also percent-encoded,
   JSON-escaped and inside base64) and every key-shaped value
   (:data:`BUILTIN_PATTERNS` plus a rules file's patterns) is removed from
   every string of the interaction: URL, headers, bodies, stream items,
   WebSocket messages, the close reason, ``match``, ``summary``, ``error``,
   ``incomplete``. The strings of a stream are also searched put back
   together (:mod:`llmock_proxy.cassette.secret_streams`), so a value
   streamed a few characters per event is found too.

The placeholder keeps the presence of a value visible: ``<redacted>``, or
``REDACTED`` inside URLs and form bodies where ``<>`` would need escaping.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, unquote_plus

from llmock_proxy.cassette import secret_scan, yamlio
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
    WSMessage,
    compact_json,
)
from llmock_proxy.cassette.secret_names import NameRules, is_model_token
from llmock_proxy.cassette.secret_scan import fold_spellings
from llmock_proxy.cassette.secret_streams import redact_across
from llmock_proxy.cassette.secret_values import SentValues, ValueMatcher, credential_parts
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
    # Every match starts where one of the literals does: a case-insensitive
    # one is then found through the lower-cased text (see _finditer).
    anchored: bool = False

    @property
    def builtin(self) -> bool:
        return bool(self.literals)


def _pattern(
    name: str, regex: str, literals: tuple[str, ...], *, group: int = 0, fold_case: bool = False,
    anchored: bool = False,
) -> SecretPattern:
    return SecretPattern(name, re.compile(regex), group, literals, fold_case, anchored)


# A secret starts where no other token character precedes it. The check is a
# lookbehind placed *after* the pattern's literal start (``sk-(?<!...sk-)``,
# same meaning as ``(?<!...)sk-``): a pattern that begins with a literal lets
# the regex engine jump from one occurrence of it to the next, ten to twenty
# times faster over a long text (a base64 image in a request) than testing a
# lookbehind at every position.
_TOKEN = r"[A-Za-z0-9_\-]"
# Characters most texts hold but base64 never does: see RedactionRules._literal_groups.
_RARE_CHARACTERS = "_-. "
_WORD = r"[A-Za-z0-9_]"


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
    _pattern("Groq API key", _starts("gsk_", _WORD) + r"[A-Za-z0-9]{20,}", ("gsk_",)),
    _pattern("xAI API key", _starts("xai-") + r"[A-Za-z0-9]{20,}", ("xai-",)),
    _pattern("Hugging Face token", _starts("hf_", _WORD) + r"[A-Za-z0-9]{20,}", ("hf_",)),
    _pattern("Replicate token", _starts("r8_", _WORD) + r"[A-Za-z0-9]{20,}", ("r8_",)),
    _pattern("GitLab token", _starts("glpat-") + r"[A-Za-z0-9_\-]{20,}", ("glpat-",)),
    _pattern(
        "Stripe key",
        r"(?:sk|rk)_(?:live|test)_(?<![A-Za-z0-9_][sr]k_live_)(?<![A-Za-z0-9_][sr]k_test_)[A-Za-z0-9]{10,}",
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    ),
    # Bedrock's long-term API keys: "ABSK" + base64 of "BedrockAPIKey-...".
    _pattern("Bedrock API key", _starts("ABSK", "[A-Za-z0-9+/]") + r"[A-Za-z0-9+/]{40,}={0,2}", ("ABSK",)),
    _pattern("Perplexity API key", _starts("pplx-") + r"[A-Za-z0-9]{20,}", ("pplx-",)),
    _pattern("npm token", _starts("npm_", _WORD) + r"[A-Za-z0-9]{30,}", ("npm_",)),
    _pattern("PyPI token", _starts("pypi-") + r"AgE[A-Za-z0-9_\-]{20,}", ("pypi-",)),
    _pattern("Google OAuth client secret", _starts("GOCSPX-") + r"[A-Za-z0-9_\-]{20,}", ("GOCSPX-",)),
    _pattern("LangSmith key", _starts("lsv2_", _WORD) + r"(?:pt|sk)_[A-Za-z0-9_]{20,}", ("lsv2_",)),
    _pattern(
        "Slack webhook",
        r"hooks\.slack\.com/services/(T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,})",
        ("hooks.slack.com/services/",),
        group=1,
    ),
    # The whole PEM block; its base64 may be cut short or spelled with JSON's
    # "\n" escapes, so the END line is optional.
    _pattern(
        "private key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[A-Za-z0-9+/=\s]|\\[nr])*"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?",
        ("PRIVATE KEY-----",),
    ),
    # An AWS secret access key has no shape of its own: 40 base64 characters
    # right after its name (an env file, a config echoed in an answer).
    _pattern(
        "AWS secret access key",
        # (?i:aws_?secret_?access_?key|secret_?access_?key), spelled so that the
        # regex engine only stops at the letters a match can start with ("ſ" is
        # what (?i:s) also matches): several times faster over a long text.
        "[AaSs\u017f](?:(?<=[Aa])(?i:ws_?secret_?access_?key)|(?<=[Ss\u017f])(?i:ecret_?access_?key))"
        r"[\"']?\s*[:=]\s*[\"']?"
        r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        ("secret",),
        group=1,
        fold_case=True,
    ),
    # A bearer token: 16+ token characters with at least one digit, so prose
    # ("Bearer authentication") is left alone.
    _pattern(
        "Bearer token",
        # (?<![A-Za-z0-9])(?i:bearer): starting with the character class of its
        # first letter lets the regex engine skip to the next b or B.
        r"[Bb](?<![A-Za-z0-9][Bb])(?i:earer)\s+((?=[A-Za-z0-9._~+/\-]*[0-9])[A-Za-z0-9._~+/\-]{16,}=*)",
        ("bearer",),
        group=1,
        fold_case=True,
        anchored=True,
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

    def redact(self, value: Any, found: Callable[[str], None] | None = None) -> Any:
        """``value`` with what the path names replaced; a copy where it
        changed. ``found`` is told every string replaced."""
        return _redact_at(value, self.steps, found)


def _redact_at(value: Any, steps: tuple[Any, ...], found: Callable[[str], None] | None) -> Any:
    if not steps:
        if found is not None:
            for text in _strings_in(value):
                found(text)
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
            out[key] = _redact_at(value[key], rest, found)
        return out
    if isinstance(value, list):
        if step is _ANY:
            return [_redact_at(item, rest, found) for item in value]
        if isinstance(step, int) and step < len(value):
            out_list = list(value)
            out_list[step] = _redact_at(value[step], rest, found)
            return out_list
    return value


def _strings_in(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# -- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedactionRules:
    request_headers: frozenset[str] = DEFAULT_REQUEST_HEADERS
    response_headers: frozenset[str] = DEFAULT_RESPONSE_HEADERS
    query_params: frozenset[str] = DEFAULT_QUERY_PARAMS
    json_paths: tuple[JsonPath, ...] = ()
    patterns: tuple[SecretPattern, ...] = BUILTIN_PATTERNS
    names: NameRules = field(default_factory=NameRules)

    def secret_header(self, name: str, listed: frozenset[str]) -> bool:
        """A header of a section whose own list is ``listed``: listed, or a credential name."""
        lowered = name.lower()
        return lowered in listed or self.names.is_secret(lowered)

    def secret_param(self, name: str) -> bool:
        """A URL query parameter or form field (its decoded name)."""
        return name.lower() in self.query_params or self.names.is_secret(name)

    @cached_property
    def own_patterns(self) -> tuple[SecretPattern, ...]:
        """Patterns from a rules file: no literals known, always searched."""
        return tuple(p for p in self.patterns if not p.builtin)

    @cached_property
    def _literal_groups(self) -> tuple[tuple[str, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]], ...]:
        """The built-in literals grouped by the rarer characters they hold
        (``_``, ``-``, ``.``, space): (those characters, exact literals,
        case-folding literals with the lower-cased spellings of what they
        match). A group is only looked for when the text holds its characters
        at all: a long base64 text (an image) holds none of them, which spares
        a pass over it for most literals."""
        groups: dict[str, tuple[dict[str, None], dict[str, tuple[str, ...]]]] = {}
        for pattern in self.patterns:
            for literal in pattern.literals:
                key = literal.lower() if pattern.fold_case else literal
                needs = "".join(c for c in _RARE_CHARACTERS if c in key)
                exact, folded = groups.setdefault(needs, ({}, {}))
                if pattern.fold_case:
                    folded[key] = fold_spellings(key)
                else:
                    exact[key] = None
        return tuple(
            (needs, tuple(exact), tuple(folded.items())) for needs, (exact, folded) in groups.items()
        )

    @cached_property
    def _pattern_literals(self) -> tuple[tuple[SecretPattern, tuple[str, ...]], ...]:
        return tuple((p, tuple(lit.lower() if p.fold_case else lit for lit in p.literals)) for p in self.patterns)

    def may_match(self, text: str) -> bool:
        """False only when no pattern can match ``text`` (or any string whose
        characters appear verbatim in it, such as the JSON spelling of a value)."""
        if self.own_patterns:
            return True
        lowered: str | None = None
        for needs, exact, folded in self._literal_groups:
            if needs and any(c not in text for c in needs):
                continue
            if len(text) >= _CHECK_CHARACTERS_FROM:
                exact = _possible(text, exact)
            if any(literal in text for literal in exact):
                return True
            if folded:
                if lowered is None:
                    lowered = text.lower()
                if any(spelling in lowered for _, spellings in folded for spelling in spellings):
                    return True
        return False

    def candidates(self, text: str) -> list[SecretPattern]:
        """The patterns that may match ``text``: a rules file's, and the
        built-in ones whose literal it holds (each literal looked for once;
        a case-folding one in every spelling ``(?i:...)`` matches)."""
        present: set[str] = set()
        lowered: str | None = None
        for needs, exact, folded in self._literal_groups:
            if needs and any(c not in text for c in needs):
                continue
            if len(text) >= _CHECK_CHARACTERS_FROM:
                exact = _possible(text, exact)
            present.update(literal for literal in exact if literal in text)
            if folded:
                if lowered is None:
                    lowered = text.lower()
                present.update(key for key, spellings in folded if any(s in lowered for s in spellings))
        if not present:
            return list(self.own_patterns)
        return [p for p, keys in self._pattern_literals if not keys or any(k in present for k in keys)]

    def builtin_starts(self, text: str) -> Iterator[int]:
        """Where the built-in patterns' matches start in ``text``."""
        for pattern in self.candidates(text):
            if pattern.builtin:
                for m in pattern.regex.finditer(text):
                    yield m.start()

    def extended(self, other: Mapping[str, Any], where: str) -> RedactionRules:
        """These rules plus the ones of a parsed rules file (see docs/redaction.md)."""
        allowed = {"headers", "request_headers", "response_headers", "query_params", "json_paths", "patterns",
                   "secret_names", "not_secret_names"}
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
            names=self.names.extended(
                _strings(other, "secret_names", where), _strings(other, "not_secret_names", where)
            ),
        )


def _possible(text: str, literals: tuple[str, ...]) -> tuple[str, ...]:
    """The ``literals`` whose every character a long ``text`` holds: one
    ``memchr`` each, which returns at once in most texts and spares the
    substring search over a long run of one character (64 MiB of ``-``, where
    every position ends like ``sk-``)."""
    return tuple(literal for literal in literals if all(char in text for char in literal))


# Texts at least this long have their literals ruled out by character first.
_CHECK_CHARACTERS_FROM = 64 * 1024


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
        """``url`` without userinfo, credential query parameters and key-shaped values."""
        names = _Names(self.rules)
        named = names.url(url, shapes=True)
        return _Pass(self.rules, strings=True, values=names.sent.matcher()).url(named)

    def redact_request(self, request: Request) -> Request:
        out = self.redact_interaction(Interaction(request=request))
        return out.request

    def redact_response(self, response: Response) -> Response:
        out = self.redact_interaction(Interaction(request=Request("GET", ""), response=response))
        assert out.response is not None
        return out.response

    def redact_interaction(self, interaction: Interaction) -> Interaction:
        """A redacted copy: by name first, then every value removed by name
        (and every key-shaped value of the request's URL and headers)
        wherever else it appears, and every key shape."""
        response, wrapped = _unwrap_chunks(interaction.response)
        names = _Names(self.rules)
        named = names.interaction(replace(interaction, response=response))
        out = self._pass_for(named, names.sent.matcher(), names.streams).interaction(named)
        return replace(out, response=_rewrap_chunks(out.response, wrapped))

    def redact_cassette(self, cassette: Cassette) -> Cassette:
        return Cassette(
            interactions=[self.redact_interaction(i) for i in cassette.interactions],
            path=cassette.path,
            meta=_Pass(self.rules, strings=True).value(dict(cassette.meta)),
        )

    def _pass_for(
        self, interaction: Interaction, values: ValueMatcher | None, streams: Mapping[str, list[Leaves]]
    ) -> _Pass:
        """The by-value-and-shape pass. It skips the per-string search when no
        string of the interaction can match: its distinct strings, joined in
        long runs, hold no pattern's literal and no sent value.

        Stream items are left out of that test: their strings are joined
        per channel anyway (a value split over events is in no single
        string), and the joined texts tell whether the items deserve the
        per-string search (``item_strings``, with the items' own event names,
        ids and frame headers). Headers redacted by name are left out too:
        they hold placeholders by now, and an ``authorization: Bearer
        <redacted>`` in every request would otherwise send every interaction
        down the slow path."""
        data = interaction.to_dict()
        for section, listed in (
            ("request", self.rules.request_headers),
            ("response", self.rules.response_headers),
        ):
            headers = (data.get(section) or {}).get("headers")
            if headers:
                data[section]["headers"] = {
                    k: v for k, v in headers.items() if not self.rules.secret_header(k, listed)
                }
        response = data.get("response") or {}
        for stream in ("events", "lines", "frames"):
            response.pop(stream, None)
        if isinstance(response.get("websocket"), dict):
            response["websocket"].pop("messages", None)

        def found(text: str) -> bool:
            return self.rules.may_match(text) or (values is not None and values.search(text))

        # The strings themselves, not a JSON spelling of them: JSON spells a
        # control character in six (a 64 MiB body of NUL bytes became 384 MB
        # to search), and each distinct string is searched once.
        strings = secret_scan.any_match(secret_scan.collect(data).texts, found)
        meta = "\n".join(_item_metadata(interaction.response))
        return _Pass(self.rules, strings=strings, values=values, streams=streams, item_strings=found(meta))

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
        found: list[tuple[int, Finding]] = []
        # Which literals the text holds, looked for in its distinct lines (no
        # literal spans a line; a cassette repeats most of its lines, and a
        # line of base64 rules most literals out at once); the patterns then
        # search the whole text, as a match may span lines.
        if len(text) < secret_scan.LONG:
            candidates = self.rules.candidates(text)
        else:
            present: set[int] = set()
            for joined, _ in secret_scan.runs(dict.fromkeys(text.split("\n"))):
                present.update(id(p) for p in self.rules.candidates(joined))
            candidates = [p for p in self.rules.patterns if id(p) in present]
        lowered: list[str] = []
        for pattern in candidates:
            # Matches come in order: count the lines between them, not from the top each time.
            line, counted = 1, 0
            for m in _finditer(pattern, text, lowered):
                line += text.count("\n", counted, m.start())
                counted = m.start()
                found.append((m.start(), Finding(f"line {line}", pattern.name, mask(m.group(pattern.group)))))
        return [f for _, f in sorted(found, key=lambda item: item[0])]

    def _secrets_in(self, text: str) -> Iterator[tuple[str, str]]:
        # Pattern by pattern, in the rules' order (the order findings are
        # reported in); a pattern whose literal ``text`` lacks cannot match.
        for pattern in self.rules.candidates(text):
            for m in pattern.regex.finditer(text):
                yield pattern.name, m.group(pattern.group)

    def _scan_data(self, value: Any, path: tuple[Any, ...]) -> Iterator[Finding]:
        """Findings by field path. The distinct strings are searched first, in
        long runs (:mod:`llmock_proxy.cassette.secret_scan`); the tree is
        walked with paths only when one of them holds something, and then
        only the strings that do are looked at again."""
        strings = secret_scan.collect(value, self._header_hit)
        flagged = secret_scan.matching(strings.texts, self.rules.builtin_starts)
        own = self.rules.own_patterns
        if own:
            flagged.update(t for t in strings.texts if any(p.regex.search(t) for p in own))
        decoded = {text for text in strings.base64 if any(self._secrets_in(_latin1(text) or ""))}
        if not (flagged or decoded or strings.header_hit):
            return
        for leaf_path, leaf, is_key in _leaves(value, path):
            in_headers = not is_key and len(leaf_path) >= 2 and leaf_path[-2] == "headers"
            if leaf in flagged or in_headers or (leaf in decoded and not is_key and leaf_path[-1] == "base64"):
                yield from self._leaf_findings(leaf_path, leaf, is_key)

    def _leaf_findings(self, leaf_path: tuple[Any, ...], leaf: str, is_key: bool) -> Iterator[Finding]:
        """What the scan reports about one string of a tree: key shapes in it
        (and, under ``base64``, in what it decodes to), and a sensitive header
        whose value is not a placeholder."""
        where: str | None = None

        def named() -> str:
            # A path may pass through a key-shaped mapping key: never print it.
            shown = tuple(
                mask(part) if isinstance(part, str) and any(self._secrets_in(part)) else part
                for part in leaf_path
            )
            return format_path(shown) + (" (a mapping key)" if is_key else "")

        texts = [leaf]
        if leaf_path and leaf_path[-1] == "base64" and not is_key:
            decoded = _latin1(leaf)
            if decoded is not None:
                texts.append(decoded)
        for text in texts:
            for rule, secret in self._secrets_in(text):
                where = where or named()
                yield Finding(where, rule, mask(secret))
        if not is_key and len(leaf_path) >= 2 and leaf_path[-2] == "headers":
            section = str(leaf_path[-3]) if len(leaf_path) >= 3 else ""
            name = str(leaf_path[-1]).lower()
            if self._header_hit(section, name, leaf):
                yield Finding(where or named(), "sensitive header", mask(leaf))

    def _header_hit(self, section: str, name: str, value: str) -> bool:
        """A header of a request or response (``name`` lower-cased) that is
        sensitive but holds more than its placeholder."""
        sensitive = {"request": self.rules.request_headers, "response": self.rules.response_headers}.get(
            section, frozenset()
        )
        secret = name in sensitive or (section in ("request", "response") and self.rules.names.is_secret(name))
        return secret and _header_placeholder(name, value) != value


def _finditer(pattern: SecretPattern, text: str, lowered: list[str]) -> Iterator[re.Match[str]]:
    """``pattern.regex.finditer(text)``. A case-insensitive pattern that
    starts with its literal is only tried where ``text.lower()`` (computed
    once into ``lowered``) holds the literal: the regex engine has no fast way
    to skip to a case-insensitive literal, ``str.find`` has one to a plain
    one. Positions agree when lower-casing kept the length (it does but for
    a dotted capital I)."""
    if not (pattern.anchored and pattern.fold_case):
        yield from pattern.regex.finditer(text)
        return
    if not lowered:
        lowered.append(text.lower())
    if len(lowered[0]) != len(text):
        yield from pattern.regex.finditer(text)
        return
    starts: set[int] = set()
    for literal in pattern.literals:
        for spelling in fold_spellings(literal):
            at = lowered[0].find(spelling)
            while at >= 0:
                starts.add(at)
                at = lowered[0].find(spelling, at + 1)
    end = 0
    for start in sorted(starts):
        if start >= end:
            m = pattern.regex.match(text, start)
            if m is not None:
                yield m
                end = max(m.end(), start + 1)


def _latin1(text: str) -> str | None:
    """A base64 value decoded, as Latin-1 (one character per byte), or None."""
    try:
        return base64.b64decode(text, validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return None


Leaves = list[tuple[tuple[Any, ...], str]]
_Item = TypeVar("_Item", SSEEvent, NDJSONLine, EventStreamFrame, WSMessage)
_FORM = "application/x-www-form-urlencoded"
# Query strings and form bodies: "&" separates pairs, and so does ";" (an
# older convention servers still accept).
_PAIR_SEPARATORS = re.compile(r"([&;])")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#@]*)@")
_COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})


def _content_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return str(value).split(";", 1)[0].strip().lower()
    return ""


@dataclass
class _Names:
    """Stage one: redaction by name (headers, query and form parameters,
    userinfo, subprotocol keys, JSON fields, JSON paths). Every value it
    removes goes into ``sent``, for stage two to remove wherever else it
    appears; so do the key-shaped values of the request's URL and headers."""

    rules: RedactionRules
    sent: SentValues = field(default_factory=SentValues)
    # The strings of every stream item after this stage, per stream ("events",
    # "lines", "frames", "messages"): stage two joins them per channel.
    streams: dict[str, list[Leaves]] = field(default_factory=dict)

    # -- URLs and pairs --------------------------------------------------------------

    def url(self, url: str, *, shapes: bool = False) -> str:
        m = _USERINFO.match(url)
        if m is not None:
            user, _, password = m.group(2).partition(":")
            self.sent.add(unquote(password))
            self.sent.add(unquote(user))
            url = m.group(1) + url[m.end() :]
        head, hash_mark, fragment = url.partition("#")
        base, question, query = head.partition("?")
        if shapes:
            self._shapes(base)
        out = base + question + self.pairs(query) + hash_mark + self.pairs(fragment)
        if shapes:
            self._shapes(query + fragment)
        return out

    def pairs(self, text: str) -> str:
        """A query string, fragment or form body with credential values replaced."""
        if "=" not in text:
            return text
        parts = _PAIR_SEPARATORS.split(text)
        return "".join(part if i % 2 else self._pair(part) for i, part in enumerate(parts))

    def _pair(self, pair: str) -> str:
        name, equals, value = pair.partition("=")
        if not (equals and value) or not self.rules.secret_param(unquote_plus(name)):
            return pair
        self.sent.add_query_value(value)
        return f"{name}={URL_PLACEHOLDER}"

    # -- headers -----------------------------------------------------------------------

    def headers(self, headers: Mapping[str, str], listed: frozenset[str], *, shapes: bool = False) -> dict[str, str]:
        out = {}
        for name, raw in headers.items():
            value = str(raw)
            lowered = name.lower()
            if self.rules.secret_header(lowered, listed):
                for part in credential_parts(value):
                    self.sent.add(part)
                if lowered in _COOKIE_HEADERS:
                    for pair in value.split(";"):
                        self.sent.add(pair.partition("=")[2])
                out[name] = _header_placeholder(lowered, value)
            elif lowered == "sec-websocket-protocol":
                out[name] = self._subprotocols(value, listed)
            else:
                out[name] = value
                if shapes:
                    self._shapes(value)
        return out

    def _subprotocols(self, value: str, listed: frozenset[str]) -> str:
        """``realtime, openai-insecure-api-key.<key>``: a browser's only way
        to send a key with a WebSocket upgrade is a subprotocol name."""
        out = []
        for item in value.split(","):
            name, dot, secret = item.strip().partition(".")
            if dot and secret and self.rules.secret_header(name, listed):
                self.sent.add(secret)
                out.append(f"{name}.{PLACEHOLDER}")
            else:
                out.append(item.strip())
        return ", ".join(out)

    def _shapes(self, text: str) -> None:
        for pattern in self.rules.candidates(text):
            for m in pattern.regex.finditer(text):
                self.sent.add(m.group(pattern.group) or m.group(0))

    # -- bodies --------------------------------------------------------------------------

    def json(self, value: Any, leaves: Leaves | None = None) -> Any:
        """``value`` redacted by JSON path and by name; with ``leaves``, the
        strings of the result are collected there (stage two joins a
        stream's strings without walking it again)."""
        for path in self.rules.json_paths:
            value = path.redact(value, self.sent.add)
        return self._named(value, (), leaves)

    def _named(self, value: Any, path: tuple[Any, ...], leaves: Leaves | None) -> Any:
        """``value`` with every string under a credential name replaced (a
        copy where it changed, the same object where it did not)."""
        kind = type(value)
        if kind is dict:
            is_secret = self.rules.names.is_secret
            out: dict[Any, Any] | None = None
            for key, child in value.items():
                if type(key) is str and is_secret(key) and not is_model_token(key, value):
                    new = self._all_strings(child)
                elif leaves is None and type(child) is not dict and type(child) is not list:
                    continue
                else:
                    new = self._named(child, path + (key,) if leaves is not None else path, leaves)
                if new is not child:
                    if out is None:
                        out = dict(value)
                    out[key] = new
            return value if out is None else out
        if kind is list:
            out_list: list[Any] | None = None
            for index, child in enumerate(value):
                if leaves is None and type(child) is not dict and type(child) is not list:
                    continue
                new = self._named(child, path + (index,) if leaves is not None else path, leaves)
                if new is not child:
                    if out_list is None:
                        out_list = list(value)
                    out_list[index] = new
            return value if out_list is None else out_list
        if kind is str and value and leaves is not None:
            leaves.append((path, value))
        return value

    def _all_strings(self, value: Any) -> Any:
        """Every string inside ``value`` replaced (numbers, booleans and null
        stay: ``{"secret_expires_at": 0}`` tells nothing)."""
        if isinstance(value, str):
            if not value or value == PLACEHOLDER:
                return value
            self.sent.add(value)
            return PLACEHOLDER
        if isinstance(value, dict):
            new = {k: self._all_strings(v) for k, v in value.items()}
            return value if all(new[k] is v for k, v in value.items()) else new
        if isinstance(value, list):
            items = [self._all_strings(v) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value

    def text(self, text: str, content_type: str = "", leaves: Leaves | None = None) -> str:
        """A text body or item: form fields by name; JSON in text form by name and path."""
        out = self._text(text, content_type)
        if leaves is not None and out:
            leaves.append(((), out))
        return out

    def _text(self, text: str, content_type: str) -> str:
        if content_type == _FORM:
            return self.pairs(text)
        if text.lstrip()[:1] not in ("{", "["):
            return text
        try:
            parsed = json.loads(text)
            redacted = self.json(parsed)
        except (ValueError, RecursionError):
            return text
        return text if redacted is parsed else compact_json(redacted)

    def payload(self, payload: Payload, content_type: str = "", leaves: Leaves | None = None) -> Payload:
        if payload.kind == "json":
            value = self.json(payload.value, leaves)
            return payload if value is payload.value else Payload("json", value)
        if payload.kind == "text":
            text = self.text(str(payload.value), content_type, leaves)
            return payload if text == payload.value else Payload("text", text)
        return payload  # binary: searched by value and shape in stage two

    # -- models ----------------------------------------------------------------------

    def request(self, request: Request) -> Request:
        headers = self.headers(request.headers, self.rules.request_headers, shapes=True)
        return replace(
            request,
            url=self.url(request.url, shapes=True),
            headers=headers,
            body=None if request.body is None else self.payload(request.body, _content_type(request.headers)),
        )

    def response(self, response: Response) -> Response:
        return replace(
            response,
            headers=self.headers(response.headers, self.rules.response_headers),
            body=None if response.body is None else self.payload(response.body, _content_type(response.headers)),
            events=None if response.events is None else self._items("events", response.events, self.event),
            lines=None if response.lines is None else self._items("lines", response.lines, self.line),
            frames=None if response.frames is None else self._items("frames", response.frames, self.frame),
            websocket=None if response.websocket is None else self.websocket(response.websocket),
        )

    def interaction(self, interaction: Interaction) -> Interaction:
        return replace(
            interaction,
            request=self.request(interaction.request),
            response=None if interaction.response is None else self.response(interaction.response),
        )

    def _items(self, stream: str, items: list[_Item], redact: Callable[[_Item, Leaves], _Item]) -> list[_Item]:
        out, per_item = [], []
        for item in items:
            leaves: Leaves = []
            out.append(redact(item, leaves))
            per_item.append(leaves)
        self.streams[stream] = per_item
        return out

    def event(self, event: SSEEvent, leaves: Leaves) -> SSEEvent:
        data = event.data
        if isinstance(data, (dict, list)):
            data = self.json(data, leaves)
        elif isinstance(data, str):
            data = self.text(data, leaves=leaves)
        return event if data is event.data else replace(event, data=data)

    def line(self, line: NDJSONLine, leaves: Leaves) -> NDJSONLine:
        data = self.json(line.data, leaves)
        return line if data is line.data else replace(line, data=data)

    def frame(self, frame: EventStreamFrame, leaves: Leaves) -> EventStreamFrame:
        payload = self.payload(frame.payload, leaves=leaves)
        return frame if payload is frame.payload else replace(frame, payload=payload)

    def message(self, message: WSMessage, leaves: Leaves) -> WSMessage:
        payload = self.payload(message.payload, leaves=leaves)
        return message if payload is message.payload else replace(message, payload=payload)

    def websocket(self, session: WebSocketSession) -> WebSocketSession:
        return replace(session, messages=self._items("messages", session.messages, self.message))


@dataclass(frozen=True)
class _Pass:
    """Stage two: one walk over the models removing every value stage one
    found (``values``) and every key shape. With ``strings`` off the
    per-string search is skipped (the caller proved nothing can match
    anywhere); stream items are searched put back together either way."""

    rules: RedactionRules
    strings: bool
    values: ValueMatcher | None = None
    # Stage one's strings of each stream's items (see _Names.streams).
    streams: Mapping[str, list[Leaves]] = field(default_factory=dict)
    # The stream items' own metadata (SSE event names, ids, comments, frame
    # headers) may hold something: search the items string by string.
    item_strings: bool = True

    # -- strings and values ------------------------------------------------------------

    def text(self, text: str, placeholder: str = PLACEHOLDER) -> str:
        if not self.strings:
            return text
        if self.values is not None:
            text = self.values.sub(text, placeholder)
        if not self.rules.may_match(text):
            return text
        # Only the patterns whose literal the text holds: a search over a
        # long text is skipped for the others.
        for pattern in self.rules.candidates(text):
            if pattern.regex.search(text) is not None:
                text = _substitute(pattern, text, placeholder)
        return text

    def value(self, value: Any) -> Any:
        """The search applied to every string inside a JSON-like value (a copy)."""
        if not self.strings:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def payload(self, payload: Payload) -> Payload:
        if payload.kind == "json":
            return Payload("json", self.value(payload.value))
        if payload.kind == "text":
            return Payload("text", self.text(str(payload.value)))
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
        redacted = _Pass(self.rules, strings=True, values=self.values).text(text)
        if redacted == text:
            return value
        return base64.b64encode(redacted.encode("latin-1")).decode("ascii")

    def url(self, url: str) -> str:
        return self.text(url, URL_PLACEHOLDER)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {name: self.text(str(value)) for name, value in headers.items()}

    # -- streams ---------------------------------------------------------------------

    def _find(self, text: str) -> list[tuple[int, int]]:
        """Where ``text`` holds a sent value or a key shape (the replaced span)."""
        spans = list(self.values.spans(text)) if self.values is not None else []
        for pattern in self.rules.candidates(text):
            for m in pattern.regex.finditer(text):
                group = pattern.group if m.group(pattern.group) is not None else 0
                spans.append(m.span(group))
        return spans

    def _may_find(self, text: str) -> bool:
        return (self.values is not None and self.values.search(text)) or self.rules.may_match(text)

    def across(self, stream: str, docs: list[Any], channels: list[Any] | None = None) -> tuple[list[Any], _Pass]:
        """Stream items' documents with what their joined strings hold
        removed, and the pass for the items one by one (searching strings
        only when a channel's text or the items' metadata may hold something)."""
        leaves = self.streams.get(stream)
        if leaves is not None and len(leaves) != len(docs):
            leaves = None  # not what stage one saw: walk the documents
        out, hit = redact_across(
            docs, channels or [None] * len(docs), self._find, PLACEHOLDER, leaves, self._may_find
        )
        strings = hit or self.item_strings
        return out, self if strings == self.strings else replace(self, strings=strings)

    def events(self, events: list[SSEEvent]) -> list[SSEEvent]:
        docs, each = self.across("events", [e.data for e in events])
        return [each.event(e if d is e.data else replace(e, data=d)) for e, d in zip(events, docs, strict=True)]

    def lines(self, lines: list[NDJSONLine]) -> list[NDJSONLine]:
        docs, each = self.across("lines", [x.data for x in lines])
        return [each.line(x if d is x.data else replace(x, data=d)) for x, d in zip(lines, docs, strict=True)]

    def frames(self, frames: list[EventStreamFrame]) -> list[EventStreamFrame]:
        docs, each = self.across("frames", [_document(f.payload) for f in frames])
        return [each.frame(f if d is None or d is f.payload.value else replace(f, payload=Payload(f.payload.kind, d)))
                for f, d in zip(frames, docs, strict=True)]

    def messages(self, messages: list[WSMessage]) -> list[WSMessage]:
        docs, each = self.across("messages", [_document(m.payload) for m in messages], [m.from_client for m in messages])
        return [
            replace(m, payload=each.payload(m.payload if d is None or d is m.payload.value
                                            else Payload(m.payload.kind, d)))
            for m, d in zip(messages, docs, strict=True)
        ]

    # -- models ----------------------------------------------------------------------

    def request(self, request: Request) -> Request:
        return replace(
            request,
            url=self.url(request.url),
            headers=self.headers(request.headers),
            body=None if request.body is None else self.payload(request.body),
        )

    def response(self, response: Response) -> Response:
        events, lines, frames = response.events, response.lines, response.frames
        return replace(
            response,
            headers=self.headers(response.headers),
            body=None if response.body is None else self.payload(response.body),
            events=None if events is None else self.events(events),
            lines=None if lines is None else self.lines(lines),
            frames=None if frames is None else self.frames(frames),
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
            data = self.value(data)
        elif isinstance(data, str):
            data = self.text(data)
        return replace(
            event,
            data=data,
            event=None if event.event is None else self.text(event.event),
            id=None if event.id is None else self.text(event.id),
            comment=None if event.comment is None else self.text(event.comment),
        )

    def line(self, line: NDJSONLine) -> NDJSONLine:
        return replace(line, data=self.value(line.data))

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
            messages=self.messages(session.messages),
            subprotocol=None if session.subprotocol is None else self.text(session.subprotocol),
            close=close,
        )


def _item_metadata(response: Response | None) -> Iterator[str]:
    """The strings of stream items outside their data: SSE event names, ids
    and comments, EventStream string headers."""
    if response is None:
        return
    for event in response.events or ():
        for text in (event.event, event.id, event.comment):
            if text:
                yield text
    for frame in response.frames or ():
        for value in frame.headers.values():
            if isinstance(value, str):
                yield value


def _document(payload: Payload) -> Any:
    """What a stream item's strings are searched in (not binary payloads)."""
    return payload.value if payload.kind in ("json", "text") else None


def _unwrap_chunks(response: Response | None) -> tuple[Response | None, dict[int, tuple[str, Any]]]:
    """Bedrock's ``InvokeModelWithResponseStream`` frames carry each model
    event as ``{"bytes": <base64 of its JSON>}``. They are redacted decoded
    (names, values, shapes, and the stream put back together) and encoded
    again by :func:`_rewrap_chunks`; ``wrapped`` keeps each frame's original
    text and decoded value, so an untouched chunk keeps its exact bytes."""
    if response is None or not response.frames:
        return response, {}
    wrapped: dict[int, tuple[str, Any]] = {}
    frames = list(response.frames)
    for index, frame in enumerate(frames):
        value = frame.payload.value
        if frame.payload.kind != "json" or not isinstance(value, dict) or not isinstance(value.get("bytes"), str):
            continue
        try:
            inner = json.loads(base64.b64decode(value["bytes"], validate=True))
        except (binascii.Error, ValueError, RecursionError):
            continue
        if isinstance(inner, (dict, list)) and not _deeper_than(inner, _MAX_CHUNK_DEPTH):
            wrapped[index] = (value["bytes"], inner)
            frames[index] = replace(frame, payload=Payload("json", {**value, "bytes": inner}))
    if not wrapped:
        return response, {}
    return replace(response, frames=frames), wrapped


# How deep a decoded Bedrock chunk may nest to be redacted as JSON (the
# walkers recurse per level; deeper chunks stay base64, searched as text).
_MAX_CHUNK_DEPTH = 200


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            if level >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _rewrap_chunks(response: Response | None, wrapped: dict[int, tuple[str, Any]]) -> Response | None:
    if response is None or not wrapped or response.frames is None:
        return response
    frames = list(response.frames)
    for index, (original, inner) in wrapped.items():
        value = frames[index].payload.value
        if not isinstance(value, dict):
            continue
        now = value.get("bytes")
        text = original if now == inner else base64.b64encode(compact_json(now).encode("utf-8")).decode("ascii")
        frames[index] = replace(frames[index], payload=Payload("json", {**value, "bytes": text}))
    return replace(response, frames=frames)


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
