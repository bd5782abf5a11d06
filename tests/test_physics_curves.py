"""Curve kinds evaluated through loaded devices, against values computed here by hand from the
formulas (and a few literal figures from the research notes)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy.stats import norm

from memsim import Device, KnobError, SpecError, load_device
from memsim.physics.curves import CurveDomainError, describe, evaluate
from memsim.spec.curves import TableCurve
from memsim.spec.mechanisms import TransientMechanism

K_B_EV = 8.617333262e-5  # Boltzmann constant in eV/K (CODATA 2018)
YEAR_S = 365.25 * 86400.0

def approx(expected: Any, rel: float = 1e-12) -> Any:
    """pytest.approx without its absolute tolerance of 1e-12, which would pass any tiny
    probability as 0."""
    return pytest.approx(expected, rel=rel, abs=0.0)


_names = itertools.count()


def ratio_knob(low: float, high: float, nominal: float, unit: str = "1") -> dict[str, Any]:
    return {"unit": unit, "role": "control", "nominal": nominal, "range": [low, high]}


def make_device(tmp_path: Path, knobs: dict[str, Any], *, p01: Any = None,
                read_energy: Any = 1.0) -> Device:
    """A one-bit device whose single transient mechanism has `p01` as its 0→1 curve and whose
    read energy is `read_energy`."""
    n = next(_names)
    doc: dict[str, Any] = {
        "schema_version": 1, "name": f"curve-test-{n}", "technology": "custom",
        "description": "curve test device",
        "source": [{"id": "hand", "citation": "hand-written test device"}],
        "knobs": knobs,
        "faults": [] if p01 is None else [
            {"name": "flips", "kind": "transient", "p_zero_to_one": p01}],
        "energy": {"scope": "cell", "read_energy_pj_per_bit": read_energy,
                   "write_energy_pj_per_bit": 1.0},
    }
    path = tmp_path / f"device{n}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_device(path)


def p01_at(device: Device, **knobs: float) -> float:
    """The 0→1 rate of the device's only mechanism (a one-bit transient: the curve itself)."""
    op = device.at(**knobs)
    assert len(op.mechanisms) == 1
    assert op.mechanisms[0].p_one_to_zero == 0.0
    return op.mechanisms[0].p_zero_to_one


def energy_at(device: Device, **knobs: float) -> float:
    return device.at(**knobs).read_energy_pj_per_bit


X = {"x": ratio_knob(0.0, 2.0, 1.0)}


# ---------------------------------------------------------------------------------------------
# constant


def test_constant_bare_number_and_mapping(tmp_path: Path) -> None:
    d = make_device(tmp_path, X, p01=3.5e-4, read_energy={"value": 0.25, "provenance": "assumed"})
    for x in (0.0, 0.7, 2.0):
        assert p01_at(d, x=x) == 3.5e-4
        assert energy_at(d, x=x) == 0.25
    d2 = make_device(tmp_path, X, p01={"kind": "constant", "value": 0.125})
    assert p01_at(d2, x=1.3) == 0.125


# ---------------------------------------------------------------------------------------------
# table


def test_table_linear_at_points_and_midpoints(tmp_path: Path) -> None:
    pts = [[0.0, 0.1], [1.0, 0.3], [2.0, 0.2]]
    d = make_device(tmp_path, X, p01={"kind": "table", "of": "x", "points": pts})
    for x, y in pts:
        assert p01_at(d, x=x) == approx(y, rel=1e-12)
    assert p01_at(d, x=0.5) == approx(0.2, rel=1e-12)
    assert p01_at(d, x=1.5) == approx(0.25, rel=1e-12)
    assert p01_at(d, x=0.25) == approx(0.1 + 0.25 * 0.2, rel=1e-12)
    assert p01_at(d, x=1.9) == approx(0.3 - 0.9 * 0.1, rel=1e-12)


