"""The built-in `sram-14nm` against the published figures (Stutz et al. MLSys 2021, Fig. 1, data
of Chandramoorthy et al. HPCA 2019), hard-coded here independently of the YAML's calibration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from memsim import Device, load_device

# V/Vmin -> fraction of faulty cells
PUBLISHED_FAULTS = [
    (0.952, 2e-6), (0.930, 2e-5), (0.894, 4e-4), (0.876, 1.6e-3), (0.863, 3e-3),
    (0.837, 1.3e-2), (0.811, 3.6e-2), (0.785, 8e-2), (0.758, 0.19),
]
# V/Vmin -> energy per access relative to nominal
PUBLISHED_ENERGY = [(0.757, 0.565), (0.837, 0.70), (0.889, 0.79)]


@pytest.fixture(scope="module")
def sram() -> Device:
    return load_device("sram-14nm")


@pytest.mark.parametrize(("v_rel", "published"), PUBLISHED_FAULTS)
def test_fault_fraction_within_factor_two_of_each_published_point(
        sram: Device, v_rel: float, published: float) -> None:
    model = sram.at(v_rel=v_rel).fault_fraction
    assert published / 2 <= model <= published * 2, (v_rel, model, published)


@pytest.mark.parametrize("v_rel", [0.70, 0.758, 0.85, 0.93, 1.0])
def test_stuck_at_split_gives_symmetric_bit_errors(sram: Device, v_rel: float) -> None:
    op = sram.at(v_rel=v_rel)
    assert op.p_zero_to_one == pytest.approx(op.p_one_to_zero, rel=1e-12, abs=0.0)
    assert op.ber == pytest.approx(op.fault_fraction / 2, rel=1e-9, abs=0.0)
    assert op.fault_fraction > 0.0


def test_fault_fraction_strictly_decreasing_in_voltage(sram: Device) -> None:
    grid = np.linspace(0.70, 1.0, 61)
    fractions = [sram.at(v_rel=float(v)).fault_fraction for v in grid]
    assert all(a > b for a, b in itertools.pairwise(fractions))
    assert fractions[0] > 0.3  # well past the last published point (0.19 at 0.758)


@pytest.mark.parametrize(("v_rel", "relative"), PUBLISHED_ENERGY)
def test_read_energy_scales_as_v_squared(sram: Device, v_rel: float, relative: float) -> None:
    nominal = sram.at().read_energy_pj_per_bit
    assert nominal == pytest.approx(1.0 / 64, rel=1e-12)  # 1.0 pJ per 64-bit access
    e = sram.at(v_rel=v_rel).read_energy_pj_per_bit
    assert e / nominal == pytest.approx(v_rel**2, rel=1e-12)
    assert e / nominal == pytest.approx(relative, rel=0.02)


def test_calibration_report_all_ok(sram: Device) -> None:
    report = sram.calibration_report()
    assert len(report) == len(PUBLISHED_FAULTS) + len(PUBLISHED_ENERGY)
    bad = [(c.knobs, c.published, c.model) for c in report if not c.ok]
    assert not bad


def test_negligible_rate_at_nominal_voltage(sram: Device) -> None:
    op = sram.at()
    assert op.knobs == {"v_rel": 1.0}
    assert op.fault_fraction < 1e-6
    assert op.ber < 1e-6
    # but the published 2e-6 at 0.952 is not below it
    assert sram.at(v_rel=0.952).fault_fraction > 1e-6
