"""The package layering, checked on the source: no import circles, no upward imports, no torch where it must
not be.

    sandbox    imports nothing of ours
    reasoner_verifiers  imports sandbox only
    reasoner   imports both
    sandbox and reasoner_verifiers never import torch

Every `import` statement counts, also those inside functions (lazy imports still make circles a reader must
untangle); only imports under `if TYPE_CHECKING:` are skipped. An edge goes to the module imported (`from a.b
import c` is `a.b.c` when that is a module, else `a.b`), not to the parent packages Python also initialises.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sandbox", "reasoner_verifiers", "reasoner")
ALLOWED = {"sandbox": set(), "reasoner_verifiers": {"sandbox"}, "reasoner": {"sandbox", "reasoner_verifiers"}}
NO_TORCH = ("sandbox", "reasoner_verifiers")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports (absolute names), TYPE_CHECKING blocks excluded."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_pkg else name.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_upward_imports(pkg):
    bad = sorted(f"{m} imports {dep}" for m, deps in GRAPH.items() if _top(m) == pkg for dep in deps
                 if _top(dep) in PACKAGES and _top(dep) != pkg and _top(dep) not in ALLOWED[pkg])
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("pkg", NO_TORCH)
def test_sandbox_and_verifiers_never_import_torch(pkg):
    bad = sorted(f"{m} imports {dep}" for m, deps in GRAPH.items() if _top(m) == pkg for dep in deps
                 if _top(dep) in ("torch", "transformers", "vllm", "deepspeed"))
    assert not bad, "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over our own modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(d for d in GRAPH[v] if d in MODULES and d != v):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            connect(v)
    return out


def test_no_import_circles():
    assert _cycles() == []


def test_the_walker_sees_lazy_and_relative_imports():
    """The checks above are only as good as the import walk: it must see imports inside functions, resolve
    relative ones, and skip TYPE_CHECKING blocks."""
    assert "reasoner.rollout.hf_engine" in GRAPH["reasoner.rollout.factory"]           # inside a function
    assert "sandbox._inside.wire" in GRAPH["sandbox.execute"]                         # `from ._inside import wire`
    assert not any(_top(d) == "transformers" for d in GRAPH["reasoner.training.grpo"])  # TYPE_CHECKING only
