"""Downloads against a local HTTP server on 127.0.0.1 started here: a good file is accepted; a
truncated body, a wrong checksum, an HTTP error and rejected content each give one clear
DownloadError and leave nothing behind (no file a later run could take for a dataset, no
temporary file)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from cnnkit.data.download import RemoteFile, download, file_digest
from cnnkit.errors import DatasetError, DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: more than one read chunk
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /good, /slow-good (no Content-Length, closes), /truncated (announces more than it
    sends), /short-no-length (sends half, no Content-Length), /wrong (same length, other bytes),
    /missing (404), /broken (500), /files/<name> (a file registered in ``server.files``)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, body: bytes, length: int | None = None, status: int = 200) -> None:
        self.send_response(status)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.hits.append(self.path)
        if self.path == "/good":
            self._send(PAYLOAD, len(PAYLOAD))
        elif self.path == "/no-length":
            self._send(PAYLOAD)
        elif self.path == "/truncated":
            self._send(PAYLOAD[: len(PAYLOAD) // 3], len(PAYLOAD))
        elif self.path == "/short-no-length":
            self._send(PAYLOAD[: len(PAYLOAD) // 2])
        elif self.path == "/wrong":
            self._send(PAYLOAD[::-1], len(PAYLOAD))
        elif self.path.startswith("/files/") and self.path[7:] in self.server.files:
            body = self.server.files[self.path[7:]]
            self._send(body, len(body))
        elif self.path == "/broken":
            self._send(b"oops", 4, status=500)
        else:
            self._send(b"not found", 9, status=404)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.hits = []
    httpd.files = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback must never go through a proxy a CI machine may set."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file_is_accepted(server, tmp_path):
    path = download(RemoteFile("data.bin", (f"{server.url}/good",), md5=MD5, size=len(PAYLOAD)), tmp_path,
                    progress=False)
    assert path == tmp_path / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["data.bin"]  # no temporary file left


def test_good_file_without_content_length_and_with_sha256(server, tmp_path):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    path = download(RemoteFile("data.bin", (f"{server.url}/no-length",), sha256=sha), tmp_path, progress=False)
    assert file_digest(path) == sha


def test_truncated_download_is_refused_and_leaves_nothing(server, tmp_path):
    remote = RemoteFile("data.bin", (f"{server.url}/truncated",), md5=MD5)
    with pytest.raises(DownloadError, match=r"could not download data.bin .*/truncated: truncated: "
                                            r"received 349,525 of the 1,048,576 bytes announced"):
        download(remote, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_truncated_without_content_length_is_caught_by_the_known_size(server, tmp_path):
    remote = RemoteFile("data.bin", (f"{server.url}/short-no-length",), md5=MD5, size=len(PAYLOAD))
    with pytest.raises(DownloadError, match=r"truncated: received 524,288 bytes, expected 1,048,576"):
        download(remote, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_wrong_checksum_is_refused_and_leaves_nothing(server, tmp_path):
    remote = RemoteFile("data.bin", (f"{server.url}/wrong",), md5=MD5, size=len(PAYLOAD))
    wrong = hashlib.md5(PAYLOAD[::-1]).hexdigest()
    with pytest.raises(DownloadError, match=rf"wrong checksum: MD5 {wrong}, the publisher gives {MD5}"):
        download(remote, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("route, message", [("/missing", "HTTP 404 Not Found"),
                                            ("/broken", "HTTP 500 Internal Server Error")])
def test_http_error_is_refused_and_leaves_nothing(server, tmp_path, route, message):
    remote = RemoteFile("data.bin", (f"{server.url}{route}",), md5=MD5)
    with pytest.raises(DownloadError, match=rf"could not download data.bin \(tried 1 mirror\): "
                                            rf"http://127.0.0.1:\d+{route}: {message}$"):
        download(remote, tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_connection_refused_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot connect"):
        download(RemoteFile("data.bin", (f"http://127.0.0.1:{port}/x",), md5=MD5), tmp_path, progress=False,
                 timeout=5)
    assert leftovers(tmp_path) == []


def test_mirrors_are_tried_in_order(server, tmp_path):
    server.hits.clear()
    urls = (f"{server.url}/missing", f"{server.url}/wrong", f"{server.url}/good", f"{server.url}/no-length")
    path = download(RemoteFile("data.bin", urls, md5=MD5), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.hits == ["/missing", "/wrong", "/good"]  # stops at the first good mirror


def test_all_mirrors_failing_names_each_one(server, tmp_path):
    urls = (f"{server.url}/missing", f"{server.url}/truncated", f"{server.url}/wrong")
    with pytest.raises(DownloadError) as info:
        download(RemoteFile("data.bin", urls, md5=MD5), tmp_path, progress=False)
    text = str(info.value)
    assert "tried 3 mirrors" in text and "\n" not in text
    assert text.index("/missing: HTTP 404") < text.index("/truncated: truncated") < text.index("/wrong: wrong checksum")
    assert leftovers(tmp_path) == []


def test_rejected_content_leaves_nothing(server, tmp_path):
    def verify(path: Path) -> None:
        assert path.read_bytes() == PAYLOAD  # the complete temporary file is what verify sees
        raise DatasetError("decompressed content has the wrong SHA-256")

    with pytest.raises(DownloadError, match=r"content rejected: decompressed content has the wrong SHA-256"):
        download(RemoteFile("data.bin", (f"{server.url}/good",), md5=MD5), tmp_path, verify=verify, progress=False)
    assert leftovers(tmp_path) == []


def test_failed_download_keeps_an_existing_file(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(b"earlier")
    with pytest.raises(DownloadError):
        download(RemoteFile("data.bin", (f"{server.url}/truncated",), md5=MD5), tmp_path, progress=False)
    assert leftovers(tmp_path) == ["data.bin"]
    assert (tmp_path / "data.bin").read_bytes() == b"earlier"


# ----------------------------------------------------------------------------- MNIST through the server
needs_mnist = pytest.mark.skipif(not (SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
                                 reason=f"real MNIST not found at {SHARED_MNIST}")


def serve_mnist(server, monkeypatch, files: dict[str, bytes]):
    """Point the MNIST spec at the local server, with the MD5s of the files it serves (the shared
    copies are re-compressed, so their .gz bytes differ from the publisher's)."""
    from cnnkit.data import mnist

    server.files.update(files)
    md5 = dict(mnist.MNIST.md5)
    md5.update({name[:-3]: hashlib.md5(body).hexdigest() for name, body in files.items()})
    spec = mnist.IdxDataset(name="mnist", class_names=mnist.MNIST.class_names,
                            mirrors=(f"{server.url}/missing/", f"{server.url}/files/"), md5=md5,
                            content_sha256=mnist.MNIST.content_sha256)
    monkeypatch.setitem(mnist.VARIANTS, "mnist", spec)
    return spec


@needs_mnist
def test_mnist_download_verifies_content_and_lands_in_the_cache(server, tmp_path, monkeypatch):
    from cnnkit.data import mnist

    files = {n: (SHARED_MNIST / n).read_bytes() for n in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    serve_mnist(server, monkeypatch, files)
    images, labels = mnist.locate(mnist.VARIANTS["mnist"], "test", cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path / "mnist") == sorted(files)
    assert images.read_bytes() == files["t10k-images-idx3-ubyte.gz"]


@needs_mnist
def test_mnist_download_with_wrong_content_leaves_nothing_that_counts(server, tmp_path, monkeypatch):
    """A file whose MD5 matches what the mirror claims but whose content is not MNIST's (here the
    labels re-compressed after changing one label) is rejected; the cache stays empty, so the
    next run downloads again instead of trusting it."""
    from cnnkit.data import mnist

    raw = bytearray(gzip.decompress((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[8] = (raw[8] + 1) % 10
    serve_mnist(server, monkeypatch, {"t10k-labels-idx1-ubyte.gz": gzip.compress(bytes(raw)),
                                      "t10k-images-idx3-ubyte.gz": (SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
                                      .read_bytes()})
    with pytest.raises(DownloadError, match=r"t10k-labels-idx1-ubyte.gz.*content rejected: .*SHA-256 .* "
                                            r"the original mnist t10k-labels-idx1-ubyte has ff7bcfd416de3373"):
        mnist.locate(mnist.VARIANTS["mnist"], "test", cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path / "mnist") == ["t10k-images-idx3-ubyte.gz"]  # the good one stays; nothing else
