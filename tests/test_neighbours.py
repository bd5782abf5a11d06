"""Correlated faults: a threshold fault that takes neighbours at declared offsets with declared
probabilities. The population fraction stays the curve, pairs appear at the declared rate and
fail alike, faults stay nested (statistical tests at fixed seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from memsim.errors import SpecError
from memsim.memory.chip import STUCK_AT_ZERO, Chip
from memsim.physics.device import Device
from memsim.physics.mechanisms import primary_fraction
from memsim.spec.loader import load_device_document

ALPHA = 1e-3


def _device(neighbours: list[dict[str, float]], variability: dict[str, float] | None = None
            ) -> Device:
    document = load_device_document("sram-14nm")
    document["array"] = {"row_bits": 64, "rows_per_array": 16}
    document["faults"][0]["variability"] = variability or {"die": 0.0, "cell": 1.0}
    document["faults"][0]["neighbours"] = neighbours
    return Device.from_document(document)


@pytest.mark.parametrize("f", [1e-9, 1e-3, 0.05, 0.5])
@pytest.mark.parametrize("ps", [(0.9,), (0.3, 0.5), (1.0, 1.0, 1.0)])
def test_the_primary_fraction_inverts_the_union(f: float, ps: tuple[float, ...]) -> None:
    f0 = primary_fraction(f, ps)
    assert 0 < f0 <= f
    assert 1 - (1 - f0) * np.prod([1 - p * f0 for p in ps]) == pytest.approx(f, rel=1e-10)
    assert primary_fraction(f, ()) == f and primary_fraction(0.0, ps) == 0.0


def test_pairs_come_at_the_declared_rate_and_fail_alike() -> None:
    device = _device([{"offset": 1, "probability": 0.9}])
    n = 1 << 22
    f = device.at(v_rel=0.86).fault_fraction
    cells, actions = Chip(device, n, seed=5).faulty_cells(v_rel=0.86)["undervolt"]
    assert np.unique(cells).size == cells.size
    # every faulty cell counted once: the population fraction is the curve
    expected_primaries = n * primary_fraction(f, (0.9,))
    primaries_seen = cells.size / (1 + 0.9)  # about: pairs overlap rarely at this fraction
    assert abs(primaries_seen - expected_primaries) < 5 * np.sqrt(expected_primaries)
    # of the faulty cells, those whose next cell is faulty too: 0.9 of the primaries
    faulty = np.zeros(n + 1, bool)
    faulty[cells] = True
    with_next = int(faulty[cells + 1].sum())
    taken = stats.binomtest(with_next, cells.size, 0.9 / 1.9)
    assert taken.pvalue > ALPHA, (with_next, cells.size)
    # a pair fails the same way (a chance pair half the time)
    action = np.zeros(n + 1, np.int16) - 1
    action[cells] = actions
    pairs = cells[faulty[cells + 1]]
    assert (action[pairs] == action[pairs + 1]).mean() > 0.97
    assert 0.45 < (actions == STUCK_AT_ZERO).mean() < 0.55


def test_the_population_fraction_over_arrays_is_the_curve() -> None:
    device = _device([{"offset": 3, "probability": 0.5}, {"offset": -64, "probability": 0.25}],
                     {"die": 0.0, "array": 0.2, "cell": 0.8})
    arrays = 4096
    f = device.at(v_rel=0.85).fault_fraction
    cells, _ = Chip(device, arrays * 1024, seed=8).faulty_cells(v_rel=0.85)["undervolt"]
    fractions = np.bincount(cells // 1024, minlength=arrays) / 1024
    assert stats.ttest_1samp(fractions, f).pvalue > ALPHA


def test_faults_with_neighbours_stay_nested_and_reads_apply_them() -> None:
    device = _device([{"offset": 1, "probability": 0.9}])
    chip = Chip(device, 1 << 18, seed=2)
    mild, _ = chip.faulty_cells(v_rel=0.88)["undervolt"]
    harsh, _ = chip.faulty_cells(v_rel=0.82)["undervolt"]
    assert mild.size and np.isin(mild, harsh).all()
    from memsim.memory.image import MemoryImage

    image = MemoryImage.from_bytes(bytes(1 << 15))  # all zeros: stuck-at-1 cells show
    read = chip.read(image, {"v_rel": 0.82})
    assert read.faulty_cells == harsh.size
    bits = np.unpackbits(np.frombuffer(read.image.to_bytes(), np.uint8), bitorder="little")
    assert int(bits.sum()) == read.flips_zero_to_one > 0


@pytest.mark.parametrize(("neighbours", "message"), [
    ([{"offset": 0, "probability": 0.5}], "neighbours[0].offset: expected a non-zero offset"),
    ([{"offset": 1, "probability": 0.5}, {"offset": 1, "probability": 0.2}],
     "an offset is given twice"),
    ([{"offset": 1, "probability": 1.5}], "neighbours[0].probability: expected a probability"),
    ([{"offset": 1.5, "probability": 0.5}], "neighbours[0].offset: expected an integer"),
    ([], "neighbours: expected"),
])
def test_bad_neighbours_are_refused_with_their_path(neighbours: list[dict[str, float]],
                                                    message: str) -> None:
    with pytest.raises(SpecError) as e:
        _device(neighbours)
    assert message in str(e.value)


def test_devices_show_prints_neighbours(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from memsim.cli import main

    document = load_device_document("sram-14nm")
    document["faults"][0]["neighbours"] = [{"offset": 1, "probability": 0.9}]
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert main(["devices", "show", str(path)]) == 0
    assert "neighbours: offset +1 with probability 0.9" in capsys.readouterr().out
