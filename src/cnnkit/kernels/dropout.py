"""Inverted-dropout kernels: arrays in, arrays out.

In training each value is kept with probability 1 − p and scaled by 1/(1 − p), zeroed
otherwise, so the expected output equals the input and evaluation needs no rescaling
(Srivastava et al. 2014, "inverted" as in cs231n and PyTorch):

    m_i = [u_i >= p] / (1 − p),  u_i ~ U[0, 1) from the given Generator
    y = x·m,   dx = dy·m
"""

from __future__ import annotations

import numpy as np


def dropout_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """The scaled mask: 0 with probability p, 1/(1 − p) otherwise, of ``dtype``.

    Example:
        >>> m = dropout_mask((1000,), 0.25, np.random.default_rng(0))
        >>> sorted(set(m.tolist())) == [0.0, np.float32(1 / 0.75)]
        True
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dropout_mask: dtype must be float32 or float64, received {dtype}")
    u = rng.random(shape, dtype=dtype)
    scale = dtype.type(1 / (1 - p))
    return np.where(u >= p, scale, dtype.type(0))


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator):
    """Inverted dropout with a mask drawn from ``rng``; returns ``(y, mask)``.

    Shape:
        x: any -> y: same as x;  mask: same as x, values 0 or 1/(1 − p), dtype of x
    """
    mask = dropout_mask(x.shape, p, rng, x.dtype)
    return dropout_apply(x, mask), mask


def dropout_apply(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """y = x·mask for a mask drawn already (batch shards use their rows of the whole batch's mask)."""
    return x * mask


def dropout_backward(dy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """dx = dy·mask (the same scaled mask as the forward)."""
    return dy * mask
