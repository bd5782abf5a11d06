"""Exact behaviour of the fault kernels: deterministic cases against the numpy references,
stream layout and chunk boundaries, reproducibility across thread counts, argument checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr, ndtri

from memsim.kernels import (
    DEFAULT_CHUNK_BITS,
    FlipCounts,
    apply_persistent_,
    factor_cap,
    factor_truncation_loss,
    flip_bits_,
    flip_levels_,
    set_levels_,
)
from memsim.kernels import flips as kernel_flips
from memsim.kernels import rng as krng
from memsim.kernels.reference import (
    apply_persistent_reference,
    cell_codes,
    cell_factor_reference,
    cell_uniform_reference,
    flip_bits_reference,
    flip_levels_reference,
    set_levels_reference,
    unpack_bits,
)
from memsim.kernels.sampling import sort_by_score_

GRAY2 = np.array([0, 1, 3, 2], np.uint8)
BINARY3 = np.arange(8, dtype=np.uint8)
GRAY3 = np.array([g ^ (g >> 1) for g in range(8)], np.uint8)


def inverse(codes: np.ndarray) -> np.ndarray:
    return np.argsort(codes).astype(np.uint8)


def random_words(n_words: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64, size=n_words, dtype=np.uint64)


def diff_counts(before: np.ndarray, after: np.ndarray) -> tuple[int, int]:
    """(0→1, 1→0) changes between two word arrays, counted bit by bit."""
    old, new = unpack_bits(before), unpack_bits(after)
    return int(np.count_nonzero((old == 0) & (new == 1))), int(
        np.count_nonzero((old == 1) & (new == 0))
    )


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """Set numba's thread count for a test and restore it afterwards."""
    saved = numba.get_num_threads()
    yield numba.set_num_threads
    numba.set_num_threads(saved)


# --- FlipCounts --------------------------------------------------------------------------


def test_flip_counts_add_and_frozen() -> None:
    a = FlipCounts(1, 2, 3, 4)
    b = FlipCounts(10, 20)
    assert a + b == FlipCounts(11, 22, 3, 4)
    assert a.bits_changed == 3
    with pytest.raises(AttributeError):
        a.zero_to_one = 5  # type: ignore[misc]


# --- rng ---------------------------------------------------------------------------------


def test_splitmix64_matches_published_sequence() -> None:
    # Vigna's splitmix64.c seeded with 1234567.
    state = np.uint64(1234567)
    out = []
    for _ in range(3):
        state, x = krng.next_u64(state)
        out.append(int(x))
    assert out == [6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_uniforms_are_open_interval_with_53_bits() -> None:
    assert 0.0 < krng.u64_to_unit(np.uint64(0)) == 2.0**-54
    assert krng.u64_to_unit(np.uint64(2**11)) == 2.0**-53
    assert krng.u64_to_unit(np.uint64(2**64 - 1)) == 1.0 - 2.0**-53
    assert krng.u64_to_unit(np.uint64(2**64 - 1)) < 1.0


def test_stream_seeds_are_distinct_and_seed_dependent() -> None:
    a = {int(krng.stream_seed(np.uint64(7), c)) for c in range(5000)}
    b = {int(krng.stream_seed(np.uint64(8), c)) for c in range(5000)}
    assert len(a) == 5000 and len(b) == 5000
    assert not a & b


def test_draws_ahead_are_the_sequence_s_draws() -> None:
    # uniform_ahead(s, k) is the k-th next_uniform from s, skip_ahead(s, k) the state then,
    # across the wrap of the 64-bit state.
    for start in (0, 12345, 2**64 - 3):
        state = np.uint64(start)
        for k in range(1, 40):
            state, u = krng.next_uniform(np.uint64(state))  # returns the state as an int
            assert krng.uniform_ahead(np.uint64(start), k) == u
            assert krng.skip_ahead(np.uint64(start), k) == state
        assert krng.skip_ahead(np.uint64(start), 0) == np.uint64(start)


def test_cell_uniform_is_counter_based_and_matches_numpy_port() -> None:
    index = np.concatenate([np.arange(1000), np.array([2**31, 2**40 + 3, 2**62 + 11])]).astype(
        np.int64
    )
    for seed in (0, 1, 2**64 - 1):
        got = np.array([krng.cell_uniform(np.uint64(seed), int(i)) for i in index])
        np.testing.assert_array_equal(got, cell_uniform_reference(seed, index))
        again = np.array([krng.cell_uniform(np.uint64(seed), int(i)) for i in index])
        np.testing.assert_array_equal(got, again)
        assert np.all((got > 0.0) & (got < 1.0))
    assert krng.cell_uniform(np.uint64(1), 5) != krng.cell_uniform(np.uint64(2), 5)


def test_standard_normal_from_uniform_matches_scipy() -> None:
    u = np.concatenate(
        [
            np.linspace(1e-6, 1 - 1e-6, 20001),
            np.logspace(-300, -1, 500),
            1.0 - np.logspace(-16, -1, 500),
            [2.0**-54, 0.5, 0.075, 0.925],
        ]
    )
    got = np.array([krng.standard_normal_from_uniform(x) for x in u])
    want = ndtri(u)
    np.testing.assert_allclose(got, want, rtol=2e-15, atol=1e-300)
    assert np.all(np.diff(got[:20001]) > 0)


def test_cell_normals_array_helper_matches_scalar() -> None:
    index = np.arange(100, dtype=np.int64)
    got = krng.cell_normals(np.uint64(9), index)
    want = ndtri(cell_uniform_reference(9, index))
    np.testing.assert_allclose(got, want, rtol=2e-15)


# --- factor truncation -------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
def test_factor_cap_keeps_the_mean_within_1e_8(sigma: float) -> None:
    z_cap, f_cap = factor_cap(sigma)
    assert z_cap >= 6.0
    assert factor_truncation_loss(sigma, z_cap) <= 1e-8
    assert f_cap == pytest.approx(np.exp(sigma * z_cap - sigma**2 / 2), rel=1e-12)
    if sigma <= 0.75:
        assert z_cap == 6.0


def test_factor_cap_without_factor() -> None:
    assert factor_cap(0.0) == (6.0, 1.0)
    assert factor_truncation_loss(0.0, 6.0) == 0.0


# --- flip_bits_: deterministic cases -----------------------------------------------------


@pytest.mark.parametrize("n_bits", [0, 1, 63, 64, 65, 1000, 64 * 40])
def test_flip_bits_certain_flips_match_reference(n_bits: int) -> None:
    words = random_words(40, seed=1)
    for p01, p10 in [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0)]:
        got = words.copy()
        counts = flip_bits_(got, n_bits, p01, p10, seed=3, chunk_bits=128)
        want, want_counts = flip_bits_reference(words, n_bits, p01, p10, np.random.default_rng(0))
        np.testing.assert_array_equal(got, want)
        assert counts == want_counts


