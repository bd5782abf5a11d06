"""Data sets: the built-in digits split and synthetic generator, and readers for files on disk.

Every reader test writes a tiny data set in the real on-disk format into tmp_path and reads it
back exactly; every error test checks that the one-line message names what was wrong.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import os
import pickle
import struct
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.io
import torch
from numpy.typing import NDArray
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from memsim.errors import MemsimError
from memsim.workloads.data import (
    CIFAR10_CLASSES,
    DATASET_NAMES,
    FASHION_MNIST_CLASSES,
    DataError,
    DataSplit,
    load_dataset,
    make_loader,
    make_synthetic,
    read_idx,
    restricted_unpickle,
)

RNG_SEED = 20240611


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def _unit(raw: NDArray[np.uint8]) -> torch.Tensor:
    """What a reader must return for raw 8-bit pixels with standardise=False."""
    return torch.from_numpy(raw.astype(np.float32)) / 255.0


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_valid_names_and_a_hint() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar-10")
    message = str(info.value)
    assert "did you mean 'cifar10'" in message
    for name in DATASET_NAMES:
        assert name in message
    assert "\n" not in message
    assert isinstance(info.value, MemsimError)


def test_disk_data_sets_need_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs a data directory"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("svhn", tmp_path / "nowhere")


def test_image_size_is_refused_where_the_size_is_fixed(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fixed size"):
        load_dataset("cifar10", tmp_path, image_size=32)
    with pytest.raises(DataError, match="positive integer"):
        load_dataset("imagefolder", tmp_path, image_size=0)


# ---------------------------------------------------------------------------------------------
# Digits
# ---------------------------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_deterministic() -> None:
    first = load_dataset("digits")
    second = load_dataset("Digits", seed=99)  # the seed does not move the split
    assert (len(first.train), len(first.test)) == (1437, 360)
    assert first.input_shape == (1, 8, 8)
    assert first.num_classes == 10
    assert first.train.images.dtype == torch.float32
    assert first.train.labels.dtype == torch.int64
    for a, b in ((first.train, second.train), (first.test, second.test)):
        assert torch.equal(a.images, b.images)
        assert torch.equal(a.labels, b.labels)
    train_counts = torch.bincount(first.train.labels, minlength=10)
    test_counts = torch.bincount(first.test.labels, minlength=10)
    share = (train_counts + test_counts).double() * 360 / 1797
    assert torch.all((test_counts.double() - share).abs() < 1.0), (test_counts, share)


def test_digits_normalisation_uses_training_statistics() -> None:
    raw = load_dataset("digits", standardise=False)
    std = load_dataset("digits")
    values = raw.train.images * 16
    assert torch.equal(values, values.round())
    # Pins the split itself: a change of numpy's streams or of the split code would move it.
    assert int(values.sum()) == 449585 and int((raw.test.images * 16).sum()) == 112133
    assert raw.test.labels[:6].tolist() == [3, 2, 3, 1, 4, 1]
    assert float(raw.train.images.min()) == 0.0 and float(raw.train.images.max()) == 1.0
    assert raw.normalisation.mean == (0.0,) and raw.normalisation.std == (1.0,)
    mean, sd = std.normalisation.mean[0], std.normalisation.std[0]
    assert mean == pytest.approx(float(raw.train.images.double().mean()), abs=1e-9)
    assert sd == pytest.approx(float(raw.train.images.double().std(correction=0)), abs=1e-9)
    assert float(std.train.images.double().mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(std.train.images.double().std(correction=0)) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(std.normalisation.to_unit(std.test.images), raw.test.images)


# ---------------------------------------------------------------------------------------------
# Synthetic
# ---------------------------------------------------------------------------------------------


def test_synthetic_is_seeded_balanced_and_shaped() -> None:
    a = make_synthetic(num_classes=3, shape=(2, 5, 7), train_size=31, test_size=10, seed=4)
    b = make_synthetic(num_classes=3, shape=(2, 5, 7), train_size=31, test_size=10, seed=4)
    c = make_synthetic(num_classes=3, shape=(2, 5, 7), train_size=31, test_size=10, seed=5)
    longer = make_synthetic(num_classes=3, shape=(2, 5, 7), train_size=40, test_size=10,
                            seed=4, standardise=False)
    unscaled = make_synthetic(num_classes=3, shape=(2, 5, 7), train_size=31, test_size=10,
                              seed=4, standardise=False)
    assert a.input_shape == (2, 5, 7) and a.num_classes == 3
    assert torch.equal(a.train.images, b.train.images)
    assert torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert torch.bincount(a.train.labels).tolist() == [11, 10, 10]
    # Separate streams: a larger training split leaves the test split as it was.
    assert torch.equal(longer.test.images, unscaled.test.images)


def test_synthetic_is_learnable_by_a_linear_classifier() -> None:
    data = load_dataset("synthetic", seed=3)
    assert data.input_shape == (1, 8, 8)

    def features(images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1).double()
        return torch.cat([flat, torch.ones(len(flat), 1, dtype=flat.dtype)], dim=1)

    # Least squares onto one-hot targets: a linear classifier in closed form.
    targets = torch.nn.functional.one_hot(data.train.labels, data.num_classes).double()
    weights = torch.linalg.lstsq(features(data.train.images), targets).solution
    predicted = (features(data.test.images) @ weights).argmax(dim=1)
    accuracy = float((predicted == data.test.labels).double().mean())
    assert accuracy > 0.9, accuracy  # chance is 0.1


@pytest.mark.parametrize("kwargs", [
    {"num_classes": 1}, {"shape": (1, 0, 8)}, {"shape": (8, 8)}, {"train_size": 0},
    {"noise_std": -1.0}, {"noise_std": float("nan")},
])
def test_synthetic_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(DataError, match="synthetic"):
        make_synthetic(**kwargs)


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------


def _order(loader: Any) -> list[int]:
    return [int(i) for _, labels in loader for i in labels]


def test_loader_shuffles_deterministically_per_seed() -> None:
    n = 50
    split = DataSplit(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1),
                      torch.arange(n, dtype=torch.int64))
    first, second = make_loader(split, 8, seed=1), make_loader(split, 8, seed=1)
    epochs = [_order(first), _order(first)]
    assert epochs == [_order(second), _order(second)]
    assert all(sorted(e) == list(range(n)) for e in epochs)
    assert epochs[0] != epochs[1] != list(range(n))
    assert _order(make_loader(split, 8, seed=2)) != epochs[0]
    for images, labels in make_loader(split, 8, seed=1):
        assert torch.equal(images.view(-1), labels.float())  # pairs stay together
    plain = make_loader(split, 8, shuffle=False)
    assert _order(plain) == list(range(n))
    assert [len(y) for _, y in plain] == [8] * 6 + [2]
    assert len(plain) == 7 and len(make_loader(split, 8, drop_last=True)) == 6
    assert [len(y) for _, y in make_loader(split, 8, drop_last=True)] == [8] * 6
    with pytest.raises(DataError, match="batch size"):
        make_loader(split, 0)


def test_split_checks_its_tensors() -> None:
    with pytest.raises(ValueError, match="float32"):
        DataSplit(torch.zeros(2, 1, 2), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="3 labels"):
        DataSplit(torch.zeros(2, 1, 2, 2), torch.zeros(3, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# A split is a torch Dataset
# ---------------------------------------------------------------------------------------------


def _small_split() -> DataSplit:
    # 30 samples: batches of 7 end with a partial one
    return make_synthetic(num_classes=3, shape=(2, 3, 4), train_size=30, test_size=5,
                          seed=4).train


def test_a_split_is_a_torch_dataset_and_the_bundle_is_not() -> None:
    data = make_synthetic(num_classes=3, shape=(2, 3, 4), train_size=30, test_size=5)
    assert isinstance(data.train, TorchDataset) and isinstance(data.test, TorchDataset)
    assert not isinstance(data, TorchDataset)
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.train.images = data.test.images  # type: ignore[misc]


def test_split_items_are_image_label_pairs() -> None:
    split = _small_split()
    for i in (0, 1, 17, len(split) - 1):
        image, label = split[i]
        assert image.dtype == torch.float32 and image.shape == (2, 3, 4)
        assert label.dtype == torch.int64 and label.dim() == 0
        assert torch.equal(image, split.images[i]) and int(label) == int(split.labels[i])


def test_split_indices_behave_like_a_tensors() -> None:
    split = _small_split()
    n = len(split)
    for negative, positive in ((-1, n - 1), (-n, 0), (-7, n - 7)):
        image, label = split[negative]
        assert torch.equal(image, split.images[positive])
        assert torch.equal(label, split.labels[positive])
    for out_of_range in (n, n + 3, -n - 1):
        with pytest.raises(IndexError):
            split.images[out_of_range]
        with pytest.raises(IndexError):
            split[out_of_range]


def test_a_torch_dataloader_yields_the_batches_of_make_loader() -> None:
    split = _small_split()
    plain = list(DataLoader(split, batch_size=7, shuffle=False))
    ours = list(make_loader(split, 7, shuffle=False))
    assert [len(y) for _, y in plain] == [7, 7, 7, 7, 2]
    assert len(plain) == len(ours)
    for (x_plain, y_plain), (x_ours, y_ours) in zip(plain, ours, strict=True):
        assert x_plain.dtype == x_ours.dtype == torch.float32
        assert y_plain.dtype == y_ours.dtype == torch.int64
        assert torch.equal(x_plain, x_ours) and torch.equal(y_plain, y_ours)


def test_importing_the_data_package_does_not_import_pillow_or_mlxtend() -> None:
    probe = ("import memsim.workloads.data, sys; "
             "print('PIL' in sys.modules, 'mlxtend' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                          text=True)
    assert done.stdout.strip() == "False False"


# ---------------------------------------------------------------------------------------------
# MNIST / FashionMNIST (IDX)
# ---------------------------------------------------------------------------------------------


def _idx_bytes(array: NDArray[np.uint8]) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def _write_idx(path: Path, array: NDArray[np.uint8]) -> None:
    data = _idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _write_mnist(folder: Path, *, gz: bool, n_train: int = 7, n_test: int = 4,
                 rows: int = 5, cols: int = 3) -> dict[str, NDArray[np.uint8]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng()
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        _write_idx(folder / (stem + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files_exactly(tmp_path: Path, gz: bool) -> None:
    arrays = _write_mnist(tmp_path, gz=gz)
    data = load_dataset("mnist", tmp_path, standardise=False)
    assert data.input_shape == (1, 5, 3)
    assert torch.equal(data.train.images, _unit(arrays["train-images-idx3-ubyte"][:, None]))
    assert torch.equal(data.test.images, _unit(arrays["t10k-images-idx3-ubyte"][:, None]))
    assert data.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    standardised = load_dataset("mnist", tmp_path)
    mean, std = standardised.normalisation.mean[0], standardised.normalisation.std[0]
    torch.testing.assert_close(standardised.test.images, (data.test.images - mean) / std)


def test_fashion_mnist_is_found_in_torchvisions_layout(tmp_path: Path) -> None:
    arrays = _write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    data = load_dataset("fashion_mnist", tmp_path, standardise=False)
    assert data.classes == FASHION_MNIST_CLASSES
    assert data.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert str(tmp_path / "FashionMNIST" / "raw") == data.source


def test_mnist_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "nothing is downloaded" in message
    for stem in ("train-images-idx3-ubyte[.gz]", "t10k-labels-idx1-ubyte[.gz]"):
        assert stem in message
    _write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("mnist", tmp_path)


def _corrupt_train_images(folder: Path, data: bytes) -> Path:
    _write_mnist(folder, gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(data)
    return path


def test_idx_errors(tmp_path: Path) -> None:
    images = _rng().integers(0, 256, (7, 5, 3), dtype=np.uint8)
    good = _idx_bytes(images)
    cases = {
        "wrong dimension count 1 (magic 0x00000801), expected 3 (magic 0x00000803)":
            _idx_bytes(images[0, 0]),
        "bad magic number 0x00000d03": b"\x00\x00\x0d\x03" + good[4:],
        "wrong dimension count 2": _idx_bytes(images[0]),
        "truncated: 104 data bytes, expected 105": good[:-1],
        "1 bytes after the data": good + b"\x00",
        "shorter than the 16-byte header": good[:10],
        "shorter than the IDX magic": good[:2],
    }
    for expected, data in cases.items():
        path = _corrupt_train_images(tmp_path, data)
        with pytest.raises(DataError) as info:
            load_dataset("mnist", tmp_path)
        assert expected in str(info.value)
        assert str(path) in str(info.value)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good)  # not gzip at all
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("mnist", tmp_path)
    with gzip.open(tmp_path / "t.gz", "wb") as f:
        f.write(good)
    (tmp_path / "cut.gz").write_bytes((tmp_path / "t.gz").read_bytes()[:-12])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "cut.gz", ndim=3)


def test_mnist_label_errors(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(6, dtype=np.uint8))
    with pytest.raises(DataError, match="6 labels but train-images-idx3-ubyte has 7 images"):
        load_dataset("mnist", tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(7, 10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels out of range: expected 0\.\.9, got 10\.\.10"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (pickles)
# ---------------------------------------------------------------------------------------------


# The pure-Python pickler: its dispatch table can be overridden, the C one's cannot.
_PurePickler: Any = getattr(pickle, "_Pickler")  # noqa: B009 (private, untyped)


class _Py2Pickler(_PurePickler):  # type: ignore[misc]
    """Writes what Python 2's cPickle wrote for CIFAR-10: byte strings as BINSTRING and numpy
    under its old module name ``numpy.core``."""

    dispatch: ClassVar[dict[type, Any]] = dict(_PurePickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        name = name or obj.__qualname__
        module = str(obj.__module__).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str
    dispatch[types.FunctionType] = save_global
    dispatch[type] = save_global


def _cifar_batch(rng: np.random.Generator, n: int) -> dict[str, Any]:
    return {"batch_label": "training batch", "labels": rng.integers(0, 10, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(n)]}


def _write_cifar(folder: Path, *, style: str = "py2") -> dict[str, dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: _cifar_batch(rng, 2 + i % 3) for i, name in enumerate(names)}
    for name, batch in batches.items():
        with open(folder / name, "wb") as f:
            if style == "py2":
                _Py2Pickler(f, protocol=2).dump(batch)
            else:
                pickle.dump(batch, f, protocol=int(style))
    return batches


@pytest.mark.parametrize("style", ["py2", "2", "4", "5"])
def test_cifar10_reads_batches_exactly(tmp_path: Path, style: str) -> None:
    batches = _write_cifar(tmp_path / "cifar-10-batches-py", style=style)
    data = load_dataset("cifar10", tmp_path, standardise=False)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    raw = np.concatenate([b["data"] for b in train]).reshape(-1, 3, 32, 32)
    assert torch.equal(data.train.images, _unit(raw))
    assert data.train.labels.tolist() == [y for b in train for y in b["labels"]]
    test = batches["test_batch"]
    assert torch.equal(data.test.images, _unit(test["data"].reshape(-1, 3, 32, 32)))
    assert data.test.labels.tolist() == test["labels"]
    # Channel planes: the green value of pixel (row 2, column 5) is byte 1024 + 2·32 + 5.
    assert float(data.test.images[1, 1, 2, 5]) * 255 == pytest.approx(test["data"][1, 1093])
    assert data.classes == CIFAR10_CLASSES
    assert data.input_shape == (3, 32, 32)


def test_cifar10_reads_class_names_from_the_meta_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    names = [f"class {i}" for i in range(10)]
    with open(tmp_path / "batches.meta", "wb") as f:
        _Py2Pickler(f, protocol=2).dump({"label_names": names, "num_vis": 3072})
    assert load_dataset("cifar10", tmp_path).classes == tuple(names)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({"data": _Evil(marker), "labels": [0]}, f, protocol=2)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", tmp_path)
    assert "refused to unpickle" in str(info.value) and "system" in str(info.value)
    assert "data_batch_3" in str(info.value)
    assert not marker.exists()


def test_restricted_unpickle_allows_only_the_latin1_codec() -> None:
    evil = pickle.dumps(types.SimpleNamespace(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"types\.SimpleNamespace"):
        restricted_unpickle(evil)

    class Rot13:
        def __reduce__(self) -> tuple[Any, ...]:
            return (codecs.encode, ("abc", "rot13"))

    with pytest.raises(pickle.UnpicklingError, match="rot13"):
        restricted_unpickle(pickle.dumps(Rot13(), protocol=2))
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 3, 4, 5):
        back = restricted_unpickle(pickle.dumps({"a": array, "s": np.uint8(7)}, protocol))
        assert np.array_equal(back["a"], array) and back["s"] == 7


def test_cifar10_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no cifar10 files .*cifar-10-batches-py.*data_batch_1"):
        load_dataset("cifar10", tmp_path)
    _write_cifar(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch; expected data_batch_1, "):
        load_dataset("cifar10", tmp_path)
    rng = _rng()
    cases: dict[str, Any] = {
        r"'data' must be a uint8 array of shape \(N, 3072\), got uint8 array of shape \(2, 3071\)":
            {"data": np.zeros((2, 3071), np.uint8), "labels": [0, 1]},
        "3 labels but 2 images": {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1, 2]},
        "labels out of range": {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]},
        "no 'labels' entry": {"data": np.zeros((2, 3072), np.uint8)},
        "expected a pickled dict": [1, 2],
        "not a list of integers": {"data": np.zeros((1, 3072), np.uint8), "labels": ["x"]},
    }
    for expected, content in cases.items():
        (tmp_path / "test_batch").write_bytes(pickle.dumps(content, protocol=2))
        with pytest.raises(DataError, match=expected):
            load_dataset("cifar10", tmp_path)
    (tmp_path / "test_batch").write_bytes(rng.integers(0, 256, 64, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="test_batch: not a readable pickle"):
        load_dataset("cifar10", tmp_path)
    good = pickle.dumps(_cifar_batch(rng, 3), protocol=2)
    (tmp_path / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="test_batch: not a readable pickle"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------------------------------------
# SVHN (.mat)
# ---------------------------------------------------------------------------------------------


def _write_svhn(folder: Path, n_train: int = 5, n_test: int = 3,
                side: int = 4) -> dict[str, tuple[NDArray[np.uint8], NDArray[np.uint8]]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng()
    out = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, (side, side + 1, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1), dtype=np.uint8)
        y[0, 0] = 10
        scipy.io.savemat(folder / name, {"X": x, "y": y})
        out[name] = (x, y)
    return out


def test_svhn_reads_mat_files_exactly(tmp_path: Path) -> None:
    written = _write_svhn(tmp_path)
    data = load_dataset("svhn", tmp_path, standardise=False)
    assert data.input_shape == (3, 4, 5)
    for split, name in ((data.train, "train_32x32.mat"), (data.test, "test_32x32.mat")):
        x, y = written[name]
        assert torch.equal(split.images, _unit(x.transpose(3, 2, 0, 1)))
        assert split.labels.tolist() == [int(v) % 10 for v in y[:, 0]]
        assert split.labels[0] == 0  # label 10 is the digit 0
    x = written["test_32x32.mat"][0]
    assert float(data.test.images[2, 1, 3, 4]) * 255 == pytest.approx(x[3, 4, 1, 2])


def test_svhn_errors(tmp_path: Path) -> None:
    _write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"missing test_32x32\.mat; expected train_32x32\.mat"):
        load_dataset("svhn", tmp_path)
    path = tmp_path / "test_32x32.mat"
    x = np.zeros((4, 5, 3, 2), np.uint8)
    cases: dict[str, dict[str, Any]] = {
        r"labels out of range: SVHN labels are integers 1\.\.10": {"X": x, "y": [[0], [3]]},
        "3 labels in y but 2 images in X": {"X": x, "y": [[1], [2], [3]]},
        "no variable 'X'": {"Z": x, "y": [[1], [2]]},
        "X must be a uint8": {"X": x[:, :, :2], "y": [[1], [2]]},
    }
    for expected, content in cases.items():
        scipy.io.savemat(path, content)
        with pytest.raises(DataError, match=expected):
            load_dataset("svhn", tmp_path)
    path.write_bytes(b"not a MATLAB file at all" * 10)
    with pytest.raises(DataError, match=r"test_32x32\.mat: not a readable MATLAB v5 file"):
        load_dataset("svhn", tmp_path)


# ---------------------------------------------------------------------------------------------
# Image folders (Imagenette)
# ---------------------------------------------------------------------------------------------


def _write_png(path: Path, pixels: NDArray[np.uint8]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_image_folder_reads_images_exactly(tmp_path: Path) -> None:
    rng = _rng()
    layout = {("train", "dog"): 2, ("train", "cat"): 3, ("val", "cat"): 1, ("val", "dog"): 2}
    written: dict[tuple[str, str], list[NDArray[np.uint8]]] = {}
    for (split, cls), count in layout.items():
        written[(split, cls)] = []
        for i in range(count):
            pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            _write_png(tmp_path / split / cls / f"{i}.{'PNG' if i else 'png'}", pixels)
            written[(split, cls)].append(pixels)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = load_dataset("imagefolder", tmp_path, image_size=6, standardise=False)
    assert data.classes == ("cat", "dog")  # sorted
    assert data.input_shape == (3, 6, 6)
    for got, part in ((data.train, "train"), (data.test, "val")):
        expected = written[(part, "cat")] + written[(part, "dog")]
        assert got.labels.tolist() == [0] * len(written[(part, "cat")]) + [1] * len(
            written[(part, "dog")])
        assert torch.equal(got.images, _unit(np.stack(expected).transpose(0, 3, 1, 2)))


def test_image_folder_resizes_the_shorter_side_and_crops_the_centre(tmp_path: Path) -> None:
    # 8 high × 24 wide: left, middle and right thirds in three colours; at 4×4 only the middle
    # third survives the centre crop.
    pixels = np.zeros((8, 24, 3), dtype=np.uint8)
    pixels[:, :8] = (255, 0, 0)
    pixels[:, 8:16] = (0, 200, 0)
    pixels[:, 16:] = (0, 0, 255)
    for split in ("train", "test"):
        _write_png(tmp_path / split / "a" / "wide.png", pixels)
        Image.fromarray(pixels[:, :, 1]).save(tmp_path / split / "a" / "grey.png")
    data = load_dataset("imagefolder", tmp_path, image_size=4, standardise=False)
    assert data.input_shape == (3, 4, 4)
    wide = data.train.images[1] * 255  # files are sorted: grey.png, wide.png
    assert torch.allclose(wide[1, :, 1:3], torch.full((4, 2), 200.0), atol=0.5)
    assert float(wide[0, :, 1:3].max()) < 1 and float(wide[2, :, 1:3].max()) < 1
    grey = data.train.images[0] * 255
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # grey → RGB


def test_imagenette_names_its_classes_and_defaults_to_64_pixels(tmp_path: Path) -> None:
    root = tmp_path / "imagenette2-160"
    colour = np.array([30, 120, 210], dtype=np.uint8)
    pixels = np.tile(colour, (160, 213, 1))
    for split in ("train", "val"):
        for wnid in ("n03888605", "n01440764"):
            (root / split / wnid).mkdir(parents=True)
            Image.fromarray(pixels).save(root / split / wnid / "x.JPEG", quality=95)
    data = load_dataset("imagenette", tmp_path, standardise=False)
    assert data.classes == ("tench", "parachute")
    assert data.input_shape == (3, 64, 64)
    assert data.train.labels.tolist() == [0, 1]
    expected = torch.from_numpy(colour.astype(np.float32)).view(1, 3, 1, 1)
    assert float((data.test.images * 255 - expected).abs().max()) <= 3  # JPEG rounding


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no imagefolder files in .*expected train/<class>"):
        load_dataset("imagefolder", tmp_path)
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    _write_png(tmp_path / "train" / "a" / "0.png", pixels)
    with pytest.raises(DataError, match=r"missing val/ \(or test/\)"):
        load_dataset("imagefolder", tmp_path)
    _write_png(tmp_path / "val" / "b" / "0.png", pixels)
    with pytest.raises(DataError, match=r"class folder\(s\) b are not in train/"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "train" / "b").mkdir()
    with pytest.raises(DataError, match=r"train/b: no \.jpg, \.jpeg or \.png images"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: not a readable image"):
        load_dataset("imagefolder", tmp_path)
