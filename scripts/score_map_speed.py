"""Measure how much faster one fully-convolutional pass is than classifying every window crop.

Usage: python scripts/score_map_speed.py [--model shapes-net] [--size 128] [--repeats 7]

Both sides score exactly the same windows (the training size, at the model's total stride) of the
same random image, in float32, round-robin in one process; the medians and their ratio are printed.
The two results are checked to agree first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from cnnkit.convert import score_map, to_fully_convolutional, window_crops
from cnnkit.spec import resolve_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shapes-net")
    ap.add_argument("--size", type=int, default=128, help="square input size (must fit the model)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    model = resolve_model(args.model)
    model.eval()
    h, w, c = model.input_shape
    x = np.random.default_rng(0).random((1, args.size, args.size, c), dtype=np.float32)
    fcn = to_fully_convolutional(model)
    sm = score_map(fcn, x)
    crops = window_crops(x, sm.scores.shape[1:3], sm.stride, sm.window)
    direct = model.logits(crops).reshape(sm.scores.shape)
    diff = float(np.abs(direct - sm.scores).max() / np.abs(direct).max())

    t_map, t_crops = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        score_map(fcn, x)
        t_map.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.logits(window_crops(x, sm.scores.shape[1:3], sm.stride, sm.window))
        t_crops.append(time.perf_counter() - t0)
    m, cr = statistics.median(t_map), statistics.median(t_crops)
    windows = sm.scores.shape[1] * sm.scores.shape[2]
    print(f"{args.model} on {args.size}×{args.size}×{c}: {sm.scores.shape[1]}×{sm.scores.shape[2]} = {windows} windows "
          f"of {h}×{w} at stride {sm.stride[0]}; max relative difference {diff:.1e}")
    print(f"  score map (one pass): {m * 1e3:.1f} ms   every crop: {cr * 1e3:.1f} ms   speed-up {cr / m:.1f}×  "
          f"(medians of {args.repeats}, float32)")


if __name__ == "__main__":
    main()
