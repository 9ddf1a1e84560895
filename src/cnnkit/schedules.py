"""Learning-rate schedules, stepped once per epoch: ``schedule.step(metric=None)``.

Each sets its optimiser's ``lr`` to the value ``torch.optim.lr_scheduler`` gives with the same
arguments (checked in ``tests/test_optim.py``):

* :class:`StepLR` — ``lr = base·γ^⌊epoch/step_size⌋`` (torch ``StepLR``).
* :class:`CosineLR` — ``lr = η_min + (base - η_min)·(1 + cos(π·epoch/T_max))/2``
  (torch ``CosineAnnealingLR``; past ``T_max`` the cosine goes back up, as torch's does).
* :class:`WarmupLR` — linear warm-up from ``start_factor·base`` to ``base`` over
  ``warmup_epochs``, then another schedule starting from its own epoch 0 (torch
  ``SequentialLR([LinearLR(start_factor, total_iters=warmup_epochs), after],
  milestones=[warmup_epochs])``); or constant ``base`` when there is no other schedule.
* :class:`ReduceOnPlateau` — divide the rate by ``1/factor`` after ``patience`` epochs without
  improvement of the metric (torch ``ReduceLROnPlateau``, same defaults).
* :class:`ConstantLR` — no change (``make_schedule("none")``).

Constructing a schedule sets the optimiser's rate for epoch 0 (as torch's schedulers do); call
:meth:`Schedule.step` at the end of each epoch.

Example:
    >>> from cnnkit.optim import SGD
    >>> from cnnkit.layers import Parameter
    >>> import numpy as np
    >>> opt = SGD([Parameter("w", np.zeros(2))], lr=0.1)
    >>> sched = StepLR(opt, step_size=2, gamma=0.5)
    >>> [round(sched.step(), 4) for _ in range(4)]
    [0.1, 0.05, 0.05, 0.025]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import SpecError, UserInputError

if TYPE_CHECKING:
    from .optim import Optimizer


def _check_int(value: Any, name: str, where: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserInputError(f"{where}: {name} must be an integer >= {low}. Received: {name}={value!r}")
    return value


def _check_float(value: Any, name: str, where: str, low: float, high: float | None = None,
                 low_open: bool = False, high_open: bool = True) -> float:
    from .optim import _check_number

    return _check_number(value, name, where, low=low, high=high, low_open=low_open, high_open=high_open)


class Schedule:
    """Base class: remembers the optimiser's base rate and the epoch; :meth:`lr_at` is the rule."""

    name: ClassVar[str] = "schedule"
    hyper: ClassVar[tuple[str, ...]] = ()

    def __init__(self, optimizer: "Optimizer") -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0
        self.optimizer.lr = self.lr_at(0)

    @property
    def lr(self) -> float:
        """The optimiser's current learning rate."""
        return self.optimizer.lr

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self, metric: float | None = None) -> float:
        """End of an epoch: move to the next epoch's rate and return it."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"type", "base_lr", "epoch", <hyper-parameters>}``."""
        return {"type": self.name, "base_lr": self.base_lr, "epoch": self.epoch,
                **{k: getattr(self, k) for k in self.hyper}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also sets the optimiser's rate for that epoch)."""
        if state.get("type") != self.name:
            raise UserInputError(f"{type(self).__name__}: state is of schedule {state.get('type')!r}, "
                                 f"not {self.name!r}")
        self.base_lr = float(state["base_lr"])
        self.epoch = int(state["epoch"])
        self.optimizer.lr = self.lr_at(self.epoch)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyper)
        return f"{type(self).__name__}({args})"


class ConstantLR(Schedule):
    """The base rate throughout (no schedule)."""

    name = "constant"

    def lr_at(self, epoch: int) -> float:
        return self.base_lr


