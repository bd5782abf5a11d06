"""Statistical checks of the fault kernels, with fixed seeds and two-sided binomial bands.

Each band holds the observed count with probability ≥ 1 − ALPHA under the kernel's claimed
distribution (`binom.ppf(ALPHA/2)` .. `binom.isf(ALPHA/2)`), so a correct kernel fails a check
about once in a million seeds, and the fixed seeds make every run identical."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from memsim.kernels import factor_cap, flip_bits_, flip_levels_
from memsim.kernels import rng as krng
from memsim.kernels.flips import weak_cells
from memsim.kernels.reference import (
    cell_codes,
    flip_bits_reference,
    flip_levels_reference,
    unpack_bits,
)

ALPHA = 1e-6
N_BITS = 1 << 24  # 16.8 Mi bits of random data (≥ 1e7)


def band(n: int, p: float, alpha: float = ALPHA) -> tuple[float, float]:
    """Two-sided binomial acceptance band for a Binomial(n, p) count."""
    return float(stats.binom.ppf(alpha / 2, n, p)), float(stats.binom.isf(alpha / 2, n, p))


def assert_in_band(observed: int, n: int, p: float, what: str) -> None:
    lo, hi = band(n, p)
    assert lo <= observed <= hi, f"{what}: {observed} outside [{lo}, {hi}] (n={n}, p={p})"


def random_words(n_bits: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64, size=n_bits // 64, dtype=np.uint64)


def flip_masks(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bit bools: (stored bit was 1, the bit changed)."""
    return unpack_bits(before).astype(bool), unpack_bits(before ^ after).astype(bool)


@pytest.mark.parametrize(("p01", "p10", "seed"), [(1e-3, 3e-4, 1), (0.2, 0.05, 2)])
def test_flip_rates_match_per_stored_value(p01: float, p10: float, seed: int) -> None:
    words = random_words(N_BITS, seed=100 + seed)
    got = words.copy()
    counts = flip_bits_(got, N_BITS, p01, p10, seed)
    ones, changed = flip_masks(words, got)
    n1 = int(np.count_nonzero(ones))
    n0 = N_BITS - n1
    z2o = int(np.count_nonzero(changed & ~ones))
    o2z = int(np.count_nonzero(changed & ones))
    assert (counts.zero_to_one, counts.one_to_zero) == (z2o, o2z)
    assert_in_band(z2o, n0, p01, "0→1 among stored zeros")
    assert_in_band(o2z, n1, p10, "1→0 among stored ones")


def test_flips_uniform_over_the_64_bit_positions() -> None:
    words = random_words(N_BITS, seed=103)
    got = words.copy()
    flip_bits_(got, N_BITS, 1e-2, 1e-2, 3)
    _, changed = flip_masks(words, got)
    per_position = changed.reshape(-1, 64).sum(axis=0)
    assert stats.chisquare(per_position).pvalue > ALPHA


def test_flips_uniform_within_chunks() -> None:
    # Positions inside each 2^20-bit chunk, in 64 bins: no chunk-relative bias (start or end).
    words = random_words(N_BITS, seed=104)
    got = words.copy()
    flip_bits_(got, N_BITS, 2e-3, 2e-3, 4)
    _, changed = flip_masks(words, got)
    position = np.flatnonzero(changed) % (1 << 20)
    per_bin = np.bincount(position >> 14, minlength=64)
    assert stats.chisquare(per_bin).pvalue > ALPHA


def test_cell_normals_are_standard_normal() -> None:
    z = krng.cell_normals(np.uint64(12345), np.arange(200_000, dtype=np.int64))
    assert stats.kstest(z, "norm").pvalue > ALPHA
    # Neighbouring cells are uncorrelated.
    r = float(np.corrcoef(z[:-1], z[1:])[0, 1])
    assert abs(r) < 5.0 / np.sqrt(len(z))


def truncated_factor_moment(sigma: float, power: int) -> float:
    """E[min(f, f_cap)^power] for f = exp(σz − σ²/2), z standard normal."""
    z_cap, f_cap = factor_cap(sigma)
    k = power
    # E[f^k; z ≤ z_cap] = exp(k(k−1)σ²/2) Φ(z_cap − kσ)
    below = np.exp(k * (k - 1) * sigma**2 / 2) * ndtr(z_cap - k * sigma)
    return float(below + f_cap**k * ndtr(-z_cap))


