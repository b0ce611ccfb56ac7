"""The results root on disk: content-addressed images, checkpoints, run folders, leaderboards.

Every write is atomic (a temp file in the same folder, then ``os.replace``), so a kill at any moment
leaves either the old file or the new one. Temp files carry the writer's pid; ones whose writer is dead
are removed when a store is opened. Cross-process locks use ``fcntl.flock`` on files under ``locks/``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import itertools
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from craft_bench.errors import UserError

DEFAULT_ROOT_ENV = "CRAFT_BENCH_RESULTS"
# Temp files: ".<name>.<pid>.tmp" (older versions) or ".<name>.<host>-<pid>-<n>.tmp". The host keeps a cleaner on one
# machine of a shared file system from removing a live writer's file on another (whose pid it cannot check).
_TMP_RE = re.compile(r"^\..+\.(?:(?P<host>[A-Za-z0-9_]+)-)?(?P<pid>\d+)(?:-\d+)?\.tmp$")
FOREIGN_TMP_AGE_S = 24 * 3600  # a temp file of another host is only removed when it is older than this
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_counter = itertools.count()
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with


class CorruptImage(OSError):
    """A cached image that does not decode (cut short or damaged); it has been removed so it is made again."""


def default_root() -> Path:
    return Path(os.environ.get(DEFAULT_ROOT_ENV, "results"))


def safe_name(name: str) -> str:
    """A name as one path component: letters, digits, '.', '_', '-' (no '/', no '..'), so no plug-in, model or suite
    name
    can place a file outside the results root."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "x"


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname())[:32] or "host"


def temp_path(final: Path) -> Path:
    """A sibling of ``final`` to build it in before an atomic ``os.replace``: unique per host, process and call
    (threads of one process may write side by side), hidden, and recognisable by ``clean_stale_temp_files``."""
    final = Path(final)
    return final.parent / f".{final.name}.{_host_tag()}-{os.getpid()}-{next(_counter)}.tmp"


