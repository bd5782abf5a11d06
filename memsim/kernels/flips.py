"""Fault kernels over packed bit streams: transient flips, persistent faults, multi-level cells.

A stream of `n_bits` bits is packed into a 1-D C-contiguous `np.uint64` array: stream bit k is
bit `k % 64` of word `k // 64` (bits at and past `n_bits` are padding and never touched). A
multi-level memory with `b` bits per cell keeps cell j's code in stream bits `[j·b, (j+1)·b)`,
least significant bit first; with b = 3 a cell may straddle two words.

Every public function here ends in `_` and changes the array it is given **in place**; a
caller that wants to keep its image passes a copy (`words.copy()`, or `np.copyto` into a
reused buffer). Each returns a `FlipCounts`. The wrappers validate their arguments and raise
`ValueError` with a one-line message; the work is done by private jitted kernels.

Randomness and reproducibility
------------------------------
The caller passes explicit integer seeds in [0, 2^64) (numba's and numpy's global generators
are never used). The stream is cut into fixed chunks (`chunk_bits`, default 2^20 bits, for
multi-level cells `chunk_cells`, default 2^16 cells); both are multiples of 64 bits, so every
chunk owns whole words and chunks can be processed in parallel without sharing a word. Chunk c
draws from its own generator, seeded by `stream_seed(seed, c)` (see `memsim.kernels.rng`), and
writes its counts into its own row of an array summed afterwards. The result is therefore
bit-identical for the same seeds whatever `numba.set_num_threads(...)` is, but it **does
depend on the chunk size**: the defaults are part of the contract, so keep them fixed when
results must be reproduced.

Cost grows with the number of flips, not of bits: the kernels skip-sample candidates with
geometric gaps `floor(log(u) / log1p(-p_bound))` at a bounding rate and accept each candidate
with `p_actual / p_bound` (thinning). Each bit (cell) is visited at most once per call, so
every decision reads the original stored value, and the order of the decisions does not
matter. The kernels draw candidates in batches and decide them without branches on random
data (where a mispredicted branch cost more than the rest of a candidate), but make exactly
the draws and decisions of a one-by-one loop: per candidate a gap draw, then its thinning
draw (`tests/test_kernels.py` checks this against such a loop).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray
from scipy.special import log_ndtr, ndtr

from memsim.kernels.rng import (
    UINT64_LIMIT,
    cell_uniform,
    jit,
    jit_parallel,
    next_uniform,
    serial,
    skip_ahead,
    standard_normal_from_uniform,
    stream_seed,
    uniform_ahead,
)

DEFAULT_CHUNK_BITS = 1 << 20
"""Bits per chunk of `flip_bits_` (a multiple of 64); results depend on it, keep it fixed."""

DEFAULT_CHUNK_CELLS = 1 << 16
"""Cells per chunk of `flip_levels_` (a multiple of 64); results depend on it, keep it fixed."""

_COPY_BITS = 1 << 21
"""Bits a fused read copies at a time (`flip_levels_` groups its chunks to about this); no
effect on results."""

FACTOR_Z_CAP_MIN = 6.0
"""Smallest truncation point (in standard deviations of log f) of the lognormal cell factor."""

FACTOR_TRUNCATION_TOLERANCE = 1e-8
"""Largest relative change of the factor's mean caused by its truncation."""

MAX_FACTOR_SIGMA = 10.0
"""Largest accepted `factor_sigma` (the log-sd of the cell factor)."""

MAX_BITS_PER_CELL = 8

_ONE = np.uint64(1)

# Domain tags mixed into the caller's seed so that one seed given to two different kernels
# does not make their draws coincide.
_TAG_BITS = np.uint64(0x243F6A8885A308D3)
_TAG_LEVELS = np.uint64(0x13198A2E03707344)


@dataclass(frozen=True)
class FlipCounts:
    """What a kernel changed.

    Attributes:
        zero_to_one: stream bits that were 0 before the call and are 1 after it.
        one_to_zero: stream bits that were 1 before the call and are 0 after it.
        stuck_cells: cells the call pinned to a value (stuck-at actions, `set_levels_` entries),
            whether or not their content changed.
        cells_changed: cells whose content differs after the call (for one-bit cells, the
            number of changed bits).
    """

    zero_to_one: int
    one_to_zero: int
    stuck_cells: int = 0
    cells_changed: int = 0

    @property
    def bits_changed(self) -> int:
        """All changed bits, `zero_to_one + one_to_zero`."""
        return self.zero_to_one + self.one_to_zero

    def __add__(self, other: FlipCounts) -> FlipCounts:
        if not isinstance(other, FlipCounts):
            return NotImplemented
        return FlipCounts(
            self.zero_to_one + other.zero_to_one,
            self.one_to_zero + other.one_to_zero,
            self.stuck_cells + other.stuck_cells,
            self.cells_changed + other.cells_changed,
        )


# --------------------------------------------------------------------------------------------
# Lognormal cell factor: truncation


def factor_truncation_loss(sigma: float, z_cap: float) -> float:
    """Relative loss of the mean of f = exp(σz − σ²/2) when f is capped at exp(σ·z_cap − σ²/2).

    `E[f] − E[min(f, f_cap)] = Φ(σ − z_cap) − f_cap·Φ(−z_cap)` (E[f] = 1), computed in log space.
    """
    if sigma <= 0.0:
        return 0.0
    above = math.exp(float(log_ndtr(sigma - z_cap)))
    capped = math.exp(sigma * z_cap - 0.5 * sigma * sigma + float(log_ndtr(-z_cap)))
    return max(above - capped, 0.0)


def factor_cap(sigma: float) -> tuple[float, float]:
    """`(z_cap, f_cap)`: where the lognormal cell factor of log-sd `sigma` is truncated.

    `z_cap` is the smallest value ≥ `FACTOR_Z_CAP_MIN` (6) for which the truncation changes the
    factor's mean by at most `FACTOR_TRUNCATION_TOLERANCE` (1e-8) relative; `z_cap` = 6 for
    σ ≲ 0.75 and grows slowly beyond (σ = 1: 6.3, σ = 2: 7.4). `f_cap = exp(σ·z_cap − σ²/2)`.
    Truncation matters only where `p·f_cap < 1`; above it `min(1, p·f)` saturates anyway.
    """
    if sigma <= 0.0:
        return FACTOR_Z_CAP_MIN, 1.0
    lo = FACTOR_Z_CAP_MIN
    if factor_truncation_loss(sigma, lo) > FACTOR_TRUNCATION_TOLERANCE:
        hi = sigma + 7.0  # loss < Φ(-7) ≈ 1.3e-12 there
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if factor_truncation_loss(sigma, mid) > FACTOR_TRUNCATION_TOLERANCE:
                lo = mid
            else:
                hi = mid
        lo = hi
    return lo, math.exp(sigma * lo - 0.5 * sigma * sigma)


_QUICK_BUCKETS = 1024


