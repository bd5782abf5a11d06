"""The `memsim` command line. Logic lives in the library; this module parses and prints.

Exit status: 0 success; 2 bad input or usage (argparse errors and every `MemsimError` but
`RunFailure`); 1 a failure while running that is not the input's fault (`RunFailure`,
`OSError`), and `devices check` with a point beyond its tolerance; 130 interrupted (Ctrl-C).
Each error is one line on stderr, never a traceback (see docs/cli.md).

Building the parser imports no numerics: the physics, the spec loader and the experiments are
imported inside the command functions, so `memsim --help` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shlex
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from memsim import __version__
from memsim.errors import MemsimError, RunFailure, SpecError
from memsim.experiments.commands import (
    MAX_CELLS,
    MAX_CHIPS,
    MAX_TRIALS,
    add_command,
    add_evaluation_options,
    bounded_int,
    evaluation_options,
    input_folder,
    nonnegative_int,
    output_file,
    output_folder,
    seed_int,
)
from memsim.experiments.commands import add_commands as add_experiment_commands
from memsim.spec.names import ECC_SCHEMES, UNCORRECTABLE_POLICIES, format_knobs

if TYPE_CHECKING:
    from memsim.memory.importing import ImportInput, InputFormat
    from memsim.physics.device import Device, OperatingPoint
    from memsim.spec.fields import Param

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def load_device(name_or_path: str | Path) -> Device:
    """`memsim.load_device`, imported when a command first needs a device (not for --help)."""
    from memsim.physics.device import load_device as load

    return load(name_or_path)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message}\n")


def _parse_knobs(items: Sequence[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise MemsimError(f"--knob expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise MemsimError(f"--knob {name.strip()}: expected a number, got {value!r}") from None
    return out


def _jsonable(obj: Any) -> Any:
    from memsim.spec.fields import Param

    if isinstance(obj, Param):
        d: dict[str, Any] = {"value": obj.value, "provenance": obj.provenance.value}
        if obj.source:
            d["source"] = obj.source
        if obj.note:
            d["note"] = obj.note
        return d
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        kind = _kind_name(obj)
        return {"kind": kind, **out} if kind else out
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    return obj


def _kind_name(obj: object) -> str | None:
    from memsim.spec.curves import _KIND_OF
    from memsim.spec.mechanisms import MECHANISM_KIND_OF

    return _KIND_OF.get(type(obj)) or MECHANISM_KIND_OF.get(type(obj))


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _fmt(p: Param) -> str:
    tag = p.provenance.value
    extra = f", {p.source}" if p.source else ""
    return f"{p.value:g} [{tag}{extra}]"


def _tags(tags: Sequence[str] | frozenset[Any]) -> str:
    """Provenance tags, strongest first."""
    from memsim.spec.fields import Provenance

    strength = [p.value for p in Provenance]
    vals = sorted({t.value if isinstance(t, Enum) else str(t) for t in tags},
                  key=lambda v: strength.index(v) if v in strength else len(strength))
    return "[" + ", ".join(vals) + "]" if vals else ""


# -- devices list ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from memsim.spec.loader import builtin_device_files, catalogue_dir

    rows = []
    problems: list[str] = []
    files = builtin_device_files()
    if not files:
        raise MemsimError(f"no built-in devices found in {catalogue_dir()} (is memsim installed "
                          "completely?)")
    for path in files.values():
        try:
            d = load_device(path)
        except MemsimError as e:
            problems.append(f"error: {e}")
            continue
        rows.append(d)
    if args.json:
        _print_json([
            {"name": d.name, "technology": d.spec.technology.value,
             "description": d.spec.description, "file": d.spec.file,
             "knobs": [{"name": k.name, "unit": k.unit, "role": k.role.value,
                        "nominal": k.nominal.value, "range": [k.low, k.high]}
                       for k in d.spec.knobs],
             "source": [s.id for s in d.spec.sources]}
            for d in rows])
    else:
        for d in rows:
            print(f"{d.name}  ({d.spec.technology.value})")
            for k in d.spec.knobs:
                print(f"    {k.name:<16} {k.role.value:<12} nominal {k.nominal.value:g} "
                      f"range [{k.low:g}, {k.high:g}] {k.unit}")
            print(f"    source: {', '.join(s.id for s in d.spec.sources)}")
    for p in problems:
        print(p, file=sys.stderr)
    return EXIT_USAGE if problems else 0


# -- devices show ------------------------------------------------------------------------------


def _show_part(name: str, value: Any) -> str:
    from memsim.spec.fields import Param

    if not isinstance(value, Param):  # a group of parameters: weak arrays
        inner = ", ".join(f"{f.name} {_fmt(getattr(value, f.name))}"
                          for f in dataclasses.fields(value))
        return f"{name} ({inner})"
    return f"{name} {_fmt(value)}"


def cmd_show(args: argparse.Namespace) -> int:
    from memsim.physics.curves import curve_provenance, describe
    from memsim.physics.device import mechanism_curves

    d = load_device(args.device)
    spec = d.spec
    if args.json:
        data = _jsonable(spec)
        data["calibration_check"] = [
            {"quantity": c.calibration.quantity.value, "knobs": dict(c.knobs),
             "published": c.published, "model": c.model, "ratio": c.ratio, "ok": c.ok}
            for c in d.calibration_report()]
        _print_json(data)
        return 0
    print(f"{spec.name}  ({spec.technology.value}, schema {spec.schema_version})")
    print(f"  file: {spec.file}")
    print(f"  {spec.description}")
    print("  sources:")
    for s in spec.sources:
        print(f"    {s.id}: {s.citation}")
    print(f"  cell: {spec.cell.bits_per_cell} bit(s) per cell, {spec.cell.level_coding.value} "
          f"level coding; rows of {spec.array.row_bits} bits, {spec.array.rows_per_array} "
          "rows per array")
    print("  knobs:")
    for k in spec.knobs:
        print(f"    {k.name}: {k.role.value}, unit {k.unit}, nominal {_fmt(k.nominal)}, "
              f"range [{k.low:g}, {k.high:g}], {k.scale.value} scale")
        if k.description:
            print(f"      {k.description}")
    print("  faults:")
    for i, m in enumerate(spec.faults):
        kind = _kind_name(m)
        print(f"    [{i}] {m.name}: {kind}, phase {m.phase.value}")
        if m.description:
            print(f"        {m.description}")
        for field, curve in mechanism_curves(m):
            print(f"        {field}: {describe(curve)} {_tags(curve_provenance(curve))}")
        for fld in ("failure", "variability", "cell_factor"):
            sub = getattr(m, fld, None)
            if sub is not None:
                parts = ", ".join(_show_part(f.name, getattr(sub, f.name))
                                  for f in dataclasses.fields(sub)
                                  if f.name != "weak_arrays" or sub.weak_arrays.fraction.value)
                print(f"        {fld}: {parts}")
        for n in getattr(m, "neighbours", ()):
            print(f"        neighbours: offset {n.offset:+d} with probability "
                  f"{_fmt(n.probability)}")
        for fld in ("stuck_at_zero", "stuck_at_one"):
            if hasattr(m, fld):
                print(f"        {fld}: {_fmt(getattr(m, fld))}")
    e = spec.energy
    print(f"  energy ({e.scope.value} scope):")
    if e.description:
        print(f"      {e.description}")
    for f in dataclasses.fields(e):
        value = getattr(e, f.name)
        if f.name not in ("scope", "description"):
            print(f"    {f.name}: {describe(value)} {_tags(curve_provenance(value))}")
    checks = d.calibration_report()
    if checks:
        print("  calibration (published point vs model):")
        for c in checks:
            knobs = ", ".join(f"{k}={v:g}" for k, v in c.knobs.items())
            mark = "ok" if c.ok else f"OFF (beyond x{c.calibration.tolerance_factor:g})"
            print(f"    {c.calibration.quantity.value} at {knobs}: published {c.published:.3g}, "
                  f"model {c.model:.3g}, ratio {c.ratio:.2f} {mark}")
    return 0


# -- devices validate --------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for item in args.files:
        try:
            d = load_device(item)
        except SpecError as e:
            failed = True
            for p in e.problems:
                print(f"error: {p}", file=sys.stderr)
            continue
        except MemsimError as e:
            failed = True
            print(f"error: {e}", file=sys.stderr)
            continue
        print(f"ok: {item}: {d.name} ({d.spec.technology.value})")
    return EXIT_USAGE if failed else 0


# -- devices at --------------------------------------------------------------------------------


def _print_point(op: OperatingPoint, device: Device) -> None:
    knobs = ", ".join(f"{k}={v:g} {device.spec.knob(k).unit}" for k, v in op.knobs.items())
    print(f"{op.device} at {knobs}")
    print(f"  ber             {op.ber:.4g}   {_tags(op.provenance)}")
    print(f"  p_zero_to_one   {op.p_zero_to_one:.4g}")
    print(f"  p_one_to_zero   {op.p_one_to_zero:.4g}")
    print(f"  fault_fraction  {op.fault_fraction:.4g}")
    if device.spec.cell.bits_per_cell > 1:
        print("  level transitions (stored -> read):")
        for i, row in enumerate(op.level_transition):
            print(f"    {i}: " + "  ".join(f"{x:.3g}" for x in row))
    print("  mechanisms:")
    for m in op.mechanisms:
        print(f"    {m.name} ({m.kind}, {m.phase.value}): ber {m.ber:.4g}, "
              f"p01 {m.p_zero_to_one:.4g}, p10 {m.p_one_to_zero:.4g}, "
              f"faulty {m.fault_fraction:.4g} {_tags(m.provenance)}")
    e = op.energy
    print(f"  energy ({e.scope} scope):")
    for name in ("read_energy_pj_per_bit", "write_energy_pj_per_bit",
                 "static_power_mw_per_mib", "refresh_power_mw_per_mib"):
        print(f"    {name:<26} {getattr(e, name):.4g} {_tags(e.provenance[name])}")


def cmd_at(args: argparse.Namespace) -> int:
    device = load_device(args.device)
    op = device.at(**_parse_knobs(args.knob))
    if args.json:
        _print_json(op.to_dict())
    else:
        _print_point(op, device)
    return 0


# -- devices plot ------------------------------------------------------------------------------


def cmd_plot(args: argparse.Namespace) -> int:
    from memsim.plotting import plot_devices
    from memsim.spec.loader import builtin_device_files

    names = list(args.devices)
    if args.all:
        names += [n for n in builtin_device_files() if n not in names]
    if not names:
        raise MemsimError("devices plot: name at least one device or give --all")
    devices = [load_device(n) for n in names]
    out = plot_devices(devices, Path(args.out), args.sweep, _parse_knobs(args.knob))
    print(f"wrote {out}")
    return 0


# -- devices check -----------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    bad = 0
    rows: list[dict[str, Any]] = []
    for item in args.devices:
        d = load_device(item)
        for c in d.calibration_report():
            rows.append({"device": d.name, "quantity": c.calibration.quantity.value,
                         "knobs": dict(c.knobs), "published": c.published, "model": c.model,
                         "ratio": c.ratio, "tolerance_factor": c.calibration.tolerance_factor,
                         "ok": c.ok})
            bad += not c.ok
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            knobs = ", ".join(f"{k}={v:g}" for k, v in r["knobs"].items())
            print(f"{'ok ' if r['ok'] else 'OFF'} {r['device']}: {r['quantity']} at {knobs}: "
                  f"published {r['published']:.3g}, model {r['model']:.3g}, "
                  f"ratio {r['ratio']:.2f}")
        if not rows:
            print("no calibration points in these devices")
    if bad:
        print(f"error: {bad} point(s) beyond their tolerance", file=sys.stderr)
    return 1 if bad else 0


# -- devices fit -------------------------------------------------------------------------------


def _pm(pair: tuple[float, float]) -> str:
    value, se = pair
    if abs(value) < 1e-9 and math.isfinite(se) and se < 1e-9:  # a share fitted to nothing
        return "0"
    return f"{value:.4g} ± {se:.2g}" if math.isfinite(se) else f"{value:.4g}"


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit the threshold mechanism of a device to measured maps; write a device file that
    extends it."""
    import numpy as np
    import yaml

    from memsim.files import atomic_write_text
    from memsim.memory.replay import FaultMaps
    from memsim.physics.device import Device, load_device
    from memsim.physics.fit import (
        ArrayCounts,
        base_mechanism,
        find_neighbours,
        fit_threshold,
        fitted_document,
    )

    chips = FaultMaps.load_chips(args.maps)
    maps = chips[0]
    base = load_device(args.base)
    mechanism = base_mechanism(base.spec, maps.knob, args.mechanism)
    sa0 = np.stack([c.stuck_at_zero for c in chips])
    sa1 = np.stack([c.stuck_at_one for c in chips])
    found = (find_neighbours(sa0, sa1, args.neighbours, cells_per_row=args.row_bits)
             if args.neighbours else ())
    counts = ArrayCounts.from_maps(maps.knob, maps.knob_values, sa0, sa1, args.array_bits,
                                   [n.offset for n in found], cells_per_row=args.row_bits)
    fit = fit_threshold(counts, weak_arrays=not args.no_weak_arrays, resamples=args.resamples,
                        seed=args.seed)
    citation = (f"fault maps {Path(args.maps).name}: {len(chips)} chip(s) of "
                f"{sa0.shape[2]} cells at {maps.knob} = "
                f"{', '.join(f'{v:g}' for v in maps.knob_values)}"
                + (f" ({maps.source})" if maps.source else ""))
    document = fitted_document(
        fit, extends=args.base, name=args.name or f"{base.name}-fitted",
        description=f"{base.name} with its {mechanism} mechanism fitted to "
                    f"{Path(args.maps).name} by memsim devices fit.",
        mechanism=mechanism, citation=citation, array_bits=args.array_bits, curve=args.curve,
        neighbours=found)
    out = Path(args.out)
    # validated as the file will be read: its extends resolved from its own folder
    Device.from_document(document, file=str(out), folder=out.parent)
    goodness = [{"knob_value": g.knob_value,
                 "faulty_fraction": g.faulty_fraction, "fault_free_arrays": g.fault_free_arrays,
                 "dispersion": g.dispersion, "max_per_array": g.max_per_array,
                 "fault_free_rows": g.fault_free_rows, "row_dispersion": g.row_dispersion}
                for g in fit.goodness]
    rows = (f"rows of {fit.cells_per_row} cells" if fit.cells_per_row
            else "no rows counted (--row-bits)")
    header = [f"Fitted by: {args.command_line}",
              f"Chips: {len(chips)}; arrays of {args.array_bits} cells, {rows}; standard "
              f"errors from "
              f"{args.resamples} refits of resampled "
              f"{'chips' if len(chips) > 2 else 'arrays'}.",
              f"die {_pm(fit.die)}, array {_pm(fit.array)}, "
              + (f"row {_pm(fit.row)}, " if fit.cells_per_row else "")
              + f"cell {fit.cell:.4g}; weak arrays "
              f"{_pm(fit.weak_fraction)} shifted by {_pm(fit.weak_shift)} sd; stuck-at-0 share "
              f"{_pm(fit.stuck_at_zero_share)}.",
              ("Neighbours: " + "; ".join(
                  f"offset +{n.offset} taken along with probability {_pm(n.probability)} "
                  f"({n.pairs} pairs against {n.chance:.3g} by chance)" for n in found)
               + " (the shares and the figures below are of the cells failing by themselves)"
               + ("; pairs at +1 may be rows that cluster faults: --row-bits compares each "
                  "offset with chance row by row" if args.row_bits is None
                  and any(n.offset == 1 for n in found) else "")
               if found else f"Neighbours: no pairs above chance at offsets 1-{args.neighbours}"
               if args.neighbours else "Neighbours: not searched"),
              "Fault fraction (all faulty cells, mean over chips): " + "; ".join(
                  f"{v:g}: {_pm((f, se))}" for v, f, se in zip(
                      fit.knob_values, fit.fault_fraction, fit.fault_fraction_se,
                      strict=True)) + ".",
              f"Probit through the fitted points: mean {_pm(fit.probit_mean)}, sigma "
              f"{_pm(fit.probit_sigma)}, within x{fit.probit_max_ratio:.2f} of each.",
              "Goodness of fit, measured / model (mean over chips):"]
    header += [f"  {maps.knob}={g.knob_value:g}: faulty {g.faulty_fraction[0]:.3g} / "
               f"{g.faulty_fraction[1]:.3g}, fault-free arrays {g.fault_free_arrays[0]:.3f} / "
               f"{g.fault_free_arrays[1]:.3f}, dispersion {g.dispersion[0]:.3g} / "
               f"{g.dispersion[1]:.3g}, max per array {g.max_per_array[0]:.4g} / "
               f"{g.max_per_array[1]:.4g}"
               + (f", fault-free rows {g.fault_free_rows[0]:.3f} / {g.fault_free_rows[1]:.3f}"
                  if g.fault_free_rows else "")
               + (f", row dispersion {g.row_dispersion[0]:.3g} / {g.row_dispersion[1]:.3g}"
                  if g.row_dispersion else "") for g in fit.goodness]
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(
        document, sort_keys=False, width=100, allow_unicode=True)
    atomic_write_text(out, text)
    if args.json:
        _print_json({"out": str(out), "die": fit.die, "array": fit.array,
                     "row": fit.row if fit.cells_per_row else None,
                     "cells_per_row": fit.cells_per_row, "cell": fit.cell,
                     "weak_fraction": fit.weak_fraction, "weak_shift": fit.weak_shift,
                     "stuck_at_zero_share": fit.stuck_at_zero_share,
                     "neighbours": [{"offset": n.offset, "probability": n.probability,
                                     "pairs": n.pairs, "chance": n.chance} for n in found],
                     "fault_fraction": dict(zip(map(str, fit.knob_values), fit.fault_fraction,
                                                strict=True)),
                     "fault_fraction_se": dict(zip(map(str, fit.knob_values),
                                                   fit.fault_fraction_se, strict=True)),
                     "probit_mean": fit.probit_mean, "probit_sigma": fit.probit_sigma,
                     "goodness": goodness})
    else:
        print("\n".join(header[1:]))
        print(f"wrote {out}")
    return 0


