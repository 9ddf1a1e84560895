"""Pure array kernels: arrays in, arrays out; nothing held, no globals.

Each op is a ``*_forward(...) -> (y, cache)`` and ``*_backward(dy, cache, ...) -> gradients`` pair
(cs231n style). Layers in :mod:`cnnkit.layers` own the parameters and call these.
"""

try:  # the compiled helper (direct convolution, max pooling, optimiser steps), built at install
    from . import _native  # noqa: F401
except ImportError as error:  # pragma: no cover - only on a broken install
    raise ImportError(
        "cnnkit.kernels._native, cnnkit's compiled kernels, is missing or does not load. It is built "
        "when cnnkit is installed: reinstall with `pip install -e .` (or `pip install .`) on a machine "
        f"with a C compiler (gcc) and the Python headers. ({error})") from error
