"""The store benchmark runs on a sweep and finds 16 KiB pages smaller than 4 KiB ones (no
timing: bytes are what it measures)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def test_bench_store_prints_bytes_per_row(small_sweep: tuple[Path, Path, Any]) -> None:
    bench = load_script(ROOT / "benchmarks" / "bench_store.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main([str(small_sweep[1])]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("bytes a row") and "x smaller" in lines[-1]
    # the shared sweep is left as it was: no write-ahead log or shared-memory file
    assert sorted(p.name for p in small_sweep[1].glob("results.sqlite*")) == ["results.sqlite"]


def test_rows_of_a_demo_s_size_take_a_third_of_the_space(tmp_path: Path) -> None:
    # 600 rows of ~1150 bytes of JSON, as the demo's (two trials, ten figures each): on 4 KiB
    # pages each spilled into an overflow page of its own
    bench = load_script(ROOT / "benchmarks" / "bench_store.py")
    from memsim.experiments.store import ResultStore, key_of

    sweep = tmp_path / "sweep"
    with ResultStore.in_dir(sweep) as store:
        rows = []
        for i in range(600):
            inputs = {"row": i, "hash": "ab" * 128, "memories": [{"knobs": {"v": 0.9}}] * 4}
            outputs = {f"figure_{j}": [0.123456789012345 + i, 0.98765432101234] * 2
                       for j in range(10)}
            rows.append((key_of(inputs), inputs, outputs))
        store.put_many(rows)
    m = bench.measure(sweep)
    assert 900 < m["json_bytes_per_row"] < 1500
    assert m["before_bytes_per_row"] > 3500  # a page a row
    assert m["now_bytes_per_row"] < 0.5 * m["before_bytes_per_row"]
