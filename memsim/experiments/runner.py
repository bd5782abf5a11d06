"""The experiment runner: models × devices × operating points × scenarios × placements ×
protections × chips × trials, resumable, on any executor, with energy and Pareto fronts.

`run_experiment(spec, out_dir)`:

1. Models: trains those without a complete checkpoint (`out_dir/models/<name>/`, resumable),
   loads checkpoints, or quantises a user's torch model after training.
2. Plans every evaluation. A *cell* is (model, scenario, device, operating point, placement,
   protection); a store row is one chip of a cell with all its trials, keyed by `key_of` its
   inputs: the model's weight hash, the test data's hash, and for each memory of the placement
   the device spec's hash, the knob values, the chip's sweep range, the layers, the
   protection, the chip seed; the number of trials, the energy settings and the torch thread
   count (another count may sum logits in another order). One row per chip rather than per
   trial: a chip's trials share its persistent faults and are only ever used together (the
   chip is the sampling unit), and its chips are built once for them. Scenario names are
   labels, not inputs: two scenarios that give a device the same knobs share its rows.
3. Chip c of a memory has the seed `evaluate.chip_seed(seed, memory, device, c)`: independent
   of the model (CE and MCEL models see the same chips) and of the operating point (a chip is
   drawn once for the sweep's knob box, so its faults are nested along the knobs). Trial t of
   the chip reads with `evaluate.trial_seed(chip seed, t)`.
4. Chips come in batches in a fixed order (`stats.AdaptiveChips`); a cell asks for the next
   batch until its interval is narrow enough or its cap is reached, reading only finished
   batches, so the number of chips does not depend on timing or executor. One task evaluates
   one chip of (model, device, placement, protection) at every operating point and scenario
   still missing, building its chips once.
5. Each finished row is committed to `results.sqlite` (`store.ResultStore`) as soon as it
   arrives; a rerun skips stored rows, so a killed run resumes and ends with the same numbers.
6. Aggregates (`aggregate`): per cell, the accuracy interval with chips as clusters, means of
   the other figures over chips, the energy per inference and relative to the same placement
   at nominal control knobs; Pareto fronts per (model, scenario) over devices, operating
   points, placements and protections; the cheapest point within each accuracy budget.
   `write_outputs` writes `results.csv`, `pareto.csv` and `budgets.csv` (floats as `repr`,
   rows in config order: byte-identical across executors and resumes), then the plots and
   `report.md` (`memsim.experiments.report`). `manifest.json` records the cells and their
   row keys, so `aggregate` needs neither the config nor the models.

Energy per inference follows `memsim.experiments.energy`. Devices without an energy model (zero
energy at nominal knobs, e.g. `symmetric-bitflip`) are left out of the Pareto fronts.

Public API:
    run_experiment(spec, out_dir, *, executor="pool", workers=None, address=None,
                   threads_per_worker=1, dry_run=False, progress=True, log=None, command="")
                   -> SweepResults (its `outputs`: the files written)
    aggregate(out_dir) -> SweepResults        from `manifest.json` and the store
    write_outputs(out_dir, results, *, command="", elapsed_s=None) -> list[Path]
    prepare_models(spec, out_dir, ...) -> list[LoadedModel]; evaluate_chip(context, task)
    model_hash(model), data_hash(images, labels)
    SweepResults, CellResult, CleanResult, RunnerError (a MemsimError).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import json
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from memsim.errors import MemsimError
from memsim.experiments.energy import InferenceEnergy, MemoryUse, inference_energy
from memsim.experiments.evaluate import MemoryRead, chip_seed, run_trial
from memsim.experiments.executors import Executor, make_executor, pinned_threads
from memsim.experiments.pareto import BudgetRow, TradeoffPoint, budget_table, fronts_by_group
from memsim.experiments.report import PairedSummary, ReportRow, write_report
from memsim.experiments.stats import AdaptiveChips, cluster_mean_interval
from memsim.experiments.store import (
    STORE_FILENAME,
    ResultStore,
    atomic_write_text,
    csv_cell,
    key_of,
)
from memsim.memory.protection import ProtectedImage, Protection, ProtectionOverhead, protect
from memsim.physics.device import Device, OperatingPoint
from memsim.spec.device import KnobRole, parse_device
from memsim.spec.experiment import (
    UNDER_TEST,
    ChipRule,
    DataSelection,
    DeviceEntry,
    DeviceRef,
    ExperimentSpec,
    ModelEntry,
    ModelSourceKind,
    PlacementSpec,
    ProtectionSpec,
)
from memsim.spec.loader import load_document
from workloads.bridge import ModelImage, clear
from workloads.data import load_dataset
from workloads.layers import iter_quantized_layers
from workloads.metrics import logit_stats
from workloads.ptq import quantize_model
from workloads.training import CheckpointError, build_model_for, load_checkpoint, predict, train

__all__ = [
    "BUDGETS_CSV",
    "MANIFEST_FILENAME",
    "PARETO_CSV",
    "RESULTS_CSV",
    "CellResult",
    "ChipTask",
    "CleanResult",
    "LoadedModel",
    "RunnerError",
    "SweepResults",
    "WorkContext",
    "aggregate",
    "data_hash",
    "evaluate_chip",
    "model_hash",
    "prepare_models",
    "run_experiment",
    "write_outputs",
]

MANIFEST_FILENAME = "manifest.json"
RESULTS_CSV = "results.csv"
PARETO_CSV = "pareto.csv"
BUDGETS_CSV = "budgets.csv"
PAIRED_CSV = "paired.csv"
DRY_RUN_DIR = "dry-run"
DRY_RUN_TEST_IMAGES = 64
_MANIFEST_FORMAT = 1
_ROW_FORMAT = 1

Log = Callable[[str], None]


class RunnerError(MemsimError):
    """A sweep that cannot be planned or read back (a layer in no memory, a missing store)."""


# -- models -----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A quantised model ready for evaluation, with its test data and identities."""

    name: str
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    model_hash: str
    data_hash: str
    layers: tuple[str, ...]
    source: str


