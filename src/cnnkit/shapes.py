"""The only home of cnnkit's size arithmetic.

Every output size, padding rule, parameter count, multiply-accumulate count, activation-memory
figure and receptive field in cnnkit is computed here; layers, the summary, the calculators and
the CLI all call these functions. Nothing here touches data.

The formulas (per axis; the lecture writes them for the width W, the height is the same):

* conv:    W' = (W - F_eff + 2P)/S + 1, with F_eff = D(F - 1) + 1 for dilation D
* pooling: W' = (W - F + 2P)/S + 1 (P = 0 unless asked; S defaults to F; P < F)
* conv parameters:  K(FH·FW·C + 1)   (K·FH·FW·C without bias)
* fully-connected:  outputs × (inputs + 1)

By default the arithmetic is *strict*: a result that is not a whole number >= 1 raises
:class:`~cnnkit.errors.ShapeError` that names the layer, shows the arithmetic with its numbers,
suggests paddings and strides that fit and says what PyTorch would silently do instead.
``rounding="floor"`` reproduces PyTorch/Keras, which drop the rows and columns that do not fit;
:func:`dropped_rows` says how many.

Padding may be asymmetric: ``(before, after)`` per axis. ``"same"`` gives ceil(W/S) outputs with
total padding max((ceil(W/S) - 1)·S + F_eff - W, 0), split with the odd pixel *after* (as
TensorFlow does); at stride 1 and odd F that is P = (F - 1)/2 on both sides. When F_eff < S the
padding cannot be negative, so ``"same"`` can still leave a remainder, which strict mode refuses.
``"valid"`` is P = 0.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence, Union

from .errors import ShapeError

Shape = tuple[int, ...]
AxisPadding = tuple[int, int]
PaddingArg = Union[int, str, Sequence]

ROUNDING_MODES = ("strict", "floor")

# The formulas as text, for explanations (the arithmetic itself is in the functions below).
CONV_FORMULA = "W' = (W - F + 2P)/S + 1"
DILATED_FORMULA = "F_eff = D(F - 1) + 1"
POOL_FORMULA = "W' = (W - F + 2P)/S + 1"
CONV_PARAMS_FORMULA = "K × (F×F×C + 1)"
LINEAR_PARAMS_FORMULA = "outputs × (inputs + 1)"


# --------------------------------------------------------------------------- helpers
def _is_int(v) -> bool:
    """A whole number: Python or NumPy integers, not bools."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def pair(value, what: str = "value") -> tuple[int, int]:
    """Normalise an int-or-pair argument to ``(height, width)``.

    >>> pair(3), pair((3, 5))
    ((3, 3), (3, 5))
    """
    if not isinstance(value, (bool, str)) and hasattr(value, "__index__"):
        v = int(value.__index__())
        return (v, v)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def effective_size(filter_size: int, dilation: int = 1) -> int:
    """Extent a dilated filter covers: D(F - 1) + 1."""
    return dilation * (filter_size - 1) + 1


