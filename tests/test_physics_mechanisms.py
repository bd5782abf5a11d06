"""Fault mechanisms and their composition into chip-average figures, against values derived by
hand in each test (level codes written out, 2×2 channel products multiplied out)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import integrate
from scipy.stats import lognorm

from memsim import Device, KnobError, OperatingPoint, load_device
from memsim.physics.mechanisms import expected_factor_rate
from memsim.spec.mechanisms import Phase


def approx(expected: Any, rel: float = 1e-12) -> Any:
    """pytest.approx without its absolute tolerance of 1e-12, which would pass any tiny
    probability as 0."""
    return pytest.approx(expected, rel=rel, abs=0.0)


_names = itertools.count()

KNOBS = {"x": {"unit": "1", "role": "control", "nominal": 0.5, "range": [0.0, 1.0]}}

# level codes written out: bit strings, most significant bit first
GRAY2 = ["00", "01", "11", "10"]
BINARY2 = ["00", "01", "10", "11"]
GRAY3 = ["000", "001", "011", "010", "110", "111", "101", "100"]
BINARY3 = ["000", "001", "010", "011", "100", "101", "110", "111"]
CODES = {(2, "gray"): GRAY2, (2, "binary"): BINARY2, (3, "gray"): GRAY3,
         (3, "binary"): BINARY3}


def make_device(tmp_path: Path, faults: Sequence[dict[str, Any]], *, bits: int = 1,
                coding: str = "gray", knobs: dict[str, Any] | None = None) -> Device:
    n = next(_names)
    doc: dict[str, Any] = {
        "schema_version": 1, "name": f"mech-test-{n}", "technology": "custom",
        "description": "mechanism test device",
        "source": [{"id": "hand", "citation": "hand-written test device"}],
        "cell": {"bits_per_cell": bits, "level_coding": coding},
        "knobs": knobs or KNOBS,
        "faults": list(faults),
        "energy": {"scope": "cell", "read_energy_pj_per_bit": 0.5,
                   "write_energy_pj_per_bit": 2.0},
    }
    path = tmp_path / f"device{n}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_device(path)


def transient(name: str, p01: float, p10: float, phase: str = "read") -> dict[str, Any]:
    return {"name": name, "kind": "transient", "phase": phase, "p_zero_to_one": p01,
            "p_one_to_zero": p10}


def threshold(name: str, fraction: float, sa0: float = 0.0, sa1: float = 0.0,
              flip: float = 0.0, phase: str = "read") -> dict[str, Any]:
    return {"name": name, "kind": "threshold", "phase": phase, "fault_fraction": fraction,
            "failure": {"stuck_at_zero": sa0, "stuck_at_one": sa1, "flip": flip}}


def assert_consistent(op: OperatingPoint) -> None:
    """Invariants of every operating point."""
    assert op.ber == approx((op.p_zero_to_one + op.p_one_to_zero) / 2, rel=1e-15)
    for m in op.mechanisms:
        assert m.ber == approx((m.p_zero_to_one + m.p_one_to_zero) / 2, rel=1e-15)
    for row in op.level_transition:
        assert sum(row) == pytest.approx(1.0, rel=0.0, abs=1e-12)
        assert min(row) >= 0.0


def rates_by_enumeration(codes: list[str], moves: dict[tuple[int, int], float]
                         ) -> tuple[float, float]:
    """(p01, p10) per stored bit for uniformly random levels, from level moves i -> j with
    probability q: P(stored bit 0 and read 1) / P(stored bit 0)."""
    levels, bits = len(codes), len(codes[0])
    up = down = 0.0
    for (i, j), q in moves.items():
        for a, b in zip(codes[i], codes[j], strict=True):
            if a == "0" and b == "1":
                up += q / (levels * bits)
            elif a == "1" and b == "0":
                down += q / (levels * bits)
    return up / 0.5, down / 0.5


# ---------------------------------------------------------------------------------------------
# threshold and stuck_at


@pytest.mark.parametrize("fraction", [1e-4, 0.03, 0.4])
def test_threshold_failure_shares(tmp_path: Path, fraction: float) -> None:
    sa0 = make_device(tmp_path, [threshold("t", fraction, sa0=1.0)]).at()
    assert sa0.p_zero_to_one == 0.0
    assert sa0.p_one_to_zero == approx(fraction, rel=1e-12)
    assert sa0.fault_fraction == approx(fraction, rel=1e-12)

    sa1 = make_device(tmp_path, [threshold("t", fraction, sa1=1.0)]).at()
    assert sa1.p_zero_to_one == approx(fraction, rel=1e-12)
    assert sa1.p_one_to_zero == 0.0

    flip = make_device(tmp_path, [threshold("t", fraction, flip=1.0)]).at()
    assert flip.p_zero_to_one == approx(fraction, rel=1e-12)
    assert flip.p_one_to_zero == approx(fraction, rel=1e-12)
    assert flip.ber == approx(fraction, rel=1e-12)
    assert flip.fault_fraction == approx(fraction, rel=1e-12)

    half = make_device(tmp_path, [threshold("t", fraction, sa0=0.5, sa1=0.5)]).at()
    assert half.p_zero_to_one == approx(fraction / 2, rel=1e-12)
    assert half.p_one_to_zero == approx(fraction / 2, rel=1e-12)
    assert half.ber == approx(fraction / 2, rel=1e-12)
    assert half.fault_fraction == approx(fraction, rel=1e-12)

    mixed = make_device(tmp_path, [threshold("t", fraction, sa0=0.2, sa1=0.3, flip=0.5)]).at()
    # a stored 0 reads 1 if stuck at one or flipped; a stored 1 reads 0 if stuck at zero or
    # flipped
    assert mixed.p_zero_to_one == approx(fraction * 0.8, rel=1e-12)
    assert mixed.p_one_to_zero == approx(fraction * 0.7, rel=1e-12)
    for op in (sa0, sa1, flip, half, mixed):
        assert_consistent(op)
        assert op.mechanisms[0].kind == "threshold"
        assert op.mechanisms[0].fault_fraction == approx(fraction, rel=1e-12)


def test_threshold_fault_fraction_follows_its_curve(tmp_path: Path) -> None:
    fault = threshold("t", 0.0, sa0=0.5, sa1=0.5)
    fault["fault_fraction"] = {"kind": "exponential", "of": "x", "coefficient": 1e-6,
                               "rate": 10.0}
    d = make_device(tmp_path, [fault])
    for x in (0.0, 0.3, 1.0):
        op = d.at(x=x)
        f = 1e-6 * math.exp(10.0 * x)
        assert op.fault_fraction == approx(f, rel=1e-12)
        assert op.ber == approx(f / 2, rel=1e-12)


def test_stuck_at(tmp_path: Path) -> None:
    op = make_device(tmp_path, [{"name": "defects", "kind": "stuck_at",
                                 "stuck_at_zero": 1e-3, "stuck_at_one": 3e-3}]).at()
    assert op.p_zero_to_one == approx(3e-3, rel=1e-12)
    assert op.p_one_to_zero == approx(1e-3, rel=1e-12)
    assert op.fault_fraction == approx(4e-3, rel=1e-12)
    assert op.ber == approx(2e-3, rel=1e-12)
    assert op.mechanisms[0].phase is Phase.READ
    assert_consistent(op)
    none = make_device(tmp_path, [{"name": "defects", "kind": "stuck_at"}]).at()
    assert none.ber == 0.0 and none.fault_fraction == 0.0


def test_tiny_fault_fractions_keep_their_precision(tmp_path: Path) -> None:
    """1 − Π(1 − f) must not cancel to 0 (or lose digits) for small fractions."""
    one = make_device(tmp_path, [threshold("t", 1e-20, flip=1.0)]).at()
    assert one.mechanisms[0].fault_fraction == 1e-20
    assert one.fault_fraction == approx(1e-20, rel=1e-12)
    assert one.ber == approx(1e-20, rel=1e-12)
    two = make_device(tmp_path, [threshold("a", 1e-12, sa0=1.0),
                                 threshold("b", 3e-12, sa1=1.0)]).at()
    assert two.fault_fraction == approx(4e-12 - 3e-24, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# transient and retention


def test_transient_asymmetric_rates(tmp_path: Path) -> None:
    op = make_device(tmp_path, [transient("noise", 1e-3, 5e-3)]).at()
    assert op.p_zero_to_one == approx(1e-3, rel=1e-12)
    assert op.p_one_to_zero == approx(5e-3, rel=1e-12)
    assert op.ber == approx(3e-3, rel=1e-12)
    assert op.fault_fraction == 0.0  # transient flips are not persistent faults
    assert op.level_transition == ((1 - 1e-3, 1e-3), (5e-3, 1 - 5e-3))
    m = op.mechanisms[0]
    assert (m.kind, m.phase, m.fault_fraction) == ("transient", Phase.READ, 0.0)
    one_sided = make_device(tmp_path, [{"name": "up", "kind": "transient",
                                        "p_zero_to_one": 0.02}]).at()
    assert (one_sided.p_zero_to_one, one_sided.p_one_to_zero) == (0.02, 0.0)
    assert one_sided.ber == 0.01


@pytest.mark.parametrize(("p", "sigma"), [(1e-3, 0.5), (1e-2, 1.0), (0.3, 1.5), (0.05, 0.0),
                                          (0.9, 0.8), (1e-4, 2.0), (0.6, 3.0)])
def test_expected_factor_rate_matches_monte_carlo(p: float, sigma: float) -> None:
    rng = np.random.default_rng(20240917)
    n = 1_000_000
    factor = np.exp(-sigma**2 / 2 + sigma * rng.standard_normal(n))
    draws = np.minimum(1.0, p * factor)
    mean, se = draws.mean(), draws.std(ddof=1) / math.sqrt(n)
    got = expected_factor_rate(p, sigma)
    assert abs(got - mean) <= 6 * se + 1e-15, (got, mean, se)
    if sigma == 0.0:
        assert got == p
    else:
        assert got <= p  # saturation only removes probability mass
    if (p, sigma) == (0.3, 1.5):  # p·f saturates for about 1 cell in 16
        assert np.mean(p * factor >= 1.0) > 0.05
        assert got < 0.9 * p


@pytest.mark.parametrize(("p", "sigma"), [(1e-3, 1.0), (0.3, 1.5), (0.02, 2.5)])
def test_expected_factor_rate_matches_quadrature(p: float, sigma: float) -> None:
    f = lognorm(s=sigma, scale=math.exp(-sigma**2 / 2))
    assert f.mean() == approx(1.0, rel=1e-12)
    c = 1.0 / p
    below, _ = integrate.quad(lambda x: p * x * f.pdf(x), 0.0, c, limit=200)
    expected = below + f.sf(c)
    assert expected_factor_rate(p, sigma) == approx(expected, rel=1e-7)


def test_transient_cell_factor_through_device(tmp_path: Path) -> None:
    fault = transient("noise", 0.3, 1e-3)
    fault["cell_factor"] = {"distribution": "lognormal", "sigma": 1.5}
    op = make_device(tmp_path, [fault]).at()
    assert op.p_zero_to_one == approx(expected_factor_rate(0.3, 1.5), rel=1e-12)
    assert op.p_one_to_zero == approx(expected_factor_rate(1e-3, 1.5), rel=1e-12)
    assert op.p_zero_to_one < 0.3 * 0.9
    assert op.p_one_to_zero == approx(1e-3, rel=1e-4)  # hardly ever saturates
    flat = transient("noise", 0.3, 1e-3)
    flat["cell_factor"] = {"distribution": "lognormal", "sigma": 0.0}
    op0 = make_device(tmp_path, [flat]).at()
    assert (op0.p_zero_to_one, op0.p_one_to_zero) == (0.3, 1e-3)


def test_retention_acts_in_phase_aged(tmp_path: Path) -> None:
    knobs = {"age": {"unit": "year", "role": "environment", "nominal": 1.0, "range": [0, 10]}}
    ret = {"name": "leak", "kind": "retention",
           "p_one_to_zero": {"kind": "neel_arrhenius", "time_s": "age", "temperature_k": 300,
                             "delta": 35.0}}
    op = make_device(tmp_path, [ret], knobs=knobs).at(age=1.0)
    m = op.mechanisms[0]
    assert (m.kind, m.phase) == ("retention", Phase.AGED)
    expected = -math.expm1(-(365.25 * 86400 / 1e-9) * math.exp(-35.0))
    assert op.p_one_to_zero == approx(expected, rel=1e-9)
    assert op.p_zero_to_one == 0.0
    assert op.fault_fraction == 0.0


# ---------------------------------------------------------------------------------------------
# composition


def series(a01: float, a10: float, b01: float, b10: float) -> tuple[float, float]:
    """Two binary channels in series, the 2×2 product multiplied out."""
    p01 = (1 - a01) * b01 + a01 * (1 - b10)
    p10 = (1 - a10) * b10 + a10 * (1 - b01)
    return p01, p10


def test_two_transients_compose_in_series(tmp_path: Path) -> None:
    a, b = 0.01, 0.03
    op = make_device(tmp_path, [transient("one", a, a), transient("two", b, b)]).at()
    assert op.p_zero_to_one == approx(a * (1 - b) + (1 - a) * b, rel=1e-12)
    assert op.p_one_to_zero == approx(a * (1 - b) + (1 - a) * b, rel=1e-12)

    rates = (1e-3, 4e-2, 2e-2, 5e-3)
    op2 = make_device(tmp_path, [transient("one", rates[0], rates[1]),
                                 transient("two", rates[2], rates[3])]).at()
    p01, p10 = series(*rates)
    assert op2.p_zero_to_one == approx(p01, rel=1e-12)
    assert op2.p_one_to_zero == approx(p10, rel=1e-12)
    assert op2.ber == approx((p01 + p10) / 2, rel=1e-12)
    assert op2.fault_fraction == 0.0
    assert [m.name for m in op2.mechanisms] == ["one", "two"]
    assert op2.mechanisms[0].p_one_to_zero == approx(4e-2, rel=1e-12)
    assert op2.mechanisms[1].p_zero_to_one == approx(2e-2, rel=1e-12)
    assert_consistent(op2)


@pytest.mark.parametrize("coding", ["gray", "binary"])
def test_two_transients_compose_per_bit_on_mlc(tmp_path: Path, coding: str) -> None:
    rates = (1e-3, 4e-2, 2e-2, 5e-3)
    op = make_device(tmp_path, [transient("one", rates[0], rates[1]),
                                transient("two", rates[2], rates[3])],
                     bits=2, coding=coding).at()
    p01, p10 = series(*rates)
    assert op.p_zero_to_one == approx(p01, rel=1e-12)
    assert op.p_one_to_zero == approx(p10, rel=1e-12)
    assert_consistent(op)


def test_stuck_at_overrides_a_read_transient(tmp_path: Path) -> None:
    a01, a10, s0, s1 = 0.02, 0.05, 0.01, 0.03
    stuck = {"name": "defects", "kind": "stuck_at", "stuck_at_zero": s0, "stuck_at_one": s1}
    # listed first, the stuck cells still act last: a stuck cell reads its stuck value
    for faults in ([stuck, transient("noise", a01, a10)],
                   [transient("noise", a01, a10), stuck]):
        op = make_device(tmp_path, faults).at()
        # stored 0 -> (1 - a01) stays 0, then reads 1 if stuck at one;
        #            a01 flipped to 1, then reads 1 unless stuck at zero
        assert op.p_zero_to_one == approx((1 - a01) * s1 + a01 * (1 - s0), rel=1e-12)
        assert op.p_one_to_zero == approx((1 - a10) * s0 + a10 * (1 - s1), rel=1e-12)
        assert op.fault_fraction == approx(s0 + s1, rel=1e-12)
        assert_consistent(op)
    # the other order (stuck first, then flipped) would give a different figure
    assert (1 - s1) * a01 + s1 * (1 - a10) != approx((1 - a01) * s1 + a01 * (1 - s0))


def test_phases_order_mechanisms_whatever_the_listing(tmp_path: Path) -> None:
    f, a = 0.1, 0.02
    # a programmed-phase threshold (sa0) listed after a read transient still acts first
    op = make_device(tmp_path, [transient("noise", a, a),
                                threshold("weak", f, sa0=1.0, phase="programmed")]).at()
    # stored 0: programmed 0 either way, then flips with a
    assert op.p_zero_to_one == approx(a, rel=1e-12)
    # stored 1: stuck to 0 (f) then flipped back (a), or kept (1 - f) then flipped (a)
    assert op.p_one_to_zero == approx(f * (1 - a) + (1 - f) * a, rel=1e-12)
    phases = {m.name: m.phase for m in op.mechanisms}
    assert phases == {"noise": Phase.READ, "weak": Phase.PROGRAMMED}

    # aged retention sits between a programmed transient and a read stuck_at
    ret = {"name": "leak", "kind": "retention", "p_one_to_zero": 0.2}
    stuck = {"name": "defects", "kind": "stuck_at", "stuck_at_one": 0.05}
    op3 = make_device(tmp_path, [stuck, ret, transient("write", 0.1, 0.0,
                                                       phase="programmed")]).at()
    # stored 0: written wrong (0.1) -> 1, then leaks back to 0 (0.2); then stuck at one (0.05)
    after_write_and_leak = 0.1 * (1 - 0.2)
    assert op3.p_zero_to_one == approx(
        after_write_and_leak + (1 - after_write_and_leak) * 0.05, rel=1e-12)
    # stored 1: leaks to 0 (0.2) unless then stuck at one
    assert op3.p_one_to_zero == approx(0.2 * (1 - 0.05), rel=1e-12)


def test_fault_fractions_combine_as_independent(tmp_path: Path) -> None:
    f1, f2, s = 0.1, 0.25, 0.02
    op = make_device(tmp_path, [threshold("a", f1, sa0=1.0), threshold("b", f2, sa1=1.0),
                                {"name": "c", "kind": "stuck_at", "stuck_at_zero": s},
                                transient("n", 0.01, 0.01)]).at()
    assert op.fault_fraction == approx(1 - (1 - f1) * (1 - f2) * (1 - s), rel=1e-12)
    assert [m.fault_fraction for m in op.mechanisms] == approx([f1, f2, s, 0.0])
    assert_consistent(op)
    # overrides act in listing order after the flips: n flips, a forces 0, b forces 1, c 0
    reads1_after_n_a = 0.01 * (1 - f1)
    reads1_after_b = reads1_after_n_a * (1 - f2) + f2
    assert op.p_zero_to_one == approx(reads1_after_b * (1 - s), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# multi-level cells


def level_confusion(transitions: dict[tuple[int, int], float]) -> dict[str, Any]:
    return {"name": "confusion", "kind": "level_confusion",
            "transitions": [{"from": i, "to": j, "probability": q}
                            for (i, j), q in transitions.items()]}


@pytest.mark.parametrize("bits", [2, 3])
def test_gray_adjacent_up_transitions_flip_one_bit(tmp_path: Path, bits: int) -> None:
    levels = 2**bits
    qs = {(i, i + 1): 1e-3 * (i + 1) for i in range(levels - 1)}
    codes = CODES[(bits, "gray")]
    for (i, j) in qs:
        assert sum(a != b for a, b in zip(codes[i], codes[j], strict=True)) == 1
    op = make_device(tmp_path, [level_confusion(qs)], bits=bits, coding="gray").at()
    assert op.ber == approx(sum(qs.values()) / (levels * bits), rel=1e-12)
    p01, p10 = rates_by_enumeration(codes, qs)
    assert op.p_zero_to_one == approx(p01, rel=1e-12)
    assert op.p_one_to_zero == approx(p10, rel=1e-12)
    for (i, j), q in qs.items():
        assert op.level_transition[i][j] == approx(q, rel=1e-12)
        assert op.level_transition[i][i] == approx(1 - q, rel=1e-12)
    assert op.level_transition[levels - 1][levels - 1] == 1.0
    assert_consistent(op)


def test_gray_2bit_hand_values(tmp_path: Path) -> None:
    # FeFET MLC, upward errors only (research notes): 0->1 0.94 %, 1->2 1.8 %, 2->3 1.7 %
    qs = {(0, 1): 0.0094, (1, 2): 0.018, (2, 3): 0.017}
    op = make_device(tmp_path, [level_confusion(qs)], bits=2, coding="gray").at()
    # Gray 00->01 (bit 0 up), 01->11 (bit 1 up), 11->10 (bit 0 down); 4 zero slots, 4 one slots
    assert op.p_zero_to_one == approx((0.0094 + 0.018) / 4, rel=1e-12)
    assert op.p_one_to_zero == approx(0.017 / 4, rel=1e-12)
    assert op.ber == approx((0.0094 + 0.018 + 0.017) / 8, rel=1e-12)


def test_binary_coding_flips_two_bits_from_1_to_2(tmp_path: Path) -> None:
    q = 0.02
    gray = make_device(tmp_path, [level_confusion({(1, 2): q})], bits=2, coding="gray").at()
    binary = make_device(tmp_path, [level_confusion({(1, 2): q})], bits=2,
                         coding="binary").at()
    # Gray 01 -> 11: one bit of the cell's two; binary 01 -> 10: both bits
    assert gray.ber == approx(q / 8, rel=1e-12)
    assert binary.ber == approx(q / 4, rel=1e-12)
    assert (gray.p_zero_to_one, gray.p_one_to_zero) == approx((q / 4, 0.0))
    assert (binary.p_zero_to_one, binary.p_one_to_zero) == approx((q / 4, q / 4))

    qs = {(0, 1): 0.01, (1, 2): 0.02, (2, 3): 0.03}
    op = make_device(tmp_path, [level_confusion(qs)], bits=2, coding="binary").at()
    assert op.ber == approx((0.01 + 2 * 0.02 + 0.03) / 8, rel=1e-12)
    assert (op.p_zero_to_one, op.p_one_to_zero) == approx(
        rates_by_enumeration(BINARY2, qs), rel=1e-12)


def test_binary_3bit_adjacent_transitions(tmp_path: Path) -> None:
    qs = {(i, i + 1): 1e-3 * (i + 1) for i in range(7)}
    op = make_device(tmp_path, [level_confusion(qs)], bits=3, coding="binary").at()
    # bits flipped by i -> i+1 in binary: 1, 2, 1, 3, 1, 2, 1
    flipped = [1, 2, 1, 3, 1, 2, 1]
    expected = sum(f * q for f, q in zip(flipped, qs.values(), strict=True)) / (8 * 3)
    assert op.ber == approx(expected, rel=1e-12)
    assert (op.p_zero_to_one, op.p_one_to_zero) == approx(
        rates_by_enumeration(BINARY3, qs), rel=1e-12)


@pytest.mark.parametrize("coding", ["gray", "binary"])
def test_transition_skipping_a_level(tmp_path: Path, coding: str) -> None:
    q = 0.04
    op = make_device(tmp_path, [level_confusion({(0, 2): q})], bits=2, coding=coding).at()
    assert op.level_transition[0][2] == approx(q, rel=1e-12)
    assert op.level_transition[0][1] == 0.0
    assert op.level_transition[0][0] == approx(1 - q, rel=1e-12)
    if coding == "gray":  # 00 -> 11: both bits up
        assert (op.p_zero_to_one, op.p_one_to_zero) == approx((q / 2, 0.0))
        assert op.ber == approx(q / 4, rel=1e-12)
    else:  # 00 -> 10: one bit up
        assert (op.p_zero_to_one, op.p_one_to_zero) == approx((q / 4, 0.0))
        assert op.ber == approx(q / 8, rel=1e-12)


@pytest.mark.parametrize("coding", ["gray", "binary"])
def test_matrix_equals_transitions(tmp_path: Path, coding: str) -> None:
    matrix = [[0.97, 0.02, 0.01, 0.0],
              [0.005, 0.985, 0.01, 0.0],
              [0.0, 0.03, 0.96, 0.01],
              [0.0, 0.0, 0.02, 0.98]]
    moves = {(i, j): v for i, row in enumerate(matrix) for j, v in enumerate(row)
             if i != j and v > 0}
    by_matrix = make_device(tmp_path, [{"name": "m", "kind": "level_confusion",
                                        "matrix": matrix}], bits=2, coding=coding).at()
    by_list = make_device(tmp_path, [level_confusion(moves)], bits=2, coding=coding).at()
    np.testing.assert_allclose(by_matrix.level_transition, matrix, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(by_list.level_transition, matrix, rtol=1e-12, atol=1e-15)
    assert by_matrix.p_zero_to_one == approx(by_list.p_zero_to_one, rel=1e-12)
    assert by_matrix.p_one_to_zero == approx(by_list.p_one_to_zero, rel=1e-12)
    p01, p10 = rates_by_enumeration(CODES[(2, coding)], moves)
    assert by_matrix.p_zero_to_one == approx(p01, rel=1e-12)
    assert by_matrix.p_one_to_zero == approx(p10, rel=1e-12)


@pytest.mark.parametrize(("bits", "coding"), [(2, "gray"), (2, "binary"), (3, "gray"),
                                              (3, "binary")])
def test_threshold_flip_on_mlc_inverts_every_bit(tmp_path: Path, bits: int, coding: str) -> None:
    f = 0.05
    op = make_device(tmp_path, [threshold("t", f, flip=1.0)], bits=bits, coding=coding).at()
    codes = CODES[(bits, coding)]
    for i, code in enumerate(codes):
        inverse = "".join("1" if c == "0" else "0" for c in code)
        j = codes.index(inverse)
        assert op.level_transition[i][j] == approx(f, rel=1e-12)
        assert op.level_transition[i][i] == approx(1 - f, rel=1e-12)
    assert op.p_zero_to_one == approx(f, rel=1e-12)
    assert op.p_one_to_zero == approx(f, rel=1e-12)
    assert op.fault_fraction == approx(f, rel=1e-12)
    if (bits, coding) == (2, "gray"):  # 00 <-> 11 is level 0 <-> 2, 01 <-> 10 is 1 <-> 3
        assert op.level_transition[0][2] == op.level_transition[1][3] == approx(f)


@pytest.mark.parametrize("coding", ["gray", "binary"])
def test_stuck_at_zero_on_mlc_reads_all_zeros(tmp_path: Path, coding: str) -> None:
    f = 0.05
    op = make_device(tmp_path, [threshold("t", f, sa0=1.0)], bits=3, coding=coding).at()
    assert op.p_zero_to_one == 0.0
    assert op.p_one_to_zero == approx(f, rel=1e-12)
    assert all(op.level_transition[i][0] == approx(f) for i in range(1, 8))
    stuck1 = make_device(tmp_path, [{"name": "d", "kind": "stuck_at", "stuck_at_one": f}],
                         bits=2, coding="binary").at()
    # binary: the highest level is 11
    assert (stuck1.p_zero_to_one, stuck1.p_one_to_zero) == approx((f, 0.0))


# ---------------------------------------------------------------------------------------------
# the operating point


def test_operating_point_to_dict_is_json(tmp_path: Path) -> None:
    d = make_device(tmp_path, [transient("n", 1e-3, 2e-3), threshold("t", 0.01, sa0=1.0)],
                    bits=2)
    op = d.at(x=0.25)
    data = op.to_dict()
    for key in ("device", "knobs", "ber", "p_zero_to_one", "p_one_to_zero", "fault_fraction",
                "read_energy_pj_per_bit"):
        assert key in data
    assert data["device"] == d.name
    assert data["knobs"] == {"x": 0.25}
    assert data["ber"] == op.ber
    assert data["fault_fraction"] == op.fault_fraction
    assert data["read_energy_pj_per_bit"] == 0.5
    text = json.dumps(data)
    assert json.loads(text)["p_one_to_zero"] == op.p_one_to_zero
    assert [m["name"] for m in json.loads(text)["mechanisms"]] == ["n", "t"]


def test_sram_undervolt_provenance() -> None:
    op = load_device("sram-14nm").at(v_rel=0.85)
    undervolt = next(m for m in op.mechanisms if m.name == "undervolt")
    assert {"derived", "measured"} <= set(undervolt.provenance)
    assert "unspecified" not in undervolt.provenance  # probit maximum is a schema default
    assert "unspecified" not in op.provenance
    assert {"derived", "measured"} <= set(op.to_dict()["provenance"])


def test_missing_knobs_default_to_nominal(tmp_path: Path) -> None:
    knobs = {"x": {"unit": "1", "role": "control", "nominal": 0.5, "range": [0.0, 1.0]},
             "y": {"unit": "K", "role": "environment", "nominal": 300, "range": [250, 400]}}
    fault = transient("n", 0.0, 0.0)
    fault["p_zero_to_one"] = {"kind": "exponential", "of": "x", "coefficient": 1e-3,
                              "rate": 2.0}
    fault["p_one_to_zero"] = {"kind": "exponential", "of": "y", "coefficient": 1e-3,
                              "rate": 0.01, "reference": 300}
    d = make_device(tmp_path, [fault], knobs=knobs)
    assert d.at().knobs == {"x": 0.5, "y": 300.0}
    assert d.at(x=0.9).knobs == {"x": 0.9, "y": 300.0}
    assert d.at(x=0.9).p_zero_to_one == approx(1e-3 * math.exp(1.8), rel=1e-12)
    assert d.at(x=0.9).p_one_to_zero == approx(1e-3, rel=1e-12)
    assert d.at(y=350).p_zero_to_one == approx(1e-3 * math.exp(1.0), rel=1e-12)
    assert d.at(y=np.float64(350)).to_dict() == d.at(y=350.0).to_dict()


@pytest.mark.parametrize(("knobs", "pattern"), [
    ({"v": 0.9}, "unknown knob 'v'"),
    ({"xx": 0.9}, "did you mean 'x'"),
    ({"x": 1.5}, r"x=1\.5 is outside its range \[0, 1\]"),
    ({"x": -0.1}, "outside its range"),
    ({"x": math.nan}, "outside its range"),
    ({"x": math.inf}, "outside its range"),
    ({"x": "abc"}, "needs a number"),
    ({"x": None}, "needs a number"),
    ({"x": [0.5]}, "needs a number"),
    ({"x": True}, "needs a number"),
    ({"x": "0.5"}, "needs a number"),
])
def test_bad_knobs_raise_one_line_knob_errors(tmp_path: Path, knobs: dict[str, Any],
                                               pattern: str) -> None:
    d = make_device(tmp_path, [transient("n", 1e-3, 1e-3)])
    with pytest.raises(KnobError, match=pattern) as err:
        d.at(**knobs)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(d.name)
