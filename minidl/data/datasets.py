"""Finding, downloading and loading Fashion-MNIST and MNIST.

Where the files are looked for (the first directory holding all four wins):

* A directory you name -- the ``root`` argument, else ``$MINIDL_DATA`` -- is the only
  place looked in, in three layouts: ``dir/``, ``dir/<name>/``,
  ``dir/<TorchvisionName>/raw/``.  When none of them holds the four files, that is an
  error naming the missing files: another copy elsewhere is never used instead, and
  nothing is downloaded into a named directory unless asked
  (``python -m minidl.data.fetch --root DIR``, or with ``$MINIDL_DATA`` set).
* Otherwise, in order: the user cache ``$XDG_CACHE_HOME/minidl/<name>`` (default
  ``~/.cache/minidl/<name>``), then the Debian package's directory (Fashion-MNIST only:
  ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``; Debian
  packages no MNIST).

``<name>`` is ``fashion-mnist`` or ``mnist``; ``<TorchvisionName>`` is ``FashionMNIST`` or
``MNIST`` (where ``torchvision.datasets`` keeps them).  Each file may be gzip'd
(``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``, as torchvision
extracts them); the uncompressed one is preferred since it reads faster.

Both data sets use the same four file names, so a directory is also checked to hold the
data set asked for: one whose training labels begin as the *other* data set's do is
skipped (and said so), so ``load_mnist()`` never returns Fashion-MNIST by mistake.

When no directory has the files, none was named and ``download=True``, they are
downloaded into the user cache from the official location (``$MINIDL_DATA_URL``
overrides it), each checked against its published MD5 and renamed into place atomically.
"""
from __future__ import annotations

import os
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .download import DownloadError, download_file
from .idx import IDXError, read_idx

__all__ = [
    "Splits", "DataNotFoundError", "DatasetSpec", "DataLocation", "DATASETS",
    "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "MNIST_MEAN", "MNIST_STD",
    "load_fashion_mnist", "load_mnist", "load_dataset", "find_dataset",
    "download_dataset", "cache_dir", "read_location", "named_data_dir",
]

# Mean and standard deviation of all training pixels scaled to [0, 1].  Fashion-MNIST's
# are computed from the 60000 training images (tests/minidl/data/test_data_loading.py recomputes
# them); MNIST's are the values torchvision's examples use (0.1307, 0.3081).
FASHION_MNIST_MEAN = 0.2860405969887955
FASHION_MNIST_STD = 0.35302424451492254
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

Splits = namedtuple("Splits", ["train_images", "train_labels", "test_images", "test_labels"])
Splits.__doc__ = """Train and test arrays: images uint8 (N, 28, 28), labels int64 (N,)."""

FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class DatasetSpec:
    """What identifies a data set on disk and on the network."""

    name: str                    # "fashion-mnist": cache and sub-directory name
    title: str                   # "Fashion-MNIST": for messages
    torchvision_dir: str         # root/<torchvision_dir>/raw
    files: dict                  # FILE_KEYS -> (file name, MD5 of the official .gz)
    mirrors: tuple               # base URLs, tried in order
    debian_dir: str | None       # where the Debian package puts the files
    debian_package: str | None
    first_train_labels: tuple    # the first training labels, to tell data sets apart
    num_classes: int = 10


DATASETS = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        torchvision_dir="FashionMNIST",
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        debian_dir="/usr/share/datasets/fashion-mnist",
        debian_package="dataset-fashion-mnist",
        first_train_labels=(9, 0, 0, 3, 0, 2, 7, 2, 5, 5),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        torchvision_dir="MNIST",
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"),
        debian_dir=None,
        debian_package=None,
        first_train_labels=(5, 0, 4, 1, 9, 2, 1, 3, 1, 4),
    ),
}


class DataNotFoundError(FileNotFoundError):
    """No searched directory holds the data set (and downloading it failed or was off).

    ``str(exc)`` lists every place searched, why each did not qualify, the download
    error if any, and the commands that get the files.  ``.searched`` holds
    ``(origin, directory, reason)`` triples.
    """

    def __init__(self, message: str, searched=(), dataset: str | None = None):
        super().__init__(message)
        self.searched = list(searched)
        self.dataset = dataset


