"""Finite-difference gradient checking (float64 central differences).

The core, :func:`numerical_gradient`, is used by the tests of every layer; :func:`check_gradients`
(and ``cnnkit check-gradients``) applies it to a whole layer or model for users who wrote or
changed a backward pass.

Tolerance used throughout cnnkit: an analytic value ``a`` passes against the numerical ``n`` when
``|a - n| <= ATOL + RTOL·|n|`` with ATOL = 1e-8 and RTOL = 1e-6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import ShapeError, SpecError
from .shapes import fmt_shape

ATOL = 1e-8
RTOL = 1e-6
STEP = 1e-6              # central-difference step h (float64)
DEFAULT_SAMPLES = 20     # random elements per tensor checked by default
DEFAULT_BATCH = 4        # examples in the random input batch


def numerical_gradient(f: Callable[[], float], x: np.ndarray, indices: Iterable[tuple[int, ...]] | None = None,
                       h: float = STEP) -> np.ndarray:
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


# ------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class TensorCheck:
    """The result for one tensor (the input or one parameter).

    ``worst_ratio`` is the largest |a − n| / (atol + rtol·|n|) over the checked elements: the
    tensor passes when it is at most 1. ``worst_index``, ``analytic`` and ``numeric`` describe that
    element (the index includes the batch axis for the input).
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    worst_ratio: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float

    @property
    def passed(self) -> bool:
        return self.worst_ratio <= 1.0


