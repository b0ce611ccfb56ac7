"""The one training loop of craft-bench. Every trainable method and every mini-world recipe runs through it.

A ``Task`` says what is trained (its modules and parameter groups), what one step's data is
(``batch(step)``: a pure function of the step, so a resumed run sees the data an uninterrupted one would)
and what the loss is. The loop owns everything else, once: the optimiser, the learning-rate schedule (a pure
function of the step), gradient accumulation, mixed precision and several processes (accelerate), gradient
clipping, an optional EMA of the weights, atomic checkpoints (safetensors) every ``ckpt_every`` steps and
resuming from them, the NaN/Inf guard, the per-step log (``train_log.jsonl``; a TensorBoard or W&B tracker through
accelerate when asked, ``trackers.py``), the progress bar and the wall-clock accounting.

Invariants:
- resuming from the checkpoint at step s and running to step n gives the weights of a run that was never
  interrupted (the optimiser state, the EMA and the step are checkpointed; data and noise depend on the step);
- a checkpoint folder is always complete: it is built beside the old one and swapped in with ``os.replace``;
- a non-finite loss stops the run with a one-line error before it touches the weights or the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from craft_bench.errors import UserError
from craft_bench.store import temp_path
from craft_bench.train.state import load_optimizer, optimizer_tensors

STATE_FILE = "state.safetensors"
META_FILE = "state.json"
LOG_FILE = "train_log.jsonl"


@dataclass(frozen=True)
class Schedule:
    """Learning rate over the steps of a run: a linear warmup over ``warmup`` steps, then

    - ``constant``: the base rate;
    - ``cosine``: a cosine from the base rate down to ``floor`` x base at the last step;
    - ``wsd`` (warmup-stable-decay; Hu et al. 2024, MiniCPM; Hagele et al. 2024): constant, then a linear decay
      to zero over the last ``cooldown`` share of the steps. Until the decay starts the rate does not depend on
      the run's length, so a checkpoint from before it resumes into a longer run exactly.

    ``warmup_style`` "ramp" multiplies the whole schedule by min(1, (s+1)/warmup); "replace" uses the ramp
    instead of the schedule during warmup (the two conventions the mini recipes were trained with)."""

    kind: str = "constant"
    warmup: int = 0
    floor: float = 0.0
    cooldown: float = 0.0
    warmup_style: str = "replace"

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "cosine", "wsd"):
            raise ValueError(f"unknown schedule '{self.kind}' (constant, cosine, wsd)")
        if self.warmup < 0 or not 0.0 <= self.floor <= 1.0 or not 0.0 <= self.cooldown <= 1.0:
            raise ValueError("schedule: warmup >= 0, 0 <= floor <= 1 and 0 <= cooldown <= 1")
        if self.warmup_style not in ("ramp", "replace"):
            raise ValueError("schedule warmup_style is 'ramp' or 'replace'")

    def lr(self, step: int, total: int, base: float) -> float:
        ramp = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.warmup_style == "replace" and step < self.warmup:
            return base * ramp
        if self.kind == "cosine":
            progress = min(1.0, step / max(1, total))
            value = base * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        elif self.kind == "wsd" and self.cooldown > 0:
            start = self.decay_start(total)
            value = base if step < start else base * (total - step) / (total - start)
        else:
            value = base
        return value * ramp if self.warmup_style == "ramp" else value

    def decay_start(self, total: int) -> int:
        """First step of a ``wsd`` run's linear decay."""
        return total - max(1, round(self.cooldown * total))

    def resumable(self, step: int, old_total: int, new_total: int) -> bool:
        """Whether a checkpoint at ``step`` of an ``old_total``-step run continues a ``new_total``-step run
        exactly (the rates of the steps already taken do not change)."""
        if old_total == new_total or self.kind == "constant":
            return True
        if self.kind == "wsd":
            return step <= max(self.warmup, self.decay_start(old_total)) and step <= self.decay_start(new_total)
        return False


