"""Reading a run folder back for pictures and the report: its JSON files, its model, its test
set and the model's predictions on it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CnnkitError
from .curves import read_history


@dataclass
class RunData:
    """What a run folder holds (INTERFACE.md, "Run folder"); each JSON file is None if absent."""

    run_dir: Path
    run: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def model_path(self) -> Path:
        return self.run_dir / "model.npz"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CnnkitError(f"{path}: not readable JSON ({type(e).__name__}: {e})") from None


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read ``run.json``, ``metrics.json`` and ``history.json`` of a run folder.

    Raises:
        CnnkitError: the folder does not exist or a file in it is corrupt (CLI exit status 1).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise CnnkitError(f"{path}: no such run folder (cnnkit train writes one and prints its path)")
    data = RunData(path)
    run = _read_json(path / "run.json")
    metrics = _read_json(path / "metrics.json")
    for name, obj in (("run.json", run), ("metrics.json", metrics)):
        if obj is not None and not isinstance(obj, dict):
            raise CnnkitError(f"{path / name}: expected a JSON object, found {type(obj).__name__}")
    data.run, data.metrics = run, metrics
    if (path / "history.json").exists():
        data.history = read_history(path / "history.json")
    return data


def load_run_model(data: RunData):
    """The run's trained model (``model.npz``), by :func:`cnnkit.io.load`."""
    from ..io import load

    if not data.model_path.is_file():
        raise CnnkitError(f"{data.model_path}: no model file; the run may not have finished")
    return load(data.model_path)


def load_run_test_set(data: RunData):
    """The test split of the run's dataset, as ``run.json`` names it."""
    from ..data import load_dataset

    run = data.run or {}
    if not run.get("dataset"):
        raise CnnkitError(f"{data.run_dir / 'run.json'}: missing, or names no dataset")
    return load_dataset(run["dataset"], "test", data_dir=run.get("data_dir"), cache_dir=run.get("cache_dir"),
                        seed=int(run.get("seed", 0)))


def predict_dataset(model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities (N, classes) for raw dataset images, preprocessed as the model says,
    ``batch_size`` images at a time (the kernels' scratch buffers grow with it)."""
    from ..preprocess import apply_preprocessing

    out = [model.predict(apply_preprocessing(x[i:i + batch_size], model.preprocessing, model.dtype.type),
                         batch_size=batch_size) for i in range(0, len(x), batch_size)]
    if not out:
        return np.zeros((0, *model.output_shape()), model.dtype)
    return np.concatenate(out)
