"""memsim devices fit: measured maps to a validated device file that extends the device they
refine, with the fit and its goodness printed (and as JSON); bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from memsim.cli import main
from memsim.memory.chip import Chip
from memsim.memory.replay import FaultMaps
from memsim.physics.device import Device, load_device
from memsim.spec.loader import load_device_document

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    document = load_device_document("sram-14nm")
    document["array"] = {"row_bits": 64, "rows_per_array": 16}
    document["faults"][0]["variability"] = {
        "die": 0.0, "array": 0.15, "cell": 0.85, "weak_arrays": {"fraction": 0.08, "shift": 1.8}}
    device = Device.from_document(document)
    chips = [FaultMaps.from_chip(Chip(device, 256 * 1024, seed=60 + c), [0.8, 0.83, 0.86, 0.89])
             for c in range(3)]
    path = tmp_path_factory.mktemp("board") / "board.npz"
    FaultMaps.save_chips(chips, path)
    return path


def test_fit_writes_a_device_that_loads_and_says_how_it_was_made(
        board: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.yaml"
    assert main(["devices", "fit", str(board), "--base", "sram-14nm", "--array-bits", "1024",
                 "--resamples", "6", "--name", "sram-mine", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("Chips: 3; arrays of 1024 cells, no rows counted (--row-bits); standard errors "
            "from 6 refits") in printed
    assert "fault-free rows" not in printed
    assert printed.count("v_rel=0.8:") == 1 and "fault-free arrays" in printed
    assert f"wrote {out}" in printed
    assert "Neighbours: no pairs above chance at offsets 1-64" in printed
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Fitted by: memsim devices fit ")
    document = yaml.safe_load(text)
    assert document["extends"] == "sram-14nm" and document["name"] == "sram-mine"
    variability = document["faults"][0]["variability"]
    assert 0.04 < variability["weak_arrays"]["fraction"] < 0.13
    device = load_device(out)
    assert device.spec.array.row_bits * device.spec.array.rows_per_array == 1024
    assert device.spec.knob_names == ("v_rel",) and device.spec.energy  # kept from the base
    assert main(["devices", "check", str(out)]) == 0  # the measured points, within x2
    capsys.readouterr()
    # the fitted device sweeps and reads like any other
    assert main(["devices", "at", str(out), "--knob", "v_rel=0.85", "--json"]) == 0
    point = json.loads(capsys.readouterr().out)
    assert 1e-4 < point["fault_fraction"] < 1e-2


def test_fit_json_and_a_table_curve(board: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "table.yaml"
    assert main(["devices", "fit", str(board), "--base", "sram-14nm", "--array-bits", "1024",
                 "--resamples", "3", "--curve", "table", "--no-weak-arrays", "--json",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(out) and len(report["goodness"]) == 4
    assert report["weak_fraction"][0] == 0.0 and report["neighbours"] == []
    row = report["goodness"][0]
    assert set(row) == {"knob_value", "faulty_fraction", "fault_free_arrays", "dispersion",
                        "max_per_array", "fault_free_rows", "row_dispersion"}
    assert row["fault_free_rows"] is None and report["row"] is None
    assert row["faulty_fraction"][0] == pytest.approx(row["faulty_fraction"][1])
    curve = yaml.safe_load(out.read_text(encoding="utf-8"))["faults"][0]["fault_fraction"]
    assert curve["kind"] == "table" and len(curve["points"]) == 4
    load_device(out)


def test_fit_counts_rows_when_told_their_width(board: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # the board's chips have no row share: their rows look binomial within an array
    out = tmp_path / "rows.yaml"
    assert main(["devices", "fit", str(board), "--base", "sram-14nm", "--array-bits", "1024",
                 "--row-bits", "128", "--resamples", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "arrays of 1024 cells, rows of 128 cells;" in printed
    assert printed.count("fault-free rows") == 4 and printed.count("row dispersion") == 4
    assert ", row 0, cell" in printed or ", row 0.00" in printed  # a few thousandths at most
    document = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert document["array"] == {"row_bits": 128, "rows_per_array": 8}
    row = document["faults"][0]["variability"]["row"]
    assert row == 0.0 or 1e-6 <= row < 0.01  # no 1e-17 left by the optimiser
    assert main(["devices", "fit", str(board), "--base", "sram-14nm", "--array-bits", "1024",
                 "--row-bits", "128", "--resamples", "3", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cells_per_row"] == 128 and 0 <= report["row"][0] < 0.01
    for row in report["goodness"]:
        free, dispersion = row["fault_free_rows"], row["row_dispersion"]
        assert free[0] == pytest.approx(free[1], rel=0.1)
        # dominated by the few dense (weak) arrays of three chips: 13 % apart at 0.86
        assert 0.5 < dispersion[0] < 1.1 and dispersion[1] == pytest.approx(dispersion[0],
                                                                             rel=0.2)


def test_pairs_at_one_cell_suggest_row_bits(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # a row share and no neighbours: against the median over offsets, +1 looks like a pair
    document = load_device_document("sram-14nm")
    document["array"] = {"row_bits": 64, "rows_per_array": 16}
    document["faults"][0]["variability"] = {"die": 0.0, "array": 0.1, "row": 0.15, "cell": 0.75}
    device = Device.from_document(document)
    maps = tmp_path / "rows.npz"
    FaultMaps.save_chips([FaultMaps.from_chip(Chip(device, 512 * 1024, seed=70 + c),
                                              [0.8, 0.83, 0.86, 0.89]) for c in range(3)], maps)
    common = ["devices", "fit", str(maps), "--base", "sram-14nm", "--array-bits", "1024",
              "--resamples", "2", "--out", str(tmp_path / "x.yaml")]
    assert main(common) == 0
    printed = capsys.readouterr().out
    assert "offset +1 taken along" in printed
    assert "pairs at +1 may be rows that cluster faults: --row-bits" in printed
    assert main([*common, "--row-bits", "64"]) == 0
    printed = capsys.readouterr().out
    assert "Neighbours: no pairs above chance at offsets 1-64" in printed


@pytest.mark.parametrize(("args", "message"), [
    (["--base", "stt-mram-22nm"], "the maps are measured along v_rel, which stt-mram-22nm has "
                                  "no knob for"),
    (["--base", "TRANSIENT"], "sram-transient has 0 threshold mechanisms"),
    (["--base", "sram-14nm", "--mechanism", "nope"], "sram-14nm has 0 threshold mechanisms "
                                                     "named nope"),
    (["--base", "sram-14nm", "--array-bits", "1"], "--array-bits"),
    (["--base", "sram-14nm", "--array-bits", "1024", "--row-bits", "48"],
     "rows of 48 cells must divide arrays of 1024 cells into at least two"),
    (["--base", "sram-14nm", "--array-bits", "1024", "--row-bits", "1024"],
     "into at least two"),
])
def test_bad_fits_are_one_line(board: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               args: list[str], message: str) -> None:
    transient = tmp_path / "transient.yaml"  # its undervolt made transient: no threshold left
    transient.write_text(yaml.safe_dump({
        "schema_version": 1, "extends": "sram-14nm", "name": "sram-transient",
        "faults": [{"name": "undervolt", "kind": "transient", "p_one_to_zero": 1e-6}],
        "calibration": []}), encoding="utf-8")
    args = [str(transient) if a == "TRANSIENT" else a for a in args]
    try:
        code = main(["devices", "fit", str(board), *args, "--out", str(tmp_path / "x.yaml")])
    except SystemExit as e:  # a usage error: argparse's exit 2
        code = int(str(e.code))
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) <= 2, err
    assert not (tmp_path / "x.yaml").exists()


def test_a_missing_maps_file_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["devices", "fit", str(tmp_path / "none.npz"), "--base", "sram-14nm",
                 "--out", str(tmp_path / "x.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "none.npz" in err
