"""Sweep pages: data efficiency, training compute, training curves and reward hacking of a method sweep.

Reads the sweep.json `craft-bench sweep` writes (``craft_bench.sweep``; format in docs/report.md) and each cell's
train_log.jsonl (one JSON object per logged step: ``step`` plus any numbers, e.g. ``loss``, ``reward``, ``kept``).
Tested with a hand-written sweep.json over real mini runs (tests/test_report.py) and with a real sweep
(tests/test_sweep.py). The sweep verb draws its own plots with ``plots`` too.

Plots are drawn with matplotlib (Agg) as PNG and SVG, the SVG with a fixed hash salt and no date so a
rebuild of the same sweep writes the same bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from craft_bench.errors import UserError
from craft_bench.report.html import MISSING, code, esc, kv_table, num, page, slug

SWEEP_SCHEMA_VERSION = 1


@dataclass
class Cell:
    method: str
    budget: float | None
    seed: int
    headline: dict[str, Any]  # {value, ci_low, ci_high[, n]}
    delta: (
        dict[str, Any] | None
    )  # paired delta vs the baseline method (sweep.json "delta_vs_vanilla"): {delta, ci_low, ci_high, p_value, verdict}
    samples_used: float | None
    train_s: dict[str, float]  # seconds by stage
    images_generated: Any = None
    reward_calls: Any = None
    peak_memory_mb: Any = None
    run_dir: Path | None = None
    run_id: str | None = None
    train_log: list[dict[str, Any]] = field(default_factory=list)
    train_log_path: Path | None = None

    @property
    def train_total(self) -> float:
        return float(sum(self.train_s.values()))

    @property
    def label(self) -> str:
        budget = "" if self.budget is None else f" @{self.budget:g}"
        return f"{self.method}{budget} s{self.seed}"


@dataclass
class Sweep:
    path: Path
    name: str
    data: dict[str, Any]
    cells: list[Cell]

    @property
    def slug(self) -> str:
        return slug(self.name)

    @property
    def page(self) -> str:
        return f"sweep-{self.slug}.html"


def _resolve(path: str | None, sweep_path: Path) -> Path | None:
    """A path in sweep.json: absolute, relative to the sweep.json's folder, or to the results root above it."""
    if not path:
        return None
    p = Path(path)
    if p.is_absolute():
        return p if p.exists() else None
    for base in [sweep_path.parent, *sweep_path.parents]:
        if (base / p).exists():
            return (base / p).resolve()
    return None


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: expected a number, got {json.dumps(value)}; fix the sweep.json")
    return float(value)