# -- memory inject / diff ----------------------------------------------------------------------


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise MemsimError(f"{path}: cannot read: {e.strerror or e}") from None


def cmd_inject(args: argparse.Namespace) -> int:
    from memsim.files import atomic_write_bytes
    from memsim.memory.image import MemoryImage
    from memsim.memory.protection import ChipReader, Protection, protect
    from memsim.memory.replay import FaultMaps, MeasuredChip

    if (args.device is None) == (args.fault_map is None):
        raise MemsimError("give exactly one of --device NAME|FILE and --fault-map FILE.npz")
    device = load_device(args.device) if args.device is not None else None
    if (device is not None and args.bits_per_cell is not None
            and args.bits_per_cell != device.spec.cell.bits_per_cell):
        raise MemsimError(f"{device.name} stores {device.spec.cell.bits_per_cell} bit(s) per "
                          f"cell; --bits-per-cell {args.bits_per_cell} needs a device file with "
                          "that cell (e.g. one that extends it)")
    if device is None and args.bits_per_cell not in (None, 1):
        raise MemsimError("fault maps hold one bit per cell; --bits-per-cell must be 1")
    if device is not None and args.chip is not None:
        raise MemsimError("--chip picks a chip of a --fault-map file; a device's chip is "
                          "--chip-seed")
    image = MemoryImage.from_bytes(_read_bytes(args.input))
    knobs = _parse_knobs(args.knob)
    protection = Protection(protected_msbs=args.protect_msbs, ecc=args.ecc,
                            interleave=args.interleave, on_uncorrectable=args.on_uncorrectable)
    protected = protect(image, protection)
    chip: ChipReader
    if device is not None:
        chip = protected.chip(device, args.chip_seed)
        source = device.name
    else:
        maps = FaultMaps.load(args.fault_map, chip=args.chip or 0)
        chip = MeasuredChip(maps, protected.stored.n_bits, offset=args.map_offset,
                            wrap=args.wrap, interpolate=args.interpolate)
        source = f"fault map {args.fault_map}" + (f" chip {args.chip}" if args.chip else "")
    result = protected.read(chip, knobs, seed=args.seed)
    try:
        atomic_write_bytes(args.out, result.image.to_bytes())
    except OSError as e:
        raise RunFailure(f"{args.out}: cannot write: {e.strerror or e}") from None
    report: dict[str, object] = {"device": source, **result.raw.to_dict(),
                                 "chip_seed": args.chip_seed, "seed": args.seed}
    # `bits` and the flips describe the file written; the physical read is reported apart
    report.update({"bits": image.n_bits, "flips_zero_to_one": result.residual_zero_to_one,
                   "flips_one_to_zero": result.residual_one_to_zero})
    if not protection.is_none:
        report["protection"] = {"description": protection.describe(),
                                **protected.overhead.to_dict()}
        report["stored"] = {"bits": result.raw.bits,
                            "flips_zero_to_one": result.raw.flips_zero_to_one,
                            "flips_one_to_zero": result.raw.flips_one_to_zero}
        report["ecc"] = result.ecc.to_dict()
    if args.json:
        _print_json(report)
    else:
        print(f"wrote {args.out}: {image.n_bits} bits, {result.residual_zero_to_one} flipped "
              f"0->1, {result.residual_one_to_zero} flipped 1->0, {result.raw.stuck_cells} "
              "stuck cells")
        if not protection.is_none:
            o, counts = protected.overhead, result.ecc
            print(f"protection: {protection.describe()}; {o.stored_bits} bits stored in "
                  f"{source} (+{o.storage_overhead:.1%} storage), {result.raw.bit_errors} "
                  f"read wrong there; {counts.corrected_words} of {counts.words} words corrected, "
                  f"{counts.uncorrectable_words} uncorrectable")
    return 0


