"""ControlNet-conditioned generation: how well outputs follow a condition, as ControlNet++ measures it, plus rewards.

Shared by the suites ``controlnet-canny`` (suites/controlnet_canny.py) and ``controlnet-depth``
(suites/controlnet_depth.py). What is taken from ControlNet++ (Li et al., ECCV 2024; liming-ai/ControlNet_Plus_Plus
``eval/eval.py``, ``eval/eval_edge.py``, ``eval/eval_depth.py``):

- a condition is computed from a reference image resized to the generation resolution; the outputs' own
  condition is re-computed with the same extractor (canny: kornia 0.1 / 0.2; depth: a depth estimator);
- canny: F1 of the binary edge maps (torchmetrics ``binary_f1_score``: 2TP / (2TP + FP + FN), 0 when neither map
  has an edge) and MS-SSIM of the edge maps in [0, 1] (torchmetrics, Gaussian 11 / sigma 1.5, data range 1);
- depth: RMSE on the 0..255 scale between the condition (min-max normalised, truncated to uint8) and the depth
  re-estimated on the output (divided by its maximum, truncated to uint8);
- several images per condition (4).

Generation goes through the runner as for every suite: the suite names its ControlNet (``Suite.controlnet``) and
each item carries its condition image; ``models.load_pipeline`` builds the family's ControlNet pipeline with the
method's UNet or LoRA, so an aligned UNet is measured as a ControlNet plug-in. ``suite.controlnet=none``
generates the same prompts and seeds without a ControlNet: the metric against the same conditions then tells how
much of it the ControlNet brings (pair the two runs with ``craft-bench compare``).

Conditions come from a folder of reference images with captions (``suite.data`` or ``--prompts``; layout in
docs/controlnet.md), or, for mini-world models, from renders of scenes that satisfy GenEval-style prompts
(``craft_bench.mini.controlnet``: canny of the render, the renderer's depth-like map). Condition images are
stored content-addressed under ``<results>/controls/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from craft_bench.api import MetricDef, PromptItem, RunContext, Suite
from craft_bench.errors import UserError
from craft_bench.spec import setting
from craft_bench.suites.parti import ordered_unique, slug
from craft_bench.suites.rewards import reward_columns, reward_display, reward_names

# The published ControlNets the suites default to, per model family and control (hub ids; a local folder or
# $CRAFT_BENCH_CONTROLNET_<KIND> overrides).
CONTROLNETS = {
    ("sdxl", "canny"): "diffusers/controlnet-canny-sdxl-1.0",
    ("sdxl", "depth"): "diffusers/controlnet-depth-sdxl-1.0",
    ("sd15", "canny"): "lllyasviel/control_v11p_sd15_canny",
    ("sd15", "depth"): "lllyasviel/control_v11f1p_sd15_depth",
}
DATA_ENV = "CRAFT_BENCH_CONTROLNET_DATA"
METADATA_FILE = "metadata.jsonl"
PROMPT_FIELDS = ("text", "prompt", "caption")
MSSSIM_BETAS = (
    0.0448,
    0.2856,
    0.3001,
    0.2363,
    0.1333,
)  # MS-SSIM's scale weights (Wang et al. 2003; torchmetrics default)
MSSSIM_KERNEL = 11


# --------------------------------------------------------------------------- metrics (one function per quantity)


def edge_f1(pred: np.ndarray, target: np.ndarray) -> float:
    """F1 of binary edge maps (nonzero = edge): 2TP / (2TP + FP + FN); 0 when neither has an edge (torchmetrics)."""
    import torch
    from torchmetrics.functional.classification import binary_f1_score

    p = torch.from_numpy(np.asarray(pred) > 0).flatten().long()
    t = torch.from_numpy(np.asarray(target) > 0).flatten().long()
    return float(binary_f1_score(p, t))


def msssim_betas(size: int) -> tuple[float, ...]:
    """MS-SSIM's scale weights for an image whose shorter side is ``size``: all five scales from 161 px on (the
    Gaussian window of 11 must fit the coarsest scale, ``size > 10 * 2^(scales - 1)``); fewer below, the kept
    weights renormalised to sum 1 (64-px mini images: 3 scales)."""
    n = len(MSSSIM_BETAS)
    while n > 1 and size <= (MSSSIM_KERNEL - 1) * 2 ** (n - 1):
        n -= 1
    kept = MSSSIM_BETAS[:n]
    return kept if n == len(MSSSIM_BETAS) else tuple(b / sum(kept) for b in kept)


def edge_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """MS-SSIM (torchmetrics, data range 1) of two edge maps scaled to [0, 1]."""
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as msssim

    p = torch.from_numpy(np.asarray(pred, dtype=np.float32) / 255.0)[None, None]
    t = torch.from_numpy(np.asarray(target, dtype=np.float32) / 255.0)[None, None]
    return float(msssim(p, t, data_range=1.0, kernel_size=MSSSIM_KERNEL, betas=msssim_betas(min(p.shape[-2:]))))


def depth_label(condition: np.ndarray) -> np.ndarray:
    """A condition depth map on ControlNet++'s scale: min-max normalised to 0..255, truncated to uint8."""
    from craft_bench.controls import depth_to_uint8

    return depth_to_uint8(condition)


