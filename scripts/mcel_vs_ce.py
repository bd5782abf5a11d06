"""MCEL against cross-entropy (and the modified hinge loss) under symmetric weight bit flips.

Trains, on the built-in digits (1437 train / 360 test images; ``--data`` names another data
set, e.g. ``mnist-5k``, or ``fashion-mnist`` with ``--data-dir`` holding its IDX files), a BNN
(±1 weights and activations) and a 4-bit QNN MLP with CE, MHL and MCEL at several margins, each
with a learnable output scale (the MCEL authors' ``Scale``) and with the scale fixed at 1, then
evaluates every model on the same simulated chips of the `symmetric-bitflip` device (fresh
independent flips in the stored weight bits at every read). Prints a Markdown table: accuracy,
the paired difference to CE of the same setting (same chips, same flipped bit positions), and
the raw and normalised mean logit margins (MLM).

With one training seed the ± are 95 % intervals over chips (clusters of reads). With several
(``--seeds 0 1 2 3 4``) every model is trained once per seed, each cell is the mean over seeds,
and the ± are 95 % t-intervals over seeds: they then include training noise, which the
chip-only interval does not.

Rerunning an interrupted command continues it: each model trains in its own folder under
``--out`` (named by every setting that changes it) and resumes from the checkpoint written
after each epoch (a finished one is not trained again), and each evaluation is kept in the
folder's ``evaluations.json``, keyed by the checkpoint's contents, the device document, the
BER, the chips, the trials and the chip seed, so only what is missing is computed.

    python scripts/mcel_vs_ce.py [--data digits] [--data-dir DIR] [--model mlp|vgg3]
        [--width 0.25] [--epochs 30] [--chips 10] [--trials 5] [--margins 16 64] [--seeds 0]
        [--bers 0.005 0.01 0.02 0.05 0.1] [--output-scale learned 1] [--weights bnn qnn4]
        [--out runs/mcel_vs_ce]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import memsim
from memsim.experiments.evaluate import Placement, evaluate_model
from memsim.experiments.stats import (
    Interval,
    cluster_mean_interval,
    paired_difference_interval,
    resolvable_difference,
)
from memsim.files import atomic_write_text
from memsim.spec.training import parse_training
from memsim.workloads.training import load_checkpoint, train

WEIGHTS = {"bnn": (1, True), "qnn4": (4, False)}  # name: (weight bits, binary activations)
EVALUATIONS = "evaluations.json"


@dataclass(frozen=True)
class Variant:
    name: str
    loss: dict[str, Any]


@dataclass
class Outcome:
    """One variant of one setting, over its seeds."""

    clean: list[float] = field(default_factory=list)
    mlm: list[float] = field(default_factory=list)
    mlm_normalised: list[float] = field(default_factory=list)
    by_chip: dict[float, list[list[list[float]]]] = field(default_factory=dict)
    """BER -> per seed -> per chip -> trial accuracies."""
    test_images: int = 0


def variants(margins: Sequence[float], bound: float, hinge_b: float) -> list[Variant]:
    out = [Variant("CE", {"kind": "ce"}), Variant(f"MHL b={hinge_b:g}",
                                                   {"kind": "mhl", "hinge_b": hinge_b})]
    out += [Variant(f"MCEL m={m:g}", {"kind": "mcel", "margin": m, "bound": bound})
            for m in margins]
    return out


def parse_scale(text: str) -> str | float:
    if text == "learned":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'learned' or a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a fixed output scale must be > 0, got {text!r}")
    return value


def train_config(weights: str, scale: str | float, variant: Variant, seed: int,
                 args: argparse.Namespace) -> dict[str, Any]:
    bits, binary_activations = WEIGHTS[weights]
    tag = "learned" if scale == "learned" else f"fixed{scale:g}"
    loss = variant.name.replace(" ", "_").replace("=", "")
    # every setting that changes the trained model is in the name: runs of different settings
    # into one --out never meet each other's checkpoints
    setting = f"{args.model}-w{args.width:g}-e{args.epochs}-lr{args.lr:g}-L{args.bound:g}"
    if args.data != "digits":  # the digits' folder names predate --data: kept, so reused
        setting = f"{args.data}-{setting}"
    data: dict[str, Any] = {"name": args.data}
    if args.data_dir is not None:
        data["dir"] = str(Path(args.data_dir).expanduser().resolve())
    return {
        "schema_version": 1,
        "name": f"{setting}-{weights}-{tag}-{loss}-s{seed}",
        "seed": seed,
        "data": data,
        "model": {"name": args.model, "weight_bits": bits,
                  "binary_activations": binary_activations,
                  "options": {"width_multiplier": args.width, "output_scale": scale}},
        "loss": variant.loss,
        "optimizer": {"kind": "adam", "lr": args.lr, "schedule": "cosine"},
        "epochs": args.epochs,
        "batch_size": 64,
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_evaluations(path: Path, checkpoint_hash: str) -> dict[str, Any]:
    """The evaluations kept in a model's folder for this checkpoint ({} if none, if they are of
    an earlier checkpoint of the folder, or unreadable: then they are redone)."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(kept, dict) or kept.get("checkpoint") != checkpoint_hash:
        return {}
    evaluations = kept.get("evaluations")
    return evaluations if isinstance(evaluations, dict) else {}


