"""Training trackers (method.report_to: TensorBoard event files and an offline W&B run, read back) and the model card
every trained checkpoint folder gets (README.md with YAML front matter; the folder still loads in plain diffusers)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from test_craft_cli import craft_args

MINI_CRAFT = [
    "--set",
    "method.pool_size=8",
    "--set",
    "method.budget=16",
    "--set",
    "method.steps=3",
    "--set",
    "method.batch_size=8",
    "--limit",
    "6",
    "--set",
    "suite.images_per_prompt=1",
    "--no-progress",
]


def _one_line(proc) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, (proc.returncode, err)
    return err


def _checkpoint(out: Path) -> Path:
    (folder,) = [p for p in (out / "checkpoints").iterdir() if p.is_dir() and not p.name.endswith(".work")]
    return folder


@pytest.fixture(scope="module")
def mini_craft(cli, tmp_path_factory):
    """CRAFT on mini (small pool, 3 steps), logging to TensorBoard."""
    out = tmp_path_factory.mktemp("mini-craft") / "res"
    res = cli.run_json(
        "run",
        "--method",
        "craft",
        "--suite",
        "geneval",
        "--out",
        str(out),
        *MINI_CRAFT,
        "--set",
        "method.report_to=tensorboard",
    )
    return out, res, _checkpoint(out)


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_of_a_craft_run_on_mini(mini_craft):
    out, res, folder = mini_craft
    (run_dir,) = [p for p in (folder / "logs").iterdir() if p.is_dir()]
    assert run_dir.name == f"craft-{folder.name[:8]}" and list(run_dir.glob("events.out.tfevents.*"))
    scalars = _scalars(run_dir)
    log = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
    for tag in (
        "loss",
        "lr",
        "grad_norm",
        "mse",
        "step_s",
        "batch/advantage_mean",
        "batch/weight_mean",
        "batch/reward.mini-clip_mean",
        "batch/reward.mini-aes_mean",
    ):
        assert [s for s, _ in scalars[tag]] == [1, 2, 3], tag
    # the same numbers as the run's own log (TensorBoard keeps float32)
    for tag in ("loss", "lr", "grad_norm"):
        assert [v for _, v in scalars[tag]] == pytest.approx([r[tag] for r in log], rel=1e-5)
    assert all(v > 0 for _, v in scalars["step_s"])
    # the pool's statistics come with the first step: counts and reward statistics over every candidate and the kept
    # ones
    assert scalars["pool/candidates"] == [(1, 64.0)] and scalars["pool/kept"] == [
        (1, float(res["train"]["samples_used"]))
    ]
    assert scalars["pool/reward/mini-clip/mean"][0][1] == pytest.approx(
        res["train"]["reward_stats"]["mini-clip"]["mean"], rel=1e-5
    )
    assert "pool/reward_means_kept/mini-aes" in scalars
    # the batch means are of the examples the step trained on: between the kept samples' extremes
    kept = [json.loads(x) for x in (folder / "examples.jsonl").read_text().splitlines()]
    adv = [e["advantage"] for e in kept]
    assert all(min(adv) <= v <= max(adv) for _, v in scalars["batch/advantage_mean"])


def test_report_to_is_not_part_of_any_identity(cli, mini_craft):
    out, res, folder = mini_craft
    again = cli("run", "--method", "craft", "--suite", "geneval", "--out", str(out), *MINI_CRAFT, "--json")
    assert json.loads(again.stdout)["spec_hash"] == res["spec_hash"] and "cached" in again.stderr
    spec = json.loads(
        next((out / "runs" / "geneval").glob(f"craft__*__{res['spec_hash'][:8]}/run_spec.json")).read_text()
    )
    assert "report_to" not in dict(spec["method"]["config"])
    # another run (another evaluation protocol) with the same trained checkpoint: nothing is trained, and it says so
    third = cli(
        "run",
        "--method",
        "craft",
        "--suite",
        "geneval",
        "--out",
        str(out),
        *MINI_CRAFT,
        "--limit",
        "3",
        "--set",
        "method.report_to=tensorboard",
    )
    assert f"checkpoint {folder.name} is cached: nothing is trained, so nothing goes to tensorboard" in third.stderr


def test_the_model_card_of_a_craft_run_on_mini(cli, mini_craft):
    import yaml

    out, res, folder = mini_craft
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert (
        meta["library_name"] == "diffusers" and meta["base_model"] == "mini" and meta["pipeline_tag"] == "text-to-image"
    )
    assert {"craft", "craft-bench", "full-fine-tune", "stable-diffusion-xl"} <= set(meta["tags"])
    info = json.loads((folder / "train_info.json").read_text())
    cb = meta["craft_bench"]
    assert (cb["method"], cb["method_version"], cb["checkpoint"], cb["steps"], cb["samples_used"]) == (
        "craft",
        "2+pool2",
        folder.name,
        3,
        info["samples_used"],
    )  # CRAFT's version, then the pool's
    for section in (
        "## Use it",
        "## Reproduce",
        "## Base model",
        "## Settings",
        "## Training data (the pool)",
        "## Training compute",
    ):
        assert section in body
    for setting in ("`budget` | 16", "`pool_size` | 8", "`filter` | hpa", "`lr` | 2e-05", "`lora_rank` | 0"):
        assert setting in body, setting
    assert '`rewards` | ["mini-clip", "mini-aes"]' in body and "`candidates` | 64" in body and "`kept` |" in body
    # the reproduce command is the run: run as written (into the same results root) it is a cache hit of the same spec
    command = body.split("## Reproduce\n```bash\n", 1)[1].split("\n```", 1)[0]
    args = shlex.split(command)
    assert args[:2] == ["craft-bench", "run"] and "method.report_to=tensorboard" not in command
    again = cli(*args[1:], "--out", str(out), "--json")
    assert json.loads(again.stdout)["spec_hash"] == res["spec_hash"] and "cached" in again.stderr


def test_a_full_fine_tune_folder_loads_in_plain_diffusers(mini_craft):
    import torch
    from diffusers import UNet2DConditionModel

    from craft_bench.models import resolve_model

    _, _, folder = mini_craft
    _, _, base_dir = resolve_model("mini")
    tuned = UNet2DConditionModel.from_pretrained(folder / "unet")
    base = UNet2DConditionModel.from_pretrained(base_dir / "unet")
    changed = [
        n for (n, a), (_, b) in zip(tuned.state_dict().items(), base.state_dict().items()) if not torch.equal(a, b)
    ]
    assert changed  # the trained weights, not a copy of the base


def _wandb_records(path: Path) -> list:
    """The records of an offline W&B run file: LevelDB's log format (32 KiB blocks of checksum, length, type, data)
    after W&B's 7-byte header, each record a protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, part, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        part += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
            part = b""
    return out


