"""`craft-bench` command line. Imports nothing heavy until a verb needs it, so `--help` stays fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from craft_bench.errors import OneLineParser, UserError
from craft_bench.report.tables import print_results
from craft_bench.version import __version__

EXIT_USAGE = 2
EXIT_REGRESSION = 1


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a method on a suite and print its results table",
        description=(
            "Prepare METHOD's model from the base model, generate the suite's images (cached), score them and "
            "write results/runs/<suite>/<method>__<model>__<hash8>/{run_spec.json,samples.jsonl,results.json}."
        ),
    )
    p.add_argument("--method", required=True, help="method name (craft-bench ls methods)")
    p.add_argument("--suite", required=True, help="suite name (craft-bench ls suites)")
    p.add_argument(
        "--model", default="mini", help="preset name (mini, sd15, sdxl) or a local diffusers folder [default: mini]"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run seed, 0 to 4294967295; image i of prompt p is seeded from (seed, p, i) [default: 0]",
    )
    p.add_argument("--limit", type=int, default=None, help="use only K prompts, taken evenly across the suite's strata")
    p.add_argument("--prompts", default=None, help="a prompt file to use instead of the suite's own")
    p.add_argument("--out", default=None, help="results root [default: $CRAFT_BENCH_RESULTS or ./results]")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sampler, method or suite setting (e.g. steps=20, method.lr=1e-5, "
        "suite.images_per_prompt=2); repeatable",
    )
    p.add_argument("--device", default=None, help="torch device [default: cuda if available, else cpu]")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="[default: float16 on CUDA, float32 on CPU]",
    )
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the table")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="train (DDP), generate and score on N processes (torchrun); the same results as one process; "
        "the same as `torchrun --nproc_per_node N -m craft_bench run ...` (docs/scaling.md)",
    )
    p.add_argument(
        "--vs",
        default=None,
        metavar="METHOD",
        help="also run METHOD (e.g. vanilla) on the same suite, protocol and seed when it is missing, and print the "
        "paired difference under the table [default: after a trainable method, vanilla's run when it exists]",
    )


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="methods x training budgets x seeds: data efficiency, training compute, reward hacking",
        description=(
            "Run every method at every training budget (the samples or pairs it may use; CRAFT: "
            "method.budget, diff-dpo/mapo/smpo: "
            "method.pairs) and seed, each cell a normal cached, resumable run (a killed sweep redoes only "
            "the missing cells), "
            "and write results/sweeps/<name>/{sweep.json,sweep.csv,sweep.md,plots/}: headline with CI, "
            "paired delta vs vanilla, "
            "training seconds by stage, compute to match the reference method, and gains on trained-on vs "
            "held-out judges."
        ),
    )
    p.add_argument("--methods", required=True, help="comma-separated methods, e.g. vanilla,diff-dpo,mapo,smpo,craft")
    p.add_argument(
        "--budgets",
        required=True,
        action="append",
        help="comma-separated training budgets (samples or pairs), e.g. 25,100,400; repeat as METHOD=LIST to give "
        "one method its own, e.g. --budgets grpo=1024,4096 (images it generates)",
    )
    p.add_argument("--suite", required=True, help="suite name (craft-bench ls suites)")
    p.add_argument("--model", default="mini", help="preset name or a local diffusers folder [default: mini]")
    p.add_argument("--seeds", default="0", help="comma-separated run seeds (training and evaluation) [default: 0]")
    p.add_argument(
        "--limit", type=int, default=None, help="use only K prompts of the suite, taken evenly across its strata"
    )
    p.add_argument("--prompts", default=None, help="a prompt file to use instead of the suite's own")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for every cell that has it (method.X goes to the methods that have X); repeatable",
    )
    p.add_argument("--name", default=None, help="sweep folder name [default: <suite>-<model>-<hash of the grid>]")
    p.add_argument(
        "--reference",
        default=None,
        help="the method compute-to-match ratios are measured against "
        "[default: the requested method that declares itself the reference: craft]",
    )
    p.add_argument(
        "--judges",
        default="",
        help="comma-separated held-out rewards also scored on every cell's images (e.g. imagereward)",
    )
    p.add_argument("--out", default=None, help="results root [default: $CRAFT_BENCH_RESULTS or ./results]")
    p.add_argument("--device", default=None, help="torch device [default: cuda if available, else cpu]")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only every N-th cell from the I-th (0-based), e.g. --shard $SLURM_ARRAY_TASK_ID/8 in a job array "
        "with one results root on a shared file system; a last run without --shard (every cell cached) "
        "writes the whole sweep",
    )
    p.add_argument("--json", action="store_true", help="print sweep.json instead of sweep.md")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_ls(sub: Any) -> None:
    p = sub.add_parser("ls", help="list methods, suites, models, rewards, detectors or worlds")
    p.add_argument(
        "kind", nargs="?", default=None, choices=["methods", "suites", "models", "rewards", "detectors", "worlds"]
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also list each method's and suite's settings")


def _add_leaderboard(sub: Any) -> None:
    p = sub.add_parser("leaderboard", help="tabulate every finished run under the results root")
    p.add_argument("--suite", default=None, help="only this suite [default: every suite]")
    p.add_argument("--format", default="md", choices=["md", "csv", "json"])
    p.add_argument("--out", default=None, help="results root [default: $CRAFT_BENCH_RESULTS or ./results]")


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="paired comparison of run B against run A",
        description=(
            "Compare two runs of one suite over the images both share (same prompt, same seed): delta (B - A), "
            "bootstrap 95%% CI of the paired difference, paired permutation-test p-value and a verdict per metric."
        ),
    )
    p.add_argument("a", help="baseline: a run folder or its results.json")
    p.add_argument("b", help="candidate: a run folder or its results.json")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 if B is significantly worse than A on the headline metric",
    )


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a static HTML report: leaderboards, image grids, comparisons, sweeps",
        description=(
            "Write a static site (open index.html from disk, no server): a sortable leaderboard per suite "
            "with provenance "
            "per run, per-suite pages with the methods' images side by side on the same prompt and seed, paired "
            "comparison pages and sweep pages with plots. Images are hard-linked into the report (copied across "
            "file systems; large ones as downscaled thumbnails), so the folder is self-contained."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="RUN_OR_SWEEP",
        help="run folders, results.json files, suite folders, sweep folders or sweep.json files, or a results root "
        "[default: everything under $CRAFT_BENCH_RESULTS or ./results]",
    )
    p.add_argument("--out", default=None, help="folder to write the report to [default: <results root>/report]")
    p.add_argument(
        "--pairs",
        default="baseline",
        choices=["baseline", "all"],
        help="compare pages: each run against each vanilla run of its suite (baseline), or every pair of runs "
        "(all) [default: baseline]",
    )
    p.add_argument(
        "--thumb-size",
        type=int,
        default=256,
        metavar="PX",
        help="images larger than PX on a side get a downscaled thumbnail; smaller ones are shown upscaled, "
        "pixel-exact [default: 256]",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON summary (pages, images shown, thumbnails, seconds)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure UNet step time and MFU, images/s against plain diffusers, trainer step time",
        description=(
            "One run measures: the UNet's step time, FLOPs (counted from its config) and MFU; images/s with "
            "CFG at --steps through "
            "craft-bench's generation path and through a plain default diffusers call, with peak memory (the "
            "ratio is the figure); the "
            "trainer's LoRA step time with cached encodings vs encoding every step as diffusers' training scripts do. "
            "sdxl-random / sd15-random are the real architectures from their public configs with random "
            "weights (nothing is downloaded)."
        ),
    )
    p.add_argument(
        "--model", default="mini", help="mini, sdxl-random, sd15-random, or a local diffusers folder [default: mini]"
    )
    p.add_argument("--device", default=None, help="torch device [default: cuda if available, else cpu]")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="[default: float16 on CUDA, float32 on CPU]",
    )
    p.add_argument(
        "--resolution", type=int, default=None, metavar="PX", help="image size [default: the model's native resolution]"
    )
    p.add_argument("--steps", type=int, default=30, help="denoising steps per image [default: 30]")
    p.add_argument(
        "--batch", type=int, default=None, help="prompts per generation batch [default: 16 mini, 8 sd15, 4 sdxl]"
    )
    p.add_argument("--images", type=int, default=16, help="images timed per generation path [default: 16]")
    p.add_argument("--repeats", type=int, default=5, help="UNet calls timed [default: 5]")
    p.add_argument("--train-steps", type=int, default=8, help="trainer steps timed per mode [default: 8]")
    p.add_argument("--train-batch", type=int, default=4, help="trainer batch [default: 4]")
    p.add_argument(
        "--lora-rank", type=int, default=4, help="trainer LoRA rank [default: 4, the diffusers script's default]"
    )
    p.add_argument("--channels-last", action="store_true", help="craft-bench's path with a channels_last UNet")
    p.add_argument("--compile", action="store_true", help="craft-bench's path with a torch.compile'd UNet")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's dense peak for MFU [default: known GPUs' data sheets]",
    )
    p.add_argument("--parts", default="unet,generate,train", help="what to measure [default: unet,generate,train]")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures, versions and device to FILE")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="craft-bench",
        description=(
            "Benchmark harness for preference-aligned text-to-image diffusion models. "
            "Methods (vanilla, CRAFT, Diffusion-DPO, ...) x suites (GenEval, Parti win rate, reward benchmarks) "
            "on real SDXL/SD1.5 weights or the embedded offline `mini` world."
        ),
    )
    parser.add_argument("--version", action="version", version=f"craft-bench {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    _add_run(sub)
    _add_sweep(sub)
    _add_ls(sub)
    _add_leaderboard(sub)
    _add_compare(sub)
    _add_report(sub)
    _add_bench(sub)
    sub.add_parser(
        "score", help="score a folder of images with reward models (craft-bench score --help)", add_help=False
    )
    sub.add_parser("mini", help="the embedded mini world: train its models (craft-bench mini --help)", add_help=False)
    sub.add_parser(
        "geneval",
        help="GenEval interop: summarize the official evaluator's results.jsonl (craft-bench geneval --help)",
        add_help=False,
    )
    return parser


# ---------------------------------------------------------------- verbs


def _relaunch(n: int, argv: Sequence[str]) -> int:
    """Run this command again on ``n`` processes under torchrun (every process trains its share of each batch and
    generates and scores its share of the images; the first one writes the run)."""
    import subprocess

    if n < 1:
        raise UserError(f"--num-processes {n}: give a positive number of processes")
    rest, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--num-processes":
            skip = True
            continue
        if a.startswith("--num-processes="):
            continue
        rest.append(a)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n}",
        "-m",
        "craft_bench",
        *rest,
    ]
    return subprocess.call(cmd)


def cmd_run(args: argparse.Namespace) -> int:
    from craft_bench.python_api import run
    from craft_bench.spec import parse_set_args

    if args.num_processes != 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _relaunch(args.num_processes, ["run", *args.raw_argv])

    result = run(
        args.method,
        args.suite,
        model=args.model,
        seed=args.seed,
        settings=dict(parse_set_args(args.sets)),
        limit=args.limit,
        prompts=args.prompts,
        out=args.out,
        device=args.device,
        dtype=args.dtype,
        vs=args.vs,
        progress=not args.no_progress,
    )
    if result is None:  # a helper process of a multi-process run: the first process reports
        return 0
    versus = f"\n{result.versus.line()}" if result.versus is not None else ""
    print_results(result.results, args.json, f"run folder: {result.run_dir}{versus}")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag} {text}: give comma-separated whole numbers, e.g. {flag} 25,100") from None
    if not values:
        raise UserError(f"{flag}: give at least one number")
    return values


def _budgets(values: list[str]) -> tuple[list[int], dict[str, list[int]]]:
    """``--budgets 25,100 --budgets grpo=1024,4096``: the common budgets and the methods' own lists."""
    common: list[int] = []
    own: dict[str, list[int]] = {}
    for text in values:
        name, sep, rest = text.partition("=")
        if sep:
            own[name.strip()] = _int_list(rest, f"--budgets {name.strip()}=")
        else:
            common += _int_list(text, "--budgets")
    if not common:
        raise UserError(
            "--budgets: give the common budgets too (e.g. --budgets 25,100 --budgets grpo=1024,4096); "
            "methods without their own list use them"
        )
    return common, own


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    i, slash, n = text.partition("/")
    try:
        shard = (int(i), int(n)) if slash else None
    except ValueError:
        shard = None
    if shard is None or not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise UserError(
            f"--shard {text}: give I/N with 0 <= I < N, e.g. --shard 0/4 (SLURM: --array=0-3 and --shard "
            "$SLURM_ARRAY_TASK_ID/4)"
        )
    return shard