FACTOR_N = 1 << 25
FACTOR_P = 1e-2
FACTOR_SIGMA = 0.5
Runs = dict[tuple[int, int, float], np.ndarray]


def popcount(words: np.ndarray) -> int:
    return int(np.count_nonzero(unpack_bits(words)))


@pytest.fixture(scope="module", params=["thinned", "weak-cell list"])
def factor_runs(request: pytest.FixtureRequest) -> Runs:
    """Changed-bit words (xor) of trials (trial seed, chip seed, σ) on one random image, drawn
    by plain thinning against the factor cap or with the chip's weak-cell list (the same
    distribution; every test below runs for both)."""
    words = random_words(FACTOR_N, seed=105)
    out = {}
    for trial, chip, sigma in [(1, 7, 0.5), (2, 7, 0.5), (3, 8, 0.5), (1, 7, 0.0), (2, 7, 0.0)]:
        got = words.copy()
        weak = (weak_cells(FACTOR_N, sigma, chip)
                if request.param == "weak-cell list" and sigma > 0 else None)
        flip_bits_(got, FACTOR_N, FACTOR_P, FACTOR_P, trial, factor_sigma=sigma,
                   factor_seed=chip, weak=weak)
        out[(trial, chip, sigma)] = words ^ got
    return out


def test_weak_cells_are_the_cells_above_the_split() -> None:
    n, sigma, chip = 50_000, 0.5, 7
    weak = weak_cells(n, sigma, chip)
    u = np.array([krng.cell_uniform(np.uint64(chip), np.uint64(i)) for i in range(n)])
    assert np.array_equal(weak.cells, np.flatnonzero(u > ndtr(weak.z_split)))
    assert 0.005 < weak.fraction < 0.1
    with pytest.raises(ValueError, match="weak"):
        flip_bits_(random_words(n + 64, seed=1), n, 0.01, 0.01, 1, factor_sigma=sigma,
                   factor_seed=8, weak=weak)


def test_weak_cell_list_is_thread_count_independent() -> None:
    import numba

    n = 1 << 22
    words = random_words(n, seed=3)
    weak = weak_cells(n, 0.5, 11)
    results = []
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):  # type: ignore[attr-defined]
        numba.set_num_threads(threads)
        got = words.copy()
        flip_bits_(got, n, 1e-3, 3e-3, 5, factor_sigma=0.5, factor_seed=11, weak=weak,
                   chunk_bits=1 << 16)
        results.append(got)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    assert np.array_equal(results[0], results[1])


class TestLognormalFactor:
    """Same chip (factor_seed) in two trials: weak cells fail together."""

    N = FACTOR_N
    P = FACTOR_P
    SIGMA = FACTOR_SIGMA

    def test_mean_rate_is_p(self, factor_runs: Runs) -> None:
        assert self.P * factor_cap(self.SIGMA)[1] < 1.0  # no saturation: E[p·f] = p·E[f]
        mean = self.P * truncated_factor_moment(self.SIGMA, 1)
        assert mean == pytest.approx(self.P, rel=1e-8)
        for trial in (1, 2, 3):
            chip = 8 if trial == 3 else 7
            flips = popcount(factor_runs[(trial, chip, self.SIGMA)])
            assert_in_band(flips, self.N, mean, f"flips of trial {trial}")

    def test_overlap_same_chip(self, factor_runs: Runs) -> None:
        overlap = popcount(factor_runs[(1, 7, 0.5)] & factor_runs[(2, 7, 0.5)])
        # Cells are iid, so the overlap is Binomial(N, E[(p f)²]) with E[f²] = exp(σ²).
        second = truncated_factor_moment(self.SIGMA, 2)
        assert second == pytest.approx(np.exp(self.SIGMA**2), rel=1e-6)
        lo, hi = band(self.N, self.P**2 * second)
        ratio = overlap / (self.N * self.P**2)
        scale = self.N * self.P**2
        assert lo / scale <= ratio <= hi / scale, f"overlap ratio {ratio}, E[f²] = {second}"
        # ... and clearly not the overlap of independent trials.
        assert overlap > band(self.N, self.P**2)[1]

    def test_overlap_other_chip_is_independent(self, factor_runs: Runs) -> None:
        # Different chips: factors independent, so the overlap is Binomial(N, (p·E[f])²).
        overlap = popcount(factor_runs[(1, 7, 0.5)] & factor_runs[(3, 8, 0.5)])
        assert_in_band(
            overlap,
            self.N,
            (self.P * truncated_factor_moment(self.SIGMA, 1)) ** 2,
            "overlap across chips",
        )

    def test_overlap_without_factor(self, factor_runs: Runs) -> None:
        overlap = popcount(factor_runs[(1, 7, 0.0)] & factor_runs[(2, 7, 0.0)])
        assert_in_band(overlap, self.N, self.P**2, "overlap without factor")


