"""Fitting a threshold mechanism to measured fault maps: the fault-fraction points, the
stuck-at split, the die, array and row variance shares and weak arrays, with their
uncertainties, and how well the fitted model reproduces the maps' per-array and per-row
statistics.

The model is the threshold mechanism's (`memsim.spec.mechanisms.Variability`): a cell's score
is `u = √die·d + √array·a + √row·r + √cell·c − shift·w`, and at knob value i the cell is faulty
where `u < zᵢ`. The data are the numbers of faulty cells per array, per chip and knob value,
and optionally per row of consecutive cells within each array (`ArrayCounts`); without rows,
row variance counts as cell variance.

The fit is by moments, on the figures a reader of a fault map looks at: at each knob value the
mean fraction of faulty cells (matched exactly by zᵢ), the fraction of fault-free arrays and the
index of dispersion of the per-array counts within a chip, the spread of the chips' fractions
(the die share) and, with rows, the fraction of fault-free rows and the dispersion of the
per-row counts within their array (the row share). The model's figures are integrals over the
die offset (Gauss-Hermite) and the array offset (a fine grid: a faulty-cell count is a sharp
function of it); the row offset's integrals are tabulated once per row length. A fit takes
seconds and its uncertainties come from refitting resampled chips (or resampled arrays, with one
or two chips).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit, log_ndtr, logsumexp, ndtr, ndtri
from scipy.stats import betabinom, binom

from memsim.errors import MemsimError
from memsim.physics.mechanisms import score_quantile
from memsim.spec.device import DeviceSpec
from memsim.spec.mechanisms import ThresholdMechanism

__all__ = [
    "ArrayCounts",
    "FitError",
    "GoodnessRow",
    "NeighbourEstimate",
    "ThresholdFit",
    "base_mechanism",
    "find_neighbours",
    "fit_threshold",
    "fitted_calibration",
    "fitted_document",
    "fitted_mechanism",
]

class FitError(MemsimError):
    """Maps that cannot be fitted (no faults, one knob value for a curve, shapes that
    disagree)."""


@dataclass(frozen=True)
class ArrayCounts:
    """Faulty cells per array of measured chips: `faulty[c, i, a]` of chip c at
    `knob_values[i]` in array a of `cells_per_array` cells; `stuck_at_zero[c, i]` and
    `stuck_at_one[c, i]` the chip's totals by failure direction; optionally `row_faulty[c, i,
    a, r]`, the faulty cells of row r (`cells_per_row` consecutive cells) of that array."""

    knob: str
    knob_values: NDArray[np.float64]
    faulty: NDArray[np.int64]
    cells_per_array: int
    stuck_at_zero: NDArray[np.int64]
    stuck_at_one: NDArray[np.int64]
    total_fraction: NDArray[np.float64] | None = None
    """With neighbours thinned out of `faulty` (cells faulty only because a neighbour is):
    the fraction of all faulty cells at each knob value, the curve's; None: `faulty`'s."""
    row_faulty: NDArray[np.int64] | None = None
    cells_per_row: int | None = None

    def __post_init__(self) -> None:
        if self.faulty.ndim != 3 or self.faulty.shape[1] != self.knob_values.shape[0]:
            raise FitError(f"faulty counts must have shape (chips, knob values, arrays), got "
                           f"{self.faulty.shape} for {self.knob_values.shape[0]} knob values")
        if self.cells_per_array < 1 or (self.faulty > self.cells_per_array).any() \
                or (self.faulty < 0).any():
            raise FitError("faulty counts must lie between 0 and the cells per array")
        if (self.row_faulty is None) != (self.cells_per_row is None):
            raise FitError("row counts and the cells per row come together")
        if self.row_faulty is not None and self.cells_per_row is not None:
            rows = self.cells_per_array // self.cells_per_row
            if self.row_faulty.shape != (*self.faulty.shape, rows) \
                    or rows * self.cells_per_row != self.cells_per_array \
                    or not np.array_equal(self.row_faulty.sum(axis=3), self.faulty):
                raise FitError(f"row counts must have shape (chips, knob values, arrays, "
                               f"{rows}) and sum to the array counts")

    @classmethod
    def from_maps(cls, knob: str, knob_values: NDArray[np.float64],
                  stuck_at_zero: NDArray[np.bool_], stuck_at_one: NDArray[np.bool_],
                  cells_per_array: int, neighbour_offsets: Sequence[int] = (),
                  cells_per_row: int | None = None) -> ArrayCounts:
        """From stuck-at maps of shape (chips, knob values, cells); cells past the last
        whole array are left out. With `neighbour_offsets` (`find_neighbours`), a faulty cell
        at such an offset after another faulty one is taken for its neighbour and left out of
        the counts (the shares describe the cells that fail by themselves), and the cells left
        out by chance are put back per array in expectation (`_chance_restored`). With
        `cells_per_row` (a divisor of `cells_per_array`), the counts per row too."""
        if stuck_at_zero.shape != stuck_at_one.shape or stuck_at_zero.ndim != 3:
            raise FitError("maps must both have shape (chips, knob values, cells)")
        chips, points, cells = stuck_at_zero.shape
        arrays = cells // cells_per_array
        if arrays < 2:
            raise FitError(f"{cells} cells make fewer than two arrays of {cells_per_array}")
        if cells_per_row is not None and (cells_per_row < 1 or cells_per_array % cells_per_row
                                          or cells_per_array // cells_per_row < 2):
            raise FitError(f"rows of {cells_per_row} cells must divide arrays of "
                           f"{cells_per_array} cells into at least two")
        faulty = (stuck_at_zero | stuck_at_one)[:, :, :arrays * cells_per_array]
        total = None
        every = faulty
        if neighbour_offsets:
            total = faulty.mean(axis=(0, 2))
            primary = faulty.copy()
            for offset in sorted(neighbour_offsets):
                taken = np.zeros_like(faulty)
                taken[:, :, offset:] = faulty[:, :, :-offset]
                primary &= ~taken
            faulty = primary
        per_row = cells_per_row or cells_per_array
        rows = faulty.reshape(chips, points, arrays, cells_per_array // per_row,
                              per_row).sum(axis=4, dtype=np.int64)
        if neighbour_offsets:
            rows = _chance_restored(rows, every.reshape(chips, points, arrays, cells_per_array)
                                    .sum(axis=3, dtype=np.int64), cells_per_array,
                                    len(neighbour_offsets))
        counts = rows.sum(axis=3)
        if cells_per_row is None:
            rows = None
        return cls(knob, np.asarray(knob_values, np.float64), counts.astype(np.int64),
                   cells_per_array, stuck_at_zero.sum(axis=2).astype(np.int64),
                   stuck_at_one.sum(axis=2).astype(np.int64), total, rows, cells_per_row)

    def resampled(self, rng: np.random.Generator) -> ArrayCounts:
        """Chips drawn with replacement (arrays, with one or two chips), for the standard
        errors."""
        if self.chips > 2:
            pick: tuple[Any, ...] = (rng.integers(0, self.chips, self.chips),)
        else:
            arrays = self.faulty.shape[2]
            pick = (slice(None), slice(None), rng.integers(0, arrays, arrays))
        return ArrayCounts(self.knob, self.knob_values, self.faulty[pick], self.cells_per_array,
                           self.stuck_at_zero, self.stuck_at_one, self.total_fraction,
                           None if self.row_faulty is None else self.row_faulty[pick],
                           self.cells_per_row)

    @property
    def chips(self) -> int:
        return int(self.faulty.shape[0])


def _chance_restored(rows: NDArray[np.int64], every: NDArray[np.int64], cells_per_array: int,
                     offsets: int) -> NDArray[np.int64]:
    """Row counts of the cells failing by themselves, with those left out by chance put back:
    thinning drops a cell whenever the cell an offset before it is faulty, which in an array
    with a faulty fraction r happens to a cell failing by itself with probability about r per
    offset (most of the cells of a dense weak array), so each array's rows are scaled by
    1/(1 − r)^offsets, rounded, and kept between the thinned count and all its faulty cells."""
    r = np.minimum(every / cells_per_array, 1.0 - 1.0 / cells_per_array)
    scale = (1.0 - r) ** -offsets
    restored = np.rint(rows * scale[..., None]).astype(np.int64)
    room = every - restored.sum(axis=3)  # never more than the array's faulty cells
    over = room < 0
    if over.any():
        restored[over] = rows[over]
    return restored


@dataclass(frozen=True)
class GoodnessRow:
    """Measured against fitted, at one knob value, over chips (the mean of each chip's
    figure over its arrays)."""

    knob_value: float
    faulty_fraction: tuple[float, float]
    fault_free_arrays: tuple[float, float]
    dispersion: tuple[float, float]
    """Index of dispersion (variance over mean) of the per-array counts within a chip."""
    max_per_array: tuple[float, float]
    fault_free_rows: tuple[float, float] | None = None
    """With rows: the fraction of rows without a faulty cell."""
    row_dispersion: tuple[float, float] | None = None
    """With rows: the variance of the per-row counts within their array over their mean,
    pooled over arrays and chips (about 1 without a row share)."""


@dataclass(frozen=True)
class ThresholdFit:
    """Fitted parameters as (value, standard error; NaN where not estimable) and goodness of
    fit."""

    knob: str
    knob_values: tuple[float, ...]
    fault_fraction: tuple[float, ...]
    """Population fraction of faulty cells at each knob value."""
    fault_fraction_se: tuple[float, ...]
    die: tuple[float, float]
    array: tuple[float, float]
    cell: float
    weak_fraction: tuple[float, float]
    weak_shift: tuple[float, float]
    stuck_at_zero_share: tuple[float, float]
    probit_mean: tuple[float, float]
    probit_sigma: tuple[float, float]
    probit_max_ratio: float
    """The largest factor between a fitted point and the probit through them (1 = exact)."""
    goodness: tuple[GoodnessRow, ...]
    row: tuple[float, float] = (0.0, math.nan)
    """The row share; (0, NaN) when the maps were counted per array only."""
    cells_per_row: int | None = None


_DIE_NODES = 24
_ARRAY_GRID = np.linspace(-7.0, 7.0, 281)
_ARRAY_WEIGHTS = np.exp(-0.5 * _ARRAY_GRID**2)
_ARRAY_WEIGHTS /= _ARRAY_WEIGHTS.sum()

# The row offset's integrals, tabulated against x = s/√(row + cell) (s: a row's threshold
# before its own offset) and rho = row/(row + cell); a share of the rest above _MAX_RHO is
# clamped to it (a row would then be nearly all faulty or all good)
_ROW_GRID = np.linspace(-7.0, 7.0, 201)
_ROW_LOG_WEIGHTS = -0.5 * _ROW_GRID**2 - float(logsumexp(-0.5 * _ROW_GRID**2))
_MAX_RHO = 0.95
_RHO = np.linspace(0.0, _MAX_RHO, 39)
_X = np.linspace(-12.0, 12.0, 2401)


@functools.lru_cache(maxsize=4)
def _row_tables(cells_per_row: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`E[q²]` and `log E[(1 − q)^cells_per_row]` over the row offset r, with
    `q = Φ((x − √rho·r)/√(1 − rho))` a cell's fault probability in that row, on (_RHO, _X)."""
    e2 = np.empty((_RHO.size, _X.size))
    log_free = np.empty_like(e2)
    weights = np.exp(_ROW_LOG_WEIGHTS)
    for j, rho in enumerate(_RHO):
        u = (_X[:, None] - math.sqrt(rho) * _ROW_GRID[None, :]) / math.sqrt(1.0 - rho)
        e2[j] = ndtr(u) ** 2 @ weights
        log_free[j] = logsumexp(cells_per_row * log_ndtr(-u) + _ROW_LOG_WEIGHTS, axis=1)
    return e2, log_free


@dataclass(frozen=True)
class _Figures:
    """Per knob value (arrays over knob values): mean faulty fraction, fault-free arrays,
    within-chip dispersion, between-chip variance of the chip fractions and, with rows,
    fault-free rows and the within-array dispersion of the row counts (else NaN)."""

    fraction: NDArray[np.float64]
    free: NDArray[np.float64]
    dispersion: NDArray[np.float64]
    chip_variance: NDArray[np.float64]
    row_free: NDArray[np.float64]
    row_dispersion: NDArray[np.float64]


@dataclass(frozen=True)
class _Params:
    die: float
    array: float
    cell: float
    p: float
    shift: float
    row: float = 0.0


@dataclass(frozen=True)
class _Shape:
    """What the model's figures are of: arrays of `cells` cells, in rows of `row_cells`
    (None: not counted per row)."""

    cells: int
    row_cells: int | None = None


@dataclass(frozen=True)
class _ModelFigures:
    fraction: float
    free: float
    dispersion: float
    chip_variance: float
    row_free: float = math.nan
    row_dispersion: float = math.nan


def _measured(counts: ArrayCounts, point: slice | None = None) -> _Figures:
    faulty, rows = counts.faulty, counts.row_faulty
    if point is not None:
        faulty = faulty[:, point]
        rows = None if rows is None else rows[:, point]
    n = counts.cells_per_array
    k = faulty.astype(np.float64)  # (chips, points, arrays)
    mean = k.mean(axis=2)
    var = k.var(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.where(mean > 0, var / mean, np.nan)
    chip_fraction = mean / n
    row_free = row_dispersion = np.full(k.shape[1], np.nan)
    if rows is not None:
        r = rows.astype(np.float64)  # (chips, points, arrays, rows)
        row_free = (r == 0).mean(axis=(0, 2, 3))
        within = r.var(axis=3, ddof=1).sum(axis=(0, 2))
        total = r.mean(axis=3).sum(axis=(0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            row_dispersion = np.where(total > 0, within / total, np.nan)
    return _Figures(chip_fraction.mean(axis=0), (k == 0).mean(axis=(0, 2)),
                    np.nanmean(dispersion, axis=0) if np.isfinite(dispersion).any()
                    else np.full(k.shape[1], np.nan),
                    chip_fraction.var(axis=0, ddof=1) if k.shape[0] > 1
                    else np.full(k.shape[1], np.nan), row_free, row_dispersion)


def _thresholds(t: NDArray[np.float64], params: _Params
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A cell's threshold before its row and cell offsets, (die node) × (array grid and weak
    flag), given `t = z − √die·d` per die node, and the weights of the array columns."""
    ss, ws = [], []
    for offset, weight in ((0.0, 1.0 - params.p), (params.shift, params.p)):
        if weight > 0:
            ss.append(t[:, None] - math.sqrt(params.array) * _ARRAY_GRID[None, :] + offset)
            ws.append(weight * _ARRAY_WEIGHTS)
    return np.concatenate(ss, axis=1), np.concatenate(ws)


_DIE_X, _DIE_W = np.polynomial.hermite_e.hermegauss(_DIE_NODES)
_DIE_W = _DIE_W / _DIE_W.sum()


def _per_array(z: float, params: _Params, shape: _Shape) -> tuple[
        NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None,
        NDArray[np.float64] | None]:
    """Per die node and array column: a cell's fault probability q, the variance of a row's
    count within its array and the log probability that a row is fault-free (None without
    rows), and the columns' weights."""
    s, weights = _thresholds(z - math.sqrt(params.die) * _DIE_X, params)
    if shape.row_cells is None:
        return np.minimum(ndtr(s / math.sqrt(max(params.cell, 1e-12))), 1.0 - 1e-16), \
            weights, None, None
    spread = math.sqrt(max(params.row + params.cell, 1e-12))
    x = np.clip(s / spread, _X[0], _X[-1])
    q = np.minimum(ndtr(x), 1.0 - 1e-16)
    rho = min(params.row / spread**2, _MAX_RHO)
    e2_table, free_table = _row_tables(shape.row_cells)
    j = min(int(rho / _RHO[1]), _RHO.size - 2)
    h = (rho - _RHO[j]) / _RHO[1]
    e2 = np.interp(x, _X, (1 - h) * e2_table[j] + h * e2_table[j + 1])
    log_free = np.interp(x, _X, (1 - h) * free_table[j] + h * free_table[j + 1])
    m = shape.row_cells
    row_var = np.maximum(m * (q - e2) + m * m * (e2 - q * q), 0.0)
    return q, weights, row_var, log_free


def _model(z: float, params: _Params, shape: _Shape) -> _ModelFigures:
    """The figures `_measured` takes of maps, for the model at threshold z."""
    n = shape.cells
    q, wq, row_var, log_row_free = _per_array(z, params, shape)
    fractions = q @ wq
    if row_var is None or log_row_free is None or shape.row_cells is None:
        free = np.exp(n * np.log1p(-q)) @ wq
        within = n * q * (1 - q)
    else:
        rows = n // shape.row_cells
        free = np.exp(rows * log_row_free) @ wq
        within = rows * row_var  # the rows of an array are independent given its offset
    var = (within + (n * q) ** 2) @ wq - (n * fractions) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.where(fractions > 0, var / (n * fractions), 0.0)
    fraction = float(_DIE_W @ fractions)
    out = _ModelFigures(fraction, float(_DIE_W @ free), float(_DIE_W @ dispersion),
                        float(_DIE_W @ (fractions - fraction) ** 2))
    if row_var is None or log_row_free is None or shape.row_cells is None:
        return out
    mean_row = shape.row_cells * fraction
    return _ModelFigures(out.fraction, out.free, out.dispersion, out.chip_variance,
                         float(_DIE_W @ (np.exp(log_row_free) @ wq)),
                         float(_DIE_W @ (row_var @ wq)) / mean_row if mean_row > 0 else 0.0)


def _z_for(fraction: float, params: _Params) -> float:
    """The threshold whose population fraction is `fraction` (it does not depend on the
    shares, only on weak arrays)."""
    return score_quantile(fraction, (params.p, params.shift))


def _params(theta: NDArray[np.float64], weak: bool, rows: bool) -> _Params:
    """Shares from the log-shares theta[:3] (die, array, cell) and theta[5] (row)."""
    logs = np.append(theta[:3], theta[5]) if rows else theta[:3]
    shares = np.exp(logs - logs.max())
    shares /= shares.sum()
    p, shift = (float(expit(theta[3])), float(np.exp(theta[4]))) if weak else (0.0, 0.0)
    return _Params(float(shares[0]), float(shares[1]), float(shares[2]), p, shift,
                   float(shares[3]) if rows else 0.0)


def _log_ratio(model: float, measured: float, floor: float = 1e-12) -> float:
    return math.log(max(model, floor) / measured)


def _residuals(params: _Params, data: _Figures, shape: _Shape) -> list[float]:
    out = []
    for i, f in enumerate(data.fraction):
        if not 0 < f < 1:
            continue
        model = _model(_z_for(float(f), params), params, shape)
        if 0.01 < data.free[i] < 0.99:
            out.append(_log_ratio(model.free, data.free[i]))
        if math.isfinite(data.dispersion[i]) and data.dispersion[i] > 0:
            out.append(_log_ratio(model.dispersion, data.dispersion[i]))
        if math.isfinite(data.chip_variance[i]) and data.chip_variance[i] > 0:
            # the die share: chip fractions are noisy with few chips, so a softer pull
            out.append(0.5 * _log_ratio(model.chip_variance, data.chip_variance[i], 1e-30))
        if 0.01 < data.row_free[i] < 0.99:
            out.append(_log_ratio(model.row_free, data.row_free[i]))
        if math.isfinite(data.row_dispersion[i]) and data.row_dispersion[i] > 0:
            out.append(_log_ratio(model.row_dispersion, data.row_dispersion[i]))
    return out


def _fit_figures(data: _Figures, shape: _Shape, weak: bool,
                 start: NDArray[np.float64] | None = None
                 ) -> tuple[_Params, NDArray[np.float64]]:
    rows = shape.row_cells is not None

    def loss(theta: NDArray[np.float64]) -> float:
        return float(sum(r * r for r in _residuals(_params(theta, weak, rows), data, shape)))

    starts = [start] if start is not None else [
        np.array([math.log(die), math.log(array), 0.0, math.log(p / (1 - p)), math.log(shift)]
                 + ([math.log(row)] if rows else []))
        for die, array in ((0.05, 0.1), (0.01, 0.4))
        for p, shift in (((0.05, 1.5), (0.2, 0.7)) if weak else ((0.5, 1.0),))
        for row in ((0.05,) if rows else (0.0,))]
    best: tuple[float, NDArray[np.float64]] | None = None
    for theta0 in starts:
        result = minimize(loss, theta0, method="Nelder-Mead",
                          options={"xatol": 1e-4, "fatol": 1e-10, "maxiter": 4000})
        if best is None or result.fun < best[0]:
            best = (float(result.fun), result.x)
    assert best is not None
    return _params(best[1], weak, rows), best[1]


def fit_threshold(counts: ArrayCounts, *, weak_arrays: bool = True, resamples: int = 20,
                  seed: int = 0) -> ThresholdFit:
    """Fit the threshold model to `counts` by moments (see the module docstring); standard
    errors from `resamples` refits of resampled chips (arrays, with one or two chips).
    `weak_arrays=False` fits die, array (and row) shares only; counts with rows fit a row
    share too."""
    if counts.faulty.sum() == 0:
        raise FitError("no faulty cell in the maps: nothing to fit")
    shape = _Shape(counts.cells_per_array, counts.cells_per_row)
    data = _measured(counts)
    params, theta = _fit_figures(data, shape, weak_arrays)
    fractions = data.fraction if counts.total_fraction is None else counts.total_fraction
    with np.errstate(invalid="ignore", divide="ignore"):
        # the twins left out of the counts scale with the cells failing by themselves
        to_total = np.where(data.fraction > 0, fractions / data.fraction, 1.0)
    rng = np.random.default_rng(seed)
    draws, curves = [], []
    for _ in range(resamples):
        resampled = _measured(counts.resampled(rng))
        q, _ = _fit_figures(resampled, shape, weak_arrays, theta)
        draws.append((q.die, q.array, q.p, q.shift, q.row))
        points = resampled.fraction * to_total
        curves.append((*points, *_probit_line(counts.knob_values, points)[:2]))
    se = np.array(draws).std(axis=0, ddof=1) if resamples > 1 else np.full(5, math.nan)
    curve_se = (np.array(curves).std(axis=0, ddof=1) if resamples > 1
                else np.full(fractions.shape[0] + 2, math.nan))
    if counts.chips < 2:
        se[0] = math.nan  # one chip says nothing about the die share
    z = [_z_for(float(f), params) for f in data.fraction]
    mean, sigma, worst = _probit_line(counts.knob_values, fractions)
    sa0, sa1 = int(counts.stuck_at_zero.sum()), int(counts.stuck_at_one.sum())
    share = sa0 / (sa0 + sa1) if sa0 + sa1 else math.nan
    share_se = math.sqrt(share * (1 - share) / (sa0 + sa1)) if sa0 + sa1 else math.nan
    goodness = tuple(_goodness(counts, i, params, zi, shape) for i, zi in enumerate(z))
    return ThresholdFit(
        counts.knob, tuple(float(v) for v in counts.knob_values),
        tuple(float(f) for f in fractions), tuple(float(x) for x in curve_se[:-2]),
        (params.die, float(se[0])),
        (params.array, float(se[1])), params.cell,
        (params.p, float(se[2]) if weak_arrays else math.nan),
        (params.shift, float(se[3]) if weak_arrays else math.nan), (share, share_se),
        (mean, float(curve_se[-2])), (sigma, float(curve_se[-1])), worst, goodness,
        (params.row, float(se[4])) if counts.cells_per_row else (0.0, math.nan),
        counts.cells_per_row)


def _probit_line(x: NDArray[np.float64], f: NDArray[np.float64]) -> tuple[float, float, float]:
    """`f ≈ Φ((mean − x)/sigma)` (decreasing in x; sigma < 0 for increasing) by least squares on
    the probit scale, and the largest factor between a point and the line."""
    ok = (f > 0) & (f < 1)
    if ok.sum() < 2:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(x[ok], ndtri(f[ok]), 1)
    sigma = -1.0 / slope
    mean = intercept * sigma
    line = ndtr((mean - x[ok]) / sigma)
    worst = float(np.exp(np.abs(np.log(f[ok]) - np.log(line))).max())
    return float(mean), float(sigma), worst


def _goodness(counts: ArrayCounts, i: int, params: _Params, z: float, shape: _Shape
              ) -> GoodnessRow:
    k = counts.faulty[:, i, :].astype(np.float64)
    measured = _measured(counts, slice(i, i + 1))
    model = _model(z, params, shape)
    rows = shape.row_cells is not None
    return GoodnessRow(float(counts.knob_values[i]), (float(measured.fraction[0]), model.fraction),
                       (float(measured.free[0]), model.free),
                       (float(measured.dispersion[0]), model.dispersion),
                       (float(k.max(axis=1).mean()),
                        _expected_max(k.shape[1], z, params, shape)),
                       (float(measured.row_free[0]), model.row_free) if rows else None,
                       (float(measured.row_dispersion[0]), model.row_dispersion) if rows
                       else None)


def _expected_max(arrays: int, z: float, params: _Params, shape: _Shape) -> float:
    """The largest per-array count of a chip, averaged over chips: given the die, arrays are
    independent, so E[max] = Σ_K≥1 (1 − (1 − P(count >= K))^arrays), by quadrature over the
    die offset. Given its offset an array's count is binomial, or with a row share
    beta-binomial with the model's variance."""
    n = shape.cells
    q_all, wq, row_var_all, _ = _per_array(z, params, shape)
    out = 0.0
    for d, (q, wd) in enumerate(zip(q_all, _DIE_W, strict=True)):
        top = min(n, int(n * q.max() + 10.0 * math.sqrt(n * q.max() * (1 + n * params.row))
                         + 20))
        if row_var_all is None or shape.row_cells is None:
            sf = binom.sf(np.arange(top + 1)[None, :] - 1, n, q[:, None])
        else:
            # correlation of two cells of an array from the variance the rows give its count
            within = n // shape.row_cells * row_var_all[d]
            binomial = np.maximum(n * q * (1 - q), 1e-300)
            corr = np.clip((within / binomial - 1.0) / (n - 1), 1e-9, 1.0 - 1e-9)
            spread = 1.0 / corr - 1.0
            # P(count >= K) from the probabilities up to `top` (scipy's sf sums them per K)
            pmf = betabinom.pmf(np.arange(top + 1)[None, :], n, (q * spread)[:, None],
                                ((1 - q) * spread)[:, None])
            sf = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]
        tail = np.clip(wq @ sf, 0.0, 1.0)  # P(count >= K) for K = 0..top
        # 1 − (1 − t)^arrays without losing a tiny t
        at_least = -np.expm1(arrays * np.log1p(-np.minimum(tail[1:], 1.0 - 1e-16)))
        out += wd * float(at_least.sum())
    return float(out)


def fitted_mechanism(fit: ThresholdFit, *, name: str, source: str, curve: str = "probit",
                     neighbours: Sequence[NeighbourEstimate] = ()) -> dict[str, object]:
    """The fitted threshold mechanism as a device document's `faults` entry (plain data, for
    a file that `extends:` the device it refines): `curve` "probit" (the line through the
    fitted points) or "table" (the points themselves, log-interpolated), every figure
    `provenance: derived` from `source`."""
    def derived(value: float, note: str) -> dict[str, object]:
        return {"value": _round(value), "provenance": "derived", "source": source,
                "note": note}

    knob, xs, fs = fit.knob, fit.knob_values, fit.fault_fraction
    if curve == "probit":
        mean, sigma = fit.probit_mean[0], fit.probit_sigma[0]
        if not math.isfinite(sigma):
            raise FitError("a probit needs two knob values with faults strictly between 0 "
                           "and all cells; use curve='table'")
        ratio = f"within x{fit.probit_max_ratio:.2f} of each fitted point"
        fault_fraction: dict[str, object] = {
            "kind": "probit", "of": knob,
            "direction": "decreasing" if sigma > 0 else "increasing",
            "mean": derived(mean, f"probit through the maps' points, {ratio}; standard "
                                  f"error {fit.probit_mean[1]:.2g}"),
            "sigma": derived(abs(sigma), f"probit through the maps' points, {ratio}; standard "
                                         f"error {fit.probit_sigma[1]:.2g}")}
    elif curve == "table":
        points = [[_round(x), _round(max(f, 1e-300))] for x, f in zip(xs, fs, strict=True)]
        fault_fraction = {"kind": "table", "of": knob, "y_scale": "log", "clamp": True,
                          "points": points, "provenance": "derived", "source": source}
    else:
        raise FitError(f"curve must be probit or table, got {curve!r}")
    share = fit.stuck_at_zero_share[0] if math.isfinite(fit.stuck_at_zero_share[0]) else 0.5
    # a share the optimiser drove to nothing (1e-17) is written as none
    die, array, row = (_round(x) if x >= 1e-6 else 0.0
                       for x in (fit.die[0], fit.array[0], fit.row[0]))
    variability: dict[str, object] = {
        "provenance": "derived", "source": source,
        "die": die, "array": array, "row": row, "cell": _round(1.0 - die - array - row)}
    if fit.weak_fraction[0] > 0 and fit.weak_shift[0] > 0:
        variability["weak_arrays"] = {"fraction": _round(fit.weak_fraction[0]),
                                      "shift": _round(fit.weak_shift[0])}
    out: dict[str, object] = {
        "name": name, "kind": "threshold", "fault_fraction": fault_fraction,
        "failure": {"provenance": "derived", "source": source,
                    "stuck_at_zero": _round(share), "stuck_at_one": _round(1.0 - share),
                    "flip": 0.0},
        "variability": variability}
    if neighbours:
        out["neighbours"] = [{"offset": n.offset, "probability": {
            "value": _round(n.probability[0]), "provenance": "derived", "source": source,
            "note": f"{n.pairs} pairs against {n.chance:.3g} by chance"}} for n in neighbours]
    return out


def base_mechanism(spec: DeviceSpec, knob: str, mechanism: str | None = None) -> str:
    """The threshold mechanism of `spec` that maps measured along `knob` refine: the one
    named, or its only one; a `FitError` when the device cannot take the fit."""
    if knob not in spec.knob_names:
        raise FitError(f"the maps are measured along {knob}, which {spec.name} has no knob "
                       f"for; knobs: {', '.join(spec.knob_names)}")
    names = [m.name for m in spec.faults if isinstance(m, ThresholdMechanism)
             and (mechanism is None or m.name == mechanism)]
    if len(names) != 1:
        named = f" named {mechanism}" if mechanism else ""
        raise FitError(f"{spec.name} has {len(names)} threshold mechanisms{named}; "
                       "--mechanism NAME picks the one the maps measure")
    if spec.cell.bits_per_cell != 1:
        raise FitError(f"{spec.name} stores {spec.cell.bits_per_cell} bits per cell; fault "
                       "maps hold one bit per cell")
    return names[0]


def fitted_document(fit: ThresholdFit, *, extends: str, name: str, description: str,
                    mechanism: str, citation: str, array_bits: int, curve: str = "probit",
                    neighbours: Sequence[NeighbourEstimate] = ()) -> dict[str, Any]:
    """A device document (plain data) that extends the refined device with the fitted
    mechanism, the maps as its source and calibration, and arrays of `array_bits` cells (the
    unit of the fitted array statistics) in rows of the fit's cells per row (else of 64 cells,
    which a fit without rows leaves without a row share)."""
    source = "measured_maps"
    row_bits = fit.cells_per_row or (64 if array_bits % 64 == 0 else array_bits)
    return {
        "schema_version": 1,
        "extends": extends,
        "name": name,
        "description": description,
        "source": [{"id": source, "citation": citation}],
        "array": {"row_bits": row_bits, "rows_per_array": array_bits // row_bits},
        "faults": [fitted_mechanism(fit, name=mechanism, source=source, curve=curve,
                                    neighbours=neighbours)],
        "calibration": [fitted_calibration(fit, source=source)],
    }


def fitted_calibration(fit: ThresholdFit, *, source: str,
                       tolerance_factor: float = 2.0) -> dict[str, object]:
    """The maps' fault fractions as a `calibration:` entry (the measured points)."""
    return {"quantity": "fault_fraction", "of": fit.knob, "source": source,
            "provenance": "measured", "tolerance_factor": tolerance_factor,
            "points": [[_round(x), _round(f)] for x, f in zip(fit.knob_values,
                                                             fit.fault_fraction, strict=True)
                       if f > 0]}


def _round(x: float) -> float:
    """Six significant digits: what the maps can support, and a readable file."""
    return float(f"{x:.6g}")


@dataclass(frozen=True)
class NeighbourEstimate:
    """Faulty cells that have a faulty cell `offset` cells further on, pooled over chips and
    knob values: `pairs` seen against `chance` expected for independent cells; `probability`
    (with its standard error) that a cell failing by itself takes that neighbour along."""

    offset: int
    pairs: int
    chance: float
    probability: tuple[float, float]


def find_neighbours(stuck_at_zero: NDArray[np.bool_], stuck_at_one: NDArray[np.bool_],
                    max_offset: int, min_sigmas: float = 6.0, cells_per_row: int | None = None
                    ) -> tuple[NeighbourEstimate, ...]:
    """Offsets 1..`max_offset` at which faulty cells come in pairs far more often than
    chance (`min_sigmas` Poisson standard deviations and a tenth above it), with the
    probability that a fault takes its neighbour along: (pairs − chance) over the cells
    failing by themselves. Chance is the median over the offsets searched or, with
    `cells_per_row`, what each offset would show if the faulty cells of every row lay anywhere
    in it (rows that cluster faults pair them more at small offsets than at large ones)."""
    faulty = stuck_at_zero | stuck_at_one
    chips, points, cells = faulty.shape
    indices = [np.flatnonzero(faulty[c, i]) for c in range(chips) for i in range(points)]
    sizes = np.array([ix.size for ix in indices], dtype=np.float64)
    if sizes.sum() == 0:
        return ()
    # pairs[m, o-1]: faulty cells of map m whose cell o further on is faulty too
    pairs = np.array([[np.isin(ix + offset, ix, assume_unique=True).sum()
                       for offset in range(1, max_offset + 1)] for ix in indices], np.float64)
    if cells_per_row is not None:
        chance = np.array([_row_chance(faulty[c, i], cells_per_row, max_offset)
                           for c in range(chips) for i in range(points)])
    else:
        # Chance is what most offsets show: faults clustered in arrays pair up more often
        # than cells spread over the whole chip, at every offset alike, and the few offsets of
        # real neighbours stand out of it. With few offsets: independent cells.
        per_map = (np.median(pairs, axis=1) if max_offset >= 5 else sizes * sizes / cells)
        chance = np.repeat(per_map[:, None], max_offset, axis=1)
    excess = pairs - chance
    total_excess, total_chance = excess.sum(axis=0), chance.sum(axis=0)
    # and far enough above it: chance itself drifts a few per cent with the offset (pairs
    # across an array's edge are rarer), which a large map resolves
    significant = [o for o in range(max_offset)
                   if total_excess[o] > max(min_sigmas * math.sqrt(total_chance[o] + 1.0),
                                            0.1 * total_chance[o])]
    # A cell failing by itself takes its neighbour with probability p, and that neighbour is
    # faulty anyway with the chance q of any cell: excess pairs = primaries·p·(1 − q), the
    # faulty cells = primaries + the neighbours taken that were not faulty anyway.
    primaries = np.maximum(sizes - excess[:, significant].sum(axis=1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(sizes[:, None] > 0, chance / np.maximum(sizes, 1.0)[:, None], 0.0)
    # where faults are dense and clustered, whether a neighbour was faulty anyway varies
    # with the place more than one q says: the probability is read off the sparse maps
    q_map = q.mean(axis=1)
    sparse = q_map <= max(0.01, 2.0 * float(q_map[sizes > 0].min()))
    out = []
    for o in significant:
        exposure = float((primaries * (1.0 - q[:, o]))[sparse].sum())
        p = min(max(float(excess[sparse, o].sum()) / max(exposure, 1.0), 0.0), 1.0)
        out.append(NeighbourEstimate(o + 1, int(pairs[:, o].sum()), float(total_chance[o]),
                                     (p, math.sqrt(max(p * (1 - p), 1e-12)
                                                   / max(exposure, 1.0)))))
    return tuple(out)


def _row_chance(faulty: NDArray[np.bool_], cells_per_row: int, max_offset: int
                ) -> NDArray[np.float64]:
    """Expected pairs at offsets 1..max_offset in one map if each row's faulty cells sat at
    random places in it: a cell at place a of row r has its partner at offset o = q·m + s in
    row r + q (for a < m − s; both in one row when q = 0) or r + q + 1."""
    m = cells_per_row
    rows = -(-faulty.shape[0] // m)
    k = np.zeros(rows * m, np.float64)
    k[:faulty.shape[0]] = faulty
    k = k.reshape(rows, m).sum(axis=1)

    def between(step: int) -> float:
        """Sum over rows of P(a given cell of row r and a given cell of row r + step are both
        faulty)."""
        if step == 0:
            return float((k * (k - 1)).sum()) / (m * (m - 1)) if m > 1 else 0.0
        if step >= rows:
            return 0.0
        return float((k[:-step] * k[step:]).sum()) / (m * m)

    out = np.empty(max_offset)
    for o in range(1, max_offset + 1):
        q, s = divmod(o, m)
        out[o - 1] = (m - s) * between(q) + s * between(q + 1)
    return out
