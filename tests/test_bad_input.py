"""Bad input: one line on stderr naming the problem and the fix, exit status 2, no traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _one_line_error(proc) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("craft-bench: error: ")
    return err


@pytest.mark.parametrize(
    "args, expect",
    [
        (["run", "--method", "vanila", "--suite", "toy"], "did you mean 'vanilla'"),
        (["run", "--method", "vanilla", "--suite", "tyo"], "did you mean 'toy'"),
        (["run", "--method", "vanilla", "--suite", "toy", "--model", "sdxll"], "did you mean 'sdxl'"),
        (["run", "--method", "vanilla", "--suite", "toy", "--set", "steps"], "expects key=value"),
        (["run", "--method", "vanilla", "--suite", "toy", "--set", "steps=many"], "expected a value of type int"),
        (["run", "--method", "vanilla", "--suite", "toy", "--set", "stepz=3"], "did you mean 'steps'"),
        (["run", "--method", "vanilla", "--suite", "toy", "--set", "method.nope=3"], "no setting 'nope'"),
        (["run", "--method", "vanilla", "--suite", "toy", "--limit", "0"], "positive"),
        (["run", "--suite", "toy"], "--method"),
        (["compare", "/nonexistent/a", "/nonexistent/b"], "no results.json"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, tiny_sdxl, args, expect, tmp_path):
    if args[0] == "run" and "--model" not in args:
        args = args + ["--model", str(tiny_sdxl)]
    err = _one_line_error(
        cli(*args, "--out", str(tmp_path), check=False) if args[0] == "run" else cli(*args, check=False)
    )
    assert expect in err


def test_unreadable_prompts_and_unwritable_out(cli, tiny_sdxl, tmp_path):
    base = ["run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl)]
    err = _one_line_error(cli(*base, "--out", str(tmp_path), "--prompts", str(tmp_path / "missing.txt"), check=False))
    assert "--prompts" in err and "cannot read" in err
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permission bits: use a path under a file instead
            target = tmp_path / "a-file"
            target.write_text("x")
            out = str(target / "sub")
        else:
            out = str(locked / "sub")
        err = _one_line_error(cli(*base, "--out", out, check=False))
        assert "not writable" in err and "--out" in err
    finally:
        os.chmod(locked, 0o700)


def test_missing_hub_model_offline_names_the_fix(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("CRAFT_BENCH_SDXL", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    err = _one_line_error(
        cli("run", "--method", "vanilla", "--suite", "toy", "--model", "sdxl", "--out", str(tmp_path), check=False)
    )
    assert "stabilityai/stable-diffusion-xl-base-1.0" in err and "CRAFT_BENCH_SDXL" in err and "--model" in err
    monkeypatch.setenv("CRAFT_BENCH_SDXL", str(tmp_path))
    err = _one_line_error(
        cli("run", "--method", "vanilla", "--suite", "toy", "--model", "sdxl", "--out", str(tmp_path), check=False)
    )
    assert "CRAFT_BENCH_SDXL" in err and "model_index.json" in err


def test_errors_from_a_real_process_have_no_traceback(cli, tmp_path):
    proc = cli("run", "--method", "nope", "--suite", "toy", "--out", str(tmp_path), check=False, subprocess=True)
    assert "unknown method 'nope'" in _one_line_error(proc)
    proc = cli(
        "run",
        "--method",
        "vanilla",
        "--suite",
        "toy",
        "--set",
        "=3",
        "--out",
        str(tmp_path),
        check=False,
        subprocess=True,
    )
    assert "key=value" in _one_line_error(proc)


def test_unavailable_device_is_a_one_line_error(cli, tiny_sdxl, tmp_path):
    base = ["run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", str(tmp_path)]
    assert "expected cpu, cuda" in _one_line_error(cli(*base, "--device", "tpu", check=False))
    import torch

    if not torch.cuda.is_available():
        assert "CUDA is not available" in _one_line_error(cli(*base, "--device", "cuda", check=False))


# --------------------------------------------------------------------------- the battery (issue 14)
# Each case: one line naming the problem and the fix, exit status 2, no traceback, and nothing written to the results
# root (no image, no run folder, no checkpoint; for errors in the arguments not even the root itself).


def _nothing_cached(out: Path) -> None:
    if not out.exists():
        return
    made = [p for p in out.rglob("*") if p.is_file() and "locks" not in p.parts]
    assert made == [], made


GENEVAL_LINES = {
    "bad-json": ('{"tag": "single_object", "prompt": "a photo of a circle", ', "line 1 is not JSON"),
    "missing-fields": ('{"prompt": "a photo of a circle", "include": []}', "needs string 'tag' and 'prompt'"),
    "unknown-class": (
        '{"tag": "single_object", "prompt": "a photo of a circel", "include": [{"class": "circel", "count": 1}]}',
        "knows no class 'circel'; did you mean 'circle'?",
    ),
    "unknown-task": (
        '{"tag": "single_objects", "prompt": "a photo of a circle", "include": [{"class": "circle", "count": 1}]}',
        "unknown GenEval task 'single_objects'",
    ),
    "empty-prompt": (
        '{"tag": "single_object", "prompt": "  ", "include": [{"class": "circle", "count": 1}]}',
        "the prompt is empty",
    ),
    "bad-count": (
        '{"tag": "counting", "prompt": "two circles", "include": [{"class": "circle", "count": "two"}]}',
        "an integer 'count'",
    ),
    "bad-position": (
        '{"tag": "position", "prompt": "a", "include": [{"class": "circle", "count": 1, "position": ["above", 0]}]}',
        "earlier include clause",
    ),
}


@pytest.mark.parametrize("case", sorted(GENEVAL_LINES))
def test_malformed_geneval_prompt_file(cli, tmp_path, case):
    line, expect = GENEVAL_LINES[case]
    path = tmp_path / "prompts.jsonl"
    path.write_text(line + "\n")
    out = tmp_path / "res"
    err = _one_line_error(
        cli(
            "run",
            "--method",
            "vanilla",
            "--suite",
            "geneval",
            "--model",
            "mini",
            "--prompts",
            str(path),
            "--out",
            str(out),
            check=False,
        )
    )
    assert expect in err and str(path) in err
    _nothing_cached(out)


@pytest.mark.parametrize(
    "case", ["non-utf8-geneval", "parti-tsv-without-prompt", "parti-non-utf8", "hpdv2-not-styles", "empty-geneval"]
)
def test_malformed_prompt_files(cli, tmp_path, case):
    suite, name, data, expect = {
        "non-utf8-geneval": ("geneval", "p.jsonl", b'{"tag": "single_object", "prompt": "caf\xe9"}\n', "not UTF-8"),
        "parti-tsv-without-prompt": (
            "parti",
            "p.tsv",
            b"Text\tCategory\tChallenge\na cat\tAnimals\tBasic\n",
            "needs a Prompt column",
        ),
        "parti-non-utf8": (
            "parti",
            "p.tsv",
            b"Prompt\tCategory\tChallenge\ncaf\xe9\tFood\tBasic\n",
            "cannot read Parti prompts",
        ),
        "hpdv2-not-styles": ("rewards", "p.json", b'["a cat", "a dog"]', "expected {style: [prompt, ...]}"),
        "empty-geneval": ("geneval", "p.jsonl", b"\n\n", "no prompts to run"),
    }[case]
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "res"
    err = _one_line_error(
        cli(
            "run",
            "--method",
            "vanilla",
            "--suite",
            suite,
            "--model",
            "mini",
            "--prompts",
            str(path),
            "--out",
            str(out),
            check=False,
        )
    )
    assert expect in err
    _nothing_cached(out)


INVALID_VALUES = [
    (["--set", "steps=0"], "steps must be a whole number >= 1"),
    (["--set", "steps=-1"], "steps must be a whole number >= 1"),
    (["--set", "batch_size=0"], "batch_size must be a whole number >= 1"),
    (["--set", "guidance_scale=nan"], "guidance_scale must be a finite number >= 0"),
    (["--set", "guidance_scale=inf"], "guidance_scale must be a finite number >= 0"),
    (["--set", "guidance_scale=-2"], "guidance_scale must be a finite number >= 0"),
    (["--set", "height=60"], "multiple of 8"),
    (["--set", "width=100"], "e.g. --set width=96"),
    (["--set", "height=0"], "height must be a whole number >= 8"),
    (["--set", "scheduler=eulr"], "did you mean 'euler'"),
    (["--set", "suite.images_per_prompt=0"], "give at least one image per prompt"),
    (["--set", "method.shift=abc"], "expected a value of type float"),
    (["--limit", "-3"], "positive number of prompts"),
    (["--num-processes", "0"], "positive number of processes"),
    (["--dtype", "float8"], "invalid choice"),
    (["--seed", "x"], "invalid int value"),
    (["--seed", "-5"], "--seed -5: give a whole number from 0 to 4294967295"),  # was a numpy traceback after generating
    (["--seed", str(2**32)], "give a whole number from 0 to 4294967295"),
]


@pytest.mark.parametrize("extra, expect", INVALID_VALUES, ids=[" ".join(a) for a, _ in INVALID_VALUES])
def test_invalid_values_fail_before_anything_runs(cli, tiny_sdxl, tmp_path, extra, expect):
    method = "redshift" if any(a.startswith("method.") for a in extra) else "vanilla"
    out = tmp_path / "res"
    err = _one_line_error(
        cli(
            "run",
            "--method",
            method,
            "--suite",
            "toy",
            "--model",
            str(tiny_sdxl),
            "--out",
            str(out),
            *extra,
            check=False,
        )
    )
    assert expect in err
    _nothing_cached(out)


CRAFT_VALUES = [
    (["--set", "method.lr=0"], "lr must be positive"),
    (["--set", "method.lr=-1e-5"], "lr must be positive"),
    (["--set", "method.lr=nan"], "lr must be"),
    (["--set", "method.steps=0"], "steps must be positive"),
    (["--set", "method.batch_size=0"], "batch_size must be positive"),
    (["--set", "method.k=1"], "k must be at least 2"),
    (
        ["--set", "method.budget=500", "--set", "method.pool_size=10"],
        "budget 500 is larger than the pool (80 candidates",
    ),
    (["--set", "method.filter=best"], "filter must be one of"),
    (["--set", "method.rewards=mini-clp"], "unknown reward 'mini-clp'; did you mean 'mini-clip'?"),
]


@pytest.mark.parametrize("extra, expect", CRAFT_VALUES, ids=[" ".join(a) for a, _ in CRAFT_VALUES])
def test_invalid_training_settings(cli, tiny_sdxl, tmp_path, extra, expect):
    prompts = tmp_path / "pool.txt"
    prompts.write_text("a red apple\na blue lake\n")
    out = tmp_path / "res"
    err = _one_line_error(
        cli(
            "run",
            "--method",
            "craft",
            "--suite",
            "toy",
            "--model",
            str(tiny_sdxl),
            "--out",
            str(out),
            "--set",
            f"method.pool={prompts}",
            "--set",
            "method.pool_size=2",
            "--set",
            "method.budget=4",
            "--set",
            "sampler.steps=2",
            *extra,
            check=False,
        )
    )
    assert expect in err
    _nothing_cached(out)


@pytest.mark.parametrize(
    "args, expect",
    [
        (
            ["--suite", "geneval", "--model", "mini", "--set", "suite.detector=mni"],
            "unknown detector 'mni'; did you mean 'mini'?",
        ),
        (
            ["--suite", "rewards", "--model", "mini", "--set", "suite.rewards=mini-aez"],
            "unknown reward 'mini-aez'; did you mean 'mini-aes'?",
        ),
        (
            ["--suite", "parti", "--model", "mini", "--set", "suite.judge=hsp"],
            "unknown reward 'hsp'; did you mean 'hps'?",
        ),
        (
            ["--suite", "rewards", "--model", "mini", "--set", "suite.rewards=pickscore"],
            "pickscore",
        ),  # weights missing offline
        (["--suite", "parti", "--model", "mini", "--set", "suite.judge=hps"], "hps"),  # weights missing offline
    ],
    ids=["detector", "reward", "judge", "reward-weights-offline", "judge-weights-offline"],
)
def test_unknown_plugins_and_missing_weights_fail_before_generation(cli, tmp_path, monkeypatch, args, expect):
    for var in ("CRAFT_BENCH_HPS", "CRAFT_BENCH_PICKSCORE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    out = tmp_path / "res"
    err = _one_line_error(cli("run", "--method", "vanilla", *args, "--limit", "2", "--out", str(out), check=False))
    assert expect in err
    _nothing_cached(out)


def test_ls_unknown_kind_and_score_unknown_reward(cli, tmp_path):
    assert "invalid choice" in _one_line_error(cli("ls", "widgets", check=False))
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.png")
    (tmp_path / "img" / "a.txt").write_text("a black square")
    err = _one_line_error(cli("score", str(tmp_path / "img"), "--rewards", "hsp", check=False))
    assert "unknown reward 'hsp'; did you mean 'hps'?" in err


def test_lora_of_another_architecture_is_one_line(tiny_sdxl, tiny_sd15, tmp_path):
    from craft_bench.errors import UserError
    from craft_bench.models import load_pipeline
    from craft_bench.train.diffusion import DiffusionModel

    DiffusionModel(tiny_sd15, "sd15", "cpu", lora_rank=4).save(tmp_path / "lora-sd15")
    with pytest.raises(UserError) as exc:
        load_pipeline(tiny_sdxl, "sdxl", "cpu", "float32", adapter_dir=str(tmp_path / "lora-sd15"))
    msg = str(exc.value)
    assert "do not fit" in msg and "shapes do not match" in msg and "\n" not in msg


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(cli, tiny_sdxl, tmp_path):
    prompts = tmp_path / "pool.txt"
    prompts.write_text("a red apple\na blue lake\n")
    out = tmp_path / "res"
    proc = cli(
        "run",
        "--method",
        "craft",
        "--suite",
        "toy",
        "--model",
        str(tiny_sdxl),
        "--out",
        str(out),
        "--set",
        f"method.pool={prompts}",
        "--set",
        "method.pool_size=2",
        "--set",
        "method.k=2",
        "--set",
        "method.budget=4",
        "--set",
        "method.filter=none",
        "--set",
        "method.rewards=mini-clip",
        "--set",
        "method.steps=6",
        "--set",
        "method.batch_size=2",
        "--set",
        "method.lora_rank=4",
        "--set",
        "method.ckpt_every=1",
        "--set",
        "method.lr=1e12",
        "--set",
        "method.max_grad_norm=0",
        "--set",
        "sampler.steps=2",
        "--no-progress",
        check=False,
    )
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("craft-bench: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        "training diverged" in errors[0]
        and "last good checkpoint (step" in errors[0]
        and "lower the learning rate" in errors[0]
    )
    (work,) = out.glob("checkpoints/*.work")
    state = json.loads((work / "state" / "state.json").read_text())
    assert state["step"] >= 1 and (work / "state" / "state.safetensors").is_file()
    assert not list(out.glob("checkpoints/*/train_info.json")) and not list(out.glob("runs/*/*"))
