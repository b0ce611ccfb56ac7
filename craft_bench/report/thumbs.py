"""Images of a report, placed inside its folder so the report is self-contained.

An image no larger than the thumbnail size (the mini world's 64x64 PNGs) is its own thumbnail: it is
hard-linked into the report (no bytes copied; copied when a link is impossible, e.g. across file systems)
and the page shows it upscaled by an integer factor with nearest-neighbour sampling (CSS
``image-rendering: pixelated``). A larger image (real models) gets a downscaled JPEG thumbnail. Images are
content-addressed by their cache key, so a rebuild reuses every thumbnail it already made.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from craft_bench.store import temp_path

DISPLAY_PX = 192  # the longest side of an image as a page shows it (CSS pixels)
THUMBS_DIR = "thumbs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Thumb:
    src: str  # path relative to the report folder
    width: int  # display size in CSS pixels
    height: int
    pixelated: bool  # upscaled by an integer factor: draw with nearest-neighbour


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, without decoding it; None if not a PNG."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _write_replace(target: Path, data: bytes) -> None:
    """Temp file + rename, so a killed build never leaves half a thumbnail. No fsync: a thumbnail can be
    remade, and thousands of fsyncs made a 2,880-thumbnail build 5x slower (16 s vs 3 s of CPU)."""
    tmp = temp_path(target)
    tmp.write_bytes(data)
    os.replace(tmp, target)


@dataclass
class ThumbStats:
    linked: int = 0
    copied: int = 0
    generated: int = 0
    reused: int = 0
    missing: int = 0
    missing_keys: list[str] = field(default_factory=list)


class Thumbs:
    """Plans and places the report's images: ``add`` returns where each will be, ``make`` writes them."""

    def __init__(self, out: Path, thumb_px: int = 256) -> None:
        if thumb_px < 8:
            raise ValueError("thumbnail size must be at least 8 pixels")
        self.out = out
        self.thumb_px = thumb_px
        self.stats = ThumbStats()
        self._planned: dict[str, tuple[Path, Path, bool]] = {}  # key -> (source, target, downscale)
        self._thumbs: dict[str, Thumb | None] = {}

    def add(self, key: str, source: Path | None) -> Thumb | None:
        """The thumbnail of image ``key`` (None if the image is missing from the results root)."""
        if key in self._thumbs:
            return self._thumbs[key]
        size = png_size(source) if source is not None else None
        if size is None:
            self.stats.missing += 1
            self.stats.missing_keys.append(key)
            self._thumbs[key] = None
            return None
        w, h = size
        longest = max(w, h)
        if longest <= self.thumb_px:
            k = max(1, DISPLAY_PX // longest)
            rel = f"{THUMBS_DIR}/{key[:2]}/{key}.png"
            thumb = Thumb(rel, w * k, h * k, k > 1)
            self._planned[key] = (source, self.out / rel, False)
        else:
            rel = f"{THUMBS_DIR}/{key[:2]}/{key}.{self.thumb_px}.jpg"
            scale = DISPLAY_PX / longest
            thumb = Thumb(rel, max(1, round(w * scale)), max(1, round(h * scale)), False)
            self._planned[key] = (source, self.out / rel, True)
        self._thumbs[key] = thumb
        return thumb

    @property
    def count(self) -> int:
        return len(self._planned)

    def make(self, progress: bool = True) -> ThumbStats:
        """Link, copy or downscale every planned image that is not in the report yet."""
        from tqdm.auto import tqdm

        todo = []
        for key, (source, target, downscale) in self._planned.items():
            if target.is_file():
                self.stats.reused += 1
            else:
                todo.append((source, target, downscale))
        for source, target, downscale in tqdm(todo, desc="thumbnails", unit="img", disable=not progress, leave=False):
            target.parent.mkdir(parents=True, exist_ok=True)
            if downscale:
                _write_replace(target, self._downscaled(source))
                self.stats.generated += 1
                continue
            try:
                os.link(source, target)
                self.stats.linked += 1
            except FileExistsError:
                self.stats.reused += 1
            except OSError:
                _write_replace(target, source.read_bytes())
                self.stats.copied += 1
        return self.stats

    def _downscaled(self, source: Path) -> bytes:
        import io

        from PIL import Image

        with Image.open(source) as im:
            im = im.convert("RGB")
            im.thumbnail((self.thumb_px, self.thumb_px), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85, optimize=True)
        return buf.getvalue()

    def prune(self) -> int:
        """Remove thumbnails no page of this build refers to (left by earlier builds)."""
        keep = {target for _, target, _ in self._planned.values()}
        removed = 0
        base = self.out / THUMBS_DIR
        if not base.is_dir():
            return 0
        for path in base.glob("*/*"):
            if path.is_file() and path not in keep:
                path.unlink()
                removed += 1
        return removed