def cmd_characterise(args: argparse.Namespace) -> int:
    from memsim.memory.chip import Chip
    from memsim.memory.replay import FaultMaps

    device = load_device(args.device)
    name, sep, text = args.sweep.partition("=")
    if not sep or not name.strip():
        raise MemsimError(f"--sweep expects KNOB=V1,V2,..., got {args.sweep!r}")
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MemsimError(f"--sweep values must be numbers, got {text!r}") from None
    if not values:
        raise MemsimError("--sweep needs at least one value")
    if args.cells < 1:
        raise MemsimError(f"--cells must be >= 1, got {args.cells}")
    name = name.strip()
    for v in values:
        device.resolve_knobs({name: v})  # unknown knob or out of range: one line
    # the knobs' full range, as `memory inject` uses: the same seed is then the same chip
    chip = Chip(device, args.cells, args.chip_seed)
    maps = FaultMaps.from_chip(chip, values, knob=name, seed=args.seed,
                               description=f"memsim devices: {device.name}")
    try:
        maps.save(args.out)
    except OSError as e:
        raise RunFailure(f"{args.out}: cannot write: {e.strerror or e}") from None
    rows = [{"knob_value": float(v), "stuck_at_zero": int(maps.stuck_at_zero[i].sum()),
             "stuck_at_one": int(maps.stuck_at_one[i].sum())}
            for i, v in enumerate(maps.knob_values)]
    if args.json:
        _print_json({"device": device.name, "knob": name, "cells": args.cells,
                     "chip_seed": args.chip_seed, "out": args.out, "points": rows})
    else:
        print(f"wrote {args.out}: {args.cells} cells of {device.name}, chip {args.chip_seed}")
        for r in rows:
            print(f"  {name}={r['knob_value']:g}: {r['stuck_at_zero']} stuck-at-0, "
                  f"{r['stuck_at_one']} stuck-at-1")
    return 0


