"""What every provider module offers, and the types they exchange.

A provider module tells one API family's story top to bottom:

* ``detect``     – is this (method, host, path) one of mine?
* ``canonical``  – the wire request -> :class:`CanonicalRequest`
* ``summarize``  – the recorded response (any wire form) -> :class:`Summary`
* ``render``     – a :class:`Summary` -> a :class:`Response` in this family's
                   wire form, streaming or not (replay synthesis)
* ``error``      – an error :class:`Response` in this family's own envelope

and the grammar generic code (drift, replay) must never guess:

* ``stream_item_type``     – the type of one stream element or WebSocket message
* ``categorical_fields``   – fields whose *values* are part of the contract
* ``free_form_fields``     – fields holding the caller's own data (tool
                             arguments, JSON schemas), whose inside is no shape
* ``usage_objects`` / ``usage_fields`` – token counters (values, not shape)
* ``credential_schemes``   – which environment variables hold its credential,
                             and how a request carries it (a header, or SigV4)
* ``render_options``       – what the client asked about the wire form
                             (usage chunks, embedding encoding)

Providers know no mitmproxy, no sockets and no YAML: they work on the
cassette models (:mod:`llmock_proxy.cassette`), whose stream elements are
already decoded by :mod:`llmock_proxy.wire`.

The helpers below are the decisions several families share (how a path is
recognised, how a tool call in the function form reads, how text is cut into
deltas, how a stable id is derived); what differs per API stays in its module.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from llmock_proxy import nesting
from llmock_proxy.canonical import (
    CanonicalRequest,
    Message,
    Summary,
    Tool,
    ToolCall,
    ToolResult,
    canonical_json,
)
from llmock_proxy.cassette.model import Request, Response, compact_json
from llmock_proxy.errors import RequestShapeError


@dataclass(frozen=True)
class RenderOptions:
    """How a synthesized stream is cut up. Timing is the engine's business."""

    chunk_size: int = 0  # characters of text per delta; 0 = family default
    # Embedding encoding the client asked for ("float" or "base64").
    encoding_format: str = "float"
    # Whether a streamed answer ends with a usage chunk: OpenAI chat sends
    # one (with empty choices) only when stream_options.include_usage is set.
    include_usage: bool = True
    # The request's content fingerprint when the caller has it already (the
    # matcher took it): ids are derived from it, and it is not taken twice.
    content_fingerprint: str | None = None
    # The answer's part of the id seed when the caller has it spelled already
    # (a fixture's summary, spelled once for all its renders).
    answer_key: str | None = None
    # The ids to use instead of deriving them from the seed: an answer
    # template renders with markers in their place (see
    # :mod:`llmock_proxy.replay.answer_templates`).
    ids: Any = None

    def replaced(self, **changes: Any) -> RenderOptions:
        """A copy with ``changes``: what ``dataclasses.replace`` makes, at a
        fifth of its cost (every hand-written answer pays for one or two)."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"RenderOptions has no {', '.join(sorted(unknown))}")
        copy = object.__new__(RenderOptions)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def with_content_fingerprint(self, fingerprint: str) -> RenderOptions:
        """A copy with the request's content fingerprint."""
        return self.replaced(content_fingerprint=fingerprint)


@dataclass(frozen=True)
class SigV4:
    """AWS Signature Version 4: the request is signed rather than given a header."""

    service: str  # the signing name ("bedrock")
    # The endpoint's region when its host names one; else the first of region_env.
    region: str | None = None
    region_env: tuple[str, ...] = ("AWS_REGION", "AWS_DEFAULT_REGION")
    session_env: tuple[str, ...] = ("AWS_SESSION_TOKEN",)


@dataclass(frozen=True)
class CredentialScheme:
    """One way a family's requests carry a credential taken from the environment."""

    env: tuple[str, ...]  # variables tried in order
    header: str = "authorization"
    prefix: str = "Bearer "  # the header's value is prefix + the variable's value
    # The API answers without one (a local Ollama).
    optional: bool = False
    # Signed instead of carrying a header: env[0] is the access key id and
    # env[1] the secret access key, both required.
    sigv4: SigV4 | None = None


# Fields whose values are part of every API's contract.
COMMON_CATEGORICAL_FIELDS = frozenset({"type", "object", "role", "status"})
# Fields whose inside is the caller's data in the families' answers: tool-call
# arguments (``arguments``, ``input``, ``args``), JSON schemas the caller sent
# (``parameters``, ``input_schema``, ``schema``, ``properties``), ``metadata``.
COMMON_FREE_FORM_FIELDS = frozenset(
    {"input", "args", "arguments", "parameters", "input_schema", "schema", "properties", "metadata"}
)


