"""Pooling kernels: max, average and global average. Arrays in, arrays out; nothing held.

Layout (N, H, W, C); each channel is pooled on its own. Output size per axis is the floor of
(H + top + bottom - F)/S + 1; :mod:`cnnkit.shapes` decides whether a size is allowed.

* Max pooling pads with -inf and remembers, per output, the offset k = i·FW + j of the *first*
  maximum in row-major order (PyTorch's tie rule: a later tap must be strictly greater to win).
  Backward routes dy to that one input. In float32/float64 with at most 256 taps (every model's
  case) it runs in the compiled helper :mod:`cnnkit.kernels._native`: one pass over the input per
  window row, no copies; backward writes each input once when the windows tile the input, and
  adds into zeros otherwise. The same values, ties and NaN propagation (as ``np.maximum``) as the
  NumPy version, which other dtypes and larger windows use. Where a window holds a NaN, its
  gradient goes to the first maximum before it (PyTorch sends it to the NaN).
* Average pooling pads with zeros that count in the average, so every window divides by FH·FW
  (PyTorch's default ``count_include_pad=True``).
* The NumPy versions: one strided view (FH, FW, N, H', W', C) of the (padded) input holds, for
  each filter offset (i, j), that element of every window of every image; it is copied once into
  a tap-major array so that the FH·FW passes that follow run over long contiguous rows — no loop
  over pixels or images. When windows do not overlap (S >= F on both axes) backward writes each
  input once instead of adding into a zeroed buffer.

Layout: an input with batch-minor (CHWN) memory (see :mod:`cnnkit.kernels.layout`) is pooled in
that memory — the (C, H, W, N) array is pooled as if C were the batch and N the channels, which
is the same arithmetic — and the output keeps that layout; dx has the layout of x.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..shapes import conv_output_size
from . import _native
from .layout import from_batch_minor, in_frame, is_batch_minor, taps_view, to_batch_minor

Pads = tuple[tuple[int, int], tuple[int, int]]


def _geometry(x_shape, size, stride, pads):
    """(padded H, padded W, H', W') for the floor of (H + P - F)/S + 1."""
    _, h, w, _ = x_shape
    (pt, pb), (pl, pr) = pads
    return (h + pt + pb, w + pl + pr, conv_output_size(h, size[0], stride[0], (pt, pb), rounding="floor"),
            conv_output_size(w, size[1], stride[1], (pl, pr), rounding="floor"))


def _pad(x: np.ndarray, pads: Pads, value: float) -> np.ndarray:
    """``x`` with ``value`` rows/cols around it (``x`` itself when there is no padding)."""
    (pt, pb), (pl, pr) = pads
    if not (pt or pb or pl or pr):
        return x
    n, h, w, c = x.shape
    xp = np.full((n, h + pt + pb, w + pl + pr, c), value, x.dtype)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    return xp


def _taps(a: np.ndarray, size, stride, out_hw, writeable: bool = False) -> np.ndarray:
    """View (FH, FW, N, H', W', C) of ``a``: [i, j] holds the element at offset (i, j) of every
    window. Writeable only where windows do not overlap (each element then appears once)."""
    return taps_view(a, size, stride, out_hw, writeable=writeable)


def _tap_major(xp: np.ndarray, size, stride, out_hw) -> np.ndarray:
    """Contiguous (FH·FW, N, H', W', C) copy of the windows' elements, one tap per row.

    One copy with short inner runs, after which every pass runs over long contiguous rows (a ufunc
    over a strided view with C = 6 would run its inner loop six elements at a time).
    """
    fh, fw = size
    return np.ascontiguousarray(_taps(xp, size, stride, out_hw)).reshape(fh * fw, xp.shape[0], *out_hw, xp.shape[3])


def _scatter(dxp: np.ndarray, g: np.ndarray, size, stride, out_hw, non_overlapping: bool) -> None:
    """Add the per-tap gradients ``g`` (FH·FW, N, H', W', C) into the windows of ``dxp``."""
    fh, fw = size
    if non_overlapping:  # every input element is in at most one window: one strided assignment
        _taps(dxp, size, stride, out_hw, writeable=True)[...] = g.reshape(fh, fw, *g.shape[1:])
        return
    (sh, sw), (ho, wo) = stride, out_hw
    for k in range(fh * fw):  # overlapping windows: add tap by tap
        i, j = divmod(k, fw)
        dxp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :] += g[k]


def _grad_buffer(x_shape, dtype, size, stride, pads, out_hw, non_overlapping: bool) -> np.ndarray:
    """Padded dx buffer; uninitialised only when the windows tile it exactly (every element is
    then written once), zeros otherwise."""
    n, h, w, c = x_shape
    (pt, pb), (pl, pr) = pads
    hp, wp = h + pt + pb, w + pl + pr
    tiles = non_overlapping and tuple(size) == tuple(stride) and (hp, wp) == (out_hw[0] * size[0], out_hw[1] * size[1])
    return (np.empty if tiles else np.zeros)((n, hp, wp, c), dtype)


def _crop(dxp: np.ndarray, x_shape, pads: Pads) -> np.ndarray:
    (pt, _), (pl, _) = pads
    if dxp.shape == tuple(x_shape):
        return dxp
    return np.ascontiguousarray(dxp[:, pt:pt + x_shape[1], pl:pl + x_shape[2], :])


def _kernel_order(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(array, batch_minor)``: a batch-minor input as its (C, H, W, N) array (pooled with C in
    the role of the batch and N in that of the channels), anything else as it is."""
    if is_batch_minor(x) and not x.flags.c_contiguous:
        return x.transpose(3, 1, 2, 0), True
    return x, False