@dataclass(frozen=True)
class DataLocation:
    """Where a complete data set was found: the directory, why it was searched, the files."""

    origin: str
    directory: Path
    paths: dict  # FILE_KEYS -> Path

    def __str__(self) -> str:
        return f"{self.directory} ({self.origin})"


def _spec(dataset) -> DatasetSpec:
    if isinstance(dataset, DatasetSpec):
        return dataset
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set: expected one of {sorted(DATASETS)}, "
                         f"got {dataset!r}")
    return DATASETS[dataset]


def cache_dir(dataset="fashion-mnist") -> Path:
    """The user cache directory of ``dataset``: ``$XDG_CACHE_HOME/minidl/<name>``, or
    ``~/.cache/minidl/<name>`` when XDG_CACHE_HOME is unset or not absolute."""
    spec = _spec(dataset)
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "minidl" / spec.name


def named_data_dir(root=None) -> tuple[str, Path] | None:
    """``(origin, directory)`` of the directory the caller named -- the ``root`` argument,
    else ``$MINIDL_DATA`` -- or None when neither is given.  A named directory is the
    only place searched (see the module docstring)."""
    if root is not None:
        return "root argument", Path(root).expanduser()
    env = os.environ.get("MINIDL_DATA")
    if env:
        return "$MINIDL_DATA", Path(env).expanduser()
    return None


def _candidate_dirs(spec: DatasetSpec, root=None) -> list[tuple[str, Path | None]]:
    """(origin, directory) pairs in search order; directory None = not configured."""
    named = named_data_dir(root)
    if named is not None:
        label, base = named
        return [(label, base),
                (f"{label}, per-data-set sub-directory", base / spec.name),
                (f"{label}, torchvision layout", base / spec.torchvision_dir / "raw")]
    candidates: list[tuple[str, Path | None]] = [("$MINIDL_DATA", None),
                                                 ("user cache", cache_dir(spec))]
    if spec.debian_dir is not None:
        candidates.append((f"Debian package {spec.debian_package}", Path(spec.debian_dir)))
    return candidates


def _files_in(spec: DatasetSpec, directory: Path) -> tuple[dict | None, str]:
    """The four files in ``directory`` (raw preferred to .gz), or None and why not."""
    if not directory.is_dir():
        return None, "no such directory"
    paths, missing = {}, []
    for key in FILE_KEYS:
        gz_name = spec.files[key][0]
        for name in (gz_name[:-3], gz_name):
            if (directory / name).is_file():
                paths[key] = directory / name
                break
        else:
            missing.append(gz_name)
    if missing:
        return None, "missing " + ", ".join(missing)
    return paths, ""


def _other_dataset_in(spec: DatasetSpec, labels_path: Path) -> DatasetSpec | None:
    """The other known data set whose training labels ``labels_path`` starts with."""
    first = tuple(int(v) for v in read_idx(labels_path)[:len(spec.first_train_labels)])
    if first == spec.first_train_labels:
        return None
    for other in DATASETS.values():
        if other.name != spec.name and first == other.first_train_labels:
            return other
    return None


def _search(spec: DatasetSpec, root=None):
    """(DataLocation or None, [(origin, directory, reason), ...] of the places passed over)."""
    searched = []
    for origin, directory in _candidate_dirs(spec, root):
        if directory is None:
            searched.append((origin, None, "not set"))
            continue
        paths, reason = _files_in(spec, directory)
        if paths is not None:
            other = _other_dataset_in(spec, paths["train_labels"])
            if other is None:
                return DataLocation(origin, directory, paths), searched
            reason = f"holds {other.title}, not {spec.title}"
        searched.append((origin, directory, reason))
    return None, searched


