"""Activation maps: what every conv and pool layer computes for one input image, low → high.

Scaling rule (layer outputs → pixels). Each layer is scaled on its own, with one scale shared by
all its channels (so a quiet channel looks darker than a busy one), from the layer's output
``y`` for this image (all channels, including any not drawn):

    lo = min(y),  hi = max(y)
    pixel = floor(255 · (y − lo) / (hi − lo) + 0.5)        computed in float64; black = lo, white = hi

When ``hi == lo`` (a constant output) every pixel is 0. Maps are drawn in grey (R = G = B =
pixel) and enlarged by an integer factor without interpolation, so each output value is a
square block of identical pixels; :meth:`Picture.cell` reads one map back exactly.
Conv layers are shown as they compute (before the activation function that follows them); a
global average pool, one number per channel, is shown as 1×1 maps.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError
from ..layers.conv import Conv2d
from ..layers.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from ..shapes import fmt_shape
from .common import Picture, Section, compose, zoom_for
from .inputs import prepare

SHOWN_TYPES = (Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d)


def activation_pixels(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """One layer's output (any shape) → ``(uint8 pixels of the same shape, lo, hi)`` by the
    module's scaling rule.

    Example:
        >>> activation_pixels(np.array([-1.0, 0.0, 1.0, 3.0]))[0].tolist()
        [0, 64, 128, 255]
    """
    y = np.asarray(y, np.float64)
    lo, hi = float(y.min()), float(y.max())
    if not hi > lo:
        return np.zeros(y.shape, np.uint8), lo, hi
    return np.floor(255.0 * (y - lo) / (hi - lo) + 0.5).astype(np.uint8), lo, hi


def activation_maps(model, image, layer: str | None = None) -> list[tuple[str, str, np.ndarray]]:
    """``[(layer_name, layer_type, y (H', W', C')), …]`` for every conv and pool layer, low → high
    (or only ``layer``), for one image (path, uint8 pixels or preprocessed floats; see
    :mod:`cnnkit.viz.inputs`). Evaluation mode; the model's mode is restored."""
    shown = _shown_layers(model, layer)
    x, _ = prepare(model, image)
    return _maps(model, x, shown)


def _maps(model, x: np.ndarray, shown) -> list[tuple[str, str, np.ndarray]]:
    wanted = {lay.name: type(lay).__name__ for lay in shown}
    # a global average pool gives one number per channel: shown as 1×1 maps, (C,) -> (1, 1, C)
    return [(name, wanted[name], y[0].reshape(1, 1, -1) if y.ndim == 2 else y[0])
            for name, y in model.activations(x) if name in wanted]


def _shown_layers(model, layer: str | None):
    shown = [lay for lay in model.layers if isinstance(lay, SHOWN_TYPES)]
    if layer is not None:
        names = [lay.name for lay in model.layers]
        if layer not in names:
            raise UserInputError(f"activations: no layer named {layer!r}; conv and pool layers are "
                                 f"{', '.join(lay.name for lay in shown) or 'none'}")
        shown = [lay for lay in shown if lay.name == layer]
        if not shown:
            raise UserInputError(f"activations: layer {layer!r} is {type(model[layer]).__name__}; "
                                 "activation maps are drawn for conv and pool layers")
    if not shown:
        raise UserInputError(f"activations: model {model.name!r} has no conv or pool layer")
    return shown


def plot_activations(model, image, layer: str | None = None, max_channels: int = 32,
                     columns: int = 8) -> Picture:
    """Draw the activation maps of every conv and pool layer for one image, low → high.

    Args:
        model: a built :class:`~cnnkit.Sequential`.
        image: an image path, uint8 pixels (H, W, C) or a preprocessed float array.
        layer: only this layer (a conv or pool layer's name).
        max_channels: at most this many channels per layer (the first ones); the note says so.
        columns: maps per row.

    Returns:
        A :class:`Picture` whose cells are ``("input",)`` and ``(layer_name, channel)``; a
        cell's pixels follow the scaling rule of this module.
    """
    layers = _shown_layers(model, layer)
    x, shown = prepare(model, image)
    maps = _maps(model, x, layers)
    h, w = shown.shape[:2]
    sections = [Section(f"input {fmt_shape(shown.shape)}", [(("input",), shown, None)], columns=1,
                        zoom=zoom_for(h, w, 96))]
    for name, kind, y in maps:
        pixels, lo, hi = activation_pixels(y)
        c = y.shape[2]
        n = min(c, max_channels)
        more = f"; first {n} of {c} channels" if n < c else ""
        note = f"black = {lo:.3g}, white = {hi:.3g} (one scale for the layer){more}"
        cells = [((name, j), pixels[:, :, j], str(j + 1)) for j in range(n)]
        sections.append(Section(f"{name} ({kind}) → {fmt_shape(y.shape)}", cells, columns=columns,
                                zoom=zoom_for(y.shape[0], y.shape[1], 56), note=note))
    return compose(sections)
