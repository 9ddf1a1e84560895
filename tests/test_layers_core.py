"""Core layers (Conv2d, pooling, Linear, Flatten, activations) and Sequential: float64 gradient
checks of every input and parameter, agreement with PyTorch layer by layer and for lenet5 and
cifar-net end to end, output shapes (hypothesis), the dtype rule, and the bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import reference as ref
from cnnkit.errors import ShapeError
from cnnkit.gradcheck import numerical_gradient, within_tolerance
from cnnkit.layers import (AvgPool2d, Conv2d, Flatten, GlobalAvgPool2d, LeakyReLU, Linear, MaxPool2d, ReLU,
                           Sigmoid, Tanh)
from cnnkit.model import Sequential
from cnnkit.spec import resolve_model


def _away_from_zero(rng, shape, gap=0.05):
    """Random values with |x| >= gap: no ReLU/LeakyReLU kink within reach of a finite difference."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + gap, x - gap)


def _distinct(rng, shape):
    """No two values closer than 0.01: max-pool ties are out of reach of a finite difference."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 0.5


# (id, layer factory, input shape, input generator); every branch of every kernel appears
GRADIENT_CASES = [
    ("conv-S1-P1", lambda: Conv2d(4, 3, padding=1), (5, 6, 3), "normal"),
    ("conv-rect-S2-same", lambda: Conv2d(3, (3, 2), stride=2, padding="same"), (5, 7, 2), "normal"),
    ("conv-S3-asym", lambda: Conv2d(2, (2, 3), stride=(3, 2), padding=((1, 0), (0, 2))), (7, 5, 3), "normal"),
    ("conv-dilated", lambda: Conv2d(2, 2, dilation=2, padding=1), (5, 6, 1), "normal"),
    ("conv-1x1-nobias", lambda: Conv2d(4, 1, bias=False), (3, 4, 3), "normal"),
    ("conv-floor", lambda: Conv2d(2, 3, stride=2, rounding="floor"), (6, 6, 1), "normal"),
    ("maxpool-tiling", lambda: MaxPool2d(2), (4, 6, 2), "distinct"),
    ("maxpool-overlap-padded", lambda: MaxPool2d(3, stride=2, padding=1), (5, 7, 2), "distinct"),
    ("maxpool-gaps-floor", lambda: MaxPool2d((2, 1), stride=3, rounding="floor"), (7, 4, 1), "distinct"),
    ("avgpool-tiling", lambda: AvgPool2d(2), (4, 6, 2), "normal"),
    ("avgpool-overlap-padded", lambda: AvgPool2d(3, stride=2, padding=1), (5, 7, 2), "normal"),
    ("avgpool-gaps-floor", lambda: AvgPool2d((1, 2), stride=3, rounding="floor"), (4, 7, 1), "normal"),
    ("gap", lambda: GlobalAvgPool2d(), (3, 4, 5), "normal"),
    ("linear", lambda: Linear(7), (11,), "normal"),
    ("linear-nobias", lambda: Linear(3, bias=False), (5,), "normal"),
    ("flatten", lambda: Flatten(), (2, 3, 4), "normal"),
    ("relu", lambda: ReLU(), (3, 4, 2), "kinkless"),
    ("leakyrelu", lambda: LeakyReLU(0.1), (3, 4, 2), "kinkless"),
    ("sigmoid", lambda: Sigmoid(), (3, 4, 2), "wide"),
    ("tanh", lambda: Tanh(), (3, 4, 2), "normal"),
]


def _input(kind, rng, shape):
    if kind == "distinct":
        return _distinct(rng, shape)
    if kind == "kinkless":
        return _away_from_zero(rng, shape)
    if kind == "wide":  # both branches of the overflow-free sigmoid, and saturated values
        return rng.standard_normal(shape) * 4
    return rng.standard_normal(shape)


def _built(factory, shape, dtype, seed=0):
    layer = factory()
    layer.name = layer.name or layer.prefix
    layer.build(shape, np.random.default_rng(seed), dtype)
    for p in layer.params.values():  # biases start at 0: make them count
        p.value[...] = np.random.default_rng(seed + 1).standard_normal(p.shape)
    return layer


def _assert_gradient(analytic, numeric, what):
    ok = within_tolerance(analytic, numeric)
    if not ok.all():
        i = np.unravel_index(np.argmax(np.abs(analytic - numeric) - 1e-6 * np.abs(numeric)), analytic.shape)
        pytest.fail(f"{what}: {(~ok).sum()} of {ok.size} elements outside |a - n| <= 1e-8 + 1e-6|n|; "
                    f"worst at {i}: analytic {analytic[i]!r}, numerical {numeric[i]!r}")


# --------------------------------------------------------------------------- gradient checks
@pytest.mark.parametrize("name, factory, shape, kind", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_float64_gradients_match_central_differences(name, factory, shape, kind, rng):
    layer = _built(factory, shape, np.float64)
    x = _input(kind, rng, (2, *shape))
    y = layer.forward(x)
    r = rng.standard_normal(y.shape)  # loss = Σ y·r, so dL/dy = r
    dx = layer.backward(r)

    def loss():
        return float(np.sum(layer.forward_cached(x)[0] * r))

    _assert_gradient(dx, numerical_gradient(loss, x), f"{name} dx")
    for key, p in layer.params.items():
        _assert_gradient(p.grad, numerical_gradient(loss, p.value), f"{name} d{key}")


def test_a_perturbed_gradient_fails_the_check(rng):
    """The check above can fail: a 1e-5 relative error in one element is caught."""
    layer = _built(lambda: Conv2d(2, 3, padding=1), (4, 4, 1), np.float64)
    x = rng.standard_normal((1, 4, 4, 1))
    r = rng.standard_normal(layer.forward(x).shape)
    layer.backward(r)
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward_cached(x)[0] * r)), layer.params["weight"].value)
    bad = layer.params["weight"].grad.copy()
    bad[1, 1, 0, 0] *= 1 + 1e-5
    assert within_tolerance(layer.params["weight"].grad, numeric).all()
    assert within_tolerance(bad, numeric).sum() == bad.size - 1


def test_need_dx_false_writes_parameter_gradients_only(rng):
    layer = _built(lambda: Conv2d(3, 3, padding=1), (5, 5, 2), np.float64)
    x = rng.standard_normal((2, 5, 5, 2))
    r = rng.standard_normal(layer.forward(x).shape)
    expected = layer.backward(r), {k: p.grad.copy() for k, p in layer.params.items()}
    for p in layer.params.values():
        p.grad[...] = 0
    assert layer.backward(r, need_dx=False) is None
    for k, p in layer.params.items():
        np.testing.assert_array_equal(p.grad, expected[1][k])


# --------------------------------------------------------------------------- PyTorch, layer by layer
def _rel(ours, theirs) -> float:
    theirs = np.asarray(theirs, np.float64)
    return float(np.linalg.norm(np.asarray(ours, np.float64) - theirs) / max(np.linalg.norm(theirs), 1e-300))


TOL = {np.float32: 1e-5, np.float64: 1e-10}


def _torch_params(torch, layers) -> dict:
    """A leaf tensor per parameter (by ``id``), in PyTorch's layout: conv OIHW, linear (out, in)."""
    out = {}
    for layer in layers:
        for key, p in layer.params.items():
            v = p.value
            if key == "weight":
                v = v.transpose(3, 2, 0, 1) if v.ndim == 4 else v.T  # HWIO -> OIHW, (in, out) -> (out, in)
            out[id(p)] = torch.from_numpy(np.ascontiguousarray(v)).requires_grad_(True)
    return out


