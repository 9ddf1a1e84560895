"""Observing cnnkit's NumPy calls for :mod:`cnnkit.profile`: which time is matrix multiplies, which
element-wise work.

Inside :func:`observing` (and only there):

* the name ``np`` in the modules of ``cnnkit.kernels``, ``cnnkit.layers``, ``cnnkit.model`` and
  ``cnnkit.optim`` points at a proxy of NumPy: each ufunc call through it is clocked, and the
  arrays its functions return are *marked* (viewed as :class:`_Traced`);
* marked arrays (and the parameters, marked on entry) clock the ufunc calls made on them through
  ``__array_ufunc__`` — so ``a @ b`` is seen as well as ``np.matmul(a, b)`` — and mark their
  results.

A ``matmul`` ufunc call, or ``np.dot``/``einsum``/``tensordot``/``inner``/``vdot``, counts as a
matrix multiply, with 2·m·k·n FLOPs from the operand shapes (``matmul`` and ``dot`` only); so does
a call of the compiled direct convolution (:mod:`cnnkit.kernels._native`, as
:mod:`cnnkit.kernels.conv` calls it), with 2·C·FH·FW·K·H'·W'·N FLOPs from its geometry arguments;
any other ufunc call (reductions included), and the compiled helper's other calls (max pooling,
the convolution backward's mask-and-place pass), as element-wise. Time is charged to the *bucket* (layer,
phase) the calling thread entered with :meth:`Recorder.enter` (a worker thread that entered none
is charged to the last bucket entered anywhere); a call made inside a clocked call is not counted
twice. Everything is put back on exit, and a marked array left over behaves as a plain one.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import threading
import time
import types
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np

GEMM, ELEMENTWISE = 0, 1
_GEMM_FUNCTIONS = frozenset({"dot", "einsum", "tensordot", "inner", "vdot"})
_FLOPS_KNOWN = frozenset({"matmul", "dot"})
_UFUNC_METHODS = frozenset({"reduce", "accumulate", "reduceat", "outer", "at"})


class Recorder:
    """Seconds of matrix multiplies and element-wise calls, and GEMM FLOPs, per bucket.

    ``seconds[bucket] == [gemm seconds, element-wise seconds, gemm FLOPs]``.
    """

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.fallback: tuple[str, str] | None = None
        self.seconds: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])

    def enter(self, bucket: tuple[str, str]):
        """Charge this thread's calls to ``bucket`` until :meth:`leave`; returns what to restore."""
        previous = getattr(self.local, "bucket", None)
        self.local.bucket = self.fallback = bucket
        return previous

    def leave(self, previous) -> None:
        self.local.bucket = previous

    def call(self, kind: int, flops: int, fn, *args, **kwargs):
        if getattr(self.local, "busy", False):  # a call inside a clocked call: counted once
            return fn(*args, **kwargs)
        self.local.busy = True
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            self.local.busy = False
            key = getattr(self.local, "bucket", None) or self.fallback
            if key is not None:
                with self.lock:
                    acc = self.seconds[key]
                    acc[kind] += dt
                    if kind == GEMM:
                        acc[2] += flops


_RECORDER: Recorder | None = None


def _plain(a):
    return a.view(np.ndarray) if isinstance(a, _Traced) else a


def traced(result):
    """``result`` with its plain ndarrays marked (tuples too); anything else unchanged."""
    if type(result) is np.ndarray:
        return result.view(_Traced)
    if isinstance(result, tuple):
        return tuple(traced(r) for r in result)
    return result


def gemm_flops(a, b) -> int:
    """2·m·k·n (times the stack of matrices) for ``a @ b``; 0 when a shape is a scalar."""
    sa, sb = np.shape(a), np.shape(b)
    if not sa or not sb:
        return 0
    m = sa[-2] if len(sa) > 1 else 1
    n = sb[-1] if len(sb) > 1 else 1
    batch = max(math.prod(sa[:-2]), math.prod(sb[:-2]))
    return 2 * m * sa[-1] * n * batch


def _dispatch(ufunc: np.ufunc, method: str, inputs, kwargs):
    """Run ``ufunc.method`` on plain arrays, clocked; results come back marked."""
    args = tuple(_plain(a) for a in inputs)
    out = kwargs.get("out")
    if out is not None:
        kwargs["out"] = tuple(_plain(o) for o in out) if isinstance(out, tuple) else _plain(out)
    fn = getattr(ufunc, method)
    rec = _RECORDER
    if rec is None:
        result = fn(*args, **kwargs)
    elif ufunc is np.matmul and method == "__call__":
        result = rec.call(GEMM, gemm_flops(args[0], args[1]), fn, *args, **kwargs)
    else:
        result = rec.call(ELEMENTWISE, 0, fn, *args, **kwargs)
    if out is not None:  # give back the caller's own output objects
        return out if not isinstance(out, tuple) else (out[0] if len(out) == 1 else out)
    return traced(result)


