"""The rules of the package's shape (docs/architecture.md), checked on its source: only vsphere/ imports pyVmomi
or pyVim, the plain values both layers share (vsphere_values.py) import neither layer, vsphere/ takes only the
path rules from drive/ (never an operation), no two modules import each
other (directly or around a loop, deferred imports included), and the operations in drive/ never branch on a dry
run (DryRunEffects makes the difference)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "esxi_configdrive"


def modules() -> dict[str, tuple[ast.Module, str]]:
    """Each module of the package: its syntax tree, and the package its relative imports start from."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            home = ".".join(parts)
        else:
            home = ".".join(parts[:-1])
        out[".".join(parts)] = (ast.parse(path.read_text(), str(path)), home)
    return out


def imported(tree: ast.Module, home: str, known: set[str]) -> set[str]:
    """The package's modules a module imports, anywhere in it (top level or deferred in a function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = home.split(".")[: len(home.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known}
    return found


def test_only_the_vsphere_layer_imports_pyvmomi() -> None:
    offenders = []
    for name, (tree, _) in modules().items():
        if name.startswith("esxi_configdrive.vsphere"):
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n.split(".")[0] in ("pyVmomi", "pyVim") for n in names):
                offenders.append(name)
    assert offenders == []


# What the adapter may take from the core: the path rules that make a datastore path stable (drive/storage.py).
# The value types it reads into live below both layers (vsphere_values.py). The operations, the audit's judgement
# and its choice of what to search stay in drive/ and reach vsphere/ only as values and callables passed in.
VSPHERE_MAY_IMPORT_FROM_DRIVE = {"esxi_configdrive.drive.storage"}


def test_the_shared_values_import_neither_layer() -> None:
    mods = modules()
    tree, home = mods["esxi_configdrive.vsphere_values"]
    layers = ("esxi_configdrive.drive", "esxi_configdrive.vsphere.")
    assert {dep for dep in imported(tree, home, set(mods)) if dep.startswith(layers)} == set()


def test_the_vsphere_layer_takes_only_path_rules_from_drive() -> None:
    mods = modules()
    offenders = {
        (name, dep)
        for name, (tree, home) in mods.items()
        if name.startswith("esxi_configdrive.vsphere")
        for dep in imported(tree, home, set(mods))
        if dep.startswith("esxi_configdrive.drive") and dep not in VSPHERE_MAY_IMPORT_FROM_DRIVE
    }
    assert offenders == set()


def test_no_import_cycles() -> None:
    mods = modules()
    graph = {name: imported(tree, home, set(mods)) - {name} for name, (tree, home) in mods.items()}
    # a package's __init__ importing its own modules is how a package presents them, not a loop of ideas
    graph = {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph.items()}
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    assert cycles == []


def test_the_operations_never_branch_on_a_dry_run() -> None:
    for name, (tree, _) in modules().items():
        if not name.startswith("esxi_configdrive.drive.") or name.endswith((".effects", ".result", ".audit")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.If):
                names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
                attrs = {n.attr for n in ast.walk(node.test) if isinstance(n, ast.Attribute)}
                assert "dry_run" not in names | attrs, f"{name}: line {node.lineno} branches on a dry run"


def test_every_module_has_a_row_in_the_test_table() -> None:
    """docs/testing.md's module -> tests table names every module of the package, and every test file it names
    exists, so the table stays the way to find a module's tests."""
    doc = (PACKAGE.parent / "docs" / "testing.md").read_text()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent != PACKAGE:
            continue
        assert f"| `{path.relative_to(PACKAGE.parent).as_posix()}`" in doc, path
    tests = PACKAGE.parent / "tests"
    section = doc.split("## Which tests test a module", 1)[1].split("\n## ", 1)[0]
    for module, named in re.findall(r"^\| `(esxi_configdrive/[\w/]+\.py)`[^|]*\| ([^|]*) \|$", section, re.M):
        if not (PACKAGE.parent / module).exists():
            continue  # a row written ahead for a module another branch brings
        for name in re.findall(r"\b(?:tests/\w+/)?test_\w+\.py\b", named):
            found = [tests / name.removeprefix("tests/"), tests / "ansible" / name]
            assert any(path.exists() for path in found), (module, name)
