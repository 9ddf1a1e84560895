"""MNIST and Fashion-MNIST: the four IDX files, read with every header field checked.

Where the files come from, in order:

* ``data_dir`` (``--data-dir``): a folder holding the four standard files
  ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz`` (uncompressed copies without ``.gz`` are accepted too). Local
  copies may have been re-compressed, so they are checked by the SHA-256 of their *decompressed*
  content (recorded below), never by the bytes of the ``.gz``.
* otherwise the cache ``cache_dir/<name>/`` (default ``~/.cache/cnnkit``), downloading what is
  missing from the public mirrors in order: each download is checked against the publisher's MD5
  of the ``.gz`` *and* its decompressed content against the recorded SHA-256 before it is renamed
  into place (:mod:`cnnkit.data.download`).

IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian header ``0x00 0x00 <type> <ndim>``,
then ``ndim`` 32-bit sizes, then the values. We require type 0x08 (unsigned byte), ndim 3 for
images (N, 28, 28) and 1 for labels (N,), a payload of exactly the size the header announces,
equal counts of images and labels, and labels 0-9.

Content SHA-256 of the decompressed files: MNIST's are those of ``../shared/data/mnist/CHECKSUMS.md``
(the original files). Fashion-MNIST's publisher gives MD5s of the ``.gz`` only; we know no
published SHA-256 of its content, so local Fashion-MNIST copies are checked by structure (header,
counts 60,000/10,000, labels) and downloads by the publisher's MD5.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .download import RemoteFile, default_cache_dir, download

IDX_UBYTE = 0x08
MAX_IDX_BYTES = 256 * 1024 * 1024  # refuse to decompress more than this (a gzip bomb guard)
STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


@dataclass(frozen=True)
class IdxDataset:
    """Where one MNIST-format dataset comes from and how its files are checked.

    ``md5`` is the publisher's checksum of each ``.gz`` as served by the mirrors; ``content_sha256``
    (may be empty) the SHA-256 of the decompressed file.
    """

    name: str
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    gz_size: dict[str, int] = field(default_factory=dict)
    content_sha256: dict[str, str] = field(default_factory=dict)

    def remote(self, stem: str) -> RemoteFile:
        fname = f"{stem}.gz"
        return RemoteFile(fname, tuple(m + fname for m in self.mirrors), md5=self.md5[stem],
                          size=self.gz_size.get(stem))


# Mirrors and MD5s as published (MNIST: the original site publishes no checksum; the MD5s are the
# ones PyTorch's torchvision records for these exact files, its mirror first).
MNIST = IdxDataset(
    name="mnist",
    class_names=tuple(str(d) for d in range(10)),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/",
             "http://yann.lecun.com/exdb/mnist/"),
    md5={"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
    gz_size={"train-images-idx3-ubyte": 9_912_422, "train-labels-idx1-ubyte": 28_881,
             "t10k-images-idx3-ubyte": 1_648_877, "t10k-labels-idx1-ubyte": 4_542},
    content_sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
)

# https://github.com/zalandoresearch/fashion-mnist (README: URLs and MD5 of each file).
FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    md5={"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
)

VARIANTS = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}


# ------------------------------------------------------------------------- IDX reading
def parse_idx(data: bytes, where: str, ndim: int, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The array of an IDX file's bytes, after checking every header field.

    Args:
        data: the decompressed file.
        where: the file's name, for messages.
        ndim: the rank the header must announce (3 for images, 1 for labels).
        item_shape: sizes after the first the header must announce, e.g. (28, 28); None: any.

    Returns:
        uint8 array of the announced shape (a read-only view of ``data``).

    Raises:
        DatasetError: wrong magic, type, rank or sizes; a payload shorter (truncated) or longer
            than the header announces.

    Example:
        >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 3]), "labels", ndim=1)
        array([7, 3], dtype=uint8)
    """
    if len(data) < 4:
        raise DatasetError(f"{where}: too short for an IDX header ({len(data)} bytes); the file is truncated or empty")
    zero0, zero1, dtype_code, rank = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DatasetError(f"{where}: not an IDX file (magic bytes {data[:4].hex()}, expected 0000{IDX_UBYTE:02x}"
                           f"{ndim:02x}); is it still compressed or another format?")
    if dtype_code != IDX_UBYTE:
        raise DatasetError(f"{where}: IDX value type 0x{dtype_code:02x}, expected 0x08 (unsigned byte)")
    if rank != ndim:
        raise DatasetError(f"{where}: IDX header announces {rank} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{where}: truncated IDX header ({len(data)} of {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if item_shape is not None and dims[1:] != tuple(item_shape):
        raise DatasetError(f"{where}: IDX items are {'x'.join(map(str, dims[1:]))}, "
                           f"expected {'x'.join(map(str, item_shape))}")
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(data) - header
    if payload < expected:
        raise DatasetError(f"{where}: truncated: the header announces {' x '.join(map(str, dims))} = {expected:,} "
                           f"bytes of values, the file holds {payload:,}")
    if payload > expected:
        raise DatasetError(f"{where}: {payload - expected:,} bytes after the {expected:,} the header announces "
                           f"({' x '.join(map(str, dims))}); not a valid IDX file")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def read_maybe_gzip(path: Path, limit: int = MAX_IDX_BYTES) -> bytes:
    """The (decompressed, when the name ends in ``.gz`` or the bytes start with the gzip magic) content."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                data = f.read(limit + 1)
        elif path.suffix == ".gz":
            raise DatasetError(f"{path}: not a gzip file (it does not start with the gzip magic bytes 1f 8b)")
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(f"{path}: corrupt gzip archive ({e})") from None
    except EOFError:
        raise DatasetError(f"{path}: truncated gzip archive (it ends before the compressed stream does)") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise DatasetError(f"{path}: decompresses to more than {limit:,} bytes; not an MNIST-format file")
    return data


def _check_content(data: bytes, where: str, expected_sha256: str | None, dataset: str, stem: str) -> None:
    if expected_sha256 is None:
        return
    got = hashlib.sha256(data).hexdigest()
    if got != expected_sha256:
        raise DatasetError(f"{where}: decompressed content has SHA-256 {got[:16]}…, the original {dataset} "
                           f"{stem} has {expected_sha256[:16]}…; the file is damaged or another dataset")


def read_idx_file(path: Path, ndim: int, item_shape=None, content_sha256: str | None = None,
                  dataset: str = "", stem: str = "") -> np.ndarray:
    """Decompress (if gzip), validate the header and, if given, the content SHA-256; the array."""
    data = read_maybe_gzip(path)
    array = parse_idx(data, str(path), ndim, item_shape)  # structure first: the clearer message
    _check_content(data, str(path), content_sha256, dataset, stem)
    return array


# ------------------------------------------------------------------------- finding the files
def _find_local(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        p = folder / name
        if p.is_file():
            return p
    return None


def _content_verifier(spec: IdxDataset, stem: str):
    """verify(path) for download(): the decompressed content must parse and match its SHA-256."""
    ndim = 3 if "images" in stem else 1

    def verify(path: Path) -> None:
        read_idx_file(path, ndim, (28, 28) if ndim == 3 else None, spec.content_sha256.get(stem),
                      spec.name, stem)

    return verify


def locate(spec: IdxDataset, split: str, data_dir=None, cache_dir=None, *, download_missing: bool = True,
           progress: bool = True) -> tuple[Path, Path]:
    """Paths of the (images, labels) files of ``split``; downloads into the cache what is missing."""
    stems = STEMS[split]
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DatasetError(f"--data-dir {folder}: no such folder (expected one holding "
                               f"{', '.join(s + '.gz' for s in stems)})")
        found = [_find_local(folder, s) for s in stems]
        missing = [f"{s}.gz" for s, p in zip(stems, found) if p is None]
        if missing:
            raise DatasetError(f"--data-dir {folder}: missing {', '.join(missing)} "
                               f"(the standard {spec.name} files)")
        return found[0], found[1]  # type: ignore[return-value]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = folder / spec.name
    paths = []
    for stem in stems:
        p = _find_local(folder, stem)
        if p is None:
            if not download_missing:
                raise DatasetError(f"{folder}: missing {stem}.gz and downloads are off")
            p = download(spec.remote(stem), folder, verify=_content_verifier(spec, stem), progress=progress)
        paths.append(p)
    return paths[0], paths[1]


def load_idx_dataset(name: str = "mnist", split: str = "train", data_dir: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None, *, download_missing: bool = True,
                     progress: bool = True):
    """MNIST or Fashion-MNIST as a :class:`~cnnkit.data.Dataset`.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        split: ``"train"`` (60,000) or ``"test"`` (10,000).
        data_dir: a folder with the four standard files; None uses the cache.
        cache_dir: the download cache (default ``~/.cache/cnnkit``).
        download_missing: download missing cache files (never for ``data_dir``).
        progress: show download progress.

    Returns:
        Dataset with x uint8 (N, 28, 28, 1), y int64 (N,), the 10 class names.

    Shape:
        x: (N, 28, 28, 1) uint8, 0 = background; y: (N,) int64 in 0..9.

    Raises:
        DatasetError: missing, truncated, corrupt or mismatching files; DownloadError for
            failed downloads.
    """
    spec = VARIANTS[name]
    if split not in STEMS:
        raise DatasetError(f"{name}: unknown split {split!r}; expected 'train' or 'test'")
    images_path, labels_path = locate(spec, split, data_dir, cache_dir, download_missing=download_missing,
                                      progress=progress)
    images_stem, labels_stem = STEMS[split]
    try:
        x = read_idx_file(images_path, 3, (28, 28), spec.content_sha256.get(images_stem), spec.name, images_stem)
        y = read_idx_file(labels_path, 1, None, spec.content_sha256.get(labels_stem), spec.name, labels_stem)
    except DatasetError as e:
        if data_dir is None:  # a damaged cache file: say how to get a good one
            raise DatasetError(f"{e}; delete it to download it again") from None
        raise
    if len(x) != len(y):
        raise DatasetError(f"{images_path} holds {len(x):,} images but {labels_path} {len(y):,} labels")
    if not spec.content_sha256 and len(x) != SPLIT_SIZES[split]:
        raise DatasetError(f"{images_path}: {len(x):,} images, the {spec.name} {split} split has "
                           f"{SPLIT_SIZES[split]:,}")
    if y.size and int(y.max()) >= len(spec.class_names):
        raise DatasetError(f"{labels_path}: label {int(y.max())} out of range 0-{len(spec.class_names) - 1}")
    # (N, 28, 28) -> (N, 28, 28, 1): channels last; a writable copy (the bytes are freed)
    x = x.reshape(*x.shape, 1).copy()
    from . import Dataset

    return Dataset(x, y.astype(np.int64), list(spec.class_names), spec.name)


__all__ = ["MNIST", "FASHION_MNIST", "VARIANTS", "parse_idx", "read_idx_file", "load_idx_dataset", "locate"]
