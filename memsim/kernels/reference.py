"""Slow, obvious numpy references of the kernels in `memsim.kernels.flips` (for tests).

Each reference unpacks every bit with `np.unpackbits(..., bitorder="little")`, draws one
uniform per bit (per cell) from a `np.random.Generator`, compares, xors and repacks. They
return a *new* array and never change their input. Their random draws differ from the
kernels' (which skip-sample), so the two agree exactly only where the outcome is
deterministic (probabilities 0 or 1, persistent faults, stuck levels) and in distribution
otherwise. The per-cell factor hash is re-implemented here with numpy integer arithmetic, so
it is compared exactly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from memsim.kernels.flips import FlipCounts, factor_cap
from memsim.kernels.rng import _DOMAIN_CELL, _FMIX1, _FMIX2, _GAMMA, _MIX1, _MIX2


def unpack_bits(words: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """All `64·len(words)` stream bits, one uint8 (0 or 1) each: bit k = bit k%64 of word k//64."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(raw, bitorder="little")


def pack_bits(bits: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Inverse of `unpack_bits` (`len(bits)` a multiple of 64)."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little")
    return packed.view("<u8").astype(np.uint64)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def cell_uniform_reference(seed: int, index: NDArray[np.int64]) -> NDArray[np.float64]:
    """`rng.cell_uniform(seed, i)` for every i, with numpy integer arithmetic."""
    with np.errstate(over="ignore"):
        base = _mix(np.array([seed], np.uint64) ^ _DOMAIN_CELL)
        x = _mix(base + (np.asarray(index).astype(np.uint64) + np.uint64(1)) * _GAMMA)
        x = (x ^ (x >> np.uint64(33))) * _FMIX1
        x = (x ^ (x >> np.uint64(33))) * _FMIX2
        x = x ^ (x >> np.uint64(33))
    k = x >> np.uint64(11)
    return np.where(k == 0, 2.0**-54, k.astype(np.float64) * 2.0**-53)


def cell_factor_reference(seed: int, index: NDArray[np.int64], sigma: float) -> NDArray[np.float64]:
    """Truncated lognormal factor `min(exp(σz − σ²/2), f_cap)` of each cell, z via scipy's ndtri."""
    if sigma <= 0.0:
        return np.ones(np.shape(index), np.float64)
    z = ndtri(cell_uniform_reference(seed, index))
    _, f_cap = factor_cap(sigma)
    return np.asarray(np.minimum(np.exp(sigma * z - 0.5 * sigma * sigma), f_cap), np.float64)


def _counts(old: NDArray[np.uint8], new: NDArray[np.uint8]) -> tuple[int, int]:
    z2o = int(np.count_nonzero((old == 0) & (new == 1)))
    o2z = int(np.count_nonzero((old == 1) & (new == 0)))
    return z2o, o2z


def flip_bits_reference(
    words: NDArray[np.uint64],
    n_bits: int,
    p_zero_to_one: float,
    p_one_to_zero: float,
    rng: np.random.Generator,
    *,
    factor_sigma: float = 0.0,
    factor_seed: int = 0,
) -> tuple[NDArray[np.uint64], FlipCounts]:
    """Reference of `flip_bits_`: one uniform per bit; returns `(new_words, counts)`."""
    bits = unpack_bits(words)
    old = bits[:n_bits].copy()
    p = np.where(old == 0, p_zero_to_one, p_one_to_zero)
    if factor_sigma > 0.0:
        f = cell_factor_reference(factor_seed, np.arange(n_bits, dtype=np.int64), factor_sigma)
        p = np.minimum(1.0, p * f)
    flip = rng.random(n_bits) < p
    new = old ^ flip.astype(np.uint8)
    bits[:n_bits] = new
    z2o, o2z = _counts(old, new)
    return pack_bits(bits), FlipCounts(z2o, o2z, 0, z2o + o2z)


