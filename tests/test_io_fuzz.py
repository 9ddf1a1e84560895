"""Fuzzing the model-file reader: 10,000 mutated files give a model or one ModelFormatError,
never another exception, never a hang, and a pickle payload never runs.

The mutation engine is ``scripts/fuzz_model_files.py`` (which also runs the longer 100,000-file
campaign recorded in docs/reliability.md); each case is reproducible from its seed and index.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_model_files.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_model_files", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_fuzzer_detects_a_reader_that_raises_something_else(fuzz, monkeypatch):
    """The harness itself can fail: a reader that lets a KeyError escape is reported."""
    import cnnkit

    real = cnnkit.load

    def leaky(path):
        if Path(path).stat().st_size % 3 == 0:
            raise KeyError("escaped")
        return real(path)

    monkeypatch.setattr(cnnkit, "load", leaky)
    report = fuzz.run(60, seed=7)
    assert not report.ok and report.outcomes["other:KeyError"] > 0
    assert "escaped" in report.failures[0]["error"]


@pytest.mark.slow
def test_ten_thousand_mutated_files_give_only_model_format_errors(fuzz, tmp_path):
    # Hang guard: each load gets 20 s (SIGALRM, counted as a failure); the whole test dumps
    # tracebacks and exits after 15 minutes should something block signals.
    faulthandler.dump_traceback_later(900, exit=True)
    try:
        report = fuzz.run(10_000, seed=2024, workdir=str(tmp_path), timeout=20.0)
    finally:
        faulthandler.cancel_dump_traceback_later()
    print(report.summary())
    assert report.cases == 10_000
    assert report.failures == []
    assert not report.marker_appeared
    assert set(report.outcomes) <= {"loaded", "loaded-changed", "ModelFormatError"}
    # the mutations reach the deep checks, not only the zip layer
    for strategy in ("member:npy_header", "member:config_json", "member:architecture", "member:huge_consistent",
                     "member:object_member", "raw:zipfield", "raw:bitflip", "file:pickle"):
        assert report.by_strategy[strategy]["ModelFormatError"] > 0, strategy
