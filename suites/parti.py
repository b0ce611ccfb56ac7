"""Parti-Prompts win rate: how often a judge reward prefers the method's image to a baseline's, prompt by prompt.

PartiPrompts (Yu et al. 2022, google-research/parti ``PartiPrompts.tsv``; commit in
``data/parti/SOURCE_COMMIT``) holds 1632 prompts, each with a Category (what it depicts: Animals,
Artifacts, ...) and a Challenge (what makes it hard: Basic, Quantity, Complex, ...). It is shipped with the
package and checked against its sha256 when read.

The suite is paired (``api.PairedSuite``): the runner generates each prompt's images with the method and with
the baseline (``suite.baseline``, vanilla by default) under the same sampler and seeds, and the judge reward
(HPS v2.1 by default; mini-clip in the mini world) scores both images of a pair against the prompt. A pair is
a win (1) when the method's image scores higher, a loss (0) when lower and a tie (1/2, half credit) when the
two scores are exactly equal -- as they are whenever the two images are identical, so the base model against
itself scores exactly 0.5.

Metrics: ``overall`` = mean win over pairs, with a bootstrap CI over prompts and a two-sided sign test
(prompts whose mean win is above / below 1/2; ties dropped) against "no preference"; the same win rate per
Category and per Challenge; the judge's mean score of each side and their difference.

``--prompts FILE`` takes a TSV with a Prompt column (Category and Challenge optional) or a plain list with one
prompt per line; prompts without a category or challenge form one group, ``all``.

In the mini world the prompt set is ``mini.prompts.parti_prompts``: Parti's challenges that the mini grammar
can express, categories by the first shape named.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from craft_bench.api import MetricDef, PairedSuite, PromptItem, RunContext
from craft_bench.errors import UserError
from craft_bench.spec import setting

PARTI_FILE = "PartiPrompts.tsv"
PARTI_SHA256 = "fab29e41bb512a169b56acab4cf2a41dcb675e285df2efcde6640c7dd3c440eb"
PARTI_CATEGORIES = (
    "Abstract",
    "Animals",
    "Artifacts",
    "Arts",
    "Food & Beverage",
    "Illustrations",
    "Indoor Scenes",
    "Outdoor Scenes",
    "People",
    "Produce & Plants",
    "Vehicles",
    "World Knowledge",
)
PARTI_CHALLENGES = (
    "Basic",
    "Complex",
    "Fine-grained Detail",
    "Imagination",
    "Linguistic Structures",
    "Perspective",
    "Properties & Positioning",
    "Quantity",
    "Simple Detail",
    "Style & Format",
    "Writing & Symbols",
)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def parti_path() -> Path:
    return Path(str(resources.files("craft_bench.suites") / "data" / "parti" / PARTI_FILE))


ONE_GROUP = "all"  # category and challenge of a prompt whose file does not give them


def read_parti(path: str | Path | None = None) -> list[dict[str, str]]:
    """Rows ``{"prompt", "category", "challenge"}`` of PartiPrompts.tsv (the shipped copy, sha256-checked), or of a
    user's file: a TSV (its first line has tabs) with a Prompt column, Category and Challenge optional, or a plain
    list with one prompt per line. What a file does not give is ``ONE_GROUP``: its prompts are reported as one group."""
    from craft_bench.store import verify_sha256

    shipped = path is None
    path = parti_path() if shipped else Path(path)
    if shipped:
        verify_sha256(path, PARTI_SHA256, "PartiPrompts.tsv", "reinstall craft-bench")
    try:
        text = path.read_text(encoding="utf-8").lstrip("\ufeff")
        header = text.split("\n", 1)[0].rstrip("\r")
        tsv = "\t" in header
        if tsv:
            rows = [
                r
                for r in csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
                if (r.get("Prompt") or "").strip()
            ]
        else:
            rows = [{"Prompt": line} for line in map(str.strip, text.splitlines()) if line]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read Parti prompts '{path}': {exc}") from None
    if tsv and "Prompt" not in header.split("\t"):
        raise UserError(
            f"{path}: a Parti prompt TSV needs a Prompt column (Category and Challenge optional); "
            "or give a plain list, one prompt per line"
        )
    if not rows:
        raise UserError(f"{path}: no prompts in it; give one prompt per line, or a TSV with a Prompt column")
    return [
        {
            "prompt": r["Prompt"].strip(),
            "category": (r.get("Category") or "").strip() or ONE_GROUP,
            "challenge": (r.get("Challenge") or "").strip() or ONE_GROUP,
        }
        for r in rows
    ]


def parti_lines(
    ctx: RunContext, which: str, prompts_path: Path | None, n_per_challenge: int, prompt_seed: int
) -> list[dict[str, str]]:
    """The prompt rows for ``which`` = auto (the world's set: mini on mini models, else the official file), official,
    mini."""
    if prompts_path is not None:
        return read_parti(prompts_path)
    if which == "auto":
        which = ctx.world.prompts
    if which == "mini":
        from craft_bench.mini.prompts import parti_prompts

        return parti_prompts(n_per_challenge, prompt_seed)
    return read_parti()


def parti_items(lines: Sequence[dict[str, str]], n_images: int) -> list[PromptItem]:
    """One item per row: stratum = Category (so --limit covers every category), id stable by row order."""
    return [
        PromptItem(
            id=f"parti-{k:04d}",
            prompt=row["prompt"],
            n_images=n_images,
            stratum=row["category"],
            metadata={"category": row["category"], "challenge": row["challenge"]},
        )
        for k, row in enumerate(lines)
    ]


def ordered_unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def judge_name(requested: str, ctx: RunContext) -> str:
    """``auto``: the world's judge (mini-clip on mini models, HPS v2.1 on real ones)."""
    return ctx.world.judge if requested == "auto" else requested


def win(score: float, baseline_score: float) -> float:
    """1 if the method's image scores higher, 0 if lower, 1/2 (half credit) on an exact tie."""
    return 1.0 if score > baseline_score else 0.0 if score < baseline_score else 0.5


class Parti(PairedSuite):
    facets = {"category": "category", "challenge": "challenge"}  # the report's image-grid filters
    name = "parti"
    version = "1"
    description = "Parti-Prompts win rate against a baseline, judged by a reward (HPS v2.1; mini-clip on mini)"
    headline = "overall"

    @dataclass(frozen=True)
    class Config:
        baseline: str = setting(
            "vanilla",
            "what the method is judged against: a method name, or a finished run folder (its method and config)",
        )
        judge: str = setting(
            "auto",
            "judge reward: auto (the model's world's: mini-clip on mini models, else hps), or a registered reward",
        )
        hps_version: str = setting("v2.1", "HPS checkpoint version when the judge is hps (v2.1 or v2.0)")
        sources: str = setting(
            "", "reward weights, comma-separated NAME=PATH as in `craft-bench score --source` (default: env vars / hub)"
        )
        images_per_prompt: int = setting(1, "images per prompt (one pair each)")
        prompts: str = setting(
            "auto",
            "prompt set: auto (the model's world's: mini on mini models, else official), official "
            "(PartiPrompts.tsv), mini",
        )
        n_per_challenge: int = setting(30, "mini prompt set: prompts per challenge (8 challenges)")
        prompt_seed: int = setting(2000, "mini prompt set: prompt seed")

        def __post_init__(self) -> None:
            if self.images_per_prompt < 1:
                raise ValueError("images_per_prompt must be >= 1")
            if self.prompts not in ("auto", "official", "mini"):
                raise ValueError("prompts must be auto, official or mini")
            if self.n_per_challenge < 1:
                raise ValueError("n_per_challenge must be >= 1")
            if not self.baseline:
                raise ValueError("baseline must name a method or a run folder")

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._scorer = None
        self._judge: str | None = None
        self._strata: tuple[tuple[str, ...], tuple[str, ...]] = (PARTI_CATEGORIES, PARTI_CHALLENGES)

    def items(self, ctx: RunContext, prompts_path: Path | None = None) -> list[PromptItem]:
        from craft_bench import registry

        registry.rewards.resolve_name(judge_name(self.config.judge, ctx))  # an unknown judge fails before generation
        c = self.config
        lines = parti_lines(ctx, c.prompts, prompts_path, c.n_per_challenge, c.prompt_seed)
        self._strata = (ordered_unique([r["category"] for r in lines]), ordered_unique([r["challenge"] for r in lines]))
        self._load(ctx)  # missing judge weights fail before any image is generated
        return parti_items(lines, c.images_per_prompt)

    def metrics(self) -> list[MetricDef]:
        """Breakdowns for the categories and challenges of the prompt set last listed (Parti's own by default)."""
        categories, challenges = self._strata
        out = [
            MetricDef("overall", "win rate vs baseline", "win", sign_test_null=0.5),
            MetricDef("score", "judge score, method", "score"),
            MetricDef("baseline_score", "judge score, baseline", "baseline_score"),
            MetricDef("score_delta", "judge score, method - baseline", "score_delta"),
        ]
        out += [MetricDef(f"category.{slug(c)}", f"win rate, {c}", "win", where_stratum=c) for c in categories]
        out += [
            MetricDef(f"challenge.{slug(c)}", f"win rate, {c}", "win", where=(("challenge", c),)) for c in challenges
        ]
        return out

    def _load(self, ctx: RunContext) -> Any:
        from craft_bench import registry
        from craft_bench.rewards.composite import CompositeScorer

        name = registry.rewards.resolve_name(judge_name(self.config.judge, ctx))
        if self._scorer is None or self._judge != name:
            options = {"hps": {"version": self.config.hps_version}}
            self._scorer = CompositeScorer.from_source_list([name], self.config.sources, ctx.device, options)
            self._judge = name
        return self._scorer

    def score_pairs(
        self, items: Sequence[PromptItem], images: Sequence[Any], baseline_images: Sequence[Any], ctx: RunContext
    ) -> list[dict[str, Any]]:
        if not len(items) == len(images) == len(baseline_images):
            raise ValueError(f"{len(items)} items, {len(images)} images, {len(baseline_images)} baseline images")
        scorer = self._load(ctx)
        prompts = [it.prompt for it in items]
        both = scorer.score(list(images) + list(baseline_images), prompts + prompts)
        values = both["score"].tolist()
        better = (
            1.0 if getattr(scorer.rewards[self._judge], "higher_is_better", True) else -1.0
        )  # a lower-is-better judge wins low
        n = len(items)
        records = []
        for item, s, b in zip(items, values[:n], values[n:]):
            records.append(
                {
                    "score": s,
                    "baseline_score": b,
                    "score_delta": s - b,
                    "win": win(better * s, better * b),
                    "category": item.metadata["category"],
                    "challenge": item.metadata["challenge"],
                    "judge": self._judge,
                }
            )
        return records

    def close(self) -> None:
        self._scorer = None
