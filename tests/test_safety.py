"""Safety: weights only through safetensors or torch.load(weights_only=True), never remote code; cache and run paths
from hashes and sanitised names (nothing lands outside the results root); prompt files checked by sha256."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = [p for d in ("craft_bench", "methods", "suites", "tools") for p in (REPO / d).rglob("*.py")]


def _calls(name: str):
    for path in PRODUCT:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                dotted = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if dotted == name:
                    yield path, node


def test_torch_load_only_with_weights_only_and_no_remote_code():
    loads = list(_calls("load"))
    torch_loads = [
        (p, n) for p, n in loads if isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", "") == "torch"
    ]
    assert torch_loads  # the one weights loader exists ...
    for path, node in torch_loads:  # ... and never unpickles arbitrary objects
        kw = {k.arg: k.value for k in node.keywords}
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (
            f"{path}:{node.lineno}"
        )
    for path in PRODUCT:
        text = path.read_text()
        assert "trust_remote_code=True" not in text and "pickle.load" not in text, path


def test_names_cannot_leave_the_results_root(tmp_path):
    from craft_bench.store import Store, safe_name

    store = Store(tmp_path / "res")
    for evil in ("../../x", "/etc/passwd", "..", "a/../../b", "x\\..\\y"):
        d = store.run_dir(evil, evil, evil, evil)
        assert (
            store.runs_dir in d.resolve().parents
            and "/" not in safe_name(evil)
            and safe_name(evil) not in ("", ".", "..")
        )


def test_shipped_prompt_files_are_sha256_checked(monkeypatch):
    from craft_bench.errors import UserError
    from craft_bench.suites import geneval, parti

    assert len(geneval.read_metadata(geneval.official_metadata_path())) == 553 and len(parti.read_parti()) == 1632
    monkeypatch.setattr(geneval, "GENEVAL_METADATA_SHA256", "0" * 64)  # as if the shipped file had changed
    with pytest.raises(UserError, match="differs from the pinned GenEval evaluation_metadata.jsonl"):
        geneval.official_metadata_path()
    monkeypatch.setattr(parti, "PARTI_SHA256", "0" * 64)
    with pytest.raises(UserError, match="differs from the pinned PartiPrompts.tsv"):
        parti.read_parti()


def test_fetched_files_are_pinned_on_first_use(tmp_path, monkeypatch):
    from craft_bench.errors import UserError
    from craft_bench.store import trust_on_first_use

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    f = tmp_path / "anime.json"
    f.write_text(json.dumps(["a cat"] * 800))
    trust_on_first_use("hpdv2:anime", f)
    trust_on_first_use("hpdv2:anime", f)  # the same file again: fine
    f.write_text(json.dumps(["a dog"] * 800))
    with pytest.raises(UserError, match="differs from the one first fetched here"):
        trust_on_first_use("hpdv2:anime", f)
