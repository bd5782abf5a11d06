"""A user copies a catalogue file, changes a couple of numbers, and gets a new technology."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import memsim
from memsim.memory import Chip, MemoryImage
from memsim.spec.loader import builtin_device_files

NAMES = sorted(builtin_device_files())


def _scale_energy(node: Any, factor: float) -> Any:
    """The read-energy curve with its leading number scaled (a constant, a value or a
    coefficient)."""
    if isinstance(node, int | float) and not isinstance(node, bool):
        return node * factor
    if isinstance(node, dict):
        for key in ("value", "coefficient"):
            if key in node:
                return {**node, key: _scale_energy(node[key], factor)}
        if node.get("kind") == "table":
            return {**node, "points": [[x, y * factor] for x, y in node["points"]]}
    raise AssertionError(f"unexpected energy curve {node!r}")


@pytest.mark.parametrize("name", NAMES)
def test_a_copy_with_two_numbers_changed_validates_and_runs(name: str, tmp_path: Path) -> None:
    source = builtin_device_files()[name]
    doc = yaml.safe_load(source.read_text())
    if "extends" in doc:  # a preset: copy what it extends, resolved relative to the catalogue
        doc["extends"] = str(source.parent / doc["extends"]) if (
            source.parent / doc["extends"]).is_file() else doc["extends"]
    doc["name"] = f"my-{name}"
    original = memsim.load_device(name)
    energy = doc.get("energy", {}).get("read_energy_pj_per_bit")
    if energy is not None:
        doc["energy"]["read_energy_pj_per_bit"] = _scale_energy(energy, 2.0)
    path = tmp_path / f"my-{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    device = memsim.load_device(path)
    assert device.name == f"my-{name}"
    if energy is not None:
        assert device.at().read_energy_pj_per_bit == pytest.approx(
            2.0 * original.at().read_energy_pj_per_bit)
    image = MemoryImage.from_bytes(np.random.default_rng(0).bytes(512))
    result = Chip.for_image(device, image, seed=1).read(image, seed=2)
    assert result.image.n_bits == image.n_bits


def test_the_readme_worked_example(tmp_path: Path) -> None:
    doc = yaml.safe_load(builtin_device_files()["sram-14nm"].read_text())
    doc["name"] = "my-sram"
    probit = doc["faults"][0]["fault_fraction"]
    probit["mean"] = 0.75
    probit["sigma"] = 0.04
    path = tmp_path / "my-sram.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    mine, base = memsim.load_device(path), memsim.load_device("sram-14nm")
    # a higher mean critical voltage: more faults at every voltage
    assert mine.at(v_rel=0.85).fault_fraction > base.at(v_rel=0.85).fault_fraction
