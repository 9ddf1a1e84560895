"""Training curves from a run's history: loss, accuracy and learning rate per epoch, train and
validation side by side (matplotlib, Agg canvas)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import CnnkitError
from .common import Picture, figure_picture, new_figure

TRAIN, VAL = "#1f77b4", "#d62728"


def read_history(source: Any) -> list[dict[str, Any]]:
    """The list of per-epoch records from ``history.json`` (a path to it or to its run folder), a
    dict ``{"epochs": [...]}``, a list of records, or a History object (``.to_dict()``/``.epochs``).

    Raises:
        CnnkitError: the file is missing or is not a history (exit status 1 in the CLI).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            path = path / "history.json"
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CnnkitError(f"{path}: no such file; a run folder has history.json after its first epoch") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CnnkitError(f"{path}: not a readable history.json ({type(e).__name__}: {e})") from None
    elif hasattr(source, "to_dict"):
        source = source.to_dict()
    elif hasattr(source, "epochs") and not isinstance(source, dict):
        source = {"epochs": list(source.epochs)}
    epochs = source.get("epochs") if isinstance(source, dict) else source
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        raise CnnkitError('history: expected {"epochs": [{"epoch", "train_loss", ...}, ...]}')
    return epochs


def _series(epochs: list[dict[str, Any]], key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, e in enumerate(epochs):
        v = e.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(float(e.get("epoch", i + 1)))
            ys.append(float(v) * scale)
    return xs, ys


def plot_curves(history: Any) -> Picture:
    """Three panels: loss, accuracy (%) and learning rate per epoch; train and validation.

    Args:
        history: anything :func:`read_history` takes.

    Returns:
        A :class:`Picture` (about 1200 × 380 pixels).
    """
    epochs = read_history(history)
    fig = new_figure(12.0, 3.8, dpi=100)
    axes = fig.subplots(1, 3)
    marker = "o" if len(epochs) <= 30 else None
    panels = [("loss", [("train_loss", "train", TRAIN), ("val_loss", "validation", VAL)], 1.0, "loss"),
              ("accuracy", [("train_accuracy", "train", TRAIN), ("val_accuracy", "validation", VAL)], 100.0,
               "accuracy (%)"),
              ("learning rate", [("lr", "learning rate", "#2ca02c")], 1.0, "learning rate")]
    for ax, (title, keys, scale, ylabel) in zip(axes, panels):
        drawn = 0
        for key, label, colour in keys:
            xs, ys = _series(epochs, key, scale)
            if xs:
                ax.plot(xs, ys, marker=marker, markersize=4, color=colour, label=label, linewidth=1.8)
                drawn += 1
        ax.set_title(title, fontsize=12)
        ax.set_xlabel("epoch", fontsize=10)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=9)
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="#777")
        elif len(keys) > 1:
            ax.legend(fontsize=9, frameon=False)
        xs_all = [float(e.get("epoch", i + 1)) for i, e in enumerate(epochs)]
        if xs_all and max(xs_all) - min(xs_all) < 20:
            ax.set_xticks(sorted(set(int(x) for x in xs_all)))
    lr = _series(epochs, "lr")[1]
    if lr and min(lr) > 0 and max(lr) / min(lr) > 20:
        axes[2].set_yscale("log")
    if not epochs:
        fig.suptitle("no epochs recorded yet", color="#777")
    fig.tight_layout()
    return figure_picture(fig)
