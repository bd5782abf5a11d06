"""The work of one chip task, run on a worker (in this process, a pool process or a Ray
worker), and the numba warm-up that runs once before any worker starts."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from memsim.experiments.evaluate import MemoryRead, TrialJob, run_trials
from memsim.experiments.plan import ChipTask, MemoryPlan, WorkContext, knob_box
from memsim.experiments.records import ChipRecord
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


def evaluate_chip(context: WorkContext, task: ChipTask) -> list[tuple[str, ChipRecord]]:
    """Every trial of one chip at each operating point of the task: (key, record) rows."""
    model = context.models[task.model]
    images, labels = context.data[context.model_data[task.model]]
    memories = [_memory(model, plan) for plan in task.memories]
    chips = [protected.chip(context.devices[plan.device], seed, plan.sweep_dict())
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
    outcomes = run_trials(model, images, labels, jobs, context.evaluation)
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
