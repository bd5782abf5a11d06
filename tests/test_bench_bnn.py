"""The BNN benchmark runs in its quick mode and prints its table, verdicts and JSON (no timing
is asserted: the speed claim lives in the script's output, a ratio measured in one run)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    bench = load_script(ROOT / "benchmarks" / "bench_bnn.py")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--quick", *args]) == 0
    return out.getvalue()


def test_bench_bnn_prints_a_row_and_a_verdict_per_model() -> None:
    lines = run().strip().splitlines()
    header, mlp, vgg3, blank, *verdicts = lines
    assert header.split()[:4] == ["model", "images", "weights", "torch"]
    assert mlp.split()[:3] == ["mlp", "360", "25856"]
    assert vgg3.split()[:2] == ["vgg3", "32"]
    for row in (mlp, vgg3):
        assert row.split()[-2] == "yes"  # the two paths gave the same logits
    assert blank == ""
    assert [v.split(":")[0] for v in verdicts] == ["mlp", "vgg3"]
    assert all("x torch on one thread" in v and "5x target" in v for v in verdicts)


def test_bench_bnn_json_has_the_fields_of_a_row() -> None:
    rows = json.loads(run("--json", "--ber", "0.05"))
    assert [r["model"] for r in rows] == ["mlp", "vgg3"]
    for r in rows:
        assert set(r) == {"model", "images", "weights", "ber", "torch_s", "packed_s", "build_s",
                          "identical", "speedup", "meets_target"}
        assert r["identical"] is True and r["ber"] == 0.05
        assert r["torch_s"] > 0 and r["packed_s"] > 0
        assert abs(r["speedup"] - r["torch_s"] / r["packed_s"]) < 1e-9


def test_bench_bnn_markdown_table() -> None:
    lines = run("--markdown").splitlines()
    assert lines[0].startswith("| model | images |") and lines[1].startswith("|---|")
    assert lines[2].startswith("| mlp | 360 |") and lines[3].startswith("| vgg3 | 32 |")
