"""Throughput of memsim's fault kernels against the memory-bandwidth limit and a naive baseline.

    python benchmarks/bench_kernels.py [--mib 64] [--repeats 3] [--min-seconds 1]
        [--naive-mib 4] [--json | --markdown] [--quick] [--progress]

One run measures, on a random image of `--mib` MiB held as packed `np.uint64` words:

- `copy`: `np.copyto` of the words into a reused buffer, the memory-bandwidth limit of a read;
- `naive_torch`: the baseline as peers write it in PyTorch (unpack the words to one byte per
  bit, one `torch.rand` per bit, compare with p01 or p10 chosen by the stored bit, xor, repack).
  It needs ~10 bytes of temporaries per bit (several GB at 64 MiB) and runs at a few MB/s, so it
  is timed on a `--naive-mib` slice and its time scaled by bytes to the image;
- memsim's kernels at BER 1e-6 … 1e-1: `flip_bits` (asymmetric, p10 = 2·p01, BER their mean),
  `flip_bits+factors` (the same with per-cell lognormal factors, σ = 0.5; its reads use the
  chip's weak-cell list, see below), `flip_levels_mlc2`
  (2-bit Gray-coded cells, adjacent-level errors giving that BER) and `apply_persistent`
  (a sorted list of stuck-at faults on a fraction BER of the cells, half stuck at 0, half at 1;
  about half of them hold their stuck value already, so they change about BER/2 of the bits);
- `numpy_baseline` (issue 17): a plain numpy read at each BER, symmetric flips: `np.copyto` of
  the words, k ~ Binomial(n_bits, BER) from a seeded `np.random.Generator`, k positions by
  `rng.integers(0, n_bits, k)`, `np.bitwise_xor.at` on the words. Positions are drawn with
  replacement and a position drawn twice flips twice (back): the baseline's approximation, which
  changes (1 − e^(−2·BER))/2 of the bits instead of BER (0.1 % fewer at 1e-3, 1 % at 1e-2,
  9 % at 1e-1). numpy is single-threaded, so it is timed once per BER (threads 1);
- `flip_bits_symmetric`: memsim's `flip_bits_` with p01 = p10 = BER, the same error model as
  `numpy_baseline` (the `flip_bits` rows are asymmetric), fused as `flip_bits`. Its
  `ratio_to_numpy` (column `x numpy`) is numpy_baseline's seconds over its own at that BER: a
  ratio of speeds, >= 1 when memsim is faster.

A read costs a copy of the stored words plus the faults applied to the copy: that total is the
time reported for every kernel. `flip_bits` (and `flip_bits+factors`, `flip_bits_symmetric`) and
`flip_levels_mlc2` take the stored words as `source=` and copy each chunk just before changing
it, while the chunk is in cache (what `Chip.read` does when a flip or level pass comes first):
one pass over memory, so their rows time that fused pass. `apply_persistent` works in place on a
buffer refilled by `np.copyto`, and its `kernel_only_seconds` is the kernel alone. The
`flip_bits_copy_first` row is `flip_bits` that way too, for comparison: it measured slower than
the fused pass at every BER on this repository's machine (its flips land on words no longer in
cache).

Per-chip precomputation (issue 17 lets a read leave it out, if stated): `flip_bits+factors`
reads, as `Chip.read` does, with their chip's weak-cell list (`memsim.kernels.weak_cells`: the
cells whose factor exceeds the split level, 2.8 % of them at σ = 0.5, 8 bytes each, with
each chunk's start in the list), found once per chip by one hash per cell before any of its
reads is timed. No row's time includes it; the output states its size and build time (line
"Per-chip precomputation", JSON key `precomputation`). No other row uses any.

Every measurement runs once untimed (JIT load, page faults) and then keeps the best of
at least `--repeats` runs, more for short ones (`--min-seconds`, see `measure`). The copy is
timed again beside every row (one `np.copyto` run before or after each timed run of the row,
alternately, best kept): a row's `ratio_to_copy` is against that copy time (`copy_seconds`), so
a busy spell of the machine hits both alike; the `copy` row is the first such measurement, on
its own. Each row is measured with numba's and torch's thread counts set to its `threads` (1 and
2, capped at `numba.config.NUMBA_NUM_THREADS`); `np.copyto` and numpy are single-threaded. GB/s
are 10^9 bytes of the image per second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

import numba
import numpy as np
import torch
from numpy.typing import NDArray

from memsim.kernels import (
    FlipCounts,
    WeakCells,
    apply_persistent_,
    flip_bits_,
    flip_levels_,
    weak_cells,
)

BERS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)
THREADS = (1, 2)
FACTOR_SIGMA = 0.5
KERNELS = ("flip_bits", "flip_bits+factors", "flip_levels_mlc2", "apply_persistent")
PARALLEL_KERNELS = ("flip_bits", "flip_bits+factors", "flip_levels_mlc2")
COPY = "copy"
NAIVE = "naive_torch"
NUMPY = "numpy_baseline"
SYMMETRIC = "flip_bits_symmetric"
COPY_FIRST_ROW = "flip_bits_copy_first"
"""flip_bits on a buffer refilled by np.copyto, in place: a comparison row, kept to show why
reads fuse the copy into the flip pass (copy first is slower here at every BER) and judged by
no target."""

COPY_TARGET_MAX_BER = 1e-4
COPY_TARGET_RATIO = 0.7  # issue 17: one thread, for flips, MLC levels and cell factors
NAIVE_TARGET_MAX_BER = 1e-3
NAIVE_TARGET_RATIO = 100.0
THREAD_TARGET_BER = 1e-2
THREAD_TARGET_SPEEDUP = 1.6
NUMPY_TARGET_RATIO = 1.0

MAX_RUNS = 100
DEFAULT_MIB = 64.0
DEFAULT_NAIVE_MIB = 4.0
DEFAULT_REPEATS = 3
DEFAULT_MIN_SECONDS = 1.0

QUICK_MIB = 0.25
QUICK_NAIVE_MIB = 0.0625
QUICK_REPEATS = 1

MIB = 1 << 20
GB = 1e9
IMAGE_SEED = 20240601

# Level -> code of a 2-bit Gray code: adjacent levels differ in one bit, so every adjacent-level
# error flips exactly one bit.
GRAY2 = np.array([0, 1, 3, 2], np.uint8)
GRAY2_INVERSE = np.argsort(GRAY2).astype(np.uint8)

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Workloads at a given BER


def asymmetric_rates(ber: float) -> tuple[float, float]:
    """`(p01, p10)` with p10 = 2·p01 and mean `ber` (the BER of an image of half ones)."""
    p01 = 2.0 * ber / 3.0
    return p01, 2.0 * p01


def mlc_matrix(ber: float) -> NDArray[np.float64]:
    """4-level transition matrix with rate r to each adjacent level and BER `ber`.

    Levels 0 and 3 have one neighbour, 1 and 2 two, so a uniformly filled memory leaves its
    level with mean probability 1.5·r; with a Gray code each move flips one of the cell's 2 bits,
    so BER = 0.75·r.
    """
    r = ber / 0.75
    m = np.zeros((4, 4))
    for level in range(4):
        for other in (level - 1, level + 1):
            if 0 <= other < 4:
                m[level, other] = r
        m[level, level] = 1.0 - m[level].sum()
    return m


def stuck_at_faults(
    n_bits: int, density: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """Sorted distinct bit indices, each bit faulty with probability `density`; actions 0 or 1."""
    expected = n_bits * density
    block = int(expected + 10.0 * math.sqrt(expected) + 16.0)
    pieces = []
    last = -1
    # Geometric gaps give exactly independent Bernoulli(density) bits without a per-bit draw.
    while last < n_bits:
        index = last + np.cumsum(rng.geometric(density, size=block))
        pieces.append(index)
        last = int(index[-1])
    index = np.concatenate(pieces)
    index = np.ascontiguousarray(index[index < n_bits], dtype=np.int64)
    action = np.asarray(rng.integers(0, 2, size=index.shape[0]), dtype=np.uint8)
    return index, action


_SHIFTS = torch.arange(8, dtype=torch.uint8)


def naive_flip_torch(
    stored: torch.Tensor, p01: float, p10: float, generator: torch.Generator
) -> torch.Tensor:
    """Peers' bit-flip injection: a new uint8 tensor with each bit of `stored` flipped at random.

    Unpacks to one uint8 per bit, draws one float32 uniform per bit, compares it with p10 where
    the bit is 1 and p01 where it is 0, xors and repacks (bit k of byte j is stream bit 8j + k,
    the little-endian layout of the uint64 words).
    """
    bits = (stored.unsqueeze(-1) >> _SHIFTS) & 1
    u = torch.rand(bits.shape, generator=generator)
    flip = (u < torch.where(bits.bool(), p10, p01)).to(torch.uint8)
    return ((bits ^ flip) << _SHIFTS).sum(-1, dtype=torch.uint8)


def naive_work(stored: torch.Tensor, ber: float) -> Callable[[int], torch.Tensor]:
    """The naive baseline's call of one row, seeded by the run number."""
    p01, p10 = asymmetric_rates(ber)
    generator = torch.Generator()
    return lambda run: naive_flip_torch(stored, p01, p10, generator.manual_seed(run))