def test_table_log_y_interpolates_geometrically(tmp_path: Path) -> None:
    pts = [[0.0, 1e-6], [1.0, 1e-2], [2.0, 1e-4]]
    d = make_device(tmp_path, X, p01={"kind": "table", "of": "x", "points": pts,
                                      "y_scale": "log"})
    for x, y in pts:
        assert p01_at(d, x=x) == approx(y, rel=1e-12)
    assert p01_at(d, x=0.5) == approx(math.sqrt(1e-6 * 1e-2), rel=1e-12)  # 1e-4
    assert p01_at(d, x=0.25) == approx(1e-5, rel=1e-12)
    assert p01_at(d, x=1.5) == approx(1e-3, rel=1e-12)
    # not the linear midpoint
    assert p01_at(d, x=0.5) < 0.1 * (1e-6 + 1e-2) / 2


def test_table_log_x_interpolates_in_log_x(tmp_path: Path) -> None:
    knobs = {"n": ratio_knob(1.0, 100.0, 10.0)}
    pts = [[1.0, 0.1], [10.0, 0.3], [100.0, 0.5]]
    d = make_device(tmp_path, knobs, p01={"kind": "table", "of": "n", "points": pts,
                                          "x_scale": "log"})
    for x, y in pts:
        assert p01_at(d, n=x) == approx(y, rel=1e-12)
    assert p01_at(d, n=math.sqrt(10.0)) == approx(0.2, rel=1e-12)
    assert p01_at(d, n=math.sqrt(1000.0)) == approx(0.4, rel=1e-12)
    assert p01_at(d, n=50.0) == approx(0.3 + 0.2 * math.log10(5.0), rel=1e-12)


def test_table_log_log_is_a_power_law_between_points(tmp_path: Path) -> None:
    knobs = {"n": ratio_knob(50.0, 300.0, 100.0)}
    # FeFET SLC P(0->1) by number of domains (research notes)
    pts = [[50.0, 2.5e-2], [100.0, 2.8e-3], [200.0, 8.6e-5], [300.0, 2.5e-6]]
    d = make_device(tmp_path, knobs, p01={"kind": "table", "of": "n", "points": pts,
                                          "x_scale": "log", "y_scale": "log"})
    for x, y in pts:
        assert p01_at(d, n=x) == approx(y, rel=1e-12)
    slope = math.log(8.6e-5 / 2.8e-3) / math.log(2.0)
    assert p01_at(d, n=150.0) == approx(2.8e-3 * 1.5**slope, rel=1e-12)


def test_table_clamp_holds_end_values(tmp_path: Path) -> None:
    knobs = {"x": ratio_knob(0.0, 3.0, 1.5)}
    pts = [[1.0, 1e-3], [2.0, 1e-1]]
    d = make_device(tmp_path, knobs, p01={"kind": "table", "of": "x", "points": pts,
                                          "y_scale": "log", "clamp": True})
    assert p01_at(d, x=0.0) == 1e-3
    assert p01_at(d, x=0.999) == 1e-3
    assert p01_at(d, x=2.5) == 1e-1
    assert p01_at(d, x=3.0) == 1e-1
    assert p01_at(d, x=1.5) == approx(1e-2, rel=1e-12)


def test_unclamped_table_outside_its_points(tmp_path: Path) -> None:
    knobs = {"x": ratio_knob(0.0, 3.0, 1.5)}
    table = {"kind": "table", "of": "x", "points": [[1.0, 1e-3], [2.0, 1e-1]]}
    # the load-time range check catches a table that does not cover its knob's range
    with pytest.raises(SpecError) as err:
        make_device(tmp_path, knobs, p01=table)
    assert "faults[0].p_zero_to_one" in str(err.value)
    assert "outside the table" in str(err.value)
    assert "\n" not in str(err.value)

    # evaluation itself: a CurveDomainError, which is a KnobError
    covered = make_device(tmp_path, {"x": ratio_knob(1.0, 2.0, 1.5)}, p01=table)
    mech = covered.spec.faults[0]
    assert isinstance(mech, TransientMechanism)
    curve = mech.p_zero_to_one
    assert isinstance(curve, TableCurve)
    assert evaluate(curve, {"x": 1.0}) == 1e-3
    for x in (0.5, 2.0001, 3.0):
        with pytest.raises(CurveDomainError, match="outside the table"):
            evaluate(curve, {"x": x})
    assert issubclass(CurveDomainError, KnobError)

    # through Device.at (the spec's knob range widened after the load-time check)
    knob = covered.spec.knobs[0]
    covered.spec = dataclasses.replace(
        covered.spec, knobs=(dataclasses.replace(knob, low=0.0, high=3.0),))
    assert p01_at(covered, x=1.5) == approx((1e-3 + 1e-1) / 2, rel=1e-12)
    with pytest.raises(KnobError) as kerr:
        covered.at(x=2.5)
    msg = str(kerr.value)
    assert "\n" not in msg
    assert msg.startswith(covered.name)
    assert "x=2.5" in msg and "clamp" in msg


