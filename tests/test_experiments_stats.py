"""Cluster intervals, paired differences, the adaptive chip rule and test-set resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from memsim.experiments.stats import (
    AdaptiveChips,
    StatsError,
    cluster_mean_interval,
    paired_difference_interval,
    resolvable_difference,
)

Z_1E6 = 4.891638  # two-sided binomial band at alpha = 1e-6


def band(p: float, n: int) -> tuple[float, float]:
    half = Z_1E6 * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


# -- cluster intervals --------------------------------------------------------------------

def test_hand_computed_cluster_interval() -> None:
    # chip means 0.9, 0.6, 0.8 (equal chip weights; the pooled mean would be 4.8/6 = 0.8)
    iv = cluster_mean_interval([[1.0, 0.8], [0.6], [0.9, 0.7, 0.8]])
    mean = (0.9 + 0.6 + 0.8) / 3  # 0.766667
    # deviations 0.133333, -0.166667, 0.033333; squares sum 0.0466667; / (3 - 1) = 0.0233333
    s = math.sqrt(0.0466666667 / 2)  # 0.152753
    half = 4.302653 * s / math.sqrt(3)  # t_{0.975, 2} = 4.302653: 0.379462
    assert iv.mean == pytest.approx(mean, rel=1e-12)
    assert iv.half_width == pytest.approx(half, rel=1e-6)
    assert (iv.low, iv.high) == pytest.approx((mean - half, mean + half), rel=1e-6)
    assert (iv.n_clusters, iv.n_obs, iv.confidence) == (3, 6, 0.95)
    assert iv.bounded


def test_one_cluster_has_an_unbounded_interval_and_no_spread_a_zero_width() -> None:
    one = cluster_mean_interval([[0.5, 0.7, 0.9]])
    assert one.mean == pytest.approx(0.7)
    assert one.half_width == math.inf and one.low == -math.inf and one.high == math.inf
    assert not one.bounded and one.n_clusters == 1 and one.n_obs == 3
    flat = cluster_mean_interval([[0.25, 0.75], [0.5], [0.125, 0.875]])  # exact in binary
    assert flat.half_width == 0.0 and flat.low == flat.high == 0.5


def test_bounds_clip_the_ends_but_not_the_half_width() -> None:
    values = [[1.0], [0.96], [1.0]]  # mean 0.98667, t half-width 0.0574: past 1
    free = cluster_mean_interval(values)
    clipped = cluster_mean_interval(values, bounds=(0.0, 1.0))
    assert free.high > 1.0
    assert clipped.high == 1.0 and clipped.low == free.low
    assert (clipped.mean, clipped.half_width) == (free.mean, free.half_width)
    one = cluster_mean_interval([[0.5]], bounds=(0.0, 1.0))
    assert (one.low, one.high) == (-math.inf, math.inf) and not one.bounded  # still no interval
    with pytest.raises(StatsError, match=r"mean 2 is outside the bounds \[0, 1\]"):
        cluster_mean_interval([[2.0], [2.0]], bounds=(0.0, 1.0))


@pytest.mark.parametrize(("values", "fragment"), [
    ([], "no clusters"),
    ([[0.5], []], "cluster 1 has no values"),
    ([[0.5], [math.nan]], "not finite"),
])
def test_bad_clusters_are_refused(values: list[list[float]], fragment: str) -> None:
    with pytest.raises(StatsError, match=fragment):
        cluster_mean_interval(values)
    with pytest.raises(StatsError, match="confidence"):
        cluster_mean_interval([[0.5], [0.6]], confidence=1.0)


def _simulate_chips(rng: np.random.Generator, reps: int, chips: int, trials: int,
                    ) -> np.ndarray:
    """Accuracies of `trials` trials on each of `chips` chips: a chip effect (sd 0.03) that
    every trial of the chip shares plus trial noise (sd 0.02); true mean 0.8."""
    chip = rng.normal(0.0, 0.03, size=(reps, chips, 1))
    return 0.8 + chip + rng.normal(0.0, 0.02, size=(reps, chips, trials))


def test_cluster_interval_covers_at_its_level_where_trials_as_independent_do_not() -> None:
    rng = np.random.default_rng(20240611)
    reps, chips, trials = 3000, 6, 5
    data = _simulate_chips(rng, reps, chips, trials)
    covered = naive = 0
    for r in range(reps):
        iv = cluster_mean_interval(data[r].tolist())
        covered += iv.low <= 0.8 <= iv.high
        flat = data[r].ravel()  # every trial as an independent draw
        half = sps.t.ppf(0.975, flat.size - 1) * flat.std(ddof=1) / math.sqrt(flat.size)
        naive += abs(flat.mean() - 0.8) <= half
    low, high = band(0.95, reps)
    assert low <= covered / reps <= high
    assert naive / reps < low  # about 0.67: trials on one chip are not independent


def test_paired_difference_cancels_the_chip_effect() -> None:
    rng = np.random.default_rng(7)
    chips = _simulate_chips(rng, 1, 10, 4)[0]
    better = chips + 0.01 + rng.normal(0.0, 0.002, size=chips.shape)
    paired = paired_difference_interval(better.tolist(), chips.tolist())
    unpaired_half = (cluster_mean_interval(better.tolist()).half_width
                     + cluster_mean_interval(chips.tolist()).half_width)
    assert paired.low <= 0.01 <= paired.high
    assert paired.low > 0.0 and paired.half_width < unpaired_half / 5
    assert paired.n_clusters == 10 and paired.n_obs == 80
    # hand: per-chip differences 0.2, 0.1 and -0.1 (means of a minus means of b)
    iv = paired_difference_interval([[0.9, 0.7], [0.6], [0.5]], [[0.6], [0.5], [0.6]])
    assert iv.mean == pytest.approx(0.2 / 3)
    assert iv.half_width == pytest.approx(
        4.302653 * math.sqrt(((0.2 - 0.2 / 3) ** 2 + (0.1 - 0.2 / 3) ** 2
                              + (-0.1 - 0.2 / 3) ** 2) / 2 / 3), rel=1e-6)
    with pytest.raises(StatsError, match="same chips"):
        paired_difference_interval([[0.5], [0.6]], [[0.5]])


# -- the adaptive rule --------------------------------------------------------------------

def chip_result(chip: int, trials: int = 3) -> list[float]:
    """A fixed result per chip (as a seeded evaluation gives): it depends on the chip only."""
    rng = np.random.default_rng([99, chip])
    return [float(x) for x in 0.8 + rng.normal(0.0, 0.02) + rng.normal(0.0, 0.01, trials)]


def run_adaptive(rule: AdaptiveChips, completion_seed: int | None,
                 ) -> tuple[list[int], float, float, int]:
    """Drive the rule as an executor would: evaluations of a batch finish in a random order
    (seeded), and the rule is asked again after every single completion."""
    order_rng = np.random.default_rng(completion_seed)
    finished: dict[int, list[float]] = {}
    evaluated = 0
    while (batch := rule.next_batch(finished)) is not None:
        pending = [c for c in batch if c not in finished]
        if completion_seed is not None:
            pending = [pending[i] for i in order_rng.permutation(len(pending))]
        for chip in pending:
            finished[chip] = chip_result(chip)
            evaluated += 1
            if len(finished) < max(batch) + 1:  # batch incomplete: same decision
                assert rule.next_batch(finished) == batch
    iv = rule.interval(finished)
    return rule.chips_used(finished), iv.mean, iv.half_width, evaluated


def test_adaptive_rule_does_not_depend_on_completion_order() -> None:
    rule = AdaptiveChips(batch_size=4, min_chips=8, max_chips=64, target_half_width=0.008)
    reference = run_adaptive(rule, None)
    for seed in range(5):
        assert run_adaptive(rule, seed) == reference
    used, _, half, evaluated = reference
    assert half <= 0.008 and len(used) % 4 == 0 and 8 <= len(used) < 64
    assert evaluated == len(used)
    # the rule stopped at the first batch boundary where the target was met
    shorter = cluster_mean_interval([chip_result(c) for c in range(len(used) - 4)])
    assert len(used) > 8 and shorter.half_width > 0.008


def test_adaptive_rule_ignores_chips_beyond_whole_batches_and_after_stopping() -> None:
    rule = AdaptiveChips(batch_size=3, min_chips=3, max_chips=9, target_half_width=1e-9)
    partial = {c: chip_result(c) for c in (0, 1, 2, 4, 5, 7)}  # batch 1 lacks chip 3
    assert rule.next_batch(partial) == [3, 4, 5]
    assert rule.chips_used(partial) == [0, 1, 2]
    assert rule.interval(partial) == cluster_mean_interval([chip_result(c) for c in range(3)])
    everything = {c: chip_result(c) for c in range(9)}
    assert rule.next_batch(everything) is None and rule.done(everything)
    assert rule.chips_used(everything) == list(range(9))  # the cap
    # A looser target stops after batch 0; chips finished beyond it (an earlier, stricter
    # run) do not move the result.
    loose = AdaptiveChips(batch_size=3, min_chips=3, max_chips=9, target_half_width=1.0)
    assert loose.chips_used(everything) == [0, 1, 2]
    assert loose.interval(everything) == rule.interval(partial)
    # min_chips holds the rule back even when one batch would meet the target
    patient = AdaptiveChips(batch_size=3, min_chips=5, max_chips=9, target_half_width=1.0)
    assert patient.next_batch(partial) == [3, 4, 5]


def test_adaptive_rule_edge_cases() -> None:
    rule = AdaptiveChips(batch_size=4, min_chips=1, max_chips=6, target_half_width=0.5)
    assert rule.next_batch({}) == [0, 1, 2, 3]
    assert rule.batch(1) == [4, 5] and rule.batch(2) == []
    with pytest.raises(StatsError, match="no finished batch"):
        rule.interval({})
    with pytest.raises(StatsError, match="chip index 6 outside"):
        rule.next_batch({6: [0.5]})
    single = AdaptiveChips(batch_size=1, min_chips=1, max_chips=3, target_half_width=10.0)
    assert single.next_batch({0: [0.5]}) == [1]  # one chip: unbounded, keep going
    assert single.next_batch({0: [0.5], 1: [0.6]}) is None
    for bad in ({"batch_size": 0}, {"min_chips": 7}, {"target_half_width": 0.0},
                {"max_chips": 2.5}, {"confidence": 0.0}):
        args = {"batch_size": 2, "min_chips": 2, "max_chips": 6, "target_half_width": 0.1,
                **bad}
        with pytest.raises(StatsError):
            AdaptiveChips(**args)  # type: ignore[arg-type]


# -- resolution of a test set -------------------------------------------------------------

def test_resolvable_difference_by_hand() -> None:
    # z_{0.975} = 1.959964; q = 2 · 0.9 · 0.1 = 0.18; sqrt(0.18 / 10000) = 0.0042426
    assert resolvable_difference(10000, 0.9) == pytest.approx(1.959964 * 0.0042426407, rel=1e-6)
    assert resolvable_difference(10000, 0.9, discordance=0.02) == \
        pytest.approx(1.959964 * math.sqrt(0.02 / 10000), rel=1e-6)
    # exact floor: 2 · 2^-k <= 0.05 needs k = 6 discordant images, all one way
    assert resolvable_difference(10, 0.5) == pytest.approx(0.6)
    assert resolvable_difference(100, 1.0) == pytest.approx(0.06)
    assert resolvable_difference(100, 1.0, alpha=0.25) == pytest.approx(0.03)  # 2·2^-3 = 0.25
    for bad in ({"n_test": 0}, {"p": 1.5}, {"alpha": 0.0}, {"discordance": 2.0}):
        args = {"n_test": 100, "p": 0.9, **bad}
        with pytest.raises(StatsError):
            resolvable_difference(**args)  # type: ignore[arg-type]


def test_resolvable_difference_is_the_critical_value_of_the_paired_test() -> None:
    # Two models of equal accuracy p with independent errors, n images: the observed
    # difference reaches the threshold in about alpha of the repetitions (normal
    # approximation: 0.047 here, from the integer steps of n10 - n01).
    rng = np.random.default_rng(11)
    n, p, reps = 1000, 0.8, 20000
    counts = rng.multinomial(n, [p * p, p * (1 - p), (1 - p) * p, (1 - p) ** 2], size=reps)
    diff = (counts[:, 1] - counts[:, 2]) / n
    rate = float(np.mean(np.abs(diff) >= resolvable_difference(n, p) - 1e-12))
    low, high = band(0.05, reps)
    assert low <= rate <= high
