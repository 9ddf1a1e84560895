"""``report.html``: one self-contained page that shows what a training run produced.

Every picture is embedded as a ``data:image/png;base64`` URI and the style sheet is inline; the
page has no scripts and makes no request, so it opens from disk with no server and no network.
Sections: final metrics, the model summary with its parameter formulas, training curves,
per-class accuracy, confusion matrix and most-confused examples, filters of every conv layer,
activation maps and saliency maps for a few test images, and the run's settings (``run.json``).

A section whose inputs are missing (say, no ``model.npz`` yet) says so in place of its content;
:func:`write_report` returns the path either way and lists such problems in the page.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .errors import CnnkitError

REPORT_NAME = "report.html"
ACTIVATION_IMAGES = 2  # test images whose activation maps are shown
SALIENCY_IMAGES = 6  # test images whose saliency maps are shown (one per class first)

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #222; background: #f6f6f4; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 36px 0 10px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin: 22px 0 8px; }
.sub { color: #666; margin: 0 0 14px; } .note { color: #666; font-size: 13px; }
nav a { margin-right: 14px; color: #1a5fb4; text-decoration: none; } nav a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 12px 4px 0; text-align: left; vertical-align: top; }
th { color: #555; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: #f4f4f4; padding: 10px; overflow-x: auto; max-height: 360px; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; image-rendering: pixelated; }
img.plot { image-rendering: auto; }
.bar { background: #dfe8f5; width: 180px; height: 12px; display: inline-block; vertical-align: middle; }
.bar span { background: #3b73b9; height: 12px; display: block; }
.big { font-size: 22px; font-weight: 600; } .missing { color: #a33; font-style: italic; }
.row { display: flex; flex-wrap: wrap; gap: 8px 20px; align-items: flex-start; }
"""


