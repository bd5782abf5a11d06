"""CIFAR-10 from the python version's batches (``cifar-10-batches-py``), read without trusting
the pickles.

CIFAR-10 batches are pickles, and unpickling a file can run arbitrary code. They are read with
a restricted unpickler (`restricted_unpickle`) that resolves only the few numpy callables
needed to rebuild an array (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer``,
``scalar``, and ``_codecs.encode`` with the latin-1 codec only); any other global, e.g.
``os.system``, is refused before it runs. Dicts, lists, strings and numbers need no globals.
The files were written by Python 2, so strings are decoded as latin-1 (as numpy requires for
Python 2 array pickles).
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from memsim.workloads.data.containers import (
    DataError,
    Dataset,
    _check_labels,
    _finish,
    _first_existing,
    _locate,
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "test_batch"
_CIFAR10_META = "batches.meta"
_CIFAR10_ROW = 3 * 32 * 32


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