class StepLR(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs: ``base·γ^⌊epoch/step_size⌋``."""

    name = "step"
    hyper = ("step_size", "gamma")

    def __init__(self, optimizer: "Optimizer", step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _check_int(step_size, "step_size", "StepLR")
        self.gamma = _check_float(gamma, "gamma", "StepLR", 0.0, low_open=True)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(Schedule):
    """Cosine annealing from the base rate to ``eta_min`` over ``T_max`` epochs (SGDR without
    restarts, Loshchilov & Hutter 2017): ``η_min + (base - η_min)·(1 + cos(π·epoch/T_max))/2``."""

    name = "cosine"
    hyper = ("T_max", "eta_min")

    def __init__(self, optimizer: "Optimizer", T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = _check_int(T_max, "T_max", "CosineLR")
        self.eta_min = _check_float(eta_min, "eta_min", "CosineLR", 0.0)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class ReduceOnPlateau(Schedule):
    """Reduce the rate when a metric stops improving (torch ``ReduceLROnPlateau``).

    Args:
        optimizer: the optimiser whose rate changes.
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        factor: new rate = max(rate·factor, min_lr). Default 0.1.
        patience: epochs without improvement tolerated before reducing. Default 10.
        threshold: how much better counts as better. Default 1e-4.
        threshold_mode: ``"rel"`` (better than best·(1 ∓ threshold)) or ``"abs"`` (best ∓ threshold).
        cooldown: epochs to wait after a reduction before counting again. Default 0.
        min_lr: lower bound of the rate. Default 0.
        eps: reductions smaller than this are skipped. Default 1e-8.
    """

    name = "plateau"
    hyper = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps")

    def __init__(self, optimizer: "Optimizer", mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8) -> None:
        where = "ReduceOnPlateau"
        if mode not in ("min", "max"):
            raise UserInputError(f"{where}: mode must be 'min' or 'max'. Received: mode={mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise UserInputError(f"{where}: threshold_mode must be 'rel' or 'abs'. "
                                 f"Received: threshold_mode={threshold_mode!r}")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _check_float(factor, "factor", where, 0.0, 1.0)
        self.patience = _check_int(patience, "patience", where, low=0)
        self.threshold = _check_float(threshold, "threshold", where, 0.0)
        self.cooldown = _check_int(cooldown, "cooldown", where, low=0)
        self.min_lr = _check_float(min_lr, "min_lr", where, 0.0)
        self.eps = _check_float(eps, "eps", where, 0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.optimizer.lr  # depends on the metrics seen, not on the epoch

    def _is_better(self, value: float) -> bool:
        if self.mode == "min":
            return value < (self.best * (1 - self.threshold) if self.threshold_mode == "rel"
                            else self.best - self.threshold)
        return value > (self.best * (1 + self.threshold) if self.threshold_mode == "rel"
                        else self.best + self.threshold)

    def step(self, metric: float | None = None) -> float:
        if metric is None:
            raise UserInputError("ReduceOnPlateau: step(metric) needs the monitored metric "
                                 "(e.g. the validation loss); received None")
        value = float(metric)
        self.epoch += 1
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.optimizer.lr

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        # ±inf is not JSON: None means "no metric seen yet"
        state.update(best=None if math.isinf(self.best) else self.best, lr=self.optimizer.lr,
                     num_bad_epochs=self.num_bad_epochs, cooldown_counter=self.cooldown_counter)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        best = state.get("best")
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else float(best)
        self.num_bad_epochs = int(state.get("num_bad_epochs", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        if "lr" in state:
            self.optimizer.lr = float(state["lr"])


class WarmupLR(Schedule):
    """Linear warm-up, then another schedule.

    The rate goes linearly from ``start_factor·base`` (epoch 0) to ``base`` (epoch
    ``warmup_epochs``); from there ``after`` runs as if it started at its own epoch 0. Without
    ``after`` the rate then stays at ``base``. ``after`` must be built on the same optimiser
    *before* this (its base rate is the warm-up's target). Torch's equivalent is
    ``SequentialLR([LinearLR(opt, start_factor, total_iters=warmup_epochs), after],
    milestones=[warmup_epochs])``; unlike torch, ``after`` may also be a :class:`ReduceOnPlateau`
    (it then sees the metrics from the end of the warm-up on).

    Example:
        >>> from cnnkit.optim import SGD
        >>> from cnnkit.layers import Parameter
        >>> import numpy as np
        >>> opt = SGD([Parameter("w", np.zeros(2))], lr=0.4)
        >>> sched = WarmupLR(opt, warmup_epochs=2, start_factor=0.5, after=StepLR(opt, 1, 0.5))
        >>> [opt.lr] + [sched.step() for _ in range(4)]
        [0.2, 0.30000000000000004, 0.4, 0.2, 0.1]
    """

    name = "warmup"
    hyper = ("warmup_epochs", "start_factor")

    def __init__(self, optimizer: "Optimizer", warmup_epochs: int = 5, start_factor: float = 1 / 3,
                 after: Schedule | None = None) -> None:
        self.warmup_epochs = _check_int(warmup_epochs, "warmup_epochs", "WarmupLR")
        self.start_factor = _check_float(start_factor, "start_factor", "WarmupLR", 0.0, 1.0,
                                         low_open=True, high_open=False)
        if after is not None and after.optimizer is not optimizer:
            raise UserInputError("WarmupLR: the schedule after the warm-up must use the same optimiser")
        self.after = after
        if after is not None:
            optimizer.lr = after.base_lr
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.base_lr * (self.start_factor + (1 - self.start_factor) * epoch / self.warmup_epochs)
        if self.after is None:
            return self.base_lr
        if isinstance(self.after, ReduceOnPlateau):
            return self.optimizer.lr if epoch > self.warmup_epochs else self.base_lr
        return self.after.lr_at(epoch - self.warmup_epochs)

    def step(self, metric: float | None = None) -> float:
        self.epoch += 1
        if self.after is not None and self.epoch > self.warmup_epochs:
            self.after.step(metric)
        else:
            if self.after is not None:
                self.after.epoch = 0
            self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.after is not None and state.get("after") is not None:
            self.after.load_state_dict(state["after"])
        super().load_state_dict(state)
        if isinstance(self.after, ReduceOnPlateau) and self.epoch > self.warmup_epochs:
            self.optimizer.lr = float(state["after"]["lr"])

    def __repr__(self) -> str:
        return (f"WarmupLR(warmup_epochs={self.warmup_epochs}, start_factor={self.start_factor!r}, "
                f"after={self.after!r})")


SCHEDULES: dict[str, type[Schedule]] = {
    "none": ConstantLR, "constant": ConstantLR, "step": StepLR, "cosine": CosineLR, "plateau": ReduceOnPlateau,
}


def make_schedule(name: str | None, optimizer: "Optimizer", *, epochs: int | None = None,
                  warmup_epochs: int = 0, warmup_start_factor: float = 1 / 3, **kw: Any) -> Schedule:
    """A schedule by name: ``none``/``constant``, ``step``, ``cosine``, ``plateau``; with
    ``warmup_epochs > 0`` wrapped in a :class:`WarmupLR`.

    Defaults that depend on the run length: ``cosine`` anneals over ``epochs - warmup_epochs``
    (``T_max``), ``step`` divides by 10 (``gamma``) every third of the run (``step_size``).
    Other keyword arguments go to the schedule.

    >>> from cnnkit.optim import SGD
    >>> from cnnkit.layers import Parameter
    >>> import numpy as np
    >>> make_schedule("cosine", SGD([Parameter("w", np.zeros(2))], lr=0.1), epochs=10, warmup_epochs=2)
    WarmupLR(warmup_epochs=2, start_factor=0.3333333333333333, after=CosineLR(T_max=8, eta_min=0.0))
    """
    key = "none" if name is None else str(name).lower()
    if key not in SCHEDULES:
        raise SpecError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    cls = SCHEDULES[key]
    unknown = sorted(set(kw) - set(cls.hyper))
    if unknown:
        raise SpecError(f"{cls.__name__}: unknown argument(s) {', '.join(unknown)}; "
                        f"accepted: {', '.join(cls.hyper) or 'none'}")
    span = None if epochs is None else max(1, epochs - warmup_epochs)
    if cls is CosineLR and "T_max" not in kw:
        if span is None:
            raise UserInputError("make_schedule('cosine'): give epochs= or T_max=")
        kw["T_max"] = span
    if cls is StepLR and "step_size" not in kw:
        if span is None:
            raise UserInputError("make_schedule('step'): give epochs= or step_size=")
        kw["step_size"] = max(1, span // 3)
    inner = cls(optimizer, **kw)
    if warmup_epochs:
        return WarmupLR(optimizer, warmup_epochs, warmup_start_factor,
                        after=None if cls is ConstantLR else inner)
    return inner


def schedule_from_state(state: dict[str, Any], optimizer: "Optimizer") -> Schedule:
    """Rebuild a schedule from its :meth:`Schedule.state_dict` (for resuming)."""
    key = state.get("type")
    if key == "warmup":
        after = None if state.get("after") is None else schedule_from_state(state["after"], optimizer)
        sched: Schedule = WarmupLR(optimizer, int(state["warmup_epochs"]), float(state["start_factor"]), after)
    elif key in SCHEDULES:
        cls = SCHEDULES[key]
        optimizer.lr = float(state["base_lr"])
        sched = cls(optimizer, **{k: state[k] for k in cls.hyper if k in state})
    else:
        raise UserInputError(f"unknown schedule type {key!r} in saved state; expected one of "
                             f"{', '.join(SCHEDULES)}, warmup")
    sched.load_state_dict(state)
    return sched
