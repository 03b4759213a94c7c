"""The package's import graph: no circles, and no import hidden in a function without a reason."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import scrapy_resilience

PACKAGE = Path(scrapy_resilience.__file__).parent
NAME = "scrapy_resilience"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path) for path in PACKAGE.rglob("*.py")}


def imported_modules(tree: ast.AST) -> list[tuple[ast.stmt, str]]:
    """Each import statement of the package's own modules, with the module it names.

    ``from a.b import c`` names ``a.b.c`` when that is a module, else ``a.b``.
    A parent package that Python runs on the way is not counted: a subpackage's
    ``__init__`` that re-exports its component would otherwise make every pair
    of sibling imports look circular.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names if alias.name.startswith(NAME)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(NAME):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.append((node, target if target in MODULES else node.module))
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[module_name(path)] = {target for _, target in imported_modules(ast.parse(path.read_text()))}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree():
    """The checker itself: a circle of three is reported, a diamond is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_the_package_has_no_import_circle():
    """No module of the package imports, directly or through others, one that imports it (lazy imports included)."""
    graph = import_graph()
    assert len(graph) > 40
    assert find_cycle(graph) is None


def test_every_import_inside_a_function_says_why():
    """An import of our own modules kept inside a function has a comment saying why (start-up time, say)."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        top_level = {id(node) for node in tree.body}
        for node, target in imported_modules(tree):
            if id(node) in top_level:
                continue
            context = lines[max(0, node.lineno - 3):node.lineno]
            if not any("#" in line for line in context):
                unexplained.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {target}")
    assert unexplained == []


@pytest.mark.parametrize("path", [
    "scrapy_resilience.Addon",
    "scrapy_resilience.retry.RetryMiddleware",
    "scrapy_resilience.checkpoint.CheckpointExtension",
    "scrapy_resilience.monitor.MonitorExtension",
    "scrapy_resilience.abort.OutcomeMiddleware",
    "scrapy_resilience.abort.RequestAfterAbort",
    "scrapy_resilience.frontier.LedgerDownloaderMiddleware",
    "scrapy_resilience.frontier.LedgerSpiderMiddleware",
    "scrapy_resilience.dupefilter.ResilientDupeFilter",
    "scrapy_resilience.sessions.SessionsExtension",
    "scrapy_resilience.playwright_bridge.ResilientPlaywrightDownloadHandler",
    "scrapy_resilience.patterns.TRANSIENT_PATTERNS",
    "scrapy_resilience.patterns.PERMANENT_PATTERNS",
])
def test_user_facing_import_paths_keep_working(path):
    """Every path the docs give users for settings.py loads, through Scrapy's own loader."""
    from scrapy.utils.misc import load_object

    assert load_object(path) is not None


def test_old_paths_are_the_same_objects_as_the_new():
    """An old path is an alias, not a copy: settings naming either get the same component."""
    from scrapy.utils.misc import load_object

    pairs = {
        "scrapy_resilience.abort.OutcomeMiddleware": "scrapy_resilience.monitor.outcome.OutcomeMiddleware",
        "scrapy_resilience.frontier.LedgerSpiderMiddleware":
            "scrapy_resilience.checkpoint.frontier.LedgerSpiderMiddleware",
        "scrapy_resilience.sessions.SessionsExtension": "scrapy_resilience.checkpoint.sessions.SessionsExtension",
        "scrapy_resilience.playwright_bridge.ResilientPlaywrightDownloadHandler":
            "scrapy_resilience.browser.bridge.ResilientPlaywrightDownloadHandler",
    }
    for old, new in pairs.items():
        assert load_object(old) is load_object(new)
    retry = importlib.import_module("scrapy_resilience.retry")
    assert retry.RetryMiddleware.__module__ == "scrapy_resilience.retry.middleware"
