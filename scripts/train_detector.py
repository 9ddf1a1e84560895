"""Train the shapes detector: ``shapes-net`` with a ``background`` class, on windows of generated scenes.

    python scripts/train_detector.py --out runs/detector            # writes runs/detector/model.npz

Writes ``OUT/model.npz`` (a model file for ``cnnkit detect``) and ``OUT/training.json`` (settings,
window counts per class and stage, per-epoch history, seconds). Training scenes use seed 120000
(mining scenes 120002); the evaluation scenes of ``scripts/eval_detection.py`` use 120001, never
seen in training. See docs/detection.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from cnnkit.detect.training import TRAIN_SCENE_SEED, WindowRules, train_detector
    from cnnkit.io import atomic_write, save

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--scenes", type=int, default=1500, help="training scenes (default 1500)")
    p.add_argument("--epochs", type=int, default=8, help="epochs on their windows (default 8)")
    p.add_argument("--mine-scenes", type=int, default=500,
                   help="new scenes searched for false alarms after training (default 500; 0: none)")
    p.add_argument("--mine-epochs", type=int, default=3, help="epochs after adding them (default 3)")
    p.add_argument("--negatives", type=int, default=24, help="background windows sampled per scene (default 24)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="weights, validation split and shuffling (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = train_detector(scenes=args.scenes, epochs=args.epochs, seed=args.seed, lr=args.lr,
                           rules=WindowRules(negatives_per_scene=args.negatives),
                           progress=False if args.quiet else "lines", mine_scenes=args.mine_scenes,
                           mine_epochs=args.mine_epochs)
    seconds = time.perf_counter() - t0
    save(model, args.out / "model.npz")
    report = {"settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "scene_seed": TRAIN_SCENE_SEED, "mine_scene_seed": TRAIN_SCENE_SEED + 2},
              "windows": model.windows, "histories": [h.to_dict() for h in model.histories],
              "seconds": round(seconds, 1)}
    atomic_write(args.out / "training.json", json.dumps(report, indent=2) + "\n")
    last = model.histories[-1].last
    print(f"trained in {seconds:.0f} s; last validation accuracy {last['val_accuracy']:.4f} (windows)")
    print(args.out / "model.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
