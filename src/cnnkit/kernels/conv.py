"""2-D convolution kernels: im2col + BLAS matrix multiplies, tile by tile over the batch.

Layout: x (N, H, W, C), w (FH, FW, C, K) (HWIO), y (N, H', W', K). The output size is the floor of
the formula (H + top + bottom - F_eff)/S + 1 with F_eff = D(F - 1) + 1; :mod:`cnnkit.shapes`
decides whether a size is allowed, the kernel only computes.

Forward (im2col, Chellapilla et al. 2006): a strided *view* of the padded input holding every
window is copied into a column matrix and y = cols · w2d + b is a GEMM. The columns are made a
tile at a time (a few images, or a block of output rows of one large image) into a scratch matrix
of about :data:`TILE_BYTES`, so that the copy and the GEMM that reads it stay in the core's cache:
a whole-batch column matrix (151 MB for CIFAR-net's conv2 at batch 128) was 1.5–1.8× slower and
was what made training use more memory than PyTorch. The cache of a forward pass is the input,
not its columns; backward makes the columns again, tile by tile.

Backward:

* dw = Σ_tiles colsᵀ · dy_tile (GEMMs), db = Σ dy.
* dx at stride 1 is the convolution of the padded dy with the spatially flipped, channel-transposed
  kernel (the "full" correlation, Dumoulin & Visin 2016, §4): one more im2col and one GEMM per
  tile, no scatter-add. At stride > 1 that convolution would first have to dilate dy with S - 1
  zeros between pixels (S² times the work), so there dx is the column-gradient dy2d · w2dᵀ folded
  back (col2im) with one strided add per filter offset.

Two memory layouts (see :mod:`cnnkit.kernels.layout`): a conv with at most
:data:`~cnnkit.kernels.layout.SMALL_CHANNELS` input *and* output channels runs batch-minor (CHWN):
``y_cᵀ = w2dᵀ · colsᵀ`` where every row of colsᵀ is one shifted copy of the input with runs of
W'·N values, and its output is returned as the (N, H', W', K) view of CHWN memory, so that the
ReLU and pooling after it (and the next small conv) work in that layout without a transpose. Other
convs run in NHWC and read a batch-minor input through one transposing copy.

Fused ReLU: with ``relu=True`` the kernel returns max(x ⋆ w + b, 0), applied to each output tile
while it is in cache, and backward multiplies dy by the mask y > 0 before the convolution's own
backward — the same values as a Conv2d followed by a ReLU layer, without their separate passes
over the whole array (:mod:`cnnkit.parallel` uses it when a ReLU follows a Conv2d).

Buffers: with ``workspace=None`` every scratch array is allocated per call, so two threads can run
two batch shards at once. A caller that runs the same layer repeatedly may pass its own
``workspace`` dict: scratch arrays are then reused from one call to the next. A workspace belongs to
one caller (one thread, one shard); the forward cache made with a workspace stays valid only until
the next forward with the same workspace. Returned arrays (y, dx, dw, db) are never workspace
memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..shapes import conv_output_size
from .layout import SMALL_CHANNELS, from_batch_minor, scatter_taps, taps_view, tiles, to_batch_minor
from .scratch import buffer as _buffer
from .scratch import ones as _ones
from .scratch import placed as _placed
from .scratch import scratch as _scratch

Pads = tuple[tuple[int, int], tuple[int, int]]

# Scratch per tile. NHWC: 1.5 MiB (three quarters of one core's L2 cache here); 0.5–2 MiB were
# within 10 % of each other on CIFAR-net's convs, 64–128 KiB up to 2× slower. Batch-minor: 512 KiB;
# its GEMMs have few rows (K ≤ 16), and OpenBLAS ran LeNet's conv1 2× faster on 0.5 MiB tiles than
# on 1–1.5 MiB ones.
TILE_BYTES = 3 << 19
BM_TILE_BYTES = 1 << 19
BM_DX_TILE_BYTES = 1 << 22  # backward with dx: 4 MiB (the col2im adds then run over larger blocks):
# LeNet's conv2 backward 10-20 % faster than on 0.5 MiB tiles; without dx 0.5 MiB stays best
# NHWC convs with at most this many input channels read their windows from a channel-major copy
# (CIFAR-net's conv1 on RGB: forward 1.3×, weight gradient 1.75× faster than NHWC windows).
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
                   relu: bool = False) -> tuple[np.ndarray, Any]:
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
    pads = (tuple(pads[0]), tuple(pads[1]))
    (pt, pb), (pl, pr) = pads
    stride, dilation = tuple(stride), tuple(dilation)
    # the layer has checked the sizes (strict by default); the kernel takes the floor, as asked
    ho = conv_output_size(h, fh, stride[0], (pt, pb), dilation[0], rounding="floor")
    wo = conv_output_size(wd, fw, stride[1], (pl, pr), dilation[1], rounding="floor")
    g = _Geometry(n, h, wd, c, fh, fw, k, ho, wo, stride, pads, dilation)
    w = w.astype(dtype, copy=False)
    batch_minor = c <= SMALL_CHANNELS and k <= SMALL_CHANNELS
    y, saved = (_forward_bm if batch_minor else _forward_nhwc)(x, w, b, g, workspace, relu)
    return y, (batch_minor, saved, w, g, b is not None, y if relu else None)


def conv2d_backward(dy: np.ndarray, cache, need_dx: bool = True, *, workspace: dict | None = None
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients ``(dx or None, dw, db or None)`` of :func:`conv2d_forward` for upstream ``dy``.

    Shape:
        dy: (N, H', W', K) -> dx: (N, H, W, C), dw: (FH, FW, C, K), db: (K,)
    """
    batch_minor, saved, w, g, has_bias, relu_y = cache
    dy = dy.astype(w.dtype, copy=False)
    backward = _backward_bm if batch_minor else _backward_nhwc
    return backward(dy, saved, w, g, need_dx, has_bias, workspace, relu_y)


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
        dx = _dx_flipped(d, w, g, workspace) if g.stride == (1, 1) else _dx_col2im(d, w, g, workspace)
    return dx, dw2d.reshape(w.shape), db


