"""Protection: SEC-DED (72,64) ECC, interleaving, protected MSBs, policies and overheads."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import MINIMAL_DEVICE
from hypothesis import given, settings
from hypothesis import strategies as st

import memsim
from memsim.kernels.ecc import (
    CODEWORD_BITS,
    DATA_BITS,
    ECC_CLEAN,
    ECC_CORRECTED,
    ECC_UNCORRECTABLE,
    deinterleave,
    interleave,
    secded_decode_,
    secded_encode,
)
from memsim.memory import MemoryImage
from memsim.memory.protection import Protection, ProtectionError, protect

WriteYaml = Callable[..., Path]


def flip(words: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = np.array(words, dtype=np.uint64)
    for p in positions:
        out[int(p) >> 6] ^= np.uint64(1) << np.uint64(int(p) & 63)
    return out


def physical(w: int, t: int, degree: int, length: int = CODEWORD_BITS) -> int:
    """Where bit t of codeword w lies (the layout documented in memsim.kernels.ecc)."""
    return (w // degree) * degree * length + t * degree + w % degree


def random_weights(n: int, bits: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=n)


# -- the code itself ----------------------------------------------------------------------

def test_every_single_error_is_corrected_and_every_double_error_detected() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1 << 63, size=4, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    check = secded_encode(data)

    def corrupt(bits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        d, c = data[:1].copy(), check[:1].copy()
        for t in bits:
            if t < DATA_BITS:
                d[0] ^= np.uint64(1) << np.uint64(t)
            else:
                c[0] ^= np.uint8(1 << (t - DATA_BITS))
        return d, c

    for t in range(CODEWORD_BITS):
        d, c = corrupt((t,))
        assert secded_decode_(d, c)[0] == ECC_CORRECTED
        assert d[0] == data[0] and c[0] == check[0]
    for pair in itertools.combinations(range(CODEWORD_BITS), 2):
        d, c = corrupt(pair)
        assert secded_decode_(d, c)[0] == ECC_UNCORRECTABLE, pair
    d, c = data.copy(), check.copy()
    assert (secded_decode_(d, c) == ECC_CLEAN).all()


def test_check_bits_are_a_linear_code() -> None:
    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 1 << 63, size=100, dtype=np.uint64) for _ in range(2))
    # Hamming parities are linear; the overall parity of a^b adds as well
    assert (secded_encode(a ^ b) == secded_encode(a) ^ secded_encode(b)).all()
    assert (secded_encode(np.zeros(3, np.uint64)) == 0).all()


@given(st.integers(1, 9), st.integers(1, 5), st.booleans(), st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_interleave_round_trips(groups: int, degree: int, with_check: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1 << 63, size=groups * degree, dtype=np.uint64)
    check = secded_encode(data) if with_check else None
    stored = interleave(data, check, degree)
    back, back_check = deinterleave(stored, data.shape[0], with_check, degree)
    assert (back == data).all()
    if check is not None:
        assert back_check is not None and (back_check == check).all()
    # bit t of codeword w sits where the documented formula says
    length = CODEWORD_BITS if with_check else DATA_BITS
    w, t = int(rng.integers(data.shape[0])), int(rng.integers(DATA_BITS))
    p = physical(w, t, degree, length)
    assert (int(stored[p >> 6]) >> (p & 63)) & 1 == (int(data[w]) >> t) & 1


# -- images -------------------------------------------------------------------------------

ENCODINGS = [("twos_complement", 4), ("sign_magnitude", 3), ("offset_binary", 8),
             ("binary", 1), ("float16", 16), ("unsigned", 5)]


@st.composite
def images(draw: st.DrawFn) -> MemoryImage:
    tensors = {}
    for i in range(draw(st.integers(1, 3))):
        encoding, bits = draw(st.sampled_from(ENCODINGS))
        n = draw(st.integers(1, 300))
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        if encoding == "binary":
            values = rng.choice([-1, 1], size=n)
        elif encoding == "float16":
            values = rng.normal(size=n).astype(np.float16)
        elif encoding == "unsigned":
            values = rng.integers(0, 1 << bits, size=n)
        else:
            lo = -(1 << (bits - 1)) + (encoding == "sign_magnitude")
            values = rng.integers(lo, 1 << (bits - 1), size=n)
        tensors[f"t{i}"] = (values, encoding, bits)
    return MemoryImage.pack(tensors)


@given(images(), st.integers(0, 17), st.sampled_from(["none", "secded-72-64"]),
       st.integers(1, 4))
@settings(max_examples=80, deadline=None)
def test_fault_free_storage_gives_the_image_back(image: MemoryImage, msbs: int, ecc: str,
                                                  degree: int) -> None:
    protected = protect(image, Protection(protected_msbs=msbs, ecc=ecc, interleave=degree))
    decoded, counts = protected.decode(np.array(protected.stored.words))
    assert decoded.diff(image) == (0, 0)
    assert decoded.regions == image.regions
    assert counts.corrected_words == counts.uncorrectable_words == 0
    o = protected.overhead
    assert o.faulty_data_bits + o.reliable_bits == image.n_bits == o.data_bits
    assert o.stored_bits == protected.stored.n_bits
    if ecc == "none" and degree == 1:
        assert o.padding_bits == o.check_bits == 0


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_one_error_in_every_codeword_is_corrected(degree: int) -> None:
    image = MemoryImage.pack({"w": (random_weights(5000, 4), "twos_complement", 4)})
    protected = protect(image, Protection(ecc="secded-72-64", interleave=degree))
    rng = np.random.default_rng(degree)
    n = protected.n_codewords
    positions = [physical(w, int(rng.integers(CODEWORD_BITS)), degree) for w in range(n)]
    decoded, counts = protected.decode(flip(protected.stored.words, np.array(positions)))
    assert decoded.diff(image) == (0, 0)
    assert counts.corrected_words == n and counts.uncorrectable_words == 0


@pytest.mark.parametrize(("encoding", "bits"), [("twos_complement", 4), ("offset_binary", 4),
                                                ("sign_magnitude", 8), ("float16", 16)])
def test_double_errors_are_counted_and_left_or_zeroed(encoding: str, bits: int) -> None:
    rng = np.random.default_rng(0)
    values = (rng.normal(size=1000).astype(np.float16) if encoding == "float16"
              else random_weights(1000, bits, 1))
    values = np.where((values == 0) | (values == -(1 << (bits - 1))), 1, values)  # zero shows
    image = MemoryImage.pack({"w": (values, encoding, bits)})
    hit_words = [2, 7]
    for policy in ("leave", "zero"):
        protected = protect(image, Protection(ecc="secded-72-64", on_uncorrectable=policy))
        positions = [physical(w, t, 1) for w in hit_words for t in (3, 40)]
        decoded, counts = protected.decode(flip(protected.stored.words, np.array(positions)))
        assert counts.uncorrectable_words == len(hit_words)
        out = decoded.unpack("w")
        # the elements whose bits lie in the hit data words
        first = [(w * DATA_BITS) // bits for w in hit_words]
        last = [((w + 1) * DATA_BITS - 1) // bits for w in hit_words]
        touched = np.zeros(values.size, bool)
        for a, b in zip(first, last, strict=True):
            touched[a:b + 1] = True
        assert (out[~touched] == values[~touched]).all()
        if policy == "zero":
            assert counts.zeroed_elements == touched.sum()
            assert (out[touched] == 0).all()
        else:
            assert counts.zeroed_elements == 0
            assert decoded.diff(image)[0] + decoded.diff(image)[1] == 2 * len(hit_words)


def test_protected_msbs_survive_any_corruption_of_the_faulty_memory() -> None:
    values = random_weights(999, 4, 2)
    image = MemoryImage.pack({"w": (values, "twos_complement", 4),
                              "b": (np.ones(7, int), "binary", 1)})
    protected = protect(image, Protection(protected_msbs=1))
    assert protected.overhead.reliable_bits == 999 + 7
    assert protected.overhead.stored_bits == 999 * 3
    everything = ~np.array(protected.stored.words)
    everything[-1] &= np.uint64((1 << (protected.stored.n_bits % 64)) - 1)
    decoded, _ = protected.decode(everything)
    out = decoded.unpack("w")
    assert (np.sign(out + 0.5) == np.sign(values + 0.5)).all()  # the sign bit held
    assert (out != values).all()  # and every magnitude bit flipped
    assert (decoded.unpack("b") == 1).all()  # a fully protected 1-bit tensor


def test_overheads_and_energy_match_a_hand_computation(write_yaml: WriteYaml) -> None:
    device = memsim.load_device(write_yaml(MINIMAL_DEVICE))
    image = MemoryImage.pack({"w": (random_weights(1000, 4), "twos_complement", 4)})
    protected = protect(image, Protection(protected_msbs=1, ecc="secded-72-64"))
    o = protected.overhead
    # 3000 faulty data bits -> 47 data words -> 47 codewords of 72 bits
    assert (o.faulty_data_bits, o.check_bits, o.padding_bits, o.reliable_bits) == (
        3000, 376, 8, 1000)
    assert o.stored_bits == 3384
    assert o.storage_overhead == pytest.approx((3384 + 1000) / 4000 - 1)
    at, nominal = device.at(vdd=0.8), device.at()
    # read energy 0.1 pJ * vdd^2 per bit: 0.064 at 0.8 V, 0.1 at nominal
    assert o.read_energy_pj(at, nominal) == pytest.approx(3384 * 0.064 + 1000 * 0.1)
    assert o.read_energy_overhead(at, nominal) == pytest.approx(
        (3384 * 0.064 + 1000 * 0.1) / (4000 * 0.064) - 1)
    assert o.write_energy_pj(at, nominal) == pytest.approx(4384 * 1.0)
    plain = protect(image).overhead
    assert plain.storage_overhead == 0.0 and plain.stored_bits == 4000


def test_bad_settings_are_refused() -> None:
    image = MemoryImage.pack({"b": (np.ones(10, int), "binary", 1)})
    with pytest.raises(ProtectionError, match="binary"):
        protect(image, Protection(ecc="secded-72-64", on_uncorrectable="zero"))
    with pytest.raises(ProtectionError, match="ecc must be one of"):
        Protection(ecc="hamming")  # type: ignore[arg-type]
    with pytest.raises(ProtectionError, match="interleave"):
        Protection(interleave=0)
    with pytest.raises(ProtectionError, match="protected_msbs"):
        Protection(protected_msbs=-1)
    with pytest.raises(ProtectionError, match="on_uncorrectable"):
        Protection(on_uncorrectable="drop")  # type: ignore[arg-type]
    protected = protect(image, Protection(ecc="secded-72-64"))
    with pytest.raises(ProtectionError, match="stored words"):
        protected.decode(np.zeros(5, np.uint64))


# -- through chips: 2-bit MLC under binary and Gray level coding --------------------------

MLC_DEVICE = """\
schema_version: 1
name: mlc-test
technology: custom
description: 2-bit cells confusing the middle levels only
source: [{{id: none, citation: tests}}]
cell: {{bits_per_cell: 2, level_coding: {coding}}}
knobs:
  v: {{unit: V, role: control, nominal: 1.0, range: [0.5, 1.0]}}
