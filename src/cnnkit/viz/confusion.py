"""Confusion matrix and the most-confused examples."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import LabelError
from .common import Picture, Section, compose, figure_picture, new_figure, zoom_for
from .inputs import display_pixels


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """Counts ``cm[t, p]`` of examples of true class ``t`` predicted as ``p``: (classes, classes) int64.

    Example:
        >>> confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3).tolist()
        [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    """
    y_true = np.asarray(y_true).astype(np.int64, copy=False).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64, copy=False).ravel()
    if y_true.shape != y_pred.shape:
        raise LabelError(f"confusion_matrix: {y_true.size} true labels but {y_pred.size} predictions")
    for what, y in (("true labels", y_true), ("predictions", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise LabelError(f"confusion_matrix: {what} must be in 0..{classes - 1}; "
                             f"received {y.min()}..{y.max()}")
    return np.bincount(y_true * classes + y_pred, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class, ``cm[k, k] / Σ_p cm[k, p]`` (NaN for a class with no examples)."""
    cm = np.asarray(cm, np.float64)
    totals = cm.sum(axis=1)
    return np.divide(np.diag(cm), totals, out=np.full(len(cm), np.nan), where=totals > 0)


def _names(class_names: Sequence[str] | None, k: int) -> list[str]:
    if class_names and len(class_names) == k:
        return [str(n) for n in class_names]
    return [str(i) for i in range(k)]


def plot_confusion(cm: np.ndarray, class_names: Sequence[str] | None = None) -> Picture:
    """The confusion matrix as a heat map: rows true class, columns predicted; colour is the
    fraction of the row, the number is the count."""
    cm = np.asarray(cm, np.int64)
    k = len(cm)
    names = _names(class_names, k)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = max(4.8, 0.5 * k + 2.4)
    fig = new_figure(side + 1.0, side, dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class", fontsize=9)
    cbar.ax.tick_params(labelsize=8)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    long = max((len(n) for n in names), default=1) > 3
    ax.set_xticklabels(names, rotation=45 if long else 0, ha="right" if long else "center", fontsize=9)
    ax.set_yticklabels(names, fontsize=9)
    ax.set_xlabel("predicted class", fontsize=10)
    ax.set_ylabel("true class", fontsize=10)
    total = int(cm.sum())
    acc = float(np.trace(cm)) / total if total else float("nan")
    ax.set_title(f"confusion matrix: {total:,} images, accuracy {100 * acc:.1f}%", fontsize=11)
    if k <= 25:
        size = 9 if k <= 12 else 7
        for t in range(k):
            for p in range(k):
                if cm[t, p]:
                    ax.text(p, t, str(cm[t, p]), ha="center", va="center", fontsize=size,
                            color="white" if frac[t, p] > 0.55 else "#222")
    fig.tight_layout()
    return figure_picture(fig)


def plot_confused(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray,
                  class_names: Sequence[str] | None = None, pairs: int = 4, per_pair: int = 8) -> Picture:
    """The most-confused examples: for the ``pairs`` (true → predicted) mistakes made most often,
    up to ``per_pair`` of those examples, most confident first, each captioned with the
    probability given to the wrong class.

    Args:
        images: the examples as shown (uint8 (N, H, W, C); float images are min–max scaled).
        y_true, y_pred: (N,) class indices.
        probs: (N, classes) predicted probabilities.
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    probs = np.asarray(probs)
    k = probs.shape[1]
    names = _names(class_names, k)
    cm = confusion_matrix(y_true, y_pred, k)
    off = [(int(cm[t, p]), t, p) for t in range(k) for p in range(k) if t != p and cm[t, p]]
    off.sort(key=lambda c: (-c[0], c[1], c[2]))
    sections = []
    for count, t, p in off[:pairs]:
        idx = np.flatnonzero((y_true == t) & (y_pred == p))
        idx = idx[np.argsort(-probs[idx, p], kind="stable")][:per_pair]
        cells = []
        for i in idx:
            img = images[i]
            img = img if img.dtype == np.uint8 else display_pixels(img)
            cells.append(((int(i),), img, f"p={probs[i, p]:.2f}"))
        h, w = cells[0][1].shape[:2]
        sections.append(Section(f"true {names[t]} → predicted {names[p]}: {count} image{'s' * (count != 1)}",
                                cells, columns=per_pair, zoom=zoom_for(h, w, 72)))
    if not sections:
        sections.append(Section("no misclassified images", [], columns=1))
    wrong = int((y_true != y_pred).sum())
    title = f"most-confused examples ({wrong:,} of {len(y_true):,} misclassified)"
    return compose(sections, title=title)
