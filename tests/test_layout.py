"""The house rules, checked on the source tree: no import circle between any two of memtax's
modules (function-local imports included), no oversized library module, no long public entry
function. Each fails by naming the offenders."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("memtax", "analysis", "features", "engine", "kernels")
MAX_MODULE_LINES = 600
MAX_PUBLIC_FUNCTION_LINES = 80


def _library_files() -> list[Path]:
    return sorted(p for top in PACKAGES for p in (ROOT / top).rglob("*.py")
                  if "__pycache__" not in p.parts)


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected group of two or more modules (a module importing itself does
    not happen in Python source)."""
    digraph = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            digraph.add_edge(module, imported)
    return sorted(sorted(c) for c in nx.strongly_connected_components(digraph) if len(c) > 1)


def n_code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the signature to the end, less the docstring: a long explanation is welcome."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return (body[1].lineno - node.lineno) - (body[0].end_lineno - body[0].lineno + 1) \
            + (node.end_lineno - body[1].lineno + 1)
    return node.end_lineno - node.lineno + 1


def test_function_length_leaves_out_the_docstring():
    source = 'def f(a,\n      b):\n    """Doc\n\n    more."""\n    x = a\n    return x + b\n'
    (node,) = ast.parse(source).body
    assert n_code_lines(node) == 4


def test_cycle_finder_finds_a_planted_circle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_import_circle_anywhere():
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    assert import_cycles(graph) == []


def test_no_library_module_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in _library_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_long_public_entry_function():
    long = {}
    for path in _library_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and not node.name.startswith("_"):
                if n_code_lines(node) > MAX_PUBLIC_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = n_code_lines(node)
    assert long == {}
