"""Start-up time of the `memsim` command line against a bare Python start.

    python benchmarks/bench_cli.py [--repeats 7] [--markdown]

Each row is a command run as a fresh (cold) subprocess of this interpreter: `python -m memsim
--help` and `python -m memsim devices list`, with `python -c pass` as the baseline. Start-up
time drifts with the machine's load, so the baseline is re-timed next to every row: each of
`--repeats` repetitions runs the baseline and then the command, alternating, and a row reports
the median of its command's times, the median of its own baseline's times and their ratio. The
wall time of `subprocess.run` is measured (interpreter start, imports, parsing, output to
/dev/null). The goal for `memsim --help` is under 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

BASELINE = ("-c", "pass")
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("-m", "memsim", "--help"),
    ("-m", "memsim", "devices", "list"),
)
DEFAULT_REPEATS = 7
HELP_TARGET_SECONDS = 0.5


@dataclass(frozen=True)
class Row:
    """One command's median start-up time next to the baseline timed alternately with it."""

    command: str
    seconds: float
    baseline_seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.baseline_seconds


def time_once(python: str, args: Sequence[str]) -> float:
    """Wall seconds of one cold run of `python *args`; a failing command is an error."""
    start = time.perf_counter()
    done = subprocess.run([python, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace').strip()}")
    return seconds


def measure(python: str, repeats: int) -> list[Row]:
    """Every command `repeats` times, each run preceded by a baseline run (interleaved)."""
    times: dict[tuple[str, ...], tuple[list[float], list[float]]] = {
        c: ([], []) for c in COMMANDS}
    for _ in range(repeats):
        # commands interleaved within a repetition too: a slow spell hits every row alike
        for command in COMMANDS:
            base, own = times[command]
            base.append(time_once(python, BASELINE))
            own.append(time_once(python, command))
    return [Row(" ".join(("python", *c)), statistics.median(times[c][1]),
                statistics.median(times[c][0])) for c in COMMANDS]


def format_table(rows: Sequence[Row], repeats: int, markdown: bool) -> str:
    header = ("command", "median s", "`python -c pass` s", "ratio")
    cells = [(f"`{r.command}`" if markdown else r.command, f"{r.seconds:.3f}",
              f"{r.baseline_seconds:.3f}", f"{r.ratio:.1f}x") for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---:|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
    else:
        plain = tuple(h.replace("`", "") for h in header)
        widths = [max(len(x[i]) for x in (plain, *cells)) for i in range(len(plain))]
        lines = ["  ".join(x[i].ljust(widths[i]) if i == 0 else x[i].rjust(widths[i])
                           for i in range(len(x))) for x in (plain, *cells)]
    lines.append(f"medians of {repeats} cold start(s) each, baseline re-timed before every run")
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=_positive_int, default=DEFAULT_REPEATS,
                        help=f"cold starts of each command and of its baseline (default "
                             f"{DEFAULT_REPEATS})")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter to start (default: this one)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows = measure(args.python, args.repeats)
    print(format_table(rows, args.repeats, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