def _shape_checked(
    canonical: Callable[[Provider, Request], CanonicalRequest],
) -> Callable[[Provider, Request], CanonicalRequest]:
    """``canonical`` raising :class:`~llmock_proxy.errors.RequestShapeError`
    instead of the TypeError, KeyError ... a reader meets in a body of the
    wrong shape (or RecursionError in one nested too deep)."""
    if getattr(canonical, "_shape_checked", False):
        return canonical

    @functools.wraps(canonical)
    def checked(self: Provider, request: Request) -> CanonicalRequest:
        try:
            return canonical(self, request)
        except RequestShapeError:
            raise
        except (TypeError, ValueError, LookupError, AttributeError, RecursionError) as exc:
            raise RequestShapeError(
                f"{self.family}: the request body is not this API's shape ({type(exc).__name__}: {exc})"[:500]
            ) from exc

    checked._shape_checked = True  # type: ignore[attr-defined]
    return checked


class Provider:
    """Base class; subclasses set ``family`` and override what their API needs.

    Every subclass's ``canonical`` raises only
    :class:`~llmock_proxy.errors.RequestShapeError` for a body it cannot read,
    whatever its reader tripped on (see :meth:`__init_subclass__`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("canonical")
        if own is not None:
            cls.canonical = _shape_checked(own)  # type: ignore[method-assign,assignment]

    family: str = "generic"
    # Wire form of this family's streaming responses: "sse", "ndjson",
    # "eventstream" or "websocket".
    stream_form: str = "sse"
    # The default ``detect``: this method, and a path ending in one of these.
    http_method: str = "POST"
    path_endings: tuple[str, ...] = ()

    def detect(self, method: str, host: str, path: str) -> bool:
        # The end of the path decides, so a base URL in front (a gateway, a
        # local server's prefix) does not matter.
        return method == self.http_method and path.rstrip("/").endswith(self.path_endings)

    def canonical(self, request: Request) -> CanonicalRequest:
        raise NotImplementedError

    def summarize(self, request: Request, response: Response) -> Summary:
        raise NotImplementedError

    def render(
        self,
        summary: Summary,
        request: CanonicalRequest,
        *,
        stream: bool,
        options: RenderOptions = RenderOptions(),
    ) -> Response:
        raise NotImplementedError

    def error(
        self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        """An error answer in this family's envelope; ``code`` goes where the
        envelope has a code field (OpenAI's ``error.code``), else nowhere."""
        raise NotImplementedError

    def is_stream_request(self, request: Request) -> bool:
        """Whether the client asked for a stream (body flag, path or query)."""
        return self.canonical(request).stream

    # -- grammar: what drift and replay ask instead of guessing -----------------

    # Fields whose values are part of the contract: a new value is drift.
    categorical_fields: frozenset[str] = COMMON_CATEGORICAL_FIELDS
    # Fields whose structure depends on the request, not the API.
    free_form_fields: frozenset[str] = COMMON_FREE_FORM_FIELDS
    # Token counters are values, and APIs leave some out when there is
    # nothing to count: objects holding counters, and counters found anywhere.
    usage_objects: frozenset[str] = frozenset({"usage"})
    usage_fields: frozenset[str] = frozenset()

    def stream_item_type(self, payload: Any, name: str | None = None, *, fallback: str = "message") -> str:
        """The type of one stream element (SSE event, NDJSON line, EventStream
        frame) or WebSocket message: ``name`` is the label the wire gave it
        (the SSE ``event:``, the EventStream ``:event-type``), ``payload`` its
        parsed data; ``fallback`` when neither names one.

        Drift compares the elements of one type with each other, so the type
        must not change when the API adds a field: a family reads it from the
        one place its API puts it. The default: the wire's label, else the
        payload's ``type`` or ``object``."""
        if name:
            return name
        if isinstance(payload, dict):
            for key in ("type", "object"):
                value = payload.get(key)
                if isinstance(value, str):
                    return value
        elif payload == "[DONE]":
            return "[DONE]"
        return fallback

    def is_usage_path(self, path: str) -> bool:
        """Whether a field path (``usage.prompt_tokens``,
        ``events.done.prompt_eval_count``) names one of this family's token counters."""
        parts = [part.removesuffix("[]") for part in path.split(".")]
        return bool(parts) and (
            parts[-1] in self.usage_fields or any(part in self.usage_objects for part in parts[:-1])
        )

    def credential_schemes(self, request: Request) -> tuple[CredentialScheme, ...]:
        """How a (recorded) request of this family authenticates, first choice
        first; none when the family needs no credential or has no known one."""
        return ()

    def error_detail(self, request: Request, response: Response) -> dict[str, Any] | None:
        """What an error answer says in this family's envelope (``type``,
        ``message``); None when the answer is not one the family knows."""
        return self.summarize(request, response).error

    def render_options(self, request: Request, options: RenderOptions = RenderOptions()) -> RenderOptions:
        """``options`` with what the client asked about the wire form (the bytes,
        not the meaning, so none of it is in the canonical request)."""
        return options

    def embedding_dimensions(self, request: CanonicalRequest) -> int | None:
        """How long each vector of an embedding answer to ``request`` is when
        nothing else says (the length the client asked for, else the family's
        usual one); None for a family that does not embed."""
        return None


# -- reading requests ------------------------------------------------------------


def split_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(host, path, query) of an absolute URL or a bare path."""
    host, path, query = _split_url(url)
    return host, path, dict(query)


@functools.lru_cache(maxsize=512)
def _split_url(url: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    # A replay sees the same few URLs over and over: each is read once.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # a host urllib refuses ("[" unclosed): the path still tells the API
        scheme = url.find("://")
        rest = url[scheme + 3 :] if scheme >= 0 else url
        slash = rest.find("/")
        parts, host = urlsplit("http://x" + (rest[slash:] if slash >= 0 else "/")), ""
    return host, parts.path or "/", tuple(parse_qsl(parts.query))


def request_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, {} when it has none or is not JSON."""
    if request.body is None:
        return {}
    if request.body.kind == "json":
        return request.body.value if isinstance(request.body.value, dict) else {}
    if request.body.kind == "text":
        try:
            value = nesting.loads(request.body.value)
        except ValueError:  # not JSON, or too deep to read (TooDeep)
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def object_at(container: Any, key: str) -> dict[str, Any]:
    """The JSON object under ``key`` of ``container``; {} when either is not an object."""
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, dict) else {}


