"""Fully-connected ⇄ convolution, both ways, exactly.

The lecture: a conv layer is a fully-connected layer whose weight matrix is mostly zero and whose
non-zero entries are shared; and a fully-connected layer on an H×W×C volume is an H×W conv with one
filter per output. So:

* :func:`conv_as_linear` turns a Conv2d on a given input size into the equivalent
  :class:`~cnnkit.layers.Linear` on the flattened volume (weight (H·W·C, H'·W'·K)); outputs are
  identical (up to float rounding in the order of the sums).
* :func:`to_fully_convolutional` turns a classifier whose head is Flatten → Linear … into a model of
  convolutions only: the first Linear after the Flatten of an H×W×C volume becomes an H×W conv with one
  filter per output (our Flatten is row-major (H, W, C), so the weight is a plain reshape), later
  Linears become 1×1 convs. On the training-size input the outputs equal the original's; on a larger
  image it produces a map of class scores, one cell per window position.

Score-map arithmetic (strict, like every size in cnnkit): with total stride S_total (the product of
all strides) the map has (W_big − W_train)/S_total + 1 cells per axis, and every layer's size must
divide on the big input; :func:`score_map_shape` refuses sizes that do not and names the nearest that
do, or :func:`crop_to_fit` crops explicitly.

For models whose convs are unpadded (``shapes-net``), cell (i, j) of the map equals the original
classifier run on the crop ``x[i·S : i·S + H_train, j·S : j·S + W_train]`` exactly. For padded models
the two differ near window borders: a crop sees zeros where the large image has pixels
(:func:`window_crop_difference` measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import shapes
from .errors import ShapeError, SpecError
from .layers import Conv2d, Flatten, Linear
from .model import Sequential
from .spec import model_from_config


# ----------------------------------------------------------------------------- conv → FC
@dataclass(frozen=True)
class ConvAsLinear:
    """The equivalent fully-connected layer of a conv layer and the counts that compare them."""

    linear: Linear
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    conv_params: int         # K(FH·FW·C + 1)
    linear_params: int       # (H·W·C + 1)·H'·W'·K, what a dense layer stores
    linear_weights: int      # H·W·C · H'·W'·K, the lecture's "fully-connected" figure
    nonzero_weights: int     # entries of the dense weight that are not structurally zero

    def describe(self) -> str:
        fmt = shapes.fmt_int
        return (f"conv on {shapes.fmt_shape(self.input_shape)} → {shapes.fmt_shape(self.output_shape)}\n"
                f"  conv parameters:            {fmt(self.conv_params)}\n"
                f"  fully-connected weights:    {fmt(self.linear_weights)} "
                f"({fmt(self.linear_params)} with biases)\n"
                f"  non-zero weights in it:     {fmt(self.nonzero_weights)} "
                f"({100 * self.nonzero_weights / self.linear_weights:.3f} %), each one of the "
                f"{fmt(self.conv_params - (self.output_shape[2] if self.linear.bias else 0))} shared conv weights")


MAX_DENSE_BYTES = 1 << 30  # conv_as_linear refuses to allocate a dense weight larger than this


def dense_weight_bytes(conv: Conv2d, input_shape: Sequence[int], itemsize: int = 8) -> int:
    """Bytes of the dense (H·W·C, H'·W'·K) weight that :func:`conv_as_linear` would build."""
    return shapes.fc_equivalent_weights(input_shape, conv.output_shape(tuple(input_shape))) * itemsize


def conv_as_linear(conv: Conv2d, input_shape: Sequence[int] | None = None,
                   max_bytes: int = MAX_DENSE_BYTES) -> ConvAsLinear:
    """The fully-connected layer computing exactly what ``conv`` computes on ``input_shape``.

    ``conv`` must be built (it carries the weights); ``input_shape`` defaults to its built one.
    The dense weight has one row per input value and one column per output value, both in
    row-major (H, W, C) order, so ``linear(flatten(x)) == flatten(conv(x))``. It is refused
    (ShapeError) when it would take more than ``max_bytes`` (1 GiB by default).

    Example:
        >>> c = Conv2d(10, 5, padding=2); _ = c.build((32, 32, 3))
        >>> conv_as_linear(c).linear_weights
        31457280
    """
    if not isinstance(conv, Conv2d):
        raise SpecError(f"conv_as_linear expects a Conv2d layer, received {type(conv).__name__}")
    if not conv.built:
        raise ShapeError(f"{conv.label} is not built: call build(input_shape) first")
    in_shape = tuple(input_shape or conv.input_shape)
    if in_shape[2] != conv.input_shape[2]:
        raise ShapeError(f"{conv.label}: its weights take {conv.input_shape[2]} channels, received input {in_shape}")
    out_shape = conv.output_shape(in_shape)
    need = dense_weight_bytes(conv, in_shape, conv.dtype.itemsize)
    if need > max_bytes:
        raise ShapeError(f"{conv.label} on {shapes.fmt_shape(in_shape)}: the equivalent fully-connected weight "
                         f"has {shapes.fmt_int(need // conv.dtype.itemsize)} entries ({shapes.fmt_bytes(need)}), "
                         f"more than the {shapes.fmt_bytes(max_bytes)} limit (max_bytes)")
    h, w, c = in_shape
    ho, wo, k = out_shape
    fh, fw = conv.filter_hw
    sh, sw = conv.stride_hw
    dh, dw = conv.dilation_hw
    (pt, _), (pl, _) = conv.resolved_padding(in_shape)
    weight = conv.params["weight"].value  # (FH, FW, C, K)

    dense = np.zeros((h * w * c, ho * wo * k), dtype=weight.dtype)
    # Every (output position, filter offset) pair links input pixel (i·S + u·D − P, j·S + v·D − P)
    # to output (i, j); offsets that land in the padding link nothing (the zero padding).
    oi, oj, u, v = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(fh), np.arange(fw), indexing="ij")
    ii = oi * sh + u * dh - pt
    jj = oj * sw + v * dw - pl
    inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
    oi, oj, u, v, ii, jj = (a[inside] for a in (oi, oj, u, v, ii, jj))
    cc = np.arange(c)[:, None]
    kk = np.arange(k)[None, :]
    rows = ((ii * w + jj) * c)[:, None, None] + cc[None]              # (links, C, 1)
    cols = ((oi * wo + oj) * k)[:, None, None] + kk[None]             # (links, 1, K)
    dense[rows, cols] = weight[u, v][:, :, :]                          # weight[u, v]: (links, C, K)

    linear = Linear(ho * wo * k, bias=conv.bias, name=f"{conv.label}_as_fc")
    linear.build((h * w * c,), dtype=weight.dtype)
    linear.params["weight"].value[...] = dense
    if conv.bias:
        linear.params["bias"].value[...] = np.tile(conv.params["bias"].value, ho * wo)
    return ConvAsLinear(
        linear=linear, input_shape=in_shape, output_shape=out_shape,
        conv_params=conv.param_count(in_shape),
        linear_params=linear.param_count((h * w * c,)),
        linear_weights=shapes.fc_equivalent_weights(in_shape, out_shape),
        nonzero_weights=int(inside.sum()) * c * k,
    )


# ----------------------------------------------------------------------------- FC → conv
def to_fully_convolutional(model: Sequential, input_shape: Sequence[int] | None = None) -> Sequential:
    """The same classifier with its fully-connected head turned into convolutions.

    Args:
        model: a built Sequential whose layers after the (single) Flatten are Linear and
            element-wise layers (ReLU, Dropout, BatchNorm …).
        input_shape: (H, W, C) to build the converted model for; default the model's own.

    Returns:
        A new Sequential (weights copied, the original untouched) with no Flatten: the first
        Linear becomes Conv2d(outputs, size=(H, W)) on the H×W×C volume it flattened; later Linears
        become Conv2d(outputs, 1). Its output is (H', W', classes); on the training-size input
        that is 1×1×classes, equal to the original's logits.
    """
    if not model.built:
        raise ShapeError(f"{model.name} is not built: pass input_shape when you create it")
    layers_cfg = []
    state = {}
    flat_volume = None
    found_linear = False
    for layer, in_shape, _ in model.shapes():
        if isinstance(layer, Flatten):
            if flat_volume is not None:
                raise SpecError(f"{model.name}: more than one Flatten; cannot convert")
            if len(in_shape) != 3:
                raise SpecError(f"{model.name}: {layer.name} flattens {in_shape}, not an H×W×C volume")
            flat_volume = in_shape
            continue
        cfg = layer.config()
        if isinstance(layer, Linear):
            if flat_volume is None:
                raise SpecError(f"{model.name}: {layer.name} (Linear) is not after a Flatten; cannot convert")
            fh, fw, c = flat_volume if not found_linear else (1, 1, in_shape[0])
            cfg = {"type": "conv2d", "name": layer.name, "filters": layer.outputs, "size": [fh, fw],
                   "bias": layer.bias}
            state[f"{layer.name}.weight"] = layer.params["weight"].value.reshape(fh, fw, c, layer.outputs)
            if layer.bias:
                state[f"{layer.name}.bias"] = layer.params["bias"].value
            found_linear = True
        else:
            for key, p in layer.params.items():
                state[f"{layer.name}.{key}"] = p.value
            for key, b in layer.buffers.items():
                state[f"{layer.name}.{key}"] = b
        layers_cfg.append(cfg)
    if not found_linear:
        raise SpecError(f"{model.name} has no fully-connected head (Flatten → Linear) to convert")
    cfg = {"name": f"{model.name}-fcn", "layers": layers_cfg, "dtype": model.dtype.name}
    shape = tuple(input_shape) if input_shape is not None else model.input_shape
    fcn = model_from_config(cfg, shape)
    fcn.load_state_dict(state)
    fcn.class_names, fcn.preprocessing = model.class_names, model.preprocessing
    fcn.train_input_shape = model.input_shape
    if not model.training:
        fcn.eval()
    return fcn


def total_stride(model: Sequential) -> tuple[int, int]:
    """Product of all strides (rows, cols): the step between neighbouring score-map windows."""
    field = shapes.Field()
    for layer, in_shape, _ in model.shapes():
        field = layer.field(field, in_shape)
    return field.jump


def score_map_shape(fcn: Sequential, input_shape: Sequence[int], train_shape: Sequence[int]) -> tuple[int, int]:
    """(rows, cols) of the class-score map on ``input_shape``: (W_big − W_train)/S_total + 1.

    Refuses (ShapeError) an input on which some layer's size does not divide, naming the nearest
    sizes that do.
    """
    h, w, c = input_shape
    th, tw, tc = train_shape
    if c != tc or h < th or w < tw:
        raise ShapeError(f"score map: the input {shapes.fmt_shape(input_shape)} must have {tc} channels and be "
                         f"at least the training size {shapes.fmt_shape(train_shape)}")
    try:
        out = fcn.output_shape(tuple(input_shape))
    except ShapeError as e:
        sh, sw = total_stride(fcn)
        axis = 0 if "(height)" in str(e) else 1
        size, train, stride = (h, th, sh) if axis == 0 else (w, tw, sw)
        layer_txt = str(e).split(" is not whole")[0]
        near = nearest_fitting_sizes(fcn, input_shape, train_shape)
        raise ShapeError(
            f"score map on {shapes.fmt_shape(input_shape)}: windows of {th}×{tw} at stride {stride} give "
            f"({size} - {train})/{stride} + 1 = {(size - train) / stride + 1:.2f} positions per "
            f"{'column' if axis == 0 else 'row'}, not whole ({layer_txt}). Sizes that fit: "
            f"{', '.join(shapes.fmt_shape(s) for s in near) or 'none nearby'}; or crop to fit") from None
    return out[0], out[1]


def fits(fcn: Sequential, input_shape: Sequence[int]) -> bool:
    try:
        fcn.output_shape(tuple(input_shape))
        return True
    except ShapeError:
        return False


def _axis_fits(fcn: Sequential, size: int, axis: int, train_shape: Sequence[int]) -> bool:
    # Height and width are independent in the arithmetic: probe one axis with the other at the
    # training size (which always fits).
    probe = (size, train_shape[1], train_shape[2]) if axis == 0 else (train_shape[0], size, train_shape[2])
    return fits(fcn, probe)


def _axis_search(fcn, size, axis, train_shape, direction, limit=256):
    for s in range(size, size + direction * limit, direction):
        if s < train_shape[axis]:
            return None
        if _axis_fits(fcn, s, axis, train_shape):
            return s
    return None


def nearest_fitting_sizes(fcn: Sequential, input_shape: Sequence[int], train_shape: Sequence[int]
                          ) -> list[tuple[int, int, int]]:
    """The fitting sizes just below and just above ``input_shape``."""
    h, w, c = input_shape
    found = []
    for direction in (-1, 1):
        hh = _axis_search(fcn, h, 0, train_shape, direction)
        ww = _axis_search(fcn, w, 1, train_shape, direction)
        if hh is not None and ww is not None:
            found.append((hh, ww, c))
    return found


def crop_to_fit(fcn: Sequential, x: np.ndarray, train_shape: Sequence[int]) -> np.ndarray:
    """Crop images (N, H, W, C) at the bottom/right to the largest size the model divides."""
    _, h, w, c = x.shape
    hh = _axis_search(fcn, h, 0, train_shape, -1)
    ww = _axis_search(fcn, w, 1, train_shape, -1)
    if hh is None or ww is None:
        raise ShapeError(f"no crop of {shapes.fmt_shape((h, w, c))} fits {fcn.name} "
                         f"(training size {shapes.fmt_shape(train_shape)})")
    return x[:, :hh, :ww]


def for_input(fcn: Sequential, input_shape: Sequence[int]) -> Sequential:
    """The same fully-convolutional model (shared weights copied) built for another input size."""
    if tuple(input_shape) == fcn.input_shape:
        return fcn
    other = model_from_config(fcn.config(), tuple(input_shape))
    other.load_state_dict(fcn.state_dict())
    other.class_names, other.preprocessing = fcn.class_names, fcn.preprocessing
    other.train_input_shape = fcn.train_input_shape or fcn.input_shape
    if not fcn.training:
        other.eval()
    return other


@dataclass(frozen=True)
class ScoreMap:
    """Class scores per window: ``scores[n, i, j, k]`` for the window whose top-left input pixel is
    ``(i·stride[0] + offset[0], j·stride[1] + offset[1])`` and whose size is ``window``."""

    scores: np.ndarray
    stride: tuple[int, int]
    window: tuple[int, int]
    offset: tuple[int, int] = (0, 0)

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of cell (i, j)'s window, in input pixels."""
        y0 = i * self.stride[0] + self.offset[0]
        x0 = j * self.stride[1] + self.offset[1]
        return x0, y0, x0 + self.window[1], y0 + self.window[0]


