"""Confidence intervals with chips as clusters, the adaptive chip rule, test-set resolution.

Trials on one chip share its persistent faults, so they are not independent draws: the
sampling unit is the chip. Every interval here summarises each chip by the mean of its trials
and applies a Student t-interval to the chip means (a cluster-level analysis); with one chip
the spread between chips is unknown, so there is no interval (half-width inf).

Chips weigh equally because the target is the accuracy of a randomly drawn chip: a chip with
more trials is known better, not more likely. Sweeps give every chip the same number of
trials, where this equals the pooled mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from scipy.special import ndtri, stdtrit

from memsim.errors import MemsimError

__all__ = [
    "AdaptiveChips",
    "Interval",
    "StatsError",
    "cluster_mean_interval",
    "paired_difference_interval",
    "resolvable_difference",
]


class StatsError(MemsimError):
    """Input that no interval or rule can be computed from."""


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval, chips as clusters.

    `half_width` is inf (and `low`, `high` infinite) with a single cluster; `n_obs` counts
    all trials of all clusters.
    """

    mean: float
    low: float
    high: float
    half_width: float
    n_clusters: int
    n_obs: int
    confidence: float

    @property
    def bounded(self) -> bool:
        """Whether the interval is finite (at least two clusters)."""
        return math.isfinite(self.half_width)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must lie in (0, 1), got {confidence!r}")


def _cluster_means(values_by_cluster: Sequence[Sequence[float]], what: str,
                   ) -> tuple[list[float], int]:
    means: list[float] = []
    n_obs = 0
    for c, values in enumerate(values_by_cluster):
        vals = [float(v) for v in values]
        if not vals:
            raise StatsError(f"{what}: cluster {c} has no values")
        if not all(math.isfinite(v) for v in vals):
            raise StatsError(f"{what}: cluster {c} has a value that is not finite")
        means.append(math.fsum(vals) / len(vals))
        n_obs += len(vals)
    if not means:
        raise StatsError(f"{what}: no clusters")
    return means, n_obs


def _t_interval(means: Sequence[float], n_obs: int, confidence: float) -> Interval:
    c = len(means)
    mean = math.fsum(means) / c
    if c == 1:
        return Interval(mean, -math.inf, math.inf, math.inf, 1, n_obs, confidence)
    var = math.fsum((m - mean) ** 2 for m in means) / (c - 1)
    t = float(stdtrit(c - 1, 0.5 + confidence / 2.0))
    half = t * math.sqrt(var / c)
    return Interval(mean, mean - half, mean + half, half, c, n_obs, confidence)


def cluster_mean_interval(values_by_cluster: Sequence[Sequence[float]],
                          confidence: float = 0.95,
                          bounds: tuple[float, float] | None = None) -> Interval:
    """Mean over clusters (chips) of the per-cluster means, with a t-interval over them.

    mean = (1/C) Σ_c ȳ_c, the unweighted mean over C chips of the per-chip means ȳ_c;
    half_width = t_{1−α/2, C−1} · s / √C, s the sample standard deviation of the ȳ_c and
    1 − α = `confidence`. With one chip: half_width = inf, low = −inf, high = inf.

    ``bounds``: the range the quantity cannot leave (an accuracy: ``(0, 1)``). With few
    clusters a t-interval can reach past it (0.99 ± 0.02); `low` and `high` are clipped to it,
    while `half_width` stays the t half-width that stopping rules compare. A single cluster keeps
    its infinite ends (no interval). A mean outside `bounds` is an error.
    """
    _check_confidence(confidence)
    means, n_obs = _cluster_means(values_by_cluster, "cluster_mean_interval")
    interval = _t_interval(means, n_obs, confidence)
    if bounds is None:
        return interval
    lo, hi = bounds
    if not lo <= interval.mean <= hi:
        raise StatsError(f"cluster_mean_interval: mean {interval.mean:g} is outside the "
                         f"bounds [{lo:g}, {hi:g}]")
    if not interval.bounded:
        return interval  # one cluster: no interval (±inf), which callers test for
    return replace(interval, low=max(interval.low, lo), high=min(interval.high, hi))


def paired_difference_interval(a_by_cluster: Sequence[Sequence[float]],
                               b_by_cluster: Sequence[Sequence[float]],
                               confidence: float = 0.95) -> Interval:
    """Interval of mean(a) − mean(b) paired by cluster: the `cluster_mean_interval` of the
    per-chip differences ȳ_a,c − ȳ_b,c. Cluster c of `a` and of `b` must be the same chip (two
    models or two protections on one chip), so chip effects cancel. `n_obs` counts the trials
    of both."""
    _check_confidence(confidence)
    if len(a_by_cluster) != len(b_by_cluster):
        raise StatsError(f"paired_difference_interval: {len(a_by_cluster)} clusters against "
                         f"{len(b_by_cluster)}; a paired comparison needs the same chips")
    a, n_a = _cluster_means(a_by_cluster, "paired_difference_interval (a)")
    b, n_b = _cluster_means(b_by_cluster, "paired_difference_interval (b)")
    return _t_interval([x - y for x, y in zip(a, b, strict=True)], n_a + n_b, confidence)


