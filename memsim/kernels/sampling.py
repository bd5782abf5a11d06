"""Sparse sampling of a chip's persistent faults (threshold and stuck-at cells).

A threshold mechanism gives each cell a critical score `u = o_row + √s_cell · c` where the row
offset `o_row = √s_die·d + √s_array·a + √s_row·r` collects the chip (d), array (a) and row (r)
normals and `c` is the cell's own standard normal. A cell is faulty at an operating point where
`u < z = Φ⁻¹(fault_fraction)`. With weak arrays (a fraction p of arrays, each drawn from its
own counter-based uniform), a weak array's offset is lowered by a shift s, and
`z = F⁻¹(fault_fraction)` with `F(z) = (1 − p)·Φ(z) + p·Φ(z + s)`
(`memsim.physics.mechanisms.score_quantile`), so the
population fraction stays the curve.

Only cells below a bound `z_max` are drawn, and which cells those are does not depend on the
bound: each row draws its cells' scores in increasing order from its own generator (the order
statistics of its m uniforms, `U₍ₖ₊₁₎ = U₍ₖ₎ + (1 − U₍ₖ₎)(1 − V^{1/(m−k)})`, each placed at a
cell picked by a partial Fisher-Yates shuffle of the row) and stops at the first score at or
above the bound. A higher bound continues the same sequence, so the faulty cells at any
`z ≤ z_max` are the same whatever bound they were drawn under: a chip can be drawn for the
operating points asked so far and extended when a harsher one comes. The cost grows with the
number of candidates plus the number of rows; nothing is stored per cell. The candidates are
written into arrays sized from their expected count and sorted in place, so drawing them
holds little more than the 16 bytes per candidate returned.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri

from memsim.kernels.rng import (
    cell_normal,
    cell_uniform,
    jit,
    next_u64,
    next_uniform,
    standard_normal_from_uniform,
    stream_seed,
)


@jit
def _grown(index: NDArray[np.int64], score: NDArray[np.float64], count: int, cap: int
           ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    new_index = np.empty(cap, np.int64)
    new_index[:count] = index[:count]
    new_score = np.empty(cap, np.float64)
    new_score[:count] = score[:count]
    return new_index, new_score


@jit
def _threshold_candidates_kernel(
    n_cells: int,
    cells_per_row: int,
    rows_per_array: int,
    die_offset: float,
    sd_array: float,
    sd_row: float,
    sd_cell: float,
    z_max: float,
    seed: np.uint64,
    expected: float,
    weak_fraction: float,
    weak_shift: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    n_rows = (n_cells + cells_per_row - 1) // cells_per_row
    # room for the expected count and its spread at once: growing by copies would hold the old
    # and the new arrays together; pages past the last candidate are never touched
    cap = min(n_cells, int(1.05 * expected + 8.0 * math.sqrt(expected)) + 1024)
    index = np.empty(cap, np.int64)
    score = np.empty(cap, np.float64)
    count = 0
    array_seed = stream_seed(seed, 1)
    row_seed = stream_seed(seed, 2)
    cells_seed = stream_seed(seed, 3)
    weak_seed = stream_seed(seed, 4)  # its own stream: without weak arrays nothing changes
    # the row's shuffle, initialised lazily: perm[j] is valid for row r only if stamp[j] == r
    perm = np.empty(cells_per_row, np.int64)
    stamp = np.full(cells_per_row, -1, np.int64)
    for row in range(n_rows):
        offset = die_offset
        if sd_array > 0.0:
            offset += sd_array * cell_normal(array_seed, row // rows_per_array)
        if weak_fraction > 0.0 and cell_uniform(weak_seed, row // rows_per_array) < weak_fraction:
            offset -= weak_shift
        if sd_row > 0.0:
            offset += sd_row * cell_normal(row_seed, row)
        start = row * cells_per_row
        m = min(n_cells, start + cells_per_row) - start
        if sd_cell == 0.0:
            # no per-cell spread: the whole row fails together, in index order
            if offset < z_max:
                if count + m > cap:
                    cap = min(n_cells, max(cap + cap // 2, count + m))
                    index, score = _grown(index, score, count, cap)
                for j in range(m):
                    index[count] = start + j
                    score[count] = offset
                    count += 1
            continue
        state = stream_seed(cells_seed, row)
        u = 0.0
        for k in range(m):
            state, v = next_uniform(state)
            u = u + (1.0 - u) * -math.expm1(math.log(v) / (m - k))
            if u >= 1.0:
                break
            value = offset + sd_cell * standard_normal_from_uniform(u)
            if value >= z_max:
                break
            state, r = next_u64(state)
            j = k + int(r % np.uint64(m - k))
            a = perm[k] if stamp[k] == row else k
            b = perm[j] if stamp[j] == row else j
            perm[k] = b
            perm[j] = a
            stamp[k] = row
            stamp[j] = row
            if count == cap:
                cap = min(n_cells, cap + max(cap // 2, 1024))
                index, score = _grown(index, score, count, cap)
            index[count] = start + b
            score[count] = value
            count += 1
    return index[:count], score[:count]


def threshold_candidates(
    n_cells: int,
    cells_per_row: int,
    rows_per_array: int,
    shares: tuple[float, float, float, float],
    z_max: float,
    seed: int,
    weak: tuple[float, float] = (0.0, 0.0),
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Cells whose critical score lies below `z_max`, with their scores, sorted by score.

    `shares` = (die, array, row, cell) variance shares summing to 1; `weak` = (fraction of
    weak arrays, their shift in standard deviations). Returns (cell index, critical score),
    both sorted by score (ties by cell index), so the faulty cells at any `z ≤ z_max` are a
    prefix, and the same for every `z_max ≥ z`.
    """
    die, array, row, cell = shares
    if not math.isclose(die + array + row + cell, 1.0, abs_tol=1e-6):
        raise ValueError(f"variance shares must sum to 1, got {die + array + row + cell:g}")
    if n_cells < 0 or cells_per_row < 1 or rows_per_array < 1:
        raise ValueError("n_cells must be >= 0 and rows/arrays non-empty")
    s = np.uint64(seed % (1 << 64))
    die_offset = math.sqrt(die) * float(cell_normal(s, 0)) if die > 0 else 0.0
    if n_cells == 0 or z_max == -math.inf:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    fraction, shift = weak
    if not (0.0 <= fraction <= 1.0 and shift >= 0.0):
        raise ValueError(f"weak arrays need a fraction in [0, 1] and a shift >= 0, got {weak}")
    index, score = _candidates(n_cells, cells_per_row, rows_per_array, shares, die_offset,
                               z_max, s, weak)
    sort_by_score_(score, index)
    return index, score


