"""CIFAR-10 binary version, on synthetic batches (a few records each) and synthetic archives
served from 127.0.0.1: layout, class names, every structural check, safe extraction."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnkit.data import cifar
from cnnkit.errors import DatasetError, DownloadError

N = 4  # records per synthetic batch


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    monkeypatch.setattr(cifar, "RECORDS_PER_BATCH", N)
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def batch_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    """Records: label, then the R, G and B planes (row-major), as the CIFAR-10 page describes."""
    planes = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # (N, 32, 32, 3) -> (N, 3·1024) R G B
    return np.concatenate([y.astype(np.uint8)[:, None], planes], axis=1).astype(np.uint8).tobytes()


def make_batches(folder: Path, rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in (*cifar.TRAIN_FILES, *cifar.TEST_FILES):
        x = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, N)
        (folder / name).write_bytes(batch_bytes(x, y))
        out[name] = (x, y)
    (folder / cifar.META_FILE).write_text("\n".join(cifar.CLASS_NAMES) + "\n\n")
    return out


def test_record_layout_is_label_then_red_green_blue_planes():
    rec = bytearray(cifar.RECORD_BYTES)
    rec[0] = 7
    rec[1 + 0 * 1024 + 5] = 11      # R at row 0, column 5
    rec[1 + 1 * 1024 + 32] = 22     # G at row 1, column 0
    rec[1 + 2 * 1024 + 1023] = 33   # B at row 31, column 31
    x, y = cifar.parse_batch(bytes(rec), "batch")
    assert y.tolist() == [7] and y.dtype == np.int64
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.uint8
    assert (x[0, 0, 5, 0], x[0, 1, 0, 1], x[0, 31, 31, 2]) == (11, 22, 33)
    assert int(x.sum()) == 66


def test_train_and_test_splits_from_data_dir(tmp_path, rng):
    data = make_batches(tmp_path / cifar.FOLDER, rng)
    train = cifar.load_cifar10("train", data_dir=tmp_path)
    assert train.x.shape == (5 * N, 32, 32, 3) and train.name == "cifar10"
    np.testing.assert_array_equal(train.x, np.concatenate([data[f][0] for f in cifar.TRAIN_FILES]))
    np.testing.assert_array_equal(train.y, np.concatenate([data[f][1] for f in cifar.TRAIN_FILES]))
    test = cifar.load_cifar10("test", data_dir=tmp_path / cifar.FOLDER)  # the folder itself works too
    np.testing.assert_array_equal(test.x, data["test_batch.bin"][0])
    assert test.class_names == list(cifar.CLASS_NAMES)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-1], r"test_batch.bin: 12,291 bytes is not a whole number of 3,073-byte CIFAR-10 records"),
    (lambda b: b[:-cifar.RECORD_BYTES], r"test_batch.bin: 3 records, expected 4; the file is truncated"),
    (lambda b: b"", r"0 bytes is not a whole number"),
    (lambda b: bytes([10]) + b[1:], r"record 0 has label 10, expected 0-9; is this the CIFAR-100"),
])
def test_damaged_batches_are_refused(tmp_path, rng, damage, message):
    make_batches(tmp_path / cifar.FOLDER, rng)
    p = tmp_path / cifar.FOLDER / "test_batch.bin"
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(DatasetError, match=message):
        cifar.load_cifar10("test", data_dir=tmp_path)


def test_missing_files_are_named(tmp_path, rng):
    with pytest.raises(DatasetError, match=r"no cifar-10-batches-bin/ with data_batch_1.bin"):
        cifar.load_cifar10("test", data_dir=tmp_path)
    make_batches(tmp_path / cifar.FOLDER, rng)
    (tmp_path / cifar.FOLDER / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetError, match=r"missing data_batch_3.bin"):
        cifar.load_cifar10("train", data_dir=tmp_path)
    with pytest.raises(DatasetError, match=r"unknown split 'val'"):
        cifar.load_cifar10("val", data_dir=tmp_path)


# ----------------------------------------------------------------------------- download and extraction
def tar_gz(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def archive_members(folder: Path) -> dict[str, bytes]:
    return {f"{cifar.FOLDER}/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Serve ``tmp_path/www`` on 127.0.0.1; returns a function publishing an archive there and
    pointing cifar.ARCHIVE at it with its MD5."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def publish(body: bytes) -> None:
        (www / "cifar-10-binary.tar.gz").write_bytes(body)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-binary.tar.gz"
        monkeypatch.setattr(cifar, "ARCHIVE", cifar.RemoteFile("cifar-10-binary.tar.gz", (url,),
                                                                md5=hashlib.md5(body).hexdigest()))

    yield publish
    httpd.shutdown()
    httpd.server_close()


def test_download_extracts_into_the_cache(tmp_path, rng, served):
    data = make_batches(tmp_path / "src", rng)
    members = archive_members(tmp_path / "src")
    served(tar_gz({**members, f"{cifar.FOLDER}/readme.html": b"<html>"}))
    ds = cifar.load_cifar10("test", cache_dir=tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(ds.x, data["test_batch.bin"][0])
    root = tmp_path / "cache" / "cifar10"
    assert sorted(p.name for p in root.iterdir()) == [cifar.FOLDER]  # archive deleted, no temp folder
    assert not (root / cifar.FOLDER / "readme.html").exists()         # only the expected members
    again = cifar.load_cifar10("train", cache_dir=tmp_path / "cache", download_missing=False)
    assert len(again.y) == 5 * N


@pytest.mark.parametrize("make, message", [
    (lambda m: b"this is not a tar archive", r"content rejected: .*corrupt archive"),
    (lambda m: tar_gz({k: v for k, v in m.items() if not k.endswith("data_batch_2.bin")}),
     r"missing cifar-10-batches-bin/data_batch_2.bin; not the CIFAR-10 binary archive"),
    (lambda m: tar_gz({k: v[:-5] if k.endswith("test_batch.bin") else v for k, v in m.items()}),
     r"test_batch.bin is 12,287 bytes, expected 12,292"),
    (lambda m: tar_gz({k: v for k, v in m.items() if not k.endswith("data_batch_1.bin")},
                      links=(f"{cifar.FOLDER}/data_batch_1.bin",)),
     r"member cifar-10-batches-bin/data_batch_1.bin is not a regular file; refusing to extract"),
])
def test_bad_archives_leave_nothing_that_counts(tmp_path, rng, served, make, message):
    make_batches(tmp_path / "src", rng)
    served(make(archive_members(tmp_path / "src")))
    with pytest.raises(DownloadError, match=message):
        cifar.load_cifar10("test", cache_dir=tmp_path / "cache", progress=False)
    root = tmp_path / "cache" / "cifar10"
    assert list(root.iterdir()) == []
    with pytest.raises(DatasetError, match=r"no cifar-10-batches-bin/ and downloads are off"):
        cifar.load_cifar10("test", cache_dir=tmp_path / "cache", download_missing=False)


def test_archive_with_bad_labels_is_not_extracted(tmp_path, rng):
    """The batches are read back before the folder is renamed into place."""
    make_batches(tmp_path / "src", rng)
    members = archive_members(tmp_path / "src")
    key = f"{cifar.FOLDER}/data_batch_4.bin"
    members[key] = bytes([200]) + members[key][1:]
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(tar_gz(members))
    with pytest.raises(DatasetError, match=r"data_batch_4.bin: record 0 has label 200"):
        cifar.extract_archive(archive, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-binary.tar.gz", "src"]
