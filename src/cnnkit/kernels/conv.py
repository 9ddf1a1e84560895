"""2-D convolution kernels: im2col + one BLAS matrix multiply per call, over the whole batch.

Layout: x (N, H, W, C), w (FH, FW, C, K) (HWIO), y (N, H', W', K). The output size is the floor of
the formula (H + top + bottom - F_eff)/S + 1 with F_eff = D(F - 1) + 1; :mod:`cnnkit.shapes`
decides whether a size is allowed, the kernel only computes.

Forward (im2col, Chellapilla et al. 2006): one strided *view* of the padded input with shape
(N, H', W', FH, FW, C) is copied once into a contiguous column matrix (N·H'·W', FH·FW·C), and
y = cols · w2d + b is a single GEMM.

Backward:

* dw = colsᵀ · dy2d (one GEMM), db = 1ᵀ · dy2d (through BLAS rather than a narrow sum).
* dx at stride 1 is the convolution of the padded dy with the spatially flipped, channel-transposed
  kernel (the "full" correlation, Dumoulin & Visin 2016, §4): one more im2col and one GEMM, no
  scatter-add. At stride > 1 that convolution would first have to dilate dy with S - 1 zeros
  between pixels (S² times the work), so there dx is the column-gradient dy2d · w2dᵀ folded back
  (col2im) with one strided add per filter offset (FH·FW adds, no loop over pixels or images).

Buffers: every array is allocated per call, so two threads can run two batch shards at once. A
caller that runs the same layer repeatedly may pass its own ``workspace`` dict: scratch arrays are
then reused from one call to the next (no fresh 100 MB allocations per step). A workspace belongs
to one caller (one thread, one shard); the forward cache made with a workspace stays valid only
until the next forward with the same workspace.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

Pads = tuple[tuple[int, int], tuple[int, int]]


def _buffer(workspace: dict | None, key: str, shape: tuple[int, ...], dtype, zero: bool) -> tuple[np.ndarray, bool]:
    """A scratch array of ``shape``: from ``workspace`` when it holds one that fits, else new.

    Returns ``(array, fresh)``; a fresh array is zero-filled when ``zero`` is set, a reused one is
    returned as it was left.
    """
    if workspace is not None:
        buf = workspace.get(key)
        if buf is not None and buf.shape == shape and buf.dtype == dtype:
            return buf, False
    buf = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    if workspace is not None:
        workspace[key] = buf
    return buf, True


def _out_size(padded: int, f_eff: int, stride: int) -> int:
    """Floor of (padded - F_eff)/S + 1; the caller (cnnkit.shapes) has checked it is >= 1."""
    return (padded - f_eff) // stride + 1


def _embed(src: np.ndarray, shape: tuple[int, ...], top: int, left: int, workspace: dict | None, key: str) -> np.ndarray:
    """``src`` (N, h, w, C) placed at rows ``top``…, cols ``left``… of a zero array (N, *shape[1:3], C).

    Negative offsets, or a ``src`` that overhangs the end, crop ``src``. With a workspace the
    border keeps the zeros of the first call: every call writes the same interior region.
    """
    # the offsets are part of the key: a reused buffer must have its zeros where this call needs them
    dst, fresh = _buffer(workspace, f"{key}@{top},{left}", shape, src.dtype, zero=True)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + src.shape[1], shape[1]), min(left + src.shape[2], shape[2])
    if not fresh and (r0, c0, r1, c1) != (top, left, top + src.shape[1], left + src.shape[2]):
        dst.fill(0)  # a cropped placement: be safe rather than clever
    if r1 > r0 and c1 > c0:
        dst[:, r0:r1, c0:c1, :] = src[:, r0 - top:r1 - top, c0 - left:c1 - left, :]
    return dst


def im2col(xp: np.ndarray, fh: int, fw: int, stride: tuple[int, int], dilation: tuple[int, int],
           out_hw: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Columns of a (padded) input: (N, H', W', FH, FW, C) windows as a (N·H'·W', FH·FW·C) matrix.

    One strided view, one copy (into ``out`` when given).

    Example:
        >>> x = np.arange(2 * 4 * 4 * 1, dtype=np.float64).reshape(2, 4, 4, 1)
        >>> im2col(x, 3, 3, (1, 1), (1, 1), (2, 2)).shape
        (8, 9)
    """
    n, _, _, c = xp.shape
    ho, wo = out_hw
    sn, sh, sw, sc = xp.strides
    # view (N, H', W', FH, FW, C): window (oh, ow) starts at (oh·SH, ow·SW), tap (i, j) is
    # (i·DH, j·DW) further on
    windows = as_strided(xp, shape=(n, ho, wo, fh, fw, c),
                         strides=(sn, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1], sc),
                         writeable=False)
    if out is None:
        out = np.empty((n * ho * wo, fh * fw * c), xp.dtype)
    out.reshape(n, ho, wo, fh, fw, c)[...] = windows  # the one copy
    return out


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride=(1, 1),
                   pads: Pads = ((0, 0), (0, 0)), dilation=(1, 1), *, workspace: dict | None = None
                   ) -> tuple[np.ndarray, Any]:
    """y = x ⋆ w + b (cross-correlation), returning ``(y, cache)``.

    Args:
        x: (N, H, W, C) input.
        w: (FH, FW, C, K) filters; cast to ``x.dtype`` if it differs.
        b: (K,) biases or None.
        stride: (SH, SW).
        pads: ((top, bottom), (left, right)) zero padding.
        dilation: (DH, DW); tap (i, j) reads pixel (i·DH, j·DW) of the window.
        workspace: optional caller-owned dict of reusable buffers (see the module docstring).

    Shape:
        x: (N, H, W, C), w: (FH, FW, C, K) -> y: (N, H', W', K),
        H' = floor((H + top + bottom - DH(FH - 1) - 1)/SH) + 1, likewise W'

    Example:
        >>> x = np.ones((1, 4, 4, 1)); w = np.ones((3, 3, 1, 2))
        >>> y, _ = conv2d_forward(x, w, None, pads=((1, 1), (1, 1)))
        >>> y[0, :, :, 0]
        array([[4., 6., 6., 4.],
               [6., 9., 9., 6.],
               [6., 9., 9., 6.],
               [4., 6., 6., 4.]])
    """
    dtype = x.dtype
    n, h, wd, c = x.shape
    fh, fw, _, k = w.shape
    (pt, pb), (pl, pr) = pads
    sh, sw = stride
    dh, dw = dilation
    w = w.astype(dtype, copy=False)
    hp, wp = h + pt + pb, wd + pl + pr
    ho, wo = _out_size(hp, dh * (fh - 1) + 1, sh), _out_size(wp, dw * (fw - 1) + 1, sw)

    if fh == fw == 1 and sh == sw == 1 and not (pt or pb or pl or pr):
        cols = np.ascontiguousarray(x).reshape(n * h * wd, c)  # a 1×1 conv needs no columns
    else:
        xp = x if not (pt or pb or pl or pr) else _embed(x, (n, hp, wp, c), pt, pl, workspace, "xpad")
        cols, _ = _buffer(workspace, "cols", (n * ho * wo, fh * fw * c), dtype, zero=False)
        im2col(xp, fh, fw, stride, dilation, (ho, wo), out=cols)
    y = np.empty((n, ho, wo, k), dtype)
    y2d = y.reshape(n * ho * wo, k)  # (N·H'·W', K)
    np.matmul(cols, w.reshape(fh * fw * c, k), out=y2d)  # the one GEMM
    if b is not None:
        y2d += b.astype(dtype, copy=False)
    cache = (cols, w, x.shape, tuple(stride), tuple(map(tuple, pads)), tuple(dilation), b is not None)
    return y, cache