# ---------------------------------------------------------------------------------------------
# probit, exponential, power


@pytest.mark.parametrize("direction", ["increasing", "decreasing"])
def test_probit_with_and_without_maximum(tmp_path: Path, direction: str) -> None:
    mean, sigma, maximum = 0.8, 0.15, 0.3
    capped = make_device(tmp_path, X, p01={"kind": "probit", "of": "x", "mean": mean,
                                           "sigma": sigma, "direction": direction,
                                           "maximum": maximum})
    plain = make_device(tmp_path, X, p01={"kind": "probit", "of": "x", "mean": mean,
                                          "sigma": sigma, "direction": direction})
    sign = 1.0 if direction == "increasing" else -1.0
    for x in (0.0, 0.5, 0.8, 0.95, 1.3, 2.0):
        z = sign * (x - mean) / sigma
        assert p01_at(plain, x=x) == approx(norm.cdf(z), rel=1e-9)
        assert p01_at(capped, x=x) == approx(maximum * norm.cdf(z), rel=1e-9)
    assert p01_at(plain, x=mean) == approx(0.5, rel=1e-12)
    assert p01_at(capped, x=mean + sign * sigma) == approx(0.3 * 0.8413447460685429,
                                                                  rel=1e-9)


def test_probit_default_direction_is_increasing(tmp_path: Path) -> None:
    d = make_device(tmp_path, X, p01={"kind": "probit", "of": "x", "mean": 1.0, "sigma": 0.2})
    assert p01_at(d, x=1.2) == approx(norm.cdf(1.0), rel=1e-9)
    assert p01_at(d, x=0.6) == approx(norm.cdf(-2.0), rel=1e-9)


def test_exponential_with_and_without_cap(tmp_path: Path) -> None:
    falling = make_device(tmp_path, X, p01={"kind": "exponential", "of": "x",
                                            "coefficient": 1e-3, "rate": -10,
                                            "reference": 0.5})
    for x in (0.5, 0.7, 1.0, 2.0):
        assert p01_at(falling, x=x) == approx(1e-3 * math.exp(-10 * (x - 0.5)), rel=1e-12)
    # 1e-3 * e^(10 x), capped at 0.05 (the cap bites above x = ln(50)/10 = 0.391)
    capped = make_device(tmp_path, X, p01={"kind": "exponential", "of": "x",
                                           "coefficient": 1e-3, "rate": 10, "maximum": 0.05})
    assert p01_at(capped, x=0.0) == approx(1e-3, rel=1e-12)  # reference defaults to 0
    assert p01_at(capped, x=0.2) == approx(1e-3 * math.exp(2.0), rel=1e-12)
    assert p01_at(capped, x=0.39) == approx(1e-3 * math.exp(3.9), rel=1e-12)
    assert p01_at(capped, x=0.5) == 0.05
    assert p01_at(capped, x=2.0) == 0.05


