"""The package layout's rules, checked on the source: no import cycles inside
sipedge, twins never imported by shared or public modules, the interval
arithmetic in one place, and the classifier's kinds and flag bits defined
once per language with the same values."""
from __future__ import annotations

import ast
import os
import re

from conftest import ROOT

SRC = os.path.join(ROOT, "src")
PKG = os.path.join(SRC, "sipedge")


def _modules() -> dict[str, str]:
    """{dotted module name: path} of every .py and .pyx module of sipedge."""
    out = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            base, ext = os.path.splitext(f)
            if ext not in (".py", ".pyx"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, base), SRC).split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join(rel)] = os.path.join(dirpath, f)
    return out


MODULES = _modules()


def _pyx_imports(text: str) -> list[str]:
    """Python-level imports of a .pyx file (``cimport`` lines are C-level)."""
    found = []
    for m in re.finditer(r"^(?:from\s+([\w.]+)\s+import\s+(?!.*\bcimport\b)|import\s+([\w.]+))",
                         text, re.M):
        found.append(m.group(1) or m.group(2))
    return found


def _resolve(mod: str, target: str, level: int, is_pkg: bool) -> str:
    if level == 0:
        return target
    parts = mod.split(".")
    if not is_pkg:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def _imports(mod: str, path: str, module_level_only: bool) -> set[str]:
    """The sipedge modules *mod* imports (``from X import name`` counts name
    when it is a module itself)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    is_pkg = os.path.basename(path).startswith("__init__.")
    names: set[str] = set()
    if path.endswith(".pyx"):
        for t in _pyx_imports(text):
            names.add(t)
    else:
        tree = ast.parse(text)
        nodes = tree.body if module_level_only else list(ast.walk(tree))
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if module_level_only and isinstance(node, (ast.If, ast.Try)):
                # `if sys.version_info ...` / try-except imports run at import time,
                # `if TYPE_CHECKING:` imports do not
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                    stack.extend(node.orelse)
                    continue
                for field in ("body", "orelse", "finalbody", "handlers"):
                    stack.extend(getattr(node, field, []))
                continue
            if isinstance(node, ast.ExceptHandler):
                stack.extend(node.body)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, node.module or "", node.level, is_pkg)
                for a in node.names:  # a submodule, else a name defined by *base*
                    sub = f"{base}.{a.name}"
                    names.add(sub if sub in MODULES else base)
    # a package's own ancestors are imported before it by Python itself: no edge
    return {n for n in names if n in MODULES and n != mod and not mod.startswith(n + ".")}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of *graph* as a list of modules, or []."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    path: list[str] = []

    def visit(n: str) -> list[str]:
        color[n] = GREY
        path.append(n)
        for m in sorted(graph[n]):
            if color[m] == GREY:
                return path[path.index(m):] + [m]
            if color[m] == WHITE:
                found = visit(m)
                if found:
                    return found
        path.pop()
        color[n] = BLACK
        return []

    for n in sorted(graph):
        if color[n] == WHITE:
            found = visit(n)
            if found:
                return found
    return []


def test_the_graph_is_read():
    """The checker sees the package: modules and edges that must exist."""
    graph = {m: _imports(m, p, True) for m, p in MODULES.items()}
    assert {"sipedge.intervals", "sipedge.allowlist.core", "sipedge.classify._common",
            "sipedge._classify", "sipedge.twilio.catalog"} <= set(MODULES)
    assert "sipedge.intervals" in graph["sipedge.allowlist.core"]
    assert "sipedge.classify._common" in graph["sipedge._classify"]
    assert "sipedge.classify._common" in graph["sipedge._py.classify"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    """Module-level imports inside sipedge form no cycle (data flows one way)."""
    graph = {m: _imports(m, p, True) for m, p in MODULES.items()}
    assert _cycle(graph) == []


def test_no_cycles_even_through_deferred_imports():
    """Also counting imports inside functions (deferred to keep start-up light):
    none of them is a way round a cycle."""
    graph = {m: _imports(m, p, False) for m, p in MODULES.items()}
    assert _cycle(graph) == []


def test_twins_are_imported_only_by_the_implementation_chooser():
    """``sipedge._py.*`` are the pure-Python twins: the shared and public
    modules and the native modules never import them (``_impl`` picks one)."""
    bad = []
    for m, p in MODULES.items():
        if m.startswith("sipedge._py") or m == "sipedge._impl":
            continue
        twins = {n for n in _imports(m, p, False) if n.startswith("sipedge._py")}
        if twins:
            bad.append((m, sorted(twins)))
    assert bad == []


def test_interval_arithmetic_lives_in_one_module():
    """CIDR splitting, merging and packing are defined in sipedge.intervals only."""
    defs = {}
    for m, p in MODULES.items():
        if not p.endswith(".py"):
            continue
        with open(p, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                defs.setdefault(node.name.lstrip("_"), []).append(m)
    for name in ("cidrs", "cidr_count", "merge_sorted", "merge_networks", "pack_intervals",
                 "unpack_intervals", "pack_columns", "unpack_columns", "flatten", "blocks_of",
                 "interval_text"):
        assert defs.get(name) == ["sipedge.intervals"], (name, defs.get(name))


def test_c_and_python_agree_on_kinds_and_flags():
    """csrc/classify.h defines the kinds and flag bits for C, classify/_common.py
    for Python: the values are the same."""
    from sipedge.classify import _common as c

    with open(os.path.join(ROOT, "csrc", "classify.h"), encoding="utf-8") as f:
        header = f.read()
    flags = {m.group(1): int(m.group(2))
             for m in re.finditer(r"#define\s+SX_F_(\w+)\s+(\d+)u?\b", header)}
    assert flags == {"FRAG_FIRST": c.F_FRAG_FIRST, "FRAG_LATER": c.F_FRAG_LATER,
                     "NOT_IP": c.F_NOT_IP, "BAD": c.F_BAD}
    kinds = {m.group(1).lower(): int(m.group(2))
             for m in re.finditer(r"\bSX_K_(\w+)\s*=\s*(\d+)", header)}
    assert kinds == {k: i for i, k in enumerate(c.KINDS)}
    nkinds = re.search(r"\bSX_NKINDS\s*=\s*(\d+)", header)
    assert nkinds and int(nkinds.group(1)) == len(c.KINDS)
    # the public names are the shared ones, not copies
    import sipedge.classify as pub

    assert (pub.FRAG_FIRST, pub.FRAG_LATER, pub.NOT_IP, pub.BAD) == (1, 2, 4, 8)
    assert pub.Report is c.Report and pub.FrameInfo is c.FrameInfo and pub.KINDS is c.KINDS
