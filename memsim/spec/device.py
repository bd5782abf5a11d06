"""The device spec: one memory technology as frozen, validated data."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from memsim.errors import SpecError, SpecProblem
from memsim.spec.curves import ConstantCurve, Curve, Input, Scale, parse_curve
from memsim.spec.fields import Node, Param, Provenance, entries, name_list
from memsim.spec.mechanisms import Mechanism, MechanismContext, parse_mechanism

SCHEMA_VERSION = 1
Points = tuple[tuple[float, float], ...]
KnobValues = tuple[tuple[str, float], ...]
_KNOB_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class Technology(StrEnum):
    SRAM = "sram"
    DRAM = "dram"
    STT_MRAM = "stt_mram"
    RRAM = "rram"
    FEFET = "fefet"
    PCM = "pcm"
    CUSTOM = "custom"


class LevelCoding(StrEnum):
    GRAY = "gray"
    BINARY = "binary"


class KnobRole(StrEnum):
    CONTROL = "control"  # turned by the designer to save energy
    ENVIRONMENT = "environment"  # scenario: temperature, time since programming
    DESIGN = "design"  # a different device: cell size, FeFET domains


class EnergyScope(StrEnum):
    CELL = "cell"  # the bit cell alone
    ARRAY = "array"  # the array with its periphery (decoders, sense amplifiers)


class Quantity(StrEnum):
    """Figures a source can report and a calibration point can check."""

    FAULT_FRACTION = "fault_fraction"
    BER = "ber"
    P_ZERO_TO_ONE = "p_zero_to_one"
    P_ONE_TO_ZERO = "p_one_to_zero"
    READ_ENERGY = "read_energy_pj_per_bit"
    WRITE_ENERGY = "write_energy_pj_per_bit"
    STATIC_POWER = "static_power_mw_per_mib"
    REFRESH_POWER = "refresh_power_mw_per_mib"


@dataclass(frozen=True)
class SourceRef:
    id: str
    citation: str
    url: str | None = None


@dataclass(frozen=True)
class CellSpec:
    bits_per_cell: int = 1
    level_coding: LevelCoding = LevelCoding.GRAY

    @property
    def levels(self) -> int:
        return int(2**self.bits_per_cell)


@dataclass(frozen=True)
class ArrayGeometry:
    """How cells group into rows and arrays, for row- and array-level variability."""

    row_bits: int = 512
    rows_per_array: int = 512


@dataclass(frozen=True)
class KnobSpec:
    name: str
    unit: str
    role: KnobRole
    nominal: Param
    low: float
    high: float
    scale: Scale = Scale.LINEAR
    description: str | None = None


@dataclass(frozen=True)
class EnergySpec:
    """Energy figures as curves over the knobs; `scope` says what they include."""

    scope: EnergyScope
    read_energy_pj_per_bit: Curve
    write_energy_pj_per_bit: Curve
    static_power_mw_per_mib: Curve
    refresh_power_mw_per_mib: Curve
    description: str | None = None


@dataclass(frozen=True)
class CalibrationSet:
    """Published points a device must reproduce: `quantity` at knob `of` = x, other knobs
    at `at` (or nominal), within `tolerance_factor` (ratio either way)."""

    quantity: Quantity
    of: str
    points: tuple[tuple[float, float], ...]
    at: tuple[tuple[str, float], ...]
    tolerance_factor: float
    provenance: Provenance
    source: str | None
    mechanism: str | None = None


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    technology: Technology
    description: str
    sources: tuple[SourceRef, ...]
    schema_version: int
    cell: CellSpec
    knobs: tuple[KnobSpec, ...]
    faults: tuple[Mechanism, ...]
    energy: EnergySpec
    array: ArrayGeometry = ArrayGeometry()
    calibration: tuple[CalibrationSet, ...] = ()
    file: str = "<memory>"

    def knob(self, name: str) -> KnobSpec:
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(name)

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    @property
    def nominal(self) -> dict[str, float]:
        return {k.name: k.nominal.value for k in self.knobs}


# ---------------------------------------------------------------------------------------------


def _parse_sources(node: Node) -> tuple[SourceRef, ...]:
    out: list[SourceRef] = []
    for item in node.sequence(min_len=1):
        with item.fields() as f:
            sid = f.collect_required("id", Node.string, "")
            citation = f.collect_required("citation", Node.string, "")
            url = f.collect("url", Node.string, None)
        out.append(SourceRef(sid, citation, url))
    ids = [s.id for s in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise node.fail(f"source ids must be unique; repeated: {name_list(dupes)}")
    return tuple(out)


def _parse_cell(node: Node) -> CellSpec:
    with node.fields() as f:
        bits = f.collect("bits_per_cell", lambda n: n.integer(1, 3), 1)
        coding = f.collect("level_coding", lambda n: n.enum(LevelCoding), LevelCoding.GRAY)
    return CellSpec(bits, coding)


def _parse_array(node: Node) -> ArrayGeometry:
    with node.fields() as f:
        row_bits = f.collect("row_bits", lambda n: n.integer(1, 1 << 20), 512)
        rows = f.collect("rows_per_array", lambda n: n.integer(1, 1 << 24), 512)
    return ArrayGeometry(row_bits, rows)


def _parse_knob(name: str, node: Node, problems: list[SpecProblem]) -> KnobSpec:
    """The knob; a nominal outside the range is recorded in `problems` and the knob kept with
    its range (nominal clamped into it), so that the curves and calibration points are checked
    against the range the file gives, not a placeholder's."""
    if not _KNOB_NAME.fullmatch(name):
        raise node.fail("knob names must be lower-case identifiers (letters, digits, _), "
                        f"got {name!r}")
    with node.fields(with_origin=True) as f:
        unit = f.collect_required("unit", Node.string, "")
        role = f.collect_required("role", lambda n: n.enum(KnobRole), KnobRole.CONTROL)
        nominal = f.collect_required("nominal", Node.param, Param(0.0))
        rng = f.collect_required("range", _parse_range, (0.0, 0.0))
        scale = f.collect("scale", lambda n: n.enum(Scale), Scale.LINEAR)
        desc = f.collect("description", Node.string, None)
        f.check()
        if not rng[0] <= nominal.value <= rng[1]:
            # e.g. a child of `extends:` that narrows the range past the inherited nominal
            problems.append(node.child("nominal", nominal.value).problem(
                f"expected the nominal value inside range [{rng[0]:g}, {rng[1]:g}], "
                f"got {nominal.value:g}"))
            nominal = dataclasses.replace(nominal,
                                          value=min(max(nominal.value, rng[0]), rng[1]))
        if scale is Scale.LOG and rng[0] <= 0:
            f.problems.append(node.child("scale", "log").problem(
                "a log-scale knob needs a range above 0"))
    return KnobSpec(name, unit, role, nominal, rng[0], rng[1], scale, desc)


