"""Text tables for run results, leaderboards and comparisons (markdown, CSV, JSON)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from craft_bench.errors import UserError


def _fmt(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def results_table(results: dict[str, Any]) -> str:
    """Metric | Value | 95% CI | n, headline first."""
    head = results.get("headline", "overall")
    names = sorted(results["metrics"], key=lambda n: (n != head, list(results["metrics"]).index(n)))
    tested = any("p_value" in m for m in results["metrics"].values())
    rows = []
    for name in names:
        m = results["metrics"][name]
        arrow = "↑" if m.get("higher_is_better", True) else "↓"
        row = [
            f"{m.get('display_name', name)} {arrow}",
            _fmt(m["value"]),
            f"[{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]",
            m["n"],
        ]
        rows.append(row + ([_fmt(m.get("p_value"))] if tested else []))
    title = (
        f"{results['method']} x {results['suite']} on {results['model']} (spec {results['spec_hash'][:8]}, seed "
        f"{results.get('seed', 0)})"
    )
    t = results.get("timing", {})
    footer = (
        f"generate {t.get('generate_s', 0):.1f}s, score {t.get('score_s', 0):.1f}s, train "
        f"{t.get('train_s', 0):.1f}s on {t.get('device', '?')}"
    )
    headers = ["Metric", "Value", "95% CI", "n"] + (["sign test p"] if tested else [])
    return f"{title}\n{markdown(headers, rows)}\n{footer}"


def load_results(path: str | Path) -> tuple[dict[str, Any], Path]:
    """A results.json, or a run folder holding one -> (results, run folder); a malformed or foreign file is one line."""
    from craft_bench.results_file import read_results, results_path

    return read_results(path), results_path(path).parent


def load_records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "samples.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir}: samples.jsonl is missing; a paired comparison needs the per-image records")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ leaderboard


FIXED_COLUMNS = ("method", "model", "seed", "spec", "settings", "train_s", "samples_used", "run_dir")


def leaderboard_rows(
    all_results: list[dict[str, Any]], settings: Sequence[str] | None = None, run_dirs: Sequence[Any] | None = None
) -> tuple[list[str], list[list[Any]]]:
    """One row per run of one suite, best headline first: method, model, seed, spec (and, when given, the settings that
    are not the defaults), then each metric (its results.json entry), train_s, samples_used (and, when given, the
    run folder)."""
    metric_names: list[str] = []
    for res in all_results:
        for name in res["metrics"]:
            if name not in metric_names:
                metric_names.append(name)
    head = all_results[0].get("headline", "overall") if all_results else "overall"
    metric_names.sort(key=lambda n: n != head)
    fixed = ["method", "model", "seed", "spec"] + (["settings"] if settings is not None else [])
    headers = fixed + metric_names + ["train_s", "samples_used"] + (["run_dir"] if run_dirs is not None else [])
    rows = []
    for i, res in enumerate(all_results):
        row: list[Any] = [res["method"], res["model"], res.get("seed", 0), res["spec_hash"][:8]]
        row += [settings[i]] if settings is not None else []
        row += [res["metrics"].get(name) for name in metric_names]
        row += [res.get("timing", {}).get("train_s", 0.0), (res.get("train") or {}).get("samples_used", "")]
        row += [str(run_dirs[i])] if run_dirs is not None else []
        rows.append(row)
    first = len(fixed)
    rows.sort(key=lambda r: -(r[first]["value"] if isinstance(r[first], dict) else float("-inf")))
    return headers, rows


def render_leaderboard(
    suite: str, all_results: list[dict[str, Any]], fmt: str, settings: Sequence[str] | None = None
) -> str:
    headers, rows = leaderboard_rows(all_results, settings)
    if fmt == "json":
        return json.dumps({"suite": suite, "rows": [dict(zip(headers, row)) for row in rows]}, indent=2)

    def cell(c: Any) -> str:
        if isinstance(c, dict):
            half = (c["ci_high"] - c["ci_low"]) / 2
            return f"{c['value']:.4f} ± {half:.4f}"
        return "" if c is None else str(c)

    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        flat_headers = []
        for h in headers:
            flat_headers += [h, f"{h}_ci_low", f"{h}_ci_high"] if h not in FIXED_COLUMNS else [h]
        w.writerow(flat_headers)
        for row in rows:
            flat: list[Any] = []
            for h, c in zip(headers, row):
                if h in FIXED_COLUMNS:
                    flat.append(c)
                elif isinstance(c, dict):
                    flat += [c["value"], c["ci_low"], c["ci_high"]]
                else:
                    flat += ["", "", ""]
            w.writerow(flat)
        return buf.getvalue()
    return f"## {suite}\n\n" + markdown(headers, [[cell(c) for c in row] for row in rows])


# ------------------------------------------------------------------ compare


def comparison_cells(c: Any) -> list[Any]:
    """One metric's row of the comparison table: metric, A, B, B - A, 95% CI, p, prompts, verdict."""
    arrow = "↑" if c.higher_is_better else "↓"
    return [
        f"{c.display_name} {arrow}",
        _fmt(c.a),
        _fmt(c.b),
        f"{c.delta:+.4f}",
        f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
        f"{c.p_value:.4g}",
        c.n_prompts,
        c.verdict,
    ]


def comparison_table(
    a: dict[str, Any], b: dict[str, Any], comps: list[Any], differences: Sequence[tuple[str, Any, Any]] = ()
) -> str:
    rows = [comparison_cells(c) for c in comps]
    title = (
        f"B = {b['method']} on {b['model']} (spec {b['spec_hash'][:8]})  vs  A = {a['method']} on {a['model']} "
        f"(spec {a['spec_hash'][:8]}), suite {a['suite']}"
    )
    n = comps[0].n_pairs if comps else 0
    differ = ""
    if differences:
        differ = (
            "settings that differ: "
            + "; ".join(f"{k} A={_value(va)} B={_value(vb)}" for k, va, vb in differences)
            + "\n"
        )
    return f"{title}\n{differ}paired over {n} shared images (same prompt, same seed)\n" + markdown(
        ["Metric", "A", "B", "B - A", "95% CI", "p", "prompts", "verdict"], rows
    )


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= 40 else text[:37] + "..."


def print_results(results: dict[str, Any], as_json: bool, footer: str) -> None:
    """What the command lines print for a results.json: it as JSON, or its table followed by ``footer``."""
    if as_json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        print(results_table(results))
        print(footer)
