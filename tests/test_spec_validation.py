"""The device-spec loader and validator: each test mutates one thing of a minimal valid document
and checks that the problem is reported at the right field path with a useful message."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from strategies import (
    Doc,
    check_device,
    check_error,
    deleted,
    get,
    inserted,
    minimal_doc,
    replaced,
    rich_doc,
    write_doc,
)

import memsim
from memsim.errors import MemsimError, SpecError, SpecProblem, UnknownDeviceError
from memsim.spec.curves import CURVE_KINDS, ConstantCurve, PowerCurve, TableCurve
from memsim.spec.device import LevelCoding
from memsim.spec.loader import MAX_YAML_BYTES, extends_anywhere, merge, read_yaml
from memsim.spec.mechanisms import (
    MECHANISM_KINDS,
    StuckAtMechanism,
    ThresholdMechanism,
    TransientMechanism,
)

# ---------------------------------------------------------------------------------------------
# helpers


def load(path: Path) -> memsim.Device:
    device = memsim.load_device(path)
    check_device(device)
    return device


def problems_of(path: Path) -> list[SpecProblem]:
    """The problems of a file that must fail to load (checked for the one-line contract)."""
    with pytest.raises(SpecError) as info:
        memsim.load_device(path)
    check_error(info.value)
    return list(info.value.problems)


def problem_at(problems: list[SpecProblem], path: str) -> SpecProblem:
    matches = [p for p in problems if p.path == path]
    assert matches, f"no problem at {path!r}; got: {[str(p) for p in problems]}"
    return matches[0]


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def write(doc: Any, name: str = "device.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_doc(path, doc)

    return write


@pytest.fixture
def problems(write: Callable[..., Path]) -> Callable[[Doc], list[SpecProblem]]:
    def problems(doc: Doc) -> list[SpecProblem]:
        return problems_of(write(doc))

    return problems


Problems = Callable[[Doc], list[SpecProblem]]
Write = Callable[..., Path]


def with_fault(doc: Doc, fault: dict[str, Any]) -> Doc:
    """The document with one more mechanism (index 1 of the minimal document)."""
    doc = dict(doc)
    doc["faults"] = [*doc["faults"], fault]
    return doc


def two_bit(doc: Doc) -> Doc:
    return inserted(doc, (), "cell", {"bits_per_cell": 2})


def transient(**curves: Any) -> dict[str, Any]:
    return {"name": "flips", "kind": "transient", **curves}


# ---------------------------------------------------------------------------------------------
# valid documents


def test_minimal_device_loads_with_defaults(write: Write) -> None:
    device = load(write(minimal_doc()))
    spec = device.spec
    assert spec.name == "toy" and spec.technology.value == "custom"
    assert spec.schema_version == 1
    assert spec.cell.bits_per_cell == 1
    assert spec.cell.level_coding is LevelCoding.GRAY
    assert (spec.array.row_bits, spec.array.rows_per_array) == (512, 512)
    mech = spec.faults[0]
    assert isinstance(mech, ThresholdMechanism)
    assert mech.phase.value == "read"
    var = mech.variability
    assert (var.die.value, var.array.value, var.row.value, var.cell.value) == (0, 0, 0, 1)
    assert mech.failure.flip.value == 0.0
    assert spec.knob("vdd").low == 0.5 and spec.knob("vdd").high == 1.0
    op = device.at()
    assert op.knobs == {"vdd": 1.0}
    assert op.energy.static_power_mw_per_mib == 0.0
    assert op.energy.refresh_power_mw_per_mib == 0.0
    assert op.read_energy_pj_per_bit == pytest.approx(0.1)
    # the probit at 0.5 V is Φ((0.4 - 0.5) / 0.05) = Φ(-2)
    assert device.at(vdd=0.5).fault_fraction == pytest.approx(0.0227501, rel=1e-4)


def test_rich_device_loads_and_resolves_over_its_range(write: Write) -> None:
    device = load(write(rich_doc()))
    assert device.spec.cell.levels == 4
    for knob in device.spec.knobs:
        for value in (knob.low, knob.high):
            op = device.at(**{knob.name: value})
            for row in op.level_transition:
                assert math.isclose(sum(row), 1.0, abs_tol=1e-9)
                assert all(0.0 <= x <= 1.0 for x in row)


def test_builtin_device_loads() -> None:
    device = load("sram-14nm")
    assert device.name == "sram-14nm"


def test_number_strings_are_read_as_numbers(write: Write) -> None:
    # PyYAML reads 1e-3 (no dot) as a string: the schema accepts it as a number
    doc = replaced(minimal_doc(), ("energy", "read_energy_pj_per_bit"), "1e-3")
    assert load(write(doc)).at().read_energy_pj_per_bit == pytest.approx(1e-3)
    path = write(minimal_doc())
    path.write_text(path.read_text().replace("nominal: 1.0", "nominal: 1e0"))
    assert load(path).spec.knob("vdd").nominal.value == 1.0


# ---------------------------------------------------------------------------------------------
# unknown fields


@pytest.mark.parametrize(
    ("key_path", "typo", "expected"),
    [
        ((), "descripton", "description"),
        (("knobs", "vdd"), "nominl", "nominal"),
        (("faults", 0, "fault_fraction"), "sigm", "sigma"),
        (("faults", 0), "phse", "phase"),
        (("faults", 0, "failure"), "stuck_at_zeroo", "stuck_at_zero"),
        (("energy",), "write_energy_pj_per_bits", "write_energy_pj_per_bit"),
        (("source", 0), "citaton", "citation"),
    ],
)
def test_unknown_field_has_nearest_name_hint(
    problems: Problems, key_path: tuple[Any, ...], typo: str, expected: str
) -> None:
    doc = minimal_doc()
    doc = inserted(doc, key_path, typo, get(doc, key_path).get(expected, "x"))
    found = problems(doc)
    dotted = ".".join(f"[{k}]" if isinstance(k, int) else k for k in (*key_path, typo))
    dotted = dotted.replace(".[", "[")
    p = problem_at(found, dotted)
    assert "unknown field" in p.message
    assert f"did you mean {expected!r}?" in p.message


def test_unknown_field_without_near_miss_lists_valid_fields(problems: Problems) -> None:
    doc = inserted(minimal_doc(), ("knobs", "vdd"), "zzzzzz", 1)
    p = problem_at(problems(doc), "knobs.vdd.zzzzzz")
    assert "did you mean" not in p.message
    assert "valid fields:" in p.message
    for name in ("nominal", "range", "role", "unit"):
        assert name in p.message


def test_unknown_field_in_cell_block(problems: Problems) -> None:
    doc = inserted(minimal_doc(), (), "cell", {"bits_per_cel": 2})
    p = problem_at(problems(doc), "cell.bits_per_cel")
    assert "did you mean 'bits_per_cell'?" in p.message


def test_unknown_field_in_provenance_mapping(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction", "mean"),
                   {"value": 0.4, "provenence": "measured"})
    p = problem_at(problems(doc), "faults[0].fault_fraction.mean.provenence")
    assert "did you mean 'provenance'?" in p.message


# ---------------------------------------------------------------------------------------------
# missing fields


@pytest.mark.parametrize(
    ("key_path", "expected_path"),
    [
        (("name",), "name"),
        (("technology",), "technology"),
        (("description",), "description"),
        (("schema_version",), "schema_version"),
        (("source",), "source"),
        (("knobs",), "knobs"),
        (("energy",), "energy"),
        (("energy", "scope"), "energy.scope"),
        (("energy", "read_energy_pj_per_bit"), "energy.read_energy_pj_per_bit"),
        (("knobs", "vdd", "unit"), "knobs.vdd.unit"),
        (("knobs", "vdd", "range"), "knobs.vdd.range"),
        (("knobs", "vdd", "nominal"), "knobs.vdd.nominal"),
        (("knobs", "vdd", "role"), "knobs.vdd.role"),
        (("faults", 0, "kind"), "faults[0].kind"),
        (("faults", 0, "name"), "faults[0].name"),
        (("faults", 0, "fault_fraction"), "faults[0].fault_fraction"),
        (("faults", 0, "failure"), "faults[0].failure"),
        (("faults", 0, "fault_fraction", "of"), "faults[0].fault_fraction.of"),
        (("faults", 0, "fault_fraction", "sigma"), "faults[0].fault_fraction.sigma"),
        (("source", 0, "citation"), "source[0].citation"),
    ],
)
def test_missing_required_field(
    problems: Problems, key_path: tuple[Any, ...], expected_path: str
) -> None:
    p = problem_at(problems(deleted(minimal_doc(), key_path)), expected_path)
    assert "missing" in p.message or "expected" in p.message


def test_missing_mechanism_kind_lists_kinds(problems: Problems) -> None:
    p = problem_at(problems(deleted(minimal_doc(), ("faults", 0, "kind"))), "faults[0].kind")
    assert "required field is missing" in p.message
    for kind in MECHANISM_KINDS:
        assert kind in p.message


def test_transient_needs_a_rate(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), transient())
    p = problem_at(problems(doc), "faults[1]")
    assert "p_zero_to_one" in p.message and "p_one_to_zero" in p.message


# ---------------------------------------------------------------------------------------------
# wrong types


@pytest.mark.parametrize(
    ("key_path", "value", "expected_path", "fragment"),
    [
        (("knobs", "vdd", "nominal"), "high", "knobs.vdd.nominal",
         "expected a number, got the string 'high'"),
        (("knobs",), ["vdd"], "knobs", "expected a mapping, got a list"),
        (("faults",), {"name": "x"}, "faults", "expected a list, got a mapping"),
        (("faults", 0, "failure"), [0.5, 0.5], "faults[0].failure",
         "expected a mapping, got a list"),
        (("knobs", "vdd", "range"), "0.5..1", "knobs.vdd.range", "expected a list"),
        (("name",), 5, "name", "expected a non-empty string"),
        (("name",), "  ", "name", "expected a non-empty string"),
        (("technology",), "sramm", "technology", "did you mean 'sram'?"),
        (("energy", "scope"), "chip", "energy.scope", "expected one of cell, array"),
        (("schema_version",), "1", "schema_version", "expected an integer"),
        (("schema_version",), 1.0, "schema_version", "expected an integer"),
        (("knobs", "vdd", "role"), "controll", "knobs.vdd.role", "did you mean 'control'?"),
        (("faults", 0, "phase"), "reed", "faults[0].phase", "did you mean 'read'?"),
        (("faults", 0, "fault_fraction", "of"), 3, "faults[0].fault_fraction.of",
         "expected a non-empty string"),
    ],
)
def test_wrong_type(problems: Problems, key_path: tuple[Any, ...], value: Any,
                    expected_path: str, fragment: str) -> None:
    p = problem_at(problems(replaced(minimal_doc(), key_path, value)), expected_path)
    assert fragment in p.message


@pytest.mark.parametrize(
    ("key_path", "expected_path", "fragment"),
    [
        (("knobs", "vdd", "nominal"), "knobs.vdd.nominal", "expected a number, got a boolean"),
        (("energy", "write_energy_pj_per_bit"), "energy.write_energy_pj_per_bit",
         "got a boolean"),
        (("faults", 0, "failure", "stuck_at_zero"), "faults[0].failure.stuck_at_zero",
         "got a boolean"),
        (("schema_version",), "schema_version", "expected an integer, got a boolean"),
    ],
)
def test_booleans_are_not_numbers(problems: Problems, key_path: tuple[Any, ...],
                                  expected_path: str, fragment: str) -> None:
    p = problem_at(problems(replaced(minimal_doc(), key_path, True)), expected_path)
    assert fragment in p.message


def test_boolean_bits_per_cell_rejected(problems: Problems) -> None:
    doc = inserted(minimal_doc(), (), "cell", {"bits_per_cell": True})
    p = problem_at(problems(doc), "cell.bits_per_cell")
    assert "expected an integer, got a boolean" in p.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity"])
@pytest.mark.parametrize(
    ("key_path", "expected_path"),
    [
        (("knobs", "vdd", "nominal"), "knobs.vdd.nominal"),
        (("knobs", "vdd", "range", 1), "knobs.vdd.range[1]"),
        (("faults", 0, "fault_fraction", "mean"), "faults[0].fault_fraction.mean"),
        (("energy", "read_energy_pj_per_bit"), "energy.read_energy_pj_per_bit"),
    ],
)
def test_non_finite_numbers_rejected(problems: Problems, value: Any,
                                     key_path: tuple[Any, ...], expected_path: str) -> None:
    p = problem_at(problems(replaced(minimal_doc(), key_path, value)), expected_path)
    assert "finite" in p.message


def test_integer_too_large_for_a_float_is_a_spec_error(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction", "mean"), 10**400)
    p = problem_at(problems(doc), "faults[0].fault_fraction.mean")
    assert "finite" in p.message


def test_integer_literal_too_long_to_read_is_a_spec_error(write: Write) -> None:
    path = write(minimal_doc())
    path.write_text(path.read_text().replace("nominal: 1.0", "nominal: " + "9" * 5000))
    (p,) = problems_of(path)
    assert p.file == str(path)
    assert len(str(p)) < 300


def test_mapping_with_non_string_keys(write: Write) -> None:
    path = write(minimal_doc())
    path.write_text(path.read_text() + "1: one\n")
    p = problem_at(problems_of(path), "")
    assert "string keys" in p.message


# ---------------------------------------------------------------------------------------------
# probabilities and energies out of range


def test_stuck_at_probability_above_one(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), {"name": "defects", "kind": "stuck_at",
                                     "stuck_at_zero": 1.5})
    p = problem_at(problems(doc), "faults[1].stuck_at_zero")
    assert "expected a probability in [0, 1], got 1.5" in p.message


def test_stuck_at_probabilities_summing_above_one(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), {"name": "defects", "kind": "stuck_at",
                                     "stuck_at_zero": 0.6, "stuck_at_one": 0.6})
    p = problem_at(problems(doc), "faults[1]")
    assert "stuck_at_zero + stuck_at_one <= 1" in p.message


def test_stuck_at_loads(write: Write) -> None:
    doc = with_fault(minimal_doc(), {"name": "defects", "kind": "stuck_at",
                                     "stuck_at_zero": 0.01})
    device = load(write(doc))
    mech = device.spec.faults[1]
    assert isinstance(mech, StuckAtMechanism) and mech.stuck_at_one.value == 0.0
    assert device.at().mechanisms[1].fault_fraction == pytest.approx(0.01)


def test_failure_probability_above_one(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "failure", "stuck_at_zero"), 1.5)
    p = problem_at(problems(doc), "faults[0].failure.stuck_at_zero")
    assert "probability" in p.message and "1.5" in p.message


def test_failure_shares_must_sum_to_one(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "failure", "stuck_at_one"), 0.3)
    p = problem_at(problems(doc), "faults[0].failure")
    assert "summing to 1, got 0.8" in p.message


def test_variability_shares_must_sum_to_one(problems: Problems) -> None:
    doc = inserted(minimal_doc(), ("faults", 0), "variability", {"die": 0.5, "cell": 0.6})
    p = problem_at(problems(doc), "faults[0].variability")
    assert "die, array, row, cell summing to 1, got 1.1" in p.message


def test_variability_default_cell_share_is_not_added_to_given_shares(problems: Problems) -> None:
    # giving only `die` leaves cell at its default 1: the sum is then 1.3
    doc = inserted(minimal_doc(), ("faults", 0), "variability", {"die": 0.3})
    p = problem_at(problems(doc), "faults[0].variability")
    assert "got 1.3" in p.message


def test_negative_energy_constant(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("energy", "write_energy_pj_per_bit"), -1.0)
    p = problem_at(problems(doc), "energy.write_energy_pj_per_bit")
    assert ">= 0" in p.message and "-1" in p.message


def test_negative_energy_coefficient(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("energy", "read_energy_pj_per_bit"),
                   {"kind": "power", "of": "vdd", "coefficient": -0.1, "exponent": 2})
    p = problem_at(problems(doc), "energy.read_energy_pj_per_bit.coefficient")
    assert "non-negative" in p.message


def test_negative_probability_constant(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), transient(p_one_to_zero=-0.1))
    p = problem_at(problems(doc), "faults[1].p_one_to_zero")
    assert "probability" in p.message and "-0.1" in p.message


def test_exponential_exceeding_one_inside_the_range(problems: Problems, write: Write) -> None:
    curve = {"kind": "exponential", "of": "vdd", "coefficient": 1e-3, "rate": -20.0,
             "reference": 1.0}
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=curve))
    p = problem_at(problems(doc), "faults[1].p_zero_to_one")
    assert "expected a probability [0, 1] over the knob ranges" in p.message
    assert "vdd=" in p.message
    # capped at 1 it is fine
    capped = with_fault(minimal_doc(), transient(p_zero_to_one={**curve, "maximum": 1.0}))
    assert load(write(capped)).at(vdd=0.5).mechanisms[1].p_zero_to_one == pytest.approx(1.0)


def test_probability_exceeding_one_only_between_the_range_ends(problems: Problems) -> None:
    curve = {"kind": "table", "of": "vdd",
             "points": [[0.5, 0.0], [0.6, 2.0], [0.9, 2.0], [1.0, 0.0]]}
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=curve))
    p = problem_at(problems(doc), "faults[1].p_zero_to_one")
    match = re.search(r"got ([0-9.e+-]+) at vdd=([0-9.e+-]+)$", p.message)
    assert match, p.message
    assert float(match[1]) > 1.0 and 0.5 < float(match[2]) < 1.0


def test_probit_maximum_above_one(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction", "maximum"), 2.0)
    doc["faults"][0]["fault_fraction"]["mean"] = 0.9
    p = problem_at(problems(doc), "faults[0].fault_fraction")
    assert "expected a probability [0, 1]" in p.message and "got 2 at vdd=0.5" in p.message


# ---------------------------------------------------------------------------------------------
# tables


def test_table_not_covering_the_knob_range(problems: Problems, write: Write) -> None:
    curve = {"kind": "table", "of": "vdd", "points": [[0.6, 1e-3], [1.0, 1e-5]]}
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=curve))
    p = problem_at(problems(doc), "faults[1].p_zero_to_one")
    assert "outside the table's points" in p.message and "clamp: true" in p.message
    clamped = with_fault(minimal_doc(), transient(p_zero_to_one={**curve, "clamp": True}))
    device = load(write(clamped))
    assert device.at(vdd=0.5).mechanisms[1].p_zero_to_one == pytest.approx(1e-3)
    assert device.at(vdd=0.8).mechanisms[1].p_zero_to_one == pytest.approx(5.05e-4)


def test_table_x_not_sorted(problems: Problems) -> None:
    curve = {"kind": "table", "of": "vdd", "clamp": True,
             "points": [[0.5, 1e-3], [1.0, 1e-5], [0.7, 1e-4]]}
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=curve))
    p = problem_at(problems(doc), "faults[1].p_zero_to_one.points")
    assert "strictly increasing" in p.message


def test_table_repeated_x(problems: Problems) -> None:
    curve = {"kind": "table", "of": "vdd", "points": [[0.5, 1e-3], [0.5, 1e-4], [1.0, 1e-5]]}
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=curve))
    problem_at(problems(doc), "faults[1].p_zero_to_one.points")


def test_log_scale_table_with_zero_y(problems: Problems) -> None:
    curve = {"kind": "table", "of": "vdd", "y_scale": "log",
             "points": [[0.5, 1e-3], [1.0, 0.0]]}
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=curve))
    p = problem_at(problems(doc), "faults[1].p_zero_to_one.points[1][1]")
    assert "y_scale is log" in p.message


def test_log_scale_table_with_zero_x(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("knobs", "vdd", "range"), [0.0, 1.0])
    curve = {"kind": "table", "of": "vdd", "x_scale": "log", "clamp": True,
             "points": [[0.0, 1e-3], [1.0, 1e-5]]}
    doc = with_fault(doc, transient(p_zero_to_one=curve))
    problem_at(problems(doc), "faults[1].p_zero_to_one.points[0][0]")


@pytest.mark.parametrize(
    ("points", "expected_path"),
    [
        ([[0.5, 1e-3]], "faults[1].p_zero_to_one.points"),
        ([[0.5, 1e-3, 2], [1.0, 1e-4]], "faults[1].p_zero_to_one.points[0]"),
        ([[0.5, "x"], [1.0, 1e-4]], "faults[1].p_zero_to_one.points[0][1]"),
        (None, "faults[1].p_zero_to_one.points"),
        ({"0.5": 1}, "faults[1].p_zero_to_one.points"),
    ],
)
def test_table_malformed_points(problems: Problems, points: Any, expected_path: str) -> None:
    curve = {"kind": "table", "of": "vdd", "points": points}
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=curve))
    problem_at(problems(doc), expected_path)


# ---------------------------------------------------------------------------------------------
# knobs


def test_nominal_outside_range(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("knobs", "vdd", "nominal"), 1.2)
    p = problem_at(problems(doc), "knobs.vdd.nominal")
    assert "inside range [0.5, 1]" in p.message and "1.2" in p.message


@pytest.mark.parametrize("rng", [[1.0, 0.5], [0.7, 0.7]])
def test_range_low_not_below_high(problems: Problems, rng: list[float]) -> None:
    p = problem_at(problems(replaced(minimal_doc(), ("knobs", "vdd", "range"), rng)),
                   "knobs.vdd.range")
    assert "low < high" in p.message


@pytest.mark.parametrize("rng", [[0.5], [0.5, 0.7, 1.0], []])
def test_range_wrong_length(problems: Problems, rng: list[float]) -> None:
    p = problem_at(problems(replaced(minimal_doc(), ("knobs", "vdd", "range"), rng)),
                   "knobs.vdd.range")
    assert "[low, high]" in p.message


def test_no_knobs(problems: Problems) -> None:
    p = problem_at(problems(replaced(minimal_doc(), ("knobs",), {})), "knobs")
    assert "at least one knob" in p.message


@pytest.mark.parametrize("name", ["Vdd", "2vdd", "v-dd", "vdd\n", "v dd", ""])
def test_bad_knob_name(problems: Problems, name: str) -> None:
    doc = minimal_doc()
    doc["knobs"] = {name: doc["knobs"]["vdd"]}
    doc["faults"][0]["fault_fraction"]["of"] = name
    found = problems(doc)
    shown = name if name.isprintable() and name else repr(name)
    p = problem_at(found, f"knobs.{shown}")
    assert "lower-case identifiers" in p.message
    # curves naming the bad knob are not reported a second time
    assert not any("unknown knob" in q.message for q in found), [str(q) for q in found]


def test_log_scale_knob_needs_positive_range(problems: Problems) -> None:
    doc = minimal_doc()
    doc["knobs"]["vdd"].update(scale="log", range=[0.0, 1.0])
    p = problem_at(problems(doc), "knobs.vdd.scale")
    assert "above 0" in p.message


def test_curve_of_unknown_knob_has_hint(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction", "of"), "vdx")
    p = problem_at(problems(doc), "faults[0].fault_fraction.of")
    assert "unknown knob 'vdx' (did you mean 'vdd'?)" in p.message
    assert "knobs are: vdd" in p.message


def test_closed_form_input_with_incompatible_unit(problems: Problems) -> None:
    doc = minimal_doc()
    doc["knobs"] = {"v_rel": {"unit": "V/Vmin", "role": "control", "nominal": 1.0,
                              "range": [0.7, 1.0]}}
    doc["faults"][0]["fault_fraction"]["of"] = "v_rel"
    curve = {"kind": "neel_arrhenius", "time_s": 1.0, "temperature_k": "v_rel", "delta": 40}
    doc = with_fault(doc, {"name": "ret", "kind": "retention", "p_one_to_zero": curve})
    p = problem_at(problems(doc), "faults[1].p_one_to_zero.temperature_k")
    assert "'V/Vmin'" in p.message and "not a temperature unit" in p.message
    assert "K" in p.message and "degC" in p.message


def test_closed_form_input_converts_knob_units(write: Write) -> None:
    doc = minimal_doc()
    doc["knobs"]["temp"] = {"unit": "degC", "role": "environment", "nominal": 27.0,
                            "range": [0.0, 100.0]}
    doc["knobs"]["age"] = {"unit": "day", "role": "environment", "nominal": 1.0,
                           "range": [0.5, 2.0]}
    curve = {"kind": "neel_arrhenius", "time_s": "age", "temperature_k": "temp", "delta": 40,
             "attempt_time_s": 1e-9, "reference_temperature_k": 300.15}
    device = load(write(with_fault(doc, {"name": "ret", "kind": "retention",
                                         "p_one_to_zero": curve})))
    expected = -math.expm1(-(86400.0 / 1e-9) * math.exp(-40.0))
    assert device.at().mechanisms[1].p_one_to_zero == pytest.approx(expected, rel=1e-9)


def test_closed_form_constant_time_must_be_positive(problems: Problems) -> None:
    curve = {"kind": "neel_arrhenius", "time_s": 0.0, "temperature_k": 300.0, "delta": 40}
    doc = with_fault(minimal_doc(), {"name": "ret", "kind": "retention",
                                     "p_one_to_zero": curve})
    p = problem_at(problems(doc), "faults[1].p_one_to_zero.time_s")
    assert "expected a number in (0, inf], got 0" in p.message


def test_power_negative_exponent_needs_positive_knob_range(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("knobs", "vdd", "range"), [0.0, 1.0])
    doc["faults"][0]["fault_fraction"]["mean"] = 0.1
    doc = replaced(doc, ("energy", "read_energy_pj_per_bit"),
                   {"kind": "power", "of": "vdd", "coefficient": 0.1, "exponent": -1})
    p = problem_at(problems(doc), "energy.read_energy_pj_per_bit.of")
    assert "negative exponent" in p.message


# ---------------------------------------------------------------------------------------------
# level confusion


def level_confusion(**fields: Any) -> dict[str, Any]:
    return {"name": "drift", "kind": "level_confusion", **fields}


MATRIX_4 = [[0.99, 0.01, 0.0, 0.0], [0.01, 0.98, 0.01, 0.0],
            [0.0, 0.01, 0.98, 0.01], [0.0, 0.0, 0.01, 0.99]]


def test_level_confusion_matrix_loads(write: Write) -> None:
    doc = with_fault(two_bit(minimal_doc()), level_confusion(matrix=MATRIX_4))
    device = load(write(doc))
    op = device.at()
    # the threshold mechanism is ~0 at nominal: the device matrix is the confusion matrix
    for row, expected in zip(op.level_transition, MATRIX_4, strict=True):
        assert row == pytest.approx(expected, abs=1e-12)


def test_level_confusion_matrix_wrong_size(problems: Problems) -> None:
    doc = with_fault(two_bit(minimal_doc()), level_confusion(matrix=MATRIX_4[:3]))
    p = problem_at(problems(doc), "faults[1].matrix")
    assert "4×4" in p.message and "3 rows" in p.message
    one_bit = with_fault(minimal_doc(), level_confusion(matrix=MATRIX_4))
    p = problem_at(problems(one_bit), "faults[1].matrix")
    assert "2×2" in p.message


def test_level_confusion_matrix_short_row(problems: Problems) -> None:
    matrix = [row[:] for row in MATRIX_4]
    matrix[2] = [0.5, 0.5]
    doc = with_fault(two_bit(minimal_doc()), level_confusion(matrix=matrix))
    problem_at(problems(doc), "faults[1].matrix[2]")


def test_level_confusion_matrix_row_not_summing_to_one(problems: Problems) -> None:
    matrix = [row[:] for row in MATRIX_4]
    matrix[1] = [0.1, 0.8, 0.0, 0.0]
    doc = with_fault(two_bit(minimal_doc()), level_confusion(matrix=matrix))
    p = problem_at(problems(doc), "faults[1].matrix[1]")
    assert "summing to 1, got 0.9" in p.message


def test_level_confusion_matrix_entry_not_a_probability(problems: Problems) -> None:
    matrix = [[1.5, -0.5], [0.0, 1.0]]
    doc = with_fault(minimal_doc(), level_confusion(matrix=matrix))
    problem_at(problems(doc), "faults[1].matrix[0][0]")


def test_level_confusion_transition_to_itself(problems: Problems) -> None:
    doc = with_fault(two_bit(minimal_doc()),
                     level_confusion(transitions=[{"from": 1, "to": 1, "probability": 0.1}]))
    p = problem_at(problems(doc), "faults[1].transitions[0]")
    assert "from != to" in p.message


def test_level_confusion_duplicate_transition(problems: Problems) -> None:
    t = {"from": 1, "to": 2, "probability": 0.1}
    doc = with_fault(two_bit(minimal_doc()), level_confusion(transitions=[t, dict(t)]))
    found = problems(doc)
    p = problem_at(found, "faults[1].transitions[1]")
    assert "1->2 given twice" in p.message
    assert not any(q.path == "faults[1].transitions[0]" for q in found)


def test_level_confusion_bad_levels_are_not_reported_as_duplicates(problems: Problems) -> None:
    ts = [{"from": 7, "to": 2, "probability": 0.1}, {"from": 9, "to": 2, "probability": 0.1}]
    found = problems(with_fault(two_bit(minimal_doc()), level_confusion(transitions=ts)))
    problem_at(found, "faults[1].transitions[0].from")
    assert not any("given twice" in q.message for q in found), [str(q) for q in found]


@pytest.mark.parametrize(("field", "value"), [("to", 4), ("from", -1), ("to", 1.0)])
def test_level_confusion_level_out_of_range(problems: Problems, field: str, value: Any) -> None:
    t = {"from": 0, "to": 1, "probability": 0.1, field: value}
    doc = with_fault(two_bit(minimal_doc()), level_confusion(transitions=[t]))
    p = problem_at(problems(doc), f"faults[1].transitions[0].{field}")
    assert "integer" in p.message


def test_level_confusion_rows_exceeding_one_somewhere(problems: Problems,
                                                      write: Write) -> None:
    rising = {"kind": "probit", "of": "vdd", "mean": 0.6, "sigma": 0.05,
              "direction": "decreasing", "maximum": 0.6}
    ts = [{"from": 1, "to": 0, "probability": rising},
          {"from": 1, "to": 2, "probability": rising}]
    base = replaced(two_bit(minimal_doc()), ("faults", 0, "fault_fraction", "mean"), 0.1)
    doc = with_fault(base, level_confusion(transitions=ts))
    p = problem_at(problems(doc), "faults[1].transitions")
    assert "out of level 1 sum to" in p.message and "vdd=0.5" in p.message
    # each transition alone is a valid probability: the sum is what fails
    ok = with_fault(base, level_confusion(transitions=ts[:1]))
    assert load(write(ok)).at(vdd=0.5).level_transition[1][0] == pytest.approx(0.6 * 0.97725,
                                                                                rel=1e-4)


def test_level_confusion_matrix_and_transitions_both(problems: Problems) -> None:
    doc = with_fault(two_bit(minimal_doc()), level_confusion(
        matrix=MATRIX_4, transitions=[{"from": 0, "to": 1, "probability": 0.1}]))
    p = problem_at(problems(doc), "faults[1]")
    assert "either matrix or transitions" in p.message


def test_level_confusion_needs_transitions(problems: Problems) -> None:
    doc = with_fault(two_bit(minimal_doc()), level_confusion())
    p = problem_at(problems(doc), "faults[1].transitions")
    assert "missing" in p.message


def test_bits_per_cell_out_of_range(problems: Problems) -> None:
    doc = inserted(minimal_doc(), (), "cell", {"bits_per_cell": 4})
    p = problem_at(problems(doc), "cell.bits_per_cell")
    assert "[1, 3]" in p.message


# ---------------------------------------------------------------------------------------------
# kinds, names and ids


def test_unknown_curve_kind_lists_kinds(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction", "kind"), "probitt")
    p = problem_at(problems(doc), "faults[0].fault_fraction.kind")
    assert "unknown curve kind 'probitt' (did you mean 'probit'?)" in p.message
    for kind in CURVE_KINDS:
        assert kind in p.message


@pytest.mark.parametrize(("curve", "path", "message"), [
    ({"kind": "scaled", "factor": 0.5}, "faults[0].fault_fraction.curve",
     "required field is missing (the curve to scale)"),
    ({"kind": "scaled", "factor": -0.5, "curve": 0.1}, "faults[0].fault_fraction.factor",
     "expected a non-negative number"),
    ({"kind": "scaled", "factor": 0.5, "curve": {"kind": "probitt"}},
     "faults[0].fault_fraction.curve.kind", "unknown curve kind 'probitt'"),
    ({"kind": "scaled", "factor": 0.5, "curve": {"kind": "probit", "of": "vdx", "mean": 0.6,
                                                  "sigma": 0.05}},
     "faults[0].fault_fraction.curve.of", "unknown knob 'vdx'"),
    ({"kind": "scaled", "factor": 40, "curve": {"kind": "probit", "of": "vdd", "mean": 0.6,
                                                 "sigma": 0.05}},
     "faults[0].fault_fraction", "expected a probability [0, 1] over the knob ranges"),
])
def test_a_scaled_curve_names_what_is_wrong_inside_it(problems: Problems, curve: dict[str, Any],
                                                      path: str, message: str) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction"), curve)
    p = problem_at(problems(doc), path)
    assert message in p.message, p.message


def test_curve_mapping_without_kind(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction"), {"of": "vdd"})
    p = problem_at(problems(doc), "faults[0].fault_fraction")
    assert "kind" in p.message


def test_unknown_mechanism_kind_lists_kinds(problems: Problems) -> None:
    doc = replaced(minimal_doc(), ("faults", 0, "kind"), "treshold")
    p = problem_at(problems(doc), "faults[0].kind")
    assert "unknown mechanism kind 'treshold' (did you mean 'threshold'?)" in p.message
    for kind in MECHANISM_KINDS:
        assert kind in p.message


def test_duplicate_mechanism_names(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=1e-6))
    doc["faults"][1]["name"] = "undervolt"
    p = problem_at(problems(doc), "faults[1].name")
    assert "'undervolt' already used by faults[0]" in p.message


def test_duplicate_source_ids(problems: Problems) -> None:
    doc = minimal_doc()
    doc["source"].append({"id": "src", "citation": "another"})
    p = problem_at(problems(doc), "source")
    assert "unique" in p.message and "src" in p.message


def test_empty_source_list(problems: Problems) -> None:
    problem_at(problems(replaced(minimal_doc(), ("source",), [])), "source")


@pytest.mark.parametrize(
    ("key_path", "value", "expected_path"),
    [
        (("faults", 0, "fault_fraction", "mean"), {"value": 0.4, "source": "nope"},
         "faults[0].fault_fraction.mean"),
        (("energy", "write_energy_pj_per_bit"), {"value": 1.0, "source": "nope"},
         "energy.write_energy_pj_per_bit"),
        (("knobs", "vdd", "nominal"), {"value": 1.0, "source": "nope"}, "knobs.vdd.nominal"),
    ],
)
def test_undeclared_source_id(problems: Problems, key_path: tuple[Any, ...], value: Any,
                              expected_path: str) -> None:
    p = problem_at(problems(replaced(minimal_doc(), key_path, value)), expected_path)
    assert "'nope' is not among the device's source ids (src)" in p.message


def test_undeclared_source_id_inherited_by_a_block(problems: Problems) -> None:
    doc = inserted(minimal_doc(), ("faults", 0, "failure"), "source", "nope")
    found = problems(doc)
    assert len(found) == 1, [str(q) for q in found]
    assert found[0].path.startswith("faults[0].failure")
    assert "'nope'" in found[0].message


def test_undeclared_source_in_calibration(problems: Problems) -> None:
    cal = [{"quantity": "fault_fraction", "of": "vdd", "source": "nope",
            "points": [[0.6, 0.1]]}]
    p = problem_at(problems(inserted(minimal_doc(), (), "calibration", cal)),
                   "calibration[0].source")
    assert "'nope'" in p.message


@pytest.mark.parametrize("version", [0, 2])
def test_other_schema_version(problems: Problems, version: int) -> None:
    p = problem_at(problems(replaced(minimal_doc(), ("schema_version",), version)),
                   "schema_version")
    assert f"reads schema_version 1, got {version}" in p.message


def test_calibration_point_outside_the_knob_range(problems: Problems) -> None:
    cal = [{"quantity": "fault_fraction", "of": "vdd", "points": [[0.3, 0.1]]}]
    found = problems(inserted(minimal_doc(), (), "calibration", cal))
    assert "outside the knob's range" in problem_at(found, "calibration[0].points").message


def test_calibration_unknown_mechanism(problems: Problems) -> None:
    cal = [{"quantity": "ber", "of": "vdd", "mechanism": "undervolts", "points": [[0.6, 0.1]]}]
    found = problems(inserted(minimal_doc(), (), "calibration", cal))
    p = problem_at(found, "calibration[0].mechanism")
    assert "no mechanism named 'undervolts'; mechanisms: undervolt" in p.message


def test_calibration_unknown_knob_in_at(problems: Problems) -> None:
    cal = [{"quantity": "ber", "of": "vdd", "at": {"vdx": 1}, "points": [[0.6, 0.1]]}]
    found = problems(inserted(minimal_doc(), (), "calibration", cal))
    assert "did you mean 'vdd'?" in problem_at(found, "calibration[0].at.vdx").message


# ---------------------------------------------------------------------------------------------
# all problems at once


def test_independent_problems_are_all_reported(problems: Problems) -> None:
    doc = deleted(minimal_doc(), ("name",))
    doc["descripton"] = "typo"
    doc["knobs"]["vdd"]["nominal"] = "high"
    doc["faults"][0]["failure"]["stuck_at_zero"] = 1.5
    doc["energy"]["scope"] = "chip"
    found = problems(doc)
    for path in ("name", "descripton", "knobs.vdd.nominal", "faults[0].failure.stuck_at_zero",
                 "energy.scope"):
        problem_at(found, path)


def test_problems_in_several_mechanisms_are_all_reported(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), transient(p_zero_to_one="x"))
    doc = with_fault(doc, {"name": "defects", "kind": "stuck_at", "stuck_at_one": -1})
    doc["faults"][0]["fault_fraction"]["of"] = "vdx"
    found = problems(doc)
    problem_at(found, "faults[0].fault_fraction.of")
    problem_at(found, "faults[1].p_zero_to_one")
    problem_at(found, "faults[2].stuck_at_one")


def test_range_problems_of_several_curves_are_all_reported(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), transient(p_zero_to_one=1.5, p_one_to_zero=-1))
    doc["energy"]["read_energy_pj_per_bit"] = -2
    found = problems(doc)
    for path in ("faults[1].p_zero_to_one", "faults[1].p_one_to_zero",
                 "energy.read_energy_pj_per_bit"):
        problem_at(found, path)


# ---------------------------------------------------------------------------------------------
# files


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("schema_version: 1\nname: toy\n  technology: sram\n")
    (p,) = problems_of(path)
    assert p.path == "" and p.file == str(path)
    assert "YAML syntax error at line 3" in p.message


def test_yaml_unclosed_bracket(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [toy\n")
    (p,) = problems_of(path)
    assert "line " in p.message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    (p,) = problems_of(path)
    assert str(p) == f"{path}: expected a mapping of device fields at the top level, got " \
                     "an empty document"


@pytest.mark.parametrize(("text", "what"), [("- a\n- b\n", "list"), ("42\n", "int"),
                                            ("just text\n", "str")])
def test_top_level_not_a_mapping(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    (p,) = problems_of(path)
    assert p.path == "" and "top level" in p.message and what in p.message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    (p,) = problems_of(path)
    assert "not a UTF-8 text file" in p.message


def test_unsafe_yaml_tag_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    (p,) = problems_of(path)
    assert p.message.startswith("YAML error at line 1, column 7: ")
    assert "could not determine a constructor" in p.message


def test_a_key_given_twice_is_refused_but_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("schema_version: 1\nname: a\ncell: {bits_per_cell: 1}\nname: b\n")
    (p,) = problems_of(path)
    assert p.message == "YAML error at line 4, column 1: key 'name' given twice in one mapping"
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &base {x: 1, y: 2}\nchild:\n  <<: *base\n  x: 3\n")
    assert read_yaml(merged) == {"base": {"x": 1, "y": 2}, "child": {"x": 3, "y": 2}}


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")  # 10^9 values once expanded
    (p,) = problems_of(path)
    assert p.message == ("more than 1,000,000 values once YAML aliases are expanded, the "
                         "limit for a file")
    path.write_text("\n".join(lines[:5]) + "\n")  # about 123,000 values: read
    assert read_yaml(path)["a4"][9][9][9][9] == [1] * 10


def test_oversized_and_too_deep_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\nnote: '" + "a" * MAX_YAML_BYTES + "'\n")
    (p,) = problems_of(big)
    assert p.message == "larger than 4 MiB, the limit for a YAML file"
    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 250 + "]" * 250 + "\n")
    (p,) = problems_of(deep)
    assert p.message == "nested deeper than 200 levels"


def test_directory_is_not_a_device(tmp_path: Path) -> None:
    folder = tmp_path / "dev.yaml"
    folder.mkdir()
    with pytest.raises(UnknownDeviceError, match="not a file"):
        memsim.load_device(folder)
    with pytest.raises(UnknownDeviceError, match="not a file"):
        memsim.load_device(str(tmp_path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnknownDeviceError, match="no such file") as info:
        memsim.load_device(tmp_path / "nope.yaml")
    check_error(info.value)


def test_unknown_builtin_name_has_hint() -> None:
    with pytest.raises(UnknownDeviceError) as info:
        memsim.load_device("sram14nm")
    check_error(info.value)
    assert "did you mean 'sram-14nm'?" in str(info.value)
    assert isinstance(info.value, MemsimError)


# ---------------------------------------------------------------------------------------------
# extends


def test_extends_builtin_overrides_and_merges_by_name(write: Write) -> None:
    child = {
        "extends": "sram-14nm",
        "name": "sram-hot",
        "knobs": {"v_rel": {"range": [0.75, 1.0]}},
        "faults": [
            {"name": "undervolt", "variability": {"die": 0.2, "cell": 0.8}},
            {"name": "noise", "kind": "transient", "p_zero_to_one": 1e-9},
        ],
    }
    device = load(write(child))
    parent = memsim.load_device("sram-14nm")
    spec = device.spec
    assert spec.name == "sram-hot"
    assert spec.technology == parent.spec.technology
    knob = spec.knob("v_rel")
    assert (knob.low, knob.high, knob.unit) == (0.75, 1.0, "V/Vmin")
    assert [m.name for m in spec.faults] == ["undervolt", "noise"]
    mech = spec.faults[0]
    assert isinstance(mech, ThresholdMechanism)
    assert mech.variability.die.value == 0.2 and mech.variability.cell.value == 0.8
    parent_mech = parent.spec.faults[0]
    assert isinstance(parent_mech, ThresholdMechanism)
    assert mech.fault_fraction == parent_mech.fault_fraction  # kept from the parent
    assert mech.failure == parent_mech.failure
    assert device.at().p_zero_to_one == pytest.approx(
        parent.at().p_zero_to_one + 1e-9, rel=1e-6)
    with pytest.raises(memsim.KnobError):
        device.at(v_rel=0.72)


def test_extends_merges_sources_by_id(write: Write) -> None:
    parent = memsim.load_device("sram-14nm").spec
    child = {
        "extends": "sram-14nm",
        "name": "sram-remeasured",
        "source": [{"id": "bench", "citation": "our own bench, 2026"}],
        "faults": [{"name": "undervolt", "fault_fraction": {
            "mean": {"value": 0.73, "provenance": "measured", "source": "bench"}}}],
    }
    spec = load(write(child)).spec
    # the parent's sources stay (its figures cite them), the new one is added
    assert [s.id for s in spec.sources] == [s.id for s in parent.sources] + ["bench"]
    base = replaced(minimal_doc(), ("source",), [
        {"id": "src", "citation": "made up for tests", "url": "https://example.org/old"},
        {"id": "other", "citation": "another"}])
    write(base, "base.yaml")
    restated = {"extends": "base.yaml", "name": "toy-recited",
                "source": [{"id": "src", "citation": "a corrected citation"}]}
    spec = load(write(restated, "restated.yaml")).spec
    assert [s.id for s in spec.sources] == ["src", "other"]
    assert spec.sources[0].citation == "a corrected citation"
    assert spec.sources[0].url is None  # replaced whole: no url left over from the parent


def test_extends_relative_path_is_relative_to_the_file(write: Write, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write(minimal_doc(), "variants/base/toy.yaml")
    write(minimal_doc(), "base/toy.yaml")  # what the cwd would find: not read
    child = write({"extends": "base/toy.yaml", "name": "toy-2"}, "variants/child.yaml")
    monkeypatch.chdir(tmp_path)  # not the file's folder
    device = load(child)
    assert device.spec.name == "toy-2"
    assert device.spec.knob("vdd").nominal.value == 1.0


def test_extends_stays_inside_the_file_s_folder_unless_allowed(write: Write,
                                                               tmp_path: Path) -> None:
    write(minimal_doc(), "base/toy.yaml")
    (tmp_path / "secret.txt").write_text("password: hunter2\n")
    outside = {"../base/toy.yaml": "variants/up.yaml",
               str(tmp_path / "secret.txt"): "variants/absolute.yaml"}
    for ref, name in outside.items():
        child = write({"extends": ref, "name": "toy-2"}, name)
        (p,) = problems_of(child)
        assert p.path == "extends"
        assert p.message == (f"{ref} lies outside {(tmp_path / 'variants').resolve()} and the "
                             "catalogue; pass --extends-anywhere to allow it")
    # a link inside the folder that points out of it is outside too
    (tmp_path / "variants" / "link.yaml").symlink_to(tmp_path / "base" / "toy.yaml")
    (p,) = problems_of(write({"extends": "link.yaml", "name": "x"}, "variants/linked.yaml"))
    assert "lies outside" in p.message
    with extends_anywhere():
        assert load(tmp_path / "variants" / "up.yaml").spec.name == "toy-2"
        (p,) = problems_of(tmp_path / "variants" / "absolute.yaml")
        # not a device: refused before its values could be merged and quoted in errors
        assert p.file == str(tmp_path / "secret.txt") and "hunter2" not in str(p)
        assert p.message == ("not a device file (no schema_version), extended by "
                             f"{tmp_path / 'variants' / 'absolute.yaml'}")
    (p,) = problems_of(tmp_path / "variants" / "up.yaml")  # the block is over
    assert "lies outside" in p.message


def test_extends_chain_of_files(write: Write) -> None:
    write(minimal_doc(), "a.yaml")
    write({"extends": "a.yaml", "name": "b"}, "b.yaml")
    c = write({"extends": "b.yaml", "knobs": {"vdd": {"nominal": 0.8}}}, "c.yaml")
    spec = load(c).spec
    assert spec.name == "b" and spec.knob("vdd").nominal.value == 0.8


def test_extends_curve_of_another_kind_replaces_the_parent_s(write: Write) -> None:
    table = {"kind": "table", "of": "v_rel", "provenance": "measured",
             "points": [[0.7, 0.5], [0.85, 0.01], [1.0, 0.0]]}
    child = {
        "extends": "sram-14nm",
        "name": "sram-tabled",
        "faults": [
            # probit (mean, sigma, direction) -> table: no probit field may stay behind
            {"name": "undervolt", "fault_fraction": table},
            # a whole mechanism of another kind replaces the parent's of that name
        ],
        "energy": {
            "read_energy_pj_per_bit": {"value": 0.02, "provenance": "measured"},  # a constant
            "write_energy_pj_per_bit": {"exponent": {"value": 3}},  # same kind: merged
        },
        "calibration": [],
    }
    spec = load(write(child)).spec
    parent = memsim.load_device("sram-14nm").spec
    mech = spec.faults[0]
    assert isinstance(mech, ThresholdMechanism)
    curve = mech.fault_fraction
    assert isinstance(curve, TableCurve)
    assert (curve.xs, curve.ys) == ((0.7, 0.85, 1.0), (0.5, 0.01, 0.0))
    assert isinstance(spec.energy.read_energy_pj_per_bit, ConstantCurve)
    assert spec.energy.read_energy_pj_per_bit.value.value == 0.02
    write_curve, parent_write = (spec.energy.write_energy_pj_per_bit,
                                 parent.energy.write_energy_pj_per_bit)
    assert isinstance(write_curve, PowerCurve) and isinstance(parent_write, PowerCurve)
    assert write_curve.exponent.value == 3
    assert write_curve.coefficient == parent_write.coefficient  # kept from the parent
    # a mechanism restated with another kind is replaced whole, not merged with the threshold's
    mechanism = {"name": "undervolt", "kind": "transient", "phase": "read",
                 "p_zero_to_one": 1e-6, "p_one_to_zero": 2e-6}
    spec = load(write({"extends": "sram-14nm", "name": "sram-flaky", "faults": [mechanism],
                       "calibration": []}, "flaky.yaml")).spec
    assert [type(m) for m in spec.faults] == [TransientMechanism]


def test_merge_replaces_a_mapping_of_another_kind_anywhere() -> None:
    base = {"a": {"b": [{"name": "m", "kind": "x", "c": {"kind": "probit", "mean": 1,
                                                          "of": {"kind": "k", "p": 1}}}]}}
    override = {"a": {"b": [{"name": "m", "c": {"mean": 2, "of": {"kind": "j", "q": 2}}}]}}
    assert merge(base, override) == {"a": {"b": [
        {"name": "m", "kind": "x", "c": {"kind": "probit", "mean": 2,
                                         "of": {"kind": "j", "q": 2}}}]}}
    # a {value: ...} is a constant: it replaces a curve, merges into a parameter or constant
    assert merge({"kind": "power", "exponent": 2}, {"value": 1}) == {"value": 1}
    assert merge({"value": 1, "source": "s"}, {"value": 2}) == {"value": 2, "source": "s"}
    assert merge({"kind": "constant", "value": 1, "source": "s"}, {"value": 2}) == {
        "kind": "constant", "value": 2, "source": "s"}
    assert merge({"value": 1, "source": "s"}, {"kind": "table", "points": []}) == {
        "kind": "table", "points": []}


def test_extends_narrowed_range_past_the_nominal_is_one_problem(write: Write) -> None:
    # the parent's refresh energy has a negative exponent and its calibration points lie at
    # 512 ms and beyond: checked against the range the child gives, not a placeholder [0, 1]
    child = {"extends": "dram-ddr3-refresh", "name": "dram-short",
             "knobs": {"refresh_ms": {"range": [16, 40]}}, "calibration": []}
    (p,) = problems_of(write(child))
    assert p.path == "knobs.refresh_ms.nominal"
    assert p.message == "expected the nominal value inside range [16, 40], got 64"
    kept = {k: v for k, v in child.items() if k != "calibration"}  # the parent's points
    found = problems_of(write(kept, "kept.yaml"))
    assert [q.path for q in found] == ["knobs.refresh_ms.nominal", "calibration[0].points"]
    assert found[1].message == "point refresh_ms=512 is outside the knob's range [16, 40]"


def test_extends_cycle(write: Write) -> None:
    a = write({**minimal_doc(), "extends": "b.yaml"}, "a.yaml")
    write({"extends": "a.yaml", "name": "b"}, "b.yaml")
    found = problems_of(a)
    p = problem_at(found, "extends")
    assert "loops" in p.message and "a.yaml" in p.message and "b.yaml" in p.message


def test_extends_itself(write: Write) -> None:
    a = write({**minimal_doc(), "extends": "a.yaml"}, "a.yaml")
    assert "loops" in problem_at(problems_of(a), "extends").message


def test_extends_unknown_name(write: Write) -> None:
    path = write({**minimal_doc(), "extends": "sram14nm"})
    (p,) = problems_of(path)
    assert p.path == "extends" and p.file == str(path)
    assert "unknown device 'sram14nm'" in p.message and "sram-14nm" in p.message


@pytest.mark.parametrize("ref", ["missing/parent.yaml", "parent.yaml"])
def test_extends_missing_file(write: Write, ref: str) -> None:
    path = write({**minimal_doc(), "extends": ref})
    (p,) = problems_of(path)
    assert p.path == "extends" and "no such file" in p.message


@pytest.mark.parametrize("ref", [5, "", None, ["sram-14nm"]])
def test_extends_not_a_name(write: Write, ref: Any) -> None:
    (p,) = problems_of(write({**minimal_doc(), "extends": ref}))
    assert p.path == "extends"


def test_extends_parent_with_a_syntax_error(write: Write, tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("name: [\n")
    (p,) = problems_of(write({"extends": "parent.yaml", "name": "x"}))
    assert p.file == str(tmp_path / "parent.yaml") and "line" in p.message


def test_extends_parent_that_is_not_a_mapping(write: Write, tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text("- just\n- a list\n")
    child = write({**minimal_doc(), "extends": "parent.yaml"})
    (p,) = problems_of(child)
    assert p.file == str(tmp_path / "parent.yaml")
    assert "top level" in p.message


def test_extends_problem_in_merged_document_names_the_child(write: Write) -> None:
    path = write({"extends": "sram-14nm", "knobs": {"v_rel": {"nominal": 2.0}}})
    p = problem_at(problems_of(path), "knobs.v_rel.nominal")
    assert p.file == str(path)


# ---------------------------------------------------------------------------------------------
# one-line messages


def test_problem_str_format() -> None:
    assert str(SpecProblem("f.yaml", "a.b[0]", "bad")) == "f.yaml: a.b[0]: bad"
    assert str(SpecProblem("f.yaml", "", "bad")) == "f.yaml: bad"
    with pytest.raises(ValueError):
        SpecError([])


def test_messages_quoting_user_strings_stay_on_one_line(problems: Problems) -> None:
    doc = minimal_doc()
    doc["source"] = [{"id": "a\nb", "citation": "x"}, {"id": "a\nb", "citation": "y"}]
    problems(doc)  # checked by problems_of: every problem is one line
    doc = replaced(minimal_doc(), ("faults", 0, "fault_fraction", "mean"),
                   {"value": 0.4, "source": "no\npe"})
    problems(doc)
    cal = [{"quantity": "ber", "of": "vdd", "mechanism": "x\ny", "points": [[0.6, 0.1]]}]
    problems(inserted(minimal_doc(), (), "calibration", cal))
    problems(replaced(minimal_doc(), ("faults", 0, "kind"), "thres\nhold"))
    problems(replaced(minimal_doc(), ("technology",), "sr\nam"))


def test_extends_path_with_a_newline_stays_on_one_line(write: Write) -> None:
    (p,) = problems_of(write({**minimal_doc(), "extends": "no/such\nparent.yaml"}))
    assert p.path == "extends"


MUTATIONS: list[tuple[str, Callable[[], Doc]]] = [
    ("typo", lambda: inserted(minimal_doc(), (), "nmae", "x")),
    ("missing", lambda: deleted(minimal_doc(), ("energy",))),
    ("type", lambda: replaced(minimal_doc(), ("knobs", "vdd", "range"), {"a": 1})),
    ("range", lambda: replaced(minimal_doc(), ("knobs", "vdd", "nominal"), 7)),
    ("curve", lambda: replaced(minimal_doc(), ("faults", 0, "fault_fraction", "sigma"), 0)),
    ("shares", lambda: replaced(minimal_doc(), ("faults", 0, "failure"), {"flip": 0.5})),
    ("kind", lambda: replaced(minimal_doc(), ("faults", 0, "kind"), 3)),
    ("over", lambda: replaced(minimal_doc(), ("energy", "write_energy_pj_per_bit"),
                              {"kind": "exponential", "of": "vdd", "coefficient": 1e10,
                               "rate": 1e6})),
]


@pytest.mark.parametrize(("label", "make"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_every_problem_is_one_line_naming_the_file(write: Write, label: str,
                                                   make: Callable[[], Doc]) -> None:
    path = write(make())
    found = problems_of(path)
    for p in found:
        s = str(p)
        assert "\n" not in s
        assert s.startswith(f"{path}: ")


# ---------------------------------------------------------------------------------------------
# numerical extremes


def test_cell_factor_with_a_huge_sigma_resolves(write: Write) -> None:
    rate = 1e-3
    mech = transient(p_zero_to_one=rate,
                     cell_factor={"distribution": "lognormal", "sigma": 1e200})
    device = load(write(with_fault(minimal_doc(), mech)))
    p01 = device.at().mechanisms[1].p_zero_to_one
    # E[min(1, p·f)] <= p·E[f] = p, and tends to 0 as the factor's spread grows
    assert 0.0 <= p01 <= rate


def test_cell_factor_other_distribution(problems: Problems) -> None:
    mech = transient(p_zero_to_one=1e-3, cell_factor={"distribution": "normal", "sigma": 1})
    p = problem_at(problems(with_fault(minimal_doc(), mech)),
                   "faults[1].cell_factor.distribution")
    assert "lognormal" in p.message


def test_overflowing_closed_form_in_a_level_transition(problems: Problems) -> None:
    curve = {"kind": "neel_arrhenius", "time_s": 1.0, "temperature_k": 300.0,
             "current_ratio": 100.0, "delta": 100.0}
    doc = with_fault(two_bit(minimal_doc()), level_confusion(
        transitions=[{"from": 0, "to": 1, "probability": curve}]))
    found = problems(doc)
    assert any(p.path.startswith("faults[1].transitions") for p in found)


def test_overflowing_closed_form_is_a_spec_error(problems: Problems) -> None:
    curve = {"kind": "stt_write_error", "pulse_s": 1e-9, "current_ratio": 0.0,
             "delta": 1e6}
    found = problems(with_fault(minimal_doc(), transient(p_zero_to_one=curve)))
    problem_at(found, "faults[1].p_zero_to_one")


@pytest.mark.parametrize(
    ("key_path", "expected_path"),
    [
        (("faults", 0, "failure"), "faults[0].failure.provenance"),
        (("knobs", "vdd"), "knobs.vdd.provenance"),
        (("faults", 0), "faults[0].provenance"),
        (("energy",), "energy.provenance"),
        (("faults", 0, "fault_fraction"), "faults[0].fault_fraction.provenance"),
    ],
)
def test_bad_block_provenance(problems: Problems, key_path: tuple[Any, ...],
                              expected_path: str) -> None:
    found = problems(inserted(minimal_doc(), key_path, "provenance", "guessed"))
    p = problem_at(found, expected_path)
    assert "expected one of measured, derived" in p.message


def test_bad_block_source_type(problems: Problems) -> None:
    found = problems(inserted(minimal_doc(), ("faults", 0, "failure"), "source", 7))
    assert "non-empty string" in problem_at(found, "faults[0].failure.source").message


@pytest.mark.parametrize("value", [-1e-300, -1e-13])
def test_tiny_negative_energy_is_rejected(problems: Problems, value: float) -> None:
    doc = replaced(minimal_doc(), ("energy", "write_energy_pj_per_bit"), value)
    problem_at(problems(doc), "energy.write_energy_pj_per_bit")


def test_tiny_negative_probability_is_rejected(problems: Problems) -> None:
    doc = with_fault(minimal_doc(), transient(p_one_to_zero=-1e-300))
    problem_at(problems(doc), "faults[1].p_one_to_zero")


def test_unknown_key_with_a_line_break_is_quoted_in_the_path(problems: Problems) -> None:
    found = problems(inserted(minimal_doc(), ("knobs", "vdd"), "nominal\nx", 1))
    p = problem_at(found, "knobs.vdd.'nominal\\nx'")
    assert "unknown field" in p.message


def test_deeply_nested_yaml_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    (p,) = problems_of(path)
    assert "YAML" in p.message


def test_range_check_grid_follows_the_knobs_a_figure_reads(write: Write,
                                                            problems: Problems) -> None:
    from memsim.physics.device import _grid_points

    doc = minimal_doc()
    # twelve knobs; the full box at three points per knob would be 3^12 = 531,441 points
    for i in range(11):
        doc = inserted(doc, ("knobs",), f"t{i}", {"unit": "s", "role": "control",
                                                  "nominal": 1.0, "range": [0.5, 2.0]})
    device = load(write(doc))
    vdd_only = list(_grid_points(device, ["vdd"]))
    assert {p["vdd"] for p in vdd_only} >= {0.5, 1.0} and len(vdd_only) <= 9
    assert all(p[f"t{i}"] == 1.0 for p in vdd_only for i in range(11))
    pair = list(_grid_points(device, ["t0", "t1"]))
    assert {(p["t0"], p["t1"]) for p in pair} >= {(0.5, 0.5), (2.0, 2.0), (0.5, 2.0)}
    # a two-knob figure that leaves [0, 1] only towards one corner of its knobs is still found
    corner = {"kind": "table2d", "of": ["t0", "t1"], "x": [0.5, 1.0, 2.0], "y": [0.5, 1.0, 2.0],
              "values": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 3.0]]}
    p = problem_at(problems(with_fault(doc, transient(p_zero_to_one=corner))),
                   "faults[1].p_zero_to_one")
    match = re.search(r"got ([0-9.]+) at vdd=1, t0=([0-9.]+), t1=([0-9.]+), t2=1,", p.message)
    assert match, p.message
    assert float(match[1]) > 1 and float(match[2]) > 1 and float(match[3]) > 1
