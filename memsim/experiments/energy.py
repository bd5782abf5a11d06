"""Energy per inference of a placement of weights in memories, and its provenance.

For each memory holding weights (a `MemoryUse`: the protection overhead of the image it holds,
the device at the operating point's knobs and at nominal knobs), one inference costs

    read_pj          = r · faulty_data_bits · E_read(at)
    check_read_pj    = r · check_bits       · E_read(at)   ECC check bits, in the same memory
    padding_read_pj  = r · padding_bits     · E_read(at)   zero bits filling the last codewords
    reliable_read_pj = r · reliable_bits    · E_read(reliable_at)   protected bits
    static_pj        = t · (P_static(at) · C + P_static(reliable_at) · C_rel) · 1e9
    refresh_pj       = t · (P_refresh(at) · C + P_refresh(reliable_at) · C_rel) · 1e9
    write_pj         = w · (stored_bits · E_write(at) + reliable_bits · E_write(reliable_at))
    total_pj         = the sum

with r the reads of every stored bit per inference (`reads_per_inference`, 1 when the weights
are read once per inference), E_read in pJ/bit, P in mW/MiB, t the inference time in seconds
(mW · s = mJ = 1e9 pJ), C the stated capacity of the memory in MiB (default: the image's
stored bits, 1 MiB = 8·2^20 bits) and C_rel that of the reliable bank (default: its bits).
`reliable_at` is the device that holds protected bits, at its nominal knobs (default: the
memory's own device at nominal). w is how often each bit is written (programmed) per
inference: 1/N when one programming of the weights serves N inferences (a refresh or a
reprogramming of drifting cells every N inferences), 0 (the default) to leave writes out. The
ECC decoder's logic is not counted.

The same placement at nominal knobs (`at` replaced by `nominal`, all else equal) gives the
reference for `InferenceEnergy.relative_to_nominal` (`MemoryUse.nominal`: control knobs at
nominal, environment knobs at the scenario's values).

Provenance: every energy figure that contributes (a nonzero bit count or capacity times time)
adds the provenance tags of its curve's parameters (`OperatingPoint.energy.provenance`).
`InferenceEnergy.assumed` is true when any such tag is `assumed` or `unspecified` (a number
given without provenance is no better than an assumption); `assumed_figures` names them. A
static power that the device file does not give counts as `unspecified` whenever static power
is charged: every powered array leaks, so its 0 is an omission (or a power-gated array), not
a figure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from memsim.errors import MemsimError
from memsim.memory.protection import ProtectionOverhead
from memsim.physics.device import OperatingPoint

__all__ = [
    "BITS_PER_MIB",
    "EnergyBreakdown",
    "EnergyError",
    "InferenceEnergy",
    "MemoryUse",
    "inference_energy",
]

BITS_PER_MIB = 8 * 2**20
_PJ_PER_MJ = 1e9
_WEAK_TAGS = frozenset({"assumed", "unspecified"})


class EnergyError(MemsimError):
    """Inconsistent inputs to an energy figure."""


@dataclass(frozen=True)
class MemoryUse:
    """One memory of a placement.

    Attributes:
        overhead: where the image's bits live (`ProtectedImage.overhead`).
        at: the memory's device at the operating point's knobs.
        nominal: the same device with its control knobs at nominal and its environment
            knobs at the scenario's values (the reference of `relative_to_nominal`).
        reliable_at: the device of the reliable bank that holds protected bits, at its
            nominal knobs (None: `nominal`).
        capacity_mib: the memory's stated capacity in MiB, for static and refresh power
            (None: exactly the image's stored bits).
        reliable_capacity_mib: the reliable bank's capacity in MiB (None: exactly its bits).
        reads_per_inference: how often each stored bit is read per inference (1: the
            weights are read once per inference).
        name: a label for `assumed_figures` (default: the device name).
        writes_per_inference: how often each stored bit is written per inference (1/N when
            one programming serves N inferences; 0: writes left out).
    """

    overhead: ProtectionOverhead
    at: OperatingPoint
    nominal: OperatingPoint
    reliable_at: OperatingPoint | None = None
    capacity_mib: float | None = None
    reliable_capacity_mib: float | None = None
    reads_per_inference: float = 1.0
    name: str = ""
    writes_per_inference: float = 0.0

    def __post_init__(self) -> None:
        label = self.label
        if self.at.device != self.nominal.device:
            raise EnergyError(f"{label}: nominal point is of device {self.nominal.device!r}, "
                              f"the operating point of {self.at.device!r}")
        if not (math.isfinite(self.reads_per_inference) and self.reads_per_inference >= 0.0):
            raise EnergyError(f"{label}: reads_per_inference must be finite and >= 0, got "
                              f"{self.reads_per_inference!r}")
        if not (math.isfinite(self.writes_per_inference) and self.writes_per_inference >= 0.0):
            raise EnergyError(f"{label}: writes_per_inference must be finite and >= 0, got "
                              f"{self.writes_per_inference!r}")
        o = self.overhead
        for what, capacity, bits in (("capacity_mib", self.capacity_mib, o.stored_bits),
                                     ("reliable_capacity_mib", self.reliable_capacity_mib,
                                      o.reliable_bits)):
            if capacity is None:
                continue
            if not math.isfinite(capacity) or capacity < 0.0:
                raise EnergyError(f"{label}: {what} must be finite and >= 0, got {capacity!r}")
            if capacity * BITS_PER_MIB < bits:
                raise EnergyError(f"{label}: {what}={capacity:g} MiB cannot hold {bits} bits "
                                  f"({bits / BITS_PER_MIB:.6g} MiB)")

    @property
    def label(self) -> str:
        return self.name or self.at.device

    @property
    def capacity_bits(self) -> float:
        if self.capacity_mib is None:
            return float(self.overhead.stored_bits)
        return self.capacity_mib * BITS_PER_MIB

    @property
    def reliable_capacity_bits(self) -> float:
        if self.reliable_capacity_mib is None:
            return float(self.overhead.reliable_bits)
        return self.reliable_capacity_mib * BITS_PER_MIB


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of one inference in picojoules, by cause (see the module docstring)."""

    read_pj: float
    check_read_pj: float
    padding_read_pj: float
    reliable_read_pj: float
    static_pj: float
    refresh_pj: float
    write_pj: float = 0.0

    @property
    def total_pj(self) -> float:
        return math.fsum((self.read_pj, self.check_read_pj, self.padding_read_pj,
                          self.reliable_read_pj, self.static_pj, self.refresh_pj,
                          self.write_pj))

    def __add__(self, other: EnergyBreakdown) -> EnergyBreakdown:
        return EnergyBreakdown(*(getattr(self, f.name) + getattr(other, f.name)
                                 for f in dataclasses.fields(self)))

    def to_dict(self) -> dict[str, float]:
        return {**dataclasses.asdict(self), "total_pj": self.total_pj}


_ZERO = EnergyBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class InferenceEnergy:
    """Energy per inference at an operating point and at nominal knobs.

    `breakdown` and `nominal` sum over the memories; `per_memory` holds each memory's part
    at the operating point; `provenance` the tags of the figures used (strongest first);
    `assumed_figures` the figures tagged assumed or unspecified."""

    breakdown: EnergyBreakdown
    nominal: EnergyBreakdown
    per_memory: tuple[EnergyBreakdown, ...]
    provenance: tuple[str, ...]
    assumed_figures: tuple[str, ...]

    @property
    def total_pj(self) -> float:
        return self.breakdown.total_pj

    @property
    def nominal_pj(self) -> float:
        return self.nominal.total_pj

    @property
    def relative_to_nominal(self) -> float:
        """total / total at nominal knobs (1 when both are zero, inf over a zero nominal)."""
        if self.nominal_pj == 0.0:
            return 1.0 if self.total_pj == 0.0 else math.inf
        return self.total_pj / self.nominal_pj

    @property
    def assumed(self) -> bool:
        return bool(self.assumed_figures)


def _breakdown(m: MemoryUse, at: OperatingPoint, seconds: float) -> EnergyBreakdown:
    o, r = m.overhead, m.reads_per_inference
    rel = m.reliable_at or m.nominal
    e_read = at.energy.read_energy_pj_per_bit
    c, c_rel = m.capacity_bits / BITS_PER_MIB, m.reliable_capacity_bits / BITS_PER_MIB
    return EnergyBreakdown(
        read_pj=r * o.faulty_data_bits * e_read,
        check_read_pj=r * o.check_bits * e_read,
        padding_read_pj=r * o.padding_bits * e_read,
        reliable_read_pj=r * o.reliable_bits * rel.energy.read_energy_pj_per_bit,
        static_pj=seconds * _PJ_PER_MJ * (at.energy.static_power_mw_per_mib * c
                                          + rel.energy.static_power_mw_per_mib * c_rel),
        refresh_pj=seconds * _PJ_PER_MJ * (at.energy.refresh_power_mw_per_mib * c
                                           + rel.energy.refresh_power_mw_per_mib * c_rel),
        write_pj=m.writes_per_inference * o.write_energy_pj(at, rel),
    )


def _figures_used(m: MemoryUse, seconds: float) -> list[tuple[str, OperatingPoint, str]]:
    """(label, operating point, energy quantity) of every figure with a nonzero weight."""
    rel = m.reliable_at or m.nominal
    used: list[tuple[str, OperatingPoint, str]] = []
    if m.reads_per_inference > 0 and m.overhead.stored_bits > 0:
        used.append((m.label, m.at, "read_energy_pj_per_bit"))
    if m.reads_per_inference > 0 and m.overhead.reliable_bits > 0:
        used.append((f"{m.label} reliable bank", rel, "read_energy_pj_per_bit"))
    if m.writes_per_inference > 0 and m.overhead.stored_bits > 0:
        used.append((m.label, m.at, "write_energy_pj_per_bit"))
    if m.writes_per_inference > 0 and m.overhead.reliable_bits > 0:
        used.append((f"{m.label} reliable bank", rel, "write_energy_pj_per_bit"))
    if seconds > 0:
        for label, op, bits in ((m.label, m.at, m.capacity_bits),
                                (f"{m.label} reliable bank", rel, m.reliable_capacity_bits)):
            if bits > 0:
                used.append((label, op, "static_power_mw_per_mib"))
                used.append((label, op, "refresh_power_mw_per_mib"))
    return used


_TAG_ORDER = ("measured", "derived", "simulated", "assumed", "unspecified")


def inference_energy(memories: MemoryUse | Sequence[MemoryUse],
                     inference_time_s: float) -> InferenceEnergy:
    """Energy of one inference over the memories of a placement (one `MemoryUse` or several)
    at the operating point and at nominal knobs, with the provenance of the figures used; see
    the module docstring for the formula. `inference_time_s` is t, the time that static and
    refresh power are charged for."""
    uses = (memories,) if isinstance(memories, MemoryUse) else tuple(memories)
    if not uses:
        raise EnergyError("inference_energy needs at least one memory")
    if not (math.isfinite(inference_time_s) and inference_time_s >= 0.0):
        raise EnergyError(f"inference_time_s must be finite and >= 0, got {inference_time_s!r}")
    per_memory = tuple(_breakdown(m, m.at, inference_time_s) for m in uses)
    total, nominal = _ZERO, _ZERO
    for m, part in zip(uses, per_memory, strict=True):
        total = total + part
        nominal = nominal + _breakdown(m, m.nominal, inference_time_s)
    tags: set[str] = set()
    weak: list[str] = []
    for m in uses:
        for label, op, quantity in _figures_used(m, inference_time_s):
            figure_tags = set(op.energy.provenance.get(quantity, ()))
            tags |= figure_tags
            name = f"{label}: {quantity}"
            if not figure_tags and quantity == "static_power_mw_per_mib":
                # every powered array leaks: a static power the file does not give is 0 by
                # omission (a power-gated array), not a figure
                tags.add("unspecified")
                name += " (not given: 0)"
                figure_tags = {"unspecified"}
            if figure_tags & _WEAK_TAGS and name not in weak:
                weak.append(name)
    order = {t: i for i, t in enumerate(_TAG_ORDER)}
    return InferenceEnergy(total, nominal, per_memory,
                           tuple(sorted(tags, key=lambda t: (order.get(t, len(order)), t))),
                           tuple(weak))
