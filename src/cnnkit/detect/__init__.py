"""Finding objects with sliding windows at several sizes (docs/detection.md).

* :mod:`~cnnkit.detect.scenes`: generated scenes (several shapes of three sizes, touching, partly
  hidden, in clutter) with ground-truth boxes; IoU.
* :mod:`~cnnkit.detect.detector`: the image pyramid, one fully-convolutional pass per scale,
  per-class score maps, threshold, non-maximum suppression, boxes in image pixels.
* :mod:`~cnnkit.detect.training`: ``shapes-net`` trained with a ``background`` class on windows
  of scenes.
* :mod:`~cnnkit.detect.evaluate`: precision and recall at IoU ≥ 0.5, time per image.
* :mod:`~cnnkit.detect.draw`: boxes with labels, heat-map overlay.

Example:
    >>> import cnnkit
    >>> det = cnnkit.Detector(cnnkit.load("detector.npz"))          # doctest: +SKIP
    >>> det.detect("scene.png").detections                          # doctest: +SKIP
"""

from __future__ import annotations

from .detector import BACKGROUND, Detection, DetectionResult, Detector, Level, auto_scales, detect, nms
from .evaluate import DetectionScore, evaluate_detector, match
from .scenes import Scene, iou, make_scene, make_scenes
from .training import train_detector

__all__ = ["Detector", "Detection", "DetectionResult", "Level", "detect", "nms", "auto_scales", "BACKGROUND",
           "evaluate_detector", "match", "DetectionScore", "Scene", "make_scene", "make_scenes", "iou",
           "train_detector"]
