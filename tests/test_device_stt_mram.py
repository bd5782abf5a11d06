"""The built-in STT-MRAM devices against the closed forms and figures of the research notes
(RESEARCH.md, STT-MRAM), re-derived here independently of the YAML files.

The published points are the read disturb per 5 ns read at 0.5 Ic0: 1e-8 at Delta = 40 and
5e-13 at Delta = 60. No feasible number of bits resolves them (1e-8 needs ~1e10 bits for a
x2 check), so they are checked on the operating point, and the chips and kernels are checked
against the same closed forms at knob values where the rates are resolvable with ~1e7 bits:
the chain (closed form -> device.at -> chip) is then exact at the published points too.
Bit 0 is the parallel state P, bit 1 the antiparallel state AP. Statistical checks use fixed
seeds and two-sided binomial bands at alpha = 1e-6.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import pytest
from scipy import stats

import memsim
from memsim import Device
from memsim.cli import main
from memsim.memory.chip import Chip
from memsim.memory.image import MemoryImage
from memsim.spec.curves import SttWriteErrorCurve
from memsim.spec.loader import builtin_device_files
from memsim.spec.mechanisms import TransientMechanism

ALPHA = 1e-6
T0_K = 298.15  # Delta0 is given at 25 degC
TAU0_S = 1e-9  # attempt time
TAU_D_S = 1e-9  # precession time
TEN_YEARS_S = 10 * 365.25 * 86400
DEVICES = ("stt-mram-22nm", "stt-mram-22nm-delta40", "stt-mram-22nm-low-current")
DELTA = {"stt-mram-22nm": 60.0, "stt-mram-22nm-delta40": 40.0, "stt-mram-22nm-low-current": 60.0}
# write current over the critical current of each switching direction
OVERDRIVE = {  # (AP->P: writing 0, P->AP: writing 1)
    "stt-mram-22nm": (80 / 32, 80 / 40),
    "stt-mram-22nm-delta40": (80 / 32, 80 / 40),
    "stt-mram-22nm-low-current": (38 / 32, 38 / 40),
}
# (device, Delta, read disturb per 5 ns read at I_r = 0.5 Ic0, 25 degC)
PUBLISHED_READ_DISTURB = [("stt-mram-22nm", 60, 5e-13), ("stt-mram-22nm-delta40", 40, 1e-8)]


def delta_at(delta0: float, temp_c: float) -> float:
    return delta0 * T0_K / (temp_c + 273.15)


def neel_arrhenius(t_s: float, temp_c: float, delta0: float, i: float = 0.0) -> float:
    """1 - exp(-(t/tau0) exp(-Delta(T)(1 - I/Ic0)))."""
    return -math.expm1(-(t_s / TAU0_S) * math.exp(-delta_at(delta0, temp_c) * (1.0 - i)))


def write_error(t_s: float, i: float, delta0: float, temp_c: float = 25.0) -> float:
    """Thermal regime below Ic0, precessional above (Koch et al. 2004; Sun 2000)."""
    delta = delta_at(delta0, temp_c)
    if i <= 1.0:
        return math.exp(-t_s / (TAU0_S * math.exp(delta * (1.0 - i))))
    return min(1.0, math.pi**2 * delta / 4 * (i - 1) / i * math.exp(-2 * (i - 1) * t_s / TAU_D_S))


def band(n: int, p: float) -> tuple[float, float]:
    low, high = stats.binom.interval(1 - ALPHA, n, p)
    return float(low), float(high)


@pytest.fixture(scope="module")
def devices() -> dict[str, Device]:
    return {name: memsim.load_device(name) for name in DEVICES}


@pytest.fixture(scope="module")
def image() -> MemoryImage:
    data = np.random.default_rng(2024).integers(0, 256, size=1 << 19, dtype=np.uint8)
    return MemoryImage.from_bytes(data.tobytes())  # 2^22 random bits


def ones_in(image: MemoryImage) -> int:
    return int(np.unpackbits(np.frombuffer(image.to_bytes(), dtype=np.uint8)).sum())


def mechanism_counts(device: Device, image: MemoryImage, knobs: Mapping[str, float],
                     mechanism: str, chips: int = 4) -> tuple[int, int, int, int]:
    """(0->1 flips, 1->0 flips, stored 0s, stored 1s) of one mechanism over `chips` chips,
    one trial each."""
    up = down = 0
    for seed in range(chips):
        counts = Chip(device, image.n_bits, seed=seed).read(image, knobs, seed=100 + seed)
        up += counts.mechanisms[mechanism].zero_to_one
        down += counts.mechanisms[mechanism].one_to_zero
    ones = ones_in(image) * chips
    return up, down, image.n_bits * chips - ones, ones


def assert_rate(observed: int, n: int, p: float) -> None:
    """Inside the binomial band of the closed form, and within x2 of it where that is
    resolvable (n·p >= 100 keeps a x2 miss far beyond the band)."""
    low, high = band(n, p)
    assert low <= observed <= high, (observed, n * p, n, p)
    if n * p >= 100:
        assert 0.5 <= observed / (n * p) <= 2.0


# -- the files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEVICES)
def test_file_validates_and_meets_its_calibration(name: str, capsys: pytest.CaptureFixture[str],
                                                  devices: dict[str, Device]) -> None:
    assert main(["devices", "validate", str(builtin_device_files()[name])]) == 0
    assert capsys.readouterr().out.startswith("ok:")
    report = devices[name].calibration_report()
    assert report and all(c.ok for c in report), [(c.knobs, c.published, c.model)
                                                   for c in report]
    spec = devices[name].spec
    roles = {k.name: k.role.value for k in spec.knobs}
    assert roles == {"write_pulse_ns": "control", "read_current_rel": "control",
                     "read_pulse_ns": "control", "temperature_c": "environment",
                     "time_since_write_s": "environment"}


@pytest.mark.parametrize(("name", "delta", "published"), PUBLISHED_READ_DISTURB)
def test_read_disturb_reproduces_the_published_points(devices: dict[str, Device], name: str,
                                                      delta: float, published: float) -> None:
    op = devices[name].at(read_current_rel=0.5, read_pulse_ns=5, temperature_c=25)
    disturb = next(m for m in op.mechanisms if m.name == "read_disturb")
    assert 0.5 <= disturb.p_zero_to_one / published <= 2.0, (disturb.p_zero_to_one, published)
    assert disturb.p_zero_to_one == pytest.approx(neel_arrhenius(5e-9, 25, delta, 0.5), rel=1e-9)
    assert disturb.p_one_to_zero == 0.0


@pytest.mark.parametrize("name", DEVICES)
def test_operating_points_follow_the_closed_forms(devices: dict[str, Device], name: str) -> None:
    device, delta0 = devices[name], DELTA[name]
    pulse = device.spec.knob("write_pulse_ns")
    i0, i1 = OVERDRIVE[name]
    for w, ir, tr, temp, age in itertools.product(
            (pulse.low, pulse.nominal.value, pulse.high), (0.3, 0.7, 0.9), (1.0, 20.0),
            (-40.0, 25.0, 125.0), (1.0, 86400.0, TEN_YEARS_S)):
        op = device.at(write_pulse_ns=w, read_current_rel=ir, read_pulse_ns=tr,
                       temperature_c=temp, time_since_write_s=age)
        m = {f.name: f for f in op.mechanisms}
        assert m["write_errors"].p_zero_to_one == pytest.approx(
            write_error(w * 1e-9, i0, delta0, temp), rel=1e-9, abs=1e-300)
        assert m["write_errors"].p_one_to_zero == pytest.approx(
            write_error(w * 1e-9, i1, delta0, temp), rel=1e-9, abs=1e-300)
        retention = neel_arrhenius(age, temp, delta0)
        assert m["retention"].p_zero_to_one == pytest.approx(retention, rel=1e-9, abs=1e-300)
        assert m["retention"].p_one_to_zero == pytest.approx(retention, rel=1e-9, abs=1e-300)
        assert m["read_disturb"].p_zero_to_one == pytest.approx(
            neel_arrhenius(tr * 1e-9, temp, delta0, ir), rel=1e-9, abs=1e-300)
        assert m["read_disturb"].p_one_to_zero == 0.0


@pytest.mark.parametrize("name", DEVICES)
def test_write_currents_set_the_regimes(devices: dict[str, Device], name: str) -> None:
    """Both directions precessional at 80 uA; at 38 uA P->AP is thermally activated, where
    ln WER falls linearly with the pulse, by 1/tau = 1/(tau0 exp(Delta (1 - I/Ic0)))."""
    mech = devices[name].spec.faults[0]
    assert isinstance(mech, TransientMechanism) and mech.name == "write_errors"
    ratios = []
    for curve in (mech.p_zero_to_one, mech.p_one_to_zero):
        assert isinstance(curve, SttWriteErrorCurve) and curve.current_ratio.constant is not None
        ratios.append(curve.current_ratio.constant.value)
    assert tuple(ratios) == pytest.approx(OVERDRIVE[name], rel=1e-12)
    if name != "stt-mram-22nm-low-current":
        return

    def p10(pulse_ns: float) -> float:
        op = devices[name].at(write_pulse_ns=pulse_ns)
        return next(m for m in op.mechanisms if m.name == "write_errors").p_one_to_zero

    tau_ns = 1.0 * math.exp(60 * (1 - 38 / 40))
    for a, b in ((20.0, 60.0), (60.0, 200.0), (200.0, 500.0)):
        assert math.log(p10(a) / p10(b)) == pytest.approx((b - a) / tau_ns, rel=1e-9)


# -- direction, monotonicity and energy on the operating points ------------------------------


@pytest.mark.parametrize("name", DEVICES)
def test_p_to_ap_write_errors_exceed_ap_to_p_at_every_pulse(devices: dict[str, Device],
                                                            name: str) -> None:
    """P->AP needs the larger critical current, so failed writes of 1 (read as 0) dominate."""
    device = devices[name]
    pulses = device.knob_grid("write_pulse_ns", 40)
    for w in pulses:
        m = next(f for f in device.at(write_pulse_ns=float(w)).mechanisms
                 if f.name == "write_errors")
        assert m.p_one_to_zero > 10 * m.p_zero_to_one, (w, m)
    p10 = [next(f for f in device.at(write_pulse_ns=float(w)).mechanisms
                if f.name == "write_errors").p_one_to_zero for w in pulses]
    assert all(a > b for a, b in itertools.pairwise(p10))  # longer pulse, fewer errors


@pytest.mark.parametrize("name", DEVICES)
def test_error_rates_are_monotone_in_every_knob(devices: dict[str, Device], name: str) -> None:
    device = devices[name]

    def rate(mechanism: str, direction: str, **knobs: float) -> float:
        op = device.at(**knobs)
        return float(getattr(next(m for m in op.mechanisms if m.name == mechanism), direction))

    def increasing(mechanism: str, knob: str, direction: str = "p_zero_to_one",
                   **fixed: float) -> None:
        values = [rate(mechanism, direction, **{knob: float(x)}, **fixed)
                  for x in device.knob_grid(knob, 25)]
        # strictly increasing until the loss saturates at 1 (Delta 40 after years when hot)
        assert all(0 < a < b or a == b == 1.0 for a, b in itertools.pairwise(values)), (
            knob, values)

    increasing("read_disturb", "read_current_rel")
    increasing("read_disturb", "read_pulse_ns", read_current_rel=0.8)
    increasing("read_disturb", "temperature_c")
    increasing("retention", "time_since_write_s")
    increasing("retention", "temperature_c", time_since_write_s=TEN_YEARS_S)
    increasing("retention", "temperature_c", direction="p_one_to_zero")


def test_energies_come_from_the_array_figures(devices: dict[str, Device]) -> None:
    base, relaxed, low = (devices[n] for n in DEVICES)
    op = base.at()
    assert op.read_energy_pj_per_bit == pytest.approx(3.8 / 64, rel=1e-12)
    assert op.write_energy_pj_per_bit == pytest.approx(68.3 / 64, rel=1e-12)
    assert op.energy.static_power_mw_per_mib == pytest.approx(2.1, rel=1e-12)
    # a fixed write current: energy in proportion to the pulse; read energy to the read current
    assert base.at(write_pulse_ns=5).write_energy_pj_per_bit == pytest.approx(
        68.3 / 64 / 2, rel=1e-12)
    assert base.at(read_current_rel=0.3).read_energy_pj_per_bit == pytest.approx(
        3.8 / 64 * 0.6, rel=1e-12)
    # Delta 40: currents and their energies x 2/3
    assert relaxed.at().write_energy_pj_per_bit == pytest.approx(68.3 / 64 * 2 / 3, rel=1e-6)
    assert relaxed.at().read_energy_pj_per_bit == pytest.approx(3.8 / 64 * 2 / 3, rel=1e-5)
    # 38 uA: energy ~ current x pulse
    for w in (20.0, 200.0, 500.0):
        assert low.at(write_pulse_ns=w).write_energy_pj_per_bit == pytest.approx(
            68.3 / 64 * 38 / 80 * w / 10, rel=1e-6)


# -- through chips and kernels ----------------------------------------------------------------


def test_chips_reproduce_precessional_write_errors(devices: dict[str, Device],
                                                   image: MemoryImage) -> None:
    device = devices["stt-mram-22nm"]
    i0, i1 = OVERDRIVE["stt-mram-22nm"]
    downs = []
    for w in (4.0, 5.0, 6.0):
        up, down, zeros, ones = mechanism_counts(device, image, {"write_pulse_ns": w},
                                                 "write_errors")
        assert_rate(up, zeros, write_error(w * 1e-9, i0, 60))
        assert_rate(down, ones, write_error(w * 1e-9, i1, 60))
        assert down > 10 * up  # P->AP (writing 1) fails far more often
        downs.append(down)
    assert downs[0] > downs[1] > downs[2]


def test_chips_reproduce_thermally_activated_writes_and_their_temperature_scaling(
        devices: dict[str, Device], image: MemoryImage) -> None:
    """Below Ic0 the error falls as exp(-t/tau), and faster when hot (tau shrinks with Delta)."""
    device = devices["stt-mram-22nm-low-current"]
    _, i1 = OVERDRIVE["stt-mram-22nm-low-current"]
    observed = {}
    for w, temp in ((60.0, 25.0), (100.0, 25.0), (100.0, 85.0)):
        _, down, _, ones = mechanism_counts(device, image,
                                            {"write_pulse_ns": w, "temperature_c": temp},
                                            "write_errors")
        assert_rate(down, ones, write_error(w * 1e-9, i1, 60, temp))
        observed[w, temp] = down
    assert observed[60.0, 25.0] > observed[100.0, 25.0] > observed[100.0, 85.0]


def test_read_disturb_through_chips_flips_only_zeros(devices: dict[str, Device],
                                                     image: MemoryImage) -> None:
    device = devices["stt-mram-22nm"]
    ups = []
    for current, pulse in ((0.8, 5.0), (0.85, 5.0), (0.85, 10.0), (0.9, 5.0)):
        up, down, zeros, _ = mechanism_counts(
            device, image, {"read_current_rel": current, "read_pulse_ns": pulse},
            "read_disturb", chips=2)
        assert down == 0
        assert_rate(up, zeros, neel_arrhenius(pulse * 1e-9, 25, 60, current))
        ups.append(up)
    assert ups[0] < ups[1] < ups[2] < ups[3]


def test_read_disturb_is_drawn_anew_at_every_read(devices: dict[str, Device],
                                                  image: MemoryImage) -> None:
    device = devices["stt-mram-22nm"]
    chip = Chip(device, image.n_bits, seed=3)
    knobs = {"read_current_rel": 0.85}
    a = chip.read(image, knobs, seed=1).mechanisms
    b = chip.read(image, knobs, seed=2).mechanisms
    assert a["read_disturb"] != b["read_disturb"]
    assert a["write_errors"] == b["write_errors"]  # persistent until rewritten


@pytest.mark.parametrize(("name", "fixed", "knob", "values"), [
    # Delta(T) = 60 * 298.15 K / T: ten years at 85 and at 125 degC (x150)
    ("stt-mram-22nm", {"time_since_write_s": TEN_YEARS_S}, "temperature_c", (85.0, 125.0)),
    # Delta 40 at 25 degC: the loss grows in proportion to the time since the write (x24)
    ("stt-mram-22nm-delta40", {}, "time_since_write_s", (3600.0, 86400.0)),
])
def test_retention_through_chips_scales_with_temperature_and_time(
        devices: dict[str, Device], image: MemoryImage, name: str, fixed: dict[str, float],
        knob: str, values: tuple[float, ...]) -> None:
    device = devices[name]
    lost = []
    for value in values:
        knobs = {**fixed, knob: value}
        up, down, zeros, ones = mechanism_counts(device, image, knobs, "retention", chips=2)
        p = neel_arrhenius(knobs["time_since_write_s"], knobs.get("temperature_c", 25.0),
                           DELTA[name])
        assert_rate(up, zeros, p)  # both directions alike
        assert_rate(down, ones, p)
        lost.append(up + down)
    assert lost[1] > 10 * lost[0]
