"""Shared pieces of the pictures: the :class:`Picture` type, grids of cells, text, PNG files.

Every picture cnnkit draws is a :class:`Picture`: an RGB ``uint8`` array plus, for grids, where
each cell's unscaled content sits, so a test (or a curious user) can read back the exact pixels
of one activation map or filter. Pillow and matplotlib are imported inside the functions that
use them, so ``import cnnkit`` stays fast.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

BACKGROUND = (255, 255, 255)
INK = (34, 34, 34)
MUTED = (110, 110, 110)
FRAME = (190, 190, 190)
GAP = 6  # pixels between cells
MARGIN = 12  # pixels around the picture


@dataclass
class Picture:
    """An RGB image (``uint8``, shape (H, W, 3)) and the boxes of its cells.

    Attributes:
        image: the pixels.
        cells: ``key -> (top, left, height, width, zoom)``: the cell's content before zooming is
            ``height × width``; it is drawn at ``zoom`` times its size (nearest neighbour), so its
            value at (i, j) is ``image[top + i*zoom, left + j*zoom]``.
    """

    image: np.ndarray
    cells: dict[tuple, tuple[int, int, int, int, int]] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.shape[1], self.image.shape[0]

    def cell(self, key: tuple) -> np.ndarray:
        """The unzoomed content of one cell, read back from the pixels: (height, width, 3)."""
        top, left, h, w, z = self.cells[key]
        return self.image[top:top + h * z:z, left:left + w * z:z]

    def png(self) -> bytes:
        """The picture as PNG bytes."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.image, "RGB").save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        """Write a PNG file (atomically: temporary file, fsync, rename); returns the path."""
        return write_atomic(path, self.png())


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsynced and renamed.

    The file gets the usual permissions (0666 less the umask), like any file ``open`` creates.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@functools.lru_cache(maxsize=None)
def _font_file() -> str | None:
    """DejaVu Sans as shipped with matplotlib (it has →, ×, ∂ …), found without importing it."""
    spec = importlib.util.find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return str(path)
    return None


@functools.lru_cache(maxsize=None)
def font(size: int = 13):
    """DejaVu Sans at ``size`` pixels (Pillow's bundled font if matplotlib's copy is missing)."""
    from PIL import ImageFont

    path = _font_file()
    if path:
        return ImageFont.truetype(path, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sizes
        return ImageFont.load_default()


def text_box(text: str, size: int = 13) -> tuple[int, int]:
    """(width, height) of ``text`` in :func:`font` ``(size)``."""
    left, top, right, bottom = font(size).getbbox(text or " ")
    return right, max(bottom, size)


def zoom_for(h: int, w: int, target: int = 56, limit: int = 16) -> int:
    """Integer zoom so that an ``h × w`` cell is drawn about ``target`` pixels on its longer side."""
    return int(max(1, min(limit, round(target / max(h, w, 1)))))


def to_rgb(cell: np.ndarray) -> np.ndarray:
    """(h, w) grey or (h, w, 1|3) → (h, w, 3) uint8."""
    cell = np.asarray(cell)
    if cell.dtype != np.uint8:
        raise TypeError(f"cells must be uint8, received {cell.dtype}")
    if cell.ndim == 2:
        cell = cell[:, :, None]
    if cell.shape[2] == 1:
        cell = np.repeat(cell, 3, axis=2)
    return cell


@dataclass
class Section:
    """One titled block of equally sized cells, ``columns`` per row.

    ``cells`` are ``(key, uint8 array, caption or None)``; ``row_labels`` (optional) go left of
    each row, ``col_labels`` above the first row, ``note`` (optional) under the title in grey.
    """

    title: str
    cells: list[tuple[tuple, np.ndarray, str | None]]
    columns: int
    zoom: int = 1
    row_labels: Sequence[str] | None = None
    col_labels: Sequence[str] | None = None
    note: str | None = None


def compose(sections: Sequence[Section], title: str | None = None, title_size: int = 16,
            min_width: int = 0) -> Picture:
    """Lay the sections out top to bottom on white and return the :class:`Picture`."""
    from PIL import Image, ImageDraw

    heading, small = 14, 12
    # ---- measure
    plans = []
    width = max(min_width, 2 * MARGIN + (text_box(title, title_size)[0] if title else 0))
    y = MARGIN + (text_box(title, title_size)[1] + 10 if title else 0)
    for sec in sections:
        y_title = y
        y += text_box(sec.title, heading)[1] + 4
        y_note = y
        if sec.note:
            y += text_box(sec.note, small)[1] + 4
        y_cols = y
        if sec.col_labels and sec.cells:
            y += text_box("Ag", small)[1] + 3
        if not sec.cells:
            plans.append((sec, y_title, y_note, y_cols, 0, 0, 0, 0))
            y += 10
            continue
        ch, cw = sec.cells[0][1].shape[:2]
        z = sec.zoom
        label_w = max((text_box(t, small)[0] for t in sec.row_labels or ()), default=0)
        label_w = label_w + 8 if label_w else 0
        cap_h = text_box("Ag", small)[1] + 3 if any(c[2] for c in sec.cells) else 0
        cap_w = max((text_box(c[2], small)[0] for c in sec.cells if c[2]), default=0)
        col_w = max(cw * z + 2, cap_w + 8 if cap_w else 0) + GAP
        row_h = ch * z + 2 + cap_h + GAP
        cols = max(1, min(sec.columns, len(sec.cells)))
        rows = -(-len(sec.cells) // cols)
        plans.append((sec, y_title, y_note, y_cols, label_w, col_w, row_h, y))
        width = max(width, 2 * MARGIN + label_w + cols * col_w,
                    2 * MARGIN + text_box(sec.title, heading)[0],
                    2 * MARGIN + (text_box(sec.note, small)[0] if sec.note else 0))
        y += rows * row_h + 10
    height = y + MARGIN - 10
    # ---- draw
    canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
    cells: dict[tuple, tuple[int, int, int, int, int]] = {}
    for sec, _, _, _, label_w, col_w, row_h, y0 in plans:
        if not sec.cells:
            continue
        z = sec.zoom
        cols = max(1, min(sec.columns, len(sec.cells)))
        for i, (key, arr, _cap) in enumerate(sec.cells):
            arr = to_rgb(arr)
            r, c = divmod(i, cols)
            top, left = y0 + r * row_h + 1, MARGIN + label_w + c * col_w + 1
            h, w = arr.shape[:2]
            canvas[top - 1:top + h * z + 1, left - 1:left + w * z + 1] = FRAME
            # nearest-neighbour zoom: (h, w, 3) -> (h*z, w*z, 3)
            canvas[top:top + h * z, left:left + w * z] = np.repeat(np.repeat(arr, z, axis=0), z, axis=1)
            cells[key] = (top, left, h, w, z)
    img = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((MARGIN, MARGIN), title, fill=INK, font=font(title_size))
    for sec, y_title, y_note, y_cols, label_w, col_w, row_h, y0 in plans:
        draw.text((MARGIN, y_title), sec.title, fill=INK, font=font(heading))
        if sec.note:
            draw.text((MARGIN, y_note), sec.note, fill=MUTED, font=font(small))
        if not sec.cells:
            continue
        cols = max(1, min(sec.columns, len(sec.cells)))
        ch = sec.cells[0][1].shape[0] * sec.zoom + 2
        for i, (_key, _arr, cap) in enumerate(sec.cells):
            if cap:
                r, c = divmod(i, cols)
                draw.text((MARGIN + label_w + c * col_w, y0 + r * row_h + ch + 2), cap, fill=MUTED, font=font(small))
        for c, label in enumerate(sec.col_labels or ()):
            tw = text_box(label, small)[0]
            cw = sec.cells[0][1].shape[1] * sec.zoom + 2
            draw.text((MARGIN + label_w + c * col_w + max(0, (cw - tw) // 2), y_cols), label, fill=MUTED,
                      font=font(small))
        for r, label in enumerate(sec.row_labels or ()):
            draw.text((MARGIN, y0 + r * row_h + max(0, (ch - small) // 2)), label, fill=MUTED, font=font(small))
    out = np.asarray(img, dtype=np.uint8).copy()
    # Text never overlaps cells, but re-paste them so their pixels are exactly the data.
    for sec in sections:
        for key, arr, _cap in sec.cells:
            top, left, h, w, z = cells[key]
            out[top:top + h * z, left:left + w * z] = np.repeat(np.repeat(to_rgb(arr), z, axis=0), z, axis=1)
    return Picture(out, cells)


def new_figure(width: float, height: float, dpi: int = 100):
    """A matplotlib Figure on its own Agg canvas: no pyplot, no global backend switch, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_picture(fig) -> Picture:
    """Render a figure from :func:`new_figure` to a :class:`Picture`."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # (H, W, 4)
    return Picture(np.ascontiguousarray(rgba[:, :, :3]))


def colormap(values: np.ndarray, name: str = "inferno") -> np.ndarray:
    """Map ``values`` in [0, 1] to RGB uint8 through a matplotlib colormap (256-entry table)."""
    import matplotlib

    lut = (matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    idx = np.clip(np.floor(np.asarray(values, np.float64) * 255 + 0.5), 0, 255).astype(np.intp)
    return lut[idx]
