"""Pareto fronts of energy against accuracy, and the cheapest point within an accuracy budget:
the rules a sweep's fronts and budgets follow, over any points with an energy, an accuracy
interval and a bit error rate (`CellResult` of a sweep, or `TradeoffPoint` for one's own).

The front is over control knobs only: environment knobs (temperature, age) are scenarios and
design knobs make a different device, so a sweep forms fronts per (model, scenario, energy
scope), across devices, operating points, placements and protections.

Units: accuracies are fractions in [0, 1]; accuracy budgets are percentage points
(`budget_points=1.0` allows one point, i.e. 0.01, below clean). Energies are picojoules per
inference.

Order: points are ranked by energy with energies within `ENERGY_TIE` (0.1 %) of a cluster's
cheapest counted as equal; among equals the lowest bit error rate comes first (a point that
accepts more errors for a saving below any accuracy effect is not cheaper), then the lower
energy, the higher accuracy, the index. Both rules below use this order.

Noise-aware front: a point is on the front only if it is significantly better than EVERY
point before it in that order (on the front or not); the first point always is. So a point
leaves the front when some cheaper point is not worse within noise.
- Cap at clean accuracy (when given): bit errors cannot make a model better, so a score above
  clean is the luck of the test set. A missing bound counts as the point's mean accuracy; then
  hi_q' = min(hi_q, clean) and lo_p' = min(lo_p, clean).
- Unpaired (default): p is significantly better than q iff lo_p' > hi_q'.
- Paired: when `paired(i_p, i_q)` gives (low, high), an interval of accuracy[p] − accuracy[q]
  over the chips both share, p is significantly better than q iff low > 0 and q's mean is
  below clean (less `BUDGET_TOLERANCE`; a q at clean leaves nothing to gain). When it gives
  None, the unpaired rule decides. O(n²).

Budget: the first point in that order whose judged accuracy (by default the low end of its
interval) is at least clean − budget/100.

`pareto_front` is the textbook front (dominance without noise), for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Literal, Protocol

from memsim.errors import MemsimError

__all__ = [
    "BUDGET_TOLERANCE",
    "ENERGY_TIE",
    "PairedInterval",
    "ParetoError",
    "Tradeoff",
    "TradeoffPoint",
    "budget_floor",
    "cheapest_within",
    "noise_aware_front",
    "pareto_front",
    "tied_energies",
]

# Accuracy comparisons against clean − budget allow this much rounding (with 10 000 test
# images, 5016/10000 − 1/100 is 0.49160000000000004 > 4916/10000 in binary floating point).
BUDGET_TOLERANCE = 1e-12

ENERGY_TIE = 1e-3
"""Energies within this fraction of a cheaper one count as equal (see the module's Order)."""

# paired(i, j): a confidence interval (low, high) of accuracy[i] − accuracy[j] over the chips
# both points share, or None when there is none.
PairedInterval = Callable[[int, int], tuple[float, float] | None]

JudgedBy = Literal["accuracy", "accuracy_low", "accuracy_high"]


class ParetoError(MemsimError):
    """Points that no front or budget can be computed from."""


class Tradeoff(Protocol):
    """What the rules read of a point (a sweep's `CellResult` is one)."""

    @property
    def energy_pj(self) -> float: ...

    @property
    def accuracy(self) -> float | None: ...

    @property
    def accuracy_low(self) -> float | None: ...

    @property
    def accuracy_high(self) -> float | None: ...

    @property
    def device_ber(self) -> float: ...


@dataclass(frozen=True)
class TradeoffPoint:
    """One operating point of one model in one scenario on one device, for the rules here
    when the points do not come from a sweep.

    Attributes:
        model, scenario, device: names.
        knobs: the device's knob values (control knobs define the point).
        energy_pj: energy per inference, picojoules.
        accuracy: mean accuracy over chips, a fraction in [0, 1].
        accuracy_low, accuracy_high: its confidence interval (chips as clusters), if known.
        device_ber: the device's bit error rate at the point (ranks points of equal energy).
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
    device_ber: float = 0.0
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


def _accuracies(points: Sequence[Tradeoff]) -> list[float]:
    """The points' mean accuracies, after checking that every figure is finite."""
    out = []
    for i, p in enumerate(points):
        a = p.accuracy
        if a is None or not (math.isfinite(p.energy_pj) and math.isfinite(a)):
            raise ParetoError(f"point {i}: energy and accuracy must be finite, got "
                              f"{p.energy_pj!r}, {a!r}")
        out.append(a)
    return out


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ParetoError(f"{name} must be a fraction in [0, 1], got {value!r}")


def pareto_front(points: Sequence[Tradeoff]) -> list[int]:
    """Indices of the non-dominated points (lower energy, higher accuracy, no noise, no
    tie), by increasing energy, ties by index. An empty input gives an empty front."""
    accuracy = _accuracies(points)
    order = sorted(range(len(points)), key=lambda i: (points[i].energy_pj, i))
    front: list[int] = []
    best = -math.inf  # highest accuracy among strictly cheaper points
    for _, same_energy in groupby(order, key=lambda i: points[i].energy_pj):
        group = list(same_energy)
        top = max(accuracy[i] for i in group)
        if top > best:
            front.extend(i for i in group if accuracy[i] == top)
            best = top
    return front


def tied_energies(energies: Sequence[float]) -> list[float]:
    """Each energy replaced by the lowest of its cluster: sorted, a cluster runs from its
    cheapest energy E to the last one within E · (1 + ENERGY_TIE)."""
    out = list(energies)
    start = -math.inf
    for i in sorted(range(len(energies)), key=lambda i: energies[i]):
        if energies[i] > start * (1.0 + ENERGY_TIE):
            start = energies[i]
        out[i] = start
    return out


def _order(points: Sequence[Tradeoff], accuracy: Sequence[float]) -> list[int]:
    tied = tied_energies([p.energy_pj for p in points])
    return sorted(range(len(points)), key=lambda i: (
        tied[i], points[i].device_ber, points[i].energy_pj, -accuracy[i], i))


def noise_aware_front(points: Sequence[Tradeoff], clean_accuracy: float | None = None,
                      paired: PairedInterval | None = None) -> list[int]:
    """Indices of the noise-aware front, in the module's order.

    A point is kept only if it is significantly better than every point before it in that
    order; the first point always is. Bounds above `clean_accuracy` count as clean and a
    missing bound as the mean. Unpaired: lo_p > hi_q. Paired, when `paired(i_p, i_q)` gives
    (low, high) for accuracy[p] − accuracy[q]: low > 0 and q's mean below clean; None falls
    back to unpaired. See the module docstring. O(n²).
    """
    if clean_accuracy is not None:
        _check_fraction("clean_accuracy", clean_accuracy)
    accuracy = _accuracies(points)
    cap = math.inf if clean_accuracy is None else clean_accuracy
    low = [min(a if p.accuracy_low is None else p.accuracy_low, cap)
           for p, a in zip(points, accuracy, strict=True)]
    high = [min(a if p.accuracy_high is None else p.accuracy_high, cap)
            for p, a in zip(points, accuracy, strict=True)]

    def better(i: int, j: int) -> bool:
        if paired is not None:
            diff = paired(i, j)
            if diff is not None:
                return diff[0] > 0.0 and (
                    clean_accuracy is None or accuracy[j] < clean_accuracy - BUDGET_TOLERANCE)
        return low[i] > high[j]

    order = _order(points, accuracy)
    return [i for k, i in enumerate(order) if all(better(i, j) for j in order[:k])]


def budget_floor(clean_accuracy: float, budget_points: float) -> float:
    """The lowest accuracy within `budget_points` percentage points of clean (rounding
    absorbed, `BUDGET_TOLERANCE`)."""
    _check_fraction("clean_accuracy", clean_accuracy)
    if not budget_points >= 0.0:
        raise ParetoError(f"budget_points must be >= 0 percentage points, got {budget_points!r}")
    return clean_accuracy - budget_points / 100.0 - BUDGET_TOLERANCE


def cheapest_within(points: Sequence[Tradeoff], clean_accuracy: float, budget_points: float,
                    judged_by: JudgedBy = "accuracy_low") -> int | None:
    """Index of the first point in the module's order whose `judged_by` figure (by default
    the low end of its interval; a point without one never qualifies) is at least
    clean − budget_points/100, or None."""
    floor = budget_floor(clean_accuracy, budget_points)
    accuracy = _accuracies(points)
    qualifying = [i for i, p in enumerate(points)
                  if (v := getattr(p, judged_by)) is not None and v >= floor]
    if not qualifying:
        return None
    chosen = _order([points[i] for i in qualifying], [accuracy[i] for i in qualifying])[0]
    return qualifying[chosen]


