"""results.json: what a valid one holds, and the one reader every verb uses (run's cache hit, compare, leaderboard,
report, sweep, the Python API).

A file that is not JSON, or is JSON but not a craft-bench result (another tool's results.json, a hand-edited one that
lost a field), is refused with one line naming the file and what is wrong, never a KeyError deep in a table.
Verbs that read many runs (leaderboard, report) skip such a file with a warning and go on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from craft_bench.errors import UserError

RESULTS_FILE = "results.json"
_TEXT_FIELDS = ("suite", "method", "model", "spec_hash")
_METRIC_NUMBERS = ("value", "ci_low", "ci_high")


class NotResults(UserError):
    """A results.json that cannot be read as a craft-bench result: ``path`` and what is wrong with it (``why``)."""

    def __init__(
        self,
        path: Path | str,
        why: str,
        fix: str = "give a run folder that `craft-bench run` finished, or its results.json",
    ) -> None:
        super().__init__(f"{path}: {why}; {fix}")
        self.path, self.why = Path(path), why


def problem(doc: Any) -> str | None:
    """What makes ``doc`` not a craft-bench results.json, or None when it is one."""
    if not isinstance(doc, dict):
        return f"it holds a JSON {type(doc).__name__}, not an object"
    for key in _TEXT_FIELDS:
        if not isinstance(doc.get(key), str) or not doc[key]:
            return f"it has no '{key}'" if key not in doc else f"its '{key}' is not a name"
    metrics = doc.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return "it has no 'metrics'"
    for name, m in metrics.items():
        if not isinstance(m, dict):
            return f"its metric '{name}' is not an object"
        for key in _METRIC_NUMBERS:
            v = m.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"its metric '{name}' has no finite '{key}'"
    if not isinstance(doc.get("metric_defs", []), list):
        return "its 'metric_defs' is not a list"
    return None


def results_path(path: str | Path) -> Path:
    """A run folder or a results.json -> the results.json path (not checked)."""
    p = Path(path).expanduser()
    return p / RESULTS_FILE if p.is_dir() else p


def read_results(path: str | Path) -> dict[str, Any]:
    """The results of a run folder or results.json; a missing, unreadable, malformed or foreign file is a one-line
    ``NotResults`` naming it."""
    p = results_path(path)
    if not p.is_file():
        raise NotResults(path, "no results.json there")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NotResults(p, f"not a readable results.json ({type(exc).__name__}: {exc})") from None
    why = problem(doc)
    if why is not None:
        raise NotResults(p, f"not a craft-bench results.json ({why})")
    return doc
