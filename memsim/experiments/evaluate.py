"""Evaluating a quantised model on simulated chips: placements, chips, trials, aggregates.

A *placement* puts some of a model's quantised layers into one memory: a device at knob
values, with a protection. For chip index c, every placement gets its own `Chip`, whose seed
descends from (experiment seed, placement name, device name, c) and not from the model, so
two models of the same architecture see the same chips (paired comparisons), and a chip is the
same chip at every operating point (its faults are drawn over the knobs' full ranges, or the
placement's `sweep`). A trial (c, t) reads every placement's image once with seed
(chip seed, t), loads the decoded weights into the model and evaluates the test images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.experiments.records import TrialOutcome
from memsim.experiments.stats import Interval, cluster_mean_interval
from memsim.memory.protection import ChipReader, ProtectedImage, Protection, protect
from memsim.physics.device import Device
from memsim.workloads.bridge import ModelImage, clear
from memsim.workloads.layers import iter_quantized_layers
from memsim.workloads.metrics import logit_stats
from memsim.workloads.training import predict

__all__ = [
    "EvaluationError",
    "MemoryRead",
    "ModelEvaluation",
    "Placement",
    "TrialOutcome",
    "chip_seed",
    "evaluate_model",
    "run_trial",
    "trial_seed",
]


class EvaluationError(MemsimError):
    """A placement that does not fit the model."""


def _name_word(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def chip_seed(seed: int, placement: str, device: str, chip: int) -> int:
    """The seed of chip `chip` of a placement's device (independent of the model)."""
    entropy = [int(seed), _name_word(placement), _name_word(device), int(chip)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def trial_seed(chip_seed_value: int, trial: int) -> int:
    entropy = [int(chip_seed_value), 0x54524941, int(trial)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class Placement:
    """Layers of a model stored in one memory."""

    name: str
    device: Device
    knobs: Mapping[str, float] = field(default_factory=dict)
    layers: tuple[str, ...] | None = None
    """Quantised layer names; None: every layer no other placement names."""
    protection: Protection = field(default_factory=Protection)
    sweep: Mapping[str, tuple[float, float]] | None = None
    """Knob ranges the chips are drawn for at once (default: as reads need; the faults at a
    point are the same either way)."""


@dataclass(frozen=True)
class MemoryRead:
    """One memory of a placement, ready to read: its image, protected layout and chip."""

    image: ModelImage
    protected: ProtectedImage
    chip: ChipReader
    knobs: Mapping[str, float]
    chip_seed: int


def run_trial(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              memories: Sequence[MemoryRead], chip: int, trial: int) -> TrialOutcome:
    """Read every memory once with trial seed (chip seed, `trial`), run the model on what was
    read, and return to the latent weights."""
    up = down = stuck = residual = corrected = uncorrectable = under_test = 0
    try:
        for i, m in enumerate(memories):
            read = m.protected.read(m.chip, m.knobs, seed=trial_seed(m.chip_seed, trial))
            m.image.load(model, read.image)
            up += read.raw.flips_zero_to_one
            down += read.raw.flips_one_to_zero
            stuck += read.raw.stuck_cells
            residual += read.residual_bit_errors
            corrected += read.ecc.corrected_words
            uncorrectable += read.ecc.uncorrectable_words
            if i == 0:
                under_test = read.raw.bit_errors
        stats = logit_stats(predict(model, images), labels, quantiles=False)
    finally:
        clear(model)
    return TrialOutcome(chip, trial, stats.accuracy, stats.mlm, stats.mlm_normalised, up, down,
                        stuck, residual, corrected, uncorrectable, under_test)


@dataclass(frozen=True)
class ModelEvaluation:
    """Clean figures, every trial, and the accuracy interval with chips as clusters."""

    clean_accuracy: float
    clean_mlm: float
    clean_mlm_normalised: float
    trials: tuple[TrialOutcome, ...]
    accuracy: Interval
    n_test: int
    data_bits: int
    stored_bits: int

    @property
    def mean_mlm(self) -> float:
        return float(np.mean([t.mlm for t in self.trials])) if self.trials else float("nan")

    @property
    def mean_bit_errors(self) -> float:
        if not self.trials:
            return float("nan")
        return float(np.mean([t.flips_zero_to_one + t.flips_one_to_zero for t in self.trials]))

    def accuracy_by_chip(self) -> list[list[float]]:
        """The trials' accuracies grouped by chip, in chip order (the clusters of `accuracy`;
        pass two models' to `paired_difference_interval` to compare them on the same chips)."""
        return _accuracy_by_chip(self.trials)

    def to_dict(self) -> dict[str, Any]:
        a = self.accuracy
        return {
            "clean_accuracy": self.clean_accuracy, "clean_mlm": self.clean_mlm,
            "clean_mlm_normalised": self.clean_mlm_normalised,
            "accuracy": a.mean, "accuracy_low": a.low if a.bounded else None,  # not ±inf:
            "accuracy_high": a.high if a.bounded else None,  # JSON has no infinity
            "chips": a.n_clusters, "reads": len(self.trials), "n_test": self.n_test,
            "mean_mlm": self.mean_mlm, "mean_bit_errors": self.mean_bit_errors,
            "data_bits": self.data_bits, "stored_bits": self.stored_bits,
            "per_trial": [t.to_dict() for t in self.trials],
        }


def _accuracy_by_chip(trials: Sequence[TrialOutcome]) -> list[list[float]]:
    chips: dict[int, list[float]] = {}
    for t in trials:
        chips.setdefault(t.chip, []).append(t.accuracy)
    return [chips[c] for c in sorted(chips)]


@dataclass
class _Memory:
    placement: Placement
    image: ModelImage
    protected: ProtectedImage


def _memories(model: nn.Module, placements: Sequence[Placement]) -> list[_Memory]:
    all_layers = [name for name, _ in iter_quantized_layers(model)]
    if not all_layers:
        raise EvaluationError("the model has no quantised layers")
    named = [layer for p in placements if p.layers is not None for layer in p.layers]
    if len(set(named)) != len(named):
        raise EvaluationError("a layer is placed in two memories")
    rest = [layer for layer in all_layers if layer not in set(named)]
    catch_all = [p for p in placements if p.layers is None]
    if len(catch_all) > 1:
        raise EvaluationError("only one placement may take the remaining layers")
    if rest and not catch_all:
        raise EvaluationError(f"layers {', '.join(rest)} are in no placement")
    names = [p.name for p in placements]
    if len(set(names)) != len(names):
        raise EvaluationError(f"placement names repeat: {names}")
    out = []
    for p in placements:
        layers = list(p.layers) if p.layers is not None else rest
        if not layers:
            continue
        mi = ModelImage.of(model, layers=layers)
        out.append(_Memory(p, mi, protect(mi.image, p.protection)))
    return out


def evaluate_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   placements: Sequence[Placement], *, chips: int, trials: int = 1,
                   seed: int = 0, chip_indices: Sequence[int] | None = None
                   ) -> ModelEvaluation:
    """Accuracy and margins of `model` over chips × trials of its placements.

    `chip_indices` evaluates chosen chips (e.g. a batch of an adaptive sweep) instead of
    0..chips-1.
    """
    if chips < 1 or trials < 1:
        raise EvaluationError(f"chips and trials must be >= 1, got {chips} and {trials}")
    model.eval()
    clear(model)
    clean = logit_stats(predict(model, images), labels)
    memories = _memories(model, placements)
    outcomes = []
    indices = list(range(chips)) if chip_indices is None else list(chip_indices)
    for c in indices:
        reads = []
        for m in memories:
            seed_c = chip_seed(seed, m.placement.name, m.placement.device.name, c)
            reads.append(MemoryRead(m.image, m.protected,
                                    m.protected.chip(m.placement.device, seed_c,
                                                     m.placement.sweep),
                                    m.placement.knobs, seed_c))
        outcomes += [run_trial(model, images, labels, reads, c, t) for t in range(trials)]
    interval = cluster_mean_interval(_accuracy_by_chip(outcomes), bounds=(0.0, 1.0))
    return ModelEvaluation(
        clean.accuracy, clean.mlm, clean.mlm_normalised, tuple(outcomes), interval,
        int(labels.shape[0]), sum(m.protected.overhead.data_bits for m in memories),
        sum(m.protected.overhead.stored_bits for m in memories))
