"""The architecture the folders promise, checked on the import graph of the three packages: no import
cycles (imports inside functions count too: they are dependencies all the same), the SDK needs
neither the server nor the demo world, and python-backend code never reaches into the exporter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"ppo_client": ROOT / "client", "ppo_server": ROOT / "server_export", "ppo_demo": ROOT / "demo"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package, parent in PACKAGES.items():
        for path in (parent / package).rglob("*.py"):
            parts = list(path.relative_to(parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in map(resolve, targets):
                if target and target != module:
                    graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_the_checker_finds_a_cycle_where_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back(graph):
    assert _cycles(graph) == []


def test_no_folder_imports_itself_back(graph):
    """The same at the level of folders (``ppo_server.export``, ``ppo_client.optimize`` ...), leaving
    out each package's top-level modules, which every folder may use."""

    def folder(module: str) -> str | None:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and _modules()[module].name == "__init__.py") else None

    folders: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = folder(module)
        if source is None:
            continue
        folders.setdefault(source, set())
        for target in map(folder, targets):
            if target and target != source:
                folders[source].add(target)
                folders.setdefault(target, set())
    assert _cycles(folders) == []


def test_the_sdk_needs_neither_the_server_nor_the_demo_world(graph):
    reaching = sorted((m, t) for m, ts in graph.items() if m.startswith("ppo_client") for t in ts if not t.startswith("ppo_client"))
    assert reaching == []


def test_backends_never_import_the_exporter(graph):
    reaching = sorted((m, t) for m, ts in graph.items() if m.startswith("ppo_server.backends")
                      for t in ts if t.startswith("ppo_server.export"))
    assert reaching == []


def test_the_server_never_imports_the_demo_world(graph):
    """The demo registers its preset (``ppo_t2i.presets``) as it registers its true taste: the arrow
    runs from the demo to the server only."""
    reaching = sorted((m, t) for m, ts in graph.items() if m.startswith("ppo_server") for t in ts if t.startswith("ppo_demo"))
    assert reaching == []


def test_the_sdk_core_imports_no_sdk_folder(graph):
    """The SDK's top-level modules (contract, head format, errors, request checks, clients) are the
    core both sides import; the folders (``store``, ``piaa``, ``optimize``, ``llm``, ``app``) build on
    it, never the other way. Only ``ppo_client.cli`` assembles the folders' commands."""
    modules = _modules()

    def in_folder(name: str) -> bool:
        return name.count(".") >= 2 or (name.count(".") == 1 and modules[name].name == "__init__.py")

    reaching = sorted((m, t) for m, ts in graph.items()
                      if m.startswith("ppo_client.") and not in_folder(m) and m != "ppo_client.cli"
                      for t in ts if t.startswith("ppo_client.") and in_folder(t))
    assert reaching == []


def test_the_commands_are_the_sdks_top_layer(graph):
    """``ppo_client.commands`` (one module per ``ppo-client`` command) builds on the SDK; nothing in
    the SDK below it imports it back. The demo's own CLI may share its flags."""
    reaching = sorted((m, t) for m, ts in graph.items()
                      if m.startswith("ppo_client.") and not m.startswith("ppo_client.commands") and m != "ppo_client.cli"
                      for t in ts if t.startswith("ppo_client.commands"))
    assert reaching == []


def _function_local_imports() -> list[tuple[str, int, str]]:
    """Imports of the project's own modules inside functions, without a ``# deferred:`` reason on the
    line above: (file, line, module)."""
    found = []
    for path in _modules().values():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and not inner.level:
                    names = [inner.module or ""]
                elif isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                else:
                    continue
                ours = [n for n in names if n.split(".")[0] in PACKAGES]
                if ours and not lines[inner.lineno - 2].strip().startswith("# deferred:"):
                    found.append((str(path.relative_to(ROOT)), inner.lineno, ours[0]))
    return sorted(set(found))


def test_the_project_imports_its_own_modules_at_the_top():
    """Where a module's dependencies are can be read from its head. An import inside a function stays
    only where it must (an optional dependency such as torch or the app extra, or the package's own
    lazy attributes), and says why on the line above, starting ``# deferred:``."""
    assert _function_local_imports() == []
