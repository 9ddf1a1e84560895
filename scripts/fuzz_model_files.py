"""Fuzz cnnkit's model-file and checkpoint reader with mutated files.

Every mutated file must give either a model (the mutation left it valid, e.g. a flipped bit in a
zip timestamp) or exactly one ``ModelFormatError`` — never another exception, never a hang, and a
pickle payload must never run (it would write a marker file, which is checked after the run).

Mutations start from valid files (small models with conv/BatchNorm/Dropout layers, class names and
preprocessing, a checkpoint with a state tree, and lenet5) and are of four families:

* raw bytes, CRCs left stale: bit flips, truncation, insertion, deletion, overwritten or duplicated
  ranges, and edits of zip record fields (sizes, offsets, counts, flags, compression method);
* members rebuilt with valid CRCs, so that the deeper checks run: ``.npy`` header edits (huge,
  negative, NaN or wrong shapes, object/string/big-endian/structured dtypes, Fortran order, bad
  lengths and versions), data truncated or extended, members swapped, renamed, duplicated, deleted,
  added (including object arrays whose unpickling would write the marker), other compressions;
* config JSON edits: keys deleted or replaced by hostile values (NaN, huge numbers, wrong types,
  deep nesting), format versions, shapes, invalid UTF-8, duplicate keys, huge declared shapes made
  consistent between the config and the ``.npy`` header, and architecture edits kept consistent
  with the rest of the config (input sizes up to 2^31 - 1, hostile layer hyperparameters, layers
  deleted, duplicated or inserted) so that the model builder and the shape arithmetic run;
* whole-file replacements: empty, random, a pickle, gzip, a bare .npy, JSON text.

Case ``i`` of seed ``s`` uses ``random.Random(f"{s}-{i}")``, so any failure reproduces alone:
``python scripts/fuzz_model_files.py --seed S --start I --count 1 --save-failures DIR``.

Usage::

    python scripts/fuzz_model_files.py --count 100000 --seed 1 [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import gzip
import io
import json
import os
import pickle
import random
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path

import numpy as np

import cnnkit
from cnnkit.errors import ModelFormatError
from cnnkit.io import load as reference_load  # the seeds' weights, whatever cnnkit.load is patched to


class _Hang(BaseException):
    pass


class MarkerPayload:
    """Unpickling this writes ``path``: proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"with open({self.path!r}, 'w') as f: f.write('pickle payload ran')",))


