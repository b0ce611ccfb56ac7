"""Headless Chromium for the report tests, and a small DOM tree of what it rendered.

The browser is found, never installed: Debian's ``chromium`` package (``.ci/run`` installs it with apt when it
can), any Chrome on PATH, or the binary named by ``CRAFT_BENCH_CHROMIUM``. Pages are opened from file:// the
way a user opens a report. ``--dump-dom`` prints the DOM after the load event, i.e. after report.js applied the
state in the URL hash, so filters and sorting are checked by real script execution.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def find_chromium() -> str | None:
    given = os.environ.get("CRAFT_BENCH_CHROMIUM")
    if given:
        return given if Path(given).is_file() else shutil.which(given)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, exe: str, profile: Path) -> None:
        self.exe = exe
        self.profile = profile

    def _run(
        self,
        url: str,
        *extra: str,
        js: bool = True,
        budget_ms: int = 3000,
        size: tuple[int, int] = (1280, 1400),
        timeout: float = 90,
    ) -> subprocess.CompletedProcess:
        args = [
            self.exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={self.profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
        ]
        if not js:
            args.append("--blink-settings=scriptEnabled=false")
        proc = subprocess.run([*args, *extra, url], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    def dom(self, url: str, js: bool = True) -> "Node":
        return parse(self._run(url, "--dump-dom", js=js).stdout)

    def screenshot(self, url: str, path: Path, js: bool = True, size: tuple[int, int] = (1280, 1400)) -> Path:
        self._run(url, f"--screenshot={path}", js=js, size=size)
        assert path.is_file() and path.stat().st_size > 1000, f"no screenshot at {path}"
        return path


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: "Node | None") -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list["Node | str"] = []

    def iter(self) -> Iterator["Node"]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list["Node"]:
        out = []
        for n in self.iter():
            if tag and n.tag != tag:
                continue
            if cls and cls not in n.attrs.get("class", "").split():
                continue
            if all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                out.append(n)
        return out

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> "Node":
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}>"
        return found[0]

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def hidden(self) -> bool:
        """Hidden by its own ``hidden`` attribute or an ancestor's."""
        n: Node | None = self
        while n is not None:
            if "hidden" in n.attrs:
                return True
            n = n.parent
        return False


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag: str) -> None:
        n: Node | None = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def parse(text: str) -> Node:
    b = _Builder()
    b.feed(text)
    return b.root
