"""Pareto fronts (lower energy, higher accuracy) and the cheapest point within a budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.experiments.pareto import (
    BUDGET_TOLERANCE,
    ENERGY_TIE,
    PairedInterval,
    ParetoError,
    TradeoffPoint,
    budget_floor,
    cheapest_within,
    noise_aware_front,
    pareto_front,
    tied_energies,
)


def pt(energy: float, accuracy: float, *, device: str = "sram-14nm", v: float = 1.0,
       model: str = "vgg3", scenario: str = "25C", low: float | None = None,
       high: float | None = None, assumed: bool = False, ber: float = 0.0) -> TradeoffPoint:
    return TradeoffPoint(model=model, scenario=scenario, device=device, knobs={"v_rel": v},
                         energy_pj=energy, accuracy=accuracy, accuracy_low=low,
                         accuracy_high=high, device_ber=ber, assumed_energy=assumed)


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


def test_cheapest_within_budget() -> None:
    points = [pt(e, a, v=1.0 - i / 100) for i, (e, a) in enumerate(HAND)]
    points.append(pt(8.0, 0.89, device="dram"))  # 10: exactly one point below clean
    mean = "accuracy"
    assert cheapest_within(points, 0.90, 1.0, mean) == 10  # 0.89 >= 0.90 - 0.01
    assert cheapest_within(points, 0.90, 0.5, mean) == 0  # 0 and 6 tie: the first
    assert cheapest_within(points, 0.90, 5.0, mean) == 1  # 1 and 9 tie at 5 pJ
    assert cheapest_within(points, 0.96, 0.0, mean) is None
    assert cheapest_within(points, 0.95, 0.0, mean) == 7
    assert cheapest_within([], 0.9, 1.0) is None
    assert 5016 / 10000 - 1.0 / 100 > 4916 / 10000  # binary rounding, absorbed:
    assert cheapest_within([pt(1.0, 4916 / 10000), pt(0.5, 0.49)], 5016 / 10000, 1.0,
                           mean) == 0
    # equal energy and error rate: the more accurate point wins, then the first
    tie = [pt(4.0, 0.90, device="b"), pt(4.0, 0.92, device="c"), pt(4.0, 0.92, device="a")]
    assert cheapest_within(tie, 0.92, 2.0, mean) == 1


def test_budgets_are_judged_by_the_low_end_by_default() -> None:
    points = [pt(1.0, 0.895, low=0.87, high=0.92), pt(2.0, 0.893, low=0.891, high=0.90),
              pt(0.5, 0.95)]
    assert cheapest_within(points, 0.90, 1.0, "accuracy") == 2
    assert cheapest_within(points, 0.90, 1.0) == 1  # 2 has no interval: never qualifies
    assert cheapest_within(points, 0.90, 1.0, "accuracy_high") == 0
    assert cheapest_within(points[:2], 0.90, 3.0) == 0


def test_energies_within_the_tie_go_to_the_fewest_bit_errors() -> None:
    within = 100.0 * (1 + ENERGY_TIE / 2)
    beyond = 100.0 * (1 + 2 * ENERGY_TIE)
    points = [pt(100.0, 0.9, low=0.9, ber=1e-3), pt(within, 0.9, low=0.9, ber=1e-9),
              pt(beyond, 0.9, low=0.9, ber=0.0)]
    assert cheapest_within(points, 0.9, 1.0) == 1
    assert cheapest_within([points[0], points[2]], 0.9, 1.0) == 0  # beyond: energy decides
    assert tied_energies([within, 100.0, beyond]) == [100.0, 100.0, beyond]
    # the front follows the same order: the cheaper point with more errors comes second and,
    # as good within noise as the first, is not on the front
    assert noise_aware_front(points) == [1]


def test_budget_floor_and_bad_budgets() -> None:
    assert budget_floor(0.9, 1.0) == pytest.approx(0.89)
    with pytest.raises(ParetoError, match="budget_points must be >= 0"):
        budget_floor(0.9, -1.0)
    with pytest.raises(ParetoError, match="clean_accuracy must be a fraction"):
        cheapest_within([pt(1.0, 0.5)], 1.5, 1.0)


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


# ---------------------------------------------------------------------------------------------
# noise-aware front


def test_noise_aware_front_drops_a_costlier_point_within_noise() -> None:
    points = [pt(2.0, 0.91, low=0.89, high=0.93), pt(1.0, 0.90, low=0.88, high=0.92)]
    assert pareto_front(points) == [1, 0]  # the naive front keeps the higher mean
    assert noise_aware_front(points) == [1]  # but 0.89 <= 0.92: not better within noise


def test_noise_aware_front_keeps_a_clearly_better_point() -> None:
    points = [pt(1.0, 0.90, low=0.88, high=0.92), pt(2.0, 0.95, low=0.93, high=0.97)]
    assert noise_aware_front(points) == [0, 1]
    touching = [points[0], pt(2.0, 0.94, low=0.92, high=0.96)]  # 0.92 > 0.92 is false
    assert noise_aware_front(touching) == [0]


def test_noise_aware_front_caps_scores_above_clean_accuracy() -> None:
    points = [pt(1.0, 0.961, low=0.961, high=0.961), pt(2.0, 0.965, low=0.962, high=0.968)]
    assert noise_aware_front(points) == [0, 1]  # 0.962 > 0.961
    assert noise_aware_front(points, clean_accuracy=0.961) == [0]  # 0.962 counts as 0.961
    # a missing bound is the mean, capped too: q at 0.97 with no interval counts as 0.961
    above = [pt(1.0, 0.97), pt(2.0, 0.99, low=0.98, high=0.995)]
    assert noise_aware_front(above) == [0, 1]
    assert noise_aware_front(above, clean_accuracy=0.961) == [0]
    # below clean the cap changes nothing
    assert noise_aware_front([pt(1.0, 0.90, low=0.89, high=0.91),
                              pt(2.0, 0.95, low=0.93, high=0.97)], clean_accuracy=0.961) == [0, 1]


def test_noise_aware_front_paired_comparison() -> None:
    points = [pt(1.0, 0.90, low=0.88, high=0.92), pt(2.0, 0.91, low=0.89, high=0.93)]
    calls: list[tuple[int, int]] = []

    def paired_with(interval: tuple[float, float] | None) -> PairedInterval:
        def paired(i: int, j: int) -> tuple[float, float] | None:
            calls.append((i, j))
            return interval
        return paired

    assert noise_aware_front(points, 0.95, paired_with((0.004, 0.01))) == [0, 1]
    assert calls == [(1, 0)]  # p first, then the cheaper q
    assert noise_aware_front(points, 0.95, paired_with((-0.001, 0.01))) == [0]
    assert noise_aware_front(points, 0.95, paired_with((0.0, 0.01))) == [0]  # low > 0 strictly
    assert noise_aware_front(points, 0.95, paired_with(None)) == [0]  # unpaired: overlap
    assert noise_aware_front(points, None, paired_with((0.004, 0.01))) == [0, 1]
    # q's mean at clean (within the tolerance) leaves nothing to gain
    at_clean = [pt(1.0, 0.95, low=0.93, high=0.97), pt(2.0, 0.96, low=0.94, high=0.98)]
    assert noise_aware_front(at_clean, 0.95, paired_with((0.004, 0.01))) == [0]
    assert noise_aware_front(at_clean, 0.95 + BUDGET_TOLERANCE / 2,
                             paired_with((0.004, 0.01))) == [0]
    assert noise_aware_front(at_clean, 0.96, paired_with((0.004, 0.01))) == [0, 1]
    # None falls back to the unpaired rule, which can keep a point too
    clear = [pt(1.0, 0.90, low=0.88, high=0.92), pt(2.0, 0.95, low=0.93, high=0.97)]
    assert noise_aware_front(clear, 0.96, paired_with(None)) == [0, 1]


def test_noise_aware_front_drops_dominated_points() -> None:
    points = [pt(2.0, 0.80, low=0.79, high=0.81), pt(1.0, 0.90, low=0.89, high=0.91)]
    assert noise_aware_front(points) == [1]
    assert noise_aware_front(points, clean_accuracy=0.95) == [1]


def test_noise_aware_front_needs_to_beat_every_cheaper_point() -> None:
    a = pt(1.0, 0.90, low=0.89, high=0.91)
    b = pt(2.0, 0.80, low=0.79, high=0.81)
    c = pt(3.0, 0.905, low=0.90, high=0.91)
    assert noise_aware_front([c, b, a]) == [2]  # c beats b but not a
    assert pareto_front([c, b, a]) == [2, 0]
    d = pt(3.0, 0.95, low=0.94, high=0.96)
    assert noise_aware_front([d, b, a]) == [2, 0]
    # a point off the front still counts: e is off (overlaps a); f beats a but not e
    e = pt(1.5, 0.90, low=0.85, high=0.95)
    f = pt(4.0, 0.93, low=0.92, high=0.94)
    assert noise_aware_front([a, e, f]) == [0]
    g = pt(4.0, 0.97, low=0.96, high=0.98)  # beats both
    assert noise_aware_front([a, e, g]) == [0, 2]


def test_noise_aware_front_edge_cases() -> None:
    assert noise_aware_front([]) == []
    assert noise_aware_front([pt(5.0, 0.1, low=0.0, high=1.0)]) == [0]  # the first is kept
    assert noise_aware_front([pt(5.0, 0.1, low=0.0, high=1.0)], clean_accuracy=0.0) == [0]
    # equal energies: the more accurate is first, the other must beat it and cannot
    same = [pt(1.0, 0.90, low=0.89, high=0.91), pt(1.0, 0.95, low=0.94, high=0.96)]
    assert noise_aware_front(same) == [1]
    # exact ties: the fewer bit errors, then the index
    assert noise_aware_front([pt(1.0, 0.9, ber=1e-6), pt(1.0, 0.9, ber=1e-9)]) == [1]
    assert noise_aware_front([pt(1.0, 0.9, device="b"), pt(1.0, 0.9, device="a")]) == [0]
    # missing bounds count as the mean
    assert noise_aware_front([pt(1.0, 0.90), pt(2.0, 0.91)]) == [0, 1]
    assert noise_aware_front([pt(1.0, 0.90, high=0.92), pt(2.0, 0.91)]) == [0]
    assert noise_aware_front([pt(1.0, 0.90), pt(2.0, 0.91, low=0.899)]) == [0]
    assert noise_aware_front([pt(1.0, 0.90), pt(2.0, 0.91, high=0.99)]) == [0, 1]
    # output by increasing energy, whatever the input order
    points = [pt(3.0, 0.99, low=0.98, high=1.0), pt(1.0, 0.5, low=0.4, high=0.6),
              pt(2.0, 0.8, low=0.7, high=0.9)]
    assert noise_aware_front(points) == [1, 2, 0]


def test_noise_aware_front_refuses_bad_input() -> None:
    with pytest.raises(ParetoError, match="energy_pj must be finite"):
        pt(math.inf, 0.5)
    bad = pt(1.0, 0.5)
    object.__setattr__(bad, "energy_pj", math.inf)  # past the constructor's check
    with pytest.raises(ParetoError, match="point 1: energy and accuracy must be finite"):
        noise_aware_front([pt(1.0, 0.5), bad])
    for clean in (1.5, -0.1, math.nan):
        with pytest.raises(ParetoError, match="clean_accuracy must be a fraction"):
            noise_aware_front([pt(1.0, 0.5)], clean_accuracy=clean)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5), st.sampled_from("abc")),
                max_size=25))
def test_noise_aware_front_without_noise_is_the_naive_front_less_duplicates(
        rows: list[tuple[int, int, str]]) -> None:
    """With zero-width intervals and no cap, "significantly better" is "more accurate": the
    noise-aware front is the naive front keeping, of exact duplicates (equal energy and
    accuracy), only the first."""
    points = [pt(float(e), a / 5.0, device=d, low=a / 5.0, high=a / 5.0) for e, a, d in rows]

    def first_of_its_duplicates(i: int) -> bool:
        p = points[i]
        return not any(q.energy_pj == p.energy_pj and q.accuracy == p.accuracy
                       and j < i for j, q in enumerate(points))

    expected = [i for i in pareto_front(points) if first_of_its_duplicates(i)]
    assert noise_aware_front(points) == expected
    # an exact paired difference decides the same way, however wide the unpaired intervals
    wide = [pt(p.energy_pj, p.accuracy, device=p.device, low=0.0, high=1.0) for p in points]

    def exact(i: int, j: int) -> tuple[float, float]:
        d = wide[i].accuracy - wide[j].accuracy
        return (d, d)

    assert noise_aware_front(wide, paired=exact) == expected
    assert noise_aware_front(wide) == expected[:1]