@dataclass(frozen=True)
class GradCheckReport:
    """What :func:`check_gradients` found: one :class:`TensorCheck` per tensor, and the setting."""

    model: str
    input_shape: tuple[int, ...]
    batch_size: int
    mode: str
    samples: int | None      # None: every element was checked
    seed: int
    tensors: list[TensorCheck] = field(default_factory=list)
    atol: float = ATOL
    rtol: float = RTOL
    h: float = STEP

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tensors)

    @property
    def failed(self) -> list[TensorCheck]:
        return [t for t in self.tensors if not t.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``passed`` and per-tensor ``passed`` included)."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["tensors"] = [{**asdict(t), "shape": list(t.shape), "worst_index": list(t.worst_index),
                         "passed": t.passed} for t in self.tensors]
        d["passed"] = self.passed
        return d

    def format(self) -> str:
        """A plain-text table with one line per tensor and a PASSED/FAILED verdict last."""
        what = (f"every element of each tensor" if self.samples is None else
                f"{self.samples} random elements per tensor + the largest gradient (seed {self.seed})")
        lines = [
            f"Gradient check of {self.model} on {fmt_shape(self.input_shape)}: float64, batch {self.batch_size}, "
            f"{self.mode} mode, central differences h={self.h:g}, {what}",
            f"An element passes when |a − n| ≤ {self.atol:g} + {self.rtol:g}·|n| (a: backward, n: numerical).",
            "",
        ]
        header = ("tensor", "shape", "checked", "max |a−n|", "max rel", "worst/tol", "result")
        rows = [(t.name, fmt_shape(t.shape), str(t.checked), f"{t.max_abs_error:.2e}", f"{t.max_rel_error:.2e}",
                 f"{t.worst_ratio:.3g}", "ok" if t.passed else "FAIL") for t in self.tensors]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            lines.append("  ".join(c.ljust(w) if i in (0, 1, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        lines.append("")
        if self.passed:
            lines.append(f"PASSED: {'all ' if len(self.tensors) > 1 else ''}{_count(len(self.tensors), 'tensor')} "
                         "within tolerance")
        else:
            worst = max(self.failed, key=lambda t: t.worst_ratio)
            idx = ", ".join(str(i) for i in worst.worst_index)
            lines.append(f"FAILED: {len(self.failed)} of {len(self.tensors)} tensors exceed the tolerance "
                         f"({', '.join(t.name for t in self.failed)}); worst {worst.name}[{idx}]: "
                         f"backward {worst.analytic:.10g}, numerical {worst.numeric:.10g}")
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# ------------------------------------------------------------------------- checking a model
def _float64_copy(layer_or_model, input_shape: Sequence[int] | None, seed: int):
    """A float64 Sequential with the same config, weights and buffers; the original is untouched."""
    from .layers.base import Layer
    from .model import Sequential
    from .spec import layer_from_config, model_from_config

    if isinstance(layer_or_model, Sequential):
        model = layer_or_model
        shape = _pick_shape(model.input_shape, input_shape, model.name)
        copy = model_from_config(model.config(), shape, seed=seed, dtype="float64", name=model.name)
        if model.built:
            copy.load_state_dict(model.state_dict())
        return copy, model.training
    if isinstance(layer_or_model, Layer):
        layer = layer_or_model
        shape = _pick_shape(layer.input_shape, input_shape, layer.label)
        twin = layer_from_config(layer.config(), layer.label)
        copy = Sequential([twin], shape, dtype=np.float64, seed=seed, name=layer.label)
        if layer.built:
            for key, p in layer.params.items():
                twin.params[key].value[...] = p.value
            for key, b in layer.buffers.items():
                twin.buffers[key][...] = b
        return copy, layer.training
    raise SpecError(f"check_gradients: expected a Sequential model or a layer. Received: {type(layer_or_model).__name__}")


def _pick_shape(built: tuple | None, asked: Sequence[int] | None, where: str) -> tuple[int, ...]:
    if asked is not None:
        asked = tuple(asked)
        if built is not None and asked != tuple(built):
            raise ShapeError(f"check_gradients: {where} is built for input {fmt_shape(built)}, received "
                             f"input_shape {fmt_shape(asked)}; leave input_shape out or rebuild the model")
        return asked
    if built is None:
        raise ShapeError(f"check_gradients: {where} is not built; pass input_shape=(H, W, C)")
    return tuple(built)


def _sample(size: int, shape: tuple[int, ...], analytic: np.ndarray, samples: int | None,
            rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Flat indices to check: all, or ``samples`` random ones plus the largest |gradient|."""
    if samples is None or size <= samples:
        flat = np.arange(size)
    else:
        flat = rng.choice(size, size=samples, replace=False)
        largest = int(np.argmax(np.abs(analytic)))
        if largest not in flat:
            flat = np.append(flat, largest)
    return [tuple(int(i) for i in idx) for idx in zip(*np.unravel_index(np.sort(flat), shape))]


def check_gradients(layer_or_model, input_shape: Sequence[int] | None = None, samples: int | None = DEFAULT_SAMPLES,
                    all: bool = False, seed: int = 0, batch_size: int = DEFAULT_BATCH, mode: str | None = None,
                    h: float = STEP) -> GradCheckReport:
    """Compare a layer's or model's backward pass with float64 central differences.

    The check runs on a float64 copy built from the config, weights and buffers of
    ``layer_or_model`` (the original is never changed). With a fixed random input x of shape
    (batch_size, *input_shape) and a fixed random r of the output's shape (both standard normal
    from ``np.random.default_rng(seed)``), the scalar loss is L = Σ y·r, so backward starts from
    dy = r. For the input and every parameter, dL/dθ from backward is compared with
    (L(θ + h) − L(θ − h)) / 2h at the sampled elements.

    Sampling: by default ``samples`` elements per tensor drawn uniformly without replacement, plus
    the element with the largest analytic gradient; tensors with at most ``samples`` elements, or
    ``all=True``, are checked completely (one element costs two forward passes of the layers from
    its own onward). Dropout masks are frozen (each generator is rewound before every pass);
    BatchNorm in training mode uses the batch statistics, hence a batch of several examples: with
    only 2, a feature whose two values nearly coincide makes BatchNorm so curved that no step
    size measures it to the tolerance (a larger ``batch_size`` helps such a model).

    An element that fails is measured up to six more ways, until one agrees (central differences
    with h/10 and 10h; second-order one-sided differences to the left and to the right with steps
    h and 10h), and the estimate closest to the backward value is kept: a ReLU or max-pool kink
    near the point, or rounding noise in a large model, spoils some measurements but rarely all
    seven, while a wrong backward disagrees with every one of them.

    Args:
        layer_or_model: a :class:`~cnnkit.model.Sequential` or a single layer.
        input_shape: input shape without the batch; default the one it is built with.
        samples: elements per tensor (>= 1). all: check every element.
        seed: seed of the input, r, the sample (and the weights when the model is not built).
        batch_size: examples in the input batch.
        mode: ``"train"`` or ``"eval"`` (BatchNorm statistics, Dropout); default the model's mode.
        h: the central-difference step.

    Returns:
        A :class:`GradCheckReport`; ``report.passed`` and ``print(report.format())``.

    Example:
        >>> from cnnkit.layers import BatchNorm2d
        >>> check_gradients(BatchNorm2d(), (3, 3, 2)).passed
        True
    """
    if not all and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise SpecError(f"check_gradients: samples must be an integer >= 1. Received: samples={samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError(f"check_gradients: batch_size must be an integer >= 1. Received: batch_size={batch_size!r}")
    if mode not in (None, "train", "eval"):
        raise SpecError(f"check_gradients: mode must be 'train' or 'eval'. Received: mode={mode!r}")
    model, was_training = _float64_copy(layer_or_model, input_shape, seed)
    mode = mode or ("train" if was_training else "eval")
    model.train() if mode == "train" else model.eval()
    layers = model.layers
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *model.input_shape))

    # Rewinding each layer's own generator before it runs freezes the Dropout masks.
    rng_states = {i: layer.rng.bit_generator.state for i, layer in enumerate(layers) if layer.rng is not None}
    # The pure forward_cached/backward_cached pair throughout: nothing shares scratch buffers.
    acts, caches = [x], []           # acts[i] = input of layer i at the unperturbed point
    for layer in layers:
        y, cache = layer.forward_cached(acts[-1])
        acts.append(y)
        caches.append(cache)
    r = rng.standard_normal(acts[-1].shape)
    dx, grads = model.backward_cached(r, caches)

    def loss_from(i: int) -> Callable[[], float]:
        """L as a function of the input of layer i (the layers before i are unchanged)."""
        def f() -> float:
            a = acts[i]
            for j in range(i, len(layers)):
                if j in rng_states:
                    layers[j].rng.bit_generator.state = rng_states[j]
                a, _ = layers[j].forward_cached(a)
            return float(np.dot(a.ravel(), r.ravel()))
        return f

    targets = [("input", x, dx, 0)]
    targets += [(p.name, p.value, grads[i][key], i) for i, layer in enumerate(layers) for key, p in layer.params.items()]
    sampler = np.random.default_rng([seed, 1])
    checks = [_check_tensor(name, value, analytic, loss_from(i), None if all else samples, sampler, h)
              for name, value, analytic, i in targets]
    return GradCheckReport(model=model.name, input_shape=tuple(model.input_shape), batch_size=batch_size,
                           mode=mode, samples=None if all else samples, seed=seed, tensors=checks, h=h)


def _other_estimates(f: Callable[[], float], x: np.ndarray, idx: tuple[int, ...], h: float) -> Iterator[float]:
    """More derivative estimates at x[idx], computed lazily: central differences with h/10 (a kink
    between h/10 and h away) and 10h (a tenth of the rounding noise), then the second-order
    one-sided differences (−3f(0) + 4f(±t/2) − f(±t))/(±t) with t = h and t = 10h on each side,
    exact on a side without a kink. All are exact to O(step²) where f is smooth; x is restored.
    """
    old = x[idx]
    memo: dict[float, float] = {}

    def at(multiple: float) -> float:  # f at x[idx] = old + multiple·h
        if multiple not in memo:
            x[idx] = old + multiple * h
            try:
                memo[multiple] = f()
            finally:
                x[idx] = old
        return memo[multiple]

    yield (at(0.1) - at(-0.1)) / (0.2 * h)
    yield (at(10) - at(-10)) / (20 * h)
    for t in (1, 10):
        for side in (1, -1):
            yield (-3 * at(0) + 4 * at(side * t / 2) - at(side * t)) / (side * t * h)


def _check_tensor(name: str, value: np.ndarray, analytic: np.ndarray, f: Callable[[], float],
                  samples: int | None, rng: np.random.Generator, h: float) -> TensorCheck:
    indices = _sample(value.size, value.shape, analytic, samples, rng)
    numeric = numerical_gradient(f, value, indices, h)
    a = np.array([analytic[i] for i in indices])
    n = np.array([numeric[i] for i in indices])
    for k in np.flatnonzero(~within_tolerance(a, n)):  # second opinions (see check_gradients)
        for estimate in _other_estimates(f, value, indices[k], h):
            if abs(a[k] - estimate) < abs(a[k] - n[k]):
                n[k] = estimate
            if within_tolerance(a[k], n[k]):
                break
    err = np.abs(a - n)
    ratio = err / (ATOL + RTOL * np.abs(n))
    rel = err / np.maximum(np.maximum(np.abs(a), np.abs(n)), ATOL)  # relative to the larger, floored at ATOL
    k = int(np.argmax(ratio))
    return TensorCheck(name=name, shape=tuple(value.shape), checked=len(indices), max_abs_error=float(err.max()),
                       max_rel_error=float(rel.max()), worst_ratio=float(ratio[k]), worst_index=indices[k],
                       analytic=float(a[k]), numeric=float(n[k]))

