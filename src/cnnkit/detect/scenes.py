"""Generated scenes for detection: several shapes of three sizes, touching, partly hidden, in clutter.

Each scene is drawn with the built-in renderer (:mod:`cnnkit.data.shapes`) on an S×S canvas
(128×128 and 256×256 by default): a noisy background with a colour gradient, distractor
clutter (thin bars and dots, most drawn under the objects, some over them), and several shapes of
the six ``shapes`` classes. Object sizes come from three size groups (small, medium, large:
the range from :data:`MIN_EXTENT` to :data:`MAX_EXTENT_FRACTION`·S split evenly on a log scale),
taken in turn, so every scene of three or more objects holds all three sizes. About a third of
the objects are placed against an earlier one, so that they touch or the later one hides part of
the earlier (at most :data:`MAX_COVERED` of either box lies under the other); the rest are placed
apart.

Ground truth: each object's tight bounding box ``[x0, y0, x1, y1]`` in pixels (``Shape.box()``,
the full shape even where something covers part of it) and its class index into
:data:`~cnnkit.data.shapes.SHAPE_CLASSES`. Every object lies fully inside the image.

The *extent* of a box is half its longer side; detection works with it (a detector window is
trained on objects whose box is centred in the window and whose extent lies in a band).

Determinism: scene ``i`` of ``make_scenes(n, seed)`` is drawn from
``np.random.default_rng([seed, i])`` alone, so it does not depend on ``n``.

Example:
    >>> scene = make_scenes(1, seed=7)[0]
    >>> scene.image.shape, scene.image.dtype, len(scene.boxes) == len(scene.labels)
    ((128, 128, 3), dtype('uint8'), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.shapes import (SHAPE_CLASSES, Shape, add_noise, contrasting_colors, coverage, draw_shape,
                           noisy_background, to_uint8)
from ..errors import UserInputError

SCENE_SIZES = (128, 256)
MIN_EXTENT = 8.5              # smallest object extent (half the longer box side), pixels
MAX_EXTENT_FRACTION = 0.18    # largest extent, as a fraction of the scene size
SIZE_GROUPS = 3               # small, medium, large
TOUCH_PROBABILITY = 0.35      # chance that an object is placed against an earlier one
MAX_COVERED = 0.35            # no object's box is covered more than this fraction by another's
OBJECT_CONTRAST = 0.3         # RGB distance between the colours of objects that touch


@dataclass(frozen=True)
class Scene:
    """One generated scene.

    Attributes:
        image: (S, S, 3) uint8.
        boxes: (n, 4) float64, each ``[x0, y0, x1, y1]`` in pixels (the object's tight box).
        labels: (n,) int64, indices into ``class_names``.
        shapes: the objects as drawn (:class:`~cnnkit.data.shapes.Shape`), in drawing order.
        touching: (n,) bool, objects placed against an earlier one.
        class_names: the shape classes.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    shapes: tuple[Shape, ...]
    touching: np.ndarray
    class_names: tuple[str, ...] = SHAPE_CLASSES

    @property
    def extents(self) -> np.ndarray:
        """Half the longer side of each box, (n,)."""
        return box_extents(self.boxes)


def box_extents(boxes: np.ndarray) -> np.ndarray:
    """Half the longer side of each box ``[x0, y0, x1, y1]``: (n, 4) → (n,)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """Centre (x, y) of each box: (n, 4) → (n, 2)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Shape:
        a: (n, 4), b: (m, 4), boxes ``[x0, y0, x1, y1]`` → (n, m).

    Example:
        >>> float(iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2]]))[0, 0])  # 2 / (4 + 4 - 2)
        0.3333333333333333
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]     # (n, 1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]     # (1, m, 4)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h                                                # (n, m)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def covered_fraction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For every pair, the intersection of the two boxes as a fraction of the smaller box's area
    (how much of the smaller one the other can hide): (n, 4), (m, 4) → (n, m).

    >>> float(covered_fraction(np.array([[0, 0, 10, 10]]), np.array([[8, 0, 12, 4]]))[0, 0])  # 8 / 16
    0.5
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    smaller = np.minimum((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]), (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))
    return np.where(smaller > 0, w * h / np.where(smaller > 0, smaller, 1), 0.0)


