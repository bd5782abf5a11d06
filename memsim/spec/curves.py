"""Curve specs: a scalar figure (a probability, an energy) as a function of the knobs.

Each kind is a frozen dataclass registered under its YAML `kind:` name in `CURVE_KINDS`.
Single-variable kinds read the knob named by `of:`, in the knob's own unit; closed forms read
named physical inputs (`time_s`, `temperature_k`, ...) that are either a constant in the unit
the field name gives or the name of a knob whose unit converts to it.
Evaluation lives in `memsim.physics.curves`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from memsim.spec.fields import Fields, Node, Param, Provenance, name_list, nearest_hint
from memsim.spec.units import SI_UNIT, UNITS, Quantity, conversion

if TYPE_CHECKING:
    from memsim.spec.device import KnobSpec


_ASSUMED_300K = Param(300.0, Provenance.ASSUMED, note="schema default", default=True)
_ASSUMED_1NS = Param(1e-9, Provenance.ASSUMED, note="schema default", default=True)


class Scale(StrEnum):
    LINEAR = "linear"
    LOG = "log"


class Direction(StrEnum):
    INCREASING = "increasing"
    DECREASING = "decreasing"


@dataclass(frozen=True)
class Input:
    """A physical input of a closed form: a constant (SI) or a knob converted to SI."""

    quantity: Quantity
    constant: Param | None = None
    knob: str | None = None
    scale: float = 1.0
    offset: float = 0.0

    def describe(self) -> str:
        if self.knob is not None:
            return f"knob {self.knob}"
        assert self.constant is not None
        return f"{self.constant.value:g} {SI_UNIT[self.quantity]}"


@dataclass(frozen=True)
class ConstantCurve:
    value: Param


@dataclass(frozen=True)
class TableCurve:
    """Piecewise interpolation through measured points; outside them an error unless clamped."""

    of: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    points: Param  # carries the provenance of the whole table; value = number of points
    x_scale: Scale = Scale.LINEAR
    y_scale: Scale = Scale.LINEAR
    clamp: bool = False


@dataclass(frozen=True)
class Table2dCurve:
    """Bilinear interpolation over a grid of two knobs, for figures that do not factor into
    one curve per knob (a PCM error rate against program-and-verify iterations and time)."""

    of: tuple[str, str]
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]
    """One row per x, one column per y."""
    grid: Param  # carries the provenance of the whole table; value = number of grid points
    x_scale: Scale = Scale.LINEAR
    y_scale: Scale = Scale.LINEAR
    value_scale: Scale = Scale.LINEAR
    clamp: bool = False


@dataclass(frozen=True)
class ProbitCurve:
    """`maximum · Φ((x − mean)/sigma)` (increasing) or `maximum · Φ((mean − x)/sigma)`."""

    of: str
    mean: Param
    sigma: Param
    direction: Direction
    maximum: Param


@dataclass(frozen=True)
class ExponentialCurve:
    """`coefficient · exp(rate · (x − reference))`, capped at `maximum` if given."""

    of: str
    coefficient: Param
    rate: Param
    reference: Param
    maximum: float | None


@dataclass(frozen=True)
class PowerCurve:
    """`coefficient · (x / reference)^exponent`, e.g. CV² energy with exponent 2."""

    of: str
    coefficient: Param
    exponent: Param
    reference: Param


@dataclass(frozen=True)
class NeelArrheniusCurve:
    """Thermally activated switching within time t (retention, read disturb).

    `P = 1 − exp(−(t/τ0) · exp(−Δ(T) · (1 − I/Ic0)))`, `Δ(T) = Δ0 · T_ref / T`.
    With no current input, I/Ic0 = 0 (retention).
    """

    time_s: Input
    temperature_k: Input
    current_ratio: Input
    delta: Param
    reference_temperature_k: Param
    attempt_time_s: Param


@dataclass(frozen=True)
class SttWriteErrorCurve:
    """STT-MRAM write error rate versus pulse width and current i = I/Ic0.

    Thermal regime (i < 1): `WER = exp(−t/τ)`, `τ = τ0 · exp(Δ(T)(1 − i))`.
    Precessional regime (i > 1): `WER = (π²Δ/4) · ((i − 1)/i) · exp(−2(i − 1) t / τ_D)`, ≤ 1.
    """

    pulse_s: Input
    current_ratio: Input
    temperature_k: Input
    delta: Param
    reference_temperature_k: Param
    attempt_time_s: Param
    precession_time_s: Param


@dataclass(frozen=True)
class DramLeakageCurve:
    """Fraction of DRAM cells whose charge leaks past the sense threshold within t_ref.

    `P = Φ((ln t − ln(C · V/2 / I(T))) / σ_lnI)`, with the median leakage
    `I(T) = I_ref · exp(−Ea/k · (1/T − 1/T_ref))` (Arrhenius) and σ_lnI the spread of ln I.
    """

    refresh_s: Input
    temperature_k: Input
    vdd_v: Input
    capacitance_ff: Param
    median_leakage_a: Param
    reference_temperature_k: Param
    activation_energy_ev: Param
    sigma_ln_leakage: Param


@dataclass(frozen=True)
class ScaledCurve:
    """`factor · curve`, capped at `maximum` if given: a figure that is a share of another
    (with a YAML alias, the same table written once)."""

    factor: Param
    curve: Curve
    maximum: float | None = None


Curve = (
    ConstantCurve | TableCurve | Table2dCurve | ProbitCurve | ExponentialCurve | PowerCurve
    | NeelArrheniusCurve | SttWriteErrorCurve | DramLeakageCurve | ScaledCurve
)


def curve_inputs(curve: Curve) -> tuple[str, ...]:
    """Names of the knobs a curve reads."""
    if isinstance(curve, ConstantCurve):
        return ()
    if isinstance(curve, TableCurve | ProbitCurve | ExponentialCurve | PowerCurve):
        return (curve.of,)
    if isinstance(curve, Table2dCurve):
        return curve.of
    if isinstance(curve, ScaledCurve):
        return curve_inputs(curve.curve)
    names: list[str] = []
    for value in vars(curve).values():
        if isinstance(value, Input) and value.knob is not None and value.knob not in names:
            names.append(value.knob)
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# parsing


class CurveContext:
    """What a curve parser needs to know: the device's knobs."""

    def __init__(self, knobs: Mapping[str, KnobSpec]) -> None:
        self.knobs = knobs

    def knob_name(self, node: Node) -> str:
        name = node.string()
        if name not in self.knobs:
            valid = list(self.knobs)
            raise node.fail(f"unknown knob {name!r}{nearest_hint(name, valid)}; "
                            f"the device's knobs are: {name_list(valid) or 'none'}")
        return name

    def input(self, node: Node, quantity: Quantity) -> Input:
        if isinstance(node.value, str):
            name = self.knob_name(node)
            unit = self.knobs[name].unit
            conv = conversion(unit, quantity)
            if conv is None:
                raise node.fail(
                    f"knob {name!r} has unit {unit!r}, which is not a {quantity.value} unit "
                    f"(expected one of {', '.join(_units_of(quantity))})")
            return Input(quantity, knob=name, scale=conv[0], offset=conv[1])
        low = 0.0 if quantity is not Quantity.RATIO else None
        return Input(quantity, constant=node.param(low, None, low_open=quantity in (
            Quantity.TIME, Quantity.TEMPERATURE)))


