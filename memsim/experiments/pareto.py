"""Pareto fronts of energy against accuracy, and the cheapest point within an accuracy budget.

The front is over control knobs only: environment knobs (temperature, age) are scenarios and
design knobs make a different device, so fronts are formed per (model, scenario), across
devices, operating points, placements and protections.

Units: accuracies are fractions in [0, 1] everywhere (`TradeoffPoint.accuracy`, clean
accuracies); accuracy budgets are given in percentage points (`budget_points=1.0` allows one
point, i.e. 0.01, below clean). Energies are picojoules per inference.

Dominance: p dominates q when p.energy_pj <= q.energy_pj and p.accuracy >= q.accuracy with at
least one strict. The front is every point no other point dominates, so exact duplicates
(equal energy and accuracy) are all on it, and of points with equal energy only those with
the highest accuracy are. `pareto_front` sorts once: O(n log n).

Noise-aware front: the points are ordered by increasing energy, then decreasing accuracy, then
`TradeoffPoint.sort_key`, then index. A point is on the front only if it is significantly
better than EVERY point before it in that order (on the front or not); the first point always
is. So a point leaves the front when some cheaper point is not worse within noise.
- Cap at clean accuracy (when given): bit errors cannot make a model better, so a score above
  clean is the luck of the test set. A missing bound counts as the point's mean accuracy; then
  hi_q' = min(hi_q, clean) and lo_p' = min(lo_p, clean).
- Unpaired (default): p is significantly better than q iff lo_p' > hi_q'.
- Paired: when `paired(i_p, i_q)` gives (low, high), an interval of accuracy[p] − accuracy[q]
  over the chips both share, p is significantly better than q iff low > 0 and q's mean is
  below clean (less `BUDGET_TOLERANCE`; a q at clean leaves nothing to gain). When it gives
  None, the unpaired rule decides. `noise_aware_front` compares all pairs: O(n²).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Protocol

from memsim.errors import MemsimError
from memsim.spec.names import DEFAULT_BUDGETS_POINTS

__all__ = [
    "BUDGET_TOLERANCE",
    "BudgetRow",
    "PairedInterval",
    "ParetoError",
    "TradeoffPoint",
    "budget_table",
    "cheapest_within",
    "fronts_by_group",
    "noise_aware_front",
    "noise_aware_fronts_by_group",
    "pareto_front",
]

# Accuracy comparisons against clean − budget allow this much rounding (with 10 000 test
# images, 5016/10000 − 1/100 is 0.49160000000000004 > 4916/10000 in binary floating point).
BUDGET_TOLERANCE = 1e-12

# paired(i, j): a confidence interval (low, high) of accuracy[i] − accuracy[j] over the chips
# both points share, or None when there is none.
PairedInterval = Callable[[int, int], tuple[float, float] | None]


class ParetoError(MemsimError):
    """Points that no front or budget can be computed from."""


class EnergyAccuracy(Protocol):
    @property
    def energy_pj(self) -> float: ...

    @property
    def accuracy(self) -> float: ...


@dataclass(frozen=True)
class TradeoffPoint:
    """One operating point of one model in one scenario on one device.

    Attributes:
        model, scenario, device: names.
        knobs: the device's knob values (control knobs define the point).
        energy_pj: energy per inference, picojoules.
        accuracy: mean accuracy over chips, a fraction in [0, 1].
        accuracy_low, accuracy_high: its confidence interval (chips as clusters), if known.
        protection, placement: labels of the protection and of where the weights are stored.
        assumed_energy: the energy rests on a figure of assumed or unstated provenance.
    """

    model: str
    scenario: str
    device: str
    knobs: Mapping[str, float]
    energy_pj: float
    accuracy: float
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    protection: str = "none"
    placement: str = ""
    assumed_energy: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.energy_pj) or self.energy_pj < 0.0:
            raise ParetoError(f"{self.label()}: energy_pj must be finite and >= 0, "
                              f"got {self.energy_pj!r}")
        if not 0.0 <= self.accuracy <= 1.0:
            raise ParetoError(f"{self.label()}: accuracy must be a fraction in [0, 1], got "
                              f"{self.accuracy!r}")

    def label(self) -> str:
        knobs = ", ".join(f"{k}={v:g}" for k, v in sorted(self.knobs.items()))
        return f"{self.device}({knobs})"

    def sort_key(self) -> tuple[str, str, str, tuple[tuple[str, float], ...], str, str]:
        """A total order among points with equal energy and accuracy (for deterministic
        tie-breaks)."""
        return (self.model, self.scenario, self.device, tuple(sorted(self.knobs.items())),
                self.protection, self.placement)


def _check(points: Sequence[EnergyAccuracy]) -> None:
    for i, p in enumerate(points):
        if not (math.isfinite(p.energy_pj) and math.isfinite(p.accuracy)):
            raise ParetoError(f"point {i}: energy and accuracy must be finite, got "
                              f"{p.energy_pj!r}, {p.accuracy!r}")


def pareto_front(points: Sequence[EnergyAccuracy]) -> list[int]:
    """Indices of the non-dominated points (lower energy, higher accuracy), by increasing
    energy, ties by index. An empty input gives an empty front."""
    _check(points)
    order = sorted(range(len(points)), key=lambda i: (points[i].energy_pj, i))
    front: list[int] = []
    best = -math.inf  # highest accuracy among strictly cheaper points
    for _, same_energy in groupby(order, key=lambda i: points[i].energy_pj):
        group = list(same_energy)
        top = max(points[i].accuracy for i in group)
        if top > best:
            front.extend(i for i in group if points[i].accuracy == top)
            best = top
    return front


def fronts_by_group(points: Sequence[TradeoffPoint]) -> dict[tuple[str, str], list[int]]:
    """The front of each (model, scenario), as indices into `points`; groups sorted."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault((p.model, p.scenario), []).append(i)
    out: dict[tuple[str, str], list[int]] = {}
    for g in sorted(groups):
        members = groups[g]
        out[g] = [members[j] for j in pareto_front([points[i] for i in members])]
    return out