def _read_train_log(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{n}: not a JSON line; fix or remove the train log") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep.json; a malformed one is a one-line error naming the file and field."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable sweep.json ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or not data["cells"]:
        raise UserError(f"{path}: a sweep.json needs a non-empty 'cells' list (see docs/report.md)")
    cells = []
    for i, raw in enumerate(data["cells"]):
        where = f"{path}: cells[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("method"), str):
            raise UserError(f"{where}: needs a 'method' name")
        head = raw.get("headline")
        if not isinstance(head, dict) or _number(head.get("value"), f"{where}.headline.value") is None:
            raise UserError(f"{where}: needs 'headline': {{'value': ..., 'ci_low': ..., 'ci_high': ...}}")
        train_s = raw.get("train_s") or {}
        if not isinstance(train_s, dict):
            train_s = {"train": _number(train_s, f"{where}.train_s")}
        train_s = {k: _number(v, f"{where}.train_s.{k}") or 0.0 for k, v in train_s.items()}
        log_path = _resolve(raw.get("train_log"), path)
        run_dir = _resolve(raw.get("run"), path)
        if run_dir is not None and run_dir.is_file():
            run_dir = run_dir.parent
        cells.append(
            Cell(
                method=raw["method"],
                budget=_number(raw.get("budget"), f"{where}.budget"),
                seed=int(raw.get("seed", 0)),
                headline=head,
                delta=raw.get("delta_vs_vanilla"),
                samples_used=_number(raw.get("samples_used"), f"{where}.samples_used"),
                train_s=train_s,
                images_generated=raw.get("images_generated"),
                reward_calls=raw.get("reward_calls"),
                peak_memory_mb=raw.get("peak_memory_mb"),
                run_dir=run_dir if run_dir and (run_dir / "results.json").is_file() else None,
                train_log=_read_train_log(log_path) if log_path else [],
                train_log_path=log_path,
            )
        )
    name = str(data.get("name") or (path.parent.name if path.name == "sweep.json" else path.stem))
    return Sweep(path, name, data, cells)


# --------------------------------------------------------------------------- plots


def baseline_of(sweep: Sweep) -> str:
    """The method every delta of the sweep is paired against (sweep.json's ``baseline``)."""
    return str(sweep.data.get("baseline") or "the baseline")


def _methods(sweep: Sweep) -> list[str]:
    return list(dict.fromkeys(c.method for c in sweep.cells))


def _is_reference(cell: Cell) -> bool:
    """A cell that trained nothing (the baseline): drawn as a horizontal band, not a point at x = 0 on a log axis."""
    return not cell.samples_used and not cell.train_total


def _save(fig: Any, out: Path, stem: str) -> tuple[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{stem}.png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(out / f"{stem}.svg", bbox_inches="tight", metadata={"Date": None})
    return f"{out.name}/{stem}.png", f"{out.name}/{stem}.svg"


def _headline_plot(
    sweep: Sweep, x_of: Any, xlabel: str, title: str, out: Path, stem: str, tick_every_x: bool = True
) -> tuple[str, str] | None:
    """``tick_every_x``: a tick at each distinct x when there are at most 8 (budgets); else matplotlib's log ticks
    (seconds, which differ from cell to cell)."""
    import matplotlib.pyplot as plt

    methods = _methods(sweep)
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    drew = False
    for m in methods:
        cells = [c for c in sweep.cells if c.method == m]
        refs = [c for c in cells if _is_reference(c)]
        pts = [(x_of(c), c) for c in cells if not _is_reference(c) and x_of(c)]
        for c in refs:
            v = float(c.headline["value"])
            ax.axhline(v, color=colors[m], ls="--", lw=1, label=f"{m} (no training)" if c is refs[0] else None)
            if c.headline.get("ci_low") is not None:
                ax.axhspan(c.headline["ci_low"], c.headline["ci_high"], color=colors[m], alpha=0.12, lw=0)
        if not pts:
            continue
        drew = True
        xs = [x for x, _ in pts]
        ys = [float(c.headline["value"]) for _, c in pts]
        lo = [y - float(c.headline.get("ci_low", y)) for y, (_, c) in zip(ys, pts)]
        hi = [float(c.headline.get("ci_high", y)) - y for y, (_, c) in zip(ys, pts)]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", color=colors[m], capsize=3, label=m)
        means: dict[float, list[float]] = {}
        for x, y in zip(xs, ys):
            means.setdefault(x, []).append(y)
        line = sorted((x, sum(v) / len(v)) for x, v in means.items())
        ax.plot([p[0] for p in line], [p[1] for p in line], color=colors[m], lw=1.2)
    if not drew and not any(_is_reference(c) for c in sweep.cells):
        plt.close(fig)
        return None
    if drew:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

        ax.set_xscale("log")
        xs_all = sorted({x_of(c) for c in sweep.cells if not _is_reference(c) and x_of(c)})
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        if tick_every_x and len(xs_all) <= 8:
            ax.xaxis.set_major_locator(FixedLocator(xs_all))
            ax.xaxis.set_minor_locator(NullLocator())
        elif xs_all[-1] < 10 * xs_all[0]:  # within a decade: label the minor ticks 2, 3 and 5 too (more would touch)
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "235" else ""))
        else:
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(plain)
        ax.margins(x=0.08)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{sweep.data.get('headline', 'overall')} (95% CI)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    paths = _save(fig, out, stem)
    plt.close(fig)
    return paths


