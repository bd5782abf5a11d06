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

__all__ = ["ReportRow", "write_report"]


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


def accuracy_vs_knob(rows: Sequence[ReportRow], device: Device, path: Path) -> Path:
    plt = _plt()
    knob = _knob_axis(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple[str, str], list[ReportRow]] = defaultdict(list)
    for r in rows:
        groups[(r.model, r.scenario)].append(r)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    models = sorted({m for m, _ in groups})
    scenarios = sorted({s for _, s in groups})
    styles = ["-", "--", ":", "-."]
    for (model, scenario), group in sorted(groups.items()):
        group = sorted(group, key=lambda r: r.knobs.get(knob, 0.0) if knob else 0.0)
        x = [r.knobs.get(knob, 0.0) if knob else 0.0 for r in group]
        y = np.array([100 * r.accuracy for r in group])
        lo = np.array([100 * r.accuracy_low for r in group])
        hi = np.array([100 * r.accuracy_high for r in group])
        lo = np.where(np.isfinite(lo), lo, y)
        hi = np.where(np.isfinite(hi), hi, y)
        color = colors[models.index(model) % len(colors)]
        style = styles[scenarios.index(scenario) % len(styles)]
        label = model if len(scenarios) == 1 else f"{model} ({scenario})"
        ax.errorbar(x, y, yerr=[y - lo, hi - y], color=color, linestyle=style, marker="o",
                    markersize=3, capsize=2, label=label)
        ax.axhline(100 * group[0].clean_accuracy, color=color, linewidth=0.6, alpha=0.5,
                   linestyle=style)
    unit = next((k.unit for k in device.spec.knobs if k.name == knob), "")
    ax.set_xlabel(f"{knob} ({unit})" if knob else "operating point")
    if knob and any(k.name == knob and k.scale.value == "log" for k in device.spec.knobs):
        ax.set_xscale("log")
    ax.set_ylabel("accuracy under errors (%), 95 % interval over chips")
    ax.set_title(f"{device.name}: accuracy versus {knob} (thin lines: clean accuracy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
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
    plt = _plt()
    groups: dict[tuple[str, str], list[ReportRow]] = defaultdict(list)
    for r in rows:
        if r.energy_pj > 0:
            groups[(r.model, r.scenario)].append(r)
    n = max(len(groups), 1)
    cols = min(n, 2)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.5 * nrows), squeeze=False)
    devices = sorted({r.device for r in rows})
    colors = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
    for ax, ((model, scenario), group) in zip(axes.flat, sorted(groups.items()), strict=False):
        points = _points(group)
        front = set(pareto_front(points))
        for d_index, device in enumerate(devices):
            mine = [i for i, r in enumerate(group) if r.device == device]
            if not mine:
                continue
            x = np.array([group[i].energy_pj for i in mine])
            y = np.array([100 * group[i].accuracy for i in mine])
            lo = np.array([100 * group[i].accuracy_low for i in mine])
            hi = np.array([100 * group[i].accuracy_high for i in mine])
            lo = np.where(np.isfinite(lo), lo, y)
            hi = np.where(np.isfinite(hi), hi, y)
            color = colors(d_index % 10)
            assumed = [group[i].assumed_energy for i in mine]
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="none", ecolor=color, alpha=0.5,
                        capsize=1.5)
            face = ["none" if a else color for a in assumed]
            ax.scatter(x, y, marker=markers[d_index % len(markers)], facecolors=face,
                       edgecolors=color, s=28, label=device, zorder=3)
        ordered = sorted(front, key=lambda i: group[i].energy_pj)
        ax.step([group[i].energy_pj for i in ordered],
                [100 * group[i].accuracy for i in ordered], where="post", color="black",
                linewidth=1.2, label="Pareto front", zorder=4)
        ax.axhline(100 * group[0].clean_accuracy, color="grey", linestyle=":", linewidth=0.8,
                   label="clean accuracy")
        ax.set_xscale("log")
        ax.set_xlabel("energy per inference, weight memory (pJ)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{model} — {scenario}")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7,
               frameon=False)
    fig.suptitle("Energy/accuracy trade-off (hollow markers: energy rests on assumed figures)")
    fig.tight_layout(rect=(0, 0.04 + 0.02 * math.ceil(len(labels) / 4), 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ber_vs_knob(devices: Mapping[str, Device], swept: Mapping[str, Sequence[float]],
                path: Path) -> Path:
    """Chip-average BER against each device's swept control knob (the knob values used)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, device in sorted(devices.items()):
        values = sorted(swept.get(name, ()))
        knob = _swept_knob(device, swept.get(name, ()))
        if knob is None or not values:
            continue
        k = next(k for k in device.spec.knobs if k.name == knob)
        grid = (np.geomspace(k.low, k.high, 60) if k.scale.value == "log" and k.low > 0
                else np.linspace(k.low, k.high, 60))
        ber = [device.at(**{knob: float(v)}).ber for v in grid]
        rel = (grid - k.low) / (k.high - k.low) if k.high > k.low else grid
        ax.plot(rel, np.clip(ber, 1e-12, None), label=f"{name} ({knob}: {k.low:g}..{k.high:g}"
                f" {k.unit})")
        used = [(v - k.low) / (k.high - k.low) if k.high > k.low else v for v in values]
        ax.scatter(used, np.clip([device.at(**{knob: float(v)}).ber for v in values], 1e-12,
                                 None), s=12)
    ax.set_yscale("log")
    ax.set_xlabel("control knob, position in its range (0 = low end, 1 = high end)")
    ax.set_ylabel("bit error rate on random data")
    ax.set_title("Chip-average BER of the swept devices (dots: the operating points used)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _swept_knob(device: Device, values: Sequence[float]) -> str | None:
    controls = [k.name for k in device.spec.knobs if k.role.value == "control"]
    return controls[0] if controls else None


def _fmt_knobs(knobs: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in knobs.items()) or "nominal"


def _provenance(device: Device) -> str:
    spec = device.spec
    sources = "; ".join(f"{s.id}: {s.citation}" for s in spec.sources)
    return (f"- **{device.name}** ({spec.technology}): {spec.description.strip()} "
            f"Sources: {sources}")


def write_report(out_dir: Path, rows: Sequence[ReportRow], devices: Mapping[str, Device],
                 *, title: str = "memsim sweep", command: str = "",
                 elapsed_s: float | None = None) -> list[Path]:
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
    swept = {name: sorted({v for r in group for v in r.knobs.values()})
             for name, group in by_device.items()}
    written.append(ber_vs_knob({n: devices[n] for n in by_device}, swept,
                               out_dir / "ber_vs_knob.png"))
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Made with `{command}`" + (f" in {elapsed_s:.0f} s." if elapsed_s else "."),
                  ""]
    lines += ["![energy/accuracy Pareto fronts](pareto.png)", "",
              "## Cheapest operating points within an accuracy budget", "",
              "| model | scenario | budget | device | knobs | accuracy | energy (pJ) | "
              "vs nominal | energy assumed |", "|---|---|---|---|---|---|---|---|---|"]
    priced = [r for r in rows if r.energy_pj > 0]
    points = _points(priced)
    clean = {r.model: r.clean_accuracy for r in rows}
    for b in budget_table(points, clean, (1.0, 2.0)):
        p = b.point
        if p is None:
            lines.append(f"| {b.model} | {b.scenario} | ≤ {b.budget_points:g} points | none "
                         "| | | | | |")
            continue
        row = priced[points.index(p)]
        lines.append(f"| {p.model} | {p.scenario} | ≤ {b.budget_points:g} points | {p.device} |"
                     f" {_fmt_knobs(p.knobs)} | {100 * p.accuracy:.1f} % | {p.energy_pj:.4g} | "
                     f"{row.energy_relative:.2f} | {'yes' if p.assumed_energy else 'no'} |")
    lines += ["", "## Accuracy versus the control knob", ""]
    for name in sorted(by_device):
        lines.append(f"![{name}](accuracy_vs_knob_{_safe(name)}.png)")
    lines += ["", "![BER versus knob](ber_vs_knob.png)", "", "## All operating points", "",
              "| model | scenario | device | knobs | BER | accuracy (95 % interval) | clean | "
              "chips × reads | energy (pJ) | vs nominal |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.model, r.scenario, r.device, sorted(r.knobs.items()))):
        interval = (f"[{100 * r.accuracy_low:.1f}, {100 * r.accuracy_high:.1f}]"
                    if math.isfinite(r.accuracy_low) else "")
        lines.append(f"| {r.model} | {r.scenario} | {r.device} | {_fmt_knobs(r.knobs)} | "
                     f"{r.ber:.3g} | {100 * r.accuracy:.1f} % {interval} | "
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
