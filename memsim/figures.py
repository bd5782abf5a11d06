"""Figures made outside pyplot's state, for the pictures memsim writes.

Writing a report from a notebook must neither switch the notebook's backend (pyplot's `use`
would turn its later `plt.show()` into nothing) nor show the report's figures in its cells:
memsim's figures are `matplotlib.figure.Figure` objects that pyplot never sees, saved with
the Agg canvas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Figures", "figures"]


class Figures:
    """The few pyplot calls memsim's pictures use, on figures outside pyplot."""

    def __init__(self) -> None:
        import matplotlib

        self.rcParams = matplotlib.rcParams

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
                 **kwargs: Any) -> tuple[Any, Any]:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(nrows, ncols, **kwargs)

    @staticmethod
    def get_cmap(name: str) -> Any:
        import matplotlib

        return matplotlib.colormaps[name]

    @staticmethod
    def close(fig: Any) -> None:
        """Nothing to release: pyplot holds no reference to these figures."""
        del fig


def figures() -> Figures:
    return Figures()
