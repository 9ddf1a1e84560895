"""The command line of the foundation: ``summary``, ``conv``, ``pool``, ``fc``, ``--version``,
``python -m cnnkit``; every lecture example through it; every bad input → exit 2, a usage hint and
one line naming the problem, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cnnkit
from cnnkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``cnnkit ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own exits (--version, bad arguments)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def run_module(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnkit", *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=120)


# --------------------------------------------------------------------------- the lecture through the CLI
def test_four_5x5x3_filters_on_32x32x3(capsys):
    code, out, _ = cli(capsys, "conv", "--input", "32x32x3", "--filters", "4", "--size", "5")
    assert code == 0
    assert "(32 - 5 + 0)/1 + 1 = 28" in out
    assert "Output volume: 28×28×4" in out
    assert "each filter spans the input's full depth C = 3" in out


@pytest.mark.parametrize("f, n", [(3, 30), (5, 28)])
def test_32x32_with_3x3_and_5x5(capsys, f, n):
    code, out, _ = cli(capsys, "conv", "--input", "32x32x1", "--filters", "1", "--size", str(f))
    assert code == 0 and f"Output volume: {n}×{n}×1" in out


@pytest.mark.parametrize("stride, n", [("1", 5), ("2", 3)])
def test_n7_f3_strides_that_fit(capsys, stride, n):
    code, out, _ = cli(capsys, "conv", "--input", "7x7x1", "--filters", "1", "--size", "3", "--stride", stride)
    assert code == 0
    assert f"(7 - 3 + 0)/{stride} + 1 = {n}" in out and f"Output volume: {n}×{n}×1" in out


def test_n7_f3_stride3_refused_and_its_suggestions_work(capsys):
    base = ["conv", "--input", "7x7x1", "--filters", "1", "--size", "3"]
    code, out, err = cli(capsys, *base, "--stride", "3")
    assert code == 2 and out == ""
    assert err.startswith("usage: cnnkit conv")
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert "(7 - 3 + 0)/3 + 1 = 2.33 is not whole" in line
    assert "PyTorch would floor this to 2×2, ignoring the last 1 row and 1 column (--rounding floor" in line
    suggestions = re.findall(r"(?i)(padding P|stride S)=(\d+) gives (\d+)×(\d+)", line)
    assert {s[0].lower() for s in suggestions} == {"padding p", "stride s"}
    for what, value, h, w in suggestions:
        option = ["--pad", value, "--stride", "3"] if what.lower() == "padding p" else ["--stride", value]
        code, out, _ = cli(capsys, *base, *option)
        assert code == 0 and f"Output volume: {h}×{w}×1" in out
    code, out, _ = cli(capsys, *base, "--stride", "3", "--rounding", "floor")
    assert code == 0
    assert "= 2.33 → floor 2: the last 1 row ignored" in out and "Output volume: 2×2×1" in out


@pytest.mark.parametrize("f", [3, 5, 7])
def test_padding_f_minus_1_over_2_keeps_the_size(capsys, f):
    for pad in (str((f - 1) // 2), "same"):
        code, out, _ = cli(capsys, "conv", "--input", "32x32x3", "--filters", "8", "--size", str(f), "--pad", pad)
        assert code == 0 and "Output volume: 32×32×8" in out


def test_ten_5x5_filters_760_parameters_against_31457280(capsys):
    code, out, _ = cli(capsys, "conv", "--input", "32x32x3", "--filters", "10", "--size", "5",
                       "--stride", "1", "--pad", "2")
    assert code == 0
    assert "(32 - 5 + 2×2)/1 + 1 = 32" in out
    assert "Output volume: 32×32×10" in out
    assert "10 × (5×5×3 + 1) = 760 (750 weights + 10 biases)" in out
    assert "3,072 × 10,240 = 31,457,280 weights" in out


def test_pooling_has_no_parameters(capsys):
    code, out, _ = cli(capsys, "pool", "--input", "28x28x6", "--size", "2", "--stride", "2")
    assert code == 0
    assert "(28 - 2 + 0)/2 + 1 = 14" in out and "Output volume: 14×14×6" in out
    assert "Parameters: 0" in out
    code, out, _ = cli(capsys, "pool", "--input", "224x224x64", "--size", "2", "--kind", "avg")
    assert code == 0 and "AvgPool2d" in out and "Output volume: 112×112×64" in out


def test_fc(capsys):
    code, out, _ = cli(capsys, "fc", "--input", "5x5x16", "--outputs", "120")
    assert code == 0
    assert "5×5×16 = 400 inputs → 120 outputs" in out
    assert "120 × (400 + 1) = 48,120" in out
    assert "120 × (5×5×16 + 1) = 48,120 parameters, exactly as many" in out
    code, out, _ = cli(capsys, "fc", "--input", "84", "--outputs", "10")
    assert code == 0 and "10 × (84 + 1) = 850" in out


@pytest.mark.parametrize("model, total", [("lenet5", "61,706"), ("cifar-net", "2,168,362")])
def test_summary_of_the_builtin_models(capsys, model, total):
    code, out, _ = cli(capsys, "summary", model)
    assert code == 0 and f"Total parameters: {total}" in out


def test_summary_formats(capsys):
    code, out, _ = cli(capsys, "summary", "conv(10,5,padding=2)", "--input", "32x32x3", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["total_params"] == 760
    (layer,) = data["layers"]
    assert layer["output_shape"] == [32, 32, 10] and layer["params_formula"] == "10 × (5×5×3 + 1) = 760"
    assert {"name", "type", "params", "macs"} <= set(layer)
    code, out, _ = cli(capsys, "summary", "lenet5", "--format", "markdown")
    assert code == 0 and "| conv1 | Conv2d | 28×28×6 | 6 × (5×5×1 + 1) = 156 |" in out


def test_summary_of_a_json_spec_file(capsys, tmp_path):
    path = tmp_path / "lenet.json"
    path.write_text(json.dumps(cnnkit.builtin_spec("lenet5")))
    code, out, _ = cli(capsys, "summary", str(path))
    assert code == 0 and "Total parameters: 61,706" in out


# --------------------------------------------------------------------------- bad input → exit 2
def _bad_json(tmp_path) -> str:
    path = tmp_path / "broken.json"
    path.write_text('{"layers": [{"type": "conv2d", "filters": 6,, }]}')
    return str(path)


BAD = [
    (["summary", "conv(6,5"], "unbalanced '('"),
    (["summary", "BROKEN_JSON"], "is not valid JSON"),
    (["summary", "missing.json"], "spec file 'missing.json' not found"),
    (["summary", "frob(3)-relu", "--input", "8x8x1"], "unknown layer type 'frob'"),
    (["summary", "lenet6"], "unknown model 'lenet6'"),
    (["summary", "conv(6,-5)", "--input", "32x32x3"], "size must be an integer >= 1. Received: size=-5"),
    (["summary", "conv(6,5,stride=2)", "--input", "32x32x3"], "(32 - 5 + 0)/2 + 1 = 14.50 is not whole"),
    (["summary", "conv(6,5)"], "no input shape"),
    (["summary", "lenet5", "--input", "28x28"], "argument --input: expected HxWxC"),
    (["summary", "lenet5", "--input", "0x28x1"], "argument --input: expected HxWxC"),
    (["summary", "lenet5", "--input", "axbxc"], "argument --input: expected HxWxC"),
    (["summary", "lenet5", "--format", "yaml"], "argument --format: invalid choice: 'yaml'"),
    (["conv", "--input", "32x32x3", "--filters", "0", "--size", "3"], "filters must be an integer >= 1"),
    (["conv", "--input", "32x32x3", "--filters", "4", "--size", "-3"], "size must be an integer >= 1"),
    (["conv", "--input", "32x32x3", "--filters", "4", "--size", "3", "--stride", "-1"], "stride must be an integer >= 1"),
    (["conv", "--input", "32x32x3", "--filters", "4", "--size", "3", "--pad", "-1"], "padding must be >= 0"),
    (["conv", "--input", "32x32x3", "--filters", "4", "--size", "3", "--pad", "full"], "argument --pad: expected P"),
    (["conv", "--input", "3x3x1", "--filters", "4", "--size", "5"], "the 5-wide filter does not fit in 3 pixels"),
    (["conv", "--input", "32x32x3", "--filters", "four", "--size", "3"], "argument --filters: invalid int value"),
    (["conv", "--input", "32x32x3", "--size", "3"], "the following arguments are required: --filters"),
    (["pool", "--input", "8x8x1", "--size", "2", "--pad", "2"], "padding 2 >= F=2"),
    (["pool", "--input", "7x7x1", "--size", "2"], "(7 - 2 + 0)/2 + 1 = 3.50 is not whole"),
    (["pool", "--input", "8x8x1", "--size", "2", "--kind", "median"], "argument --kind: invalid choice"),
    (["fc", "--input", "5x5x16", "--outputs", "0"], "outputs must be an integer >= 1"),
    (["fc", "--input", "0", "--outputs", "10"], "argument --input: expected HxWxC or D"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, problem", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_usage_and_one_line(capsys, tmp_path, argv, problem):
    argv = [_bad_json(tmp_path) if a == "BROKEN_JSON" else a for a in argv]
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert "usage: cnnkit" in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and problem in errors[0]
    assert "Traceback" not in err + out


@pytest.mark.parametrize("argv, problem", [BAD[0], BAD[3], BAD[4], BAD[5], BAD[8], BAD[14], BAD[-1]])
def test_bad_input_through_python_m_cnnkit(argv, problem):
    result = run_module(*argv)
    assert result.returncode == 2
    assert "usage: cnnkit" in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_rectangular_filters_and_strides(capsys):
    code, out, _ = cli(capsys, "conv", "--input", "20x31x3", "--filters", "8", "--size", "3x5", "--stride", "1x2",
                       "--pad", "1x0")
    assert code == 0
    assert "width:  (31 - 5 + 0)/2 + 1 = 14" in out and "Output volume: 20×14×8" in out
    assert "8 × (3×5×3 + 1) = 368" in out


def test_dilation_is_explained(capsys):
    code, out, _ = cli(capsys, "conv", "--input", "9x9x1", "--filters", "2", "--size", "3", "--dilation", "2")
    assert code == 0
    assert "F_eff = D(F - 1) + 1: 2×(3 - 1) + 1 = 5" in out and "(9 - 5 + 0)/1 + 1 = 5" in out


def test_a_command_module_that_fails_to_import_does_not_break_the_others(capsys, monkeypatch):
    import cnnkit.cli as cli_package

    monkeypatch.setattr(cli_package, "COMMAND_MODULES", (*cli_package.COMMAND_MODULES, "no_such_module"))
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"cnnkit {cnnkit.__version__}"
    code, out, _ = cli(capsys, "summary", "lenet5")
    assert code == 0 and "61,706" in out
    code, out, err = cli(capsys, "no-such-module")
    assert code == 1
    assert err.count("\n") == 1 and "internal error" in err and "could not be loaded" in err


def test_under_ci_a_missing_oracle_fails_instead_of_skipping(tmp_path):
    test = tmp_path / "test_oracle.py"
    test.write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('cnnkit_conftest', {str(ROOT / 'tests' / 'conftest.py')!r})\n"
        "conftest = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(conftest)\n"
        "def test_needs_it():\n"
        "    conftest.require('no_such_oracle_module')\n")
    for ci, outcome in (("true", "1 failed"), ("", "1 skipped")):
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                                capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "CI": ci}, timeout=120)
        assert outcome in result.stdout, result.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = cli(capsys)
    assert code == 2 and "usage: cnnkit" in out


# --------------------------------------------------------------------------- entry points and the README
def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"cnnkit {cnnkit.__version__}"


def test_python_m_cnnkit_and_the_console_script():
    result = run_module("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"cnnkit {cnnkit.__version__}"
    result = run_module("summary", "lenet5")
    assert result.returncode == 0 and "Total parameters: 61,706" in result.stdout
    script = Path(sys.executable).parent / "cnnkit"
    if script.exists():  # installed into this environment (pip install -e .)
        result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout.strip() == f"cnnkit {cnnkit.__version__}"


README_TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -q"


def test_readme_and_ci_run_the_same_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert README_TEST_COMMAND in readme
    assert README_TEST_COMMAND in ci.splitlines()
    assert "set -euo pipefail" in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/cnnkit" in readme


def _lecture_examples() -> list[tuple[str, str]]:
    """(command, output) pairs pasted in the README's "The lecture in cnnkit"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The lecture in cnnkit", 1)[1].split("\n## ", 1)[0]
    pairs = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            pairs.append((command, output))
    return pairs


@pytest.mark.parametrize("command, expected", _lecture_examples(), ids=lambda v: v[:60] if "cnnkit" in v else "")
def test_readme_lecture_outputs_are_real(command, expected):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "COLUMNS": "80", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.stderr + result.stdout == expected if "usage:" in expected else result.stdout == expected


def test_readme_python_example_is_real():
    import doctest

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    test = doctest.DocTestParser().get_doctest(block, {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
