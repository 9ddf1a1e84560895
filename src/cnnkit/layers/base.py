"""The layer contract: parameters with gradients, shapes without data, forward/backward with caches.

A layer knows its output shape from its input shape alone (through :mod:`cnnkit.shapes`), owns
its :class:`Parameter` objects, and computes through the pure kernels of :mod:`cnnkit.kernels`.

Two ways to run a layer:

* ``y = layer.forward(x)`` then ``dx = layer.backward(dy)``: the cache of the last forward is kept
  on the layer and ``backward`` *writes* (does not accumulate) each parameter's ``.grad``.
* ``y, cache = layer.forward_cached(x)`` then ``dx, grads = layer.backward_cached(dy, cache)``:
  nothing is stored on the layer, so two batch shards can run at once in two threads.

Layers whose kernels take a ``workspace`` (Conv2d) keep one dict of scratch buffers for the
stateful pair only, so a training loop reuses its large buffers from step to step; the pure pair
allocates per call unless the caller passes its own ``workspace=`` (one per shard/thread).

dtype rule: :meth:`forward` converts a numeric input of another dtype to the layer's dtype (a float64
array into a float32 layer computes in float32); outputs and gradients always have the layer's
dtype, never a wider one.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ..errors import ShapeError
from ..shapes import Field, fmt_shape

Shape = tuple[int, ...]


class Parameter:
    """A trainable array and its gradient, both of the layer's dtype."""

    __slots__ = ("name", "value", "grad")

    def __init__(self, name: str, value: np.ndarray) -> None:
        self.name = name
        self.value = value
        self.grad = np.zeros_like(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.value.shape}, dtype={self.value.dtype})"


