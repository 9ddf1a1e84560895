"""The only home of cnnkit's size arithmetic.

Every output size, padding rule, parameter count, multiply-accumulate count, activation-memory
figure and receptive field in cnnkit is computed here; layers, the summary, the calculators and
the CLI all call these functions. Nothing here touches data.

The formulas (per axis; the lecture writes them for the width W, the height is the same):

* conv:    W' = (W - F_eff + 2P)/S + 1, with F_eff = D(F - 1) + 1 for dilation D
* pooling: W' = (W - F + 2P)/S + 1 (P = 0 unless asked; S defaults to F)
* conv parameters:  K(FH·FW·C + 1)   (K·FH·FW·C without bias)
* fully-connected:  outputs × (inputs + 1)

By default the arithmetic is *strict*: a result that is not a whole number >= 1 raises
:class:`~cnnkit.errors.ShapeError` that names the layer, shows the arithmetic with its numbers and
suggests paddings and strides that fit. ``rounding="floor"`` reproduces PyTorch/Keras, which drop
the rows and columns that do not fit; :func:`dropped_rows` says how many.

Padding may be asymmetric: ``(before, after)`` per axis. ``"same"`` gives ceil(W/S) outputs with
total padding max((ceil(W/S) - 1)·S + F_eff - W, 0), split with the odd pixel *after* (as
TensorFlow and PyTorch do); at stride 1 and odd F that is P = (F - 1)/2 on both sides.
``"valid"`` is P = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

from .errors import ShapeError

Shape = tuple[int, ...]
AxisPadding = tuple[int, int]
PaddingArg = Union[int, str, Sequence]

ROUNDING_MODES = ("strict", "floor")


# --------------------------------------------------------------------------- helpers
def pair(value, what: str = "value") -> tuple[int, int]:
    """Normalise an int-or-pair argument to ``(height, width)``.

    >>> pair(3), pair((3, 5))
    ((3, 3), (3, 5))
    """
    if isinstance(value, bool):
        raise ShapeError(f"{what} must be an integer or a pair of integers. Received: {value!r}")
    if isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, str)):
        try:
            v = int(value.__index__())
            return (v, v)
        except (AttributeError, TypeError):
            pass
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return (int(value[0]), int(value[1]))
    raise ShapeError(f"{what} must be an integer or a pair of integers. Received: {value!r}")


def fmt_shape(shape: Sequence[int]) -> str:
    """``(32, 32, 3)`` -> ``'32×32×3'`` (the H×W×C output convention)."""
    return "×".join(str(int(s)) for s in shape)


def fmt_int(n: int) -> str:
    """Thousands separated by commas: ``31457280`` -> ``'31,457,280'``."""
    return f"{int(n):,}"


def _fmt_num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def effective_size(filter_size: int, dilation: int = 1) -> int:
    """Extent a dilated filter covers: D(F - 1) + 1."""
    return dilation * (filter_size - 1) + 1


def check_positive(value: int, what: str, where: str, minimum: int = 1) -> None:
    """Refuse a hyperparameter that is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ShapeError(f"{where}: {what} must be an integer >= {minimum}. Received: {what}={value!r}")


def check_volume(input_shape: Sequence[int], where: str, rank: int = 3) -> tuple[int, ...]:
    """Check an input shape (batch excluded) has ``rank`` positive integer entries."""
    shape = tuple(input_shape)
    if len(shape) != rank or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        expected = "(H, W, C)" if rank == 3 else "(D,)" if rank == 1 else f"{rank} positive sizes"
        hint = ""
        if rank == 1 and len(shape) == 3:
            hint = f"; add Flatten() before it to turn {fmt_shape(shape)} into {math.prod(shape)} inputs"
        raise ShapeError(f"{where}: expected an input shape {expected}, received {shape}{hint}")
    return shape


# --------------------------------------------------------------------------- one axis
def axis_arithmetic(size: int, filter_eff: int, stride: int, pad: AxisPadding) -> str:
    """The formula with its numbers, e.g. ``'(7 - 3 + 0)/3 + 1 = 2.33'``."""
    before, after = pad
    pad_txt = f"2×{before}" if before == after and before else f"{before + after}" if before == after else f"{before}+{after}"
    value = (size - filter_eff + before + after) / stride + 1
    return f"({size} - {filter_eff} + {pad_txt})/{stride} + 1 = {_fmt_num(value)}"