def test_scaled_is_a_share_of_another_curve_written_once(tmp_path: Path) -> None:
    inner = {"kind": "exponential", "of": "x", "coefficient": 1e-3, "rate": 2.0,
             "provenance": "measured", "source": "hand"}
    share = make_device(tmp_path, X, p01={"kind": "scaled", "curve": inner, "factor": {
        "value": 0.25, "provenance": "assumed"}})
    for x in (0.0, 0.5, 2.0):
        assert p01_at(share, x=x) == approx(0.25 * 1e-3 * math.exp(2.0 * x))
    (figures,) = share.at(x=1.0).mechanisms
    assert set(figures.provenance) == {"measured", "assumed"}  # the factor's and the curve's
    (mech,) = share.spec.faults
    assert describe(mech.p_zero_to_one) == "0.25 × [exponential: 0.001·exp(2·(x − 0))]"
    # capped; and a curve used twice in one file by a YAML alias (safe_dump writes one)
    capped = make_device(tmp_path, X, p01={"kind": "scaled", "curve": inner, "factor": 30,
                                           "maximum": 0.05})
    assert p01_at(capped, x=0.0) == approx(0.03)
    assert p01_at(capped, x=2.0) == 0.05


def test_scaled_reads_a_curve_aliased_from_another_mechanism(tmp_path: Path) -> None:
    text = """\
schema_version: 1
name: alias-test
technology: custom
description: a transient share of a threshold's curve, written once
source: [{id: hand, citation: hand-written}]
knobs: {x: {unit: "1", role: control, nominal: 1.0, range: [0.0, 2.0]}}
faults:
  - name: weak
    kind: threshold
    fault_fraction: &weak {kind: exponential, of: x, coefficient: 1.0e-4, rate: 1.5}
    failure: {stuck_at_zero: 1.0, stuck_at_one: 0.0, flip: 0.0}
    variability: {die: 0.0, array: 0.0, row: 0.0, cell: 1.0}
  - name: toggling
    kind: transient
    p_one_to_zero: {kind: scaled, factor: 0.02, curve: *weak}
energy: {scope: cell, read_energy_pj_per_bit: 1.0, write_energy_pj_per_bit: 1.0}
"""
    path = tmp_path / "alias.yaml"
    path.write_text(text, encoding="utf-8")
    device = load_device(path)
    for x in (0.0, 1.0, 2.0):
        weak, toggling = device.at(x=x).mechanisms
        assert weak.fault_fraction == approx(1e-4 * math.exp(1.5 * x))
        assert toggling.p_one_to_zero == approx(0.02 * weak.fault_fraction)


def test_power_cv_squared(tmp_path: Path) -> None:
    d = make_device(tmp_path, X, read_energy={"kind": "power", "of": "x", "coefficient": 0.5,
                                              "exponent": 2, "reference": 1.0})
    assert energy_at(d, x=0.8) == approx(0.5 * (0.8 / 1.0) ** 2, rel=1e-12)
    assert energy_at(d, x=0.8) == approx(0.32, rel=1e-12)
    assert energy_at(d) == approx(0.5, rel=1e-12)  # nominal x = 1
    cubic = make_device(tmp_path, X, read_energy={"kind": "power", "of": "x",
                                                  "coefficient": 2.0, "exponent": 3,
                                                  "reference": 0.5})
    assert energy_at(cubic, x=1.5) == approx(2.0 * 3.0**3, rel=1e-12)
    assert energy_at(cubic, x=0.0) == 0.0


# ---------------------------------------------------------------------------------------------
# neel_arrhenius


def neel_arrhenius(t: float, delta0: float, temp: float = 300.0, t_ref: float = 300.0,
                   i: float = 0.0, tau0: float = 1e-9) -> float:
    delta = delta0 * t_ref / temp
    return -math.expm1(-(t / tau0) * math.exp(-delta * (1.0 - i)))


def read_disturb_device(tmp_path: Path, delta: float) -> Device:
    knobs = {"t_read": ratio_knob(1.0, 20.0, 5.0, unit="ns")}
    return make_device(tmp_path, knobs, p01={
        "kind": "neel_arrhenius", "time_s": "t_read", "temperature_k": 300.0,
        "current_ratio": 0.5, "delta": delta, "attempt_time_s": 1e-9})