def _public(a: np.ndarray, batch_minor: bool) -> np.ndarray:
    """Back from :func:`_kernel_order`'s order to the (N, H, W, C) shape."""
    return from_batch_minor(a) if batch_minor else a


# --------------------------------------------------------------------------- max
def maxpool2d_forward(x: np.ndarray, size, stride, pads: Pads = ((0, 0), (0, 0)), *,
                      frame: tuple[np.ndarray, int, int] | None = None) -> tuple[np.ndarray, Any]:
    """Max over FH×FW windows with stride (SH, SW); padding is -inf. Returns ``(y, cache)``.

    ``frame``: the next conv's zero-bordered input buffer (see
    :func:`cnnkit.kernels.conv.direct_input_frame`); a batch-minor input's y is then written into
    its interior and returned as that view.

    Shape:
        x: (N, H, W, C) -> y: (N, H', W', C),  H' = floor((H + top + bottom - FH)/SH) + 1

    Example:
        >>> x = np.array([1., 3., 3., 2.]).reshape(1, 2, 2, 1)
        >>> y, (argmax, *_) = maxpool2d_forward(x, (2, 2), (2, 2))
        >>> float(y[0, 0, 0, 0]), int(argmax[0, 0, 0, 0])   # the first of the tied 3s
        (3.0, 1)
    """
    a, bm = _kernel_order(x)
    y, cache = _max_forward(a, tuple(size), tuple(stride), pads, frame if bm else None)
    return _public(y, bm), (*cache, bm)


def _native_max(dtype, size) -> bool:
    """Max pooling in the compiled helper: float32/float64, at most 256 taps (a uint8 argmax)."""
    return dtype in (np.float32, np.float64) and size[0] * size[1] <= 256


def _native_geometry(x_shape, size, stride, pads, out_hw):
    return tuple(x_shape), tuple(size), tuple(stride), (pads[0][0], pads[1][0]), tuple(out_hw)


def _native_max_values(x, size, stride, pads, out_hw, argmax, frame):
    """y of the compiled max pooling (argmax filled when given), in ``frame``'s interior if it fits."""
    x = np.ascontiguousarray(x)
    shape = (x.shape[0], *out_hw, x.shape[3])
    y = in_frame(frame, shape) if frame is not None and frame[0].dtype == x.dtype else None
    geometry = _native_geometry(x.shape, size, stride, pads, out_hw)
    if y is None:
        y = np.empty(shape, x.dtype)
        _native.maxpool_forward(x, y, argmax, *geometry)
    else:
        buf, top, left = frame
        _native.maxpool_forward(x, buf, argmax, *geometry, (*buf.shape[1:3], top, left))
    return y


def _max_forward(x, size, stride, pads, frame=None):
    _, _, ho, wo = _geometry(x.shape, size, stride, pads)
    if _native_max(x.dtype, size):
        argmax = np.empty((x.shape[0], ho, wo, x.shape[3]), np.uint8)  # offset k = i·FW + j of the first max
        y = _native_max_values(x, size, stride, pads, (ho, wo), argmax, frame)
        return y, (argmax, x.shape, size, stride, tuple(map(tuple, pads)))
    taps = _tap_major(_pad(x, pads, -np.inf), size, stride, (ho, wo))
    y = taps[0].copy()
    index = np.min_scalar_type(len(taps) - 1).type
    argmax = np.zeros(y.shape, index)  # offset k = i·FW + j of the first maximum
    wins = np.empty(y.shape, bool)
    scratch = np.empty(y.shape, index)
    for k in range(1, len(taps)):
        np.greater(taps[k], y, out=wins)  # strictly greater: ties keep the earlier (row-major) tap
        np.maximum(y, taps[k], out=y)
        # argmax = k where tap k wins: k exceeds every earlier index, so a max does it without a
        # masked write (np.where/copyto(where=) on a random mask is ~20× slower)
        np.multiply(wins.view(np.uint8), index(k), out=scratch)
        np.maximum(argmax, scratch, out=argmax)
    return y, (argmax, x.shape, size, stride, tuple(map(tuple, pads)))


