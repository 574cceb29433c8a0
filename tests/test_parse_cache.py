"""The parse cache: parsed cassette YAML kept as JSON, keyed by the file's bytes.

Every test drives the real loader (:func:`llmock_proxy.cassette.store.load`) against
a real cache directory; that a load was answered from the cache is shown by
what comes back, never by spying on the code.
"""

from __future__ import annotations

import copy
import enum
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from llmock_proxy import cli
from llmock_proxy.cassette import store as cassette_store
from llmock_proxy.cassette import yamlio
from llmock_proxy.cassette.model import (
    Cassette,
    Interaction,
    Payload,
    Request,
    Response,
    SSEEvent,
)
from llmock_proxy.cassette.parse_cache import (
    CACHE_DIR_ENV,
    CACHE_FORMAT,
    CACHE_MAX_MB_ENV,
    CACHE_SWITCH_ENV,
    DEFAULT_MIN_BYTES,
    ParseCache,
    json_exact,
)
from llmock_proxy.errors import CassetteError
from llmock_proxy.replay.session import ReplaySession
from tests.test_cassette_model import cassettes


def streamed_chat(i: int) -> Interaction:
    words = [f"word{i}-{n}" for n in range(12)]
    return Interaction(
        Request("POST", "https://api.openai.com/v1/chat/completions",
                {"content-type": "application/json"},
                Payload.json({"model": "gpt-4o-mini", "stream": True,
                              "messages": [{"role": "user", "content": f"question {i}"}]})),
        Response(200, {"content-type": "text/event-stream"},
                 events=[*(SSEEvent(data={"choices": [{"index": 0, "delta": {"content": w}}]}, t=10.0 + n)
                           for n, w in enumerate(words)),
                         SSEEvent(data="[DONE]", t=30.0)]),
        match={"family": "openai.chat", "model": "gpt-4o-mini", "userMessage": f"question {i}"},
    )


def write_cassette(path: Path, count: int = 30, first: int = 0) -> bytes:
    """A saved cassette large enough to be cached; returns its bytes."""
    cassette_store.save(Cassette([streamed_chat(i) for i in range(first, first + count)]), path)
    raw = path.read_bytes()
    assert len(raw) >= DEFAULT_MIN_BYTES
    return raw


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.exists() else []


@pytest.fixture
def cache(parse_cache_dir: Path) -> ParseCache:
    """The cache the environment configures (conftest points it at a temp dir)."""
    configured = ParseCache.from_environment()
    assert configured is not None and configured.directory == parse_cache_dir
    return configured


# -- hits and misses ------------------------------------------------------------------------------


def test_first_load_writes_an_entry_and_the_next_load_reads_it(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)

    first = cassette_store.load(path)
    assert entries(cache.directory) == [cache.entry_path(raw)]
    assert first == cassette_store.load(path, cache=None)

    # Same bytes, different cached data: the next load must come from the cache.
    data = yamlio.loads(raw)
    data["interactions"][0]["match"]["userMessage"] = "only in the cache"
    assert cache.put(raw, data)
    second = cassette_store.load(path)
    assert second.interactions[0].match["userMessage"] == "only in the cache"
    assert second.interactions[1:] == first.interactions[1:]
    assert second.path == path


def test_the_key_is_the_content_not_the_path(tmp_path: Path, cache: ParseCache) -> None:
    raw = write_cassette(tmp_path / "a.yaml")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.yaml").write_bytes(raw)

    cassette_store.load(tmp_path / "a.yaml")
    loaded = cassette_store.load(tmp_path / "elsewhere" / "b.yaml")
    assert entries(cache.directory) == [cache.entry_path(raw)]
    assert loaded.path == tmp_path / "elsewhere" / "b.yaml"