def cmd_sweep(args: argparse.Namespace) -> int:
    from craft_bench.runner import RunRequest
    from craft_bench.spec import parse_set_args
    from craft_bench.sweep import SweepRequest, run_sweep, to_markdown

    budgets, own = _budgets(args.budgets)
    cells = RunRequest(
        method="",
        suite=args.suite,
        model=args.model,
        limit=args.limit,
        prompts=args.prompts,
        out=args.out,
        sets=parse_set_args(args.sets),
        device=args.device,
        dtype=args.dtype,
        progress=not args.no_progress,
    )
    req = SweepRequest(
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        budgets=budgets,
        cells=cells,
        seeds=_int_list(args.seeds, "--seeds"),
        name=args.name,
        reference=args.reference,
        judges=[j.strip() for j in args.judges.split(",") if j.strip()],
        shard=_shard(args.shard),
        method_budgets=own,
    )
    doc, folder = run_sweep(req)
    print(json.dumps(doc, indent=2) if args.json else to_markdown(doc))
    if not args.json:
        print(f"sweep folder: {folder}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from craft_bench import registry

    kinds = [args.kind] if args.kind else list(registry.REGISTRIES)
    for kind in kinds:
        reg = registry.REGISTRIES[kind]
        print(f"{kind}:")
        entries = list(reg.entries())
        width = max([14] + [len(e.name) for e in entries])
        for entry in entries:
            alias = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
            print(f"  {entry.name:<{width}} {entry.description}{alias}")
            if args.verbose and kind in ("methods", "suites"):
                from craft_bench.spec import field_help

                obj = entry.load()
                for name, tname, default, help_ in field_help(obj.Config):
                    print(f"      {name} ({tname}, default {default!r}): {help_}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from craft_bench.python_api import collect_runs
    from craft_bench.report.tables import render_leaderboard
    from craft_bench.store import Store, atomic_write_text, safe_name

    by_suite = collect_runs(args.out, args.suite)
    store = Store(args.out)
    with store.lock("leaderboard"):
        for suite, entries in by_suite.items():
            rows, settings = [e.results for e in entries], [e.settings for e in entries]
            for fmt in ("md", "csv", "json"):
                atomic_write_text(
                    store.leaderboard_dir / f"{safe_name(suite)}.{fmt}", render_leaderboard(suite, rows, fmt, settings)
                )
            print(render_leaderboard(suite, rows, args.format, settings))
            print()
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from craft_bench.python_api import compare

    c = compare(args.a, args.b)
    print(json.dumps(c.as_dict(), indent=2) if args.json else c.table())
    if args.fail_on_regression and c.regressed:
        print(f"craft-bench: regression: B is significantly worse than A on '{c.headline.metric}'", file=sys.stderr)
        return EXIT_REGRESSION
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from craft_bench.report.site import build_report, summary_json, summary_line

    summary = build_report(
        args.inputs, args.out, thumb_px=args.thumb_size, pairs=args.pairs, progress=not args.no_progress
    )
    for note in summary.notes:
        print(f"craft-bench: note: {note}", file=sys.stderr)
    print(summary_json(summary) if args.json else summary_line(summary))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from craft_bench.bench import BenchConfig, run_bench
    from craft_bench.store import atomic_write_json

    cfg = BenchConfig(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        resolution=args.resolution,
        steps=args.steps,
        batch=args.batch,
        images=args.images,
        repeats=args.repeats,
        train_steps=args.train_steps,
        train_batch=args.train_batch,
        lora_rank=args.lora_rank,
        channels_last=args.channels_last,
        compile=args.compile,
        peak_tflops=args.peak_tflops,
        parts=tuple(p.strip() for p in args.parts.split(",") if p.strip()),
    )
    result = run_bench(cfg)
    if args.json:
        atomic_write_json(Path(args.json), result)
        print(f"figures written to {args.json}")
    return 0


def _delegate(module: str) -> Callable[[list[str]], int]:
    def call(argv: list[str]) -> int:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"this verb is not available in this install ({exc})") from None
        return int(mod.main(argv) or 0)

    return call


VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "sweep": cmd_sweep,
    "ls": cmd_ls,
    "leaderboard": cmd_leaderboard,
    "compare": cmd_compare,
    "report": cmd_report,
    "bench": cmd_bench,
}
DELEGATED = {
    "score": "craft_bench.rewards.cli",
    "mini": "craft_bench.mini.cli",
    "geneval": "craft_bench.suites.geneval_official",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in DELEGATED:
            return _delegate(DELEGATED[argv[0]])(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        args.raw_argv = argv[1:]
        if not args.verb:
            parser.print_help()
            return EXIT_USAGE
        return VERBS[args.verb](args)
    except UserError as exc:
        print(f"craft-bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (
        Exception
    ) as exc:  # a full disk anywhere (checkpoints, logs, caches): one line; atomic writes left nothing partial
        from craft_bench.store import disk_full_error

        full = disk_full_error(exc, getattr(exc, "filename", None) or "the results folder")
        if full is None:
            raise
        print(f"craft-bench: error: {full}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("craft-bench: interrupted; finished work is kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