def _dx_flipped(d: _Dy, w, g: _Geometry, workspace) -> np.ndarray:
    """Stride-1 dx as a convolution of dy with the flipped kernel, tile by tile.

    dx[h] = Σ_i dy[h + pt - i·D]·w[i] = Σ_i' Z[h + i'·D]·w[F-1-i'], where Z is dy shifted right by
    F_eff - 1 - pt and zero elsewhere (the "full" padding of a transposed convolution), so dx is a
    stride-1, dilation-D correlation of Z with w flipped in both spatial axes and with C and K
    swapped.
    """
    (dh, dwl), (pt, pl) = g.dilation, (g.pads[0][0], g.pads[1][0])
    eh, ew = dh * (g.fh - 1), dwl * (g.fw - 1)  # F_eff - 1
    dy = d.a.reshape(g.n, g.ho, g.wo, g.k)
    relu_y = None if d.y is None else d.y.reshape(dy.shape)
    w_flip = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(g.taps * g.k, g.c)  # (FH·FW·K, C)
    dx = np.empty((g.n, g.h, g.wd, g.c), dy.dtype)
    dx2d = dx.reshape(-1, g.c)
    width = g.taps * g.k
    z = dy
    for tile in tiles(g.n, g.h, g.wd * width * dy.itemsize, TILE_BYTES):
        n0, n1, t0, t1 = tile
        if t0 == 0:  # a new group: dy shifted by F_eff - 1 - P, zeros around it
            z = _placed(workspace, "z", dy[n0:n1], (n1 - n0, g.h + eh, g.wd + ew, g.k), eh - pt, ew - pl,
                        None if relu_y is None else relu_y[n0:n1])
        cols = _scratch(workspace, "cols", ((n1 - n0) * (t1 - t0) * g.wd, width), dy.dtype)
        im2col(z[:, t0:], g.fh, g.fw, (1, 1), g.dilation, (t1 - t0, g.wd), out=cols)
        np.matmul(cols, w_flip, out=_rows(dx2d, tile, g.h, g.wd))
    return dx


def _dx_col2im(d: _Dy, w, g: _Geometry, workspace) -> np.ndarray:
    """dx for stride > 1: column gradients dy2d · w2dᵀ, added back window by window (col2im)."""
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


