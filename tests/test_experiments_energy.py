"""Energy per inference: a hand-computed SRAM figure, nominal ratio, provenance, checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import MINIMAL_DEVICE

import memsim
from memsim.experiments.energy import (
    EnergyError,
    MemoryUse,
    inference_energy,
)
from memsim.memory import MemoryImage, Protection, protect
from memsim.memory.protection import EccScheme, ProtectionOverhead

WriteYaml = Callable[..., Path]

def _measured_device() -> str:
    """The toy device with measured energy figures, but for an assumed refresh power."""
    doc = yaml.safe_load(MINIMAL_DEVICE)
    doc.update(name="toy-measured", description="A device whose energy figures are measured, "
               "but for an assumed refresh power.",
               source=[{"id": "bench", "citation": "a bench measurement, made up for tests"}])
    doc["faults"][0]["p_zero_to_one"] = 1.0e-4
    doc["energy"] = {
        "scope": "array", "provenance": "measured", "source": "bench",
        "read_energy_pj_per_bit": {"kind": "table", "of": "vdd",
                                   "points": [[0.5, 0.02], [1.0, 0.08]]},
        "write_energy_pj_per_bit": 1.0, "static_power_mw_per_mib": 5.0,
        "refresh_power_mw_per_mib": {"value": 2.0, "provenance": "assumed"}}
    return str(yaml.safe_dump(doc, sort_keys=False))


MEASURED_DEVICE = _measured_device()


def sram_image_overhead() -> ProtectionOverhead:
    """1000 4-bit two's complement weights, sign bits protected, SEC-DED (72, 64)."""
    weights = np.random.default_rng(0).integers(-8, 8, size=1000)
    image = MemoryImage.pack({"w": (weights, "twos_complement", 4)})
    return protect(image, Protection(protected_msbs=1, ecc=EccScheme("secded-72-64"))).overhead


def test_hand_computed_sram_energy_at_085_with_ecc_protected_signs_and_static_power() -> None:
    o = sram_image_overhead()
    # Bits: 1000 sign bits in the reliable bank; 1000 · 3 = 3000 data bits in the SRAM, in
    # ceil(3000 / 64) = 47 codewords of 72 bits = 3384 stored bits: 47 · 8 = 376 check bits
    # and 3384 − 3000 − 376 = 8 padding bits.
    assert (o.faulty_data_bits, o.check_bits, o.padding_bits, o.reliable_bits) == \
        (3000, 376, 8, 1000)
    device = memsim.load_device("sram-14nm")
    use = MemoryUse(o, at=device.at(v_rel=0.85), nominal=device.at(),
                    capacity_mib=1 / 1024, reliable_capacity_mib=1 / 8192)
    result = inference_energy(use, inference_time_s=1e-6)

    # Read energy 0.015625 · 0.85² = 0.015625 · 0.7225 = 0.0112890625 pJ/bit at 0.85 Vmin,
    # 0.015625 pJ/bit at nominal (the reliable bank). Static power 28 · 0.85³ = 28 · 0.614125
    # = 17.1955 mW/MiB at 0.85, 28 mW/MiB at nominal.
    read = 3000 * 0.0112890625  # 33.8671875
    check = 376 * 0.0112890625  # 4.24468750
    padding = 8 * 0.0112890625  # 0.0903125
    reliable = 1000 * 0.015625  # 15.625
    # 1 µs · (17.1955 mW/MiB · 1/1024 MiB + 28 mW/MiB · 1/8192 MiB) in mJ, · 1e9 pJ/mJ
    # = 1000 · (0.01679248046875 + 0.00341796875) = 16.79248046875 + 3.41796875
    static = 16.79248046875 + 3.41796875  # 20.21044921875
    total = 33.8671875 + 4.2446875 + 0.0903125 + 15.625 + 20.21044921875  # 74.03763671875
    b = result.breakdown
    assert b.read_pj == pytest.approx(read, rel=1e-12)
    assert b.check_read_pj == pytest.approx(check, rel=1e-12)
    assert b.padding_read_pj == pytest.approx(padding, rel=1e-12)
    assert b.reliable_read_pj == pytest.approx(reliable, rel=1e-12)
    assert b.static_pj == pytest.approx(static, rel=1e-12)
    assert b.refresh_pj == 0.0  # SRAM has no refresh
    assert result.total_pj == pytest.approx(74.03763671875, rel=1e-12)
    assert total == pytest.approx(74.03763671875, rel=1e-15)

    # Nominal: 3384 · 0.015625 = 52.875 in the SRAM, 15.625 reliable, static
    # 1000 · (28/1024 + 28/8192) = 27.34375 + 3.41796875 = 30.76171875; total 99.26171875.
    assert result.nominal_pj == pytest.approx(99.26171875, rel=1e-12)
    assert result.relative_to_nominal == pytest.approx(74.03763671875 / 99.26171875, rel=1e-12)

    # The reads agree with the protection layer's own figure.
    assert b.read_pj + b.check_read_pj + b.padding_read_pj + b.reliable_read_pj == \
        pytest.approx(o.read_energy_pj(device.at(v_rel=0.85), device.at()), rel=1e-12)
    # sram-14nm's CV² exponent and V³ leakage are assumed.
    assert result.assumed
    assert result.assumed_figures == (
        "sram-14nm: read_energy_pj_per_bit", "sram-14nm reliable bank: read_energy_pj_per_bit",
        "sram-14nm: static_power_mw_per_mib", "sram-14nm reliable bank: static_power_mw_per_mib")
    assert result.provenance == ("simulated", "assumed")


