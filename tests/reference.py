"""Slow, obviously-correct loop implementations used as test oracles (cs231n's naive layers).

Every loop follows the definition: one output pixel at a time, one filter tap at a time. They work
in float64 whatever the input dtype, so they are a reference for float32 kernels too.

Layout as everywhere in cnnkit: x (N, H, W, C), w (FH, FW, C, K), pads ((top, bottom), (left, right)).
"""

from __future__ import annotations

import numpy as np


def out_size(size: int, f: int, stride: int, before: int, after: int, dilation: int = 1) -> int:
    """floor((size + before + after - D(F - 1) - 1) / stride) + 1, written out independently."""
    covered = dilation * (f - 1) + 1
    return (size + before + after - covered) // stride + 1


def pad(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    (pt, pb), (pl, pr) = pads
    n, h, w, c = x.shape
    xp = np.full((n, h + pt + pb, w + pl + pr, c), value, np.float64)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    return xp


def conv2d_forward(x, w, b, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """y[n, oh, ow, k] = b[k] + Σ_{i, j, c} xpad[n, oh·SH + i·DH, ow·SW + j·DW, c] · w[i, j, c, k]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, c = x.shape
    fh, fw, _, k = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = pad(x, pads)
    ho = out_size(h, fh, sh, *pads[0], dh)
    wo = out_size(wd, fw, sw, *pads[1], dw)
    y = np.zeros((n, ho, wo, k))
    for ni in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for i in range(fh):
                    for j in range(fw):
                        pixel = xp[ni, oh * sh + i * dh, ow * sw + j * dw, :]  # (C,)
                        y[ni, oh, ow, :] += pixel @ w[i, j]  # (C,) @ (C, K)
                if b is not None:
                    y[ni, oh, ow, :] += b
    return y


def conv2d_backward(dy, x, w, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1)):
    """(dx, dw, db) by the chain rule applied to each term of :func:`conv2d_forward`."""
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    n, h, wd, c = x.shape
    fh, fw, _, k = w.shape
    (sh, sw), (dh, dw_) = stride, dilation
    (pt, _), (pl, _) = pads
    xp = pad(x, pads)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    _, ho, wo, _ = dy.shape
    for ni in range(n):
        for oh in range(ho):
            for ow in range(wo):
                g = dy[ni, oh, ow, :]  # (K,)
                for i in range(fh):
                    for j in range(fw):
                        r, s = oh * sh + i * dh, ow * sw + j * dw_
                        dxp[ni, r, s, :] += w[i, j] @ g  # (C, K) @ (K,)
                        dw[i, j] += np.outer(xp[ni, r, s, :], g)
    db = dy.sum(axis=(0, 1, 2))
    return dxp[:, pt:pt + h, pl:pl + wd, :], dw, db


def maxpool2d_forward(x, size, stride, pads=((0, 0), (0, 0))):
    """(y, argmax): max of each window, and the (row, col) in the padded input of the first
    maximum met in row-major order."""
    x = np.asarray(x, np.float64)
    n, h, wd, c = x.shape
    (fh, fw), (sh, sw) = size, stride
    xp = pad(x, pads, -np.inf)
    ho, wo = out_size(h, fh, sh, *pads[0]), out_size(wd, fw, sw, *pads[1])
    y = np.zeros((n, ho, wo, c))
    where = np.zeros((n, ho, wo, c, 2), int)
    for ni in range(n):
        for oh in range(ho):
            for ow in range(wo):
                for ch in range(c):
                    best, at = -np.inf, None
                    for i in range(fh):
                        for j in range(fw):
                            v = xp[ni, oh * sh + i, ow * sw + j, ch]
                            if at is None or v > best:
                                best, at = v, (oh * sh + i, ow * sw + j)
                    y[ni, oh, ow, ch] = best
                    where[ni, oh, ow, ch] = at
    return y, where


def maxpool2d_backward(dy, x, size, stride, pads=((0, 0), (0, 0))):
    x = np.asarray(x, np.float64)
    _, where = maxpool2d_forward(x, size, stride, pads)
    (pt, _), (pl, _) = pads
    n, h, wd, c = x.shape
    dxp = pad(np.zeros_like(x), pads)
    for ni, oh, ow, ch in np.ndindex(*dy.shape):
        r, s = where[ni, oh, ow, ch]
        dxp[ni, r, s, ch] += dy[ni, oh, ow, ch]
    return dxp[:, pt:pt + h, pl:pl + wd, :]


def avgpool2d_forward(x, size, stride, pads=((0, 0), (0, 0))):
    """Sum of each zero-padded window divided by FH·FW."""
    x = np.asarray(x, np.float64)
    n, h, wd, c = x.shape
    (fh, fw), (sh, sw) = size, stride
    xp = pad(x, pads)
    ho, wo = out_size(h, fh, sh, *pads[0]), out_size(wd, fw, sw, *pads[1])
    y = np.zeros((n, ho, wo, c))
    for ni, oh, ow in np.ndindex(n, ho, wo):
        total = np.zeros(c)
        for i in range(fh):
            for j in range(fw):
                total += xp[ni, oh * sh + i, ow * sw + j, :]
        y[ni, oh, ow] = total / (fh * fw)
    return y


def avgpool2d_backward(dy, x_shape, size, stride, pads=((0, 0), (0, 0))):
    n, h, wd, c = x_shape
    (fh, fw), (sh, sw) = size, stride
    (pt, _), (pl, _) = pads
    dxp = pad(np.zeros(x_shape), pads)
    for ni, oh, ow in np.ndindex(*dy.shape[:3]):
        for i in range(fh):
            for j in range(fw):
                dxp[ni, oh * sh + i, ow * sw + j, :] += dy[ni, oh, ow, :] / (fh * fw)
    return dxp[:, pt:pt + h, pl:pl + wd, :]


def global_avgpool_forward(x):
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    y = np.zeros((n, c))
    for ni, r, s in np.ndindex(n, h, w):
        y[ni] += x[ni, r, s, :] / (h * w)
    return y


def global_avgpool_backward(dy, x_shape):
    n, h, w, c = x_shape
    dx = np.zeros(x_shape)
    for ni, r, s in np.ndindex(n, h, w):
        dx[ni, r, s, :] = dy[ni] / (h * w)
    return dx


def assert_threads_match_sequential(step, rounds: int = 1) -> None:
    """``step(lo, hi)`` returns a sequence of arrays for images lo…hi-1 of 8: two threads running the
    shards [0, 4) and [4, 8) at once get exactly the sequential results, ``rounds`` times over."""
    import threading

    expected = [step(0, 4), step(4, 8)]
    results: list = [None, None]
    for _ in range(rounds):
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, step(4 * i, 4 * i + 4)))
                   for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for got, want in zip(results, expected):
            for a, e in zip(got, want):
                np.testing.assert_array_equal(a, e)
