from __future__ import annotations

import json
import os
import subprocess
import subprocess as _sp
import sys
from pathlib import Path

import pytest

# One intra-op thread: the test models are tiny, and on a loaded 2-core machine OpenMP threads that
# spin-wait for each other made a 2-step tiny-SDXL batch 30x slower (measured 22 s vs 0.7 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")
try:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
except ImportError:  # pragma: no cover
    pass

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory) -> Path:
    from tiny_models import build_tiny_sd15

    return build_tiny_sd15(tmp_path_factory.mktemp("models15") / "tiny-sd15")


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["CRAFT_BENCH_PLUGINS"] = "toy_plugins"
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg"))
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("CRAFT_BENCH_RESULTS", None)
    return env


class CLI:
    """Runs ``craft-bench`` in this process (fast) or, with ``subprocess=True``, as a child process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300, subprocess: bool = False
    ) -> subprocess.CompletedProcess:
        if subprocess:
            proc = _sp.run(
                [sys.executable, "-m", "craft_bench", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        else:
            import contextlib
            import io

            from craft_bench.cli import main

            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
            proc = _sp.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
        if check and proc.returncode != 0:
            raise AssertionError(f"craft-bench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "craft_bench", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_json(self, *args: str) -> dict:
        return json.loads(self(*args, "--json", "--no-progress").stdout)


@pytest.fixture(scope="session")
def cli(cli_env) -> CLI:
    import toy_plugins  # noqa: F401  (registers the test-only suite and method in this process)

    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "HF_HUB_OFFLINE")}
    os.environ["XDG_CACHE_HOME"] = cli_env["XDG_CACHE_HOME"]
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield CLI(cli_env)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def toy_plugins():
    import toy_plugins as mod

    return mod


def pytest_benchmark_update_machine_info(config, machine_info):
    """Benchmark JSON (--benchmark-json) carries the package versions and the device beside pytest-benchmark's own
    machine and commit info."""
    from craft_bench.runner import _device_name
    from craft_bench.version import versions

    machine_info["craft_bench"] = {
        "versions": versions(),
        "device": _device_name("cpu"),
        "torch_threads": torch.get_num_threads(),
        "load_1min": os.getloadavg()[0],
    }