@dataclass(frozen=True)
class LoopSpec:
    """How a run is optimised; everything the loop needs besides the task."""

    steps: int
    lr: float
    schedule: Schedule = field(default_factory=Schedule)
    optimizer: str = "adamw"  # adamw | adafactor (transformers) | adamw8bit (bitsandbytes, CUDA)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01  # default for groups that do not set their own
    max_grad_norm: float | None = 1.0
    ema_decay: float = 0.0  # 0: no EMA; else decay min(ema_decay, (1 + s) / (10 + s)) per step
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    ckpt_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"the learning rate must be a positive number, got {self.lr}")
        if self.grad_accum < 1 or self.ckpt_every < 1:
            raise ValueError("grad_accum and ckpt_every must be at least 1")
        if self.optimizer not in ("adamw", "adafactor", "adamw8bit"):
            raise ValueError(f"unknown optimizer '{self.optimizer}' (adamw, adafactor, adamw8bit)")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision is no, bf16 or fp16, not '{self.mixed_precision}'")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in [0, 1)")


class Task:
    """What a run trains. Subclasses set ``name`` and implement ``modules``, ``batch`` and ``loss``.

    ``batch(step)`` returns the whole (global) batch of ``step``; when ``shardable``, every tensor in it has the
    batch on dimension 0 and the loop cuts it into grad_accum x processes equal parts, each process taking its
    own (so 1 and N processes see the same global batch). ``loss(batch, step)`` returns (mean loss over the
    part, logs of floats)."""

    name: str = ""
    shardable: bool = True

    prepared: dict[str, Any] = {}

    def modules(self) -> dict[str, Any]:
        raise NotImplementedError

    def bind(self, prepared: dict[str, Any]) -> None:
        """The loop's modules as the forward pass must use them (DDP-wrapped with several processes)."""
        self.prepared = prepared

    def state_tensors(self) -> dict[str, Any]:
        """The trained weights a checkpoint keeps (default: every module's state dict, keys "<module>.<name>")."""
        return {f"{n}.{k}": v for n, m in self.modules().items() for k, v in m.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        for n, m in self.modules().items():
            prefix = n + "."
            m.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups (dicts with "params" and optional "weight_decay"); default: every
        parameter of ``modules()`` that requires a gradient, in one group."""
        return [{"params": [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]}]

    def batch(self, step: int) -> Any:
        raise NotImplementedError

    def loss(self, batch: Any, step: int) -> tuple[Any, dict[str, float]]:
        raise NotImplementedError

    def before_step(self, step: int) -> None:
        """Called before ``step``'s batch is drawn (e.g. freeze a module from some step on)."""

    def after_step(self, step: int) -> None:
        """Called after the optimiser step (e.g. clamp a parameter)."""

    def on_checkpoint(self, step: int, loop: "Loop") -> None:
        """Called after the checkpoint of ``step`` was written (e.g. export a snapshot)."""

    def step_logs(self, step: int) -> dict[str, float]:
        """Numbers about ``step``'s batch that a training tracker logs beside the loss (not in train_log.jsonl)."""
        return {}


@dataclass
class LoopResult:
    steps: int
    wall_s: float  # optimisation wall time of the whole run, resumed parts included
    last_logs: dict[str, float]
    history: list[dict[str, Any]]
    peak_memory_bytes: int
    resumed_from: int
    step_times: list[float] = field(default_factory=list)  # seconds of each step run in this call


class Loop:
    """Runs a ``Task`` under a ``LoopSpec``; checkpoints and logs go to ``ckpt_dir``."""

    def __init__(
        self,
        task: Task,
        spec: LoopSpec,
        ckpt_dir: str | os.PathLike,
        device: str = "cpu",
        progress: bool = True,
        desc: str | None = None,
        log_every: int = 1,
        accelerator: Any = None,
        tracking: Any = None,
    ) -> None:
        self.task, self.spec, self.ckpt_dir = task, spec, Path(ckpt_dir)
        self.device, self.progress, self.desc, self.log_every = device, progress, desc or task.name, log_every
        self.tracking = tracking  # craft_bench.train.trackers.Tracking, or None
        self.accelerator = accelerator or make_accelerator(
            device, spec, **(tracking.accelerator_kwargs() if tracking else {})
        )
        self.params: list[Any] = []
        self.ema: list[Any] = []
        self.optimizer: Any = None
        self.step = 0

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        import torch

        acc = self.accelerator
        groups = []
        for g in self.task.param_groups():
            params = [p for p in g["params"] if p.requires_grad]
            if params:
                groups.append({**g, "params": params})
        if not groups:
            raise ValueError(f"task '{self.task.name}' has no trainable parameters")
        self.params = [p for g in groups for p in g["params"]]
        # Clipping sums squared norms in the modules' parameter order (float sums depend on the order).
        trained = {id(p) for p in self.params}
        self.clip_params = [p for m in self.task.modules().values() for p in m.parameters() if id(p) in trained]
        defaults = {"lr": self.spec.lr, "weight_decay": self.spec.weight_decay}
        groups = [{**defaults, **g} for g in groups]
        self.optimizer = _make_optimizer(self.spec, groups, torch)
        modules = self.task.modules()
        if acc.num_processes > 1 or self.spec.mixed_precision != "no":
            prepared = acc.prepare(*modules.values(), self.optimizer)
            self.prepared_modules = dict(zip(modules, prepared[:-1]))
            self.optimizer = prepared[-1]
        else:  # one process in full precision: nothing to wrap (and bitwise the same as a plain loop)
            self.prepared_modules = dict(modules)
        self.task.bind(self.prepared_modules)
        if self.spec.ema_decay > 0:
            self.ema = [p.detach().clone() for p in self.params]

    # ------------------------------------------------------------------ checkpoints
    def _meta(self, wall_s: float, history: list[dict[str, Any]]) -> dict[str, Any]:
        groups = optimizer_tensors(_raw_optimizer(self.optimizer))[1]
        return {
            "task": self.task.name,
            "seed": self.spec.seed,
            "step": self.step,
            "steps": self.spec.steps,
            "spec": _jsonable(asdict(self.spec)),
            "wall_s": wall_s,
            "param_groups": groups,
            "history": history,
        }

    def save_checkpoint(self, wall_s: float, history: list[dict[str, Any]]) -> None:
        """Write the complete training state atomically (main process only)."""
        if not self.accelerator.is_main_process:
            return
        from safetensors.torch import save_file

        tensors, _ = optimizer_tensors(_raw_optimizer(self.optimizer), prefix="opt.")
        tensors.update({f"module.{k}": v for k, v in self.task.state_tensors().items()})
        tensors.update({f"ema.{i}": e for i, e in enumerate(self.ema)})
        tmp = temp_path(self.ckpt_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / STATE_FILE))
            (tmp / META_FILE).write_text(json.dumps(self._meta(wall_s, history), indent=1))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: the last complete checkpoint stays as it was
            raise
        _swap_in(tmp, self.ckpt_dir)

    def _resume(self) -> tuple[int, float, list[dict[str, Any]]]:
        meta_path = self.ckpt_dir / META_FILE
        if not meta_path.is_file():
            return 0, 0.0, []
        from safetensors.torch import load_file

        meta = json.loads(meta_path.read_text())
        if meta.get("task") != self.task.name or meta.get("seed") != self.spec.seed:
            raise UserError(
                f"cannot resume {self.ckpt_dir}: it holds task '{meta.get('task')}' seed {meta.get('seed')}, "
                f"not '{self.task.name}' seed {self.spec.seed}; choose another output folder"
            )
        step, old_total = int(meta["step"]), int(meta.get("steps", self.spec.steps))
        if not self.spec.schedule.resumable(step, old_total, self.spec.steps):
            why = " (its learning-rate cooldown has started)" if self.spec.schedule.kind == "wsd" else ""
            raise UserError(
                f"the checkpoint in {self.ckpt_dir} (step {step} of {old_total}) cannot continue a "
                f"{self.spec.steps}-step run with the same learning rates{why}; resume with steps={old_total} "
                f"or start a new run"
            )
        tensors = load_file(str(self.ckpt_dir / STATE_FILE))
        self.task.load_state_tensors({k[7:]: v for k, v in tensors.items() if k.startswith("module.")})
        for i, e in enumerate(self.ema):
            e.copy_(tensors[f"ema.{i}"])
        load_optimizer(
            _raw_optimizer(self.optimizer),
            {k: v.to(self.params[0].device) for k, v in tensors.items() if k.startswith("opt.")},
            meta["param_groups"],
            prefix="opt.",
        )
        self.step = step
        return step, float(meta.get("wall_s", 0.0)), list(meta.get("history", []))

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """The EMA weights in place of the live ones for the ``with`` block (no-op without EMA)."""
        import torch

        if not self.ema:
            yield
            return
        live = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, e in zip(self.params, self.ema):
                p.copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live):
                    p.copy_(v)

    # ------------------------------------------------------------------ the loop
    def run(self, stop_after: int | None = None) -> LoopResult:
        """Train from the last checkpoint (or from scratch) to ``spec.steps`` (or ``stop_after``)."""
        import torch
        from tqdm.auto import tqdm

        self._build()
        start, wall_before, history = self._resume()
        self._trim_log(start)
        spec, acc, task = self.spec, self.accelerator, self.task
        end = spec.steps if stop_after is None else min(spec.steps, stop_after)
        world, rank = acc.num_processes, acc.process_index
        if world * spec.grad_accum > 1 and not task.shardable:
            raise UserError(f"task '{task.name}' runs in one process without gradient accumulation")
        t0 = time.perf_counter()
        logs: dict[str, float] = {}
        step_times: list[float] = []
        bar = tqdm(
            total=spec.steps,
            initial=start,
            desc=self.desc,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and acc.is_main_process),
        )
        log_fh = open(self.ckpt_dir.parent / LOG_FILE, "a") if acc.is_main_process else None
        if self.tracking is not None:
            self.tracking.start(acc)
        try:
            for step in range(start, end):
                t_step = time.perf_counter()
                lr = spec.schedule.lr(step, spec.steps, spec.lr)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                task.before_step(step)
                batch = task.batch(step)
                parts = _shard(batch, world * spec.grad_accum) if world * spec.grad_accum > 1 else [batch]
                mine = parts[rank * spec.grad_accum : (rank + 1) * spec.grad_accum]
                part_logs: list[dict[str, float]] = []
                for i, part in enumerate(mine):
                    sync = i == len(mine) - 1
                    with _no_sync(acc, self.prepared_modules.values(), sync):
                        with acc.autocast():
                            loss, plogs = task.loss(part, step)
                        value = float(loss.detach())
                        if not math.isfinite(value):
                            self._diverged(step, value)
                        if i == 0:
                            self.optimizer.zero_grad(set_to_none=True)
                        acc.backward(loss / len(mine) if len(mine) > 1 else loss)
                    part_logs.append({"loss": value, **plogs})
                grad_norm = self._clip()
                self.optimizer.step()
                task.after_step(step)
                if self.ema:
                    decay = min(spec.ema_decay, (1 + step) / (10 + step))
                    with torch.no_grad():
                        torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - decay)
                self.step = done = step + 1
                logs = _mean_logs(part_logs, acc)
                logs["lr"], logs["grad_norm"] = lr, grad_norm
                step_times.append(time.perf_counter() - t_step)
                if self.tracking is not None:
                    self.tracking.log({**logs, "step_s": step_times[-1], **task.step_logs(step)}, step=done)
                if log_fh and (done % self.log_every == 0 or done == end):
                    log_fh.write(json.dumps({"step": done, **{k: _round(v) for k, v in logs.items()}}) + "\n")
                    log_fh.flush()
                if done % 25 == 0 or done == spec.steps:
                    history.append({"step": done, **{k: _round(v) for k, v in logs.items() if k != "lr"}})
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k in ("loss",)})
                if done % spec.ckpt_every == 0 or done == end:
                    acc.wait_for_everyone()
                    self.save_checkpoint(wall_before + time.perf_counter() - t0, history)
                    task.on_checkpoint(done, self)
        finally:
            bar.close()
            if log_fh:
                log_fh.close()
            if self.tracking is not None:
                self.tracking.finish()
        return LoopResult(
            steps=self.step,
            wall_s=wall_before + time.perf_counter() - t0,
            last_logs=logs,
            history=history,
            peak_memory_bytes=peak_memory(self.device),
            resumed_from=start,
            step_times=step_times,
        )

    def _clip(self) -> float:
        import torch

        if self.spec.max_grad_norm is None:
            grads = [p.grad for p in self.params if p.grad is not None]
            return (
                float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
                if grads
                else 0.0
            )
        if self.accelerator.num_processes > 1 or self.spec.mixed_precision != "no":
            return float(self.accelerator.clip_grad_norm_(self.clip_params, self.spec.max_grad_norm))
        return float(torch.nn.utils.clip_grad_norm_(self.clip_params, self.spec.max_grad_norm))

    def _diverged(self, step: int, value: float) -> None:
        last = self.ckpt_dir / META_FILE
        where = (
            f"the last good checkpoint (step {json.loads(last.read_text())['step']}) is kept in {self.ckpt_dir}"
            if last.is_file()
            else "no checkpoint was written yet"
        )
        raise UserError(
            f"training diverged: the loss is {value} at step {step + 1}; {where}; "
            f"lower the learning rate (e.g. --set method.lr=...) and run again"
        )

    def _trim_log(self, step: int) -> None:
        """Keep only the log lines of steps <= ``step`` (a resumed run rewrites what a killed one logged after
        its last checkpoint)."""
        path = self.ckpt_dir.parent / LOG_FILE
        if not self.accelerator.is_main_process:
            return
        if step == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
            return
        if path.is_file():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and _log_step(ln) <= step]
            path.write_text("".join(ln + "\n" for ln in keep))


