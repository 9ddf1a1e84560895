"""Initialisers: reproducible bit for bit from a Generator, the right laws, zero biases, the dtype asked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnkit.errors import SpecError
from cnnkit.init import INITIALISERS, fans, initialise
from cnnkit.layers import Conv2d, Linear
from cnnkit.spec import resolve_model

CONV_SHAPE = (3, 3, 64, 128)  # fan_in 576, fan_out 1152; 73,728 draws


def _expected(kind: str, shape) -> tuple[str, float]:
    """(law, std) from the papers: He std = √(2/fan_in), Glorot std = √(2/(fan_in + fan_out)), for
    the normal and the uniform alike (a uniform on [-a, a] has std a/√3)."""
    fan_in, fan_out = fans(shape)
    fan = fan_in if kind.startswith("he") else fan_in + fan_out
    return ("normal" if kind.endswith("normal") else "uniform"), math.sqrt(2.0 / fan)


def test_fans_of_conv_and_linear_weights():
    assert fans((5, 5, 3, 10)) == (75, 250)
    assert fans((400, 120)) == (400, 120)


@pytest.mark.parametrize("kind", INITIALISERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_gives_bit_identical_weights(kind, dtype):
    a = initialise(kind, CONV_SHAPE, np.random.default_rng(7), dtype)
    b = initialise(kind, CONV_SHAPE, np.random.default_rng(7), dtype)
    c = initialise(kind, CONV_SHAPE, np.random.default_rng(8), dtype)
    assert a.dtype == dtype and a.shape == CONV_SHAPE
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", INITIALISERS)
def test_statistics_follow_the_law(kind):
    w = initialise(kind, CONV_SHAPE, np.random.default_rng(0), np.float64)
    law, std = _expected(kind, CONV_SHAPE)
    assert abs(w.mean()) < 4 * std / math.sqrt(w.size)  # zero mean, within 4 standard errors
    assert w.std() == pytest.approx(std, rel=0.02)
    if law == "uniform":
        limit = std * math.sqrt(3)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.999 * limit
    else:  # a normal has tails well past 3 std; a uniform of that std stops at 1.73 std
        assert np.abs(w).max() > 3.5 * std
        assert np.mean(np.abs(w) <= std) == pytest.approx(0.6827, abs=0.01)


def test_linear_weights_use_inputs_and_outputs_as_fans():
    w = initialise("glorot_uniform", (400, 120), np.random.default_rng(0))
    assert np.abs(w).max() <= math.sqrt(6 / 520)
    w = initialise("he_normal", (4000, 120), np.random.default_rng(0), np.float64)
    assert w.std() == pytest.approx(math.sqrt(2 / 4000), rel=0.02)


def test_unknown_initialiser_is_refused():
    with pytest.raises(SpecError, match=r"unknown initialiser 'lecun'; expected one of he_normal, he_uniform"):
        initialise("lecun", (3, 3), np.random.default_rng(0))
    with pytest.raises(SpecError, match=r"conv: unknown init 'lecun'; expected one of he_normal"):
        Conv2d(4, init="lecun", name="conv")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_draw_their_init_and_start_biases_at_zero(dtype):
    conv = Conv2d(16, 3, init="glorot_uniform")
    conv.build((8, 8, 32), np.random.default_rng(0), dtype)
    assert conv.params["weight"].value.dtype == dtype
    assert np.abs(conv.params["weight"].value).max() <= math.sqrt(6 / (9 * 32 + 9 * 16))
    assert not conv.params["bias"].value.any() and conv.params["bias"].value.dtype == dtype
    fc = Linear(10)
    fc.build((50,), np.random.default_rng(0), dtype)
    assert not fc.params["bias"].value.any()
    assert all(not p.grad.any() for p in (*conv.params.values(), *fc.params.values()))


def test_models_with_the_same_seed_are_identical_and_other_seeds_differ():
    a, b, c = (resolve_model("lenet5", seed=s) for s in (1, 1, 2))
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert pa.value.tobytes() == pb.value.tobytes()
        if pa.name.endswith("weight"):
            assert not np.array_equal(pa.value, pc.value)


def test_float32_and_float64_models_draw_the_same_weights_up_to_rounding():
    w32 = resolve_model("lenet5", dtype=np.float32, seed=5).parameters()[0].value
    w64 = resolve_model("lenet5", dtype=np.float64, seed=5).parameters()[0].value
    np.testing.assert_array_equal(w32, w64.astype(np.float32))