def check_positive(value: int, what: str, where: str, minimum: int = 1) -> None:
    """Refuse a hyperparameter that is not an integer >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ShapeError(f"{where}: {what} must be an integer >= {minimum}. Received: {what}={value!r}")


def check_volume(input_shape: Sequence[int], where: str, rank: int = 3) -> tuple[int, ...]:
    """Check an input shape (batch excluded) has ``rank`` positive integer entries."""
    shape = tuple(input_shape)
    if len(shape) != rank or any(not _is_int(s) or s < 1 for s in shape):
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
    pad_txt = (f"2×{before}" if before else "0") if before == after else f"{before}+{after}"
    value = (size - filter_eff + before + after) / stride + 1
    return f"({size} - {filter_eff} + {pad_txt})/{stride} + 1 = {_fmt_num(value)}"


def conv_output_size(size: int, filter_size: int, stride: int = 1, padding: int | AxisPadding = 0,
                     dilation: int = 1, rounding: str = "strict") -> int:
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
            f"the {filter_size}-wide filter" + (f" (covering {f_eff})" if f_eff != filter_size else "")
            + f" does not fit in {size} pixels "
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
    """Rows (or columns) that ``rounding="floor"`` silently ignores: (W - F_eff + P) mod S.

    >>> dropped_rows(7, 3, 3)
    1
    """
    before, after = pad_pair(padding)
    span = size + before + after - effective_size(filter_size, dilation)
    return span % stride if span >= 0 else 0


def pad_pair(padding: int | AxisPadding) -> AxisPadding:
    """An axis padding as ``(before, after)``."""
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(_is_int(p) for p in padding):
        return int(padding[0]), int(padding[1])
    if _is_int(padding):
        return int(padding), int(padding)
    raise ShapeError(f"padding per axis must be an integer P or (before, after). Received: {padding!r}")


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
    bad = f"{where}: padding must be an integer, a pair, 'same' or 'valid'. Received: padding={padding!r}"
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return tuple(same_padding(n, f, s, d) for n, f, s, d in zip(input_hw, filter_hw, stride_hw, dilation_hw))  # type: ignore[return-value]
        raise ShapeError(bad)
    try:
        if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
            result = tuple(pad_pair(p) for p in padding)
        else:
            ph, pw = pair(padding, "padding")
            result = ((ph, ph), (pw, pw))
    except (ShapeError, TypeError, ValueError):
        raise ShapeError(bad) from None
    if any(p < 0 for axis in result for p in axis):
        raise ShapeError(f"{where}: padding must be >= 0. Received: padding={padding!r}")
    return result  # type: ignore[return-value]


def describe_padding(padding: PaddingArg) -> str:
    """Short text for a padding argument: ``P=2``, ``P=same``, ``P=((0,1),(0,1))``."""
    return f"P={padding}".replace(" ", "")


# --------------------------------------------------------------------------- two axes, with errors that teach
@dataclass(frozen=True)
class Fix:
    """A setting that makes a refused layer fit: ``what`` is ``"padding"`` or ``"stride"``,
    ``value`` what to pass (an int, or ``"same"``), ``output_hw`` the (H', W') it gives."""

    what: str
    value: int | str
    output_hw: tuple[int, int]

    def __str__(self) -> str:
        setting = "padding 'same'" if self.value == "same" else f"{self.what} {self.what[0].upper()}={self.value}"
        return f"{setting} gives {fmt_shape(self.output_hw)}"


def _whole_outputs(input_hw, filter_hw, stride_hw, dilation_hw, pads) -> tuple[int, int] | None:
    res = []
    for n, f, s, d, p in zip(input_hw, filter_hw, stride_hw, dilation_hw, pads):
        span = n + p[0] + p[1] - effective_size(f, d)
        if span < 0 or span % s:
            return None
        res.append(span // s + 1)
    return res[0], res[1]


def _nearest_first(center: int, lo: int, hi: int, most: int = 10_000):
    """Integers of [lo, hi] by distance from ``center``, the smaller first on a tie; at most
    ``most`` of them, so that huge sizes cost no time or memory (instead of sorting a huge range)."""
    if lo > hi:
        return
    center = min(max(center, lo), hi)
    yield center
    count, d = 1, 1
    while count < most and (center - d >= lo or center + d <= hi):
        for v in (center - d, center + d):
            if lo <= v <= hi and count < most:
                yield v
                count += 1
        d += 1


def suggest_fixes(input_hw, filter_hw, stride_hw, dilation_hw, pads, max_padding: int | None = None) -> list[Fix]:
    """Nearby settings for which both axes are whole: the nearest symmetric padding, ``"same"``
    (when it fits and differs) and the two nearest strides, each keeping everything else.

    >>> [str(f) for f in suggest_fixes((7, 7), (3, 3), (3, 3), (1, 1), ((0, 0), (0, 0)))]
    ['padding P=1 gives 3×3', 'stride S=2 gives 3×3', 'stride S=4 gives 2×2']
    """
    fixes: list[Fix] = []
    pads = tuple(tuple(p) for p in pads)
    f_eff = [effective_size(f, d) for f, d in zip(filter_hw, dilation_hw)]
    top = max(f_eff) if max_padding is None else max_padding
    for p in _nearest_first(pads[0][0], 0, top):
        if ((p, p), (p, p)) == pads:
            continue
        out = _whole_outputs(input_hw, filter_hw, stride_hw, dilation_hw, ((p, p), (p, p)))
        if out:
            fixes.append(Fix("padding", p, out))
            break
    same = tuple(same_padding(n, f, s, d) for n, f, s, d in zip(input_hw, filter_hw, stride_hw, dilation_hw))
    taken = {((f.value,) * 2,) * 2 for f in fixes}
    if same != pads and same not in taken and all(max(p) <= top for p in same):
        out = _whole_outputs(input_hw, filter_hw, stride_hw, dilation_hw, same)
        if out:
            fixes.append(Fix("padding", "same", out))
    limit = max(input_hw) + 2 * max(max(p) for p in pads)
    strides = 0
    for s in _nearest_first(stride_hw[0], 1, limit):
        if (s, s) == tuple(stride_hw):
            continue
        out = _whole_outputs(input_hw, filter_hw, (s, s), dilation_hw, pads)
        if out:
            fixes.append(Fix("stride", s, out))
            strides += 1
            if strides == 2:
                break
    return fixes


def window_output_shape(input_shape: Sequence[int], filter_hw: Sequence[int], stride_hw: Sequence[int],
                        pads: tuple[AxisPadding, AxisPadding], dilation_hw: Sequence[int] = (1, 1), *,
                        where: str, rounding: str = "strict", max_padding: int | None = None) -> tuple[int, int]:
    """(H', W') of a sliding-window layer (conv or pool) on ``input_shape = (H, W, C)``.

    ``where`` describes the layer for error messages, e.g. ``"conv2 (Conv2d F=3, S=3, P=0)"``.
    The ShapeError raised carries ``.fixes``, the :class:`Fix` list its message suggests.
    """
    h, w, c = input_shape
    out = []
    # A filter that does not fit is the first thing to say, whichever axis it is on; then a remainder.
    checks = [(axis, n, f, s, d, p, mode) for mode in ("floor", rounding)
              for axis, n, f, s, d, p in zip(("height", "width"), (h, w), filter_hw, stride_hw, dilation_hw, pads)]
    for axis, n, f, s, d, p, mode in checks:
        try:
            out.append(conv_output_size(n, f, s, p, d, mode))
        except ShapeError as e:
            fixes = suggest_fixes((h, w), filter_hw, stride_hw, dilation_hw, pads, max_padding)
            hint = "; ".join(str(x) for x in fixes)
            hint = f" {hint[0].upper()}{hint[1:]}." if hint else ""
            err = ShapeError(f"{where} on {fmt_shape(input_shape)} ({axis}): {e}.{hint}{_floor_note(input_shape, filter_hw, stride_hw, pads, dilation_hw)}")
            err.fixes = fixes  # type: ignore[attr-defined]
            raise err from None
    return out[2], out[3]


def _floor_note(input_shape, filter_hw, stride_hw, pads, dilation_hw) -> str:
    """What PyTorch would silently do instead (nothing to say when the filter does not fit)."""
    try:
        floor = [conv_output_size(n, f, s, p, d, "floor")
                 for n, f, s, p, d in zip(input_shape[:2], filter_hw, stride_hw, pads, dilation_hw)]
    except ShapeError:
        return ""
    lost = [dropped_rows(n, f, s, p, d) for n, f, s, p, d in zip(input_shape[:2], filter_hw, stride_hw, pads, dilation_hw)]
    parts = [_plural(k, word) for k, word in zip(lost, ("row", "column")) if k]
    return (f" PyTorch would floor this to {fmt_shape(floor)}, ignoring the last {' and '.join(parts)}"
            f" (rounding='floor' does the same).")


def _hw(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}×{b}"


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
    return h, w, int(filters)


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
    h, w = window_output_shape(input_shape, (fh, fw), (sh, sw), pads, where=where, rounding=rounding,
                               max_padding=min(fh, fw) - 1)
    return h, w, int(input_shape[2])


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


def activation_memory(shape: Sequence[int], itemsize: int = 4, batch_size: int = 1) -> tuple[int, int]:
    """(forward, forward + backward) bytes for a layer's output: the forward pass keeps the output
    for backward; the backward pass adds its gradient, of the same size (torchsummary's count).

    >>> activation_memory((28, 28, 6))
    (18816, 37632)
    """
    forward = activation_bytes(shape, itemsize) * batch_size
    return forward, 2 * forward


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
    centre of unit (0, 0) (negative where padding comes first).

    >>> Field().through((5, 5), (1, 1), (2, 2)).through((2, 2), (2, 2), (0, 0))
    Field(size=(6, 6), jump=(2, 2), start=(1.0, 1.0))
    """

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

    def whole(self, map_hw) -> "Field":
        """The field of a unit that sees a whole (H, W) map of units (fully-connected, global pooling)."""
        return self.through(map_hw, (1, 1), (0, 0))
