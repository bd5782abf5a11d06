"""Measured chips: fault-map validation, .npz files, exact replay, interpolation, offsets, wrap."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import memsim
from memsim.errors import MemsimError
from memsim.memory.chip import Chip, ChipError
from memsim.memory.image import MemoryImage
from memsim.memory.replay import (
    MECHANISM,
    FaultMapError,
    FaultMapFileError,
    FaultMaps,
    MeasuredChip,
    NestingViolation,
    ReplayError,
)

Bools = NDArray[np.bool_]


def random_maps(n_points: int, n_cells: int, seed: int, p: float = 0.2,
                values: list[float] | None = None, **kw: Any) -> FaultMaps:
    """Disjoint random stuck-at-0 / stuck-at-1 maps (not nested)."""
    rng = np.random.default_rng(seed)
    u = rng.random((n_points, n_cells))
    knob_values = values if values is not None else [0.7 + 0.05 * i for i in range(n_points)]
    return FaultMaps("v", np.array(knob_values), u < p / 2, (u >= p / 2) & (u < p), **kw)


def bit_image(bits: Bools) -> MemoryImage:
    return MemoryImage.pack_codes({"cells": (bits.astype(np.uint8), "binary", 1)})


def stream(image: MemoryImage) -> Bools:
    raw = np.frombuffer(image.to_bytes(), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[: image.n_bits].astype(np.bool_)


def random_bits(n: int, seed: int) -> Bools:
    return np.random.default_rng(seed).random(n) < 0.5


_NO_NUL = st.characters(exclude_characters="\x00")
"""Texts a map can hold (a NUL is refused: numpy would drop it when saving)."""


def same_maps(a: FaultMaps, b: FaultMaps) -> bool:
    return (a.knob == b.knob and a.unit == b.unit and a.harsher == b.harsher
            and a.source == b.source and a.description == b.description
            and np.array_equal(a.knob_values, b.knob_values)
            and np.array_equal(a.stuck_at_zero, b.stuck_at_zero)
            and np.array_equal(a.stuck_at_one, b.stuck_at_one))


# -- validation ---------------------------------------------------------------------------------


def test_a_nul_in_a_text_is_refused() -> None:
    with pytest.raises(FaultMapError, match="unit must not contain NUL"):
        FaultMaps("v", np.array([0.8]), np.zeros((1, 4), bool), np.zeros((1, 4), bool),
                  unit="V\x00")


def test_maps_are_read_only_and_accept_zero_one_integers() -> None:
    maps = FaultMaps("v", np.array([0.8, 0.9]), np.array([[1, 0], [0, 0]]),
                     np.array([[0, 1], [0, 0]]))
    assert maps.stuck_at_zero.dtype == np.bool_ and maps.n_points == 2 and maps.n_cells == 2
    assert not maps.stuck_at_zero.flags.writeable and not maps.knob_values.flags.writeable
    assert maps.fault_fraction().tolist() == [1.0, 0.0]
    assert "2 values in [0.8, 0.9]" in repr(maps)


@pytest.mark.parametrize(("values", "sa0", "sa1", "match"), [
    ([0.8, 0.9], [[0, 0]], [[0, 0]], "1 rows for 2 knob values"),
    ([0.8], [[0, 0]], [[0, 0, 0]], "stuck_at_zero covers 2 cells, stuck_at_one 3"),
    ([0.8, 0.9], [[0, 0], [0, 1]], [[0, 0], [0, 1]], r"cell 1 is in both .* at v=0.9 \(1 such"),
    ([0.9, 0.8], [[0], [0]], [[0], [0]], "sorted ascending: 0.8 comes after 0.9"),
    ([0.8, 0.8], [[0], [0]], [[0], [0]], "knob value 0.8 repeats"),
    ([], np.zeros((0, 3), bool), np.zeros((0, 3), bool), "non-empty"),
    ([0.8], np.zeros((1, 0), bool), np.zeros((1, 0), bool), "no cells"),
    ([0.8], [[0, 2]], [[0, 0]], "booleans .* other integers"),
    ([0.8], [[0.0, 1.0]], [[0, 0]], "booleans .* dtype float64"),
    ([0.8], [0, 0], [0, 0], "2-D"),
    ([0.8, float("nan")], [[0], [0]], [[0], [0]], "finite"),
])
def test_invalid_maps_get_one_line_errors(values: list[float], sa0: Any, sa1: Any,
                                          match: str) -> None:
    with pytest.raises(FaultMapError, match=match) as info:
        FaultMaps("v", np.array(values, dtype=float), np.asarray(sa0), np.asarray(sa1))
    assert "\n" not in str(info.value) and isinstance(info.value, MemsimError)


def test_invalid_metadata() -> None:
    ok = np.zeros((1, 2), np.bool_)
    with pytest.raises(FaultMapError, match="harsher"):
        FaultMaps("v", np.array([0.8]), ok, ok, harsher="down")  # type: ignore[arg-type]
    with pytest.raises(FaultMapError, match="knob must be"):
        FaultMaps("", np.array([0.8]), ok, ok)


# -- nesting ------------------------------------------------------------------------------------


def test_nesting_violations_count_cells_lost_towards_the_stress() -> None:
    faulty = np.array([
        [1, 1, 1, 1, 0, 0],   # v = 0.7 (harshest)
        [1, 1, 0, 0, 1, 0],   # v = 0.8: cell 4 fails here but not at 0.7
        [1, 0, 0, 0, 0, 1],   # v = 0.9 (mildest): cell 5 fails here but not at 0.8
    ], dtype=np.bool_)
    sa0 = faulty & (np.arange(6) % 2 == 0)
    maps = FaultMaps("v", np.array([0.7, 0.8, 0.9]), sa0, faulty & ~sa0)
    assert maps.nesting_violations() == (NestingViolation(0.9, 0.8, 1),
                                         NestingViolation(0.8, 0.7, 1))
    # the same maps with the stress towards higher values: 0.7 is now the mildest
    higher = FaultMaps("v", np.array([0.7, 0.8, 0.9]), sa0, faulty & ~sa0, harsher="higher")
    assert higher.nesting_violations() == (NestingViolation(0.7, 0.8, 2),   # cells 2, 3
                                           NestingViolation(0.8, 0.9, 2))   # cells 1, 4
    single = FaultMaps("v", np.array([0.7]), sa0[:1], (faulty & ~sa0)[:1])
    assert single.nesting_violations() == ()


def test_direction_change_is_not_a_nesting_violation() -> None:
    # a cell stuck at 0 at the milder point and at 1 at the harsher one still fails at both
    maps = FaultMaps("v", np.array([0.7, 0.8]), np.array([[0], [1]]), np.array([[1], [0]]))
    assert maps.nesting_violations() == (NestingViolation(0.8, 0.7, 0),)


# -- files --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n_points=st.integers(1, 4), n_cells=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       p=st.floats(0.0, 1.0), unit=st.none() | st.text(_NO_NUL, max_size=5),
       harsher=st.sampled_from(["lower", "higher"]), source=st.text(_NO_NUL, max_size=20),
       offsets=st.lists(st.floats(0.001, 10.0), min_size=4, max_size=4))
def test_save_load_round_trip(n_points: int, n_cells: int, seed: int, p: float,
                              unit: str | None, harsher: Any, source: str,
                              offsets: list[float]) -> None:
    values = list(np.cumsum(offsets[:n_points]) - 3.0)
    maps = random_maps(n_points, n_cells, seed, p, values, unit=unit, harsher=harsher,
                       source=source, description="round trip")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maps.bin"  # any name: save writes exactly there
        maps.save(path)
        loaded = FaultMaps.load(path)
        assert sorted(zipfile.ZipFile(path).namelist())[:3] == [
            "description.npy", "harsher.npy", "knob.npy"]
    assert same_maps(maps, loaded)


def test_file_layout_is_numpy_packbits(tmp_path: Path) -> None:
    sa0 = np.zeros((1, 11), np.bool_)
    sa0[0, [0, 9]] = True
    maps = FaultMaps("vdd", np.array([0.5]), sa0, np.zeros_like(sa0), unit="V")
    maps.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as data:
        assert data["stuck_at_zero"].tolist() == [[0b10000000, 0b01000000]]
        assert data["stuck_at_one"].shape == (1, 2) and int(data["n_cells"]) == 11
        assert str(data["knob"]) == "vdd" and str(data["unit"]) == "V"


def write_npz(path: Path, **arrays: Any) -> Path:
    base: dict[str, Any] = {
        "knob_values": np.array([0.8, 0.9]), "n_cells": np.int64(10), "knob": np.str_("v"),
        "stuck_at_zero": np.zeros((2, 2), np.uint8), "stuck_at_one": np.zeros((2, 2), np.uint8)}
    base.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **{k: v for k, v in base.items() if v is not None})
    return path


def test_a_hand_written_file_without_optional_arrays_loads(tmp_path: Path) -> None:
    maps = FaultMaps.load(write_npz(tmp_path / "m.npz"))
    assert maps.n_cells == 10 and maps.harsher == "lower" and maps.unit is None


@pytest.mark.parametrize(("arrays", "match"), [
    ({"stuck_at_one": None}, "missing array 'stuck_at_one'"),
    ({"knob": None}, "missing array 'knob'"),
    ({"stuck_at_zero": np.zeros((2, 3), np.uint8)},
     r"array 'stuck_at_zero' has shape \(2, 3\).*expected uint8 of shape \(2, 2\)"),
    ({"stuck_at_one": np.zeros((2, 2), np.int32)}, "array 'stuck_at_one' has shape"),
    ({"knob_values": np.zeros((2, 1))}, "array 'knob_values' must be 1-D numbers"),
    ({"n_cells": np.array([10])}, "array 'n_cells' must be a positive integer scalar"),
    ({"knob": np.array(["v", "w"])}, "array 'knob' must be a string scalar"),
    ({"harsher": np.str_("down")}, "array 'harsher' must be 'lower' or 'higher'"),
    ({"stuck_at_one": np.array([[0, 0b00100000], [0, 0]], np.uint8)},
     "array 'stuck_at_one' sets padding bits past n_cells=10"),
    ({"knob_values": np.array([0.9, 0.8])}, "sorted ascending"),
    ({"stuck_at_one": np.array([[128, 0], [0, 0]], np.uint8),
      "stuck_at_zero": np.array([[128, 0], [0, 0]], np.uint8)}, "cell 0 is in both"),
])
def test_malformed_files_name_the_file_and_the_array(tmp_path: Path, arrays: dict[str, Any],
                                                     match: str) -> None:
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(FaultMapFileError, match=match) as info:
        FaultMaps.load(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    good = random_maps(3, 1000, seed=1)
    good.save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("v,0.8\n")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("truncated.npz", "text.npz", "array.npy"):
        with pytest.raises(FaultMapFileError, match=r"not an \.npz archive"):
            FaultMaps.load(tmp_path / name)
    with pytest.raises(FaultMapFileError, match="no such file"):
        FaultMaps.load(tmp_path / "missing.npz")
    # a zip whose member is damaged past its header
    corrupt = bytearray(data)
    start = data.index(b"stuck_at_zero.npy") + 40
    corrupt[start:start + 64] = bytes(64)
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    with pytest.raises(FaultMapFileError, match="cannot be read"):
        FaultMaps.load(tmp_path / "corrupt.npz")


# -- replay -------------------------------------------------------------------------------------


def test_replay_applies_exactly_the_maps() -> None:
    maps = random_maps(3, 1000, seed=2, p=0.3)
    chip = MeasuredChip(maps, 1000)
    stored = random_bits(1000, seed=3)
    image = bit_image(stored)
    for i, v in enumerate(maps.knob_values.tolist()):
        sa0, sa1 = maps.stuck_at_zero[i], maps.stuck_at_one[i]
        result = chip.read(image, {"v": v}, seed=i)
        read = stream(result.image)
        assert np.array_equal(read, (stored & ~sa0) | sa1)
        assert not read[sa0].any() and read[sa1].all()
        assert result.flips_zero_to_one == int((sa1 & ~stored).sum())
        assert result.flips_one_to_zero == int((sa0 & stored).sum())
        assert result.stuck_cells == result.faulty_cells == int((sa0 | sa1).sum())
        assert result.knobs == {"v": v} and result.mechanisms[MECHANISM].stuck_cells == \
            result.stuck_cells
        cells, actions = chip.faulty_cells(v=v)[MECHANISM]
        assert np.array_equal(cells, np.flatnonzero(sa0 | sa1))
        assert np.array_equal(actions, sa1[cells].astype(np.uint8))
    assert np.array_equal(stream(image), stored)  # the stored image is untouched
    # deterministic: the trial seed changes nothing
    v = float(maps.knob_values[0])
    assert np.array_equal(chip.read(image, {"v": v}, seed=1).image.words,
                          chip.read(image, {"v": v}, seed=2).image.words)


def test_from_chip_replays_a_simulated_chip_bit_for_bit() -> None:
    device = memsim.load_device("sram-14nm")
    n_bits = 40_000
    chip = Chip(device, n_bits, seed=11, sweep={"v_rel": (0.75, 1.0)})
    maps = FaultMaps.from_chip(chip, [0.9, 0.8, 0.75, 0.85], seed=4)
    assert maps.knob == "v_rel" and maps.unit == "V/Vmin" and maps.harsher == "lower"
    assert maps.knob_values.tolist() == [0.75, 0.8, 0.85, 0.9]
    assert all(v.cells == 0 for v in maps.nesting_violations())  # a Chip is nested
    fractions = maps.fault_fraction()
    assert fractions[0] > fractions[1] > fractions[2] > 0
    measured = MeasuredChip(maps, n_bits)
    image = bit_image(random_bits(n_bits, seed=5))
    for v in maps.knob_values.tolist():
        a, b = chip.read(image, {"v_rel": v}, seed=9), measured.read(image, {"v_rel": v})
        assert np.array_equal(a.image.words, b.image.words)
        assert (a.flips_zero_to_one, a.flips_one_to_zero, a.stuck_cells, a.faulty_cells) == (
            b.flips_zero_to_one, b.flips_one_to_zero, b.stuck_cells, b.faulty_cells)
    # round trip through a file keeps the replay identical
    with tempfile.TemporaryDirectory() as tmp:
        maps.save(Path(tmp) / "chip.npz")
        again = FaultMaps.load(Path(tmp) / "chip.npz")
    assert same_maps(maps, again)


def test_from_chip_errors() -> None:
    chip = Chip(memsim.load_device("sram-14nm"), 64, seed=1)
    with pytest.raises(FaultMapError, match="no knob 'vdd'"):
        FaultMaps.from_chip(chip, [0.9], knob="vdd")
    with pytest.raises(FaultMapError, match="distinct"):
        FaultMaps.from_chip(chip, [0.9, 0.9])
    single = FaultMaps.from_chip(chip, [0.9], harsher="higher")
    assert single.harsher == "higher" and single.n_cells == 64


@pytest.mark.parametrize(("harsher", "mode", "value", "expected"), [
    ("lower", "nearest_harsher", 0.84, 0.8),
    ("lower", "nearest_harsher", 0.81, 0.8),
    ("higher", "nearest_harsher", 0.81, 0.9),
    ("lower", "nearest", 0.87, 0.9),
    ("lower", "nearest", 0.81, 0.8),
    ("higher", "nearest", 0.81, 0.8),
    ("lower", "nearest", 0.85, 0.8),   # a tie goes to the harsher neighbour
    ("higher", "nearest", 0.85, 0.9),
    ("lower", "exact", 0.7 + 0.1, 0.8),  # 0.7999999999999999 is the measured 0.8
])
def test_between_measured_points(harsher: Any, mode: Any, value: float,
                                 expected: float) -> None:
    maps = random_maps(3, 200, seed=6, values=[0.8, 0.9, 1.0], harsher=harsher)
    chip = MeasuredChip(maps, 200, interpolate=mode)
    i = chip.measured_point(v=value)
    assert maps.knob_values[i] == expected
    image = bit_image(random_bits(200, seed=7))
    replayed = chip.read(image, {"v": value})
    assert np.array_equal(replayed.image.words, chip.read(image, {"v": expected}).image.words)
    assert replayed.knobs == {"v": value}


def test_knob_errors() -> None:
    maps = random_maps(3, 100, seed=8, values=[0.8, 0.9, 1.0], unit="V")
    chip = MeasuredChip(maps, 100)
    image = bit_image(random_bits(100, seed=1))
    cases: list[tuple[dict[str, Any] | None, str]] = [
        ({"v": 0.85}, r"v=0.85 was not measured \(neighbours 0.8 and 0.9\); pass interpolate="),
        ({"v": 0.75}, r"v=0.75 is outside the measured range \[0.8, 1\] V"),
        ({"v": 1.2}, "outside the measured range"),
        (None, "needs a value of v"),
        ({"v": 0.9, "temp": 300}, "unknown knob 'temp'"),
        ({"v": "0.9"}, "needs a finite number"),
        ({"v": float("inf")}, "needs a finite number"),
    ]
    for knobs, match in cases:
        with pytest.raises(ReplayError, match=match):
            chip.read(image, knobs)
    for mode in ("nearest", "nearest_harsher"):
        with pytest.raises(ReplayError, match="outside"):
            MeasuredChip(maps, 100, interpolate=mode).read(image, {"v": 0.79})
    with pytest.raises(ChipError, match="holds 100 bits, the image has 50"):
        chip.read(bit_image(random_bits(50, seed=1)), {"v": 0.9})


def test_offset_picks_a_window_of_the_map() -> None:
    maps = random_maps(2, 100, seed=9, p=0.5)
    stored = random_bits(40, seed=10)
    chip = MeasuredChip(maps, 40, offset=30)
    read = stream(chip.read(bit_image(stored), {"v": 0.75}).image)
    sa0, sa1 = maps.stuck_at_zero[1, 30:70], maps.stuck_at_one[1, 30:70]
    assert np.array_equal(read, (stored & ~sa0) | sa1)
    assert np.array_equal(chip.faulty_cells(v=0.75)[MECHANISM][0], np.flatnonzero(sa0 | sa1))
    MeasuredChip(maps, 70, offset=30)  # exactly fits
    for n_bits, offset, match in [(71, 30, r"need 101 cells; the maps have 100 \(pass wrap"),
                                  (101, 0, "need 101 cells"), (10, 100, "offset must be"),
                                  (10, -1, "offset must be"), (-1, 0, "n_bits must be")]:
        with pytest.raises(ReplayError, match=match):
            MeasuredChip(maps, n_bits, offset=offset)
    with pytest.raises(ReplayError, match="interpolate must be"):
        MeasuredChip(maps, 10, interpolate="linear")  # type: ignore[arg-type]


def test_wrap_repeats_the_map_cyclically() -> None:
    maps = random_maps(2, 100, seed=12, p=0.4)
    n_bits, offset = 333, 30
    chip = MeasuredChip(maps, n_bits, offset=offset, wrap=True)
    stored = random_bits(n_bits, seed=13)
    cell = (offset + np.arange(n_bits)) % 100
    for i, v in enumerate(maps.knob_values.tolist()):
        result = chip.read(bit_image(stored), {"v": v})
        sa0, sa1 = maps.stuck_at_zero[i, cell], maps.stuck_at_one[i, cell]
        assert np.array_equal(stream(result.image), (stored & ~sa0) | sa1)
        assert result.faulty_cells == int((sa0 | sa1).sum())
        cells, actions = chip.faulty_cells(v=v)[MECHANISM]
        assert np.array_equal(cells, np.flatnonzero(sa0 | sa1))
        assert np.array_equal(actions, sa1[cells].astype(np.uint8))
    # wrap changes nothing for an image that fits
    small = MeasuredChip(maps, 50, offset=10, wrap=True)
    plain = MeasuredChip(maps, 50, offset=10)
    img = bit_image(stored[:50])
    assert np.array_equal(small.read(img, {"v": 0.7}).image.words,
                          plain.read(img, {"v": 0.7}).image.words)


def test_for_image_and_empty_image() -> None:
    maps = random_maps(1, 16, seed=14, p=1.0)
    image = bit_image(random_bits(16, seed=15))
    chip = MeasuredChip.for_image(maps, image, interpolate="nearest")
    assert chip.n_bits == 16 and chip.interpolate == "nearest" and chip.seed == 0
    assert chip.read(image, {"v": 0.7}).faulty_cells == 16
    empty = MeasuredChip(maps, 0)
    result = empty.read(MemoryImage.from_bytes(b""), {"v": 0.7})
    assert result.bits == 0 and result.faulty_cells == 0
