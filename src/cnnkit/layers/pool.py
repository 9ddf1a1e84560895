"""Pooling layers: max, average and global average. No parameters."""

from __future__ import annotations

from .. import shapes
from ..errors import SpecError
from ..kernels.pool import (avgpool2d_backward, avgpool2d_forward, global_avgpool_backward,
                            global_avgpool_forward, maxpool2d_backward, maxpool2d_forward)
from .base import Layer, Shape


class _Pool2d(Layer):
    kind = "Pool2d"
    hyper = ("size", "stride", "padding", "rounding")

    def __init__(self, size=2, stride=None, padding=0, rounding: str = "strict", name: str | None = None) -> None:
        super().__init__(name)
        where = name or self.kind
        for what, value in (("size", size), ("stride", size if stride is None else stride)):
            for v in shapes.pair(value, f"{where}: {what}"):
                shapes.check_positive(v, what, where)
        if rounding not in shapes.ROUNDING_MODES:
            raise SpecError(f"{where}: rounding must be 'strict' or 'floor'. Received: {rounding!r}")
        shapes.resolve_padding(padding, (1, 1), (1, 1), (1, 1), where=where)  # validate early
        self.size, self.stride, self.padding, self.rounding = size, stride, padding, rounding
        self.pads = ((0, 0), (0, 0))

    @property
    def filter_hw(self):
        return shapes.pair(self.size)

    @property
    def stride_hw(self):
        return shapes.pair(self.size if self.stride is None else self.stride)

    def resolved_padding(self, input_shape: Shape):
        return shapes.resolve_padding(self.padding, input_shape[:2], self.filter_hw, self.stride_hw, where=self.label)

    def output_shape(self, input_shape: Shape) -> Shape:
        return shapes.pool2d_output_shape(input_shape, self.size, self.stride, self.padding, name=self.label,
                                          kind=self.kind, rounding=self.rounding)

    def params_formula(self, input_shape: Shape) -> str:
        return "0 (no parameters)"

    def field(self, field, input_shape):
        pads = self.resolved_padding(input_shape)
        return field.through(self.filter_hw, self.stride_hw, (pads[0][0], pads[1][0]))

    def _init_params(self, rng) -> None:
        self.pads = self.resolved_padding(self.input_shape)


class MaxPool2d(_Pool2d):
    """Max pooling over F×F windows with stride S (default F); padding counts as -inf.

    Ties go to the first maximum in row-major order, as in PyTorch.

    Shape:
        x: (N, H, W, C) -> y: (N, H', W', C),  H' = (H - F + 2P)/S + 1

    Example:
        >>> MaxPool2d(2).output_shape((28, 28, 6))
        (14, 14, 6)
    """

    type_name = "maxpool2d"
    prefix = "pool"
    kind = "MaxPool2d"

    def forward_cached(self, x, frame=None):
        """``frame``: the next conv's input buffer to write y into (see
        :func:`cnnkit.kernels.conv.direct_input_frame`)."""
        return maxpool2d_forward(x, self.filter_hw, self.stride_hw, self.pads, frame=frame)

    def backward_cached(self, dy, cache, need_dx=True):
        return (maxpool2d_backward(dy, cache) if need_dx else None), {}


class AvgPool2d(_Pool2d):
    """Average pooling over F×F windows; padded zeros count in the average (PyTorch's default,
    ``count_include_pad=True``), so every window divides by FH·FW.

    Shape:
        x: (N, H, W, C) -> y: (N, H', W', C),  H' = (H - F + 2P)/S + 1

    Example:
        >>> AvgPool2d(2).output_shape((32, 32, 3))
        (16, 16, 3)
    """

    type_name = "avgpool2d"
    prefix = "avgpool"
    kind = "AvgPool2d"

    def forward_cached(self, x):
        return avgpool2d_forward(x, self.filter_hw, self.stride_hw, self.pads)

    def backward_cached(self, dy, cache, need_dx=True):
        return (avgpool2d_backward(dy, cache) if need_dx else None), {}


class GlobalAvgPool2d(Layer):
    """Mean of each channel over the whole map: (N, H, W, C) -> (N, C).

    Example:
        >>> GlobalAvgPool2d().output_shape((8, 8, 64))
        (64,)
    """

    type_name = "globalavgpool2d"
    prefix = "gap"

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = shapes.check_volume(input_shape, self.label)
        return (c,)

    def params_formula(self, input_shape: Shape) -> str:
        return "0 (no parameters)"

    def field(self, field, input_shape):
        return field.through(input_shape[:2], (1, 1), (0, 0))

    def forward_cached(self, x):
        return global_avgpool_forward(x)

    def backward_cached(self, dy, cache, need_dx=True):
        return (global_avgpool_backward(dy, cache) if need_dx else None), {}
