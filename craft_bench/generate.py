"""The one place that samples images for evaluation: batched, per-image seeded, content-addressed.

Image ``i`` of prompt item ``p`` is seeded by ``derive_seed(run_seed, p.id, i)``, so adding prompts or
changing the batch size never changes another image's initial noise. Its cache key covers everything
that changes its pixels (``image_key``), so a cache hit is always the right image and costs nothing.

Batch composition: float results on a CPU (and a GPU) depend on the shapes a kernel sees, so an image made in a
batch of 2 and the same image made alone differ by a rounding step in some pixels. Every pipeline call therefore
carries exactly ``sampler.batch_size`` images (a short batch is filled up with copies of its first request, whose
images are dropped), and the batch size is part of the key. With the shapes fixed, an image does not depend on
which images share its batch or where it sits in it (``tests/test_generate_batches.py`` checks this at several
batch sizes and compositions): the same key gives the same bytes on the same machine, whichever run made it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from craft_bench.api import Checkpoint, PromptItem
from craft_bench.errors import UserError
from craft_bench.spec import SamplerSpec, digest
from craft_bench.store import Store, file_digest

# Bump when a change to this module changes pixels for the same inputs; it is part of every image key.
# 2: short batches are filled up to the batch size, and the batch size keys the image.
GENERATION_VERSION = "2"


def derive_seed(run_seed: int, item_id: str, index: int) -> int:
    """A 63-bit seed for image ``index`` of item ``item_id``: independent of every other image."""
    h = hashlib.sha256(f"{run_seed}\0{item_id}\0{index}".encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)


def image_key(
    checkpoint_digest: str,
    sampler: SamplerSpec,
    seed: int,
    prompt: str,
    dtype: str,
    control_digest: str | None = None,
    controlnet_digest: str | None = None,
) -> str:
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


def plan(
    items: Sequence[PromptItem],
    checkpoint: Checkpoint,
    sampler: SamplerSpec,
    run_seed: int,
    dtype: str,
    controlnet: str | Path | None = None,
) -> list[ImageRequest]:
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
    """PIL images of one batch (``sample_arrays``)."""
    from PIL import Image

    return [Image.fromarray(a) for a in sample_arrays(pipe, requests, sampler)]


def sample_arrays(
    pipe: Any, requests: Sequence[ImageRequest], sampler: SamplerSpec, latents_out: list[Any] | None = None
) -> list[Any]:
    """Run the pipeline on ``requests`` in calls of exactly ``sampler.batch_size`` images (the module's batch
    contract); each image gets its own CPU generator (device-independent noise).

    Returns one uint8 HxWx3 array per image, rounded as diffusers' own ``numpy_to_pil`` rounds (so the PNG bytes
    are those of ``output_type="pil"``). An image with a NaN or infinite pixel (e.g. a float16 overflow) is refused
    with a one-line error before anything is stored: a broken image must never be cached as a result.
    ``latents_out``: a list that receives the sampler's final latents of each image (the denoised latents the VAE
    decodes, in the UNet's scaled latent space, float32 CPU [C, h, w]), read through the pipeline's step callback so
    the pixels are computed exactly as without it."""
    size = max(1, sampler.batch_size)
    out: list[Any] = []
    for start in range(0, len(requests), size):
        batch = list(requests[start : start + size])
        latents: list[Any] | None = [] if latents_out is not None else None
        out += _sample_full_batch(pipe, batch + [batch[0]] * (size - len(batch)), sampler, latents)[: len(batch)]
        if latents_out is not None:
            latents_out.extend(latents[: len(batch)])
    return out


def _sample_full_batch(
    pipe: Any, requests: Sequence[ImageRequest], sampler: SamplerSpec, latents_out: list[Any] | None = None
) -> list[Any]:
    import numpy as np
    import torch

    kwargs: dict[str, Any] = dict(
        prompt=[r.prompt for r in requests],
        num_inference_steps=sampler.steps,
        guidance_scale=sampler.guidance_scale,
        height=sampler.height,
        width=sampler.width,
        generator=[torch.Generator("cpu").manual_seed(r.seed) for r in requests],
        output_type="np",
    )
    if sampler.negative_prompt:
        kwargs["negative_prompt"] = [sampler.negative_prompt] * len(requests)
    if any(r.control_image for r in requests):
        from PIL import Image

        kwargs["image"] = [Image.open(r.control_image).convert("RGB") for r in requests]
    final: dict[str, Any] = {}
    if latents_out is not None:

        def keep(pipe_: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            final["latents"] = tensors["latents"]  # the last call holds the latents the VAE decodes
            return tensors

        kwargs.update(callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"])
    with torch.inference_mode():
        images = np.asarray(pipe(**kwargs).images)
    if latents_out is not None:
        latents_out.extend(final["latents"].float().cpu().clone().unbind(0))
    out = []
    for r, image in zip(requests, images):
        if not np.isfinite(image).all():
            raise UserError(
                f"the model produced NaN or infinite pixels for prompt '{r.prompt[:60]}' (seed {r.seed}); nothing "
                "was cached. With float16 try --dtype bfloat16 or --dtype float32"
            )
        out.append((image * 255).round().astype("uint8"))
    return out


class ImageFeed:
    """Which images exist, for a consumer (the scorer) that runs while they are being made.

    ``mark(keys)`` is called as images are stored; ``wait(keys)`` blocks until all of them exist. A consumer that
    finds a stored image unreadable calls ``redo(requests)``: in the background, the generating thread makes
    them again (``take_redo``); without a producer (``sync``) they are made on the spot by ``regenerate``."""

    def __init__(self, ready: Iterable[str] = (), regenerate: Any = None) -> None:
        import threading

        self._cond = threading.Condition()
        self._ready: set[str] = set(ready)
        self._redo: list[ImageRequest] = []
        self._closed: BaseException | None = None
        self.regenerate = regenerate  # sync mode: a callable(requests) that makes them now

    def mark(self, keys: Iterable[str]) -> None:
        with self._cond:
            self._ready.update(keys)
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """No more images will come (``error``: the producer failed); waiting consumers stop."""
        with self._cond:
            self._closed = error or RuntimeError("image generation stopped")
            self._cond.notify_all()

    def wait(self, keys: Sequence[str]) -> None:
        if self.regenerate is not None:
            return  # sync mode: nothing is being made beside the consumer (every process's images are stored)
        with self._cond:
            while not self._ready.issuperset(keys):
                if self._closed is not None and not self._redo:
                    raise self._closed
                self._cond.wait(0.5)

    def redo(self, requests: Sequence[ImageRequest]) -> None:
        if self.regenerate is not None:
            self.regenerate(list(requests))
            return
        with self._cond:
            self._ready.difference_update(r.key for r in requests)
            self._redo.extend(requests)
            self._cond.notify_all()
        self.wait([r.key for r in requests])

    def take_redo(self, timeout: float) -> list[ImageRequest]:
        with self._cond:
            if not self._redo:
                self._cond.wait(timeout)
            out, self._redo = self._redo, []
            return out


def generate(
    requests: Sequence[ImageRequest],
    store: Store,
    pipeline_factory: Any,
    sampler: SamplerSpec,
    progress: bool = True,
    shard: Any = None,
    on_saved: Any = None,
    keep_latents: bool = False,
) -> GenerationStats:
    """Generate every request whose image is not in the store. ``pipeline_factory()`` is called
    only if something is missing, so a fully cached run never loads a model.

    PNG encoding and writing run in a background thread while the next batch denoises; ``on_saved(keys)`` is
    called (from that thread) as images land. With ``shard`` (``craft_bench.parallel.Shard``, several processes)
    every process takes every N-th batch of the same list of missing images; the batches are those one process
    would make, so the images are the same. ``keep_latents``: also store each image's sampled latents
    (``Store.latent_path``; an image whose latents are missing is made again)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm.auto import tqdm

    stats = GenerationStats(requested=len(requests))
    seen: set[str] = set()
    missing = []
    for r in requests:
        if r.key in seen or (store.has_image(r.key) and (not keep_latents or store.latent_path(r.key).is_file())):
            continue
        seen.add(r.key)
        missing.append(r)
    stats.cached = len(requests) - len(missing)
    batches = list(_batches(missing, max(1, sampler.batch_size)))
    if shard is not None:
        shard.barrier()  # every process has listed the missing images before any is written
        batches = shard.mine(batches)
    if not batches:
        return stats
    start = time.perf_counter()
    pipe = pipeline_factory()

    def write(batch: Sequence[ImageRequest], arrays: list[Any], latents: list[Any]) -> None:
        from PIL import Image

        for i, (r, array) in enumerate(zip(batch, arrays)):
            if latents:  # the latents first: an image counts as present only once its latents are stored too
                store.save_latents(r.key, latents[i])
            store.save_image(r.key, Image.fromarray(array))
        if on_saved is not None:
            on_saved([r.key for r in batch])

    pending: list[Future] = []
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="png") as writer,
        tqdm(total=sum(map(len, batches)), desc="generate", unit="img", disable=not progress, leave=False) as bar,
    ):
        try:
            for batch in batches:
                latents: list[Any] = []
                arrays = sample_arrays(pipe, batch, sampler, latents if keep_latents else None)
                while len(pending) >= 2:  # at most two batches wait for their PNGs: bounded memory
                    pending.pop(0).result()
                pending.append(writer.submit(write, batch, arrays, latents))
                stats.generated += len(batch)
                bar.update(len(batch))
            for f in pending:
                f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    stats.seconds = time.perf_counter() - start
    return stats
