"""Shared fixtures."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

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


SMALL_SWEEP_BODY = """\
devices:
  - device: sram-14nm
    sweep: {v_rel: [1.0, 0.8]}
  - device: dram-ddr3-refresh
    sweep: {refresh_ms: [64, 4096]}
  - device: stt-mram-22nm
    sweep: {write_pulse_ns: [10, 4]}
  - device: pcm-mlc
    sweep: {pv_iterations: [3.0, 2.0]}
chips: 2
deployment: always-on
reference: {device: sram-14nm}
"""


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """One small sweep for the whole test run (config, output folder, results): four
    catalogue devices at two knob values each, the golden BNN, two chips, always-on. Tests
    read it; one that changes files works on a copy."""
    from sweeps import golden_checkpoint_file, sweep_config

    from memsim.experiments.runner import run_experiment
    from memsim.spec.experiment import load_experiment

    tmp = tmp_path_factory.mktemp("small-sweep")
    checkpoint = golden_checkpoint_file(tmp / "golden.pt")
    config = sweep_config(tmp, checkpoint, SMALL_SWEEP_BODY)
    results = run_experiment(load_experiment(config), tmp / "out", executor="inprocess",
                             progress=False)
    return config, tmp / "out", results


SMALL_DEMO = ["run", "quickstart", "--dry-run", "--executor", "inprocess", "--no-progress",
              "--set", "scenarios=[{name: typical}]",
              "--set", "devices=[{device: sram-14nm, sweep: {v_rel: [1.0, 0.9]}}]"]
"""A small dry run of the demo's config: one device, one scenario."""


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep folder of `SMALL_DEMO` (the docs' `given memsim-demo: a small dry run`)."""
    import contextlib

    from memsim.cli import main

    out = tmp_path_factory.mktemp("small-demo")
    with contextlib.chdir(out):  # a relative --out: the report quotes a short command
        assert main([*SMALL_DEMO, "--out", "sweep"]) == 0
    return out / "sweep" / "dry-run"


@pytest.fixture(scope="session")
def demo_outputs(request: pytest.FixtureRequest) -> Path:
    """The demo's outputs: CI's `memsim demo` folder when fresh, else `small_demo`."""
    from sweeps import fresh_repo_demo

    fresh = fresh_repo_demo()
    return fresh if fresh is not None else Path(request.getfixturevalue("small_demo"))
