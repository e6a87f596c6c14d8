"""The layers of app/ point down, and no import circle comes back (docs/runner.md, "Layers").

Every module of app/ is parsed with ``ast``: its relative imports, at module level and inside functions
alike, are the edges. A module may import from its own layer or from the layers below it, never above;
the graph has no cycle; the model modules import only the few foundation modules named here.
"""

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"

#: Bottom first. A module may import from its own layer and the layers before it.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"app", "status", "conf", "schedule", "rows", "registry", "context", "events",
                    "interrupts", "newthread", "capture", "backoff", "orphans", "lifeline", "privatefiles",
                    "dbclock"}),
    ("models", {"initialpassword", "lease", "runnerprocess", "task", "taskrun", "history", "models"}),
    ("lifecycle", {"lifecycle", "lifecycle.claiming", "lifecycle.queries", "lifecycle.recording",
                   "lifecycle.recovery", "lifecycle.outcome"}),
    ("execution", {"execution", "isolation", "child", "coroutines", "debugging"}),
    ("runner", {"runner"}),  # the package: its loop and collaborators
    ("web", {"livelayer", "snapshot", "fanout", "bridge", "consumers", "routing", "asgi", "views", "urls",
             "admin", "adminsite", "actions", "serve", "health", "metrics", "checks", "djangotasks",
             "backends", "origins", "access", "lists", "stats", "api", "protocol"}),
    ("wiring", {"apps", "management", "management.commands"}),
]  # fmt: skip
#: What the model modules may import besides each other: nothing that runs, executes, wakes or publishes.
#: orphans: is a pid running (stdlib only); dbclock: the database's time, which rows are written and
#: compared by.
MODEL_MAY_IMPORT = {"status", "registry", "schedule", "orphans", "dbclock"}


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    name = ".".join(parts[1:] if parts[-1] != "__init__" else parts[1:-1])
    return name or "app"


def app_modules() -> dict[str, Path]:
    return {module_name(path): path for path in APP.rglob("*.py") if "migrations" not in path.parts}


MODULES = app_modules()


def package_of(name: str, path: Path) -> list[str]:
    parts = [] if name == "app" else name.split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


def imports_of(name: str) -> set[str]:
    """The app modules ``name`` imports: relative imports anywhere in it, resolved to module names."""
    path = MODULES[name]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        package = package_of(name, path)
        base = package[: len(package) - node.level + 1]
        target = [*base, *(node.module.split(".") if node.module else [])]
        for alias in node.names:  # `from . import x` may name a module
            candidate = ".".join([*target, alias.name])
            found.add(candidate if candidate in MODULES else ".".join(target) or "app")
    return found - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(name: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if name in members or any(name.startswith(member + ".") for member in members if "." not in member):
            return index
    raise AssertionError(f"app/{name} is in no layer: add it to LAYERS here and in docs/runner.md")


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    upward = sorted(target for target in GRAPH[name] if layer_of(target) > layer_of(name))
    layer = LAYERS[layer_of(name)][0]
    assert not upward, f"app/{name} ({layer}) imports from above: {upward}"


def test_no_import_circles():
    cycles = strongly_connected([component for component in _components(GRAPH) if len(component) > 1])
    assert not cycles, f"import circles in app/: {cycles}"


@pytest.mark.parametrize("name", sorted(LAYERS[1][1]))
def test_models_import_only_their_foundation(name):
    allowed = MODEL_MAY_IMPORT | LAYERS[1][1]
    assert GRAPH[name] <= allowed, f"app/{name} imports {sorted(GRAPH[name] - allowed)}"


def test_app_imports_itself_only_relatively():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            else:
                continue
            assert "app" not in roots, f"app/{name} imports app absolutely (line {node.lineno})"


def test_the_checker_sees_a_circle_and_an_upward_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected([c for c in _components(graph) if len(c) > 1]) == [["a", "b", "c"]]
    assert imports_of("lifecycle.claiming") >= {"task", "taskrun", "lease", "rows", "status"}


def strongly_connected(components: list[list[str]]) -> list[list[str]]:
    return sorted(sorted(component) for component in components)


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
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
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                found.append(component)
    return found
