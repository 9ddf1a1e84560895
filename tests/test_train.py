"""The fit loop: determinism, history, the non-finite guard, callbacks, Ctrl-C and resume.

Small data (12×12×3, 3 classes, 180 images) and small models keep each fit well under a second.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from cnnkit.callbacks import Callback, EarlyStopping, KeepBest
from cnnkit.data import Dataset
from cnnkit.errors import NonFiniteLossError, UserInputError
from cnnkit.spec import resolve_model
from cnnkit.train import History, fit, split_validation

# conv + pool + dropout: every kind of state a resume must restore (weights, Adam moments,
# loader order and position, Dropout generator)
SPEC = "conv(4,3)-relu-maxpool(2)-flatten-dropout(0.3)-fc(3)"
EPOCHS = 3


def tiny_dataset(n: int = 180, seed: int = 7) -> Dataset:
    """Images whose class is the brightest channel, with noise: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 140, size=(n, 12, 12, 3))
    x[np.arange(n), :, :, y] += 90
    return Dataset(x.astype(np.uint8), y, ["red", "green", "blue"], "tiny")


def model(spec: str = SPEC, seed: int = 0):
    return resolve_model(spec, (12, 12, 3), seed=seed)


def weights(m) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in m.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def figures(h: History) -> list[dict]:
    """The history without its timings (the only part that may differ between identical runs)."""
    return [{k: v for k, v in e.items() if k != "timings"} for e in h.epochs]


def run_fit(m=None, **kw):
    m = m if m is not None else model()
    kw.setdefault("epochs", EPOCHS)
    kw.setdefault("batch_size", 32)
    kw.setdefault("progress", False)
    return m, fit(m, tiny_dataset(), **kw)


class InterruptAt(Callback):
    """Simulates Ctrl-C: raises KeyboardInterrupt after step ``step`` of epoch ``epoch``."""

    def __init__(self, epoch: int, step: int, signal_it: bool = False) -> None:
        self.epoch, self.step, self.signal_it = epoch, step, signal_it

    def on_batch_end(self, state) -> None:
        if (state.epoch, state.step) == (self.epoch, self.step):
            if self.signal_it:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: the loop stops after this step
            else:
                raise KeyboardInterrupt


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_bit_identical_weights_and_history():
    m1, h1 = run_fit(seed=3)
    m2, h2 = run_fit(seed=3)
    assert same_weights(weights(m1), weights(m2))
    assert figures(h1) == figures(h2)
    assert h1.epochs[-1]["train_accuracy"] > 0.6  # it does learn


def test_another_seed_gives_other_weights():
    m1, _ = run_fit(seed=3)
    m2, _ = run_fit(seed=4)
    assert not same_weights(weights(m1), weights(m2))


def test_history_records_every_epoch_with_the_interface_keys():
    _, h = run_fit(epochs=2)
    assert [e["epoch"] for e in h.epochs] == [1, 2]
    for e in h.epochs:
        assert set(e) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "timings"}
        assert set(e["timings"]) == {"train_seconds", "val_seconds", "images_per_second"}
        assert 0 <= e["train_accuracy"] <= 1 and 0 <= e["val_accuracy"] <= 1
        assert e["lr"] == 0.001
    assert h.to_dict() == {"epochs": h.epochs}


def test_without_validation_val_figures_are_none():
    _, h = run_fit(epochs=1, val=None)
    assert h.epochs[0]["val_loss"] is None and h.epochs[0]["val_accuracy"] is None


def test_validation_split_is_deterministic_and_disjoint():
    ds = tiny_dataset()
    a_train, a_val = split_validation(ds, 0.1, seed=5)
    b_train, b_val = split_validation(ds, 0.1, seed=5)
    assert len(a_val) == 18 and len(a_train) == 162
    assert np.array_equal(a_val.x, b_val.x) and np.array_equal(a_train.y, b_train.y)
    _, c_val = split_validation(ds, 0.1, seed=6)
    assert not np.array_equal(a_val.x, c_val.x)


def test_fit_sets_class_names_and_preprocessing_from_the_training_data():
    m, _ = run_fit(epochs=1)
    assert m.class_names == ["red", "green", "blue"]
    assert set(m.preprocessing) == {"scale", "mean", "std"} and len(m.preprocessing["mean"]) == 3


