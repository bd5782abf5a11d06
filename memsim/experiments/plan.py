"""Planning a sweep: the spec and the loaded models become cells, store-row inputs and chip
tasks.

A *cell* is (model, scenario, device, operating point, placement, protection); a store row is
one chip of a cell with all its trials, keyed by `key_of` its inputs: the model's weight hash,
the test data's hash, and for each memory of the placement the device spec's hash, the knob
values, the layers, the protection and the chip seed; the number of
trials and the torch thread count (another count may sum logits in another order). Nothing
about energy is in a key: energy is computed at aggregation (`memsim.experiments.aggregation`),
so another deployment re-aggregates the same rows. One row per chip rather than per trial: a
chip's trials share its persistent faults and are only ever used together (the chip is the
sampling unit). Scenario names are labels, not inputs: two scenarios that give a device the
same knobs share its rows.

Chip c of a memory has the seed `evaluate.chip_seed(seed, memory, device, c)`: independent of
the model (CE and MCEL models see the same chips) and of the operating point (its faults are
nested along the knobs, and the same at a point whatever else it is read at: the knob box a
worker draws it for saves time only and is not in the key).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from memsim.experiments.evaluate import EvaluationOptions, chip_seed
from memsim.experiments.models import LoadedModel, RunnerError
from memsim.experiments.stats import AdaptiveChips
from memsim.experiments.store import key_of
from memsim.memory.protection import Protection, ProtectionOverhead, protect
from memsim.physics.device import Device, OperatingPoint
from memsim.spec.device import KnobRole
from memsim.spec.experiment import (
    UNDER_TEST,
    ChipRule,
    DeviceEntry,
    DeviceRef,
    ExperimentSpec,
    PlacementSpec,
    ProtectionSpec,
)
from memsim.workloads.bridge import ModelImage

__all__ = [
    "ROW_FORMAT",
    "ChipTask",
    "MemoryPlan",
    "Planner",
    "PointTask",
    "WorkContext",
    "adaptive_rule",
    "chip_rule",
    "device_key",
    "knob_box",
    "protection_of",
    "trials_of",
]

ROW_FORMAT = 3
"""3: chips draw their persistent faults independently of the bound, and the chip's knob box
left the keys (the rows of format 2 hold other chips' faults, so a store's older rows are not
reused); 2: energy settings left the row keys (format 1 had them)."""


@dataclass(frozen=True)
class MemoryPlan:
    """One memory of a placement for one model: device, layers, protection, chip sweep."""

    name: str
    device: str
    """Key of the device in the context (its spec hash)."""
    layers: tuple[str, ...]
    protection: Protection
    sweep: tuple[tuple[str, float, float], ...]

    def sweep_dict(self) -> dict[str, tuple[float, float]]:
        return {k: (lo, hi) for k, lo, hi in self.sweep}


@dataclass(frozen=True)
class PointTask:
    """One row: the knobs of every memory of the placement."""

    key: str
    knobs: tuple[Mapping[str, float], ...]


@dataclass(frozen=True)
class ChipTask:
    """One chip of (model, device, placement, protection) at several operating points."""

    model: str
    memories: tuple[MemoryPlan, ...]
    chip: int
    chip_seeds: tuple[int, ...]
    trials: int
    points: tuple[PointTask, ...]


def device_key(torch_device: str) -> dict[str, str]:
    """What a row's key adds for the device its forward passes ran on: nothing for the CPU (so
    keys from before the option stay valid), ``torch_device`` otherwise (another device sums
    in another order)."""
    return {} if torch_device == "cpu" else {"torch_device": torch_device}


@dataclass
class WorkContext:
    """What every worker needs: the models, their test data, the devices."""

    models: dict[str, nn.Module]
    data: dict[str, tuple[torch.Tensor, torch.Tensor]]
    model_data: dict[str, str]
    devices: dict[str, Device]
    evaluation: EvaluationOptions = field(default_factory=EvaluationOptions)
    """How trials run (not what they give)."""


@dataclass
class Cell:
    """One cell of the sweep and what aggregation needs of it (see `manifest`)."""

    index: int
    model: str
    scenario: str
    device: str
    device_name: str
    placement: str
    protection: str
    control_knobs: dict[str, float]
    environment_knobs: dict[str, float]
    group: tuple[str, str, str, str]
    memory_knobs: tuple[dict[str, float], ...]
    nominal_knobs: dict[str, float]
    """The device under test's knobs with its control knobs at nominal (the reference)."""
    keys: list[str] = field(default_factory=list)
    device_ber: float = 0.0


@dataclass
class Group:
    """(model, device entry, placement, protection): the memories a chip task builds."""

    model: LoadedModel
    entry: DeviceEntry
    placement: PlacementSpec
    protection: ProtectionSpec
    memories: tuple[MemoryPlan, ...]
    memory_names: tuple[str, ...]
    device_names: tuple[str, ...]
    memory_inputs: tuple[dict[str, Any], ...]
    overheads: tuple[ProtectionOverhead, ...]
    capacities_mib: tuple[float | None, ...]
    """Stated capacity of each fixed memory (None for the memory under test: the
    deployment's)."""


