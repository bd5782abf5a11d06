"""Progress bars for training and sweeps, shown where someone watches.

A terminal gets tqdm's text bar; a Jupyter notebook its widget (`tqdm.auto`, with ipywidgets)
or the text bar (without), although the kernel's stderr is no terminal; logs and CI (stderr
redirected) get none.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

__all__ = ["in_notebook", "progress_bar"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (its output goes to a notebook)."""
    return "ipykernel" in sys.modules


def progress_bar(total: int, desc: str, unit: str, **options: Any) -> Any:
    """A tqdm bar of `total` steps (0: unknown yet), or a disabled one where nobody watches."""
    from tqdm import tqdm

    if in_notebook():
        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.auto import tqdm as auto_tqdm

            return auto_tqdm(total=total, desc=desc, unit=unit, **options)
        # without ipywidgets tqdm.auto warns and falls back to this text bar anyway; a
        # notebook renders its carriage returns
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, **options)

    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=None, **options)