def _candidates(n_cells: int, cells_per_row: int, rows_per_array: int,
                shares: tuple[float, float, float, float], die_offset: float, z_max: float,
                seed: np.uint64, weak: tuple[float, float] = (0.0, 0.0)
                ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The candidates in the order drawn (row by row)."""
    _, array, row, cell = shares
    fraction, shift = weak
    spread = math.sqrt(array + row + cell)

    def below(bound: float) -> float:
        # a cell's score given the die is normal around the die's offset
        return (float(ndtr((bound - die_offset) / spread)) if spread > 0
                else float(die_offset < bound))

    expected = n_cells * ((1.0 - fraction) * below(z_max) + fraction * below(z_max + shift))
    return _threshold_candidates_kernel(
        n_cells, cells_per_row, rows_per_array, die_offset, math.sqrt(array), math.sqrt(row),
        math.sqrt(cell), min(z_max, 40.0), seed, expected, fraction, shift)


def bernoulli_cells(n_cells: int, q: float, seed: int) -> NDArray[np.int64]:
    """Sorted indices of the cells chosen independently with probability `q`.

    A threshold draw with all variance per cell: `u < Φ⁻¹(q)` holds for each cell
    independently with probability q, so the same skip-sampling kernel serves both.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a probability, got {q!r}")
    if q == 0.0 or n_cells <= 0:
        return np.empty(0, np.int64)
    z = math.inf if q == 1.0 else float(ndtri(q))
    index, _ = _candidates(n_cells, n_cells, 1, (0.0, 0.0, 0.0, 1.0), 0.0, z,
                           np.uint64(seed % (1 << 64)))
    index.sort()
    return index


@jit
def _before(score: NDArray[np.float64], index: NDArray[np.int64], i: int, j: int) -> bool:
    return bool(score[i] < score[j] or (score[i] == score[j] and index[i] < index[j]))


@jit
def _swap(score: NDArray[np.float64], index: NDArray[np.int64], i: int, j: int) -> None:
    score[i], score[j] = score[j], score[i]
    index[i], index[j] = index[j], index[i]


@jit
def _sift_down(score: NDArray[np.float64], index: NDArray[np.int64], lo: int, root: int,
               end: int) -> None:
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and _before(score, index, lo + child, lo + child + 1):
            child += 1
        if not _before(score, index, lo + root, lo + child):
            return
        _swap(score, index, lo + root, lo + child)
        root = child


@jit
def _heap_sort(score: NDArray[np.float64], index: NDArray[np.int64], lo: int, hi: int) -> None:
    n = hi - lo
    for root in range(n // 2 - 1, -1, -1):
        _sift_down(score, index, lo, root, n)
    for end in range(n - 1, 0, -1):
        _swap(score, index, lo, lo + end)
        _sift_down(score, index, lo, 0, end)


@jit
def sort_by_score_(score: NDArray[np.float64], index: NDArray[np.int64]) -> None:
    """Sort the pairs by (score, index) in place: what `np.lexsort((index, score))` orders,
    without its order array and the two gathered copies (4x faster on 17M candidates).

    An introsort: quicksort on the median of three, heapsort past 2 log2(n) levels,
    insertion sort below 17 elements. The keys are distinct (cell indices are), so the order
    is unique and any correct sort gives the same arrays.
    """
    n = score.shape[0]
    if n < 2:
        return
    stack = np.empty((64, 3), np.int64)  # the smaller part is sorted first: depth <= log2(n)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, 2 * int(math.log2(n)) + 2
    top = 1
    while top > 0:
        top -= 1
        lo, hi, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        while hi - lo > 16:
            if depth == 0:
                _heap_sort(score, index, lo, hi)
                hi = lo
                break
            depth -= 1
            mid = (lo + hi) >> 1
            if _before(score, index, mid, lo):
                _swap(score, index, mid, lo)
            if _before(score, index, hi - 1, lo):
                _swap(score, index, hi - 1, lo)
            if _before(score, index, hi - 1, mid):
                _swap(score, index, hi - 1, mid)
            _swap(score, index, lo, mid)
            pivot_score, pivot_index = score[lo], index[lo]
            i, j = lo + 1, hi - 1
            while True:
                while score[i] < pivot_score or (score[i] == pivot_score
                                                 and index[i] < pivot_index):
                    i += 1
                while pivot_score < score[j] or (score[j] == pivot_score
                                                 and pivot_index < index[j]):
                    j -= 1
                if i >= j:
                    break
                _swap(score, index, i, j)
                i += 1
                j -= 1
            _swap(score, index, lo, j)
            if j - lo > hi - j - 1:
                stack[top, 0], stack[top, 1], stack[top, 2] = lo, j, depth
                lo = j + 1
            else:
                stack[top, 0], stack[top, 1], stack[top, 2] = j + 1, hi, depth
                hi = j
            top += 1
        for a in range(lo + 1, hi):
            s, k = score[a], index[a]
            b = a - 1
            while b >= lo and (score[b] > s or (score[b] == s and index[b] > k)):
                score[b + 1] = score[b]
                index[b + 1] = index[b]
                b -= 1
            score[b + 1] = s
            index[b + 1] = k
