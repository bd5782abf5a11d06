"""MCEL against cross-entropy (and the modified hinge loss) under symmetric weight bit flips.

Trains, on the built-in digits (1437 train / 360 test images; ``--data`` names another data
set, e.g. ``mnist-5k``, or ``fashion-mnist`` with ``--data-dir`` holding its IDX files), a BNN
(±1 weights and activations) and a 4-bit QNN MLP (``--weights``: also 2 and 8 bits) with CE,
MHL and MCEL at several margins, each with a learnable output scale (the MCEL authors'
``Scale``) and with the scale fixed at 1, then evaluates every model on the same simulated
chips of the `symmetric-bitflip` device (fresh independent flips in the stored weight bits at
every read). Prints a Markdown table: accuracy,
the paired difference to CE of the same setting (same chips, same flipped bit positions), and
the raw and normalised mean logit margins (MLM).

``--losses`` adds CE with bit-flip injection (``bitflip``: weights read through chips of
`symmetric-bitflip` at ``--inject-ber`` in every step) or RandBET, and drops MHL; ``--device
NAME:KNOB=VALUE`` adds a catalogue device's operating point as a column. For k-bit models,
``--ranges`` sets how the quantiser's range is chosen (``max``: each tensor's max |w|;
``fixed``: ±``--weight-clip``, the latent weights clipped there too; ``learned``: an LSQ step),
``--scale-in-memory`` adds a table with every layer's float32 scale stored in the faulty memory
(its bits flip with the same BER), and ``--codes`` a table of how the weight codes spread.
``--faulty hidden last`` puts only the hidden layers, or only the last, in the faulty memory
(columns for each).

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
        [--losses ce mhl mcel] [--device sram-14nm:v_rel=0.82] [--ranges max fixed learned]
        [--scale-in-memory] [--codes] [--out runs/mcel_vs_ce]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

import memsim
from memsim.experiments.evaluate import (
    MemoryRead,
    Placement,
    chip_seed,
    evaluate_model,
    run_trial,
)
from memsim.experiments.stats import (
    Interval,
    cluster_mean_interval,
    paired_difference_interval,
    resolvable_difference,
)
from memsim.files import atomic_write_text
from memsim.memory.protection import Protection, protect
from memsim.spec.training import parse_training
from memsim.workloads.bridge import ModelImage
from memsim.workloads.layers import iter_quantized_layers
from memsim.workloads.training import load_checkpoint, train

# name: (weight bits, binary activations)
WEIGHTS = {"bnn": (1, True), "qnn2": (2, False), "qnn4": (4, False), "qnn8": (8, False)}
WEIGHT_RANGES = ("max", "fixed", "learned")
FAULTY = ("all", "hidden", "last")
EVALUATIONS = "evaluations.json"


LOSSES = ("ce", "mhl", "mcel", "bitflip", "randbet")


@dataclass(frozen=True)
class Variant:
    name: str
    loss: dict[str, Any]
    method: dict[str, Any] | None = None
    """Training method (bit-flip injection, RandBET); None: plain training."""


@dataclass(frozen=True)
class Point:
    """An operating point every model is evaluated at: a column of the table."""

    label: str
    device: memsim.Device
    knobs: dict[str, float]
    ber: float
    """The device's mean bit error rate there."""
    faulty: str = "all"
    """Which quantised layers sit in this memory (`FAULTY`); the others read without errors."""

    @cached_property
    def device_hash(self) -> str:
        return _sha256(json.dumps(self.device.document, sort_keys=True, default=str).encode())


@dataclass
class Outcome:
    """One variant of one setting, over its seeds."""

    clean: list[float] = field(default_factory=list)
    mlm: list[float] = field(default_factory=list)
    mlm_normalised: list[float] = field(default_factory=list)
    by_chip: dict[str, list[list[list[float]]]] = field(default_factory=dict)
    """Point label -> per seed -> per chip -> trial accuracies."""
    test_images: int = 0
    stored_scale: dict[str, list[list[list[float]]]] = field(default_factory=dict)
    """Point label -> as by_chip, with every layer's float32 scale in the faulty memory too."""
    codes: list[dict[str, float]] = field(default_factory=list)
    """Per seed: statistics of the stored weight codes (`code_statistics`)."""


