"""Experiments: resumable results, intervals with chips as clusters, energy, Pareto fronts.

Torch-free building blocks of accuracy-versus-energy sweeps:

- `store`: `ResultStore`, one SQLite row per finished evaluation keyed by `key_of(inputs)`.
- `stats`: `cluster_mean_interval`, `paired_difference_interval`, `AdaptiveChips`,
  `resolvable_difference`.
- `energy`: `inference_energy` over the `MemoryUse`s of a placement.
- `pareto`: `pareto_front`, `fronts_by_group`, `cheapest_within`, `budget_table`.
"""

from memsim.experiments.energy import (
    EnergyBreakdown,
    EnergyError,
    InferenceEnergy,
    MemoryUse,
    inference_energy,
)
from memsim.experiments.pareto import (
    BudgetRow,
    ParetoError,
    TradeoffPoint,
    budget_table,
    cheapest_within,
    fronts_by_group,
    pareto_front,
)
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
    "BudgetRow",
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
    "budget_table",
    "cheapest_within",
    "cluster_mean_interval",
    "fronts_by_group",
    "inference_energy",
    "key_of",
    "paired_difference_interval",
    "pareto_front",
    "resolvable_difference",
]
