"""A sweep's manifest (`manifest.json`): everything aggregation needs besides the store's
rows, so that `memsim pareto DIR` needs neither the models nor the device files.

It records the config as read, every cell with its store keys, and for each cell the memories
of its placement (device, knobs, bit counts): energy is computed from these at aggregation,
under the deployment in force then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memsim.experiments.models import LoadedModel, RunnerError, architecture_hash
from memsim.experiments.plan import Planner, chip_rule, trials_of
from memsim.experiments.store import STORE_FILENAME
from memsim.files import atomic_write_text
from memsim.spec.experiment import ExperimentSpec

__all__ = ["MANIFEST_FILENAME", "CellPlan", "MemoryPlacement", "read_manifest", "write_manifest"]

MANIFEST_FILENAME = "manifest.json"
_FORMAT = 2
"""2: cells carry their memories' bit counts and knobs; energy is computed at aggregation."""


@dataclass(frozen=True)
class MemoryPlacement:
    """One memory of a cell's placement as stored: what pricing it needs."""

    name: str
    device_hash: str
    knobs: Mapping[str, float]
    overhead: Mapping[str, int]
    """`ProtectionOverhead` fields but the derived ones (data, check and padding bits...)."""
    capacity_mib: float | None


@dataclass(frozen=True)
class CellPlan:
    """One cell of a sweep as the manifest records it: where it sits, its memories (the
    first is the device under test) and the store key of each chip, chips 0, 1, ..."""

    model: str
    scenario: str
    device: str
    device_name: str
    placement: str
    protection: str
    control_knobs: Mapping[str, float]
    environment_knobs: Mapping[str, float]
    nominal_knobs: Mapping[str, float]
    device_ber: float
    memories: tuple[MemoryPlacement, ...]
    keys: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, cell: Mapping[str, Any]) -> CellPlan:
        memories = tuple(MemoryPlacement(**m) for m in cell["memories"])
        return cls(**{**cell, "memories": memories, "keys": tuple(cell["keys"])})


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_manifest(out: Path, spec: ExperimentSpec, models: Sequence[LoadedModel],
                   planner: Planner, clean_keys: Mapping[str, str], dry_run: bool) -> None:
    rule = chip_rule(spec, dry_run)
    # the documents as parsed and hashed (not the files again: they may have changed since)
    memory_devices = {
        key: {"name": ref.name, "file": ref.path, "document": _jsonable(ref.document)}
        for key, ref in planner.device_refs.items()}
    if spec.reference.device is not None:
        ref = spec.reference.device
        memory_devices.setdefault(ref.spec_hash, {
            "name": ref.name, "file": ref.path, "document": _jsonable(ref.document)})
    cells = []
    for c in planner.cells:
        group = planner.groups[c.group]
        memories = tuple(
            MemoryPlacement(name, plan.device, dict(knobs),
                            {k: v for k, v in overhead.to_dict().items()
                             if k != "storage_overhead" and k != "stored_bits"}, capacity)
            for name, plan, knobs, overhead, capacity in zip(
                group.memory_names, group.memories, c.memory_knobs, group.overheads,
                group.capacities_mib, strict=True))
        cells.append(CellPlan(c.model, c.scenario, c.device, c.device_name, c.placement,
                              c.protection, c.control_knobs, c.environment_knobs,
                              c.nominal_knobs, c.device_ber, memories, tuple(c.keys)).to_json())
    manifest = {
        "format": _FORMAT,
        "name": spec.name,
        "description": spec.description,
        "source": spec.source,
        "dry_run": dry_run,
        "config": _jsonable(spec.document),
        "seed": spec.seed,
        "trials": trials_of(spec, dry_run),
        "chips": {"batch": rule.batch, "min": rule.min_chips, "max": rule.max_chips,
                  "target_half_width": rule.target_half_width, "confidence": rule.confidence},
        "devices": {entry.label: {"name": entry.device.name, "file": entry.device.path,
                                  "spec_hash": entry.device.spec_hash,
                                  "swept": [k for k, _ in entry.sweep]}
                    for entry in spec.devices},
        "memory_devices": memory_devices,
        # the reference as swept: repricing reads it from here, not from a file that may
        # have changed since
        "reference_hash": (spec.reference.device.spec_hash
                           if spec.reference.device is not None else None),
        "models": [{"name": m.name, "model_hash": m.model_hash, "data_hash": m.data_hash,
                    "architecture": architecture_hash(m.model), "source": m.source,
                    "n_test": int(m.labels.shape[0]), "clean_key": clean_keys[m.name]}
                   for m in models],
        "cells": cells,
    }
    # key order kept: a device document's knob order means something (its first control knob)
    atomic_write_text(out / MANIFEST_FILENAME, json.dumps(manifest, indent=1) + "\n")


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST_FILENAME
    if not (out / STORE_FILENAME).is_file() or not path.is_file():
        raise RunnerError(f"{out}: no sweep here (expected {STORE_FILENAME} and "
                          f"{MANIFEST_FILENAME}; run memsim run CONFIG --out {out} first)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunnerError(f"{path}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        if isinstance(found, int) and found < _FORMAT:
            raise RunnerError(f"{path}: written by an older memsim (manifest format {found}); "
                              f"rerun `memsim run CONFIG --out {out}` to sweep it again")
        raise RunnerError(f"{path}: not a memsim sweep manifest of format {_FORMAT}")
    return manifest
