"""Score a detector on 100 generated scenes: precision and recall at IoU ≥ 0.5, time per image,
with the image pyramid and with a single scale (no pyramid) side by side.

    python scripts/eval_detection.py runs/detector/model.npz [--json results.json] [--pictures DIR]

The scenes (seed 120001, half 128×128, half 256×256) are never used in training (training scenes:
seed 120000; mining scenes: 120002). A detection is correct when its class is right and its box
overlaps a not yet matched object's box with IoU ≥ 0.5 (the PASCAL VOC rule); times are the wall
time of ``Detector.detect`` per image (pyramid, passes, suppression) on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def _row(name: str, s) -> str:
    by_size = s.to_dict()["recall_by_size"]
    sizes = " / ".join(f"{by_size.get(g, 0) or 0:.2f}" for g in ("small", "medium", "large"))
    return (f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.true_positives} / {s.detections} / {s.objects} "
            f"| {sizes} | {1000 * s.seconds_per_image:.0f} ms | {1000 * s.median_seconds:.0f} ms |")


def main(argv: list[str] | None = None) -> int:
    import cnnkit
    from cnnkit.detect.detector import NMS_IOU, THRESHOLD, Detector
    from cnnkit.detect.draw import draw_detections, draw_heatmap, save_png
    from cnnkit.detect.evaluate import EVAL_SCENES, EVAL_SEED, TUNE_SEED, evaluate_detector, sweep
    from cnnkit.detect.scenes import make_scenes
    from cnnkit.io import atomic_write

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="detector model file (scripts/train_detector.py)")
    p.add_argument("--scenes", type=int, default=EVAL_SCENES, help=f"scenes (default {EVAL_SCENES})")
    p.add_argument("--seed", type=int, default=None, help=f"scene seed (default {EVAL_SEED}; {TUNE_SEED} with --sweep)")
    p.add_argument("--threshold", type=float, default=THRESHOLD, help=f"detection threshold (default {THRESHOLD})")
    p.add_argument("--nms-iou", type=float, default=NMS_IOU, help=f"suppression overlap (default {NMS_IOU})")
    p.add_argument("--json", type=Path, help="write the figures as JSON")
    p.add_argument("--pictures", type=Path, help="write example pictures (boxes, heat map) to this folder")
    p.add_argument("--progress", action="store_true", help="one line per scene")
    p.add_argument("--sweep", action="store_true",
                   help="instead: precision and recall over a grid of thresholds and suppression overlaps, on the "
                        "tuning scenes (seed 120003 unless --seed), to choose the defaults")
    args = p.parse_args(argv)

    det = Detector(cnnkit.load(args.model))
    if args.seed is None:
        args.seed = TUNE_SEED if args.sweep else EVAL_SEED
    t0 = time.perf_counter()
    scenes = make_scenes(args.scenes, args.seed)
    print(f"{len(scenes)} scenes (seed {args.seed}) generated in {time.perf_counter() - t0:.1f} s; "
          f"{sum(len(s.labels) for s in scenes)} objects, "
          f"{sum(int(s.touching.sum()) for s in scenes)} placed against another", flush=True)
    if args.sweep:
        print("| threshold | NMS IoU | precision | recall |\n|---:|---:|---:|---:|")
        for row in sweep(det, scenes, [0.5, 0.7, 0.8, 0.9, 0.95, 0.98], [0.2, 0.3, 0.4]):
            print(f"| {row['threshold']} | {row['nms_iou']} | {row['precision']:.3f} | {row['recall']:.3f} |")
        return 0
    results = {}
    for name, scales in (("pyramid", None), ("single scale (1.0)", [1.0]), ("single scale (0.5)", [0.5])):
        score = evaluate_detector(det, scenes, scales, args.threshold, args.nms_iou, progress=args.progress)
        results[name] = score
        print(f"  {name}: precision {score.precision:.3f}, recall {score.recall:.3f}, "
              f"{1000 * score.seconds_per_image:.0f} ms per image", flush=True)
    print()
    print("| detector | precision | recall | correct / detections / objects | recall small / medium / large "
          "| time per image (mean) | (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, score in results.items():
        print(_row(name, score))
    by_size = {128: [], 256: []}
    for s, t in zip(scenes, results["pyramid"].seconds):
        by_size.setdefault(s.image.shape[0], []).append(t)
    for size, times in by_size.items():
        if times:
            print(f"pyramid, {size}×{size}: {1000 * sum(times) / len(times):.0f} ms per image (mean of {len(times)})")
    print("per class (pyramid):", json.dumps(results["pyramid"].to_dict()["per_class"]))

    if args.json:
        report = {"model": str(args.model), "scenes": len(scenes), "seed": args.seed,
                  "objects": sum(len(s.labels) for s in scenes),
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                              "python": platform.python_version()},
                  "results": {k: v.to_dict() for k, v in results.items()}}
        atomic_write(args.json, json.dumps(report, indent=2) + "\n")
    if args.pictures:
        args.pictures.mkdir(parents=True, exist_ok=True)
        for k in (0, 1):
            scene = scenes[k]
            result = det.detect(scene.image, None, args.threshold, args.nms_iou)
            size = scene.image.shape[0]
            save_png(draw_detections(scene.image, result.detections, det.class_names),
                     args.pictures / f"scene{size}-boxes.png")
            save_png(draw_heatmap(scene.image, det.objectness(result), result.detections),
                     args.pictures / f"scene{size}-heatmap.png")
            single = det.detect(scene.image, [1.0], args.threshold, args.nms_iou)
            save_png(draw_detections(scene.image, single.detections, det.class_names),
                     args.pictures / f"scene{size}-single-scale.png")
            from PIL import Image

            Image.fromarray(scene.image).save(args.pictures / f"scene{size}.png")
        print(f"pictures in {args.pictures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
