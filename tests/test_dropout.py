"""Inverted dropout: loop oracle, gradient check, PyTorch semantics, reproducibility; and a small
model with BatchNorm and Dropout that learns with plain gradient steps."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import SpecError
from cnnkit.gradcheck import numerical_gradient, within_tolerance
from cnnkit.kernels.dropout import dropout_backward, dropout_forward, dropout_mask
from cnnkit.kernels.losses import softmax_cross_entropy
from cnnkit.layers import BatchNorm2d, Dropout, Flatten, Linear, ReLU
from cnnkit.model import Sequential
from cnnkit.spec import resolve_model

from reference_norm import dropout_forward_loop


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_loop_given_the_same_draws(rng, p, dtype):
    x = rng.standard_normal((3, 4, 4, 2)).astype(dtype)
    y, mask = dropout_forward(x, p, np.random.default_rng(7))
    uniforms = np.random.default_rng(7).random(x.shape, dtype=dtype)  # the draws the kernel made
    np.testing.assert_allclose(y, dropout_forward_loop(x, uniforms, p), rtol=1e-6 if dtype == np.float32 else 1e-15)
    assert y.dtype == mask.dtype == dtype
    dy = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(dropout_backward(dy, mask), dy * mask)


def test_mask_values_and_keep_rate():
    mask = dropout_mask((200_000,), 0.3, np.random.default_rng(0), np.float64)
    assert set(np.unique(mask).tolist()) == {0.0, 1 / 0.7}
    kept = np.mean(mask > 0)
    assert abs(kept - 0.7) < 0.005          # 0.7 ± ~4.7 standard deviations
    assert abs(mask.mean() - 1.0) < 0.01    # inverted: the expectation is preserved


def test_gradient_float64(rng):
    x, r = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    _, mask = dropout_forward(x, 0.4, np.random.default_rng(3))

    def loss():
        y, _ = dropout_forward(x, 0.4, np.random.default_rng(3))  # the same mask every time
        return float(np.sum(y * r))

    numeric = numerical_gradient(loss, x)
    assert within_tolerance(dropout_backward(r, mask), numeric).all()


def test_layer_eval_is_identity_and_train_is_reproducible(rng):
    x = rng.standard_normal((4, 10)).astype(np.float32)
    a = Sequential([Dropout(0.5)], input_shape=(10,), seed=3)
    b = Sequential([Dropout(0.5)], input_shape=(10,), seed=3)
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)                     # same seed, same mask
    assert not np.array_equal(a.forward(x), ya)               # a new mask on the next call
    assert np.any(ya == 0) and np.any(ya != 0)
    a.eval()
    assert a.forward(x) is x or np.array_equal(a.forward(x), x)
    np.testing.assert_array_equal(a.backward(np.ones_like(x)), np.ones_like(x))


def test_layer_backward_uses_the_forward_mask(rng):
    layer = Dropout(0.25)
    layer.build((3, 3, 2), np.random.default_rng(1))
    x = rng.standard_normal((2, 3, 3, 2)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx == 0, y == 0)
    np.testing.assert_allclose(dx[dx != 0], np.float32(1 / 0.75))


@pytest.mark.parametrize("p", [1.0, -0.1, "half", True])
def test_bad_probability(p):
    with pytest.raises(SpecError, match=r"p must be a probability in \[0, 1\). Received: p="):
        Dropout(p)


def test_pytorch_semantics(torch, rng):
    """PyTorch's dropout keeps each value or zeroes it and scales survivors by 1/(1 − p), with
    backward through the same mask; ours does the same (masks differ: different generators)."""
    p = 0.4
    x = rng.uniform(1, 2, (64, 32))  # no zeros in x, so a zero in y means dropped
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.manual_seed(0)
    yt = torch.nn.functional.dropout(xt, p, training=True)
    yt.backward(torch.ones_like(yt))
    t_mask = (yt.detach().numpy() / x)
    np.testing.assert_allclose(np.unique(t_mask.round(12)), [0.0, 1 / (1 - p)])
    np.testing.assert_allclose(xt.grad.numpy(), t_mask, rtol=1e-12)
    # ours, replayed in torch with our mask: the same forward and backward
    y, mask = dropout_forward(x, p, np.random.default_rng(0))
    xt2 = torch.from_numpy(x).requires_grad_(True)
    (xt2 * torch.from_numpy(mask)).backward(torch.ones_like(xt2))
    np.testing.assert_allclose(np.unique((y / x).round(12)), [0.0, 1 / (1 - p)])
    np.testing.assert_allclose(dropout_backward(np.ones_like(x), mask), xt2.grad.numpy(), rtol=1e-15)
    assert torch.equal(torch.nn.functional.dropout(xt, p, training=False), xt)  # eval: identity, as ours


# ------------------------------------------------------------------------- a small model learns
def _bn_dropout_model(kind):
    if kind == "fc":
        return Sequential([Flatten(), Linear(32), BatchNorm2d(), ReLU(), Dropout(0.3), Linear(16), BatchNorm2d(),
                           ReLU(), Dropout(0.2), Linear(4)], input_shape=(6, 6, 2), seed=0)
    return resolve_model("conv(8,3,padding=1)-bn-relu-maxpool(2)-dropout(0.2)-flatten-fc(16)-bn-relu-fc(4)",
                         (6, 6, 2))


@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_bn_dropout_model_learns_with_plain_gradient_steps(kind):
    data = np.random.default_rng(5)
    x = data.standard_normal((64, 6, 6, 2)).astype(np.float32)
    # class = [top half of channel 0 sums > 0] + 2·[bottom half of channel 1 sums > 0]
    y = (x[:, :3, :, 0].sum(axis=(1, 2)) > 0).astype(np.int64) + 2 * (x[:, 3:, :, 1].sum(axis=(1, 2)) > 0)
    model = _bn_dropout_model(kind)

    def eval_loss():
        model.eval()
        loss, _ = softmax_cross_entropy(model.forward(x), y)
        model.train()
        return loss

    before = eval_loss()
    train_losses = []
    for _ in range(30):
        loss, dz = softmax_cross_entropy(model.forward(x), y)
        model.backward(dz)
        for p in model.parameters():
            p.value -= np.float32(0.1) * p.grad
        train_losses.append(loss)
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
    assert np.mean(train_losses[-5:]) < np.mean(train_losses[:5])
    # eval() is deterministic: BatchNorm uses running statistics, Dropout is the identity
    model.eval()
    out1 = model.forward(x)
    out2 = model.forward(x[::-1].copy())[::-1]  # another batch composition: same per-example outputs
    np.testing.assert_array_equal(out1, model.forward(x))
    np.testing.assert_allclose(out1, out2, rtol=1e-6, atol=1e-6)
    assert model.parameters()[0].value.dtype == np.float32
