"""Several rewards over the same images in one pass; the entry point for CRAFT's filter and the suites.

Images are decoded once per batch and preprocessed once per preprocessing family (``preprocessor.key``):
HPS gets its padded squares, ImageReward / AES / CLIP score share one centre-cropped tensor, PickScore
its processor's. Rewards that only implement ``Reward.score`` (plug-ins) are called with the images.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

from craft_bench.api import Reward
from craft_bench.errors import UserError
from craft_bench.rewards.common import batches, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from PIL import Image

ImageLike = Union["Image.Image", str, os.PathLike]
COLUMNS = ("item", "reward", "score")


def load_reward(
    name: str, source: str | None = None, device: str = "auto", dtype: str | None = None, **options: Any
) -> Reward:
    """A registered reward (``craft_bench.registry.rewards``) built with its ``load`` constructor."""
    from craft_bench.registry import rewards

    cls = rewards.get(name)
    return cls.load(source=source, device=resolve_device(device), dtype=dtype, **options)


def open_image(image: ImageLike) -> "Image.Image":
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    with Image.open(image) as im:
        im.load()
        return im.convert("RGB") if im.mode not in ("RGB",) else im.copy()


_SUB_OPTIONS = {
    "aes.clip": ("aes", "clip_source"),
    "pickscore.processor": ("pickscore", "processor"),
    "imagereward.tokenizer": ("imagereward", "tokenizer"),
    "hps.arch": ("hps", "arch"),
}


def parse_sources(pairs: list[str]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """`craft-bench score --source` pairs (``NAME=PATH``) -> ({reward: weights path}, {reward: {option: value}}); a
    NAME of ``_SUB_OPTIONS`` sets a reward's option instead of its weights."""
    sources: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--source expects NAME=PATH, got '{pair}'")
        name = name.strip().lower()
        if name in _SUB_OPTIONS:
            reward, option = _SUB_OPTIONS[name]
            options.setdefault(reward, {})[option] = path
        else:
            from craft_bench.registry import rewards

            sources[rewards.resolve_name(name)] = path
    return sources, options


@dataclass
class CompositeScorer:
    """Named rewards scored together; ``score`` returns a long DataFrame (item, reward, score)."""

    rewards: dict[str, Reward]
    batch_size: int = 16
    timings: dict[str, float] = field(default_factory=dict)  # seconds per reward (+ "preprocess", "decode")

    @classmethod
    def load(
        cls,
        names: Sequence[str] | str,
        sources: Mapping[str, str] | None = None,
        device: str = "auto",
        dtype: str | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        batch_size: int = 16,
    ) -> "CompositeScorer":
        """``sources`` / ``options`` are keyed by reward name (``options={"hps": {"version": "v2.0"}}``)."""
        from craft_bench.registry import rewards as registry

        if isinstance(names, str):
            names = [n for n in (s.strip() for s in names.split(",")) if n]
        sources, options = dict(sources or {}), dict(options or {})
        loaded: dict[str, Reward] = {}
        for name in names:
            key = registry.resolve_name(name)
            opts = dict(options.get(key, options.get(name, {})))
            loaded[key] = load_reward(key, sources.get(key, sources.get(name)), device=device, dtype=dtype, **opts)
        return cls(loaded, batch_size=batch_size)

    @classmethod
    def from_source_list(
        cls,
        names: Sequence[str],
        sources: str,
        device: str = "auto",
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> "CompositeScorer":
        """Rewards with weights given as one string, comma-separated `craft-bench score --source` pairs
        (``hps=/w/HPS_v2.1_compressed.pt,aes.clip=/w/ViT-L-14.pt``), as suites take them in a setting; unnamed
        rewards use their env var or hub default. Sub-options (``hps.arch``) are merged into ``options``."""
        paths, extra = parse_sources([p for p in (s.strip() for s in sources.split(",")) if p])
        merged = {k: dict(v) for k, v in (options or {}).items()}
        for name, opts in extra.items():
            merged.setdefault(name, {}).update(opts)
        return cls.load(list(names), sources=paths, device=device, options=merged)

    def score(
        self,
        images: Sequence[ImageLike],
        prompts: Sequence[str],
        items: Sequence[Any] | None = None,
    ) -> "pd.DataFrame":
        import pandas as pd
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        items = list(items) if items is not None else list(range(len(images)))
        families: dict[str, tuple[Any, list[str]]] = {}
        plain: list[str] = []
        for name, reward in self.rewards.items():
            pre = getattr(reward, "preprocessor", None)
            if pre is not None and hasattr(reward, "score_pixels"):
                families.setdefault(pre.key, (pre, []))[1].append(name)
            else:
                plain.append(name)
        scores: dict[str, list[torch.Tensor]] = {name: [] for name in self.rewards}
        for part in batches(len(images), self.batch_size):
            t = time.perf_counter()
            batch = [open_image(im) for im in images[part]]
            batch_prompts = list(prompts[part])
            self._tick("decode", t)
            for pre, names in families.values():
                t = time.perf_counter()
                pixels = pre(batch)
                self._tick("preprocess", t)
                for name in names:
                    t = time.perf_counter()
                    scores[name].append(self.rewards[name].score_pixels(pixels, batch_prompts))
                    self._tick(name, t)
            for name in plain:
                t = time.perf_counter()
                scores[name].append(self.rewards[name].score(batch, batch_prompts).float().cpu())
                self._tick(name, t)
        frames = []
        for name, parts in scores.items():
            values = torch.cat(parts).tolist() if parts else []
            frames.append(pd.DataFrame({"item": items, "reward": name, "score": values}))
        if not frames:
            return pd.DataFrame(columns=list(COLUMNS))
        return pd.concat(frames, ignore_index=True)

    def _tick(self, key: str, start: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start

    def wide(self, frame: "pd.DataFrame") -> "pd.DataFrame":
        """One row per item, one column per reward."""
        return frame.pivot(index="item", columns="reward", values="score")[list(self.rewards)]