def _units_of(quantity: Quantity) -> list[str]:
    return list(UNITS[quantity])


def _parse_constant(node: Node, ctx: CurveContext) -> ConstantCurve:
    with node.fields() as f:
        f.known("kind")
        value = f.required("value", Node.param)
    return ConstantCurve(value)


def _parse_table(node: Node, ctx: CurveContext) -> TableCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        of = f.required("of", ctx.knob_name)
        x_scale = f.collect("x_scale", lambda n: n.enum(Scale), Scale.LINEAR)
        y_scale = f.collect("y_scale", lambda n: n.enum(Scale), Scale.LINEAR)
        clamp = f.collect("clamp", Node.boolean, False)
        points_node = f.node_of("points")
        f.check()
    if points_node.value is None:
        raise points_node.fail("required field is missing")
    xs: list[float] = []
    ys: list[float] = []
    for item in points_node.sequence(min_len=2):
        pair = item.sequence()
        if len(pair) != 2:
            raise item.fail(f"expected a pair [x, y], got a list of {len(pair)}")
        xs.append(pair[0].number())
        ys.append(pair[1].number())
        if x_scale is Scale.LOG and xs[-1] <= 0:
            raise pair[0].fail("x_scale is log: expected x > 0")
        if y_scale is Scale.LOG and ys[-1] <= 0:
            raise pair[1].fail("y_scale is log: expected y > 0 (use a tiny value, not 0)")
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise points_node.fail("expected points sorted by strictly increasing x")
    prov = Param(float(len(xs)), points_node.origin.provenance, points_node.origin.source)
    return TableCurve(of, tuple(xs), tuple(ys), prov, x_scale, y_scale, clamp)


def _axis(node: Node, scale: Scale, what: str) -> tuple[float, ...]:
    values = tuple(n.number() for n in node.sequence(min_len=2))
    if scale is Scale.LOG and any(v <= 0 for v in values):
        raise node.fail(f"{what} scale is log: expected values > 0")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise node.fail("expected strictly increasing values")
    return values


