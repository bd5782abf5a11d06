"""Measured chips: persistent faults replayed from characterisation fault maps.

A characterisation experiment writes all-0 and all-1 patterns into a real memory at each value
of one knob (supply voltage, say) and records the cells that read back wrong: a stuck-at-1 map
(read 1 where 0 was written) and a stuck-at-0 map (read 0 where 1 was written). `FaultMaps`
holds such maps, one pair per knob value, for single-level cells only (one bit per cell).
`MeasuredChip` reads images through them with the reading interface of `Chip`, so a real chip
can be replayed wherever a simulated one is read.

File format (`FaultMaps.save`, `FaultMaps.load`): an `.npz` archive holding
- `knob_values`: float64, shape (n_points,), strictly increasing;
- `stuck_at_zero`, `stuck_at_one`: uint8, shape (n_points, ceil(n_cells / 8)), each row
  `np.packbits(row)` in numpy's default bit order (cell k is bit 7 - k % 8 of byte k // 8),
  padding bits zero;
- `n_cells`: an integer scalar; `knob`: a string scalar;
- optional string scalars `unit`, `harsher` ("lower", the default, or "higher": the end of the
  knob range where cells fail), `source`, `description`.

Several chips measured over the same knob values and cells (`FaultMaps.save_chips`) share one
file: `stuck_at_zero` and `stuck_at_one` then have shape (n_chips, n_points, ceil(n_cells / 8))
and every other array is as above. A file of one chip is the 2-D format, so files written
before chips existed read unchanged, and `FaultMaps.load(path, chip=k)` reads one chip of
either.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from memsim.errors import MemsimError
from memsim.files import atomic_write_bytes
from memsim.kernels import apply_persistent_
from memsim.memory.chip import STUCK_AT_ONE, STUCK_AT_ZERO, Chip, ChipError, ReadResult
from memsim.memory.image import MemoryImage

__all__ = ["FaultMapError", "FaultMapFileError", "FaultMaps", "MeasuredChip", "NestingViolation",
           "ReplayError"]

Harsher = Literal["lower", "higher"]
Interpolation = Literal["exact", "nearest_harsher", "nearest"]
MECHANISM = "fault_map"
"""The mechanism name under which a `MeasuredChip` reports its faults."""
_REQUIRED = ("knob_values", "stuck_at_zero", "stuck_at_one", "n_cells", "knob")


class FaultMapError(MemsimError):
    """Fault maps that are inconsistent (shapes, knob values, a cell in both maps)."""


class FaultMapFileError(FaultMapError):
    """A fault-map file that is missing, unreadable or malformed."""


class ReplayError(ChipError):
    """A measured chip read outside what was measured."""


@dataclass(frozen=True)
class NestingViolation:
    """Cells faulty at the milder of two adjacent knob values but not at the harsher one."""

    milder: float
    harsher: float
    cells: int


def _is_close(a: float, b: float) -> bool:
    # knob values typed by hand (0.85) or computed (0.7 + 0.15) should match the measured ones
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _bool_maps(name: str, value: npt.ArrayLike) -> NDArray[np.bool_]:
    array = np.asarray(value)
    if array.dtype != np.bool_ and array.dtype.kind not in "iu":
        raise FaultMapError(f"{name} must hold booleans (or 0/1), got dtype {array.dtype}")
    if array.dtype != np.bool_ and array.size and not np.isin(array, (0, 1)).all():
        raise FaultMapError(f"{name} must hold booleans (or 0/1), got other integers")
    if array.ndim != 2:
        raise FaultMapError(f"{name} must be 2-D (knob values × cells), got shape {array.shape}")
    out = np.array(array, dtype=np.bool_)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False, repr=False)
class FaultMaps:
    """Measured stuck-at maps of single-level cells, one pair per knob value.

    `stuck_at_zero[i, c]` is True when cell c read 0 after a 1 was written at `knob_values[i]`
    (likewise `stuck_at_one`, after a 0). Real maps need not be nested along the stress; see
    `nesting_violations`. Arrays are stored unpacked (one byte per cell, point and map).
    """

    knob: str
    knob_values: NDArray[np.float64]
    """Strictly increasing."""
    stuck_at_zero: NDArray[np.bool_]
    """Shape (n_points, n_cells)."""
    stuck_at_one: NDArray[np.bool_]
    unit: str | None = None
    harsher: Harsher = "lower"
    """The end of the knob range where cells fail: "lower" for voltage, "higher" for refresh."""
    source: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.knob, str) or not self.knob:
            raise FaultMapError(f"knob must be a non-empty string, got {self.knob!r}")
        try:
            values = np.array(self.knob_values, dtype=np.float64)
        except (TypeError, ValueError):
            raise FaultMapError(f"knob_values must be numbers, got {self.knob_values!r}") from None
        if values.ndim != 1 or values.size == 0:
            raise FaultMapError(f"knob_values must be a non-empty 1-D list, got shape "
                                f"{values.shape}")
        if not np.isfinite(values).all():
            raise FaultMapError(f"knob_values must be finite, got {values.tolist()}")
        steps = np.diff(values)
        if (steps == 0).any():
            raise FaultMapError(f"knob value {values[np.flatnonzero(steps == 0)[0]]:g} repeats")
        if (steps < 0).any():
            i = int(np.flatnonzero(steps < 0)[0])
            raise FaultMapError(f"knob_values must be sorted ascending: {values[i + 1]:g} comes "
                                f"after {values[i]:g}")
        values.setflags(write=False)
        sa0 = _bool_maps("stuck_at_zero", self.stuck_at_zero)
        sa1 = _bool_maps("stuck_at_one", self.stuck_at_one)
        for name, maps in (("stuck_at_zero", sa0), ("stuck_at_one", sa1)):
            if maps.shape[0] != values.size:
                raise FaultMapError(f"{name} has {maps.shape[0]} rows for {values.size} knob "
                                    "values")
        if sa0.shape != sa1.shape:
            raise FaultMapError(f"stuck_at_zero covers {sa0.shape[1]} cells, stuck_at_one "
                                f"{sa1.shape[1]}")
        if sa0.shape[1] == 0:
            raise FaultMapError("the maps cover no cells")
        both = sa0 & sa1
        if both.any():
            i, c = (int(x[0]) for x in np.nonzero(both))
            raise FaultMapError(
                f"cell {c} is in both the stuck-at-0 and the stuck-at-1 map at "
                f"{self.knob}={values[i]:g} ({int(both[i].sum())} such cells there)")
        if self.harsher not in ("lower", "higher"):
            raise FaultMapError(f"harsher must be 'lower' or 'higher', got {self.harsher!r}")
        for name in ("knob", "unit", "source", "description"):
            # numpy's string scalars drop trailing NULs: such a text would not load as saved
            if "\x00" in (getattr(self, name) or ""):
                raise FaultMapError(f"{name} must not contain NUL characters")
        object.__setattr__(self, "knob_values", values)
        object.__setattr__(self, "stuck_at_zero", sa0)
        object.__setattr__(self, "stuck_at_one", sa1)

    @property
    def n_points(self) -> int:
        return int(self.knob_values.size)

    @property
    def n_cells(self) -> int:
        return int(self.stuck_at_zero.shape[1])

    def fault_fraction(self) -> NDArray[np.float64]:
        """Per knob value, the fraction of cells in either map."""
        faulty = self.stuck_at_zero | self.stuck_at_one
        return np.asarray(faulty.mean(axis=1), dtype=np.float64)

    def nesting_violations(self) -> tuple[NestingViolation, ...]:
        """Per adjacent pair of knob values, mildest first, the cells that fail at the milder
        value but not at the harsher one (0 everywhere for perfectly nested maps)."""
        faulty = self.stuck_at_zero | self.stuck_at_one
        order = range(self.n_points - 1, -1, -1) if self.harsher == "lower" else range(
            self.n_points)
        pairs = list(zip(order, list(order)[1:], strict=False))
        return tuple(NestingViolation(float(self.knob_values[m]), float(self.knob_values[h]),
                                      int((faulty[m] & ~faulty[h]).sum())) for m, h in pairs)

    def __repr__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return (f"FaultMaps({self.knob}: {self.n_points} values in [{self.knob_values[0]:g}, "
                f"{self.knob_values[-1]:g}]{unit}, {self.n_cells} cells, harsher "
                f"{self.harsher})")

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the maps as an `.npz` archive (see the module docstring), exactly at `path`."""
        FaultMaps.save_chips((self,), path)

    @staticmethod
    def save_chips(chips: Sequence[FaultMaps], path: str | os.PathLike[str]) -> None:
        """Write the maps of several chips, measured over the same knob values and cells, as
        one `.npz` archive (one chip: the format `save` writes). The chips' distinct
        `source` and `description` texts are joined with "; "."""
        if not chips:
            raise FaultMapError("no chips to save")
        first = chips[0]
        for k, other in enumerate(chips[1:], start=1):
            same = (other.knob == first.knob and other.unit == first.unit
                    and other.harsher == first.harsher and other.n_cells == first.n_cells
                    and np.array_equal(other.knob_values, first.knob_values))
            if not same:
                raise FaultMapError(f"chip {k} ({other!r}) differs from chip 0 ({first!r}) in "
                                    "its knob, knob values, cells, unit or stress direction")

        def joined(texts: Sequence[str]) -> str:
            return "; ".join(dict.fromkeys(t for t in texts if t))

        def packed(maps: Sequence[NDArray[np.bool_]]) -> NDArray[np.uint8]:
            rows = np.stack([np.packbits(m, axis=1) for m in maps])
            return rows[0] if len(maps) == 1 else rows

        arrays: dict[str, Any] = {
            "knob_values": first.knob_values,
            "stuck_at_zero": packed([c.stuck_at_zero for c in chips]),
            "stuck_at_one": packed([c.stuck_at_one for c in chips]),
            "n_cells": np.int64(first.n_cells), "knob": np.str_(first.knob),
            "harsher": np.str_(first.harsher),
            "source": np.str_(joined([c.source for c in chips])),
            "description": np.str_(joined([c.description for c in chips]))}
        if first.unit is not None:
            arrays["unit"] = np.str_(first.unit)
        buffer = io.BytesIO()  # a file object: numpy would append ".npz" to a name
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load_chips(cls, path: str | os.PathLike[str]) -> tuple[FaultMaps, ...]:
        """Every chip of a file written by `save_chips` (one for a file written by `save`)."""
        name = os.fspath(path)
        arrays = _read_npz(name)
        first = cls._from_arrays(name, arrays, 0)
        packed = arrays["stuck_at_zero"]
        n_chips = int(packed.shape[0]) if packed.ndim == 3 else 1
        return (first, *(cls._from_arrays(name, arrays, k) for k in range(1, n_chips)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], chip: int = 0) -> FaultMaps:
        """Read maps written by `save` or `save_chips` (or by hand in the same format): chip
        `chip` of a file of several chips; a file of one chip has only chip 0."""
        name = os.fspath(path)
        return cls._from_arrays(name, _read_npz(name), chip)

    @classmethod
    def _from_arrays(cls, name: str, arrays: Mapping[str, NDArray[Any]], chip: int
                     ) -> FaultMaps:
        for key in _REQUIRED:
            if key not in arrays:
                raise FaultMapFileError(f"{name}: missing array {key!r} (needs "
                                        f"{', '.join(_REQUIRED)})")

        def text(key: str, default: str | None) -> str | None:
            if key not in arrays:
                return default
            a = arrays[key]
            if a.shape != () or a.dtype.kind != "U":
                raise FaultMapFileError(f"{name}: array {key!r} must be a string scalar, got "
                                        f"shape {a.shape} dtype {a.dtype}")
            return str(a.item())

        values, n = arrays["knob_values"], arrays["n_cells"]
        if values.ndim != 1 or values.dtype.kind not in "fiu":
            raise FaultMapFileError(f"{name}: array 'knob_values' must be 1-D numbers, got "
                                    f"shape {values.shape} dtype {values.dtype}")
        if n.shape != () or n.dtype.kind not in "iu" or int(n) < 1:
            raise FaultMapFileError(f"{name}: array 'n_cells' must be a positive integer scalar, "
                                    f"got {n!r}")
        n_cells = int(n)
        want = (values.size, -(-n_cells // 8))
        sa0 = arrays["stuck_at_zero"]
        n_chips = int(sa0.shape[0]) if sa0.ndim == 3 else 1
        if isinstance(chip, bool) or not isinstance(chip, int | np.integer) or not (
                0 <= chip < n_chips):
            held = f"{n_chips} chips (0 to {n_chips - 1})" if n_chips > 1 else "one chip (0)"
            raise FaultMapFileError(f"{name}: no chip {chip!r}; the file holds {held}")
        shape = (n_chips, *want) if sa0.ndim == 3 else want  # both maps alike
        maps = {}
        for key in ("stuck_at_zero", "stuck_at_one"):
            packed = arrays[key]
            if packed.dtype != np.uint8 or packed.shape != shape:
                chips = "chips × " if len(shape) == 3 else ""
                raise FaultMapFileError(
                    f"{name}: array {key!r} has shape {packed.shape} dtype {packed.dtype}, "
                    f"expected uint8 of shape {shape} ({chips}knob values × "
                    "ceil(n_cells/8))")
            rows = packed[chip] if packed.ndim == 3 else packed
            bits = np.unpackbits(rows, axis=1).astype(np.bool_)
            if bits[:, n_cells:].any():
                raise FaultMapFileError(f"{name}: array {key!r} sets padding bits past "
                                        f"n_cells={n_cells}")
            maps[key] = bits[:, :n_cells]
        stress = text("harsher", "lower")
        if stress not in ("lower", "higher"):
            raise FaultMapFileError(f"{name}: array 'harsher' must be 'lower' or 'higher', got "
                                    f"{stress!r}")
        harsher: Harsher = "higher" if stress == "higher" else "lower"
        where = f"{name} chip {chip}" if n_chips > 1 else name
        try:
            return cls(str(text("knob", None)), values, maps["stuck_at_zero"],
                       maps["stuck_at_one"], unit=text("unit", None), harsher=harsher,
                       source=text("source", "") or "",
                       description=text("description", "") or "")
        except FaultMapError as e:
            raise FaultMapFileError(f"{where}: {e}") from None

    # -- characterising a simulated chip ----------------------------------------------------
    @classmethod
    def from_chip(cls, chip: Chip, knob_values: Sequence[float], *, knob: str | None = None,
                  seed: int = 0, harsher: Harsher | None = None, description: str = ""
                  ) -> FaultMaps:
        """Characterise a simulated single-level `chip` like a real one: at each knob value
        (other knobs nominal), read an all-0 and an all-1 image with trial seed `seed`.

        Transient errors show up in the maps as they would in a measurement, so a cell may
        land in both maps (a device with `flip` failures, say), which `FaultMaps` rejects.
        `harsher` defaults to the end of `knob_values` where the device's fault fraction is
        larger (irrelevant for one value). `knob` may be left out if the device has one knob.
        """
        device = chip.device
        if chip.bits_per_cell != 1:
            raise FaultMapError(f"{device.name} has {chip.bits_per_cell} bits per cell; fault "
                                "maps describe single-level cells only")
        names = device.spec.knob_names
        if knob is None:
            if len(names) != 1:
                raise FaultMapError(f"{device.name} has knobs {', '.join(names)}; name the "
                                    "swept one with knob=")
            knob = names[0]
        elif knob not in names:
            raise FaultMapError(f"{device.name} has no knob {knob!r}; knobs: {', '.join(names)}")
        values = np.sort(np.asarray(knob_values, dtype=np.float64))
        if values.ndim != 1 or np.unique(values).size != values.size:
            raise FaultMapError(f"knob_values must be distinct numbers, got {knob_values!r}")
        n = chip.n_bits
        zeros, ones = _bit_image(np.zeros(n, np.uint8)), _bit_image(np.ones(n, np.uint8))
        sa0 = np.zeros((values.size, n), np.bool_)
        sa1 = np.zeros((values.size, n), np.bool_)
        for i, v in enumerate(values.tolist()):
            sa1[i] = _stream_bits(chip.read(zeros, {knob: v}, seed=seed).image)
            sa0[i] = ~_stream_bits(chip.read(ones, {knob: v}, seed=seed).image)
        if harsher is None and values.size > 1:
            low = device.at(**{knob: float(values[0])}).fault_fraction
            high = device.at(**{knob: float(values[-1])}).fault_fraction
            if low == high:
                raise FaultMapError(f"{device.name} fails alike at both ends of {knob}; pass "
                                    "harsher='lower' or 'higher'")
            harsher = "lower" if low > high else "higher"
        unit = next(k.unit for k in device.spec.knobs if k.name == knob)
        return cls(knob, values, sa0, sa1, unit=unit, harsher=harsher or "lower",
                   source=f"memsim.Chip({device.name!r}, n_bits={n}, seed={chip.seed}) "
                          f"read with trial seed {seed}",
                   description=description)


def _read_npz(name: str) -> dict[str, NDArray[Any]]:
    """Every array of an `.npz` file, with one-line errors for a missing or broken file."""
    if not os.path.isfile(name):
        raise FaultMapFileError(f"{name}: no such file")
    if not zipfile.is_zipfile(name):
        raise FaultMapFileError(f"{name}: not an .npz archive (not a zip file, or truncated)")
    arrays: dict[str, NDArray[Any]] = {}
    key = "?"
    try:
        with np.load(name, allow_pickle=False) as data:
            for key in data.files:
                arrays[key] = np.asarray(data[key])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise FaultMapFileError(f"{name}: array {key!r} cannot be read ({why})") from None
    return arrays


def _bit_image(bits: NDArray[np.uint8]) -> MemoryImage:
    return MemoryImage.pack_codes({"cells": (bits, "binary", 1)})


def _stream_bits(image: MemoryImage) -> NDArray[np.bool_]:
    raw = np.frombuffer(image.to_bytes(), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[: image.n_bits].astype(np.bool_)


class MeasuredChip:
    """A chip whose persistent faults are measured `FaultMaps`; reads like a `Chip`.

    Stream bit k of an image lives in map cell `offset + k`. With `wrap=True` an image larger
    than the map is allowed and bit k lives in cell `(offset + k) % n_cells`: the map repeats,
    so wrapped cells are correlated copies of measured ones, not new independent cells.

    A knob value that was measured replays exactly its maps. Between measured values reading
    is an error unless `interpolate` is "nearest_harsher" (the neighbour towards the stress:
    conservative) or "nearest" (the closer neighbour; a tie goes to the harsher one); outside
    the measured range it is always an error. The maps are the chip: reads are deterministic,
    with no transient errors, and `seed` (here and in `read`) only matches `Chip`'s interface.
    """

    bits_per_cell = 1

    def __init__(self, maps: FaultMaps, n_bits: int, *, offset: int = 0, wrap: bool = False,
                 interpolate: Interpolation = "exact", seed: int = 0) -> None:
        if not isinstance(n_bits, int | np.integer) or n_bits < 0:
            raise ReplayError(f"n_bits must be an integer >= 0, got {n_bits!r}")
        if not isinstance(offset, int | np.integer) or not 0 <= offset < maps.n_cells:
            raise ReplayError(f"offset must be an integer in [0, {maps.n_cells}), got {offset!r}")
        if interpolate not in ("exact", "nearest_harsher", "nearest"):
            raise ReplayError(f"interpolate must be 'exact', 'nearest_harsher' or 'nearest', got "
                              f"{interpolate!r}")
        if not wrap and offset + n_bits > maps.n_cells:
            raise ReplayError(f"{n_bits} bits from cell {offset} need {offset + n_bits} cells; "
                              f"the maps have {maps.n_cells} (pass wrap=True to repeat them)")
        self.maps = maps
        self.n_bits = int(n_bits)
        self.offset = int(offset)
        self.wrap = bool(wrap)
        self.interpolate: Interpolation = interpolate
        self.seed = int(seed)
        self._faults: dict[int, tuple[NDArray[np.int64], NDArray[np.uint8]]] = {}

    @classmethod
    def for_image(cls, maps: FaultMaps, image: MemoryImage, **kwargs: Any) -> MeasuredChip:
        return cls(maps, image.n_bits, **kwargs)

    def __repr__(self) -> str:
        return (f"MeasuredChip({self.maps!r}, n_bits={self.n_bits}, offset={self.offset}, "
                f"wrap={self.wrap}, interpolate={self.interpolate!r})")

    def _knob_value(self, knobs: Mapping[str, float]) -> float:
        name = self.maps.knob
        extra = sorted(set(knobs) - {name})
        if extra:
            raise ReplayError(f"unknown knob {extra[0]!r}: the maps were measured over {name}")
        if name not in knobs:
            raise ReplayError(f"a measured chip needs a value of {name} (it has no nominal)")
        raw = knobs[name]
        if isinstance(raw, bool | np.bool_ | str | bytes) or not isinstance(
                raw, int | float | np.integer | np.floating) or not math.isfinite(raw):
            raise ReplayError(f"knob {name} needs a finite number, got {raw!r}")
        return float(raw)

    def measured_point(self, **knobs: float) -> int:
        """The index into `maps.knob_values` of the maps replayed at these knobs."""
        value = self._knob_value(knobs)
        kv, name = self.maps.knob_values, self.maps.knob
        j = int(np.searchsorted(kv, value))
        for i in (j - 1, j):
            if 0 <= i < kv.size and _is_close(float(kv[i]), value):
                return i
        if j in (0, kv.size):
            unit = f" {self.maps.unit}" if self.maps.unit else ""
            raise ReplayError(f"{name}={value:g} is outside the measured range "
                              f"[{kv[0]:g}, {kv[-1]:g}]{unit}")
        if self.interpolate == "exact":
            raise ReplayError(f"{name}={value:g} was not measured (neighbours {kv[j - 1]:g} and "
                              f"{kv[j]:g}); pass interpolate='nearest_harsher' or 'nearest'")
        harsh = j - 1 if self.maps.harsher == "lower" else j
        if self.interpolate == "nearest_harsher":
            return harsh
        below, above = value - float(kv[j - 1]), float(kv[j]) - value
        if _is_close(below, above):
            return harsh
        return j - 1 if below < above else j

    def _faults_at(self, i: int) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        if i not in self._faults:
            sa0 = np.flatnonzero(self.maps.stuck_at_zero[i])
            sa1 = np.flatnonzero(self.maps.stuck_at_one[i])
            cells = np.concatenate([sa0, sa1]).astype(np.int64)
            actions = np.concatenate([np.full(sa0.size, STUCK_AT_ZERO, np.uint8),
                                      np.full(sa1.size, STUCK_AT_ONE, np.uint8)])
            m = self.maps.n_cells
            if self.wrap:
                copies = -(-self.n_bits // m)
                bits = ((cells - self.offset) % m)[None, :] + m * np.arange(copies)[:, None]
                keep = bits < self.n_bits
                bits, actions = bits[keep], np.broadcast_to(actions, keep.shape)[keep]
            else:
                bits = cells - self.offset
                keep = (bits >= 0) & (bits < self.n_bits)
                bits, actions = bits[keep], actions[keep]
            order = np.argsort(bits, kind="stable")
            bits, actions = bits[order], actions[order]
            bits.setflags(write=False)
            actions.setflags(write=False)
            self._faults[i] = (bits, actions)
        return self._faults[i]

    def faulty_cells(self, **knobs: float) -> dict[str, tuple[NDArray[np.int64],
                                                             NDArray[np.uint8]]]:
        """The faulty stream bits at these knobs, sorted, and their actions (0: stuck-at-0,
        1: stuck-at-1), under the one mechanism name `MECHANISM`."""
        return {MECHANISM: self._faults_at(self.measured_point(**knobs))}

    def read(self, image: MemoryImage, knobs: Mapping[str, float] | None = None,
             seed: int = 0) -> ReadResult:
        """`image` read at `knobs` (the maps' knob must be given): stuck cells read their
        stuck values. `seed` is ignored (the read is deterministic)."""
        if image.n_bits != self.n_bits:
            raise ReplayError(f"this chip holds {self.n_bits} bits, the image has "
                              f"{image.n_bits}")
        knobs = knobs or {}
        value = self._knob_value(knobs)
        bits, actions = self._faults_at(self.measured_point(**knobs))
        words = image.words.copy()
        counts = apply_persistent_(words, bits, actions)
        return ReadResult(image.with_words(words), {self.maps.knob: value}, counts.zero_to_one,
                          counts.one_to_zero, counts.stuck_cells, int(bits.size),
                          {MECHANISM: counts})
