"""What `craft-bench report` shows: finished runs and sweeps, found from the paths a user gives.

A path may be a run folder or its results.json, a suite folder (``runs/<suite>``), a results root (it holds
``runs/`` or ``sweeps/``), or a sweep (a folder holding sweep.json, or the file). Each run is read once
(results.json, run_spec.json, samples.jsonl) into a ``Run``; its images are found in the results root
that holds it (``<root>/images/<k[:2]>/<k>.png``). Nothing here renders HTML.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from craft_bench.errors import UserError

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Diff:
    """A setting of a run that differs from its default (``section`` is method, suite, sampler or run)."""

    section: str
    key: str
    value: Any
    default: Any

    def ident(self) -> tuple[str, str, str]:
        """Hashable identity (a value may be a dict or a list)."""
        return self.section, self.key, json.dumps(self.value, sort_keys=True, default=str)

    def label(self) -> str:
        prefix = "" if self.section in ("sampler", "run") else f"{self.section}."
        return f"{prefix}{self.key}={_short(self.value)}"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:21] + "..."


@dataclass
class Run:
    """One finished run as the report sees it."""

    results: dict[str, Any]
    run_dir: Path
    spec: dict[str, Any]  # run_spec.json ({} when missing)
    records: list[dict[str, Any]]  # samples.jsonl ([] when missing)
    root: Path | None  # the results root whose images/ holds this run's images
    diffs: list[Diff] = field(default_factory=list)
    unknown_defaults: list[str] = field(default_factory=list)  # sections whose defaults could not be read
    label: str = ""  # set per page group by ``assign_labels``

    @property
    def id(self) -> str:
        return self.results["spec_hash"][:8]

    @property
    def suite(self) -> str:
        return self.results["suite"]

    @property
    def method(self) -> str:
        return self.results["method"]

    @property
    def model(self) -> str:
        return self.results["model"]

    @property
    def headline(self) -> str:
        return self.results.get("headline", "overall")

    def headline_column(self) -> str | None:
        """The per-image record column the headline metric averages (GenEval: ``correct``)."""
        for d in self.results.get("metric_defs", []):
            if d.get("name") == self.headline:
                return d.get("column")
        return None

    def image_path(self, key: str) -> Path | None:
        return self.root / "images" / key[:2] / f"{key}.png" if self.root else None


# --------------------------------------------------------------------------- reading


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable {what} ({exc}); fix or remove it") from None


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: a line is not JSON ({exc}); rerun the run to rewrite it") from None
    return out


def results_root_of(run_dir: Path) -> Path | None:
    """The results root holding ``run_dir`` (``<root>/runs/<suite>/<run>``), else the nearest ancestor with images/."""
    run_dir = run_dir.resolve()
    if run_dir.parent.parent.name == "runs":
        return run_dir.parent.parent.parent
    for parent in run_dir.parents:
        if (parent / "images").is_dir():
            return parent
    return None


def load_run(path: Path) -> Run:
    from craft_bench.results_file import read_results

    run_dir = path.parent if path.name == "results.json" else path
    results = read_results(run_dir)
    spec_path = run_dir / "run_spec.json"
    spec = _read_json(spec_path, "run_spec.json") if spec_path.is_file() else {}
    run = Run(results, run_dir.resolve(), spec, _read_records(run_dir / "samples.jsonl"), results_root_of(run_dir))
    run.diffs, run.unknown_defaults = settings_diff(spec)
    return run


@dataclass
class Inputs:
    runs: list[Run]
    sweeps: list[Path]  # sweep.json files
    root: Path  # the results root of the first input (where the report goes by default)
    skipped: list[str] = field(default_factory=list)  # one line per results.json that is not a craft-bench result


def _is_root(path: Path) -> bool:
    return (path / "runs").is_dir() or (path / "sweeps").is_dir()


def discover(paths: Iterable[str | Path], default_root: Path) -> Inputs:
    """Classify each path and load every run it names; a run named twice is loaded once."""
    paths = [Path(p).expanduser() for p in paths] or [default_root]
    run_files: list[Path] = []
    sweeps: list[Path] = []
    roots: list[Path] = []
    for p in paths:
        if p.is_file() and p.name == "results.json":
            run_files.append(p)
            roots.append(results_root_of(p.parent) or p.parent)
        elif p.is_file() and p.suffix == ".json":
            sweeps.append(p)
            roots.append(p.parent.parent.parent if p.parent.parent.name == "sweeps" else p.parent)
        elif (p / "results.json").is_file():
            run_files.append(p / "results.json")
            roots.append(results_root_of(p) or p)
        elif (p / SWEEP_FILE).is_file():
            sweeps.append(p / SWEEP_FILE)
            roots.append(p.parent.parent if p.parent.name == "sweeps" else p)
        elif p.is_dir() and _is_root(p):
            run_files += sorted((p / "runs").glob("*/*/results.json"))
            sweeps += sorted((p / "sweeps").glob(f"*/{SWEEP_FILE}"))
            roots.append(p)
        elif p.is_dir() and any(p.glob("*/results.json")):
            run_files += sorted(p.glob("*/results.json"))
            roots.append(p.parent.parent if p.parent.name == "runs" else p)
        elif not p.exists():
            where = (
                " (the default results root; name your results root or runs as arguments, or set CRAFT_BENCH_RESULTS)"
                if p == default_root
                else ""
            )
            raise UserError(
                f"{p}: no such file or folder{where}; give run folders, results.json files, sweeps or a results root"
            )
        else:
            raise UserError(
                f"{p}: not a run folder, results.json, sweep.json or results root (no runs/ in it); give one of those"
            )
    from craft_bench.results_file import NotResults

    runs: dict[str, Run] = {}
    skipped: list[str] = []
    for f in run_files:
        try:
            run = load_run(f)
        except NotResults as exc:  # another tool's or a damaged file: the other runs still make a report
            skipped.append(f"skipping {exc}")
            continue
        runs.setdefault(run.results["spec_hash"], run)
    return Inputs(list(runs.values()), list(dict.fromkeys(s.resolve() for s in sweeps)), roots[0], skipped)


# --------------------------------------------------------------------------- settings vs defaults


def _plugin_defaults(kind: str, name: str) -> dict[str, Any] | None:
    from craft_bench import registry
    from craft_bench.spec import to_jsonable

    try:
        cls = registry.REGISTRIES[kind].get(name)
        return to_jsonable(cls.Config())
    except (UserError, ImportError, TypeError, ValueError, AttributeError):
        return None


def _sampler_defaults(model: dict[str, Any]) -> dict[str, Any] | None:
    """The default sampler of the run's model: its preset's, or its local folder's (family + craft_bench.json)."""
    from craft_bench import registry
    from craft_bench.models import SD15, SDXL, folder_sampler

    name, source = model.get("name", ""), model.get("source", "")
    try:
        if name in registry.models:
            preset = registry.models.get(name)
            own = {s for s in (preset.hub_id, preset.local_dir) if s}
            if source in own or any(Path(s).resolve() == Path(source).resolve() for s in own if Path(s).exists()):
                return dataclasses.asdict(preset.sampler)
        if source and Path(source).is_dir():
            base = SDXL.sampler if model.get("family") == "sdxl" else SD15.sampler
            return dataclasses.asdict(folder_sampler(Path(source), base))
    except (UserError, OSError, ValueError):
        pass
    return None


