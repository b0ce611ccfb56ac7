"""The import graph of craft-bench's own modules, read from the source with ``ast`` (nothing is imported).

Every import counts: module-level, function-local, under ``if TYPE_CHECKING`` -- an import inside a function is
still a dependency, only a later one. ``from craft_bench.x import y`` is an edge to ``craft_bench.x.y`` when that
is a module, else to ``craft_bench.x``. Modules map to files as pyproject's package-dir says (craft_bench.methods
is methods/, craft_bench.suites is suites/). tests/test_imports.py fails on a cycle; run as a script, this prints
the graph by layer, top to bottom (what docs/architecture.md draws): a module imports only modules of lower layers.

    python tools/import_graph.py [--edges]
"""

from __future__ import annotations

import argparse
import ast
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {
    "craft_bench": REPO / "craft_bench",
    "craft_bench.methods": REPO / "methods",
    "craft_bench.suites": REPO / "suites",
}


def modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the package."""
    found: dict[str, Path] = {}
    for pkg, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if pkg == "craft_bench" and parts and parts[0] in ("methods", "suites"):
                continue  # not there, but never shadow the package-dir mapping
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` (at ``path``) imports, anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import craft_bench.x.y as z` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, deterministic order)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (found := visit(node)):
            return found
    return None


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each holds at least one cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def layers(g: dict[str, set[str]]) -> list[list[str]]:
    """Modules by depth: layer 0 imports no package module, layer k only modules of layers < k (needs no cycle)."""
    depth: dict[str, int] = {}

    def d(v: str) -> int:
        if v not in depth:
            depth[v] = -1
            depth[v] = 1 + max((d(w) for w in g[v]), default=-1)
        return depth[v]

    for v in g:
        d(v)
    out: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for v, k in depth.items():
        out[k].append(v)
    return [sorted(layer) for layer in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="also list each module's imports")
    args = ap.parse_args()
    g = graph()
    found = cycles(g)
    if found:
        for comp in found:
            print("cycle among:", ", ".join(comp))
        raise SystemExit(1)
    short = {v: v.removeprefix("craft_bench.") for v in g}
    by_layer = layers(g)
    for k in range(len(by_layer) - 1, -1, -1):  # top: what nothing imports; bottom: what imports nothing
        layer = by_layer[k]
        print(
            textwrap.fill(
                ", ".join(short[v] for v in layer), width=116, initial_indent=f"{k:>2} ", subsequent_indent="   "
            )
        )
        if args.edges:
            for v in layer:
                print(f"    {short[v]} -> " + ", ".join(sorted(short[w] for w in g[v])))


if __name__ == "__main__":
    main()
