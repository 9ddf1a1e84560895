"""Optimisers: SGD (momentum, Nesterov, weight decay), Adam, AdamW and RMSprop.

Each update is the one ``torch.optim`` computes with the same arguments and defaults (checked
step by step in ``tests/test_optim.py``). An optimiser holds a list of
:class:`~cnnkit.layers.Parameter` objects and, on :meth:`Optimizer.step`, updates each
``Parameter.value`` *in place* from its ``.grad``: the dtype never changes, and every step reuses
buffers allocated once per parameter (no large temporaries per step).

The learning-rate schedules (StepLR, CosineLR, WarmupLR, ReduceOnPlateau) live in
:mod:`cnnkit.schedules` and are re-exported here.

Example:
    >>> import numpy as np
    >>> from cnnkit.layers import Parameter
    >>> p = Parameter("w", np.array([1.0, -2.0], np.float32))
    >>> p.grad[...] = [0.5, 0.5]
    >>> opt = SGD([p], lr=0.1, momentum=0.9)
    >>> opt.step()
    >>> p.value
    array([ 0.95, -2.05], dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterable

import numpy as np

from .errors import SpecError, UserInputError
from .layers.base import Parameter


def _check_number(value: Any, name: str, where: str, *, low: float = 0.0, high: float | None = None,
                  low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a float within [low, high) (bounds configurable), else UserInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise UserInputError(f"{where}: {name} must be a number. Received: {name}={value!r}")
    v = float(value)
    bad = (not math.isfinite(v) or (v <= low if low_open else v < low)
           or (high is not None and (v >= high if high_open else v > high)))
    if bad:
        lo = "(" if low_open else "["
        hi = "inf)" if high is None else (f"{high})" if high_open else f"{high}]")
        raise UserInputError(f"{where}: {name} must be in {lo}{low}, {hi}. Received: {name}={value!r}")
    return v


class Optimizer:
    """Base class: a parameter list, a learning rate, and per-parameter buffers.

    Subclasses set ``name``, ``hyper`` (hyper-parameter names saved in :meth:`state_dict`),
    ``buffer_names`` (per-parameter state, created lazily as zeros or copies) and implement
    :meth:`_update`.
    """

    name: ClassVar[str] = "optimizer"
    hyper: ClassVar[tuple[str, ...]] = ()
    buffer_names: ClassVar[tuple[str, ...]] = ()
    scratch_count: ClassVar[int] = 1

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise UserInputError(f"{type(self).__name__}: no parameters to optimise")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise UserInputError(f"{type(self).__name__}: item {i} is not a Parameter. "
                                     f"Received: {type(p).__name__}")
        self.lr = lr
        self.steps = 0
        # state[i][buffer name] -> array like params[i].value; filled on the first step
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        self._scratch: list[list[np.ndarray]] | None = None

    # ----------------------------------------------------------------- learning rate
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_number(value, "lr", type(self).__name__)

    # ----------------------------------------------------------------- stepping
    def zero_grad(self) -> None:
        """Set every gradient to zero (layers' backward overwrites them anyway)."""
        for p in self.params:
            p.grad[...] = 0

    def step(self) -> None:
        """Update every parameter in place from its ``.grad``."""
        if self._scratch is None:
            self._scratch = [[np.empty_like(p.value) for _ in range(self.scratch_count)] for p in self.params]
        self.steps += 1
        for i, p in enumerate(self.params):
            self._update(p.value, p.grad, self.state[i], self._scratch[i])

    def _update(self, w: np.ndarray, dw: np.ndarray, state: dict[str, np.ndarray],
                scratch: list[np.ndarray]) -> None:
        raise NotImplementedError

    def _decayed(self, w: np.ndarray, dw: np.ndarray, weight_decay: float, out: np.ndarray) -> np.ndarray:
        """``dw + weight_decay·w`` (L2 penalty folded into the gradient), in ``out``; ``dw`` itself
        when there is no decay (it is then only read, never written)."""
        if weight_decay == 0:
            return dw
        np.multiply(w, weight_decay, out=out)
        out += dw
        return out

    # ----------------------------------------------------------------- state
    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, **{k: getattr(self, k) for k in self.hyper}}

    def state_dict(self) -> dict[str, Any]:
        """``{"type", "lr", <hyper-parameters>, "steps", "buffers": {"<i>.<name>": array}}``.

        Everything but ``buffers`` is JSON-able; ``buffers`` maps ``"<parameter index>.<buffer>"``
        to arrays (copies), ready for an ``.npz`` archive.
        """
        hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.hyperparameters().items()}
        buffers = {f"{i}.{k}": v.copy() for i, s in enumerate(self.state) for k, v in s.items()}
        return {"type": self.name, **hyper, "steps": self.steps, "buffers": buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next :meth:`step` continues exactly as the saved run."""
        where = type(self).__name__
        if state.get("type") != self.name:
            raise UserInputError(f"{where}: state is of optimiser {state.get('type')!r}, not {self.name!r}")
        buffers = state.get("buffers", {})
        new: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        for key, value in buffers.items():
            index, _, buf = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.params) or buf not in self.buffer_names:
                raise UserInputError(f"{where}: unexpected optimiser buffer {key!r} for "
                                     f"{len(self.params)} parameters")
            p = self.params[int(index)]
            value = np.asarray(value)
            if value.shape != p.value.shape:
                raise UserInputError(f"{where}: buffer {key!r} has shape {value.shape}, "
                                     f"parameter {p.name} has {p.value.shape}")
            new[int(index)][buf] = value.astype(p.value.dtype, copy=True)
        for k in self.hyper:
            if k in state:
                v = state[k]
                setattr(self, k, tuple(v) if isinstance(v, list) else v)
        self.lr = state.get("lr", self.lr)
        self.steps = int(state.get("steps", 0))
        self.state = new

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _native():
    from .kernels import _native as native  # the compiled helper (see cnnkit.kernels._native)

    return native


def _one_pass(w: np.ndarray, *others: np.ndarray) -> bool:
    """The compiled one-pass step applies: float32/float64 arrays of one dtype and shape, C-contiguous
    (parameters, gradients and state always are; a user's odd array takes the NumPy steps)."""
    return (w.dtype in (np.float32, np.float64) and w.flags.c_contiguous and w.flags.writeable
            and all(a.dtype == w.dtype and a.shape == w.shape and a.flags.c_contiguous for a in others))


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    As ``torch.optim.SGD``:  g = dw + λ·w;  v = μ·v + (1 - τ)·g (v = g on the first step);
    g = g + μ·v (Nesterov) or g = v;  w = w - lr·g.

    Args:
        params: the parameters to update.
        lr: learning rate.
        momentum: μ, default 0 (plain SGD).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        weight_decay: λ, L2 penalty added to the gradient. Default 0.
        dampening: τ, default 0.
    """

    name = "sgd"
    hyper = ("momentum", "nesterov", "weight_decay", "dampening")
    buffer_names = ("momentum_buffer",)
    scratch_count = 2

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, dampening: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum = _check_number(momentum, "momentum", "SGD")
        self.weight_decay = _check_number(weight_decay, "weight_decay", "SGD")
        self.dampening = _check_number(dampening, "dampening", "SGD", high=1.0, high_open=False)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise UserInputError(f"SGD: nesterov needs momentum > 0 and dampening = 0. "
                                 f"Received: momentum={momentum}, dampening={dampening}")

    def _update(self, w, dw, state, scratch):
        buf = state.get("momentum_buffer")
        if self.momentum != 0 and _one_pass(w, dw) and (buf is None or _one_pass(w, buf)):
            first = buf is None
            if first:  # torch: the buffer starts as the first step's gradient
                buf = state["momentum_buffer"] = np.empty_like(w)
            _native().sgd_momentum(w, buf, dw, self.lr, self.momentum, self.dampening, self.weight_decay,
                                   self.nesterov, first)
            return
        s, t = scratch
        g = self._decayed(w, dw, self.weight_decay, s)
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()  # once per parameter
            else:
                buf *= self.momentum
                if self.dampening == 0:
                    buf += g
                else:
                    np.multiply(g, 1 - self.dampening, out=t)
                    buf += t
            if self.nesterov:
                np.multiply(buf, self.momentum, out=t)
                t += g
                g = t
            else:
                g = buf
        np.multiply(g, self.lr, out=t)
        w -= t


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), as ``torch.optim.Adam``.

    g = dw + λ·w;  m = β1·m + (1 - β1)·g;  v = β2·v + (1 - β2)·g²;
    w = w - lr/(1 - β1^t) · m / (sqrt(v)/sqrt(1 - β2^t) + ε)

    Args:
        params: the parameters to update.
        lr: learning rate, default 1e-3.
        betas: (β1, β2), default (0.9, 0.999).
        eps: ε, default 1e-8.
        weight_decay: λ, an L2 penalty added to the gradient (see :class:`AdamW` for decoupled
            decay). Default 0.
        amsgrad: use the running maximum of v (Reddi et al. 2018). Default False.
    """

    name = "adam"
    hyper = ("betas", "eps", "weight_decay", "amsgrad")
    buffer_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    scratch_count = 2
    decoupled = False

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(params, lr)
        where = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise UserInputError(f"{where}: betas must be a pair (beta1, beta2). Received: betas={betas!r}")
        self.betas = (_check_number(betas[0], "beta1", where, high=1.0),
                      _check_number(betas[1], "beta2", where, high=1.0))
        self.eps = _check_number(eps, "eps", where)
        self.weight_decay = _check_number(weight_decay, "weight_decay", where)
        self.amsgrad = bool(amsgrad)

    def _update(self, w, dw, state, scratch):
        s, t = scratch
        beta1, beta2 = self.betas
        if not state:
            state["exp_avg"] = np.zeros_like(w)
            state["exp_avg_sq"] = np.zeros_like(w)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(w)
        bias1 = 1 - beta1 ** self.steps
        bias2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        if not self.amsgrad and _one_pass(w, dw, state["exp_avg"], state["exp_avg_sq"]):
            _native().adam(w, state["exp_avg"], state["exp_avg_sq"], dw, self.lr, beta1, beta2, self.eps,
                           self.weight_decay, self.decoupled, bias1, bias2_sqrt)
            return
        if self.decoupled:
            w *= 1 - self.lr * self.weight_decay  # AdamW: decay the weights, not the gradient
            g = dw
        else:
            g = self._decayed(w, dw, self.weight_decay, s)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        np.multiply(g, 1 - beta1, out=t)
        m += t
        v *= beta2
        np.multiply(g, g, out=t)
        t *= 1 - beta2
        v += t
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        np.sqrt(v, out=t)
        t /= bias2_sqrt
        t += self.eps
        np.divide(m, t, out=t)
        t *= self.lr / bias1
        w -= t


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``:
    w = w·(1 - lr·λ) before the Adam step. Default weight_decay 0.01, as torch."""

    name = "adamw"
    decoupled = True

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e), as ``torch.optim.RMSprop``.

    g = dw + λ·w;  s = α·s + (1 - α)·g²;  d = sqrt(s - ḡ²) (centered, ḡ = α·ḡ + (1 - α)·g)
    or sqrt(s);  then w = w - lr·g/(d + ε), or with momentum b = μ·b + g/(d + ε), w = w - lr·b.

    Args:
        params: the parameters to update.
        lr: learning rate, default 0.01 (torch's default).
        alpha: α, smoothing constant, default 0.99.
        eps: ε, default 1e-8.
        weight_decay: λ (L2 added to the gradient), default 0.
        momentum: μ, default 0.
        centered: normalise by the estimated variance instead of the second moment. Default False.
    """

    name = "rmsprop"
    hyper = ("alpha", "eps", "weight_decay", "momentum", "centered")
    buffer_names = ("square_avg", "grad_avg", "momentum_buffer")
    scratch_count = 2

    def __init__(self, params: Iterable[Parameter], lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(params, lr)
        self.alpha = _check_number(alpha, "alpha", "RMSprop", high=1.0, high_open=False)
        self.eps = _check_number(eps, "eps", "RMSprop")
        self.weight_decay = _check_number(weight_decay, "weight_decay", "RMSprop")
        self.momentum = _check_number(momentum, "momentum", "RMSprop")
        self.centered = bool(centered)

    def _update(self, w, dw, state, scratch):
        s, t = scratch
        a = self.alpha
        g = self._decayed(w, dw, self.weight_decay, s)
        if not state:
            state["square_avg"] = np.zeros_like(w)
            if self.centered:
                state["grad_avg"] = np.zeros_like(w)
            if self.momentum > 0:
                state["momentum_buffer"] = np.zeros_like(w)
        sq = state["square_avg"]
        sq *= a
        np.multiply(g, g, out=t)
        t *= 1 - a
        sq += t
        if self.centered:
            ga = state["grad_avg"]
            ga *= a
            np.multiply(g, 1 - a, out=t)
            ga += t
            np.multiply(ga, ga, out=t)
            np.subtract(sq, t, out=t)
            np.sqrt(t, out=t)
        else:
            np.sqrt(sq, out=t)
        t += self.eps
        np.divide(g, t, out=t)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += t
            np.multiply(buf, self.lr, out=t)
        else:
            t *= self.lr
        w -= t


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def make_optimizer(name: str, params: Iterable[Parameter], lr: float | None = None, **kw: Any) -> Optimizer:
    """An optimiser by name (``sgd``, ``adam``, ``adamw``, ``rmsprop``; case-insensitive).

    ``lr=None`` takes the optimiser's default; other keyword arguments go to its constructor.

    >>> from cnnkit.layers import Parameter
    >>> make_optimizer("adam", [Parameter("w", np.zeros(3))], lr=0.01)
    Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0, amsgrad=False)
    """
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[key]
    unknown = sorted(set(kw) - {"lr", *cls.hyper})
    if unknown:
        raise SpecError(f"{cls.__name__}: unknown argument(s) {', '.join(unknown)}; "
                        f"accepted: lr, {', '.join(cls.hyper)}")
    return cls(params, **kw) if lr is None else cls(params, lr=lr, **kw)


def optimizer_from_state(state: dict[str, Any], params: Iterable[Parameter]) -> Optimizer:
    """Rebuild an optimiser from its :meth:`Optimizer.state_dict` (for resuming)."""
    kw = {k: v for k, v in state.items() if k not in ("type", "steps", "buffers")}
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    opt = make_optimizer(state.get("type", "?"), params, **kw)
    opt.load_state_dict(state)
    return opt


from .schedules import (  # noqa: E402  (re-exported: the contract names cnnkit.optim)
    SCHEDULES, CosineLR, ReduceOnPlateau, Schedule, StepLR, WarmupLR, make_schedule, schedule_from_state,
)

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "OPTIMIZERS", "make_optimizer",
           "optimizer_from_state", "Schedule", "StepLR", "CosineLR", "WarmupLR", "ReduceOnPlateau",
           "SCHEDULES", "make_schedule", "schedule_from_state"]
