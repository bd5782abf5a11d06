"""Numba fault kernels over packed bit streams (no torch; explicit seeds; thread-count independent).

See `memsim.kernels.flips` for the stream layout, the in-place convention and the
reproducibility contract, `memsim.kernels.rng` for the generators, and
`memsim.kernels.reference` for the slow numpy references the tests compare against, and
`memsim.kernels.xnor` for BNN inference on packed words (XNOR and popcount).
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
from memsim.kernels.xnor import (
    FloatThresholds,
    LinearStack,
    binary_conv3x3,
    binary_conv3x3_sign,
    pack_signs,
    xnor_linear,
    xnor_linear_sign,
    xnor_mlp,
)

__all__ = [
    "DEFAULT_CHUNK_BITS",
    "DEFAULT_CHUNK_CELLS",
    "FlipCounts",
    "FloatThresholds",
    "LinearStack",
    "WeakCells",
    "apply_persistent_",
    "binary_conv3x3",
    "binary_conv3x3_sign",
    "bit_changes",
    "factor_cap",
    "factor_truncation_loss",
    "flip_bits_",
    "flip_levels_",
    "pack_signs",
    "set_levels_",
    "weak_cells",
    "xnor_linear",
    "xnor_linear_sign",
    "xnor_mlp",
]
