"""Finite-difference gradient checking (float64 central differences).

The core, :func:`numerical_gradient`, is used by the tests of every layer and by the user-facing
``check_gradients`` / ``cnnkit check-gradients``.

Tolerance used throughout cnnkit: an analytic value ``a`` passes against the numerical ``n`` when
``|a - n| <= ATOL + RTOL·|n|`` with ATOL = 1e-8 and RTOL = 1e-6.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

ATOL = 1e-8
RTOL = 1e-6


def numerical_gradient(f: Callable[[], float], x: np.ndarray, indices: Iterable[tuple[int, ...]] | None = None,
                       h: float = 1e-6) -> np.ndarray:
    """Central differences (f(x + h) - f(x - h)) / 2h of the scalar ``f()`` w.r.t. ``x``, in place.

    ``x`` is perturbed in place and restored exactly. Only the elements in ``indices`` are
    computed (all when None); the others are NaN in the result.
    """
    grad = np.full(x.shape, np.nan)
    it = np.ndindex(x.shape) if indices is None else indices
    for idx in it:
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        grad[idx] = (fp - fm) / (2 * h)
    return grad


def within_tolerance(analytic: np.ndarray, numeric: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> np.ndarray:
    """Element-wise pass/fail of ``|a - n| <= atol + rtol·|n|``."""
    return np.abs(analytic - numeric) <= atol + rtol * np.abs(numeric)
