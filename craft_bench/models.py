"""Base-model presets (sdxl, sd15; mini is registered by craft_bench.mini) and local diffusers folders.

A preset names where its weights live (a hub id, overridable by an environment variable or a local
folder) and the sampler settings its published evaluations use. ``resolve_model`` turns a ``--model``
value into a ``ModelSpec`` whose ``digest`` identifies the weights, so no cache can serve one model's
images as another's. ``load_pipeline`` is the one place that builds a diffusers pipeline.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from craft_bench.errors import UserError
from craft_bench.spec import ModelSpec, SamplerSpec
from craft_bench.store import atomic_write_json, cache_dir

FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionPipeline": "sd15",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class ModelPreset:
    name: str
    family: str  # "sdxl" | "sd15"
    description: str
    hub_id: str | None = None  # default source
    env_var: str | None = None  # a local folder that overrides the hub id
    local_dir: str | None = None  # a folder shipped inside a package (the mini model)
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    missing_hint: str = "reinstall craft-bench"  # how to get ``local_dir`` back when it is missing

    def locate(self) -> Path:
        """The local diffusers folder holding this preset's weights, or a one-line UserError."""
        if self.env_var and os.environ.get(self.env_var):
            path = Path(os.environ[self.env_var]).expanduser()
            if not (path / "model_index.json").is_file():
                raise UserError(
                    f"{self.env_var}={path} is not a diffusers folder (no model_index.json); point it at a "
                    "saved pipeline"
                )
            return path
        if self.local_dir:
            path = Path(self.local_dir)
            if not (path / "model_index.json").is_file():
                raise UserError(f"model '{self.name}' weights are missing from {path}; {self.missing_hint}")
            return path
        assert self.hub_id
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(self.hub_id, allow_patterns=_SNAPSHOT_PATTERNS, local_files_only=_offline()))
        except Exception as exc:  # noqa: BLE001 - any hub failure means "not available here"
            how = f"set {self.env_var}=/path/to/local/copy or pass --model /path/to/local/copy"
            raise UserError(
                f"model '{self.name}' ({self.hub_id}) is not available ({type(exc).__name__}); "
                f"download it where there is network (huggingface-cli download {self.hub_id}) and {how}"
            ) from None


