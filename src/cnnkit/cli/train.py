"""cnnkit train: train a model on a dataset and write a run folder (INTERFACE.md).

The folder gets model.npz, checkpoint.npz (every epoch, and on Ctrl-C), metrics.json, history.json,
run.json and report.html; its path is the last line on stdout (scripts: tail -n 1).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from . import add_command, positive_int

# Defaults for every dataset, then the recipe of each named dataset on top (what `cnnkit train
# --dataset D` uses unless told otherwise). shapes: README, "Training"; mnist: docs/mnist.md.
DEFAULTS = {"model": "shapes-net", "dataset": "shapes", "epochs": 10, "batch_size": 64, "optimizer": "adam",
            "lr": None, "schedule": "cosine", "augment": "none", "seed": 0, "data_dir": None, "cache_dir": None}
RECIPES = {
    "shapes": {"model": "shapes-net", "epochs": 10, "batch_size": 64, "lr": 0.003, "augment": "crop=2,flip"},
    "mnist": {"model": "lenet5", "epochs": 10, "batch_size": 128, "lr": 0.002, "augment": "crop=2"},
    "fashion-mnist": {"model": "lenet5", "epochs": 10, "batch_size": 128, "lr": 0.002, "augment": "crop=2"},
    "cifar10": {"model": "cifar-net", "epochs": 10, "batch_size": 64, "augment": "crop=4,flip"},
}
VALIDATION = 0.1  # fraction of the training set held out, chosen from the seed
RERUN_KEYS = ("model", "dataset", "batch_size", "optimizer", "lr", "schedule", "augment", "seed", "data_dir",
              "cache_dir")
SCHEDULE_CHOICES = ("cosine", "step", "plateau", "none")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; received {text!r}")
    return value


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number such as 0.001; received {text!r}")
    return value


def _recipe_help() -> str:
    lines = ["defaults by dataset (a flag given overrides its entry):"]
    for name, recipe in RECIPES.items():
        full = {**DEFAULTS, **recipe}
        lines.append(f"  {name}: --model {full['model']} --epochs {full['epochs']} --batch-size {full['batch_size']} "
                     f"--optimizer {full['optimizer']} --lr {full['lr'] or 'default'} --schedule {full['schedule']} "
                     f"--augment {full['augment']}")
    d = DEFAULTS
    lines.append(f"  others (image folders): --model {d['model']} --epochs {d['epochs']} --batch-size "
                 f"{d['batch_size']} --optimizer {d['optimizer']} --schedule {d['schedule']} --augment {d['augment']}")
    lines.append("--lr defaults to the recipe's rate with the recipe's optimiser, else to the optimiser's own.")
    return "\n".join(lines)


def register(sub) -> None:
    p = add_command(sub, "train", help="train a model and write a run folder (its path is printed last)",
                    func=run, description=f"{__doc__}\n{_recipe_help()}")
    p.add_argument("--model", help="built-in model, spec file (.json), model file (.npz) or inline spec "
                                   "(default: by dataset, shapes-net for shapes)")
    p.add_argument("--dataset", help="shapes (default), mnist, fashion-mnist, cifar10 or a folder with one "
                                     "subfolder per class")
    p.add_argument("--data-dir", help="folder holding the standard dataset files")
    p.add_argument("--cache-dir", help="download cache (default ~/.cache/cnnkit)")
    p.add_argument("--epochs", type=positive_int, help="passes over the training set (with --resume: the new total)")
    p.add_argument("--batch-size", type=positive_int, help="examples per step")
    p.add_argument("--optimizer", choices=("adam", "sgd", "adamw", "rmsprop"), help="optimiser (default adam)")
    p.add_argument("--lr", type=_learning_rate, help="learning rate")
    p.add_argument("--schedule", choices=SCHEDULE_CHOICES, help="learning-rate schedule, stepped once per epoch "
                                                               "(default cosine over the run)")
    p.add_argument("--augment", help="augmentations: crop[=PADDING], flip[=P], comma-separated, or none")
    p.add_argument("--seed", type=_seed, help="seed of the split, shuffling, augmentation and initial weights "
                                              "(default 0)")
    p.add_argument("--out", help="run folder (default runs/<YYYYmmdd-HHMMSS>-<model>-<dataset>/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint "
                                                         "(from scratch, saying so, when it has none yet)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _settings(args, out: Path | None) -> dict:
    """The run's settings: the defaults, the dataset's recipe, the run.json of a resumed run, then
    the flags given."""
    from ..errors import UserInputError
    from ..runs import read_json

    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    saved = {}
    if args.resume and out is not None and (out / "run.json").is_file():
        saved = read_json(out / "run.json")
        clash = [f"--{k.replace('_', '-')} {given[k]} (the run has {saved[k]})" for k in RERUN_KEYS
                 if k in given and k in saved and given[k] != saved[k]]
        if clash:
            raise UserInputError(f"--resume continues {out} with its own settings; drop {', '.join(clash)}")
        saved = {k: saved[k] for k in (*RERUN_KEYS, "epochs") if k in saved}
    dataset = given.get("dataset", saved.get("dataset", DEFAULTS["dataset"]))
    recipe = RECIPES.get(str(dataset).lower(), {})
    settings = {**DEFAULTS, **recipe, **saved, **given}
    if "lr" not in given and "lr" not in saved and settings["optimizer"] != DEFAULTS["optimizer"]:
        settings["lr"] = None  # the recipe's rate is for its optimiser; another takes its own default
    return settings


def _command(settings: dict) -> list[str]:
    """The ``cnnkit train`` arguments that rerun these settings (the run folder aside)."""
    argv = ["train"]
    for key in ("model", "dataset", "data_dir", "cache_dir", "epochs", "batch_size", "optimizer", "lr", "schedule",
                "augment", "seed"):
        if settings[key] is not None:
            argv += [f"--{key.replace('_', '-')}", str(settings[key])]
    return argv


def run(args) -> int:
    import numpy as np

    from ..data import load_dataset
    from ..data.loader import parse_augment, preprocessing_for
    from ..errors import UserInputError
    from ..io import save
    from ..optim import make_schedule
    from ..runs import (metrics_record, memory_warning, new_run_dir, prepare_out_dir, read_json, run_record, warn,
                        write_json)
    from ..spec import resolve_model
    from ..evaluation import evaluate
    from ..train import fit, split_validation

    t_start = time.perf_counter()
    if args.resume and not args.out:
        raise UserInputError("--resume needs --out DIR: the run folder to continue")
    out = Path(args.out) if args.out else None
    if out is not None:  # refuse a bad --out now, create it only once the other arguments are good
        out = prepare_out_dir(out, resume=args.resume, overwrite=args.overwrite, create=False)
    s = _settings(args, out)
    augment = parse_augment(s["augment"])  # unknown names: exit 2 before any work

    train_ds = load_dataset(s["dataset"], "train", data_dir=s["data_dir"], cache_dir=s["cache_dir"], seed=s["seed"])
    test_ds = load_dataset(s["dataset"], "test", data_dir=s["data_dir"], cache_dir=s["cache_dir"], seed=s["seed"])
    classes = len(train_ds.class_names)
    model = resolve_model(s["model"], tuple(train_ds.x.shape[1:]), classes=classes, seed=s["seed"])
    if model.output_shape() != (classes,):
        raise UserInputError(f"--model {s['model']} outputs {model.output_shape()} but {s['dataset']} has "
                             f"{classes} classes: its last layer needs {classes} outputs")
    fit_ds, val_ds = split_validation(train_ds, VALIDATION, s["seed"])
    if model.class_names is None:
        model.class_names = list(train_ds.class_names)
    if model.preprocessing is None and fit_ds.x.dtype == np.uint8:  # as fit would set it; run.json records it
        model.preprocessing = preprocessing_for(fit_ds)
    if out is None:
        out = new_run_dir(s["model"], s["dataset"])
    else:
        out = prepare_out_dir(out, resume=args.resume, overwrite=args.overwrite)
    checkpoint = out / "checkpoint.npz"
    if args.resume and not checkpoint.exists():
        warn(f"cnnkit train: {out} has no checkpoint yet: starting from scratch")
    message = memory_warning(model, s["batch_size"])
    if message:
        warn(f"cnnkit train: {message}")
    if args.resume and (out / "run.json").is_file():  # the run's own record; only the epochs may change
        record = read_json(out / "run.json")
        record.update(epochs=s["epochs"], command=["cnnkit", *_command(s)])
    else:
        record = run_record(
            argv=_command(s), model=s["model"], model_spec=model.config(), dataset=s["dataset"],
            data_dir=s["data_dir"], cache_dir=s["cache_dir"], optimizer=s["optimizer"], lr=s["lr"],
            batch_size=s["batch_size"], epochs=s["epochs"], schedule=s["schedule"], augment=s["augment"],
            seed=s["seed"], validation=VALIDATION, class_names=train_ds.class_names,
            preprocessing=model.preprocessing)
    write_json(out / "run.json", record)

    epochs = s["epochs"]
    history = fit(model, fit_ds, epochs=epochs, batch_size=s["batch_size"], optimizer=s["optimizer"], lr=s["lr"],
                  schedule=lambda opt: make_schedule(s["schedule"], opt, epochs=epochs), augment=augment,
                  val=val_ds, seed=s["seed"], progress=False if args.quiet else "auto",
                  checkpoint=checkpoint, resume=args.resume)
    if history.interrupted:
        warn(f"cnnkit train: interrupted; continue with: cnnkit train --out {out} --resume")
        print(out)
        return 130

    save(model, out / "model.npz")
    write_json(out / "history.json", history.to_dict())
    result = evaluate(model, test_ds)
    test_loss, test_acc = result.loss, result.accuracy

    def write_metrics() -> None:
        write_json(out / "metrics.json", metrics_record(
            test_accuracy=test_acc, test_loss=test_loss, train_seconds=history.train_seconds,
            total_seconds=time.perf_counter() - t_start, epochs=len(history), model=s["model"],
            dataset=s["dataset"], seed=s["seed"]))

    write_metrics()
    status = 0
    from ..report import write_report

    try:
        write_report(out, model=model, test=test_ds)
    except Exception as e:  # the run itself is saved; say what failed, exit 1
        warn(f"cnnkit train: the run is saved in {out}, but report.html failed: {type(e).__name__}: {e}")
        status = 1
    write_metrics()  # total_seconds includes the report
    if not args.quiet:
        print(f"test accuracy {100 * test_acc:.2f}% (loss {test_loss:.4f}); {len(history)} epoch{'s' if len(history) != 1 else ''} trained in "
              f"{history.train_seconds:.1f} s; {time.perf_counter() - t_start:.1f} s in all")
    print(out)
    return status