def _parse_range(node: Node) -> tuple[float, float]:
    items = node.sequence()
    if len(items) != 2:
        raise node.fail(f"expected [low, high], got a list of {len(items)}")
    low, high = items[0].number(), items[1].number()
    if not low < high:
        raise node.fail(f"expected low < high, got [{low:g}, {high:g}]")
    return low, high


def _parse_knobs(node: Node, problems: list[SpecProblem]) -> dict[str, KnobSpec]:
    """The knobs; a knob with problems gets them recorded and a placeholder, so that curves
    naming it are still checked without spurious 'unknown knob' problems."""
    knobs: dict[str, KnobSpec] = {}
    node.mapping()
    if not node.value:
        raise node.fail("expected at least one knob")
    for name, child in entries(node):
        try:
            knobs[name] = _parse_knob(name, child, problems)
        except SpecError as e:
            problems.extend(e.problems)
            raw = child.value if isinstance(child.value, Mapping) else {}
            unit = str(raw["unit"]) if isinstance(raw.get("unit"), str) else ""
            knobs[name] = KnobSpec(name, unit, KnobRole.CONTROL, Param(0.0), 0.0, 1.0)
    return knobs


def _parse_energy(node: Node, ctx: MechanismContext) -> EnergySpec:
    zero: Curve = ConstantCurve(Param(0.0, default=True))
    with node.fields(with_origin=True) as f:
        scope = f.collect_required("scope", lambda n: n.enum(EnergyScope), EnergyScope.ARRAY)
        read = f.collect_required("read_energy_pj_per_bit", lambda n: parse_curve(n, ctx), zero)
        write = f.collect_required("write_energy_pj_per_bit", lambda n: parse_curve(n, ctx),
                                   zero)
        static = f.collect("static_power_mw_per_mib", lambda n: parse_curve(n, ctx), zero)
        refresh = f.collect("refresh_power_mw_per_mib", lambda n: parse_curve(n, ctx), zero)
        desc = f.collect("description", Node.string, None)
    return EnergySpec(scope, read, write, static, refresh, desc)


