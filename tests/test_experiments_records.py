"""The result records: a chip's trials as the store holds them, a cell's row of results.csv."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.cli import main
from memsim.experiments.outputs import RESULTS_CSV
from memsim.experiments.records import (
    TRIAL_FIGURES,
    CellResult,
    ChipRecord,
    CleanResult,
    RecordError,
    TrialOutcome,
)
from memsim.experiments.store import STORE_FILENAME, ResultStore

_counts = st.integers(0, 10**6)
_trials = st.builds(
    lambda *v: v, st.floats(0, 1), st.floats(-5, 5), st.floats(-5, 5), _counts, _counts,
    _counts, _counts, _counts, _counts, _counts)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 50), st.lists(_trials, min_size=1, max_size=6),
       st.none() | st.floats(0, 1))
def test_a_chip_record_survives_the_store_json(chip: int, rows: list[tuple[float, ...]],
                                                ber: float | None) -> None:
    record = ChipRecord(chip, tuple(TrialOutcome(chip, t, *r) for t, r in enumerate(rows)), ber)
    text = json.dumps(record.to_json())  # what the store writes, as plain JSON
    back = ChipRecord.from_json(json.loads(text), chip, "row")
    assert back == record
    assert back.accuracies == [r[0] for r in rows]


def test_the_store_form_has_one_list_per_figure() -> None:
    outcomes = [TrialOutcome(3, t, 0.5 + t / 10, 1.0, 0.5, 2, 1, 0, 3, 0, 0, 4) for t in range(2)]
    record = ChipRecord.of(outcomes)
    assert record.chip == 3
    stored = record.to_json()
    assert list(stored) == list(TRIAL_FIGURES)  # no device_ber until the runner knows it
    assert stored["accuracy"] == [0.5, 0.6] and stored["under_test_bit_errors"] == [4, 4]
    assert record.mean("accuracy") == pytest.approx(0.55)
    assert "chip" not in TRIAL_FIGURES and "trial" not in TRIAL_FIGURES
    with pytest.raises(ValueError, match="one chip's trials"):
        ChipRecord.of([outcomes[0], dataclasses.replace(outcomes[1], chip=4)])


def test_a_foreign_row_is_a_record_error() -> None:
    good = ChipRecord.of([TrialOutcome(0, 0, 0.9, 1.0, 0.5, 0, 0, 0, 0, 0, 0)]).to_json()
    with pytest.raises(RecordError, match=r"row x: not a chip record \(no mlm"):
        ChipRecord.from_json({k: v for k, v in good.items() if k != "mlm"}, 0, "row x")
    with pytest.raises(RecordError, match="per-trial lists differ in length"):
        ChipRecord.from_json({**good, "mlm": [1.0, 2.0]}, 0, "row x")
    with pytest.raises(RecordError, match="row y: not a clean evaluation"):
        CleanResult.from_json("m", {"accuracy": 0.9}, "row y")
    clean = CleanResult("m", 0.9, 1.0, 0.5, 100)
    assert CleanResult.from_json("m", clean.to_json(), "row") == clean


def test_results_csv_columns_are_the_records_fields(small_sweep: tuple[Path, Path, Any]) -> None:
    with (small_sweep[1] / RESULTS_CSV).open() as f:
        header = next(csv.reader(f))
    knobs = [h for h in header if h.startswith("knob.")]
    assert knobs
    expected = list(CellResult.columns())
    assert header == [*expected[:5], *knobs, *expected[5:]]
    assert "relative_energy" in expected and "chip_accuracy" not in expected
    assert "control_knobs" not in expected


def test_derived_energy_ratios_follow_replace() -> None:
    fields = {f.name: None for f in dataclasses.fields(CellResult) if f.init}
    cell = CellResult(**{
        **fields, "model": "m", "scenario": "s", "device": "d", "placement": "p",
        "protection": "none", "control_knobs": {}, "environment_knobs": {}, "chips": 1,
        "trials": 1, "complete": True, "clean_accuracy": 0.9, "device_ber": 0.0,
        "data_bits": 8, "stored_bits": 8, "reliable_bits": 0, "energy_scope": "array",
        "energy_pj": 5.0, "energy_read_pj": 5.0, "energy_reliable_read_pj": 0.0,
        "energy_static_pj": 0.0, "energy_refresh_pj": 0.0, "energy_write_pj": 0.0,
        "energy_nominal_pj": 10.0, "reference_energy_pj": 20.0, "energy_assumed": False,
        "energy_assumed_figures": (), "on_front": False, "energy_under_test_nominal_pj": 10.0,
        "write_pj_per_programming": 0.0, "chip_accuracy": ()})
    assert (cell.relative_to_nominal, cell.relative_energy) == (0.5, 0.25)
    cheaper = dataclasses.replace(cell, energy_pj=2.0)
    assert (cheaper.relative_to_nominal, cheaper.relative_energy) == (0.2, 0.1)
    assert dataclasses.replace(cell, reference_energy_pj=None).relative_energy is None


def test_a_corrupted_store_row_is_one_line_from_memsim_pareto(
        small_sweep: tuple[Path, Path, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "copy"
    shutil.copytree(small_sweep[1], out)
    with ResultStore(out / STORE_FILENAME) as store:
        key = next(r.key for r in store.rows() if "n_test" not in r.outputs)
    db = sqlite3.connect(out / STORE_FILENAME)
    db.execute("UPDATE results SET outputs = ? WHERE key = ?", ('{"accuracy": [0.5]}', key))
    db.commit()
    db.close()
    assert main(["pareto", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"row {key[:12]}: not a chip record" in err[0]


def test_the_report_names_the_command_main_was_given(
        small_sweep: tuple[Path, Path, Any], tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(small_sweep[1], out)
    assert main(["pareto", str(out), "--set", "deployment=streamed"]) == 0
    made = (out / "report.md").read_text().splitlines()[2]
    assert made.startswith(f"Made with `memsim pareto {out} --set deployment=streamed`")
