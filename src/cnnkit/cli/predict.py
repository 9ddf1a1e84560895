"""``cnnkit predict MODEL_FILE IMAGE…``: the top-k classes of each image, with probabilities.

Each image is converted to the model's input by one rule (the same as for image folders and
``load(...).predict_images(...)``): read with Pillow (first frame; EXIF orientation applied);
16-bit images reduced to 8 bits; transparency flattened onto black; converted to greyscale
(ITU-R 601-2 luma) or RGB to match the model's channels; resized to the model's H×W with an
antialiased bilinear filter, ignoring the aspect ratio (``--resize stretch``, the default), after
cutting the centred region of the right aspect ratio (``--resize crop``), or refused when its
size differs (``--resize error``); finally the model file's preprocessing (scale, mean, std).
An image that cannot be read is refused (exit status 2).
"""

from __future__ import annotations

import json

from . import add_command, positive_int


def register(sub) -> None:
    p = add_command(sub, "predict", help="top-k classes of images, with probabilities", func=run,
                    description=__doc__)
    p.add_argument("model", metavar="MODEL_FILE", help="a model file (model.npz) written by cnnkit train")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, BMP, GIF, TIFF, WebP …)")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes to show per image (default 5, at most all)")
    p.add_argument("--resize", choices=("stretch", "crop", "error"), default="stretch",
                   help="how images of another size are converted (default stretch)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")


def run(args) -> int:
    from ..io import load

    model = load(args.model)
    results = model.predict_images(args.images, top_k=args.top_k, resize=args.resize)
    if args.format == "json":
        print(json.dumps([{"image": image, "predictions": [{"label": label, "probability": p} for label, p in top]}
                          for image, top in zip(args.images, results)], indent=2))
        return 0
    width = max(len(label) for top in results for label, _ in top)
    for image, top in zip(args.images, results):
        print(image)
        for label, p in top:
            print(f"  {label:<{width}}  {100 * p:6.2f}%")
    return 0