def test_changed_content_is_a_miss_and_gets_its_own_entry(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "chat.yaml"
    before = write_cassette(path)
    cassette_store.load(path)

    changed = before.replace(b"question 7", b"question X")
    assert changed != before
    path.write_bytes(changed)
    loaded = cassette_store.load(path)

    assert loaded.interactions[7].match["userMessage"] == "question X"
    assert entries(cache.directory) == sorted([cache.entry_path(before), cache.entry_path(changed)])


def test_parse_of_text_uses_the_cache_too(tmp_path: Path, cache: ParseCache) -> None:
    raw = write_cassette(tmp_path / "chat.yaml")
    from_text = cassette_store.parse(raw.decode("utf-8"))
    assert entries(cache.directory) == [cache.entry_path(raw)]
    assert cassette_store.parse(raw) == from_text


def test_small_files_are_not_worth_an_entry(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "small.yaml"
    cassette_store.save(Cassette([Interaction(Request("GET", "https://example.test/"), Response(204))]), path)
    assert len(path.read_bytes()) < DEFAULT_MIN_BYTES
    cassette_store.load(path)
    assert entries(cache.directory) == []


def test_the_replay_session_and_the_validate_command_load_through_the_cache(
    tmp_path: Path, cache: ParseCache, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_cassette(tmp_path / "cassettes" / "chat.yaml")
    assert len(ReplaySession.load([tmp_path / "cassettes"])) == 30
    assert entries(cache.directory) == [cache.entry_path(raw)]
    assert cli.main(["cassette", "validate", str(tmp_path / "cassettes")]) == 0
    assert "all valid" in capsys.readouterr().out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cassette=cassettes)
def test_a_cached_load_builds_the_same_cassette(tmp_path_factory: pytest.TempPathFactory, cassette: Cassette) -> None:
    every_size = ParseCache(tmp_path_factory.mktemp("cache"), min_bytes=0)
    text = cassette_store.dumps(cassette)
    fresh = cassette_store.parse(text, cache=every_size)
    assert entries(every_size.directory) == [every_size.entry_path(text.encode())]
    assert cassette_store.parse(text, cache=every_size) == fresh == cassette_store.parse(text, cache=None)


# -- validation still runs on a hit --------------------------------------------------------------


def test_an_invalid_cache_entry_is_reported_with_file_interaction_and_field(
    tmp_path: Path, cache: ParseCache, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    data = yamlio.loads(raw)
    data["interactions"][3]["response"]["status"] = "abc"
    assert cache.put(raw, data)

    with pytest.raises(CassetteError) as caught:
        cassette_store.load(path)
    assert f"{path}: interactions[3].response.status" in str(caught.value)

    # The validate command reports it the same way, through the same loader.
    assert cli.main(["cassette", "validate", str(path)]) == 1
    assert f"{path}: interactions[3].response.status" in capsys.readouterr().out


def test_a_model_error_in_a_cache_entry_is_reported_too(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    data = yamlio.loads(raw)
    data["interactions"][2]["response"]["text"] = "a body and events at once"
    assert cache.put(raw, data)
    with pytest.raises(CassetteError, match=r"interactions\[2\]\.response"):
        cassette_store.load(path)


def test_invalid_files_are_not_cached(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    path.write_bytes(raw.replace(b"status: 200", b"status: abc", 1))
    with pytest.raises(CassetteError, match="status"):
        cassette_store.load(path)
    assert entries(cache.directory) == []


# -- a cache that cannot help never hurts ----------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda entry: b"not json at all", id="garbage"),
        pytest.param(lambda entry: entry[: len(entry) // 2], id="truncated"),
        pytest.param(lambda entry: b"", id="empty"),
        # Still valid JSON, same length: only the checksum can tell.
        pytest.param(lambda entry: entry.replace(b"question 5", b"question 6", 1), id="altered-body"),
        pytest.param(lambda entry: entry.replace(b"llmock-proxy-parse-cache %d" % CACHE_FORMAT,
                                                 b"llmock-proxy-parse-cache 99", 1), id="other-format"),
    ],
)
def test_a_corrupt_entry_is_ignored_and_rewritten(tmp_path: Path, cache: ParseCache, damage: Any) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    expected = cassette_store.load(path)
    entry = cache.entry_path(raw)
    good = entry.read_bytes()
    entry.write_bytes(damage(good))

    assert cache.get(raw) is None
    assert cassette_store.load(path) == expected
    assert entry.read_bytes() == good


def test_an_entry_that_cannot_be_read_or_replaced_is_ignored(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    cache.entry_path(raw).mkdir(parents=True)  # open() and rename both fail on a directory
    assert cassette_store.load(path) == cassette_store.load(path, cache=None)
    assert not any(p.name.startswith(".tmp-") for p in cache.directory.iterdir())


def test_a_cache_dir_that_cannot_be_created_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker / "cache"))
    path = tmp_path / "chat.yaml"
    write_cassette(path)
    assert len(cassette_store.load(path).interactions) == 30
    assert len(cassette_store.load(path).interactions) == 30


def test_a_read_only_cache_dir_still_serves_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    directory = tmp_path / "shared-cache"
    writable = ParseCache(directory)
    data = yamlio.loads(raw)
    data["meta"] = {"from": "the shared cache"}
    assert writable.put(raw, data)
    directory.chmod(0o500)
    try:
        assert cassette_store.load(path, cache=ParseCache(directory)).meta == {"from": "the shared cache"}
    finally:
        directory.chmod(0o700)


def test_the_environment_can_turn_the_cache_off(
    tmp_path: Path, parse_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chat.yaml"
    write_cassette(path)
    for off in ("0", "false", "no", "OFF"):
        monkeypatch.setenv(CACHE_SWITCH_ENV, off)
        assert ParseCache.from_environment() is None
        cassette_store.load(path)
    assert not parse_cache_dir.exists() or list(parse_cache_dir.iterdir()) == []
    monkeypatch.setenv(CACHE_SWITCH_ENV, "1")
    cassette_store.load(path)
    assert len(entries(parse_cache_dir)) == 1


# -- only data that JSON carries exactly ------------------------------------------------------------


@pytest.mark.parametrize(
    ("meta_yaml", "expected"),
    [
        ("{1: one, 2: two}", {1: "one", 2: "two"}),
        ("{true: yes-key, null: null-key}", {True: "yes-key", None: "null-key"}),
        ("{1.5: float-key}", {1.5: "float-key"}),
        ("{limit: .inf}", {"limit": float("inf")}),
        ("{limit: -.inf}", {"limit": float("-inf")}),
    ],
)
def test_data_json_cannot_carry_exactly_is_not_cached(
    tmp_path: Path, cache: ParseCache, meta_yaml: str, expected: dict[Any, Any]
) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    raw = raw.replace(b"version: 1\n", b"version: 1\nmeta: " + meta_yaml.encode() + b"\n", 1)
    path.write_bytes(raw)
    for _ in range(2):
        loaded = cassette_store.load(path)
        assert loaded.meta == expected
        assert [type(k) for k in loaded.meta] == [type(k) for k in expected]
    assert entries(cache.directory) == []


def test_nan_is_not_cached(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    path.write_bytes(raw.replace(b"version: 1\n", b"version: 1\nmeta: {limit: .nan}\n", 1))
    assert cassette_store.load(path).meta["limit"] != cassette_store.load(path).meta["limit"]  # NaN, both times
    assert entries(cache.directory) == []


class Level(enum.IntEnum):
    HIGH = 2


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"a": {None: 1}}, [{"x": {(1, 2): 3}}], {"a": float("inf")}, [float("nan")],
     {"a": Level.HIGH}, {"a": (1, 2)}, {"a": b"bytes"}, {"a": {1.0: 2}}],
    ids=repr,
)
def test_json_exact_refuses_what_would_come_back_different(value: Any) -> None:
    assert json_exact(value) is None


@pytest.mark.parametrize(
    "value",
    [{"a": 1, "b": 1.0, "c": True, "d": None, "e": "text"}, [1, [2, [3, {"x": -0.0}]]],
     {"big": 2**70, "tiny": 5e-324, "huge": 1.7976931348623157e308},
     {"lone surrogate": "\ud800", "astral": "\U0001f600", "nul": "\x00"}, {}, [], "just text"],
    ids=repr,
)
def test_json_exact_keeps_values_and_their_types(value: Any) -> None:
    body = json_exact(value)
    assert body is not None
    back = json.loads(body)
    assert back == value
    assert repr(back) == repr(value)  # same types: 1 stays int, 1.0 float, -0.0 keeps its sign


def test_a_shared_value_is_cached_as_two_copies(tmp_path: Path, cache: ParseCache) -> None:
    """YAML aliases give one object in two places; JSON gives equal copies."""
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    raw = raw.replace(b"version: 1\n", b"version: 1\nmeta: {a: &shared {k: [1, 2]}, b: *shared}\n", 1)
    path.write_bytes(raw)
    cassette_store.load(path)
    cached = cassette_store.load(path).meta
    assert cached == {"a": {"k": [1, 2]}, "b": {"k": [1, 2]}}
    assert entries(cache.directory) == [cache.entry_path(raw)]


# -- where it lives ----------------------------------------------------------------------------------


def test_location_follows_the_environment(tmp_path: Path) -> None:
    home = Path.home()
    assert ParseCache.from_environment({}) == ParseCache(home / ".cache" / "llmock-proxy")
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert ParseCache.from_environment(xdg) == ParseCache(tmp_path / "xdg" / "llmock-proxy")
    assert ParseCache.from_environment({"XDG_CACHE_HOME": "relative/dir"}) == ParseCache(
        home / ".cache" / "llmock-proxy"
    )
    explicit = {**xdg, CACHE_DIR_ENV: str(tmp_path / "mine")}
    assert ParseCache.from_environment(explicit) == ParseCache(tmp_path / "mine")
    assert ParseCache.from_environment({**explicit, CACHE_SWITCH_ENV: "0"}) is None
    sized = ParseCache.from_environment({**explicit, CACHE_MAX_MB_ENV: "2.5"})
    assert sized is not None and sized.max_bytes == 2_500_000
    unsized = ParseCache.from_environment({**explicit, CACHE_MAX_MB_ENV: "lots"})
    assert unsized == ParseCache(tmp_path / "mine")


def test_entries_are_private_to_the_user(tmp_path: Path, cache: ParseCache) -> None:
    raw = write_cassette(tmp_path / "chat.yaml")
    cassette_store.load(tmp_path / "chat.yaml")
    assert cache.directory.stat().st_mode & 0o777 == 0o700
    assert cache.entry_path(raw).stat().st_mode & 0o777 == 0o600


# -- size limit -------------------------------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_prune_removes_the_least_recently_used_entries_first(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    raws = [write_cassette(tmp_path / f"c{i}.yaml", count=30, first=100 * i) for i in range(4)]
    unbounded = ParseCache(directory, max_bytes=10**12)
    for i, raw in enumerate(raws):
        assert unbounded.put(raw, yamlio.loads(raw))
        _age(unbounded.entry_path(raw), 1000 - i)  # c0 oldest ... c3 newest
    assert unbounded.get(raws[0]) is not None  # a hit makes c0 the most recently used
    stale_temp = directory / ".tmp-left-by-a-dead-writer"
    stale_temp.write_bytes(b"partial")
    _age(stale_temp, 2 * 3600)

    one_entry = unbounded.entry_path(raws[0]).stat().st_size
    ParseCache(directory, max_bytes=2 * one_entry + one_entry // 2).prune()

    assert entries(directory) == sorted([unbounded.entry_path(raws[0]), unbounded.entry_path(raws[3])])
    assert not stale_temp.exists()


def test_writes_prune_at_most_once_a_minute(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    first, second, third = (write_cassette(tmp_path / f"c{i}.yaml", first=100 * i) for i in range(3))
    tiny = ParseCache(directory, max_bytes=1)

    assert tiny.put(first, yamlio.loads(first))  # the first write prunes: only itself is left...
    assert entries(directory) == []  # ...and it is over the limit too
    assert tiny.put(second, yamlio.loads(second))  # pruned a moment ago: not again yet
    assert entries(directory) == [tiny.entry_path(second)]
    _age(directory / ".last-prune", 120)
    assert tiny.put(third, yamlio.loads(third))
    assert entries(directory) == []


def test_put_does_not_keep_a_reference_to_later_changes(tmp_path: Path, cache: ParseCache) -> None:
    path = tmp_path / "chat.yaml"
    raw = write_cassette(path)
    data = yamlio.loads(raw)
    snapshot = copy.deepcopy(data)
    assert cache.put(raw, data)
    data["interactions"].clear()
    assert cache.get(raw) == snapshot
