"""Chips and trials: nesting, reproducibility, variability levels and agreement with device.at().

Statistical checks use fixed seeds and two-sided binomial bands at alpha = 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import memsim
from memsim.memory.chip import Chip, ChipError
from memsim.memory.image import MemoryImage

ALPHA = 1e-6
WriteYaml = Callable[..., Path]


def band(n: int, p: float) -> tuple[float, float]:
    low, high = stats.binom.interval(1 - ALPHA, n, p)
    return float(low), float(high)


def random_image(n_bytes: int, seed: int = 0) -> MemoryImage:
    data = np.random.default_rng(seed).integers(0, 256, size=n_bytes, dtype=np.uint8)
    return MemoryImage.from_bytes(data.tobytes())


def ones_in(image: MemoryImage) -> int:
    return int(np.unpackbits(np.frombuffer(image.to_bytes(), dtype=np.uint8)).sum())


def device_yaml(faults: str, *, bits_per_cell: int = 1, coding: str = "gray",
                row_bits: int = 512, rows: int = 64) -> str:
    return f"""\
schema_version: 1
name: test-device
technology: custom
description: a device for chip tests
source: [{{id: none, citation: tests}}]
cell: {{bits_per_cell: {bits_per_cell}, level_coding: {coding}}}
array: {{row_bits: {row_bits}, rows_per_array: {rows}}}
knobs:
  v: {{unit: V, role: control, nominal: 1.0, range: [0.5, 1.0]}}
faults:
{faults}
energy: {{scope: cell, read_energy_pj_per_bit: 1.0, write_energy_pj_per_bit: 1.0}}
"""


THRESHOLD = """\
  - name: weak
    kind: threshold
    fault_fraction: {{kind: probit, of: v, direction: decreasing, mean: 0.6, sigma: 0.1}}
    failure: {{stuck_at_zero: {sa0}, stuck_at_one: {sa1}, flip: {flip}}}
    variability: {{die: {die}, array: {array}, row: 0.0, cell: {cell}}}
