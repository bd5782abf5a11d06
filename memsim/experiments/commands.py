"""The `memsim run`, `memsim pareto` and `memsim demo` subcommands (parsing and printing only).

`add_commands(subparsers)` registers them on the `memsim` parser; each command function takes
the parsed arguments and returns an exit status, raising `MemsimError` for bad input.
`add_command` adds one command with its example; the `memsim` parser uses it for all of them.
Nothing here imports torch or the physics until a command runs (`memsim --help` stays fast).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memsim.errors import MemsimError
from memsim.experiments.executors import EXECUTOR_NAMES
from memsim.spec.names import DEFAULT_READS_PER_PASS, TORCH_DEVICES

if TYPE_CHECKING:
    from memsim.experiments.aggregation import SweepResults
    from memsim.experiments.evaluate import EvaluationOptions

__all__ = [
    "DEMO_CONFIG",
    "add_command",
    "add_commands",
    "add_evaluation_options",
    "bounded_int",
    "cmd_demo",
    "cmd_pareto",
    "cmd_run",
    "evaluation_options",
    "input_folder",
    "nonnegative_int",
    "output_file",
    "output_folder",
    "positive_int",
    "seed_int",
]

DEMO_CONFIG = "quickstart"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_command(subparsers: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    """A command on `subparsers` whose --help ends with `example` (lines kept as written)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=help[:1].upper() + help[1:] + ".",
        epilog=f"example: {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in [low, high] (a bad count is a usage error, exit 2). The
    upper bounds keep a typo from allocating without limit; each is named in the message."""
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            span = ("from 0 to 2^64 - 1" if (low, high) == (0, (1 << 64) - 1)
                    else f">= {low}" if high >= 1 << 62 else f"from {low:,} to {high:,}")
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}")
        return value

    return integer


def output_folder(text: str) -> str:
    """argparse type: a folder to write into, existing or not, but not a file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


def output_file(text: str) -> str:
    """argparse type: a file to write, in a folder that exists (not created silently)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name the file to write")
    parent = path.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{parent}: no such folder" if not parent.exists()
                                         else f"{parent} is not a folder")
    return text


def input_folder(text: str) -> str:
    """argparse type: an existing folder to read from."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder" if not Path(text).exists()
                                         else f"{text} is a file, not a folder")
    return text


# Bounds of the count options: as a config's `chips.max` and `trials`; workers and threads
# beyond any machine's cores; 2^32 cells characterised make 512 MiB per fault map.
MAX_CHIPS, MAX_TRIALS, MAX_WORKERS, MAX_READS_PER_PASS = 1 << 20, 1 << 16, 1024, 4096
MAX_CELLS = 1 << 32
positive_int = bounded_int(1, 1 << 62)
seed_int = bounded_int(0, (1 << 64) - 1)
nonnegative_int = bounded_int(0, 1 << 62)


def _executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=EXECUTOR_NAMES, default="pool",
                   help="where evaluations run: this process, a local process pool (default, "
                        "all cores) or Ray")
    p.add_argument("--workers", type=bounded_int(1, MAX_WORKERS), metavar="N",
                   help="worker processes (pool) or CPUs of a local Ray instance (default: all "
                        "cores)")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="a running Ray cluster (with --executor ray); default: start a local one")
    p.add_argument("--threads-per-worker", type=bounded_int(1, MAX_WORKERS), default=1,
                   metavar="T",
                   help="torch and numba threads per worker (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_evaluation_options(p)


def add_evaluation_options(p: argparse.ArgumentParser) -> None:
    """How trials run: `--reads-per-pass` and `--reference-path` (never what they give) and
    `--torch-device`."""
    p.add_argument("--reads-per-pass", type=bounded_int(1, MAX_READS_PER_PASS),
                   default=DEFAULT_READS_PER_PASS,
                   metavar="N",
                   help="corrupted weight sets evaluated in one batched forward pass (default "
                        f"{DEFAULT_READS_PER_PASS}, fewer for models with large activations; "
                        "results are the same for any N)")
    p.add_argument("--reference-path", action="store_true",
                   help="evaluate every read on its own, its codes decoded, checked and loaded "
                        "one at a time (the slower path the batched one is checked against)")
    p.add_argument("--torch-device", choices=TORCH_DEVICES, default="cpu",
                   help="where forward passes run (default cpu; auto: CUDA if torch sees a "
                        "device, else the CPU with a note; results on CUDA are keyed apart)")


def evaluation_options(args: argparse.Namespace) -> EvaluationOptions:
    """The `EvaluationOptions` of `add_evaluation_options`' arguments."""
    from memsim.experiments.evaluate import EvaluationOptions

    return EvaluationOptions(reads_per_pass=args.reads_per_pass,
                             reference_path=args.reference_path, torch_device=args.torch_device)


def add_commands(subparsers: Any) -> None:
    """Register `run`, `pareto` and `demo` on the `memsim` parser's subparsers."""
    p = add_command(
        subparsers, "run", "train, sweep and report an experiment config (resumable)",
        "memsim run quickstart --out runs/quickstart\n"
        "         memsim run configs/quickstart.yaml --out runs/try --dry-run --set trials=2")
    p.add_argument("config", help="built-in config name (e.g. quickstart) or YAML file")
    p.add_argument("--out", type=output_folder, required=True, metavar="DIR",
                   help="output directory (results.sqlite, results.csv, pareto.csv, ...); "
                        "rerunning into it skips finished evaluations")
    p.add_argument("--data-dir", type=input_folder, metavar="DIR",
                   help="directory of the experiment's data set (overrides data.dir)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config field (value read as YAML), e.g. --set trials=2")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, build everything and evaluate a token amount (one chip, "
                        "one trial, first operating point, 64 test images, untrained models) "
                        "into DIR/dry-run")
    p.add_argument("--allow-code", action="store_true",
                   help="let the config's torch_model builders be imported and called: they "
                        "run Python code named in the config (off: such a config is refused)")
    _executor_options(p)
    p.set_defaults(func=cmd_run)

    p = add_command(
        subparsers, "pareto", "re-aggregate a sweep (CSVs, fronts, report), optionally under "
                              "another deployment or reference, without evaluating anything",
        "memsim pareto memsim-demo --set deployment=streamed --out memsim-demo/streamed")
    p.add_argument("dir", metavar="DIR", help="the --out directory of memsim run")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="reprice: override the deployment, reference or pareto section (value "
                        "read as YAML), e.g. --set deployment.inference_rate_hz=10")
    p.add_argument("--out", type=output_folder, metavar="DIR2",
                   help="write the CSVs and the report here instead of into DIR (the store "
                        "stays in DIR)")
    p.set_defaults(func=cmd_pareto)

    p = add_command(
        subparsers, "demo", f"the built-in {DEMO_CONFIG} experiment: digits, BNN and 4-bit "
                            "models with CE and MCEL, swept over the catalogue",
        "memsim demo --out memsim-demo --workers 2")
    p.add_argument("--out", type=output_folder, default="memsim-demo", metavar="DIR",
                   help="output directory (default: memsim-demo)")
    _executor_options(p)
    p.set_defaults(func=cmd_demo)


