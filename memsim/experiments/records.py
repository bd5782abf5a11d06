"""The records a sweep's results flow through, each defined once with its columns.

A result takes three typed shapes on its way from a worker to the report, and every file
and picture reads one of them:

- `TrialOutcome`: one read of every memory of a chip and one pass over the test images.
- `ChipRecord`: one chip at one operating point, all its trials; this is a store row (its
  JSON form, one list per `TRIAL_FIGURES` name, is what `results.sqlite` holds).
- `CellResult`: one cell aggregated over its chips and priced under the deployment; one row
  of `results.csv`, whose columns are the record's own fields (`CellResult.columns`), and
  what the fronts, budgets, report and plots read.

`CleanResult` is a model's fault-free store row. Energies are picojoules per inference,
accuracies fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from memsim.errors import MemsimError

__all__ = [
    "TRIAL_FIGURES",
    "CellResult",
    "ChipRecord",
    "CleanResult",
    "RecordError",
    "TrialOutcome",
]


class RecordError(MemsimError):
    """A stored row that does not hold the record it should (a corrupted or foreign store)."""


@dataclass(frozen=True)
class TrialOutcome:
    """One trial: every memory of a chip read once, the model run on what was read."""

    chip: int
    trial: int
    accuracy: float
    mlm: float
    mlm_normalised: float
    flips_zero_to_one: int
    flips_one_to_zero: int
    stuck_cells: int
    residual_bit_errors: int
    corrected_words: int
    uncorrectable_words: int
    under_test_bit_errors: int = 0
    """Physical bits read wrong in the first memory (the device under test)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


TRIAL_FIGURES = tuple(f.name for f in fields(TrialOutcome) if f.name not in ("chip", "trial"))
"""The per-trial figures a store row holds, one list each."""


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


@dataclass(frozen=True)
class ChipRecord:
    """One chip at one operating point: its trials, in trial order (a store row)."""

    chip: int
    trials: tuple[TrialOutcome, ...]
    device_ber: float | None = None
    """The device's bit error rate at the point (the runner adds it: the worker does not
    price or rank points)."""

    @classmethod
    def of(cls, outcomes: Sequence[TrialOutcome]) -> ChipRecord:
        chips = {o.chip for o in outcomes}
        if len(chips) != 1:
            raise ValueError(f"a chip record holds one chip's trials, got chips {sorted(chips)}")
        return cls(chips.pop(), tuple(outcomes))

    def to_json(self) -> dict[str, Any]:
        """The store's form: one list per figure (and `device_ber` when known)."""
        out: dict[str, Any] = {name: [getattr(t, name) for t in self.trials]
                               for name in TRIAL_FIGURES}
        if self.device_ber is not None:
            out["device_ber"] = self.device_ber
        return out

    @classmethod
    def from_json(cls, outputs: Mapping[str, Any], chip: int, where: str) -> ChipRecord:
        """Read a store row back; `where` names it in errors."""
        missing = [n for n in TRIAL_FIGURES if n not in outputs]
        if missing:
            raise RecordError(f"{where}: not a chip record (no {', '.join(missing)})")
        lengths = {len(outputs[n]) for n in TRIAL_FIGURES}
        if len(lengths) != 1:
            raise RecordError(f"{where}: its per-trial lists differ in length")
        n = lengths.pop()
        trials = tuple(TrialOutcome(chip, t, *(outputs[name][t] for name in TRIAL_FIGURES))
                       for t in range(n))
        ber = outputs.get("device_ber")
        return cls(chip, trials, None if ber is None else float(ber))

    @property
    def accuracies(self) -> list[float]:
        return [float(t.accuracy) for t in self.trials]

    def mean(self, figure: str) -> float:
        """Mean over the trials of one of `TRIAL_FIGURES`."""
        return _mean([float(getattr(t, figure)) for t in self.trials])


@dataclass(frozen=True)
class CleanResult:
    """A model's fault-free figures on the test images (its clean store row)."""

    model: str
    accuracy: float
    mlm: float
    mlm_normalised: float
    n_test: int

    def to_json(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "mlm": self.mlm,
                "mlm_normalised": self.mlm_normalised, "n_test": self.n_test}

    @classmethod
    def from_json(cls, model: str, outputs: Mapping[str, Any], where: str) -> CleanResult:
        try:
            return cls(model, float(outputs["accuracy"]), float(outputs["mlm"]),
                       float(outputs["mlm_normalised"]), int(outputs["n_test"]))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"{where}: not a clean evaluation ({e!r})") from None


