"""The size arithmetic: the lecture's worked examples, the strict/floor rules, 'same' padding,
parameter counts, receptive fields, and agreement with PyTorch's output shapes (Hypothesis)."""

from __future__ import annotations

import doctest
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit import shapes
from cnnkit.errors import ShapeError
from cnnkit.layers import AvgPool2d, Conv2d, Linear, MaxPool2d
from cnnkit.shapes import (Field, activation_memory, conv2d_output_shape, conv_output_size, conv_params,
                           conv_params_formula, dropped_rows, fc_equivalent_weights, pool2d_output_shape,
                           same_padding)


def test_doctests_hold():
    assert doctest.testmod(shapes).failed == 0


# --------------------------------------------------------------------------- the lecture's worked examples
def test_four_5x5x3_filters_on_32x32x3_give_28x28x4():
    assert conv2d_output_shape((32, 32, 3), 4, 5) == (28, 28, 4)
    assert Conv2d(4, 5).output_shape((32, 32, 3)) == (28, 28, 4)


@pytest.mark.parametrize("f, expected", [(3, 30), (5, 28)])
def test_32x32_input_with_3x3_and_5x5_filters(f, expected):
    assert conv_output_size(32, f) == expected
    assert Conv2d(1, f).output_shape((32, 32, 1)) == (expected, expected, 1)


@pytest.mark.parametrize("stride, expected", [(1, 5), (2, 3)])
def test_n7_f3_strides_that_fit(stride, expected):
    assert conv_output_size(7, 3, stride) == expected
    assert Conv2d(1, 3, stride=stride).output_shape((7, 7, 1)) == (expected, expected, 1)


def test_n7_f3_stride3_is_refused_with_arithmetic_and_suggestions_that_work():
    with pytest.raises(ShapeError, match=r"\(7 - 3 \+ 0\)/3 \+ 1 = 2\.33 is not whole") as info:
        Conv2d(1, 3, stride=3, name="conv2").output_shape((7, 7, 1))
    message = str(info.value)
    assert message.startswith("conv2 (Conv2d F=3, S=3, P=0) on 7×7×1")
    # Apply what the message suggests, read from the message itself, and check it fits as stated.
    pads = re.findall(r"(?i)padding P=(\d+) gives (\d+)×(\d+)", message)
    strides = re.findall(r"(?i)stride S=(\d+) gives (\d+)×(\d+)", message)
    assert pads and strides
    for p, h, w in pads:
        assert Conv2d(1, 3, stride=3, padding=int(p)).output_shape((7, 7, 1)) == (int(h), int(w), 1)
    for s, h, w in strides:
        assert Conv2d(1, 3, stride=int(s)).output_shape((7, 7, 1)) == (int(h), int(w), 1)
    # The same suggestions, structured.
    assert [str(f) for f in info.value.fixes] == ["padding P=1 gives 3×3", "stride S=2 gives 3×3", "stride S=4 gives 2×2"]
    # And what PyTorch would silently do instead.
    assert "PyTorch would floor this to 2×2, ignoring the last 1 row and 1 column" in message


@pytest.mark.parametrize("f", [3, 5, 7])
@pytest.mark.parametrize("n", [7, 28, 32, 33])
def test_padding_f_minus_1_over_2_keeps_the_size(f, n):
    p = (f - 1) // 2
    assert conv_output_size(n, f, 1, p) == n
    assert same_padding(n, f) == (p, p)
    assert Conv2d(2, f, padding=p).output_shape((n, n, 3)) == (n, n, 2)
    assert Conv2d(2, f, padding="same").output_shape((n, n, 3)) == (n, n, 2)


def test_ten_5x5_filters_stride1_pad2_on_32x32x3():
    assert conv2d_output_shape((32, 32, 3), 10, 5, 1, 2) == (32, 32, 10)
    assert conv_params(5, 5, 3, 10) == 760
    assert conv_params_formula(5, 5, 3, 10) == "10 × (5×5×3 + 1) = 760"
    layer = Conv2d(10, 5, stride=1, padding=2)
    assert layer.param_count((32, 32, 3)) == 760
    assert layer.params_formula((32, 32, 3)) == "10 × (5×5×3 + 1) = 760"
    assert fc_equivalent_weights((32, 32, 3), (32, 32, 10)) == 31_457_280


@pytest.mark.parametrize("w, f, s", [(224, 2, 2), (28, 2, 2), (10, 2, 2), (7, 3, 2), (32, 4, 4), (9, 3, 3)])
def test_pooling_is_w_minus_f_over_s_plus_1_with_no_parameters(w, f, s):
    expected = (w - f) // s + 1
    assert (w - f) % s == 0
    assert pool2d_output_shape((w, w, 64), f, s) == (expected, expected, 64)
    for layer in (MaxPool2d(f, s), AvgPool2d(f, s)):
        assert layer.output_shape((w, w, 64)) == (expected, expected, 64)
        assert layer.param_count((w, w, 64)) == 0
        assert layer.macs((w, w, 64)) == 0


