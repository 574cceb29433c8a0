"""What a user can say: command-line options, ini keys, the ``llmock`` marker, and the modes.

Modes, for a test and its cassette:

* ``replay`` (default): answer from the cassette; a request nothing matches
  fails the test with the near-miss report. Never touches the network.
* ``once``: a test without a cassette records one; a test with one replays it.
* ``auto``: replay what matches, forward and record (append) what does not.
* ``record``: forward everything and append it to the test's cassette.
* ``rewrite``: forward everything into a new cassette that replaces the old
  one when the test ends (an interrupted test keeps the old one).
* ``passthrough``: replay what matches, forward the rest, record nothing.

pytest-recording's ``--record-mode`` names are accepted as aliases (``none``,
``once``, ``new_episodes``, ``all``, ``rewrite``); ``--record-mode`` itself
only when pytest-recording is not installed, so the two plugins never claim
the same option.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MODES = ("replay", "once", "auto", "record", "rewrite", "passthrough")

# pytest-recording / VCR.py record modes -> ours.
RECORD_MODE_ALIASES = {
    "none": "replay",
    "once": "once",
    "new_episodes": "auto",
    "all": "record",
    "rewrite": "rewrite",
}

TRANSPORTS = ("base-url", "proxy")

MARKER = "llmock"
MARKER_HELP = (
    "llmock(cassette=None, cassettes=(), fixtures=(), mode=None): replay this test's LLM API "
    "traffic from its cassette (cassettes/<module>/<test>.yaml unless cassette= says another, "
    "relative to the rootdir); cassettes=/fixtures= add shared files; mode= overrides --llmock-mode"
)
MARKER_KEYS = frozenset({"cassette", "cassettes", "fixtures", "mode"})

DEFAULT_CASSETTE_DIR = "cassettes"
DEFAULT_TIMING = "instant"
# What the engine's Timing.parse accepts, checked here without importing the engine.
_TIMING = re.compile(r"^(instant|recorded|scale:(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?)$")


def normalize_mode(value: str) -> str:
    """A mode as the user wrote it -> one of :data:`MODES`; ValueError naming the choices."""
    name = value.strip().lower().replace("-", "_")
    if name in MODES:
        return name
    if name in RECORD_MODE_ALIASES:
        return RECORD_MODE_ALIASES[name]
    choices = ", ".join([*MODES, *(a for a in RECORD_MODE_ALIASES if a not in MODES)])
    raise ValueError(f"unknown llmock mode {value!r}; choose one of {choices}")


def _mode_arg(value: str) -> str:
    try:
        return normalize_mode(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pytest_recording_installed() -> bool:
    """Whether pytest-recording is importable (then ``--record-mode`` is its option, not ours)."""
    return importlib.util.find_spec("pytest_recording") is not None


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmock", "llmock-proxy: replay LLM API traffic from per-test cassettes")
    group.addoption(
        "--llmock-mode", dest="llmock_mode", type=_mode_arg, default=None, metavar="MODE",
        help="replay (default), once, auto, record, rewrite or passthrough; pytest-recording's names "
        "none/once/new_episodes/all/rewrite are accepted too (ini: llmock_mode)",
    )
    if not pytest_recording_installed():
        group.addoption(
            "--record-mode", dest="llmock_record_mode", type=_mode_arg, default=None, metavar="MODE",
            help="alias of --llmock-mode (pytest-recording's option name; absent when pytest-recording is installed)",
        )
    group.addoption(
        "--llmock-transport", dest="llmock_transport", choices=TRANSPORTS, default=None,
        help="base-url (default): a replay engine in this process, SDKs pointed at it by their base-URL "
        "variables; proxy: a mitmdump subprocess, SDKs pointed at it by HTTPS_PROXY and its CA (ini: llmock_transport)",
    )
    group.addoption(
        "--llmock-cassettes", dest="llmock_cassettes", action="append", default=[], metavar="PATH",
        help="shared cassette files or directories every llmock test can replay from; repeatable "
        "(ini: llmock_cassettes)",
    )
    group.addoption(
        "--llmock-fixtures", dest="llmock_fixtures", action="append", default=[], metavar="PATH",
        help="llmock JSON fixture files or directories every llmock test can be answered from; repeatable "
        "(ini: llmock_fixtures)",
    )
    group.addoption(
        "--block-network", dest="llmock_block_network", action="store_true", default=None,
        help="a connection a test opens to a non-loopback address fails, and fails the test "
        "(ini: llmock_block_network)",
    )
    group.addoption(
        "--llmock-report-unused", dest="llmock_report_unused", nargs="?", const="", default=None,
        metavar="REPORT",
        help="at the end of the run, list the cassettes and interactions no test used; with =REPORT "
        "also write the usage report `llmock-proxy cassette prune REPORT` reads",
    )
    group.addoption(
        "--llmock-timing", dest="llmock_timing", default=None, metavar="TIMING",
        help="stream pacing of replayed answers: instant (default), recorded, or scale:X (ini: llmock_timing)",
    )
    parser.addini("llmock_mode", "llmock mode (see --llmock-mode)", default="replay")
    parser.addini("llmock_transport", "base-url or proxy (see --llmock-transport)", default="base-url")
    parser.addini(
        "llmock_cassette_dir", "where per-test cassettes live, relative to the rootdir",
        default=DEFAULT_CASSETTE_DIR,
    )
    parser.addini("llmock_cassettes", "shared cassette files/directories, relative to the rootdir", type="linelist")
    parser.addini("llmock_fixtures", "llmock fixture files/directories, relative to the rootdir", type="linelist")
    parser.addini("llmock_block_network", "see --block-network", type="bool", default=False)
    parser.addini("llmock_timing", "see --llmock-timing", default=DEFAULT_TIMING)


@dataclass(frozen=True)
class Settings:
    """The run's llmock settings, from the command line over the ini file."""

    rootdir: Path
    mode: str = "replay"
    transport: str = "base-url"
    cassette_dir: Path = Path(DEFAULT_CASSETTE_DIR)
    cassettes: tuple[Path, ...] = ()
    fixtures: tuple[Path, ...] = ()
    block_network: bool = False
    report_unused: bool = False
    report_path: Path | None = None  # --llmock-report-unused=PATH
    timing: str = DEFAULT_TIMING

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        rootdir = Path(config.rootpath)
        invocation = Path(config.invocation_params.dir)
        option = config.option
        mode_text = (
            getattr(option, "llmock_mode", None)
            or getattr(option, "llmock_record_mode", None)
            or config.getini("llmock_mode")
        )
        transport = getattr(option, "llmock_transport", None) or str(config.getini("llmock_transport")).strip()
        try:
            mode = normalize_mode(mode_text)
        except ValueError as exc:
            raise pytest.UsageError(f"llmock_mode: {exc}") from None
        if transport not in TRANSPORTS:
            raise pytest.UsageError(f"llmock_transport: {transport!r} is not one of {', '.join(TRANSPORTS)}")
        timing = getattr(option, "llmock_timing", None) or str(config.getini("llmock_timing")).strip()
        if not _TIMING.match(timing.lower()):
            raise pytest.UsageError(f"llmock_timing: {timing!r} is not instant, recorded or scale:X (X >= 0)")
        block = getattr(option, "llmock_block_network", None)
        report = getattr(option, "llmock_report_unused", None)
        if report and (report.endswith(".py") or "::" in report or (invocation / report).is_dir()):
            raise pytest.UsageError(
                f"--llmock-report-unused took {report!r} as its report file; give the file with '=' "
                "(--llmock-report-unused=usage.json), or put the option after the test paths"
            )
        return cls(
            rootdir=rootdir,
            mode=mode,
            transport=transport,
            cassette_dir=_under(rootdir, str(config.getini("llmock_cassette_dir")).strip() or DEFAULT_CASSETTE_DIR),
            cassettes=(
                *_paths(rootdir, config.getini("llmock_cassettes")),
                *_paths(invocation, getattr(option, "llmock_cassettes", [])),
            ),
            fixtures=(
                *_paths(rootdir, config.getini("llmock_fixtures")),
                *_paths(invocation, getattr(option, "llmock_fixtures", [])),
            ),
            block_network=bool(config.getini("llmock_block_network")) if block is None else bool(block),
            report_unused=report is not None,
            report_path=(invocation / report).resolve() if report else None,
            timing=timing,
        )


