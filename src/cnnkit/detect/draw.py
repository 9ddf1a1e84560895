"""Pictures of detections: boxes with readable labels, and a heat-map overlay.

Small images are enlarged (nearest neighbour, whole factors) so that the long side is at least
:data:`MIN_SIDE` pixels: a 128×128 scene becomes 512×512 and its labels stay legible. Each class
has its own colour; a label is written on a filled tag above its box (inside when the box touches
the top edge), in black or white, whichever contrasts more with the tag.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .detector import Detection

MIN_SIDE = 512
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def _enlarged(image: np.ndarray):
    from PIL import Image

    h, w = image.shape[:2]
    factor = max(1, -(-MIN_SIDE // max(h, w)))                     # ceil(MIN_SIDE / long side)
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    pil = Image.fromarray(np.ascontiguousarray(rgb))
    if factor > 1:
        pil = pil.resize((w * factor, h * factor), Image.Resampling.NEAREST)
    return pil, factor


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:                                               # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def class_color(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def draw_detections(image: np.ndarray, detections: Sequence[Detection], class_names: Sequence[str] = (),
                    truth: np.ndarray | None = None):
    """A Pillow image of ``image`` (uint8 (H, W, C)) with each detection's box and a label
    ``"<class> <probability>"``; ground-truth boxes (n, 4), when given, as thin white outlines."""
    from PIL import ImageDraw

    pil, f = _enlarged(image)
    draw = ImageDraw.Draw(pil)
    font = _font(max(12, min(18, pil.size[0] // 36)))
    if truth is not None:
        for b in np.asarray(truth).reshape(-1, 4):
            draw.rectangle([b[0] * f, b[1] * f, b[2] * f - 1, b[3] * f - 1], outline=(255, 255, 255), width=1)
    width = max(2, f // 2 + 1)
    for d in sorted(detections, key=lambda d: d.score):                # the best drawn last, on top
        idx = d.class_index if d.class_index >= 0 else (list(class_names).index(d.label)
                                                         if d.label in class_names else 0)
        color = class_color(idx)
        x0, y0, x1, y1 = (v * f for v in d.box)
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=width)
        text = f"{d.label} {d.score:.2f}"
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        tw, th = r - l + 6, b - t + 4
        ty = y0 - th if y0 - th >= 0 else y0 + width
        tx = min(max(0, x0), pil.size[0] - tw)
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=color)
        ink = (0, 0, 0) if sum(c * k for c, k in zip(color, (0.299, 0.587, 0.114))) > 140 else (255, 255, 255)
        draw.text((tx + 3 - l, ty + 2 - t), text, fill=ink, font=font)
    return pil


def draw_heatmap(image: np.ndarray, heat: np.ndarray, detections: Sequence[Detection] = ()):
    """``image`` under a colour map of ``heat`` (H, W) in [0, 1] (matplotlib's ``inferno``, half
    transparent where the heat is high, the image showing through where it is low), with a colour
    bar legend; the detections' boxes as thin outlines."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    h, w = heat.shape
    rgba = colormaps["inferno"](np.clip(heat, 0, 1))                 # (H, W, 4) floats
    alpha = (0.35 + 0.5 * np.clip(heat, 0, 1))[..., None]
    base = image.astype(np.float64) if image.shape[2] == 3 else np.repeat(image, 3, axis=2).astype(np.float64)
    grey = base.mean(axis=2, keepdims=True) * np.ones(3)            # the picture in grey, so the map stands out
    mixed = (1 - alpha) * grey + alpha * 255 * rgba[..., :3]
    pil, f = _enlarged(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for d in detections:
        x0, y0, x1, y1 = (v * f for v in d.box)
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255), width=1)
    # colour bar: 0 at the bottom, 1 at the top
    bar_h, bar_w = pil.size[1] // 2, 16
    ramp = colormaps["inferno"](np.linspace(1, 0, bar_h))[:, None, :3] * np.ones((1, bar_w, 1))
    canvas = Image.new("RGB", (pil.size[0] + bar_w + 70, pil.size[1]), (255, 255, 255))
    canvas.paste(pil, (0, 0))
    top = (pil.size[1] - bar_h) // 2
    canvas.paste(Image.fromarray((ramp * 255).astype(np.uint8)), (pil.size[0] + 8, top))
    cd = ImageDraw.Draw(canvas)
    font = _font(13)
    x_text = pil.size[0] + bar_w + 12
    cd.text((x_text, top - 6), "1.0", fill=(0, 0, 0), font=font)
    cd.text((x_text, top + bar_h - 8), "0.0", fill=(0, 0, 0), font=font)
    cd.text((pil.size[0] + 6, top - 40), "P(object)", fill=(0, 0, 0), font=font)
    return canvas


def save_png(picture, path: str | os.PathLike) -> None:
    """Write a Pillow image as PNG, atomically (:func:`cnnkit.io.atomic_write`)."""
    from ..io import atomic_write

    atomic_write(path, lambda f: picture.save(f, format="PNG"))


__all__ = ["draw_detections", "draw_heatmap", "save_png", "class_color"]
