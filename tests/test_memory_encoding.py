"""Encodings: exhaustive and property round trips, hand-checked bit patterns, rejections."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.errors import MemsimError
from memsim.memory.encoding import (
    Encoding,
    EncodingError,
    check_bits,
    decode,
    encode,
    resolve_encoding,
    valid_bits,
    value_range,
)

INTEGER_ENCODINGS = [e for e in Encoding if e.is_integer]
INTEGER_CASES = [(e, b) for e in INTEGER_ENCODINGS for b in valid_bits(e)]
SMALL_INTEGER_CASES = [(e, b) for e, b in INTEGER_CASES if b <= 16]


def _ids(case: tuple[Encoding, int]) -> str:
    return f"{case[0]}-{case[1]}"


# --- integer encodings --------------------------------------------------------------------


@pytest.mark.parametrize("case", SMALL_INTEGER_CASES, ids=_ids)
def test_every_value_round_trips(case: tuple[Encoding, int]) -> None:
    encoding, bits = case
    lo, hi = value_range(encoding, bits)
    values = np.arange(lo, hi + 1, dtype=np.int64)
    codes = encode(values, encoding, bits)
    assert codes.dtype == np.uint32
    assert int(codes.max()) < 1 << bits
    # Distinct values get distinct codes, so the encoding is injective.
    assert np.unique(codes).size == values.size
    decoded = decode(codes, encoding, bits)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, values)


@pytest.mark.parametrize("case", SMALL_INTEGER_CASES, ids=_ids)
def test_every_code_decodes_into_range(case: tuple[Encoding, int]) -> None:
    encoding, bits = case
    lo, hi = value_range(encoding, bits)
    codes = np.arange(1 << bits, dtype=np.uint32)
    values = decode(codes, encoding, bits)
    assert values.min() >= lo and values.max() <= hi
    again = encode(values, encoding, bits)
    if encoding is Encoding.SIGN_MAGNITUDE:
        # The negative zero (only the sign bit set) decodes to 0, stored as the positive zero.
        negative_zero = 1 << (bits - 1)
        assert values[negative_zero] == 0
        codes = codes.copy()
        codes[negative_zero] = 0
    np.testing.assert_array_equal(again, codes)


@settings(deadline=None, max_examples=150)
@given(st.data())
def test_random_arrays_round_trip(data: st.DataObject) -> None:
    encoding, bits = data.draw(st.sampled_from(INTEGER_CASES), label="case")
    lo, hi = value_range(encoding, bits)
    dtype = data.draw(st.sampled_from([np.int64, np.float64] if bits <= 32 else [np.int64]))
    values = data.draw(hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=3,
                                                              min_side=0, max_side=5),
                                  elements=st.integers(lo, hi)), label="values")
    codes = encode(values.astype(dtype), encoding, bits)
    assert codes.shape == values.shape and codes.dtype == np.uint32
    assert codes.size == 0 or int(codes.max()) < 1 << bits
    np.testing.assert_array_equal(decode(codes, encoding, bits), values)


@settings(deadline=None, max_examples=150)
@given(st.data())
def test_out_of_range_values_are_rejected(data: st.DataObject) -> None:
    encoding, bits = data.draw(st.sampled_from(INTEGER_CASES), label="case")
    lo, hi = value_range(encoding, bits)
    bad = data.draw(st.one_of(st.integers(lo - 2**40, lo - 1), st.integers(hi + 1, hi + 2**40)))
    values = np.array([lo, bad, hi], dtype=np.int64)
    with pytest.raises(EncodingError, match=rf"value {bad} at index \(1,\) is outside") as info:
        encode(values, encoding, bits)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, MemsimError)


def test_unsigned_arrays_beyond_int64_are_rejected_not_wrapped() -> None:
    values = np.array([2**64 - 1], dtype=np.uint64)  # would wrap to -1 as int64
    with pytest.raises(EncodingError, match="outside"):
        encode(values, Encoding.TWOS_COMPLEMENT, 8)


def test_non_integral_values_are_rejected() -> None:
    with pytest.raises(EncodingError, match=r"takes integers; got .*2\.5"):
        encode(np.array([1.0, 2.5]), Encoding.TWOS_COMPLEMENT, 4)
    with pytest.raises(EncodingError, match="takes integers"):
        encode(np.array([np.nan]), Encoding.OFFSET_BINARY, 4)
    with pytest.raises(EncodingError, match="dtype"):
        encode(np.array(["1"]), Encoding.UNSIGNED, 4)


def test_value_range() -> None:
    assert value_range(Encoding.TWOS_COMPLEMENT, 4) == (-8, 7)
    assert value_range(Encoding.OFFSET_BINARY, 4) == (-8, 7)
    assert value_range(Encoding.SIGN_MAGNITUDE, 4) == (-7, 7)
    assert value_range(Encoding.UNSIGNED, 8) == (0, 255)
    assert value_range(Encoding.UNSIGNED, 32) == (0, 2**32 - 1)
    for encoding in (Encoding.BINARY, Encoding.FLOAT16):
        with pytest.raises(EncodingError, match="integer encodings only"):
            value_range(encoding, valid_bits(encoding)[0])


# --- hand-checked patterns ----------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "value", "code"), [
    (Encoding.TWOS_COMPLEMENT, -1, 0b1111),
    (Encoding.TWOS_COMPLEMENT, -8, 0b1000),
    (Encoding.TWOS_COMPLEMENT, 7, 0b0111),
    (Encoding.SIGN_MAGNITUDE, -3, 0b1011),
    (Encoding.SIGN_MAGNITUDE, 3, 0b0011),
    (Encoding.SIGN_MAGNITUDE, 0, 0b0000),
    (Encoding.OFFSET_BINARY, -8, 0b0000),
    (Encoding.OFFSET_BINARY, 7, 0b1111),
    (Encoding.OFFSET_BINARY, 0, 0b1000),
    (Encoding.UNSIGNED, 13, 0b1101),
])
def test_known_4_bit_patterns(encoding: Encoding, value: int, code: int) -> None:
    assert int(encode(np.array([value]), encoding, 4)[0]) == code
    assert int(decode(np.array([code]), encoding, 4)[0]) == value


def test_sign_magnitude_negative_zero_decodes_to_zero() -> None:
    assert int(decode(np.array([0b1000]), Encoding.SIGN_MAGNITUDE, 4)[0]) == 0


def test_binary() -> None:
    codes = encode(np.array([-1, 1, 1, -1]), Encoding.BINARY, 1)
    np.testing.assert_array_equal(codes, [0, 1, 1, 0])
    decoded = decode(codes, Encoding.BINARY, 1)
    assert decoded.dtype == np.int8
    np.testing.assert_array_equal(decoded, [-1, 1, 1, -1])
    np.testing.assert_array_equal(encode(np.array([-1.0, 1.0]), Encoding.BINARY, 1), [0, 1])
    with pytest.raises(EncodingError, match=r"±1 only; got 0 at index \(1,\)"):
        encode(np.array([1, 0]), Encoding.BINARY, 1)


# --- widths, names, codes -----------------------------------------------------------------


def test_valid_bits() -> None:
    assert valid_bits(Encoding.BINARY) == range(1, 2)
    assert valid_bits(Encoding.UNSIGNED) == range(1, 33)
    for encoding in (Encoding.TWOS_COMPLEMENT, Encoding.SIGN_MAGNITUDE, Encoding.OFFSET_BINARY):
        assert 2 in valid_bits(encoding) and 8 in valid_bits(encoding)
        assert 1 not in valid_bits(encoding)
    assert list(valid_bits(Encoding.FLOAT16)) == [16]
    assert list(valid_bits(Encoding.BFLOAT16)) == [16]
    assert list(valid_bits(Encoding.FLOAT32)) == [32]


@pytest.mark.parametrize("encoding", list(Encoding))
def test_unsupported_widths_are_rejected(encoding: Encoding) -> None:
    allowed = valid_bits(encoding)
    for bits in (0, allowed[0] - 1, allowed[-1] + 1, 64):
        with pytest.raises(EncodingError, match=f"{encoding} supports .* got {bits}"):
            check_bits(encoding, bits)
        with pytest.raises(EncodingError, match="supports"):
            encode(np.zeros(1), encoding, bits)
    with pytest.raises(EncodingError, match="supports"):
        check_bits(encoding, True)
    check_bits(encoding, allowed[-1])


def test_resolve_encoding() -> None:
    assert resolve_encoding("twos_complement") is Encoding.TWOS_COMPLEMENT
    assert resolve_encoding(Encoding.FLOAT16) is Encoding.FLOAT16
    with pytest.raises(EncodingError, match="unknown encoding 'twos'; valid: binary, unsigned"):
        resolve_encoding("twos")
    # Functions take names as well as members.
    np.testing.assert_array_equal(encode([-1], "twos_complement", 4), [15])


def test_decode_rejects_bad_codes() -> None:
    with pytest.raises(EncodingError, match=r"code 16 at index \(1,\) does not fit in 4 bits"):
        decode(np.array([0, 16]), Encoding.UNSIGNED, 4)
    with pytest.raises(EncodingError, match="does not fit"):
        decode(np.array([-1]), Encoding.TWOS_COMPLEMENT, 4)
    with pytest.raises(EncodingError, match="must be integers"):
        decode(np.array([1.0]), Encoding.UNSIGNED, 4)


def test_shapes_are_kept() -> None:
    for shape in [(), (0,), (2, 0, 3), (1,), (2, 3)]:
        values = np.ones(shape, dtype=np.int64)
        codes = encode(values, Encoding.OFFSET_BINARY, 3)
        assert codes.shape == shape
        assert decode(codes, Encoding.OFFSET_BINARY, 3).shape == shape
        assert decode(encode(values, Encoding.FLOAT32, 32), Encoding.FLOAT32, 32).shape == shape


# --- floats -------------------------------------------------------------------------------


def _bits32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def test_float16_every_code() -> None:
    codes = np.arange(1 << 16, dtype=np.uint32)
    values = decode(codes, Encoding.FLOAT16, 16)
    assert values.dtype == np.float32
    nan = np.isnan(values)
    assert nan.sum() == 2 * 1023  # exponent all ones, mantissa non-zero, either sign
    np.testing.assert_array_equal(np.isinf(values).sum(), 2)
    again = encode(values, Encoding.FLOAT16, 16)
    np.testing.assert_array_equal(again[~nan], codes[~nan])
    # A NaN may come back quieted, but it is still a NaN.
    assert np.isnan(decode(again[nan], Encoding.FLOAT16, 16)).all()


@settings(deadline=None, max_examples=200)
@given(hnp.arrays(np.float64, st.integers(0, 20), elements=st.floats(allow_nan=True)))
def test_float16_encodes_as_numpy_rounds(values: np.ndarray) -> None:
    codes = encode(values, Encoding.FLOAT16, 16)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
    finite_or_inf = ~np.isnan(values)
    np.testing.assert_array_equal(codes[finite_or_inf], expected.view(np.uint16)[finite_or_inf])
    assert np.isnan(decode(codes, Encoding.FLOAT16, 16)[~finite_or_inf]).all()


@settings(deadline=None, max_examples=200)
@given(hnp.arrays(np.uint32, st.integers(0, 50)))
def test_float32_codes_round_trip_bit_exactly(codes: np.ndarray) -> None:
    values = decode(codes, Encoding.FLOAT32, 32)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(_bits32(values), codes)
    np.testing.assert_array_equal(encode(values, Encoding.FLOAT32, 32), codes)


def test_float32_special_values_and_no_aliasing() -> None:
    values = np.array([np.inf, -np.inf, -0.0, np.nan], dtype=np.float32)
    codes = encode(values, Encoding.FLOAT32, 32)
    np.testing.assert_array_equal(codes, _bits32(values))
    codes[0] = 0
    assert values[0] == np.inf  # the codes are a copy


def _round_to_bfloat16(x: float) -> float:
    """Reference: round a float32 value to the nearest bfloat16, ties to even."""
    if math.isnan(x) or math.isinf(x) or x == 0:
        return x
    _, exponent = math.frexp(abs(x))  # abs(x) = m·2^exponent, m in [0.5, 1)
    # 8 significant bits; below 2^-126 the spacing stays that of the smallest normal binade.
    quantum = 2.0 ** (max(exponent, -125) - 8)
    rounded = round(abs(x) / quantum) * quantum  # round() ties to even
    if rounded >= 2.0**128:
        rounded = math.inf
    return math.copysign(rounded, x)


@settings(deadline=None, max_examples=300)
@given(st.lists(st.floats(width=32, allow_nan=False), max_size=20))
def test_bfloat16_rounds_to_nearest_even(xs: list[float]) -> None:
    values = np.array(xs, dtype=np.float32)
    decoded = decode(encode(values, Encoding.BFLOAT16, 16), Encoding.BFLOAT16, 16)
    expected = np.array([_round_to_bfloat16(float(x)) for x in values], dtype=np.float32)
    np.testing.assert_array_equal(_bits32(decoded), _bits32(expected))


def test_bfloat16_known_roundings() -> None:
    one = 1.0
    ulp = 2.0**-7
    values = np.array([one + ulp / 2,            # tie, rounds to even (1.0)
                       one + 3 * ulp / 2,        # tie, rounds to even (1 + 2 ulp)
                       one + ulp / 2 + 2**-20,   # above the tie, rounds up
                       3.3895313892515355e38,    # largest finite bfloat16
                       3.4e38],                  # rounds past it to inf
                      dtype=np.float32)
    decoded = decode(encode(values, Encoding.BFLOAT16, 16), Encoding.BFLOAT16, 16)
    np.testing.assert_array_equal(decoded, [1.0, 1.0 + 2 * ulp, 1.0 + ulp,
                                            3.3895313892515355e38, np.inf])


def test_bfloat16_every_code_round_trips_and_nan_stays_nan() -> None:
    codes = np.arange(1 << 16, dtype=np.uint32)
    values = decode(codes, Encoding.BFLOAT16, 16)
    # Every bfloat16 is exactly representable, so every code (NaN payloads too) comes back.
    np.testing.assert_array_equal(encode(values, Encoding.BFLOAT16, 16), codes)
    assert np.isnan(values).sum() == 2 * 127
    # float32 NaNs whose payload lies only in the dropped half must not become inf.
    nans = np.array([0x7F800001, 0xFF800001, 0x7FC00000, 0x7FFFFFFF], dtype=np.uint32)
    decoded = decode(encode(nans.view(np.float32), Encoding.BFLOAT16, 16),
                     Encoding.BFLOAT16, 16)
    assert np.isnan(decoded).all()
    np.testing.assert_array_equal(np.signbit(decoded), [False, True, False, False])