def depth_prediction(depth: np.ndarray) -> np.ndarray:
    """A re-estimated depth map on ControlNet++'s scale: divided by its maximum, times 255, truncated to uint8
    (all zeros when its maximum is not positive)."""
    d = np.asarray(depth, dtype=np.float64)
    top = d.max() if d.size else 0.0
    if top <= 0:
        return np.zeros(d.shape, np.uint8)
    return (np.clip(d / top, 0.0, 1.0) * 255.0).astype(np.uint8)


def depth_rmse(condition: np.ndarray, estimated: np.ndarray) -> float:
    """RMSE (0..255 scale) between a condition depth map and the depth re-estimated on the output."""
    a = depth_label(condition).astype(np.float64)
    b = depth_prediction(estimated).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"condition {a.shape} and estimate {b.shape} differ in size")
    return float(np.sqrt(((a - b) ** 2).mean()))


# --------------------------------------------------------------------------- where conditions come from


@dataclass(frozen=True)
class Reference:
    """One row of a condition data set: a caption, a reference image and optionally a ready condition map."""

    id: str
    prompt: str
    image: Path | None
    control: Path | None
    stratum: str


def read_data(source: str | Path, kind: str) -> list[Reference]:
    """Rows of ``metadata.jsonl`` in a folder (or the file itself): ``file_name`` (reference image, relative to the
    folder), a caption in ``text`` / ``prompt`` / ``caption``, optional ``control_<kind>`` or ``control`` (a
    ready condition map), ``id`` and ``category`` (the stratum)."""
    path = Path(source).expanduser()
    meta = path if path.is_file() else path / METADATA_FILE
    root = meta.parent
    if not meta.is_file():
        raise UserError(
            f"ControlNet data '{source}': no {METADATA_FILE}; give a folder of reference images with a {METADATA_FILE} "
            f"(docs/controlnet.md) via --set suite.data=DIR, --prompts DIR/{METADATA_FILE} or ${DATA_ENV}"
        )
    rows: list[Reference] = []
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {meta}: {exc}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{meta}:{n}: not JSON ({exc.msg}); one object per line") from None
        prompt = next((row[f] for f in PROMPT_FIELDS if isinstance(row.get(f), str)), None)
        control = row.get(f"control_{kind}") or row.get("control")
        if prompt is None or not (row.get("file_name") or control):
            raise UserError(
                f"{meta}:{n}: each line needs a caption ({' / '.join(PROMPT_FIELDS)}) and a file_name "
                f"(or a control_{kind} map)"
            )
        image = root / row["file_name"] if row.get("file_name") else None
        control_path = root / control if control else None
        for p in (image, control_path):
            if p is not None and not p.is_file():
                raise UserError(f"{meta}:{n}: no file {p}")
        rows.append(
            Reference(
                str(row.get("id", f"cn-{len(rows):05d}")), prompt, image, control_path, str(row.get("category", "all"))
            )
        )
    if not rows:
        raise UserError(f"{meta}: no rows")
    if len({r.id for r in rows}) != len(rows):
        raise UserError(f"{meta}: ids repeat; give every line a unique id (or none)")
    return rows


def locate_controlnet(value: str, what: str, env: str) -> Path:
    """A ControlNet folder: a local path as is, a hub id from the local cache (or the hub where reachable)."""
    from craft_bench.rewards.common import hub_reachable, resolve_source

    src = resolve_source(what, env, value, value, "--set suite.controlnet=DIR")
    if src.local:
        folder = Path(src.value)
    else:
        try:
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(
                    src.value,
                    allow_patterns=["config.json", "diffusion_pytorch_model.safetensors"],
                    local_files_only=not hub_reachable(),
                )
            )
        except Exception as exc:  # offline and not cached, unknown repo: one line for the user
            raise UserError(
                f"{what}: cannot get ControlNet '{src.value}' ({type(exc).__name__}; offline?); download it "
                f"(huggingface-cli download {src.value}) and {src.hint()}"
            ) from None
    if not (folder / "config.json").is_file() or not any(folder.glob("diffusion_pytorch_model.*")):
        raise UserError(
            f"{what}: '{folder}' is not a ControlNet folder (config.json + diffusion_pytorch_model.safetensors); "
            f"give one saved with ControlNetModel.save_pretrained"
        )
    return folder


