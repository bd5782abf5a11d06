"""Evaluations per second of a sweep: the batched path against the per-read reference path.

    python benchmarks/bench_sweep.py [--config quickstart] [--rounds 3] [--set KEY=VALUE ...]
                                     [--baseline-src DIR] [--json]

The config's models are trained once (untimed, by the first run, which also loads or compiles
every kernel). Then each round runs the sweep once per variant, in a fresh process each, in
turn, on copies of those models: `batched` (the default path: up to 16 reads per forward pass,
weights decoded through tables), `reference` (`--reference-path`: every read decoded, checked
and loaded on its own, one forward pass each) and, with `--baseline-src DIR`, `baseline`: the
same command run from another source tree of memsim (for instance a `git worktree` of an older
commit), which must accept the same config. Each run is `memsim run --executor inprocess
--threads-per-worker 1` (one core), and its time is the one it logs for its evaluations
(training, aggregation and the report excluded). A variant's figure is its median over the
rounds, and the ratios are evaluations per second over the reference path's (and the
baseline's), so a busy spell of the machine hits every variant alike.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LOGGED = re.compile(r"^(\d+) evaluations in ([0-9.]+) s", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    variant: str
    evaluations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.evaluations / self.seconds if self.seconds > 0 else float("inf")


def _sweep(source: Path, config: str, out: Path, extra: Sequence[str],
           overrides: Sequence[str]) -> Run:
    env = dict(os.environ, PYTHONPATH=str(source))
    command = [sys.executable, "-m", "memsim", "run", config, "--out", str(out),
               "--executor", "inprocess", "--threads-per-worker", "1", "--no-progress",
               *extra, *(f"--set={o}" for o in overrides)]
    done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True,
                          check=False)
    found = _LOGGED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                         f"{done.stderr[-2000:]}")
    return Run("", int(found.group(1)), float(found.group(2)))


def measure(config: str, rounds: int, overrides: Sequence[str], baseline: Path | None,
            work: Path) -> list[Run]:
    """Every timed run, in the order run."""
    variants: list[tuple[str, Path, list[str]]] = [
        ("batched", ROOT, []), ("reference", ROOT, ["--reference-path"])]
    if baseline is not None:
        variants.append(("baseline", baseline, []))
    trained = work / "trained"
    _sweep(ROOT, config, trained, [], overrides)  # trains, compiles or loads the kernels
    def fresh(out: Path) -> Path:
        if (trained / "models").is_dir():  # a config with checkpoints trains nothing
            shutil.copytree(trained / "models", out / "models")
        return out

    if baseline is not None:  # the other tree's numba cache lies beside its own sources
        _sweep(baseline, config, fresh(work / "warm-baseline"), [], overrides)
    runs = []
    for r in range(rounds):
        for name, source, extra in variants:
            out = fresh(work / f"{name}-{r}")
            run = _sweep(source, config, out, extra, overrides)
            runs.append(Run(name, run.evaluations, run.seconds))
            shutil.rmtree(out)
    return runs


def summary(runs: Sequence[Run]) -> dict[str, dict[str, float]]:
    """Per variant: evaluations, median seconds, evaluations per second and the ratios."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.variant for r in runs):
        mine = [r for r in runs if r.variant == name]
        seconds = statistics.median(r.seconds for r in mine)
        out[name] = {"evaluations": mine[0].evaluations, "seconds": seconds,
                     "per_second": mine[0].evaluations / seconds}
    for row in out.values():
        for base in ("reference", "baseline"):
            if base in out:
                row[f"x_{base}"] = row["per_second"] / out[base]["per_second"]
    return out


def format_table(table: dict[str, dict[str, float]], rounds: int) -> str:
    """`summary` as a text table."""
    base = "baseline" in table
    lines = [f"{'variant':10s} {'evals':>6s} {'seconds':>8s} {'evals/s':>8s} {'x ref':>6s}"
             + (f" {'x base':>6s}" if base else "")]
    for name, row in table.items():
        lines.append(f"{name:10s} {row['evaluations']:6.0f} {row['seconds']:8.2f} "
                     f"{row['per_second']:8.1f} {row['x_reference']:6.2f}"
                     + (f" {row['x_baseline']:6.2f}" if base else ""))
    lines.append(f"{rounds} rounds, medians; one core (--executor inprocess, 1 thread)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="quickstart")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (e.g. chips=2)")
    parser.add_argument("--baseline-src", type=Path, metavar="DIR",
                        help="another memsim source tree to time the same way")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        runs = measure(args.config, args.rounds, args.set, args.baseline_src, Path(tmp))
    table = summary(runs)
    if args.json:
        print(json.dumps({"runs": [asdict(r) for r in runs], "summary": table}, indent=2))
        return 0
    print(format_table(table, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
