"""Launched by test_train.py under torchrun: fine-tune a tiny SDXL on the given examples with the shared trainer
(global batch 4, so each of 2 processes takes 2 per step) and write the result beside ``out``."""

import json
import sys
from pathlib import Path

from test_train import sft_loss

from craft_bench.train.diffusion import TrainConfig, fit, resolved


def main() -> None:
    model, examples, out = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3])
    settings = resolved(TrainConfig(lr=1e-3, steps=3, batch_size=4, lora_rank=0, ckpt_every=10), {})
    result = fit(
        examples,
        sft_loss,
        base_dir=model,
        family="sdxl",
        results_root=out,
        work_dir=out / "work",
        out_dir=out / "out",
        settings=settings,
        seed=0,
        device="cpu",
        number_fields=("weight",),
        progress=False,
    )
    from accelerate import PartialState

    state = PartialState(cpu=True)
    if state.is_main_process:
        (out / "info.json").write_text(json.dumps({"processes": state.num_processes, "steps": result.loop.steps}))


if __name__ == "__main__":
    main()