def test_flip_bits_probability_one_inverts_exactly_the_stream() -> None:
    words = random_words(8, seed=2)
    got = words.copy()
    n_bits = 64 * 5 + 17
    counts = flip_bits_(got, n_bits, 1.0, 1.0, seed=0)
    mask = np.zeros(8, np.uint64)
    mask[:5] = np.uint64(2**64 - 1)
    mask[5] = np.uint64((1 << 17) - 1)
    np.testing.assert_array_equal(got, words ^ mask)
    z2o, o2z = diff_counts(words, got)
    assert counts == FlipCounts(z2o, o2z, 0, n_bits)


def test_flip_bits_with_factor_at_p_zero_changes_nothing() -> None:
    words = random_words(100, seed=3)
    got = words.copy()
    assert flip_bits_(got, 6400, 0.0, 0.0, 5, factor_sigma=1.0, factor_seed=4) == FlipCounts(0, 0)
    np.testing.assert_array_equal(got, words)


def test_flip_bits_factor_at_p_one_flips_every_strong_cell() -> None:
    # p = 1: a cell with f >= 1 flips for certain (min(1, f) = 1), a weak one with probability f.
    words = random_words(200, seed=4)
    n_bits = 64 * 200
    f = cell_factor_reference(4, np.arange(n_bits, dtype=np.int64), 0.5)
    flipped = unpack_bits(words) != unpack_bits(words)  # all False
    for seed in range(3):
        got = words.copy()
        counts = flip_bits_(got, n_bits, 1.0, 1.0, seed, factor_sigma=0.5, factor_seed=4)
        changed = unpack_bits(words) != unpack_bits(got)
        assert np.all(changed[f >= 1.0])
        assert not np.all(changed[f < 1.0])
        assert counts.bits_changed == int(np.count_nonzero(changed))
        flipped |= changed
    assert np.count_nonzero(~flipped) > 0


NEVER_QUICK = np.tile([-1.0, 2.0], (1024, 2))
"""A `_factor_quick_table` that decides nothing quickly: every candidate takes the exact test."""


@pytest.mark.parametrize(
    ("sigma", "p01", "p10"),
    [(0.05, 0.02, 0.01), (0.5, 0.01, 0.0), (0.5, 1e-3, 0.3), (1.5, 1e-4, 2e-4), (1.0, 0.2, 0.4)],
)
@pytest.mark.parametrize("with_list", [False, True])
def test_flip_bits_quick_factor_decisions_are_only_a_speed_up(
    sigma: float, p01: float, p10: float, with_list: bool
) -> None:
    # The kernel without its quick tables (every candidate takes the exact test) must make
    # exactly the same decisions, in the main pass and in the weak-cell list's.
    words = random_words(1 << 14, seed=16)
    n_bits = 64 * len(words)
    chunk = 1 << 16
    weak = kernel_flips.weak_cells(n_bits, sigma, 9) if with_list else None
    fast = words.copy()
    flip_bits_(fast, n_bits, p01, p10, 3, factor_sigma=sigma, factor_seed=9, chunk_bits=chunk,
               weak=weak)
    slow = words.copy()
    z_cap, _ = factor_cap(sigma)
    log_f_cap = sigma * z_cap - sigma**2 / 2
    no_list = np.empty(0, np.int64)
    kernel_flips._flip_bits_kernel(
        slow,
        n_bits,
        p01,
        p10,
        np.uint64(3) ^ kernel_flips._TAG_BITS,
        sigma,
        np.uint64(9),
        sigma * weak.z_split - sigma**2 / 2 if weak else log_f_cap,
        NEVER_QUICK,
        chunk,
        np.empty(0, np.uint64),
        False,
        weak.cells if weak else no_list,
        weak.offsets(chunk) if weak else no_list,
        float(ndtr(weak.z_split)) if weak else 2.0,
        log_f_cap,
        NEVER_QUICK,
    )
    np.testing.assert_array_equal(fast, slow)
    assert not np.array_equal(fast, words)


def test_factor_quick_table_brackets_the_exact_test() -> None:
    # A cell uniform below a bucket's lower bound rejects and above its upper bound accepts
    # for every v of the bucket (checked at the bucket's ends against the exact test); the
    # bounds are ordered and the band between them is narrow.
    sigma, p01, p10 = 0.7, 2e-3, 5e-3
    z_cap, _ = factor_cap(sigma)
    log_f_cap = sigma * z_cap - sigma**2 / 2
    table = kernel_flips._factor_quick_table(p01, p10, sigma, log_f_cap)
    p_bound = min(1.0, max(p01, p10) * np.exp(log_f_cap))
    k = np.arange(1024)
    for b, p in enumerate((p01, p10)):
        lo, hi = table[:, 2 * b], table[:, 2 * b + 1]
        assert np.all(lo <= hi)
        assert np.mean(np.minimum(hi, 1.0) - np.maximum(lo, 0.0)) < 2e-3

        def accepted(u: np.ndarray, v: np.ndarray, p: float = p) -> np.ndarray:
            f = np.minimum(np.exp(sigma * ndtri(u) - sigma**2 / 2), np.exp(log_f_cap))
            return np.asarray(v * p_bound < np.minimum(1.0, p * f))

        below = np.clip(lo - 1e-9, 1e-300, None)
        above = np.clip(hi + 1e-9, None, 1 - 1e-16)
        for v in (k / 1024, (k + 1) / 1024 - 1e-12):
            assert not np.any(accepted(below, v)[lo > 1e-9])
            assert np.all(accepted(above, v)[hi < 1 - 1e-9])


