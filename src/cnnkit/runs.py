"""Run folders: where ``cnnkit train`` keeps what it trained and the figures to judge it.

A run folder (INTERFACE.md, "Files") holds::

    model.npz        the trained model (cnnkit.io.save)
    checkpoint.npz   model + optimiser, schedule, loader, RNG and callback state, epoch, position,
                     history (cnnkit.io.save_checkpoint); written at the end of every epoch and on Ctrl-C
    metrics.json     test_accuracy (0–1), test_loss, train_seconds, total_seconds, epochs, model,
                     dataset, seed
    history.json     {"epochs": [{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                     "lr", "timings": {"train_seconds", "val_seconds", "images_per_second"}}]}
    run.json         everything needed to rerun and to rebuild the report (see :func:`run_record`)
    report.html      written by cnnkit.report

The default folder is ``runs/<YYYYmmdd-HHMMSS>-<model>-<dataset>/`` with ``-2``, ``-3`` … when
taken. ``--out DIR`` refuses a non-empty folder unless resuming or overwriting; ``--overwrite``
removes only the files listed above (and stray temporaries), never anything else in the folder.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import UserInputError
from .shapes import fmt_bytes

RUN_FILES = ("model.npz", "checkpoint.npz", "metrics.json", "history.json", "run.json", "report.html")
METRICS_KEYS = ("test_accuracy", "test_loss", "train_seconds", "total_seconds", "epochs", "model",
                "dataset", "seed")


# ----------------------------------------------------------------------------- names and folders
def short_name(text: str) -> str:
    """A short, file-name-safe name for a model or dataset argument.

    Built-in names stay as they are; a path becomes its base name without suffix (a model file
    named ``model.npz`` takes its folder's name); an inline spec becomes ``inline``.

    >>> short_name("shapes-net"), short_name("specs/tiny.json"), short_name("/data/flowers/")
    ('shapes-net', 'tiny', 'flowers')
    >>> short_name("conv(6,5)-relu-fc(10)")
    'inline'
    """
    text = str(text).strip()
    if "(" in text or "," in text:
        return "inline"
    path = Path(text)
    name = path.stem if path.suffix in (".json", ".npz") else path.name
    if name == "model" and path.suffix == ".npz" and path.parent.name:
        name = path.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    return name[:40]


def new_run_dir(model: str, dataset: str, root: str | os.PathLike = "runs", now: float | None = None) -> Path:
    """Create and return ``root/<YYYYmmdd-HHMMSS>-<model>-<dataset>[-2, -3 …]``.

    The folder is created here (``mkdir`` without ``exist_ok``), so two runs started in the same
    second never share one.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{stamp}-{short_name(model)}-{short_name(dataset)}"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserInputError(f"run folder: too many runs named {base!r} in {root}")


def clean_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files an interrupted atomic write left (kill -9 mid-write)."""
    from .checkpoint import clean_stray_temporaries

    return clean_stray_temporaries(run_dir)


def prepare_out_dir(out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                    create: bool = True) -> Path:
    """Check and create an explicit ``--out`` folder.

    A folder that exists and is not empty is refused unless ``resume`` (continue it) or
    ``overwrite`` (remove the run files listed in :data:`RUN_FILES` and stray temporaries, and
    nothing else). Stray temporaries are always removed. With ``create=False`` only the checks
    run (nothing is created or removed), so a command can refuse early and create the folder once
    every other argument is known to be good.
    """
    if resume and overwrite:
        raise UserInputError("--resume and --overwrite contradict each other: pass one of them")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"--out {str(out)!r} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (resume or overwrite):
        raise UserInputError(f"--out {str(out)!r} is not empty; pass --resume to continue that run or "
                             "--overwrite to replace it")
    if not create:
        return path
    path.mkdir(parents=True, exist_ok=True)
    clean_temporaries(path)
    if overwrite:
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- JSON files
def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write strict JSON atomically (temporary file, fsync, rename: :func:`cnnkit.io.atomic_write`)."""
    from .io import atomic_write

    atomic_write(path, json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")


def _finite(obj: Any) -> Any:
    """NaN and ±inf (not JSON) become null."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def metrics_record(*, test_accuracy: float, test_loss: float, train_seconds: float, total_seconds: float,
                   epochs: int, model: str, dataset: str, seed: int) -> dict[str, Any]:
    """The ``metrics.json`` object, keys exactly as INTERFACE.md names them."""
    return {"test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
            "train_seconds": round(float(train_seconds), 3), "total_seconds": round(float(total_seconds), 3),
            "epochs": int(epochs), "model": str(model), "dataset": str(dataset), "seed": int(seed)}


def versions() -> dict[str, Any]:
    """Versions and the thread count (batch shards): a bit-identical rerun needs the same ones."""
    import numpy as np

    from . import __version__

    from .parallel import get_threads

    return {"cnnkit": __version__, "numpy": np.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "threads": get_threads()}


def run_record(*, argv: Sequence[str], model: str, model_spec: dict[str, Any], dataset: str,
               data_dir: str | None, cache_dir: str | None, optimizer: str, lr: float | None, batch_size: int,
               epochs: int, schedule: str, augment: str, seed: int, validation: float,
               class_names: Sequence[str], preprocessing: dict[str, Any] | None) -> dict[str, Any]:
    """The ``run.json`` object: the command line, the model (its name and full spec), the
    dataset and its paths, the optimiser settings, the seed and the versions — enough to rerun
    the training and to rebuild the report. ``lr`` None: the optimiser's default rate."""
    return {
        "command": ["cnnkit", *argv],
        "model": model, "model_spec": model_spec,
        "dataset": dataset, "data_dir": data_dir, "cache_dir": cache_dir,
        "optimizer": optimizer, "lr": lr, "batch_size": batch_size, "epochs": epochs, "schedule": schedule,
        "augment": augment, "seed": seed, "validation": validation,
        "class_names": list(class_names), "preprocessing": preprocessing,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
    }


# ----------------------------------------------------------------------------- memory
def batch_memory_bytes(model, batch_size: int) -> int:
    """Estimated activation memory of one training step for ``batch_size`` images: the summary's
    forward + backward figure (every layer's output kept for backward, plus its gradient; from the
    shape chain of :mod:`cnnkit.shapes`) and the input batch."""
    from .summarize import summary

    table = summary(model, batch_size=int(batch_size))
    return table.memory_train + table.input_bytes


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_warning(model, batch_size: int, available: int | None = None) -> str | None:
    """A warning line when a batch's estimated activation memory exceeds the available memory."""
    available = available_memory() if available is None else available
    if not available:
        return None
    need = batch_memory_bytes(model, batch_size)
    if need <= available:
        return None
    fits = int(batch_size * available / need)
    hint = f"--batch-size {fits} or less would fit" if fits >= 1 else "even --batch-size 1 does not fit"
    return (f"warning: a batch of {batch_size} needs about {fmt_bytes(need)} of activation memory "
            f"(forward + backward), more than the {fmt_bytes(available)} available; {hint}")


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