def test_pool_stride_defaults_to_the_window():
    assert MaxPool2d(2).output_shape((224, 224, 64)) == (112, 112, 64)


# --------------------------------------------------------------------------- strict, floor, refusals
def test_floor_reproduces_pytorch_and_counts_the_dropped_rows():
    assert conv_output_size(7, 3, 3, rounding="floor") == 2
    assert dropped_rows(7, 3, 3) == 1
    assert dropped_rows(7, 3, 2) == 0
    assert Conv2d(1, 3, stride=3, rounding="floor").output_shape((7, 7, 1)) == (2, 2, 1)
    assert MaxPool2d(3, 2, rounding="floor").output_shape((224, 224, 1)) == (111, 111, 1)


def test_filter_that_does_not_fit_is_refused_with_a_padding_that_fits():
    with pytest.raises(ShapeError, match=r"the 5-wide filter does not fit in 3 pixels") as info:
        Conv2d(1, 5).output_shape((3, 3, 1))
    assert "PyTorch would floor" not in str(info.value)  # PyTorch refuses it too
    fix = info.value.fixes[0]
    assert (fix.what, fix.value) == ("padding", 1)
    assert Conv2d(1, 5, padding=1).output_shape((3, 3, 1)) == (*fix.output_hw, 1)


def test_parity_problem_suggests_same_padding():
    # (8 - 3 + 2P) is odd for every symmetric P: only an asymmetric padding fits at stride 2.
    with pytest.raises(ShapeError, match=r"3\.50 is not whole. Padding 'same' gives 4×4") as info:
        Conv2d(1, 3, stride=2).output_shape((8, 8, 1))
    assert Conv2d(1, 3, stride=2, padding="same").output_shape((8, 8, 1)) == (4, 4, 1)
    for fix in info.value.fixes:
        kwargs = {"padding": fix.value} if fix.what == "padding" else {"stride": fix.value}
        layer = Conv2d(1, 3, **{"stride": 2, **kwargs})
        assert layer.output_shape((8, 8, 1)) == (*fix.output_hw, 1)


def test_same_padding_at_stride_2_is_asymmetric_and_gives_ceil():
    assert same_padding(8, 3, 2) == (0, 1)
    assert same_padding(7, 3, 2) == (1, 1)
    assert conv2d_output_shape((8, 7, 1), 4, 3, 2, "same") == (4, 4, 4)


def test_same_with_a_filter_smaller_than_the_stride_can_still_be_refused():
    with pytest.raises(ShapeError, match=r"\(10 - 1 \+ 0\)/4 \+ 1 = 3\.25 is not whole"):
        conv2d_output_shape((10, 10, 1), 1, 1, 4, "same")


def test_dilation_uses_the_effective_size():
    assert shapes.effective_size(3, 2) == 5
    assert Conv2d(1, 3, dilation=2).output_shape((9, 9, 1)) == (5, 5, 1)
    with pytest.raises(ShapeError, match=r"D=2\).*\(10 - 5 \+ 0\)/2 \+ 1 = 3\.50"):
        Conv2d(1, 3, stride=2, dilation=2).output_shape((10, 10, 1))


def test_rectangular_inputs_filters_and_strides():
    assert Conv2d(8, (3, 5), stride=(1, 2), padding=(1, 0)).output_shape((20, 31, 3)) == (20, 14, 8)
    assert conv_params(3, 5, 3, 8) == 8 * (15 * 3 + 1)
    with pytest.raises(ShapeError, match=r"\(width\): \(30 - 5 \+ 0\)/2 \+ 1 = 13\.50"):
        Conv2d(8, (3, 5), stride=(1, 2), padding=(1, 0)).output_shape((20, 30, 3))


