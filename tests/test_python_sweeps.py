"""Sweeps driven from Python: devices given as documents or `Device` objects, models as torch
modules, give the results of the same sweep from YAML files; what cannot reach a worker is
refused by name."""

from __future__ import annotations

import copy
import importlib
import json
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import memsim
from memsim.errors import SpecError
from memsim.experiments.executors import ExecutorError, PoolExecutor
from memsim.experiments.models import RunnerError
from memsim.experiments.runner import run_experiment
from memsim.experiments.store import ResultStore
from memsim.spec.experiment import MEMORY_DEVICE, load_experiment, parse_experiment
from memsim.spec.loader import load_device_document

_USER_MODULE = "pysweep_usermodels_for_memsim_test"
_MODEL_CODE = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_net(hidden: int = 8) -> Net:
    return Net(hidden)
"""

_SHIFTED = """\
schema_version: 1
extends: sram-14nm
name: sram-14nm-shifted
faults:
  - name: undervolt
    fault_fraction: {mean: {value: 0.74}}
"""

_BODY = """\
schema_version: 1
name: from-python
seed: 5
data: {name: digits, test_images: 60}
scenarios:
  - {name: nominal}
devices:
  - {device: DUT1, sweep: {v_rel: [0.78, 0.85, 1.0]}}
  - {device: DUT2, sweep: {read_current_rel: [0.5, 0.9]}}
placements:
  - name: all
  - name: edges
    fixed:
      - {name: sram, device: sram-14nm, layers: [first, last], knobs: {v_rel: 1.0}}
chips: {batch: 2, min: 2, max: 4, target_half_width: 0.02}
trials: 2
deployment: always-on
"""


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with a model module (importable by pool workers) and its trained weights."""
    folder = tmp_path_factory.mktemp("pysweep")
    (folder / f"{_USER_MODULE}.py").write_text(_MODEL_CODE, encoding="utf-8")
    (folder / "shifted.yaml").write_text(_SHIFTED, encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        um = importlib.import_module(_USER_MODULE)
        torch.manual_seed(3)
        net = um.make_net(hidden=8)
        torch.save(net.state_dict(), folder / "net.pt")
        yield folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(_USER_MODULE, None)


def _yaml_config(folder: Path) -> Path:
    text = _BODY.replace("DUT1", "shifted.yaml").replace("DUT2", "stt-mram-22nm") + \
        textwrap.dedent(f"""\
        models:
          - name: mine
            torch_model: {{builder: "{_USER_MODULE}:make_net", args: {{hidden: 8}},
                           weights: net.pt}}
            ptq: {{weight_bits: 4}}
        """)
    path = folder / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _python_document(folder: Path) -> dict[str, Any]:
    """The same experiment built in Python: an edited document, a `Device`, a module."""
    import yaml

    document = yaml.safe_load(_BODY)
    shifted = load_device_document("sram-14nm")
    shifted["name"] = "sram-14nm-shifted"
    shifted["faults"][0]["fault_fraction"]["mean"]["value"] = 0.74
    document["devices"][0]["device"] = shifted
    document["devices"][1]["device"] = memsim.load_device("stt-mram-22nm")
    um = importlib.import_module(_USER_MODULE)
    net = um.make_net(hidden=8)
    net.load_state_dict(torch.load(folder / "net.pt", weights_only=True))
    document["models"] = [{"name": "mine", "module": net, "ptq": {"weight_bits": 4}}]
    return document


def _outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes()
            for name in ("results.csv", "pareto.csv", "budgets.csv", "paired.csv")}


def test_a_sweep_from_python_equals_the_same_sweep_from_yaml(user_folder: Path,
                                                               tmp_path: Path) -> None:
    from_yaml = run_experiment(load_experiment(_yaml_config(user_folder)), tmp_path / "yaml",
                               executor="inprocess", progress=False, allow_code=True)
    import matplotlib.pyplot as plt

    plt.switch_backend("svg")  # as a notebook's inline backend: a sweep must leave it alone
    document = _python_document(user_folder)
    before = copy.deepcopy({k: v for k, v in document.items() if k != "devices"
                            and k != "models"})
    # the pool's spawned workers import the model's class from its module, as a script's would
    try:
        from_python = run_experiment(document, tmp_path / "python",
                                     executor=PoolExecutor(2), progress=False)
        assert plt.get_backend() == "svg" and not plt.get_fignums()  # nothing shown there
    finally:
        plt.switch_backend("agg")
    assert {k: v for k, v in document.items() if k not in ("devices", "models")} == before
    assert from_python.cells == from_yaml.cells
    assert len(from_python.cells) == 2 * (3 + 2)
    assert _outputs(tmp_path / "python") == _outputs(tmp_path / "yaml")
    # the same evaluations, keyed alike: a device given in memory hashes as its file does
    with ResultStore.for_reading(tmp_path / "yaml" / "results.sqlite") as a, \
            ResultStore.for_reading(tmp_path / "python" / "results.sqlite") as b:
        assert set(a.keys()) == set(b.keys())
    manifest = json.loads((tmp_path / "python" / "manifest.json").read_text(encoding="utf-8"))
    devices = manifest["config"]["devices"]
    assert devices[0]["device"]["name"] == "sram-14nm-shifted"  # the document, recorded
    assert devices[1]["device"]["name"] == "stt-mram-22nm"  # the Device's document
    assert manifest["config"]["models"][0]["module"] == f"<python {_USER_MODULE}.Net>"
    assert manifest["devices"]["sram-14nm-shifted"]["file"] == MEMORY_DEVICE
    # a Python sweep reprices like any other: its config re-parses from the manifest
    streamed = memsim.results(tmp_path / "python", overrides=["deployment=streamed"])
    assert len(streamed) == len(from_python.cells)
    assert list(streamed["energy_pj"]) != [c.energy_pj for c in from_python.cells]


