"""A loaded device and its resolved operating points."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memsim.errors import KnobError, SpecError, SpecProblem
from memsim.physics.curves import CurveDomainError, curve_provenance, evaluate, is_silent_default
from memsim.physics.mechanisms import (
    MechanismRangeError,
    application_order,
    bit_error_rates,
    level_matrix,
    persistent_fraction,
)
from memsim.spec.curves import Curve, Scale, curve_inputs
from memsim.spec.device import CalibrationSet, DeviceSpec, Quantity, parse_device
from memsim.spec.fields import Provenance, nearest_hint
from memsim.spec.loader import load_document, resolve_device_path, resolve_extends
from memsim.spec.mechanisms import (
    MECHANISM_KIND_OF,
    LevelConfusionMechanism,
    Mechanism,
    Phase,
    RetentionMechanism,
    StuckAtMechanism,
    ThresholdMechanism,
    TransientMechanism,
)
from memsim.spec.names import format_knobs

_PROVENANCE_ORDER = {p: i for i, p in enumerate(Provenance)}


def _tags(tags: set[Provenance] | frozenset[Provenance]) -> tuple[str, ...]:
    return tuple(p.value for p in sorted(tags, key=_PROVENANCE_ORDER.__getitem__))


@dataclass(frozen=True)
class MechanismFigures:
    """One mechanism's chip-average figures at an operating point."""

    name: str
    kind: str
    phase: Phase
    p_zero_to_one: float
    p_one_to_zero: float
    fault_fraction: float
    provenance: tuple[str, ...]

    @property
    def ber(self) -> float:
        return (self.p_zero_to_one + self.p_one_to_zero) / 2.0


@dataclass(frozen=True)
class EnergyFigures:
    scope: str
    read_energy_pj_per_bit: float
    write_energy_pj_per_bit: float
    static_power_mw_per_mib: float
    refresh_power_mw_per_mib: float
    provenance: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class OperatingPoint:
    """A device resolved at knob values: chip-average error figures and energy.

    `p_zero_to_one` / `p_one_to_zero`: probability that a stored 0 (1) reads back wrong, all
    mechanisms combined; `ber` their mean (uniformly random data); `fault_fraction`: fraction
    of cells with a persistent fault (stuck cells holding their stuck value included).
    """

    device: str
    knobs: Mapping[str, float]
    p_zero_to_one: float
    p_one_to_zero: float
    fault_fraction: float
    level_transition: tuple[tuple[float, ...], ...]
    mechanisms: tuple[MechanismFigures, ...]
    energy: EnergyFigures
    provenance: tuple[str, ...] = field(default=())

    @property
    def ber(self) -> float:
        return (self.p_zero_to_one + self.p_one_to_zero) / 2.0

    @property
    def read_energy_pj_per_bit(self) -> float:
        return self.energy.read_energy_pj_per_bit

    @property
    def write_energy_pj_per_bit(self) -> float:
        return self.energy.write_energy_pj_per_bit

    def figure(self, quantity: Quantity, mechanism: str | None = None) -> float:
        """A figure by name, of the whole device or of one mechanism."""
        if mechanism is not None:
            m = next(m for m in self.mechanisms if m.name == mechanism)
            values = {Quantity.FAULT_FRACTION: m.fault_fraction, Quantity.BER: m.ber,
                      Quantity.P_ZERO_TO_ONE: m.p_zero_to_one,
                      Quantity.P_ONE_TO_ZERO: m.p_one_to_zero}
            if quantity in values:
                return values[quantity]
        return float(self.to_dict()[quantity.value])

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "knobs": dict(self.knobs),
            "ber": self.ber,
            "p_zero_to_one": self.p_zero_to_one,
            "p_one_to_zero": self.p_one_to_zero,
            "fault_fraction": self.fault_fraction,
            "read_energy_pj_per_bit": self.energy.read_energy_pj_per_bit,
            "write_energy_pj_per_bit": self.energy.write_energy_pj_per_bit,
            "static_power_mw_per_mib": self.energy.static_power_mw_per_mib,
            "refresh_power_mw_per_mib": self.energy.refresh_power_mw_per_mib,
            "energy_scope": self.energy.scope,
            "provenance": list(self.provenance),
            "energy_provenance": {k: list(v) for k, v in self.energy.provenance.items()},
            "level_transition": [list(r) for r in self.level_transition],
            "mechanisms": [
                {"name": m.name, "kind": m.kind, "phase": m.phase.value, "ber": m.ber,
                 "p_zero_to_one": m.p_zero_to_one, "p_one_to_zero": m.p_one_to_zero,
                 "fault_fraction": m.fault_fraction, "provenance": list(m.provenance)}
                for m in self.mechanisms
            ],
        }


