"""Response shapes: what stays the same across calls to one API family.

A shape is inferred from every recording of an API family in one wire form.
It keeps what a client's parser depends on — JSON field paths and their
types, the values of categorical fields, which stream event types appear and
in which order, each event type's payload merged over every instance, status
and content type — and drops what varies on every call: texts, ids,
timestamps, token counts, how many delta events a stream had.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llmock_proxy.cassette.model import Interaction, Response
from llmock_proxy.providers._ws_common import message_json
from llmock_proxy.providers.base import Provider
from llmock_proxy.providers.catalog import grammar_of

# Which fields are categorical, which hold the caller's own data and which
# are token counters is each API family's own business: its provider says
# (``categorical_fields``, ``free_form_fields``, ``is_usage_path``), as it
# says the type of each stream element (``stream_item_type``).


def is_usage_path(family: str, path: str) -> bool:
    """Whether a finding's path names one of the family's token counters: token
    counts are values, and some APIs leave them out when they have nothing to
    count (proto3 JSON drops a zero; Ollama drops prompt_eval_count for a
    cached prompt). A counter that appears or disappears is info; one whose
    type changes is still critical."""
    return grammar_of(family).is_usage_path(path)


@dataclass(frozen=True)
class FieldRoles:
    """What a family's provider says about its fields, as a shape needs it."""

    # Fields whose values are part of the contract.
    categorical: frozenset[str] = frozenset()
    # Subtrees whose keys are the caller's data (tool arguments, JSON schemas
    # the caller sent): their inner structure depends on the request, not the API.
    free_form: frozenset[str] = frozenset()

    @classmethod
    def of(cls, provider: Provider) -> FieldRoles:
        return cls(provider.categorical_fields, provider.free_form_fields)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass
class Node:
    """The merged shape of every value seen at one place in a JSON document."""

    types: set[str] = field(default_factory=set)
    seen: int = 0  # how many times a value was present here
    as_object: int = 0  # how many of those were objects (for `required`)
    properties: dict[str, Node] = field(default_factory=dict)
    items: Node | None = None
    values: set[str] | None = None  # categorical values, when categorical
    free_form: bool = False

    def add(self, value: Any, *, key: str | None = None, roles: FieldRoles = FieldRoles()) -> None:
        self.seen += 1
        kind = json_type(value)
        self.types.add(kind)
        if key in roles.categorical and isinstance(value, str):
            if self.values is None:
                self.values = set()
            self.values.add(value)
        if key in roles.free_form:
            self.free_form = True
        if self.free_form:
            return
        if kind == "object":
            self.as_object += 1
            for name, child in value.items():
                self.properties.setdefault(name, Node()).add(child, key=name, roles=roles)
        elif kind == "array":
            for item in value:
                if self.items is None:
                    self.items = Node()
                # Array items inherit the key: a list of `type` strings is categorical too.
                self.items.add(item, key=key, roles=roles)

    @property
    def required(self) -> list[str]:
        return sorted(name for name, child in self.properties.items() if child.seen == self.as_object)


@dataclass
class StreamShape:
    """The event grammar of a stream: which types appear, in which order, with what payload."""

    samples: int = 0
    # Event types seen in every sample, and in at least one.
    always: set[str] | None = None
    ever: set[str] = field(default_factory=set)
    # How many samples put a's first occurrence before b's. An order the
    # provider has always kept is a pair seen one way and never the other.
    before: dict[tuple[str, str], int] = field(default_factory=dict)
    payloads: dict[str, Node] = field(default_factory=dict)

    def add(self, events: list[tuple[str, Any]], roles: FieldRoles = FieldRoles()) -> None:
        self.samples += 1
        firsts = first_occurrences(name for name, _ in events)
        present = set(firsts)
        self.always = present if self.always is None else self.always & present
        self.ever |= present
        for i, a in enumerate(firsts):
            for b in firsts[i + 1 :]:
                self.before[(a, b)] = self.before.get((a, b), 0) + 1
        for name, payload in events:
            self.payloads.setdefault(name, Node()).add(payload, roles=roles)

    @property
    def order(self) -> set[tuple[str, str]]:
        return {(a, b) for (a, b) in self.before if (b, a) not in self.before}


@dataclass
class Shape:
    """Everything drift compares for one API family in one wire form."""

    family: str
    form: str  # body | sse | ndjson | eventstream | websocket
    statuses: set[int] = field(default_factory=set)
    content_types: set[str] = field(default_factory=set)
    body: Node | None = None
    stream: StreamShape | None = None
    sources: list[str] = field(default_factory=list)  # "file#index" of each sample

    @property
    def key(self) -> str:
        return f"{self.family}.{self.form}"

    @property
    def provider(self) -> Provider:
        return grammar_of(self.family)

    def add(self, response: Response, source: str = "") -> None:
        self.statuses.add(response.status)
        if source:
            self.sources.append(source)
        if is_error_status(response.status):
            # An error answer has the provider's error envelope, not this
            # family's answer: its status is part of the contract, its body is not.
            return
        ctype = media_type(response.headers.get("content-type"))
        if ctype:
            self.content_types.add(ctype)
        roles = FieldRoles.of(self.provider)
        if self.form == "body":
            if response.body is not None and response.body.kind == "json":
                if self.body is None:
                    self.body = Node()
                self.body.add(response.body.value, roles=roles)
            return
        if self.stream is None:
            self.stream = StreamShape()
        self.stream.add(list(typed_events(response, self.provider)), roles)


def is_error_status(status: int) -> bool:
    return status >= 400


def media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def first_occurrences(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name, None)
    return list(seen)


def typed_events(response: Response, provider: Provider) -> Iterator[tuple[str, Any]]:
    """(event type, payload) for each element of a streamed response, the
    type as the family's provider reads it (from the SSE event name or the
    EventStream ``:event-type`` the wire gave the element, and its payload)."""
    if response.events is not None:
        for event in response.events:
            if event.comment is not None and event.data is None:
                continue  # keep-alive comments are transport, not API
            yield provider.stream_item_type(event.data, event.event, fallback="message"), event.data
    elif response.lines is not None:
        for line in response.lines:
            yield provider.stream_item_type(line.data, fallback="line"), line.data
    elif response.frames is not None:
        for frame in response.frames:
            payload = frame.payload.value if frame.payload.kind == "json" else None
            yield provider.stream_item_type(payload, frame.event_type, fallback="frame"), payload
    elif response.websocket is not None:
        for message in response.websocket.messages:
            if message.from_client:
                continue
            # JSON kept as text (a binary frame whose exact bytes were stored,
            # as Gemini Live sends them) is read as JSON too.
            payload = message_json(message)
            yield provider.stream_item_type(payload, fallback="binary" if message.binary else "text"), payload


def infer_shapes(items: Iterable[tuple[Interaction, str]]) -> dict[str, Shape]:
    """Shapes keyed by "family.form" from (interaction, source) pairs.

    Interactions without a response, incomplete ones and those without a
    family are skipped: a cut-off stream is not the provider's grammar.
    """
    shapes: dict[str, Shape] = {}
    for interaction, source in items:
        response = interaction.response
        if response is None or interaction.incomplete or interaction.error:
            continue
        family = interaction.match.get("family", "generic")
        form = response.wire_form
        shape = shapes.get(f"{family}.{form}")
        if shape is None:
            shape = shapes[f"{family}.{form}"] = Shape(family=family, form=form)
        shape.add(response, source)
    return shapes