def apply_persistent_reference(
    words: NDArray[np.uint64], bit_index: NDArray[np.int64], action: NDArray[np.uint8]
) -> tuple[NDArray[np.uint64], FlipCounts]:
    """Reference of `apply_persistent_`: a Python loop over the entries in their order."""
    bits = unpack_bits(words)
    old = bits.copy()
    stuck = 0
    for i, a in zip(np.asarray(bit_index).tolist(), np.asarray(action).tolist(), strict=True):
        if a == 2:
            bits[i] ^= 1
        else:
            bits[i] = a
            stuck += 1
    z2o, o2z = _counts(old, bits)
    return pack_bits(bits), FlipCounts(z2o, o2z, stuck, z2o + o2z)


def cell_codes(words: NDArray[np.uint64], n_cells: int, bits_per_cell: int) -> NDArray[np.int64]:
    """The code of each of the first `n_cells` cells (cell j: stream bits [j·b, (j+1)·b))."""
    bits = unpack_bits(words)[: n_cells * bits_per_cell].reshape(n_cells, bits_per_cell)
    weights = np.int64(1) << np.arange(bits_per_cell, dtype=np.int64)
    return np.asarray(bits.astype(np.int64) @ weights, np.int64)


def _write_codes(
    words: NDArray[np.uint64], codes: NDArray[np.int64], bits_per_cell: int
) -> NDArray[np.uint64]:
    bits = unpack_bits(words)
    n = codes.shape[0] * bits_per_cell
    shifts = np.arange(bits_per_cell, dtype=np.int64)
    bits[:n] = ((codes[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
    return pack_bits(bits)


def _level_counts(
    old_codes: NDArray[np.int64], new_codes: NDArray[np.int64], bits_per_cell: int
) -> tuple[int, int, int]:
    z2o = o2z = 0
    for j in range(bits_per_cell):
        old = ((old_codes >> j) & 1).astype(np.uint8)
        new = ((new_codes >> j) & 1).astype(np.uint8)
        a, b = _counts(old, new)
        z2o += a
        o2z += b
    return z2o, o2z, int(np.count_nonzero(old_codes != new_codes))


def flip_levels_reference(
    words: NDArray[np.uint64],
    n_cells: int,
    bits_per_cell: int,
    level_to_code: NDArray[np.uint8],
    code_to_level: NDArray[np.uint8],
    matrix: NDArray[np.float64],
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint64], FlipCounts]:
    """Reference of `flip_levels_`: one uniform per cell against the cumulative row."""
    codes = cell_codes(words, n_cells, bits_per_cell)
    levels = np.asarray(code_to_level, np.int64)[codes]
    cum = np.cumsum(np.asarray(matrix, np.float64), axis=1)
    u = rng.random(n_cells)
    new_levels = np.empty_like(levels)
    for level in range(cum.shape[0]):
        at = levels == level
        row = cum[level].copy()
        row[-1] = np.inf  # a row summing to 1 − ε still ends somewhere
        new_levels[at] = np.searchsorted(row, u[at], side="right")
    new_codes = np.asarray(level_to_code, np.int64)[new_levels]
    z2o, o2z, changed = _level_counts(codes, new_codes, bits_per_cell)
    return _write_codes(words, new_codes, bits_per_cell), FlipCounts(z2o, o2z, 0, changed)


def set_levels_reference(
    words: NDArray[np.uint64],
    bits_per_cell: int,
    cell_index: NDArray[np.int64],
    level: NDArray[np.uint8],
    level_to_code: NDArray[np.uint8],
) -> tuple[NDArray[np.uint64], FlipCounts]:
    """Reference of `set_levels_`: a Python loop over the entries in their order."""
    n_cells = (64 * len(words)) // bits_per_cell
    codes = cell_codes(words, n_cells, bits_per_cell)
    new_codes = codes.copy()
    for j, lv in zip(np.asarray(cell_index).tolist(), np.asarray(level).tolist(), strict=True):
        new_codes[j] = int(level_to_code[lv])
    z2o, o2z, changed = _level_counts(codes, new_codes, bits_per_cell)
    counts = FlipCounts(z2o, o2z, len(np.asarray(cell_index)), changed)
    return _write_codes(words, new_codes, bits_per_cell), counts
