"""MCEL against cross-entropy (and the modified hinge loss) under symmetric weight bit flips.

Trains, on the built-in digits (1437 train / 360 test images), a BNN and a 4-bit QNN MLP with
CE, MHL and MCEL at several margins, then evaluates every model on the same simulated chips of
the `symmetric-bitflip` device (fresh independent flips in the stored weight bits at every
read) at BER 0, 0.5 %, 1 % and 2 %. Prints a Markdown table: accuracy with its 95 % interval
(chips as clusters), the paired difference to CE (same chips, same flipped bit positions), and
the raw and normalised mean logit margins (MLM).

    python scripts/mcel_vs_ce.py [--model mlp|vgg3] [--width 0.25] [--epochs 30] [--chips 10]
        [--trials 5] [--margins 4 16 64] [--bound 100] [--out runs/mcel]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import memsim
from memsim.experiments.evaluate import ModelEvaluation, Placement, evaluate_model
from memsim.experiments.stats import paired_difference_interval, resolvable_difference
from memsim.spec.training import parse_training
from workloads.training import load_checkpoint, train

BERS = (0.0, 0.005, 0.01, 0.02)


@dataclass(frozen=True)
class Variant:
    name: str
    loss: dict[str, Any]


def variants(margins: list[float], bound: float, hinge_b: float) -> list[Variant]:
    out = [Variant("CE", {"kind": "ce"}), Variant(f"MHL b={hinge_b:g}",
                                                   {"kind": "mhl", "hinge_b": hinge_b})]
    out += [Variant(f"MCEL m={m:g}", {"kind": "mcel", "margin": m, "bound": bound})
            for m in margins]
    return out


def train_config(arch: str, bits: int, variant: Variant, args: argparse.Namespace
                 ) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": f"{arch}-{variant.name.replace(' ', '_').replace('=', '')}",
        "seed": args.seed,
        "data": {"name": "digits"},
        "model": {"name": args.model, "weight_bits": bits,
                  "options": {"width_multiplier": args.width}},
        "loss": variant.loss,
        "optimizer": {"kind": "adam", "lr": args.lr, "schedule": "cosine"},
        "epochs": args.epochs,
        "batch_size": 64,
    }


def by_chip(result: ModelEvaluation) -> list[list[float]]:
    chips: dict[int, list[float]] = {}
    for t in result.trials:
        chips.setdefault(t.chip, []).append(t.accuracy)
    return [chips[c] for c in sorted(chips)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--model", choices=("mlp", "vgg3"), default="mlp",
                        help="architecture (vgg3 runs on the 8x8 digits too)")
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--margins", type=float, nargs="+", default=[4.0, 16.0, 64.0])
    parser.add_argument("--bound", type=float, default=100.0)
    parser.add_argument("--hinge-b", type=float, default=128.0)
    parser.add_argument("--chips", type=int, default=10)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/mcel_vs_ce")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = memsim.load_device("symmetric-bitflip")
    print("| weights | loss | clean acc | " + " | ".join(
        f"acc @ BER {b:.1%} (Δ vs CE)" for b in BERS[1:]) + " | MLM | norm. MLM |")
    print("|---|---|---|" + "---|" * (len(BERS) - 1) + "---|---|")
    for arch, bits in (("bnn", 1), ("qnn4", 4)):
        baseline: dict[float, list[list[float]]] = {}
        for variant in variants(args.margins, args.bound, args.hinge_b):
            spec = parse_training(train_config(arch, bits, variant, args))
            result = train(spec, Path(args.out) / spec.name)
            trained = load_checkpoint(result.checkpoint)
            test = trained.dataset.test
            cells = []
            clean = None
            for ber in BERS[1:]:
                placement = Placement("weights", device, {"ber": ber})
                ev = evaluate_model(trained.model, test.images, test.labels, [placement],
                                    chips=args.chips, trials=args.trials, seed=args.seed)
                clean = ev
                chips = by_chip(ev)
                if variant.name == "CE":
                    baseline[ber] = chips
                    delta = ""
                else:
                    d = paired_difference_interval(chips, baseline[ber])
                    delta = f" ({d.mean:+.1%} ± {d.half_width:.1%})"
                a = ev.accuracy
                cells.append(f"{a.mean:.1%} ± {a.half_width:.1%}{delta}")
            assert clean is not None
            print(f"| {'BNN' if bits == 1 else f'{bits}-bit'} | {variant.name} | "
                  f"{clean.clean_accuracy:.1%} | " + " | ".join(cells) +
                  f" | {clean.clean_mlm:.2f} | {clean.clean_mlm_normalised:.2f} |", flush=True)
    n_test = 360
    print(f"\nResolvable: with {n_test} test images a paired difference between two models on "
          f"the same data must exceed about "
          f"{resolvable_difference(n_test, 0.9):.1%} (at 90 % accuracy, alpha 0.05) to be told "
          "apart from the test-set noise; the ± above are 95 % intervals over chips and do not "
          "include that noise.")
    print(f"\n{time.perf_counter() - start:.0f} s; command: python scripts/mcel_vs_ce.py "
          + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
