"""A pickle payload that would write a marker file when unpickled is refused, and never runs."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

import cnnkit
from cnnkit.errors import ModelFormatError


class Payload:
    """Unpickling this writes ``path`` (the same trick a malicious model file would use)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"with open({self.path!r}, 'w') as f: f.write('pickle payload ran')",))


def object_npy(marker) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([Payload(str(marker))], dtype=object), allow_pickle=True)
    return buf.getvalue()


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """Positive control: without the refusal the marker *would* appear."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(str(marker))))
    assert marker.read_text() == "pickle payload ran"
    marker.unlink()
    np.load(io.BytesIO(object_npy(marker)), allow_pickle=True)
    assert marker.exists()


def _valid_members(tmp_path):
    m = cnnkit.resolve_model("flatten-fc(3)", input_shape=(2, 2, 1))
    cnnkit.save(m, tmp_path / "valid.npz")
    with zipfile.ZipFile(tmp_path / "valid.npz") as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


@pytest.mark.parametrize("where", ["config", "weight", "extra member"])
def test_object_dtype_member_is_refused_and_never_unpickled(tmp_path, where):
    marker = tmp_path / "MARKER"
    items = _valid_members(tmp_path)
    evil = object_npy(marker)
    if where == "config":
        items[0] = (items[0][0], evil)
    elif where == "weight":
        items[1] = (items[1][0], evil)
    else:
        items.append(("weights/evil.npy", evil))
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items:
            zf.writestr(name, data)
    for loader in (cnnkit.load, cnnkit.load_checkpoint):
        with pytest.raises(ModelFormatError, match=r"'.*evil\.npz'"):
            loader(path)
    assert not marker.exists()


def test_object_member_message_names_pickle(tmp_path):
    marker = tmp_path / "MARKER"
    items = _valid_members(tmp_path)
    items[1] = (items[1][0], object_npy(marker))
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items:
            zf.writestr(name, data)
    with pytest.raises(ModelFormatError, match=r"holds Python objects \(dtype object\); refused \(cnnkit never unpickles\)"):
        cnnkit.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_raw_pickle_renamed_npz_is_refused_and_never_unpickled(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(Payload(str(marker)), protocol=protocol))
    with pytest.raises(ModelFormatError, match=r"model file '.*model\.npz': is a Python pickle, not a cnnkit "
                                               r"archive; refused \(cnnkit never unpickles\)"):
        cnnkit.load(path)
    with pytest.raises(ModelFormatError, match="is a Python pickle"):
        cnnkit.load_checkpoint(path)
    assert not marker.exists()


def test_bare_object_npy_renamed_npz_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.npz"
    path.write_bytes(object_npy(marker))
    with pytest.raises(ModelFormatError, match="is not a valid zip archive"):
        cnnkit.load(path)
    assert not marker.exists()


def test_protocol_0_and_1_pickles_are_refused_too(tmp_path):
    marker = tmp_path / "MARKER"
    for protocol in (0, 1):
        path = tmp_path / f"p{protocol}.npz"
        path.write_bytes(pickle.dumps(Payload(str(marker)), protocol=protocol))
        with pytest.raises(ModelFormatError, match="is not a valid zip archive"):
            cnnkit.load(path)
    assert not marker.exists()