def test_pool_padding_must_be_smaller_than_the_window():
    assert MaxPool2d(3, 2, padding=2).output_shape((7, 7, 1)) == (5, 5, 1)  # PyTorch refuses P > F/2; we allow P < F
    with pytest.raises(ShapeError, match=r"pool1 \(MaxPool2d F=2, S=2, P=2\) on 8×8×1: padding 2 >= F=2"):
        MaxPool2d(2, padding=2, name="pool1").output_shape((8, 8, 1))


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2d(0, 3), r"filters must be an integer >= 1. Received: filters=0"),
    (lambda: Conv2d(4, -3), r"size must be an integer >= 1. Received: size=-3"),
    (lambda: Conv2d(4, 3, stride=0), r"stride must be an integer >= 1"),
    (lambda: Conv2d(4, 3, stride=1.5), r"stride must be an integer or a pair of integers. Received: 1.5"),
    (lambda: Conv2d(4, True), r"size must be an integer or a pair"),
    (lambda: Conv2d(4, 3, padding=-1), r"padding must be >= 0. Received: padding=-1"),
    (lambda: Conv2d(4, 3, padding="full"), r"padding must be an integer, a pair, 'same' or 'valid'"),
    (lambda: Conv2d(4, 3, padding=((1, 2.5), (0, 0))), r"padding must be an integer, a pair"),
    (lambda: MaxPool2d(2, stride=-2), r"stride must be an integer >= 1"),
    (lambda: Linear(0), r"outputs must be an integer >= 1"),
])
def test_bad_hyperparameters_are_refused_at_construction(make, match):
    with pytest.raises(ShapeError, match=match):
        make()


def test_bad_input_shapes_are_refused():
    with pytest.raises(ShapeError, match=r"expected an input shape \(H, W, C\), received \(32, 32\)"):
        Conv2d(4, 3).output_shape((32, 32))
    with pytest.raises(ShapeError, match=r"add Flatten\(\) before it to turn 5×5×16 into 400 inputs"):
        Linear(10).output_shape((5, 5, 16))
    with pytest.raises(ShapeError, match="rounding must be one of"):
        conv_output_size(7, 3, 3, rounding="ceil")


# --------------------------------------------------------------------------- counts
def test_parameter_counts_with_and_without_bias():
    assert conv_params(3, 3, 64, 128, bias=False) == 3 * 3 * 64 * 128
    assert shapes.conv_params_formula(3, 3, 64, 128, bias=False) == "128 × (3×3×64) = 73,728"
    assert shapes.linear_params(400, 120) == 48_120
    assert shapes.linear_params_formula(400, 120) == "120 × (400 + 1) = 48,120"
    assert shapes.linear_params(400, 120, bias=False) == 48_000
    assert shapes.batchnorm_params(16) == 32


def test_macs_and_memory():
    assert shapes.conv_macs((32, 32, 10), 5, 5, 3) == 32 * 32 * 10 * 75
    assert Conv2d(10, 5, padding=2).macs((32, 32, 3)) == 768_000
    assert Linear(120).macs((400,)) == 48_000
    assert activation_memory((32, 32, 10)) == (40_960, 81_920)
    assert activation_memory((32, 32, 10), itemsize=8, batch_size=2) == (163_840, 327_680)
    assert shapes.fmt_bytes(40_960) == "40.0 KB"


# --------------------------------------------------------------------------- receptive field
def _field_oracle(layers):
    """Input interval seen by output unit 0, by walking the windows down layer by layer."""
    lo, hi, jump = 0, 0, 1
    for f, s, p, d in reversed(layers):
        lo, hi = lo * s - p, hi * s - p + d * (f - 1)
    for _, s, _, _ in layers:
        jump *= s
    return hi - lo + 1, jump, (lo + hi + 1) / 2


LAYER = st.tuples(st.integers(1, 7), st.integers(1, 3), st.integers(0, 3), st.integers(1, 3))


@settings(max_examples=300, deadline=None)
@given(st.lists(LAYER, min_size=1, max_size=6))
def test_receptive_field_matches_a_window_walk(layers):
    field = Field()
    for f, s, p, d in layers:
        field = field.through((f, f), (s, s), (p, p), (d, d))
    size, jump, centre = _field_oracle(layers)
    assert field.size == (size, size)
    assert field.jump == (jump, jump)
    assert field.start == (centre, centre)


@settings(max_examples=400, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), f=st.integers(1, 6), s=st.integers(1, 5), p=st.integers(0, 3),
       pool=st.booleans())
def test_every_suggested_fix_fits_as_stated(h, w, f, s, p, pool):
    def make(stride=s, padding=p):
        return MaxPool2d(f, stride, padding) if pool else Conv2d(2, f, stride=stride, padding=padding)

    try:
        make().output_shape((h, w, 1))
    except ShapeError as e:
        if not hasattr(e, "fixes"):  # refused before any arithmetic (pool padding >= F)
            assert pool and p >= f
            return
        for fix in e.fixes:
            layer = make(**{fix.what: fix.value})
            assert layer.output_shape((h, w, 1))[:2] == fix.output_hw


# --------------------------------------------------------------------------- agreement with PyTorch
PADDING = st.one_of(
    st.integers(0, 4),
    st.tuples(st.integers(0, 4), st.integers(0, 4)),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
    st.sampled_from(["same", "valid"]),
)
SIZE = st.integers(1, 24)


