"""The built-in shapes dataset and its renderer: determinism, balance, variety, geometry of the
signed distances (against the slow polygon oracle), boxes, large canvases, the background class,
and the load_dataset dispatcher."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnkit.data import Dataset, load_dataset
from cnnkit.data import shapes as S
from cnnkit.errors import LabelError, ShapeError, SpecError, UserInputError


@pytest.fixture(scope="module")
def small():
    return S.make_shapes(600, seed=7)


def test_same_seed_same_images_other_seed_other_images(small):
    x, y = small
    x2, y2 = S.make_shapes(600, seed=7)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = S.make_shapes(600, seed=8)
    assert not np.array_equal(x, x3)


def test_format_and_class_balance(small):
    x, y = small
    assert x.shape == (600, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (600,) and y.dtype == np.int64
    assert np.bincount(y, minlength=6).tolist() == [100] * 6
    assert not np.array_equal(y[:100], np.sort(y[:100]))    # labels come in random order
    x7, y7 = S.make_shapes(7, seed=1)
    assert sorted(np.bincount(y7, minlength=6).tolist()) == [1, 1, 1, 1, 1, 2]


def test_images_differ_and_use_the_range(small):
    x, _ = small
    flat = x.reshape(len(x), -1)
    assert len(np.unique(flat, axis=0)) == len(x)
    # backgrounds vary: the per-image mean colours are spread out
    assert x.mean(axis=(1, 2)).std(axis=0).min() > 0.1 * 255


def test_every_image_shows_its_shape_with_contrast(small):
    """In every image (600, over two render chunks) at least 20 pixels stand far from the
    image's median colour: the shape is visible against its background."""
    x, y = small
    med = np.median(x.reshape(len(x), -1, 3).astype(float), axis=1)
    dist = np.linalg.norm(x.astype(float) - med[:, None, None, :], axis=-1)
    assert ((dist > 0.25 * 255).sum(axis=(1, 2)) >= 20).all()


def test_load_dataset_splits_are_fixed_and_documented():
    train = load_dataset("shapes", "train")
    test = load_dataset("shapes", "test", seed=123)            # the seed does not change the data
    assert isinstance(train, Dataset) and train.name == "shapes"
    assert train.class_names == list(S.SHAPE_CLASSES) == ["circle", "square", "triangle", "cross", "ring", "star"]
    assert (len(train), len(test)) == (S.TRAIN_SIZE, S.TEST_SIZE) == (12000, 1200)
    assert train.class_counts().tolist() == [2000] * 6 and test.class_counts().tolist() == [200] * 6
    x, y = S.make_shapes(S.TEST_SIZE, S.TEST_SEED)
    assert np.array_equal(test.x, x) and np.array_equal(test.y, y)
    assert not np.array_equal(train.x[:1200], test.x)


def test_load_dataset_refuses_unknown_names_and_splits(tmp_path):
    with pytest.raises(SpecError, match="unknown dataset 'shape'; expected one of shapes, mnist, fashion-mnist, "
                                        "cifar10, or the path of a folder"):
        load_dataset("shape", "train")
    with pytest.raises(SpecError, match="dataset 'shapes': unknown split 'validation'; expected one of train, test"):
        load_dataset("shapes", "validation")
    with pytest.raises(SpecError, match="unknown dataset"):
        load_dataset(str(tmp_path / "missing-folder"), "train")


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("kind", sorted(S.POLYGONS))
def test_fast_signed_distances_match_the_polygon_oracle(kind):
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-1.5, 1.5, (2, 20000))
    fast = S._signed_distance(kind, u, v)
    ref = S._sd_polygon(u, v, S.POLYGONS[kind])
    assert np.abs(fast - ref).max() < 1e-12


def test_round_shapes_distances():
    u = np.array([0.0, 0.5, 1.0, 2.0, 0.775])
    v = np.zeros(5)
    assert np.allclose(S._signed_distance("circle", u, v), [-1, -0.5, 0, 1, -0.225])
    assert np.allclose(S._signed_distance("ring", u, v), [0.55, 0.05, 0, 1, -0.225])


