"""Fitting a threshold device to fault maps: characterise simulated chips with planted shares
and weak arrays, fit, and recover them within their uncertainties; a device built from the fit
reproduces the maps' fault-free arrays and dispersion within 25 % over chips."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from memsim.memory.chip import STUCK_AT_ONE, STUCK_AT_ZERO, Chip
from memsim.physics.device import Device
from memsim.physics.fit import (
    ArrayCounts,
    FitError,
    ThresholdFit,
    fit_threshold,
    fitted_calibration,
    fitted_document,
    fitted_mechanism,
)
from memsim.spec.loader import load_device_document

pytestmark = pytest.mark.slow

VOLTS = np.array([0.80, 0.83, 0.86, 0.89])
GEOMETRY = {"row_bits": 64, "rows_per_array": 16}
CELLS_PER_ARRAY = 1024


def _device(variability: dict[str, Any],
            neighbours: list[dict[str, float]] | None = None) -> Device:
    document = load_device_document("sram-14nm")
    document["array"] = GEOMETRY
    document["faults"][0]["variability"] = variability
    if neighbours:
        document["faults"][0]["neighbours"] = neighbours
    return Device.from_document(document)


def _maps(device: Device, chips: int, arrays: int, first_seed: int,
          volts: NDArray[np.float64] = VOLTS
          ) -> tuple[NDArray[np.bool_], NDArray[np.bool_], list[Chip]]:
    """Stuck-at-0 and stuck-at-1 maps (chips, knob values, cells) of simulated chips, and
    the chips."""
    n = arrays * CELLS_PER_ARRAY
    sa0 = np.zeros((chips, volts.size, n), bool)
    sa1 = np.zeros_like(sa0)
    drawn = [Chip(device, n, seed=first_seed + c) for c in range(chips)]
    for c, chip in enumerate(drawn):
        for i, v in enumerate(volts):
            cells, actions = chip.faulty_cells(v_rel=float(v))["undervolt"]
            sa0[c, i, cells[actions == STUCK_AT_ZERO]] = True
            sa1[c, i, cells[actions == STUCK_AT_ONE]] = True
    return sa0, sa1, drawn


def _counts(device: Device, chips: int, arrays: int, first_seed: int,
            cells_per_row: int | None = None) -> ArrayCounts:
    sa0, sa1, _ = _maps(device, chips, arrays, first_seed)
    return ArrayCounts.from_maps("v_rel", VOLTS, sa0, sa1, CELLS_PER_ARRAY,
                                 cells_per_row=cells_per_row)


@pytest.fixture(scope="module")
def planted() -> tuple[Device, ArrayCounts, ThresholdFit]:
    device = _device({"die": 0.1, "array": 0.2, "cell": 0.7,
                      "weak_arrays": {"fraction": 0.05, "shift": 2.0}})
    counts = _counts(device, chips=6, arrays=512, first_seed=100)
    return device, counts, fit_threshold(counts, resamples=12)


def _within(fitted: tuple[float, float], planted: float, sigmas: float = 3.0) -> bool:
    value, se = fitted
    return math.isfinite(se) and se > 0 and abs(value - planted) <= sigmas * se


def test_the_fit_recovers_planted_shares_and_weak_arrays(
        planted: tuple[Device, ArrayCounts, ThresholdFit]) -> None:
    device, _, fit = planted
    assert _within(fit.die, 0.1), fit.die
    assert _within(fit.array, 0.2), fit.array
    assert _within(fit.weak_fraction, 0.05), fit.weak_fraction
    assert _within(fit.weak_shift, 2.0), fit.weak_shift
    assert _within(fit.stuck_at_zero_share, 0.5), fit.stuck_at_zero_share
    # the fault fractions against the device's population curve, within the chips' spread
    truth = np.array([device.at(v_rel=float(v)).fault_fraction for v in VOLTS])
    assert np.all(np.abs(np.log(np.array(fit.fault_fraction) / truth)) < math.log(1.5))
    # the probit through them: the device's own curve is a probit (mean 0.7227, sigma 0.0504)
    assert _within(fit.probit_mean, 0.7227), fit.probit_mean
    assert _within(fit.probit_sigma, 0.0504), fit.probit_sigma
    assert all(se > 0 for se in fit.fault_fraction_se)


def test_goodness_of_fit_compares_the_maps_with_the_model(
        planted: tuple[Device, ArrayCounts, ThresholdFit]) -> None:
    _, counts, fit = planted
    for i, row in enumerate(fit.goodness):
        k = counts.faulty[:, i, :]
        assert row.knob_value == VOLTS[i]
        assert row.faulty_fraction[0] == pytest.approx(k.mean() / CELLS_PER_ARRAY)
        assert row.fault_free_arrays[0] == pytest.approx((k == 0).mean())
        dispersion = np.mean([kc.var() / kc.mean() for kc in k])
        assert row.dispersion[0] == pytest.approx(dispersion)
        assert row.max_per_array[0] == pytest.approx(k.max(axis=1).mean())
        # the mean is matched exactly, the rest within 25 % (the largest array: 20 %)
        assert row.faulty_fraction[1] == pytest.approx(row.faulty_fraction[0], rel=1e-6)
        assert row.fault_free_arrays[1] == pytest.approx(row.fault_free_arrays[0], rel=0.25)
        assert row.dispersion[1] == pytest.approx(row.dispersion[0], rel=0.25)
        assert row.max_per_array[1] == pytest.approx(row.max_per_array[0], rel=0.2)


def test_a_device_built_from_the_fit_reproduces_the_maps() -> None:
    # over-dispersed arrays on equal chips, as on one board (with a die share, four chips'
    # fault-free arrays differ from the next four's by more than the fit's error)
    device = _device({"die": 0.0, "array": 0.15, "cell": 0.85,
                      "weak_arrays": {"fraction": 0.08, "shift": 1.8}})
    counts = _counts(device, chips=4, arrays=1024, first_seed=40)
    fit = fit_threshold(counts, resamples=4)
    source = "maps"
    document = {"schema_version": 1, "extends": "sram-14nm", "name": "sram-fitted",
                "array": GEOMETRY,
                "source": [{"id": source, "citation": "six simulated chips"}],
                "faults": [fitted_mechanism(fit, name="undervolt", source=source)],
                "calibration": [fitted_calibration(fit, source=source)]}
    fitted = Device.from_document(document)
    assert all(check.ok for check in fitted.calibration_report()
               if check.calibration.source == source)
    again = _counts(fitted, chips=8, arrays=1024, first_seed=900)  # other chips
    for i in range(VOLTS.size):
        measured, simulated = counts.faulty[:, i, :], again.faulty[:, i, :]
        free = (measured == 0).mean(), (simulated == 0).mean()
        dispersion = [np.mean([kc.var() / kc.mean() for kc in k if kc.mean() > 0])
                      for k in (measured, simulated)]
        assert free[1] == pytest.approx(free[0], rel=0.25, abs=0.01), (VOLTS[i], free)
        assert dispersion[1] == pytest.approx(dispersion[0], rel=0.25), (VOLTS[i], dispersion)


def test_without_weak_arrays_the_normal_shares_are_recovered() -> None:
    device = _device({"die": 0.05, "array": 0.3, "cell": 0.65})
    counts = _counts(device, chips=5, arrays=512, first_seed=7)
    fit = fit_threshold(counts, weak_arrays=False, resamples=10)
    assert _within(fit.array, 0.3), fit.array
    assert _within(fit.die, 0.05, sigmas=4.0), fit.die
    assert fit.weak_fraction == (0.0, fit.weak_fraction[1]) and math.isnan(fit.weak_fraction[1])
    table = fitted_mechanism(fit, name="undervolt", source="maps", curve="table")
    assert table["fault_fraction"]["kind"] == "table"  # type: ignore[index]
    assert "weak_arrays" not in table["variability"]  # type: ignore[operator]


def test_maps_without_faults_or_with_bad_shapes_are_refused() -> None:
    empty = np.zeros((1, 2, 4096), bool)
    counts = ArrayCounts.from_maps("v_rel", np.array([0.9, 1.0]), empty, empty, 1024)
    with pytest.raises(FitError, match="no faulty cell"):
        fit_threshold(counts)
    with pytest.raises(FitError, match="fewer than two arrays"):
        ArrayCounts.from_maps("v_rel", np.array([0.9]), empty[:, :1, :1000],
                              empty[:, :1, :1000], 1024)
    for row in (0, 1000, 1024):  # rows must divide an array into two or more
        with pytest.raises(FitError, match="must divide arrays"):
            ArrayCounts.from_maps("v_rel", np.array([0.9, 1.0]), empty, empty, 1024,
                                  cells_per_row=row)
    rows = ArrayCounts.from_maps("v_rel", np.array([0.9, 1.0]), empty, empty, 1024,
                                cells_per_row=64)
    with pytest.raises(FitError, match="sum to the array counts"):
        ArrayCounts(rows.knob, rows.knob_values, rows.faulty + 1, 1024, rows.stuck_at_zero,
                    rows.stuck_at_one, row_faulty=rows.row_faulty, cells_per_row=64)


@pytest.fixture(scope="module")
def rows_planted() -> tuple[ArrayCounts, ThresholdFit]:
    device = _device({"die": 0.1, "array": 0.2, "row": 0.15, "cell": 0.55,
                      "weak_arrays": {"fraction": 0.05, "shift": 2.0}})
    counts = _counts(device, chips=6, arrays=512, first_seed=100, cells_per_row=64)
    return counts, fit_threshold(counts, resamples=12)


def test_per_row_counts_recover_a_planted_row_share(
        rows_planted: tuple[ArrayCounts, ThresholdFit]) -> None:
    counts, fit = rows_planted
    assert fit.cells_per_row == 64
    assert _within(fit.row, 0.15), fit.row
    assert fit.row[1] < 0.01  # the rows of 3072 arrays pin it down
    assert _within(fit.die, 0.1), fit.die
    assert _within(fit.array, 0.2), fit.array
    assert _within(fit.weak_fraction, 0.05), fit.weak_fraction
    assert _within(fit.weak_shift, 2.0), fit.weak_shift
    assert fit.cell == pytest.approx(1 - fit.die[0] - fit.array[0] - fit.row[0])
    for i, row in enumerate(fit.goodness):
        r = counts.row_faulty[:, i].astype(float)  # type: ignore[index]
        assert row.fault_free_rows is not None and row.row_dispersion is not None
        assert row.fault_free_rows[0] == pytest.approx((r == 0).mean())
        assert row.row_dispersion[0] == pytest.approx(
            r.var(axis=2, ddof=1).sum() / r.mean(axis=2).sum())
        # rows cluster: about 4-5 times a binomial's dispersion at every voltage
        assert row.row_dispersion[0] > 3
        assert row.fault_free_rows[1] == pytest.approx(row.fault_free_rows[0], rel=0.05)
        assert row.row_dispersion[1] == pytest.approx(row.row_dispersion[0], rel=0.15)
        assert row.dispersion[1] == pytest.approx(row.dispersion[0], rel=0.25)
    mechanism = fitted_mechanism(fit, name="undervolt", source="maps")
    variability = mechanism["variability"]
    assert variability["row"] == pytest.approx(fit.row[0], rel=1e-5)  # type: ignore[index]
    assert sum(variability[k] for k in ("die", "array", "row", "cell")  # type: ignore[index]
               ) == pytest.approx(1.0)


def test_without_a_row_share_the_rows_look_binomial_and_fit_none(
        planted: tuple[Device, ArrayCounts, ThresholdFit]) -> None:
    device, _, _ = planted
    counts = _counts(device, chips=3, arrays=512, first_seed=100, cells_per_row=64)
    fit = fit_threshold(counts, resamples=2)
    assert fit.row[0] < 0.005, fit.row
    for row in fit.goodness:
        assert row.row_dispersion is not None
        # binomial within an array: 1 − q, below 1 where arrays are dense
        assert 0.5 < row.row_dispersion[0] < 1.05
        assert row.row_dispersion[1] == pytest.approx(row.row_dispersion[0], rel=0.05)


def test_a_device_fitted_with_rows_reproduces_the_rows() -> None:
    # equal chips, as on one board (a die share makes four chips differ from the next four)
    device = _device({"die": 0.0, "array": 0.15, "row": 0.15, "cell": 0.7,
                      "weak_arrays": {"fraction": 0.08, "shift": 1.8}})
    counts = _counts(device, chips=4, arrays=512, first_seed=40, cells_per_row=64)
    fit = fit_threshold(counts, resamples=2)
    document = fitted_document(fit, extends="sram-14nm", name="sram-rows",
                               description="rows", mechanism="undervolt",
                               citation="four simulated chips", array_bits=CELLS_PER_ARRAY)
    assert document["array"] == GEOMETRY  # the rows the fit counted
    fitted = Device.from_document(document)
    again = _counts(fitted, chips=8, arrays=512, first_seed=900, cells_per_row=64)
    for i in range(VOLTS.size):
        measured, simulated = (c.row_faulty[:, i].astype(float)  # type: ignore[index]
                               for c in (counts, again))
        free = [(r == 0).mean() for r in (measured, simulated)]
        dispersion = [r.var(axis=2, ddof=1).sum() / r.mean(axis=2).sum()
                      for r in (measured, simulated)]
        # weak arrays make a chip's fraction heavy-tailed: four chips of 512 arrays fall short
        # of their population's fraction by 18-27 % (the fit takes the maps' own), so the
        # fitted device's chips see a little more fault-free rows than the maps (9 % at 0.80)
        assert free[1] == pytest.approx(free[0], rel=0.12), (VOLTS[i], free)
        assert dispersion[1] == pytest.approx(dispersion[0], rel=0.25), (VOLTS[i], dispersion)


def test_pairs_are_found_and_fitted_with_the_shares() -> None:
    from memsim.physics.fit import find_neighbours

    device = _device({"die": 0.0, "array": 0.2, "cell": 0.8},
                     [{"offset": 8, "probability": 0.7}])
    sa0, sa1, _ = _maps(device, chips=3, arrays=512, first_seed=300)
    found = find_neighbours(sa0, sa1, 32)
    assert [n.offset for n in found] == [8]
    assert _within(found[0].probability, 0.7), found[0]
    counts = ArrayCounts.from_maps("v_rel", VOLTS, sa0, sa1, CELLS_PER_ARRAY, [8])
    fit = fit_threshold(counts, weak_arrays=False, resamples=8)
    assert _within(fit.array, 0.2), fit.array
    # the curve is of all faulty cells, partners included: the device's
    truth = np.array([device.at(v_rel=float(v)).fault_fraction for v in VOLTS])
    assert np.all(np.abs(np.log(np.array(fit.fault_fraction) / truth)) < math.log(1.3))
    mechanism = fitted_mechanism(fit, name="undervolt", source="maps", neighbours=found)
    assert mechanism["neighbours"][0]["offset"] == 8  # type: ignore[index]


def test_cells_thinned_out_by_chance_are_put_back() -> None:
    """Dense weak arrays with pairs: leaving out every cell that follows a faulty one drops
    most of such an array's own faults (42 % of all at 0.80 here, and the dispersion to a
    quarter); put back per array, the counts match the cells that failed by themselves."""
    from memsim.physics.mechanisms import primary_fraction, score_quantile

    device = _device({"die": 0.0, "array": 0.2, "cell": 0.8,
                      "weak_arrays": {"fraction": 0.08, "shift": 1.8}},
                     [{"offset": 8, "probability": 0.7}])
    sa0, sa1, chips = _maps(device, chips=3, arrays=512, first_seed=300)
    primary = np.zeros_like(sa0)
    for c, chip in enumerate(chips):
        for i, v in enumerate(VOLTS):
            # the cells failing by themselves: the prefix of the chip's candidates below z
            z = score_quantile(primary_fraction(device.at(v_rel=float(v)).fault_fraction,
                                                (0.7,)), (0.08, 1.8))
            drawn = chip.persistent[0]
            primary[c, i, drawn.cells[:drawn.active(z)]] = True
    counts = ArrayCounts.from_maps("v_rel", VOLTS, sa0, sa1, CELLS_PER_ARRAY, [8],
                                   cells_per_row=64)
    truth = ArrayCounts.from_maps("v_rel", VOLTS, primary, np.zeros_like(primary),
                                  CELLS_PER_ARRAY, cells_per_row=64)
    every = (sa0 | sa1).reshape(3, VOLTS.size, 512, CELLS_PER_ARRAY).sum(axis=3)
    assert counts.row_faulty is not None and truth.row_faulty is not None
    for i in range(VOLTS.size):
        got, want = (c.faulty[:, i].astype(float) for c in (counts, truth))
        assert got.sum() == pytest.approx(want.sum(), rel=0.03), VOLTS[i]
        assert got.var() / got.mean() == pytest.approx(want.var() / want.mean(), rel=0.06)
        assert np.all(got <= every[:, i])
        rows = [c.row_faulty[:, i].astype(float) for c in (counts, truth)]  # type: ignore[index]
        assert (rows[0] == 0).mean() == pytest.approx((rows[1] == 0).mean(), rel=0.03)


def _row_maps(neighbours: list[dict[str, float]]
              ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    device = _device({"die": 0.0, "array": 0.1, "row": 0.15, "cell": 0.75}, neighbours)
    sa0, sa1, _ = _maps(device, chips=3, arrays=512, first_seed=500)
    return sa0, sa1


def test_rows_that_cluster_faults_are_not_pairs_when_the_rows_are_known() -> None:
    """A row share pairs faults more at small offsets (mostly within one row) than at
    large ones: against the median over offsets that looks like neighbours at +1, +2, ...;
    against chance row by row it is none, and real pairs still stand out."""
    from memsim.physics.fit import find_neighbours

    sa0, sa1 = _row_maps([])
    assert find_neighbours(sa0, sa1, 64)  # the median baseline is fooled
    assert find_neighbours(sa0, sa1, 64, cells_per_row=64) == ()
    sa0, sa1 = _row_maps([{"offset": 8, "probability": 0.7}])
    found = find_neighbours(sa0, sa1, 64, cells_per_row=64)
    assert [f.offset for f in found] == [8]
    assert _within(found[0].probability, 0.7), found[0]


def test_clustered_maps_without_pairs_show_none() -> None:
    # arrays and weak arrays cluster faults at every offset alike, and a little less across
    # an array's edge: neither is a neighbour
    from memsim.physics.fit import find_neighbours

    device = _device({"die": 0.0, "array": 0.15, "cell": 0.85,
                      "weak_arrays": {"fraction": 0.08, "shift": 1.8}})
    sa0, sa1, _ = _maps(device, chips=3, arrays=1024, first_seed=500,
                        volts=np.array([0.80, 0.86]))
    assert find_neighbours(sa0, sa1, 64) == ()
