"""``cnnkit visualize`` and ``cnnkit report``: pictures written, and bad input refused with one
clear line (exit 2 for the user's input, exit 1 for missing or corrupt files)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnkit import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from cnnkit.cli import main
from cnnkit.io import save


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vis")
    model = Sequential([Conv2d(4, 3, name="conv1"), ReLU(), MaxPool2d(2), Conv2d(6, 3, name="conv2"), Flatten(),
                        Linear(3)], input_shape=(12, 12, 3))
    model.class_names = ["a", "b", "c"]
    save(model, d / "model.npz")
    save(Sequential([Flatten(), Linear(3)], input_shape=(12, 12, 3)), d / "fc.npz")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 24, 3), dtype=np.uint8)).save(d / "cat.png")
    (d / "notes.png").write_text("this is not an image")
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip file" * 10)
    return d


def cli(capsys, *argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str, command: str = "visualize") -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"cnnkit {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def valid_png(path) -> tuple[int, int]:
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


@pytest.mark.parametrize("kind, image", [("filters", None), ("activations", "cat.png"), ("saliency", "cat.png")])
def test_model_pictures(capsys, files, tmp_path, kind, image):
    out = tmp_path / f"{kind}.png"
    args = [files / "model.npz"] + ([files / image] if image else []) + ["--kind", kind, "--out", out]
    status, stdout, err = cli(capsys, "visualize", *args)
    assert status == 0, err
    assert stdout.strip() == str(out)
    w, h = valid_png(out)
    assert w > 50 and h > 50


def test_filters_of_a_named_layer_and_activations_of_one_layer(capsys, files, tmp_path):
    assert cli(capsys, "visualize", files / "model.npz", "--kind", "filters", "--layer", "conv2",
               "--out", tmp_path / "f2.png")[0] == 0
    assert cli(capsys, "visualize", files / "model.npz", files / "cat.png", "--kind", "activations",
               "--layer", "conv2", "--out", tmp_path / "a2.png")[0] == 0
    assert valid_png(tmp_path / "a2.png")[1] < valid_png(tmp_path / "f2.png")[1]


@pytest.mark.parametrize("args, message", [
    (["model.npz", "--kind", "filters", "--layer", "conv7"], r"no layer named 'conv7' in model .*conv layers are conv1, conv2"),
    (["model.npz", "--kind", "filters", "--layer", "relu1"], r"layer 'relu1' is ReLU, not Conv2d"),
    (["model.npz", "cat.png", "--kind", "activations", "--layer", "fc1"], r"layer 'fc1' is Linear; activation maps"),
    (["model.npz", "notes.png", "--kind", "activations"], r"notes.png: not an image Pillow can read"),
    (["model.npz", "missing.png", "--kind", "saliency"], r"missing.png: no such image file"),
    (["fc.npz", "--kind", "filters"], r"has no conv layer to show"),
    (["model.npz", "--kind", "saliency"], r"--kind saliency needs an IMAGE"),
    (["model.npz", "cat.png", "--kind", "filters"], r"--kind filters takes no IMAGE"),
    (["model.npz", "cat.png", "--kind", "saliency", "--layer", "conv1"], r"--layer applies to --kind filters"),
])
def test_bad_input_exits_2_with_one_line(capsys, files, tmp_path, args, message):
    argv = [files / a if a.endswith((".npz", ".png")) else a for a in args]
    status, stdout, err = cli(capsys, "visualize", *argv, "--out", tmp_path / "x.png")
    assert status == 2
    assert stdout == ""
    line = one_error_line(err)
    assert __import__("re").search(message, line), line
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("name, message", [("absent.npz", "absent.npz"), ("corrupt.npz", "corrupt.npz")])
def test_missing_or_corrupt_model_file_exits_1(capsys, files, tmp_path, name, message):
    status, stdout, err = cli(capsys, "visualize", files / name, "--kind", "filters", "--out", tmp_path / "x.png")
    assert status == 1
    assert message in one_error_line(err)
    assert not (tmp_path / "x.png").exists()


def test_unknown_kind_is_a_usage_error(capsys, files, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["visualize", str(files / "model.npz"), "--kind", "weights", "--out", str(tmp_path / "x.png")])
    assert e.value.code == 2
    assert "invalid choice: 'weights'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from runfolder import make_run

    return make_run(tmp_path_factory.mktemp("run"))


@pytest.mark.parametrize("kind", ["curves", "confusion", "confused"])
def test_run_pictures(capsys, run_dir, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    status, stdout, err = cli(capsys, "visualize", run_dir, "--kind", kind, "--out", out)
    assert status == 0, err
    assert stdout.strip() == str(out)
    w, h = valid_png(out)
    assert w > 300 and h > 200


def test_run_errors(capsys, run_dir, tmp_path):
    status, _, err = cli(capsys, "visualize", tmp_path / "nowhere", "--kind", "curves", "--out", tmp_path / "c.png")
    assert status == 1 and "no such run folder" in one_error_line(err)
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = cli(capsys, "visualize", empty, "--kind", "curves", "--out", tmp_path / "c.png")
    assert status == 1 and "history.json: no such file" in one_error_line(err)
    status, _, err = cli(capsys, "visualize", empty, "--kind", "confusion", "--out", tmp_path / "c.png")
    assert status == 1 and "model.npz: no model file" in one_error_line(err)
    status, _, err = cli(capsys, "visualize", run_dir, "--kind", "curves", "--out", tmp_path / "no" / "c.png")
    assert status == 2 and "does not exist" in one_error_line(err)


def test_report_command(capsys, run_dir):
    (run_dir / "report.html").unlink(missing_ok=True)
    status, stdout, err = cli(capsys, "report", run_dir)
    assert status == 0, err
    assert stdout.strip() == str(run_dir / "report.html")
    text = (run_dir / "report.html").read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") >= 8 and 'class="missing"' not in text
    for section in ("metrics", "model", "curves", "per-class", "confusion", "filters", "activations", "saliency",
                    "settings"):
        assert f'<section id="{section}">' in text
    assert "16 × (5×5×3 + 1) = 1,216" in text  # the summary table's parameter formula


def test_report_of_an_unfinished_run_says_what_is_missing(capsys, tmp_path):
    (tmp_path / "run.json").write_text('{"dataset": "shapes", "model": "shapes-net"}')
    status, _, err = cli(capsys, "report", tmp_path)
    assert status == 1 and "model.npz" in one_error_line(err, "report")  # no model file: exit 1
    (tmp_path / "model.npz").write_bytes(b"PK\x03\x04 not really a zip")
    status, _, err = cli(capsys, "report", tmp_path)
    assert status == 1 and "model.npz" in one_error_line(err, "report")  # corrupt: exit 1
    import cnnkit
    cnnkit.save(cnnkit.resolve_model("shapes-net"), tmp_path / "model.npz")
    status, stdout, err = cli(capsys, "report", tmp_path)
    assert status == 0
    assert "section not drawn: Final metrics: metrics.json is missing" in err
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "This section could not be drawn: metrics.json is missing" in text
    status, _, err = cli(capsys, "report", tmp_path / "absent")
    assert status == 1 and "no such run folder" in one_error_line(err, "report")
