"""Element-wise activation kernels: ``*_forward(x) -> (y, cache)``, ``*_backward(dy, cache) -> dx``.

Outputs keep the input dtype (no upcasting).
"""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray):
    y = np.maximum(x, 0)
    return y, y  # the output is enough: dx = dy where y > 0


def relu_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(y > 0, dy, np.zeros((), dy.dtype))


def leaky_relu_forward(x: np.ndarray, slope: float):
    positive = x > 0
    y = np.where(positive, x, x * x.dtype.type(slope))
    return y, (positive, slope)


def leaky_relu_backward(dy: np.ndarray, cache) -> np.ndarray:
    positive, slope = cache
    return np.where(positive, dy, dy * dy.dtype.type(slope))


def sigmoid_forward(x: np.ndarray):
    # exp of a non-positive number only: no overflow for large |x|
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, y


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return dy * y * (1 - y)


def tanh_forward(x: np.ndarray):
    y = np.tanh(x)
    return y, y


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return dy * (1 - y * y)
