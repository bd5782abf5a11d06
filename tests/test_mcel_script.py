"""scripts/mcel_vs_ce.py (docs/mcel-study.md's table) runs end to end on a token amount of work:
one row per setting and loss, Δ against CE, intervals over seeds when there are several."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import ModuleType

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


def test_bad_arguments_exit_with_a_message(script: ModuleType) -> None:
    for argv in (["--bers", "0"], ["--output-scale", "big"], ["--output-scale", "-1"]):
        with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(io.StringIO()):
            script.main(argv)
        assert info.value.code == 2
