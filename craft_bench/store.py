"""The results root on disk: content-addressed images, checkpoints, run folders, leaderboards.

Every write is atomic (a temp file in the same folder, then ``os.replace``), so a kill at any moment
leaves either the old file or the new one. Temp files carry the writer's pid; ones whose writer is dead
are removed when a store is opened. Cross-process locks use ``fcntl.flock`` on files under ``locks/``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

from craft_bench.errors import UserError

DEFAULT_ROOT_ENV = "CRAFT_BENCH_RESULTS"
_TMP_RE = re.compile(r"^\..+\.(\d+)\.tmp$")


def default_root() -> Path:
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "results"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class Store:
    """A results root. Layout (contract, see docs/architecture.md)::

        images/<k[:2]>/<k>.png      checkpoints/<hash>/      runs/<suite>/<method>__<model>__<hash8>/
        leaderboard/<suite>.{md,csv,json}   baselines/   locks/
        controls/<d[:2]>/<d>.png    (condition images of ControlNet suites; d = sha256 of the PNG bytes)
    """

    def __init__(self, root: Path | str | None = None, create: bool = True) -> None:
        self.root = Path(root) if root is not None else default_root()
        if create:
            self._check_writable()
            self.clean_stale_temp_files()

    def _check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe.{os.getpid()}.tmp"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(
                f"results folder '{self.root}' is not writable ({exc.strerror or exc}); pass --out DIR with a writable folder"
            ) from None

    # ------------------------------------------------------------------ paths
    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def leaderboard_dir(self) -> Path:
        return self.root / "leaderboard"

    @property
    def controls_dir(self) -> Path:
        return self.root / "controls"

    def image_path(self, key: str) -> Path:
        return self.images_dir / key[:2] / f"{key}.png"

    def run_dir(self, suite: str, method: str, model: str, short_hash: str) -> Path:
        safe_model = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-") or "model"
        return self.runs_dir / suite / f"{method}__{safe_model}__{short_hash}"

    def checkpoint_dir(self, ckpt_hash: str) -> Path:
        return self.checkpoints_dir / ckpt_hash

    # ------------------------------------------------------------------ images
    def has_image(self, key: str) -> bool:
        return self.image_path(key).is_file()

    def save_image(self, key: str, image: "Any") -> Path:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        path = self.image_path(key)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def save_control(self, image: "Any") -> Path:
        """Store a condition image under the sha256 of its PNG bytes (same image, same file) and return its path."""
        import hashlib

        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        d = hashlib.sha256(data).hexdigest()
        path = self.controls_dir / d[:2] / f"{d}.png"
        if not path.is_file():
            atomic_write_bytes(path, data)
        return path

    def load_image(self, key: str) -> "Any":
        from PIL import Image

        with Image.open(self.image_path(key)) as im:
            return im.convert("RGB")

    # ------------------------------------------------------------------ locks and hygiene
    @contextlib.contextmanager
    def lock(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """An exclusive cross-process lock named ``name`` (held for the ``with`` block)."""
        lock_dir = self.root / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        path = lock_dir / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".lock")
        with open(path, "a+") as fh:
            start = time.monotonic()
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if timeout is not None and time.monotonic() - start > timeout:
                        raise UserError(f"results folder is busy: lock '{name}' held by another run for {timeout:.0f}s") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def clean_stale_temp_files(self) -> int:
        """Remove temp files left by writers that were killed (their pid is gone)."""
        removed = 0
        for sub in ("images", "runs", "checkpoints", "leaderboard"):
            base = self.root / sub
            if not base.exists():
                continue
            for dirpath, dirnames, filenames in os.walk(base):
                for name in filenames + dirnames:
                    m = _TMP_RE.match(name)
                    if m and not _pid_alive(int(m.group(1))):
                        target = Path(dirpath) / name
                        if target.is_dir():
                            import shutil

                            shutil.rmtree(target, ignore_errors=True)
                        else:
                            with contextlib.suppress(FileNotFoundError):
                                target.unlink()
                        removed += 1
        return removed

    def temp_dir_for(self, final: Path) -> Path:
        """A pid-tagged sibling folder to build ``final`` in before an atomic rename."""
        return final.parent / f".{final.name}.{os.getpid()}.tmp"

    # ------------------------------------------------------------------ runs
    def iter_results(self, suite: str | None = None) -> Iterator[Path]:
        base = self.runs_dir / suite if suite else self.runs_dir
        if not base.exists():
            return
        pattern = "*/results.json" if suite else "*/*/results.json"
        yield from sorted(base.glob(pattern))
