"""check_gradients: right both ways (correct backward passes, a 0.1% error fails), never mutates
the user's model, samples as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit.errors import ShapeError, SpecError
from cnnkit.gradcheck import (ATOL, RTOL, GradCheckReport, _check_tensor, check_gradients, numerical_gradient,
                              within_tolerance)
from cnnkit.layers import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, ReLU
from cnnkit.layers.conv import Conv2d as ConvClass
from cnnkit.layers.linear import Linear as LinearClass
from cnnkit.layers.norm import BatchNorm2d as BatchNormClass
from cnnkit.model import Sequential
from cnnkit.spec import resolve_model

BN_SPEC = "conv(4,3,padding=1)-bn-relu-maxpool(2)-conv(6,3)-bn-relu-gap-dropout(0.3)-fc(3)"


def _perturb(monkeypatch, cls, layer_name, which):
    """Scale one output of ``layer_name``'s backward by 1.001 (a 0.1% bug)."""
    original = cls.backward_cached

    def wrong(self, dy, cache, need_dx=True, **kwargs):  # kwargs: e.g. Conv2d's workspace
        dx, grads = original(self, dy, cache, need_dx, **kwargs)
        if self.name == layer_name:
            if which == "dx":
                dx = dx * 1.001
            else:
                grads = {**grads, which: grads[which] * 1.001}
        return dx, grads

    monkeypatch.setattr(cls, "backward_cached", wrong)


def _failed(report: GradCheckReport) -> set[str]:
    return {t.name for t in report.failed}


# ------------------------------------------------------------------------- passes when right
def test_lenet5_passes():
    report = check_gradients(resolve_model("lenet5"), (28, 28, 1))
    assert report.passed, report.format()
    assert [t.name for t in report.tensors] == ["input", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight",
                                                "fc3.bias"]
    assert report.format().endswith("PASSED: all 11 tensors within tolerance")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_dropout_gap_model_passes(mode):
    model = resolve_model(BN_SPEC, (8, 8, 2))
    for layer in model:  # running statistics away from (0, 1), so eval mode is a real test
        if "running_var" in layer.buffers:
            layer.buffers["running_mean"][...] = 0.3
            layer.buffers["running_var"][...] = 2.0
    report = check_gradients(model, mode=mode)
    assert report.passed, report.format()
    assert report.mode == mode
    assert {"bn1.gamma", "bn1.beta", "bn2.gamma", "bn2.beta"} <= {t.name for t in report.tensors}


def test_every_element_of_a_small_model():
    model = Sequential([Conv2d(3, 3), BatchNorm2d(), ReLU(), Flatten(), Dropout(0.5), Linear(4)],
                       input_shape=(5, 5, 2), seed=1)
    report = check_gradients(model, all=True)
    assert report.passed, report.format()
    assert report.samples is None
    assert [t.checked for t in report.tensors] == [4 * 50, 54, 3, 3, 3, 27 * 4, 4]


def test_single_layer_passes():
    assert check_gradients(Conv2d(4, 3, stride=2, padding=1), (7, 7, 3)).passed
    assert check_gradients(BatchNorm2d(), (3, 3, 2), mode="eval").passed


# ------------------------------------------------------------------------- fails when wrong
def test_lenet5_with_a_wrong_weight_gradient_fails(monkeypatch):
    _perturb(monkeypatch, LinearClass, "fc2", "weight")
    report = check_gradients(resolve_model("lenet5"))
    assert not report.passed
    assert _failed(report) == {"fc2.weight"}
    assert "FAILED: 1 of 11 tensors exceed the tolerance (fc2.weight); worst fc2.weight[" in report.format()


def test_lenet5_with_a_wrong_input_gradient_fails_upstream_only(monkeypatch):
    _perturb(monkeypatch, LinearClass, "fc2", "dx")
    report = check_gradients(resolve_model("lenet5"))
    assert _failed(report) == {"input", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                               "fc1.weight", "fc1.bias"}


def test_lenet5_with_a_wrong_conv_gradient_fails(monkeypatch):
    _perturb(monkeypatch, ConvClass, "conv2", "bias")
    assert _failed(check_gradients(resolve_model("lenet5"))) == {"conv2.bias"}


@pytest.mark.parametrize("which, expected", [("gamma", {"bn2.gamma"}), ("beta", {"bn2.beta"}),
                                             ("dx", {"input", "conv1.weight", "bn1.gamma", "bn1.beta", "conv2.weight"})])
def test_batchnorm_with_a_wrong_gradient_fails(monkeypatch, which, expected):
    # A conv bias right before a BatchNorm has gradient exactly 0 (the batch mean removes it), so
    # conv1.bias and conv2.bias still pass when the dx of bn2 is 0.1% off: 1.001 × 0 = 0.
    _perturb(monkeypatch, BatchNormClass, "bn2", which)
    assert _failed(check_gradients(resolve_model(BN_SPEC, (8, 8, 2)))) == expected