def _command_line(args: argparse.Namespace) -> str:
    """The command as `memsim.cli.main` was given it."""
    return str(getattr(args, "command_line", "memsim"))


def _run(config: str, args: argparse.Namespace, overrides: list[str], dry_run: bool
         ) -> tuple[SweepResults, list[Path]]:
    # torch and the workloads load here, not when `memsim devices ...` starts
    from memsim.experiments.runner import run_experiment
    from memsim.spec.experiment import load_experiment

    spec = load_experiment(config, overrides)
    results = run_experiment(
        spec, args.out, executor=args.executor, workers=args.workers, address=args.address,
        threads_per_worker=args.threads_per_worker, dry_run=dry_run,
        progress=not args.no_progress, log=_log, command=_command_line(args),
        evaluation=evaluation_options(args), allow_code=getattr(args, "allow_code", False))
    return results, list(results.outputs)


def _summary(results: SweepResults, paths: list[Path]) -> None:
    evaluated = sum(1 for c in results.cells if c.chips)
    print(f"{results.name}: {evaluated} of {len(results.cells)} cells evaluated"
          f"{'' if results.complete else ' (incomplete)'}")
    for p in paths:
        print(f"  {p}")


def _report_path(paths: list[Path]) -> Path:
    reports = [p for p in paths if p.name == "report.md"]
    return reports[0] if reports else next(p for p in paths if p.name == "results.csv")


def _check_executor(args: argparse.Namespace) -> None:
    # before the (long) training starts, and as bad input (exit 2): the executor's own checks
    # run only when the sweep begins and raise an ExecutorError, a RunFailure (exit 1)
    if args.address is not None and args.executor != "ray":
        raise MemsimError("--address is for --executor ray")
    if args.executor == "inprocess" and args.workers not in (None, 1):
        raise MemsimError("the in-process executor has one worker")


def cmd_run(args: argparse.Namespace) -> int:
    _check_executor(args)
    overrides = list(args.set)
    if args.data_dir is not None:
        # JSON text is YAML: the path stays a string whatever characters it holds
        overrides.append("data.dir=" + json.dumps(os.path.abspath(args.data_dir)))
    started = time.perf_counter()
    results, paths = _run(args.config, args, overrides, args.dry_run)
    _summary(results, paths)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from memsim.experiments.aggregation import aggregate
    from memsim.experiments.outputs import write_outputs

    started = time.perf_counter()
    results = aggregate(args.dir, args.set)
    out = Path(args.out) if args.out else results.out_dir
    _summary(results, write_outputs(out, results, command=_command_line(args)))
    print(f"done in {time.perf_counter() - started:.1f} s (nothing evaluated)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _check_executor(args)
    started = time.perf_counter()
    results, paths = _run(DEMO_CONFIG, args, [], False)
    _summary(results, paths)
    print(f"done in {time.perf_counter() - started:.1f} s; report: {_report_path(paths)}")
    return 0
