"""What every reward shares: where its weights come from, which device and precision it runs in.

A source is resolved in one order everywhere: the explicit ``source`` argument, then the reward's
environment variable (``CRAFT_BENCH_HPS`` ...), then the default hub id. A local path is used as is;
anything else is fetched from the Hugging Face hub, and when that fails (offline, no cache) the user
gets one line naming the file and the two ways to provide it.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from craft_bench.errors import UserError
from craft_bench.models import resolve_device  # noqa: F401  (re-exported: rewards resolve devices here)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "32": "float32",
    "full": "float32",
    "float16": "float16",
    "fp16": "float16",
    "16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


@dataclass(frozen=True)
class WeightSource:
    """Where a reward's weights come from: a local path, or a hub repository (+ file)."""

    reward: str  # registered name, used in messages (``--source hps=PATH``)
    env: str  # environment variable that overrides the default
    value: str  # local path or hub repo id
    local: bool
    option: str = ""  # how a caller other than `craft-bench score` takes the path (``--set suite.color_weights=PATH``)

    def hint(self) -> str:
        how = self.option or f"--source {self.reward}=PATH (Python: source=PATH)"
        return f"pass {how} or set {self.env}=PATH"


def resolve_source(
    reward: str, env: str, source: str | os.PathLike | None, default: str, option: str = ""
) -> WeightSource:
    """The explicit source, else ``$env``, else ``default``; local when the path exists."""
    value = os.fspath(source) if source else os.environ.get(env) or default
    path = Path(value).expanduser()
    if path.exists():
        return WeightSource(reward, env, str(path), True, option)
    if not _HUB_ID.match(value):
        origin = "argument" if source else f"${env}" if os.environ.get(env) else "default"
        raise UserError(
            f"{reward}: weights not found at '{value}' (from {origin}); "
            f"{WeightSource(reward, env, value, True, option).hint()}"
        )
    return WeightSource(reward, env, value, False, option)


def hub_file(src: WeightSource, filename: str, repo: str | None = None) -> str:
    """Local path of ``filename`` from the hub repo ``repo`` (default ``src.value``), or a UserError."""
    repo = repo or src.value
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo, filename, local_files_only=not hub_reachable())
    except Exception as exc:  # offline, missing cache, unknown repo: all end the same way for the user
        raise UserError(
            f"{src.reward}: cannot get '{filename}' from hub '{repo}' ({type(exc).__name__}; offline?); "
            f"download it and {src.hint()}"
        ) from None


_REACHABLE: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers at all (checked once per process), so an offline machine falls back to the
    local cache at once instead of retrying each file for a minute. ``HF_HUB_OFFLINE=1`` skips the check."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _REACHABLE:
        import socket
        from urllib.parse import urlparse

        url = urlparse(endpoint)
        try:
            socket.create_connection(
                (url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
            ).close()
            _REACHABLE[endpoint] = True
        except OSError:
            _REACHABLE[endpoint] = False
    return _REACHABLE[endpoint]


def pretrained_error(src: WeightSource, what: str, exc: Exception) -> UserError:
    """The one-line error for a failed ``from_pretrained(hub id)``."""
    return UserError(
        f"{src.reward}: cannot load {what} '{src.value}' ({type(exc).__name__}; offline?); "
        f"download the folder and {src.hint()}"
    )


def load_pretrained(src: WeightSource, model_cls: Any, processor_cls: Any, what: str) -> tuple[Any, Any]:
    """A transformers model and its processor by ``from_pretrained`` from the source's folder or hub id (offline:
    the local cache only), or a one-line error naming the source and how to provide it."""
    offline = {} if src.local else {"local_files_only": not hub_reachable()}
    try:
        return model_cls.from_pretrained(src.value, **offline), processor_cls.from_pretrained(src.value, **offline)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{src.reward}: cannot load {what} from '{src.value}' ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120]}); {src.hint()}"
        ) from None


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint from ``.safetensors`` or a pickle loaded with ``weights_only=True`` (never arbitrary code)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"cannot read checkpoint '{path}' as weights ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None


def unwrap_state_dict(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """Training checkpoints nest the weights under 'state_dict' (and DDP prefixes 'module.')."""
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(sd, Mapping):
        raise UserError("checkpoint holds no state dict")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def resolve_dtype(dtype: str | None, device: str, gpu_default: str = "float32") -> "Any":
    """``None`` means the official scorer's precision: ``gpu_default`` on CUDA, float32 elsewhere."""
    import torch

    if dtype is None:
        name = gpu_default if device.startswith("cuda") else "float32"
    else:
        name = _DTYPES.get(str(dtype).lower().replace("torch.", ""))
        if name is None:
            raise UserError(f"unknown dtype '{dtype}' (use float32, float16 or bfloat16)")
    return getattr(torch, name)


@contextlib.contextmanager
def inference(device: str, autocast_dtype: "Any" = None) -> Iterator[None]:
    """no_grad, plus autocast when the official scorer runs under autocast (HPS on GPU)."""
    import torch

    with torch.inference_mode():
        if autocast_dtype is not None and autocast_dtype != torch.float32:
            with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype):
                yield
        else:
            yield


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + size))


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "orthogonal_",
)


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Build a model without random initialisation: every parameter is overwritten by a strict load.

    A ViT-H-14 spends longer initialising its 1B random weights than loading the real ones.
    """
    import torch.nn.init as init

    saved = {name: getattr(init, name) for name in _INIT_FUNCTIONS if hasattr(init, name)}
    try:
        for name in saved:
            setattr(init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def load_strict(model: "Any", state_dict: Mapping[str, Any], what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error that names a few mismatched keys."""
    missing, unexpected = _mismatch(model, state_dict)
    if missing or unexpected:
        raise UserError(
            f"{what}: checkpoint does not match the architecture "
            f"(missing {len(missing)}: {missing[:3]}, unexpected {len(unexpected)}: {unexpected[:3]})"
        )
    # assign=True adopts the loaded tensors instead of copying into the (never initialised, so never
    # resident) parameters: peak memory is one copy of the weights, not two. Cast to the model's dtypes
    # first, as a copying load would (HPS "compressed" checkpoints may hold fp16 tensors).
    own = model.state_dict()
    state_dict = {k: v.to(own[k].dtype) if v.dtype != own[k].dtype else v for k, v in state_dict.items()}
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        raise UserError(
            f"{what}: checkpoint does not match the architecture ({str(exc).splitlines()[-1].strip()[:200]})"
        ) from None


def _mismatch(model: "Any", state_dict: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    given = set(state_dict)
    return sorted(expected - given), sorted(given - expected)
