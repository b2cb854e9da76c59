"""In-memory data sets, normalisation, a seeded train/validation split and batching."""
from __future__ import annotations

import numpy as np

from .. import _checks
from ..random import get_generator

__all__ = ["ArrayDataset", "prepare", "train_val_split", "iterate_batches"]


class ArrayDataset:
    """Inputs ``x`` and integer labels ``y`` held in memory.

    Parameters
    ----------
    x : array, float, shape (N, C, H, W) or (N, D)
    y : array, integer, shape (N,); stored as int64

    Attributes ``.x`` and ``.y`` are the arrays themselves (no copy of ``x``).
    """

    def __init__(self, x, y):
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
        if not hasattr(y, "dtype"):
            y = np.asarray(y)
        if x.dtype.kind != "f":
            raise ValueError(f"ArrayDataset: expected floating-point x (use "
                             f"minidl.data.prepare for uint8 images), got {x.dtype}")
        if x.ndim not in (2, 4):
            raise ValueError(f"ArrayDataset: expected x of shape (N, C, H, W) or (N, D), "
                             f"got shape {x.shape}")
        if y.dtype.kind not in "iu":
            raise ValueError(f"ArrayDataset: expected integer labels y, got {y.dtype}")
        if y.ndim != 1:
            raise ValueError(f"ArrayDataset: expected y of shape (N,), got shape {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"ArrayDataset: x has {len(x)} samples but y has {len(y)}")
        self.x = x
        self.y = y.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices) -> "ArrayDataset":
        """A new data set of the samples at ``indices`` (1-D integers; copies)."""
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise ValueError(f"ArrayDataset.subset: expected a 1-D array of integer "
                             f"indices, got dtype {indices.dtype} shape {indices.shape}")
        indices = indices.astype(np.int64, copy=False)
        n = len(self)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise ValueError(f"ArrayDataset.subset: indices must be in [-{n}, {n - 1}], "
                             f"got values in [{indices.min()}, {indices.max()}]")
        return ArrayDataset(self.x[indices], self.y[indices])

    def __repr__(self) -> str:
        return (f"ArrayDataset(n={len(self)}, x={tuple(self.x.shape)} {self.x.dtype}, "
                f"y={self.y.dtype})")