def size_groups(scene_size: int) -> list[tuple[float, float]]:
    """The three extent ranges (small, medium, large) for an S×S scene, split evenly on a log scale.

    >>> [tuple(round(v, 1) for v in g) for g in size_groups(256)]
    [(8.5, 14.9), (14.9, 26.2), (26.2, 46.1)]
    """
    hi = MAX_EXTENT_FRACTION * scene_size
    if hi <= MIN_EXTENT:
        raise UserInputError(f"scenes: a {scene_size}×{scene_size} scene is too small for objects of extent "
                             f"{MIN_EXTENT} px or more; use 64 pixels or more")
    edges = np.geomspace(MIN_EXTENT, hi, SIZE_GROUPS + 1)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def shape_with_box(kind: str, centre: tuple[float, float], extent: float, angle: float,
                   color: tuple[float, float, float]) -> Shape:
    """The :class:`Shape` of ``kind`` at ``angle`` whose tight box is centred on ``centre`` (x, y)
    and has half its longer side equal to ``extent``."""
    unit = Shape(kind, 0.0, 0.0, 1.0, color, angle).box()          # box of the unit shape
    half = max(unit[2] - unit[0], unit[3] - unit[1]) / 2
    size = extent / half
    cx = centre[0] - size * (unit[0] + unit[2]) / 2                  # unit box centre, scaled
    cy = centre[1] - size * (unit[1] + unit[3]) / 2
    return Shape(kind, cx, cy, size, color, angle)


# ----------------------------------------------------------------------------- clutter
def _draw_alpha(canvas: np.ndarray, alpha: np.ndarray, r0: int, c0: int, color: np.ndarray) -> None:
    window = canvas[r0:r0 + alpha.shape[0], c0:c0 + alpha.shape[1]]
    window += alpha[..., None] * (color - window)                    # alpha blend, in place


def draw_bar(canvas: np.ndarray, x: float, y: float, length: float, width: float, angle: float,
             color: np.ndarray) -> None:
    """A thin anti-aliased bar (rectangle ``length`` × ``width``) centred on (x, y), in place."""
    h, w = canvas.shape[:2]
    reach = (length + width) / 2 + 1
    c0, c1 = max(0, math.floor(x - reach)), min(w, math.ceil(x + reach))
    r0, r1 = max(0, math.floor(y - reach)), min(h, math.ceil(y + reach))
    if c0 >= c1 or r0 >= r1:
        return
    dx = (np.arange(c0, c1) + 0.5)[None, :] - x                      # (1, w')
    dy = (np.arange(r0, r1) + 0.5)[:, None] - y                      # (h', 1)
    u = np.abs(math.cos(angle) * dx + math.sin(angle) * dy) - length / 2
    v = np.abs(-math.sin(angle) * dx + math.cos(angle) * dy) - width / 2
    d = np.hypot(np.maximum(u, 0), np.maximum(v, 0)) + np.minimum(np.maximum(u, v), 0)  # box distance
    _draw_alpha(canvas, np.clip(0.5 - d, 0, 1).astype(canvas.dtype), r0, c0, color)


def draw_dot(canvas: np.ndarray, x: float, y: float, radius: float, color: np.ndarray) -> None:
    """A small anti-aliased disc, in place."""
    h, w = canvas.shape[:2]
    c0, c1 = max(0, math.floor(x - radius - 1)), min(w, math.ceil(x + radius + 1))
    r0, r1 = max(0, math.floor(y - radius - 1)), min(h, math.ceil(y + radius + 1))
    if c0 >= c1 or r0 >= r1:
        return
    xs = (np.arange(c0, c1) + 0.5)[None, :]
    ys = (np.arange(r0, r1) + 0.5)[:, None]
    alpha = coverage("circle", xs, ys, x, y, radius, 0.0)
    _draw_alpha(canvas, alpha.astype(canvas.dtype), r0, c0, color)


def _clutter(canvas: np.ndarray, base: np.ndarray, rng: np.random.Generator, count: int) -> None:
    size = canvas.shape[0]
    colors = contrasting_colors(np.repeat(base[None], count, axis=0), rng, 0.25).astype(np.float32)
    for k in range(count):
        x, y = rng.uniform(0, size, 2)
        if rng.uniform() < 0.6:
            draw_bar(canvas, x, y, length=rng.uniform(0.05, 0.3) * size, width=rng.uniform(1.0, 2.5),
                     angle=rng.uniform(0, math.pi), color=colors[k])
        else:
            draw_dot(canvas, x, y, radius=rng.uniform(1.0, 3.0), color=colors[k])


