"""Protection of an image stored in a faulty memory: protected MSBs, interleaving, SEC-DED ECC.

`protect(image, Protection(...))` splits an image into what the memory under test stores and
what a reliable bank holds, and lays the former out physically:

1. Protected bits: the `protected_msbs` most significant bits of every element (the sign of a
   two's complement code, the sign and exponent of a float, the whole of a 1-bit weight) go to
   a reliable bank, read at the device's nominal knobs and taken to be error-free there.
2. The remaining low bits of all elements form the data stream, cut into 64-bit data words.
3. ECC (`secded-72-64`): each data word gets 8 check bits, stored in the same faulty memory, so
   they fail like the data (a codeword is 72 physical bits).
4. Interleaving of degree D: D codewords share D·72 (or D·64) physically adjacent bits, bit t of
   codeword w at position t·D + w mod D of its block, so the bits of one multi-level cell or of
   a clustered fault fall into different codewords.

Reading (`ProtectedImage.read`) reads the physical bits through a `Chip`, de-interleaves,
corrects what the code can, applies the policy for detected but uncorrectable words (`leave`
them as read, or `zero`: set every element with a bit in such a word to the value 0), and
reassembles the image with the reliable bank's bits. The ECC decoder logic's own energy is not
modelled; the storage and read/write energy of check, padding and protected bits are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from memsim.errors import MemsimError
from memsim.kernels.ecc import (
    CHECK_BITS,
    CODEWORD_BITS,
    DATA_BITS,
    ECC_CORRECTED,
    ECC_UNCORRECTABLE,
    deinterleave,
    interleave,
    secded_decode_,
    secded_encode,
)
from memsim.memory.chip import Chip, ReadResult
from memsim.memory.encoding import Encoding, encode
from memsim.memory.image import MemoryImage, Region
from memsim.physics.device import Device, OperatingPoint
from memsim.spec.names import EccScheme, UncorrectablePolicy

__all__ = [
    "ChipReader",
    "EccCounts",
    "EccScheme",
    "ProtectedImage",
    "ProtectedReadResult",
    "Protection",
    "ProtectionError",
    "ProtectionOverhead",
    "UncorrectablePolicy",
    "protect",
]


class ProtectionError(MemsimError):
    """An impossible protection setting for an image."""


@dataclass(frozen=True)
class Protection:
    """How an image is protected in a faulty memory.

    Attributes:
        protected_msbs: most significant bits of each element kept in the reliable bank
            (0: none; 1: the sign bit of a signed code; larger than an element's width: the
            whole element).
        ecc: `none` or `secded-72-64` (8 check bits per 64 data bits, in the faulty memory).
        interleave: interleaving degree D >= 1 (1: codewords stored one after the other).
        on_uncorrectable: `leave` a detected but uncorrectable word as read, or `zero` the
            elements it touches (needs an encoding with a zero value; not `binary`).
    """

    protected_msbs: int = 0
    ecc: EccScheme | str = EccScheme.NONE
    interleave: int = 1
    on_uncorrectable: UncorrectablePolicy | str = UncorrectablePolicy.LEAVE

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "ecc", EccScheme(self.ecc))
        except ValueError:
            raise ProtectionError(f"ecc must be one of {', '.join(e.value for e in EccScheme)},"
                                  f" got {self.ecc!r}") from None
        try:
            object.__setattr__(self, "on_uncorrectable",
                               UncorrectablePolicy(self.on_uncorrectable))
        except ValueError:
            raise ProtectionError(
                "on_uncorrectable must be one of "
                f"{', '.join(p.value for p in UncorrectablePolicy)}, "
                f"got {self.on_uncorrectable!r}") from None
        for name in ("protected_msbs", "interleave"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ProtectionError(f"{name} must be an integer, got {value!r}")
        if self.protected_msbs < 0:
            raise ProtectionError(f"protected_msbs must be >= 0, got {self.protected_msbs}")
        if not 1 <= self.interleave <= 64:
            raise ProtectionError(f"interleave must be in [1, 64], got {self.interleave}")

    @property
    def is_none(self) -> bool:
        return (self.protected_msbs == 0 and self.ecc is EccScheme.NONE
                and self.interleave == 1)

    def describe(self) -> str:
        parts = []
        if self.protected_msbs:
            parts.append(f"{self.protected_msbs} MSB(s) in a reliable bank")
        if self.ecc != EccScheme.NONE:
            parts.append(f"{EccScheme(self.ecc).value} ECC "
                         f"({UncorrectablePolicy(self.on_uncorrectable).value} uncorrectable)")
        if self.interleave > 1:
            parts.append(f"{self.interleave}-way interleaving")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class ProtectionOverhead:
    """Where the bits of a protected image live, and what storing and reading them cost.

    `stored_bits` = data bits left in the faulty memory + `check_bits` + `padding_bits` (the
    zero data bits that fill the last codewords); `reliable_bits` sit in the reliable bank.
    """

    data_bits: int
    faulty_data_bits: int
    check_bits: int
    padding_bits: int
    reliable_bits: int

    @property
    def stored_bits(self) -> int:
        return self.faulty_data_bits + self.check_bits + self.padding_bits

    @property
    def storage_overhead(self) -> float:
        """Extra bits stored (both banks) per data bit: 0.125 for ECC alone."""
        if self.data_bits == 0:
            return 0.0
        return (self.stored_bits + self.reliable_bits) / self.data_bits - 1.0

    def read_energy_pj(self, at: OperatingPoint, reliable_at: OperatingPoint) -> float:
        """Energy of reading every stored bit once: faulty bits at `at`, reliable bits at
        `reliable_at` (the device at its nominal knobs, or the reliable bank's device)."""
        return (self.stored_bits * at.read_energy_pj_per_bit
                + self.reliable_bits * reliable_at.read_energy_pj_per_bit)

    def write_energy_pj(self, at: OperatingPoint, reliable_at: OperatingPoint) -> float:
        """Energy of writing every stored bit once (programming the image)."""
        return (self.stored_bits * at.write_energy_pj_per_bit
                + self.reliable_bits * reliable_at.write_energy_pj_per_bit)

    def read_energy_overhead(self, at: OperatingPoint, reliable_at: OperatingPoint) -> float:
        """Read energy relative to the unprotected image read at `at`, minus one."""
        base = self.data_bits * at.read_energy_pj_per_bit
        return self.read_energy_pj(at, reliable_at) / base - 1.0 if base > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"data_bits": self.data_bits, "stored_bits": self.stored_bits,
                "faulty_data_bits": self.faulty_data_bits, "check_bits": self.check_bits,
                "padding_bits": self.padding_bits, "reliable_bits": self.reliable_bits,
                "storage_overhead": self.storage_overhead}


