"""Aggregation: from a sweep's manifest and store to per-cell results, energies under a
deployment, noise-aware Pareto fronts, budgets and paired comparisons.

Accuracy comes from the store (one row per chip, keyed by what changes accuracy); energy is
computed here from the manifest's bit counts and knobs under the deployment in force, so
`aggregate(out, overrides=["deployment=streamed"])` re-prices a sweep without evaluating a
chip.

Rules the report states:
- Per cell, the accuracy interval is a t-interval over chips (chips as clusters).
- Energies of different `energy.scope` (a cell alone, or an array with its periphery) are
  never on one front: fronts and budgets are per (model, scenario, scope).
- The front is noise-aware (`pareto.noise_aware_front`): a point leaves it when a cheaper
  point is not worse within noise; points on the same chips (one device, placement and
  protection along its knobs) are compared by the paired interval of their difference.
  Accuracies above the model's clean accuracy count as clean. Energies within `ENERGY_TIE`
  (0.1 %) of a cheaper one count as equal, and among them the fewest bit errors come first
  (the budget rule's order).
- Budgets are judged by the LOW end of the accuracy interval against the model's clean
  accuracy: a point qualifies for "≤ b points" when accuracy_low ≥ clean − b/100. The saving's
  interval runs from that point to the cheapest point whose HIGH end qualifies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from memsim.experiments.energy import EnergyError, InferenceEnergy, MemoryUse, inference_energy
from memsim.experiments.manifest import CellPlan, read_manifest
from memsim.experiments.models import RunnerError
from memsim.experiments.pareto import (
    ENERGY_TIE,
    JudgedBy,
    budget_floor,
    cheapest_within,
    noise_aware_front,
)
from memsim.experiments.plan import adaptive_rule
from memsim.experiments.records import CellResult, ChipRecord, CleanResult
from memsim.experiments.stats import (
    AdaptiveChips,
    Interval,
    cluster_mean_interval,
    paired_difference_interval,
)
from memsim.experiments.store import STORE_FILENAME, ResultStore
from memsim.memory.protection import ProtectionOverhead
from memsim.physics.device import Device, OperatingPoint
from memsim.spec.deployment import Deployment, WeightResidence, parse_deployment
from memsim.spec.device import parse_device
from memsim.spec.experiment import (
    DEFAULT_BUDGETS_POINTS,
    ChipRule,
    DeviceRef,
    ReferenceMemory,
    apply_config_overrides,
    parse_budgets,
    parse_reference,
)
from memsim.spec.fields import Node

__all__ = [
    "ENERGY_TIE",
    "REPRICING_SECTIONS",
    "BudgetChoice",
    "CellResult",
    "CleanResult",
    "DeviceSaving",
    "KnobTrade",
    "PairedDifference",
    "SweepResults",
    "aggregate",
    "paired_differences",
]

REPRICING_SECTIONS = ("deployment", "reference", "pareto")
"""Config sections `aggregate` may override: they change prices and budgets, not accuracy."""


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of `model` minus that of `versus` in one cell, paired chip by chip: chip
    seeds do not depend on the model, so chip c of both is the same simulated chip."""

    model: str
    versus: str
    scenario: str
    device: str
    placement: str
    protection: str
    control_knobs: Mapping[str, float]
    environment_knobs: Mapping[str, float]
    chips: int
    difference: float
    low: float | None
    """None with a single chip (no interval). The interval covers chip-to-chip spread on
    this test set, not test-set sampling or training noise."""
    high: float | None
    clean_difference: float
    """The same difference without errors: what the errors add is `difference` less this."""


@dataclass(frozen=True)
class BudgetChoice:
    """The cheapest cell of a (model, scenario, scope) within `budget_points` of clean accuracy
    judged by its interval's low end (`cell`), and judged by its high end (`optimistic`): the
    true cheapest qualifying point lies between them in energy."""

    model: str
    scenario: str
    scope: str
    budget_points: float
    clean_accuracy: float
    cell: int | None
    """Index into `SweepResults.cells`, None when no cell qualifies."""
    optimistic: int | None
    cheapest_while: tuple[float, float] | None = None
    """Resident weights: the range of inferences per write over which `cell` stays the
    cheapest qualifying point (the ranking flips outside it); None otherwise."""


