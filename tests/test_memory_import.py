"""`memsim memory import`: bitmaps and lists of failing cells read into fault maps of one or
several chips, the report of what was read, and `memory inject --fault-map ... --chip K`."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memsim
from memsim.cli import main
from memsim.memory.chip import Chip
from memsim.memory.image import MemoryImage
from memsim.memory.importing import (
    FaultMapImportError,
    ImportInput,
    bits_from_bytes,
    bytes_from_bits,
    import_fault_maps,
    import_report,
    parse_hex,
)
from memsim.memory.replay import FaultMapError, FaultMapFileError, FaultMaps, MeasuredChip

CELLS = 40_000  # not a multiple of the 16384-cell array: the report leaves the rest out
VALUES = (0.8, 0.85, 0.9)


@pytest.fixture(scope="module")
def chips() -> tuple[FaultMaps, ...]:
    """Two simulated chips of sram-14nm characterised like real ones."""
    device = memsim.load_device("sram-14nm")
    return tuple(FaultMaps.from_chip(Chip(device, CELLS, seed), VALUES, seed=3)
                 for seed in (4, 5))


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as e:
        status = int(e.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def import_json(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    status, out, err = run(["memory", "import", *args, "--json"], capsys)
    assert status == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def assert_same(a: Sequence[FaultMaps], b: Sequence[FaultMaps]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.knob_values, y.knob_values)
        assert np.array_equal(x.stuck_at_zero, y.stuck_at_zero)
        assert np.array_equal(x.stuck_at_one, y.stuck_at_one)


def write_list(path: Path, rows: list[dict[str, Any]], header: Sequence[str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(header))
        writer.writeheader()
        writer.writerows(rows)
    return path


def failure_rows(maps: FaultMaps, i: int) -> list[dict[str, Any]]:
    return ([{"bit": int(c), "stuck_at": 0} for c in np.flatnonzero(maps.stuck_at_zero[i])]
            + [{"bit": int(c), "stuck_at": 1} for c in np.flatnonzero(maps.stuck_at_one[i])])


# -- the bitmap parser ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["msb", "lsb"]))
def test_bitmap_bytes_to_cells_and_back(data: bytes, order: Any) -> None:
    bits = bits_from_bytes(data, order)
    assert bits.size == 8 * len(data)
    assert bytes_from_bits(bits, order) == data
    assert parse_hex(" \n".join(data.hex()[i:i + 6] for i in range(0, 2 * len(data), 6))) == data


def test_bit_order_within_a_byte() -> None:
    assert np.flatnonzero(bits_from_bytes(b"\x80\x01", "msb")).tolist() == [0, 15]
    assert np.flatnonzero(bits_from_bytes(b"\x80\x01", "lsb")).tolist() == [7, 8]
    assert parse_hex("0A ff\n\t10\r\n") == b"\x0a\xff\x10"
    with pytest.raises(FaultMapImportError, match="line 2: 'g' is not a hex digit"):
        parse_hex("00\n0g", "x.hex")
    with pytest.raises(FaultMapImportError, match="3 hex digits, not whole bytes"):
        parse_hex("abc", "x.hex")


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["msb", "lsb"])
def test_bitmaps_of_two_chips_round_trip(chips: tuple[FaultMaps, ...], order: Any,
                                         tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    items = []
    for k, maps in enumerate(chips):
        for i, v in enumerate(VALUES):
            # chip 0 as raw binary, chip 1 as hex text; after 1s a stuck-at-0 cell reads 0
            after_one = bytes_from_bits(~maps.stuck_at_zero[i], order)
            after_zero = bytes_from_bits(maps.stuck_at_one[i], order)
            if k == 0:
                (tmp_path / f"c0-{v}-w1.bin").write_bytes(after_one)
                (tmp_path / f"c0-{v}-w0.bin").write_bytes(after_zero)
                names = (f"c0-{v}-w1.bin", f"c0-{v}-w0.bin")
            else:
                (tmp_path / f"c1-{v}-w1.hex").write_text(after_one.hex())
                text = after_zero.hex()
                lines = [text[j:j + 64] for j in range(0, len(text), 64)]
                (tmp_path / f"c1-{v}-w0.txt").write_text("\n".join(lines) + "\n")
                names = (f"c1-{v}-w1.hex", f"c1-{v}-w0.txt")
            items += [f"{tmp_path / names[0]}={v},chip={k},written=1",
                      f"{tmp_path / names[1]}={v},chip={k},written=0"]
    out = tmp_path / "chips.npz"
    report = import_json(["--knob", "v_rel", "--harsher", "lower", "--unit", "V/Vmin",
                          "--bit-order", order, "--cells", str(CELLS), *items,
                          "--out", str(out)], capsys)
    assert_same(FaultMaps.load_chips(out), chips)
    assert FaultMaps.load(out, chip=1).unit == "V/Vmin"
    assert report["chips"] == 2 and report["cells"] == CELLS
    assert all(row["unknown"] == [] for row in report["points"])


def test_lists_with_knob_and_chip_columns_round_trip(chips: tuple[FaultMaps, ...],
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    rows = [{"chip": k, "v_rel": v, **r} for k, maps in enumerate(chips)
            for i, v in enumerate(VALUES) for r in failure_rows(maps, i)]
    listed = write_list(tmp_path / "failures.csv", rows, ["chip", "v_rel", "bit", "stuck_at"])
    out = tmp_path / "chips.npz"
    import_json(["--knob", "v_rel", "--harsher", "lower", "--cells", str(CELLS), str(listed),
                 "--out", str(out)], capsys)
    assert_same(FaultMaps.load_chips(out), chips)


def test_lists_one_file_per_value_with_addresses(chips: tuple[FaultMaps, ...], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    maps = chips[0]
    items = []
    for i, v in enumerate(VALUES):
        # cell = address * 32 + bit; read/written instead of stuck_at, addresses in hex
        rows = [{"address": hex(r["bit"] // 32), "bit": r["bit"] % 32,
                 "read": r["stuck_at"], "written": 1 - r["stuck_at"]}
                for r in failure_rows(maps, i)]
        path = write_list(tmp_path / f"v{v}.csv", rows, ["address", "bit", "read", "written"])
        items.append(f"{path}={v}")
    out = tmp_path / "one.npz"
    import_json(["--knob", "v_rel", "--harsher", "lower", "--cells", str(CELLS),
                 "--word-bits", "32", *items, "--out", str(out)], capsys)
    assert_same([FaultMaps.load(out)], [maps])
    # the one-chip file is the format FaultMaps.save writes
    with np.load(out) as data:
        assert data["stuck_at_zero"].shape == (len(VALUES), CELLS // 8)


def test_report_matches_numpy(chips: tuple[FaultMaps, ...], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"chip": k, "v_rel": v, **r} for k, maps in enumerate(chips)
            for i, v in enumerate(VALUES) for r in failure_rows(maps, i)]
    listed = write_list(tmp_path / "f.csv", rows, ["chip", "v_rel", "bit", "stuck_at"])
    report = import_json(["--knob", "v_rel", "--harsher", "lower", "--cells", str(CELLS),
                          "--array-bits", "4096", str(listed), "--out",
                          str(tmp_path / "m.npz")], capsys)
    assert report["arrays"] == CELLS // 4096
    assert report["cells_outside_arrays"] == CELLS % 4096
    assert report["knob_values"] == list(VALUES)
    points = {(row["chip"], row["knob_value"]): row for row in report["points"]}
    for k, maps in enumerate(chips):
        faulty = maps.stuck_at_zero | maps.stuck_at_one
        for i, v in enumerate(VALUES):
            row = points[(k, v)]
            assert row["stuck_at_zero"] == maps.stuck_at_zero[i].sum()
            assert row["stuck_at_one"] == maps.stuck_at_one[i].sum()
            counts = faulty[i, : 9 * 4096].reshape(9, 4096).sum(axis=1)
            a = row["per_array"]
            assert a["mean"] == pytest.approx(counts.mean())
            assert a["fault_free_fraction"] == pytest.approx(np.mean(counts == 0))
            assert a["max"] == counts.max()
            if counts.mean() > 0:
                assert a["index_of_dispersion"] == pytest.approx(counts.var() / counts.mean())
            else:
                assert a["index_of_dispersion"] is None
    # sram-14nm's chips are nested; the report agrees with FaultMaps
    expected = [{"chip": k, "milder": n.milder, "harsher": n.harsher, "cells": n.cells}
                for k, maps in enumerate(chips) for n in maps.nesting_violations()]
    assert report["nesting_violations"] == expected
    assert [n["milder"] for n in expected[:2]] == [0.9, 0.85]


def test_report_counts_nesting_violations() -> None:
    sa0 = np.zeros((2, 32), bool)
    sa0[1, [3, 4]] = True  # faulty at the milder 0.9, not at the harsher 0.8
    sa0[0, 5] = True
    maps = FaultMaps("v", np.array([0.8, 0.9]), sa0, np.zeros_like(sa0), harsher="lower")
    from memsim.memory.importing import ImportedMaps

    report = import_report(ImportedMaps((maps,)), array_bits=16)
    assert report["nesting_violations"] == [{"chip": 0, "milder": 0.9, "harsher": 0.8,
                                             "cells": 2}]
    assert [row["per_array"]["max"] for row in report["points"]] == [1, 2]


def test_one_pattern_leaves_the_other_direction_unknown(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    (tmp_path / "a.bin").write_bytes(b"\xff\x7f")  # written 1s: cell 8 reads 0
    status, out, err = run(["memory", "import", "--knob", "vdd", "--harsher", "lower",
                            "--written", "1", f"{tmp_path / 'a.bin'}=0.6", "--out",
                            str(tmp_path / "m.npz")], capsys)
    assert status == 0, err
    assert "1 stuck-at-0, stuck-at-1 not measured" in out
    assert "stored as no fault" in out
    maps = FaultMaps.load(tmp_path / "m.npz")
    assert np.flatnonzero(maps.stuck_at_zero[0]).tolist() == [8]
    assert not maps.stuck_at_one.any()
    report = import_json(["--knob", "vdd", "--harsher", "lower", "--written", "1",
                          f"{tmp_path / 'a.bin'}=0.6", "--out", str(tmp_path / "m.npz")],
                         capsys)
    assert report["points"][0]["unknown"] == ["stuck_at_one"]
    assert report["arrays"] == 0 and report["points"][0]["per_array"] is None


def test_declared_values_are_fault_free(tmp_path: Path) -> None:
    listed = write_list(tmp_path / "f.csv", [{"t": 85, "bit": 3, "stuck_at": 1}],
                        ["t", "bit", "stuck_at"])
    imported = import_fault_maps([ImportInput(str(listed), "csv")], knob="t", harsher="higher",
                                 n_cells=8, knob_values=[25, 85])
    (maps,) = imported.chips
    assert maps.knob_values.tolist() == [25.0, 85.0]
    assert maps.stuck_at_one.tolist() == [[False] * 8, [False] * 3 + [True] + [False] * 4]


def test_bits_past_the_cells_are_ignored(tmp_path: Path) -> None:
    # 12 cells in 2 bytes; the read after 1s pads with 0 bits, which are no faults
    path = tmp_path / "a.bin"
    path.write_bytes(b"\xff\xf0")
    bitmap = ImportInput(str(path), "binary", 1.0, None, 1)
    imported = import_fault_maps([bitmap], knob="v", n_cells=12)
    assert imported.chips[0].n_cells == 12 and not imported.chips[0].stuck_at_zero.any()
    with pytest.raises(FaultMapImportError, match="2 bytes, 16 cells; 24 cells need 3 bytes"):
        import_fault_maps([bitmap], knob="v", n_cells=24)


# -- chips in one file, and inject --chip ------------------------------------------------------


def test_save_chips_and_load_each(chips: tuple[FaultMaps, ...], tmp_path: Path) -> None:
    both = tmp_path / "both.npz"
    FaultMaps.save_chips(chips, both)
    assert_same(FaultMaps.load_chips(both), chips)
    assert_same([FaultMaps.load(both, chip=1)], [chips[1]])
    one = tmp_path / "one.npz"
    chips[0].save(one)
    assert len(FaultMaps.load_chips(one)) == 1
    with pytest.raises(FaultMapFileError, match=r"no chip 2; the file holds 2 chips \(0 to 1\)"):
        FaultMaps.load(both, chip=2)
    with pytest.raises(FaultMapFileError, match=r"no chip 1; the file holds one chip \(0\)"):
        FaultMaps.load(one, chip=1)
    shifted = FaultMaps("v_rel", np.array([0.8, 0.85, 0.95]), chips[1].stuck_at_zero,
                        chips[1].stuck_at_one)
    with pytest.raises(FaultMapError, match=r"chip 1 .* differs from chip 0"):
        FaultMaps.save_chips([chips[0], shifted], tmp_path / "bad.npz")
    # both maps of a file hold the same chips
    with np.load(both) as data:
        arrays = dict(data)
    arrays["stuck_at_one"] = arrays["stuck_at_one"][0]
    np.savez(tmp_path / "mixed.npz", **arrays)
    with pytest.raises(FaultMapFileError, match=r"'stuck_at_one' has shape \(3, 5000\) dtype "
                       r"uint8, expected uint8 of shape \(2, 3, 5000\) \(chips × knob"):
        FaultMaps.load(tmp_path / "mixed.npz")


def test_inject_reads_through_the_chip_asked_for(chips: tuple[FaultMaps, ...],
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    maps = tmp_path / "both.npz"
    FaultMaps.save_chips(chips, maps)
    weights = tmp_path / "w.bin"
    weights.write_bytes(np.random.default_rng(1).bytes(4000))
    image = MemoryImage.from_bytes(weights.read_bytes())
    outputs = []
    for k in (0, 1):
        out = tmp_path / f"read{k}.bin"
        status, _, err = run(["memory", "inject", "--fault-map", str(maps), "--chip", str(k),
                              "--knob", "v_rel=0.8", "--in", str(weights), "--out", str(out)],
                             capsys)
        assert status == 0, err
        expected = MeasuredChip(chips[k], image.n_bits).read(image, {"v_rel": 0.8})
        assert out.read_bytes() == expected.image.to_bytes()
        outputs.append(out.read_bytes())
    assert outputs[0] != outputs[1]
    status, _, err = run(["memory", "inject", "--fault-map", str(maps), "--chip", "2",
                          "--knob", "v_rel=0.8", "--in", str(weights), "--out",
                          str(tmp_path / "x.bin")], capsys)
    assert status == 2 and err == f"error: {maps}: no chip 2; the file holds 2 chips (0 to 1)\n"


# -- bad inputs (one line each; the CLI corpus is in test_bad_inputs.py) ----------------------


def test_import_errors_name_the_file(tmp_path: Path) -> None:
    def fails(inputs: list[ImportInput], match: str, **kwargs: Any) -> None:
        options: dict[str, Any] = {"knob": "v", "n_cells": 64, **kwargs}
        with pytest.raises(FaultMapImportError, match=match):
            import_fault_maps(inputs, **options)

    def listed(name: str, text: str) -> str:
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    ok = listed("ok.csv", "v,bit,stuck_at\n0.5,3,1\n")
    fails([ImportInput(listed("a.csv", "v,stuck_at\n"), "csv")], "needs a column 'bit'")
    fails([ImportInput(listed("b.csv", "v,bit\n"), "csv")], "needs the failure direction")
    fails([ImportInput(listed("c.csv", "bit,stuck_at\n1,1\n"), "csv")], "a column 'v'")
    fails([ImportInput(listed("d.csv", "v,bit,stuck_at\n0.5,64,1\n"), "csv")],
          r"bit 64 is outside the memory's 64 cells \(0 to 63\)")
    fails([ImportInput(listed("e.csv", "v,bit,stuck_at\n0.5,1,2\n"), "csv")],
          "line 2: stuck_at must be 0 or 1, got 2")
    fails([ImportInput(listed("f.csv", "v,bit,read,written\n0.5,1,1,1\n"), "csv")],
          "read 1 where 1 was written is no failure")
    fails([ImportInput(listed("g.csv", "v,address,bit,stuck_at\n0.5,0,1,1\n"), "csv")],
          "needs the word size")
    fails([ImportInput(ok, "csv"), ImportInput(ok, "csv")], r"v=0.5 of chip 0 is given twice")
    fails([ImportInput(ok, "csv")], "give the number of cells", n_cells=None)
    fails([ImportInput(listed("h.csv", "v,bit,stuck_at,chip\n0.5,1,1,1\n"), "csv")],
          "chip 0 is missing")
    fails([ImportInput(listed("i.csv", "v,bit,stuck_at,chip\n0.5,1,1,0\n0.6,1,1,1\n"), "csv")],
          r"chip 0 has no maps at v=0.6 \(chip 1 has\)")
    fails([ImportInput(listed("j.csv", "v,bit,stuck_at\n0.5,1,0\n0.5,1,1\n"), "csv")],
          "cell 1 is in both")
    fails([ImportInput(str(tmp_path / "nope.bin"), "binary", 0.5, None, 1)], "no such file")
    header = listed("header.csv", "v,bit,stuck_at\n")
    fails([ImportInput(header, "csv")], "no failing cell and no knob value")
    (clean,) = import_fault_maps([ImportInput(header, "csv")], knob="v", n_cells=8,
                                 knob_values=[0.5]).chips
    assert clean.knob_values.tolist() == [0.5] and not clean.stuck_at_zero.any()
