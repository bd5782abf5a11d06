"""Sparse sampling of a chip's persistent faults (threshold and stuck-at cells).

A threshold mechanism gives each cell a critical score `u = o_row + √s_cell · c` where the row
offset `o_row = √s_die·d + √s_array·a + √s_row·r` collects the chip (d), array (a) and row (r)
normals and `c` is the cell's own standard normal. A cell is faulty at an operating point where
`u < z = Φ⁻¹(fault_fraction)`.

Only cells below a bound `z_max` are drawn, and which cells those are does not depend on the
bound: each row draws its cells' scores in increasing order from its own generator (the order
statistics of its m uniforms, `U₍ₖ₊₁₎ = U₍ₖ₎ + (1 − U₍ₖ₎)(1 − V^{1/(m−k)})`, each placed at a
cell picked by a partial Fisher-Yates shuffle of the row) and stops at the first score at or
above the bound. A higher bound continues the same sequence, so the faulty cells at any
`z ≤ z_max` are the same whatever bound they were drawn under: a chip can be drawn for the
operating points asked so far and extended when a harsher one comes. The cost grows with the
number of candidates plus the number of rows; nothing is stored per cell.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from memsim.kernels.rng import (
    cell_normal,
    jit,
    next_u64,
    next_uniform,
    standard_normal_from_uniform,
    stream_seed,
)


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
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    n_rows = (n_cells + cells_per_row - 1) // cells_per_row
    cap = 1024
    index = np.empty(cap, np.int64)
    score = np.empty(cap, np.float64)
    count = 0
    array_seed = stream_seed(seed, 1)
    row_seed = stream_seed(seed, 2)
    cells_seed = stream_seed(seed, 3)
    # the row's shuffle, initialised lazily: perm[j] is valid for row r only if stamp[j] == r
    perm = np.empty(cells_per_row, np.int64)
    stamp = np.full(cells_per_row, -1, np.int64)
    for row in range(n_rows):
        offset = die_offset
        if sd_array > 0.0:
            offset += sd_array * cell_normal(array_seed, row // rows_per_array)
        if sd_row > 0.0:
            offset += sd_row * cell_normal(row_seed, row)
        start = row * cells_per_row
        m = min(n_cells, start + cells_per_row) - start
        if sd_cell == 0.0:
            # no per-cell spread: the whole row fails together, in index order
            if offset < z_max:
                if count + m > cap:
                    cap = max(2 * cap, count + m)
                    index = np.concatenate((index, np.empty(cap - count, np.int64)))
                    score = np.concatenate((score, np.empty(cap - count, np.float64)))
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
                cap *= 2
                index = np.concatenate((index, np.empty(cap - count, np.int64)))
                score = np.concatenate((score, np.empty(cap - count, np.float64)))
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
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Cells whose critical score lies below `z_max`, with their scores, sorted by score.

    `shares` = (die, array, row, cell) variance shares summing to 1. Returns (cell index,
    critical score), both sorted by score (ties by cell index), so the faulty cells at any
    `z ≤ z_max` are a prefix, and the same for every `z_max ≥ z`.
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
    index, score = _threshold_candidates_kernel(
        n_cells, cells_per_row, rows_per_array, die_offset, math.sqrt(array), math.sqrt(row),
        math.sqrt(cell), min(z_max, 40.0), s)
    order = np.lexsort((index, score))
    return index[order], score[order]


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
    index, _ = threshold_candidates(n_cells, n_cells, 1, (0.0, 0.0, 0.0, 1.0), z, seed)
    return np.sort(index)
