"""Images → arrays: the one conversion rule shared by image folders, ``cnnkit predict`` and
``Sequential.predict_images``.

The rule, applied to every image file (or Pillow image, or array) in this order:

1. **Read** with Pillow; an animated image gives its first frame; the EXIF orientation tag of
   photos is applied (``ImageOps.exif_transpose``). A file Pillow cannot read is refused with
   :class:`~cnnkit.errors.ImageError` naming the file.
2. **Bit depth**: 16-bit images (``I;16`` modes, and ``I`` holding values up to 65,535) are
   reduced to 8 bits by taking the high byte (``v >> 8``); ``I`` images whose values fit 8 bits
   are used as they are; floating-point (``F``) and wider integer images are refused.
3. **Channels** to the target count ``C``: transparency is flattened onto **black**
   (``v·alpha/255``); then ``C = 1`` takes the ITU-R 601-2 luma (Pillow's ``convert("L")``:
   ``L = 0.299 R + 0.587 G + 0.114 B``), ``C = 3`` gives RGB (grey replicated, palettes expanded,
   CMYK/YCbCr converted by Pillow). Other channel counts are refused.
4. **Size** to the target ``H×W`` when it differs, by ``resize``:
   ``"stretch"`` (default) resizes the whole image to H×W with Pillow's antialiased bilinear
   filter, ignoring the aspect ratio; ``"crop"`` first cuts the largest centred region of the
   target aspect ratio, then resizes it the same way; ``"error"`` refuses any other size.
5. **Values**: the uint8 (H, W, C) array is turned into the model's float input by the model
   file's ``preprocessing`` dict: ``x = (x_uint8·scale − mean) / std`` per channel, float32
   (:func:`apply_preprocessing`).

The target ``(H, W, C)`` is the model's input shape for ``predict``; for an image folder, the
shape asked for (e.g. the model's), or else the first image's size and channel count (1 when it is
greyscale, 3 otherwise; sorted order: first class folder, first file name).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ImageError

RESIZE_RULES = ("stretch", "crop", "error")
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
ImageLike = Any  # a path, a PIL.Image.Image, or a uint8 array (H, W) / (H, W, C)


def open_image(path: str | os.PathLike):
    """Open an image file fully (first frame, EXIF orientation applied); ImageError if unreadable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such image file")
    try:
        with Image.open(p) as img:
            img.seek(0)
            img.load()
            out = ImageOps.exif_transpose(img)
            return img.copy() if out is None or out is img else out
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image Pillow can read (expected PNG, JPEG, BMP, GIF, TIFF, WebP …)") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise ImageError(f"{p}: cannot decode the image ({e})") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{p}: refused: {e}") from None


def natural_channels(img) -> int:
    """1 for a greyscale Pillow image, 3 otherwise (the rule for a folder's first image)."""
    return 1 if img.mode in GREY_MODES else 3


def _to_8bit(img, where: str):
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img)
        hi = int(a.max()) if a.size else 0
        if mode == "I" and (a.min() < 0 or hi > 65535):
            raise ImageError(f"{where}: 32-bit integer image with values {int(a.min())}..{hi}; "
                             "expected 8- or 16-bit (convert it to 8-bit PNG or JPEG)")
        if mode == "I" and hi <= 255:
            return Image.fromarray(a.astype(np.uint8))
        return Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8))
    if mode == "F":
        raise ImageError(f"{where}: floating-point image (mode F) is not supported; convert it to 8-bit")
    return img