def test_wandb_offline_run_and_a_lora_folder_that_loads_in_plain_diffusers(cli, tiny_sdxl, tmp_path, monkeypatch):
    import torch
    from diffusers import StableDiffusionXLPipeline

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red apple\na blue lake\na green forest\na white cloud\n")
    out = tmp_path / "res"
    cli(*craft_args(tiny_sdxl, prompts, out, "--set", "method.report_to=wandb"))
    folder = _checkpoint(out)
    (run_file,) = (folder / "logs" / "wandb").glob("offline-run-*/run-*.wandb")
    records = _wandb_records(run_file)
    history = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    steps = [h for h in history if "loss" in h]
    assert [h["_step"] for h in steps] == [1, 2]
    log = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
    assert [h["loss"] for h in steps] == pytest.approx([r["loss"] for r in log], rel=1e-5)  # the log keeps 6 digits
    assert all(
        {"lr", "grad_norm", "step_s", "batch/weight_mean", "batch/reward.mini-clip_mean"} <= set(h) for h in steps
    )
    assert "pool/candidates" in steps[0]
    config = [r for r in records if r.WhichOneof("record_type") == "config"]
    assert any(
        (u.key or "/".join(u.nested_key)) == "method" and json.loads(u.value_json) == "craft"
        for r in config
        for u in r.config.update
    )

    # the card names the LoRA, and plain diffusers loads the folder onto the base pipeline
    card = (folder / "README.md").read_text()
    assert "lora" in card.split("---\n", 2)[1] and 'pipe.load_lora_weights("<this folder>")' in card
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = dict(
        encoder_hidden_states=torch.randn(
            1, 77, pipe.unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1)
        ),
        added_cond_kwargs={
            "text_embeds": torch.randn(
                1, pipe.text_encoder_2.config.projection_dim, generator=torch.Generator().manual_seed(2)
            ),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
        },
    )
    with torch.no_grad():
        before = pipe.unet(x, 10, **cond).sample
        pipe.load_lora_weights(str(folder))
        after = pipe.unet(x, 10, **cond).sample
    assert not torch.allclose(before, after)  # the trained LoRA is applied


def test_a_missing_tracker_package_is_one_line(cli, tiny_sdxl, tmp_path, monkeypatch):
    import craft_bench.train.trackers as trackers

    monkeypatch.setitem(trackers.PACKAGES, "tensorboard", "tensorboard_not_installed_here")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red apple\na blue lake\n")
    out = tmp_path / "res"
    err = _one_line(cli(*craft_args(tiny_sdxl, prompts, out, "--set", "method.report_to=tensorboard"), check=False))
    assert (
        "report_to=tensorboard needs the tensorboard_not_installed_here package" in err and "craft-bench[track]" in err
    )
    assert not out.exists() or not any(out.rglob("*.png"))
    err = _one_line(cli(*craft_args(tiny_sdxl, prompts, out, "--set", "method.report_to=mlflow"), check=False))
    assert "report_to must be one of none, tensorboard, wandb" in err
