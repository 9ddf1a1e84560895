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
    """
    x2 = _rows(x)                                # (n, C)
    mean = x2.mean(axis=0)                       # (C,)
    xc = x2 - mean                               # (n, C), two-pass variance: stable in float32
    var = np.mean(xc * xc, axis=0)               # (C,) biased
    inv_std = 1 / np.sqrt(var + eps)             # (C,)
    xhat = xc * inv_std                          # (n, C)
    y = xhat * gamma + beta                      # (n, C)
    cache = ("train", xhat, gamma, inv_std, x.shape)
    return y.reshape(x.shape), cache, mean, var


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
    mode, xhat, gamma, inv_std, shape = cache
    dy2 = _rows(dy)                              # (n, C)
    xhat2 = _rows(xhat)                          # (n, C)
    dbeta = dy2.sum(axis=0)                      # (C,)
    dgamma = np.sum(dy2 * xhat2, axis=0)         # (C,)
    if not need_dx:
        return None, dgamma, dbeta
    if mode == "eval":
        return dy * (gamma * inv_std), dgamma, dbeta
    n = dy2.shape[0]
    # dx = γ/(n·σ) · (n·dy − Σdy − x̂·Σ(dy·x̂)), the standard simplification of the chain rule
    # through μ and σ² (cs231n, "batchnorm_backward_alt").
    dx = (dy2 * n - dbeta - xhat2 * dgamma) * (gamma * inv_std / n)
    return dx.reshape(shape), dgamma, dbeta
