"""Shared fixtures."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

MINIMAL_DEVICE = """\
schema_version: 1
name: toy
technology: custom
description: A toy device for tests.
source:
  - id: none
    citation: "made up for tests"
knobs:
  vdd:
    unit: V
    role: control
    nominal: 1.0
    range: [0.5, 1.0]
faults:
  - name: flips
    kind: transient
    p_zero_to_one: {kind: exponential, of: vdd, coefficient: 1.0e-3, rate: -10, reference: 0.5}
    p_one_to_zero: 1.0e-4
energy:
  scope: cell
  read_energy_pj_per_bit: {kind: power, of: vdd, coefficient: 0.1, exponent: 2, reference: 1.0}
  write_energy_pj_per_bit: 1.0
"""


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a YAML text (dedented) to a file in tmp_path and return its path."""

    def write(text: str, name: str = "device.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for a module's tests (exact float sums, no oversubscription)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_script(path: Path) -> ModuleType:
    """Import a script that is not in a package (benchmarks/, scripts/) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
