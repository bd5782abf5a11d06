"""Data sets for the torch layer: built-in ones and readers for files users already have.

Nothing is ever downloaded. Two data sets are built in:

- ``digits``: scikit-learn's handwritten digits (1797 real 8×8 grey images, shipped with
  scikit-learn), split once into 1437 training and 360 test images, stratified by class with a
  fixed seed (`DIGITS_SPLIT_SEED`), so every run and every machine sees the same test set.
- ``synthetic``: class-conditional smooth patterns plus Gaussian noise (`make_synthetic`), for
  tests and quick experiments.

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

Normalisation is the same for every data set: raw pixels are divided by their full scale
(255 for 8-bit images, 16 for digits) to lie in [0, 1] (synthetic data are left as drawn),
then each channel is standardised with the mean and standard deviation of the *training*
split, applied unchanged to the test split. `Dataset.normalisation` records the constants;
``standardise=False`` keeps the [0, 1] values (mean 0, std 1 recorded).

CIFAR-10 batches are pickles, and unpickling a file can run arbitrary code. They are read with
a restricted unpickler that resolves only the few numpy callables needed to rebuild an array
(``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``, ``scalar``, and ``_codecs.encode``
with the latin-1 codec only); any other global, e.g. ``os.system``, is refused before it runs.
Dicts, lists, strings and numbers need no globals. The files were written by Python 2, so
strings are decoded as latin-1 (as numpy requires for Python 2 array pickles).
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import io
import pickle
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from memsim.errors import MemsimError

__all__ = [
    "DATASET_NAMES",
    "DIGITS_SPLIT_SEED",
    "DataError",
    "DataSplit",
    "Dataset",
    "Normalisation",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "load_svhn",
    "make_loader",
    "make_synthetic",
    "read_idx",
    "restricted_unpickle",
]

DIGITS_SPLIT_SEED = 0
"""Seed of the fixed stratified digits split (1437 train / 360 test)."""

DIGITS_TEST_SIZE = 360
DEFAULT_IMAGE_SIZE = 64
"""Side in pixels that image folders are resized to unless ``image_size`` says otherwise."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# Imagenette's folders are ImageNet WordNet ids; readable names when all of them are known.
IMAGENETTE_CLASSES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
    "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
    "n03888605": "parachute",
}

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "test_batch"
_CIFAR10_META = "batches.meta"
_CIFAR10_ROW = 3 * 32 * 32
_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


class DataError(MemsimError):
    """A data set that is unknown, missing, or whose files are malformed."""


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class DataSplit:
    """One split of a data set: images and their labels, already normalised."""

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
    """A named data set with a training and a test split."""

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
# Entry point
# ---------------------------------------------------------------------------------------------

DATASET_NAMES = ("digits", "synthetic", "mnist", "fashion-mnist", "cifar10", "svhn",
                 "imagenette", "imagefolder")
"""Names `load_dataset` accepts (case-insensitive, ``_`` read as ``-``)."""

_TAKES_IMAGE_SIZE = frozenset({"synthetic", "imagenette", "imagefolder"})


