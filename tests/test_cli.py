"""End-to-end tests of the `memsim` command line on the built-in device and tiny files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import MINIMAL_DEVICE

import memsim
from memsim.cli import main
from memsim.spec.loader import catalogue_dir

WriteYaml = Callable[..., Path]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines, "expected an error line on stderr"
    assert all(line.startswith("error: ") for line in lines), err


def test_list_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "devices", "list")
    assert code == 0
    assert "sram-14nm" in out and "v_rel" in out and "control" in out
    code, out, _ = run(capsys, "devices", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    sram = next(r for r in rows if r["name"] == "sram-14nm")
    assert sram["technology"] == "sram"
    knob = sram["knobs"][0]
    assert knob == {"name": "v_rel", "unit": "V/Vmin", "role": "control", "nominal": 1.0,
                    "range": [0.7, 1.0]}


def test_show_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "devices", "show", "sram-14nm")
    assert code == 0
    assert "undervolt: threshold, phase read" in out
    assert "[derived" in out and "published 2e-06" in out
    code, out, _ = run(capsys, "devices", "show", "sram-14nm", "--json")
    data = json.loads(out)
    assert data["faults"][0]["kind"] == "threshold"
    assert data["faults"][0]["fault_fraction"]["kind"] == "probit"
    assert data["faults"][0]["fault_fraction"]["mean"]["provenance"] == "derived"
    assert all(c["ok"] for c in data["calibration_check"])


def test_at_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "devices", "at", "sram-14nm", "--knob", "v_rel=0.85", "--json")
    assert code == 0
    d = json.loads(out)
    for key in ("device", "knobs", "ber", "p_zero_to_one", "p_one_to_zero", "fault_fraction",
                "read_energy_pj_per_bit"):
        assert key in d
    assert d["knobs"] == {"v_rel": 0.85}
    assert d["ber"] == pytest.approx((d["p_zero_to_one"] + d["p_one_to_zero"]) / 2)
    assert d["read_energy_pj_per_bit"] == pytest.approx(0.015625 * 0.85**2)


def test_at_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "devices", "at", "sram-14nm", "--knob", "v_rel=0.8")
    assert code == 0
    assert "fault_fraction" in out and "read_energy_pj_per_bit" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("devices", "at", "sram-14nm", "--knob", "v_rel=0.5"), "outside its range"),
        (("devices", "at", "sram-14nm", "--knob", "vrel=0.8"), "did you mean 'v_rel'"),
        (("devices", "at", "sram-14nm", "--knob", "v_rel"), "NAME=VALUE"),
        (("devices", "at", "sram-14nm", "--knob", "v_rel=low"), "expected a number"),
        (("devices", "at", "sram14nm"), "did you mean 'sram-14nm'"),
        (("devices", "show", "no/such/file.yaml"), "no such file"),
        (("devices", "plot", "--out", "x.png"), "at least one device"),
        (("devices",), "error"),
        (("devices", "frobnicate"), "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], needle: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert_one_line_error(err)
    assert len(err.strip().splitlines()) == 1
    assert needle in err


def test_validate_good_and_bad_files(capsys: pytest.CaptureFixture[str],
                                     write_yaml: WriteYaml) -> None:
    good = write_yaml(MINIMAL_DEVICE, "good.yaml")
    code, out, err = run(capsys, "devices", "validate", str(good))
    assert code == 0 and "ok:" in out and not err
    bad = write_yaml(MINIMAL_DEVICE.replace("nominal: 1.0", "nominal: 2.0").replace(
        "scope: cell", "scope: celll"), "bad.yaml")
    code, out, err = run(capsys, "devices", "validate", str(good), str(bad))
    assert code == 2
    assert_one_line_error(err)
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert any(f"error: {bad}: knobs.vdd.nominal: " in line for line in lines)
    assert any(f"error: {bad}: energy.scope: " in line and "did you mean 'cell'" in line
               for line in lines)
    syntax = write_yaml("name: [unclosed\n", "syntax.yaml")
    code, _, err = run(capsys, "devices", "validate", str(syntax))
    assert code == 2
    assert_one_line_error(err)
    assert "line" in err


def test_validate_builtin_catalogue_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    files = [str(p) for p in sorted(catalogue_dir().glob("*.yaml"))] + [str(p) for p in examples]
    code, out, err = run(capsys, "devices", "validate", *files)
    assert code == 0, err
    assert out.count("ok:") == len(files)


def test_plot_writes_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           write_yaml: WriteYaml) -> None:
    toy = write_yaml(MINIMAL_DEVICE)
    out_png = tmp_path / "sub" / "catalogue.png"
    out_png.parent.mkdir()  # an output file's folder must exist
    # the whole catalogue is plotted by docs/catalogue.md's command; a subset keeps this fast
    code, _out, err = run(capsys, "devices", "plot", "sram-14nm", "pcm-mlc", str(toy), "--out",
                          str(out_png))
    assert code == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out_png.stat().st_size > 10_000


def test_check_reports_calibration(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "devices", "check", "sram-14nm", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 12 and all(r["ok"] for r in rows)


def test_check_fails_when_a_point_is_off(capsys: pytest.CaptureFixture[str],
                                         write_yaml: WriteYaml) -> None:
    text = MINIMAL_DEVICE + """\
