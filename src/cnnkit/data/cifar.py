"""CIFAR-10 from its *binary* version (``cifar-10-batches-bin/``); nothing here unpickles.

Layout (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"): ``data_batch_1.bin`` …
``data_batch_5.bin`` (training, 10,000 images each) and ``test_batch.bin`` (10,000), each a run of
3,073-byte records: 1 label byte (0-9), then 1,024 red, 1,024 green and 1,024 blue bytes, each
plane a 32×32 image in row-major order. ``batches.meta.txt`` lists the class names, one a line.

Where the files come from, in order:

* ``data_dir`` (``--data-dir``): a folder holding ``cifar-10-batches-bin/`` (or that folder itself).
* otherwise the cache ``cache_dir/cifar10/cifar-10-batches-bin/`` (default ``~/.cache/cnnkit``):
  when missing, ``cifar-10-binary.tar.gz`` is downloaded and checked against the MD5 its
  publisher gives and against its member list, then only the expected regular files are
  extracted (no links, no paths outside the folder) into a temporary folder that is renamed into
  place once every batch has been read back and validated. The archive is then deleted.

Every batch is checked: a whole number of records, exactly 10,000 of them, labels 0-9. (The
publisher gives no checksum of the extracted files, so these structural checks are what a local
copy gets.)
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .download import RemoteFile, default_cache_dir, download

FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
RECORD_BYTES = 1 + 32 * 32 * 3
RECORDS_PER_BATCH = 10_000
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

ARCHIVE = RemoteFile(
    "cifar-10-binary.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    md5="c32a1d4ab5d03f1284b67883e8d87530",  # published on the page above
)


def parse_batch(data: bytes, where: str, records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch → (x uint8 (N, 32, 32, 3), y int64 (N,)).

    Example:
        >>> rec = bytes([3]) + bytes(range(256)) * 12
        >>> x, y = parse_batch(rec, "batch")
        >>> x.shape, y.tolist(), int(x[0, 0, 1, 0]), int(x[0, 0, 0, 1])  # R plane then G plane
        ((1, 32, 32, 3), [3], 1, 0)
    """
    if len(data) == 0 or len(data) % RECORD_BYTES:
        raise DatasetError(f"{where}: {len(data):,} bytes is not a whole number of {RECORD_BYTES:,}-byte CIFAR-10 "
                           f"records (label + 32x32x3); the file is truncated or not a CIFAR-10 binary batch")
    n = len(data) // RECORD_BYTES
    if records is not None and n != records:
        raise DatasetError(f"{where}: {n:,} records, expected {records:,}; the file is truncated or another dataset")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(n, RECORD_BYTES)
    y = rec[:, 0].astype(np.int64)
    if y.max() >= len(CLASS_NAMES):
        bad = int(np.argmax(y >= len(CLASS_NAMES)))
        raise DatasetError(f"{where}: record {bad} has label {int(y[bad])}, expected 0-9; "
                           "is this the CIFAR-100 or the Python version?")
    # (N, 3072) -> (N, 3, 32, 32) planes -> (N, 32, 32, 3) channels last
    x = rec[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return x, y


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None


def read_class_names(folder: Path) -> list[str]:
    """Names from ``batches.meta.txt`` when present and sensible, else the standard ten."""
    meta = folder / META_FILE
    if meta.is_file():
        names = [line.strip() for line in meta.read_text(errors="replace").splitlines() if line.strip()]
        if len(names) == len(CLASS_NAMES):
            return names
    return list(CLASS_NAMES)


def _batches_folder(data_dir: Path) -> Path:
    for candidate in (data_dir / FOLDER, data_dir):
        if (candidate / TEST_FILES[0]).is_file() or (candidate / TRAIN_FILES[0]).is_file():
            return candidate
    raise DatasetError(f"--data-dir {data_dir}: no {FOLDER}/ with {TRAIN_FILES[0]} … {TEST_FILES[0]} "
                       "(the binary version of CIFAR-10, cifar-10-binary.tar.gz, extracted)")


def _safe_members(tar: tarfile.TarFile, where: str) -> dict[str, tarfile.TarInfo]:
    """The archive's expected members, refusing links and odd paths."""
    wanted = {f"{FOLDER}/{name}" for name in (*TRAIN_FILES, *TEST_FILES, META_FILE)}
    found = {}
    for m in tar.getmembers():
        if m.name in wanted:
            if not m.isreg():
                raise DatasetError(f"{where}: member {m.name} is not a regular file; refusing to extract")
            found[m.name] = m
    missing = sorted(n for n in wanted if n not in found and not n.endswith(META_FILE))
    if missing:
        raise DatasetError(f"{where}: missing {', '.join(missing)}; not the CIFAR-10 binary archive")
    for name in (*TRAIN_FILES, *TEST_FILES):
        m = found[f"{FOLDER}/{name}"]
        if m.size != RECORDS_PER_BATCH * RECORD_BYTES:
            raise DatasetError(f"{where}: {m.name} is {m.size:,} bytes, expected {RECORDS_PER_BATCH * RECORD_BYTES:,}")
    return found


def _verify_archive(path: Path) -> None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            _safe_members(tar, str(path))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{path}: corrupt archive ({e})") from None


def extract_archive(archive: Path, root: Path) -> Path:
    """Extract the batches of ``archive`` into ``root/cifar-10-batches-bin`` atomically."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for name, member in _safe_members(tar, str(archive)).items():
                    src = tar.extractfile(member)
                    if src is None:
                        raise DatasetError(f"{archive}: cannot read member {name}")
                    out_path = tmp / FOLDER / Path(name).name
                    out_path.parent.mkdir(exist_ok=True)
                    with src, open(out_path, "wb") as out:
                        shutil.copyfileobj(src, out)
                        out.flush()
                        os.fsync(out.fileno())
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetError(f"{archive}: corrupt archive ({e})") from None
        for name in (*TRAIN_FILES, *TEST_FILES):
            parse_batch(_read(tmp / FOLDER / name), f"{archive}:{name}", RECORDS_PER_BATCH)
        final = root / FOLDER
        os.replace(tmp / FOLDER, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def locate(data_dir=None, cache_dir=None, *, download_missing: bool = True, progress: bool = True) -> Path:
    """The ``cifar-10-batches-bin`` folder, downloading and extracting it into the cache if needed."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise DatasetError(f"--data-dir {folder}: no such folder (expected one holding {FOLDER}/)")
        return _batches_folder(folder)
    root = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "cifar10"
    if (root / FOLDER).is_dir():
        return root / FOLDER
    if not download_missing:
        raise DatasetError(f"{root}: no {FOLDER}/ and downloads are off")
    archive = download(ARCHIVE, root, verify=_verify_archive, progress=progress)
    folder = extract_archive(archive, root)
    archive.unlink()
    return folder


def load_cifar10(split: str = "train", data_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, *, download_missing: bool = True,
                 progress: bool = True):
    """CIFAR-10 as a :class:`~cnnkit.data.Dataset`.

    Args:
        split: ``"train"`` (50,000 images, batches 1-5 in order) or ``"test"`` (10,000).
        data_dir: a folder holding ``cifar-10-batches-bin/``; None uses the cache.
        cache_dir: the download cache (default ``~/.cache/cnnkit``).

    Shape:
        x: (N, 32, 32, 3) uint8 RGB; y: (N,) int64 in 0..9.

    Raises:
        DatasetError: missing, truncated or malformed batches; DownloadError for failed downloads.
    """
    if split not in ("train", "test"):
        raise DatasetError(f"cifar10: unknown split {split!r}; expected 'train' or 'test'")
    folder = locate(data_dir, cache_dir, download_missing=download_missing, progress=progress)
    files = TRAIN_FILES if split == "train" else TEST_FILES
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DatasetError(f"{folder}: missing {', '.join(missing)}")
    xs, ys = [], []
    for name in files:
        try:
            x, y = parse_batch(_read(folder / name), str(folder / name), RECORDS_PER_BATCH)
        except DatasetError as e:
            if data_dir is None:  # a damaged cache: say how to get a good one
                raise DatasetError(f"{e}; delete {folder} to download it again") from None
            raise
        xs.append(x)
        ys.append(y)
    from . import Dataset

    return Dataset(np.concatenate(xs), np.concatenate(ys), read_class_names(folder), "cifar10")


__all__ = ["load_cifar10", "parse_batch", "extract_archive", "CLASS_NAMES", "ARCHIVE"]
