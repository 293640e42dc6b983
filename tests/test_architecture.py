"""The gateway's architecture rules (docs/architecture.md), checked on the source's imports.

Every ``import`` and ``from ... import`` in ``gateway/`` is read with :mod:`ast` (module level and inside
functions alike, except under ``if TYPE_CHECKING:``), resolved to the module it names, and checked:

* ``gateway.contract`` imports nothing of ``gateway`` but ``errors`` and ``paths``;
* ``gateway.service`` imports only itself, ``contract``, ``errors`` and ``paths``;
* ``gateway.field`` never imports ``sim`` or ``cli``;
* nothing imports ``gateway.cli`` (it is the top of the tree);
* there is no import cycle anywhere in ``gateway/``;
* ``sys.path`` is edited nowhere in the package (:func:`gateway.paths.firmware_module` imports the
  device package instead).

Files that run inside the MicroPython interpreter, not in the gateway, are not part of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"

# Programs the gateway hands to a MicroPython interpreter (the virtual device's REPL, the network
# simulator's node driver) and the MicroPython-side simulation package: not CPython modules.
MICROPYTHON_SIDE = ("gateway/sim/vdev_repl.py", "gateway/sim/nssim/mp_node.py", "gateway/sim/mpy/")

ALLOWED = {
    "gateway.contract": ("gateway.contract", "gateway.errors", "gateway.paths"),
    "gateway.service": ("gateway.service", "gateway.contract", "gateway.errors", "gateway.paths"),
}
FORBIDDEN = {
    "gateway.field": ("gateway.sim", "gateway.cli"),
    "gateway.contract": ("gateway.cli",),
    "gateway.service": ("gateway.cli",),
    "gateway.sim": ("gateway.cli",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if any(rel == side or (side.endswith("/") and rel.startswith(side)) for side in MICROPYTHON_SIDE):
            continue
        found[_module_name(path)] = path
    return found


SOURCES = _sources()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported gateway module) for every import of ``module``, resolved to a module we have."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []

    def resolve(name: str) -> str | None:
        while name and name not in SOURCES:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "gateway" and (target := resolve(alias.name)):
                    found.append((node.lineno, target))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "gateway":
                for alias in node.names:
                    target = resolve(f"{name}.{alias.name}") if f"{name}.{alias.name}" in SOURCES else resolve(name)
                    if target:
                        found.append((node.lineno, target))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [(line, target) for line, target in found if target != module]


GRAPH = {module: _imports(module, path) for module, path in SOURCES.items()}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_every_layer_is_where_the_architecture_document_says() -> None:
    for package in ("gateway.contract", "gateway.service", "gateway.field", "gateway.sim", "gateway.cli"):
        assert package in SOURCES, f"{package} is missing"
    assert {"gateway", "gateway.errors", "gateway.paths"} <= set(SOURCES)
    loose = [m for m in SOURCES if m.count(".") == 1 and m not in ("gateway.errors", "gateway.paths")
             and not any(_within(m, p) for p in ("gateway.contract", "gateway.service", "gateway.field",
                                                   "gateway.sim", "gateway.cli"))]
    assert loose == [], f"modules outside the five packages: {loose} (docs/architecture.md says where they go)"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_layer_imports_only_what_it_may(package: str) -> None:
    bad = [
        f"{SOURCES[module].relative_to(ROOT)}:{line} imports {target}"
        for module, edges in GRAPH.items() if _within(module, package)
        for line, target in edges
        if target != "gateway" and not any(_within(target, allowed) for allowed in ALLOWED[package])
    ]
    assert bad == [], f"{package} may import only {ALLOWED[package]}:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_never_imports_what_is_forbidden_to_it(package: str) -> None:
    bad = [
        f"{SOURCES[module].relative_to(ROOT)}:{line} imports {target}"
        for module, edges in GRAPH.items() if _within(module, package)
        for line, target in edges
        if any(_within(target, forbidden) for forbidden in FORBIDDEN[package])
    ]
    assert bad == [], f"{package} must not import {FORBIDDEN[package]}:\n" + "\n".join(bad)


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    bad = [
        f"{SOURCES[module].relative_to(ROOT)}:{line} imports {target}"
        for module, edges in GRAPH.items() if not _within(module, "gateway.cli")
        for line, target in edges if _within(target, "gateway.cli")
    ]
    assert bad == []


# Being removed: the store is split into one module per backend by composition (issue 14).
KNOWN_CYCLES: list[list[str]] = []


def test_there_is_no_import_cycle_in_the_gateway() -> None:
    edges = {module: sorted({target for _, target in targets}) for module, targets in GRAPH.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module)
    cycles = [c for c in cycles if c not in KNOWN_CYCLES]
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_sys_path_is_edited_nowhere_in_the_package() -> None:
    bad = []
    for path in SOURCES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == [], "sys.path used in: " + ", ".join(bad)
