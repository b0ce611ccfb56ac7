"""`craft-bench report` over real mini runs, checked on disk and in headless Chromium.

Runs: three GenEval-mini runs of the same 6 prompts x 2 seeds (vanilla, vanilla with 6 sampler steps, the
test-only ``redshift`` method) and two runs of the test-only ``toy`` suite (continuous scores) on a tiny SDXL.
The sweep page is built from a hand-written sweep.json over those runs (in the format `craft-bench sweep` writes,
docs/report.md; tests/test_sweep.py reports a real sweep). Screenshots land in the test's tmp folder
(``report-shots/``) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote

import pytest
from browser import Browser, find_chromium, parse

GENEVAL = ["--suite", "geneval", "--limit", "6", "--set", "suite.images_per_prompt=2", "--no-progress"]
TOY_FAST = ["--set", "steps=2", "--set", "batch_size=4", "--no-progress"]


def _run(cli, *args: str) -> tuple[dict, Path]:
    proc = cli("run", *args)
    res_dir = Path(re.search(r"run folder: (.+)", proc.stdout).group(1).strip())
    return json.loads((res_dir / "results.json").read_text()), res_dir


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def results_root(cli, tiny_sdxl, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report-results")
    out = ["--out", str(root)]
    runs = {
        "vanilla": _run(cli, "--method", "vanilla", *GENEVAL, *out),
        "steps6": _run(cli, "--method", "vanilla", *GENEVAL, "--set", "steps=6", *out),
        "redshift": _run(cli, "--method", "redshift", *GENEVAL, *out),
        "toy_vanilla": _run(cli, "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), *TOY_FAST, *out),
        "toy_red": _run(cli, "--method", "redshift", "--suite", "toy", "--model", str(tiny_sdxl), *TOY_FAST, *out),
    }
    _write_sweep(root, runs)
    return {"root": root, "runs": runs}


def _write_sweep(root: Path, runs: dict) -> None:
    """A sweep.json in the format `craft-bench sweep` writes, over three of the real runs."""
    from craft_bench.report.compare import compare_records

    base, base_dir = runs["vanilla"]
    sweep_dir = root / "sweeps" / "demo"
    logs = root / "checkpoints" / "fake"
    logs.mkdir(parents=True)
    cells = []
    for name, method, budget, train_s in (
        ("vanilla", "vanilla", 0, {}),
        ("redshift", "redshift", 25, {"candidates": 30.0, "rewards": 2.5, "train": 12.0}),
        ("steps6", "craft", 100, {"candidates": 120.0, "rewards": 9.0, "train": 41.0}),
    ):
        res, run_dir = runs[name]
        cell = {
            "method": method,
            "budget": budget,
            "seed": 0,
            "run": os.path.relpath(run_dir, sweep_dir),
            "headline": {k: res["metrics"]["overall"][k] for k in ("value", "ci_low", "ci_high", "n")},
            "samples_used": budget,
            "train_s": train_s,
            "images_generated": budget * 4,
            "reward_calls": budget * 8,
            "peak_memory_mb": 800.0 + budget,
        }
        if name != "vanilla":
            head = compare_records(base, _records(base_dir), _records(run_dir))[0]
            cell["delta_vs_vanilla"] = {
                k: getattr(head, k) for k in ("delta", "ci_low", "ci_high", "p_value", "verdict")
            }
            log = logs / f"{name}.jsonl"
            log.write_text(
                "".join(
                    json.dumps({"step": s, "loss": 1.0 / s, "reward": 0.1 * s, "kept": 25}) + "\n" for s in range(1, 21)
                )
            )
            cell["train_log"] = str(log)
        cells.append(cell)
    cells.append(
        {
            "method": "mapo",
            "budget": 25,
            "seed": 0,
            "headline": {"value": 0.05, "ci_low": 0.0, "ci_high": 0.1},
            "samples_used": 25,
            "train_s": 300.0,
        }
    )
    sweep = {
        "schema_version": 1,
        "name": "demo",
        "suite": "geneval",
        "model": "mini",
        "headline": "overall",
        "created": "2026-12-01T00:00:00+00:00",
        "wall_s": 321.0,
        "cells": cells,
        "compute_to_match": [
            {
                "method": "redshift",
                "reference": "craft",
                "budget": 100,
                "reference_train_s": 170.0,
                "train_s": 1870.0,
                "ratio": 11.0,
            },
            {
                "method": "mapo",
                "reference": "craft",
                "budget": 100,
                "reference_train_s": 170.0,
                "ratio": None,
                "note": "not reached within the grid",
            },
        ],
        "reward_hacking": [
            {
                "method": "craft",
                "budget": 100,
                "judge": "mini-clip",
                "trained_on": True,
                "gain": 0.12,
                "ci_low": 0.05,
                "ci_high": 0.2,
            },
            {
                "method": "craft",
                "budget": 100,
                "judge": "geneval",
                "trained_on": False,
                "gain": -0.02,
                "ci_low": -0.08,
                "ci_high": 0.03,
            },
            {
                "method": "redshift",
                "budget": 25,
                "judge": "mini-clip",
                "trained_on": True,
                "gain": 0.3,
                "ci_low": 0.2,
                "ci_high": 0.4,
            },
        ],
    }
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(json.dumps(sweep, indent=1))


@pytest.fixture(scope="module")
def site(cli, results_root, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("site") / "report"
    proc = cli("report", str(results_root["root"]), "--out", str(out), "--json", "--no-progress")
    return {"out": out, "summary": json.loads(proc.stdout), **results_root}


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Browser:
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            "no Chromium on PATH (install Debian's `chromium` package, as .ci/run does, or set CRAFT_BENCH_CHROMIUM)"
        )
    return Browser(exe, tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Screenshots: in the test's tmp folder, or in $CRAFT_BENCH_REPORT_SHOTS to keep them."""
    keep = os.environ.get("CRAFT_BENCH_REPORT_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("report-shots")


def url(path: Path, hash_: str = "") -> str:
    return "file://" + quote(str(path)) + (f"#{hash_}" if hash_ else "")


def _id(res: dict) -> str:
    return res["spec_hash"][:8]


# --------------------------------------------------------------------------- on disk


def test_report_is_self_contained_and_links_resolve(site):
    out, summary, runs = site["out"], site["summary"], site["runs"]
    keys = {r["image"] for _, d in runs.values() for r in _records(d)}
    assert summary["unique_images"] == len(keys) == summary["thumbs"]["linked"] + summary["thumbs"]["copied"]
    assert summary["runs"] == 5 and summary["suites"] == 2 and summary["sweeps"] == 1
    # small images are hard links of the cache's files (same inode), not copies
    key = next(iter(keys))
    thumb = out / "thumbs" / key[:2] / f"{key}.png"
    original = site["root"] / "images" / key[:2] / f"{key}.png"
    if summary["thumbs"]["linked"]:
        assert os.stat(thumb).st_ino == os.stat(original).st_ino
    assert thumb.read_bytes() == original.read_bytes()
    # every page and asset: no network resources, every local link points at a file of the report
    texts = {p: p.read_text() for p in [*out.glob("*.html"), *(out / "assets").iterdir()]}
    assert {"index.html", "suite-geneval.html", "suite-toy.html", "sweep-demo.html"} <= {p.name for p in texts}
    for path, text in texts.items():
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
        assert not re.search(r"@import|url\(\s*['\"]?https?:", text), path
        if path.suffix == ".html":
            for ref in re.findall(r"""(?:src|href)="([^"#]+)""", text):
                assert (out / ref).is_file(), f"{path.name} links to missing {ref}"


def test_rebuild_in_place_reuses_thumbnails_and_refuses_foreign_folders(cli, site, tmp_path):
    again = json.loads(cli("report", str(site["root"]), "--out", str(site["out"]), "--json", "--no-progress").stdout)
    assert again["thumbs"]["reused"] == again["unique_images"] and again["thumbs"]["linked"] == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = cli("report", str(site["root"]), "--out", str(foreign), check=False)
    assert proc.returncode == 2 and "not empty" in proc.stderr and "Traceback" not in proc.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty-root"
    empty.mkdir()
    proc = cli("report", str(empty), "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "not a run folder" in proc.stderr
    bad = tmp_path / "bad" / "sweep.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"cells": [{"method": "x"}]}))
    proc = cli("report", str(bad), "--out", str(tmp_path / "r2"), check=False)
    assert proc.returncode == 2 and "cells[0]" in proc.stderr and "headline" in proc.stderr


def test_large_images_get_downscaled_thumbnails(cli, site, tmp_path):
    from PIL import Image

    vanilla_dir = site["runs"]["vanilla"][1]
    out = tmp_path / "small-thumbs"
    summary = json.loads(
        cli("report", str(vanilla_dir), "--out", str(out), "--thumb-size", "32", "--json", "--no-progress").stdout
    )
    assert summary["thumbs"]["generated"] == summary["unique_images"] == 12 and summary["thumbs"]["linked"] == 0
    thumbs = sorted((out / "thumbs").glob("*/*.32.jpg"))
    assert len(thumbs) == 12
    with Image.open(thumbs[0]) as im:
        assert im.format == "JPEG" and max(im.size) == 32
    page = (out / "suite-geneval.html").read_text()
    assert page.count('loading="lazy"') == 12 and ".32.jpg" in page and 'class="px"' not in page


# --------------------------------------------------------------------------- in the browser


def test_index_leaderboard_shows_results_json(site, browser, shots):
    out, runs = site["out"], site["runs"]
    dom = browser.dom(url(out / "index.html"))
    table = dom.find("table", id="lb-geneval")
    rows = [tr for tr in table.find_all("tr") if "data-run" in tr.attrs]
    assert len(rows) == 3
    for name in ("vanilla", "steps6", "redshift"):
        res, _ = runs[name]
        row = next(tr for tr in rows if tr.attrs["data-run"] == _id(res))
        for metric, m in res["metrics"].items():
            td = row.find("td", data_metric=metric)
            assert float(td.attrs["data-value"]) == m["value"]
            assert td.find("span", cls="v").text == f"{m['value']:.4f}"
            assert td.find("span", cls="ci").text == f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]"
    shown = [float(tr.find("td", data_metric="overall").attrs["data-value"]) for tr in rows]
    assert shown == sorted(shown, reverse=True)
    # provenance: the setting that differs from the defaults, the full spec hash, versions
    steps6 = runs["steps6"][0]
    prov = dom.find("details", id=f"run-{_id(steps6)}")
    assert "steps" in prov.find("table", cls="diffs").text and steps6["spec_hash"] in prov.text
    assert steps6["versions"]["torch"] in prov.text and steps6["created"] in prov.text
    assert dom.find("html").attrs.get("data-load-ms", "").isdigit()
    browser.screenshot(url(out / "index.html"), shots / "index.png")


def test_leaderboard_sorts_by_hash_state(site, browser):
    out = site["out"]
    head = browser.dom(url(out / "index.html")).find("table", id="lb-geneval").find("tr")
    col = [
        n
        for n, th in enumerate(c for c in head.children if not isinstance(c, str))
        if th.attrs.get("data-metric") == "two_object"
    ][0]
    dom = browser.dom(url(out / "index.html", f"sort=lb-geneval.{col}.asc"))
    table = dom.find("table", id="lb-geneval")
    values = [
        float(tr.find("td", data_metric="two_object").attrs["data-value"])
        for tr in table.find_all("tr")
        if "data-run" in tr.attrs
    ]
    assert values == sorted(values)
    assert table.find_all("th", data_metric="two_object")[0].attrs.get("aria-sort") == "ascending"


def _grid_rows(dom) -> dict[tuple[str, str], object]:
    return {
        (row.parent.attrs["data-item"], row.attrs["data-seed"]): row
        for row in dom.find_all("div", cls="row")
        if "data-seed" in row.attrs
    }


def test_suite_grid_shows_every_image_with_its_verdict(site, browser, shots):
    out, runs = site["out"], site["runs"]
    dom = browser.dom(url(out / "suite-geneval.html"))
    rows = _grid_rows(dom)
    assert len(rows) == 12  # 6 prompts x 2 seeds, shared by the three runs
    for name in ("vanilla", "steps6", "redshift"):
        res, run_dir = runs[name]
        for rec in _records(run_dir):
            fig = rows[(rec["item_id"], str(rec["seed"]))].find("figure", data_run=_id(res))
            img = fig.find("img", cls="lazy")  # its src is set by report.js as it nears the screen
            src = img.attrs.get("src") or img.attrs["data-src"]
            assert src == f"thumbs/{rec['image'][:2]}/{rec['image']}.png" and (out / src).is_file()
            assert img.attrs["width"] == "192" and "px" in img.attrs["class"]
            assert fig.attrs["data-v"] == str(rec["correct"])
            assert ("✓ correct" if rec["correct"] else "✗ wrong") in fig.text
            assert rec["reason"].replace("\n", "") in fig.text.replace("\n", "")
            assert not fig.hidden
    assert not dom.find("form", cls="filters").hidden  # report.js revealed the filters
    lazy = dom.find_all(
        "img", cls="lazy"
    )  # report.js gave the first 24 their src at once (the rest: when near the screen)
    assert all(("src" in i.attrs) != ("data-src" in i.attrs) for i in lazy)
    assert all("src" in i.attrs and "data-src" not in i.attrs for i in lazy[:24])
    browser.screenshot(url(out / "suite-geneval.html"), shots / "suite-geneval.png")


def test_filters_hide_the_right_rows(site, browser, shots):
    out, runs = site["out"], site["runs"]
    page = out / "suite-geneval.html"
    recs = {
        name: {(r["item_id"], str(r["seed"])): r for r in _records(runs[name][1])}
        for name in ("vanilla", "steps6", "redshift")
    }

    dom = browser.dom(url(page, "f.stratum=counting"))
    visible = {k for k, row in _grid_rows(dom).items() if not row.hidden}
    assert visible == {k for k, r in recs["vanilla"].items() if r["stratum"] == "counting"} and len(visible) == 2

    def disagree(names):
        return {k for k in recs["vanilla"] if len({recs[n][k]["correct"] for n in names}) > 1}

    dom = browser.dom(url(page, "disagree=1"))
    visible = {k for k, row in _grid_rows(dom).items() if not row.hidden}
    assert visible == disagree(["vanilla", "steps6", "redshift"])
    assert 0 < len(visible) < 12, "the fixture should have rows where the methods agree and rows where they do not"
    items_shown = {i.attrs["data-item"] for i in dom.find_all("div", cls="item") if not i.hidden}
    assert items_shown == {k[0] for k in visible}

    # hide a column: disagreement is then judged over the two runs left
    hide = _id(runs["redshift"][0])
    dom = browser.dom(url(page, f"disagree=1&hide={hide}"))
    assert {k for k, row in _grid_rows(dom).items() if not row.hidden} == disagree(["vanilla", "steps6"])
    assert all(f.hidden for f in dom.find_all("figure", data_run=hide))
    browser.screenshot(url(page, f"disagree=1&hide={hide}"), shots / "suite-geneval-disagree.png")

    dom = browser.dom(url(page, "q=triangle"))
    shown = {i.find("q").text for i in dom.find_all("div", cls="item") if not i.hidden}
    assert shown and all("triangle" in p for p in shown)
    assert {r["prompt"] for r in recs["vanilla"].values() if "triangle" in r["prompt"]} == shown


def _without_script(page: Path) -> Path:
    """The page as a browser with JavaScript off renders it: no script, <noscript> shown. (Chromium's
    --blink-settings=scriptEnabled=false makes headless --dump-dom and --screenshot produce nothing.)"""
    text = page.read_text().replace('<script src="assets/report.js"></script>', "")
    copy = page.with_name(f"nojs-{page.name}")
    copy.write_text(text.replace("<noscript>", "<div>").replace("</noscript>", "</div>"))
    return copy


def test_pages_read_without_javascript(site, browser, shots):
    out = site["out"]
    static = parse((out / "suite-geneval.html").read_text())  # the DOM a browser without JavaScript has
    assert static.find("form", cls="filters").hidden
    assert len(_grid_rows(static)) == 12 and all(not row.hidden for row in _grid_rows(static).values())
    assert not any(n.hidden for n in static.find_all("figure")) and "Without JavaScript" in static.find("noscript").text
    for fig in static.find_all(
        "figure", cls="cell"
    ):  # no src to parse until JS sets it; <noscript> has the plain image
        lazy, plain = fig.find("img", cls="lazy"), fig.find("noscript").find("img")
        assert (
            "src" not in lazy.attrs
            and plain.attrs["src"] == lazy.attrs["data-src"]
            and plain.attrs["loading"] == "lazy"
        )
    lb = parse((out / "index.html").read_text()).find("table", id="lb-geneval")
    assert len([tr for tr in lb.find_all("tr") if "data-run" in tr.attrs]) == 3
    for name in ("suite-geneval.html", "index.html"):
        copy = _without_script(out / name)
        try:
            browser.screenshot(url(copy), shots / f"{name[:-5]}-nojs.png")
            assert "js" not in browser.dom(url(copy)).find("html").attrs.get("class", "")
        finally:
            copy.unlink()


def test_compare_page_matches_compare_verb(cli, site, browser, shots):
    out, runs = site["out"], site["runs"]
    (a, a_dir), (b, b_dir) = runs["vanilla"], runs["steps6"]
    page = out / f"compare-{_id(a)}-{_id(b)}.html"
    assert page.is_file()
    expected = json.loads(cli("compare", str(a_dir), str(b_dir), "--json").stdout)["metrics"]
    dom = browser.dom(url(page))
    for m in expected:
        tr = dom.find("tr", data_metric=m["metric"])
        tds = tr.find_all("td")
        assert [
            float(tds[0].attrs["data-value"]),
            float(tds[1].attrs["data-value"]),
            float(tds[2].attrs["data-value"]),
        ] == [m["a"], m["b"], m["delta"]]
        assert tds[-1].text == m["verdict"]
    ra = {(r["item_id"], str(r["seed"])): r["correct"] for r in _records(a_dir)}
    rb = {(r["item_id"], str(r["seed"])): r["correct"] for r in _records(b_dir)}
    differ = {k for k in ra if ra[k] != rb[k]}
    shown = set(_grid_rows(dom))
    assert shown == differ
    for k, row in _grid_rows(dom).items():
        assert row.find("figure", data_run=_id(b)).attrs["data-v"] == str(rb[k])
    browser.screenshot(url(page), shots / "compare.png")


def test_toy_suite_shows_scores_not_verdicts(site, browser):
    out, runs = site["out"], site["runs"]
    dom = browser.dom(url(out / "suite-toy.html"))
    assert not dom.find_all("input", name="disagree")  # a continuous score has no "disagree"
    res, run_dir = runs["toy_red"]
    rows = _grid_rows(dom)
    for rec in _records(run_dir):
        fig = rows[(rec["item_id"], str(rec["seed"]))].find("figure", data_run=_id(res))
        assert f"redness {rec['redness']:.4f}" in " ".join(fig.text.split())
    options = [o.attrs["value"] for o in dom.find("select").find_all("option")]
    assert options == ["", "warm", "cool"]


def test_sweep_page_tables_and_plots(site, browser, shots):
    out = site["out"]
    sweep = json.loads((site["root"] / "sweeps" / "demo" / "sweep.json").read_text())
    dom = browser.dom(url(out / "sweep-demo.html"))
    rows = [tr for tr in dom.find("table", id="sweep-cells").find_all("tr") if tr.find_all("td")]
    assert len(rows) == len(sweep["cells"])
    for tr, cell in zip(rows, sweep["cells"]):
        tds = tr.find_all("td")
        assert tds[0].text == cell["method"] and float(tds[3].attrs["data-value"]) == cell["headline"]["value"]
        if "run" in cell:
            link = tr.find("a").attrs["href"]
            assert link.startswith("index.html#run-")
    for stem in ("headline-vs-samples", "headline-vs-compute", "training-curves"):
        png, svg = out / "sweep-demo" / f"{stem}.png", out / "sweep-demo" / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert ET.parse(svg).getroot().tag.endswith("svg")
        assert dom.find_all("img", src=f"sweep-demo/{stem}.png")
    hacking = dom.find("table", cls="hacking")
    assert len(hacking.find_all("span", cls="trained")) == 2 and len(hacking.find_all("span", cls="held")) == 1
    assert "11.0×" in dom.text and "not reached within the grid" in dom.text
    browser.screenshot(url(out / "sweep-demo.html"), shots / "sweep.png", size=(1280, 2000))
    # the SVG is byte-identical when the sweep page is rebuilt
    before = (out / "sweep-demo" / "headline-vs-samples.svg").read_bytes()
    from craft_bench.report.sweep import load_sweep, plots

    again = out.parent / "again"
    plots(load_sweep(site["root"] / "sweeps" / "demo" / "sweep.json"), again)
    assert (again / "sweep-demo" / "headline-vs-samples.svg").read_bytes() == before


def test_thumbnails_copy_when_hard_links_fail(site, tmp_path, monkeypatch):
    """Across file systems (EXDEV) a hard link is impossible: the image is copied, byte for byte."""
    import errno

    from craft_bench.report.thumbs import Thumbs

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    rec = _records(site["runs"]["vanilla"][1])[0]
    source = site["root"] / "images" / rec["image"][:2] / f"{rec['image']}.png"
    thumbs = Thumbs(tmp_path)
    thumb = thumbs.add(rec["image"], source)
    assert (thumb.width, thumb.height, thumb.pixelated) == (192, 192, True)  # 64 px shown 3x, nearest-neighbour
    stats = thumbs.make(progress=False)
    assert (stats.copied, stats.linked) == (1, 0)
    target = tmp_path / thumb.src
    assert target.read_bytes() == source.read_bytes() and os.stat(target).st_ino != os.stat(source).st_ino
    assert thumbs.add("f" * 64, tmp_path / "absent.png") is None and thumbs.stats.missing == 1


def test_facets_of_a_suite_without_declared_ones(tmp_path):
    """A suite that is not installed here (or declares no facets) gets the stratum and Parti's conventional
    category/challenge columns; a column repeating another one record for record is dropped."""
    from craft_bench.report.collect import Run
    from craft_bench.report.site import suite_facets

    recs = [
        {"item_id": f"p{i}", "seed": 0, "stratum": c, "category": c, "challenge": ch}
        for i, (c, ch) in enumerate([("Animals", "Basic"), ("Food", "Complex"), ("Animals", "Quantity")])
    ]
    run = Run({"suite": "not-installed", "spec_hash": "0" * 64}, tmp_path, {}, recs, None)
    assert suite_facets("not-installed", [run]) == {"category": "category", "challenge": "challenge"}
    assert suite_facets("geneval", [Run({}, tmp_path, {}, [{"stratum": "counting"}], None)]) == {"stratum": "task"}


def test_labels_tell_runs_apart_when_a_setting_is_a_dict():
    """parti's `baseline` setting is a dict (method, version, config, seed): labels must still be built."""
    from types import SimpleNamespace

    from craft_bench.report.collect import Diff, assign_labels

    base = {"method": "vanilla", "version": "1", "config": [], "seed": 0}
    runs = [
        SimpleNamespace(method=m, model="mini", id=m, label="", diffs=[Diff("suite", "baseline", base, None), *extra])
        for m, extra in (("vanilla", []), ("craft", [Diff("sampler", "steps", 12, 10)]))
    ]
    assign_labels(runs)
    assert [r.label for r in runs] == ["vanilla", "craft steps=12"]