def test_defaults_reads_per_inference_and_several_memories() -> None:
    o = sram_image_overhead()
    device = memsim.load_device("sram-14nm")
    at, nominal = device.at(v_rel=0.8), device.at()
    fitted = inference_energy(MemoryUse(o, at, nominal), 2e-6)
    # default capacities: exactly the stored and reliable bits
    static = 2e-6 * 1e9 * (at.energy.static_power_mw_per_mib * 3384
                           + 28.0 * 1000) / (8 * 2**20)
    assert fitted.breakdown.static_pj == pytest.approx(static, rel=1e-12)

    twice = inference_energy(MemoryUse(o, at, nominal, reads_per_inference=2.0), 2e-6)
    assert twice.breakdown.read_pj == pytest.approx(2 * fitted.breakdown.read_pj, rel=1e-12)
    assert twice.breakdown.reliable_read_pj == \
        pytest.approx(2 * fitted.breakdown.reliable_read_pj, rel=1e-12)
    assert twice.breakdown.static_pj == fitted.breakdown.static_pj

    both = inference_energy([MemoryUse(o, at, nominal, name="layer1"),
                             MemoryUse(o, nominal, nominal, name="layer2")], 2e-6)
    assert len(both.per_memory) == 2
    assert both.per_memory[0] == fitted.breakdown
    assert both.total_pj == pytest.approx(fitted.total_pj + fitted.nominal_pj, rel=1e-12)
    assert both.nominal_pj == pytest.approx(2 * fitted.nominal_pj, rel=1e-12)
    assert both.assumed_figures[0] == "layer1: read_energy_pj_per_bit"