_QUALIFIER = re.compile(r",(chip|written)=([^,=]*)$")
_SUFFIX_FORMATS = {".csv": "csv", ".hex": "hex", ".txt": "hex"}
_FORMATS: dict[str, InputFormat] = {"binary": "binary", "hex": "hex", "csv": "csv"}


def _import_input(item: str, fmt: str, written: int | None) -> ImportInput:
    """`FILE[=VALUE][,chip=K][,written=0|1]` of `memory import` as an `ImportInput`."""
    from memsim.memory.importing import ImportInput

    qualifiers: dict[str, str] = {}
    rest = item
    while (m := _QUALIFIER.search(rest)) and not Path(rest).exists():
        if m.group(1) in qualifiers:
            raise MemsimError(f"{item!r}: {m.group(1)}= given twice")
        qualifiers[m.group(1)] = m.group(2)
        rest = rest[: m.start()]
    path, value = rest, None
    if not Path(rest).exists() and "=" in rest:
        path, _, text = rest.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not path:
            raise MemsimError(f"{item!r}: expected FILE=VALUE with a finite number, got "
                              f"{text!r}")
    chip = None
    if "chip" in qualifiers:
        text = qualifiers["chip"]
        if not text.isdigit():
            raise MemsimError(f"{item!r}: chip= expects an integer >= 0, got {text!r}")
        chip = int(text)
    if "written" in qualifiers:
        if qualifiers["written"] not in ("0", "1"):
            raise MemsimError(f"{item!r}: written= expects 0 or 1, got "
                              f"{qualifiers['written']!r}")
        written = int(qualifiers["written"])
    kind = _FORMATS[fmt if fmt != "auto" else
                    _SUFFIX_FORMATS.get(Path(path).suffix.lower(), "binary")]
    if kind != "csv" and value is None:
        raise MemsimError(f"{path}: a bitmap needs its knob value: {path}=VALUE")
    if kind != "csv" and written is None:
        raise MemsimError(f"{path}: which pattern was written before this bitmap was read? "
                          f"--written 0|1, or {path}=VALUE,written=0|1")
    return ImportInput(path, kind, value, chip, written)


