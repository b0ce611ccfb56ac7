"""Measure `craft-bench report` on a results root: build time, images shown, and how long its biggest page
takes to load in headless Chromium.

    python tests/bench_report.py RESULTS_ROOT --out /tmp/report-bench [--repeat 5]

Build: wall time of `craft-bench report RESULTS_ROOT --out OUT` into a new folder (cold: every image placed)
and again into the same folder (warm: every thumbnail reused). Load, per page, median over --repeat runs of
a fresh headless Chromium: (a) ``data-load-ms``, which report.js sets in the load event to
``performance.now()`` (navigation start -> load event: HTML parsed, CSS/JS loaded, the images in view
decoded; lazy images further down are not waited for), read back with --dump-dom; (b) the wall time of
``chromium --headless --screenshot`` of the page, process start to exit; (c) ``data-first-images-ms``: when
the images report.js put in the first screen have loaded. Uses tests/browser.py to find and drive Chromium.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

# Run as a script (python tests/bench_report.py), so its folder -- with the tests' browser driver -- is on sys.path.
from browser import Browser, find_chromium

REPO = Path(__file__).resolve().parents[1]


def build(root: Path, out: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "craft_bench", "report", str(root), "--out", str(out), "--json", "--no-progress"],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - t0, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shots", default=None, help="folder for screenshots of the biggest pages")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    cold_s, summary = build(Path(args.root), out)
    warm_s, _ = build(Path(args.root), out)
    print(f"build: cold {cold_s:.2f} s (in-process {summary['seconds']:.2f} s), warm rebuild {warm_s:.2f} s")
    print(
        f"images: {summary['images_shown']} shown on {len(summary['pages'])} pages, "
        f"{summary['unique_images']} distinct; thumbs {summary['thumbs']}"
    )
    exe = find_chromium()
    if exe is None:
        sys.exit("no chromium on PATH")
    pages = sorted(summary["pages"].items(), key=lambda kv: -kv[1])[:3] + [("index.html", 0)]
    with tempfile.TemporaryDirectory() as prof:
        for name, n in pages:
            url = "file://" + quote(str((out / name).resolve()))
            loads, firsts, walls = [], [], []
            for i in range(args.repeat):
                browser = Browser(exe, Path(prof) / f"p{name}{i}")
                dom = browser.dom(url)
                loads.append(int(dom.find("html").attrs["data-load-ms"]))
                if "data-first-images-ms" in dom.find("html").attrs:
                    firsts.append(int(dom.find("html").attrs["data-first-images-ms"]))
                t0 = time.perf_counter()
                shot = Path(args.shots or prof) / f"{name[:-5]}.png"
                shot.parent.mkdir(parents=True, exist_ok=True)
                browser.screenshot(url, shot)
                walls.append(time.perf_counter() - t0)
            size = (out / name).stat().st_size
            first = f"; first screen of images {statistics.median(firsts)} ms" if firsts else ""
            print(
                f"{name}: {n} images, {size / 1e6:.2f} MB HTML; load event {statistics.median(loads)} ms "
                f"(min {min(loads)}, max {max(loads)}){first}; chromium --screenshot wall "
                f"{statistics.median(walls):.2f} s "
                f"(min {min(walls):.2f}) over {args.repeat} runs"
            )
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        version = exe
    print(f"browser: {version}")


if __name__ == "__main__":
    main()
