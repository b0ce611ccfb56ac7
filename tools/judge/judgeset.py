"""The human-labelled judge set of generated mini images (data/mini-judge/): build it, draw labelling sheets,
record a labeller's pass, and merge passes into the final labels.

    python tools/judge/judgeset.py build RUN_DIR --results ROOT --source base [--split-plan dev:10,test:...]
    python tools/judge/judgeset.py sheets --split test --task counting --out DIR [--per-sheet 24]
    python tools/judge/judgeset.py record --pass lead --sheet test-counting-03 --labels "1 0 1 ? ..."
    python tools/judge/judgeset.py picker --sheets DIR --sheet test-counting-03 --cells 4,7
    python tools/judge/judgeset.py merge

Sheets are blind: each cell shows the image (nearest-neighbour upscaled), its number on the sheet and the
prompt, never a detector's verdict. See data/mini-judge/README.md for the labelling protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SET_DIR = Path(os.environ.get("CRAFT_BENCH_JUDGE_SET", REPO / "data" / "mini-judge"))
TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    tmp.replace(path)


def items() -> list[dict]:
    return _read_jsonl(SET_DIR / "items.jsonl")


def build(args: argparse.Namespace) -> None:
    """Copy a finished GenEval run's images into the set. ``--plan`` gives, per split, how many prompt items
    of each task go into it (items are taken in order, so the split is by prompt, not by image)."""
    run = Path(args.run_dir)
    records = _read_jsonl(run / "samples.jsonl")
    spec = json.loads((run / "run_spec.json").read_text())
    meta = {}
    from craft_bench.mini.prompts import geneval_prompts

    suite_cfg = dict(spec["suite"]["config"])
    lines = geneval_prompts(suite_cfg["n_per_task"], suite_cfg["prompt_seed"])
    seen: dict[str, int] = {}
    for line in lines:
        k = seen[line["tag"]] = seen.get(line["tag"], -1) + 1
        meta[f"{line['tag']}-{k:04d}"] = line
    plan = {}  # task -> list of (split, n_items)
    for part in args.plan.split(";"):
        split, _, counts = part.partition(":")
        for tc in counts.split(","):
            task, _, n = tc.partition("=")
            plan.setdefault(task, []).append((split, int(n)))
    rows = items()
    existing = {r["id"] for r in rows} | {
        r["image_key"] for r in rows
    }  # an image already in the set, under any id, is skipped
    img_dir = SET_DIR / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for rec in records:
        task, k = rec["item_id"].rsplit("-", 1)
        k = int(k)
        split, start = None, 0
        for s, n in plan.get(task, []):
            if start <= k < start + n:
                split = s
                break
            start += n
        if split is None:
            continue
        rid = f"{args.source}-{args.id_prefix}{rec['item_id']}-{rec['index']}"
        if rid in existing or rec["image"] in existing:
            continue
        key = rec["image"]
        shutil.copyfile(Path(args.results) / "images" / key[:2] / f"{key}.png", img_dir / f"{rid}.png")
        rows.append(
            {
                "id": rid,
                "split": split,
                "task": task,
                "prompt": rec["prompt"],
                "metadata": meta[rec["item_id"]],
                "source": args.source,
                "model_digest": spec["model"]["digest"],
                "seed": rec["seed"],
                "image_key": key,
            }
        )
    _write_jsonl(SET_DIR / "items.jsonl", rows)
    print(f"{len(rows)} items in {SET_DIR / 'items.jsonl'}")


def _sheet_rows(split: str, task: str, source: str | None) -> list[dict]:
    return [
        r for r in items() if r["split"] == split and r["task"] == task and (source is None or r["source"] == source)
    ]


def sheets(args: argparse.Namespace) -> None:
    from PIL import Image, ImageDraw

    rows = _sheet_rows(args.split, args.task, args.source)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cols, size, label_h = args.cols, args.cell, 30
    index = {}
    for page, start in enumerate(range(0, len(rows), args.per_sheet)):
        chunk = rows[start : start + args.per_sheet]
        n_rows = (len(chunk) + cols - 1) // cols
        sheet = Image.new("RGB", (cols * (size + 6), n_rows * (size + label_h + 6)), "white")
        draw = ImageDraw.Draw(sheet)
        for i, r in enumerate(chunk):
            x, y = (i % cols) * (size + 6), (i // cols) * (size + label_h + 6)
            img = Image.open(SET_DIR / "images" / f"{r['id']}.png").convert("RGB").resize((size, size), Image.NEAREST)
            sheet.paste(img, (x, y))
            draw.text((x + 2, y + size + 2), f"#{i}", fill="blue")
            draw.text((x + 28, y + size + 2), r["prompt"].removeprefix("a photo of ")[:34], fill="black")
        name = f"{args.split}-{args.task}-{page:02d}" + (f"-{args.source}" if args.source else "")
        sheet.save(out / f"{name}.png")
        index[name] = [r["id"] for r in chunk]
    (out / "index.json").write_text(json.dumps({**_read_index(out), **index}, indent=1))
    print(f"{len(index)} sheets for {len(rows)} images in {out}")


def _read_index(out: Path) -> dict:
    p = out / "index.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def record(args: argparse.Namespace) -> None:
    """Record one labeller's labels for one sheet: tokens 1 / 0 / ? (ambiguous), in sheet order; an optional
    note per image as ``3=text`` in --notes."""
    index = _read_index(Path(args.sheets))
    ids = index[args.sheet]
    tokens = args.labels.split()
    if len(tokens) != len(ids):
        sys.exit(f"sheet {args.sheet} has {len(ids)} images, got {len(tokens)} labels")
    notes = {}
    for part in (args.notes or "").split(";"):
        if part.strip():
            k, _, v = part.partition("=")
            notes[int(k)] = v.strip()
    path = SET_DIR / "passes" / f"{args.labeller}.jsonl"
    rows = {r["id"]: r for r in _read_jsonl(path)}
    for i, (rid, tok) in enumerate(zip(ids, tokens)):
        if tok not in ("1", "0", "?"):
            sys.exit(f"label {i}: '{tok}' is not 1, 0 or ?")
        rows[rid] = {"id": rid, "label": None if tok == "?" else int(tok), "note": notes.get(i, "")}
    _write_jsonl(path, sorted(rows.values(), key=lambda r: r["id"]))
    print(f"{args.labeller}: {len(rows)} labels")


def picker(args: argparse.Namespace) -> None:
    """A colour picker for labellers: centre, area and median RGB of each region that stands out from the
    background (RGB distance > 50 from the image's median colour) in the given cells of a sheet."""
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    ids = _read_index(Path(args.sheets))[args.sheet]
    for i in (int(c) for c in args.cells.split(",")):
        a = np.asarray(Image.open(SET_DIR / "images" / f"{ids[i]}.png").convert("RGB")).astype(int)
        far = np.sqrt(((a - np.median(a.reshape(-1, 3), 0)) ** 2).sum(-1)) > 50
        regions, n = ndimage.label(far)
        found = []
        for k in range(1, n + 1):
            m = regions == k
            if m.sum() >= 20:
                ys, xs = np.nonzero(m)
                found.append(
                    f"(x {xs.mean():.0f}, y {ys.mean():.0f}, {m.sum()} px) rgb "
                    f"{tuple(int(v) for v in np.median(a[m], 0))}"
                )
        print(f"#{i}: " + "; ".join(found))


def merge(args: argparse.Namespace) -> None:
    """labels.jsonl from the labellers' passes: an image gets a label only when every pass gave it and all
    agree; otherwise it is ambiguous (null) and left out of every score, with the passes' labels kept in
    ``passes`` and their notes joined in ``note``."""
    passes = {p.stem: {r["id"]: r for r in _read_jsonl(p)} for p in sorted((SET_DIR / "passes").glob("*.jsonl"))}
    if len(passes) < args.min_passes:
        sys.exit(f"need {args.min_passes} passes, found {len(passes)}: {', '.join(passes)}")
    rows = []
    for item in items():
        got = {name: rows_[item["id"]] for name, rows_ in passes.items() if item["id"] in rows_}
        if len(got) < args.min_passes:
            continue
        labels = {r["label"] for r in got.values()}
        label = labels.pop() if len(labels) == 1 else None
        notes = "; ".join(f"{name}: {r['note']}" for name, r in got.items() if r.get("note"))
        rows.append(
            {"id": item["id"], "label": label, "passes": {name: r["label"] for name, r in got.items()}, "note": notes}
        )
    _write_jsonl(SET_DIR / "labels.jsonl", rows)
    both = [r for r in rows if None not in r["passes"].values()]
    agree = sum(len(set(r["passes"].values())) == 1 for r in both)
    print(
        f"{len(rows)} images with {len(passes)} passes: {sum(r['label'] is not None for r in rows)} labelled, "
        f"{sum(r['label'] is None for r in rows)} ambiguous; where every pass gave a label they agree on "
        f"{agree}/{len(both)}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("run_dir")
    b.add_argument("--results", required=True, help="results root holding the run's images/")
    b.add_argument("--source", required=True, help="short name of the model the images come from (e.g. base)")
    b.add_argument("--id-prefix", default="", help="put before the item id (images of another prompt seed, e.g. 'h-')")
    b.add_argument("--plan", required=True, help='e.g. "dev:counting=10,...;test:counting=35,..."')
    s = sub.add_parser("sheets")
    s.add_argument("--split", required=True)
    s.add_argument("--task", required=True, choices=TASKS)
    s.add_argument("--source", default=None)
    s.add_argument("--out", required=True)
    s.add_argument("--per-sheet", type=int, default=24)
    s.add_argument("--cols", type=int, default=6)
    s.add_argument("--cell", type=int, default=192)
    r = sub.add_parser("record")
    r.add_argument("--labeller", required=True)
    r.add_argument("--sheets", required=True, help="the sheets folder (its index.json maps sheets to ids)")
    r.add_argument("--sheet", required=True)
    r.add_argument("--labels", required=True)
    r.add_argument("--notes", default="")
    c = sub.add_parser("picker")
    c.add_argument("--sheets", required=True)
    c.add_argument("--sheet", required=True)
    c.add_argument("--cells", required=True, help="comma-separated cell numbers")
    m = sub.add_parser("merge")
    m.add_argument("--min-passes", type=int, default=2)
    args = p.parse_args(argv)
    {"build": build, "sheets": sheets, "record": record, "picker": picker, "merge": merge}[args.cmd](args)


if __name__ == "__main__":
    main()
