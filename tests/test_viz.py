"""Pictures that are correct, not just pretty: pixel values follow the documented rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cnnkit import AvgPool2d, Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Sequential
from cnnkit.errors import CnnkitError, LabelError, UserInputError
from cnnkit.viz import (activation_maps, activation_pixels, confusion_matrix, filter_pixels, per_class_accuracy,
                        plot_activations, plot_confused, plot_confusion, plot_curves, plot_filters, plot_saliency,
                        saliency_map)

# A vertical-edge detector (Sobel x): responds where the image changes from left to right.
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_model(dtype=np.float32) -> Sequential:
    model = Sequential([Conv2d(1, 3, bias=False, name="edge"), MaxPool2d(2, name="pool")],
                       input_shape=(8, 8, 1), dtype=dtype)
    model["edge"].params["weight"].value[:, :, 0, 0] = SOBEL_X
    return model


def loop_conv(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Cross-correlation, valid, stride 1, by loops: the obviously-correct oracle."""
    h, w = x.shape
    f = k.shape[0]
    y = np.zeros((h - f + 1, w - f + 1))
    for i in range(h - f + 1):
        for j in range(w - f + 1):
            y[i, j] = sum(x[i + a, j + b] * k[a, b] for a in range(f) for b in range(f))
    return y


def documented_rule(y: np.ndarray) -> np.ndarray:
    """The rule in cnnkit.viz.activations, restated: floor(255 (y - min) / (max - min) + 0.5)."""
    return np.floor(255.0 * (y - y.min()) / (y.max() - y.min()) + 0.5).astype(np.uint8)


def read_cell(png_path, box) -> np.ndarray:
    """The unzoomed content of a cell, read back from the PNG file."""
    top, left, h, w, z = box
    with Image.open(png_path) as img:
        pixels = np.asarray(img.convert("RGB"))
    block = pixels[top:top + h * z, left:left + w * z]
    # every value is drawn as a z×z block of one colour
    assert (block == np.repeat(np.repeat(block[::z, ::z], z, axis=0), z, axis=1)).all()
    return block[::z, ::z]


# --------------------------------------------------------------------------- activations
def test_edge_image_activation_is_exact(tmp_path):
    x = np.zeros((8, 8, 1), np.float32)
    x[:, 4:] = 1.0  # dark left half, bright right half: one vertical edge between columns 3 and 4
    model = edge_model()
    picture = plot_activations(model, x)
    png = picture.save(tmp_path / "act.png")

    edge = read_cell(png, picture.cells[("edge", 0)])
    assert (edge[..., 0] == edge[..., 1]).all() and (edge[..., 1] == edge[..., 2]).all()  # grey
    # Sobel x on the step: 4 where the 3×3 window straddles the edge (output columns 2 and 3), else 0.
    expected_y = np.zeros((6, 6))
    expected_y[:, 2:4] = 4.0
    assert np.array_equal(loop_conv(x[:, :, 0].astype(np.float64), SOBEL_X), expected_y)
    assert edge[..., 0].tolist() == [[0, 0, 255, 255, 0, 0]] * 6
    pool = read_cell(png, picture.cells[("pool", 0)])
    assert pool[..., 0].tolist() == [[0, 255, 0]] * 3


def test_activation_pixels_equal_the_layer_output_scaled_as_documented(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (8, 8, 1))  # a known image with signed values: lo < 0 < hi
    model = edge_model(np.float64)
    picture = plot_activations(model, x)
    png = picture.save(tmp_path / "act.png")

    y = loop_conv(x[:, :, 0], SOBEL_X)  # the layer's output, recomputed independently
    assert y.min() < 0 < y.max()
    got = read_cell(png, picture.cells[("edge", 0)])[..., 0]
    assert np.array_equal(got, documented_rule(y))
    pooled = y.reshape(3, 2, 3, 2).max(axis=(1, 3))  # MaxPool 2: (6, 6) -> (3, 3)
    assert np.array_equal(read_cell(png, picture.cells[("pool", 0)])[..., 0], documented_rule(pooled))
    # the same numbers through the public rule and the returned maps
    maps = dict((name, y_) for name, _, y_ in activation_maps(model, x))
    np.testing.assert_allclose(maps["edge"][:, :, 0], y, rtol=1e-12)
    assert np.array_equal(activation_pixels(maps["edge"])[0][:, :, 0], got)


def test_activation_scale_is_shared_by_the_channels_of_a_layer():
    model = Sequential([Conv2d(2, 1, bias=False, name="c")], input_shape=(2, 2, 1), dtype=np.float64)
    model["c"].params["weight"].value[0, 0, 0] = [1.0, 0.5]  # channel 1 is half of channel 0
    x = np.array([[0.0, 1.0], [2.0, 4.0]])[:, :, None]
    picture = plot_activations(model, x)
    ch0 = picture.cell(("c", 0))[..., 0]
    ch1 = picture.cell(("c", 1))[..., 0]
    assert ch0.tolist() == [[0, 64], [128, 255]]  # lo = 0, hi = 4
    assert ch1.tolist() == [[0, 32], [64, 128]]  # 0.5, 1, 2 on the same scale (floor(x + 0.5))


