"""Seconds per training epoch: CE, MCEL, bit-flip injection and RandBET on the same model and data.

    python benchmarks/bench_training.py [--rounds 3] [--epochs 1] [--batches N] [--model vgg3]
        [--width 1] [--weight-bits 4] [--data mnist-5k] [--batch-size 64] [--threads 1]
        [--markdown | --json]

Every method trains the same model (same seed, so the same initial weights and batch order)
through `memsim.workloads.training.train` with a `TrainSpec`, the code path of `memsim train`:

- ``CE``: plain training with cross-entropy (the baseline);
- ``MCEL``: plain training with the margin cross-entropy loss (m = 32, L = 100);
- ``bit-flip``: bit-flip injection training with CE, the weights stored in a chip of
  `symmetric-bitflip` at BER 1 % and read at every step (a pool of 4 chips);
- ``RandBET``: CE, the mean of the gradients of a clean pass and of a pass with random
  symmetric flips at BER 1 %, then the latent weights clipped to [-0.1, 0.1].

A run's figure is its mean of the seconds per epoch that `train` records (the training steps
and the clean test-set evaluation of each epoch; building the model and writing the checkpoint
are not in it). One untimed run of every method on two batches first loads and compiles what
each needs. Then each round trains every method once, in an order rotated from round to round,
so CE is re-timed in every round and a busy spell of the shared machine hits every method
alike; ``x CE`` is the median over rounds of each method's time over CE's time of the same
round, ``x CE by round`` the smallest and largest of those ratios (how much the machine's load
moved them), and ``median s/epoch`` the median of its runs. ``--batches N`` trains on the first
N × batch-size images of the training split only (the split is in a fixed random order, so
that is a class-balanced sample), to keep a run short; the test set is always whole. torch and
numba run on ``--threads`` threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import torch

import memsim.workloads.training as training
from memsim.spec.training import TrainSpec, parse_training

MCEL_GOAL = 1.05
"""MCEL's epoch at most this many times CE's (the loss is a few element-wise ops on logits)."""

METHODS: dict[str, dict[str, Any]] = {
    "CE": {"loss": {"kind": "ce"}},
    "MCEL": {"loss": {"kind": "mcel", "margin": 32, "bound": 100}},
    "bit-flip": {"loss": {"kind": "ce"},
                 "method": {"kind": "bitflip", "device": "symmetric-bitflip",
                            "knobs": {"ber": 0.01}, "chips": 4}},
    "RandBET": {"loss": {"kind": "ce"},
                "method": {"kind": "randbet", "ber": 0.01, "clip_weights": 0.1}},
}


@dataclass(frozen=True)
class Summary:
    """One method over the rounds."""

    method: str
    seconds: tuple[float, ...]
    """Seconds per epoch, one per round."""
    ratios: tuple[float, ...]
    """Seconds over CE's of the same round, one per round."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def x_ce(self) -> float:
        return statistics.median(self.ratios)


def spec_for(method: str, args: argparse.Namespace, epochs: int,
             batches: int | None = None) -> TrainSpec:
    """The training config of `method`; `batches`: train on that many batches only."""
    data: dict[str, Any] = {"name": args.data}
    if batches is not None:
        data["train_images"] = batches * args.batch_size
    config = {
        "schema_version": 1,
        "name": f"bench-{method}",
        "seed": 0,
        "data": data,
        "model": {"name": args.model, "weight_bits": args.weight_bits,
                  "options": {"width_multiplier": args.width}},
        "optimizer": {"kind": "adam", "lr": 0.001},
        "epochs": epochs,
        "batch_size": args.batch_size,
        "torch_threads": args.threads,
        "device": "cpu",
        **METHODS[method],
    }
    return parse_training(config, f"<bench_training {method}>")


def seconds_per_epoch(spec: TrainSpec) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        result = training.train(spec, Path(tmp))
    return statistics.fmean(r.seconds for r in result.history)


def measure(args: argparse.Namespace) -> list[Summary]:
    names = list(METHODS)
    for name in names:  # warm-up: load and compile, untimed
        seconds_per_epoch(spec_for(name, args, 1, batches=2))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(seconds_per_epoch(spec_for(name, args, args.epochs,
                                                          batches=args.batches)))
    return [Summary(n, tuple(times[n]), tuple(t / c for t, c in zip(times[n], times["CE"],
                                                                     strict=True)))
            for n in names]


HEADER = ("method", "median s/epoch", "x CE", "x CE by round")


def spread(s: Summary) -> str:
    return f"{min(s.ratios):.2f}-{max(s.ratios):.2f}x"


def table(rows: Sequence[Summary], markdown: bool) -> list[str]:
    body = [(s.method, f"{s.median_s:.3f}", f"{s.x_ce:.2f}x", spread(s)) for s in rows]
    if markdown:
        return ["| " + " | ".join(HEADER) + " |", "|---|---:|---:|---:|",
                *("| " + " | ".join(b) + " |" for b in body)]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(HEADER)]
    return ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                      for i, (h, w) in enumerate(zip(HEADER, widths, strict=True))),
            *("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(b, widths, strict=True)))
              for b in body)]


def setting(args: argparse.Namespace, train_images: int, test_images: int) -> str:
    return (f"{args.model} (width {args.width:g}, {args.weight_bits}-bit weights) on {args.data}: "
            f"{train_images} training images in batches of {args.batch_size}, {test_images} "
            f"test images; {args.epochs} epoch(s) per run, {args.rounds} round(s), "
            f"{args.threads} thread(s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    parser.add_argument("--batches", type=int, default=None,
                        help="train on the first N batches only (default: the whole split)")
    parser.add_argument("--model", default="vgg3", help="model name (default vgg3)")
    parser.add_argument("--width", type=float, default=1.0,
                        help="width multiplier (default 1)")
    parser.add_argument("--weight-bits", type=int, default=4, help="1 to 8 (default 4)")
    parser.add_argument("--data", default="mnist-5k", help="data set (default mnist-5k)")
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and numba threads (default 1)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    out.add_argument("--json", action="store_true", help="print the runs as JSON")
    args = parser.parse_args(argv)
    if min(args.rounds, args.epochs, args.batch_size, args.threads,
           args.batches if args.batches is not None else 1) < 1:
        parser.error("--rounds, --epochs, --batches, --batch-size and --threads must be >= 1")
    threads = torch.get_num_threads(), numba.get_num_threads()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    try:
        rows = measure(args)
        data = training._dataset(spec_for("CE", args, 1))
    finally:
        torch.set_num_threads(threads[0])
        numba.set_num_threads(threads[1])
    train_images = len(data.train) if args.batches is None else min(
        len(data.train), args.batches * args.batch_size)
    if args.json:
        print(json.dumps({"setting": setting(args, train_images, len(data.test)),
                          "goal_mcel_x_ce": MCEL_GOAL,
                          "methods": [{"method": s.method, "seconds": s.seconds,
                                       "ratios": s.ratios, "median_s": s.median_s,
                                       "x_ce": s.x_ce} for s in rows]}, indent=2))
        return 0
    print(setting(args, train_images, len(data.test)))
    print()
    print("\n".join(table(rows, args.markdown)))
    print()
    mcel = next(s for s in rows if s.method == "MCEL")
    print(f"MCEL <= {MCEL_GOAL:g}x CE: {'met' if mcel.x_ce <= MCEL_GOAL else 'missed'} "
          f"({mcel.x_ce:.2f}x, rounds {spread(mcel)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
