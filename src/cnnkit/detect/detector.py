"""Sliding-window detection at several sizes: an image pyramid, one fully-convolutional pass per
scale, per-class score maps, a threshold, non-maximum suppression, boxes in image pixels.

The lecture's recipe, made concrete:

1. **Pyramid.** We know neither where nor how large an object is. The classifier looks at
   windows of its training size (W×W, 32×32 for ``shapes-net``) and was trained on objects whose
   box is centred in the window with an *extent* (half the longer box side) near
   ``box_fraction``·W. An object of extent e is therefore found in the image scaled by about
   ``box_fraction``·W / e. The default scales are ``ratio**-k`` (ratio 2^(1/3): three per octave)
   for k = 0, 1, … down to the scale where the image is as small as the window.
2. **Sizes that divide.** Each scaled image is padded by ``pad`` pixels on every side (its edge
   pixels repeated, so windows can centre on objects near the border), and its size is the
   nearest one on which every layer's arithmetic divides (:func:`cnnkit.convert.nearest_fitting_sizes`):
   (H_s + 2P − W)/S_total + 1 must be whole. The exact scale factors of that size are kept, so
   boxes map back exactly.
3. **One pass per scale.** The classifier's fully-connected head becomes convolutions
   (:func:`cnnkit.convert.to_fully_convolutional`); one pass gives a map of class scores, one cell
   per window (stride S_total); softmax turns them into probabilities.
4. **Decision.** A cell is a candidate when its most probable class is an object class (not
   ``background``) with probability ≥ ``threshold`` (threshold 0: the arg-max alone decides).
   Its box is the square of half-side ``box_fraction``·W centred in its window, mapped back to
   image pixels.
5. **Non-maximum suppression** (greedy, class-agnostic): the most probable candidate wins; the
   candidates overlapping it with IoU ≥ ``nms_iou`` are removed, and those overlapping it with
   IoU ≥ 0.5 vote for its box (score-weighted mean; Gidaris & Komodakis 2015, "box voting"),
   which refines the position and size beyond the stride and the pyramid step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..convert import ScoreMap, for_input, nearest_fitting_sizes, to_fully_convolutional, total_stride
from ..errors import ImageError, ShapeError, SpecError
from ..layers import Flatten
from .defaults import BACKGROUND, BOX_FRACTION, NMS_IOU, PYRAMID_RATIO, THRESHOLD, VOTE_IOU
from .scenes import iou


@dataclass(frozen=True)
class Level:
    """One pyramid level: the image resized to ``size`` (H_s, W_s) then padded by ``pad`` on every
    side; ``factors`` (sy, sx) = scaled size / image size, exactly."""

    scale: float
    size: tuple[int, int]
    factors: tuple[float, float]
    pad: int

    @property
    def padded(self) -> tuple[int, int]:
        return self.size[0] + 2 * self.pad, self.size[1] + 2 * self.pad


@dataclass(frozen=True)
class Detection:
    """One object found: class name, probability, box ``(x0, y0, x1, y1)`` in image pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    class_index: int = -1
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(float(self.score), 4),
                "box": [round(float(v), 1) for v in self.box]}


@dataclass
class DetectionResult:
    """What :meth:`Detector.detect` returns: the detections and what was computed on the way."""

    detections: list[Detection]
    levels: list[Level]
    probabilities: list[np.ndarray]          # per level: (rows, cols, classes) softmax probabilities
    maps: list[ScoreMap]                     # per level: the score map's geometry (and logits)
    seconds: float = 0.0
    candidates: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)
    extra: dict[str, Any] = field(default_factory=dict)


def auto_scales(image_hw: Sequence[int], window: int, ratio: float = PYRAMID_RATIO) -> list[float]:
    """``ratio**-k`` for k = 0, 1, … while the scaled image's shorter side is at least the window.

    >>> [round(s, 2) for s in auto_scales((128, 128), 32)]
    [1.0, 0.79, 0.63, 0.5, 0.4, 0.31, 0.25]
    """
    shorter = min(image_hw)
    scales, k = [], 0
    while shorter * ratio ** -k >= window - 1e-9:      # (tolerance: 2^(-6/3) is 0.2499…)
        scales.append(ratio ** -k)
        k += 1
    return scales


def _fit(fcn, size: int, axis: int, train_shape: Sequence[int]) -> int | None:
    """The size nearest to ``size`` along ``axis`` on which ``fcn``'s arithmetic divides."""
    probe = [int(train_shape[0]), int(train_shape[1]), int(train_shape[2])]
    probe[axis] = max(size, train_shape[axis])
    found = [s[axis] for s in nearest_fitting_sizes(fcn, probe, train_shape)]
    return min(found, key=lambda s: (abs(s - size), s)) if found else None