"""


def threshold_device(write_yaml: WriteYaml, *, die: float = 0.0, array: float = 0.0,
                     sa0: float = 0.5, sa1: float = 0.5, flip: float = 0.0,
                     **kw: int | str) -> memsim.Device:
    cell = 1.0 - die - array
    faults = THRESHOLD.format(die=die, array=array, cell=cell, sa0=sa0, sa1=sa1, flip=flip)
    return memsim.load_device(write_yaml(device_yaml(faults, **kw)))  # type: ignore[arg-type]


# -- nesting and reproducibility ----------------------------------------------------------------


def test_faults_are_nested_across_operating_points() -> None:
    device = memsim.load_device("sram-14nm")
    chip = Chip(device, 1 << 20, seed=7)
    previous: set[int] = set()
    for v in (0.95, 0.9, 0.85, 0.8, 0.75):
        cells, _ = chip.faulty_cells(v_rel=v)["undervolt"]
        current = set(cells.tolist())
        assert previous <= current
        assert len(current) > len(previous)
        previous = current


def test_same_seeds_give_identical_reads_and_other_seeds_differ() -> None:
    device = memsim.load_device("sram-14nm")
    image = random_image(1 << 16)
    a = Chip(device, image.n_bits, seed=3).read(image, {"v_rel": 0.85}, seed=11)
    b = Chip(device, image.n_bits, seed=3).read(image, {"v_rel": 0.85}, seed=11)
    c = Chip(device, image.n_bits, seed=4).read(image, {"v_rel": 0.85}, seed=11)
    assert a.image.to_bytes() == b.image.to_bytes()
    assert a.to_dict() == b.to_dict()
    assert a.image.to_bytes() != c.image.to_bytes()
    assert a.flips_zero_to_one + a.flips_one_to_zero > 0


def test_read_counts_match_the_difference_of_images() -> None:
    device = memsim.load_device("sram-14nm")
    image = random_image(1 << 15)
    result = Chip(device, image.n_bits, seed=1).read(image, {"v_rel": 0.8}, seed=2)
    up, down = image.diff(result.image)
    assert (result.flips_zero_to_one, result.flips_one_to_zero) == (up, down)
    # stuck cells holding their stuck value are faulty but show no error
    assert result.faulty_cells == result.stuck_cells
    assert result.bit_errors < result.faulty_cells


def test_the_same_seed_gives_the_same_faults_whatever_was_asked_before() -> None:
    device = memsim.load_device("sram-14nm")
    image = random_image(4096)
    points = (0.9, 0.8, 0.95, 0.7, 0.86)
    fresh = {v: Chip(device, image.n_bits, seed=3).read(image, {"v_rel": v}, seed=1).image.words
             for v in points}
    swept = Chip(device, image.n_bits, seed=3, sweep={"v_rel": (0.85, 1.0)})
    lazy = Chip(device, image.n_bits, seed=3)
    for chip in (swept, lazy):
        for v in points:  # beyond the sweep and back, harsher and milder
            assert np.array_equal(chip.read(image, {"v_rel": v}, seed=1).image.words, fresh[v])


def test_a_chip_draws_only_what_its_reads_need() -> None:
    device = memsim.load_device("sram-14nm")
    n = 1 << 20
    chip = Chip(device, n, seed=0)
    assert sum(c.cells.size for c in chip.persistent.values()) == 0  # nothing read yet
    mild = chip.faulty_cells(v_rel=0.9)["undervolt"][0].size
    drawn = chip.persistent[0].cells.size
    # candidates for the point and some headroom, not the 70 % of cells the range reaches
    assert mild <= drawn < max(4 * mild, 1000) < 0.01 * n
    full = Chip(device, n, seed=0, sweep={"v_rel": (0.7, 1.0)}).persistent[0].cells.size
    assert full > 0.5 * n


def test_chip_refuses_a_wrong_image_and_knobs_out_of_range() -> None:
    device = memsim.load_device("sram-14nm")
    image = random_image(1024)
    chip = Chip(device, image.n_bits, seed=0, sweep={"v_rel": (0.85, 1.0)})
    with pytest.raises(ChipError, match="holds"):
        chip.read(random_image(512), {"v_rel": 0.9})
    with pytest.raises(memsim.KnobError):
        chip.read(image, {"v_rel": 0.1})


# -- agreement with the published points and with device.at() -----------------------------------

PUBLISHED_SRAM = [(0.952, 2e-6), (0.930, 2e-5), (0.894, 4e-4), (0.876, 1.6e-3), (0.863, 3e-3),
                  (0.837, 1.3e-2), (0.811, 3.6e-2), (0.785, 8e-2), (0.758, 0.19)]


def test_twenty_sram_chips_reproduce_the_published_points() -> None:
    """Characterisation as the source did it: write all zeros, then all ones; a cell is faulty
    if it fails either pattern. The mean over 20 chips is within x2 of every point, and the
    error rate on random data is half of it (stuck-at faults)."""
    device = memsim.load_device("sram-14nm")
    n_bytes = 1 << 17  # 2^20 bits per chip
    zeros = MemoryImage.from_bytes(bytes(n_bytes))
    ones = MemoryImage.from_bytes(b"\xff" * n_bytes)
    rand = random_image(n_bytes, seed=5)
    chips = [Chip(device, zeros.n_bits, seed=s, sweep={"v_rel": (0.75, 1.0)}) for s in range(20)]
    for v, published in PUBLISHED_SRAM:
        failing = errors = 0
        for chip in chips:
            failing += chip.read(zeros, {"v_rel": v}).bit_errors
            failing += chip.read(ones, {"v_rel": v}).bit_errors
            errors += chip.read(rand, {"v_rel": v}).bit_errors
        n = 20 * zeros.n_bits
        fault_rate, error_rate = failing / n, errors / n
        assert 0.5 <= fault_rate / published <= 2.0, (v, fault_rate, published)
        if published >= 1e-4:
            assert error_rate == pytest.approx(fault_rate / 2, rel=0.1)


def test_die_spread_of_sram_chips_matches_the_declared_share() -> None:
    """Each chip's fault fraction implies its die offset d; over 20 chips var(d) ≈ 1."""
    device = memsim.load_device("sram-14nm")
    mech = device.spec.faults[0]
    die = mech.variability.die.value  # type: ignore[union-attr]
    n_cells = 1 << 20
    v = 0.85
    z = stats.norm.ppf(device.at(v_rel=v).fault_fraction)
    offsets = []
    for seed in range(20):
        chip = Chip(device, n_cells, seed=seed, sweep={"v_rel": (0.8, 1.0)})
        count = chip.faulty_cells(v_rel=v)["undervolt"][0].shape[0]
        f_chip = count / n_cells
        offsets.append((z - math.sqrt(1 - die) * stats.norm.ppf(f_chip)) / math.sqrt(die))
    var = float(np.var(offsets, ddof=1))
    low, high = (stats.chi2.ppf(q, 19) / 19 for q in (ALPHA / 2, 1 - ALPHA / 2))
    assert low <= var <= high, var
    assert var > 0.2  # chips really differ


