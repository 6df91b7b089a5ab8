"""The rooms of src/supervit import only downward, never each other's private modules, and never in a cycle.

Every subpackage (and top-level module) is listed with the rooms it may import. A new room must be
added here deliberately, which is the point: the layering is a decision, not an accident.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "supervit"

# _lazy: the lazy re-export helper of the package roots (imports nothing of supervit itself).
BASE = {"_exceptions", "_lazy", "_version", "_proto", "protocol"}
ALLOWED: dict[str, set[str]] = {
    "_exceptions": set(),
    "_lazy": set(),
    "_version": set(),
    "_proto": set(),
    "protocol": {"_lazy", "_proto"},
    "storage": BASE,
    "metrics": BASE,
    "inventory": BASE,
    "telemetry": BASE,
    "rpc": BASE | {"auth", "telemetry"},
    "auth": BASE | {"storage"},
    "config": BASE | {"auth", "metrics"},
    "client": BASE | {"auth", "config", "metrics", "inventory"},
    "node": BASE | {"auth", "config", "metrics", "inventory", "rpc", "storage", "telemetry"},
    # The catalog push calls nodes through client.SupervisedClient.
    "supervisor": BASE | {"auth", "client", "config", "metrics", "inventory", "rpc", "storage", "telemetry"},
    "testing": BASE
    | {"auth", "config", "metrics", "inventory", "rpc", "storage", "telemetry", "client", "node", "supervisor"},
    "cli": BASE
    | {"auth", "config", "metrics", "inventory", "rpc", "storage", "telemetry", "client", "node", "supervisor"},
    # The package root re-exports the public surface; __main__ starts the CLI.
    "__init__": BASE
    | {"auth", "config", "metrics", "inventory", "rpc", "storage", "telemetry", "client", "node", "supervisor"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported supervit module, line, runtime?) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if _is_type_checking_block(node):
            type_only.update(id(child) for child in ast.walk(node))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name == "supervit" or name.startswith("supervit."):
                yield name, node.lineno, id(node) not in type_only


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "_proto" not in p.relative_to(SRC).parts)


def test_every_room_is_listed() -> None:
    """A new subpackage or top-level module must be given its allowed imports here."""
    rooms = {_room(_module_name(p)) for p in _sources()}
    assert rooms <= ALLOWED.keys(), f"add {sorted(rooms - ALLOWED.keys())} to ALLOWED in {__file__}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_only_downward_and_never_into_private_modules(path: Path) -> None:
    """Each import targets an allowed room, and another room's public face rather than its _private modules."""
    module = _module_name(path)
    room = _room(module)
    for target, line, _ in _imports(path):
        if target == "supervit":
            assert room in {"cli", "testing"}, f"{module}:{line} imports the package root"
            continue
        target_room = _room(target)
        if target_room == room:
            continue
        assert target_room in ALLOWED[room], f"{module}:{line}: {room} may not import {target_room} ({target})"
        inner = target.split(".")[2:]
        assert not any(part.startswith("_") for part in inner), (
            f"{module}:{line} imports {target}, a private module of {target_room}; import from supervit.{target_room}"
        )


def test_no_import_cycles_between_modules() -> None:
    """No chain of runtime imports leads from a module back to itself (lazy imports included)."""
    graph: dict[str, set[str]] = {}
    known = {_module_name(p) for p in _sources()}
    for path in _sources():
        edges = graph.setdefault(_module_name(path), set())
        for target, _, runtime in _imports(path):
            # "from supervit.x import y" may name a submodule y; otherwise it is the package x.
            if runtime and target in known:
                edges.add(target)
    # Packages import their own private modules in __init__; a private module importing its package's
    # __init__ would be a cycle and is caught like any other.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _lazy_roots() -> list[Path]:
    return [p for p in _sources() if "lazy_exports(" in p.read_text() and p.name != "_lazy.py"]


def _lazy_table(tree: ast.Module) -> dict[str, list[str]]:
    """The ``{module: (name, …)}`` given to ``lazy_exports`` in a package root."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "lazy_exports":
            table: dict[str, tuple[str, ...]] = ast.literal_eval(node.args[1])
            return {module: sorted(names) for module, names in table.items()}
    raise AssertionError("no lazy_exports(...) call")


def test_lazy_package_roots_load_what_their_type_checking_block_imports() -> None:
    """A lazy root's table and its ``if TYPE_CHECKING:`` imports (what mypy sees) name the same
    names from the same modules, and every name in ``__all__`` resolves at run time."""
    import importlib

    roots = _lazy_roots()
    assert {_module_name(p) for p in roots} >= {"supervit", "supervit.auth", "supervit.supervisor"}
    for path in roots:
        tree = ast.parse(path.read_text(), str(path))
        typed: dict[str, list[str]] = {}
        for node in tree.body:
            if _is_type_checking_block(node):
                assert isinstance(node, ast.If)
                for imp in node.body:
                    assert isinstance(imp, ast.ImportFrom) and imp.module, ast.unparse(imp)
                    typed.setdefault(imp.module, []).extend(alias.name for alias in imp.names)
        assert {module: sorted(names) for module, names in typed.items()} == _lazy_table(tree), path
        package = importlib.import_module(_module_name(path))
        for name in package.__all__:
            getattr(package, name)  # AttributeError names the missing one
