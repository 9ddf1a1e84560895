"""The compiled helper cnnkit.kernels._native: every block of its kernels, NaN, threads, bad arguments.

The kernel tests elsewhere use K ≤ 5 filters and C ≤ 3 channels, which leave most of the compiled
blocking unused. Here the public kernels run (stride 1: the direct path) on shapes that reach every
micro-kernel of ``_conv_body.h`` in float32 and float64 *whatever the machine's vector width*
(:func:`_blocks` models the blocking for 16-, 32- and 64-byte vectors and a test checks the
union), against the float64 loop oracle of ``reference.py``; then the fused ReLU's NaN rule, a
gradient check of a wide conv, shards in two threads, ``backward_prep`` against NumPy, max pooling
at the 256-tap limit, and argument checks of every entry point (each a ValueError, never a crash).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import reference as ref
from cnnkit import shapes
from cnnkit.kernels import _native
from cnnkit.kernels import conv as conv_module
from cnnkit.kernels import pool as pool_module
from cnnkit.kernels.conv import conv2d_backward, conv2d_forward
from cnnkit.kernels.layout import is_batch_minor
from cnnkit.kernels.pool import maxpool2d_backward, maxpool2d_forward, maxpool2d_values

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 4e-6, np.float64: 1e-13}  # relative to the largest |value| of the reference


def _close(got, want, dtype) -> None:
    scale = max(1.0, float(np.nanmax(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


# (N, (H, W), C, K, (FH, FW), dilation, padding). Spans W'·N of 8–90 values (never a multiple of 16);
# K = 31 and 20 with a span of 46 reach the 12 × 2 tail blocks;
# K = 37 and 27 mix vectorised and dot-product filters in the weight gradient, C = 16 with 5×5
# filters turns prefetching on; the test below checks the list reaches every block.
CONV_CASES = {
    "K6-F5-same": (5, (4, 17), 5, 6, (5, 5), 1, "same"),
    "K37-C13-F3-P1": (5, (6, 13), 13, 37, (3, 3), 1, 1),
    "K20-C5-F5-D2-asym": (7, (9, 11), 5, 20, (5, 5), 2, ((2, 3), (4, 1))),
    "K64-C14-1x1": (5, (4, 10), 14, 64, (1, 1), 1, 0),
    "K40-C16-F5-P2-prefetch": (3, (6, 17), 16, 40, (5, 5), 1, 2),
    "K27-C7-F3-D2-same": (7, (6, 9), 7, 27, (3, 3), 2, "same"),
    "K5-C14-span8": (2, (5, 6), 14, 5, (3, 3), 1, 0),
    "K3-F3x2-D2x1-asym": (9, (5, 9), 2, 3, (3, 2), (2, 1), ((0, 2), (1, 1))),
    "K31-C3-1x1-span46": (2, (4, 23), 3, 31, (1, 1), 1, 0),  # span mod 3·VL >= 2·VL at every width
    "K20-C2-1x1-span46": (2, (3, 23), 2, 20, (1, 1), 1, 0),
}


def _geometry(case):
    """(pads, dilation, (H', W')) of a case."""
    n, hw, c, k, f, d, p = case
    dilation = shapes.pair(d)
    pads = shapes.resolve_padding(p, hw, f, (1, 1), dilation)
    return pads, dilation, (ref.out_size(hw[0], f[0], 1, *pads[0], dilation[0]),
                            ref.out_size(hw[1], f[1], 1, *pads[1], dilation[1]))


# --------------------------------------------------------------------------- the blocking model
def _fwd_blocks(channels, filters, taps, span, vl, vbytes):
    """Blocks conv_forward runs: (KB filters, NV vectors), the scalar tail, prefetching."""
    out = set()

    def k_loop(kb, nv):
        out.update(("fwd", b, nv) for b in _split(filters, [kb, 4, 2, 1]))

    wide = (6, 4) if filters <= 6 else (8, 3)
    if span >= wide[1] * vl:
        k_loop(*wide)
    rest = span % (wide[1] * vl)
    if filters > 6 and rest >= 2 * vl:  # a 2-vector tail: 12 filters × 2 vectors
        out.update(("fwd", b, 2) for b in _split(filters, [12, 8, 4, 2, 1]))
        rest -= 2 * vl
    if rest >= vl:
        k_loop(8, 1)
    if span % vl:
        out.add(("fwd-scalar",))
    if taps * channels * (4 if filters <= 6 else 3) * vbytes > 32 << 10:
        out.add(("prefetch",))
    return out


def _split(total, sizes):
    """Greedy blocks: as many of each size in ``sizes`` (largest first) as fit in ``total``."""
    out = []
    for s in sizes:
        while total >= s:
            out.append(s)
            total -= s
    return out


def _dw_blocks(c, k, taps, span, vl, vbytes):
    """Blocks conv_weight_grad runs: along the filters (rows × vectors), then dot products."""
    out = set()
    kv = k - k % vl
    tails = {"tile": span >= vl, "scalar": span % vl > 0}  # full vectors of the span, leftover values
    if kv:
        r = 12 if vbytes == 64 else 6  # DWK_ROWS
        vecs = [2] * (kv // (2 * vl)) + [1] * (kv % (2 * vl) // vl)
        out.update(("dwk", "R" if cb == r else cb, nv) for cb in _split(taps * c, [r, 4, 2, 1]) for nv in vecs)
        out.update(("transpose-" + name,) for name, on in tails.items() if on)
    if kv != k:
        out.update(("dw", cb, kb) for cb in _split(c, [4, 2, 1]) for kb in _split(k - kv, [4, 2, 1]))
        out.update(("dw-" + name,) for name, on in tails.items() if on)
    return out


def _blocks(case, vbytes, itemsize):
    """Every block a forward + backward of ``case`` runs (dx is a forward conv: C and K swapped)."""
    n, (_, w), c, k, (fh, fw), _, _ = case
    _, _, (_, wo) = _geometry(case)
    vl = vbytes // itemsize
    return (_fwd_blocks(c, k, fh * fw, wo * n, vl, vbytes) | _fwd_blocks(k, c, fh * fw, w * n, vl, vbytes)
            | _dw_blocks(c, k, fh * fw, wo * n, vl, vbytes))


@pytest.mark.parametrize("vbytes", [16, 32, 64])
@pytest.mark.parametrize("itemsize", [4, 8])
def test_the_conv_cases_reach_every_compiled_block_at_every_vector_width(vbytes, itemsize):
    """CONV_CASES run every micro-kernel of _conv_body.h for SSE/NEON, AVX2 and AVX-512 vectors
    (a model of its blocking: update it with the kernel)."""
    vl = vbytes // itemsize
    fwd = {(8, 3), (6, 4), (8, 1), (4, 4), (4, 3), (4, 1), (2, 4), (2, 3), (2, 1), (1, 4), (1, 3), (1, 1),
           (12, 2), (8, 2), (4, 2), (2, 2), (1, 2)}
    want = ({("fwd", *b) for b in fwd} | {("dwk", cb, nv) for cb in ("R", 4, 2, 1) for nv in (1, 2)}
            | {("dw", cb, kb) for cb in (4, 2, 1) for kb in (4, 2, 1) if kb < vl}  # leftovers < VL
            | {(name,) for name in ("fwd-scalar", "prefetch", "transpose-tile", "transpose-scalar",
                                    "dw-tile", "dw-scalar")})
    got = set().union(*(_blocks(case, vbytes, itemsize) for case in CONV_CASES.values()))
    assert want - got == set()
    assert _native.VECTOR_BYTES in (16, 32, 64)  # this machine's width is one of the modelled ones


# --------------------------------------------------------------------------- the public kernels
@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
@pytest.mark.parametrize("case", list(CONV_CASES.values()), ids=list(CONV_CASES))
def test_direct_conv_equals_the_loop_oracle_in_both_dtypes(case, relu):
    """Forward and backward of the direct path equal the float64 loop oracle in float32 and float64."""
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    n, hw, c, k, f, _, _ = case
    pads, dilation, _ = _geometry(case)

    def draw(shape, scale=1.0):  # float32 values, so both dtypes compute on the same numbers
        return (rng.standard_normal(shape) * scale).astype(np.float32).astype(np.float64)

    x, w, b = draw((n, *hw, c)), draw((*f, c, k), 1 / math.sqrt(f[0] * f[1] * c)), draw(k)
    pre = ref.conv2d_forward(x, w, b, (1, 1), pads, dilation)
    dy = draw(pre.shape)
    if relu:  # no mask bit that float32 rounding could flip: dy = 0 near the kink
        dy[np.abs(pre) < 1e-3] = 0
    y_ref = np.maximum(pre, 0) if relu else pre
    grads_ref = ref.conv2d_backward(dy * (pre > 0) if relu else dy, x, w, (1, 1), pads, dilation)
    for dtype in DTYPES:
        assert conv_module._direct_path((1, 1), np.dtype(dtype))
        y, cache = conv2d_forward(x.astype(dtype), w.astype(dtype), b.astype(dtype), (1, 1), pads, dilation,
                                  relu=relu)
        assert y.dtype == dtype and is_batch_minor(y)  # the direct path's (K, H', W', N) memory
        _close(y, y_ref, dtype)
        grads = conv2d_backward(dy.astype(dtype), cache)
        for got, want in zip(grads, grads_ref):
            assert got.dtype == dtype
            _close(got, want, dtype)


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
def test_a_wide_direct_conv_passes_the_float64_gradient_check(relu):
    """dx, dw, db of a 3×3 conv with C = 13, K = 20 (mixed weight-gradient paths) match central
    differences at gradcheck's tolerance (no pre-activation within 1e-4 of the kink; the loss is
    summed exactly with math.fsum so that its rounding does not swamp the differences)."""
    from cnnkit.gradcheck import numerical_gradient, within_tolerance

    rng = np.random.default_rng(20)
    pads = ((1, 1), (1, 1))
    while True:
        x = rng.standard_normal((3, 4, 5, 13))
        w = rng.standard_normal((3, 3, 13, 20)) / math.sqrt(3 * 3 * 13)
        b = rng.standard_normal(20)
        if np.abs(conv2d_forward(x, w, b, (1, 1), pads)[0]).min() > 1e-4:
            break
    y, cache = conv2d_forward(x, w, b, (1, 1), pads, relu=relu)
    r = rng.standard_normal(y.shape)
    grads = conv2d_backward(r, cache)

    def loss():
        return math.fsum((conv2d_forward(x, w, b, (1, 1), pads, relu=relu)[0] * r).ravel())

    for got, arr in zip(grads, (x, w, b)):
        assert within_tolerance(got, numerical_gradient(loss, arr)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_fused_relu_keeps_nan_in_the_vectors_and_the_scalar_tail(dtype):
    """max(NaN, 0) is NaN (np.maximum) at span positions 0 and 16 of a 17-long span (1×1 conv), and in
    a wide conv's 8×3 block, 8×1 block and tail; other values are max(·, 0)."""
    x = np.linspace(-1, 1, 17).astype(dtype).reshape(17, 1, 1, 1)  # N = 17: span position = image
    x[[0, 16]] = np.nan
    y, _ = conv2d_forward(x, np.ones((1, 1, 1, 1), dtype), None, relu=True)
    np.testing.assert_array_equal(y, np.maximum(x, 0))  # NaN equal to NaN
    assert np.isnan(y[[0, 16]]).all() and y.dtype == dtype

    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 2, 11, 2)).astype(dtype)  # span 77: positions 0, 52 and 76 below
    for n, r, col in [(0, 0, 0), (3, 1, 7), (6, 0, 10)]:
        x[n, r, col, 0] = np.nan
    w, b = rng.standard_normal((1, 1, 2, 9)).astype(dtype), rng.standard_normal(9).astype(dtype)
    y, _ = conv2d_forward(x, w, b, relu=True)
    want = np.maximum(ref.conv2d_forward(x, w, b), 0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y).sum() == 3 * 9
    _close(y, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_threads_running_wide_shards_at_once_get_the_sequential_results(dtype):
    """K = 40, C = 13 shards (the weight gradient's scratch allocations) in two threads at once give
    bit for bit the results of running them one after the other."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 10, 10, 13)).astype(dtype)
    w = rng.standard_normal((3, 3, 13, 40)).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    dy = rng.standard_normal((8, 10, 10, 40)).astype(dtype)
    pads = ((1, 1), (1, 1))

    def step(lo, hi):
        y, cache = conv2d_forward(x[lo:hi], w, b, (1, 1), pads, relu=True)
        return (y, *conv2d_backward(dy[lo:hi], cache))

    ref.assert_threads_match_sequential(step, rounds=5)


# --------------------------------------------------------------------------- _native directly
def _weight_grad_ref(x, dy, fh, fw, dilation):
    """dw[i, j] = Σ x window (i, j) · dy over rows, columns and images: (C, Hp, Wp, N), (K, H', W', N)."""
    _, ho, wo, _ = dy.shape
    dw = np.empty((fh, fw, x.shape[0], dy.shape[0]))
    for i in range(fh):
        for j in range(fw):
            xs = x[:, i * dilation[0]:i * dilation[0] + ho, j * dilation[1]:j * dilation[1] + wo, :]
            dw[i, j] = np.tensordot(xs, dy, axes=([1, 2, 3], [1, 2, 3]))  # (C, K)
    return dw


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_weight_grad_gives_the_same_dw_for_any_rows_per_block(dtype):
    """The dot-product filters' row blocks (1, 2, 4, all rows; 0 and negative counts mean 1) change
    only the order of the sums."""
    rng = np.random.default_rng(5)
    c, hp, wp, n, fh, fw, k, ho, wo = 6, 9, 8, 5, 3, 2, 21, 5, 6  # dilation (2, 2)
    x = rng.standard_normal((c, hp, wp, n)).astype(dtype)
    dy = rng.standard_normal((k, ho, wo, n)).astype(dtype)
    want = _weight_grad_ref(x.astype(np.float64), dy.astype(np.float64), fh, fw, (2, 2))
    for rows in (1, 2, 4, 1000, 0, -3):
        dw = np.full((fh, fw, c, k), np.nan, dtype)
        _native.conv_weight_grad(x, dy, dw, (c, hp, wp, n), (fh, fw, k), (ho, wo), (2, 2), rows)
        _close(dw, want, dtype)


def _prep_ref(dy, y, hz, wz, top, left):
    """(dym, db, z) of backward_prep in NumPy."""
    dym = dy if y is None else np.where(y > 0, dy, 0)
    _, ho, wo, _ = dy.shape
    z = np.zeros((dy.shape[0], hz, wz, dy.shape[3]), dy.dtype)
    r0, r1, c0, c1 = max(0, -top), min(ho, hz - top), max(0, -left), min(wo, wz - left)
    if r1 > r0 and c1 > c0:
        z[:, r0 + top:r1 + top, c0 + left:c1 + left] = dym[:, r0:r1, c0:c1]
    return dym, dym.sum(axis=(1, 2, 3), dtype=np.float64), z


PREP_CASES = {  # (Hz, Wz, top, left) for dy of (K, H', W', N) = (3, 4, 5, 7)
    "inside": (8, 9, 2, 2), "crop-top-left": (4, 5, -1, -2), "crop-bottom-right": (5, 6, 2, 3),
    "crop-every-side": (3, 3, -1, -1), "below": (3, 5, 3, 0), "left-of": (4, 5, 0, -5), "exact": (4, 5, 0, 0),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("zgeom", list(PREP_CASES.values()), ids=list(PREP_CASES))
def test_backward_prep_equals_numpy_including_cropped_placements(zgeom, mask, dtype):
    """dym = dy·[y > 0] (NaN in y masks out, NaN in dy kept), db = Σ dym, z = dym placed at (top, left)
    in zeros and cropped; every output fully written; each output optional."""
    rng = np.random.default_rng(zlib.crc32(repr(zgeom).encode()))
    hz, wz, top, left = zgeom
    dy = rng.standard_normal((3, 4, 5, 7)).astype(dtype)  # span 35: vectors and a scalar tail
    y = rng.standard_normal(dy.shape).astype(dtype) if mask else None
    if mask:
        y[0, 0, 0, :3] = y[0, 1, 4, 4:] = np.nan  # span positions 0-2 (a vector) and 32-34 (the tail)
        dy[1, 2, 4, 6] = dy[2, 0, 1, 0] = np.nan
        y[1, 2, 4, 6], y[2, 0, 1, 0] = 1.0, -1.0  # one NaN passes the mask, one is masked out
    dym_ref, db_ref, z_ref = _prep_ref(dy, y, hz, wz, top, left)
    dym, db, z = (np.full(a.shape, np.nan, dtype) for a in (dy, db_ref, z_ref))
    _native.backward_prep(dy, y, dym, z, db, dy.shape, zgeom)
    np.testing.assert_array_equal(dym, dym_ref)
    np.testing.assert_array_equal(z, z_ref)
    _close(db, db_ref, dtype)
    refs = {"dym": dym_ref, "z": z_ref, "db": db_ref}
    for keep in refs:  # one output at a time (the others None)
        out = {name: np.full(a.shape, np.nan, dtype) if name == keep else None for name, a in refs.items()}
        _native.backward_prep(dy, y, out["dym"], out["z"], out["db"], dy.shape, zgeom)
        if keep == "db":
            _close(out[keep], refs[keep], dtype)
        else:
            np.testing.assert_array_equal(out[keep], refs[keep])


# --------------------------------------------------------------------------- max pooling at 256 taps
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw, size, stride, pads, native", [
    ((20, 21), (16, 16), (2, 3), ((1, 0), (0, 2)), True),
    ((32, 32), (16, 16), (16, 16), ((0, 0), (0, 0)), True),  # windows tile the input
    ((20, 21), (16, 17), (2, 3), ((1, 0), (0, 2)), False),
], ids=["16x16-native", "16x16-tiling-native", "16x17-numpy"])
def test_maxpool_at_the_256_tap_limit_equals_the_loop_oracle(hw, size, stride, pads, native, dtype):
    """256 taps run compiled (uint8 argmax up to 255), 272 in NumPy (uint16): both equal the oracle,
    forward and backward."""
    rng = np.random.default_rng(zlib.crc32(repr((hw, size)).encode()))
    x = (rng.permutation(2 * hw[0] * hw[1] * 3).reshape(2, *hw, 3) * 0.01 - 1).astype(dtype)  # no ties
    last = (size[0] - 1 - pads[0][0], size[1] - 1 - pads[1][0])  # window (0, 0)'s last tap, in x
    x[0, last[0], last[1], :] = 100
    assert pool_module._native_max(np.dtype(dtype), size) == native
    y, cache = maxpool2d_forward(x, size, stride, pads)
    y_ref = ref.maxpool2d_forward(x, size, stride, pads)[0]
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(maxpool2d_values(x, size, stride, pads), y_ref)
    argmax = cache[0]
    assert argmax.dtype == (np.uint8 if native else np.uint16)
    assert (argmax[0, 0, 0] == size[0] * size[1] - 1).all()
    dy = rng.standard_normal(y.shape).astype(dtype)
    _close(maxpool2d_backward(dy, cache), ref.maxpool2d_backward(dy, x, size, stride, pads), dtype)


# --------------------------------------------------------------------------- argument checks
def _conv_args(dtype=np.float32):
    """Valid conv_forward arguments: x (2, 5, 6, 3), w (3, 2, 2, 4), b, y (4, 3, 5, 3), geometry."""
    return [np.zeros((2, 5, 6, 3), dtype), np.zeros((3, 2, 2, 4), dtype), np.zeros(4, dtype),
            np.zeros((4, 3, 5, 3), dtype), (2, 5, 6, 3), (3, 2, 4), (3, 5), (1, 1), False]


def _non_contiguous(a):
    return np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)[..., ::2]


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


CONV_BAD = {  # name -> (argument index, replacement(args), error wording)
    "x-int32": (0, lambda a: a[0].astype(np.int32), "x must be float32 or float64"),
    "w-float16": (1, lambda a: a[1].astype(np.float16), "w must be float32 or float64"),
    "w-float64-x-float32": (1, lambda a: a[1].astype(np.float64), "w must be float32 or float64, like the other"),
    "b-float64": (2, lambda a: a[2].astype(np.float64), "b must be float32 or float64, like the other"),
    "x-big-endian": (0, lambda a: a[0].astype(">f4"), "x must be float32 or float64"),
    "x-non-contiguous": (0, lambda a: _non_contiguous(a[0]), "x must be a C-contiguous float32"),
    "y-read-only": (3, lambda a: _read_only(a[3]), "y must be a C-contiguous, writable"),
    "y-too-short": (3, lambda a: a[3].ravel()[1:], "y holds 179 values; the geometry needs 180"),
    "w-too-short": (1, lambda a: a[1][:2], "w holds 32 values; the geometry needs 48"),
    "b-too-short": (2, lambda a: a[2][:3], "b holds 3 values; the geometry needs 4"),
    "rows-past-the-input": (6, lambda a: (4, 5), "inconsistent convolution geometry"),  # 4 + 2 > Hp = 5
    "cols-past-the-input": (7, lambda a: (1, 2), "inconsistent convolution geometry"),  # 5 + 2 > Wp = 6
    "dilation-0": (7, lambda a: (0, 1), "inconsistent convolution geometry"),
    "negative-channels": (4, lambda a: (-2, 5, 6, 3), "inconsistent convolution geometry"),
    "overflowing-input-size": (4, lambda a: (2**20, 2**20, 2**20, 2**20), "inconsistent convolution geometry"),
    "huge-filter-count": (5, lambda a: (3, 2, 2**30), "w holds 48 values; the geometry needs 12884901888"),
}


@pytest.mark.parametrize("name", list(CONV_BAD))
def test_conv_forward_refuses_bad_arguments_with_a_value_error(name):
    """A wrong dtype, mixed dtypes, bad memory, short buffers or impossible geometry: ValueError."""
    index, replace, message = CONV_BAD[name]
    args = _conv_args()
    _native.conv_forward(*args)  # the valid arguments pass
    args[index] = replace(args)
    with pytest.raises(ValueError, match=message):
        _native.conv_forward(*args)


def test_conv_weight_grad_and_backward_prep_refuse_bad_arguments():
    """The same checks guard the weight gradient and the backward pass's preparation."""
    x, _, _, y, *geometry, _ = _conv_args()
    dw = np.zeros((3, 2, 2, 4), np.float32)
    _native.conv_weight_grad(x, y, dw, *geometry, 1)
    bad = [((x, y.astype(np.int32), dw), "dy must be float32 or float64"),
           ((x, y, dw.astype(np.float64)), "dw must be float32 or float64, like the other"),
           ((x, y, dw[:1]), "dw holds 16 values; the geometry needs 48"),
           ((x, y, _read_only(dw)), "dw must be a C-contiguous, writable")]
    for arrays, message in bad:
        with pytest.raises(ValueError, match=message):
            _native.conv_weight_grad(*arrays, *geometry, 1)
    with pytest.raises(ValueError, match="inconsistent convolution geometry"):
        _native.conv_weight_grad(x, y, dw, (2, 5, 6, 3), (3, 2, 4), (3, 5), (2, 1), 1)  # 3 + 4 > 5

    dy, db, z = y, np.zeros(4, np.float32), np.zeros((4, 5, 6, 3), np.float32)
    prep_geometry = (dy.shape, (5, 6, 1, 1))
    _native.backward_prep(dy, None, None, z, db, *prep_geometry)
    bad = [((None, None, None, z, db), "dy is required"),
           ((dy, dy.astype(np.float64), None, None, None), "y must be float32 or float64, like the other"),
           ((dy, None, None, z[:1], db), "z holds 90 values; the geometry needs 360"),
           ((dy, None, None, None, db[:2]), "db holds 2 values; the geometry needs 4"),
           ((dy, None, _read_only(dy), None, None), "dym must be a C-contiguous, writable"),
           ((dy.astype(np.float16), None, None, None, None), "dy must be float32 or float64")]
    for arrays, message in bad:
        with pytest.raises(ValueError, match=message):
            _native.backward_prep(*arrays, *prep_geometry)
    with pytest.raises(ValueError, match="product must fit in memory"):
        _native.backward_prep(dy, None, None, None, db, (2**20,) * 4, (5, 6, 1, 1))
    with pytest.raises(ValueError, match="product must fit in memory"):
        _native.backward_prep(dy, None, None, z, db, dy.shape, (2**30, 2**30, 0, 0))


def test_geometry_beyond_a_c_int_is_an_error_not_a_crash():
    """Sizes past 2**31 are refused when the arguments are parsed (OverflowError)."""
    args = _conv_args()
    args[4] = (2, 5, 6, 2**40)
    with pytest.raises(OverflowError):
        _native.conv_forward(*args)


def _pool_args(dtype=np.float32):
    """Valid maxpool_forward arguments: x (2, 5, 6, 3), y (2, 2, 3, 3), argmax, geometry (2×2, S2)."""
    return [np.zeros((2, 5, 6, 3), dtype), np.zeros((2, 2, 3, 3), dtype), np.zeros((2, 2, 3, 3), np.uint8),
            (2, 5, 6, 3), (2, 2), (2, 2), (0, 0), (2, 3)]


POOL_BAD = {
    "argmax-int8": (2, lambda a: a[2].astype(np.int8), "argmax must be a C-contiguous uint8 array of 36"),
    "argmax-uint16": (2, lambda a: a[2].astype(np.uint16), "argmax must be a C-contiguous uint8 array of 36"),
    "argmax-bool": (2, lambda a: a[2].astype(bool), "argmax must be a C-contiguous uint8 array of 36"),
    "argmax-too-short": (2, lambda a: a[2].ravel()[1:], "argmax must be a C-contiguous uint8 array of 36"),
    "argmax-non-contiguous": (2, lambda a: _non_contiguous(a[2]), "argmax must be a C-contiguous, writable uint8"),
    "x-float16": (0, lambda a: a[0].astype(np.float16), "x must be float32 or float64"),
    "y-float64": (1, lambda a: a[1].astype(np.float64), "y must be float32 or float64, like the other"),
    "y-too-short": (1, lambda a: a[1][:1], "y holds 18 values; the geometry needs 36"),
    "257-taps": (4, lambda a: (1, 257), "inconsistent pooling geometry \\(at most 256 taps\\)"),
    "17x16-taps": (4, lambda a: (17, 16), "at most 256 taps"),
    "negative-padding": (6, lambda a: (-1, 0), "inconsistent pooling geometry"),
    "stride-0": (5, lambda a: (0, 2), "inconsistent pooling geometry"),
    "windows-far-past-the-input": (7, lambda a: (9, 3), "inconsistent pooling geometry"),
    "overflowing-size": (3, lambda a: (2**20, 2**20, 2**20, 2**20), "inconsistent pooling geometry"),
}


@pytest.mark.parametrize("name", list(POOL_BAD))
def test_maxpool_refuses_bad_arguments_with_a_value_error(name):
    """argmax not a uint8 buffer, wrong dtypes, short buffers, more than 256 taps, bad geometry."""
    index, replace, message = POOL_BAD[name]
    args = _pool_args()
    _native.maxpool_forward(*args)
    args[index] = replace(args)
    with pytest.raises(ValueError, match=message):
        _native.maxpool_forward(*args)


def test_maxpool_backward_refuses_bad_arguments_with_a_value_error():
    """The backward entry point checks its dy, argmax and dx the same way."""
    x, y, argmax, *geometry = _pool_args()
    _native.maxpool_backward(y, argmax, x, *geometry)
    bad = [((y, argmax.astype(np.int16), x), "argmax must be a C-contiguous uint8 array of 36"),
           ((y, argmax, x.astype(np.float64)), "dx must be float32 or float64, like the other"),
           ((y, argmax, _read_only(x)), "dx must be a C-contiguous, writable"),
           ((y.astype(np.int32), argmax, x), "dy must be float32 or float64"),
           ((y, argmax, x[:1]), "dx holds 90 values; the geometry needs 180")]
    for arrays, message in bad:
        with pytest.raises(ValueError, match=message):
            _native.maxpool_backward(*arrays, *geometry)
    with pytest.raises(ValueError, match="at most 256 taps"):
        _native.maxpool_backward(y, argmax, x, geometry[0], (16, 17), *geometry[2:])


@pytest.mark.parametrize("frame", [(4, 4, 0, 0), (6, 9, 2, 1), (9, 9, -1, 0), (9, 9, 0, 5)])
def test_a_frame_that_cannot_hold_the_output_is_refused(frame):
    """conv_forward, conv_weight_grad, max pooling and backward_prep refuse a frame that is too
    small or misplaced for the rows it should hold, naming the array and both sizes."""
    x = np.zeros((2, 7, 7, 3), np.float32)
    w = np.zeros((3, 3, 2, 4), np.float32)
    geometry = ((2, 7, 7, 3), (3, 3, 4), (5, 5), (1, 1))
    big = np.zeros((4, 9, 9, 3), np.float32)
    calls = [
        lambda: _native.conv_forward(x, w, None, big, *geometry, False, frame),
        lambda: _native.conv_weight_grad(x, big, np.zeros_like(w), *geometry, 1, frame),
        lambda: _native.maxpool_forward(np.zeros((2, 10, 10, 3), np.float32), np.zeros((2, 9, 9, 3), np.float32),
                                        None, (2, 10, 10, 3), (2, 2), (2, 2), (0, 0), (5, 5), frame),
        lambda: _native.backward_prep(np.zeros((4, 5, 5, 3), np.float32), big, None, None, None, (4, 5, 5, 3),
                                      (7, 7, 1, 1), frame),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"the frame of (y|dy) must hold its 5x5 rows"):
            call()


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
@pytest.mark.parametrize("case", ["K37-C13-F3-P1", "K6-F5-same", "K20-C2-1x1-span46"])
def test_the_pooled_forward_equals_conv_then_maxpool(case, relu):
    """conv2d_maxpool2_values (inference: conv, its ReLU, and a 2×2 stride-2 max-pool in one pass)
    equals the loop oracle's conv then max-pool, in float32 and float64, into a frame too; None
    where the conv output has an odd side."""
    from cnnkit.kernels.conv import conv2d_maxpool2_values

    n, hw, c, k, f, _, _ = CONV_CASES[case]
    hw = (hw[0] + hw[0] % 2, hw[1] + hw[1] % 2)  # even inputs; 'same'/1x1 keep them even
    pads = shapes.resolve_padding(1 if f == (3, 3) else ("same" if f == (5, 5) else 0), hw, f, (1, 1), (1, 1))
    rng = np.random.default_rng(zlib.crc32(repr((case, relu)).encode()))
    x = rng.standard_normal((n, *hw, c)).astype(np.float32).astype(np.float64)
    w = (rng.standard_normal((*f, c, k)) / math.sqrt(f[0] * f[1] * c)).astype(np.float32).astype(np.float64)
    b = rng.standard_normal(k).astype(np.float32).astype(np.float64)
    pre = ref.conv2d_forward(x, w, b, (1, 1), pads)
    want = ref.maxpool2d_forward(np.maximum(pre, 0) if relu else pre, (2, 2), (2, 2))[0]
    for dtype in DTYPES:
        args = (x.astype(dtype), w.astype(dtype), b.astype(dtype), pads)
        got = conv2d_maxpool2_values(*args, relu=relu)
        assert got.dtype == dtype and is_batch_minor(got)
        _close(got, want, dtype)
        frame = (np.zeros((k, want.shape[1] + 3, want.shape[2] + 2, n), dtype), 2, 1)
        framed = conv2d_maxpool2_values(*args, relu=relu, frame=frame)
        assert framed.base is frame[0] and not frame[0][:, :2].any() and not frame[0][:, :, :1].any()
        np.testing.assert_array_equal(framed, got)
    odd = (x[:, :-1], w, b, pads)  # one row fewer: an odd output height
    assert conv2d_maxpool2_values(*odd) is None