def test_fit_accepts_arrays_a_given_validation_set_and_an_optimizer_object():
    from cnnkit.optim import SGD, StepLR

    ds = tiny_dataset()
    m = model("flatten-fc(3)")
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    h = fit(m, (ds.x, ds.y), epochs=3, optimizer=opt, schedule=sched, val=(ds.x[:30], ds.y[:30]), progress=False)
    assert [e["lr"] for e in h.epochs] == [0.1, 0.05, 0.025]  # the schedule is stepped once per epoch


def test_bad_arguments_are_refused():
    with pytest.raises(UserInputError, match="epochs must be an integer >= 1. Received: epochs=0"):
        run_fit(epochs=0)
    with pytest.raises(UserInputError, match="batch_size must be an integer >= 1"):
        run_fit(batch_size=2.5)
    with pytest.raises(UserInputError, match=r"validation fraction must be in \(0, 1\)"):
        run_fit(val=1.5)


# ----------------------------------------------------------------------------- the non-finite guard
def test_non_finite_loss_stops_naming_epoch_and_step():
    m = model("flatten-fc(3)")
    m["fc1"].params["weight"].value[0, 0] = np.inf
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1 of 6: the training loss is nan"):
        run_fit(m)


def test_non_finite_loss_names_a_later_step():
    class Poison(Callback):
        def on_batch_end(self, state):
            if (state.epoch, state.step) == (2, 3):
                state.model["fc1"].params["weight"].value[:] = np.nan

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 4 of 6"):
        run_fit(model("flatten-fc(3)"), callbacks=[Poison()])


# ----------------------------------------------------------------------------- callbacks
def test_early_stopping_stops_when_the_monitor_stalls():
    from cnnkit.optim import SGD

    m = model("flatten-fc(3)")
    frozen = SGD(m.parameters(), lr=0.0)  # nothing changes: val_accuracy stays the same
    stop = EarlyStopping("val_accuracy", patience=2)
    _, h = run_fit(m, epochs=10, optimizer=frozen, callbacks=[stop])
    assert len(h.epochs) == 3 and h.stopped_early and stop.stopped_epoch == 3


def test_early_stopping_does_not_stop_while_improving():
    stop = EarlyStopping("train_loss", patience=1)
    _, h = run_fit(epochs=3, callbacks=[stop])
    losses = [e["train_loss"] for e in h.epochs]
    assert losses == sorted(losses, reverse=True)  # improving every epoch here
    assert len(h.epochs) == 3 and not h.stopped_early


def test_early_stopping_needs_validation_data_for_a_val_monitor():
    with pytest.raises(UserInputError, match="EarlyStopping monitors val_loss but training has no validation"):
        run_fit(val=None, callbacks=[EarlyStopping()])