def _ratio(a: float, b: float) -> float:
    if b == 0.0:
        return 1.0 if a == 0.0 else math.inf
    return a / b


_NOT_A_COLUMN = {"column": False}
# knobs become one `knob.<name>` column each; the rest are for the fronts and the report


@dataclass(frozen=True)
class CellResult:
    """One cell's aggregate: accuracy interval over chips (chips as clusters), means over chips
    of the per-chip means of the other figures, and the energy per inference under the
    deployment. Field order is `results.csv`'s column order (`columns`)."""

    model: str
    scenario: str
    device: str
    placement: str
    protection: str
    control_knobs: Mapping[str, float] = field(metadata=_NOT_A_COLUMN)
    environment_knobs: Mapping[str, float] = field(metadata=_NOT_A_COLUMN)
    chips: int
    trials: int
    complete: bool
    clean_accuracy: float
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    accuracy_half_width: float | None
    mlm: float | None
    mlm_normalised: float | None
    device_ber: float
    under_test_ber: float | None
    bit_errors: float | None
    residual_bit_errors: float | None
    corrected_words: float | None
    uncorrectable_words: float | None
    data_bits: int
    stored_bits: int
    reliable_bits: int
    energy_scope: str
    """`array` or `cell` (the devices' `energy.scope`), `mixed` when the placement's memories
    differ."""
    energy_pj: float
    energy_read_pj: float
    energy_reliable_read_pj: float
    energy_static_pj: float
    energy_refresh_pj: float
    energy_write_pj: float
    energy_nominal_pj: float
    """The same placement with the device under test at nominal control knobs."""
    relative_to_nominal: float = field(init=False)
    """Energy over the same placement's at nominal control knobs (1 when both are 0)."""
    reference_energy_pj: float | None
    """The reference memory's energy for the same bits (None: not comparable, another
    scope)."""
    relative_energy: float | None = field(init=False)
    """Energy over the reference memory's (None when not comparable)."""
    energy_assumed: bool
    energy_assumed_figures: tuple[str, ...]
    on_front: bool
    energy_under_test_nominal_pj: float = field(metadata=_NOT_A_COLUMN)
    """The memory under test's own energy at nominal knobs (0: its device has no energy
    model, so the cell stays out of the Pareto fronts)."""
    write_pj_per_programming: float = field(metadata=_NOT_A_COLUMN)
    """Energy of one programming of every stored bit (what `inferences_per_write` divides)."""
    chip_accuracy: tuple[float, ...] = field(metadata=_NOT_A_COLUMN)
    """Mean accuracy of each chip used, chips 0, 1, ... (what `paired` pairs models by)."""

    def __post_init__(self) -> None:
        # derived, so that `dataclasses.replace` keeps them consistent with the energies
        object.__setattr__(self, "relative_to_nominal",
                           _ratio(self.energy_pj, self.energy_nominal_pj))
        object.__setattr__(self, "relative_energy",
                           None if self.reference_energy_pj is None
                           else _ratio(self.energy_pj, self.reference_energy_pj))

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """`results.csv`'s columns after the knob columns: every field but the knobs and the
        internals (the identifying five come first, then the knobs go between)."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("column", True))

    @property
    def has_energy_model(self) -> bool:
        return self.energy_under_test_nominal_pj > 0.0

    @property
    def knobs(self) -> dict[str, float]:
        return {**self.control_knobs, **self.environment_knobs}

    def same_chips(self, other: CellResult) -> bool:
        """Whether chip c of both is the same simulated chip holding the same bits."""
        return (self.model, self.scenario, self.device, self.placement, self.protection) == \
            (other.model, other.scenario, other.device, other.placement, other.protection)

    @property
    def priced(self) -> bool:
        """Measured and with an energy model: a candidate for fronts and budgets."""
        return self.chips > 0 and self.has_energy_model and self.accuracy is not None
