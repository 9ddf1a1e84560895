"""Softmax and losses computed from logits: arrays in, ``(loss, dlogits)`` out.

Every loss takes logits ``z`` of shape (N, K) (N examples, K classes) and integer class labels
``y`` of shape (N,) with values in [0, K), and returns the *mean over the batch* of the
per-example loss as a Python float, together with dL/dz of z's dtype (so the gradient of the
mean: each row is divided by N).

* softmax cross-entropy, optionally with label smoothing ε (Szegedy et al. 2016; PyTorch's
  ``label_smoothing``): the target is t = (1 − ε)·onehot(y) + ε/K and
  L_i = −Σ_k t_k·log softmax(z_i)_k,  dL_i/dz_i = softmax(z_i) − t.
  Computed through log-softmax with the row maximum subtracted, so huge logits do not overflow.
* multiclass SVM hinge (cs231n): L_i = Σ_{k≠y_i} max(0, z_ik − z_iy_i + Δ) with margin Δ = 1.
  PyTorch's ``multi_margin_loss`` divides each example's sum by K as well; this one does not.
* mean squared error: L_i = (1/K)·Σ_k (z_ik − t_ik)² with t = onehot(y), or t = the given float
  targets of shape (N, K); the batch mean of that is PyTorch's ``mse_loss`` (mean reduction).

Wrong labels raise :class:`cnnkit.errors.LabelError`; logits that are not (N, K) raise
:class:`cnnkit.errors.ShapeError`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import LabelError, ShapeError, SpecError


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, of z's dtype; exp of non-positive numbers only (no overflow).

    Example:
        >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
        [[0.5, 0.5], [1.0, 0.0]]
    """
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax(z) over the last axis, computed stably as (z − max) − log Σ exp(z − max)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# ------------------------------------------------------------------------- checks
def _check_logits(z: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(z, np.ndarray):
        z = np.asarray(z)
    if z.dtype.kind != "f":
        raise ShapeError(f"{where}: logits must be a float array (N, K). Received: dtype {z.dtype}")
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ShapeError(f"{where}: logits must have shape (N, K) with N, K >= 1. Received: shape {z.shape}")
    return z


def check_labels(labels, n: int, classes: int, where: str = "loss") -> np.ndarray:
    """Return ``labels`` as int64 (N,), or raise LabelError naming shape, dtype or range.

    Example:
        >>> check_labels([2, 0], 2, 3).tolist()
        [2, 0]
    """
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        kind = "booleans" if y.dtype.kind == "b" else f"dtype {y.dtype}"
        raise LabelError(f"{where}: labels must be integer class indices 0..{classes - 1}. "
                         f"Received: {kind} with shape {y.shape}")
    if y.shape != (n,):
        hint = ""
        if y.shape == (n, classes):
            hint = "; these look like one-hot rows: pass labels.argmax(axis=1)"
        elif y.ndim == 2 and y.shape in ((n, 1), (1, n)):
            hint = "; pass labels.ravel()"
        raise LabelError(f"{where}: labels must have shape ({n},) to match logits ({n}, {classes}). "
                         f"Received: shape {y.shape}{hint}")
    if n and (y.min() < 0 or y.max() >= classes):
        bad = y[(y < 0) | (y >= classes)]
        raise LabelError(f"{where}: labels must be in 0..{classes - 1} for {classes} classes. "
                         f"Received: {bad.size} out of range, e.g. {int(bad[0])}")
    return y.astype(np.int64, copy=False)


def _targets(labels, z: np.ndarray, where: str) -> np.ndarray:
    """Float targets (N, K) for MSE: one-hot of integer labels, or float targets as given."""
    t = np.asarray(labels)
    if t.dtype.kind == "f":
        if t.shape != z.shape:
            raise LabelError(f"{where}: float targets must have the logits' shape {z.shape}. "
                             f"Received: shape {t.shape}")
        return t.astype(z.dtype, copy=False)
    y = check_labels(t, z.shape[0], z.shape[1], where)
    onehot = np.zeros_like(z)
    onehot[np.arange(len(y)), y] = 1
    return onehot


# ------------------------------------------------------------------------- losses
def softmax_cross_entropy(logits: np.ndarray, labels, label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of integer labels, with optional label smoothing.

    Args:
        logits: (N, K) scores before the softmax.
        labels: (N,) integer classes in [0, K).
        label_smoothing: ε in [0, 1]; the target puts 1 − ε + ε/K on the label and ε/K elsewhere.

    Returns:
        ``(loss, dlogits)``: the batch mean (a float) and dL/dlogits (N, K) of the logits' dtype.

    Example:
        >>> loss, dz = softmax_cross_entropy(np.zeros((2, 4)), np.array([1, 3]))
        >>> round(loss, 6) == round(float(np.log(4)), 6), dz.shape
        (True, (2, 4))
    """
    where = "softmax_cross_entropy"
    z = _check_logits(logits, where)
    if not 0 <= label_smoothing <= 1:
        raise SpecError(f"{where}: label_smoothing must be in [0, 1]. Received: {label_smoothing!r}")
    n, k = z.shape
    y = check_labels(labels, n, k, where)
    logp = log_softmax(z)                                    # (N, K)
    rows = np.arange(n)
    eps = float(label_smoothing)
    # −Σ_k t_k·log p_k with t = (1 − ε)·onehot + ε/K
    per_example = -(1 - eps) * logp[rows, y]
    if eps:
        per_example = per_example - (eps / k) * logp.sum(axis=1)
    loss = float(per_example.mean())
    dz = np.exp(logp)                                        # softmax, (N, K)
    if eps:
        dz -= z.dtype.type(eps / k)
    dz[rows, y] -= z.dtype.type(1 - eps)
    dz /= z.dtype.type(n)
    return loss, dz


def svm_hinge(logits: np.ndarray, labels, margin: float = 1.0) -> tuple[float, np.ndarray]:
    """Mean multiclass SVM (hinge) loss Σ_{k≠y} max(0, z_k − z_y + margin).

    At the hinge itself (z_k − z_y + margin = 0 exactly) the gradient 0 is used.

    Returns:
        ``(loss, dlogits)`` as for :func:`softmax_cross_entropy`.

    Example:
        >>> loss, dz = svm_hinge(np.array([[3.2, 5.1, -1.7]]), np.array([0]))
        >>> round(loss, 6)
        2.9
    """
    where = "svm_hinge"
    z = _check_logits(logits, where)
    n, k = z.shape
    y = check_labels(labels, n, k, where)
    rows = np.arange(n)
    margins = z - z[rows, y][:, None] + z.dtype.type(margin)   # (N, K)
    margins[rows, y] = 0
    active = margins > 0                                         # (N, K)
    loss = float(np.where(active, margins, 0).sum() / n)
    dz = active.astype(z.dtype)
    dz[rows, y] = -active.sum(axis=1)
    dz /= z.dtype.type(n)
    return loss, dz


def mse(logits: np.ndarray, labels) -> tuple[float, np.ndarray]:
    """Mean squared error against one-hot labels (or float targets of the logits' shape).

    L = (1/N)·Σ_i (1/K)·Σ_k (z_ik − t_ik)²,  dL/dz = 2(z − t)/(N·K).

    Example:
        >>> loss, dz = mse(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0, 1]))
        >>> loss
        0.25
    """
    where = "mse"
    z = _check_logits(logits, where)
    t = _targets(labels, z, where)
    diff = z - t
    loss = float(np.mean(diff * diff))
    return loss, diff * z.dtype.type(2 / z.size)


LossFn = Callable[..., tuple[float, np.ndarray]]

# Names accepted by the fit loop; each maps (logits, labels) -> (loss, dlogits).
LOSSES: dict[str, LossFn] = {
    "cross_entropy": softmax_cross_entropy,
    "hinge": svm_hinge,
    "mse": mse,
}


def get_loss(name: str) -> LossFn:
    """The loss function registered under ``name`` (``cross_entropy``, ``hinge``, ``mse``)."""
    key = str(name).lower().replace("-", "_")
    if key not in LOSSES:
        raise SpecError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[key]
