"""YAML reading and writing: safe loading, deterministic dumping, atomic saving.

Only the C SafeLoader (or the pure-Python SafeLoader) is ever used: cassettes
come from other people's machines and must never build Python objects. The
loader is narrowed further to JSON's data model (mappings, lists, strings,
numbers, booleans, null): an unquoted ``2024-05-01`` stays a string instead
of becoming a ``datetime``, and ``!!binary``/``!!set``/``!!python/...`` tags
are refused, so everything loaded can go back on the wire as JSON.

Hostile files are refused while they are read, with a ``yaml.YAMLError``
(which :func:`llmock_proxy.cassette.store.parse` turns into a
:class:`~llmock_proxy.errors.CassetteError` naming the file): nesting deeper
than :data:`MAX_DEPTH`, and aliases that would expand the document past
:data:`ALIAS_RATIO` times the values it spells out (at least
:data:`ALIAS_MIN_NODES`) -- a 1 KB "billion laughs" file is refused at its
first few aliases instead of being handed, as a tree of 10^9 shared leaves,
to whatever walks it next (the key scan, the parse cache, a replay).
"""

from __future__ import annotations

import gc
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmock_proxy import nesting

try:  # the C implementations are several times faster; fall back when absent
    from yaml import CSafeDumper as _BaseDumper
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how pyyaml was built
    from yaml import SafeDumper as _BaseDumper  # type: ignore[assignment]
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_JSON_TAGS = tuple(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "seq", "map")
)


class SafeLoader(_BaseLoader):  # type: ignore[misc,valid-type,unused-ignore]
    """The safe loader, restricted to JSON-compatible values."""


# Implicit resolvers are class-level tables shared with yaml.SafeLoader: copy
# before removing timestamps, so other users of PyYAML are unaffected.
SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
SafeLoader.yaml_constructors = {
    tag: ctor for tag, ctor in _BaseLoader.yaml_constructors.items() if tag in _JSON_TAGS
}


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f"the tag {node.tag!r} is not allowed: cassettes hold JSON-like data only",
        node.start_mark,
    )


