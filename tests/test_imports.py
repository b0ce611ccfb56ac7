"""No import cycle among craft-bench's modules, counting every import (module-level, function-local, TYPE_CHECKING).

The graph is read from the source with ``ast`` by tools/import_graph.py (which also prints it by layer for
docs/architecture.md); nothing is imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scan_sees_every_module_and_every_kind_of_import(tmp_path):
    ig = _tool()
    mods = ig.modules()
    # package-dir: craft_bench.methods is methods/, craft_bench.suites is suites/
    assert mods["craft_bench.methods.craft"].parent.name == "methods"
    assert mods["craft_bench.suites.geneval"].parent.name == "suites"
    assert {"craft_bench", "craft_bench.train.diffusion", "craft_bench.mini.prompts"} <= set(mods)
    src = tmp_path / "m.py"
    src.write_text(
        "import craft_bench.store as s\n"
        "from craft_bench import registry\n"  # a submodule named in a from-import
        "from craft_bench.api import Checkpoint\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from craft_bench.world import World\n"
        "def f():\n    from craft_bench.train import loop\n"  # function-local
        "from .errors import UserError\n"  # relative, as if in craft_bench
    )
    found = ig.imports_of("craft_bench.m", src, set(mods))
    assert found == {
        "craft_bench.store",
        "craft_bench.registry",
        "craft_bench.api",
        "craft_bench.world",
        "craft_bench.train.loop",
        "craft_bench.errors",
    }


def test_a_cycle_is_found_and_named():
    ig = _tool()
    assert ig.find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert ig.find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    ig = _tool()
    graph = ig.graph()
    cycle = ig.find_cycle(graph)
    assert cycle is None, (
        "import cycle: "
        + " -> ".join(cycle)
        + "\n(every cycle: "
        + "; ".join(", ".join(c) for c in ig.cycles(graph))
        + ")"
    )
