"""Element-wise activations: ReLU, LeakyReLU, Sigmoid, Tanh. No parameters; shape unchanged."""

from __future__ import annotations

from ..errors import SpecError
from ..kernels import activations as K
from .base import Layer, Shape


class _Activation(Layer):
    input_rank = None

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def params_formula(self, input_shape: Shape) -> str:
        return "0 (no parameters)"


class ReLU(_Activation):
    """max(0, x). The gradient at exactly 0 is taken as 0 (as PyTorch).

    Example:
        >>> ReLU().output_shape((28, 28, 6))
        (28, 28, 6)
    """

    type_name = "relu"
    prefix = "relu"

    def forward_cached(self, x):
        return K.relu_forward(x)

    def backward_cached(self, dy, cache, need_dx=True):
        return (K.relu_backward(dy, cache) if need_dx else None), {}


class LeakyReLU(_Activation):
    """x for x > 0, slope·x otherwise (slope default 0.01)."""

    type_name = "leakyrelu"
    prefix = "lrelu"
    hyper = ("slope",)

    def __init__(self, slope: float = 0.01, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(slope, (int, float)) or isinstance(slope, bool) or not 0 <= slope < 1:
            raise SpecError(f"{name or 'LeakyReLU'}: slope must be a number in [0, 1). Received: slope={slope!r}")
        self.slope = float(slope)

    def forward_cached(self, x):
        return K.leaky_relu_forward(x, self.slope)

    def backward_cached(self, dy, cache, need_dx=True):
        return (K.leaky_relu_backward(dy, cache) if need_dx else None), {}


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow."""

    type_name = "sigmoid"
    prefix = "sigmoid"

    def forward_cached(self, x):
        return K.sigmoid_forward(x)

    def backward_cached(self, dy, cache, need_dx=True):
        return (K.sigmoid_backward(dy, cache) if need_dx else None), {}


class Tanh(_Activation):
    """tanh(x)."""

    type_name = "tanh"
    prefix = "tanh"

    def forward_cached(self, x):
        return K.tanh_forward(x)

    def backward_cached(self, dy, cache, need_dx=True):
        return (K.tanh_backward(dy, cache) if need_dx else None), {}
