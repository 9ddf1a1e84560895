"""Looking inside a CNN: filters, activation maps, saliency, training curves, confusion.

Every function returns a :class:`Picture` (RGB pixels; ``.save(path)`` writes a PNG). Each module
documents how it turns numbers into pixels:

* :mod:`.filters` — a conv layer's filters; each filter scaled by its largest |weight|.
* :mod:`.activations` — conv and pool outputs for one image, low → high; one min–max scale per layer.
* :mod:`.saliency` — max over channels of |∂ score / ∂ input| for the predicted class.
* :mod:`.curves` — loss, accuracy, learning rate per epoch from history.json.
* :mod:`.confusion` — the confusion matrix and the most-confused examples.
"""

from __future__ import annotations

from .activations import activation_maps, activation_pixels, plot_activations
from .common import Picture
from .confusion import confusion_matrix, per_class_accuracy, plot_confused, plot_confusion
from .curves import plot_curves, read_history
from .filters import filter_pixels, plot_filters
from .saliency import plot_saliency, saliency_map

__all__ = [
    "Picture", "plot_filters", "filter_pixels", "plot_activations", "activation_maps", "activation_pixels",
    "plot_saliency", "saliency_map", "plot_curves", "read_history", "confusion_matrix", "per_class_accuracy",
    "plot_confusion", "plot_confused",
]
