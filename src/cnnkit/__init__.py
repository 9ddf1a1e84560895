"""cnnkit: build, check, train, look inside and deploy convolutional neural networks, on NumPy.

The public API is re-exported here; heavy modules are imported on first use so that
``import cnnkit`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it (imported lazily on first access)
_EXPORTS = {
    # errors
    "CnnkitError": "errors", "UserInputError": "errors", "ShapeError": "errors", "SpecError": "errors",
    "LabelError": "errors", "ImageError": "errors", "DatasetError": "errors", "DownloadError": "errors",
    "ModelFormatError": "errors", "NonFiniteLossError": "errors", "MissingExtraError": "errors",
    # layers and models
    "Layer": "layers", "Parameter": "layers", "Conv2d": "layers", "MaxPool2d": "layers",
    "AvgPool2d": "layers", "GlobalAvgPool2d": "layers", "Linear": "layers", "Flatten": "layers",
    "ReLU": "layers", "LeakyReLU": "layers", "Sigmoid": "layers", "Tanh": "layers",
    "BatchNorm2d": "layers", "Dropout": "layers",
    "Sequential": "model",
    "model_from_config": "spec", "parse_inline": "spec", "resolve_model": "spec",
    "builtin_spec": "zoo", "BUILTIN_MODELS": "zoo",
    # fully-connected ⇄ convolution
    "conv_as_linear": "convert", "to_fully_convolutional": "convert", "score_map": "convert",
    # detection: sliding windows at several sizes
    "Detector": "detect", "Detection": "detect", "make_scenes": "detect", "train_detector": "detect",
    "evaluate_detector": "detect",
    "summary": "summarize", "Summary": "summarize",
    "save": "io", "load": "io", "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "check_gradients": "gradcheck", "GradCheckReport": "gradcheck",
    "softmax": "kernels.losses", "softmax_cross_entropy": "kernels.losses", "svm_hinge": "kernels.losses",
    "mse": "kernels.losses", "LOSSES": "kernels.losses",
    # looking inside (viz) and the run report
    "Picture": "viz", "plot_filters": "viz", "plot_activations": "viz", "activation_maps": "viz",
    "plot_saliency": "viz", "saliency_map": "viz", "plot_curves": "viz", "confusion_matrix": "viz",
    "plot_confusion": "viz", "plot_confused": "viz", "write_report": "report",
    # datasets, evaluation
    "Dataset": "data", "load_dataset": "data", "evaluate": "evaluation", "Evaluation": "evaluation",
    # training
    "fit": "train", "History": "train", "EarlyStopping": "callbacks", "KeepBest": "callbacks",
    "Callback": "callbacks",
    "SGD": "optim", "Adam": "optim", "AdamW": "optim", "RMSprop": "optim", "make_optimizer": "optim", "StepLR": "optim", "CosineLR": "optim", "WarmupLR": "optim", "ReduceOnPlateau": "optim", "make_schedule": "optim", "DataLoader": "data.loader", "preprocessing_for": "data.loader",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = ["__version__", *_EXPORTS]
