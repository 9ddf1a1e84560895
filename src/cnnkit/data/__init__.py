"""Datasets: the :class:`Dataset` container and :func:`load_dataset`, which finds one by name.

Names (INTERFACE.md): ``shapes`` (built in, generated; :mod:`cnnkit.data.shapes`), ``mnist``,
``fashion-mnist`` (:mod:`cnnkit.data.mnist`), ``cifar10`` (:mod:`cnnkit.data.cifar`), or the path
of a folder with one subfolder per class (:mod:`cnnkit.data.folder`). Batching, shuffling and
augmentation are in :mod:`cnnkit.data.loader`.

Example:
    >>> train = load_dataset("shapes", "train")
    >>> train.x.shape, train.x.dtype, train.class_names[:3]
    ((12000, 32, 32, 3), dtype('uint8'), ['circle', 'square', 'triangle'])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import LabelError, ShapeError, SpecError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Dataset:
    """Images and labels.

    Args:
        x: images (N, H, W, C): uint8 for image datasets, float32 allowed for array datasets
            (taken as already preprocessed).
        y: labels (N,), integers in [0, len(class_names)); stored as int64.
        class_names: one name per class; label i is ``class_names[i]``.
        name: the dataset's short name (``shapes``, ``mnist``, a folder's base name …).
    """

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    name: str = "dataset"

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        where = f"dataset {self.name!r}"
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise ShapeError(f"{where}: images must be an array (N, H, W, C). "
                             f"Received: {getattr(x, 'shape', type(x).__name__)}")
        if x.dtype != np.uint8 and x.dtype.kind != "f":
            raise ShapeError(f"{where}: images must be uint8 or floating point. Received: {x.dtype}")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise LabelError(f"{where}: labels must be (N,) = ({len(x)},). Received: {y.shape}")
        if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.array_equal(y, np.round(y))):
            raise LabelError(f"{where}: labels must be integers. Received: {y.dtype}")
        names = [str(c) for c in self.class_names]
        if not names:
            raise LabelError(f"{where}: class_names is empty")
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise LabelError(f"{where}: labels must be in [0, {len(names)}) for {len(names)} classes. "
                             f"Received: min {y.min()}, max {y.max()}")
        object.__setattr__(self, "y", y.astype(np.int64, copy=False))
        object.__setattr__(self, "class_names", names)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(int(s) for s in self.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """Images per class, (num_classes,) int64."""
        return np.bincount(self.y, minlength=self.num_classes)

    def subset(self, index, name: str | None = None) -> "Dataset":
        """The images at ``index`` (indices, a slice or a boolean mask) as a new Dataset."""
        return Dataset(self.x[index], self.y[index], list(self.class_names), name or self.name)

    def split(self, fraction: float, rng: np.random.Generator) -> tuple["Dataset", "Dataset"]:
        """``(rest, held_out)``: a random ``fraction`` of the images held out (e.g. for validation)."""
        if not 0 < fraction < 1:
            raise SpecError(f"dataset {self.name!r}: a split fraction must be in (0, 1). Received: {fraction}")
        order = rng.permutation(len(self))
        k = max(1, int(round(fraction * len(self))))
        return self.subset(np.sort(order[k:])), self.subset(np.sort(order[:k]), f"{self.name}-val")

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, x={self.x.dtype}{tuple(self.x.shape)}, "
                f"classes={self.num_classes})")


# ------------------------------------------------------------------ the registry of named datasets
# Each backend: fn(split, data_dir, cache_dir, seed, **options) -> Dataset. The modules are
# imported on first use, so ``import cnnkit.data`` stays light.
def _shapes(split, data_dir, cache_dir, seed, **options):
    from .shapes import load_shapes

    return load_shapes(split, **options)  # fixed splits: the seed does not change the data


def _idx(name: str) -> Callable[..., Dataset]:
    def load(split, data_dir, cache_dir, seed, **options):
        from .mnist import load_idx_dataset

        return load_idx_dataset(name, split, data_dir, cache_dir, **options)

    return load


def _cifar10(split, data_dir, cache_dir, seed, **options):
    from .cifar import load_cifar10

    return load_cifar10(split, data_dir, cache_dir, **options)


def _folder(path, split, data_dir, cache_dir, seed, **options):
    from .folder import load_folder

    return load_folder(path, split, **options)


LOADERS: dict[str, Callable[..., Dataset]] = {
    "shapes": _shapes,
    "mnist": _idx("mnist"),
    "fashion-mnist": _idx("fashion-mnist"),
    "cifar10": _cifar10,
}


def dataset_names() -> list[str]:
    return list(LOADERS)


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, seed: int = 0, **options: Any) -> Dataset:
    """A dataset by name, or an image folder by path.

    Args:
        name: ``shapes``, ``mnist``, ``fashion-mnist``, ``cifar10`` (case-insensitive), or the path
            of an existing folder with one subfolder per class.
        split: ``"train"`` or ``"test"`` (image folders also take ``"val"``, and ``"all"`` for every image).
        data_dir: a folder holding the dataset's standard files (MNIST's ``*-idx?-ubyte.gz``,
            ``cifar-10-batches-bin/``) instead of the download cache.
        cache_dir: download cache (default ``~/.cache/cnnkit``).
        seed: for datasets that need a random choice; ``shapes`` has fixed splits and ignores it.
        **options: passed to the backend (e.g. ``progress=False`` for downloads, ``shape=`` and
            ``resize=`` for image folders).

    Raises:
        SpecError: an unknown name or split (CLI exit status 2).
        DatasetError: missing or corrupt files (exit status 1).
    """
    key = str(name).lower()
    if key in LOADERS:
        if split not in SPLITS:
            raise SpecError(f"dataset {name!r}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return LOADERS[key](split, data_dir, cache_dir, seed, **options)
    path = Path(os.fspath(name)).expanduser()
    if path.is_dir():
        if split not in (*SPLITS, "val", "all"):
            raise SpecError(f"dataset {name!r}: unknown split {split!r}; expected train, test, val or all")
        return _folder(path, None if split == "all" else split, data_dir, cache_dir, seed, **options)
    raise SpecError(f"unknown dataset {name!r}; expected one of {', '.join(LOADERS)}, "
                    f"or the path of a folder with one subfolder per class")


__all__ = ["Dataset", "load_dataset", "dataset_names", "LOADERS", "SPLITS"]