def cheapest_within(points: Sequence[TradeoffPoint], clean_accuracy: float,
                    budget_points: float, conservative: bool = False) -> int | None:
    """Index of the cheapest point with accuracy >= clean − budget_points/100, or None.

    `clean_accuracy` is a fraction, `budget_points` percentage points. `conservative` judges
    each point by the low end of its interval (a point without one never qualifies). Equal
    energies: the higher accuracy, then `TradeoffPoint.sort_key`, then index.
    """
    if not 0.0 <= clean_accuracy <= 1.0:
        raise ParetoError(f"clean_accuracy must be a fraction in [0, 1], got {clean_accuracy!r}")
    if not budget_points >= 0.0:
        raise ParetoError(f"budget_points must be >= 0 percentage points, got {budget_points!r}")
    _check(points)
    floor = clean_accuracy - budget_points / 100.0 - BUDGET_TOLERANCE
    best: int | None = None
    for i, p in enumerate(points):
        judged = p.accuracy_low if conservative else p.accuracy
        if judged is None or judged < floor:
            continue
        if best is None or _cheaper(p, points[best]):
            best = i
    return best


def _cheaper(p: TradeoffPoint, q: TradeoffPoint) -> bool:
    if p.energy_pj != q.energy_pj:
        return p.energy_pj < q.energy_pj
    if p.accuracy != q.accuracy:
        return p.accuracy > q.accuracy
    return p.sort_key() < q.sort_key()


@dataclass(frozen=True)
class BudgetRow:
    """The cheapest point of a (model, scenario) within `budget_points` of clean accuracy;
    `point` is None when no point qualifies."""

    model: str
    scenario: str
    budget_points: float
    clean_accuracy: float
    point: TradeoffPoint | None

    @property
    def assumed_energy(self) -> bool:
        return self.point is not None and self.point.assumed_energy


