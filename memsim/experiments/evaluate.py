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
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.experiments.records import TrialOutcome
from memsim.experiments.stats import Interval, cluster_mean_interval
from memsim.kernels.decode import copy_bits_
from memsim.memory.image import MemoryImage
from memsim.memory.protection import (
    ChipReader,
    ProtectedImage,
    ProtectedReadResult,
    Protection,
    protect,
)
from memsim.physics.device import Device
from memsim.spec.names import DEFAULT_READS_PER_PASS, TORCH_DEVICES
from memsim.workloads.bridge import ModelImage, clear, region_name
from memsim.workloads.layers import iter_quantized_layers
from memsim.workloads.metrics import LogitStats, logit_stats, logit_stats_stacked
from memsim.workloads.packed_bnn import PackedBNN
from memsim.workloads.training import predict, predict_stacked

__all__ = [
    "ACTIVATION_BUDGET_BYTES",
    "EvaluationError",
    "EvaluationOptions",
    "MemoryRead",
    "ModelEvaluation",
    "Placement",
    "ReadStats",
    "TrialJob",
    "TrialOutcome",
    "chip_seed",
    "evaluate_model",
    "run_trial",
    "run_trials",
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


ACTIVATION_BUDGET_BYTES = 256 << 20
"""Activations one batched forward pass may hold (estimated, see `EvaluationOptions`)."""

# Models probed for their largest activation per image, by input shape.
_ACTIVATIONS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], int]] = \
    weakref.WeakKeyDictionary()


def _largest_activation(model: nn.Module, image: torch.Tensor) -> int:
    """Elements of the largest output any module gives for one image (one probe per model and
    input shape)."""
    shapes = _ACTIVATIONS.setdefault(model, {})
    key = tuple(image.shape)
    if key not in shapes:
        largest = [int(image.numel())]

        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor):
                largest[0] = max(largest[0], int(output.numel()))

        handles = [m.register_forward_hook(hook) for m in model.modules()]
        try:
            predict(model, image[None])
        finally:
            for h in handles:
                h.remove()
        shapes[key] = largest[0]
    return shapes[key]


