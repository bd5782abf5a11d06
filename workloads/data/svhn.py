"""SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB v5).

The files store images as H×W×3×N and label the digit 0 as 10; the reader transposes to
N×3×H×W and maps 10 to 0, so classes are the digits 0–9 as for MNIST. ``extra_32x32.mat`` is
not read. scipy is imported only when a file is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from memsim.workloads.data.containers import (
    MNIST_CLASSES,
    DataError,
    Dataset,
    _finish,
    _first_existing,
    _locate,
)

_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


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