def cmd_import(args: argparse.Namespace) -> int:
    from memsim.memory.importing import import_fault_maps, import_report
    from memsim.memory.replay import FaultMaps

    inputs = [_import_input(item, args.format, args.written) for item in args.files]
    values: list[float] = []
    for text in (args.values or "").split(","):
        if text.strip():
            try:
                values.append(float(text))
            except ValueError:
                raise MemsimError(f"--values: expected numbers, got {text!r}") from None
    source = args.source if args.source is not None else (
        "memsim memory import: " + ", ".join(i.path for i in inputs))
    imported = import_fault_maps(
        inputs, knob=args.knob, unit=args.unit, harsher=args.harsher, n_cells=args.cells,
        word_bits=args.word_bits, bit_order=args.bit_order, knob_values=values,
        source=source, description=args.description or "")
    report = import_report(imported, args.array_bits)
    try:
        FaultMaps.save_chips(imported.chips, args.out)
    except OSError as e:
        raise RunFailure(f"{args.out}: cannot write: {e.strerror or e}") from None
    if args.json:
        _print_json({"out": args.out, **report})
        return 0
    unit = f" {report['unit']}" if report["unit"] else ""
    chips = report["chips"]
    print(f"wrote {args.out}: {report['cells']} cells, {chips} chip{'s' if chips > 1 else ''}, "
          f"{args.knob} at {', '.join(f'{v:g}' for v in report['knob_values'])}{unit} "
          f"(harsher: {report['harsher']})")
    if report["arrays"]:
        left = report["cells_outside_arrays"]
        print(f"  per array: the faulty cells of each {report['array_bits']}-cell array "
              f"({report['arrays']} arrays{f'; the last {left} cells in none' if left else ''}"
              "); dispersion = variance / mean")
    for row in report["points"]:
        counts = [f"{label} not measured" if d in row["unknown"] else f"{row[d]} {label}"
                  for d, label in (("stuck_at_zero", "stuck-at-0"),
                                   ("stuck_at_one", "stuck-at-1"))]
        a = row["per_array"]
        spread = "" if a is None else (
            f"; per array: mean {a['mean']:.4g}, dispersion "
            + ("-" if a["index_of_dispersion"] is None else f"{a['index_of_dispersion']:.3g}")
            + f", fault-free {a['fault_free_fraction']:.1%}, max {a['max']}")
        print(f"  chip {row['chip']} {args.knob}={row['knob_value']:g}: "
              f"{', '.join(counts)}{spread}")
    for k in range(chips):
        pairs = [v for v in report["nesting_violations"] if v["chip"] == k]
        if pairs:
            print(f"  chip {k} nesting violations (faulty at the milder value, not at the "
                  "harsher): " + ", ".join(f"{v['milder']:g} -> {v['harsher']:g}: "
                                           f"{v['cells']}" for v in pairs))
    if any(row["unknown"] for row in report["points"]):
        print("  a direction not measured (a bitmap of one pattern only) is stored as no "
              "fault")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from memsim.memory.image import MemoryImage

    a, b = _read_bytes(args.a), _read_bytes(args.b)
    if len(a) != len(b):
        raise MemsimError(f"{args.a} has {len(a)} bytes, {args.b} has {len(b)}: not comparable")
    up, down = MemoryImage.from_bytes(a).diff(MemoryImage.from_bytes(b))
    report = {"bits": 8 * len(a), "flips_zero_to_one": up, "flips_one_to_zero": down}
    if args.json:
        _print_json(report)
    else:
        print(f"{report['bits']} bits: {up} flipped 0->1, {down} flipped 1->0")
    return 0


# -- train / eval ------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    import time

    from memsim.spec.training import load_training
    from memsim.workloads.training import train

    spec = load_training(args.config, args.set or ())
    out = Path(args.out) if args.out else Path("runs") / spec.name
    start = time.perf_counter()
    result = train(spec, out, progress=not args.no_progress,
                   log=lambda line: print(line, flush=True))
    if result.resumed_at_epoch == spec.epochs:
        print(f"{spec.name}: already complete ({spec.epochs} epochs) in {result.checkpoint}")
    else:
        print(f"{spec.name}: test accuracy {result.test_accuracy:.4f} after {spec.epochs} "
              f"epochs ({time.perf_counter() - start:.1f} s); checkpoint {result.checkpoint}")
    return 0


