"""``cnnkit evaluate`` / ``cnnkit predict`` and the Python API behind them (cnnkit.evaluate,
Sequential.predict_images): figures checked against hand computations on models whose output is
known, real MNIST through --data-dir, and one clear line with the right exit status for bad names,
missing files, corrupt archives and unreadable images."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.data import Dataset
from cnnkit.errors import ImageError, ShapeError, UserInputError
from cnnkit.layers import Flatten, Linear

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def pixel_model(classes: int, names=None, preprocessing=None) -> cnnkit.Sequential:
    """A 1×1×classes → classes model whose logits are the pixel values (identity weights)."""
    m = cnnkit.Sequential([Flatten(), Linear(classes)], input_shape=(1, 1, classes))
    m[1].params["weight"].value[...] = np.eye(classes)
    m[1].params["bias"].value[...] = 0
    m.class_names = names
    m.preprocessing = preprocessing if preprocessing is not None else {"scale": 1.0}
    return m


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse refusing an argument
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- cnnkit.evaluate
def test_accuracy_per_class_confusion_and_loss_by_hand():
    logits = np.array([[9, 1, 0], [0, 9, 1], [0, 9, 1], [1, 0, 9], [9, 0, 1]], np.uint8)
    y = np.array([0, 1, 2, 2, 1])
    ds = Dataset(logits.reshape(5, 1, 1, 3), y, ["a", "b", "c"], "toy")
    ev = cnnkit.evaluate(pixel_model(3, ["a", "b", "c"]), ds)
    assert ev.accuracy == pytest.approx(3 / 5)
    assert ev.top5_accuracy is None  # fewer than 5 classes
    assert ev.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert ev.per_class() == {"a": {"accuracy": 1.0, "correct": 1, "count": 1},
                              "b": {"accuracy": 0.5, "correct": 1, "count": 2},
                              "c": {"accuracy": 0.5, "correct": 1, "count": 2}}
    z = logits.astype(np.float64)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert ev.loss == pytest.approx(-log_p[np.arange(5), y].mean())
    d = ev.to_dict()
    assert {"accuracy", "top5_accuracy", "per_class", "confusion"} <= set(d) and d["dataset"] == "toy"
    json.dumps(d)  # JSON-able as is


def test_top5_with_six_classes_and_a_class_without_examples():
    rng = np.random.default_rng(3)
    z = np.stack([rng.permutation(6) * 40 for _ in range(50)]).astype(np.uint8)  # distinct logits per row
    y = rng.integers(0, 5, 50)  # class 5 never appears
    ev = cnnkit.evaluate(pixel_model(6, list("uvwxyz")), (z.reshape(50, 1, 1, 6), y))
    rank = (z > z[np.arange(50), y][:, None]).sum(axis=1)  # how many logits beat the true one
    assert ev.top5_accuracy == pytest.approx(np.mean(rank < 5))
    assert ev.accuracy == pytest.approx(np.mean(rank == 0))
    assert ev.per_class()["z"] == {"accuracy": None, "correct": 0, "count": 0}
    assert "z" in ev.to_text() and "n/a" in ev.to_text()


def test_preprocessing_is_applied():
    # logits = (x·scale − mean)/std: the mean makes channel 0 lose although its pixel is larger
    m = pixel_model(2, ["p", "q"], {"scale": 1.0, "mean": [100.0, 0.0], "std": [1.0, 1.0]})
    ds = Dataset(np.array([[[[60, 10]]]], np.uint8), np.array([1]), ["p", "q"])
    assert cnnkit.evaluate(m, ds).accuracy == 1.0


def test_classes_are_matched_by_name():
    ds = Dataset(np.array([[[[0, 0, 9]]], [[[9, 0, 0]]]], np.uint8), np.array([0, 1]), ["c", "a"])
    ev = cnnkit.evaluate(pixel_model(3, ["a", "b", "c"]), ds)
    assert ev.accuracy == 1.0 and ev.class_names == ["a", "b", "c"]
    with pytest.raises(UserInputError, match=r"classes the model does not know: d; the model's classes are a, b, c"):
        cnnkit.evaluate(pixel_model(3, ["a", "b", "c"]), Dataset(np.zeros((1, 1, 1, 3), np.uint8), [0], ["d"]))


def test_wrong_image_shape_is_refused():
    ds = Dataset(np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 1]), ["a", "b"], "digits")
    with pytest.raises(ShapeError, match=r"model expects 1×1×3 images; the dataset digits has 28×28×1"):
        cnnkit.evaluate(pixel_model(3), ds)


# ----------------------------------------------------------------------------- predict_images
def test_predict_images_top_k_order_and_probabilities(tmp_path):
    m = pixel_model(3, ["r", "g", "b"], {"scale": 1 / 255})
    Image.new("RGB", (4, 5), (10, 200, 90)).save(tmp_path / "green.png")
    top = m.predict_images([tmp_path / "green.png", np.array([[[255, 0, 0]]], np.uint8)], top_k=2)
    assert [label for label, _ in top[0]] == ["g", "b"] and [label for label, _ in top[1]] == ["r", "g"]
    z = np.array([10, 200, 90]) / 255
    p = np.exp(z) / np.exp(z).sum()
    assert top[0][0][1] == pytest.approx(p[1], rel=1e-5) and top[0][1][1] == pytest.approx(p[2], rel=1e-5)
    assert len(m.predict_images(tmp_path / "green.png", top_k=10)[0]) == 3  # capped at the classes
    with pytest.raises(ImageError, match=r"top_k must be a positive integer"):
        m.predict_images(tmp_path / "green.png", top_k=0)


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture
def colour_setup(tmp_path):
    """A saved pixel model for RGB images and a folder of PNG/JPEG images of pure colours."""
    m = pixel_model(3, ["blue", "green", "red"], {"scale": 1 / 255})
    # the model sees 1×1 images: channel order r, g, b → make class names follow the channels
    m.class_names = ["red", "green", "blue"]
    cnnkit.save(m, tmp_path / "model.npz")
    colours = {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250)}
    for name, rgb in colours.items():
        (tmp_path / "pics" / name).mkdir(parents=True)
        Image.new("RGB", (6, 4), rgb).save(tmp_path / "pics" / name / "a.png")
        Image.new("RGB", (3, 3), rgb).save(tmp_path / "pics" / name / "b.jpg", quality=95)
    # one mislabelled image: a red picture in the blue folder
    Image.new("RGB", (5, 5), (250, 0, 0)).save(tmp_path / "pics" / "blue" / "c.png")
    return tmp_path


def test_cli_evaluate_folder_json_and_text(colour_setup, capsys):
    d = colour_setup
    code, out, err = run_cli(capsys, "evaluate", d / "model.npz", "--dataset", d / "pics", "--split", "all",
                             "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["accuracy"] == pytest.approx(6 / 7) and report["top5_accuracy"] is None
    assert report["class_names"] == ["red", "green", "blue"]
    assert report["confusion"] == [[2, 0, 0], [0, 2, 0], [1, 0, 2]]
    assert report["per_class"]["blue"] == {"accuracy": pytest.approx(2 / 3), "correct": 2, "count": 3}
    code, out, _ = run_cli(capsys, "evaluate", d / "model.npz", "--dataset", d / "pics", "--split", "all")
    assert code == 0 and "accuracy        85.71%" in out and "confusion (rows: true class" in out


def test_cli_predict_text_and_json(colour_setup, capsys):
    d = colour_setup
    img = d / "pics" / "green" / "a.png"
    code, out, err = run_cli(capsys, "predict", d / "model.npz", img, d / "pics" / "red" / "b.jpg",
                             "--top-k", "2", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert [r["image"] for r in result] == [str(img), str(d / "pics" / "red" / "b.jpg")]
    assert result[0]["predictions"][0]["label"] == "green" and len(result[0]["predictions"]) == 2
    assert result[1]["predictions"][0]["label"] == "red"
    probs = [p["probability"] for p in result[0]["predictions"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    code, out, _ = run_cli(capsys, "predict", d / "model.npz", img)
    assert code == 0 and out.splitlines()[0] == str(img) and out.splitlines()[1].split()[0] == "green"
    assert len(out.splitlines()) == 4  # the image, then all 3 classes (top-k capped)


@pytest.mark.parametrize("argv, code, message", [
    (["predict", "{m}", "{d}/nothing.png"], 2, r"nothing.png: no such image file"),
    (["predict", "{m}", "{d}/junk.png"], 2, r"junk.png: not an image Pillow can read"),
    (["predict", "{m}", "{d}/pics/red/a.png", "--resize", "error"], 2, r"image is 4x6 \(HxW\), expected 1x1"),
    (["predict", "{m}", "{d}/pics/red/a.png", "--top-k", "0"], 2, r"argument --top-k: expected a positive integer; received '0'"),
    (["predict", "{d}/missing.npz", "{d}/pics/red/a.png"], 1, r"missing.npz"),
    (["evaluate", "{m}", "--dataset", "imagenet"], 2, r"unknown dataset 'imagenet'; expected one of shapes, mnist"),
    (["evaluate", "{m}", "--dataset", "mnist", "--data-dir", "{d}/empty"], 1,
     r"--data-dir .*empty: missing t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"),
    (["evaluate", "{m}", "--dataset", "mnist", "--data-dir", "{d}/corrupt"], 1,
     r"t10k-images-idx3-ubyte.gz: truncated gzip archive"),
    (["evaluate", "{m}", "--dataset", "cifar10", "--data-dir", "{d}/empty"], 1, r"no cifar-10-batches-bin/"),
])
def test_cli_errors_are_one_line_with_the_right_status(colour_setup, capsys, argv, code, message):
    d = colour_setup
    (d / "junk.png").write_text("not a picture")
    (d / "empty").mkdir(exist_ok=True)
    (d / "corrupt").mkdir(exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        whole = gzip.compress(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
        (d / "corrupt" / name).write_bytes(whole[:len(whole) // 2])
    got, out, err = run_cli(capsys, *(a.format(m=d / "model.npz", d=d) for a in argv))
    assert got == code
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert re.search(message, last), last
    assert len([ln for ln in err.splitlines() if ": error:" in ln]) == 1


@pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason=f"real MNIST not found at {SHARED_MNIST}")
def test_cli_evaluate_real_mnist(tmp_path, capsys):
    """An untrained lenet5 on the real test set: the counts per class are MNIST's, the figures
    are those of cnnkit.evaluate on the same data."""
    model = cnnkit.resolve_model("lenet5", seed=1)
    model.class_names = [str(i) for i in range(10)]
    model.preprocessing = {"scale": 1 / 255, "mean": [0.1307], "std": [0.3081]}
    cnnkit.save(model, tmp_path / "lenet5.npz")
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "lenet5.npz", "--dataset", "mnist",
                             "--data-dir", SHARED_MNIST, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert [report["per_class"][str(i)]["count"] for i in range(10)] == TEST_COUNTS
    assert report["count"] == 10_000 and 0 <= report["top5_accuracy"] <= 1
    assert np.array(report["confusion"]).sum(axis=0).sum() == 10_000
