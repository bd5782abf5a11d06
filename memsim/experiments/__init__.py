"""Experiments: sweeps of models over memories, resumable results, energy, Pareto fronts.

Torch-free building blocks, exported here (each module imported on first use):

- `store`: `ResultStore`, one SQLite row per finished evaluation keyed by `key_of(inputs)`.
- `stats`: `cluster_mean_interval`, `paired_difference_interval`, `AdaptiveChips`,
  `resolvable_difference`.
- `energy`: `inference_energy` over the `MemoryUse`s of a placement.
- `pareto`: the front and budget rules, `noise_aware_front` and `cheapest_within`.
- `records`: `ChipRecord` (a store row) and `CellResult` (a row of `results.csv`).

A sweep (`runner.run_experiment`) runs in one module per job: `models` (train or load),
`plan` (cells and store keys), `worker` (one chip task), `manifest`, `aggregation` (accuracy
intervals, energy under the deployment, fronts, budgets), `outputs` and `report` (CSVs,
pictures, `report.md`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memsim._lazy import lazy_attributes

if TYPE_CHECKING:
    from memsim.experiments.energy import (
        EnergyBreakdown,
        EnergyError,
        InferenceEnergy,
        MemoryUse,
        inference_energy,
    )
    from memsim.experiments.pareto import (
        ParetoError,
        TradeoffPoint,
        cheapest_within,
        noise_aware_front,
        pareto_front,
    )
    from memsim.experiments.records import CellResult, ChipRecord, CleanResult, TrialOutcome
    from memsim.experiments.stats import (
        AdaptiveChips,
        Interval,
        StatsError,
        cluster_mean_interval,
        paired_difference_interval,
        resolvable_difference,
    )
    from memsim.experiments.store import ResultStore, StoredRow, StoreError, key_of

__all__ = [
    "AdaptiveChips",
    "CellResult",
    "ChipRecord",
    "CleanResult",
    "EnergyBreakdown",
    "EnergyError",
    "InferenceEnergy",
    "Interval",
    "MemoryUse",
    "ParetoError",
    "ResultStore",
    "StatsError",
    "StoreError",
    "StoredRow",
    "TradeoffPoint",
    "TrialOutcome",
    "cheapest_within",
    "cluster_mean_interval",
    "inference_energy",
    "key_of",
    "noise_aware_front",
    "paired_difference_interval",
    "pareto_front",
    "resolvable_difference",
]

# Imported on first use (PEP 562): `memsim.experiments.commands` and `.executors` are read when
# the `memsim` parser is built, and must not pull in scipy, numpy or the physics with them.
_LAZY = {
    **dict.fromkeys(("EnergyBreakdown", "EnergyError", "InferenceEnergy", "MemoryUse",
                     "inference_energy"), "memsim.experiments.energy"),
    **dict.fromkeys(("ParetoError", "TradeoffPoint", "cheapest_within", "noise_aware_front",
                     "pareto_front"), "memsim.experiments.pareto"),
    **dict.fromkeys(("CellResult", "ChipRecord", "CleanResult", "TrialOutcome"),
                    "memsim.experiments.records"),
    **dict.fromkeys(("AdaptiveChips", "Interval", "StatsError", "cluster_mean_interval",
                     "paired_difference_interval", "resolvable_difference"),
                    "memsim.experiments.stats"),
    **dict.fromkeys(("ResultStore", "StoredRow", "StoreError", "key_of"),
                    "memsim.experiments.store"),
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
