"""Which names hold credentials: headers, query parameters, JSON and form fields.

A credential travels under a name more often than in a recognisable shape:
``x-portkey-api-key: 3f9c...``, ``?auth=...``, ``{"credentials": {"password":
...}}``. Listing every gateway's header is a losing game, so names are judged
by what they look like. A name is first *normalised*, so one glob covers the
spellings of one idea (``X-Api-Token``, ``x_api_token``, ``xApiToken`` and
``X-API-Token`` all become ``x_api_token``):

* a lower-case letter or digit followed by an upper-case one, or an acronym
  followed by a capitalised word, gets an ``_`` between them (camelCase);
* everything is lower-cased;
* runs of ``-``, ``.``, spaces and ``_`` become one ``_``.

It is a credential name when it matches one of the ``secret`` globs
(shell-style, :mod:`fnmatch`) and none of the ``not_secret`` ones. The
allow-list is what keeps LLM traffic readable: ``*token*`` would otherwise
take ``max_tokens``, ``prompt_tokens_details`` or ``x-ratelimit-remaining-tokens``.

One context rule sits beside the globs (:func:`is_model_token`): a ``token``
field next to a log-probability (``logprob``, ``logProbability``,
``likelihood``) is a piece of model output (OpenAI, Gemini and Cohere
log-probabilities), not a credential.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

# Globs over normalised names whose values are credentials. ``sig`` and
# ``signature`` are not here: in a JSON body they are model output (Anthropic
# thinking blocks, Gemini ``thoughtSignature``) that a replay must send back;
# as URL query parameters they are in the query defaults.
DEFAULT_SECRET_NAMES: tuple[str, ...] = (
    "*token*",
    "*secret*",
    "*password*",
    "*passwd*",
    "*passphrase*",
    "*api_key*",
    "*apikey*",
    "*access_key*",
    "*private_key*",
    "*credential*",
    "*cookie*",
    "auth",
    "*_auth",
    "authorization",
    "*_authorization",
)

# Globs over normalised names that match a secret glob but name no secret:
# token counts and limits, their details objects, tokenizers, pagination
# cursors, OAuth's token_type, CORS headers (access-control-allow-credentials).
DEFAULT_NOT_SECRET_NAMES: tuple[str, ...] = (
    "*tokens",
    "*tokens_*",
    "*token_count",
    "*token_counts",
    "*token_details",
    "*token_limit",
    "*token_budget",
    "*token_id",
    "*token_ids",
    "*token_type",
    "*token_strings",
    "*token_likelihoods",
    "*token_logprobs",
    "tokenizer*",
    "*_tokenizer*",
    "*page_token",
    "*next_token",
    "*continuation_token",
    "access_control_*",
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[-.\s_]+")
# Sibling keys (normalised) that make a ``token`` field model output.
_PROBABILITY = re.compile(r"logprob|log_probability|likelihood")
# Names remembered per rules object; more distinct names than this (a hostile
# body with random keys) are judged again each time instead of growing memory.
_MEMO_LIMIT = 8192


def normalize(name: str) -> str:
    """The form the globs are matched against: ``X-API-Token`` -> ``x_api_token``."""
    return _SEPARATORS.sub("_", _CAMEL.sub("_", name).lower())


def _union(globs: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(g.lower()) for g in globs]
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


@dataclass(frozen=True)
class NameRules:
    """The credential-name globs and their allow-list (both over normalised names)."""

    secret: tuple[str, ...] = DEFAULT_SECRET_NAMES
    not_secret: tuple[str, ...] = DEFAULT_NOT_SECRET_NAMES

    @cached_property
    def _secret_regex(self) -> re.Pattern[str] | None:
        return _union(self.secret)

    @cached_property
    def _allowed_regex(self) -> re.Pattern[str] | None:
        return _union(self.not_secret)

    @cached_property
    def _memo(self) -> dict[str, bool]:
        return {}

    def is_secret(self, name: str) -> bool:
        """Whether values under ``name`` are credentials."""
        memo = self._memo
        known = memo.get(name)
        if known is not None:
            return known
        normal = normalize(name)
        secret = self._secret_regex is not None and self._secret_regex.match(normal) is not None
        if secret and self._allowed_regex is not None and self._allowed_regex.match(normal) is not None:
            secret = False
        if len(memo) < _MEMO_LIMIT:
            memo[name] = secret
        return secret

    def explain(self, name: str) -> str:
        """Why ``name`` is or is not a credential name, naming the glob: for
        tests and for a person writing a rules file."""
        normal = normalize(name)
        hit = next((g for g in self.secret if fnmatch.fnmatchcase(normal, g.lower())), None)
        if hit is None:
            return f"{name!r} ({normal}) matches no secret name"
        allowed = next((g for g in self.not_secret if fnmatch.fnmatchcase(normal, g.lower())), None)
        if allowed is not None:
            return f"{name!r} ({normal}) matches secret name {hit!r} but also not-secret name {allowed!r}"
        return f"{name!r} ({normal}) is a secret name: {hit!r}"

    def extended(self, secret: Iterable[str], not_secret: Iterable[str]) -> NameRules:
        return NameRules(self.secret + tuple(secret), self.not_secret + tuple(not_secret))


def is_model_token(name: str, mapping: Mapping[str, Any]) -> bool:
    """A ``token`` field beside a log-probability: a token the model produced."""
    if normalize(name) != "token":
        return False
    return any(isinstance(k, str) and _PROBABILITY.search(normalize(k)) for k in mapping)


__all__ = ["DEFAULT_NOT_SECRET_NAMES", "DEFAULT_SECRET_NAMES", "NameRules", "is_model_token", "normalize"]