def _how_to_get(spec: DatasetSpec) -> str:
    names = ", ".join(spec.files[k][0] for k in FILE_KEYS)
    lines = ["Get the files with one of:"]
    if spec.debian_package:
        lines.append(f"  sudo apt-get install {spec.debian_package}   "
                     f"(Debian/Ubuntu: installs them in {spec.debian_dir})")
    lines.append(f"  python -m minidl.data.fetch --dataset {spec.name}   "
                 f"(downloads into the cache"
                 + (", else installs the Debian package)" if spec.debian_package else ")"))
    lines.append(f"  export MINIDL_DATA=/path/to/dir   (a directory holding {names})")
    lines.append(f"  or download {names} from {spec.mirrors[0]} into {cache_dir(spec)}")
    return "\n".join(lines)


def _not_found_in_named(spec: DatasetSpec, searched, root=None) -> DataNotFoundError:
    """The error for a named directory (root or $MINIDL_DATA) that lacks the data set:
    the headline says what is wrong with the directory itself (its first layout)."""
    origin, directory = named_data_dir(root)
    reason = searched[0][2]
    if not directory.is_dir():
        names = ", ".join(spec.files[k][0] for k in FILE_KEYS)
        reason = f"no such directory (expected it to hold {names})"
    lines = [f"{spec.title} not found in {directory} ({origin}): {reason}.",
             "Searched, in order:"]
    for i, (where_from, where, why) in enumerate(searched, 1):
        lines.append(f"  {i}. {where_from}: {where} ({why})")
    lines.append(f"A directory you name is the only place searched: no other copy is used "
                 f"instead.  Put the four files (.gz or not) in {directory}, or download "
                 f"them there with:")
    fetch = f"python -m minidl.data.fetch --dataset {spec.name}"
    lines.append(f"  {fetch} --root {directory}" if origin == "root argument" else f"  {fetch}")
    lines.append("or name another directory" + (
        " (or unset MINIDL_DATA to search the user cache and the system's copy)."
        if origin == "$MINIDL_DATA" else
        " (or give no root to search $MINIDL_DATA, the user cache and the system's copy)."))
    return DataNotFoundError("\n".join(lines), searched, spec.name)


def _not_found(spec: DatasetSpec, searched, download_note: str, root=None) -> DataNotFoundError:
    if named_data_dir(root) is not None:
        return _not_found_in_named(spec, searched, root)
    lines = [f"{spec.title} not found. Searched, in order:"]
    for i, (origin, directory, reason) in enumerate(searched, 1):
        where = str(directory) if directory is not None else "-"
        lines.append(f"  {i}. {origin}: {where} ({reason})")
    lines.append(download_note)
    lines.append(_how_to_get(spec))
    return DataNotFoundError("\n".join(lines), searched, spec.name)


def find_dataset(dataset="fashion-mnist", root=None) -> DataLocation:
    """Where ``dataset`` is on this machine (no download).

    Raises
    ------
    DataNotFoundError
        Listing the places searched and how to get the files.
    """
    spec = _spec(dataset)
    location, searched = _search(spec, root)
    if location is None:
        raise _not_found(spec, searched, "Download not attempted (download=False).", root)
    return location


def download_dataset(dataset="fashion-mnist", dest=None, base_url=None, progress=None,
                     timeout: float = 30.0) -> DataLocation:
    """Download the missing files of ``dataset`` into ``dest`` (default: the user cache).

    Each file is fetched from ``base_url`` (default ``$MINIDL_DATA_URL``, else each
    official mirror in turn), checked against its published MD5 and renamed into place
    atomically; files already in ``dest`` are kept.

    Raises
    ------
    DownloadError
        When some file could be fetched from no mirror (the message gives every error).
    """
    spec = _spec(dataset)
    dest = Path(dest) if dest is not None else cache_dir(spec)
    base_url = base_url or os.environ.get("MINIDL_DATA_URL") or None
    mirrors = (base_url,) if base_url else spec.mirrors
    for key in FILE_KEYS:
        name, md5 = spec.files[key]
        if (dest / name).is_file() or (dest / name[:-3]).is_file():
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                download_file(url, dest / name, md5, timeout=timeout, progress=progress)
                break
            except DownloadError as exc:
                errors.append(str(exc))
        else:
            raise DownloadError("; ".join(errors))
    paths, reason = _files_in(spec, dest)
    if paths is None:  # only if something removed the files meanwhile
        raise DownloadError(f"{dest}: {reason} after downloading")
    return DataLocation("downloaded into the user cache" if dest == cache_dir(spec)
                        else "downloaded", dest, paths)


