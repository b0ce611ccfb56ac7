"""Bad input: one line on stderr naming the problem and the fix, exit status 2, no traceback."""

from __future__ import annotations

import os

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
    err = _one_line_error(cli(*args, "--out", str(tmp_path), check=False) if args[0] == "run" else cli(*args, check=False))
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
    err = _one_line_error(cli("run", "--method", "vanilla", "--suite", "toy", "--model", "sdxl", "--out", str(tmp_path), check=False))
    assert "stabilityai/stable-diffusion-xl-base-1.0" in err and "CRAFT_BENCH_SDXL" in err and "--model" in err
    monkeypatch.setenv("CRAFT_BENCH_SDXL", str(tmp_path))
    err = _one_line_error(cli("run", "--method", "vanilla", "--suite", "toy", "--model", "sdxl", "--out", str(tmp_path), check=False))
    assert "CRAFT_BENCH_SDXL" in err and "model_index.json" in err


def test_errors_from_a_real_process_have_no_traceback(cli, tmp_path):
    proc = cli("run", "--method", "nope", "--suite", "toy", "--out", str(tmp_path), check=False, subprocess=True)
    assert "unknown method 'nope'" in _one_line_error(proc)
    proc = cli("run", "--method", "vanilla", "--suite", "toy", "--set", "=3", "--out", str(tmp_path), check=False, subprocess=True)
    assert "key=value" in _one_line_error(proc)


def test_unavailable_device_is_a_one_line_error(cli, tiny_sdxl, tmp_path):
    base = ["run", "--method", "vanilla", "--suite", "toy", "--model", str(tiny_sdxl), "--out", str(tmp_path)]
    assert "expected cpu, cuda" in _one_line_error(cli(*base, "--device", "tpu", check=False))
    import torch

    if not torch.cuda.is_available():
        assert "CUDA is not available" in _one_line_error(cli(*base, "--device", "cuda", check=False))