def parse_arguments(value: Any) -> Any:
    """Tool-call arguments as data: providers send JSON strings or objects."""
    if isinstance(value, str):
        try:
            return nesting.loads(value) if value.strip() else {}
        except ValueError:
            return value
    return value


def text_of(content: Any) -> str:
    """Concatenated text of a content value: a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(part) for part in content)
    if isinstance(content, dict):
        for key in ("text", "input_text", "output_text", "content"):
            if key in content and isinstance(content[key], (str, list)):
                return text_of(content[key])
    return ""


def _named_functions(entries: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(entry, function) of each entry in the function form whose function
    has a name; anything else is left out."""
    for entry in entries or []:
        function = entry.get("function") if isinstance(entry, dict) else None
        if isinstance(function, dict) and function.get("name"):
            yield entry, function


def function_tools(entries: Any) -> list[Tool]:
    """Tools in the function form ``[{type: function, function: {name,
    description, parameters}}]``."""
    return [
        Tool(name=str(function["name"]), description=function.get("description"), parameters=function.get("parameters"))
        for _, function in _named_functions(entries)
    ]


def function_tool_calls(entries: Any) -> list[ToolCall]:
    """Calls in the function form ``[{id?, function: {name, arguments}}]``,
    the arguments a JSON string or an object."""
    return [
        ToolCall(name=str(function["name"]), arguments=parse_arguments(function.get("arguments")), id=entry.get("id"))
        for entry, function in _named_functions(entries)
    ]


def turn_messages(role: str, text: str, calls: list[ToolCall], results: list[ToolResult]) -> list[Message]:
    """One turn of an API whose tool results travel inside a user turn, as
    canonical messages.

    Tool results answer the previous assistant turn: like the families with a
    ``tool`` role they form a ``tool`` message, and any text beside them
    follows as the user's.
    """
    if results:
        messages = [Message(role="tool", tool_results=results)]
        if text:
            messages.append(Message(role="user", text=text))
        return messages
    return [Message(role=role, text=text, tool_calls=calls)]


# -- reading responses -------------------------------------------------------------


class StreamedToolCalls:
    """Tool calls whose arguments stream in as pieces of JSON text, keyed by
    the index of the block that carries them."""

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}
        self._pieces: dict[int, list[str]] = {}

    def start(self, index: int, call: ToolCall, first_piece: str = "") -> None:
        self._calls[index] = call
        self._pieces[index] = [first_piece]

    def add(self, index: int, piece: str) -> None:
        self._pieces.setdefault(index, []).append(piece)

    def finish(self) -> list[ToolCall]:
        """The calls in index order, each with its pieces joined and parsed."""
        calls = []
        for index in sorted(self._calls):
            call = self._calls[index]
            call.arguments = parse_arguments("".join(self._pieces.get(index, [])))
            calls.append(call)
        return calls


