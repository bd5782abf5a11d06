"""Numba fault kernels over packed bit streams (no torch; explicit seeds; thread-count independent).

See `memsim.kernels.flips` for the stream layout, the in-place convention and the
reproducibility contract, `memsim.kernels.rng` for the generators, and
`memsim.kernels.reference` for the slow numpy references the tests compare against.
"""

from __future__ import annotations

from memsim.kernels.flips import (
    DEFAULT_CHUNK_BITS,
    DEFAULT_CHUNK_CELLS,
    FlipCounts,
    WeakCells,
    apply_persistent_,
    bit_changes,
    factor_cap,
    factor_truncation_loss,
    flip_bits_,
    flip_levels_,
    set_levels_,
    weak_cells,
)

__all__ = [
    "DEFAULT_CHUNK_BITS",
    "DEFAULT_CHUNK_CELLS",
    "FlipCounts",
    "WeakCells",
    "apply_persistent_",
    "bit_changes",
    "factor_cap",
    "factor_truncation_loss",
    "flip_bits_",
    "flip_levels_",
    "set_levels_",
    "weak_cells",
]
