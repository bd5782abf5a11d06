"""Experiment configs: parsing, defaults, the built-in configs, one-line errors with paths."""

from __future__ import annotations

import argparse
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sweeps import STORAGE_VARIANTS

from memsim.errors import SpecError
from memsim.experiments.aggregation import aggregate
from memsim.experiments.commands import add_commands
from memsim.spec.deployment import DEPLOYMENT_PRESETS
from memsim.spec.experiment import (
    NOMINAL_SCENARIO,
    ModelSourceKind,
    ReferenceMemory,
    UnknownConfigError,
    builtin_config_files,
    config_dir,
    load_experiment,
    parse_experiment,
    resolve_config_path,
)
from memsim.spec.training import LossKind

WriteYaml = Callable[..., Path]

CONFIG = """\
schema_version: 1
name: toy-sweep
seed: 7
data: {name: digits, test_images: 100}
models:
  - name: q4
    train:
      model: {name: mlp, weight_bits: 4, options: {width_multiplier: 0.125}}
      loss: {kind: mcel, margin: 4, bound: 10}
      epochs: 1
devices:
  - device: sram-14nm
    sweep: {v_rel: [1.0, 0.9]}
  - device: stt-mram-22nm
    label: stt
    sweep: {write_pulse_ns: [10, 5], read_current_rel: [0.5, 0.3, 0.4]}
    knobs: {read_pulse_ns: 4}
    scenarios: [hot]
scenarios:
  - name: typical
  - name: hot
    knobs: {temperature_c: 85}
""" + STORAGE_VARIANTS + """\
    interleave: 2
chips: {batch: 2, min: 4, max: 10, target_half_width: 0.02}
trials: 2
deployment: {preset: custom, weights: resident, inference_rate_hz: 1.0e6,
             inferences_per_write: 1.0e12, reads_per_inference: 2}
pareto: {budgets_points: [0.5, 1, 2]}
"""


def test_a_full_config_parses(write_yaml: WriteYaml) -> None:
    spec = load_experiment(write_yaml(CONFIG, "sweep.yaml"))
    assert spec.name == "toy-sweep" and spec.seed == 7 and spec.trials == 2
    assert spec.data is not None and spec.data.test_images == 100
    (model,) = spec.models
    assert model.kind is ModelSourceKind.TRAIN and model.train is not None
    # an inline training config gets the model's name and the experiment's data
    assert model.train.name == "q4" and model.train.data.name == "digits"
    assert model.train.loss.kind is LossKind.MCEL
    sram, stt = spec.devices
    assert sram.label == "sram-14nm" and sram.scenarios == ("typical", "hot")
    assert stt.label == "stt" and stt.scenarios == ("hot",) and stt.knobs == {"read_pulse_ns": 4}
    assert len(sram.device.spec_hash) == 64 and sram.device.spec_hash != stt.device.spec_hash
    assert spec.scenario("hot").knobs == {"temperature_c": 85.0}
    assert spec.placements[1].fixed[0].layers == ("first", "last")
    assert spec.protections[1].to_dict() == {"protected_msbs": 0, "ecc": "secded-72-64",
                                             "interleave": 2, "on_uncorrectable": "leave"}
    rule = spec.chips
    assert rule.adaptive and (rule.batch, rule.min_chips, rule.max_chips) == (2, 4, 10)
    assert spec.deployment.reads_per_inference == 2 and spec.budgets_points == (0.5, 1.0, 2.0)
    assert spec.deployment.preset == "custom" and spec.deployment.inference_rate_hz == 1e6


def test_operating_points_are_the_grid_in_file_order(write_yaml: WriteYaml) -> None:
    stt = load_experiment(write_yaml(CONFIG, "sweep.yaml")).devices[1]
    points = stt.operating_points()
    assert len(points) == 6  # 2 write pulses x 3 read currents, held knob in each
    assert points[0] == {"read_pulse_ns": 4, "write_pulse_ns": 10, "read_current_rel": 0.5}
    assert [(p["write_pulse_ns"], p["read_current_rel"]) for p in points] == [
        (10, 0.5), (10, 0.3), (10, 0.4), (5, 0.5), (5, 0.3), (5, 0.4)]


def test_defaults_fill_a_minimal_config(write_yaml: WriteYaml) -> None:
    ckpt = write_yaml("not read at parse time", "model.pt")
    spec = load_experiment(write_yaml(f"""\
        schema_version: 1
        models: [{{name: m, checkpoint: {ckpt.name}}}]
        devices: [{{device: sram-14nm}}]
        chips: 3
        deployment: throughput
        """, "minimal.yaml"))
    assert spec.name == "minimal" and spec.seed == 0 and spec.trials == 1
    assert spec.deployment == DEPLOYMENT_PRESETS["throughput"]
    assert spec.reference == ReferenceMemory()  # each device against its own nominal
    assert spec.models[0].checkpoint == str(ckpt)  # relative to the config file
    assert [s.name for s in spec.scenarios] == [NOMINAL_SCENARIO]
    assert [p.name for p in spec.placements] == ["all"] and spec.placements[0].fixed == ()
    assert [p.name for p in spec.protections] == ["none"]
    assert not spec.chips.adaptive and spec.chips.max_chips == 3
    assert spec.devices[0].operating_points() == [{}]  # nominal only
    assert spec.budgets_points == (1.0, 2.0)