def test_constant_output_is_black_and_order_is_low_to_high():
    assert activation_pixels(np.full((2, 2), 3.0))[0].tolist() == [[0, 0], [0, 0]]
    model = Sequential([Conv2d(4, 3, name="c1"), ReLU(), MaxPool2d(2, name="p1"), Conv2d(4, 3, name="c2"),
                        AvgPool2d(3, name="p2"), GlobalAvgPool2d(name="gap"), Linear(3)], input_shape=(12, 12, 3))
    maps = activation_maps(model, np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8))
    assert [(n, t, y.shape) for n, t, y in maps] == [
        ("c1", "Conv2d", (10, 10, 4)), ("p1", "MaxPool2d", (5, 5, 4)), ("c2", "Conv2d", (3, 3, 4)),
        ("p2", "AvgPool2d", (1, 1, 4)), ("gap", "GlobalAvgPool2d", (1, 1, 4))]  # GAP (C,) shown as 1×1 maps
    np.testing.assert_allclose(maps[4][2], maps[2][2].mean(axis=(0, 1), keepdims=True), rtol=1e-5)


def test_activation_layer_errors():
    model = edge_model()
    x = np.zeros((8, 8, 1), np.float32)
    with pytest.raises(UserInputError, match=r"no layer named 'nope'; conv and pool layers are edge, pool"):
        plot_activations(model, x, layer="nope")
    assert list(plot_activations(model, x, layer="pool").cells) == [("input",), ("pool", 0)]
    fc = Sequential([Flatten(), Linear(2)], input_shape=(4, 4, 1))
    with pytest.raises(UserInputError, match="has no conv or pool layer"):
        plot_activations(fc, np.zeros((4, 4, 1), np.float32))
    with pytest.raises(UserInputError, match=r"takes one image of \(8, 8, 1\)"):
        plot_activations(model, np.zeros((9, 8, 1), np.float32))


# --------------------------------------------------------------------------- filters
def test_filter_pixels_rule():
    w = np.zeros((1, 4, 1, 2))
    w[0, :, 0, 0] = [-2.0, 0.0, 1.0, 2.0]
    w[0, :, 0, 1] = [0.0, 0.0, 0.0, 0.0]  # an all-zero filter is mid-grey
    assert filter_pixels(w)[0, :, 0, 0].tolist() == [0, 128, 191, 255]
    assert filter_pixels(w)[0, :, 0, 1].tolist() == [128, 128, 128, 128]


def test_first_layer_rgb_filters_are_drawn_in_colour(tmp_path):
    model = Sequential([Conv2d(3, 2, name="conv1"), ReLU(), Conv2d(2, 2, name="conv2")], input_shape=(6, 6, 3))
    w = model["conv1"].params["weight"].value  # (2, 2, 3, 3)
    w[...] = 0
    w[0, 0, 0, 0] = 1.0  # filter 0: top-left pixel pure red
    w[1, 1, 2, 0] = -1.0  # bottom-right: negative blue
    picture = plot_filters(model)
    png = picture.save(tmp_path / "f.png")
    cell = read_cell(png, picture.cells[(0,)])
    assert cell.shape == (2, 2, 3)
    assert cell[0, 0].tolist() == [255, 128, 128]
    assert cell[1, 1].tolist() == [128, 128, 0]
    assert cell[0, 1].tolist() == [128, 128, 128]
    assert set(picture.cells) == {(0,), (1,), (2,)}


def test_deeper_filters_one_grey_cell_per_input_channel():
    model = Sequential([Conv2d(5, 3, name="a"), Conv2d(4, 3, name="b")], input_shape=(8, 8, 3))
    w = model["b"].params["weight"].value  # (3, 3, 5, 4)
    picture = plot_filters(model, "b")
    assert set(picture.cells) == {(k, c) for k in range(4) for c in range(5)}
    for k in range(4):
        for c in range(5):
            cell = picture.cell((k, c))
            assert (cell[..., 0] == cell[..., 2]).all()
            assert np.array_equal(cell[..., 0], filter_pixels(w)[:, :, c, k])
    capped = plot_filters(model, "b", max_filters=2, max_channels=3)
    assert set(capped.cells) == {(k, c) for k in range(2) for c in range(3)}


def test_filters_errors():
    model = Sequential([Conv2d(2, 3, name="conv1"), ReLU(name="act")], input_shape=(5, 5, 1))
    assert set(plot_filters(model).cells) == {(0,), (1,)}  # one channel: grey, one cell per filter
    with pytest.raises(UserInputError, match=r"no layer named 'conv9' in model 'model'; conv layers are conv1"):
        plot_filters(model, "conv9")
    with pytest.raises(UserInputError, match=r"layer 'act' is ReLU, not Conv2d; conv layers are conv1"):
        plot_filters(model, "act")
    fc = Sequential([Flatten(), Linear(2)], input_shape=(4, 4, 1))
    with pytest.raises(UserInputError, match="has no conv layer to show"):
        plot_filters(fc)