# --------------------------------------------------------------------------- batch-minor (CHWN)
def _bm_tiles(xpc: np.ndarray, g: _Geometry, workspace: dict | None, budget: int):
    """Yield ``((r0, r1), colsᵀ)``: the transposed column matrix (FH·FW·C, rows·W'·N) of output
    rows r0…r1-1, read from the padded (C, H, W, N) input, in a reused scratch matrix."""
    width = g.taps * g.c
    # (FH, FW, C, H', W', N): rows in the (i, j, c) order of a (FH, FW, C, K) weight
    view = taps_view(xpc, (g.fh, g.fw), g.stride, (g.ho, g.wo), g.dilation)
    for _, _, r0, r1 in tiles(1, g.ho, width * g.wo * g.n * xpc.itemsize, budget):
        cols_t = _scratch(workspace, "cols_t", (width, (r1 - r0) * g.wo * g.n), xpc.dtype)
        cols_t.reshape(g.fh, g.fw, g.c, r1 - r0, g.wo, g.n)[...] = view[:, :, :, r0:r1]
        yield (r0, r1), cols_t


def _forward_bm(x, w, b, g: _Geometry, workspace, relu: bool):
    (pt, _), (pl, _) = g.pads
    if g.padded:  # one copy: the input transposed straight into the zero-bordered buffer
        xpc = _buffer(workspace, f"xpad_bm{g.pads}", (g.c, *g.padded_hw, g.n), x.dtype, zero=True)
        xpc[:, pt:pt + g.h, pl:pl + g.wd, :] = x.transpose(3, 1, 2, 0)
    else:
        xpc = to_batch_minor(x)  # (C, H, W, N)
    w2d_t = w.reshape(g.taps * g.c, g.k).T  # (K, FH·FW·C)
    yc = np.empty((g.k, g.ho, g.wo, g.n), x.dtype)
    y2 = yc.reshape(g.k, -1)  # (K, H'·W'·N)
    span = g.wo * g.n
    b = None if b is None else b.astype(x.dtype, copy=False)[:, None]
    for (r0, r1), cols_t in _bm_tiles(xpc, g, workspace, BM_TILE_BYTES):
        out = y2[:, r0 * span:r1 * span]
        np.matmul(w2d_t, cols_t, out=out)
        _finish(out, b, relu)
    return from_batch_minor(yc), xpc


def _backward_bm(dy, xpc, w, g: _Geometry, need_dx, has_bias, workspace, relu_y):
    (pt, _), (pl, _) = g.pads
    dyc = to_batch_minor(dy).reshape(g.k, -1)  # (K, H'·W'·N)
    # the fused ReLU's mask, block by block (y is batch-minor memory: a view, no copy)
    yc = None if relu_y is None else to_batch_minor(relu_y).reshape(g.k, -1)
    db = np.zeros(g.k, dy.dtype) if has_bias else None
    w2d = w.reshape(g.taps * g.c, g.k)
    dw2d = np.empty(w2d.shape, dy.dtype)
    part = _scratch(workspace, "dw_part", w2d.shape, dy.dtype)
    dxp = np.zeros((g.c, *g.padded_hw, g.n), dy.dtype) if need_dx else None
    span = g.wo * g.n
    for (r0, r1), cols_t in _bm_tiles(xpc, g, workspace, BM_DX_TILE_BYTES if need_dx else BM_TILE_BYTES):
        block = dyc[:, r0 * span:r1 * span]  # (K, rows·W'·N)
        if yc is not None:
            block = np.multiply(block, yc[:, r0 * span:r1 * span] > 0,
                                out=_scratch(workspace, "dy_tile", block.shape, dy.dtype))
        if has_bias:
            db += block.sum(axis=1)  # long contiguous rows
        if r0 == 0:
            np.matmul(cols_t, block.T, out=dw2d)
        else:
            np.matmul(cols_t, block.T, out=part)
            dw2d += part
        if need_dx:
            dcols = _scratch(workspace, "dcols_t", cols_t.shape, dy.dtype)
            np.matmul(w2d, block, out=dcols)  # (FH·FW·C, rows·W'·N)
            scatter_taps(dxp[:, r0 * g.stride[0]:], dcols.reshape(g.fh, g.fw, g.c, r1 - r0, g.wo, g.n),
                         (g.fh, g.fw), g.stride, (r1 - r0, g.wo), g.dilation)
    dx = from_batch_minor(dxp[:, pt:pt + g.h, pl:pl + g.wd, :]) if need_dx else None
    return dx, dw2d.reshape(w.shape), db
