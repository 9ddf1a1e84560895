"""Batch shards run at once in threads: how :class:`~cnnkit.model.Sequential` trains and predicts.

The compiled kernels (convolution, max pooling) and NumPy's copies, ufuncs and BLAS all release the
GIL, but each runs on one core, and a layer's work is too small to split well inside it. So a
batch is split into shards, one per core, each run through the layers by its own thread with BLAS
single-threaded inside it (threadpoolctl), and the parameter gradients of the shards are summed
(CIFAR-net training: 1.96× on two cores). Measured on two cores: see ``benchmarks/RESULTS.md``.

What stays a property of the *whole* batch:

* **BatchNorm** (training): the shards stop at each BatchNorm layer twice — once to add their
  per-channel sums into the batch mean, once to add their squared deviations from that mean into
  the batch variance (the same two-pass formula as one shard) — and in backward once, to add
  Σdy and Σdy·x̂. The running statistics are updated once, from the whole batch.
* **Dropout**: the mask of the whole batch is drawn from the layer's generator before the shards
  start, exactly the draw a single thread makes, and each shard takes its rows.

Fusion (the same values as layer by layer, for finite gradients): a Conv2d followed by a ReLU
runs as one kernel (bias and ReLU applied to each output block while it is in registers, the
ReLU's mask applied in the conv backward's first pass over dy); a ReLU followed by a MaxPool2d
runs after the pool, on 1/(FH·FW) of the values (max and ReLU commute: max(relu(a), relu(b)) =
relu(max(a, b)), and the gradients agree, ties included). Inference pools without the argmax
bookkeeping. A conv or max-pool that feeds a padded conv writes its output straight into that
conv's zero-bordered input buffer (see :func:`cnnkit.kernels.conv.direct_input_frame`). In
inference a conv (with its ReLU) followed by a 2 × 2, stride-2 max-pool runs as one pass that
writes only the pooled output (:func:`cnnkit.kernels.conv.conv2d_maxpool2_values`), and the layers
from the first vector output on run on blocks of a shard's images at once. :meth:`Sequential.activations`
and the ``*_cached`` pair do not fuse: they give every layer's own output; nor do layers whose
methods were replaced on the instance (``cnnkit profile`` clocks each layer that way, so it times
the unfused chain).

Shard boundaries depend only on the batch size and the thread count, never on timing, so results
are reproducible run to run. With one shard (one thread, or a batch too small to pay) the
arithmetic is that of the layers' own ``forward``/``backward``; with several, gradients differ from
it only by the order of floating-point sums (bounds in ``tests/test_parallel.py``).

Example:
    >>> from cnnkit import parallel
    >>> with parallel.threads(1):   # one shard, the calling thread only
    ...     pass
"""

from __future__ import annotations

import functools
import math
import os
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from .kernels.dropout import dropout_apply, dropout_mask
from .kernels.pool import maxpool2d_values
from .kernels.norm import (batchnorm_backward_dx, batchnorm_backward_sums, batchnorm_normalize, batchnorm_square_sums,
                           batchnorm_sums)
from .layers.activations import ReLU
from .layers.conv import Conv2d
from .layers.dropout import Dropout
from .layers.norm import BatchNorm2d
from .layers.pool import MaxPool2d
from .workers import advance as _advance
from .workers import drive as _drive
from .workers import runner as _runner

MIN_SHARD = 4  # images per shard at least
# Multiply-accumulates per shard at least. Very small shards are bound by the Python work between
# kernel calls, which holds the GIL, so two threads then run no faster than one. With the NumPy
# im2col kernels LeNet-5 training at batch 64 ran at 0.92x in two shards of 32 (40 M MACs each);
# since convolution and pooling run in the compiled helper (GIL released) the same two shards run
# it 1.30x faster than one shard (20,400 against 15,700 images/s, quiet 2-core machine).
MIN_SHARD_MACS = 10_000_000
MAX_THREADS = 8
# Inference: the largest layer output of one shard's chunk of images at most (if one image fits).
# CIFAR-net (128 KiB per image) then runs chunks of 32. Measured when convs still copied their
# input into a padded buffer: 4,160 images/s against 3,850 with chunks of 64 (8 MiB) and 3,380 with
# chunks of 8 (1 MiB); since outputs are written into the next conv's buffer (no copy), 4, 8 and
# 16 MiB run within 4 % of each other, and 4 MiB holds the least memory.
INFER_BYTES = 4 << 20

_threads: int | None = None  # None: the CPUs this process may run on (at most MAX_THREADS)