# --------------------------------------------------------------------------- helpers


def make_accelerator(device: str, spec: LoopSpec, log_with: str | None = None, project_dir: str | None = None) -> Any:
    """An ``accelerate.Accelerator`` for ``device`` (one per process; picks up torchrun's environment); ``log_with``:
    its tracker (tensorboard, wandb) writing under ``project_dir``."""
    from accelerate import Accelerator

    return Accelerator(
        cpu=not str(device).startswith("cuda"),
        mixed_precision=spec.mixed_precision,
        gradient_accumulation_steps=1,
        log_with=log_with,
        project_dir=project_dir,
    )


def _make_optimizer(spec: LoopSpec, groups: list[dict[str, Any]], torch: Any) -> Any:
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)
    if spec.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=spec.lr, scale_parameter=False, relative_step=False, warmup_init=False)
    try:
        import bitsandbytes as bnb  # type: ignore[import-not-found]
    except ImportError:
        raise UserError(
            "optimizer adamw8bit needs bitsandbytes and a CUDA GPU; pip install bitsandbytes, or use adamw"
        ) from None
    return bnb.optim.AdamW8bit(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)


def _raw_optimizer(opt: Any) -> Any:
    return getattr(opt, "optimizer", opt)


def _shard(batch: Any, parts: int) -> list[Any]:
    """Cut a batch (tensor, or dict/list/tuple of them) into ``parts`` equal parts along dimension 0."""
    if isinstance(batch, dict):
        cut = {k: _shard(v, parts) for k, v in batch.items()}
        return [{k: v[i] for k, v in cut.items()} for i in range(parts)]
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "shape"):
        cut = [_shard(v, parts) for v in batch]
        return [type(batch)(v[i] for v in cut) for i in range(parts)]
    n = batch.shape[0]
    if n % parts:
        raise UserError(
            f"a batch of {n} cannot be split evenly over {parts} processes x accumulation steps; "
            f"choose a batch size divisible by {parts}"
        )
    size = n // parts
    return [batch[i * size : (i + 1) * size] for i in range(parts)]


