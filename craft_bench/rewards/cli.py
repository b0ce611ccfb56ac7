"""``craft-bench score DIR --rewards hps,pickscore,aes,imagereward``: score a folder of images.

Prompts come from the first layout that matches (or ``--prompts FILE``):

1. a metadata file in DIR: ``metadata.jsonl`` / ``metadata.json`` / ``metadata.csv`` with a file column
   (``file_name``, ``file``, ``image`` or ``path``) and a prompt column (``prompt``, ``text`` or ``caption``);
2. GenEval: ``DIR/<index>/metadata.jsonl`` (one line with ``prompt``) and ``DIR/<index>/samples/*.png``, or the
   same in ``DIR/geneval/`` (a craft-bench GenEval run folder);
3. HPS v2 benchmark: ``DIR/<style>/<n>.{jpg,png}`` with the style's prompt list ``<style>.json`` in DIR
   or in ``--prompts DIR`` (image n is prompt n, as in HPSv2's evaluation);
4. a ``<image>.txt`` caption beside every image.

Writes a long CSV (item, image, prompt, reward, score) and a JSON summary (per-reward mean, std, n).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from craft_bench.errors import UserError
from craft_bench.rewards.composite import CompositeScorer, parse_sources

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FILE_KEYS = ("file_name", "file", "image", "path", "filename")
PROMPT_KEYS = ("prompt", "text", "caption")
HPS_STYLES = ("anime", "concept-art", "paintings", "photo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="craft-bench score", description="Score a folder of images with reward models.")
    p.add_argument("dir", type=Path, help="folder of images (metadata file, GenEval or HPS layout, or .txt captions)")
    p.add_argument(
        "--rewards",
        default="hps,pickscore,aes,imagereward",
        help="comma-separated reward names (see `craft-bench ls rewards`)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output CSV (a .json summary is written beside it); default DIR/scores.csv",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument(
        "--dtype", default=None, help="float32, float16 or bfloat16 (default: each official scorer's precision)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="weights of a reward (repeatable): hps=/w/HPS_v2.1_compressed.pt, aes.clip=/w/ViT-L-14.safetensors, "
        "pickscore.processor=DIR, imagereward.tokenizer=DIR",
    )
    p.add_argument(
        "--prompts", type=Path, default=None, help="metadata file, or folder of HPS <style>.json prompt lists"
    )
    p.add_argument("--hps-version", default="v2.1", choices=("v2.1", "v2.0"), help="HPS checkpoint version")
    return p


def _rows_from_table(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):  # {file: prompt}
            return [{"file_name": k, "prompt": v} for k, v in data.items()]
        return list(data)
    if path.suffix in (".csv", ".tsv"):
        with open(path, newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    raise UserError(f"unsupported metadata file '{path}' (use .jsonl, .json or .csv)")


def _pick(row: dict[str, Any], keys: tuple[str, ...], what: str, path: Path) -> Any:
    for key in keys:
        if row.get(key) not in (None, ""):
            return row[key]
    raise UserError(f"{path}: a row has no {what} column (one of {', '.join(keys)})")


def from_metadata(path: Path, root: Path) -> list[tuple[str, Path, str]]:
    out = []
    for row in _rows_from_table(path):
        file = Path(_pick(row, FILE_KEYS, "file", path))
        image = file if file.is_absolute() else root / file
        if not image.is_file():
            raise UserError(f"{path}: image '{file}' not found under {root}")
        out.append((str(file), image, str(_pick(row, PROMPT_KEYS, "prompt", path))))
    return out


def from_geneval(root: Path) -> list[tuple[str, Path, str]] | None:
    if (root / "geneval").is_dir() and not (root / "metadata.jsonl").is_file():
        root = root / "geneval"  # a craft-bench GenEval run folder: the layout is in its subfolder
    folders = sorted(d for d in root.iterdir() if d.is_dir() and (d / "metadata.jsonl").is_file())
    if not folders:
        return None
    out = []
    for d in folders:
        meta = json.loads((d / "metadata.jsonl").read_text().splitlines()[0])
        for image in sorted((d / "samples").glob("*")) if (d / "samples").is_dir() else []:
            if image.suffix.lower() in IMAGE_SUFFIXES:
                out.append((f"{d.name}/{image.stem}", image, meta["prompt"]))
    return out


def from_hps(root: Path, prompts_dir: Path | None) -> list[tuple[str, Path, str]] | None:
    styles = [s for s in HPS_STYLES if (root / s).is_dir()]
    if not styles:
        return None
    out = []
    for style in styles:
        candidates = [d / f"{style}.json" for d in (prompts_dir, root, root / "benchmark") if d is not None]
        lists = [c for c in candidates if c.is_file()]
        if not lists:
            raise UserError(
                f"HPS layout: no prompt list '{style}.json' in {root} (pass --prompts DIR holding HPSv2's "
                f"benchmark/{style}.json)"
            )
        prompts = json.loads(lists[0].read_text())
        for image in sorted((root / style).iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    prompt = prompts[int(image.stem)]
                except (ValueError, IndexError):
                    raise UserError(
                        f"HPS layout: '{image.name}' is not an index into {lists[0]} ({len(prompts)} prompts)"
                    ) from None
                out.append((f"{style}/{image.stem}", image, prompt))
    return out


def from_captions(root: Path) -> list[tuple[str, Path, str]] | None:
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images or not all(p.with_suffix(".txt").is_file() for p in images):
        return None
    return [(str(p.relative_to(root)), p, p.with_suffix(".txt").read_text().strip()) for p in images]


def discover(root: Path, prompts: Path | None = None) -> list[tuple[str, Path, str]]:
    """(item id, image path, prompt) for every image of ``root``, from the first layout that matches."""
    if not root.is_dir():
        raise UserError(f"'{root}' is not a folder of images")
    if prompts is not None and prompts.is_file():
        return from_metadata(prompts, root)
    for name in ("metadata.jsonl", "metadata.json", "metadata.csv"):
        if (root / name).is_file():
            return from_metadata(root / name, root)
    for found in (from_geneval(root), from_hps(root, prompts), from_captions(root)):
        if found:
            return found
    raise UserError(
        f"no prompts found for the images in '{root}': add metadata.jsonl (file_name, prompt), use the GenEval "
        "or HPS folder layout, put a .txt caption beside each image, or pass --prompts FILE"
    )


def summarize(frame: Any, rewards: dict[str, Any]) -> dict[str, Any]:
    summary = {}
    for name, reward in rewards.items():
        s = frame.loc[frame["reward"] == name, "score"]
        summary[name] = {
            "mean": float(s.mean()),
            "std": float(s.std(ddof=1)) if len(s) > 1 else 0.0,
            "n": int(len(s)),
            "higher_is_better": bool(getattr(reward, "higher_is_better", True)),
        }
    return summary


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    entries = discover(args.dir, args.prompts)
    sources, options = parse_sources(args.source)
    options.setdefault("hps", {}).setdefault("version", args.hps_version)
    names = [n for n in (s.strip() for s in args.rewards.split(",")) if n]
    if not names:
        raise UserError("--rewards is empty")
    from craft_bench.registry import rewards as registry

    keys = [registry.resolve_name(n) for n in names]
    options = {k: v for k, v in options.items() if k in keys}
    scorer = CompositeScorer.load(
        keys, sources=sources, device=args.device, dtype=args.dtype, options=options, batch_size=args.batch_size
    )
    items = [e[0] for e in entries]
    frame = scorer.score([e[1] for e in entries], [e[2] for e in entries], items=items)
    by_item = {e[0]: e for e in entries}
    frame.insert(1, "image", [str(by_item[i][1]) for i in frame["item"]])
    frame.insert(2, "prompt", [by_item[i][2] for i in frame["item"]])

    out = args.out or args.dir / "scores.csv"
    write_atomic(out, frame.to_csv(index=False))
    summary = {
        "dir": str(args.dir),
        "n_images": len(entries),
        "rewards": summarize(frame, scorer.rewards),
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "timing_s": {k: round(v, 3) for k, v in scorer.timings.items()},
    }
    json_path = out.with_suffix(".json")
    write_atomic(json_path, json.dumps(summary, indent=2) + "\n")
    width = max(len(n) for n in scorer.rewards)
    print(f"{len(entries)} images from {args.dir}")
    for name, s in summary["rewards"].items():
        print(f"  {name:<{width}}  mean {s['mean']:.4f}  std {s['std']:.4f}  n {s['n']}")
    print(f"wrote {out} and {json_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(main(sys.argv[1:]))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
