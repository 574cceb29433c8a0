"""Where a replay session's fixtures come from: cassette files and llmock fixture
files, found under the paths given and loaded into one list."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette.store import (
    CASSETTE_SUFFIXES,
    FIXTURE_SUFFIXES,
    expand_with_origin,
    is_other_document,
)
from llmock_proxy.errors import CassetteError
from llmock_proxy.replay.encodable import unencodable
from llmock_proxy.replay.fixture import Fixture, fixture_from_interaction
from llmock_proxy.replay.llmock_format import load_fixture_file

log = logging.getLogger(__name__)


def load_cassette(path: str | Path) -> list[Fixture]:
    """Every replayable interaction of one cassette file, in recorded order.

    Interactions that never got a response (a transport failure was recorded
    instead) are skipped with a log line: there is nothing to replay. An
    answer replay could not send (:func:`~llmock_proxy.replay.encodable.unencodable`)
    refuses the file, naming every such item.
    """
    loaded = cassette_store.load(path)
    fixtures: list[Fixture] = []
    unsendable: list[str] = []
    for index, interaction in enumerate(loaded.interactions):
        source = f"{path}: interactions[{index}]"
        if interaction.response is None:
            log.info("%s: skipped, it has no response (%s)", source, interaction.error or "none recorded")
            continue
        unsendable += unencodable(interaction.response, f"{source}.response")
        fixtures.append(fixture_from_interaction(interaction, source))
    # Refused whole, not answered with an error per interaction as a broken fixture
    # is: a cassette is machine-written, so this is a hand edit, and every other
    # problem of a cassette (schema, an unreadable request) refuses the file too.
    if unsendable:
        raise CassetteError("\n".join(unsendable), path=str(path), problems=unsendable)
    return fixtures


def _load_all(
    paths: Iterable[str | Path], suffixes: Sequence[str], key: str, loader: Any, kind: str
) -> list[Fixture]:
    out: list[Fixture] = []
    for path, named in expand_with_origin(paths, suffixes):
        try:
            out.extend(loader(path))
        except CassetteError:
            if named or not is_other_document(path, key):
                raise
            log.info("%s: skipped, not %s (no top-level %r)", path, kind, key)
    return out


def load_sources(
    cassettes: Iterable[str | Path] = (),
    fixtures: Iterable[str | Path] = (),
    *,
    lenient_fixtures: bool = False,
) -> list[Fixture]:
    """All fixtures of the given cassette and fixture files/directories.

    Cassettes come first (recorded interactions are exact), then the
    hand-written fixture files; within each, files in the order given
    (directory contents sorted by path) and entries in file order. Inside a
    directory, YAML/JSON files of another kind (no ``interactions`` /
    ``fixtures`` at the top) are skipped; a file named directly must load.

    ``lenient_fixtures`` turns a fixture file's unknown or malformed
    ``match`` keys from load errors into warnings (for users migrating).
    """

    def load_fixtures(path: str | Path) -> list[Fixture]:
        return load_fixture_file(path, lenient=lenient_fixtures)

    return [
        *_load_all(cassettes, CASSETTE_SUFFIXES, "interactions", load_cassette, "a cassette"),
        *_load_all(fixtures, FIXTURE_SUFFIXES, "fixtures", load_fixtures, "an llmock fixture file"),
    ]