def code_statistics(model: Any) -> dict[str, float]:
    """How the stored codes of a k-bit model spread: the fraction at 0 and at ±Q, the RMS code
    (all layers, weighted by size, and the last layer), and the step of a flipped most
    significant bit (2^(k−1) codes in two's complement) over the RMS code."""
    layers = [layer.weight_codes() for _, layer in iter_quantized_layers(model)]
    codes = [c.codes.flatten().double() for c in layers]
    every = torch.cat(codes)
    q_max = (1 << (layers[0].bits - 1)) - 1
    rms = float(every.pow(2).mean().sqrt())
    return {"zero": float((every == 0).double().mean()),
            "saturated": float((every.abs() == q_max).double().mean()),
            "rms": rms, "rms_last": float(codes[-1].pow(2).mean().sqrt()),
            "msb_over_rms": (q_max + 1) / rms if rms > 0 else math.inf}


def _flipped_float32(value: float, ber: float, rng: np.random.Generator) -> float:
    """``value`` as float32 with each of its 32 bits flipped with probability ``ber``."""
    word = np.array([value], dtype=np.float32).view(np.uint32)
    mask = np.uint32(sum(1 << i for i in range(32) if rng.random() < ber))
    return float((word ^ mask).view(np.float32)[0])


def stored_scale_accuracy(model: Any, test: Any, point: Point,
                          args: argparse.Namespace) -> list[list[float]]:
    """Accuracy by chip and trial when each layer's scale (float32) sits in the faulty memory
    beside its codes: the codes read exactly as `evaluate_model` reads them (same chip and
    trial seeds, so the comparison is paired), and every bit of every scale flips with the
    point's BER at every read (symmetric flips, fresh at each read)."""
    model.eval()
    image = ModelImage.of(model)
    protected = protect(image.image, Protection())
    layers = [layer for _, layer in iter_quantized_layers(model)]
    scales = [float(layer.weight_codes().scale[0]) for layer in layers]
    out = []
    for chip in range(args.chips):
        seed = chip_seed(args.chip_seed, "weights", point.device.name, chip)
        memory = MemoryRead(image, protected, protected.chip(point.device, seed, None),
                            point.knobs, seed)
        row = []
        for trial in range(args.trials):
            rng = np.random.default_rng([args.chip_seed, chip, trial, 0x5CA1E])
            for layer, scale in zip(layers, scales, strict=True):
                factor = _flipped_float32(scale, point.ber, rng) / scale
                layer.weight_perturbation = lambda w, f=factor: w * f
            try:
                row.append(run_trial(model, test.images, test.labels, [memory], chip,
                                     trial).accuracy)
            finally:
                for layer in layers:
                    layer.weight_perturbation = None
        out.append(row)
    return out


def variants(margins: Sequence[float], bound: float, hinge_b: float,
             losses: Sequence[str] = ("ce", "mhl", "mcel"),
             inject_ber: float = 0.01) -> list[Variant]:
    """The trained variants of one setting, CE first (the Δ baseline) when it is among them."""
    ce = {"kind": "ce"}
    by_loss = {
        "ce": [Variant("CE", ce)],
        "mhl": [Variant(f"MHL b={hinge_b:g}", {"kind": "mhl", "hinge_b": hinge_b})],
        "mcel": [Variant(f"MCEL m={m:g}", {"kind": "mcel", "margin": m, "bound": bound})
                 for m in margins],
        # CE on weights read through chips of the evaluation device (fresh flips every step)
        "bitflip": [Variant(f"bit-flip p={inject_ber:g}", ce, {
            "kind": "bitflip", "device": "symmetric-bitflip", "knobs": {"ber": inject_ber}})],
        "randbet": [Variant(f"RandBET p={inject_ber:g}", ce,
                            {"kind": "randbet", "ber": inject_ber})],
    }
    return [v for loss in LOSSES if loss in losses for v in by_loss[loss]]


