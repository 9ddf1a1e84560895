"""conv2d kernels: equal to the loop oracle, right in both dtypes, thread-safe, workspace-safe.

The kernel has two paths: the compiled direct convolution in batch-minor memory (stride 1) and
im2col + GEMM in NHWC (stride > 1, or a dtype the compiled helper does not take), whose NHWC
windows are read from NHWC memory or (few input channels) from a channel-major copy, in tiles of
about ``TILE_BYTES`` of scratch (several images, one image, or a block of output rows of one
image). The ``path`` fixture runs a test under each: "direct" as shipped (stride-1 cases direct,
the others im2col), and the im2col variants for every stride, forced through ``_direct_path``,
``CHANNEL_MAJOR_CHANNELS`` and a tiny ``TILE_BYTES``.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import reference as ref
from cnnkit import shapes
from cnnkit.kernels import conv as conv_module
from cnnkit.kernels.conv import conv2d_backward, conv2d_forward, im2col
from cnnkit.kernels.layout import from_batch_minor, is_batch_minor

PATHS = {  # name -> (direct at stride 1, CHANNEL_MAJOR_CHANNELS, TILE_BYTES)
    "direct": (True, 0, 1 << 20),
    "nhwc": (False, 0, 1 << 20), "nhwc-row-tiles": (False, 0, 64), "nhwc-image-tiles": (False, 0, 2000),
    "channel-major": (False, 1 << 10, 1 << 20), "channel-major-row-tiles": (False, 1 << 10, 64),
    "channel-major-image-tiles": (False, 1 << 10, 2000),
}


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch):
    direct, channel_major, tile = PATHS[request.param]
    if not direct:
        monkeypatch.setattr(conv_module, "_direct_path", lambda stride, dtype: False)
    monkeypatch.setattr(conv_module, "CHANNEL_MAJOR_CHANNELS", channel_major)
    monkeypatch.setattr(conv_module, "TILE_BYTES", tile)
    return request.param


def _cases():
    """Every stride 1–3 × padding 0, 1, 2, 'same' × dilation 1–2 × C ∈ {1, 3} × K ∈ {1, 4}, with
    non-square inputs and (cycling) rectangular filters, each drawn so that the output exists."""
    filters = itertools.cycle([(3, 3), (2, 3), (3, 1), (1, 2), (2, 2), (1, 1)])
    out = []
    for s, p, d, c, k in itertools.product((1, 2, 3), (0, 1, 2, "same"), (1, 2), (1, 3), (1, 4)):
        fh, fw = next(filters)
        out.append(pytest.param((6, 7), (fh, fw), s, p, d, c, k, id=f"S{s}-P{p}-D{d}-C{c}-K{k}-F{fh}x{fw}"))
    out.append(pytest.param((5, 9), (5, 2), (2, 3), ((0, 2), (1, 0)), (1, 2), 2, 3, id="asymmetric"))
    out.append(pytest.param((4, 4), (1, 1), 1, 0, 1, 3, 4, id="1x1"))
    out.append(pytest.param((3, 3), (3, 3), 1, 3, 1, 1, 2, id="pad-larger-than-filter"))
    return out


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
@pytest.mark.parametrize("hw, f, s, p, d, c, k", _cases())
def test_forward_and_backward_equal_the_loop_oracle(hw, f, s, p, d, c, k, path, relu):
    """With ``relu`` the fused kernel equals the oracle conv followed by max(·, 0), and its backward
    the oracle's backward of dy·[y > 0]."""
    rng = np.random.default_rng(zlib.crc32(repr((hw, f, s, p, d, c, k)).encode()))
    stride, dilation = shapes.pair(s), shapes.pair(d)
    pads = shapes.resolve_padding(p, hw, f, stride, dilation)
    x = rng.standard_normal((2, *hw, c))
    w = rng.standard_normal((*f, c, k))
    b = rng.standard_normal(k)

    y, cache = conv2d_forward(x, w, b, stride, pads, dilation, relu=relu)
    y_ref = ref.conv2d_forward(x, w, b, stride, pads, dilation)
    if relu:
        y_ref = np.maximum(y_ref, 0)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)

    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(dy * (y_ref > 0) if relu else dy, x, w, stride, pads, dilation)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_fused_relu_passes_the_float64_gradient_check(stride, rng, path):
    """Central differences of L = Σ r·relu(x ⋆ w + b) for x, w and b, at gradcheck's tolerance
    (inputs drawn again until no pre-activation is within 1e-4 of the kink at 0; a step h = 1e-6
    moves one by at most ~1e-6)."""
    from cnnkit.gradcheck import numerical_gradient, within_tolerance

    pads = ((1, 1), (1, 1))
    while True:
        x = rng.standard_normal((2, 4, 5, 2))
        w = rng.standard_normal((3, 3, 2, 3)) / 3
        b = rng.standard_normal(3)
        if np.abs(conv2d_forward(x, w, b, stride, pads)[0]).min() > 1e-4:
            break
    y, cache = conv2d_forward(x, w, b, stride, pads, relu=True)
    r = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(r, cache)

    def loss():
        return float(np.sum(conv2d_forward(x, w, b, stride, pads, relu=True)[0] * r))

    for got, arr in ((dx, x), (dw, w), (db, b)):
        assert within_tolerance(got, numerical_gradient(loss, arr)).all()


