"""Slow, obviously-correct loop versions of batch normalisation and dropout (test oracles).

They work channel by channel on plain Python floats, straight from the definitions, and share
no code with :mod:`cnnkit.kernels.norm` / :mod:`cnnkit.kernels.dropout`. The BatchNorm backward
is the explicit Jacobian-vector product

    ∂y_j/∂x_i = γ/sqrt(σ² + ε) · (δ_ij − 1/n − x̂_i·x̂_j/n)     (i, j values of one channel)

rather than the simplified formula the kernel uses.
"""

from __future__ import annotations

import math

import numpy as np


def _channel_values(x: np.ndarray, c: int) -> list[tuple[tuple[int, ...], float]]:
    """[(index, value), …] of channel c, every axis but the last being a value axis."""
    return [(idx, float(x[idx])) for idx in np.ndindex(x.shape) if idx[-1] == c]


def batchnorm_train_forward_loop(x, gamma, beta, eps):
    """Returns (y, batch_mean, biased batch_var) in float64."""
    channels = x.shape[-1]
    y = np.zeros(x.shape)
    means, variances = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        vals = _channel_values(x, c)
        n = len(vals)
        mean = sum(v for _, v in vals) / n
        var = sum((v - mean) ** 2 for _, v in vals) / n
        for idx, v in vals:
            y[idx] = float(gamma[c]) * (v - mean) / math.sqrt(var + eps) + float(beta[c])
        means[c], variances[c] = mean, var
    return y, means, variances


def batchnorm_eval_forward_loop(x, gamma, beta, running_mean, running_var, eps):
    y = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        c = idx[-1]
        y[idx] = float(gamma[c]) * (float(x[idx]) - float(running_mean[c])) / math.sqrt(float(running_var[c]) + eps) \
            + float(beta[c])
    return y


def batchnorm_train_backward_loop(x, gamma, dy, eps):
    """(dx, dgamma, dbeta) through the explicit Jacobian of training-mode BatchNorm."""
    channels = x.shape[-1]
    dx = np.zeros(x.shape)
    dgamma, dbeta = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        vals = _channel_values(x, c)
        n = len(vals)
        mean = sum(v for _, v in vals) / n
        var = sum((v - mean) ** 2 for _, v in vals) / n
        inv = 1 / math.sqrt(var + eps)
        xhat = {idx: (v - mean) * inv for idx, v in vals}
        for idx, _ in vals:
            dbeta[c] += float(dy[idx])
            dgamma[c] += float(dy[idx]) * xhat[idx]
        for i, _ in vals:
            total = 0.0
            for j, _ in vals:
                jac = float(gamma[c]) * inv * ((1.0 if i == j else 0.0) - 1 / n - xhat[i] * xhat[j] / n)
                total += float(dy[j]) * jac
            dx[i] = total
    return dx, dgamma, dbeta


def batchnorm_eval_backward_loop(x, gamma, running_mean, running_var, dy, eps):
    channels = x.shape[-1]
    dx = np.zeros(x.shape)
    dgamma, dbeta = np.zeros(channels), np.zeros(channels)
    for idx in np.ndindex(x.shape):
        c = idx[-1]
        inv = 1 / math.sqrt(float(running_var[c]) + eps)
        dx[idx] = float(dy[idx]) * float(gamma[c]) * inv
        dgamma[c] += float(dy[idx]) * (float(x[idx]) - float(running_mean[c])) * inv
        dbeta[c] += float(dy[idx])
    return dx, dgamma, dbeta


def running_update_loop(running_mean, running_var, x, momentum):
    """PyTorch's rule: running ← (1 − m)·running + m·batch, the variance unbiased (n − 1)."""
    channels = x.shape[-1]
    new_mean, new_var = np.zeros(channels), np.zeros(channels)
    for c in range(channels):
        vals = [v for _, v in _channel_values(x, c)]
        n = len(vals)
        mean = sum(vals) / n
        unbiased = sum((v - mean) ** 2 for v in vals) / (n - 1)
        new_mean[c] = (1 - momentum) * float(running_mean[c]) + momentum * mean
        new_var[c] = (1 - momentum) * float(running_var[c]) + momentum * unbiased
    return new_mean, new_var


def dropout_forward_loop(x, uniforms, p):
    """Inverted dropout given the uniform draws: keep where u >= p, scaled by 1/(1 − p)."""
    y = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        y[idx] = float(x[idx]) / (1 - p) if float(uniforms[idx]) >= p else 0.0
    return y
