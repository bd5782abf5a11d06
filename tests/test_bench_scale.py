"""The scaling benchmark runs and prints its table and fit (no timing is asserted: speed
claims live in the script's output, measured as ratios in one run)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def test_bench_scale_prints_a_row_per_size_and_a_fit() -> None:
    bench = load_script(ROOT / "benchmarks" / "bench_scale.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--sizes", "1", "2", "--variants", "flat", "factors",
                           "--reads", "2"]) == 0
    lines = out.getvalue().strip().splitlines()
    header, *rows = lines[:5]
    assert header.split()[:3] == ["variant", "MiB", "v_rel"]
    assert [r.split()[:2] for r in rows] == [["flat", "1"], ["flat", "2"], ["factors", "1"],
                                             ["factors", "2"]]
    for r in rows:
        ber = float(r.split()[3])
        assert 5e-4 < ber < 2e-3  # the voltage found gives about the BER asked for
    footer = lines[-2:]
    assert footer[0].startswith("flat: slope") and footer[1].startswith("factors: slope")
    assert "x the image" in footer[0]


def test_bench_scale_rows_fit_a_line() -> None:
    bench = load_script(ROOT / "benchmarks" / "bench_scale.py")
    rows = [bench.Row("flat", m, 0.87, 1e-3, 0.1, 0.01 * m, 1 << 20, 5 << 20, 3 << 20)
            for m in (1, 2, 4)]
    assert abs(bench.slope(rows) - 0.01) < 1e-12
    assert "1.00x that at 1 MiB" in bench.footer(rows)[0]
    assert "beyond the chip's state and the result at most 1 MiB" in bench.footer(rows)[0]