def test_same_padding_keeps_the_size_at_stride_one(rng):
    x = rng.standard_normal((1, 7, 10, 2))
    for f, d in [((3, 3), (1, 1)), ((4, 2), (1, 1)), ((3, 5), (2, 1))]:
        pads = shapes.resolve_padding("same", (7, 10), f, (1, 1), d)
        y, _ = conv2d_forward(x, rng.standard_normal((*f, 2, 3)), None, (1, 1), pads, d)
        assert y.shape == (1, 7, 10, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved_and_float32_close_to_the_oracle(dtype, rng, path):
    x = rng.standard_normal((3, 9, 8, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    for stride in [(1, 1), (2, 2)]:
        pads = ((1, 1), (1, 1))
        y, cache = conv2d_forward(x, w, b, stride, pads)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx, dw, db = conv2d_backward(dy, cache)
        assert {a.dtype for a in (y, dx, dw, db)} == {np.dtype(dtype)}
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b, stride, pads), rtol=tol, atol=tol)
        for got, want in zip((dx, dw, db), ref.conv2d_backward(dy, x, w, stride, pads)):
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)


def test_float64_weights_do_not_upcast_a_float32_input(rng):
    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    y, cache = conv2d_forward(x, rng.standard_normal((3, 3, 2, 2)), np.zeros(2), (1, 1), ((1, 1), (1, 1)))
    assert y.dtype == np.float32
    assert all(g.dtype == np.float32 for g in conv2d_backward(y, cache))


def test_need_dx_false_skips_dx_and_no_bias_gives_no_db(rng):
    x = rng.standard_normal((2, 5, 5, 1))
    y, cache = conv2d_forward(x, rng.standard_normal((3, 3, 1, 2)), None)
    dx, dw, db = conv2d_backward(np.ones_like(y), cache, need_dx=False)
    assert dx is None and db is None and dw.shape == (3, 3, 1, 2)


def test_im2col_rows_are_the_windows():
    x = np.arange(1 * 3 * 4 * 2, dtype=np.float64).reshape(1, 3, 4, 2)
    cols = im2col(x, 2, 2, (1, 2), (1, 1), (2, 2))
    # row (oh=1, ow=1): window rows 1-2, cols 2-3, flattened (FH, FW, C)
    np.testing.assert_array_equal(cols[3], x[0, 1:3, 2:4, :].ravel())
    assert cols.flags.c_contiguous


@pytest.mark.parametrize("stride, pads", [((1, 1), ((1, 1), (1, 1))), ((2, 1), ((0, 1), (1, 0))),
                                          ((1, 1), ((3, 0), (0, 2)))], ids=["S1", "S2", "pad>=F"])
