"""``cnnkit summary MODEL|SPEC [--input HxWxC] [--format text|markdown|json] [--batch-size N]``."""

from __future__ import annotations

from . import add_command, parse_hwc

EPILOG = """\
MODEL|SPEC is a built-in model (lenet5, cifar-net, shapes-net), a .json spec file, a model.npz
file, or an inline spec such as 'conv(6,5,padding=2)-relu-maxpool(2)-flatten-fc(10)'.

examples:
  cnnkit summary lenet5
  cnnkit summary cifar-net --format markdown
  cnnkit summary 'conv(10,5,padding=2)' --input 32x32x3 --format json
"""


def register(sub) -> None:
    p = add_command(sub, "summary", help="per-layer shapes, parameters, MACs, memory, receptive field (no data)",
                    func=run)
    p.epilog = EPILOG
    p.add_argument("model", metavar="MODEL|SPEC", help="built-in name, .json spec, model.npz or inline spec")
    p.add_argument("--input", type=parse_hwc, metavar="HxWxC", help="input size, e.g. 32x32x3 (default: the model's)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="output format (default text)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="MACs and memory for N images (default 1)")


def run(args) -> int:
    from ..summarize import summary

    s = summary(args.model, args.input, batch_size=args.batch_size)
    print({"text": s.to_text, "markdown": s.to_markdown, "json": s.to_json}[args.format]())
    return 0