@lru_cache(maxsize=64)
def _factor_quick_table(
    p01: float, p10: float, sigma: float, log_f_cap: float
) -> NDArray[np.float64]:
    """`T[k, 2b]`, `T[k, 2b + 1]`: cell uniforms below / above which a candidate holding `b`
    with its thinning uniform v in bucket k (`k/K ≤ v < (k+1)/K`) is certainly rejected /
    accepted; between the two the kernel takes the exact test.

    A candidate holding b is accepted iff `v·p_bound < min(1, p_b·f_i)` with
    `f_i = min(exp(σz_i − σ²/2), exp(log_f_cap))`, `p_bound = min(1, max(p01, p10)·f_cap)`.
    For `v ≥ v_k = k/K` that needs `f_i > c_k = v_k·p_bound/p_b`, i.e.
    `z_i > t_k = (ln c_k + σ²/2)/σ`, i.e. `u_i > Φ(t_k)`: below `Φ(t_k)` it is rejected. For
    `v < v_{k+1}` it holds once `z_i > t_{k+1}` while `c_{k+1}` stays under the cap: above
    `Φ(t_{k+1})` it is accepted (a bucket whose `c_{k+1}` reaches the cap accepts nothing
    quickly). Each bound is moved outwards by a margin (1e-10 + 1e-12/σ) far larger than the
    rounding of the exact test, so the quick decisions never contradict it; about 1/K of the
    candidates fall between the bounds. -1 / 2: never reject / accept quickly.
    """
    table = np.empty((_QUICK_BUCKETS, 4))
    table[:, 0::2] = -1.0
    table[:, 1::2] = 2.0
    if sigma <= 0.0:
        return table
    p_bound = min(1.0, max(p01, p10) * math.exp(log_f_cap))
    half_var = 0.5 * sigma * sigma
    margin = 1e-10 + 1e-12 / sigma
    v_k = np.arange(_QUICK_BUCKETS + 1, dtype=np.float64) / _QUICK_BUCKETS
    for b, p in enumerate((p01, p10)):
        if p <= 0.0:
            table[:, 2 * b] = 2.0  # p = 0: every candidate holding b is rejected
            continue
        with np.errstate(divide="ignore"):
            log_c = np.log(v_k * p_bound / p)
        t_k = (log_c + half_var) / sigma
        table[:, 2 * b] = ndtr(t_k[:-1]) - margin
        hi = ndtr(t_k[1:]) + margin
        # at or near the cap the capped factor may not exceed c: no quick acceptance there
        table[:, 2 * b + 1] = np.where(log_c[1:] < log_f_cap - 1e-9, hi, 2.0)
    return table


@lru_cache(maxsize=64)
def _factor_quick_table32(
    p01: float, p10: float, sigma: float, log_f_cap: float
) -> NDArray[np.float32]:
    """`_factor_quick_table` in float32, each bound rounded outwards (lower bounds down, upper
    bounds up), so it decides quickly only what the float64 table does: the same decisions.
    Half the bytes: the kernel reads one row per candidate at random, and the float64 table
    (32 KiB) filled the first-level cache."""
    table = _factor_quick_table(p01, p10, sigma, log_f_cap)
    small = table.astype(np.float32)
    wide = small.astype(np.float64)
    lower = np.zeros(table.shape, bool)
    lower[:, 0::2] = True
    down = lower & (wide > table)
    up = ~lower & (wide < table)
    small[down] = np.nextafter(small[down], np.float32(-np.inf))
    small[up] = np.nextafter(small[up], np.float32(np.inf))
    return small


# --------------------------------------------------------------------------------------------
# Jitted kernels (private; arguments already validated and typed)


@jit
def popcount64(x: np.uint64) -> int:
    """Set bits of a word in a constant number of operations (for dense words; `_popcount`
    loops once per set bit, for the few bits of a cell)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@jit
def _popcount(x: np.uint64) -> int:
    n = 0
    while x:
        x &= x - _ONE
        n += 1
    return n


@jit
def _next_candidate(state: np.uint64, pos: int, end: int, every: bool,
                    log_q: float) -> tuple[np.uint64, int]:
    """The next candidate after `pos` below `end` (a geometric gap of rate 1 − exp(log_q), or
    the next index when `every`), or `end` when there is none."""
    if every:
        return state, pos + 1
    state, u = next_uniform(state)
    gap = math.log(u) / log_q  # ≥ 0; may be huge (or inf) for a tiny rate
    if gap >= end - pos - 1:
        return state, end
    return state, pos + 1 + int(gap)


_BATCH = 128
"""Most candidates a factor pass draws before deciding them (see `_factor_batch`); fewer near
a range's end (`_draw_candidates`). 128: fewer calls per chunk than 64 (a chunk's main pass
has ~330 candidates at BER 1e-4), as fast or slightly faster."""

_GAP_LIMIT = float(1 << 62)
"""Gaps are kept as integers, clipped here: far beyond any chunk."""

_LOG_TABLE_BITS = 7
_LOG_SHIFT = np.uint64(52 - _LOG_TABLE_BITS)
_LOG_C = 1.0 / (1.0 + (np.arange(1 << _LOG_TABLE_BITS) + 0.5) / (1 << _LOG_TABLE_BITS))
"""`_gaps`' log: the mantissa m in [1, 2) of a uniform is scaled by `_LOG_C[j]` (j: its top
bits) to within 1/256 of 1, and `log m = log(m·c_j) − log c_j`."""
_LOG_MINUS_LOG_C = -np.log(_LOG_C)
_MANTISSA = np.uint64((1 << 52) - 1)
_S52 = np.uint64(52)
_LN2 = math.log(2.0)
_TWO_M52 = 2.0**-52
_GAP_TOLERANCE = 1e-9
"""Relative distance from an integer under which `_gaps` leaves a gap to the exact log."""
_LOG_TOLERANCE = 1e-12
"""Absolute error of `_gaps`' log that its tolerance allows for (measured: < 1e-14)."""


@jit
def _gaps(u: NDArray[np.float64], inv_log_q: float, tol: float,
          gap: NDArray[np.int64]) -> int:
    """`gap[i] = floor(log(u[i]) / log_q)` for uniforms `u[i]` in (0, 1), or −1 where this
    cheaper log cannot vouch for the floor; returns the number of −1s.

    numba's `math.log` is a scalar library call (~4 ns, most of a candidate's draws); this
    log (exponent, table, degree-6 series of log1p on |r| < 1/256) vectorises, and is within
    ~5e-16·|log u| + 3e-16 of the library's (measured over 5e7 uniforms of all exponents).
    Its quotient q (by the multiplication with `inv_log_q = 1/log_q`) is then within
    `_GAP_TOLERANCE`·q + `tol` (`tol = _LOG_TOLERANCE/|log_q|`) of the exact quotient, by
    far: where q's fractional part lies farther than that from 0 and 1, both floors agree;
    elsewhere (~2e-9·q of the gaps) the caller takes the exact log.
    """
    bits = u.view(np.uint64)
    n_unsure = 0
    for i in range(u.shape[0]):
        b = bits[i]
        e = float(np.int64(b >> _S52) - 1023)
        mantissa = b & _MANTISSA
        j = np.int64(mantissa >> _LOG_SHIFT)
        r = (1.0 + float(np.int64(mantissa)) * _TWO_M52) * _LOG_C[j] - 1.0
        log1p_r = r * (1.0 + r * (-0.5 + r * (1.0 / 3.0 + r * (-0.25 + r * (0.2 + r * (
            -1.0 / 6.0))))))
        q = (e * _LN2 + (_LOG_MINUS_LOG_C[j] + log1p_r)) * inv_log_q
        f = np.floor(q)
        frac = q - f
        margin = _GAP_TOLERANCE * abs(q) + tol
        # not sure also where q is huge, inf or nan (then no comparison holds)
        sure = (frac > margin) & (frac < 1.0 - margin) & (q < _GAP_LIMIT)
        gap[i] = np.int64(f) if sure else -1
        n_unsure += not sure
    return n_unsure


