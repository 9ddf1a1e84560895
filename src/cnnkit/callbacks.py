"""Callbacks for :func:`cnnkit.fit`: small objects called at fixed points of the loop.

A callback sees a :class:`cnnkit.train.FitState` (model, optimiser, schedule, history, epoch,
step) and may set ``state.stop = True`` at the end of an epoch to end training. Its own state
(``state_dict``/``load_state_dict``, JSON-able values and arrays) goes into checkpoints, so a
resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import UserInputError

MONITORS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class Callback:
    """Base class; override the hooks you need."""

    def on_train_begin(self, state) -> None:
        """Before the first step (also when resuming)."""

    def on_batch_end(self, state) -> None:
        """After each optimiser step; ``state.step`` and ``state.batch_loss`` are set."""

    def on_epoch_end(self, state) -> None:
        """After validation, with the epoch's record in ``state.history.epochs[-1]``."""

    def on_train_end(self, state) -> None:
        """After the last epoch, an early stop or a Ctrl-C (``state.interrupted``)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class _Monitor(Callback):
    """Shared part of callbacks that follow one figure of the history."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        where = type(self).__name__
        if monitor not in MONITORS:
            raise UserInputError(f"{where}: monitor must be one of {', '.join(MONITORS)}. Received: {monitor!r}")
        if mode == "auto":
            mode = "min" if monitor.endswith("loss") else "max"
        if mode not in ("min", "max"):
            raise UserInputError(f"{where}: mode must be 'min', 'max' or 'auto'. Received: {mode!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise UserInputError(f"{where}: min_delta must be a number >= 0. Received: {min_delta!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_train_begin(self, state) -> None:
        if self.monitor.startswith("val_") and not state.has_val:
            raise UserInputError(f"{type(self).__name__} monitors {self.monitor} but training has no validation "
                                 "data; pass val= to fit or monitor a train_ figure")

    def _value(self, state) -> float:
        value = state.history.epochs[-1].get(self.monitor)
        if value is None:
            raise UserInputError(f"{type(self).__name__} monitors {self.monitor} but training has no validation "
                                 "data; pass val= to fit or monitor a train_ figure")
        return float(value)

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Args:
        monitor: ``val_loss`` (default), ``val_accuracy``, ``train_loss`` or ``train_accuracy``.
        patience: epochs without improvement before stopping. Default 5.
        min_delta: the smallest change that counts as an improvement. Default 0.
        mode: ``min``, ``max`` or ``auto`` (min for losses, max for accuracies).

    Example:
        >>> EarlyStopping("val_accuracy", patience=2).mode
        'max'
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0, mode: str = "auto") -> None:
        super().__init__(monitor, mode, min_delta)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise UserInputError(f"EarlyStopping: patience must be an integer >= 1. Received: {patience!r}")
        self.patience = patience
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, state) -> None:
        value = self._value(state)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = state.epoch
            state.stop = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait, self.stopped_epoch = int(state.get("wait", 0)), state.get("stopped_epoch")


class KeepBest(_Monitor):
    """Keep a copy of the weights of the best epoch by ``monitor`` and put them back in the model
    when training ends (not after a Ctrl-C, so that a resumed run continues from the last step).

    Args:
        monitor: ``val_accuracy`` (default), ``val_loss``, ``train_loss`` or ``train_accuracy``.
        mode: ``min``, ``max`` or ``auto``.
    """

    def __init__(self, monitor: str = "val_accuracy", mode: str = "auto") -> None:
        super().__init__(monitor, mode)
        self.weights: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, state) -> None:
        value = self._value(state)
        if self._improved(value):
            self.best, self.best_epoch = value, state.epoch
            self.weights = {k: v.copy() for k, v in state.model.state_dict().items()}

    def on_train_end(self, state) -> None:
        if self.weights is not None and not state.interrupted:
            state.model.load_state_dict(self.weights)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        weights = state.get("weights")
        self.weights = None if weights is None else {k: np.array(v) for k, v in weights.items()}
