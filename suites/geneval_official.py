"""Interop with GenEval's own scripts, both ways (djghosh13/geneval).

Out: the suite writes a run's images in the layout GenEval's evaluator reads (``GenEval.write_run_files``,
``suites/geneval.py``: ``RUN_FOLDER/geneval/<NNNNN>/{metadata.jsonl,samples/<NNNN>.png}``), so
``python evaluation/evaluate_images.py RUN_FOLDER/geneval --outfile results.jsonl`` runs on it unchanged.

In: ``summarize_official`` reads the evaluator's results.jsonl (``pandas.DataFrame.to_json(orient="records",
lines=True)`` of dicts with filename, tag, prompt, correct, reason, metadata, details) into craft-bench's
results.json and samples.jsonl, with the suite's metrics and bootstrap CIs. Prompts are the image folders;
their item ids are GenEval's (``<tag>-<k>``, k counting each task's folders in folder order), equal to a
craft-bench run's ids for a full run on the official prompts.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any, Sequence

from craft_bench.errors import OneLineParser, UserError
from craft_bench.report.tables import print_results
from craft_bench.store import atomic_write_json, atomic_write_text

# --------------------------------------------------------------------------- the evaluator's output -> results.json

_SAMPLE = re.compile(r"(?:^|[\\/])(\d+)[\\/]samples[\\/](\d+)\.png$")


def read_official(path: Path) -> list[dict[str, Any]]:
    """Per-image records from evaluate_images.py's results.jsonl, sorted by (folder, sample)."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(
            f"cannot read '{path}' ({exc.strerror or exc}); give the results.jsonl evaluate_images.py wrote"
        ) from None
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            found = _SAMPLE.search(str(row["filename"]))
            meta = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"]
            rows.append(
                {
                    "folder": int(found.group(1)) if found else None,
                    "sample": int(found.group(2)) if found else None,
                    "tag": str(row["tag"]),
                    "prompt": str(row["prompt"]),
                    "correct": int(bool(row["correct"])),
                    "reason": row.get("reason") or "",
                    "details": row.get("details") or "{}",
                    "metadata": meta,
                    "filename": str(row["filename"]),
                }
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"{path}:{number}: not a line of GenEval's results.jsonl ({type(exc).__name__}: {exc}); "
                "expected filename, tag, prompt, correct, reason, metadata, details"
            ) from None
        if found is None:
            raise UserError(
                f"{path}:{number}: filename '{row['filename']}' is not <folder>/samples/<n>.png (GenEval's layout)"
            )
    if not rows:
        raise UserError(f"{path}: no results in it")
    rows.sort(key=lambda r: (r["folder"], r["sample"]))
    return rows


def records_from_official(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """craft-bench records (the fields ``GenEval.score`` writes plus the runner's) for the evaluator's rows."""
    ids: dict[int, str] = {}
    per_task: dict[str, int] = {}
    for r in rows:
        if r["folder"] not in ids:
            k = per_task[r["tag"]] = per_task.get(r["tag"], -1) + 1
            ids[r["folder"]] = f"{r['tag']}-{k:04d}"
    return [
        {
            "item_id": ids[r["folder"]],
            "index": r["sample"],
            "seed": None,
            "prompt": r["prompt"],
            "stratum": r["tag"],
            "image": r["filename"],
            "correct": r["correct"],
            "reason": r["reason"],
            "tag": r["tag"],
            "details": r["details"],
        }
        for r in rows
    ]


def summarize_official(
    path: str | Path,
    out_dir: str | Path | None = None,
    method: str = "official-evaluator",
    model: str = "unknown",
    seed: int = 0,
) -> tuple[dict[str, Any], Path]:
    """Write results.json + samples.jsonl for an official results.jsonl; returns (results, folder)."""
    from craft_bench.runner import compute_metrics, metric_def_dict
    from craft_bench.spec import SCHEMA_VERSION
    from craft_bench.store import file_digest
    from craft_bench.suites.geneval import GenEval
    from craft_bench.version import versions

    path = Path(path)
    records = records_from_official(read_official(path))
    suite = GenEval()
    defs = suite.metrics()
    digest = file_digest(path)
    results = {
        "schema_version": SCHEMA_VERSION,
        "suite": suite.name,
        "suite_version": suite.version,
        "method": method,
        "model": model,
        "spec_hash": digest,  # the identity of these numbers is the evaluator's output they were read from
        "seed": seed,
        "headline": suite.headline,
        "metrics": compute_metrics(defs, records, seed),
        "metric_defs": [metric_def_dict(m) for m in defs],
        "timing": {"generate_s": 0.0, "score_s": 0.0, "train_s": 0.0, "device": "GenEval's evaluate_images.py"},
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"official_results": str(path.resolve()), "sha256": digest, "images": len(records)},
    }
    folder = Path(out_dir) if out_dir is not None else path.parent
    atomic_write_text(folder / "samples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    atomic_write_json(folder / "results.json", results)
    return results, folder


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="craft-bench geneval", description="GenEval interop with the official scripts.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    p = sub.add_parser(
        "summarize",
        help="read evaluate_images.py's results.jsonl into results.json with CIs",
        description=(
            "Read GenEval's official evaluator output (results.jsonl) and write results.json (per-task "
            "scores, overall, "
            "% correct images / prompts, each with a bootstrap 95%% CI) and samples.jsonl, so `craft-bench "
            "compare` and "
            "`leaderboard`-style tables work on it."
        ),
    )
    p.add_argument("results", type=Path, help="the results.jsonl evaluate_images.py wrote")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for results.json and samples.jsonl [default: beside results.jsonl]",
    )
    p.add_argument("--method", default="official-evaluator", help="method name to record [default: official-evaluator]")
    p.add_argument("--model", default="unknown", help="model name to record")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap [default: 0]")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    args = parser.parse_args(argv)
    if args.verb != "summarize":
        parser.print_help()
        return 2
    results, folder = summarize_official(args.results, args.out, args.method, args.model, args.seed)
    print_results(results, args.json, f"written: {folder / 'results.json'}")
    return 0
