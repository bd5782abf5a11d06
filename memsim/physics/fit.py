"""Fitting a threshold mechanism to measured fault maps: the fault-fraction points, the
stuck-at split, the die and array variance shares and weak arrays, with their uncertainties,
and how well the fitted model reproduces the maps' per-array statistics.

The model is the threshold mechanism's (`memsim.spec.mechanisms.Variability`): a cell's score
is `u = √die·d + √array·a + √cell·c − shift·w` (row variance, when present, counts as cell
variance here), and at knob value i the cell is faulty where `u < zᵢ`. The data are the
numbers of faulty cells per array, per chip and knob value (`ArrayCounts`).

The fit is by moments, on the figures a reader of a fault map looks at: at each knob value the
mean fraction of faulty cells (matched exactly by zᵢ), the fraction of fault-free arrays and the
index of dispersion of the per-array counts within a chip, and the spread of the chips'
fractions (the die share). The model's figures are integrals over the die offset (Gauss-Hermite)
and the array offset (a fine grid: a faulty-cell count is a sharp function of it), so a fit
takes a fraction of a second and its uncertainties come from refitting resampled chips (or
resampled arrays, with one chip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import expit, ndtr, ndtri
from scipy.stats import binom

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
    `stuck_at_one[c, i]` the chip's totals by failure direction."""

    knob: str
    knob_values: NDArray[np.float64]
    faulty: NDArray[np.int64]
    cells_per_array: int
    stuck_at_zero: NDArray[np.int64]
    stuck_at_one: NDArray[np.int64]
    total_fraction: NDArray[np.float64] | None = None
    """With neighbours thinned out of `faulty` (cells faulty only because a neighbour is):
    the fraction of all faulty cells at each knob value, the curve's; None: `faulty`'s."""

    def __post_init__(self) -> None:
        if self.faulty.ndim != 3 or self.faulty.shape[1] != self.knob_values.shape[0]:
            raise FitError(f"faulty counts must have shape (chips, knob values, arrays), got "
                           f"{self.faulty.shape} for {self.knob_values.shape[0]} knob values")
        if self.cells_per_array < 1 or (self.faulty > self.cells_per_array).any() \
                or (self.faulty < 0).any():
            raise FitError("faulty counts must lie between 0 and the cells per array")

    @classmethod
    def from_maps(cls, knob: str, knob_values: NDArray[np.float64],
                  stuck_at_zero: NDArray[np.bool_], stuck_at_one: NDArray[np.bool_],
                  cells_per_array: int, neighbour_offsets: Sequence[int] = ()) -> ArrayCounts:
        """From stuck-at maps of shape (chips, knob values, cells); cells past the last
        whole array are left out. With `neighbour_offsets` (`find_neighbours`), a faulty cell
        at such an offset after another faulty one is taken for its neighbour and left out of
        the counts (the shares describe the cells that fail by themselves)."""
        if stuck_at_zero.shape != stuck_at_one.shape or stuck_at_zero.ndim != 3:
            raise FitError("maps must both have shape (chips, knob values, cells)")
        chips, points, cells = stuck_at_zero.shape
        arrays = cells // cells_per_array
        if arrays < 2:
            raise FitError(f"{cells} cells make fewer than two arrays of {cells_per_array}")
        faulty = (stuck_at_zero | stuck_at_one)[:, :, :arrays * cells_per_array]
        total = None
        if neighbour_offsets:
            total = faulty.mean(axis=(0, 2))
            primary = faulty.copy()
            for offset in sorted(neighbour_offsets):
                taken = np.zeros_like(faulty)
                taken[:, :, offset:] = faulty[:, :, :-offset]
                primary &= ~taken
            faulty = primary
        counts = faulty.reshape(chips, points, arrays, cells_per_array).sum(axis=3)
        return cls(knob, np.asarray(knob_values, np.float64), counts.astype(np.int64),
                   cells_per_array, stuck_at_zero.sum(axis=2).astype(np.int64),
                   stuck_at_one.sum(axis=2).astype(np.int64), total)

    @property
    def chips(self) -> int:
        return int(self.faulty.shape[0])


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


_DIE_NODES = 24
_ARRAY_GRID = np.linspace(-7.0, 7.0, 281)
_ARRAY_WEIGHTS = np.exp(-0.5 * _ARRAY_GRID**2)
_ARRAY_WEIGHTS /= _ARRAY_WEIGHTS.sum()


