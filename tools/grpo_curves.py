"""GRPO's reward curve and its held-out GenEval against the images it generated (docs/methods.md, "GRPO on mini").

Left: the trained reward of every iteration's rollouts (``reward/<name>`` in a GRPO checkpoint's train_log.jsonl, one
value per iteration: the mean over its P x G images) against the images generated so far, with a moving average over
``--window`` iterations (each iteration's prompts differ, so single iterations are noisy). Right: the suite headline's
paired delta against vanilla (95% CI) of a sweep's cells against their images generated (``sweep.json``: each
cell a separate run of that budget), one line per method.

    python tools/grpo_curves.py --log "rule=results/checkpoints/<hash>/train_log.jsonl" \
        --sweep results/sweeps/<name>/sweep.json --out docs/grpo/curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def iterations(path: Path) -> list[dict]:
    """One row per iteration (its last logged step), in order."""
    rows: dict[float, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if "iteration" in row:
                rows[row["iteration"]] = row
    return [rows[k] for k in sorted(rows)]


def moving_average(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        out.append(sum(part) / len(part))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--log", action="append", default=[], metavar="LABEL=TRAIN_LOG", help="a GRPO train_log.jsonl (repeatable)"
    )
    ap.add_argument(
        "--sweep", default=None, help="a sweep.json whose cells give the held-out delta vs images generated"
    )
    ap.add_argument("--window", type=int, default=8, help="iterations in the moving average")
    ap.add_argument("--out", required=True, help="PNG path (an SVG is written beside it)")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "craft-bench"
    panels = 1 + bool(args.sweep)
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    colors = plt.get_cmap("tab10")
    n = 0
    for spec in args.log:
        label, _, path = spec.partition("=")
        rows = iterations(Path(path))
        for key in [k for k in rows[0] if k.startswith("reward/")]:
            xs, ys = [r["images"] for r in rows], [r[key] for r in rows]
            ax.plot(xs, ys, "o", ms=2.5, alpha=0.35, color=colors(n % 10))
            ax.plot(xs, moving_average(ys, args.window), color=colors(n % 10), lw=1.6, label=f"{label}: {key[7:]}")
            n += 1
    ax.set_xlabel("images generated")
    ax.set_ylabel(f"mean reward of the iteration's rollouts (line: {args.window}-iteration mean)")
    ax.set_title("trained reward")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    if args.sweep:
        doc = json.loads(Path(args.sweep).read_text())
        ax = axes[0, 1]
        methods = [m for m in dict.fromkeys(c["method"] for c in doc["cells"]) if m != "vanilla"]
        for i, m in enumerate(methods):
            cells = sorted(
                (c for c in doc["cells"] if c["method"] == m and c.get("delta_vs_vanilla")),
                key=lambda c: c["images_generated"],
            )
            if not cells:
                continue
            xs = [c["images_generated"] for c in cells]
            d = [c["delta_vs_vanilla"] for c in cells]
            ax.errorbar(
                xs,
                [x["delta"] for x in d],
                yerr=[[x["delta"] - x["ci_low"] for x in d], [x["ci_high"] - x["delta"] for x in d]],
                fmt="o-",
                capsize=3,
                color=colors((n + i) % 10),
                label=m,
            )
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("images generated for training (log)")
        ax.set_ylabel(f"{doc.get('headline', 'overall')}: delta vs vanilla (95% CI)")
        ax.set_title(f"held-out {doc.get('suite', '')}")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(out.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None})


if __name__ == "__main__":
    main()
