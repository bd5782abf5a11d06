"""Plots of devices: error rates and energy versus a knob."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from memsim.errors import KnobError, MemsimError
from memsim.files import atomic_savefig
from memsim.physics.device import Device
from memsim.spec.curves import Scale
from memsim.spec.device import KnobRole, Quantity

_ERROR_SERIES = (
    ("ber", "BER (random data)", "-"),
    ("p_zero_to_one", "P(0→1)", "--"),
    ("p_one_to_zero", "P(1→0)", ":"),
    ("fault_fraction", "fault fraction", "-."),
)


def default_knob(device: Device) -> str:
    """The knob to sweep: the first control knob, else the first knob."""
    for k in device.spec.knobs:
        if k.role is KnobRole.CONTROL:
            return k.name
    return device.spec.knobs[0].name


def sweep(device: Device, knob: str, fixed: Mapping[str, float],
          points: int = 60) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Figures of `device` along `knob`, other knobs at `fixed` or nominal."""
    xs = device.knob_grid(knob, points)
    names = [n for n, _, _ in _ERROR_SERIES] + ["read_energy_pj_per_bit",
                                               "write_energy_pj_per_bit"]
    out = {n: np.empty(len(xs)) for n in names}
    for i, x in enumerate(xs):
        d = device.at(**{**fixed, knob: float(x)}).to_dict()
        for n in names:
            out[n][i] = d[n]
    return xs, out


def _check_knobs(devices: Sequence[Device], knob: str | None,
                 fixed: Mapping[str, float]) -> None:
    """Refuse a knob no device has, a fixed value outside a device's range, and a fixed knob
    that is every one of its devices' x axis (it would be ignored)."""
    known = sorted({k for d in devices for k in d.spec.knob_names})
    if knob is not None and knob not in known:
        raise KnobError(f"--sweep {knob}: none of these devices has that knob; they have "
                        f"{', '.join(known)}")
    for name, value in fixed.items():
        having = [d for d in devices if name in d.spec.knob_names]
        if not having:
            raise KnobError(f"--knob {name}: none of these devices has that knob; they have "
                            f"{', '.join(known)}")
        for d in having:
            d.resolve_knobs({name: value})  # a value outside the knob's range is a KnobError
        if all((knob if knob in d.spec.knob_names else default_knob(d)) == name
               for d in having):
            raise KnobError(f"--knob {name}: it is the x axis of the plot; --knob fixes the "
                            "other knobs")


def plot_devices(devices: Sequence[Device], out: Path, knob: str | None = None,
                 fixed: Mapping[str, float] | None = None) -> Path:
    """One row per device: error rates (log) and energy per bit versus a knob."""
    from memsim.figures import figures

    plt = figures()
    if not devices:
        raise MemsimError("nothing to plot: give at least one device")
    _check_knobs(devices, knob, fixed or {})
    fig, axes = plt.subplots(len(devices), 2, figsize=(11, 3.3 * len(devices)), squeeze=False)
    for row, device in enumerate(devices):
        name = knob if knob is not None and knob in device.spec.knob_names else default_knob(
            device)
        own_fixed = {k: v for k, v in (fixed or {}).items() if k in device.spec.knob_names}
        own_fixed.pop(name, None)
        try:
            xs, ys = sweep(device, name, own_fixed)
        except KnobError as e:
            raise MemsimError(f"cannot plot {device.name}: {e}") from None
        spec_knob = device.spec.knob(name)
        ax_err, ax_en = axes[row]
        for key, label, style in _ERROR_SERIES:
            y = np.where(ys[key] > 0, ys[key], np.nan)
            if np.all(np.isnan(y)):
                continue
            ax_err.plot(xs, y, style, label=label)
        held = {k.name: own_fixed.get(k.name, k.nominal) for k in device.spec.knobs}
        for cal in device.spec.calibration:
            # published points measured with other knobs elsewhere would mislead on this curve
            same_conditions = all(math.isclose(held[k], v, rel_tol=1e-9)
                                  for k, v in cal.at if k != name)
            if cal.quantity in (Quantity.FAULT_FRACTION, Quantity.BER, Quantity.P_ZERO_TO_ONE,
                                Quantity.P_ONE_TO_ZERO) and cal.of == name and same_conditions:
                px, py = zip(*cal.points, strict=True)
                ax_err.plot(px, py, "o", mfc="none", label=f"published {cal.quantity.value}")
        ax_err.set_yscale("log")
        ax_err.set_ylabel("probability per bit")
        ax_err.set_title(f"{device.name}: error rates")
        ax_en.plot(xs, ys["read_energy_pj_per_bit"], "-", label="read")
        ax_en.plot(xs, ys["write_energy_pj_per_bit"], "--", label="write")
        ax_en.set_ylabel("energy (pJ/bit)")
        ax_en.set_title(f"{device.name}: energy ({device.spec.energy.scope.value})")
        if np.all(ys["read_energy_pj_per_bit"] > 0) and np.all(ys["write_energy_pj_per_bit"] > 0):
            ax_en.set_yscale("log")
        for ax in (ax_err, ax_en):
            ax.set_xlabel(f"{name} ({spec_knob.unit})")
            if spec_knob.scale is Scale.LOG:
                ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_savefig(fig, out, dpi=110)
    except (OSError, ValueError) as e:
        raise MemsimError(f"cannot write {out}: {e}") from None
    finally:
        plt.close(fig)
    return out