def conv_output_size(
    size: int,
    filter_size: int,
    stride: int = 1,
    padding: int | AxisPadding = 0,
    dilation: int = 1,
    rounding: str = "strict",
) -> int:
    """(size - F_eff + P_before + P_after)/stride + 1, which must be a whole number >= 1.

    >>> conv_output_size(32, 5, 1, 2)
    32
    >>> conv_output_size(7, 3, 2)
    3
    >>> conv_output_size(7, 3, 3, rounding="floor")
    2
    """
    before, after = pad_pair(padding)
    f_eff = effective_size(filter_size, dilation)
    span = size + before + after - f_eff
    if span < 0:
        raise ShapeError(
            f"the {filter_size}-wide filter (covering {f_eff}) does not fit in {size} pixels "
            f"padded by {before + after}: {axis_arithmetic(size, f_eff, stride, (before, after))}"
        )
    if rounding == "floor":
        return span // stride + 1
    if rounding != "strict":
        raise ShapeError(f"rounding must be one of {ROUNDING_MODES}. Received: rounding={rounding!r}")
    if span % stride:
        raise ShapeError(f"{axis_arithmetic(size, f_eff, stride, (before, after))} is not whole")
    return span // stride + 1


def pool_output_size(size: int, filter_size: int, stride: int | None = None, padding: int = 0,
                     rounding: str = "strict") -> int:
    """(size - F + 2P)/S + 1 for pooling; S defaults to F.

    >>> pool_output_size(28, 2)
    14
    """
    return conv_output_size(size, filter_size, filter_size if stride is None else stride, padding, 1, rounding)


def dropped_rows(size: int, filter_size: int, stride: int, padding: int | AxisPadding = 0, dilation: int = 1) -> int:
    """Rows (or columns) that ``rounding="floor"`` silently ignores: (W - F_eff + P) mod S."""
    before, after = pad_pair(padding)
    span = size + before + after - effective_size(filter_size, dilation)
    return span % stride if span >= 0 else 0


