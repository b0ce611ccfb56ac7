"""Offline Pick-a-Pic-style preference data (parquet or JSONL: caption, two images, label_0) for the DPO family:
the pairs it makes, SmPO's soft labels from the file's scores or from rewards, bad files, and a real training run
on a parquet file with the images as bytes, as Pick-a-Pic's shards hold them."""

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from craft_bench.errors import UserError
from craft_bench.methods.diff_dpo import DiffusionDPO, DiffusionDPOConfig
from craft_bench.methods.smpo import SmPO, SmPOConfig
from craft_bench.store import Store

LABELS = [1, 0, 0.5, 1, 0]  # row 2 is a tie


def png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def rows(folder: Path, scores: bool = False) -> list[dict]:
    out = []
    for i, label in enumerate(LABELS):
        row = {"caption": f"a photo of shape {i}", "label_0": label}
        for j in (0, 1):
            (folder / f"{i}_{j}.png").write_bytes(png(10 * i + j))
            row[f"image_{j}"] = f"{i}_{j}.png"  # relative to the file's folder
            if scores:
                row[f"score_{j}"] = float(i + 3 * j)
        out.append(row)
    return out


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def context(tmp_path):
    from craft_bench.world import world_of

    base = SimpleNamespace(model=SimpleNamespace(name="tiny", source=None, family="sdxl"))
    return base, SimpleNamespace(store=Store(tmp_path / "res"), device="cpu", seed=0, world=world_of(base.model))


def test_jsonl_pairs_follow_the_human_label_and_drop_ties(tmp_path):
    path = write_jsonl(tmp_path / "prefs.jsonl", rows(tmp_path))
    base, ctx = context(tmp_path)
    data = DiffusionDPO(DiffusionDPOConfig(data=str(path))).build_data(base, ctx)
    by_row = {e["row"]: e for e in data.examples}
    assert sorted(by_row) == [0, 1, 3, 4]  # the tie is dropped
    for n, e in by_row.items():
        win = 0 if LABELS[n] == 1 else 1
        assert Path(e["image_w"]).name == f"{n}_{win}.png" and Path(e["image_l"]).name == f"{n}_{1 - win}.png"
        assert e["prompt"] == f"a photo of shape {n}"
    assert data.accounting["data"] == {"file": str(path), "rows": 5, "ties_dropped": 1, "pairs": 4}
    assert data.accounting["images_generated"] == 0 and data.accounting["reward_calls"] == 0
    two = DiffusionDPO(DiffusionDPOConfig(data=str(path), pairs=2)).build_data(base, ctx).examples
    assert len(two) == 2 and {e["row"] for e in two} <= {0, 1, 3, 4}


