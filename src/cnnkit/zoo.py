"""Built-in models, as specs (the same schema as JSON spec files).

* ``lenet5`` (28×28×1): conv 6@5×5 P2 – ReLU – maxpool 2 – conv 16@5×5 – ReLU – maxpool 2 –
  fc120 – ReLU – fc84 – ReLU – fc10; 61,706 parameters.
* ``cifar-net`` (32×32×3): conv32 – conv32 – maxpool 2 – conv64 – conv64 – maxpool 2 (all 3×3 P1
  + ReLU) – fc512 – ReLU – fc10; 2,168,362 parameters.
* ``shapes-net`` (32×32×3, the default for the built-in ``shapes`` dataset): unpadded convs so
  that it turns into an exact sliding-window detector — conv 16@5×5 – ReLU – maxpool 2 –
  conv 32@3×3 – ReLU – maxpool 2 – flatten – fc64 – ReLU – fc(classes); total stride 4.

Each takes another input shape or class count when asked (``builtin_spec("lenet5", (32, 32, 3))``).
"""

from __future__ import annotations

from typing import Any, Sequence

from .errors import SpecError

SHAPES_CLASSES_DEFAULT = 6


def _lenet5(classes: int) -> list[dict[str, Any]]:
    return [
        {"type": "conv2d", "filters": 6, "size": 5, "padding": 2}, {"type": "relu"},
        {"type": "maxpool2d", "size": 2},
        {"type": "conv2d", "filters": 16, "size": 5}, {"type": "relu"},
        {"type": "maxpool2d", "size": 2},
        {"type": "flatten"},
        {"type": "linear", "outputs": 120}, {"type": "relu"},
        {"type": "linear", "outputs": 84}, {"type": "relu"},
        {"type": "linear", "outputs": classes},
    ]


def _cifar_net(classes: int) -> list[dict[str, Any]]:
    def conv(k):
        return [{"type": "conv2d", "filters": k, "size": 3, "padding": 1}, {"type": "relu"}]

    return [*conv(32), *conv(32), {"type": "maxpool2d", "size": 2}, *conv(64), *conv(64),
            {"type": "maxpool2d", "size": 2}, {"type": "flatten"},
            {"type": "linear", "outputs": 512}, {"type": "relu"}, {"type": "linear", "outputs": classes}]


def _shapes_net(classes: int) -> list[dict[str, Any]]:
    return [
        {"type": "conv2d", "filters": 16, "size": 5}, {"type": "relu"},
        {"type": "maxpool2d", "size": 2},
        {"type": "conv2d", "filters": 32, "size": 3}, {"type": "relu"},
        {"type": "maxpool2d", "size": 2},
        {"type": "flatten"},
        {"type": "linear", "outputs": 64}, {"type": "relu"},
        {"type": "linear", "outputs": classes},
    ]


BUILTIN_MODELS = {
    "lenet5": (_lenet5, (28, 28, 1), 10),
    "cifar-net": (_cifar_net, (32, 32, 3), 10),
    "shapes-net": (_shapes_net, (32, 32, 3), SHAPES_CLASSES_DEFAULT),
}


def builtin_spec(name: str, input_shape: Sequence[int] | None = None, classes: int | None = None) -> dict[str, Any]:
    """The spec of a built-in model, for its default or the given input shape and class count.

    >>> builtin_spec("lenet5")["input_shape"]
    [28, 28, 1]
    """
    key = name.lower()
    if key not in BUILTIN_MODELS:
        raise SpecError(f"unknown model {name!r}; expected one of {', '.join(BUILTIN_MODELS)}")
    make, default_shape, default_classes = BUILTIN_MODELS[key]
    return {"name": key, "input_shape": list(input_shape or default_shape),
            "layers": make(classes or default_classes)}
