"""DataLoader: batching, shuffling from a Generator, augmentation against loop oracles,
preprocessing, and bit-identical resume in the middle of an epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnkit.data import Dataset
from cnnkit.data.loader import DataLoader, HorizontalFlip, RandomCrop, parse_augment, preprocessing_for
from cnnkit.errors import SpecError, UserInputError
from cnnkit.preprocess import apply_preprocessing


def toy(n=10, h=5, w=4, c=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    return Dataset(x, np.arange(n) % 3, ["a", "b", "c"], "toy")


def identity_prep(c=3):
    return {"scale": 1.0, "mean": [0.0] * c, "std": [1.0] * c}


def collect(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


# --------------------------------------------------------------------------- batching
def test_batches_cover_the_data_in_order_without_shuffle():
    ds = toy(10)
    batches = collect(DataLoader(ds, 4, shuffle=False, preprocessing=identity_prep()))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert np.array_equal(np.concatenate([x for x, _ in batches]), ds.x.astype(np.float32))
    assert np.array_equal(np.concatenate([y for _, y in batches]), ds.y)
    assert all(x.dtype == np.float32 and y.dtype == np.int64 for x, y in batches)
    assert len(DataLoader(ds, 4)) == 3 and len(DataLoader(ds, 4, drop_last=True)) == 2
    assert [len(y) for _, y in DataLoader(ds, 4, drop_last=True)] == [4, 4]


def test_arrays_as_a_dataset_and_float_data_untouched():
    x = np.random.default_rng(0).standard_normal((7, 2, 2, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    loader = DataLoader((x, y), 3, shuffle=False)
    xb, yb = next(iter(loader))
    assert np.array_equal(xb, x[:3]) and np.array_equal(yb, y[:3])
    xb[...] = 99                                       # a batch is never a view of the data
    assert not (x == 99).any()


def test_shuffle_is_a_permutation_per_epoch_and_reproducible():
    ds = toy(20)
    a = DataLoader(ds, 6, rng=np.random.default_rng(1), preprocessing=identity_prep())
    b = DataLoader(ds, 6, rng=np.random.default_rng(1), preprocessing=identity_prep())
    epochs_a = [np.concatenate([y for _, y in collect(a)]) for _ in range(3)]
    epochs_b = [np.concatenate([y for _, y in collect(b)]) for _ in range(3)]
    for ea, eb in zip(epochs_a, epochs_b):
        assert np.array_equal(ea, eb)
        assert np.array_equal(np.sort(ea), np.sort(ds.y))
    assert not np.array_equal(epochs_a[0], epochs_a[1])              # a new order each epoch
    # images and labels stay paired
    ids = {ds.x[i].tobytes(): ds.y[i] for i in range(20)}
    for x, y in DataLoader(ds, 6, rng=np.random.default_rng(2), preprocessing=identity_prep()):
        for xi, yi in zip(x, y):
            assert ids[xi.astype(np.uint8).tobytes()] == yi
    c = DataLoader(ds, 6, rng=np.random.default_rng(3), preprocessing=identity_prep())
    assert not np.array_equal(np.concatenate([y for _, y in collect(c)]), epochs_a[0])


# --------------------------------------------------------------------------- augmentation
def crop_oracle(x, padding, offsets):
    n, h, w, c = x.shape
    out = np.zeros_like(x)
    for i in range(n):
        dy, dx = offsets[i]
        for r in range(h):
            for q in range(w):
                rr, qq = r + dy - padding, q + dx - padding
                if 0 <= rr < h and 0 <= qq < w:
                    out[i, r, q] = x[i, rr, qq]
    return out


def test_random_crop_matches_the_loop_oracle():
    x = toy(8, 6, 5).x
    got = RandomCrop(2)(x, np.random.default_rng(5))
    offsets = np.random.default_rng(5).integers(0, 5, size=(8, 2))
    assert np.array_equal(got, crop_oracle(x, 2, offsets))
    assert len({tuple(o) for o in offsets}) > 1
    assert RandomCrop(0)(x, np.random.default_rng(0)) is x


def test_random_crop_offsets_are_uniform_over_all_positions():
    x = np.zeros((4000, 3, 3, 1), np.uint8)
    x[:, 1, 1] = 1                                     # one marked pixel in the middle
    out = RandomCrop(1)(x, np.random.default_rng(0))
    where = np.argwhere(out[..., 0] == 1)[:, 1:]       # the marked pixel's new (row, col)
    counts = np.zeros((3, 3))
    np.add.at(counts, (where[:, 0], where[:, 1]), 1)
    assert counts.sum() == 4000 and counts.min() > 4000 / 9 * 0.8


def test_horizontal_flip_mirrors_the_chosen_images():
    x = toy(200, 3, 4).x
    got = HorizontalFlip(0.5)(x, np.random.default_rng(9))
    flip = np.random.default_rng(9).random(200) < 0.5
    assert np.array_equal(got[flip], x[flip][:, :, ::-1]) and np.array_equal(got[~flip], x[~flip])
    assert 60 < flip.sum() < 140
    assert np.array_equal(HorizontalFlip(0.0)(x, np.random.default_rng(0)), x)
    assert np.array_equal(HorizontalFlip(1.0)(x, np.random.default_rng(0)), x[:, :, ::-1])


def test_augmentation_in_the_loader_uses_the_loader_generator():
    ds = toy(12)
    aug = (RandomCrop(1), HorizontalFlip())
    loader = DataLoader(ds, 12, shuffle=False, rng=np.random.default_rng(4), augment=aug,
                        preprocessing=identity_prep())
    (x, _), = collect(loader)
    rng = np.random.default_rng(4)
    expect = HorizontalFlip()(RandomCrop(1)(ds.x, rng), rng)
    assert np.array_equal(x, expect.astype(np.float32))


def test_parse_augment():
    assert repr(parse_augment("crop=2, flip=0.25")) == "(RandomCrop(padding=2), HorizontalFlip(p=0.25))"
    assert parse_augment("none") == () and parse_augment(None) == () and parse_augment("") == ()
    with pytest.raises(SpecError, match="unknown augmentation 'rotate'; expected one of crop, flip"):
        parse_augment("rotate")
    with pytest.raises(SpecError, match="augmentation 'crop=x': 'x' is not a number"):
        parse_augment("crop=x")
    with pytest.raises(UserInputError, match="RandomCrop: padding must be a whole number >= 0"):
        RandomCrop(-1)
    with pytest.raises(UserInputError, match=r"HorizontalFlip: p must be a probability in \[0, 1\]"):
        HorizontalFlip(2)


# --------------------------------------------------------------------------- preprocessing
def test_preprocessing_for_is_exact_per_channel():
    ds = toy(30, 4, 4, 3, seed=1)
    prep = preprocessing_for(ds)
    scaled = ds.x.astype(np.float64) / 255
    assert prep["scale"] == 1 / 255
    assert np.allclose(prep["mean"], scaled.mean(axis=(0, 1, 2)), rtol=1e-12)
    assert np.allclose(prep["std"], scaled.std(axis=(0, 1, 2)), rtol=1e-12)
    const = Dataset(np.full((2, 2, 2, 1), 7, np.uint8), np.array([0, 0]), ["a"])
    assert preprocessing_for(const)["std"] == [1.0]
    assert preprocessing_for(np.zeros((2, 2, 2, 2), np.float32)) == {"scale": 1.0, "mean": [0.0, 0.0],
                                                                     "std": [1.0, 1.0]}


def test_loader_output_is_exactly_apply_preprocessing():
    ds = toy(9)
    prep = preprocessing_for(ds)
    (x, _), = collect(DataLoader(ds, 9, shuffle=False, preprocessing=prep))
    assert np.array_equal(x, apply_preprocessing(ds.x, prep))
    normalised = x.astype(np.float64)
    assert np.allclose(normalised.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    assert np.allclose(normalised.std(axis=(0, 1, 2)), 1, atol=1e-5)
    (x_default, _), = collect(DataLoader(ds, 9, shuffle=False))
    assert np.array_equal(x_default, ds.x.astype(np.float32) * np.float32(1 / 255))


# --------------------------------------------------------------------------- resume
def _make(ds, seed=11):
    return DataLoader(ds, 4, rng=np.random.default_rng(seed), augment="crop=1,flip",
                      preprocessing=preprocessing_for(ds))


@pytest.mark.parametrize("stop_at", [0, 1, 3, 5, 6])   # batches into the second epoch (6 = its end)
def test_resume_mid_epoch_is_bit_identical(stop_at):
    ds = toy(23)                                        # 6 batches per epoch, the last one short
    reference = _make(ds)
    ref_batches = []
    for _ in range(3):
        ref_batches += collect(reference)
    # an interrupted run: one epoch, then stop_at batches of the second, then save
    run = _make(ds)
    seen = collect(run)
    it = iter(run)
    for _ in range(stop_at):
        seen.append(tuple(a.copy() for a in next(it)))
    state = run.state_dict()
    perm = state.pop("permutation")
    state = json.loads(json.dumps(state))              # JSON-able apart from the permutation
    state["permutation"] = perm
    resumed = DataLoader(ds, 4, rng=np.random.default_rng(999), augment="crop=1,flip",
                         preprocessing=preprocessing_for(ds))
    resumed.load_state_dict(state)
    while len(seen) < len(ref_batches):
        seen += collect(resumed)
    assert len(seen) == len(ref_batches)
    for (xa, ya), (xb, yb) in zip(seen, ref_batches):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert resumed.epoch == 3


def test_an_unfinished_epoch_is_continued_not_restarted():
    ds = toy(12)
    loader = _make(ds)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    rest = collect(loader)
    assert len(rest) == 1 and loader.epoch == 1


def test_load_state_refuses_other_data_or_settings():
    ds = toy(12)
    state = _make(ds).state_dict()
    with pytest.raises(UserInputError, match="the saved state has num_examples=12, this loader has 13"):
        _make(toy(13)).load_state_dict(state)
    with pytest.raises(UserInputError, match="the saved state has batch_size=4, this loader has 5"):
        DataLoader(ds, 5).load_state_dict(state)
    bad = dict(state, permutation=np.zeros(12, np.int64))
    with pytest.raises(UserInputError, match="the saved permutation is not a permutation of 12 examples"):
        _make(ds).load_state_dict(bad)


def test_bad_arguments_say_what():
    ds = toy(4)
    with pytest.raises(UserInputError, match="DataLoader: batch_size must be a whole number >= 1. Received: 0"):
        DataLoader(ds, 0)
    with pytest.raises(UserInputError, match="DataLoader: expected a Dataset or an \\(x, y\\) pair of arrays"):
        DataLoader([1, 2, 3], 2)
    with pytest.raises(UserInputError, match="DataLoader: rng must be a numpy.random.Generator"):
        DataLoader(ds, 2, rng=np.random.RandomState(0))
