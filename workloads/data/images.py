"""Image folders in Imagenette's layout: ``train/<class>/*`` and ``val/<class>/*`` (or
``test/``), JPEG or PNG, of any size.

Every image is converted to RGB and brought to one square size (shorter side resized, centre
cropped), so folders of mixed sizes give one (N, 3, S, S) tensor. Pillow decodes the images
and is imported only when an image is read, so importing `memsim.workloads.data` does not
import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from memsim.workloads.data.containers import (
    DataError,
    Dataset,
    _check_image_size,
    _finish,
    _first_existing,
    _locate,
)

DEFAULT_IMAGE_SIZE = 64
"""Side in pixels that image folders are resized to unless ``image_size`` says otherwise."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Imagenette's folders are ImageNet WordNet ids; readable names when all of them are known.
IMAGENETTE_CLASSES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
    "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
    "n03888605": "parachute",
}


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
