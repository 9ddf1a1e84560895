"""``cnnkit check-gradients MODEL|SPEC --input HxWxC [--samples N|--all]``.

Float64 central differences against the backward pass for the input and every parameter; prints
the worst error per tensor and exits 1 when any tensor exceeds the tolerance.
"""

from __future__ import annotations

import json

from . import add_command, parse_hwc

DESCRIPTION = """\
Compare the backward pass of a model with float64 finite differences.

The model (a built-in name, a .json spec, a model.npz file or an inline spec) is copied in
float64. With a random input batch x and a random r, the loss L = sum(model(x) * r) is
differentiated twice: by backward, and by central differences (L(t + h) - L(t - h)) / 2h for
the input and every parameter t. An element passes when |a - n| <= 1e-8 + 1e-6*|n|.

By default --samples random elements per tensor (plus the one with the largest gradient) are
checked; --all checks every element (two forward passes each: slow for large models). An
element that fails is measured again with other steps and one-sided differences, so that a
ReLU or max-pool kink next to the point is not reported as a wrong backward.
Exit status: 0 all tensors pass, 1 some tensor fails, 2 bad arguments.

examples:
  cnnkit check-gradients lenet5
  cnnkit check-gradients "conv(8,3)-bn-relu-gap-fc(4)" --input 16x16x3 --all
"""


def register(sub) -> None:
    p = add_command(sub, "check-gradients", help="finite differences vs backward, worst error per tensor",
                    func=run, description=DESCRIPTION)
    p.add_argument("model", metavar="MODEL|SPEC", help="built-in model, .json spec, model.npz, or inline spec")
    p.add_argument("--input", type=parse_hwc, metavar="HxWxC",
                   help="input size (default: the model's own, e.g. 28x28x1 for lenet5)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--samples", type=int, default=None, metavar="N",
                     help="random elements checked per tensor (default 20)")
    how.add_argument("--all", action="store_true", help="check every element (slow for large models)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="examples in the random input (default 4)")
    p.add_argument("--mode", choices=("train", "eval"), default="train",
                   help="BatchNorm/Dropout behaviour during the check (default train)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input, r, the sample and fresh weights (default 0)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")


def run(args) -> int:
    from ..errors import ShapeError
    from ..gradcheck import DEFAULT_BATCH, DEFAULT_SAMPLES, check_gradients
    from ..spec import resolve_model

    model = resolve_model(args.model, args.input, seed=args.seed)
    if not model.built:
        raise ShapeError(f"{args.model!r} has no input shape: pass --input HxWxC, e.g. --input 28x28x1")
    samples = DEFAULT_SAMPLES if args.samples is None else args.samples
    batch_size = DEFAULT_BATCH if args.batch_size is None else args.batch_size
    report = check_gradients(model, samples=samples, all=args.all, seed=args.seed, batch_size=batch_size,
                             mode=args.mode)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format())
    return 0 if report.passed else 1