@jit
def _draw_candidates(
    state: np.uint64,
    pos: int,
    end: int,
    every: bool,
    log_q: float,
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    cells: NDArray[np.int64],
) -> tuple[np.uint64, int, int, bool]:
    """Up to `len(cells)` next candidates after `pos` below `end` into `cells`, each with its
    thinning uniform in `v`: the draws of `_next_candidate` then `next_uniform` per candidate
    (the draw that finds no candidate left is only a gap draw), made as a batch so that the
    generator's arithmetic and the logs vectorise (`_gaps`). `u` is scratch. Returns (state,
    last position, number of candidates, whether the range is exhausted).

    A batch holds about 1.25 times the candidates the rest of the range is expected to have
    (+16), at most `len(cells)`: draws past the range's end are made in vain. The batches
    only group the one-by-one draws, so their sizes do not change the result."""
    n_max = cells.shape[0]
    if every:
        for i in range(n_max):
            if pos + 1 >= end:
                return state, end, i, True
            pos += 1
            state, x = next_uniform(state)
            v[i] = x
            cells[i] = pos
        return state, pos, n_max, False
    n = min(n_max, int(min(-1.25 * math.expm1(log_q) * (end - pos - 1), _GAP_LIMIT)) + 16)
    for i in range(n):
        u[i] = uniform_ahead(state, 2 * i + 1)
        v[i] = uniform_ahead(state, 2 * i + 2)
    inv_log_q = 1.0 / log_q
    if _gaps(u[:n], inv_log_q, _LOG_TOLERANCE * abs(inv_log_q), cells):
        for i in range(n):
            if cells[i] < 0:
                cells[i] = int(min(math.log(u[i]) / log_q, _GAP_LIMIT))  # as _next_candidate
    for i in range(n):
        # an integer gap g and `end − pos − 1` compare as the float gap of `_next_candidate`
        # would (floor(x) ≥ k ⟺ x ≥ k for an integer k)
        gap = cells[i]
        if gap >= end - pos - 1:
            return skip_ahead(state, 2 * i + 1), end, i, True
        pos = pos + 1 + gap
        cells[i] = pos
    return skip_ahead(state, 2 * n), pos, n, False


@jit
def _factor_batch(
    words: NDArray[np.uint64],
    n: int,
    cells: NDArray[np.int64],
    v: NDArray[np.float64],
    u: NDArray[np.float64],
    factor_seed: np.uint64,
    quick: NDArray[np.floating[Any]],
    u_limit: float,
    p_of_bit: NDArray[np.float64],
    sigma: float,
    log_f_cap: float,
    p_bound: float,
    unsure: NDArray[np.int64],
) -> tuple[np.uint64, np.uint64]:
    """Decide the first `n` candidates (distinct cells, thinning uniforms) of a factor pass:
    flip cell i where `v_i·p_bound < min(1, p_b·f_i)`, f_i capped at `exp(log_f_cap)`, and
    never where its cell uniform exceeds `u_limit` (a weak cell, left to the list). Returns
    (flips, flips of stored ones). `u` and `unsure` are scratch.

    The cell uniforms are hashed first, in a loop that vectorises. The `quick` table
    (`_factor_quick_table`, or its float32 copy `_factor_quick_table32`) gives, per stored
    value and bucket of v, the cell uniforms below which the factor is certainly too small and
    above which it is certainly large enough: all but about 1/1024 of the candidates are
    decided without Φ⁻¹ and exp, and without a branch on random data (a masked xor). The
    others' indices are collected in `unsure` (one store a candidate; storing the cell, v and
    u there cost ~1.5 % of a 64 MiB read) and take the exact test after the loop (a rare
    branch to Φ⁻¹ inside it made every candidate ~40 % slower). Each cell is visited once, so
    the order of the flips does not matter: the decisions are the exact test's for every
    candidate.
    """
    for i in range(n):
        u[i] = cell_uniform(factor_seed, cells[i])
    n_flips = np.uint64(0)
    n_ones = np.uint64(0)
    n_buckets = quick.shape[0]
    n_d = 0
    for i in range(n):
        cell = cells[i]
        u_cell = u[i]
        w = cell >> 6
        shift = np.uint64(cell & 63)
        word = words[w]
        bit = (word >> shift) & _ONE
        col = 2 * int(bit)
        bucket = int(v[i] * n_buckets)
        lo = quick[bucket, col]
        hi = quick[bucket, col + 1]
        strong = u_cell <= u_limit
        unsure[n_d] = i
        n_d += strong & (u_cell >= lo) & (u_cell <= hi)
        a = np.uint64(strong & (u_cell > hi))
        words[w] = word ^ (a << shift)
        n_flips += a
        n_ones += bit & a
    half_var = 0.5 * sigma * sigma
    for k in range(n_d):
        i = unsure[k]
        cell = cells[i]
        w = cell >> 6
        shift = np.uint64(cell & 63)
        word = words[w]
        bit = (word >> shift) & _ONE
        z = standard_normal_from_uniform(u[i])
        p = min(1.0, p_of_bit[bit] * math.exp(min(sigma * z - half_var, log_f_cap)))
        a = np.uint64(v[i] * p_bound < p)
        words[w] = word ^ (a << shift)
        n_flips += a
        n_ones += bit & a
    return n_flips, n_ones


_PLAIN_DRAWS = 256
"""Most draws a plain flip pass makes at once (see `_plain_flips`)."""


@jit
def _plain_flips(
    words: NDArray[np.uint64],
    state: np.uint64,
    start: int,
    end: int,
    p_of_bit: NDArray[np.float64],
    p_bound: float,
    log_q: float,
    u: NDArray[np.float64],
    gap: NDArray[np.int64],
) -> tuple[np.uint64, np.uint64]:
    """Flips without factors of stream bits [start, end) from generator `state` (p_bound < 1):
    the draws and decisions of `_next_candidate`, then a thinning uniform where the stored
    value's rate is below the bound. Returns (flips, flips of stored ones); `u`, `gap`
    are scratch (at least `_PLAIN_DRAWS` long).

    Whether a candidate takes a thinning draw depends on the bit it lands on, so the next
    candidate's draw is known only then: drawn one by one, each candidate waited for a whole
    chain of generator, log, division, load and compare. Here a batch of draws is made first
    (vectorised) with each one's gap `floor(log(u)/log q)` (which a thinning draw does not
    need: a log spent in vain, but off the chain), and the candidates then walk it: the chain
    is a load and a compare. `gap ≥ end − pos − 1` is tested on the integer gap, the same test
    for an integer right side. The flips are those of the one-by-one loop.
    """
    n_flips = np.uint64(0)
    n_ones = np.uint64(0)
    pos = start - 1
    while True:
        # about twice the draws the rest of the range is expected to need (at most 2 per
        # candidate), so that little is drawn in vain at its end
        expected = (end - pos) * p_bound
        n_u = min(_PLAIN_DRAWS, int(2.0 * expected) + 16)
        for k in range(n_u):
            u[k] = uniform_ahead(state, k + 1)
        for k in range(n_u):
            gap[k] = int(min(math.log(u[k]) / log_q, _GAP_LIMIT))
        k = 0
        while k < n_u - 1:  # a candidate takes one or two draws
            g = gap[k]
            k += 1
            if g >= end - pos - 1:
                return n_flips, n_ones
            pos = pos + 1 + g
            w = pos >> 6
            shift = np.uint64(pos & 63)
            word = words[w]
            bit = (word >> shift) & _ONE
            p = p_of_bit[bit]
            # thinned only where p < p_bound (where p = p_bound, v·p_bound < p holds anyway,
            # as v < 1): a select, not a branch on random data
            v = u[k]
            k += p < p_bound
            a = np.uint64(v * p_bound < p)
            words[w] = word ^ (a << shift)
            n_flips += a
            n_ones += bit & a
        state = skip_ahead(state, k)


