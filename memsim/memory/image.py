"""A memory image: encoded tensors packed bit-exactly into 64-bit words, with a region table.

Bit order. The image is one bit stream. Stream bit k is bit ``k % 64`` of word ``k // 64``
(little-endian within a word). Element i of a region occupies stream bits
``[bit_offset + i·bits, bit_offset + (i+1)·bits)``, least-significant code bit first. Regions
follow each other in order with no gaps; only the end of the last word is (zero) padding. So
the stream of an image made `MemoryImage.from_bytes` is the bytes in order, each byte's bits
least-significant first.

An image is immutable: its ``words`` are read-only. A corrupted copy is made by flipping bits
in a copy of the words and wrapping it with `MemoryImage.with_words`.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from memsim.errors import MemsimError
from memsim.kernels.flips import bit_changes
from memsim.memory.encoding import (
    Encoding,
    check_bits,
    check_codes,
    decode_unchecked,
    encode,
    resolve_encoding,
)

__all__ = ["ImageError", "MemoryImage", "Region"]

WORD_BITS = 64

# Elements handled per vectorised step: bounds the temporaries (a few int64 per element)
# while staying long enough that numpy's per-call overhead is negligible.
_CHUNK = 1 << 20

# Byte-aligned 8/16/32-bit regions are plain byte copies, but only if the host stores the
# uint64 words little-endian, i.e. stream byte j is byte j of the words' memory.
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_CODE_DTYPE: dict[int, np.dtype[np.unsignedinteger[Any]]] = {
    8: np.dtype("<u1"), 16: np.dtype("<u2"), 32: np.dtype("<u4")}


class ImageError(MemsimError):
    """An inconsistent image layout, unknown region, out-of-range bit or mismatched words."""


@dataclass(frozen=True)
class Region:
    """One tensor's place in the image."""

    name: str
    shape: tuple[int, ...]
    bits: int
    """Bits per element."""
    encoding: Encoding
    bit_offset: int
    """Stream bit of the first element's least-significant bit."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ImageError(f"a region name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.shape, tuple) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in self.shape):
            raise ImageError(f"region {self.name!r}: shape must be a tuple of non-negative "
                             f"ints, got {self.shape!r}")
        object.__setattr__(self, "encoding", resolve_encoding(self.encoding))
        check_bits(self.encoding, self.bits)
        object.__setattr__(self, "bits", int(self.bits))  # a numpy integer width is fine too
        if not isinstance(self.bit_offset, int) or self.bit_offset < 0:
            raise ImageError(f"region {self.name!r}: bit_offset must be a non-negative int, "
                             f"got {self.bit_offset!r}")

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def n_bits(self) -> int:
        return self.n_elements * self.bits

    @property
    def end_bit(self) -> int:
        """First stream bit after the region."""
        return self.bit_offset + self.n_bits


def _n_words(n_bits: int) -> int:
    return -(-n_bits // WORD_BITS)


def _byte_aligned(region: Region) -> bool:
    return _LITTLE_ENDIAN_HOST and region.bits in _CODE_DTYPE and region.bit_offset % 8 == 0


def _positions(region: Region, start: int, stop: int) -> tuple[NDArray[np.int64],
                                                               NDArray[np.uint64]]:
    """Word index and bit shift of the first bit of elements [start, stop) of ``region``."""
    pos = region.bit_offset + np.arange(start, stop, dtype=np.int64) * region.bits
    return pos >> 6, (pos & 63).astype(np.uint64)


def _scatter(words: NDArray[np.uint64], region: Region, codes: NDArray[np.uint32]) -> None:
    """OR the codes (flat, one per element) into ``words`` at the region's place."""
    if _byte_aligned(region):
        first = region.bit_offset // 8
        raw = codes.astype(_CODE_DTYPE[region.bits]).view(np.uint8)
        words.view(np.uint8)[first:first + raw.size] = raw
        return
    bits = region.bits
    for start in range(0, codes.size, _CHUNK):
        c = codes[start:start + _CHUNK].astype(np.uint64)
        w, s = _positions(region, start, start + c.size)
        # Elements are in stream order, so those sharing a word are adjacent: OR them per word
        # with reduceat; each word then gets one store and fancy-index |= has no duplicates.
        first_of_word = np.empty(c.size, dtype=bool)
        first_of_word[0] = True
        np.not_equal(w[1:], w[:-1], out=first_of_word[1:])
        starts = np.flatnonzero(first_of_word)
        words[w[starts]] |= np.bitwise_or.reduceat(c << s, starts)
        # An element straddling a word boundary puts its high bits in the next word; at most
        # one element straddles each boundary, so again no duplicate indices.
        spill = s > WORD_BITS - bits
        if spill.any():
            words[w[spill] + 1] |= c[spill] >> (np.uint64(WORD_BITS) - s[spill])


