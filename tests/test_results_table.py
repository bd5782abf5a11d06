"""`memsim.results`: a sweep's results as a DataFrame, the same table as results.csv."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import memsim
from memsim.errors import MemsimError
from memsim.experiments.outputs import RESULTS_CSV


def test_the_table_is_results_csv_typed(small_sweep: tuple[Path, Path, Any]) -> None:
    _, out, results = small_sweep
    table = memsim.results(out)
    csv = pd.read_csv(out / RESULTS_CSV)
    assert list(table.columns) == list(csv.columns)
    assert len(table) == len(results.cells) == len(csv)
    knobs = [c for c in table.columns if c.startswith("knob.")]
    assert knobs and all(pd.api.types.is_float_dtype(table[k]) for k in knobs)
    for name in ("accuracy", "accuracy_low", "energy_pj", "chips", "device_ber"):
        assert pd.api.types.is_numeric_dtype(table[name]), name
        assert table[name].tolist() == pytest.approx(csv[name].tolist(), nan_ok=True)
    assert table["device"].tolist() == csv["device"].tolist()
    # the three lines of docs/experiments.md: the best accuracy per device within 2x energy
    cheap = table[table.relative_energy <= 0.5]
    assert set(cheap.groupby("device").accuracy.max().index) <= set(table.device)


def test_per_chip_rows_average_to_the_cell(small_sweep: tuple[Path, Path, Any]) -> None:
    _, out, results = small_sweep
    chips = memsim.results(out, per_chip=True)
    assert len(chips) == sum(len(c.chip_accuracy) for c in results.cells)
    assert list(chips.columns[:5]) == ["model", "scenario", "device", "placement", "protection"]
    assert "chip_accuracy" in chips.columns and "chip" in chips.columns
    keys = ["model", "scenario", "device", "placement", "protection",
            *[c for c in chips.columns if c.startswith("knob.")]]
    means = chips.groupby(keys, dropna=False).chip_accuracy.mean()
    for cell in results.cells:
        if cell.accuracy is None:
            continue
        key = (cell.model, cell.scenario, cell.device, cell.placement, cell.protection,
               *[cell.knobs.get(c[5:], math.nan) for c in keys[5:]])
        match = [v for k, v in means.items() if all(
            a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))
            for a, b in zip(k, key, strict=True))]
        assert match == [pytest.approx(cell.accuracy)]


def test_repricing_and_errors(small_sweep: tuple[Path, Path, Any], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, out, _ = small_sweep
    streamed = memsim.results(out, overrides=["deployment=streamed"])
    assert len(streamed) == len(memsim.results(out))
    with pytest.raises(MemsimError, match="no sweep here"):
        memsim.results(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(MemsimError, match=r"pip install 'memsim\[dataframe\]'"):
        memsim.results(out)
