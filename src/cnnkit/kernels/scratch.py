"""Scratch buffers of the kernels: reused from call to call through a caller-owned ``workspace``.

A ``workspace`` is a dict owned by one caller (one thread, one shard). Buffers whose contents
matter only within one call live in its ``"shared"`` dict when it has one, so the layers run by one
thread share them (scratch memory is then that of the largest layer, not the sum over layers).
Without a workspace every buffer is allocated per call.
"""

from __future__ import annotations

import math

import numpy as np


def buffer(workspace: dict | None, key: str, shape: tuple[int, ...], dtype, zero: bool) -> np.ndarray:
    """A scratch array of ``shape``: from ``workspace`` when it holds one that fits, else new
    (zero-filled when ``zero``; a reused one is returned as it was left)."""
    if workspace is not None:
        buf = workspace.get(key)
        if buf is not None and buf.shape == shape and buf.dtype == dtype:
            return buf
    buf = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    if workspace is not None:
        workspace[key] = buf
    return buf


def scratch(workspace: dict | None, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised scratch array of ``shape``, carved from a reused flat buffer that grows
    when a larger tile needs it. Its contents matter only within one call, so a workspace may
    hold a ``"shared"`` dict that several layers run by one thread use for these buffers."""
    if workspace is not None:
        workspace = workspace.get("shared", workspace)
    size = math.prod(shape)
    buf = workspace.get(key) if workspace is not None else None
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(size, dtype)
        if workspace is not None:
            workspace[key] = buf
    return buf[:size].reshape(shape)


def placed(workspace: dict | None, key: str, src: np.ndarray, shape: tuple[int, ...], top: int, left: int
           ) -> np.ndarray:
    """A scratch array of ``shape`` (n, H, W, C): zeros with ``src`` (n, h, w, C) at rows ``top``…,
    cols ``left``… (cropped where it falls outside). The zeros are written only when the buffer last
    held another placement."""
    dst = scratch(workspace, key, shape, src.dtype)
    hh, ww = dst.shape[1:3]
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + src.shape[1], hh), min(left + src.shape[2], ww)
    if r1 <= r0 or c1 <= c0:
        dst.fill(0)
        return dst
    store = workspace.get("shared", workspace) if workspace is not None else None
    tag = (shape, r0, r1, c0, c1, dst.__array_interface__["data"][0])
    if store is None or store.get(key + "#zeros") != tag:
        dst[:, :r0].fill(0)
        dst[:, r1:].fill(0)
        dst[:, r0:r1, :c0].fill(0)
        dst[:, r0:r1, c1:].fill(0)
        if store is not None:
            store[key + "#zeros"] = tag
    dst[:, r0:r1, c0:c1] = src[:, r0 - top:r1 - top, c0 - left:c1 - left]
    return dst


def ones(workspace: dict | None, n: int, dtype) -> np.ndarray:
    """A vector of n ones (kept in the workspace: written once)."""
    store = workspace.get("shared", workspace) if workspace is not None else None
    ones = store.get("ones") if store is not None else None
    if ones is None or ones.size < n or ones.dtype != dtype:
        ones = np.ones(n, dtype)
        if store is not None:
            store["ones"] = ones
    return ones[:n]
