"""Batch shards in threads (cnnkit.parallel): the same step as one thread, whole-batch BatchNorm and
Dropout, reproducible, errors surface.

Stated bounds for the threaded path against one thread (the only difference is the order of the
floating-point sums: per-shard convolutions, GEMMs and gradient sums, BatchNorm sums added per shard):
relative norm error ≤ 1e-12 in float64 and ≤ 2e-5 in float32, for outputs, input gradients,
parameter gradients and BatchNorm running statistics. Dropout masks are equal exactly.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cnnkit import parallel
from cnnkit.layers import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU
from cnnkit.model import Sequential
from cnnkit.spec import resolve_model

BOUND = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.fixture(autouse=True)
def small_shards(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_SHARD", 1)  # shard even the small test batches
    monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 0)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _bn_dropout_model(dtype, seed=0):
    """No bias before a BatchNorm: its gradient is 0 in exact arithmetic, rounding noise otherwise."""
    return Sequential([Conv2d(8, 3, padding=1, bias=False), BatchNorm2d(), ReLU(), MaxPool2d(2),
                       Conv2d(20, 3, bias=False), BatchNorm2d(), ReLU(), Flatten(), Dropout(0.3),
                       Linear(16, bias=False), BatchNorm2d(), ReLU(), Linear(5)],
                      input_shape=(10, 10, 3), dtype=dtype, seed=seed)


def _step(model, x, dz, threads):
    with parallel.threads(threads):
        z = model.forward(x)
        dx = model.backward(dz)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    return z, dx, [p.grad.copy() for p in model.parameters()], state


MODELS = {
    "lenet5": lambda dtype: resolve_model("lenet5", dtype=dtype),
    "cifar-net": lambda dtype: resolve_model("cifar-net", dtype=dtype),
    "bn-dropout": _bn_dropout_model,
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, batch, threads", [("lenet5", 9, 2), ("cifar-net", 6, 2), ("bn-dropout", 11, 2),
                                                  ("bn-dropout", 12, 3)])
def test_threaded_step_equals_one_thread_within_the_bound(name, batch, threads, dtype, rng):
    """Two identical models (same seed): one steps in one thread, the other in shards."""
    one, many = MODELS[name](dtype), MODELS[name](dtype)
    x = rng.standard_normal((batch, *one.input_shape)).astype(dtype)
    dz = rng.standard_normal((batch, *one.output_shape())).astype(dtype)
    for _ in range(2):  # the second step starts from updated running statistics
        z1, dx1, g1, s1 = _step(one, x, dz, 1)
        zn, dxn, gn, sn = _step(many, x, dz, threads)
        assert len(many._step.bounds) == threads  # it really ran in shards
        assert _rel(zn, z1) <= BOUND[dtype] and _rel(dxn, dx1) <= BOUND[dtype]
        for a, b, p in zip(gn, g1, one.parameters()):
            assert a.dtype == dtype and _rel(a, b) <= BOUND[dtype], p.name
        for key in s1:  # parameters and BatchNorm running statistics
            assert _rel(sn[key], s1[key]) <= BOUND[dtype], key


def test_batchnorm_statistics_are_those_of_the_whole_batch(rng):
    """Shards whose halves differ a lot: per-shard statistics would be far off; the whole batch's are used."""
    model = Sequential([BatchNorm2d(momentum=1.0)], input_shape=(3, 3, 2), dtype=np.float64)
    x = np.concatenate([rng.standard_normal((4, 3, 3, 2)) + 10, rng.standard_normal((4, 3, 3, 2)) - 10])
    with parallel.threads(2):
        y = model.forward(x)
    flat = x.reshape(-1, 2)
    np.testing.assert_allclose(model["bn1"].buffers["running_mean"], flat.mean(0), rtol=1e-13)
    np.testing.assert_allclose(model["bn1"].buffers["running_var"], flat.var(0, ddof=1), rtol=1e-13)
    np.testing.assert_allclose(y.reshape(-1, 2), (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5), atol=1e-12)


def test_dropout_masks_are_the_whole_batch_draw(rng):
    one, many = _bn_dropout_model(np.float32, seed=3), _bn_dropout_model(np.float32, seed=3)
    x = rng.standard_normal((10, 10, 10, 3)).astype(np.float32)
    with parallel.threads(1):
        one.forward(x)
    with parallel.threads(2):
        many.forward(x)
    i = one.layer_names().index("dropout1")
    (mask1,) = one._step.caches[0][i]
    masks = [caches[i][0] for caches in many._step.caches]
    np.testing.assert_array_equal(np.concatenate(masks), mask1)
    assert one["dropout1"].rng.bit_generator.state == many["dropout1"].rng.bit_generator.state


def test_threaded_runs_are_bit_identical_and_shards_split_evenly(rng):
    x = rng.standard_normal((35, 28, 28, 1)).astype(np.float32)
    dz = rng.standard_normal((35, 10)).astype(np.float32)
    a, b = resolve_model("lenet5"), resolve_model("lenet5")
    ra, rb = _step(a, x, dz, 2), _step(b, x, dz, 2)
    assert a._step.bounds == [(0, 17), (17, 35)]
    for u, v in zip([ra[0], ra[1], *ra[2]], [rb[0], rb[1], *rb[2]]):
        np.testing.assert_array_equal(u, v)