faults:
  - name: middle
    kind: level_confusion
    transitions:
      - {{from: 1, to: 2, probability: 4.0e-4}}
      - {{from: 2, to: 1, probability: 4.0e-4}}
energy: {{scope: cell, read_energy_pj_per_bit: 1.0, write_energy_pj_per_bit: 1.0}}
"""


@pytest.mark.parametrize(("coding", "degree"), [("gray", 1), ("binary", 1), ("binary", 2)])
def test_ecc_with_two_bit_cells(write_yaml: WriteYaml, coding: str, degree: int) -> None:
    device = memsim.load_device(write_yaml(MLC_DEVICE.format(coding=coding)))
    image = MemoryImage.pack({"w": (random_weights(1 << 18, 4, 9), "twos_complement", 4)})
    protected = protect(image, Protection(ecc="secded-72-64", interleave=degree))
    chip = protected.chip(device, seed=11)
    result = protected.read(chip, seed=1)
    raw_errors = result.raw.bit_errors
    level_errors = result.raw.mechanisms["middle"].cells_changed
    # about 1/2 of the cells sit at level 1 or 2; 4e-4 of those change
    assert 50 < level_errors < 500
    if coding == "gray":
        # 01 <-> 11: one bit per level error, so every error is corrected
        assert raw_errors == level_errors
        assert result.ecc.uncorrectable_words == 0
        assert result.ecc.corrected_words == level_errors
        assert result.residual_bit_errors == 0
    elif degree == 1:
        # 01 <-> 10: both bits of a cell, in one codeword: detected, not corrected
        assert raw_errors == 2 * level_errors
        assert result.ecc.uncorrectable_words == level_errors
        assert result.ecc.corrected_words == 0
        # every data bit read wrong stays wrong; the rest hit check bits
        changed = np.flatnonzero(np.unpackbits(
            (np.array(result.raw.image.words) ^ np.array(protected.stored.words)).view(np.uint8),
            bitorder="little"))
        in_data = changed % CODEWORD_BITS < DATA_BITS
        assert result.residual_bit_errors == in_data.sum() > 0.8 * raw_errors
    else:
        # interleaving puts a cell's two bits in two codewords: each one a single error
        assert raw_errors == 2 * level_errors
        assert result.ecc.uncorrectable_words == 0
        assert result.ecc.corrected_words == 2 * level_errors
        assert result.residual_bit_errors == 0
    assert result.image.regions == image.regions
