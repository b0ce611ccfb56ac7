"""`craft-bench report`: build the static site (index, suite grids, compare pages, sweep pages) in one folder.

The build renders every page in memory, then places the images (``thumbs.py``), then writes the pages
atomically, the assets and a marker file. A folder with the marker is a report and may be rebuilt in
place (pages and thumbnails it no longer needs are removed); any other non-empty folder is refused, so
``--out`` can never overwrite someone's files.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

from craft_bench import registry
from craft_bench.errors import UserError
from craft_bench.report import html
from craft_bench.report.collect import Run, assign_labels, discover, load_run
from craft_bench.report.thumbs import Thumbs, ThumbStats
from craft_bench.results_file import NotResults
from craft_bench.store import atomic_write_json, atomic_write_text

MARKER = ".craft-bench-report"
ASSETS = ("report.css", "report.js")
PAIRS = ("baseline", "all")


@dataclass
class Summary:
    out: Path
    runs: int
    suites: int
    pages: dict[str, int]  # page file -> images it shows
    images_shown: int  # image cells over all pages
    unique_images: int
    thumbs: ThumbStats
    seconds: float
    sweeps: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def biggest_page(self) -> tuple[str, int]:
        return max(self.pages.items(), key=lambda kv: kv[1])


# A documented default (docs/report.md): the filter columns of a suite that declares no ``Suite.facets`` or is not
# installed here -- the stratum, and the category / challenge columns of prompt-set metadata, when records have them.
CONVENTIONAL_FACETS = {"stratum": "stratum", "category": "category", "challenge": "challenge"}


def suite_facets(suite: str, runs: Sequence[Run]) -> dict[str, str]:
    """The filter columns of a suite's grid: its declared ``Suite.facets``, else the conventional ones,
    kept when the records carry them; a column that repeats another one record for record is dropped."""
    from craft_bench.api import Suite

    try:
        cls = registry.suites.get(suite)
        declared = dict(cls.facets) if getattr(cls, "facets", Suite.facets) is not Suite.facets else CONVENTIONAL_FACETS
    except UserError:
        declared = CONVENTIONAL_FACETS
    records = [rec for r in runs for rec in r.records]
    present = {col: name for col, name in declared.items() if any(rec.get(col) not in (None, "") for rec in records)}
    columns = list(present)
    for i, col in enumerate(columns):
        if any(
            all(rec.get(col) == rec.get(other) for rec in records) for other in columns[i + 1 :] if other in present
        ):
            present.pop(col)
    return present


def _column_order(runs: list[Run]) -> list[Run]:
    """The baseline method's runs first (registry.baseline_method: vanilla), then by fewest changed settings, then
    by date."""
    base = registry.baseline_method()
    return sorted(runs, key=lambda r: (r.method != base, len(r.diffs), r.results.get("created", ""), r.id))


def compare_pairs(runs: list[Run], mode: str) -> list[tuple[Run, Run]]:
    """(A, B) pairs to compare: each run against each vanilla run (``baseline``), or every pair (``all``
    and suites without a vanilla run). A is the earlier run of :func:`_column_order`. Only pairs that share
    images (same prompt, same seed) are kept."""
    ordered = _column_order(runs)
    keys = {r.id: {(x["item_id"], x["seed"]) for x in r.records} for r in ordered}
    baselines = [r for r in ordered if r.method == registry.baseline_method()]
    pairs = []
    for i, a in enumerate(ordered):
        if mode == "baseline" and baselines and a not in baselines:
            continue
        for b in ordered[i + 1 :]:
            if keys[a.id] & keys[b.id]:
                pairs.append((a, b))
    return pairs


def prepare_out(out: Path) -> bool:
    """Create ``out`` or accept a previous report there; True when it already held a report."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(
            f"--out {out}: the folder is not empty and holds no craft-bench report; give a new or empty folder"
        )
    existed = (out / MARKER).is_file()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "assets").mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"--out {out}: cannot create it ({exc.strerror or exc}); pass --out with a writable folder"
        ) from None
    return existed


def warn(line: str) -> None:
    import sys

    print(f"craft-bench: warning: {line}", file=sys.stderr)


