"""2-D convolution kernels: direct convolution at stride 1, im2col + BLAS otherwise.

Layout: x (N, H, W, C), w (FH, FW, C, K) (HWIO), y (N, H', W', K). The output size is the floor of
the formula (H + top + bottom - F_eff)/S + 1 with F_eff = D(F - 1) + 1; :mod:`cnnkit.shapes`
decides whether a size is allowed, the kernel only computes.

**Stride 1: direct, batch-minor** (every conv of the built-in models). The compiled helper
:mod:`cnnkit.kernels._native` works on batch-minor (C, H, W, N) memory (see
:mod:`cnnkit.kernels.layout`): with the batch innermost, tap (i, j) of channel c adds a scaled,
shifted *contiguous* span of input row r + i to output row r, so no column matrix is ever made.

* y[k, r, :] = b[k] + Σ_{i, j, c} w[i, j, c, k] · x[c, r + i·DH, j·DW·N : …] (span of W'·N values).
* dw[i, j, c, k] = Σ_r x[c, r + i·DH, j·DW·N : …] · dy[k, r, :], db = Σ dy.
* dx is the stride-1 convolution of dy, zero-padded by F_eff - 1 - P, with the kernel flipped in
  both spatial axes and C and K swapped (the "full" correlation of a transposed convolution,
  Dumoulin & Visin 2016, §4): the same compiled forward kernel.

The output is returned as the (N, H', W', K) view of (K, H', W', N) memory, so the ReLU, pooling
and next conv after it work in that layout without a transpose. A padded conv copies its input
into a zero-bordered buffer (an NHWC input is transposed on the way) — unless the layer before it
wrote its output there already: :func:`direct_input_frame` hands that buffer to the previous conv
or max-pool (``frame=``), and :mod:`cnnkit.parallel` does so whenever one feeds a padded conv.
Measured on one core against the im2col path (LeNet-5 and CIFAR-net layers): forward 1.4–3.7×
faster when it was introduced, more since (``benchmarks/RESULTS.md``).

**Stride > 1: im2col + GEMM, NHWC** (Chellapilla et al. 2006). A strided *view* of the padded
input holding every window is copied into a column matrix and y = cols · w2d + b is a GEMM. The
columns are made a tile at a time (a few images, or a block of output rows of one large image)
into a scratch matrix of about :data:`TILE_BYTES`, so that the copy and the GEMM that reads it stay
in the core's cache (a whole-batch column matrix, 151 MB for a CIFAR-net conv at batch 128, was
1.5–1.8× slower). The cache of a forward pass is the input, not its columns; backward makes the
columns again, tile by tile: dw = Σ_tiles colsᵀ · dy_tile, and dx is the column gradient
dy2d · w2dᵀ folded back (col2im) with one strided add per filter offset. A batch-minor input is
read through one transposing copy.

Fused ReLU: with ``relu=True`` the kernel returns max(x ⋆ w + b, 0), applied to each output tile
while it is in cache, and backward multiplies dy by the mask y > 0 before the convolution's own
backward — the same values as a Conv2d followed by a ReLU layer, without their separate passes
over the whole array (:mod:`cnnkit.parallel` uses it when a ReLU follows a Conv2d).

Buffers: with ``workspace=None`` every scratch array is allocated per call, so two threads can run
two batch shards at once. A caller that runs the same layer repeatedly may pass its own
``workspace`` dict: scratch arrays are then reused from one call to the next. A workspace belongs to
one caller (one thread, one shard); the forward cache made with a workspace stays valid only until
the next forward with the same workspace. Returned arrays (y, dx, dw, db) are never workspace
memory — except a y written into a ``frame`` (the next conv's input buffer, which lives in that
conv's workspace and is rewritten by its next forward).

Non-finite gradients: the fused ReLU's backward selects dy where y > 0 (zero elsewhere, as
PyTorch's threshold backward), so a NaN or inf in dy where y <= 0 gives 0, where the unfused
ReLU layer's multiply by the mask would give NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..shapes import conv_output_size
from . import _native
from .layout import from_batch_minor, in_frame, scatter_taps, taps_view, tiles, to_batch_minor
from .scratch import buffer as _buffer
from .scratch import ones as _ones
from .scratch import placed as _placed
from .scratch import scratch as _scratch

Pads = tuple[tuple[int, int], tuple[int, int]]

# Scratch per tile of the im2col path: 1.5 MiB (three quarters of one core's L2 cache here); 0.5–2
# MiB were within 10 % of each other on CIFAR-net's convs when they ran im2col (before the direct
# path), 64–128 KiB up to 2× slower.
TILE_BYTES = 3 << 19
# Rows of one block of the direct weight gradient's dot-product path (the filters left over after
# the ones vectorised along the filters: K mod the vector width, e.g. all 6 of LeNet-5's conv1):
# input and dy rows of about this many bytes (the L1 cache). LeNet-5's conv1 ran at 54 GF/s with
# 26 KB blocks and 31 GF/s with 400 KB ones.
DIRECT_DW_BYTES = 32 << 10
# im2col convs (stride > 1) with at most this many input channels read their windows from a
# channel-major copy (measured on CIFAR-net's conv1 on RGB when it ran im2col: forward 1.3×,
# weight gradient 1.75× faster than NHWC windows).
CHANNEL_MAJOR_CHANNELS = 4


@dataclass(frozen=True)
class _Geometry:
    n: int
    h: int
    wd: int
    c: int
    fh: int
    fw: int
    k: int
    ho: int
    wo: int
    stride: tuple[int, int]
    pads: Pads
    dilation: tuple[int, int]

    @property
    def padded(self) -> bool:
        return any(p for axis in self.pads for p in axis)

    @property
    def padded_hw(self) -> tuple[int, int]:
        (pt, pb), (pl, pr) = self.pads
        return self.h + pt + pb, self.wd + pl + pr

    @property
    def taps(self) -> int:
        return self.fh * self.fw

    @property
    def pointwise(self) -> bool:
        """A 1×1 conv at stride 1 without padding: the input is its own column matrix."""
        return self.fh == self.fw == 1 and self.stride == (1, 1) and not self.padded


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
    windows = taps_view(xp, (fh, fw), stride, out_hw, dilation)  # (FH, FW, N, H', W', C)
    if out is None:
        out = np.empty((n * ho * wo, fh * fw * c), xp.dtype)
    out.reshape(n, ho, wo, fh, fw, c)[...] = windows.transpose(2, 3, 4, 0, 1, 5)  # the one copy
    return out


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride=(1, 1),
                   pads: Pads = ((0, 0), (0, 0)), dilation=(1, 1), *, workspace: dict | None = None,
                   relu: bool = False, frame: tuple[np.ndarray, int, int] | None = None) -> tuple[np.ndarray, Any]:
    """y = x ⋆ w + b (cross-correlation), or max(x ⋆ w + b, 0) with ``relu``; returns ``(y, cache)``.

    Args:
        x: (N, H, W, C) input, NHWC or batch-minor memory.
        w: (FH, FW, C, K) filters; cast to ``x.dtype`` if it differs.
        b: (K,) biases or None.
        stride: (SH, SW).
        pads: ((top, bottom), (left, right)) zero padding.
        dilation: (DH, DW); tap (i, j) reads pixel (i·DH, j·DW) of the window.
        workspace: optional caller-owned dict of reusable buffers (see the module docstring).
        relu: apply a ReLU to the output (fused; backward then includes the ReLU's).
        frame: ``(buffer, top, left)``, a zero-bordered (K, Hq, Wq, N) array (from
            :func:`direct_input_frame` of the conv that reads this output): a stride-1 conv then
            writes y into its interior at (top, left) and returns that view, which saves the next
            conv its padding copy. Ignored on the im2col path.

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
    g = _geometry(x.shape, w.shape, stride, pads, dilation)
    w = w.astype(dtype, copy=False)
    direct = _direct_path(g.stride, dtype)
    if direct:
        y, saved = _forward_direct(x, w, b, g, workspace, relu, frame)
    else:
        y, saved = _forward_nhwc(x, w, b, g, workspace, relu)
    return y, (direct, saved, w, g, b is not None, y if relu else None)


def conv2d_maxpool2_values(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, pads: Pads = ((0, 0), (0, 0)),
                           dilation=(1, 1), *, workspace: dict | None = None, relu: bool = False,
                           frame: tuple[np.ndarray, int, int] | None = None) -> np.ndarray | None:
    """Inference: a stride-1 conv (with its fused ReLU when ``relu``) followed by a 2 × 2, stride-2
    max pooling, in one compiled pass that keeps only two output rows at a time instead of the
    whole conv output. Returns the pooled (N, H'/2, W'/2, K) values (batch-minor; in ``frame``'s
    interior when it fits), or None where it does not apply (stride > 1 path, odd H' or W'): then
    run the two layers as usual. The values are those of the two layers (max and ReLU commute)."""
    g = _geometry(x.shape, w.shape, (1, 1), pads, dilation)
    if not _direct_path(g.stride, x.dtype) or g.ho % 2 or g.wo % 2:
        return None
    xpc = _direct_input(x, g, workspace)
    b = None if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    w = np.ascontiguousarray(w, dtype=x.dtype)
    geometry = _direct_geometry(g, g.c, g.padded_hw, g.k, (g.ho, g.wo))
    shape = (g.k, g.ho // 2, g.wo // 2, g.n)
    yc = in_frame(frame, shape) if frame is not None and frame[0].dtype == x.dtype else None
    if yc is not None:
        buf, top, left = frame
        _native.conv_forward_pool2(xpc, w, b, buf, *geometry, relu, (*buf.shape[1:3], top, left))
    else:
        yc = np.empty(shape, x.dtype)
        _native.conv_forward_pool2(xpc, w, b, yc, *geometry, relu)
    return from_batch_minor(yc)


def _geometry(x_shape, w_shape, stride, pads, dilation) -> "_Geometry":
    n, h, wd, c = x_shape
    fh, fw, _, k = w_shape
    pads = (tuple(pads[0]), tuple(pads[1]))
    (pt, pb), (pl, pr) = pads
    stride, dilation = tuple(stride), tuple(dilation)
    # the layer has checked the sizes (strict by default); the kernel takes the floor, as asked
    ho = conv_output_size(h, fh, stride[0], (pt, pb), dilation[0], rounding="floor")
    wo = conv_output_size(wd, fw, stride[1], (pl, pr), dilation[1], rounding="floor")
    return _Geometry(n, h, wd, c, fh, fw, k, ho, wo, stride, pads, dilation)


def _direct_path(stride: tuple[int, int], dtype: np.dtype) -> bool:
    """Stride 1 in float32/float64 runs direct; the rest (stride > 1, other dtypes) im2col."""
    return stride == (1, 1) and dtype in (np.float32, np.float64)


def conv2d_backward(dy: np.ndarray, cache, need_dx: bool = True, *, workspace: dict | None = None,
                    overwrite_dy: bool = False) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients ``(dx or None, dw, db or None)`` of :func:`conv2d_forward` for upstream ``dy``.

    ``overwrite_dy``: the caller will not read ``dy`` again, so the fused ReLU's masked dy may be
    written over it instead of into a scratch buffer (the first conv of a model, which has no dx
    buffer to hold it).

    Shape:
        dy: (N, H', W', K) -> dx: (N, H, W, C), dw: (FH, FW, C, K), db: (K,)
    """
    direct, saved, w, g, has_bias, relu_y = cache
    dy = dy.astype(w.dtype, copy=False)
    if direct:
        return _backward_direct(dy, saved, w, g, need_dx, has_bias, workspace, relu_y, overwrite_dy)
    return _backward_nhwc(dy, saved, w, g, need_dx, has_bias, workspace, relu_y)


# --------------------------------------------------------------------------- NHWC
def _nhwc_tiles(x: np.ndarray, g: _Geometry, workspace: dict | None):
    """Yield ``((n0, n1, r0, r1), cols)``: the column matrix of images n0…n1-1, output rows r0…r1-1,
    in a reused scratch matrix (valid until the next item). ``x`` is NHWC, or for few channels the
    padded channel-major copy made by :func:`_channel_major`."""
    if not _nhwc_input(g):
        yield from _channel_major_tiles(x, g, workspace)
        return
    width = g.taps * g.c
    pt, pl = g.pads[0][0], g.pads[1][0]
    src = x
    for n0, n1, r0, r1 in tiles(g.n, g.ho, g.wo * width * x.itemsize, TILE_BYTES):
        if r0 == 0 and g.padded:  # a new group of images, with its zero border
            src = _placed(workspace, "xpad", x[n0:n1], (n1 - n0, *g.padded_hw, g.c), pt, pl)
        elif not g.padded:
            src = x[n0:n1]
        cols = _scratch(workspace, "cols", ((n1 - n0) * (r1 - r0) * g.wo, width), x.dtype)
        im2col(src[:, r0 * g.stride[0]:], g.fh, g.fw, g.stride, g.dilation, (r1 - r0, g.wo), out=cols)
        yield (n0, n1, r0, r1), cols


def _rows(a2d: np.ndarray, tile, rows: int, cols: int) -> np.ndarray:
    """The rows of a (N·rows·cols, X) matrix that belong to ``tile`` = (n0, n1, r0, r1)."""
    n0, n1, r0, r1 = tile
    return a2d[(n0 * rows + r0) * cols:((n1 - 1) * rows + r1) * cols]


def _finish(out: np.ndarray, b, relu: bool) -> None:
    """Bias and ReLU on an output tile, in place, while it is in cache."""
    if b is not None:
        out += b
    if relu:
        np.maximum(out, out.dtype.type(0), out=out)


def _nhwc_input(g: _Geometry) -> bool:
    """Columns straight from NHWC memory, or (C ≤ :data:`CHANNEL_MAJOR_CHANNELS`, e.g. RGB input)
    from a padded (C, N, H, W) copy, whose windows are runs of W' values instead of FW·C."""
    return g.c > CHANNEL_MAJOR_CHANNELS or g.pointwise


def _channel_major(x: np.ndarray, g: _Geometry) -> np.ndarray:
    """The padded (C, N, H + top + bottom, W + left + right) copy of ``x`` (cached for backward)."""
    (pt, _), (pl, _) = g.pads
    xq = np.zeros((g.c, g.n, *g.padded_hw), x.dtype)
    xq[:, :, pt:pt + g.h, pl:pl + g.wd] = x.transpose(3, 0, 1, 2)
    return xq


def _channel_major_tiles(xq: np.ndarray, g: _Geometry, workspace: dict | None):
    """As :func:`_nhwc_tiles`, from the channel-major copy: colsᵀ (FH·FW·C, rows) made with runs of
    W' values, yielded as its transpose (an F-ordered matrix that BLAS reads as it is)."""
    width = g.taps * g.c
    s_c, s_n, s_h, s_w = xq.strides
    (sh, sw), (dh, dwl) = g.stride, g.dilation
    for tile in tiles(g.n, g.ho, g.wo * width * xq.itemsize, TILE_BYTES):
        n0, n1, r0, r1 = tile
        cols_t = _scratch(workspace, "cols", (width, (n1 - n0) * (r1 - r0) * g.wo), xq.dtype)
        # (FH, FW, C, images, rows, W'): rows of colsᵀ in the (i, j, c) order of the weight
        windows = as_strided(xq[:, n0:, r0 * sh:], shape=(g.fh, g.fw, g.c, n1 - n0, r1 - r0, g.wo),
                             strides=(s_h * dh, s_w * dwl, s_c, s_n, s_h * sh, s_w * sw), writeable=False)
        cols_t.reshape(windows.shape)[...] = windows
        yield tile, cols_t.T


def _forward_nhwc(x, w, b, g: _Geometry, workspace, relu: bool):
    x = _channel_major(x, g) if not _nhwc_input(g) else np.ascontiguousarray(x)  # (one copy at most)
    w2d = w.reshape(g.taps * g.c, g.k)  # (FH·FW·C, K)
    y = np.empty((g.n, g.ho, g.wo, g.k), x.dtype)
    y2d = y.reshape(-1, g.k)  # (N·H'·W', K)
    b = None if b is None else b.astype(x.dtype, copy=False)
    if g.pointwise:
        np.matmul(x.reshape(-1, g.c), w2d, out=y2d)
        _finish(y2d, b, relu)
        return y, x
    for tile, cols in _nhwc_tiles(x, g, workspace):
        out = _rows(y2d, tile, g.ho, g.wo)
        np.matmul(cols, w2d, out=out)
        _finish(out, b, relu)
    return y, x


class _Dy:
    """dy as (N·H'·W', K) rows, times the fused ReLU's mask [y > 0] when there is one, tile by tile
    (no full-size masked copy)."""

    def __init__(self, dy: np.ndarray, relu_y: np.ndarray | None, g: _Geometry, workspace) -> None:
        self.a = np.ascontiguousarray(dy)
        self.y = None if relu_y is None else np.ascontiguousarray(relu_y)
        self.g, self.workspace = g, workspace

    def rows(self, tile) -> np.ndarray:
        d = _rows(self.a.reshape(-1, self.g.k), tile, self.g.ho, self.g.wo)
        if self.y is None:
            return d
        out = _scratch(self.workspace, "dy_tile", d.shape, d.dtype)
        return np.multiply(d, _rows(self.y.reshape(-1, self.g.k), tile, self.g.ho, self.g.wo) > 0, out=out)


def _backward_nhwc(dy, x, w, g: _Geometry, need_dx, has_bias, workspace, relu_y):
    w2d = w.reshape(g.taps * g.c, g.k)
    if g.pointwise:
        if relu_y is not None:
            dy = np.multiply(dy, relu_y > 0, dtype=dy.dtype)
        dy2d = np.ascontiguousarray(dy).reshape(-1, g.k)
        x2d = x.reshape(-1, g.c)
        dw = (x2d.T @ dy2d).reshape(w.shape)
        dx = (dy2d @ w2d.T).reshape(x.shape) if need_dx else None
        return dx, dw, (dy2d.sum(axis=0) if has_bias else None)
    d = _Dy(dy, relu_y, g, workspace)
    dw2d = np.empty(w2d.shape, x.dtype)
    db = np.zeros(g.k, x.dtype) if has_bias else None
    part = _scratch(workspace, "dw_part", w2d.shape, x.dtype)
    for tile, cols in _nhwc_tiles(x, g, workspace):
        dyt = d.rows(tile)
        if tile[0] == tile[2] == 0:
            np.matmul(cols.T, dyt, out=dw2d)  # (FH·FW·C, K)
        else:
            np.matmul(cols.T, dyt, out=part)
            dw2d += part
        if has_bias:
            db += _ones(workspace, len(dyt), dyt.dtype) @ dyt  # 1ᵀ·dy through BLAS, not a narrow sum
    dx = None
    if need_dx:
        dx = _dx_col2im(d, w, g, workspace)
    return dx, dw2d.reshape(w.shape), db


def _dx_col2im(d: _Dy, w, g: _Geometry, workspace) -> np.ndarray:
    """dx: column gradients dy2d · w2dᵀ, added back window by window (col2im)."""
    (pt, _), (pl, _) = g.pads
    w2d_t = w.reshape(g.taps * g.c, g.k).T  # (K, FH·FW·C)
    dx = np.empty((g.n, g.h, g.wd, g.c), w.dtype)
    width = g.taps * g.c
    dxp = dx
    for tile in tiles(g.n, g.ho, g.wo * width * w.itemsize, TILE_BYTES):
        n0, n1, r0, r1 = tile
        if r0 == 0:
            dxp = _scratch(workspace, "dxpad", (n1 - n0, *g.padded_hw, g.c), w.dtype)
            dxp.fill(0)
        dcols = _scratch(workspace, "dcols", ((n1 - n0) * (r1 - r0) * g.wo, width), w.dtype)
        np.matmul(d.rows(tile), w2d_t, out=dcols)
        # (nb, rows, W', FH, FW, C) -> per tap (FH, FW, nb, rows, W', C)
        per_tap = dcols.reshape(n1 - n0, r1 - r0, g.wo, g.fh, g.fw, g.c).transpose(3, 4, 0, 1, 2, 5)
        scatter_taps(dxp[:, r0 * g.stride[0]:], per_tap, (g.fh, g.fw), g.stride, (r1 - r0, g.wo), g.dilation)
        if r1 == g.ho:  # the group is complete
            dx[n0:n1] = dxp[:, pt:pt + g.h, pl:pl + g.wd, :]
    return dx


# --------------------------------------------------------------------------- direct (CHWN, stride 1)
def _direct_geometry(g: _Geometry, c: int, hw_in: tuple[int, int], k: int, hw_out: tuple[int, int]):
    """The geometry arguments of the compiled kernels: input (C, Hp, Wp, N), filters (FH, FW, K),
    output (H', W'), dilation."""
    return (c, *hw_in, g.n), (g.fh, g.fw, k), hw_out, g.dilation


def direct_input_frame(workspace: dict | None, stride, pads: Pads, x_shape, dtype) -> tuple[np.ndarray, int, int] | None:
    """``(buffer, top, left)``: the zero-bordered (C, H + top + bottom, W + left + right, N) buffer
    into which a padded conv on the direct path copies its (N, H, W, C) input, kept in the conv's
    ``workspace``; None without padding or workspace, or off the direct path. The layer before it may write its output
    straight into the interior (``frame=`` of :func:`conv2d_forward` and
    :func:`~cnnkit.kernels.pool.maxpool2d_forward`): the conv then finds its input in place and
    skips the copy. Only interiors are ever written, so the border stays zero."""
    (pt, pb), (pl, pr) = pads
    if workspace is None or not (pt or pb or pl or pr) or not _direct_path(tuple(stride), np.dtype(dtype)):
        return None
    n, h, w, c = x_shape
    buf = _buffer(workspace, f"xpad_direct{(tuple(pads[0]), tuple(pads[1]))}", (c, h + pt + pb, w + pl + pr, n),
                  np.dtype(dtype), zero=True)
    return buf, pt, pl


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _direct_input(x, g: _Geometry, workspace) -> np.ndarray:
    """The (padded) batch-minor input of the direct path: one copy at most, the input transposed
    straight into the zero-bordered buffer, and none when the layer before wrote it there."""
    if not g.padded:
        return to_batch_minor(x)  # (C, H, W, N): a view when x is batch-minor already
    xpc, pt, pl = direct_input_frame(workspace, g.stride, g.pads, x.shape, x.dtype) or (
        np.zeros((g.c, *g.padded_hw, g.n), x.dtype), g.pads[0][0], g.pads[1][0])
    interior, xt = xpc[:, pt:pt + g.h, pl:pl + g.wd, :], x.transpose(3, 1, 2, 0)
    if not _same_memory(interior, xt):  # the layer before wrote it there already
        interior[...] = xt
    return xpc


def _forward_direct(x, w, b, g: _Geometry, workspace, relu: bool, frame):
    xpc = _direct_input(x, g, workspace)
    b = None if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    geometry = _direct_geometry(g, g.c, g.padded_hw, g.k, (g.ho, g.wo))
    yc = in_frame(frame, (g.k, g.ho, g.wo, g.n)) if frame is not None and frame[0].dtype == x.dtype else None
    if yc is not None:  # into the next conv's zero-bordered input buffer
        buf, top, left = frame
        _native.conv_forward(xpc, np.ascontiguousarray(w), b, buf, *geometry, relu, (*buf.shape[1:3], top, left))
        return from_batch_minor(yc), (xpc, frame)
    yc = np.empty((g.k, g.ho, g.wo, g.n), x.dtype)  # (K, H', W', N)
    _native.conv_forward(xpc, np.ascontiguousarray(w), b, yc, *geometry, relu)
    return from_batch_minor(yc), (xpc, None)


def _backward_direct(dy, saved, w, g: _Geometry, need_dx, has_bias, workspace, relu_y, overwrite_dy=False):
    xpc, y_frame = saved
    dyc = to_batch_minor(dy)  # (K, H', W', N)
    # dx: the stride-1 correlation of dy, placed F_eff - 1 - P from the corner of a zero buffer z
    # (the "full" padding of a transposed convolution), with the kernel flipped in both spatial axes
    # and C and K swapped (Dumoulin & Visin 2016, §4)
    eh, ew = g.dilation[0] * (g.fh - 1), g.dilation[1] * (g.fw - 1)  # F_eff - 1
    (pt, _), (pl, _) = g.pads
    z_shape = (g.k, g.h + eh, g.wd + ew, g.n)
    z = _scratch(workspace, "z_direct", z_shape, dy.dtype) if need_dx else None
    # one pass over dy: the fused ReLU's mask (from y's batch-minor memory, in its frame when it was
    # written into one), db, and z; the weight gradient then reads the masked dy from z when z holds
    # all of it, else from a masked copy
    top, left = eh - pt, ew - pl
    from_z = z is not None and 0 <= top and top + g.ho <= z_shape[1] and 0 <= left and left + g.wo <= z_shape[2]
    in_place = overwrite_dy and np.shares_memory(dyc, dy)  # dyc is dy's own memory, not a copy
    dym = dyc if relu_y is None or from_z or in_place else _scratch(workspace, "dy_masked", dyc.shape, dy.dtype)
    db = np.empty(g.k, dy.dtype) if has_bias else None
    if relu_y is not None or z is not None or db is not None:
        if relu_y is None:
            y, y_place = None, ()
        elif y_frame is not None:
            y, y_top, y_left = y_frame
            y_place = ((*y.shape[1:3], y_top, y_left),)
        else:
            y, y_place = to_batch_minor(relu_y), ()
        _native.backward_prep(dyc, y, None if relu_y is None or from_z else dym, z, db, dyc.shape,
                              (*z_shape[1:3], top, left), *y_place)
    dw = np.empty(w.shape, dy.dtype)
    # rows per block of the weight gradient's leftover filters (K mod the vector width): their
    # input rows and dy rows in the core's L1 cache
    rows = max(1, DIRECT_DW_BYTES // ((g.c * g.padded_hw[1] + g.k * g.wo) * g.n * dy.itemsize))
    geometry = _direct_geometry(g, g.c, g.padded_hw, g.k, (g.ho, g.wo))
    if from_z:  # dy's masked rows, read where they sit in z
        _native.conv_weight_grad(xpc, z, dw, *geometry, rows, (*z_shape[1:3], top, left))
    else:
        _native.conv_weight_grad(xpc, dym, dw, *geometry, rows)
    if not need_dx:
        return None, dw, db
    w_flip = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))  # (FH, FW, K, C)
    dxc = np.empty((g.c, g.h, g.wd, g.n), dy.dtype)  # (C, H, W, N)
    _native.conv_forward(z, w_flip, None, dxc, *_direct_geometry(g, g.k, z_shape[1:3], g.c, (g.h, g.wd)), False)
    return from_batch_minor(dxc), dw, db
