"""summary(): per-layer rows and totals from shapes alone, in text, Markdown and JSON, and the
built-in models' counts against PyTorch."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys

import pytest

import cnnkit
from cnnkit.errors import ShapeError, SpecError
from cnnkit.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from cnnkit.model import Sequential
from cnnkit.summarize import summary


def test_doctests_hold():
    assert doctest.testmod(importlib.import_module("cnnkit.summarize")).failed == 0


@pytest.mark.parametrize("first", ["import cnnkit", "import cnnkit.summarize; import cnnkit"])
def test_cnnkit_summary_is_callable_in_any_import_order(first):
    code = f"{first}; print(cnnkit.summary('lenet5').total_params, cnnkit.summary('lenet5', (28, 28, 1)).rows[0].name)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["61706", "conv1"]


LENET5 = [  # name, type, output, params, formula, MACs, receptive field, cumulative stride
    ("conv1", "Conv2d", (28, 28, 6), 156, "6 × (5×5×1 + 1) = 156", 117_600, 5, 1),
    ("relu1", "ReLU", (28, 28, 6), 0, None, 0, 5, 1),
    ("pool1", "MaxPool2d", (14, 14, 6), 0, None, 0, 6, 2),
    ("conv2", "Conv2d", (10, 10, 16), 2_416, "16 × (5×5×6 + 1) = 2,416", 240_000, 14, 2),
    ("relu2", "ReLU", (10, 10, 16), 0, None, 0, 14, 2),
    ("pool2", "MaxPool2d", (5, 5, 16), 0, None, 0, 16, 4),
    ("flatten1", "Flatten", (400,), 0, None, 0, 16, 4),
    ("fc1", "Linear", (120,), 48_120, "120 × (400 + 1) = 48,120", 48_000, 32, 4),
    ("relu3", "ReLU", (120,), 0, None, 0, 32, 4),
    ("fc2", "Linear", (84,), 10_164, "84 × (120 + 1) = 10,164", 10_080, 32, 4),
    ("relu4", "ReLU", (84,), 0, None, 0, 32, 4),
    ("fc3", "Linear", (10,), 850, "10 × (84 + 1) = 850", 840, 32, 4),
]


def test_lenet5_rows():
    s = summary("lenet5")
    assert s.name == "lenet5" and s.input_shape == (28, 28, 1)
    assert len(s.rows) == len(LENET5)
    for row, (name, type_, out, params, formula, macs, field, stride) in zip(s.rows, LENET5):
        assert (row.name, row.type, row.output_shape, row.params, row.macs) == (name, type_, out, params, macs)
        if formula:
            assert row.params_formula == formula
        assert row.receptive_field == (field, field) and row.stride == (stride, stride)
        n = 1
        for d in out:
            n *= d
        assert (row.memory_forward, row.memory_train) == (4 * n, 8 * n)
    assert s.total_params == 61_706
    assert s.total_macs == sum(r[5] for r in LENET5) == 416_520
    assert s.output_shape == (10,)


def test_cifar_net_totals_and_rows():
    s = summary("cifar-net")
    assert s.total_params == 2_168_362
    convs = [r for r in s.rows if r.type == "Conv2d"]
    assert [r.params_formula for r in convs] == [
        "32 × (3×3×3 + 1) = 896", "32 × (3×3×32 + 1) = 9,248",
        "64 × (3×3×32 + 1) = 18,496", "64 × (3×3×64 + 1) = 36,928"]
    assert [r.output_shape for r in s.rows if r.type == "MaxPool2d"] == [(16, 16, 32), (8, 8, 64)]
    assert s.rows[-1].receptive_field == (44, 44)


def test_the_lecture_layer_alone():
    s = summary(Conv2d(10, 5, stride=1, padding=2), (32, 32, 3))
    (row,) = s.rows
    assert row.output_shape == (32, 32, 10)
    assert row.params == 760 and row.params_formula == "10 × (5×5×3 + 1) = 760"
    assert row.macs == 32 * 32 * 10 * 5 * 5 * 3


def test_every_kind_of_argument_gives_the_same_summary(tmp_path):
    spec = cnnkit.builtin_spec("lenet5")
    path = tmp_path / "lenet.json"
    path.write_text(json.dumps(spec))
    inline = "conv(6,5,padding=2)-relu-maxpool(2)-conv(16,5)-relu-maxpool(2)-flatten-fc(120)-relu-fc(84)-relu-fc(10)"
    built = Sequential([Conv2d(6, 5, padding=2), ReLU(), MaxPool2d(2), Conv2d(16, 5), ReLU(), MaxPool2d(2),
                        Flatten(), Linear(120), ReLU(), Linear(84), ReLU(), Linear(10)], input_shape=(28, 28, 1))
    layers = [Conv2d(6, 5, padding=2), ReLU(), MaxPool2d(2), Conv2d(16, 5), ReLU(), MaxPool2d(2),
              Flatten(), Linear(120), ReLU(), Linear(84), ReLU(), Linear(10)]
    reference = summary("lenet5").to_dict()["layers"]
    for arg, shape in [(spec, None), (spec["layers"], (28, 28, 1)), (str(path), None), (inline, (28, 28, 1)),
                       (built, None), (layers, (28, 28, 1))]:
        assert summary(arg, shape).to_dict()["layers"] == reference
    assert all(layer.name is None for layer in layers)  # the caller's layers are not renamed


def test_summary_draws_no_weights():
    s = summary("conv(4096, 11)-flatten-fc(4096)", (224, 224, 3))  # 2.2 GB of fc weights if it were built
    assert s.total_params == 4096 * (11 * 11 * 3 + 1) + 4096 * (214 * 214 * 4096 + 1)


def test_another_input_shape():
    s = summary("lenet5", (32, 32, 3))
    assert s.rows[0].params_formula == "6 × (5×5×3 + 1) = 456"
    assert s.rows[7].params_formula == "120 × (576 + 1) = 69,240"


def test_batch_size_scales_macs_and_memory_not_params():
    one, many = summary("lenet5"), summary("lenet5", batch_size=64)
    assert many.total_params == one.total_params
    assert many.total_macs == 64 * one.total_macs
    assert many.memory_forward == 64 * one.memory_forward
    assert many.memory_train == 2 * many.memory_forward


def test_refusals_name_the_problem():
    with pytest.raises(ShapeError, match=r"no input shape; pass input_shape=\(H, W, C\)"):
        summary("conv(4,3)")
    with pytest.raises(ShapeError, match=r"conv1 \(Conv2d F=3, S=3, P=0\) on 7×7×1 \(height\): .* = 2\.33"):
        summary("conv(4,3,stride=3)", (7, 7, 1))
    with pytest.raises(SpecError, match="unknown model 'lenet6'"):
        summary("lenet6")
    with pytest.raises(SpecError, match="expected a Sequential"):
        summary(42)
    with pytest.raises(ShapeError, match="batch_size must be an integer >= 1"):
        summary("lenet5", batch_size=0)


def test_to_dict_has_the_interface_keys_and_is_json():
    d = json.loads(json.dumps(summary("lenet5").to_dict()))
    assert d["total_params"] == 61_706
    assert d["input_shape"] == [28, 28, 1]
    first = d["layers"][0]
    for key in ("name", "type", "output_shape", "params", "params_formula", "macs", "memory_forward_bytes",
                "memory_train_bytes", "receptive_field", "stride"):
        assert key in first
    assert first["output_shape"] == [28, 28, 6] and first["params_formula"] == "6 × (5×5×1 + 1) = 156"
    assert sum(layer["params"] for layer in d["layers"]) == d["total_params"]


def test_text_and_markdown():
    s = summary("lenet5")
    text = s.to_text()
    assert str(s) == text
    assert text.splitlines()[0] == "lenet5 on 28×28×1 (float32; MACs and memory per image)"
    assert "Total parameters: 61,706" in text
    assert "120 × (400 + 1) = 48,120" in text
    md = s.to_markdown().splitlines()
    table = [line for line in md if line.startswith("|")]
    assert len(table) == 2 + len(s.rows)
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "| conv1 | Conv2d | 28×28×6 | 6 × (5×5×1 + 1) = 156 | 117,600 |" in s.to_markdown()


def _torch_lenet5(nn):
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10))


def _torch_cifar_net(nn):
    def conv(c, k):
        return [nn.Conv2d(c, k, 3, padding=1), nn.ReLU()]

    return nn.Sequential(*conv(3, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 8 * 64, 512), nn.ReLU(), nn.Linear(512, 10))


@pytest.mark.torch
@pytest.mark.parametrize("name, make, total", [("lenet5", _torch_lenet5, 61_706),
                                               ("cifar-net", _torch_cifar_net, 2_168_362)])
def test_builtin_models_match_pytorch(torch, name, make, total):
    net = make(torch.nn)
    s = summary(name)
    assert sum(p.numel() for p in net.parameters()) == s.total_params == total
    # Layer by layer: parameters and output shapes (PyTorch's (N, C, H, W) read as H×W×C).
    x = torch.zeros(1, s.input_shape[2], *s.input_shape[:2])
    assert len(net) == len(s.rows)
    with torch.no_grad():
        for module, row in zip(net, s.rows):
            x = module(x)
            shape = tuple(x.shape[1:])
            ours = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
            assert ours == row.output_shape, row.name
            assert sum(p.numel() for p in module.parameters()) == row.params, row.name
    # And the model cnnkit builds holds exactly that many numbers.
    assert cnnkit.resolve_model(name).param_count() == total


def test_json_text_is_the_dict():
    s = summary("cifar-net")
    assert json.loads(s.to_json()) == s.to_dict()
    assert '"input_shape": [32, 32, 3]' in s.to_json()


def test_batchnorm_dropout_and_global_pooling():
    s = summary("conv(8,3,padding=1)-bn-relu-dropout(0.5)-gap-fc(10)", (16, 16, 3))
    by_name = {r.name: r for r in s.rows}
    assert by_name["bn1"].params == 16 and by_name["bn1"].params_formula == "2 × 8 = 16"
    assert by_name["dropout1"].output_shape == (16, 16, 8)
    assert by_name["gap1"].output_shape == (8,) and by_name["gap1"].receptive_field == (18, 18)
    assert by_name["fc1"].params_formula == "10 × (8 + 1) = 90"
    assert s.total_params == 8 * (27 + 1) + 16 + 90
