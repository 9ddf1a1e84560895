"""Fully-connected layer and Flatten."""

from __future__ import annotations

import math

import numpy as np

from .. import shapes
from ..errors import SpecError
from ..init import INITIALISERS, initialise
from ..kernels.linear import flatten_backward, flatten_forward, linear_backward, linear_forward
from .base import Layer, Shape


class Flatten(Layer):
    """(N, H, W, C) -> (N, H·W·C), in row-major (H, W, C) order.

    Example:
        >>> Flatten().output_shape((5, 5, 16))
        (400,)
    """

    type_name = "flatten"
    prefix = "flatten"
    input_rank = None

    def output_shape(self, input_shape: Shape) -> Shape:
        if not input_shape or any(not isinstance(s, int) or s < 1 for s in input_shape):
            raise shapes.ShapeError(f"{self.label}: expected a positive input shape, received {input_shape}")
        return (math.prod(input_shape),)

    def params_formula(self, input_shape: Shape) -> str:
        return "0 (no parameters)"

    def forward_cached(self, x):
        return flatten_forward(x)

    def backward_cached(self, dy, cache, need_dx=True):
        return (flatten_backward(dy, cache) if need_dx else None), {}


class Linear(Layer):
    """Fully-connected: every input linked to every output, y = x·W + b.

    Args:
        outputs: number of outputs (the input count is inferred when the model is built).
        bias: add a bias per output. Default True.
        init: weight initialiser (``he_normal`` default).

    Shape:
        x: (N, D) -> y: (N, outputs). Put ``Flatten()`` before it after conv layers.

    Attributes:
        weight: (D, outputs);  bias: (outputs,).  Parameters: outputs × (D + 1).

    Example:
        >>> Linear(120).output_shape((400,))
        (120,)
    """

    type_name = "linear"
    prefix = "fc"
    hyper = ("outputs", "bias", "init")
    input_rank = 1

    def __init__(self, outputs: int, bias: bool = True, init: str = "he_normal", name: str | None = None) -> None:
        super().__init__(name)
        shapes.check_positive(outputs, "outputs", name or "Linear")
        if init not in INITIALISERS:
            raise SpecError(f"{name or 'Linear'}: unknown init {init!r}; expected one of {', '.join(INITIALISERS)}")
        self.outputs, self.bias, self.init = outputs, bool(bias), init

    def output_shape(self, input_shape: Shape) -> Shape:
        shapes.check_volume(input_shape, f"{self.label} (Linear)", rank=1)
        return (self.outputs,)

    def param_count(self, input_shape: Shape) -> int:
        return shapes.linear_params(input_shape[0], self.outputs, self.bias)

    def params_formula(self, input_shape: Shape) -> str:
        return shapes.linear_params_formula(input_shape[0], self.outputs, self.bias)

    def macs(self, input_shape: Shape) -> int:
        return shapes.linear_macs(input_shape[0], self.outputs)

    def _init_params(self, rng: np.random.Generator) -> None:
        self._add_param("weight", initialise(self.init, (self.input_shape[0], self.outputs), rng, self.dtype))
        if self.bias:
            self._add_param("bias", np.zeros(self.outputs, self.dtype))

    def forward_cached(self, x):
        b = self.params["bias"].value if self.bias else None
        return linear_forward(x, self.params["weight"].value, b)

    def backward_cached(self, dy, cache, need_dx=True):
        dx, dw, db = linear_backward(dy, cache, need_dx)
        grads = {"weight": dw}
        if self.bias:
            grads["bias"] = db
        return dx, grads