@dataclass(frozen=True)
class DeviceSaving:
    """What one device's knobs save for one model in one scenario within one budget, in the
    sweep's first storage variant: its cheapest qualifying cell."""

    model: str
    scenario: str
    device: str
    budget_points: float
    cell: int | None

    def relative(self, cells: Sequence[CellResult]) -> float | None:
        """The cell's energy over the same storage at nominal control knobs."""
        return None if self.cell is None else cells[self.cell].relative_to_nominal


@dataclass(frozen=True)
class KnobTrade:
    """What sweeping a device's control knob changes in energy under the deployment."""

    device: str
    knob: str
    low: float
    high: float
    energy_ratio: float
    """The lowest energy along the knob over the energy at nominal control knobs (first
    model, scenario and storage variant)."""
    varies: tuple[str, ...]
    """Energy terms that change along the knob (read, write, static, refresh)."""
    charged: tuple[str, ...]
    """Of those, the terms whose change along the knob is at least 1 % of the energy."""

    @property
    def trades_nothing(self) -> bool:
        """Less than 1 % of energy between the knob's cheapest value and nominal."""
        return self.energy_ratio > 0.99


@dataclass(frozen=True)
class SweepResults:
    """What a sweep produced: per-cell aggregates, fronts, budgets, paired comparisons."""

    name: str
    out_dir: Path
    cells: tuple[CellResult, ...]
    clean: Mapping[str, CleanResult]
    fronts: Mapping[tuple[str, str, str], tuple[int, ...]]
    """(model, scenario, scope) -> indices into `cells` on its noise-aware front, by
    increasing energy."""
    budgets: tuple[BudgetChoice, ...]
    device_savings: tuple[DeviceSaving, ...]
    budgets_points: tuple[float, ...]
    complete: bool
    dry_run: bool
    config: Mapping[str, Any]
    deployment: Deployment
    reference: str
    """The reference memory, in words."""
    reference_scope: str | None
    """Its energy scope (None: each device against itself)."""
    knob_trades: tuple[KnobTrade, ...] = ()
    devices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Device label -> {name, file, spec_hash, swept (knob names), document, scope}."""
    device_models: Mapping[str, Device] = field(default_factory=dict)
    """Device label -> the device as swept (from the manifest's copy of its file)."""
    architectures: Mapping[str, str] = field(default_factory=dict)
    """Model -> hash of its structure (models alike in it differ only in training)."""
    outputs: tuple[Path, ...] = ()
    """The files `write_outputs` wrote (set by `run_experiment`)."""
    paired: tuple[PairedDifference, ...] = ()
    """Every later model against every earlier one (config order) on the same test data, in
    every cell both have (`paired_differences`)."""
    overrides: tuple[str, ...] = ()
    """The repricing overrides in force (`memsim pareto DIR --set ...`)."""

    # asked once per cell by every picture of the report: computed once per sweep
    @cached_property
    def several_placements(self) -> bool:
        return len({c.placement for c in self.cells}) > 1

    @cached_property
    def several_protections(self) -> bool:
        return len({c.protection for c in self.cells}) > 1


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# -- energy ------------------------------------------------------------------------------------


class _Pricer:
    """Energies of cells under one deployment and reference, operating points cached."""

    def __init__(self, manifest: Mapping[str, Any], deployment: Deployment,
                 reference: ReferenceMemory) -> None:
        self.deployment = deployment
        self.reference = reference
        self.devices = {key: Device(parse_device(d["document"], d["file"]))
                        for key, d in manifest["memory_devices"].items()}
        self._points: dict[tuple[str, tuple[tuple[str, float], ...]], OperatingPoint] = {}
        self.scenarios: dict[str, dict[str, float]] = {
            str(sc["name"]): dict(sc.get("knobs") or {})
            for sc in (manifest["config"].get("scenarios") or [])
            if isinstance(sc, Mapping) and "name" in sc}
        self.reference_device: Device | None = None
        if reference.device is not None:
            self.reference_device = self.devices.get(reference.device.spec_hash) \
                or Device(reference.device.spec)

    def at(self, key: str, knobs: Mapping[str, float]) -> OperatingPoint:
        k = (key, tuple(sorted(knobs.items())))
        if k not in self._points:
            self._points[k] = self.devices[key].at(**knobs)
        return self._points[k]

    def scope(self, cell: CellPlan) -> str:
        scopes = {self.devices[m.device_hash].spec.energy.scope.value for m in cell.memories}
        return scopes.pop() if len(scopes) == 1 else "mixed"

    def _uses(self, cell: CellPlan, under_test: OperatingPoint,
              nominal: OperatingPoint) -> list[MemoryUse]:
        d = self.deployment
        uses = []
        for i, m in enumerate(cell.memories):
            at = under_test if i == 0 else self.at(m.device_hash, m.knobs)
            uses.append(MemoryUse(
                ProtectionOverhead(**m.overhead), at, nominal if i == 0 else at,
                capacity_mib=d.capacity_mib if i == 0 else m.capacity_mib,
                reads_per_inference=d.reads_per_inference, name=m.name,
                writes_per_inference=d.writes_per_inference))
        return uses

    def price(self, cell: CellPlan) -> tuple[InferenceEnergy, float, float | None]:
        """(energy of the cell, the device under test's own energy at nominal, the reference
        memory's energy for the same bits or None)."""
        dut = cell.memories[0]
        at = self.at(dut.device_hash, dut.knobs)
        nominal = self.at(dut.device_hash, cell.nominal_knobs)
        try:
            uses = self._uses(cell, at, nominal)
        except EnergyError as e:
            raise RunnerError(f"deployment (or a fixed memory's capacity_mib): {e}") from None
        t = self.deployment.seconds_per_inference
        energy = inference_energy(uses, t)
        dut_nominal = inference_energy(uses[0], t).nominal_pj
        ref: float | None = energy.nominal_pj
        if self.reference_device is not None:
            device = self.reference_device
            if device.spec.energy.scope.value != self.scope(cell):
                ref = None
            else:
                # the scenario's environment, for the knobs the reference device has
                scenario = self.scenarios.get(cell.scenario, {})
                env = {k: v for k, v in scenario.items() if k in device.spec.knob_names}
                point = device.at(**{**self.reference.knobs, **env})
                ref_uses = self._uses(cell, point, point)
                ref = inference_energy(ref_uses, t).total_pj
        return energy, dut_nominal, ref


# -- cells -------------------------------------------------------------------------------------


def _aggregate_cell(store: ResultStore, cell: CellPlan, rule: AdaptiveChips,
                    trials: int, clean_accuracy: float, pricer: _Pricer) -> CellResult:
    records: dict[int, ChipRecord] = {}
    for c, key in enumerate(cell.keys):
        row = store.get(key)
        if row is not None:
            records[c] = ChipRecord.from_json(row.outputs, c, f"{store.path}: row {key[:12]}")
    finished = {c: r.accuracies for c, r in records.items()}
    complete = rule.done(finished)
    if complete:
        used = rule.chips_used(finished)
    else:  # a partial sweep: the finished chips from chip 0 on
        used = []
        while len(used) in records:
            used.append(len(used))
    chosen = [records[c] for c in used]
    energy, dut_nominal, reference = pricer.price(cell)
    b = energy.breakdown
    overhead = ProtectionOverhead(**cell.memories[0].overhead)
    w = pricer.deployment.writes_per_inference
    common: dict[str, Any] = dict(
        model=cell.model, scenario=cell.scenario, device=cell.device,
        placement=cell.placement, protection=cell.protection,
        control_knobs=cell.control_knobs, environment_knobs=cell.environment_knobs,
        chips=len(chosen), trials=trials, complete=complete, clean_accuracy=clean_accuracy,
        device_ber=cell.device_ber, data_bits=overhead.data_bits,
        stored_bits=overhead.stored_bits, reliable_bits=overhead.reliable_bits,
        energy_scope=pricer.scope(cell), energy_pj=energy.total_pj,
        energy_read_pj=math.fsum((b.read_pj, b.check_read_pj, b.padding_read_pj)),
        energy_reliable_read_pj=b.reliable_read_pj, energy_static_pj=b.static_pj,
        energy_refresh_pj=b.refresh_pj, energy_write_pj=b.write_pj,
        energy_nominal_pj=energy.nominal_pj, reference_energy_pj=reference,
        energy_assumed=energy.assumed, energy_assumed_figures=energy.assumed_figures,
        on_front=False, energy_under_test_nominal_pj=dut_nominal,
        write_pj_per_programming=b.write_pj / w if w > 0 else 0.0)
    if not chosen:
        return CellResult(**common, accuracy=None, accuracy_low=None, accuracy_high=None,
                          accuracy_half_width=None, mlm=None, mlm_normalised=None,
                          bit_errors=None, under_test_ber=None, residual_bit_errors=None,
                          corrected_words=None, uncorrectable_words=None, chip_accuracy=())
    by_chip = [r.accuracies for r in chosen]
    interval = cluster_mean_interval(by_chip, rule.confidence, bounds=(0.0, 1.0))

    def chip_means(figure: str) -> float:
        """Mean over chips of each chip's mean over its trials."""
        return math.fsum(r.mean(figure) for r in chosen) / len(chosen)

    stored = overhead.stored_bits
    return CellResult(
        **common, accuracy=interval.mean, accuracy_low=_finite(interval.low),
        accuracy_high=_finite(interval.high), accuracy_half_width=_finite(interval.half_width),
        mlm=chip_means("mlm"), mlm_normalised=chip_means("mlm_normalised"),
        bit_errors=math.fsum((chip_means("flips_zero_to_one"),
                              chip_means("flips_one_to_zero"))),
        under_test_ber=chip_means("under_test_bit_errors") / stored if stored else 0.0,
        residual_bit_errors=chip_means("residual_bit_errors"),
        corrected_words=chip_means("corrected_words"),
        uncorrectable_words=chip_means("uncorrectable_words"),
        chip_accuracy=tuple(math.fsum(v) / len(v) for v in by_chip))


# -- fronts and budgets ------------------------------------------------------------------------


def _paired_interval(a: CellResult, b: CellResult) -> tuple[float, float] | None:
    """Interval of accuracy(a) − accuracy(b) over the chips both used, when they share chips
    and there are at least two."""
    if not a.same_chips(b):
        return None
    d = _paired(a, b)
    return (d.low, d.high) if d is not None and d.bounded else None


def _paired(a: CellResult, b: CellResult) -> Interval | None:
    """accuracy(a) − accuracy(b) over the chips both used (chips 0, 1, ...)."""
    n = min(len(a.chip_accuracy), len(b.chip_accuracy))
    if n == 0:
        return None
    return paired_difference_interval([[x] for x in a.chip_accuracy[:n]],
                                      [[y] for y in b.chip_accuracy[:n]])


def _groups(cells: Sequence[CellResult]) -> dict[tuple[str, str, str], list[int]]:
    """Priced cells by (model, scenario, scope); placements that mix scopes are in none (their
    energy adds a cell's figure to an array's)."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, c in enumerate(cells):
        if c.priced and c.energy_scope != "mixed":
            groups.setdefault((c.model, c.scenario, c.energy_scope), []).append(i)
    return dict(sorted(groups.items()))


def _fronts(cells: Sequence[CellResult]) -> dict[tuple[str, str, str], tuple[int, ...]]:
    out = {}
    for key, members in _groups(cells).items():
        group = [cells[i] for i in members]

        def paired(p: int, q: int, group: list[CellResult] = group
                   ) -> tuple[float, float] | None:
            return _paired_interval(group[p], group[q])

        front = noise_aware_front(group, group[0].clean_accuracy, paired)
        out[key] = tuple(members[j] for j in front)
    return out


def _cheapest(cells: Sequence[CellResult], members: Sequence[int], clean: float,
              budget_points: float, judged_by: JudgedBy) -> int | None:
    chosen = cheapest_within([cells[i] for i in members], clean, budget_points, judged_by)
    return None if chosen is None else members[chosen]


def _choice_by_n(cells: Sequence[CellResult], qualifying: Sequence[int], n: np.ndarray,
                 n_now: float) -> np.ndarray:
    """For each inferences-per-write value in `n`, the index (into `qualifying`) that the
    budget rule (`pareto.cheapest_within`: the lowest energy, ties within ENERGY_TIE to the
    lowest BER, then the lowest energy, then the first) chooses when each cell's energy is
    rest + (one programming) / N; `qualifying` comes most accurate first, as the rule orders
    exact ties."""
    write = np.array([cells[i].write_pj_per_programming for i in qualifying])
    rest = np.array([cells[i].energy_pj for i in qualifying]) - write / n_now
    ber = np.array([cells[i].device_ber for i in qualifying])
    energy = rest[None, :] + write[None, :] / n[:, None]
    lowest = energy.min(axis=1, keepdims=True)
    tied = energy <= lowest * (1.0 + ENERGY_TIE)
    # among the tied: lowest BER, then lowest energy, then first
    key_ber = np.where(tied, ber[None, :], np.inf)
    best_ber = key_ber.min(axis=1, keepdims=True)
    key_energy = np.where(tied & (key_ber == best_ber), energy, np.inf)
    return np.asarray(np.argmin(key_energy, axis=1))


_N_DECADES = (-6.0, 15.0)
"""The inferences-per-write range searched for ranking flips, as powers of ten."""


def _cheapest_while(cells: Sequence[CellResult], members: Sequence[int], chosen: int,
                    floor: float, deployment: Deployment) -> tuple[float, float] | None:
    """The range of inferences per programming N over which the budget rule keeps choosing
    `chosen` (0 and inf: no flip within 1e-6 .. 1e15); None for streamed weights."""
    if deployment.weights is WeightResidence.STREAMED:
        return None
    qualifying = sorted((i for i in members if (cells[i].accuracy_low or -1.0) >= floor),
                        key=lambda i: (-(cells[i].accuracy or 0.0), i))
    if chosen not in qualifying:
        return None
    target = qualifying.index(chosen)
    n_now = deployment.amortised_inferences_per_write
    grid = np.unique(np.concatenate([np.logspace(*_N_DECADES, 211), [n_now]]))
    picks = _choice_by_n(cells, qualifying, grid, n_now)
    at = int(np.searchsorted(grid, n_now))
    if picks[at] != target:
        return None
    lo, hi = at, at
    while lo > 0 and picks[lo - 1] == target:
        lo -= 1
    while hi < len(grid) - 1 and picks[hi + 1] == target:
        hi += 1

    def edge(inside: float, outside: float) -> float:
        """Bisect (in log N) between a grid value where `chosen` is picked and one where it
        is not."""
        a, b = math.log(inside), math.log(outside)
        for _ in range(40):
            mid = 0.5 * (a + b)
            if _choice_by_n(cells, qualifying, np.array([math.exp(mid)]), n_now)[0] == target:
                a = mid
            else:
                b = mid
        return math.exp(0.5 * (a + b))

    low = 0.0 if lo == 0 else edge(grid[lo], grid[lo - 1])
    high = math.inf if hi == len(grid) - 1 else edge(grid[hi], grid[hi + 1])
    return (low, high)


def _budgets(cells: Sequence[CellResult], clean: Mapping[str, float],
             budgets_points: Sequence[float], deployment: Deployment
             ) -> tuple[BudgetChoice, ...]:
    out = []
    for (model, scenario, scope), members in _groups(cells).items():
        for b in budgets_points:
            floor = budget_floor(clean[model], b)
            chosen = _cheapest(cells, members, clean[model], b, "accuracy_low")
            optimistic = _cheapest(cells, members, clean[model], b, "accuracy_high")
            span = None if chosen is None else _cheapest_while(cells, members, chosen, floor,
                                                                 deployment)
            out.append(BudgetChoice(model, scenario, scope, float(b), clean[model], chosen,
                                    optimistic, span))
    return tuple(out)


def _device_savings(cells: Sequence[CellResult], clean: Mapping[str, float],
                    budgets_points: Sequence[float]) -> tuple[DeviceSaving, ...]:
    """Per model, scenario and device, in the sweep's first storage variant (its first
    placement and protection, so that a knob's saving is not mixed with a protection's): the
    cheapest point within each budget."""
    if not cells:
        return ()
    variant = (cells[0].placement, cells[0].protection)
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, c in enumerate(cells):
        if c.priced and c.energy_scope != "mixed" and (c.placement, c.protection) == variant:
            groups.setdefault((c.model, c.scenario, c.device), []).append(i)
    out = []
    for (model, scenario, device), members in sorted(groups.items()):
        for b in budgets_points:
            out.append(DeviceSaving(model, scenario, device, float(b),
                                    _cheapest(cells, members, clean[model], b,
                                              "accuracy_low")))
    return tuple(out)


_TERMS = (("read", "read_energy_pj_per_bit"), ("write", "write_energy_pj_per_bit"),
          ("static", "static_power_mw_per_mib"), ("refresh", "refresh_power_mw_per_mib"))


def _knob_trades(cells: Sequence[CellResult], devices: Mapping[str, Mapping[str, Any]],
                 pricer: _Pricer) -> tuple[KnobTrade, ...]:
    """For each swept control knob: its cells (first model, scenario and storage variant;
    the device's other swept knobs at the values nearest their nominal), what energy terms it
    changes, which of them this deployment charges noticeably, and its best energy ratio
    against nominal knobs."""
    if not cells:
        return ()
    first = cells[0]
    out = []
    for label, info in devices.items():
        mine = [c for c in cells if c.device == label and c.model == first.model
                and c.scenario == first.scenario and c.has_energy_model
                and c.energy_scope != "mixed"]
        variant = [c for c in mine if (c.placement, c.protection)
                   == (first.placement, first.protection)]
        mine = variant or [c for c in mine if (c.placement, c.protection)
                           == (mine[0].placement, mine[0].protection)] if mine else []
        if not mine:
            continue
        device = pricer.devices[info["spec_hash"]]
        for knob in info["swept"]:
            others: dict[str, float] = {}
            for other in info["swept"]:
                if other != knob:
                    nominal = device.spec.knob(other).nominal.value
                    options = sorted({c.control_knobs[other] for c in mine})
                    others[other] = min(options, key=lambda v: (abs(v - nominal), v))
            line = [c for c in mine if all(c.control_knobs[k] == v for k, v in others.items())]
            values = sorted({c.control_knobs[knob] for c in line})
            if len(values) < 2:
                continue
            ends = [device.at(**{knob: v}).energy for v in (values[0], values[-1])]
            varies = tuple(name for name, q in _TERMS
                           if getattr(ends[0], q) != getattr(ends[1], q))
            terms = {"read": lambda c: c.energy_read_pj + c.energy_reliable_read_pj,
                     "write": lambda c: c.energy_write_pj,
                     "static": lambda c: c.energy_static_pj,
                     "refresh": lambda c: c.energy_refresh_pj}
            total = max(max(c.energy_pj for c in line), 1e-300)
            charged = tuple(t for t in varies
                            if max(terms[t](c) for c in line) - min(terms[t](c) for c in line)
                            >= 0.01 * total)
            out.append(KnobTrade(label, knob, values[0], values[-1],
                                 min(c.relative_to_nominal for c in line), varies, charged))
    return tuple(out)


def paired_differences(cells: Sequence[CellResult], data_of: Mapping[str, str]
                       ) -> tuple[PairedDifference, ...]:
    """Each later model minus each earlier one (in the order of `data_of`, the config's), cell
    by cell, over the chips both used (chips 0, 1, ...; a t-interval over the per-chip
    differences). Models evaluated on different test data are not compared."""
    def where(c: CellResult) -> tuple[Any, ...]:
        return (c.scenario, c.device, c.placement, c.protection,
                tuple(sorted(c.control_knobs.items())),
                tuple(sorted(c.environment_knobs.items())))

    by_model: dict[str, dict[tuple[Any, ...], CellResult]] = {}
    for c in cells:
        by_model.setdefault(c.model, {})[where(c)] = c
    names = [n for n in data_of if n in by_model]
    out = []
    for j, model in enumerate(names):
        for versus in names[:j]:
            if data_of[model] != data_of[versus]:
                continue
            for key, cell in by_model[model].items():
                other = by_model[versus].get(key)
                if other is None:
                    continue
                d = _paired(cell, other)
                if d is None:
                    continue
                out.append(PairedDifference(
                    model, versus, cell.scenario, cell.device, cell.placement, cell.protection,
                    cell.control_knobs, cell.environment_knobs, d.n_clusters, d.mean,
                    d.low if d.bounded else None, d.high if d.bounded else None,
                    cell.clean_accuracy - other.clean_accuracy))
    return tuple(out)


# -- the entry point ---------------------------------------------------------------------------


def _repricing(manifest: Mapping[str, Any], overrides: Sequence[str]
               ) -> tuple[Deployment, ReferenceMemory, tuple[float, ...]]:
    source = str(manifest["source"])
    for o in overrides:
        section = o.split("=", 1)[0].split(".", 1)[0].strip()
        if section not in REPRICING_SECTIONS:
            raise RunnerError(
                f"--set {o}: only {', '.join(REPRICING_SECTIONS)} can change after a sweep "
                "(they reprice it); anything else changes what is evaluated: use memsim run")
    document = apply_config_overrides(dict(manifest["config"]), overrides, source)
    root = Node(document, source)
    deployment = parse_deployment(root.child("deployment", document.get("deployment")))
    reference = ReferenceMemory()
    if document.get("reference") is not None:
        snapshot = manifest.get("reference_hash")
        if snapshot is not None and not any(o.strip().startswith("reference")
                                            for o in overrides):
            # the reference as swept, from the manifest's copy of its device file
            d = manifest["memory_devices"][snapshot]
            knobs = document["reference"].get("knobs") or {}
            reference = ReferenceMemory(
                DeviceRef(d["name"], d["file"], parse_device(d["document"], d["file"]),
                          snapshot, d["document"]), {str(k): float(v) for k, v in knobs.items()})
        else:
            reference = parse_reference(root.child("reference", document["reference"]))
    budgets = DEFAULT_BUDGETS_POINTS
    if document.get("pareto") is not None:
        budgets = parse_budgets(root.child("pareto", document["pareto"]))
    return deployment, reference, budgets


def aggregate(out_dir: str | Path, overrides: Sequence[str] = ()) -> SweepResults:
    """Aggregates, energies, fronts and budgets of a sweep from its manifest and store;
    `overrides` (`deployment.inference_rate_hz=10`, `reference.device=sram-14nm`, ...)
    reprice it without evaluating anything."""
    out = Path(out_dir)
    manifest = read_manifest(out)
    deployment, reference, budgets = _repricing(manifest, overrides)
    pricer = _Pricer(manifest, deployment, reference)
    c = manifest["chips"]
    rule = adaptive_rule(ChipRule(c["batch"], c["min"], c["max"], c["target_half_width"],
                                  c["confidence"]))
    with ResultStore.for_reading(out / STORE_FILENAME) as store:
        clean: dict[str, CleanResult] = {}
        for m in manifest["models"]:
            row = store.get(m["clean_key"])
            if row is None:
                raise RunnerError(f"{out}: the clean evaluation of model {m['name']} is missing "
                                  "from the store")
            clean[m["name"]] = CleanResult.from_json(
                m["name"], row.outputs, f"{store.path}: row {m['clean_key'][:12]}")
        plans = [CellPlan.from_json(cell) for cell in manifest["cells"]]
        cells = [_aggregate_cell(store, plan, rule, manifest["trials"],
                                 clean[plan.model].accuracy, pricer) for plan in plans]
    fronts = _fronts(cells)
    on_front = {i for members in fronts.values() for i in members}
    cells = [replace(cell, on_front=True) if i in on_front else cell
             for i, cell in enumerate(cells)]
    clean_acc = {name: r.accuracy for name, r in clean.items()}
    data_of = {m["name"]: m["data_hash"] for m in manifest["models"]}
    devices = {label: {**d, "document": manifest["memory_devices"][d["spec_hash"]]["document"],
                       "scope": pricer.devices[d["spec_hash"]].spec.energy.scope.value}
               for label, d in manifest["devices"].items()}
    ref_device = pricer.reference_device
    return SweepResults(
        name=manifest["name"], out_dir=out, cells=tuple(cells), clean=clean, fronts=fronts,
        budgets=_budgets(cells, clean_acc, budgets, deployment),
        device_savings=_device_savings(cells, clean_acc, budgets), budgets_points=budgets,
        complete=all(cell.complete for cell in cells), dry_run=bool(manifest["dry_run"]),
        config=manifest["config"], deployment=deployment, reference=reference.label(),
        reference_scope=None if ref_device is None else ref_device.spec.energy.scope.value,
        knob_trades=_knob_trades(cells, devices, pricer), devices=devices,
        device_models={label: pricer.devices[d["spec_hash"]] for label, d in devices.items()},
        architectures={m["name"]: m.get("architecture", m["model_hash"])
                       for m in manifest["models"]},
        paired=paired_differences(cells, data_of), overrides=tuple(overrides))
