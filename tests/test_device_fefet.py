"""The built-in FeFET devices against the simulated figures of the research notes (RESEARCH.md,
FeFET; MemSysExplorer device simulation), hard-coded here independently of the YAML files.

Single-level cells by domain count: P(0->1) = 2.5e-2 / 2.8e-3 / 8.6e-5 / 2.5e-6 at 50 / 100 /
200 / 300 domains, P(1->0) = 0. Two-bit cells: upward level errors only, 0->1 0.94 %, 1->2
1.8 %, 2->3 1.7 %. The temperature dependence is the files' assumption (the margin shrinks by
1/300 per kelvin from 25 degC), re-derived here. Statistical checks use fixed seeds and
two-sided binomial bands at alpha = 1e-6.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

import memsim
from memsim import Device
from memsim.cli import main
from memsim.memory.chip import Chip
from memsim.memory.image import MemoryImage
from memsim.spec.loader import builtin_device_files
from memsim.spec.mechanisms import LevelConfusionMechanism, ThresholdMechanism

ALPHA = 1e-6
PUBLISHED_SLC = [(50, 2.5e-2), (100, 2.8e-3), (200, 8.6e-5), (300, 2.5e-6)]
PUBLISHED_MLC = {0: 0.0094, 1: 0.018, 2: 0.017}  # level -> P(read one level higher)
MARGIN_CLOSES_C = 325.0  # assumed: the margin falls by 1/300 of its 25 degC value per kelvin


def assumed_rate(p_25c: float, temp_c: float) -> float:
    """The files' temperature form: the probit margin z0 scaled by (325 - T)/300."""
    z0 = float(stats.norm.isf(p_25c))
    return float(stats.norm.sf(z0 * (MARGIN_CLOSES_C - temp_c) / 300.0))


def band(n: int, p: float) -> tuple[float, float]:
    low, high = stats.binom.interval(1 - ALPHA, n, p)
    return float(low), float(high)


def assert_rate(observed: int, n: int, p: float) -> None:
    """Inside the binomial band, and within x2 (resolvable: n·p >= 100)."""
    low, high = band(n, p)
    assert low <= observed <= high, (observed, n * p)
    assert n * p >= 100 and 0.5 <= observed / (n * p) <= 2.0, (observed, n * p)


def random_image(n_bits: int, seed: int) -> MemoryImage:
    data = np.random.default_rng(seed).integers(0, 256, size=n_bits // 8, dtype=np.uint8)
    return MemoryImage.from_bytes(data.tobytes())


def bits_of(image: MemoryImage) -> NDArray[np.uint8]:
    return np.unpackbits(np.frombuffer(image.to_bytes(), dtype=np.uint8))


@pytest.fixture(scope="module")
def slc() -> dict[int, Device]:
    return {n: memsim.load_device(f"fefet-slc-{n}") for n, _ in PUBLISHED_SLC}


@pytest.fixture(scope="module")
def mlc() -> Device:
    return memsim.load_device("fefet-mlc")


# -- the files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fefet-slc-50", "fefet-slc-100", "fefet-slc-200",
                                  "fefet-slc-300", "fefet-mlc"])
def test_file_validates_and_meets_its_calibration(name: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "validate", str(builtin_device_files()[name])]) == 0
    assert capsys.readouterr().out.startswith("ok:")
    device = memsim.load_device(name)
    report = device.calibration_report()
    assert report and all(c.ok for c in report)
    assert [(k.name, k.role.value) for k in device.spec.knobs] == [
        ("temperature_c", "environment")]


def test_domain_presets_differ_from_the_base_in_sigma_only(slc: dict[int, Device]) -> None:
    base = slc[100].spec
    for n in (50, 200, 300):
        spec = slc[n].spec
        assert spec.knobs == base.knobs and spec.energy == base.energy
        mech, ref = spec.faults[0], base.faults[0]
        assert isinstance(mech, ThresholdMechanism) and isinstance(ref, ThresholdMechanism)
        assert (mech.failure, mech.variability, mech.phase) == (
            ref.failure, ref.variability, ref.phase)
        assert mech.fault_fraction != ref.fault_fraction


# -- operating points -------------------------------------------------------------------------


@pytest.mark.parametrize(("domains", "published"), PUBLISHED_SLC)
def test_slc_reproduces_each_published_point_and_never_loses_a_one(
        slc: dict[int, Device], domains: int, published: float) -> None:
    device = slc[domains]
    op = device.at(temperature_c=25)
    assert 0.5 <= op.p_zero_to_one / published <= 2.0
    assert op.p_zero_to_one == pytest.approx(published, rel=1e-6)
    assert op.fault_fraction == op.p_zero_to_one  # a weak cell reads 1
    for temp in device.knob_grid("temperature_c", 18):
        assert device.at(temperature_c=float(temp)).p_one_to_zero == 0.0