def token_counts(usage: dict[str, Any] | None) -> tuple[int, int]:
    """(input tokens, output tokens) of a usage mapping in any family's spelling."""
    if not isinstance(usage, dict):
        return 0, 0
    return _first_count(usage, _PROMPT_KEYS), _first_count(usage, _COMPLETION_KEYS)


_PROMPT_KEYS = ("prompt_tokens", "input_tokens", "promptTokenCount", "prompt_eval_count", "inputTokens")
_COMPLETION_KEYS = ("completion_tokens", "output_tokens", "candidatesTokenCount", "eval_count", "outputTokens")


def _first_count(usage: dict[str, Any], keys: tuple[str, ...]) -> int:
    """The first of ``keys`` that holds a number (not a bool), as an int; else 0."""
    for key in keys:
        value = usage.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return 0


# -- rendering answers ---------------------------------------------------------------


def chunk_text(text: str, size: int, default: int) -> list[str]:
    """``text`` cut into the pieces a stream sends it in, ``size`` characters
    each; a size of 0 (the fixture does not say) means the family's ``default``."""
    size = size if size > 0 else default
    return [text[i : i + size] for i in range(0, len(text), size)]


def arguments_json(arguments: Any, *, spaced: bool = False) -> str:
    """Tool-call arguments as the JSON string the wire carries them in: a
    string is sent as it is, no arguments as ``{}``. OpenAI spells the JSON
    compactly; ``spaced`` is ``json.dumps``' default spelling, as Cohere and
    Bedrock send it."""
    if isinstance(arguments, str):
        return arguments
    value = {} if arguments is None else arguments
    return json.dumps(value, ensure_ascii=False) if spaced else compact_json(value)


# The longest embedding an answer is made up for: a request asking for more
# is refused (a vector of millions of numbers would only exhaust memory).
MAX_EMBEDDING_DIMENSIONS = 100_000


def asked_dimensions(value: Any, default: int) -> int:
    """The vector length a request's ``dimensions`` field asks for: ``default``
    when it says none, 0 (a length no answer has) when it is not a whole number."""
    if value is None:
        return default
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def deterministic_embedding(text: str, dimensions: int) -> list[float]:
    """A unit-length vector that depends only on ``text``, as real embedding
    APIs answer unit-length vectors; its values are float32-exact, so an
    answer as floats and one as base64 float32 carry the same numbers."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dimensions]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return list(array("f", (v / norm for v in values)))


def json_digest(value: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``value``'s canonical
    JSON: a short name for content, the same on every run."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def json_uuid(*parts: Any) -> str:
    """A UUID derived from ``parts``, for ids the API spells as UUIDs: the same
    answer gets the same id, so every replay of it is identical."""
    return str(uuid.UUID(hex=json_digest(list(parts), 32)))


# -- what an answer says, for every family's renderer ------------------------------

# Finish reasons in OpenAI's vocabulary, the one a hand-written answer (an
# llmock fixture's ``finishReason``) speaks; each family translates these and
# passes its own (a recorded summary's) through.
OPENAI_FINISH_REASONS = frozenset({"stop", "tool_calls", "length", "content_filter"})


def answer_parts(summary: Summary) -> list[str | int]:
    """What an answer says, in the order it says it: text segments (``str``)
    and tool calls (``int``, the index in ``summary.tool_calls``).

    ``summary.segments`` when it gives an order (an llmock fixture's
    ``blocks``), else the text, then every call. Empty text is left out; a
    call the segments do not name follows at the end, so none is lost.
    """
    calls = len(summary.tool_calls)
    if not summary.segments:
        return ([summary.text] if summary.text else []) + list(range(calls))
    parts: list[str | int] = []
    named: set[int] = set()
    for segment in summary.segments:
        if isinstance(segment, str):
            if segment:
                parts.append(segment)
        elif isinstance(segment, int) and not isinstance(segment, bool) and 0 <= segment < calls:
            if segment not in named:
                named.add(segment)
                parts.append(segment)
    return parts + [index for index in range(calls) if index not in named]


def token_total(usage: dict[str, Any] | None) -> int:
    """The total a usage mapping gives in any family's spelling, else input
    plus output (the total is derived when a hand-written answer leaves it out)."""
    if isinstance(usage, dict):
        for key in ("total_tokens", "totalTokenCount", "totalTokens"):
            value = usage.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return int(value)
    prompt, completion = token_counts(usage)
    return prompt + completion
