"""Encodings of weight values as bit patterns (codes) of a fixed width.

A *code* is an unsigned integer whose low ``bits`` bits are the pattern stored in memory;
`encode` turns values into codes and `decode` turns (possibly corrupted) codes back into
values. Every code of the width decodes to something, so a decoded bit flip is always a value.

==================  ======  =============================================================
encoding            bits    value ↔ code
==================  ======  =============================================================
``binary``          1       +1 ↔ 1, −1 ↔ 0 (0 is not a value)
``unsigned``        1–32    v ↔ v, for raw bytes and unsigned quantisers
``twos_complement`` 2–16    v ↔ v mod 2^b
``sign_magnitude``  2–16    v ↔ sign·2^(b−1) + |v|; two zeros, the negative one decodes to 0
``offset_binary``   2–16    v ↔ v + 2^(b−1)
``float16``         16      IEEE 754 binary16 bits
``bfloat16``        16      upper half of the float32 bits, rounded to nearest even on encode
``float32``         32      IEEE 754 binary32 bits
==================  ======  =============================================================
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from memsim.errors import MemsimError

__all__ = [
    "Encoding",
    "EncodingError",
    "check_bits",
    "check_codes",
    "decode",
    "encode",
    "resolve_encoding",
    "valid_bits",
    "value_range",
]


class EncodingError(MemsimError):
    """A value, code or width that an encoding cannot represent."""


class Encoding(StrEnum):
    """How one element's value is laid out in its bits."""

    BINARY = "binary"
    UNSIGNED = "unsigned"
    TWOS_COMPLEMENT = "twos_complement"
    SIGN_MAGNITUDE = "sign_magnitude"
    OFFSET_BINARY = "offset_binary"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"

    @property
    def is_integer(self) -> bool:
        """Whether values are integers in a contiguous `value_range` (not binary, not floats)."""
        return self in _INTEGER

    @property
    def is_float(self) -> bool:
        """Whether values are floating point numbers stored as raw IEEE bits."""
        return self in _FLOAT


_INTEGER = frozenset({Encoding.UNSIGNED, Encoding.TWOS_COMPLEMENT, Encoding.SIGN_MAGNITUDE,
                      Encoding.OFFSET_BINARY})
_FLOAT = frozenset({Encoding.FLOAT16, Encoding.BFLOAT16, Encoding.FLOAT32})

_VALID_BITS: dict[Encoding, range] = {
    Encoding.BINARY: range(1, 2),
    # Codes are held in uint32, so 32 bits is the widest element.
    Encoding.UNSIGNED: range(1, 33),
    # A signed code needs a sign bit and at least one magnitude bit.
    Encoding.TWOS_COMPLEMENT: range(2, 17),
    Encoding.SIGN_MAGNITUDE: range(2, 17),
    Encoding.OFFSET_BINARY: range(2, 17),
    Encoding.FLOAT16: range(16, 17),
    Encoding.BFLOAT16: range(16, 17),
    Encoding.FLOAT32: range(32, 33),
}


def resolve_encoding(encoding: Encoding | str) -> Encoding:
    """Return the `Encoding` named by ``encoding``; an unknown name lists the valid ones."""
    if isinstance(encoding, Encoding):
        return encoding
    try:
        return Encoding(encoding)
    except ValueError:
        names = ", ".join(e.value for e in Encoding)
        raise EncodingError(f"unknown encoding {encoding!r}; valid: {names}") from None


def valid_bits(encoding: Encoding | str) -> range:
    """The element widths (in bits) that ``encoding`` supports."""
    return _VALID_BITS[resolve_encoding(encoding)]


def check_bits(encoding: Encoding | str, bits: int) -> None:
    """Raise `EncodingError` unless ``encoding`` supports elements of ``bits`` bits."""
    encoding = resolve_encoding(encoding)
    allowed = valid_bits(encoding)
    # bool is an int subclass; a True width is a bug, not 1 bit.
    if not isinstance(bits, int | np.integer) or isinstance(bits, bool) or bits not in allowed:
        span = str(allowed[0]) if len(allowed) == 1 else f"{allowed[0]} to {allowed[-1]}"
        raise EncodingError(f"{encoding} supports {span} bits per element, got {bits!r}")


