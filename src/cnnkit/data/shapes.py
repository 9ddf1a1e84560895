"""The built-in ``shapes`` dataset, and the shape renderer it is drawn with.

Six classes, in this order: circle, square, triangle, cross, ring, star
(:data:`SHAPE_CLASSES`). Each 32×32×3 uint8 image holds one shape of random size, position,
colour and rotation, anti-aliased, fully inside the image, on a background of random colour with
a random linear gradient and Gaussian pixel noise. A shape's colour differs from its background's
base colour by at least :data:`MIN_CONTRAST` (Euclidean distance in RGB, 0–1 scale), so every
image can be classified.

Fixed splits (:func:`load_shapes`): ``train`` = ``make_shapes(12000, seed=20240)`` (2,000 per
class) and ``test`` = ``make_shapes(1200, seed=20241)`` (200 per class); generated in about
0.04 s per 1,000 images (one core), nothing stored on disk.

Difficulty: softmax regression on the pixels stays near chance (20.7% test accuracy with
``scripts/linear_baseline.py``, 19.8% with ``cnnkit train --model "flatten-fc(6)"``; chance is
16.7%): colour, position, size and rotation all vary, so no pixel says much about the class by
itself. ``shapes-net`` with ``cnnkit train``'s defaults (10 epochs, batch 64, Adam 3e-3, cosine
schedule, crop=2 and flip) reaches 99.0%, 99.4% and 96.6% for seeds 0, 1 and 2
(docs/main_job/).

The renderer works on canvases of any size, so larger scenes with several objects can be drawn
with it (later shapes cover earlier ones):

    >>> rng = np.random.default_rng(0)
    >>> canvas = noisy_background(128, 128, rng)[0]            # (128, 128, 3) float32 in [0, 1]
    >>> star = Shape("star", cx=40.0, cy=50.0, size=20.0, color=(1.0, 0.2, 0.1), angle=0.3)
    >>> _ = draw_shape(canvas, star)
    >>> [round(v, 1) for v in star.box()]                      # [x0, y0, x1, y1] in pixels
    [20.0, 30.9, 56.3, 68.9]
    >>> to_uint8(canvas).shape
    (128, 128, 3)

A "background" class for detection (empty regions and partial objects) comes from
``make_shapes(..., background=True)``: label ``len(classes)`` (6, after the shapes), named
:data:`BACKGROUND`.

Coordinates: x to the right, y down; pixel (row i, column j) covers [j, j+1) × [i, i+1), its centre
at (j + 0.5, i + 0.5). A shape's ``size`` is the radius of the circle through its outermost
points; ``angle`` (radians) turns it counter-clockwise as seen on the image.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UserInputError

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star")
BACKGROUND = "background"
IMAGE_SIZE = 32
TRAIN_SEED, TEST_SEED = 20240, 20241
TRAIN_SIZE, TEST_SIZE = 12000, 1200
SIZE_RANGE = (8.0, 13.0)      # shape radius in pixels on a 32-pixel image (scaled with the image)
MIN_CONTRAST = 0.5            # RGB distance between a shape's colour and its background's base colour
NOISE_STD = 0.05              # Gaussian pixel noise (0-1 scale), per channel, quantised to 256 levels
_CHUNK = 512                  # images rendered at once (fixed: it fixes the order of random draws)


STAR_INNER = 0.45                            # inner radius of the five-pointed star
RING_INNER = 0.55                            # inner radius of the ring
CROSS_ARM, CROSS_HALF_WIDTH = 0.95, 0.3      # the cross: two bars 2·0.95 long, 2·0.3 wide


def _star(points: int, inner: float) -> np.ndarray:
    a = math.pi / 2 + np.arange(2 * points) * math.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _cross(arm: float, half_width: float) -> np.ndarray:
    a, w = arm, half_width
    return np.array([[w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w],
                     [-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w]])


# Outlines in unit coordinates (v up) of the shapes with corners: every vertex within radius 1,
# the farthest at 1 (0.996 for the cross). Used for bounding boxes and as the test oracle.
POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) / math.sqrt(2),
    "triangle": _star(3, 0.5)[::2],          # equilateral, one vertex up
    "cross": _cross(CROSS_ARM, CROSS_HALF_WIDTH),
    "star": _star(5, STAR_INNER),            # five points, one up
}


@dataclass(frozen=True)
class Shape:
    """One shape to draw: ``kind`` (a name of :data:`SHAPE_CLASSES`), centre ``(cx, cy)`` and
    ``size`` (outer radius) in pixels, ``color`` RGB in [0, 1], ``angle`` in radians."""

    kind: str
    cx: float
    cy: float
    size: float
    color: tuple[float, float, float]
    angle: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SHAPE_CLASSES:
            raise UserInputError(f"Shape: unknown kind {self.kind!r}; expected one of {', '.join(SHAPE_CLASSES)}")
        if not self.size > 0:
            raise UserInputError(f"Shape: size must be > 0 pixels. Received: size={self.size}")

    def box(self) -> list[float]:
        """Tight bounding box ``[x0, y0, x1, y1]`` in pixels (before anti-aliasing's half pixel)."""
        if self.kind in POLYGONS:
            c, s = math.cos(self.angle), math.sin(self.angle)
            u, v = POLYGONS[self.kind].T
            xs = self.cx + self.size * (c * u - s * v)
            ys = self.cy - self.size * (s * u + c * v)
            return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
        return [self.cx - self.size, self.cy - self.size, self.cx + self.size, self.cy + self.size]


def _sd_polygon(u: np.ndarray, v: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Signed distance from (u, v) to any closed polygon (negative inside): the nearest edge's
    distance, the sign by the even-odd crossing rule (Quilez, "2D distance functions",
    sdPolygon). Slow (about 30 passes per edge); the reference the fast functions are tested on."""
    d2 = None
    inside = np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
    for i in range(len(poly)):
        (ux, uy), (wx, wy) = poly[i], poly[i - 1]
        ex, ey = wx - ux, wy - uy
        px, py = u - ux, v - uy
        t = np.clip((px * ex + py * ey) / (ex * ex + ey * ey), 0, 1)
        bx, by = px - ex * t, py - ey * t
        e2 = bx * bx + by * by
        d2 = e2 if d2 is None else np.minimum(d2, e2)
        upward = (v >= uy) & (v < wy) & (ex * py > ey * px)
        downward = (v < uy) & (v >= wy) & (ex * py <= ey * px)
        inside ^= upward | downward
    d = np.sqrt(d2)
    return np.where(inside, -d, d)


def _sd_box(u: np.ndarray, v: np.ndarray, half_u: float, half_v: float) -> np.ndarray:
    """Exact signed distance to the axis-aligned box |u| <= half_u, |v| <= half_v."""
    qu, qv = np.abs(u) - half_u, np.abs(v) - half_v
    ou, ov = np.maximum(qu, 0), np.maximum(qv, 0)
    return np.sqrt(ou * ou + ov * ov) + np.minimum(np.maximum(qu, qv), 0)


def _sd_triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact signed distance to the equilateral triangle of circumradius 1, a vertex up
    (Quilez, sdEquilateralTriangle: fold by the mirror symmetries, then one edge)."""
    k = math.sqrt(3.0)
    r = k / 2                                        # half the side
    x = np.abs(u) - r
    y = v + r / k
    fold = x + k * y > 0                             # reflect into the sector of one edge
    x, y = np.where(fold, (x - k * y) / 2, x), np.where(fold, (-k * x - y) / 2, y)
    x = x - np.clip(x, -2 * r, 0)
    return -np.sqrt(x * x + y * y) * np.sign(y)


def _sd_star(u: np.ndarray, v: np.ndarray, inner: float = STAR_INNER) -> np.ndarray:
    """Exact signed distance to the five-pointed star of outer radius 1, a point up, inner
    radius ``inner`` (Quilez, sdStar5: two reflections fold the plane onto one half-spike)."""
    k1u, k1v = math.cos(math.pi / 5), -math.sin(math.pi / 5)    # (0.809, -0.588)
    x, y = np.abs(u), v
    for ku, kv in ((k1u, k1v), (-k1u, k1v)):
        m = 2 * np.maximum(ku * x + kv * y, 0)
        x, y = x - m * ku, y - m * kv
    x = np.abs(x)
    y = y - 1
    bu, bv = inner * -k1v - 0, inner * k1u - 1      # from the tip (0, 1) to the inner vertex
    h = np.clip((x * bu + y * bv) / (bu * bu + bv * bv), 0, 1)
    dx, dy = x - bu * h, y - bv * h
    return np.sqrt(dx * dx + dy * dy) * np.sign(y * bu - x * bv)


def _sd_cross(u: np.ndarray, v: np.ndarray, arm: float = CROSS_ARM, half: float = CROSS_HALF_WIDTH) -> np.ndarray:
    """Exact signed distance to the plus sign of two bars (±arm × ±half and ±half × ±arm)
    (Quilez, sdCross: fold into one eighth, then the bar's end or the inner corner)."""
    x, y = np.abs(u), np.abs(v)
    x, y = np.maximum(x, y), np.minimum(x, y)       # fold onto the horizontal bar's half
    qx, qy = x - arm, y - half
    k = np.maximum(qx, qy)
    outside = k > 0
    wx = np.maximum(np.where(outside, qx, half - x), 0)
    wy = np.maximum(np.where(outside, qy, -k), 0)
    return np.sign(k) * np.sqrt(wx * wx + wy * wy)


def _signed_distance(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance in unit coordinates to the unit shape ``kind`` (negative inside)."""
    if kind == "square":
        h = 1 / math.sqrt(2)
        return _sd_box(u, v, h, h)
    if kind == "cross":
        return _sd_cross(u, v)
    if kind == "triangle":
        return _sd_triangle(u, v)
    if kind == "star":
        return _sd_star(u, v)
    r = np.sqrt(u * u + v * v)
    if kind == "circle":
        return r - 1
    if kind == "ring":
        mid, half = (1 + RING_INNER) / 2, (1 - RING_INNER) / 2
        return np.abs(r - mid) - half
    raise UserInputError(f"unknown shape kind {kind!r}; expected one of {', '.join(SHAPE_CLASSES)}")


def coverage(kind: str, xs: np.ndarray, ys: np.ndarray, cx, cy, size, angle) -> np.ndarray:
    """Anti-aliased coverage (0–1) of pixels whose centres are at ``xs``, ``ys`` by shapes.

    The coverage of a pixel is ``clip(0.5 − d, 0, 1)`` with ``d`` its centre's signed distance to
    the outline in pixels: a one-pixel ramp across the edge, the box-filtered edge to first order.

    Shape:
        xs, ys, cx, cy, size, angle broadcast together, e.g. xs (1, 1, W), ys (1, H, 1) and
        parameters (n, 1, 1) for n shapes -> (n, H, W), float32.
    """
    xs, ys = np.asarray(xs, np.float32), np.asarray(ys, np.float32)
    cx, cy, size, angle = (np.asarray(a, np.float64) for a in (cx, cy, size, angle))
    cos = np.vectorize(math.cos, otypes=[np.float64])(angle).astype(np.float32)
    sin = np.vectorize(math.sin, otypes=[np.float64])(angle).astype(np.float32)
    inv = (1 / size).astype(np.float32)
    dx = (xs - cx.astype(np.float32)) * inv         # unit coordinates, v up
    dy = (cy.astype(np.float32) - ys) * inv
    u = cos * dx + sin * dy                          # rotate by -angle into the shape's frame
    v = cos * dy - sin * dx
    d = _signed_distance(kind, u, v) * size.astype(np.float32)  # back to pixels
    return np.clip(np.float32(0.5) - d, 0, 1)


def draw_shape(canvas: np.ndarray, shape: Shape) -> np.ndarray:
    """Paint ``shape`` onto ``canvas`` (H, W, 3) float32 in [0, 1], in place, anti-aliased.

    Only the pixels under the shape's box are touched, so a large canvas costs what the shape
    covers. Parts outside the canvas are cut off. Returns ``canvas``.
    """
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.dtype.kind != "f":
        raise UserInputError(f"draw_shape: canvas must be a float (H, W, 3) array. "
                             f"Received: {canvas.dtype} {canvas.shape}")
    x0, y0, x1, y1 = shape.box()
    h, w = canvas.shape[:2]
    c0, c1 = max(0, math.floor(x0 - 1)), min(w, math.ceil(x1 + 1))
    r0, r1 = max(0, math.floor(y0 - 1)), min(h, math.ceil(y1 + 1))
    if c0 >= c1 or r0 >= r1:
        return canvas
    xs = (np.arange(c0, c1) + 0.5)[None, :]          # (1, w')
    ys = (np.arange(r0, r1) + 0.5)[:, None]          # (h', 1)
    alpha = coverage(shape.kind, xs, ys, shape.cx, shape.cy, shape.size, shape.angle)[..., None]
    window = canvas[r0:r1, c0:c1]
    color = np.asarray(shape.color, canvas.dtype)
    window += alpha.astype(canvas.dtype) * (color - window)   # alpha blend, in place
    return canvas


def noisy_background(height: int, width: int, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """``n`` backgrounds (n, H, W, 3) float32 in [0, 1]: a random colour with a random linear
    gradient (up to ±0.2 per channel across the image). Noise is added by :func:`add_noise`."""
    planes, _ = _backgrounds(height, width, rng, n)           # (n, 3, H·W)
    return np.ascontiguousarray(planes.reshape(n, 3, height, width).transpose(0, 2, 3, 1))


def _backgrounds(height: int, width: int, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Backgrounds channel-major (n, 3, H·W) (long inner loops for NumPy) and their base colours
    (n, 3), which are also their mean colours before clipping."""
    base = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    delta = rng.uniform(-0.2, 0.2, (n, 3)).astype(np.float32)
    phi = rng.uniform(0, 2 * math.pi, n)
    xs, ys = _pixel_centres(height, width)
    xs = (xs / width - 0.5)[None]                               # (1, 1, H·W), -0.5 … 0.5
    ys = (ys / height - 0.5)[None]
    cos, sin = np.cos(phi).astype(np.float32), np.sin(phi).astype(np.float32)
    t = cos[:, None, None] * xs + sin[:, None, None] * ys     # (n, 1, H·W)
    out = t * delta[:, :, None]                                 # (n, 3, H·W)
    out += base[:, :, None]
    return np.clip(out, 0, 1, out=out), base


def _pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of every pixel centre, row-major, each (1, H·W) float32."""
    xs = np.tile(np.arange(width, dtype=np.float32) + 0.5, height)[None]
    ys = np.repeat(np.arange(height, dtype=np.float32) + 0.5, width)[None]
    return xs, ys


@functools.lru_cache(maxsize=8)
def _noise_table(std: float) -> np.ndarray:
    """256 Gaussian quantiles ``std·Φ⁻¹((k + ½)/256)``: a random byte indexes one (cheap noise)."""
    normal = statistics.NormalDist()
    table = np.array([normal.inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32) * np.float32(std)
    table.flags.writeable = False
    return table


def add_noise(images: np.ndarray, rng: np.random.Generator, std: float = NOISE_STD) -> np.ndarray:
    """Add Gaussian noise of ``std`` to float32 images in [0, 1], in place, then clip to [0, 1].

    The noise is quantised to 256 levels (a random byte picks a Gaussian quantile, so values stay
    within ±2.7 std): ten times cheaper than drawing normals, and as good for this purpose.
    """
    images += _noise_table(float(std))[rng.integers(0, 256, images.shape, dtype=np.uint8)]
    np.clip(images, 0, 1, out=images)
    return images


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] → uint8 (rounded to nearest)."""
    scaled = images * np.float32(255)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def contrasting_colors(background: np.ndarray, rng: np.random.Generator,
                       min_contrast: float = MIN_CONTRAST) -> np.ndarray:
    """For each background colour (n, 3), a random RGB colour at least ``min_contrast`` away."""
    colors = rng.uniform(0, 1, background.shape)
    for _ in range(100):
        bad = np.linalg.norm(colors - background, axis=1) < min_contrast
        if not bad.any():
            return colors
        colors[bad] = rng.uniform(0, 1, (int(bad.sum()), 3))
    # practically unreachable: the complement of a colour is always far enough
    colors[bad] = np.where(background[bad] < 0.5, 1.0, 0.0)
    return colors


def make_shapes(n: int, seed: int, *, image_size: int = IMAGE_SIZE, classes: Sequence[str] = SHAPE_CLASSES,
                background: bool = False, size_range: tuple[float, float] | None = None,
                noise: float = NOISE_STD) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of one shape each, deterministic from ``seed``.

    Args:
        n: number of images; labels are balanced (``n // classes`` each, the first ``n % classes``
            classes one more) and in random order.
        seed: seed of the ``np.random.Generator`` that draws everything.
        image_size: S for S×S×3 images. Sizes and positions scale with it.
        classes: which shapes, by name; label ``i`` is ``classes[i]``.
        background: add a class ``len(classes)`` (:data:`BACKGROUND`): half of its images are
            empty backgrounds, half show a shape whose centre lies outside the image, so that only
            part of it is visible.
        size_range: shape radius range in pixels; default :data:`SIZE_RANGE` scaled by S/32.
        noise: standard deviation of the pixel noise (0–1 scale).

    Returns:
        ``(x, y)``: x uint8 (n, S, S, 3), y int64 (n,).
    """
    names = list(classes)
    unknown = [c for c in names if c not in SHAPE_CLASSES]
    if unknown or not names:
        raise UserInputError(f"make_shapes: unknown shape class(es) {unknown or names}; "
                             f"expected names from {', '.join(SHAPE_CLASSES)}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise UserInputError(f"make_shapes: n must be a whole number >= 0. Received: n={n!r}")
    S = int(image_size)
    if S < 8:
        raise UserInputError(f"make_shapes: image_size must be at least 8 pixels. Received: {image_size}")
    lo, hi = size_range if size_range is not None else (SIZE_RANGE[0] * S / 32, SIZE_RANGE[1] * S / 32)
    if not 0 < lo <= hi <= S / 2:
        raise UserInputError(f"make_shapes: size_range must satisfy 0 < low <= high <= {S / 2} "
                             f"(half the image). Received: {size_range}")
    rng = np.random.default_rng(seed)
    k = len(names) + int(background)
    y = rng.permutation(np.arange(n) % k).astype(np.int64)
    # Every image draws the same parameters, in this order, whatever its class.
    size = rng.uniform(lo, hi, n)
    cx = size + rng.uniform(0, 1, n) * (S - 2 * size)             # whole shape inside
    cy = size + rng.uniform(0, 1, n) * (S - 2 * size)
    angle = rng.uniform(0, 2 * math.pi, n)
    kind = y.copy()
    if background:
        empty = rng.uniform(0, 1, n) < 0.5
        other = rng.integers(0, len(names), n)
        away = S / 2 + size * rng.uniform(0.0, 0.7, n)            # centre on or beyond the border
        theta = rng.uniform(0, 2 * math.pi, n)
        is_bg = y == len(names)
        cx = np.where(is_bg, S / 2 + away * np.cos(theta), cx)
        cy = np.where(is_bg, S / 2 + away * np.sin(theta), cy)
        kind = np.where(is_bg, np.where(empty, -1, other), y)
    x = np.empty((n, S, S, 3), np.uint8)
    xs, ys = _pixel_centres(S, S)                                   # (1, S·S) each
    for start in range(0, n, _CHUNK):
        part = slice(start, min(n, start + _CHUNK))
        m = part.stop - part.start
        canvas, base = _backgrounds(S, S, rng, m)                   # (m, 3, S·S)
        colors = contrasting_colors(base, rng).astype(np.float32)
        alpha = np.zeros((m, 1, S * S), np.float32)                 # 0 where there is no shape
        for label, name in enumerate(names):
            idx = np.flatnonzero(kind[part] == label)
            if idx.size:
                g = idx + start
                alpha[idx, 0] = coverage(name, xs, ys, cx[g, None], cy[g, None], size[g, None], angle[g, None])
        canvas += alpha * (colors[:, :, None] - canvas)             # alpha blend
        u8 = to_uint8(add_noise(canvas, rng, noise))                # (m, 3, S·S)
        x[part] = u8.reshape(m, 3, S, S).transpose(0, 2, 3, 1)      # (m, S, S, 3)
    return x, y


def load_shapes(split: str = "train"):
    """The ``shapes`` dataset's fixed ``train`` (12,000 images) or ``test`` (1,200) split."""
    from . import Dataset

    if split == "train":
        x, y = make_shapes(TRAIN_SIZE, TRAIN_SEED)
    elif split == "test":
        x, y = make_shapes(TEST_SIZE, TEST_SEED)
    else:
        raise UserInputError(f"shapes: unknown split {split!r}; expected 'train' or 'test'")
    return Dataset(x, y, list(SHAPE_CLASSES), "shapes")


__all__ = ["SHAPE_CLASSES", "BACKGROUND", "Shape", "POLYGONS", "coverage", "draw_shape", "noisy_background",
           "add_noise", "to_uint8", "contrasting_colors", "make_shapes", "load_shapes",
           "TRAIN_SEED", "TEST_SEED", "TRAIN_SIZE", "TEST_SIZE"]
