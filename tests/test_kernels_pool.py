"""Pooling kernels: equal to the loop oracle, PyTorch's tie rule, dtype kept, both backward paths.

Max pooling runs in the compiled helper (float32/float64, at most 256 taps) or in NumPy (other
dtypes, larger windows); the ``max_path`` fixture runs the max-pool tests under each, the NumPy one
forced through ``_native_max``."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import reference as ref
from cnnkit import shapes
from cnnkit.kernels import pool as pool_module
from cnnkit.kernels.layout import from_batch_minor, is_batch_minor
from cnnkit.kernels.pool import (avgpool2d_backward, avgpool2d_forward, global_avgpool_backward,
                                 global_avgpool_forward, maxpool2d_backward, maxpool2d_forward, maxpool2d_values)


@pytest.fixture(params=["native", "numpy"])
def max_path(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(pool_module, "_native_max", lambda dtype, size: False)
    return request.param


def _cases():
    """Window sizes (square and rectangular) × strides 1–3 × paddings 0–2 and 'same' (only padding < F),
    on non-square inputs, C ∈ {1, 3}; covers overlapping, tiling and gapped windows."""
    out = []
    for (fh, fw), s, p, c in itertools.product([(2, 2), (3, 3), (2, 3), (1, 2)], (1, 2, 3), (0, 1, 2, "same"), (1, 3)):
        stride = shapes.pair(s)
        pads = shapes.resolve_padding(p, (7, 6), (fh, fw), stride)
        if any(pb >= f or pa >= f for (pb, pa), f in zip(pads, (fh, fw))):
            continue  # the layers refuse padding >= F (a window wholly in the padding)
        out.append(pytest.param((7, 6), (fh, fw), stride, pads, c, id=f"F{fh}x{fw}-S{s}-P{p}-C{c}"))
    out.append(pytest.param((8, 6), (2, 2), (2, 2), ((0, 0), (0, 0)), 2, id="exact-tiling"))
    out.append(pytest.param((5, 7), (3, 2), (2, 3), ((1, 2), (0, 1)), 2, id="asymmetric"))
    return out


def _distinct(rng, shape):
    """Values with no ties and gaps of at least 0.01."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0


def _in_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """``x`` with NHWC memory, or the same values with batch-minor (CHWN) memory."""
    return x if layout == "nhwc" else from_batch_minor(np.ascontiguousarray(x.transpose(3, 1, 2, 0)))


@pytest.mark.parametrize("layout", ["nhwc", "batch-minor"])
@pytest.mark.parametrize("hw, size, stride, pads, c", _cases())
def test_maxpool_equals_the_loop_oracle(hw, size, stride, pads, c, layout, max_path):
    rng = np.random.default_rng(zlib.crc32(repr((hw, size, stride, pads, c)).encode()))
    x = _distinct(rng, (2, *hw, c))
    xl = _in_layout(x, layout)
    y, cache = maxpool2d_forward(xl, size, stride, pads)
    y_ref = ref.maxpool2d_forward(x, size, stride, pads)[0]
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(maxpool2d_values(xl, size, stride, pads), y_ref)
    assert is_batch_minor(y) == (layout == "batch-minor")
    dy = rng.standard_normal(y.shape)
    for dy_l in (dy, _in_layout(dy, "batch-minor")):
        dx = maxpool2d_backward(dy_l, cache)
        np.testing.assert_allclose(dx, ref.maxpool2d_backward(dy, x, size, stride, pads),
                                   rtol=1e-13, atol=1e-15)  # sums of several dy: order may differ
        assert is_batch_minor(dx) == (layout == "batch-minor") or c == 1


@pytest.mark.parametrize("layout", ["nhwc", "batch-minor"])
@pytest.mark.parametrize("hw, size, stride, pads, c", _cases())
def test_avgpool_equals_the_loop_oracle(hw, size, stride, pads, c, layout):
    rng = np.random.default_rng(zlib.crc32(repr((hw, size, stride, pads, c)).encode()))
    x = rng.standard_normal((2, *hw, c))
    y, cache = avgpool2d_forward(_in_layout(x, layout), size, stride, pads)
    np.testing.assert_allclose(y, ref.avgpool2d_forward(x, size, stride, pads), rtol=1e-13, atol=1e-15)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(avgpool2d_backward(dy, cache), ref.avgpool2d_backward(dy, x.shape, size, stride, pads),
                               rtol=1e-13, atol=1e-15)


def test_global_avgpool_equals_the_loop_oracle(rng):
    x = rng.standard_normal((3, 5, 4, 6))
    y, cache = global_avgpool_forward(x)
    np.testing.assert_allclose(y, ref.global_avgpool_forward(x), rtol=1e-13)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(global_avgpool_backward(dy, cache), ref.global_avgpool_backward(dy, x.shape),
                               rtol=1e-13)