calibration:
  - quantity: p_one_to_zero
    of: vdd
    points: [[1.0, 1.0e-4], [0.8, 1.0e-2]]
"""
    path = write_yaml(text)
    code, out, err = run(capsys, "devices", "check", str(path))
    assert code == 1
    assert out.startswith("ok ") and "OFF" in out
    assert "1 point(s)" in err


def test_console_script_from_another_directory(tmp_path: Path) -> None:
    """The installed entry point finds the catalogue wherever it runs."""
    script = Path(sys.executable).parent / "memsim"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "memsim"]
    result = subprocess.run([*cmd, "devices", "list", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "sram-14nm" in {row["name"] for row in json.loads(result.stdout)}
    bad = subprocess.run([*cmd, "devices", "at", "nope"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_installed_package_carries_the_catalogue() -> None:
    """A non-editable install must hold the YAML files inside the package."""
    package_dir = Path(memsim.__file__).resolve().parent
    folder = catalogue_dir().resolve()
    assert (folder / "sram-14nm.yaml").is_file()
    if "site-packages" in package_dir.parts:
        assert package_dir in folder.parents, f"catalogue at {folder}, package at {package_dir}"


def test_memory_inject_and_diff_round_trip(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    data = bytes(range(256)) * 512
    src = tmp_path / "weights.bin"
    src.write_bytes(data)
    outs = []
    for name in ("a.bin", "b.bin"):
        out = tmp_path / name
        code, stdout, err = run(capsys, "memory", "inject", "--device", "sram-14nm", "--knob",
                                "v_rel=0.85", "--in", str(src), "--out", str(out),
                                "--chip-seed", "3", "--seed", "5", "--json")
        assert code == 0, err
        outs.append((out.read_bytes(), json.loads(stdout)))
    (bytes_a, report), (bytes_b, _) = outs
    assert bytes_a == bytes_b  # same seeds: byte-identical
    for key in ("bits", "flips_zero_to_one", "flips_one_to_zero", "stuck_cells"):
        assert key in report
    assert report["bits"] == 8 * len(data)
    assert report["flips_zero_to_one"] + report["flips_one_to_zero"] > 0
    code, stdout, _ = run(capsys, "memory", "diff", str(src), str(tmp_path / "a.bin"), "--json")
    assert code == 0
    diff = json.loads(stdout)
    assert diff == {"bits": report["bits"], "flips_zero_to_one": report["flips_zero_to_one"],
                    "flips_one_to_zero": report["flips_one_to_zero"]}


def test_memory_bad_input_is_one_line(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    code, _, err = run(capsys, "memory", "inject", "--device", "sram-14nm", "--in",
                       str(tmp_path / "missing.bin"), "--out", str(tmp_path / "o.bin"))
    assert code == 2 and "cannot read" in err
    assert_one_line_error(err)
    (tmp_path / "x.bin").write_bytes(b"ab")
    (tmp_path / "y.bin").write_bytes(b"abc")
    code, _, err = run(capsys, "memory", "diff", str(tmp_path / "x.bin"), str(tmp_path / "y.bin"))
    assert code == 2 and "not comparable" in err
    code, _, err = run(capsys, "memory", "inject", "--device", "sram-14nm", "--in",
                       str(tmp_path / "x.bin"), "--out", str(tmp_path / "o.bin"),
                       "--bits-per-cell", "2")
    assert code == 2 and "bit(s) per cell" in err


def test_memory_inject_with_ecc_corrects_and_reports(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    data = bytes(range(256)) * 256
    src = tmp_path / "weights.bin"
    src.write_bytes(data)
    reports = {}
    for ecc in ("none", "secded-72-64"):
        out = tmp_path / f"{ecc}.bin"
        code, stdout, err = run(capsys, "memory", "inject", "--device", "sram-14nm", "--knob",
                                "v_rel=0.93", "--in", str(src), "--out", str(out),
                                "--ecc", ecc, "--interleave", "2", "--protect-msbs", "1",
                                "--json")
        assert code == 0, err
        reports[ecc] = json.loads(stdout)
        code, stdout, _ = run(capsys, "memory", "diff", str(src), str(out), "--json")
        diff = json.loads(stdout)
        assert diff["flips_zero_to_one"] == reports[ecc]["flips_zero_to_one"]
        assert diff["flips_one_to_zero"] == reports[ecc]["flips_one_to_zero"]
    plain, ecc_report = reports["none"], reports["secded-72-64"]
    assert plain["protection"]["reliable_bits"] == len(data)  # one MSB per byte
    assert ecc_report["protection"]["check_bits"] > 0
    # at 2e-5 faulty cells nearly every faulty word holds one error: ECC removes them
    assert plain["flips_zero_to_one"] + plain["flips_one_to_zero"] > 0
    assert ecc_report["ecc"]["corrected_words"] > 0
    assert ecc_report["flips_zero_to_one"] + ecc_report["flips_one_to_zero"] <= 2 * (
        ecc_report["ecc"]["uncorrectable_words"])
    code, _, err = run(capsys, "memory", "inject", "--device", "sram-14nm", "--in", str(src),
                       "--out", str(tmp_path / "o.bin"), "--interleave", "0")
    assert code == 2 and "interleave" in err
    assert_one_line_error(err)


def test_characterise_then_replay_gives_the_simulated_chips_bytes(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    src = tmp_path / "w.bin"
    src.write_bytes(data)
    maps = tmp_path / "maps.npz"
    code, stdout, err = run(capsys, "memory", "characterise", "--device", "sram-14nm",
                            "--sweep", "v_rel=0.8,0.85,0.9", "--cells", str(8 * len(data)),
                            "--chip-seed", "4", "--out", str(maps), "--json")
    assert code == 0, err
    points = json.loads(stdout)["points"]
    assert [p["knob_value"] for p in points] == [0.8, 0.85, 0.9]
    counts = [p["stuck_at_zero"] + p["stuck_at_one"] for p in points]
    assert counts[0] > counts[1] > 0 and counts[1] >= counts[2]  # more faults at lower voltage
    simulated, replayed = tmp_path / "sim.bin", tmp_path / "rep.bin"
    code, _, err = run(capsys, "memory", "inject", "--device", "sram-14nm", "--knob",
                       "v_rel=0.85", "--in", str(src), "--out", str(simulated), "--chip-seed",
                       "4")
    assert code == 0, err
    code, _, err = run(capsys, "memory", "inject", "--fault-map", str(maps), "--knob",
                       "v_rel=0.85", "--in", str(src), "--out", str(replayed))
    assert code == 0, err
    assert simulated.read_bytes() == replayed.read_bytes() != data
    code, _, err = run(capsys, "memory", "inject", "--fault-map", str(maps), "--knob",
                       "v_rel=0.87", "--in", str(src), "--out", str(replayed))
    assert code == 2 and "0.87" in err
    assert_one_line_error(err)
    code, _, err = run(capsys, "memory", "inject", "--in", str(src), "--out", str(replayed))
    assert code == 2 and "exactly one of" in err
    code, _, err = run(capsys, "memory", "characterise", "--device", "sram-14nm", "--sweep",
                       "v_rel=0.5", "--cells", "10", "--out", str(maps))
    assert code == 2
    assert_one_line_error(err)
