"""A trainable method's checkpoint: build its data, fit it with the shared trainer, store it (once).

``TrainableMethod`` (the base class of every method that trains) and ``train_checkpoint``, what its ``prepare``
calls. The checkpoint's identity is
``Method.checkpoint_hash`` (base weights + method spec + seed + dtype); a finished one is reused, a killed one
resumes from the loop's last checkpoint in ``checkpoints/<hash>.work/``. A finished folder holds the weights,
train_info.json, train_log.jsonl, examples.jsonl and a model card (README.md, ``model_card.py``). With several
processes (torchrun / accelerate launch) the main process builds the data first (the others then find it cached),
every process trains its share of each batch, and only the main process writes the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from craft_bench.api import Checkpoint, Method, RunContext
from craft_bench.train.model_card import write_model_card
from craft_bench.train.trackers import Tracking, flat_numbers
from craft_bench.version import versions

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class TrainingData:
    """What a trainable method hands the shared trainer: examples (dicts with image paths under
    ``image_fields``, the conditioning prompt under ``prompt_field`` and numbers under ``number_fields``) and the
    accounting of how they were made (stage seconds, images generated, reward evaluations, ...)."""

    examples: list[dict[str, Any]]
    accounting: dict[str, Any] = field(default_factory=dict)


class TrainableMethod(Method):
    """A method that fine-tunes the base model through the shared trainer (``craft_bench.train``); it lives with
    the trainer, so the plug-in interface (``craft_bench.api``) does not import the trainer.

    Subclasses give ``Config`` (inheriting ``craft_bench.train.diffusion.TrainConfig``), ``presets`` (their own
    training settings per world, ``{world name: {field: value}}``, for the Config fields left None; over the world's
    ``train_preset``, craft_bench.world), ``build_data`` and ``loss``; the trainer owns the loop, optimiser, seeds,
    caching and checkpoints."""

    trainable: ClassVar[bool] = True
    # An online method (GRPO) samples its own data while it trains: ``build_data`` gives its prompts, ``make_task``
    # the loop task that samples, scores and yields batches for ``loss``.
    online: ClassVar[bool] = False
    image_fields: ClassVar[tuple[str, ...]] = ("image",)
    prompt_field: ClassVar[str] = "prompt"
    number_fields: ClassVar[tuple[str, ...]] = ()
    needs_reference: ClassVar[bool] = False
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    @abstractmethod
    def build_data(self, base: Checkpoint, ctx: RunContext) -> TrainingData: ...

    @abstractmethod
    def loss(self, batch: dict[str, Any], model: Any) -> tuple["torch.Tensor", dict[str, float]]:
        """Mean loss over the batch and logs; ``model`` is a ``craft_bench.train.diffusion.DiffusionModel``."""
        ...

    def make_task(
        self, model: Any, data: TrainingData, base: Checkpoint, ctx: RunContext, settings: dict[str, Any]
    ) -> Any:
        """An online method's ``craft_bench.train.loop.Task`` over ``model`` (the ``DiffusionModel`` the trainer
        built)."""
        raise NotImplementedError(f"method '{self.name}' is not online")

    def prepare(self, base: Checkpoint, ctx: RunContext) -> Checkpoint:
        return train_checkpoint(self, base, ctx)


def settings_for(method: TrainableMethod, world: Any, **derived: Any) -> dict[str, Any]:
    """The training settings of ``method`` in ``world`` (a ``craft_bench.world.World``): its config, each setting left
    None taken from ``derived`` (what a method computes from its own settings, e.g. GRPO's steps from its image
    budget), else from the method's own preset for the world (``presets[world.name]``), else from the world's preset."""
    from craft_bench.errors import UserError
    from craft_bench.train.diffusion import resolved

    try:
        return resolved(method.config, {**world.train_preset, **method.presets.get(world.name, {}), **derived})
    except ValueError as exc:
        raise UserError(
            f"method '{method.name}' has no training preset for {world.name} models ({exc}); "
            f"set them: --set method.lr=... method.steps=... method.batch_size=... method.lora_rank=..."
        ) from None


def _distributed(device: str) -> Any:
    """accelerate's process state when launched on several processes (torchrun), else None."""
    from craft_bench.parallel import process_state

    return process_state(device)