class _Traced(np.ndarray):
    """An ndarray whose ufunc calls (``a @ b`` included) are clocked while observing."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _dispatch(ufunc, method, inputs, kwargs)


class _TracedUfunc:
    """A ufunc as the proxy hands it out: calls and methods (reduce, …) are clocked."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc = ufunc

    def __call__(self, *args, **kwargs):
        return _dispatch(self._ufunc, "__call__", args, kwargs)

    def __getattr__(self, name: str):
        if name in _UFUNC_METHODS:
            return lambda *args, **kwargs: _dispatch(self._ufunc, name, args, kwargs)
        return getattr(self._ufunc, name)


def _traced_function(name: str, fn):
    """A NumPy function whose array results come back marked; matrix products are clocked."""
    def call(*args, **kwargs):
        rec = _RECORDER
        if name in _GEMM_FUNCTIONS and rec is not None:
            flops = gemm_flops(args[0], args[1]) if name in _FLOPS_KNOWN and len(args) > 1 else 0
            return traced(rec.call(GEMM, flops, fn, *(_plain(a) for a in args), **kwargs))
        return traced(fn(*args, **kwargs))
    return call


class _NumpyProxy(types.ModuleType):
    """``numpy`` as the observed modules see it: the same names, observed."""

    def __init__(self) -> None:
        super().__init__("numpy")

    def __getattr__(self, name: str):
        value = getattr(np, name)
        if isinstance(value, np.ufunc):
            value = _TracedUfunc(value)
        elif callable(value) and not isinstance(value, type):
            value = _traced_function(name, value)
        setattr(self, name, value)  # found directly next time
        return value


class _NativeProxy(types.ModuleType):
    """The compiled helper (:mod:`cnnkit.kernels._native`) as the kernel modules see it: the direct
    convolutions are clocked as matrix multiplies, with 2·C·FH·FW·K·H'·W'·N FLOPs from their
    geometry ((C, Hp, Wp, N), (FH, FW, K), (H', W')); its other calls (the backward's mask-and-place
    pass, max pooling) as element-wise work."""

    _CONVOLUTIONS = {"conv_forward": 4, "conv_forward_pool2": 4, "conv_weight_grad": 3}  # geometry arguments

    def __init__(self, module: types.ModuleType) -> None:
        super().__init__(module.__name__)
        self._module = module

    def __getattr__(self, name: str):
        fn = getattr(self._module, name)
        if not callable(fn):
            return fn
        start = self._CONVOLUTIONS.get(name)

        def call(*args):
            rec = _RECORDER
            plain = tuple(_plain(a) for a in args)
            if rec is None:
                return fn(*plain)
            if start is not None:
                (c, _, _, n), (fh, fw, k), (ho, wo) = args[start:start + 3]
                return rec.call(GEMM, 2 * c * fh * fw * k * ho * wo * n, fn, *plain)
            return rec.call(ELEMENTWISE, 0, fn, *plain)
        return call


def numpy_modules() -> list[types.ModuleType]:
    """The cnnkit modules whose ``np`` :func:`observing` replaces."""
    from . import kernels, layers

    mods = [importlib.import_module(f"{pkg.__name__}.{info.name}")
            for pkg in (kernels, layers) for info in pkgutil.iter_modules(pkg.__path__)]
    mods += [importlib.import_module(f"{__package__}.{name}") for name in ("model", "optim")]
    return [m for m in mods if getattr(m, "np", None) is np]


@contextmanager
def observing(params: Sequence = ()) -> Iterator[Recorder]:
    """Observe cnnkit's NumPy calls (see the module docstring); ``params``' values are marked."""
    global _RECORDER
    if _RECORDER is not None:
        raise RuntimeError("profile: NumPy is already being observed (one profile at a time)")
    recorder = Recorder()
    modules = numpy_modules()
    proxy = _NumpyProxy()
    originals = [p.value for p in params]
    from .kernels import _native, conv, pool

    native_users = (conv, pool)
    try:
        _RECORDER = recorder
        for mod in native_users:
            mod._native = _NativeProxy(_native)
        for mod in modules:
            mod.np = proxy
        for p in params:
            p.value = p.value.view(_Traced)
        yield recorder
    finally:
        for mod in native_users:
            mod._native = _native
        for mod in modules:
            mod.np = np
        for p, v in zip(params, originals):
            p.value = v
        _RECORDER = None