# ----------------------------------------------------------------------------- scenes
def _object_color(base: np.ndarray, neighbours: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A colour far enough from the background's base colour and from the objects it touches."""
    for _ in range(100):
        color = contrasting_colors(base[None], rng)[0]
        if all(np.linalg.norm(color - c) >= OBJECT_CONTRAST for c in neighbours):
            return color
    return color


def make_scene(size: int, rng: np.random.Generator, objects: int | None = None) -> Scene:
    """One S×S scene drawn from ``rng``; ``objects`` shapes (default: random, 3–5 at 128 px,
    5–8 at 256 px), fewer when there is no room left."""
    size = int(size)
    groups = size_groups(size)
    n_target = int(objects) if objects is not None else int(rng.integers(3, 6) if size <= 160 else rng.integers(5, 9))
    canvas = noisy_background(size, size, rng)[0]                     # (S, S, 3) float32
    base = canvas.mean(axis=(0, 1))
    n_clutter = int(rng.integers(size // 32, size // 16 + 1))
    _clutter(canvas, base, rng, n_clutter)                           # clutter under the objects
    group_order = rng.permutation(SIZE_GROUPS)
    placed: list[Shape] = []
    boxes: list[list[float]] = []
    colors: list[np.ndarray] = []
    touching: list[bool] = []
    for k in range(n_target):
        lo, hi = groups[group_order[k % SIZE_GROUPS]]
        extent = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        kind = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
        angle = float(rng.uniform(0, 2 * math.pi))
        touch = bool(placed) and rng.uniform() < TOUCH_PROBABILITY
        for _ in range(60):
            if touch:                       # against an earlier object: touching or partly covering it
                j = int(rng.integers(len(placed)))
                cj = box_centres(np.array(boxes[j]))[0]
                reach = (extent + box_extents(np.array(boxes[j]))[0]) * rng.uniform(0.75, 1.0)
                theta = rng.uniform(0, 2 * math.pi)
                centre = (cj[0] + reach * math.cos(theta), cj[1] + reach * math.sin(theta))
            else:
                centre = tuple(rng.uniform(extent + 1, size - extent - 1, 2))
            shape = shape_with_box(kind, centre, extent, angle, (0.0, 0.0, 0.0))
            box = shape.box()
            if box[0] < 1 or box[1] < 1 or box[2] > size - 1 or box[3] > size - 1:
                continue
            if boxes:
                covered = covered_fraction(np.array([box]), np.array(boxes))[0]
                dist = np.linalg.norm(box_centres(np.array(boxes)) - np.array(centre), axis=1)
                reach_all = box_extents(np.array(boxes)) + extent
                if covered.max() > MAX_COVERED or (dist < 0.7 * reach_all).any():
                    continue
                if not touch and (dist < reach_all + 2).any():
                    continue
            break
        else:
            continue                        # no room: skip this object
        near = [colors[i] for i in range(len(placed))
                if np.linalg.norm(box_centres(np.array(boxes[i]))[0] - np.array(centre))
                < 1.1 * (extent + box_extents(np.array(boxes[i]))[0])]
        color = _object_color(base, near, rng)
        shape = Shape(shape.kind, shape.cx, shape.cy, shape.size, tuple(float(c) for c in color), shape.angle)
        draw_shape(canvas, shape)
        placed.append(shape)
        boxes.append(box)
        colors.append(color)
        touching.append(touch)
    _clutter(canvas, base, rng, max(1, n_clutter // 4))               # some clutter over the objects
    image = to_uint8(add_noise(canvas, rng))
    labels = np.array([SHAPE_CLASSES.index(s.kind) for s in placed], np.int64)
    return Scene(image, np.array(boxes, np.float64).reshape(-1, 4), labels, tuple(placed),
                 np.array(touching, bool))


def make_scenes(n: int, seed: int, sizes: Sequence[int] = SCENE_SIZES) -> list[Scene]:
    """``n`` scenes, deterministic from ``seed``; scene ``i`` is ``sizes[i % len(sizes)]`` pixels square
    and drawn from ``np.random.default_rng([seed, i])``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise UserInputError(f"make_scenes: n must be a whole number >= 0. Received: n={n!r}")
    if not sizes:
        raise UserInputError("make_scenes: sizes is empty")
    return [make_scene(sizes[i % len(sizes)], np.random.default_rng([int(seed), i])) for i in range(n)]


__all__ = ["Scene", "make_scene", "make_scenes", "iou", "covered_fraction", "box_extents", "box_centres", "size_groups",
           "shape_with_box", "draw_bar", "draw_dot", "SCENE_SIZES", "MIN_EXTENT"]