def protection_of(p: ProtectionSpec) -> Protection:
    return Protection(protected_msbs=p.protected_msbs, ecc=p.ecc, interleave=p.interleave,
                      on_uncorrectable=p.on_uncorrectable)


def _resolve_layers(model: LoadedModel, placement: PlacementSpec
                    ) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(layers in the memory under test, layers of each fixed memory)."""
    fixed: list[tuple[str, ...]] = []
    taken: set[str] = set()
    for m in placement.fixed:
        names = []
        for layer in m.layers:
            name = {"first": model.layers[0], "last": model.layers[-1]}.get(layer, layer)
            if name not in model.layers:
                raise RunnerError(
                    f"placement {placement.name}: model {model.name} has no quantised layer "
                    f"{layer!r}; its layers: {', '.join(model.layers)} (or first, last)")
            if name in taken:
                raise RunnerError(f"placement {placement.name}: layer {name} of model "
                                  f"{model.name} is in two memories")
            taken.add(name)
            names.append(name)
        fixed.append(tuple(names))
    rest = tuple(layer for layer in model.layers if layer not in taken)
    if not rest:
        raise RunnerError(f"placement {placement.name} leaves no layer of model {model.name} in "
                          "the device under test")
    return rest, fixed


def knob_box(values: Sequence[Mapping[str, float]]) -> tuple[tuple[str, float, float], ...]:
    """(name, lowest, highest) of each knob over the knob sets a chip is read at."""
    names = list(values[0])
    return tuple((k, min(v[k] for v in values), max(v[k] for v in values)) for k in names)


def _env(device: Device, scenario_knobs: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in scenario_knobs.items() if k in device.spec.knob_names}


def chip_rule(spec: ExperimentSpec, dry_run: bool) -> ChipRule:
    return ChipRule(1, 1, 1) if dry_run else spec.chips


def trials_of(spec: ExperimentSpec, dry_run: bool) -> int:
    return 1 if dry_run else spec.trials


def adaptive_rule(rule: ChipRule) -> AdaptiveChips:
    target = rule.target_half_width if rule.target_half_width is not None else math.inf
    return AdaptiveChips(rule.batch, rule.min_chips, rule.max_chips, target, rule.confidence)


class Planner:
    """Turns the spec and the loaded models into cells, row inputs and chip tasks."""

    def __init__(self, spec: ExperimentSpec, models: Sequence[LoadedModel], *,
                 dry_run: bool, torch_threads: int = 1, torch_device: str = "cpu") -> None:
        self.spec = spec
        self.torch_threads = torch_threads
        self.torch_device = torch_device
        self.models = list(models)
        self.dry_run = dry_run
        self.devices: dict[str, Device] = {}
        self.device_refs: dict[str, DeviceRef] = {}
        self._points: dict[tuple[str, tuple[tuple[str, float], ...]], OperatingPoint] = {}
        self._overheads: dict[tuple[str, tuple[str, ...], Protection], ProtectionOverhead] = {}
        self.entries = [self._entry(d) for d in spec.devices]
        self.cells: list[Cell] = []
        self.groups: dict[tuple[str, str, str, str], Group] = {}
        self.inputs: dict[str, dict[str, Any]] = {}

    def device(self, ref: DeviceRef) -> Device:
        if ref.spec_hash not in self.devices:
            self.devices[ref.spec_hash] = Device(ref.spec)
            self.device_refs[ref.spec_hash] = ref
        return self.devices[ref.spec_hash]

    def _entry(self, entry: DeviceEntry) -> tuple[DeviceEntry, list[dict[str, float]],
                                                  list[str]]:
        points = entry.operating_points()
        scenarios = list(entry.scenarios)
        if self.dry_run:
            points, scenarios = points[:1], scenarios[:1]
        return entry, points, scenarios

    def at(self, device_key: str, knobs: Mapping[str, float]) -> OperatingPoint:
        key = (device_key, tuple(sorted(knobs.items())))
        if key not in self._points:
            self._points[key] = self.devices[device_key].at(**knobs)
        return self._points[key]

    def overhead(self, model: LoadedModel, layers: tuple[str, ...],
                 protection: Protection) -> ProtectionOverhead:
        key = (model.name, layers, protection)
        if key not in self._overheads:
            image = ModelImage.of(model.model, layers=list(layers)).image
            self._overheads[key] = protect(image, protection).overhead
        return self._overheads[key]

    def plan(self) -> None:
        spec = self.spec
        rule = chip_rule(spec, self.dry_run)
        scenario_order = {s.name: i for i, s in enumerate(spec.scenarios)}
        cells: list[tuple[tuple[int, ...], Cell]] = []
        for mi, model in enumerate(self.models):
            for di, (entry, points, scenarios) in enumerate(self.entries):
                dut = self.device(entry.device)
                dut_key = entry.device.spec_hash
                # every knob set the device under test is read at: the chip's sweep box
                reads = [dut.resolve_knobs({**op, **_env(dut, spec.scenario(s).knobs)})
                         for op in points for s in scenarios]
                dut_box = knob_box(reads)
                for pi, placement in enumerate(spec.placements):
                    rest, fixed_layers = _resolve_layers(model, placement)
                    for qi, prot_spec in enumerate(spec.protections):
                        group = self._group(model, entry, dut_key, dut_box, placement, rest,
                                            fixed_layers, prot_spec)
                        gkey = (model.name, entry.label, placement.name, prot_spec.name)
                        self.groups[gkey] = group
                        for oi, op in enumerate(points):
                            for s in scenarios:
                                cell = self._cell(len(cells), model, entry, dut, op,
                                                  spec.scenario(s).knobs, s, group, gkey,
                                                  rule)
                                order = (mi, scenario_order[s], di, pi, qi, oi)
                                cells.append((order, cell))
        cells.sort(key=lambda oc: oc[0])
        self.cells = [c for _, c in cells]
        for i, c in enumerate(self.cells):
            c.index = i

    def _group(self, model: LoadedModel, entry: DeviceEntry, dut_key: str,
               dut_box: tuple[tuple[str, float, float], ...], placement: PlacementSpec,
               rest: tuple[str, ...], fixed_layers: list[tuple[str, ...]],
               prot_spec: ProtectionSpec) -> Group:
        spec = self.spec
        protection = protection_of(prot_spec)
        plans = [MemoryPlan(UNDER_TEST, dut_key, rest, protection, dut_box)]
        names, devices = [UNDER_TEST], [entry.device.name]
        inputs = [self._memory_inputs(entry.device, rest, prot_spec.to_dict())]
        overheads = [self.overhead(model, rest, protection)]
        capacities: list[float | None] = [None]
        for m, layers in zip(placement.fixed, fixed_layers, strict=True):
            device = self.device(m.device)
            reads = [device.resolve_knobs({**m.knobs, **_env(device, s.knobs)})
                     for s in spec.scenarios]
            box = knob_box(reads)
            plans.append(MemoryPlan(m.name, m.device.spec_hash, layers, Protection(), box))
            names.append(m.name)
            devices.append(m.device.name)
            inputs.append(self._memory_inputs(m.device, layers,
                                              ProtectionSpec("none").to_dict()))
            overheads.append(self.overhead(model, layers, Protection()))
            capacities.append(m.capacity_mib)
        return Group(model, entry, placement, prot_spec, tuple(plans), tuple(names),
                     tuple(devices), tuple(inputs), tuple(overheads), tuple(capacities))

    @staticmethod
    def _memory_inputs(ref: DeviceRef, layers: tuple[str, ...], protection: dict[str, Any]
                       ) -> dict[str, Any]:
        return {"device": ref.name, "device_hash": ref.spec_hash, "layers": list(layers),
                "protection": protection}

    def _cell(self, index: int, model: LoadedModel, entry: DeviceEntry, dut: Device,
              op: Mapping[str, float], scenario_knobs: Mapping[str, float], scenario: str,
              group: Group, gkey: tuple[str, str, str, str], rule: ChipRule) -> Cell:
        spec = self.spec
        dut_knobs = dut.resolve_knobs({**op, **_env(dut, scenario_knobs)})
        memory_knobs = [dut_knobs]
        for m in group.placement.fixed:
            device = self.device(m.device)
            memory_knobs.append(device.resolve_knobs({**m.knobs,
                                                      **_env(device, scenario_knobs)}))
        roles = {k.name: k.role for k in dut.spec.knobs}
        control = {k: v for k, v in dut_knobs.items() if roles[k] is KnobRole.CONTROL}
        environment = {k: v for k, v in dut_knobs.items() if roles[k] is KnobRole.ENVIRONMENT}
        # control knobs at nominal; design knobs (the device) and the environment as read
        nominal = {k: (dut.spec.knob(k).nominal.value if roles[k] is KnobRole.CONTROL else v)
                   for k, v in dut_knobs.items()}
        cell = Cell(index, model.name, scenario, entry.label, dut.name, group.placement.name,
                    group.protection.name, control, environment, gkey, tuple(memory_knobs),
                    nominal)
        cell.device_ber = self.at(entry.device.spec_hash, dut_knobs).ber
        for c in range(rule.max_chips):
            seeds = [chip_seed(spec.seed, name, device, c)
                     for name, device in zip(group.memory_names, group.device_names,
                                             strict=True)]
            memories = [{**mi, "name": name, "knobs": dict(knobs), "chip_seed": s}
                        for mi, name, knobs, s in zip(group.memory_inputs, group.memory_names,
                                                      memory_knobs, seeds, strict=True)]
            inputs = {"row_format": ROW_FORMAT, "model_hash": model.model_hash,
                      "data_hash": model.data_hash, "seed": spec.seed, "chip": c,
                      "trials": trials_of(spec, self.dry_run), "memories": memories,
                      "torch_threads": self.torch_threads, **device_key(self.torch_device)}
            key = key_of(inputs)
            self.inputs[key] = inputs
            cell.keys.append(key)
        return cell
