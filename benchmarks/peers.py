"""The two sides of each workload: cnnkit as `cnnkit train`/`predict` run it, and PyTorch.

* **cnnkit training step** = the body of :func:`cnnkit.train.fit`'s loop: ``model.forward``,
  ``softmax_cross_entropy``, ``model.backward(…, need_input_grad=False)``, ``SGD.step()`` (lr 0.01,
  momentum 0.9). **Inference** = ``model.logits(x, batch_size=B)`` in evaluation mode, the path of
  ``predict``/``evaluate``.
* **PyTorch** = the same network (``torch.nn`` built from cnnkit's own spec, with cnnkit's initial
  weights copied in, so both compute the same function), in ``channels_last`` memory format (its
  faster layout on this kind of CPU), ``F.cross_entropy``, ``loss.backward()``,
  ``torch.optim.SGD(lr=0.01, momentum=0.9)``; inference under ``torch.inference_mode()``. The input
  is cnnkit's NHWC array viewed as NCHW (``permute(0, 3, 1, 2)``), which *is* channels_last memory.

FLOPs per image (the convention of ../shared/BENCHMARKING.md): forward = 2·MACs (MACs from
:func:`cnnkit.summary`); a training step = 2·(MACs forward + MACs for dW of every layer + MACs for
dX of every layer but the first) = 2·(3·MACs − MACs of the first layer), since neither side
computes the input gradient. Element-wise work, pooling and the optimiser are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import cnnkit
from cnnkit.kernels.losses import softmax_cross_entropy
from cnnkit.optim import SGD

# key -> (model, mode, batch size)
WORKLOADS: dict[str, tuple[str, str, int]] = {
    "lenet5-train-b64": ("lenet5", "train", 64),
    "lenet5-train-b256": ("lenet5", "train", 256),
    "cifar-net-train-b128": ("cifar-net", "train", 128),
    "lenet5-infer-b256": ("lenet5", "infer", 256),
    "cifar-net-infer-b256": ("cifar-net", "infer", 256),
}
LR, MOMENTUM = 0.01, 0.9
FLOP_CONVENTION = ("forward = 2·MACs per image (MACs from cnnkit.summary); training step = "
                   "2·(3·MACs − MACs of the first layer): forward, dW of every layer, dX of every layer but "
                   "the first (neither side computes the input gradient). Element-wise work, pooling and the "
                   "optimiser are not counted.")


def flop_per_image(model_name: str, mode: str) -> float:
    """FLOPs per image of one forward pass or training step (see the module docstring)."""
    macs = [row.macs for row in cnnkit.summary(model_name).rows]
    first = next(m for m in macs if m)  # the first layer with weights: its dX is never computed
    total = sum(macs)
    return 2.0 * total if mode == "infer" else 2.0 * (3 * total - first)


@dataclass
class Side:
    """One contender: ``step()`` runs one batch; ``images`` per step."""

    name: str
    step: Callable[[], object]
    images: int


def make_data(model_name: str, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    model = cnnkit.resolve_model(model_name, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    y = rng.integers(0, model.output_shape()[0], batch)
    return x, y


def cnnkit_side(model_name: str, mode: str, batch: int, seed: int = 0) -> tuple[Side, cnnkit.Sequential]:
    model = cnnkit.resolve_model(model_name, seed=seed)
    x, y = make_data(model_name, batch, seed)
    if mode == "infer":
        model.eval()
        return Side("cnnkit", lambda: model.logits(x, batch_size=batch), batch), model
    opt = SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        logits = model.forward(x)
        _, dlogits = softmax_cross_entropy(logits, y)
        model.backward(dlogits, need_input_grad=False)
        opt.step()

    return Side("cnnkit", step, batch), model


# --------------------------------------------------------------------------- PyTorch
def torch_model(model: cnnkit.Sequential, channels_last: bool = True):
    """``torch.nn.Sequential`` of the same layers, with ``model``'s weights copied in."""
    import torch
    from torch import nn

    layers = []
    for layer, in_shape, out_shape in model.shapes():
        kind = type(layer).__name__
        if kind == "Conv2d":
            (pt, pb), (pl, pr) = layer.pads
            if pt != pb or pl != pr:
                raise ValueError(f"{layer.name}: uneven padding has no nn.Conv2d equivalent")
            t = nn.Conv2d(in_shape[2], layer.filters, layer.filter_hw, layer.stride_hw, (pt, pl),
                          layer.dilation_hw, bias=layer.bias)
            t.weight.data = torch.from_numpy(np.ascontiguousarray(layer.params["weight"].value.transpose(3, 2, 0, 1)))
        elif kind == "MaxPool2d":
            t = nn.MaxPool2d(layer.filter_hw, layer.stride_hw)
        elif kind == "ReLU":
            t = nn.ReLU()
        elif kind == "Flatten":
            t = nn.Flatten()
        elif kind == "Linear":
            t = nn.Linear(in_shape[0], layer.outputs, bias=layer.bias)
            w = layer.params["weight"].value  # (D, M), D in cnnkit's (H, W, C) flatten order
            if layers and isinstance(layers[-1], nn.Flatten) and len(model.shapes()[0][1]) == 3:
                h, wd, c = _flattened_shape(model, layer)
                w = w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1)  # (C·H·W, M)
            t.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
        else:
            raise ValueError(f"{layer.name}: no PyTorch equivalent for {kind} in the benchmark")
        if getattr(layer, "bias", False) is True:
            t.bias.data = torch.from_numpy(layer.params["bias"].value.copy())
        layers.append(t)
    net = nn.Sequential(*layers)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _flattened_shape(model, linear) -> tuple[int, int, int]:
    chain = model.shapes()
    i = next(k for k, (layer, _, _) in enumerate(chain) if layer is linear)
    return chain[i - 1][1]  # the input of the Flatten before it


def to_torch_input(x: np.ndarray, channels_last: bool = True):
    """NHWC array -> NCHW tensor; the permuted view is channels_last memory already."""
    import torch

    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    return t if channels_last else t.contiguous()


def torch_side(model_name: str, mode: str, batch: int, seed: int = 0, channels_last: bool = True) -> Side:
    import torch
    import torch.nn.functional as F

    net = torch_model(cnnkit.resolve_model(model_name, seed=seed), channels_last)
    x, y = make_data(model_name, batch, seed)
    xt, yt = to_torch_input(x, channels_last), torch.from_numpy(y)
    name = "torch" if channels_last else "torch-nchw"
    if mode == "infer":
        net.eval()

        def infer():
            with torch.inference_mode():
                return net(xt)

        return Side(name, infer, batch)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(xt), yt)
        loss.backward()
        opt.step()

    return Side(name, step, batch)
