"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a small big-endian header followed by the raw array::

    offset  size       content
    0       2          two zero bytes
    2       1          dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                       0x0D float32, 0x0E float64)
    3       1          number of dimensions d (>= 1)
    4       4 * d      each dimension as a big-endian uint32
    4 + 4d  ...        prod(dims) items, big-endian, C order

The file may be gzip-compressed; that is recognised by its first bytes (1f 8b), never
by its name, since both forms are found under both names in the wild.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

__all__ = ["IDXError", "read_idx", "write_idx"]

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_DTYPE = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}


class IDXError(ValueError):
    """An IDX file that cannot be read: truncated, corrupted or not IDX at all.

    The message names the file, what was expected there and what was found.
    """


def _decompress(path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise IDXError(f"{path}: truncated gzip stream: expected a complete gzip file "
                       f"({len(raw)} compressed bytes found), found its end missing "
                       f"({exc})") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise IDXError(f"{path}: corrupted gzip data: expected a valid gzip stream, "
                       f"found an error while decompressing ({exc})") from None


def parse_idx(buf: bytes, path="<bytes>") -> np.ndarray:
    """Parse the (uncompressed) bytes of an IDX file; ``path`` only names it in errors."""
    if len(buf) < 4:
        raise IDXError(f"{path}: too short for an IDX header: expected at least 4 bytes, "
                       f"found {len(buf)}")
    if buf[0] != 0 or buf[1] != 0:
        raise IDXError(f"{path}: bad magic number: expected the file to start with two "
                       f"zero bytes, found 0x{buf[0]:02x}{buf[1]:02x} (not an IDX file?)")
    code, ndim = buf[2], buf[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IDXError(f"{path}: unknown dtype code: expected one of {known}, "
                       f"found 0x{code:02x}")
    if ndim < 1:
        raise IDXError(f"{path}: bad number of dimensions: expected at least 1, found 0")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise IDXError(f"{path}: truncated header: expected {header} bytes for "
                       f"{ndim} dimensions, found {len(buf)} bytes in the file")
    shape = tuple(int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "trailing bytes"
        raise IDXError(f"{path}: {what}: expected {expected} bytes (header {header} + "
                       f"{'x'.join(map(str, shape))} {dtype.newbyteorder('=').name}), "
                       f"found {len(buf)}")
    data = np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)
    # astype copies into a writable, native-byte-order array (bytes are read-only).
    return data.astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a native-order NumPy array.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    np.ndarray
        Shape as stored in the header, dtype from the header's code (uint8 for MNIST),
        writable and in native byte order.

    Raises
    ------
    IDXError
        Bad magic number, unknown dtype code, zero dimensions, or a length that does
        not match the header (truncated or trailing bytes), or a corrupted gzip stream.
        The message names the file, what was expected and what was found.
    FileNotFoundError
        When ``path`` does not exist.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    buf = _decompress(path, raw) if raw[:2] == GZIP_MAGIC else raw
    return parse_idx(buf, path)


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip'd when ``compress``, or when ``path`` ends in
    ``.gz`` and ``compress`` is None).  The inverse of :func:`read_idx`."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODE_OF_DTYPE:
        raise ValueError(f"write_idx: expected an array of dtype uint8, int8, int16, int32, "
                         f"float32 or float64, got {array.dtype}")
    if array.ndim < 1 or array.ndim > 255:
        raise ValueError(f"write_idx: expected 1 to 255 dimensions, got {array.ndim}")
    if any(n >= 2 ** 32 for n in array.shape):
        raise ValueError(f"write_idx: every dimension must be < 2**32, got {array.shape}")
    path = os.fspath(path)
    code = _CODE_OF_DTYPE[native]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + body
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
