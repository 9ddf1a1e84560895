"""A small run folder for the report and visualize tests, written without training.

The model is ``shapes-net`` with its initial weights (plus, optionally, a few plain SGD steps),
saved with :func:`cnnkit.io.save`; history, metrics and run JSON files follow INTERFACE.md; the
dataset is the built-in ``shapes``, so the report reloads the test split exactly as it would
after ``cnnkit train``.
"""

from __future__ import annotations

import json
from pathlib import Path

SHAPES = ["circle", "square", "triangle", "cross", "ring", "star"]


def history(epochs: int = 5) -> dict:
    return {"epochs": [{"epoch": i + 1, "train_loss": 1.8 / (i + 1), "train_accuracy": 1 - 0.6 / (i + 1),
                        "val_loss": 1.9 / (i + 1), "val_accuracy": 1 - 0.65 / (i + 1),
                        "lr": 0.001 * 0.5 ** (i // 2),
                        "timings": {"train_seconds": 4.0, "val_seconds": 0.2, "images_per_second": 2500.0}}
                       for i in range(epochs)]}


def make_run(run_dir: Path, seed: int = 0) -> Path:
    """Write model.npz, history.json, metrics.json and run.json into ``run_dir``; return it."""
    from cnnkit.io import save
    from cnnkit.spec import model_from_config
    from cnnkit.zoo import builtin_spec

    run_dir.mkdir(parents=True, exist_ok=True)
    model = model_from_config(builtin_spec("shapes-net"), seed=seed)
    model.class_names = list(SHAPES)
    model.preprocessing = {"scale": 1 / 255, "mean": [0.45, 0.45, 0.45], "std": [0.25, 0.25, 0.25]}
    save(model, run_dir / "model.npz")
    (run_dir / "history.json").write_text(json.dumps(history()))
    (run_dir / "metrics.json").write_text(json.dumps(
        {"test_accuracy": 0.5, "test_loss": 1.2, "train_seconds": 20.0, "total_seconds": 22.0, "epochs": 5,
         "model": "shapes-net", "dataset": "shapes", "seed": seed}))
    (run_dir / "run.json").write_text(json.dumps(
        {"command": ["cnnkit", "train", "--epochs", "5"], "model": "shapes-net", "model_spec": model.config(),
         "dataset": "shapes", "data_dir": None, "cache_dir": None, "optimizer": "adam", "lr": 0.001,
         "batch_size": 64, "epochs": 5, "seed": seed, "validation": 0.1, "class_names": SHAPES,
         "preprocessing": model.preprocessing, "started": "2025-01-01T12:00:00+0000",
         "versions": {"cnnkit": "0.1.0"}}))
    return run_dir