def score_map(model: Sequential, x: np.ndarray, crop: bool = False) -> ScoreMap:
    """Class scores (logits) of every window of the training size in ``x`` (N, H, W, C), in one
    fully-convolutional pass. ``model`` is the original classifier or an already converted one."""
    if x.ndim != 4:
        raise ShapeError(f"score_map expects images (N, H, W, C), received {x.shape}")
    train_shape = model.train_input_shape or model.input_shape
    fcn = model if not any(isinstance(l, Flatten) for l in model) else to_fully_convolutional(model)
    if crop:
        x = crop_to_fit(fcn, x, train_shape)
    score_map_shape(fcn, x.shape[1:], train_shape)
    big = for_input(fcn, x.shape[1:])
    scores = big.logits(x)
    return ScoreMap(scores, total_stride(big), (train_shape[0], train_shape[1]))


def window_crops(x: np.ndarray, sm_shape: tuple[int, int], stride: tuple[int, int], window: tuple[int, int]) -> np.ndarray:
    """Every window crop, (N·rows·cols, H_train, W_train, C), in score-map order."""
    n = x.shape[0]
    rows, cols = sm_shape
    crops = np.empty((n, rows, cols, window[0], window[1], x.shape[3]), x.dtype)
    for i in range(rows):
        for j in range(cols):
            crops[:, i, j] = x[:, i * stride[0]: i * stride[0] + window[0], j * stride[1]: j * stride[1] + window[1]]
    return crops.reshape(-1, window[0], window[1], x.shape[3])


def window_crop_difference(model: Sequential, x: np.ndarray) -> float:
    """Largest |score-map cell − classifier on the crop|, relative to the largest |score|.

    Zero (up to rounding) for unpadded models; for padded ones it measures what the zeros a crop
    sees at its border change.
    """
    sm = score_map(model, x)
    crops = window_crops(x, sm.scores.shape[1:3], sm.stride, sm.window)
    direct = model.logits(crops).reshape(sm.scores.shape)
    return float(np.abs(sm.scores - direct).max() / max(np.abs(direct).max(), 1e-300))
