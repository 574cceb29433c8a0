"""The package's import graph: no cycles between our modules, counting imports
inside functions and under TYPE_CHECKING too, and the stages keep to their
direction (recording never reaches the replay matcher)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "llmock_proxy"


def module_files() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports anywhere in its source."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] != PACKAGE.name:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges.add(full if full in modules else base)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    graph = import_graph()
    assert len(graph) > 40
    # match.matcher names the Fixture type only under TYPE_CHECKING.
    assert "llmock_proxy.replay.fixture" in graph["llmock_proxy.match.matcher"]


def test_no_import_cycles_between_our_modules() -> None:
    assert cycles(import_graph()) == []


def test_recording_never_reaches_the_replay_side() -> None:
    graph = import_graph()
    for module in ("llmock_proxy.record.recorder", "llmock_proxy.mitm.record", "llmock_proxy.cassette.writer"):
        reached = reachable(graph, module)
        assert "llmock_proxy.match.matcher" not in reached, module
        assert not any(name.startswith("llmock_proxy.replay.") for name in reached), module


def test_the_lower_stages_know_nothing_of_mitmproxy_or_the_stages_above() -> None:
    graph = import_graph()
    for module in graph:
        if module.startswith(("llmock_proxy.wire", "llmock_proxy.cassette", "llmock_proxy.providers")):
            reached = reachable(graph, module)
            above = {m for m in reached if m.startswith(("llmock_proxy.replay", "llmock_proxy.record",
                                                         "llmock_proxy.mitm", "llmock_proxy.drift",
                                                         "llmock_proxy.commands"))}
            assert not above, (module, sorted(above))