def test_write_energy_amortised_over_the_inferences_one_programming_serves() -> None:
    o = sram_image_overhead()  # 3384 stored bits, 1000 in the reliable bank
    device = memsim.load_device("sram-14nm")
    at, nominal = device.at(v_rel=0.85), device.at()
    reads = inference_energy(MemoryUse(o, at, nominal), 0.0)
    assert reads.breakdown.write_pj == 0.0 and reads.per_memory[0].write_pj == 0.0
    written = inference_energy(MemoryUse(o, at, nominal, writes_per_inference=1e-3), 0.0)
    # write 0.2640625 · 0.85² = 0.190785156 pJ/bit at 0.85 Vmin, 0.2640625 at nominal:
    # (3384 · 0.19078515625 + 1000 · 0.2640625) / 1000 = (645.6169688 + 264.0625) / 1000
    assert written.breakdown.write_pj == pytest.approx(0.9096794688, rel=1e-9)
    assert written.total_pj == pytest.approx(reads.total_pj + 0.9096794688, rel=1e-9)
    # at nominal: 4384 bits at 0.2640625 pJ/bit / 1000
    assert written.nominal.write_pj == pytest.approx(4384 * 0.2640625 / 1000, rel=1e-12)
    assert "sram-14nm: write_energy_pj_per_bit" in written.assumed_figures
    assert "sram-14nm: write_energy_pj_per_bit" not in reads.assumed_figures
    with pytest.raises(EnergyError, match="writes_per_inference must be finite and >= 0"):
        MemoryUse(o, at, nominal, writes_per_inference=-1.0)


def test_refresh_and_provenance_of_a_measured_device(write_yaml: WriteYaml) -> None:
    device = memsim.load_device(write_yaml(MEASURED_DEVICE))
    o = ProtectionOverhead(data_bits=8192, faulty_data_bits=8192, check_bits=0,
                           padding_bits=0, reliable_bits=0)
    at, nominal = device.at(vdd=0.75), device.at()
    # 0.05 pJ/bit at 0.75 V (linear table between 0.02 and 0.08)
    reads_only = inference_energy(MemoryUse(o, at, nominal), inference_time_s=0.0)
    assert reads_only.total_pj == pytest.approx(8192 * 0.05, rel=1e-12)
    assert reads_only.relative_to_nominal == pytest.approx(0.05 / 0.08, rel=1e-12)
    assert not reads_only.assumed and reads_only.provenance == ("measured",)

    # 1 ms over 1 MiB: static 5 mW · 1 ms = 5e-3 mJ = 5e6 pJ; refresh 2 mW · 1 ms = 2e6 pJ
    timed = inference_energy(MemoryUse(o, at, nominal, capacity_mib=1.0), 1e-3)
    assert timed.breakdown.static_pj == pytest.approx(5e6, rel=1e-12)
    assert timed.breakdown.refresh_pj == pytest.approx(2e6, rel=1e-12)
    assert timed.assumed_figures == ("toy-measured: refresh_power_mw_per_mib",)
    assert timed.provenance == ("measured", "assumed")


def test_bare_numbers_count_as_assumed(write_yaml: WriteYaml) -> None:
    device = memsim.load_device(write_yaml(MINIMAL_DEVICE))
    o = ProtectionOverhead(64, 64, 0, 0, 0)
    result = inference_energy(MemoryUse(o, device.at(vdd=0.5), device.at()), 0.0)
    assert result.assumed and result.provenance == ("unspecified",)
    assert result.total_pj == pytest.approx(64 * 0.1 * 0.25, rel=1e-12)


def test_inconsistent_inputs_are_refused() -> None:
    o = sram_image_overhead()
    device = memsim.load_device("sram-14nm")
    at, nominal = device.at(v_rel=0.9), device.at()
    with pytest.raises(EnergyError, match=r"capacity_mib=0.0001 MiB cannot hold 3384 bits"):
        MemoryUse(o, at, nominal, capacity_mib=1e-4)
    with pytest.raises(EnergyError, match="reliable_capacity_mib"):
        MemoryUse(o, at, nominal, reliable_capacity_mib=1e-6)
    with pytest.raises(EnergyError, match="reads_per_inference"):
        MemoryUse(o, at, nominal, reads_per_inference=-1.0)
    other = memsim.Device(dataclasses.replace(device.spec, name="other"))
    with pytest.raises(EnergyError, match="nominal point is of device 'other'"):
        MemoryUse(o, at, other.at())
    with pytest.raises(EnergyError, match="inference_time_s"):
        inference_energy(MemoryUse(o, at, nominal), -1.0)
    with pytest.raises(EnergyError, match="at least one memory"):
        inference_energy([], 1.0)
