"""Inverted dropout."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError, SpecError
from ..kernels.dropout import dropout_backward, dropout_forward
from .base import Layer, Shape


class Dropout(Layer):
    """Inverted dropout: in training each value is zeroed with probability p and the survivors
    are scaled by 1/(1 − p), so evaluation (where the layer is the identity) needs no rescaling.

    The mask is drawn from the layer's ``rng`` (an ``np.random.Generator`` given by the model at
    build time), so a seeded run is reproducible. In evaluation mode (``model.eval()``) the layer
    is the identity.

    Args:
        p: probability of zeroing each value, in [0, 1). Default 0.5.

    Shape:
        x: any (N, ...) -> y: the same shape

    Example:
        >>> Dropout(0.5).output_shape((120,))
        (120,)
    """

    type_name = "dropout"
    prefix = "dropout"
    hyper = ("p",)
    input_rank = None

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
            raise SpecError(f"{name or 'Dropout'}: p must be a probability in [0, 1). Received: p={p!r}")
        self.p = float(p)

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def params_formula(self, input_shape: Shape) -> str:
        return "0 (no parameters)"

    def _init_params(self, rng: np.random.Generator) -> None:
        self.rng = np.random.default_rng(rng.integers(0, 2**63))

    def forward_cached(self, x):
        # The cache is (mask,), with mask None when the layer is the identity (eval mode or p = 0):
        # a bare None would read as "no forward yet" to Layer.backward.
        if not self.training or self.p == 0:
            return x, (None,)
        if self.rng is None:
            raise ShapeError(f"{self.label} is not built: call build(input_shape) first, "
                             "or put it in a Sequential with an input shape")
        y, mask = dropout_forward(x, self.p, self.rng)
        return y, (mask,)

    def backward_cached(self, dy, cache, need_dx=True):
        if not need_dx:
            return None, {}
        (mask,) = cache
        return (dy if mask is None else dropout_backward(dy, mask)), {}
