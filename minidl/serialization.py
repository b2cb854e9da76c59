"""Save and load model weights as ``.npz``; convert to and from PyTorch state_dicts.

File format: one ``.npz`` archive (``numpy.savez``) holding

* one array per ``state_dict`` entry, under the same key (``"layers.1.weight"``):
  parameters and float buffers as floats, integer buffers (BatchNorm's
  ``num_batches_tracked``) as int64;
* ``"__minidl_metadata__"``: a one-element string array holding a JSON object
  ``{"format": "minidl", "version": 1, "metadata": {...}}`` with whatever
  keyword arguments were given to :func:`save`.

Nothing is pickled, and :func:`load` opens the file with
``allow_pickle=False``, so loading a file cannot run code.  A file that is not
such an archive (damaged, truncated, another format) is a ValueError naming the
file, never a ``zipfile`` error.  Weights go through ``Module.load_state_dict``,
which checks keys, shapes and dtypes before changing anything.

PyTorch interchange (``torch`` imported only inside the functions that need it)::

    model.load_state_dict(from_torch_state_dict(torch_model.state_dict()))
    torch_model.load_state_dict(to_torch_state_dict(model))
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from . import backend
from .nn.module import state_array

__all__ = ["save", "load", "read_metadata", "from_torch_state_dict", "to_torch_state_dict"]

METADATA_KEY = "__minidl_metadata__"
FORMAT_VERSION = 1


def _json_default(value):
    """Let NumPy scalars and arrays in metadata become JSON numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def _npz_path(path) -> str:
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def save(model, path, /, **metadata) -> str:
    """Write ``model.state_dict()`` and ``metadata`` to ``path`` (``.npz`` appended if missing).

    ``metadata`` values must be JSON-serialisable (NumPy scalars and arrays are
    converted).  The file is written next to its destination and renamed into
    place, so an interrupted save never leaves a half-written file.  Returns
    the path written.
    """
    state = model.state_dict()
    if METADATA_KEY in state:
        raise ValueError(f"save: the model has a parameter named {METADATA_KEY!r}, which is reserved")
    try:
        header = json.dumps({"format": "minidl", "version": FORMAT_VERSION, "metadata": metadata},
                            default=_json_default, allow_nan=True)
    except TypeError as exc:
        raise ValueError(f"save: metadata must be JSON-serialisable: {exc}") from None
    path = _npz_path(path)
    tmp = path + ".tmp"
    arrays = {k: backend.to_numpy(v) for k, v in state.items()}
    arrays[METADATA_KEY] = np.array([header])
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# A .npz file is a zip archive: it begins with a zip entry header ("PK\x03\x04"), or
# with the end-of-archive record when it holds nothing.  A .npy file begins "\x93NUMPY".
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"

# What reading a damaged archive raises, depending on where the damage is: zipfile
# (BadZipFile: no end-of-archive record, a bad CRC), zlib (a compressed entry), NumPy
# (ValueError, EOFError: an entry's header or data cut short) or the file system.
_DAMAGE_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError)


