"""Fault mechanism specs, registered by their YAML `kind:` in `MECHANISM_KINDS`.

A cell's life has three phases, and each mechanism acts in one of them:
`programmed` (write errors, persistent until rewritten), `aged` (retention loss and drift,
growing with time since programming) and `read` (read disturb and read noise at each access).
Within a phase, flips (`transient`, `retention`, `level_confusion`) act first and persistent
faults (`threshold`, `stuck_at`) override them, as a stuck cell reads its stuck value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from memsim.spec.curves import ConstantCurve, Curve, CurveContext, parse_curve
from memsim.spec.fields import Fields, Node, Param, nearest_hint

_NO_FLIPS: Curve = ConstantCurve(Param(0.0, default=True))


class Phase(StrEnum):
    PROGRAMMED = "programmed"
    AGED = "aged"
    READ = "read"


PHASE_ORDER = {Phase.PROGRAMMED: 0, Phase.AGED: 1, Phase.READ: 2}


@dataclass(frozen=True)
class Failure:
    """What a faulty cell does: shares that sum to 1.

    `stuck_at_zero`/`stuck_at_one`: it reads 0 (1) whatever was stored (on a multi-level cell:
    the lowest/highest level); `flip`: it reads the inverse of what was stored (all bits of
    the cell inverted).
    """

    stuck_at_zero: Param
    stuck_at_one: Param
    flip: Param


@dataclass(frozen=True)
class WeakArrays:
    """A minority of arrays whose cells fail early: each array is weak with probability
    `fraction`, and a weak array's cells have their critical scores lowered by `shift`
    standard deviations. It concentrates faults in few arrays (more fault-free arrays and a
    larger index of dispersion than a normal array share gives for the same mean), as measured
    in undervolted on-chip memories."""

    fraction: Param
    shift: Param


NO_WEAK_ARRAYS = WeakArrays(Param(0.0, default=True), Param(0.0, default=True))


@dataclass(frozen=True)
class Variability:
    """Shares of the variance of a cell's critical stress at each level (they sum to 1), and
    optionally weak arrays.

    A cell's critical score is `u = √die·d + √array·a + √row·r + √cell·c − shift·w` with
    independent standard normals d (per chip), a (per array), r (per row), c (per cell) and
    w = 1 in a weak array (probability `weak_arrays.fraction`), else 0. The cell is faulty
    where `u < F⁻¹(fault_fraction(knobs))`, F being the distribution of u (Φ without weak
    arrays), so the chip-average fault fraction is the curve whatever the split, and faults
    are nested along the curve.
    """

    die: Param
    array: Param
    row: Param
    cell: Param
    weak_arrays: WeakArrays = NO_WEAK_ARRAYS


@dataclass(frozen=True)
class Neighbour:
    """A correlated fault: a faulty cell also makes the cell `offset` cells away faulty, in
    the same way, with `probability` (decided once per chip, so faults stay nested)."""

    offset: int
    probability: Param


@dataclass(frozen=True)
class ThresholdMechanism:
    """Persistent per-chip faults: a cell fails once the operating point passes its
    critical stress. `fault_fraction` is the population (chip-average) fraction of faulty
    cells as a function of the knobs, the cells taken along by `neighbours` included."""

    name: str
    phase: Phase
    fault_fraction: Curve
    failure: Failure
    variability: Variability
    description: str | None
    neighbours: tuple[Neighbour, ...] = ()


@dataclass(frozen=True)
class CellFactor:
    """Per-cell lognormal multiplier of transient rates, normalised to mean 1.

    `ln f ~ N(−σ²/2, σ²)`; the rate applied to a cell is `min(1, p · f)`.
    """

    sigma: Param


@dataclass(frozen=True)
class TransientMechanism:
    """Fresh random flips with stored-bit-dependent rates, drawn anew at every programming
    (phase programmed), age (aged) or read (read)."""

    name: str
    phase: Phase
    p_zero_to_one: Curve
    p_one_to_zero: Curve
    cell_factor: CellFactor | None
    description: str | None


@dataclass(frozen=True)
class RetentionMechanism:
    """Loss of the stored state after time at temperature (phase aged), usually a closed form
    such as `neel_arrhenius`: drawn anew for each trial's age."""

    name: str
    p_zero_to_one: Curve
    p_one_to_zero: Curve
    description: str | None

    @property
    def phase(self) -> Phase:
        return Phase.AGED


