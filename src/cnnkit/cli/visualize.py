"""``cnnkit visualize MODEL_FILE [IMAGE] --kind filters|activations|saliency [--layer NAME] --out FILE.png``
and ``cnnkit visualize RUN_DIR --kind curves|confusion|confused --out FILE.png``."""

from __future__ import annotations

from pathlib import Path

from . import add_command

MODEL_KINDS = ("filters", "activations", "saliency")
RUN_KINDS = ("curves", "confusion", "confused")

EPILOG = """\
kinds:
  filters      a conv layer's filters (--layer, default the first conv layer); no IMAGE
  activations  every conv and pool layer's output for IMAGE, low to high (--layer: just one)
  saliency     |d score / d input| of the predicted class for IMAGE
  curves       loss, accuracy and learning rate per epoch of a run (RUN_DIR)
  confusion    the run's confusion matrix on its test set (RUN_DIR)
  confused     the run's most-confused test images (RUN_DIR)

how numbers become pixels:
  filters      each filter scaled by its largest |weight|: mid-grey = 0, white = +max, black = -max
  activations  one scale per layer for this image: pixel = floor(255 (y - min) / (max - min) + 0.5),
               black = the layer's smallest output, white = its largest (conv layers before ReLU)
  saliency     black = 0, brightest = the map's maximum (inferno colour map)

MODEL_FILE is a model.npz (a run folder holding one works too); IMAGE any image Pillow reads,
converted to the model's input as cnnkit predict does.

examples:
  cnnkit visualize runs/RUN/model.npz --kind filters --out filters.png
  cnnkit visualize runs/RUN/model.npz photo.png --kind activations --out act.png
  cnnkit visualize runs/RUN --kind curves --out curves.png
"""


def register(sub) -> None:
    p = add_command(sub, "visualize", help="draw filters, activation maps, saliency, curves or confusion as a PNG",
                    func=run)
    p.epilog = EPILOG
    p.add_argument("target", metavar="MODEL_FILE|RUN_DIR", help="a model.npz, or a run folder for run kinds")
    p.add_argument("image", metavar="IMAGE", nargs="?", help="input image (activations, saliency)")
    p.add_argument("--kind", required=True, choices=MODEL_KINDS + RUN_KINDS, help="what to draw")
    p.add_argument("--layer", metavar="NAME", help="layer name (filters: a conv layer; activations: one layer)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="where to write the PNG")


def _model(target: str):
    from ..io import load

    path = Path(target)
    if path.is_dir() and (path / "model.npz").is_file():
        path = path / "model.npz"
    return load(path)


def run(args) -> int:
    from ..errors import UserInputError

    kind = args.kind
    if kind in ("filters", *RUN_KINDS) and args.image:
        raise UserInputError(f"--kind {kind} takes no IMAGE; received {args.image!r}")
    if kind in ("activations", "saliency") and not args.image:
        raise UserInputError(f"--kind {kind} needs an IMAGE after the model file")
    if args.layer and kind not in ("filters", "activations"):
        raise UserInputError(f"--layer applies to --kind filters and activations, not {kind}")
    if not args.out.lower().endswith(".png"):
        raise UserInputError(f"--out must name a .png file; received {args.out!r}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserInputError(f"--out {args.out!r}: folder {str(out.parent)!r} does not exist")

    if kind in MODEL_KINDS:
        from ..viz import plot_activations, plot_filters, plot_saliency

        model = _model(args.target)
        if kind == "filters":
            picture = plot_filters(model, args.layer)
        elif kind == "activations":
            picture = plot_activations(model, args.image, args.layer)
        else:
            picture = plot_saliency(model, args.image)
    else:
        picture = _run_picture(args.target, kind)
    picture.save(out)
    print(out)
    return 0


def _run_picture(target: str, kind: str):
    from ..errors import CnnkitError
    from ..viz import confusion_matrix, plot_confused, plot_confusion, plot_curves
    from ..viz.rundata import load_run, load_run_model, load_run_test_set, predict_dataset

    data = load_run(target)
    if kind == "curves":
        if data.history is None:
            raise CnnkitError(f"{data.run_dir / 'history.json'}: no such file; the run has no finished epoch yet")
        return plot_curves(data.history)
    model = load_run_model(data)
    test = load_run_test_set(data)
    probs = predict_dataset(model, test.x)
    y_pred = probs.argmax(axis=1)
    names = model.class_names or test.class_names
    if kind == "confusion":
        return plot_confusion(confusion_matrix(test.y, y_pred, probs.shape[1]), names)
    return plot_confused(test.x, test.y, y_pred, probs, names)
