"""The model card of a trained checkpoint: ``README.md`` with YAML front matter in the checkpoint folder, as diffusers'
training scripts write one beside their weights, so a folder copied away still says how it was made.

It holds the base model, the method and its version, every setting (the method's config and the resolved training
settings), the pool it learnt from (prompts, candidates, rewards, kept samples), the training compute, the command
that reproduces the run, and how to load the weights in plain diffusers. The folder's weights are untouched by it:
``load_lora_weights(folder)`` / ``UNet2DConditionModel.from_pretrained(folder / "unet")`` read it as before.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from craft_bench.spec import RunSpec, to_jsonable
from craft_bench.version import __version__

CARD = "README.md"
PIPELINES = {"sdxl": "StableDiffusionXLPipeline", "sd15": "StableDiffusionPipeline"}
FAMILY_TAGS = {"sdxl": "stable-diffusion-xl", "sd15": "stable-diffusion"}


def _yaml(value: Any) -> str:
    """A YAML scalar: JSON's quoting (valid YAML) for anything but plain numbers and booleans."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _model_arg(spec: RunSpec) -> str:
    """How ``--model`` names the base: its preset name, else the folder it was read from."""
    from craft_bench import registry
    from craft_bench.errors import UserError

    try:
        registry.models.get(spec.model.name)
        return spec.model.name
    except UserError:
        return spec.model.source or spec.model.name


def _default_sampler(spec: RunSpec) -> dict[str, Any] | None:
    from craft_bench import registry
    from craft_bench.errors import UserError
    from craft_bench.models import SD15, SDXL, folder_sampler

    try:
        return to_jsonable(registry.models.get(spec.model.name).sampler)
    except UserError:
        pass
    if spec.model.source and Path(spec.model.source).is_dir():
        return to_jsonable(
            folder_sampler(Path(spec.model.source), SDXL.sampler if spec.model.family == "sdxl" else SD15.sampler)
        )
    return None


def _plugin_defaults(kind: str, name: str) -> dict[str, Any]:
    from craft_bench import registry

    try:
        return to_jsonable(registry.REGISTRIES[kind].get(name).Config())
    except Exception:  # noqa: BLE001 - no defaults known: every setting is then written out
        return {}


def _set_value(value: Any) -> str:
    if isinstance(value, dict):  # a paired suite's baseline identity: the method it names
        return str(value.get("method", json.dumps(value)))
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def reproduce_command(spec: RunSpec) -> str:
    """The `craft-bench run` command of ``spec``: every setting that is not its default, as ``--set``."""
    args = [
        "craft-bench",
        "run",
        "--method",
        spec.method.name,
        "--suite",
        spec.suite.name,
        "--model",
        _model_arg(spec),
        "--seed",
        str(spec.seed),
    ]
    if spec.limit is not None:
        args += ["--limit", str(spec.limit)]
    if spec.prompts:
        args += ["--prompts", f"PROMPTS_FILE_sha256_{spec.prompts[:12]}"]
    args += ["--dtype", spec.dtype]
    sets = []
    for prefix, pairs, defaults in (
        ("method.", spec.method.config, _plugin_defaults("methods", spec.method.name)),
        ("suite.", spec.suite.config, _plugin_defaults("suites", spec.suite.name)),
    ):
        sets += [f"{prefix}{k}={_set_value(v)}" for k, v in pairs if k not in defaults or defaults[k] != v]
    sampler, default = to_jsonable(spec.sampler), _default_sampler(spec) or {}
    sets += [f"{k}={_set_value(v)}" for k, v in sampler.items() if default.get(k) != v]
    for s in sets:
        args += ["--set", s]
    return " ".join(shlex.quote(a) for a in args)


def _rows(d: dict[str, Any]) -> str:
    return "\n".join(f"| `{k}` | {_cell(v)} |" for k, v in d.items())