@dataclass(frozen=True)
class StuckAtMechanism:
    """Manufacturing defects: knob-independent fractions of stuck-at-0 and stuck-at-1 cells."""

    name: str
    stuck_at_zero: Param
    stuck_at_one: Param
    description: str | None

    @property
    def phase(self) -> Phase:
        return Phase.READ


@dataclass(frozen=True)
class LevelTransition:
    from_level: int
    to_level: int
    probability: Curve


@dataclass(frozen=True)
class LevelConfusionMechanism:
    """Multi-level cells: probabilities that a cell programmed to one level is read as another.

    Any pair may be given (not only neighbours, so drift can skip levels); the probability of
    staying is what is left of each row.
    """

    name: str
    phase: Phase
    transitions: tuple[LevelTransition, ...]
    description: str | None


Mechanism = (
    ThresholdMechanism | TransientMechanism | RetentionMechanism | StuckAtMechanism
    | LevelConfusionMechanism
)


class MechanismContext(CurveContext):
    def __init__(self, knobs: Mapping[str, object], bits_per_cell: int) -> None:
        super().__init__(knobs)  # type: ignore[arg-type]
        self.bits_per_cell = bits_per_cell


def _curves(ctx: MechanismContext) -> Callable[[Node], Curve]:
    return lambda n: parse_curve(n, ctx)


def _shares(node: Node, names: tuple[str, ...], defaults: dict[str, float]) -> dict[str, Param]:
    out: dict[str, Param] = {}
    with node.fields(with_origin=True) as f:
        for key in names:
            out[key] = f.collect(key, Node.probability, Param(defaults.get(key, 0.0), default=True))
    total = sum(p.value for p in out.values())
    if abs(total - 1.0) > 1e-6:
        raise node.fail(f"expected shares {', '.join(names)} summing to 1, got {total:g}")
    return out


def _description(f: Fields) -> str | None:
    return f.collect("description", Node.string, None)


def _parse_threshold(node: Node, name: str, ctx: MechanismContext) -> ThresholdMechanism:
    with node.fields(with_origin=True) as f:
        f.known("kind", "name")
        phase = f.collect("phase", lambda n: n.enum(Phase), Phase.READ)
        curve: Curve = f.collect_required("fault_fraction", lambda n: parse_curve(n, ctx),
                                   _NO_FLIPS)
        fail = f.collect_required(
            "failure",
            lambda n: _shares(n, ("stuck_at_zero", "stuck_at_one", "flip"), {}),
            None)
        var = f.collect("variability", _variability,
                        Variability(Param(0.0), Param(0.0), Param(0.0), Param(1.0)))
        no_neighbours: tuple[Neighbour, ...] = ()
        neighbours = f.collect("neighbours", _neighbours, no_neighbours)
        desc = _description(f)
    assert fail is not None
    return ThresholdMechanism(name, phase, curve, Failure(**fail), var, desc, neighbours)


def _neighbours(node: Node) -> tuple[Neighbour, ...]:
    out = []
    for child in node.sequence(min_len=1):
        with child.fields(with_origin=True) as f:
            offset = f.collect_required("offset", lambda n: n.integer(-(1 << 40), 1 << 40), 1)
            probability = f.collect_required("probability", Node.probability, Param(0.0))
            if offset == 0:
                f.problems.append(child.child("offset", 0).problem(
                    "expected a non-zero offset (a cell is not its own neighbour)"))
        out.append(Neighbour(offset, probability))
    offsets = [n.offset for n in out]
    if len(set(offsets)) != len(offsets):
        raise node.fail(f"an offset is given twice: {offsets}")
    total = sum(n.probability.value for n in out)
    if total > 8:
        raise node.fail(f"the probabilities sum to {total:g}; at most 8 neighbours a fault")
    return tuple(out)