def _protection(args: argparse.Namespace) -> Any:
    from memsim.memory.protection import Protection

    return Protection(protected_msbs=args.protect_msbs, ecc=args.ecc, interleave=args.interleave,
                      on_uncorrectable=args.on_uncorrectable)


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from memsim.experiments.evaluate import Placement, evaluate_model
    from memsim.experiments.stats import paired_difference_interval
    from memsim.workloads.training import load_checkpoint

    device = load_device(args.device)
    knobs = device.resolve_knobs(_parse_knobs(args.knob))
    placement = Placement("weights", device, knobs, None, _protection(args))
    options = evaluation_options(args).resolved(lambda line: print(line, file=sys.stderr))
    point = device.at(**knobs)
    # every checkpoint is loaded and checked before the first (long) evaluation starts
    models = [load_checkpoint(c, data_dir=args.data_dir) for c in args.checkpoint]
    first = models[0].dataset.test
    for checkpoint, trained in zip(args.checkpoint[1:], models[1:], strict=True):
        test = trained.dataset.test
        if not (torch.equal(test.images, first.images) and torch.equal(test.labels, first.labels)):
            raise MemsimError(f"{checkpoint}: its test set differs from that of "
                              f"{args.checkpoint[0]}; a paired comparison needs the same images")
    reports, evaluations, names = [], [], []
    for checkpoint, trained in zip(args.checkpoint, models, strict=True):
        test = trained.dataset.test
        result = evaluate_model(trained.model, test.images, test.labels, [placement],
                                chips=args.chips, trials=args.trials, seed=args.seed,
                                options=options)
        report = {"checkpoint": str(checkpoint), "model": trained.spec.name,
                  "device": device.name, "knobs": knobs, "ber": point.ber, "seed": args.seed,
                  **result.to_dict()}
        if not args.per_trial:
            report.pop("per_trial")
        reports.append(report)
        evaluations.append(result)
        names.append(trained.spec.name)
    if len(set(names)) < len(names):  # runs of one config: tell them apart by their files
        names = [f"{n} ({c})" for n, c in zip(names, args.checkpoint, strict=True)]
    # the same seed gives every model the same chips and reads: differences pair by chip
    differences: list[dict[str, Any]] = []
    for name, result in zip(names[1:], evaluations[1:], strict=True):
        d = paired_difference_interval(result.accuracy_by_chip(),
                                       evaluations[0].accuracy_by_chip())
        differences.append({"model": name, "versus": names[0], "difference": d.mean,
                            "low": d.low if d.bounded else None,  # JSON has no infinity
                            "high": d.high if d.bounded else None, "chips": d.n_clusters})
    if args.json:
        _print_json(reports[0] if len(reports) == 1 else
                    {"evaluations": reports, "paired_differences": differences})
        return 0
    for name, result in zip(names, evaluations, strict=True):
        a = result.accuracy
        interval = (f"[{a.low:.4f}, {a.high:.4f}]" if a.bounded
                    else "(one chip: no interval; use --chips 2 or more)")
        print(f"{name} on {device.name} at {format_knobs(knobs)} (ber {point.ber:.3g})")
        print(f"  clean accuracy      {result.clean_accuracy:.4f}   MLM {result.clean_mlm:.3f} "
              f"(normalised {result.clean_mlm_normalised:.3f})")
        print(f"  accuracy            {a.mean:.4f} {interval} 95 %, {a.n_clusters} chips x "
              f"{args.trials} trials, chips as clusters")
        print(f"  mean MLM            {result.mean_mlm:.3f}")
        print(f"  flips per read      {result.mean_bit_errors:.1f} of {result.stored_bits} bits "
              f"stored ({result.data_bits} weight bits, {result.n_test} test images)")
    for row in differences:
        bounds = (f"[{row['low']:+.4f}, {row['high']:+.4f}] 95 %, paired over {row['chips']} "
                  "chips" if row["chips"] > 1 else "(one chip: no interval)")
        print(f"{row['model']} - {row['versus']}: {row['difference']:+.4f} {bounds}")
    return 0


# ----------------------------------------------------------------------------------------------


DEVICE_HELP = "built-in name (e.g. sram-14nm) or YAML file"
KNOB_HELP = "knob value (repeatable); unnamed knobs stay nominal"
JSON_HELP = "print JSON instead of text"


def _protection_options(p: argparse.ArgumentParser, max_msbs: int) -> None:
    p.add_argument("--ecc", choices=ECC_SCHEMES, default="none",
                   help="SEC-DED check bits stored in the same faulty memory (default none)")
    p.add_argument("--interleave", type=bounded_int(1, 64), default=1, metavar="D",
                   help="spread D codewords over adjacent cells (default 1)")
    p.add_argument("--protect-msbs", type=bounded_int(0, max_msbs), default=0, metavar="K",
                   help=f"keep the K most significant bits of each "
                        f"{'byte' if max_msbs == 8 else 'weight'} in a reliable bank")
    p.add_argument("--on-uncorrectable", choices=UNCORRECTABLE_POLICIES, default="leave",
                   help="what to do with a word ECC detects but cannot correct (default leave)")


