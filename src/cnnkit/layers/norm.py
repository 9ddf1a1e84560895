"""Batch normalisation over the channel axis (the last one)."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..errors import ShapeError, SpecError
from ..kernels.norm import batchnorm_backward, batchnorm_eval_forward, batchnorm_train_forward
from .base import Layer, Shape


class BatchNorm2d(Layer):
    """Batch normalisation (Ioffe & Szegedy 2015) per channel of an (N, H, W, C) map, or per
    feature of an (N, D) matrix.

    Training: y = γ·(x − μ_B)/sqrt(σ²_B + ε) + β with the batch mean μ_B and the *biased* batch
    variance σ²_B (divide by n = N·H·W), as PyTorch normalises. The running statistics follow
    PyTorch too: running = (1 − momentum)·running + momentum·batch, where the running variance is
    updated with the *unbiased* variance (divide by n − 1). Evaluation uses the running statistics.
    Training needs n > 1 values per channel.

    Args:
        momentum: weight of the new batch in the running statistics. Default 0.1.
        eps: ε added to the variance. Default 1e-5.

    Shape:
        x: (N, H, W, C) -> y: (N, H, W, C), statistics over N·H·W per channel;
        x: (N, D) -> y: (N, D), statistics over N per feature (PyTorch's BatchNorm1d)

    Attributes:
        gamma, beta: (C,) parameters (2C in all), initialised to 1 and 0;
        running_mean, running_var: (C,) buffers, initialised to 0 and 1.

    Example:
        >>> BatchNorm2d().output_shape((28, 28, 6))
        (28, 28, 6)
    """

    type_name = "batchnorm2d"
    prefix = "bn"
    hyper = ("momentum", "eps")
    input_rank = None

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, name: str | None = None) -> None:
        super().__init__(name)
        where = name or "BatchNorm2d"
        if not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise SpecError(f"{where}: momentum must be in [0, 1]. Received: momentum={momentum!r}")
        if not isinstance(eps, (int, float)) or eps <= 0:
            raise SpecError(f"{where}: eps must be > 0. Received: eps={eps!r}")
        self.momentum, self.eps = float(momentum), float(eps)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in (1, 3):
            raise ShapeError(f"{self.label} (BatchNorm2d): expected an input shape (H, W, C) or (D,), "
                             f"received {tuple(input_shape)}")
        shapes.check_volume(input_shape, self.label, rank=len(input_shape))
        return tuple(input_shape)

    def param_count(self, input_shape: Shape) -> int:
        return shapes.batchnorm_params(input_shape[-1])

    def params_formula(self, input_shape: Shape) -> str:
        return shapes.batchnorm_params_formula(input_shape[-1])

    def _init_params(self, rng) -> None:
        c = self.input_shape[-1]
        self._add_param("gamma", np.ones(c, self.dtype))
        self._add_param("beta", np.zeros(c, self.dtype))
        self.buffers = {"running_mean": np.zeros(c, self.dtype), "running_var": np.ones(c, self.dtype)}

    def forward_cached(self, x):
        gamma, beta = self.params["gamma"].value, self.params["beta"].value
        if not self.training:
            return batchnorm_eval_forward(x, gamma, beta, self.buffers["running_mean"],
                                          self.buffers["running_var"], self.eps)
        n = x.size // x.shape[-1]
        self.check_values(n, x.shape)
        y, cache, mean, var = batchnorm_train_forward(x, gamma, beta, self.eps)
        self.update_running(mean, var, n)
        return y, cache

    def check_values(self, n: int, shape) -> None:
        """Training needs more than one value per channel (n = N·H·W over the whole batch)."""
        if n < 2:
            raise ShapeError(f"{self.label} (BatchNorm2d): training needs more than 1 value per channel, "
                             f"received input {tuple(shape)} (N×H×W = {n}); use a larger batch or eval()")

    def update_running(self, mean: np.ndarray, var: np.ndarray, n: int) -> None:
        """running = (1 − momentum)·running + momentum·batch, with the unbiased variance."""
        m = self.dtype.type(self.momentum)
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm *= 1 - m
        rm += m * mean
        rv *= 1 - m
        rv += m * var * self.dtype.type(n / (n - 1))

    def backward_cached(self, dy, cache, need_dx=True):
        dx, dgamma, dbeta = batchnorm_backward(dy, cache, need_dx)
        return dx, {"gamma": dgamma, "beta": dbeta}
