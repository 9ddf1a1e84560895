"""Batch-normalisation kernels (Ioffe & Szegedy 2015) over the last axis: arrays in, arrays out.

Every axis but the last is a "value" of the channel: n = N·H·W values per channel for an
(N, H, W, C) map, n = N for an (N, D) matrix. With the batch mean μ and the *biased* batch
variance σ² = (1/n)·Σ(x − μ)² (the one PyTorch normalises with):

    x̂ = (x − μ) / sqrt(σ² + ε),   y = γ·x̂ + β

Backward in training mode (μ and σ² depend on x; sums over the n values of a channel):

    dβ = Σ dy,   dγ = Σ dy·x̂,   dx = γ / (n·sqrt(σ² + ε)) · (n·dy − dβ − x̂·dγ)

In evaluation mode the running mean and variance are constants, so dx = dy·γ / sqrt(var + ε).
The running statistics themselves (and their unbiased variance) are the layer's business:
see :class:`cnnkit.layers.BatchNorm2d`.

Outputs keep the input dtype (no upcasting).
"""

from __future__ import annotations

import numpy as np


def _rows(x: np.ndarray) -> np.ndarray:
    """(..., C) -> (n, C): one row per value, one column per channel (a view when possible)."""
    return x.reshape(-1, x.shape[-1])


def batchnorm_train_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float):
    """Normalise with the batch statistics.

    Shape:
        x: (N, H, W, C) or (N, D); gamma, beta: (C,) -> y: same as x

    Returns:
        ``(y, cache, batch_mean, batch_var)`` where ``batch_var`` is the biased variance
        (divided by n). The caller needs n > 1 values per channel (with n = 1, x̂ is 0/0 in the
        limit ε → 0 and PyTorch refuses); this kernel does not check.

    The three steps are separate functions so that batch shards run in several threads can
    compute the statistics of the *whole* batch (:mod:`cnnkit.parallel`): each shard sums
    (:func:`batchnorm_sums`), the sums are added, each shard sums its squared deviations from the
    whole batch's mean (:func:`batchnorm_square_sums`), and each normalises
    (:func:`batchnorm_normalize`). With one shard this is exactly ``mean`` and ``var`` as NumPy
    computes them (a sum, then a division by n).
    """
    total, n = batchnorm_sums(x)
    mean = total / x.dtype.type(n)               # (C,)
    var = batchnorm_square_sums(x, mean) / x.dtype.type(n)  # (C,) biased, two-pass: stable in float32
    y, cache = batchnorm_normalize(x, gamma, beta, mean, var, eps)
    return y, cache, mean, var


def batchnorm_sums(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``(Σ x per channel, n)`` over every axis but the last."""
    x2 = _rows(x)                                # (n, C)
    return np.add.reduce(x2, axis=0), x2.shape[0]


def batchnorm_square_sums(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Σ (x − mean)² per channel, for a given (whole-batch) mean."""
    xc = _rows(x) - mean                         # (n, C)
    return np.add.reduce(xc * xc, axis=0)


def batchnorm_normalize(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                        eps: float):
    """y = γ·(x − mean)/sqrt(var + ε) + β with given batch statistics; returns ``(y, cache)``."""
    inv_std = 1 / np.sqrt(var + eps)             # (C,)
    xhat = (_rows(x) - mean) * inv_std           # (n, C)
    y = xhat * gamma + beta                      # (n, C)
    return y.reshape(x.shape), ("train", xhat, gamma, inv_std, x.shape)


def batchnorm_eval_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                           running_var: np.ndarray, eps: float):
    """Normalise with fixed (running) statistics; returns ``(y, cache)``.

    Shape:
        x: (N, H, W, C) or (N, D); gamma, beta, running_mean, running_var: (C,) -> y: same as x
    """
    inv_std = 1 / np.sqrt(running_var + eps)    # (C,)
    xhat = (x - running_mean) * inv_std         # same shape as x
    y = xhat * gamma + beta
    return y, ("eval", xhat, gamma, inv_std, x.shape)


def batchnorm_backward(dy: np.ndarray, cache, need_dx: bool = True):
    """Backward of either forward; returns ``(dx or None, dgamma, dbeta)``."""
    dgamma, dbeta, n = batchnorm_backward_sums(dy, cache)
    if not need_dx:
        return None, dgamma, dbeta
    return batchnorm_backward_dx(dy, cache, dgamma, dbeta, n), dgamma, dbeta


def batchnorm_backward_sums(dy: np.ndarray, cache) -> tuple[np.ndarray, np.ndarray, int]:
    """``(dgamma, dbeta, n)``: Σ dy·x̂ and Σ dy per channel over this array's n values (summed
    over the shards, they are the whole batch's)."""
    _, xhat, _, _, _ = cache
    dy2 = _rows(dy)                              # (n, C)
    return np.sum(dy2 * _rows(xhat), axis=0), dy2.sum(axis=0), dy2.shape[0]


def batchnorm_backward_dx(dy: np.ndarray, cache, dgamma: np.ndarray, dbeta: np.ndarray, n: int) -> np.ndarray:
    """dx given the whole batch's ``dgamma``, ``dbeta`` and value count ``n``."""
    mode, xhat, gamma, inv_std, shape = cache
    if mode == "eval":
        return dy * (gamma * inv_std)
    # dx = γ/(n·σ) · (n·dy − Σdy − x̂·Σ(dy·x̂)), the standard simplification of the chain rule
    # through μ and σ² (cs231n, "batchnorm_backward_alt").
    dx = (_rows(dy) * n - dbeta - _rows(xhat) * dgamma) * (gamma * inv_std / n)
    return dx.reshape(shape)
