"""Pure array kernels: arrays in, arrays out; nothing held, no globals.

Each op is a ``*_forward(...) -> (y, cache)`` and ``*_backward(dy, cache, ...) -> gradients`` pair
(cs231n style). Layers in :mod:`cnnkit.layers` own the parameters and call these.
"""
