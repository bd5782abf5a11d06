"""MNIST and Fashion-MNIST from their IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte``).

Both use the same four file names and the same format, so one reader serves both; only the
class names and the sub-folders searched (torchvision's ``MNIST/raw``, ``FashionMNIST/raw``)
differ. `read_idx` checks the header against the file's length before reading any data, and
each file may be raw or gzip (``.gz``).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from memsim.workloads.data.containers import (
    MNIST_CLASSES,
    DataError,
    Dataset,
    _check_labels,
    _finish,
    _first_existing,
    _locate,
)

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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
