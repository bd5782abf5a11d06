"""The sweep benchmark runs every variant on a tiny config and prints its table (no timing is
asserted: speed claims live in the script's output, measured as ratios in one run)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from conftest import load_script
from sweeps import golden_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
schema_version: 1
name: tiny-bench
data: {{name: digits, test_images: 40}}
models:
  - {{name: a, checkpoint: {checkpoint}}}
devices:
  - {{device: sram-14nm, sweep: {{v_rel: [0.9, 0.8]}}}}
chips: 2
trials: 2
deployment: always-on
"""


def test_bench_sweep_times_both_paths_on_the_same_evaluations(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.format(checkpoint=golden_checkpoint_file(tmp_path / "a.pt")))
    bench = load_script(ROOT / "benchmarks" / "bench_sweep.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--config", str(config), "--rounds", "1", "--json"]) == 0
    report = json.loads(out.getvalue())
    assert [r["variant"] for r in report["runs"]] == ["batched", "reference"]
    summary = report["summary"]
    assert summary["batched"]["evaluations"] == summary["reference"]["evaluations"] == 4
    assert summary["reference"]["x_reference"] == 1.0
    lines = bench.format_table(summary, 1).splitlines()
    assert lines[0].split() == ["variant", "evals", "seconds", "evals/s", "x", "ref"]
    assert [line.split()[0] for line in lines[1:3]] == ["batched", "reference"]
    assert lines[2].split()[-1] == "1.00"
