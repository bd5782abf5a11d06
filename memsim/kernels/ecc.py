"""SEC-DED (72, 64) Hamming code and bit interleaving over packed words (numba, no torch).

The code is the textbook extended Hamming code: the 64 data bits sit at the positions 1..71
of a Hamming codeword that are not powers of two, check bit j (j = 0..6) is the parity of the
positions with bit j set, and check bit 7 is the parity of all 71 others, so that one error is
corrected and two are detected. It is stored systematically, as hardware does: a codeword is
the 64 data bits followed by the 8 check bits (one byte per data word here).

Decoding a word gives one of four outcomes (`ECC_*`): clean; one error corrected (in a data or
a check bit); detected but uncorrectable (an even number of errors, or a syndrome pointing
outside the codeword). Three or more errors can be miscorrected silently, like real hardware;
callers that know the original data count those separately.

Interleaving of degree D spreads D codewords of L bits over D·L physically adjacent bits:
physical bit ``t·D + (w mod D)`` of block ``w // D`` holds bit t of codeword w, so neighbouring
cells (an MLC cell's bits, a clustered row fault) land in different codewords.
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numpy.typing import NDArray

from memsim.kernels.flips import popcount64
from memsim.kernels.rng import jit, jit_parallel

ECC_CLEAN, ECC_CORRECTED, ECC_UNCORRECTABLE = 0, 1, 2
DATA_BITS = 64
CHECK_BITS = 8
CODEWORD_BITS = DATA_BITS + CHECK_BITS


def _hamming_positions() -> NDArray[np.int64]:
    """Codeword position (1..71) of each data bit: the positions that are not powers of two."""
    return np.array([p for p in range(1, 72) if p & (p - 1)], dtype=np.int64)


DATA_POSITIONS = _hamming_positions()
assert DATA_POSITIONS.shape[0] == DATA_BITS


def _tables() -> tuple[NDArray[np.uint8], NDArray[np.int8]]:
    # Syndrome contribution of each byte value at each byte lane: 8 lookups per word.
    syndrome = np.zeros((8, 256), dtype=np.uint8)
    for lane in range(8):
        for value in range(256):
            s = 0
            for k in range(8):
                if value >> k & 1:
                    s ^= int(DATA_POSITIONS[8 * lane + k])
            syndrome[lane, value] = s
    # Which data bit a syndrome points at (-1: a check-bit position or outside the codeword).
    data_bit = np.full(128, -1, dtype=np.int8)
    for i, p in enumerate(DATA_POSITIONS):
        data_bit[p] = i
    return syndrome, data_bit


SYNDROME_TABLE, SYNDROME_TO_DATA_BIT = _tables()


@jit
def _syndrome(word: np.uint64, table: NDArray[np.uint8]) -> int:
    s = 0
    for lane in range(8):
        s ^= int(table[lane, int((word >> np.uint64(8 * lane)) & np.uint64(0xFF))])
    return s


@jit_parallel
def _encode_kernel(data: NDArray[np.uint64], table: NDArray[np.uint8],
                   check: NDArray[np.uint8]) -> None:
    for w in prange(data.shape[0]):
        word = data[w]
        s = _syndrome(word, table)
        parity = (popcount64(word) + popcount64(np.uint64(s))) & 1
        check[w] = np.uint8(s | (parity << 7))


@jit_parallel
def _decode_kernel(data: NDArray[np.uint64], check: NDArray[np.uint8],
                   table: NDArray[np.uint8], to_data_bit: NDArray[np.int8],
                   outcome: NDArray[np.uint8]) -> None:
    for w in prange(data.shape[0]):
        word = data[w]
        c = int(check[w])
        s = _syndrome(word, table) ^ (c & 0x7F)
        parity = (popcount64(word) + popcount64(np.uint64(c))) & 1
        if s == 0 and parity == 0:
            outcome[w] = 0
        elif parity == 1:
            if s == 0 or (s & (s - 1)) == 0:
                # the overall parity bit or a Hamming check bit: data intact
                outcome[w] = 1
                if s == 0:
                    check[w] = np.uint8(c ^ 0x80)
                else:
                    check[w] = np.uint8(c ^ s)
            elif to_data_bit[s] >= 0:
                data[w] = word ^ (np.uint64(1) << np.uint64(to_data_bit[s]))
                outcome[w] = 1
            else:
                outcome[w] = 2  # syndrome beyond position 71: at least three errors
        else:
            outcome[w] = 2


def secded_encode(data: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """The 8 check bits of each 64-bit data word."""
    data = np.ascontiguousarray(data, dtype=np.uint64)
    check = np.empty(data.shape[0], dtype=np.uint8)
    _encode_kernel(data, SYNDROME_TABLE, check)
    return check


def secded_decode_(data: NDArray[np.uint64], check: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Correct `data` and `check` in place; the outcome (`ECC_*`) of each word."""
    if data.shape != check.shape:
        raise ValueError(f"{data.shape[0]} data words but {check.shape[0]} check bytes")
    outcome = np.empty(data.shape[0], dtype=np.uint8)
    _decode_kernel(data, check, SYNDROME_TABLE, SYNDROME_TO_DATA_BIT, outcome)
    return outcome


