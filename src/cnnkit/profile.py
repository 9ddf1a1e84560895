"""Where a model's time goes: per-layer forward and backward time, and how much of it is matrix
multiplies, element-wise work, or copies and the rest.

Example:
    >>> p = profile_model("lenet5", batch_size=8, steps=2)
    >>> [row.name for row in p.rows][:3]
    ['conv1', 'relu1', 'pool1']
    >>> round(sum(p.category_shares().values()), 6)
    1.0

What is measured, in two passes over the same kind of step on a *copy* of the model (the model
given is never changed):

1. **Timing pass.** Each layer's ``forward_cached`` and ``backward_cached`` is wrapped with a clock
   (``time.perf_counter``) around the call; so are the loss and the optimiser. A training step is
   the one :func:`cnnkit.train.fit` runs: ``model.forward``, softmax cross-entropy,
   ``model.backward`` without the input gradient, SGD with momentum 0.9. An inference step
   (``train=False``) is what ``predict`` runs: ``model.logits`` in evaluation mode. Every figure is
   the median over the measured steps, after warm-up steps.
2. **Classifying pass.** The same steps again while cnnkit's NumPy calls are observed
   (:mod:`cnnkit.profile_trace`: a proxy for ``np`` in the kernel and layer modules, and arrays
   whose ``__array_ufunc__`` clocks what is done to them, so ``a @ b`` is seen too). A ``matmul``
   call (or ``np.dot``, ``einsum``, ``tensordot``) counts as a **matrix multiply**, with 2·m·k·n
   FLOPs from its operand shapes, and a call of the compiled direct convolution
   (:mod:`cnnkit.kernels._native`) as a **convolution**, in the same category, with its FLOPs;
   any other ufunc call, reductions included, and the compiled helper's other calls (max
   pooling, the convolution backward's pass over dy) as **element-wise**. What remains of a
   layer's time from the timing pass is **copies and other**: the padding and im2col copies made by
   assignment, allocations and page faults, Python.

The proxy and the wrappers exist only inside :func:`profile_model`; nothing costs anything when
no profile runs. Limits: the layers are clocked one by one, so the profiled step runs unfused
(no Conv2d + ReLU kernel, no outputs written into the next conv's buffer) and is somewhat slower
than the step training runs; when a kernel runs shards in several threads, the times of each category are summed over the
threads (so they describe CPU work rather than wall time), and where they add up to more than a
row's wall time they are scaled down to it. The ``(outside layers)`` row is the step's time not spent in a layer,
the loss or the optimiser (the model's own glue).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .errors import UserInputError
from .profile_trace import Recorder, observing, traced

CATEGORIES = ("gemm", "elementwise", "other")
CATEGORY_LABELS = {"gemm": "matrix multiplies and convolutions", "elementwise": "element-wise", "other": "copies and other"}
# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Phase:
    """One layer's forward or backward: wall seconds and their split (seconds, summing to it)."""

    seconds: float
    gemm: float
    elementwise: float
    other: float
    gemm_flop: float  # FLOPs of the matrix multiplies seen in this phase

    @property
    def gemm_gflops(self) -> float | None:
        return self.gemm_flop / self.gemm / 1e9 if self.gemm > 0 and self.gemm_flop else None


