"""Memory layouts behind the (N, H, W, C) arrays, and the strided window views the kernels share.

Every array a kernel takes or returns has the public shape (N, H, W, C). Its *memory* may be in
one of two orders:

* **NHWC** (C-contiguous, the public layout): channels innermost. The im2col path (convolutions
  with stride > 1) works in it: an im2col row (FH·FW·C values) is a few runs and one GEMM with K
  columns does the work.
* **CHWN** ("batch-minor"): batch innermost, the array is ``xc.transpose(3, 1, 2, 0)`` of a
  C-contiguous (C, H, W, N) array ``xc``. Every spatial shift of a CHWN array is a run of W'·N
  contiguous values, whatever the channel count, which is what the direct stride-1 convolution of
  :mod:`cnnkit.kernels.conv` is built on: its inputs and outputs are CHWN, and so are the ReLU and
  pooling between them.

A CHWN array viewed as (N, H, W, C) *is* an ordinary NumPy array of that shape, so any consumer
that does not know about layouts (a reshape, ``np.ascontiguousarray``, a user) gets the right
values; kernels that do know read its memory directly. Element-wise ufuncs keep the layout of
their input (NumPy's ``order='K'``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def is_batch_minor(x: np.ndarray) -> bool:
    """True when the (N, H, W, C) array ``x`` has CHWN memory (with N = C = 1 both orders hold)."""
    return x.ndim == 4 and x.transpose(3, 1, 2, 0).flags.c_contiguous


def to_batch_minor(x: np.ndarray) -> np.ndarray:
    """The C-contiguous (C, H, W, N) array of ``x``: a view when ``x`` is batch-minor already,
    else one transposing copy."""
    return np.ascontiguousarray(x.transpose(3, 1, 2, 0))


def from_batch_minor(xc: np.ndarray) -> np.ndarray:
    """The (N, H, W, C) view of a (C, H, W, N) array (no copy)."""
    return xc.transpose(3, 1, 2, 0)


def in_frame(frame: tuple[np.ndarray, int, int] | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The (A, H, W, B) interior at (top, left) of ``frame`` = ``(buffer, top, left)``, a larger
    zero-bordered array that a kernel may write its output of kernel-order ``shape`` into (see
    :func:`cnnkit.kernels.conv.direct_input_frame`); None when the frame cannot hold it (then the
    output is made as usual)."""
    if frame is None:
        return None
    buf, top, left = frame
    a, h, w, b = shape
    if buf.ndim != 4 or buf.shape[0] != a or buf.shape[3] != b or top + h > buf.shape[1] or left + w > buf.shape[2]:
        return None
    return buf[:, top:top + h, left:left + w, :]


def taps_view(a: np.ndarray, size, stride, out_hw, dilation=(1, 1), writeable: bool = False) -> np.ndarray:
    """View (FH, FW, A, H', W', B) of a 4-D array ``a`` (A, H, W, B): ``[i, j]`` holds the element at
    offset (i·DH, j·DW) of every window, windows starting every (SH, SW).

    For an NHWC array A is the batch and B the channels (the im2col path's windows); for a
    (C, H, W, N) array A is the channels and B the batch (the NumPy pooling kernels pool such an
    array as it is). Writeable only where windows do not overlap (each element then appears once).
    """
    n, _, _, c = a.shape
    (fh, fw), (sh, sw), (ho, wo), (dh, dw) = size, stride, out_hw, dilation
    s_n, s_h, s_w, s_c = a.strides
    return as_strided(a, shape=(fh, fw, n, ho, wo, c), strides=(s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw, s_c),
                      writeable=writeable)


def scatter_taps(dst: np.ndarray, g: np.ndarray, size, stride, out_hw, dilation=(1, 1)) -> None:
    """Add per-tap values ``g`` (FH, FW, A, H', W', B) into the windows of ``dst`` (A, H, W, B):
    the adjoint of :func:`taps_view`, one strided add per tap (windows may overlap)."""
    (fh, fw), (sh, sw), (ho, wo), (dh, dw) = size, stride, out_hw, dilation
    for i in range(fh):
        for j in range(fw):
            r, s = i * dh, j * dw
            dst[:, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw, :] += g[i, j]


def tiles(n: int, rows: int, row_bytes: int, budget: int):
    """Split N images of ``rows`` output rows into tiles of about ``budget`` bytes of scratch.

    Yields ``(n0, n1, r0, r1)``: images n0…n1-1, output rows r0…r1-1 (all rows when a tile holds
    whole images; one image at a time, in row blocks, when a single image is over budget).
    """
    per_image = rows * row_bytes
    if per_image <= budget:
        groups = -(-n // max(1, budget // per_image))  # as few tiles as fit, of even sizes
        for g in range(groups):
            yield n * g // groups, n * (g + 1) // groups, 0, rows
        return
    blocks = -(-rows // max(1, budget // row_bytes))
    for i in range(n):
        for b in range(blocks):
            yield i, i + 1, rows * b // blocks, rows * (b + 1) // blocks
