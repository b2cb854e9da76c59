"""The data a study sees: Fashion-MNIST through ``minidl.data``.

- ``study_data(val_size, seed, train_size)``: the 60 000 training images split once
  into a training part and a validation part with the study's seed; ``train_size``
  subsamples the training part (fast demos and tests).  The validation part is the same
  for every trial of a study.
- ``retrain_data(train_size, seed)``: training + validation images together (all 60 000,
  or a seeded subsample), for the final model.
- ``test_data()``: the 10 000 test images, used once, by ``tuning retrain``.

Images are normalised with the Fashion-MNIST mean and standard deviation to float32
``(N, 1, 28, 28)``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import TuningError

TRAIN_IMAGES = 60_000  # Fashion-MNIST's training images (validation is split off them)


@lru_cache(maxsize=1)
def _splits():
    from minidl.data import load_fashion_mnist  # noqa: PLC0415 - data is read on first use
    return load_fashion_mnist()


def check_data() -> None:
    """Read the Fashion-MNIST files once (raises what ``load_fashion_mnist`` raises).

    ``run --workers K`` calls it before it stores a new study: its workers read the data
    themselves, and a study whose data cannot be read should not be left behind.
    """
    _splits()


def _prepare(images, labels):
    from minidl.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, prepare  # noqa: PLC0415
    return prepare(images, labels, FASHION_MNIST_MEAN, FASHION_MNIST_STD)


@lru_cache(maxsize=1)
def _full_train():
    s = _splits()
    return _prepare(s.train_images, s.train_labels)


def _subsample(dataset, size, seed, salt, what="--train-size"):
    if size is None or size == len(dataset):
        return dataset
    if size < 1:
        raise ValueError(f"train_size must be a positive int, got {size}")
    if size > len(dataset):  # never silently fewer images than asked for
        raise TuningError(f"{what} {size}: there are only {len(dataset)} training images "
                          f"here; give at most {len(dataset)}, or leave it out for all")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), salt]))
    return dataset.subset(np.sort(rng.permutation(len(dataset))[:size]))


def study_data(val_size: int = 10_000, seed: int = 0, train_size: int | None = None):
    """``(train, val)`` for a study: a seeded split of the training images."""
    from minidl.data import train_val_split  # noqa: PLC0415
    full = _full_train()
    if not 1 <= val_size < len(full):
        raise TuningError(f"--val-size {val_size}: the training set has {len(full)} images "
                          f"and some must remain for training; give 1 to {len(full) - 1}")
    train, val = train_val_split(full, val_size, int(seed))
    if train_size is not None and train_size > len(train):
        raise TuningError(f"--train-size {train_size}: the training part holds {len(train)} "
                          f"images ({len(full)} less --val-size {val_size}); give at most "
                          f"{len(train)}, or all")
    return _subsample(train, train_size, seed, 1), val


def retrain_data(train_size: int | None = None, seed: int = 0):
    """Every training image (training + validation parts), or a seeded subsample."""
    return _subsample(_full_train(), train_size, seed, 2)


def test_data():
    s = _splits()
    return _prepare(s.test_images, s.test_labels)
