"""``cnnkit train``: train a model on a dataset and write a run folder (INTERFACE.md).

The run folder's path is the last line on stdout, so scripts can take it with ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from pathlib import Path

from . import add_command

DEFAULTS = {"model": "shapes-net", "dataset": "shapes", "epochs": 8, "batch_size": 64, "optimizer": "adam",
            "lr": None, "seed": 0, "data_dir": None, "cache_dir": None}
VALIDATION = 0.1  # fraction of the training set held out, chosen from the seed
RERUN_KEYS = ("model", "dataset", "batch_size", "optimizer", "lr", "seed", "data_dir", "cache_dir")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value


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


def register(sub) -> None:
    p = add_command(sub, "train", help="train a model and write a run folder (its path is printed last)",
                    func=run, description=__doc__)
    d = DEFAULTS
    p.add_argument("--model", help=f"built-in model, spec file (.json), model file (.npz) or inline spec "
                                   f"(default {d['model']})")
    p.add_argument("--dataset", help=f"shapes, mnist, fashion-mnist, cifar10 or a folder with one subfolder per "
                                     f"class (default {d['dataset']})")
    p.add_argument("--data-dir", help="folder holding the standard dataset files")
    p.add_argument("--cache-dir", help="download cache (default ~/.cache/cnnkit)")
    p.add_argument("--epochs", type=_positive_int, help=f"passes over the training set (default {d['epochs']}; "
                                                        "with --resume: the new total)")
    p.add_argument("--batch-size", type=_positive_int, help=f"examples per step (default {d['batch_size']})")
    p.add_argument("--optimizer", choices=("adam", "sgd", "adamw", "rmsprop"),
                   help=f"optimiser (default {d['optimizer']})")
    p.add_argument("--lr", type=_learning_rate, help="learning rate (default: the optimiser's own)")
    p.add_argument("--seed", type=_seed, help=f"seed of the split, shuffling and initial weights (default {d['seed']})")
    p.add_argument("--out", help="run folder (default runs/<YYYYmmdd-HHMMSS>-<model>-<dataset>/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint "
                                                         "(from scratch, saying so, when it has none yet)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files of a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _settings(args, out: Path | None) -> dict:
    """The run's settings: the defaults, the run.json of a resumed run, then what was passed."""
    from ..errors import UserInputError
    from ..runs import read_json

    given = {k: getattr(args, k) for k in (*DEFAULTS, "epochs") if getattr(args, k) is not None}
    settings = dict(DEFAULTS)
    if args.resume and out is not None and (out / "run.json").is_file():
        saved = read_json(out / "run.json")
        for key in (*RERUN_KEYS, "epochs"):
            if key in saved:
                settings[key] = saved[key]
        clash = [f"--{k.replace('_', '-')} {given[k]} (the run has {saved[k]})" for k in RERUN_KEYS
                 if k in given and k in saved and given[k] != saved[k]]
        if clash:
            raise UserInputError(f"--resume continues {out} with its own settings; drop {', '.join(clash)}")
    settings.update(given)
    return settings


def _command(settings: dict) -> list[str]:
    """The ``cnnkit train`` arguments that rerun these settings (the run folder aside)."""
    argv = ["train"]
    for key in ("model", "dataset", "data_dir", "cache_dir", "epochs", "batch_size", "optimizer", "lr", "seed"):
        if settings[key] is not None:
            argv += [f"--{key.replace('_', '-')}", str(settings[key])]
    return argv


def run(args) -> int:
    import numpy as np

    from ..data import load_dataset
    from ..data.loader import preprocessing_for
    from ..errors import UserInputError
    from ..io import save
    from ..runs import (metrics_record, memory_warning, new_run_dir, prepare_out_dir, run_record, warn,
                        write_json)
    from ..spec import resolve_model
    from ..evaluation import evaluate
    from ..train import fit, split_validation

    t_start = time.perf_counter()
    if args.resume and not args.out:
        raise UserInputError("--resume needs --out DIR: the run folder to continue")
    out = Path(args.out) if args.out else None
    if out is not None:
        out = prepare_out_dir(out, resume=args.resume, overwrite=args.overwrite)
    s = _settings(args, out)

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
    checkpoint = out / "checkpoint.npz"
    if args.resume and not checkpoint.exists():
        warn(f"cnnkit train: {out} has no checkpoint yet: starting from scratch")
    message = memory_warning(model, s["batch_size"])
    if message:
        warn(f"cnnkit train: {message}")
    if not (args.resume and (out / "run.json").is_file()):
        write_json(out / "run.json", run_record(
            argv=_command(s), model=s["model"], model_spec=model.config(),
            dataset=s["dataset"], data_dir=s["data_dir"], cache_dir=s["cache_dir"], optimizer=s["optimizer"],
            lr=s["lr"], batch_size=s["batch_size"], epochs=s["epochs"], seed=s["seed"], validation=VALIDATION,
            class_names=train_ds.class_names, preprocessing=model.preprocessing))

    history = fit(model, fit_ds, epochs=s["epochs"], batch_size=s["batch_size"], optimizer=s["optimizer"],
                  lr=s["lr"], val=val_ds, seed=s["seed"], progress=False if args.quiet else "auto",
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
    # TODO(lead): make the report unconditional once cnnkit.report (issue: report.html) lands.
    if importlib.util.find_spec("cnnkit.report") is not None:
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
