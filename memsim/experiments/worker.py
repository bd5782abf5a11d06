"""The work of one chip task, run on a worker (in this process, a pool process or a Ray
worker), and the numba warm-up that runs once before any worker starts."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from memsim.experiments.evaluate import MemoryRead, ReadStats, TrialJob, run_trials
from memsim.experiments.plan import ChipTask, MemoryPlan, WorkContext, knob_box
from memsim.experiments.records import ChipRecord
from memsim.memory.chip import Chip
from memsim.memory.protection import ProtectedImage, Protection, protect
from memsim.physics.device import Device
from memsim.workloads.bridge import ModelImage

__all__ = ["evaluate_chip", "warm_up"]

# Images of the memories, per worker process: (id of the model, layers, protection) ->
# (the model itself, so that its id cannot be reused by another while cached, image,
# protected image).
_MEMORY_CACHE: OrderedDict[tuple[int, tuple[str, ...], Protection],
                           tuple[nn.Module, ModelImage, ProtectedImage]] = OrderedDict()
_MEMORY_CACHE_SIZE = 16


def _memory(model: nn.Module, plan: MemoryPlan) -> tuple[ModelImage, ProtectedImage]:
    key = (id(model), plan.layers, plan.protection)
    hit = _MEMORY_CACHE.get(key)
    if hit is not None and hit[0] is model:
        _MEMORY_CACHE.move_to_end(key)
        return hit[1], hit[2]
    mi = ModelImage.of(model, layers=list(plan.layers))
    protected = protect(mi.image, plan.protection)
    _MEMORY_CACHE[key] = (model, mi, protected)
    while len(_MEMORY_CACHE) > _MEMORY_CACHE_SIZE:
        _MEMORY_CACHE.popitem(last=False)
    return mi, protected


_ChipKey = tuple[str, int, int, tuple[tuple[str, float, float], ...]]


class _Chips:
    """Chips built so far in this worker process, by (device key, stored bits, seed, sweep),
    which fix a chip (the same faults whatever was read before): memories of several tasks
    share one (the SRAM edges of every device under test, the memories of models of one
    architecture). The least recently used go past `size` chips or `budget` bytes (`nbytes`,
    measured again after a task has read its chips: reads add weak-cell lists)."""

    def __init__(self, size: int, budget: int) -> None:
        self.size = size
        self.budget = budget
        # the device is held so that the key's device is the one the chip reads with
        self._chips: OrderedDict[_ChipKey, tuple[Device, Chip]] = OrderedDict()
        self._bytes: dict[_ChipKey, int] = {}
        self._total = 0
        self._used: list[_ChipKey] = []

    def get(self, device: Device, plan: MemoryPlan, protected: ProtectedImage,
            seed: int) -> Chip:
        key = (plan.device, protected.stored.n_bits, seed, plan.sweep)
        self._used.append(key)
        hit = self._chips.get(key)
        if hit is not None and hit[0] is device:
            self._chips.move_to_end(key)
            return hit[1]
        chip = protected.chip(device, seed, plan.sweep_dict())
        self._chips[key] = (device, chip)
        self._chips.move_to_end(key)
        self._measure(key)
        return chip

    def settle(self) -> None:
        """Measure the chips the last task read, then let go of the least recently used."""
        for key in self._used:
            if key in self._chips:
                self._measure(key)
        self._used.clear()
        while len(self._chips) > 1 and (len(self._chips) > self.size
                                        or self._total > self.budget):
            key, _ = self._chips.popitem(last=False)
            self._total -= self._bytes.pop(key)

    def _measure(self, key: _ChipKey) -> None:
        size = self._chips[key][1].nbytes
        self._total += size - self._bytes.get(key, 0)
        self._bytes[key] = size


_CHIPS = _Chips(size=1024, budget=64 << 20)


# Statistics of the reads evaluated so far, per worker process: id of the model -> those of
# that model on its test data and torch device (a sweep changes none of them; `ReadStats.fits`
# checks that they are the same), so that a read met in an earlier task is not evaluated again.
_KNOWN: OrderedDict[int, ReadStats] = OrderedDict()
_KNOWN_SIZE = 16


def _known(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: str
           ) -> ReadStats:
    hit = _KNOWN.get(id(model))
    if hit is not None and hit.fits(model, images, labels, device):
        _KNOWN.move_to_end(id(model))
        return hit
    _KNOWN[id(model)] = hit = ReadStats(model, images, labels, device)
    while len(_KNOWN) > _KNOWN_SIZE:
        _KNOWN.popitem(last=False)
    return hit


def evaluate_chip(context: WorkContext, task: ChipTask) -> list[tuple[str, ChipRecord]]:
    """Every trial of one chip at each operating point of the task: (key, record) rows."""
    model = context.models[task.model]
    images, labels = context.data[context.model_data[task.model]]
    memories = [_memory(model, plan) for plan in task.memories]
    _CHIPS.settle()
    chips = [_CHIPS.get(context.devices[plan.device], plan, protected, seed)
             for plan, (_, protected), seed in zip(task.memories, memories, task.chip_seeds,
                                                    strict=True)]
    device = context.evaluation.torch_device  # resolved by the runner: cpu or cuda
    if next(model.parameters()).device.type != device:
        model.to(device)
    model.eval()
    jobs = []
    for point in task.points:
        reads = [MemoryRead(mi, protected, chip, point.knobs[i], task.chip_seeds[i])
                 for i, ((mi, protected), chip) in enumerate(zip(memories, chips, strict=True))]
        jobs += [TrialJob(reads, task.chip, t) for t in range(task.trials)]
    outcomes = run_trials(model, images, labels, jobs, context.evaluation,
                          _known(model, images, labels, device))
    return [(point.key, ChipRecord.of(outcomes[i * task.trials:(i + 1) * task.trials]))
            for i, point in enumerate(task.points)]


def warm_up(devices: Mapping[str, Device], reads: Mapping[str, Sequence[Mapping[str, float]]],
            protections: Sequence[Protection]) -> None:
    """Compile (or load from numba's cache) every kernel the sweep will use, once, here: a
    small image through a chip of each device at each knob set it is read at, under each
    protection. Workers started afterwards load the cached machine code."""
    from memsim.memory.image import MemoryImage

    rng = np.random.default_rng(0)
    image = MemoryImage.pack({"w": (rng.integers(-8, 8, 4096), "twos_complement", 4)})
    for key, device in devices.items():
        unique = {tuple(sorted(k.items())): k for k in reads.get(key, [device.spec.nominal])}
        knob_sets = list(unique.values())
        box = knob_box([device.resolve_knobs(k) for k in knob_sets])
        sweep = {k: (lo, hi) for k, lo, hi in box}
        for protection in protections or (Protection(),):
            protected = protect(image, protection)
            chip = protected.chip(device, 1, sweep)
            for knobs in knob_sets:
                protected.read(chip, knobs, seed=1)
