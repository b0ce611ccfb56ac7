"""The Python API, for notebooks and scripts, and what `craft-bench run`, `compare` and `leaderboard` are built on
(one path: the CLI parses flags, calls these and prints).

    import craft_bench
    r = craft_bench.run(method="craft", suite="geneval", settings={"method.steps": 20})
    r.metrics              # DataFrame: value, 95% CI, n per metric (headline first)
    r.samples              # DataFrame: one row per image (prompt, seed, image_path, the suite's scores, verdict)
    r.versus               # the paired comparison with the base model's run of the same protocol, when it exists
    c = craft_bench.compare("results/runs/geneval/vanilla__mini__1a2b3c4d", r)
    craft_bench.leaderboard("results", suite="geneval")

Nothing here imports torch or pandas until it is used, so ``import craft_bench`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from craft_bench import registry
from craft_bench.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from craft_bench.report.stats import Comparison as MetricComparison


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


# --------------------------------------------------------------------------- a run's results


@dataclass
class Result:
    """A finished run: its results.json (``results``), its folder (``run_dir``) and, after ``run``, the paired
    comparison with the base model's run of the same suite, protocol and seed (``versus``, or None)."""

    results: dict[str, Any]
    run_dir: Path
    versus: "Comparison | None" = None
    _samples: Any = field(default=None, repr=False)

    @property
    def method(self) -> str:
        return self.results["method"]

    @property
    def suite(self) -> str:
        return self.results["suite"]

    @property
    def model(self) -> str:
        return self.results["model"]

    @property
    def headline(self) -> float:
        """The suite's headline metric's value (GenEval: overall)."""
        return float(self.results["metrics"][self.results.get("headline", "overall")]["value"])

    @property
    def metrics(self) -> "pandas.DataFrame":
        """One row per metric (index: its name; headline first): display_name, value, ci_low, ci_high (95%
        bootstrap), n, higher_is_better, and p_value where the suite tests one."""
        import pandas as pd

        head = self.results.get("headline", "overall")
        names = sorted(self.results["metrics"], key=lambda n: n != head)
        cols = ["display_name", "value", "ci_low", "ci_high", "n", "higher_is_better"]
        rows = {n: {c: self.results["metrics"][n].get(c) for c in cols + ["p_value"]} for n in names}
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "metric"
        return frame[cols + (["p_value"] if frame["p_value"].notna().any() else [])]

    @property
    def samples(self) -> "pandas.DataFrame":
        """One row per image (samples.jsonl): item_id, index, seed, prompt, stratum, image (its cache key),
        image_path, the suite's per-image columns (GenEval: correct, reason, ...; scores), and ``verdict`` (bool) when
        the
        headline metric averages a 0/1 column."""
        if self._samples is None:
            self._samples = _samples_frame(self.results, self.run_dir)
        return self._samples.copy()

    @property
    def train(self) -> dict[str, Any] | None:
        """The training accounting (samples_used, steps, images_generated, reward_calls, train_s, timing, ...), or
        None for a method that did not train."""
        return self.results.get("train")

    @property
    def spec(self) -> dict[str, Any]:
        """run_spec.json: everything that identifies the run."""
        from craft_bench.report.collect import spec_of

        return spec_of(self.run_dir)

    def table(self) -> str:
        """The table `craft-bench run` prints."""
        from craft_bench.report.tables import results_table

        return results_table(self.results)

    def __str__(self) -> str:
        return self.table() + (f"\n{self.versus.line()}" if self.versus is not None else "")

    def __repr__(self) -> str:
        return (
            f"Result({self.method} x {self.suite} on {self.model}, "
            f"{self.results.get('headline', 'overall')}={self.headline:.4f}, run_dir='{self.run_dir}')"
        )


def _samples_frame(results: dict[str, Any], run_dir: Path) -> "pandas.DataFrame":
    import pandas as pd

    from craft_bench.report.collect import results_root_of
    from craft_bench.report.tables import load_records

    records = load_records(run_dir)
    root = results_root_of(run_dir)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    frame["image_path"] = [str(root / "images" / k[:2] / f"{k}.png") if root else None for k in frame["image"]]
    head = results.get("headline", "overall")
    column = next((d.get("column") for d in results.get("metric_defs", []) if d.get("name") == head), None)
    if column in frame and frame[column].dropna().isin([0, 1]).all():
        frame["verdict"] = frame[column].astype(bool)
    return frame


