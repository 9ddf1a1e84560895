"""Element-wise activation kernels: ``*_forward(x) -> (y, cache)``, ``*_backward(dy, cache) -> dx``.

Outputs keep the input dtype (no upcasting). Selections are written as arithmetic (a multiply by
a 0/1 mask, a maximum) rather than ``np.where``: on a random mask ``np.where`` is branchy and
an order of magnitude slower.
"""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray):
    """y = max(x, 0); the cache is y itself."""
    y = np.maximum(x, x.dtype.type(0))
    return y, y  # the output is enough: dx = dy where y > 0


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy where y > 0, else 0 (the gradient at 0 is taken as 0, as PyTorch)."""
    return np.multiply(dy, y > 0, dtype=dy.dtype)


def leaky_relu_forward(x: np.ndarray, slope: float):
    """y = x for x > 0, slope·x otherwise; for 0 <= slope < 1 that is max(x, slope·x)."""
    s = x.dtype.type(slope)
    y = np.multiply(x, s)
    np.maximum(y, x, out=y)
    return y, (x > 0, slope)


def leaky_relu_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dx = dy for x > 0, slope·dy otherwise (slope at exactly 0, as PyTorch)."""
    positive, slope = cache
    factor = positive.astype(dy.dtype)  # 1 where x > 0, else 0
    factor *= dy.dtype.type(1 - slope)
    factor += dy.dtype.type(slope)  # 1 where x > 0, else slope
    factor *= dy
    return factor


def sigmoid_forward(x: np.ndarray):
    """y = 1/(1 + exp(-x)). For x very negative exp(-x) overflows to inf and y is exactly 0, the
    right limit, so the overflow warning is silenced; no branch is needed."""
    y = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(y, out=y)
    y += x.dtype.type(1)
    np.reciprocal(y, out=y)
    return y, y


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy·y·(1 - y)."""
    return dy * y * (1 - y)


def tanh_forward(x: np.ndarray):
    y = np.tanh(x)
    return y, y


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dx = dy·(1 - y²)."""
    return dy * (1 - y * y)