def numpy_flip_(words: NDArray[np.uint64], n_bits: int, p: float, rng: np.random.Generator) -> int:
    """Issue 17's plain numpy baseline: flip bits of the first `n_bits` stream bits of `words`.

    Draws k ~ Binomial(n_bits, p), then k positions uniformly in [0, n_bits) with replacement,
    and xors bit `pos & 63` of word `pos >> 6` for each (`np.bitwise_xor.at`, so a position drawn
    twice flips twice, i.e. not at all). Symmetric: 0s and 1s flip alike. Returns k.
    """
    k = int(rng.binomial(n_bits, p))
    pos = rng.integers(0, n_bits, k)
    np.bitwise_xor.at(words, pos >> 6, np.left_shift(np.uint64(1), (pos & 63).astype(np.uint64)))
    return k


def numpy_expected_fraction(p: float) -> float:
    """Fraction of bits `numpy_flip_` changes on average at `p` (large n_bits): a bit changes when
    it is drawn an odd number of times, Poisson(p) in the limit, so (1 - e^(-2p)) / 2."""
    return -math.expm1(-2.0 * p) / 2.0


def numpy_work(buf: NDArray[np.uint64], ber: float) -> Callable[[int], int]:
    """The numpy baseline's call of one row, in place on `buf` (already a copy), seeded by run."""
    n_bits = 64 * buf.shape[0]
    return lambda run: numpy_flip_(buf, n_bits, ber, np.random.default_rng(run))