def mechanism_curves(mech: Mechanism) -> Iterator[tuple[str, Curve]]:
    """(field path within the mechanism, curve) pairs."""
    if isinstance(mech, ThresholdMechanism):
        yield "fault_fraction", mech.fault_fraction
    elif isinstance(mech, TransientMechanism | RetentionMechanism):
        yield "p_zero_to_one", mech.p_zero_to_one
        yield "p_one_to_zero", mech.p_one_to_zero
    elif isinstance(mech, LevelConfusionMechanism):
        for i, t in enumerate(mech.transitions):
            yield f"transitions[{i}].probability", t.probability


def _mechanism_provenance(mech: Mechanism) -> frozenset[Provenance]:
    tags: set[Provenance] = set()
    for _, curve in mechanism_curves(mech):
        tags |= curve_provenance(curve)
    if isinstance(mech, ThresholdMechanism):
        params = [mech.failure.stuck_at_zero, mech.failure.stuck_at_one, mech.failure.flip]
    elif isinstance(mech, StuckAtMechanism):
        params = [mech.stuck_at_zero, mech.stuck_at_one]
    elif isinstance(mech, TransientMechanism) and mech.cell_factor is not None:
        params = [mech.cell_factor.sigma]
    else:
        params = []
    tags |= {p.provenance for p in params if not is_silent_default(p)}
    return frozenset(tags)


_ENERGY_FIELDS = ("read_energy_pj_per_bit", "write_energy_pj_per_bit",
                  "static_power_mw_per_mib", "refresh_power_mw_per_mib")


