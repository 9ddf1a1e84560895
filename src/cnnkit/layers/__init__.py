"""Layer classes: they own parameters, gradients and caches, and call :mod:`cnnkit.kernels`."""

from __future__ import annotations

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .base import Layer, Parameter
from .conv import Conv2d
from .dropout import Dropout
from .linear import Flatten, Linear
from .norm import BatchNorm2d
from .pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d

LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.type_name: cls
    for cls in (Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Linear, Flatten, ReLU, LeakyReLU,
                Sigmoid, Tanh, BatchNorm2d, Dropout)
}

# Other spellings accepted in spec files and inline specs.
LAYER_ALIASES: dict[str, str] = {
    "conv": "conv2d",
    "maxpool": "maxpool2d",
    "pool": "maxpool2d",
    "avgpool": "avgpool2d",
    "gap": "globalavgpool2d",
    "globalavgpool": "globalavgpool2d",
    "fc": "linear",
    "dense": "linear",
    "lrelu": "leakyrelu",
    "bn": "batchnorm2d",
    "batchnorm": "batchnorm2d",
}

__all__ = [
    "Layer", "Parameter", "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Linear", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "BatchNorm2d", "Dropout", "LAYER_CLASSES", "LAYER_ALIASES",
]
