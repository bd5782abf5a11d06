"""Chip-average figures of each fault mechanism at an operating point.

Every mechanism becomes a row-stochastic level-transition matrix `M[stored, read]` over the
cell's 2^bits_per_cell levels, averaged over chips and cells; a device composes its
mechanisms' matrices in the order of the cell's life (see `memsim.spec.mechanisms`). Bit error
rates follow from the matrix and the level coding for uniformly random data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr, ndtri

from memsim.physics.curves import evaluate
from memsim.spec.device import CellSpec, LevelCoding
from memsim.spec.mechanisms import (
    PHASE_ORDER,
    LevelConfusionMechanism,
    Mechanism,
    RetentionMechanism,
    StuckAtMechanism,
    ThresholdMechanism,
    TransientMechanism,
)


class MechanismRangeError(ValueError):
    """A mechanism's figures are not probabilities at some operating point."""


@cache
def level_codes(bits_per_cell: int, coding: LevelCoding) -> tuple[int, ...]:
    """The bit code stored for each level (Gray: neighbouring levels differ in one bit)."""
    levels = range(2**bits_per_cell)
    if coding is LevelCoding.GRAY:
        return tuple(level ^ (level >> 1) for level in levels)
    return tuple(levels)


def _bit(code: int, j: int) -> int:
    return (code >> j) & 1


def expected_factor_rate(p: float, sigma: float) -> float:
    """`E[min(1, p·f)]` for a lognormal factor f with mean 1 and log-sd `sigma`."""
    if p <= 0.0 or sigma <= 0.0:
        return min(max(p, 0.0), 1.0)
    c = 1.0 / p  # f above c saturates
    half_var = sigma * sigma / 2.0  # inf, not OverflowError, for a huge sigma
    below = float(ndtr((math.log(c) - half_var) / sigma))  # E[f; f < c]
    above = 1.0 - float(ndtr((math.log(c) + half_var) / sigma))  # P(f >= c)
    return p * below + above


def bit_flip_matrix(p01: float, p10: float, cell: CellSpec) -> np.ndarray:
    """Level matrix of independent bit flips on each bit of a cell."""
    codes = level_codes(cell.bits_per_cell, cell.level_coding)
    channel = ((1.0 - p01, p01), (p10, 1.0 - p10))
    n = cell.levels
    m = np.ones((n, n))
    for i, ci in enumerate(codes):
        for k, ck in enumerate(codes):
            for j in range(cell.bits_per_cell):
                m[i, k] *= channel[_bit(ci, j)][_bit(ck, j)]
    return m


def inversion_level(level: int, cell: CellSpec) -> int:
    """The level whose code is the bitwise complement of `level`'s code."""
    codes = level_codes(cell.bits_per_cell, cell.level_coding)
    mask = cell.levels - 1
    return codes.index(codes[level] ^ mask)


def stuck_matrix(fraction: float, sa0: float, sa1: float, flip: float,
                 cell: CellSpec) -> np.ndarray:
    """`fraction` of cells faulty; a faulty cell reads the lowest level (sa0), the highest
    (sa1) or the inverse of its code (flip)."""
    n = cell.levels
    m = (1.0 - fraction) * np.eye(n)
    m[:, 0] += fraction * sa0
    m[:, n - 1] += fraction * sa1
    for i in range(n):
        m[i, inversion_level(i, cell)] += fraction * flip
    return m


def bit_error_rates(m: np.ndarray, cell: CellSpec) -> tuple[float, float]:
    """(p_zero_to_one, p_one_to_zero) per stored bit for uniformly random levels."""
    codes = level_codes(cell.bits_per_cell, cell.level_coding)
    b, n = cell.bits_per_cell, cell.levels
    up = down = 0.0
    for i, ci in enumerate(codes):
        for k, ck in enumerate(codes):
            if i == k or m[i, k] == 0.0:
                continue
            for j in range(b):
                s, r = _bit(ci, j), _bit(ck, j)
                if s == 0 and r == 1:
                    up += m[i, k]
                elif s == 1 and r == 0:
                    down += m[i, k]
    zeros = n * b / 2.0  # each bit position holds 0 in half of the levels
    return float(up / zeros), float(down / zeros)


def persistent_fraction(mech: Mechanism, knobs: Mapping[str, float]) -> float:
    """Fraction of cells with a persistent fault from this mechanism (0 for flips)."""
    if isinstance(mech, ThresholdMechanism):
        return evaluate(mech.fault_fraction, knobs)
    if isinstance(mech, StuckAtMechanism):
        return mech.stuck_at_zero.value + mech.stuck_at_one.value
    return 0.0