def test_a_float_module_without_ptq_and_a_non_module_are_refused(tmp_path: Path) -> None:
    base = {"schema_version": 1, "data": {"name": "digits", "test_images": 20},
            "devices": [{"device": "sram-14nm", "sweep": {"v_rel": [0.9]}}], "chips": 1,
            "deployment": "always-on"}
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(RunnerError, match=r"model f: a float module needs ptq"):
        run_experiment({**base, "models": [{"name": "f", "module": net}]}, tmp_path / "a",
                       executor="inprocess", progress=False)
    with pytest.raises(SpecError, match=r"models\[0\]\.module: expected a torch.nn.Module"):
        parse_experiment({**base, "models": [{"name": "f", "module": "net.pt"}]})
    with pytest.raises(SpecError, match=r"models\[0\]\.module: a module is evaluated on the "
                                        r"experiment's data"):
        parse_experiment({**{k: v for k, v in base.items() if k != "data"},
                          "models": [{"name": "f", "module": net, "ptq": {"weight_bits": 4}}]})


def test_the_callers_module_is_left_as_it_was(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    results = run_experiment({
        "schema_version": 1, "data": {"name": "digits", "test_images": 20},
        "models": [{"name": "f", "module": net, "ptq": {"weight_bits": 2}}],
        "devices": [{"device": "sram-14nm", "sweep": {"v_rel": [0.9]}}], "chips": 1,
        "deployment": "always-on"}, tmp_path / "out", executor="inprocess", progress=False)
    assert len(results.cells) == 1
    assert net.training and type(net[1]) is nn.Linear
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def _experiment_with(device: Any) -> dict[str, Any]:
    return {"schema_version": 1, "data": {"name": "digits", "test_images": 20},
            "models": [{"name": "f", "module": nn.Linear(64, 10), "ptq": {"weight_bits": 4}}],
            "devices": [{"device": device, "sweep": {"v_rel": [0.9]}}], "chips": 1,
            "deployment": "always-on"}


def test_devices_that_cannot_be_recorded_are_refused() -> None:
    loaded = memsim.load_device("sram-14nm")
    bare = memsim.Device(loaded.spec)
    with pytest.raises(SpecError, match=r"devices\[0\]\.device: sram-14nm: a Device built from "
                                        r"a DeviceSpec alone has no document"):
        parse_experiment(_experiment_with(bare))
    changed = memsim.Device(replace(loaded.spec, description="edited"), loaded.document)
    with pytest.raises(SpecError, match=r"no longer matches its document"):
        parse_experiment(_experiment_with(changed))
    with pytest.raises(SpecError, match=r"devices\[0\]\.device: expected a device name or "
                                        r"file, a device document"):
        parse_experiment(_experiment_with(3.5))


def test_a_device_document_is_validated_with_paths_inside_the_experiment() -> None:
    document = load_device_document("sram-14nm")
    document["faults"][0]["fault_fraction"]["sigma"]["value"] = -1.0
    with pytest.raises(SpecError) as e:
        parse_experiment(_experiment_with(document))
    assert "devices[0].device.faults[0].fault_fraction.sigma" in str(e.value)
    # extends: a built-in parent, merged as a file's would be
    child = {"extends": "sram-14nm", "name": "sram-child", "description": "a child"}
    spec = parse_experiment(_experiment_with(child))
    ref = spec.devices[0].device
    assert ref.name == "sram-child" and ref.path == MEMORY_DEVICE
    assert ref.document["knobs"] == load_device_document("sram-14nm")["knobs"]


def test_an_edited_document_builds_a_device() -> None:
    document = load_device_document("sram-14nm")
    document["faults"][0]["fault_fraction"]["mean"]["value"] = 0.74
    edited = memsim.Device.from_document(document)
    original = memsim.load_device("sram-14nm")
    assert edited.at(v_rel=0.8).fault_fraction > 1.5 * original.at(v_rel=0.8).fault_fraction
    assert load_device_document("sram-14nm") == original.document  # a copy was edited
    with pytest.raises(SpecError, match=r"<memory>: faults\[0\]\.fault_fraction\.mean"):
        document["faults"][0]["fault_fraction"]["mean"]["value"] = "high"
        memsim.Device.from_document(document)


def test_notebook_classes_are_refused_for_pool_workers_by_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from memsim.experiments.executors import _pickled

    cls = type("NotebookNet", (nn.Module,), {"__module__": "__main__"})
    context = {"model": cls()}
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # no __file__
    with pytest.raises(ExecutorError, match=r"NotebookNet is defined in a notebook or "
                                            r"interactive session, which pool workers cannot "
                                            r"import: move it into a module file"):
        _pickled(context, "pool")
    assert _pickled({"x": 1}, "pool")  # plain contexts pickle
    with pytest.raises(ExecutorError, match=r"NotebookNet is defined in the main script, "
                                            r"which ray workers cannot import"):
        _pickled(context, "ray")
    local = {"f": lambda x: x}
    with pytest.raises(ExecutorError, match=r"cannot be sent to pool workers"):
        _pickled(local, "pool")
