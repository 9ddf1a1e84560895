#!/usr/bin/env python
"""The documented LeNet-5 recipe on real MNIST (docs/mnist.md): train, and record the test
accuracy and the wall time of every epoch.

Usage::

    python scripts/mnist_recipe.py --data-dir ../shared/data/mnist --seed 0
    python scripts/mnist_recipe.py --data-dir ../shared/data/mnist --seed 0 --seed 1 --seed 2

For each seed it writes ``<out>/seed<N>.json`` (rewritten after every epoch, so a run in progress
can be followed), with ``--save-model`` also ``<out>/seed<N>.npz`` (the trained model, for
``cnnkit evaluate``), and after each seed ``<out>/RESULTS.md``,
a table of every seed's JSON found in ``<out>``. Default ``<out>``: ``docs/mnist_recipe``.

Each JSON: ``recipe`` (everything that defines the run), ``environment`` (versions, CPU count,
thread limits), ``epochs`` (per epoch: ``epoch``, ``test_accuracy``, ``test_loss``,
``train_loss``, ``train_accuracy``, ``lr``, ``train_seconds``, ``eval_seconds``,
``wall_seconds`` — since the start, data loading included — and ``load_average_1min``, the
machine's load when the epoch ended: timings from a busy machine say little), ``final_test_accuracy``,
``first_epoch_at_99`` and ``total_seconds``.

The test set is used as the per-epoch validation set only to *report* test accuracy; nothing is
chosen from it (fixed epochs, fixed schedule, the last epoch's model is the result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit.callbacks import Callback  # noqa: E402
from cnnkit.data import load_dataset  # noqa: E402
from cnnkit.io import atomic_write  # noqa: E402
from cnnkit.optim import Adam  # noqa: E402
from cnnkit.schedules import CosineLR  # noqa: E402
from cnnkit.train import fit  # noqa: E402

# The recipe (docs/mnist.md explains each choice).
RECIPE = {
    "model": "lenet5",
    "epochs": 10,
    "batch_size": 128,
    "optimizer": {"name": "adam", "lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    "schedule": {"name": "cosine", "T_max": 10, "eta_min": 0.0},
    "augment": [{"name": "random_crop", "padding": 2}],  # a random shift of up to 2 pixels, zero fill
    "preprocessing": {"scale": 1 / 255, "mean": [0.1307], "std": [0.3081]},
    "train_examples": 60_000,
    "validation": "none (all 60,000 training images are trained on; the test set is only reported)",
}


def augmentations(recipe: dict) -> list:
    """The loader's augmentations for the recipe (see cnnkit.data.loader)."""
    from cnnkit.data import loader

    out = []
    for aug in recipe["augment"]:
        if aug["name"] == "random_crop":
            out.append(loader.RandomCrop(aug["padding"]))
        else:
            raise ValueError(f"unknown augmentation {aug['name']!r}")
    return out


