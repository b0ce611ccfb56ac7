"""Measure GenEval-mini judges against a person: verdict agreement on the human-labelled judge set.

The judge set (``data/mini-judge/`` in the repository; README there) holds generated mini images with a
person's label each: 1 (the prompt is satisfied under GenEval's rules), 0, or ambiguous (left out). For each
detector this applies the official rules (``suites.geneval``) to its detections and reports, per task and
overall: agreement with the labels, false negatives (labelled 1, judged 0) as a share of the 1s, and false
positives (labelled 0, judged 1) as a share of the 0s.

    python -m craft_bench.mini.eval_judge [--set data/mini-judge] [--split test] [--detectors mini,mini-v1]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from craft_bench.mini.prompts import TASKS

DEFAULT_SET = Path(__file__).resolve().parents[2] / "data" / "mini-judge"


@dataclass
class Agreement:
    n: int = 0
    agree: int = 0
    pos: int = 0
    fn: int = 0
    neg: int = 0
    fp: int = 0

    def add(self, label: int, verdict: int) -> None:
        self.n += 1
        self.agree += int(label == verdict)
        if label:
            self.pos += 1
            self.fn += int(not verdict)
        else:
            self.neg += 1
            self.fp += int(verdict)

    def wilson(self, z: float = 1.96) -> tuple[float, float]:
        """95% Wilson score interval of the agreement rate."""
        if not self.n:
            return float("nan"), float("nan")
        p, n = self.agree / self.n, self.n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
        return centre - half, centre + half

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.wilson()
        return {
            "n": self.n,
            "agree": self.agree,
            "rate": self.rate,
            "ci_low": lo,
            "ci_high": hi,
            "pos": self.pos,
            "fn": self.fn,
            "fn_rate": self.fn_rate,
            "neg": self.neg,
            "fp": self.fp,
            "fp_rate": self.fp_rate,
        }

    @property
    def rate(self) -> float:
        return self.agree / self.n if self.n else float("nan")

    @property
    def fn_rate(self) -> float:
        return self.fn / self.pos if self.pos else float("nan")

    @property
    def fp_rate(self) -> float:
        return self.fp / self.neg if self.neg else float("nan")


def read_set(set_dir: Path, labels_file: str = "labels.jsonl", split: str | None = None) -> list[dict[str, Any]]:
    """Items of the judge set joined with their labels (ambiguous ones included, ``label`` None)."""
    items = [json.loads(x) for x in (set_dir / "items.jsonl").read_text().splitlines() if x.strip()]
    labels = {
        r["id"]: r for r in (json.loads(x) for x in (set_dir / labels_file).read_text().splitlines() if x.strip())
    }
    out = []
    for it in items:
        if split and it["split"] != split:
            continue
        if it["id"] in labels:
            out.append({**it, "label": labels[it["id"]]["label"], "note": labels[it["id"]].get("note", "")})
    return out


def verdicts(detector: Any, rows: Sequence[dict[str, Any]], set_dir: Path) -> list[tuple[int, str]]:
    """(verdict, reason) of the official rules on ``detector``'s detections for each row."""
    from PIL import Image

    from craft_bench.suites.geneval_rules import detector_colors, evaluate_detections

    images = [Image.open(set_dir / "images" / f"{r['id']}.png").convert("RGB") for r in rows]
    color_fn = getattr(detector, "classify_colors", None) or detector_colors
    out = []
    for r, img, dets in zip(rows, images, detector.detect(images)):
        ok, reason, _ = evaluate_detections(dets, r["metadata"], img, color_fn)
        out.append((int(ok), reason))
    return out


def table(results: dict[str, dict[str, Agreement]]) -> str:
    cols = list(TASKS) + ["all"]
    lines = [f"{'detector':<10} {'measure':<10}" + "".join(f"{c:>15}" for c in cols)]
    for name, by_task in results.items():
        for label, fmt in (
            ("agree", lambda a: f"{a.rate:.3f} ({a.agree}/{a.n})"),
            ("95% CI", lambda a: "[{:.3f}, {:.3f}]".format(*a.wilson())),
            ("FN/pos", lambda a: f"{a.fn_rate:.3f} ({a.fn}/{a.pos})"),
            ("FP/neg", lambda a: f"{a.fp_rate:.3f} ({a.fp}/{a.neg})"),
        ):
            lines.append(f"{name:<10} {label:<10}" + "".join(f"{fmt(by_task[c]):>15}" for c in cols))
    return "\n".join(lines)


def labeller_agreement(set_dir: Path, split: str | None) -> str:
    """How the labellers' independent passes compare (from labels.jsonl's ``passes``)."""
    items = {
        json.loads(x)["id"]: json.loads(x) for x in (set_dir / "items.jsonl").read_text().splitlines() if x.strip()
    }
    rows = [json.loads(x) for x in (set_dir / "labels.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if split is None or items[r["id"]]["split"] == split]
    both = [r for r in rows if r.get("passes") and None not in r["passes"].values()]
    agree = sum(len(set(r["passes"].values())) == 1 for r in both)
    amb = sum(r["label"] is None for r in rows)
    return (
        f"labels: {len(rows)} images, {len(rows) - amb} with a consensus label, {amb} ambiguous (a pass said ? or the "
        f"passes differ); where every pass gave a label they agree on {agree}/{len(both)}"
    )


def evaluate(
    detector_names: Sequence[str], set_dir: Path, split: str | None, labels_file: str, source: str | None = None
) -> tuple[dict[str, dict[str, Agreement]], dict[str, list]]:
    from craft_bench import registry

    rows = [
        r
        for r in read_set(set_dir, labels_file, split)
        if r["label"] is not None and (source is None or r["source"] == source)
    ]
    results, per_image = {}, {}
    for name in detector_names:
        det = registry.detectors.get(name)()
        t0 = time.perf_counter()
        vs = verdicts(det, rows, set_dir)
        per_image[name] = [(r["id"], r["task"], r["label"], v, reason) for r, (v, reason) in zip(rows, vs)]
        by_task = {t: Agreement() for t in list(TASKS) + ["all"]}
        for r, (v, _) in zip(rows, vs):
            by_task[r["task"]].add(r["label"], v)
            by_task["all"].add(r["label"], v)
        results[name] = by_task
        print(f"{name}: {len(rows)} images in {time.perf_counter() - t0:.1f} s")
    return results, per_image


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default=str(DEFAULT_SET), help="judge set folder (items.jsonl, labels, images/)")
    p.add_argument("--labels", default="labels.jsonl", help="labels file inside the set folder")
    p.add_argument("--split", default="test", help="dev, test, or all")
    p.add_argument("--source", default=None, help="only images of this source model (e.g. base)")
    p.add_argument("--detectors", default="mini,mini-v1")
    p.add_argument("--disagreements", action="store_true", help="also list every image a detector gets wrong")
    p.add_argument("--json", default=None, help="also write the counts here")
    args = p.parse_args(argv)
    split = None if args.split == "all" else args.split
    results, per_image = evaluate(args.detectors.split(","), Path(args.set), split, args.labels, args.source)
    print(labeller_agreement(Path(args.set), split))
    print(table(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps({d: {t: a.as_dict() for t, a in r.items()} for d, r in results.items()}, indent=1)
        )
    if args.disagreements:
        for name, rows in per_image.items():
            for rid, task, label, v, reason in rows:
                if label != v:
                    print(f"{name} {rid} label={label} verdict={v} {reason!r}")


if __name__ == "__main__":
    main()
