"""JSON Schemas (draft 2020-12) for cassette files and llmock fixture files.

``cassette.schema.json`` describes a cassette exactly as
:meth:`llmock_proxy.cassette.model.Cassette.to_dict` writes it;
``fixtures.schema.json`` accepts llmock fixture files unchanged.

:func:`validate_cassette` and :func:`validate_fixture_file` raise
:class:`~llmock_proxy.cassette.CassetteError` listing *every* problem, each
naming the file, the interaction (or fixture) index and the field path::

    cassettes/x.yaml: interactions[3].response.events[7].t: 'abc' is not of type 'number'

Speed: ``jsonschema`` walks a document at roughly half a millisecond per
recorded interaction, as slow as parsing the YAML itself. So each schema is
also compiled once into plain Python predicates (:class:`_Compiler`) that
answer "valid or not" about ten times faster. Valid documents (the normal
case) are settled by that check alone; an invalid one is handed to
``jsonschema``, which stays the authority for *what* is wrong and produces the
messages. The compiler refuses any keyword it does not implement, so the two
cannot silently disagree about a schema; the tests compare their verdicts on
generated documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from llmock_proxy.errors import CassetteError, format_path

CASSETTE_SCHEMA = "cassette.schema.json"


FIXTURES_SCHEMA = "fixtures.schema.json"


# How many characters of a bad value a message shows.
_SHOWN_CHARS = 60


# -- loading --------------------------------------------------------------------


def schema(name: str) -> dict[str, Any]:
    """A fresh copy of a schema document shipped with the package (to publish
    or inspect; validation uses the compiled form cached by :func:`_checker`)."""
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class _SchemaChecker:
    """One schema, compiled twice: a fast yes/no predicate and the reference
    ``jsonschema`` validator that explains failures."""

    is_valid: Callable[[Any], bool]
    reference: jsonschema.protocols.Validator

    def errors(self, data: Any) -> list[ValidationError]:
        if self.is_valid(data):
            return []
        return list(self.reference.iter_errors(data))


@cache  # one compiled checker per schema file, built on first use
def _checker(name: str) -> _SchemaChecker:
    document = schema(name)
    validator_class = jsonschema.validators.validator_for(document)
    validator_class.check_schema(document)
    return _SchemaChecker(is_valid=_Compiler(document).compile_root(), reference=validator_class(document))


# -- public API -------------------------------------------------------------------


def cassette_problems(data: Any, where: str) -> list[str]:
    """Every schema problem of a parsed cassette document, as messages."""
    if not isinstance(data, dict):
        got = "the file is empty" if data is None else f"the file holds {_show(data)}"
        return [f"{where}: {got}; expected a mapping with version and interactions"]
    return [_prefixed(where, p) for p in _describe_all(_checker(CASSETTE_SCHEMA).errors(data))]


def fixture_file_problems(data: Any, where: str) -> list[str]:
    """Every schema problem of a parsed llmock fixture file, as messages."""
    if not isinstance(data, dict):
        return [f"{where}: the file holds {_show(data)}; expected an object with a fixtures list"]
    return [f"{where}: {text}" for _, text in fixture_file_findings(data)]


def fixture_file_findings(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """The schema problems of a parsed fixture file as (path, message) pairs,
    the message starting with the path (``fixtures[2].response.error: ...``),
    so a loader can tell a fixture's problems from the file's."""
    return [(p.path, str(p)) for p in _by_location(_describe_all(_checker(FIXTURES_SCHEMA).errors(data)))]


def validate_cassette(data: Any, where: str) -> None:
    """Raise :class:`CassetteError` listing every problem of a parsed cassette."""
    _raise_if_any(cassette_problems(data, where), where)


def validate_fixture_file(data: Any, where: str) -> None:
    """Raise :class:`CassetteError` listing every problem of a parsed llmock fixture file."""
    _raise_if_any(fixture_file_problems(data, where), where)


def _raise_if_any(problems: list[str], where: str) -> None:
    if problems:
        raise CassetteError("\n".join(problems), path=where, problems=problems)


# -- messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    path: tuple[Any, ...]
    message: str

    def __str__(self) -> str:
        location = format_path(self.path)
        return f"{location}: {self.message}" if location else self.message


def _prefixed(where: str, problem: _Problem) -> str:
    return f"{where}: {problem}"


def _sort_key(problem: _Problem) -> tuple[Any, ...]:
    # Document order for indexes, then names: interactions[2] before [10].
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in problem.path)


def _by_location(problems: Iterable[_Problem]) -> list[_Problem]:
    unique: dict[tuple[tuple[Any, ...], str], _Problem] = {}
    for p in problems:
        unique.setdefault((p.path, p.message), p)
    return sorted(unique.values(), key=_sort_key)


def _describe_all(errors: Iterable[ValidationError]) -> list[_Problem]:
    return _by_location(p for error in errors for p in _describe(error))


def _describe(error: ValidationError) -> list[_Problem]:
    """One schema failure in words; a list because some failures are several."""
    path = tuple(error.absolute_path)
    subschema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    keyword = error.validator

    if "x-fields" in subschema and keyword in ("not", "oneOf"):
        if not isinstance(instance, dict):
            return []  # "required" says nothing about non-objects; the type error speaks
        return [_Problem(path, _alternative_fields_message(subschema, instance))]
    if "x-error" in subschema:
        return [_Problem(path, f"{_show(instance)} {subschema['x-error']}")]
    rule: Any = error.validator_value  # the keyword's value in the schema
    if keyword in ("anyOf", "oneOf"):
        return _describe_alternatives(error, path)
    if keyword == "type":
        return [_Problem(path, f"{_show(instance)} is not of type {_quoted_or(rule)}")]
    if keyword == "required":
        missing = [k for k in rule if isinstance(instance, dict) and k not in instance]
        return [_Problem(path, f"missing required field {k!r}") for k in missing]
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(subschema.get("properties", {}))
        extra = [k for k in instance if k not in subschema.get("properties", {})]
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return [_Problem(path + (k,), f"unknown field{hint}") for k in extra]
    if keyword == "const":
        return [_Problem(path, f"must be {_show(rule)}, got {_show(instance)}")]
    if keyword == "enum":
        choices = ", ".join(_show(v) for v in rule)
        return [_Problem(path, f"{_show(instance)} is not one of {choices}")]
    if keyword == "minLength" and rule == 1:
        return [_Problem(path, "must not be empty")]
    if keyword == "minItems" and rule == 1:
        return [_Problem(path, "must not be empty")]
    if keyword == "minimum":
        return [_Problem(path, f"{_show(instance)} is less than the minimum of {rule}")]
    if keyword == "exclusiveMinimum":
        return [_Problem(path, f"{_show(instance)} must be greater than {rule}")]
    if keyword == "maximum":
        return [_Problem(path, f"{_show(instance)} is more than the maximum of {rule}")]
    if keyword == "pattern":
        return [_Problem(path, f"{_show(instance)} does not match {rule!r}")]
    if keyword is None:  # a `false` subschema
        return [_Problem(path, "not allowed here")]
    message = error.message
    if len(message) > 200:
        message = message[:200] + "…"
    return [_Problem(path, message)]


def _alternative_fields_message(subschema: dict[str, Any], instance: Any) -> str:
    fields = list(subschema["x-fields"])
    present = [f for f in fields if isinstance(instance, dict) and f in instance]
    choices = ", ".join(fields)
    if not present:
        return f"needs one of {choices}"
    quantity = "exactly one" if subschema.get("x-exactly") else "at most one"
    return f"has {' and '.join(present)}; give {quantity} of {choices}"


def _describe_alternatives(error: ValidationError, path: tuple[Any, ...]) -> list[_Problem]:
    """anyOf/oneOf: name the allowed forms; when the value clearly picked one
    form (it has that form's key), explain what is wrong with that form."""
    value = error.validator_value  # anyOf/oneOf: the list of alternatives
    branches: list[Any] = list(value) if isinstance(value, list) else []
    instance = error.instance
    if error.validator == "oneOf" and not error.context:
        return [_Problem(path, f"matches more than one of: {_branch_titles(branches)}")]
    chosen = [
        i
        for i, branch in enumerate(branches)
        if isinstance(branch, dict)
        and isinstance(instance, dict)
        and branch.get("x-key") is not None
        and branch["x-key"] in instance
    ]
    if chosen:
        problems: list[_Problem] = []
        for sub in error.context or ():
            if sub.schema_path and sub.schema_path[0] in chosen:
                problems.extend(_describe(sub))
        if problems:
            return problems
    return [_Problem(path, f"{_show(instance)} is none of the allowed forms: {_branch_titles(branches)}")]


def _branch_titles(branches: list[Any]) -> str:
    titles = []
    for branch in branches:
        if isinstance(branch, dict) and "title" in branch:
            titles.append(str(branch["title"]))
        elif isinstance(branch, dict) and "type" in branch:
            titles.append(_quoted_or(branch["type"]))
        else:
            titles.append(json.dumps(branch)[:40])
    return "; ".join(titles)


def _quoted_or(types: Any) -> str:
    if isinstance(types, list):
        return " or ".join(repr(t) for t in types)
    return repr(types)


def _show(value: Any) -> str:
    """A bad value, short enough for one line; never a whole mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


# -- the fast predicate -------------------------------------------------------------------

Check = Callable[[Any], bool]


# Keywords that only annotate: they never change a verdict.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"}
)


_OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties"})


_SUPPORTED = _ANNOTATIONS | _OBJECT_KEYWORDS | frozenset(
    {
        "$ref",
        "type",
        "const",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "minLength",
        "pattern",
        "items",
        "minItems",
        "not",
        "anyOf",
        "oneOf",
        "allOf",
        "if",
        "then",
        "else",
    }
)


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    # As jsonschema: 3.0 is an integer, true is not.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPE_TESTS: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema means it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class _Compiler:
    """Turns a schema (the subset of 2020-12 this project uses) into nested
    closures. Local ``$ref`` only; unknown keywords are an error, not ignored."""

    def __init__(self, root: dict[str, Any]):
        self.root = root
        self._refs: dict[str, Check] = {}

    def compile_root(self) -> Check:
        return self.compile(self.root)

    def compile(self, node: Any) -> Check:
        if node is True:
            return _always
        if node is False:
            return _never
        if not isinstance(node, dict):
            raise ValueError(f"not a schema: {node!r}")
        unknown = [k for k in node if k not in _SUPPORTED and not k.startswith("x-")]
        if unknown:
            raise ValueError(f"the fast validator does not implement {unknown}")
        checks: list[Check] = []
        if "type" in node:
            checks.append(self._type(node["type"]))
        if _OBJECT_KEYWORDS & node.keys():
            checks.append(self._object(node))
        if "$ref" in node:
            checks.append(self._ref(node["$ref"]))
        for keyword, build in self._builders():
            if keyword in node:
                checks.append(build(node[keyword], node))
        return _all_of(checks)

    def _builders(self) -> list[tuple[str, Callable[[Any, dict[str, Any]], Check]]]:
        return [
            ("const", lambda v, _: lambda x: _json_equal(x, v)),
            ("enum", lambda v, _: lambda x: any(_json_equal(x, e) for e in v)),
            ("minimum", lambda v, _: lambda x: not _is_number(x) or x >= v),
            ("maximum", lambda v, _: lambda x: not _is_number(x) or x <= v),
            ("exclusiveMinimum", lambda v, _: lambda x: not _is_number(x) or x > v),
            ("minLength", lambda v, _: lambda x: not isinstance(x, str) or len(x) >= v),
            ("pattern", lambda v, _: self._pattern(v)),
            ("items", lambda v, _: self._items(v)),
            ("minItems", lambda v, _: lambda x: not isinstance(x, list) or len(x) >= v),
            ("not", lambda v, _: self._not(v)),
            ("anyOf", lambda v, _: self._any_of(v)),
            ("oneOf", lambda v, _: self._one_of(v)),
            ("allOf", lambda v, _: _all_of([self.compile(s) for s in v])),
            ("if", lambda v, node: self._if(v, node.get("then", True), node.get("else", True))),
        ]

    def _type(self, names: str | list[str]) -> Check:
        tests = [_TYPE_TESTS[n] for n in ([names] if isinstance(names, str) else names)]
        if len(tests) == 1:
            return tests[0]
        return lambda x: any(t(x) for t in tests)

    def _object(self, node: dict[str, Any]) -> Check:
        props = {name: self.compile(s) for name, s in node.get("properties", {}).items()}
        required = tuple(node.get("required", ()))
        extra = node.get("additionalProperties", True)
        extra_check = None if extra is True else self.compile(extra)

        def check(x: Any) -> bool:
            if not isinstance(x, dict):
                return True  # object keywords say nothing about other types
            for name in required:
                if name not in x:
                    return False
            for key, value in x.items():
                prop = props.get(key)
                if prop is not None:
                    if not prop(value):
                        return False
                elif extra_check is not None and not extra_check(value):
                    return False
            return True

        return check

    def _ref(self, ref: str) -> Check:
        if ref not in self._refs:
            if not ref.startswith("#/"):
                raise ValueError(f"only local $ref is supported, got {ref!r}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            compiled: list[Check] = []
            # Registered before compiling so recursive schemas terminate.
            self._refs[ref] = lambda x: compiled[0](x)
            compiled.append(self.compile(target))
            self._refs[ref] = compiled[0]
        return self._refs[ref]

    def _pattern(self, pattern: str) -> Check:
        search = re.compile(pattern).search
        return lambda x: not isinstance(x, str) or search(x) is not None

    def _items(self, schema_node: Any) -> Check:
        item = self.compile(schema_node)
        if item is _always:
            return _always
        return lambda x: not isinstance(x, list) or all(map(item, x))

    def _not(self, schema_node: Any) -> Check:
        inner = self.compile(schema_node)
        return lambda x: not inner(x)

    def _any_of(self, nodes: list[Any]) -> Check:
        checks = [self.compile(n) for n in nodes]
        return lambda x: any(c(x) for c in checks)

    def _one_of(self, nodes: list[Any]) -> Check:
        checks = [self.compile(n) for n in nodes]
        return lambda x: sum(1 for c in checks if c(x)) == 1

    def _if(self, if_node: Any, then_node: Any, else_node: Any) -> Check:
        condition, then, otherwise = self.compile(if_node), self.compile(then_node), self.compile(else_node)
        return lambda x: then(x) if condition(x) else otherwise(x)


def _all_of(checks: list[Check]) -> Check:
    checks = [c for c in checks if c is not _always]
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)
    return lambda x: all(c(x) for c in checks)