SafeLoader.add_constructor(None, _refuse_tag)


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type,unused-ignore]
    """Safe dumper that writes multi-line text as block scalars and never
    emits anchors/aliases (``&id001``): a value the model shares between two
    places is written out twice, so every interaction reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: _Dumper, value: str) -> yaml.Node:
    # Block style keeps long prompts and answers readable and diff-friendly.
    # PyYAML silently falls back to quoting when a block scalar cannot hold the
    # text (trailing spaces, control characters), so this never loses data.
    if "\n" in value and len(value) > 1:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


_T = TypeVar("_T")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building or walking a large tree of fresh containers triggers the
    cyclic garbage collector over and over, for nothing (the tree has no
    cycles to free); pausing it made a 10k-interaction load about 4x faster.

    On the way out, when much was built meanwhile, it goes straight to the
    oldest generation: otherwise the first young collection after the pause
    walks every one of those objects (0.4 s after loading 10k interactions)
    and the next older one walks them again. Small pauses skip this, so the
    young garbage of the rest of the process is not promoted on every call;
    so does a process that keeps objects frozen (``gc.freeze``), as
    unfreezing would release those too."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_count()[0] > _PROMOTE_AFTER and gc.get_freeze_count() <= _FROZEN_AT_IMPORT:
                gc.freeze()  # every tracked object to the permanent generation...
                gc.unfreeze()  # ...and back into the oldest one; young counts start at 0
            gc.enable()


# Containers created during a pause above which they are promoted (a walk of
# this many costs a few milliseconds; a 100-interaction cassette builds ~22k).
_PROMOTE_AFTER = 100_000

# What was frozen before this module was imported is the interpreter's own
# (CPython 3.12 starts with its immortal built-in tuples frozen; 3.11 and 3.13
# with none): only objects frozen after that mean a process keeps them frozen.
_FROZEN_AT_IMPORT = gc.get_freeze_count()


def _without_gc(work: Callable[[], _T]) -> _T:
    with gc_paused():
        return work()


def loads(text: str | bytes) -> Any:
    """Parse one YAML document into plain data (dict, list, str, int, float, bool, None).

    Cassette loads keep this function's results in the parse cache, keyed by
    the input bytes: a change that makes some input parse differently must
    bump :data:`llmock_proxy.cassette.parse_cache.CACHE_FORMAT`."""
    return _without_gc(lambda: _JsonBuilder(text).build())


# Deeper nesting is refused: libyaml slows down quadratically on it, and
# PyYAML's own C composer overflows the C stack (a crash, not an error).
# Newer PyYAML/libyaml releases refuse flow nesting past 1000 in their
# scanner, which reads up to 1024 characters ahead of the events we see; when
# the parser fails, _flow_depth_error says whether nesting was the reason, so
# the refusal is ours whichever release is installed. The bound is the one
# every file shares (see llmock_proxy.nesting: what walks the tree later recurses).
MAX_DEPTH = nesting.MAX_DOCUMENT_DEPTH

# Aliases give the anchored value again, shared, so loading a "billion laughs"
# file is cheap and everything that walks it afterwards is not. Counted in
# values (each mapping, list and scalar one) as if every alias were written
# out: aliases may add at most this many times the values the file spells
# out itself, or ALIAS_MIN_NODES when that is more. Hand-written files that
# reuse a block of headers or tools stay far below.
ALIAS_RATIO = 10
ALIAS_MIN_NODES = 100_000


class _JsonBuilder:
    """Builds values straight from the parser's events with an explicit stack.

    PyYAML's loader first composes a node tree (recursively, in C: a deeply
    nested document crashes the process) and then walks it with generators;
    going from events to values directly is about twice as fast and needs no
    recursion. Semantics follow the safe loader, narrowed to JSON values:
    aliases give the anchored value again, merge keys (``<<``) are honoured,
    the last of duplicate keys wins. Aliases are bounded by what they expand
    to (:data:`ALIAS_RATIO`).
    """

    _MERGE = object()  # pending key of a mapping that is collecting a ``<<`` value
    _NO_KEY = object()

    def __init__(self, text: str | bytes):
        self._text = text
        self._loader = SafeLoader(text)
        self._anchors: dict[str, Any] = {}
        # Values each anchor stands for, written out (anchored scalars: 1).
        self._sizes: dict[str, int] = {}
        self._plain_tags: dict[str, str] = {}

    def build(self) -> Any:
        try:
            return self._build()
        except yaml.YAMLError:
            too_deep = _flow_depth_error(self._text)
            if too_deep is not None:
                raise too_deep from None
            raise

    def _build(self) -> Any:
        loader = self._loader
        try:
            loader.get_event()  # StreamStart
            if loader.check_event(yaml.StreamEndEvent):
                return None
            loader.get_event()  # DocumentStart
            value = self._document()
            loader.get_event()  # DocumentEnd
            if not loader.check_event(yaml.StreamEndEvent):
                event: Any = loader.get_event()
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream",
                    None,
                    "but found another document",
                    event.start_mark,
                )
            return value
        finally:
            loader.dispose()

    def _document(self) -> Any:
        get_event = self._loader.get_event
        # One frame per open collection: [container, pending key, anchor, merges, values before it].
        stack: list[list[Any]] = []
        # Values so far as if every alias were written out, and those aliases add.
        values = expanded = 0
        top: list[Any] | None = None
        # Plain scalars repeat a lot (keys, small numbers, true/null): each
        # distinct spelling is resolved and constructed once. The values are
        # immutable, so sharing them is safe.
        plain_values: dict[str, Any] = {}
        no_key, merge = self._NO_KEY, self._MERGE
        scalar_event, mapping_start = yaml.ScalarEvent, yaml.MappingStartEvent
        while True:
            event: Any = get_event()  # the parser's events: attributes by kind
            kind = event.__class__
            if kind is scalar_event:
                values += 1
                if event.anchor is not None or event.tag is not None:
                    value = self._scalar(event)
                elif not event.implicit[0]:
                    value = event.value  # quoted or block: text
                else:
                    value = plain_values.get(event.value, _UNDEFINED)
                    if value is _UNDEFINED:
                        value = plain_values[event.value] = self._scalar(event)
            elif kind is mapping_start or kind is yaml.SequenceStartEvent:
                if event.tag is not None:
                    self._check_collection_tag(event, _MAP_TAG if kind is mapping_start else _SEQ_TAG)
                if len(stack) >= MAX_DEPTH:
                    raise self._error(f"nested deeper than {MAX_DEPTH} levels", event)
                if event.anchor is not None:
                    self._anchors[event.anchor] = _IN_PROGRESS
                container: Any = {} if kind is mapping_start else []
                top = [container, no_key, event.anchor, None, values]
                values += 1
                stack.append(top)
                continue
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                container, _, anchor, merges, before = stack.pop()
                value = self._merged(container, merges, event) if merges else container
                if anchor is not None:
                    self._anchors[anchor] = value
                    self._sizes[anchor] = values - before
                top = stack[-1] if stack else None
            elif kind is yaml.AliasEvent:
                value = self._anchors.get(event.anchor, _UNDEFINED)
                if value is _UNDEFINED:
                    raise self._error(f"found undefined alias {event.anchor!r}", event)
                if value is _IN_PROGRESS:
                    raise self._error("a recursive alias cannot be JSON data", event)
                size = self._sizes.get(event.anchor, 1)
                values += size
                expanded += size
                allowed = max(ALIAS_MIN_NODES, ALIAS_RATIO * (values - expanded))
                if expanded > allowed:
                    raise self._error(
                        f"aliases expand to more than {allowed} values ({ALIAS_RATIO} times what the file "
                        f"spells out, at least {ALIAS_MIN_NODES}): refused as an alias bomb",
                        event,
                    )
            else:  # pragma: no cover - the parser emits nothing else inside a document
                raise self._error(f"unexpected {kind.__name__}", event)

            if top is None:
                return "<<" if value is merge else value
            container = top[0]
            if top[1] is no_key and container.__class__ is dict:
                if value.__class__ in (dict, list):
                    raise self._error("a mapping or list cannot be a mapping key", event)
                top[1] = value
                continue
            if value is merge:  # ``<<`` anywhere but in key position is text
                value = "<<"
            if container.__class__ is list:
                container.append(value)
            elif top[1] is merge:
                top[3] = (top[3] or []) + self._merge_sources(value, event)
                top[1] = no_key
            else:
                container[top[1]] = value
                top[1] = no_key

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        text = event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:
                tag = _STR_TAG  # quoted or block text: what the resolver would say
            else:
                # Plain scalars repeat a lot (keys, small numbers): resolve each once.
                tag = self._plain_tags.get(text)
                if tag is None:
                    tag = self._plain_tags[text] = self._loader.resolve(
                        yaml.ScalarNode, text, event.implicit
                    )
        if tag == _STR_TAG:
            value: Any = text
        elif tag == _MERGE_TAG:
            return self._MERGE  # a ``<<`` key; _document deals with it
        else:
            value = self._typed(tag, event)
        if event.anchor is not None:
            self._anchors[event.anchor] = value
            self._sizes.pop(event.anchor, None)  # a scalar: one value
        return value

    def _typed(self, tag: str, event: yaml.ScalarEvent) -> Any:
        text = event.value
        # Fast paths for the common spellings; YAML 1.1 oddities (octal 012,
        # 0x1F, 1_000, .inf, 1:30 sexagesimal) go to PyYAML's constructors.
        if tag == _INT_TAG and text.isdigit() and (text[0] != "0" or text == "0") and len(text) < 19:
            return int(text)
        if tag == _FLOAT_TAG and text[:1].isdigit() and text.isascii() and ":" not in text:
            try:
                return float(text)
            except ValueError:
                pass
        start: Any = event.start_mark  # the C parser's Mark is a class of its own
        end: Any = event.end_mark
        node = yaml.ScalarNode(tag, text, start, end, event.style)
        constructors = self._loader.yaml_constructors
        try:
            value = (constructors.get(tag) or constructors[None])(self._loader, node)
            if value.__class__ is int and value.bit_length() > _INT_BITS:
                str(value)  # 0x... of thousands of digits: one that cannot be written out again is refused
        except (ValueError, OverflowError) as exc:  # e.g. an integer of more digits than Python converts
            raise self._error(f"cannot read {text[:40]!r} as {tag.rsplit(':', 1)[-1]}: {exc}", event) from None
        return value

    def _check_collection_tag(self, event: Any, expected: str) -> None:
        if event.tag is not None and event.tag not in ("!", expected):
            node = yaml.ScalarNode(event.tag, "", event.start_mark, event.end_mark)
            self._loader.yaml_constructors[None](self._loader, node)

    def _merge_sources(self, value: Any, event: Any) -> list[dict[Any, Any]]:
        # As PyYAML: with a list of mappings, earlier ones win over later ones.
        sources = [value] if isinstance(value, dict) else list(reversed(value)) if isinstance(value, list) else None
        if sources is None or not all(isinstance(s, dict) for s in sources):
            raise self._error("a merge key (<<) needs a mapping or a list of mappings", event)
        return sources

    @staticmethod
    def _merged(own: Any, merges: list[dict[Any, Any]], event: Any) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for source in merges:
            out.update(source)
        out.update(own)
        return out

    @staticmethod
    def _error(problem: str, event: Any) -> yaml.constructor.ConstructorError:
        return yaml.constructor.ConstructorError(None, None, problem, event.start_mark)


_IN_PROGRESS = object()
_UNDEFINED = object()
# Integers up to this many bits always have a decimal spelling Python will write.
_INT_BITS = 10_000


def _flow_depth_error(text: str | bytes) -> yaml.constructor.ConstructorError | None:
    """Our refusal, at the line where flow collections (``[``, ``{``) first nest
    deeper than :data:`MAX_DEPTH`, or None when they never do. Only called on
    a failed parse, so a rough scan is enough: quoted scalars and comments are
    skipped, brackets inside other text count."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = line = column = 0
    quote = ""
    previous = "\n"
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'" and previous in " \t\n[{,:-":  # a quote opens a scalar only at its start
            quote = char
        elif char == "#" and previous in " \t\n":
            newline = text.find("\n", index)
            index = len(text) if newline < 0 else newline
            continue
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                mark = yaml.Mark("<input>", index, line, column, "", 0)
                return yaml.constructor.ConstructorError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark
                )
        elif char in "]}":
            depth = max(depth - 1, 0)
        if char == "\n":
            line, column = line + 1, 0
        else:
            column += 1
        previous = char
        index += 1
    return None


def load_file(path: str | os.PathLike[str]) -> Any:
    with open(path, "rb") as fh:
        return loads(fh.read())


_DUMP_OPTIONS: dict[str, Any] = {
    "sort_keys": False,
    "allow_unicode": True,
    "default_flow_style": False,
    "width": 100,
}


def dumps(data: Any) -> str:
    """Deterministic YAML: mapping order is the order the model builds, never sorted
    alphabetically (so a request reads method, url, headers, body)."""
    with gc_paused():
        try:
            return _JsonEmitter().dumps(data)
        except _NotJsonData:
            # Something beyond JSON's data model (a date in hand-made meta,
            # say): PyYAML's representer knows more types.
            return yaml.dump(data, Dumper=_Dumper, **_DUMP_OPTIONS)


class _NotJsonData(TypeError):
    pass


class _JsonEmitter:
    """Feeds emitter events for JSON-like data straight to the (C) emitter.

    The output is exactly what ``yaml.dump(data, Dumper=_Dumper, ...)``
    writes (the tests compare the two), about three times faster: PyYAML
    first builds a node per value and then asks the resolver, in Python,
    whether each scalar may be written plain; here each distinct string is
    asked once and no nodes are built.
    """

    def __init__(self) -> None:
        self._out = io.StringIO()
        self._dumper = _Dumper(self._out, **_DUMP_OPTIONS)
        self._plain_ok: dict[str, bool] = {}

    def dumps(self, data: Any) -> str:
        emit = self._dumper.emit
        try:
            emit(yaml.StreamStartEvent())
            emit(yaml.DocumentStartEvent(explicit=False))
            self._value(data)
            emit(yaml.DocumentEndEvent(explicit=False))
            emit(yaml.StreamEndEvent())
        finally:
            self._dumper.dispose()
        return self._out.getvalue()

    def _value(self, data: Any) -> None:
        # An explicit stack instead of recursion: nesting depth is the data's business.
        emit = self._dumper.emit
        scalar = self._scalar
        stack: list[tuple[bool, Iterator[Any]]] = []  # (is a mapping, its iterator)
        value = data
        while True:
            if isinstance(value, dict):
                emit(yaml.MappingStartEvent(None, None, True, flow_style=False))
                stack.append((True, iter(value.items())))
            elif isinstance(value, list):
                emit(yaml.SequenceStartEvent(None, None, True, flow_style=False))
                stack.append((False, iter(value)))
            else:
                scalar(value)
            while stack:
                is_mapping, items = stack[-1]
                item: Any = next(items, _END)
                if item is _END:
                    stack.pop()
                    emit(yaml.MappingEndEvent() if is_mapping else yaml.SequenceEndEvent())
                    continue
                if is_mapping:
                    key, value = item
                    scalar(key)
                else:
                    value = item
                break
            else:
                return

    def _scalar(self, value: Any) -> None:
        kind = value.__class__
        if kind is str or (isinstance(value, str) and not isinstance(value, bool)):
            text = str(value)
            plain_ok = self._plain_ok.get(text)
            if plain_ok is None:
                plain_ok = self._plain_ok[text] = (
                    self._dumper.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG
                )
            style = "|" if "\n" in text and len(text) > 1 else None
            event = yaml.ScalarEvent(None, _STR_TAG, (plain_ok, True), text, style=style)
        elif value is None:
            event = yaml.ScalarEvent(None, _NULL_TAG, (True, False), "null")
        elif isinstance(value, bool):
            event = yaml.ScalarEvent(None, _BOOL_TAG, (True, False), "true" if value else "false")
        elif isinstance(value, int):
            event = yaml.ScalarEvent(None, _INT_TAG, (True, False), str(int(value)))
        elif isinstance(value, float):
            node = self._dumper.represent_float(float(value))
            event = yaml.ScalarEvent(None, node.tag, (True, False), node.value)
        else:
            raise _NotJsonData(type(value).__name__)
        self._dumper.emit(event)


_END = object()


NEW_FILE_MODE = 0o644


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old or the new file.

    The temp file lives in the target directory (rename is only atomic within
    one filesystem) and is fsynced before the rename, so a crash at any point
    leaves a complete file behind.

    ``mkstemp`` creates its file readable by the owner only; a cassette is
    meant to be shared, so the result keeps the mode of the file it replaces,
    or gets ``rw-r--r--`` when new.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
