"""A sweep's results as a pandas DataFrame: `memsim.results(DIR)`.

The table is `results.csv`'s (`outputs.result_rows`: one row per cell, the cell's names, one
`knob.<name>` column per knob, then every `CellResult` column), typed: numbers as floats or
integers, missing values as NaN or None. `per_chip=True` gives one row per chip of each cell
instead, with its accuracy (the mean over its trials). pandas is an optional dependency
(`pip install 'memsim[dataframe]'`); everything else in memsim works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memsim.errors import MemsimError

if TYPE_CHECKING:
    import pandas

__all__ = ["results"]

PER_CHIP_COLUMNS = ("chip", "chip_accuracy", "clean_accuracy", "device_ber", "energy_pj",
                    "relative_energy", "on_front")
"""After the cell's names and knobs, the columns of a `per_chip=True` row."""


def results(sweep_dir: str | Path, *, per_chip: bool = False,
            overrides: Sequence[str] = ()) -> pandas.DataFrame:
    """The results of the sweep in `sweep_dir` (the `--out` of `memsim run`) as a DataFrame.

    `overrides` reprice the sweep as `memsim pareto --set` does (`deployment=streamed`, ...),
    without evaluating anything. Raises `MemsimError` when pandas is missing or the folder
    holds no sweep.
    """
    try:
        import pandas as pd
    except ImportError:
        raise MemsimError("memsim.results needs pandas: pip install 'memsim[dataframe]' (or "
                          "pandas)") from None
    from memsim.experiments.aggregation import aggregate
    from memsim.experiments.outputs import CELL_NAMES, result_rows

    cells = aggregate(Path(sweep_dir), overrides).cells
    header, rows = result_rows(cells)
    table = pd.DataFrame(rows, columns=header)
    if not per_chip:
        return table
    names = [h for h in header if h in CELL_NAMES or h.startswith("knob.")]
    chip_rows = []
    for row, cell in zip(rows, cells, strict=True):
        for chip, accuracy in enumerate(cell.chip_accuracy):
            chip_rows.append([*row[:len(names)], chip, accuracy, cell.clean_accuracy,
                              cell.device_ber, cell.energy_pj, cell.relative_energy,
                              cell.on_front])
    return pd.DataFrame(chip_rows, columns=[*names, *PER_CHIP_COLUMNS])
