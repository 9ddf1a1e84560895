"""``cnnkit profile MODEL [--input HxWxC] [--batch-size N] [--steps N] [--forward-only] [--format …]``."""

from __future__ import annotations

from . import add_command, parse_hwc

DESCRIPTION = """\
Time a model's training step (or, with --forward-only, its inference pass) layer by layer, on
random data, and split each layer's time into matrix multiplies and convolutions (BLAS and the compiled direct
convolution), element-wise work (ufuncs, max pooling), and copies and other work (padding and
im2col copies, allocation, Python).

The step is the one `cnnkit train` runs: forward, softmax cross-entropy, backward (no gradient
for the input), SGD with momentum. Times are medians over --steps steps after two warm-up steps.
The split comes from a second pass in which cnnkit's NumPy calls are observed (see
cnnkit.profile). Timings depend on the machine and on what else runs on it.

MODEL is a built-in model (lenet5, cifar-net, shapes-net), a .json spec, a model.npz file or an
inline spec; the model file itself is never changed.

examples:
  cnnkit profile lenet5 --input 28x28x1 --batch-size 64
  cnnkit profile cifar-net --batch-size 256 --forward-only --format json
"""


def register(sub) -> None:
    p = add_command(sub, "profile", help="forward/backward time per layer, and where it goes",
                    func=run, description=DESCRIPTION)
    p.add_argument("model", metavar="MODEL", help="built-in model, .json spec, model.npz, or inline spec")
    p.add_argument("--input", type=parse_hwc, metavar="HxWxC",
                   help="input size (default: the model's own, e.g. 28x28x1 for lenet5)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per step (default 64)")
    p.add_argument("--steps", type=int, default=10, metavar="N", help="measured steps (default 10)")
    p.add_argument("--forward-only", action="store_true", help="profile inference (evaluation mode) instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input and labels (default 0)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                   help="output format (default text)")


def run(args) -> int:
    from ..profile import profile_model

    result = profile_model(args.model, args.input, batch_size=args.batch_size, steps=args.steps,
                           train=not args.forward_only, seed=args.seed)
    print({"text": result.to_text, "markdown": result.to_markdown, "json": result.to_json}[args.format]())
    return 0