@pytest.mark.parametrize(("die", "array", "expect_overdispersed"),
                         [(0.0, 0.3, True), (0.0, 0.0, False)])
def test_array_spread_clusters_faults(write_yaml: WriteYaml, die: float, array: float,
                                      expect_overdispersed: bool) -> None:
    device = threshold_device(write_yaml, die=die, array=array, row_bits=256, rows=64)
    cells_per_array = 256 * 64
    n_arrays = 200
    chip = Chip(device, cells_per_array * n_arrays, seed=9, sweep={"v": (0.8, 1.0)})
    cells, _ = chip.faulty_cells(v=0.8)["weak"]
    counts = np.bincount(cells // cells_per_array, minlength=n_arrays)
    dispersion = counts.var(ddof=1) / counts.mean()
    if expect_overdispersed:
        assert dispersion > 5
    else:
        # binomial counts: (n-1)·var/mean ~ chi2(n-1)
        stat = (n_arrays - 1) * dispersion
        assert stats.chi2.ppf(ALPHA / 2, n_arrays - 1) <= stat <= stats.chi2.ppf(
            1 - ALPHA / 2, n_arrays - 1)


def test_threshold_counts_by_direction_match_device_at(write_yaml: WriteYaml) -> None:
    """No die spread: each cell is faulty independently, so counts are binomial."""
    device = threshold_device(write_yaml, sa0=0.7, sa1=0.2, flip=0.1)
    image = random_image(1 << 21)  # 1.7e7 bits
    n_ones = ones_in(image)
    n_zeros = image.n_bits - n_ones
    chip = Chip(device, image.n_bits, seed=21, sweep={"v": (0.7, 1.0)})
    op = device.at(v=0.75)
    result = chip.read(image, {"v": 0.75}, seed=1)
    lo, hi = band(n_zeros, op.p_zero_to_one)
    assert lo <= result.flips_zero_to_one <= hi
    lo, hi = band(n_ones, op.p_one_to_zero)
    assert lo <= result.flips_one_to_zero <= hi
    lo, hi = band(image.n_bits, op.fault_fraction)
    assert lo <= result.faulty_cells <= hi


MIXED = """\
  - name: writes
    kind: transient
    phase: programmed
    p_zero_to_one: 2.0e-3
    p_one_to_zero: 5.0e-4
  - name: stuck
    kind: stuck_at
    stuck_at_zero: 1.0e-3
    stuck_at_one: 3.0e-3
  - name: reads
    kind: transient
    p_zero_to_one: {kind: exponential, of: v, coefficient: 1.0e-4, rate: -5, reference: 1.0}
    p_one_to_zero: 4.0e-3
"""

MLC_CONFUSION = """\
  - name: levels
    kind: level_confusion
    transitions:
      - {from: 0, to: 1, probability: 4.0e-3}
      - from: 1
        to: 2
        probability: {kind: exponential, of: v, coefficient: 2.0e-3, rate: -10, reference: 1.0}
      - {from: 2, to: 3, probability: 6.0e-3}
      - {from: 3, to: 2, probability: 1.0e-3}
      - {from: 1, to: 3, probability: 5.0e-4}
  - name: stuck
    kind: stuck_at
    stuck_at_zero: 1.0e-3
    stuck_at_one: 2.0e-3
  - name: noise
    kind: transient
    p_zero_to_one: 1.0e-3
    p_one_to_zero: 2.0e-3
"""


@pytest.mark.parametrize(("faults", "bits_per_cell", "coding"), [
    (MIXED, 1, "gray"),
    (MLC_CONFUSION, 2, "gray"),
    (MLC_CONFUSION, 2, "binary"),
])
def test_observed_rates_match_device_at(write_yaml: WriteYaml, faults: str, bits_per_cell: int,
                                        coding: str) -> None:
    """The kernels and the chip reproduce the analytic composition of `device.at()`."""
    device = memsim.load_device(write_yaml(device_yaml(faults, bits_per_cell=bits_per_cell,
                                                       coding=coding)))
    image = random_image(1 << 21, seed=bits_per_cell)
    n_ones = ones_in(image)
    n_zeros = image.n_bits - n_ones
    op = device.at(v=0.8)
    up = down = 0
    n_chips = 4
    for s in range(n_chips):
        result = Chip(device, image.n_bits, seed=100 + s).read(image, {"v": 0.8}, seed=s)
        up += result.flips_zero_to_one
        down += result.flips_one_to_zero
    # mechanisms act per cell, so bits of one cell are not independent: widen the band by the
    # cell size (a conservative variance inflation)
    for observed, n, p in ((up, n_zeros * n_chips, op.p_zero_to_one),
                           (down, n_ones * n_chips, op.p_one_to_zero)):
        mean, sd = n * p, math.sqrt(n * p * (1 - p) * bits_per_cell)
        assert abs(observed - mean) <= 5.3 * sd, (observed, mean, sd)


def test_write_errors_persist_across_trials_and_read_errors_do_not(write_yaml: WriteYaml) -> None:
    device = memsim.load_device(write_yaml(device_yaml(MIXED)))
    image = random_image(1 << 14)
    chip = Chip(device, image.n_bits, seed=5)
    a = chip.read(image, {"v": 0.9}, seed=1).mechanisms
    b = chip.read(image, {"v": 0.9}, seed=2).mechanisms
    assert a["writes"] == b["writes"] and a["writes"].bits_changed > 0
    assert a["reads"] != b["reads"]
    other = Chip(device, image.n_bits, seed=6).read(image, {"v": 0.9}, seed=1).mechanisms
    assert other["writes"] != a["writes"]


FACTOR = """\
  - name: noisy
    kind: transient
    p_zero_to_one: 2.0e-3
    p_one_to_zero: 2.0e-3
    cell_factor: {{distribution: lognormal, sigma: {sigma}}}
"""


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_cell_factors_make_trials_of_one_chip_overlap(write_yaml: WriteYaml,
                                                      sigma: float) -> None:
    """Two trials of one chip share weak cells: their flip sets overlap by E[f²] = exp(σ²)
    times chance; without factors they overlap by chance only."""
    device = memsim.load_device(write_yaml(device_yaml(FACTOR.format(sigma=sigma))))
    image = random_image(1 << 21)
    chip = Chip(device, image.n_bits, seed=8)
    stored = np.frombuffer(image.to_bytes(), dtype=np.uint8)

    def flipped(seed: int) -> np.ndarray:
        out = np.frombuffer(chip.read(image, seed=seed).image.to_bytes(), dtype=np.uint8)
        return np.unpackbits(out ^ stored).astype(bool)

    a, b = flipped(1), flipped(2)
    p = 2e-3
    overlap = int(np.sum(a & b))
    expected = image.n_bits * p * p * math.exp(sigma**2)
    lo, hi = band(image.n_bits, expected / image.n_bits)
    assert lo <= overlap <= hi, (overlap, expected)


def test_chip_memory_is_sparse() -> None:
    device = memsim.load_device("sram-14nm")
    chip = Chip(device, 1 << 22, seed=0, sweep={"v_rel": (0.9, 1.0)})
    candidates = chip.persistent[0].cells.shape[0]
    expected = (1 << 22) * device.at(v_rel=0.9).fault_fraction
    assert candidates < 3 * expected + 100


def test_actions_are_numpy_choice_draws_taken_in_slices() -> None:
    # The chip draws its candidates' actions slice by slice to bound its temporaries; they
    # must stay Generator.choice's draws (the golden files depend on them), across slices.
    device = memsim.load_device("sram-14nm")
    chip = Chip(device, 1 << 22, seed=5, sweep={"v_rel": (0.7, 1.0)})
    cells = chip.persistent[0]
    assert cells.cells.shape[0] > 3 * 65536  # several slices
    rng = np.random.Generator(np.random.PCG64(chip._action_seed[0]))
    want = rng.choice(np.array([0, 1, 2], np.uint8), size=cells.cells.shape[0],
                      p=[0.5, 0.5, 0.0])
    np.testing.assert_array_equal(cells.actions, want)
    for n, shares in ((0, (1.0, 0.0, 0.0)), (65537, (0.1, 0.3, 0.6)), (3, (0.0, 0.0, 1.0))):
        rng = np.random.Generator(np.random.PCG64(chip._action_seed[0]))
        want = rng.choice(np.array([0, 1, 2], np.uint8), size=n, p=list(shares))
        np.testing.assert_array_equal(chip._actions(0, n, *shares), want)