def _gather(words: NDArray[np.uint64], region: Region) -> NDArray[np.uint32]:
    """The region's codes, flat, one per element."""
    n = region.n_elements
    if _byte_aligned(region):
        first = region.bit_offset // 8
        raw = words.view(np.uint8)[first:first + n * region.bits // 8]
        return raw.view(_CODE_DTYPE[region.bits]).astype(np.uint32)
    bits = region.bits
    mask = np.uint64((1 << bits) - 1)
    out = np.empty(n, dtype=np.uint32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        w, s = _positions(region, start, stop)
        v = words[w] >> s
        spill = s > WORD_BITS - bits
        if spill.any():
            v[spill] |= words[w[spill] + 1] << (np.uint64(WORD_BITS) - s[spill])
        out[start:stop] = v & mask
    return out


@dataclass(frozen=True, eq=False)
class MemoryImage:
    """Packed words plus the regions they hold; see the module docstring for the bit order."""

    words: NDArray[np.uint64]
    """The bit stream, read-only, ``ceil(n_bits / 64)`` words."""
    n_bits: int
    """Bits in use: the sum of the regions' bits. The rest of the last word is zero."""
    regions: tuple[Region, ...]
    _index: dict[str, int] = field(init=False, repr=False)
    _ends: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        regions = tuple(self.regions)
        expected = 0
        for region in regions:
            if not isinstance(region, Region):
                raise ImageError(f"regions must be Region objects, got {region!r}")
            if region.bit_offset != expected:
                raise ImageError(f"region {region.name!r} starts at bit {region.bit_offset}, "
                                 f"expected {expected} (regions are packed back to back)")
            expected = region.end_bit
        index = {r.name: i for i, r in enumerate(regions)}
        if len(index) != len(regions):
            raise ImageError(f"region names repeat: {[r.name for r in regions]}")
        if self.n_bits != expected:
            raise ImageError(f"n_bits is {self.n_bits} but the regions hold {expected} bits")
        words = self.words
        if not isinstance(words, np.ndarray) or words.dtype != np.uint64 or words.ndim != 1:
            kind = (f"{words.dtype} array of shape {words.shape}"
                    if isinstance(words, np.ndarray) else type(words).__name__)
            raise ImageError(f"words must be a 1-D uint64 array, got a {kind}")
        if words.size != _n_words(expected):
            raise ImageError(f"{expected} bits need {_n_words(expected)} words, "
                             f"got {words.size}")
        tail = expected % WORD_BITS
        if tail and int(words[-1]) >> tail:
            raise ImageError(f"padding bits after bit {expected} are set; they must be zero")
        # A read-only view: the image never changes, while the caller's array stays writeable.
        view = np.ascontiguousarray(words).view()
        view.setflags(write=False)
        object.__setattr__(self, "words", view)
        object.__setattr__(self, "regions", regions)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_ends", tuple(r.end_bit for r in regions))

    # --- construction -------------------------------------------------------------------

    @classmethod
    def pack(cls, tensors: Mapping[str, tuple[npt.ArrayLike, Encoding | str, int]]) -> MemoryImage:
        """Encode each ``name: (values, encoding, bits)`` with `encode` and pack the codes,
        regions in mapping order."""
        return cls.pack_codes({name: (encode(values, encoding, bits), encoding, bits)
                               for name, (values, encoding, bits) in tensors.items()})

    @classmethod
    def pack_codes(cls, codes: Mapping[str, tuple[npt.ArrayLike, Encoding | str, int]],
                   ) -> MemoryImage:
        """Pack already encoded ``name: (codes, encoding, bits)``, regions in mapping order."""
        regions: list[Region] = []
        flat: list[NDArray[np.uint32]] = []
        offset = 0
        for name, (array, encoding, bits) in codes.items():
            encoding = resolve_encoding(encoding)
            check_bits(encoding, bits)
            bits = int(bits)
            checked = check_codes(array, bits)
            shape = tuple(int(d) for d in checked.shape)
            region = Region(name, shape, bits, encoding, offset)
            regions.append(region)
            flat.append(checked.reshape(-1))
            offset = region.end_bit
        words = np.zeros(_n_words(offset), dtype=np.uint64)
        for region, region_codes in zip(regions, flat, strict=True):
            _scatter(words, region, region_codes)
        return cls(words, offset, tuple(regions))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "data") -> MemoryImage:
        """One ``unsigned`` 8-bit region holding ``data``; stream bit k is bit k%8 of byte k//8."""
        return cls.pack_codes({name: (np.frombuffer(data, dtype=np.uint8), Encoding.UNSIGNED, 8)})

    def to_bytes(self) -> bytes:
        """The bit stream as ``ceil(n_bits / 8)`` bytes, each byte's bits LSB first."""
        return self.words.astype("<u8").tobytes()[:-(-self.n_bits // 8)]

    def with_words(self, words: NDArray[np.uint64]) -> MemoryImage:
        """The same layout holding ``words`` (uint64, same length, zero padding).

        No copy is made: the image shares ``words``, which must not change afterwards.
        """
        return MemoryImage(words, self.n_bits, self.regions)

    def copy(self) -> MemoryImage:
        """The same image over its own copy of the words."""
        return self.with_words(self.words.copy())

    # --- reading ------------------------------------------------------------------------

    def region(self, name: str) -> Region:
        """The region called ``name``."""
        try:
            return self.regions[self._index[name]]
        except KeyError:
            names = ", ".join(self._index) or "none"
            raise ImageError(f"no region {name!r} in this image; regions: {names}") from None

    def codes(self, name: str) -> NDArray[np.uint32]:
        """The region's codes (uint32) in the region's shape."""
        region = self.region(name)
        return _gather(self.words, region).reshape(region.shape)

    def unpack(self, name: str) -> NDArray[Any]:
        """The region's decoded values in the region's shape (dtypes as in `decode`)."""
        region = self.region(name)
        return decode_unchecked(self.codes(name), region.encoding, region.bits)

    def unpack_all(self) -> dict[str, NDArray[Any]]:
        """Decoded values of every region, in region order."""
        return {r.name: self.unpack(r.name) for r in self.regions}

    def _check_bit(self, k: int | np.integer[Any]) -> int:
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or not 0 <= k < self.n_bits:
            raise ImageError(f"bit {k!r} is outside the image's {self.n_bits} bits")
        return int(k)

    def bit(self, k: int | np.integer[Any]) -> int:
        """Stream bit ``k`` (0 or 1)."""
        k = self._check_bit(k)
        return (int(self.words[k // WORD_BITS]) >> (k % WORD_BITS)) & 1

    def region_of_bit(self, k: int | np.integer[Any]) -> tuple[Region, int, int]:
        """Region, flat element index and bit within the element's code of stream bit ``k``."""
        k = self._check_bit(k)
        # The first region ending after k; empty regions end where they start, so never match.
        region = self.regions[bisect.bisect_right(self._ends, k)]
        element, bit_in_element = divmod(k - region.bit_offset, region.bits)
        return region, element, bit_in_element

    def diff(self, other: MemoryImage) -> tuple[int, int]:
        """Bits that are 0 here and 1 in ``other``, and bits that are 1 here and 0 there."""
        if self.regions != other.regions:
            raise ImageError("diff needs two images with the same layout")
        return bit_changes(self.words, other.words)

    def __repr__(self) -> str:
        names = ", ".join(f"{r.name}{list(r.shape)}:{r.encoding}{r.bits}" for r in self.regions)
        return f"MemoryImage({self.n_bits} bits in {self.words.size} words; {names})"
