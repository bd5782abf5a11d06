"""Property tests of the config loaders on malformed input, as test_fuzz_loader.py does for
device files: loading an experiment or training config either gives a spec or raises a
`MemsimError` whose every problem is one line. No other exception type may escape, whatever
the document holds."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    Doc,
    all_paths,
    assert_one_line,
    container_paths,
    deleted,
    extra_keys,
    inserted,
    replaced,
    values,
    write_doc,
    yaml_values,
)

from memsim.errors import MemsimError, SpecError
from memsim.spec.experiment import load_experiment
from memsim.spec.loader import read_yaml
from memsim.spec.training import load_training

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(deadline=None, max_examples=30,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _training_base() -> Doc:
    return {"schema_version": 1, "name": "fuzzed", "seed": 3, "data": {"name": "digits"},
            "model": {"name": "mlp", "weight_bits": 2, "binary_activations": False,
                      "options": {"width_multiplier": 0.125}},
            "loss": {"kind": "mcel", "margin": 32, "bound": 100},
            "optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 2, "batch_size": 64}


EXPERIMENTS: dict[str, Doc] = {name: read_yaml(ROOT / "configs" / f"{name}.yaml")
                               for name in ("quickstart", "fashionmnist-vgg3")}
TRAINING: dict[str, Doc] = {"mlp": _training_base()}


def _load(loader: Callable[[Path], Any], doc: Any) -> None:
    """Load `doc` from a file; the contract: a spec, or a MemsimError of one-line problems."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_doc(Path(folder) / "config.yaml", doc)
        try:
            loader(path)
        except MemsimError as e:
            problems = [str(p) for p in e.problems] if isinstance(e, SpecError) else [str(e)]
            assert problems
            for text in problems:
                assert_one_line(text)


@st.composite
def mutated(draw: st.DrawFn, base: Doc) -> Doc:
    """`base` with a few fields replaced or deleted, or keys inserted into its mappings."""
    doc = base
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "insert":
            where = draw(st.sampled_from(container_paths(doc)))
            doc = inserted(doc, where, draw(extra_keys), draw(values))
            continue
        paths = list(all_paths(doc))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        doc = deleted(doc, path) if action == "delete" else replaced(doc, path, draw(values))
    return doc


def test_the_bases_load() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write_doc(Path(folder) / "c.yaml", EXPERIMENTS["quickstart"])
        assert load_experiment(path).models
        path = write_doc(Path(folder) / "t.yaml", TRAINING["mlp"])
        assert load_training(path).name == "fuzzed"


@FUZZ
@given(yaml_values)
def test_arbitrary_documents(doc: Any) -> None:
    _load(load_experiment, doc)
    _load(load_training, doc)


@FUZZ
@pytest.mark.parametrize("base", sorted(EXPERIMENTS))
@given(data=st.data())
def test_mutated_experiment_configs(base: str, data: st.DataObject) -> None:
    _load(load_experiment, data.draw(mutated(EXPERIMENTS[base])))


@FUZZ
@given(data=st.data())
def test_mutated_training_configs(data: st.DataObject) -> None:
    _load(load_training, data.draw(mutated(TRAINING["mlp"])))


@settings(FUZZ, max_examples=20)
@given(st.lists(st.text(max_size=30), max_size=4))
def test_arbitrary_overrides(overrides: list[str]) -> None:
    path = ROOT / "configs" / "quickstart.yaml"
    try:
        load_experiment(path, overrides)
    except MemsimError as e:
        for text in ([str(p) for p in e.problems] if isinstance(e, SpecError) else [str(e)]):
            assert_one_line(text)
