"""Shared device documents, checks and hypothesis strategies for the spec-loader tests."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

import memsim
from memsim.errors import MemsimError, SpecError, UnknownDeviceError

Doc = dict[str, Any]
PathKey = tuple[str | int, ...]


# ---------------------------------------------------------------------------------------------
# documents


def minimal_doc() -> Doc:
    """The smallest valid device: one knob, one threshold mechanism, the two required energies."""
    return {
        "schema_version": 1,
        "name": "toy",
        "technology": "custom",
        "description": "A toy device for tests.",
        "source": [{"id": "src", "citation": "made up for tests"}],
        "knobs": {
            "vdd": {"unit": "V", "role": "control", "nominal": 1.0, "range": [0.5, 1.0]},
        },
        "faults": [
            {
                "name": "undervolt",
                "kind": "threshold",
                "fault_fraction": {"kind": "probit", "of": "vdd", "mean": 0.4, "sigma": 0.05,
                                   "direction": "decreasing"},
                "failure": {"stuck_at_zero": 0.5, "stuck_at_one": 0.5},
            },
        ],
        "energy": {"scope": "cell", "read_energy_pj_per_bit": 0.1,
                   "write_energy_pj_per_bit": 1.0},
    }


def rich_doc() -> Doc:
    """A valid 2-bit device using every mechanism kind, every curve kind and most options."""
    return {
        "schema_version": 1,
        "name": "rich",
        "technology": "stt_mram",
        "description": "Every feature of the schema at once.",
        "source": [
            {"id": "paper", "citation": "A. Author, A paper, 2024", "url": "https://example.org"},
            {"id": "sim", "citation": "A simulation"},
        ],
        "cell": {"bits_per_cell": 2, "level_coding": "gray"},
        "array": {"row_bits": 64, "rows_per_array": 128},
        "knobs": {
            "vdd": {"unit": "V", "role": "control", "nominal": 1.0, "range": [0.6, 1.2],
                    "description": "supply"},
            "temp": {"unit": "K", "role": "environment", "nominal": 300.0,
                     "range": [250.0, 400.0]},
            "age": {"unit": "h", "role": "environment", "nominal": 1.0,
                    "range": [0.001, 1000.0], "scale": "log"},
            "pulse": {"unit": "ns", "role": "control",
                      "nominal": {"value": 10.0, "provenance": "assumed"},
                      "range": [1.0, 50.0]},
        },
        "faults": [
            {
                "name": "undervolt",
                "kind": "threshold",
                "phase": "read",
                "description": "critical-voltage faults",
                "fault_fraction": {"kind": "probit", "of": "vdd", "direction": "decreasing",
                                   "mean": {"value": 0.5, "provenance": "derived",
                                            "source": "paper", "note": "fit"},
                                   "sigma": 0.05, "maximum": 1.0},
                "failure": {"provenance": "measured", "source": "paper",
                            "stuck_at_zero": 0.4, "stuck_at_one": 0.4, "flip": 0.2},
                "variability": {"provenance": "assumed", "die": 0.1, "array": 0.05,
                                "row": 0.05, "cell": 0.8},
            },
            {
                "name": "flips",
                "kind": "transient",
                "phase": "programmed",
                "p_zero_to_one": {"kind": "table", "of": "vdd", "y_scale": "log",
                                  "provenance": "measured", "source": "paper",
                                  "points": [[0.6, 1e-3], [0.9, 1e-5], [1.2, 1e-7]]},
                "p_one_to_zero": {"kind": "exponential", "of": "vdd", "coefficient": 1e-4,
                                  "rate": -5.0, "reference": 0.6, "maximum": 1.0},
                "cell_factor": {"distribution": "lognormal", "sigma": 0.5},
            },
            {
                "name": "write",
                "kind": "transient",
                "phase": "programmed",
                "p_zero_to_one": {"kind": "stt_write_error", "pulse_s": "pulse",
                                  "current_ratio": 1.5, "temperature_k": "temp",
                                  "delta": 60.0, "precession_time_s": 1e-9},
            },
            {
                "name": "retention",
                "kind": "retention",
                "p_one_to_zero": {"kind": "neel_arrhenius", "time_s": "age",
                                  "temperature_k": "temp", "delta": 60.0},
                "p_zero_to_one": {"kind": "dram_leakage", "refresh_s": 0.064,
                                  "temperature_k": "temp", "vdd_v": "vdd",
                                  "capacitance_ff": 20.0, "median_leakage_a": 1e-15,
                                  "activation_energy_ev": 0.5, "sigma_ln_leakage": 1.0},
            },
            {
                "name": "defects",
                "kind": "stuck_at",
                "stuck_at_zero": {"value": 1e-6, "provenance": "measured", "source": "paper"},
                "stuck_at_one": 1e-6,
            },
            {
                "name": "drift",
                "kind": "level_confusion",
                "phase": "aged",
                "transitions": [
                    {"from": 1, "to": 2,
                     "probability": {"kind": "probit", "of": "vdd", "mean": 0.5,
                                     "sigma": 0.05, "direction": "decreasing",
                                     "maximum": 0.1}},
                    {"from": 2, "to": 1, "probability": 1e-4},
                    {"from": 3, "to": 0, "probability": {"kind": "constant", "value": 1e-6}},
                ],
            },
        ],
        "energy": {
            "scope": "array",
            "description": "made up",
            "read_energy_pj_per_bit": {"kind": "power", "of": "vdd", "coefficient": 0.1,
                                       "exponent": 2, "reference": 1.0},
            "write_energy_pj_per_bit": {"kind": "constant", "value": 2.0},
            "static_power_mw_per_mib": {"kind": "table", "of": "temp", "clamp": True,
                                        "points": [[300.0, 1.0], [350.0, 3.0]]},
            "refresh_power_mw_per_mib": {"value": 0.1, "provenance": "assumed"},
        },
        "calibration": [
            {"quantity": "ber", "of": "vdd", "points": [[0.9, 1e-5]], "at": {"temp": 300.0},
             "tolerance_factor": 1e6, "source": "paper", "provenance": "measured",
             "mechanism": "flips"},
        ],
    }


def write_doc(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# the contract every load must keep


def assert_one_line(text: str) -> None:
    assert text, "empty message"
    assert len(text.splitlines()) == 1 and "\n" not in text and "\r" not in text, repr(text)


def check_error(e: MemsimError) -> None:
    """A load error: a SpecError whose problems are one line each and name their file, or
    an UnknownDeviceError with a one-line message."""
    assert isinstance(e, SpecError | UnknownDeviceError), repr(e)
    assert_one_line(str(e))
    if isinstance(e, SpecError):
        assert e.problems
        for p in e.problems:
            s = str(p)
            assert_one_line(s)
            assert s.startswith(f"{p.file}: "), s
            assert p.message.strip(), repr(p)


def check_device(device: memsim.Device) -> None:
    """A loaded device resolves at nominal to finite probabilities and energies."""
    op = device.at()
    probabilities = [op.p_zero_to_one, op.p_one_to_zero, op.ber, op.fault_fraction]
    for m in op.mechanisms:
        probabilities += [m.p_zero_to_one, m.p_one_to_zero, m.fault_fraction, m.ber]
    for row in op.level_transition:
        probabilities += list(row)
        assert math.isclose(sum(row), 1.0, abs_tol=1e-9), op.level_transition
    for p in probabilities:
        assert math.isfinite(p) and -1e-12 <= p <= 1.0 + 1e-12, (p, op)
    energies = [op.energy.read_energy_pj_per_bit, op.energy.write_energy_pj_per_bit,
                op.energy.static_power_mw_per_mib, op.energy.refresh_power_mw_per_mib]
    for v in energies:
        assert math.isfinite(v) and v >= 0.0, (v, op)


def load_or_error(path: Path | str) -> memsim.Device | None:
    """Load a device and check the contract; any non-MemsimError exception propagates."""
    try:
        device = memsim.load_device(path)
    except MemsimError as e:
        check_error(e)
        return None
    check_device(device)
    return device


# ---------------------------------------------------------------------------------------------
# paths inside a document


def all_paths(doc: Any, prefix: PathKey = ()) -> Iterator[PathKey]:
    """Every path to a value in a document (containers included; the root excluded)."""
    if isinstance(doc, dict):
        items: Iterator[tuple[str | int, Any]] = iter(doc.items())
    elif isinstance(doc, list):
        items = iter(enumerate(doc))
    else:
        return
    for key, value in items:
        path = (*prefix, key)
        yield path
        yield from all_paths(value, path)


def container_paths(doc: Any) -> list[PathKey]:
    """Paths of the mappings in a document, the root () included."""
    out: list[PathKey] = [()] if isinstance(doc, dict) else []
    out += [p for p in all_paths(doc) if isinstance(get(doc, p), dict)]
    return out


def get(doc: Any, path: PathKey) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def replaced(doc: Doc, path: PathKey, value: Any) -> Doc:
    out = copy.deepcopy(doc)
    parent = get(out, path[:-1])
    parent[path[-1]] = value
    return out


def deleted(doc: Doc, path: PathKey) -> Doc:
    out = copy.deepcopy(doc)
    parent = get(out, path[:-1])
    del parent[path[-1]]
    return out


def inserted(doc: Doc, path: PathKey, key: str, value: Any) -> Doc:
    out = copy.deepcopy(doc)
    get(out, path)[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# hypothesis strategies

_FIELD_NAMES = sorted({
    str(k) for d in (minimal_doc(), rich_doc()) for p in all_paths(d) for k in p
    if isinstance(k, str)
} | {"extends", "matrix", "clamp", "x_scale", "level_coding", "bits_per_cell"})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)

# values that are close to what the schema expects, so mutations reach deep checks
interesting = st.sampled_from([
    0, 1, 2, 3, 4, -1, 0.5, 1.5, -0.5, 1e-300, 1e300, -1e300, 1e200, 10**400,
    "vdd", "temp", "age", "pulse", "Vdd", "1e-3", "nan", "-inf", "", " ", "probit", "table",
    "constant", "threshold", "transient", "level_confusion", "log", "linear", "decreasing",
    "increasing", "measured", "paper", "nope", "sram-14nm", "sram14nm", "a/b\nc", "x\ny",
    "vdd\n", True, False, None, [], {}, [0.5, 1.0], [1.0, 0.5], [[0.6, 0.0], [1.2, 0.0]],
    [[1.0, 0.0], [0.0, 1.0]], {"kind": "constant", "value": 2},
    {"kind": "exponential", "of": "vdd", "coefficient": 1.0, "rate": 50},
    {"kind": "power", "of": "vdd", "coefficient": 1.0, "exponent": -3},
    {"kind": "probit", "of": "vdd", "mean": 1.0, "sigma": 1e-300},
    {"value": 0.5, "provenance": "derived", "source": "nope"},
    {"value": 0.5, "provenance": "guessed"},
    {"distribution": "lognormal", "sigma": 1e200},
])

yaml_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(_FIELD_NAMES)),
                        children, max_size=4),
    ),
    max_leaves=12,
)

values = st.one_of(interesting, yaml_values)
extra_keys = st.one_of(st.sampled_from(_FIELD_NAMES), st.text(min_size=1, max_size=12))
