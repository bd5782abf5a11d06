"""The report of a sweep: `report.md` with the answer first, and its pictures.

Everything here reads `SweepResults` (the aggregation's fronts, budgets and savings); nothing
is recomputed. Output, in the sweep's directory: `report.md`, `pareto.png` (every device, the
noise-aware front labelled with its knob values), `savings.png` (one panel per device: energy
relative to its nominal against accuracy), `accuracy_vs_knob_<device>.png`,
`ber_vs_knob.png`, and `devices.md` (each device's description and citations).

The answer's sections are built once as blocks (`answer_blocks`, `savings_blocks`) that
`report.md` and `report.html` (`memsim.experiments.html_report`) both render.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memsim.experiments.aggregation import BudgetChoice, CellResult, SweepResults
from memsim.files import atomic_savefig, atomic_write_text
from memsim.spec.deployment import DEPLOYMENT_PRESETS, WeightResidence
from memsim.spec.device import KnobSpec
from memsim.spec.experiment import UNDER_TEST
from memsim.spec.names import format_knobs

__all__ = ["BELOW_POINTS", "BER_FLOOR", "PairedSummary", "ReportDevices", "write_report"]

BER_FLOOR = 1e-15
"""BERs below this are drawn at it on the log axes of the pictures and of report.html."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _plt() -> Any:
    from memsim.figures import figures

    return figures()


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def _interval(cells: Sequence[CellResult]) -> tuple[Any, Any, Any]:
    y = np.array([100 * (c.accuracy or 0.0) for c in cells])
    lo = np.array([100 * c.accuracy_low if c.accuracy_low is not None else math.nan
                   for c in cells])
    hi = np.array([100 * c.accuracy_high if c.accuracy_high is not None else math.nan
                   for c in cells])
    lo = np.where(np.isfinite(lo), lo, y)
    hi = np.where(np.isfinite(hi), hi, y)
    return y, np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)


BELOW_POINTS = 12.0
"""Accuracy axes end this many points below the lowest clean accuracy; lower points are drawn
on the axis as downward triangles and counted in the panel."""


def _floor_axis(ax: Any, cells: Sequence[CellResult], color: str = "black") -> float:
    """Set the accuracy axis [floor, 100.5] and mark the points below it."""
    clean = min((c.clean_accuracy for c in cells), default=1.0)
    floor = max(0.0, 100 * clean - BELOW_POINTS)
    ax.set_ylim(floor, 100.5)
    return floor


def _mark_below(ax: Any, x: Sequence[float], y: Any, floor: float, color: Any) -> int:
    below = [xv for xv, yv in zip(x, y, strict=True) if yv < floor]
    if below:
        ax.scatter(below, [floor] * len(below), marker="v", color=color, s=30, zorder=5,
                   clip_on=False)
    return len(below)


def _note_below(ax: Any, n: int, floor: float) -> None:
    if n:
        ax.text(0.01, 0.02, f"▼ {n} point(s) below {floor:.0f} %, drawn on the axis",
                transform=ax.transAxes, fontsize=7, va="bottom")


def _legend_space(fig: Any, entries: int, columns: int) -> float:
    """Fraction of the figure's height a bottom legend of `entries` in `columns` needs."""
    rows = math.ceil(entries / columns)
    return min(0.4, (0.2 * rows + 0.15) / float(fig.get_figheight()))


def _grid(plt: Any, n: int, width: float, height: float, cols: int = 2,
          **kwargs: Any) -> tuple[Any, Any]:
    cols = max(1, min(n, cols))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             **kwargs)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


class ReportDevices:
    """The sweep's devices by label, as the aggregation built them."""

    def __init__(self, results: SweepResults) -> None:
        self.info = results.devices
        self.devices = results.device_models

    def knob(self, label: str, name: str) -> KnobSpec:
        return self.devices[label].spec.knob(name)

    def swept(self, label: str) -> list[str]:
        return list(self.info[label]["swept"])

    def x_knob(self, label: str, cells: Sequence[CellResult]) -> str | None:
        """The knob to plot accuracy against: the first swept control knob, else an
        environment knob that differs between scenarios, else None."""
        swept = self.swept(label)
        if swept:
            return swept[0]
        for name in sorted({k for c in cells for k in c.environment_knobs}):
            if len({c.environment_knobs.get(name) for c in cells}) > 1:
                return name
        return None

    def swept_knobs(self, cell: CellResult) -> dict[str, float]:
        return {k: cell.control_knobs[k] for k in self.swept(cell.device)
                if k in cell.control_knobs}


def _variant(results: SweepResults, cell: CellResult) -> str:
    """The storage variant's label: the placement and protection where the sweep has several
    of them."""
    parts: list[str] = []
    if results.several_placements:
        parts.append(cell.placement)
    if results.several_protections:
        parts.append(cell.protection)
    return ", ".join(parts)


