"""The detector model: ``shapes-net`` trained with a ``background`` class on windows of scenes.

The training windows are cut from generated training scenes (:mod:`cnnkit.detect.scenes`) through
the very pyramid the detector uses (:mod:`cnnkit.detect.detector`: same scales, same resizing,
same padding, same stride), so the classifier sees at training time exactly the kind of window
it scores at detection time. Each window (cell of a pyramid level) gets a label from the ground
truth, in that level's pixels:

* **an object class** when an object's box centre is within ``centre_tolerance`` pixels of the
  window centre on both axes (the stride is 4, so every object has such a window) and its extent
  (half the longer box side) lies in the band ``box_fraction``·W · ratio^(±``band``);
* **ignored** (not used) when an object is nearly so (centre within ``ignore_distance`` and extent
  within ratio^(±``ignore_band``)): the boundary between "this size, here" and "not" is fuzzy;
* **background** otherwise: empty regions, clutter, parts of larger objects, objects off-centre
  or of another size — so that "nothing here" is a possible answer.

All positive windows are kept; background windows are sampled, half of them "hard" (the window
overlaps some object) and half anywhere. Training applies random flips and quarter turns (the
eight symmetries of the square: they keep a shape's class, its box centre and extent).

Example:
    >>> model = train_detector(scenes=200, epochs=2, progress=False)    # doctest: +SKIP
    >>> cnnkit.save(model, "detector.npz")                              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..data.shapes import SHAPE_CLASSES
from ..errors import UserInputError
from ..shapes import conv_output_size
from .detector import BACKGROUND, Detector, Level, scale_image
from .scenes import Scene, box_centres, box_extents, make_scenes

TRAIN_SCENE_SEED = 120_000    # training scenes (evaluation uses EVAL_SEED in evaluate.py)
IGNORE = -1


@dataclass(frozen=True)
class WindowRules:
    """How a window is labelled from the ground truth (see the module docstring)."""

    centre_tolerance: float = 2.5
    band: float = 0.6
    ignore_distance: float = 6.0
    ignore_band: float = 1.6
    negatives_per_scene: int = 24
    hard_fraction: float = 0.5


def detector_classes(classes: Sequence[str] = SHAPE_CLASSES) -> list[str]:
    """The detector's class names: the shapes, then ``background``."""
    return [*classes, BACKGROUND]


def detector_model(classes: int = len(SHAPE_CLASSES) + 1, seed: int = 0, name: str = "shapes-net"):
    """A fresh ``shapes-net`` with one output per shape class plus ``background``."""
    from ..spec import model_from_config
    from ..zoo import builtin_spec

    spec = builtin_spec(name, classes=classes)
    return model_from_config(spec, tuple(spec["input_shape"]), seed=seed)


def label_windows(det: Detector, level: Level, rows: int, cols: int, scene: Scene,
                  rules: WindowRules = WindowRules()) -> np.ndarray:
    """The label of every window of one pyramid level: a class index, ``len(classes)`` for
    background, or :data:`IGNORE`; (rows, cols) int64."""
    background = len(scene.class_names)
    labels = np.full((rows, cols), background, np.int64)
    if not len(scene.labels):
        return labels
    sy, sx = level.factors
    # window centres in the level's unpadded pixels
    cy = (np.arange(rows) * det.stride[0] + det.window[0] / 2 - level.pad)[:, None]
    cx = (np.arange(cols) * det.stride[1] + det.window[1] / 2 - level.pad)[None, :]
    centres = box_centres(scene.boxes)
    extents = box_extents(scene.boxes) * (sy + sx) / 2
    mid = det.box_fraction * min(det.window)
    positive = np.zeros((rows, cols), bool)
    for (ox, oy), e, k in zip(centres, extents, scene.labels):
        dy, dx = np.abs(cy - oy * sy), np.abs(cx - ox * sx)            # (rows, 1), (1, cols)
        ratio = np.log(e / mid) / np.log(det.ratio)                    # in pyramid steps
        if abs(ratio) <= rules.band:
            here = (dy <= rules.centre_tolerance) & (dx <= rules.centre_tolerance)
            labels[here & ~positive] = k
            positive |= here
        if abs(ratio) <= rules.ignore_band:
            near = (dy <= rules.ignore_distance) & (dx <= rules.ignore_distance)
            labels[near & ~positive] = IGNORE
    return labels