@numba.njit
def exact_gaps(u: np.ndarray, log_q: float) -> np.ndarray:
    """The gaps of `_next_candidate`, floor(log(u)/log_q) with the library's log, clipped."""
    out = np.empty(u.shape[0], np.int64)
    for i in range(u.shape[0]):
        out[i] = int(min(np.log(u[i]) / log_q, float(1 << 62)))
    return out


@pytest.mark.parametrize("p", [1e-300, 1e-12, 1e-6, 3e-4, 0.01, 0.3, 0.5, 0.9, 1 - 1e-12])
def test_fast_gaps_are_the_exact_gaps_or_left_to_the_exact_log(p: float) -> None:
    # `_gaps` must give floor(log(u)/log q) exactly, or -1 (the caller then takes the exact
    # log), for uniforms as the generator makes them (k·2^-53): random ones, the smallest,
    # those next to 1 and to powers of two (where the log's exponent changes).
    rng = np.random.default_rng(41)
    k = rng.integers(1, 2**53, size=1_000_000, dtype=np.int64)
    powers = 2.0 ** -np.arange(1, 54)
    u = np.concatenate([
        k.astype(np.float64) * 2.0**-53,
        np.floor(np.exp(-37.0 * rng.random(200_000)) * 2.0**53) * 2.0**-53,  # all exponents
        np.arange(1, 20_000) * 2.0**-53,
        (2.0**53 - np.arange(1, 20_000)) * 2.0**-53,
        [2.0**-54], powers, np.nextafter(powers, 0.0), np.nextafter(powers, 1.0),
    ])
    u = u[(u > 0.0) & (u < 1.0)]
    log_q = float(np.log1p(-p))
    inv_log_q = 1.0 / log_q
    got = np.empty(u.shape[0], np.int64)
    n_unsure = kernel_flips._gaps(u, inv_log_q, kernel_flips._LOG_TOLERANCE * abs(inv_log_q),
                                  got)
    sure = got >= 0
    assert n_unsure == np.count_nonzero(~sure)
    np.testing.assert_array_equal(got[sure], exact_gaps(u, log_q)[sure])
    if 1e-4 <= p < 1 - 1e-9:
        # a speed-up: the exact log stays rare for random uniforms (the first million)
        assert np.count_nonzero(~sure[:1_000_000]) < 100


def test_float32_quick_table_decides_only_what_the_float64_table_does() -> None:
    # Rounded outwards: a float32 lower bound never above the float64 one, an upper bound
    # never below it, and within a float32 rounding step of it.
    for sigma, p01, p10 in ((0.5, 2e-4 / 3, 4e-4 / 3), (0.05, 0.02, 0.01), (2.0, 1e-6, 0.3),
                            (1.0, 0.0, 1e-3)):
        z_cap, _ = factor_cap(sigma)
        log_f_cap = sigma * z_cap - sigma**2 / 2
        table = kernel_flips._factor_quick_table(p01, p10, sigma, log_f_cap)
        small = kernel_flips._factor_quick_table32(p01, p10, sigma, log_f_cap)
        assert small.dtype == np.float32 and small.shape == table.shape
        wide = small.astype(np.float64)
        assert np.all(wide[:, 0::2] <= table[:, 0::2])
        assert np.all(wide[:, 1::2] >= table[:, 1::2])
        np.testing.assert_allclose(wide, table, rtol=2.5e-7, atol=1e-45)


def test_cell_factor_reference_is_truncated_lognormal() -> None:
    f = cell_factor_reference(3, np.arange(10_000, dtype=np.int64), 0.5)
    assert np.all(f > 0) and f.max() <= factor_cap(0.5)[1]


# --- the kernels make the draws and decisions of a one-by-one loop ------------------------


@numba.njit
def one_by_one_flip_bits(
    words: np.ndarray, n_bits: int, p01: float, p10: float, seed: np.uint64, sigma: float,
    factor_seed: np.uint64, log_f_cap: float, chunk_bits: int, weak_cells: np.ndarray,
    weak_offsets: np.ndarray, u_weak: float, log_f_weak_cap: float,
) -> np.ndarray:
    """The flip kernel as a plain loop, a candidate at a time: a gap draw (`_next_candidate`),
    then, where the candidate is thinned, its uniform, and the exact test with the cell's
    factor; weak cells after the main pass of their chunk, from the list. Returns the counts."""
    one = np.uint64(1)
    n_chunks = (n_bits + chunk_bits - 1) // chunk_bits
    counts = np.zeros(2, np.int64)
    split = weak_offsets.shape[0] > 0
    p_bound = min(1.0, max(p01, p10) * np.exp(log_f_cap))
    p_weak = min(1.0, max(p01, p10) * np.exp(log_f_weak_cap))
    if p_bound <= 0.0:
        return counts
    every = p_bound >= 1.0
    log_q = 0.0 if every else np.log1p(-p_bound)
    half_var = 0.5 * sigma * sigma
    for c in range(n_chunks):
        start = c * chunk_bits
        end = min(start + chunk_bits, n_bits)
        state = krng.stream_seed(seed, c)
        pos = start - 1
        while True:
            state, pos = kernel_flips._next_candidate(state, pos, end, every, log_q)
            if pos >= end:
                break
            bit = (words[pos >> 6] >> np.uint64(pos & 63)) & one
            p = p10 if bit else p01
            if sigma > 0.0:
                state, v = krng.next_uniform(state)
                u = krng.cell_uniform(factor_seed, pos)
                if u > u_weak:
                    continue
                z = krng.standard_normal_from_uniform(u)
                p = min(1.0, p * np.exp(min(sigma * z - half_var, log_f_cap)))
                if v * p_bound >= p:
                    continue
            elif p < p_bound:
                state, v = krng.next_uniform(state)
                if v * p_bound >= p:
                    continue
            words[pos >> 6] ^= one << np.uint64(pos & 63)
            counts[bit] += 1
        if split and p_weak > 0.0:
            j = weak_offsets[c] - 1
            hi = weak_offsets[c + 1]
            log_qw = 0.0 if p_weak >= 1.0 else np.log1p(-p_weak)
            while True:
                state, j = kernel_flips._next_candidate(state, j, hi, p_weak >= 1.0, log_qw)
                if j >= hi:
                    break
                cell = weak_cells[j]
                bit = (words[cell >> 6] >> np.uint64(cell & 63)) & one
                state, v = krng.next_uniform(state)
                z = krng.standard_normal_from_uniform(krng.cell_uniform(factor_seed, cell))
                p = min(1.0, (p10 if bit else p01) * np.exp(min(sigma * z - half_var,
                                                                log_f_weak_cap)))
                if v * p_weak >= p:
                    continue
                words[cell >> 6] ^= one << np.uint64(cell & 63)
                counts[bit] += 1
    return counts


