"""Image folders as datasets: one subfolder per class.

Layout::

    root/
      cat/   img001.jpg  img002.png …
      dog/   …

* Classes are the subfolders of ``root`` in sorted order (hidden ones, starting with ``.``,
  ignored); their files are read recursively, in sorted order. Files whose extension is not an
  image extension (:data:`IMAGE_EXTENSIONS`) are skipped; hidden files too.
* Splits: when ``root`` holds a ``train/`` folder, ``split`` picks ``root/<split>/`` (``train``,
  ``test``, or ``val``); otherwise the whole folder is the data, whatever the split.
* Every image is converted by the rule of :mod:`cnnkit.preprocess` to one size and channel count:
  ``shape`` when given (``cnnkit evaluate`` passes the model's input shape), else the first
  image's (first class, first file): its H×W, and 1 channel when it is greyscale, 3 otherwise.
  ``resize="stretch"`` (default) resizes images of another size, ``"crop"`` centre-crops to the
  aspect ratio then resizes, ``"error"`` refuses them (:class:`~cnnkit.errors.ImageError`).
* A file with an image extension that Pillow cannot decode is refused with ImageError naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm", ".pnm"})
SPLIT_FOLDERS = ("train", "test", "val")
# A folder without train/ and test/ subfolders is split here: in every class, a fixed 20 % of the
# files (at least one when the class has two or more) chosen by a fixed generator is the test
# split and the rest the train split, whatever the run's seed, so the two never overlap.
HELD_OUT_FRACTION = 0.2
HELD_OUT_SEED = 20240


def is_image_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder with at least one non-hidden subfolder (a candidate dataset)."""
    p = Path(path).expanduser()
    return p.is_dir() and any(c.is_dir() and not c.name.startswith(".") for c in p.iterdir())


def split_root(root: Path, split: str | None) -> Path:
    """``root/<split>`` when ``root`` is organised in split folders (it holds ``train/``), else ``root``."""
    if split is not None and (root / "train").is_dir():
        if split not in SPLIT_FOLDERS:
            raise DatasetError(f"{root}: unknown split {split!r}; expected one of {', '.join(SPLIT_FOLDERS)}")
        sub = root / split
        if not sub.is_dir():
            raise DatasetError(f"{root}: holds train/ but no {split}/ folder")
        return sub
    return root


def scan(root: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """``(class_names, [(file, label), …])`` of an image folder, both in sorted order."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (an image dataset is a folder with one subfolder per class)")
    classes = sorted(c.name for c in root.iterdir() if c.is_dir() and not c.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: no class subfolders; an image dataset is a folder with one subfolder "
                           "per class, e.g. root/cat/*.jpg, root/dog/*.jpg")
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not files:
            raise DatasetError(f"{root / name}: class folder without images (extensions: "
                               f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
        items.extend((f, label) for f in files)
    return classes, items


def load_folder(root: str | os.PathLike, split: str | None = None, shape: Sequence[int] | None = None,
                resize: str = "stretch", class_names: Sequence[str] | None = None):
    """An image folder as a :class:`~cnnkit.data.Dataset`.

    Args:
        root: the folder (one subfolder per class; optionally ``train/`` and ``test/`` above them).
        split: ``"train"``, ``"test"`` or ``"val"`` for a folder organised in split subfolders. For a
            folder without them, ``"train"``/``"test"`` are a fixed stratified 80 %/20 % split of its
            files (:func:`held_out_split`), and None (or ``"val"``) is every file.
        shape: target (H, W, C) with C 1 or 3; None takes the first image's.
        resize: ``"stretch"``, ``"crop"`` or ``"error"`` (:mod:`cnnkit.preprocess`).
        class_names: the model's classes: labels are the folder names' indices in this list,
            and a folder name not in it is refused. None: the folder's sorted names.

    Returns:
        Dataset with x uint8 (N, H, W, C), y int64 (N,), named after the folder.

    Raises:
        DatasetError: no such folder, no class subfolders, or an empty class.
        ImageError: an unreadable image, or one of another size with ``resize="error"``.
        UserInputError: a class folder the model does not know (``class_names`` given).
    """
    from ..preprocess import natural_channels, open_image, to_array
    from . import Dataset

    top = Path(root).expanduser()
    base = split_root(top, split)
    classes, items = scan(base)
    if base == top and split in ("train", "test"):
        items = held_out_split(items, split)
    if class_names is not None:
        known = list(class_names)
        unknown = [c for c in classes if c not in known]
        if unknown:
            from ..errors import UserInputError

            raise UserInputError(f"{base}: class folder(s) {', '.join(unknown)} are not classes of the model "
                                 f"({', '.join(known)})")
        relabel = [known.index(c) for c in classes]
        items = [(f, relabel[label]) for f, label in items]
        classes = known
    if shape is None:
        first = open_image(items[0][0])
        shape = (first.size[1], first.size[0], natural_channels(first))
    x = np.empty((len(items), *shape), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        x[i] = to_array(path, shape, resize)
    y = np.fromiter((label for _, label in items), dtype=np.int64, count=len(items))
    return Dataset(x, y, list(classes), top.name or str(top))


def held_out_split(items: list[tuple[Path, int]], split: str) -> list[tuple[Path, int]]:
    """The ``"train"`` or ``"test"`` part of a folder without split subfolders (see
    :data:`HELD_OUT_FRACTION`): stratified by class, fixed, independent of any run seed."""
    rng = np.random.default_rng(HELD_OUT_SEED)
    chosen = []
    for label in sorted({lab for _, lab in items}):
        files = [item for item in items if item[1] == label]
        k = max(1, round(HELD_OUT_FRACTION * len(files))) if len(files) >= 2 else 0
        test = set(rng.permutation(len(files))[:k].tolist())
        chosen += [f for i, f in enumerate(files) if (i in test) == (split == "test")]
    return chosen


__all__ = ["load_folder", "held_out_split", "scan", "is_image_folder", "IMAGE_EXTENSIONS"]