def pad_pair(padding: int | AxisPadding) -> AxisPadding:
    """An axis padding as ``(before, after)``."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ShapeError(f"padding per axis must be P or (before, after). Received: {padding!r}")
        return int(padding[0]), int(padding[1])
    return int(padding), int(padding)


def same_padding(size: int, filter_size: int, stride: int = 1, dilation: int = 1) -> AxisPadding:
    """Padding that gives ceil(size/stride) outputs; the odd pixel goes after.

    >>> same_padding(32, 5), same_padding(7, 3, 2), same_padding(8, 3, 2)
    ((2, 2), (1, 1), (0, 1))
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + effective_size(filter_size, dilation) - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: PaddingArg, input_hw: Sequence[int], filter_hw: Sequence[int],
                    stride_hw: Sequence[int], dilation_hw: Sequence[int] = (1, 1), where: str = "layer"
                    ) -> tuple[AxisPadding, AxisPadding]:
    """Turn any padding argument into ``((top, bottom), (left, right))``.

    Accepted: ``P`` (all sides), ``(PH, PW)``, ``((top, bottom), (left, right))``, ``"same"``, ``"valid"``.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return tuple(same_padding(n, f, s, d) for n, f, s, d in zip(input_hw, filter_hw, stride_hw, dilation_hw))  # type: ignore[return-value]
        raise ShapeError(f"{where}: padding must be an integer, a pair, 'same' or 'valid'. Received: padding={padding!r}")
    try:
        if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
            result = tuple(pad_pair(p) for p in padding)
        else:
            ph, pw = pair(padding, "padding")
            result = ((ph, ph), (pw, pw))
    except (ShapeError, TypeError, ValueError):
        raise ShapeError(f"{where}: padding must be an integer, a pair, 'same' or 'valid'. Received: padding={padding!r}") from None
    if any(p < 0 for axis in result for p in axis):
        raise ShapeError(f"{where}: padding must be >= 0. Received: padding={padding!r}")
    return result  # type: ignore[return-value]


def describe_padding(padding: PaddingArg) -> str:
    """Short text for a padding argument: ``P=2``, ``P=same``, ``P=(0,1),(0,1)``."""
    if isinstance(padding, str):
        return f"P={padding}"
    if isinstance(padding, int):
        return f"P={padding}"
    return f"P={padding}".replace(" ", "")


# --------------------------------------------------------------------------- two axes, with errors that teach
def _suggest(input_hw, filter_hw, stride_hw, dilation_hw, pads, rounding_ok) -> str:
    """Paddings and strides near the given ones for which both axes are whole and >= 1."""

    def outs(stride, pad):
        res = []
        for n, f, s, d, p in zip(input_hw, filter_hw, stride, dilation_hw, pad):
            span = n + p[0] + p[1] - effective_size(f, d)
            if span < 0 or span % s:
                return None
            res.append(span // s + 1)
        return tuple(res)

    hints = []
    max_f = max(effective_size(f, d) for f, d in zip(filter_hw, dilation_hw))
    for p in sorted(range(0, max_f + 1), key=lambda p: abs(p - pads[0][0])):
        if (p, p) == tuple(pads[0]) and (p, p) == tuple(pads[1]):
            continue
        o = outs(stride_hw, ((p, p), (p, p)))
        if o:
            hints.append(f"padding P={p} gives {fmt_shape(o)}")
            break
    strides = []
    limit = max(input_hw) + max(p for axis in pads for p in axis) * 2
    for s in sorted(range(1, limit + 1), key=lambda s: (abs(s - stride_hw[0]), s)):
        if s == stride_hw[0] and s == stride_hw[1]:
            continue
        o = outs((s, s), pads)
        if o:
            strides.append(f"stride S={s} gives {fmt_shape(o)}")
            if len(strides) == 2:
                break
    hints += strides
    if not hints:
        return ""
    return " " + "; ".join(h[0].upper() + h[1:] if i == 0 else h for i, h in enumerate(hints)) + "."


def window_output_shape(
    input_shape: Sequence[int],
    filter_hw: Sequence[int],
    stride_hw: Sequence[int],
    pads: tuple[AxisPadding, AxisPadding],
    dilation_hw: Sequence[int] = (1, 1),
    *,
    where: str,
    rounding: str = "strict",
) -> tuple[int, int]:
    """(H', W') of a sliding-window layer (conv or pool) on ``input_shape = (H, W, C)``.

    ``where`` describes the layer for error messages, e.g. ``"conv2 (Conv2d F=3, S=3, P=0)"``.
    """
    h, w, c = input_shape
    out = []
    for axis, n, f, s, d, p in zip(("height", "width"), (h, w), filter_hw, stride_hw, dilation_hw, pads):
        try:
            out.append(conv_output_size(n, f, s, p, d, rounding))
        except ShapeError as e:
            hint = _suggest((h, w), filter_hw, stride_hw, dilation_hw, pads, rounding)
            raise ShapeError(f"{where} on {fmt_shape(input_shape)} ({axis}): {e}.{hint}") from None
    return out[0], out[1]


def conv2d_output_shape(input_shape: Sequence[int], filters: int, size, stride=1, padding: PaddingArg = 0,
                        dilation=1, *, name: str = "conv", rounding: str = "strict") -> tuple[int, int, int]:
    """Output (H', W', K) of K filters F×F×C on an H×W×C volume.

    >>> conv2d_output_shape((32, 32, 3), 4, 5)
    (28, 28, 4)
    >>> conv2d_output_shape((32, 32, 3), 10, 5, padding=2)
    (32, 32, 10)
    """
    check_volume(input_shape, name)
    fh, fw = pair(size, "size")
    sh, sw = pair(stride, "stride")
    dh, dw = pair(dilation, "dilation")
    pads = resolve_padding(padding, input_shape[:2], (fh, fw), (sh, sw), (dh, dw), name)
    where = f"{name} (Conv2d F={_hw(fh, fw)}, S={_hw(sh, sw)}, {describe_padding(padding)}" + (
        f", D={_hw(dh, dw)})" if (dh, dw) != (1, 1) else ")")
    h, w = window_output_shape(input_shape, (fh, fw), (sh, sw), pads, (dh, dw), where=where, rounding=rounding)
    return h, w, filters


def pool2d_output_shape(input_shape: Sequence[int], size, stride=None, padding=0, *, name: str = "pool",
                        kind: str = "MaxPool2d", rounding: str = "strict") -> tuple[int, int, int]:
    """Output (H', W', C) of F×F pooling with stride S (default F): (W - F + 2P)/S + 1.

    Padding must be smaller than F on each side, so that no window lies wholly in the padding.

    >>> pool2d_output_shape((28, 28, 6), 2)
    (14, 14, 6)
    """
    check_volume(input_shape, name)
    fh, fw = pair(size, "size")
    sh, sw = pair(size if stride is None else stride, "stride")
    pads = resolve_padding(padding, input_shape[:2], (fh, fw), (sh, sw), (1, 1), name)
    where = f"{name} ({kind} F={_hw(fh, fw)}, S={_hw(sh, sw)}" + (f", {describe_padding(padding)})" if padding else ")")
    for (pb, pa), f in zip(pads, (fh, fw)):
        if pb >= f or pa >= f:
            raise ShapeError(f"{where} on {fmt_shape(input_shape)}: padding {max(pb, pa)} >= F={f} would make "
                             f"windows that lie wholly in the padding; use padding < {f}")
    h, w = window_output_shape(input_shape, (fh, fw), (sh, sw), pads, where=where, rounding=rounding)
    return h, w, input_shape[2]


def _hw(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}×{b}"


# --------------------------------------------------------------------------- counts
def conv_params(fh: int, fw: int, channels: int, filters: int, bias: bool = True) -> int:
    """K(FH·FW·C + 1) parameters (K·FH·FW·C without bias).

    >>> conv_params(5, 5, 3, 10)
    760
    """
    return filters * (fh * fw * channels + (1 if bias else 0))


def conv_params_formula(fh: int, fw: int, channels: int, filters: int, bias: bool = True) -> str:
    """``'10 × (5×5×3 + 1) = 760'``."""
    inner = f"{fh}×{fw}×{channels}" + (" + 1" if bias else "")
    return f"{filters} × ({inner}) = {fmt_int(conv_params(fh, fw, channels, filters, bias))}"


def linear_params(inputs: int, outputs: int, bias: bool = True) -> int:
    """outputs × (inputs + 1) parameters.

    >>> linear_params(400, 120)
    48120
    """
    return outputs * (inputs + (1 if bias else 0))


def linear_params_formula(inputs: int, outputs: int, bias: bool = True) -> str:
    """``'120 × (400 + 1) = 48,120'``."""
    inner = f"{inputs} + 1" if bias else f"{inputs}"
    return f"{outputs} × ({inner}) = {fmt_int(linear_params(inputs, outputs, bias))}"


def batchnorm_params(channels: int) -> int:
    """A scale γ and a shift β per channel (running statistics are state, not parameters)."""
    return 2 * channels


def batchnorm_params_formula(channels: int) -> str:
    return f"2 × {channels} = {fmt_int(batchnorm_params(channels))}"


def fc_equivalent_weights(input_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """Weights of a fully-connected layer linking every input to every output.

    >>> fc_equivalent_weights((32, 32, 3), (32, 32, 10))
    31457280
    """
    return math.prod(input_shape) * math.prod(output_shape)


def conv_macs(output_shape: Sequence[int], fh: int, fw: int, channels: int) -> int:
    """Multiply-accumulates of one image's conv: H'·W'·K·FH·FW·C."""
    return math.prod(output_shape) * fh * fw * channels