class Sabotage(Callback):
    """Negates the last layer's weights after the last step of ``epoch`` (every score turned
    upside down): that epoch's validation is much worse, so the best epoch is an earlier one."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_end(self, state) -> None:
        if (state.epoch, state.step) == (self.epoch, state.steps_per_epoch):
            for p in state.model.layers[-1].params.values():
                p.value *= -1


def test_keep_best_restores_the_weights_of_the_best_epoch():
    class Record(Callback):
        def __init__(self):
            self.seen = {}

        def on_epoch_end(self, state):
            self.seen[state.epoch] = weights(state.model)

    record, best = Record(), KeepBest("val_loss")
    m, h = run_fit(epochs=4, callbacks=[Sabotage(3), record, best])
    losses = [e["val_loss"] for e in h.epochs]
    best_epoch = int(np.argmin(losses)) + 1
    assert best_epoch < 3 and losses[2] > losses[1]
    assert best.best_epoch == best_epoch and best.best == min(losses)
    assert same_weights(weights(m), record.seen[best_epoch])
    assert not same_weights(weights(m), record.seen[4])


def test_callback_arguments_are_checked():
    with pytest.raises(UserInputError, match="monitor must be one of"):
        EarlyStopping("accuracy")
    with pytest.raises(UserInputError, match="patience must be an integer >= 1"):
        EarlyStopping(patience=0)


# ----------------------------------------------------------------------------- Ctrl-C and resume
def reference_run():
    m, h = run_fit(epochs=EPOCHS)
    return weights(m), figures(h)


@pytest.mark.parametrize("epoch, step", [(1, 2), (2, 5), (3, 6)])
def test_ctrl_c_mid_epoch_then_resume_is_bit_identical(tmp_path, epoch, step):
    ref_weights, ref_history = reference_run()
    ckpt = tmp_path / "checkpoint.npz"
    m, h = run_fit(checkpoint=ckpt, callbacks=[InterruptAt(epoch, step)])
    assert h.interrupted and ckpt.exists()
    assert len(h.epochs) == epoch - 1
    # a new process: a fresh model and a fresh call
    m2, h2 = run_fit(checkpoint=ckpt, resume=True, callbacks=[InterruptAt(0, 0)])
    assert not h2.interrupted
    assert same_weights(weights(m2), ref_weights)
    assert figures(h2) == ref_history


def test_a_real_sigint_stops_after_the_step_and_resumes_bit_identically(tmp_path):
    ref_weights, ref_history = reference_run()
    ckpt = tmp_path / "checkpoint.npz"
    previous = signal.getsignal(signal.SIGINT)
    _, h = run_fit(checkpoint=ckpt, callbacks=[InterruptAt(2, 3, signal_it=True)])
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is put back
    assert h.interrupted and len(h.epochs) == 1
    from cnnkit.checkpoint import load_checkpoint

    _, state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step"]) == (1, 3)
    m2, h2 = run_fit(checkpoint=ckpt, resume=True, callbacks=[InterruptAt(0, 0)])
    assert same_weights(weights(m2), ref_weights) and figures(h2) == ref_history


def test_resume_from_every_epoch_end_is_bit_identical(tmp_path):
    ref_weights, ref_history = reference_run()
    ckpt = tmp_path / "checkpoint.npz"
    for epochs in range(1, EPOCHS + 1):  # stop after each epoch, as a killed run would
        m, h = run_fit(epochs=epochs, checkpoint=ckpt, resume=True)
    assert same_weights(weights(m), ref_weights) and figures(h) == ref_history


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path):
    ref_weights, _ = reference_run()
    m, h = run_fit(checkpoint=tmp_path / "checkpoint.npz", resume=True)
    assert same_weights(weights(m), ref_weights) and len(h.epochs) == EPOCHS


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    ckpt = tmp_path / "checkpoint.npz"
    m1, h1 = run_fit(checkpoint=ckpt)
    m2, h2 = run_fit(checkpoint=ckpt, resume=True)
    assert same_weights(weights(m1), weights(m2)) and figures(h1) == figures(h2)


def test_resume_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "checkpoint.npz"
    run_fit(checkpoint=ckpt, callbacks=[InterruptAt(1, 2)])
    with pytest.raises(UserInputError, match=r"cannot resume .*batch_size: checkpoint 32, now 16"):
        run_fit(checkpoint=ckpt, resume=True, batch_size=16)


def test_keep_best_and_early_stopping_survive_a_resume(tmp_path):
    def callbacks(*extra):
        return [Sabotage(3), KeepBest("val_loss"), EarlyStopping("val_loss", patience=2), *extra]

    m1, h1 = run_fit(epochs=8, callbacks=callbacks())
    assert h1.stopped_early and len(h1.epochs) < 8
    ckpt = tmp_path / "checkpoint.npz"
    run_fit(epochs=8, checkpoint=ckpt, callbacks=callbacks(InterruptAt(4, 2)))
    m2, h2 = run_fit(epochs=8, checkpoint=ckpt, resume=True, callbacks=callbacks(InterruptAt(0, 0)))
    assert same_weights(weights(m1), weights(m2))
    assert figures(h1) == figures(h2) and h2.stopped_early


# ----------------------------------------------------------------------------- progress
def test_progress_lines_off_a_terminal_and_silence_when_quiet(capsys):
    run_fit(epochs=2, progress="auto")  # pytest's stderr is not a terminal: plain lines
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2  loss ")
    assert "val loss" in lines[0] and "img/s" in lines[0]
    run_fit(epochs=1, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_mode_runs(capsys):
    run_fit(epochs=1, progress="bar")
    assert "epoch 1/1  loss" in capsys.readouterr().err


def test_resume_with_other_stateful_callbacks_is_refused(tmp_path):
    ckpt = tmp_path / "checkpoint.npz"
    run_fit(checkpoint=ckpt, callbacks=[KeepBest(), InterruptAt(2, 1)])
    with pytest.raises(UserInputError, match="it was written with 2 callbacks, this call passes 0"):
        run_fit(checkpoint=ckpt, resume=True)