def plan_pyramid(fcn, image_shape: Sequence[int], scales: Sequence[float], pad: int) -> list[Level]:
    """The pyramid levels for an image of ``image_shape`` (H, W, C): for each scale, the nearest
    padded size that the model divides; scales at which the image would be smaller than the
    window are left out, as are repeated sizes.

    Raises:
        ShapeError: the image is smaller than the model's input at every scale.
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    train = fcn.train_input_shape or fcn.input_shape
    levels: list[Level] = []
    seen = set()
    for s in scales:
        if round(h * s) < train[0] or round(w * s) < train[1]:
            continue
        th, tw = round(h * s) + 2 * pad, round(w * s) + 2 * pad
        fh, fw = _fit(fcn, th, 0, train), _fit(fcn, tw, 1, train)
        if fh is None or fw is None or fh - 2 * pad < train[0] or fw - 2 * pad < train[1]:
            continue
        size = (fh - 2 * pad, fw - 2 * pad)
        if size in seen:
            continue
        seen.add(size)
        levels.append(Level(float(s), size, (size[0] / h, size[1] / w), pad))
    if not levels:
        raise ShapeError(
            f"the image is {h}×{w}, smaller than the model's input {train[0]}×{train[1]} at every scale "
            f"({', '.join(f'{s:.3g}' for s in scales) if scales else 'the automatic pyramid has none that fits'}); "
            f"use a larger image or larger --scales")
    return levels


def scale_image(image: np.ndarray, level: Level) -> np.ndarray:
    """uint8 (H, W, C) → the level's image: resized (Pillow, antialiased bilinear) to
    ``level.size``, then padded by repeating its edge pixels; (H_s + 2P, W_s + 2P, C)."""
    from PIL import Image

    h, w, c = image.shape
    if (h, w) == level.size:
        small = image
    else:
        pil = Image.fromarray(image[..., 0] if c == 1 else image)
        small = np.asarray(pil.resize((level.size[1], level.size[0]), Image.Resampling.BILINEAR))
        small = small.reshape(level.size[0], level.size[1], c)
    p = level.pad
    return np.pad(small, ((p, p), (p, p), (0, 0)), mode="edge") if p else np.ascontiguousarray(small)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3,
        vote_iou: float | None = VOTE_IOU) -> tuple[np.ndarray, np.ndarray]:
    """Greedy non-maximum suppression, highest score first.

    Each kept box removes every remaining box that overlaps it with IoU ≥ ``iou_threshold``.
    With ``vote_iou``, the kept box becomes the score-weighted mean of itself and the boxes it
    removed that overlap it with IoU ≥ ``vote_iou`` (box voting); None keeps it as it is.

    Shape:
        boxes (n, 4) ``[x0, y0, x1, y1]``, scores (n,) → kept indices (k,), boxes (k, 4).

    Example:
        >>> b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
        >>> nms(b, np.array([0.9, 0.8, 0.7]), vote_iou=None)[0].tolist()
        [0, 2]
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    alive = np.ones(len(boxes), bool)
    overlaps = iou(boxes, boxes)
    keep, voted = [], []
    for i in order:
        if not alive[i]:
            continue
        group = alive & (overlaps[i] >= iou_threshold)
        group[i] = True
        alive &= ~group
        keep.append(i)
        if vote_iou is None:
            voted.append(boxes[i])
        else:
            members = group & (overlaps[i] >= vote_iou)
            members[i] = True
            wts = scores[members]
            voted.append((boxes[members] * wts[:, None]).sum(axis=0) / wts.sum())
    return np.array(keep, np.int64), np.array(voted, np.float64).reshape(-1, 4)