def _first_variant(results: SweepResults) -> tuple[str, str]:
    c = results.cells[0]
    return c.placement, c.protection


# -- pictures ----------------------------------------------------------------------------------


def accuracy_vs_knob(results: SweepResults, devices: ReportDevices, label: str, path: Path) -> Path:
    """One panel per storage variant; a line per model (colour) and scenario (line style),
    against the swept knob (or, for a device without one, the environment knob the scenarios
    change)."""
    plt = _plt()
    cells = [c for c in results.cells if c.device == label and c.accuracy is not None]
    knob = devices.x_knob(label, cells)
    by_env: dict[tuple[tuple[str, float], ...], str] = {}
    for scenario in dict.fromkeys(c.scenario for c in cells):
        env = next(tuple(sorted(c.environment_knobs.items())) for c in cells
                   if c.scenario == scenario)
        by_env.setdefault(env, scenario)
    scenarios = list(by_env.values())
    along_env = knob is not None and knob not in devices.swept(label)
    if not along_env:
        cells = [c for c in cells if c.scenario in scenarios]
    variants = list(dict.fromkeys(_variant(results, c) for c in cells))
    models = list(dict.fromkeys(c.model for c in cells))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    fig, axes = _grid(plt, len(variants), 6.0, 3.8, sharey=True)
    spec = devices.knob(label, knob) if knob else None

    def x_of(c: CellResult) -> float:
        if knob is None:
            return 0.0
        return {**c.control_knobs, **c.environment_knobs}[knob]

    for ax, variant in zip(axes.flat, variants, strict=False):
        floor = _floor_axis(ax, cells)
        n_below = 0
        for mi, model in enumerate(models):
            lines: list[str | None] = [None] if along_env else list(scenarios)
            for si, line in enumerate(lines):
                group = sorted((c for c in cells if _variant(results, c) == variant
                                and c.model == model
                                and (line is None or c.scenario == line)), key=x_of)
                if not group:
                    continue
                y, below, above = _interval(group)
                color = colors[mi % len(colors)]
                style = styles[si % len(styles)]
                name = model if line is None or len(scenarios) == 1 \
                    else f"{model} ({line})"
                xs = [x_of(c) for c in group]
                ax.errorbar(xs, y, yerr=[below, above], color=color,
                            linestyle=style, marker="o", markersize=3, capsize=2, label=name)
                n_below += _mark_below(ax, xs, y, floor, color)
                ax.axhline(100 * group[0].clean_accuracy, color=color, linewidth=0.6,
                           alpha=0.5, linestyle=":")
        if spec is not None:
            ax.set_xlabel(f"{spec.name} ({spec.unit}), {spec.role.value} knob; nominal "
                          f"{spec.nominal.value:g}")
            if spec.scale.value == "log" and spec.low > 0:
                ax.set_xscale("log")
        else:
            ax.set_xlabel("the device's only operating point (no knob varies)")
            ax.set_xticks([0.0], ["nominal"])
        _note_below(ax, n_below, floor)
        ax.set_ylabel("accuracy (%), 95 % interval")
        ax.set_title(variant or "accuracy", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    against = f"versus {knob}" if knob else "at its only operating point"
    fig.suptitle(f"{label}: accuracy {against} (dotted: clean accuracy)", fontsize=11)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(len(labels), 1)),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, _legend_space(fig, len(labels), 4), 1, 0.95))
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def _short_knobs(knobs: Mapping[str, float]) -> str:
    return ",".join(f"{v:g}" for v in knobs.values()) or "nom."


