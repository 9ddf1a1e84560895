"""Model specs: inline text, JSON files and built-in names → Sequential; and the refusals."""

from __future__ import annotations

import doctest
import json

import pytest

from cnnkit import spec as spec_module
from cnnkit import zoo
from cnnkit.errors import ShapeError, SpecError
from cnnkit.layers import Conv2d, Linear, MaxPool2d
from cnnkit.spec import model_from_config, parse_inline, resolve_model, resolve_spec
from cnnkit.summarize import summary


def test_doctests_hold():
    assert doctest.testmod(spec_module).failed == 0
    assert doctest.testmod(zoo).failed == 0


def test_inline_positional_keyword_aliases_and_bare_words():
    assert parse_inline("conv(6, 5, padding=same)-relu-pool(2)-fc(10)") == [
        {"type": "conv2d", "filters": 6, "size": 5, "padding": "same"}, {"type": "relu"},
        {"type": "maxpool2d", "size": 2}, {"type": "linear", "outputs": 10}]
    assert parse_inline("conv(8,(3,5),stride=(1,2)), bn, gap") == [
        {"type": "conv2d", "filters": 8, "size": (3, 5), "stride": (1, 2)}, {"type": "batchnorm2d"},
        {"type": "globalavgpool2d"}]
    assert parse_inline("Conv2d(4, 3, bias=false) | dropout(0.25)") == [
        {"type": "conv2d", "filters": 4, "size": 3, "bias": False}, {"type": "dropout", "p": 0.25}]


@pytest.mark.parametrize("text, match", [
    ("conv(6,5", r"unbalanced '\('"),
    ("conv(6,5))", r"unbalanced '\)'"),
    ("conv(6,5)+relu", r"not of the form name or name\(args\)"),
    ("conv(6,,5)", r"not of the form name or name\(args\)"),
    ("conv(6)(5)", r"not of the form name or name\(args\)"),
    ("frobnicate(3)", r"unknown layer type 'frobnicate'; expected one of .*conv2d"),
    ("conv(1,2,3,4,5,6,7,8,9,10)", r"conv2d takes at most 8 positional arguments"),
    ("conv(**kw)", r"'\*\*' arguments are not allowed"),
    ("conv(lambda: 1)", r"cannot read argument"),
    ("", r"inline spec is empty"),
])
def test_malformed_inline_specs(text, match):
    with pytest.raises(SpecError, match=match):
        parse_inline(text)


@pytest.mark.parametrize("cfg, error, match", [
    ({"layers": []}, SpecError, r"non-empty \"layers\" list"),
    ([], SpecError, r"non-empty \"layers\" list"),
    ("conv", SpecError, r"non-empty \"layers\" list"),
    ({"layers": [{"filters": 3}]}, SpecError, r"layer 1: each layer must be an object with a \"type\""),
    ({"layers": [{"type": "conv2d", "filters": 3, "colour": "red"}]}, SpecError,
     r"layer 1 \(conv2d\): unknown argument 'colour'; expected one of filters, size"),
    ({"layers": [{"type": "conv2d"}]}, SpecError, r"layer 1 \(conv2d\): .*missing 1 required positional argument"),
    ({"layers": [{"type": "relu"}, {"type": "conv2d", "filters": -4}]}, ShapeError,
     r"layer 2: Conv2d: filters must be an integer >= 1. Received: filters=-4"),
    ({"layers": [{"type": "conv2d", "filters": 4, "init": "magic"}]}, SpecError, r"unknown init 'magic'"),
    ({"layers": [{"type": "relu"}], "input_shape": [28, 28]}, SpecError, r"input_shape must be \[H, W, C\]"),
    ({"layers": [{"type": "relu"}], "input_shape": [28, 0, 1]}, SpecError, r"positive integers"),
    ({"layers": [{"type": "relu"}], "input_shape": [28, 28.5, 1]}, SpecError, r"positive integers"),
    ({"layers": [{"type": "relu"}], "dtype": "int8"}, SpecError, r"dtype must be float32 or float64"),
    ({"layers": [{"type": "relu"}], "name": 7}, SpecError, r"name must be a string"),
    ({"layers": [{"type": "relu", "name": "a"}, {"type": "relu", "name": "a"}]}, SpecError,
     r"layer names must be unique. Repeated: a"),
])
def test_malformed_specs_are_refused_naming_the_problem(cfg, error, match):
    with pytest.raises(error, match=match):
        model_from_config(cfg)