def _parse_table2d(node: Node, ctx: CurveContext) -> Table2dCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        of_node = f.node_of("of")
        x_scale = f.collect("x_scale", lambda n: n.enum(Scale), Scale.LINEAR)
        y_scale = f.collect("y_scale", lambda n: n.enum(Scale), Scale.LINEAR)
        value_scale = f.collect("value_scale", lambda n: n.enum(Scale), Scale.LINEAR)
        clamp = f.collect("clamp", Node.boolean, False)
        x_node, y_node, values_node = f.node_of("x"), f.node_of("y"), f.node_of("values")
        f.check()
    for n in (of_node, x_node, y_node, values_node):
        if n.value is None:
            raise n.fail("required field is missing")
    names = of_node.sequence()
    if len(names) != 2:
        raise of_node.fail(f"expected two knob names [x, y], got {len(names)}")
    of = (ctx.knob_name(names[0]), ctx.knob_name(names[1]))
    if of[0] == of[1]:
        raise of_node.fail("expected two different knobs")
    xs = _axis(x_node, x_scale, "x")
    ys = _axis(y_node, y_scale, "y")
    rows = values_node.sequence()
    if len(rows) != len(xs):
        raise values_node.fail(f"expected {len(xs)} rows (one per x), got {len(rows)}")
    values = []
    for row in rows:
        cells = row.sequence()
        if len(cells) != len(ys):
            raise row.fail(f"expected {len(ys)} values (one per y), got {len(cells)}")
        numbers = tuple(c.number() for c in cells)
        if value_scale is Scale.LOG and any(v <= 0 for v in numbers):
            raise row.fail("value_scale is log: expected values > 0 (use a tiny value, not 0)")
        values.append(numbers)
    prov = Param(float(len(xs) * len(ys)), values_node.origin.provenance,
                 values_node.origin.source)
    return Table2dCurve(of, xs, ys, tuple(values), prov, x_scale, y_scale, value_scale, clamp)


def _parse_probit(node: Node, ctx: CurveContext) -> ProbitCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        of = f.collect_required("of", ctx.knob_name, "")
        mean = f.collect_required("mean", Node.param, Param(0.0))
        sigma = f.collect_required("sigma", Node.positive, Param(1.0))
        direction = f.collect("direction", lambda n: n.enum(Direction), Direction.INCREASING)
        maximum = f.collect("maximum", Node.nonnegative, Param(1.0, default=True))
    return ProbitCurve(of, mean, sigma, direction, maximum)


def _parse_exponential(node: Node, ctx: CurveContext) -> ExponentialCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        of = f.collect_required("of", ctx.knob_name, "")
        coefficient = f.collect_required("coefficient", Node.nonnegative, Param(0.0))
        rate = f.collect_required("rate", Node.param, Param(0.0))
        reference = f.collect("reference", Node.param, Param(0.0, default=True))
        maximum = f.collect("maximum", lambda n: n.number_in(0.0, None), None)
    return ExponentialCurve(of, coefficient, rate, reference, maximum)


def _parse_power(node: Node, ctx: CurveContext) -> PowerCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        of = f.collect_required("of", ctx.knob_name, "")
        coefficient = f.collect_required("coefficient", Node.nonnegative, Param(0.0))
        exponent = f.collect_required("exponent", Node.param, Param(1.0))
        reference = f.collect("reference", Node.positive, Param(1.0, default=True))
    if of and ctx.knobs[of].low <= 0 and exponent.value < 0:
        raise node.child("of", of).fail(
            f"a negative exponent needs a knob range above 0; knob {of!r} reaches "
            f"{ctx.knobs[of].low:g}")
    return PowerCurve(of, coefficient, exponent, reference)


def _input_field(f: Fields, ctx: CurveContext, key: str, q: Quantity,
                 default: Input | None = None) -> Input:
    placeholder = Input(q, constant=Param(1.0))
    if default is not None:
        return f.collect(key, lambda n: ctx.input(n, q), default)
    return f.collect_required(key, lambda n: ctx.input(n, q), placeholder)


def _parse_neel_arrhenius(node: Node, ctx: CurveContext) -> NeelArrheniusCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        time_s = _input_field(f, ctx, "time_s", Quantity.TIME)
        temperature_k = _input_field(f, ctx, "temperature_k", Quantity.TEMPERATURE)
        current_ratio = _input_field(f, ctx, "current_ratio", Quantity.RATIO,
                                     Input(Quantity.RATIO, constant=Param(0.0, default=True)))
        delta = f.collect_required("delta", Node.positive, Param(1.0))
        t_ref = f.collect("reference_temperature_k", Node.positive, _ASSUMED_300K)
        tau0 = f.collect("attempt_time_s", Node.positive, _ASSUMED_1NS)
    return NeelArrheniusCurve(time_s, temperature_k, current_ratio, delta, t_ref, tau0)