@dataclass(frozen=True)
class _Figures:
    """Per knob value (arrays over knob values): mean faulty fraction, fault-free arrays,
    within-chip dispersion, between-chip variance of the chip fractions."""

    fraction: NDArray[np.float64]
    free: NDArray[np.float64]
    dispersion: NDArray[np.float64]
    chip_variance: NDArray[np.float64]


@dataclass(frozen=True)
class _Params:
    die: float
    array: float
    cell: float
    p: float
    shift: float


def _measured(faulty: NDArray[np.int64], n: int) -> _Figures:
    k = faulty.astype(np.float64)  # (chips, points, arrays)
    mean = k.mean(axis=2)
    var = k.var(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.where(mean > 0, var / mean, np.nan)
    chip_fraction = mean / n
    return _Figures(chip_fraction.mean(axis=0), (k == 0).mean(axis=(0, 2)),
                    np.nanmean(dispersion, axis=0) if np.isfinite(dispersion).any()
                    else np.full(k.shape[1], np.nan),
                    chip_fraction.var(axis=0, ddof=1) if k.shape[0] > 1
                    else np.full(k.shape[1], np.nan))


def _given_die(t: NDArray[np.float64], params: _Params
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The per-array fault probabilities, (die node) × (array grid and weak flag), given
    `t = z − √die·d` per die node, and their weights."""
    sd = math.sqrt(max(params.cell, 1e-12))
    qs, ws = [], []
    for offset, weight in ((0.0, 1.0 - params.p), (params.shift, params.p)):
        if weight > 0:
            qs.append(ndtr((t[:, None] - math.sqrt(params.array) * _ARRAY_GRID[None, :]
                            + offset) / sd))
            ws.append(weight * _ARRAY_WEIGHTS)
    return np.concatenate(qs, axis=1), np.concatenate(ws)


_DIE_X, _DIE_W = np.polynomial.hermite_e.hermegauss(_DIE_NODES)
_DIE_W = _DIE_W / _DIE_W.sum()


def _model(n: int, z: float, params: _Params) -> tuple[float, float, float, float]:
    """(mean fraction, fault-free arrays, within-chip dispersion, chip-fraction variance)."""
    q, wq = _given_die(z - math.sqrt(params.die) * _DIE_X, params)
    q = np.minimum(q, 1.0 - 1e-16)
    fractions = q @ wq
    free = np.exp(n * np.log1p(-q)) @ wq
    var = (n * q * (1 - q) + (n * q) ** 2) @ wq - (n * fractions) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        dispersion = np.where(fractions > 0, var / (n * fractions), 0.0)
    fraction = float(_DIE_W @ fractions)
    return (fraction, float(_DIE_W @ free), float(_DIE_W @ dispersion),
            float(_DIE_W @ (fractions - fraction) ** 2))


def _z_for(fraction: float, params: _Params) -> float:
    """The threshold whose population fraction is `fraction` (it does not depend on the
    shares, only on weak arrays)."""
    return score_quantile(fraction, (params.p, params.shift))


def _params(theta: NDArray[np.float64], weak: bool) -> _Params:
    shares = np.exp(theta[:3] - theta[:3].max())
    shares /= shares.sum()
    p, shift = (float(expit(theta[3])), float(np.exp(theta[4]))) if weak else (0.0, 0.0)
    return _Params(float(shares[0]), float(shares[1]), float(shares[2]), p, shift)


def _residuals(params: _Params, data: _Figures, n: int) -> list[float]:
    out = []
    for i, f in enumerate(data.fraction):
        if not 0 < f < 1:
            continue
        z = _z_for(float(f), params)
        _, free, dispersion, chip_variance = _model(n, z, params)
        if 0.01 < data.free[i] < 0.99:
            out.append(math.log(max(free, 1e-12) / data.free[i]))
        if math.isfinite(data.dispersion[i]) and data.dispersion[i] > 0:
            out.append(math.log(max(dispersion, 1e-12) / data.dispersion[i]))
        if math.isfinite(data.chip_variance[i]) and data.chip_variance[i] > 0:
            # the die share: chip fractions are noisy with few chips, so a softer pull
            out.append(0.5 * math.log(max(chip_variance, 1e-30) / data.chip_variance[i]))
    return out


def _fit_figures(data: _Figures, n: int, weak: bool, start: NDArray[np.float64] | None = None
                 ) -> tuple[_Params, NDArray[np.float64]]:
    def loss(theta: NDArray[np.float64]) -> float:
        return float(sum(r * r for r in _residuals(_params(theta, weak), data, n)))

    starts = [start] if start is not None else [
        np.array([math.log(die), math.log(array), 0.0, math.log(p / (1 - p)), math.log(shift)])
        for die, array in ((0.05, 0.1), (0.01, 0.4))
        for p, shift in (((0.05, 1.5), (0.2, 0.7)) if weak else ((0.5, 1.0),))]
    best: tuple[float, NDArray[np.float64]] | None = None
    for theta0 in starts:
        result = minimize(loss, theta0, method="Nelder-Mead",
                          options={"xatol": 1e-4, "fatol": 1e-10, "maxiter": 4000})
        if best is None or result.fun < best[0]:
            best = (float(result.fun), result.x)
    assert best is not None
    return _params(best[1], weak), best[1]


def fit_threshold(counts: ArrayCounts, *, weak_arrays: bool = True, resamples: int = 20,
                  seed: int = 0) -> ThresholdFit:
    """Fit the threshold model to `counts` by moments (see the module docstring); standard
    errors from `resamples` refits of resampled chips (arrays, with one chip).
    `weak_arrays=False` fits die and array shares only."""
    if counts.faulty.sum() == 0:
        raise FitError("no faulty cell in the maps: nothing to fit")
    n = counts.cells_per_array
    data = _measured(counts.faulty, n)
    params, theta = _fit_figures(data, n, weak_arrays)
    fractions = data.fraction if counts.total_fraction is None else counts.total_fraction
    with np.errstate(invalid="ignore", divide="ignore"):
        # the twins left out of the counts scale with the cells failing by themselves
        to_total = np.where(data.fraction > 0, fractions / data.fraction, 1.0)
    rng = np.random.default_rng(seed)
    draws, curves = [], []
    for _ in range(resamples):
        if counts.chips > 2:
            faulty = counts.faulty[rng.integers(0, counts.chips, counts.chips)]
        else:
            arrays = counts.faulty.shape[2]
            faulty = counts.faulty[:, :, rng.integers(0, arrays, arrays)]
        resampled = _measured(faulty, n)
        q, _ = _fit_figures(resampled, n, weak_arrays, theta)
        draws.append((q.die, q.array, q.p, q.shift))
        points = resampled.fraction * to_total
        curves.append((*points, *_probit_line(counts.knob_values, points)[:2]))
    se = np.array(draws).std(axis=0, ddof=1) if resamples > 1 else np.full(4, math.nan)
    curve_se = (np.array(curves).std(axis=0, ddof=1) if resamples > 1
                else np.full(fractions.shape[0] + 2, math.nan))
    if counts.chips < 2:
        se[0] = math.nan  # one chip says nothing about the die share
    z = [_z_for(float(f), params) for f in data.fraction]
    mean, sigma, worst = _probit_line(counts.knob_values, fractions)
    sa0, sa1 = int(counts.stuck_at_zero.sum()), int(counts.stuck_at_one.sum())
    share = sa0 / (sa0 + sa1) if sa0 + sa1 else math.nan
    share_se = math.sqrt(share * (1 - share) / (sa0 + sa1)) if sa0 + sa1 else math.nan
    goodness = tuple(_goodness(counts, i, params, zi) for i, zi in enumerate(z))
    return ThresholdFit(
        counts.knob, tuple(float(v) for v in counts.knob_values),
        tuple(float(f) for f in fractions), tuple(float(x) for x in curve_se[:-2]),
        (params.die, float(se[0])),
        (params.array, float(se[1])), params.cell,
        (params.p, float(se[2]) if weak_arrays else math.nan),
        (params.shift, float(se[3]) if weak_arrays else math.nan), (share, share_se),
        (mean, float(curve_se[-2])), (sigma, float(curve_se[-1])), worst, goodness)


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


def _goodness(counts: ArrayCounts, i: int, params: _Params, z: float) -> GoodnessRow:
    n = counts.cells_per_array
    k = counts.faulty[:, i, :].astype(np.float64)
    measured = _measured(counts.faulty[:, i:i + 1, :], n)
    fraction, free, dispersion, _ = _model(n, z, params)
    return GoodnessRow(float(counts.knob_values[i]), (float(measured.fraction[0]), fraction),
                       (float(measured.free[0]), free),
                       (float(measured.dispersion[0]), dispersion),
                       (float(k.max(axis=1).mean()),
                        _expected_max(n, k.shape[1], z, params)))


def _expected_max(n: int, arrays: int, z: float, params: _Params) -> float:
    """The largest per-array count of a chip, averaged over chips: the largest K with
    P(count >= K) >= 1/arrays, by quadrature over the die offset."""
    q_all, wq = _given_die(z - math.sqrt(params.die) * _DIE_X, params)
    out = 0.0
    for q, wd in zip(q_all, _DIE_W, strict=True):
        top = min(n, int(n * q.max() + 10.0 * math.sqrt(n * q.max()) + 20))
        grid = np.arange(top + 1)
        tail = wq @ binom.sf(grid[None, :] - 1, n, q[:, None])
        out += wd * max(int((tail >= 1.0 / arrays).sum()) - 1, 0)
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
    variability: dict[str, object] = {
        "provenance": "derived", "source": source,
        "die": _round(fit.die[0]), "array": _round(fit.array[0]), "row": 0.0,
        "cell": _round(1.0 - _round(fit.die[0]) - _round(fit.array[0]))}
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
    unit of the fitted array statistics)."""
    source = "measured_maps"
    row_bits = 64 if array_bits % 64 == 0 else array_bits
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
                    max_offset: int, min_sigmas: float = 6.0
                    ) -> tuple[NeighbourEstimate, ...]:
    """Offsets 1..`max_offset` at which faulty cells come in pairs far more often than
    chance (the median over the offsets searched; `min_sigmas` Poisson standard deviations
    and a tenth above it), with the probability that a fault takes its neighbour along:
    (pairs − chance) over the cells failing by themselves."""
    faulty = stuck_at_zero | stuck_at_one
    chips, points, cells = faulty.shape
    indices = [np.flatnonzero(faulty[c, i]) for c in range(chips) for i in range(points)]
    sizes = np.array([ix.size for ix in indices], dtype=np.float64)
    if sizes.sum() == 0:
        return ()
    # pairs[m, o-1]: faulty cells of map m whose cell o further on is faulty too
    pairs = np.array([[np.isin(ix + offset, ix, assume_unique=True).sum()
                       for offset in range(1, max_offset + 1)] for ix in indices], np.float64)
    # Chance is what most offsets show: faults clustered in arrays or rows pair up more often
    # than cells spread over the whole chip, at every offset alike, and the few offsets of real
    # neighbours stand out of it. With few offsets: independent cells.
    chance = (np.median(pairs, axis=1) if max_offset >= 5 else sizes * sizes / cells)
    excess = pairs - chance[:, None]
    total_excess, total_chance = excess.sum(axis=0), float(chance.sum())
    # and far enough above it: chance itself drifts a few per cent with the offset (pairs
    # across an array's edge are rarer), which a large map resolves
    significant = [o for o in range(max_offset)
                   if total_excess[o] > max(min_sigmas * math.sqrt(total_chance + 1.0),
                                            0.1 * total_chance)]
    # A cell failing by itself takes its neighbour with probability p, and that neighbour is
    # faulty anyway with the chance q of any cell: excess pairs = primaries·p·(1 − q), the
    # faulty cells = primaries + the neighbours taken that were not faulty anyway.
    primaries = np.maximum(sizes - excess[:, significant].sum(axis=1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(sizes > 0, chance / np.maximum(sizes, 1.0), 0.0)
    # where faults are dense and clustered, whether a neighbour was faulty anyway varies
    # with the place more than one q says: the probability is read off the sparse maps
    sparse = q <= max(0.01, 2.0 * float(q[sizes > 0].min()))
    exposure = float((primaries * (1.0 - q))[sparse].sum())
    out = []
    for o in significant:
        p = min(max(float(excess[sparse, o].sum()) / max(exposure, 1.0), 0.0), 1.0)
        out.append(NeighbourEstimate(o + 1, int(pairs[:, o].sum()), float(total_chance),
                                     (p, math.sqrt(max(p * (1 - p), 1e-12)
                                                   / max(exposure, 1.0)))))
    return tuple(out)