@dataclass(frozen=True)
class EvaluationOptions:
    """How a sweep's trials run; none of this changes a result (the tests check it)."""

    reads_per_pass: int = DEFAULT_READS_PER_PASS
    """Most reads evaluated in one batched forward pass (1: one read per pass)."""
    reference_path: bool = False
    """Evaluate every read on its own through `run_trial` (codes decoded, checked and loaded
    one read at a time): the path the batched one is measured and checked against."""
    packed_bnn: bool = True
    """Run BNNs that `PackedBNN` supports straight on the read words (XNOR and popcount, the
    same logits bit for bit) instead of through torch."""
    torch_device: str = "cpu"
    """Where the forward passes run: ``cpu``, ``cuda``, or ``auto`` (CUDA when torch sees a
    device). The fault kernels and the decoding stay on the CPU. Another device sums in
    another order: its results are its own (a sweep keys them by device)."""

    def __post_init__(self) -> None:
        if not isinstance(self.reads_per_pass, int) or self.reads_per_pass < 1:
            raise EvaluationError(f"reads_per_pass must be an integer >= 1, got "
                                  f"{self.reads_per_pass!r}")
        if self.torch_device not in TORCH_DEVICES:
            raise EvaluationError(f"torch_device must be one of {', '.join(TORCH_DEVICES)}, "
                                  f"got {self.torch_device!r}")

    def resolved(self, log: Callable[[str], None] | None = None) -> EvaluationOptions:
        """These options with ``auto`` replaced by the device found (a line to `log` when it
        falls back to the CPU); `EvaluationError` for ``cuda`` without a CUDA device."""
        cuda = torch.cuda.is_available()
        if self.torch_device == "cuda" and not cuda:
            raise EvaluationError("--torch-device cuda, but torch sees no CUDA device (use cpu "
                                  "or auto)")
        if self.torch_device != "auto":
            return self
        if not cuda and log is not None:
            log("torch device auto: torch sees no CUDA device; evaluating on the CPU")
        return replace(self, torch_device="cuda" if cuda else "cpu")

    def sets_per_pass(self, model: nn.Module, images: torch.Tensor) -> int:
        """`reads_per_pass`, fewer where the activations of an image batch (`predict`'s 512)
        for that many weight sets would pass `ACTIVATION_BUDGET_BYTES` (counting three live
        float32 tensors the size of the largest one)."""
        if self.reads_per_pass == 1 or images.shape[0] == 0:
            return 1
        per_set = 3 * 4 * min(512, int(images.shape[0])) * _largest_activation(model, images[0])
        return max(1, min(self.reads_per_pass, ACTIVATION_BUDGET_BYTES // per_set))


@dataclass(frozen=True)
class TrialJob:
    """One trial to run: every memory of a placement set, the chip index and the trial index."""

    memories: Sequence[MemoryRead]
    chip: int
    trial: int


@dataclass(frozen=True)
class _Counts:
    up: int = 0
    down: int = 0
    stuck: int = 0
    residual: int = 0
    corrected: int = 0
    uncorrectable: int = 0
    under_test: int = 0


def _read_all(job: TrialJob, reader: _Reader | None = None
              ) -> tuple[list[MemoryImage], _Counts]:
    """Read every memory of a job once with trial seed (chip seed, trial), through `reader`
    where given."""
    images = []
    up = down = stuck = residual = corrected = uncorrectable = under_test = 0
    for i, m in enumerate(job.memories):
        if reader is None:
            read = m.protected.read(m.chip, m.knobs, seed=trial_seed(m.chip_seed, job.trial))
        else:
            read = reader.read(m, job.trial)
        images.append(read.image)
        up += read.raw.flips_zero_to_one
        down += read.raw.flips_one_to_zero
        stuck += read.raw.stuck_cells
        residual += read.residual_bit_errors
        corrected += read.ecc.corrected_words
        uncorrectable += read.ecc.uncorrectable_words
        if i == 0:
            under_test = read.raw.bit_errors
    return images, _Counts(up, down, stuck, residual, corrected, uncorrectable, under_test)


_ReadOf = tuple[int, int, tuple[tuple[str, float], ...], int, int]
"""A read of a memory: ids of its protected image and chip, knobs, chip seed, trial."""


class _Reader:
    """The reads of some jobs, each read once: a chip's read is a function of its image, the
    knobs and the trial seed, so a memory held at one operating point while another is swept
    (SRAM edges) gives the same read at every point, kept from its first until its last job.
    Trial seeds are derived once per (chip, trial)."""

    def __init__(self, jobs: Sequence[TrialJob]) -> None:
        self._left = Counter(self._of(m, j.trial) for j in jobs for m in j.memories)
        self._kept: dict[_ReadOf, ProtectedReadResult] = {}
        self._seeds: dict[tuple[int, int], int] = {}

    @staticmethod
    def _of(m: MemoryRead, trial: int) -> _ReadOf:
        return (id(m.protected), id(m.chip), tuple(sorted(m.knobs.items())), m.chip_seed,
                trial)

    def read(self, m: MemoryRead, trial: int) -> ProtectedReadResult:
        of = self._of(m, trial)
        left = self._left[of] = self._left[of] - 1
        hit = self._kept.pop(of, None) if left == 0 else self._kept.get(of)
        if hit is not None:
            return hit
        seed = self._seeds.get((m.chip_seed, trial))
        if seed is None:
            seed = self._seeds[(m.chip_seed, trial)] = trial_seed(m.chip_seed, trial)
        read = m.protected.read(m.chip, m.knobs, seed=seed)
        if left > 0:
            self._kept[of] = read
        return read


def _outcome(job: TrialJob, stats: LogitStats, c: _Counts) -> TrialOutcome:
    return TrialOutcome(job.chip, job.trial, stats.accuracy, stats.mlm, stats.mlm_normalised,
                        c.up, c.down, c.stuck, c.residual, c.corrected, c.uncorrectable,
                        c.under_test)


def run_trial(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              memories: Sequence[MemoryRead], chip: int, trial: int) -> TrialOutcome:
    """Read every memory once with trial seed (chip seed, `trial`), run the model on what was
    read, and return to the latent weights: one read per forward pass, its codes decoded,
    checked and loaded through `ModelImage.load` (the reference path `run_trials` is checked
    against)."""
    job = TrialJob(memories, chip, trial)
    try:
        read_images, counts = _read_all(job)
        for m, image in zip(memories, read_images, strict=True):
            m.image.load(model, image)
        stats = logit_stats(predict(model, images), labels, quantiles=False)
    finally:
        clear(model)
    return _outcome(job, stats, counts)


@dataclass(frozen=True)
class _PackedPath:
    """A BNN's `PackedBNN` over the whole model's layout, and how the words of one trial's
    memories fill that layout."""

    model: nn.Module
    memories: tuple[ModelImage, ...]
    packed: PackedBNN
    layout: ModelImage
    plan: tuple[tuple[int, int, int, int], ...]
    """(memory, bit offset there, bit offset in `layout`, bits) per layer."""

    def logits(self, read: Sequence[MemoryImage], images: torch.Tensor) -> torch.Tensor:
        if len(read) == 1 and read[0].regions == self.layout.image.regions:
            return self.packed.logits(read[0], images)
        words = np.zeros_like(self.layout.image.words)
        for memory, source, target, bits in self.plan:
            copy_bits_(read[memory].words, source, words, target, bits)
        return self.packed.logits(self.layout.image.with_words(words), images)


# BNNs compiled for the packed path, per worker process: (id of the model, ids of the memories'
# images) -> the path, or None where the model is not one PackedBNN runs.
_PACKED: OrderedDict[tuple[int, tuple[int, ...]], _PackedPath | None] = OrderedDict()
_PACKED_SIZE = 16


def _build_packed_path(model: nn.Module, memories: Sequence[ModelImage]) -> _PackedPath | None:
    layers = sorted(name for name, _ in iter_quantized_layers(model))
    if sorted(layer for m in memories for layer in m.layers) != layers:
        return None
    try:
        layout = ModelImage.of(model)
        packed = PackedBNN(model, layout)
    except MemsimError:  # not a BNN that PackedBNN runs: torch does
        return None
    pairs = [(i, m.image.region(region_name(layer)), layout.image.region(region_name(layer)))
             for i, m in enumerate(memories) for layer in m.layers]
    if any((s.bits, s.encoding) != (t.bits, t.encoding) for _, s, t in pairs):
        return None
    plan = tuple((i, s.bit_offset, t.bit_offset, s.n_bits) for i, s, t in pairs)
    return _PackedPath(model, tuple(memories), packed, layout, plan)


def _packed_path(model: nn.Module, memories: Sequence[ModelImage]) -> _PackedPath | None:
    key = (id(model), tuple(id(m) for m in memories))
    if key in _PACKED:
        hit = _PACKED[key]
        if hit is None or (hit.model is model and all(
                a is b for a, b in zip(hit.memories, memories, strict=True))):
            _PACKED.move_to_end(key)
            return hit
    path = _build_packed_path(model, memories)
    _PACKED[key] = path
    while len(_PACKED) > _PACKED_SIZE:
        _PACKED.popitem(last=False)
    return path


_ReadKey = tuple[tuple[int, ...], bytes]
"""A read in `run_trials`: the ids of its layout's model images and the digest of its words."""


class ReadStats:
    """Statistics of the distinct reads `run_trials` evaluated for one model on one test set,
    torch device and torch thread count (the current one), kept across calls by a caller that
    changes none of them (a sweep's worker): a read met again, in a later task or of another
    memory device, takes them instead of a forward pass. At most `limit` reads are kept
    (then it starts over)."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 torch_device: str, limit: int = 1 << 14) -> None:
        self.owner = (model, images, labels)
        self.torch_device = torch_device
        self.threads = torch.get_num_threads()  # another count sums in another order
        self.limit = limit
        self.stats: dict[_ReadKey, LogitStats] = {}
        # every model image a key names, held so that no other object takes its id
        self._layouts: dict[int, ModelImage] = {}

    def fits(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             torch_device: str) -> bool:
        """Whether these are the model, data and device (and the thread count) the statistics
        are of."""
        return (torch_device == self.torch_device and torch.get_num_threads() == self.threads
                and all(a is b for a, b in zip(self.owner, (model, images, labels),
                                               strict=True)))

    def trim(self) -> None:
        """Start over if `limit` reads are kept (between calls: a call needs its own)."""
        if len(self.stats) >= self.limit:
            self.stats.clear()
            self._layouts.clear()

    def hold(self, layout: Sequence[ModelImage]) -> None:
        for image in layout:
            self._layouts[id(image)] = image


def _fingerprint(read: Sequence[MemoryImage]) -> bytes:
    """A 256-bit digest (BLAKE2b) of the words of one job's reads, of one layout: equal words
    give equal digests, and different ones collide with odds the results store already
    trusts (it keys rows by the SHA-256 of their inputs); a digest holds no copy of a read."""
    h = hashlib.blake2b(digest_size=32)
    for image in read:
        h.update(np.ascontiguousarray(image.words).data)
    return h.digest()


def _evaluate_reads(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    layout: Sequence[ModelImage], reads: Sequence[Sequence[MemoryImage]],
                    path: _PackedPath | None) -> list[LogitStats]:
    """Logit statistics of each read (all of `layout`): on its words through `path`, or
    decoded into stacked weights and evaluated in one batched forward pass."""
    if path is not None:
        logits = torch.stack([path.logits(read, images) for read in reads])
    else:
        try:
            for i, image in enumerate(layout):
                image.load_stacked(model, [read[i] for read in reads])
            logits = predict_stacked(model, images, len(reads))
        finally:
            clear(model)
    return logit_stats_stacked(logits, labels, quantiles=False)


def run_trials(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
               jobs: Sequence[TrialJob], options: EvaluationOptions | None = None,
               known: ReadStats | None = None) -> list[TrialOutcome]:
    """`run_trial` for every job, in order, with the same results: reads whose words equal
    an earlier read's of the same memories (fault-free ones, or persistent faults alone) take
    its statistics, which are a function of the words; up to
    `EvaluationOptions.reads_per_pass` distinct reads at once decoded straight into stacked
    weights (`ModelImage.load_stacked`) and evaluated in one batched forward pass
    (`predict_stacked`), or, for a BNN that `PackedBNN` runs, each evaluated straight on its
    words; logit statistics once per pass. `known` keeps the statistics for later calls
    (ignored unless it `fits` these model and data). Falls back to `run_trial` for layouts
    without a decoding table and with ``options.reference_path``."""
    options = options or EvaluationOptions()
    if not jobs:
        return []
    if options.reference_path or any(m.image.decoder is None for m in jobs[0].memories):
        return [run_trial(model, images, labels, j.memories, j.chip, j.trial) for j in jobs]
    per_pass = options.sets_per_pass(model, images)
    packed_ok = (options.packed_bnn and options.torch_device == "cpu"
                 and images.dtype == torch.float32)
    reader = _Reader(jobs)
    # per (layout, words) read: its statistics once evaluated, else the read, waiting for a
    # pass with at most per_pass others
    if known is not None and not known.fits(model, images, labels, options.torch_device):
        known = None
    if known is not None:
        known.trim()
    stats: dict[_ReadKey, LogitStats] = {} if known is None else known.stats
    waiting: dict[_ReadKey, list[MemoryImage]] = {}
    done: list[tuple[TrialJob, _Counts, _ReadKey]] = []
    start = 0
    while start < len(jobs):
        layout = [m.image for m in jobs[start].memories]
        stop = start + 1
        while stop < len(jobs) and [m.image for m in jobs[stop].memories] == layout:
            stop += 1
        path = _packed_path(model, layout) if packed_ok else None
        ids = tuple(id(image) for image in layout)  # alive while the jobs are, or held
        if known is not None:
            known.hold(layout)
        for i, job in enumerate(jobs[start:stop], start + 1):
            read, counts = _read_all(job, reader)
            key = (ids, _fingerprint(read))
            if key not in stats and key not in waiting:
                waiting[key] = read
            if waiting and (len(waiting) == per_pass or i == stop):
                evaluated = _evaluate_reads(model, images, labels, layout,
                                            list(waiting.values()), path)
                stats.update(zip(waiting, evaluated, strict=True))
                waiting.clear()
            done.append((job, counts, key))
        start = stop
    return [_outcome(job, stats[key], counts) for job, counts, key in done]


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
                   seed: int = 0, chip_indices: Sequence[int] | None = None,
                   options: EvaluationOptions | None = None) -> ModelEvaluation:
    """Accuracy and margins of `model` over chips × trials of its placements.

    `chip_indices` evaluates chosen chips (e.g. a batch of an adaptive sweep) instead of
    0..chips-1; `options` says how the trials run (not what they give).
    """
    options = (options or EvaluationOptions()).resolved()
    if chips < 1 or trials < 1:
        raise EvaluationError(f"chips and trials must be >= 1, got {chips} and {trials}")
    model.to(options.torch_device)
    model.eval()
    clear(model)
    clean = logit_stats(predict(model, images), labels)
    memories = _memories(model, placements)
    outcomes: list[TrialOutcome] = []
    pending: list[TrialJob] = []
    indices = list(range(chips)) if chip_indices is None else list(chip_indices)
    for c in indices:
        reads = []
        for m in memories:
            seed_c = chip_seed(seed, m.placement.name, m.placement.device.name, c)
            reads.append(MemoryRead(m.image, m.protected,
                                    m.protected.chip(m.placement.device, seed_c,
                                                     m.placement.sweep),
                                    m.placement.knobs, seed_c))
        pending += [TrialJob(reads, c, t) for t in range(trials)]
        if len(pending) >= options.reads_per_pass:  # then let go of these chips
            outcomes += run_trials(model, images, labels, pending, options)
            pending = []
    outcomes += run_trials(model, images, labels, pending, options)
    interval = cluster_mean_interval(_accuracy_by_chip(outcomes), bounds=(0.0, 1.0))
    return ModelEvaluation(
        clean.accuracy, clean.mlm, clean.mlm_normalised, tuple(outcomes), interval,
        int(labels.shape[0]), sum(m.protected.overhead.data_bits for m in memories),
        sum(m.protected.overhead.stored_bits for m in memories))
