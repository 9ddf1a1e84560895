"""Turning what the user gives (an image file, raw pixels, or a preprocessed array) into the
model's input and into something to show.

Rules:

* a **path** is read and converted to the model's H×W×C by the one rule of
  :mod:`cnnkit.preprocess` (the rule ``cnnkit predict`` uses); unreadable files raise
  :class:`~cnnkit.ImageError`. It is then treated as raw pixels.
* a **uint8 array** (H, W, C) holds raw pixels: the model's ``preprocessing``
  (``x = (x_uint8 · scale − mean) / std``; none means ``scale = 1/255``) is applied by
  :func:`cnnkit.preprocess.apply_preprocessing`.
* a **float array** (H, W, C) is taken as already preprocessed (what ``model.predict`` expects);
  it is shown min–max scaled.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ShapeError
from ..preprocess import apply_preprocessing, to_array


def read_image(path: str | os.PathLike, input_shape) -> np.ndarray:
    """Read an image file as uint8 (H, W, C) for a model with ``input_shape`` (H, W, C)."""
    return to_array(path, input_shape)


def preprocess(model, pixels: np.ndarray) -> np.ndarray:
    """Raw uint8 pixels (..., H, W, C) → float input of the model's dtype, by its preprocessing."""
    return apply_preprocessing(pixels, model.preprocessing, model.dtype.type)


def display_pixels(x: np.ndarray) -> np.ndarray:
    """A float image (H, W, C) min–max scaled to uint8 for display (one scale for all channels)."""
    x = np.asarray(x, np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, np.uint8)
    return np.floor(255.0 * (x - lo) / (hi - lo) + 0.5).astype(np.uint8)


def prepare(model, image) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (path, uint8 pixels or preprocessed floats) → ``(x (1, H, W, C), shown)``; ``shown``
    is uint8 (H, W, 1) or (H, W, 3) (other channel counts are shown as their mean)."""
    if model.input_shape is None:
        raise ShapeError(f"{model.name} is not built: it needs an input shape")
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, model.input_shape)
    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2 and model.input_shape[2] == 1:
        arr = arr[:, :, None]
    if tuple(arr.shape) != tuple(model.input_shape):
        raise ShapeError(f"{model.name} takes one image of {tuple(model.input_shape)} (H, W, C); "
                         f"received an array of shape {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        x, shown = preprocess(model, arr)[None], arr
    elif arr.dtype.kind == "f":
        x, shown = arr.astype(model.dtype)[None], display_pixels(arr)
    else:
        raise ShapeError(f"expected uint8 pixels or a float (preprocessed) image; received dtype {arr.dtype}")
    if shown.shape[2] not in (1, 3):  # neither grey nor RGB: show the mean of the channels
        shown = np.floor(shown.mean(axis=2, keepdims=True) + 0.5).astype(np.uint8)
    return x, shown