@dataclass(frozen=True)
class ProfileRow:
    """A layer (or the loss, the optimiser, the time outside layers) of a :class:`Profile`."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    forward: Phase
    backward: Phase | None

    @property
    def seconds(self) -> float:
        return self.forward.seconds + (self.backward.seconds if self.backward else 0.0)

    def category(self, key: str) -> float:
        return getattr(self.forward, key) + (getattr(self.backward, key) if self.backward else 0.0)


@dataclass(frozen=True)
class Profile:
    """What :func:`profile_model` measured. Times in seconds per step (medians)."""

    model: str
    input_shape: tuple[int, ...]
    batch_size: int
    mode: str  # "train" or "infer"
    dtype: str
    steps: int
    step_seconds: float
    rows: tuple[ProfileRow, ...]

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.step_seconds

    @property
    def total_seconds(self) -> float:
        """Sum of the rows (the step, split); shares are fractions of this."""
        return sum(r.seconds for r in self.rows) or 1e-30

    def category_shares(self) -> dict[str, float]:
        """Fraction of the step in matrix multiplies, element-wise work, copies and other (sum 1)."""
        total = self.total_seconds
        return {k: sum(r.category(k) for r in self.rows) / total for k in CATEGORIES}

    def gemm_gflops(self) -> float | None:
        """Achieved rate of the matrix multiplies over the whole step."""
        flop = sum(r.forward.gemm_flop + (r.backward.gemm_flop if r.backward else 0) for r in self.rows)
        seconds = sum(r.category("gemm") for r in self.rows)
        return flop / seconds / 1e9 if seconds > 0 and flop else None

    def bound(self) -> str:
        """One sentence naming what bounds the step, and its largest single cost."""
        shares = self.category_shares()
        cells = [(getattr(ph, k), f"{r.name}{which if r.output_shape else ''} ({CATEGORY_LABELS[k]})")
                 for r in self.rows for which, ph in ((" forward", r.forward), (" backward", r.backward))
                 if ph is not None for k in CATEGORIES]
        top_s, top = max(cells)
        rate = self.gemm_gflops()
        at = f", at {rate:.1f} GF/s" if rate else ""
        if shares["gemm"] >= 0.5:
            head = f"bound by matrix multiplies and convolutions: {100 * shares['gemm']:.0f}% of the step{at}"
        else:
            head = (f"bound by copies and element-wise work: {100 * shares['other']:.0f}% copies and other, "
                    f"{100 * shares['elementwise']:.0f}% element-wise "
                    f"(matrix multiplies and convolutions {100 * shares['gemm']:.0f}%{at})")
        return f"{head}; largest single cost: {top}, {100 * top_s / self.total_seconds:.0f}% of the step"

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        def phase(ph: Phase | None):
            return None if ph is None else {**asdict(ph), "gemm_gflops": ph.gemm_gflops}

        return {
            "model": self.model, "input_shape": list(self.input_shape), "batch_size": self.batch_size,
            "mode": self.mode, "dtype": self.dtype, "steps": self.steps, "step_seconds": self.step_seconds,
            "images_per_second": self.images_per_second, "category_shares": self.category_shares(),
            "gemm_gflops": self.gemm_gflops(), "bound": self.bound(),
            "layers": [{"name": r.name, "type": r.type,
                        "output_shape": list(r.output_shape) if r.output_shape else None,
                        "seconds": r.seconds, "share": r.seconds / self.total_seconds,
                        "forward": phase(r.forward), "backward": phase(r.backward)} for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def _table(self) -> tuple[list[str], list[list[str]]]:
        head = ["layer", "type", "output", "forward ms", "backward ms", "% of step",
                "GEMM %", "element-wise %", "copies+other %", "GEMM GF/s"]
        body = []
        for r in self.rows:
            s = r.seconds or 1e-30
            flop = r.forward.gemm_flop + (r.backward.gemm_flop if r.backward else 0)
            rate = flop / r.category("gemm") / 1e9 if r.category("gemm") > 0 and flop else None
            body.append([r.name, r.type, "×".join(map(str, r.output_shape)) if r.output_shape else "-",
                         f"{1e3 * r.forward.seconds:.2f}",
                         f"{1e3 * r.backward.seconds:.2f}" if r.backward else "-",
                         f"{100 * r.seconds / self.total_seconds:.1f}",
                         *(f"{100 * r.category(k) / s:.0f}" for k in CATEGORIES),
                         f"{rate:.1f}" if rate else "-"])
        return head, body

    def _headline(self) -> str:
        shares = self.category_shares()
        what = "training step" if self.mode == "train" else "forward pass (inference)"
        return (f"{self.model} {what}, batch {self.batch_size}, {'×'.join(map(str, self.input_shape))}, "
                f"{self.dtype}: {1e3 * self.step_seconds:.1f} ms per step ({self.images_per_second:.0f} images/s), "
                f"median of {self.steps} steps. Matrix multiplies and convolutions {100 * shares['gemm']:.0f}%, element-wise "
                f"{100 * shares['elementwise']:.0f}%, copies and other {100 * shares['other']:.0f}%.")

    def to_text(self) -> str:
        head, body = self._table()
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        lines = [self._headline(), ""]
        for row in [head, *body]:
            lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        return "\n".join(lines + ["", self.bound()])

    def to_markdown(self, bound: bool = True) -> str:
        """A headline and a Markdown table (and the :meth:`bound` sentence unless ``bound=False``)."""
        head, body = self._table()
        lines = [self._headline(), "", "| " + " | ".join(head) + " |",
                 "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines + (["", self.bound()] if bound else []))


# --------------------------------------------------------------------------- running
def _copy_model(model_or_spec, input_shape):
    from .model import Sequential
    from .spec import model_from_config, resolve_model

    if isinstance(model_or_spec, Sequential):
        if not model_or_spec.built and input_shape is None:
            raise UserInputError(f"profile: {model_or_spec.name} has no input shape; pass input_shape=(H, W, C)")
        shape = input_shape or model_or_spec.input_shape
        copy = model_from_config(model_or_spec.config(), shape, seed=model_or_spec.seed)
        if model_or_spec.built and tuple(shape) == model_or_spec.input_shape:
            copy.load_state_dict(model_or_spec.state_dict())
        return copy
    model = resolve_model(model_or_spec, input_shape)
    if not model.built:
        raise UserInputError(f"profile: {model_or_spec!r} has no input shape: pass --input HxWxC "
                             "(input_shape=(H, W, C)), e.g. 28x28x1")
    return model


def _check_count(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UserInputError(f"profile: {name} must be an integer >= {low}. Received: {name}={value!r}")
    return int(value)


def profile_model(model, input_shape: Sequence[int] | None = None, *, batch_size: int = 64, steps: int = 10,
                  warmup: int = 2, train: bool = True, seed: int = 0, classify: bool = True) -> Profile:
    """Per-layer forward/backward time of a training step (or forward pass) and its split.

    Args:
        model: a :class:`~cnnkit.model.Sequential` (profiled on a copy) or anything
            :func:`cnnkit.spec.resolve_model` accepts (``"lenet5"``, a spec, a ``.npz`` file).
        input_shape: (H, W, C) without the batch; default: the model's.
        batch_size: images per step.
        steps: measured steps per pass (medians are taken over them).
        warmup: steps run first and not measured, in each pass.
        train: a training step (forward, loss, backward, SGD) or, if False, inference.
        seed: seeds the random input and labels.
        classify: run the classifying pass (False: every layer's time counts as "other").
    """
    from .kernels.losses import softmax_cross_entropy
    from .optim import SGD

    batch_size, steps, warmup = (_check_count(batch_size, "batch_size"), _check_count(steps, "steps"),
                                 _check_count(warmup, "warmup", 0))
    m = _copy_model(model, input_shape)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *m.input_shape)).astype(m.dtype)
    out_shape = m.output_shape()
    labels = rng.integers(0, out_shape[0], batch_size) if len(out_shape) == 1 else None
    dy_random = rng.standard_normal((batch_size, *out_shape)).astype(m.dtype) if labels is None else None
    opt = SGD(m.parameters(), lr=1e-3, momentum=0.9) if train and m.parameters() else None
    m.train() if train else m.eval()
    clocks: dict[tuple[str, str], float] = defaultdict(float)
    lock = threading.Lock()
    state: dict[str, Recorder | None] = {"recorder": None}

    def clocked(name: str, phase: str, fn):
        def call(*args, **kwargs):
            rec = state["recorder"]
            if rec is not None:
                args = tuple(traced(a) for a in args)
                previous = rec.enter((name, phase))
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                with lock:
                    clocks[(name, phase)] += dt
                if rec is not None:
                    rec.leave(previous)
        return call

    for layer in m.layers:
        layer.forward_cached = clocked(layer.name, "forward", layer.forward_cached)
        layer.backward_cached = clocked(layer.name, "backward", layer.backward_cached)
    loss_fn = clocked("loss", "forward", softmax_cross_entropy)
    opt_step = clocked("optimizer", "forward", opt.step) if opt is not None else None

    def step(xb):
        if not train:
            m.logits(xb, batch_size=batch_size)
            return
        logits = m.forward(xb)
        dlogits = loss_fn(logits, labels)[1] if labels is not None else clocked("loss", "forward", lambda: dy_random)()
        m.backward(dlogits, need_input_grad=False)
        if opt_step is not None:
            opt_step()

    def run_pass(recorder: Recorder | None):
        per_step, walls, cats = defaultdict(list), [], defaultdict(lambda: defaultdict(list))
        xb = x if recorder is None else traced(x)
        for i in range(warmup + steps):
            clocks.clear()
            if recorder is not None:
                recorder.seconds.clear()
            t0 = time.perf_counter()
            step(xb)
            wall = time.perf_counter() - t0
            if i < warmup:
                continue
            walls.append(wall)
            for key, v in clocks.items():
                per_step[key].append(v)
            if recorder is not None:
                for key, (g, e, f) in recorder.seconds.items():
                    for k, v in (("gemm", g), ("elementwise", e), ("flop", f)):
                        cats[key][k].append(v)
        return walls, per_step, cats

    walls, per_step, _ = run_pass(None)
    cats: dict = {}
    if classify:  # the second pass, NumPy observed (cnnkit.profile_trace); everything restored after
        for layer in m.layers:
            layer.clear_cache()  # workspaces are made again, by the observed kernels
        with observing(m.parameters()) as recorder:
            state["recorder"] = recorder
            try:
                cats = run_pass(recorder)[2]
            finally:
                state["recorder"] = None
    step_s = statistics.median(walls)

    def phase(key) -> Phase | None:
        if key not in per_step:
            return None
        seconds = statistics.median(per_step[key])
        c = cats.get(key, {})
        gemm, ew = (statistics.median(c[k]) if k in c else 0.0 for k in ("gemm", "elementwise"))
        if gemm + ew > seconds:  # clock noise or threads: keep the proportions within the wall time
            gemm, ew = gemm * seconds / (gemm + ew), ew * seconds / (gemm + ew)
        return Phase(seconds, gemm, ew, max(seconds - gemm - ew, 0.0),
                     statistics.median(c["flop"]) if "flop" in c else 0.0)

    shapes = {layer.name: out for layer, _, out in m.shapes()}
    rows = [ProfileRow(layer.name, type(layer).__name__, shapes[layer.name], phase((layer.name, "forward")),
                       phase((layer.name, "backward")) if train else None) for layer in m.layers]
    rows = [r for r in rows if r.forward is not None]
    for name, kind in (("loss", "softmax cross-entropy"), ("optimizer", "SGD momentum")):
        if (name, "forward") in per_step:
            rows.append(ProfileRow(name, kind, None, phase((name, "forward")), None))
    outside = max(step_s - sum(r.seconds for r in rows), 0.0)
    rows.append(ProfileRow("(outside layers)", "-", None, Phase(outside, 0.0, 0.0, outside, 0.0), None))
    return Profile(model=m.name, input_shape=tuple(m.input_shape), batch_size=batch_size,
                   mode="train" if train else "infer", dtype=m.dtype.name, steps=steps, step_seconds=step_s,
                   rows=tuple(rows))
