"""ArrayDataset, prepare, the seeded split, the batch iterator and Augment."""
from __future__ import annotations

import numpy as np
import pytest

from minidl.data import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, ArrayDataset, Augment,
                         iterate_batches, prepare, train_val_split)
from minidl.data.transforms import crop_windows, crop_windows_gather


def indexed_dataset(n, shape=(1, 4, 4)):
    """x[i] is filled with i and y[i] = i, so a batch tells which samples it holds."""
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None],
                        (n,) + shape).copy()
    return ArrayDataset(x, np.arange(n))


# --- ArrayDataset --------------------------------------------------------------------

def test_array_dataset_basics():
    ds = ArrayDataset(np.zeros((5, 3), np.float32), np.array([0, 1, 2, 3, 4], np.uint8))
    assert len(ds) == 5 and ds.y.dtype == np.int64 and ds.x.shape == (5, 3)
    sub = ds.subset([4, 0])
    np.testing.assert_array_equal(sub.y, [4, 0])
    assert "n=5" in repr(ds)


@pytest.mark.parametrize("x, y, pattern", [
    (np.zeros((5, 3), np.float32), np.zeros(4, np.int64), "x has 5 samples but y has 4"),
    (np.zeros((5, 3), np.uint8), np.zeros(5, np.int64), "expected floating-point x"),
    (np.zeros((5, 3, 3), np.float32), np.zeros(5, np.int64), r"\(N, C, H, W\) or \(N, D\)"),
    (np.zeros((5, 3), np.float32), np.zeros(5, np.float32), "integer labels"),
    (np.zeros((5, 3), np.float32), np.zeros((5, 1), np.int64), r"y of shape \(N,\)"),
])
def test_array_dataset_rejects_bad_input(x, y, pattern):
    with pytest.raises(ValueError, match="ArrayDataset: .*" + pattern):
        ArrayDataset(x, y)


@pytest.mark.parametrize("indices, pattern", [
    ([0, 5], r"indices must be in \[-5, 4\]"),
    ([0.5], "integer indices"),
    ([[0, 1]], "1-D"),
])
def test_subset_rejects_bad_indices(indices, pattern):
    ds = indexed_dataset(5)
    with pytest.raises(ValueError, match=pattern):
        ds.subset(indices)


# --- prepare ---------------------------------------------------------------------------

def test_prepare_normalises_and_adds_channel(rng):
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7)
    ds64 = prepare(images, labels, 0.25, 0.5, dtype=np.float64)
    assert ds64.x.shape == (7, 1, 28, 28) and ds64.x.dtype == np.float64
    np.testing.assert_array_equal(ds64.x[:, 0], (images / 255.0 - 0.25) / 0.5)
    ds32 = prepare(images, labels, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    assert ds32.x.dtype == np.float32
    expected = ((images / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD).astype(np.float32)
    np.testing.assert_array_equal(ds32.x[:, 0], expected)  # correctly rounded float64
    np.testing.assert_array_equal(ds32.y, labels)
    assert images.dtype == np.uint8  # input untouched


def test_prepare_matches_torchvision_to_tensor_and_normalize(torch, rng):
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    t = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]  # ToTensor
    expected = ((t - FASHION_MNIST_MEAN) / FASHION_MNIST_STD).numpy()  # Normalize
    got = prepare(images, np.zeros(3, np.int64), FASHION_MNIST_MEAN, FASHION_MNIST_STD).x
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(images_uint8=np.zeros((2, 28, 28), np.float32)), "expected uint8 images"),
    (dict(images_uint8=np.zeros((2, 784), np.uint8)), r"shape \(N, H, W\)"),
    (dict(labels=np.zeros(3)), r"labels of shape \(2,\)"),
    (dict(std=0.0), "std > 0"),
    (dict(mean=float("nan")), "finite"),
    (dict(dtype=np.int32), "floating dtype"),
])
def test_prepare_rejects_bad_arguments(kwargs, pattern):
    args = dict(images_uint8=np.zeros((2, 28, 28), np.uint8), labels=np.zeros(2),
                mean=0.5, std=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match="prepare: .*" + pattern):
        prepare(**args)