def budget_table(points: Sequence[TradeoffPoint], clean_accuracy_by_model: Mapping[str, float],
                 budgets_points: Sequence[float] = DEFAULT_BUDGETS_POINTS,
                 conservative: bool = False) -> list[BudgetRow]:
    """For each (model, scenario) in sorted order and each budget: the cheapest device and
    operating point within that many percentage points of the model's clean accuracy
    (`cheapest_within`, `conservative` as there). A model without a clean accuracy is an
    error."""
    rows: list[BudgetRow] = []
    groups: dict[tuple[str, str], list[TradeoffPoint]] = {}
    for p in points:
        groups.setdefault((p.model, p.scenario), []).append(p)
    for (model, scenario) in sorted(groups):
        if model not in clean_accuracy_by_model:
            raise ParetoError(f"no clean accuracy for model {model!r}")
        clean = clean_accuracy_by_model[model]
        members = groups[(model, scenario)]
        for budget in budgets_points:
            i = cheapest_within(members, clean, budget, conservative)
            rows.append(BudgetRow(model, scenario, float(budget), clean,
                                  None if i is None else members[i]))
    return rows


def noise_aware_front(points: Sequence[TradeoffPoint], clean_accuracy: float | None = None,
                      paired: PairedInterval | None = None) -> list[int]:
    """Indices of the noise-aware front, by increasing energy (ties: higher accuracy, then
    `TradeoffPoint.sort_key`, then index).

    A point is kept only if it is significantly better than every point before it in that
    order; the first point always is. Bounds above `clean_accuracy` count as clean and a
    missing bound as the mean. Unpaired: lo_p > hi_q. Paired, when `paired(i_p, i_q)` gives
    (low, high) for accuracy[p] − accuracy[q]: low > 0 and q's mean below clean; None falls
    back to unpaired. See the module docstring. O(n²).
    """
    if clean_accuracy is not None and not 0.0 <= clean_accuracy <= 1.0:
        raise ParetoError(f"clean_accuracy must be a fraction in [0, 1], got {clean_accuracy!r}")
    _check(points)
    cap = math.inf if clean_accuracy is None else clean_accuracy
    low = [min(p.accuracy if p.accuracy_low is None else p.accuracy_low, cap) for p in points]
    high = [min(p.accuracy if p.accuracy_high is None else p.accuracy_high, cap) for p in points]

    def better(i: int, j: int) -> bool:
        if paired is not None:
            diff = paired(i, j)
            if diff is not None:
                return diff[0] > 0.0 and (
                    clean_accuracy is None
                    or points[j].accuracy < clean_accuracy - BUDGET_TOLERANCE)
        return low[i] > high[j]

    order = sorted(range(len(points)), key=lambda i: (points[i].energy_pj, -points[i].accuracy,
                                                      points[i].sort_key(), i))
    return [i for k, i in enumerate(order) if all(better(i, j) for j in order[:k])]


def noise_aware_fronts_by_group(
        points: Sequence[TradeoffPoint], clean_accuracy_by_model: Mapping[str, float],
        paired: PairedInterval | None = None,
        group_of: Callable[[TradeoffPoint], tuple[str, ...]] | None = None,
) -> dict[tuple[str, ...], list[int]]:
    """The noise-aware front of each group (`group_of(p)`, default (model, scenario)), as
    indices into `points`; groups sorted. Each group is capped at its model's clean accuracy
    (a group must hold one model); `paired` is called with indices into `points`."""
    _check(points)
    key = group_of if group_of is not None else (lambda p: (p.model, p.scenario))
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault(key(p), []).append(i)
    out: dict[tuple[str, ...], list[int]] = {}
    for g in sorted(groups):
        members = groups[g]
        models = sorted({points[i].model for i in members})
        if len(models) > 1:
            raise ParetoError(f"group {g!r} holds models {', '.join(models)}: "
                              "no single clean accuracy")
        if models[0] not in clean_accuracy_by_model:
            raise ParetoError(f"no clean accuracy for model {models[0]!r}")
        local = None if paired is None else _translated(paired, members)
        front = noise_aware_front([points[i] for i in members],
                                  clean_accuracy_by_model[models[0]], local)
        out[g] = [members[j] for j in front]
    return out


def _translated(paired: PairedInterval, members: Sequence[int]) -> PairedInterval:
    """`paired` on indices into a group's members instead of into all points."""
    def local(i: int, j: int) -> tuple[float, float] | None:
        return paired(members[i], members[j])
    return local