def _torch_grad(tp, p) -> np.ndarray:
    """PyTorch's gradient of parameter ``p`` back in our layout."""
    g = tp[id(p)].grad.numpy()
    return g.transpose(2, 3, 1, 0) if g.ndim == 4 else g.T if g.ndim == 2 else g


def _torch_layer(torch, layer, t, tp):
    """Apply ``layer``'s PyTorch equivalent to the NCHW (or (N, D)) tensor ``t``."""
    F = torch.nn.functional

    def param(key):
        return tp[id(layer.params[key])] if key in layer.params else None

    if isinstance(layer, Conv2d):
        (pt, pb), (pl, pr) = layer.pads
        return F.conv2d(F.pad(t, (pl, pr, pt, pb)), param("weight"), param("bias"), layer.stride_hw, 0,
                        layer.dilation_hw)
    if isinstance(layer, MaxPool2d):
        (pt, pb), (pl, pr) = layer.pads
        return F.max_pool2d(F.pad(t, (pl, pr, pt, pb), value=-float("inf")), layer.filter_hw, layer.stride_hw)
    if isinstance(layer, AvgPool2d):
        (pt, pb), (pl, pr) = layer.pads
        return F.avg_pool2d(F.pad(t, (pl, pr, pt, pb)), layer.filter_hw, layer.stride_hw)
    if isinstance(layer, GlobalAvgPool2d):
        return t.mean(dim=(2, 3))
    if isinstance(layer, Flatten):  # ours flattens in (H, W, C) order: go channels-last first
        return t.permute(0, 2, 3, 1).flatten(1) if t.dim() == 4 else t.flatten(1)
    if isinstance(layer, Linear):
        return F.linear(t, param("weight"), param("bias"))
    if isinstance(layer, LeakyReLU):
        return F.leaky_relu(t, layer.slope)
    return {ReLU: torch.relu, Sigmoid: torch.sigmoid, Tanh: torch.tanh}[type(layer)](t)


