"""Fully-connected and flatten kernels: arrays in, arrays out.

    y = x·W + b          x: (N, D), W: (D, M), b: (M,) -> y: (N, M)
    dx = dy·Wᵀ,  dW = xᵀ·dy,  db = 1ᵀ·dy   (the bias gradient through BLAS, not a narrow sum)
"""

from __future__ import annotations

import numpy as np


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None):
    """Return ``(y, cache)``."""
    y = x @ w
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_backward(dy: np.ndarray, cache, need_dx: bool = True):
    """Return ``(dx or None, dw, db or None)``."""
    x, w, has_bias = cache
    dw = x.T @ dy
    db = np.ones(dy.shape[0], dy.dtype) @ dy if has_bias else None
    dx = dy @ w.T if need_dx else None
    return dx, dw, db


def flatten_forward(x: np.ndarray):
    """(N, H, W, C) -> (N, H·W·C) in row-major order; a view where possible."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dy: np.ndarray, cache):
    return dy.reshape(cache)