@pytest.mark.parametrize(("delta", "published"), [(40.0, 1e-8), (60.0, 5e-13)])
def test_neel_arrhenius_read_disturb_published_figures(tmp_path: Path, delta: float,
                                                       published: float) -> None:
    # research notes: t_r = 5 ns, I_r = 0.5 Ic0, tau0 = 1 ns -> 1e-8 at 40, 5e-13 at 60
    d = read_disturb_device(tmp_path, delta)
    p = p01_at(d, t_read=5.0)
    assert p == approx(published, rel=0.2)
    assert p == approx(neel_arrhenius(5e-9, delta, i=0.5), rel=1e-6)
    # -expm1 keeps tiny probabilities exact: (t/tau0) e^(-delta/2) to first order
    assert p == approx(5.0 * math.exp(-delta / 2.0), rel=1e-6)
    assert p01_at(d, t_read=10.0) == approx(2 * p, rel=1e-6)


def test_neel_arrhenius_retention_ten_years(tmp_path: Path) -> None:
    knobs = {"age": ratio_knob(0.0, 20.0, 10.0, unit="year")}
    d = make_device(tmp_path, knobs, p01={"kind": "neel_arrhenius", "time_s": "age",
                                          "temperature_k": 300.0, "delta": 60.0})
    p = p01_at(d, age=10.0)
    expected = (10 * YEAR_S / 1e-9) * math.exp(-60.0)  # ≈ 2.8e-9
    assert p == approx(expected, rel=1e-6)
    assert p < 1e-8
    assert p01_at(d, age=0.0) == 0.0
    # a weaker barrier loses the bit within ten years
    weak = make_device(tmp_path, knobs, p01={"kind": "neel_arrhenius", "time_s": "age",
                                             "temperature_k": 300.0, "delta": 30.0})
    assert p01_at(weak, age=10.0) == approx(neel_arrhenius(10 * YEAR_S, 30.0), rel=1e-9)
    assert p01_at(weak, age=10.0) > 0.99


def test_neel_arrhenius_barrier_falls_with_temperature(tmp_path: Path) -> None:
    knobs = {"temp": ratio_knob(250.0, 400.0, 300.0, unit="K")}
    d = make_device(tmp_path, knobs, p01={"kind": "neel_arrhenius", "time_s": 3600.0,
                                          "temperature_k": "temp", "delta": 50.0,
                                          "reference_temperature_k": 300.0})
    values = [p01_at(d, temp=t) for t in (250.0, 300.0, 350.0, 400.0)]
    assert values == sorted(values) and len(set(values)) == 4
    for t, v in zip((250.0, 300.0, 350.0, 400.0), values, strict=True):
        assert v == approx(neel_arrhenius(3600.0, 50.0, temp=t), rel=1e-9)
    # at the reference temperature Δ(T) = Δ0
    assert values[1] == approx(3600.0 / 1e-9 * math.exp(-50.0), rel=1e-6)
    # at 350 K: Δ = 50 · 300/350
    assert values[2] == approx(neel_arrhenius(3600.0, 50.0 * 300.0 / 350.0), rel=1e-12)


def test_knob_units_convert_to_si(tmp_path: Path) -> None:
    """A time knob in ms and a temperature knob in degC read like the SI constants."""
    knobs = {"t": ratio_knob(0.5, 10.0, 1.0, unit="ms"),
             "temp": ratio_knob(-20.0, 125.0, 25.0, unit="degC")}
    with_knobs = make_device(tmp_path, knobs, p01={
        "kind": "neel_arrhenius", "time_s": "t", "temperature_k": "temp", "delta": 40.0,
        "reference_temperature_k": 300.0})
    constants = make_device(tmp_path, knobs, p01={
        "kind": "neel_arrhenius", "time_s": 2e-3, "temperature_k": 358.15, "delta": 40.0,
        "reference_temperature_k": 300.0})
    p = p01_at(with_knobs, t=2.0, temp=85.0)
    assert p == approx(p01_at(constants), rel=1e-12)
    assert p == approx(neel_arrhenius(2e-3, 40.0, temp=358.15), rel=1e-9)
    assert p > 1e-12  # a figure that would show a unit slip (×1000 in t, ±273 in T)


# ---------------------------------------------------------------------------------------------
# stt_write_error


