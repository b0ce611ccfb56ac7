"""The batch contract of craft_bench.generate: every pipeline call carries exactly ``batch_size`` images and the batch
size keys the image, so an image's bytes do not depend on which images share its batch, where it sits in it, or
whether its batch was short (a regenerated image, the last batch of a run).

Float results on CPUs depend on the shapes a kernel sees (on an AMD EPYC an image made alone and the same image
made in a batch of 2 differ by one level in some pixels), which is why shapes are fixed rather than trusted."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

PROMPTS = [
    "a red apple",
    "a blue lake",
    "an orange sunset",
    "a green forest",
    "a yellow lemon",
    "a purple flower",
    "a pink cake",
    "a white cloud",
]


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sdxl):
    from craft_bench.models import load_pipeline, resolve_model

    spec, sampler, path = resolve_model(str(tiny_sdxl))
    return load_pipeline(path, spec.family, "cpu", "float32", scheduler=sampler.scheduler), replace(sampler, steps=2)


def _requests():
    from craft_bench.generate import ImageRequest, derive_seed

    return [ImageRequest(f"p{i}", p, 0, derive_seed(0, f"p{i}", 0), f"k{i}") for i, p in enumerate(PROMPTS)]


@pytest.mark.parametrize("batch_size", [2, 3, 5])
def test_an_image_does_not_depend_on_the_rest_of_its_batch(tiny_pipe, batch_size):
    """The first prompt's image alone (a short batch), at every position among other prompts, and in the second call
    of a list longer than a batch: the same bytes each time."""
    from craft_bench.generate import sample_arrays

    pipe, sampler = tiny_pipe
    sampler = replace(sampler, batch_size=batch_size)
    reqs = _requests()
    target, others = reqs[0], reqs[1:]
    alone = sample_arrays(pipe, [target], sampler)[0]
    for pos in range(batch_size):
        neighbours = others[pos:] + others[:pos]  # other neighbours at each position
        batch = neighbours[:pos] + [target] + neighbours[pos : batch_size - 1]
        got = sample_arrays(pipe, batch, sampler)
        assert len(got) == batch_size
        assert np.array_equal(got[pos], alone), f"batch {batch_size}, position {pos}"
    longer = sample_arrays(pipe, others[:batch_size] + [target], sampler)  # the target starts the second (short) call
    assert len(longer) == batch_size + 1
    assert np.array_equal(longer[-1], alone)


def test_every_sampler_setting_keys_the_image(tiny_sdxl):
    """Another batch size is another computation (other shapes), as are another memory format, compilation or VAE
    decoding (other kernels): none of them reuses an image made under another."""
    from craft_bench.generate import image_key
    from craft_bench.models import resolve_model

    spec, sampler, _ = resolve_model(str(tiny_sdxl))
    sampler = replace(sampler, batch_size=8)
    variants = [replace(sampler, batch_size=b) for b in (1, 2, 4)] + [
        replace(sampler, channels_last=True),
        replace(sampler, compile=True),
        replace(sampler, vae_decode="sliced"),
        replace(sampler, vae_decode="tiled"),
    ]
    keys = {image_key(spec.digest, s, 7, "a red apple", "float32") for s in [sampler, *variants]}
    assert len(keys) == 1 + len(variants)
