"""Weak arrays in the threshold model: a fraction of arrays whose cells fail early. The
population fraction stays the curve, the weak share of arrays is the declared one, faults stay
nested, and nothing changes without them (statistical tests at fixed seeds)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr, ndtri

from memsim.errors import SpecError
from memsim.kernels.sampling import threshold_candidates
from memsim.memory.chip import Chip
from memsim.physics.device import Device
from memsim.physics.mechanisms import score_quantile
from memsim.spec.loader import load_device_document

ALPHA = 1e-3
CELLS_PER_ROW, ROWS_PER_ARRAY = 64, 16
ARRAY_CELLS = CELLS_PER_ROW * ROWS_PER_ARRAY


@pytest.mark.parametrize("weak", [(0.05, 2.0), (0.3, 0.5), (0.01, 6.0), (1.0, 1.0)])
@pytest.mark.parametrize("f", [1e-12, 1e-6, 1e-3, 0.2, 0.9])
def test_the_score_quantile_inverts_the_mixture(weak: tuple[float, float], f: float) -> None:
    p, s = weak
    z = score_quantile(f, weak)
    mixture = (1 - p) * ndtr(z) + p * ndtr(z + s)
    assert mixture == pytest.approx(f, rel=1e-9)
    assert score_quantile(f) == pytest.approx(float(ndtri(f)), rel=1e-12)
    assert score_quantile(0.0, weak) == -math.inf and score_quantile(1.0, weak) == math.inf


def _per_array(cells: np.ndarray, n_arrays: int) -> np.ndarray:
    return np.bincount(cells // ARRAY_CELLS, minlength=n_arrays)


def test_the_population_fraction_stays_the_curve_with_weak_arrays() -> None:
    n_arrays, f, weak = 4096, 1e-3, (0.05, 2.0)
    z = score_quantile(f, weak)
    cells, scores = threshold_candidates(n_arrays * ARRAY_CELLS, CELLS_PER_ROW, ROWS_PER_ARRAY,
                                         (0.0, 0.2, 0.0, 0.8), z, 5, weak)
    assert (scores < z).all()
    # arrays are independent: the mean of their fractions against f, by a t-test
    fractions = _per_array(cells, n_arrays) / ARRAY_CELLS
    assert stats.ttest_1samp(fractions, f).pvalue > ALPHA


def test_the_declared_fraction_of_arrays_is_weak() -> None:
    # a shift of 3 with all variance per cell: a normal array has ~5e-5 faults, a weak ~10
    n_arrays, f, weak = 4096, 1e-3, (0.1, 3.0)
    z = score_quantile(f, weak)
    cells, _ = threshold_candidates(n_arrays * ARRAY_CELLS, CELLS_PER_ROW, ROWS_PER_ARRAY,
                                    (0.0, 0.0, 0.0, 1.0), z, 9, weak)
    counts = _per_array(cells, n_arrays)
    expected_weak = ARRAY_CELLS * float(ndtr(z + 3.0))
    assert 8 < expected_weak < 12
    # arrays with a fault: the weak ones (all but e^-10 of them) and a few normal ones
    with_faults = int((counts > 0).sum())
    p_faulty = 0.1 * (1 - math.exp(-expected_weak)) + 0.9 * (
        1 - (1 - float(ndtr(z))) ** ARRAY_CELLS)
    assert stats.binomtest(with_faults, n_arrays, p_faulty).pvalue > ALPHA
    # a weak array's count is Binomial(1024, Φ(z + 3))
    weak_counts = counts[counts > 2]
    assert abs(weak_counts.mean() - expected_weak) < 4 * math.sqrt(expected_weak / weak_counts.size)


def test_weak_arrays_concentrate_faults_at_the_same_mean() -> None:
    n_arrays, f = 2048, 1e-3
    plain, _ = threshold_candidates(n_arrays * ARRAY_CELLS, CELLS_PER_ROW, ROWS_PER_ARRAY,
                                    (0.0, 0.1, 0.0, 0.9), float(ndtri(f)), 3)
    weak = (0.05, 2.5)
    concentrated, _ = threshold_candidates(
        n_arrays * ARRAY_CELLS, CELLS_PER_ROW, ROWS_PER_ARRAY, (0.0, 0.1, 0.0, 0.9),
        score_quantile(f, weak), 3, weak)
    a, b = _per_array(plain, n_arrays), _per_array(concentrated, n_arrays)
    assert stats.ttest_ind(a, b).pvalue > ALPHA  # the same mean
    assert (b == 0).mean() > (a == 0).mean() + 0.3  # far more fault-free arrays
    assert b.var() / b.mean() > 3 * a.var() / a.mean()  # and more dispersion


def test_faults_stay_nested_and_nothing_changes_without_weak_arrays() -> None:
    args = (1 << 18, CELLS_PER_ROW, ROWS_PER_ARRAY, (0.05, 0.2, 0.1, 0.65))
    low, low_scores = threshold_candidates(*args, -2.5, 13, (0.1, 1.5))
    high, _ = threshold_candidates(*args, -1.5, 13, (0.1, 1.5))
    assert np.array_equal(high[:low.size], low) and (low_scores < -2.5).all()
    plain, plain_scores = threshold_candidates(*args, -1.5, 13)
    zero, zero_scores = threshold_candidates(*args, -1.5, 13, (0.0, 2.0))
    assert np.array_equal(plain, zero) and np.array_equal(plain_scores, zero_scores)
    with pytest.raises(ValueError, match="weak arrays need"):
        threshold_candidates(*args, -1.5, 13, (1.5, 1.0))


def _sram_with_weak_arrays(fraction: float, shift: float) -> Device:
    document = load_device_document("sram-14nm")
    document["array"] = {"row_bits": CELLS_PER_ROW, "rows_per_array": ROWS_PER_ARRAY}
    document["faults"][0]["variability"] = {
        "die": 0.0, "array": 0.1, "cell": 0.9,
        "weak_arrays": {"fraction": fraction, "shift": shift, "provenance": "assumed"}}
    return Device.from_document(document)


def test_a_chip_with_weak_arrays_fails_at_the_devices_fault_fraction() -> None:
    device = _sram_with_weak_arrays(0.05, 2.0)
    n_arrays = 4096
    f = device.at(v_rel=0.86).fault_fraction
    chip = Chip(device, n_arrays * ARRAY_CELLS, seed=3)
    cells, _ = chip.faulty_cells(v_rel=0.86)["undervolt"]
    fractions = _per_array(cells, n_arrays) / ARRAY_CELLS
    assert stats.ttest_1samp(fractions, f).pvalue > ALPHA
    # nested along the voltage, through chip extension
    harsher, _ = chip.faulty_cells(v_rel=0.8)["undervolt"]
    assert np.isin(cells, harsher).all()


def test_weak_arrays_are_validated_with_their_path() -> None:
    document = load_device_document("sram-14nm")
    document["faults"][0]["variability"]["weak_arrays"] = {"fraction": 1.5}
    with pytest.raises(SpecError) as e:
        Device.from_document(document, file="weak.yaml")
    text = str(e.value)
    assert "weak.yaml: faults[0].variability.weak_arrays.fraction: expected a probability" in text
    assert "faults[0].variability.weak_arrays.shift: required field is missing" in text


def test_devices_show_prints_weak_arrays(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from memsim.cli import main

    document = load_device_document("sram-14nm")
    document["faults"][0]["variability"]["weak_arrays"] = {"fraction": 0.05, "shift": 2.0}
    path = tmp_path / "weak.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert main(["devices", "show", str(path)]) == 0
    assert ("weak_arrays (fraction 0.05 [assumed], shift 2 [assumed])"
            in capsys.readouterr().out)
    assert main(["devices", "show", "sram-14nm"]) == 0
    assert "weak_arrays" not in capsys.readouterr().out  # none declared: not shown