def _open_archive(path: str):
    """The ``NpzFile`` at ``path``; FileNotFoundError when it is missing, ValueError
    naming ``path`` for anything that is not a readable .npz archive."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except FileNotFoundError:
        raise
    except OSError as exc:   # a directory, no permission
        raise ValueError(f"load: {path!r} is not a readable .npz archive ({exc})") from None
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"load: {path!r} holds a single array, expected a .npz archive of weights")
    if not head.startswith(_ZIP_MAGICS):
        what = ("the file is empty" if not head else
                "it does not begin with a zip header: another format, or a damaged file")
        raise ValueError(f"load: {path!r} is not a readable .npz archive ({what})")
    try:
        return np.load(path, allow_pickle=False)
    except _DAMAGE_ERRORS as exc:
        raise ValueError(f"load: {path!r} is not a readable .npz archive (damaged or "
                         f"truncated: {type(exc).__name__}: {exc})") from None


def _read_entry(archive, key: str, path: str) -> np.ndarray:
    """One array of ``archive``; ValueError naming the entry and ``path`` when it cannot be read."""
    try:
        value = archive[key]
    except ValueError as exc:
        # NumPy says "allow_pickle" for an object array, which would need pickle
        if "allow_pickle" in str(exc):
            raise ValueError(f"load: entry {key!r} of {path!r} cannot be read without "
                             f"pickle ({exc})") from None
        raise ValueError(f"load: entry {key!r} of {path!r} is damaged ({exc})") from None
    except _DAMAGE_ERRORS as exc:
        raise ValueError(f"load: entry {key!r} of {path!r} is damaged ({type(exc).__name__}: "
                         f"{exc})") from None
    if not isinstance(value, np.ndarray):   # a zip member that is not a .npy file
        raise ValueError(f"load: entry {key!r} of {path!r} is not a NumPy array: expected a "
                         f".npz archive written by minidl.save or numpy.savez")
    return value


def _read(path):
    """``(arrays, metadata)`` from a file written by :func:`save` (or any ``.npz`` of arrays)."""
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    archive = _open_archive(path)
    arrays, metadata = OrderedDict(), {}
    with archive:
        for key in archive.files:
            value = _read_entry(archive, key, path)
            if key == METADATA_KEY:
                try:
                    header = json.loads(str(value.reshape(-1)[0]))
                    metadata = header["metadata"]
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    raise ValueError(f"load: malformed metadata in {path!r} ({exc})") from None
            elif value.dtype.kind not in "fiu":
                raise ValueError(f"load: entry {key!r} of {path!r} has dtype {value.dtype}, "
                                 f"expected floating point (or an integer buffer)")
            else:
                arrays[key] = value
    return arrays, metadata


def load(model, path, /) -> dict:
    """Load weights saved by :func:`save` into ``model``; return the saved metadata.

    Raises FileNotFoundError when ``path`` does not exist, and ValueError naming
    the file when it is not a readable .npz archive of numeric arrays (damaged or
    truncated, another format, pickled objects, entries that are neither float nor
    integer), or when an entry's kind is not its model entry's kind (float for
    parameters and float buffers, integer for integer buffers).  Raises ValueError
    (from ``load_state_dict``) naming missing keys, unexpected keys and shape
    mismatches.  In every one of these cases the model is left unchanged.  Arrays
    are cast to the model's dtypes.
    """
    path_read = os.fspath(path)
    arrays, metadata = _read(path)
    expected = {k: v.dtype.kind for k, v in model.state_dict().items()}
    for key, value in arrays.items():
        want = expected.get(key)
        if want is None:
            continue           # an unexpected key: load_state_dict names it
        if want == "f" and value.dtype.kind != "f":
            raise ValueError(f"load: entry {key!r} of {path_read!r} has dtype {value.dtype}, "
                             f"expected floating point")
        if want in "iu" and value.dtype.kind not in "iu":
            raise ValueError(f"load: entry {key!r} of {path_read!r} has dtype {value.dtype}, "
                             f"expected an integer (it is an integer buffer)")
    model.load_state_dict(arrays)
    return metadata


def read_metadata(path) -> dict:
    """The metadata stored by :func:`save`, without loading weights into a model."""
    return _read(path)[1]


def from_torch_state_dict(state_dict) -> "OrderedDict[str, np.ndarray]":
    """A PyTorch ``state_dict`` (tensors) as an ``OrderedDict`` of NumPy arrays (copies).

    Buffers come too (``running_mean``, ``running_var``, ``num_batches_tracked`` as
    int64).  Keys are kept: minidl layers use torch's names and shapes, so the result
    loads with ``model.load_state_dict``.  NumPy arrays pass through as copies.
    """
    return OrderedDict((key, np.array(state_array(value), copy=True))
                       for key, value in state_dict.items())


def to_torch_state_dict(model) -> "OrderedDict[str, object]":
    """``model.state_dict()`` as torch tensors, for ``torch_model.load_state_dict``."""
    import torch  # noqa: PLC0415 - optional dependency, imported lazily

    # not np.ascontiguousarray: it turns a 0-d array (num_batches_tracked) into shape (1,)
    return OrderedDict((k, torch.from_numpy(np.asarray(v, order="C")))
                       for k, v in model.state_dict().items())