def test_no_input_gradient_when_not_asked(rng):
    model = resolve_model("lenet5")
    x = rng.standard_normal((8, 28, 28, 1)).astype(np.float32)
    with parallel.threads(2):
        model.forward(x)
        assert model.backward(np.ones((8, 10), np.float32), need_input_grad=False) is None
        assert all(np.abs(p.grad).sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_in_shards_equal_one_thread(dtype, rng):
    model = _bn_dropout_model(dtype)
    x = rng.standard_normal((23, 10, 10, 3)).astype(dtype)
    with parallel.threads(1):
        z1 = model.logits(x, batch_size=4)
    with parallel.threads(2):
        z2 = model.logits(x, batch_size=4)
        z3 = model.logits(x, batch_size=1)  # one image per shard at a time (batch_size is a cap)
    assert model.training  # the mode is restored
    assert _rel(z2, z1) <= BOUND[dtype] and _rel(z3, z1) <= BOUND[dtype]
    assert model.logits(x[:0]).shape == (0, 5)


def test_an_error_in_a_worker_shard_is_raised_and_the_next_step_works(rng, monkeypatch):
    model = resolve_model("lenet5")
    x = rng.standard_normal((8, 28, 28, 1)).astype(np.float32)
    layer = model["fc1"]
    original = layer.forward_cached

    def fails_off_the_main_thread(a, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("shard failure")
        return original(a, *args, **kwargs)

    monkeypatch.setattr(layer, "forward_cached", fails_off_the_main_thread)
    with parallel.threads(2), pytest.raises(RuntimeError, match="shard failure"):
        model.forward(x)
    monkeypatch.setattr(layer, "forward_cached", original)
    with parallel.threads(2):
        assert model.forward(x).shape == (8, 10)


def test_batchnorm_refusal_names_the_whole_batch():
    model = Sequential([Flatten(), BatchNorm2d()], input_shape=(1, 1, 2))
    with parallel.threads(2), pytest.raises(Exception, match=r"training needs more than 1 value per channel, "
                                                            r"received input \(1, 2\)"):
        model.forward(np.ones((1, 1, 1, 2), np.float32))


def test_backward_checks(rng):
    model = resolve_model("lenet5")
    with pytest.raises(Exception, match="backward called before forward"):
        model.backward(np.ones((2, 10), np.float32))
    model.forward(np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(Exception, match=r"backward expected dy of the output's shape \(2, 10\), received \(3, 10\)"):
        model.backward(np.ones((3, 10), np.float32))


def test_thread_settings(monkeypatch):
    assert parallel.shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 100)
    monkeypatch.setattr(parallel, "MIN_SHARD", 2)
    with parallel.threads(4):
        assert len(parallel.shard_bounds(64, macs_per_image=4)) == 2  # 256 MACs: two shards of 100+
        assert len(parallel.shard_bounds(64, macs_per_image=100)) == 4  # capped by the threads
        assert len(parallel.shard_bounds(5, macs_per_image=100)) == 2  # capped by MIN_SHARD images
        assert len(parallel.shard_bounds(64, macs_per_image=1)) == 1
    with parallel.threads(3):
        assert parallel.get_threads() == 3
    with pytest.raises(ValueError, match="n must be a positive integer or None"):
        parallel.set_threads(0)


def _framed_model(dtype):
    """Every way an output is written into the next conv's input buffer: conv+ReLU → padded conv,
    conv → padded conv, ReLU-then-max-pool (run as pool, then ReLU in place) → padded conv, and a
    plain max-pool → padded conv, with paddings other than the producers' own."""
    return Sequential([Conv2d(6, 3, padding=1), ReLU(), Conv2d(7, 5, padding=2), Conv2d(8, 3, padding=(1, 2), bias=False),
                       BatchNorm2d(), ReLU(), MaxPool2d(2), Conv2d(9, 3, padding=1), MaxPool2d(2),
                       Conv2d(5, 2, padding=1), Flatten(), Linear(4)],
                      input_shape=(12, 10, 3), dtype=dtype, seed=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_written_into_the_next_convs_buffer_equal_the_layer_by_layer_chain(dtype, rng):
    """The fused, framed step (model.forward/backward, model.logits) against the unfused layer chain
    (forward_cached/backward_cached), at one and two threads."""
    model = _framed_model(dtype)
    x = rng.standard_normal((6, 12, 10, 3)).astype(dtype)
    z_ref, caches = model.forward_cached(x)
    dz = rng.standard_normal(z_ref.shape).astype(dtype)
    dx_ref, layer_grads = model.backward_cached(dz, caches)
    grads_ref = [g[name] for layer, g in zip(model.layers, layer_grads) for name in layer.params]
    for threads in (1, 2):
        z, dx, grads, _ = _step(model, x, dz, threads)
        assert _rel(z, z_ref) <= BOUND[dtype] and _rel(dx, dx_ref) <= BOUND[dtype]
        for g, g_ref in zip(grads, grads_ref):
            assert _rel(g, g_ref) <= BOUND[dtype]
    model.eval()
    logits_ref = model.forward_cached(x)[0]
    for threads in (1, 2):
        with parallel.threads(threads):
            assert _rel(model.logits(x, batch_size=4), logits_ref) <= BOUND[dtype]