def test_parquet_with_image_bytes_gives_the_same_pairs(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    items = rows(tmp_path)
    for r in items:  # Pick-a-Pic's shards: jpg_0 / jpg_1 hold the bytes (jpg_1 here as a `datasets` Image struct)
        r["jpg_0"] = (tmp_path / r.pop("image_0")).read_bytes()
        r["jpg_1"] = {"bytes": (tmp_path / r.pop("image_1")).read_bytes(), "path": None}
    path = tmp_path / "prefs.parquet"
    pd.DataFrame(items).to_parquet(path)
    base, ctx = context(tmp_path)
    data = DiffusionDPO(DiffusionDPOConfig(data=str(path))).build_data(base, ctx)
    for e in data.examples:
        n = e["row"]
        win = 0 if LABELS[n] == 1 else 1
        assert Path(e["image_w"]).read_bytes() == png(10 * n + win)  # the bytes, written once into the cache
        assert str(ctx.store.root / "cache" / "prefs") in e["image_w"]


def test_smpo_soft_labels_from_the_file_scores_or_from_rewards(tmp_path):
    path = write_jsonl(tmp_path / "scored.jsonl", rows(tmp_path, scores=True))
    base, ctx = context(tmp_path)
    ex = SmPO(SmPOConfig(data=str(path))).build_data(base, ctx).examples
    # one score column: the composite is its z-score, min-max normalised over the file's images (scores 0..7)
    for e in ex:
        n = e["row"]
        s_w, s_l = (n + 3, n) if LABELS[n] == 0 else (n, n + 3)  # image_1 has the higher score (n + 3)
        assert e["p_w"] == pytest.approx(1 / (1 + math.exp(-(s_w - s_l) / 7)))
    assert any(e["p_w"] < 0.5 for e in ex)  # people preferred the lower-scored image: SmPO's sign follows the score
    plain = write_jsonl(tmp_path / "plain.jsonl", rows(tmp_path))
    data = SmPO(SmPOConfig(data=str(plain), rewards="mini-clip,mini-aes")).build_data(base, ctx)
    assert data.accounting["reward_calls"] == 16 and data.accounting["rewards"] == ["mini-clip", "mini-aes"]
    assert all(0 < e["p_w"] < 1 for e in data.examples)


@pytest.mark.parametrize(
    "content,needle",
    [
        ('{"caption": "x", "image_0": "0_0.png", "label_0": 1}\n', "no 'image_1' column"),
        (
            '{"caption": "x", "image_0": "0_0.png", "image_1": "missing.png", "label_0": 1}\n',
            "missing.png does not exist",
        ),
        ('{"caption": "x", "image_0": "0_0.png", "image_1": "0_1.png", "label_0": 2}\n', "label_0 must be"),
        ('{"caption": "x", "image_0": "0_0.png", "image_1": "0_1.png", "label_0": 0.5}\n', "no row with a preference"),
        ("not json\n", "not a JSON line"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, needle):
    rows(tmp_path)
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    base, ctx = context(tmp_path)
    with pytest.raises(UserError, match=needle) as err:
        DiffusionDPO(DiffusionDPOConfig(data=str(path))).build_data(base, ctx)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="ending in"):
        DiffusionDPO(DiffusionDPOConfig(data=str(tmp_path / "prefs.csv"))).build_data(base, ctx)


def test_training_on_a_parquet_file_through_the_cli(cli, tiny_sdxl, tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    items = rows(tmp_path)
    for r in items:
        r["jpg_0"], r["jpg_1"] = (tmp_path / r.pop("image_0")).read_bytes(), (tmp_path / r.pop("image_1")).read_bytes()
    path = tmp_path / "prefs.parquet"
    pd.DataFrame(items).to_parquet(path)
    out = tmp_path / "res"
    args = [
        "run",
        "--method",
        "diff-dpo",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        "--set",
        f"method.data={path}",
        "--set",
        "method.steps=2",
        "--set",
        "method.batch_size=2",
        "--set",
        "method.lora_rank=4",
        "--set",
        "method.lr=1e-3",
        "--set",
        "sampler.steps=2",
        "--set",
        "suite.n_prompts=2",
        "--set",
        "suite.images_per_prompt=1",
    ]
    results = cli.run_json(*args)
    assert results["train"]["samples_used"] == 4 and results["train"]["images_generated"] == 0
    assert results["train"]["data"]["ties_dropped"] == 1
    (ckpt,) = [p for p in (out / "checkpoints").iterdir() if p.is_dir()]
    log = [json.loads(x) for x in (ckpt / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # LoRA starts at its reference
    # another file is another checkpoint, even at the same path
    pd.DataFrame(items[:4]).to_parquet(path)
    cli.run_json(*args)
    assert len([p for p in (out / "checkpoints").iterdir() if p.is_dir()]) == 2


def test_a_missing_file_stops_the_run_before_any_work(cli, tmp_path):
    proc = cli(
        "run",
        "--method",
        "diff-dpo",
        "--suite",
        "toy",
        "--out",
        str(tmp_path / "res"),
        "--set",
        f"method.data={tmp_path / 'nope.jsonl'}",
        check=False,
    )
    assert proc.returncode == 2 and "nope.jsonl: no such file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "res" / "runs").exists()
