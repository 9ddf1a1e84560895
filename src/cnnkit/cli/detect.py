"""``cnnkit detect MODEL_FILE IMAGE``: objects found with sliding windows at several sizes.

The model is a classifier with a ``background`` class (``scripts/train_detector.py`` trains one
from ``shapes-net``). Its fully-connected head is turned into convolutions, so one pass over each
scaled copy of the image (an image pyramid, three scales per octave by default, each size chosen
so that the arithmetic divides) scores every window; windows whose most probable class is an
object with probability ≥ --threshold become candidates, and non-maximum suppression keeps the
best of overlapping ones. Boxes are [x0, y0, x1, y1] in pixels of the image as given.

Exit status: 2 for an unreadable image, an image smaller than the model's input at every scale,
or a model without a fully-connected head; 1 for a missing or corrupt model file.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..detect.defaults import NMS_IOU, THRESHOLD
from . import add_command


def parse_scales(text: str) -> list[float] | None:
    """``auto`` → None; ``1,0.5,0.25`` → [1.0, 0.5, 0.25] (each in (0, 8]); argparse type."""
    if text.strip().lower() == "auto":
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or any(not (0 < v <= 8) for v in values):
        raise argparse.ArgumentTypeError(f"expected 'auto' or scale factors in (0, 8] separated by commas, "
                                         f"e.g. 1,0.5,0.25; received {text!r}")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1]; received {text!r}")
    return value


def _overlap(text: str) -> float:
    value = _fraction(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1]; received {text!r}")
    return value


def register(sub) -> None:
    p = add_command(sub, "detect", help="find objects with sliding windows at several sizes", func=run,
                    description=__doc__)
    p.add_argument("model", metavar="MODEL_FILE", help="a detector model file (a classifier with a background class)")
    p.add_argument("image", metavar="IMAGE", help="image file (PNG, JPEG, BMP, GIF, TIFF, WebP …)")
    p.add_argument("--scales", type=parse_scales, default=None, metavar="auto|S1,S2,…",
                   help="pyramid scale factors (default auto: 1, 2^(-1/3), 2^(-2/3), … down to objects the size "
                        "of the image); 1 alone is a single-scale sliding window")
    p.add_argument("--threshold", type=_fraction, default=THRESHOLD, metavar="X",
                   help=f"smallest probability of a window's most probable class to count (default {THRESHOLD}; "
                        f"0: arg-max alone)")
    p.add_argument("--nms-iou", type=_overlap, default=NMS_IOU, metavar="X",
                   help=f"suppress candidates overlapping a better one with IoU >= X (default {NMS_IOU})")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--out", metavar="FILE.png", help="write the image with boxes and labels drawn")
    p.add_argument("--heatmap", metavar="FILE.png",
                   help="write the image under a heat map of P(object), the highest over the scales")


def run(args) -> int:
    from ..detect.detector import Detector
    from ..io import load

    model = load(args.model)
    det = Detector(model)
    result = det.detect(args.image, args.scales, args.threshold, args.nms_iou)
    if det.background is None:
        print(f"cnnkit detect: note: {args.model} has no 'background' class, so every window is some object; "
              f"only --threshold tells objects from nothing", file=sys.stderr)
    image = det.prepare(args.image) if (args.out or args.heatmap) else None
    written = []
    if args.out:
        from ..detect.draw import draw_detections, save_png

        save_png(draw_detections(image, result.detections, det.class_names), args.out)
        written.append(args.out)
    if args.heatmap:
        from ..detect.draw import draw_heatmap, save_png

        save_png(draw_heatmap(image, det.objectness(result), result.detections), args.heatmap)
        written.append(args.heatmap)
    if args.format == "json":
        items = [json.dumps(d.to_dict()) for d in result.detections]        # one detection per line
        print("[\n  " + ",\n  ".join(items) + "\n]" if items else "[]")
        return 0
    h, w = result.image_shape[:2]
    print(f"{args.image}: {len(result.detections)} object(s) in {h}×{w}, {len(result.levels)} scale(s) "
          f"({', '.join(f'{lv.scale:.3g}' for lv in result.levels)}), {result.seconds:.2f} s")
    width = max([len(d.label) for d in result.detections] + [5])
    for d in result.detections:
        x0, y0, x1, y1 = d.to_dict()["box"]
        print(f"  {d.label:<{width}}  {d.score:.3f}  box [{x0}, {y0}, {x1}, {y1}]")
    for path in written:
        print(f"wrote {path}")
    return 0
