"""Weight initialisers, all drawn from an explicit ``np.random.Generator``.

Same generator state → bit-identical weights. Fan-in and fan-out follow the usual conventions:
a conv weight ``(FH, FW, C, K)`` has fan_in = FH·FW·C and fan_out = FH·FW·K; a fully-connected
weight ``(inputs, outputs)`` has fan_in = inputs and fan_out = outputs.

* He (Kaiming, He et al. 2015, for ReLU): normal std = sqrt(2 / fan_in); uniform limit sqrt(6 / fan_in)
* Glorot (Xavier, Glorot & Bengio 2010): normal std = sqrt(2 / (fan_in + fan_out));
  uniform limit sqrt(6 / (fan_in + fan_out))

Biases start at zero.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import SpecError

INITIALISERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape`` (HWIO conv or (in, out) fully-connected)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def initialise(kind: str, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Draw a weight of ``shape`` with the named initialiser.

    >>> w1 = initialise("he_normal", (3, 3, 1, 4), np.random.default_rng(0))
    >>> w2 = initialise("he_normal", (3, 3, 1, 4), np.random.default_rng(0))
    >>> bool((w1 == w2).all()), w1.dtype
    (True, dtype('float32'))
    """
    fan_in, fan_out = fans(shape)
    if kind == "he_normal":
        w = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    elif kind == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        w = rng.uniform(-limit, limit, size=shape)
    elif kind == "glorot_normal":
        w = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)
    elif kind == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    else:
        raise SpecError(f"unknown initialiser {kind!r}; expected one of {', '.join(INITIALISERS)}")
    return w.astype(dtype)