# --- train_val_split -------------------------------------------------------------------

def test_split_is_reproducible_disjoint_and_complete():
    ds = indexed_dataset(1000)
    train, val = train_val_split(ds, 200, seed=3)
    assert len(train) == 800 and len(val) == 200
    assert np.intersect1d(train.y, val.y).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train.y, val.y])), np.arange(1000))
    np.testing.assert_array_equal(train.x[:, 0, 0, 0], train.y)  # x and y stay paired
    train2, val2 = train_val_split(ds, 200, seed=3)
    np.testing.assert_array_equal(val.y, val2.y)
    np.testing.assert_array_equal(train.y, train2.y)
    _, val_other = train_val_split(ds, 200, seed=4)
    assert not np.array_equal(val.y, val_other.y)
    # a random sample, not a block: validation indices spread over the whole range
    assert val.y.min() < 100 and val.y.max() > 900


def test_split_fraction():
    train, val = train_val_split(indexed_dataset(60), 0.25, seed=0)
    assert (len(train), len(val)) == (45, 15)


@pytest.mark.parametrize("val_size, seed, error, pattern", [     # a wrong type: TypeError
    (0, 0, ValueError, "between 1 and 9"), (10, 0, ValueError, "between 1 and 9"),
    (1.0, 0, ValueError, r"in \(0, 1\)"), (0.0, 0, ValueError, r"in \(0, 1\)"),
    (0.01, 0, ValueError, "got 0"), ("3", 0, TypeError, "an int or a float"),
    (True, 0, TypeError, "an int or a float"), (3, None, TypeError, "seed"),
    (3, -1, ValueError, "seed"), (3, 1.5, TypeError, "seed"),
])
def test_split_rejects_bad_arguments(val_size, seed, error, pattern):
    with pytest.raises(error, match="train_val_split: .*" + pattern):
        train_val_split(indexed_dataset(10), val_size, seed)


def test_split_rejects_non_dataset():
    with pytest.raises(TypeError, match="expected an ArrayDataset"):
        train_val_split((np.zeros((3, 2)), np.zeros(3)), 1, 0)


# --- iterate_batches ------------------------------------------------------------------

def test_every_index_once_per_epoch_and_reshuffled():
    ds = indexed_dataset(103)
    rng = np.random.default_rng(0)
    orders = []
    for _ in range(3):
        batches = list(iterate_batches(ds, 10, rng=rng))
        assert [len(yb) for _, yb in batches] == [10] * 10 + [3]  # last partial batch kept
        for xb, yb in batches:
            assert xb.shape == (len(yb), 1, 4, 4)
            np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)  # x and y stay paired
        order = np.concatenate([yb for _, yb in batches])
        np.testing.assert_array_equal(np.sort(order), np.arange(103))  # no repeats
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(103))


def test_drop_last_and_no_shuffle():
    ds = indexed_dataset(25)
    batches = list(iterate_batches(ds, 10, drop_last=True, rng=0))
    assert [len(yb) for _, yb in batches] == [10, 10]
    assert len(np.unique(np.concatenate([yb for _, yb in batches]))) == 20
    in_order = list(iterate_batches(ds, 10, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in in_order]), np.arange(25))
    assert [len(yb) for _, yb in in_order] == [10, 10, 5]
    assert list(iterate_batches(indexed_dataset(5), 10, drop_last=True, rng=0)) == []


def test_same_seed_same_batches():
    ds = indexed_dataset(50)
    a = [yb for _, yb in iterate_batches(ds, 8, rng=np.random.default_rng(5))]
    b = [yb for _, yb in iterate_batches(ds, 8, rng=np.random.default_rng(5))]
    c = [yb for _, yb in iterate_batches(ds, 8, rng=5)]
    for ya, yb_, yc in zip(a, b, c):
        np.testing.assert_array_equal(ya, yb_)
        np.testing.assert_array_equal(ya, yc)


def test_default_rng_is_minidl_generator():
    from minidl.random import manual_seed
    ds = indexed_dataset(40)
    manual_seed(11)
    a = np.concatenate([yb for _, yb in iterate_batches(ds, 7)])
    manual_seed(11)
    b = np.concatenate([yb for _, yb in iterate_batches(ds, 7)])
    np.testing.assert_array_equal(a, b)