def train_checkpoint(
    method: TrainableMethod, base: Checkpoint, ctx: RunContext, log: Any = None, settings: dict[str, Any] | None = None
) -> Checkpoint:
    """The method's trained checkpoint (reused when finished). An offline method's ``loss`` is fitted on its
    ``build_data`` examples; an online one (``method.online``) trains the task its ``make_task`` builds, and its
    accounting (images generated, reward calls, stage seconds) comes from that task. ``settings``: the resolved
    training settings when the method derives some of them (default ``settings_for``)."""
    import sys

    from craft_bench.train.diffusion import finish_checkpoint, fit, fit_task

    log = log or (lambda s: print(s, file=sys.stderr))
    store = ctx.store
    h = method.checkpoint_hash(base, ctx)
    final = store.checkpoint_dir(h)
    state = _distributed(ctx.device)
    main = state is None or state.is_main_process
    info_path = final / "train_info.json"
    if info_path.is_file():
        _cached_note(method, final, log)
        return _checkpoint(base, final, h, json.loads(info_path.read_text()))
    lock = store.lock(f"ckpt-{h}") if main else contextlib.nullcontext()
    with lock:
        if info_path.is_file():  # another run finished it while we waited
            return _checkpoint(base, final, h, json.loads(info_path.read_text()))
        settings = settings or settings_for(method, ctx.world)
        t0 = time.perf_counter()
        if state is not None and not main:
            state.wait_for_everyone()  # the main process builds the data first; here it is then all cached
        data = method.build_data(base, ctx)
        if state is not None and main:
            state.wait_for_everyone()
        data_s = time.perf_counter() - t0
        work = final.parent / f"{final.name}.work"
        tmp = store.temp_dir_for(final)
        log(
            f"train {method.name}: {len(data.examples)} examples, {settings['steps']} steps at batch "
            f"{settings['batch_size']}, "
            f"{'LoRA rank ' + str(settings['lora_rank']) if settings['lora_rank'] else 'full UNet'}"
        )
        tracking = _tracking(method, settings, h, work, data.accounting, ctx) if main else None
        common = dict(
            base_dir=base.base_dir,
            family=base.model.family,
            work_dir=work,
            out_dir=tmp,
            settings=settings,
            seed=ctx.seed,
            device=ctx.device,
            needs_reference=method.needs_reference,
            init_adapter=base.adapter_dir,
            progress=ctx.progress,
            desc=f"train {method.name}",
            tracking=tracking,
        )
        if method.online:
            result = fit_task(lambda model: method.make_task(model, data, base, ctx, settings), **common)
        else:
            result = fit(
                data.examples,
                method.loss,
                results_root=store.root,
                image_fields=method.image_fields,
                prompt_field=method.prompt_field,
                number_fields=method.number_fields,
                **common,
            )
        if result is None:
            raise RuntimeError("training stopped early")
        total = time.perf_counter() - t0
        acc = {
            **data.accounting,
            **result.accounting,
            "timing": {**data.accounting.get("timing", {}), **result.accounting.get("timing", {})},
        }
        # An online task samples and scores inside the loop: its optimisation is the loop's time without them.
        optimize_s = result.loop.wall_s - float(acc.pop("in_loop_s", 0.0))
        stages = dict(acc.get("timing", {}))
        stages.update(cache_s=round(result.encode_s, 3), optimize_s=round(optimize_s, 3))
        info = {
            "checkpoint": h,
            "samples_used": acc.pop("samples_used", len(data.examples)),
            "steps": result.loop.steps,
            "images_generated": acc.get("images_generated", 0),
            "reward_calls": acc.get("reward_calls", 0),
            "train_s": round(total, 3),
            "timing": {k: round(float(v), 3) for k, v in stages.items()},
            "data_s": round(data_s, 3),
            "step_s": round(optimize_s / max(1, result.loop.steps), 4)
            if method.online
            else round(result.loop.wall_s / max(1, result.loop.steps - result.loop.resumed_from), 4),
            "peak_memory_bytes": result.loop.peak_memory_bytes,
            "device": ctx.device,
            "processes": 1 if state is None else state.num_processes,
            "cache": {"hits": result.cache_hits, "misses": result.cache_misses},
            "settings": result.train_settings,
            "final_logs": result.loop.last_logs,
            "files": result.files,
            **{k: v for k, v in acc.items() if k not in ("timing", "images_generated", "reward_calls")},
        }
        if main:
            with open(tmp / "examples.jsonl", "w") as fh:  # what it trained on, for inspection and the report
                for e in data.examples:
                    fh.write(json.dumps(e) + "\n")
            write_model_card(tmp, ctx.spec, method, settings, info, versions())
            finish_checkpoint(work, tmp, final, info)
        if state is not None:
            state.wait_for_everyone()
    return _checkpoint(base, final, h, json.loads(info_path.read_text()))


def _tracking(
    method: TrainableMethod, settings: dict[str, Any], h: str, work: Path, accounting: dict[str, Any], ctx: RunContext
) -> Tracking | None:
    """The TensorBoard / W&B tracker of this training (``method.report_to``), logging into ``<work>/logs`` (moved beside
    the weights with the checkpoint); the pool's statistics go with the first step."""
    if settings.get("report_to", "none") == "none":
        return None
    config = {
        "method": method.name,
        "method_version": method.version,
        "checkpoint": h,
        "seed": ctx.seed,
        "base_model": ctx.spec.model.name,
        **dict(ctx.spec.method.config),
        **settings,
    }
    first = flat_numbers({**(accounting.get("pool") or {}), "reward": accounting.get("reward_stats") or {}})
    return Tracking(settings["report_to"], work / "logs", f"{method.name}-{h[:8]}", config, first)


def _cached_note(method: TrainableMethod, final: Path, log: Any) -> None:
    report_to = getattr(method.config, "report_to", "none")
    if report_to != "none":
        log(
            f"checkpoint {final.name} is cached: nothing is trained, so nothing goes to {report_to} (its curves are in "
            f"{final / 'train_log.jsonl'}; tracker logs of its training, if any, in {final / 'logs'})"
        )


def _checkpoint(base: Checkpoint, final: Path, h: str, info: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        model=base.model,
        base_dir=base.base_dir,
        adapter_dir=str(final),
        digest=h,
        train_info=info,
        train_s=float(info.get("train_s", 0.0)),
    )
