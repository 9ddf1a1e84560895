"""Fully-connected ⇄ convolution: both conversions exact, score maps equal to window crops."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cnnkit.convert import (conv_as_linear, crop_to_fit, nearest_fitting_sizes, score_map, score_map_shape,
                            to_fully_convolutional, total_stride, window_crop_difference, window_crops)
from cnnkit.errors import ShapeError, SpecError
from cnnkit.layers import Conv2d
from cnnkit.spec import model_from_config, resolve_model


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------- conv → FC
CONV_CASES = [
    dict(shape=(32, 32, 3), filters=10, size=5, stride=1, padding=2, dilation=1),
    dict(shape=(7, 7, 1), filters=1, size=3, stride=2, padding=0, dilation=1),
    dict(shape=(10, 12, 2), filters=4, size=(3, 2), stride=(2, 3), padding=((1, 0), (0, 2)), dilation=1),
    dict(shape=(10, 10, 3), filters=3, size=3, stride=1, padding="same", dilation=2),
    dict(shape=(8, 6, 3), filters=2, size=3, stride=2, padding="same", dilation=1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_as_linear_is_exact(case):
    rng = np.random.default_rng(0)
    conv = Conv2d(case["filters"], case["size"], case["stride"], case["padding"], case["dilation"])
    conv.build(case["shape"], rng, np.float64)
    conv.params["bias"].value[...] = rng.normal(size=case["filters"])
    result = conv_as_linear(conv)
    x = rng.normal(size=(3, *case["shape"]))
    y_conv = conv.forward(x).reshape(3, -1)
    y_fc = result.linear.forward(x.reshape(3, -1))
    assert rel(y_fc, y_conv) <= 1e-10
    assert result.output_shape == conv.output_shape(case["shape"])


@pytest.mark.parametrize("name", ["lenet5", "shapes-net", "cifar-net"])
def test_conv_as_linear_exact_for_builtin_conv_layers(name):
    model = resolve_model(name, dtype="float64", seed=1)
    for layer, in_shape, _ in model.shapes():
        if isinstance(layer, Conv2d):
            if np.prod(in_shape) * np.prod(layer.output_shape(in_shape)) > 40_000_000:
                continue  # cifar-net's 32×32 layers: dense weights of 0.8–8.6 GB; tested on 16×16 below
            layer.params["bias"].value[...] = np.random.default_rng(2).normal(size=layer.filters)
            x = np.random.default_rng(3).normal(size=(2, *in_shape))
            y = layer.forward(x).reshape(2, -1)
            assert rel(conv_as_linear(layer).linear.forward(x.reshape(2, -1)), y) <= 1e-10
    if name == "cifar-net":  # the same layers on a smaller input
        conv = model["conv3"]
        x = np.random.default_rng(4).normal(size=(2, 8, 8, 32))
        assert rel(conv_as_linear(conv, (8, 8, 32)).linear.forward(x.reshape(2, -1)),
                   conv.forward_cached(x)[0].reshape(2, -1)) <= 1e-10


@pytest.mark.parametrize("seed", range(20))
def test_conv_as_linear_exact_for_random_convs(seed):
    rng = np.random.default_rng(seed)
    while True:
        shape = tuple(int(v) for v in rng.integers(3, 12, 2)) + (int(rng.integers(1, 4)),)
        conv = Conv2d(int(rng.integers(1, 5)), tuple(int(v) for v in rng.integers(1, 4, 2)),
                      tuple(int(v) for v in rng.integers(1, 4, 2)),
                      [0, 1, 2, "same", ((1, 0), (0, 2))][int(rng.integers(0, 5))],
                      int(rng.integers(1, 3)))
        try:
            conv.build(shape, rng, np.float64)
            break
        except ShapeError:
            continue
    conv.params["bias"].value[...] = rng.normal(size=conv.filters)
    x = rng.normal(size=(2, *shape))
    assert rel(conv_as_linear(conv).linear.forward(x.reshape(2, -1)), conv.forward(x).reshape(2, -1)) <= 1e-10


def test_conv_as_linear_refuses_a_dense_weight_over_the_limit():
    conv = Conv2d(64, 3, padding=1)
    conv.build((64, 64, 3), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"weight has 3,221,225,472 entries \(12.0 GB\), more than the 1.0 MB limit"):
        conv_as_linear(conv, max_bytes=1 << 20)


def test_conv_as_linear_counts_the_lecture_example():
    conv = Conv2d(10, 5, padding=2)
    conv.build((32, 32, 3), np.random.default_rng(0))
    result = conv_as_linear(conv)
    assert result.conv_params == 760
    assert result.linear_weights == 31_457_280
    assert result.linear.params["weight"].value.shape == (3072, 10240)
    # every non-zero entry is one of the 750 shared weights
    w = result.linear.params["weight"].value
    assert np.count_nonzero(w) <= result.nonzero_weights
    assert set(np.unique(w[w != 0])) <= set(np.unique(conv.params["weight"].value))
    assert "760" in result.describe() and "31,457,280" in result.describe()


def test_conv_as_linear_refuses_non_conv_and_unbuilt():
    with pytest.raises(ShapeError, match="not built"):
        conv_as_linear(Conv2d(2, 3))
    from cnnkit.layers import Linear
    with pytest.raises(SpecError, match="expects a Conv2d"):
        conv_as_linear(Linear(3))


# --------------------------------------------------------------------------- FC → conv
def random_spec(rng):
    layers = []
    for _ in range(rng.integers(1, 3)):
        layers.append({"type": "conv2d", "filters": int(rng.integers(1, 5)), "size": int(rng.integers(1, 4)),
                       "padding": int(rng.integers(0, 2))})
        layers.append({"type": rng.choice(["relu", "tanh", "sigmoid"]).item()})
        if rng.random() < 0.5:
            layers.append({"type": "maxpool2d" if rng.random() < 0.5 else "avgpool2d", "size": 2})
    layers.append({"type": "flatten"})
    for _ in range(rng.integers(1, 4)):
        layers.append({"type": "linear", "outputs": int(rng.integers(1, 9))})
        layers.append({"type": rng.choice(["relu", "batchnorm2d", "dropout"]).item()})
    layers.append({"type": "linear", "outputs": 3})
    return {"layers": layers}


@pytest.mark.parametrize("name", ["lenet5", "cifar-net", "shapes-net"])
def test_fully_convolutional_builtins_exact(name):
    model = resolve_model(name, dtype="float64")
    model.eval()
    fcn = to_fully_convolutional(model)
    assert not any(type(l).__name__ in ("Flatten", "Linear") for l in fcn)
    x = np.random.default_rng(1).normal(size=(4, *model.input_shape))
    assert fcn.output_shape() == (1, 1, model.output_shape()[0])
    assert rel(fcn.logits(x).reshape(4, -1), model.logits(x)) <= 1e-10


@pytest.mark.parametrize("seed", range(12))
def test_fully_convolutional_random_specs_exact(seed):
    rng = np.random.default_rng(seed)
    while True:  # draw specs until one whose sizes all divide (strict arithmetic refuses the others)
        try:
            model = model_from_config(random_spec(rng), (8 + 2 * int(rng.integers(0, 3)), 8,
                                                         int(rng.integers(1, 4))), dtype="float64", seed=seed)
            break
        except ShapeError:
            continue
    for layer in model:  # make BatchNorm's running statistics non-trivial
        for key, buf in layer.buffers.items():
            buf[...] = rng.uniform(0.5, 1.5, size=buf.shape)
    model.eval()
    fcn = to_fully_convolutional(model)
    x = rng.normal(size=(3, *model.input_shape))
    assert rel(fcn.logits(x).reshape(3, -1), model.logits(x)) <= 1e-10


def test_original_model_untouched():
    model = resolve_model("lenet5", dtype="float64")
    before = {k: v.copy() for k, v in model.state_dict().items()}
    fcn = to_fully_convolutional(model)
    for p in fcn.parameters():
        p.value[...] = 0
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_no_fc_head_refused():
    model = model_from_config([{"type": "conv2d", "filters": 2, "size": 3}], (8, 8, 1))
    with pytest.raises(SpecError, match="no fully-connected head"):
        to_fully_convolutional(model)


# --------------------------------------------------------------------------- score maps
def test_shapes_net_every_cell_equals_its_window_crop():
    model = resolve_model("shapes-net", dtype="float64", seed=3)
    model.eval()
    x = np.random.default_rng(2).normal(size=(2, 64, 48, 3))
    sm = score_map(model, x)
    assert sm.scores.shape == (2, (64 - 32) // 4 + 1, (48 - 32) // 4 + 1, 6)
    assert sm.stride == (4, 4) and sm.window == (32, 32)
    for i in range(sm.scores.shape[1]):
        for j in range(sm.scores.shape[2]):
            x0, y0, x1, y1 = sm.box(i, j)
            crop = x[:, y0:y1, x0:x1]
            np.testing.assert_allclose(sm.scores[:, i, j], model.logits(crop), rtol=1e-10, atol=1e-12)
    assert window_crop_difference(model, x) <= 1e-10


def test_padded_models_differ_from_crops_and_the_difference_is_measured():
    # lenet5 pads its first conv: a crop sees zeros where the large image has pixels.
    model = resolve_model("lenet5", dtype="float64")
    model.eval()
    x = np.random.default_rng(4).normal(size=(1, 44, 44, 1))
    diff = window_crop_difference(model, x)
    assert diff > 1e-3  # real, documented difference (see docs/fully-convolutional.md)
    # on the training size itself there is one window and no difference
    small = np.random.default_rng(5).normal(size=(1, 28, 28, 1))
    assert window_crop_difference(model, small) <= 1e-10


def test_score_map_size_strict_refusal_and_crop():
    model = resolve_model("shapes-net")
    fcn = to_fully_convolutional(model)
    assert score_map_shape(fcn, (128, 96, 3), (32, 32, 3)) == (25, 17)
    with pytest.raises(ShapeError, match=r"\(45 - 32\)/4 \+ 1 = 4.25.*Sizes that fit: 44×44×3, 48×48×3"):
        score_map_shape(fcn, (45, 45, 3), (32, 32, 3))
    for size in nearest_fitting_sizes(fcn, (45, 45, 3), (32, 32, 3)):
        score_map_shape(fcn, size, (32, 32, 3))  # the suggestions work
    x = np.zeros((1, 47, 45, 3), np.float32)
    assert crop_to_fit(fcn, x, (32, 32, 3)).shape == (1, 44, 44, 3)
    assert score_map(model, x, crop=True).scores.shape == (1, 4, 4, 6)
    with pytest.raises(ShapeError, match="at least the training size"):
        score_map_shape(fcn, (20, 40, 3), (32, 32, 3))


def test_total_stride_and_window_crops():
    fcn = to_fully_convolutional(resolve_model("cifar-net"))
    assert total_stride(fcn) == (4, 4)
    x = np.arange(2 * 40 * 36 * 1, dtype=np.float64).reshape(2, 40, 36, 1)
    crops = window_crops(x, (3, 2), (4, 4), (32, 32))
    assert crops.shape == (12, 32, 32, 1)
    np.testing.assert_array_equal(crops[5], x[0, 8:40, 4:36])


# --------------------------------------------------------------------------- CLI
def run(*args):
    return subprocess.run([sys.executable, "-m", "cnnkit", *args], capture_output=True, text=True)


def test_cli_conv_as_fc():
    r = run("conv-as-fc", "--input", "32x32x3", "--filters", "10", "--size", "5", "--pad", "2")
    assert r.returncode == 0, r.stderr
    assert "760" in r.stdout and "31,457,280" in r.stdout


def test_cli_conv_as_fc_large_input_gives_counts_without_building():
    r = run("conv-as-fc", "--input", "224x224x3", "--filters", "64", "--size", "3", "--pad", "1")
    assert r.returncode == 0, r.stderr
    assert "64 × (3×3×3 + 1) = 1,792" in r.stdout and "483,385,147,392" in r.stdout and "not built" in r.stdout
    r = run("conv-as-fc", "--input", "7x7x1", "--filters", "1", "--size", "3", "--stride", "3")
    assert r.returncode == 2 and "2.33" in r.stderr


def test_cli_fc_as_conv_and_refusal():
    r = run("fc-as-conv", "shapes-net", "--on", "64x64x3")
    assert r.returncode == 0, r.stderr
    assert "a 9×9 map of 6 class scores" in r.stdout
    r = run("fc-as-conv", "shapes-net", "--on", "65x64x3")
    assert r.returncode == 2
    assert "Sizes that fit: 64×64×3, 68×64×3" in r.stderr and "Traceback" not in r.stderr
    r = run("fc-as-conv", "conv(2,3)", "--input", "8x8x1")
    assert r.returncode == 2 and "no fully-connected head" in r.stderr