def _delta_plot(sweep: Sweep, out: Path) -> tuple[str, str] | None:
    """Paired Δ vs vanilla against samples used: one marker per seed (its 95% CI), a line through the seed means, and
    the zero line, so a gain that flips sign across seeds is visible at a glance."""
    import matplotlib.pyplot as plt

    cells = [c for c in sweep.cells if not _is_reference(c) and c.delta and c.samples_used]
    if not cells:
        return None
    methods = [m for m in _methods(sweep) if any(c.method == m for c in cells)]
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(_methods(sweep))}
    seeds = sorted({c.seed for c in cells})
    markers = "os^vDP*X"
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.axhline(0.0, color="black", lw=0.8)
    for j, m in enumerate(methods):
        mine = [c for c in cells if c.method == m]
        shift = 1.0 + 0.04 * (j - (len(methods) - 1) / 2)  # a small multiplicative dodge on the log axis
        for c in mine:
            d = c.delta
            y = float(d["delta"])
            err = [[y - float(d.get("ci_low", y))], [float(d.get("ci_high", y)) - y]]
            ax.errorbar(
                [c.samples_used * shift],
                [y],
                yerr=err,
                fmt=markers[seeds.index(c.seed) % len(markers)],
                color=colors[m],
                capsize=2,
                ms=4,
                alpha=0.85,
            )
        means: dict[float, list[float]] = {}
        for c in mine:
            means.setdefault(c.samples_used, []).append(float(c.delta["delta"]))
        line = sorted((x, sum(v) / len(v)) for x, v in means.items())
        ax.plot([p[0] * shift for p in line], [p[1] for p in line], color=colors[m], lw=1.2, label=m)
    for k, s in enumerate(seeds):
        ax.plot([], [], markers[k % len(markers)], color="gray", label=f"seed {s}")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("training samples used (log)")
    ax.set_ylabel(f"Δ {sweep.data.get('headline', 'overall')} vs {baseline_of(sweep)} (95% CI)")
    ax.set_title(f"paired gain over {baseline_of(sweep)}, by seed")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best", ncol=2)
    paths = _save(fig, out, "delta-by-seed")
    plt.close(fig)
    return paths


def _curves_plot(sweep: Sweep, out: Path) -> tuple[tuple[str, str], list[str]] | None:
    """One panel per logged quantity (loss, reward, kept samples, ...) against the step; a line per cell."""
    import matplotlib.pyplot as plt

    cells = [c for c in sweep.cells if c.train_log]
    keys: list[str] = []
    for c in cells:
        for row in c.train_log:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                    keys.append(k)
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    methods = _methods(sweep)
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    styles = ["-", "--", ":", "-."]
    for ax, key in zip(axes.flat, keys):
        for c in cells:
            pts = [
                (r.get("step", n), r[key]) for n, r in enumerate(c.train_log) if isinstance(r.get(key), (int, float))
            ]
            if pts:
                budgets = sorted({x.budget or 0 for x in sweep.cells if x.method == c.method})
                ls = styles[budgets.index(c.budget or 0) % len(styles)]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colors[c.method], ls=ls, lw=1.2, label=c.label)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    paths = _save(fig, out, "training-curves")
    plt.close(fig)
    return paths, keys


