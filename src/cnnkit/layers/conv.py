"""Conv2d: K filters of size FH×FW×C sliding over an H×W×C volume."""

from __future__ import annotations

import numpy as np

from .. import shapes
from ..errors import ShapeError, SpecError
from ..init import INITIALISERS, initialise
from ..kernels.conv import conv2d_backward, conv2d_forward, conv2d_maxpool2_values, direct_input_frame
from .base import Layer, Shape


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as every framework computes it).

    Args:
        filters: K, the number of filters (output channels).
        size: F, or (FH, FW) for rectangular filters.
        stride: S, or (SH, SW). Default 1.
        padding: P, (PH, PW), ((top, bottom), (left, right)), ``"same"`` or ``"valid"``. Default 0.
        dilation: D, or (DH, DW); the filter covers D(F - 1) + 1 pixels. Default 1.
        bias: add a bias per filter. Default True.
        init: weight initialiser (``he_normal`` default; see :mod:`cnnkit.init`). Biases start at 0.
        rounding: ``"strict"`` (default) refuses sizes that do not divide; ``"floor"`` drops the
            rows/columns that do not fit, as PyTorch does.

    Shape:
        x: (N, H, W, C) -> y: (N, H', W', K),  H' = (H - F_eff + 2P)/S + 1, likewise W'

    Attributes:
        weight: (FH, FW, C, K);  bias: (K,).  Parameters: K(FH·FW·C + 1).

    Example:
        >>> Conv2d(filters=10, size=5, padding=2).output_shape((32, 32, 3))
        (32, 32, 10)
    """

    type_name = "conv2d"
    prefix = "conv"
    hyper = ("filters", "size", "stride", "padding", "dilation", "bias", "init", "rounding")

    def __init__(self, filters: int, size=3, stride=1, padding=0, dilation=1, bias: bool = True,
                 init: str = "he_normal", rounding: str = "strict", name: str | None = None) -> None:
        super().__init__(name)
        where = name or "Conv2d"
        shapes.check_positive(filters, "filters", where)
        for what, value in (("size", size), ("stride", stride), ("dilation", dilation)):
            for v in shapes.pair(value, f"{where}: {what}"):
                shapes.check_positive(v, what, where)
        if init not in INITIALISERS:
            raise SpecError(f"{where}: unknown init {init!r}; expected one of {', '.join(INITIALISERS)}")
        if rounding not in shapes.ROUNDING_MODES:
            raise SpecError(f"{where}: rounding must be 'strict' or 'floor'. Received: {rounding!r}")
        self.filters, self.size, self.stride, self.padding = filters, size, stride, padding
        self.dilation, self.bias, self.init, self.rounding = dilation, bool(bias), init, rounding
        shapes.resolve_padding(padding, (1, 1), (1, 1), (1, 1), where=where)  # validate early
        self.pads = ((0, 0), (0, 0))
        self._workspace = {}  # kernel buffers (padded input, im2col tiles) reused from one step to the next

    @property
    def filter_hw(self) -> tuple[int, int]:
        return shapes.pair(self.size)

    @property
    def stride_hw(self) -> tuple[int, int]:
        return shapes.pair(self.stride)

    @property
    def dilation_hw(self) -> tuple[int, int]:
        return shapes.pair(self.dilation)

    def resolved_padding(self, input_shape: Shape):
        """((top, bottom), (left, right)) for this input size (``"same"`` depends on it)."""
        return shapes.resolve_padding(self.padding, input_shape[:2], self.filter_hw, self.stride_hw,
                                      self.dilation_hw, self.label)

    def output_shape(self, input_shape: Shape) -> Shape:
        return shapes.conv2d_output_shape(input_shape, self.filters, self.size, self.stride, self.padding,
                                          self.dilation, name=self.label, rounding=self.rounding)

    def param_count(self, input_shape: Shape) -> int:
        fh, fw = self.filter_hw
        return shapes.conv_params(fh, fw, input_shape[2], self.filters, self.bias)

    def params_formula(self, input_shape: Shape) -> str:
        fh, fw = self.filter_hw
        return shapes.conv_params_formula(fh, fw, input_shape[2], self.filters, self.bias)

    def macs(self, input_shape: Shape) -> int:
        fh, fw = self.filter_hw
        return shapes.conv_macs(self.output_shape(input_shape), fh, fw, input_shape[2])

    def field(self, field, input_shape):
        pads = self.resolved_padding(input_shape)
        return field.through(self.filter_hw, self.stride_hw, (pads[0][0], pads[1][0]), self.dilation_hw)

    def _init_params(self, rng: np.random.Generator) -> None:
        fh, fw = self.filter_hw
        c = self.input_shape[2]
        self.pads = self.resolved_padding(self.input_shape)
        self.weight = self._add_param("weight", initialise(self.init, (fh, fw, c, self.filters), rng, self.dtype))
        if self.bias:
            self.bias_param = self._add_param("bias", np.zeros(self.filters, self.dtype))

    def forward_cached(self, x, workspace: dict | None = None, relu: bool = False, frame=None):
        """Pure forward ``(y, cache)``; ``workspace``: a caller-owned dict of reusable buffers;
        ``relu``: return max(y, 0) as the fused Conv2d + ReLU (backward then includes the ReLU's);
        ``frame``: the next conv's input buffer to write y into (see
        :func:`cnnkit.kernels.conv.direct_input_frame`)."""
        b = self.params["bias"].value if self.bias else None
        return conv2d_forward(x, self.params["weight"].value, b, self.stride_hw, self.pads, self.dilation_hw,
                              workspace=workspace, relu=relu, frame=frame)

    def forward_pooled(self, x, workspace: dict | None = None, relu: bool = False, frame=None):
        """Inference: this conv (with ``relu``: and a ReLU) followed by a 2 × 2, stride-2 max
        pooling, in one pass (see :func:`cnnkit.kernels.conv.conv2d_maxpool2_values`); None where
        that does not apply."""
        if self.stride_hw != (1, 1):
            return None
        b = self.params["bias"].value if self.bias else None
        return conv2d_maxpool2_values(x, self.params["weight"].value, b, self.pads, self.dilation_hw,
                                      workspace=workspace, relu=relu, frame=frame)

    def input_frame(self, workspace: dict | None, batch: int):
        """The buffer this conv copies a batch of ``batch`` inputs into (with the zero border of its
        padding), for the layer before it to write its output into; None when it has none (no
        padding, no workspace, or not the direct stride-1 path)."""
        return direct_input_frame(workspace, self.stride_hw, self.pads, (batch, *self.input_shape), self.dtype)

    def backward_cached(self, dy, cache, need_dx=True, workspace: dict | None = None, overwrite_dy: bool = False):
        """``overwrite_dy``: ``dy`` is not needed afterwards (see :func:`~cnnkit.kernels.conv.conv2d_backward`)."""
        dx, dw, db = conv2d_backward(dy, cache, need_dx, workspace=workspace, overwrite_dy=overwrite_dy)
        grads = {"weight": dw}
        if self.bias:
            grads["bias"] = db
        return dx, grads
