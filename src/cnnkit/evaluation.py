"""Evaluating a classifier on a dataset: accuracy, top-5, per-class accuracy, confusion matrix.

(The module is named ``evaluation`` rather than ``evaluate`` so that ``cnnkit.evaluate`` stays the
function: importing a submodule ``cnnkit.evaluate`` would replace that attribute with the module.)

The JSON form (``cnnkit evaluate --format json``) has the keys ``accuracy`` (0–1),
``top5_accuracy`` (0–1, or null with fewer than 5 classes), ``per_class`` (by class name:
``accuracy`` — null for a class with no examples — ``correct``, ``count``), ``confusion`` (rows:
true class, columns: predicted class, in the order of ``class_names``), plus ``class_names``,
``count``, ``loss`` (mean cross-entropy), ``dataset``, ``split`` and ``model``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import ShapeError, UserInputError
from .shapes import fmt_shape


@dataclass
class Evaluation:
    """The result of :func:`evaluate`; :meth:`to_dict` is the JSON form, :meth:`to_text` the table."""

    class_names: list[str]
    confusion: np.ndarray          # (K, K) int64, rows true, columns predicted
    top5_correct: int | None       # None with fewer than 5 classes
    loss: float
    info: dict[str, Any] = field(default_factory=dict)  # dataset, split, model

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.count) if self.count else math.nan

    @property
    def top5_accuracy(self) -> float | None:
        if self.top5_correct is None:
            return None
        return self.top5_correct / self.count if self.count else math.nan

    def per_class(self) -> dict[str, dict[str, Any]]:
        counts = self.confusion.sum(axis=1)
        correct = np.diag(self.confusion)
        return {name: {"accuracy": float(correct[i] / counts[i]) if counts[i] else None,
                       "correct": int(correct[i]), "count": int(counts[i])}
                for i, name in enumerate(self.class_names)}

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "top5_accuracy": self.top5_accuracy, "per_class": self.per_class(),
                "confusion": self.confusion.tolist(), "class_names": list(self.class_names),
                "count": self.count, "loss": self.loss, **self.info}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self, max_confusion_classes: int = 20) -> str:
        what = " ".join(str(self.info[k]) for k in ("model", "dataset", "split") if self.info.get(k))
        lines = [f"{what + ': ' if what else ''}{self.count:,} examples",
                 f"accuracy        {100 * self.accuracy:.2f}%  ({int(np.trace(self.confusion)):,} correct)"]
        if self.top5_accuracy is not None:
            lines.append(f"top-5 accuracy  {100 * self.top5_accuracy:.2f}%")
        lines.append(f"loss            {self.loss:.4f}")
        width = max(8, *(len(n) for n in self.class_names))
        lines += ["", f"{'class':<{width}}  accuracy  correct    count"]
        for name, row in self.per_class().items():
            acc = "     n/a" if row["accuracy"] is None else f"{100 * row['accuracy']:7.2f}%"
            lines.append(f"{name:<{width}}  {acc}  {row['correct']:7,}  {row['count']:7,}")
        k = len(self.class_names)
        if k <= max_confusion_classes:
            cell = max(5, len(f"{int(self.confusion.max()):,}") + 1 if self.confusion.size else 5)
            heads = [n[:cell - 1] for n in self.class_names]
            lines += ["", "confusion (rows: true class, columns: predicted)",
                      " " * width + "".join(f"{h:>{cell}}" for h in heads)]
            for name, row in zip(self.class_names, self.confusion):
                lines.append(f"{name:<{width}}" + "".join(f"{int(v):>{cell},}" for v in row))
        else:
            lines += ["", f"(confusion matrix of {k} classes: see --format json)"]
        return "\n".join(lines)


def match_labels(model_classes: Sequence[str] | None, data_classes: Sequence[str], outputs: int,
                 where: str = "dataset") -> tuple[list[str], np.ndarray | None]:
    """``(class names, relabel)``: the classes in the model's order and, when the dataset's
    order differs, the index map dataset label → model output (None when they agree).

    The dataset's classes are matched to the model's *by name*; every one must be a class of the
    model. A model without class names takes the dataset's (as many as it has outputs).
    """
    data_classes = list(data_classes)
    if model_classes is None:
        if len(data_classes) > outputs:
            raise UserInputError(f"{where} has {len(data_classes)} classes, the model only {outputs} outputs")
        names = data_classes + [str(i) for i in range(len(data_classes), outputs)]
        return names, None
    model_classes = list(model_classes)
    if data_classes == model_classes[:len(data_classes)]:
        return model_classes, None
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise UserInputError(f"{where} has classes the model does not know: {', '.join(unknown[:10])}"
                             f"{' …' if len(unknown) > 10 else ''}; the model's classes are "
                             f"{', '.join(model_classes[:20])}{' …' if len(model_classes) > 20 else ''}")
    return model_classes, np.array([model_classes.index(c) for c in data_classes], dtype=np.int64)


def evaluate(model, data, batch_size: int = 256, *, info: dict[str, Any] | None = None) -> Evaluation:
    """Evaluate a classifier on a dataset, applying the model's preprocessing.

    Args:
        model: a built :class:`~cnnkit.model.Sequential` whose output is one score per class.
        data: a :class:`cnnkit.data.Dataset` (uint8 images are preprocessed with
            ``model.preprocessing``; float arrays are used as they are) or an ``(x, y)`` pair.
        batch_size: images per forward pass.
        info: extra fields for the report (``dataset``, ``split``, ``model``).

    Returns:
        An :class:`Evaluation` (``.accuracy``, ``.top5_accuracy``, ``.per_class()``,
        ``.confusion``, ``.to_dict()``, ``.to_text()``).

    Raises:
        ShapeError: the images are not of the model's input shape.
        UserInputError: labels out of range, or dataset classes the model does not know.

    Example:
        >>> ev = evaluate(model, load_dataset("mnist", "test"))  # doctest: +SKIP
        >>> round(ev.accuracy, 3)  # doctest: +SKIP
        0.991
    """
    from .preprocess import apply_preprocessing

    if isinstance(data, tuple) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        data_classes = None
        name = None
    else:
        x, y = data.x, np.asarray(data.y)
        data_classes = list(data.class_names)
        name = getattr(data, "name", None)
    if not model.built:
        raise ShapeError(f"{model.name} is not built: it needs an input shape before it can be evaluated")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(model.input_shape):
        got = fmt_shape(tuple(x.shape[1:])) if x.ndim == 4 else str(tuple(x.shape))
        raise ShapeError(f"{model.name} expects {fmt_shape(model.input_shape)} images; the dataset"
                         f"{' ' + name if name else ''} has {got}")
    outputs = int(np.prod(model.output_shape()))
    if data_classes is None:
        data_classes = (list(model.class_names) if model.class_names is not None
                        else [str(i) for i in range(outputs)])
    names, relabel = match_labels(model.class_names, data_classes, outputs, f"dataset {name or ''}".strip())
    y = y.astype(np.int64, copy=False)
    if y.size and (y.min() < 0 or y.max() >= len(data_classes)):
        raise UserInputError(f"labels must be in 0..{len(data_classes) - 1}; received {int(y.min())}..{int(y.max())}")
    if relabel is not None:
        y = relabel[y]
    names += [str(i) for i in range(len(names), outputs)]  # outputs without a name
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    top5 = 0 if k >= 5 else None
    loss_sum = 0.0
    for i in range(0, len(y), batch_size):
        xb = apply_preprocessing(x[i:i + batch_size], model.preprocessing, model.dtype)
        yb = y[i:i + batch_size]
        z = model.logits(xb, batch_size).reshape(len(yb), -1).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss_sum -= float(log_p[np.arange(len(yb)), yb].sum())
        pred = z.argmax(axis=1)
        np.add.at(confusion, (yb, pred), 1)
        if top5 is not None:
            best5 = np.argpartition(-z, 4, axis=1)[:, :5]
            top5 += int((best5 == yb[:, None]).any(axis=1).sum())
    loss = loss_sum / len(y) if len(y) else math.nan
    info = {**({"dataset": name} if name else {}), **(info or {})}
    return Evaluation(names, confusion, top5, loss, info)


__all__ = ["evaluate", "Evaluation", "match_labels"]
