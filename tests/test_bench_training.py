"""The training benchmark runs every method on a tiny setting and prints its table and goal line
(no timing is asserted: the speed claim lives in the script's output, ratios measured in one
run)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "digits", "--model", "mlp", "--width", "0.25", "--rounds", "1"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(ROOT / "benchmarks" / "bench_training.py")


def run(bench: ModuleType, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main([*TINY, *args]) == 0
    return out.getvalue()


def test_markdown_table_has_every_method_against_ce(bench: ModuleType) -> None:
    setting, blank, header, rule, *rows, blank2, goal = run(
        bench, "--markdown", "--batches", "3").splitlines()
    assert setting.startswith("mlp (width 0.25, 4-bit weights) on digits: 192 training images "
                              "in batches of 64, 360 test images; 1 epoch(s) per run, 1 "
                              "round(s), 1 thread(s)")
    assert blank == blank2 == ""
    assert header == "| method | median s/epoch | x CE | x CE by round |"
    assert rule == "|---|---:|---:|---:|"
    assert [r.split(" | ")[0] for r in rows] == ["| CE", "| MCEL", "| bit-flip", "| RandBET"]
    for row in rows:
        assert re.fullmatch(r"\| [\w-]+ \| \d+\.\d{3} \| (\d+\.\d{2})x \| \1-\1x \|", row), row
    assert rows[0].endswith("| 1.00x | 1.00-1.00x |")
    assert re.fullmatch(r"MCEL <= 1\.05x CE: (met|missed) \((\d+\.\d{2})x, rounds \2-\2x\)",
                        goal)


def test_json_has_a_time_and_a_ratio_per_round(bench: ModuleType) -> None:
    report = json.loads(run(bench, "--json", "--rounds", "2", "--batches", "2",
                            "--batch-size", "32"))
    assert "64 training images in batches of 32" in report["setting"]
    assert [m["method"] for m in report["methods"]] == ["CE", "MCEL", "bit-flip", "RandBET"]
    for m in report["methods"]:
        assert len(m["seconds"]) == len(m["ratios"]) == 2 and min(m["seconds"]) > 0
    ce = report["methods"][0]
    assert ce["ratios"] == [1.0, 1.0] and ce["x_ce"] == 1.0


def test_bad_options_exit_with_a_message(bench: ModuleType) -> None:
    with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(io.StringIO()):
        bench.main(["--rounds", "0"])
    assert info.value.code == 2
