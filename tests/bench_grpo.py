"""Time and peak memory of GRPO iterations: rollouts (sampling), reward scoring and optimisation, by stage.

For the acceptance check "one SDXL-architecture GRPO iteration (random weights, 1024 px, LoRA, G = 4, 20 steps)":

    python tests/bench_grpo.py --model sdxl-random --device cuda --resolution 1024 --group 4 --sample-steps 20 \\
        --lora-rank 32 --json results/bench/grpo_sdxl.json

``sdxl-random`` is the SDXL base 1.0 architecture from its public configs with random weights (``craft_bench.bench``;
nothing is downloaded), saved once to ``--work`` so the trainer loads it as any diffusers folder. ``--model mini``
(or a local folder) runs the same on a CPU. The iteration is GRPO's own code path (``methods/grpo.py`` on
``train.diffusion.fit_task``): one prompt, G rollouts, a reward (default mini-clip, which runs on any image), and
``--inner-steps`` optimiser steps, LoRA at the given rank, mixed precision as the trainer picks it (bf16 on CUDA).
The JSON holds the stage seconds, the loop's peak memory (CUDA max allocated; CPU peak RSS), versions and device.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini", help="sdxl-random, sd15-random, mini or a local diffusers folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resolution", type=int, default=None, help="image size (default: the model's native)")
    ap.add_argument("--group", type=int, default=4, help="G: rollouts of the one prompt")
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--timestep-fraction", type=float, default=0.6)
    ap.add_argument("--inner-steps", type=int, default=1)
    ap.add_argument("--grad-accum", type=int, default=None, help="default: one (trajectory, step) sample per part")
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--reward", default="mini-clip")
    ap.add_argument("--work", default=None, help="folder for the saved random model and the run (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    import torch

    from craft_bench.api import RunContext
    from craft_bench.bench import RANDOM_MODELS, random_components
    from craft_bench.methods.grpo import GRPO, GRPOConfig, GRPOTask
    from craft_bench.models import resolve_model
    from craft_bench.spec import SamplerSpec
    from craft_bench.store import Store
    from craft_bench.train.diffusion import fit_task, resolved
    from craft_bench.version import versions

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-grpo-"))
    if args.model in RANDOM_MODELS:
        folder = work / args.model
        if not (folder / "model_index.json").is_file():
            pipe, family = random_components(args.model, "cpu", "float32", work)
            pipe.save_pretrained(folder)
            del pipe
        family = RANDOM_MODELS[args.model]
        native = 1024 if family == "sdxl" else 512
        base_sampler = SamplerSpec(
            steps=args.sample_steps, guidance_scale=5.0, height=native, width=native, batch_size=args.group
        )
    else:
        spec, base_sampler, folder = resolve_model(args.model)
        family = spec.family
    size = args.resolution or base_sampler.height
    sampler = SamplerSpec(
        steps=args.sample_steps,
        guidance_scale=base_sampler.guidance_scale,
        height=size,
        width=size,
        batch_size=args.group,
    )
    prompts = work / "prompts.txt"
    prompts.write_text("a photo of a red circle and a blue square\n")
    config = GRPOConfig(
        pool=str(prompts),
        pool_size=1,
        rewards=args.reward,
        prompts_per_iter=1,
        group_size=args.group,
        inner_steps=args.inner_steps,
        timestep_fraction=args.timestep_fraction,
        images=args.group,
        sample_steps=args.sample_steps,
        lora_rank=args.lora_rank,
        lr=1e-4,
        gradient_checkpointing=True,
    )
    method = GRPO(config)
    S = config.train_steps(args.sample_steps)
    per_step = args.group // args.inner_steps * S
    settings = resolved(config, {"steps": args.inner_steps, "batch_size": per_step})
    settings["grad_accum"] = args.grad_accum or per_step
    store = Store(work / "results")
    ctx = RunContext(
        spec=SimpleNamespace(sampler=sampler), store=store, device=args.device, dtype="float32", seed=0, progress=False
    )
    plan = {"guidance": sampler.guidance_scale, "train_steps": S, "sample_steps": args.sample_steps}
    tasks = []

    def make(model):
        tasks.append(GRPOTask(method, model, [prompts.read_text().strip()], [args.reward], plan, ctx))
        return tasks[0]

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = fit_task(
        make,
        base_dir=folder,
        family=family,
        work_dir=work / "run",
        out_dir=work / "out",
        settings=settings,
        seed=0,
        device=args.device,
        needs_reference=method.needs_reference,
        progress=False,
        desc="grpo bench",
    )
    wall = time.perf_counter() - t0
    acc = result.accounting
    figures = {
        "model": args.model,
        "resolution": size,
        "group": args.group,
        "sample_steps": args.sample_steps,
        "train_steps": S,
        "inner_steps": args.inner_steps,
        "lora_rank": args.lora_rank,
        "grad_accum": settings["grad_accum"],
        "mixed_precision": "bf16" if args.device.startswith("cuda") else "no",
        "sampling_s": round(acc["timing"]["sampling_s"], 3),
        "reward_s": round(acc["timing"]["reward_s"], 3),
        "optimize_s": round(result.loop.wall_s - acc["in_loop_s"], 3),
        "iteration_s": round(result.loop.wall_s, 3),
        "wall_s_with_loading": round(wall, 3),
        "peak_memory_gib": round(result.loop.peak_memory_bytes / 2**30, 3),
        "device": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine(),
        "versions": versions(),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