def test_all_problems_are_reported_with_paths(write_yaml: WriteYaml) -> None:
    path = write_yaml("""\
        schema_version: 1
        models:
          - name: a
            train: {model: {name: mlp, weight_bitz: 4}}
          - name: b
            checkpoint: missing.pt
          - {name: c, checkpoint: missing.pt, train: {}}
        devices:
          - device: sram-14nm
            sweep: {v_rel: [1.0, 0.5], temp: [1]}
          - device: dram-ddr3-refresh
            sweep: {temperature_c: [20]}
            knobs: {refresh_ms: 64}
            scenarios: [hott]
          - device: sram-14mn
        scenarios: [{name: nominal}, {name: hot}]
        chips: {max: 4, min: 8, target_half_width: 0.01}
        deployment: {preset: always-on, inferences_per_write: 0.5}
        energy: {inference_time_s: 0}
        colour: red
        """, "bad.yaml")
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    lines = [str(p) for p in info.value.problems]
    expected = [
        "models[0].train.model.weight_bitz: unknown field (did you mean 'weight_bits'?)",
        "models[1].checkpoint: no such file",
        "models[2]: expected exactly one of train, checkpoint, torch_model; got train, "
        "checkpoint",
        "devices[0].sweep.temp: sram-14nm has no knob 'temp'",
        "devices[0].sweep.v_rel[1]: v_rel=0.5 is outside its range [0.7, 1] V/Vmin",
        "devices[1].sweep.temperature_c: temperature_c is an environment knob of "
        "dram-ddr3-refresh; sweep control knobs only",
        "devices[1].scenarios[0]: unknown scenario 'hott' (did you mean 'hot'?)",
        "devices[2].device: unknown device 'sram-14mn' (did you mean 'sram-14nm'?)",
        "chips.min: expected at most max (4), got 8",
        "energy: the energy section is now `deployment:`",
        "deployment.inferences_per_write: expected a number in [1, inf], got 0.5",
        "colour: unknown field",
    ]
    for text in expected:
        assert any(line.startswith(f"{path}: {text}") for line in lines), (text, lines)
    assert all("\n" not in line for line in lines)


def test_scenario_knobs_are_checked_against_the_devices_that_use_them(
        write_yaml: WriteYaml) -> None:
    base = """\
        schema_version: 1
        models: [{{name: m, checkpoint: m.pt}}]
        devices:
          - {{device: sram-14nm}}
          - {{device: dram-ddr3-refresh, scenarios: [{dram}]}}
        scenarios:
          - {{name: cold}}
          - {{name: hot, knobs: {knobs}}}
        chips: 2
        deployment: throughput
        """
    write_yaml("x", "m.pt")

    def problems(knobs: str, dram: str = "cold, hot") -> list[str]:
        try:
            load_experiment(write_yaml(base.format(knobs=knobs, dram=dram), "s.yaml"))
        except SpecError as e:
            return [p.path + ": " + p.message for p in e.problems]
        return []

    assert problems("{temperature_c: 85}") == []
    assert problems("{temperature_c: 120}") == [
        "scenarios[1].knobs.temperature_c: temperature_c=120 is outside its range [0, 95] "
        "degC (dram-ddr3-refresh)"]
    assert problems("{refresh_ms: 128}") == [
        "scenarios[1].knobs.refresh_ms: refresh_ms is a control knob of dram-ddr3-refresh; "
        "scenarios set environment knobs"]
    assert problems("{temperature_c: 85}", dram="cold") == [
        "scenarios[1].knobs.temperature_c: no device read in scenario 'hot' has a knob "
        "'temperature_c'"]


def test_duplicate_names_and_model_sources(write_yaml: WriteYaml) -> None:
    write_yaml("x", "m.pt")
    write_yaml("x", "w.pt")
    with pytest.raises(SpecError) as info:
        load_experiment(write_yaml("""\
            schema_version: 1
            models:
              - {name: m, checkpoint: m.pt}
              - {name: m, checkpoint: m.pt, ptq: {weight_bits: 4}}
              - {name: u, torch_model: {builder: "not a builder", weights: w.pt}}
            devices: [{device: sram-14nm}, {device: sram-14nm}]
            placements:
              - name: p
                fixed:
                  - {device: sram-14nm, layers: [first]}
                  - {device: sram-14nm, name: other, layers: [first, first]}
            chips: 2
            deployment: throughput
            """, "dup.yaml"))
    lines = {p.path: p.message for p in info.value.problems}
    assert lines["models[1].ptq"].startswith("post-training quantisation applies to a "
                                             "torch_model only")
    assert lines["models[2].torch_model.builder"].startswith("expected package.module:function")
    assert lines["models[2].ptq"].startswith("a torch_model needs ptq")
    assert lines["models[2].torch_model"].startswith("a torch_model is evaluated on the "
                                                     "experiment's data")
    assert lines["placements[0].fixed[1].layers"] == "a layer appears twice"
    with pytest.raises(SpecError) as info:
        load_experiment(write_yaml("""\
            schema_version: 1
            models: [{name: m, checkpoint: m.pt}, {name: m, checkpoint: m.pt}]
            devices: [{device: sram-14nm}, {device: sram-14nm}]
            chips: 2
            deployment: throughput
            """, "dup2.yaml"))
    assert sorted(str(p).split(": ", 1)[1] for p in info.value.problems) == [
        "devices[1]: device label 'sram-14nm' appears twice",
        "models[1]: model 'm' appears twice"]


