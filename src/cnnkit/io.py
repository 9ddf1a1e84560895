"""Model files (``model.npz``): writing them atomically and reading them without being fooled.

Python API::

    cnnkit.save(model, "model.npz")        # atomic: temp file, fsync, rename, fsync the folder
    model = cnnkit.load("model.npz")       # a built Sequential with class_names and preprocessing

Checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`, :func:`clean_stray_temporaries`)
live in :mod:`cnnkit.checkpoint` and are re-exported here.

File format (version 1)
-----------------------
A plain zip archive of ``.npy`` members (what ``np.savez`` writes, so
``np.load(path, allow_pickle=False)`` opens it too), stored uncompressed with fixed dates, so the
same model always gives the same bytes:

* ``config.npy``: the JSON config, UTF-8, as a 1-D ``uint8`` array (never an object array)::

      {"format": "cnnkit-model", "format_version": 1, "cnnkit_version": "0.1.0",
       "architecture": {...},           # Sequential.config(): the schema of JSON spec files
       "input_shape": [H, W, C], "dtype": "float32",
       "class_names": [...] | null, "preprocessing": {"scale", "mean", "std"} | null,
       "weights": [{"name": "conv1.weight", "member": "weights/conv1.weight.npy",
                    "shape": [5, 5, 1, 6], "dtype": "<f4"}, ...]}   # Sequential.state_dict()

* ``weights/<name>.npy``: one member per entry of ``Sequential.state_dict()`` (parameters and
  BatchNorm buffers), named ``weights/<index>.npy`` when the name holds unusual characters.

A checkpoint (``"format": "cnnkit-checkpoint"``) adds ``state``, ``model_rng`` and ``arrays``
(members ``state/<i>.npy``); see :mod:`cnnkit.checkpoint`.

What the reader checks (any failure is one :class:`~cnnkit.errors.ModelFormatError` naming the file)
---------------------------------------------------------------------------------------------------
The file exists and is a zip archive (a pickle file is named as such and never unpickled); member
names are unique and of the form above; no member is encrypted or compressed other than stored or
deflated; each member's uncompressed size is at most :data:`MAX_MEMBER_BYTES` (1 GiB) and all
together at most :data:`MAX_TOTAL_BYTES` (2 GiB), checked on the zip directory before reading and
again while reading; the config is strict JSON (no NaN/Infinity, no duplicate keys) of the schema
above; its format version is not newer than this cnnkit reads; the members are exactly the config's
plus the declared ones; every ``.npy`` header (read with :mod:`numpy.lib.format`, never
``allow_pickle``) declares a plain numeric dtype (object dtypes refused) and exactly the shape and
dtype the config declares, and header plus data fill the member exactly — all *before* any array is
allocated; the architecture builds, needs no more parameters than the file declares, and its state
matches the declared weights name for name, shape for shape and dtype for dtype; every CRC matches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
from numpy.lib import format as npformat

from . import __version__
from .errors import CnnkitError, ModelFormatError

FORMAT_VERSION = 1
MODEL_FORMAT = "cnnkit-model"
CHECKPOINT_FORMAT = "cnnkit-checkpoint"
CONFIG_MEMBER = "config.npy"

MAX_MEMBER_BYTES = 1 << 30   # 1 GiB: largest uncompressed member (.npy header + data)
MAX_TOTAL_BYTES = 2 << 30    # 2 GiB: all members together, uncompressed
MAX_CONFIG_BYTES = 16 << 20  # 16 MiB of JSON
MAX_MEMBERS = 100_000
MAX_LAYERS = 10_000
MAX_NDIM = 32
MAX_NPY_HEADER = 10_000
ALLOWED_DTYPES = frozenset(["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"])

_MEMBER_RE = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}/)?[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\.npy")
_SAFE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,100}")
_TMP_SUFFIX = ".cnnkit-tmp"
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
# What zipfile, zlib and numpy raise on damaged input.
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, TypeError,
                struct.error, zlib.error, NotImplementedError, RuntimeError, OverflowError, KeyError,
                IndexError, SyntaxError, RecursionError, MemoryError)
# What building a model from an untrusted architecture may raise.
_BUILD_ERRORS = (CnnkitError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                 ArithmeticError, RecursionError)
_TOP_KEYS = {"format", "format_version", "cnnkit_version", "architecture", "input_shape", "dtype",
             "class_names", "preprocessing", "weights"}
_CHECKPOINT_KEYS = {"state", "model_rng", "arrays"}


# ============================================================================ public API
def save(model, path: str | os.PathLike) -> None:
    """Write ``model`` (built) to ``path`` as a model file, atomically.

    The file is written to a temporary file in the same folder, fsynced, renamed over ``path`` and
    the folder fsynced: a crash at any moment leaves either the old file or the new one. ``path`` is
    used as given (no ``.npz`` is appended). OSError (e.g. a missing folder) propagates.

    Raises:
        ModelFormatError: the model is not built, or cannot be stored (too large, class names or
            preprocessing that are not JSON).
    """
    config, arrays = model_payload(model, MODEL_FORMAT)
    atomic_write(path, lambda f: write_archive(f, config, arrays))


def load(path: str | os.PathLike):
    """Read a model file (or the model inside a checkpoint) → a built :class:`~cnnkit.model.Sequential`
    with its weights, ``class_names`` and ``preprocessing``.

    Raises:
        ModelFormatError: the file is missing, unreadable, malformed, too large, of a newer format
            version, or carries Python objects (pickle); one clear message naming the file.

    Example:
        >>> import cnnkit, tempfile, os
        >>> m = cnnkit.resolve_model("flatten-fc(3)", input_shape=(2, 2, 1))
        >>> p = os.path.join(tempfile.mkdtemp(), "m.npz"); cnnkit.save(m, p)
        >>> cnnkit.load(p).output_shape()
        (3,)
    """
    with open_archive(path) as archive:
        if archive.config["format"] == CHECKPOINT_FORMAT:  # validate the whole file, state included
            from .checkpoint import read_checkpoint

            return read_checkpoint(archive)[0]
        return archive.build_model()


def __getattr__(name: str) -> Any:  # checkpoint functions, without an import cycle
    if name in ("save_checkpoint", "load_checkpoint", "clean_stray_temporaries"):
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'cnnkit.io' has no attribute {name!r}")


# ============================================================================ atomic writes
def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, text, or a function writing to a binary file) to ``path`` atomically:
    a temporary file ``.<name>.<pid>-<random>.cnnkit-tmp`` in the same folder, fsynced, renamed
    over ``path`` (``os.replace``), then the folder fsynced. On any exception (Ctrl-C included)
    the temporary file is removed and ``path`` is untouched; after a kill -9 the temporary file
    stays until :func:`clean_stray_temporaries`."""
    path = Path(path)
    folder = path.parent
    tmp = folder / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
    try:
        with open(tmp, "xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_folder(folder)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_stray_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_write`'s temporary files."""
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


# ============================================================================ writing
def _little_endian(a: np.ndarray) -> np.ndarray:
    a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    return a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a


def manifest_entry(member: str, a: np.ndarray, where: str) -> dict[str, Any]:
    """``{"member", "shape", "dtype"}`` for an array about to be stored; refuses what the reader would."""
    if a.dtype.str not in ALLOWED_DTYPES:
        raise ModelFormatError(f"cannot save {where}: dtype {a.dtype} is not storable; "
                               f"model files hold bool, integer and float arrays only")
    if a.nbytes + MAX_NPY_HEADER > MAX_MEMBER_BYTES:
        raise ModelFormatError(f"cannot save {where}: {a.nbytes} bytes exceeds the limit of "
                               f"{MAX_MEMBER_BYTES} bytes per array")
    return {"member": member, "shape": list(a.shape), "dtype": a.dtype.str}


def model_payload(model, fmt: str) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The config dict (without checkpoint keys) and ``[(member, array), …]`` of a built model."""
    from .model import Sequential

    if not isinstance(model, Sequential):
        raise ModelFormatError(f"cannot save: expected a Sequential model, received {type(model).__name__}")
    if not model.built:
        raise ModelFormatError(f"cannot save {model.name}: the model is not built (give it an input shape)")
    out = model.output_shape()
    if isinstance(model.class_names, (list, tuple)) and len(out) == 1 and len(model.class_names) != out[0]:
        raise ModelFormatError(f"cannot save {model.name}: {len(model.class_names)} class names for {out[0]} outputs")
    arrays, weights = [], []
    for i, (key, value) in enumerate(model.state_dict().items()):
        member = f"weights/{key}.npy" if _SAFE_NAME_RE.fullmatch(key) else f"weights/{i}.npy"
        a = _little_endian(value)
        weights.append({"name": key, **manifest_entry(member, a, f"{model.name} {key}")})
        arrays.append((member, a))
    config = {
        "format": fmt, "format_version": FORMAT_VERSION, "cnnkit_version": __version__,
        "architecture": model.config(), "input_shape": list(model.input_shape), "dtype": model.dtype.name,
        "class_names": None if model.class_names is None else list(model.class_names),
        "preprocessing": _plain_json(model.preprocessing, f"{model.name} preprocessing"),
        "weights": weights,
    }
    config = _plain_json(config, f"{model.name} config")
    if fmt == CHECKPOINT_FORMAT:  # placeholders, filled in by cnnkit.checkpoint
        config.update(state=None, model_rng={}, arrays=[])
    check_config(config, _raiser(f"cannot save {model.name}"), {fmt})  # never write what load refuses
    return config, arrays


def _plain_json(value: Any, where: str) -> Any:
    """``value`` as plain JSON types (NumPy scalars and arrays turned into Python numbers/lists)."""
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON")

    try:
        return json.loads(json.dumps(value, default=default, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"cannot save {where}: {e}") from None


def write_archive(f: BinaryIO, config: dict[str, Any], arrays: list[tuple[str, np.ndarray]]) -> None:
    """Write the zip archive: ``config.npy`` (JSON as uint8) then each ``(member, array)``."""
    text = json.dumps(config, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
    if len(text) > MAX_CONFIG_BYTES:
        raise ModelFormatError(f"cannot save: the config is {len(text)} bytes of JSON, over the "
                               f"limit of {MAX_CONFIG_BYTES}")
    members = [(CONFIG_MEMBER, np.frombuffer(text, np.uint8)), *arrays]
    total = sum(a.nbytes + MAX_NPY_HEADER for _, a in members)
    if total > MAX_TOTAL_BYTES:
        raise ModelFormatError(f"cannot save: {total} bytes exceeds the limit of {MAX_TOTAL_BYTES} per file")
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=a.nbytes > (1 << 31)) as out:
                npformat.write_array(out, a, allow_pickle=False)


# ============================================================================ reading
def _raiser(where: str) -> Callable[[str], None]:
    def fail(message: str) -> None:
        raise ModelFormatError(f"{where}: {message}")
    return fail


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _strict_json(text: str) -> Any:
    def no_constant(name):
        raise ValueError(f"{name} is not allowed")

    def finite(s):
        v = float(s)
        if not math.isfinite(v):
            raise ValueError(f"number {s} is out of range")
        return v

    def no_duplicates(pairs):
        d = dict(pairs)
        if len(d) != len(pairs):
            raise ValueError(f"duplicate keys {sorted({k for k, _ in pairs if sum(k == j for j, _ in pairs) > 1})}")
        return d

    return json.loads(text, parse_constant=no_constant, parse_float=finite, object_pairs_hook=no_duplicates)


def check_manifest(entries: Any, key: str, fail: Callable[[str], None], named: bool) -> None:
    """Validate a list of ``{"member", "shape", "dtype"[, "name"]}`` entries (no file access)."""
    if not isinstance(entries, list):
        fail(f"config {key!r} must be a list")
    fields = {"member", "shape", "dtype", "name"} if named else {"member", "shape", "dtype"}
    for i, e in enumerate(entries):
        where = f"config {key}[{i}]"
        if not isinstance(e, dict) or set(e) != fields:
            fail(f"{where} must be an object with keys {sorted(fields)}")
        if named and not isinstance(e["name"], str):
            fail(f"{where}: name must be a string")
        if not isinstance(e["member"], str) or not _MEMBER_RE.fullmatch(e["member"]) or e["member"] == CONFIG_MEMBER:
            fail(f"{where}: member {e['member']!r} is not a valid member name")
        shape = e["shape"]
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(s) and s >= 0 for s in shape):
            fail(f"{where} ({e['member']}): shape must be a list of at most {MAX_NDIM} non-negative "
                 f"integers, received {shape!r}")
        if not isinstance(e["dtype"], str) or e["dtype"] not in ALLOWED_DTYPES:
            fail(f"{where} ({e['member']}): dtype {e['dtype']!r} is not one of {', '.join(sorted(ALLOWED_DTYPES))}")
        if math.prod(shape) * np.dtype(e["dtype"]).itemsize > MAX_MEMBER_BYTES:
            fail(f"{where} ({e['member']}): shape {shape} of {e['dtype']} exceeds the limit of "
                 f"{MAX_MEMBER_BYTES} bytes per array")
    if named and len({e["name"] for e in entries}) != len(entries):
        fail(f"config {key!r} repeats a name")


def check_config(cfg: Any, fail: Callable[[str], None], formats: set[str]) -> None:
    """Validate a parsed config against the schema (version first, so a newer file is named as such)."""
    if not isinstance(cfg, dict):
        fail(f"the config must be a JSON object, received {type(cfg).__name__}")
    fmt = cfg.get("format")
    if fmt not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        fail(f"config 'format' is {fmt!r}; expected {MODEL_FORMAT!r} or {CHECKPOINT_FORMAT!r}")
    version = cfg.get("format_version")
    if not _is_int(version) or version < 1:
        fail(f"config 'format_version' must be a positive integer, received {version!r}")
    if version > FORMAT_VERSION:
        written = cfg.get("cnnkit_version")
        written = f"cnnkit {written}" if isinstance(written, str) else "a newer cnnkit"
        fail(f"written in format version {version} (by {written}); this cnnkit {__version__} reads format "
             f"version {FORMAT_VERSION} at most. Upgrade cnnkit to load it")
    if fmt not in formats:
        fail(f"is a {'checkpoint' if fmt == CHECKPOINT_FORMAT else 'model file'}, expected a "
             f"{'checkpoint' if CHECKPOINT_FORMAT in formats else 'model file'}")
    expected = _TOP_KEYS | (_CHECKPOINT_KEYS if fmt == CHECKPOINT_FORMAT else set())
    if set(cfg) != expected:
        fail(f"config keys do not match format {fmt!r}: missing {sorted(expected - set(cfg)) or 'none'}, "
             f"unexpected {sorted(set(cfg) - expected) or 'none'}")
    if not isinstance(cfg["cnnkit_version"], str):
        fail("config 'cnnkit_version' must be a string")
    shape = cfg["input_shape"]
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(s) and 1 <= s < 2**31 for s in shape):
        fail(f"config 'input_shape' must be [H, W, C] of positive integers, received {shape!r}")
    if cfg["dtype"] not in ("float32", "float64"):
        fail(f"config 'dtype' must be 'float32' or 'float64', received {cfg['dtype']!r}")
    _check_architecture(cfg["architecture"], shape, cfg["dtype"], fail)
    names = cfg["class_names"]
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        fail("config 'class_names' must be null or a list of strings")
    _check_preprocessing(cfg["preprocessing"], shape[2], fail)
    check_manifest(cfg["weights"], "weights", fail, named=True)
    if fmt == CHECKPOINT_FORMAT:
        check_manifest(cfg["arrays"], "arrays", fail, named=False)
        if not isinstance(cfg["model_rng"], dict):
            fail("config 'model_rng' must be an object")
    members = [e["member"] for e in cfg["weights"] + cfg.get("arrays", [])]
    if len(set(members)) != len(members):
        fail("config declares the same member twice")


def _check_architecture(arch: Any, shape: list, dtype: str, fail: Callable[[str], None]) -> None:
    if not isinstance(arch, dict) or not set(arch) <= {"name", "layers", "input_shape", "dtype"}:
        fail("config 'architecture' must be an object with keys name, layers, input_shape, dtype")
    if not isinstance(arch.get("name", ""), str):
        fail("config architecture 'name' must be a string")
    if arch.get("input_shape", shape) != shape or arch.get("dtype", dtype) != dtype:
        fail("config architecture input_shape/dtype differ from the file's input_shape/dtype")
    layers = arch.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        fail(f"config architecture 'layers' must be a list of 1 to {MAX_LAYERS} layers")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("type"), str) \
                or not isinstance(layer.get("name", ""), str):
            fail(f"config architecture layer {i + 1} must be an object with a string 'type' (and 'name')")


def _check_preprocessing(prep: Any, channels: int, fail: Callable[[str], None]) -> None:
    if prep is None:
        return
    if not isinstance(prep, dict):
        fail("config 'preprocessing' must be null or an object")
    if "scale" in prep and not _is_number(prep["scale"]):
        fail(f"config preprocessing 'scale' must be a finite number, received {prep['scale']!r}")
    for key in ("mean", "std"):
        if key not in prep:
            continue
        v = prep[key] if isinstance(prep[key], list) else [prep[key]]
        if len(v) not in (1, channels) or not all(_is_number(x) for x in v) or (key == "std" and min(v) <= 0):
            fail(f"config preprocessing {key!r} must be 1 or {channels} finite numbers"
                 f"{' > 0' if key == 'std' else ''}, received {prep[key]!r}")


class _Counted:
    """A read-only stream that counts the bytes read (to know where the .npy header ends)."""

    def __init__(self, f) -> None:
        self.f, self.pos = f, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.pos += len(data)
        return data


class Archive:
    """An opened, validated model file or checkpoint. Use :func:`open_archive`."""

    def __init__(self, path: str | os.PathLike, formats: set[str]) -> None:
        self.path = str(path)
        self.fail = _raiser(f"{'checkpoint' if formats == {CHECKPOINT_FORMAT} else 'model file'} {self.path!r}")
        self._file = self._zip = None
        try:
            self._open(path, formats)
        except BaseException:
            self.close()
            raise

    def _open(self, path: str | os.PathLike, formats: set[str]) -> None:
        try:
            self._file = open(path, "rb")
            head = self._file.read(4)
            self._file.seek(0, os.SEEK_END)
            self.size = self._file.tell()
            self._file.seek(0)
        except FileNotFoundError:
            self.fail("not found")
        except IsADirectoryError:
            self.fail("is a folder, not a file")
        except OSError as e:
            self.fail(f"cannot be read ({e.strerror or e})")
        if head[:2] in _PICKLE_MAGIC:
            self.fail("is a Python pickle, not a cnnkit archive; refused (cnnkit never unpickles)")
        try:
            self._zip = zipfile.ZipFile(self._file)
        except _READ_ERRORS as e:
            self.fail(f"is not a valid zip archive ({type(e).__name__}: {e}); a model file is a NumPy .npz archive")
        self._check_directory()
        raw = self.read_npy(self._zip.getinfo(CONFIG_MEMBER), None, "|u1", max_bytes=MAX_CONFIG_BYTES)
        if raw.ndim != 1:
            self.fail(f"{CONFIG_MEMBER} must be a 1-D uint8 array of JSON, has shape {raw.shape}")
        try:
            self.config = _strict_json(raw.tobytes().decode("utf-8"))
        except (ValueError, RecursionError) as e:
            self.fail(f"the config is not valid JSON ({type(e).__name__}: {e})")
        check_config(self.config, self.fail, formats)
        declared = {e["member"] for e in self.config["weights"] + self.config.get("arrays", [])}
        present = set(self._zip.namelist()) - {CONFIG_MEMBER}
        if declared != present:
            self.fail(f"members do not match the config: missing {sorted(declared - present)[:5] or 'none'}, "
                      f"unexpected {sorted(present - declared)[:5] or 'none'}")

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in (self._zip, self._file):
            if f is not None:
                with contextlib.suppress(*_READ_ERRORS):
                    f.close()

    def _check_directory(self) -> None:
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            self.fail(f"has {len(infos)} members, over the limit of {MAX_MEMBERS}")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            self.fail("repeats a member name")
        for i in infos:
            if not _MEMBER_RE.fullmatch(i.filename):
                self.fail(f"has an unexpected member {i.filename[:80]!r}")
            if i.flag_bits & 0x1:
                self.fail(f"member {i.filename} is encrypted")
            if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                self.fail(f"member {i.filename} uses compression method {i.compress_type}; "
                          "only stored and deflated are read")
            if i.file_size > MAX_MEMBER_BYTES:
                self.fail(f"member {i.filename} is {i.file_size} bytes uncompressed, over the limit of "
                          f"{MAX_MEMBER_BYTES}")
            if i.compress_type == zipfile.ZIP_STORED and (
                    i.compress_size != i.file_size or i.header_offset + i.compress_size > self.size):
                self.fail(f"member {i.filename}: its sizes in the zip directory do not match the file")
        total = sum(i.file_size for i in infos)
        if total > MAX_TOTAL_BYTES:
            self.fail(f"holds {total} bytes uncompressed, over the limit of {MAX_TOTAL_BYTES}")
        if CONFIG_MEMBER not in names:
            self.fail(f"has no {CONFIG_MEMBER} member: not a cnnkit model file")

    def read_npy(self, info: zipfile.ZipInfo, shape: tuple | None, dtype: str,
                 max_bytes: int = MAX_MEMBER_BYTES) -> np.ndarray:
        """Read one ``.npy`` member whose header must declare ``dtype`` (and ``shape`` unless None);
        everything is checked against the member's real size before the array is allocated."""
        name = info.filename
        try:
            with self._zip.open(info) as raw:
                f = _Counted(raw)
                real_shape, fortran, real_dtype = self._npy_header(f, name)
                if real_dtype.hasobject:
                    self.fail(f"member {name} holds Python objects (dtype {real_dtype}); refused "
                              "(cnnkit never unpickles)")
                if real_dtype.str != dtype or real_dtype.names is not None or real_dtype.subdtype is not None:
                    self.fail(f"member {name}: dtype {real_dtype.str!r}, the config declares {dtype!r}")
                if shape is not None and tuple(real_shape) != tuple(shape):
                    self.fail(f"member {name}: shape {tuple(real_shape)}, the config declares {tuple(shape)}")
                if len(real_shape) > MAX_NDIM or any(s < 0 for s in real_shape):
                    self.fail(f"member {name}: invalid shape {real_shape}")
                nbytes = math.prod(real_shape) * real_dtype.itemsize
                if nbytes > max_bytes:
                    self.fail(f"member {name}: {nbytes} bytes, over the limit of {max_bytes}")
                if f.pos + nbytes != info.file_size:
                    self.fail(f"member {name}: header declares {tuple(real_shape)} {real_dtype.str} = {nbytes} "
                              f"bytes of data, the member holds {info.file_size - f.pos}")
                a = np.empty(real_shape[::-1] if fortran else real_shape, real_dtype)
                buf = a.reshape(-1).view(np.uint8)
                pos = 0
                while pos < nbytes:
                    chunk = f.read(min(nbytes - pos, 1 << 22))
                    if not chunk:
                        self.fail(f"member {name} is truncated ({pos} of {nbytes} data bytes)")
                    buf[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
                    pos += len(chunk)
                if f.read(1):  # also makes zipfile check the CRC
                    self.fail(f"member {name} holds more data than its header declares")
        except _READ_ERRORS as e:
            self.fail(f"member {name} is damaged ({type(e).__name__}: {e})")
        if real_dtype == np.bool_ and nbytes and buf.max() > 1:
            self.fail(f"member {name}: a boolean array holds values other than 0 and 1")
        return a.T if fortran else a

    def _npy_header(self, f: _Counted, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        """``(shape, fortran_order, dtype)`` from a .npy header, parsed by numpy without pickle."""
        try:
            version = npformat.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version} is not read")
            read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            return read(f, max_header_size=MAX_NPY_HEADER)
        except Exception as e:  # noqa: BLE001 — any failure to parse untrusted header text is a bad header
            self.fail(f"member {name} has an invalid .npy header ({type(e).__name__}: {e})")

    def read_entry(self, entry: dict[str, Any]) -> np.ndarray:
        """Read the member of a validated manifest entry."""
        return self.read_npy(self._zip.getinfo(entry["member"]), tuple(entry["shape"]), entry["dtype"])

    def build_model(self):
        """The model: architecture built, checked against the declared weights, weights read."""
        from .spec import model_from_config

        cfg = self.config
        arch, weights = cfg["architecture"], cfg["weights"]
        shape = tuple(cfg["input_shape"])
        try:
            model = model_from_config({"layers": arch["layers"]}, dtype=cfg["dtype"], name=arch.get("name", "model"))
            chain = model.shapes(shape)
            params = sum(layer.param_count(s) for layer, s, _ in chain)
        except _BUILD_ERRORS as e:
            self.fail(f"the architecture cannot be built ({type(e).__name__}: {e})")
        declared = sum(math.prod(w["shape"]) for w in weights)
        if params > declared:
            self.fail(f"the architecture needs {params} parameters, the file declares {declared} values")
        try:
            model.build(shape)
            own = model.state_dict()
        except _BUILD_ERRORS as e:
            self.fail(f"the architecture cannot be built ({type(e).__name__}: {e})")
        by_name = {w["name"]: w for w in weights}
        if set(own) != set(by_name):
            self.fail(f"weights do not match the architecture: missing {sorted(set(own) - set(by_name))[:5] or 'none'}, "
                      f"unexpected {sorted(set(by_name) - set(own))[:5] or 'none'}")
        for key, target in own.items():
            w = by_name[key]
            if tuple(w["shape"]) != target.shape or w["dtype"] != target.dtype.str:
                self.fail(f"weight {key} is declared {tuple(w['shape'])} {w['dtype']}, the architecture "
                          f"needs {target.shape} {target.dtype.str}")
        for key, target in own.items():
            target[...] = self.read_entry(by_name[key])
        out = model.output_shape()
        names = cfg["class_names"]
        if names is not None and len(out) == 1 and len(names) != out[0]:
            self.fail(f"has {len(names)} class names for {out[0]} outputs")
        model.class_names = names
        model.preprocessing = cfg["preprocessing"]
        return model


def open_archive(path: str | os.PathLike, formats: set[str] | None = None) -> Archive:
    """Open and validate ``path`` (directory, config, member set); use as a context manager."""
    return Archive(path, formats or {MODEL_FORMAT, CHECKPOINT_FORMAT})
