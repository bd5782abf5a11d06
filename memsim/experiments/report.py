"""Pictures and the Markdown report of a sweep.

Input: the aggregate rows of a sweep (one per model × scenario × device × operating point,
see `ReportRow`) and the devices' provenance. Output, in the sweep's directory:
`accuracy_vs_knob_<device>.png`, `pareto.png`, `ber_vs_knob.png` and `report.md`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memsim.experiments.pareto import TradeoffPoint, budget_table, pareto_front
from memsim.physics.device import Device

__all__ = ["PairedSummary", "ReportRow", "write_report"]


@dataclass(frozen=True)
class ReportRow:
    """One aggregate: a model at one operating point of one device in one scenario."""

    model: str
    scenario: str
    device: str
    knobs: Mapping[str, float]
    """The control knobs of the operating point."""
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    clean_accuracy: float
    energy_pj: float
    """Energy per inference of the weight reads (and static/refresh shares)."""
    energy_relative: float
    """Energy relative to the same placement at nominal knobs."""
    assumed_energy: bool
    ber: float
    chips: int
    reads: int
    mlm: float = math.nan
    variant: str = ""
    """Where and how the weights are stored (placement, protection), when a sweep has several."""
    environment: Mapping[str, float] = field(default_factory=dict)
    """The device's environment knobs in this scenario (scenarios that leave a device's knobs
    alike are drawn once in its accuracy plot)."""
    extra: Mapping[str, object] = field(default_factory=dict)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _knob_axis(rows: Sequence[ReportRow]) -> str | None:
    """The control knob that varies across these rows (the first, if several do)."""
    names = sorted({k for r in rows for k in r.knobs})
    for name in names:
        if len({r.knobs.get(name) for r in rows}) > 1:
            return name
    return names[0] if names else None


def _interval(rows: Sequence[ReportRow]) -> tuple[Any, Any, Any]:
    y = np.array([100 * r.accuracy for r in rows])
    lo = np.array([100 * r.accuracy_low for r in rows])
    hi = np.array([100 * r.accuracy_high for r in rows])
    lo = np.where(np.isfinite(lo), lo, y)
    hi = np.where(np.isfinite(hi), hi, y)
    return y, np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)


def _grid(plt: Any, n: int, width: float, height: float) -> tuple[Any, Any]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def _distinct_scenarios(rows: Sequence[ReportRow]) -> list[str]:
    """Scenarios that give this device different environment knobs (the first of each)."""
    seen: dict[tuple[tuple[str, float], ...], str] = {}
    for scenario in sorted({r.scenario for r in rows}):
        env = next(tuple(sorted(r.environment.items())) for r in rows if r.scenario == scenario)
        seen.setdefault(env, scenario)
    return sorted(seen.values())


def accuracy_vs_knob(rows: Sequence[ReportRow], device: Device, path: Path) -> Path:
    """One panel per storage variant; a line per model (colour) and scenario (line style)."""
    plt = _plt()
    knob = _knob_axis(rows)
    scenarios = _distinct_scenarios(rows)
    rows = [r for r in rows if r.scenario in scenarios]
    variants = sorted({r.variant for r in rows})
    models = sorted({r.model for r in rows})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    fig, axes = _grid(plt, len(variants), 6.5, 4.2)
    unit = next((k.unit for k in device.spec.knobs if k.name == knob), "")
    log_x = knob is not None and any(k.name == knob and k.scale.value == "log"
                                     for k in device.spec.knobs)
    for ax, variant in zip(axes.flat, variants, strict=False):
        for model in models:
            for scenario in scenarios:
                group = sorted((r for r in rows if (r.variant, r.model, r.scenario)
                                == (variant, model, scenario)),
                               key=lambda r: r.knobs.get(knob, 0.0) if knob else 0.0)
                if not group:
                    continue
                x = [r.knobs.get(knob, 0.0) if knob else 0.0 for r in group]
                y, below, above = _interval(group)
                color = colors[models.index(model) % len(colors)]
                style = styles[scenarios.index(scenario) % len(styles)]
                label = model if len(scenarios) == 1 else f"{model} ({scenario})"
                ax.errorbar(x, y, yerr=[below, above], color=color, linestyle=style,
                            marker="o", markersize=3, capsize=2, label=label)
                ax.axhline(100 * group[0].clean_accuracy, color=color, linewidth=0.6,
                           alpha=0.5, linestyle=style)
        ax.set_xlabel(f"{knob} ({unit})" if knob else "operating point")
        if log_x:
            ax.set_xscale("log")
        ax.set_ylabel("accuracy (%), 95 % interval")
        ax.set_title(variant or "accuracy", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(f"{device.name}: accuracy versus {knob} (thin lines: clean accuracy)")
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(len(labels), 1)),
               fontsize=8, frameon=False)
    n_legend_rows = math.ceil(len(labels) / 4)
    fig.tight_layout(rect=(0, 0.03 * n_legend_rows + 0.02, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _points(rows: Sequence[ReportRow]) -> list[TradeoffPoint]:
    return [TradeoffPoint(model=r.model, scenario=r.scenario, device=r.device,
                          knobs=dict(r.knobs), energy_pj=r.energy_pj, accuracy=r.accuracy,
                          accuracy_low=r.accuracy_low if math.isfinite(r.accuracy_low) else None,
                          accuracy_high=(r.accuracy_high if math.isfinite(r.accuracy_high)
                                         else None),
                          assumed_energy=r.assumed_energy) for r in rows]


def pareto_plot(rows: Sequence[ReportRow], path: Path) -> Path:
    """One panel per model and scenario: every priced point (colour: device, marker: storage
    variant) with its interval, the front over all of them as a step line."""
    plt = _plt()
    groups: dict[tuple[str, str], list[ReportRow]] = defaultdict(list)
    for r in rows:
        if r.energy_pj > 0:
            groups[(r.model, r.scenario)].append(r)
    if not groups:
        fig, ax = plt.subplots(figsize=(6.5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no device of this sweep has an energy model: no Pareto front",
                ha="center", va="center")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    fig, axes = _grid(plt, len(groups), 6.5, 4.0)
    devices = sorted({r.device for r in rows if r.energy_pj > 0})
    variants = sorted({r.variant for r in rows})
    cmap = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
    for ax, ((model, scenario), group) in zip(axes.flat, sorted(groups.items()), strict=False):
        front = set(pareto_front(_points(group)))
        for d_index, device in enumerate(devices):
            for v_index, variant in enumerate(variants):
                mine = [r for r in group if (r.device, r.variant) == (device, variant)]
                if not mine:
                    continue
                x = np.array([r.energy_pj for r in mine])
                y, below, above = _interval(mine)
                color = cmap(d_index % 10)
                ax.errorbar(x, y, yerr=[below, above], fmt="none", ecolor=color, alpha=0.4,
                            capsize=1.5)
                face = ["none" if r.assumed_energy else color for r in mine]
                ax.scatter(x, y, marker=markers[v_index % len(markers)], facecolors=face,
                           edgecolors=color, s=26, zorder=3)
        ordered = sorted(front, key=lambda i: group[i].energy_pj)
        ax.step([group[i].energy_pj for i in ordered],
                [100 * group[i].accuracy for i in ordered], where="post", color="black",
                linewidth=1.2, zorder=4)
        ax.axhline(100 * group[0].clean_accuracy, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("energy per inference, weight memories (pJ)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{model} — {scenario}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="none", marker="o", color=cmap(i % 10), label=d)
               for i, d in enumerate(devices)]
    if len(variants) > 1:
        handles += [Line2D([], [], linestyle="none", marker=markers[i % len(markers)],
                           color="black", mfc="none", label=v) for i, v in enumerate(variants)]
    handles += [Line2D([], [], color="black", label="Pareto front"),
                Line2D([], [], color="grey", linestyle=":", label="clean accuracy")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Energy/accuracy trade-off per model and scenario (colour: device; marker: "
                 "storage variant; hollow: energy rests on assumed figures)", fontsize=10)
    fig.tight_layout(rect=(0, 0.025 * math.ceil(len(handles) / 4) + 0.01, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ber_vs_knob(devices: Mapping[str, Device],
                swept: Mapping[str, tuple[str, Sequence[float]]], path: Path) -> Path:
    """Chip-average BER against each device's swept knob, dots at the values used; `swept`
    maps a device to (knob, values)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (knob, values) in sorted(swept.items()):
        device = devices[name]
        k = next(k for k in device.spec.knobs if k.name == knob)
        grid = (np.geomspace(k.low, k.high, 60) if k.scale.value == "log" and k.low > 0
                else np.linspace(k.low, k.high, 60))
        ber = [device.at(**{knob: float(v)}).ber for v in grid]
        span = k.high - k.low
        rel = (grid - k.low) / span if span > 0 else np.zeros_like(grid)
        ax.plot(rel, np.clip(ber, 1e-12, None),
                label=f"{name} ({knob}: {k.low:g}..{k.high:g} {k.unit})")
        used = sorted(values)
        ax.scatter([(v - k.low) / span if span > 0 else 0.0 for v in used],
                   np.clip([device.at(**{knob: float(v)}).ber for v in used], 1e-12, None),
                   s=12)
    ax.set_yscale("log")
    ax.set_xlabel("swept knob, position in its range (0 = low end, 1 = high end)")
    ax.set_ylabel("bit error rate on random data (other knobs nominal)")
    ax.set_title("Chip-average BER of the swept devices (dots: the operating points used)")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt_knobs(knobs: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in knobs.items()) or "nominal"