def _check_fits(controlnet: Path, model_source: str, what: str) -> None:
    """A ControlNet must match the UNet it steers (cross-attention width, SDXL's added embeddings)."""
    unet_cfg = Path(model_source) / "unet" / "config.json"
    if not unet_cfg.is_file():
        return
    cn, un = json.loads((controlnet / "config.json").read_text()), json.loads(unet_cfg.read_text())
    for key in ("cross_attention_dim", "addition_embed_type"):
        if (
            cn.get(key) is not None
            and un.get(key) is not None
            and list(np.atleast_1d(cn[key])) != list(np.atleast_1d(un[key]))
        ):
            raise UserError(
                f"{what}: ControlNet {controlnet} was made for another model ({key} {cn[key]} vs the model's "
                f"{un[key]}); "
                f"give one for this model with --set suite.controlnet=DIR"
            )


# --------------------------------------------------------------------------- the suites


@dataclass(frozen=True)
class ControlNetConfig:
    controlnet: str = setting(
        "auto",
        "auto (mini: the shipped mini ControlNet; SDXL / SD1.5: the published one), none (no ControlNet: "
        "the same prompts and seeds as plain text-to-image), or a ControlNet folder / hub id",
    )
    data: str = setting(
        "",
        f"reference images with captions: a folder with {METADATA_FILE} (default ${DATA_ENV}; mini-world "
        "models: the mini set)",
    )
    rewards: str = setting(
        "auto",
        "comma-separated rewards scored on the outputs (auto: mini-clip,mini-aes on mini, else "
        "hps,pickscore,aes,imagereward,clip)",
    )
    hps_version: str = setting("v2.1", "HPS checkpoint version when hps is a reward")
    sources: str = setting("", "reward weights, comma-separated NAME=PATH as in `craft-bench score --source`")
    images_per_prompt: int = setting(4, "images per condition (ControlNet++: 4)")
    n_per_task: int = setting(20, "mini set: conditions per GenEval task (6 tasks)")
    prompt_seed: int = setting(3000, "mini set: seed of its prompts and scenes")

    def __post_init__(self) -> None:
        if self.images_per_prompt < 1:
            raise ValueError("images_per_prompt must be >= 1")
        if self.n_per_task < 1:
            raise ValueError("n_per_task must be >= 1")
        if not self.controlnet:
            raise ValueError("controlnet must be auto, none, or a folder / hub id")