# ----------------------------------------------------------------------------- settings
def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def get_threads() -> int:
    """Threads (shards) a batch is split across at most."""
    return _threads if _threads is not None else max(1, min(available_cpus(), MAX_THREADS))


def set_threads(n: int | None) -> None:
    """Use at most ``n`` threads (1: everything on the calling thread); None: one per CPU."""
    global _threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_threads: n must be a positive integer or None. Received: n={n!r}")
    _threads = n


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """``with threads(1): ...`` runs the block with at most ``n`` threads, then restores."""
    previous = _threads
    set_threads(n)
    try:
        yield
    finally:
        set_threads(previous)


def shard_bounds(batch: int, count: int | None = None, macs_per_image: float = 0.0) -> list[tuple[int, int]]:
    """``[(lo, hi), …]``: the rows of each shard, sizes differing by at most one. Without ``count``:
    as many shards as threads, each of at least MIN_SHARD images and MIN_SHARD_MACS of work."""
    if count is None:
        by_work = batch * macs_per_image // MIN_SHARD_MACS if MIN_SHARD_MACS else batch
        count = int(max(1, min(get_threads(), batch // MIN_SHARD, by_work)))
    return [(batch * i // count, batch * (i + 1) // count) for i in range(count)]


def _per_image(model) -> tuple[float, int]:
    """``(forward MACs, bytes of the largest layer output)`` per image, cached per layer list."""
    cache = model.__dict__.setdefault("_per_image_cache", {})
    key = tuple(id(layer) for layer in model.layers)
    if key not in cache:
        cache.clear()
        chain = model.shapes()
        macs = float(sum(layer.macs(shape) for layer, shape, _ in chain))
        largest = max([math.prod(out) for _, _, out in chain] + [math.prod(model.input_shape)])
        cache[key] = (macs, largest * model.dtype.itemsize)
    return cache[key]


def _macs_per_image(model, training: bool) -> float:
    """Work per image: forward MACs, times 3 for a training step (forward, dW, dX)."""
    return _per_image(model)[0] * (3 if training else 1)


# ----------------------------------------------------------------------------- the plan
def plan(layers) -> list[tuple[str, int, int]]:
    """How the layers run: ``(kind, i, j)`` items, in order, where kind is ``"layer"`` (layer i;
    j = i), ``"conv+relu"`` (Conv2d i with the ReLU j = i + 1 fused) or ``"pool+relu"`` (MaxPool2d j
    first, then the ReLU i = j - 1)."""
    ops, i = [], 0
    while i < len(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if _overridden(layers[i]) or _overridden(nxt):
            ops.append(("layer", i, i))
            i += 1
        elif isinstance(layers[i], Conv2d) and type(nxt) is ReLU:
            ops.append(("conv+relu", i, i + 1))
            i += 2
        elif type(layers[i]) is ReLU and type(nxt) is MaxPool2d:
            ops.append(("pool+relu", i, i + 1))
            i += 2
        else:
            ops.append(("layer", i, i))
            i += 1
    return ops


def _overridden(layer) -> bool:
    """A layer whose forward_cached/backward_cached was replaced on the instance (a profiler's
    clock, a test's fault) runs as itself, never fused, so that the replacement sees every call."""
    return layer is not None and ("forward_cached" in layer.__dict__ or "backward_cached" in layer.__dict__)


def _call_forward(layer, x, workspace, **kwargs):
    return layer.forward_cached(x, workspace=workspace, **kwargs) if workspace is not None else layer.forward_cached(
        x, **kwargs)


def _call_backward(layer, dy, cache, need_dx, workspace, **kwargs):
    if workspace is not None:
        return layer.backward_cached(dy, cache, need_dx, workspace=workspace, **kwargs)
    return layer.backward_cached(dy, cache, need_dx, **kwargs)


def _next_frame(layers, ops, t: int, workspaces, batch: int):
    """The input buffer of the conv that op ``t``'s output feeds (see
    :meth:`~cnnkit.layers.conv.Conv2d.input_frame`), for op ``t`` to write its output into; None
    when the next op is not such a conv."""
    if t + 1 >= len(ops):
        return None
    kind, i, _ = ops[t + 1]
    layer = layers[i]
    if kind not in ("layer", "conv+relu") or not isinstance(layer, Conv2d) or _overridden(layer):
        return None
    return layer.input_frame(workspaces[i], batch)


def _pools_next(layers, ops, t: int) -> bool:
    """Op ``t`` is a Conv2d (with or without its fused ReLU) and the next a 2 × 2, stride-2 unpadded
    MaxPool2d, neither replaced on the instance."""
    if t + 1 >= len(ops) or ops[t][0] not in ("layer", "conv+relu") or ops[t + 1][0] != "layer":
        return False
    conv, pool = layers[ops[t][1]], layers[ops[t + 1][1]]
    return (isinstance(conv, Conv2d) and isinstance(pool, MaxPool2d) and not _overridden(conv)
            and not _overridden(pool) and pool.filter_hw == (2, 2) and pool.stride_hw == (2, 2)
            and pool.pads == ((0, 0), (0, 0)))


def _run_forward(model, ops, x, workspaces, masks: dict, batch: int, keep: bool):
    """Generator: the layers on one shard's ``x``; returns ``(y, caches)`` (caches None unless
    ``keep``); yields at the barriers of training-mode BatchNorm layers. A conv or max-pool (with or
    without a ReLU after it) whose output feeds a padded conv writes it straight into that conv's
    zero-bordered input buffer."""
    layers = model.layers
    caches: list[Any] = [None] * len(layers)
    pooled = -1  # the op already run by a conv's pooled forward
    for t, (kind, i, j) in enumerate(ops):
        layer = layers[i]
        if t == pooled:
            continue
        if not keep and _pools_next(layers, ops, t):  # inference: conv (+ ReLU) and a 2×2 max-pool at once
            y = layer.forward_pooled(x, workspaces[i], relu=kind == "conv+relu",
                                     frame=_next_frame(layers, ops, t + 1, workspaces, len(x)))
            if y is not None:
                x, pooled = y, t + 1
                continue
        if kind == "conv+relu":
            frame = _next_frame(layers, ops, t, workspaces, len(x))
            x, caches[i] = _call_forward(layer, x, workspaces[i], relu=True, frame=frame)
        elif kind == "pool+relu":
            pool, frame = layers[j], _next_frame(layers, ops, t, workspaces, len(x))
            if keep:
                x, caches[j] = pool.forward_cached(x, frame=frame)
            else:
                x = maxpool2d_values(x, pool.filter_hw, pool.stride_hw, pool.pads, frame=frame)
            if frame is not None and x.base is frame[0]:  # the ReLU in place, in the frame
                x = np.maximum(x, x.dtype.type(0), out=x)
                caches[i] = x  # the ReLU's cache is its output
            else:
                x, caches[i] = layer.forward_cached(x)
        elif i in masks:
            x, caches[i] = dropout_apply(x, masks[i]), (masks[i],)
        elif isinstance(layer, BatchNorm2d) and layer.training:
            x, caches[i] = yield from _batchnorm_forward(layer, x, batch)
        elif isinstance(layer, MaxPool2d) and not _overridden(layer):
            frame = _next_frame(layers, ops, t, workspaces, len(x))
            if keep:
                x, caches[i] = layer.forward_cached(x, frame=frame)
            else:
                x = maxpool2d_values(x, layer.filter_hw, layer.stride_hw, layer.pads, frame=frame)
        elif isinstance(layer, Conv2d) and not _overridden(layer):
            x, caches[i] = _call_forward(layer, x, workspaces[i], frame=_next_frame(layers, ops, t, workspaces, len(x)))
        else:
            x, caches[i] = _call_forward(layer, x, workspaces[i])
    return x, caches


# ----------------------------------------------------------------------------- training steps
class Step:
    """What :func:`forward` keeps for :func:`backward`: shard bounds and each shard's caches."""

    __slots__ = ("bounds", "caches", "output_shape")

    def __init__(self, bounds, caches, output_shape) -> None:
        self.bounds, self.caches, self.output_shape = bounds, caches, output_shape


def _workspaces(model, shard: int, kind: str) -> list[dict | None]:
    """Per-layer scratch dicts of one shard (shard 0 of training uses the layers' own). The layers
    of one shard also share one ``"shared"`` dict for the buffers that matter only within a call,
    so scratch memory is that of the largest layer, not the sum over layers."""
    store = model.__dict__.setdefault("_shard_workspaces", {})
    key = (kind, shard)
    if key not in store:
        own = kind == "train" and shard == 0
        store[key] = ([None if layer._workspace is None else {} for layer in model.layers] if not own else None, {})
    per_layer, shared = store[key]
    if per_layer is None:
        per_layer = [layer._workspace for layer in model.layers]
    for ws in per_layer:
        if ws is not None and ws.get("shared") is not shared:
            ws["shared"] = shared
    return per_layer


def forward(model, x: np.ndarray) -> tuple[np.ndarray, Step]:
    """The model's output for ``x`` (prepared: built, right dtype) and the :class:`Step` for
    :func:`backward`, shard by shard."""
    bounds = shard_bounds(len(x), macs_per_image=_macs_per_image(model, True))
    masks = _dropout_masks(model, len(x))
    gens = [_forward_shard(model, s, x[lo:hi], {i: m[lo:hi] for i, m in masks.items()}, len(x))
            for s, (lo, hi) in enumerate(bounds)]
    with _runner(len(bounds)) as run:
        results = _drive(gens, run)
    ys = [y for y, _ in results]
    y = ys[0] if len(ys) == 1 else np.concatenate(ys)
    return y, Step(bounds, [caches for _, caches in results], y.shape)


def backward(model, step: Step, dy: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
    """Backpropagate through ``step``; writes every parameter's ``.grad`` (the sum over shards)
    and returns dL/dx (None when ``need_input_grad`` is False)."""
    gens = [_backward_shard(model, s, dy[lo:hi], step.caches[s], need_input_grad)
            for s, (lo, hi) in enumerate(step.bounds)]
    with _runner(len(step.bounds)) as run:
        results = _drive(gens, run)
    if not need_input_grad:
        return None
    dxs = [dx for dx, _ in results]
    return dxs[0] if len(dxs) == 1 else np.concatenate(dxs)


def _dropout_masks(model, batch: int) -> dict[int, np.ndarray]:
    """The whole batch's mask of every active Dropout layer, drawn in layer order."""
    active = [i for i, layer in enumerate(model.layers) if isinstance(layer, Dropout) and layer.training
              and layer.p > 0]
    if not active:
        return {}
    shapes = model.shapes()  # the output shape of each layer, without running data
    return {i: dropout_mask((batch, *shapes[i][2]), model.layers[i].p, model.layers[i].rng, model.dtype)
            for i in active}


def _forward_shard(model, s: int, x: np.ndarray, masks: dict[int, np.ndarray], batch: int):
    return (yield from _run_forward(model, plan(model.layers), x, _workspaces(model, s, "train"), masks, batch,
                                    keep=True))


def _backward_shard(model, s: int, dy: np.ndarray, caches: list, need_input_grad: bool):
    workspaces = _workspaces(model, s, "train")
    layers = model.layers
    grads: list[dict[str, np.ndarray]] = [{} for _ in layers]
    owned = False  # dy is the caller's until the first layer's backward has made a new one
    for kind, i, j in reversed(plan(layers)):
        need_dx = need_input_grad or i > 0
        if kind == "pool+relu":
            dy, _ = layers[i].backward_cached(dy, caches[i], True)
            dy, _ = layers[j].backward_cached(dy, caches[j], need_dx)
        elif isinstance(layers[i], BatchNorm2d) and caches[i][0] == "train":
            dy, grads[i] = yield from _batchnorm_backward(dy, caches[i], need_dx)
        elif isinstance(layers[i], Conv2d) and not _overridden(layers[i]):  # with its fused ReLU, if any
            dy, grads[i] = _call_backward(layers[i], dy, caches[i], need_dx, workspaces[i], overwrite_dy=owned)
        else:
            dy, grads[i] = _call_backward(layers[i], dy, caches[i], need_dx, workspaces[i])
        owned = True
    every_shard = yield (_gather, grads)
    _write_gradients(model, every_shard, s)
    return dy, grads


def _gather(parts: list) -> list:
    return parts


def _write_gradients(model, grads: list[list[dict]], s: int) -> None:
    """``.grad`` = the sum over shards of each parameter's gradient; shard ``s`` of S writes the
    elements [n·s/S, n·(s+1)/S) of each, so the shards share the work (a serial tail otherwise:
    CIFAR-net's 2.2 M gradients)."""
    count = len(grads)
    for i, layer in enumerate(model.layers):
        for key, p in layer.params.items():
            n = p.grad.size
            lo, hi = n * s // count, n * (s + 1) // count
            if not p.grad.flags.c_contiguous:  # not ours to flatten: shard 0 writes it whole
                if s == 0:
                    p.grad[...] = functools.reduce(np.add, [g[i][key] for g in grads])
                continue
            out = p.grad.reshape(-1)[lo:hi]
            parts = [g[i][key].reshape(-1)[lo:hi] for g in grads]
            if count == 1:
                out[...] = parts[0]
                continue
            np.add(parts[0], parts[1], out=out)
            for part in parts[2:]:
                out += part


def _add(parts: list) -> Any:
    """Sum of the shards' parts, in shard order (tuples element by element)."""
    if isinstance(parts[0], tuple):
        return tuple(_add([p[k] for p in parts]) for k in range(len(parts[0])))
    return functools.reduce(lambda a, b: a + b, parts)


def _batchnorm_forward(layer: BatchNorm2d, x: np.ndarray, batch: int):
    """BatchNorm over the whole batch from inside one shard (two barriers)."""
    shape = (batch, *x.shape[1:])
    total, n = yield (functools.partial(_batchnorm_sums, layer, shape), batchnorm_sums(x))
    mean = total / x.dtype.type(n)
    var = yield (functools.partial(_batchnorm_variance, layer, mean, n), batchnorm_square_sums(x, mean))
    return batchnorm_normalize(x, layer.params["gamma"].value, layer.params["beta"].value, mean, var, layer.eps)


def _batchnorm_sums(layer: BatchNorm2d, shape, parts):
    total, n = _add(parts)
    layer.check_values(n, shape)
    return total, n


def _batchnorm_variance(layer: BatchNorm2d, mean, n: int, parts):
    """The biased batch variance; the running statistics are updated here, once per batch."""
    var = _add(parts) / mean.dtype.type(n)
    layer.update_running(mean, var, n)
    return var


def _batchnorm_backward(dy: np.ndarray, cache, need_dx: bool):
    dgamma, dbeta, n = batchnorm_backward_sums(dy, cache)
    total_dgamma, total_dbeta, total_n = yield (_add, (dgamma, dbeta, n))
    dx = batchnorm_backward_dx(dy, cache, total_dgamma, total_dbeta, total_n) if need_dx else None
    return dx, {"gamma": dgamma, "beta": dbeta}


# ----------------------------------------------------------------------------- inference
def infer(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Outputs for ``x`` in the model's current mode, at most ``batch_size`` images in flight:
    each shard runs its own contiguous part of ``x`` in batches, with no barrier in between."""
    out_shape = model.output_shape()
    y = np.empty((len(x), *out_shape), model.dtype)
    if len(x) == 0:
        return y
    bounds = shard_bounds(min(len(x), batch_size), macs_per_image=_macs_per_image(model, False))
    bounds = shard_bounds(len(x), len(bounds))
    # at most batch_size images in flight, and no layer output over INFER_BYTES per shard
    per_shard = max(1, min(batch_size // len(bounds), INFER_BYTES // _per_image(model)[1]))

    ops = plan(model.layers)
    # The layers from the first one whose output is a vector (Flatten, Linear) on run over blocks of up
    # to batch_size / shards images at once, after the layers before them have run on the block's
    # chunks: their matrix multiplies run at 157 GF/s with 128 rows against 99 with the 32 of one
    # chunk (CIFAR-net's fc1, one core).
    chain = model.shapes()
    split = next((t + 1 for t, (_, i, j) in enumerate(ops) if len(chain[max(i, j)][2]) == 1), len(ops))
    head, tail = ops[:split], ops[split:]
    per_tail = max(1, batch_size // len(bounds))

    def forward_part(part, xs, workspaces):
        done, (a, _) = _advance(_run_forward(model, part, xs, workspaces, {}, 0, keep=False), None)
        if not done:  # only training-mode BatchNorm waits for the other shards
            raise RuntimeError("parallel.infer needs the model in evaluation mode")
        return a

    def shard(s: int, lo: int, hi: int) -> None:
        workspaces = _workspaces(model, s, "infer")
        if not tail:
            for start in range(lo, hi, per_shard):
                a = forward_part(head, x[start:min(hi, start + per_shard)], workspaces)
                y[start:start + len(a)] = a
            return
        mid = np.empty((min(per_tail, hi - lo), *chain[max(head[-1][1:])][2]), model.dtype)
        for b0 in range(lo, hi, per_tail):  # blocks of up to per_tail images: head in chunks, then tail
            b1 = min(hi, b0 + per_tail)
            for start in range(b0, b1, per_shard):
                a = forward_part(head, x[start:min(b1, start + per_shard)], workspaces)
                mid[start - b0:start - b0 + len(a)] = a
            y[b0:b1] = forward_part(tail, mid[:b1 - b0], workspaces)

    with _runner(len(bounds)) as run:
        run([functools.partial(shard, s, lo, hi) for s, (lo, hi) in enumerate(bounds)])
    return y