def gray(n_levels: int) -> np.ndarray:
    return np.array([g ^ (g >> 1) for g in range(n_levels)], np.uint8)


def drift_matrix(n_levels: int) -> np.ndarray:
    """Up moves likelier than down, skips rarer, far jumps rare; rows sum to 1."""
    m = np.zeros((n_levels, n_levels))
    for i in range(n_levels):
        for j in range(n_levels):
            d = j - i
            if d == 1:
                m[i, j] = 0.02
            elif d == -1:
                m[i, j] = 0.01
            elif abs(d) == 2:
                m[i, j] = 0.002
            elif d:
                m[i, j] = 2e-4
        m[i, i] = 1.0 - m[i].sum()
    return m


def transition_counts(
    before: np.ndarray, after: np.ndarray, n_cells: int, bits_per_cell: int, codes: np.ndarray
) -> np.ndarray:
    n_levels = 1 << bits_per_cell
    to_level = np.argsort(codes)
    old = to_level[cell_codes(before, n_cells, bits_per_cell)]
    new = to_level[cell_codes(after, n_cells, bits_per_cell)]
    return np.bincount(old * n_levels + new, minlength=n_levels**2).reshape(n_levels, n_levels)


@pytest.mark.parametrize(
    ("bits_per_cell", "codes", "n_cells"),
    [(2, gray(4), 1 << 23), (3, np.arange(8, dtype=np.uint8), 1 << 22), (3, gray(8), 1 << 22)],
)
def test_level_transitions_match_matrix(
    bits_per_cell: int, codes: np.ndarray, n_cells: int
) -> None:
    n_levels = 1 << bits_per_cell
    matrix = drift_matrix(n_levels)
    words = random_words(n_cells * bits_per_cell, seed=106)
    got = words.copy()
    counts = flip_levels_(
        got, n_cells, bits_per_cell, codes, np.argsort(codes).astype(np.uint8), matrix, 21
    )
    table = transition_counts(words, got, n_cells, bits_per_cell, codes)
    assert counts.cells_changed == int(table.sum() - np.trace(table))
    for src in range(n_levels):
        n_src = int(table[src].sum())
        for dst in range(n_levels):
            assert_in_band(
                int(table[src, dst]), n_src, float(matrix[src, dst]), f"level {src} → {dst}"
            )
        assert stats.chisquare(table[src], n_src * matrix[src]).pvalue > ALPHA


def test_level_transitions_of_straddling_cells() -> None:
    # b = 3: cells 21, 42 (mod 64) straddle two words; they follow the matrix too.
    n_cells = 1 << 22
    matrix = drift_matrix(8)
    codes = gray(8)
    words = random_words(n_cells * 3, seed=107)
    got = words.copy()
    flip_levels_(got, n_cells, 3, codes, np.argsort(codes).astype(np.uint8), matrix, 22)
    to_level = np.argsort(codes)
    old = to_level[cell_codes(words, n_cells, 3)]
    new = to_level[cell_codes(got, n_cells, 3)]
    straddle = (np.arange(n_cells) * 3) % 64 > 61
    assert int(np.count_nonzero(straddle)) == 2 * n_cells // 64
    for level in range(8):
        at = straddle & (old == level)
        moved = int(np.count_nonzero(new[at] != level))
        assert_in_band(
            moved,
            int(np.count_nonzero(at)),
            1.0 - float(matrix[level, level]),
            f"straddling cells leaving level {level}",
        )