def _parse_faults(node: Node, ctx: MechanismContext) -> tuple[Mechanism, ...]:
    problems: list[SpecProblem] = []
    out: list[Mechanism] = []
    names: dict[str, int] = {}
    for i, item in enumerate(node.sequence()):
        try:
            mech = parse_mechanism(item, ctx)
        except SpecError as e:
            problems.extend(e.problems)
            continue
        if mech.name in names:
            problems.append(item.child("name", mech.name).problem(
                f"mechanism name {mech.name!r} already used by faults[{names[mech.name]}]"))
        names[mech.name] = i
        out.append(mech)
    if problems:
        raise SpecError(problems)
    return tuple(out)


def _parse_calibration(node: Node, knobs: Mapping[str, KnobSpec],
                       mechanisms: tuple[str, ...]) -> tuple[CalibrationSet, ...]:
    ctx = MechanismContext(knobs, 1)
    out: list[CalibrationSet] = []
    for item in node.sequence():
        with item.fields(with_origin=True) as f:
            quantity = f.collect_required("quantity", lambda n: n.enum(Quantity),
                                          Quantity.BER)
            of = f.collect_required("of", ctx.knob_name, "")
            points: Points = f.collect_required("points", _parse_points, ())
            at: KnobValues = f.collect("at", lambda n: _parse_at(n, ctx, knobs), ())
            tol = f.collect("tolerance_factor",
                            lambda n: n.number_in(1.0, None, low_open=True,
                                                  what="a factor"), 2.0)
            mech = f.collect("mechanism", Node.string, None)
            if mech is not None and mech not in mechanisms:
                f.problems.append(item.child("mechanism", mech).problem(
                    f"no mechanism named {mech!r}; mechanisms: {name_list(mechanisms)}"))
        if of:
            k = knobs[of]
            for x, _ in points:
                if not k.low <= x <= k.high:
                    raise item.child("points", None).fail(
                        f"point {of}={x:g} is outside the knob's range [{k.low:g}, {k.high:g}]")
        out.append(CalibrationSet(quantity, of, points, at, tol, item.origin.provenance,
                                  item.origin.source, mech))
    return tuple(out)


def _parse_points(node: Node) -> tuple[tuple[float, float], ...]:
    out: list[tuple[float, float]] = []
    for item in node.sequence(min_len=1):
        pair = item.sequence()
        if len(pair) != 2:
            raise item.fail(f"expected a pair [knob value, figure], got a list of {len(pair)}")
        out.append((pair[0].number(), pair[1].number_in(0.0, None)))
    return tuple(out)


def _parse_at(node: Node, ctx: MechanismContext,
              knobs: Mapping[str, KnobSpec]) -> tuple[tuple[str, float], ...]:
    out: list[tuple[str, float]] = []
    for name, child in entries(node):
        ctx.knob_name(node.child(name, name))
        out.append((name, child.number()))
    return tuple(out)


