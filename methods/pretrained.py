"""A published fine-tuned model as a method: its UNet (or LoRA weights) on top of the base model, evaluated like
any other row of a table (``--set method.checkpoint=dpo-sdxl``, a hub id or a local folder).

Three layouts, recognised in the folder (a hub id is fetched with only the files of its layout):

- ``unet``: a ``unet/`` folder (config.json + weights), as a full diffusers pipeline or Diffusion-DPO's and SmPO's
  train.py (``pipeline.save_pretrained``) leave it; the model cards load ``subfolder="unet"``;
- ``root``: the UNet folder itself (MaPO's card: ``UNet2DConditionModel.from_pretrained("mapo-t2i/mapo-beta")``);
- ``lora``: ``pytorch_lora_weights.safetensors`` for ``pipe.load_lora_weights`` (SPO's LoRA checkpoints).

Nothing is copied: the checkpoint folder under ``results/checkpoints/`` links to the weights, and its identity is
the base model's digest plus the weights' digest. Offline, a checkpoint that is not in the Hugging Face cache is a
one-line error naming the missing file and the command that fetches it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from craft_bench.api import Checkpoint, Method, RunContext
from craft_bench.errors import UserError
from craft_bench.spec import setting

LORA_FILE = "pytorch_lora_weights.safetensors"
UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# UNet config keys that must agree with the base model's for the weights to fit it.
ARCHITECTURE_KEYS = (
    "block_out_channels",
    "cross_attention_dim",
    "in_channels",
    "out_channels",
    "addition_embed_type",
    "transformer_layers_per_block",
    "down_block_types",
    "up_block_types",
)


@dataclass(frozen=True)
class Published:
    hub_id: str
    family: str  # the base model it was fine-tuned from: sdxl | sd15
    layout: str  # unet | root | lora
    source: str  # paper / code


PUBLISHED: dict[str, Published] = {
    "dpo-sdxl": Published("mhdang/dpo-sdxl-text2image-v1", "sdxl", "unet", "Diffusion-DPO (Wallace et al. 2023)"),
    "dpo-sd15": Published("mhdang/dpo-sd1.5-text2image-v1", "sd15", "unet", "Diffusion-DPO (Wallace et al. 2023)"),
    "mapo": Published("mapo-t2i/mapo-beta", "sdxl", "root", "MaPO (Hong et al. 2024)"),
    "smpo-sdxl": Published("JaydenLu666/SmPO-SDXL", "sdxl", "unet", "SmPO (Lu et al. 2025)"),
    "smpo-sd15": Published("JaydenLu666/SmPO-SD1.5", "sd15", "unet", "SmPO (Lu et al. 2025)"),
    "spo-sdxl": Published("SPO-Diffusion-Models/SPO-SDXL_4k-p_10ep", "sdxl", "unet", "SPO (Liang et al. 2024)"),
    "spo-sdxl-lora": Published(
        "SPO-Diffusion-Models/SPO-SDXL_4k-p_10ep_LoRA", "sdxl", "lora", "SPO (Liang et al. 2024)"
    ),
    "spo-sd15": Published("SPO-Diffusion-Models/SPO-SD-v1-5_4k-p_10ep", "sd15", "unet", "SPO (Liang et al. 2024)"),
    "spo-sd15-lora": Published(
        "SPO-Diffusion-Models/SPO-SD-v1-5_4k-p_10ep_LoRA", "sd15", "lora", "SPO (Liang et al. 2024)"
    ),
}
ALIASES = {
    "dpo-sd1.5": "dpo-sd15",
    "mapo-beta": "mapo",
    "smpo-sd1.5": "smpo-sd15",
    "spo-sd1.5": "spo-sd15",
    "spo-sd1.5-lora": "spo-sd15-lora",
}
FILES = {
    "unet": ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"],
    "root": ["config.json", "diffusion_pytorch_model.safetensors"],
    "lora": [LORA_FILE],
}


@dataclass(frozen=True)
class PretrainedConfig:
    checkpoint: str = setting(
        "", "a published checkpoint: alias (" + ", ".join(PUBLISHED) + "), hub id or local folder"
    )


def published(name: str) -> Published | None:
    key = ALIASES.get(name.lower(), name.lower())
    return PUBLISHED.get(key) or next((p for p in PUBLISHED.values() if p.hub_id.lower() == key), None)


def locate(name: str) -> tuple[Path, Published | None]:
    """The local folder of a checkpoint (a folder given as is, or the hub snapshot), and what is known of it."""
    path = Path(name).expanduser()
    if path.exists():
        return path, None
    known = published(name)
    hub_id = known.hub_id if known else name
    if "/" not in hub_id:
        raise UserError(f"method.checkpoint={name}: not a folder, alias or hub id (aliases: {', '.join(PUBLISHED)})")
    files = FILES[known.layout] if known else ["*.json", "*.safetensors", "unet/*"]
    label = f"'{name}' ({hub_id})" if known and hub_id != name else f"'{hub_id}'"
    try:
        from huggingface_hub import snapshot_download

        from craft_bench.models import _offline

        folder = Path(snapshot_download(hub_id, allow_patterns=files, local_files_only=_offline()))
    except Exception as exc:  # noqa: BLE001 - any hub failure means "not available here"
        raise UserError(
            f"checkpoint {label} is not available here ({type(exc).__name__}): {files[-1]} is missing; fetch it "
            f"where there is network (huggingface-cli download {hub_id} {' '.join(files)}) and pass the "
            f"folder: --set method.checkpoint=/path/to/{hub_id.split('/')[-1]}"
        ) from None
    missing = [f for f in files if "*" not in f and not (folder / f).is_file()]
    if missing:
        raise UserError(
            f"checkpoint {label}: {missing[0]} is missing from {folder}; fetch it (huggingface-cli download "
            f"{hub_id} {' '.join(files)}) or pass a complete folder with --set method.checkpoint=/path"
        )
    return folder, known


def layout_of(folder: Path) -> tuple[str, Path]:
    """(layout, the UNet folder or the LoRA file) of a checkpoint folder."""
    if (folder / "unet" / "config.json").is_file():
        return "unet", folder / "unet"
    config = folder / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("_class_name") == "UNet2DConditionModel":
        return "root", folder
    if (folder / LORA_FILE).is_file():
        return "lora", folder / LORA_FILE
    raise UserError(
        f"{folder}: no unet/config.json, UNet config.json or {LORA_FILE} in it; give a diffusers UNet "
        "folder, a pipeline folder or a LoRA folder"
    )


def check_unet(unet_dir: Path, base_dir: Path, label: str) -> None:
    """The UNet's weights exist and its architecture is the base model's (one line naming the difference if not)."""
    if not any((unet_dir / w).is_file() for w in UNET_WEIGHTS):
        raise UserError(
            f"checkpoint {label}: {unet_dir / UNET_WEIGHTS[0]} is missing; fetch the weights or give a complete folder"
        )
    mine = json.loads((unet_dir / "config.json").read_text())
    base = json.loads((Path(base_dir) / "unet" / "config.json").read_text())
    for key in ARCHITECTURE_KEYS:
        a, b = mine.get(key), base.get(key)
        if isinstance(a, list) or isinstance(b, list):
            a, b = list(a) if isinstance(a, (list, tuple)) else a, list(b) if isinstance(b, (list, tuple)) else b
        if a != b:
            family = "an SDXL" if mine.get("addition_embed_type") == "text_time" else "an SD1.5-style"
            raise UserError(
                f"checkpoint {label} is {family} UNet whose {key} ({a}) differs from the base model's ({b}); "
                "evaluate it on the base it was fine-tuned from (--model sdxl or sd15)"
            )


class Pretrained(Method):
    name = "pretrained"
    version = "1"
    description = (
        "a published fine-tuned UNet or LoRA (DPO-SDXL, MaPO, SmPO, SPO, ...) by alias, hub id or local folder"
    )
    Config = PretrainedConfig

    def prepare(self, base: Checkpoint, ctx: RunContext) -> Checkpoint:
        from craft_bench.models import weights_digest
        from craft_bench.spec import digest
        from craft_bench.store import file_digest

        name = self.config.checkpoint
        if not name:
            raise UserError(
                "method pretrained needs a checkpoint: --set method.checkpoint=ALIAS|HUB_ID|FOLDER "
                f"(aliases: {', '.join(PUBLISHED)})"
            )
        label = f"'{name}'"
        known = published(name) if not Path(name).expanduser().exists() else None
        if known and known.family != base.model.family:
            raise UserError(
                f"checkpoint {label} was fine-tuned from {known.family}, not from the base model "
                f"'{base.model.name}' ({base.model.family}); run it with --model {known.family}"
            )
        folder, _ = locate(name)
        layout, weights = layout_of(folder)
        if layout == "lora":
            weights_id = file_digest(weights)
        else:
            check_unet(weights, Path(base.base_dir), label)
            weights_id = weights_digest(weights)
        h = digest({"base": base.digest, "weights": weights_id, "layout": layout})
        final = ctx.store.checkpoint_dir(h)
        target = final / ("unet" if layout != "lora" else LORA_FILE)
        with ctx.store.lock(f"ckpt-{h}"):
            # A link to the weights where they are now (re-pointed every time: the same weights may have moved).
            final.mkdir(parents=True, exist_ok=True)
            tmp = final / f".{target.name}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                tmp.unlink()
            tmp.symlink_to(weights.resolve(), target_is_directory=layout != "lora")
            os.replace(tmp, target)
        return Checkpoint(model=base.model, base_dir=base.base_dir, adapter_dir=str(final), digest=h)