def value_range(encoding: Encoding | str, bits: int) -> tuple[int, int]:
    """Smallest and largest value of an integer encoding at ``bits`` bits (both inclusive)."""
    encoding = resolve_encoding(encoding)
    check_bits(encoding, bits)
    if encoding is Encoding.UNSIGNED:
        return 0, (1 << bits) - 1
    if encoding is Encoding.SIGN_MAGNITUDE:
        return -((1 << (bits - 1)) - 1), (1 << (bits - 1)) - 1
    if encoding in (Encoding.TWOS_COMPLEMENT, Encoding.OFFSET_BINARY):
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    raise EncodingError(
        f"value_range is defined for integer encodings only, not {encoding} "
        "(binary holds ±1, floats hold IEEE values)")


def _first(array: NDArray[Any], bad: NDArray[np.bool_]) -> tuple[object, str]:
    """The first element of ``array`` where ``bad`` holds, and its index, for messages."""
    flat = int(np.argmax(bad.reshape(-1)))
    index = tuple(int(i) for i in np.unravel_index(flat, bad.shape))
    return array.reshape(-1)[flat].item(), str(index)


def _integer_values(values: NDArray[Any], lo: int, hi: int, what: str) -> NDArray[np.int64]:
    """``values`` as int64 after checking that they are integers in [lo, hi]."""
    kind = values.dtype.kind
    if kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            value, where = _first(values, bad)
            raise EncodingError(f"{what} takes integers; got {value!r} at index {where}")
    elif kind not in "iub":
        raise EncodingError(f"{what} takes integer values, got an array of dtype {values.dtype}")
    if kind == "u":
        # Compare unsigned arrays without a cast to int64 that could wrap huge values.
        bad = values > np.uint64(hi) if hi >= 0 else np.ones(values.shape, bool)
    else:
        bad = (values < lo) | (values > hi)
    if bad.any():
        value, where = _first(values, bad)
        raise EncodingError(f"{what}: value {value!r} at index {where} is outside [{lo}, {hi}]")
    return values.astype(np.int64)


def encode(values: npt.ArrayLike, encoding: Encoding | str, bits: int) -> NDArray[np.uint32]:
    """Codes (uint32, same shape as ``values``) holding each value's pattern in the low bits.

    Integer encodings take integers (integral floats are accepted) and reject values outside
    `value_range`; ``binary`` takes ±1 only; float encodings take any real numbers, rounded
    to nearest even (``bfloat16`` rounds from float32, so the value is first made float32).
    """
    encoding = resolve_encoding(encoding)
    check_bits(encoding, bits)
    array = np.asarray(values)
    what = f"{encoding} {bits}-bit"
    if encoding.is_float:
        if array.dtype.kind not in "fiub":
            raise EncodingError(f"{what} takes real numbers, got an array of dtype {array.dtype}")
        # Overflow to ±inf is the IEEE result of the cast; the warning would only be noise.
        with np.errstate(over="ignore", invalid="ignore"):
            if encoding is Encoding.FLOAT16:
                return array.astype(np.float16).view(np.uint16).astype(np.uint32)
            # A copy, so that the codes never alias the caller's float32 array.
            f32 = array.astype(np.float32).view(np.uint32)
        if encoding is Encoding.FLOAT32:
            return f32
        return _float32_bits_to_bfloat16(f32)
    if encoding is Encoding.BINARY:
        if array.dtype.kind not in "fiu":
            raise EncodingError(f"{what} takes ±1 values, got an array of dtype {array.dtype}")
        bad = (array != 1) & (array != -1)
        if bad.any():
            value, where = _first(array, bad)
            raise EncodingError(f"{what} takes ±1 only; got {value!r} at index {where}")
        return (array > 0).astype(np.uint32)
    lo, hi = value_range(encoding, bits)
    v = _integer_values(array, lo, hi, what)
    if encoding is Encoding.UNSIGNED:
        return v.astype(np.uint32)
    if encoding is Encoding.TWOS_COMPLEMENT:
        return (v & ((1 << bits) - 1)).astype(np.uint32)
    if encoding is Encoding.OFFSET_BINARY:
        return (v + (1 << (bits - 1))).astype(np.uint32)
    # sign_magnitude: zero is always stored as the positive zero.
    sign = (v < 0).astype(np.int64) << (bits - 1)
    return (sign | np.abs(v)).astype(np.uint32)


