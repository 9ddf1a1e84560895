"""The compiled kernels at the other vector widths: AVX2 (32-byte) and SSE2 (16-byte) builds.

The package is built for the machine it is installed on (``-march=native``), so the tests of
``test_native.py`` run only this machine's blocking. Here the same source is compiled again for
Haswell (AVX2 + FMA, no AVX-512) and for baseline x86-64 (SSE2), loaded under other module names,
and put in place of the installed helper while the oracle, pooling and optimiser tests run: their
tile transposes (8 × 8, 4 × 4), register blocks (6 rows for the weight gradient) and tails are then
executed, not only modelled. x86-64 with gcc only (what the package's build needs anyway).
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import cnnkit.kernels
import test_native
from cnnkit.kernels import conv as conv_module
from cnnkit.kernels import pool as pool_module

WIDTHS = {"avx2": (["-march=haswell"], 32), "sse2": (["-march=x86-64"], 16)}

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or shutil.which("gcc") is None,
                                reason="the other-width builds need gcc on x86-64")


def _build(tmp: Path, width: str):
    """Compile the helper's source for ``width`` into ``tmp`` and import it as ``_native_<width>``."""
    flags, vbytes = WIDTHS[width]
    name = f"_native_{width}"
    source = Path(cnnkit.kernels.__file__).parent
    for header in source.glob("_*_body.h"):
        shutil.copy(header, tmp)
    text = (source / "_native.c").read_text()
    text = text.replace("PyInit__native", f"PyInit_{name}").replace('PyModuleDef_HEAD_INIT, "_native"',
                                                                    f'PyModuleDef_HEAD_INIT, "{name}"')
    (tmp / "_native.c").write_text(text)
    out = tmp / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-std=gnu11", "-ffp-contract=fast", *flags,
                    f"-I{sysconfig.get_paths()['include']}", str(tmp / "_native.c"), "-o", str(out)],
                   check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location(name, out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.VECTOR_BYTES == vbytes
    return module


@pytest.fixture(scope="module", params=list(WIDTHS))
def width_build(request, tmp_path_factory):
    return _build(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture
def native(width_build, monkeypatch):
    """The other-width build in place of the installed helper, for the kernels and the optimisers."""
    for module in (conv_module, pool_module, cnnkit.kernels):
        monkeypatch.setattr(module, "_native", width_build)
    return width_build


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
@pytest.mark.parametrize("case", list(test_native.CONV_CASES.values()), ids=list(test_native.CONV_CASES))
def test_direct_conv_equals_the_loop_oracle(native, case, relu):
    """Every conv case of test_native (which reach every block at these widths too) equals the
    float64 loop oracle, forward and backward, float32 and float64."""
    test_native.test_direct_conv_equals_the_loop_oracle_in_both_dtypes(case, relu)


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
def test_a_wide_direct_conv_passes_the_float64_gradient_check(native, relu):
    """The same central-difference check as at the machine's own width."""
    test_native.test_a_wide_direct_conv_passes_the_float64_gradient_check(relu)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_maxpool_equals_numpy(native, dtype):
    """Compiled max pooling equals the NumPy version (ties, NaN, ±inf, padding)."""
    import test_kernels_pool

    with pytest.MonkeyPatch.context() as mp:
        test_kernels_pool.test_the_compiled_maxpool_equals_numpy_with_nans_infinities_and_ties(dtype, mp)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pass_optimiser_steps_equal_numpy(native, dtype):
    """The one-pass SGD and Adam steps equal the NumPy steps within rounding, for every optimiser case."""
    import test_optim

    for name, kw in test_optim.OPTIMISER_CASES:
        with pytest.MonkeyPatch.context() as mp:
            test_optim.test_one_pass_compiled_steps_equal_the_numpy_steps(name, kw, dtype, mp)


@pytest.mark.parametrize("relu", [False, True], ids=["conv", "conv+relu"])
def test_the_pooled_forward_equals_conv_then_maxpool(native, relu):
    """The inference pass that pools as it convolves, at this width."""
    for case in ("K37-C13-F3-P1", "K6-F5-same", "K20-C2-1x1-span46"):
        test_native.test_the_pooled_forward_equals_conv_then_maxpool(case, relu)
