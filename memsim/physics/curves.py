"""Evaluation of curve specs at an operating point (knob values in the knobs' own units)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from scipy.special import ndtr

from memsim.errors import KnobError
from memsim.spec.curves import (
    ConstantCurve,
    Curve,
    Direction,
    DramLeakageCurve,
    ExponentialCurve,
    Input,
    NeelArrheniusCurve,
    PowerCurve,
    ProbitCurve,
    Scale,
    ScaledCurve,
    SttWriteErrorCurve,
    Table2dCurve,
    TableCurve,
    curve_kind,
)
from memsim.spec.fields import Param, Provenance

BOLTZMANN_EV_PER_K = 8.617333262e-5


class CurveDomainError(KnobError):
    """A curve was asked for a value outside its domain (e.g. beyond an unclamped table)."""


def _input(inp: Input, knobs: Mapping[str, float]) -> float:
    if inp.knob is not None:
        return knobs[inp.knob] * inp.scale + inp.offset
    assert inp.constant is not None
    return inp.constant.value


def _constant(c: ConstantCurve, knobs: Mapping[str, float]) -> float:
    return c.value.value


def _table(c: TableCurve, knobs: Mapping[str, float]) -> float:
    x = knobs[c.of]
    xs, ys = c.xs, c.ys
    if x < xs[0] or x > xs[-1]:
        if not c.clamp:
            raise CurveDomainError(
                f"{c.of}={x:g} is outside the table's points [{xs[0]:g}, {xs[-1]:g}] "
                "(set clamp: true to hold the end values)")
        return ys[0] if x < xs[0] else ys[-1]
    i, t = _position(xs, x, c.x_scale)
    y0, y1 = ys[i], ys[i + 1]
    if c.y_scale is Scale.LOG:
        return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    return y0 + t * (y1 - y0)


def _position(values: tuple[float, ...], v: float, scale: Scale) -> tuple[int, float]:
    """The segment of a sorted axis holding `v` and the fraction along it (in `scale`)."""
    lo, hi = 0, len(values) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if values[mid] <= v:
            lo = mid
        else:
            hi = mid
    a, b = values[lo], values[hi]
    if scale is Scale.LOG:
        return lo, (math.log(v) - math.log(a)) / (math.log(b) - math.log(a))
    return lo, (v - a) / (b - a)


def _table2d(c: Table2dCurve, knobs: Mapping[str, float]) -> float:
    point = []
    for name, axis in zip(c.of, (c.xs, c.ys), strict=True):
        v = knobs[name]
        if v < axis[0] or v > axis[-1]:
            if not c.clamp:
                raise CurveDomainError(
                    f"{name}={v:g} is outside the table's grid [{axis[0]:g}, {axis[-1]:g}] "
                    "(set clamp: true to hold the edge values)")
            v = min(max(v, axis[0]), axis[-1])
        point.append(v)
    i, tx = _position(c.xs, point[0], c.x_scale)
    j, ty = _position(c.ys, point[1], c.y_scale)

    def f(a: int, b: int) -> float:
        v = c.values[a][b]
        return math.log(v) if c.value_scale is Scale.LOG else v

    z = ((1 - tx) * (1 - ty) * f(i, j) + tx * (1 - ty) * f(i + 1, j)
         + (1 - tx) * ty * f(i, j + 1) + tx * ty * f(i + 1, j + 1))
    return math.exp(z) if c.value_scale is Scale.LOG else z


def _probit(c: ProbitCurve, knobs: Mapping[str, float]) -> float:
    z = (knobs[c.of] - c.mean.value) / c.sigma.value
    if c.direction is Direction.DECREASING:
        z = -z
    return c.maximum.value * float(ndtr(z))


def _exponential(c: ExponentialCurve, knobs: Mapping[str, float]) -> float:
    exponent = c.rate.value * (knobs[c.of] - c.reference.value)
    value = c.coefficient.value * math.exp(min(exponent, 700.0))
    return min(value, c.maximum) if c.maximum is not None else value


def _power(c: PowerCurve, knobs: Mapping[str, float]) -> float:
    ratio = knobs[c.of] / c.reference.value
    try:
        return c.coefficient.value * math.pow(ratio, c.exponent.value)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise CurveDomainError(f"power curve of {c.of}: ({knobs[c.of]:g}/{c.reference.value:g})"
                               f"^{c.exponent.value:g} is not a real number") from None


def _thermal_delta(delta0: float, t_ref: float, temperature: float) -> float:
    return delta0 * t_ref / temperature


def _neel_arrhenius(c: NeelArrheniusCurve, knobs: Mapping[str, float]) -> float:
    t = _input(c.time_s, knobs)
    temp = _input(c.temperature_k, knobs)
    i = _input(c.current_ratio, knobs)
    barrier = _thermal_delta(c.delta.value, c.reference_temperature_k.value, temp) * (1.0 - i)
    rate = (t / c.attempt_time_s.value) * math.exp(-barrier)
    return -math.expm1(-rate)


def _stt_write_error(c: SttWriteErrorCurve, knobs: Mapping[str, float]) -> float:
    t = _input(c.pulse_s, knobs)
    i = _input(c.current_ratio, knobs)
    delta = _thermal_delta(c.delta.value, c.reference_temperature_k.value,
                           _input(c.temperature_k, knobs))
    if i <= 1.0:
        tau = c.attempt_time_s.value * math.exp(delta * (1.0 - i))
        return math.exp(-t / tau)
    wer = (math.pi**2 * delta / 4.0) * ((i - 1.0) / i) * math.exp(
        -2.0 * (i - 1.0) * t / c.precession_time_s.value)
    return min(1.0, wer)


def _dram_leakage(c: DramLeakageCurve, knobs: Mapping[str, float]) -> float:
    t = _input(c.refresh_s, knobs)
    temp = _input(c.temperature_k, knobs)
    vdd = _input(c.vdd_v, knobs)
    leak = c.median_leakage_a.value * math.exp(
        -c.activation_energy_ev.value / BOLTZMANN_EV_PER_K
        * (1.0 / temp - 1.0 / c.reference_temperature_k.value))
    t_median = c.capacitance_ff.value * 1e-15 * (vdd / 2.0) / leak
    return float(ndtr((math.log(t) - math.log(t_median)) / c.sigma_ln_leakage.value))


def _scaled(c: ScaledCurve, knobs: Mapping[str, float]) -> float:
    value = c.factor.value * evaluate(c.curve, knobs)
    return min(value, c.maximum) if c.maximum is not None else value


_EVALUATORS: dict[type, Callable[[Any, Mapping[str, float]], float]] = {
    ConstantCurve: _constant,
    TableCurve: _table,
    Table2dCurve: _table2d,
    ProbitCurve: _probit,
    ExponentialCurve: _exponential,
    PowerCurve: _power,
    NeelArrheniusCurve: _neel_arrhenius,
    SttWriteErrorCurve: _stt_write_error,
    DramLeakageCurve: _dram_leakage,
    ScaledCurve: _scaled,
}


def evaluate(curve: Curve, knobs: Mapping[str, float]) -> float:
    """The curve's value at the given knob values (all of the device's knobs)."""
    return float(_EVALUATORS[type(curve)](curve, knobs))


def curve_provenance(curve: Curve) -> frozenset[Provenance]:
    """The provenance tags of the parameters a curve uses."""
    params = [v for v in vars(curve).values() if isinstance(v, Param)]
    params += [v.constant for v in vars(curve).values()
               if isinstance(v, Input) and v.constant is not None]
    inner = curve_provenance(curve.curve) if isinstance(curve, ScaledCurve) else frozenset()
    return inner | frozenset(p.provenance for p in params if not is_silent_default(p))


def is_silent_default(p: Param) -> bool:
    """A schema default that is a normalisation, not a figure (maximum 1, reference 1, ...)."""
    return p.default and p.provenance is Provenance.UNSPECIFIED


def describe(curve: Curve) -> str:
    """A one-line formula of the curve, for `devices show`."""
    k = curve_kind(curve)
    if isinstance(curve, ConstantCurve):
        return f"{curve.value.value:g}"
    if isinstance(curve, TableCurve):
        pts = ", ".join(f"({x:g}, {y:g})" for x, y in zip(curve.xs, curve.ys, strict=True))
        return (f"table of {curve.of} ({curve.y_scale.value} y, {curve.x_scale.value} x"
                f"{', clamped' if curve.clamp else ''}): {pts}")
    if isinstance(curve, Table2dCurve):
        return (f"table2d of {curve.of[0]} ({len(curve.xs)} values, {curve.x_scale.value}) and "
                f"{curve.of[1]} ({len(curve.ys)} values, {curve.y_scale.value}), bilinear in "
                f"{curve.value_scale.value} values{', clamped' if curve.clamp else ''}")
    if isinstance(curve, ProbitCurve):
        sign = "" if curve.direction is Direction.INCREASING else "−"
        m = f"{curve.maximum.value:g}·" if curve.maximum.value != 1.0 else ""
        return (f"probit: {m}Φ({sign}({curve.of} − {curve.mean.value:g})"
                f"/{curve.sigma.value:g})")
    if isinstance(curve, ExponentialCurve):
        cap = f", ≤ {curve.maximum:g}" if curve.maximum is not None else ""
        return (f"exponential: {curve.coefficient.value:g}·exp({curve.rate.value:g}·"
                f"({curve.of} − {curve.reference.value:g})){cap}")
    if isinstance(curve, PowerCurve):
        return (f"power: {curve.coefficient.value:g}·({curve.of}/{curve.reference.value:g})"
                f"^{curve.exponent.value:g}")
    if isinstance(curve, ScaledCurve):
        cap = f", ≤ {curve.maximum:g}" if curve.maximum is not None else ""
        return f"{curve.factor.value:g} × [{describe(curve.curve)}]{cap}"
    parts = []
    for name, value in vars(curve).items():
        if isinstance(value, Input):
            parts.append(f"{name}={value.describe()}")
        elif isinstance(value, Param):
            parts.append(f"{name}={value.value:g}")
    return f"{k}: {', '.join(parts)}"
