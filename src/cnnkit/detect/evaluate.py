"""Scoring a detector on generated scenes: precision and recall at IoU ≥ 0.5, and time per image.

Matching (the PASCAL VOC rule): detections are taken from the most to the least probable; each
one is a true positive when it overlaps a ground-truth object of the same class, not yet matched,
with IoU ≥ ``iou_threshold`` (the best such object is taken), and a false positive otherwise.
Precision = true positives / detections, recall = true positives / objects.

Example:
    >>> e = evaluate_detector(Detector(cnnkit.load("detector.npz")), make_scenes(100, EVAL_SEED))  # doctest: +SKIP
    >>> e.precision, e.recall, e.seconds_per_image                                               # doctest: +SKIP
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .detector import NMS_IOU, THRESHOLD, Detection, Detector
from .scenes import Scene, iou

EVAL_SEED = 120_001           # evaluation scenes; never used for training (TRAIN_SCENE_SEED = 120_000)
TUNE_SEED = 120_003           # scenes for choosing the threshold and suppression overlap
EVAL_SCENES = 100


def match(detections: Sequence[Detection], boxes: np.ndarray, labels: Sequence[str],
          iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of ``detections`` to ground truth ``boxes`` (n, 4) with class names ``labels``.

    Returns:
        ``(hit, found)``: hit (len(detections),) bool, a true positive each; found (n,) bool,
        the objects matched.

    Example:
        >>> d = [Detection("star", 0.9, (0, 0, 10, 10)), Detection("star", 0.8, (1, 1, 10, 10))]
        >>> [a.tolist() for a in match(d, np.array([[0, 0, 10, 10]]), ["star"])]
        [[True, False], [True]]
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    found = np.zeros(len(boxes), bool)
    hit = np.zeros(len(detections), bool)
    if not len(detections) or not len(boxes):
        return hit, found
    order = np.argsort([-d.score for d in detections], kind="stable")
    overlaps = iou(np.array([d.box for d in detections]), boxes)      # (detections, objects)
    for i in order:
        ok = (overlaps[i] >= iou_threshold) & ~found & (np.array(labels) == detections[i].label)
        if ok.any():
            j = int(np.argmax(np.where(ok, overlaps[i], -1)))
            found[j] = hit[i] = True
    return hit, found


@dataclass
class DetectionScore:
    """Counts and figures over a set of scenes."""

    true_positives: int = 0
    detections: int = 0
    objects: int = 0
    seconds: list[float] = field(default_factory=list)
    per_size: dict[str, list[int]] = field(default_factory=dict)     # group -> [found, objects]
    per_class: dict[str, list[int]] = field(default_factory=dict)    # class -> [found, objects, tp, detections]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.true_positives / self.detections if self.detections else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.objects if self.objects else 0.0

    @property
    def seconds_per_image(self) -> float:
        return statistics.mean(self.seconds) if self.seconds else 0.0

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds) if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "true_positives": self.true_positives, "detections": self.detections, "objects": self.objects,
                "images": len(self.seconds), "seconds_per_image": round(self.seconds_per_image, 4),
                "median_seconds_per_image": round(self.median_seconds, 4),
                "recall_by_size": {k: round(v[0] / v[1], 4) if v[1] else None for k, v in self.per_size.items()},
                "per_class": {k: {"recall": round(v[0] / v[1], 4) if v[1] else None,
                                  "precision": round(v[2] / v[3], 4) if v[3] else None}
                              for k, v in self.per_class.items()},
                "settings": self.settings}


def size_group(extent: float, scene_size: int) -> str:
    """``small``, ``medium`` or ``large``: which of the scene's three size groups ``extent`` is in."""
    from .scenes import size_groups

    groups = size_groups(scene_size)
    for name, (_, hi) in zip(("small", "medium", "large"), groups):
        if extent <= hi:
            return name
    return "large"


def evaluate_detector(det: Detector, scenes: Sequence[Scene], scales: Sequence[float] | None = None,
                      threshold: float = THRESHOLD, nms_iou: float = NMS_IOU, iou_threshold: float = 0.5,
                      progress: bool = False) -> DetectionScore:
    """Run ``det`` on every scene and score it (see the module docstring). Times are the wall
    time of :meth:`Detector.detect` per image (pyramid, passes, suppression)."""
    score = DetectionScore(settings={"scales": "auto" if scales is None else [float(s) for s in scales],
                                     "threshold": threshold, "nms_iou": nms_iou, "iou_threshold": iou_threshold})
    for n, scene in enumerate(scenes):
        result = det.detect(scene.image, scales, threshold, nms_iou)
        names = [scene.class_names[k] for k in scene.labels]
        hit, found = match(result.detections, scene.boxes, names, iou_threshold)
        score.true_positives += int(hit.sum())
        score.detections += len(hit)
        score.objects += len(found)
        score.seconds.append(result.seconds)
        for e, ok, name in zip(scene.extents, found, names):
            g = score.per_size.setdefault(size_group(e, scene.image.shape[0]), [0, 0])
            g[0] += int(ok)
            g[1] += 1
            c = score.per_class.setdefault(name, [0, 0, 0, 0])
            c[0] += int(ok)
            c[1] += 1
        for d, ok in zip(result.detections, hit):
            c = score.per_class.setdefault(d.label, [0, 0, 0, 0])
            c[2] += int(ok)
            c[3] += 1
        if progress:
            print(f"  scene {n + 1}/{len(scenes)}: {int(hit.sum())}/{len(found)} found, "
                  f"{len(hit) - int(hit.sum())} false, {result.seconds:.2f} s", flush=True)
    return score


def sweep(det: Detector, scenes: Sequence[Scene], thresholds: Sequence[float], nms_ious: Sequence[float],
          scales: Sequence[float] | None = None, iou_threshold: float = 0.5) -> list[dict[str, float]]:
    """Precision and recall for every (threshold, nms_iou) pair: the score maps are computed once
    per scene and only the decision is repeated. For choosing the defaults on scenes other than
    the evaluation scenes."""
    scored = [(scene, det.detect(scene.image, scales)) for scene in scenes]
    rows = []
    for threshold in thresholds:
        for nms_iou in nms_ious:
            tp = n_det = n_obj = 0
            for scene, r in scored:
                dets, _ = det.decide(scene.image.shape, r.levels, r.probabilities, threshold, nms_iou)
                hit, found = match(dets, scene.boxes, [scene.class_names[k] for k in scene.labels], iou_threshold)
                tp, n_det, n_obj = tp + int(hit.sum()), n_det + len(hit), n_obj + len(found)
            rows.append({"threshold": threshold, "nms_iou": nms_iou, "precision": tp / n_det if n_det else 0.0,
                         "recall": tp / n_obj if n_obj else 0.0})
    return rows


__all__ = ["evaluate_detector", "sweep", "match", "DetectionScore", "size_group", "EVAL_SEED", "EVAL_SCENES", "TUNE_SEED"]
