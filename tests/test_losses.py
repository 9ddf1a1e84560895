"""Softmax and losses: loop oracles, float64 gradient check, PyTorch agreement, label errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnkit.errors import LabelError, ShapeError, SpecError
from cnnkit.gradcheck import numerical_gradient, within_tolerance
from cnnkit.kernels.losses import LOSSES, get_loss, mse, softmax, softmax_cross_entropy, svm_hinge


# ------------------------------------------------------------------------- loop oracles
def cross_entropy_loop(z, y, eps=0.0):
    n, k = z.shape
    total = 0.0
    for i in range(n):
        row = [float(v) for v in z[i]]
        m = max(row)
        log_sum = m + math.log(sum(math.exp(v - m) for v in row))
        for c in range(k):
            target = (1 - eps) * (c == y[i]) + eps / k
            total -= target * (row[c] - log_sum)
    return total / n


def hinge_loop(z, y, margin=1.0):
    n, k = z.shape
    return sum(max(0.0, float(z[i, c]) - float(z[i, y[i]]) + margin)
               for i in range(n) for c in range(k) if c != y[i]) / n


def mse_loop(z, y):
    n, k = z.shape
    return sum((float(z[i, c]) - (1.0 if c == y[i] else 0.0)) ** 2 for i in range(n) for c in range(k)) / (n * k)


def _batch(rng, n=6, k=5, scale=3.0):
    return rng.standard_normal((n, k)) * scale, rng.integers(0, k, n)


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_cross_entropy_matches_loop(rng, eps):
    z, y = _batch(rng)
    loss, _ = softmax_cross_entropy(z, y, label_smoothing=eps)
    assert loss == pytest.approx(cross_entropy_loop(z, y, eps), rel=1e-12)


def test_hinge_and_mse_match_loops(rng):
    z, y = _batch(rng)
    assert svm_hinge(z, y)[0] == pytest.approx(hinge_loop(z, y), rel=1e-12)
    assert svm_hinge(z, y, margin=2.5)[0] == pytest.approx(hinge_loop(z, y, 2.5), rel=1e-12)
    assert mse(z, y)[0] == pytest.approx(mse_loop(z, y), rel=1e-12)


def test_softmax_rows_and_stability():
    z = np.array([[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]], np.float32)
    p = softmax(z)
    assert p.dtype == np.float32 and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-7)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(p[1], e / e.sum(), rtol=1e-6)


def test_cross_entropy_is_finite_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], np.float32)
    loss, dz = softmax_cross_entropy(z, np.array([1, 1]))
    assert loss == pytest.approx(1e4, rel=1e-6)     # example 0 puts everything on the wrong class
    assert np.isfinite(dz).all() and dz.dtype == np.float32


# ------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name, kwargs", [("cross_entropy", {}), ("cross_entropy", {"label_smoothing": 0.2}),
                                          ("hinge", {}), ("mse", {})])
def test_gradients_float64(rng, name, kwargs):
    z, y = _batch(rng)
    fn = LOSSES[name]
    _, dz = fn(z, y, **kwargs)
    numeric = numerical_gradient(lambda: fn(z, y, **kwargs)[0], z)
    assert within_tolerance(dz, numeric).all(), np.abs(dz - numeric).max()


def test_mse_float_targets_gradient(rng):
    z, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    _, dz = mse(z, t)
    assert within_tolerance(dz, numerical_gradient(lambda: mse(z, t)[0], z)).all()


@pytest.mark.parametrize("fn", [softmax_cross_entropy, svm_hinge, mse])
def test_float32_in_float32_out(rng, fn):
    z, y = _batch(rng)
    loss, dz = fn(z.astype(np.float32), y)
    assert isinstance(loss, float) and dz.dtype == np.float32


# ------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cross_entropy_matches_pytorch(torch, rng, eps):
    z, y = _batch(rng, n=8, k=7)
    zt = torch.from_numpy(z).requires_grad_(True)
    lt = torch.nn.functional.cross_entropy(zt, torch.from_numpy(y), label_smoothing=eps)
    lt.backward()
    loss, dz = softmax_cross_entropy(z, y, label_smoothing=eps)
    assert loss == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_softmax_matches_pytorch(torch, rng):
    z = rng.standard_normal((4, 9)) * 10
    np.testing.assert_allclose(softmax(z), torch.softmax(torch.from_numpy(z), dim=1).numpy(), rtol=1e-12)


def test_hinge_matches_pytorch_times_classes(torch, rng):
    """PyTorch's multi_margin_loss divides each example's sum by K; ours is the cs231n sum."""
    z, y = _batch(rng, n=8, k=5, scale=0.7)
    zt = torch.from_numpy(z).requires_grad_(True)
    lt = torch.nn.functional.multi_margin_loss(zt, torch.from_numpy(y), margin=1.0) * z.shape[1]
    lt.backward()
    loss, dz = svm_hinge(z, y)
    assert loss == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_mse_matches_pytorch(torch, rng):
    z, y = _batch(rng)
    zt = torch.from_numpy(z).requires_grad_(True)
    target = torch.nn.functional.one_hot(torch.from_numpy(y), z.shape[1]).double()
    lt = torch.nn.functional.mse_loss(zt, target)
    lt.backward()
    loss, dz = mse(z, y)
    assert loss == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(dz, zt.grad.numpy(), rtol=1e-12)


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("fn", [softmax_cross_entropy, svm_hinge, mse])
def test_label_out_of_range(fn):
    z = np.zeros((3, 4))
    with pytest.raises(LabelError, match=r"labels must be in 0..3 for 4 classes. Received: 1 out of range, e.g. 4"):
        fn(z, np.array([0, 4, 1]))
    with pytest.raises(LabelError, match=r"Received: 1 out of range, e.g. -1"):
        fn(z, np.array([0, -1, 1]))


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1]), r"labels must have shape \(3,\) to match logits \(3, 4\). Received: shape \(2,\)$"),
    (np.eye(4, dtype=np.int64)[[0, 1, 2]], r"Received: shape \(3, 4\); these look like one-hot rows: pass "
                                           r"labels.argmax\(axis=1\)"),
    (np.array([[0], [1], [2]]), r"Received: shape \(3, 1\); pass labels.ravel\(\)"),
    (np.array([0.0, 1.0, 2.0]), r"labels must be integer class indices 0..3. Received: dtype float64 with shape \(3,\)"),
    (np.array([True, False, True]), r"labels must be integer class indices 0..3. Received: booleans"),
])
def test_label_shape_and_dtype(labels, message):
    with pytest.raises(LabelError, match=message):
        softmax_cross_entropy(np.zeros((3, 4)), labels)


def test_mse_float_targets_of_wrong_shape():
    with pytest.raises(LabelError, match=r"mse: float targets must have the logits' shape \(3, 4\). "
                                         r"Received: shape \(3,\)"):
        mse(np.zeros((3, 4)), np.zeros(3))


def test_logits_must_be_a_float_matrix():
    with pytest.raises(ShapeError, match=r"logits must have shape \(N, K\) with N, K >= 1. Received: shape \(4,\)"):
        softmax_cross_entropy(np.zeros(4), np.array([0]))
    with pytest.raises(ShapeError, match=r"logits must be a float array \(N, K\). Received: dtype int64"):
        svm_hinge(np.zeros((2, 3), np.int64), np.array([0, 1]))


def test_bad_smoothing_and_unknown_loss():
    with pytest.raises(SpecError, match=r"label_smoothing must be in \[0, 1\]. Received: 1.5"):
        softmax_cross_entropy(np.zeros((1, 2)), np.array([0]), label_smoothing=1.5)
    with pytest.raises(SpecError, match="unknown loss 'l1'; expected one of cross_entropy, hinge, mse"):
        get_loss("l1")
    assert get_loss("cross-entropy") is softmax_cross_entropy
