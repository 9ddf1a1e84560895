"""Batch normalisation: loop oracle, float64 gradient check, PyTorch agreement, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import ShapeError, SpecError
from cnnkit.gradcheck import numerical_gradient, within_tolerance
from cnnkit.kernels.norm import batchnorm_backward, batchnorm_eval_forward, batchnorm_train_forward
from cnnkit.layers import BatchNorm2d
from cnnkit.model import Sequential

from reference_norm import (batchnorm_eval_backward_loop, batchnorm_eval_forward_loop,
                            batchnorm_train_backward_loop, batchnorm_train_forward_loop, running_update_loop)

SHAPES = [(2, 3, 3, 4), (5, 1, 1, 3), (1, 2, 3, 2), (6, 5), (2, 7)]


def _params(rng, c, dtype=np.float64):
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    return gamma, beta


# ------------------------------------------------------------------------- loop oracle
@pytest.mark.parametrize("shape", SHAPES)
def test_train_forward_and_backward_match_loops(rng, shape):
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = _params(rng, shape[-1])
    dy = rng.standard_normal(shape)
    y, cache, mean, var = batchnorm_train_forward(x, gamma, beta, 1e-5)
    y_ref, mean_ref, var_ref = batchnorm_train_forward_loop(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, var_ref, rtol=1e-12)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    dx_ref, dgamma_ref, dbeta_ref = batchnorm_train_backward_loop(x, gamma, dy, 1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_eval_forward_and_backward_match_loops(rng, shape):
    c = shape[-1]
    x = rng.standard_normal(shape)
    gamma, beta = _params(rng, c)
    rm, rv = rng.standard_normal(c), rng.uniform(0.2, 3.0, c)
    dy = rng.standard_normal(shape)
    y, cache = batchnorm_eval_forward(x, gamma, beta, rm, rv, 1e-5)
    np.testing.assert_allclose(y, batchnorm_eval_forward_loop(x, gamma, beta, rm, rv, 1e-5), rtol=1e-12, atol=1e-12)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    refs = batchnorm_eval_backward_loop(x, gamma, rm, rv, dy, 1e-5)
    for got, ref in zip((dx, dgamma, dbeta), refs):
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12)


def test_backward_without_dx_returns_none_and_same_parameter_grads(rng):
    x, dy = rng.standard_normal((4, 2, 2, 3)), rng.standard_normal((4, 2, 2, 3))
    _, cache, _, _ = batchnorm_train_forward(x, np.ones(3), np.zeros(3), 1e-5)
    dx, dg, db = batchnorm_backward(dy, cache, need_dx=False)
    _, dg2, db2 = batchnorm_backward(dy, cache)
    assert dx is None
    np.testing.assert_array_equal(dg, dg2)
    np.testing.assert_array_equal(db, db2)


def test_layer_running_statistics_follow_the_loop_rule(rng):
    layer = BatchNorm2d(momentum=0.3)
    layer.build((3, 3, 2), dtype=np.float64)
    rm, rv = np.zeros(2), np.ones(2)
    for _ in range(4):
        x = rng.standard_normal((3, 3, 3, 2)) * 2 + 0.5
        layer.forward(x)
        rm, rv = running_update_loop(rm, rv, x, 0.3)
    np.testing.assert_allclose(layer.buffers["running_mean"], rm, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], rv, rtol=1e-12)


# ------------------------------------------------------------------------- float64 gradient check
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 3, 4), (5, 3)])
def test_gradients_float64(rng, shape, training):
    layer = BatchNorm2d()
    layer.build(shape[1:], dtype=np.float64)
    layer.params["gamma"].value[...] = rng.uniform(0.5, 2.0, shape[-1])
    layer.params["beta"].value[...] = rng.standard_normal(shape[-1])
    layer.buffers["running_mean"][...] = rng.standard_normal(shape[-1])
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, shape[-1])
    layer.training = training
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape)

    def loss():
        return float(np.sum(layer.forward_cached(x)[0] * r))

    layer.forward(x)
    dx = layer.backward(r)
    for analytic, target in ((dx, x), (layer.params["gamma"].grad, layer.params["gamma"].value),
                             (layer.params["beta"].grad, layer.params["beta"].value)):
        numeric = numerical_gradient(loss, target)
        assert within_tolerance(analytic, numeric).all(), np.abs(analytic - numeric).max()


# ------------------------------------------------------------------------- dtype, shapes, errors
def test_float32_stays_float32(rng):
    layer = BatchNorm2d()
    layer.build((4, 4, 3))
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.params["gamma"].grad.dtype == np.float32
    assert layer.buffers["running_var"].dtype == np.float32


def test_output_shape_and_params():
    assert BatchNorm2d().output_shape((28, 28, 6)) == (28, 28, 6)
    assert BatchNorm2d().output_shape((120,)) == (120,)
    assert BatchNorm2d().param_count((28, 28, 6)) == 12
    with pytest.raises(ShapeError, match=r"expected an input shape \(H, W, C\) or \(D,\), received \(3, 4\)"):
        BatchNorm2d().output_shape((3, 4))


def test_training_with_one_value_per_channel_is_refused():
    model = Sequential([BatchNorm2d()], input_shape=(1, 1, 8))
    with pytest.raises(ShapeError, match=r"bn1 \(BatchNorm2d\): training needs more than 1 value per channel, "
                                         r"received input \(1, 1, 1, 8\) \(N×H×W = 1\); use a larger batch or eval\(\)"):
        model.forward(np.ones((1, 1, 1, 8), np.float32))
    # eval() uses the running statistics, so a single value is fine (as in PyTorch)
    y = model.eval().forward(np.ones((1, 1, 1, 8), np.float32))
    assert y.shape == (1, 1, 1, 8)


def test_one_example_with_several_pixels_is_allowed(rng):
    model = Sequential([BatchNorm2d()], input_shape=(2, 2, 3))
    y = model.forward(rng.standard_normal((1, 2, 2, 3)).astype(np.float32))
    np.testing.assert_allclose(y.reshape(-1, 3).mean(axis=0), 0, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"momentum": 1.5}, r"momentum must be in \[0, 1\]. Received: momentum=1.5"),
    ({"eps": 0}, r"eps must be > 0. Received: eps=0"),
])
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(SpecError, match=message):
        BatchNorm2d(**kwargs)


# ------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_pytorch_train_then_eval(torch, rng, dtype, tol):
    c, momentum = 3, 0.2
    ours = BatchNorm2d(momentum=momentum, eps=1e-5)
    ours.build((5, 4, c), dtype=dtype)
    gamma, beta = _params(rng, c, dtype)
    ours.params["gamma"].value[...] = gamma
    ours.params["beta"].value[...] = beta
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    ref = torch.nn.BatchNorm2d(c, eps=1e-5, momentum=momentum).to(tdtype)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(gamma))
        ref.bias.copy_(torch.from_numpy(beta))

    def compare(x, dy):
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)   # NHWC -> NCHW
        yt = ref(xt)
        ref.zero_grad()
        yt.backward(torch.from_numpy(dy.transpose(0, 3, 1, 2).copy()))
        y = ours.forward(x)
        dx = ours.backward(dy)
        np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=tol, atol=tol)
        np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=tol, atol=tol)
        np.testing.assert_allclose(ours.params["gamma"].grad, ref.weight.grad.numpy(), rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(ours.params["beta"].grad, ref.bias.grad.numpy(), rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(ours.buffers["running_mean"], ref.running_mean.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(ours.buffers["running_var"], ref.running_var.numpy(), rtol=tol, atol=tol)

    ours.training = True
    ref.train()
    for step in range(4):  # several steps, so that the running statistics have moved
        x = (rng.standard_normal((3, 5, 4, c)) * (step + 1) + step).astype(dtype)
        compare(x, rng.standard_normal(x.shape).astype(dtype))
    ours.training = False
    ref.eval()
    x = rng.standard_normal((2, 5, 4, c)).astype(dtype)
    compare(x, rng.standard_normal(x.shape).astype(dtype))


def test_pytorch_features_matrix(torch, rng):
    """(N, D) input is BatchNorm1d's."""
    ours = BatchNorm2d()
    ours.build((6,), dtype=np.float64)
    ref = torch.nn.BatchNorm1d(6).double()
    x, dy = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    xt = torch.from_numpy(x).requires_grad_(True)
    ref(xt).backward(torch.from_numpy(dy))
    ours.forward(x)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.buffers["running_var"], ref.running_var.numpy(), rtol=1e-12)


def test_pytorch_refuses_single_value_too(torch):
    """Our refusal mirrors PyTorch's: one value per channel in training mode is an error there too."""
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.BatchNorm2d(8).train()(torch.ones(1, 8, 1, 1))