def disk_full_error(exc: BaseException, path: Path | str) -> UserError | None:
    """The one-line error for a write that failed because the disk (or quota, or file-size limit) is full, else None.
    Knows OSError and the errors of libraries that report the OS error in their message (safetensors: "os error 28")."""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None:
        m = re.search(r"os error (\d+)", str(exc))
        code = int(m.group(1)) if m else None
    if code not in _DISK_FULL:
        return None
    return UserError(
        f"cannot write {path}: {os.strerror(code)} (the disk or quota is full); nothing partial was kept: "
        "free some space (or pass --out DIR on another disk) and run again; finished work is kept"
    )


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks (weights can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """craft-bench's per-user cache (``$XDG_CACHE_HOME/craft-bench``, else ``~/.cache/craft-bench``): memoised
    weight digests, trust-on-first-use pins."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "craft-bench"


def verify_sha256(path: Path | str, expected: str, what: str, fix: str) -> None:
    """A prompt or data file is the one pinned: its sha256 equals ``expected``, else a one-line UserError."""
    found = file_digest(path)
    if found != expected:
        raise UserError(f"{path}: sha256 {found[:12]}... differs from the pinned {what} ({expected[:12]}...); {fix}")


def trust_on_first_use(name: str, path: Path | str) -> None:
    """For a fetched file whose published digest is not pinned in the code: the first fetch records its sha256 in
    ``~/.cache/craft-bench/pins.json``, and a later fetch that differs (the upstream file changed, or the download was
    tampered with) is refused, so results never silently change their prompts."""
    pins_path = cache_dir() / "pins.json"
    try:
        pins = json.loads(pins_path.read_text())
    except (OSError, ValueError):
        pins = {}
    found = file_digest(path)
    if name not in pins:
        pins[name] = found
        with contextlib.suppress(OSError):
            atomic_write_json(pins_path, pins)
        return
    if pins[name] != found:
        raise UserError(
            f"{name}: the fetched file's sha256 {found[:12]}... differs from the one first fetched here "
            f"({pins[name][:12]}..., pinned in {pins_path}); check the source, and remove that pin to accept "
            "the new file"
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            full = disk_full_error(exc, path)
            if full is not None:
                raise full from None
        raise


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
                f"results folder '{self.root}' is not writable ({exc.strerror or exc}); pass --out DIR with a "
                "writable folder"
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
        return self.runs_dir / safe_name(suite) / f"{safe_name(method)}__{safe_name(model)}__{safe_name(short_hash)}"

    def checkpoint_dir(self, ckpt_hash: str) -> Path:
        return self.checkpoints_dir / ckpt_hash

    # ------------------------------------------------------------------ images
    def has_image(self, key: str) -> bool:
        """The image exists and is complete as far as a cheap look tells: it ends with PNG's IEND chunk (a write
        cut short does not). ``load_image`` decodes it fully."""
        path = self.image_path(key)
        try:
            with open(path, "rb") as fh:
                fh.seek(-len(_PNG_END), os.SEEK_END)
                return fh.read() == _PNG_END
        except OSError:
            return False

    def save_image(self, key: str, image: "Any") -> Path:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        path = self.image_path(key)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def latent_path(self, key: str) -> Path:
        """The sampled latents of image ``key`` (kept by generation when asked: ``generate(keep_latents=True)``)."""
        return self.root / "cache" / "sampled-latents" / key[:2] / f"{key}.safetensors"

    def save_latents(self, key: str, latents: "Any") -> Path:
        from safetensors.torch import save as to_bytes

        path = self.latent_path(key)
        atomic_write_bytes(path, to_bytes({"latents": latents.contiguous()}))
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
        """The image as RGB; a file that does not decode is removed and reported as ``CorruptImage`` (callers make it
        again), a missing one as FileNotFoundError."""
        from PIL import Image

        path = self.image_path(key)
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
        except FileNotFoundError:
            raise
        except (OSError, SyntaxError, ValueError) as exc:  # PIL: OSError (truncated, bad CRC), SyntaxError (not a PNG)
            with contextlib.suppress(OSError):
                path.unlink()
            raise CorruptImage(f"cached image {path} does not decode ({exc})") from None

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
                        raise UserError(
                            f"results folder is busy: lock '{name}' held by another run for {timeout:.0f}s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def clean_stale_temp_files(self) -> int:
        """Remove temp files left by writers that were killed: this host's whose pid is gone, other hosts' (a shared
        file system) once older than ``FOREIGN_TMP_AGE_S``, since their pids cannot be checked from here."""
        removed = 0
        here = _host_tag()
        now = time.time()
        for sub in ("images", "runs", "checkpoints", "leaderboard", "cache"):
            base = self.root / sub
            if not base.exists():
                continue
            for dirpath, dirnames, filenames in os.walk(base):
                for name in filenames + dirnames:
                    m = _TMP_RE.match(name)
                    if not m:
                        continue
                    target = Path(dirpath) / name
                    host = m.group("host")
                    if host is None or host == here:
                        stale = not _pid_alive(int(m.group("pid")))
                    else:
                        try:
                            stale = now - target.stat().st_mtime > FOREIGN_TMP_AGE_S
                        except OSError:
                            stale = False
                    if not stale:
                        continue
                    if target.is_dir():
                        import shutil

                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            target.unlink()
                    removed += 1
        return removed

    def temp_dir_for(self, final: Path) -> Path:
        """A sibling folder to build ``final`` in before an atomic rename (``temp_path``)."""
        return temp_path(final)

    # ------------------------------------------------------------------ runs
    def iter_results(self, suite: str | None = None) -> Iterator[Path]:
        base = self.runs_dir / suite if suite else self.runs_dir
        if not base.exists():
            return
        pattern = "*/results.json" if suite else "*/*/results.json"
        yield from sorted(base.glob(pattern))