@jit
def _interleave_kernel(data: NDArray[np.uint64], check: NDArray[np.uint8], has_check: bool,
                       degree: int, out: NDArray[np.uint64]) -> None:
    length = DATA_BITS + (CHECK_BITS if has_check else 0)
    for w in range(data.shape[0]):
        base = (w // degree) * degree * length + (w % degree)
        word = data[w]
        for t in range(length):
            if t < DATA_BITS:
                bit = (word >> np.uint64(t)) & np.uint64(1)
            else:
                bit = np.uint64((int(check[w]) >> (t - DATA_BITS)) & 1)
            if bit:
                p = base + t * degree
                out[p >> 6] |= np.uint64(1) << np.uint64(p & 63)


@jit
def _deinterleave_kernel(stored: NDArray[np.uint64], has_check: bool, degree: int,
                         data: NDArray[np.uint64], check: NDArray[np.uint8]) -> None:
    length = DATA_BITS + (CHECK_BITS if has_check else 0)
    for w in range(data.shape[0]):
        base = (w // degree) * degree * length + (w % degree)
        word = np.uint64(0)
        c = 0
        for t in range(length):
            p = base + t * degree
            if (stored[p >> 6] >> np.uint64(p & 63)) & np.uint64(1):
                if t < DATA_BITS:
                    word |= np.uint64(1) << np.uint64(t)
                else:
                    c |= 1 << (t - DATA_BITS)
        data[w] = word
        if has_check:
            check[w] = np.uint8(c)


def stored_bits(n_codewords: int, has_check: bool) -> int:
    """Physical bits of `n_codewords` codewords (a multiple of the interleaving degree)."""
    return n_codewords * (CODEWORD_BITS if has_check else DATA_BITS)


def interleave(data: NDArray[np.uint64], check: NDArray[np.uint8] | None,
               degree: int) -> NDArray[np.uint64]:
    """Lay codewords (data words plus optional check bytes) out physically, interleaved.

    `data` must hold a multiple of `degree` words (pad with zero words).
    """
    if degree < 1 or data.shape[0] % degree:
        raise ValueError(f"{data.shape[0]} words are not a multiple of the degree {degree}")
    has_check = check is not None
    n_bits = stored_bits(data.shape[0], has_check)
    out = np.zeros(-(-n_bits // 64), dtype=np.uint64)
    _interleave_kernel(np.ascontiguousarray(data, dtype=np.uint64),
                       check if check is not None else np.zeros(0, np.uint8), has_check,
                       degree, out)
    return out


def deinterleave(stored: NDArray[np.uint64], n_codewords: int, has_check: bool,
                 degree: int) -> tuple[NDArray[np.uint64], NDArray[np.uint8] | None]:
    """The inverse of `interleave`: data words and check bytes (None without ECC)."""
    data = np.empty(n_codewords, dtype=np.uint64)
    check = np.empty(n_codewords if has_check else 0, dtype=np.uint8)
    _deinterleave_kernel(np.ascontiguousarray(stored, dtype=np.uint64), has_check, degree,
                         data, check)
    return data, (check if has_check else None)