def pareto_plot(results: SweepResults, devices: ReportDevices, path: Path) -> Path:
    """One panel per model and scenario: every priced cell (colour: device, marker: storage
    variant) with its interval, and each energy scope's noise-aware front as a step line whose
    points are labelled with the device and its knob values."""
    plt = _plt()
    cells = results.cells
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, c in enumerate(cells):
        if c.has_energy_model and c.accuracy is not None and c.chips:
            groups[(c.model, c.scenario)].append(i)
    if not groups:
        fig, ax = plt.subplots(figsize=(6.5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no device of this sweep has an energy model: no Pareto front",
                ha="center", va="center")
        atomic_savefig(fig, path, dpi=110)
        plt.close(fig)
        return path
    fig, axes = _grid(plt, len(groups), 6.6, 4.4, sharex=True, sharey=True)
    labels = sorted({cells[i].device for g in groups.values() for i in g})
    variants = list(dict.fromkeys(_variant(results, cells[i]) for g in groups.values()
                                  for i in g))
    cmap = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
    scope_styles: dict[str, Any] = {"array": "-", "cell": "--", "mixed": ":"}
    for ax, ((model, scenario), members) in zip(axes.flat, groups.items(), strict=False):
        floor = _floor_axis(ax, [cells[i] for g in groups.values() for i in g])
        n_below = 0
        for d_index, label in enumerate(labels):
            for v_index, variant in enumerate(variants):
                mine = [cells[i] for i in members if cells[i].device == label
                        and _variant(results, cells[i]) == variant]
                if not mine:
                    continue
                x = np.array([c.energy_pj for c in mine])
                y, below, above = _interval(mine)
                color = cmap(d_index % 10)
                ax.errorbar(x, y, yerr=[below, above], fmt="none", ecolor=color, alpha=0.35,
                            capsize=1.5)
                face = ["none" if c.energy_assumed else color for c in mine]
                ax.scatter(x, y, marker=markers[v_index % len(markers)], facecolors=face,
                           edgecolors=color, s=22, zorder=3)
                n_below += _mark_below(ax, list(x), y, floor, color)
        for (m, s, scope), front in results.fronts.items():
            if (m, s) != (model, scenario):
                continue
            xs = [cells[i].energy_pj for i in front]
            ys = [100 * (cells[i].accuracy or 0.0) for i in front]
            ax.step(xs, ys, where="post", color="black", linewidth=1.1, zorder=4,
                    linestyle=scope_styles.get(scope, "-"))
            for i, xv, yv in zip(front, xs, ys, strict=True):
                c = cells[i]
                ax.annotate(f"{c.device} {_short_knobs(devices.swept_knobs(c))}",
                            (xv, yv), xytext=(3, -9), textcoords="offset points", fontsize=6,
                            zorder=5)
        ax.axhline(100 * cells[members[0]].clean_accuracy, color="grey", linestyle=":",
                   linewidth=0.8)
        _note_below(ax, n_below, floor)
        ax.set_xscale("log")
        ax.set_title(f"{model}, {scenario}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    for ax in axes[-1]:
        ax.set_xlabel("energy per inference, weight memories (pJ)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", marker="o", color=cmap(i % 10), label=d)
               for i, d in enumerate(labels)]
    if len(variants) > 1:
        handles += [Line2D([], [], linestyle="none", marker=markers[i % len(markers)],
                           color="black", mfc="none", label=v) for i, v in enumerate(variants)]
    scopes = sorted({scope for (_, _, scope) in results.fronts})
    handles += [Line2D([], [], color="black", linestyle=scope_styles.get(s, "-"),
                       label=f"front, {s}-scope energies") for s in scopes]
    handles.append(Line2D([], [], color="grey", linestyle=":", label="clean accuracy"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Energy and accuracy, {results.deployment.label} deployment (front: "
                 "noise-aware, labelled device and knob values; hollow: assumed energy)",
                 fontsize=10)
    fig.tight_layout(rect=(0, _legend_space(fig, len(handles), 4), 1, 0.97))
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def savings_plot(results: SweepResults, devices: ReportDevices, path: Path) -> Path:
    """One panel per device: energy relative to the device at nominal knobs against accuracy,
    a line per model (colour) and scenario (line style), in the sweep's first storage variant;
    the points labelled with the swept knob's values."""
    plt = _plt()
    placement, protection = _first_variant(results)
    cells = [c for c in results.cells if c.has_energy_model and c.accuracy is not None
             and c.chips and (c.placement, c.protection) == (placement, protection)]
    labels = [d for d in results.devices if any(c.device == d for c in cells)]
    if not labels:
        fig, ax = plt.subplots(figsize=(6.5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no device of this sweep has an energy model", ha="center",
                va="center")
        atomic_savefig(fig, path, dpi=110)
        plt.close(fig)
        return path
    models = list(dict.fromkeys(c.model for c in cells))
    scenarios = list(dict.fromkeys(c.scenario for c in cells))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    fig, axes = _grid(plt, len(labels), 4.2, 3.3, cols=4, sharey=True, sharex=True)
    for ax, label in zip(axes.flat, labels, strict=False):
        mine = [c for c in cells if c.device == label]
        floor = _floor_axis(ax, cells)
        n_below = 0
        for mi, model in enumerate(models):
            for si, scenario in enumerate(scenarios):
                group = sorted((c for c in mine if (c.model, c.scenario) == (model, scenario)),
                               key=lambda c: c.relative_to_nominal)
                if not group:
                    continue
                y, below, above = _interval(group)
                x = [c.relative_to_nominal for c in group]
                ax.errorbar(x, y, yerr=[below, above], color=colors[mi % len(colors)],
                            linestyle=styles[si % len(styles)], marker="o", markersize=3,
                            capsize=1.5, linewidth=1.0,
                            label=model if len(scenarios) == 1 else f"{model} ({scenario})")
                n_below += _mark_below(ax, x, y, floor, colors[mi % len(colors)])
                if mi == 0 and si == 0:
                    last = -math.inf  # labels at least 0.04 apart along x stay readable
                    for c, xv, yv in zip(group, x, y, strict=True):
                        if xv - last >= 0.04:
                            ax.annotate(_short_knobs(devices.swept_knobs(c)), (xv, yv),
                                        xytext=(2, 4), textcoords="offset points", fontsize=6)
                            last = xv
        swept = devices.swept(label)
        ax.set_title(f"{label}" + (f" ({', '.join(swept)})" if swept else " (no knob)"),
                     fontsize=9)
        _note_below(ax, n_below, floor)
        own = [t for t in results.knob_trades if t.device == label]
        if own and all(t.trades_nothing for t in own):
            ax.text(0.03, 0.12, "this knob saves < 1 % here", transform=ax.transAxes,
                    fontsize=7, color="dimgrey")
        ax.set_xlim(0.0, max(1.08, *(c.relative_to_nominal + 0.03 for c in cells)))
        ax.set_xlabel("energy ÷ energy at nominal knobs", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)", fontsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, max(len(names), 1)),
               fontsize=8, frameon=False)
    variant = f"{placement}, {protection}"
    fig.suptitle(f"What each device's knob saves, {results.deployment.label} deployment "
                 f"(storage: {variant}; labels: knob values)", fontsize=10)
    fig.tight_layout(rect=(0, _legend_space(fig, len(names), 4), 1, 0.95))
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class BerCurve:
    """A swept device's chip-average BER along its first swept knob (`grid`, 60 values over
    its range) and at the values the sweep used."""

    label: str
    knob: KnobSpec
    grid: tuple[float, ...]
    ber: tuple[float, ...]
    used: tuple[float, ...]
    ber_used: tuple[float, ...]

    @property
    def log(self) -> bool:
        return self.knob.scale.value == "log" and self.knob.low > 0

    def position(self, v: float) -> float:
        """Where `v` lies in the knob's range: 0 at the low end, 1 at the high end (log knobs
        by their logarithm)."""
        k = self.knob
        span = math.log(k.high / k.low) if self.log else k.high - k.low
        if span <= 0:
            return 0.0
        return math.log(v / k.low) / span if self.log else (v - k.low) / span


def ber_curves(results: SweepResults, devices: ReportDevices) -> list[BerCurve]:
    """Every swept device's `BerCurve`, in the sweep's device order."""
    out = []
    for label in devices.info:
        swept = devices.swept(label)
        if not swept:
            continue
        knob = swept[0]
        device = devices.devices[label]
        k = device.spec.knob(knob)
        grid = (np.geomspace(k.low, k.high, 60) if k.scale.value == "log" and k.low > 0
                else np.linspace(k.low, k.high, 60))
        used = sorted({c.control_knobs[knob] for c in results.cells
                       if c.device == label and knob in c.control_knobs})
        out.append(BerCurve(label, k, tuple(float(v) for v in grid),
                            tuple(device.at(**{knob: float(v)}).ber for v in grid),
                            tuple(float(v) for v in used),
                            tuple(device.at(**{knob: float(v)}).ber for v in used)))
    return out


def ber_vs_knob(results: SweepResults, devices: ReportDevices, path: Path) -> Path:
    """Chip-average BER against each device's swept knob, dots at the values used. BERs
    below 1e-15 are drawn at 1e-15, and the legend says which device has such points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    any_log = False
    for curve in ber_curves(results, devices):
        k = curve.knob
        ber, ber_used = np.array(curve.ber), np.array(curve.ber_used)
        any_log = any_log or curve.log
        floored = bool((ber_used < BER_FLOOR).any())
        name = (f"{curve.label} ({k.name}: {k.low:g}..{k.high:g} {k.unit}"
                + (", log" if k.scale.value == "log" else "") + ")"
                + (" *" if floored else ""))
        line, = ax.plot([curve.position(v) for v in curve.grid], np.maximum(ber, BER_FLOOR),
                        label=name)
        ax.scatter([curve.position(v) for v in curve.used], np.maximum(ber_used, BER_FLOOR),
                   s=14, color=line.get_color(), zorder=3)
    ax.set_yscale("log")
    ax.set_ylim(BER_FLOOR / 3, 1.0)
    ax.set_xlabel("swept knob, position in its range (0 = low end, 1 = high end"
                  + ("; log knobs by their logarithm" if any_log else "") + ")")
    ax.set_ylabel("bit error rate on random data")
    ax.set_title(f"Chip-average BER of the swept devices (dots: the operating points used; "
                 f"*: some below {BER_FLOOR:g}, drawn at it)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return path


# -- report.md ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedSummary:
    """One model against another in one scenario, over the cells both were evaluated in."""

    model: str
    versus: str
    scenario: str
    cells: int
    clean_difference: float
    mean_difference: float
    cells_above: int
    """Cells whose 95 % interval of the difference lies above the clean difference."""
    cells_below: int


def paired_summaries(results: SweepResults) -> list[PairedSummary]:
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for d in results.paired:
        groups.setdefault((d.model, d.versus, d.scenario), []).append(d)
    # a cell counts where the errors move the difference away from the clean one: a constant
    # clean gap is test-set noise or training, and zero-spread cells would all "exclude zero"
    return [PairedSummary(
        model, versus, scenario, len(ds), ds[0].clean_difference,
        math.fsum(d.difference for d in ds) / len(ds),
        sum(1 for d in ds if d.low is not None and d.low > d.clean_difference),
        sum(1 for d in ds if d.high is not None and d.high < d.clean_difference))
        for (model, versus, scenario), ds in groups.items()]


def _energy(x: float) -> str:
    return f"{x:.3g}"


def _rel(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.2f}×" if x >= 0.01 else f"{x:.1e}×"


def _saving(b: BudgetChoice, cells: Sequence[CellResult]) -> str:
    """`34 % (27–41 %)`: the saving against the reference at the chosen point, and between
    the conservative and the optimistic choice."""
    if b.cell is None:
        return "–"
    rel = cells[b.cell].relative_energy
    if rel is None or not math.isfinite(rel):
        return "–"
    opt = cells[b.optimistic].relative_energy if b.optimistic is not None else None
    def pct(r: float) -> str:
        """Whole percent, or enough digits that a saving short of 100 % does not read 100."""
        saved = 100 * (1 - r)
        if saved < 99.5 or r <= 0:
            return f"{saved:.0f}"
        return f"{saved:.{min(9, -math.floor(math.log10(100 - saved)))}f}"

    text = f"{pct(rel)} %"
    if opt is not None and math.isfinite(opt) and pct(opt) != pct(rel):
        lo, hi = sorted((rel, opt), reverse=True)
        text += f" ({pct(lo)} to {pct(hi)} %)"
    return text


def _while(b: BudgetChoice, results: SweepResults) -> str:
    if b.cheapest_while is None:
        return "–"
    low, high = b.cheapest_while
    now = results.deployment.amortised_inferences_per_write
    if low <= 0 and math.isinf(high):
        return "any N"
    parts = []
    if low > 0:
        parts.append(f"N ≥ {low:.3g}")
    if math.isfinite(high):
        parts.append(f"N ≤ {high:.3g}")
    flag = "" if low <= now <= high else " (not now)"
    return " and ".join(parts) + flag


@dataclass(frozen=True)
class AnswerTable:
    """A table of the answer by cell text, with the sweep's cells each row names: report.md
    joins it into Markdown and report.html into a table, so both show the same numbers."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    cells: tuple[tuple[int, ...], ...] = ()
    """Per row, indices into `SweepResults.cells` (empty where a row names no one cell)."""

    def markdown(self) -> list[str]:
        def row(values: Sequence[str]) -> str:
            return "|" + "".join(f" {v} |" if v else " |" for v in values)

        return [row(self.header), "|" + "---|" * len(self.header), *map(row, self.rows)]


AnswerBlock = str | AnswerTable
"""A line of report.md's Markdown (a heading, a paragraph or an empty line) or a table."""


def markdown_lines(blocks: Sequence[AnswerBlock]) -> list[str]:
    """The blocks as report.md's lines."""
    return [line for b in blocks for line in (b.markdown() if isinstance(b, AnswerTable)
                                              else [b])]


def _headline(results: SweepResults, devices: ReportDevices, scope: str) -> AnswerTable:
    """One line per model, scenario and chosen point (budgets that choose the same point
    share a line)."""
    cells = results.cells
    resident = results.deployment.weights is not WeightResidence.STREAMED
    header = ("model", "scenario", "budget", "device", "knobs", "storage",
              "accuracy, 95 % interval", "energy (pJ)", "vs reference", "saving",
              *(("cheapest while",) if resident else ()))
    # budgets whose line reads the same share it, then scenarios (a device without the
    # scenario's knob) likewise
    merged: dict[tuple[str, str, tuple[str, ...]], list[BudgetChoice]] = {}
    for b in results.budgets:
        if b.scope != scope:
            continue
        if b.cell is None:
            rest: tuple[str, ...] = ("no point qualifies", *[""] * (len(header) - 4))
        else:
            c = cells[b.cell]
            rest = (c.device, format_knobs(devices.swept_knobs(c)),
                    _variant(results, c) or "-",
                    f"{_pct(c.accuracy)} % [{_pct(c.accuracy_low)}, {_pct(c.accuracy_high)}]",
                    f"{_energy(c.energy_pj)}{'*' if c.energy_assumed else ''}",
                    _rel(c.relative_energy), _saving(b, cells),
                    *((_while(b, results),) if resident else ()))
        merged.setdefault((b.model, b.scenario, rest), []).append(b)
    rows: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    chosen: dict[tuple[str, str, tuple[str, ...]], list[int]] = {}
    for (model, scenario, rest), choices in merged.items():
        budget = "≤ " + ", ".join(f"{c.budget_points:g}" for c in choices) + " points"
        rows.setdefault((model, budget, rest), []).append(scenario)
        chosen.setdefault((model, budget, rest), []).extend(
            c.cell for c in choices if c.cell is not None)
    return AnswerTable(header, tuple((model, ", ".join(scenarios), budget, *rest)
                                     for (model, budget, rest), scenarios in rows.items()),
                       tuple(tuple(dict.fromkeys(chosen[key])) for key in rows))


def _savings_tables(results: SweepResults) -> list[AnswerBlock]:
    saving = _saving_lookup(results)
    models = list(dict.fromkeys(s.model for s in results.device_savings))
    budgets = results.budgets_points
    tables: dict[tuple[tuple[str, ...], ...], list[str]] = {}
    for scenario in dict.fromkeys(s.scenario for s in results.device_savings):
        table = []
        for label in results.devices:
            if not any((m, scenario, label, b) in saving for m in models for b in budgets):
                continue
            table.append((label, *(" / ".join(_rel(saving.get((model, scenario, label, b)))
                                              for b in budgets) for model in models)))
        tables.setdefault(tuple(table), []).append(scenario)
    out: list[AnswerBlock] = []
    for rows, scenarios in tables.items():
        out += [f"**{', '.join(scenarios)}**, within {' / '.join(f'{b:g}' for b in budgets)} "
                "points:", "", AnswerTable(("device", *models), rows), ""]
    return out


def _saving_lookup(results: SweepResults) -> dict[tuple[str, str, str, float], float | None]:
    return {(s.model, s.scenario, s.device, s.budget_points): s.relative(results.cells)
            for s in results.device_savings}


def _method_pairs(results: SweepResults) -> list[str]:
    """Models of the same architecture (differing in training): where the more tolerant one
    lets a device's knob go further at the same budget."""
    saving = _saving_lookup(results)
    names = list(results.architectures)
    scenarios = list(dict.fromkeys(s.scenario for s in results.device_savings))
    out: list[str] = []
    for j, model in enumerate(names):
        for versus in names[:j]:
            if results.architectures[model] != results.architectures[versus]:
                continue
            found = []
            compared = 0
            for scenario in scenarios:
                for b in results.budgets_points:
                    for label in results.devices:
                        a = saving.get((model, scenario, label, b))
                        v = saving.get((versus, scenario, label, b))
                        if a is None or v is None:
                            continue
                        compared += 1
                        if abs(a - v) >= 0.005:
                            found.append(f"{label}, {scenario}, ≤ {b:g} points: {a:.2f}× "
                                         f"versus {v:.2f}× ({model} "
                                         f"{'further' if a < v else 'less far'})")
            if not compared:
                continue
            if not found:
                out.append(f"- **{model} versus {versus}**: the same energy on every device "
                           f"in every scenario and budget ({compared} comparisons): the sweep's "
                           "operating points do not separate them.")
                continue
            out.append(f"- **{model} versus {versus}**: differ in {len(found)} of {compared} "
                       "comparisons (device, scenario, budget):")
            out += [f"  - {line}" for line in found]
    return out


def _trade_lines(results: SweepResults) -> list[str]:
    d = results.deployment
    out = []
    for t in results.knob_trades:
        what = ", ".join(t.varies) if t.varies else "no energy term"
        line = (f"- **{t.device}**, {t.knob} {t.low:g} to {t.high:g}: changes {what}; "
                f"at best {t.energy_ratio:.2f}× the energy at nominal.")
        missed = [v for v in t.varies if v not in t.charged]
        if t.trades_nothing and missed:
            why = {"write": f"this deployment programs the weights once per "
                            f"{d.amortised_inferences_per_write:g} inferences",
                   "refresh": f"refresh power is charged over only "
                              f"{d.seconds_per_inference:g} s per inference",
                   "static": f"static power is charged over only "
                             f"{d.seconds_per_inference:g} s per inference",
                   "read": "the weights are not read"}
            line += (" **The knob trades nothing here**: "
                     + "; ".join(why[v] for v in missed if v in why) + ".")
        out.append(line)
    return out


def _figure_name(device: str, figure: str) -> str:
    """`sram-14nm: static_power_mw_per_mib` for the memory under test's figures, the memory's
    own name for the others'."""
    memory, _, quantity = figure.partition(": ")
    return f"{device}: {quantity}" if memory == UNDER_TEST else figure


def _other_deployments(results: SweepResults, devices: ReportDevices) -> list[str]:
    """The first budget's answer (array scope, or the first scope) under every preset, from
    the same results repriced."""
    from memsim.experiments.aggregation import aggregate

    if not any(b.cell is not None for b in results.budgets):
        return []
    scopes = [b.scope for b in results.budgets]
    scope = results.reference_scope if results.reference_scope in scopes \
        else "array" if "array" in scopes else scopes[0]
    budget = results.budgets_points[0]
    scenario = results.budgets[0].scenario
    models = list(dict.fromkeys(b.model for b in results.budgets))
    current = results.deployment
    priced: list[tuple[str, SweepResults]] = [(f"**{current.label}** (this report)", results)]
    for preset in DEPLOYMENT_PRESETS:
        if preset != current.preset or current.changed:
            priced.append((preset, aggregate(results.out_dir, [*results.overrides,
                                                               f"deployment={preset}"])))
    out = ["## The answer under other deployments", "",
           f"The same results repriced under each preset ({scenario}, {scope}-scope energies, "
           f"≤ {budget:g} points; saving against {results.reference}): which knob is worth "
           "turning depends on how the weights are used.", "",
           "| deployment | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name, r in priced:
        row = []
        for model in models:
            b = next((b for b in r.budgets if (b.model, b.scenario, b.scope, b.budget_points)
                      == (model, scenario, scope, budget)), None)
            if b is None or b.cell is None:
                row.append("–")
                continue
            c = r.cells[b.cell]
            row.append(f"{c.device} {format_knobs(devices.swept_knobs(c))}: "
                       f"{_saving(b, r.cells)}")
        out.append(f"| {name} | " + " | ".join(row) + " |")
    return [*out, ""]


def answer_blocks(results: SweepResults, devices: ReportDevices) -> list[AnswerBlock]:
    """report.md's section "The answer": the deployment, the reference, the budget rule and
    per energy scope the cheapest point within each budget, with its notes."""
    d = results.deployment
    preset = ("custom deployment" if d.preset == "custom"
              else f"the **{d.preset}** preset" + (f" with {', '.join(d.changed)} changed"
                                                    if d.changed else ""))
    lines: list[AnswerBlock] = [
        "## The answer", "",
        f"**Deployment**: {preset}" + (f" ({d.description})" if d.description else "")
        + f": {d.summary()}."
        + (f" Repriced with `{' '.join('--set ' + o for o in results.overrides)}`."
           if results.overrides else ""),
        "",
        f"**Reference**: energies are compared with {results.reference}"
        + (f" ({results.reference_scope} scope)" if results.reference_scope else "")
        + ", holding the same bits in the same placement and protection. **Budgets** are "
        "judged by the low end of each point's 95 % accuracy interval (chips as clusters) "
        "against the model's clean accuracy; the saving's range runs to the cheapest point "
        "whose high end qualifies.", ""]
    scopes = list(dict.fromkeys(b.scope for b in results.budgets))
    mixed = sorted({c.device for c in results.cells if c.energy_scope == "mixed"})
    if not scopes:
        lines += ["No operating point of this sweep has a priced energy (no device with an "
                  "energy model, or no budget): there is nothing to choose.", ""]
    elif all(c.chips < 2 for c in results.cells):
        lines += ["With one chip per cell there is no accuracy interval, so no point can meet "
                  "a budget (judged by the interval's low end): run more chips.", ""]
    if results.reference_scope is not None and any(
            sc != results.reference_scope for sc in scopes):
        lines += [f"The reference has {results.reference_scope}-scope energy: energies of "
                  "another scope are not compared with it (`–` under vs reference and "
                  "saving).", ""]
    for scope in scopes:
        members = sorted({results.cells[i].device for (m, s, sc), f in results.fronts.items()
                          if sc == scope for i in f} | {
            c.device for c in results.cells if c.energy_scope == scope and c.has_energy_model})
        if len(scopes) > 1:
            lines += [f"**{scope.capitalize()}-scope energies** ({', '.join(members)}): "
                      + ("the cell alone, no periphery; not comparable with array-scope "
                         "figures, so on fronts and budgets of their own."
                         if scope == "cell" else "arrays with their periphery."), ""]
        lines += [_headline(results, devices, scope), ""]
    if mixed:
        lines += [f"Left out of fronts and budgets: placements whose memories mix energy "
                  f"scopes (with {', '.join(mixed)} under test), whose sum means neither; "
                  "they are in `results.csv`.", ""]
    if any(b.cheapest_while is not None for b in results.budgets):
        lines += ["*Cheapest while*: the inferences per programming N over which the point "
                  "stays the cheapest qualifying one (now N = "
                  f"{d.amortised_inferences_per_write:g}); outside it the ranking flips.", ""]
    weak = sorted({_figure_name(results.cells[b.cell].device, f) for b in results.budgets
                   if b.cell is not None for f in results.cells[b.cell].energy_assumed_figures})
    if weak:
        lines += [f"`*`: the energy rests on a figure tagged assumed or not given "
                  f"({'; '.join(weak)}).", ""]
    return lines


def savings_blocks(results: SweepResults) -> list[AnswerBlock]:
    """report.md's section "What each device saves"."""
    placement, protection = _first_variant(results)
    return ["## What each device saves", "",
            "Within each accuracy budget, the cheapest operating point of each device against "
            "the same device at nominal control knobs, in the sweep's first storage variant "
            f"({placement}, {protection}; lower is a larger saving; – : no point qualifies).",
            "", *_savings_tables(results)]


def write_report(out_dir: Path, results: SweepResults, *, command: str = "",
                 elapsed_s: float | None = None) -> list[Path]:
    """Write the pictures and `report.md`; returns the paths written."""
    out_dir = Path(out_dir)
    devices = ReportDevices(results)
    written: list[Path] = [pareto_plot(results, devices, out_dir / "pareto.png"),
                           savings_plot(results, devices, out_dir / "savings.png")]
    labels = [label for label in results.devices
              if any(c.device == label and c.accuracy is not None for c in results.cells)]
    for label in labels:
        written.append(accuracy_vs_knob(results, devices, label,
                                        out_dir / f"accuracy_vs_knob_{_safe(label)}.png"))
    written.append(ber_vs_knob(results, devices, out_dir / "ber_vs_knob.png"))
    title = f"memsim sweep: {results.name}" + (" (dry run)" if results.dry_run else "")
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Made with `{command}`" + (
            f": models, sweep and aggregation took {elapsed_s:.0f} s (this report and its "
            "pictures came after)." if elapsed_s else "."), ""]
    lines += markdown_lines(answer_blocks(results, devices))
    lines += ["![energy/accuracy, every device](pareto.png)", ""]
    lines += markdown_lines(savings_blocks(results))
    lines += ["![savings per device](savings.png)", ""]
    pairs = _method_pairs(results)
    if pairs:
        lines += ["## Training methods at equal accuracy", "",
                  "Models of the same architecture that differ only in training, on the same "
                  "chips: per device, the energy each needs within the budget (as above).", ""]
        lines += [*pairs, ""]
    lines += _other_deployments(results, devices)
    lines += ["## What the knobs trade under this deployment", ""]
    lines += _trade_lines(results) or ["No device with an energy model has a swept knob."]
    lines += ["", "Another deployment reprices the same results without evaluating a chip: "
              "`memsim pareto DIR --set deployment=PRESET` (presets: "
              f"{', '.join(DEPLOYMENT_PRESETS)}).", ""]
    summaries = paired_summaries(results)
    if summaries:
        lines += ["## Models compared on the same chips", "",
                  "Each later model minus each earlier one, in every cell both have, paired "
                  "chip by chip (per cell: `paired.csv`). Above / below: cells whose 95 % "
                  "interval of the difference lies above / below the clean difference, i.e. "
                  "where the errors move the gap.", "",
                  "| model | versus | scenario | clean difference | mean difference | cells | "
                  "above | below |", "|---|---|---|---|---|---|---|---|"]
        for pair in sorted(summaries, key=lambda q: (q.model, q.versus, q.scenario)):
            lines.append(f"| {pair.model} | {pair.versus} | {pair.scenario} | "
                         f"{100 * pair.clean_difference:+.2f} points | "
                         f"{100 * pair.mean_difference:+.2f} points | {pair.cells} | "
                         f"{pair.cells_above} | {pair.cells_below} |")
        lines.append("")
    lines += ["## Accuracy of each device", ""]
    lines += [f"![{label}](accuracy_vs_knob_{_safe(label)}.png)" for label in labels]
    lines += ["", "![BER versus knob](ber_vs_knob.png)", "", "## Files", "",
              f"- `results.csv`: every cell ({len(results.cells)} rows), one `knob.<name>` "
              "column per knob, every energy term, `on_front`;",
              "- `pareto.csv`: the noise-aware fronts; `budgets.csv`: the answer above, with "
              "`relative_energy`; `paired.csv`: models compared cell by cell.", "",
              "## Devices", "",
              "Each device's description and full citations: `devices.md`.", ""]
    provenance = [f"# Devices of {title}", ""]
    for label in labels:
        spec = devices.devices[label].spec
        lines.append(f"- **{label}** ({spec.technology}, {spec.energy.scope.value}-scope "
                     f"energy): sources {', '.join(s.id for s in spec.sources)}")
        provenance += [f"## {label}", "", spec.description.strip(), "",
                       f"Energy scope: {spec.energy.scope.value}. Sources:", "",
                       *(f"- {s.id}: {s.citation}" for s in spec.sources), ""]
    devices_path = atomic_write_text(out_dir / "devices.md", "\n".join(provenance))
    path = atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    written += [devices_path, path]
    return written