class Detector:
    """A classifier with a ``background`` class, run as a multi-scale sliding-window detector.

    Args:
        model: a built Sequential whose head is Flatten → Linear … (e.g. ``shapes-net`` trained by
            :func:`cnnkit.detect.training.train_detector`); its ``preprocessing`` and
            ``class_names`` come with it (:func:`cnnkit.load`).
        box_fraction: the object extent the model was trained on, as a fraction of the window.
        ratio: step between the default pyramid scales.
        pad: pixels of edge padding around each scaled image (default: a quarter of the window).

    Raises:
        SpecError: the model has no fully-connected head to convert, or is not built for images.

    Example:
        >>> det = Detector(cnnkit.load("detector.npz"))            # doctest: +SKIP
        >>> [d.to_dict() for d in det.detect(image).detections]    # doctest: +SKIP
    """

    def __init__(self, model, box_fraction: float = BOX_FRACTION, ratio: float = PYRAMID_RATIO,
                 pad: int | None = None) -> None:
        if model.input_shape is None or len(model.input_shape) != 3:
            raise SpecError(f"{model.name}: a detector needs a model built for images (H, W, C); "
                            f"its input shape is {model.input_shape}")
        if not any(isinstance(layer, Flatten) for layer in model):
            raise SpecError(f"{model.name} has no fully-connected head (Flatten → Linear) to turn into "
                            f"sliding windows; a detector needs a classifier such as shapes-net")
        if not ratio > 1:
            raise SpecError(f"Detector: the pyramid ratio must be > 1. Received: ratio={ratio}")
        model.eval()
        self.model = model
        self.fcn = to_fully_convolutional(model)
        self.window = tuple(model.input_shape[:2])
        self.channels = int(model.input_shape[2])
        self.stride = total_stride(self.fcn)
        self.box_fraction = float(box_fraction)
        self.ratio = float(ratio)
        self.pad = int(min(self.window) // 4 if pad is None else pad)
        names = list(model.class_names or [str(i) for i in range(model.output_shape()[-1])])
        self.class_names = names
        self.background = names.index(BACKGROUND) if BACKGROUND in names else None
        self._sized: dict[tuple[int, ...], Any] = {}
        self._plans: dict[tuple[Any, ...], list[Level]] = {}

    # ------------------------------------------------------------------ pyramid and score maps
    def scales(self, image_hw: Sequence[int]) -> list[float]:
        """The default scales for an image of this size (:func:`auto_scales`)."""
        return auto_scales(image_hw, min(self.window), self.ratio)

    def levels(self, image_shape: Sequence[int], scales: Sequence[float] | None = None) -> list[Level]:
        """The pyramid for an image of ``image_shape`` (:func:`plan_pyramid`), remembered per size."""
        scales = tuple(float(s) for s in (scales or self.scales(image_shape[:2])))
        key = (int(image_shape[0]), int(image_shape[1]), scales)
        if key not in self._plans:
            self._plans[key] = plan_pyramid(self.fcn, image_shape, scales, self.pad)
        return list(self._plans[key])

    def _model_for(self, shape: tuple[int, int, int]):
        if shape not in self._sized:
            self._sized[shape] = for_input(self.fcn, shape)
        return self._sized[shape]

    def probabilities(self, scaled: np.ndarray) -> tuple[np.ndarray, ScoreMap]:
        """Softmax class probabilities (rows, cols, classes) of every window of one padded, scaled
        uint8 image, in one fully-convolutional pass."""
        from ..preprocess import apply_preprocessing

        x = apply_preprocessing(scaled[None], self.model.preprocessing, self.model.dtype)
        big = self._model_for(tuple(int(s) for s in x.shape[1:]))
        logits = big.logits(x)                                         # (1, rows, cols, classes)
        sm = ScoreMap(logits, self.stride, self.window)
        return softmax(logits[0].astype(np.float64)), sm

    def cell_boxes(self, level: Level, rows: int, cols: int) -> np.ndarray:
        """The predicted box of every cell of a level's map in image pixels, (rows, cols, 4)."""
        sy, sx = level.factors
        ey = self.box_fraction * self.window[0]
        ex = self.box_fraction * self.window[1]
        # window centres in padded scaled pixels: i·S + W/2 (ScoreMap.box), then unpadded, unscaled
        cy = (np.arange(rows) * self.stride[0] + self.window[0] / 2 - level.pad)[:, None]
        cx = (np.arange(cols) * self.stride[1] + self.window[1] / 2 - level.pad)[None, :]
        out = np.empty((rows, cols, 4))
        out[..., 0] = (cx - ex) / sx
        out[..., 1] = (cy - ey) / sy
        out[..., 2] = (cx + ex) / sx
        out[..., 3] = (cy + ey) / sy
        return out

    # ------------------------------------------------------------------ detection
    def prepare(self, image) -> np.ndarray:
        """An image path, Pillow image or uint8 array → uint8 (H, W, C) with the model's channels
        (the conversion rule of :mod:`cnnkit.preprocess`, without resizing)."""
        from ..preprocess import open_image, to_array

        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise ImageError(f"detect: expected a uint8 image array (H, W) or (H, W, C); "
                                 f"received {image.dtype} {image.shape}")
            h, w = image.shape[:2]
            return to_array(image, (h, w, self.channels))
        img = open_image(image) if not hasattr(image, "mode") else image
        return to_array(img, (img.size[1], img.size[0], self.channels), where=str(image))

    def detect(self, image, scales: Sequence[float] | None = None, threshold: float = THRESHOLD,
               nms_iou: float = NMS_IOU, vote_iou: float | None = VOTE_IOU) -> DetectionResult:
        """Find objects in ``image`` (path, Pillow image or uint8 (H, W[, C]) array).

        Args:
            scales: pyramid scale factors (default :meth:`scales`); ``[1.0]`` is a single-scale
                sliding window.
            threshold: smallest probability of a candidate's (arg-max, non-background) class.
            nms_iou: candidates overlapping a better one at least this much are suppressed.
            vote_iou: see :func:`nms`; None turns box voting off.

        Returns:
            A :class:`DetectionResult`; ``.detections`` sorted by score, highest first.
        """
        if not 0 <= threshold <= 1:
            raise ShapeError(f"detect: threshold must be in [0, 1]. Received: {threshold}")
        if not 0 < nms_iou <= 1:
            raise ShapeError(f"detect: nms_iou must be in (0, 1]. Received: {nms_iou}")
        if scales is not None and (not len(scales) or any(not (0 < s <= 8) for s in scales)):
            raise ShapeError(f"detect: scales must be numbers in (0, 8]. Received: {list(scales)}")
        t0 = time.perf_counter()
        img = self.prepare(image)
        levels = self.levels(img.shape, scales)
        probs, maps = [], []
        for level in levels:
            p, sm = self.probabilities(scale_image(img, level))
            probs.append(p)
            maps.append(sm)
        detections, n_cand = self.decide(img.shape, levels, probs, threshold, nms_iou, vote_iou)
        return DetectionResult(detections, levels, probs, maps, time.perf_counter() - t0, n_cand, img.shape)

    def decide(self, image_shape: Sequence[int], levels: Sequence[Level], probs: Sequence[np.ndarray],
               threshold: float = THRESHOLD, nms_iou: float = NMS_IOU, vote_iou: float | None = VOTE_IOU
               ) -> tuple[list[Detection], int]:
        """Threshold the per-level probabilities, map the candidates' boxes back to the image and
        suppress the overlapping ones; returns the detections (best first) and the candidate count."""
        boxes, scores, labels, level_of = [], [], [], []
        for k, (level, p) in enumerate(zip(levels, probs)):
            best = p.argmax(axis=-1)                                   # (rows, cols)
            top = p.max(axis=-1)
            mask = top >= threshold
            if self.background is not None:
                mask &= best != self.background
            if not mask.any():
                continue
            boxes.append(self.cell_boxes(level, *p.shape[:2])[mask])
            scores.append(top[mask])
            labels.append(best[mask])
            level_of.append(np.full(int(mask.sum()), k))
        if not boxes:
            return [], 0
        b, s, lab, lev = (np.concatenate(a) for a in (boxes, scores, labels, level_of))
        keep, voted = nms(b, s, nms_iou, vote_iou)
        h, w = int(image_shape[0]), int(image_shape[1])
        detections = []
        for i, box in zip(keep, voted):
            x0, y0, x1, y1 = (float(v) for v in np.clip(box, 0, [w, h, w, h]))
            detections.append(Detection(self.class_names[lab[i]], float(s[i]), (x0, y0, x1, y1),
                                        int(lab[i]), levels[lev[i]].scale))
        return detections, len(s)

    def objectness(self, result: DetectionResult) -> np.ndarray:
        """A heat map (H, W) in [0, 1]: at each pixel, the highest probability over the scales that
        the window centred nearest to it holds an object (1 − P(background); the top class's
        probability for a model without one). Each cell thus covers a tile of S_total/scale pixels."""
        h, w = result.image_shape[:2]
        heat = np.zeros((h, w))
        for level, p in zip(result.levels, result.probabilities):
            obj = 1 - p[..., self.background] if self.background is not None else p.max(axis=-1)
            sy, sx = level.factors
            # the cell whose window centre is nearest each pixel centre: (y·sy + P − W/2)/S, rounded
            i = np.rint(((np.arange(h) + 0.5) * sy + level.pad - self.window[0] / 2) / self.stride[0]).astype(int)
            j = np.rint(((np.arange(w) + 0.5) * sx + level.pad - self.window[1] / 2) / self.stride[1]).astype(int)
            i, j = np.clip(i, 0, obj.shape[0] - 1), np.clip(j, 0, obj.shape[1] - 1)
            np.maximum(heat, obj[i[:, None], j[None, :]], out=heat)
        return heat


def detect(model, image, scales: Sequence[float] | None = None, threshold: float = THRESHOLD,
           nms_iou: float = NMS_IOU) -> list[Detection]:
    """Objects in ``image`` found by ``model`` (a classifier with a ``background`` class); see
    :class:`Detector`.

    Example:
        >>> [d.to_dict() for d in detect(cnnkit.load("detector.npz"), "scene.png")]  # doctest: +SKIP
        [{'label': 'star', 'score': 0.99, 'box': [20.5, 31.0, 56.1, 67.2]}, ...]
    """
    return Detector(model).detect(image, scales, threshold, nms_iou).detections


__all__ = ["Detector", "Detection", "DetectionResult", "Level", "detect", "nms", "auto_scales", "plan_pyramid",
           "scale_image", "softmax", "BACKGROUND", "BOX_FRACTION", "PYRAMID_RATIO", "THRESHOLD", "NMS_IOU"]