class Layer:
    """Base class of every layer.

    Subclasses set ``type_name`` (the spec's ``"type"``), ``prefix`` (automatic names ``conv1``,
    ``conv2`` …), ``hyper`` (constructor arguments saved in the spec, in positional order for the
    inline spec) and implement :meth:`output_shape`, :meth:`forward_cached` and
    :meth:`backward_cached`; layers with parameters also implement :meth:`_init_params` and the
    counting methods.
    """

    type_name: ClassVar[str] = "layer"
    prefix: ClassVar[str] = "layer"
    hyper: ClassVar[tuple[str, ...]] = ()
    input_rank: ClassVar[int | None] = 3  # rank of the input shape without the batch; None: any

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.training = True
        self.input_shape: Shape | None = None
        self.dtype = np.dtype(np.float32)
        self.params: dict[str, Parameter] = {}
        self.buffers: dict[str, np.ndarray] = {}  # state that is not trained (BatchNorm running statistics)
        self.rng: np.random.Generator | None = None  # set at build for layers that draw (Dropout)
        self._cache: Any = None
        self._y_shape: tuple[int, ...] | None = None  # shape of the last forward's output
        # scratch buffers reused by forward/backward (not by the pure *_cached pair); None: the
        # layer's kernels take no workspace
        self._workspace: dict[str, np.ndarray] | None = None

    # ----------------------------------------------------------------- description
    @property
    def label(self) -> str:
        return self.name or self.prefix

    def output_shape(self, input_shape: Shape) -> Shape:
        """Output shape (batch excluded) for ``input_shape``; raises ShapeError if impossible."""
        raise NotImplementedError

    def param_count(self, input_shape: Shape) -> int:
        return 0

    def params_formula(self, input_shape: Shape) -> str:
        return "0"

    def macs(self, input_shape: Shape) -> int:
        """Multiply-accumulates for one image's forward pass."""
        return 0

    def field(self, field: Field, input_shape: Shape) -> Field:
        """Receptive field after this layer (element-wise layers leave it unchanged)."""
        return field

    def config(self) -> dict[str, Any]:
        """This layer as a JSON-able spec entry (the schema of spec files and model files)."""
        cfg: dict[str, Any] = {"type": self.type_name}
        if self.name:
            cfg["name"] = self.name
        for key in self.hyper:
            value = getattr(self, key)
            cfg[key] = list(value) if isinstance(value, tuple) else value
        return cfg

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyper)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    # ----------------------------------------------------------------- building
    def build(self, input_shape: Shape, rng: np.random.Generator | None = None, dtype=np.float32) -> Shape:
        """Fix the input shape and dtype, create parameters from ``rng``, return the output shape."""
        input_shape = tuple(int(s) for s in input_shape)
        out = self.output_shape(input_shape)
        self.input_shape = input_shape
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ShapeError(f"{self.label}: dtype must be float32 or float64. Received: {self.dtype}")
        rng = np.random.default_rng(0) if rng is None else rng
        self._init_params(rng)
        return out

    def _init_params(self, rng: np.random.Generator) -> None:
        """Create ``self.params`` (layers with parameters override)."""

    def _add_param(self, key: str, value: np.ndarray) -> Parameter:
        p = Parameter(f"{self.label}.{key}", np.ascontiguousarray(value, dtype=self.dtype))
        self.params[key] = p
        return p

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    # ----------------------------------------------------------------- running
    def check_input(self, x: np.ndarray) -> None:
        """Refuse an input that is not (N, *input_shape), naming the layer and both shapes."""
        if not isinstance(x, np.ndarray):
            raise ShapeError(f"{self.label}: expected a NumPy array, received {type(x).__name__}")
        if self.input_shape is None:
            raise ShapeError(f"{self.label} is not built: call build(input_shape) first, "
                             "or put it in a Sequential with an input shape")
        expected = (None, *self.input_shape)
        if x.ndim == len(expected) and tuple(x.shape[1:]) == self.input_shape:
            return
        exp_txt = "(N, " + ", ".join(str(s) for s in self.input_shape) + ")"
        hint = ""
        if x.ndim == 4 and len(self.input_shape) == 3:
            h, w, c = self.input_shape
            if x.shape[1] == c and tuple(x.shape[2:]) == (h, w):
                hint = ": channels-first? use (N, H, W, C), e.g. x.transpose(0, 2, 3, 1)"
            elif tuple(x.shape[1:3]) == (h, w):
                hint = f": {x.shape[3]} channels where the layer was built for {c}"
        elif x.ndim == len(self.input_shape):
            hint = ": missing the batch axis? use x[None] for a single example"
        raise ShapeError(f"{self.label} ({type(self).__name__}) expected input {exp_txt}, "
                         f"received {tuple(x.shape)}{hint}")

    def as_layer_dtype(self, x: np.ndarray) -> np.ndarray:
        """``x`` in the layer's dtype (converted when it is another numeric dtype)."""
        if x.dtype == self.dtype:
            return x
        if x.dtype.kind not in "fiub":
            raise ShapeError(f"{self.label} ({type(self).__name__}): expected a numeric array, "
                             f"received dtype {x.dtype}")
        return x.astype(self.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Forward pass; keeps the cache for :meth:`backward`. The output has the layer's dtype."""
        self.check_input(x)
        x = self.as_layer_dtype(x)
        if self._workspace is None:
            y, self._cache = self.forward_cached(x)
        else:
            y, self._cache = self.forward_cached(x, workspace=self._workspace)
        self._y_shape = y.shape
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Backward pass of the last forward; writes each parameter's ``.grad`` and returns dx."""
        if self._cache is None:
            raise ShapeError(f"{self.label}: backward called before forward")
        if not isinstance(dy, np.ndarray):
            raise ShapeError(f"{self.label}: expected dy as a NumPy array, received {type(dy).__name__}")
        if dy.shape != self._y_shape:
            raise ShapeError(f"{self.label} ({type(self).__name__}): backward expected dy of the output's shape "
                             f"{self._y_shape}, received {dy.shape}")
        dy = self.as_layer_dtype(dy)
        if self._workspace is None:
            dx, grads = self.backward_cached(dy, self._cache, need_dx)
        else:
            dx, grads = self.backward_cached(dy, self._cache, need_dx, workspace=self._workspace)
        for key, g in grads.items():
            self.params[key].grad[...] = g
        return dx

    def forward_cached(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """Pure forward: ``(y, cache)``; does not store anything on the layer."""
        raise NotImplementedError

    def backward_cached(self, dy: np.ndarray, cache: Any, need_dx: bool = True
                        ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """Pure backward: ``(dx or None, {param_key: gradient})``."""
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Drop the forward cache and the scratch buffers (they are rebuilt on the next step)."""
        self._cache = None
        if self._workspace is not None:
            self._workspace.clear()


def flat_size(shape: Shape) -> int:
    return math.prod(shape)


def describe_shape(shape: Shape) -> str:
    return fmt_shape(shape)
