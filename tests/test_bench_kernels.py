"""The kernel benchmark script: its workloads are calibrated to the BER they claim, the naive
baseline flips what it should, and a quick run yields every row. No timing assertions."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernels.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def quick_run(bench: ModuleType) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--quick", "--json"]) == 0
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


# --- workloads ---------------------------------------------------------------------------


@pytest.mark.parametrize("ber", [1e-6, 1e-3, 1e-1])
def test_asymmetric_rates(bench: ModuleType, ber: float) -> None:
    p01, p10 = bench.asymmetric_rates(ber)
    assert p10 == pytest.approx(2 * p01, rel=1e-12)
    assert (p01 + p10) / 2 == pytest.approx(ber, rel=1e-12)


@pytest.mark.parametrize("ber", [1e-6, 1e-2, 1e-1])
def test_mlc_matrix_gives_the_ber(bench: ModuleType, ber: float) -> None:
    m = bench.mlc_matrix(ber)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    codes = bench.GRAY2
    assert np.array_equal(codes[bench.GRAY2_INVERSE], np.arange(4))
    flipped_bits = np.array([[bin(int(a) ^ int(b)).count("1") for b in codes] for a in codes])
    # Only adjacent levels are confused, each flipping one bit of the Gray code.
    off_diagonal = ~np.eye(4, dtype=bool)
    assert np.all(m[off_diagonal & (flipped_bits != 1)] == 0)
    assert np.all(np.triu(m, 2) == 0) and np.all(np.tril(m, -2) == 0)
    # Uniformly filled levels: flipped bits per cell / 2 bits per cell.
    assert float((m * flipped_bits).sum() / 4 / 2) == pytest.approx(ber, rel=1e-12)


def test_stuck_at_faults_sorted_distinct_and_dense_as_asked(bench: ModuleType) -> None:
    n_bits, density = 1 << 22, 1e-2
    index, action = bench.stuck_at_faults(n_bits, density, np.random.default_rng(5))
    assert index.dtype == np.int64 and action.dtype == np.uint8
    assert np.all(np.diff(index) > 0)
    assert index[0] >= 0 and index[-1] < n_bits
    assert set(np.unique(action).tolist()) == {0, 1}
    # Two-sided binomial band at alpha ~1e-6 (z = 4.9).
    mean = n_bits * density
    assert abs(index.size - mean) < 4.9 * math.sqrt(mean * (1 - density))
    ones = int(action.sum())
    assert abs(ones - index.size / 2) < 4.9 * math.sqrt(index.size / 4)


class _UnitGaps:
    """A generator stand-in whose geometric gaps are all 1: every bit becomes faulty."""

    def geometric(self, p: float, size: int) -> np.ndarray:
        return np.ones(size, np.int64)

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        return np.zeros(size, np.int64)


def test_stuck_at_faults_draws_more_blocks_until_the_stream_is_covered(bench: ModuleType) -> None:
    # With gaps of 1 the first block (~27 gaps at this density) covers only part of the stream.
    index, action = bench.stuck_at_faults(1000, 1e-3, _UnitGaps())
    np.testing.assert_array_equal(index, np.arange(1000))
    assert action.dtype == np.uint8 and action.shape == (1000,)


def test_naive_baseline_flips_what_it_should(bench: ModuleType) -> None:
    stored = torch.from_numpy(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(bench.naive_flip_torch(stored, 0.0, 0.0, gen), stored)
    assert torch.equal(bench.naive_flip_torch(stored, 1.0, 0.0, gen), torch.full_like(stored, 255))
    assert torch.equal(bench.naive_flip_torch(stored, 0.0, 1.0, gen), torch.zeros_like(stored))
    assert torch.equal(bench.naive_flip_torch(stored, 1.0, 1.0, gen), ~stored)
    # Bit k of byte j is stream bit 8j + k, as in the little-endian uint64 words.
    one_bit = torch.tensor([0b0000_0100], dtype=torch.uint8)
    flipped = bench.naive_flip_torch(one_bit, 0.0, 1.0, gen)
    assert flipped.tolist() == [0]


def test_changed_fraction(bench: ModuleType) -> None:
    a = np.zeros(4, np.uint64)
    b = a.copy()
    b[1] = np.uint64(0b1011)
    assert bench.changed_fraction(a, b) == 3 / 256


# --- a quick run -------------------------------------------------------------------------


def test_quick_run_has_every_row(bench: ModuleType, quick_run: dict[str, Any]) -> None:
    rows = quick_run["rows"]
    threads = quick_run["settings"]["threads"]
    assert threads and threads[0] == 1
    for row in rows:
        assert {"kernel", "ber", "threads", "gbps", "ratio_to_copy", "ratio_to_naive"} <= set(row)
        assert row["gbps"] > 0 and row["ratio_to_copy"] > 0 and row["seconds"] > 0
    copies = [r for r in rows if r["kernel"] == bench.COPY]
    assert len(copies) == 1 and copies[0]["ratio_to_copy"] == 1.0
    keyed = {(r["kernel"], r["ber"], r["threads"]): r for r in rows if r["kernel"] != bench.COPY}
    want = set(itertools.product((bench.NAIVE, *bench.KERNELS), bench.BERS, threads))
    assert set(keyed) == want
    assert len(keyed) == len(rows) - 1  # no duplicates
    for (kernel, _, _), row in keyed.items():
        assert row["ratio_to_naive"] > 0
        if kernel in bench.FUSED or kernel == bench.NAIVE:
            assert row["kernel_only_seconds"] is None  # copy and flips are one pass
        else:
            assert 0 < row["kernel_only_seconds"] <= row["seconds"]


def test_quick_run_flips_at_the_stated_ber(bench: ModuleType, quick_run: dict[str, Any]) -> None:
    # At BER 0.1 the standard deviation of the fraction is ~2e-4 over the 2^21 bits of the quick
    # image (4e-4 over the naive baseline's 2^19); a 5 % band is at least 12 sd wide, so this
    # only catches a miscalibrated workload.
    for row in quick_run["rows"]:
        if row["ber"] == 0.1:
            want = 0.05 if row["kernel"] == "apply_persistent" else 0.1
            assert row["changed_bit_fraction"] == pytest.approx(want, rel=0.05), row


def test_quick_run_targets_and_formats(bench: ModuleType, quick_run: dict[str, Any]) -> None:
    targets = quick_run["targets"]
    assert len(targets) == 3
    assert all(t["met"] in (True, False, None) and t["detail"] for t in targets)
    settings = bench.Settings(**{**quick_run["settings"], "threads": (1, 2), "bers": bench.BERS})
    rows = [bench.Row(**r) for r in quick_run["rows"]]
    parsed = [bench.Target(**t) for t in targets]
    text = bench.format_text(settings, rows, parsed)
    markdown = bench.format_markdown(settings, rows, parsed)
    for kernel in (*bench.KERNELS, bench.NAIVE, bench.COPY):
        assert kernel in text and f"| {kernel} |" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert len({line.count("|") for line in table}) == 1


def _row(bench: ModuleType, kernel: str, ber: float, threads: int, seconds: float) -> Any:
    copy_seconds, naive_seconds = 1.0, 1000.0
    return bench.Row(
        kernel,
        ber,
        threads,
        1.0 / seconds,
        copy_seconds / seconds,
        naive_seconds / seconds,
        seconds,
        seconds / 2,
        ber,
    )


def test_targets_verdicts(bench: ModuleType) -> None:
    def rows(slow: float) -> list[Any]:
        out = []
        for kernel, ber in itertools.product(bench.KERNELS, bench.BERS):
            out.append(_row(bench, kernel, ber, 1, 1.5 if ber <= 1e-3 else slow))
            out.append(_row(bench, kernel, ber, 2, 1.5 if ber <= 1e-3 else slow / 1.7))
        return out

    met = bench.evaluate_targets(rows(slow=20.0))
    assert [t.met for t in met] == [True, True, True]
    # One kernel 2.5x slower than the copy at BER 1e-4, and no thread speed-up at 1e-2.
    slower = [
        _row(bench, r.kernel, r.ber, r.threads, 2.5)
        if (r.kernel, r.ber) == ("flip_bits", 1e-4)
        else _row(bench, r.kernel, r.ber, r.threads, 20.0)
        if r.ber == 1e-2
        else r
        for r in rows(slow=20.0)
    ]
    verdicts = bench.evaluate_targets(slower)
    assert [t.met for t in verdicts] == [False, True, False]
    assert "0.40x" in verdicts[0].detail and "flip_bits, BER 0.0001" in verdicts[0].detail
    # Only one thread count: the thread target is not measured.
    single = [r for r in rows(slow=20.0) if r.threads == 1]
    assert bench.evaluate_targets(single)[2].met is None