@pytest.mark.parametrize("stride", [(2, 2), (1, 1)], ids=["non-overlapping", "overlapping"])
def test_maxpool_ties_go_to_the_first_maximum_in_row_major_order(stride, max_path):
    x = np.zeros((1, 4, 4, 2))
    x[..., 1] = 5.0  # channel 1: every element ties
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 3.0  # channel 0, first window: tie between (0, 1) and (1, 0)
    y, cache = maxpool2d_forward(x, (2, 2), stride)
    first_window = np.zeros_like(y)
    first_window[0, 0, 0, 0] = 1
    dx = maxpool2d_backward(first_window, cache)
    assert dx[0, 0, 1, 0] == 1 and dx[0, 1, 0, 0] == 0  # (0, 1) comes first in row-major order
    dx = maxpool2d_backward(np.ones_like(y), cache)
    # channel 1: each window's gradient lands on its top-left element
    expected = np.zeros((4, 4))
    for oh, ow in np.ndindex(y.shape[1:3]):
        expected[oh * stride[0], ow * stride[1]] += 1
    np.testing.assert_array_equal(dx[0, :, :, 1], expected)


def test_maxpool_padding_is_minus_infinity_not_zero(max_path):
    x = -np.ones((1, 2, 2, 1))  # all negative: a zero pad would win
    y, _ = maxpool2d_forward(x, (2, 2), (1, 1), ((1, 1), (1, 1)))
    np.testing.assert_array_equal(y, -np.ones((1, 3, 3, 1)))
    np.testing.assert_array_equal(maxpool2d_values(x, (2, 2), (1, 1), ((1, 1), (1, 1))), y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_maxpool_equals_numpy_with_nans_infinities_and_ties(dtype, monkeypatch):
    """Values and argmax of the compiled kernel are those of the NumPy one, bit for bit, on inputs
    full of ties, NaNs and ±inf, with padding (a padded tap 0 starts its window at -inf); dx too,
    up to the order in which overlapping windows add into an input."""
    rng = np.random.default_rng(7)
    x = rng.choice(np.array([0.0, 1.0, -1.0, np.nan, np.inf, -np.inf], dtype), size=(3, 7, 6, 5))
    pads = ((1, 0), (1, 1))
    native = maxpool2d_forward(x, (3, 2), (2, 1), pads)
    dy = rng.standard_normal(native[0].shape).astype(dtype)
    dx_native = maxpool2d_backward(dy, native[1])
    values = maxpool2d_values(x, (3, 2), (2, 1), pads)
    monkeypatch.setattr(pool_module, "_native_max", lambda dtype, size: False)
    numpy = maxpool2d_forward(x, (3, 2), (2, 1), pads)
    np.testing.assert_array_equal(native[0], numpy[0])
    np.testing.assert_array_equal(values, numpy[0])
    np.testing.assert_array_equal(native[1][0], numpy[1][0])
    np.testing.assert_allclose(dx_native, maxpool2d_backward(dy, numpy[1]), rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_avgpool_counts_the_padding():
    y, _ = avgpool2d_forward(np.ones((1, 2, 2, 1)), (2, 2), (2, 2), ((1, 1), (1, 1)))
    np.testing.assert_array_equal(y[0, :, :, 0], np.full((2, 2), 0.25))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooling_keeps_the_dtype(dtype, rng, max_path):
    x = rng.standard_normal((2, 6, 6, 3)).astype(dtype)
    for fwd, bwd in [(maxpool2d_forward, maxpool2d_backward), (avgpool2d_forward, avgpool2d_backward)]:
        for stride in [(2, 2), (1, 1)]:
            y, cache = fwd(x, (2, 2), stride, ((0, 1), (0, 1)))
            assert y.dtype == dtype and bwd(y, cache).dtype == dtype
    y, cache = global_avgpool_forward(x)
    assert y.dtype == dtype and global_avgpool_backward(y, cache).dtype == dtype


def test_non_overlapping_windows_leave_uncovered_inputs_at_zero_gradient(rng):
    x = _distinct(rng, (1, 7, 7, 1))  # 2×2 windows with stride 3: rows/cols 2, 5, 6 uncovered
    for fwd, bwd in [(maxpool2d_forward, maxpool2d_backward), (avgpool2d_forward, avgpool2d_backward)]:
        y, cache = fwd(x, (2, 2), (3, 3))
        dx = bwd(np.ones_like(y), cache)
        assert not dx[0, [2, 5, 6], :, 0].any() and not dx[0, :, [2, 5, 6], 0].any()
        assert dx.sum() == pytest.approx(y.size)