# ============================================================================ seed files
def seed_files(marker: str) -> list[tuple[str, bytes, str]]:
    """``[(name, bytes, kind)]`` of valid files; kind is 'model' or 'checkpoint'."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        def saved(fn, *args) -> bytes:
            p = os.path.join(d, "f.npz")
            fn(p, *args)
            return Path(p).read_bytes()

        small = cnnkit.model_from_config(cnnkit.parse_inline("conv(4,3)-relu-maxpool(2)-flatten-fc(3)"), (6, 6, 2))
        small.class_names = ["a", "b", "c"]
        small.preprocessing = {"scale": 1 / 255, "mean": [0.5, 0.25], "std": [0.2, 0.3]}
        out.append(("small", saved(lambda p: cnnkit.save(small, p)), "model"))
        bn = cnnkit.model_from_config(
            cnnkit.parse_inline("conv(3,3,padding=1)-bn-relu-dropout(0.25)-gap-fc(4)"), (5, 5, 3))
        bn.class_names = ["w", "x", "y", "z"]
        out.append(("bn-dropout", saved(lambda p: cnnkit.save(bn, p)), "model"))
        state = {"epoch": 2, "step": 7, "history": [{"loss": 1.5, "acc": 0.25}, {"loss": float("nan")}],
                 "optimizer": {"lr": 0.01, "m": [np.ones((3, 3, 3, 3), np.float32), np.zeros(4)]},
                 "rng": np.random.default_rng(5).bit_generator.state, "perm": np.arange(10),
                 "flag": np.bool_(True), "scalar": np.float32(0.5), "mask": np.array([True, False])}
        out.append(("checkpoint", saved(lambda p: cnnkit.save_checkpoint(p, bn, state)), "checkpoint"))
        lenet = cnnkit.resolve_model("lenet5")
        out.append(("lenet5", saved(lambda p: cnnkit.save(lenet, p)), "model"))
    return out


# ============================================================================ zip helpers
def members_of(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def build_zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(buf, "w", compression) as zf:
            for name, data in members:
                zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=True)
    return buf.getvalue()


def split_npy(data: bytes) -> tuple[dict | None, bytes]:
    """(header dict or None, data bytes) of a valid version-1 .npy member."""
    if data[:6] != b"\x93NUMPY" or data[6] != 1:
        return None, data
    hlen = struct.unpack("<H", data[8:10])[0]
    header = ast.literal_eval(data[10:10 + hlen].decode("latin1"))
    return header, data[10 + hlen:]


def join_npy(header_text: str, payload: bytes, version: int = 1) -> bytes:
    raw = header_text.encode("latin1")
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw) & 0xFFFF) + raw + payload
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(raw)) + raw + payload


def header_text(descr, fortran, shape) -> str:
    return "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)


# ============================================================================ mutations
HUGE_SHAPES = ["(1099511627776,)", "(4611686018427387904, 4)", "(-1,)", "(2, -3)", "(nan,)", "(1.5,)",
               "()", "(0,)", "(" + "1, " * 40 + ")", "(10**12,)", "(" + "(" * 300 + ")" * 300 + ",)",
               "(99999999999999999999999999999,)", "('a',)", "None", "[3]"]
DESCRS = ["'|O'", "'<U4'", "'>f4'", "'<f8'", "'<i8'", "'|V4'", "[('a', '<f4')]", "'<c8'", "'garbage'",
          "'<M8[s]'", "'|b1'", "'<f2'", "'|u1'", "('<f4', (2,))", "''", "None", "'O'", "'<f4'", "'S3'"]
JSON_VALUES = [None, True, False, -1, 0, 1, 2, 3, 2**64, 10**30, -(10**18), 1e308, 0.5, "x", "", "float64",
               "../../etc/passwd", [], {}, [1, 2, 3], [28, 28, 1], [-1, 0, 1], {"type": "relu"},
               float("nan"), float("inf"), "weights/conv1.weight.npy", "cnnkit-checkpoint", "cnnkit-model",
               [[1, 2], [3, 4]], "\u2603" * 3]


def _json_paths(v, path=()):
    yield path
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _json_paths(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _json_paths(x, path + (i,))


def _get(v, path):
    for p in path:
        v = v[p]
    return v


def mutate_json(cfg, r: random.Random):
    """Structural edits of the config tree (in place on a copy); returns the text."""
    cfg = json.loads(json.dumps(cfg))
    for _ in range(r.randint(1, 3)):
        paths = [p for p in _json_paths(cfg) if p]
        path = r.choice(paths)
        parent, key = _get(cfg, path[:-1]), path[-1]
        op = r.random()
        if op < 0.25 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.35 and isinstance(parent, list) and len(parent) > 1:
            j = r.randrange(len(parent))
            parent[key], parent[j] = parent[j], parent[key]
        elif op < 0.45 and isinstance(parent, dict):
            parent[r.choice(["extra", "__ndarray__", "__float__", "type", "name"])] = r.choice(JSON_VALUES)
        elif op < 0.55 and isinstance(_get(cfg, path), int) and not isinstance(_get(cfg, path), bool):
            parent[key] = _get(cfg, path) + r.choice([-1, 1, 2**31, 2**40, -(2**40)])
        elif op < 0.6 and isinstance(parent, list):
            parent.append(r.choice(JSON_VALUES))
        else:
            parent[key] = r.choice(JSON_VALUES)
    text = json.dumps(cfg, allow_nan=True)
    if r.random() < 0.1:  # textual edits json.dumps cannot produce
        edit = r.choice(["dup", "deep", "num", "trunc"])
        if edit == "dup":
            text = text.replace("{", '{"format": 1, ', 1)
        elif edit == "deep":
            text = text.replace("null", "[" * 100000 + "]" * 100000, 1) if "null" in text else "[" * 100000
        elif edit == "num":
            text = text.replace("1", "1" * 5000, 1)
        else:
            text = text[: r.randrange(len(text))]
    return text


HYPER_KEYS = ["filters", "size", "stride", "padding", "dilation", "outputs", "p", "momentum", "eps", "rounding",
              "init", "bias", "negative_slope", "name", "type"]
HYPER_VALUES = [0, -1, 1, 2, 3, 5, 2**20, 2**31 - 1, 10**7 + 1, 10**12, 2**100, 1.5, -0.5, 1e-300, "same", "valid",
                "floor", "x", "conv", "linear", "flatten", "batchnorm2d", [1, 2], [0, 0], [2**40, 1], [[1, 2], [3, 4]],
                [[1, [2]], 3], [[-1, 2], [3, 4]], None, True, False, {}, [], "he_normal", "zeros"]
LAYER_TYPES = ["conv2d", "maxpool2d", "avgpool2d", "globalavgpool2d", "linear", "flatten", "relu", "leakyrelu",
               "sigmoid", "tanh", "batchnorm2d", "dropout", "unknown"]


def mutate_architecture(cfg, r: random.Random) -> str:
    """Edits that keep the config consistent up to the architecture, to exercise the model builder."""
    cfg = json.loads(json.dumps(cfg))
    arch = cfg["architecture"]
    layers = arch["layers"]
    for _ in range(r.randint(1, 3)):
        op = r.random()
        if op < 0.25:
            shape = [r.choice([1, 2, 3, 5, 7, 28, 32, 10**6, 10**7 + 1, 2**31 - 1]) for _ in range(3)]
            cfg["input_shape"] = arch["input_shape"] = shape
        elif op < 0.75 and layers:
            layer = r.choice(layers)
            layer[r.choice(HYPER_KEYS)] = r.choice(HYPER_VALUES)
        elif op < 0.85 and layers:
            del layers[r.randrange(len(layers))]
        elif op < 0.92 and layers:
            layers.insert(r.randrange(len(layers) + 1), dict(r.choice(layers)))
        else:
            layers.insert(r.randrange(len(layers) + 1), {"type": r.choice(LAYER_TYPES)})
    return json.dumps(cfg)


def _config_member(members):
    for i, (name, data) in enumerate(members):
        if name == "config.npy":
            return i, json.loads(split_npy(data)[1].decode())
    return None, None


def mutate_members(data: bytes, r: random.Random, marker: str) -> tuple[str, bytes]:
    members = members_of(data)
    ci, cfg = _config_member(members)
    weights = [i for i, (n, _) in enumerate(members) if n != "config.npy"]
    kind = r.choice(["npy_header", "npy_header", "config_json", "config_json", "architecture", "config_bytes",
                     "huge_consistent", "swap", "rename", "delete", "repeat", "extra", "object_member",
                     "member_data", "compression"])
    if kind == "npy_header" and weights:
        i = r.choice(weights + [ci])
        name, blob = members[i]
        header, payload = split_npy(blob)
        descr, fortran, shape = repr(header["descr"]), repr(header["fortran_order"]), repr(header["shape"])
        edit = r.choice(["shape", "descr", "fortran", "text", "hlen", "version", "magic", "all"])
        version = 1
        if edit in ("shape", "all"):
            shape = r.choice(HUGE_SHAPES + [repr(tuple(s + r.choice([-1, 1]) for s in header["shape"]))])
        if edit in ("descr", "all"):
            descr = r.choice(DESCRS)
        if edit in ("fortran", "all"):
            fortran = r.choice(["True", "1", "'yes'", "None"])
        text = header_text(descr, fortran, shape)
        if edit == "text":
            text = r.choice(["", "{}", "garbage", "{'descr': '<f4'}", "{" * 5000, text[: r.randrange(len(text))],
                             text + "x" * r.choice([10, 20000]), "__import__('os').system('true')",
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}"])
        if edit == "version":
            version = r.choice([2, 3, 0, 255])
        blob = join_npy(text, payload, version if version in (1, 2) else 1)
        if edit == "version" and version not in (1, 2):
            blob = blob[:6] + bytes([version]) + blob[7:]
        if edit == "hlen":
            blob = blob[:8] + struct.pack("<H", r.randrange(65536)) + blob[10:]
        if edit == "magic":
            blob = bytes([blob[0] ^ 1]) + blob[1:]
        members[i] = (name, blob)
    elif kind == "config_json" and cfg is not None:
        text = mutate_json(cfg, r)
        members[ci] = ("config.npy", npy_bytes(np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8)))
    elif kind == "architecture" and cfg is not None:
        text = mutate_architecture(cfg, r)
        members[ci] = ("config.npy", npy_bytes(np.frombuffer(text.encode(), np.uint8)))
    elif kind == "config_bytes" and cfg is not None:
        raw = bytearray(json.dumps(cfg).encode())
        edit = r.choice(["utf8", "dtype", "shape", "flip"])
        if edit == "utf8":
            raw[r.randrange(len(raw))] = r.choice([0xFF, 0xC0, 0x80, 0xED])
            arr = np.frombuffer(bytes(raw), np.uint8)
        elif edit == "dtype":
            arr = np.frombuffer(bytes(raw[: len(raw) // 4 * 4]), r.choice([np.int8, np.float32, np.uint32]))
        elif edit == "shape":
            arr = np.frombuffer(bytes(raw[: len(raw) // 2 * 2]), np.uint8).reshape(2, -1)
        else:
            raw[r.randrange(len(raw))] ^= 1 << r.randrange(8)
            arr = np.frombuffer(bytes(raw), np.uint8)
        members[ci] = ("config.npy", npy_bytes(arr))
    elif kind == "huge_consistent" and cfg is not None and cfg.get("weights"):
        entry = r.choice(cfg["weights"] + cfg.get("arrays", []))
        huge = r.choice([[2**40], [2**31, 2**31], [10**6, 10**6, 10], [2**62, 4], [1 << 28]])
        entry["shape"] = huge
        members[ci] = ("config.npy", npy_bytes(np.frombuffer(json.dumps(cfg).encode(), np.uint8)))
        for i, (name, blob) in enumerate(members):
            if name == entry["member"]:
                header, payload = split_npy(blob)
                members[i] = (name, join_npy(header_text(repr(header["descr"]), "False", repr(tuple(huge))), payload))
    elif kind == "swap" and len(weights) >= 2:
        i, j = r.sample(weights + [ci], 2)
        members[i], members[j] = (members[i][0], members[j][1]), (members[j][0], members[i][1])
    elif kind == "rename" and members:
        i = r.randrange(len(members))
        new = r.choice(["../evil.npy", "/abs.npy", "config2.npy", "weights/x.npy", "CONFIG.NPY", "a/b/c.npy",
                        "weights/conv1.weight", "", "state/99.npy", "x" * 300 + ".npy", "config.npy"])
        members[i] = (new, members[i][1])
    elif kind == "delete" and members:
        del members[r.randrange(len(members))]
    elif kind == "repeat" and members:
        members.insert(r.randrange(len(members) + 1), members[r.randrange(len(members))])
    elif kind == "extra":
        members.append((r.choice(["weights/extra.npy", "state/50.npy", "extra.npy"]),
                        npy_bytes(np.zeros(r.choice([0, 1, 7]), np.float32))))
    elif kind == "object_member":
        payload = npy_bytes(np.array([MarkerPayload(marker)], dtype=object))
        if members and r.random() < 0.7:
            i = r.randrange(len(members))
            members[i] = (members[i][0], payload)
        else:
            members.append(("weights/evil.npy", payload))
    elif kind == "member_data" and members:
        i = r.randrange(len(members))
        name, blob = members[i]
        blob = bytearray(blob)
        edit = r.choice(["trunc", "append", "flip", "insert"])
        if edit == "trunc":
            del blob[r.randrange(len(blob) + 1):]
        elif edit == "append":
            blob += os.urandom(r.choice([1, 3, 4, 100]))
        elif edit == "flip" and blob:
            for _ in range(r.randint(1, 4)):
                blob[r.randrange(len(blob))] ^= 1 << r.randrange(8)
        else:
            pos = r.randrange(len(blob) + 1)
            blob[pos:pos] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
        members[i] = (name, bytes(blob))
    elif kind == "compression":
        return kind, build_zip(members, r.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    return kind, build_zip(members)


ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")


def mutate_bytes(data: bytes, r: random.Random) -> tuple[str, bytes]:
    b = bytearray(data)
    kind = r.choice(["bitflip", "bitflip", "truncate", "insert", "delete", "overwrite", "duplicate", "zipfield",
                     "zipfield", "zipfield"])
    if kind == "bitflip":
        for _ in range(r.randint(1, 8)):
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
    elif kind == "truncate":
        del b[r.randrange(len(b)):]
    elif kind == "insert":
        pos = r.randrange(len(b) + 1)
        b[pos:pos] = bytes(r.randrange(256) for _ in range(r.choice([1, 2, 4, 16, 100])))
    elif kind == "delete":
        pos = r.randrange(len(b))
        del b[pos:pos + r.choice([1, 2, 4, 16, 100])]
    elif kind == "overwrite":
        pos = r.randrange(len(b))
        n = r.choice([1, 4, 16, 64])
        b[pos:pos + n] = bytes(r.choice([0, 0xFF, r.randrange(256)]) for _ in range(n))
    elif kind == "duplicate":
        pos = r.randrange(len(b))
        chunk = b[pos:pos + r.choice([4, 30, 200])]
        at = r.randrange(len(b) + 1)
        b[at:at] = chunk
    else:  # a field of a zip record: sizes, offsets, counts, flags, method, name lengths
        starts = [i for sig in ZIP_SIGNATURES for i in _find_all(data, sig)]
        if starts:
            s = r.choice(starts)
            off = s + r.randrange(4, 46)
            width = r.choice([1, 2, 4])
            value = r.choice([0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, r.randrange(1 << 32), 8, 12, 14, 99])
            raw = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
            b[off:off + width] = raw
    return kind, bytes(b)


def _find_all(data: bytes, sig: bytes):
    i = data.find(sig)
    while i != -1:
        yield i
        i = data.find(sig, i + 1)


def replacement(r: random.Random, marker: str) -> tuple[str, bytes]:
    kind = r.choice(["empty", "random", "pickle", "gzip", "npy", "json", "object_npz", "zip_empty"])
    if kind == "empty":
        return kind, b""
    if kind == "random":
        return kind, bytes(r.randrange(256) for _ in range(r.choice([1, 22, 100, 3000])))
    if kind == "pickle":
        return kind, pickle.dumps(MarkerPayload(marker), protocol=r.choice([2, 3, 4, 5]))
    if kind == "gzip":
        return kind, gzip.compress(b"not a model")
    if kind == "npy":
        return kind, npy_bytes(np.arange(10))
    if kind == "json":
        return kind, b'{"format": "cnnkit-model"}'
    if kind == "object_npz":
        return kind, build_zip([("config.npy", npy_bytes(np.array([MarkerPayload(marker)], dtype=object)))])
    return kind, build_zip([])


def make_case(seeds, r: random.Random, marker: str) -> tuple[str, str, bytes, str]:
    """(seed name, strategy, file bytes, seed kind) for one case."""
    name, data, kind = r.choices(seeds, weights=[4, 4, 4, 1])[0]
    family = r.random()
    if family < 0.40:
        strategy, out = mutate_bytes(data, r)
        strategy = f"raw:{strategy}"
    elif family < 0.95:
        strategy, out = mutate_members(data, r, marker)
        strategy = f"member:{strategy}"
    else:
        strategy, out = replacement(r, marker)
        strategy = f"file:{strategy}"
    if r.random() < 0.15:  # stack a second mutation
        s2, out = mutate_bytes(out, r) if out else ("none", out)
        strategy = f"{strategy}+{s2}"
    return name, strategy, out, kind


# ============================================================================ running
@dataclasses.dataclass
class Report:
    cases: int = 0
    loads: int = 0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    by_strategy: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(collections.Counter))
    failures: list = dataclasses.field(default_factory=list)
    max_seconds: float = 0.0
    seconds: float = 0.0
    marker_appeared: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures and not self.marker_appeared

    def summary(self) -> str:
        lines = [f"{self.cases} mutated files, {self.loads} loads in {self.seconds:.1f} s "
                 f"(slowest load {self.max_seconds * 1000:.1f} ms)",
                 "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
                 f"pickle marker file appeared: {'YES' if self.marker_appeared else 'no'}"]
        for f in self.failures[:20]:
            lines.append(f"FAILURE case {f['case']} ({f['seed_file']}, {f['strategy']}): {f['error']}")
        return "\n".join(lines)


def run(count: int, seed: int = 0, start: int = 0, workdir: str | None = None, timeout: float = 20.0,
        save_failures: str | None = None, progress_every: int = 0) -> Report:
    """Load ``count`` mutated files. Outcomes: 'ModelFormatError'; 'loaded' (the model's weights
    equal the seed file's) or 'loaded-changed' (they differ: allowed only for mutations that
    rebuild members with fresh CRCs or edit the architecture, which can make another valid file);
    failures: any other exception, a load taking longer than ``timeout`` seconds (a hang), or a
    'loaded-changed' from a raw byte mutation (a change that slipped past the stale CRCs)."""
    report = Report()
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        marker = os.path.join(d, "PICKLE_RAN")
        seeds = seed_files(marker)
        path = os.path.join(d, "case.npz")
        reference = {}
        for name, data, _ in seeds:
            Path(path).write_bytes(data)
            reference[name] = reference_load(path).state_dict()

        def on_alarm(signum, frame):
            raise _Hang()

        old = signal.signal(signal.SIGALRM, on_alarm)
        t0 = time.perf_counter()
        try:
            for i in range(start, start + count):
                r = random.Random(f"{seed}-{i}")
                name, strategy, data, kind = make_case(seeds, r, marker)
                Path(path).write_bytes(data)
                loaders = [cnnkit.load] + ([cnnkit.load_checkpoint] if kind == "checkpoint" else [])
                for loader in loaders:
                    report.loads += 1
                    t = time.perf_counter()
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                    try:
                        model = loader(path)
                        model = model[0] if isinstance(model, tuple) else model
                        outcome = "loaded" if _same(model.state_dict(), reference[name]) else "loaded-changed"
                    except ModelFormatError:
                        outcome = "ModelFormatError"
                    except _Hang:
                        outcome = "HANG"
                    except Exception as e:  # noqa: BLE001 — exactly what the fuzzer looks for
                        outcome = f"other:{type(e).__name__}"
                        report.failures.append({"case": i, "seed_file": name, "strategy": strategy,
                                                "loader": loader.__name__, "error": f"{type(e).__name__}: {e}",
                                                "traceback": traceback.format_exc()})
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                    if outcome == "HANG":
                        report.failures.append({"case": i, "seed_file": name, "strategy": strategy,
                                                "loader": loader.__name__, "error": f"no answer in {timeout} s"})
                    if outcome == "loaded-changed" and strategy.startswith("raw:"):
                        outcome = "SILENT-CHANGE"
                        report.failures.append({"case": i, "seed_file": name, "strategy": strategy,
                                                "loader": loader.__name__,
                                                "error": "a raw byte mutation loaded with different weights"})
                    report.max_seconds = max(report.max_seconds, time.perf_counter() - t)
                    report.outcomes[outcome] += 1
                    report.by_strategy[strategy.split("+")[0]][outcome] += 1
                    if outcome not in ("loaded", "loaded-changed", "ModelFormatError") and save_failures:
                        os.makedirs(save_failures, exist_ok=True)
                        Path(save_failures, f"case-{seed}-{i}.npz").write_bytes(data)
                report.cases += 1
                if progress_every and report.cases % progress_every == 0:
                    print(f"  {report.cases}/{count} cases, {dict(report.outcomes)}", flush=True)
        finally:
            signal.signal(signal.SIGALRM, old)
            report.seconds = time.perf_counter() - t0
        report.marker_appeared = os.path.exists(marker)
    return report


def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0, help="first case index (to replay one case)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds after which a load counts as a hang")
    p.add_argument("--save-failures", metavar="DIR", help="write each failing file here")
    p.add_argument("--json", metavar="FILE", help="write the counts as JSON")
    p.add_argument("--progress", type=int, default=10_000, help="print a line every N cases (0: never)")
    args = p.parse_args(argv)
    report = run(args.count, args.seed, args.start, timeout=args.timeout, save_failures=args.save_failures,
                 progress_every=args.progress)
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cases": report.cases, "loads": report.loads, "seed": args.seed, "start": args.start,
            "outcomes": dict(report.outcomes), "by_strategy": {k: dict(v) for k, v in report.by_strategy.items()},
            "failures": report.failures, "marker_appeared": report.marker_appeared,
            "seconds": round(report.seconds, 1), "slowest_load_seconds": round(report.max_seconds, 4),
            "numpy": np.__version__, "python": sys.version.split()[0], "cnnkit": cnnkit.__version__}, indent=1))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
