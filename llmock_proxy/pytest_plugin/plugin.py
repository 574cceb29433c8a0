"""The llmock pytest plugin (entry point ``pytest11: llmock``).

* ``llmock`` fixture: the test's replay session (:class:`~.fixture.Llmock`),
  with the environment pointing SDKs and child processes at it.
* ``@pytest.mark.llmock(cassette=..., cassettes=[...], fixtures=[...], mode=...)``:
  the test gets the fixture without asking for it.
* Options: ``--llmock-mode``, ``--llmock-transport``, ``--llmock-cassettes``,
  ``--llmock-fixtures``, ``--block-network``, ``--llmock-report-unused``,
  ``--llmock-timing`` and their ini keys (see :mod:`.options`).

Loaded by every pytest run in an environment where llmock-proxy is installed,
so importing it costs little (the standard library and pytest), and nothing
starts until a test uses the fixture or the marker: tests without either
see no server, no environment change and no socket patch. ``-p no:llmock``
turns it off.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from llmock_proxy.pytest_plugin.fixture import Llmock
from llmock_proxy.pytest_plugin.options import MARKER, MARKER_HELP, Settings, add_options
from llmock_proxy.pytest_plugin.runtime import LlmockRuntime
from llmock_proxy.pytest_plugin.verdict import fail_report, findings

RUNTIME = pytest.StashKey[LlmockRuntime]()
ACTIVE = pytest.StashKey[Llmock]()  # the item's session, while it runs and until its last report
CALL_DONE = pytest.StashKey[bool]()  # the item's call phase ran to its end (passed or failed)
WORKER_USAGE = pytest.StashKey[list[dict[str, Any]]]()  # xdist controller: the workers' usage notes

# Modes that forward to the real upstream: the proxy transport's sessions replay only.
FORWARDING_MODES = ("auto", "record", "rewrite", "passthrough")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    settings = Settings.from_config(config)
    if settings.transport == "proxy" and settings.mode in FORWARDING_MODES:
        raise pytest.UsageError(
            f"--llmock-mode={settings.mode} records or forwards, and --llmock-transport=proxy replays only "
            "(the replay addon's per-test sessions do not forward); record with --llmock-transport=base-url"
        )
    config.stash[RUNTIME] = LlmockRuntime(settings)
    config.stash[WORKER_USAGE] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    runtime = config.stash.get(RUNTIME, None)
    if runtime is not None:
        runtime.shutdown()


# -- the fixture and the marker -----------------------------------------------------------------


@pytest.fixture
def llmock(request: pytest.FixtureRequest) -> Iterator[Llmock]:
    """The test's llmock replay session: base_url, session_id, cassette, mode, env,
    requests (the journal), assert_all_used(), reset(). See llmock_proxy.pytest_plugin."""
    runtime = request.config.stash[RUNTIME]
    item = request.node
    assert isinstance(item, pytest.Item)
    item.stash[CALL_DONE] = False
    session = runtime.begin(item)
    item.stash[ACTIVE] = session
    try:
        yield session
    finally:
        notes = runtime.end(session, completed=item.stash.get(CALL_DONE, False))
        for note in notes:
            item.add_report_section("teardown", "llmock", note)


@pytest.fixture(autouse=True)
def _llmock_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """A test marked ``@pytest.mark.llmock`` gets the ``llmock`` fixture; a test
    asking for it gets it first, before the fixtures that build its clients."""
    node = request.node
    if "llmock" in getattr(node, "fixturenames", ()) or node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue("llmock")


# -- the verdict ------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "call":
        item.stash[CALL_DONE] = True
    session = item.stash.get(ACTIVE, None)
    if session is None:
        return
    if report.when == "teardown":
        del item.stash[ACTIVE]
    if report.when == "setup" and report.passed:
        return  # what setup asked is judged with the call
    if report.skipped or hasattr(report, "wasxfail"):
        findings(session)  # a skipped or expected-to-fail test is not failed for its misses
        return
    text = findings(session)
    if text is not None:
        fail_report(item, report, text)


# -- --llmock-report-unused -----------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    runtime = config.stash.get(RUNTIME, None)
    workeroutput = getattr(config, "workeroutput", None)
    if runtime is not None and runtime.usage is not None and workeroutput is not None:
        from llmock_proxy.pytest_plugin.unused import WORKER_OUTPUT_KEY

        workeroutput[WORKER_OUTPUT_KEY] = runtime.usage.to_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: a worker finished; keep its usage notes."""
    from llmock_proxy.pytest_plugin.unused import WORKER_OUTPUT_KEY

    data = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
    if data:
        node.config.stash[WORKER_USAGE].append(data)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    runtime = config.stash.get(RUNTIME, None)
    if runtime is None or not runtime.settings.report_unused or hasattr(config, "workerinput"):
        return
    from llmock_proxy.pytest_plugin import unused

    s = runtime.settings
    local = runtime.usage.report if runtime.usage is not None else None
    workers: list[dict[str, Any]] = config.stash[WORKER_USAGE]
    report = unused.merged(local, workers, s.rootdir)
    problems = unused.add_unloaded(report, (s.cassette_dir, *s.cassettes))
    terminalreporter.section("llmock: recordings no test used")
    lines = report.describe_unused()
    for line in [*lines, *problems]:
        terminalreporter.write_line(line)
    if not lines:
        terminalreporter.write_line(f"every interaction of the {len(report.cassettes)} cassette(s) was used")
    if terminalreporter.stats.get("deselected"):
        terminalreporter.write_line("(some tests were deselected: their cassettes count as unused)")
    if s.report_path is not None:
        report.write(s.report_path)
        terminalreporter.write_line(f"usage report written to {s.report_path} (llmock-proxy cassette prune reads it)")
