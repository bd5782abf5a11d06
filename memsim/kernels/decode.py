"""Bit fields of packed words straight to floats through a lookup table (no unpack, no copy).

A quantised layer's weights are ``bits``-wide fields of a packed stream (the layout of
`memsim.memory.image`); the float weight of field i is ``table[row, field]`` with
``row = (i // row_elements) % table rows``: a per-output-channel dequantisation table when the
rows are channels, one row for a per-tensor scale. Building that table with the quantiser's own
dequantisation makes the result bit-identical to decoding the codes and dequantising them, at
the cost of one table load per weight.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from memsim.kernels.rng import jit

__all__ = ["copy_bits_", "decode_fields_"]


@jit
def _decode_kernel(words: NDArray[np.uint64], bit_offset: int, bits: int,
                   table: NDArray[np.float32], row_elements: int,
                   out: NDArray[np.float32]) -> None:
    mask = np.uint64((1 << bits) - 1)
    rows = table.shape[0]
    for b in range(words.shape[0]):
        pos = bit_offset
        for i in range(out.shape[1]):
            word = pos >> 6
            shift = pos & 63
            v = words[b, word] >> np.uint64(shift)
            if shift + bits > 64:
                v |= words[b, word + 1] << np.uint64(64 - shift)
            out[b, i] = table[(i // row_elements) % rows, v & mask]
            pos += bits


def decode_fields_(words: NDArray[np.uint64], bit_offset: int, bits: int,
                   table: NDArray[np.float32], row_elements: int,
                   out: NDArray[np.float32]) -> NDArray[np.float32]:
    """Fill ``out[b, i]`` with ``table[(i // row_elements) % rows, field]``, where field is the
    ``bits``-wide field at stream bit ``bit_offset + i·bits`` of ``words[b]``; returns ``out``.

    ``words``: (B, n_words) uint64, one packed stream per row; ``table``: (rows, 2^bits)
    float32; ``out``: (B, n_fields) float32, C-contiguous.
    """
    if words.ndim != 2 or words.dtype != np.uint64:
        raise ValueError(f"words must be a 2-D uint64 array, got {words.dtype} {words.shape}")
    if out.ndim != 2 or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous 2-D float32 array, got {out.dtype} "
                         f"{out.shape}")
    if out.shape[0] != words.shape[0]:
        raise ValueError(f"{words.shape[0]} streams but {out.shape[0]} output rows")
    if not 1 <= bits <= 32 or table.ndim != 2 or table.shape[1] != 1 << bits \
            or table.dtype != np.float32:
        raise ValueError(f"a {bits}-bit field needs a (rows, {1 << bits}) float32 table, got "
                         f"{table.dtype} {table.shape}")
    if row_elements < 1:
        raise ValueError(f"row_elements must be >= 1, got {row_elements}")
    end_bit = bit_offset + out.shape[1] * bits
    if bit_offset < 0 or end_bit > words.shape[1] * 64:
        raise ValueError(f"fields up to bit {end_bit} do not fit in {words.shape[1]} words")
    _decode_kernel(words, int(bit_offset), int(bits), table, int(row_elements), out)
    return out


@jit
def _copy_bits_kernel(src: NDArray[np.uint64], src_offset: int, dst: NDArray[np.uint64],
                      dst_offset: int, n_bits: int) -> None:
    done = 0
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    while done < n_bits:
        d = dst_offset + done
        d_shift = d & 63
        take = min(n_bits - done, 64 - d_shift)  # never across a destination word
        s = src_offset + done
        s_shift = s & 63
        v = src[s >> 6] >> np.uint64(s_shift)
        if s_shift and s_shift + take > 64:
            v |= src[(s >> 6) + 1] << np.uint64(64 - s_shift)
        mask = ones if take == 64 else (np.uint64(1) << np.uint64(take)) - np.uint64(1)
        dst[d >> 6] = (dst[d >> 6] & ~(mask << np.uint64(d_shift))) \
            | ((v & mask) << np.uint64(d_shift))
        done += take


def copy_bits_(src: NDArray[np.uint64], src_offset: int, dst: NDArray[np.uint64],
               dst_offset: int, n_bits: int) -> NDArray[np.uint64]:
    """Copy stream bits ``[src_offset, src_offset + n_bits)`` of ``src`` to stream bits from
    ``dst_offset`` of ``dst`` (both 1-D uint64 streams, in the `memsim.memory.image` bit
    order), leaving the rest of ``dst`` as it was; returns ``dst``."""
    for name, words, offset in (("src", src, src_offset), ("dst", dst, dst_offset)):
        if words.ndim != 1 or words.dtype != np.uint64:
            raise ValueError(f"{name} must be a 1-D uint64 array, got {words.dtype} "
                             f"{words.shape}")
        if offset < 0 or n_bits < 0 or offset + n_bits > words.size * 64:
            raise ValueError(f"{name} bits [{offset}, {offset + n_bits}) do not fit in "
                             f"{words.size} words")
    _copy_bits_kernel(src, int(src_offset), dst, int(dst_offset), int(n_bits))
    return dst
