"""Trainer step time with cached latents and embeddings vs encoding them at every step (as diffusers' training scripts
do), in one run, on the mini model (or any diffusers folder). The measurement is ``craft_bench.bench.train_step_times``,
the trainer part of `craft-bench bench` (which also measures generation and the UNet):

    python tools/bench_train.py [--model mini|PATH] [--steps 20] [--batch 32] [--lora 0] [--device cpu] [--json out.json]
    # the same as: craft-bench bench --parts train --train-steps 20 --train-batch 32 --lora-rank 0
"""

from __future__ import annotations

import argparse
import json
import tempfile
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

    from craft_bench.bench import host, train_step_times
    from craft_bench.models import resolve_model

    spec, _, folder = resolve_model(a.model)
    out = train_step_times(folder, spec.family, a.device, a.steps, a.batch, a.lora, a.warmup, Path(tempfile.mkdtemp(prefix="bench-train-")))
    out.update(model=a.model, device=a.device, host=host())
    for mode in ("cached", "per_step"):
        m = out[mode]
        print(f"{mode:>10}: median {m['median_step_s']:.3f} s/step (min {m['min_step_s']:.3f}, max {m['max_step_s']:.3f}), "
              f"encode {m['encode_s']:.1f} s, peak memory {m['peak_memory_bytes'] / 2**30:.2f} GiB")
    print(f"per-step / cached step time: {out['speedup']:.2f}x  ({a.model}, batch {a.batch}, "
          f"{'LoRA rank ' + str(a.lora) if a.lora else 'full UNet'}, {a.device})")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