def _variability(node: Node) -> Variability:
    names = ("die", "array", "row", "cell")
    with node.fields(with_origin=True) as f:
        shares = {k: f.collect(k, Node.probability, Param(1.0 if k == "cell" else 0.0,
                                                            default=True)) for k in names}
        weak = f.collect("weak_arrays", _weak_arrays, NO_WEAK_ARRAYS)
    total = sum(p.value for p in shares.values())
    if abs(total - 1.0) > 1e-6:
        raise node.fail(f"expected shares {', '.join(names)} summing to 1, got {total:g}")
    return Variability(**shares, weak_arrays=weak)


def _weak_arrays(node: Node) -> WeakArrays:
    with node.fields(with_origin=True) as f:
        fraction = f.collect_required("fraction", Node.probability, Param(0.0))
        shift = f.collect_required("shift", Node.nonnegative, Param(0.0))
    return WeakArrays(fraction, shift)


def _parse_transient(node: Node, name: str, ctx: MechanismContext) -> TransientMechanism:
    with node.fields(with_origin=True) as f:
        f.known("kind", "name")
        phase = f.collect("phase", lambda n: n.enum(Phase), Phase.READ)
        p01 = f.collect("p_zero_to_one", _curves(ctx), _NO_FLIPS)
        p10 = f.collect("p_one_to_zero", _curves(ctx), _NO_FLIPS)
        if not f.has("p_zero_to_one") and not f.has("p_one_to_zero"):
            f.problems.append(node.problem(
                "expected at least one of p_zero_to_one, p_one_to_zero"))
        factor = f.collect("cell_factor", _parse_cell_factor, None)
        desc = _description(f)
    return TransientMechanism(name, phase, p01, p10, factor, desc)


def _parse_cell_factor(node: Node) -> CellFactor:
    with node.fields(with_origin=True) as f:
        f.collect("distribution", _lognormal_only, "lognormal")
        sigma = f.collect_required("sigma", Node.nonnegative, Param(0.0))
    return CellFactor(sigma)


def _lognormal_only(node: Node) -> str:
    if node.value != "lognormal":
        raise node.fail(
            f"expected lognormal (the only cell-factor distribution), got {node.value!r}")
    return "lognormal"


def _parse_retention(node: Node, name: str, ctx: MechanismContext) -> RetentionMechanism:
    with node.fields(with_origin=True) as f:
        f.known("kind", "name")
        p01 = f.collect("p_zero_to_one", _curves(ctx), _NO_FLIPS)
        p10 = f.collect("p_one_to_zero", _curves(ctx), _NO_FLIPS)
        if not f.has("p_zero_to_one") and not f.has("p_one_to_zero"):
            f.problems.append(node.problem(
                "expected at least one of p_zero_to_one, p_one_to_zero"))
        desc = _description(f)
    return RetentionMechanism(name, p01, p10, desc)


def _parse_stuck_at(node: Node, name: str, ctx: MechanismContext) -> StuckAtMechanism:
    with node.fields(with_origin=True) as f:
        f.known("kind", "name")
        sa0 = f.collect("stuck_at_zero", Node.probability, Param(0.0, default=True))
        sa1 = f.collect("stuck_at_one", Node.probability, Param(0.0, default=True))
        desc = _description(f)
    if sa0.value + sa1.value > 1.0:
        raise node.fail(f"expected stuck_at_zero + stuck_at_one <= 1, got "
                        f"{sa0.value + sa1.value:g}")
    return StuckAtMechanism(name, sa0, sa1, desc)