def _under(base: Path, text: str) -> Path:
    return (base / Path(text).expanduser()).resolve()


def _paths(base: Path, values: Iterable[str]) -> list[Path]:
    return [_under(base, v) for v in values if str(v).strip()]


@dataclass(frozen=True)
class MarkerSpec:
    """What ``@pytest.mark.llmock(...)`` says for one test (closest marker first)."""

    cassette: Path | None = None
    cassettes: tuple[Path, ...] = ()
    fixtures: tuple[Path, ...] = ()
    mode: str | None = None
    marked: bool = False

    @classmethod
    def of(cls, item: pytest.Item, rootdir: Path) -> MarkerSpec:
        markers = list(item.iter_markers(MARKER))
        if not markers:
            return cls()
        cassette: Path | None = None
        mode: str | None = None
        cassettes: list[Path] = []
        fixtures: list[Path] = []
        for marker in markers:  # closest (the function's) first
            if marker.args:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.llmock takes keyword arguments only "
                    f"({', '.join(sorted(MARKER_KEYS))}), not {marker.args!r}"
                )
            unknown = set(marker.kwargs) - MARKER_KEYS
            if unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.llmock does not know {', '.join(sorted(unknown))}; "
                    f"it takes {', '.join(sorted(MARKER_KEYS))}"
                )
            kwargs: Mapping[str, Any] = marker.kwargs
            if cassette is None and kwargs.get("cassette"):
                cassette = _under(rootdir, str(kwargs["cassette"]))
            if mode is None and kwargs.get("mode"):
                try:
                    mode = normalize_mode(str(kwargs["mode"]))
                except ValueError as exc:
                    raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.llmock(mode=...): {exc}") from None
            cassettes += _paths(rootdir, _listed(kwargs.get("cassettes"), item, "cassettes"))
            fixtures += _paths(rootdir, _listed(kwargs.get("fixtures"), item, "fixtures"))
        return cls(cassette, tuple(dict.fromkeys(cassettes)), tuple(dict.fromkeys(fixtures)), mode, True)