def changed_bits(before: NDArray[np.uint64], after: NDArray[np.uint64]) -> int:
    """Number of bits that differ between two word arrays of the same shape."""
    return int(np.bitwise_count(np.bitwise_xor(before, after)).sum(dtype=np.int64))


def changed_fraction(before: NDArray[Any], after: NDArray[Any]) -> float:
    """Fraction of bits that differ between two arrays of the same bytes."""
    diff = np.bitwise_xor(before.view(np.uint8), after.view(np.uint8))
    return float(np.unpackbits(diff).sum(dtype=np.int64)) / (8 * diff.size)


# --------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Timing(Generic[T]):
    """Best-of times of one measurement (seconds) and the result of its last run.

    `beside_seconds`: best time of the `beside` call timed next to each run (None without one).
    """

    seconds: float
    work_seconds: float
    result: T
    beside_seconds: float | None = None


def measure(
    prepare: Callable[[], object],
    work: Callable[[int], T],
    repeats: int,
    min_seconds: float = 0.0,
    beside: Callable[[], object] | None = None,
) -> Timing[T]:
    """Best total and best `work` time of `prepare(); work(run)` after one untimed run.

    Times at least `repeats` runs, and more (up to `MAX_RUNS`) until the timed runs add up to
    `min_seconds`: short measurements get many tries, which makes the minimum robust to other
    processes taking the CPU now and then. `run` (0 for the warm-up) lets `work` vary its seed.
    `beside` (the reference copy) is timed once next to every timed run, before it on odd runs
    and after it on even ones (so neither always finds the caches the other left), and its best
    time is `beside_seconds`: the row and its reference see the same spells of load.
    """
    prepare()
    result = work(0)
    best = math.inf
    best_work = math.inf
    best_beside = math.inf
    spent = 0.0
    run = 0

    def time_beside() -> float:
        if beside is None:
            return math.inf
        t = time.perf_counter()
        beside()
        return time.perf_counter() - t

    while run < repeats or (spent < min_seconds and run < MAX_RUNS):
        run += 1
        if run % 2:
            best_beside = min(best_beside, time_beside())
        t0 = time.perf_counter()
        prepare()
        t1 = time.perf_counter()
        result = work(run)
        t2 = time.perf_counter()
        if not run % 2:
            best_beside = min(best_beside, time_beside())
        best = min(best, t2 - t0)
        best_work = min(best_work, t2 - t1)
        spent += t2 - t0
    return Timing(best, best_work, result, None if beside is None else best_beside)


def _nothing() -> None:
    return None