def transient_rates(mech: TransientMechanism | RetentionMechanism,
                    knobs: Mapping[str, float]) -> tuple[float, float]:
    """Chip-average per-bit rates, including the per-cell factor's clipping."""
    p01 = evaluate(mech.p_zero_to_one, knobs)
    p10 = evaluate(mech.p_one_to_zero, knobs)
    if isinstance(mech, TransientMechanism) and mech.cell_factor is not None:
        sigma = mech.cell_factor.sigma.value
        p01, p10 = expected_factor_rate(p01, sigma), expected_factor_rate(p10, sigma)
    return p01, p10


def level_matrix(mech: Mechanism, knobs: Mapping[str, float], cell: CellSpec) -> np.ndarray:
    """The chip-average level-transition matrix of one mechanism."""
    if isinstance(mech, TransientMechanism | RetentionMechanism):
        p01, p10 = transient_rates(mech, knobs)
        return bit_flip_matrix(p01, p10, cell)
    if isinstance(mech, ThresholdMechanism):
        f = mech.failure
        return stuck_matrix(evaluate(mech.fault_fraction, knobs), f.stuck_at_zero.value,
                            f.stuck_at_one.value, f.flip.value, cell)
    if isinstance(mech, StuckAtMechanism):
        sa0, sa1 = mech.stuck_at_zero.value, mech.stuck_at_one.value
        total = sa0 + sa1
        if total == 0.0:
            return np.eye(cell.levels)
        return stuck_matrix(total, sa0 / total, sa1 / total, 0.0, cell)
    if isinstance(mech, LevelConfusionMechanism):
        n = cell.levels
        m = np.zeros((n, n))
        for t in mech.transitions:
            m[t.from_level, t.to_level] += evaluate(t.probability, knobs)
        off = m.sum(axis=1)
        for i in range(n):
            if off[i] > 1.0 + 1e-12:
                raise MechanismRangeError(
                    f"transition probabilities out of level {i} sum to {off[i]:.6g} > 1")
            m[i, i] = max(0.0, 1.0 - off[i])
        return m
    raise TypeError(f"unknown mechanism {type(mech).__name__}")


def application_order(faults: tuple[Mechanism, ...]) -> list[int]:
    """Indices of mechanisms in the order they act: by phase, flips before overrides."""

    def key(i: int) -> tuple[int, int, int]:
        m = faults[i]
        override = isinstance(m, ThresholdMechanism | StuckAtMechanism)
        return (PHASE_ORDER[m.phase], int(override), i)

    return sorted(range(len(faults)), key=key)


def score_quantile(fault_fraction: float, weak: tuple[float, float] = (0.0, 0.0)) -> float:
    """The score z below which a `fault_fraction` of the population's cells lie: Φ⁻¹ without
    weak arrays, else the root of `(1 − p)·Φ(z) + p·Φ(z + s) = fault_fraction` for
    `weak = (p, s)` (solved in log space: small fractions keep their relative precision)."""
    p, shift = weak
    if fault_fraction <= 0.0:
        return -math.inf
    if fault_fraction >= 1.0:
        return math.inf
    z_plain = float(ndtri(fault_fraction))
    if p <= 0.0 or shift <= 0.0:
        return z_plain
    target = math.log(fault_fraction)

    def excess(z: float) -> float:
        a, b = float(log_ndtr(z)), float(log_ndtr(z + shift))
        # log((1 − p)·Φ(z) + p·Φ(z + s)) without underflow
        top = max(a, b)
        mixed = (1.0 - p) * math.exp(a - top) + p * math.exp(b - top)
        return top + math.log(mixed) - target

    # F(z) >= Φ(z) and F(z) <= Φ(z + s): the root lies in [Φ⁻¹(f) − s, Φ⁻¹(f)]
    low, high = z_plain - shift, z_plain
    if excess(high) <= 0.0:
        return high
    if excess(low) >= 0.0:
        return low
    return float(brentq(excess, low, high, xtol=1e-13, rtol=1e-15, maxiter=200))


def primary_fraction(fault_fraction: float, neighbour_probabilities: tuple[float, ...]) -> float:
    """The fraction of cells that fail by their own score when each faulty cell also takes its
    neighbours along (probabilities pₖ), such that all faulty cells make `fault_fraction`:
    the root of `1 − (1 − f₀)·Πₖ(1 − pₖ·f₀) = fault_fraction` (primaries independent)."""
    if not neighbour_probabilities or fault_fraction <= 0.0:
        return max(fault_fraction, 0.0)
    if fault_fraction >= 1.0:
        return 1.0

    def total(f0: float) -> float:
        keep = 1.0 - f0
        for p in neighbour_probabilities:
            keep *= 1.0 - p * f0
        return 1.0 - keep - fault_fraction

    # total(f) >= 0: the primaries alone already reach f when f0 = f
    return float(brentq(total, 0.0, fault_fraction, xtol=1e-300, rtol=1e-14, maxiter=400))
