"""Pooling kernels: max, average and global average. Arrays in, arrays out; nothing held.

Layout (N, H, W, C); each channel is pooled on its own. Output size per axis is the floor of
(H + top + bottom - F)/S + 1; :mod:`cnnkit.shapes` decides whether a size is allowed.

All windows are visited as FH·FW strided views of the (padded) input, one per filter offset
(i, j), each covering every window of every image at once — no loop over pixels or images.

* Max pooling pads with -inf and remembers, per output, the offset k = i·FW + j of the *first*
  maximum in row-major order (PyTorch's tie rule: a later tap must be strictly greater to win).
  Backward routes dy to that one input.
* Average pooling pads with zeros that count in the average, so every window divides by FH·FW
  (PyTorch's default ``count_include_pad=True``).
* When windows do not overlap (S >= F on both axes) backward writes each input once instead of
  adding into a zeroed buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Pads = tuple[tuple[int, int], tuple[int, int]]


def _geometry(x_shape, size, stride, pads):
    """(padded H, padded W, H', W') for the floor of (H + P - F)/S + 1."""
    _, h, w, _ = x_shape
    (pt, pb), (pl, pr) = pads
    hp, wp = h + pt + pb, w + pl + pr
    return hp, wp, (hp - size[0]) // stride[0] + 1, (wp - size[1]) // stride[1] + 1


def _pad(x: np.ndarray, pads: Pads, value: float) -> np.ndarray:
    """``x`` with ``value`` rows/cols around it (``x`` itself when there is no padding)."""
    (pt, pb), (pl, pr) = pads
    if not (pt or pb or pl or pr):
        return x
    n, h, w, c = x.shape
    xp = np.full((n, h + pt + pb, w + pl + pr, c), value, x.dtype)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    return xp


def _tap(a: np.ndarray, i: int, j: int, stride, out_hw) -> np.ndarray:
    """View (N, H', W', C) of the element at offset (i, j) of every window of ``a``."""
    (sh, sw), (ho, wo) = stride, out_hw
    return a[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]


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


# --------------------------------------------------------------------------- max
def maxpool2d_forward(x: np.ndarray, size, stride, pads: Pads = ((0, 0), (0, 0))) -> tuple[np.ndarray, Any]:
    """Max over FH×FW windows with stride (SH, SW); padding is -inf. Returns ``(y, cache)``.

    Shape:
        x: (N, H, W, C) -> y: (N, H', W', C),  H' = floor((H + top + bottom - FH)/SH) + 1

    Example:
        >>> x = np.array([1., 3., 3., 2.]).reshape(1, 2, 2, 1)
        >>> y, (argmax, *_) = maxpool2d_forward(x, (2, 2), (2, 2))
        >>> float(y[0, 0, 0, 0]), int(argmax[0, 0, 0, 0])   # the first of the tied 3s
        (3.0, 1)
    """
    size, stride = tuple(size), tuple(stride)
    _, _, ho, wo = _geometry(x.shape, size, stride, pads)
    xp = _pad(x, pads, -np.inf)
    fh, fw = size
    y = np.array(_tap(xp, 0, 0, stride, (ho, wo)), copy=True, order="C")
    argmax = np.zeros(y.shape, np.min_scalar_type(fh * fw - 1))  # offset k = i·FW + j of the max
    wins = np.empty(y.shape, bool)
    for k in range(1, fh * fw):
        v = _tap(xp, k // fw, k % fw, stride, (ho, wo))
        np.greater(v, y, out=wins)  # strictly greater: ties keep the earlier (row-major) tap
        np.copyto(y, v, where=wins)
        np.copyto(argmax, k, where=wins, casting="unsafe")
    return y, (argmax, x.shape, size, stride, tuple(map(tuple, pads)))


def maxpool2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx: each dy goes to the input that was its window's (first) maximum; the rest get 0."""
    argmax, x_shape, size, stride, pads = cache
    out_hw = argmax.shape[1:3]
    fh, fw = size
    non_overlapping = stride[0] >= fh and stride[1] >= fw
    dxp = _grad_buffer(x_shape, dy.dtype, size, stride, pads, out_hw, non_overlapping)
    mask = np.empty(argmax.shape, bool)
    for k in range(fh * fw):
        dst = _tap(dxp, k // fw, k % fw, stride, out_hw)
        np.equal(argmax, k, out=mask)
        if non_overlapping:
            np.multiply(dy, mask, out=dst)  # each input is in at most one window: assign
        else:
            np.add(dst, dy, out=dst, where=mask)
    return _crop(dxp, x_shape, pads)


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
    size, stride = tuple(size), tuple(stride)
    _, _, ho, wo = _geometry(x.shape, size, stride, pads)
    xp = _pad(x, pads, 0)
    fh, fw = size
    y = np.array(_tap(xp, 0, 0, stride, (ho, wo)), copy=True, order="C")
    for k in range(1, fh * fw):
        np.add(y, _tap(xp, k // fw, k % fw, stride, (ho, wo)), out=y)
    y /= x.dtype.type(fh * fw)
    return y, (x.shape, (ho, wo), size, stride, tuple(map(tuple, pads)))


def avgpool2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx: each input receives dy/(FH·FW) from every window that covers it."""
    x_shape, out_hw, size, stride, pads = cache
    fh, fw = size
    g = dy / dy.dtype.type(fh * fw)
    non_overlapping = stride[0] >= fh and stride[1] >= fw
    dxp = _grad_buffer(x_shape, dy.dtype, size, stride, pads, out_hw, non_overlapping)
    for k in range(fh * fw):
        dst = _tap(dxp, k // fw, k % fw, stride, out_hw)
        if non_overlapping:
            dst[...] = g
        else:
            dst += g
    return _crop(dxp, x_shape, pads)


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
