"""Loading Fashion-MNIST/MNIST: the real files, the search order, validation, errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from minidl.data import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, DataNotFoundError, IDXError,
                         Splits, find_dataset, load_fashion_mnist, load_mnist, write_idx)
from minidl.data import datasets

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --- the real data set ----------------------------------------------------------------

def test_real_fashion_mnist_shapes_dtypes_counts(fashion_mnist):
    train_x, train_y, test_x, test_y = fashion_mnist
    assert isinstance(fashion_mnist, Splits)
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert test_x.shape == (10000, 28, 28) and test_x.dtype == np.uint8
    assert train_y.shape == (60000,) and train_y.dtype == np.int64
    assert test_y.shape == (10000,) and test_y.dtype == np.int64
    assert train_x.min() == 0 and train_x.max() == 255


def test_real_fashion_mnist_labels_and_class_balance(fashion_mnist):
    # Fashion-MNIST is exactly balanced: 6000 training and 1000 test images per class.
    np.testing.assert_array_equal(np.bincount(fashion_mnist.train_labels, minlength=10),
                                  np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(fashion_mnist.test_labels, minlength=10),
                                  np.full(10, 1000))
    assert fashion_mnist.train_labels.min() == 0 and fashion_mnist.train_labels.max() == 9
    # The first training image is an ankle boot (9), as in the data set's own docs.
    assert fashion_mnist.train_labels[0] == 9


def test_normalisation_constants_are_those_of_the_training_pixels(fashion_mnist):
    # from the histogram of the 256 pixel values: exact, and fast on 47 million pixels
    counts = np.bincount(fashion_mnist.train_images.ravel(), minlength=256)
    values = np.arange(256) / 255.0
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert abs(mean - FASHION_MNIST_MEAN) < 1e-12
    assert abs(std - FASHION_MNIST_STD) < 1e-12


# --- synthetic data sets in temporary directories --------------------------------------

def make_dataset_dir(directory, marker: int, n_train: int = 12, n_test: int = 5,
                     gz: bool = True, train_labels=None, test_labels=None):
    """Four small IDX files whose every pixel is ``marker`` (to tell directories apart)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(marker)
    if train_labels is None:
        train_labels = rng.integers(0, 10, n_train)
    if test_labels is None:
        test_labels = rng.integers(0, 10, n_test)
    arrays = [np.full((n_train, 28, 28), marker, np.uint8), np.asarray(train_labels, np.uint8),
              np.full((n_test, 28, 28), marker, np.uint8), np.asarray(test_labels, np.uint8)]
    for name, array in zip(FILES, arrays):
        write_idx(directory / (name + ".gz" if gz else name), array)
    return directory


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No $MINIDL_DATA, a temporary cache, and an empty Debian directory: only what the
    test writes can be found.  Returns the temporary directory."""
    for var in ("MINIDL_DATA", "MINIDL_DATA_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    debian = tmp_path / "debian"
    spec = datasets.DATASETS["fashion-mnist"]
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist",
                        dataclasses.replace(spec, debian_dir=str(debian)))
    return tmp_path


def marker_of(splits) -> int:
    return int(splits.train_images[0, 0, 0])


def test_search_order_root_env_cache_debian(isolated, monkeypatch):
    root = make_dataset_dir(isolated / "root", marker=1)
    env = make_dataset_dir(isolated / "env", marker=2)
    make_dataset_dir(isolated / "cache" / "minidl" / "fashion-mnist", marker=3)
    make_dataset_dir(isolated / "debian", marker=4)
    monkeypatch.setenv("MINIDL_DATA", str(env))

    assert marker_of(load_fashion_mnist(root=root, download=False)) == 1
    assert marker_of(load_fashion_mnist(download=False)) == 2
    # a root without the files is an error, not a fall-through to $MINIDL_DATA's copy
    with pytest.raises(DataNotFoundError, match="not found in .*empty"):
        load_fashion_mnist(root=isolated / "empty", download=False)
    monkeypatch.delenv("MINIDL_DATA")
    assert marker_of(load_fashion_mnist(download=False)) == 3
    assert find_dataset("fashion-mnist").origin == "user cache"
    for name in FILES:
        (isolated / "cache" / "minidl" / "fashion-mnist" / (name + ".gz")).unlink()
    assert marker_of(load_fashion_mnist(download=False)) == 4
    assert find_dataset("fashion-mnist").origin.startswith("Debian package")


def test_torchvision_layout_and_sub_directory(isolated, monkeypatch):
    make_dataset_dir(isolated / "tv" / "FashionMNIST" / "raw", marker=5)
    assert marker_of(load_fashion_mnist(root=isolated / "tv", download=False)) == 5
    make_dataset_dir(isolated / "data" / "fashion-mnist", marker=6)
    make_dataset_dir(isolated / "data" / "MNIST" / "raw", marker=7)
    monkeypatch.setenv("MINIDL_DATA", str(isolated / "data"))
    assert marker_of(load_fashion_mnist(download=False)) == 6
    assert marker_of(load_mnist(download=False)) == 7
    assert find_dataset("mnist").origin == "$MINIDL_DATA, torchvision layout"


def test_uncompressed_files_are_read_and_preferred(isolated):
    directory = make_dataset_dir(isolated / "raw", marker=8, gz=False)
    assert marker_of(load_fashion_mnist(root=directory, download=False)) == 8
    # torchvision keeps both forms side by side: the uncompressed one is used
    make_dataset_dir(isolated / "raw-gz", marker=9, gz=True)
    for name in FILES:
        (isolated / "raw-gz" / name).write_bytes((directory / name).read_bytes())
    location = find_dataset("fashion-mnist", root=isolated / "raw-gz")
    assert all(p.suffix != ".gz" for p in location.paths.values())
    assert marker_of(load_fashion_mnist(root=isolated / "raw-gz", download=False)) == 8


def test_incomplete_directories_are_skipped_and_reported(isolated):
    cache = make_dataset_dir(isolated / "cache" / "minidl" / "fashion-mnist", marker=3)
    (cache / "train-images-idx3-ubyte.gz").unlink()
    make_dataset_dir(isolated / "debian", marker=4)
    assert marker_of(load_fashion_mnist(download=False)) == 4   # past the incomplete cache
    (isolated / "debian" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(download=False)
    assert "missing t10k-labels-idx1-ubyte.gz" in str(info.value)
    assert "missing train-images-idx3-ubyte.gz" in str(info.value)


@pytest.mark.parametrize("how", ["root", "env"])
@pytest.mark.parametrize("download", [False, True])
def test_an_incomplete_named_directory_is_an_error_naming_the_missing_files(
        isolated, monkeypatch, how, download):
    partial = make_dataset_dir(isolated / "partial", marker=1)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    (partial / "train-images-idx3-ubyte.gz").unlink()
    make_dataset_dir(isolated / "cache" / "minidl" / "fashion-mnist", marker=3)  # not used
    make_dataset_dir(isolated / "debian", marker=4)                              # nor this
    if how == "env":
        monkeypatch.setenv("MINIDL_DATA", str(partial))
    root, origin = (partial, "root argument") if how == "root" else (None, "$MINIDL_DATA")
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(root=root, download=download)   # download: never into a named dir
    message = str(info.value)
    assert message.startswith(
        f"Fashion-MNIST not found in {partial} ({origin}): missing "
        f"train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz.")
    assert "no other copy is used instead" in message
    assert str(isolated / "cache") not in message and str(isolated / "debian") not in message
    assert "python -m minidl.data.fetch --dataset fashion-mnist" in message
    with pytest.raises(DataNotFoundError, match="missing train-images-idx3-ubyte.gz"):
        find_dataset("fashion-mnist", root=root)
    assert sorted(p.name for p in partial.iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                         "train-labels-idx1-ubyte.gz"]


def test_a_missing_named_directory_is_an_error_listing_the_files(isolated, monkeypatch):
    make_dataset_dir(isolated / "cache" / "minidl" / "fashion-mnist", marker=3)
    monkeypatch.setenv("MINIDL_DATA", str(isolated / "typo"))
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist()
    assert str(info.value).startswith(
        f"Fashion-MNIST not found in {isolated / 'typo'} ($MINIDL_DATA): no such directory "
        f"(expected it to hold train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz).")
    assert "unset MINIDL_DATA" in str(info.value)
    assert not (isolated / "typo").exists()
    monkeypatch.delenv("MINIDL_DATA")
    assert marker_of(load_fashion_mnist(download=False)) == 3


def test_fetch_downloads_into_the_named_directory(isolated, monkeypatch, capsys):
    from minidl.data import fetch

    def fake_download(spec, dest=None, base_url=None, **kwargs):
        assert dest == isolated / "mine"
        make_dataset_dir(dest, marker=5)
    monkeypatch.setattr(fetch, "download_dataset", fake_download)
    assert fetch.main(["--root", str(isolated / "mine"), "--no-apt"]) == 0
    assert f"Fashion-MNIST: {isolated / 'mine'}  [root argument]" in capsys.readouterr().out
    assert marker_of(load_fashion_mnist(root=isolated / "mine", download=False)) == 5


def test_a_directory_holding_the_other_data_set_is_skipped(isolated):
    mnist_spec = datasets.DATASETS["mnist"]
    fashion_spec = datasets.DATASETS["fashion-mnist"]
    mnist_dir = make_dataset_dir(isolated / "digits", marker=1,
                                 train_labels=list(mnist_spec.first_train_labels) + [0, 1])
    fashion_dir = make_dataset_dir(isolated / "clothes", marker=2,
                                   train_labels=list(fashion_spec.first_train_labels) + [0, 1])
    assert marker_of(load_mnist(root=mnist_dir, download=False)) == 1
    assert marker_of(load_fashion_mnist(root=fashion_dir, download=False)) == 2
    with pytest.raises(DataNotFoundError, match="holds MNIST, not Fashion-MNIST"):
        load_fashion_mnist(root=mnist_dir, download=False)
    with pytest.raises(DataNotFoundError, match="holds Fashion-MNIST, not MNIST"):
        load_mnist(root=fashion_dir, download=False)


def test_not_found_error_lists_places_and_commands(isolated, monkeypatch):
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(download=False)
    exc = info.value
    assert isinstance(exc, FileNotFoundError)
    message = str(exc)
    for place in (isolated / "cache" / "minidl" / "fashion-mnist", isolated / "debian"):
        assert str(place) in message
    assert "$MINIDL_DATA: - (not set)" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "export MINIDL_DATA=" in message
    assert "python -m minidl.data.fetch" in message
    assert "download=False" in message
    # the places are listed in search order
    order = [message.index(p) for p in ("$MINIDL_DATA", str(isolated / "cache"),
                                        str(isolated / "debian"))]
    assert order == sorted(order)
    # a named directory (root before $MINIDL_DATA) is searched alone, in three layouts
    monkeypatch.setenv("MINIDL_DATA", str(isolated / "env"))
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(root=isolated / "root", download=False)
    message = str(info.value)
    for place in (isolated / "root", isolated / "root" / "fashion-mnist",
                  isolated / "root" / "FashionMNIST" / "raw"):
        assert f": {place} (no such directory)" in message
    assert str(isolated / "env") not in message and str(isolated / "cache") not in message
    assert [s[0] for s in info.value.searched] == [
        "root argument", "root argument, per-data-set sub-directory",
        "root argument, torchvision layout"]


def test_mnist_has_no_debian_package(isolated):
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(root=isolated / "nothing", download=False)
    assert "apt-get" not in str(info.value)
    assert "/usr/share/datasets" not in str(info.value)


def test_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert datasets.cache_dir("mnist") == tmp_path / ".cache" / "minidl" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datasets.cache_dir("fashion-mnist") == tmp_path / ".cache" / "minidl" / "fashion-mnist"


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown data set"):
        find_dataset("cifar10")


@pytest.mark.parametrize("n_train_labels, n_test_labels, pattern", [
    (11, 5, r"holds 12 images but .*train-labels.* holds 11 labels"),
    (12, 6, r"holds 5 images but .*t10k-labels.* holds 6 labels"),
])
def test_image_and_label_counts_must_agree(isolated, n_train_labels, n_test_labels, pattern):
    directory = make_dataset_dir(isolated / "d", marker=1,
                                 train_labels=np.zeros(n_train_labels),
                                 test_labels=np.zeros(n_test_labels))
    with pytest.raises(IDXError, match=pattern):
        load_fashion_mnist(root=directory, download=False)


def test_labels_out_of_range_and_wrong_image_shape(isolated):
    directory = make_dataset_dir(isolated / "d", marker=1, test_labels=[0, 1, 10, 2, 3])
    with pytest.raises(IDXError, match=r"t10k-labels.*expected labels in \[0, 9\], found 10"):
        load_fashion_mnist(root=directory, download=False)
    directory = make_dataset_dir(isolated / "e", marker=1)
    write_idx(directory / "train-images-idx3-ubyte.gz", np.zeros((12, 28, 27), np.uint8))
    with pytest.raises(IDXError, match=r"train-images.*shape \(N, 28, 28\), found uint8 of "
                                       r"shape \(12, 28, 27\)"):
        load_fashion_mnist(root=directory, download=False)


def test_corrupted_file_in_a_found_directory_raises(isolated):
    directory = make_dataset_dir(isolated / "d", marker=1)
    path = directory / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IDXError, match="train-images-idx3-ubyte.gz"):
        load_fashion_mnist(root=directory, download=False)


def test_loaded_arrays_are_writable_and_independent(isolated):
    directory = make_dataset_dir(isolated / "d", marker=1)
    first = load_fashion_mnist(root=directory, download=False)
    first.train_images[0] = 0
    first.train_labels[0] = 3
    second = load_fashion_mnist(root=directory, download=False)
    assert marker_of(second) == 1


# --- asking for more samples than there are --------------------------------------------

@pytest.mark.parametrize("val_size, asked", [(70_000, 70000), (12, 12), (0.9999, 12)])
def test_a_validation_part_larger_than_the_data_says_the_maximum(val_size, asked):
    from minidl.data import ArrayDataset, train_val_split
    data = ArrayDataset(np.zeros((12, 3), np.float32), np.zeros(12, np.int64))
    with pytest.raises(ValueError) as info:
        train_val_split(data, val_size, seed=0)
    assert str(info.value) == (
        f"train_val_split: val_size={val_size!r} asks for {asked} validation samples but the "
        f"dataset has only 12: expected between 1 and 11 (the maximum, 11, leaves one "
        f"sample for training)")
    with pytest.raises(ValueError, match="a split needs at least 2 samples .* has 1"):
        train_val_split(data.subset([0]), 1, seed=0)