def run_variant(weights: str, scale: str | float, variant: Variant,
                device: memsim.Device, args: argparse.Namespace) -> Outcome:
    outcome = Outcome()
    device_hash = _sha256(json.dumps(device.document, sort_keys=True, default=str).encode())
    for seed in args.seeds:
        spec = parse_training(train_config(weights, scale, variant, seed, args))
        checkpoint = train(spec, Path(args.out) / spec.name).checkpoint
        store = checkpoint.parent / EVALUATIONS
        checkpoint_hash = _sha256(checkpoint.read_bytes())
        kept = _read_evaluations(store, checkpoint_hash)
        trained = None
        for ber in args.bers:
            key = json.dumps({"device": device_hash, "ber": ber, "chips": args.chips,
                              "trials": args.trials, "chip_seed": args.chip_seed},
                             sort_keys=True)
            if key not in kept:
                if trained is None:
                    trained = load_checkpoint(checkpoint)
                test = trained.dataset.test
                ev = evaluate_model(trained.model, test.images, test.labels,
                                    [Placement("weights", device, {"ber": ber})],
                                    chips=args.chips, trials=args.trials, seed=args.chip_seed)
                kept[key] = {"by_chip": ev.accuracy_by_chip(), "clean": ev.clean_accuracy,
                             "mlm": ev.clean_mlm, "mlm_normalised": ev.clean_mlm_normalised,
                             "test_images": int(test.labels.shape[0])}
                atomic_write_text(store, json.dumps(
                    {"checkpoint": checkpoint_hash, "evaluations": kept}, indent=1) + "\n")
            outcome.by_chip.setdefault(ber, []).append(kept[key]["by_chip"])
        last = kept[key]  # clean figures do not depend on the BER
        outcome.clean.append(last["clean"])
        outcome.mlm.append(last["mlm"])
        outcome.mlm_normalised.append(last["mlm_normalised"])
        outcome.test_images = last["test_images"]
    return outcome


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _cell(interval: Interval) -> str:
    return f"{interval.mean:.1%} ± {interval.half_width:.1%}"


def accuracy_cell(outcome: Outcome, baseline: Outcome | None, ber: float) -> str:
    seeds = outcome.by_chip[ber]
    if len(seeds) == 1:
        acc = cluster_mean_interval(seeds[0])
    else:
        acc = cluster_mean_interval([[_mean([_mean(c) for c in chips])] for chips in seeds])
    if baseline is None:
        return _cell(acc)
    pairs = zip(seeds, baseline.by_chip[ber], strict=True)
    if len(seeds) == 1:
        delta = paired_difference_interval(seeds[0], baseline.by_chip[ber][0])
    else:
        delta = cluster_mean_interval([[paired_difference_interval(a, b).mean]
                                       for a, b in pairs])
    return f"{_cell(acc)} ({delta.mean:+.1%} ± {delta.half_width:.1%})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits",
                        help="data set (default digits; e.g. mnist-5k, fashion-mnist)")
    parser.add_argument("--data-dir", help="folder of an on-disk data set (fashion-mnist: the "
                                           "four IDX files, raw or .gz)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--model", choices=("mlp", "vgg3"), default="mlp",
                        help="architecture (vgg3 runs on the 8x8 digits too)")
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--margins", type=float, nargs="+", default=[16.0, 64.0])
    parser.add_argument("--bound", type=float, default=100.0)
    parser.add_argument("--hinge-b", type=float, default=128.0)
    parser.add_argument("--weights", nargs="+", choices=tuple(WEIGHTS), default=list(WEIGHTS))
    parser.add_argument("--output-scale", type=parse_scale, nargs="+", default=["learned", 1.0],
                        help="'learned' and/or fixed values of the logits' output scale")
    parser.add_argument("--bers", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--chips", type=int, default=10)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds; several give intervals over seeds")
    parser.add_argument("--chip-seed", type=int, default=0,
                        help="seed of the simulated chips (the same for every model)")
    parser.add_argument("--out", default="runs/mcel_vs_ce")
    args = parser.parse_args(argv)
    if any(not 0.0 < b <= 1.0 for b in args.bers):
        parser.error("--bers: every bit error rate must be in (0, 1]")
    start = time.perf_counter()
    test_images = 0
    device = memsim.load_device("symmetric-bitflip")
    print("| weights | output scale | loss | clean acc | " + " | ".join(
        f"acc @ BER {b:.1%} (Δ vs CE)" for b in args.bers) + " | MLM | norm. MLM |")
    print("|---|---|---|---|" + "---|" * len(args.bers) + "---|---|")
    for weights in args.weights:
        for scale in args.output_scale:
            baseline: Outcome | None = None
            for variant in variants(args.margins, args.bound, args.hinge_b):
                outcome = run_variant(weights, scale, variant, device, args)
                test_images = outcome.test_images
                cells = [accuracy_cell(outcome, baseline, ber) for ber in args.bers]
                baseline = baseline or outcome
                label = "BNN" if weights == "bnn" else "4-bit"
                scale_label = "learned" if scale == "learned" else f"fixed {scale:g}"
                print(f"| {label} | {scale_label} | {variant.name} | "
                      f"{_mean(outcome.clean):.1%} | " + " | ".join(cells) +
                      f" | {_mean(outcome.mlm):.2f} | {_mean(outcome.mlm_normalised):.2f} |",
                      flush=True)
    print(f"\nResolvable: with {test_images} test images a difference between two models on "
          f"the same data must exceed about {resolvable_difference(test_images, 0.9):.1%} (at "
          "90 % accuracy, alpha 0.05) to stand out from the test-set noise.")
    print(f"\n{time.perf_counter() - start:.0f} s; command: python scripts/mcel_vs_ce.py "
          + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


def _main_with_one_line_errors() -> int:
    try:
        return main()
    except memsim.MemsimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(_main_with_one_line_errors())
