"""The interfaces plug-ins implement: Method, Suite, Reward, Detector, and the records they exchange.

A method contributes data preparation and a loss; it never writes a training loop. A suite contributes
prompts and scoring; it never samples images (``craft_bench.generate`` does). Rewards and detectors are
shared by both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

    from craft_bench.spec import ModelSpec, RunSpec
    from craft_bench.store import Store
    from craft_bench.world import World


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a suite. ``id`` is stable across versions of the prompt list (it seeds its images)."""

    id: str
    prompt: str
    n_images: int = 1
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    stratum: str = ""  # e.g. the GenEval task; --limit and the bootstrap keep strata balanced
    control_image: str | None = None  # path of a conditioning image (ControlNet suites)


@dataclass(frozen=True)
class MetricDef:
    """A metric that is a (stratified) mean of one per-image record column.

    value = mean over strata of (mean of ``column`` over the stratum's images), or, with
    ``per_prompt="all"`` / ``"any"``, the share of prompts whose images all / any have a true ``column``.
    Declaring metrics this way lets the core compute bootstrap CIs and paired tests for every suite.
    """

    name: str
    display_name: str
    column: str
    higher_is_better: bool = True
    stratify: bool = False  # mean of per-stratum means (GenEval's "overall")
    where_stratum: str | None = None  # restrict to one stratum (per-task metrics)
    per_prompt: str = (
        "mean"  # "mean" (over images) | "all" / "any" (a prompt counts if all / any of its images are true)
    )
    scale: float = 1.0  # e.g. 100 for HPS-style reporting
    where: tuple[tuple[str, Any], ...] = ()  # restrict to records whose columns equal these values (Parti's challenges)
    sign_test_null: float | None = None  # also report a two-sided sign test of per-prompt means against this value


@dataclass
class Checkpoint:
    """What a method hands to generation: the base model plus optional trained weights."""

    model: "ModelSpec"
    base_dir: str = ""  # local diffusers folder of the base model (where it lives here; not identity)
    adapter_dir: str | None = None  # trained weights on top: LoRA weights and/or component folders (unet/, vae/, ...)
    digest: str = ""  # identity of the weights: base digest, or base + trained weights
    train_info: dict[str, Any] = field(default_factory=dict)  # samples_used, steps, images_generated, ...
    train_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = self.model.digest