# --------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class Row:
    """One measurement.

    `seconds` is the cost of a read of the whole image (for the kernels `np.copyto` + kernel; for
    `naive_torch` the slice's time scaled by bytes); `gbps` = image bytes / seconds / 1e9;
    `ratio_to_copy` = copy seconds / seconds (speed as a fraction of the copy's);
    `ratio_to_naive` = naive seconds / seconds at the same BER and threads (None for `copy`);
    `kernel_only_seconds` the kernel without the copy (None where there is no separate copy);
    `changed_bit_fraction` the fraction of bits the last run changed (None for `copy`);
    `copy_seconds` the `np.copyto` time measured beside this row, the reference of
    `ratio_to_copy`; `ratio_to_numpy` = numpy_baseline seconds / seconds at the same BER, a ratio
    of speeds (>= 1: faster than numpy), for `flip_bits_symmetric` (same error model) and
    `numpy_baseline` itself (1.0), None elsewhere.
    """

    kernel: str
    ber: float | None
    threads: int
    gbps: float
    ratio_to_copy: float
    ratio_to_naive: float | None
    seconds: float
    kernel_only_seconds: float | None
    changed_bit_fraction: float | None
    copy_seconds: float | None = None
    ratio_to_numpy: float | None = None


@dataclass(frozen=True)
class Settings:
    image_mib: float
    naive_mib: float
    repeats: int
    min_seconds: float
    threads: tuple[int, ...]
    bers: tuple[float, ...]


FUSED = frozenset({"flip_bits", "flip_bits+factors", "flip_levels_mlc2", SYMMETRIC})
"""Kernels that copy the stored words themselves (`source=`), chunk by chunk."""


@dataclass(frozen=True)
class Precomputed:
    """Per-chip work done once before a chip's reads are timed (as `Chip` does), and not part
    of any row's time: the weak-cell list of `flip_bits+factors`' chip."""

    n_bits: int
    cells: int
    nbytes: int
    seconds: float
    threads: int
    factor_split: float


_WEAK: dict[int, tuple[WeakCells, Precomputed]] = {}


def _chip_weak_cells(n_bits: int) -> WeakCells:
    """The benchmark chip's weak cells (σ = 0.5, factor seed 7), found once and timed."""
    if n_bits not in _WEAK:
        weak_cells(1 << 12, FACTOR_SIGMA, 7)  # load the compiled code first: not timed
        t = time.perf_counter()
        weak = weak_cells(n_bits, FACTOR_SIGMA, 7)
        seconds = time.perf_counter() - t
        split = math.exp(FACTOR_SIGMA * weak.z_split - FACTOR_SIGMA**2 / 2)
        _WEAK[n_bits] = (weak, Precomputed(n_bits, int(weak.cells.shape[0]),
                                           int(weak.cells.nbytes), seconds,
                                           numba.get_num_threads(), split))
    return _WEAK[n_bits][0]


def precomputed(settings: Settings) -> Precomputed | None:
    """The per-chip precomputation of this run's image, if a factor row built it."""
    found = _WEAK.get(64 * _image_words(settings.image_mib))
    return None if found is None else found[1]