def _cell(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return text.replace("|", "\\|")


def model_card(
    spec: RunSpec, method: Any, settings: dict[str, Any], info: dict[str, Any], versions: dict[str, str]
) -> str:
    """The card's text for a checkpoint trained by ``method`` under ``spec`` (train_info.json's ``info``)."""
    model, family = spec.model, spec.model.family
    lora = bool(settings.get("lora_rank"))
    config = dict(spec.method.config)
    pool = info.get("pool") or {}
    tags = [
        "text-to-image",
        "diffusers",
        "diffusers-training",
        "craft-bench",
        method.name,
        "lora" if lora else "full-fine-tune",
        FAMILY_TAGS.get(family, family),
    ]
    hub_id = model.source if model.source and not Path(model.source).exists() else None  # a preset's hub id
    base_id, load_from = hub_id or model.name, model.source or model.name
    front = [
        "---",
        f"base_model: {_yaml(base_id)}",
        "library_name: diffusers",
        "pipeline_tag: text-to-image",
        "tags:",
        *[f"- {_yaml(t)}" for t in tags],
        "craft_bench:",
        f"  version: {_yaml(versions.get('craft-bench', __version__))}",
        *([f"  git_commit: {_yaml(versions['git_commit'])}"] if "git_commit" in versions else []),
        f"  method: {_yaml(method.name)}",
        f"  method_version: {_yaml(method.version)}",
        f"  checkpoint: {_yaml(info.get('checkpoint', ''))}",
        f"  base_model: {_yaml(model.name)}",
        f"  base_model_digest: {_yaml(model.digest)}",
        f"  family: {_yaml(family)}",
        f"  seed: {spec.seed}",
        f"  dtype: {_yaml(spec.dtype)}",
        f"  samples_used: {_yaml(info.get('samples_used'))}",
        f"  steps: {_yaml(info.get('steps'))}",
        f"  train_s: {_yaml(info.get('train_s'))}",
        "---",
    ]
    pipe = PIPELINES.get(family, "DiffusionPipeline")
    load = (
        f'pipe.load_lora_weights("{"<this folder>"}")'
        if lora
        else 'pipe.unet = UNet2DConditionModel.from_pretrained("<this folder>/unet")'
    )
    imports = f"from diffusers import {pipe}" + ("" if lora else ", UNet2DConditionModel")
    timing = info.get("timing") or {}
    compute = {
        "device": info.get("device"),
        "processes": info.get("processes"),
        "steps": info.get("steps"),
        "wall seconds (from the pool to the saved weights)": info.get("train_s"),
        "seconds per optimiser step": info.get("step_s"),
        "peak memory (bytes)": info.get("peak_memory_bytes"),
        "images generated now": info.get("images_generated"),
        "reward evaluations now": info.get("reward_calls"),
        **{f"stage {k} (s)": v for k, v in timing.items()},
        **{f"pool from nothing: {k} (s)": v for k, v in (info.get("pool_cost") or {}).items()},
    }
    data = {
        "rewards": info.get("rewards"),
        "samples trained on": info.get("samples_used"),
        **{k: v for k, v in pool.items()},
        **({"reward statistics over the pool": info["reward_stats"]} if info.get("reward_stats") else {}),
    }
    body = f"""
# {method.name} on {model.name}

A {"LoRA (rank " + str(settings.get("lora_rank")) + ")" if lora else "full UNet fine-tune"} of `{model.name}` ({
        family
    }) trained by
craft-bench's `{method.name}` method (version {method.version}) on the shared trainer. {method.description.rstrip(".")}.

## Use it
```python
{imports}

pipe = {pipe}.from_pretrained("{load_from}")
{load}
```
Evaluate it with craft-bench: the command below reuses this folder (it is `checkpoints/{
        info.get("checkpoint", "")
    }` of its
results root) and scores it.

## Reproduce
```bash
{reproduce_command(spec)}
```

## Base model
| | |
|---|---|
{_rows({"name": model.name, "family": family, "source": model.source, "weights digest": model.digest})}

## Settings
Method settings (`--set method.<name>=...`; every one, defaults included):

| setting | value |
|---|---|
{_rows(config)}

Training settings as resolved (the method's preset for {
        family if spec.model.name != "mini" else "mini"
    } models filled in):

| setting | value |
|---|---|
{_rows(settings)}

## Training data (the pool)
| | |
|---|---|
{_rows(data)}

## Training compute
| | |
|---|---|
{_rows(compute)}

## Versions
| | |
|---|---|
{_rows(versions)}

Files: {
        ", ".join(f"`{f}`" for f in info.get("files", []))
    }, `train_info.json` (everything above as JSON), `train_log.jsonl`
(loss, learning rate and gradient norm per step), `examples.jsonl` (what it trained on){
        ", `logs/` (tracker event files)" if settings.get("report_to", "none") != "none" else ""
    }.
"""
    return "\n".join(front) + "\n" + body


def write_model_card(
    folder: Path, spec: RunSpec, method: Any, settings: dict[str, Any], info: dict[str, Any], versions: dict[str, str]
) -> Path:
    from craft_bench.store import atomic_write_text

    path = Path(folder) / CARD
    atomic_write_text(path, model_card(spec, method, settings, info, versions))
    return path
