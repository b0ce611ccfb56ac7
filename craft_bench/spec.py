"""Frozen run specifications. A spec's hash is its identity: same hash, same images, same numbers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from craft_bench.errors import UserError

SCHEMA_VERSION = 1


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte string every hash in craft-bench is taken of."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values. A dataclass field marked ``omit_default`` is left out while it has its default, so a
    setting added later does not change the hash (identity) of the specs that do not use it; one marked
    ``identity=False`` (how a run is watched, e.g. its training tracker) is always left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name))
            for f in fields(obj)
            if not (f.metadata.get("omit_default") and getattr(obj, f.name) == f.default)
            and f.metadata.get("identity", True)
        }
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


@dataclass(frozen=True)
class SamplerSpec:
    """How images are sampled for evaluation. Defaults come from the model preset."""

    steps: int = 30
    guidance_scale: float = 5.0
    height: int = 1024
    width: int = 1024
    scheduler: str = "default"
    negative_prompt: str = ""
    # Every setting is part of every image key (craft_bench.generate), these included: each pipeline call carries
    # exactly batch_size images (a short batch is filled up), so the batch size fixes the shapes the kernels see, and
    # the memory format, compilation and VAE decoding choose other kernels; each changes pixels by float rounding
    # (one level in some pixels), "tiled" decoding by more. Added later: out of the spec while at their default.
    batch_size: int = 8
    channels_last: bool = field(
        default=False,
        metadata={"omit_default": True, "help": "run the UNet in channels_last memory format (often faster on GPUs)"},
    )
    compile: bool = field(
        default=False,
        metadata={"omit_default": True, "help": "torch.compile the UNet (slow first batch, faster after)"},
    )
    vae_decode: str = field(
        default="full",
        metadata={
            "omit_default": True,
            "help": "full, sliced (one image at a time: less memory) or tiled (tiles: far less memory; pixels differ)",
        },
    )

    def __post_init__(self) -> None:
        """Refuse settings that cannot sample (the image size's fit to the model is checked by
        ``models.check_sampler``)."""
        import math

        def whole(name: str, low: int, example: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be a whole number >= {low}, not {v!r} (e.g. --set {name}={example})")

        whole("steps", 1, "20")
        whole("batch_size", 1, "8")
        whole("height", 8, "512")
        whole("width", 8, "512")
        g = self.guidance_scale
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
            raise ValueError(
                f"guidance_scale must be a finite number >= 0, not {g!r} (e.g. --set guidance_scale=5; 1 "
                "turns guidance off)"
            )
        if not isinstance(self.scheduler, str) or not self.scheduler:
            raise ValueError("scheduler must be a name (craft-bench ls -v lists them)")
        if self.vae_decode not in ("full", "sliced", "tiled"):
            raise ValueError(f"vae_decode must be full, sliced or tiled, not {self.vae_decode!r}")

    def key_fields(self) -> dict[str, Any]:
        """What an image key holds of the sampler: every setting, for each changes the computation (how the batch is
        shaped, which kernels run), and float results follow it. Settings at a default they were added with are
        left out, so they change no existing key."""
        return to_jsonable(self)


@dataclass(frozen=True)
class ModelSpec:
    """A base model: a preset name or a local diffusers folder, its family and its weights' digest."""

    name: str
    source: str
    family: str  # "sdxl" | "sd15"
    digest: str  # content digest of the weights (or hub revision); part of every image key


@dataclass(frozen=True)
class PluginSpec:
    """A method or suite: its name, version and its resolved config (sorted key/value pairs)."""

    name: str
    version: str
    config: tuple[tuple[str, Any], ...] = ()

    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)


@dataclass(frozen=True)
class RunSpec:
    model: ModelSpec
    method: PluginSpec
    suite: PluginSpec
    sampler: SamplerSpec
    seed: int = 0
    limit: int | None = None
    prompts: str | None = None  # digest of a --prompts file, not its path
    dtype: str = "float32"

    @property
    def hash(self) -> str:
        """The run's identity. The model counts by name, family and weights digest, not by the folder it was read
        from (like ``prompts``): the same run from another clone, machine or install path is the same run."""
        return digest(dataclasses.replace(self, model=dataclasses.replace(self.model, source="")))

    @property
    def short_hash(self) -> str:
        return self.hash[:8]


# --------------------------------------------------------------------------- config overrides


def config_to_pairs(cfg: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(to_jsonable(cfg).items())) if cfg is not None else ()


def parse_value(raw: str, annotation: Any, key: str) -> Any:
    """Parse a --set value as the dataclass field's declared type."""
    tp = annotation
    if isinstance(tp, str):
        tp = {"int": int, "float": float, "str": str, "bool": bool}.get(tp.split("|")[0].strip(), str)
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if raw.lower() in ("none", "null", ""):
            return None
        tp = args[0]
        origin = typing.get_origin(tp)
    try:
        if tp is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if origin in (tuple, list):
            inner = (typing.get_args(tp) or (str,))[0]
            inner = inner if inner in (int, float, str) else str
            items = [inner(v) for v in raw.split(",") if v != ""]
            return tuple(items) if origin is tuple else items
        return raw
    except ValueError:
        name = getattr(tp, "__name__", str(tp))
        raise UserError(f"--set {key}={raw}: expected a value of type {name}") from None


def apply_overrides(cfg: Any, overrides: dict[str, str], where: str, prefix: str = "") -> Any:
    """Return a copy of dataclass ``cfg`` with string overrides parsed by field type."""
    if not overrides:
        return cfg
    hints = typing.get_type_hints(type(cfg))
    values = {}
    for key, raw in overrides.items():
        if key not in hints:
            raise UserError(f"--set {key}: {where} has no setting '{key}'")
        values[key] = parse_value(raw, hints[key], key)
    try:
        return dataclasses.replace(cfg, **values)
    except (ValueError, TypeError) as exc:
        given = " ".join(f"{prefix}{k}={v}" for k, v in overrides.items())
        raise UserError(f"--set {given} ({where}): {exc}") from None


def parse_set_args(items: list[str]) -> list[tuple[str, str]]:
    """``["a=1", "method.lr=2e-5"]`` -> pairs; malformed items are a UserError."""
    pairs = []
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise UserError(
                f"--set expects key=value (for example --set steps=20 or --set method.lr=1e-5), got '{item}'"
            )
        pairs.append((key, value.strip()))
    return pairs


def field_help(cfg_type: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of a config dataclass, for `craft-bench ls --verbose` and docs."""
    out = []
    for f in fields(cfg_type):
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
            )
        )
        tname = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append((f.name, tname, default, f.metadata.get("help", "")))
    return out


def setting(default: Any, help: str, omit_default: bool = False, identity: bool = True, **kw: Any) -> Any:
    """A config field with help text (``x: int = setting(4, "candidates per prompt")``). ``omit_default``: a
    setting added after specs were published stays out of the spec (and its hash) while at its default.
    ``identity=False``: a setting that changes no result (where training curves are sent) is never in a spec."""
    meta: dict[str, Any] = {"help": help, "omit_default": True} if omit_default else {"help": help}
    if not identity:
        meta["identity"] = False
    return field(default=default, metadata=meta, **kw)
