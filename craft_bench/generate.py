"""The one place that samples images for evaluation: batched, per-image seeded, content-addressed.

Image ``i`` of prompt item ``p`` is seeded by ``derive_seed(run_seed, p.id, i)``, so adding prompts or
changing the batch size never changes another image's initial noise. Its cache key covers everything
that changes its pixels (``image_key``), so a cache hit is always the right image and costs nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from craft_bench.api import Checkpoint, PromptItem
from craft_bench.spec import SamplerSpec, digest
from craft_bench.store import Store

# Bump when a change to this module changes pixels for the same inputs; it is part of every image key.
GENERATION_VERSION = "1"


def derive_seed(run_seed: int, item_id: str, index: int) -> int:
    """A 63-bit seed for image ``index`` of item ``item_id``: independent of every other image."""
    h = hashlib.sha256(f"{run_seed}\0{item_id}\0{index}".encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks (weights can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def image_key(checkpoint_digest: str, sampler: SamplerSpec, seed: int, prompt: str, dtype: str, control_digest: str | None = None,
              controlnet_digest: str | None = None) -> str:
    fields = {
        "checkpoint": checkpoint_digest,
        "sampler": sampler.key_fields(),
        "seed": seed,
        "prompt": prompt,
        "dtype": dtype,
        "control": control_digest,
        "generation_version": GENERATION_VERSION,
    }
    if controlnet_digest is not None:  # only then, so the keys of plain text-to-image images stay what they were
        fields["controlnet"] = controlnet_digest
    return digest(fields)


@dataclass(frozen=True)
class ImageRequest:
    item_id: str
    prompt: str
    index: int
    seed: int
    key: str
    control_image: str | None = None


def plan(items: Sequence[PromptItem], checkpoint: Checkpoint, sampler: SamplerSpec, run_seed: int, dtype: str,
         controlnet: str | Path | None = None) -> list[ImageRequest]:
    """Every image a suite needs, in item order, with its seed and cache key (``controlnet``: the folder of the
    ControlNet that conditions on the items' control images, whose weights are part of the key)."""
    from craft_bench.models import weights_digest

    controlnet_digest = weights_digest(Path(controlnet)) if controlnet else None
    requests = []
    for item in items:
        control = file_digest(item.control_image) if item.control_image else None
        for i in range(item.n_images):
            seed = derive_seed(run_seed, item.id, i)
            key = image_key(checkpoint.digest, sampler, seed, item.prompt, dtype, control, controlnet_digest)
            requests.append(ImageRequest(item.id, item.prompt, i, seed, key, item.control_image))
    return requests


@dataclass
class GenerationStats:
    requested: int = 0
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0


def _batches(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def sample(pipe: Any, requests: Sequence[ImageRequest], sampler: SamplerSpec) -> list[Any]:
    """Run the pipeline on one batch; each image gets its own CPU generator (device-independent noise)."""
    import torch

    kwargs: dict[str, Any] = dict(
        prompt=[r.prompt for r in requests],
        num_inference_steps=sampler.steps,
        guidance_scale=sampler.guidance_scale,
        height=sampler.height,
        width=sampler.width,
        generator=[torch.Generator("cpu").manual_seed(r.seed) for r in requests],
        output_type="pil",
    )
    if sampler.negative_prompt:
        kwargs["negative_prompt"] = [sampler.negative_prompt] * len(requests)
    if any(r.control_image for r in requests):
        from PIL import Image

        kwargs["image"] = [Image.open(r.control_image).convert("RGB") for r in requests]
    with torch.inference_mode():
        return list(pipe(**kwargs).images)


def generate(
    requests: Sequence[ImageRequest],
    store: Store,
    pipeline_factory: Any,
    sampler: SamplerSpec,
    progress: bool = True,
) -> GenerationStats:
    """Generate every request whose image is not in the store. ``pipeline_factory()`` is called
    only if something is missing, so a fully cached run never loads a model."""
    from tqdm.auto import tqdm

    stats = GenerationStats(requested=len(requests))
    seen: set[str] = set()
    missing = []
    for r in requests:
        if r.key in seen or store.has_image(r.key):
            continue
        seen.add(r.key)
        missing.append(r)
    stats.cached = len(requests) - len(missing)
    if not missing:
        return stats
    start = time.perf_counter()
    pipe = pipeline_factory()
    with tqdm(total=len(missing), desc="generate", unit="img", disable=not progress, leave=False) as bar:
        for batch in _batches(missing, max(1, sampler.batch_size)):
            for r, image in zip(batch, sample(pipe, batch, sampler)):
                store.save_image(r.key, image)
            stats.generated += len(batch)
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - start
    return stats
