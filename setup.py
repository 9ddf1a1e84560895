"""Build of cnnkit's one compiled helper, cnnkit.kernels._native (direct convolution, max
pooling, one-pass optimiser steps); everything else is in pyproject.toml. It is compiled for the
CPU it is installed on (-march=native), so SIMD width follows the machine: AVX-512 where there is
one, AVX2 or SSE otherwise."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cnnkit.kernels._native",
            sources=["src/cnnkit/kernels/_native.c"],
            depends=["src/cnnkit/kernels/_conv_body.h", "src/cnnkit/kernels/_pool_body.h",
                     "src/cnnkit/kernels/_optim_body.h"],
            extra_compile_args=["-O3", "-march=native", "-ffp-contract=fast", "-std=gnu11",
                                "-Werror=implicit-function-declaration"],
        )
    ]
)