def parse_device(data: Any, file: str) -> DeviceSpec:
    """Validate a loaded document (after `extends:` is resolved) into a `DeviceSpec`."""
    root = Node(data, file)
    if not isinstance(data, Mapping):
        raise root.fail(f"expected a mapping of device fields at the top level, got "
                        f"{type(data).__name__ if data is not None else 'an empty document'}")
    with root.fields() as f:
        f.known("extends")
        version = f.collect_required("schema_version", lambda n: n.integer(), SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            f.problems.append(root.child("schema_version", version).problem(
                f"this memsim reads schema_version {SCHEMA_VERSION}, got {version}"))
        name = f.collect_required("name", Node.string, "")
        tech = f.collect_required("technology", lambda n: n.enum(Technology),
                                  Technology.CUSTOM)
        desc = f.collect_required("description", Node.string, "")
        sources: tuple[SourceRef, ...] = f.collect_required("source", _parse_sources, ())
        cell = f.collect("cell", _parse_cell, CellSpec())
        array = f.collect("array", _parse_array, ArrayGeometry())
        knob_problems: list[SpecProblem] = []
        knobs: dict[str, KnobSpec] = f.collect_required(
            "knobs", lambda n: _parse_knobs(n, knob_problems), {})
        f.problems.extend(knob_problems)
        # curves refer to knobs: without any knob their checks would only add noise
        if not knobs:
            f.check()
        ctx = MechanismContext(knobs, cell.bits_per_cell)
        faults: tuple[Mechanism, ...] = f.collect("faults", lambda n: _parse_faults(n, ctx), ())
        energy = f.collect_required("energy", lambda n: _parse_energy(n, ctx), None)
        calibration: tuple[CalibrationSet, ...] = f.collect(
            "calibration",
            lambda n: _parse_calibration(n, knobs, tuple(m.name for m in faults)), ())
    assert energy is not None
    spec = DeviceSpec(name, tech, desc, sources, version, cell, tuple(knobs.values()),
                      faults, energy, array, calibration, file)
    _check_source_ids(spec, root)
    return spec


def _params(obj: object, path: str) -> Iterator[tuple[str, Param]]:
    """The parameters below `obj`, each with its field path in the YAML document."""
    if isinstance(obj, Param):
        yield path, obj
    elif isinstance(obj, ConstantCurve):  # a bare number or {value: ...} in the file
        yield path, obj.value
    elif isinstance(obj, Input):  # a constant input is the field's own value
        if obj.constant is not None:
            yield path, obj.constant
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for fld in dataclasses.fields(obj):
            yield from _params(getattr(obj, fld.name), f"{path}.{fld.name}" if path else fld.name)
    elif isinstance(obj, tuple):
        for i, item in enumerate(obj):
            # knobs are a mapping by name in the file
            sub = f"{path}.{item.name}" if isinstance(item, KnobSpec) else f"{path}[{i}]"
            yield from _params(item, sub)


def _check_source_ids(spec: DeviceSpec, root: Node) -> None:
    ids = {s.id for s in spec.sources}
    problems: list[SpecProblem] = []
    for path, param in _params(spec, ""):
        if param.source is not None and param.source not in ids:
            problems.append(SpecProblem(
                root.file, path, f"source {param.source!r} is not among the device's source "
                f"ids ({name_list(sorted(ids))})"))
    for i, cal in enumerate(spec.calibration):
        if cal.source is not None and cal.source not in ids:
            problems.append(SpecProblem(root.file, f"calibration[{i}].source",
                                        f"source {cal.source!r} is not among the device's "
                                        f"source ids ({name_list(sorted(ids))})"))
    if problems:
        # one problem per distinct source id is enough to fix them all
        unique = {p.message: p for p in reversed(problems)}
        raise SpecError(reversed(unique.values()))


def iter_params(spec: DeviceSpec) -> Iterator[tuple[str, Param]]:
    """Every numeric parameter of a spec with its field path in the YAML document."""
    return _params(spec, "")