@pytest.mark.parametrize("kind", S.SHAPE_CLASSES)
def test_coverage_area_matches_the_shape_area(kind):
    """Anti-aliased coverage summed over pixels ≈ the exact area (size² × unit area)."""
    size = 40.0
    xs = (np.arange(100) + 0.5)[None, :]
    ys = (np.arange(100) + 0.5)[:, None]
    alpha = S.coverage(kind, xs, ys, 50.3, 49.6, size, 0.7)
    if kind in S.POLYGONS:
        p = S.POLYGONS[kind]
        unit = 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))
    elif kind == "circle":
        unit = math.pi
    else:
        unit = math.pi * (1 - S.RING_INNER ** 2)
    assert alpha.sum() == pytest.approx(unit * size * size, rel=2e-3)
    assert alpha.min() == 0 and alpha.max() == 1 and ((alpha > 0) & (alpha < 1)).any()  # soft edge


def test_angle_turns_counter_clockwise_on_the_image():
    """The triangle points up at angle 0; a quarter turn counter-clockwise points it left."""
    up = S.Shape("triangle", 50, 50, 30, (1, 1, 1), 0.0).box()
    left = S.Shape("triangle", 50, 50, 30, (1, 1, 1), math.pi / 2).box()
    assert up[1] == pytest.approx(20) and up[3] == pytest.approx(65)      # apex at y = 50 - 30
    assert left[0] == pytest.approx(20) and left[2] == pytest.approx(65)  # apex at x = 50 - 30


@pytest.mark.parametrize("kind", S.SHAPE_CLASSES)
def test_box_is_tight_around_the_drawn_pixels(kind):
    canvas = np.zeros((120, 160, 3), np.float32)
    shape = S.Shape(kind, 70.2, 61.7, 33.0, (1.0, 0.5, 0.25), 0.4)
    S.draw_shape(canvas, shape)
    x0, y0, x1, y1 = shape.box()
    rows, cols = np.nonzero(canvas[..., 0] > 0.5)
    # pixel centres at least half covered lie within the box and reach its sides within 1.5 px
    assert cols.min() + 0.5 >= x0 - 0.5 and cols.max() + 0.5 <= x1 + 0.5
    assert rows.min() + 0.5 >= y0 - 0.5 and rows.max() + 0.5 <= y1 + 0.5
    assert cols.min() + 0.5 - x0 < 1.5 and x1 - cols.max() - 0.5 < 1.5
    assert rows.min() + 0.5 - y0 < 1.5 and y1 - rows.max() - 0.5 < 1.5
    # the colour is painted as given where the shape covers the pixel fully
    full = canvas[..., 0] == 1.0
    assert np.allclose(canvas[full], [1.0, 0.5, 0.25])


def test_renderer_on_large_canvases_with_several_objects():
    rng = np.random.default_rng(4)
    canvas = S.noisy_background(256, 256, rng)[0]
    assert canvas.shape == (256, 256, 3) and canvas.dtype == np.float32
    before = canvas.copy()
    shapes = [S.Shape(k, 30 + 40 * i, 60 + 25 * (i % 3), 10 + 4 * i, (1.0, 1.0, 1.0), 0.2 * i)
              for i, k in enumerate(S.SHAPE_CLASSES)]
    for shape in shapes:
        S.draw_shape(canvas, shape)
    changed = np.any(canvas != before, axis=-1)
    for shape in shapes:                  # each object changed pixels inside its box only
        x0, y0, x1, y1 = shape.box()
        assert changed[int(shape.cy), int(shape.cx)] or shape.kind == "ring"
    ys, xs = np.nonzero(changed)
    inside = np.zeros_like(changed)
    for shape in shapes:
        x0, y0, x1, y1 = shape.box()
        inside[max(0, math.floor(y0) - 1):math.ceil(y1) + 1, max(0, math.floor(x0) - 1):math.ceil(x1) + 1] = True
    assert not (changed & ~inside).any()
    # a shape cut by the border and one entirely outside are fine
    S.draw_shape(canvas, S.Shape("star", -5, 128, 20, (0, 0, 0), 0))
    S.draw_shape(canvas, S.Shape("star", -500, 128, 20, (0, 0, 0), 0))
    assert (canvas[118:138, 0:10] < 0.5).any()
    out = S.to_uint8(S.add_noise(canvas, rng))
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8


