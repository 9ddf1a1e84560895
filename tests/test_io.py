"""Model files and checkpoints: round trips, refusals with pinned messages, atomic writes."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest

import cnnkit
from cnnkit import io as cio
from cnnkit.checkpoint import clean_stray_temporaries
from cnnkit.errors import ModelFormatError
from cnnkit.spec import model_from_config, parse_inline, resolve_model

SMALL = "conv(4,3)-bn-relu-dropout(0.25)-maxpool(2)-flatten-fc(3)"


def small_model(dtype="float32", seed=0):
    m = model_from_config(parse_inline(SMALL), (6, 6, 2), dtype=dtype, seed=seed)
    m.class_names = ["a", "b", "c"]
    m.preprocessing = {"scale": 1 / 255, "mean": [0.5, 0.25], "std": [0.2, 0.3]}
    return m


def members(path):
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def write_zip(path, items, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in items:
            zf.writestr(name, data)


def npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def config_of(path) -> dict:
    return json.loads(np.load(path, allow_pickle=False)["config"].tobytes())


def with_config(src, dst, edit):
    """Copy ``src`` to ``dst`` with its config passed through ``edit(cfg)`` (valid CRCs)."""
    items = members(src)
    cfg = json.loads(np.lib.format.read_array(io.BytesIO(items[0][1])).tobytes())
    text = edit(cfg)
    text = text if isinstance(text, str) else json.dumps(cfg)
    items[0] = ("config.npy", npy(np.frombuffer(text.encode(), np.uint8)))
    write_zip(dst, items)
    return dst


@pytest.fixture
def saved(tmp_path):
    m = small_model()
    path = tmp_path / "model.npz"
    cnnkit.save(m, path)
    return m, path


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["lenet5", "cifar-net", "shapes-net"])
def test_builtin_models_give_identical_predictions_after_save_load(name, tmp_path, rng):
    m = resolve_model(name, seed=3)
    x = rng.standard_normal((4, *m.input_shape)).astype(np.float32)
    path = tmp_path / f"{name}.npz"
    cnnkit.save(m, path)
    back = cnnkit.load(path)
    assert back.config() == m.config()
    state, state_back = m.state_dict(), back.state_dict()
    assert list(state) == list(state_back)
    for key in state:
        assert state_back[key].dtype == state[key].dtype and np.array_equal(state_back[key], state[key]), key
    other = resolve_model(name, seed=4)  # a freshly built model predicts differently: the test can fail
    assert not np.array_equal(other.predict(x), m.predict(x))
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


def test_round_trip_keeps_class_names_preprocessing_dtype_and_bn_buffers(tmp_path, rng):
    m = small_model("float64")
    m.train()
    m.forward(rng.standard_normal((8, 6, 6, 2)))  # moves the BatchNorm running statistics
    cnnkit.save(m, tmp_path / "m.npz")
    back = cnnkit.load(tmp_path / "m.npz")
    assert back.dtype == np.float64 and back.input_shape == (6, 6, 2)
    assert back.class_names == ["a", "b", "c"]
    assert back.preprocessing == m.preprocessing
    assert np.array_equal(back["bn1"].buffers["running_mean"], m["bn1"].buffers["running_mean"])
    assert not np.array_equal(m["bn1"].buffers["running_mean"], 0)
    x = rng.standard_normal((3, 6, 6, 2))
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


def test_file_is_a_plain_npz_with_a_uint8_json_config(saved):
    m, path = saved
    z = np.load(path, allow_pickle=False)
    assert z["config"].dtype == np.uint8 and z["config"].ndim == 1
    cfg = json.loads(z["config"].tobytes())
    assert cfg["format"] == "cnnkit-model" and cfg["format_version"] == cio.FORMAT_VERSION
    assert cfg["cnnkit_version"] == cnnkit.__version__ and cfg["input_shape"] == [6, 6, 2]
    assert cfg["architecture"] == m.config() and cfg["dtype"] == "float32"
    assert np.array_equal(z["weights/conv1.weight"], m["conv1"].params["weight"].value)
    assert sorted(z.files) == sorted(["config"] + [f"weights/{k}" for k in m.state_dict()])


def test_same_model_gives_the_same_bytes(tmp_path):
    cnnkit.save(small_model(), tmp_path / "a.npz")
    cnnkit.save(small_model(), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_resolve_model_and_summary_cli_read_model_files(saved, capsys):
    _, path = saved
    assert resolve_model(str(path)).class_names == ["a", "b", "c"]
    from cnnkit.cli import main

    assert main(["summary", str(path)]) == 0


# ----------------------------------------------------------------------------- refusals
def test_missing_file_is_a_model_format_error_and_cli_exit_1(tmp_path, capsys):
    with pytest.raises(ModelFormatError, match=r"model file '.*nope\.npz': not found"):
        cnnkit.load(tmp_path / "nope.npz")
    with pytest.raises(ModelFormatError, match="is a folder"):
        cnnkit.load(tmp_path)
    from cnnkit.cli import main

    assert main(["summary", str(tmp_path / "nope.npz")]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err


def test_newer_format_version_is_refused_naming_both_versions(saved, tmp_path):
    _, path = saved

    def newer(cfg):
        cfg["format_version"] = cio.FORMAT_VERSION + 1
        cfg["cnnkit_version"] = "9.9.9"
        cfg["new_key"] = "a future field"

    bad = with_config(path, tmp_path / "new.npz", newer)
    with pytest.raises(ModelFormatError, match=rf"format version {cio.FORMAT_VERSION + 1} \(by cnnkit 9\.9\.9\); "
                       rf"this cnnkit {cnnkit.__version__} reads format version {cio.FORMAT_VERSION} at most"):
        cnnkit.load(bad)


def _set(path, value):
    def edit(cfg):
        target = cfg
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set(["input_shape"], [6, "NaN", 2]), r"'input_shape' must be \[H, W, C\]"),
    (_set(["weights", 0, "shape"], [3, 3, 2, -4]), r"shape must be a list of at most 32 non-negative integers"),
    (_set(["weights", 0, "shape"], [3, 3, 2, 1.5]), r"shape must be a list"),
    (_set(["weights", 0, "dtype"], "|O"), r"dtype '\|O' is not one of"),
    (_set(["weights", 0, "shape"], [2**40]), r"exceeds the limit of 1073741824 bytes per array"),
    (_set(["dtype"], "float16"), r"'dtype' must be 'float32' or 'float64'"),
    (_set(["format"], "something-else"), r"'format' is 'something-else'"),
    (_set(["format_version"], "1"), r"'format_version' must be a positive integer"),
    (_set(["class_names"], ["a", 2, "c"]), r"'class_names' must be null or a list of strings"),
    (_set(["class_names"], ["a", "b"]), r"has 2 class names for 3 outputs"),
    (_set(["preprocessing", "std"], [0.2, 0]), r"preprocessing 'std' must be 1 or 2 finite numbers > 0"),
    (_set(["architecture", "layers"], []), r"'layers' must be a list of 1 to"),
    (_set(["architecture", "layers", 0, "filters"], -3), r"the architecture cannot be built"),
    (_set(["architecture", "layers", 0, "type"], "warp_drive"), r"unknown layer type 'warp_drive'"),
    (_set(["architecture", "layers", 0, "filters"], 10**9), r"needs 33000000003 parameters, the file declares 143 values"),
    (_set(["architecture", "layers", 0, "filters"], 3), r"weight conv1.weight is declared \(3, 3, 2, 4\) <f4, "
                                                        r"the architecture needs \(3, 3, 2, 3\)"),
    (_set(["architecture", "input_shape"], [7, 7, 2]), r"architecture input_shape/dtype differ"),
    (_set(["extra"], 1), r"unexpected \['extra'\]"),
    (lambda cfg: cfg.pop("weights"), r"missing \['weights'\]"),
    (lambda cfg: cfg["weights"].pop(), r"members do not match the config: missing none, unexpected \['weights/fc1"),
    (lambda cfg: cfg["weights"][-1].update(name="other.bias"),
     r"weights do not match the architecture: missing \['fc1.bias'\], unexpected \['other.bias'\]"),
    (lambda cfg: json.dumps(cfg).replace('"input_shape": [6, 6, 2]', '"input_shape": [NaN, 6, 2]', 1),
     r"not valid JSON \(ValueError: NaN is not allowed\)"),
    (lambda cfg: json.dumps(cfg).replace("{", '{"dtype": "float32", ', 1), r"duplicate keys \['dtype'\]"),
    (lambda cfg: json.dumps(cfg)[:-5], r"the config is not valid JSON"),
    (lambda cfg: "[" * 100_000 + "]" * 100_000, r"not valid JSON \(RecursionError"),
    (lambda cfg: json.dumps(cfg).replace("6", "1e400", 1), r"number 1e400 is out of range"),
])
def test_malformed_configs_give_one_clear_error(saved, tmp_path, edit, message):
    _, path = saved
    bad = with_config(path, tmp_path / "bad.npz", edit)
    with pytest.raises(ModelFormatError, match=message) as info:
        cnnkit.load(bad)
    assert str(bad) in str(info.value)


def test_damaged_archives(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cases = {
        "truncated.npz": (data[: len(data) // 2], r"is not a valid zip archive"),
        "text.npz": (b"hello, I am not a model", r"is not a valid zip archive"),
        "empty.npz": (b"", r"is not a valid zip archive"),
    }
    # a flipped bit in the first weight's data: the zip CRC catches it
    offset = data.index(b"NUMPY", data.index(b"weights/conv1.weight.npy")) + 200
    cases["crc.npz"] = (data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1:], r"Bad CRC-32")
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelFormatError, match=message):
            cnnkit.load(tmp_path / name)


def _rewrite_member(src, dst, member, new):
    write_zip(dst, [(n, new if n == member else d) for n, d in members(src)])
    return dst


def test_member_level_refusals(saved, tmp_path):
    _, path = saved
    items = dict(members(path))
    w = items["weights/conv1.weight.npy"]
    header_end = w.index(b"\n") + 1
    cases = [
        (b"\x93NUMPY\x01\x00" + struct.pack("<H", 9000) + w[10:], r"invalid \.npy header"),
        (w[:header_end] + w[header_end:-4], r"header declares \(3, 3, 2, 4\) <f4 = 288 bytes of data, the member holds 284"),
        (w + b"\0\0\0\0", r"the member holds 292"),
        (npy(np.zeros((3, 3, 2, 4), np.float64)), r"dtype '<f8', the config declares '<f4'"),
        (npy(np.zeros((4, 3, 2, 3), np.float32)), r"shape \(4, 3, 2, 3\), the config declares \(3, 3, 2, 4\)"),
        (npy(np.zeros((3, 3, 2, 4), ">f4")), r"dtype '>f4', the config declares '<f4'"),
    ]
    for i, (blob, message) in enumerate(cases):
        bad = _rewrite_member(path, tmp_path / f"m{i}.npz", "weights/conv1.weight.npy", blob)
        with pytest.raises(ModelFormatError, match=message):
            cnnkit.load(bad)
    extra = tmp_path / "extra.npz"
    write_zip(extra, [*members(path), ("weights/spare.npy", npy(np.zeros(3, np.float32)))])
    with pytest.raises(ModelFormatError, match=r"unexpected \['weights/spare.npy'\]"):
        cnnkit.load(extra)
    evil = tmp_path / "evil.npz"
    write_zip(evil, [*members(path), ("../evil.npy", b"")])
    with pytest.raises(ModelFormatError, match=r"unexpected member '\.\./evil\.npy'"):
        cnnkit.load(evil)
    dup = tmp_path / "dup.npz"
    with pytest.warns(UserWarning):
        write_zip(dup, [*members(path), members(path)[1]])
    with pytest.raises(ModelFormatError, match="repeats a member name"):
        cnnkit.load(dup)
    bz = tmp_path / "bz.npz"
    write_zip(bz, members(path), zipfile.ZIP_BZIP2)
    with pytest.raises(ModelFormatError, match="compression method 12"):
        cnnkit.load(bz)
    deflated = tmp_path / "deflated.npz"  # np.savez_compressed-style archives are read
    write_zip(deflated, members(path), zipfile.ZIP_DEFLATED)
    assert cnnkit.load(deflated).class_names == ["a", "b", "c"]


def test_huge_declared_shape_is_refused_before_allocating(tmp_path):
    """A 512 MiB array declared consistently in the config and the .npy header, with 24 real bytes:
    refused with less than 10 MB allocated (under the 1 GiB limit, so only the size check refuses it)."""
    cnnkit.save_checkpoint(tmp_path / "c.npz", small_model(), {"big": np.zeros(3)})

    def edit(cfg):
        cfg["arrays"][0]["shape"] = [2**26]

    bad = with_config(tmp_path / "c.npz", tmp_path / "huge.npz", edit)
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (67108864,), }"
    blob = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + np.zeros(3).tobytes()
    _rewrite_member(bad, bad, "state/0.npy", blob)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match=r"member state/0.npy: header declares \(67108864,\) <f8 = "
                                                   r"536870912 bytes of data, the member holds 24"):
            cnnkit.load_checkpoint(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_size_limits_are_checked_on_the_zip_directory(saved, monkeypatch):
    _, path = saved
    monkeypatch.setattr(cio, "MAX_MEMBER_BYTES", 200)
    with pytest.raises(ModelFormatError, match=r"member config\.npy is \d+ bytes uncompressed, over the limit of 200"):
        cnnkit.load(path)
    monkeypatch.setattr(cio, "MAX_MEMBER_BYTES", 1 << 30)
    monkeypatch.setattr(cio, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(ModelFormatError, match=r"holds \d+ bytes uncompressed, over the limit of 1000"):
        cnnkit.load(path)


def test_save_refuses_what_load_would_refuse(tmp_path):
    m = model_from_config(parse_inline("fc(3)"))  # not built
    with pytest.raises(ModelFormatError, match="is not built"):
        cnnkit.save(m, tmp_path / "m.npz")
    m = small_model()
    m.class_names = ["only", "two"]
    with pytest.raises(ModelFormatError, match="cannot save model: 2 class names for 3 outputs"):
        cnnkit.save(m, tmp_path / "m.npz")
    m = small_model()
    m.preprocessing = {"scale": float("nan")}
    with pytest.raises(ModelFormatError, match="cannot save model preprocessing: Out of range float"):
        cnnkit.save(m, tmp_path / "m.npz")
    with pytest.raises(ModelFormatError, match="expected a Sequential model, received dict"):
        cnnkit.save({}, tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- atomic writes
def test_failure_mid_write_leaves_the_old_file_intact(saved, monkeypatch):
    old_model, path = saved
    before = path.read_bytes()
    calls = []
    real = np.lib.format.write_array

    def failing(fp, array, *a, **k):
        calls.append(1)
        if len(calls) == 3:  # config and one weight written, then the disk "fails"
            raise OSError(28, "No space left on device")
        return real(fp, array, *a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="No space left"):
        cnnkit.save(small_model(seed=9), path)
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]  # no temporary left
    monkeypatch.setattr(np.lib.format, "write_array", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        cnnkit.save(small_model(seed=9), path)
    assert path.read_bytes() == before and len(list(path.parent.iterdir())) == 1
    monkeypatch.undo()
    np.testing.assert_array_equal(cnnkit.load(path).state_dict()["conv1.weight"], old_model.state_dict()["conv1.weight"])


def test_kill_9_during_saves_never_leaves_a_broken_file(tmp_path):
    """A child process saves two different models over one path in a loop; it is killed at
    5 moments; the file always loads as one of the two, and the stray temporaries are cleaned."""
    script = textwrap.dedent(f"""
        import sys, cnnkit
        a = cnnkit.resolve_model("shapes-net", seed=1)
        b = cnnkit.resolve_model("shapes-net", seed=2)
        cnnkit.save(a, sys.argv[1])
        print("ready", flush=True)
        while True:
            cnnkit.save(b, sys.argv[1]); cnnkit.save(a, sys.argv[1])
    """)
    path = tmp_path / "model.npz"
    expected = [resolve_model("shapes-net", seed=s).state_dict()["fc2.weight"] for s in (1, 2)]
    r = np.random.default_rng(0)
    for trial in range(5):
        child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        import time

        time.sleep(float(r.uniform(0.0, 0.3)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        w = cnnkit.load(path).state_dict()["fc2.weight"]
        assert any(np.array_equal(w, e) for e in expected)
        clean_stray_temporaries(tmp_path)
        assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_atomic_write_and_clean_stray_temporaries(tmp_path):
    cio.atomic_write(tmp_path / "a.json", '{"x": 1}')
    cio.atomic_write(tmp_path / "b.bin", b"\x00\x01")
    stray = tmp_path / ".checkpoint.npz.1234-abcd.cnnkit-tmp"
    stray.write_bytes(b"half a file")
    keep = [tmp_path / ".hidden", tmp_path / "x.cnnkit-tmp", tmp_path / "checkpoint.npz"]
    for p in keep:
        p.write_bytes(b"")
    assert clean_stray_temporaries(tmp_path) == [stray]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", "b.bin", *(p.name for p in keep)])
    assert (tmp_path / "a.json").read_text() == '{"x": 1}'
    assert clean_stray_temporaries(tmp_path / "missing") == []


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trips_the_state_tree_and_dropout_generators(tmp_path, rng):
    m = small_model()
    gen = np.random.default_rng(42)
    gen.random(3)
    state = {
        "epoch": 3, "step": 17, "done": False, "note": None, "name": "run ✓",
        "history": [{"loss": 0.5, "val_loss": float("nan")}, {"loss": float("inf"), "x": -float("inf")}],
        "optimizer": {"lr": 0.01, "moments": [rng.standard_normal((3, 3, 2, 4)).astype(np.float32), np.zeros(0)]},
        "rng": gen.bit_generator.state, "perm": rng.permutation(10), "mask": np.array([[True, False]]),
        "f32": np.float32(0.1), "i64": np.int64(-5), "b": np.bool_(True), "zero_d": np.array(2.5),
        "pair": (1, 2), "big": 2**100, "u8": np.arange(5, dtype=np.uint8),
    }
    m["dropout1"].rng.random(7)
    cnnkit.save_checkpoint(tmp_path / "c.npz", m, state)
    back, got = cnnkit.load_checkpoint(tmp_path / "c.npz")
    assert set(got) == set(state)
    for key in ("epoch", "step", "done", "note", "name", "rng", "big"):
        assert got[key] == state[key]
    assert got["pair"] == [1, 2]
    assert got["history"][0]["loss"] == 0.5 and np.isnan(got["history"][0]["val_loss"])
    assert got["history"][1] == {"loss": float("inf"), "x": -float("inf")}
    for key in ("perm", "mask", "u8", "zero_d"):
        assert got[key].dtype == state[key].dtype and got[key].shape == state[key].shape
        assert np.array_equal(got[key], state[key]) and got[key].flags.writeable
    for a, b in zip(got["optimizer"]["moments"], state["optimizer"]["moments"]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for key in ("f32", "i64", "b"):
        assert type(got[key]) is type(state[key]) and got[key] == state[key]
    restored = np.random.default_rng(0)
    restored.bit_generator.state = got["rng"]
    assert restored.random() == gen.random()
    assert back["dropout1"].rng.random() == m["dropout1"].rng.random()
    for key, value in m.state_dict().items():
        assert np.array_equal(back.state_dict()[key], value)
    assert cnnkit.load(tmp_path / "c.npz").class_names == ["a", "b", "c"]  # load() reads checkpoints too


@pytest.mark.parametrize("state, message", [
    ({1: "x"}, r"state has key 1; keys must be strings"),
    ({"a": {"__ndarray__": "x"}}, r"state\['a'\] uses the reserved key '__ndarray__'"),
    ({"a": [{1, 2}]}, r"state\['a'\]\[0\] is a set"),
    ({"a": np.array([object()])}, r"dtype object is not storable"),
    ({"a": np.zeros(2, complex)}, r"dtype complex128 is not storable"),
    ([1, 2], r"state must be a dict, received list"),
])
def test_save_checkpoint_refuses_unstorable_state(tmp_path, state, message):
    with pytest.raises(ModelFormatError, match=message):
        cnnkit.save_checkpoint(tmp_path / "c.npz", small_model(), state)
    assert not list(tmp_path.iterdir())


def test_checkpoint_and_model_file_are_not_confused(saved, tmp_path):
    _, path = saved
    with pytest.raises(ModelFormatError, match=r"checkpoint '.*model.npz': is a model file, expected a checkpoint"):
        cnnkit.load_checkpoint(path)


def test_checkpoint_state_references_are_checked(tmp_path):
    cnnkit.save_checkpoint(tmp_path / "c.npz", small_model(), {"a": np.zeros(3), "b": 1})

    def dangling(cfg):
        cfg["state"]["b"] = {"__ndarray__": "state/7.npy"}

    def twice(cfg):
        cfg["state"]["b"] = {"__ndarray__": "state/0.npy"}

    def unused(cfg):
        cfg["state"]["a"] = 0

    for edit, message in [(dangling, r"state\['b'\] refers to an undeclared array 'state/7.npy'"),
                          (twice, r"refers to array 'state/0.npy' a second time"),
                          (unused, r"arrays \['state/0.npy'\] are declared but not used")]:
        bad = with_config(tmp_path / "c.npz", tmp_path / "bad.npz", edit)
        with pytest.raises(ModelFormatError, match=message):
            cnnkit.load_checkpoint(bad)
        with pytest.raises(ModelFormatError, match=message):
            cnnkit.load(bad)
