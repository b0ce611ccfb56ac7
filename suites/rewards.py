"""Reward benchmarks: mean reward scores with CIs over a prompt set, HPS v2 benchmark style.

Rewards (``suite.rewards``, any registered ones, scored together by ``rewards.composite.CompositeScorer``):
the model's world's by default (``craft_bench.world``): HPS v2.1, PickScore, LAION aesthetic, ImageReward and CLIP
score on real models; mini-clip and mini-aes on mini ones. Prompt sets (``suite.prompts``; ``auto``: ``mini`` in the
mini world, ``hpdv2`` elsewhere):

* ``hpdv2`` -- the HPS v2 benchmark prompts (HPDv2, Wu et al. 2023): 800 each of anime, concept-art,
  paintings and photo, the files ``benchmark/<style>.json`` of the hub dataset ``zhwang/HPDv2`` that
  ``hpsv2.benchmark_prompts`` downloads (tgxs002/HPSv2 ``hpsv2/utils.py: download_benchmark_prompts``). They
  are not shipped: give the folder (``suite.hpdv2=DIR`` or ``$CRAFT_BENCH_HPDV2``), a JSON file of
  ``{style: [prompts]}`` (``--prompts``), or let the hub fetch them where it is reachable.
* ``parti`` -- PartiPrompts (shipped; strata = Category), or for mini-world models the mini Parti-style set of
  the ``parti`` suite's defaults (so the two suites share images).
* ``mini`` -- the mini world's GenEval-format prompts (strata = task); item ids equal GenEval-mini's, so the
  images are shared with a GenEval run of the same model, sampler and seed.

Alongside each reward's mean, HPS follows HPSv2's own reporting convention (``hpsv2/evaluation.py:
evaluate_benchmark``): score = 100 x cosine(image, text), the mean per style and the "Average" over every
image (HPSv2 prints a style's mean of 80-image chunk means, equal to the plain mean for 800 prompts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from craft_bench.api import MetricDef, PromptItem, RunContext, Suite
from craft_bench.errors import UserError
from craft_bench.spec import setting
from craft_bench.store import trust_on_first_use
from craft_bench.suites.parti import Parti, ordered_unique, parti_items, parti_lines, read_parti, slug
from craft_bench.world import REAL_REWARDS

HPDV2_STYLES = ("anime", "concept-art", "paintings", "photo")
HPDV2_REPO = "zhwang/HPDv2"  # a hub *dataset*; files benchmark/<style>.json
HPDV2_ENV = "CRAFT_BENCH_HPDV2"
HPDV2_PER_STYLE = 800  # the benchmark's 3200 prompts, 800 per style (HPDv2's dataset card)
DISPLAY = {
    "hps": "HPS",
    "pickscore": "PickScore",
    "aes": "LAION aesthetic",
    "imagereward": "ImageReward",
    "clip": "CLIP score",
}


def _check_styles(data: Any, where: str) -> dict[str, list[str]]:
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in data.values())
    ):
        raise UserError(f"{where}: expected {{style: [prompt, ...]}} (what hpsv2.benchmark_prompts('all') returns)")
    return {str(k): list(v) for k, v in data.items()}


def _hpdv2_hub() -> dict[str, list[str]]:
    from craft_bench.rewards.common import hub_reachable

    out = {}
    for style in HPDV2_STYLES:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(
                HPDV2_REPO, f"benchmark/{style}.json", repo_type="dataset", local_files_only=not hub_reachable()
            )
        except Exception as exc:  # offline, no cache: one line for the user
            raise UserError(
                f"rewards: cannot get HPDv2 'benchmark/{style}.json' from hub dataset '{HPDV2_REPO}' "
                f"({type(exc).__name__}; offline?); "
                f"download the four benchmark/<style>.json files and pass --set suite.hpdv2=DIR or set {HPDV2_ENV}=DIR"
            ) from None
        # No published digest of these files could be pinned here (no network); the first fetch's sha256 is pinned
        # instead, and the content must be HPDv2's benchmark shape (800 prompts per style).
        trust_on_first_use(f"hpdv2:{HPDV2_REPO}/benchmark/{style}.json", path)
        out[style] = json.loads(Path(path).read_text())
        if not (
            isinstance(out[style], list)
            and len(out[style]) == HPDV2_PER_STYLE
            and all(isinstance(p, str) for p in out[style])
        ):
            raise UserError(
                f"HPDv2 'benchmark/{style}.json' from '{HPDV2_REPO}' is not a list of {HPDV2_PER_STYLE} prompts; "
                f"check the download (or give the files: --set suite.hpdv2=DIR)"
            )
    return out


def read_hpdv2(source: str | Path | None = None) -> dict[str, list[str]]:
    """{style: prompts} of the HPDv2 benchmark: from ``source`` (a folder holding ``<style>.json`` or
    ``benchmark/<style>.json``, or a JSON file ``{style: [...]}``), else ``$CRAFT_BENCH_HPDV2``, else the hub."""
    value = str(source) if source else os.environ.get(HPDV2_ENV, "")
    if not value:
        return _check_styles(_hpdv2_hub(), f"hub dataset {HPDV2_REPO}")
    path = Path(value).expanduser()
    if path.is_file():
        try:
            return _check_styles(json.loads(path.read_text()), str(path))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read HPDv2 prompts '{path}': {exc}") from None
    folder = path / "benchmark" if (path / "benchmark" / f"{HPDV2_STYLES[0]}.json").is_file() else path
    missing = [s for s in HPDV2_STYLES if not (folder / f"{s}.json").is_file()]
    if missing:
        raise UserError(
            f"HPDv2 prompts: '{path}' has no {', '.join(m + '.json' for m in missing)}; give the folder holding "
            f"HPDv2's benchmark/<style>.json files (--set suite.hpdv2=DIR or {HPDV2_ENV}=DIR)"
        )
    out = {}
    for style in HPDV2_STYLES:
        try:
            out[style] = json.loads((folder / f"{style}.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read HPDv2 prompts '{folder / (style + '.json')}': {exc}") from None
    return _check_styles(out, str(folder))


def reward_names(text: str, ctx: RunContext) -> tuple[str, ...]:
    """A suite's ``rewards`` setting as registered names: ``auto`` = the world's (mini-clip and mini-aes on mini models;
    HPS, PickScore, AES, ImageReward and CLIP score on real ones); unknown names fail here, before any image is
    generated."""
    from craft_bench import registry

    given = ctx.world.rewards if text == "auto" else text.split(",")
    names = tuple(registry.rewards.resolve_name(n.strip()) for n in given if n.strip())
    if not names:
        raise UserError("--set suite.rewards: name at least one reward (craft-bench ls rewards)")
    return names


def reward_display(name: str, hps_version: str = "v2.1") -> str:
    return f"HPS {hps_version}" if name == "hps" else DISPLAY.get(name, name)


def reward_columns(
    scorer: Any, names: Sequence[str], images: Sequence[Any], prompts: Sequence[str]
) -> list[dict[str, float]]:
    """One dict {reward: score} per image, from a ``CompositeScorer`` that loads ``names``."""
    wide = scorer.wide(scorer.score(list(images), list(prompts)))
    return [{name: float(wide.loc[i, name]) for name in names} for i in range(len(images))]


def style_items(styles: dict[str, list[str]], n_images: int) -> list[PromptItem]:
    """Item ``<style>-<index>``: the index is the prompt's position in its style's list (HPSv2 names images so)."""
    return [
        PromptItem(id=f"{style}-{k:04d}", prompt=p, n_images=n_images, stratum=style, metadata={"style": style})
        for style, prompts in styles.items()
        for k, p in enumerate(prompts)
    ]


class RewardBench(Suite):
    name = "rewards"
    version = "1"
    description = "reward benchmarks: HPS v2.1, PickScore, AES, ImageReward, CLIP score means (HPDv2 / Parti prompts)"
    headline = "overall"

    @dataclass(frozen=True)
    class Config:
        rewards: str = setting(
            "auto",
            "comma-separated rewards; the first is the headline (auto: the model's world's: "
            f"mini-clip,mini-aes on mini models, else {','.join(REAL_REWARDS)})",
        )
        prompts: str = setting(
            "auto", "prompt set: auto (the model's world's: mini on mini models, else hpdv2), hpdv2, parti, mini"
        )
        hpdv2: str = setting(
            "",
            f"HPDv2 benchmark prompts: folder of <style>.json or a {{style: [...]}} JSON file (default "
            f"${HPDV2_ENV}, else hub)",
        )
        hps_version: str = setting("v2.1", "HPS checkpoint version (v2.1 or v2.0)")
        sources: str = setting(
            "", "reward weights, comma-separated NAME=PATH as in `craft-bench score --source` (default: env vars / hub)"
        )
        images_per_prompt: int = setting(1, "images per prompt (HPSv2's benchmark: 1)")
        n_per_task: int = setting(40, "mini prompt set: prompts per GenEval task")
        prompt_seed: int = setting(
            1000, "mini prompt set: prompt seed (1000 = GenEval-mini's, whose images are then shared)"
        )

        def __post_init__(self) -> None:
            if self.images_per_prompt < 1:
                raise ValueError("images_per_prompt must be >= 1")
            if self.prompts not in ("auto", "hpdv2", "parti", "mini"):
                raise ValueError("prompts must be auto, hpdv2, parti or mini")
            if self.n_per_task < 1:
                raise ValueError("n_per_task must be >= 1")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._scorer = None
        self._names: tuple[str, ...] = REAL_REWARDS
        self._strata: tuple[str, ...] = HPDV2_STYLES

    def reward_names(self, ctx: RunContext) -> tuple[str, ...]:
        return reward_names(self.config.rewards, ctx)

    def items(self, ctx: RunContext, prompts_path: Path | None = None) -> list[PromptItem]:
        self._names = self.reward_names(ctx)  # unknown rewards fail before any image is generated
        c = self.config
        which = c.prompts
        if which == "auto":  # the world's set; HPDv2 is this suite's official one
            which = "hpdv2" if ctx.world.prompts == "official" else ctx.world.prompts
        if prompts_path is not None:
            if prompts_path.suffix == ".tsv":
                items = parti_items(read_parti(prompts_path), c.images_per_prompt)
            else:
                items = style_items(read_hpdv2(prompts_path), c.images_per_prompt)
        elif which == "hpdv2":
            items = style_items(read_hpdv2(c.hpdv2 or None), c.images_per_prompt)
        elif which == "parti":  # the parti suite's own set (on mini: its defaults), so the two share images
            pc = Parti.Config()
            items = parti_items(parti_lines(ctx, "auto", None, pc.n_per_challenge, pc.prompt_seed), c.images_per_prompt)
        else:
            from craft_bench.mini.prompts import geneval_prompts

            items, seen = [], {}
            for line in geneval_prompts(c.n_per_task, c.prompt_seed):
                k = seen[line["tag"]] = seen.get(line["tag"], -1) + 1
                items.append(
                    PromptItem(
                        id=f"{line['tag']}-{k:04d}",
                        prompt=line["prompt"],
                        n_images=c.images_per_prompt,
                        stratum=line["tag"],
                        metadata={"tag": line["tag"]},
                    )
                )
        self._strata = ordered_unique([it.stratum for it in items])
        self._load(ctx)  # missing weights fail before any image is generated
        return items

    def _display(self, name: str) -> str:
        return reward_display(name, self.config.hps_version)

    def metrics(self) -> list[MetricDef]:
        """Per reward: mean and per-stratum means; HPS also x100 per stratum and on average (HPSv2's table)."""
        from craft_bench import registry

        better = {n: bool(getattr(registry.rewards.get(n), "higher_is_better", True)) for n in self._names}
        first = self._names[0]
        out = [MetricDef("overall", f"overall: {self._display(first)} mean", first, higher_is_better=better[first])]
        for name in self._names:
            out.append(MetricDef(name, f"{self._display(name)} mean", name, higher_is_better=better[name]))
            if name == "hps":
                out += [
                    MetricDef(f"hps_x100.{slug(s)}", f"HPS x100, {s}", "hps", where_stratum=s, scale=100.0)
                    for s in self._strata
                ]
                out.append(MetricDef("hps_x100.average", "HPS x100, average", "hps", scale=100.0))
            else:
                out += [
                    MetricDef(
                        f"{name}.{slug(s)}",
                        f"{self._display(name)}, {s}",
                        name,
                        where_stratum=s,
                        higher_is_better=better[name],
                    )
                    for s in self._strata
                ]
        return out

    def score(self, items: Sequence[PromptItem], images: Sequence[Any], ctx: RunContext) -> list[dict[str, Any]]:
        if len(items) != len(images):
            raise ValueError(f"{len(items)} items but {len(images)} images")
        return reward_columns(self._load(ctx), self._names, images, [it.prompt for it in items])

    def _load(self, ctx: RunContext) -> Any:
        if self._scorer is None:
            from craft_bench.rewards.composite import CompositeScorer

            self._scorer = CompositeScorer.from_source_list(
                self._names, self.config.sources, ctx.device, {"hps": {"version": self.config.hps_version}}
            )
        return self._scorer

    def close(self) -> None:
        self._scorer = None
