"""``cnnkit conv-as-fc`` and ``cnnkit fc-as-conv``: the two conversions of :mod:`cnnkit.convert`."""

from __future__ import annotations

import numpy as np

from .. import shapes
from . import add_command, parse_hwc
from .calc import add_conv_arguments


def register(sub) -> None:
    p = add_command(sub, "conv-as-fc", "a conv layer as the equivalent fully-connected layer", _conv_as_fc,
                    description="Build one conv layer (random weights), turn it into the fully-connected layer "
                                "that computes exactly the same on the given input size, and compare the "
                                "parameter counts and the outputs.")
    add_conv_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and input (default 0)")

    q = add_command(sub, "fc-as-conv", "a classifier's fully-connected head as convolutions (sliding windows)",
                    _fc_as_conv,
                    description="Turn MODEL's Flatten → Linear head into convolutions, check that it computes the "
                                "same on the training size, and show the class-score map it gives on a larger "
                                "input (one cell per window).")
    q.add_argument("model", metavar="MODEL|SPEC", help="built-in name, spec file, inline spec or model.npz")
    q.add_argument("--input", type=parse_hwc, metavar="HxWxC", help="training input size (default: the model's)")
    q.add_argument("--on", type=parse_hwc, metavar="HxWxC", help="a larger input to compute the score-map size for")
    q.add_argument("--crop", action="store_true", help="crop --on to the nearest size that fits instead of refusing")


CHECK_LIMIT = 256 << 20  # build and compare the dense layer only below this size (bytes, float64)


def _conv_as_fc(args) -> int:
    from ..convert import conv_as_linear, dense_weight_bytes
    from ..layers import Conv2d

    conv = Conv2d(args.filters, args.size, args.stride, args.pad, args.dilation, name="conv")
    out_shape = conv.output_shape(args.input)  # refuses sizes that do not divide (exit 2)
    need = dense_weight_bytes(conv, args.input)
    if need > CHECK_LIMIT:
        fh, fw = conv.filter_hw
        print(f"conv on {shapes.fmt_shape(args.input)} → {shapes.fmt_shape(out_shape)}\n"
              f"  conv parameters:            {shapes.conv_params_formula(fh, fw, args.input[2], args.filters)}\n"
              f"  fully-connected weights:    {shapes.fmt_int(shapes.fc_equivalent_weights(args.input, out_shape))}\n"
              f"  (the dense layer itself, {shapes.fmt_bytes(need)} in float64, is not built to compare outputs: "
              f"over {shapes.fmt_bytes(CHECK_LIMIT)})")
        return 0
    rng = np.random.default_rng(args.seed)
    conv.build(args.input, rng, np.float64)
    conv.params["bias"].value[...] = rng.normal(size=args.filters)
    result = conv_as_linear(conv)
    x = rng.normal(size=(1, *args.input))
    y_conv = conv.forward(x).reshape(1, -1)
    y_fc = result.linear.forward(x.reshape(1, -1))
    rel = float(np.linalg.norm(y_conv - y_fc) / np.linalg.norm(y_conv))
    print(result.describe())
    print(f"  outputs on a random input:  conv and fully-connected agree to {rel:.1e} (relative, float64)")
    return 0


def _fc_as_conv(args) -> int:
    from ..convert import crop_to_fit, score_map_shape, to_fully_convolutional, total_stride
    from ..spec import resolve_model
    from ..summarize import summary

    model = resolve_model(args.model, args.input, dtype="float64")
    model.eval()
    fcn = to_fully_convolutional(model)
    on, cropped = args.on, False
    if on and args.crop:
        on = crop_to_fit(fcn, np.zeros((1, *on), np.float32), model.input_shape).shape[1:]
        cropped = tuple(on) != tuple(args.on)
    rows_cols = score_map_shape(fcn, on, model.input_shape) if on else None  # refuse before printing
    x = np.random.default_rng(0).normal(size=(2, *model.input_shape))
    y = model.logits(x)
    rel = float(np.linalg.norm(y - fcn.logits(x).reshape(2, -1)) / np.linalg.norm(y))
    print(summary(fcn).to_text())
    print(f"\nOn {shapes.fmt_shape(model.input_shape)}: the converted model's output equals the original's "
          f"to {rel:.1e} (relative, float64).")
    if rows_cols:
        if cropped:
            print(f"Cropped {shapes.fmt_shape(args.on)} to {shapes.fmt_shape(on)} to fit.")
        rows, cols = rows_cols
        sh, sw = total_stride(fcn)
        th, tw, _ = model.input_shape
        print(f"On {shapes.fmt_shape(on)}: a {rows}×{cols} map of {fcn.output_shape()[-1]} class scores, "
              f"({on[0]} - {th})/{sh} + 1 = {rows} by ({on[1]} - {tw})/{sw} + 1 = {cols}; "
              f"cell (i, j) scores the {th}×{tw} window with top-left pixel (row {sh}·i, column {sw}·j).")
    return 0