@dataclass
class RunContext:
    """What a plug-in may use during a run. ``world`` (``craft_bench.world``): what ``auto`` settings mean for the
    run's model (prompt sets, detector, rewards, candidate guidance, training preset), decided once by
    ``runner.resolve``; plug-ins read it instead of asking which model this is."""

    spec: "RunSpec"
    store: "Store"
    device: str
    dtype: str
    seed: int
    world: "World"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """A way of producing a model from a base model. Subclasses set ``name``, ``Config`` and ``prepare``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    trainable: ClassVar[bool] = False
    # The Config field `craft-bench sweep --budgets` sets (the training samples or pairs the method may use);
    # None: the method takes no training budget (vanilla, a published checkpoint).
    budget_field: ClassVar[str | None] = None
    # Roles the core asks about instead of naming methods. ``baseline``: the untouched base model, what every other
    # method is paired against (the Python API's default ``vs`` after a trained run, sweep deltas, the report's
    # baseline column; one registered method says so, built in: vanilla). ``reference``: sweep's default
    # ``--reference``, the method compute-to-match ratios are measured against (built in: craft).
    baseline: ClassVar[bool] = False
    reference: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def prepare(self, base: Checkpoint, ctx: RunContext) -> Checkpoint:
        """The checkpoint this method evaluates, from the base model. A method that fine-tunes subclasses
        ``craft_bench.train.method.TrainableMethod``, whose ``prepare`` trains through the shared trainer."""
        ...

    @classmethod
    def resolve_config(cls, config: Any) -> Any:
        """The config as a run's identity records it: a method whose settings name input files records their
        content here (e.g. a preference file's digest), so a changed file is another run. Default: unchanged."""
        return config

    def checkpoint_hash(self, base: Checkpoint, ctx: RunContext) -> str:
        """Identity of the weights this method trains from ``base``: base weights + method spec + seed."""
        from craft_bench.spec import digest

        return digest({"base": base.digest, "method": ctx.spec.method, "seed": ctx.seed, "dtype": ctx.dtype})


class Suite(ABC):
    """A benchmark: prompt items, per-image scoring, and metric declarations."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    headline: ClassVar[str] = "overall"
    # Record columns `craft-bench report` offers as filters of its image grids, with their display names
    # (e.g. GenEval {"stratum": "task"}; a Parti suite {"category": "category", "challenge": "challenge"}).
    facets: ClassVar[dict[str, str]] = {"stratum": "stratum"}

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def items(self, ctx: RunContext, prompts_path: Path | None = None) -> list[PromptItem]: ...

    @abstractmethod
    def metrics(self) -> list[MetricDef]: ...

    @abstractmethod
    def score(
        self, items: Sequence[PromptItem], images: Sequence["Image.Image"], ctx: RunContext
    ) -> list[dict[str, Any]]:
        """One record (dict of columns) per image; ``images[i]`` belongs to ``items[i]``."""
        ...

    def controlnet(self, ctx: RunContext) -> str | None:
        """Local folder of the ControlNet (diffusers ``save_pretrained`` layout) that generation conditions on the
        items' control images, or None (plain text-to-image). Called after ``items``; the weights' digest enters
        every image key, and the method's UNet or LoRA is loaded under it (a ControlNet plug-in)."""
        return None

    def write_run_files(
        self, run_dir: Path, items: Sequence[PromptItem], requests: Sequence[Any], store: "Store"
    ) -> None:
        """Extra files the suite keeps in the run folder (GenEval: its official evaluator's image layout).

        Called once the images exist and are scored, before results.json is written; ``requests`` are the
        run's ``generate.ImageRequest``s in item order."""

    def close(self) -> None:
        """Release models loaded for scoring."""


class PairedSuite(Suite):
    """A suite that judges each image against a baseline model's image of the same prompt and seed.

    The suite names its baseline (``baseline_ref``: a registered method, or a finished run folder whose method
    is re-prepared); the runner prepares it, generates its images with the run's sampler, seeds and dtype
    through ``craft_bench.generate`` and calls ``score_pairs``. The suite still never samples.
    """

    def baseline_ref(self) -> str:
        return str(getattr(self.config, "baseline"))

    @abstractmethod
    def score_pairs(
        self,
        items: Sequence[PromptItem],
        images: Sequence["Image.Image"],
        baseline_images: Sequence["Image.Image"],
        ctx: RunContext,
    ) -> list[dict[str, Any]]:
        """One record per pair; ``images[i]`` and ``baseline_images[i]`` share ``items[i]`` and their seed."""
        ...

    def score(
        self, items: Sequence[PromptItem], images: Sequence["Image.Image"], ctx: RunContext
    ) -> list[dict[str, Any]]:
        raise TypeError(f"suite '{self.name}' is paired: the runner calls score_pairs with the baseline's images")


class Reward(ABC):
    """A learned scorer of (image, prompt) pairs; loads its weights once, scores in batches.

    ``load(source, device, dtype)`` builds it from its default source (hub id or shipped file) or a
    local path; ``score`` returns a float32 CPU tensor of shape [N], higher = better unless
    ``higher_is_better`` is False.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def load(cls, source: str | None = None, device: str = "cpu", dtype: str | None = None) -> "Reward": ...

    @abstractmethod
    def score(self, images: Sequence["Image.Image"], prompts: Sequence[str]) -> "torch.Tensor": ...


@dataclass
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    mask: Any = None  # bool array HxW, or None
    color: str | None = None


class Detector(ABC):
    """A GenEval detection backend: per image, the objects it sees.

    ``load(device, **options)`` builds it (options: ``weights``, ``config``, ``color_weights``; a backend
    ignores what it does not use); ``preflight(**options)`` raises a UserError before any image is generated
    when the backend cannot run (package or weights missing). A backend may also implement
    ``classify_colors(image, detections, classname) -> list[str]`` (GenEval's CLIP colour classifier).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    def load(cls, device: str = "cpu", **options: Any) -> "Detector":
        return cls()

    @classmethod
    def preflight(cls, **options: Any) -> None:
        """Fail early, with one line naming what is missing and how to provide it."""

    @classmethod
    def class_names(cls) -> tuple[str, ...] | None:
        """The object classes it can detect (GenEval refuses a prompt asking for another), or None if not declared."""
        return None

    @abstractmethod
    def detect(self, images: Sequence["Image.Image"]) -> list[list[Detection]]: ...