def _provenance(device: Device) -> str:
    spec = device.spec
    sources = "; ".join(f"{s.id}: {s.citation}" for s in spec.sources)
    return (f"- **{device.name}** ({spec.technology}): {spec.description.strip()} "
            f"Sources: {sources}")


@dataclass(frozen=True)
class PairedSummary:
    """One model against another in one scenario, over the cells both were evaluated in."""

    model: str
    versus: str
    scenario: str
    cells: int
    clean_difference: float
    """Accuracy difference (model − versus) without errors."""
    mean_difference: float
    """Mean over the cells of the accuracy difference on the chips."""
    cells_above: int
    """Cells whose 95 % interval of the difference lies above the clean difference: the
    errors widen the model's lead (or narrow its deficit)."""
    cells_below: int
    """Cells whose interval lies below the clean difference."""


def write_report(out_dir: Path, rows: Sequence[ReportRow], devices: Mapping[str, Device],
                 *, title: str = "memsim sweep", command: str = "",
                 elapsed_s: float | None = None,
                 budgets_points: Sequence[float] = (1.0, 2.0),
                 paired: Sequence[PairedSummary] = ()) -> list[Path]:
    """Write the pictures and `report.md`; returns the paths written."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    by_device: dict[str, list[ReportRow]] = defaultdict(list)
    for r in rows:
        by_device[r.device].append(r)
    for name, group in sorted(by_device.items()):
        written.append(accuracy_vs_knob(group, devices[name],
                                        out_dir / f"accuracy_vs_knob_{_safe(name)}.png"))
    written.append(pareto_plot(rows, out_dir / "pareto.png"))
    swept: dict[str, tuple[str, list[float]]] = {}
    for name, group in by_device.items():
        knob = _knob_axis(group)
        if knob is not None:
            swept[name] = (knob, sorted({r.knobs[knob] for r in group if knob in r.knobs}))
    written.append(ber_vs_knob(devices, swept, out_dir / "ber_vs_knob.png"))
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Made with `{command}`" + (f" in {elapsed_s:.0f} s." if elapsed_s else "."),
                  ""]
    lines += ["![energy/accuracy Pareto fronts](pareto.png)", "",
              "## Cheapest operating points within an accuracy budget", "",
              "| model | scenario | budget | device | knobs | storage | accuracy | energy (pJ) | "
              "vs nominal | energy assumed |", "|---|---|---|---|---|---|---|---|---|---|"]
    priced = [r for r in rows if r.energy_pj > 0]
    points = _points(priced)
    clean = {r.model: r.clean_accuracy for r in rows}
    for b in budget_table(points, clean, tuple(budgets_points)):
        p = b.point
        if p is None:
            lines.append(f"| {b.model} | {b.scenario} | ≤ {b.budget_points:g} points | none "
                         "| | | | | | |")
            continue
        row = priced[next(i for i, q in enumerate(points) if q is p)]
        lines.append(f"| {p.model} | {p.scenario} | ≤ {b.budget_points:g} points | {p.device} |"
                     f" {_fmt_knobs(p.knobs)} | {row.variant or '-'} | {100 * p.accuracy:.1f} % | "
                     f"{p.energy_pj:.4g} | "
                     f"{row.energy_relative:.2f} | {'yes' if p.assumed_energy else 'no'} |")
    if paired:
        lines += ["", "## Models compared on the same chips", "",
                  "Each later model of the config minus each earlier one on the same test data, "
                  "in every cell both have, paired chip by chip (per cell: `paired.csv`). Above "
                  "/ below: cells whose 95 % interval of the difference lies above / below the "
                  "clean difference, i.e. where the errors move the gap. The intervals cover "
                  "chip-to-chip spread on this test set only; the clean difference itself "
                  "carries test-set and training noise.", "",
                  "| model | versus | scenario | clean difference | mean difference | cells | "
                  "above | below |", "|---|---|---|---|---|---|---|---|"]
        for pair in sorted(paired, key=lambda q: (q.model, q.versus, q.scenario)):
            lines.append(f"| {pair.model} | {pair.versus} | {pair.scenario} | "
                         f"{100 * pair.clean_difference:+.2f} points | "
                         f"{100 * pair.mean_difference:+.2f} points | {pair.cells} | "
                         f"{pair.cells_above} | {pair.cells_below} |")
    lines += ["", "## Accuracy versus the control knob", ""]
    for name in sorted(by_device):
        lines.append(f"![{name}](accuracy_vs_knob_{_safe(name)}.png)")
    lines += ["", "![BER versus knob](ber_vs_knob.png)", "", "## All operating points", "",
              "| model | scenario | device | knobs | storage | BER | accuracy (95 % interval) | "
              "clean | chips × reads | energy (pJ) | vs nominal |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.model, r.scenario, r.device, r.variant,
                                         sorted(r.knobs.items()))):
        interval = (f"[{100 * r.accuracy_low:.1f}, {100 * r.accuracy_high:.1f}]"
                    if math.isfinite(r.accuracy_low) else "")
        lines.append(f"| {r.model} | {r.scenario} | {r.device} | {_fmt_knobs(r.knobs)} | "
                     f"{r.variant or '-'} | {r.ber:.3g} | {100 * r.accuracy:.1f} % {interval} | "
                     f"{100 * r.clean_accuracy:.1f} % | {r.chips} × {r.reads} | "
                     f"{r.energy_pj:.4g}{'*' if r.assumed_energy else ''} | "
                     f"{r.energy_relative:.2f} |")
    lines += ["", "`*`: the energy rests on at least one figure tagged `assumed`.", "",
              "## Devices and their provenance", ""]
    lines += [_provenance(devices[n]) for n in sorted(by_device)]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.append(path)
    return written
