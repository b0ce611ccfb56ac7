"""Trainer step time with cached latents and embeddings vs encoding them at every step (as diffusers' training
scripts do), in one run, on the mini model (or any diffusers folder / random SDXL-architecture model).

    python tools/bench_train.py [--model mini|PATH] [--steps 20] [--batch 32] [--lora 0] [--device cpu] [--json out.json]

Both modes train the same examples with the same seeds; the first 3 steps are warm-up and not counted. Prints the
median step time of each mode, their ratio and the peak memory, with the device and versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mini")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lora", type=int, default=0, help="LoRA rank (0: full UNet)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", default=None)
    a = p.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from craft_bench.mini.scenes import random_scene, render
    from craft_bench.models import resolve_model
    from craft_bench.train.diffusion import TrainConfig, denoising_error, fit, resolved

    spec, _, folder = resolve_model(a.model)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    rng = np.random.default_rng(0)
    examples = []
    for i in range(max(64, a.batch)):
        path = work / f"{i}.png"
        Image.fromarray(render(random_scene(rng))).save(path)
        examples.append({"image": str(path), "prompt": f"a photo of scene {i}"})

    def loss(batch, model):
        err = denoising_error(model, batch["image"], batch)
        return err.mean(), {}

    out = {"model": a.model, "batch": a.batch, "lora_rank": a.lora, "steps": a.steps, "device": a.device,
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    for mode in ("cached", "recomputed"):
        settings = resolved(TrainConfig(lr=1e-5, steps=a.steps, batch_size=a.batch, lora_rank=a.lora, ckpt_every=10_000,
                                        cache_encodings=mode == "cached"), {})
        t0 = time.perf_counter()
        r = fit(examples, loss, base_dir=folder, family=spec.family, results_root=work / "res", work_dir=work / f"w-{mode}",
                out_dir=work / f"o-{mode}", settings=settings, seed=0, device=a.device, progress=False)
        times = r.loop.step_times[a.warmup:]
        out[mode] = {"median_step_s": statistics.median(times), "min_step_s": min(times), "max_step_s": max(times),
                     "encode_s": r.encode_s, "peak_memory_bytes": r.loop.peak_memory_bytes, "wall_s": time.perf_counter() - t0}
        print(f"{mode:>10}: median {out[mode]['median_step_s']:.3f} s/step (min {min(times):.3f}, max {max(times):.3f}), "
              f"encode {r.encode_s:.1f} s, peak memory {r.loop.peak_memory_bytes / 2**30:.2f} GiB")
    out["ratio"] = out["recomputed"]["median_step_s"] / out["cached"]["median_step_s"]
    print(f"recomputed / cached step time: {out['ratio']:.2f}x  ({a.model}, batch {a.batch}, "
          f"{'LoRA rank ' + str(a.lora) if a.lora else 'full UNet'}, {a.device}, {out['threads']} threads)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