def prepare(images_uint8, labels, mean: float, std: float, dtype=np.float32) -> ArrayDataset:
    """Scale uint8 images to [0, 1], normalise, add the channel axis.

    .. math:: x = (\\mathrm{image} / 255 - \\mathrm{mean}) / \\mathrm{std}

    computed in float64 for each of the 256 pixel values and rounded once to ``dtype``
    (so float32 results are the correctly rounded float64 ones).

    Parameters
    ----------
    images_uint8 : array, uint8, shape (N, H, W)
    labels : array, integer, shape (N,)
    mean, std : float
        E.g. ``FASHION_MNIST_MEAN``, ``FASHION_MNIST_STD``; std > 0.
    dtype : floating dtype of the result

    Returns
    -------
    ArrayDataset
        ``x`` of shape (N, 1, H, W) and ``dtype``; ``y`` int64.

    Matches ``torchvision.transforms.ToTensor()`` then ``Normalize((mean,), (std,))``.
    """
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8:
        raise ValueError(f"prepare: expected uint8 images, got {images.dtype}")
    if images.ndim != 3:
        raise ValueError(f"prepare: expected images of shape (N, H, W), got {images.shape}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"prepare: expected a floating dtype, got {dtype}")
    mean, std = float(mean), float(std)
    if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
        raise ValueError(f"prepare: expected finite mean and std > 0, got mean={mean}, "
                         f"std={std}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"prepare: expected labels of shape ({len(images)},), got "
                         f"{labels.shape}")
    # A table over the 256 pixel values: each result is the float64 value rounded once.
    table = ((np.arange(256, dtype=np.float64) / 255.0 - mean) / std).astype(dtype)
    x = table[images][:, None, :, :]
    return ArrayDataset(x, labels)


def train_val_split(dataset: ArrayDataset, val_size, seed: int):
    """Split ``dataset`` at random into (train, val), reproducibly from ``seed``.

    Parameters
    ----------
    dataset : ArrayDataset
    val_size : int or float
        Number of validation samples (1 <= val_size < N), or a fraction in (0, 1)
        (rounded to the nearest count, which must again be in [1, N - 1]).
    seed : int
        The same seed and N give the same split on every machine.

    Returns
    -------
    (ArrayDataset, ArrayDataset)
        Disjoint, together covering ``dataset``; each keeps the original sample order.
    """
    if not isinstance(dataset, ArrayDataset):
        raise TypeError(f"train_val_split: expected an ArrayDataset, got "
                         f"{type(dataset).__name__}")
    n = len(dataset)
    if _checks.is_int(val_size):
        n_val = int(val_size)
    elif _checks.is_real(val_size):
        if not 0.0 < float(val_size) < 1.0:
            raise ValueError(f"train_val_split: a fractional val_size must be in (0, 1), "
                             f"got {val_size}")
        n_val = int(round(float(val_size) * n))
    else:
        raise TypeError(f"train_val_split: expected val_size to be an int or a float, got "
                        f"{type(val_size).__name__} {val_size!r}")
    if n < 2:
        raise ValueError(f"train_val_split: a split needs at least 2 samples (one for "
                         f"each part), the dataset has {n}")
    if n_val > n - 1:
        raise ValueError(f"train_val_split: val_size={val_size!r} asks for {n_val} validation "
                         f"samples but the dataset has only {n}: expected between 1 and "
                         f"{n - 1} (the maximum, {n - 1}, leaves one sample for training)")
    if n_val < 1:
        raise ValueError(f"train_val_split: expected between 1 and {n - 1} validation "
                         f"samples for {n} samples, got {n_val} (val_size={val_size!r})")
    seed = _checks.non_negative_int("train_val_split", "seed", seed)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    return dataset.subset(train_idx), dataset.subset(val_idx)


def iterate_batches(dataset, batch_size: int, shuffle: bool = True, rng=None,
                    augment=None, drop_last: bool = False):
    """Mini-batches ``(xb, yb)`` covering ``dataset`` once.

    Parameters
    ----------
    dataset : object with ``.x`` (N, ...) and ``.y`` (N,), e.g. ArrayDataset
    batch_size : int >= 1
    shuffle : bool
        Draw a fresh permutation (without replacement) from ``rng`` at this call, so
        each call (epoch) visits every sample exactly once in a new order.  Without it
        batches are consecutive slices, which are views of ``dataset.x``: do not write
        into them.
    rng : numpy.random.Generator, int seed, or None
        None uses minidl's generator (``minidl.manual_seed`` seeds it).  Also passed to
        ``augment``.
    augment : callable ``augment(xb, rng) -> xb``, optional
        E.g. :class:`minidl.data.Augment`; applied to each batch's inputs.
    drop_last : bool
        Drop the last batch when it has fewer than ``batch_size`` samples (by default
        it is yielded).

    Returns
    -------
    iterator of (xb, yb)
        ``xb`` of shape (B, ...) and ``yb`` int64 (B,), B = batch_size except maybe last.

    The arguments are checked at the call, before iteration starts.
    """
    for attr in ("x", "y"):
        if not hasattr(dataset, attr):
            raise TypeError(f"iterate_batches: expected a dataset with .x and .y, got "
                             f"{type(dataset).__name__}")
    n = len(dataset.y)
    if len(dataset.x) != n:
        raise ValueError(f"iterate_batches: dataset.x has {len(dataset.x)} samples but "
                         f"dataset.y has {n}")
    _checks.positive_int("iterate_batches", "batch_size", batch_size)
    _checks.boolean("iterate_batches", "shuffle", shuffle)
    _checks.boolean("iterate_batches", "drop_last", drop_last)
    if augment is not None and not callable(augment):
        raise TypeError(f"iterate_batches: expected augment to be callable or None, got "
                         f"{augment!r}")
    if rng is None:
        rng = get_generator()
    elif _checks.is_int(rng):
        rng = np.random.default_rng(int(rng))
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"iterate_batches: expected rng to be a numpy Generator, an int "
                         f"seed or None, got {type(rng).__name__}")
    order = rng.permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    return _batches(dataset.x, dataset.y, order, batch_size, stop, rng, augment)


def _batches(x, y, order, batch_size, stop, rng, augment):
    for start in range(0, stop, batch_size):
        if order is None:
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb, rng)
        yield xb, yb
