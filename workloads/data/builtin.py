"""The two data sets that need no files: scikit-learn's digits and a synthetic generator.

Both are fixed by construction, so every run and every machine sees the same data: the digits
split is computed here with a fixed seed (`DIGITS_SPLIT_SEED`) rather than by scikit-learn, so
it does not move with the scikit-learn version, and `make_synthetic` draws everything from one
``seed``.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from memsim.workloads.data.containers import MNIST_CLASSES, DataError, Dataset, _finish

DIGITS_SPLIT_SEED = 0
"""Seed of the fixed stratified digits split (1437 train / 360 test)."""

DIGITS_TEST_SIZE = 360


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


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if not isinstance(shape, tuple | list) or len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise DataError(f"synthetic: shape must be three positive integers (C, H, W), "
                        f"got {shape!r}")
    return int(shape[0]), int(shape[1]), int(shape[2])