def test_stt_write_error_thermal_regime(tmp_path: Path) -> None:
    knobs = {"pulse": ratio_knob(1.0, 100.0, 10.0, unit="ns"),
             "i": ratio_knob(0.5, 1.0, 0.9)}
    d = make_device(tmp_path, knobs, p01={
        "kind": "stt_write_error", "pulse_s": "pulse", "current_ratio": "i", "delta": 40.0,
        "attempt_time_s": 1e-9, "precession_time_s": 1e-9})
    for pulse, i in ((10.0, 0.95), (50.0, 0.95), (10.0, 0.9), (100.0, 0.8), (10.0, 1.0)):
        tau = 1e-9 * math.exp(40.0 * (1.0 - i))
        assert p01_at(d, pulse=pulse, i=i) == approx(math.exp(-pulse * 1e-9 / tau),
                                                            rel=1e-12)
    # i = 0.95: tau = e^2 ns, so 10 ns leaves exp(-10/e^2) = 0.258 unswitched
    assert p01_at(d, pulse=10.0, i=0.95) == approx(0.2584, rel=1e-3)
    # longer pulses and more current write better
    assert p01_at(d, pulse=50.0, i=0.95) < p01_at(d, pulse=10.0, i=0.95)
    assert p01_at(d, pulse=10.0, i=0.97) < p01_at(d, pulse=10.0, i=0.95)


def test_stt_write_error_thermal_regime_temperature(tmp_path: Path) -> None:
    knobs = {"temp": ratio_knob(0.0, 100.0, 27.0, unit="degC")}
    d = make_device(tmp_path, knobs, p01={
        "kind": "stt_write_error", "pulse_s": 20e-9, "current_ratio": 0.9,
        "temperature_k": "temp", "delta": 40.0, "reference_temperature_k": 300.15})
    for temp_c in (0.0, 27.0, 85.0):
        delta = 40.0 * 300.15 / (temp_c + 273.15)
        tau = 1e-9 * math.exp(delta * 0.1)
        assert p01_at(d, temp=temp_c) == approx(math.exp(-20e-9 / tau), rel=1e-12)
    # a hot cell has a lower barrier, switches faster, fails to write less often
    assert p01_at(d, temp=85.0) < p01_at(d, temp=0.0)


def test_stt_write_error_precessional_regime(tmp_path: Path) -> None:
    knobs = {"pulse": ratio_knob(1.0, 20.0, 10.0, unit="ns"),
             "i": ratio_knob(1.0, 3.0, 1.5)}
    d = make_device(tmp_path, knobs, p01={
        "kind": "stt_write_error", "pulse_s": "pulse", "current_ratio": "i", "delta": 60.0,
        "temperature_k": 300.0, "precession_time_s": 1e-9})

    def precessional(t: float, i: float, delta: float = 60.0, tau_d: float = 1e-9) -> float:
        return (math.pi**2 * delta / 4.0) * ((i - 1.0) / i) * math.exp(-2.0 * (i - 1.0) * t
                                                                        / tau_d)

    # (π²·60/4)·(1/3)·e^(-10) ≈ 2.24e-3
    assert p01_at(d, pulse=10.0, i=1.5) == approx(precessional(10e-9, 1.5), rel=1e-12)
    assert p01_at(d, pulse=10.0, i=1.5) == approx(2.2404e-3, rel=1e-3)
    for pulse, i in ((5.0, 2.0), (20.0, 1.2), (8.0, 3.0)):
        expected = precessional(pulse * 1e-9, i)
        assert expected < 1.0
        assert p01_at(d, pulse=pulse, i=i) == approx(expected, rel=1e-12)
    # short pulses: the formula exceeds 1 and is capped
    assert precessional(2e-9, 1.5) > 1.0
    assert p01_at(d, pulse=2.0, i=1.5) == 1.0
    assert p01_at(d, pulse=1.0, i=1.5) == 1.0


# ---------------------------------------------------------------------------------------------
# dram_leakage


def dram_leakage(t: float, temp: float, vdd: float, *, capacitance_ff: float,
                 median_leakage_a: float, reference_temperature_k: float,
                 activation_energy_ev: float, sigma_ln_leakage: float) -> float:
    leak = median_leakage_a * math.exp(
        -activation_energy_ev / K_B_EV * (1.0 / temp - 1.0 / reference_temperature_k))
    charge = capacitance_ff * 1e-15 * vdd / 2.0
    return float(norm.cdf((math.log(t) - math.log(charge / leak)) / sigma_ln_leakage))