def _check_pair(spec: DatasetSpec, images: np.ndarray, labels: np.ndarray,
                images_path: Path, labels_path: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IDXError(f"{images_path}: expected {spec.title} images, uint8 of shape "
                       f"(N, 28, 28), found {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXError(f"{labels_path}: expected {spec.title} labels, uint8 of shape (N,), "
                       f"found {labels.dtype} of shape {labels.shape}")
    if len(images) != len(labels):
        raise IDXError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                       f"{len(labels)} labels: expected equal counts")
    if labels.size and labels.max() >= spec.num_classes:
        raise IDXError(f"{labels_path}: expected labels in [0, {spec.num_classes - 1}], "
                       f"found {int(labels.max())}")


def read_location(location: DataLocation, dataset="fashion-mnist") -> Splits:
    """Read and validate the four files of ``location``."""
    spec = _spec(dataset)
    p = location.paths
    arrays = {key: read_idx(p[key]) for key in FILE_KEYS}
    _check_pair(spec, arrays["train_images"], arrays["train_labels"],
                p["train_images"], p["train_labels"])
    _check_pair(spec, arrays["test_images"], arrays["test_labels"],
                p["test_images"], p["test_labels"])
    return Splits(arrays["train_images"], arrays["train_labels"].astype(np.int64),
                  arrays["test_images"], arrays["test_labels"].astype(np.int64))


def load_dataset(dataset="fashion-mnist", root=None, download=True) -> Splits:
    """Find (or download) and read ``dataset``; see :func:`load_fashion_mnist`."""
    spec = _spec(dataset)
    location, searched = _search(spec, root)
    if location is None:
        if not download or named_data_dir(root) is not None:
            raise _not_found(spec, searched, "Download not attempted (download=False).", root)
        try:
            location = download_dataset(spec)
        except (DownloadError, OSError) as exc:
            raise _not_found(spec, searched, f"Download failed: {exc}") from exc
    return read_location(location, spec)


def load_fashion_mnist(root=None, download=True) -> Splits:
    """Fashion-MNIST's 60000 training and 10000 test images, with labels.

    Parameters
    ----------
    root : path, optional
        The directory to read (also ``root/fashion-mnist`` and ``root/FashionMNIST/raw``),
        and the only one searched.  Without it: ``$MINIDL_DATA`` the same way when set,
        else the user cache and the Debian package's
        ``/usr/share/datasets/fashion-mnist`` (see the module docstring).
    download : bool
        When nothing is found and no directory was named (``root``, ``$MINIDL_DATA``),
        download into the user cache from the official location (or
        ``$MINIDL_DATA_URL``), MD5-checked and atomic.

    Returns
    -------
    Splits
        ``(train_images, train_labels, test_images, test_labels)``: images uint8
        (N, 28, 28), labels int64 (N,) in [0, 9].

    Raises
    ------
    DataNotFoundError
        Nowhere found (and not downloaded): the message lists the places searched and
        the commands that get the files.  For a named directory that lacks the data
        set, it names the directory and the missing files.
    IDXError
        A found file is truncated, corrupted or inconsistent (counts, shapes, labels).
    """
    return load_dataset("fashion-mnist", root, download)


def load_mnist(root=None, download=True) -> Splits:
    """MNIST's 60000 training and 10000 test digits, with labels.

    As :func:`load_fashion_mnist`, with ``root/mnist`` and ``root/MNIST/raw`` as the
    sub-directories, no Debian package (Debian ships none), and the downloads from the
    mirrors torchvision uses.
    """
    return load_dataset("mnist", root, download)