@dataclass(frozen=True)
class EccCounts:
    """Outcome of decoding: words (codewords) clean, corrected and uncorrectable; elements
    zeroed by the `zero` policy."""

    words: int
    corrected_words: int
    uncorrectable_words: int
    zeroed_elements: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"words": self.words, "corrected_words": self.corrected_words,
                "uncorrectable_words": self.uncorrectable_words,
                "zeroed_elements": self.zeroed_elements}


@dataclass(frozen=True)
class ProtectedReadResult:
    """A read of a protected image: the decoded image, the raw physical read and the ECC
    outcome. `residual_*` count the bits of the decoded image that differ from the original
    (what the network sees); `raw` counts the physical flips before correction."""

    image: MemoryImage
    raw: ReadResult
    ecc: EccCounts
    residual_zero_to_one: int
    residual_one_to_zero: int

    @property
    def residual_bit_errors(self) -> int:
        return self.residual_zero_to_one + self.residual_one_to_zero

    def to_dict(self) -> dict[str, Any]:
        out = self.raw.to_dict()
        out.update({"ecc": self.ecc.to_dict(),
                    "residual_zero_to_one": self.residual_zero_to_one,
                    "residual_one_to_zero": self.residual_one_to_zero})
        return out


class ChipReader(Protocol):
    """What `ProtectedImage.read` needs of a chip: a simulated `Chip` or a `MeasuredChip`."""

    def read(self, image: MemoryImage, knobs: Mapping[str, float] | None = None,
             seed: int = 0) -> ReadResult: ...