class Device:
    """A validated memory technology; `at(**knobs)` resolves an operating point.

    `document` is the device's document (`extends:` applied) when it came from one
    (`load_device`, `Device.from_document`): what a sweep records and hashes. A `Device` built
    from a `DeviceSpec` alone has none and cannot be swept."""

    def __init__(self, spec: DeviceSpec, document: Mapping[str, Any] | None = None) -> None:
        self.spec = spec
        self.document = copy.deepcopy(dict(document)) if document is not None else None
        self._order = application_order(spec.faults)
        _check_over_range(self)

    @classmethod
    def from_document(cls, document: Mapping[str, Any], *, file: str = "<memory>",
                      folder: str | Path = ".") -> Device:
        """A device from a document in memory, e.g. `memsim.load_device_document(name)`
        edited: validated as a file would be (`SpecError` naming `file` and the field path);
        an `extends:` names a built-in device or a file inside `folder`."""
        merged = resolve_extends(document, file, folder)
        return cls(parse_device(merged, file), merged)

    @property
    def name(self) -> str:
        return self.spec.name

    def resolve_knobs(self, knobs: Mapping[str, float]) -> dict[str, float]:
        """All knob values: the given ones checked against their ranges, the rest nominal."""
        names = self.spec.knob_names
        for key in knobs:
            if key not in names:
                raise KnobError(f"{self.name}: unknown knob {key!r}{nearest_hint(key, names)}; "
                                f"knobs: {', '.join(names)}")
        out: dict[str, float] = {}
        for k in self.spec.knobs:
            if k.name not in knobs:
                out[k.name] = k.nominal.value
                continue
            raw = knobs[k.name]
            try:
                if isinstance(raw, bool | np.bool_ | str | bytes):  # float() takes True, "0.9"
                    raise TypeError
                value = float(raw)
            except (TypeError, ValueError):
                raise KnobError(f"{self.name}: knob {k.name} needs a number, got "
                                f"{raw!r}") from None
            if not math.isfinite(value) or not k.low <= value <= k.high:
                raise KnobError(f"{self.name}: knob {k.name}={value:g} is outside its range "
                                f"[{k.low:g}, {k.high:g}] {k.unit}")
            out[k.name] = value
        return out

    def at(self, **knobs: float) -> OperatingPoint:
        """The chip-average figures at these knob values (unnamed knobs at nominal)."""
        values = self.resolve_knobs(knobs)
        try:
            return self._resolve(values)
        except (CurveDomainError, MechanismRangeError) as e:
            raise KnobError(f"{self.name}: at {format_knobs(values)}: {e}") from None

    def _resolve(self, values: dict[str, float]) -> OperatingPoint:
        cell = self.spec.cell
        figures: list[MechanismFigures] = []
        total = np.eye(cell.levels)
        faulty = 0.0  # 1 − Π(1 − f_i), accumulated without cancelling small fractions
        all_tags: set[Provenance] = set()
        matrices = {i: level_matrix(m, values, cell) for i, m in enumerate(self.spec.faults)}
        for i in self._order:
            total = total @ matrices[i]
        for i, mech in enumerate(self.spec.faults):
            p01, p10 = bit_error_rates(matrices[i], cell)
            ff = persistent_fraction(mech, values)
            faulty += ff * (1.0 - faulty)
            tags = _mechanism_provenance(mech)
            all_tags |= tags
            figures.append(MechanismFigures(mech.name, MECHANISM_KIND_OF[type(mech)],
                                            mech.phase, p01, p10, ff, _tags(tags)))
        p01, p10 = bit_error_rates(total, cell)
        energy = self._energy(values)
        return OperatingPoint(
            device=self.name, knobs=values, p_zero_to_one=p01, p_one_to_zero=p10,
            fault_fraction=faulty,
            level_transition=tuple(tuple(float(x) for x in row) for row in total),
            mechanisms=tuple(figures), energy=energy, provenance=_tags(all_tags))

    def _energy(self, values: Mapping[str, float]) -> EnergyFigures:
        e = self.spec.energy
        numbers = {name: evaluate(getattr(e, name), values) for name in _ENERGY_FIELDS}
        prov = {name: _tags(curve_provenance(getattr(e, name))) for name in _ENERGY_FIELDS}
        return EnergyFigures(e.scope.value, provenance=prov, **numbers)

    def knob_grid(self, name: str, points: int = 50) -> np.ndarray:
        k = self.spec.knob(name)
        if k.scale is Scale.LOG:
            return np.geomspace(k.low, k.high, points)
        return np.linspace(k.low, k.high, points)

    def calibration_report(self) -> list[CalibrationCheck]:
        """Each published point of the device's `calibration:` against the resolved figure."""
        out: list[CalibrationCheck] = []
        for cal in self.spec.calibration:
            for x, published in cal.points:
                knobs = {**dict(cal.at), cal.of: x}
                op = self.at(**knobs)
                out.append(CalibrationCheck(cal, knobs, published,
                                            op.figure(cal.quantity, cal.mechanism)))
        return out


@dataclass(frozen=True)
class CalibrationCheck:
    calibration: CalibrationSet
    knobs: Mapping[str, float]
    published: float
    model: float

    @property
    def ratio(self) -> float:
        if self.published == 0.0:
            return 1.0 if self.model == 0.0 else math.inf
        return self.model / self.published

    @property
    def ok(self) -> bool:
        tol = self.calibration.tolerance_factor
        return 1.0 / tol <= self.ratio <= tol