def model_hash(model: nn.Module) -> str:
    """SHA-256 of a model's structure (its repr) and every tensor of its state (names, dtypes,
    shapes, bytes): what an evaluation depends on, not when or where it was saved."""
    h = hashlib.sha256(repr(model).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_hash(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the test images and labels (values, dtypes, shapes)."""
    h = hashlib.sha256()
    for t in (images, labels):
        c = t.detach().cpu().contiguous()
        h.update(f"{c.dtype}{tuple(c.shape)}".encode())
        h.update(c.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _torch_threads_restored() -> Iterator[None]:
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _import_path(path: str | None) -> Iterator[None]:
    """``path`` first on sys.path while a user's builder is imported and called, then gone, so
    a folder of the user's does not shadow modules for the rest of the process."""
    if path is None or path in sys.path:
        yield
        return
    sys.path.insert(0, path)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(path)


def _import_builder(entry: ModelEntry) -> Callable[..., Any]:
    tm = entry.torch_model
    assert tm is not None
    module_name, _, func_name = tm.builder.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RunnerError(f"model {entry.name}: cannot import {module_name} ({e})") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise RunnerError(f"model {entry.name}: {module_name} has no function {func_name}")
    return fn  # type: ignore[no-any-return]


def _torch_model(entry: ModelEntry) -> nn.Module:
    tm, ptq = entry.torch_model, entry.ptq
    assert tm is not None and ptq is not None
    with _import_path(tm.path):
        model = _import_builder(entry)(**dict(tm.args))
    if not isinstance(model, nn.Module):
        raise RunnerError(f"model {entry.name}: {tm.builder} returned "
                          f"{type(model).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(tm.weights, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for foreign or truncated files
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise RunnerError(f"model {entry.name}: {tm.weights}: not a readable state_dict "
                          f"({first})") from None
    if not isinstance(state, Mapping):
        raise RunnerError(f"model {entry.name}: {tm.weights} holds {type(state).__name__}, "
                          "not a state_dict (save it with torch.save(model.state_dict(), f))")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise RunnerError(f"model {entry.name}: weights do not fit {tm.builder} "
                          f"({str(e).splitlines()[0][:160]})") from None
    model.eval()
    quantised = quantize_model(model, weight_bits=ptq.weight_bits,
                               weight_scheme=ptq.scheme.value, per_channel=ptq.per_channel,
                               exclude=ptq.exclude)
    quantised.eval()
    return quantised


def _test_split(sel: DataSelection) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = load_dataset(sel.name, sel.dir, image_size=sel.image_size)
    return dataset.test.images, dataset.test.labels


def _prepare_model(entry: ModelEntry, spec: ExperimentSpec, out_dir: Path, *, dry_run: bool,
                   progress: bool, log: Log | None) -> tuple[nn.Module, torch.Tensor | None,
                                                             torch.Tensor | None, str]:
    """(model, its own test images and labels if any, where it came from)."""
    if entry.kind is ModelSourceKind.CHECKPOINT:
        assert entry.checkpoint is not None
        # the experiment's data directory (--data-dir) also serves a checkpoint whose data moved
        data_dir = spec.data.dir if spec.data is not None else None
        trained = load_checkpoint(entry.checkpoint, data_dir=data_dir)
        return trained.model, trained.dataset.test.images, trained.dataset.test.labels, \
            entry.checkpoint
    if entry.kind is ModelSourceKind.TORCH:
        assert entry.torch_model is not None
        return _torch_model(entry), None, None, entry.torch_model.builder
    tspec = entry.train
    assert tspec is not None
    folder = out_dir / "models" / entry.name
    ckpt = folder / "checkpoint.pt"
    if ckpt.is_file():
        trained = load_checkpoint(ckpt)
        if trained.spec.to_dict() != tspec.to_dict():
            raise CheckpointError(f"{ckpt} was written by another training config than model "
                                  f"{entry.name}'s; use another --out directory or remove it")
        if trained.complete or dry_run:
            if log is not None and not trained.complete:
                log(f"{entry.name}: dry run on the checkpoint after epoch {trained.epoch}")
            return trained.model, trained.dataset.test.images, trained.dataset.test.labels, \
                str(ckpt)
    if dry_run:
        # Build the training run (data, model, loss, optimiser, method) without a step, then
        # evaluate the initialised model: a dry run checks everything but trains nothing.
        train(tspec, out_dir / DRY_RUN_DIR / "models" / entry.name, stop_after_epochs=0)
        dataset = load_dataset(tspec.data.name, tspec.data.dir,
                               image_size=tspec.data.image_size, seed=tspec.seed)
        torch.manual_seed(tspec.seed)
        model = build_model_for(tspec, dataset)
        model.eval()
        return model, dataset.test.images, dataset.test.labels, "untrained (dry run)"
    started = time.perf_counter()
    result = train(tspec, folder, progress=progress)
    trained = load_checkpoint(result.checkpoint)
    if log is not None:
        resumed = f", resumed at epoch {result.resumed_at_epoch}" if result.resumed_at_epoch \
            else ""
        log(f"trained {entry.name}: test accuracy {result.test_accuracy:.3f} after "
            f"{tspec.epochs} epochs ({time.perf_counter() - started:.1f} s{resumed}) -> "
            f"{result.checkpoint}")
    return trained.model, trained.dataset.test.images, trained.dataset.test.labels, \
        str(result.checkpoint)


def prepare_models(spec: ExperimentSpec, out_dir: Path, *, dry_run: bool = False,
                   progress: bool = False, log: Log | None = None) -> list[LoadedModel]:
    """Every model of the experiment, trained or loaded, with its test data."""
    shared: tuple[torch.Tensor, torch.Tensor] | None = None
    if spec.data is not None:
        shared = _test_split(spec.data)
    limit = spec.data.test_images if spec.data is not None else None
    if dry_run:
        limit = min(limit or DRY_RUN_TEST_IMAGES, DRY_RUN_TEST_IMAGES)
    out: list[LoadedModel] = []
    with _torch_threads_restored():
        for entry in spec.models:
            model, images, labels, source = _prepare_model(entry, spec, out_dir,
                                                           dry_run=dry_run, progress=progress,
                                                           log=log)
            if shared is not None:
                images, labels = shared
            assert images is not None and labels is not None
            if limit is not None:
                images, labels = images[:limit], labels[:limit]
            model.eval()
            clear(model)
            layers = tuple(name for name, _ in iter_quantized_layers(model))
            if not layers:
                raise RunnerError(f"model {entry.name} has no quantised layers")
            out.append(LoadedModel(entry.name, model, images.contiguous(),
                                   labels.contiguous(), model_hash(model),
                                   data_hash(images, labels), layers, source))
    return out


# -- planning -------------------------------------------------------------------------------


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


@dataclass
class WorkContext:
    """What every worker needs: the models, their test data, the devices."""

    models: dict[str, nn.Module]
    data: dict[str, tuple[torch.Tensor, torch.Tensor]]
    model_data: dict[str, str]
    devices: dict[str, Device]


@dataclass
class _Cell:
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
    keys: list[str] = field(default_factory=list)
    energy: dict[str, Any] = field(default_factory=dict)
    device_ber: float = 0.0
    bits: dict[str, int] = field(default_factory=dict)


@dataclass
class _Group:
    """(model, device entry, placement, protection): the memories a chip task builds."""

    model: LoadedModel
    entry: DeviceEntry
    placement: PlacementSpec
    protection: ProtectionSpec
    memories: tuple[MemoryPlan, ...]
    memory_names: tuple[str, ...]
    device_names: tuple[str, ...]
    memory_inputs: tuple[dict[str, Any], ...]


def _protection(p: ProtectionSpec) -> Protection:
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


def _knob_box(values: Sequence[Mapping[str, float]]) -> tuple[tuple[str, float, float], ...]:
    names = list(values[0])
    return tuple((k, min(v[k] for v in values), max(v[k] for v in values)) for k in names)


def _env(device: Device, scenario_knobs: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in scenario_knobs.items() if k in device.spec.knob_names}


class _Planner:
    """Turns the spec and the loaded models into cells, row inputs and chip tasks."""

    def __init__(self, spec: ExperimentSpec, models: Sequence[LoadedModel], *,
                 dry_run: bool, torch_threads: int = 1) -> None:
        self.spec = spec
        self.torch_threads = torch_threads
        self.models = list(models)
        self.dry_run = dry_run
        self.devices: dict[str, Device] = {}
        self._points: dict[tuple[str, tuple[tuple[str, float], ...]], OperatingPoint] = {}
        self._overheads: dict[tuple[str, tuple[str, ...], Protection], ProtectionOverhead] = {}
        self.entries = [self._entry(d) for d in spec.devices]
        self.cells: list[_Cell] = []
        self.groups: dict[tuple[str, str, str, str], _Group] = {}
        self.inputs: dict[str, dict[str, Any]] = {}
        self.energy_outputs: dict[str, dict[str, Any]] = {}

    def device(self, ref: DeviceRef) -> Device:
        if ref.spec_hash not in self.devices:
            self.devices[ref.spec_hash] = Device(ref.spec)
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
        cells: list[tuple[tuple[int, ...], _Cell]] = []
        for mi, model in enumerate(self.models):
            for di, (entry, points, scenarios) in enumerate(self.entries):
                dut = self.device(entry.device)
                dut_key = entry.device.spec_hash
                # every knob set the device under test is read at: the chip's sweep box
                reads = [dut.resolve_knobs({**op, **_env(dut, spec.scenario(s).knobs)})
                         for op in points for s in scenarios]
                dut_box = _knob_box(reads)
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
               prot_spec: ProtectionSpec) -> _Group:
        spec = self.spec
        plans = [MemoryPlan(UNDER_TEST, dut_key, rest, _protection(prot_spec), dut_box)]
        names, devices = [UNDER_TEST], [entry.device.name]
        inputs = [self._memory_inputs(entry.device, rest, prot_spec.to_dict(), dut_box,
                                      spec.energy.capacity_mib)]
        for m, layers in zip(placement.fixed, fixed_layers, strict=True):
            device = self.device(m.device)
            reads = [device.resolve_knobs({**m.knobs, **_env(device, s.knobs)})
                     for s in spec.scenarios]
            box = _knob_box(reads)
            plans.append(MemoryPlan(m.name, m.device.spec_hash, layers, Protection(), box))
            names.append(m.name)
            devices.append(m.device.name)
            inputs.append(self._memory_inputs(m.device, layers, ProtectionSpec("none").to_dict(),
                                              box, m.capacity_mib))
        return _Group(model, entry, placement, prot_spec, tuple(plans), tuple(names),
                      tuple(devices), tuple(inputs))

    @staticmethod
    def _memory_inputs(ref: DeviceRef, layers: tuple[str, ...], protection: dict[str, Any],
                       box: tuple[tuple[str, float, float], ...],
                       capacity_mib: float | None) -> dict[str, Any]:
        return {"device": ref.name, "device_hash": ref.spec_hash, "layers": list(layers),
                "protection": protection,
                "sweep": {k: [float(lo), float(hi)] for k, lo, hi in box},
                "capacity_mib": capacity_mib}

    def _cell(self, index: int, model: LoadedModel, entry: DeviceEntry, dut: Device,
              op: Mapping[str, float], scenario_knobs: Mapping[str, float], scenario: str,
              group: _Group, gkey: tuple[str, str, str, str], rule: ChipRule) -> _Cell:
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
        cell = _Cell(index, model.name, scenario, entry.label, dut.name, group.placement.name,
                     group.protection.name, control, environment, gkey,
                     tuple(memory_knobs))
        energy, dut_nominal_pj = self._energy(model, group, dut, dut_knobs, memory_knobs)
        cell.energy = {**_energy_dict(energy), "under_test_nominal_pj": dut_nominal_pj}
        cell.device_ber = self.at(entry.device.spec_hash, dut_knobs).ber
        o = self.overhead(model, group.memories[0].layers, group.memories[0].protection)
        cell.bits = {"data_bits": o.data_bits, "stored_bits": o.stored_bits,
                     "reliable_bits": o.reliable_bits}
        energy_out = {"energy_pj": energy.total_pj, "energy_nominal_pj": energy.nominal_pj,
                      "energy_assumed": energy.assumed}
        for c in range(rule.max_chips):
            seeds = [chip_seed(spec.seed, name, device, c)
                     for name, device in zip(group.memory_names, group.device_names,
                                             strict=True)]
            memories = [{**mi, "name": name, "knobs": dict(knobs), "chip_seed": s}
                        for mi, name, knobs, s in zip(group.memory_inputs, group.memory_names,
                                                      memory_knobs, seeds, strict=True)]
            inputs = {"row_format": _ROW_FORMAT, "model_hash": model.model_hash,
                      "data_hash": model.data_hash, "seed": spec.seed, "chip": c,
                      "trials": trials_of(spec, self.dry_run), "memories": memories,
                      "torch_threads": self.torch_threads,
                      "energy": _energy_inputs(spec)}
            key = key_of(inputs)
            self.inputs[key] = inputs
            self.energy_outputs[key] = energy_out
            cell.keys.append(key)
        return cell

    def _energy(self, model: LoadedModel, group: _Group, dut: Device,
                dut_knobs: Mapping[str, float], memory_knobs: Sequence[Mapping[str, float]]
                ) -> tuple[InferenceEnergy, float]:
        """The placement's energy, and the memory under test's alone at nominal knobs."""
        spec = self.spec
        roles = {k.name: k.role for k in dut.spec.knobs}
        # control knobs at nominal; design knobs (the device) and the environment as read
        nominal_knobs = {k: (dut.spec.knob(k).nominal.value if roles[k] is KnobRole.CONTROL
                             else v) for k, v in dut_knobs.items()}
        ipw = spec.energy.inferences_per_write
        writes = 0.0 if ipw is None else 1.0 / ipw  # every memory is programmed together
        uses = []
        for i, plan in enumerate(group.memories):
            at = self.at(plan.device, memory_knobs[i])
            nominal = self.at(plan.device, nominal_knobs) if i == 0 else at
            capacity = (spec.energy.capacity_mib if i == 0
                        else group.placement.fixed[i - 1].capacity_mib)
            uses.append(MemoryUse(self.overhead(model, plan.layers, plan.protection), at,
                                  nominal, capacity_mib=capacity,
                                  reads_per_inference=spec.energy.reads_per_inference,
                                  name=plan.name, writes_per_inference=writes))
        t = spec.energy.inference_time_s
        return inference_energy(uses, t), inference_energy(uses[0], t).nominal_pj


def chip_rule(spec: ExperimentSpec, dry_run: bool) -> ChipRule:
    return ChipRule(1, 1, 1) if dry_run else spec.chips


def trials_of(spec: ExperimentSpec, dry_run: bool) -> int:
    return 1 if dry_run else spec.trials


def _adaptive(rule: ChipRule) -> AdaptiveChips:
    target = rule.target_half_width if rule.target_half_width is not None else math.inf
    return AdaptiveChips(rule.batch, rule.min_chips, rule.max_chips, target, rule.confidence)


def _energy_inputs(spec: ExperimentSpec) -> dict[str, Any]:
    """The energy settings in a task's identity; ``inferences_per_write`` only when given, so
    that the keys of stores written before it existed stay valid."""
    e = spec.energy
    out: dict[str, Any] = {"inference_time_s": e.inference_time_s,
                           "reads_per_inference": e.reads_per_inference}
    if e.inferences_per_write is not None:
        out["inferences_per_write"] = e.inferences_per_write
    return out


def _energy_dict(e: InferenceEnergy) -> dict[str, Any]:
    b = e.breakdown
    return {"total_pj": e.total_pj, "nominal_pj": e.nominal_pj,
            "read_pj": math.fsum((b.read_pj, b.check_read_pj, b.padding_read_pj)),
            "reliable_read_pj": b.reliable_read_pj, "static_pj": b.static_pj,
            "refresh_pj": b.refresh_pj, "write_pj": b.write_pj, "assumed": e.assumed,
            "assumed_figures": list(e.assumed_figures), "provenance": list(e.provenance)}


# -- the work of one task (runs on a worker) -----------------------------------------------

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


_PER_TRIAL = ("accuracy", "mlm", "mlm_normalised", "flips_zero_to_one", "flips_one_to_zero",
              "stuck_cells", "residual_bit_errors", "corrected_words", "uncorrectable_words",
              "under_test_bit_errors")


def evaluate_chip(context: WorkContext, task: ChipTask) -> list[tuple[str, dict[str, Any]]]:
    """Every trial of one chip at each operating point of the task: (key, outputs) rows."""
    model = context.models[task.model]
    images, labels = context.data[context.model_data[task.model]]
    memories = [_memory(model, plan) for plan in task.memories]
    chips = [protected.chip(context.devices[plan.device], seed, plan.sweep_dict())
             for plan, (_, protected), seed in zip(task.memories, memories, task.chip_seeds,
                                                    strict=True)]
    rows = []
    model.eval()
    for point in task.points:
        reads = [MemoryRead(mi, protected, chip, point.knobs[i], task.chip_seeds[i])
                 for i, ((mi, protected), chip) in enumerate(zip(memories, chips, strict=True))]
        outcomes = [run_trial(model, images, labels, reads, 0, t) for t in range(task.trials)]
        rows.append((point.key, {name: [getattr(o, name) for o in outcomes]
                                 for name in _PER_TRIAL}))
    return rows


# -- numba warm-up ----------------------------------------------------------------------------


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
        box = _knob_box([device.resolve_knobs(k) for k in knob_sets])
        sweep = {k: (lo, hi) for k, lo, hi in box}
        for protection in protections or (Protection(),):
            protected = protect(image, protection)
            chip = protected.chip(device, 1, sweep)
            for knobs in knob_sets:
                protected.read(chip, knobs, seed=1)


# -- the sweep ---------------------------------------------------------------------------------


def _progress_bar(enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=0, desc=desc, unit="eval", dynamic_ncols=True, smoothing=0.05,
                disable=None)  # None: no bar when stderr is not a terminal (logs, CI)


def run_experiment(spec: ExperimentSpec, out_dir: str | Path, *,
                   executor: str | Executor = "pool", workers: int | None = None,
                   address: str | None = None, threads_per_worker: int = 1,
                   dry_run: bool = False, progress: bool = True,
                   log: Log | None = None, command: str = "") -> SweepResults:
    """Train or load the models, sweep, store every row, aggregate and write the outputs.

    `dry_run`: validate and build everything, then evaluate a token amount (every model,
    device, placement and protection at the device's first operating point and scenario, one
    chip, one trial, at most 64 test images; models that would be trained are evaluated
    untrained) into `out_dir/dry-run/`. `command` is quoted in the report.
    """
    started = time.perf_counter()
    base = Path(out_dir)
    out = base / DRY_RUN_DIR if dry_run else base
    out.mkdir(parents=True, exist_ok=True)
    # a user model's folder is importable for the whole run, in this process as in the
    # workers (its module may import lazily), and gone afterwards
    import_paths = [m.torch_model.path for m in spec.models
                    if m.torch_model is not None and m.torch_model.path is not None]
    with contextlib.ExitStack() as on_path:
        for path in import_paths:
            on_path.enter_context(_import_path(path))
        models = prepare_models(spec, base, dry_run=dry_run, progress=progress, log=log)
        planner = _Planner(spec, models, dry_run=dry_run, torch_threads=threads_per_worker)
        planner.plan()
        runner = make_executor(executor, workers, address, threads_per_worker) \
            if isinstance(executor, str) else executor
        with ResultStore.in_dir(out) as store:
            clean = _clean_rows(store, models, threads_per_worker)
            _write_manifest(out, spec, models, planner, clean, dry_run)
            context = WorkContext(
                models={m.name: m.model for m in models},
                data={m.data_hash: (m.images, m.labels) for m in models},
                model_data={m.name: m.data_hash for m in models},
                devices=planner.devices)
            reads: dict[str, list[Mapping[str, float]]] = {}
            for cell in planner.cells:
                for plan, knobs in zip(planner.groups[cell.group].memories, cell.memory_knobs,
                                       strict=True):
                    reads.setdefault(plan.device, []).append(knobs)
            with pinned_threads(threads_per_worker):
                warm_up(planner.devices, reads, [_protection(p) for p in spec.protections])
            with runner:
                runner.open(evaluate_chip, context, import_paths)
                _sweep(spec, planner, store, runner, dry_run=dry_run, progress=progress, log=log)
    results = aggregate(out)
    paths = write_outputs(out, results, command=command,
                          elapsed_s=time.perf_counter() - started)
    return replace(results, outputs=tuple(paths))


def _clean_rows(store: ResultStore, models: Sequence[LoadedModel], threads: int
                ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Fault-free accuracy and margins of each model (a stored row too)."""
    out = {}
    with pinned_threads(threads):
        for m in models:
            inputs = {"row_format": _ROW_FORMAT, "kind": "clean", "model_hash": m.model_hash,
                      "data_hash": m.data_hash, "torch_threads": threads}
            key = key_of(inputs)
            row = store.get(key)
            if row is None:
                clear(m.model)
                stats = logit_stats(predict(m.model, m.images), m.labels)
                outputs = {"accuracy": stats.accuracy, "mlm": stats.mlm,
                           "mlm_normalised": stats.mlm_normalised, "n_test": stats.n}
                store.put(key, inputs, outputs)
            else:
                outputs = dict(row.outputs)
            out[m.name] = (key, outputs)
    return out


def _sweep(spec: ExperimentSpec, planner: _Planner, store: ResultStore, runner: Executor, *,
           dry_run: bool, progress: bool, log: Log | None) -> None:
    rule = _adaptive(chip_rule(spec, dry_run))
    trials = trials_of(spec, dry_run)
    cells_of_key: dict[str, list[_Cell]] = {}
    chip_of_key: dict[str, int] = {}
    finished: dict[int, dict[int, list[float]]] = {}
    for cell in planner.cells:
        finished[cell.index] = {}
        for c, key in enumerate(cell.keys):
            cells_of_key.setdefault(key, []).append(cell)
            chip_of_key[key] = c
    stored = set(store.keys())
    for key, cells in cells_of_key.items():
        if key in stored:
            row = store.get(key)
            assert row is not None
            for cell in cells:
                finished[cell.index][chip_of_key[key]] = list(row.outputs["accuracy"])
    skipped = sum(1 for key in cells_of_key if key in stored)
    bar = _progress_bar(progress, f"{spec.name}{' (dry run)' if dry_run else ''}")
    done = 0
    started = time.perf_counter()
    try:
        while True:
            wanted: dict[tuple[tuple[str, str, str, str], int], dict[str, _Cell]] = {}
            for cell in planner.cells:
                batch = rule.next_batch(finished[cell.index])
                if batch is None:
                    continue
                for c in batch:
                    if c not in finished[cell.index]:
                        wanted.setdefault((cell.group, c), {}).setdefault(cell.keys[c], cell)
            if not wanted:
                break
            tasks = []
            for (gkey, c), points in sorted(wanted.items()):
                group = planner.groups[gkey]
                seeds = tuple(m["chip_seed"] for m in planner.inputs[
                    next(iter(points))]["memories"])
                tasks.append(ChipTask(group.model.name, group.memories, c, seeds, trials,
                                      tuple(PointTask(key, cell.memory_knobs)
                                            for key, cell in points.items())))
            n_rows = sum(len(t.points) for t in tasks)
            if bar is not None:
                bar.total += n_rows
                bar.set_postfix_str(f"{skipped} stored before", refresh=False)
                bar.refresh()
            for rows in runner.map_unordered(tasks):
                for key, outputs in rows:
                    store.put(key, planner.inputs[key],
                              {**outputs, **planner.energy_outputs[key],
                               "device_ber": cells_of_key[key][0].device_ber})
                    for cell in cells_of_key[key]:
                        finished[cell.index][chip_of_key[key]] = list(outputs["accuracy"])
                    done += 1
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if log is not None:
        log(f"{done} evaluations in {time.perf_counter() - started:.1f} s "
            f"({skipped} already stored)")


# -- manifest and aggregation -------------------------------------------------------------


def _write_manifest(out: Path, spec: ExperimentSpec, models: Sequence[LoadedModel],
                    planner: _Planner, clean: Mapping[str, tuple[str, dict[str, Any]]],
                    dry_run: bool) -> None:
    rule = chip_rule(spec, dry_run)
    manifest = {
        "format": _MANIFEST_FORMAT,
        "name": spec.name,
        "description": spec.description,
        "source": spec.source,
        "dry_run": dry_run,
        "config": _jsonable(spec.document),
        "seed": spec.seed,
        "trials": trials_of(spec, dry_run),
        "chips": {"batch": rule.batch, "min": rule.min_chips, "max": rule.max_chips,
                  "target_half_width": rule.target_half_width, "confidence": rule.confidence},
        "budgets_points": list(spec.budgets_points),
        "devices": {entry.label: {"name": entry.device.name, "file": entry.device.path,
                                  "spec_hash": entry.device.spec_hash,
                                  "swept": [k for k, _ in entry.sweep],
                                  "document": _jsonable(load_document(Path(entry.device.path)))}
                    for entry in spec.devices},
        "models": [{"name": m.name, "model_hash": m.model_hash, "data_hash": m.data_hash,
                    "source": m.source, "n_test": int(m.labels.shape[0]),
                    "clean_key": clean[m.name][0]} for m in models],
        "cells": [{"model": c.model, "scenario": c.scenario, "device": c.device,
                   "device_name": c.device_name, "placement": c.placement,
                   "protection": c.protection, "control_knobs": c.control_knobs,
                   "environment_knobs": c.environment_knobs, "device_ber": c.device_ber,
                   "energy": c.energy, "bits": c.bits, "keys": c.keys}
                  for c in planner.cells],
    }
    # key order kept: a device document's knob order means something (its first control knob)
    atomic_write_text(out / MANIFEST_FILENAME, json.dumps(manifest, indent=1) + "\n")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class CleanResult:
    """A model's fault-free figures on the test images."""

    model: str
    accuracy: float
    mlm: float
    mlm_normalised: float
    n_test: int


@dataclass(frozen=True)
class CellResult:
    """One cell's aggregate: accuracy interval over chips (chips as clusters), means over chips
    of the per-chip means of the other figures, and the energy per inference."""

    model: str
    scenario: str
    device: str
    placement: str
    protection: str
    control_knobs: Mapping[str, float]
    environment_knobs: Mapping[str, float]
    chips: int
    trials: int
    complete: bool
    clean_accuracy: float
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    accuracy_half_width: float | None
    mlm: float | None
    mlm_normalised: float | None
    bit_errors: float | None
    under_test_ber: float | None
    residual_bit_errors: float | None
    corrected_words: float | None
    uncorrectable_words: float | None
    device_ber: float
    data_bits: int
    stored_bits: int
    reliable_bits: int
    energy_pj: float
    energy_nominal_pj: float
    energy_read_pj: float
    energy_reliable_read_pj: float
    energy_static_pj: float
    energy_refresh_pj: float
    energy_write_pj: float
    energy_assumed: bool
    energy_assumed_figures: tuple[str, ...]
    energy_under_test_nominal_pj: float = 0.0
    """The memory under test's own energy at nominal knobs (0: its device has no energy
    model, so the cell stays out of the Pareto fronts)."""
    chip_accuracy: tuple[float, ...] = ()
    """Mean accuracy of each chip used, chips 0, 1, ... (what `paired` pairs models by)."""

    @property
    def energy_relative(self) -> float:
        """Energy over the same placement's at nominal control knobs (1 when both are 0)."""
        if self.energy_nominal_pj == 0.0:
            return 1.0 if self.energy_pj == 0.0 else math.inf
        return self.energy_pj / self.energy_nominal_pj

    @property
    def has_energy_model(self) -> bool:
        return self.energy_under_test_nominal_pj > 0.0


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of `model` minus that of `versus` in one cell, paired chip by chip: chip
    seeds do not depend on the model, so chip c of both is the same simulated chip."""

    model: str
    versus: str
    scenario: str
    device: str
    placement: str
    protection: str
    control_knobs: Mapping[str, float]
    environment_knobs: Mapping[str, float]
    chips: int
    difference: float
    low: float | None
    """None with a single chip (no interval). The interval covers chip-to-chip spread on
    this test set, not test-set sampling or training noise."""
    high: float | None
    clean_difference: float
    """The same difference without errors: what the errors add is `difference` less this."""


@dataclass(frozen=True)
class SweepResults:
    """What a sweep produced: per-cell aggregates, Pareto fronts and budget tables."""

    name: str
    out_dir: Path
    cells: tuple[CellResult, ...]
    clean: Mapping[str, CleanResult]
    points: tuple[TradeoffPoint, ...]
    """Pareto candidates: evaluated cells of devices with an energy model."""
    point_cells: tuple[int, ...]
    """Index into `cells` of each point."""
    fronts: Mapping[tuple[str, str], list[int]]
    """(model, scenario) -> indices into `points` on its front, by increasing energy."""
    budgets: tuple[BudgetRow, ...]
    """Cheapest point within each budget, judged by the mean accuracy."""
    budgets_conservative: tuple[BudgetRow, ...]
    """The same, judged by the low end of the accuracy interval."""
    budgets_points: tuple[float, ...]
    complete: bool
    dry_run: bool
    config: Mapping[str, Any]
    """The experiment config as read, for reports."""
    devices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Device label -> {name, file, spec_hash, swept (knob names), document}."""
    outputs: tuple[Path, ...] = ()
    """The files `write_outputs` wrote (set by `run_experiment`)."""
    paired: tuple[PairedDifference, ...] = ()
    """Every later model against every earlier one (config order) on the same test data, in
    every cell both have (`paired_differences`)."""


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _chip_means(rows: Sequence[Mapping[str, Any]], name: str) -> float:
    """Mean over chips of each chip's mean over its trials."""
    return _mean([_mean([float(v) for v in r[name]]) for r in rows])


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def aggregate(out_dir: str | Path) -> SweepResults:
    """Aggregates, Pareto fronts and budget tables of a sweep from its manifest and store."""
    out = Path(out_dir)
    manifest_path = out / MANIFEST_FILENAME
    if not (out / STORE_FILENAME).is_file() or not manifest_path.is_file():
        raise RunnerError(f"{out}: no sweep here (expected {STORE_FILENAME} and "
                          f"{MANIFEST_FILENAME}; run memsim run CONFIG --out {out} first)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunnerError(f"{manifest_path}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT:
        raise RunnerError(f"{manifest_path}: not a memsim sweep manifest of format "
                          f"{_MANIFEST_FORMAT}")
    c = manifest["chips"]
    rule = _adaptive(ChipRule(c["batch"], c["min"], c["max"], c["target_half_width"],
                              c["confidence"]))
    with ResultStore(out / STORE_FILENAME) as store:
        clean: dict[str, CleanResult] = {}
        for m in manifest["models"]:
            row = store.get(m["clean_key"])
            if row is None:
                raise RunnerError(f"{out}: the clean evaluation of model {m['name']} is missing "
                                  "from the store")
            o = row.outputs
            clean[m["name"]] = CleanResult(m["name"], o["accuracy"], o["mlm"],
                                           o["mlm_normalised"], o["n_test"])
        cells = tuple(_aggregate_cell(store, cell, rule, manifest["trials"],
                                      clean[cell["model"]].accuracy)
                      for cell in manifest["cells"])
    points, point_cells = [], []
    for i, cell in enumerate(cells):
        if cell.chips == 0 or not cell.has_energy_model or cell.accuracy is None:
            continue
        points.append(TradeoffPoint(
            cell.model, cell.scenario, cell.device, dict(cell.control_knobs), cell.energy_pj,
            cell.accuracy, cell.accuracy_low, cell.accuracy_high, cell.protection,
            cell.placement, cell.energy_assumed))
        point_cells.append(i)
    budgets = tuple(manifest["budgets_points"])
    clean_acc = {name: c.accuracy for name, c in clean.items()}
    data_of = {m["name"]: m["data_hash"] for m in manifest["models"]}
    return SweepResults(
        name=manifest["name"], out_dir=out, cells=cells, clean=clean, points=tuple(points),
        point_cells=tuple(point_cells), fronts=fronts_by_group(points),
        budgets=tuple(budget_table(points, clean_acc, budgets)),
        budgets_conservative=tuple(budget_table(points, clean_acc, budgets, conservative=True)),
        budgets_points=budgets, complete=all(cell.complete for cell in cells),
        dry_run=bool(manifest["dry_run"]), config=manifest["config"],
        devices=manifest["devices"], paired=paired_differences(cells, data_of))


def paired_differences(cells: Sequence[CellResult], data_of: Mapping[str, str]
                       ) -> tuple[PairedDifference, ...]:
    """Each later model minus each earlier one (in the order of `data_of`, the config's), cell
    by cell, over the chips both used (chips 0, 1, ...; a t-interval over the per-chip
    differences). Models evaluated on different test data are not compared."""
    def where(c: CellResult) -> tuple[Any, ...]:
        return (c.scenario, c.device, c.placement, c.protection,
                tuple(sorted(c.control_knobs.items())),
                tuple(sorted(c.environment_knobs.items())))

    by_model: dict[str, dict[tuple[Any, ...], CellResult]] = {}
    for c in cells:
        by_model.setdefault(c.model, {})[where(c)] = c
    names = [n for n in data_of if n in by_model]
    out = []
    for j, model in enumerate(names):
        for versus in names[:j]:
            if data_of[model] != data_of[versus]:
                continue
            for key, cell in by_model[model].items():
                other = by_model[versus].get(key)
                if other is None:
                    continue
                n = min(len(cell.chip_accuracy), len(other.chip_accuracy))
                if n == 0:
                    continue
                d = cluster_mean_interval([[a - b] for a, b in zip(
                    cell.chip_accuracy[:n], other.chip_accuracy[:n], strict=True)])
                out.append(PairedDifference(
                    model, versus, cell.scenario, cell.device, cell.placement, cell.protection,
                    cell.control_knobs, cell.environment_knobs, n, d.mean,
                    d.low if d.bounded else None, d.high if d.bounded else None,
                    cell.clean_accuracy - other.clean_accuracy))
    return tuple(out)


def _aggregate_cell(store: ResultStore, cell: Mapping[str, Any], rule: AdaptiveChips,
                    trials: int, clean_accuracy: float) -> CellResult:
    rows: dict[int, Mapping[str, Any]] = {}
    for c, key in enumerate(cell["keys"]):
        row = store.get(key)
        if row is not None:
            rows[c] = row.outputs
    finished = {c: [float(a) for a in r["accuracy"]] for c, r in rows.items()}
    complete = rule.done(finished)
    if complete:
        used = rule.chips_used(finished)
    else:  # a partial sweep: the finished chips from chip 0 on
        used = []
        while len(used) in rows:
            used.append(len(used))
    chosen = [rows[c] for c in used]
    e, bits = cell["energy"], cell["bits"]
    common: dict[str, Any] = dict(
        model=cell["model"], scenario=cell["scenario"], device=cell["device"],
        placement=cell["placement"], protection=cell["protection"],
        control_knobs=cell["control_knobs"], environment_knobs=cell["environment_knobs"],
        chips=len(chosen), trials=trials, complete=complete, clean_accuracy=clean_accuracy,
        device_ber=cell["device_ber"], data_bits=bits["data_bits"],
        stored_bits=bits["stored_bits"], reliable_bits=bits["reliable_bits"],
        energy_pj=e["total_pj"], energy_nominal_pj=e["nominal_pj"], energy_read_pj=e["read_pj"],
        energy_reliable_read_pj=e["reliable_read_pj"], energy_static_pj=e["static_pj"],
        energy_refresh_pj=e["refresh_pj"], energy_write_pj=e.get("write_pj", 0.0),
        energy_assumed=e["assumed"],
        energy_assumed_figures=tuple(e["assumed_figures"]),
        energy_under_test_nominal_pj=e["under_test_nominal_pj"])
    if not chosen:
        return CellResult(**common, accuracy=None, accuracy_low=None, accuracy_high=None,
                          accuracy_half_width=None, mlm=None, mlm_normalised=None,
                          bit_errors=None, under_test_ber=None, residual_bit_errors=None,
                          corrected_words=None, uncorrectable_words=None)
    by_chip = [[float(a) for a in r["accuracy"]] for r in chosen]
    interval = cluster_mean_interval(by_chip, rule.confidence, bounds=(0.0, 1.0))
    dut_errors = _chip_means(chosen, "under_test_bit_errors")
    stored = bits["stored_bits"]
    return CellResult(
        **common, accuracy=interval.mean, accuracy_low=_finite(interval.low),
        accuracy_high=_finite(interval.high), accuracy_half_width=_finite(interval.half_width),
        mlm=_chip_means(chosen, "mlm"), mlm_normalised=_chip_means(chosen, "mlm_normalised"),
        bit_errors=math.fsum((_chip_means(chosen, "flips_zero_to_one"),
                              _chip_means(chosen, "flips_one_to_zero"))),
        under_test_ber=dut_errors / stored if stored else 0.0,
        residual_bit_errors=_chip_means(chosen, "residual_bit_errors"),
        corrected_words=_chip_means(chosen, "corrected_words"),
        uncorrectable_words=_chip_means(chosen, "uncorrectable_words"),
        chip_accuracy=tuple(math.fsum(v) / len(v) for v in by_chip))


# -- outputs ----------------------------------------------------------------------------------


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    lines: list[str] = []

    class _Sink:
        def write(self, s: str) -> int:
            lines.append(s)
            return len(s)

    writer = csv.writer(_Sink(), lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    atomic_write_text(path, "".join(lines))
    return path


RESULT_COLUMNS = (
    "model", "scenario", "device", "placement", "protection", "control_knobs",
    "environment_knobs", "chips", "trials", "complete", "clean_accuracy", "accuracy",
    "accuracy_low", "accuracy_high", "accuracy_half_width", "mlm", "mlm_normalised",
    "device_ber", "under_test_ber", "bit_errors", "residual_bit_errors", "corrected_words",
    "uncorrectable_words", "data_bits", "stored_bits", "reliable_bits", "energy_pj",
    "energy_nominal_pj", "energy_relative", "energy_read_pj", "energy_reliable_read_pj",
    "energy_static_pj", "energy_refresh_pj", "energy_write_pj", "energy_assumed",
    "energy_assumed_figures",
)
PARETO_COLUMNS = (
    "model", "scenario", "device", "placement", "protection", "control_knobs", "energy_pj",
    "energy_relative", "accuracy", "accuracy_low", "accuracy_high", "clean_accuracy",
    "energy_assumed",
)
PAIRED_COLUMNS = (
    "model", "versus", "scenario", "device", "placement", "protection", "control_knobs",
    "environment_knobs", "chips", "difference", "difference_low", "difference_high",
    "clean_difference",
)
BUDGET_COLUMNS = (
    "model", "scenario", "budget_points", "judged_by", "clean_accuracy", "device",
    "placement", "protection", "control_knobs", "energy_pj", "energy_relative", "accuracy",
    "accuracy_low", "energy_assumed",
)


def _result_row(cell: CellResult) -> list[Any]:
    return [getattr(cell, name) for name in RESULT_COLUMNS]


def write_outputs(out_dir: str | Path, results: SweepResults, *, command: str = "",
                  elapsed_s: float | None = None) -> list[Path]:
    """Write `results.csv` (one row per cell), `pareto.csv` (the front of each model and
    scenario), `budgets.csv` (the cheapest point within each accuracy budget), and the plots and
    `report.md` (`report.write_report`); return the paths."""
    out = Path(out_dir)
    paths = [_write_csv(out / RESULTS_CSV, RESULT_COLUMNS,
                        [_result_row(c) for c in results.cells])]
    cell_of = {id(p): results.cells[i] for p, i in zip(results.points, results.point_cells,
                                                        strict=True)}
    front_rows = []
    for indices in results.fronts.values():
        for i in indices:
            p = results.points[i]
            cell = cell_of[id(p)]
            front_rows.append([p.model, p.scenario, p.device, p.placement, p.protection,
                               dict(p.knobs), p.energy_pj, cell.energy_relative, p.accuracy,
                               p.accuracy_low, p.accuracy_high, cell.clean_accuracy,
                               p.assumed_energy])
    paths.append(_write_csv(out / PARETO_CSV, PARETO_COLUMNS, front_rows))
    budget_rows = []
    for judged_by, rows in (("mean", results.budgets),
                            ("interval_low", results.budgets_conservative)):
        for r in rows:
            q = r.point
            best = cell_of[id(q)] if q is not None else None
            budget_rows.append([
                r.model, r.scenario, r.budget_points, judged_by, r.clean_accuracy,
                q.device if q else None, q.placement if q else None,
                q.protection if q else None, dict(q.knobs) if q else None,
                q.energy_pj if q else None, best.energy_relative if best else None,
                q.accuracy if q else None, q.accuracy_low if q else None,
                q.assumed_energy if q else None])
    paths.append(_write_csv(out / BUDGETS_CSV, BUDGET_COLUMNS, budget_rows))
    paths.append(_write_csv(out / PAIRED_CSV, PAIRED_COLUMNS, [
        [d.model, d.versus, d.scenario, d.device, d.placement, d.protection,
         dict(d.control_knobs), dict(d.environment_knobs), d.chips, d.difference, d.low, d.high,
         d.clean_difference] for d in results.paired]))
    paths.extend(_report(out, results, command, elapsed_s))
    return paths


def _variant(results: SweepResults, cell: CellResult) -> str:
    """The report's storage-variant label: the placement and protection where the experiment
    has several of them."""
    parts: list[str] = []
    placements = {c.placement for c in results.cells}
    protections = {c.protection for c in results.cells}
    if len(placements) > 1:
        parts.append(cell.placement)
    if len(protections) > 1:
        parts.append(cell.protection)
    return ", ".join(parts)


def _report(out: Path, results: SweepResults, command: str, elapsed_s: float | None
            ) -> list[Path]:
    rows = []
    for cell in results.cells:
        if cell.accuracy is None:
            continue
        swept = results.devices[cell.device]["swept"]
        rows.append(ReportRow(
            model=cell.model, scenario=cell.scenario, device=cell.device,
            knobs={k: cell.control_knobs[k] for k in swept}, accuracy=cell.accuracy,
            accuracy_low=cell.accuracy_low if cell.accuracy_low is not None else math.nan,
            accuracy_high=cell.accuracy_high if cell.accuracy_high is not None else math.nan,
            clean_accuracy=cell.clean_accuracy,
            energy_pj=cell.energy_pj if cell.has_energy_model else 0.0,
            energy_relative=cell.energy_relative, assumed_energy=cell.energy_assumed,
            ber=cell.device_ber, chips=cell.chips, reads=cell.trials,
            mlm=cell.mlm if cell.mlm is not None else math.nan,
            variant=_variant(results, cell), environment=dict(cell.environment_knobs),
            extra={"placement": cell.placement, "protection": cell.protection}))
    devices = {label: Device(parse_device(d["document"], d["file"]))
               for label, d in results.devices.items()}
    title = f"memsim sweep: {results.name}" + (" (dry run)" if results.dry_run else "")
    budgets = sorted({r.budget_points for r in results.budgets}) or [1.0, 2.0]
    groups: dict[tuple[str, str, str], list[PairedDifference]] = {}
    for d in results.paired:
        groups.setdefault((d.model, d.versus, d.scenario), []).append(d)
    # a cell counts where the errors move the difference away from the clean one: a constant
    # clean gap is test-set noise or training, and zero-spread cells would all "exclude zero"
    paired = [PairedSummary(
        model, versus, scenario, len(ds), ds[0].clean_difference,
        math.fsum(d.difference for d in ds) / len(ds),
        sum(1 for d in ds if d.low is not None and d.low > d.clean_difference),
        sum(1 for d in ds if d.high is not None and d.high < d.clean_difference))
        for (model, versus, scenario), ds in groups.items()]
    return write_report(out, rows, devices, title=title, command=command, elapsed_s=elapsed_s,
                        budgets_points=budgets, paired=paired)