def _gains_plot(sweep: Sweep, out: Path) -> tuple[str, str] | None:
    """One panel per judge (the suite's headline and every reward a cell trained on or was judged by): each trained
    cell's paired gain over vanilla against its training compute, a line per method; trained-on gains are filled
    markers, held-out ones open, so reward hacking (a rising trained reward beside a flat held-out judge) shows."""
    import matplotlib.pyplot as plt

    rows = [r for r in sweep.data.get("reward_hacking") or [] if isinstance(r.get("gain"), (int, float))]
    seconds = {(c.method, c.budget, c.seed): c.train_total for c in sweep.cells}
    rows = [
        r for r in rows if seconds.get((r.get("method"), _number(r.get("budget"), "budget"), int(r.get("seed", 0))))
    ]
    if not rows:
        return None
    judges = list(dict.fromkeys(r["judge"] for r in rows))
    methods = _methods(sweep)
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(judges), figsize=(4.2 * len(judges), 3.4), squeeze=False)
    for ax, judge in zip(axes.flat, judges):
        for m in methods:
            pts = sorted(
                (seconds[(r["method"], _number(r.get("budget"), "budget"), int(r.get("seed", 0)))], r)
                for r in rows
                if r["judge"] == judge and r["method"] == m
            )
            if not pts:
                continue
            xs, ys = [x for x, _ in pts], [r["gain"] for _, r in pts]
            lo = [y - r.get("ci_low", y) for y, (_, r) in zip(ys, pts)]
            hi = [r.get("ci_high", y) - y for y, (_, r) in zip(ys, pts)]
            trained = pts[0][1].get("trained_on")
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                fmt="o",
                color=colors[m],
                mfc=colors[m] if trained else "white",
                capsize=3,
                label=f"{m} ({'trained on' if trained else 'held out'})",
            )
            ax.plot(xs, ys, color=colors[m], lw=1.2)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{judge}: gain over {baseline_of(sweep)}")
        ax.set_xlabel("training compute, seconds (log)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    paths = _save(fig, out, "rewards-vs-compute")
    plt.close(fig)
    return paths


def plots(sweep: Sweep, out: Path, target: Path | None = None) -> dict[str, Any]:
    """The sweep's plots (PNG + SVG) in ``target`` (default: ``out/sweep-<name>/``, the report's layout); paths
    returned relative to ``target``'s parent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "craft-bench"
    target = target or out / f"sweep-{sweep.slug}"
    return {
        "samples": _headline_plot(
            sweep,
            lambda c: c.samples_used,
            "training samples used (log)",
            "headline vs samples used",
            target,
            "headline-vs-samples",
        ),
        "compute": _headline_plot(
            sweep,
            lambda c: c.train_total,
            "training compute, seconds (log)",
            "headline vs training compute",
            target,
            "headline-vs-compute",
            tick_every_x=False,
        ),
        "delta": _delta_plot(sweep, target),
        "images": _headline_plot(
            sweep,
            lambda c: c.images_generated if isinstance(c.images_generated, (int, float)) else None,
            "images generated for training (log)",
            "headline vs images generated",
            target,
            "headline-vs-images",
            tick_every_x=False,
        ),
        "gains": _gains_plot(sweep, target),
        "curves": _curves_plot(sweep, target),
    }


# --------------------------------------------------------------------------- page


def _ci(d: dict[str, Any] | None, signed: bool = False) -> str:
    if not isinstance(d, dict):
        return f'<td class="num" data-value="">{MISSING}</td>'
    value = d.get("value", d.get("delta", d.get("gain")))
    fmt = (lambda x: f"{x:+.4f}") if signed else (lambda x: num(x))
    ci = f'<span class="ci">[{fmt(d["ci_low"])}, {fmt(d["ci_high"])}]</span>' if d.get("ci_low") is not None else ""
    return (
        f'<td class="num" data-value="{value!r}"><span class="v">'
        f"{fmt(value) if value is not None else MISSING}</span>{ci}</td>"
    )


def _figure(paths: tuple[str, str] | None, caption: str, wide: bool = False) -> str:
    if not paths:
        return f'<p class="note">{esc(caption)}: nothing to plot</p>'
    png, svg = paths
    return (
        f'<figure class="plot{" wide" if wide else ""}"><img src="{esc(png)}" alt="{esc(caption)}"><figcaption>'
        f'{esc(caption)} · <a href="{esc(svg)}">SVG</a> · <a href="{esc(png)}">PNG</a></figcaption></figure>'
    )


def cells_table(sweep: Sweep) -> str:
    stages = list(dict.fromkeys(k for c in sweep.cells for k in c.train_s))
    head = [
        "method",
        "budget",
        "seed",
        "headline",
        f"Δ vs {baseline_of(sweep)}",
        "verdict",
        "samples used",
        "train s (total)",
        *[f"{s} s" for s in stages],
        "images generated",
        "reward calls",
        "peak MB",
        "run",
    ]
    types = ["", "num", "num", "num", "num", "", "num", "num", *["num"] * len(stages), "num", "num", "num", ""]
    rows = []
    for c in sweep.cells:
        run = f'<a href="index.html#run-{c.run_id}"><code>{c.run_id}</code></a>' if c.run_id else MISSING
        verdict = (c.delta or {}).get("verdict", "")
        cells = [
            f"<td>{esc(c.method)}</td>",
            f'<td class="num" data-value="{c.budget if c.budget is not None else ""}">'
            f"{num(c.budget, 0) if c.budget is not None else MISSING}</td>",
            f'<td class="num" data-value="{c.seed}">{c.seed}</td>',
            _ci(c.headline),
            _ci(c.delta, signed=True),
            f'<td class="wrap verdict {esc(verdict.split()[0] if verdict else "")}">{esc(verdict)}</td>',
            f'<td class="num" data-value="{c.samples_used if c.samples_used is not None else ""}">'
            f"{num(c.samples_used, 0)}</td>",
            f'<td class="num" data-value="{c.train_total!r}">{num(c.train_total, 1)}</td>',
            *[f'<td class="num" data-value="{c.train_s.get(s, "")}">{num(c.train_s.get(s), 1)}</td>' for s in stages],
            *[
                f'<td class="num" data-value="{v if v is not None else ""}">'
                f"{num(v, 1) if isinstance(v, float) else num(v)}</td>"
                for v in (c.images_generated, c.reward_calls, c.peak_memory_mb)
            ],
            f"<td>{run}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    ths = "".join(f'<th data-type="{t}">{esc(h)}</th>' if t else f"<th>{esc(h)}</th>" for h, t in zip(head, types))
    return (
        f'<div class="scroll"><table class="lb sortable" id="sweep-cells"><thead><tr>{ths}</tr></thead><tbody>'
        f"{''.join(rows)}</tbody></table></div>"
    )


def compute_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">not in this sweep.json</p>'
    body = []
    for r in rows:
        ratio = r.get("ratio")
        text = (
            f"{ratio:.1f}×" if isinstance(ratio, (int, float)) else esc(r.get("note") or "not reached within the grid")
        )
        body.append(
            f'<tr><td>{esc(r.get("method", "?"))}</td><td>{esc(r.get("reference", "?"))}</td><td class="num">'
            f"{num(r.get('budget'), 0)}</td>"
            f'<td class="num">{num(r.get("reference_train_s"), 1)}</td><td class="num">{num(r.get("train_s"), 1)}</td>'
            f'<td class="num" data-value="{ratio if ratio is not None else ""}">{text}</td></tr>'
        )
    return (
        '<table class="lb"><thead><tr><th>method</th><th>to match</th><th>reference budget</th><th>reference '
        "train s</th>"
        f"<th>train s needed</th><th>ratio</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def hacking_table(rows: list[dict[str, Any]]) -> str:
    """Gain per judge, method and budget; the rewards a method trained on are marked, held-out judges are not."""
    if not rows:
        return '<p class="note">not in this sweep.json</p>'
    judges = list(dict.fromkeys(r.get("judge", "?") for r in rows))
    keyed: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r.get("method", "?"), r.get("budget"), r.get("seed", 0)), {})[r.get("judge", "?")] = r
    body = []
    for (method, budget, seed), by_judge in keyed.items():
        cells = []
        for j in judges:
            r = by_judge.get(j)
            if r is None:
                cells.append(f'<td class="num">{MISSING}</td>')
                continue
            trained = bool(r.get("trained_on"))
            mark = (
                '<span class="tag trained">trained on</span>' if trained else '<span class="tag held">held out</span>'
            )
            gain = r.get("gain")
            ci = (
                f'<span class="ci">[{r["ci_low"]:+.4f}, {r["ci_high"]:+.4f}]</span>'
                if r.get("ci_low") is not None
                else ""
            )
            cls = "trained" if trained else "held"
            cells.append(
                f'<td class="num {cls}" data-value="{gain!r}"><span class="v">{gain:+.4f}</span>{ci}{mark}</td>'
                if isinstance(gain, (int, float))
                else f'<td class="num">{MISSING}</td>'
            )
        body.append(
            f'<tr><td>{esc(method)}</td><td class="num">'
            f'{num(budget, 0) if budget is not None else MISSING}</td><td class="num">{esc(seed)}</td>'
            f"{''.join(cells)}</tr>"
        )
    heads = "".join(f"<th>{esc(j)}</th>" for j in judges)
    return (
        '<div class="scroll"><table class="lb hacking"><thead><tr><th>method</th><th>budget</th><th>seed</th>'
        f"{heads}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def spread_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f'<p class="note">{MISSING} (one seed, or no trained cell)</p>'
    head = ["method", "budget", "seeds", "Δ mean", "Δ sd", "Δ min", "Δ max", "better / worse", "same sign"]
    body = []
    for r in rows:
        sd = num(r["sd"], 4) if r.get("sd") is not None else MISSING
        body.append(
            f'<tr><td>{esc(r["method"])}</td><td class="num">{num(r["budget"], 0)}</td>'
            f'<td class="num">{len(r["seeds"])}</td><td class="num">{r["mean_delta"]:+.4f}</td><td '
            f'class="num">{sd}</td>'
            f'<td class="num">{r["min"]:+.4f}</td><td class="num">{r["max"]:+.4f}</td>'
            f'<td class="num">{r["better"]} / {r["worse"]}</td><td>{"yes" if r["same_sign"] else "no"}</td></tr>'
        )
    heads = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (
        f'<div class="scroll"><table class="lb"><thead><tr>{heads}</tr></thead><tbody>{"".join(body)}</tbody>'
        "</table></div>"
    )


def sweep_page(sweep: Sweep, figures: dict[str, Any], generated: str) -> str:
    d = sweep.data
    methods = _methods(sweep)
    budgets = sorted({c.budget for c in sweep.cells if c.budget is not None})
    seeds = sorted({c.seed for c in sweep.cells})
    facts = [
        ("suite, model", f"{esc(d.get('suite', '?'))} · {esc(d.get('model', '?'))}"),
        ("methods", esc(", ".join(methods))),
        ("budgets (training samples)", esc(", ".join(f"{b:g}" for b in budgets)) or MISSING),
        ("seeds", esc(", ".join(map(str, seeds)))),
        ("sweep wall time", f"{num(d.get('wall_s'), 0)} s" if d.get("wall_s") is not None else MISSING),
        ("created", esc(d.get("created", MISSING))),
        ("sweep.json", f'<a href="sweep-{sweep.slug}/sweep.json">copy</a> of {code(str(sweep.path))}'),
    ]
    curves = figures.get("curves")
    logs = [c for c in sweep.cells if c.train_log]
    body = [
        f"<h1>sweep {esc(sweep.name)}</h1>",
        kv_table(facts),
        '<h2>cells</h2><p class="note">One run per method, budget and seed; headline with its 95% CI, the '
        "paired delta against "
        f"{esc(baseline_of(sweep))} on the same prompts and seeds, and the training cost by stage.</p>",
        cells_table(sweep),
        "<h2>data efficiency and compute</h2>",
        '<div class="plots">',
        _figure(figures.get("samples"), "headline vs training samples used"),
        _figure(figures.get("compute"), "headline vs training compute (seconds, log scale)"),
        _figure(
            figures.get("delta"),
            f"paired gain over {baseline_of(sweep)} by seed (a gain that flips sign across seeds is not a gain)",
        ),
        _figure(figures.get("images"), "headline vs images generated for training (log scale)"),
        "</div>",
        '<h2>across seeds</h2><p class="note">Per method and budget: the paired deltas against '
        f"{esc(baseline_of(sweep))} over the seeds.</p>",
        spread_table(d.get("seed_spread") or []),
        '<h2>compute to match</h2><p class="note">Training seconds each method needs to reach the reference '
        "method's score at its budget, as a ratio.</p>",
        compute_table(d.get("compute_to_match") or []),
        '<h2>reward hacking</h2><p class="note">Gain over '
        f"{esc(baseline_of(sweep))} on the rewards a method trained on, next to its gain on judges it did not "
        "train on.</p>",
        hacking_table(d.get("reward_hacking") or []),
        _figure(figures.get("gains"), f"gain over {baseline_of(sweep)} on every judge vs training compute", wide=True),
        "<h2>training curves</h2>",
        _figure(
            curves[0] if curves else None,
            "training curves: " + ", ".join(curves[1]) if curves else "training curves",
            wide=True,
        ),
        f'<p class="note">{len(logs)} of {len(sweep.cells)} cells have a train_log.jsonl.</p>',
    ]
    return page(f"sweep {sweep.name}", "\n".join(body), generated, [(f"sweep {sweep.name}", "")])
