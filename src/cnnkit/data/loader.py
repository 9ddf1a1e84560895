"""Mini-batches: shuffling from a Generator, augmentation, preprocessing to float32, exact resume.

    loader = DataLoader(train, batch_size=64, rng=np.random.default_rng(0),
                        augment=(RandomCrop(4), HorizontalFlip()), preprocessing=preprocessing_for(train))
    for x, y in loader:          # x float32 (B, H, W, C), y int64 (B,)
        ...

One pass of ``for … in loader`` is one epoch. The order of random draws is fixed: at the start of
an epoch one permutation (when shuffling), then for each batch each augmentation in turn. The
loader's :meth:`~DataLoader.state_dict` holds the generator's state, the epoch's permutation and
the position in it, so a loader restored with :meth:`~DataLoader.load_state_dict` yields exactly
the batches the saved one would have yielded next, bit for bit, even in the middle of an epoch.
An epoch left unfinished (a ``break``) is continued by the next ``for``, not restarted.

Augmentations work on the stored images (uint8 for image datasets) before preprocessing, as
torchvision's do on PIL images: :class:`RandomCrop` pads with zeros (black), then cuts a random
H×W window; :class:`HorizontalFlip` mirrors each image with probability ``p``. Preprocessing is the
model file's ``{"scale", "mean", "std"}``: ``x = (x_uint8·scale − mean)/std`` per channel, float32,
by the same function :func:`cnnkit.preprocess.apply_preprocessing` that prediction uses.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import SpecError, UserInputError
from . import Dataset


class RandomCrop:
    """Pad each image with ``padding`` zero pixels on every side, then cut a random H×W window
    (each image its own offset, uniform over the 2·padding + 1 positions per axis).

    Example:
        >>> x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
        >>> RandomCrop(1)(x, np.random.default_rng(0)).shape
        (1, 4, 4, 1)
    """

    def __init__(self, padding: int = 4) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise UserInputError(f"RandomCrop: padding must be a whole number >= 0. Received: padding={padding!r}")
        self.padding = padding

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.padding
        if p == 0:
            return x
        n, h, w, _ = x.shape
        offsets = rng.integers(0, 2 * p + 1, size=(n, 2))          # (n, [dy, dx])
        padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))         # (n, H+2p, W+2p, C), zeros
        out = np.empty_like(x)
        for i, (dy, dx) in enumerate(offsets):
            out[i] = padded[i, dy:dy + h, dx:dx + w]
        return out

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


class HorizontalFlip:
    """Mirror each image left–right with probability ``p`` (default 0.5)."""

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise UserInputError(f"HorizontalFlip: p must be a probability in [0, 1]. Received: p={p!r}")
        self.p = float(p)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(len(x)) < self.p
        if not flip.any():
            return x
        out = x.copy()
        out[flip] = x[flip, :, ::-1]                                  # reverse the W axis
        return out

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


AUGMENTATIONS = {"crop": RandomCrop, "flip": HorizontalFlip}


def parse_augment(text: str | Sequence[Any] | None) -> tuple[Any, ...]:
    """Augmentations from text: ``"crop"`` (padding 4), ``"crop=2"``, ``"flip"``, ``"flip=0.3"``,
    comma-separated; ``""``/``"none"``/None for none. Objects pass through.

    >>> parse_augment("crop=2,flip")
    (RandomCrop(padding=2), HorizontalFlip(p=0.5))
    """
    if text is None:
        return ()
    if not isinstance(text, str):
        return tuple(text)
    items = [t.strip() for t in text.split(",") if t.strip() and t.strip().lower() != "none"]
    out = []
    for item in items:
        name, _, arg = item.partition("=")
        cls = AUGMENTATIONS.get(name.strip().lower())
        if cls is None:
            raise SpecError(f"unknown augmentation {name!r}; expected one of {', '.join(AUGMENTATIONS)} "
                            f"(e.g. crop=4,flip)")
        if not arg:
            out.append(cls())
            continue
        try:
            value = int(arg) if cls is RandomCrop else float(arg)
        except ValueError:
            raise SpecError(f"augmentation {item!r}: {arg!r} is not a number") from None
        out.append(cls(value))
    return tuple(out)


def preprocessing_for(dataset: Dataset | tuple[np.ndarray, np.ndarray] | np.ndarray) -> dict[str, Any]:
    """Per-channel normalisation computed on (training) images: ``{"scale", "mean", "std"}``.

    For uint8 images, ``scale = 1/255`` and ``mean``, ``std`` are those of ``x·scale`` over all
    images and pixels (population std; a constant channel gets std 1), exact (from the 256-bin
    histogram of each channel). Float images count as already preprocessed, as everywhere in
    cnnkit: they get the identity (scale 1, mean 0, std 1).

    >>> x = np.zeros((2, 2, 2, 1), np.uint8); x[0] = 255
    >>> preprocessing_for(x)
    {'scale': 0.00392156862745098, 'mean': [0.5], 'std': [0.5]}
    """
    x = dataset.x if isinstance(dataset, Dataset) else (dataset[0] if isinstance(dataset, tuple) else dataset)
    x = np.asarray(x)
    if x.ndim != 4 or x.size == 0:
        raise UserInputError(f"preprocessing_for: expected images (N, H, W, C) with N >= 1. Received: {x.shape}")
    c = x.shape[-1]
    means, stds = [], []
    if x.dtype == np.uint8:
        scale = 1 / 255
        levels = np.arange(256, dtype=np.float64) * scale
        flat = x.reshape(-1, c)
        for ch in range(c):
            counts = np.bincount(flat[:, ch], minlength=256).astype(np.float64)
            total = counts.sum()
            mean = float(counts @ levels / total)
            var = float(counts @ (levels - mean) ** 2 / total)
            means.append(mean)
            stds.append(math.sqrt(var))
    else:  # float arrays are taken as already preprocessed (cnnkit.preprocess.apply_preprocessing)
        return {"scale": 1.0, "mean": [0.0] * c, "std": [1.0] * c}
    stds = [s if s > 0 else 1.0 for s in stds]
    return {"scale": scale, "mean": means, "std": stds}


class DataLoader:
    """Batches of a Dataset (or an ``(x, y)`` pair of arrays), shuffled, augmented, preprocessed.

    Args:
        dataset: a :class:`~cnnkit.data.Dataset` or ``(x, y)`` arrays (x (N, H, W, C), y (N,)).
        batch_size: images per batch; the last batch is smaller unless ``drop_last``.
        shuffle: a new random order each epoch, drawn from ``rng``.
        rng: the generator for shuffling and augmentation (default ``default_rng(0)``); the
            loader advances it, so give it its own generator.
        augment: augmentations applied in order to each batch (:class:`RandomCrop`,
            :class:`HorizontalFlip`, any ``f(x, rng) -> x``), or their text (:func:`parse_augment`).
        preprocessing: ``{"scale", "mean", "std"}`` (see :func:`preprocessing_for`); None: uint8
            images are scaled by 1/255, float images are taken as they are. Output is float32.
        drop_last: drop the last, incomplete batch of each epoch.

    Shape:
        yields x: (B, H, W, C) float32, y: (B,) int64.
    """

    def __init__(self, dataset: Dataset | tuple[np.ndarray, np.ndarray], batch_size: int = 64,
                 shuffle: bool = True, rng: np.random.Generator | None = None,
                 augment: Sequence[Any] | str | None = (), preprocessing: dict[str, Any] | None = None,
                 drop_last: bool = False) -> None:
        if isinstance(dataset, Dataset):
            self.x, self.y = dataset.x, dataset.y
        elif isinstance(dataset, (tuple, list)) and len(dataset) == 2:
            ds = Dataset(np.asarray(dataset[0]), np.asarray(dataset[1]),
                         [str(i) for i in range(int(np.max(dataset[1], initial=0)) + 1)], "arrays")
            self.x, self.y = ds.x, ds.y
        else:
            raise UserInputError(f"DataLoader: expected a Dataset or an (x, y) pair of arrays. "
                                 f"Received: {type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise UserInputError(f"DataLoader: batch_size must be a whole number >= 1. Received: {batch_size!r}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise UserInputError(f"DataLoader: rng must be a numpy.random.Generator. Received: {type(rng).__name__}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.augment = parse_augment(augment)
        self.preprocessing = preprocessing
        self.drop_last = bool(drop_last)
        self.epoch = 0                          # epochs completed
        self._order: np.ndarray | None = None   # this epoch's permutation (None: not started / in order)
        self._started = False
        self._position = 0                      # batches of this epoch already yielded

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from ..preprocess import apply_preprocessing

        if self._started and self._position >= len(self):
            self._finish_epoch()                  # saved after its last batch, before the loop ended
        if not self._started:
            self._start_epoch()
        while self._position < len(self):
            lo = self._position * self.batch_size
            hi = min(lo + self.batch_size, len(self.y))
            if self._order is not None:
                index = self._order[lo:hi]
                x, y = self.x[index], self.y[index]                  # gathered copies
            else:
                x, y = self.x[lo:hi], self.y[lo:hi].copy()
            for aug in self.augment:
                x = aug(x, self.rng)
            x = apply_preprocessing(x, self.preprocessing, np.float32)
            if x.dtype != np.float32 or not x.flags.owndata:
                x = np.array(x, np.float32)                          # never hand out a view of the data
            self._position += 1
            yield x, y
        self._finish_epoch()

    def _finish_epoch(self) -> None:
        self.epoch += 1
        self._started = False
        self._order = None
        self._position = 0

    def _start_epoch(self) -> None:
        self._order = self.rng.permutation(len(self.y)) if self.shuffle else None
        self._position = 0
        self._started = True

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: JSON-able values and one array.

        ``{"epoch", "position", "started", "permutation" (int64 array or None), "rng" (the bit
        generator's state dict), "num_examples", "batch_size", "shuffle"}``.
        """
        return {
            "epoch": self.epoch, "position": self._position, "started": self._started,
            "permutation": None if self._order is None else self._order.copy(),
            "rng": self.rng.bit_generator.state, "num_examples": len(self.y),
            "batch_size": self.batch_size, "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` of a loader over the same data and batch size."""
        for key, own in (("num_examples", len(self.y)), ("batch_size", self.batch_size), ("shuffle", self.shuffle)):
            if key in state and state[key] != own:
                raise UserInputError(f"DataLoader: the saved state has {key}={state[key]}, this loader "
                                     f"has {own}; resume with the same data and settings")
        perm = state.get("permutation")
        if perm is not None:
            perm = np.asarray(perm, dtype=np.int64)
            if perm.shape != (len(self.y),) or not np.array_equal(np.sort(perm), np.arange(len(self.y))):
                raise UserInputError(f"DataLoader: the saved permutation is not a permutation of "
                                     f"{len(self.y)} examples")
        rng_state = state["rng"]
        if rng_state.get("bit_generator") != self.rng.bit_generator.state.get("bit_generator"):
            raise UserInputError(f"DataLoader: the saved generator is {rng_state.get('bit_generator')}, "
                                 f"this loader's is {self.rng.bit_generator.state.get('bit_generator')}")
        self.rng.bit_generator.state = rng_state
        self.epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._started = bool(state.get("started", perm is not None))
        self._order = perm

    def __repr__(self) -> str:
        return (f"DataLoader(examples={len(self.y)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"augment={list(self.augment)}, drop_last={self.drop_last})")


__all__ = ["DataLoader", "RandomCrop", "HorizontalFlip", "AUGMENTATIONS", "parse_augment", "preprocessing_for"]
