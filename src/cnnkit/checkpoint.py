"""Checkpoints: a model plus an arbitrary training state, written atomically, read safely.

API (used by the fit loop / ``cnnkit train --resume``)::

    save_checkpoint(path, model, state)          # atomic: temp file, fsync, rename, fsync folder
    model, state = load_checkpoint(path)         # ModelFormatError if anything is wrong
    removed = clean_stray_temporaries(folder)    # call at start: temp files left by a kill -9

``state`` is a tree of dicts (string keys), lists/tuples, ``None``, ``bool``, ``int``, ``float``
(NaN and ±inf included), ``str``, NumPy arrays (bool/integer/float dtypes) and NumPy scalars, e.g.::

    {"epoch": 3, "step": 120, "history": [...],
     "optimizer": opt.state_dict(), "loader": loader.state_dict(),
     "rng": rng.bit_generator.state}              # a plain dict of ints: JSON as it is

It comes back equal, with these conversions: tuples become lists; arrays come back as writable
arrays with the same dtype, shape and values (byte order little-endian); NumPy scalars come back as
NumPy scalars of the same dtype. Dict keys must be strings and may not be ``__ndarray__``,
``__npscalar__`` or ``__float__`` (the tags this module uses). Anything else raises
:class:`~cnnkit.errors.ModelFormatError` at save time, so a checkpoint that was written can be read.

The model's own random state — the generators of Dropout layers — is saved and restored with the
model, so a resumed run draws the same masks. Restore your own generators from the state you
saved: ``rng.bit_generator.state = state["rng"]``.

File layout: the model file format of :mod:`cnnkit.io` with ``"format": "cnnkit-checkpoint"`` and
three more config keys: ``state`` (the tree as JSON, arrays replaced by ``{"__ndarray__":
"state/0.npy"}``), ``model_rng`` (layer name → its generator's state) and ``arrays`` (the manifest
of the ``state/<i>.npy`` members, validated like the weights before anything is allocated).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFormatError
from .io import (CHECKPOINT_FORMAT, Archive, atomic_write, is_stray_temporary, manifest_entry, model_payload,
                 open_archive, write_archive, _little_endian)

TAGS = ("__ndarray__", "__npscalar__", "__float__")
MAX_DEPTH = 64
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def save_checkpoint(path: str | os.PathLike, model, state: dict[str, Any]) -> None:
    """Write ``model`` (weights, buffers, Dropout generators) and ``state`` to ``path`` atomically.

    Raises:
        ModelFormatError: the model is not built, or ``state`` holds something a checkpoint cannot
            store (the message names where in the tree).
    """
    if not isinstance(state, dict):
        raise ModelFormatError(f"cannot save checkpoint: state must be a dict, received {type(state).__name__}")
    config, arrays = model_payload(model, CHECKPOINT_FORMAT)
    enc = _Encoder()
    config["state"] = enc.encode(state, "state", 0)
    config["model_rng"] = {layer.name: enc.encode(layer.rng.bit_generator.state, f"{layer.name}.rng", 0)
                           for layer in model.layers if getattr(layer, "rng", None) is not None}
    config["arrays"] = enc.manifest
    atomic_write(path, lambda f: write_archive(f, config, arrays + enc.arrays))


def load_checkpoint(path: str | os.PathLike):
    """Read a checkpoint → ``(model, state)``; the model is built, in training mode, with its
    Dropout generators restored.

    Raises:
        ModelFormatError: missing, unreadable, malformed, too large, newer format, a model file
            rather than a checkpoint, or Python objects (pickle) inside.
    """
    with open_archive(path, {CHECKPOINT_FORMAT}) as archive:
        return read_checkpoint(archive)


def read_checkpoint(archive: Archive):
    """``(model, state)`` from an opened checkpoint archive (also used by :func:`cnnkit.io.load`)."""
    model = archive.build_model()
    cfg = archive.config
    arrays = {e["member"]: archive.read_entry(e) for e in cfg["arrays"]}
    dec = _Decoder(arrays, archive.fail)
    state = dec.decode(cfg["state"], "state", 0)
    if not isinstance(state, dict):
        archive.fail("the checkpoint state must be an object")
    rng_layers = {layer.name: layer for layer in model.layers if getattr(layer, "rng", None) is not None}
    saved = cfg["model_rng"]
    if set(saved) != set(rng_layers):
        archive.fail(f"random generator states saved for {sorted(saved)}, the model has generators in "
                     f"{sorted(rng_layers)}")
    for name, layer in rng_layers.items():
        try:
            layer.rng.bit_generator.state = dec.decode(saved[name], f"model_rng.{name}", 0)
        except (ValueError, TypeError, KeyError, OverflowError) as e:
            archive.fail(f"the random state of layer {name} is invalid ({type(e).__name__}: {e})")
    unused = sorted(set(arrays) - dec.used)
    if unused:
        archive.fail(f"arrays {unused[:5]} are declared but not used by the state")
    return model, state


def clean_stray_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write (kill -9, power loss) left in
    ``folder``; returns the paths removed. Call it when starting to write into a folder you own
    (never while another process writes there). A missing folder removes nothing."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if is_stray_temporary(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed


class _Encoder:
    """State tree → JSON, with arrays and NumPy scalars moved out into ``state/<i>.npy`` members."""

    def __init__(self) -> None:
        self.arrays: list[tuple[str, np.ndarray]] = []
        self.manifest: list[dict[str, Any]] = []

    def _store(self, a: np.ndarray, where: str) -> str:
        member = f"state/{len(self.arrays)}.npy"
        a = _little_endian(a)
        self.manifest.append(manifest_entry(member, a, where))
        self.arrays.append((member, a))
        return member

    def encode(self, v: Any, where: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ModelFormatError(f"cannot save checkpoint: {where} is nested more than {MAX_DEPTH} deep")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__float__": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if isinstance(v, np.ndarray):
            return {"__ndarray__": self._store(v, where)}
        if isinstance(v, np.generic):
            return {"__npscalar__": self._store(np.asarray(v), where)}
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise ModelFormatError(f"cannot save checkpoint: {where} has key {k!r}; keys must be strings")
                if k in TAGS:
                    raise ModelFormatError(f"cannot save checkpoint: {where} uses the reserved key {k!r}")
                out[k] = self.encode(x, f"{where}[{k!r}]", depth + 1)
            return out
        if isinstance(v, (list, tuple)):
            return [self.encode(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
        raise ModelFormatError(f"cannot save checkpoint: {where} is a {type(v).__name__}; a checkpoint holds "
                               "dicts, lists, str, int, float, bool, None and NumPy arrays/scalars")


class _Decoder:
    """JSON → state tree, each declared array used exactly once."""

    def __init__(self, arrays: dict[str, np.ndarray], fail) -> None:
        self.arrays, self.fail, self.used = arrays, fail, set()

    def _take(self, member: Any, where: str) -> np.ndarray:
        if not isinstance(member, str) or member not in self.arrays:
            self.fail(f"{where} refers to an undeclared array {member!r}")
        if member in self.used:
            self.fail(f"{where} refers to array {member!r} a second time")
        self.used.add(member)
        return self.arrays[member]

    def decode(self, v: Any, where: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self.fail(f"{where} is nested more than {MAX_DEPTH} deep")
        if isinstance(v, list):
            return [self.decode(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
        if not isinstance(v, dict):
            return v
        tags = [t for t in TAGS if t in v]
        if not tags:
            return {k: self.decode(x, f"{where}[{k!r}]", depth + 1) for k, x in v.items()}
        if len(v) != 1:
            self.fail(f"{where}: a tagged value {tags[0]!r} must be the only key of its object")
        tag, value = tags[0], v[tags[0]]
        if tag == "__float__":
            if not isinstance(value, str) or value not in _FLOATS:
                self.fail(f"{where}: __float__ must be 'nan', 'inf' or '-inf', received {value!r}")
            return _FLOATS[value]
        a = self._take(value, where)
        if tag == "__npscalar__":
            if a.ndim != 0:
                self.fail(f"{where}: a NumPy scalar must be stored as a 0-d array, {value} has shape {a.shape}")
            return a[()]
        return a
