"""A sweep's files: `results.csv` (one row per cell), `pareto.csv` (the fronts), `budgets.csv`
(the cheapest point within each accuracy budget), `paired.csv` (models compared on the same
chips), then the plots and `report.md` (`memsim.experiments.report`) and the interactive
`report.html` (`memsim.experiments.html_report`).

Every CSV has one column per knob, `knob.<name>` (empty where a device has no such knob),
floats as `repr` and rows in config order, so files are byte-identical across executors and
resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memsim.experiments.aggregation import SweepResults
from memsim.experiments.records import CellResult
from memsim.experiments.store import write_csv

__all__ = [
    "BUDGETS_CSV",
    "CELL_NAMES",
    "PAIRED_CSV",
    "PARETO_CSV",
    "RESULTS_CSV",
    "knob_names",
    "result_rows",
    "write_outputs",
]

RESULTS_CSV = "results.csv"
PARETO_CSV = "pareto.csv"
BUDGETS_CSV = "budgets.csv"
PAIRED_CSV = "paired.csv"

CELL_NAMES = ("model", "scenario", "device", "placement", "protection")
"""The columns naming a cell; every CSV puts the knob columns right after them."""
_FRONT = ("energy_scope", "energy_pj", "relative_energy", "relative_to_nominal", "accuracy",
          "accuracy_low", "accuracy_high", "clean_accuracy", "energy_assumed")
_BUDGET = ("budget_points", "judged_by", "clean_accuracy", "energy_scope", "device",
           "placement", "protection")
_BUDGET_AFTER = ("accuracy", "accuracy_low", "accuracy_high", "energy_pj", "relative_energy",
                 "relative_energy_optimistic", "cheapest_from_inferences_per_write",
                 "cheapest_to_inferences_per_write", "energy_assumed")
_PAIRED = ("model", "versus", "scenario", "device", "placement", "protection")
_PAIRED_AFTER = ("chips", "difference", "difference_low", "difference_high",
                 "clean_difference")


def knob_names(cells: Sequence[CellResult]) -> list[str]:
    """Every knob of the cells' devices under test, in order of first appearance."""
    names: dict[str, None] = {}
    for c in cells:
        for k in (*c.control_knobs, *c.environment_knobs):
            names.setdefault(k)
    return list(names)


def _knob_cells(knobs: Sequence[str], values: dict[str, float]) -> list[Any]:
    return [values.get(k) for k in knobs]


def result_rows(cells: Sequence[CellResult]) -> tuple[list[str], list[list[Any]]]:
    """`results.csv`'s header and rows (one per cell): the cell's names, one `knob.<name>`
    column per knob of the sweep (empty where a device has no such knob), then every field of
    `CellResult.columns`. `memsim.results` returns the same table."""
    knobs = knob_names(cells)
    after = [n for n in CellResult.columns() if n not in CELL_NAMES]
    header = [*CELL_NAMES, *(f"knob.{k}" for k in knobs), *after]
    return header, [[*(getattr(c, n) for n in CELL_NAMES), *_knob_cells(knobs, c.knobs),
                     *(getattr(c, n) for n in after)] for c in cells]


def write_outputs(out_dir: str | Path, results: SweepResults, *, command: str = "",
                  elapsed_s: float | None = None) -> list[Path]:
    """Write the CSVs, the plots, `report.md` and `report.html`; return the paths."""
    from memsim.experiments.html_report import write_html_report
    from memsim.experiments.report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = results.cells
    knobs = knob_names(cells)
    knob_header = [f"knob.{k}" for k in knobs]
    paths = [write_csv(out / RESULTS_CSV, *result_rows(cells))]
    front_rows = []
    for members in results.fronts.values():
        for i in members:
            f = cells[i]
            front_rows.append([*(getattr(f, n) for n in CELL_NAMES), *_knob_cells(knobs, f.knobs),
                               *(getattr(f, n) for n in _FRONT)])
    paths.append(write_csv(out / PARETO_CSV, [*CELL_NAMES, *knob_header, *_FRONT], front_rows))
    budget_rows = []
    for b in results.budgets:
        c = cells[b.cell] if b.cell is not None else None
        o = cells[b.optimistic] if b.optimistic is not None else None
        span = b.cheapest_while or (None, None)
        budget_rows.append([
            b.model, b.scenario, b.budget_points, "accuracy_low", b.clean_accuracy, b.scope,
            *((c.device, c.placement, c.protection) if c else (None, None, None)),
            *_knob_cells(knobs, c.knobs if c else {}),
            *((c.accuracy, c.accuracy_low, c.accuracy_high, c.energy_pj, c.relative_energy)
              if c else (None,) * 5),
            o.relative_energy if o else None, span[0], span[1],
            c.energy_assumed if c else None])
    paths.append(write_csv(out / BUDGETS_CSV, [
        "model", "scenario", *_BUDGET, *knob_header, *_BUDGET_AFTER], budget_rows))
    paths.append(write_csv(out / PAIRED_CSV, [*_PAIRED, *knob_header, *_PAIRED_AFTER], [
        [d.model, d.versus, d.scenario, d.device, d.placement, d.protection,
         *_knob_cells(knobs, {**d.control_knobs, **d.environment_knobs}), d.chips,
         d.difference, d.low, d.high, d.clean_difference] for d in results.paired]))
    paths.extend(write_report(out, results, command=command, elapsed_s=elapsed_s))
    paths.append(write_html_report(out, results, command=command))
    return paths