class ControlNetSuite(Suite):
    """Items, ControlNet and rewards shared by the canny and depth suites; subclasses set ``control`` and score."""

    control: ClassVar[str] = ""
    headline_column: ClassVar[str] = ""
    headline_display: ClassVar[str] = ""
    headline_higher_is_better: ClassVar[bool] = True
    Config = ControlNetConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._scorer = None
        self._names: tuple[str, ...] = ()
        self._strata: tuple[str, ...] = ()
        self._controlnet: Path | None = None

    # ------------------------------------------------------------------ what to generate
    def _what(self) -> str:
        return f"suite {self.name}"

    def _resolve_controlnet(self, ctx: RunContext) -> Path | None:
        value = self.config.controlnet
        if value == "none":
            return None
        env = f"CRAFT_BENCH_CONTROLNET_{self.control.upper()}"
        if value == "auto":
            try:
                own = ctx.world.controlnet_dir(self.control)  # the world's own ControlNet (mini: the shipped ones)
            except UserError as exc:
                raise UserError(f"{self._what()}: {exc}") from None
            if own is not None:
                return Path(own)
            value = os.environ.get(env) or CONTROLNETS[(ctx.spec.model.family, self.control)]
        folder = locate_controlnet(value, self._what(), env)
        _check_fits(folder, ctx.spec.model.source, self._what())
        return folder

    def controlnet(self, ctx: RunContext) -> str | None:
        return str(self._controlnet) if self._controlnet is not None else None

    def items(self, ctx: RunContext, prompts_path: Path | None = None) -> list[PromptItem]:
        self._names = reward_names(self.config.rewards, ctx)
        self._controlnet = self._resolve_controlnet(ctx)
        self.preflight(ctx)
        size = (ctx.spec.sampler.width, ctx.spec.sampler.height)
        data = prompts_path or self.config.data or os.environ.get(DATA_ENV, "")
        if data:
            rows = [(r.id, r.prompt, r.stratum, self._condition(r, size, ctx)) for r in read_data(data, self.control)]
        elif ctx.world.prompts == "mini":  # the mini world's prompts, with scenes that satisfy them
            rows = self._mini_rows(size)
        else:
            raise UserError(
                f"{self._what()}: real models need reference images with captions; pass --set suite.data=DIR "
                f"(a folder with {METADATA_FILE}, e.g. MultiGen-20M's eval split; docs/controlnet.md) or set "
                f"${DATA_ENV}"
            )
        conditioned = self._controlnet is not None
        items = []
        for item_id, prompt, stratum, cond in rows:
            path = str(ctx.store.save_control(_control_image(cond)))
            items.append(
                PromptItem(
                    id=item_id,
                    prompt=prompt,
                    n_images=self.config.images_per_prompt,
                    stratum=stratum,
                    metadata={"condition": path},
                    control_image=path if conditioned else None,
                )
            )
        self._strata = ordered_unique([it.stratum for it in items])
        return items

    def _mini_rows(self, size: tuple[int, int]) -> list[tuple[str, str, str, np.ndarray]]:
        """GenEval-style prompts of the mini grammar, each with a scene that satisfies it; the condition is the
        scene's."""
        from craft_bench.mini.controlnet import condition
        from craft_bench.mini.prompts import geneval_prompts, scene_for

        if size[0] != size[1]:
            raise UserError(f"{self._what()}: mini scenes are square; use height = width")
        rng = np.random.default_rng(self.config.prompt_seed)
        rows, seen = [], {}
        for line in geneval_prompts(self.config.n_per_task, self.config.prompt_seed):
            k = seen[line["tag"]] = seen.get(line["tag"], -1) + 1
            scene = scene_for(line, rng)
            rows.append(
                (f"{line['tag']}-{k:04d}", line["prompt"], line["tag"], condition(scene, self.control, size[0]))
            )
        return rows

    def _condition(self, ref: Reference, size: tuple[int, int], ctx: RunContext) -> np.ndarray:
        """A data row's condition map at the generation size: its ready map (resized), or extracted from its image."""
        from PIL import Image

        from craft_bench.controls import read_map

        if ref.control is not None:
            cond = read_map(ref.control)
            if cond.shape[::-1] != size:
                cond = np.asarray(Image.fromarray(cond).resize(size, Image.BILINEAR))
            return cond
        assert ref.image is not None
        with Image.open(ref.image) as im:
            image = np.asarray(im.convert("RGB").resize(size, Image.BICUBIC))
        return self.extract(image, ctx)

    def preflight(self, ctx: RunContext) -> None:
        """Fail before any image is generated when scoring cannot run (e.g. the depth estimator is missing)."""

    def extract(self, image: np.ndarray, ctx: RunContext) -> np.ndarray:
        """The (H, W) uint8 condition map of a reference image."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    def metrics(self) -> list[MetricDef]:
        from craft_bench import registry

        hb = self.headline_higher_is_better
        out = [MetricDef("overall", self.headline_display, self.headline_column, higher_is_better=hb)]
        out += self.extra_metrics()
        if len(self._strata) > 1:
            out += [
                MetricDef(
                    f"{self.headline_column}.{slug(s)}",
                    f"{self.headline_display}, {s}",
                    self.headline_column,
                    where_stratum=s,
                    higher_is_better=hb,
                )
                for s in self._strata
            ]
        for name in self._names:
            better = bool(getattr(registry.rewards.get(name), "higher_is_better", True))
            out.append(
                MetricDef(name, f"{reward_display(name, self.config.hps_version)} mean", name, higher_is_better=better)
            )
        return out

    def extra_metrics(self) -> list[MetricDef]:
        return []

    def rewards(self, items: Sequence[PromptItem], images: Sequence[Any], ctx: RunContext) -> list[dict[str, float]]:
        if not self._names:
            return [{} for _ in images]
        if self._scorer is None:
            from craft_bench.rewards.composite import CompositeScorer

            self._scorer = CompositeScorer.from_source_list(
                self._names, self.config.sources, ctx.device, {"hps": {"version": self.config.hps_version}}
            )
        return reward_columns(self._scorer, self._names, images, [it.prompt for it in items])

    def score(self, items: Sequence[PromptItem], images: Sequence[Any], ctx: RunContext) -> list[dict[str, Any]]:
        from craft_bench.controls import read_map

        if len(items) != len(images):
            raise ValueError(f"{len(items)} items but {len(images)} images")
        conditions = [read_map(it.metadata["condition"]) for it in items]
        for cond, image in zip(conditions, images):
            if cond.shape[::-1] != tuple(image.size):
                raise ValueError(f"condition {cond.shape[::-1]} and image {image.size} differ in size")
        measured = self.measure(conditions, images, ctx)
        return [{**m, **r} for m, r in zip(measured, self.rewards(items, images, ctx))]

    def measure(
        self, conditions: Sequence[np.ndarray], images: Sequence[Any], ctx: RunContext
    ) -> list[dict[str, float]]:
        """The control metrics of each image against its condition."""
        raise NotImplementedError

    def close(self) -> None:
        self._scorer = None


def _control_image(cond: np.ndarray) -> Any:
    from craft_bench.controls import control_image

    return control_image(cond)
