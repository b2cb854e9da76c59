"""Save and load model weights as ``.npz``; convert to and from PyTorch state_dicts.

File format: one ``.npz`` archive (``numpy.savez``) holding

* one array per ``state_dict`` entry, under the same key (``"layers.1.weight"``):
  parameters and float buffers as floats, integer buffers (BatchNorm's
  ``num_batches_tracked``) as int64;
* ``"__minidl_metadata__"``: a one-element string array holding a JSON object
  ``{"format": "minidl", "version": 1, "metadata": {...}}`` with whatever
  keyword arguments were given to :func:`save`.

Nothing is pickled, and :func:`load` refuses an entry that would need pickle, so
loading a file cannot run code.  A file that is not such an archive (damaged,
truncated, another format, not a regular file) is a ValueError naming the file,
never a ``zipfile`` error.  Untrusted files are safe to load: every size is checked
from the zip's central directory and the entries' .npy headers before any data is
read, and only the entries the model has are read (see :func:`load`).  Weights go
through ``Module.load_state_dict``, which checks keys, shapes and dtypes before
changing anything.

PyTorch interchange (``torch`` imported only inside the functions that need it)::

    model.load_state_dict(from_torch_state_dict(torch_model.state_dict()))
    torch_model.load_state_dict(to_torch_state_dict(model))
"""
from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from . import backend
from .data.idx import file_kind
from .nn.parameter import state_array

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
# (BadZipFile: no end-of-archive record, a bad CRC; RuntimeError: an encrypted entry;
# NotImplementedError: an unknown compression method), zlib (a compressed entry), NumPy
# (ValueError: an entry's .npy header), EOFError (data cut short) or the file system.
_DAMAGE_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError,
                  RuntimeError, NotImplementedError)

# The metadata entry is a JSON string (a config, a few numbers): 16 MiB is far more than
# any save() writes, and bounds what a hostile file can make load() allocate for it.
MAX_METADATA_BYTES = 16 * 2 ** 20
_CHUNK = 2 ** 20


class _Entry(NamedTuple):
    """One array of an archive as its zip entry and .npy header declare it (nothing read)."""

    key: str
    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype
    fortran_order: bool
    data_offset: int            # bytes of .npy header before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _open_file(path: str):
    """``path`` opened for reading; FileNotFoundError when it is missing, ValueError naming
    it when it cannot be read or is not a regular file (a FIFO is refused without waiting
    for a writer, a device without reading from it)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:   # no permission, a dangling path component
        raise ValueError(f"load: {path!r} is not a readable .npz archive ({exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"load: {path!r} is not a readable .npz archive "
                             f"({file_kind(mode)}, not a regular file)")
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_archive(f, path: str) -> zipfile.ZipFile:
    """The zip archive in the open file ``f``; ValueError naming ``path`` for anything that
    is not a readable .npz archive.  Reads the magic and the zip's central directory only."""
    head = f.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"load: {path!r} holds a single array, expected a .npz archive of weights")
    if not head.startswith(_ZIP_MAGICS):
        what = ("the file is empty" if not head else
                "it does not begin with a zip header: another format, or a damaged file")
        raise ValueError(f"load: {path!r} is not a readable .npz archive ({what})")
    f.seek(0)
    try:
        return zipfile.ZipFile(f)
    except _DAMAGE_ERRORS as exc:
        raise ValueError(f"load: {path!r} is not a readable .npz archive (damaged or "
                         f"truncated: {type(exc).__name__}: {exc})") from None


def _damaged(key: str, path: str, exc: BaseException) -> ValueError:
    return ValueError(f"load: entry {key!r} of {path!r} is damaged ({type(exc).__name__}: "
                      f"{exc})")