def conv2d_backward(dy: np.ndarray, cache, need_dx: bool = True, *, workspace: dict | None = None
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients ``(dx or None, dw, db or None)`` of :func:`conv2d_forward` for upstream ``dy``.

    Shape:
        dy: (N, H', W', K) -> dx: (N, H, W, C), dw: (FH, FW, C, K), db: (K,)
    """
    cols, w, x_shape, stride, pads, dilation, has_bias = cache
    n, h, wd, c = x_shape
    fh, fw, _, k = w.shape
    dtype = cols.dtype
    dy = np.ascontiguousarray(dy, dtype=dtype)
    ho, wo = dy.shape[1:3]
    dy2d = dy.reshape(n * ho * wo, k)  # (N·H'·W', K)

    dw = (cols.T @ dy2d).reshape(fh, fw, c, k)  # (FH·FW·C, K) -> HWIO
    db = np.ones(n * ho * wo, dtype) @ dy2d if has_bias else None
    if not need_dx:
        return None, dw, db

    unpadded = not any(p for axis in pads for p in axis)
    if fh == fw == 1 and stride == (1, 1) and unpadded:
        dx = (dy2d @ w.reshape(c, k).T).reshape(n, h, wd, c)  # a 1×1 conv: dx = dy·w2dᵀ
    elif stride == (1, 1):
        dx = _dx_transposed_conv(dy, w, (h, wd), pads, dilation, workspace)
    else:
        dx = _dx_col2im(dy2d, w, x_shape, (ho, wo), stride, pads, dilation, workspace)
    return dx, dw, db


def _dx_transposed_conv(dy: np.ndarray, w: np.ndarray, in_hw: tuple[int, int], pads: Pads,
                        dilation: tuple[int, int], workspace: dict | None) -> np.ndarray:
    """Stride-1 dx as a convolution of dy with the flipped kernel.

    dx[h] = Σ_i dy[h + pt - i·D]·w[i] = Σ_i' Z[h + i'·D]·w[F-1-i'], where Z is dy shifted right by
    F_eff - 1 - pt and zero elsewhere (the "full" padding of a transposed convolution), so dx is a
    stride-1, dilation-D correlation of Z with w flipped in both spatial axes and with C and K
    swapped.
    """
    n, ho, wo, k = dy.shape
    h, wd = in_hw
    fh, fw, c, _ = w.shape
    dh, dwl = dilation
    eh, ew = dh * (fh - 1), dwl * (fw - 1)  # F_eff - 1
    z = _embed(dy, (n, h + eh, wd + ew, k), eh - pads[0][0], ew - pads[1][0], workspace, "dy_pad")
    w_flip = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))  # (FH, FW, K, C)
    dcols, _ = _buffer(workspace, "dx_cols", (n * h * wd, fh * fw * k), dy.dtype, zero=False)
    im2col(z, fh, fw, (1, 1), dilation, (h, wd), out=dcols)  # (N·H·W, FH·FW·K)
    dx = np.empty((n, h, wd, c), dy.dtype)
    np.matmul(dcols, w_flip.reshape(fh * fw * k, c), out=dx.reshape(n * h * wd, c))
    return dx


def _dx_col2im(dy2d: np.ndarray, w: np.ndarray, x_shape, out_hw, stride, pads: Pads, dilation,
               workspace: dict | None) -> np.ndarray:
    """dx for stride > 1: column gradients dy2d · w2dᵀ, added back window by window (col2im)."""
    n, h, wd, c = x_shape
    fh, fw, _, k = w.shape
    ho, wo = out_hw
    sh, sw = stride
    dh, dwl = dilation
    (pt, pb), (pl, pr) = pads
    dcols, _ = _buffer(workspace, "dcols", (n * ho * wo, fh * fw * c), dy2d.dtype, zero=False)
    np.matmul(dy2d, w.reshape(fh * fw * c, k).T, out=dcols)
    dcols6 = dcols.reshape(n, ho, wo, fh, fw, c)
    dxp, fresh = _buffer(workspace, "dx_pad", (n, h + pt + pb, wd + pl + pr, c), dy2d.dtype, zero=True)
    if not fresh:
        dxp.fill(0)
    for i in range(fh):  # one strided add per filter offset; windows overlap, so add, not assign
        for j in range(fw):
            r, s = i * dh, j * dwl
            dxp[:, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw, :] += dcols6[:, :, :, i, j, :]
    return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + wd, :])
