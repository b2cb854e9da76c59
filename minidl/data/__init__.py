"""Data: the IDX reader, Fashion-MNIST/MNIST loading, batching and augmentation.

    from minidl.data import (load_fashion_mnist, prepare, train_val_split, iterate_batches,
                             FASHION_MNIST_MEAN, FASHION_MNIST_STD, Augment)
    raw = load_fashion_mnist()
    full = prepare(raw.train_images, raw.train_labels, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    train, val = train_val_split(full, val_size=10000, seed=0)
    for xb, yb in iterate_batches(train, 64, rng=rng, augment=Augment.from_strength(0.5)):
        ...

``python -m minidl.data.fetch`` makes the data available (search, download, or the
Debian package ``dataset-fashion-mnist``).
"""
from .idx import IDXError, read_idx, write_idx
from .download import DownloadError, ChecksumError
from .datasets import (Splits, DataNotFoundError, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                       MNIST_MEAN, MNIST_STD, load_fashion_mnist, load_mnist, find_dataset,
                       download_dataset)
from .batches import ArrayDataset, prepare, train_val_split, iterate_batches
from .transforms import Augment

__all__ = [
    "IDXError", "read_idx", "write_idx", "DownloadError", "ChecksumError",
    "Splits", "DataNotFoundError", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
    "MNIST_MEAN", "MNIST_STD", "load_fashion_mnist", "load_mnist", "find_dataset",
    "download_dataset", "ArrayDataset", "prepare", "train_val_split", "iterate_batches",
    "Augment",
]