def _not_an_array(key: str, path: str) -> ValueError:
    return ValueError(f"load: entry {key!r} of {path!r} is not a NumPy array: expected a "
                      f".npz archive written by minidl.save or numpy.savez")


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: str) -> _Entry:
    """The entry's .npy header, read without reading its data; ValueError naming the entry
    and ``path`` for a header that is damaged, needs pickle, or declares more (or less)
    data than the zip entry holds."""
    try:
        with zf.open(info) as fp:
            magic = fp.read(len(_NPY_MAGIC))
            if magic != _NPY_MAGIC:
                raise _not_an_array(key, path)
            fp.seek(0)
            version = npy_format.read_magic(fp)
            if version == (1, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_2_0(fp)
            else:
                raise ValueError(f"load: entry {key!r} of {path!r} is a .npy file of format "
                                 f"version {version[0]}.{version[1]}, expected 1.0 or 2.0 "
                                 f"(what numpy.savez writes)")
            offset = fp.tell()
    except ValueError as exc:
        if str(exc).startswith("load: "):
            raise
        raise _damaged(key, path, exc) from None
    except _DAMAGE_ERRORS as exc:
        raise _damaged(key, path, exc) from None
    entry = _Entry(key, info, tuple(int(n) for n in shape), dtype, bool(fortran_order), offset)
    if dtype.hasobject:
        raise ValueError(f"load: entry {key!r} of {path!r} cannot be read without pickle (it "
                         f"holds Python objects, dtype {dtype})")
    held = info.file_size - offset
    if entry.nbytes != held:
        raise ValueError(f"load: entry {key!r} of {path!r} is damaged: its header declares "
                         f"shape {entry.shape} {dtype} ({entry.nbytes:,} bytes), but the "
                         f"entry holds {held:,} bytes of data")
    return entry


def _entries(zf: zipfile.ZipFile, path: str) -> "OrderedDict[str, _Entry]":
    """Every entry's header, checked against the zip's central directory; nothing's data
    is read.  The metadata must be a string of at most ``MAX_METADATA_BYTES``, the other
    entries numbers (float, int or unsigned int)."""
    entries = OrderedDict()
    for info in zf.infolist():
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if key in entries:
            raise ValueError(f"load: entry {key!r} of {path!r} appears twice: a damaged or "
                             f"hand-made archive")
        if not info.filename.endswith(".npy"):
            raise _not_an_array(key, path)
        entry = entries[key] = _read_header(zf, info, key, path)
        if key == METADATA_KEY:
            if entry.nbytes > MAX_METADATA_BYTES:
                raise ValueError(f"load: entry {key!r} of {path!r} holds {entry.nbytes:,} "
                                 f"bytes, more than the limit of {MAX_METADATA_BYTES:,} for "
                                 f"metadata (minidl.serialization.MAX_METADATA_BYTES)")
            if entry.dtype.kind != "U":
                raise ValueError(f"load: malformed metadata in {path!r} (dtype "
                                 f"{entry.dtype}, expected a JSON string)")
        elif entry.dtype.kind not in "fiu":
            raise ValueError(f"load: entry {key!r} of {path!r} has dtype {entry.dtype}, "
                             f"expected floating point (or an integer buffer)")
    return entries


def _read_data(zf: zipfile.ZipFile, entry: _Entry, path: str, keep: bool = True):
    """The entry's array (its size checked by ``_entries``), read in chunks; with ``keep``
    False only checked (every byte read, the zip's CRC verified) and None returned."""
    count = math.prod(entry.shape)
    array = np.empty(count, dtype=entry.dtype) if keep else None
    # the array's bytes, filled chunk by chunk (none to fill for an empty array)
    out = array.reshape(-1).view(np.uint8) if keep and entry.nbytes else None
    try:
        with zf.open(entry.info) as fp:
            fp.read(entry.data_offset)
            done = 0
            while done < entry.nbytes:
                chunk = fp.read(min(_CHUNK, entry.nbytes - done))
                if not chunk:
                    raise EOFError(f"{done} of {entry.nbytes} bytes of data")
                if keep:
                    out[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
                done += len(chunk)
            if fp.read(1):       # reading to the end also makes zipfile check the CRC
                raise ValueError("more data than its header declares")
    except _DAMAGE_ERRORS as exc:
        raise _damaged(entry.key, path, exc) from None
    if not keep:
        return None
    if entry.fortran_order:
        return array.reshape(entry.shape[::-1]).transpose()
    return array.reshape(entry.shape)


def _metadata(zf: zipfile.ZipFile, entries: dict, path: str) -> dict:
    """The metadata saved by :func:`save` ({} when the archive has none)."""
    entry = entries.get(METADATA_KEY)
    if entry is None:
        return {}
    value = _read_data(zf, entry, path)
    try:
        header = json.loads(str(value.reshape(-1)[0]))
        return header["metadata"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"load: malformed metadata in {path!r} ({exc})") from None


def _fit_problems(model, entries: dict, path: str) -> list:
    """What keeps the archive's entries from loading into ``model``, from their headers.

    The kinds first (ValueError naming the entry: a float entry for an integer buffer,
    an integer entry for a parameter), then every missing key, unexpected key and shape
    mismatch, as ``Module.load_state_dict`` names them, with each entry's size.
    """
    # the entries themselves, not state_dict(): a device model's would be copied to the host
    own = {key: array for key, _, _, array, _ in model._state_entries()}
    for key, entry in entries.items():
        want = own[key].dtype.kind if key in own else None
        if want == "f" and entry.dtype.kind != "f":
            raise ValueError(f"load: entry {key!r} of {path!r} has dtype {entry.dtype}, "
                             f"expected floating point")
        if want is not None and want in "iu" and entry.dtype.kind not in "iu":
            raise ValueError(f"load: entry {key!r} of {path!r} has dtype {entry.dtype}, "
                             f"expected an integer (it is an integer buffer)")
    problems = []
    missing = [k for k in own if k not in entries]
    unexpected = [k for k in entries if k not in own and k != METADATA_KEY]
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        sizes = ", ".join(f"{k!r}: {entries[k].nbytes:,} bytes" for k in unexpected)
        problems.append(f"unexpected keys {unexpected} (not read; {sizes})")
    for key, value in own.items():
        entry = entries.get(key)
        if entry is not None and entry.shape != tuple(value.shape):
            problems.append(f"'{key}': expected shape {tuple(value.shape)}, got "
                            f"{entry.shape} ({entry.nbytes:,} bytes in the file)")
    return problems


def _npz_file(path) -> str:
    path = os.fspath(path)
    if not os.path.lexists(path) and os.path.lexists(path + ".npz"):
        path += ".npz"
    return path


def load(model, path, /) -> dict:
    """Load weights saved by :func:`save` into ``model``; return the saved metadata.

    Raises FileNotFoundError when ``path`` does not exist, and ValueError naming
    the file when it is not a readable .npz archive of numeric arrays (damaged or
    truncated, another format, pickled objects, entries that are neither float nor
    integer, not a regular file), or when an entry's kind is not its model entry's kind
    (float for parameters and float buffers, integer for integer buffers).  Raises
    ValueError naming missing keys, unexpected keys and shape mismatches.  In every one
    of these cases the model is left unchanged.  Arrays are cast to the model's dtypes.

    Safe for untrusted files: nothing is unpickled, and sizes are checked before any
    data is read -- each entry's .npy header against its size in the zip's central
    directory, then its shape against the model's -- so a small file declaring (or
    holding) gigabytes is refused without reading them, naming the entry and its size.
    Only the entries the model has (and the metadata, at most ``MAX_METADATA_BYTES``)
    are read.  A FIFO or device is refused without waiting on it.
    """
    path = _npz_file(path)
    with _open_file(path) as f, _open_archive(f, path) as zf:
        entries = _entries(zf, path)
        metadata = _metadata(zf, entries, path)
        problems = _fit_problems(model, entries, path)
        if problems:
            raise ValueError(f"load: {path!r} does not fit the model "
                             f"({type(model).__name__}): " + "; ".join(problems))
        arrays = OrderedDict((key, _read_data(zf, entry, path))
                             for key, entry in entries.items() if key != METADATA_KEY)
    model.load_state_dict(arrays)
    return metadata


def read_metadata(path) -> dict:
    """The metadata stored by :func:`save`, without loading weights into a model.

    The file is checked as :func:`load` checks it: every entry is read (in chunks, none
    kept) so that a damaged archive is a ValueError naming it here too.
    """
    path = _npz_file(path)
    with _open_file(path) as f, _open_archive(f, path) as zf:
        entries = _entries(zf, path)
        for key, entry in entries.items():
            if key != METADATA_KEY:
                _read_data(zf, entry, path, keep=False)
        return _metadata(zf, entries, path)


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
