"""The types every reader returns and the normalisation they all share.

A reader turns files into raw arrays (uint8 pixels, int64 labels) and hands them to `_finish`,
which is the only place pixels become stored values: divided by their full scale (255 for
8-bit images, 16 for digits) to lie in [0, 1] (synthetic data are left as drawn), then each
channel standardised with the mean and standard deviation of the *training* split, applied
unchanged to the test split. `Dataset.normalisation` records the constants;
``standardise=False`` keeps the [0, 1] values (mean 0, std 1 recorded).

Each `DataSplit` is a ``torch.utils.data.Dataset`` of ``(image, label)`` pairs; a `Dataset` is
memsim's bundle of a training and a test split with their class names, not a torch dataset.
Also here: the file-finding and label checks every disk reader uses, so that their errors read
alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset as TorchDataset

from memsim.errors import MemsimError

MNIST_CLASSES = tuple(str(d) for d in range(10))
"""Class names of the ten digits (digits, MNIST, SVHN)."""


class DataError(MemsimError):
    """A data set that is unknown, missing, or whose files are malformed."""


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class DataSplit(TorchDataset[tuple[torch.Tensor, torch.Tensor]]):
    """One split of a data set: images and their labels, already normalised.

    A map-style ``torch.utils.data.Dataset``: ``split[i]`` is ``(image, label)``, a (C, H, W)
    float32 tensor and a 0-d int64 tensor, indexed as the tensors are (negative indices count
    from the end, an index out of range raises `IndexError`), so ``DataLoader(split, ...)``
    works. `make_loader` is faster: it takes each batch with one indexing of the tensors.
    """

    images: torch.Tensor
    """(N, C, H, W) float32."""
    labels: torch.Tensor
    """(N,) int64 class indices."""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.dim() != 4:
            raise ValueError(f"images must be a float32 (N, C, H, W) tensor, got "
                             f"{self.images.dtype} of shape {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(f"labels must be an int64 (N,) tensor, got {self.labels.dtype} "
                             f"of shape {tuple(self.labels.shape)}")
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return f"DataSplit(n={len(self)}, image_shape={tuple(self.images.shape[1:])})"


@dataclass(frozen=True)
class Normalisation:
    """How raw pixels became the stored values: ``(raw / full_scale - mean[c]) / std[c]``."""

    full_scale: float
    """Raw value that maps to 1 (255 for 8-bit images)."""
    mean: tuple[float, ...]
    """Per channel, of the training split in [0, 1] units."""
    std: tuple[float, ...]
    """Per channel, of the training split in [0, 1] units (population std; 1 if constant)."""

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the standardisation: back to [0, 1] units (for plotting)."""
        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=images.dtype).view(shape)
        std = torch.tensor(self.std, dtype=images.dtype).view(shape)
        return images * std + mean


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named data set with a training and a test split.

    memsim's bundle of two splits, their class names and normalisation; not a torch dataset
    itself (it has no items), but ``train`` and ``test`` each are one (see `DataSplit`).
    """

    name: str
    train: DataSplit
    test: DataSplit
    classes: tuple[str, ...]
    normalisation: Normalisation
    source: str = field(default="")
    """Where it came from (a folder, or the generator and its settings)."""

    def __post_init__(self) -> None:
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise ValueError(f"train images {tuple(self.train.images.shape[1:])} and test "
                             f"images {tuple(self.test.images.shape[1:])} differ in shape")
        for split in (self.train, self.test):
            if len(split) and not 0 <= int(split.labels.min()) <= int(split.labels.max()) \
                    < len(self.classes):
                raise ValueError(f"labels must lie in 0..{len(self.classes) - 1}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------------------------------------
# Finding files and checking what they hold (every disk reader)
# ---------------------------------------------------------------------------------------------


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        if (folder / n).exists():
            return folder / n
    return None


def _locate(name: str, root: Path, subdirs: Sequence[str],
            probe: Callable[[Path], Path | None], shown: str) -> Path:
    """The first of ``root`` and ``root/subdir`` where ``probe`` finds the data set."""
    for folder in (root, *(root / s for s in subdirs)):
        if folder.is_dir() and probe(folder) is not None:
            return folder
    also = f" (nor in {', '.join(s + '/' for s in subdirs)})" if subdirs else ""
    raise DataError(f"{name}: no {name} files in {root}{also}; expected {shown}; "
                    f"nothing is downloaded")


def _check_labels(path: Path, labels: NDArray[np.int64], num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels out of range: expected 0..{num_classes - 1}, got "
                        f"{labels.min()}..{labels.max()}")


def _check_image_size(name: str, image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"{name}: image_size must be a positive integer, got {image_size!r}")
    return image_size


# ---------------------------------------------------------------------------------------------
# Normalisation (every reader)
# ---------------------------------------------------------------------------------------------


def _to_unit_tensor(raw: NDArray[Any], full_scale: float) -> torch.Tensor:
    if not raw.flags.writeable:  # torch.from_numpy warns about read-only arrays (IDX buffers)
        raw = raw.copy()
    out = torch.from_numpy(raw).to(torch.float32, copy=True)
    if full_scale != 1.0:
        out.div_(full_scale)
    return out


def _channel_mean_std(raw: NDArray[Any],
                      full_scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of ``raw / full_scale``, in float64.

    8-bit images go through a histogram: exact, and far faster than a float reduction over
    the (N, H, W) axes of a large set.
    """
    means: list[float] = []
    stds: list[float] = []
    for c in range(raw.shape[1]):
        plane = raw[:, c]
        if plane.dtype == np.uint8:
            counts = np.bincount(plane.ravel(), minlength=256).astype(np.float64)
            values = np.arange(256, dtype=np.float64) / full_scale
            mean = float(counts @ values / counts.sum())
            var = float(counts @ (values - mean) ** 2 / counts.sum())
        else:
            flat = plane.astype(np.float64).ravel() / full_scale
            mean, var = float(flat.mean()), float(flat.var())
        means.append(mean)
        stds.append(float(np.sqrt(var)) if var > 1e-12 else 1.0)
    return tuple(means), tuple(stds)


def _finish(name: str, train_x: NDArray[Any], train_y: NDArray[np.int64], test_x: NDArray[Any],
            test_y: NDArray[np.int64], classes: tuple[str, ...], *, full_scale: float,
            standardise: bool, source: str) -> Dataset:
    """Scale to [0, 1], standardise with training statistics, wrap."""
    train_images = _to_unit_tensor(train_x, full_scale)
    test_images = _to_unit_tensor(test_x, full_scale)
    channels = train_images.shape[1]
    if standardise:
        mean, std = _channel_mean_std(train_x, full_scale)
        shape = (1, channels, 1, 1)
        for images in (train_images, test_images):
            images.sub_(torch.tensor(mean, dtype=torch.float32).view(shape))
            images.div_(torch.tensor(std, dtype=torch.float32).view(shape))
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    return Dataset(
        name=name,
        train=DataSplit(train_images, torch.from_numpy(np.array(train_y, dtype=np.int64))),
        test=DataSplit(test_images, torch.from_numpy(np.array(test_y, dtype=np.int64))),
        classes=classes,
        normalisation=Normalisation(full_scale=full_scale, mean=mean, std=std),
        source=source,
    )
