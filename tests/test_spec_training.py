"""Training configs: parsing, defaults, overrides and one-line errors with field paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from memsim.errors import SpecError
from memsim.spec.training import (
    LossKind,
    MethodKind,
    apply_overrides,
    load_training,
    parse_training,
)

WriteYaml = Callable[..., Path]

CONFIG = """\
schema_version: 1
name: digits-bnn
seed: 3
data: {name: digits}
model: {name: mlp, weight_bits: 1, options: {hidden: [64, 32]}}
loss: {kind: mcel, margin: 16}
method: {kind: bitflip, device: sram-14nm, knobs: {v_rel: 0.85}, chips: 2}
optimizer: {kind: adam, lr: 0.002, schedule: cosine}
epochs: 3
batch_size: 32
"""


def test_a_full_config_parses(write_yaml: WriteYaml) -> None:
    spec = load_training(write_yaml(CONFIG, "train.yaml"))
    assert spec.name == "digits-bnn" and spec.seed == 3
    assert spec.model.weight_bits == 1 and spec.model.options == {"hidden": (64, 32)}
    assert spec.loss.kind is LossKind.MCEL and spec.loss.margin == 16 and spec.loss.bound == 100
    assert spec.method.kind is MethodKind.BITFLIP and spec.method.knobs == {"v_rel": 0.85}
    d = spec.to_dict()
    assert d["loss"]["kind"] == "mcel" and d["model"]["options"]["hidden"] == [64, 32]
    assert "source" not in d
    assert parse_training(d, "again").to_dict() == d  # the record parses back to itself


def test_defaults_fill_a_minimal_config() -> None:
    spec = parse_training({"schema_version": 1, "name": "x"})
    assert spec.loss.kind is LossKind.CE and spec.method.kind is MethodKind.PLAIN
    assert spec.data.name == "digits" and spec.epochs == 10


def test_all_problems_are_reported_with_paths(write_yaml: WriteYaml) -> None:
    path = write_yaml("""\
        schema_version: 1
        name: bad
        model: {weight_bits: 9, schem: symmetric}
        loss: {kind: focal}
        method: {kind: bitflip}
        optimizer: {lr: -1}
        """, "bad.yaml")
    with pytest.raises(SpecError) as info:
        load_training(path)
    text = str(info.value)
    for expected in ("model.weight_bits", "model.schem: unknown field (did you mean 'scheme'",
                     "loss.kind: expected one of ce, mcel, mhl", "method.device",
                     "optimizer.lr"):
        assert expected in text, text
    assert all(str(path) in p.file for p in info.value.problems)


def test_overrides_reach_nested_fields(write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG, "train.yaml")
    spec = load_training(path, ["loss.margin=64", "epochs=1", "method.knobs.v_rel=0.9",
                                "model.options.hidden=[8]"])
    assert spec.loss.margin == 64 and spec.epochs == 1
    assert spec.method.knobs == {"v_rel": 0.9} and spec.model.options["hidden"] == (8,)
    with pytest.raises(SpecError, match=r"key\.path=value"):
        load_training(path, ["epochs"])
    with pytest.raises(SpecError, match="unknown field"):
        load_training(path, ["loss.marign=3"])
    with pytest.raises(SpecError, match="not a mapping"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_relative_data_dir_is_relative_to_the_file(write_yaml: WriteYaml, tmp_path: Path) -> None:
    path = write_yaml("schema_version: 1\nname: x\ndata: {name: mnist, dir: data/mnist}\n",
                      "c.yaml")
    assert load_training(path).data.dir == str(tmp_path / "data" / "mnist")


def test_train_images_keeps_the_first_training_images() -> None:
    from memsim.workloads.training import _dataset

    spec = parse_training({"schema_version": 1, "name": "few",
                           "data": {"name": "digits", "train_images": 100}})
    assert spec.data.train_images == 100
    data = _dataset(spec)
    full = _dataset(parse_training({"schema_version": 1, "name": "all"}))
    assert len(data.train) == 100 and len(data.test) == len(full.test)
    assert torch.equal(data.train.images, full.train.images[:100])
    with pytest.raises(SpecError, match=r"data\.train_images: expected an integer"):
        parse_training({"schema_version": 1, "name": "none", "data": {"train_images": 0}})