def test_slc_rate_falls_with_domains_and_rises_with_temperature(
        slc: dict[int, Device]) -> None:
    temps = [float(t) for t in slc[100].knob_grid("temperature_c", 18)]
    for temp in temps:  # more domains, fewer errors, at every temperature
        rates = [slc[n].at(temperature_c=temp).p_zero_to_one for n, _ in PUBLISHED_SLC]
        assert all(a > b for a, b in itertools.pairwise(rates)), (temp, rates)
    for n, published in PUBLISHED_SLC:
        rates = [slc[n].at(temperature_c=t).p_zero_to_one for t in temps]
        assert all(a < b for a, b in itertools.pairwise(rates))
        assert rates[-1] == pytest.approx(assumed_rate(published, 85.0), rel=1e-6)
    # the assumed form: 85 degC multiplies the rate by x2.3 (50 domains) to x52 (300)
    assert slc[50].at(temperature_c=85).p_zero_to_one / 2.5e-2 == pytest.approx(2.34, rel=0.01)
    assert slc[300].at(temperature_c=85).p_zero_to_one / 2.5e-6 == pytest.approx(52.1, rel=0.01)


def test_slc_domain_counts_follow_the_inverse_square_root_law() -> None:
    """The probit margins of the four simulated points scale as sqrt(N) within 5 %."""
    margins = [float(stats.norm.isf(p)) / math.sqrt(n) for n, p in PUBLISHED_SLC]
    assert max(margins) / min(margins) < 1.06


def test_mlc_level_matrix_is_upward_only(mlc: Device) -> None:
    mech = mlc.spec.faults[0]
    assert isinstance(mech, LevelConfusionMechanism)
    assert {(t.from_level, t.to_level) for t in mech.transitions} == {(0, 1), (1, 2), (2, 3)}
    for temp in (0.0, 25.0, 85.0):
        m = np.array(mlc.at(temperature_c=temp).level_transition)
        assert np.all(np.tril(m, -1) == 0.0) and np.all(np.triu(m, 2) == 0.0)
        for level, published in PUBLISHED_MLC.items():
            assert m[level, level + 1] == pytest.approx(assumed_rate(published, temp), rel=1e-6)
        assert m[3, 3] == 1.0


# -- through chips and kernels ----------------------------------------------------------------


@pytest.mark.parametrize(("domains", "n_bits", "chips"), [
    (50, 1 << 22, 4), (100, 1 << 22, 4), (200, 1 << 22, 4),
    # 2.5e-6 needs ~1e8 stored zeros for a x2 check far outside the binomial band
    (300, 1 << 25, 4),
])
def test_chips_reproduce_the_published_slc_points(slc: dict[int, Device], domains: int,
                                                  n_bits: int, chips: int) -> None:
    device = slc[domains]
    published = dict(PUBLISHED_SLC)[domains]
    image = random_image(n_bits, seed=domains)
    zeros = int(n_bits - bits_of(image).sum()) * chips
    up = down = 0
    for seed in range(chips):
        result = Chip(device, n_bits, seed=seed, sweep={"temperature_c": (0.0, 25.0)}).read(
            image, {"temperature_c": 25.0}, seed=seed)
        up += result.flips_zero_to_one
        down += result.flips_one_to_zero
    assert down == 0  # P(1->0) = 0 exactly
    assert_rate(up, zeros, published)


def test_chips_nest_and_scale_with_temperature(slc: dict[int, Device]) -> None:
    """The weak cells of a chip at 25 degC stay weak when it is hotter (threshold faults), and
    the rate follows the assumed form at every temperature."""
    device = slc[100]
    image = random_image(1 << 22, seed=7)
    stored = bits_of(image)
    zeros = int(stored.size - stored.sum())
    for seed in range(3):
        chip = Chip(device, image.n_bits, seed=seed)
        previous_cells: NDArray[np.int64] | None = None
        previous_flips: NDArray[np.bool_] | None = None
        for temp in (25.0, 55.0, 85.0):
            result = chip.read(image, {"temperature_c": temp}, seed=seed)
            flips = (bits_of(result.image) ^ stored).astype(bool)
            assert result.flips_one_to_zero == 0
            assert_rate(result.flips_zero_to_one, zeros, assumed_rate(2.8e-3, temp))
            cells = chip.faulty_cells(temperature_c=temp)["programmed_state"][0]
            if previous_cells is not None and previous_flips is not None:
                assert np.isin(previous_cells, cells).all()
                assert not np.any(previous_flips & ~flips)
                assert flips.sum() > previous_flips.sum()
            previous_cells, previous_flips = cells, flips


@pytest.mark.parametrize("temp", [25.0, 85.0])
def test_mlc_chips_move_levels_only_one_step_up(mlc: Device, temp: float) -> None:
    n_cells, chips = 1 << 21, 4
    levels = np.random.default_rng(11).integers(0, 4, size=n_cells).astype(np.uint32)
    gray = levels ^ (levels >> 1)
    image = MemoryImage.pack_codes({"cells": (gray, "unsigned", 2)})
    to_level = np.argsort(np.array([0, 1, 3, 2]))  # Gray code -> level
    moved = {level: 0 for level in range(4)}
    for seed in range(chips):
        result = Chip(mlc, image.n_bits, seed=seed).read(image, {"temperature_c": temp},
                                                          seed=seed)
        after = to_level[result.image.codes("cells")]
        step = after.astype(np.int64) - levels
        assert step.min() >= 0, "a level decreased"
        assert step.max() <= 1, "a level skipped"
        for level in range(4):
            moved[level] += int(step[levels == level].sum())
    assert moved[3] == 0
    for level, published in PUBLISHED_MLC.items():
        n = int((levels == level).sum()) * chips
        assert_rate(moved[level], n, assumed_rate(published, temp))