def load(path: str | Path) -> Result:
    """A finished run from its folder or results.json (one line naming the file when it is not a craft-bench result)."""
    from craft_bench.results_file import read_results, results_path

    return Result(read_results(path), results_path(path).parent)


# --------------------------------------------------------------------------- running


def _set_pairs(settings: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``{"method.steps": 20, "steps": 10}`` as the ``--set`` pairs the CLI would give."""
    pairs = []
    for key, value in (settings or {}).items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = ",".join(map(str, value))
        else:
            text = "none" if value is None else str(value)
        pairs.append((str(key), text))
    return pairs


def run(
    method: str,
    suite: str,
    model: str = "mini",
    seed: int = 0,
    settings: Mapping[str, Any] | None = None,
    *,
    limit: int | None = None,
    prompts: str | Path | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    vs: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Result | None:
    """Run ``method`` on ``suite`` (or return the finished run: a cache hit costs nothing) and return its ``Result``.

    ``settings`` are `--set`'s key/values (``{"method.lr": 1e-5, "steps": 20, "suite.images_per_prompt": 2}``). After a
    trainable method's run, ``Result.versus`` compares it with the base model's (vanilla) run of the same suite,
    protocol and seed when that run exists in the results root; ``vs="vanilla"`` (or another method) runs that one
    first when it is missing, and compares with it whatever the method. On the helper processes of a multi-process
    launch (torchrun) it returns None; the first process returns the result."""
    from craft_bench.runner import RunRequest, for_method, resolve, run_dir_of
    from craft_bench.runner import run as run_spec

    log = log or _stderr
    req = RunRequest(
        method=method,
        suite=suite,
        model=model,
        seed=seed,
        limit=limit,
        prompts=None if prompts is None else str(prompts),
        out=None if out is None else str(out),
        sets=_set_pairs(settings),
        device=device,
        dtype=dtype,
        progress=progress,
    )
    resolved = resolve(req)  # bad input stops here, before anything is written
    # After a trainable method: the baseline method's run (registry.baseline_method), when that run exists.
    reference = vs or (registry.baseline_method() if resolved.method.trainable else None)
    other = for_method(resolved, reference) if reference and reference != resolved.spec.method.name else None
    if vs and other is not None:
        run_spec(req, log, resolved=other)
    results, run_dir = run_spec(req, log, resolved=resolved)
    if results is None:
        return None
    result = load(run_dir)  # as written (JSON), so a returned result equals a loaded one
    if other is not None:
        base_dir = run_dir_of(other, req.out)
        if (base_dir / "results.json").is_file():
            try:
                result.versus = compare(base_dir, result)
            except UserError as exc:  # the run is finished and kept; only the line under its table is missing
                log(f"craft-bench: warning: no paired comparison with {base_dir}: {exc}")
    return result


# --------------------------------------------------------------------------- comparing


@dataclass
class Comparison:
    """B against A over the images both runs share (same prompt, same seed): per metric A, B, B - A, the paired
    bootstrap 95% CI, the paired permutation-test p-value and a verdict (``better`` / ``worse`` / ``no significant
    difference``); ``settings_differ``: the settings in which the two runs differ."""

    a: Result
    b: Result
    comparisons: "list[MetricComparison]"
    settings_differ: list[tuple[str, Any, Any]]

    @property
    def headline(self) -> "MetricComparison":
        head = self.a.results.get("headline", "overall")
        return next((c for c in self.comparisons if c.metric == head), self.comparisons[0])

    @property
    def verdict(self) -> str:
        return self.headline.verdict

    @property
    def regressed(self) -> bool:
        """B is significantly worse than A on the headline metric (`--fail-on-regression`)."""
        from craft_bench.report.compare import headline_regressed

        return headline_regressed(self.a.results, self.comparisons)

    @property
    def metrics(self) -> "pandas.DataFrame":
        """One row per metric (headline first): display_name, a, b, delta, ci_low, ci_high, p_value, n_pairs,
        n_prompts, verdict, higher_is_better."""
        import pandas as pd

        frame = pd.DataFrame.from_records([c.as_dict() for c in self.comparisons]).set_index("metric")
        return frame

    def as_dict(self) -> dict[str, Any]:
        """What `craft-bench compare --json` prints."""
        return {
            "a": self.a.results["spec_hash"],
            "b": self.b.results["spec_hash"],
            "suite": self.a.suite,
            "metrics": [c.as_dict() for c in self.comparisons],
            "settings_differ": [{"setting": k, "a": va, "b": vb} for k, va, vb in self.settings_differ],
        }

    def table(self) -> str:
        from craft_bench.report.tables import comparison_table

        return comparison_table(self.a.results, self.b.results, self.comparisons, self.settings_differ)

    def line(self) -> str:
        """The headline row of the table, on one line, naming A (what `craft-bench run` prints under its table)."""
        from craft_bench.report.tables import comparison_cells

        c = self.headline
        name, a, b, delta, ci, p, prompts, verdict = comparison_cells(c)
        return (
            f"vs {self.a.method} ({self.a.run_dir.name}): {name}  A {a}  B {b}  B - A {delta} {ci}  p {p}  "
            f"{prompts} prompts  {verdict}"
        )

    def __str__(self) -> str:
        return self.table()


def _as_result(x: "Result | str | Path") -> Result:
    return x if isinstance(x, Result) else load(x)


def compare(a: "Result | str | Path", b: "Result | str | Path", seed: int = 0) -> Comparison:
    """Paired comparison of run B against run A (run folders, results.json files or ``Result``s of one suite)."""
    from craft_bench.report.collect import spec_differences, spec_of
    from craft_bench.report.compare import compare_runs

    ra, rb = _as_result(a), _as_result(b)
    _, _, comps = compare_runs(ra.run_dir, rb.run_dir, seed=seed)
    return Comparison(ra, rb, comps, spec_differences(spec_of(ra.run_dir), spec_of(rb.run_dir)))


# --------------------------------------------------------------------------- the leaderboard


@dataclass
class Entry:
    """One finished run as the leaderboard lists it."""

    results: dict[str, Any]
    settings: str  # the settings that are not the defaults (``settings_label``)
    run_dir: Path


def collect_runs(
    root: str | Path | None = None, suite: str | None = None, warn: Callable[[str], None] | None = None
) -> dict[str, list[Entry]]:
    """Every finished run under the results root, by suite (sorted). A results.json that is not a craft-bench result
    is skipped with a warning (``warn``); no run at all is a one-line error."""
    from craft_bench.report.collect import settings_label, spec_of
    from craft_bench.results_file import NotResults, read_results
    from craft_bench.store import Store

    warn = warn or (lambda line: _stderr(f"craft-bench: warning: {line}"))
    store = Store(root, create=False)
    by_suite: dict[str, list[Entry]] = {}
    for path in store.iter_results(suite):
        try:
            res = read_results(path)
        except NotResults as exc:
            warn(f"skipping {exc}")
            continue
        by_suite.setdefault(res["suite"], []).append(Entry(res, settings_label(spec_of(path.parent)), path.parent))
    if not by_suite:
        where = f" for suite '{suite}'" if suite else ""
        raise UserError(f"no finished runs{where} under {store.root}; run `craft-bench run ...` first or pass --out")
    return dict(sorted(by_suite.items()))


def leaderboard(root: str | Path | None = None, suite: str | None = None) -> "pandas.DataFrame":
    """Every finished run under ``root`` (default: $CRAFT_BENCH_RESULTS or ./results), best headline first within each
    suite: suite, method, model, seed, spec, settings, then per metric ``<name>`` (value), ``<name>_ci_low``,
    ``<name>_ci_high``, then train_s, samples_used, run_dir. The rows of `craft-bench leaderboard`."""
    import pandas as pd

    from craft_bench.report.tables import FIXED_COLUMNS, leaderboard_rows

    frames = []
    for name, entries in collect_runs(root, suite).items():
        headers, rows = leaderboard_rows(
            [e.results for e in entries], [e.settings for e in entries], [e.run_dir for e in entries]
        )
        flat = []
        for row in rows:
            out: dict[str, Any] = {"suite": name}
            for h, cell in zip(headers, row):
                if h in FIXED_COLUMNS:
                    out[h] = cell
                else:
                    out[h] = cell["value"] if isinstance(cell, dict) else None
                    out[f"{h}_ci_low"] = cell["ci_low"] if isinstance(cell, dict) else None
                    out[f"{h}_ci_high"] = cell["ci_high"] if isinstance(cell, dict) else None
            flat.append(out)
        frames.append(pd.DataFrame.from_records(flat))
    return pd.concat(frames, ignore_index=True)
