"""The fit loop: mini-batch training with validation, callbacks, progress, checkpoints and resume.

One loop, written out in :func:`fit`::

    for each epoch:
        for each batch (x, y) of the shuffled training set:
            logits = model.forward(x); loss, dlogits = loss_fn(logits, y)
            stop if loss is NaN/inf (NonFiniteLossError names the epoch and step)
            model.backward(dlogits); optimizer.step()
        validation loss and accuracy; a History entry; callbacks; schedule.step(); checkpoint

Determinism: every random draw comes from generators seeded by ``seed`` (the validation split
and the loader's shuffle and augmentation, each its own stream of ``SeedSequence(seed)``) and by
the model's own seed (initial weights, Dropout masks). Same seed, same machine and thread
settings → bit-identical weights and history (timings apart).

Ctrl-C: the first one lets the current step finish, then the loop stops cleanly, writes a
mid-epoch checkpoint (when ``checkpoint`` is given) and returns a History with
``interrupted=True``; a second Ctrl-C aborts at once. ``resume=True`` continues from the
checkpoint bit-identically.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .callbacks import Callback, EarlyStopping, KeepBest
from .errors import NonFiniteLossError, UserInputError
from .progress import make_progress

__all__ = ["fit", "History", "FitState", "Callback", "EarlyStopping", "KeepBest", "split_validation"]


@dataclass
class History:
    """What :func:`fit` returns: one record per epoch (the ``history.json`` schema).

    Each record: ``epoch`` (1-based), ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy`` (None without validation), ``lr`` (the rate used in that epoch) and
    ``timings`` (``train_seconds``, ``val_seconds``, ``images_per_second``; kept apart, since they
    are the only figures that differ between two identical runs).
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    interrupted: bool = False
    train_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": [dict(e, timings=dict(e["timings"])) for e in self.epochs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(epochs=[dict(e) for e in data.get("epochs", [])])

    def metric(self, key: str) -> list[Any]:
        """One figure over the epochs, e.g. ``history.metric("val_accuracy")``."""
        return [e.get(key) for e in self.epochs]

    @property
    def last(self) -> dict[str, Any] | None:
        return self.epochs[-1] if self.epochs else None

    def __len__(self) -> int:
        return len(self.epochs)


@dataclass
class FitState:
    """What callbacks see (and may change: set ``stop = True`` to end training after this epoch)."""

    model: Any
    optimizer: Any
    schedule: Any
    history: History
    epochs: int
    epoch: int = 0            # the current epoch, 1-based
    step: int = 0             # steps done in the current epoch
    steps_per_epoch: int = 0
    batch_loss: float = math.nan
    stop: bool = False
    interrupted: bool = False
    has_val: bool = True


# ----------------------------------------------------------------------------- data helpers
def _dataset(data, where: str, class_names: Sequence[str] | None = None):
    """A Dataset, or an ``(x, y)`` pair of arrays wrapped as one."""
    from .data import Dataset

    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        names = list(class_names) if class_names else [str(i) for i in range(int(y.max()) + 1 if y.size else 0)]
        return Dataset(x, y, names, "arrays")
    raise UserInputError(f"fit: {where} must be a cnnkit.data.Dataset or an (x, y) pair of arrays. "
                         f"Received: {type(data).__name__}")


def split_validation(ds, fraction: float, seed: int):
    """``(train, val)``: a random ``fraction`` of ``ds`` held out, the same for the same seed."""
    if not 0 < fraction < 1:
        raise UserInputError(f"fit: a validation fraction must be in (0, 1). Received: val={fraction!r}")
    if len(ds) < 2:
        raise UserInputError(f"fit: {len(ds)} training example(s) cannot be split for validation; pass val=None")
    return ds.split(fraction, np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0]))


def _loader(ds, batch_size: int, *, shuffle: bool, rng=None, augment=(), preprocessing=None):
    from .data.loader import DataLoader

    return DataLoader(ds, batch_size, shuffle=shuffle, rng=rng, augment=augment, preprocessing=preprocessing)