def load_dataset(name: str, data_dir: str | Path | None = None, *,
                 image_size: int | None = None, standardise: bool = True,
                 seed: int = 0) -> Dataset:
    """Load a data set by name (one of `DATASET_NAMES`).

    ``data_dir`` is required for the data sets read from disk and ignored by ``digits`` and
    ``synthetic``. ``image_size`` is the side images are resized to (image folders, default
    64) or generated at (synthetic, default 8); the other data sets have a fixed size and
    refuse it. ``seed`` seeds the synthetic generator only: the digits split and the real data
    sets' splits are fixed.
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


# ---------------------------------------------------------------------------------------------
# Built-in data sets
# ---------------------------------------------------------------------------------------------


def _stratified_split(labels: NDArray[np.int64], test_size: int,
                      seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices of a train/test split with each class's test share as close to proportional
    as whole numbers allow (largest remainder), both halves in a seeded random order."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * test_size / labels.size
    take = np.floor(quota).astype(np.int64)
    # Largest remainders first, ties to the smaller class index (a stable sort keeps them).
    extra = np.argsort(-(quota - take), kind="stable")[:test_size - int(take.sum())]
    take[extra] += 1
    train: list[NDArray[np.int64]] = []
    test: list[NDArray[np.int64]] = []
    for cls, k in zip(classes, take, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        test.append(members[:k])
        train.append(members[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_digits(*, standardise: bool = True) -> Dataset:
    """scikit-learn's 8×8 digits with the fixed stratified 1437/360 split.

    The split is computed here (not by scikit-learn's ``train_test_split``) so that it does
    not move with the scikit-learn version.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float32).reshape(-1, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _stratified_split(labels, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    return _finish("digits", pixels[train_idx], labels[train_idx], pixels[test_idx],
                   labels[test_idx], MNIST_CLASSES, full_scale=16.0, standardise=standardise,
                   source=f"scikit-learn load_digits, stratified split seed {DIGITS_SPLIT_SEED}")


def make_synthetic(*, num_classes: int = 10, shape: tuple[int, int, int] = (1, 8, 8),
                   train_size: int = 2000, test_size: int = 500, noise_std: float = 1.5,
                   seed: int = 0, standardise: bool = True) -> Dataset:
    """Class-conditional patterns with Gaussian noise.

    Each class has a smooth prototype (a Gaussian random grid of at most 4×4 per channel,
    bilinearly upsampled to H×W and scaled to RMS 1); a sample is its class's prototype plus
    independent N(0, ``noise_std``²) noise per pixel. Classes are Gaussians with a shared
    covariance, so a linear classifier is optimal, and convolutions see spatially coherent
    features. At the defaults a least-squares linear classifier scores 0.98–0.99 on the test
    split (seeds 0–4). Classes are balanced (sizes differ by at most one) and shuffled.
    Prototypes, training and test samples come from separate streams of ``seed``, so changing
    one size leaves the other split unchanged.
    """
    c, h, w = _check_shape(shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise DataError(f"synthetic: num_classes must be an integer >= 2, got {num_classes!r}")
    for what, size in (("train_size", train_size), ("test_size", test_size)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DataError(f"synthetic: {what} must be a positive integer, got {size!r}")
    if not (isinstance(noise_std, int | float) and np.isfinite(noise_std) and noise_std >= 0):
        raise DataError(f"synthetic: noise_std must be a finite number >= 0, got {noise_std!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"synthetic: seed must be a non-negative integer, got {seed!r}")
    proto_seq, train_seq, test_seq = np.random.SeedSequence(seed).spawn(3)
    proto_rng = np.random.default_rng(proto_seq)
    coarse = proto_rng.standard_normal((num_classes, c, min(h, 4), min(w, 4)))
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(h, w),
                                             mode="bilinear", align_corners=True).numpy()
    prototypes = smooth / np.sqrt((smooth ** 2).mean(axis=(1, 2, 3), keepdims=True))

    def draw(seq: np.random.SeedSequence, n: int) -> tuple[NDArray[np.float32],
                                                           NDArray[np.int64]]:
        rng = np.random.default_rng(seq)
        labels = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)
        images = prototypes[labels] + noise_std * rng.standard_normal((n, c, h, w))
        return images.astype(np.float32), labels

    train_x, train_y = draw(train_seq, train_size)
    test_x, test_y = draw(test_seq, test_size)
    return _finish("synthetic", train_x, train_y, test_x, test_y,
                   tuple(str(k) for k in range(num_classes)), full_scale=1.0,
                   standardise=standardise,
                   source=f"make_synthetic(num_classes={num_classes}, shape={(c, h, w)}, "
                          f"noise_std={noise_std}, seed={seed})")


# ---------------------------------------------------------------------------------------------
# MNIST / FashionMNIST (IDX)
# ---------------------------------------------------------------------------------------------


def read_idx(path: str | Path, *, ndim: int) -> NDArray[np.uint8]:
    """Read an IDX file of unsigned bytes (raw, or gzip if the name ends in ``.gz``).

    The header is the magic ``0x00 0x00 0x08 ndim`` followed by ``ndim`` big-endian uint32
    sizes; the data are the bytes in C order and must fill exactly the product of the sizes.
    """
    path = Path(path)
    expected = f"0x{0x800 + ndim:08x}"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                raw = stream.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, shorter than the IDX magic "
                        f"number {expected}")
    magic = int.from_bytes(raw[:4], "big")
    if raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: bad magic number 0x{magic:08x}, expected {expected} "
                        f"(IDX, unsigned bytes, {ndim} dimension(s))")
    if raw[3] != ndim:
        raise DataError(f"{path}: wrong dimension count {raw[3]} (magic 0x{magic:08x}), "
                        f"expected {ndim} (magic {expected})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated: {len(raw)} bytes, shorter than the {header}-byte "
                        f"header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(dims, dtype=np.int64))
    have = len(raw) - header
    if have < count:
        raise DataError(f"{path}: truncated: {have} data bytes, expected {count} for sizes "
                        f"{'×'.join(map(str, dims))}")
    if have > count:
        raise DataError(f"{path}: {have - count} bytes after the data (sizes "
                        f"{'×'.join(map(str, dims))} need {count})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(data_dir: str | Path, *, fashion: bool = False,
               standardise: bool = True) -> Dataset:
    """MNIST or FashionMNIST from the four IDX files (each raw or ``.gz``)."""
    name = "fashion-mnist" if fashion else "mnist"
    files = [n for pair in _MNIST_FILES.values() for n in pair]
    subdirs = ("FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "fashion_mnist") \
        if fashion else ("MNIST/raw", "MNIST", "mnist")
    shown = ", ".join(f"{n}[.gz]" for n in files)
    folder = _locate(name, Path(data_dir), subdirs,
                     lambda d: _first_existing(d, (files[0], files[0] + ".gz")), shown)
    splits: list[tuple[NDArray[np.uint8], NDArray[np.int64]]] = []
    for images_name, labels_name in _MNIST_FILES.values():
        paths = []
        for stem in (images_name, labels_name):
            found = _first_existing(folder, (stem, stem + ".gz"))
            if found is None:
                raise DataError(f"{name}: {folder}: missing {stem}[.gz]; expected {shown}; "
                                f"nothing is downloaded")
            paths.append(found)
        images = read_idx(paths[0], ndim=3)
        labels = read_idx(paths[1], ndim=1).astype(np.int64)
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{paths[1]}: {labels.shape[0]} labels but {paths[0].name} has "
                            f"{images.shape[0]} images")
        _check_labels(paths[1], labels, 10)
        splits.append((images[:, None], labels))
    if splits[0][0].shape[1:] != splits[1][0].shape[1:]:
        raise DataError(f"{name}: {folder}: training images are "
                        f"{'×'.join(map(str, splits[0][0].shape[2:]))} but test images are "
                        f"{'×'.join(map(str, splits[1][0].shape[2:]))}")
    classes = FASHION_MNIST_CLASSES if fashion else MNIST_CLASSES
    return _finish(name, *splits[0], *splits[1], classes, full_scale=255.0,
                   standardise=standardise, source=str(folder))


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python pickles)
# ---------------------------------------------------------------------------------------------


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3 writes bytes at pickle protocol <= 2 as _codecs.encode(text, "latin1"); only
    # that codec is allowed, so no codec module can be looked up by name.
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray((0,)).__reduce__()[0]
    frombuffer = np.empty(0).__reduce_ex__(5)[0]
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # numpy 1 names its private module numpy.core, numpy 2 numpy._core.
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


def restricted_unpickle(data: bytes) -> Any:
    """Unpickle numpy arrays, dicts, lists, strings and numbers, and nothing else.

    Strings are decoded as latin-1 (Python 2 pickles). A pickle that names any other global
    (a class to build, a function to call) raises `pickle.UnpicklingError` before it runs.
    """
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _load_pickle(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    try:
        return restricted_unpickle(raw)
    except _RefusedGlobal as exc:
        raise DataError(f"{path}: refused to unpickle {exc}: only numpy arrays, dicts, lists, "
                        f"strings and numbers are allowed (a pickle can run code)") from exc
    except Exception as exc:  # a corrupt pickle can fail in many ways; all mean "malformed"
        raise DataError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def _field(path: Path, batch: Any, key: str) -> Any:
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict with {key!r}, got "
                        f"{type(batch).__name__}")
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise DataError(f"{path}: no {key!r} entry (has {', '.join(map(repr, batch))})")


def _read_cifar_batch(path: Path) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    batch = _load_pickle(path)
    data = _field(path, batch, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _CIFAR10_ROW:
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, {_CIFAR10_ROW}), "
                        f"got {what}")
    try:
        labels = np.asarray(_field(path, batch, "labels"), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: 'labels' is not a list of integers ({exc})") from exc
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {labels.size} labels but {data.shape[0]} images")
    _check_labels(path, labels, 10)
    # A row is the red plane, then green, then blue, each 32×32 row-major.
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir: str | Path, *, standardise: bool = True) -> Dataset:
    """CIFAR-10 from the python version's batches (``cifar-10-batches-py``)."""
    needed = (*_CIFAR10_TRAIN, _CIFAR10_TEST)
    shown = ", ".join(needed)
    folder = _locate("cifar10", Path(data_dir), ("cifar-10-batches-py",),
                     lambda d: _first_existing(d, (_CIFAR10_TRAIN[0],)), shown)
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise DataError(f"cifar10: {folder}: missing {', '.join(missing)}; expected {shown}; "
                        f"nothing is downloaded")
    train = [_read_cifar_batch(folder / n) for n in _CIFAR10_TRAIN]
    test_x, test_y = _read_cifar_batch(folder / _CIFAR10_TEST)
    classes: tuple[str, ...] = CIFAR10_CLASSES
    meta_path = folder / _CIFAR10_META
    if meta_path.is_file():
        names = _field(meta_path, _load_pickle(meta_path), "label_names")
        if not isinstance(names, list) or len(names) != 10 \
                or not all(isinstance(n, str | bytes) for n in names):
            raise DataError(f"{meta_path}: 'label_names' must be a list of 10 strings")
        classes = tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names)
    return _finish("cifar10", np.concatenate([x for x, _ in train]),
                   np.concatenate([y for _, y in train]), test_x, test_y, classes,
                   full_scale=255.0, standardise=standardise, source=str(folder))


