"""``cnnkit profile`` and :func:`cnnkit.profile.profile_model`: structure and bookkeeping only.

No assertion here depends on how fast anything runs: rows, shares that add up, FLOP counts of the
matrix multiplies seen, the model and NumPy left as they were, the command line's exit codes.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import cnnkit
from cnnkit.cli import main
from cnnkit.profile import CATEGORIES, profile_model
from cnnkit.profile_trace import numpy_modules

FAST = dict(batch_size=4, steps=1, warmup=0)


@pytest.fixture(scope="module")
def lenet_train():
    return profile_model("lenet5", **FAST)


def test_a_row_for_every_layer_then_loss_optimizer_outside(lenet_train):
    model = cnnkit.resolve_model("lenet5")
    names = [r.name for r in lenet_train.rows]
    assert names == [*model.layer_names(), "loss", "optimizer", "(outside layers)"]
    assert lenet_train.mode == "train" and lenet_train.batch_size == 4 and lenet_train.input_shape == (28, 28, 1)
    conv1 = lenet_train.rows[0]
    assert conv1.type == "Conv2d" and conv1.output_shape == (28, 28, 6)
    assert all(r.backward is not None for r in lenet_train.rows[:len(model.layers)])


def test_shares_add_up(lenet_train):
    assert sum(lenet_train.category_shares().values()) == pytest.approx(1.0, abs=1e-9)
    d = lenet_train.to_dict()
    assert sum(layer["share"] for layer in d["layers"]) == pytest.approx(1.0, abs=1e-9)
    for r in lenet_train.rows:
        for ph in (r.forward, r.backward):
            if ph is not None:
                assert min(ph.gemm, ph.elementwise, ph.other) >= 0
                assert ph.gemm + ph.elementwise + ph.other == pytest.approx(ph.seconds, rel=1e-9, abs=1e-15)
    # the rows cover the whole step: the measured step time is never more than their sum
    assert lenet_train.total_seconds >= lenet_train.step_seconds * (1 - 1e-9)


def test_matrix_multiplies_are_seen_with_their_flops():
    """``x @ w`` (an operator, not an np.matmul call) is classified, with 2·N·D·M FLOPs."""
    n, d, m = 3, 4 * 4 * 2, 5
    p = profile_model("flatten-fc(5)-relu-fc(2)", (4, 4, 2), batch_size=n, steps=1, warmup=0)
    fc1 = next(r for r in p.rows if r.name == "fc1")
    assert fc1.forward.gemm_flop >= 2 * n * d * m
    assert fc1.backward.gemm_flop >= 2 * (2 * n * d * m)  # dW = xᵀ·dy and dx = dy·Wᵀ at least
    assert fc1.forward.gemm > 0
    relu = next(r for r in p.rows if r.type == "ReLU")
    assert relu.forward.gemm == 0 and relu.forward.gemm_flop == 0
    assert relu.forward.elementwise > 0  # max(x, 0) is a ufunc call


def test_conv_forward_flops_at_least_the_macs():
    p = profile_model("lenet5", batch_size=2, steps=1, warmup=0, train=False)
    conv1 = p.rows[0]
    assert conv1.forward.gemm_flop >= 2 * 2 * 28 * 28 * 6 * 5 * 5 * 1


def test_forward_only_has_no_backward_loss_or_optimizer():
    p = profile_model("lenet5", batch_size=2, steps=1, warmup=0, train=False)
    assert p.mode == "infer"
    assert all(r.backward is None for r in p.rows)
    assert [r.name for r in p.rows][-1] == "(outside layers)"
    assert not {"loss", "optimizer"} & {r.name for r in p.rows}
    assert sum(p.category_shares().values()) == pytest.approx(1.0, abs=1e-9)


def test_model_and_numpy_left_unchanged():
    model = cnnkit.resolve_model("lenet5", seed=3)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    profile_model(model, **FAST)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(type(p.value) is np.ndarray for p in model.parameters())
    assert all(m.np is np for m in numpy_modules())
    assert "forward_cached" not in vars(model.layers[0])  # no wrapper left on the caller's layers


def test_no_classifying_pass_counts_everything_as_other():
    p = profile_model("lenet5", classify=False, **FAST)
    assert p.category_shares()["gemm"] == 0 and p.category_shares()["other"] == pytest.approx(1.0)


def test_model_without_class_vector_output_uses_a_random_gradient():
    p = profile_model("conv(3,3)-relu", (6, 6, 2), batch_size=2, steps=1, warmup=0)
    assert [r.name for r in p.rows] == ["conv1", "relu1", "loss", "optimizer", "(outside layers)"]


def test_bound_names_a_layer(lenet_train):
    text = lenet_train.bound()
    assert text.startswith("bound by ")
    assert any(f"{r.name} " in text for r in lenet_train.rows)


def test_cli_text_and_json(capsys):
    assert main(["profile", "lenet5", "--input", "28x28x1", "--batch-size", "2", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lenet5 training step, batch 2, 28×28×1, float32:")
    assert "conv1" in out and "(outside layers)" in out and "bound by" in out
    assert main(["profile", "lenet5", "--batch-size", "2", "--steps", "1", "--forward-only", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "infer" and d["batch_size"] == 2 and d["input_shape"] == [28, 28, 1]
    assert set(d["category_shares"]) == set(CATEGORIES)
    assert [layer["name"] for layer in d["layers"]][:2] == ["conv1", "relu1"]


def test_cli_markdown(capsys):
    assert main(["profile", "flatten-fc(3)", "--input", "2x2x1", "--batch-size", "2", "--steps", "1",
                 "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| layer | type | output | forward ms |" in out and "| fc1 | Linear | 3 |" in out


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown model 'nosuch'"),
    (["lenet5", "--batch-size", "0"], "batch_size must be an integer >= 1"),
    (["lenet5", "--steps", "0"], "steps must be an integer >= 1"),
    (["lenet5", "--input", "28x28"], "expected HxWxC"),
    (["lenet5", "--input", "3x3x1"], r"pool1 \(MaxPool2d"),
    (["conv(4,3)-relu"], "has no input shape: pass --input HxWxC"),
    (["lenet5", "--format", "yaml"], "invalid choice"),
])
def test_cli_bad_input_exits_2(capsys, argv, message):
    try:
        code = main(["profile", *argv])
    except SystemExit as e:  # argparse refusals
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err)