# --------------------------------------------------------------------------- saliency
def test_saliency_is_the_gradient_of_the_predicted_score(rng):
    model = Sequential([Conv2d(3, 3, name="c"), ReLU(), MaxPool2d(2), Flatten(), Linear(4)],
                       input_shape=(6, 6, 2), dtype=np.float64, seed=3)
    x = rng.normal(size=(6, 6, 2))
    before = [p.grad.copy() for p in model.parameters()]
    sal, k, probs = saliency_map(model, x)
    assert sal.shape == (6, 6) and (sal >= 0).all() and sal.max() > 0
    assert k == int(np.argmax(model.predict(x[None])[0])) and probs.sum() == pytest.approx(1.0)
    # against central differences of the predicted logit, every pixel and channel
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (model.logits(xp[None])[0, k] - model.logits(xm[None])[0, k]) / (2 * h)
    np.testing.assert_allclose(sal, np.abs(num).max(axis=-1), rtol=1e-6, atol=1e-8)
    assert all(np.array_equal(b, p.grad) for b, p in zip(before, model.parameters()))  # .grad untouched
    picture = plot_saliency(model, x)
    assert set(picture.cells) == {(0, "input"), (0, "saliency"), (0, "overlay")}
    assert picture.cell((0, "saliency")).shape == (6, 6, 3)


def test_saliency_of_an_image_file(tmp_path):
    model = Sequential([Conv2d(2, 3), Flatten(), Linear(3)], input_shape=(10, 10, 3))
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 14, 3), dtype=np.uint8)).save(path)
    sal, k, _ = saliency_map(model, path)  # resized to 10×10 as cnnkit predict does
    assert sal.shape == (10, 10) and sal.max() > 0 and 0 <= k < 3


# --------------------------------------------------------------------------- curves
def history(n=6, with_val=True):
    return {"epochs": [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_accuracy": 0.5 + 0.05 * i,
                        "val_loss": 1.1 / (i + 1) if with_val else None,
                        "val_accuracy": 0.45 + 0.05 * i if with_val else None,
                        "lr": 0.1 * 0.1 ** (i // 2), "timings": {}} for i in range(n)]}


def test_curves_png_written_and_valid(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps(history()))
    png = plot_curves(tmp_path).save(tmp_path / "curves.png")  # a run folder works as the source
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (1200, 380)
        a = np.asarray(img.convert("RGB")).astype(int)
    red = (a[..., 0] > 180) & (a[..., 1] < 90) & (a[..., 2] < 90)  # the validation line
    blue = (a[..., 2] > 150) & (a[..., 0] < 80)  # the train line
    green = (a[..., 1] > 130) & (a[..., 0] < 90) & (a[..., 2] < 90)  # the learning rate
    assert red.sum() > 200 and blue.sum() > 200 and green.sum() > 200
    assert green[:, 800:].sum() == green.sum()  # the learning rate is in the third panel only
    no_val = np.asarray(plot_curves(history(3, with_val=False)).image).astype(int)
    assert ((no_val[..., 0] > 180) & (no_val[..., 1] < 90) & (no_val[..., 2] < 90)).sum() < 20


def test_curves_refuse_what_is_not_a_history(tmp_path):
    with pytest.raises(CnnkitError, match="no such file"):
        plot_curves(tmp_path)
    (tmp_path / "history.json").write_text("{not json")
    with pytest.raises(CnnkitError, match="not a readable history.json"):
        plot_curves(tmp_path / "history.json")
    with pytest.raises(CnnkitError, match="expected"):
        plot_curves({"epochs": 3})


# --------------------------------------------------------------------------- confusion
def test_confusion_matrix_and_per_class_accuracy():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(cm)
    assert acc[:3].tolist() == [0.5, 1.0, pytest.approx(2 / 3)] and np.isnan(acc[3])
    with pytest.raises(LabelError, match=r"predictions must be in 0..3; received 0..4"):
        confusion_matrix([0, 1], [0, 4], 4)


def test_confusion_pictures(tmp_path):
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2, 1, 1, 1])  # 2→1 three times, 0→1 twice, 1→0 once
    probs = np.full((9, 3), 0.1)
    probs[np.arange(9), y_pred] = [0.8, 0.6, 0.9, 0.8, 0.7, 0.8, 0.5, 0.95, 0.7]
    images = np.random.default_rng(0).integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)
    png = plot_confusion(confusion_matrix(y_true, y_pred, 3), ["a", "b", "c"]).save(tmp_path / "cm.png")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 300
    confused = plot_confused(images, y_true, y_pred, probs, ["a", "b", "c"], pairs=2, per_pair=2)
    # the two most frequent mistakes (2→1, then 0→1), most confident first, two each
    assert list(confused.cells) == [(7,), (8,), (2,), (1,)]
    assert np.array_equal(confused.cell((7,)), images[7])
    png = confused.save(tmp_path / "confused.png")
    assert np.array_equal(read_cell(png, confused.cells[(2,)]), images[2])
    none = plot_confused(images, y_true, y_true, probs, ["a", "b", "c"])
    assert none.cells == {}