def _listed(value: Any, item: pytest.Item, key: str) -> Sequence[str]:
    if value is None:
        return ()
    if isinstance(value, (str, Path)):
        return (str(value),)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.llmock({key}=...) takes a path or a list of paths")


@dataclass(frozen=True)
class TestPlan:
    """How one test's session treats its traffic, decided from the mode and
    whether the test's cassette exists."""

    __test__ = False  # not a test class, whatever pytest's collector thinks of the name

    mode: str  # the user-level mode of this test (one of MODES)
    session_mode: str  # what the engine does with a miss: replay | auto | record | passthrough
    record_to: Path | None = None  # where recording writes (a temp file when the cassette is replaced)
    replaces: Path | None = None  # the cassette record_to is moved onto when the test completes
    load_cassette: bool = True  # whether the test's cassette is replayed from
    load_shared: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def replays(self) -> bool:
        """Whether requests are answered from recordings only (dummy API keys are fine then)."""
        return self.session_mode == "replay"


def temp_cassette_for(cassette: Path) -> Path:
    """Where a replacing recording is written until the test completes: next to
    the cassette (same file system, so the final move is an atomic rename),
    hidden, and not ending in .yaml (never loaded as a cassette by a directory scan)."""
    return cassette.with_name(f".{cassette.name}.llmock-recording")


def plan_for(mode: str, cassette: Path) -> TestPlan:
    exists = cassette.is_file()
    if mode == "replay":
        return TestPlan(mode, "replay", load_cassette=exists)
    if mode == "once":
        if exists:
            return TestPlan(mode, "replay")
        return TestPlan(mode, "record", temp_cassette_for(cassette), cassette, load_cassette=False, load_shared=False)
    if mode == "auto":
        return TestPlan(mode, "auto", cassette, load_cassette=exists)
    if mode == "record":
        return TestPlan(mode, "record", cassette, load_cassette=False, load_shared=False)
    if mode == "rewrite":
        return TestPlan(mode, "record", temp_cassette_for(cassette), cassette, load_cassette=False, load_shared=False)
    if mode == "passthrough":
        return TestPlan(mode, "passthrough", load_cassette=exists)
    raise ValueError(f"unknown llmock mode {mode!r}")
