"""Chips and trials: one manufactured, programmed instance of a device, read at operating points.

A `Chip` is fixed by its seed: the same seed gives the same faults at an operating point,
whatever was read before. Its persistent faults (threshold and stuck-at cells) are drawn
sparse and sorted by critical score, so the faulty cells at any operating point are a prefix
of one list (nested along the stress). They are drawn for the harshest point asked so far (or
the `sweep` given) and extended, continuing the same draws, when a harsher point is read: time
and memory follow the faults read, not the knobs' range: a chip holds 17 bytes per candidate
(cell, score, action; `Chip.nbytes`) and a read holds its result, one image, besides. It stores
no float per cell beyond those candidates: per-cell factors of transient mechanisms come from a
counter-based hash of (chip seed, cell index), with a list of the cells whose factor is large
(8 bytes each) kept to draw fewer candidates per read.

A trial is one read (`Chip.read`) at an operating point: from its seed it draws the read-time
flips and the retention loss for the age the knobs give. Write errors (transient mechanisms of
phase `programmed`) are drawn from the chip's own seed: they persist until rewritten, so every
trial of a chip at the same operating point sees the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from memsim.errors import MemsimError
from memsim.kernels import (
    FlipCounts,
    WeakCells,
    apply_persistent_,
    flip_bits_,
    flip_levels_,
    set_levels_,
    weak_cells,
)
from memsim.kernels.rng import cell_normals, stream_seed
from memsim.kernels.sampling import bernoulli_cells, threshold_candidates
from memsim.memory.image import MemoryImage
from memsim.physics.curves import evaluate
from memsim.physics.device import Device, knob_box_grid
from memsim.physics.mechanisms import (
    application_order,
    level_codes,
    level_matrix,
    primary_fraction,
    score_quantile,
)
from memsim.spec.mechanisms import (
    LevelConfusionMechanism,
    Phase,
    RetentionMechanism,
    StuckAtMechanism,
    ThresholdMechanism,
    TransientMechanism,
)

STUCK_AT_ZERO, STUCK_AT_ONE, FLIP = 0, 1, 2
_SWEEP_POINTS = 65  # per knob, for the largest fault fraction over a sweep
_ACTION_SLICE = 1 << 16


class ChipError(MemsimError):
    """A chip was used outside what it was built for."""


@dataclass(frozen=True)
class PersistentCells:
    """The cells one persistent mechanism can make faulty, sorted by critical score.

    `scores` is None for knob-independent faults (all cells always faulty).
    """

    mechanism: str
    cells: NDArray[np.int64]
    actions: NDArray[np.uint8]
    scores: NDArray[np.float64] | None
    z_max: float = math.inf

    @property
    def nbytes(self) -> int:
        return int(self.cells.nbytes + self.actions.nbytes
                   + (self.scores.nbytes if self.scores is not None else 0))

    def active(self, z: float) -> int:
        """How many cells are faulty at critical score `z` (a prefix length)."""
        if self.scores is None:
            return int(self.cells.shape[0])
        return int(np.searchsorted(self.scores, z, side="left"))


@dataclass(frozen=True)
class ReadResult:
    """A corrupted copy of an image and what happened to it."""

    image: MemoryImage
    knobs: Mapping[str, float]
    flips_zero_to_one: int
    flips_one_to_zero: int
    stuck_cells: int
    faulty_cells: int
    mechanisms: Mapping[str, FlipCounts] = field(default_factory=dict)

    @property
    def bits(self) -> int:
        return self.image.n_bits

    @property
    def bit_errors(self) -> int:
        return self.flips_zero_to_one + self.flips_one_to_zero

    def to_dict(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "knobs": dict(self.knobs),
            "flips_zero_to_one": self.flips_zero_to_one,
            "flips_one_to_zero": self.flips_one_to_zero,
            "stuck_cells": self.stuck_cells,
            "faulty_cells": self.faulty_cells,
            "mechanisms": {
                name: {"zero_to_one": c.zero_to_one, "one_to_zero": c.one_to_zero,
                       "stuck_cells": c.stuck_cells, "cells_changed": c.cells_changed}
                for name, c in self.mechanisms.items()
            },
        }


def _seed_words(entropy: list[int], n: int) -> list[int]:
    state = np.random.SeedSequence(entropy).generate_state(max(n, 1), dtype=np.uint64)
    return [int(x) for x in state[:n]]


def _sweep_grid(device: Device, sweep: Mapping[str, tuple[float, float]] | None
              ) -> list[dict[str, float]]:
    """Grid points over the knob ranges (or the narrower `sweep` ranges)."""
    knobs = device.spec.knobs
    for k in knobs:
        low, high = (sweep or {}).get(k.name, (k.low, k.high))
        if not k.low <= low <= high <= k.high:
            raise ChipError(f"sweep range of {k.name} [{low:g}, {high:g}] is not inside the "
                            f"knob's range [{k.low:g}, {k.high:g}]")
    per_knob = _SWEEP_POINTS if len(knobs) == 1 else (17 if len(knobs) <= 3 else 5)
    return list(knob_box_grid(device, per_knob, sweep))


class Chip:
    """One chip of a device holding `n_bits` of data, fixed by `seed`.

    Args:
        device: the memory technology.
        n_bits: the stored bit stream's length (an image's `n_bits`).
        seed: the chip's seed; the same seed gives the same chip.
        sweep: optional knob ranges the chip will be read at: persistent faults are drawn at
            once for the largest fault fraction over them, so reads inside never extend the
            chip (a saving in time only: the faults at a point do not depend on it). Without
            it they are drawn at the first read and extended as harsher points come.
    """

    def __init__(self, device: Device, n_bits: int, seed: int,
                 sweep: Mapping[str, tuple[float, float]] | None = None) -> None:
        if n_bits < 0:
            raise ChipError(f"n_bits must be >= 0, got {n_bits}")
        self.device = device
        self.n_bits = int(n_bits)
        self.seed = int(seed)
        spec = device.spec
        self.bits_per_cell = spec.cell.bits_per_cell
        self.n_cells = -(-self.n_bits // self.bits_per_cell)
        self.cells_per_row = max(1, spec.array.row_bits // self.bits_per_cell)
        codes = level_codes(self.bits_per_cell, spec.cell.level_coding)
        self._level_to_code = np.array(codes, dtype=np.uint8)
        self._code_to_level = np.argsort(self._level_to_code).astype(np.uint8)
        self._order = application_order(spec.faults)
        n = len(spec.faults)
        seeds = _seed_words([self.seed, 0x43484950], 4 * n)  # "CHIP"
        self._sample_seed = seeds[0:n]
        self._action_seed = seeds[n:2 * n]
        self.factor_seeds = seeds[2 * n:3 * n]
        self._program_seed = seeds[3 * n:4 * n]
        box = _sweep_grid(device, sweep) if sweep is not None and any(
            isinstance(m, ThresholdMechanism) for m in spec.faults) else []
        self.persistent: dict[int, PersistentCells] = {}
        # per mechanism with neighbours: its last prefix length and faulty cells (reads at one
        # operating point repeat over trials; a prefix is the same after the chip extends)
        self._with_neighbours: dict[int, tuple[int, NDArray[np.int64], NDArray[np.uint8]]] = {}
        self._weak: dict[int, WeakCells] = {}
        for i, mech in enumerate(spec.faults):
            if isinstance(mech, ThresholdMechanism):
                f_max = max((evaluate(mech.fault_fraction, k) for k in box), default=0.0)
                self.persistent[i] = self._sample_threshold(i, mech, _z_of(f_max, mech))
            elif isinstance(mech, StuckAtMechanism):
                self.persistent[i] = self._sample_stuck(i, mech)

    @classmethod
    def for_image(cls, device: Device, image: MemoryImage, seed: int,
                  sweep: Mapping[str, tuple[float, float]] | None = None) -> Chip:
        return cls(device, image.n_bits, seed, sweep)

    def __repr__(self) -> str:
        return (f"Chip({self.device.name!r}, n_bits={self.n_bits}, seed={self.seed}, "
                f"candidates={sum(p.cells.shape[0] for p in self.persistent.values())})")

    @property
    def nbytes(self) -> int:
        """Bytes this chip holds: its persistent-fault candidates (17 per cell: index, score,
        action), the weak-cell lists of its per-cell factors (8 per weak cell) and, with
        neighbours, the faulty cells of the last operating point read (9 per cell). A read
        needs this plus its result, one image."""
        return (sum(p.nbytes for p in self.persistent.values())
                + sum(w.nbytes for w in self._weak.values())
                + sum(c.nbytes + a.nbytes for _, c, a in self._with_neighbours.values()))

    # -- persistent faults ------------------------------------------------------------------
    def _actions(self, i: int, n: int, sa0: float, sa1: float, flip: float) -> NDArray[np.uint8]:
        """What each candidate does, in score order: exactly `Generator.choice(..., p=)`'s
        draws (one uniform each, against the normalised cumulative p), taken in slices so
        that its float and int64 temporaries do not reach 16 bytes per candidate."""
        rng = np.random.Generator(np.random.PCG64(self._action_seed[i]))
        total = sa0 + sa1 + flip
        cdf = np.array([sa0 / total, sa1 / total, flip / total]).cumsum()
        cdf /= cdf[-1]
        kinds = np.array([STUCK_AT_ZERO, STUCK_AT_ONE, FLIP], dtype=np.uint8)
        out = np.empty(n, np.uint8)
        for start in range(0, n, _ACTION_SLICE):
            uniforms = rng.random(min(_ACTION_SLICE, n - start))
            out[start:start + uniforms.shape[0]] = kinds[cdf.searchsorted(uniforms, "right")]
        return out

    def _sample_threshold(self, i: int, mech: ThresholdMechanism,
                          z_max: float) -> PersistentCells:
        v = mech.variability
        cells, scores = threshold_candidates(
            self.n_cells, self.cells_per_row, self.device.spec.array.rows_per_array,
            (v.die.value, v.array.value, v.row.value, v.cell.value), z_max,
            self._sample_seed[i], _weak(mech))
        f = mech.failure
        actions = self._actions(i, cells.shape[0], f.stuck_at_zero.value, f.stuck_at_one.value,
                                f.flip.value)
        return PersistentCells(mech.name, cells, actions, scores, z_max)

    def _sample_stuck(self, i: int, mech: StuckAtMechanism) -> PersistentCells:
        sa0, sa1 = mech.stuck_at_zero.value, mech.stuck_at_one.value
        cells = bernoulli_cells(self.n_cells, sa0 + sa1, self._sample_seed[i])
        actions = (self._actions(i, cells.shape[0], sa0, sa1, 0.0) if sa0 + sa1 > 0
                   else np.empty(0, np.uint8))
        return PersistentCells(mech.name, cells, actions, None)

    def faulty_cells(self, **knobs: float) -> dict[str, tuple[NDArray[np.int64],
                                                             NDArray[np.uint8]]]:
        """Per persistent mechanism: the faulty cells at these knobs and their actions."""
        values = self.device.resolve_knobs(knobs)
        out = {}
        for i in list(self.persistent):
            k = self._active(i, values)  # may extend the chip: read its cells after
            cells = self.persistent[i]
            out[cells.mechanism] = self._faulty(i, k)
        return out

    def _faulty(self, i: int, k: int) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        """The faulty cells of mechanism i with `k` active (a prefix in score order) and their
        actions: the prefix and, for a mechanism with neighbours, the cells they take along
        (each once; a cell faulty by itself keeps its own action)."""
        cells = self.persistent[i]
        idx, act = cells.cells[:k], cells.actions[:k]
        mech = self.device.spec.faults[i]
        if not isinstance(mech, ThresholdMechanism) or not mech.neighbours or k == 0:
            return idx, act
        last = self._with_neighbours.get(i)
        if last is not None and last[0] == k:
            return last[1], last[2]
        parts, actions = [idx], [act]
        for j, n in enumerate(mech.neighbours):
            # decided per (chip, neighbour, cell): the same at every read and knob value
            seed = np.uint64(stream_seed(np.uint64(self._sample_seed[i]), 16 + j))
            taken = cell_normals(seed, idx) < ndtri(n.probability.value)
            partner = idx[taken] + n.offset
            inside = (partner >= 0) & (partner < self.n_cells)
            parts.append(partner[inside])
            actions.append(act[taken][inside])
        combined = np.concatenate(parts)
        _, first = np.unique(combined, return_index=True)  # primaries come first
        faulty, faulty_actions = combined[first], np.concatenate(actions)[first]
        faulty.setflags(write=False)  # kept for the next read: callers must not change them
        faulty_actions.setflags(write=False)
        self._with_neighbours[i] = (k, faulty, faulty_actions)
        return faulty, faulty_actions

    def _active(self, i: int, values: Mapping[str, float]) -> int:
        cells = self.persistent[i]
        if cells.scores is None:
            return cells.active(0.0)
        mech = self.device.spec.faults[i]
        assert isinstance(mech, ThresholdMechanism)
        f = evaluate(mech.fault_fraction, values)
        z = _z_of(f, mech)
        if z > cells.z_max:
            # a harsher point than any so far: continue the draws past it, with headroom so
            # that a sweep stepping harsher extends a few times, not at every step
            cells = self.persistent[i] = self._sample_threshold(
                i, mech, _z_of(min(2.0 * f, 0.5 * (1.0 + f)), mech))
        return cells.active(z)

    # -- reading ----------------------------------------------------------------------------
    def read(self, image: MemoryImage, knobs: Mapping[str, float] | None = None,
             seed: int = 0) -> ReadResult:
        """One trial: a corrupted copy of `image` read at `knobs` (others nominal)."""
        if image.n_bits != self.n_bits:
            raise ChipError(f"this chip holds {self.n_bits} bits, the image has {image.n_bits}")
        values = self.device.resolve_knobs(knobs or {})
        spec = self.device.spec
        b = self.bits_per_cell
        # a last multi-level cell may run past the image's words
        n_words = -(-self.n_cells * b // 64) if self.n_bits else 0
        n_total = max(n_words, image.words.shape[0])
        first = spec.faults[self._order[0]] if self._order else None
        # a first flip or level pass copies the image itself, chunk by chunk, and changes each
        # chunk while it is in cache: faster than np.copyto and then flipping in place at every
        # BER measured (benchmarks/bench_kernels.py, flip_bits against flip_bits_copy_first)
        fused = (isinstance(first, TransientMechanism | RetentionMechanism
                            | LevelConfusionMechanism)
                 and n_total == image.words.shape[0])
        words = np.empty(n_total, dtype=np.uint64)
        if not fused:
            np.copyto(words[: image.words.shape[0]], image.words)
            words[image.words.shape[0]:] = 0
        trial_seeds = _seed_words([self.seed, int(seed), 0x54524941], len(spec.faults))  # "TRIA"
        counts: dict[str, FlipCounts] = {}
        stuck = faulty = 0
        for k, i in enumerate(self._order):
            mech = spec.faults[i]
            if isinstance(mech, TransientMechanism | RetentionMechanism):
                counts[mech.name] = self._flip(i, mech, words, values, trial_seeds[i],
                                               image.words if fused and k == 0 else None)
            elif isinstance(mech, LevelConfusionMechanism):
                seed_i = self._program_seed[i] if mech.phase is Phase.PROGRAMMED else trial_seeds[i]
                matrix = level_matrix(mech, values, spec.cell)
                counts[mech.name] = flip_levels_(
                    words, self.n_cells, b, self._level_to_code, self._code_to_level, matrix,
                    seed_i, source=image.words if fused and k == 0 else None)
            else:
                idx, act = self._faulty(i, self._active(i, values))
                c = self._apply_persistent(words, idx, act)
                counts[mech.name] = c
                stuck += c.stuck_cells
                faulty += int(idx.shape[0])
        _clear_padding(words, self.n_bits)
        # the read's own words, trimmed when a last multi-level cell ran past the image
        kept = words if n_total == image.words.shape[0] else words[: image.words.shape[0]].copy()
        corrupted = image.with_words(kept)
        up, down = image.diff(corrupted)
        return ReadResult(corrupted, values, up, down, stuck, faulty, counts)

    def _flip(self, i: int, mech: TransientMechanism | RetentionMechanism,
              words: NDArray[np.uint64], values: Mapping[str, float], trial_seed: int,
              source: NDArray[np.uint64] | None = None) -> FlipCounts:
        p01 = evaluate(mech.p_zero_to_one, values)
        p10 = evaluate(mech.p_one_to_zero, values)
        seed = self._program_seed[i] if mech.phase is Phase.PROGRAMMED else trial_seed
        sigma = 0.0
        weak: WeakCells | None = None
        if isinstance(mech, TransientMechanism) and mech.cell_factor is not None:
            sigma = mech.cell_factor.sigma.value
            if sigma > 0.0:
                # found once per chip: later reads propose far fewer candidates
                weak = self._weak.get(i)
                if weak is None:
                    weak = self._weak[i] = weak_cells(self.n_bits, sigma, self.factor_seeds[i])
        return flip_bits_(words, self.n_bits, p01, p10, seed, factor_sigma=sigma,
                          factor_seed=self.factor_seeds[i], source=source, weak=weak)

    def _apply_persistent(self, words: NDArray[np.uint64], idx: NDArray[np.int64],
                          act: NDArray[np.uint8]) -> FlipCounts:
        b = self.bits_per_cell
        # a mechanism's cells are distinct, and kept in score order (a prefix is the faulty
        # set): applied as listed, not sorted by position at every read
        if b == 1:
            return apply_persistent_(words, idx, act, distinct=True)
        stuck_mask = act != FLIP
        levels = np.where(act[stuck_mask] == STUCK_AT_ZERO, 0,
                          (1 << b) - 1).astype(np.uint8)
        c = set_levels_(words, b, idx[stuck_mask], levels, self._level_to_code, distinct=True)
        flip_cells = idx[~stuck_mask]
        if flip_cells.size:
            bits = (flip_cells[:, None] * b + np.arange(b)[None, :]).ravel()
            c2 = apply_persistent_(words, bits, np.full(bits.shape[0], FLIP, np.uint8),
                                   distinct=True)
            c = FlipCounts(c.zero_to_one + c2.zero_to_one, c.one_to_zero + c2.one_to_zero,
                           c.stuck_cells, c.cells_changed + int(flip_cells.size))
        return c


def _weak(mech: ThresholdMechanism) -> tuple[float, float]:
    w = mech.variability.weak_arrays
    return w.fraction.value, w.shift.value


def _z_of(fault_fraction: float, mech: ThresholdMechanism) -> float:
    """The critical score below which cells fail by themselves when that fraction of the
    population's cells is faulty (neighbours taken along included)."""
    primary = primary_fraction(fault_fraction,
                               tuple(n.probability.value for n in mech.neighbours))
    return score_quantile(primary, _weak(mech))


def _clear_padding(words: NDArray[np.uint64], n_bits: int) -> None:
    full, rest = divmod(n_bits, 64)
    if rest:
        words[full] &= np.uint64((1 << rest) - 1)
        full += 1
    words[full:] = 0


def _fmt(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in values.items())


