"""Training trackers: the shared loop's per-step numbers sent to TensorBoard or Weights & Biases through accelerate's
tracker API (``Accelerator(log_with=...)``, ``init_trackers``, ``log``, ``end_training``), as diffusers' training
scripts do with ``--report_to``.

``method.report_to`` says how a run is watched, not what it trains: it is not part of a run's or a checkpoint's
identity, and a cached checkpoint is not trained again (its curves stay in train_log.jsonl). Per step the loop logs
its loss, learning rate, gradient norm, step seconds, the method's own logs, and statistics of the pool samples in
the step's batch (``batch/<field>_mean``: CRAFT's rewards and advantages, the DPO family's winner and loser scores);
the pool's statistics (rewards over all candidates and over the kept ones, counts) come with the first step.
The event files live beside the weights: ``checkpoints/<hash>/logs/`` (wandb: ``logs/wandb/``, offline runs there
when ``WANDB_MODE=offline``).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_TO = ("none", "tensorboard", "wandb")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
PROJECT = "craft-bench"
LOG_DIR = "logs"


def check_report_to(value: str) -> None:
    """``ValueError`` (a one-line --set error) for an unknown tracker or one whose package is not installed."""
    if value not in REPORT_TO:
        raise ValueError(f"report_to must be one of {', '.join(REPORT_TO)}, not {value!r}")
    package = PACKAGES.get(value)
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"report_to={value} needs the {package} package; install it with pip install 'craft-bench[track]' "
            f"(or pip install {package}), or leave report_to=none"
        )


def flat_numbers(tree: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number in a nested dict, keyed by its path joined with '/' (bools and None left out)."""
    if isinstance(tree, bool) or tree is None:
        return {}
    if isinstance(tree, (int, float)):
        return {prefix: float(tree)} if prefix and math.isfinite(tree) else {}
    if isinstance(tree, dict):
        out: dict[str, float] = {}
        for k, v in tree.items():
            out.update(flat_numbers(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    return {}


def flat_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as the flat scalar hyper-parameters trackers accept (lists and other values as text)."""
    out: dict[str, Any] = {}
    for k, v in (tree or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "/"))
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[key] = v if v is not None else "none"
        else:
            out[key] = str(v)
    return out


@dataclass
class Tracking:
    """One training run's trackers: which (``report_to``), where (``log_dir``), its name and hyper-parameters, and
    numbers logged with the first step (the pool's statistics)."""

    report_to: str
    log_dir: Path
    run_name: str
    config: dict[str, Any] = field(default_factory=dict)
    first_step: dict[str, float] = field(default_factory=dict)
    _accelerator: Any = None
    _logged: bool = False

    def accelerator_kwargs(self) -> dict[str, Any]:
        return {"log_with": self.report_to, "project_dir": str(self.log_dir)}

    def start(self, accelerator: Any) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        init = {"wandb": {"dir": str(self.log_dir), "name": self.run_name, "reinit": "finish_previous"}}
        name = self.run_name if self.report_to == "tensorboard" else PROJECT
        accelerator.init_trackers(name, config=flat_config(self.config), init_kwargs=init)
        self._accelerator = accelerator

    def log(self, values: dict[str, float], step: int) -> None:
        if self._accelerator is None:
            return
        row = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if not self._logged:
            row.update({f"pool/{k}": v for k, v in self.first_step.items()})
            self._logged = True
        self._accelerator.log(row, step=step)

    def finish(self) -> None:
        if self._accelerator is not None:
            self._accelerator.end_training()
            self._accelerator = None


def batch_fields(examples: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> dict[str, list[float]]:
    """The per-example numbers whose batch means are logged: float fields and float entries of dict fields (CRAFT's
    ``reward`` scores) present in every example; integer fields (indices, groups) and ``skip`` are left out."""
    if not examples:
        return {}
    paths: dict[str, tuple[str, ...]] = {}
    for k, v in examples[0].items():
        if k in skip:
            continue
        if isinstance(v, float):
            paths[k] = (k,)
        elif isinstance(v, dict):
            paths.update({f"{k}.{kk}": (k, kk) for kk, vv in v.items() if isinstance(vv, float)})
    cols: dict[str, list[float]] = {}
    for name, path in paths.items():
        values = []
        for e in examples:
            v = e.get(path[0])
            if len(path) == 2:
                v = v.get(path[1]) if isinstance(v, dict) else None
            if not isinstance(v, float):
                break
            values.append(v)
        else:
            cols[name] = values
    return cols