@dataclass(frozen=True)
class AdaptiveChips:
    """The fixed-batch sequential rule for the number of chips.

    Chips 0, 1, 2, ... run in batches of `batch_size`; batch k holds chips
    [k·batch_size, min((k+1)·batch_size, max_chips)). After each finished batch the rule stops
    once at least `min_chips` chips are in and the `cluster_mean_interval` half-width at
    `confidence` is <= `target_half_width`, or when `max_chips` is reached.

    `finished` maps a chip index to the results of its trials (e.g. accuracies). The decision
    reads only whole finished batches, in order, and nothing after the point where the rule
    stops, so it does not depend on the order in which evaluations finish or on the executor,
    and a resumed run with extra finished chips reaches the same decision.
    """

    batch_size: int
    min_chips: int
    max_chips: int
    target_half_width: float
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("batch_size", "min_chips", "max_chips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise StatsError(f"AdaptiveChips: {name} must be an integer >= 1, got {value!r}")
        if self.min_chips > self.max_chips:
            raise StatsError(f"AdaptiveChips: min_chips {self.min_chips} exceeds max_chips "
                             f"{self.max_chips}")
        if not self.target_half_width > 0.0:
            raise StatsError("AdaptiveChips: target_half_width must be > 0, got "
                             f"{self.target_half_width!r}")
        _check_confidence(self.confidence)

    def batch(self, k: int) -> list[int]:
        """The chip indices of batch k (empty past max_chips)."""
        return list(range(min(k * self.batch_size, self.max_chips),
                          min((k + 1) * self.batch_size, self.max_chips)))

    def _walk(self, finished: Mapping[int, Sequence[float]]) -> tuple[int, list[int] | None]:
        """(chips the decision rests on, the batch to run next or None when done)."""
        for chip in finished:
            if isinstance(chip, bool) or not isinstance(chip, int) or not 0 <= chip < \
                    self.max_chips:
                raise StatsError(f"AdaptiveChips: chip index {chip!r} outside "
                                 f"[0, {self.max_chips})")
        n, k = 0, 0
        while True:
            if n >= self.max_chips:
                return n, None
            if n >= self.min_chips and self._half_width(finished, n) <= self.target_half_width:
                return n, None
            chips = self.batch(k)
            if not all(c in finished for c in chips):
                return n, chips
            n, k = chips[-1] + 1, k + 1

    def _half_width(self, finished: Mapping[int, Sequence[float]], n: int) -> float:
        return cluster_mean_interval([finished[c] for c in range(n)],
                                     self.confidence).half_width

    def next_batch(self, finished: Mapping[int, Sequence[float]]) -> list[int] | None:
        """The next batch to evaluate (all its chips, finished ones included, so a caller
        skips what its results store holds), or None when the rule has stopped."""
        return self._walk(finished)[1]

    def chips_used(self, finished: Mapping[int, Sequence[float]]) -> list[int]:
        """The chips the decision (and the reported interval) rests on so far."""
        return list(range(self._walk(finished)[0]))

    def done(self, finished: Mapping[int, Sequence[float]]) -> bool:
        """Whether the rule has stopped (`next_batch` gives None)."""
        return self._walk(finished)[1] is None

    def interval(self, finished: Mapping[int, Sequence[float]]) -> Interval:
        """The cluster interval over `chips_used(finished)` (an error before the first
        batch has finished)."""
        n = self._walk(finished)[0]
        if n == 0:
            raise StatsError("AdaptiveChips: no finished batch yet")
        return cluster_mean_interval([finished[c] for c in range(n)], self.confidence)


def resolvable_difference(n_test: int, p: float, alpha: float = 0.05,
                          discordance: float | None = None) -> float:
    """The smallest accuracy difference (fraction) a paired test on `n_test` images resolves.

    Two models evaluated on the same images differ only on discordant images (right for one,
    wrong for the other); McNemar's test compares their counts n₁₀ and n₀₁. With a fraction
    q of discordant images, under no difference n₁₀ − n₀₁ has standard deviation √(q·n), so
    a two-sided level-α test reaches significance at an observed difference of

        d = z_{1−α/2} · √(q / n)            (the critical difference: 50 % power there)

    `discordance` is q; by default q = 2·p·(1−p), two models of accuracy `p` whose errors are
    independent across images (this makes d the unpaired two-proportion figure; correlated
    errors lower q and d). d is never below the exact floor k/n, where k = ⌈log₂(2/α)⌉ is
    the fewest discordant images, all one way, that an exact two-sided sign test can call
    significant (2·2⁻ᵏ ≤ α).
    """
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1:
        raise StatsError(f"resolvable_difference: n_test must be an integer >= 1, got {n_test!r}")
    if not 0.0 <= p <= 1.0:
        raise StatsError(f"resolvable_difference: p must lie in [0, 1], got {p!r}")
    if not 0.0 < alpha < 1.0:
        raise StatsError(f"resolvable_difference: alpha must lie in (0, 1), got {alpha!r}")
    q = 2.0 * p * (1.0 - p) if discordance is None else float(discordance)
    if not 0.0 <= q <= 1.0:
        raise StatsError(f"resolvable_difference: discordance must lie in [0, 1], got {q!r}")
    z = float(ndtri(1.0 - alpha / 2.0))
    k_min = math.ceil(math.log2(2.0 / alpha) - 1e-12)
    return max(z * math.sqrt(q / n_test), k_min / n_test)