def build_parser() -> argparse.ArgumentParser:
    # Only argparse here: every import a command needs happens when it runs (see the docstring).
    parser = _Parser(prog="memsim", description="Approximate-memory simulator for neural networks.",
                     epilog="exit status: 0 success, 2 bad input or usage, 1 a failure while "
                            "running, 130 interrupted; see docs/cli.md")
    parser.add_argument("--version", action="version", version=f"memsim {__version__}")
    parser.add_argument("--extends-anywhere", action="store_true",
                        help="let device files' extends: name files outside their own folder "
                             "and the catalogue (before the command: memsim --extends-anywhere "
                             "devices show FILE)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                help="memsim COMMAND --help for its options and an example")

    devices = sub.add_parser("devices", help="memory technologies: list, inspect, validate, plot")
    dsub = devices.add_subparsers(dest="action", required=True, parser_class=_Parser,
                                  help="memsim devices ACTION --help for its options")

    p = add_command(dsub, "list", "the built-in devices", "memsim devices list --json")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of objects with name, technology, knobs")
    p.set_defaults(func=cmd_list)

    p = add_command(dsub, "show", "a device's resolved spec, provenance and calibration",
                    "memsim devices show sram-14nm")
    p.add_argument("device", help=DEVICE_HELP)
    p.add_argument("--json", action="store_true",
                   help="the resolved spec and its calibration check as JSON")
    p.set_defaults(func=cmd_show)

    p = add_command(dsub, "validate", "check device files; exit 2 with one line per problem",
                    "memsim devices validate examples/sram-14nm-hot-die.yaml")
    p.add_argument("files", nargs="+", metavar="FILE", help="device YAML files or built-in names")
    p.set_defaults(func=cmd_validate)

    p = add_command(dsub, "at", "error rates and energy at an operating point",
                    "memsim devices at sram-14nm --knob v_rel=0.85")
    p.add_argument("device", help=DEVICE_HELP)
    p.add_argument("--knob", action="append", metavar="NAME=VALUE", help=KNOB_HELP)
    p.add_argument("--json", action="store_true", help="the operating point as a JSON object")
    p.set_defaults(func=cmd_at)

    p = add_command(dsub, "plot", "error rates and energy versus a knob, one row per device",
                    "memsim devices plot --all --out catalogue.png\n"
                    "         memsim devices plot sram-14nm --sweep v_rel --out sram.png")
    p.add_argument("devices", nargs="*", metavar="DEVICE", help="built-in names or YAML files")
    p.add_argument("--all", action="store_true", help="every built-in device")
    p.add_argument("--out", type=output_file, required=True, metavar="FILE.png",
                   help="the picture to write (PNG, or the format its suffix names)")
    p.add_argument("--sweep", metavar="KNOB",
                   help="knob for the x axis (default: each device's first control knob)")
    p.add_argument("--knob", action="append", metavar="NAME=VALUE",
                   help="fix another knob (repeatable)")
    p.set_defaults(func=cmd_plot)

    p = add_command(dsub, "check", "compare devices with their published calibration points; "
                                   "exit 1 if one is off", "memsim devices check sram-14nm")
    p.add_argument("devices", nargs="+", metavar="DEVICE", help="built-in names or YAML files")
    p.add_argument("--json", action="store_true", help="a JSON list of the points")
    p.set_defaults(func=cmd_check)

    p = add_command(dsub, "fit", "fit a device's threshold mechanism to measured fault maps "
                                 "and write a device file that extends it",
                    "memsim devices fit chips.npz --base sram-14nm --out sram-mine.yaml\n"
                    "         (chips.npz: from memsim memory import)")
    p.add_argument("maps", metavar="MAPS.npz",
                   help="fault maps of one or more chips (memory import, memory characterise)")
    p.add_argument("--base", required=True,
                   help="the device the maps refine (built-in name or file): its knobs, energy "
                        "and other mechanisms are kept")
    p.add_argument("--mechanism", help="which threshold mechanism of the base (when it has "
                                       "several)")
    p.add_argument("--array-bits", type=bounded_int(2, 1 << 24), default=16384,
                   help="cells per array, the unit of the per-array statistics "
                        "(default 16384)")
    p.add_argument("--row-bits", type=bounded_int(1, 1 << 23), metavar="N",
                   help="cells per row (dividing --array-bits into at least two): count the "
                        "faults per row too and fit a row share from them (default: no row "
                        "share; the device gets rows of 64 cells)")
    p.add_argument("--curve", choices=("probit", "table"), default="probit",
                   help="fault fraction as a probit through the points or as the points")
    p.add_argument("--no-weak-arrays", action="store_true",
                   help="fit die and array shares only")
    p.add_argument("--neighbours", type=bounded_int(0, 4096), default=64, metavar="N",
                   help="look for faults that come in pairs at offsets 1..N cells "
                        "(default 64; 0: do not look)")
    p.add_argument("--resamples", type=bounded_int(2, 1000), default=20,
                   help="refits for the standard errors (default 20)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the resampling")
    p.add_argument("--name", help="the fitted device's name (default BASE-fitted)")
    p.add_argument("--out", type=output_file, required=True, metavar="FILE.yaml",
                   help="the device file to write")
    p.add_argument("--json", action="store_true", help="the fit and its goodness as JSON")
    p.set_defaults(func=cmd_fit)

    memory = sub.add_parser("memory", help="corrupt any binary file through a simulated chip")
    msub = memory.add_subparsers(dest="action", required=True, parser_class=_Parser,
                                 help="memsim memory ACTION --help for its options")
    p = add_command(msub, "inject", "write the copy of a file read through one chip",
                    "memsim memory inject --device sram-14nm --knob v_rel=0.8 --in weights.bin "
                    "--out read.bin\n"
                    "         memsim memory inject --fault-map chip.npz --knob v_rel=0.8 "
                    "--in weights.bin --out read.bin\n"
                    "         (weights.bin: any file; chip.npz: from memsim memory characterise)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--fault-map", metavar="FILE.npz",
                   help="replay a measured chip instead of a device (see FaultMaps)")
    p.add_argument("--map-offset", type=nonnegative_int, default=0, metavar="CELL",
                   help="first cell of the map to use")
    p.add_argument("--wrap", action="store_true",
                   help="repeat the map cyclically when the file is larger than the map")
    p.add_argument("--interpolate", choices=("exact", "nearest_harsher", "nearest"),
                   default="exact", help="knob values between measured points")
    p.add_argument("--knob", action="append", metavar="NAME=VALUE", help=KNOB_HELP)
    p.add_argument("--in", dest="input", required=True, metavar="FILE",
                   help="the file to store and read back")
    p.add_argument("--out", type=output_file, required=True, metavar="FILE",
                   help="where to write what was read")
    p.add_argument("--bits-per-cell", type=int, choices=(1, 2, 3),
                   help="must match the device's cell")
    p.add_argument("--chip", type=bounded_int(0, MAX_CHIPS), metavar="K",
                   help="which chip of a --fault-map file of several (default 0)")
    p.add_argument("--chip-seed", type=seed_int, default=0,
                   help="which chip (persistent faults)")
    p.add_argument("--seed", type=seed_int, default=0, help="which trial (read-time flips)")
    _protection_options(p, max_msbs=8)
    p.add_argument("--json", action="store_true", help="the flip counts as a JSON object")
    p.set_defaults(func=cmd_inject)
    p = add_command(msub, "characterise",
                    "fault maps of a simulated chip (all-0 / all-1 reads per knob value)",
                    "memsim memory characterise --device sram-14nm --sweep v_rel=0.9,0.8 "
                    "--cells 65536 --out chip.npz")
    p.add_argument("--device", required=True, help=DEVICE_HELP)
    p.add_argument("--sweep", required=True, metavar="KNOB=V1,V2,...",
                   help="the knob and its values to read the chip at")
    p.add_argument("--cells", type=bounded_int(1, MAX_CELLS), required=True,
                   help=f"cells (bits) to characterise, at most {MAX_CELLS:,}")
    p.add_argument("--chip-seed", type=seed_int, default=0,
                   help="which chip (persistent faults)")
    p.add_argument("--seed", type=seed_int, default=0, help="trial seed of the reads")
    p.add_argument("--out", type=output_file, required=True, metavar="FILE.npz",
                   help="the fault maps, for memory inject --fault-map")
    p.add_argument("--json", action="store_true", help="the stuck-cell counts as JSON")
    p.set_defaults(func=cmd_characterise)
    p = add_command(msub, "import",
                    "read measured bitmaps or lists of failing cells into fault maps",
                    "memsim memory import --knob v_rel --harsher lower --written 1 "
                    "read-0.80.bin=0.80 read-0.85.bin=0.85 --out chip.npz\n"
                    "         memsim memory import --knob v_rel --harsher lower --cells 65536 "
                    "failures.csv --out chip.npz\n"
                    "         (read-*.bin: memory read back after writing all 1s; "
                    "failures.csv: columns v_rel, bit, stuck_at)")
    p.add_argument("files", nargs="+", metavar="FILE[=VALUE][,chip=K][,written=0|1]",
                   help="a bitmap of one knob value (FILE=VALUE) or a CSV list of failing "
                        "cells (of one value, or with a column named like the knob); chip "
                        "0 unless chip=K or a 'chip' column says otherwise")
    p.add_argument("--knob", required=True, metavar="NAME",
                   help="the knob the measurement swept (and the CSV column of its values)")
    p.add_argument("--harsher", required=True, choices=("lower", "higher"),
                   help="the end of the knob's range where cells fail")
    p.add_argument("--unit", help="the knob's unit, e.g. V")
    p.add_argument("--format", choices=("auto", "binary", "hex", "csv"), default="auto",
                   help="of every file (default: by suffix: .csv a list, .hex or .txt hex "
                        "text, else raw binary)")
    p.add_argument("--written", type=int, choices=(0, 1),
                   help="the pattern written before the bitmaps were read, unless a file "
                        "says written=0|1: after 1s a 0 bit is stuck-at-0, after 0s a 1 bit "
                        "is stuck-at-1")
    p.add_argument("--bit-order", choices=("msb", "lsb"), default="msb",
                   help="the first cell of a bitmap byte is its most (default) or least "
                        "significant bit")
    p.add_argument("--cells", type=bounded_int(1, MAX_CELLS), metavar="N",
                   help="cells in the memory (needed for lists; a bitmap must hold ceil(N/8) "
                        "bytes)")
    p.add_argument("--word-bits", type=bounded_int(1, 1 << 16), metavar="N",
                   help="bits per address of a list with an 'address' column: cell = "
                        "address * N + bit")
    p.add_argument("--values", metavar="V1,V2,...",
                   help="knob values measured with no failing cell listed (fault-free)")
    p.add_argument("--array-bits", type=bounded_int(1, MAX_CELLS), default=16384, metavar="N",
                   help="cells per array in the report's per-array histogram (default 16384)")
    p.add_argument("--source", metavar="TEXT",
                   help="where the maps come from (default: the files' names)")
    p.add_argument("--description", metavar="TEXT", help="a line about the chips")
    p.add_argument("--out", type=output_file, required=True, metavar="FILE.npz",
                   help="the fault maps, for memory inject --fault-map (and --chip K)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_import)
    p = add_command(msub, "diff", "count differing bits by direction",
                    "memsim memory diff weights.bin read.bin")
    p.add_argument("a", metavar="A", help="the original file")
    p.add_argument("b", metavar="B", help="its copy, of the same length")
    p.add_argument("--json", action="store_true", help="the counts as a JSON object")
    p.set_defaults(func=cmd_diff)

    p = add_command(sub, "train", "train a QNN/BNN from a config (resumes from its checkpoint)",
                    "memsim train digits-bnn-mcel.yaml --out runs/bnn-mcel --set loss.margin=64\n"
                    "         (digits-bnn-mcel.yaml: the training config in docs/workloads.md)")
    p.add_argument("config", metavar="CONFIG.yaml", help="a training config file")
    p.add_argument("--out", type=output_folder, metavar="DIR",
                   help="output directory (default runs/<name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, e.g. --set loss.margin=64 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = add_command(sub, "eval", "accuracy of checkpoints on simulated chips of a device; "
                                 "several are paired on the same chips",
                    "memsim eval memsim-demo/models/bnn-mcel/checkpoint.pt "
                    "memsim-demo/models/bnn-ce/checkpoint.pt --device sram-14nm --knob v_rel=0.85"
                    "\n         (checkpoints written by memsim demo; memsim train writes one too)")
    p.add_argument("checkpoint", metavar="CHECKPOINT", nargs="+",
                   help="one or more; the others are compared with the first")
    p.add_argument("--device", required=True, help=DEVICE_HELP)
    p.add_argument("--knob", action="append", metavar="NAME=VALUE", help=KNOB_HELP)
    p.add_argument("--chips", type=bounded_int(1, MAX_CHIPS), default=5, metavar="N",
                   help="simulated chips (persistent faults; the interval's clusters; default 5)")
    p.add_argument("--trials", type=bounded_int(1, MAX_TRIALS), default=3, metavar="M",
                   help="reads of each chip (read-time flips; default 3)")
    p.add_argument("--seed", type=seed_int, default=0, help="experiment seed (chips and trials)")
    p.add_argument("--data-dir", type=input_folder, metavar="DIR",
                   help="where the data set lives now")
    _protection_options(p, max_msbs=64)
    p.add_argument("--per-trial", action="store_true", help="include every trial in --json")
    add_evaluation_options(p)
    p.add_argument("--json", action="store_true", help="the evaluation as JSON")
    p.set_defaults(func=cmd_eval)
    add_experiment_commands(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit 2 here (see _Parser)
    # what the reports say made them: these arguments, not the process's (a caller's own)
    args.command_line = " ".join(
        ["memsim", *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    try:
        if args.extends_anywhere:
            from memsim.spec.loader import extends_anywhere

            with extends_anywhere():
                return int(args.func(args))
        return int(args.func(args))
    except SpecError as e:
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailure as e:  # before MemsimError, its base
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except MemsimError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # before OSError: `memsim ... | head` is no failure
        return 0
    except OSError as e:
        # not the input's fault (it would be a MemsimError): a full disk, a denied permission
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{_one_line(e.strerror or str(e))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