def test_references_follow_the_same_distributions() -> None:
    # The references are used for exact comparisons; check their own statistics once.
    n_bits = 1 << 22
    words = random_words(n_bits, seed=108)
    new, counts = flip_bits_reference(words, n_bits, 0.01, 0.003, np.random.default_rng(5))
    ones = unpack_bits(words).astype(bool)
    assert_in_band(counts.zero_to_one, int(np.count_nonzero(~ones)), 0.01, "reference 0→1")
    assert_in_band(counts.one_to_zero, int(np.count_nonzero(ones)), 0.003, "reference 1→0")
    n_cells = n_bits // 2
    matrix = drift_matrix(4)
    codes = gray(4)
    new, _ = flip_levels_reference(
        words,
        n_cells,
        2,
        codes,
        np.argsort(codes).astype(np.uint8),
        matrix,
        np.random.default_rng(6),
    )
    table = transition_counts(words, new, n_cells, 2, codes)
    for src in range(4):
        assert stats.chisquare(table[src], table[src].sum() * matrix[src]).pvalue > ALPHA


def test_threshold_candidates_stay_in_range_when_a_row_can_hardly_fail() -> None:
    # A row whose candidate probability is below ~1e-18 once drew a geometric gap beyond
    # int64, which wrapped to a negative cell index (found with DRAM row-level shares).
    from memsim.kernels.sampling import threshold_candidates

    cells, scores = threshold_candidates(1 << 16, 64, 128, (0.0, 0.0, 0.9, 0.1), -3.0, 7)
    assert cells.size == 0 or (cells.min() >= 0 and cells.max() < 1 << 16)
    assert (np.diff(scores) >= 0).all() if scores.size > 1 else True


# -- threshold candidates: the distribution, and draws that do not depend on the bound ------


def test_threshold_candidates_count_and_scores_follow_the_normal() -> None:
    from memsim.kernels.sampling import threshold_candidates

    n, z = 1 << 20, -2.0
    cells, scores = threshold_candidates(n, 256, 64, (0.0, 0.0, 0.0, 1.0), z, 3)
    # every cell's score is a standard normal: the count is Binomial(n, Φ(z))
    p = float(ndtr(z))
    assert stats.binomtest(cells.size, n, p).pvalue > ALPHA
    # below the bound, scores follow the normal truncated at z
    assert stats.kstest(ndtr(scores) / p, "uniform").pvalue > ALPHA
    # and land anywhere in a row: their columns are uniform
    counts = np.bincount(cells % 256, minlength=256)
    assert stats.chisquare(counts).pvalue > ALPHA
    assert np.unique(cells).size == cells.size


def test_threshold_candidates_with_row_spread_keep_the_marginal_fraction() -> None:
    from memsim.kernels.sampling import threshold_candidates

    # half the variance per row: a cell's score is still N(0, 1), rows fail together more
    n, z, per_row = 1 << 21, -1.5, 128
    cells, _ = threshold_candidates(n, per_row, 16, (0.0, 0.0, 0.5, 0.5), z, 11)
    by_row = np.bincount(cells // per_row, minlength=n // per_row) / per_row
    # rows are independent: the mean of their fractions against Φ(z), by a t-test
    assert stats.ttest_1samp(by_row, float(ndtr(z))).pvalue > ALPHA
    # and each row's fraction follows its offset: far more spread than binomial
    assert by_row.var() > 5 * ndtr(z) * (1 - ndtr(z)) / per_row


@pytest.mark.parametrize("shares", [(0.0, 0.0, 0.0, 1.0), (0.08, 0.0, 0.0, 0.92),
                                    (0.1, 0.2, 0.3, 0.4), (0.0, 0.0, 1.0, 0.0)])
def test_threshold_candidates_do_not_depend_on_the_bound(
        shares: tuple[float, float, float, float]) -> None:
    """The rule a chip's extension rests on: the cells below z are the same, in the same
    order with the same scores, whatever higher bound they were drawn under."""
    from memsim.kernels.sampling import threshold_candidates

    n = 100_003  # a last, partial row
    tight = threshold_candidates(n, 512, 8, shares, -1.0, 5)
    for bound in (-0.5, 0.7, np.inf):
        cells, scores = threshold_candidates(n, 512, 8, shares, bound, 5)
        k = int(np.searchsorted(scores, -1.0, side="left"))
        assert k == tight[0].size
        assert np.array_equal(cells[:k], tight[0]) and np.array_equal(scores[:k], tight[1])
    everything = threshold_candidates(n, 512, 8, shares, np.inf, 5)[0]
    assert np.array_equal(np.sort(everything), np.arange(n))
