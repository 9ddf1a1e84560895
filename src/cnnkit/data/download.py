"""Downloads that either land complete and verified, or leave nothing behind.

A :class:`RemoteFile` names one file of a dataset, the mirrors that serve it (tried in order) and
the checksum its publisher gives (MD5 where that is all they publish). :func:`download` streams
it to a temporary file ``.<name>.<random>.part`` in the destination folder while hashing, checks

1. the HTTP status (anything but 200 is an error),
2. the length: the bytes received against ``Content-Length`` and against the known size
   (a connection that closes early is a *truncated* download),
3. the publisher's checksum of the bytes received,
4. an optional ``verify(path)`` callback (the dataset module checks the decompressed content
   against SHA-256 values recorded in the code),

and only then fsyncs the file and renames it into place. On any failure the temporary file is
deleted, so nothing that later counts as a dataset file is left behind; the next mirror is
tried; when all fail, one :class:`~cnnkit.errors.DownloadError` names each mirror and why.

Example:
    >>> f = RemoteFile("t10k-labels-idx1-ubyte.gz",
    ...                ("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",),
    ...                md5="ec29112dd5afa0611ce80d1b7f02629c", size=4542)
    >>> f.mirror_hosts()
    ['ossci-datasets.s3.amazonaws.com']
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DatasetError, DownloadError
from ..io import fsync_folder

CHUNK = 1 << 20  # bytes read and hashed at a time
USER_AGENT = "cnnkit-downloader"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Args:
        filename: the name it gets in the destination folder.
        urls: full URLs of the mirrors, tried in this order.
        md5: the publisher's MD5 of the file as served (hex), or None.
        sha256: the SHA-256 of the file as served (hex), or None. Either checksum, when given,
            must match; at least one of them should be given for anything users rely on.
        size: the size in bytes as served, or None.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None

    def mirror_hosts(self) -> list[str]:
        return [urllib.parse.urlsplit(u).netloc for u in self.urls]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class _AttemptFailed(Exception):
    """One mirror failed; the message says why (collected into the final DownloadError)."""


def download(remote: RemoteFile, directory: str | os.PathLike, *,
             verify: Callable[[Path], None] | None = None, timeout: float = 60.0,
             progress: bool = True) -> Path:
    """Download ``remote`` into ``directory`` (created if needed), trying each mirror in order.

    Args:
        remote: what to fetch and how to check it.
        directory: destination folder; the file lands at ``directory / remote.filename``.
        verify: called with the path of the complete temporary file after the checksums passed;
            raise :class:`~cnnkit.errors.DatasetError` to reject it (e.g. decompressed content
            that does not match the recorded SHA-256).
        timeout: seconds to wait for a connection or for the next bytes.
        progress: show a progress bar on a terminal (one line per download otherwise).

    Returns:
        The final path. An existing file of that name is replaced only by a verified download.

    Raises:
        DownloadError: every mirror failed (HTTP error, connection error, truncated body, wrong
            checksum or rejected content); the message lists each mirror and its reason.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the download folder {directory}: {e.strerror or e}") from None
    if not remote.urls:
        raise DownloadError(f"{remote.filename}: no mirror URL to download from")
    target = directory / remote.filename
    reasons = []
    for url in remote.urls:
        try:
            _fetch_one(url, remote, target, verify, timeout, progress)
            return target
        except _AttemptFailed as e:
            reasons.append(f"{url}: {e}")
    tried = "; ".join(reasons)
    raise DownloadError(f"could not download {remote.filename} (tried {len(reasons)} "
                        f"mirror{'s' if len(reasons) > 1 else ''}): {tried}")


def _fetch_one(url: str, remote: RemoteFile, target: Path, verify, timeout: float, progress: bool) -> None:
    """Stream ``url`` to a temporary file next to ``target``; rename it into place if it checks out."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            md5 = hashlib.md5(usedforsecurity=False)
            sha = hashlib.sha256()
            received, declared = _stream(url, out, (md5, sha), timeout, progress, remote)
            out.flush()
            os.fsync(out.fileno())
        if declared is not None and received != declared:
            raise _AttemptFailed(f"truncated: received {received:,} of the {declared:,} bytes announced")
        if remote.size is not None and received != remote.size:
            what = "truncated" if received < remote.size else "too long"
            raise _AttemptFailed(f"{what}: received {received:,} bytes, expected {remote.size:,}")
        if remote.md5 is not None and md5.hexdigest() != remote.md5.lower():
            raise _AttemptFailed(f"wrong checksum: MD5 {md5.hexdigest()}, the publisher gives {remote.md5.lower()}")
        if remote.sha256 is not None and sha.hexdigest() != remote.sha256.lower():
            raise _AttemptFailed(f"wrong checksum: SHA-256 {sha.hexdigest()}, expected {remote.sha256.lower()}")
        if verify is not None:
            try:
                verify(tmp)
            except DatasetError as e:
                raise _AttemptFailed(f"content rejected: {e}") from None
        os.replace(tmp, target)
        fsync_folder(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _stream(url: str, out, hashes, timeout: float, progress: bool, remote: RemoteFile) -> tuple[int, int | None]:
    """Copy the body of ``url`` to ``out`` updating ``hashes``; returns (bytes, Content-Length)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if status != 200:
                raise _AttemptFailed(f"HTTP {status} {getattr(response, 'reason', '')}".rstrip())
            length = response.headers.get("Content-Length")
            declared = int(length) if length and length.isdigit() else None
            bar = _progress_bar(remote.filename, declared or remote.size, url) if progress else None
            try:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    for h in hashes:
                        h.update(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except _AttemptFailed:
        raise
    except urllib.error.HTTPError as e:
        raise _AttemptFailed(f"HTTP {e.code} {e.reason}".rstrip()) from None
    except urllib.error.URLError as e:
        raise _AttemptFailed(f"cannot connect ({e.reason})") from None
    except http.client.IncompleteRead as e:
        raise _AttemptFailed(f"truncated: the connection closed after {received + len(e.partial):,} bytes"
                             + (f" of {received + len(e.partial) + e.expected:,}" if e.expected else "")) from None
    except (socket.timeout, TimeoutError):
        raise _AttemptFailed(f"timed out after {timeout:g} s with {received:,} bytes received") from None
    except (http.client.HTTPException, ConnectionError) as e:
        raise _AttemptFailed(f"connection failed after {received:,} bytes ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise _AttemptFailed(f"I/O error after {received:,} bytes ({e.strerror or e})") from None
    return received, declared


def _progress_bar(name: str, total: int | None, url: str):
    """A tqdm bar on a terminal; otherwise one plain line and no bar (CI logs stay readable)."""
    if not sys.stderr.isatty():
        print(f"cnnkit: downloading {name} from {url}", file=sys.stderr, flush=True)
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False)


def default_cache_dir() -> Path:
    """``~/.cache/cnnkit`` (INTERFACE.md: overridable with ``--cache-dir``)."""
    return Path.home() / ".cache" / "cnnkit"


__all__ = ["RemoteFile", "download", "file_digest", "default_cache_dir"]