def _torch_forward(torch, layers, x, tp):
    """Run ``layers`` in PyTorch on our (N, H, W, C) ``x``: (input leaf, output in our layout)."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
    t = xt.permute(0, 3, 1, 2) if x.ndim == 4 else xt
    for layer in layers:
        t = _torch_layer(torch, layer, t, tp)
    return xt, (t.permute(0, 2, 3, 1) if t.dim() == 4 else t)


TORCH_CASES = GRADIENT_CASES + [
    ("maxpool-ties", lambda: MaxPool2d(2), (4, 6, 2), "ties"),
    ("maxpool-ties-overlap", lambda: MaxPool2d(3, stride=1, padding=1), (4, 5, 2), "ties"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, factory, shape, kind", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_each_layer_agrees_with_pytorch(name, factory, shape, kind, dtype, torch, rng):
    layer = _built(factory, shape, dtype)
    x = (rng.integers(0, 3, (3, *shape)) if kind == "ties" else _input(kind, rng, (3, *shape))).astype(dtype)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)

    tp = _torch_params(torch, [layer])
    xt, yt = _torch_forward(torch, [layer], x, tp)
    yt.backward(torch.from_numpy(dy))
    tol = TOL[dtype]
    assert y.dtype == dtype and dx.dtype == dtype
    assert y.shape == tuple(yt.shape)
    assert _rel(y, yt.detach().numpy()) <= tol
    assert _rel(dx, xt.grad.numpy()) <= tol
    for key, p in layer.params.items():
        assert p.grad.dtype == dtype
        assert _rel(p.grad, _torch_grad(tp, p)) <= tol, key


# --------------------------------------------------------------------------- PyTorch, whole models
@pytest.mark.parametrize("threads", [1, 2], ids=["one-thread", "two-shards"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, batch", [("lenet5", 4), ("cifar-net", 2)])
def test_builtin_models_agree_with_pytorch_end_to_end(name, batch, dtype, threads, torch, rng, monkeypatch):
    """Sequential.forward/backward as training runs them: fused Conv2d + ReLU, ReLU after max-pool,
    batch-minor layout of the direct convs, and (two-shards) the batch split across two threads."""
    from cnnkit import parallel

    monkeypatch.setattr(parallel, "MIN_SHARD", 1)
    monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 0)
    monkeypatch.setattr(parallel, "_threads", threads)
    model = resolve_model(name, dtype=dtype, seed=3)
    for p in model.parameters():  # nonzero biases, so that their gradients are compared too
        if p.name.endswith("bias"):
            p.value[...] = rng.uniform(-0.1, 0.1, p.shape)
    x = rng.standard_normal((batch, *model.input_shape)).astype(dtype)
    logits = model.forward(x)
    dlogits = rng.standard_normal(logits.shape).astype(dtype)
    dx = model.backward(dlogits)

    tp = _torch_params(torch, model.layers)
    xt, zt = _torch_forward(torch, model.layers, x, tp)
    zt.backward(torch.from_numpy(dlogits))
    tol = TOL[dtype]
    assert logits.dtype == dtype and dx.dtype == dtype
    assert _rel(logits, zt.detach().numpy()) <= tol
    assert _rel(model.logits(x, batch_size=batch), zt.detach().numpy()) <= tol  # the inference path
    assert _rel(dx, xt.grad.numpy()) <= tol
    for p in model.parameters():
        assert p.grad.dtype == dtype
        assert _rel(p.grad, _torch_grad(tp, p)) <= tol, p.name


def test_stateful_steps_reuse_buffers_and_equal_the_pure_path(rng):
    """Conv2d's reused workspace (forward/backward) gives what fresh buffers (the *_cached pair) give,
    step after step."""
    model = resolve_model("lenet5", dtype=np.float64)
    for _ in range(3):
        x = rng.standard_normal((3, 28, 28, 1))
        dz = rng.standard_normal((3, 10))
        z = model.forward(x)
        dx = model.backward(dz)
        grads = [p.grad.copy() for p in model.parameters()]
        z0, caches = model.forward_cached(x)
        dx0, grads0 = model.backward_cached(dz, caches)
        np.testing.assert_array_equal(z, z0)
        np.testing.assert_array_equal(dx, dx0)
        flat0 = [g for layer_grads in grads0 for g in layer_grads.values()]
        for g, g0 in zip(grads, flat0):
            np.testing.assert_array_equal(g, g0)
    assert model["conv1"]._workspace


def test_two_threads_run_shards_of_one_model_at_once(rng):
    model = resolve_model("lenet5")
    x = rng.standard_normal((8, 28, 28, 1)).astype(np.float32)
    dz = rng.standard_normal((8, 10)).astype(np.float32)

    def shard(lo, hi):
        z, caches = model.forward_cached(x[lo:hi])
        dx, grads = model.backward_cached(dz[lo:hi], caches)
        return [z, dx] + [g for layer_grads in grads for g in layer_grads.values()]

    ref.assert_threads_match_sequential(shard)


# --------------------------------------------------------------------------- shapes (hypothesis)
_padding = st.one_of(st.integers(0, 2), st.just("same"), st.just("valid"),
                     st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                               st.tuples(st.integers(0, 2), st.integers(0, 2))))
_pair = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
_rounding = st.sampled_from(["strict", "floor"])
_volume_layers = st.one_of(
    st.builds(Conv2d, st.integers(1, 4), _pair, _pair, _padding, st.integers(1, 2), st.booleans(), rounding=_rounding),
    st.builds(MaxPool2d, _pair, st.one_of(st.none(), _pair), st.integers(0, 1), rounding=_rounding),
    st.builds(AvgPool2d, _pair, st.one_of(st.none(), _pair), st.integers(0, 1), rounding=_rounding),
    st.builds(GlobalAvgPool2d), st.builds(Flatten), st.builds(ReLU), st.builds(LeakyReLU, st.floats(0, 0.5)),
    st.builds(Sigmoid), st.builds(Tanh),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=_volume_layers, n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_forward_shape_is_the_output_shape_of_every_layer(layer, n, h, w, c, dtype):
    try:
        expected = layer.output_shape((h, w, c))
    except ShapeError:
        assume(False)
    layer.build((h, w, c), np.random.default_rng(0), dtype)
    x = np.random.default_rng(1).standard_normal((n, h, w, c)).astype(dtype)
    y = layer.forward(x)
    assert y.shape == (n, *expected) and y.dtype == dtype
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == dtype


@settings(max_examples=30, deadline=None)
@given(outputs=st.integers(1, 6), d=st.integers(1, 12), n=st.integers(1, 3), bias=st.booleans())
def test_forward_shape_is_the_output_shape_of_linear(outputs, d, n, bias):
    layer = Linear(outputs, bias=bias)
    layer.build((d,))
    assert layer.forward(np.ones((n, d), np.float32)).shape == (n, *layer.output_shape((d,)))


def test_model_output_shapes_are_the_chained_shapes(rng):
    for name in ("lenet5", "cifar-net", "shapes-net"):
        model = resolve_model(name)
        x = rng.standard_normal((2, *model.input_shape)).astype(np.float32)
        for layer, _, out_shape in model.shapes():
            x = layer.forward(x)
            assert x.shape == (2, *out_shape), layer.name


# --------------------------------------------------------------------------- dtype rule
def test_float32_model_computes_float64_input_in_float32(rng):
    model = resolve_model("lenet5", dtype=np.float32)
    z = model.forward(rng.standard_normal((2, 28, 28, 1)))  # float64 in
    assert z.dtype == np.float32
    assert model.backward(np.ones((2, 10))).dtype == np.float32  # float64 dy
    assert all(p.value.dtype == p.grad.dtype == np.float32 for p in model.parameters())
    assert model.predict(rng.standard_normal((2, 28, 28, 1))).dtype == np.float32


def test_float64_model_stays_float64(rng):
    model = resolve_model("lenet5", dtype=np.float64)
    z = model.forward(rng.standard_normal((2, 28, 28, 1)).astype(np.float32))
    assert z.dtype == np.float64
    assert model.backward(np.ones((2, 10), np.float32)).dtype == np.float64
    assert all(p.value.dtype == p.grad.dtype == np.float64 for p in model.parameters())


@pytest.mark.parametrize("name, factory, shape, kind", GRADIENT_CASES, ids=[c[0] for c in GRADIENT_CASES])
def test_a_float32_layer_never_returns_float64(name, factory, shape, kind, rng):
    layer = _built(factory, shape, np.float32)
    y = layer.forward(rng.standard_normal((2, *shape)))  # float64 input
    assert y.dtype == np.float32
    assert layer.backward(np.ones(y.shape)).dtype == np.float32


def test_integer_images_are_accepted_and_computed_in_the_layer_dtype():
    layer = _built(lambda: Conv2d(2, 3), (5, 5, 1), np.float32)
    assert layer.forward(np.full((1, 5, 5, 1), 255, np.uint8)).dtype == np.float32


# --------------------------------------------------------------------------- bad input
def _conv_on_32x32x3():
    return _built(lambda: Conv2d(8, 3, padding=1), (32, 32, 3), np.float32)


def test_channels_first_input_gets_a_hint():
    with pytest.raises(ShapeError, match=r"conv \(Conv2d\) expected input \(N, 32, 32, 3\), received "
                                         r"\(64, 3, 32, 32\): channels-first\? use \(N, H, W, C\)"):
        _conv_on_32x32x3().forward(np.zeros((64, 3, 32, 32), np.float32))


def test_wrong_channel_count_names_both_counts():
    with pytest.raises(ShapeError, match=r"expected input \(N, 32, 32, 3\), received \(2, 32, 32, 1\): "
                                         r"1 channels where the layer was built for 3"):
        _conv_on_32x32x3().forward(np.zeros((2, 32, 32, 1), np.float32))


@pytest.mark.parametrize("shape, hint", [((32, 32, 3), r": missing the batch axis\? use x\[None\]"),
                                         ((2, 3072), r"$"), ((1, 2, 32, 32, 3), r"$")])
def test_wrong_rank_names_expected_and_received_shapes(shape, hint):
    received = "\\(" + ", ".join(map(str, shape)) + "\\)"
    with pytest.raises(ShapeError, match=rf"expected input \(N, 32, 32, 3\), received {received}{hint}"):
        _conv_on_32x32x3().forward(np.zeros(shape, np.float32))


def test_a_sequential_reports_channels_first_input_at_its_first_layer():
    with pytest.raises(ShapeError, match=r"conv1 \(Conv2d\) .* received \(64, 3, 32, 32\): channels-first\?"):
        resolve_model("cifar-net").forward(np.zeros((64, 3, 32, 32), np.float32))


@pytest.mark.parametrize("factory", [lambda: Conv2d(4), lambda: MaxPool2d(2), lambda: Linear(3), lambda: ReLU()])
def test_an_unbuilt_layer_says_so(factory):
    layer = factory()
    with pytest.raises(ShapeError, match=rf"^{layer.prefix} is not built: call build\(input_shape\) first"):
        layer.forward(np.zeros((1, 4, 4, 1), np.float32))


def test_a_size_the_layer_cannot_take_is_refused_at_build():
    with pytest.raises(ShapeError, match=r"conv \(Conv2d F=5, S=1, P=0\) on 3×3×1 \(height\): the 5-wide filter "
                                         r"does not fit in 3 pixels"):
        Conv2d(4, 5).build((3, 3, 1))
    with pytest.raises(ShapeError, match=r"\(7 - 3 \+ 0\)/3 \+ 1 = 2\.33 is not whole"):
        Conv2d(4, 3, stride=3).build((7, 7, 1))
    with pytest.raises(ShapeError, match=r"fc \(Linear\): expected an input shape \(D,\), received \(5, 5, 16\); "
                                         r"add Flatten\(\) before it"):
        Linear(10).build((5, 5, 16))


def test_linear_on_an_unflattened_volume_names_both_shapes():
    layer = _built(lambda: Linear(10), (400,), np.float32)
    with pytest.raises(ShapeError, match=r"fc \(Linear\) expected input \(N, 400\), received \(2, 5, 5, 16\)"):
        layer.forward(np.zeros((2, 5, 5, 16), np.float32))


def test_backward_errors_name_the_layer():
    layer = _conv_on_32x32x3()
    with pytest.raises(ShapeError, match=r"conv: backward called before forward"):
        layer.backward(np.zeros((1, 32, 32, 8), np.float32))
    layer.forward(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ShapeError, match=r"conv \(Conv2d\): backward expected dy of the output's shape "
                                         r"\(1, 32, 32, 8\), received \(1, 32, 32, 3\)"):
        layer.backward(np.zeros((1, 32, 32, 3), np.float32))


def test_non_numeric_input_is_refused():
    with pytest.raises(ShapeError, match=r"conv \(Conv2d\): expected a numeric array, received dtype <U1"):
        _conv_on_32x32x3().forward(np.full((1, 32, 32, 3), "a"))
    with pytest.raises(ShapeError, match=r"conv: expected a NumPy array, received list"):
        _conv_on_32x32x3().forward([[1.0]])


# --------------------------------------------------------------------------- Sequential
def test_sequential_parameters_modes_and_predict(rng):
    model = resolve_model("lenet5")
    params = model.parameters()
    assert [p.name for p in params[:2]] == ["conv1.weight", "conv1.bias"]
    assert sum(p.value.size for p in params) == 61706
    x = rng.standard_normal((5, 28, 28, 1)).astype(np.float32)
    model.forward(x)
    model.backward(np.ones((5, 10), np.float32))
    assert all(p.grad.shape == p.value.shape and np.any(p.grad) for p in params)
    assert model.backward(np.ones((5, 10), np.float32), need_input_grad=False) is None
    assert not model.eval().training and not any(layer.training for layer in model)
    assert model.train().training and all(layer.training for layer in model)
    probs = model.predict(x, batch_size=2)
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    assert model.training  # predict restores the mode