def linear_macs(inputs: int, outputs: int) -> int:
    return inputs * outputs


def activation_bytes(shape: Sequence[int], itemsize: int = 4) -> int:
    """Bytes of one image's output volume (float32 by default)."""
    return math.prod(shape) * itemsize


def fmt_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# --------------------------------------------------------------------------- receptive field
@dataclass(frozen=True)
class Field:
    """Receptive field ``size`` (rows, cols) of one output unit in input pixels, the cumulative
    ``jump`` (stride) between neighbouring units, and the input coordinate ``start`` of the
    centre of unit (0, 0) (negative where padding comes first)."""

    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    start: tuple[float, float] = (0.5, 0.5)

    def through(self, filter_hw, stride_hw, pad_before_hw, dilation_hw=(1, 1)) -> "Field":
        """The field after a sliding window: r' = r + (F_eff - 1)·j, j' = j·S."""
        size, jump, start = [], [], []
        for r, j, s0, f, s, p, d in zip(self.size, self.jump, self.start, filter_hw, stride_hw, pad_before_hw, dilation_hw):
            fe = effective_size(f, d)
            size.append(r + (fe - 1) * j)
            jump.append(j * s)
            start.append(s0 + ((fe - 1) / 2 - p) * j)
        return Field(tuple(size), tuple(jump), tuple(start))  # type: ignore[arg-type]