def _spans(hw, f_hw, s_hw, d_hw, pads):
    return [n + p[0] + p[1] - shapes.effective_size(f, d) for n, f, d, p in zip(hw, f_hw, d_hw, pads)]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=SIZE, w=SIZE, fh=st.integers(1, 7), fw=st.integers(1, 7), sh=st.integers(1, 5), sw=st.integers(1, 5),
       dh=st.integers(1, 3), dw=st.integers(1, 3), padding=PADDING)
def test_conv_sizes_equal_pytorch_whenever_whole(torch, h, w, fh, fw, sh, sw, dh, dw, padding):
    F = torch.nn.functional
    layer = Conv2d(3, (fh, fw), stride=(sh, sw), padding=padding, dilation=(dh, dw))
    pads = layer.resolved_padding((h, w, 1))
    spans = _spans((h, w), (fh, fw), (sh, sw), (dh, dw), pads)
    x = F.pad(torch.zeros(1, 1, h, w), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    weight = torch.zeros(1, 1, fh, fw)

    def run_torch():
        return tuple(F.conv2d(x, weight, stride=(sh, sw), dilation=(dh, dw)).shape[2:])

    if min(spans) < 0:  # the filter does not fit: both refuse
        with pytest.raises(ShapeError, match="does not fit"):
            layer.output_shape((h, w, 1))
        with pytest.raises(RuntimeError):
            run_torch()
        return
    expected = run_torch()
    if any(span % s for span, s in zip(spans, (sh, sw))):
        with pytest.raises(ShapeError, match="is not whole"):
            layer.output_shape((h, w, 1))
        floor = Conv2d(3, (fh, fw), stride=(sh, sw), padding=padding, dilation=(dh, dw), rounding="floor")
        assert floor.output_shape((h, w, 1))[:2] == expected
        assert [dropped_rows(n, f, s, p, d) for n, f, s, p, d in
                zip((h, w), (fh, fw), (sh, sw), pads, (dh, dw))] == [span % s for span, s in zip(spans, (sh, sw))]
        return
    assert layer.output_shape((h, w, 1)) == (*expected, 3)
    if padding == "same":
        assert expected == (math.ceil(h / sh), math.ceil(w / sw))
        if (sh, sw) == (1, 1):  # PyTorch's own 'same' (it refuses 'same' at other strides)
            native = F.conv2d(torch.zeros(1, 1, h, w), weight, padding="same", dilation=(dh, dw))
            assert tuple(native.shape[2:]) == expected
    elif isinstance(padding, int) or (len(padding) == 2 and isinstance(padding[0], int)):
        native = F.conv2d(torch.zeros(1, 1, h, w), weight, stride=(sh, sw), padding=padding, dilation=(dh, dw))
        assert tuple(native.shape[2:]) == expected


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=SIZE, w=SIZE, fh=st.integers(1, 6), fw=st.integers(1, 6),
       stride=st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(1, 6))),
       padding=st.tuples(st.integers(0, 6), st.integers(0, 6)), kind=st.sampled_from(["max", "avg"]))
def test_pool_sizes_equal_pytorch_whenever_whole(torch, h, w, fh, fw, stride, padding, kind):
    F = torch.nn.functional
    sh, sw = (fh, fw) if stride is None else stride
    ph, pw = padding
    cls, pool = (MaxPool2d, F.max_pool2d) if kind == "max" else (AvgPool2d, F.avg_pool2d)
    layer = cls((fh, fw), stride, padding)
    if ph >= fh or pw >= fw:  # our documented rule: no window may lie wholly in the padding
        with pytest.raises(ShapeError, match="wholly in the padding"):
            layer.output_shape((h, w, 1))
        return
    spans = [h + 2 * ph - fh, w + 2 * pw - fw]
    x = torch.zeros(1, 1, h, w)
    if 2 * ph <= fh and 2 * pw <= fw:  # PyTorch takes this padding itself

        def run_torch():
            return tuple(pool(x, (fh, fw), (sh, sw), (ph, pw)).shape[2:])
    else:  # PyTorch refuses padding above F/2: pad explicitly instead
        padded = F.pad(x, (pw, pw, ph, ph), value=-math.inf if kind == "max" else 0.0)

        def run_torch():
            return tuple(pool(padded, (fh, fw), (sh, sw)).shape[2:])

    if min(spans) < 0:
        with pytest.raises(ShapeError, match="does not fit"):
            layer.output_shape((h, w, 1))
        with pytest.raises(RuntimeError):
            run_torch()
        return
    expected = run_torch()
    if spans[0] % sh or spans[1] % sw:
        with pytest.raises(ShapeError, match="is not whole"):
            layer.output_shape((h, w, 1))
        assert cls((fh, fw), stride, padding, rounding="floor").output_shape((h, w, 1))[:2] == expected
        return
    assert layer.output_shape((h, w, 1)) == (*expected, 1)
