"""Pareto fronts (lower energy, higher accuracy) and the cheapest point within a budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memsim.experiments.pareto import (
    ParetoError,
    TradeoffPoint,
    budget_table,
    cheapest_within,
    fronts_by_group,
    pareto_front,
)


def pt(energy: float, accuracy: float, *, device: str = "sram-14nm", v: float = 1.0,
       model: str = "vgg3", scenario: str = "25C", low: float | None = None,
       assumed: bool = False) -> TradeoffPoint:
    return TradeoffPoint(model=model, scenario=scenario, device=device, knobs={"v_rel": v},
                         energy_pj=energy, accuracy=accuracy, accuracy_low=low,
                         assumed_energy=assumed)


# (energy, accuracy) and whether each is on the front, by hand
HAND = [
    (10.0, 0.90),  # 0 front
    (5.0, 0.85),   # 1 front
    (5.0, 0.80),   # 2 dominated by 1: same energy, lower accuracy
    (7.0, 0.85),   # 3 dominated by 1: more energy, same accuracy
    (2.0, 0.50),   # 4 front: cheapest
    (12.0, 0.90),  # 5 dominated by 0
    (10.0, 0.90),  # 6 duplicate of 0: neither dominates the other, both on the front
    (20.0, 0.95),  # 7 front: most accurate
    (3.0, 0.40),   # 8 dominated by 4
    (5.0, 0.85),   # 9 duplicate of 1
]


def test_hand_made_front_with_ties_and_duplicates() -> None:
    points = [pt(e, a, v=1.0 - i / 100) for i, (e, a) in enumerate(HAND)]
    assert pareto_front(points) == [4, 1, 9, 0, 6, 7]  # by energy, ties by index
    assert pareto_front([]) == []
    assert pareto_front([points[2]]) == [0]


def brute_force_front(energy: np.ndarray, accuracy: np.ndarray) -> list[int]:
    out = []
    for i in range(energy.size):
        dominated = np.any((energy <= energy[i]) & (accuracy >= accuracy[i])
                           & ((energy < energy[i]) | (accuracy > accuracy[i])))
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: (energy[i], i))


def test_front_matches_the_definition_on_random_points_with_many_ties() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(0, 30))
        energy = rng.integers(0, 8, n).astype(float)  # few values: many ties
        accuracy = rng.integers(0, 6, n) / 5.0
        points = [pt(e, a) for e, a in zip(energy, accuracy, strict=True)]
        assert pareto_front(points) == brute_force_front(energy, accuracy)


def test_fronts_are_per_model_and_scenario() -> None:
    points = [pt(1.0, 0.5, model="a"), pt(2.0, 0.9, model="a"), pt(1.0, 0.95, model="b"),
              pt(3.0, 0.99, model="a", scenario="85C"), pt(5.0, 0.6, model="a")]
    # across groups point 2 would dominate 0 and 1, and 3 would not be alone
    assert fronts_by_group(points) == {("a", "25C"): [0, 1], ("a", "85C"): [3],
                                       ("b", "25C"): [2]}


def test_cheapest_within_budget() -> None:
    points = [pt(e, a, v=1.0 - i / 100) for i, (e, a) in enumerate(HAND)]
    points.append(pt(8.0, 0.89, device="dram"))  # 10: exactly one point below clean
    assert cheapest_within(points, 0.90, 1.0) == 10  # 0.89 >= 0.90 - 0.01
    assert cheapest_within(points, 0.90, 0.5) == 6  # 0 and 6 tie; 6 has the lower v_rel
    assert cheapest_within(points, 0.90, 5.0) == 9  # 1 and 9 tie at 5 pJ; lower v_rel wins
    assert cheapest_within(points, 0.96, 0.0) is None
    assert cheapest_within(points, 0.95, 0.0) == 7
    assert cheapest_within([], 0.9, 1.0) is None
    assert 5016 / 10000 - 1.0 / 100 > 4916 / 10000  # binary rounding, absorbed:
    assert cheapest_within([pt(1.0, 4916 / 10000), pt(0.5, 0.49)], 5016 / 10000, 1.0) == 0
    # equal energy: the more accurate point wins, then the sort key
    tie = [pt(4.0, 0.90, device="b"), pt(4.0, 0.92, device="c"), pt(4.0, 0.92, device="a")]
    assert cheapest_within(tie, 0.92, 2.0) == 2


def test_conservative_budget_uses_the_interval() -> None:
    points = [pt(1.0, 0.895, low=0.87), pt(2.0, 0.893, low=0.891), pt(0.5, 0.95)]
    assert cheapest_within(points, 0.90, 1.0) == 2
    assert cheapest_within(points, 0.90, 1.0, conservative=True) == 1  # 2 has no interval
    assert cheapest_within(points[:2], 0.90, 3.0, conservative=True) == 0


def test_budget_table_names_the_cheapest_point_and_marks_assumed_energy() -> None:
    points = [
        pt(10.0, 0.91, model="vgg3", device="sram-14nm", v=1.0),
        pt(6.0, 0.905, model="vgg3", device="sram-14nm", v=0.85, assumed=True),
        pt(4.0, 0.89, model="vgg3", device="sram-14nm", v=0.8, assumed=True),
        pt(5.0, 0.90, model="vgg3", device="stt-mram", v=1.0),
        pt(3.0, 0.70, model="vgg3", device="sram-14nm", v=0.7),
        pt(9.0, 0.80, model="resnet18", scenario="85C"),
    ]
    rows = budget_table(points, {"vgg3": 0.91, "resnet18": 0.90})
    summary = [(r.model, r.scenario, r.budget_points,
                None if r.point is None else (r.point.device, r.point.knobs["v_rel"]),
                r.assumed_energy) for r in rows]
    assert summary == [
        ("resnet18", "85C", 1.0, None, False),
        ("resnet18", "85C", 2.0, None, False),
        ("vgg3", "25C", 1.0, ("stt-mram", 1.0), False),  # 0.90 >= 0.91 - 0.01
        ("vgg3", "25C", 2.0, ("sram-14nm", 0.8), True),  # 0.89 >= 0.89
    ]
    with pytest.raises(ParetoError, match="no clean accuracy for model 'vgg3'"):
        budget_table(points, {"resnet18": 0.9})


def test_bad_points_are_refused() -> None:
    with pytest.raises(ParetoError, match="accuracy must be a fraction"):
        pt(1.0, 87.5)  # percent, not a fraction
    with pytest.raises(ParetoError, match="energy_pj must be finite"):
        pt(math.nan, 0.5)
    with pytest.raises(ParetoError, match="energy_pj must be finite"):
        pt(-1.0, 0.5)
    with pytest.raises(ParetoError, match="clean_accuracy must be a fraction"):
        cheapest_within([pt(1.0, 0.5)], 90.0, 1.0)
    with pytest.raises(ParetoError, match="budget_points"):
        cheapest_within([pt(1.0, 0.5)], 0.9, -1.0)