def test_a_reused_workspace_gives_the_same_results(stride, pads, rng, path):
    w = rng.standard_normal((3, 2, 3, 4))
    ws: dict = {}
    for _ in range(3):  # the second and third calls reuse every buffer
        x = rng.standard_normal((2, 6, 7, 3))
        y, cache = conv2d_forward(x, w, None, stride, pads, workspace=ws)
        dy = rng.standard_normal(y.shape)
        dx, dw, _ = conv2d_backward(dy, cache, workspace=ws)
        y0, cache0 = conv2d_forward(x, w, None, stride, pads)
        dx0, dw0, _ = conv2d_backward(dy, cache0)
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(dx, dx0)
        np.testing.assert_array_equal(dw, dw0)
    assert ws  # the buffers were kept


def test_two_threads_running_shards_at_once_get_the_sequential_results(rng, path):
    x = rng.standard_normal((8, 12, 12, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    dy = rng.standard_normal((8, 12, 12, 8)).astype(np.float32)
    pads = ((1, 1), (1, 1))

    def step(lo, hi):
        y, cache = conv2d_forward(x[lo:hi], w, b, (1, 1), pads)
        return (y, *conv2d_backward(dy[lo:hi], cache))

    ref.assert_threads_match_sequential(step, rounds=5)


@pytest.mark.parametrize("pads", [((0, 0), (0, 0)), ((1, 0), (2, 1))])
def test_a_non_contiguous_input_gives_the_same_results(pads, rng, path):
    x_nchw = rng.standard_normal((2, 3, 6, 5))
    x = x_nchw.transpose(0, 2, 3, 1)  # a strided NHWC view
    w = rng.standard_normal((3, 2, 3, 2))
    y, cache = conv2d_forward(x, w, None, (1, 2), pads)
    y0, cache0 = conv2d_forward(np.ascontiguousarray(x), w, None, (1, 2), pads)
    np.testing.assert_array_equal(y, y0)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    dx0, dw0, _ = conv2d_backward(dy, cache0)
    np.testing.assert_array_equal(dx, dx0)
    np.testing.assert_array_equal(dw, dw0)
    assert db is None


@pytest.mark.parametrize("c, k", [(1, 6), (6, 16), (3, 32), (32, 64)])
@pytest.mark.parametrize("stride, batch_minor", [((1, 1), True), ((2, 2), False)])
def test_the_layout_follows_the_stride(c, k, stride, batch_minor, rng):
    """Stride-1 convs return batch-minor memory (and read it without a copy); others NHWC."""
    x = rng.standard_normal((4, 6, 6, c)).astype(np.float32)
    w = rng.standard_normal((3, 3, c, k)).astype(np.float32)
    y, _ = conv2d_forward(x, w, None, stride, ((1, 1), (1, 1)))
    assert is_batch_minor(y) == batch_minor and y.flags.c_contiguous != batch_minor
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, None, stride, ((1, 1), (1, 1))), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("pads", [((0, 0), (0, 0)), ((2, 1), (0, 2))])
@pytest.mark.parametrize("stride", [(1, 1), (2, 1)])
def test_a_batch_minor_input_equals_the_oracle_in_either_layout(pads, stride, rng, path):
    """Input memory in CHWN order (what a stride-1 conv or a pool after it returns) and dy in either
    order: same values as the loop oracle, and dx keeps the input's memory order."""
    xc = rng.standard_normal((3, 7, 6, 4))  # (C, H, W, N)
    x = from_batch_minor(xc)
    w = rng.standard_normal((3, 2, 3, 5))
    b = rng.standard_normal(5)
    y, cache = conv2d_forward(x, w, b, stride, pads)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b, stride, pads), rtol=1e-12, atol=1e-12)
    dy_nhwc = rng.standard_normal(y.shape)
    for dy in (dy_nhwc, from_batch_minor(np.ascontiguousarray(dy_nhwc.transpose(3, 1, 2, 0)))):
        dx, dw, db = conv2d_backward(dy, cache)
        for got, want in zip((dx, dw, db), ref.conv2d_backward(dy_nhwc, x, w, stride, pads)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_tiles_cover_every_row_once():
    from cnnkit.kernels.layout import tiles

    for n, rows, row_bytes, budget in [(5, 4, 10, 100), (5, 4, 10, 25), (3, 7, 10, 30), (2, 3, 100, 1), (1, 1, 8, 8)]:
        seen = np.zeros((n, rows), int)
        for n0, n1, r0, r1 in tiles(n, rows, row_bytes, budget):
            assert n1 > n0 and r1 > r0 and (n1 - n0 == 1 or (r0, r1) == (0, rows))
            assert (n1 - n0) * (r1 - r0) * row_bytes <= max(budget, row_bytes)
            seen[n0:n1, r0:r1] += 1
        assert (seen == 1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
def test_output_written_into_a_frame_gives_the_same_values_and_gradients(dtype, relu, rng):
    """A stride-1 conv writing y into the interior of the next conv's zero-bordered input buffer
    (frame at offsets that differ from its own backward's placement of dy): y, dx, dw, db equal
    those of the unframed call, the border stays zero, and the next conv reads it without a copy."""
    from cnnkit.kernels.conv import direct_input_frame

    x = rng.standard_normal((5, 7, 9, 13)).astype(dtype)
    w = rng.standard_normal((3, 3, 13, 20)).astype(dtype)
    b = rng.standard_normal(20).astype(dtype)
    pads = ((1, 1), (1, 1))
    consumer_ws: dict = {}
    frame = direct_input_frame(consumer_ws, (1, 1), ((2, 1), (3, 0)), (5, 7, 9, 20), dtype)
    assert frame is not None and frame[1:] == (2, 3)
    y, cache = conv2d_forward(x, w, b, (1, 1), pads, relu=relu, frame=frame)
    y0, cache0 = conv2d_forward(x, w, b, (1, 1), pads, relu=relu)
    np.testing.assert_array_equal(y, y0)
    buf = frame[0]
    assert y.base is buf and not buf[:, :2].any() and not buf[:, :, :3].any() and not buf[:, 9:].any()
    dy = rng.standard_normal(y.shape).astype(dtype)
    for got, want in zip(conv2d_backward(dy, cache), conv2d_backward(dy, cache0)):
        np.testing.assert_array_equal(got, want)
    # the next conv (F=4, P=(2, 1), (3, 0)) finds its input in place: same values as from a copy
    w2 = rng.standard_normal((4, 4, 20, 6)).astype(dtype)
    y2, _ = conv2d_forward(y, w2, None, (1, 1), ((2, 1), (3, 0)), workspace=consumer_ws)
    y2_copy, _ = conv2d_forward(np.ascontiguousarray(y0), w2, None, (1, 1), ((2, 1), (3, 0)))
    np.testing.assert_allclose(y2, y2_copy, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("need_dx", [False, True])
def test_overwrite_dy_gives_the_same_gradients(need_dx, rng):
    """With ``overwrite_dy`` the fused ReLU's masked dy may go over dy itself (the first conv of a
    model): the gradients are those of the call that leaves dy alone."""
    x = from_batch_minor(rng.standard_normal((3, 6, 7, 4)))
    w = rng.standard_normal((3, 3, 3, 16))
    b = rng.standard_normal(16)
    y, cache = conv2d_forward(x, w, b, (1, 1), ((1, 1), (1, 1)), relu=True)
    dy = from_batch_minor(rng.standard_normal((16, 6, 7, 4)))  # batch-minor, as a conv's dx is
    want = conv2d_backward(dy, cache, need_dx)
    got = conv2d_backward(dy.copy(order="K"), cache, need_dx, overwrite_dy=True)
    for g, e in zip(got, want):
        if e is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g, e)