@jit_parallel
def _flip_bits_kernel(
    words: NDArray[np.uint64],
    n_bits: int,
    p01: float,
    p10: float,
    seed: np.uint64,
    sigma: float,
    factor_seed: np.uint64,
    log_f_cap: float,
    quick: NDArray[np.floating[Any]],
    chunk_bits: int,
    source: NDArray[np.uint64],
    copy_source: bool,
    weak_cells: NDArray[np.int64],
    weak_offsets: NDArray[np.int64],
    u_weak: float,
    log_f_weak_cap: float,
    quick_weak: NDArray[np.floating[Any]],
) -> NDArray[np.int64]:
    # With a weak-cell list (`weak_offsets` non-empty), `log_f_cap` is the split level f_t:
    # cells whose factor exceeds it (cell uniform > `u_weak`) are skipped by the main pass and
    # drawn from the list instead, against `log_f_weak_cap` (the true cap). `quick` and
    # `quick_weak` are the two passes' `_factor_quick_table`s (float32 copies from
    # `flip_bits_`, which decide the same).
    #
    # Every path makes the draws and the decisions of the one-by-one loop (per candidate: a
    # gap draw, then a thinning draw where one is needed), so the flips for a seed are the
    # same; they differ in how they get there (batches, tables, no branch on random data), for
    # speed.
    n_chunks = (n_bits + chunk_bits - 1) // chunk_bits
    counts = np.zeros((n_chunks, 2), np.int64)
    split = weak_offsets.shape[0] > 0
    p_bound = min(1.0, max(p01, p10) * math.exp(log_f_cap))
    p_weak = min(1.0, max(p01, p10) * math.exp(log_f_weak_cap))
    if p_bound <= 0.0 and not copy_source:
        return counts
    every_bit = p_bound >= 1.0
    log_q = 0.0 if every_bit else math.log1p(-p_bound)
    use_factor = sigma > 0.0
    p_of_bit = np.array([p01, p10])  # a load instead of a branch on random data
    # Chunks are copied in groups of about `_COPY_BITS` bits (see `_flip_levels_kernel`);
    # each chunk keeps its own generator, so the grouping does not change the result.
    chunks_per_group = max(1, _COPY_BITS // chunk_bits)
    n_groups = (n_chunks + chunks_per_group - 1) // chunks_per_group
    for g in prange(n_groups):
        c_first = g * chunks_per_group
        c_end = min(c_first + chunks_per_group, n_chunks)
        if copy_source:
            # the group's words are copied just before they are flipped, while they are in
            # cache: a read costs one pass over memory instead of two (a slice copy: an
            # element loop ran at 0.4x np.copyto's speed, the slice at 1.1-1.4x)
            first = (c_first * chunk_bits) >> 6
            last = (min(c_end * chunk_bits, n_bits) + 63) >> 6
            words[first:last] = source[first:last]
        if p_bound <= 0.0:
            continue
        # scratch of a factor pass's batches (`_draw_candidates`, `_factor_batch`) or of a
        # plain pass's draws (`_plain_flips`)
        batch = _BATCH if use_factor else 0
        g_cell = np.empty(batch, np.int64)
        g_v = np.empty(batch, np.float64)
        unsure = np.empty(batch, np.int64)
        g_u = np.empty(_BATCH if use_factor else _PLAIN_DRAWS, np.float64)
        g_gap = np.empty(0 if use_factor else _PLAIN_DRAWS, np.int64)
        for c in range(c_first, c_end):
            start = c * chunk_bits
            end = min(start + chunk_bits, n_bits)
            state = stream_seed(seed, c)
            pos = start - 1
            n_flips = np.uint64(0)
            n_ones = np.uint64(0)
            if use_factor:
                # Thinning with the cell's factor: accept iff v·p_bound < min(1, p·f_i), in
                # batches: drawn (`_draw_candidates`), then decided (`_factor_batch`). A weak
                # cell (u > u_weak; never without a list) is left to the list below.
                done = False
                while not done:
                    state, pos, n_g, done = _draw_candidates(state, pos, end, every_bit,
                                                             log_q, g_u, g_v, g_cell)
                    f, o = _factor_batch(words, n_g, g_cell, g_v, g_u, factor_seed, quick,
                                         u_weak, p_of_bit, sigma, log_f_cap, p_bound,
                                         unsure)
                    n_flips += f
                    n_ones += o
                if split and p_weak > 0.0:
                    # The weak cells of this chunk, skip-sampled along the list and thinned
                    # exactly, the same way. The list is far larger than the cache and its
                    # picks are sparse, each a miss to memory: a batch's entries are loaded in
                    # a loop of loads only, whose misses overlap (6-8x faster than loading
                    # each where it is drawn).
                    hi_j = weak_offsets[c + 1]
                    every_weak = p_weak >= 1.0
                    log_qw = 0.0 if every_weak else math.log1p(-p_weak)
                    j = weak_offsets[c] - 1
                    done = False
                    while not done:
                        state, j, n_g, done = _draw_candidates(state, j, hi_j, every_weak,
                                                               log_qw, g_u, g_v, g_cell)
                        for i in range(n_g):
                            g_cell[i] = weak_cells[g_cell[i]]
                        f, o = _factor_batch(words, n_g, g_cell, g_v, g_u, factor_seed,
                                             quick_weak, 2.0, p_of_bit, sigma,
                                             log_f_weak_cap, p_weak, unsure)
                        n_flips += f
                        n_ones += o
            elif not every_bit and min(p01, p10) >= p_bound:
                # p01 = p10: every candidate flips, without a thinning draw
                while True:
                    state, pos = _next_candidate(state, pos, end, False, log_q)
                    if pos >= end:
                        break
                    w = pos >> 6
                    shift = np.uint64(pos & 63)
                    word = words[w]
                    words[w] = word ^ (_ONE << shift)
                    n_flips += _ONE
                    n_ones += (word >> shift) & _ONE
            elif not every_bit:
                n_flips, n_ones = _plain_flips(words, state, start, end, p_of_bit, p_bound,
                                               log_q, g_u, g_gap)
            else:
                # p_bound = 1: every bit is a candidate, without a gap draw
                while True:
                    state, pos = _next_candidate(state, pos, end, every_bit, log_q)
                    if pos >= end:
                        break
                    w = pos >> 6
                    shift = np.uint64(pos & 63)
                    word = words[w]
                    bit = (word >> shift) & _ONE
                    p = p_of_bit[bit]
                    # thinned only where p < p_bound: the generator advances past v only
                    # then (where p = p_bound, v·p_bound < p holds anyway, as v < 1)
                    after, v = next_uniform(state)
                    state = after if p < p_bound else state
                    a = np.uint64(v * p_bound < p)
                    words[w] = word ^ (a << shift)
                    n_flips += a
                    n_ones += bit & a
            counts[c, 0] = np.int64(n_flips - n_ones)
            counts[c, 1] = np.int64(n_ones)
    return counts


@jit
def _level_batch(
    words: NDArray[np.uint64],
    n: int,
    cells: NDArray[np.int64],
    v: NDArray[np.float64],
    bits_per_cell: int,
    level_to_code: NDArray[np.uint8],
    code_to_level: NDArray[np.uint8],
    leave: NDArray[np.float64],
    cum: NDArray[np.float64],
    targets: NDArray[np.int64],
    rate_bound: float,
) -> tuple[np.uint64, np.uint64, np.uint64]:
    """Decide the first `n` candidate cells (distinct) of a level pass, each with its uniform
    v; returns (0→1 bits, 1→0 bits, changed cells).

    One uniform decides both: x = v·r < leave[level] accepts (probability leave/r), and given
    acceptance x is uniform on (0, leave[level]) and picks the target. No branch on random
    data (a mispredicted branch cost more than the rest of a candidate): a rejected candidate
    writes a zero difference, and the target index counts the cumulative bounds at or below x
    (the same index as searching the nondecreasing row up to the first bound above x).
    """
    b = np.uint64(bits_per_cell)
    mask = (_ONE << b) - _ONE
    n_targets = targets.shape[1]
    few_targets = n_targets <= 7  # up to 3 bits a cell: count all bounds, no early exit
    n01 = np.uint64(0)
    n10 = np.uint64(0)
    changed = np.uint64(0)
    for i in range(n):
        lo = cells[i] * bits_per_cell
        w = lo >> 6
        off = np.uint64(lo & 63)
        straddle = off + b > np.uint64(64)
        code = (words[w] >> off) & mask
        if straddle:
            code |= (words[w + 1] << (np.uint64(64) - off)) & mask
        level = code_to_level[code]
        x = v[i] * rate_bound
        accept = np.uint64(x < leave[level])
        k = 0
        if few_targets:
            for t in range(n_targets - 1):
                k += x >= cum[level, t]
        else:
            while k < n_targets - 1 and x >= cum[level, k]:
                k += 1
        new = np.uint64(level_to_code[targets[level, k]])
        diff = (code ^ new) & (np.uint64(0) - accept)
        words[w] ^= diff << off
        if straddle:
            words[w + 1] ^= diff >> (np.uint64(64) - off)
        n01 += popcount64(diff & new)
        n10 += popcount64(diff & code)
        changed += accept
    return n01, n10, changed


@jit_parallel
def _flip_levels_kernel(
    words: NDArray[np.uint64],
    n_cells: int,
    bits_per_cell: int,
    level_to_code: NDArray[np.uint8],
    code_to_level: NDArray[np.uint8],
    leave: NDArray[np.float64],
    cum: NDArray[np.float64],
    targets: NDArray[np.int64],
    rate_bound: float,
    seed: np.uint64,
    chunk_cells: int,
    source: NDArray[np.uint64],
    copy_source: bool,
) -> NDArray[np.int64]:
    n_chunks = (n_cells + chunk_cells - 1) // chunk_cells
    counts = np.zeros((n_chunks, 3), np.int64)
    if rate_bound <= 0.0 and not copy_source:
        return counts
    every_cell = rate_bound >= 1.0
    log_q = 0.0 if every_cell else math.log1p(-rate_bound)
    # Chunks are copied in groups of about `_COPY_BITS` bits: copying each small chunk just
    # before its flips restarted the memory stream thousands of times (2-bit cells: 16 KiB
    # chunks), which cost more than the flips at BER 1e-4. Each chunk keeps its own generator,
    # so the grouping (like the thread count) does not change the result.
    chunks_per_group = max(1, _COPY_BITS // (chunk_cells * bits_per_cell))
    n_groups = (n_chunks + chunks_per_group - 1) // chunks_per_group
    for g in prange(n_groups):
        c_first = g * chunks_per_group
        c_end = min(c_first + chunks_per_group, n_chunks)
        if copy_source:
            # a chunk's cells end on a word boundary (chunk_cells is a multiple of 64), so a
            # group copies and changes only its own words, while they are in cache
            first = (c_first * chunk_cells * bits_per_cell) >> 6
            last = (min(c_end * chunk_cells, n_cells) * bits_per_cell + 63) >> 6
            words[first:last] = source[first:last]
        if rate_bound <= 0.0:
            continue
        g_u = np.empty(_BATCH, np.float64)
        g_v = np.empty(_BATCH, np.float64)
        g_cell = np.empty(_BATCH, np.int64)
        for c in range(c_first, c_end):
            start = c * chunk_cells
            end = min(start + chunk_cells, n_cells)
            state = stream_seed(seed, c)
            j = start - 1
            n01 = np.uint64(0)
            n10 = np.uint64(0)
            changed = np.uint64(0)
            done = False
            while not done:
                # a batch of candidates and their uniforms, the draws of `_next_candidate` and
                # `next_uniform` one by one, then decided
                state, j, n_g, done = _draw_candidates(state, j, end, every_cell, log_q, g_u,
                                                       g_v, g_cell)
                a01, a10, a_changed = _level_batch(words, n_g, g_cell, g_v, bits_per_cell,
                                                   level_to_code, code_to_level, leave, cum,
                                                   targets, rate_bound)
                n01 += a01
                n10 += a10
                changed += a_changed
            counts[c, 0] = np.int64(n01)
            counts[c, 1] = np.int64(n10)
            counts[c, 2] = np.int64(changed)
    return counts


@jit
def _bit_changes_serial(old: NDArray[np.uint64], new: NDArray[np.uint64]) -> tuple[int, int]:
    u = 0
    d = 0
    for i in range(old.shape[0]):
        changed = old[i] ^ new[i]
        if changed:
            u += popcount64(changed & new[i])
            d += popcount64(changed & old[i])
    return u, d


_GATHER = 256
_NO_ORDER = np.empty(0, np.int64)
"""Entries of a persistent-fault list whose words are loaded at once (see
`_apply_persistent_kernel`)."""


@jit
def _apply_persistent_kernel(
    words: NDArray[np.uint64],
    bit_index: NDArray[np.int64],
    action: NDArray[np.uint8],
    order: NDArray[np.int64],
    given_order: bool,
) -> tuple[int, int, int]:
    # `order` is a stable sort of bit_index: ops on one bit are adjacent and in their given order
    # (with `given_order`, the list's own order, for lists naming each bit once; `order` unused).
    # The faulty bits are sparse in an image far larger than the cache, so each is a miss to
    # memory: a batch's words are loaded first, in a loop of loads only whose misses overlap,
    # and the batch is then applied without branches on the random actions and bits (a
    # mispredicted branch also threw away the loads in flight). 1.9x / 1.6x faster at 1e-4 /
    # 1e-3 of 64 MiB; the same result.
    n = bit_index.shape[0]
    n01 = np.uint64(0)
    n10 = np.uint64(0)
    stuck = 0
    loaded = np.empty(_GATHER, np.uint64)
    i = 0
    while i < n:
        first = i
        end = min(i + _GATHER, n)
        for k in range(first, end):
            loaded[k - first] = words[bit_index[k if given_order else order[k]] >> 6]
        while i < end:
            entry = i if given_order else order[i]
            idx = bit_index[entry]
            shift = np.uint64(idx & 63)
            # the bit as stored: an earlier entry of the batch may have changed its word, but
            # not this bit (a bit's entries are adjacent, and all applied here)
            orig = (loaded[i - first] >> shift) & _ONE
            cur = orig
            while True:
                a = action[entry]
                cur = np.uint64(a) if a < 2 else cur ^ _ONE  # 0/1: stuck at 0/1; 2: flip
                stuck += a < 2
                i += 1
                if i >= n:
                    break
                entry = i if given_order else order[i]
                if bit_index[entry] != idx:
                    break
            diff = cur ^ orig
            words[idx >> 6] ^= diff << shift
            n01 += diff & cur
            n10 += diff & orig
    return int(n01), int(n10), stuck


@jit
def _set_levels_kernel(
    words: NDArray[np.uint64],
    bits_per_cell: int,
    cell_index: NDArray[np.int64],
    level: NDArray[np.uint8],
    level_to_code: NDArray[np.uint8],
    order: NDArray[np.int64],
    given_order: bool,
) -> tuple[int, int, int]:
    # as _apply_persistent_kernel: `order` groups a cell's entries, or `given_order` uses the list
    n = cell_index.shape[0]
    b = np.uint64(bits_per_cell)
    mask = (_ONE << b) - _ONE
    n01 = 0
    n10 = 0
    changed = 0
    i = 0
    while i < n:
        j = cell_index[i if given_order else order[i]]
        lo = j * bits_per_cell
        w = lo >> 6
        off = np.uint64(lo & 63)
        straddle = off + b > np.uint64(64)
        code = (words[w] >> off) & mask
        if straddle:
            code |= (words[w + 1] << (np.uint64(64) - off)) & mask
        new = code
        while i < n:
            entry = i if given_order else order[i]
            if cell_index[entry] != j:
                break
            new = np.uint64(level_to_code[level[entry]])
            i += 1
        diff = code ^ new
        if diff:
            words[w] ^= diff << off
            if straddle:
                words[w + 1] ^= diff >> (np.uint64(64) - off)
            n01 += _popcount(diff & new)
            n10 += _popcount(diff & code)
            changed += 1
    return n01, n10, changed


# --------------------------------------------------------------------------------------------
# Validation


def _words(words: Any) -> NDArray[np.uint64]:
    if not isinstance(words, np.ndarray):
        raise ValueError(f"words: expected a numpy array of uint64, got {type(words).__name__}")
    if words.dtype != np.uint64:
        raise ValueError(f"words: expected dtype uint64, got {words.dtype}")
    if words.ndim != 1:
        raise ValueError(f"words: expected a 1-D array, got {words.ndim} dimensions")
    if not words.flags.c_contiguous:
        raise ValueError("words: expected a C-contiguous array (pass np.ascontiguousarray(...))")
    if not words.flags.writeable:
        raise ValueError("words: the array is read-only; the kernels change it in place")
    return words


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer, got {type(value).__name__}") from None


def _seed(name: str, value: Any) -> np.uint64:
    seed = _integer(name, value)
    if not 0 <= seed < UINT64_LIMIT:
        raise ValueError(f"{name}: expected an integer in [0, 2**64), got {seed}")
    return np.uint64(seed)


def _probability(name: str, value: Any) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a probability, got {value!r}") from None
    if not 0.0 <= p <= 1.0:  # also rejects nan
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return p


def _chunk(name: str, value: Any) -> int:
    chunk = _integer(name, value)
    if chunk <= 0 or chunk % 64:
        raise ValueError(f"{name}: expected a positive multiple of 64, got {chunk}")
    return chunk


def _int_array(name: str, value: Any, dtype: type[np.integer[Any]]) -> NDArray[Any]:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got {array.ndim} dimensions")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected an integer array, got dtype {array.dtype}")
    if array.size and array.dtype.kind == "u" and int(array.max()) > np.iinfo(dtype).max:
        raise ValueError(f"{name}: value {int(array.max())} is out of range")
    if array.size and array.dtype.kind == "i" and int(array.min()) < np.iinfo(dtype).min:
        raise ValueError(f"{name}: value {int(array.min())} is out of range")
    return np.ascontiguousarray(array, dtype=dtype)


def _bits_per_cell(value: Any) -> int:
    b = _integer("bits_per_cell", value)
    if not 1 <= b <= MAX_BITS_PER_CELL:
        raise ValueError(f"bits_per_cell: expected an integer in [1, {MAX_BITS_PER_CELL}], got {b}")
    return b


def _level_to_code(value: Any, bits_per_cell: int) -> NDArray[np.uint8]:
    n_levels = 1 << bits_per_cell
    codes = _int_array("level_to_code", value, np.uint8)
    if codes.shape[0] != n_levels or sorted(codes.tolist()) != list(range(n_levels)):
        raise ValueError(
            f"level_to_code: expected a permutation of 0..{n_levels - 1} "
            f"(bits_per_cell={bits_per_cell}), got {codes.tolist()}"
        )
    return codes


@jit_parallel
def _weak_counts(n_bits: int, factor_seed: np.uint64, u_split: float,
                 chunk: int) -> NDArray[np.int64]:
    n_chunks = (n_bits + chunk - 1) // chunk
    counts = np.zeros(n_chunks, np.int64)
    for c in prange(n_chunks):
        k = 0
        for i in range(c * chunk, min(n_bits, (c + 1) * chunk)):
            if cell_uniform(factor_seed, i) > u_split:
                k += 1
        counts[c] = k
    return counts


@jit_parallel
def _weak_fill(n_bits: int, factor_seed: np.uint64, u_split: float, chunk: int,
               offsets: NDArray[np.int64], out: NDArray[np.int64]) -> None:
    n_chunks = (n_bits + chunk - 1) // chunk
    for c in prange(n_chunks):
        k = offsets[c]
        for i in range(c * chunk, min(n_bits, (c + 1) * chunk)):
            if cell_uniform(factor_seed, i) > u_split:
                out[k] = i
                k += 1


@dataclass(frozen=True, eq=False)
class WeakCells:
    """The cells of one chip whose lognormal factor exceeds a split level, found once per chip.

    With it, `flip_bits_` proposes candidates for the other cells at `p·f_split` instead of
    `p·f_cap` and draws the weak ones from this list (against `f_cap`): the same flip
    probabilities, about `f_split + q·f_cap` instead of `f_cap` candidates per flip (σ = 0.5:
    about 2.8 instead of 18). It costs one hash per cell to build and 8 bytes per weak cell
    (a fraction `q`, about 3 % at σ = 0.5), and it keeps where each chunk starts in the list
    (`offsets`).
    """

    n_bits: int
    factor_sigma: float
    factor_seed: int
    z_split: float
    cells: NDArray[np.int64]
    _offsets: dict[int, NDArray[np.int64]] = field(default_factory=dict, repr=False)

    @property
    def fraction(self) -> float:
        return self.cells.shape[0] / self.n_bits if self.n_bits else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes held: the list and its chunk offsets."""
        return int(self.cells.nbytes + sum(o.nbytes for o in self._offsets.values()))

    def offsets(self, chunk_bits: int) -> NDArray[np.int64]:
        """Where each chunk of `chunk_bits` bits starts in `cells` (and where the last ends),
        found once per chunk size: a binary search of a list of millions of cells per chunk
        took ~0.5 ms of a 64 MiB read."""
        found = self._offsets.get(chunk_bits)
        if found is None:
            n = self.n_bits
            n_chunks = -(-n // chunk_bits)
            starts = np.minimum(np.arange(n_chunks + 1, dtype=np.int64) * chunk_bits, n)
            found = np.searchsorted(self.cells, starts).astype(np.int64)
            self._offsets[chunk_bits] = found
        return found


def split_level(sigma: float) -> float:
    """The z of the split that minimises the expected candidates `f(z) + (1 − Φ(z))·f_cap`."""
    z_cap, f_cap = factor_cap(sigma)
    z = np.linspace(0.0, z_cap, 1201)
    cost = np.exp(sigma * z - 0.5 * sigma * sigma) + ndtr(-z) * f_cap
    return float(z[int(np.argmin(cost))])


def weak_cells(n_bits: int, factor_sigma: float, factor_seed: int | np.integer[Any]
               ) -> WeakCells:
    """The weak cells of a chip (see `WeakCells`) for `flip_bits_(..., weak=)`."""
    n = _integer("n_bits", n_bits)
    sigma = float(factor_sigma)
    if not 0.0 < sigma <= MAX_FACTOR_SIGMA:
        raise ValueError(f"factor_sigma: expected a number in (0, {MAX_FACTOR_SIGMA}], got "
                         f"{factor_sigma!r}")
    seed = _seed("factor_seed", factor_seed)
    z_split = split_level(sigma)
    u_split = float(ndtr(z_split))
    chunk = DEFAULT_CHUNK_BITS
    counts = _weak_counts(n, seed, u_split, chunk)
    offsets = np.zeros(counts.shape[0] + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    cells = np.empty(int(offsets[-1]), np.int64)
    _weak_fill(n, seed, u_split, chunk, offsets, cells)
    # the fill's chunk offsets are those of flip_bits_'s default chunks: kept for it
    return WeakCells(n, sigma, int(seed), z_split, cells, {chunk: offsets})


# --------------------------------------------------------------------------------------------
# Public wrappers

_NO_WORDS = np.empty(0, np.uint64)


def bit_changes(old: NDArray[np.uint64], new: NDArray[np.uint64]) -> tuple[int, int]:
    """(bits 0 in `old` and 1 in `new`, bits 1 in `old` and 0 in `new`) of two word arrays of
    one length, in one pass without temporaries."""
    a, b = (np.ascontiguousarray(w) for w in (old, new))  # read-only arrays are fine here
    if a.dtype != np.uint64 or b.dtype != np.uint64 or a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"expected two 1-D uint64 arrays, got {a.dtype} {a.shape} and "
                         f"{b.dtype} {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"word arrays differ in length: {a.shape[0]} and {b.shape[0]}")
    # serial: one memory-bound pass, which threads slowed down 3-20x here (their start-up)
    return _bit_changes_serial(a, b)


def flip_bits_(
    words: NDArray[np.uint64],
    n_bits: int,
    p_zero_to_one: float,
    p_one_to_zero: float,
    seed: int | np.integer[Any],
    *,
    factor_sigma: float = 0.0,
    factor_seed: int | np.integer[Any] = 0,
    chunk_bits: int = DEFAULT_CHUNK_BITS,
    source: NDArray[np.uint64] | None = None,
    weak: WeakCells | None = None,
) -> FlipCounts:
    """Transient asymmetric flips of the first `n_bits` stream bits of `words`, in place.

    Each stored 0 becomes 1 with probability `p_zero_to_one` and each stored 1 becomes 0 with
    `p_one_to_zero`, independently; every bit is considered once, on its original value.
    Pass a copy of `words` to keep the original, or pass the original as `source`: `words` is
    then overwritten with `source` chunk by chunk just before each chunk is flipped (the same
    result as copying first, in one pass over memory instead of two).

    With `factor_sigma` σ > 0 each bit cell i has a fixed variability factor
    `f_i = exp(σ·z_i − σ²/2)` (lognormal, mean 1), `z_i = Φ⁻¹(cell_uniform(factor_seed, i))`, so
    the same `factor_seed` (a chip) gives the same weak and strong cells in every call (trial),
    and the applied probability is `min(1, p·f_i)`. Candidates are skip-sampled at
    `p_bound = min(1, max(p01, p10)·f_cap)` and thinned, so factors are truncated at
    `f_cap = factor_cap(σ)[1]`, which changes the mean factor by at most 1e-8 relative (see
    `factor_cap`). The cost grows with the number of candidates, `p_bound·n_bits`, i.e. about
    f_cap times the number of flips (σ = 0.5: f_cap ≈ 18; σ = 1: ≈ 320; far fewer with
    `weak`); all but about 1/1024 of them are decided after one hash, so each costs a few
    nanoseconds.

    Args:
        words: 1-D C-contiguous writeable `np.uint64` array; changed in place.
        n_bits: stream length, `0 ≤ n_bits ≤ 64·len(words)`; padding bits are never touched.
        p_zero_to_one, p_one_to_zero: flip probabilities in [0, 1].
        seed: the trial's seed, an integer in [0, 2^64).
        factor_sigma: log-sd σ ≥ 0 of the per-cell factor (0: no factor).
        factor_seed: the chip's seed for the factors, an integer in [0, 2^64).
        chunk_bits: bits per independently seeded chunk (a positive multiple of 64). Results
            depend on it; keep the default for reproducibility.
        source: optional words (same shape as `words`, not the same array) copied into
            `words` as part of the pass.
        weak: optional `weak_cells(n_bits, factor_sigma, factor_seed)` of this chip: the same
            flip probabilities with far fewer candidates (see `WeakCells`); the draws, and so
            the cells flipped for a given seed, differ from those without it.

    Returns:
        `FlipCounts(zero_to_one, one_to_zero, 0, cells_changed=zero_to_one + one_to_zero)`.
    """
    words = _words(words)
    n = _integer("n_bits", n_bits)
    if not 0 <= n <= 64 * words.shape[0]:
        raise ValueError(
            f"n_bits: expected 0 <= n_bits <= 64*len(words) = {64 * words.shape[0]}, got {n}"
        )
    p01 = _probability("p_zero_to_one", p_zero_to_one)
    p10 = _probability("p_one_to_zero", p_one_to_zero)
    trial_seed = _seed("seed", seed)
    try:
        sigma = float(factor_sigma)
    except (TypeError, ValueError):
        raise ValueError(f"factor_sigma: expected a number, got {factor_sigma!r}") from None
    if not 0.0 <= sigma <= MAX_FACTOR_SIGMA:
        raise ValueError(f"factor_sigma: expected a number in [0, {MAX_FACTOR_SIGMA}], got {sigma}")
    chip_seed = _seed("factor_seed", factor_seed)
    chunk = _chunk("chunk_bits", chunk_bits)
    log_f_cap = 0.0
    if sigma > 0.0:
        z_cap, _ = factor_cap(sigma)
        log_f_cap = sigma * z_cap - 0.5 * sigma * sigma
    no_weak = np.empty(0, np.int64)
    weak_list, weak_offsets, u_weak, log_f_weak_cap = no_weak, no_weak, 2.0, log_f_cap
    if weak is not None and sigma > 0.0:
        if (weak.n_bits != n or weak.factor_sigma != sigma
                or weak.factor_seed != int(chip_seed)):
            raise ValueError("weak: made for another stream length, factor_sigma or "
                             "factor_seed")
        weak_list = weak.cells
        weak_offsets = weak.offsets(chunk)
        u_weak = float(ndtr(weak.z_split))
        log_f_cap = sigma * weak.z_split - 0.5 * sigma * sigma  # the main pass's bound
    quick = _factor_quick_table32(p01, p10, sigma, log_f_cap)
    quick_weak = (_factor_quick_table32(p01, p10, sigma, log_f_weak_cap) if weak_offsets.size
                  else quick)
    if source is not None:
        _check_source(source, words)
        tail = -(-n // 64)
        words[tail:] = source[tail:]  # words past the stream: outside every chunk
    # one chunk is no work to share: the serial compilation skips starting threads
    kernel = _flip_bits_kernel if n > chunk else serial(_flip_bits_kernel)
    counts = kernel(
        words,
        n,
        p01,
        p10,
        trial_seed ^ _TAG_BITS,
        sigma,
        chip_seed,
        log_f_cap,
        quick,
        chunk,
        source if source is not None else _NO_WORDS,
        source is not None,
        weak_list,
        weak_offsets,
        u_weak,
        log_f_weak_cap,
        quick_weak,
    )
    z2o = int(counts[:, 0].sum())
    o2z = int(counts[:, 1].sum())
    return FlipCounts(z2o, o2z, 0, z2o + o2z)


def _check_source(source: Any, words: NDArray[np.uint64]) -> None:
    if (not isinstance(source, np.ndarray) or source.dtype != np.uint64
            or source.shape != words.shape or not source.flags.c_contiguous
            or np.shares_memory(source, words)):
        raise ValueError("source: expected a separate C-contiguous uint64 array shaped like "
                         "words")


def apply_persistent_(
    words: NDArray[np.uint64],
    bit_index: NDArray[np.int64],
    action: NDArray[np.uint8],
    *,
    distinct: bool = False,
) -> FlipCounts:
    """Persistent faults on single bits, in place: stuck-at-0, stuck-at-1 or flip.

    `action[k]` acts on stream bit `bit_index[k]`: 0 clears it (stuck-at-0), 1 sets it
    (stuck-at-1), 2 flips it. Indices need not be sorted; entries on the same bit are applied in
    their given order. Pass a copy of `words` to keep the original. `distinct=True` promises
    that no bit is listed twice (a chip's cells): the list is then applied as given, without
    sorting it (a sort of 4M entries took 7x the faults' application, and 8 bytes an entry).

    Returns:
        `zero_to_one` / `one_to_zero`: bits whose final value differs from the original (a bit
        flipped twice counts nowhere); `stuck_cells`: entries with action 0 or 1 (a bit listed
        twice counts twice; callers normally list each cell once); `cells_changed`: changed bits.
    """
    words = _words(words)
    index = _int_array("bit_index", bit_index, np.int64)
    acts = _int_array("action", action, np.uint8)
    if index.shape[0] != acts.shape[0]:
        raise ValueError(
            f"bit_index and action: expected equal lengths, got {index.shape[0]} and "
            f"{acts.shape[0]}"
        )
    if index.size:
        limit = 64 * words.shape[0]
        if int(index.min()) < 0 or int(index.max()) >= limit:
            raise ValueError(
                f"bit_index: expected indices in [0, {limit}), got "
                f"[{int(index.min())}, {int(index.max())}]"
            )
        if int(acts.max()) > 2:
            raise ValueError(
                "action: expected 0 (stuck-at-0), 1 (stuck-at-1) or 2 (flip), "
                f"got {int(acts.max())}"
            )
    # a list sorted already is its own stable order
    given = distinct or index.size < 2 or bool(np.all(index[1:] >= index[:-1]))
    order = _NO_ORDER if given else np.argsort(index, kind="stable").astype(np.int64)
    z2o, o2z, stuck = _apply_persistent_kernel(words, index, acts, order, given)
    return FlipCounts(int(z2o), int(o2z), int(stuck), int(z2o) + int(o2z))


def _level_tables(
    matrix: Any, n_levels: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], float]:
    """Per level: probability of leaving, cumulative off-diagonal row, targets; the bound r
    (found once per matrix: ~75 µs a read otherwise, 1 % of a 64 MiB one)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (n_levels, n_levels):
        raise ValueError(
            f"matrix: expected shape ({n_levels}, {n_levels}) for {n_levels} levels, got {m.shape}"
        )
    return _level_tables_of(np.ascontiguousarray(m).tobytes(), n_levels)


@lru_cache(maxsize=64)
def _level_tables_of(
    matrix_bytes: bytes, n_levels: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], float]:
    m = np.frombuffer(matrix_bytes, np.float64).reshape(n_levels, n_levels)
    if not np.all(np.isfinite(m)) or np.any(m < 0.0) or np.any(m > 1.0):
        raise ValueError("matrix: expected probabilities in [0, 1]")
    sums = m.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-9)
    if bad.size:
        raise ValueError(f"matrix: row {int(bad[0])} sums to {sums[bad[0]]!r}, expected 1")
    targets = np.empty((n_levels, n_levels - 1), np.int64)
    cum = np.empty((n_levels, n_levels - 1), np.float64)
    leave = np.empty(n_levels, np.float64)
    for level in range(n_levels):
        others = [t for t in range(n_levels) if t != level]
        targets[level] = others
        cum[level] = np.cumsum(m[level, others])
        leave[level] = cum[level, -1]
    rate_bound = min(1.0, float(leave.max()))
    return leave, cum, targets, rate_bound


def flip_levels_(
    words: NDArray[np.uint64],
    n_cells: int,
    bits_per_cell: int,
    level_to_code: NDArray[np.uint8],
    code_to_level: NDArray[np.uint8],
    matrix: NDArray[np.float64],
    seed: int | np.integer[Any],
    chunk_cells: int = DEFAULT_CHUNK_CELLS,
    source: NDArray[np.uint64] | None = None,
) -> FlipCounts:
    """Level confusion in a multi-level memory, in place.

    Cell j holds the `bits_per_cell`-bit code at stream bits `[j·b, (j+1)·b)`; its level is
    `code_to_level[code]`. A cell at level l moves to level m ≠ l with probability
    `matrix[l, m]` (rows sum to 1), independently of other cells. Cells are skip-sampled at
    `r = max_l (1 − matrix[l, l])`, accepted with `(1 − matrix[l, l]) / r`, and the target is
    drawn from the off-diagonal part of the row. Pass a copy of `words` to keep the original.

    Args:
        words: 1-D C-contiguous writeable `np.uint64` array; changed in place.
        n_cells: number of cells, `n_cells·bits_per_cell ≤ 64·len(words)`.
        bits_per_cell: b in [1, 8].
        level_to_code: the code stored for each level, a permutation of 0..2^b − 1 (uint8).
        code_to_level: its inverse.
        matrix: row-stochastic `(2^b, 2^b)` transition matrix `M[stored, read]`.
        seed: an integer in [0, 2^64).
        chunk_cells: cells per independently seeded chunk (a positive multiple of 64). Results
            depend on it; keep the default for reproducibility.
        source: optional words (same shape as `words`, not the same array) copied into
            `words` chunk by chunk just before each chunk's cells are read: a read of `source`
            in one pass over memory, with the same result as copying first.

    Returns:
        `FlipCounts(zero_to_one, one_to_zero, 0, cells_changed)` counted over bits of changed
        cells.
    """
    words = _words(words)
    b = _bits_per_cell(bits_per_cell)
    n = _integer("n_cells", n_cells)
    if n < 0 or n * b > 64 * words.shape[0]:
        raise ValueError(
            f"n_cells: expected 0 <= n_cells*bits_per_cell <= 64*len(words) = "
            f"{64 * words.shape[0]}, got n_cells={n}"
        )
    codes = _level_to_code(level_to_code, b)
    levels = _int_array("code_to_level", code_to_level, np.uint8)
    if levels.shape != codes.shape or not np.array_equal(levels[codes], np.arange(1 << b)):
        raise ValueError("code_to_level: expected the inverse permutation of level_to_code")
    leave, cum, targets, rate_bound = _level_tables(matrix, 1 << b)
    trial_seed = _seed("seed", seed)
    chunk = _chunk("chunk_cells", chunk_cells)
    if source is not None:
        _check_source(source, words)
        tail = -(-n * b // 64)
        words[tail:] = source[tail:]  # words past the cells: outside every chunk
    kernel = _flip_levels_kernel if n > chunk else serial(_flip_levels_kernel)
    counts = kernel(
        words,
        n,
        b,
        codes,
        levels,
        leave,
        cum,
        targets,
        rate_bound,
        trial_seed ^ _TAG_LEVELS,
        chunk,
        source if source is not None else _NO_WORDS,
        source is not None,
    )
    return FlipCounts(int(counts[:, 0].sum()), int(counts[:, 1].sum()), 0, int(counts[:, 2].sum()))


def set_levels_(
    words: NDArray[np.uint64],
    bits_per_cell: int,
    cell_index: NDArray[np.int64],
    level: NDArray[np.uint8],
    level_to_code: NDArray[np.uint8],
    *,
    distinct: bool = False,
) -> FlipCounts:
    """Stuck cells of a multi-level memory, in place: cell `cell_index[k]` now holds `level[k]`.

    Entries on the same cell are applied in their given order (the last wins). Pass a copy of
    `words` to keep the original. `distinct=True` promises that no cell is listed twice: the
    list is applied as given, without sorting it.

    Returns:
        `zero_to_one` / `one_to_zero`: bits whose final value differs from the original;
        `stuck_cells`: the number of entries; `cells_changed`: cells whose code changed.
    """
    words = _words(words)
    b = _bits_per_cell(bits_per_cell)
    codes = _level_to_code(level_to_code, b)
    index = _int_array("cell_index", cell_index, np.int64)
    lv = _int_array("level", level, np.uint8)
    if index.shape[0] != lv.shape[0]:
        raise ValueError(
            f"cell_index and level: expected equal lengths, got {index.shape[0]} and {lv.shape[0]}"
        )
    if index.size:
        limit = (64 * words.shape[0]) // b
        if int(index.min()) < 0 or int(index.max()) >= limit:
            raise ValueError(
                f"cell_index: expected indices in [0, {limit}), got "
                f"[{int(index.min())}, {int(index.max())}]"
            )
        if int(lv.max()) >= 1 << b:
            raise ValueError(f"level: expected levels in [0, {1 << b}), got {int(lv.max())}")
    order = _NO_ORDER if distinct else np.argsort(index, kind="stable").astype(np.int64)
    z2o, o2z, changed = _set_levels_kernel(words, b, index, lv, codes, order, distinct)
    return FlipCounts(int(z2o), int(o2z), int(index.shape[0]), int(changed))