@pytest.mark.parametrize(
    ("p01", "p10"),
    [(1e-4, 3e-4), (2e-3, 2e-3), (0.05, 0.01), (0.0, 0.2), (0.3, 1.0), (1.0, 1.0)],
)
@pytest.mark.parametrize(("sigma", "with_list"), [(0.0, False), (0.5, False), (0.5, True),
                                                  (1.2, True)])
def test_flip_bits_draws_and_decides_as_one_by_one(
    threads: Callable[[int], None], p01: float, p10: float, sigma: float, with_list: bool
) -> None:
    # 4 Mi bits in 2^16-bit chunks: 64 chunks in 2 copy groups, from a source and in place,
    # at 1 and 2 threads: always the flips of the one-by-one loop.
    n_bits = (1 << 22) - 77
    chunk = 1 << 16
    words = random_words(-(-n_bits // 64) + 2, seed=31)
    weak = kernel_flips.weak_cells(n_bits, sigma, 12) if with_list else None
    z_cap, _ = factor_cap(sigma)
    log_f_cap = sigma * z_cap - sigma**2 / 2
    want = words.copy()
    no_list = np.empty(0, np.int64)
    z2o, o2z = one_by_one_flip_bits(
        want, n_bits, p01, p10, np.uint64(8) ^ kernel_flips._TAG_BITS, sigma, np.uint64(12),
        sigma * weak.z_split - sigma**2 / 2 if weak else log_f_cap, chunk,
        weak.cells if weak else no_list, weak.offsets(chunk) if weak else no_list,
        float(ndtr(weak.z_split)) if weak else 2.0, log_f_cap)
    for n_threads in (1, 2):
        threads(n_threads)
        for source in (None, words):
            got = words.copy() if source is None else np.zeros_like(words)
            counts = flip_bits_(got, n_bits, p01, p10, 8, factor_sigma=sigma, factor_seed=12,
                                chunk_bits=chunk, source=source, weak=weak)
            np.testing.assert_array_equal(got, want)
            assert (counts.zero_to_one, counts.one_to_zero) == (z2o, o2z)


@numba.njit
def one_by_one_flip_levels(
    words: np.ndarray, n_cells: int, b: int, level_to_code: np.ndarray,
    code_to_level: np.ndarray, leave: np.ndarray, cum: np.ndarray, targets: np.ndarray,
    rate_bound: float, seed: np.uint64, chunk_cells: int,
) -> int:
    """The level kernel as a plain loop, a candidate at a time: a gap draw, one uniform that
    accepts (below the level's leaving rate) and picks the target by searching its row."""
    bb = np.uint64(b)
    mask = (np.uint64(1) << bb) - np.uint64(1)
    n_chunks = (n_cells + chunk_cells - 1) // chunk_cells
    if rate_bound <= 0.0:
        return 0
    every = rate_bound >= 1.0
    log_q = 0.0 if every else np.log1p(-rate_bound)
    changed = 0
    for c in range(n_chunks):
        start = c * chunk_cells
        end = min(start + chunk_cells, n_cells)
        state = krng.stream_seed(seed, c)
        j = start - 1
        while True:
            state, j = kernel_flips._next_candidate(state, j, end, every, log_q)
            if j >= end:
                break
            lo = j * b
            w = lo >> 6
            off = np.uint64(lo & 63)
            code = (words[w] >> off) & mask
            if off + bb > np.uint64(64):
                code |= (words[w + 1] << (np.uint64(64) - off)) & mask
            level = code_to_level[code]
            state, v = krng.next_uniform(state)
            x = v * rate_bound
            if x >= leave[level]:
                continue
            k = 0
            while k < targets.shape[1] - 1 and x >= cum[level, k]:
                k += 1
            diff = code ^ np.uint64(level_to_code[targets[level, k]])
            words[w] ^= diff << off
            if off + bb > np.uint64(64):
                words[w + 1] ^= diff >> (np.uint64(64) - off)
            changed += 1
    return changed


@pytest.mark.parametrize(("bits_per_cell", "codes"),
                         [(1, np.array([1, 0], np.uint8)), (2, GRAY2), (3, GRAY3),
                          (5, np.random.default_rng(3).permutation(32).astype(np.uint8))])
@pytest.mark.parametrize("scale", [1e-4, 0.02, 0.5])
def test_flip_levels_draws_and_decides_as_one_by_one(
    threads: Callable[[int], None], bits_per_cell: int, codes: np.ndarray, scale: float
) -> None:
    # Uneven rows (different leaving rates, targets near and far); cells in 2^10-cell chunks,
    # several copy groups; from a source and in place, at 1 and 2 threads.
    n_levels = 1 << bits_per_cell
    rng = np.random.default_rng(bits_per_cell)
    matrix = rng.uniform(0.0, 1.0, (n_levels, n_levels)) ** 4
    np.fill_diagonal(matrix, 0.0)
    matrix *= scale * rng.uniform(0.2, 1.0, (n_levels, 1)) / matrix.sum(axis=1, keepdims=True)
    np.fill_diagonal(matrix, 1.0 - matrix.sum(axis=1))
    n_cells = (1 << 22) // bits_per_cell - 5
    chunk = 1 << 10
    words = random_words(-(-n_cells * bits_per_cell // 64) + 1, seed=32)
    leave, cum, targets, rate_bound = kernel_flips._level_tables(matrix, n_levels)
    want = words.copy()
    changed = one_by_one_flip_levels(
        want, n_cells, bits_per_cell, codes, inverse(codes), leave, cum, targets, rate_bound,
        np.uint64(6) ^ kernel_flips._TAG_LEVELS, chunk)
    assert changed > 0
    for n_threads in (1, 2):
        threads(n_threads)
        for source in (None, words):
            got = words.copy() if source is None else np.zeros_like(words)
            counts = flip_levels_(got, n_cells, bits_per_cell, codes, inverse(codes), matrix, 6,
                                  chunk_cells=chunk, source=source)
            np.testing.assert_array_equal(got, want)
            assert counts.cells_changed == changed


# --- flip_bits_: layout, chunks, padding -------------------------------------------------


@pytest.mark.parametrize("n_bits", [1, 63, 65, 64 * 7 + 5, 100_003])
def test_flip_bits_never_touches_padding(n_bits: int) -> None:
    n_words = (n_bits + 63) // 64 + 2
    words = random_words(n_words, seed=6)
    got = words.copy()
    counts = flip_bits_(got, n_bits, 0.4, 0.3, seed=11, chunk_bits=256)
    old, new = unpack_bits(words), unpack_bits(got)
    np.testing.assert_array_equal(old[n_bits:], new[n_bits:])
    assert counts == FlipCounts(*diff_counts(words, got), 0, counts.bits_changed)
    if n_bits > 60:
        assert counts.bits_changed > 0


def test_flip_bits_stream_smaller_than_one_chunk() -> None:
    words = random_words(3, seed=7)
    got = words.copy()
    counts = flip_bits_(got, 150, 0.5, 0.5, seed=1)  # one chunk of the default 2^20 bits
    assert 0 < counts.bits_changed < 150
    assert counts == FlipCounts(*diff_counts(words, got), 0, counts.bits_changed)
    np.testing.assert_array_equal(unpack_bits(words)[150:], unpack_bits(got)[150:])


def test_flip_bits_every_chunk_gets_its_flips() -> None:
    # 64-bit chunks at p = 0.5: a chunk without a flip has probability 2^-64.
    words = np.zeros(200, np.uint64)
    flip_bits_(words, 64 * 200, 0.5, 0.5, seed=3, chunk_bits=64)
    assert np.all(words != 0)
    # ... and chunks are not copies of each other (each has its own generator).
    assert len(np.unique(words)) == 200


def test_flip_bits_reproducible_and_seed_dependent() -> None:
    words = random_words(5000, seed=8)
    runs = []
    for seed, factor_seed in [(1, 0), (1, 0), (2, 0), (1, 5)]:
        got = words.copy()
        counts = flip_bits_(
            got, 64 * 5000, 0.01, 0.02, seed, factor_sigma=0.4, factor_seed=factor_seed
        )
        runs.append((got, counts))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])
    assert not np.array_equal(runs[0][0], runs[3][0])


def test_flip_bits_results_depend_on_chunk_size_only_through_the_draws() -> None:
    # Documented: different chunk sizes give different (equally valid) draws.
    words = random_words(4096, seed=9)
    a, b = words.copy(), words.copy()
    flip_bits_(a, 64 * 4096, 0.05, 0.05, 1, chunk_bits=DEFAULT_CHUNK_BITS)
    flip_bits_(b, 64 * 4096, 0.05, 0.05, 1, chunk_bits=1 << 12)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("factor_sigma", [0.0, 0.6])
def test_flip_bits_thread_count_independent(
    threads: Callable[[int], None], factor_sigma: float
) -> None:
    words = random_words(1 << 16, seed=10)  # 4 Mi bits: 4 default chunks
    results = []
    for n_threads in (1, 2, 1, 2):
        threads(n_threads)
        for chunk_bits in (DEFAULT_CHUNK_BITS, 1 << 14):
            got = words.copy()
            counts = flip_bits_(
                got,
                64 * len(words) - 7,
                3e-3,
                1e-3,
                2**64 - 1,
                factor_sigma=factor_sigma,
                factor_seed=77,
                chunk_bits=chunk_bits,
            )
            results.append((n_threads, chunk_bits, got, counts))
    by_chunk: dict[int, list[tuple[np.ndarray, FlipCounts]]] = {}
    for _, chunk_bits, got, counts in results:
        by_chunk.setdefault(chunk_bits, []).append((got, counts))
    for runs in by_chunk.values():
        for got, counts in runs[1:]:
            np.testing.assert_array_equal(got, runs[0][0])
            assert counts == runs[0][1]


# --- apply_persistent_ -------------------------------------------------------------------


def test_apply_persistent_matches_reference_with_duplicates() -> None:
    rng = np.random.default_rng(11)
    words = random_words(64, seed=11)
    index = rng.integers(0, 64 * 64, size=3000).astype(np.int64)  # many duplicates
    action = rng.integers(0, 3, size=3000).astype(np.uint8)
    got = words.copy()
    counts = apply_persistent_(got, index, action)
    want, want_counts = apply_persistent_reference(words, index, action)
    np.testing.assert_array_equal(got, want)
    assert counts == want_counts
    assert counts.stuck_cells == int(np.count_nonzero(action < 2))


@pytest.mark.parametrize("presorted", [False, True])
def test_apply_persistent_across_load_batches(presorted: bool) -> None:
    # Thousands of entries (words are loaded in batches of 256): runs of one bit that straddle
    # a batch's end, several bits of one word in a batch, sorted (taken as its own order) or
    # not; always the reference's result.
    rng = np.random.default_rng(12)
    words = random_words(400, seed=12)
    index = rng.integers(0, 64 * 400, size=5000).astype(np.int64)
    index[250:262] = index[250]  # a run of one bit across the first batch's end
    index[511:515] = 64 * 7 + np.arange(4)  # four bits of one word
    action = rng.integers(0, 3, size=5000).astype(np.uint8)
    if presorted:
        order = np.argsort(index, kind="stable")
        index, action = index[order], action[order]
    got = words.copy()
    counts = apply_persistent_(got, index, action)
    want, want_counts = apply_persistent_reference(words, index, action)
    np.testing.assert_array_equal(got, want)
    assert counts == want_counts


def test_apply_persistent_distinct_applies_an_unsorted_list_as_the_reference() -> None:
    # a chip's cells: distinct, in score order (random positions), thousands of batches' worth;
    # several bits of one word in a batch
    rng = np.random.default_rng(13)
    words = random_words(500, seed=13)
    index = rng.permutation(64 * 500)[:6000].astype(np.int64)
    index[100:104] = 64 * 9 + np.arange(4)
    action = rng.integers(0, 3, size=6000).astype(np.uint8)
    got = words.copy()
    counts = apply_persistent_(got, index, action, distinct=True)
    want, want_counts = apply_persistent_reference(words, index, action)
    np.testing.assert_array_equal(got, want)
    assert counts == want_counts


@pytest.mark.parametrize(("bits_per_cell", "codes"), [(2, GRAY2), (3, GRAY3)])
def test_set_levels_distinct_applies_an_unsorted_list_as_the_reference(
        bits_per_cell: int, codes: np.ndarray) -> None:
    rng = np.random.default_rng(14)
    words = random_words(40, seed=14)
    index = rng.permutation(64 * 40 // bits_per_cell)[:500].astype(np.int64)
    level = rng.integers(0, 1 << bits_per_cell, size=500).astype(np.uint8)
    got = words.copy()
    counts = set_levels_(got, bits_per_cell, index, level, codes, distinct=True)
    want, want_counts = set_levels_reference(words, bits_per_cell, index, level, codes)
    np.testing.assert_array_equal(got, want)
    assert counts == want_counts


def test_apply_persistent_order_of_duplicates_and_counts() -> None:
    words = np.zeros(2, np.uint64)
    counts = apply_persistent_(
        words,
        np.array([70, 3, 70, 5, 5], np.int64),
        np.array([1, 2, 0, 2, 2], np.uint8),
    )
    # bit 70: set then cleared -> 0 (no change); bit 3 flipped -> 1; bit 5 flipped twice -> 0.
    assert words.tolist() == [1 << 3, 0]
    assert counts == FlipCounts(1, 0, 2, 1)
    words[:] = np.uint64(2**64 - 1)
    counts = apply_persistent_(words, np.array([64, 0]), np.array([0, 1], np.uint8))
    assert words.tolist() == [2**64 - 1, 2**64 - 2]
    assert counts == FlipCounts(0, 1, 2, 1)


def test_apply_persistent_empty() -> None:
    words = random_words(2)
    got = words.copy()
    empty_index = np.array([], np.int64)
    assert apply_persistent_(got, empty_index, np.array([], np.uint8)) == FlipCounts(0, 0)
    np.testing.assert_array_equal(got, words)


# --- set_levels_ -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits_per_cell", "codes"),
    [(1, np.array([0, 1], np.uint8)), (2, GRAY2), (3, GRAY3), (3, BINARY3)],
)
def test_set_levels_matches_reference(bits_per_cell: int, codes: np.ndarray) -> None:
    rng = np.random.default_rng(12)
    words = random_words(30, seed=12)
    n_cells = 64 * 30 // bits_per_cell
    index = rng.integers(0, n_cells, size=800).astype(np.int64)
    level = rng.integers(0, 1 << bits_per_cell, size=800).astype(np.uint8)
    got = words.copy()
    counts = set_levels_(got, bits_per_cell, index, level, codes)
    want, want_counts = set_levels_reference(words, bits_per_cell, index, level, codes)
    np.testing.assert_array_equal(got, want)
    assert counts == want_counts
    assert counts.stuck_cells == 800


def test_set_levels_straddling_cell() -> None:
    # b = 3: cell 21 holds stream bits 63, 64, 65 (word 0 bit 63, word 1 bits 0 and 1).
    words = np.zeros(2, np.uint64)
    counts = set_levels_(words, 3, np.array([21]), np.array([7], np.uint8), BINARY3)
    assert words.tolist() == [1 << 63, 0b11]
    assert counts == FlipCounts(3, 0, 1, 1)
    counts = set_levels_(words, 3, np.array([21]), np.array([2], np.uint8), BINARY3)
    assert words.tolist() == [0, 0b01]
    assert counts == FlipCounts(0, 2, 1, 1)


# --- flip_levels_ ------------------------------------------------------------------------


def certain_matrix(n_levels: int, moves: dict[int, int]) -> np.ndarray:
    m = np.eye(n_levels)
    for src, dst in moves.items():
        m[src, src] = 0.0
        m[src, dst] = 1.0
    return m


@pytest.mark.parametrize(
    ("bits_per_cell", "codes", "moves"),
    [
        (1, np.array([0, 1], np.uint8), {0: 1}),
        (2, GRAY2, {1: 3}),
        (2, GRAY2, {0: 2, 3: 0}),
        (3, BINARY3, {5: 2}),
        (3, GRAY3, {0: 7, 7: 0, 3: 4}),
    ],
)
def test_flip_levels_certain_transitions_match_reference(
    bits_per_cell: int, codes: np.ndarray, moves: dict[int, int]
) -> None:
    words = random_words(50, seed=13)
    n_levels = 1 << bits_per_cell
    for n_cells in (0, 1, 21, 22, 64 * 50 // bits_per_cell - 1, 64 * 50 // bits_per_cell):
        matrix = certain_matrix(n_levels, moves)
        got = words.copy()
        counts = flip_levels_(
            got, n_cells, bits_per_cell, codes, inverse(codes), matrix, seed=4, chunk_cells=64
        )
        want, want_counts = flip_levels_reference(
            words, n_cells, bits_per_cell, codes, inverse(codes), matrix, np.random.default_rng(0)
        )
        np.testing.assert_array_equal(got, want)
        assert counts == want_counts


@pytest.mark.parametrize(("bits_per_cell", "codes"), [(2, GRAY2), (3, BINARY3)])
def test_flip_levels_identity_changes_nothing(bits_per_cell: int, codes: np.ndarray) -> None:
    words = random_words(20, seed=14)
    got = words.copy()
    counts = flip_levels_(
        got,
        64 * 20 // bits_per_cell,
        bits_per_cell,
        codes,
        inverse(codes),
        np.eye(1 << bits_per_cell),
        seed=1,
    )
    assert counts == FlipCounts(0, 0)
    np.testing.assert_array_equal(got, words)


def test_flip_levels_straddling_cells_b3() -> None:
    # Every cell at level 0 (code 0) moves to level 7 (code 7); cells 21 and 42 straddle words.
    words = np.zeros(3, np.uint64)
    counts = flip_levels_(words, 64, 3, BINARY3, BINARY3, certain_matrix(8, {0: 7}), seed=0)
    assert words.tolist() == [2**64 - 1, 2**64 - 1, 2**64 - 1]
    assert counts == FlipCounts(192, 0, 0, 64)
    # 22 cells = 66 bits: bits 66.. stay untouched.
    words = np.zeros(3, np.uint64)
    flip_levels_(words, 22, 3, BINARY3, BINARY3, certain_matrix(8, {0: 7}), seed=0)
    assert words.tolist() == [2**64 - 1, 0b11, 0]


@pytest.mark.parametrize(("bits_per_cell", "codes"), [(2, GRAY2), (3, GRAY3)])
def test_flip_levels_counts_padding_and_reproducibility(
    threads: Callable[[int], None], bits_per_cell: int, codes: np.ndarray
) -> None:
    n_levels = 1 << bits_per_cell
    matrix = np.full((n_levels, n_levels), 0.3 / (n_levels - 1))
    np.fill_diagonal(matrix, 0.7)
    words = random_words(1 << 14, seed=15)
    n_cells = (64 * len(words)) // bits_per_cell - 5
    results = []
    for n_threads in (1, 2):
        threads(n_threads)
        got = words.copy()
        counts = flip_levels_(got, n_cells, bits_per_cell, codes, inverse(codes), matrix, 99)
        results.append((got, counts))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    got, counts = results[0]
    assert (counts.zero_to_one, counts.one_to_zero) == diff_counts(words, got)
    old = cell_codes(words, n_cells, bits_per_cell)
    new = cell_codes(got, n_cells, bits_per_cell)
    assert counts.cells_changed == int(np.count_nonzero(old != new))
    np.testing.assert_array_equal(
        unpack_bits(words)[n_cells * bits_per_cell :], unpack_bits(got)[n_cells * bits_per_cell :]
    )
    other = words.copy()
    flip_levels_(other, n_cells, bits_per_cell, codes, inverse(codes), matrix, 100)
    assert not np.array_equal(other, got)


# --- argument validation -----------------------------------------------------------------


def _words(n: int = 4) -> np.ndarray:
    return np.zeros(n, np.uint64)


FLIP_BITS_BAD: list[tuple[dict[str, Any], str]] = [
    ({"words": np.zeros(4, np.int64)}, "dtype uint64"),
    ({"words": [0, 1]}, "numpy array"),
    ({"words": np.zeros((2, 2), np.uint64)}, "1-D"),
    ({"words": np.zeros(8, np.uint64)[::2]}, "C-contiguous"),
    ({"n_bits": 257}, "n_bits"),
    ({"n_bits": -1}, "n_bits"),
    ({"n_bits": 1.5}, "n_bits: expected an integer"),
    ({"p_zero_to_one": 1.5}, "p_zero_to_one"),
    ({"p_one_to_zero": -0.1}, "p_one_to_zero"),
    ({"p_one_to_zero": float("nan")}, "p_one_to_zero"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"factor_sigma": -0.5}, "factor_sigma"),
    ({"factor_sigma": float("inf")}, "factor_sigma"),
    ({"factor_seed": -3}, "factor_seed"),
    ({"chunk_bits": 100}, "chunk_bits"),
    ({"chunk_bits": 0}, "chunk_bits"),
]


@pytest.mark.parametrize(("change", "message"), FLIP_BITS_BAD)
def test_flip_bits_rejects_bad_arguments(change: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "words": _words(),
        "n_bits": 256,
        "p_zero_to_one": 0.1,
        "p_one_to_zero": 0.1,
        "seed": 1,
    }
    args.update(change)
    with pytest.raises(ValueError, match=message) as info:
        flip_bits_(**args)
    assert "\n" not in str(info.value)


def test_flip_bits_rejects_read_only_words() -> None:
    words = _words()
    words.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        flip_bits_(words, 10, 0.1, 0.1, 1)


def test_flip_bits_accepts_extreme_seeds() -> None:
    for seed in (0, 2**64 - 1, np.uint64(2**64 - 1), np.int64(5)):
        flip_bits_(_words(), 256, 0.1, 0.1, seed, factor_sigma=0.1, factor_seed=seed)


@pytest.mark.parametrize(
    ("index", "action", "message"),
    [
        (np.array([256]), np.array([0], np.uint8), "bit_index"),
        (np.array([-1]), np.array([0], np.uint8), "bit_index"),
        (np.array([1, 2]), np.array([0], np.uint8), "equal lengths"),
        (np.array([1]), np.array([3], np.uint8), "action"),
        (np.array([1.0]), np.array([0], np.uint8), "integer array"),
        (np.array([[1]]), np.array([0], np.uint8), "1-D"),
    ],
)
def test_apply_persistent_rejects_bad_arguments(
    index: np.ndarray, action: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        apply_persistent_(_words(), index, action)


def _level_args(**change: Any) -> dict[str, Any]:
    matrix = np.full((4, 4), 0.1)
    np.fill_diagonal(matrix, 0.7)
    args: dict[str, Any] = {
        "words": _words(),
        "n_cells": 128,
        "bits_per_cell": 2,
        "level_to_code": GRAY2,
        "code_to_level": inverse(GRAY2),
        "matrix": matrix,
        "seed": 1,
    }
    args.update(change)
    return args


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_cells": 129}, "n_cells"),
        ({"bits_per_cell": 0}, "bits_per_cell"),
        ({"bits_per_cell": 9}, "bits_per_cell"),
        ({"level_to_code": np.array([0, 1, 1, 2], np.uint8)}, "permutation"),
        ({"code_to_level": np.array([1, 0, 2, 3], np.uint8)}, "inverse"),
        ({"matrix": np.eye(3)}, "shape"),
        ({"matrix": np.eye(4) * 0.9}, "row 0 sums"),
        ({"matrix": np.eye(4) * 2 - 0.25}, "probabilities"),
        ({"seed": -2}, "seed"),
        ({"chunk_cells": 96}, "chunk_cells"),
    ],
)
def test_flip_levels_rejects_bad_arguments(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flip_levels_(**_level_args(**change))


@pytest.mark.parametrize(
    ("index", "level", "message"),
    [
        (np.array([128]), np.array([0], np.uint8), "cell_index"),
        (np.array([0]), np.array([4], np.uint8), "level"),
        (np.array([0, 1]), np.array([0], np.uint8), "equal lengths"),
    ],
)
def test_set_levels_rejects_bad_arguments(
    index: np.ndarray, level: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        set_levels_(_words(), 2, index, level, GRAY2)


@pytest.mark.parametrize("sigma", [0.0, 0.5])
@pytest.mark.parametrize("p", [0.0, 1e-3, 0.3])
def test_flip_bits_from_a_source_equals_copy_then_flip(sigma: float, p: float) -> None:
    rng = np.random.default_rng(4)
    original = rng.integers(0, 1 << 63, size=5000, dtype=np.uint64)
    original.setflags(write=False)
    n_bits = 64 * 4990 - 7  # padding and a few words past the stream
    copied = np.array(original)
    copied[-(-n_bits // 64) - 1] &= np.uint64((1 << (n_bits % 64)) - 1)
    source = copied.copy()
    source.setflags(write=False)
    a = copied.copy()
    ca = flip_bits_(a, n_bits, p, 2 * p / 3, 9, factor_sigma=sigma, factor_seed=3,
                    chunk_bits=1 << 14)
    b = np.full_like(a, 0xDEADBEEF)
    cb = flip_bits_(b, n_bits, p, 2 * p / 3, 9, factor_sigma=sigma, factor_seed=3,
                    chunk_bits=1 << 14, source=source)
    assert ca == cb and np.array_equal(a, b)
    with pytest.raises(ValueError, match="source"):
        flip_bits_(b, n_bits, p, p, 9, source=b)
    with pytest.raises(ValueError, match="source"):
        flip_bits_(b, n_bits, p, p, 9, source=source[:-1])


@pytest.mark.parametrize(("bits_per_cell", "codes"), [(2, GRAY2), (3, GRAY3)])
@pytest.mark.parametrize("p", [0.0, 1e-3, 0.3])
def test_flip_levels_from_a_source_equals_copy_then_flip(
        threads: Callable[[int], None], bits_per_cell: int, codes: np.ndarray, p: float) -> None:
    n_levels = 1 << bits_per_cell
    matrix = np.full((n_levels, n_levels), p / (n_levels - 1))
    np.fill_diagonal(matrix, 1.0 - p)
    source = random_words(5000, seed=21)
    source.setflags(write=False)
    n_cells = (64 * 4990) // bits_per_cell - 3  # a few words past the cells
    for n_threads in (1, 2):
        threads(n_threads)
        a = source.copy()
        ca = flip_levels_(a, n_cells, bits_per_cell, codes, inverse(codes), matrix, 5,
                          chunk_cells=1 << 12)
        b = np.full_like(a, 0xDEADBEEF)
        cb = flip_levels_(b, n_cells, bits_per_cell, codes, inverse(codes), matrix, 5,
                          chunk_cells=1 << 12, source=source)
        assert ca == cb and np.array_equal(a, b)
    with pytest.raises(ValueError, match="source"):
        flip_levels_(b, n_cells, bits_per_cell, codes, inverse(codes), matrix, 5, source=b)


# --- sort_by_score_ -------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-3, 3), max_size=300), st.integers(0, 2**32 - 1))
def test_sort_by_score_orders_pairs_as_lexsort(ties: list[int], seed: int) -> None:
    # few distinct scores (many ties, broken by index) or continuous ones, any input order
    rng = np.random.default_rng(seed)
    n = len(ties)
    score = (np.array(ties, np.float64) if seed % 2 else rng.standard_normal(n))
    index = rng.permutation(10 * n + 1)[:n].astype(np.int64)
    order = np.lexsort((index, score))
    want_index, want_score = index[order], score[order]
    sort_by_score_(score, index)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(score, want_score)


def test_sort_by_score_large_sorted_reversed_and_constant() -> None:
    rng = np.random.default_rng(4)
    for score in (np.arange(20000.0), np.arange(20000.0)[::-1].copy(), np.zeros(20000)):
        index = rng.permutation(20000).astype(np.int64)
        order = np.lexsort((index, score))
        want = index[order]
        sort_by_score_(score, index)
        np.testing.assert_array_equal(index, want)