# ---------------------------------------------------------------------------------------------
# SVHN (MATLAB)
# ---------------------------------------------------------------------------------------------


def _read_svhn(path: Path) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types for a corrupt file; all mean malformed
        raise DataError(f"{path}: not a readable MATLAB v5 file "
                        f"({type(exc).__name__}: {exc})") from exc
    for key in ("X", "y"):
        if key not in mat:
            raise DataError(f"{path}: no variable {key!r} (expected X: H×W×3×N uint8, "
                            f"y: N×1 labels 1..10)")
    x, y = mat["X"], mat["y"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise DataError(f"{path}: X must be a uint8 H×W×3×N array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                        f"{getattr(x, 'shape', '?')}")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "uif":
        raise DataError(f"{path}: y must be a numeric N×1 array")
    labels = y.reshape(-1)
    if labels.size != x.shape[3]:
        raise DataError(f"{path}: {labels.size} labels in y but {x.shape[3]} images in X")
    if labels.size and (not np.all(labels == np.round(labels)) or labels.min() < 1
                        or labels.max() > 10):
        raise DataError(f"{path}: labels out of range: SVHN labels are integers 1..10 "
                        f"(10 is digit 0), got {labels.min()}..{labels.max()}")
    labels = labels.astype(np.int64) % 10
    # X[h, w, c, n] -> [n, c, h, w]
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels


def load_svhn(data_dir: str | Path, *, standardise: bool = True) -> Dataset:
    """SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat``."""
    shown = ", ".join(_SVHN_FILES.values())
    folder = _locate("svhn", Path(data_dir), ("svhn", "SVHN"),
                     lambda d: _first_existing(d, (_SVHN_FILES["train"],)), shown)
    missing = [n for n in _SVHN_FILES.values() if not (folder / n).is_file()]
    if missing:
        raise DataError(f"svhn: {folder}: missing {', '.join(missing)}; expected {shown}; "
                        f"nothing is downloaded")
    train_x, train_y = _read_svhn(folder / _SVHN_FILES["train"])
    test_x, test_y = _read_svhn(folder / _SVHN_FILES["test"])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"svhn: {folder}: training images are {train_x.shape[1:]} but test "
                        f"images are {test_x.shape[1:]} (C, H, W)")
    return _finish("svhn", train_x, train_y, test_x, test_y, MNIST_CLASSES, full_scale=255.0,
                   standardise=standardise, source=str(folder))


# ---------------------------------------------------------------------------------------------
# Image folders (Imagenette)
# ---------------------------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _read_image(path: Path, size: int) -> NDArray[np.uint8]:
    """RGB, shorter side resized to ``size`` (bilinear, antialiased), centre-cropped."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            # JPEG only: decode directly at a reduced scale that is still >= size.
            opened.draft("RGB", (size, size))
            img = opened.convert("RGB")
        width, height = img.size
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        img = img.resize(new, Image.Resampling.BILINEAR)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


def load_image_folder(data_dir: str | Path, *, image_size: int = DEFAULT_IMAGE_SIZE,
                      imagenette: bool = False, standardise: bool = True) -> Dataset:
    """``train/<class>/*`` and ``val/<class>/*`` (or ``test/``) images, Imagenette's layout.

    Classes are the sorted sub-folder names of ``train/``; each needs at least one image. The
    test split may lack a class but not add one. Images are converted to RGB and resized as
    `_read_image` says. With ``imagenette``, Imagenette's WordNet-id folders get readable
    class names and the archive folders ``imagenette2*`` are looked into.
    """
    name = "imagenette" if imagenette else "imagefolder"
    size = _check_image_size(name, image_size)
    shown = "train/<class>/*.{jpg,jpeg,png} and val/<class>/... (or test/<class>/...)"
    subdirs = ("imagenette2-160", "imagenette2-320", "imagenette2") if imagenette else ()
    folder = _locate(name, Path(data_dir), subdirs,
                     lambda d: d / "train" if (d / "train").is_dir() else None, shown)
    test_dir = _first_existing(folder, ("val", "test"))
    if test_dir is None or not test_dir.is_dir():
        raise DataError(f"{name}: {folder}: missing val/ (or test/); expected {shown}")
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{name}: {folder / 'train'}: no class folders; expected {shown}")
    unknown = sorted(p.name for p in test_dir.iterdir()
                     if p.is_dir() and p.name not in classes)
    if unknown:
        raise DataError(f"{name}: {test_dir}: class folder(s) {', '.join(unknown)} are not in "
                        f"train/ (which has {', '.join(classes)})")

    def read(split_dir: Path, require_each: bool) -> tuple[NDArray[np.uint8],
                                                            NDArray[np.int64]]:
        paths: list[Path] = []
        labels: list[int] = []
        for index, cls in enumerate(classes):
            files = _image_files(split_dir / cls) if (split_dir / cls).is_dir() else []
            if require_each and not files:
                raise DataError(f"{name}: {split_dir / cls}: no .jpg, .jpeg or .png images")
            paths += files
            labels += [index] * len(files)
        if not paths:
            raise DataError(f"{name}: {split_dir}: no .jpg, .jpeg or .png images in any "
                            f"class folder; expected {shown}")
        images = np.empty((len(paths), 3, size, size), dtype=np.uint8)
        for i, path in enumerate(paths):
            images[i] = _read_image(path, size).transpose(2, 0, 1)
        return images, np.asarray(labels, dtype=np.int64)

    train_x, train_y = read(folder / "train", True)
    test_x, test_y = read(test_dir, False)
    names: tuple[str, ...] = tuple(classes)
    if imagenette and all(c in IMAGENETTE_CLASSES for c in classes):
        names = tuple(IMAGENETTE_CLASSES[c] for c in classes)
    return _finish(name, train_x, train_y, test_x, test_y, names, full_scale=255.0,
                   standardise=standardise, source=f"{folder} at {size}×{size}")


# ---------------------------------------------------------------------------------------------
# Shared helpers
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


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if not isinstance(shape, tuple | list) or len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise DataError(f"synthetic: shape must be three positive integers (C, H, W), "
                        f"got {shape!r}")
    return int(shape[0]), int(shape[1]), int(shape[2])


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
