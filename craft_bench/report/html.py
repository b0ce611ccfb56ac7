"""HTML pages of `craft-bench report`: index (leaderboards, provenance), suite grids and compare pages.

Every page is a static file that reads well without JavaScript: tables are pre-sorted, the image grid
is complete and grouped by the suite's first facet (linked from a table of contents), details are
``<details>`` elements. ``assets/report.js`` adds sorting, filters and column toggles, whose state
lives in the URL hash (``#f.stratum=counting&disagree=1``), so a filtered view can be shared and tested.
Images are ``loading="lazy"`` with their size given, so a page with thousands of them opens at once.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from craft_bench.report.collect import Run
from craft_bench.report.thumbs import Thumbs

MISSING = "—"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def count(n: int, word: str) -> str:
    """``count(1, "image")`` -> "1 image", ``count(2, "image")`` -> "2 images"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def page(title: str, body: str, generated: str, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    """A complete page: local CSS/JS only, no network resources."""
    trail = " › ".join(
        ['<a href="index.html">report</a>'] + [f'<a href="{esc(h)}">{esc(t)}</a>' if h else esc(t) for t, h in crumbs]
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        '<link rel="stylesheet" href="assets/report.css"></head>\n'
        f'<body><header class="top"><nav>{trail}</nav></header>\n<main>\n{body}\n</main>\n'
        f"<footer>craft-bench report · generated {esc(generated)} · static files, no server needed</footer>\n"
        '<script src="assets/report.js"></script></body></html>\n'
    )


def metric_cell(m: dict[str, Any] | None, extra_class: str = "", name: str = "") -> str:
    """Value with its 95% CI below; ``data-value`` holds the exact number for sorting and tests."""
    cls = f"num {extra_class}".strip()
    attr = f' data-metric="{esc(name)}"' if name else ""
    if not isinstance(m, dict):
        return f'<td class="{cls}"{attr} data-value="">{MISSING}</td>'
    return (
        f'<td class="{cls}"{attr} data-value="{m["value"]!r}"><span class="v">{num(m["value"])}</span>'
        f'<span class="ci">[{num(m.get("ci_low"))}, {num(m.get("ci_high"))}]</span></td>'
    )


def kv_table(pairs: Iterable[tuple[str, Any]], cls: str = "kv") -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="{cls}">{rows}</table>'


def code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"<code>{esc(text)}</code>"


# --------------------------------------------------------------------------- index


def leaderboard(suite: str, runs: list[Run]) -> str:
    """One suite's runs, best headline first (the order of `craft-bench leaderboard`); sortable with JS."""
    from craft_bench.report.tables import leaderboard_rows

    headers, rows = leaderboard_rows([r.results for r in runs])
    by_id = {r.id: r for r in runs}
    metric_names = headers[4:-2]
    first = {name: r.results["metrics"][name] for name in metric_names for r in runs if name in r.results["metrics"]}
    head_cells = ['<th data-type="num">#</th>', "<th>run</th>", "<th>model</th>", '<th data-type="num">seed</th>']
    for k, name in enumerate(metric_names):
        m = first[name]
        arrow = "↑" if m.get("higher_is_better", True) else "↓"
        cls = ' class="headline"' if k == 0 else ""
        head_cells.append(
            f'<th data-type="num" data-metric="{esc(name)}"{cls}>{esc(m.get("display_name", name))} {arrow}</th>'
        )
    head_cells += [
        '<th data-type="num">n</th>',
        '<th data-type="num">train s</th>',
        '<th data-type="num">samples</th>',
        "<th>spec</th>",
        "<th>created</th>",
    ]
    body = []
    for rank, row in enumerate(rows, 1):
        run = by_id[row[3]]
        metrics = row[4:-2]
        head_metric = run.results["metrics"].get(run.headline, {})
        cells = [
            f'<td class="num" data-value="{rank}">{rank}</td>',
            f'<td class="wrap"><a href="index.html#run-{run.id}">{esc(run.label)}</a></td>',
            f"<td>{esc(run.model)}</td>",
            f'<td class="num" data-value="{run.results.get("seed", 0)}">{run.results.get("seed", 0)}</td>',
        ]
        cells += [
            metric_cell(m, "headline" if k == 0 else "", name) for k, (name, m) in enumerate(zip(metric_names, metrics))
        ]
        cells += [
            f'<td class="num" data-value="{head_metric.get("n", "")}">{num(head_metric.get("n"))}</td>',
            f'<td class="num" data-value="{row[-2]}">{num(float(row[-2] or 0), 1)}</td>',
            f'<td class="num" data-value="{esc(row[-1])}">{esc(row[-1]) or MISSING}</td>',
            f"<td><code>{run.id}</code></td>",
            f"<td>{esc(run.results.get('created', '')[:10])}</td>",
        ]
        body.append(f'<tr data-run="{run.id}">' + "".join(cells) + "</tr>")
    return (
        f'<table class="lb sortable" id="lb-{slug(suite)}"><thead><tr>{"".join(head_cells)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def provenance(run: Run) -> str:
    """Everything needed to reproduce or audit a run: spec, settings off their defaults, versions, hashes, dates."""
    res, spec = run.results, run.spec
    if run.diffs:
        diff_rows = "".join(
            f"<tr><td>{esc(d.section)}</td><td>{esc(d.key)}</td><td>{code(d.value)}</td><td>{code(d.default)}</td></tr>"
            for d in run.diffs
        )
        diffs = (
            '<table class="diffs"><thead><tr><th>section</th><th>setting</th><th>value</th><th>default</th></tr>'
            f"</thead><tbody>{diff_rows}</tbody></table>"
        )
    else:
        diffs = "<p>none: every setting is at its default</p>"
    if run.unknown_defaults:
        diffs += f'<p class="note">defaults unknown for: {esc("; ".join(run.unknown_defaults))}</p>'
    model = spec.get("model", {})
    t = res.get("timing", {})
    pairs: list[tuple[str, Any]] = [
        ("spec hash", code(res["spec_hash"])),
        ("run folder", code(str(run.run_dir))),
        ("created", esc(res.get("created", MISSING))),
        ("model", f"{esc(run.model)} · {esc(model.get('family', ''))} · source {code(model.get('source', MISSING))}"),
        ("model digest", code(model.get("digest", MISSING))),
        ("method", f"{esc(run.method)} v{esc(spec.get('method', {}).get('version', '?'))}"),
        ("suite", f"{esc(run.suite)} v{esc(res.get('suite_version', spec.get('suite', {}).get('version', '?')))}"),
        (
            "seed · prompts used · dtype",
            f"{esc(res.get('seed', 0))} · {esc(spec.get('limit') or 'all')} · {esc(spec.get('dtype', '?'))}",
        ),
        ("prompts file digest", code(spec["prompts"]) if spec.get("prompts") else "suite's own prompts"),
        ("sampler", " ".join(f"{esc(k)}={code(v)}" for k, v in spec.get("sampler", {}).items()) or MISSING),
        (
            "timing",
            f"generate {num(t.get('generate_s'), 1)} s · score {num(t.get('score_s'), 1)} s · train "
            f"{num(t.get('train_s'), 1)} s · {esc(t.get('device', '?'))}",
        ),
    ]
    if res.get("generation"):
        g = res["generation"]
        pairs.append(
            ("images", f"{g.get('images')} ({g.get('generated')} generated, {g.get('cached')} from the cache)")
        )
    if res.get("train"):
        pairs.append(("training", " · ".join(f"{esc(k)} {code(v)}" for k, v in res["train"].items())))
    versions = res.get("versions", {})
    pairs.append(
        ("versions", " · ".join(f"{esc(k)} {code(v)}" for k, v in versions.items() if k != "git_commit") or MISSING)
    )
    pairs.append(("git commit", code(versions.get("git_commit", "unknown"))))
    spec_json = esc(json.dumps(spec, indent=1, ensure_ascii=False)) if spec else "run_spec.json is missing"
    return (
        f'<details class="prov" id="run-{run.id}"><summary><b>{esc(run.label)}</b> · {esc(run.suite)} · '
        f"{esc(run.model)} · "
        f"<code>{run.id}</code> · {esc(res.get('created', '')[:16].replace('T', ' '))}</summary>"
        f"<h4>settings that differ from the defaults</h4>{diffs}{kv_table(pairs)}"
        f"<details><summary>run_spec.json</summary><pre>{spec_json}</pre></details></details>"
    )


@dataclass
class PageLink:
    href: str
    title: str
    note: str = ""


def index_page(
    by_suite: dict[str, list[Run]],
    suite_pages: dict[str, str],
    compares: dict[str, list[PageLink]],
    sweeps: list[PageLink],
    n_images: int,
    generated: str,
) -> str:
    n_runs = sum(len(v) for v in by_suite.values())
    toc = []
    for suite in by_suite:
        links = [f'<a href="#suite-{slug(suite)}">leaderboard</a>']
        if suite in suite_pages:
            links.append(f'<a href="{esc(suite_pages[suite])}">image grids</a>')
        if compares.get(suite):
            links.append(f'<a href="#compare-{slug(suite)}">{len(compares[suite])} comparisons</a>')
        toc.append(f"<li><b>{esc(suite)}</b> ({len(by_suite[suite])} runs): {' · '.join(links)}</li>")
    if sweeps:
        toc.append(f'<li><a href="#sweeps">sweeps</a> ({len(sweeps)})</li>')
    parts = [
        "<h1>craft-bench report</h1>",
        f'<p class="lede">{count(n_runs, "run")} in {count(len(by_suite), "suite")}, '
        f"{count(n_images, 'image')} · generated {esc(generated)}</p>",
        f'<nav class="toc"><ul>{"".join(toc)}</ul></nav>',
    ]
    for suite, runs in by_suite.items():
        parts.append(f'<section id="suite-{slug(suite)}"><h2>{esc(suite)}</h2>')
        if suite in suite_pages:
            parts.append(f'<p><a href="{esc(suite_pages[suite])}">Images side by side, per prompt and seed →</a></p>')
        parts.append('<p class="note">Value and 95% bootstrap CI per metric; click a column to sort.</p>')
        parts.append(f'<div class="scroll">{leaderboard(suite, runs)}</div>')
        if compares.get(suite):
            items = "".join(
                f'<li><a href="{esc(c.href)}">{esc(c.title)}</a> {esc(c.note)}</li>' for c in compares[suite]
            )
            parts.append(f'<h3 id="compare-{slug(suite)}">paired comparisons</h3><ul class="links">{items}</ul>')
        parts.append("</section>")
    if sweeps:
        items = "".join(f'<li><a href="{esc(s.href)}">{esc(s.title)}</a> {esc(s.note)}</li>' for s in sweeps)
        parts.append(f'<section id="sweeps"><h2>sweeps</h2><ul class="links">{items}</ul></section>')
    parts.append(
        '<section id="provenance"><h2>provenance</h2><p class="note">Per run: the settings that differ from '
        "the defaults, hashes, versions and dates.</p>"
    )
    for runs in by_suite.values():
        parts += [provenance(r) for r in runs]
    parts.append("</section>")
    return page("craft-bench report", "\n".join(parts), generated)


# --------------------------------------------------------------------------- image grids


@dataclass
class GridRow:
    index: int
    seed: Any
    cells: dict[str, dict[str, Any]]  # run id -> record


@dataclass
class GridItem:
    item_id: str
    prompt: str
    facets: dict[str, str]
    rows: list[GridRow] = field(default_factory=list)


def grid_items(runs: Sequence[Run], facets: Sequence[str], only: set[tuple[str, Any]] | None = None) -> list[GridItem]:
    """Records of several runs aligned by (prompt, seed): one row per image seed, one cell per run."""
    items: dict[str, GridItem] = {}
    rows: dict[tuple[str, Any], GridRow] = {}
    for run in runs:
        for rec in run.records:
            key = (rec["item_id"], rec["seed"])
            if only is not None and key not in only:
                continue
            item = items.get(rec["item_id"])
            if item is None:
                item = items[rec["item_id"]] = GridItem(
                    rec["item_id"], rec.get("prompt", ""), {f: str(rec.get(f, "")) for f in facets}
                )
            row = rows.get(key)
            if row is None:
                row = rows[key] = GridRow(rec.get("index", 0), rec["seed"], {})
                item.rows.append(row)
            row.cells[run.id] = rec
    for item in items.values():
        item.rows.sort(key=lambda r: r.index)
    return list(items.values())


MAX_DISCRETE = 5  # a headline column with at most this many distinct values is a verdict (0/1, or 0/0.5/1 wins)


def headline_values(runs: Sequence[Run]) -> set[Any]:
    values: set[Any] = set()
    for run in runs:
        col = run.headline_column()
        values |= {rec.get(col) for rec in run.records if col and rec.get(col) is not None}
    return values


def is_binary(runs: Sequence[Run]) -> bool:
    """Whether every run's headline column holds 0/1 verdicts (GenEval's ``correct``)."""
    values = headline_values(runs)
    return bool(values) and values <= {0, 1}


def is_discrete(runs: Sequence[Run]) -> bool:
    """Whether "the methods disagree" is meaningful: the headline column takes a few distinct values."""
    values = headline_values(runs)
    return bool(values) and len(values) <= MAX_DISCRETE


def score_columns(run: Run) -> list[str]:
    cols: list[str] = []
    for d in run.results.get("metric_defs", []):
        if d.get("column") and d["column"] not in cols:
            cols.append(d["column"])
    return cols


def lazy_img(src: str, width: int, height: int, alt: str, cls: str = "") -> str:
    """An image that costs nothing until it nears the screen, linked to its file.

    Chromium spends ~1 ms per ``<img src>`` while parsing a file:// page, ``loading="lazy"`` or not (2,000
    images: seconds before the page shows). So the grid's images carry ``data-src``, which report.js turns
    into ``src`` as they approach the viewport; ``<noscript>`` holds the plain image for browsers without
    JavaScript, where it renders (lazily) like any image and otherwise costs a text node."""
    size = f'width="{width}" height="{height}" alt="{esc(alt)}"'
    plain = f' class="{cls}"' if cls else ""
    return (
        f'<a href="{esc(src)}"><img data-src="{esc(src)}" {size} class="{("lazy " + cls).strip()}">'
        f'<noscript><img src="{esc(src)}" {size} loading="lazy" decoding="async"{plain}></noscript></a>'
    )


def cell(run: Run, rec: dict[str, Any] | None, thumbs: Thumbs, binary: bool) -> str:
    if rec is None:
        return f'<figure class="cell none" data-run="{run.id}"><div class="noimg">not in this run</div></figure>'
    col = run.headline_column()
    v = rec.get(col) if col else None
    thumb = thumbs.add(rec["image"], run.image_path(rec["image"]))
    alt = f"{rec.get('prompt', '')} ({run.label}, image {rec.get('index', 0) + 1})"
    if thumb is None:
        img = f'<div class="noimg" title="{esc(rec["image"])}">image missing from the results folder</div>'
    else:
        img = lazy_img(thumb.src, thumb.width, thumb.height, alt, "px" if thumb.pixelated else "")
    caption = []
    if binary and v is not None:
        caption.append('<span class="verdict ok">✓ correct</span>' if v else '<span class="verdict bad">✗ wrong</span>')
    else:
        for c in score_columns(run):
            if rec.get(c) is not None:
                caption.append(f'<span class="score">{esc(c)} <b>{num(rec[c], 4)}</b></span>')
    if rec.get("reason"):
        caption.append(f'<span class="reason">{esc(rec["reason"])}</span>')
    state = "" if not binary or v is None else (" ok" if v else " bad")
    dv = f' data-v="{v!r}"' if v is not None else ""
    return (
        f'<figure class="cell{state}" data-run="{run.id}"{dv}>{img}<figcaption>{"".join(caption)}</figcaption></figure>'
    )


def column_heads(runs: Sequence[Run], roles: Sequence[str] = ()) -> str:
    heads = []
    for n, r in enumerate(runs):
        m = r.results["metrics"].get(r.headline)
        score = f"{esc(m.get('display_name', r.headline))} {num(m['value'])}" if m else ""
        role = f'<span class="role">{esc(roles[n])}</span>' if n < len(roles) else ""
        heads.append(
            f'<div class="colhead" data-run="{r.id}">{role}<a href="index.html#run-{r.id}">{esc(r.label)}</a>'
            f"<small>{score} · <code>{r.id}</code></small></div>"
        )
    return '<div class="row head"><div class="seed"></div>' + "".join(heads) + "</div>"


ROW_PX = 260  # estimated height of a grid row, for content-visibility's placeholder size


def grid(
    runs: Sequence[Run],
    items: Sequence[GridItem],
    facets: dict[str, str],
    thumbs: Thumbs,
    binary: bool,
    group: bool = True,
    roles: Sequence[str] = (),
) -> str:
    """A row per (prompt, seed), a column per run; with ``group``, one titled section per value of the first facet."""
    group_by = next(iter(facets), None) if group else None
    groups: dict[str, list[GridItem]] = {}
    for item in items:
        groups.setdefault(item.facets.get(group_by, "") if group_by else "", []).append(item)
    heads = column_heads(runs, roles)
    out = []
    for name, members in groups.items():
        n_rows = sum(len(i.rows) for i in members)
        if group_by:
            out.append(
                f'<section class="group" id="g-{slug(name)}"><h2>{esc(facets[group_by])}: {esc(name or "(none)")} '
                f"<small>{count(len(members), 'prompt')}, {count(n_rows, 'image row')}</small></h2>"
            )
        else:
            out.append('<section class="group">')
        out.append(f'<div class="grid" style="--cols:{len(runs)}">{heads}')
        for item in members:
            data = " ".join(f'data-f-{slug(k)}="{esc(v)}"' for k, v in item.facets.items())
            out.append(
                f'<div class="item" {data} data-item="{esc(item.item_id)}" style="contain-intrinsic-size:auto '
                f'{ROW_PX * len(item.rows) + 40}px">'
                f'<div class="prompt"><q>{esc(item.prompt)}</q> <small>{esc(item.item_id)}</small></div>'
            )
            for row in item.rows:
                cells = "".join(cell(r, row.cells.get(r.id), thumbs, binary) for r in runs)
                out.append(
                    f'<div class="row" data-seed="{esc(row.seed)}"><div class="seed" title="seed '
                    f'{esc(row.seed)}">#{row.index + 1}</div>{cells}</div>'
                )
            out.append("</div>")
        out.append("</div></section>")
    return "\n".join(out)


def filters(
    runs: Sequence[Run], items: Sequence[GridItem], facets: dict[str, str], disagree: bool, columns: bool = True
) -> str:
    """The filter bar (shown by report.js; hidden without JavaScript, where the grid is complete)."""
    parts = []
    for col, label in facets.items():
        values = list(dict.fromkeys(i.facets.get(col, "") for i in items))
        if len(values) < 2:
            continue
        opts = '<option value="">all</option>' + "".join(
            f'<option value="{esc(v)}">{esc(v)}</option>' for v in values if v
        )
        parts.append(f'<label>{esc(label)} <select name="f.{esc(slug(col))}">{opts}</select></label>')
    if disagree and len(runs) > 1:
        parts.append('<label><input type="checkbox" name="disagree" value="1"> only where methods disagree</label>')
    parts.append('<label>prompt contains <input type="search" name="q" size="16"></label>')
    if columns and len(runs) > 1:
        boxes = "".join(
            f'<label class="col"><input type="checkbox" name="run" value="{r.id}" checked> {esc(r.label)}</label>'
            for r in runs
        )
        parts.append(f'<span class="cols">columns: {boxes}</span>')
    parts.append('<output class="count" aria-live="polite"></output>')
    return f'<form class="filters" hidden>{"".join(parts)}</form>'


def group_toc(items: Sequence[GridItem], facets: dict[str, str]) -> str:
    group_by = next(iter(facets), None)
    if not group_by:
        return ""
    counts: dict[str, int] = {}
    for i in items:
        counts[i.facets.get(group_by, "")] = counts.get(i.facets.get(group_by, ""), 0) + 1
    links = " · ".join(f'<a href="#g-{slug(k)}">{esc(k or "(none)")}</a> ({v})' for k, v in counts.items())
    return f'<p class="toc">{esc(facets[group_by])}: {links}</p>'


def suite_page(suite: str, runs: list[Run], facets: dict[str, str], thumbs: Thumbs, generated: str) -> tuple[str, int]:
    """(page, number of images shown)."""
    items = grid_items(runs, list(facets))
    binary = is_binary(runs)
    n_images = sum(len(row.cells) for i in items for row in i.rows)
    what = "the verdict (✓/✗) and the detector's reason" if binary else "the per-image scores"
    body = [
        f"<h1>{esc(suite)}: images side by side</h1>",
        f'<p class="lede">{count(len(runs), "run")}, {count(len(items), "prompt")}, '
        f"{count(n_images, 'image')}. Each row is one prompt and one "
        f"image seed; each column one run, so a row shows the methods on the same noise. Under each image: {what}.</p>",
        filters(runs, items, facets, is_discrete(runs)),
        '<noscript><p class="note">Without JavaScript every image is shown; the links below jump to each '
        "group.</p></noscript>",
        group_toc(items, facets),
        grid(runs, items, facets, thumbs, binary),
    ]
    return page(f"{suite}: images", "\n".join(body), generated, [(suite, "")]), n_images


# --------------------------------------------------------------------------- compare pages

MAX_CONTINUOUS_ROWS = 48  # per direction, when the headline column is a score rather than a verdict


def differing(a: Run, b: Run, binary: bool) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The shared images whose headline column differs, in titled groups (B gained / B lost)."""
    col_a, col_b = a.headline_column(), b.headline_column()
    va = {(r["item_id"], r["seed"]): r.get(col_a) for r in a.records}
    deltas = []
    for r in b.records:
        key = (r["item_id"], r["seed"])
        x, y = va.get(key), r.get(col_b)
        if x is None or y is None or x == y:
            continue
        deltas.append((float(y) - float(x), key))
    up = [k for d, k in sorted(deltas, key=lambda t: -t[0]) if d > 0]
    down = [k for d, k in sorted(deltas, key=lambda t: t[0]) if d < 0]
    if binary:
        return [
            (f"B correct, A wrong ({count(len(up), 'image')})", up),
            (f"A correct, B wrong ({count(len(down), 'image')})", down),
        ]
    return [
        (
            f"B scores higher ({len(up)} images; the {min(len(up), MAX_CONTINUOUS_ROWS)} largest differences)",
            up[:MAX_CONTINUOUS_ROWS],
        ),
        (
            f"B scores lower ({len(down)} images; the {min(len(down), MAX_CONTINUOUS_ROWS)} largest differences)",
            down[:MAX_CONTINUOUS_ROWS],
        ),
    ]


def comparison_table(comps: Sequence[Any]) -> str:
    rows = []
    for c in comps:
        arrow = "↑" if c.higher_is_better else "↓"
        verdict = {"better": "better", "worse": "worse"}.get(c.verdict, "same")
        rows.append(
            f'<tr data-metric="{esc(c.metric)}"><th>{esc(c.display_name)} {arrow}</th>'
            f'<td class="num" data-value="{c.a!r}">{num(c.a)}</td><td class="num" data-value="{c.b!r}">{num(c.b)}</td>'
            f'<td class="num" data-value="{c.delta!r}">{c.delta:+.4f}</td>'
            f'<td class="num" data-value="{c.ci_low!r},{c.ci_high!r}">[{c.ci_low:+.4f}, {c.ci_high:+.4f}]</td>'
            f'<td class="num" data-value="{c.p_value!r}">{c.p_value:.4g}</td><td class="num">{c.n_prompts}</td>'
            f'<td class="verdict {verdict}">{esc(c.verdict)}</td></tr>'
        )
    return (
        '<table class="paired"><thead><tr><th>metric</th><th>A</th><th>B</th><th>B − A</th><th>95% CI</th><th>p</th>'
        f"<th>prompts</th><th>verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def compare_page(
    a: Run, b: Run, comps: Sequence[Any], facets: dict[str, str], thumbs: Thumbs, generated: str
) -> tuple[str, int]:
    binary = is_binary([a, b])
    n_pairs = comps[0].n_pairs if comps else 0
    body = [
        f"<h1>{esc(b.label)} <small>vs</small> {esc(a.label)}</h1>",
        kv_table(
            [
                (
                    "A (baseline)",
                    f'<a href="index.html#run-{a.id}">{esc(a.label)}</a> · {esc(a.model)} · <code>{a.id}</code>',
                ),
                (
                    "B (candidate)",
                    f'<a href="index.html#run-{b.id}">{esc(b.label)}</a> · {esc(b.model)} · <code>{b.id}</code>',
                ),
            ]
        ),
        f'<p class="lede">Paired over {n_pairs} shared images (same prompt, same seed): B − A, its bootstrap '
        "95% CI and a paired "
        "permutation test, as <code>craft-bench compare A B</code> prints them.</p>",
        comparison_table(comps),
    ]
    n_images = 0
    groups = differing(a, b, binary)
    all_keys = {k for _, keys in groups for k in keys}
    every = grid_items([a, b], list(facets), only=all_keys)
    if every:
        body.append(filters([a, b], every, facets, disagree=False, columns=False))
    for title, keys in groups:
        body.append(f"<h2>{esc(title)}</h2>")
        if not keys:
            body.append('<p class="note">none</p>')
            continue
        order = {k: n for n, k in enumerate(keys)}
        items = grid_items([a, b], list(facets), only=set(keys))
        items.sort(key=lambda i: min(order[(i.item_id, r.seed)] for r in i.rows))
        n_images += sum(len(row.cells) for i in items for row in i.rows)
        body.append(grid([a, b], items, facets, thumbs, binary, group=False, roles=("A", "B")))
    title = f"{b.label} vs {a.label}"
    return page(
        title, "\n".join(body), generated, [(a.suite, f"suite-{slug(a.suite)}.html"), ("compare", "")]
    ), n_images