DRAM = {"capacitance_ff": 18.0, "median_leakage_a": 1e-17, "reference_temperature_k": 300.0,
        "activation_energy_ev": 0.5, "sigma_ln_leakage": 2.0}


def dram_device(tmp_path: Path) -> Device:
    knobs = {"refresh": ratio_knob(16.0, 4000.0, 64.0, unit="ms"),
             "temp": ratio_knob(0.0, 100.0, 45.0, unit="degC"),
             "vdd": ratio_knob(1000.0, 1500.0, 1350.0, unit="mV")}
    return make_device(tmp_path, knobs, p01={
        "kind": "dram_leakage", "refresh_s": "refresh", "temperature_k": "temp",
        "vdd_v": "vdd", **DRAM})


def test_dram_leakage_formula(tmp_path: Path) -> None:
    d = dram_device(tmp_path)
    for refresh, temp_c, vdd_mv in ((64.0, 45.0, 1350.0), (1000.0, 20.0, 1350.0),
                                    (2000.0, 70.0, 1200.0), (4000.0, 100.0, 1000.0)):
        expected = dram_leakage(refresh * 1e-3, temp_c + 273.15, vdd_mv * 1e-3, **DRAM)
        assert p01_at(d, refresh=refresh, temp=temp_c, vdd=vdd_mv) == approx(
            expected, rel=1e-9)
    # at T_ref the median retention time is C·V/2/I_ref: 18 fF · 0.675 V / 1e-17 A = 1215 s
    t_median = 18e-15 * 1.35 / 2.0 / 1e-17
    assert dram_leakage(t_median, 300.0, 1.35, **DRAM) == approx(0.5, rel=1e-12)
    z = (math.log(2.0) - math.log(t_median)) / 2.0
    assert p01_at(d, refresh=2000.0, temp=300.0 - 273.15, vdd=1350.0) == approx(
        norm.cdf(z), rel=1e-9)


def test_dram_leakage_grows_with_refresh_time_and_temperature(tmp_path: Path) -> None:
    d = dram_device(tmp_path)
    by_refresh = [p01_at(d, refresh=r) for r in (16.0, 64.0, 256.0, 1000.0, 4000.0)]
    assert all(a < b for a, b in itertools.pairwise(by_refresh))
    by_temp = [p01_at(d, refresh=1500.0, temp=t) for t in (0.0, 20.0, 45.0, 70.0, 100.0)]
    assert all(a < b for a, b in itertools.pairwise(by_temp))
    # lower supply: less charge to lose, more failures
    assert p01_at(d, vdd=1000.0) > p01_at(d, vdd=1500.0)


# ---------------------------------------------------------------------------------------------
# provenance of curves


def test_schema_normalisation_defaults_add_no_unspecified_tag(tmp_path: Path) -> None:
    """probit `maximum`, exponential/power `reference`: defaults that are normalisations."""
    d = make_device(tmp_path, X, p01={
        "kind": "probit", "of": "x", "provenance": "derived", "source": "hand",
        "mean": 1.0, "sigma": 0.1}, read_energy={
        "kind": "power", "of": "x", "coefficient": {"value": 0.1, "provenance": "simulated"},
        "exponent": {"value": 2, "provenance": "assumed"}})
    op = d.at()
    assert op.mechanisms[0].provenance == ("derived",)
    assert op.provenance == ("derived",)
    assert op.energy.provenance["read_energy_pj_per_bit"] == ("simulated", "assumed")

    e = make_device(tmp_path, X, p01={
        "kind": "exponential", "of": "x", "coefficient": {"value": 1e-3, "provenance": "measured"},
        "rate": {"value": -1.0, "provenance": "measured"}})
    assert e.at().mechanisms[0].provenance == ("measured",)