def parse_point(text: str) -> tuple[str, dict[str, float]]:
    """``DEVICE:KNOB=VALUE[,KNOB=VALUE]`` → (device, knobs)."""
    device, _, rest = text.partition(":")
    knobs: dict[str, float] = {}
    for item in filter(None, rest.split(",")):
        name, eq, value = item.partition("=")
        try:
            knobs[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected DEVICE:KNOB=VALUE[,KNOB=VALUE], got {text!r}")
    if not device or not knobs:
        raise argparse.ArgumentTypeError(f"expected DEVICE:KNOB=VALUE[,KNOB=VALUE], got {text!r}")
    return device, knobs


def evaluation_points(bers: Sequence[float], devices: Sequence[tuple[str, dict[str, float]]],
                      faulty: Sequence[str] = ("all",)) -> list[Point]:
    """Symmetric flips at each BER, then each catalogue device's operating point; each with
    every layer in the faulty memory, or only the hidden layers, or only the last."""
    symmetric = memsim.load_device("symmetric-bitflip")
    points = [Point(f"BER {b:.1%}", symmetric, {"ber": b}, b) for b in bers]
    for name, knobs in devices:
        device = memsim.load_device(name)
        ber = device.at(**knobs).ber
        label = f"{name} " + ",".join(f"{k}={v:g}" for k, v in knobs.items())
        points.append(Point(f"{label} (BER {ber:.2%})", device, knobs, ber))
    return [p if which == "all" else
            Point(f"{p.label}, {'hidden layers' if which == 'hidden' else 'last layer'}",
                  p.device, p.knobs, p.ber, which)
            for which in faulty for p in points]


def placements(model: Any, point: Point) -> list[Placement]:
    """The point's faulty memory, and an error-free one for the layers it leaves out."""
    if point.faulty == "all":
        return [Placement("weights", point.device, point.knobs)]
    names = [name for name, _ in iter_quantized_layers(model)]
    faulty = names[:-1] if point.faulty == "hidden" else names[-1:]
    safe = [name for name in names if name not in faulty]
    return [Placement("weights", point.device, point.knobs, layers=tuple(faulty)),
            Placement("safe", memsim.load_device("symmetric-bitflip"), {"ber": 0.0},
                      layers=tuple(safe))]


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


def range_label(weights: str, weight_range: str, clip: float) -> str:
    """The weights' row label: BNN, 4-bit (max-|w| range), 4-bit fixed ±clip, 4-bit LSQ."""
    bits = WEIGHTS[weights][0]
    if bits == 1:
        return "BNN"
    return {"max": f"{bits}-bit", "fixed": f"{bits}-bit fixed ±{clip:g}",
            "learned": f"{bits}-bit LSQ"}[weight_range]


def train_config(weights: str, scale: str | float, variant: Variant, seed: int,
                 args: argparse.Namespace, weight_range: str = "max") -> dict[str, Any]:
    bits, binary_activations = WEIGHTS[weights]
    tag = "learned" if scale == "learned" else f"fixed{scale:g}"
    options: dict[str, Any] = {"width_multiplier": args.width, "output_scale": scale}
    method = dict(variant.method) if variant.method is not None else None
    if weights != "bnn" and weight_range == "fixed":
        # clipped latent weights on a fixed grid: the step never moves with the weights
        weights = f"{weights}-fixed{args.weight_clip:g}"
        options.update(weight_clip=args.weight_clip, weight_range="fixed")
        method = {"kind": "plain", **(method or {}), "clip_weights": args.weight_clip}
    elif weights != "bnn" and weight_range == "learned":
        weights = f"{weights}-lsq"
        options["weight_range"] = "learned"
    loss = variant.name.replace(" ", "_").replace("=", "")
    # every setting that changes the trained model is in the name: runs of different settings
    # into one --out never meet each other's checkpoints
    setting = f"{args.model}-w{args.width:g}-e{args.epochs}-lr{args.lr:g}-L{args.bound:g}"
    if args.data != "digits":  # the digits' folder names predate --data: kept, so reused
        setting = f"{args.data}-{setting}"
    data: dict[str, Any] = {"name": args.data}
    if args.data_dir is not None:
        data["dir"] = str(Path(args.data_dir).expanduser().resolve())
    config: dict[str, Any] = {
        "schema_version": 1,
        "name": f"{setting}-{weights}-{tag}-{loss}-s{seed}",
        "seed": seed,
        "data": data,
        "model": {"name": args.model, "weight_bits": bits,
                  "binary_activations": binary_activations,
                  "options": options},
        "loss": variant.loss,
        "optimizer": {"kind": "adam", "lr": args.lr, "schedule": "cosine"},
        "epochs": args.epochs,
        "batch_size": 64,
    }
    if method is not None:
        config["method"] = method
    return config


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


class _Kept:
    """A model's kept evaluations (`EVALUATIONS` beside its checkpoint): what is missing is
    computed from the checkpoint, loaded once, and written back at once."""

    def __init__(self, checkpoint: Path) -> None:
        self._checkpoint = checkpoint
        self._store = checkpoint.parent / EVALUATIONS
        self._hash = _sha256(checkpoint.read_bytes())
        self.evaluations = _read_evaluations(self._store, self._hash)
        self._trained: Any = None

    def get(self, key: str, compute: Callable[[Any], Any]) -> Any:
        if key not in self.evaluations:
            if self._trained is None:
                self._trained = load_checkpoint(self._checkpoint)
            self.evaluations[key] = compute(self._trained)
            atomic_write_text(self._store, json.dumps(
                {"checkpoint": self._hash, "evaluations": self.evaluations}, indent=1) + "\n")
        return self.evaluations[key]


def _evaluate(trained: Any, point: Point, args: argparse.Namespace) -> dict[str, Any]:
    test = trained.dataset.test
    ev = evaluate_model(trained.model, test.images, test.labels, placements(trained.model, point),
                        chips=args.chips, trials=args.trials, seed=args.chip_seed)
    return {"by_chip": ev.accuracy_by_chip(), "clean": ev.clean_accuracy, "mlm": ev.clean_mlm,
            "mlm_normalised": ev.clean_mlm_normalised, "test_images": int(test.labels.shape[0])}


def _evaluation_key(point: Point, args: argparse.Namespace) -> str:
    where: dict[str, Any] = ({"ber": point.knobs["ber"]}
                             if point.device.name == "symmetric-bitflip" else
                             {"knobs": point.knobs})
    if point.faulty != "all":
        where["faulty"] = point.faulty
    return json.dumps({"device": point.device_hash, **where, "chips": args.chips,
                       "trials": args.trials, "chip_seed": args.chip_seed}, sort_keys=True)


def run_variant(weights: str, scale: str | float, variant: Variant,
                points: Sequence[Point], args: argparse.Namespace,
                weight_range: str = "max") -> Outcome:
    outcome = Outcome()
    stores_scale = args.scale_in_memory and weights != "bnn" and weight_range != "fixed"
    for seed in args.seeds:
        spec = parse_training(train_config(weights, scale, variant, seed, args, weight_range))
        checkpoint = train(spec, Path(args.out) / spec.name).checkpoint
        kept = _Kept(checkpoint)
        for point in points:
            key = _evaluation_key(point, args)
            outcome.by_chip.setdefault(point.label, []).append(kept.get(
                key, lambda t, p=point: _evaluate(t, p, args))["by_chip"])
            if stores_scale and point.device.name == "symmetric-bitflip" and \
                    point.faulty == "all":
                outcome.stored_scale.setdefault(point.label, []).append(kept.get(
                    key + " scale in memory", lambda t, p=point: stored_scale_accuracy(
                        t.model, t.dataset.test, p, args)))
        if args.codes and weights != "bnn":
            outcome.codes.append(kept.get("codes", lambda t: code_statistics(t.model)))
        last = kept.evaluations[key]  # clean figures do not depend on the operating point
        outcome.clean.append(last["clean"])
        outcome.mlm.append(last["mlm"])
        outcome.mlm_normalised.append(last["mlm_normalised"])
        outcome.test_images = last["test_images"]
    return outcome


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _cell(interval: Interval) -> str:
    return f"{interval.mean:.1%} ± {interval.half_width:.1%}"


def accuracy_cell(outcome: Outcome, baseline: Outcome | None, point: str) -> str:
    seeds = outcome.by_chip[point]
    if len(seeds) == 1:
        acc = cluster_mean_interval(seeds[0])
    else:
        acc = cluster_mean_interval([[_mean([_mean(c) for c in chips])] for chips in seeds])
    if baseline is None:
        return _cell(acc)
    pairs = zip(seeds, baseline.by_chip[point], strict=True)
    if len(seeds) == 1:
        delta = paired_difference_interval(seeds[0], baseline.by_chip[point][0])
    else:
        delta = cluster_mean_interval([[paired_difference_interval(a, b).mean]
                                       for a, b in pairs])
    return f"{_cell(acc)} ({delta.mean:+.1%} ± {delta.half_width:.1%})"


def _with_stored_scale(outcome: Outcome, point: str) -> Outcome:
    """An outcome whose reads at ``point`` are those with the scales in the faulty memory."""
    return Outcome(by_chip={point: outcome.stored_scale[point]})


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
    parser.add_argument("--weights", nargs="+", choices=tuple(WEIGHTS), default=["bnn", "qnn4"],
                        help="bnn (binary weights and activations) and k-bit weights (qnn2, "
                             "qnn4, qnn8)")
    parser.add_argument("--output-scale", type=parse_scale, nargs="+", default=["learned", 1.0],
                        help="'learned' and/or fixed values of the logits' output scale")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=["ce", "mhl", "mcel"],
                        help="what to train: ce, mhl, mcel (one per --margins), bitflip (CE "
                             "with bit-flip injection), randbet (CE with RandBET)")
    parser.add_argument("--inject-ber", type=float, default=0.01,
                        help="bit error rate of the injected flips (bitflip, randbet)")
    parser.add_argument("--bers", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05, 0.1])
    parser.add_argument("--device", type=parse_point, action="append", default=[],
                        metavar="DEVICE:KNOB=VALUE",
                        help="also evaluate on this device at this operating point "
                             "(repeatable), e.g. sram-14nm:v_rel=0.82")
    parser.add_argument("--chips", type=int, default=10)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds; several give intervals over seeds")
    parser.add_argument("--chip-seed", type=int, default=0,
                        help="seed of the simulated chips (the same for every model)")
    parser.add_argument("--faulty", nargs="+", choices=FAULTY, default=["all"],
                        help="which layers sit in the faulty memory: all, hidden (all but the "
                             "last) or last; the others read without errors (several: columns "
                             "for each)")
    parser.add_argument("--ranges", nargs="+", choices=WEIGHT_RANGES, default=["max"],
                        help="how a k-bit quantiser's range is set: max (each tensor's max "
                             "|w|), fixed (±--weight-clip, latent weights clipped there too), "
                             "learned (LSQ step)")
    parser.add_argument("--weight-clip", type=float, default=0.1,
                        help="the fixed range of --ranges fixed")
    parser.add_argument("--scale-in-memory", action="store_true",
                        help="also evaluate the k-bit models (max and learned ranges) with "
                             "each layer's float32 scale stored in the faulty memory")
    parser.add_argument("--codes", action="store_true",
                        help="print how the k-bit models' weight codes spread")
    parser.add_argument("--out", default="runs/mcel_vs_ce")
    args = parser.parse_args(argv)
    if not args.weight_clip > 0:
        parser.error("--weight-clip must be > 0")
    if any(not 0.0 < b <= 1.0 for b in [*args.bers, args.inject_ber]):
        parser.error("--bers, --inject-ber: every bit error rate must be in (0, 1]")
    start = time.perf_counter()
    test_images = 0
    points = evaluation_points(args.bers, args.device, args.faulty)
    print("| weights | output scale | loss | clean acc | " + " | ".join(
        f"acc @ {p.label} (Δ vs CE)" for p in points) + " | MLM | norm. MLM |")
    print("|---|---|---|---|" + "---|" * len(points) + "---|---|")
    done: list[tuple[str, str, Outcome]] = []  # (weights label, scale and loss, outcome)
    settings = [(w, r) for w in args.weights for r in (["max"] if w == "bnn" else args.ranges)]
    for weights, weight_range in settings:
        for scale in args.output_scale:
            baseline: Outcome | None = None
            for variant in variants(args.margins, args.bound, args.hinge_b, args.losses,
                                    args.inject_ber):
                outcome = run_variant(weights, scale, variant, points, args, weight_range)
                test_images = outcome.test_images
                cells = [accuracy_cell(outcome, baseline, p.label) for p in points]
                if variant.name == "CE":
                    baseline = outcome
                label = range_label(weights, weight_range, args.weight_clip)
                scale_label = "learned" if scale == "learned" else f"fixed {scale:g}"
                done.append((label, f"{scale_label} | {variant.name}", outcome))
                print(f"| {label} | {scale_label} | {variant.name} | "
                      f"{_mean(outcome.clean):.1%} | " + " | ".join(cells) +
                      f" | {_mean(outcome.mlm):.2f} | {_mean(outcome.mlm_normalised):.2f} |",
                      flush=True)
    stored = [(label, rest, o) for label, rest, o in done if o.stored_scale]
    if stored:
        bers = [p for p in points if p.label in stored[0][2].stored_scale]
        print("\nWith every layer's float32 scale in the faulty memory too (Δ: against the same "
              "models with their scales kept safe, same chips and reads):\n")
        print("| weights | output scale | loss | " + " | ".join(
            f"acc @ {p.label} (Δ vs scale safe)" for p in bers) + " |")
        print("|---|---|---|" + "---|" * len(bers))
        for label, rest, o in stored:
            cells = [accuracy_cell(_with_stored_scale(o, p.label), o, p.label) for p in bers]
            print(f"| {label} | {rest} | " + " | ".join(cells) + " |")
    coded = [(label, rest, o) for label, rest, o in done if o.codes]
    if coded:
        print("\nWeight codes (means over seeds): the fraction of codes at 0 and at ±Q, the RMS "
              "code (all layers, and the last), and a flipped sign bit's step (2^(k−1) codes) "
              "over the RMS code:\n")
        print("| weights | output scale | loss | codes at 0 | codes at ±Q | RMS code | "
              "RMS code, last layer | sign-bit step / RMS |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        for label, rest, o in coded:
            mean = {k: _mean([c[k] for c in o.codes]) for k in o.codes[0]}
            print(f"| {label} | {rest} | {mean['zero']:.1%} | {mean['saturated']:.2%} | "
                  f"{mean['rms']:.2f} | {mean['rms_last']:.2f} | {mean['msb_over_rms']:.1f} |")
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