def test_augment_is_applied_to_inputs_only():
    ds = indexed_dataset(12)
    calls = []

    def augment(xb, rng):
        calls.append(isinstance(rng, np.random.Generator))
        return xb + 1000

    for xb, yb in iterate_batches(ds, 5, rng=0, augment=augment):
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb + 1000)
    assert calls == [True, True, True]
    np.testing.assert_array_equal(ds.x[:, 0, 0, 0], np.arange(12))


@pytest.mark.parametrize("kwargs, error, pattern", [       # a wrong type: TypeError
    (dict(batch_size=0), ValueError, "batch_size to be a positive int"),
    (dict(batch_size=2.0), TypeError, "batch_size to be a positive int"),
    (dict(batch_size=True), TypeError, "batch_size to be a positive int"),
    (dict(rng="seed"), TypeError, "rng"), (dict(augment=3), TypeError, "augment"),
    (dict(shuffle="yes"), TypeError, "shuffle"), (dict(drop_last=1), TypeError, "drop_last"),
    (dict(dataset=(1, 2)), TypeError, "dataset with .x and .y"),
])
def test_iterate_batches_rejects_bad_arguments_at_the_call(kwargs, error, pattern):
    args = dict(dataset=indexed_dataset(5), batch_size=2)
    args.update(kwargs)
    with pytest.raises(error, match="iterate_batches: .*" + pattern):
        iterate_batches(**args)  # raised before iterating


def test_iterate_batches_rejects_mismatched_lengths():
    class Pair:
        x = np.zeros((4, 2), np.float32)
        y = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="4 samples but dataset.y has 3"):
        iterate_batches(Pair(), 2)


# --- Augment ---------------------------------------------------------------------------

def shift_reference(image, dy, dx, fill):
    """Plain loops: out[c, y, x] = image[c, y - dy, x - dx] where that exists, else fill."""
    c, h, w = image.shape
    out = np.full_like(image, fill)
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[:, y, x] = image[:, y - dy, x - dx]
    return out


def test_strength_zero_is_identity(rng):
    xb = rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
    aug = Augment.from_strength(0.0)
    assert aug.is_identity
    out = aug(xb, rng)
    assert out is not xb
    np.testing.assert_array_equal(out, xb)
    np.testing.assert_array_equal(Augment()(xb, rng), xb)


def test_shift_matches_reference_and_covers_all_offsets():
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((300, 2, 9, 8))
    original = xb.copy()
    s, fill = 2, -0.75
    out = Augment(max_shift=s, fill=fill)(xb, np.random.default_rng(1))
    np.testing.assert_array_equal(xb, original)  # input untouched
    assert out.shape == xb.shape and out.dtype == xb.dtype
    # the documented draws: dy then dx, N each, from the Generator passed in
    draws = np.random.default_rng(1)
    dy, dx = draws.integers(-s, s + 1, 300), draws.integers(-s, s + 1, 300)
    for i in range(300):
        np.testing.assert_array_equal(out[i], shift_reference(xb[i], dy[i], dx[i], fill))
    assert set(zip(dy.tolist(), dx.tolist())) == {(a, b) for a in range(-s, s + 1)
                                                  for b in range(-s, s + 1)}


@pytest.mark.parametrize("crop", [crop_windows, crop_windows_gather])
def test_crop_windows_both_forms(crop):
    rng = np.random.default_rng(8)
    padded = rng.standard_normal((40, 3, 11, 12))
    top, left = rng.integers(0, 4, 40), rng.integers(0, 5, 40)
    out = crop(padded, top, left, 8, 8)
    assert out.shape == (40, 3, 8, 8)
    for i in range(40):
        np.testing.assert_array_equal(out[i], padded[i, :, top[i]:top[i] + 8,
                                                     left[i]:left[i] + 8])