def test_untagged_numbers_and_assumed_schema_defaults_are_reported(tmp_path: Path) -> None:
    untagged = make_device(tmp_path, X, p01={"kind": "probit", "of": "x", "mean": 1.0,
                                             "sigma": 0.1})
    assert untagged.at().mechanisms[0].provenance == ("unspecified",)
    # neel_arrhenius without attempt_time_s / reference temperature: an assumed 1 ns, 300 K
    defaulted = make_device(tmp_path, X, p01={
        "kind": "neel_arrhenius", "provenance": "derived", "time_s": 1.0,
        "temperature_k": 300.0, "delta": 40.0})
    assert defaulted.at().mechanisms[0].provenance == ("derived", "assumed")


# ---------------------------------------------------------------------------------------------
# table2d


XY = {"x": ratio_knob(1.0, 3.0, 2.0), "t": {"unit": "s", "role": "environment",
                                          "nominal": 10.0, "range": [1.0, 1000.0],
                                          "scale": "log"}}
GRID = {"kind": "table2d", "of": ["x", "t"], "x": [1.0, 2.0, 3.0], "y": [1.0, 10.0, 1000.0],
        "values": [[1e-2, 2e-2, 8e-2], [1e-3, 2e-3, 8e-3], [1e-5, 1e-4, 1e-3]]}


def test_table2d_bilinear_by_hand(tmp_path: Path) -> None:
    device = make_device(tmp_path, XY, p01=GRID)
    assert p01_at(device, x=2.0, t=10.0) == approx(2e-3)
    # linear in both: the four corners' average at the centre of a cell
    assert p01_at(device, x=1.5, t=5.5) == approx((1e-2 + 2e-2 + 1e-3 + 2e-3) / 4)
    # along one edge: plain linear interpolation
    assert p01_at(device, x=2.5, t=1.0) == approx((1e-3 + 1e-5) / 2)


def test_table2d_log_scales(tmp_path: Path) -> None:
    grid = {**GRID, "y_scale": "log", "value_scale": "log"}
    device = make_device(tmp_path, XY, p01=grid)
    # log y and log values: halfway between t=10 and 1000 in log is t=100; geometric mean
    assert p01_at(device, x=3.0, t=100.0) == approx(math.sqrt(1e-4 * 1e-3))
    assert p01_at(device, x=1.0, t=math.sqrt(10.0)) == approx(math.sqrt(1e-2 * 2e-2))
    # at the centre of a cell: the geometric mean of the four corners
    v = p01_at(device, x=1.5, t=100.0)
    assert v == approx((2e-2 * 8e-2 * 2e-3 * 8e-3) ** 0.25)


def test_table2d_clamp_and_range(tmp_path: Path) -> None:
    narrow = {**GRID, "x": [1.5, 2.0, 3.0]}
    with pytest.raises(SpecError, match="outside the table's grid"):
        make_device(tmp_path, XY, p01=narrow)
    clamped = make_device(tmp_path, XY, p01={**narrow, "clamp": True})
    assert p01_at(clamped, x=1.0, t=1.0) == approx(1e-2)


@pytest.mark.parametrize(("change", "message"), [
    ({"of": ["x"]}, "expected two knob names"),
    ({"of": ["x", "x"]}, "two different knobs"),
    ({"of": ["x", "temp"]}, "unknown knob 'temp'"),
    ({"x": [1.0, 3.0, 2.0]}, "strictly increasing"),
    ({"values": [[1e-2, 2e-2, 8e-2], [1e-3, 2e-3, 8e-3]]}, "expected 3 rows"),
    ({"values": [[1e-2, 2e-2], [1e-3, 2e-3, 8e-3], [1e-5, 1e-4, 1e-3]]}, "expected 3 values"),
    ({"value_scale": "log", "values": [[0.0, 2e-2, 8e-2], [1e-3, 2e-3, 8e-3],
                                       [1e-5, 1e-4, 1e-3]]}, "values > 0"),
    ({"values": [[1e-2, 2e-2, 1.5], [1e-3, 2e-3, 8e-3], [1e-5, 1e-4, 1e-3]]}, "probability"),
])
def test_table2d_errors_name_the_field(tmp_path: Path, change: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(SpecError) as err:
        make_device(tmp_path, XY, p01={**GRID, **change})
    assert message in str(err.value)
    assert "faults[0].p_zero_to_one" in str(err.value)
