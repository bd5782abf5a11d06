"""Raw characterisation results read into `FaultMaps`, and the report of what was read.

Two kinds of input, as a characterisation bench writes them:

- a bitmap: the memory read back after an all-0 or an all-1 pattern was written, as raw
  binary (each byte 8 cells) or hex text (whitespace ignored); cell 8·i + j is bit j of byte
  i counted from the most significant bit (`bit_order="msb"`) or from the least ("lsb"). After
  writing 1s a 0 bit is a stuck-at-0 cell; after writing 0s a 1 bit is a stuck-at-1 cell.
- a list of failing cells: a CSV file with a header, one row per failing cell. The cell is a
  column `bit` (its index), or `address` and `bit` (cell `address · word_bits + bit`); the
  direction a column `stuck_at` (0 or 1), or `read` and `written` (a cell that read 0 where 1
  was written is stuck at 0). A column named like the knob gives each row's knob value and a
  column `chip` its chip, unless the file is of one knob value (and chip) as a whole.

`import_fault_maps` assembles the inputs into one `FaultMaps` per chip, over the knob values
all chips share; `import_report` counts faults per knob value and chip, the nesting
violations, and how faulty cells spread over arrays. Nothing here parses command lines.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from memsim.memory.replay import FaultMapError, FaultMaps, Harsher

__all__ = ["BitOrder", "FaultMapImportError", "ImportInput", "ImportedMaps", "InputFormat",
           "bits_from_bytes", "bytes_from_bits", "import_fault_maps", "import_report",
           "parse_hex", "read_bitmap", "read_failure_list"]

BitOrder = Literal["msb", "lsb"]
InputFormat = Literal["binary", "hex", "csv"]
Direction = Literal["stuck_at_zero", "stuck_at_one"]
DIRECTIONS: tuple[Direction, Direction] = ("stuck_at_zero", "stuck_at_one")
# An input is read whole into memory: the largest one expected is a hex bitmap of the 2^32
# cells `memory import --cells` allows (1 GiB of digits, with line breaks).
MAX_INPUT_BYTES = 3 << 30


class FaultMapImportError(FaultMapError):
    """Characterisation results that cannot be read into fault maps (one line, naming the
    file)."""


@dataclass(frozen=True)
class ImportInput:
    """One file to import.

    `knob_value` and `chip` are those of the whole file; a list file without them takes them
    from its columns (the knob's and `chip`; chip 0 without that column). A bitmap needs
    `knob_value` and `written`, the pattern (0 or 1) written before it was read.
    """

    path: str
    format: InputFormat
    knob_value: float | None = None
    chip: int | None = None
    written: int | None = None


@dataclass(frozen=True)
class ImportedMaps:
    """The maps of each chip (same knob values and cells) and, per (chip, knob value), the
    directions no input measured: stored as no fault, and said in the report."""

    chips: tuple[FaultMaps, ...]
    unknown: Mapping[tuple[int, float], tuple[Direction, ...]] = field(default_factory=dict)


# -- bitmaps ----------------------------------------------------------------------------------


def bits_from_bytes(data: bytes, bit_order: BitOrder = "msb") -> NDArray[np.bool_]:
    """The 8·len(data) bits of `data`, each byte's bits in `bit_order`."""
    raw = np.frombuffer(data, dtype=np.uint8)
    return np.unpackbits(raw, bitorder="big" if bit_order == "msb" else "little").astype(
        np.bool_)


def bytes_from_bits(bits: NDArray[np.bool_], bit_order: BitOrder = "msb") -> bytes:
    """The inverse of `bits_from_bytes` (a last partial byte is padded with 0 bits)."""
    return np.packbits(np.asarray(bits, dtype=np.bool_),
                       bitorder="big" if bit_order == "msb" else "little").tobytes()


_NOT_HEX = re.compile(r"[^0-9a-fA-F\s]")


def parse_hex(text: str, name: str = "<hex>") -> bytes:
    """The bytes of hex text (two digits a byte; whitespace and line breaks ignored)."""
    bad = _NOT_HEX.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise FaultMapImportError(f"{name}: line {line}: {bad.group()!r} is not a hex digit")
    digits = "".join(text.split())
    if len(digits) % 2:
        raise FaultMapImportError(f"{name}: {len(digits)} hex digits, not whole bytes (two "
                                  "digits a byte)")
    return bytes.fromhex(digits)


def read_bitmap(path: str, fmt: Literal["binary", "hex"], bit_order: BitOrder = "msb"
                ) -> NDArray[np.bool_]:
    """The bits of a bitmap file, raw binary or hex text."""
    data = _read(path)
    if fmt == "hex":
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise FaultMapImportError(f"{path}: not hex text (a byte that is not ASCII); "
                                      "a raw binary bitmap needs the binary format") from None
        data = parse_hex(text, path)
    if not data:
        raise FaultMapImportError(f"{path}: an empty bitmap")
    return bits_from_bytes(data, bit_order)


def _read(path: str) -> bytes:
    if not os.path.isfile(path):
        raise FaultMapImportError(f"{path}: no such file" if not os.path.exists(path)
                                  else f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as e:
        raise FaultMapImportError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise FaultMapImportError(f"{path}: larger than {MAX_INPUT_BYTES >> 30} GiB")
    return data


# -- lists of failing cells -------------------------------------------------------------------


@dataclass(frozen=True)
class _Failures:
    """Failing cells of one (chip, knob value) read from one file."""

    source: str
    zero: list[int] = field(default_factory=list)
    one: list[int] = field(default_factory=list)


def _integer(text: str, what: str, where: str) -> int:
    try:
        return int(text.strip(), 0)  # decimal, or 0x... for addresses
    except ValueError:
        raise FaultMapImportError(f"{where}: {what} must be an integer, got {text!r}") from None


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FaultMapImportError(f"{where}: {what} must be a finite number, got {text!r}")
    return value


def read_failure_list(path: str, *, knob: str, word_bits: int | None = None,
                      knob_value: float | None = None, chip: int | None = None
                      ) -> dict[tuple[int, float], tuple[list[int], list[int]]]:
    """Per (chip, knob value), the stuck-at-0 and stuck-at-1 cells a CSV file lists (see the
    module docstring). `knob_value` and `chip` are the whole file's, or None to read them from
    its columns. Cell indices are checked against the memory's size by the caller."""
    try:
        text = _read(path).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FaultMapImportError(f"{path}: not a UTF-8 text file") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if not header or header == [""]:
        raise FaultMapImportError(f"{path}: empty; a list of failing cells needs a header row")
    columns = {name: i for i, name in enumerate(header)}
    for name in columns:
        if header.count(name) > 1:
            raise FaultMapImportError(f"{path}: column {name!r} given twice")
    have = set(columns)

    def missing(what: str) -> FaultMapImportError:
        return FaultMapImportError(f"{path}: needs {what}; its columns are "
                                   f"{', '.join(header)}")

    if "bit" not in have:
        raise missing("a column 'bit' (with 'address' and --word-bits, or alone: the cell)")
    if "address" in have and word_bits is None:
        raise FaultMapImportError(f"{path}: an 'address' column needs the word size "
                                  "(--word-bits N): cell = address * N + bit")
    if "stuck_at" not in have and not {"read", "written"} <= have:
        raise missing("the failure direction: a column 'stuck_at' (0 or 1), or 'read' and "
                      "'written'")
    if knob_value is None and knob not in have:
        raise missing(f"a column {knob!r} with each row's knob value (or a knob value for the "
                      "whole file)")
    out: dict[tuple[int, float], tuple[list[int], list[int]]] = {}
    width = len(header)
    for line, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}: line {line}"
        if len(row) != width:
            raise FaultMapImportError(f"{where}: {len(row)} fields, the header has {width}")

        def cell(name: str, row: list[str] = row) -> str:
            return row[columns[name]]

        bit = _integer(cell("bit"), "bit", where)
        if "address" in have:
            address = _integer(cell("address"), "address", where)
            assert word_bits is not None
            if not 0 <= bit < word_bits:
                raise FaultMapImportError(f"{where}: bit {bit} is outside a word of "
                                          f"{word_bits} bits")
            if address < 0:
                raise FaultMapImportError(f"{where}: address {address} is negative")
            bit += address * word_bits
        elif bit < 0:
            raise FaultMapImportError(f"{where}: bit {bit} is negative")
        if "stuck_at" in have:
            stuck = _integer(cell("stuck_at"), "stuck_at", where)
            if stuck not in (0, 1):
                raise FaultMapImportError(f"{where}: stuck_at must be 0 or 1, got {stuck}")
        else:
            read, written = (_integer(cell(c), c, where) for c in ("read", "written"))
            if read not in (0, 1) or written not in (0, 1):
                raise FaultMapImportError(f"{where}: read and written must be 0 or 1, got "
                                          f"{read} and {written}")
            if read == written:
                raise FaultMapImportError(f"{where}: read {read} where {written} was written "
                                          "is no failure")
            stuck = read
        value = knob_value if knob_value is not None else _number(cell(knob), knob, where)
        if chip is not None:
            k = chip
        elif "chip" in have:
            k = _integer(cell("chip"), "chip", where)
            if k < 0:
                raise FaultMapImportError(f"{where}: chip {k} is negative")
        else:
            k = 0
        zero, one = out.setdefault((k, value), ([], []))
        (one if stuck else zero).append(bit)
    if knob_value is not None and not out:  # a header only: measured, no cell failed
        out[(chip or 0, knob_value)] = ([], [])
    return out


# -- assembling -------------------------------------------------------------------------------


def import_fault_maps(inputs: Sequence[ImportInput], *, knob: str, unit: str | None = None,
                      harsher: Harsher = "lower", n_cells: int | None = None,
                      word_bits: int | None = None, bit_order: BitOrder = "msb",
                      knob_values: Iterable[float] = (), source: str = "",
                      description: str = "") -> ImportedMaps:
    """The fault maps of each chip that `inputs` describe.

    The memory has `n_cells` cells, or as many as the bitmaps hold (all the same size;
    `n_cells` then fixes their size to ceil(n_cells / 8) bytes and bits past it are ignored).
    `knob_values`, if given, are measured values with no failing cell listed (fault-free);
    every chip must have maps at every value. A (chip, knob value, direction) given by two
    inputs is an error; a direction no input gives is stored as no fault and reported in
    `ImportedMaps.unknown`.
    """
    if not inputs:
        raise FaultMapImportError("no files to import")
    bitmaps: dict[tuple[int, float, Direction], tuple[str, NDArray[np.bool_]]] = {}
    lists: dict[tuple[int, float], _Failures] = {}
    size: tuple[str, int] | None = None  # the first bitmap and its bits
    for item in inputs:
        if item.format == "csv":
            for (k, value), (zero, one) in read_failure_list(
                    item.path, knob=knob, word_bits=word_bits, knob_value=item.knob_value,
                    chip=item.chip).items():
                _claim(bitmaps, lists, k, value, None, item.path, knob)
                lists[(k, value)] = _Failures(item.path, zero, one)
            continue
        if item.knob_value is None:
            raise FaultMapImportError(f"{item.path}: a bitmap needs its knob value")
        if item.written not in (0, 1):
            raise FaultMapImportError(f"{item.path}: say which pattern (0 or 1) was written "
                                      "before this bitmap was read")
        bits = read_bitmap(item.path, item.format, bit_order)
        if n_cells is not None and bits.size != 8 * -(-n_cells // 8):
            raise FaultMapImportError(
                f"{item.path}: {bits.size // 8} bytes, {bits.size} cells; {n_cells} cells "
                f"need {-(-n_cells // 8)} bytes")
        if size is not None and bits.size != size[1]:
            raise FaultMapImportError(f"{item.path}: {bits.size // 8} bytes, {size[0]} has "
                                      f"{size[1] // 8}: the bitmaps of one memory are one size")
        size = size or (item.path, bits.size)
        chip = item.chip or 0
        # after writing 1s a cell that reads 0 is stuck at 0, and the other way round
        direction: Direction = "stuck_at_zero" if item.written == 1 else "stuck_at_one"
        _claim(bitmaps, lists, chip, item.knob_value, direction, item.path, knob)
        bitmaps[(chip, item.knob_value, direction)] = (
            item.path, ~bits if item.written == 1 else bits)
    cells = n_cells if n_cells is not None else (size[1] if size else None)
    if cells is None:
        raise FaultMapImportError("lists of failing cells do not say how large the memory is; "
                                  "give the number of cells (--cells N)")
    if cells < 1:
        raise FaultMapImportError(f"the memory needs at least one cell, got {cells}")
    # knob values declared fault-free and nothing else: one chip without a failing cell
    chips = sorted({k for k, _, _ in bitmaps} | {k for k, _ in lists}) or [0]
    if chips != list(range(len(chips))):
        gap = min(set(range(len(chips) + 1)) - set(chips))
        raise FaultMapImportError(f"chips are numbered from 0 without gaps; chip {gap} is "
                                  f"missing (chips given: {', '.join(map(str, chips))})")
    declared = [float(v) for v in knob_values]
    values = sorted({v for _, v, _ in bitmaps} | {v for _, v in lists} | set(declared))
    if not values:
        raise FaultMapImportError("the lists name no failing cell and no knob value; give the "
                                  "measured values of a chip with no failure (--values)")
    unknown: dict[tuple[int, float], tuple[Direction, ...]] = {}
    out: list[FaultMaps] = []
    for k in chips:
        maps = {d: np.zeros((len(values), cells), np.bool_) for d in DIRECTIONS}
        for i, value in enumerate(values):
            listed = lists.get((k, value))
            given = [d for d in DIRECTIONS if (k, value, d) in bitmaps]
            if listed is None and not given and value not in declared:
                first = next(c for c in chips if (c, value) in lists or any(
                    (c, value, d) in bitmaps for d in DIRECTIONS))
                raise FaultMapImportError(f"chip {k} has no maps at {knob}={value:g} (chip "
                                          f"{first} has)")
            if listed is not None:
                for d, cells_of in zip(DIRECTIONS, (listed.zero, listed.one), strict=True):
                    index = np.asarray(cells_of, dtype=np.int64)
                    if index.size and int(index.max()) >= cells:
                        raise FaultMapImportError(
                            f"{listed.source}: bit {int(index.max())} is outside the memory's "
                            f"{cells} cells (0 to {cells - 1})")
                    maps[d][i, index] = True
            for d in given:
                maps[d][i] = bitmaps[(k, value, d)][1][:cells]
            if given and len(given) < 2:
                unknown[(k, value)] = tuple(d for d in DIRECTIONS if d not in given)
        try:
            out.append(FaultMaps(knob, np.asarray(values), maps["stuck_at_zero"],
                                 maps["stuck_at_one"], unit=unit, harsher=harsher,
                                 source=source, description=description))
        except FaultMapError as e:
            where = f"chip {k}: " if len(chips) > 1 else ""
            raise FaultMapImportError(f"{where}{e}") from None
    return ImportedMaps(tuple(out), unknown)


def _claim(bitmaps: Mapping[tuple[int, float, Direction], tuple[str, Any]],
           lists: Mapping[tuple[int, float], _Failures], chip: int, value: float,
           direction: Direction | None, path: str, knob: str) -> None:
    """Refuse a (chip, knob value) and direction (None: both, a list) given before."""
    directions = DIRECTIONS if direction is None else (direction,)
    earlier = [bitmaps[(chip, value, d)][0] for d in directions if (chip, value, d) in bitmaps]
    if (chip, value) in lists:
        earlier.append(lists[(chip, value)].source)
    if earlier:
        what = "" if direction is None else (
            " (stuck-at-0)" if direction == "stuck_at_zero" else " (stuck-at-1)")
        raise FaultMapImportError(f"{path}: {knob}={value:g}{what} of chip {chip} is given "
                                  f"twice (also by {earlier[0]})")


# -- the report -------------------------------------------------------------------------------


def import_report(imported: ImportedMaps, array_bits: int = 16384) -> dict[str, Any]:
    """What was imported: cells, and per chip and knob value the stuck-at-0 and stuck-at-1
    counts, the directions not measured and the faulty cells per array of `array_bits` cells
    (whole arrays only: mean, index of dispersion = variance / mean, the fraction of fault-free
    arrays, the largest count); per chip the nesting violations along the stress."""
    if array_bits < 1:
        raise FaultMapImportError(f"an array needs at least one cell, got {array_bits}")
    first = imported.chips[0]
    n_arrays = first.n_cells // array_bits
    points: list[dict[str, Any]] = []
    nesting: list[dict[str, Any]] = []
    for k, maps in enumerate(imported.chips):
        faulty = maps.stuck_at_zero | maps.stuck_at_one
        for i, value in enumerate(maps.knob_values.tolist()):
            row: dict[str, Any] = {
                "chip": k, "knob_value": value,
                "stuck_at_zero": int(maps.stuck_at_zero[i].sum()),
                "stuck_at_one": int(maps.stuck_at_one[i].sum()),
                "faulty": int(faulty[i].sum()),
                "unknown": list(imported.unknown.get((k, value), ()))}
            row["per_array"] = _per_array(faulty[i], array_bits, n_arrays)
            points.append(row)
        nesting += [{"chip": k, "milder": v.milder, "harsher": v.harsher, "cells": v.cells}
                    for v in maps.nesting_violations()]
    return {"knob": first.knob, "unit": first.unit, "harsher": first.harsher,
            "cells": first.n_cells, "chips": len(imported.chips),
            "knob_values": first.knob_values.tolist(), "array_bits": array_bits,
            "arrays": n_arrays, "cells_outside_arrays": first.n_cells - n_arrays * array_bits,
            "points": points, "nesting_violations": nesting}


def _per_array(faulty: NDArray[np.bool_], array_bits: int, n_arrays: int
               ) -> dict[str, float | int | None] | None:
    if n_arrays == 0:
        return None
    counts = faulty[: n_arrays * array_bits].reshape(n_arrays, array_bits).sum(axis=1)
    mean = float(counts.mean())
    return {"mean": mean,
            "index_of_dispersion": float(counts.var()) / mean if mean > 0 else None,
            "fault_free_fraction": float((counts == 0).mean()),
            "max": int(counts.max())}