def test_shift_preserves_content_that_stays_inside():
    # an object away from the border moves whole: same pixels, same sum, other place
    rng = np.random.default_rng(2)
    xb = np.zeros((200, 1, 28, 28), np.float32)
    xb[:, :, 8:20, 10:18] = rng.integers(1, 255, (200, 1, 12, 8))
    out = Augment(max_shift=4)(xb, rng)
    np.testing.assert_array_equal(out.sum(axis=(1, 2, 3)), xb.sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(np.sort(out.reshape(200, -1), axis=1),
                                  np.sort(xb.reshape(200, -1), axis=1))
    moved = (out != xb).any(axis=(1, 2, 3))
    assert 0.9 < moved.mean() < 1.0  # 1/81 of images get (0, 0)


def test_hflip_mirrors_about_half():
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((2000, 1, 5, 6))
    out = Augment(hflip=True)(xb, rng)
    flipped = np.array([np.array_equal(o, x[..., ::-1]) for o, x in zip(out, xb)])
    kept = np.array([np.array_equal(o, x) for o, x in zip(out, xb)])
    assert (flipped ^ kept).all()  # each image is either mirrored or unchanged
    assert 0.45 < flipped.mean() < 0.55  # p = 0.5 (±4.5 standard deviations)


def test_augment_reproducible_and_never_writes_input():
    xb = np.random.default_rng(4).standard_normal((16, 1, 28, 28)).astype(np.float32)
    xb.flags.writeable = False  # any write into the input would raise
    aug = Augment.from_strength(1.0)
    a = aug(xb, np.random.default_rng(9))
    b = aug(xb, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.flags.writeable
    assert not np.array_equal(a, aug(xb, np.random.default_rng(10)))


@pytest.mark.parametrize("strength, max_shift, hflip", [
    (0.0, 0, False), (0.1, 0, True), (0.25, 1, True), (0.5, 2, True), (1.0, 4, True),
])
def test_from_strength_mapping(strength, max_shift, hflip):
    aug = Augment.from_strength(strength)
    assert (aug.max_shift, aug.hflip) == (max_shift, hflip)
    assert Augment.from_strength(strength, hflip=False).hflip is False
    assert Augment.from_strength(strength, fill=-0.8).fill == -0.8


@pytest.mark.parametrize("strength, error", [(-0.1, ValueError), (1.5, ValueError),
                                             (float("nan"), ValueError), ("0.5", TypeError),
                                             (True, TypeError), (None, TypeError)])
def test_from_strength_rejects_bad_strength(strength, error):
    with pytest.raises(error, match=r"strength to be a number in \[0, 1\]"):
        Augment.from_strength(strength)


@pytest.mark.parametrize("kwargs, error, pattern", [        # a wrong type: TypeError
    (dict(max_shift=-1), ValueError, "max_shift to be a non-negative int"),
    (dict(max_shift=1.5), TypeError, "max_shift to be a non-negative int"),
    (dict(hflip="yes"), TypeError, "hflip"), (dict(fill=float("inf")), ValueError, "fill"),
])
def test_augment_rejects_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match="Augment: .*" + pattern):
        Augment(**kwargs)


def test_augment_rejects_bad_batches():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        Augment(max_shift=1)(np.zeros((4, 784), np.float32), rng)
    with pytest.raises(ValueError, match="smaller than the image size"):
        Augment(max_shift=4)(np.zeros((2, 1, 4, 8), np.float32), rng)
    with pytest.raises(ValueError, match="Generator"):
        Augment(max_shift=1)(np.zeros((2, 1, 8, 8), np.float32), 42)


def test_augment_matches_torchvision_style_pad_and_crop(torch):
    # The same offsets through torch's zero padding + crop give the same images.
    rng = np.random.default_rng(5)
    xb = rng.standard_normal((10, 1, 28, 28)).astype(np.float32)
    s = 3
    out = Augment(max_shift=s)(xb, np.random.default_rng(6))
    draws = np.random.default_rng(6)
    dy, dx = draws.integers(-s, s + 1, 10), draws.integers(-s, s + 1, 10)
    padded = torch.nn.functional.pad(torch.from_numpy(xb), (s, s, s, s))
    for i in range(10):
        top, left = s - dy[i], s - dx[i]
        np.testing.assert_array_equal(out[i], padded[i, :, top:top + 28, left:left + 28].numpy())