@dataclass(frozen=True)
class _Split:
    region: Region
    low_bits: int  # bits of each element in the faulty memory
    high_bits: int  # bits of each element in the reliable bank
    low_offset: int  # where the region's low bits start in the data stream


class ProtectedImage:
    """An image laid out for a faulty memory under a `Protection`; see the module docstring.

    `stored` is the physical bit stream of the memory under test: build chips for it
    (`Chip.for_image(device, protected.stored, seed)`) and read with `read`.
    """

    def __init__(self, image: MemoryImage, protection: Protection) -> None:
        self.original = image
        self.protection = protection
        k = protection.protected_msbs
        splits: list[_Split] = []
        offset = 0
        for r in image.regions:
            high = min(k, r.bits)
            splits.append(_Split(r, r.bits - high, high, offset))
            offset += r.n_elements * (r.bits - high)
        self._splits = tuple(splits)
        faulty_data_bits = offset
        self._has_ecc = protection.ecc is not EccScheme.NONE
        if protection.on_uncorrectable is UncorrectablePolicy.ZERO and self._has_ecc:
            binary = [r.name for r in image.regions if r.encoding is Encoding.BINARY]
            if binary:
                raise ProtectionError(
                    f"on_uncorrectable: zero needs a zero value, but region {binary[0]!r} is "
                    "binary (+-1); use leave")
        self._zero_code = {r.name: self._zero_code_of(r) for r in image.regions}

        self._low, self._high = self._split_codes(image)
        data_words = np.asarray(self._low.words)
        self._plain = not self._has_ecc and protection.interleave == 1
        if self._plain:
            self.n_codewords = data_words.shape[0]
            stored_words = data_words.copy()
            padding = check_bits = 0
            stored_n_bits = faulty_data_bits
        else:
            d = protection.interleave
            n_data_words = -(-faulty_data_bits // DATA_BITS)
            self.n_codewords = -(-n_data_words // d) * d
            padded = np.zeros(self.n_codewords, dtype=np.uint64)
            padded[:n_data_words] = data_words
            check = secded_encode(padded) if self._has_ecc else None
            stored_words = interleave(padded, check, d)
            length = CODEWORD_BITS if self._has_ecc else DATA_BITS
            stored_n_bits = self.n_codewords * length
            check_bits = self.n_codewords * CHECK_BITS if self._has_ecc else 0
            padding = stored_n_bits - faulty_data_bits - check_bits
        region = Region("stored", (stored_n_bits,), 1, Encoding.UNSIGNED, 0)
        self.stored = MemoryImage(stored_words, stored_n_bits, (region,))
        self.overhead = ProtectionOverhead(
            data_bits=image.n_bits, faulty_data_bits=faulty_data_bits, check_bits=check_bits,
            padding_bits=padding,
            reliable_bits=sum(s.region.n_elements * s.high_bits for s in splits))

    def __repr__(self) -> str:
        return (f"ProtectedImage({self.protection.describe()}, data_bits="
                f"{self.overhead.data_bits}, stored_bits={self.overhead.stored_bits}, "
                f"reliable_bits={self.overhead.reliable_bits})")

    @staticmethod
    def _zero_code_of(region: Region) -> int:
        if region.encoding is Encoding.BINARY:
            return 0
        return int(encode(np.zeros(1), region.encoding, region.bits)[0])

    def _split_codes(self, image: MemoryImage) -> tuple[MemoryImage, dict[str, NDArray[Any]]]:
        if self.protection.protected_msbs == 0:
            return image, {}
        low: dict[str, tuple[NDArray[Any], Encoding, int]] = {}
        high: dict[str, NDArray[Any]] = {}
        for s in self._splits:
            codes = image.codes(s.region.name)
            if s.low_bits:
                mask = np.uint32((1 << s.low_bits) - 1)
                low[s.region.name] = (codes & mask, Encoding.UNSIGNED, s.low_bits)
            high[s.region.name] = codes >> np.uint32(s.low_bits)
        return MemoryImage.pack_codes(low), high

    # -- reading ----------------------------------------------------------------------------
    def chip(self, device: Device, seed: int,
             sweep: Mapping[str, tuple[float, float]] | None = None) -> Chip:
        """A chip of `device` holding this image's physical bits."""
        return Chip.for_image(device, self.stored, seed, sweep)

    def decode(self, stored_words: NDArray[np.uint64]) -> tuple[MemoryImage, EccCounts]:
        """The image from (possibly corrupted) physical words, corrected where possible."""
        if stored_words.shape != self.stored.words.shape:
            raise ProtectionError(f"expected {self.stored.words.shape[0]} stored words, "
                                  f"got {stored_words.shape[0]}")
        n_data_words = self._low.words.shape[0]
        if self._plain:
            data = np.array(stored_words, dtype=np.uint64)
            counts = EccCounts(self.n_codewords, 0, 0)
            bad_words = np.empty(0, np.int64)
        else:
            data, check = deinterleave(stored_words, self.n_codewords, self._has_ecc,
                                       self.protection.interleave)
            if check is not None:
                outcome = secded_decode_(data, check)
                bad_words = np.flatnonzero(outcome[:n_data_words] == ECC_UNCORRECTABLE)
                counts = EccCounts(self.n_codewords,
                                   int(np.count_nonzero(outcome == ECC_CORRECTED)),
                                   int(np.count_nonzero(outcome == ECC_UNCORRECTABLE)))
            else:
                bad_words = np.empty(0, np.int64)
                counts = EccCounts(self.n_codewords, 0, 0)
        data = data[:n_data_words]
        tail = self._low.n_bits % DATA_BITS
        if tail and n_data_words:
            data[-1] &= np.uint64((1 << tail) - 1)  # padding bits are not the image's
        low = self._low.with_words(data)
        zero = (self.protection.on_uncorrectable is UncorrectablePolicy.ZERO
                and bad_words.size > 0)
        if self.protection.protected_msbs == 0 and not zero:
            return low, counts
        codes = {}
        zeroed = 0
        for s in self._splits:
            name = s.region.name
            if s.low_bits:
                c = low.codes(name)
                if s.high_bits:
                    c = c | (self._high[name] << np.uint32(s.low_bits))
            else:
                c = self._high[name].copy()
            if zero and s.low_bits:
                hit = _elements_touching(bad_words, s, c.size)
                zeroed += int(np.count_nonzero(hit))
                c = np.where(hit.reshape(c.shape), np.uint32(self._zero_code[name]), c)
            codes[name] = (c, s.region.encoding, s.region.bits)
        image = MemoryImage.pack_codes(codes)
        return image, EccCounts(counts.words, counts.corrected_words,
                                counts.uncorrectable_words, zeroed)

    def read(self, chip: ChipReader, knobs: Mapping[str, float] | None = None,
             seed: int = 0) -> ProtectedReadResult:
        """One trial through `chip` (a `Chip` or a `MeasuredChip`): read the physical bits,
        decode, compare with the original."""
        raw = chip.read(self.stored, knobs, seed)
        image, counts = self.decode(np.array(raw.image.words))
        up, down = self.original.diff(image)
        return ProtectedReadResult(image, raw, counts, up, down)


def _elements_touching(bad_words: NDArray[np.int64], split: _Split,
                       n_elements: int) -> NDArray[np.bool_]:
    """Which elements of a region have a low bit in one of the data words `bad_words`."""
    w, o = split.low_bits, split.low_offset
    first = np.maximum((bad_words * DATA_BITS - o) // w, 0)
    last = np.minimum(((bad_words + 1) * DATA_BITS - 1 - o) // w, n_elements - 1)
    keep = first <= last
    marks = np.zeros(n_elements + 1, dtype=np.int64)
    np.add.at(marks, first[keep], 1)
    np.add.at(marks, last[keep] + 1, -1)
    hit: NDArray[np.bool_] = np.cumsum(marks[:-1]) > 0
    return hit


def protect(image: MemoryImage, protection: Protection | None = None) -> ProtectedImage:
    """Lay `image` out for a faulty memory under `protection` (default: none)."""
    return ProtectedImage(image, protection or Protection())