def _flatten_alpha(img):
    """Transparency composited onto black: v·alpha/255 (rounded)."""
    from PIL import Image

    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        base = "L" if img.mode in ("LA", "La") else "RGB"
        a = np.asarray(img.convert("LA" if base == "L" else "RGBA"), dtype=np.uint16)
        color, alpha = a[..., :-1], a[..., -1:]
        flat = ((color * alpha + 127) // 255).astype(np.uint8)  # round(v·alpha/255)
        return Image.fromarray(flat[..., 0] if base == "L" else flat, base)
    return img


def _resize(img, height: int, width: int, rule: str, where: str):
    from PIL import Image

    if img.size == (width, height):
        return img
    if rule == "error":
        raise ImageError(f"{where}: image is {img.size[1]}x{img.size[0]} (HxW), expected {height}x{width}; "
                         "resize it, or use resize='stretch' or 'crop'")
    if rule == "crop":
        w, h = img.size
        # the largest centred box of aspect width/height
        if w * height > h * width:  # too wide
            new_w = max(1, round(h * width / height))
            left = (w - new_w) // 2
            img = img.crop((left, 0, left + new_w, h))
        elif w * height < h * width:  # too tall
            new_h = max(1, round(w * height / width))
            top = (h - new_h) // 2
            img = img.crop((0, top, w, top + new_h))
    return img.resize((width, height), Image.Resampling.BILINEAR)


def to_array(image: ImageLike, shape: Sequence[int], resize: str = "stretch", where: str | None = None) -> np.ndarray:
    """Convert one image to a uint8 array ``(H, W, C)`` by the module's rule.

    Args:
        image: a file path, a Pillow image, or a uint8 array (H, W) or (H, W, C) with C in 1, 3, 4.
        shape: the target (H, W, C); C must be 1 or 3.
        resize: ``"stretch"``, ``"crop"`` or ``"error"`` (see the module docstring).
        where: a name for messages (default: the path, or "image").

    Returns:
        A new uint8 array of ``shape``.

    Example:
        >>> to_array(np.full((2, 4, 3), 200, np.uint8), (2, 2, 1)).shape
        (2, 2, 1)
    """
    if resize not in RESIZE_RULES:
        raise ImageError(f"resize must be one of {', '.join(RESIZE_RULES)}. Received: {resize!r}")
    height, width, channels = (int(s) for s in shape)
    if channels not in (1, 3):
        raise ImageError(f"images can be converted to 1 (greyscale) or 3 (RGB) channels; the target "
                         f"shape {height}x{width}x{channels} has {channels}")
    if isinstance(image, (str, os.PathLike)):
        where = where or str(image)
        img = open_image(image)
    elif isinstance(image, np.ndarray):
        where = where or "image array"
        img = _array_image(image, where)
    elif hasattr(image, "mode") and hasattr(image, "convert"):
        where = where or "image"
        img = image
    else:
        raise ImageError(f"expected an image path, a PIL image or a uint8 array. Received: {type(image).__name__}")
    img = _flatten_alpha(_to_8bit(img, where))
    try:
        img = img.convert("L" if channels == 1 else "RGB")
    except ValueError as e:
        raise ImageError(f"{where}: cannot convert an image of mode {img.mode} to "
                         f"{'greyscale' if channels == 1 else 'RGB'} ({e})") from None
    img = _resize(img, height, width, resize, where)
    x = np.asarray(img, dtype=np.uint8)
    return x.reshape(height, width, channels).copy()


def _array_image(a: np.ndarray, where: str):
    from PIL import Image

    if a.dtype != np.uint8:
        raise ImageError(f"{where}: expected a uint8 array (values 0-255), received dtype {a.dtype}; "
                         "for float data already preprocessed use model.predict(x)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return Image.fromarray(a, "L")
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[2] == 3 else "RGBA")
    raise ImageError(f"{where}: expected an array (H, W) or (H, W, C) with C in 1, 3, 4; received {a.shape}")


def apply_preprocessing(x: np.ndarray, preprocessing: dict[str, Any] | None, dtype=np.float32) -> np.ndarray:
    """uint8 images (N, H, W, C) → model input: ``(x·scale − mean) / std`` per channel.

    ``preprocessing`` is the model file's dict ``{"scale", "mean", "std"}`` (each key optional:
    scale 1, mean 0, std 1); None means the default scale 1/255 with no mean or std.
    Float input is taken as already preprocessed and only cast to ``dtype``.

    Example:
        >>> apply_preprocessing(np.array([[[[255]]]], np.uint8), {"scale": 1/255, "mean": [0.5], "std": [0.5]})
        array([[[[1.]]]], dtype=float32)
    """
    x = np.asarray(x)
    dtype = np.dtype(dtype)
    if x.dtype.kind == "f":
        return x.astype(dtype, copy=False)
    prep = preprocessing if preprocessing is not None else {"scale": 1 / 255}
    out = x.astype(dtype)
    out *= dtype.type(prep.get("scale", 1.0))
    c = x.shape[-1]
    for key, op in (("mean", np.subtract), ("std", np.divide)):
        value = prep.get(key)
        if value is None:
            continue
        v = np.asarray(value, dtype=dtype).reshape(-1)
        if v.size not in (1, c):
            raise ImageError(f"preprocessing {key!r} has {v.size} values; the images have {c} channels")
        op(out, v, out=out)
    return out


def images_to_batch(images: ImageLike | Sequence[ImageLike], shape: Sequence[int], resize: str = "stretch",
                    ) -> tuple[np.ndarray, list[str]]:
    """Several images (paths, Pillow images, arrays; or one array (N, H, W, C)) → uint8
    ``(N, H, W, C)`` by :func:`to_array`, and a name for each."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        items: list = list(images)
    elif isinstance(images, (str, os.PathLike, np.ndarray)) or hasattr(images, "mode"):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ImageError("no images given")
    names = [str(it) if isinstance(it, (str, os.PathLike)) else f"image {i}" for i, it in enumerate(items)]
    batch = np.stack([to_array(it, shape, resize, where=n) for it, n in zip(items, names)])
    return batch, names


def predict_images(model, images: ImageLike | Sequence[ImageLike], top_k: int = 5, resize: str = "stretch",
                   batch_size: int = 256) -> list[list[tuple[str, float]]]:
    """Top-k ``(class name, probability)`` per image, most probable first: each image converted to
    the model's input shape by :func:`to_array`, then the model's ``preprocessing`` applied."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ImageError(f"top_k must be a positive integer. Received: top_k={top_k!r}")
    if model.input_shape is None or len(model.input_shape) != 3:
        raise ImageError(f"{model.name}: predict_images needs a model built for images (H, W, C); "
                         f"its input shape is {model.input_shape}")
    batch, _ = images_to_batch(images, model.input_shape, resize)
    probs = model.predict(apply_preprocessing(batch, model.preprocessing, model.dtype), batch_size)
    probs = probs.reshape(len(batch), -1)
    k = min(int(top_k), probs.shape[1])
    names = list(model.class_names or [])
    names += [str(i) for i in range(len(names), probs.shape[1])]
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(names[j], float(p[j])) for j in row] for p, row in zip(probs, order)]

__all__ = ["to_array", "open_image", "apply_preprocessing", "images_to_batch", "predict_images", "natural_channels",
           "RESIZE_RULES"]