def fmt(n) -> str:
    return f"{int(n):,}"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(picture, alt: str, plot: bool = False) -> str:
    """An <img> with the picture embedded as a base64 PNG data URI."""
    data = base64.b64encode(picture.png()).decode("ascii")
    w, h = picture.size
    cls = ' class="plot"' if plot else ""
    return f'<img{cls} src="data:image/png;base64,{data}" width="{w}" height="{h}" alt="{_esc(alt)}">'


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """A table; cells are HTML already (escape before)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class _Report:
    """Collects the sections of one report; each builder returns HTML or raises."""

    def __init__(self, run_dir: Path, model=None, test=None) -> None:
        from .viz.rundata import load_run

        self.data = load_run(run_dir)
        self._model, self._test = model, test
        self._probs: np.ndarray | None = None
        self.problems: list[str] = []
        self.timings: dict[str, float] = {}

    # ----------------------------------------------------------------- inputs, loaded once
    @property
    def model(self):
        if self._model is None:
            from .viz.rundata import load_run_model

            self._model = load_run_model(self.data)
        return self._model

    @property
    def test(self):
        if self._test is None:
            from .viz.rundata import load_run_test_set

            self._test = load_run_test_set(self.data)
        return self._test

    @property
    def probs(self) -> np.ndarray:
        if self._probs is None:
            from .viz.rundata import predict_dataset

            self._probs = predict_dataset(self.model, self.test.x)
        return self._probs

    @property
    def class_names(self) -> list[str]:
        names = self.model.class_names or (self.data.run or {}).get("class_names")
        return list(names) if names else [str(i) for i in range(self.model.output_shape()[0])]

    def sample(self, n: int) -> list[int]:
        """Indices of ``n`` test images: the first of each class, then the next of each …"""
        y = np.asarray(self.test.y)
        order = [np.flatnonzero(y == k) for k in range(len(self.class_names))]
        picked: list[int] = []
        for depth in range(max((len(o) for o in order), default=0)):
            for o in order:
                if depth < len(o) and len(picked) < n:
                    picked.append(int(o[depth]))
        return picked

    # ----------------------------------------------------------------- sections
    def section(self, anchor: str, title: str, build: Callable[[], str]) -> str:
        t = time.perf_counter()
        try:
            body = build()
        except (CnnkitError, OSError, ImportError) as e:
            self.problems.append(f"{title}: {e}")
            body = f'<p class="missing">This section could not be drawn: {_esc(e)}</p>'
        self.timings[anchor] = time.perf_counter() - t
        return f'<section id="{anchor}"><h2>{_esc(title)}</h2>{body}</section>'

    def metrics(self) -> str:
        m = self.data.metrics
        if not m:
            raise CnnkitError("metrics.json is missing: the run has not finished")
        last = (self.data.history or [{}])[-1]
        speed = (last.get("timings") or {}).get("images_per_second")
        rows = [["test accuracy", f'<span class="big">{100 * m["test_accuracy"]:.2f}%</span>']
                if "test_accuracy" in m else None,
                ["test loss", f'{m["test_loss"]:.4f}'] if "test_loss" in m else None,
                ["epochs", _esc(m.get("epochs", ""))],
                ["training time (fit loop)", f'{m["train_seconds"]:.1f} s'] if "train_seconds" in m else None,
                ["total time of the command (metrics.json)", f'{m["total_seconds"]:.1f} s']
                if "total_seconds" in m else None,
                ["training speed, last epoch", f"{speed:,.0f} images/s"] if speed else None]
        return _table(["metric", "value"], [r for r in rows if r])

    def model_summary(self) -> str:
        from .shapes import fmt_bytes, fmt_int, fmt_shape
        from .summarize import summary

        s = summary(self.model)
        rows = [[_esc(r.name), _esc(r.type), _esc(fmt_shape(r.output_shape)),
                 f"<code>{_esc(r.params_formula if r.params else '0')}</code>", fmt_int(r.macs),
                 _esc(fmt_shape(r.receptive_field)) if r.receptive_field else "–"] for r in s.rows]
        head = ["layer", "type", "output H×W×C", "parameters", "MACs per image", "receptive field"]
        return (f'<p class="sub">{_esc(s.name)} on {_esc(fmt_shape(s.input_shape))} input, {_esc(s.dtype)}</p>'
                + _table(head, rows, {4})
                + f"<p><b>{fmt_int(s.total_params)} parameters</b> ({fmt_bytes(s.param_bytes)}); "
                  f"{fmt_int(s.total_macs)} multiply-accumulates per image.</p>")

    def curves(self) -> str:
        from .viz.curves import plot_curves

        if self.data.history is None:
            raise CnnkitError("history.json is missing")
        return _img(plot_curves(self.data.history), "training curves: loss, accuracy, learning rate", plot=True)

    def per_class(self) -> str:
        from .viz.confusion import confusion_matrix, per_class_accuracy

        cm = confusion_matrix(self.test.y, self.probs.argmax(axis=1), len(self.class_names))
        acc = per_class_accuracy(cm)
        rows = []
        for k, name in enumerate(self.class_names):
            a = acc[k]
            bar = "" if np.isnan(a) else f'<span class="bar"><span style="width:{100 * a:.1f}%"></span></span>'
            rows.append([_esc(name), fmt(cm[k].sum()), fmt(cm[k, k]),
                         "–" if np.isnan(a) else f"{100 * a:.1f}%", bar])
        total = cm.sum()
        note = f'<p class="note">{total:,} test images; overall accuracy {100 * np.trace(cm) / max(total, 1):.2f}%.</p>'
        return _table(["class", "test images", "correct", "accuracy", ""], rows, {1, 2, 3}) + note

    def confusion(self) -> str:
        from .viz.confusion import confusion_matrix, plot_confused, plot_confusion

        y_pred = self.probs.argmax(axis=1)
        cm = confusion_matrix(self.test.y, y_pred, len(self.class_names))
        confused = plot_confused(self.test.x, self.test.y, y_pred, self.probs, self.class_names, pairs=4, per_pair=8)
        return ('<div class="row">' + _img(plot_confusion(cm, self.class_names), "confusion matrix", plot=True)
                + _img(confused, "most-confused test images") + "</div>")

    def filters(self) -> str:
        from .viz.filters import conv_layers, plot_filters

        convs = conv_layers(self.model)
        if not convs:
            return '<p class="note">This model has no conv layer.</p>'
        parts = [_img(plot_filters(self.model, c.name, max_filters=32 if i == 0 else 16, max_channels=16),
                      f"filters of {c.name}") for i, c in enumerate(convs)]
        return '<p class="note">Mid-grey is 0; each filter is scaled by its largest |weight|.</p>' + "".join(parts)

    def activations(self) -> str:
        from .viz.activations import plot_activations

        parts = []
        for i in self.sample(ACTIVATION_IMAGES):
            label = self.class_names[int(self.test.y[i])]
            pic = plot_activations(self.model, self.test.x[i], max_channels=16)
            parts.append(f"<div><h3>test image {i} ({_esc(label)})</h3>{_img(pic, f'activation maps, test image {i}')}</div>")
        note = ('<p class="note">Each layer has one scale: black is its smallest output for this image, white its '
                "largest. Conv layers are shown before their activation function.</p>")
        return note + '<div class="row">' + "".join(parts) + "</div>"

    def saliency(self) -> str:
        from .viz.saliency import plot_saliency

        parts = []
        for i in self.sample(SALIENCY_IMAGES):
            label = f"true {self.class_names[int(self.test.y[i])]}"
            pic = plot_saliency(self.model, self.test.x[i], [label], size=96, note=False)
            parts.append(_img(pic, f"saliency, test image {i}"))
        note = ('<p class="note">Saliency: the largest |∂ score / ∂ input| over the colour channels, for the '
                "predicted class's score (before the softmax); black is 0, bright the map's maximum.</p>")
        return note + '<div class="row">' + "".join(parts) + "</div>"

    def settings(self) -> str:
        run = self.data.run
        if not run:
            raise CnnkitError("run.json is missing")
        rows = []
        for key, value in run.items():
            if key == "command":
                text = f"<code>{_esc(' '.join(map(str, value)))}</code>"
            elif key == "model_spec":
                text = f"<details><summary>the full spec</summary><pre>{_esc(json.dumps(value, indent=1))}</pre></details>"
            elif isinstance(value, (dict, list)):
                text = f"<code>{_esc(json.dumps(value))}</code>"
            else:
                text = "–" if value is None else _esc(value)
            rows.append([f"<code>{_esc(key)}</code>", text])
        return _table(["setting", "value"], rows)

    # ----------------------------------------------------------------- page
    def page(self) -> str:
        run = self.data.run or {}
        parts = [("metrics", "Final metrics", self.metrics), ("model", "Model", self.model_summary),
                 ("curves", "Training curves", self.curves), ("per-class", "Per-class accuracy", self.per_class),
                 ("confusion", "Confusion", self.confusion), ("filters", "Filters", self.filters),
                 ("activations", "Activation maps", self.activations), ("saliency", "Saliency", self.saliency),
                 ("settings", "Settings", self.settings)]
        t = time.perf_counter()
        body = "".join(self.section(a, title, build) for a, title, build in parts)
        nav = "".join(f'<a href="#{a}">{_esc(title)}</a>' for a, title, _ in parts)
        sub = " · ".join(_esc(x) for x in (run.get("model"), run.get("dataset"), run.get("started")) if x)
        problems = ""
        if self.problems:
            items = "".join(f"<li>{_esc(p)}</li>" for p in self.problems)
            problems = f'<div class="missing"><p>Some sections are incomplete:</p><ul>{items}</ul></div>'
        foot = (f'<p class="note">Written by cnnkit {_esc(__version__)} in {time.perf_counter() - t:.1f} s. '
                "Self-contained: every picture is embedded; nothing is fetched.</p>")
        return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<link rel="icon" href="data:,"><title>cnnkit report: {_esc(self.data.run_dir.name)}</title>'
                f"<style>{CSS}</style></head><body><main>"
                f"<h1>cnnkit report: {_esc(self.data.run_dir.name)}</h1><p class=\"sub\">{sub}</p>"
                f"<nav>{nav}</nav>{problems}{body}<footer>{foot}</footer></main></body></html>\n")


def write_report(run_dir: str | os.PathLike, *, model=None, test=None) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Args:
        run_dir: a run folder written by ``cnnkit train``.
        model: the trained model, if the caller has it in memory (else ``model.npz`` is loaded).
        test: the test :class:`~cnnkit.data.Dataset`, if in memory (else loaded as ``run.json`` says).

    Raises:
        CnnkitError: the folder is missing or one of its JSON files is corrupt.
    """
    return _write(run_dir, model, test)[0]


def _write(run_dir, model=None, test=None) -> tuple[Path, list[str]]:
    """Write the report; return its path and the sections that could not be drawn."""
    from .viz.common import write_atomic

    report = _Report(Path(run_dir), model, test)
    text = report.page()
    return write_atomic(Path(run_dir) / REPORT_NAME, text.encode("utf-8")), report.problems


__all__ = ["write_report", "REPORT_NAME"]