def _float32_bits_to_bfloat16(f32: NDArray[np.uint32]) -> NDArray[np.uint32]:
    """Upper 16 bits of float32 patterns, rounded to nearest even; NaN stays NaN."""
    wide = f32.astype(np.uint64)
    # Adding 0x7FFF plus the lowest kept bit rounds half to even; a carry into the exponent
    # is the correct result (the next binade, or inf past the largest finite bfloat16).
    rounded = (wide + 0x7FFF + ((wide >> 16) & 1)) >> 16
    truncated = wide >> 16
    nan = (wide & 0x7FFFFFFF) > 0x7F800000
    # Rounding a NaN could carry into the sign bit and truncating one whose payload sits only
    # in the low half would make inf: keep the upper half and set the quiet bit if it is empty.
    nan_code = np.where((truncated & 0x7F) == 0, truncated | 0x40, truncated)
    return np.where(nan, nan_code, rounded).astype(np.uint32)


def check_codes(codes: npt.ArrayLike, bits: int) -> NDArray[np.uint32]:
    """``codes`` as uint32 after checking that they are integers that fit in ``bits`` bits."""
    array = np.asarray(codes)
    if array.dtype.kind not in "iub":
        raise EncodingError(f"codes must be integers, got an array of dtype {array.dtype}")
    if array.dtype.kind == "u":
        bad = array > np.uint64((1 << bits) - 1)
    else:
        bad = (array < 0) | (array > (1 << bits) - 1)
    if bad.any():
        value, where = _first(array, bad)
        raise EncodingError(f"code {value!r} at index {where} does not fit in {bits} bits")
    return array.astype(np.uint32)


def decode(codes: npt.ArrayLike, encoding: Encoding | str, bits: int) -> NDArray[Any]:
    """Values of ``codes`` (same shape): int64 for integer encodings, int8 ±1 for binary,
    float32 for float encodings (NaN and inf patterns decode to NaN and inf)."""
    encoding = resolve_encoding(encoding)
    check_bits(encoding, bits)
    return decode_unchecked(check_codes(codes, bits), encoding, bits)


def decode_unchecked(codes: NDArray[np.uint32], encoding: Encoding, bits: int) -> NDArray[Any]:
    """`decode` for codes already known to be uint32 values that fit in ``bits`` bits."""
    if encoding is Encoding.BINARY:
        return np.where(codes != 0, np.int8(1), np.int8(-1))
    if encoding is Encoding.FLOAT16:
        return codes.astype(np.uint16).view(np.float16).astype(np.float32)
    if encoding is Encoding.BFLOAT16:
        return (codes << np.uint32(16)).view(np.float32)
    if encoding is Encoding.FLOAT32:
        return codes.astype(np.uint32).view(np.float32)
    c = codes.astype(np.int64)
    half = 1 << (bits - 1)
    if encoding is Encoding.UNSIGNED:
        return c
    if encoding is Encoding.TWOS_COMPLEMENT:
        return np.where(c >= half, c - (1 << bits), c)
    if encoding is Encoding.OFFSET_BINARY:
        return c - half
    magnitude = c & (half - 1)
    return np.where(c >= half, -magnitude, magnitude)
