"""Memory images: packing against a big-integer reference, bit order, flips, diffs, errors."""

from __future__ import annotations

from collections.abc import Callable

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memsim.memory.image as image_module
from memsim.errors import MemsimError
from memsim.kernels import bit_changes
from memsim.memory import Encoding, EncodingError, ImageError, MemoryImage, Region
from memsim.memory.encoding import decode, valid_bits

Layout = dict[str, tuple[np.ndarray, Encoding, int]]

SHAPES = st.one_of(st.just((1,)), st.just((0,)),
                   hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    """1–5 regions of random shapes, encodings and widths, holding random codes."""
    result: Layout = {}
    for i in range(draw(st.integers(1, 5))):
        encoding = draw(st.sampled_from(list(Encoding)))
        bits = draw(st.sampled_from(list(valid_bits(encoding))))
        shape = draw(SHAPES)
        codes = draw(hnp.arrays(np.uint32, shape, elements=st.integers(0, (1 << bits) - 1)))
        result[f"r{i}"] = (codes, encoding, bits)
    return result


def reference_words(layout: Layout) -> np.ndarray:
    """The image's words, built one element at a time as one big integer (slow, obvious)."""
    stream = 0
    offset = 0
    for codes, _, bits in layout.values():
        for code in codes.reshape(-1):
            stream |= int(code) << offset
            offset += bits
    n_words = -(-offset // 64)
    return np.array([(stream >> (64 * i)) & (2**64 - 1) for i in range(n_words)],
                    dtype=np.uint64)


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, with NaN equal to NaN (decoded float patterns)."""
    return a.dtype == b.dtype and a.shape == b.shape and bool(
        np.all((a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b))


def check_layout(image: MemoryImage, layout: Layout) -> None:
    n_bits = sum(codes.size * bits for codes, _, bits in layout.values())
    assert image.n_bits == n_bits
    assert image.words.dtype == np.uint64 and image.words.flags.c_contiguous
    assert len(image.words) == -(-n_bits // 64)
    np.testing.assert_array_equal(image.words, reference_words(layout))  # incl. zero padding
    offset = 0
    for region, (name, (codes, encoding, bits)) in zip(image.regions, layout.items(),
                                                        strict=True):
        assert (region.name, region.shape, region.bits, region.encoding, region.bit_offset) == (
            name, codes.shape, bits, encoding, offset)
        assert region.n_elements == codes.size and region.n_bits == codes.size * bits
        offset += region.n_bits


# --- packing ------------------------------------------------------------------------------


@settings(deadline=None, max_examples=200)
@given(layouts())
def test_pack_codes_matches_reference_and_round_trips(layout: Layout) -> None:
    image = MemoryImage.pack_codes(layout)
    check_layout(image, layout)
    decoded = image.unpack_all()
    assert list(decoded) == list(layout)
    for name, (codes, encoding, bits) in layout.items():
        got = image.codes(name)
        assert got.dtype == np.uint32
        np.testing.assert_array_equal(got, codes)
        assert same_values(decoded[name], decode(codes, encoding, bits))
        assert same_values(image.unpack(name), decoded[name])


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_chunked_and_byte_copy_paths_agree_with_reference(
        monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    layout = {
        "a": (rng.integers(0, 2**3, 101, dtype=np.uint32), Encoding.UNSIGNED, 3),
        "b": (rng.integers(0, 2**32, 37, dtype=np.uint32), Encoding.FLOAT32, 32),  # misaligned
        "c": (rng.integers(0, 2**5, (5, 9), dtype=np.uint32), Encoding.TWOS_COMPLEMENT, 5),
        "d": (rng.integers(0, 2**8, 77, dtype=np.uint32), Encoding.UNSIGNED, 8),
        "e": (rng.integers(0, 2**16, 33, dtype=np.uint32), Encoding.BFLOAT16, 16),
    }
    monkeypatch.setattr(image_module, "_CHUNK", chunk)
    for little in (True, False):  # False forces the generic path for byte-aligned regions
        monkeypatch.setattr(image_module, "_LITTLE_ENDIAN_HOST", little)
        image = MemoryImage.pack_codes(layout)
        check_layout(image, layout)
        for name, (codes, _, _) in layout.items():
            np.testing.assert_array_equal(image.codes(name), codes)


def test_pack_encodes_values() -> None:
    weights = np.array([[-8, 7, 0], [3, -1, -3]])
    signs = np.array([1, -1, -1, 1, 1])
    floats = np.array([0.1, -2.5, np.inf, np.nan], dtype=np.float32)
    image = MemoryImage.pack({"w": (weights, Encoding.TWOS_COMPLEMENT, 4),
                              "s": (signs, Encoding.BINARY, 1),
                              "f": (floats, "float32", 32)})
    np.testing.assert_array_equal(image.unpack("w"), weights)
    np.testing.assert_array_equal(image.unpack("s"), signs)
    assert same_values(image.unpack("f"), floats)
    np.testing.assert_array_equal(image.codes("w"), [[8, 7, 0], [3, 15, 13]])
    assert image.n_bits == 6 * 4 + 5 + 4 * 32
    assert image.region("f").encoding is Encoding.FLOAT32
    with pytest.raises(EncodingError, match="outside"):
        MemoryImage.pack({"w": (np.array([8]), Encoding.TWOS_COMPLEMENT, 4)})
    with pytest.raises(EncodingError, match="does not fit in 4 bits"):
        MemoryImage.pack_codes({"w": (np.array([16]), Encoding.UNSIGNED, 4)})


def test_empty_image() -> None:
    image = MemoryImage.pack({})
    assert image.n_bits == 0 and image.words.size == 0 and image.regions == ()
    assert image.to_bytes() == b"" and image.unpack_all() == {}
    assert image.diff(image.copy()) == (0, 0)


def test_large_4_bit_region_round_trips() -> None:
    values = np.random.default_rng(0).integers(-8, 8, 3_000_001)
    image = MemoryImage.pack({"head": (np.array([1, 2]), Encoding.UNSIGNED, 3),  # misaligns
                              "w": (values, Encoding.TWOS_COMPLEMENT, 4)})
    assert image.n_bits == 6 + 4 * values.size
    np.testing.assert_array_equal(image.unpack("w"), values)


# --- bit flips ----------------------------------------------------------------------------


def flip(image: MemoryImage, k: int) -> MemoryImage:
    words = image.words.copy()
    words[k // 64] ^= np.uint64(1) << np.uint64(k % 64)
    return image.with_words(words)


def predicted_change(encoding: Encoding, bits: int, j: int,
                     old: float, set_bit: bool) -> Callable[[float], bool]:
    """What the new decoded value must satisfy after flipping bit j of a code."""
    step = 2**j if set_bit else -(2**j)
    msb = j == bits - 1
    if encoding in (Encoding.UNSIGNED, Encoding.OFFSET_BINARY):
        return lambda new: new - old == step
    if encoding is Encoding.TWOS_COMPLEMENT:
        if msb:  # the sign bit weighs -2^(b-1): setting it subtracts, and the sign changes
            return lambda new: new - old == -step and (new < 0) != (old < 0)
        return lambda new: new - old == step
    if encoding is Encoding.SIGN_MAGNITUDE:
        if msb:
            return lambda new: new == -old
        return lambda new: abs(new) - abs(old) == step and (new * old >= 0)
    if encoding is Encoding.BINARY:
        return lambda new: new == -old
    return lambda new: True  # floats: checked on the bit patterns


@settings(deadline=None, max_examples=300)
@given(layouts().filter(lambda layout: any(c.size for c, _, _ in layout.values())), st.data())
def test_one_flip_changes_one_element_as_the_encoding_predicts(layout: Layout,
                                                               data: st.DataObject) -> None:
    image = MemoryImage.pack_codes(layout)
    k = data.draw(st.integers(0, image.n_bits - 1), label="k")
    flipped = flip(image, k)
    region, element, j = image.region_of_bit(k)
    assert region.bit_offset + element * region.bits + j == k
    assert image.diff(flipped) == ((0, 1) if image.bit(k) else (1, 0))
    assert flipped.bit(k) == 1 - image.bit(k)
    for other in image.regions:
        before = image.codes(other.name).reshape(-1)
        after = flipped.codes(other.name).reshape(-1)
        changed = np.flatnonzero(before != after)
        if other.name != region.name:
            assert changed.size == 0
            continue
        assert changed.tolist() == [element]
        assert int(after[element]) == int(before[element]) ^ (1 << j)
        set_bit = bool(after[element] >> j & 1)
        old = image.unpack(region.name).reshape(-1)[element]
        new = flipped.unpack(region.name).reshape(-1)[element]
        if region.encoding in (Encoding.FLOAT32, Encoding.BFLOAT16):
            # Decoded floats keep the code's bits (bfloat16 in the upper half).
            shift = 16 if region.encoding is Encoding.BFLOAT16 else 0
            assert int(new.view(np.uint32)) == int(old.view(np.uint32)) ^ (1 << (j + shift))
        else:
            assert predicted_change(region.encoding, region.bits, j, old.item(), set_bit)(
                new.item())


@pytest.mark.parametrize(("encoding", "code", "j", "before", "after"), [
    (Encoding.TWOS_COMPLEMENT, 0b0011, 3, 3, -5),
    (Encoding.TWOS_COMPLEMENT, 0b1111, 0, -1, -2),
    (Encoding.TWOS_COMPLEMENT, 0b1000, 3, -8, 0),
    (Encoding.OFFSET_BINARY, 0b1000, 3, 0, -8),
    (Encoding.OFFSET_BINARY, 0b0000, 1, -8, -6),
    (Encoding.SIGN_MAGNITUDE, 0b0011, 3, 3, -3),
    (Encoding.SIGN_MAGNITUDE, 0b1011, 2, -3, -7),
])
def test_flip_examples(encoding: Encoding, code: int, j: int, before: int, after: int) -> None:
    image = MemoryImage.pack_codes({"pad": (np.zeros(5, np.uint32), Encoding.UNSIGNED, 13),
                                    "x": (np.array([code]), encoding, 4)})
    assert int(image.unpack("x")[0]) == before
    assert int(flip(image, 65 + j).unpack("x")[0]) == after


# --- bytes, bits, diff --------------------------------------------------------------------


@settings(deadline=None, max_examples=100)
@given(st.binary(max_size=100), st.data())
def test_from_bytes_bit_order(data: bytes, draw: st.DataObject) -> None:
    image = MemoryImage.from_bytes(data)
    assert image.to_bytes() == data
    assert image.n_bits == 8 * len(data)
    assert image.regions == (Region("data", (len(data),), 8, Encoding.UNSIGNED, 0),)
    stream = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    assert [image.bit(k) for k in range(image.n_bits)] == stream.tolist()
    np.testing.assert_array_equal(image.unpack("data"), list(data))
    if data:
        k = draw.draw(st.integers(0, 8 * len(data) - 1))
        flipped = bytearray(data)
        flipped[k // 8] ^= 1 << (k % 8)
        assert flip(image, k).to_bytes() == bytes(flipped)


def test_from_bytes_name_and_to_bytes_of_partial_bytes() -> None:
    assert MemoryImage.from_bytes(b"\x01", name="blob").region("blob").n_elements == 1
    image = MemoryImage.pack_codes({"x": (np.array([0b101, 0b011, 0b111]), Encoding.UNSIGNED, 3)})
    # 9 bits: 101 | 011 <<3 | 111 << 6 = 0b111_011_101 -> bytes 0xDD, 0x01
    assert image.to_bytes() == bytes([0b11011101, 0b1])


def test_diff_counts_by_direction() -> None:
    layout = {"a": (np.array([0b1010, 0b0000]), Encoding.UNSIGNED, 4),
              "b": (np.array([2**32 - 1, 0]), Encoding.UNSIGNED, 32)}
    image = MemoryImage.pack_codes(layout)
    other = MemoryImage.pack_codes({
        "a": (np.array([0b0110, 0b1111]), Encoding.UNSIGNED, 4),   # 1 + 4 up, 1 down
        "b": (np.array([2**32 - 1 - 0b111, 1 << 31]), Encoding.UNSIGNED, 32)})  # 1 up, 3 down
    assert other.words.size == 2  # the flips span both words
    assert image.diff(other) == (6, 4)
    assert other.diff(image) == (4, 6)
    assert image.diff(image) == (0, 0)
    different = MemoryImage.pack_codes({"a": layout["a"]})
    with pytest.raises(ImageError, match="same layout"):
        image.diff(different)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 3 * (1 << 14) + 5), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_bit_changes_count_each_direction(n: int, seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    old = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    flips = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    flips &= rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)  # sparser
    new = old ^ (flips if density < 0.5 else ~flips)  # chunks of 2^14 words, more or less dense
    up = sum(bin(int(w)).count("1") for w in (old ^ new) & new)
    down = sum(bin(int(w)).count("1") for w in (old ^ new) & old)
    assert bit_changes(old, new) == (up, down)
    with pytest.raises(ValueError, match="differ in length"):
        bit_changes(old, new[:-1] if n else np.zeros(1, np.uint64))


def test_region_of_bit_skips_empty_regions() -> None:
    image = MemoryImage.pack_codes({"a": (np.arange(3), Encoding.UNSIGNED, 5),
                                    "empty": (np.zeros((2, 0), np.uint32), Encoding.UNSIGNED, 7),
                                    "b": (np.zeros((2, 2), np.uint32), Encoding.FLOAT16, 16)})
    expected = [("a", k // 5, k % 5) for k in range(15)] + [
        ("b", k // 16, k % 16) for k in range(64)]
    got = [image.region_of_bit(k) for k in range(image.n_bits)]
    assert [(r.name, e, j) for r, e, j in got] == expected
    assert image.region("empty").n_bits == 0 and image.codes("empty").shape == (2, 0)
    assert image.region_of_bit(np.int64(15))[0].name == "b"


# --- immutability and errors --------------------------------------------------------------


def test_words_are_read_only_and_with_words_validates() -> None:
    image = MemoryImage.pack({"w": (np.arange(-4, 4), Encoding.OFFSET_BINARY, 3)})  # 24 bits
    with pytest.raises(ValueError, match="read-only"):
        image.words[0] = 1
    copy = image.copy()
    assert copy.words is not image.words and np.shares_memory(copy.words, image.words) is False
    np.testing.assert_array_equal(copy.words, image.words)
    with pytest.raises(ImageError, match="1-D uint64 array, got a int64"):
        image.with_words(image.words.astype(np.int64))
    with pytest.raises(ImageError, match="24 bits need 1 words, got 2"):
        image.with_words(np.zeros(2, np.uint64))
    with pytest.raises(ImageError, match="padding bits after bit 24"):
        image.with_words(np.array([1 << 24], np.uint64))
    mine = np.zeros(1, np.uint64)
    image.with_words(mine)
    mine[0] = 1  # the caller's array stays writeable


def test_lookup_errors_are_one_line_memsim_errors() -> None:
    image = MemoryImage.pack_codes({"conv1": (np.zeros(3, np.uint8), Encoding.UNSIGNED, 2),
                                    "fc": (np.zeros(2, np.uint8), Encoding.UNSIGNED, 2)})
    with pytest.raises(ImageError, match="no region 'conv2' in this image; regions: conv1, fc"):
        image.codes("conv2")
    for k in (-1, 10, 1.0):
        with pytest.raises(ImageError, match="outside the image's 10 bits"):
            image.bit(k)  # type: ignore[arg-type]
        with pytest.raises(ImageError, match="outside"):
            image.region_of_bit(k)  # type: ignore[arg-type]
    assert issubclass(ImageError, MemsimError)


def test_inconsistent_layouts_are_rejected() -> None:
    a = Region("a", (2,), 4, Encoding.UNSIGNED, 0)
    words = np.zeros(1, np.uint64)
    with pytest.raises(ImageError, match="starts at bit 9, expected 8"):
        MemoryImage(words, 12, (a, Region("b", (1,), 4, Encoding.UNSIGNED, 9)))
    with pytest.raises(ImageError, match="names repeat"):
        MemoryImage(words, 16, (a, Region("a", (2,), 4, Encoding.UNSIGNED, 8)))
    with pytest.raises(ImageError, match="n_bits is 9 but the regions hold 8"):
        MemoryImage(words, 9, (a,))
    with pytest.raises(ImageError, match="shape must be a tuple"):
        Region("x", [2], 4, Encoding.UNSIGNED, 0)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="non-empty string"):
        Region("", (2,), 4, Encoding.UNSIGNED, 0)
    with pytest.raises(EncodingError, match="supports"):
        Region("x", (2,), 2, Encoding.BINARY, 0)
    assert Region("x", (), 8, "unsigned", 3).encoding is Encoding.UNSIGNED  # type: ignore[arg-type]
    assert Region("x", (), 8, Encoding.UNSIGNED, 3).n_elements == 1
