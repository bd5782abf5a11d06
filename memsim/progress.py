"""Progress bars for training and sweeps, shown where someone watches.

A terminal gets tqdm's text bar; a Jupyter notebook its widget (`tqdm.auto`), although the
kernel's stderr is no terminal; logs and CI (stderr redirected) get none.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["in_notebook", "progress_bar"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (its output goes to a notebook)."""
    return "ipykernel" in sys.modules


def progress_bar(total: int, desc: str, unit: str, **options: Any) -> Any:
    """A tqdm bar of `total` steps (0: unknown yet), or a disabled one where nobody watches."""
    if in_notebook():
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(total=total, desc=desc, unit=unit, **options)
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=None, **options)
