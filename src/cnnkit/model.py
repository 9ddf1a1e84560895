"""Sequential: a chain of layers whose shapes are known before any data runs."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from .errors import ShapeError, SpecError
from .layers.base import Layer, Parameter, Shape
from .shapes import fmt_shape


class Sequential:
    """Layers applied one after another.

    Args:
        layers: the layer objects, in order. Unnamed layers are named ``conv1``, ``relu1``,
            ``pool1``, ``fc1`` … by type.
        input_shape: (H, W, C) without the batch. When given, the model is built at once: every
            layer's input size is inferred and parameters are drawn. Otherwise call :meth:`build`.
        dtype: ``float32`` (default) or ``float64``. Parameters, activations and gradients all use
            it. Inputs of another dtype are *converted to the model's dtype* on entry to
            :meth:`forward` (so a float64 array into a float32 model computes in float32); nothing
            is ever upcast silently.
        seed: seed of the ``np.random.Generator`` that draws the initial weights (and the Dropout
            generators): same seed → bit-identical weights. Or pass ``rng``.
        name: a name for summaries and files.

    Example:
        >>> from cnnkit.layers import Conv2d, ReLU, MaxPool2d, Flatten, Linear
        >>> m = Sequential([Conv2d(6, 5, padding=2), ReLU(), MaxPool2d(2), Flatten(), Linear(10)],
        ...                input_shape=(28, 28, 1))
        >>> m.output_shape()
        (10,)
    """

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int] | None = None, *,
                 dtype=np.float32, seed: int = 0, rng: np.random.Generator | None = None,
                 name: str = "model") -> None:
        self.layers: list[Layer] = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise SpecError(f"{name}: item {i} is not a layer. Received: {layer!r}")
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise SpecError(f"{name}: dtype must be float32 or float64. Received: {self.dtype}")
        self.seed = seed
        self._rng = rng
        self.input_shape: Shape | None = None
        self.training = True
        # Set when the model is trained on or loaded with a dataset; saved in model files.
        self.class_names: list[str] | None = None
        self.preprocessing: dict[str, Any] | None = None
        # Set on a fully-convolutional model made by cnnkit.convert: the input size of the classifier
        # it came from, i.e. the size of one score-map window.
        self.train_input_shape: Shape | None = None
        self._name_layers()
        if input_shape is not None:
            self.build(input_shape)

    # ----------------------------------------------------------------- structure
    def _name_layers(self) -> None:
        taken = {layer.name for layer in self.layers if layer.name}
        counts: dict[str, int] = {}
        for layer in self.layers:
            if layer.name:
                continue
            while True:
                counts[layer.prefix] = counts.get(layer.prefix, 0) + 1
                candidate = f"{layer.prefix}{counts[layer.prefix]}"
                if candidate not in taken:
                    break
            layer.name = candidate
            taken.add(candidate)
        names = [layer.name for layer in self.layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"{self.name}: layer names must be unique. Repeated: {', '.join(dupes)}")

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key: int | str) -> Layer:
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise SpecError(f"{self.name}: no layer named {key!r}; layers are {', '.join(self.layer_names())}")
        return self.layers[key]

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def shapes(self, input_shape: Sequence[int] | None = None) -> list[tuple[Layer, Shape, Shape]]:
        """``[(layer, input_shape, output_shape), …]`` chained through :mod:`cnnkit.shapes`."""
        shape = self._resolve_input(input_shape)
        out = []
        for layer in self.layers:
            nxt = layer.output_shape(shape)
            out.append((layer, shape, nxt))
            shape = nxt
        return out

    def output_shape(self, input_shape: Sequence[int] | None = None) -> Shape:
        """Output shape for ``input_shape`` (default: the built one), without running data."""
        chain = self.shapes(input_shape)
        return chain[-1][2] if chain else self._resolve_input(input_shape)

    def _resolve_input(self, input_shape) -> Shape:
        if input_shape is None:
            if self.input_shape is None:
                raise ShapeError(f"{self.name}: no input shape; pass input_shape=(H, W, C)")
            return self.input_shape
        shape = tuple(input_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
            raise ShapeError(f"{self.name}: input shape must be positive integers (H, W, C). Received: {shape}")
        return tuple(int(s) for s in shape)

    def build(self, input_shape: Sequence[int]) -> Shape:
        """Infer every layer's input size and draw the parameters; returns the output shape."""
        shape = self._resolve_input(input_shape)
        chain = self.shapes(shape)  # all shape errors before any allocation
        rng = self._rng if self._rng is not None else np.random.default_rng(self.seed)
        for layer, in_shape, _ in chain:
            layer.build(in_shape, rng, self.dtype)
            layer.training = self.training
        self.input_shape = shape
        return chain[-1][2] if chain else shape

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    # ----------------------------------------------------------------- parameters
    def parameters(self) -> list[Parameter]:
        """Every trainable parameter, in layer order, each with its ``.grad``."""
        self._require_built()
        return [p for layer in self.layers for p in layer.params.values()]

    def param_count(self) -> int:
        return sum(p.value.size for p in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by name: ``conv1.weight``, ``bn1.running_mean`` …"""
        self._require_built()
        state = {}
        for layer in self.layers:
            for key, p in layer.params.items():
                state[f"{layer.name}.{key}"] = p.value
            for key, b in layer.buffers.items():
                state[f"{layer.name}.{key}"] = b
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the parameters and buffers; names, shapes and dtypes must match."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise SpecError(f"{self.name}: state does not match the model. Missing: {missing or 'none'}; "
                            f"unexpected: {extra or 'none'}")
        for key, target in own.items():
            src = np.asarray(state[key])
            if src.shape != target.shape:
                raise ShapeError(f"{self.name}: {key} has shape {src.shape}, the model expects {target.shape}")
            target[...] = src

    # ----------------------------------------------------------------- modes
    def train(self) -> "Sequential":
        """Training mode: BatchNorm uses batch statistics, Dropout drops."""
        self.training = True
        for layer in self.layers:
            layer.training = True
        return self

    def eval(self) -> "Sequential":
        """Evaluation mode: BatchNorm uses running statistics, Dropout is the identity."""
        self.training = False
        for layer in self.layers:
            layer.training = False
        return self

    # ----------------------------------------------------------------- running
    def _require_built(self) -> None:
        if self.input_shape is None:
            raise ShapeError(f"{self.name} is not built: pass input_shape=(H, W, C) or call build()")

    def _prepare(self, x) -> np.ndarray:
        self._require_built()
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype != self.dtype:
            if x.dtype.kind not in "fiub":
                raise ShapeError(f"{self.name}: expected a numeric array, received dtype {x.dtype}")
            x = x.astype(self.dtype)
        self.layers[0].check_input(x) if self.layers else None
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every layer and keep what :meth:`backward` needs. Returns the logits.

        The batch is split into shards run at once by one thread per core (:mod:`cnnkit.parallel`);
        BatchNorm statistics and Dropout masks are still those of the whole batch. The input must
        not be changed before :meth:`backward` (its caches refer to it)."""
        from . import parallel

        x = self._prepare(x)
        self._step = None  # the last step's caches go before this step's are made
        y, self._step = parallel.forward(self, x)
        return y

    def backward(self, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dy`` (gradient of the loss w.r.t. the output of the last
        :meth:`forward`); writes every parameter's ``.grad``. Returns dL/dx, or None when
        ``need_input_grad`` is False (the first layer then skips computing it)."""
        from . import parallel

        step = getattr(self, "_step", None)
        if step is None:
            raise ShapeError(f"{self.name}: backward called before forward")
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != step.output_shape:
            raise ShapeError(f"{self.name}: backward expected dy of the output's shape {step.output_shape}, "
                             f"received {dy.shape}")
        return parallel.backward(self, step, dy, need_input_grad)

    def forward_cached(self, x: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        """Like :meth:`forward` but returns the caches instead of storing them (thread-safe
        for concurrent shards, apart from BatchNorm's running statistics)."""
        x = self._prepare(x)
        caches = []
        for layer in self.layers:
            x, cache = layer.forward_cached(x)
            caches.append(cache)
        return x, caches

    def backward_cached(self, dy: np.ndarray, caches: list[Any], need_input_grad: bool = True
                        ) -> tuple[np.ndarray | None, list[dict[str, np.ndarray]]]:
        """Backward through ``caches``; returns ``(dx, [grads of each layer])`` without writing."""
        grads: list[dict[str, np.ndarray]] = [{} for _ in self.layers]
        for i in range(len(self.layers) - 1, -1, -1):
            dy, grads[i] = self.layers[i].backward_cached(dy, caches[i], need_input_grad or i > 0)
        return dy, grads

    def activations(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Every layer's output for ``x`` in evaluation mode: ``[(layer_name, y), …]``, low → high."""
        x = self._prepare(x)
        was_training = self.training
        self.eval()
        outs = []
        try:
            for layer in self.layers:
                x, _ = layer.forward_cached(x)
                outs.append((layer.name, x))
        finally:
            if was_training:
                self.train()
        return outs

    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outputs of the last layer in evaluation mode, at most ``batch_size`` images at a time
        (shared among the threads of :mod:`cnnkit.parallel`); the mode is restored."""
        from . import parallel

        x = self._prepare(x)
        was_training = self.training
        self.eval()
        try:
            return parallel.infer(self, x, batch_size)
        finally:
            if was_training:
                self.train()

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, classes)`` (softmax of the logits) for preprocessed ``x``."""
        z = self.logits(x, batch_size)
        z = z - z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict_images(self, images, top_k: int = 5, resize: str = "stretch") -> list[list[tuple[str, float]]]:
        """Top-k ``(class name, probability)`` per image (paths, Pillow images or uint8 arrays),
        converted to the input shape by the rule of :mod:`cnnkit.preprocess` and preprocessed
        with :attr:`preprocessing`. ``resize``: ``"stretch"``, ``"crop"`` or ``"error"``."""
        from .preprocess import predict_images

        return predict_images(self, images, top_k=top_k, resize=resize)

    # ----------------------------------------------------------------- description
    def config(self) -> dict[str, Any]:
        """The model as a spec: ``{"name", "input_shape", "dtype", "layers": [...]}``."""
        cfg: dict[str, Any] = {"name": self.name, "layers": [layer.config() for layer in self.layers]}
        if self.input_shape is not None:
            cfg["input_shape"] = list(self.input_shape)
        cfg["dtype"] = self.dtype.name
        return cfg

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({layer.name}) {layer!r}" for layer in self.layers)
        shape = f", input_shape={fmt_shape(self.input_shape)}" if self.input_shape else ""
        return f"Sequential(name={self.name!r}{shape}\n{inner}\n)"