def _image_words(image_mib: float) -> int:
    return max(1, int(image_mib * MIB) // 8)


def kernel_work(
    kernel: str, ber: float, buf: NDArray[np.uint64], fault_seed: int,
    words: NDArray[np.uint64] | None = None,
) -> Callable[[int], FlipCounts]:
    """The kernel call of one row on `buf`: for `FUSED` kernels with `words`, a read of `words`
    into `buf` (copy and flips in one pass); otherwise in place on `buf` (already a copy).

    `fault_seed` draws the stuck-at fault list, so every thread count sees the same list.
    """
    n_bits = 64 * buf.shape[0]
    p01, p10 = asymmetric_rates(ber)
    if kernel in ("flip_bits", COPY_FIRST_ROW):
        return lambda run: flip_bits_(buf, n_bits, p01, p10, seed=run, source=words)
    if kernel == SYMMETRIC:
        return lambda run: flip_bits_(buf, n_bits, ber, ber, seed=run, source=words)
    if kernel == "flip_bits+factors":
        # the chip's weak cells are found once per chip (as Chip does), not per read
        weak = _chip_weak_cells(n_bits)
        return lambda run: flip_bits_(
            buf, n_bits, p01, p10, seed=run, factor_sigma=FACTOR_SIGMA, factor_seed=7,
            source=words, weak=weak,
        )
    if kernel == "flip_levels_mlc2":
        matrix = mlc_matrix(ber)
        n_cells = n_bits // 2
        return lambda run: flip_levels_(buf, n_cells, 2, GRAY2, GRAY2_INVERSE, matrix, seed=run,
                                        source=words)
    if kernel == "apply_persistent":
        index, action = stuck_at_faults(n_bits, ber, np.random.default_rng(fault_seed))
        return lambda run: apply_persistent_(buf, index, action, distinct=True)  # as Chip
    raise ValueError(f"unknown kernel {kernel!r}")


def run_benchmark(settings: Settings, log: Callable[[str], None]) -> list[Row]:
    """Measure every row; `log` receives progress lines."""
    rng = np.random.default_rng(IMAGE_SEED)
    n_words = _image_words(settings.image_mib)
    words = rng.integers(0, 2**64, size=n_words, dtype=np.uint64)
    buf = np.empty_like(words)
    copy_buf = np.empty_like(words)  # the reference copy's own target: it never clobbers `buf`
    image_bytes = words.nbytes
    naive_words = max(1, min(n_words, int(settings.naive_mib * MIB) // 8))
    naive_stored = torch.from_numpy(words[:naive_words].view(np.uint8))
    naive_scale = image_bytes / (8 * naive_words)

    def copy_words() -> None:
        np.copyto(copy_buf, words)

    def timed(prepare: Callable[[], object], work: Callable[[int], T]) -> Timing[T]:
        return measure(prepare, work, settings.repeats, settings.min_seconds, copy_words)

    def refill() -> None:
        np.copyto(buf, words)

    def copy_of(timing: Timing[Any]) -> float:
        assert timing.beside_seconds is not None
        return timing.beside_seconds

    def kernel_row(kernel: str, ber: float, threads: int, timing: Timing[FlipCounts],
                   fused: bool, ratio_to_numpy: float | None = None) -> Row:
        return Row(
            kernel,
            ber,
            threads,
            image_bytes / timing.seconds / GB,
            copy_of(timing) / timing.seconds,
            naive_seconds[threads] / timing.seconds,
            timing.seconds,
            None if fused else timing.work_seconds,
            timing.result.bits_changed / (8 * image_bytes),
            copy_of(timing),
            ratio_to_numpy,
        )

    def use_threads(threads: int) -> None:
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)

    copy = measure(
        _nothing, lambda run: copy_words(), settings.repeats, settings.min_seconds
    )
    rows = [
        Row(
            COPY, None, 1, image_bytes / copy.seconds / GB, 1.0, None, copy.seconds, None, None,
            copy.seconds,
        )
    ]
    log(f"copy: {1e3 * copy.seconds:.1f} ms")

    # Thread counts alternate inside each (BER, kernel), so a busy spell of the machine hits
    # neighbouring rows alike rather than a whole thread count.
    for k, ber in enumerate(settings.bers):
        naive_seconds: dict[int, float] = {}
        for threads in settings.threads:
            use_threads(threads)
            naive = timed(_nothing, naive_work(naive_stored, ber))
            naive_seconds[threads] = seconds = naive.seconds * naive_scale
            rows.append(
                Row(
                    NAIVE,
                    ber,
                    threads,
                    image_bytes / seconds / GB,
                    copy_of(naive) / seconds,
                    1.0,
                    seconds,
                    None,
                    changed_fraction(naive_stored.numpy(), naive.result.numpy()),
                    copy_of(naive),
                )
            )
            log(f"{NAIVE} ber={ber:g} threads={threads}: {seconds:.2f} s (scaled)")
        for kernel in (*KERNELS, COPY_FIRST_ROW):
            fused = kernel in FUSED
            work = kernel_work(kernel, ber, buf, IMAGE_SEED + 1 + k, words if fused else None)
            for threads in settings.threads:
                use_threads(threads)
                timing = timed(_nothing if fused else refill, work)
                rows.append(kernel_row(kernel, ber, threads, timing, fused))
                log(f"{kernel} ber={ber:g} threads={threads}: {1e3 * timing.seconds:.1f} ms")
        # Issue 17's numpy baseline (single-threaded: timed once, with one numba thread) and
        # memsim on the same symmetric error model, timed right after it.
        use_threads(1)
        numpy = timed(refill, numpy_work(buf, ber))
        rows.append(
            Row(
                NUMPY,
                ber,
                1,
                image_bytes / numpy.seconds / GB,
                copy_of(numpy) / numpy.seconds,
                naive_seconds[settings.threads[0]] / numpy.seconds,
                numpy.seconds,
                numpy.work_seconds,
                changed_bits(words, buf) / (8 * image_bytes),  # buf holds the last run's read
                copy_of(numpy),
                1.0,
            )
        )
        log(f"{NUMPY} ber={ber:g}: {1e3 * numpy.seconds:.1f} ms")
        work = kernel_work(SYMMETRIC, ber, buf, IMAGE_SEED + 1 + k, words)
        for threads in settings.threads:
            use_threads(threads)
            timing = timed(_nothing, work)
            rows.append(kernel_row(SYMMETRIC, ber, threads, timing, True,
                                   numpy.seconds / timing.seconds))
            log(f"{SYMMETRIC} ber={ber:g} threads={threads}: {1e3 * timing.seconds:.1f} ms")
    return rows


# --------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    """One goal of the issue: whether it is met (None: not measurable here) and the numbers."""

    name: str
    met: bool | None
    detail: str


def _kernel_rows(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if r.kernel in KERNELS]


def _where(row: Row) -> str:
    return f"{row.kernel}, BER {row.ber:g}, {row.threads} thread{'s' * (row.threads > 1)}"


def evaluate_targets(rows: Sequence[Row]) -> list[Target]:
    """The three targets of the issue, judged on the copy + kernel times."""
    kernel_rows = _kernel_rows(rows)
    targets = []

    low = [r for r in kernel_rows
           if r.ber is not None and r.ber <= COPY_TARGET_MAX_BER and r.threads == 1]
    worst = min(low, key=lambda r: r.ratio_to_copy)
    per_kernel = ", ".join(
        f"{kernel} {min(r.ratio_to_copy for r in low if r.kernel == kernel):.2f}x"
        for kernel in KERNELS
        if any(r.kernel == kernel for r in low)
    )
    targets.append(
        Target(
            f">= {COPY_TARGET_RATIO:g}x copy at BER <= {COPY_TARGET_MAX_BER:g}, 1 thread",
            worst.ratio_to_copy >= COPY_TARGET_RATIO,
            f"lowest {worst.ratio_to_copy:.2f}x ({_where(worst)}); lowest per kernel: {per_kernel}",
        )
    )

    def naive_ratio(r: Row) -> float:
        return math.inf if r.ratio_to_naive is None else r.ratio_to_naive

    low = [r for r in kernel_rows if r.ber is not None and r.ber <= NAIVE_TARGET_MAX_BER]
    worst = min(low, key=naive_ratio)
    above = []
    for ber in sorted({r.ber for r in kernel_rows if r.ber is not None}):
        if ber > NAIVE_TARGET_MAX_BER:
            at = min((r for r in kernel_rows if r.ber == ber), key=naive_ratio)
            above.append(f"BER {ber:g}: lowest {naive_ratio(at):.0f}x ({at.kernel})")
    targets.append(
        Target(
            f">= {NAIVE_TARGET_RATIO:g}x naive at BER <= {NAIVE_TARGET_MAX_BER:g}",
            naive_ratio(worst) >= NAIVE_TARGET_RATIO,
            f"lowest {naive_ratio(worst):.0f}x ({_where(worst)})"
            + (f"; above: {'; '.join(above)}" if above else ""),
        )
    )

    by_key = {(r.kernel, r.ber, r.threads): r for r in kernel_rows}
    speedups = []
    met: bool | None = None
    for kernel in KERNELS:
        one = by_key.get((kernel, THREAD_TARGET_BER, 1))
        two = by_key.get((kernel, THREAD_TARGET_BER, 2))
        if one is None or two is None:
            continue
        total = one.seconds / two.seconds
        text = f"{kernel} {total:.2f}x"
        if one.kernel_only_seconds and two.kernel_only_seconds:
            text += f" (kernel alone {one.kernel_only_seconds / two.kernel_only_seconds:.2f}x)"
        if kernel in PARALLEL_KERNELS:
            met = (met is None or met) and total >= THREAD_TARGET_SPEEDUP
        else:
            text += " [serial kernel, not judged]"
        speedups.append(text)
    targets.append(
        Target(
            f"2 threads >= {THREAD_TARGET_SPEEDUP:g}x 1 thread at BER {THREAD_TARGET_BER:g}",
            met,
            "; ".join(speedups) if speedups else "not measured (fewer than 2 threads or BERs)",
        )
    )
    targets.append(numpy_target(rows))
    return targets


def numpy_target(rows: Sequence[Row]) -> Target:
    """Issue 17: memsim's symmetric flips at least as fast as the numpy baseline at every BER,
    with one thread (numpy's own), as speed ratios numpy seconds / memsim seconds."""
    symmetric = sorted(
        (r for r in rows if r.kernel == SYMMETRIC and r.ratio_to_numpy is not None),
        key=lambda r: (r.ber or 0.0, r.threads),
    )
    one = [r for r in symmetric if r.threads == 1]
    name = f"{SYMMETRIC} >= {NUMPY_TARGET_RATIO:g}x {NUMPY} at every BER, 1 thread"
    if not one:
        return Target(name, None, f"not measured (no {SYMMETRIC} rows)")
    worst = min(one, key=lambda r: r.ratio_to_numpy or 0.0)
    per_ber = "; ".join(
        f"BER {ber:g}: "
        + ", ".join(
            f"{r.ratio_to_numpy:.2f}x ({r.threads} thread{'s' * (r.threads > 1)})"
            for r in symmetric
            if r.ber == ber
        )
        for ber in sorted({r.ber for r in symmetric if r.ber is not None})
    )
    return Target(
        name,
        all((r.ratio_to_numpy or 0.0) >= NUMPY_TARGET_RATIO for r in one),
        f"lowest {worst.ratio_to_numpy:.2f}x (BER {worst.ber:g}); {per_ber}",
    )


# --------------------------------------------------------------------------------------------
# Output


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cells(row: Row) -> list[str]:
    return [
        row.kernel,
        _fmt(row.ber, ".0e"),
        str(row.threads),
        _fmt(row.gbps, ".3g"),
        _fmt(row.ratio_to_copy, ".3g"),
        _fmt(row.ratio_to_naive, ".4g"),
        _fmt(1e3 * row.seconds, ".4g"),
        _fmt(None if row.kernel_only_seconds is None else 1e3 * row.kernel_only_seconds, ".4g"),
        _fmt(row.changed_bit_fraction, ".2e"),
        _fmt(None if row.copy_seconds is None else 1e3 * row.copy_seconds, ".4g"),
        _fmt(row.ratio_to_numpy, ".3g"),
    ]


HEADER = [
    "kernel",
    "BER",
    "threads",
    "GB/s",
    "x copy",
    "x naive",
    "ms/read",
    "kernel-only ms",
    "bits changed",
    "copy ms",
    "x numpy",
]


def describe(settings: Settings) -> list[str]:
    """The lines that say what was measured."""
    return [
        f"Image {settings.image_mib:g} MiB of random uint64 words; after one warm-up, the best "
        f"of at least {settings.repeats} runs (more, up to {MAX_RUNS}, until the runs add up to "
        f"{settings.min_seconds:g} s); GB/s = 1e9 bytes of the image per second.",
        "Kernel rows time a whole read: flip_bits (and +factors, _symmetric) and "
        "flip_levels_mlc2 copy and change the words in one fused pass (source=), what "
        "Chip.read does; apply_persistent np.copyto of the words into a reused buffer + the "
        "in-place kernel; kernel-only ms is the kernel alone. "
        f"{COPY_FIRST_ROW}: flip_bits after np.copyto, in place, for comparison (no target "
        "judges it).",
        f"{NAIVE} (unpack to bits, torch.rand per bit, compare, xor, repack) is timed on a "
        f"{settings.naive_mib:g} MiB slice and scaled by bytes to the image.",
        "flip_bits: p10 = 2·p01, BER = their mean; +factors: lognormal cell factors "
        f"σ = {FACTOR_SIGMA:g}; flip_levels_mlc2: 2-bit Gray cells, adjacent-level errors; "
        "apply_persistent: stuck-at faults on a fraction BER of the cells (a sorted list of "
        "distinct cells, applied as listed, as Chip does; about half already hold their "
        "value). copy is single-threaded; apply_persistent_ is serial.",
        f"{NUMPY} (issue 17; np.copyto, k ~ Binomial(n, BER), k positions by rng.integers, "
        "np.bitwise_xor.at; a position drawn twice flips back, so it changes (1 - e^(-2 BER))/2 "
        f"of the bits) is single-threaded and timed once per BER; {SYMMETRIC} is flip_bits with "
        "p01 = p10 = BER, its error model.",
        "copy ms is np.copyto timed beside each row (alternating before/after its runs); x copy "
        "= that copy's time / the row's. x naive, x numpy = baseline time / the row's time at "
        f"the same BER (speed ratios: > 1 means the row is faster; x numpy only for {SYMMETRIC}, "
        f"against {NUMPY}).",
        precomputation_line(settings),
        f"numba threading layer: {_threading_layer()}; machine CPUs: {_cpu_count()}.",
    ]


def precomputation_line(settings: Settings) -> str:
    """What per-chip work the reads rely on and leave out of their times (issue 17)."""
    pre = precomputed(settings)
    if pre is None:
        return "Per-chip precomputation: none built in this run."
    return (
        "Per-chip precomputation, not in any read time: the flip_bits+factors chip's weak-cell "
        f"list (the cells whose factor exceeds {pre.factor_split:.3g}: {pre.cells} cells, "
        f"{100 * pre.cells / pre.n_bits:.2g} % of them, {pre.nbytes / 1e6:.3g} MB, with each "
        f"chunk's start), built once before its reads are timed, as Chip does: "
        f"{pre.seconds:.3g} s with {pre.threads} thread{'s' * (pre.threads > 1)}, "
        f"{pre.seconds * 1e9 / (pre.n_bits / 8):.3g} ms per MB of image."
    )


def _threading_layer() -> str:
    try:
        return str(numba.threading_layer())  # type: ignore[attr-defined]
    except ValueError:  # no parallel kernel has run yet
        return "not initialised"


def _cpu_count() -> int:
    return os.cpu_count() or 1


def format_text(settings: Settings, rows: Sequence[Row], targets: Sequence[Target]) -> str:
    table = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = list(describe(settings))
    lines.append("")
    for k, line in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("Targets (copy + kernel times):")
    lines.extend(f"  {t.name}: {_verdict(t)}, {t.detail}" for t in targets)
    return "\n".join(lines)


def format_markdown(settings: Settings, rows: Sequence[Row], targets: Sequence[Target]) -> str:
    lines = list(describe(settings))
    lines.append("")
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|")
    lines.extend("| " + " | ".join(_cells(r)) + " |" for r in rows)
    lines.append("")
    lines.extend(f"- {t.name}: **{_verdict(t)}**, {t.detail}" for t in targets)
    return "\n".join(lines)


def _verdict(target: Target) -> str:
    return "not measured" if target.met is None else "met" if target.met else "not met"


def format_json(settings: Settings, rows: Sequence[Row], targets: Sequence[Target]) -> str:
    document = {
        "settings": asdict(settings),
        "rows": [asdict(r) for r in rows],
        "targets": [asdict(t) for t in targets],
        "precomputation": None if (pre := precomputed(settings)) is None else asdict(pre),
        "threading_layer": _threading_layer(),
    }
    return json.dumps(document, indent=1)


# --------------------------------------------------------------------------------------------
# Command line


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0.0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--mib", type=_positive_float, help="image size in MiB (default 64)")
    parser.add_argument(
        "--naive-mib", type=_positive_float, help="slice for the naive baseline (default 4)"
    )
    parser.add_argument(
        "--repeats", type=_positive_int, help="least number of timed runs, best kept (default 3)"
    )
    parser.add_argument(
        "--min-seconds",
        type=_non_negative_float,
        help=f"time more runs (up to {MAX_RUNS}) until they add up to this (default 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes for tests: {QUICK_MIB} MiB, naive {QUICK_NAIVE_MIB} MiB, 1 repeat",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print rows as JSON")
    output.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--progress", action="store_true", help="log each measurement to stderr")
    return parser.parse_args(argv)


def _pick(given: float | None, quick: float, default: float, is_quick: bool) -> float:
    if given is not None:
        return given
    return quick if is_quick else default


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    image_mib = _pick(args.mib, QUICK_MIB, DEFAULT_MIB, args.quick)
    naive_mib = _pick(args.naive_mib, QUICK_NAIVE_MIB, DEFAULT_NAIVE_MIB, args.quick)
    repeats = int(_pick(args.repeats, QUICK_REPEATS, DEFAULT_REPEATS, args.quick))
    min_seconds = _pick(args.min_seconds, 0.0, DEFAULT_MIN_SECONDS, args.quick)
    available = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    threads = tuple(n for n in THREADS if n <= available)
    settings = Settings(image_mib, min(naive_mib, image_mib), repeats, min_seconds, threads, BERS)

    def log(line: str) -> None:
        if args.progress:
            print(line, file=sys.stderr, flush=True)

    saved_numba, saved_torch = numba.get_num_threads(), torch.get_num_threads()
    try:
        rows = run_benchmark(settings, log)
    finally:
        numba.set_num_threads(saved_numba)
        torch.set_num_threads(saved_torch)
    targets = evaluate_targets(rows)
    if args.json:
        print(format_json(settings, rows, targets))
    elif args.markdown:
        print(format_markdown(settings, rows, targets))
    else:
        print(format_text(settings, rows, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