def knob_box_grid(device: Device, per_knob: int,
                  bounds: Mapping[str, tuple[float, float]] | None = None,
                  extra: Mapping[str, float] | None = None) -> Iterator[dict[str, float]]:
    """Every combination of `per_knob` points per knob (ends included) over the knobs' ranges,
    or the narrower `bounds`, plus any `extra` value per knob that lies inside them."""
    knobs = device.spec.knobs
    axes = []
    for k in knobs:
        low, high = (bounds or {}).get(k.name, (k.low, k.high))
        pts = {low, high, *(float(x) for x in device.knob_grid(k.name, per_knob)
                            if low <= x <= high)}
        if extra is not None and k.name in extra and low <= extra[k.name] <= high:
            pts.add(extra[k.name])
        axes.append(sorted(pts))
    for combo in itertools.product(*axes):
        yield dict(zip((k.name for k in knobs), combo, strict=True))


def _grid_points(device: Device, names: Sequence[str]) -> Iterator[dict[str, float]]:
    """The load-time check's grid for a figure that reads the knobs ``names``: their ends,
    nominal and interior points, every other knob at nominal (the figure does not read it, so
    the grid grows with the knobs one figure reads, not with all the device has)."""
    nominal = device.spec.nominal
    per_knob = 7 if len(names) <= 2 else (4 if len(names) <= 4 else 2)
    fixed = {k.name: (nominal[k.name], nominal[k.name]) for k in device.spec.knobs
             if k.name not in names}
    return knob_box_grid(device, per_knob, bounds=fixed, extra=nominal)


def _check_over_range(device: Device) -> None:
    """Every curve must evaluate, probabilities in [0, 1] and energies ≥ 0, over the ranges of
    the knobs it reads (`_grid_points`)."""
    spec = device.spec
    problems: dict[str, SpecProblem] = {}

    def check(path: str, curve: Curve, low: float, high: float | None, what: str) -> None:
        for values in _grid_points(device, curve_inputs(curve)):
            try:
                v = evaluate(curve, values)
            except (CurveDomainError, OverflowError, ValueError, ZeroDivisionError) as e:
                problems[path] = SpecProblem(spec.file, path, f"at {format_knobs(values)}: {e}")
                return
            if not math.isfinite(v) or v < low or (high is not None and v > high + 1e-12):
                bound = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
                problems[path] = SpecProblem(
                    spec.file, path, f"expected {what} {bound} over the knob ranges, got {v:g} "
                    f"at {format_knobs(values)}")
                return

    for i, mech in enumerate(spec.faults):
        curves = list(mechanism_curves(mech))
        for sub, curve in curves:
            check(f"faults[{i}].{sub}", curve, 0.0, 1.0, "a probability")
        if isinstance(mech, LevelConfusionMechanism) and not any(
                p.startswith(f"faults[{i}].") for p in problems):
            names = list(dict.fromkeys(n for _, c in curves for n in curve_inputs(c)))
            for values in _grid_points(device, names):
                try:
                    level_matrix(mech, values, spec.cell)
                except (MechanismRangeError, CurveDomainError, ArithmeticError, ValueError) as e:
                    problems[f"faults[{i}]"] = SpecProblem(
                        spec.file, f"faults[{i}].transitions", f"at {format_knobs(values)}: {e}")
                    break
    for name in _ENERGY_FIELDS:
        check(f"energy.{name}", getattr(spec.energy, name), 0.0, None, "an energy or power")
    if problems:
        raise SpecError(problems.values())


def load_device(name_or_path: str | Path) -> Device:
    """Load a device: a built-in name such as ``"sram-14nm"`` or a path to a YAML file."""
    path = resolve_device_path(name_or_path)
    document = load_document(path)
    return Device(parse_device(document, str(path)), document)


