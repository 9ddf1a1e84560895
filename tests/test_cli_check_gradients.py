"""``cnnkit check-gradients``: exit 0 when right, 1 when a backward is wrong, 2 for bad input."""

from __future__ import annotations

import json

import pytest

from cnnkit.cli import main
from cnnkit.layers.linear import Linear

BN_GAP_SPEC = "conv(4,3,padding=1)-bn-relu-maxpool(2)-conv(6,3)-bn-relu-gap-dropout(0.3)-fc(3)"


def test_lenet5_passes(capsys):
    assert main(["check-gradients", "lenet5", "--input", "28x28x1"]) == 0
    out = capsys.readouterr().out
    assert "Gradient check of lenet5 on 28×28×1" in out
    assert "20 random elements per tensor + the largest gradient (seed 0)" in out
    assert "conv2.weight  5×5×6×16" in out
    assert out.rstrip().endswith("PASSED: all 11 tensors within tolerance")


def test_batchnorm_gap_model_every_element(capsys):
    assert main(["check-gradients", BN_GAP_SPEC, "--input", "6x6x2", "--all"]) == 0
    out = capsys.readouterr().out
    assert "every element of each tensor" in out
    assert "bn2.gamma" in out and "PASSED" in out


def test_eval_mode_and_json(capsys):
    assert main(["check-gradients", BN_GAP_SPEC, "--input", "8x8x1", "--mode", "eval", "--samples", "3",
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True and report["mode"] == "eval" and report["samples"] == 3
    assert report["input_shape"] == [8, 8, 1]
    assert all(t["checked"] <= 4 for t in report["tensors"])


def test_spec_file(tmp_path, capsys):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({"input_shape": [5, 5, 2], "layers": [
        {"type": "conv2d", "filters": 3, "size": 3}, {"type": "batchnorm2d"}, {"type": "tanh"},
        {"type": "flatten"}, {"type": "linear", "outputs": 2}]}))
    assert main(["check-gradients", str(spec)]) == 0
    assert "Gradient check of tiny on 5×5×2" in capsys.readouterr().out


def test_a_wrong_backward_exits_1(monkeypatch, capsys):
    original = Linear.backward_cached

    def wrong(self, dy, cache, need_dx=True, **kwargs):  # kwargs: e.g. Conv2d's workspace
        dx, grads = original(self, dy, cache, need_dx, **kwargs)
        if self.name == "fc3":
            grads = {**grads, "weight": grads["weight"] * 1.001}
        return dx, grads

    monkeypatch.setattr(Linear, "backward_cached", wrong)
    assert main(["check-gradients", "lenet5"]) == 1
    out = capsys.readouterr().out
    assert "fc3.weight    84×10" in out and "FAIL" in out
    assert "FAILED: 1 of 11 tensors exceed the tolerance (fc3.weight); worst fc3.weight[" in out


@pytest.mark.parametrize("argv, message", [
    (["check-gradients", "lenet6"], "cnnkit check-gradients: error: unknown model 'lenet6'"),
    (["check-gradients", "conv(4,3)-relu-fc(2)"],
     "error: 'conv(4,3)-relu-fc(2)' has no input shape: pass --input HxWxC, e.g. --input 28x28x1"),
    (["check-gradients", "lenet5", "--input", "28x28x1", "--samples", "0"],
     "samples must be an integer >= 1. Received: samples=0"),
])
def test_bad_input_exits_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["check-gradients", "lenet5", "--samples", "5", "--all"], "not allowed with argument"),
    (["check-gradients", "lenet5", "--input", "28x28"], "expected HxWxC with positive integers"),
])
def test_bad_arguments_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_model_file_with_running_statistics(tmp_path, capsys):
    from cnnkit.io import save
    from cnnkit.spec import resolve_model

    model = resolve_model("conv(4,3)-bn-relu-gap-fc(3)", (6, 6, 2), seed=2)
    model["bn1"].buffers["running_mean"][...] = 0.5
    model["bn1"].buffers["running_var"][...] = 3.0
    path = tmp_path / "model.npz"
    save(model, path)
    assert main(["check-gradients", str(path), "--mode", "eval", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["input_shape"] == [6, 6, 2]


def test_unreadable_model_file_exits_1(tmp_path, capsys):
    path = tmp_path / "model.npz"
    path.write_bytes(b"not a zip")
    assert main(["check-gradients", str(path)]) == 1
    assert "cnnkit check-gradients: error:" in capsys.readouterr().err
