"""The calculators: ``cnnkit conv``, ``cnnkit pool`` and ``cnnkit fc``.

Each prints one layer's arithmetic step by step with its numbers, every number computed by
:mod:`cnnkit.shapes`; a size that does not divide is refused (exit 2) with the arithmetic,
settings that fit, and what PyTorch would silently do instead (``--rounding floor`` does it).
"""

from __future__ import annotations

import argparse
import math

from .. import shapes
from ..errors import ShapeError
from . import add_command, parse_hwc


# ----------------------------------------------------------------------------- argument types
def parse_pair(text: str) -> int | tuple[int, int]:
    """``'3'`` → 3, ``'3x5'`` → (3, 5) (height × width); argparse type (sizes are checked later)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError(f"expected an integer N or NxM, e.g. 3 or 3x5; received {text!r}")


def parse_padding(text: str) -> int | tuple[int, int] | str:
    """``P``, ``PHxPW``, ``same`` or ``valid``; argparse type."""
    if text.lower() in ("same", "valid"):
        return text.lower()
    try:
        return parse_pair(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected P, PHxPW, 'same' or 'valid'; received {text!r}") from None


def parse_volume(text: str) -> tuple[int, ...]:
    """``HxWxC`` or a vector length ``D``; argparse type."""
    if text.strip().isdigit() and int(text) >= 1:
        return (int(text),)
    try:
        return parse_hwc(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected HxWxC or D with positive integers, e.g. 5x5x16 or 400; "
                                         f"received {text!r}") from None


def _cli_wording(err: ShapeError) -> ShapeError:
    return ShapeError(str(err).replace("rounding='floor' does the same", "--rounding floor does the same"))


# ----------------------------------------------------------------------------- shared text
def _axes(input_hw, filter_hw, stride_hw, pads, dilation_hw, rounding) -> list[str]:
    """One line per axis: the formula with numbers, and with floor what it drops."""
    lines = []
    for axis, lost_word, n, f, s, p, d in zip(("height", "width"), ("row", "column"), input_hw, filter_hw,
                                             stride_hw, pads, dilation_hw):
        text = shapes.axis_arithmetic(n, shapes.effective_size(f, d), s, p)
        lost = shapes.dropped_rows(n, f, s, p, d)
        if rounding == "floor" and lost:
            out = shapes.conv_output_size(n, f, s, p, d, "floor")
            text += f" → floor {out}: the last {_n(lost, lost_word)} ignored"
        lines.append(f"  {axis + ':':8}{text}")
    return lines


def _padding_line(padding, pads) -> list[str]:
    if padding == "same" or len({p for axis in pads for p in axis}) > 1:  # not one P on every side
        (t, b), (left, r) = pads
        why = " (keeps ceil(W/S))" if padding == "same" else ""
        return [f"Padding{why}: top {t}, bottom {b}, left {left}, right {r}"]
    return []


# ----------------------------------------------------------------------------- conv
def run_conv(args) -> int:
    h, w, c = args.input
    where = "conv"
    fh, fw = shapes.pair(args.size, "--size")
    sh, sw = shapes.pair(args.stride, "--stride")
    dh, dw = shapes.pair(args.dilation, "--dilation")
    for what, value in (("filters", args.filters), ("size", fh), ("size", fw), ("stride", sh), ("stride", sw),
                        ("dilation", dh), ("dilation", dw)):
        shapes.check_positive(value, what, where)
    pads = shapes.resolve_padding(args.pad, (h, w), (fh, fw), (sh, sw), (dh, dw), where)
    try:
        out = shapes.conv2d_output_shape(args.input, args.filters, args.size, args.stride, args.pad, args.dilation,
                                         name=where, rounding=args.rounding)
    except ShapeError as e:
        raise _cli_wording(e) from None
    k = args.filters
    lines = [f"Conv2d: {_n(k, 'filter')} of {fh}×{fw}×{c} on {shapes.fmt_shape(args.input)}, stride {_hw(sh, sw)}, "
             f"padding {args.pad if isinstance(args.pad, str) else _hw(*shapes.pair(args.pad))}"
             + (f", dilation {_hw(dh, dw)}" if (dh, dw) != (1, 1) else ""), ""]
    if (dh, dw) != (1, 1):
        effs = [f"{d}×({f} - 1) + 1 = {shapes.effective_size(f, d)}" for f, d in ((fh, dh), (fw, dw))]
        lines.append(f"Dilated filter: {shapes.DILATED_FORMULA}: " + (effs[0] if effs[0] == effs[1] else " by ".join(effs)))
    lines += _padding_line(args.pad, pads)
    formula = shapes.CONV_FORMULA.replace("F", "F_eff") if (dh, dw) != (1, 1) else shapes.CONV_FORMULA
    lines += [f"Output size per axis: {formula}",
              *_axes((h, w), (fh, fw), (sh, sw), pads, (dh, dw), args.rounding),
              f"  {'depth:':8}K = {k} (one output channel per filter)",
              f"Output volume: {shapes.fmt_shape(out)}", ""]
    params = shapes.conv_params(fh, fw, c, k, args.bias)
    weights = shapes.conv_params(fh, fw, c, k, bias=False)
    lines += [f"Parameters: {shapes.CONV_PARAMS_FORMULA if args.bias else 'K × F×F×C'}"
              f" (each filter spans the input's full depth C = {c})",
              f"  {shapes.conv_params_formula(fh, fw, c, k, args.bias)}"
              + (f" ({_n(weights, 'weight')} + {_n(k, 'bias', 'biases')})" if args.bias else "")]
    fc = shapes.fc_equivalent_weights(args.input, out)
    lines += [f"Fully-connected from {shapes.fmt_shape(args.input)} to {shapes.fmt_shape(out)} instead:",
              f"  {shapes.fmt_int(math.prod(args.input))} × {shapes.fmt_int(math.prod(out))} = {shapes.fmt_int(fc)} "
              f"weights, {fc / params:,.0f}× the conv's {shapes.fmt_int(params)} parameters", ""]
    macs = shapes.conv_macs(out, fh, fw, c)
    lines += [f"MACs per image: {shapes.fmt_shape(out)} × {fh}×{fw}×{c} = {shapes.fmt_int(macs)}",
              f"Output memory per image: {shapes.fmt_bytes(shapes.activation_memory(out)[0])} as float32"]
    print("\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- pool
def run_pool(args) -> int:
    h, w, c = args.input
    kind = "MaxPool2d" if args.kind == "max" else "AvgPool2d"
    fh, fw = shapes.pair(args.size, "--size")
    stride = args.size if args.stride is None else args.stride
    sh, sw = shapes.pair(stride, "--stride")
    for what, value in (("size", fh), ("size", fw), ("stride", sh), ("stride", sw)):
        shapes.check_positive(value, what, "pool")
    try:
        out = shapes.pool2d_output_shape(args.input, args.size, stride, args.pad, name="pool", kind=kind,
                                         rounding=args.rounding)
    except ShapeError as e:
        raise _cli_wording(e) from None
    pads = shapes.resolve_padding(args.pad, (h, w), (fh, fw), (sh, sw), where="pool")
    what = "largest" if args.kind == "max" else "average"
    lines = [f"{kind}: {fh}×{fw} windows, stride {_hw(sh, sw)}"
             + (f", padding {args.pad if isinstance(args.pad, str) else _hw(*shapes.pair(args.pad))}" if args.pad else "")
             + f", on {shapes.fmt_shape(args.input)}", ""]
    lines += _padding_line(args.pad, pads)
    lines += [f"Output size per axis: {shapes.POOL_FORMULA}",
              *_axes((h, w), (fh, fw), (sh, sw), pads, (1, 1), args.rounding),
              f"  {'depth:':8}C = {c} (each channel is pooled on its own)",
              f"Output volume: {shapes.fmt_shape(out)}", "",
              f"Parameters: 0 (nothing to learn: each output is the {what} value of its window)",
              f"Values per channel: {shapes.fmt_int(h * w)} → {shapes.fmt_int(out[0] * out[1])}",
              f"Output memory per image: {shapes.fmt_bytes(shapes.activation_memory(out)[0])} as float32"]
    print("\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- fc
def run_fc(args) -> int:
    shapes.check_positive(args.outputs, "outputs", "fc")
    d = math.prod(args.input)
    n = args.outputs
    lines = [f"Linear: {shapes.fmt_shape(args.input)}"
             + (f" = {shapes.fmt_int(d)} inputs" if len(args.input) > 1 else " inputs") + f" → {n} outputs", "",
             f"Parameters: {shapes.LINEAR_PARAMS_FORMULA} (every input linked to every output)",
             f"  {shapes.linear_params_formula(d, n, args.bias)}"
             + (f" ({_n(shapes.linear_params(d, n, False), 'weight')} + {_n(n, 'bias', 'biases')})" if args.bias else ""),
             f"MACs per image: {shapes.fmt_int(d)} × {n} = {shapes.fmt_int(shapes.linear_macs(d, n))}"]
    if len(args.input) == 3:
        h, w, c = args.input
        out = shapes.conv2d_output_shape(args.input, n, (h, w), name="fc")
        lines += ["", f"The same layer as a convolution: {n} filters of {h}×{w}×{c} (the whole input) give "
                      f"{shapes.fmt_shape(out)},",
                  f"  {shapes.conv_params_formula(h, w, c, n, args.bias)} parameters, exactly as many"]
    print("\n".join(lines))
    return 0


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{shapes.fmt_int(count)} {word if count == 1 else plural or word + 's'}"


def _hw(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}×{b}"


# ----------------------------------------------------------------------------- registration
def register(sub) -> None:
    p = add_command(sub, "conv", help="one conv layer's arithmetic, step by step", func=run_conv)
    p.epilog = "example:\n  cnnkit conv --input 32x32x3 --filters 10 --size 5 --pad 2"
    add_conv_arguments(p)
    _common(p)
    p.add_argument("--no-bias", dest="bias", action="store_false", help="filters without a bias")

    p = add_command(sub, "pool", help="one pooling layer's arithmetic, step by step", func=run_pool)
    p.epilog = "example:\n  cnnkit pool --input 28x28x6 --size 2"
    p.add_argument("--input", type=parse_hwc, required=True, metavar="HxWxC", help="input volume, e.g. 28x28x6")
    p.add_argument("--size", type=parse_pair, required=True, metavar="F", help="window size F (or FHxFW)")
    p.add_argument("--stride", type=parse_pair, default=None, metavar="S", help="stride S, default F")
    p.add_argument("--pad", type=parse_padding, default=0, metavar="P", help="padding (< F), default 0")
    p.add_argument("--kind", choices=("max", "avg"), default="max", help="max (default) or avg")
    _common(p)

    p = add_command(sub, "fc", help="one fully-connected layer's arithmetic", func=run_fc)
    p.epilog = "example:\n  cnnkit fc --input 5x5x16 --outputs 120"
    p.add_argument("--input", type=parse_volume, required=True, metavar="HxWxC", help="input volume or vector length")
    p.add_argument("--outputs", type=int, required=True, metavar="N", help="number of outputs")
    p.add_argument("--no-bias", dest="bias", action="store_false", help="no bias per output")


def add_conv_arguments(p) -> None:
    """The options that describe one conv layer on one input (``cnnkit conv``, ``cnnkit conv-as-fc``)."""
    p.add_argument("--input", type=parse_hwc, required=True, metavar="HxWxC", help="input volume, e.g. 32x32x3")
    p.add_argument("--filters", type=int, required=True, metavar="K", help="number of filters K")
    p.add_argument("--size", type=parse_pair, required=True, metavar="F", help="filter size F (or FHxFW)")
    p.add_argument("--stride", type=parse_pair, default=1, metavar="S", help="stride S (or SHxSW), default 1")
    p.add_argument("--pad", type=parse_padding, default=0, metavar="P|same|valid", help="padding, default 0")
    p.add_argument("--dilation", type=parse_pair, default=1, metavar="D", help="dilation D, default 1")


def _common(p) -> None:
    p.add_argument("--rounding", choices=shapes.ROUNDING_MODES, default="strict",
                   help="strict (default) refuses sizes that do not divide; floor drops the rest, as PyTorch does")
