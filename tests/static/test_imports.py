"""The import graph of harness/, read from the source with ast: no import cycle runs through the
emulator, between its modules or between its parts (each subpackage, e.g. a guest backend, is
one part: the process backend once imported ssh.py, which imports qemu/, which imported the
process backend's guest.py). Top-level and function-level imports count; `if TYPE_CHECKING:`
blocks, which never run, do not. And the guest backends are imported only when one is used."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "harness"
WATCHED = "harness.emulator"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at any depth, outside `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child.test):
            for other in child.orelse:
                yield from _runtime_imports(other)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _runtime_imports(child)


def _targets(
    statement: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]
) -> Iterator[str]:
    if isinstance(statement, ast.Import):
        yield from (alias.name for alias in statement.names)
        return
    base = statement.module or ""
    if statement.level:
        anchor = importer if is_package else importer.rpartition(".")[0]
        for _ in range(statement.level - 1):
            anchor = anchor.rpartition(".")[0]
        base = f"{anchor}.{base}" if base else anchor
    for alias in statement.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in known else base


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module → the modules of `package` it imports, from the source files under `root`."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {
            target
            for statement in _runtime_imports(tree)
            for target in _targets(statement, name, is_package, known)
            if target in known and target != name
        }
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def by_part(graph: Mapping[str, set[str]], within: str = WATCHED) -> dict[str, set[str]]:
    """The graph with each subpackage of `within` (and all below it) as one node."""
    depth = within.count(".") + 1
    parts = {
        ".".join(m.split(".")[: depth + 1])
        for m in graph
        if m.startswith(f"{within}.") and m.count(".") > depth
    }

    def part(module: str) -> str:
        return next((p for p in parts if module.startswith(f"{p}.")), module)

    merged: dict[str, set[str]] = {}
    for module, targets in graph.items():
        node = part(module)
        merged.setdefault(node, set()).update(part(t) for t in targets if part(t) != node)
    return merged


def emulator_cycles(root: Path) -> list[list[str]]:
    """Cycles through the emulator's modules, then through its parts."""
    graph = import_graph(root)
    found = cycles(graph) + cycles(by_part(graph))
    return [c for c in found if any(m.startswith(WATCHED) for m in c)]


def test_the_graph_sees_function_level_imports() -> None:
    """The backend table imports its backends inside functions: the graph must see them, or
    a cycle through them would pass unseen."""
    graph = import_graph(ROOT)
    assert "harness.emulator.qemu.guest" in graph["harness.emulator.backends"]
    assert "harness.emulator.process.guest" in graph["harness.emulator.backends"]


def test_no_import_cycle_runs_through_the_emulator() -> None:
    assert emulator_cycles(ROOT) == []


def test_a_cycle_is_found(tmp_path: Path) -> None:
    """The check itself: a cycle closed by a function-level import is reported, and one
    between two parts of a package; one closed only under TYPE_CHECKING is not (it never
    runs)."""
    files = {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "def f():\n    from pkg.c import x\n",
        "c.py": "from .a import y\n",
        "d.py": "import pkg.a\nif TYPE_CHECKING:\n    from pkg import e\n",
        "e.py": "from pkg.d import z\n",
        "one/__init__.py": "",
        "one/x.py": "from pkg.two.y import f\n",
        "two/__init__.py": "",
        "two/y.py": "from pkg.e import g\n",
        "two/z.py": "from pkg.one import x\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert cycles(by_part(graph, "pkg")) == [
        ["pkg.a", "pkg.b", "pkg.c"],
        ["pkg.one", "pkg.two"],
    ]


def test_no_backend_is_imported_until_one_is_used() -> None:
    """The emulator service and host load the backend table, not the backends: a run that
    never makes a guest imports neither, and one that asks for QEMU guests only then."""
    code = (
        "import sys\n"
        "import harness.emulator.service\n"
        "loaded = [m for m in sys.modules if m.startswith(('harness.emulator.process',"
        " 'harness.emulator.qemu.guest'))]\n"
        "print(','.join(sorted(loaded)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
