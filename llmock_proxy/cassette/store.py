"""Cassette files on disk: parse, load and save (through the redaction scan),
and finding cassette and fixture files under the paths a user names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import Cassette
from llmock_proxy.cassette.parse_cache import ParseCache
from llmock_proxy.cassette.redact import Redactor
from llmock_proxy.cassette.schema import validate_cassette
from llmock_proxy.errors import CassetteError


class _FromEnvironment:
    """``parse``/``load`` default: the parse cache the environment configures."""


FROM_ENVIRONMENT = _FromEnvironment()


def parse(
    text: str | bytes,
    path: str | Path | None = None,
    *,
    cache: ParseCache | None | _FromEnvironment = FROM_ENVIRONMENT,
) -> Cassette:
    """Parse and validate cassette YAML. Raises :class:`CassetteError` naming
    the file, the interaction index and the field of every problem.

    ``cache`` is a :class:`~llmock_proxy.cassette.parse_cache.ParseCache` (None: no
    cache; default: the one the environment configures). A cache hit skips
    only the YAML parse: validation and the model build run on every load.
    """
    where = str(path) if path is not None else "<cassette>"
    if isinstance(cache, _FromEnvironment):
        cache = ParseCache.from_environment()
    raw = _cache_input(text) if cache is not None else None
    # The three passes build or walk one large tree of fresh objects: the
    # cyclic GC has nothing to free there and would rescan it again and again.
    with yamlio.gc_paused():
        data: Any = cache.get(raw) if cache is not None and raw is not None else None
        parsed_now = data is None
        if parsed_now:
            try:
                data = yamlio.loads(text)
            except Exception as exc:  # yaml.YAMLError and decoding errors
                raise CassetteError(f"{where}: not valid YAML: {exc}", path=where) from None
        validate_cassette(data, where)
        try:
            cassette = Cassette.from_dict(data, Path(path) if path is not None else None)
        except CassetteError as exc:
            raise CassetteError(str(exc), path=where) from None
        if parsed_now and cache is not None and raw is not None:
            # Only data that validated and built: a broken file is not worth keeping.
            cache.put(raw, data)
        return cassette


def _cache_input(text: str | bytes) -> bytes | None:
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not a file's bytes anyway
        return None


def dumps(cassette: Cassette) -> str:
    """The cassette as YAML text (no redaction scan: :func:`save` writes files)."""
    with yamlio.gc_paused():
        return yamlio.dumps(cassette.to_dict())


def load(
    path: str | Path, *, cache: ParseCache | None | _FromEnvironment = FROM_ENVIRONMENT
) -> Cassette:
    """Read, parse and validate one cassette file (see :func:`parse`)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CassetteError(f"{p}: cannot read: {exc.strerror}", path=str(p)) from None
    return parse(raw, p, cache=cache)


def save(cassette: Cassette, path: str | Path | None = None, *, redactor: Any = None) -> Path:
    """Redact-scan and atomically write ``cassette``.

    Every cassette write in the project goes through here, and so through the
    redaction choke point: a file that still holds a key-shaped value is
    refused (:class:`llmock_proxy.cassette.redact.SecretFound`) and nothing is written.
    """

    target = Path(path) if path is not None else cassette.path
    if target is None:
        raise ValueError("cassette has no path to save to")
    redactor = redactor or Redactor.default()
    text = redactor.checked_dump(cassette, where=str(target))
    yamlio.atomic_write_text(target, text)
    cassette.path = target
    return target


CASSETTE_SUFFIXES = (".yaml", ".yml")


FIXTURE_SUFFIXES = (".json",)


# -- sources -------------------------------------------------------------------


def expand(paths: Iterable[str | Path], suffixes: Sequence[str]) -> list[Path]:
    """Files named directly, plus every file with one of ``suffixes`` under the
    directories named (recursively, sorted, hidden files skipped)."""
    return [path for path, _ in expand_with_origin(paths, suffixes)]


def expand_with_origin(paths: Iterable[str | Path], suffixes: Sequence[str]) -> list[tuple[Path, bool]]:
    """(file, named directly) pairs, see :func:`expand`."""
    out: list[tuple[Path, bool]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                (f, False)
                for f in sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and f.suffix.lower() in suffixes
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
        elif p.is_file():
            out.append((p, True))
        else:
            raise CassetteError(f"{p}: no such file or directory", path=str(p))
    return out


def is_other_document(path: Path, key: str) -> bool:
    """A readable YAML/JSON mapping without ``key``: some other kind of file
    (a schema, a config) that merely shares the directory. Unreadable files
    are not "other": a broken cassette must be reported, not skipped."""
    try:
        data = yamlio.load_file(path)  # JSON is YAML
    except Exception:
        return False
    return not isinstance(data, dict) or key not in data