def test_impossible_shapes_are_refused_when_the_input_is_known():
    cfg = {"input_shape": [7, 7, 1], "layers": [{"type": "conv2d", "filters": 1, "size": 3, "stride": 3}]}
    with pytest.raises(ShapeError, match=r"conv1 \(Conv2d F=3, S=3, P=0\) on 7×7×1"):
        model_from_config(cfg)
    with pytest.raises(ShapeError, match=r"fc1 \(Linear\): expected an input shape \(D,\).*add Flatten\(\)"):
        model_from_config({"input_shape": [4, 4, 1], "layers": [{"type": "fc", "outputs": 2}]})


def test_json_files_dicts_and_lists(tmp_path):
    layers = [{"type": "conv", "filters": 4, "size": 3, "padding": [[0, 1], [0, 1]]}, {"type": "flatten"},
              {"type": "fc", "outputs": 2}]
    (tmp_path / "net.json").write_text(json.dumps({"input_shape": [8, 8, 1], "layers": layers}))
    (tmp_path / "bare.json").write_text(json.dumps(layers))
    model = resolve_model(str(tmp_path / "net.json"))
    assert model.name == "net" and model.input_shape == (8, 8, 1)
    assert model.layers[0].resolved_padding((8, 8, 1)) == ((0, 1), (0, 1))
    assert model.output_shape() == (2,)
    assert resolve_model(str(tmp_path / "bare.json"), (8, 8, 1)).output_shape() == (2,)


@pytest.mark.parametrize("content, match", [
    ("{not json", r"is not valid JSON"),
    ('"a string"', r"expected an object with a \"layers\" list"),
    ('{"layers": 3}', r"non-empty \"layers\" list"),
])
def test_bad_json_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=match):
        resolve_model(str(path))


def test_missing_file_and_unknown_model():
    with pytest.raises(SpecError, match=r"spec file 'nowhere.json' not found"):
        resolve_spec("nowhere.json")
    with pytest.raises(SpecError, match=r"unknown model 'resnet50'; expected one of lenet5, cifar-net, shapes-net"):
        resolve_spec("resnet50")


def test_build_false_draws_no_weights_but_knows_the_shapes():
    model = resolve_model("cifar-net", build=False)
    assert not model.built and model.layers[0].params == {}
    assert model.output_shape((32, 32, 3)) == (10,)
    built = resolve_model("cifar-net")
    assert built.built and built.param_count() == 2_168_362


def test_config_round_trip_keeps_the_architecture():
    model = resolve_model("lenet5")
    again = model_from_config(json.loads(json.dumps(model.config())))
    assert again.config() == model.config()
    assert summary(again).to_dict() == summary(model).to_dict()


def test_python_layers_infer_their_input_sizes():
    from cnnkit.layers import Flatten, ReLU
    from cnnkit.model import Sequential

    model = Sequential([Conv2d(6, 5, padding=2), ReLU(), MaxPool2d(2), Flatten(), Linear(10)], input_shape=(28, 28, 1))
    assert model.layers[0].params["weight"].shape == (5, 5, 1, 6)
    assert model.layers[-1].params["weight"].shape == (14 * 14 * 6, 10)


# --------------------------------------------------------------------------- built-in models
def test_builtin_models_as_the_interface_defines_them():
    lenet = zoo.builtin_spec("lenet5")
    assert lenet["input_shape"] == [28, 28, 1]
    assert [(c["type"], c.get("filters", c.get("outputs")), c.get("size"), c.get("padding", 0))
            for c in lenet["layers"] if c["type"] in ("conv2d", "linear", "maxpool2d")] == [
        ("conv2d", 6, 5, 2), ("maxpool2d", None, 2, 0), ("conv2d", 16, 5, 0), ("maxpool2d", None, 2, 0),
        ("linear", 120, None, 0), ("linear", 84, None, 0), ("linear", 10, None, 0)]
    cifar = zoo.builtin_spec("cifar-net")
    assert cifar["input_shape"] == [32, 32, 3]
    convs = [c for c in cifar["layers"] if c["type"] == "conv2d"]
    assert [(c["filters"], c["size"], c["padding"]) for c in convs] == [(32, 3, 1), (32, 3, 1), (64, 3, 1), (64, 3, 1)]
    assert [c["outputs"] for c in cifar["layers"] if c["type"] == "linear"] == [512, 10]
    assert zoo.builtin_spec("shapes-net")["layers"][-1]["outputs"] == zoo.SHAPES_CLASSES_DEFAULT == 6


def test_builtin_models_take_other_inputs_and_class_counts():
    spec = zoo.builtin_spec("lenet5", (32, 32, 3), classes=7)
    assert spec["input_shape"] == [32, 32, 3] and spec["layers"][-1]["outputs"] == 7
    assert resolve_model("LeNet5", (32, 32, 3), classes=7, build=False).output_shape((32, 32, 3)) == (7,)
    with pytest.raises(SpecError, match="unknown model 'vgg'"):
        zoo.builtin_spec("vgg")