def _validate(model, ds, loss: str, batch_size: int = 256) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``model`` on ``ds`` (the model's preprocessing applied), in
    evaluation mode, with the training loss (:func:`cnnkit.evaluate` gives the full report)."""
    from .kernels.losses import get_loss

    loss_fn = get_loss(loss)
    if len(ds.y) == 0:
        return math.nan, math.nan
    total, correct = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for x, y in _loader(ds, batch_size, shuffle=False, preprocessing=model.preprocessing):
            logits = model.logits(x, batch_size=len(x))  # the inference path of predict (threads, fusion)
            batch_loss, _ = loss_fn(logits, y)
            total += batch_loss * len(y)
            correct += int((logits.argmax(axis=1) == y).sum())
    finally:
        if was_training:
            model.train()
    return total / len(ds.y), correct / len(ds.y)


# ----------------------------------------------------------------------------- Ctrl-C
@contextmanager
def _deferred_interrupt():
    """While active, the first Ctrl-C only sets ``flag["hit"]`` (the loop stops at the next step
    boundary); a second one raises KeyboardInterrupt at once. Only in the main thread."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------- fit
def fit(model, train, epochs: int = 10, batch_size: int = 64, optimizer: Any = "adam", lr: float | None = None, *,
        val: Any = 0.1, schedule: Any = None, callbacks: Sequence[Callback] = (), seed: int = 0,
        augment: Sequence[Any] = (), loss: str = "cross_entropy", progress: Any = "auto",
        checkpoint: str | Path | None = None, resume: bool = False) -> History:
    """Train ``model`` on ``train`` with mini-batches; returns the :class:`History`.

    Args:
        model: a built :class:`~cnnkit.model.Sequential` (float32 for training). Its
            ``class_names`` and ``preprocessing`` are set from the training data when unset
            (preprocessing: per-channel mean and std of the training split, uint8 data only).
        train: a :class:`cnnkit.data.Dataset` or an ``(x, y)`` pair of arrays.
        epochs: number of passes over the training data (when resuming: the total, including
            the epochs already done).
        batch_size: examples per step (the last batch of an epoch may be smaller).
        optimizer: a name (``adam``, ``sgd``, ``adamw``, ``rmsprop``) or an optimiser object
            from :mod:`cnnkit.optim` bound to ``model.parameters()``.
        lr: learning rate when ``optimizer`` is a name (None: the optimiser's default).
        val: a fraction of ``train`` held out for validation (chosen from ``seed``), a Dataset or
            ``(x, y)`` pair, or None for no validation.
        schedule: a learning-rate schedule from :mod:`cnnkit.optim`, or a callable
            ``optimizer -> schedule``; stepped once per epoch with the validation loss (the
            training loss without validation) as its metric.
        callbacks: :class:`Callback` objects (:class:`EarlyStopping`, :class:`KeepBest`, …).
        seed: seeds the validation split and the loader's shuffling and augmentation.
        augment: the loader's augmentations (see :class:`cnnkit.data.loader.DataLoader`).
        loss: ``cross_entropy``, ``hinge`` or ``mse`` (:mod:`cnnkit.kernels.losses`).
        progress: ``"auto"`` (a bar on a terminal, periodic lines otherwise), ``"bar"``,
            ``"lines"``, or False/None for silence.
        checkpoint: path of ``checkpoint.npz``, written at the end of every epoch and on Ctrl-C.
        resume: continue from ``checkpoint`` when it exists (from scratch when it does not).

    Raises:
        NonFiniteLossError: the training loss became NaN or infinite (the message names the
            epoch and step).

    Example:
        >>> history = fit(model, load_dataset("shapes", "train"), epochs=3)  # doctest: +SKIP
        >>> history.last["val_accuracy"]  # doctest: +SKIP
    """
    from .data.loader import preprocessing_for
    from .kernels.losses import get_loss
    from .optim import make_optimizer

    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UserInputError(f"fit: {name} must be an integer >= {low}. Received: {name}={value!r}")
    loss_fn = get_loss(loss)
    train_ds = _dataset(train, "train", model.class_names)
    val_ds = None
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        train_ds, val_ds = split_validation(train_ds, val, seed)
    elif val is not None:
        val_ds = _dataset(val, "val", train_ds.class_names)
    if model.class_names is None:
        model.class_names = list(train_ds.class_names)
    if model.preprocessing is None and train_ds.x.dtype == np.uint8:  # float data: already preprocessed
        model.preprocessing = preprocessing_for(train_ds)
    model.train()

    opt = optimizer if not isinstance(optimizer, str) else make_optimizer(optimizer, model.parameters(), lr)
    sched = schedule(opt) if callable(schedule) and not hasattr(schedule, "step") else schedule
    loader_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    loader = _loader(train_ds, batch_size, shuffle=True, rng=loader_rng, augment=augment,
                     preprocessing=model.preprocessing)
    settings = {"batch_size": int(batch_size), "seed": int(seed), "loss": loss, "train_examples": len(train_ds.y),
                "val_examples": 0 if val_ds is None else len(val_ds.y), "optimizer": type(opt).__name__}
    history = History()
    run = FitState(model, opt, sched, history, int(epochs), steps_per_epoch=len(loader), has_val=val_ds is not None)
    done_epochs, step, partial = 0, 0, _zero_partial()
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.exists():
        state = _restore(ckpt, model, opt, sched, loader, callbacks, settings)
        history.epochs = state["history"]["epochs"]
        history.stopped_early = bool(state.get("stopped_early", False))
        done_epochs, step, partial = int(state["epoch"]), int(state["step"]), dict(state["partial"])

    def save_checkpoint() -> None:
        if ckpt is None:
            return
        from .io import save_checkpoint as save

        save(ckpt, model, {
            "epoch": done_epochs, "step": step, "partial": partial, "settings": settings,
            "stopped_early": history.stopped_early, "history": history.to_dict(),
            "optimizer": opt.state_dict(), "schedule": sched.state_dict() if sched is not None else None,
            "loader": loader.state_dict(),
            "callbacks": [cb.state_dict() for cb in callbacks],
        })

    show = make_progress(progress, epochs=int(epochs), steps=len(loader), examples=len(train_ds.y))
    for cb in callbacks:
        cb.on_train_begin(run)
    at_boundary = True  # True where the state is consistent enough to checkpoint
    t_fit = t0 = time.perf_counter()
    try:
        with _deferred_interrupt() as ctrl_c, warnings.catch_warnings():
            # overflow/NaN on the way to a non-finite loss: the guard below says it in one line
            warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
            epoch = done_epochs + 1
            while epoch <= epochs and not history.stopped_early:
                run.epoch, run.step = epoch, step
                lr_used = float(opt.lr)
                show.start_epoch(epoch, step, partial["seen"])
                t0 = time.perf_counter()
                for x, y in (loader if step < len(loader) else ()):  # () : resumed after the last step
                    at_boundary = False
                    logits = model.forward(x)
                    batch_loss, dlogits = loss_fn(logits, y)
                    if not math.isfinite(batch_loss):
                        raise NonFiniteLossError(
                            f"epoch {epoch}, step {step + 1} of {len(loader)}: the training loss is {batch_loss} "
                            f"(lr={opt.lr:g}); try a lower learning rate")
                    model.backward(dlogits, need_input_grad=False)
                    opt.step()
                    step += 1
                    partial["loss_sum"] += batch_loss * len(y)
                    partial["correct"] += int((logits.argmax(axis=1) == y).sum())
                    partial["seen"] += len(y)
                    at_boundary = True
                    run.step, run.batch_loss = step, batch_loss
                    for cb in callbacks:
                        cb.on_batch_end(run)
                    show.update(step, partial, time.perf_counter() - t0)
                    if ctrl_c["hit"]:
                        raise KeyboardInterrupt
                train_seconds = partial["seconds"] + time.perf_counter() - t0
                t1 = time.perf_counter()
                val_loss, val_acc = _validate(model, val_ds, loss) if val_ds is not None else (None, None)
                val_seconds = time.perf_counter() - t1
                at_boundary = False
                history.epochs.append({
                    "epoch": epoch,
                    "train_loss": partial["loss_sum"] / max(partial["seen"], 1),
                    "train_accuracy": partial["correct"] / max(partial["seen"], 1),
                    "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr_used,
                    "timings": {"train_seconds": round(train_seconds, 4), "val_seconds": round(val_seconds, 4),
                                "images_per_second": round(partial["seen"] / max(train_seconds, 1e-9), 1)},
                })
                run.stop = False
                for cb in callbacks:
                    cb.on_epoch_end(run)
                history.stopped_early = run.stop and epoch < epochs
                if sched is not None:
                    sched.step(val_loss if val_loss is not None else history.epochs[-1]["train_loss"])
                done_epochs, step, partial = epoch, 0, _zero_partial()
                save_checkpoint()
                at_boundary = True
                show.end_epoch(history.epochs[-1])
                epoch += 1
                if ctrl_c["hit"] and epoch <= epochs and not history.stopped_early:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        history.interrupted = run.interrupted = True
        if at_boundary:
            if step:
                partial["seconds"] += time.perf_counter() - t0
            save_checkpoint()
        show.interrupted(ckpt if at_boundary else None, saved_epochs=done_epochs)
    finally:
        show.close()
        history.train_seconds = time.perf_counter() - t_fit
    for cb in callbacks:
        cb.on_train_end(run)
    return history


def _zero_partial() -> dict[str, float]:
    """Running sums of the epoch in progress (kept in checkpoints so a resumed epoch reports
    the same figures)."""
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


def _restore(path: Path, model, opt, sched, loader, callbacks, settings) -> dict[str, Any]:
    """Load a checkpoint into the live objects; returns its state."""
    from .io import load_checkpoint

    saved_model, state = load_checkpoint(path)
    differ = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
    if differ:
        what = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in differ.items())
        raise UserInputError(f"cannot resume from {path}: it was written with other settings ({what})")
    model.load_state_dict(saved_model.state_dict())
    for layer, saved in zip(model.layers, saved_model.layers):  # Dropout generators
        if layer.rng is not None and saved.rng is not None:
            layer.rng.bit_generator.state = saved.rng.bit_generator.state
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("schedule") is not None:
        sched.load_state_dict(state["schedule"])
    loader.load_state_dict(state["loader"])
    saved_cbs = state.get("callbacks", [])
    own = [cb.state_dict() for cb in callbacks]
    if len(saved_cbs) != len(callbacks) and (any(saved_cbs) or any(own)):  # stateless callbacks may differ
        raise UserInputError(f"cannot resume from {path}: it was written with {len(saved_cbs)} callbacks, "
                             f"this call passes {len(callbacks)}; pass the same callbacks to continue")
    if len(saved_cbs) == len(callbacks):
        for cb, cb_state in zip(callbacks, saved_cbs):
            cb.load_state_dict(cb_state)
    return state