@pytest.mark.parametrize("near", [5e-7, 5e-8, -5e-8])  # within h of the kink; within h/10 too
def test_a_kink_is_measured_again_but_a_bug_is_not_excused(near):
    x = np.array([near, 1.0, -2.0])  # the first value lies within h = 1e-6 of ReLU's kink
    r = np.array([1.0, 2.0, 3.0])

    def f():
        return float(np.sum(np.maximum(x, 0) * r))

    right = np.where(x > 0, r, 0.0)
    assert not within_tolerance(right, numerical_gradient(f, x)).all()   # one step size alone is fooled
    assert _check_tensor("x", x, right, f, None, np.random.default_rng(0), 1e-6).passed
    assert not _check_tensor("x", x, right * 1.001, f, None, np.random.default_rng(0), 1e-6).passed


def test_kinks_on_both_sides_leave_the_short_one_sided_estimate():
    # at x = 0: a kink 5e-8 to the right (inside every step to the right and every central step)
    # and one 7e-6 to the left (inside the 10h one-sided step): only (3f(0) − 4f(−h/2) + f(−h))/h is clean
    x = np.array([0.0])

    def f():
        return float(2 * max(x[0] - 5e-8, 0) + 3 * max(-x[0] - 7e-6, 0))

    assert _check_tensor("x", x, np.array([0.0]), f, None, np.random.default_rng(0), 1e-6).passed
    assert not _check_tensor("x", x, np.array([1e-3]), f, None, np.random.default_rng(0), 1e-6).passed
    assert x[0] == 0.0


# ------------------------------------------------------------------------- the user's model is untouched
def test_does_not_mutate_the_model():
    model = resolve_model(BN_SPEC, (8, 8, 2), seed=4)
    model.forward(np.random.default_rng(0).standard_normal((3, 8, 8, 2)))  # move the running statistics
    model.eval()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    grads = [p.grad.copy() for p in model.parameters()]
    drop = model["dropout1"]
    rng_state = drop.rng.bit_generator.state
    report = check_gradients(model, mode="train")
    assert report.passed
    assert model.training is False and model.dtype == np.float32
    for key, value in model.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, before[key])
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    assert drop.rng.bit_generator.state == rng_state


def test_default_mode_is_the_models():
    model = resolve_model(BN_SPEC, (8, 8, 2))
    assert check_gradients(model).mode == "train"
    assert check_gradients(model.eval()).mode == "eval"


# ------------------------------------------------------------------------- sampling and the report
def test_sampling_is_documented_and_deterministic():
    model = resolve_model("lenet5")
    a = check_gradients(model, samples=5, seed=3)
    b = check_gradients(model, samples=5, seed=3)
    assert a == b
    sizes = {t.name: int(np.prod(t.shape)) for t in a.tensors}
    for t in a.tensors:  # samples random elements + the largest gradient (unless already drawn)
        assert t.checked == sizes[t.name] if sizes[t.name] <= 5 else t.checked in (5, 6)
    assert a.tensors[0].shape == (4, 28, 28, 1) and a.batch_size == 4
    assert "5 random elements per tensor + the largest gradient (seed 3)" in a.format()


def test_report_is_json_able():
    report = check_gradients(BatchNorm2d(), (2, 2, 3))
    d = json.loads(json.dumps(report.to_dict()))
    assert d["passed"] is True and d["atol"] == ATOL and d["rtol"] == RTOL
    assert d["input_shape"] == [2, 2, 3]
    assert [t["name"] for t in d["tensors"]] == ["input", "bn1.gamma", "bn1.beta"]
    assert all(t["passed"] and t["worst_ratio"] <= 1 for t in d["tensors"])


# ------------------------------------------------------------------------- errors
def test_errors():
    with pytest.raises(ShapeError, match=r"check_gradients: conv is not built; pass input_shape=\(H, W, C\)"):
        check_gradients(Conv2d(2, 3))
    with pytest.raises(ShapeError, match=r"lenet5 is built for input 28×28×1, received input_shape 32×32×1"):
        check_gradients(resolve_model("lenet5"), (32, 32, 1))
    with pytest.raises(SpecError, match=r"samples must be an integer >= 1. Received: samples=0"):
        check_gradients(BatchNorm2d(), (2, 2, 1), samples=0)
    with pytest.raises(SpecError, match=r"mode must be 'train' or 'eval'. Received: mode='test'"):
        check_gradients(BatchNorm2d(), (2, 2, 1), mode="test")
    with pytest.raises(SpecError, match=r"expected a Sequential model or a layer. Received: str"):
        check_gradients("lenet5", (28, 28, 1))
    with pytest.raises(ShapeError, match=r"training needs more than 1 value per channel"):
        check_gradients(BatchNorm2d(), (1, 1, 4), batch_size=1)