RUN_DEFAULTS = {"seed": 0, "limit": None, "prompts": None}


def settings_diff(spec: dict[str, Any]) -> tuple[list[Diff], list[str]]:
    """Settings of a run_spec.json that differ from the defaults, and the sections whose defaults are unknown."""
    if not spec:
        return [], ["run_spec.json"]
    diffs: list[Diff] = []
    unknown: list[str] = []
    for section, kind in (("method", "methods"), ("suite", "suites")):
        given = dict(tuple(pair) for pair in spec.get(section, {}).get("config", []))
        defaults = _plugin_defaults(kind, spec.get(section, {}).get("name", ""))
        if defaults is None:
            unknown.append(f"{section} '{spec.get(section, {}).get('name', '?')}' (plug-in not installed here)")
            continue
        diffs += [Diff(section, k, v, defaults.get(k)) for k, v in sorted(given.items()) if defaults.get(k) != v]
    sampler_defaults = _sampler_defaults(spec.get("model", {}))
    if sampler_defaults is None:
        unknown.append(f"sampler (model '{spec.get('model', {}).get('name', '?')}' not found here)")
    else:
        diffs += [
            Diff("sampler", k, v, sampler_defaults.get(k))
            for k, v in spec.get("sampler", {}).items()
            if sampler_defaults.get(k) != v
        ]
    diffs += [Diff("run", k, spec.get(k), d) for k, d in RUN_DEFAULTS.items() if spec.get(k) != d]
    return diffs, unknown


def spec_of(run_dir: Path) -> dict[str, Any]:
    """A run folder's run_spec.json ({} when it has none or it does not read)."""
    try:
        return json.loads((Path(run_dir) / "run_spec.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def settings_label(spec: dict[str, Any]) -> str:
    """The run's settings that are not the defaults, as ``key=value`` words (what tells leaderboard rows apart)."""
    if not spec:
        return "?"
    diffs, _ = settings_diff(spec)
    return " ".join(d.label() for d in diffs) or "defaults"


def _flat_settings(spec: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section in ("method", "suite"):
        for k, v in spec.get(section, {}).get("config", []):
            flat[f"{section}.{k}"] = v
    flat.update(spec.get("sampler", {}))
    for k in ("seed", "limit", "prompts", "dtype"):
        flat[k] = spec.get(k)
    flat["model"] = spec.get("model", {}).get("name")
    return flat


def spec_differences(spec_a: dict[str, Any], spec_b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(setting, A's value, B's value) for every setting two runs do not share. Runs of two different methods differ
    by the method; their method settings are not set against each other (vanilla has none of CRAFT's)."""
    a, b = _flat_settings(spec_a), _flat_settings(spec_b)
    name_a, name_b = (s.get("method", {}).get("name") for s in (spec_a, spec_b))
    if name_a != name_b:
        a = {k: v for k, v in a.items() if not k.startswith("method.")}
        b = {k: v for k, v in b.items() if not k.startswith("method.")}
    keys = sorted(set(a) | set(b), key=lambda k: (k.count("."), k))
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


# --------------------------------------------------------------------------- labels


def assign_labels(runs: list[Run]) -> None:
    """Column labels for runs shown together: method, plus the model and the settings that tell them apart."""
    models = {r.model for r in runs}
    common = set.intersection(*[{d.ident() for d in r.diffs} for r in runs]) if runs else set()
    for r in runs:
        parts = [r.method]
        if len(models) > 1:
            parts.append(f"on {r.model}")
        parts += [d.label() for d in r.diffs if d.ident() not in common]
        r.label = " ".join(parts)
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.label} ({r.id})"
