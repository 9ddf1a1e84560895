"""MNIST/Fashion-MNIST: the real files from ../shared/data/mnist (skipped with the reason when
absent) and small synthetic IDX files for every header check, truncation and corrupt archive."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import mnist
from cnnkit.errors import DatasetError

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # CHECKSUMS.md
needs_mnist = pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason=f"real MNIST not found at {SHARED_MNIST}")


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(folder: Path, split: str, n: int = 5, rng=None, compress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    img_stem, lbl_stem = mnist.STEMS[split]
    for stem, arr in ((img_stem, x), (lbl_stem, y)):
        data = idx_bytes(arr)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return x, y


# ----------------------------------------------------------------------------- real files
@needs_mnist
def test_real_test_split_from_data_dir():
    ds = mnist.load_idx_dataset("mnist", "test", data_dir=SHARED_MNIST)
    assert ds.x.shape == (10_000, 28, 28, 1) and ds.x.dtype == np.uint8
    assert ds.y.shape == (10_000,) and ds.y.dtype == np.int64
    assert np.bincount(ds.y, minlength=10).tolist() == TEST_COUNTS
    assert ds.class_names == [str(d) for d in range(10)]
    assert ds.x.flags.writeable and ds.x.max() == 255 and ds.x.min() == 0


@needs_mnist
@pytest.mark.slow
def test_real_train_split_from_data_dir():
    ds = mnist.load_idx_dataset("mnist", "train", data_dir=SHARED_MNIST)
    assert ds.x.shape == (60_000, 28, 28, 1)
    assert np.bincount(ds.y, minlength=10).sum() == 60_000


@needs_mnist
def test_recompressed_and_uncompressed_copies_are_checked_by_content(tmp_path):
    """The .gz bytes may differ (other compression level) or the files be uncompressed: what is
    checked is the decompressed content."""
    raw = gzip.decompress((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(
        gzip.decompress((SHARED_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()))
    ds = mnist.load_idx_dataset("mnist", "test", data_dir=tmp_path)
    assert np.bincount(ds.y, minlength=10).tolist() == TEST_COUNTS


@needs_mnist
def test_altered_content_is_refused_by_sha256(tmp_path):
    raw = bytearray(gzip.decompress((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one wrong label: the header still parses
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    shutil.copy(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: decompressed content has SHA-256 \w+…, "
                                           r"the original mnist t10k-labels-idx1-ubyte has ff7bcfd416de3373…"):
        mnist.load_idx_dataset("mnist", "test", data_dir=tmp_path)


@needs_mnist
def test_cache_holding_the_files_needs_no_download(tmp_path):
    (tmp_path / "mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(SHARED_MNIST / name, tmp_path / "mnist")
    ds = mnist.load_idx_dataset("mnist", "test", cache_dir=tmp_path, download_missing=False)
    assert len(ds.y) == 10_000


# ----------------------------------------------------------------------------- synthetic files
def test_fashion_mnist_synthetic_files_round_trip(tmp_path, monkeypatch):
    monkeypatch.setitem(mnist.SPLIT_SIZES, "test", 7)
    x, y = write_split(tmp_path, "test", n=7)
    ds = mnist.load_idx_dataset("fashion-mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.x[..., 0], x)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


def test_fashion_mnist_wrong_count_is_refused(tmp_path):
    write_split(tmp_path, "test", n=7)
    with pytest.raises(DatasetError, match=r"7 images, the fashion-mnist test split has 10,000"):
        mnist.load_idx_dataset("fashion-mnist", "test", data_dir=tmp_path)


def test_synthetic_mnist_files_fail_the_content_check(tmp_path):
    write_split(tmp_path, "test")
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: decompressed content has SHA-256"):
        mnist.load_idx_dataset("mnist", "test", data_dir=tmp_path)


def test_parse_idx_reads_images_and_labels():
    x = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    out = mnist.parse_idx(idx_bytes(x), "images", ndim=3, item_shape=(28, 28))
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(np.array([3, 1, 4])), "labels", ndim=1), [3, 1, 4])


@pytest.mark.parametrize("data, message", [
    (b"", r"too short for an IDX header \(0 bytes\)"),
    (b"\x1f\x8b\x08\x00" + bytes(20), r"not an IDX file \(magic bytes 1f8b0800, expected 00000803\); is it still compressed"),
    (bytes([0, 0, 0x0D, 3]) + struct.pack(">3I", 1, 28, 28) + bytes(4 * 784), r"IDX value type 0x0d, expected 0x08"),
    (idx_bytes(np.zeros((2, 784))), r"IDX header announces 2 dimensions, expected 3"),
    (bytes([0, 0, 8, 3, 0, 0]), r"truncated IDX header \(6 of 16 bytes\)"),
    (idx_bytes(np.zeros((2, 32, 32))), r"IDX items are 32x32, expected 28x28"),
    (idx_bytes(np.zeros((3, 28, 28)))[:-100], r"truncated: the header announces 3 x 28 x 28 = 2,352 bytes of values, "
                                              r"the file holds 2,252"),
    (idx_bytes(np.zeros((3, 28, 28))) + b"xyz", r"3 bytes after the 2,352 the header announces"),
])
def test_corrupt_headers_are_refused(data, message):
    with pytest.raises(DatasetError, match=message):
        mnist.parse_idx(data, "images", ndim=3, item_shape=(28, 28))


def test_truncated_gzip_is_refused(tmp_path):
    write_split(tmp_path, "test")
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: truncated gzip archive"):
        mnist.load_idx_dataset("fashion-mnist", "test", data_dir=tmp_path)


def test_corrupt_gzip_is_refused(tmp_path):
    write_split(tmp_path, "test")
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(p.read_bytes())
    data[12:20] = b"\xff" * 8  # inside the deflate stream
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: (corrupt|truncated) gzip archive"):
        mnist.load_idx_dataset("fashion-mnist", "test", data_dir=tmp_path)


def test_gz_name_without_gzip_content_is_refused(tmp_path):
    write_split(tmp_path, "test", compress=False)
    (tmp_path / "t10k-images-idx3-ubyte").rename(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match=r"not a gzip file"):
        mnist.load_idx_dataset("fashion-mnist", "test", data_dir=tmp_path)


def test_missing_files_and_folder_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"--data-dir .*nowhere: no such folder"):
        mnist.load_idx_dataset("mnist", "test", data_dir=tmp_path / "nowhere")
    write_split(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing t10k-labels-idx1-ubyte.gz \(the standard mnist files\)"):
        mnist.load_idx_dataset("mnist", "test", data_dir=tmp_path)


def test_mismatched_counts_and_labels_out_of_range(tmp_path, monkeypatch):
    monkeypatch.setitem(mnist.SPLIT_SIZES, "test", 5)
    write_split(tmp_path, "test", n=5)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4))))
    with pytest.raises(DatasetError, match=r"holds 5 images but .*t10k-labels-idx1-ubyte.gz 4 labels"):
        mnist.load_idx_dataset("fashion-mnist", "test", data_dir=tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.array([0, 1, 12, 3, 4]))))
    with pytest.raises(DatasetError, match=r"label 12 out of range 0-9"):
        mnist.load_idx_dataset("fashion-mnist", "test", data_dir=tmp_path)


def test_no_download_when_off(tmp_path):
    with pytest.raises(DatasetError, match=r"missing train-images-idx3-ubyte.gz and downloads are off"):
        mnist.load_idx_dataset("mnist", "train", cache_dir=tmp_path, download_missing=False)


def test_damaged_cache_file_says_how_to_recover(tmp_path):
    (tmp_path / "mnist").mkdir()
    write_split(tmp_path / "mnist", "test")
    p = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DatasetError, match=r"truncated gzip archive .*; delete it to download it again"):
        mnist.load_idx_dataset("mnist", "test", cache_dir=tmp_path, download_missing=False)
