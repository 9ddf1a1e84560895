"""Finding objects with sliding windows at several sizes (docs/detection.md).

* :mod:`~cnnkit.detect.scenes`: generated scenes (several shapes of three sizes, touching, partly
  hidden, in clutter) with ground-truth boxes; IoU.
* :mod:`~cnnkit.detect.detector`: the image pyramid, one fully-convolutional pass per scale,
  per-class score maps, threshold, non-maximum suppression, boxes in image pixels.
* :mod:`~cnnkit.detect.training`: ``shapes-net`` trained with a ``background`` class on windows
  of scenes.
* :mod:`~cnnkit.detect.evaluate`: precision and recall at IoU ≥ 0.5, time per image.
* :mod:`~cnnkit.detect.draw`: boxes with labels, heat-map overlay.

The names below are imported on first use (so that the command line stays quick to start).

Example:
    >>> import cnnkit
    >>> det = cnnkit.Detector(cnnkit.load("detector.npz"))          # doctest: +SKIP
    >>> det.detect("scene.png").detections                          # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detector": "detector", "Detection": "detector", "DetectionResult": "detector", "Level": "detector",
    "detect": "detector", "nms": "detector", "auto_scales": "detector",
    "evaluate_detector": "evaluate", "match": "evaluate", "DetectionScore": "evaluate",
    "Scene": "scenes", "make_scene": "scenes", "make_scenes": "scenes", "iou": "scenes",
    "train_detector": "training",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnkit.detect' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = list(_EXPORTS)
