"""A conv layer's filters as a grid of small images.

Scaling rule (weights → pixels), the same for every layer: each filter k is scaled on its own by
its largest absolute weight ``m_k = max |w[:, :, :, k]|`` (over all its input channels), so

    pixel = floor(127.5 + 127.5 · w / m_k + 0.5)      (0 → mid-grey 128, +m_k → 255, -m_k → 0)

A filter whose weights are all zero is drawn mid-grey. First-layer filters that look at an RGB
image are drawn in colour (their three input channels as red, green and blue); deeper filters,
and filters on one-channel images, are drawn in grey, one cell per input channel.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError
from ..layers.conv import Conv2d
from ..shapes import fmt_shape
from .common import Picture, Section, compose, zoom_for


def conv_layers(model) -> list[Conv2d]:
    """The model's Conv2d layers, in order."""
    return [layer for layer in model.layers if isinstance(layer, Conv2d)]


def find_conv(model, layer: str | None = None) -> Conv2d:
    """The conv layer named ``layer`` (default: the first one).

    Raises:
        UserInputError: the model has no conv layer, no layer of that name, or that layer is not
            a conv layer; the message lists the conv layers there are.
    """
    convs = conv_layers(model)
    names = ", ".join(c.name for c in convs)
    if not convs:
        kinds = ", ".join(f"{lay.name} ({type(lay).__name__})" for lay in model.layers)
        raise UserInputError(f"filters: model {model.name!r} has no conv layer to show; its layers are {kinds}")
    if layer is None:
        return convs[0]
    for lay in model.layers:
        if lay.name == layer:
            if not isinstance(lay, Conv2d):
                raise UserInputError(f"filters: layer {layer!r} is {type(lay).__name__}, not Conv2d; "
                                     f"conv layers are {names}")
            return lay
    raise UserInputError(f"filters: no layer named {layer!r} in model {model.name!r}; conv layers are {names}")


def filter_pixels(w: np.ndarray) -> np.ndarray:
    """Weights (FH, FW, C, K) → uint8 pixels of the same shape by the module's scaling rule.

    Example:
        >>> w = np.array([-2.0, 0.0, 1.0, 2.0]).reshape(1, 4, 1, 1)
        >>> filter_pixels(w)[0, :, 0, 0].tolist()
        [0, 128, 191, 255]
    """
    w = np.asarray(w, np.float64)
    m = np.abs(w).max(axis=(0, 1, 2), keepdims=True)  # (1, 1, 1, K)
    scaled = np.divide(w, m, out=np.zeros_like(w), where=m > 0)
    return np.clip(np.floor(127.5 + 127.5 * scaled + 0.5), 0, 255).astype(np.uint8)


def plot_filters(model, layer: str | None = None, max_filters: int = 32, max_channels: int = 16) -> Picture:
    """Draw the filters of one conv layer (default: the first).

    Args:
        model: a built :class:`~cnnkit.Sequential`.
        layer: the conv layer's name (``conv1`` …); default the first conv layer.
        max_filters: at most this many filters are drawn (the first ones); the note says so.
        max_channels: for grey grids, at most this many input channels per filter.

    Returns:
        A :class:`Picture`; cell keys are ``(k,)`` for colour/one-channel filters and ``(k, c)``
        for one input channel ``c`` of filter ``k`` (0-based).

    Example:
        >>> from cnnkit import Sequential, Conv2d
        >>> m = Sequential([Conv2d(4, 3)], input_shape=(8, 8, 3))
        >>> plot_filters(m).cell((0,)).shape
        (3, 3, 3)
    """
    conv = find_conv(model, layer)
    if not conv.built:
        raise UserInputError(f"filters: {conv.name} is not built; give the model an input shape first")
    w = conv.params["weight"].value  # (FH, FW, C, K)
    fh, fw, c, k = w.shape
    pixels = filter_pixels(w)
    shown_k = min(k, max_filters)
    first = conv is conv_layers(model)[0]
    title = f"{conv.name}: {k} filters of {fmt_shape((fh, fw, c))}"
    more_k = f"; first {shown_k} of {k} filters" if shown_k < k else ""
    if c == 3 and first:
        z = zoom_for(fh, fw, 48)
        cells = [((i,), pixels[:, :, :, i], str(i + 1)) for i in range(shown_k)]
        note = ("colour = the filter's weights on the R, G, B input channels; mid-grey = 0, "
                f"each filter scaled by its largest |weight|{more_k}")
        sec = Section(title, cells, columns=min(shown_k, 8), zoom=z, note=note)
    elif c == 1:
        z = zoom_for(fh, fw, 48)
        cells = [((i,), pixels[:, :, 0, i], str(i + 1)) for i in range(shown_k)]
        note = f"grey: mid-grey = 0, white/black = ± the filter's largest |weight|{more_k}"
        sec = Section(title, cells, columns=min(shown_k, 8), zoom=z, note=note)
    else:
        shown_c = min(c, max_channels)
        z = zoom_for(fh, fw, 30)
        cells = [((i, j), pixels[:, :, j, i], None) for i in range(shown_k) for j in range(shown_c)]
        more_c = f" (first {shown_c} of {c})" if shown_c < c else ""
        note = (f"one row per filter, one column per input channel c1, c2 …{more_c}; mid-grey = 0, "
                f"white/black = ± the filter's largest |weight|{more_k}")
        sec = Section(title, cells, columns=shown_c, zoom=z, note=note,
                      row_labels=[f"filter {i + 1}" for i in range(shown_k)],
                      col_labels=[f"c{j + 1}" for j in range(shown_c)])
    return compose([sec])