def _overlaps_objects(det: Detector, level: Level, rows: int, cols: int, scene: Scene) -> np.ndarray:
    """(rows, cols) bool: the window overlaps some object's box."""
    if not len(scene.labels):
        return np.zeros((rows, cols), bool)
    sy, sx = level.factors
    y0 = (np.arange(rows) * det.stride[0] - level.pad) / sy            # window edges in image pixels
    x0 = (np.arange(cols) * det.stride[1] - level.pad) / sx
    y1, x1 = y0 + det.window[0] / sy, x0 + det.window[1] / sx
    b = scene.boxes
    hit_y = (y0[:, None] < b[None, :, 3]) & (y1[:, None] > b[None, :, 1])   # (rows, n)
    hit_x = (x0[:, None] < b[None, :, 2]) & (x1[:, None] > b[None, :, 0])   # (cols, n)
    return (hit_y[:, None, :] & hit_x[None, :, :]).any(axis=2)


def scene_windows(det: Detector, scene: Scene, rng: np.random.Generator, rules: WindowRules = WindowRules(),
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Training windows of one scene: every positive window and a sample of background ones.

    Returns:
        ``(x, y)``: x uint8 (n, W, W, C), y int64 (n,).
    """
    background = len(scene.class_names)
    pos_x, pos_y, neg_pool = [], [], []          # neg_pool: (level, i, j, hard)
    scaled_images = []
    for k, level in enumerate(det.levels(scene.image.shape)):
        img = scale_image(scene.image, level)
        scaled_images.append(img)
        rows = conv_output_size(img.shape[0], det.window[0], det.stride[0], rounding="floor")
        cols = conv_output_size(img.shape[1], det.window[1], det.stride[1], rounding="floor")
        labels = label_windows(det, level, rows, cols, scene, rules)
        hard = _overlaps_objects(det, level, rows, cols, scene)
        for i, j in zip(*np.nonzero(labels >= 0)):
            if labels[i, j] != background:
                pos_x.append(_crop(img, det, i, j))
                pos_y.append(labels[i, j])
            else:
                neg_pool.append((k, i, j, bool(hard[i, j])))
    neg_x, neg_y = [], []
    if neg_pool:
        pool = np.array(neg_pool)
        n_hard = int(round(rules.negatives_per_scene * rules.hard_fraction))
        picks = []
        for want, is_hard in ((n_hard, True), (rules.negatives_per_scene - n_hard, False)):
            idx = np.flatnonzero(pool[:, 3] == int(is_hard))
            if len(idx):
                picks.extend(rng.choice(idx, size=min(want, len(idx)), replace=False))
        for p in picks:
            k, i, j, _ = pool[p]
            neg_x.append(_crop(scaled_images[k], det, i, j))
            neg_y.append(background)
    xs = pos_x + neg_x
    shape = (0, det.window[0], det.window[1], scene.image.shape[2])
    x = np.stack(xs) if xs else np.zeros(shape, np.uint8)
    return x, np.array(pos_y + neg_y, np.int64)


def _crop(img: np.ndarray, det: Detector, i: int, j: int) -> np.ndarray:
    y0, x0 = int(i) * det.stride[0], int(j) * det.stride[1]
    return img[y0:y0 + det.window[0], x0:x0 + det.window[1]]


def window_dataset(scenes: Sequence[Scene], det: Detector, seed: int = 0, rules: WindowRules = WindowRules()):
    """The training windows of ``scenes`` as a :class:`cnnkit.data.Dataset` (classes: the shapes,
    then ``background``)."""
    from ..data import Dataset

    rng = np.random.default_rng(seed)
    parts = [scene_windows(det, s, rng, rules) for s in scenes]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return Dataset(x, y, detector_classes(scenes[0].class_names if scenes else SHAPE_CLASSES), "shapes-detect")


class Dihedral:
    """Augmentation: each image turned by a random element of the square's eight symmetries
    (flips and quarter turns), drawn from the loader's generator."""

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = rng.integers(0, 8, len(x))
        out = x.copy()
        for t in range(1, 8):
            idx = np.flatnonzero(g == t)
            if idx.size:
                part = x[idx]
                if t & 4:
                    part = part.transpose(0, 2, 1, 3)          # (n, W, H, C): mirror on the diagonal
                part = np.rot90(part, k=t & 3, axes=(1, 2))
                out[idx] = part
        return out

    def __repr__(self) -> str:
        return "Dihedral()"


def mine_windows(det: Detector, scenes: Sequence[Scene], threshold: float = 0.3, per_scene: int = 40,
                 rules: WindowRules = WindowRules()) -> tuple[np.ndarray, np.ndarray]:
    """Hard negatives and positives of new scenes, found with the current model: every window
    whose label is background but whose most probable class is an object class with probability
    ≥ ``threshold`` (a false alarm; at most ``per_scene`` per scene, the most confident), and every
    positive window (the Dalal–Triggs "retrain on hard examples" step).

    Returns:
        ``(x, y)``: x uint8 (n, W, W, C), y int64 (n,).
    """
    xs, ys = [], []
    for scene in scenes:
        background = len(scene.class_names)
        false_alarms = []                       # (probability, window)
        for level in det.levels(scene.image.shape):
            img = scale_image(scene.image, level)
            p, _ = det.probabilities(img)
            rows, cols = p.shape[:2]
            labels = label_windows(det, level, rows, cols, scene, rules)
            best = p.argmax(axis=-1)
            alarm = (labels == background) & (best != det.background) & (p.max(axis=-1) >= threshold)
            for i, j in zip(*np.nonzero(alarm)):
                false_alarms.append((p[i, j].max(), _crop(img, det, i, j)))
            for i, j in zip(*np.nonzero((labels >= 0) & (labels != background))):
                xs.append(_crop(img, det, i, j))
                ys.append(int(labels[i, j]))
        false_alarms.sort(key=lambda t: -t[0])
        for _, window in false_alarms[:per_scene]:
            xs.append(window)
            ys.append(background)
    if not xs:
        return np.zeros((0, det.window[0], det.window[1], det.channels), np.uint8), np.zeros(0, np.int64)
    return np.stack(xs), np.array(ys, np.int64)


def train_detector(scenes: int | Sequence[Scene] = 1500, epochs: int = 8, seed: int = 0, batch_size: int = 64,
                   lr: float = 1e-3, rules: WindowRules = WindowRules(), progress: Any = "auto",
                   scene_seed: int = TRAIN_SCENE_SEED, mine_scenes: int = 0, mine_epochs: int = 3,
                   mine_threshold: float = 0.3):
    """Train ``shapes-net`` (7 classes: the six shapes and ``background``) as a detector.

    Args:
        scenes: training scenes, or how many to generate from ``scene_seed``.
        epochs, seed, batch_size, lr: passed to :func:`cnnkit.fit` (Adam).
        rules: how windows are labelled and sampled.
        mine_scenes: after training, this many new scenes (seed ``scene_seed + 2``) are searched
            for false alarms (:func:`mine_windows`); their hard negatives and positives join the
            training windows for ``mine_epochs`` more epochs at a third of the learning rate.

    Returns:
        The trained model (a Sequential with ``class_names`` and ``preprocessing``), with
        ``model.histories`` (one :class:`cnnkit.History` per stage) and ``model.windows``
        (training windows per class, per stage).
    """
    from ..data import Dataset
    from ..train import fit

    if isinstance(scenes, (int, np.integer)):
        if scenes < 1:
            raise UserInputError(f"train_detector: scenes must be >= 1. Received: {scenes}")
        scenes = make_scenes(int(scenes), scene_seed)
    model = detector_model(seed=seed)
    model.class_names = detector_classes()
    det = Detector(model)
    data = window_dataset(scenes, det, seed, rules)
    model.class_names = None                       # let fit set names and preprocessing from the data
    histories = [fit(model, data, epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, val=0.05,
                     seed=seed, augment=(Dihedral(),), progress=progress)]
    windows = [{name: int(c) for name, c in zip(data.class_names, data.class_counts())}]
    if mine_scenes:
        det = Detector(model)
        mx, my = mine_windows(det, make_scenes(int(mine_scenes), scene_seed + 2), mine_threshold, rules=rules)
        data = Dataset(np.concatenate([data.x, mx]), np.concatenate([data.y, my]), data.class_names, data.name)
        windows.append({name: int(c) for name, c in zip(data.class_names, np.bincount(my, minlength=len(data.class_names)))})
        histories.append(fit(model, data, epochs=mine_epochs, batch_size=batch_size, optimizer="adam", lr=lr / 3,
                             val=0.05, seed=seed + 1, augment=(Dihedral(),), progress=progress))
    model.histories = histories                    # type: ignore[attr-defined]
    model.windows = windows                        # type: ignore[attr-defined]
    model.eval()
    return model


__all__ = ["train_detector", "detector_model", "detector_classes", "window_dataset", "scene_windows",
           "label_windows", "mine_windows", "WindowRules", "Dihedral", "TRAIN_SCENE_SEED", "IGNORE"]