def test_later_shapes_cover_earlier_ones():
    canvas = np.zeros((64, 64, 3), np.float32)
    S.draw_shape(canvas, S.Shape("square", 32, 32, 20, (1, 0, 0)))
    S.draw_shape(canvas, S.Shape("circle", 32, 32, 8, (0, 0, 1)))
    assert canvas[32, 32].tolist() == [0, 0, 1] and canvas[32, 20].tolist() == [1, 0, 0]


def test_background_class_and_other_image_sizes():
    x, y = S.make_shapes(140, seed=2, image_size=48, background=True)
    assert x.shape == (140, 48, 48, 3)
    assert np.bincount(y).tolist() == [20] * 7                      # 6 shapes + background (label 6)
    x2, y2 = S.make_shapes(60, seed=2, classes=("circle", "star"))
    assert set(np.unique(y2)) == {0, 1}


def test_renderer_errors_say_what_and_where():
    with pytest.raises(UserInputError, match="Shape: unknown kind 'hexagon'; expected one of circle, square"):
        S.Shape("hexagon", 1, 1, 1, (0, 0, 0))
    with pytest.raises(UserInputError, match="Shape: size must be > 0 pixels. Received: size=0"):
        S.Shape("star", 1, 1, 0, (0, 0, 0))
    with pytest.raises(UserInputError, match=r"draw_shape: canvas must be a float \(H, W, 3\) array"):
        S.draw_shape(np.zeros((8, 8), np.uint8), S.Shape("star", 1, 1, 1, (0, 0, 0)))
    with pytest.raises(UserInputError, match="make_shapes: unknown shape class"):
        S.make_shapes(6, 0, classes=("blob",))
    with pytest.raises(UserInputError, match=r"size_range must satisfy 0 < low <= high <= 16.0"):
        S.make_shapes(6, 0, size_range=(4, 20))


# --------------------------------------------------------------------------- Dataset container
def test_dataset_validates_and_converts_labels():
    x = np.zeros((3, 4, 4, 1), np.uint8)
    ds = Dataset(x, np.array([0, 1, 1], np.int32), ["a", "b"], "toy")
    assert ds.y.dtype == np.int64 and len(ds) == 3 and ds.input_shape == (4, 4, 1) and ds.num_classes == 2
    with pytest.raises(LabelError, match=r"labels must be in \[0, 2\) for 2 classes. Received: min 0, max 2"):
        Dataset(x, np.array([0, 1, 2]), ["a", "b"], "toy")
    with pytest.raises(LabelError, match=r"labels must be \(N,\) = \(3,\)"):
        Dataset(x, np.array([0, 1]), ["a", "b"], "toy")
    with pytest.raises(ShapeError, match=r"images must be an array \(N, H, W, C\). Received: \(3, 4, 4\)"):
        Dataset(x[..., 0], np.array([0, 1, 1]), ["a", "b"], "toy")


def test_dataset_split_is_a_partition():
    train = Dataset(*S.make_shapes(60, 0), list(S.SHAPE_CLASSES), "shapes")
    rest, held = train.split(0.25, np.random.default_rng(0))
    assert (len(rest), len(held)) == (45, 15) and held.name == "shapes-val"
    both = np.concatenate([rest.x, held.x]).reshape(60, -1)
    assert len(np.unique(both, axis=0)) == 60
