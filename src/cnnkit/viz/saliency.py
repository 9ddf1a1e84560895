"""Saliency maps: which input pixels the predicted class's score is most sensitive to.

Following Simonyan, Vedaldi and Zisserman (2014), "Deep inside convolutional networks": the
score is the predicted class's *logit* (before the softmax); one backward pass with
``dy = one-hot(class)`` gives ∂score/∂input, and the map is its absolute value, maximised over
the colour channels:  ``saliency[i, j] = max_c |∂ score / ∂ x[i, j, c]|``.

The backward pass is the model's own (``forward_cached``/``backward_cached``, the same code as
``forward``/``backward``), so computing a saliency map leaves the parameters' ``.grad`` alone.
Drawn with the "inferno" colour map: black = 0, brightest = the map's maximum.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UserInputError
from .common import Picture, Section, colormap, compose, zoom_for
from .inputs import prepare


def saliency_map(model, image, target: int | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """``(saliency (H, W), class index, probabilities (classes,))`` for one image.

    Args:
        model: a built :class:`~cnnkit.Sequential` whose output is class scores (N, classes).
        image: an image path, uint8 pixels (H, W, C) or a preprocessed float array
            (see :mod:`cnnkit.viz.inputs`).
        target: the class whose score to explain; default the predicted class.

    Shape:
        image (H, W, C) -> saliency (H, W), float of the model's dtype
    """
    x, _ = prepare(model, image)
    return _saliency(model, x, target)


def _saliency(model, x: np.ndarray, target: int | None) -> tuple[np.ndarray, int, np.ndarray]:
    was_training = model.training
    model.eval()
    try:
        logits, caches = model.forward_cached(x)  # (1, classes)
        if logits.ndim != 2:
            raise UserInputError(f"saliency: the model's output is {logits.shape[1:]}, not class scores")
        k = int(np.argmax(logits[0])) if target is None else int(target)
        if not 0 <= k < logits.shape[1]:
            raise UserInputError(f"saliency: class {k} is out of range 0..{logits.shape[1] - 1}")
        dy = np.zeros_like(logits)
        dy[0, k] = 1.0  # d score_k / d logits
        dx, _ = model.backward_cached(dy, caches, need_input_grad=True)  # (1, H, W, C)
    finally:
        if was_training:
            model.train()
    z = logits[0].astype(np.float64) - logits[0].max()
    probs = np.exp(z) / np.exp(z).sum()
    return np.abs(dx[0]).max(axis=-1), k, probs


def plot_saliency(model, images, labels: Sequence[str] | None = None, size: int = 128,
                  note: bool = True) -> Picture:
    """Draw, for each image, the input, its saliency map and the two overlaid.

    Args:
        model: a built :class:`~cnnkit.Sequential`.
        images: one image (path or array) or a list of them.
        labels: optional caption per image (e.g. the true class), shown under the input.
        size: about how many pixels wide each of the three panels is drawn.
        note: print the one-line explanation of the map under the first title.

    Returns:
        A :class:`Picture` with cells ``(i, "input")``, ``(i, "saliency")``, ``(i, "overlay")``.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise UserInputError("saliency: no image given")
    names = model.class_names
    sections = []
    for i, image in enumerate(images):
        x, shown = prepare(model, image)
        sal, k, probs = _saliency(model, x, None)
        m = float(sal.max())
        heat = colormap(sal / m if m > 0 else sal)  # (H, W, 3)
        rgb = shown if shown.shape[2] == 3 else np.repeat(shown, 3, axis=2)
        overlay = (0.45 * rgb.astype(np.float64) + 0.55 * heat).round().astype(np.uint8)
        cls = names[k] if names and k < len(names) else f"class {k}"
        z = zoom_for(*sal.shape, size)
        caption = labels[i] if labels else "input"
        cells = [((i, "input"), shown, caption), ((i, "saliency"), heat, f"max {m:.3g}"),
                 ((i, "overlay"), overlay, "overlay")]
        sections.append(Section(f"predicted {cls} (p = {probs[k]:.2f})", cells, columns=3, zoom=z))
    if note:
        sections[0].note = "saliency = max over channels of |∂ score / ∂ input| for the predicted class; black = 0"
    return compose(sections)
