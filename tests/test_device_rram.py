"""The RRAM (HfOx) entries against their sources, and the derivation of their tables.

This module is the derivation: `mlc_matrix` computes the 2-bit level-confusion probabilities
from the published Gaussian level distributions, `slc_fault_fraction` the weak-programming
fault fraction, and the tests check that the catalogue's tables equal them, so the two cannot
drift apart. Run it as a script to print the tables for the YAML files::

    .venv/bin/python tests/test_device_rram.py

Published figures are hard-coded here independently of the YAML files. Statistical checks use
fixed seeds and two-sided binomial bands at alpha = 1e-6.
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats
from scipy.optimize import brentq

from memsim import Device, load_device
from memsim.memory.chip import Chip
from memsim.memory.image import MemoryImage
from memsim.spec.curves import Scale, TableCurve
from memsim.spec.device import iter_params
from memsim.spec.fields import Provenance
from memsim.spec.mechanisms import LevelConfusionMechanism, ThresholdMechanism

ALPHA = 1e-6
KNOB = "program_energy_rel"

# -- sources ----------------------------------------------------------------------------------
# 2-bit RRAM level distributions on normalised conductance (mean, sigma), NVMExplorer nvmFI data
MLC_LEVELS = ((0.0, 0.0086), (0.385, 0.0335), (0.722, 0.0274), (1.0, 0.0034))
# adjacent-level errors 1->2 and 2->1 at that spread, as quoted with the distributions
PUBLISHED_1_TO_2, PUBLISHED_2_TO_1 = 1.7e-8, 1.4e-8
# Hirtzlin et al.: weaker programming cuts the programming energy by 30x
WEAKEST_ENERGY_REL = 0.0333
# Buschjaeger et al.: low-power RRAM bit error rate up to 3.3 %
LOW_POWER_BER = 0.033
# HfOx test chip (Chen et al. 2015): stuck-at-0 (HRS) 1.75 %, stuck-at-1 (LRS) 9.04 % of cells
TEST_CHIP_SA0, TEST_CHIP_SA1 = 0.0175, 0.0904
# NVSim / NVMExplorer: cell write 0.6 pJ; 1 MB array 4.0 pJ read, 53 pJ write per 64-bit access
CELL_WRITE_PJ, ARRAY_READ_PJ, ARRAY_WRITE_PJ, ACCESS_BITS = 0.6, 4.0, 53.0, 64

# -- model choices (assumed; the YAML files say so) --------------------------------------------
# Every level's sigma scales as E^-1/2 with the programming energy E (relative to nominal).
SPREAD_EXPONENT = -0.5
# Share of weak-programming failures that read HRS (a failed SET: a stored 1 reads 0).
SLC_FAILED_SET_SHARE = 0.75
# Table nodes of the knob; tables interpolate linearly in E and logarithmically in probability.
ENERGY_NODES = (0.0333, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Probabilities below this are written as it (a log table needs y > 0); transitions that never
# exceed TABLE_CUTOFF over the knob range are left out.
TABLE_FLOOR, TABLE_CUTOFF = 1e-30, 1e-12

DEVICES = ("rram-hfox-slc", "rram-hfox-slc-test-chip", "rram-hfox-mlc")


# -- derivation -------------------------------------------------------------------------------


@cache
def read_thresholds() -> tuple[float, ...]:
    """Read references where neighbouring published Gaussians cross (equal densities).

    They are fixed by the read circuit, so they stay put when weaker programming widens the
    distributions.
    """
    out = []
    for (m1, s1), (m2, s2) in itertools.pairwise(MLC_LEVELS):
        out.append(float(brentq(
            lambda x, m1=m1, s1=s1, m2=m2, s2=s2: float(
                stats.norm.logpdf(x, m1, s1) - stats.norm.logpdf(x, m2, s2)),
            m1, m2, xtol=1e-14)))
    return tuple(out)


def spread_factor(energy_rel: float) -> float:
    return float(energy_rel ** SPREAD_EXPONENT)


def mlc_matrix(energy_rel: float) -> NDArray[np.float64]:
    """`M[stored, read]` of the 2-bit cell programmed with relative energy `energy_rel`.

    Tails are taken with sf/cdf on the side away from the mean, so tiny probabilities keep
    their digits.
    """
    edges = (-math.inf, *read_thresholds(), math.inf)
    k = spread_factor(energy_rel)
    m = np.zeros((4, 4))
    for i, (mean, sigma) in enumerate(MLC_LEVELS):
        s = sigma * k
        for j in range(4):
            if j > i:
                m[i, j] = stats.norm.sf(edges[j], mean, s) - stats.norm.sf(edges[j + 1], mean, s)
            elif j < i:
                m[i, j] = (stats.norm.cdf(edges[j + 1], mean, s)
                           - stats.norm.cdf(edges[j], mean, s))
        m[i, i] = 1.0 - m[i].sum()
    return m


def tabulated_transitions() -> list[tuple[int, int]]:
    """The (from, to) pairs the MLC table lists: those above TABLE_CUTOFF somewhere."""
    peak = np.max([mlc_matrix(e) for e in ENERGY_NODES], axis=0)
    return [(i, j) for i in range(4) for j in range(4) if i != j and peak[i, j] > TABLE_CUTOFF]


def slc_margin() -> float:
    """Read margin in units of the nominal cell spread, fixed by the published low-power point.

    With sigma ~ E^-1/2 the fraction of failing cells is Q(margin * sqrt(E)); the BER is half
    of it (a failing cell is wrong only when it holds the other value).
    """
    return float(stats.norm.isf(2.0 * LOW_POWER_BER) / math.sqrt(WEAKEST_ENERGY_REL))


def slc_fault_fraction(energy_rel: float) -> float:
    return float(stats.norm.sf(slc_margin() * math.sqrt(energy_rel)))


def write_energy_pj_per_bit(energy_rel: float) -> float:
    """Array write energy: the periphery's share fixed, the cell's 0.6 pJ scaled by the knob."""
    periphery = ARRAY_WRITE_PJ / ACCESS_BITS - CELL_WRITE_PJ
    return periphery + CELL_WRITE_PJ * energy_rel


def yaml_number(x: float) -> str:
    """`x` as YAML reads a float back (PyYAML takes 1e+06 for a string, 1.0e+06 for a number)."""
    text = f"{x:.6g}"
    return text.replace("e", ".0e") if "e" in text and "." not in text else text


def yaml_points(xs: tuple[float, ...], ys: list[float], key_indent: int) -> str:
    """A `points:` line (and its continuation lines) at `key_indent` spaces."""
    pairs = [f"[{yaml_number(x)}, {max(y, TABLE_FLOOR):.4e}]" for x, y in zip(xs, ys, strict=True)]
    lines = [", ".join(pairs[k:k + 3]) for k in range(0, len(pairs), 3)]
    head = " " * key_indent + "points: ["
    return head + (",\n" + " " * len(head)).join(lines) + "]"


def yaml_tables() -> str:
    """The YAML blocks of the derived tables (printed when run as a script)."""
    out = ["# rram-hfox-slc.yaml, faults[weak_programming].fault_fraction:",
           yaml_points(ENERGY_NODES, [slc_fault_fraction(e) for e in ENERGY_NODES], 6),
           "# rram-hfox-mlc.yaml, faults[level_spread].transitions:"]
    mats = [mlc_matrix(e) for e in ENERGY_NODES]
    for i, j in tabulated_transitions():
        out.append(f"      - from: {i}\n        to: {j}\n        probability:\n"
                   f"          kind: table\n          of: {KNOB}\n          y_scale: log\n"
                   + yaml_points(ENERGY_NODES, [float(m[i, j]) for m in mats], 10))
    return "\n".join(out)


# -- helpers ----------------------------------------------------------------------------------


def band(n: int, p: float) -> tuple[float, float]:
    low, high = stats.binom.interval(1 - ALPHA, n, p)
    return float(low), float(high)


def random_image(n_bytes: int, seed: int) -> MemoryImage:
    data = np.random.default_rng(seed).integers(0, 256, size=n_bytes, dtype=np.uint8)
    return MemoryImage.from_bytes(data.tobytes())


def stream_bits(image: MemoryImage) -> NDArray[np.uint8]:
    return np.unpackbits(np.frombuffer(image.to_bytes(), dtype=np.uint8), bitorder="little")


GRAY_CODE_TO_LEVEL = np.array([0, 1, 3, 2], dtype=np.int64)


def cell_levels(image: MemoryImage) -> NDArray[np.int64]:
    """Level of each 2-bit cell (Gray coding; a cell's low bit comes first in the stream)."""
    bits = stream_bits(image).astype(np.int64)
    levels: NDArray[np.int64] = GRAY_CODE_TO_LEVEL[bits[0::2] | (bits[1::2] << 1)]
    return levels


def transition_counts(stored: MemoryImage, read: MemoryImage) -> NDArray[np.int64]:
    a, b = cell_levels(stored), cell_levels(read)
    counts: NDArray[np.int64] = np.bincount(4 * a + b, minlength=16).reshape(4, 4)
    return counts


def table_of(device: Device, mechanism: str, i: int, j: int) -> TableCurve:
    mech = next(m for m in device.spec.faults if m.name == mechanism)
    assert isinstance(mech, LevelConfusionMechanism)
    t = next(t for t in mech.transitions if (t.from_level, t.to_level) == (i, j))
    assert isinstance(t.probability, TableCurve)
    return t.probability


@pytest.fixture(scope="module")
def slc() -> Device:
    return load_device("rram-hfox-slc")


@pytest.fixture(scope="module")
def mlc() -> Device:
    return load_device("rram-hfox-mlc")


# -- the files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEVICES)
def test_file_validates_and_every_number_has_a_provenance(name: str) -> None:
    device = load_device(name)
    assert device.spec.technology.value == "rram"
    untagged = [path for path, p in iter_params(device.spec)
                if not p.default and p.provenance is Provenance.UNSPECIFIED]
    assert not untagged
    knob = device.spec.knob(KNOB)
    assert (knob.low, knob.high, knob.nominal.value) == (WEAKEST_ENERGY_REL, 1.0, 1.0)
    assert knob.role.value == "control"


@pytest.mark.parametrize("name", DEVICES)
def test_calibration_report_all_ok(name: str) -> None:
    report = load_device(name).calibration_report()
    assert report
    assert not [(c.knobs, c.published, c.model) for c in report if not c.ok]


# -- MLC: the level distributions -------------------------------------------------------------


def test_nominal_adjacent_level_errors_reproduce_the_published_figures() -> None:
    m = mlc_matrix(1.0)
    assert m[1, 2] == pytest.approx(PUBLISHED_1_TO_2, rel=0.05)
    assert m[2, 1] == pytest.approx(PUBLISHED_2_TO_1, rel=0.05)
    # 1 <-> 2 dominates: the outer levels are far tighter
    assert m[1, 2] > 100 * max(m[0, 1], m[1, 0], m[2, 3], m[3, 2])
    low, mid, high = read_thresholds()
    assert 0.0 < low < 0.385 < mid < 0.722 < high < 1.0


def test_mlc_tables_equal_the_gaussian_derivation(mlc: Device) -> None:
    mech = mlc.spec.faults[0]
    assert isinstance(mech, LevelConfusionMechanism)
    assert mech.phase.value == "programmed"
    listed = sorted((t.from_level, t.to_level) for t in mech.transitions)
    assert listed == tabulated_transitions()
    mats = [mlc_matrix(e) for e in ENERGY_NODES]
    for i, j in listed:
        table = table_of(mlc, "level_spread", i, j)
        assert table.xs == ENERGY_NODES
        assert (table.x_scale, table.y_scale) == (Scale.LINEAR, Scale.LOG)
        assert table.points.provenance is Provenance.DERIVED
        want = [max(float(m[i, j]), TABLE_FLOOR) for m in mats]
        np.testing.assert_allclose(table.ys, want, rtol=1e-3, err_msg=f"{i}->{j}")


def test_mlc_between_table_points_within_two_percent_of_the_derivation(mlc: Device) -> None:
    for a, b in itertools.pairwise(ENERGY_NODES):
        e = (a + b) / 2
        got = np.array(mlc.at(**{KNOB: e}).level_transition)
        want = mlc_matrix(e)
        big = want > TABLE_CUTOFF
        np.testing.assert_allclose(got[big], want[big], rtol=0.02, err_msg=f"E={e}")


def test_weaker_programming_widens_every_level(mlc: Device) -> None:
    grid = [float(x) for x in mlc.knob_grid(KNOB, 40)]
    bers = [mlc.at(**{KNOB: e}).ber for e in grid]
    assert all(a > b for a, b in itertools.pairwise(bers))
    assert bers[-1] < 1e-8  # nominal: the published spread
    assert bers[0] > 1e-2  # the weakest programming
    weak = np.array(mlc.at(**{KNOB: WEAKEST_ENERGY_REL}).level_transition)
    assert weak[1, 3] > 1e-4  # wide distributions skip a level


# -- SLC ----------------------------------------------------------------------------------------


def test_slc_fault_fraction_table_equals_the_model(slc: Device) -> None:
    mech = next(m for m in slc.spec.faults if m.name == "weak_programming")
    assert isinstance(mech, ThresholdMechanism)
    table = mech.fault_fraction
    assert isinstance(table, TableCurve)
    assert table.xs == ENERGY_NODES
    want = [max(slc_fault_fraction(e), TABLE_FLOOR) for e in ENERGY_NODES]
    np.testing.assert_allclose(table.ys, want, rtol=1e-3)
    for a, b in itertools.pairwise(ENERGY_NODES):
        e = (a + b) / 2
        got = slc.at(**{KNOB: e}).mechanisms[0].fault_fraction
        assert got == pytest.approx(slc_fault_fraction(e), rel=0.02)


def test_slc_low_power_point_and_asymmetry(slc: Device) -> None:
    op = slc.at(**{KNOB: WEAKEST_ENERGY_REL})
    assert op.ber == pytest.approx(LOW_POWER_BER, rel=0.01)
    # failed SETs dominate: a stored 1 (LRS) reads 0 three times as often as the reverse
    share = SLC_FAILED_SET_SHARE
    assert op.p_one_to_zero == pytest.approx(share / (1 - share) * op.p_zero_to_one, rel=0.01)
    assert op.p_one_to_zero > 2 * op.p_zero_to_one
    nominal = slc.at()
    assert nominal.ber < 1e-4  # only the residual stuck cells remain


@pytest.mark.parametrize("name", ["rram-hfox-slc", "rram-hfox-mlc"])
def test_write_energy_falls_with_the_programming_energy(name: str) -> None:
    d = load_device(name)
    nominal = d.at()
    assert nominal.write_energy_pj_per_bit == pytest.approx(ARRAY_WRITE_PJ / ACCESS_BITS)
    assert nominal.read_energy_pj_per_bit == pytest.approx(ARRAY_READ_PJ / ACCESS_BITS)
    for e in (WEAKEST_ENERGY_REL, 0.1, 0.37, 0.8):
        assert d.at(**{KNOB: e}).write_energy_pj_per_bit == pytest.approx(
            write_energy_pj_per_bit(e), rel=1e-4)
    # the cell's programming share shrinks 30x; the periphery's does not
    weak = d.at(**{KNOB: WEAKEST_ENERGY_REL}).write_energy_pj_per_bit
    periphery = ARRAY_WRITE_PJ / ACCESS_BITS - CELL_WRITE_PJ
    assert (nominal.write_energy_pj_per_bit - periphery) / (weak - periphery) == pytest.approx(
        1 / WEAKEST_ENERGY_REL, rel=1e-3)


# -- through chips and kernels -------------------------------------------------------------------

SLC_BITS = 1 << 22
MLC_BITS = 1 << 23


def test_slc_chips_reproduce_the_low_power_point_with_nested_asymmetric_errors(
        slc: Device) -> None:
    image = random_image(SLC_BITS // 8, seed=11)
    bits = stream_bits(image)
    zeros = int((bits == 0).sum())
    ones = bits.size - zeros
    rates = []
    for seed in range(4):
        chip = Chip(slc, image.n_bits, seed=seed)
        weak = chip.read(image, {KNOB: WEAKEST_ENERGY_REL}, seed=1)
        mid = chip.read(image, {KNOB: 0.1}, seed=2)
        # failed SETs dominate in every chip
        assert weak.flips_one_to_zero > 2 * weak.flips_zero_to_one
        rates.append(weak.bit_errors / image.n_bits)
        # nesting: the cells wrong at 0.1 E are wrong at E/30 too (same chip, same data)
        wrong_weak = stream_bits(weak.image) != bits
        wrong_mid = stream_bits(mid.image) != bits
        assert wrong_mid.sum() > 0
        assert not np.any(wrong_mid & ~wrong_weak)
        p01 = weak.flips_zero_to_one / zeros
        p10 = weak.flips_one_to_zero / ones
        share = SLC_FAILED_SET_SHARE
        assert p10 / p01 == pytest.approx(share / (1 - share), rel=0.1)
    mean = float(np.mean(rates))
    assert LOW_POWER_BER / 2 <= mean <= LOW_POWER_BER * 2
    assert mean == pytest.approx(LOW_POWER_BER, rel=0.25)


def test_slc_chips_follow_the_model_along_the_knob(slc: Device) -> None:
    image = random_image(SLC_BITS // 8, seed=12)
    points = (WEAKEST_ENERGY_REL, 0.07, 0.1, 0.15)
    totals = np.zeros(len(points))
    n_chips = 6
    for seed in range(n_chips):
        chip = Chip(slc, image.n_bits, seed=100 + seed)
        for k, e in enumerate(points):
            totals[k] += chip.read(image, {KNOB: e}).bit_errors
    rates = totals / (n_chips * image.n_bits)
    model = np.array([slc.at(**{KNOB: e}).ber for e in points])
    assert np.all(rates[:-1] > rates[1:])  # fewer errors with more programming energy
    assert np.all(rates / model > 0.5)
    assert np.all(rates / model < 2.0), (rates, model)


def test_test_chip_stuck_cells_reproduce_the_measured_fractions() -> None:
    d = load_device("rram-hfox-slc-test-chip")
    image = random_image(SLC_BITS // 8, seed=13)
    bits = stream_bits(image)
    zeros = int((bits == 0).sum())
    ones = bits.size - zeros
    up = down = 0
    n_chips = 3
    for seed in range(n_chips):
        r = Chip(d, image.n_bits, seed=seed).read(image, seed=seed)
        up += r.flips_zero_to_one
        down += r.flips_one_to_zero
        # stuck at LRS (reads 1) outnumber stuck at HRS, as measured
        assert r.flips_zero_to_one > 3 * r.flips_one_to_zero
    lo, hi = band(n_chips * zeros, TEST_CHIP_SA1)
    assert lo <= up <= hi
    lo, hi = band(n_chips * ones, TEST_CHIP_SA0)
    assert lo <= down <= hi


@pytest.mark.parametrize("energy_rel", [WEAKEST_ENERGY_REL, 0.1, 0.25])
def test_mlc_chips_reproduce_the_derived_level_confusion(mlc: Device, energy_rel: float) -> None:
    image = random_image(MLC_BITS // 8, seed=21)
    stored = cell_levels(image)
    per_level = np.bincount(stored, minlength=4)
    want = mlc_matrix(energy_rel)
    counts = np.zeros((4, 4), np.int64)
    n_chips = 3
    errors = 0
    for seed in range(n_chips):
        chip = Chip(mlc, image.n_bits, seed=seed)
        r = chip.read(image, {KNOB: energy_rel}, seed=seed)
        counts += transition_counts(image, r.image)
        errors += r.bit_errors
        # programming errors persist: a second read of the chip sees the same cells
        again = chip.read(image, {KNOB: energy_rel}, seed=seed + 50)
        assert np.array_equal(again.image.words, r.image.words)
    for i in range(4):
        for j in range(4):
            if i != j:
                lo, hi = band(n_chips * int(per_level[i]), float(want[i, j]))
                assert lo <= counts[i, j] <= hi, (i, j, counts[i, j], lo, hi)
    rate = errors / (n_chips * image.n_bits)
    derived = mlc.at(**{KNOB: energy_rel}).ber
    assert derived / 2 <= rate <= derived * 2
    assert rate == pytest.approx(derived, rel=0.1)


def test_mlc_chips_nominal_spread_is_error_free_at_this_size(mlc: Device) -> None:
    image = random_image(MLC_BITS // 8, seed=22)
    r = Chip(mlc, image.n_bits, seed=7).read(image)
    # 4e-9 per bit: 0.03 errors expected in 8e6 bits
    assert r.bit_errors <= band(image.n_bits, mlc.at().ber)[1] + 1


if __name__ == "__main__":
    print(yaml_tables())
