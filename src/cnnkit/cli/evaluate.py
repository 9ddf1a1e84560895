"""``cnnkit evaluate MODEL_FILE --dataset D``: accuracy, top-5 accuracy (5 classes or more),
per-class accuracy and the confusion matrix of a trained model on a dataset's test split.

``--format json`` prints one object with the keys accuracy (0-1), top5_accuracy (null under 5
classes), per_class, confusion (rows: true class, columns: predicted), class_names, count, loss,
dataset, split, model. An image folder is converted to the model's input size and channel
count by the documented rule (see ``cnnkit predict --help``).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import add_command

DOWNLOADED = ("mnist", "fashion-mnist", "cifar10")  # datasets that may be downloaded (and show progress)


def register(sub) -> None:
    p = add_command(sub, "evaluate", help="accuracy, top-5, per-class accuracy and confusion matrix of a model",
                    func=run, description=__doc__)
    p.add_argument("model", metavar="MODEL_FILE", help="a model file (model.npz) written by cnnkit train")
    p.add_argument("--dataset", required=True,
                   help="shapes, mnist, fashion-mnist, cifar10 or a folder with one subfolder per class")
    p.add_argument("--split", choices=("test", "train", "all"), default="test",
                   help="which split (default test). An image folder without train/ and test/ subfolders is "
                        "split 80/20 by a fixed rule (the same that cnnkit train uses); 'all' takes every image")
    p.add_argument("--data-dir", help="folder holding the standard dataset files")
    p.add_argument("--cache-dir", help="download cache (default ~/.cache/cnnkit)")
    p.add_argument("--resize", choices=("stretch", "crop", "error"), default="stretch",
                   help="image folders: how images of another size are converted (default stretch)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--quiet", action="store_true", help="no download progress")


def load_eval_dataset(name: str, split: str, model, data_dir=None, cache_dir=None, resize: str = "stretch",
                      progress: bool = True):
    """A named dataset, or an image folder converted to the model's input shape and classes."""
    from ..data import LOADERS, load_dataset

    from ..errors import UserInputError

    key = name.lower()
    if key not in LOADERS and Path(name).expanduser().is_dir():
        return load_dataset(name, split, shape=model.input_shape, resize=resize, class_names=model.class_names)
    if split == "all":
        raise UserInputError(f"--split all is for image folders; {name} has a train and a test split")
    options = {"progress": progress} if key in DOWNLOADED else {}
    return load_dataset(name, split, data_dir=data_dir, cache_dir=cache_dir, **options)


def run(args) -> int:
    from ..errors import UserInputError
    from ..evaluation import evaluate
    from ..io import load

    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be a positive integer; received {args.batch_size}")
    model = load(args.model)
    ds = load_eval_dataset(args.dataset, args.split, model, args.data_dir, args.cache_dir, args.resize,
                           progress=not args.quiet)
    result = evaluate(model, ds, args.batch_size,
                      info={"dataset": args.dataset, "split": args.split, "model": str(Path(args.model))})
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.to_text())
    return 0