_SNAPSHOT_PATTERNS = ["*.json", "*.txt", "*/diffusion_pytorch_model.safetensors", "*/model.safetensors", "tokenizer*/*"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


# Published sampler settings. SDXL: diffusers' default guidance 5.0 at 1024 px, 50 steps (the setting
# GenEval and the CRAFT paper's baselines report for SDXL). SD1.5: guidance 7.5 at 512 px, 50 steps.
SDXL = ModelPreset(
    name="sdxl",
    family="sdxl",
    description="Stable Diffusion XL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0)",
    hub_id="stabilityai/stable-diffusion-xl-base-1.0",
    env_var="CRAFT_BENCH_SDXL",
    sampler=SamplerSpec(steps=50, guidance_scale=5.0, height=1024, width=1024, batch_size=4),
)
SD15 = ModelPreset(
    name="sd15",
    family="sd15",
    description="Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5)",
    hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
    env_var="CRAFT_BENCH_SD15",
    sampler=SamplerSpec(steps=50, guidance_scale=7.5, height=512, width=512, batch_size=8),
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def folder_family(path: Path) -> str:
    index = path / "model_index.json"
    if not index.is_file():
        raise UserError(
            f"--model {path}: not a diffusers folder (no model_index.json); save one with pipeline.save_pretrained(DIR)"
        )
    cls = _read_json(index).get("_class_name", "")
    if cls not in FAMILIES:
        raise UserError(f"--model {path}: pipeline class '{cls}' is not supported (supported: {', '.join(FAMILIES)})")
    return FAMILIES[cls]


def folder_resolution(path: Path) -> int:
    """Native resolution of a diffusers folder: UNet sample size x the VAE's downsampling factor."""
    unet = _read_json(path / "unet" / "config.json")
    vae = _read_json(path / "vae" / "config.json")
    factor = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    size = unet.get("sample_size", 64)
    size = size[0] if isinstance(size, (list, tuple)) else size
    return int(size) * factor


FOLDER_HINT = "craft_bench.json"  # optional file in a model folder: {"world": "mini", "sampler": {field: value, ...}}


def _read_folder_hint(path: str | Path) -> dict[str, Any] | None:
    """The parsed ``craft_bench.json`` of a model folder, None when there is none; OSError/ValueError if unreadable."""
    hint = Path(path) / FOLDER_HINT
    if not hint.is_file():
        return None
    data = json.loads(hint.read_text())
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def folder_sampler(path: Path, base: SamplerSpec) -> SamplerSpec:
    """The default sampler of a local folder: its family's, at its native resolution, with any fields
    its ``craft_bench.json`` names (the mini recipes write one, so their snapshots sample as ``mini``)."""
    res = folder_resolution(path)
    fields = {**base.__dict__, "height": res, "width": res}
    try:
        given = (_read_folder_hint(path) or {}).get("sampler", {})
        if not isinstance(given, dict):
            raise ValueError("'sampler' must be an object")
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise ValueError(f"unknown sampler field(s) {', '.join(unknown)}")
        for key, value in given.items():
            want = type(fields[key])
            if isinstance(value, bool) != (want is bool) or isinstance(value, (dict, list)) or value is None:
                raise ValueError(f"sampler.{key} must be a {want.__name__}")
            fields[key] = want(value)
        return SamplerSpec(**fields)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{path / FOLDER_HINT}: {exc}; fix or delete the file") from None


def vae_factor(path: Path) -> int:
    """How much the model's VAE downsamples (2 ** (blocks - 1)): 8 for SD1.5 and SDXL, 4 for mini."""
    vae = _read_json(Path(path) / "vae" / "config.json")
    return 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)


def check_sampler(sampler: SamplerSpec, path: Path) -> None:
    """What only the model can tell about a sampler, checked before anything runs: a known scheduler, and an image
    size the VAE and the diffusers pipelines accept (a multiple of the VAE factor and of 8, which the pipelines'
    ``check_inputs`` require)."""
    if sampler.scheduler != "default" and sampler.scheduler not in SCHEDULERS:
        import difflib

        close = difflib.get_close_matches(sampler.scheduler, list(SCHEDULERS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(
            f"--set scheduler={sampler.scheduler}: unknown scheduler{hint} (known: default, {', '.join(SCHEDULERS)})"
        )
    factor = vae_factor(path)
    multiple = factor * 8 // math.gcd(factor, 8)
    for name in ("height", "width"):
        v = getattr(sampler, name)
        if v % multiple:
            lower = max(multiple, v - v % multiple)
            raise UserError(
                f"--set {name}={v}: the image size must be a multiple of {multiple} for this model (its VAE "
                f"downsamples by {factor}); e.g. --set {name}={lower}"
            )


def folder_world(source: str | Path | None) -> str | None:
    """The world name a local model folder's ``craft_bench.json`` declares (``"mini"`` for the mini recipes'
    outputs), else None; ``world.world_of`` decides what it means. An unreadable file declares nothing
    (``resolve_model`` reports it when it reads the sampler)."""
    if not source:
        return None
    try:
        world = (_read_folder_hint(source) or {}).get("world")
    except (OSError, ValueError):
        return None
    return world if isinstance(world, str) else None


def weights_digest(path: Path) -> str:
    """sha256 over every weight and config file of a folder (memoised by path, size and mtime)."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.suffix == ".json"))
    stamp = hashlib.sha256(
        json.dumps([(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]).encode()
    ).hexdigest()
    memo_path = cache_dir() / "digests.json"
    memo: dict[str, str] = {}
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, json.JSONDecodeError):
        pass
    memo_key = f"{path}|{stamp}"
    if memo_key in memo:
        return memo[memo_key]
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(path)).encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    value = h.hexdigest()
    memo[memo_key] = value
    try:
        atomic_write_json(memo_path, memo)
    except OSError:
        pass  # a read-only home only costs a re-hash next time
    return value


def resolve_model(name_or_path: str) -> tuple[ModelSpec, SamplerSpec, Path]:
    """``--model`` value -> (ModelSpec, default sampler, local folder)."""
    from craft_bench import registry

    candidate = Path(name_or_path).expanduser()
    looks_like_path = os.sep in name_or_path or name_or_path.startswith(".") or candidate.exists()
    if looks_like_path:
        if not candidate.exists():
            raise UserError(
                f"--model {name_or_path}: no such folder; give a preset name (see `craft-bench ls models`) or "
                "a diffusers folder"
            )
        family = folder_family(candidate)
        sampler = folder_sampler(candidate, SDXL.sampler if family == "sdxl" else SD15.sampler)
        spec = ModelSpec(
            name=candidate.resolve().name,
            source=str(candidate.resolve()),
            family=family,
            digest=weights_digest(candidate),
        )
        return spec, sampler, candidate
    preset: ModelPreset = registry.models.get(name_or_path)
    path = preset.locate()
    spec = ModelSpec(
        name=preset.name, source=preset.hub_id or str(path), family=preset.family, digest=weights_digest(path)
    )
    return spec, preset.sampler, path


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def default_dtype(device: str, family: str) -> str:
    """fp16 on CUDA (the published SD/SDXL inference setting), fp32 on CPU."""
    return "float16" if device.startswith("cuda") else "float32"


def default_device() -> str:
    """cuda when torch sees a GPU. Without a GPU device node torch cannot see one, and we skip
    importing torch (seconds) so that a cache-hit rerun stays fast."""
    import glob

    if not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd") or not os.path.exists("/dev")):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """``None``/``auto`` -> the default device; otherwise validate ``cpu``, ``cuda`` or ``cuda:N``."""
    if device in (None, "", "auto"):
        return default_device()
    device = str(device)
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise UserError(f"--device {device}: expected cpu, cuda, cuda:N or auto")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: CUDA is not available here (use --device cpu)")
    return device


SCHEDULERS = {
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",  # ControlNet++'s SD1.5 evaluation sampler (20 steps)
}


def _diffusers(name: str) -> Any:
    return lambda: getattr(__import__("diffusers"), name)


def _transformers(name: str) -> Any:
    return lambda: getattr(__import__("transformers"), name)


_COMPONENT_LOADERS = {
    "unet": _diffusers("UNet2DConditionModel"),
    "vae": _diffusers("AutoencoderKL"),
    "text_encoder": _transformers("CLIPTextModel"),
    "text_encoder_2": _transformers("CLIPTextModelWithProjection"),
}


def quiet_library_bars() -> None:
    """Turn off diffusers' and transformers' own progress bars (per-component loading, shard writing): they
    take about a second here and would only clutter or break craft-bench's own bars."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _load_problem(exc: BaseException) -> str:
    """diffusers' / transformers' loading error in one short sentence with the fix."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    size = next((ln for ln in lines if ln.startswith("size mismatch for ")), None)
    if size:  # torch's load_state_dict
        m = re.match(
            r"size mismatch for (\S+): copying a param with shape (.+) from checkpoint, the shape in current "
            r"model is (.+)\.$",
            size,
        )
        detail = f"{m.group(1)}: {m.group(2)} vs {m.group(3)}" if m else size[:160]
        return f"shapes do not match ({detail}; {sum(ln.startswith('size mismatch') for ln in lines)} tensors)"
    m = re.search(r"(\S+) expected shape (torch\.Size\(\[[^]]*\]\)), but got (torch\.Size\(\[[^]]*\]\))", text)
    if m:
        return (
            f"its weights are of another architecture than its config ({m.group(1)}: expected {m.group(2)}, got "
            f"{m.group(3)}); give weights saved from this model's architecture"
        )
    return text.split(". If you")[0]


def apply_speed_settings(pipe: Any, sampler: SamplerSpec) -> Any:
    """The sampler's execution settings on a loaded pipeline: channels_last, torch.compile, sliced or tiled VAE
    decoding."""
    import torch

    if sampler.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    if sampler.compile:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")
    if sampler.vae_decode == "sliced":
        pipe.vae.enable_slicing()
    elif sampler.vae_decode == "tiled":
        pipe.vae.enable_tiling()
    return pipe


def load_pipeline(
    source: Path | str,
    family: str,
    device: str,
    dtype: str,
    adapter_dir: str | None = None,
    scheduler: str = "default",
    controlnet: Path | str | None = None,
) -> Any:
    """Build the diffusers pipeline for a model folder, with trained weights applied if given; with ``controlnet``
    (a ``ControlNetModel`` folder) the family's ControlNet pipeline, the trained UNet or LoRA under the ControlNet."""
    import diffusers

    quiet_library_bars()
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if family == "sdxl":
        cls = diffusers.StableDiffusionXLControlNetPipeline if controlnet else diffusers.StableDiffusionXLPipeline
        kwargs["add_watermarker"] = False
    else:
        cls = diffusers.StableDiffusionControlNetPipeline if controlnet else diffusers.StableDiffusionPipeline
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if controlnet:
        try:
            kwargs["controlnet"] = diffusers.ControlNetModel.from_pretrained(str(controlnet), dtype=torch_dtype(dtype))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load a ControlNet from {controlnet}: {_load_problem(exc)}") from None
    if adapter_dir:
        # Fully trained components replace the base's; the folder layout is diffusers' own.
        for name, loader in _COMPONENT_LOADERS.items():
            sub = Path(adapter_dir) / name
            if (sub / "config.json").is_file():
                try:
                    kwargs[name] = loader().from_pretrained(sub, dtype=torch_dtype(dtype))
                except (OSError, ValueError, RuntimeError) as exc:
                    raise UserError(f"cannot load the trained {name} in {sub}: {_load_problem(exc)}") from None
    try:
        pipe = cls.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load a {family} pipeline from {source}: {_load_problem(exc)}") from None
    if adapter_dir and any(Path(adapter_dir).glob("pytorch_lora_weights.*")):
        level = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity_error()  # "no LoRA keys for the text encoders": by design, UNet only
        try:
            pipe.load_lora_weights(adapter_dir)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise UserError(
                f"the LoRA weights in {adapter_dir} do not fit the {family} model {source} ({_load_problem(exc)}); "
                "give a LoRA trained on this base model"
            ) from None
        finally:
            diffusers.utils.logging.set_verbosity(level)
        pipe.fuse_lora()
    if scheduler != "default":
        if scheduler not in SCHEDULERS:
            raise UserError(f"unknown scheduler '{scheduler}' (known: default, {', '.join(SCHEDULERS)})")
        pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
