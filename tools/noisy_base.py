"""Probe for a mini base with headroom: continue training the shipped mini base on its own recipe's data with a share
of the task captions made wrong by one attribute (``training_pairs(caption_noise=...)``, the ``mislabel`` rule), as web
alt-text is, so the model still draws the scenes but its conditioning is diluted (docs/mini.md, "A base with
headroom"). The result is a diffusers folder with the mini folder hint, usable as ``--model OUT/model``.

    python tools/noisy_base.py OUT --noise 0.5 --steps 800 --lr 2e-4

Same loss, batch (32), dropped conditioning (10%), min-SNR (5), optimiser, EMA (0.995) and data size (10000 pairs)
as the base recipe (craft_bench/mini/train.py); a short warm-up, then a warmup-stable-decay schedule.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from craft_bench.mini import train as T
    from craft_bench.mini.model import BASE_DIR, assemble_pipeline
    from craft_bench.mini.tokenizer import build_tokenizers
    from craft_bench.train.loop import Loop, LoopSpec, Schedule

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--noise", type=float, default=0.5, help="share of task captions made wrong")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=1, help="data and training seed (the shipped base used 0)")
    args = ap.parse_args()
    out, device = args.out, "cpu"
    vae = AutoencoderKL.from_pretrained(str(BASE_DIR / "vae"), torch_dtype=torch.float32).eval().requires_grad_(False)
    tokenizers = build_tokenizers(out / T.TRAIN_DIR / "tokenizer")
    data = T._base_data(out, args.seed, 10000, vae, tokenizers, device, args.noise)
    unet = UNet2DConditionModel.from_pretrained(str(BASE_DIR / "unet"), torch_dtype=torch.float32)
    te1 = CLIPTextModel.from_pretrained(str(BASE_DIR / "text_encoder"), torch_dtype=torch.float32)
    te2 = CLIPTextModelWithProjection.from_pretrained(str(BASE_DIR / "text_encoder_2"), torch_dtype=torch.float32)
    modules = {"unet": unet, "text_encoder": te1, "text_encoder_2": te2}
    for m in modules.values():
        m.train()

    def export(dest: Path, loop: Loop) -> None:
        tmp = dest.parent / (dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with loop.ema_weights():
            assemble_pipeline(vae, unet, te1, te2, *tokenizers).save_pretrained(str(tmp), safe_serialization=True)
        T.to_fp16_files(tmp)
        T.write_folder_hint(tmp)
        T._replace_dir(tmp, dest)

    scale = float(vae.config.scaling_factor)
    task = T._BaseTask(modules, data, scale, args.seed, 32, 0.1, 5.0, device, export, 0, out)
    spec = LoopSpec(
        steps=args.steps,
        lr=args.lr,
        schedule=Schedule("wsd", warmup=50, cooldown=0.2, warmup_style="replace"),
        betas=(0.9, 0.999),
        weight_decay=0.01,
        max_grad_norm=1.0,
        ema_decay=0.995,
        ckpt_every=100,
        seed=args.seed,
    )
    loop = Loop(task, spec, out / T.TRAIN_DIR / T.STATE_DIR, device=device, progress=True, desc="noisy base")
    result = loop.run(None)
    export(out / "model", loop)
    print(f"done: {result.steps} steps, {result.wall_s:.0f} s -> {out / 'model'}")


if __name__ == "__main__":
    main()