def environment() -> dict:
    env = {"cnnkit": cnnkit.__version__, "numpy": np.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                          if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info

        env["blas"] = [{k: i.get(k) for k in ("internal_api", "version", "num_threads")} for i in threadpool_info()]
    except ImportError:
        pass
    return env


class Recorder(Callback):
    """Writes the JSON after every epoch (atomically), and a line on stdout."""

    def __init__(self, path: Path, record: dict, t0: float) -> None:
        self.path, self.record, self.t0 = path, record, t0

    def on_epoch_end(self, state) -> None:
        e = state.history.epochs[-1]
        row = {"epoch": e["epoch"], "test_accuracy": e["val_accuracy"], "test_loss": e["val_loss"],
               "train_loss": e["train_loss"], "train_accuracy": e["train_accuracy"], "lr": e["lr"],
               "train_seconds": e["timings"]["train_seconds"], "eval_seconds": e["timings"]["val_seconds"],
               "wall_seconds": round(time.perf_counter() - self.t0, 2),
               "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
        self.record["epochs"].append(row)
        write_json(self.path, self.record)
        print(f"seed {self.record['seed']} epoch {row['epoch']:2d}: test accuracy {100 * row['test_accuracy']:.2f}% "
              f"(loss {row['test_loss']:.4f}), train loss {row['train_loss']:.4f}, lr {row['lr']:.4g}, "
              f"{row['train_seconds']:.0f} s train + {row['eval_seconds']:.0f} s test, "
              f"{row['wall_seconds']:.0f} s so far", flush=True)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def run_seed(seed: int, data_dir: str, out: Path, epochs: int, limit: int | None, progress,
             save_model: bool = False) -> dict:
    t0 = time.perf_counter()
    train = load_dataset("mnist", "train", data_dir=data_dir)
    test = load_dataset("mnist", "test", data_dir=data_dir)
    if limit:  # a quick smoke run on the first images (not the recipe)
        train, test = train.subset(slice(0, limit)), test.subset(slice(0, max(limit // 6, 100)))
    recipe = dict(RECIPE, epochs=epochs, train_examples=len(train.y))
    load_seconds = time.perf_counter() - t0
    model = cnnkit.resolve_model(recipe["model"], seed=seed)
    model.class_names = list(train.class_names)
    model.preprocessing = dict(recipe["preprocessing"])
    o = recipe["optimizer"]
    opt = Adam(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    schedule = CosineLR(opt, T_max=recipe["schedule"]["T_max"], eta_min=recipe["schedule"]["eta_min"])
    record = {"seed": seed, "recipe": recipe, "environment": environment(), "data_dir": str(data_dir),
              "load_seconds": round(load_seconds, 2), "epochs": [], "status": "running"}
    path = out / f"seed{seed}.json"
    fit(model, train, epochs=epochs, batch_size=recipe["batch_size"], optimizer=opt, schedule=schedule,
        val=test, seed=seed, augment=augmentations(recipe), progress=progress,
        callbacks=[Recorder(path, record, t0)])
    accs = [e["test_accuracy"] for e in record["epochs"]]
    record.update(status="done", final_test_accuracy=accs[-1],
                  first_epoch_at_99=next((i + 1 for i, a in enumerate(accs) if a >= 0.99), None),
                  total_seconds=round(time.perf_counter() - t0, 2))
    if save_model:
        cnnkit.save(model, out / f"seed{seed}.npz")
    write_json(path, record)
    return record


def results_table(out: Path) -> str:
    records = []
    for p in sorted(out.glob("seed*.json")):
        try:
            records.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    lines = ["# LeNet-5 on MNIST: the recipe of docs/mnist.md", "",
             "Test accuracy after each epoch (%), and the wall time of the whole run.", ""]
    if not records:
        return "\n".join(lines + ["(no runs yet)"]) + "\n"
    n = max(len(r["epochs"]) for r in records)
    lines.append("| seed | " + " | ".join(f"ep {i + 1}" for i in range(n)) + " | final | wall time | status |")
    lines.append("|---" * (n + 4) + "|")
    for r in records:
        accs = [f"{100 * e['test_accuracy']:.2f}" for e in r["epochs"]] + [""] * (n - len(r["epochs"]))
        wall = r.get("total_seconds") or (r["epochs"][-1]["wall_seconds"] if r["epochs"] else 0)
        final = f"{100 * r['final_test_accuracy']:.2f}" if "final_test_accuracy" in r else ""
        lines.append(f"| {r['seed']} | " + " | ".join(accs) + f" | {final} | {wall / 60:.1f} min | {r['status']} |")
    lines += ["", "Seconds per epoch (training + test evaluation):", ""]
    for r in records:
        secs = ", ".join(f"{e['train_seconds'] + e['eval_seconds']:.0f}" for e in r["epochs"])
        env = r.get("environment", {})
        loads = [e["load_average_1min"] for e in r["epochs"] if e.get("load_average_1min") is not None]
        load = f", load average {min(loads):.1f}–{max(loads):.1f}" if loads else ""
        lines.append(f"- seed {r['seed']}: {secs} (on {env.get('cpu_count')} CPUs, numpy {env.get('numpy')}{load})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"),
                   help="folder with the four MNIST *-idx?-ubyte.gz files")
    p.add_argument("--seed", type=int, action="append", help="seed (repeat for several; default 0)")
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"], help="epochs (the recipe: 10)")
    p.add_argument("--out", default=str(ROOT / "docs" / "mnist_recipe"), help="output folder")
    p.add_argument("--save-model", action="store_true", help="also write <out>/seed<N>.npz")
    p.add_argument("--limit", type=int, help="smoke test: train on the first N images only (not the recipe)")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="none",
                   help="fit's progress display (default none: one line per epoch)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = False if args.progress == "none" else args.progress
    for seed in args.seed or [0]:
        record = run_seed(seed, args.data_dir, out, args.epochs, args.limit, progress, args.save_model)
        print(f"seed {seed}: final test accuracy {100 * record['final_test_accuracy']:.2f}% in "
              f"{record['total_seconds'] / 60:.1f} min; {out / f'seed{seed}.json'}", flush=True)
        atomic_write(out / "RESULTS.md", results_table(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
