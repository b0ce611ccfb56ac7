"""`--method pretrained`: published checkpoints in their three layouts (a pipeline's unet/ folder, a bare UNet folder,
LoRA weights), built here as tiny models, evaluated through the CLI; aliases resolved through a Hugging Face cache
planted offline; the one-line errors offline, for a wrong base and without a checkpoint."""

import json
from pathlib import Path

import pytest
import torch

TINY = [
    "--suite",
    "toy",
    "--set",
    "sampler.steps=2",
    "--set",
    "suite.n_prompts=2",
    "--set",
    "suite.images_per_prompt=1",
]


@pytest.fixture(scope="module")
def published(tiny_sdxl, tmp_path_factory):
    """One fine-tuned UNet saved as DPO's card has it (unet/) and as MaPO's (the folder itself), and a LoRA."""
    from diffusers import UNet2DConditionModel

    from craft_bench.train.diffusion import DiffusionModel

    root = tmp_path_factory.mktemp("published")
    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in unet.conv_out.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    unet.save_pretrained(root / "as-unet" / "unet")
    (root / "as-unet" / "model_index.json").write_text("{}")
    unet.save_pretrained(root / "as-root")
    lora = DiffusionModel(tiny_sdxl, "sdxl", "cpu", lora_rank=4)
    with torch.no_grad():
        for n, p in lora.unet.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)
    lora.save(root / "as-lora")
    return root


def redness(cli, tiny_sdxl, out, *sets):
    res = cli.run_json(
        "run",
        "--method",
        "pretrained" if sets else "vanilla",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        *TINY,
        *[a for s in sets for a in ("--set", s)],
    )
    run = next((Path(out) / "runs" / "toy").glob(f"*{res['spec_hash'][:8]}"))
    return [r["redness"] for r in map(json.loads, (run / "samples.jsonl").read_text().splitlines())]


def test_three_layouts_load_and_change_the_images(cli, tiny_sdxl, published, tmp_path):
    out = tmp_path / "res"
    base = redness(cli, tiny_sdxl, out)
    as_unet = redness(cli, tiny_sdxl, out, f"method.checkpoint={published / 'as-unet'}")
    as_root = redness(cli, tiny_sdxl, out, f"method.checkpoint={published / 'as-root'}")
    as_lora = redness(cli, tiny_sdxl, out, f"method.checkpoint={published / 'as-lora'}")
    assert as_unet == as_root  # the same UNet in two layouts: the same pixels
    assert as_unet != base and as_lora != base and as_lora != as_unet
    ckpts = [p for p in (out / "checkpoints").iterdir() if p.is_dir()]
    assert len(ckpts) == 3 and any((p / "unet").is_symlink() for p in ckpts)  # linked, not copied
    assert any((p / "pytorch_lora_weights.safetensors").is_symlink() for p in ckpts)


def plant(cache: Path, hub_id: str, folder: Path) -> None:
    """A Hugging Face cache entry for ``hub_id`` holding ``folder``'s files, as snapshot_download leaves one."""
    import shutil

    repo = cache / ("models--" + hub_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def test_aliases_resolve_through_the_hub_cache_offline(cli, tiny_sdxl, published, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    plant(cache, "mhdang/dpo-sdxl-text2image-v1", published / "as-unet")
    plant(cache, "SPO-Diffusion-Models/SPO-SDXL_4k-p_10ep_LoRA", published / "as-lora")
    out = tmp_path / "res"
    by_folder = redness(cli, tiny_sdxl, out, f"method.checkpoint={published / 'as-unet'}")
    assert redness(cli, tiny_sdxl, out, "method.checkpoint=dpo-sdxl") == by_folder
    assert redness(cli, tiny_sdxl, out, "method.checkpoint=mhdang/dpo-sdxl-text2image-v1") == by_folder
    assert redness(cli, tiny_sdxl, out, "method.checkpoint=spo-sdxl-lora") == redness(
        cli, tiny_sdxl, out, f"method.checkpoint={published / 'as-lora'}"
    )
    # not in the cache, offline: one line naming the file and how to get it
    proc = cli(
        "run",
        "--method",
        "pretrained",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        *TINY,
        "--set",
        "method.checkpoint=mapo",
        check=False,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "diffusion_pytorch_model.safetensors is missing" in proc.stderr
    assert (
        "huggingface-cli download mapo-t2i/mapo-beta" in proc.stderr
        and "method.checkpoint=/path/to/mapo-beta" in proc.stderr
    )


@pytest.mark.parametrize(
    "checkpoint,needle",
    [
        ("dpo-sd15", "was fine-tuned from sd15"),
        ("", "needs a checkpoint"),
        ("not-a-checkpoint", "not a folder, alias or hub id"),
    ],
)
def test_one_line_errors(cli, tiny_sdxl, tmp_path, checkpoint, needle):
    proc = cli(
        "run",
        "--method",
        "pretrained",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path / "res"),
        *TINY,
        "--set",
        f"method.checkpoint={checkpoint}",
        check=False,
    )
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_unet_of_another_architecture_is_refused(cli, tiny_sdxl, tiny_sd15, tmp_path):
    proc = cli(
        "run",
        "--method",
        "pretrained",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(tmp_path / "res"),
        *TINY,
        "--set",
        f"method.checkpoint={tiny_sd15}",
        check=False,
    )
    assert proc.returncode == 2 and "differs from the base model's" in proc.stderr