def maxpool2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx: each dy goes to the input that was its window's (first) maximum; the rest get 0."""
    argmax, x_shape, size, stride, pads, bm = cache
    dy = to_batch_minor(dy) if bm else dy
    out_hw = argmax.shape[1:3]
    if _native_max(dy.dtype, size) and argmax.dtype == np.uint8:
        dx = np.empty(x_shape, dy.dtype)
        _native.maxpool_backward(np.ascontiguousarray(dy), argmax, dx,
                                 *_native_geometry(x_shape, size, stride, pads, out_hw))
        return _public(dx, bm)
    fh, fw = size
    non_overlapping = stride[0] >= fh and stride[1] >= fw
    g = np.empty((fh * fw, *argmax.shape), dy.dtype)
    mask = np.empty(argmax.shape, bool)
    for k in range(fh * fw):
        np.equal(argmax, k, out=mask)
        np.multiply(dy, mask, out=g[k])
    dxp = _grad_buffer(x_shape, dy.dtype, size, stride, pads, out_hw, non_overlapping)
    _scatter(dxp, g, size, stride, out_hw, non_overlapping)
    return _public(_crop(dxp, x_shape, pads), bm)


def maxpool2d_values(x: np.ndarray, size, stride, pads: Pads = ((0, 0), (0, 0)), *,
                     frame: tuple[np.ndarray, int, int] | None = None) -> np.ndarray:
    """The ``y`` of :func:`maxpool2d_forward` without the argmax bookkeeping (inference), written
    into ``frame`` as there.

    Example:
        >>> maxpool2d_values(np.array([1., 3., 3., 2.]).reshape(1, 2, 2, 1), (2, 2), (2, 2))[0, 0, 0, 0]
        np.float64(3.0)
    """
    a, bm = _kernel_order(x)
    size, stride = tuple(size), tuple(stride)
    _, _, ho, wo = _geometry(a.shape, size, stride, pads)
    if _native_max(a.dtype, size):
        return _public(_native_max_values(a, size, stride, pads, (ho, wo), None, frame if bm else None), bm)
    view = _taps(_pad(a, pads, -np.inf), size, stride, (ho, wo))  # (FH, FW, N, H', W', C)
    y = view[0, 0].copy()
    for k in range(1, size[0] * size[1]):
        np.maximum(y, view[divmod(k, size[1])], out=y)
    return _public(y, bm)


# --------------------------------------------------------------------------- average
def avgpool2d_forward(x: np.ndarray, size, stride, pads: Pads = ((0, 0), (0, 0))) -> tuple[np.ndarray, Any]:
    """Mean over FH×FW windows, padded zeros included (divide by FH·FW). Returns ``(y, cache)``.

    Shape:
        x: (N, H, W, C) -> y: (N, H', W', C),  H' = floor((H + top + bottom - FH)/SH) + 1

    Example:
        >>> y, _ = avgpool2d_forward(np.ones((1, 2, 2, 1)), (2, 2), (1, 1), ((0, 1), (0, 1)))
        >>> y[0, :, :, 0]
        array([[1.  , 0.5 ],
               [0.5 , 0.25]])
    """
    a, bm = _kernel_order(x)
    y, cache = _avg_forward(a, tuple(size), tuple(stride), pads)
    return _public(y, bm), (*cache, bm)


def _avg_forward(x, size, stride, pads):
    _, _, ho, wo = _geometry(x.shape, size, stride, pads)
    taps = _tap_major(_pad(x, pads, 0), size, stride, (ho, wo))
    y = taps[0].copy()
    for k in range(1, len(taps)):  # summed in row-major tap order
        y += taps[k]
    y /= x.dtype.type(len(taps))
    return y, (x.shape, (ho, wo), size, stride, tuple(map(tuple, pads)))


def avgpool2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx: each input receives dy/(FH·FW) from every window that covers it."""
    x_shape, out_hw, size, stride, pads, bm = cache
    dy = to_batch_minor(dy) if bm else dy
    fh, fw = size
    g = dy / dy.dtype.type(fh * fw)
    non_overlapping = stride[0] >= fh and stride[1] >= fw
    dxp = _grad_buffer(x_shape, dy.dtype, size, stride, pads, out_hw, non_overlapping)
    _scatter(dxp, np.broadcast_to(g, (fh * fw, *g.shape)), size, stride, out_hw, non_overlapping)
    return _public(_crop(dxp, x_shape, pads), bm)


# --------------------------------------------------------------------------- global average
def global_avgpool_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """Mean of each channel over H×W.

    Shape:
        x: (N, H, W, C) -> y: (N, C)
    """
    return x.mean(axis=(1, 2), dtype=x.dtype), x.shape


def global_avgpool_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx[n, h, w, c] = dy[n, c] / (H·W)."""
    n, h, w, c = cache
    dx = np.empty(cache, dy.dtype)
    dx[...] = (dy / dy.dtype.type(h * w))[:, None, None, :]
    return dx
