"""Image folders: real PNG/JPEG/BMP/GIF files written here; sizes and formats converted or
refused as documented (cnnkit.preprocess); a folder trains and evaluates end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data import load_dataset
from cnnkit.data.folder import load_folder, scan
from cnnkit.errors import DatasetError, ImageError, SpecError, UserInputError

FORMATS = (("png", "RGB"), ("jpg", "RGB"), ("bmp", "L"), ("png", "RGBA"), ("gif", "P"), ("jpg", "L"))


def stripes(kind: str, height: int, width: int, rng, mode: str = "RGB") -> Image.Image:
    """Bright stripes on a dark noisy background: horizontal, vertical, or none ("blank")."""
    a = rng.integers(0, 60, (height, width, 3)).astype(np.uint8)
    if kind == "horizontal":
        a[::4] = 230
    elif kind == "vertical":
        a[:, ::4] = 230
    img = Image.fromarray(a)
    if mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("P")
    elif mode == "L":
        img = img.convert("L")
    return img


def make_folder(root: Path, per_class: int, rng, classes=("blank", "horizontal", "vertical"),
                size_range=(14, 26)) -> Path:
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            ext, mode = FORMATS[i % len(FORMATS)]
            h, w = (int(v) for v in rng.integers(*size_range, 2))
            stripes(c, h, w, rng, mode).save(root / c / f"{i:03d}.{ext}", **({"quality": 95} if ext == "jpg" else {}))
    return root


def test_classes_files_and_the_first_images_shape(tmp_path, rng):
    root = tmp_path / "pics"
    (root / "b_dog").mkdir(parents=True)
    (root / "a_cat" / "nested").mkdir(parents=True)
    Image.new("RGB", (12, 10), (255, 0, 0)).save(root / "a_cat" / "1.png")             # the first: 10x12x3
    Image.new("L", (30, 40), 128).save(root / "a_cat" / "nested" / "2.jpg")            # other size, grey
    Image.new("RGBA", (5, 5), (0, 0, 255, 255)).save(root / "b_dog" / "3.PNG")         # upper-case extension
    (root / "b_dog" / "notes.txt").write_text("not an image")                           # skipped
    (root / "b_dog" / ".hidden.png").write_bytes(b"skipped")                            # hidden: skipped
    (root / ".cache").mkdir()                                                            # hidden class: skipped
    ds = load_folder(root)
    assert ds.class_names == ["a_cat", "b_dog"] and ds.name == "pics"
    assert ds.x.shape == (3, 10, 12, 3) and ds.x.dtype == np.uint8
    assert ds.y.tolist() == [0, 0, 1]
    np.testing.assert_array_equal(ds.x[0, 0, 0], [255, 0, 0])
    np.testing.assert_array_equal(ds.x[1, 5, 5], [128, 128, 128])   # grey replicated, stretched
    np.testing.assert_array_equal(ds.x[2, 5, 5], [0, 0, 255])


def test_grey_first_image_gives_one_channel(tmp_path):
    (tmp_path / "d" / "x").mkdir(parents=True)
    Image.new("L", (8, 6), 50).save(tmp_path / "d" / "x" / "a.png")
    Image.new("RGB", (8, 6), (0, 255, 0)).save(tmp_path / "d" / "x" / "b.png")
    ds = load_folder(tmp_path / "d")
    assert ds.x.shape == (2, 6, 8, 1)
    assert ds.x[1, 0, 0, 0] == 150  # luma of pure green: round(0.587 · 255)


def test_requested_shape_and_resize_rules(tmp_path, rng):
    root = make_folder(tmp_path / "f", 3, rng)
    ds = load_folder(root, shape=(16, 16, 1))
    assert ds.x.shape == (9, 16, 16, 1)
    with pytest.raises(ImageError, match=r"f/blank/000.png: image is \d+x\d+ \(HxW\), expected 16x16"):
        load_folder(root, shape=(16, 16, 3), resize="error")
    assert load_folder(root, shape=(8, 8, 3), resize="crop").x.shape == (9, 8, 8, 3)


def test_unreadable_image_is_refused_naming_it(tmp_path, rng):
    root = make_folder(tmp_path / "f", 2, rng)
    (root / "vertical" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    with pytest.raises(ImageError, match=r"vertical/broken.jpg: (cannot decode|not an image Pillow can read)"):
        load_folder(root)


def test_structure_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: no such folder"):
        load_folder(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DatasetError, match=r"flat: no class subfolders; an image dataset is a folder with one "
                                           r"subfolder per class"):
        load_folder(tmp_path / "flat")
    (tmp_path / "flat" / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"flat/empty: class folder without images"):
        load_folder(tmp_path / "flat")
    with pytest.raises(SpecError, match=r"unknown dataset 'no-such-dataset'"):
        load_dataset("no-such-dataset", "train")


def test_split_folders(tmp_path, rng):
    make_folder(tmp_path / "s" / "train", 4, rng, classes=("a", "b"))
    make_folder(tmp_path / "s" / "test", 2, rng, classes=("a", "b"))
    assert len(load_dataset(str(tmp_path / "s"), "train").y) == 8
    assert len(load_dataset(str(tmp_path / "s"), "test").y) == 4
    with pytest.raises(DatasetError, match=r"holds train/ but no val/ folder"):
        load_dataset(str(tmp_path / "s"), "val")


def test_model_class_names_map_labels_by_name(tmp_path, rng):
    root = make_folder(tmp_path / "f", 1, rng, classes=("cat", "dog"))
    ds = load_folder(root, shape=(8, 8, 3), class_names=["bird", "dog", "cat"])
    assert ds.class_names == ["bird", "dog", "cat"] and ds.y.tolist() == [2, 1]
    with pytest.raises(UserInputError, match=r"class folder\(s\) cat are not classes of the model \(bird, dog\)"):
        load_folder(root, shape=(8, 8, 3), class_names=["bird", "dog"])


def test_scan_is_sorted_and_recursive(tmp_path):
    (tmp_path / "r" / "b" / "deep").mkdir(parents=True)
    (tmp_path / "r" / "a").mkdir()
    for p in ("b/z.png", "b/deep/a.png", "a/m.png"):
        Image.new("L", (2, 2)).save(tmp_path / "r" / p)
    classes, items = scan(tmp_path / "r")
    assert classes == ["a", "b"]
    assert [(f.relative_to(tmp_path / "r").as_posix(), y) for f, y in items] == [
        ("a/m.png", 0), ("b/deep/a.png", 1), ("b/z.png", 1)]


def test_folder_trains_and_evaluates_end_to_end(tmp_path, rng, capsys):
    """Real PNG/JPEG/BMP/GIF files of mixed sizes and modes: trained with fit, saved, then
    `cnnkit evaluate` on a second folder drawn independently, and `cnnkit predict` on one file."""
    import json

    import cnnkit
    from cnnkit.cli import main
    from cnnkit.train import fit

    train = load_dataset(str(make_folder(tmp_path / "train", 24, rng)), "train", shape=(16, 16, 3))
    model = cnnkit.resolve_model("conv(8,3)-relu-maxpool(2)-flatten-fc(3)", input_shape=train.input_shape, seed=0)
    fit(model, train, epochs=6, batch_size=16, optimizer="adam", lr=0.01, val=None, seed=0, progress=False)
    assert model.class_names == ["blank", "horizontal", "vertical"] and model.preprocessing is not None
    cnnkit.save(model, tmp_path / "model.npz")
    test_root = make_folder(tmp_path / "test", 10, np.random.default_rng(99), size_range=(10, 40))
    assert main(["evaluate", str(tmp_path / "model.npz"), "--dataset", str(test_root), "--split", "all",
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 30 and report["accuracy"] >= 0.8, report  # chance: 1/3
    assert main(["predict", str(tmp_path / "model.npz"), str(test_root / "vertical" / "001.jpg"), "--top-k", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "vertical"


def test_a_flat_folder_is_split_into_disjoint_train_and_test(tmp_path, rng):
    root = make_folder(tmp_path / "flat", 10, rng)
    train, test, every = (load_folder(root, split, shape=(16, 16, 3)) for split in ("train", "test", None))
    assert len(train) == 24 and len(test) == 6 and len(every) == 30
    assert np.bincount(test.y).tolist() == [2, 2, 2]  # stratified: 20 % of each class
    rows = {r.tobytes() for r in every.x}
    assert {r.tobytes() for r in train.x} | {r.tobytes() for r in test.x} == rows
    assert not {r.tobytes() for r in train.x} & {r.tobytes() for r in test.x}
    again = load_folder(root, "test", shape=(16, 16, 3))
    np.testing.assert_array_equal(again.x, test.x)  # fixed, not drawn per run