def _parse_stt_write_error(node: Node, ctx: CurveContext) -> SttWriteErrorCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        pulse_s = _input_field(f, ctx, "pulse_s", Quantity.TIME)
        current_ratio = _input_field(f, ctx, "current_ratio", Quantity.RATIO)
        temperature_k = _input_field(f, ctx, "temperature_k", Quantity.TEMPERATURE,
                                     Input(Quantity.TEMPERATURE, constant=_ASSUMED_300K))
        delta = f.collect_required("delta", Node.positive, Param(1.0))
        t_ref = f.collect("reference_temperature_k", Node.positive, _ASSUMED_300K)
        tau0 = f.collect("attempt_time_s", Node.positive, _ASSUMED_1NS)
        tau_d = f.collect("precession_time_s", Node.positive, _ASSUMED_1NS)
    return SttWriteErrorCurve(pulse_s, current_ratio, temperature_k, delta, t_ref, tau0, tau_d)


def _parse_dram_leakage(node: Node, ctx: CurveContext) -> DramLeakageCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        refresh_s = _input_field(f, ctx, "refresh_s", Quantity.TIME)
        temperature_k = _input_field(f, ctx, "temperature_k", Quantity.TEMPERATURE)
        vdd_v = _input_field(f, ctx, "vdd_v", Quantity.VOLTAGE)
        cap = f.collect_required("capacitance_ff", Node.positive, Param(1.0))
        leak = f.collect_required("median_leakage_a", Node.positive, Param(1.0))
        t_ref = f.collect("reference_temperature_k", Node.positive, _ASSUMED_300K)
        ea = f.collect_required("activation_energy_ev", Node.nonnegative, Param(0.0))
        sigma = f.collect_required("sigma_ln_leakage", Node.positive, Param(1.0))
    return DramLeakageCurve(refresh_s, temperature_k, vdd_v, cap, leak, t_ref, ea, sigma)


def _parse_scaled(node: Node, ctx: CurveContext) -> ScaledCurve:
    with node.fields(with_origin=True) as f:
        f.known("kind")
        factor = f.collect_required("factor", Node.nonnegative, Param(0.0))
        maximum = f.collect("maximum", lambda n: n.number_in(0.0, None), None)
        inner = f.node_of("curve")
        f.check()
    if inner.value is None:
        raise inner.fail("required field is missing (the curve to scale)")
    return ScaledCurve(factor, parse_curve(inner, ctx), maximum)


CURVE_KINDS: dict[str, Callable[[Node, CurveContext], Curve]] = {
    "constant": _parse_constant,
    "table": _parse_table,
    "table2d": _parse_table2d,
    "probit": _parse_probit,
    "exponential": _parse_exponential,
    "power": _parse_power,
    "neel_arrhenius": _parse_neel_arrhenius,
    "stt_write_error": _parse_stt_write_error,
    "dram_leakage": _parse_dram_leakage,
    "scaled": _parse_scaled,
}


def parse_curve(node: Node, ctx: CurveContext) -> Curve:
    """A curve from its mapping; a bare number (or {value: ...}) is a constant."""
    if not isinstance(node.value, Mapping) or "kind" not in node.value:
        if isinstance(node.value, Mapping) and "value" in node.value:
            return ConstantCurve(node.param())
        if isinstance(node.value, Mapping):
            raise node.fail(f"expected a curve with a `kind:` ({', '.join(CURVE_KINDS)}) "
                            "or a number")
        return ConstantCurve(node.param())
    kind_node = node.child("kind", node.value["kind"])
    kind = kind_node.value
    if not isinstance(kind, str) or kind not in CURVE_KINDS:
        hint = nearest_hint(kind, list(CURVE_KINDS)) if isinstance(kind, str) else ""
        raise kind_node.fail(f"unknown curve kind {kind!r}{hint}; valid kinds: "
                             f"{', '.join(CURVE_KINDS)}")
    return CURVE_KINDS[kind](node, ctx)


def curve_kind(curve: Curve) -> str:
    return _KIND_OF[type(curve)]


_KIND_OF: dict[type, str] = {
    ConstantCurve: "constant", TableCurve: "table", Table2dCurve: "table2d", ProbitCurve: "probit",
    ExponentialCurve: "exponential", PowerCurve: "power", NeelArrheniusCurve: "neel_arrhenius",
    SttWriteErrorCurve: "stt_write_error", DramLeakageCurve: "dram_leakage",
    ScaledCurve: "scaled",
}

assert set(_KIND_OF.values()) == set(CURVE_KINDS)
