"""Detection (cnnkit.detect, ``cnnkit detect``): scenes, IoU and NMS against hand cases, pyramid
arithmetic, window labels, an end-to-end detection with a hand-built model whose answer is known,
and one clear line with the right exit status for bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.convert import fits, score_map_shape, total_stride
from cnnkit.data.shapes import SHAPE_CLASSES, Shape, coverage
from cnnkit.detect.detector import (Detection, DetectionResult, Detector, auto_scales, nms, plan_pyramid,
                                    scale_image)
from cnnkit.detect.evaluate import evaluate_detector, match
from cnnkit.detect.scenes import (Scene, box_centres, box_extents, covered_fraction, iou, make_scene,
                                  make_scenes, shape_with_box, size_groups)
from cnnkit.detect.training import (IGNORE, Dihedral, detector_classes, detector_model, label_windows,
                                    train_detector)
from cnnkit.errors import ShapeError, SpecError
from cnnkit.layers import Conv2d, Flatten, GlobalAvgPool2d, Linear


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse refusing an argument
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- scenes
def test_scenes_are_deterministic_and_independent_of_count():
    a, b = make_scenes(3, seed=11), make_scenes(3, seed=11)
    for s, t in zip(a, b):
        assert np.array_equal(s.image, t.image) and np.array_equal(s.boxes, t.boxes)
        assert np.array_equal(s.labels, t.labels)
    assert np.array_equal(make_scenes(2, seed=11)[1].image, a[1].image)   # scene i does not depend on n
    assert not np.array_equal(make_scenes(1, seed=12)[0].image, a[0].image)
    assert [s.image.shape for s in a] == [(128, 128, 3), (256, 256, 3), (128, 128, 3)]
    assert all(s.image.dtype == np.uint8 for s in a)


def test_scene_boxes_are_the_drawn_shapes_tight_boxes():
    for scene in make_scenes(6, seed=3):
        size = scene.image.shape[0]
        assert len(scene.boxes) == len(scene.labels) == len(scene.shapes) >= 3
        for box, label, shape in zip(scene.boxes, scene.labels, scene.shapes):
            assert SHAPE_CLASSES[label] == shape.kind
            assert np.allclose(box, shape.box())
            assert 0 <= box[0] < box[2] <= size and 0 <= box[1] < box[3] <= size   # fully inside
            # the shape alone: pixels more than half covered lie inside the box, and touch each side
            ys, xs = np.mgrid[0:size, 0:size] + 0.5
            cov = coverage(shape.kind, xs, ys, shape.cx, shape.cy, shape.size, shape.angle)
            rows, cols = np.nonzero(cov > 0.5)
            assert cols.min() >= math.floor(box[0]) and cols.max() + 1 <= math.ceil(box[2])
            assert rows.min() >= math.floor(box[1]) and rows.max() + 1 <= math.ceil(box[3])
            rows, cols = np.nonzero(cov > 0)                  # sharp tips cover little of a pixel
            assert cols.min() <= box[0] + 1 and cols.max() + 1 >= box[2] - 1
            assert rows.min() <= box[1] + 1 and rows.max() + 1 >= box[3] - 1
        covered = covered_fraction(scene.boxes, scene.boxes) - np.eye(len(scene.boxes))
        assert covered.max() <= 0.35 + 1e-12          # no object more than about a third hidden


def test_scenes_hold_three_sizes_and_touching_objects():
    scenes = make_scenes(20, seed=5)
    touching = sum(int(s.touching.sum()) for s in scenes)
    assert touching >= 5
    for s in scenes:
        groups = size_groups(s.image.shape[0])
        found = {next(k for k, (lo, hi) in enumerate(groups) if e <= hi + 1e-9) for e in s.extents}
        if len(s.labels) >= 3:
            assert found == {0, 1, 2}
    # touching: the box centres are closer than the sum of the extents (allowing for the tight box)
    s = next(s for s in scenes if s.touching.any())
    k = int(np.flatnonzero(s.touching)[0])
    d = np.linalg.norm(box_centres(s.boxes[:k]) - box_centres(s.boxes[k:k + 1]), axis=1)
    assert (d <= (box_extents(s.boxes[:k]) + s.extents[k]) * 1.0 + 1e-9).any()


def test_shape_with_box_centres_the_tight_box():
    for kind in SHAPE_CLASSES:
        shape = shape_with_box(kind, (40.0, 30.0), 12.0, angle=0.7, color=(1, 0, 0))
        x0, y0, x1, y1 = shape.box()
        assert (x0 + x1) / 2 == pytest.approx(40.0) and (y0 + y1) / 2 == pytest.approx(30.0)
        assert max(x1 - x0, y1 - y0) / 2 == pytest.approx(12.0)


def test_make_scene_refuses_tiny_scenes():
    with pytest.raises(cnnkit.UserInputError, match="too small"):
        make_scene(32, np.random.default_rng(0))


# ----------------------------------------------------------------------------- IoU and NMS
@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),            # touching edges
    ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
    ([0, 0, 2, 2], [1, 0, 3, 2], 1 / 3),               # 2 / (4 + 4 - 2)
    ([0, 0, 10, 10], [2, 2, 7, 7], 25 / 100),          # contained
    ([0, 0, 4, 4], [2, 2, 6, 6], 4 / 28),              # corner overlap
    ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),                 # empty boxes
])
def test_iou_hand_cases(a, b, expected):
    assert iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)
    assert iou(np.array([b]), np.array([a]))[0, 0] == pytest.approx(expected)


def test_iou_is_pairwise():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 4]], float)
    b = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [10, 10, 11, 11]], float)
    assert iou(a, b).shape == (2, 3)
    assert iou(a, b)[1, 0] == pytest.approx(4 / 16)


def test_nms_keeps_the_best_and_suppresses_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [21, 21, 31, 31]], float)
    keep, _ = nms(boxes, np.array([0.8, 0.9, 0.7, 0.95]), 0.5, vote_iou=None)
    assert keep.tolist() == [3, 1]


def test_nms_chain_suppression_is_greedy():
    # A overlaps B, B overlaps C, A does not overlap C: A removes B, so C survives
    boxes = np.array([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]], float)
    assert iou(boxes[:1], boxes[2:])[0, 0] == 0
    keep, _ = nms(boxes, np.array([0.9, 0.8, 0.7]), 0.25, vote_iou=None)
    assert keep.tolist() == [0, 2]


def test_nms_threshold_is_inclusive_and_votes_for_the_box():
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2]], float)           # IoU exactly 1/3
    assert nms(boxes, np.array([0.6, 0.4]), 1 / 3, vote_iou=None)[0].tolist() == [0]
    assert nms(boxes, np.array([0.6, 0.4]), 0.34, vote_iou=None)[0].tolist() == [0, 1]
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], float)       # IoU 8/12
    keep, voted = nms(boxes, np.array([0.75, 0.25]), 0.5, vote_iou=0.5)
    assert keep.tolist() == [0]
    assert voted[0] == pytest.approx([0.5, 0, 10.5, 10])            # (0.75·0 + 0.25·2) / 1
    keep, voted = nms(boxes, np.array([0.75, 0.25]), 0.5, vote_iou=0.9)  # too far to vote
    assert voted[0] == pytest.approx([0, 0, 10, 10])


def test_nms_of_nothing():
    keep, voted = nms(np.zeros((0, 4)), np.zeros(0))
    assert keep.shape == (0,) and voted.shape == (0, 4)


# ----------------------------------------------------------------------------- matching
def test_match_hand_cases():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    dets = [Detection("star", 0.9, (0, 0, 10, 10)), Detection("star", 0.8, (0, 0, 10, 10)),   # duplicate
            Detection("ring", 0.7, (20, 20, 30, 30)),                                          # wrong class
            Detection("circle", 0.6, (20, 20, 30, 35))]                                         # IoU 100/150
    hit, found = match(dets, truth, ["star", "circle"])
    assert hit.tolist() == [True, False, False, True]
    assert found.tolist() == [True, True]
    # IoU exactly 0.5 counts
    hit, _ = match([Detection("star", 0.5, (0, 0, 10, 20))], np.array([[0, 0, 10, 10]]), ["star"])
    assert hit.tolist() == [True]


def test_evaluate_detector_counts():
    scenes = make_scenes(2, seed=1)

    class Oracle:          # detects the ground truth, plus one false alarm per image
        def detect(self, image, scales, threshold, nms_iou):
            s = next(s for s in scenes if s.image is image)
            dets = [Detection(SHAPE_CLASSES[k], 0.9, tuple(b)) for b, k in zip(s.boxes, s.labels)]
            dets.append(Detection("star", 0.1, (0, 0, 3, 3)))
            return DetectionResult(dets, [], [], [], seconds=0.25)

    score = evaluate_detector(Oracle(), scenes)
    n = sum(len(s.labels) for s in scenes)
    assert score.recall == 1.0 and score.objects == n
    assert score.precision == pytest.approx(n / (n + 2))
    assert score.seconds_per_image == 0.25
    assert sum(v[1] for v in score.per_size.values()) == n


# ----------------------------------------------------------------------------- pyramid
@pytest.fixture(scope="module")
def shapes_detector():
    model = detector_model()
    model.class_names = detector_classes()
    return Detector(model)


@pytest.mark.parametrize("hw", [(128, 128), (256, 256), (100, 173), (33, 47)])
def test_pyramid_sizes_divide_and_map_back(shapes_detector, hw):
    det = shapes_detector
    levels = det.levels((*hw, 3))
    assert len({lv.size for lv in levels}) == len(levels)
    for lv in levels:
        ph, pw = lv.padded
        assert fits(det.fcn, (ph, pw, 3))
        rows, cols = score_map_shape(det.fcn, (ph, pw, 3), (32, 32, 3))
        assert rows == (ph - 32) // 4 + 1 and (ph - 32) % 4 == 0 and (pw - 32) % 4 == 0
        assert lv.factors == (lv.size[0] / hw[0], lv.size[1] / hw[1])
        assert abs(lv.size[0] - hw[0] * lv.scale) <= 2.5 and abs(lv.size[1] - hw[1] * lv.scale) <= 2.5  # S/2 + rounding
        assert min(lv.size) >= 32
        assert scale_image(np.zeros((*hw, 3), np.uint8), lv).shape == (ph, pw, 3)
    assert total_stride(det.fcn) == (4, 4)


def test_auto_scales_go_down_to_the_window():
    scales = auto_scales((256, 256), 32)
    assert scales[0] == 1 and scales[-1] == pytest.approx(0.125)
    assert np.allclose(np.array(scales[:-1]) / np.array(scales[1:]), 2 ** (1 / 3))


def test_pyramid_refuses_an_image_smaller_than_the_window_at_every_scale(shapes_detector):
    with pytest.raises(ShapeError, match=r"20×40, smaller than the model's input 32×32 at every scale \(1, 0.5\)"):
        plan_pyramid(shapes_detector.fcn, (20, 40, 3), [1, 0.5], 8)


def test_cell_boxes_are_the_score_map_windows_centres(shapes_detector):
    det = shapes_detector
    lv = det.levels((128, 128, 3), [0.5])[0]
    p, sm = det.probabilities(scale_image(np.zeros((128, 128, 3), np.uint8), lv))
    boxes = det.cell_boxes(lv, *p.shape[:2])
    for i, j in [(0, 0), (3, 5), (p.shape[0] - 1, p.shape[1] - 1)]:
        x0, y0, x1, y1 = sm.box(i, j)                          # window in padded, scaled pixels
        cx, cy = ((x0 + x1) / 2 - lv.pad) / lv.factors[1], ((y0 + y1) / 2 - lv.pad) / lv.factors[0]
        b = boxes[i, j]
        assert ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) == pytest.approx((cx, cy))
        assert b[2] - b[0] == pytest.approx(2 * 0.3 * 32 / lv.factors[1])
    assert np.allclose(p.sum(axis=-1), 1)


# ----------------------------------------------------------------------------- training windows
def test_label_windows_hand_case(shapes_detector):
    det = shapes_detector
    scene = Scene(np.zeros((128, 128, 3), np.uint8), np.array([[40.0, 40.0, 60.0, 60.0]]), np.array([4]),
                  (), np.zeros(1, bool))
    full = det.levels((128, 128, 3), [1.0])[0]
    labels = label_windows(det, full, 31, 31, scene)
    # window centres 4i + 16 - 8 = 4i + 8; within 2.5 px of 50: i = 10, 11 (48, 52)
    assert sorted(zip(*np.nonzero(labels == 4))) == [(10, 10), (10, 11), (11, 10), (11, 11)]
    assert labels[9, 10] == IGNORE and labels[12, 12] == IGNORE     # 6 px off: neither
    assert labels[0, 0] == 6 and labels[8, 10] == 6                  # 10 px off: background
    half = det.levels((128, 128, 3), [0.5])[0]                       # extent 5: another size
    assert (label_windows(det, half, 15, 15, scene) == 6).all()


def test_dihedral_gives_the_eight_symmetries():
    x = np.arange(2 * 2 * 2 * 1, dtype=np.uint8).reshape(1, 2, 2, 2)[:, :, :, :1].repeat(64, axis=0)
    out = Dihedral()(x, np.random.default_rng(0))
    assert out.shape == x.shape
    assert len({o.tobytes() for o in out}) == 8
    assert all(sorted(o.ravel()) == sorted(x[0].ravel()) for o in out)


def test_train_detector_runs_on_a_few_scenes():
    model = train_detector(scenes=make_scenes(6, seed=99), epochs=1, progress=False)
    assert model.class_names == [*SHAPE_CLASSES, "background"]
    assert model.output_shape() == (7,)
    assert model.preprocessing is not None and len(model.preprocessing["mean"]) == 3
    counts = model.windows[0]
    assert counts["background"] > 0 and sum(counts[c] for c in SHAPE_CLASSES) > 0


# ----------------------------------------------------------------------------- end to end
def template_model() -> cnnkit.Sequential:
    """A hand-built detector for bright 10×10 squares on 16×16 greyscale windows: 'blob' scores
    +1 per bright pixel of the centred 10×10 and -1.5 per bright pixel beyond a one-pixel margin
    around it; 'background' a constant 88. Only a centred square of about 10×10 passes."""
    m = cnnkit.Sequential([Conv2d(1, 1), Flatten(), Linear(2)], input_shape=(16, 16, 1))
    m[0].params["weight"].value[...] = 1
    m[0].params["bias"].value[...] = 0
    template = np.full((16, 16), -1.5)
    template[2:14, 2:14] = 0                  # a one-pixel margin for the resizing filter's blur
    template[3:13, 3:13] = 1
    w = np.zeros((256, 2), np.float32)
    w[:, 0] = template.ravel()
    m[2].params["weight"].value[...] = w
    m[2].params["bias"].value[...] = [0, 88]
    m.class_names = ["blob", "background"]
    m.preprocessing = {"scale": 1 / 255}
    return m


def blob_image() -> np.ndarray:
    image = np.zeros((64, 64, 3), np.uint8)
    image[20:40, 20:40] = 255                 # a 20×20 square: 10×10 at scale 0.5
    return image


def test_end_to_end_finds_the_object_at_its_scale():
    det = Detector(template_model())
    assert det.window == (16, 16) and det.pad == 4 and det.stride == (1, 1)
    result = det.detect(blob_image())
    assert [lv.scale for lv in result.levels] == pytest.approx(auto_scales((64, 64), 16))
    assert len(result.detections) == 1
    d = result.detections[0]
    assert d.label == "blob" and d.score > 0.99 and d.scale == pytest.approx(0.5)
    assert d.box == pytest.approx((20.4, 20.4, 39.6, 39.6))        # centre 30 ± 0.3·16/0.5
    assert iou(np.array([d.box]), np.array([[20, 20, 40, 40]]))[0, 0] > 0.9
    # a single scale cannot see it
    assert Detector(template_model()).detect(blob_image(), scales=[1.0]).detections == []
    heat = det.objectness(result)
    assert heat.shape == (64, 64) and heat.max() > 0.9 and heat[5, 5] < 0.01
    i, j = np.unravel_index(heat.argmax(), heat.shape)
    assert abs(i + 0.5 - 30) <= 1 and abs(j + 0.5 - 30) <= 1      # peak at the object's centre


def test_detector_refuses_a_model_without_a_fully_connected_head():
    m = cnnkit.Sequential([Conv2d(3, 3), GlobalAvgPool2d()], input_shape=(16, 16, 3))
    with pytest.raises(SpecError, match="no fully-connected head"):
        Detector(m)


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "blob.npz"
    cnnkit.save(template_model(), model)
    image = tmp_path / "scene.png"
    Image.fromarray(blob_image()).save(image)
    return model, image, tmp_path


def test_cli_json_png_and_heatmap(capsys, files):
    model, image, tmp = files
    code, out, err = run_cli(capsys, "detect", model, image, "--format", "json", "--out", tmp / "boxes.png",
                             "--heatmap", tmp / "heat.png")
    assert code == 0, err
    assert json.loads(out) == [{"label": "blob", "score": pytest.approx(1.0, abs=0.01),
                                "box": [20.4, 20.4, 39.6, 39.6]}]
    with Image.open(tmp / "boxes.png") as im:
        assert im.size == (512, 512) and im.mode == "RGB"
        px = np.asarray(im)
        assert (px[:, :, :] != px[0, 0]).any(axis=2).sum() > (20 * 8) ** 2   # the square and the box
    with Image.open(tmp / "heat.png") as im:
        assert im.size[1] == 512 and im.size[0] > 512                        # with its colour bar


def test_cli_text_and_scales(capsys, files):
    model, image, _ = files
    code, out, _ = run_cli(capsys, "detect", model, image)
    assert code == 0 and "1 object(s) in 64×64" in out and "blob" in out and "[20.4, 20.4, 39.6, 39.6]" in out
    code, out, _ = run_cli(capsys, "detect", model, image, "--scales", "1", "--format", "json")
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize("argv, message", [
    (["--scales", "0,1"], "expected 'auto' or scale factors"),
    (["--threshold", "2"], "expected a number in"),
    (["--nms-iou", "0"], "expected a number in"),
])
def test_cli_bad_arguments(capsys, files, argv, message):
    model, image, _ = files
    code, _, err = run_cli(capsys, "detect", model, image, *argv)
    assert code == 2 and message in err


def test_cli_bad_input_is_one_line_exit_2(capsys, files):
    model, _, tmp = files
    small = tmp / "small.png"
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(small)
    code, out, err = run_cli(capsys, "detect", model, small)
    assert code == 2 and out == ""
    line = err.strip().splitlines()[-1]
    assert line.startswith("cnnkit detect: error: the image is 10×12, smaller than the model's input 16×16")
    assert "Traceback" not in err

    bad = tmp / "bad.png"
    bad.write_text("not an image")
    code, _, err = run_cli(capsys, "detect", model, bad)
    assert code == 2 and "not an image Pillow can read" in err.strip().splitlines()[-1]

    headless = tmp / "gap.npz"
    cnnkit.save(cnnkit.Sequential([Conv2d(3, 3), GlobalAvgPool2d()], input_shape=(16, 16, 3)), headless)
    code, _, err = run_cli(capsys, "detect", headless, tmp / "scene.png")
    assert code == 2 and "no fully-connected head" in err.strip().splitlines()[-1]


def test_cli_missing_or_corrupt_model_is_exit_1(capsys, files):
    _, image, tmp = files
    code, _, err = run_cli(capsys, "detect", tmp / "nothing.npz", image)
    assert code == 1 and "not found" in err and len(err.strip().splitlines()) == 1
    corrupt = tmp / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    code, _, err = run_cli(capsys, "detect", corrupt, image)
    assert code == 1 and "corrupt.npz" in err and len(err.strip().splitlines()) == 1