def test_a_training_config_file_and_relative_device_files(write_yaml: WriteYaml,
                                                          tmp_path: Path) -> None:
    write_yaml("""\
        schema_version: 1
        name: from-file
        model: {name: mlp, weight_bits: 1}
        epochs: 2
        """, "train.yaml")
    (tmp_path / "devs").mkdir()
    write_yaml("extends: sram-14nm\nname: my-sram\ncalibration: []\n", "devs/my-sram.yaml")
    spec = load_experiment(write_yaml("""\
        schema_version: 1
        models: [{name: m, train: train.yaml}]
        devices: [{device: devs/my-sram.yaml, sweep: {v_rel: 0.8}}]
        chips: 2
        deployment: throughput
        """, "exp.yaml"))
    assert spec.models[0].train is not None and spec.models[0].train.name == "from-file"
    entry = spec.devices[0]
    assert entry.device.name == "my-sram" and entry.sweep == (("v_rel", (0.8,)),)
    assert entry.device.path == str(tmp_path / "devs" / "my-sram.yaml")


def test_overrides_apply_before_validation(write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG, "sweep.yaml")
    spec = load_experiment(path, ["trials=5", "chips=3", "data.test_images=10"])
    assert spec.trials == 5 and spec.chips.max_chips == 3 and not spec.chips.adaptive
    assert spec.data is not None and spec.data.test_images == 10
    with pytest.raises(SpecError, match=r"trials: expected an integer in \[1, 65536\], got 0"):
        load_experiment(path, ["trials=0"])


def test_the_built_in_configs_validate() -> None:
    files = builtin_config_files()
    assert {"quickstart", "fashionmnist-vgg3"} <= set(files)
    assert config_dir() == files["quickstart"].parent
    quick = load_experiment("quickstart")
    assert [m.name for m in quick.models] == ["bnn-ce", "bnn-mcel", "qnn4-ce", "qnn4-mcel"]
    assert {m.train.loss.kind for m in quick.models if m.train} == {LossKind.CE, LossKind.MCEL}
    assert not quick.chips.adaptive  # the demo runs a fixed amount of work
    fashion = load_experiment("fashionmnist-vgg3")
    assert fashion.data is not None and fashion.data.name == "fashion-mnist"
    assert all(m.train is not None and m.train.model.name == "vgg3" for m in fashion.models)
    assert resolve_config_path(str(files["quickstart"])) == files["quickstart"]


def test_unknown_configs_get_one_line_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(UnknownConfigError, match=r"unknown experiment config 'quickstrat' "
                                                 r"\(did you mean 'quickstart'\?\)"):
        resolve_config_path("quickstrat")
    with pytest.raises(UnknownConfigError, match="no such file"):
        resolve_config_path(str(tmp_path / "absent.yaml"))
    with pytest.raises(SpecError, match="empty file"):
        (tmp_path / "empty.yaml").write_text("")
        load_experiment(tmp_path / "empty.yaml")
    with pytest.raises(SpecError, match="expected a mapping"):
        parse_experiment([1, 2], "list.yaml")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x800 + array.ndim)
    header += b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_the_fashionmnist_config_dry_runs_on_a_tiny_idx_file(tmp_path: Path) -> None:
    """CI's check of the paper config: validate, build all, evaluate a token amount (no
    accuracy claim) on a synthetic IDX data set written here."""
    data = tmp_path / "fashion"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 12)):
        _write_idx(data / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(data / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    out = tmp_path / "out"
    parser = argparse.ArgumentParser(prog="memsim")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", "fashionmnist-vgg3", "--data-dir", str(data), "--out",
                              str(out), "--dry-run", "--executor", "inprocess",
                              "--no-progress"])
    assert args.func(args) == 0
    results = aggregate(out / "dry-run")
    spec = load_experiment("fashionmnist-vgg3")
    assert results.dry_run and results.complete
    assert len(results.cells) == len(spec.models) * len(spec.devices)
    assert all(c.chips == 1 and c.trials == 1 for c in results.cells)
    assert {c.model for c in results.cells} == {m.name for m in spec.models}
    assert all(results.clean[m].n_test == 12 for m in results.clean)
    assert not (out / "models").exists()  # nothing trained
    assert (out / "dry-run" / "report.md").is_file()