def _parse_level_confusion(node: Node, name: str,
                           ctx: MechanismContext) -> LevelConfusionMechanism:
    levels = 2 ** ctx.bits_per_cell
    with node.fields(with_origin=True) as f:
        f.known("kind", "name")
        phase = f.collect("phase", lambda n: n.enum(Phase), Phase.READ)
        desc = _description(f)
        transitions: tuple[LevelTransition, ...] = ()
        if f.has("matrix") and f.has("transitions"):
            f.problems.append(node.problem("give either matrix or transitions, not both"))
        elif f.has("matrix"):
            transitions = f.collect("matrix", lambda n: _parse_matrix(n, levels), transitions)
        else:
            transitions = f.collect_required(
                "transitions", lambda n: _parse_transitions(n, levels, ctx), transitions)
    return LevelConfusionMechanism(name, phase, transitions, desc)


def _parse_matrix(node: Node, levels: int) -> tuple[LevelTransition, ...]:
    rows = node.sequence()
    if len(rows) != levels:
        raise node.fail(f"expected a {levels}×{levels} matrix (bits_per_cell sets {levels} "
                        f"levels), got {len(rows)} rows")
    out: list[LevelTransition] = []
    for i, row_node in enumerate(rows):
        row = row_node.sequence()
        if len(row) != levels:
            raise row_node.fail(f"expected {levels} entries, got {len(row)}")
        values = [cell.probability() for cell in row]
        total = sum(v.value for v in values)
        if abs(total - 1.0) > 1e-6:
            raise row_node.fail(f"expected a row summing to 1, got {total:.9g}")
        for j, v in enumerate(values):
            if j != i and v.value > 0:
                out.append(LevelTransition(i, j, ConstantCurve(v)))
    return tuple(out)


def _parse_transitions(node: Node, levels: int,
                       ctx: MechanismContext) -> tuple[LevelTransition, ...]:
    out: list[LevelTransition] = []
    seen: set[tuple[int, int]] = set()
    for item in node.sequence(min_len=1):
        with item.fields() as f:
            src = f.collect_required("from", lambda n: n.integer(0, levels - 1), -1)
            dst = f.collect_required("to", lambda n: n.integer(0, levels - 1), -1)
            p: Curve = f.collect_required("probability", lambda n: parse_curve(n, ctx),
                                   _NO_FLIPS)
            if src >= 0 and src == dst:
                f.problems.append(item.problem(
                    "expected from != to (the probability of staying is what is left)"))
            elif (src, dst) in seen:
                f.problems.append(item.problem(f"transition {src}->{dst} given twice"))
        seen.add((src, dst))
        out.append(LevelTransition(src, dst, p))
    return tuple(out)


MechanismParser = Callable[[Node, str, MechanismContext], Mechanism]

MECHANISM_KINDS: dict[str, MechanismParser] = {
    "threshold": _parse_threshold,
    "transient": _parse_transient,
    "retention": _parse_retention,
    "stuck_at": _parse_stuck_at,
    "level_confusion": _parse_level_confusion,
}

MECHANISM_KIND_OF: dict[type, str] = {
    ThresholdMechanism: "threshold", TransientMechanism: "transient",
    RetentionMechanism: "retention", StuckAtMechanism: "stuck_at",
    LevelConfusionMechanism: "level_confusion",
}


def parse_mechanism(node: Node, ctx: MechanismContext) -> Mechanism:
    data = node.mapping()
    kind_node = node.child("kind", data.get("kind"))
    name_node = node.child("name", data.get("name"))
    name = name_node.string()
    kind = kind_node.value
    if not isinstance(kind, str) or kind not in MECHANISM_KINDS:
        if kind is None:
            raise kind_node.fail(f"required field is missing; valid kinds: "
                                 f"{', '.join(MECHANISM_KINDS)}")
        hint = nearest_hint(kind, list(MECHANISM_KINDS)) if isinstance(kind, str) else ""
        raise kind_node.fail(f"unknown mechanism kind {kind!r}{hint}; valid kinds: "
                             f"{', '.join(MECHANISM_KINDS)}")
    return MECHANISM_KINDS[kind](node, name, ctx)