def build_report(
    paths: Sequence[str],
    out: str | Path | None = None,
    default_root: Path | None = None,
    thumb_px: int = 256,
    pairs: str = "baseline",
    progress: bool = True,
) -> Summary:
    from craft_bench.report.compare import compare_records
    from craft_bench.report.sweep import load_sweep, plots, sweep_page
    from craft_bench.store import default_root as _default_root

    t0 = time.perf_counter()
    if pairs not in PAIRS:
        raise UserError(f"--pairs {pairs}: use one of {', '.join(PAIRS)}")
    if thumb_px < 8:
        raise UserError(f"--thumb-size {thumb_px}: give at least 8 pixels")
    inputs = discover(paths, default_root or _default_root())
    for line in inputs.skipped:
        warn(line)
    sweeps = [load_sweep(p) for p in inputs.sweeps]
    by_dir = {r.run_dir: r for r in inputs.runs}
    for sw in sweeps:
        for c in sw.cells:
            if c.run_dir is not None:
                if c.run_dir.resolve() not in by_dir:
                    try:
                        by_dir[c.run_dir.resolve()] = load_run(c.run_dir)
                    except NotResults as exc:
                        warn(f"skipping {exc}")
                        continue
                c.run_id = by_dir[c.run_dir.resolve()].id
    runs = list({r.results["spec_hash"]: r for r in by_dir.values()}.values())
    if not runs and not sweeps:
        raise UserError(
            f"no finished runs under {', '.join(map(str, paths)) or inputs.root}; run `craft-bench run ...` first"
        )
    out_dir = Path(out) if out else inputs.root / "report"
    rebuilt = prepare_out(out_dir)
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    by_suite: dict[str, list[Run]] = {}
    for r in runs:
        by_suite.setdefault(r.suite, []).append(r)
    by_suite = {s: _column_order(v) for s, v in sorted(by_suite.items())}
    thumbs = Thumbs(out_dir, thumb_px)
    rendered: dict[str, str] = {}
    shown: dict[str, int] = {}
    suite_pages: dict[str, str] = {}
    compares: dict[str, list[html.PageLink]] = {}
    notes: list[str] = []
    for suite, suite_runs in by_suite.items():
        assign_labels(suite_runs)
        with_records = [r for r in suite_runs if r.records]
        notes += [f"{r.run_dir}: no samples.jsonl, so no images" for r in suite_runs if not r.records]
        if not with_records:
            continue
        facets = suite_facets(suite, with_records)
        name = f"suite-{html.slug(suite)}.html"
        rendered[name], shown[name] = html.suite_page(suite, with_records, facets, thumbs, generated)
        suite_pages[suite] = name
        for a, b in compare_pairs(with_records, pairs):
            comps = compare_records(a.results, a.records, b.records, seed=a.results.get("seed", 0))
            if not comps:
                continue
            name = f"compare-{a.id}-{b.id}.html"
            rendered[name], shown[name] = html.compare_page(a, b, comps, facets, thumbs, generated)
            head = comps[0]
            compares.setdefault(suite, []).append(
                html.PageLink(
                    name, f"{b.label} vs {a.label}", f"({head.display_name} {head.delta:+.4f}, {head.verdict})"
                )
            )

    sweep_links = []
    for sw in sweeps:
        figures = plots(sw, out_dir)
        rendered[sw.page] = sweep_page(sw, figures, generated)
        shown[sw.page] = 0
        shutil.copyfile(sw.path, out_dir / f"sweep-{sw.slug}" / "sweep.json")
        sweep_links.append(
            html.PageLink(sw.page, f"sweep {sw.name}", f"({len(sw.cells)} cells, suite {sw.data.get('suite', '?')})")
        )

    n_unique = thumbs.count
    rendered["index.html"] = html.index_page(by_suite, suite_pages, compares, sweep_links, n_unique, generated)
    shown["index.html"] = 0
    stats = thumbs.make(progress)
    for name, text in rendered.items():
        atomic_write_text(out_dir / name, text)
    for asset in ASSETS:
        atomic_write_text(
            out_dir / "assets" / asset, resources.files("craft_bench.report").joinpath("static", asset).read_text()
        )
    if rebuilt:
        for stale in out_dir.glob("*.html"):
            if stale.name not in rendered:
                stale.unlink()
        for stale in out_dir.glob("sweep-*"):
            if stale.is_dir() and f"{stale.name}.html" not in rendered:
                shutil.rmtree(stale)
        thumbs.prune()
    atomic_write_json(
        out_dir / MARKER,
        {"tool": "craft-bench report", "generated": generated, "runs": len(runs), "pages": sorted(rendered)},
    )
    if stats.missing:
        notes.append(f"{stats.missing} images are missing from their results folders (shown as placeholders)")
    return Summary(
        out_dir,
        len(runs),
        len(by_suite),
        shown,
        sum(shown.values()),
        n_unique,
        stats,
        time.perf_counter() - t0,
        len(sweeps),
        notes,
    )


def summary_line(s: Summary) -> str:
    t = s.thumbs
    count = html.count
    page, n = s.biggest_page
    return (
        f"report: {count(s.runs, 'run')} in {count(s.suites, 'suite')}, {count(s.sweeps, 'sweep')}; "
        f"{count(len(s.pages), 'page')} showing {count(s.images_shown, 'image')} "
        f"({s.unique_images} distinct: {t.linked} hard-linked, {t.copied} copied, {t.generated} thumbnails "
        f"made, {t.reused} reused); "
        f"biggest page {page} ({count(n, 'image')}); {s.seconds:.1f} s -> {s.out / 'index.html'}"
    )


def summary_json(s: Summary) -> str:
    return json.dumps(
        {
            "out": str(s.out),
            "runs": s.runs,
            "suites": s.suites,
            "sweeps": s.sweeps,
            "pages": s.pages,
            "images_shown": s.images_shown,
            "unique_images": s.unique_images,
            "thumbs": {k: v for k, v in s.thumbs.__dict__.items() if k != "missing_keys"},
            "seconds": round(s.seconds, 3),
            "notes": s.notes,
        },
        indent=2,
    )