@contextlib.contextmanager
def _no_sync(acc: Any, modules: Sequence[Any], sync: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce on accumulation steps that are not the last."""
    if sync or acc.num_processes == 1:
        yield
        return
    with contextlib.ExitStack() as stack:
        for m in modules:
            if hasattr(m, "no_sync"):
                stack.enter_context(m.no_sync())
        yield


def _mean_logs(parts: list[dict[str, float]], acc: Any) -> dict[str, float]:
    keys = parts[0].keys() if parts else ()
    local = {k: sum(p[k] for p in parts) / len(parts) for k in keys}
    if acc.num_processes == 1 or not local:
        return local
    import torch

    values = acc.reduce(torch.tensor([local[k] for k in keys], device=acc.device), reduction="mean")
    return dict(zip(keys, values.tolist()))


def peak_memory(device: str) -> int:
    """Peak memory of this process: max allocated on CUDA, else the peak resident set size (bytes)."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _swap_in(tmp: Path, final: Path) -> None:
    old = final.parent / f".{final.name}.{os.getpid()}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _round(v: float) -> float:
    return float(f"{v:.6g}")


def _log_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


def run_task(
    task: Task,
    spec: LoopSpec,
    ckpt_dir: str | os.PathLike,
    device: str = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
    desc: str | None = None,
    export: Callable[[Loop], Any] | None = None,
    tracking: Any = None,
) -> tuple[LoopResult, Any]:
    """Run ``task`` to the end (resuming from ``ckpt_dir``) and call ``export(loop)`` on the trained loop;
    ``tracking`` (``trackers.Tracking``) sends each step's numbers to TensorBoard or W&B."""
    loop = Loop(task, spec, ckpt_dir, device=device, progress=progress, desc=desc, tracking=tracking)
    result = loop.run(stop_after=stop_after)
    exported = export(loop) if export is not None and loop.step >= spec.steps else None
    return result, exported
